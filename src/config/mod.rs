//! Configuration: the TOML file (`raw`) turned into the validated [`Config`] the rest of pgward uses.
//!
//! Parsing takes a `&str` and an [`Env`]; reading files happens at the edges ([`Config::load`]).
//! Every error names the file, the line and the key. Secrets are resolved here, once, and never
//! reach `Debug` output.

mod access;
pub mod raw;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use access::{CertIdentity, ClientCerts, Pool};
pub use raw::{AuditMode, SslMode, TlsMode};
use raw::{RawAudit, RawConfig, RawToken};
use toml::Spanned;

/// PostgreSQL's own limit for one message (1 GiB − 1): large enough for any COPY row or bytea.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 0x3fff_ffff;

/// The server sees who is behind each connection in `pg_stat_activity`.
pub const DEFAULT_APPLICATION_NAME: &str = "{application_name} (pgward:{identity})";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Client-facing TLS.
    pub tls: ClientTls,
    /// The server behind pgward.
    pub upstream: Upstream,
    /// The identities file.
    pub identities: PathBuf,
    /// The rules directory.
    pub rules: PathBuf,
    /// pgward's state directory.
    pub data_dir: Option<PathBuf>,
    /// The key file of the `hash` and `fake` mask strategies, if set.
    pub mask_key_file: Option<PathBuf>,
    /// Largest message accepted from either peer.
    pub max_message_bytes: usize,
    /// Deadline for a client to finish TLS, startup and authentication.
    pub startup_timeout: Duration,
    /// On SIGTERM, how long running statements may take to finish.
    pub shutdown_timeout: Duration,
    /// Where approval requests are kept.
    pub approvals: Approvals,
    /// The admin HTTP API, when enabled.
    pub admin: Option<Admin>,
    /// The audit log; `None` when it is off.
    pub audit: Option<Audit>,
    /// Which authentication method each connection must use.
    pub auth: crate::auth::AuthRules,
    /// The upstream connection pool.
    pub pool: Pool,
    /// Bearer-token authentication (`[token]`); `None` when the section is absent.
    pub token: Option<TokenSettings>,
}

/// The `[audit]` section, validated. Present only when auditing is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// `batched` or `strict`.
    pub mode: AuditMode,
    /// The log directory.
    pub dir: PathBuf,
    /// Batched mode: the longest a record waits before it is written and fsynced.
    pub flush_interval: Duration,
    /// A file is closed and a new one started past this size.
    pub roll_bytes: u64,
    /// … or after this long.
    pub roll_age: Duration,
    /// The key that signs closed files' chain heads, if any.
    pub signing_key_file: Option<PathBuf>,
    /// Largest total of result cells captured per statement.
    pub capture_rows_max_bytes: usize,
    /// Roles whose sessions' result rows are captured (none by default).
    pub capture_roles: Vec<String>,
}

/// Client-facing TLS settings.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// Disable, allow or require.
    pub mode: TlsMode,
    /// Certificate chain and key, present unless mode is `disable`.
    pub cert_and_key: Option<(PathBuf, PathBuf)>,
    /// Client certificates, when `client_ca` is set.
    pub client_certs: Option<ClientCerts>,
}

/// The upstream server and pgward's credentials for it.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// pgward's login on the server.
    pub user: String,
    /// pgward's password on the server, if it needs one.
    pub password: Option<Secret>,
    /// TLS towards the server.
    pub sslmode: SslMode,
    /// CA certificates for `verify-full`.
    pub ca_file: Option<PathBuf>,
    /// Deadline for connecting and authenticating.
    pub connect_timeout: Duration,
    /// Client database → server database. Empty: names pass through.
    pub databases: BTreeMap<String, String>,
    /// Per-role server logins (from roles' `upstream_user`) and their passwords.
    pub logins: BTreeMap<String, Option<Secret>>,
    /// What the server sees as `application_name` (`{application_name}`, `{identity}`), or
    /// empty to pass the client's own.
    pub application_name: String,
}

/// A secret string: its `Debug` shows `_`, and nothing prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Where configuration values come from besides the file: environment variables, behind a trait
/// so that tests pass a map instead of mutating the process environment.
pub trait Env {
    /// The value of variable `name`.
    fn var(&self, name: &str) -> Option<String>;
}

