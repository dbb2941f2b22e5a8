//! Where approval requests live: an embedded database in `data_dir` (one pgward), or a table in
//! PostgreSQL that several pgward instances share.
//!
//! Both stores offer the same operations, and every change goes through [`Store::update`], an
//! atomic read-modify-write whose closure applies the duty checks: a change is written (and, with
//! PostgreSQL, announced) only when the checks accept it and the ticket actually changed, and two approvers deciding at once are serialized by the store (a redb
//! write transaction, or `SELECT … FOR UPDATE`), never by hope.

mod embedded;
mod postgres;

pub use embedded::Embedded;
pub use postgres::{Postgres, WAKE_CHANNEL};

use super::duty::{Error as DutyError, RequestId};
use super::ticket::Ticket;

/// An approval store.
#[derive(Debug, Clone)]
pub enum Store {
    /// redb in `data_dir`.
    Embedded(Embedded),
    /// A table in a PostgreSQL database.
    Postgres(Postgres),
}

/// Why the store could not be used. Every one fails closed: a statement that needs approval is
/// refused when its request can't be stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded database failed.
    #[error("approval store ({path}): {message}")]
    Embedded {
        /// The database file.
        path: String,
        /// What failed.
        message: String,
    },
    /// PostgreSQL failed or could not be reached.
    #[error("approval store (PostgreSQL): {0}")]
    Postgres(String),
    /// A stored request could not be read back.
    #[error("approval store: request {id} is unreadable: {message}")]
    Corrupt {
        /// The request.
        id: String,
        /// Why.
        message: String,
    },
    /// No such request.
    #[error("approval request {0} does not exist")]
    NotFound(RequestId),
}

/// The closure of [`Store::update`]: changes the ticket through its duty checks, or refuses.
pub type Change<T> = Box<dyn FnOnce(&mut Ticket) -> Result<T, DutyError> + Send>;

// === impl Store ===

impl Store {
    /// Adds a new request.
    ///
    /// # Errors
    /// When the store can't be written.
    pub async fn insert(&self, ticket: &Ticket) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.insert(ticket).await,
            Store::Postgres(s) => s.insert(ticket).await,
        }
    }

    /// One request.
    ///
    /// # Errors
    /// When the store can't be read.
    pub async fn get(&self, id: &RequestId) -> Result<Option<Ticket>, StoreError> {
        match self {
            Store::Embedded(s) => s.get(id).await,
            Store::Postgres(s) => s.get(id).await,
        }
    }

    /// All requests, or only the pending ones, oldest first.
    ///
    /// # Errors
    /// When the store can't be read.
    pub async fn list(&self, pending_only: bool) -> Result<Vec<Ticket>, StoreError> {
        let mut all = match self {
            Store::Embedded(s) => s.list(pending_only).await?,
            Store::Postgres(s) => s.list(pending_only).await?,
        };
        all.sort_by_key(|t| (t.request.created_at(), t.request.id().clone()));
        Ok(all)
    }

    /// Applies `change` to request `id` atomically; the ticket is written back only when
    /// `change` returns `Ok` and changed it.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or when the store fails. A refused change is the inner `Err`.
    pub async fn update<T: Send + 'static>(
        &self,
        id: &RequestId,
        change: Change<T>,
    ) -> Result<Result<T, DutyError>, StoreError> {
        match self {
            Store::Embedded(s) => s.update(id, change).await,
            Store::Postgres(s) => s.update(id, change).await,
        }
    }

    /// Whether the store answers (for readiness checks).
    ///
    /// # Errors
    /// When it can't be read.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.ping().await,
            Store::Postgres(s) => s.ping().await,
        }
    }

    /// Approved retry-mode requests of `identity` for the statement with `fingerprint`.
    ///
    /// # Errors
    /// When the store can't be read.
    pub async fn grant_candidates(
        &self,
        identity: &str,
        fingerprint: &str,
    ) -> Result<Vec<RequestId>, StoreError> {
        match self {
            Store::Embedded(s) => s.grant_candidates(identity, fingerprint).await,
            Store::Postgres(s) => s.grant_candidates(identity, fingerprint).await,
        }
    }
}

/// Serializes a ticket for storage.
fn encode(ticket: &Ticket) -> Vec<u8> {
    // A Ticket holds only strings, numbers and vectors: serializing it can't fail.
    serde_json::to_vec(ticket).unwrap_or_default()
}

/// Reads a stored ticket back.
fn decode(id: &str, bytes: &[u8]) -> Result<Ticket, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        id: id.to_owned(),
        message: e.to_string(),
    })
}
