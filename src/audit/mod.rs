//! The audit log: every session recorded, tamper-evident, replayable by an auditor.
//!
//! - [`record`]: what is recorded ([`Record`]) and its canonical bytes;
//! - [`chain`]: the SHA-256 hash chain over those bytes;
//! - [`batch`]: records ⇄ Arrow record batches (one row per record);
//! - [`file`](mod@file): audit files (Arrow IPC streams), their framing, and signed chain heads;
//! - [`writer`]: the recorder sessions call ([`AuditLog`]), strict or batched;
//! - [`verify`](mod@verify): recomputes the chain and reports the first broken record;
//! - [`export`]: Parquet for DuckDB, pandas or polars;
//! - [`replay`]: sessions as their clients saw them, and the list of sessions.
//!
//! The session owns *what* is recorded and *when* (a statement's record before it is
//! forwarded); this module owns *how*: numbering, chaining, storage and durability. It never
//! records a secret, and it never drops a record silently: a log that can't be written fails
//! closed (see [`writer`]).

pub mod batch;
pub mod chain;
pub mod export;
pub mod file;
pub mod record;
pub mod replay;
pub mod time;
pub mod verify;
pub mod writer;

use std::path::Path;
use std::sync::Arc;

pub use record::{
    ApprovalEvent, ApprovalEventKind, Kind, Outcome, Record, Rows, RowsCapture, SessionEnd,
    SessionStart, Statement,
};
pub use verify::{Break, BreakKind, Report, verify};
pub use writer::{AuditLog, Durability, Meter, Options, Pending};

use crate::config::{self, AuditMode};
use crate::proto::{Severity, Side, SqlState, ToErrorResponse};

/// An audit log error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be used.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A file does not hold what an audit file should.
    #[error("audit file {path}: {message}")]
    Unreadable {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The signing key could not be loaded.
    #[error("audit signing key: {0}")]
    Key(String),
    /// Writing failed; the log accepts no more records (fail closed).
    #[error("audit log failed: {reason}")]
    Failed {
        /// The first error.
        reason: Arc<str>,
    },
    /// `replay`: the session asked for is not in the log (or is ambiguous).
    #[error("{0}")]
    NoSession(String),
    /// The log was closed.
    #[error("audit log closed")]
    Closed,
    /// Writing a Parquet export failed.
    #[error("parquet export {path}: {message}")]
    Export {
        /// The output file.
        path: String,
        /// What failed.
        message: String,
    },
}

// === impl Error ===

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.display().to_string(),
            source: Arc::new(source),
        }
    }

    fn failed(reason: String) -> Error {
        Error::Failed {
            reason: reason.into(),
        }
    }
}

impl ToErrorResponse for Error {
    fn sqlstate(&self) -> SqlState {
        // Whatever the cause, the client learns that pgward could not record the statement.
        SqlState::IO_ERROR
    }

    fn severity(&self) -> Severity {
        Severity::Error
    }

    fn side(&self) -> Side {
        Side::Internal
    }

    fn hint(&self) -> Option<String> {
        Some("the statement was not run because pgward could not record it".to_owned())
    }
}

// === impl Options ===

impl Options {
    /// The writer options for the `[audit]` section, loading (or creating) the signing key.
    /// `None` when auditing is off.
    ///
    /// # Errors
    /// [`Error::Key`] when the signing key file can't be read or created.
    pub fn from_config(c: &config::Audit) -> Result<Option<Options>, Error> {
        let durability = match c.mode {
            AuditMode::Off => return Ok(None),
            AuditMode::Strict => Durability::Strict,
            AuditMode::Batched => Durability::Batched {
                interval: c.flush_interval,
            },
        };
        Ok(Some(Options {
            dir: c.dir.clone(),
            durability,
            roll_bytes: c.roll_bytes,
            roll_age: c.roll_age,
            signing_key: load_signing_key(c.signing_key_file.as_deref())?,
        }))
    }
}

/// The key in a signing key file, created with 32 random bytes when missing.
///
/// # Errors
/// [`Error::Key`] when the file can't be read or created.
pub fn load_signing_key(path: Option<&Path>) -> Result<Option<ed25519_dalek::SigningKey>, Error> {
    let Some(path) = path else {
        return Ok(None);
    };
    let bytes = crate::keyfile::load_or_create(path, 32).map_err(|e| Error::Key(e.to_string()))?;
    file::signing_key(&bytes)
        .map(Some)
        .ok_or_else(|| Error::Key(format!("{}: not a key", path.display())))
}
