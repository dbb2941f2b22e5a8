//! The admin surface: an HTTP/1.1 API on its own listener, plain or HTTPS, for approvers,
//! auditors and metrics scrapers, and the web console that uses it.
//!
//! - [`listener`] binds `[admin] listen`, terminates TLS, and serves each connection in its own
//!   task with bounded headers, bodies and lifetimes.
//! - [`api`] routes requests and authenticates them: every `/v1` route needs
//!   `Authorization: Bearer <token>`, whose SHA-256 must match an identity's `admin_token`.
//! - [`view`] is the JSON the API answers with, also read back by `pgward approvals`.
//! - [`audit`](mod@audit) reads the audit log back for auditors: session summaries, timelines,
//!   verification.
//! - [`console`] serves the web console: static files embedded in the binary, which sign in and
//!   work through the API like any other client.
//!
//! # Security
//! The admin API never decides anything itself: approvals go through
//! [`Approvals::decide`](crate::approval::Approvals::decide) and so through the duty checks,
//! with the approver's roles resolved from the live rule set at the moment of the decision.
//! What it tells a viewer they may decide (`can_decide`) comes from the same checks
//! ([`Request::may_decide`](crate::approval::Request::may_decide)), so the console never offers
//! a decision the API would refuse. The audit log is read only for holders of
//! `[admin] auditor_roles`, off the async runtime, and shown as it is stored (already masked).
//! A failing admin connection never touches a client session: they share no task and no lock
//! beyond the approval store.

pub mod api;
pub mod audit;
pub mod console;
pub mod listener;
pub mod view;

pub use api::Api;
pub use listener::Listener;

use std::net::SocketAddr;

/// Errors starting the admin listener.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The certificate or key for HTTPS is unusable.
    #[error("admin: {0}")]
    Tls(#[from] crate::tls::Error),
    /// The listen address can't be bound.
    #[error("admin: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}