/// `[approvals]`: where requests are kept and who is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approvals {
    /// The store.
    pub store: ApprovalStore,
    /// Called with a JSON body for each new request and decision.
    pub webhook_url: Option<String>,
    /// Time limit of one webhook attempt.
    pub webhook_timeout: Duration,
}

/// Where approval requests are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalStore {
    /// redb in `data_dir/approvals.redb`; in memory (lost on restart) without a `data_dir`.
    Embedded,
    /// A table in this server database, shared by every pgward pointed at it.
    Postgres {
        /// The database.
        database: String,
    },
}

/// `[admin]`: the admin HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Certificate chain and key for HTTPS; plain HTTP without.
    pub cert_and_key: Option<(PathBuf, PathBuf)>,
    /// Roles (as the live rules resolve them) whose members may read the audit log through
    /// the API and the console.
    pub auditor_roles: Vec<String>,
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

/// A configuration error, located in its file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but something in it is wrong.
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line of the offending key or value.
        line: usize,
        /// The key, dotted (`upstream.sslmode`), or empty when the parser could not tell.
        key: String,
        /// What is wrong.
        message: String,
    },
}

// === impl Config ===

impl Config {
    /// Reads and validates the file at `path`, resolving relative paths against its directory.
    ///
    /// # Errors
    /// [`Error::Read`] when the file can't be read, [`Error::Invalid`] for anything wrong in it.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, &path.display().to_string(), base, env)
    }

    /// Parses and validates `text`; `file` names it in errors and `base` anchors relative paths.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming file, line and key.
    pub fn parse(text: &str, file: &str, base: &Path, env: &dyn Env) -> Result<Config, Error> {
        let at = Locator { file, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| at.line(s.start));
            Error::Invalid {
                file: file.to_owned(),
                line,
                key: String::new(),
                message: e.message().to_owned(),
            }
        })?;
        let path = |s: &Spanned<String>| base.join(s.get_ref());
        let data_dir = raw.data_dir.as_ref().map(path);
        let audit = audit(raw.audit.as_ref(), data_dir.as_deref(), base, &at)?;
        let token = token(raw.token.as_ref(), data_dir.as_deref(), base, &at)?;

        let listen = raw
            .listen
            .get_ref()
            .parse()
            .map_err(|e| at.err(&raw.listen, "listen", format!("not an address:port ({e})")))?;

        let tls = match raw.tls {
            None => ClientTls {
                mode: TlsMode::Disable,
                cert_and_key: None,
                client_certs: None,
            },
            Some(t) => {
                let mode = *t.mode.get_ref();
                let cert_and_key = match (&t.cert, &t.key) {
                    (Some(c), Some(k)) => Some((path(c), path(k))),
                    (None, None) if mode == TlsMode::Disable => None,
                    _ => {
                        return Err(at.err(
                            &t.mode,
                            "tls.mode",
                            "TLS needs both `cert` and `key`".to_owned(),
                        ));
                    }
                };
                let client_certs = access::client_certs(
                    t.client_ca.as_ref(),
                    t.cert_identity.as_ref(),
                    base,
                    &at,
                )?;
                if client_certs.is_some() && cert_and_key.is_none() {
                    return Err(at.err(
                        &t.mode,
                        "tls.client_ca",
                        "client certificates need TLS: set `cert` and `key`".to_owned(),
                    ));
                }
                ClientTls {
                    mode,
                    cert_and_key,
                    client_certs,
                }
            }
        };
        let auth = access::auth_rules(raw.auth.as_deref().unwrap_or_default(), &at)?;
        if auth.uses(crate::auth::AuthMethod::Cert) && tls.client_certs.is_none() {
            return Err(Error::Invalid {
                file: file.to_owned(),
                line: 1,
                key: "tls.client_ca".to_owned(),
                message: "an [[auth]] entry uses method \"cert\": set `[tls] client_ca`".to_owned(),
            });
        }
        let pool = access::pool(raw.pool.as_ref(), &at)?;
        if auth.uses(crate::auth::AuthMethod::Token) && raw.token.is_none() {
            return Err(Error::Invalid {
                file: file.to_owned(),
                line: 1,
                key: "token".to_owned(),
                message: "an [[auth]] entry uses method \"token\": add a [token] section"
                    .to_owned(),
            });
        }

        let up = raw.upstream;
        let password = access::secret(
            up.password_env.as_ref(),
            up.password_file.as_ref(),
            "upstream",
            base,
            env,
            &at,
        )?;
        let logins = access::logins(up.logins.as_ref(), base, env, &at)?;
        let application_name = match &up.application_name {
            None => DEFAULT_APPLICATION_NAME.to_owned(),
            Some(f) if f.get_ref().is_empty() || f.get_ref().contains("{identity}") => {
                f.get_ref().clone()
            }
            Some(f) => {
                return Err(at.err(
                    f,
                    "upstream.application_name",
                    "must contain `{identity}` (or be \"\" to pass the client's own)".to_owned(),
                ));
            }
        };
        let sslmode = up
            .sslmode
            .as_ref()
            .map_or(SslMode::Prefer, |m| *m.get_ref());
        let ca_file = up.ca_file.as_ref().map(path);
        if sslmode == SslMode::VerifyFull && ca_file.is_none() {
            let span = up.sslmode.as_ref().map_or(0, |s| s.span().start);
            return Err(Error::Invalid {
                file: file.to_owned(),
                line: at.line(span),
                key: "upstream.ca_file".to_owned(),
                message: "sslmode = \"verify-full\" needs `ca_file`".to_owned(),
            });
        }
        let connect_timeout =
            at.duration(up.connect_timeout.as_ref(), "upstream.connect_timeout", 10)?;
        let upstream = Upstream {
            host: up.host.into_inner(),
            port: up.port.unwrap_or(5432),
            user: up.user.into_inner(),
            password,
            sslmode,
            ca_file,
            connect_timeout,
            databases: up.databases.map(Spanned::into_inner).unwrap_or_default(),
            logins,
            application_name,
        };

        let max_message_bytes = match raw.max_message_bytes {
            None => DEFAULT_MAX_MESSAGE_BYTES,
            Some(m) if (1024..=DEFAULT_MAX_MESSAGE_BYTES as u64).contains(m.get_ref()) => {
                *m.get_ref() as usize
            }
            Some(m) => {
                return Err(at.err(
                    &m,
                    "max_message_bytes",
                    format!("must be between 1024 and {DEFAULT_MAX_MESSAGE_BYTES}"),
                ));
            }
        };

        let approvals = match raw.approvals {
            None => Approvals {
                store: ApprovalStore::Embedded,
                webhook_url: None,
                webhook_timeout: Duration::from_secs(5),
            },
            Some(a) => {
                let store = match (
                    a.store.as_ref().map(|s| (s, s.get_ref().as_str())),
                    &a.database,
                ) {
                    (None | Some((_, "embedded")), None) => ApprovalStore::Embedded,
                    (None | Some((_, "embedded")), Some(d)) => {
                        return Err(at.err(
                            d,
                            "approvals.database",
                            "only applies to store = \"postgres\"".to_owned(),
                        ));
                    }
                    (Some((_, "postgres")), Some(d)) => ApprovalStore::Postgres {
                        database: d.get_ref().clone(),
                    },
                    (Some((s, "postgres")), None) => {
                        return Err(at.err(
                            s,
                            "approvals.database",
                            "store = \"postgres\" needs `database`, the server database holding the queue".to_owned(),
                        ));
                    }
                    (Some((s, other)), _) => {
                        return Err(at.err(
                            s,
                            "approvals.store",
                            format!("unknown store `{other}` (embedded or postgres)"),
                        ));
                    }
                };
                if let Some(u) = &a.webhook_url {
                    let url = u.get_ref();
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(at.err(
                            u,
                            "approvals.webhook_url",
                            "must be an http:// or https:// URL".to_owned(),
                        ));
                    }
                }
                Approvals {
                    store,
                    webhook_url: a.webhook_url.map(Spanned::into_inner),
                    webhook_timeout: at.duration(
                        a.webhook_timeout.as_ref(),
                        "approvals.webhook_timeout",
                        5,
                    )?,
                }
            }
        };

        let admin = match raw.admin {
            None => None,
            Some(a) => {
                let listen = a.listen.get_ref().parse().map_err(|e| {
                    at.err(
                        &a.listen,
                        "admin.listen",
                        format!("not an address:port ({e})"),
                    )
                })?;
                let cert_and_key = match (&a.cert, &a.key) {
                    (Some(c), Some(k)) => Some((path(c), path(k))),
                    (None, None) => None,
                    _ => {
                        return Err(at.err(
                            &a.listen,
                            "admin.cert",
                            "HTTPS needs both `cert` and `key`".to_owned(),
                        ));
                    }
                };
                let auditor_roles = a
                    .auditor_roles
                    .unwrap_or_else(|| vec!["auditor".to_owned()]);
                Some(Admin {
                    listen,
                    cert_and_key,
                    auditor_roles,
                })
            }
        };

        Ok(Config {
            auth,
            pool,
            approvals,
            admin,
            listen,
            tls,
            upstream,
            identities: path(&raw.identities),
            rules: path(&raw.rules),
            data_dir,
            mask_key_file: raw.mask_key_file.as_ref().map(path),
            max_message_bytes,
            startup_timeout: at.duration(raw.startup_timeout.as_ref(), "startup_timeout", 60)?,
            shutdown_timeout: at.duration(raw.shutdown_timeout.as_ref(), "shutdown_timeout", 30)?,
            audit,
            token,
        })
    }

    /// Only the `[audit]` section of the file at `path`, for the auditor's tools: nothing else
    /// is validated and no secret is resolved, so it works where the server's secrets are not.
    ///
    /// # Errors
    /// As [`Config::load`], for the file's shape and its `[audit]` section.
    pub fn load_audit(path: &Path) -> Result<Option<Audit>, Error> {
        load_section(path, |raw, data_dir, base, at| {
            audit(raw.audit.as_ref(), data_dir, base, at)
        })
    }
}

