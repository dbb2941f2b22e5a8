//! Connections to the PostgreSQL server, made with pgward's own credentials.
//!
//! The client never sees this exchange: not the upstream user's password, not its SCRAM messages,
//! not an authentication error that would name the upstream login.

mod client;
mod connect;
mod pool;

pub use client::{ClientSettings, Heard};
pub use connect::{Connected, Login, ServerHalves, StartupParams, cancel, connect};
pub use pool::{Lease, Pools};

use bytes::Bytes;

use crate::proto::{self, Severity, Side, SqlState, ToErrorResponse};

/// Upstream failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TCP connect or I/O failed.
    #[error("could not connect to the upstream server: {0}")]
    Connect(#[from] std::io::Error),
    /// The connect deadline passed.
    #[error("timed out connecting to the upstream server")]
    Timeout,
    /// TLS setup or handshake failed.
    #[error("upstream TLS failed: {0}")]
    Tls(String),
    /// The server required TLS settings pgward was not given, or refused TLS that was required.
    #[error("upstream server does not support TLS, and sslmode requires it")]
    TlsRefused,
    /// Authenticating to the server failed. The detail stays in pgward's log.
    #[error("pgward could not authenticate to the upstream server")]
    Auth(String),
    /// The server sent an ErrorResponse during startup; it is relayed to the client as sent.
    #[error("upstream server refused the connection: {message}")]
    Server {
        /// The SQLSTATE the server sent.
        code: String,
        /// The message the server sent.
        message: String,
        /// The whole ErrorResponse frame, to relay.
        frame: Bytes,
    },
    /// The server broke the protocol.
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    /// Every pooled connection stayed busy for the whole wait.
    #[error(
        "too many connections: no server connection came free within {waited:?} (pool of {max_size})"
    )]
    PoolExhausted {
        /// How long the session waited.
        waited: std::time::Duration,
        /// The pool's size.
        max_size: usize,
    },
}

impl From<crate::net::FrameError> for Error {
    fn from(e: crate::net::FrameError) -> Self {
        match e {
            crate::net::FrameError::Io(e) => Error::Connect(e),
            crate::net::FrameError::Proto(e) => Error::Protocol(e.to_string()),
        }
    }
}

impl From<proto::Error> for Error {
    fn from(e: proto::Error) -> Self {
        Error::Protocol(e.to_string())
    }
}

impl ToErrorResponse for Error {
    fn sqlstate(&self) -> SqlState {
        match self {
            Error::PoolExhausted { .. } => SqlState::TOO_MANY_CONNECTIONS,
            _ => SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
        }
    }
    fn severity(&self) -> Severity {
        Severity::Fatal
    }
    fn side(&self) -> Side {
        Side::Server
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            Error::PoolExhausted { .. } => {
                "retry shortly; the DBA can raise [pool] max_size or acquire_timeout".to_owned()
            }
            _ => {
                "the database behind pgward is unavailable; pgward's log has the details".to_owned()
            }
        })
    }
}
