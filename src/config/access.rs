//! Who may connect and how pgward reaches the server for them: `[[auth]]` entries, client
//! certificates, per-role upstream logins and the upstream connection pool.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Env, Error, Locator, Secret};
use crate::auth::{AddressRange, AuthMethod, AuthRule, AuthRules};
use crate::policy::Glob;

/// `[[auth]]`: one authentication entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthRule {
    /// Identity-name globs (the startup user); every identity when absent.
    pub identities: Option<Vec<Spanned<String>>>,
    /// Database-name globs (as the client asks); every database when absent.
    pub databases: Option<Vec<Spanned<String>>>,
    /// Client address ranges (`10.0.0.0/8`, `::1`); every address when absent.
    pub addresses: Option<Vec<Spanned<String>>>,
    /// `scram`, `token`, `cert` or `reject`.
    pub method: Spanned<String>,
}

/// `[upstream.logins.NAME]`: the secret of one server login named by a role's `upstream_user`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    /// Name of an environment variable holding the password.
    pub password_env: Option<Spanned<String>>,
    /// Path of a file holding the password.
    pub password_file: Option<Spanned<String>>,
}

/// `[pool]`: authenticated upstream connections kept for the next session.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// Pooling on (the default) or off.
    pub enabled: Option<bool>,
    /// Most server connections per (database, login, startup parameters).
    pub max_size: Option<Spanned<u64>>,
    /// How long a session waits for a connection before 53300, e.g. `"10s"`.
    pub acquire_timeout: Option<Spanned<String>>,
    /// An idle connection is closed after this long, e.g. `"10m"`.
    pub idle_timeout: Option<Spanned<String>>,
    /// A connection is closed once this old, e.g. `"1h"`.
    pub max_lifetime: Option<Spanned<String>>,
    /// Client-side database-name globs whose sessions get a fresh connection each.
    pub exclude_databases: Option<Vec<Spanned<String>>>,
    /// Roles whose sessions get a fresh connection each.
    pub exclude_roles: Option<Vec<String>>,
}

/// The validated `[pool]`.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Whether sessions share connections at all.
    pub enabled: bool,
    /// Most server connections per pool key.
    pub max_size: usize,
    /// How long a session waits for a connection.
    pub acquire_timeout: Duration,
    /// Idle connections older than this are closed.
    pub idle_timeout: Duration,
    /// Connections older than this are closed when returned or found idle.
    pub max_lifetime: Duration,
    /// Databases (client-side names) that are never pooled.
    pub(crate) exclude_databases: Vec<Glob>,
    /// Roles whose sessions are never pooled.
    pub exclude_roles: Vec<String>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            enabled: true,
            max_size: 20,
            acquire_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            exclude_databases: Vec::new(),
            exclude_roles: Vec::new(),
        }
    }
}

/// How a client certificate names its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertIdentity {
    /// The subject's common name.
    CommonName,
    /// The first e-mail or DNS subject alternative name.
    SubjectAltName,
}

/// Client certificates: the CA they must chain to and where the identity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCerts {
    /// PEM CA certificates.
    pub ca_file: PathBuf,
    /// Which field names the identity.
    pub identity: CertIdentity,
}

/// Validates the `[[auth]]` entries.
pub(super) fn auth_rules(raw: &[RawAuthRule], at: &Locator<'_>) -> Result<AuthRules, Error> {
    let mut rules = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let key = |field: &str| format!("auth[{i}].{field}");
        let globs = |list: &Option<Vec<Spanned<String>>>, field: &str| {
            list.iter()
                .flatten()
                .map(|g| Glob::new(g.get_ref()).map_err(|m| at.err(g, &key(field), m)))
                .collect::<Result<Vec<_>, _>>()
        };
        let method = AuthMethod::parse(r.method.get_ref()).ok_or_else(|| {
            at.err(
                &r.method,
                &key("method"),
                format!(
                    "unknown method `{}` (scram, token, cert or reject)",
                    r.method.get_ref()
                ),
            )
        })?;
        let addresses = r
            .addresses
            .iter()
            .flatten()
            .map(|a| AddressRange::parse(a.get_ref()).map_err(|m| at.err(a, &key("addresses"), m)))
            .collect::<Result<Vec<_>, _>>()?;
        rules.push(AuthRule {
            identities: globs(&r.identities, "identities")?,
            databases: globs(&r.databases, "databases")?,
            addresses,
            method,
            at: format!("{}:{}", at.file, at.line(r.method.span().start)),
        });
    }
    Ok(AuthRules::new(rules))
}

