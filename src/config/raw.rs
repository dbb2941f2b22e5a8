//! A serde mirror of the configuration file. Nothing here is validated beyond its shape; unknown
//! keys are errors so that a typo never silently falls back to a default.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `address:port` to accept clients on.
    pub listen: Spanned<String>,
    /// Path of the identities file.
    pub identities: Spanned<String>,
    /// Directory of rule files.
    pub rules: Spanned<String>,
    /// Directory for pgward's own state (audit log, approvals, keys).
    pub data_dir: Option<Spanned<String>>,
    /// The key of the `hash` and `fake` mask strategies (default `data_dir/mask.key`).
    pub mask_key_file: Option<Spanned<String>>,
    /// Largest protocol message accepted from either peer, in bytes.
    pub max_message_bytes: Option<Spanned<u64>>,
    /// How long a client may take from connecting to finishing authentication, e.g. `"30s"`.
    pub startup_timeout: Option<Spanned<String>>,
    /// On SIGTERM, how long running statements may take to finish, e.g. `"30s"`.
    pub shutdown_timeout: Option<Spanned<String>>,
    /// Client-facing TLS.
    pub tls: Option<RawTls>,
    /// The PostgreSQL server pgward protects.
    pub upstream: RawUpstream,
    /// The audit log.
    pub audit: Option<RawAudit>,
    /// Where approval requests are kept, and who is told about them.
    pub approvals: Option<RawApprovals>,
    /// The admin HTTP API (approvals, health).
    pub admin: Option<RawAdmin>,
    /// Authentication entries, evaluated in order (`[[auth]]`).
    pub auth: Option<Vec<super::access::RawAuthRule>>,
    /// The upstream connection pool.
    pub pool: Option<super::access::RawPool>,
    /// Bearer tokens as the password: OIDC/JWT and pgward's own agent tokens.
    pub token: Option<Spanned<RawToken>>,
}

/// `[token]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// The OIDC issuer whose tokens are accepted (`iss`); without it, only agent tokens.
    pub issuer: Option<Spanned<String>>,
    /// The audience an OIDC token must name (`aud`).
    pub audience: Option<Spanned<String>>,
    /// The issuer's signing keys: a JWKS file …
    pub jwks_file: Option<Spanned<String>>,
    /// … or an `https://` URL serving one.
    pub jwks_url: Option<Spanned<String>>,
    /// Extra CA certificates (PEM) trusted for `jwks_url`.
    pub jwks_ca_file: Option<Spanned<String>>,
    /// How often the key set is fetched again, e.g. `"5m"`.
    pub jwks_refresh: Option<Spanned<String>>,
    /// Clock skew allowed on `exp` and `nbf`, e.g. `"30s"`.
    pub leeway: Option<Spanned<String>>,
    /// The claim that must equal the startup user: `sub`, `email` or `preferred_username`.
    pub user_claim: Option<Spanned<String>>,
    /// The claim listing the token's groups (roles `group:NAME`).
    pub groups_claim: Option<Spanned<String>>,
    /// Whether pgward's own agent tokens (`pgward token issue`) are accepted.
    pub agent_tokens: Option<Spanned<bool>>,
    /// pgward's ed25519 agent-token key (default `data_dir/token.key`, created if missing).
    pub agent_key_file: Option<Spanned<String>>,
    /// `iss` of agent tokens.
    pub agent_issuer: Option<Spanned<String>>,
    /// `aud` of agent tokens.
    pub agent_audience: Option<Spanned<String>>,
    /// Longest lifetime `pgward token issue` may give, e.g. `"1h"`.
    pub agent_max_ttl: Option<Spanned<String>>,
    /// Accept tokens on plaintext connections from loopback addresses.
    pub allow_plaintext_loopback: Option<bool>,
}

/// `[approvals]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprovals {
    /// `embedded` (redb in `data_dir`, the default) or `postgres`.
    pub store: Option<Spanned<String>>,
    /// For `store = "postgres"`: the server database holding the shared queue (reached with
    /// the `[upstream]` login and TLS).
    pub database: Option<Spanned<String>>,
    /// URL called with a JSON body for each new request and decision.
    pub webhook_url: Option<Spanned<String>>,
    /// Time limit of one webhook attempt, e.g. `"5s"`.
    pub webhook_timeout: Option<Spanned<String>>,
}

