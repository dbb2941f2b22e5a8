//! The shared store: a table in a PostgreSQL database, so that several pgward instances behind a
//! load balancer share one queue. Every change commits with `NOTIFY` on [`WAKE_CHANNEL`], which
//! wakes the instance holding the client (see `approval::service`), so nobody polls.
//!
//! The table (created when missing):
//! ```sql
//! CREATE TABLE pgward_approval_requests (
//!     id          text PRIMARY KEY,
//!     state       text NOT NULL,        -- pending, approved, rejected, expired, withdrawn
//!     requester   text NOT NULL,
//!     fingerprint text NOT NULL,        -- what a retry-mode grant is valid for
//!     created_at  timestamptz NOT NULL,
//!     ticket      jsonb NOT NULL        -- the whole request, decisions included
//! );
//! ```

use deadpool_postgres::Pool;

use super::{Change, StoreError, decode, encode};
use crate::approval::duty::{Error as DutyError, RequestId};
use crate::approval::ticket::Ticket;

/// The NOTIFY channel every change is announced on; the payload is the request id.
pub const WAKE_CHANNEL: &str = "pgward_approvals";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pgward_approval_requests (
    id          text PRIMARY KEY,
    state       text NOT NULL,
    requester   text NOT NULL,
    fingerprint text NOT NULL,
    created_at  timestamptz NOT NULL,
    ticket      jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS pgward_approval_requests_pending
    ON pgward_approval_requests (created_at) WHERE state = 'pending';
";

/// The PostgreSQL store; cheap to clone.
#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").finish_non_exhaustive()
    }
}

fn pg(e: impl std::fmt::Display) -> StoreError {
    StoreError::Postgres(e.to_string())
}

// === impl Postgres ===

impl Postgres {
    /// The store on `pool`'s database; creates its table when missing.
    ///
    /// # Errors
    /// When the database can't be reached or the table can't be created.
    pub async fn open(pool: Pool) -> Result<Self, StoreError> {
        let client = pool.get().await.map_err(pg)?;
        // Several instances starting at once may race on CREATE … IF NOT EXISTS; serialize them.
        client
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock(hashtext('pgward_approval_requests')); {SCHEMA} COMMIT;"
            ))
            .await
            .map_err(pg)?;
        Ok(Postgres { pool })
    }

    pub(super) async fn insert(&self, ticket: &Ticket) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pg)?;
        let json = String::from_utf8(encode(ticket)).map_err(pg)?;
        let r = &ticket.request;
        let created = std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(r.created_at().as_unix_millis());
        client
            .execute(
                "INSERT INTO pgward_approval_requests (id, state, requester, fingerprint, created_at, ticket) \
                 VALUES ($1, $2, $3, $4, $5, $6::text::jsonb)",
                &[
                    &r.id().as_str(),
                    &r.state().as_str(),
                    &r.requester().identity,
                    &ticket.fingerprint,
                    &created,
                    &json,
                ],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    pub(super) async fn get(&self, id: &RequestId) -> Result<Option<Ticket>, StoreError> {
        let client = self.pool.get().await.map_err(pg)?;
        let row = client
            .query_opt(
                "SELECT ticket::text FROM pgward_approval_requests WHERE id = $1",
                &[&id.as_str()],
            )
            .await
            .map_err(pg)?;
        row.map(|r| decode(id.as_str(), r.get::<_, &str>(0).as_bytes()))
            .transpose()
    }

    pub(super) async fn list(&self, pending_only: bool) -> Result<Vec<Ticket>, StoreError> {
        let client = self.pool.get().await.map_err(pg)?;
        let rows = client
            .query(
                "SELECT id, ticket::text FROM pgward_approval_requests \
                 WHERE state = 'pending' OR NOT $1 ORDER BY created_at, id",
                &[&pending_only],
            )
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|r| decode(r.get(0), r.get::<_, &str>(1).as_bytes()))
            .collect()
    }

    pub(super) async fn update<T: Send + 'static>(
        &self,
        id: &RequestId,
        change: Change<T>,
    ) -> Result<Result<T, DutyError>, StoreError> {
        let mut client = self.pool.get().await.map_err(pg)?;
        let tx = client.transaction().await.map_err(pg)?;
        // The row lock serializes concurrent decisions, across instances too.
        let row = tx
            .query_opt(
                "SELECT ticket::text FROM pgward_approval_requests WHERE id = $1 FOR UPDATE",
                &[&id.as_str()],
            )
            .await
            .map_err(pg)?
            .ok_or_else(|| StoreError::NotFound(id.clone()))?;
        let mut ticket = decode(id.as_str(), row.get::<_, &str>(0).as_bytes())?;
        let before = ticket.clone();
        let result = change(&mut ticket);
        if result.is_ok() && ticket != before {
            let json = String::from_utf8(encode(&ticket)).map_err(pg)?;
            tx.execute(
                "UPDATE pgward_approval_requests SET state = $2, ticket = $3::text::jsonb WHERE id = $1",
                &[&id.as_str(), &ticket.request.state().as_str(), &json],
            )
            .await
            .map_err(pg)?;
            tx.execute("SELECT pg_notify($1, $2)", &[&WAKE_CHANNEL, &id.as_str()])
                .await
                .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
        }
        Ok(result)
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pg)?;
        client.simple_query("SELECT 1").await.map_err(pg)?;
        Ok(())
    }

    pub(super) async fn grant_candidates(
        &self,
        identity: &str,
        fingerprint: &str,
    ) -> Result<Vec<RequestId>, StoreError> {
        let client = self.pool.get().await.map_err(pg)?;
        let rows = client
            .query(
                "SELECT id FROM pgward_approval_requests \
                 WHERE state = 'approved' AND requester = $1 AND fingerprint = $2 \
                   AND ticket->'grant_used' = 'null'::jsonb \
                 ORDER BY created_at",
                &[&identity, &fingerprint],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| RequestId::new(r.get::<_, String>(0)))
            .collect())
    }
}