/// Resolves a password from `password_env` or `password_file` (one of them, or neither).
pub(super) fn secret(
    password_env: Option<&Spanned<String>>,
    password_file: Option<&Spanned<String>>,
    section: &str,
    base: &Path,
    env: &dyn Env,
    at: &Locator<'_>,
) -> Result<Option<Secret>, Error> {
    match (password_env, password_file) {
        (Some(_), Some(f)) => Err(at.err(
            f,
            &format!("{section}.password_file"),
            "give either `password_env` or `password_file`, not both".to_owned(),
        )),
        (Some(var), None) => env.var(var.get_ref()).map(Secret).map(Some).ok_or_else(|| {
            at.err(
                var,
                &format!("{section}.password_env"),
                format!("environment variable {} is not set", var.get_ref()),
            )
        }),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(base.join(f.get_ref())).map_err(|e| {
                at.err(
                    f,
                    &format!("{section}.password_file"),
                    format!("cannot read: {e}"),
                )
            })?;
            Ok(Some(Secret(text.trim_end_matches(['\r', '\n']).to_owned())))
        }
        (None, None) => Ok(None),
    }
}

/// Validates `[upstream.logins]`: login name → its password.
pub(super) fn logins(
    raw: Option<&BTreeMap<String, RawLogin>>,
    base: &Path,
    env: &dyn Env,
    at: &Locator<'_>,
) -> Result<BTreeMap<String, Option<Secret>>, Error> {
    let mut out = BTreeMap::new();
    for (name, login) in raw.into_iter().flatten() {
        let section = format!("upstream.logins.{name}");
        let password = secret(
            login.password_env.as_ref(),
            login.password_file.as_ref(),
            &section,
            base,
            env,
            at,
        )?;
        out.insert(name.clone(), password);
    }
    Ok(out)
}

/// Validates `[pool]`.
pub(super) fn pool(raw: Option<&RawPool>, at: &Locator<'_>) -> Result<Pool, Error> {
    let Some(raw) = raw else {
        return Ok(Pool::default());
    };
    let default = Pool::default();
    let max_size = match &raw.max_size {
        None => default.max_size,
        Some(m) if (1..=10_000).contains(m.get_ref()) => *m.get_ref() as usize,
        Some(m) => {
            return Err(at.err(m, "pool.max_size", "must be between 1 and 10000".to_owned()));
        }
    };
    let exclude_databases = raw
        .exclude_databases
        .iter()
        .flatten()
        .map(|g| Glob::new(g.get_ref()).map_err(|m| at.err(g, "pool.exclude_databases", m)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Pool {
        enabled: raw.enabled.unwrap_or(true),
        max_size,
        acquire_timeout: at.duration(raw.acquire_timeout.as_ref(), "pool.acquire_timeout", 10)?,
        idle_timeout: at.duration(raw.idle_timeout.as_ref(), "pool.idle_timeout", 600)?,
        max_lifetime: at.duration(raw.max_lifetime.as_ref(), "pool.max_lifetime", 3600)?,
        exclude_databases,
        exclude_roles: raw.exclude_roles.clone().unwrap_or_default(),
    })
}

/// Validates the client-certificate keys of `[tls]`.
pub(super) fn client_certs(
    ca_file: Option<&Spanned<String>>,
    identity: Option<&Spanned<String>>,
    base: &Path,
    at: &Locator<'_>,
) -> Result<Option<ClientCerts>, Error> {
    let identity_kind = match identity {
        None => CertIdentity::CommonName,
        Some(s) => match s.get_ref().as_str() {
            "cn" => CertIdentity::CommonName,
            "san" => CertIdentity::SubjectAltName,
            other => {
                return Err(at.err(
                    s,
                    "tls.cert_identity",
                    format!("unknown `{other}` (cn or san)"),
                ));
            }
        },
    };
    match (ca_file, identity) {
        (Some(ca), _) => Ok(Some(ClientCerts {
            ca_file: base.join(ca.get_ref()),
            identity: identity_kind,
        })),
        (None, Some(s)) => Err(at.err(
            s,
            "tls.client_ca",
            "`cert_identity` needs `client_ca`".to_owned(),
        )),
        (None, None) => Ok(None),
    }
}
