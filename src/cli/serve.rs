//! `pgward serve --config FILE`

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use pgward::config::{Config, ProcessEnv};
use pgward::server::Server;

pub fn run(config_path: &Path, log_format: super::LogFormat) -> anyhow::Result<ExitCode> {
    super::init_logging(log_format);
    let config = Config::load(config_path, &ProcessEnv)?;
    super::runtime()?.block_on(async {
        let server = Server::bind(config).await.context("starting pgward")?;
        let shared = server.shared();
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // The first signal stops accepting (the listener closes with `run`) and asks sessions
        // to end once idle; running statements get `shutdown_timeout`; a second signal stops now.
        tokio::select! {
            () = server.run() => {}
            _ = tokio::signal::ctrl_c() => tracing::info!("Interrupted; draining sessions"),
            _ = terminate.recv() => tracing::info!("SIGTERM; draining sessions"),
        }
        shared.shutdown.send_replace(true);
        let drained = async {
            while shared.metrics.sessions_open.get() > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            () = drained => tracing::info!("Sessions drained"),
            () = tokio::time::sleep(shared.config.shutdown_timeout) => {
                tracing::warn!("Shutdown timeout: ending the remaining sessions");
            }
            _ = tokio::signal::ctrl_c() => tracing::warn!("Second signal: stopping now"),
            _ = terminate.recv() => tracing::warn!("Second SIGTERM: stopping now"),
        }
        // What is queued is written and the last file's head signed.
        shared.pools.close_idle().await;
        if let Some(log) = shared.audit.clone()
            && let Err(e) = log.close().await
        {
            tracing::error!(error = %e, "Closing the audit log failed");
        }
        Ok(ExitCode::SUCCESS)
    })
}