/// `[admin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `address:port` of the admin HTTP listener.
    pub listen: Spanned<String>,
    /// PEM certificate chain for HTTPS (with `key`).
    pub cert: Option<Spanned<String>>,
    /// PEM private key for HTTPS (with `cert`).
    pub key: Option<Spanned<String>>,
    /// Roles whose members may read the audit log through the API (default `["auditor"]`).
    pub auditor_roles: Option<Vec<String>>,
}

/// `[tls]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// `disable`, `allow` or `require`.
    pub mode: Spanned<TlsMode>,
    /// PEM certificate chain.
    pub cert: Option<Spanned<String>>,
    /// PEM private key.
    pub key: Option<Spanned<String>>,
    /// PEM CA certificates that client certificates must chain to (enables the `cert` method).
    pub client_ca: Option<Spanned<String>>,
    /// Which certificate field names the identity: `cn` (default) or `san`.
    pub cert_identity: Option<Spanned<String>>,
}

/// Whether clients may or must use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// SSLRequest is answered 'N'.
    Disable,
    /// TLS when the client asks for it, plaintext otherwise.
    Allow,
    /// A client that does not start TLS is refused.
    Require,
}

/// `[upstream]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// Server host name or address.
    pub host: Spanned<String>,
    /// Server port, 5432 by default.
    pub port: Option<u16>,
    /// The login pgward uses on the server.
    pub user: Spanned<String>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<Spanned<String>>,
    /// Path of a file holding the password.
    pub password_file: Option<Spanned<String>>,
    /// `disable`, `prefer`, `require` or `verify-full`.
    pub sslmode: Option<Spanned<SslMode>>,
    /// CA certificates (PEM) for `verify-full`.
    pub ca_file: Option<Spanned<String>>,
    /// How long to wait for the server to accept and authenticate, e.g. `"5s"`.
    pub connect_timeout: Option<Spanned<String>>,
    /// Client database name → server database name; `"*"` maps every other name.
    pub databases: Option<Spanned<BTreeMap<String, String>>>,
    /// Server logins named by roles' `upstream_user`, with their secrets.
    pub logins: Option<BTreeMap<String, super::access::RawLogin>>,
    /// What the server sees as `application_name`, with `{application_name}` and `{identity}`;
    /// `""` passes the client's own value.
    pub application_name: Option<Spanned<String>>,
}

/// Upstream TLS, as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS if the server offers it, without verifying the certificate.
    Prefer,
    /// TLS always, without verifying the certificate.
    Require,
    /// TLS always, certificate verified against `ca_file` and the host name.
    VerifyFull,
}

/// `[audit]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// `off`, `batched` or `strict`.
    pub mode: Option<Spanned<AuditMode>>,
    /// The log directory (default `data_dir/audit`).
    pub dir: Option<Spanned<String>>,
    /// Batched mode: the longest a record waits before it is written and fsynced.
    pub flush_interval_ms: Option<Spanned<u64>>,
    /// A file is closed and a new one started past this size.
    pub roll_bytes: Option<Spanned<u64>>,
    /// … or after this many seconds.
    pub roll_seconds: Option<Spanned<u64>>,
    /// A 32-byte ed25519 key (created if missing) that signs each closed file's chain head.
    pub signing_key_file: Option<Spanned<String>>,
    /// Largest total of result cells captured per statement, when rows are captured.
    pub capture_rows_max_bytes: Option<Spanned<u64>>,
    /// Roles whose sessions' result rows are captured, as the client received them (masked).
    pub capture_roles: Option<Vec<String>>,
}

/// How the audit log keeps records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditMode {
    /// Nothing is recorded.
    Off,
    /// Records are written and fsynced on a short timer.
    Batched,
    /// No statement is forwarded before its record is fsynced.
    Strict,
}