/// Reads the file at `path` for one section's sake: its shape is checked, the section is
/// validated by `section` (given the raw file, `data_dir`, the base directory and a locator),
/// and nothing else is resolved.
fn load_section<T>(
    path: &Path,
    section: impl FnOnce(&RawConfig, Option<&Path>, &Path, &Locator<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    let file = path.display().to_string();
    let base = path.parent().unwrap_or(Path::new("."));
    let at = Locator {
        file: &file,
        text: &text,
    };
    let raw: RawConfig = toml::from_str(&text).map_err(|e| Error::Invalid {
        file: file.clone(),
        line: e.span().map_or(0, |s| at.line(s.start)),
        key: String::new(),
        message: e.message().to_owned(),
    })?;
    let data_dir = raw.data_dir.as_ref().map(|d| base.join(d.get_ref()));
    section(&raw, data_dir.as_deref(), base, &at)
}

/// Validates `[audit]`: batched by default when there is a data directory, off otherwise.
fn audit(
    raw: Option<&RawAudit>,
    data_dir: Option<&Path>,
    base: &Path,
    at: &Locator<'_>,
) -> Result<Option<Audit>, Error> {
    let default = RawAudit::default();
    let raw = raw.unwrap_or(&default);
    let explicit = raw.mode.as_ref().map(|m| *m.get_ref());
    let mode = match explicit {
        Some(m) => m,
        None if data_dir.is_some() || raw.dir.is_some() => AuditMode::Batched,
        None => AuditMode::Off,
    };
    if mode == AuditMode::Off {
        return Ok(None);
    }
    let dir = match (&raw.dir, data_dir) {
        (Some(d), _) => base.join(d.get_ref()),
        (None, Some(data)) => data.join("audit"),
        (None, None) => {
            let line = raw.mode.as_ref().map_or(1, |m| at.line(m.span().start));
            return Err(Error::Invalid {
                file: at.file.to_owned(),
                line,
                key: "audit.dir".to_owned(),
                message: "the audit log needs `audit.dir` or `data_dir`".to_owned(),
            });
        }
    };
    let ranged = |v: Option<&Spanned<u64>>, key: &str, default: u64, min: u64, max: u64| match v {
        None => Ok(default),
        Some(v) if (min..=max).contains(v.get_ref()) => Ok(*v.get_ref()),
        Some(v) => Err(at.err(v, key, format!("must be between {min} and {max}"))),
    };
    Ok(Some(Audit {
        mode,
        dir,
        flush_interval: Duration::from_millis(ranged(
            raw.flush_interval_ms.as_ref(),
            "audit.flush_interval_ms",
            20,
            1,
            10_000,
        )?),
        roll_bytes: ranged(
            raw.roll_bytes.as_ref(),
            "audit.roll_bytes",
            64 << 20,
            4096,
            1 << 40,
        )?,
        roll_age: Duration::from_secs(ranged(
            raw.roll_seconds.as_ref(),
            "audit.roll_seconds",
            3600,
            1,
            366 * 86_400,
        )?),
        signing_key_file: raw
            .signing_key_file
            .as_ref()
            .map(|k| base.join(k.get_ref())),
        capture_rows_max_bytes: ranged(
            raw.capture_rows_max_bytes.as_ref(),
            "audit.capture_rows_max_bytes",
            64 << 10,
            0,
            64 << 20,
        )? as usize,
        capture_roles: raw.capture_roles.clone().unwrap_or_default(),
    }))
}

/// The `[token]` section, validated: which bearer tokens are accepted as passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// OIDC tokens of one issuer, when `issuer` is set.
    pub oidc: Option<OidcSettings>,
    /// pgward's own agent tokens, unless `agent_tokens = false`.
    pub agent: Option<AgentTokenSettings>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Accept tokens on plaintext connections from loopback addresses (TLS is required
    /// otherwise).
    pub allow_plaintext_loopback: bool,
}

/// OIDC tokens: who issues them, for whom, and where the issuer's keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// The `iss` a token must carry.
    pub issuer: String,
    /// The audience a token's `aud` must name.
    pub audience: String,
    /// Where the issuer's signing keys are.
    pub jwks: JwksSource,
    /// Extra CA certificates (PEM) trusted when fetching `jwks` over HTTPS.
    pub jwks_ca_file: Option<PathBuf>,
    /// How often the key set is read again.
    pub jwks_refresh: Duration,
    /// The claim that must equal the startup user.
    pub user_claim: UserClaim,
    /// The claim holding the token's groups, each becoming the role `group:NAME`.
    pub groups_claim: String,
}

