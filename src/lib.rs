//! pgward: a PostgreSQL wire-protocol firewall.
//!
//! Clients connect to pgward with any PostgreSQL driver and authenticate as an identity; pgward
//! connects to the real server with its own credentials and relays the protocol, deciding per
//! statement what may pass. See `DESIGN.md` for the architecture.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = pgward::config::Config::load("pgward.toml".as_ref(), &pgward::config::ProcessEnv)?;
//! let server = pgward::server::Server::bind(config).await?;
//! println!("listening on {}", server.local_addr()?);
//! server.run().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod approval;
pub mod audit;
pub mod auth;
pub mod config;
pub mod keyfile;
pub mod localpg;
pub mod mask;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod proto;
pub mod server;
pub mod session;
pub mod sql;
pub mod tls;
pub mod upstream;

/// Raw frames shared by the unit tests, the integration tests and the benches.
#[cfg(test)]
#[path = "../tests/common/frames.rs"]
mod test_frames;
