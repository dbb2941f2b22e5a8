//! Configuration: the TOML file (`raw`) turned into the validated [`Config`] the rest of pgward uses.
//!
//! Parsing takes a `&str` and an [`Env`]; reading files happens at the edges ([`Config::load`]).
//! Every error names the file, the line and the key. Secrets are resolved here, once, and never
//! reach `Debug` output.

pub mod raw;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use raw::{AuditMode, SslMode, TlsMode};
use raw::{RawAudit, RawConfig};
use toml::Spanned;

/// PostgreSQL's own limit for one message (1 GiB − 1): large enough for any COPY row or bytea.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 0x3fff_ffff;

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

        let listen = raw
            .listen
            .get_ref()
            .parse()
            .map_err(|e| at.err(&raw.listen, "listen", format!("not an address:port ({e})")))?;

        let tls = match raw.tls {
            None => ClientTls {
                mode: TlsMode::Disable,
                cert_and_key: None,
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
                ClientTls { mode, cert_and_key }
            }
        };

        let up = raw.upstream;
        let password = match (&up.password_env, &up.password_file) {
            (Some(_), Some(f)) => {
                return Err(at.err(
                    f,
                    "upstream.password_file",
                    "give either `password_env` or `password_file`, not both".to_owned(),
                ));
            }
            (Some(var), None) => Some(Secret(env.var(var.get_ref()).ok_or_else(|| {
                at.err(
                    var,
                    "upstream.password_env",
                    format!("environment variable {} is not set", var.get_ref()),
                )
            })?)),
            (None, Some(f)) => {
                let text = std::fs::read_to_string(path(f)).map_err(|e| {
                    at.err(f, "upstream.password_file", format!("cannot read: {e}"))
                })?;
                Some(Secret(text.trim_end_matches(['\r', '\n']).to_owned()))
            }
            (None, None) => None,
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
        })
    }

    /// Only the `[audit]` section of the file at `path`, for the auditor's tools: nothing else
    /// is validated and no secret is resolved, so it works where the server's secrets are not.
    ///
    /// # Errors
    /// As [`Config::load`], for the file's shape and its `[audit]` section.
    pub fn load_audit(path: &Path) -> Result<Option<Audit>, Error> {
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
        audit(raw.audit.as_ref(), data_dir.as_deref(), base, &at)
    }
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