/// Where an issuer's JSON Web Key Set is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A local file.
    File(PathBuf),
    /// An `https://` URL.
    Url(String),
}

/// The token claim that names the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserClaim {
    /// `sub`
    Sub,
    /// `email`
    Email,
    /// `preferred_username`
    PreferredUsername,
}

/// pgward's own short-lived agent tokens (`pgward token issue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTokenSettings {
    /// The ed25519 key that signs them (32 bytes, created if missing).
    pub key_file: PathBuf,
    /// Their `iss`.
    pub issuer: String,
    /// Their `aud`.
    pub audience: String,
    /// The longest lifetime one may have.
    pub max_ttl: Duration,
}

// === impl UserClaim ===

impl UserClaim {
    /// The claim's name in a token.
    pub fn name(self) -> &'static str {
        match self {
            UserClaim::Sub => "sub",
            UserClaim::Email => "email",
            UserClaim::PreferredUsername => "preferred_username",
        }
    }
}

// === impl Config (token) ===

impl Config {
    /// Only the `[token]` section of the file at `path` (and `data_dir`), for `pgward token
    /// issue`: no other section is validated and no secret is resolved.
    ///
    /// # Errors
    /// As [`Config::load`], for the file's shape and its `[token]` section.
    pub fn load_token(path: &Path) -> Result<Option<TokenSettings>, Error> {
        load_section(path, |raw, data_dir, base, at| {
            token(raw.token.as_ref(), data_dir, base, at)
        })
    }
}

