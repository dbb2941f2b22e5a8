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
        tokio::select! {
            () = server.run() => {}
            _ = tokio::signal::ctrl_c() => tracing::info!("Interrupted; stopping"),
        }
        Ok(ExitCode::SUCCESS)
    })
}
