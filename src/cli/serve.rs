//! `pgward serve --config FILE`

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use pgward::config::{Config, ProcessEnv};
use pgward::server::Server;

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let config = Config::load(config_path, &ProcessEnv)?;
    super::runtime()?.block_on(async {
        let server = Server::bind(config).await.context("starting pgward")?;
        let shared = server.shared();
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            () = server.run() => {}
            _ = tokio::signal::ctrl_c() => tracing::info!("Interrupted; stopping"),
            _ = terminate.recv() => tracing::info!("SIGTERM; stopping"),
        }
        // What is queued is written and the last file's head signed.
        if let Some(log) = shared.audit.clone()
            && let Err(e) = log.close().await
        {
            tracing::error!(error = %e, "Closing the audit log failed");
        }
        Ok(ExitCode::SUCCESS)
    })
}