/// Validates `[token]`. Every key that only applies to OIDC needs `issuer`, so that a forgotten
/// `issuer` never silently turns OIDC off.
fn token(
    raw: Option<&Spanned<RawToken>>,
    data_dir: Option<&Path>,
    base: &Path,
    at: &Locator<'_>,
) -> Result<Option<TokenSettings>, Error> {
    let Some(section) = raw else {
        return Ok(None);
    };
    let t = section.get_ref();
    let string = |v: &Spanned<String>, key: &str| -> Result<String, Error> {
        let s = v.get_ref().trim();
        if s.is_empty() {
            return Err(at.err(v, key, "must not be empty".to_owned()));
        }
        Ok(s.to_owned())
    };
    let within = |v: Option<&Spanned<String>>, key: &str, default: u64, min: u64, max: u64| {
        let d = at.duration(v, key, default)?;
        match v {
            Some(v) if d < Duration::from_secs(min) || d > Duration::from_secs(max) => {
                Err(at.err(v, key, format!("must be between {min}s and {max}s")))
            }
            _ => Ok(d),
        }
    };
    let leeway = within(t.leeway.as_ref(), "token.leeway", 30, 0, 300)?;

    let oidc = match &t.issuer {
        None => {
            let oidc_only = [
                (&t.audience, "token.audience"),
                (&t.jwks_file, "token.jwks_file"),
                (&t.jwks_url, "token.jwks_url"),
                (&t.jwks_ca_file, "token.jwks_ca_file"),
                (&t.jwks_refresh, "token.jwks_refresh"),
                (&t.user_claim, "token.user_claim"),
                (&t.groups_claim, "token.groups_claim"),
            ];
            if let Some((Some(v), key)) = oidc_only.into_iter().find(|(v, _)| v.is_some()) {
                return Err(at.err(
                    v,
                    key,
                    "only applies to OIDC tokens: set `token.issuer` too".to_owned(),
                ));
            }
            None
        }
        Some(iss) => {
            let issuer = string(iss, "token.issuer")?;
            let audience = match &t.audience {
                Some(a) => string(a, "token.audience")?,
                None => {
                    return Err(at.err(
                        iss,
                        "token.audience",
                        "OIDC tokens need `audience`: without it a token minted for any other \
                         service of the issuer would be accepted"
                            .to_owned(),
                    ));
                }
            };
            let jwks = match (&t.jwks_file, &t.jwks_url) {
                (Some(f), None) => JwksSource::File(base.join(f.get_ref())),
                (None, Some(u)) => {
                    let url = u.get_ref().trim();
                    if !url.starts_with("https://") || url.len() <= "https://".len() {
                        return Err(at.err(
                            u,
                            "token.jwks_url",
                            "must be an https:// URL".to_owned(),
                        ));
                    }
                    JwksSource::Url(url.to_owned())
                }
                (Some(_), Some(u)) => {
                    return Err(at.err(
                        u,
                        "token.jwks_url",
                        "give either `jwks_file` or `jwks_url`, not both".to_owned(),
                    ));
                }
                (None, None) => {
                    return Err(at.err(
                        iss,
                        "token.jwks_file",
                        "OIDC tokens need the issuer's keys: `jwks_file` or `jwks_url`".to_owned(),
                    ));
                }
            };
            if let (Some(ca), JwksSource::File(_)) = (&t.jwks_ca_file, &jwks) {
                return Err(at.err(
                    ca,
                    "token.jwks_ca_file",
                    "only applies to `jwks_url`".to_owned(),
                ));
            }
            let user_claim = match t.user_claim.as_ref().map(|c| (c, c.get_ref().as_str())) {
                None | Some((_, "sub")) => UserClaim::Sub,
                Some((_, "email")) => UserClaim::Email,
                Some((_, "preferred_username")) => UserClaim::PreferredUsername,
                Some((c, other)) => {
                    return Err(at.err(
                        c,
                        "token.user_claim",
                        format!("unknown claim `{other}` (sub, email or preferred_username)"),
                    ));
                }
            };
            let groups_claim = match &t.groups_claim {
                None => "groups".to_owned(),
                Some(g) => string(g, "token.groups_claim")?,
            };
            Some(OidcSettings {
                issuer,
                audience,
                jwks,
                jwks_ca_file: t.jwks_ca_file.as_ref().map(|f| base.join(f.get_ref())),
                jwks_refresh: within(
                    t.jwks_refresh.as_ref(),
                    "token.jwks_refresh",
                    300,
                    10,
                    86_400,
                )?,
                user_claim,
                groups_claim,
            })
        }
    };

    let agent = if let Some(off) = t.agent_tokens.as_ref().filter(|a| !*a.get_ref()) {
        if oidc.is_none() {
            return Err(at.err(
                off,
                "token.agent_tokens",
                "with agent tokens off, `[token]` needs `issuer`, or no token is ever accepted"
                    .to_owned(),
            ));
        }
        None
    } else {
        let key_file = match (&t.agent_key_file, data_dir) {
            (Some(k), _) => base.join(k.get_ref()),
            (None, Some(d)) => d.join("token.key"),
            (None, None) => {
                return Err(Error::Invalid {
                    file: at.file.to_owned(),
                    line: at.line(section.span().start),
                    key: "token.agent_key_file".to_owned(),
                    message: "agent tokens need `agent_key_file` or `data_dir` (or set \
                              `agent_tokens = false`)"
                        .to_owned(),
                });
            }
        };
        let issuer = match &t.agent_issuer {
            Some(i) => string(i, "token.agent_issuer")?,
            None => "pgward".to_owned(),
        };
        if let Some(o) = oidc.as_ref().filter(|o| o.issuer == issuer) {
            let span = t.agent_issuer.as_ref().or(t.issuer.as_ref());
            return Err(Error::Invalid {
                file: at.file.to_owned(),
                line: span.map_or(at.line(section.span().start), |s| at.line(s.span().start)),
                key: "token.agent_issuer".to_owned(),
                message: format!(
                    "agent tokens and OIDC tokens need different issuers (both are `{}`)",
                    o.issuer
                ),
            });
        }
        Some(AgentTokenSettings {
            key_file,
            issuer,
            audience: match &t.agent_audience {
                Some(a) => string(a, "token.agent_audience")?,
                None => "pgward".to_owned(),
            },
            max_ttl: within(
                t.agent_max_ttl.as_ref(),
                "token.agent_max_ttl",
                3600,
                1,
                86_400,
            )?,
        })
    };

    Ok(Some(TokenSettings {
        oidc,
        agent,
        leeway,
        allow_plaintext_loopback: t.allow_plaintext_loopback.unwrap_or(false),
    }))
}

