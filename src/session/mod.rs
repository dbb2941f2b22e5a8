//! The data path: one client session from its first byte to its last.
//!
//! `handshake.rs` is a straight-line `async fn`: TLS negotiation, startup, authentication,
//! upstream connection. [`relay`] then pumps frames both ways until either side ends, through
//! two stages: the client side analyzes and decides (`analyze.rs`, `enforce.rs`), the server
//! side rewrites pgward's refusals. Errors that end a session reach the client as an
//! ErrorResponse built in one place, `Refusal`, from each module's `ToErrorResponse`.

mod analyze;
mod cancel;
mod catalog;
mod columns;
mod enforce;
mod handshake;
pub mod hold;
mod identity;
mod metadata;
pub mod recorder;
pub mod relay;
mod results;
mod rules;
mod settings;

pub use analyze::StatementTracker;
pub use cancel::{BackendKey, CancelRegistry, CancelSignal, ClientKey, Registration};
pub use catalog::Catalogs;
pub use columns::{ColumnCatalog, ColumnCatalogs};
pub use enforce::{ClientStage, Refusals, ServerStage, Verdict, refusal_token};
pub use handshake::serve_client;
pub use hold::Holds;
pub use metadata::MetadataPools;
pub use results::{Pipeline, ResultMasker, ResultTracker};
pub use rules::{LiveRules, RulesHandle};

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use rustls::ClientConfig;
use tokio_rustls::TlsAcceptor;

use crate::auth::Identities;
use crate::config::Config;
use crate::proto::{self, Severity, SqlState, ToErrorResponse};
use bytes::BytesMut;

/// What every session shares: configuration, credentials, TLS, and the cancel keys of live
/// sessions.
pub struct Shared {
    /// The validated configuration.
    pub config: Config,
    /// Who may connect.
    pub identities: Identities,
    /// TLS for clients, unless disabled; swapped whole on SIGHUP.
    pub client_tls: arc_swap::ArcSwapOption<ClientTls>,
    /// TLS towards the server, unless `sslmode = disable`.
    pub upstream_tls: Option<Arc<ClientConfig>>,
    /// Cancel keys of live sessions.
    pub cancel: Arc<CancelRegistry>,
    /// A per-process random secret (salts of fake SCRAM verifiers for unknown identities).
    pub process_secret: [u8; 32],
    /// Source of session ids.
    pub next_session_id: AtomicU64,
    /// Statement profiles by text, shared by all sessions.
    pub profiles: Arc<crate::sql::ProfileCache>,
    /// Function catalogs by server database.
    pub catalogs: Catalogs,
    /// pgward's own connections for catalog lookups.
    pub metadata: Arc<MetadataPools>,
    /// Where result columns come from, by server database.
    pub columns: ColumnCatalogs,
    /// The key of the `hash` and `fake` mask strategies.
    pub mask_key: Arc<[u8]>,
    /// The duty rules, reloaded on change.
    pub rules: Arc<RulesHandle>,
    /// The text pgward sends in place of a refused statement (see `enforce`).
    pub refusal_token: Arc<str>,
    /// Approval requests and decisions.
    pub approvals: Arc<crate::approval::Approvals>,
    /// The audit log, when it is on.
    pub audit: Option<crate::audit::AuditLog>,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Set to `true` when pgward is shutting down: sessions end once idle.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// Verifies bearer tokens, when `[token]` is configured.
    pub tokens: Option<Arc<crate::auth::TokenVerifier>>,
    /// Server connections: pooled per (database, login, startup parameters), or direct.
    pub pools: Arc<crate::upstream::Pools>,
}

/// What new client TLS connections are accepted with.
pub struct ClientTls {
    /// The TLS server side.
    pub acceptor: TlsAcceptor,
    /// Checks client certificates' chains, when `[tls] client_ca` is set.
    pub client_auth: Option<Arc<crate::tls::DeferredClientAuth>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// An error that ends the session before or instead of relaying.
#[derive(Debug)]
pub(crate) struct Refusal {
    code: SqlState,
    message: String,
    hint: Option<String>,
}

impl<E: ToErrorResponse> From<E> for Refusal {
    fn from(e: E) -> Self {
        Refusal {
            code: e.sqlstate(),
            message: e.to_string(),
            hint: e.hint(),
        }
    }
}

impl Refusal {
    pub(crate) fn new(code: SqlState, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
            hint: None,
        }
    }
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub(crate) fn write(&self, buf: &mut BytesMut) {
        proto::write_error_response(
            buf,
            Severity::Fatal,
            self.code,
            &self.message,
            None,
            self.hint.as_deref(),
        );
    }
}