// === impl Upstream ===

impl Upstream {
    /// The server database for a client's database name, or `None` when pgward does not serve it.
    pub fn map_database<'a>(&'a self, client_db: &'a str) -> Option<&'a str> {
        if self.databases.is_empty() {
            return Some(client_db);
        }
        self.databases
            .get(client_db)
            .or_else(|| self.databases.get("*"))
            .map(String::as_str)
    }
}

// === impl Secret ===

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    /// The secret itself: call only where it is sent to the server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("_")
    }
}

// === impl ProcessEnv ===

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Parses durations such as `500ms`, `30s`, `10m`, `1h`; a bare number is seconds.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30s, 10m, 1h"))?;
    let unit_ms = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` (use ms, s, m or h)"
            ));
        }
    };
    Ok(Duration::from_millis(n.saturating_mul(unit_ms)))
}

/// Maps byte offsets in the file to line numbers for error messages.
struct Locator<'a> {
    file: &'a str,
    text: &'a str,
}

impl Locator<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }
    fn err<T>(&self, at: &Spanned<T>, key: &str, message: String) -> Error {
        Error::Invalid {
            file: self.file.to_owned(),
            line: self.line(at.span().start),
            key: key.to_owned(),
            message,
        }
    }
    fn duration(
        &self,
        value: Option<&Spanned<String>>,
        key: &str,
        default_secs: u64,
    ) -> Result<Duration, Error> {
        match value {
            None => Ok(Duration::from_secs(default_secs)),
            Some(v) => parse_duration(v.get_ref()).map_err(|m| self.err(v, key, m)),
        }
    }
}

#[cfg(test)]
mod tests;
