//! Bearer tokens as the password: OIDC JWTs checked against an issuer's key set, and pgward's
//! own agent tokens ([`super::agent`]).
//!
//! [`TokenVerifier::verify`] takes the token a client sent as its cleartext password and the
//! startup user, and returns a [`VerifiedToken`] or an [`Error`] naming the precise reason for
//! pgward's log (the client is only told that authentication failed).
//!
//! Invariants:
//! - Only RS256, ES256 and EdDSA are accepted, each with a key of its own type: `alg: none`,
//!   every HS*, and an alg that does not fit the key (or the JWK's own `alg`) are refused before
//!   any signature check. Signatures are checked by `jsonwebtoken`, never here.
//! - The issuer picks the trust domain: a token with the agent issuer is verified with pgward's
//!   key only, one with the OIDC issuer with the issuer's key set only. Only agent tokens carry
//!   roles (`roles` claim); OIDC tokens only get groups (members `group:NAME`), whatever they claim.
//! - `exp` is required; `exp`, `nbf`, `iss`, `aud` and the user claim are checked after the
//!   signature, with the configured leeway.
//! - Verification never does I/O: the key set is read from memory ([`super::jwks`]).
//! - No token, key or secret ever appears in an error, a log or `Debug` output. Strings taken
//!   from a token (issuer, audience, user, alg) are shortened and escaped before they are shown.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use tracing::debug;

use super::agent::{self, AgentKey};
use super::jwks::{self, Jwks, Key, KeyKind, RefreshTask};
use crate::config::{TokenSettings, UserClaim};
use crate::proto::{Severity, Side, SqlState, ToErrorResponse};

/// Tokens longer than this are refused unread.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest string taken from a token that an error shows.
const SHOWN_MAX: usize = 64;

/// Why a token was refused. Every reason is precise, for pgward's log; none holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not a JWS compact token (three base64url parts, JSON header and claims).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("token of {len} bytes is longer than the {limit} accepted")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// An algorithm other than RS256, ES256 and EdDSA (`none`, HS256 …).
    #[error("token algorithm {alg} is not accepted (only RS256, ES256 and EdDSA)")]
    BadAlgorithm {
        /// The header's `alg`, shortened and quoted.
        alg: String,
    },
    /// The header has a `crit` parameter, naming extensions pgward does not understand.
    #[error("token header has critical extensions (`crit`), which are not supported")]
    CriticalHeader,
    /// The token's alg does not fit the type of the key it names.
    #[error("token is signed {alg} but key {kid} is an {key_type} key (it verifies {expected})")]
    KeyTypeMismatch {
        /// The token's alg.
        alg: &'static str,
        /// The key's id, quoted, or `(no kid)`.
        kid: String,
        /// The key's type.
        key_type: &'static str,
        /// The alg the key verifies.
        expected: &'static str,
    },
    /// The JWK names its own `alg`, and it is not the token's.
    #[error("token is signed {alg} but key {kid} is for {jwk_alg}")]
    JwkAlgMismatch {
        /// The token's alg.
        alg: &'static str,
        /// The key's id, quoted, or `(no kid)`.
        kid: String,
        /// The JWK's `alg`, quoted.
        jwk_alg: String,
    },
    /// The token names a key the issuer's current key set lacks.
    #[error("token names key {kid}, which is not in the issuer's key set")]
    UnknownKid {
        /// The `kid`, shortened and quoted.
        kid: String,
    },
    /// The token names no key and the key set has none for its alg.
    #[error("token names no kid, and the issuer's key set has no {alg} key")]
    NoKeyForAlg {
        /// The token's alg.
        alg: &'static str,
    },
    /// The issuer's key set has not been read yet (or never could be).
    #[error("no keys loaded for issuer {issuer}: {reason}")]
    NoKeys {
        /// The configured issuer.
        issuer: String,
        /// Why: the last failure to read the key set.
        reason: String,
    },
    /// The signature does not verify with the key (or any key) it may be checked with.
    #[error("token signature does not verify")]
    BadSignature,
    /// Past `exp` (plus leeway).
    #[error("token expired at {exp} (now {now}, leeway {leeway}s)")]
    Expired {
        /// `exp`, Unix seconds.
        exp: i64,
        /// The time of the check, Unix seconds.
        now: i64,
        /// The leeway, seconds.
        leeway: u64,
    },
    /// Before `nbf` (minus leeway).
    #[error("token not valid before {nbf} (now {now}, leeway {leeway}s)")]
    NotYetValid {
        /// `nbf`, Unix seconds.
        nbf: i64,
        /// The time of the check, Unix seconds.
        now: i64,
        /// The leeway, seconds.
        leeway: u64,
    },
    /// A required claim is missing.
    #[error("token has no `{0}` claim")]
    MissingClaim(String),
    /// A claim has the wrong type (a date that is not a number, groups that are not strings …).
    #[error("token claim `{0}` is malformed")]
    BadClaim(String),
    /// The issuer is neither the OIDC issuer nor the agent issuer (when those are accepted).
    #[error("token issuer {got} is not trusted")]
    WrongIssuer {
        /// The token's `iss`, shortened and quoted.
        got: String,
    },
    /// The audience does not include the one configured.
    #[error("token audience {got} does not include {expected:?}")]
    WrongAudience {
        /// The audience pgward expects.
        expected: String,
        /// The token's `aud`, shortened and quoted.
        got: String,
    },
    /// The user claim is not the startup user.
    #[error("token claim `{claim}` is {got}, but the startup user is {user}")]
    UserMismatch {
        /// The claim compared.
        claim: &'static str,
        /// Its value, shortened and quoted.
        got: String,
        /// The startup user, shortened and quoted.
        user: String,
    },
    /// An agent token living longer than `agent_max_ttl` allows.
    #[error("agent token lifetime of {lifetime}s exceeds token.agent_max_ttl ({max}s)")]
    LifetimeTooLong {
        /// `exp - iat`, seconds.
        lifetime: i64,
        /// The limit, seconds.
        max: u64,
    },
}

/// Why a [`TokenVerifier`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The OIDC key set.
    #[error(transparent)]
    Jwks(#[from] jwks::Error),
    /// pgward's agent-token key.
    #[error(transparent)]
    Agent(#[from] agent::Error),
}

/// Which kind of token a client presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Issued by the configured OIDC issuer.
    Oidc,
    /// Issued by pgward (`pgward token issue`).
    Agent,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The identity: the startup user, which the token's user claim equals.
    pub name: String,
    /// The token's groups as the IdP names them (OIDC tokens only); rules make them role
    /// members as `group:NAME` ([`RuleSet::roles_for`](crate::policy::RuleSet::roles_for)).
    pub groups: Vec<String>,
    /// Roles named by the token (agent tokens only).
    pub roles: Vec<String>,
    /// The token's issuer.
    pub issuer: String,
    /// When it expires (`exp`).
    pub expires: SystemTime,
    /// OIDC or agent.
    pub kind: TokenKind,
}

/// Verifies tokens against the `[token]` settings. Build it once, share it (`Arc`), and call
/// [`TokenVerifier::start_refresh`] inside the runtime when an OIDC key set must be kept current.
pub struct TokenVerifier {
    oidc: Option<Oidc>,
    agent: Option<Agent>,
    leeway: Duration,
    refresh: Option<RefreshTask>,
}

struct Oidc {
    issuer: String,
    audience: String,
    user_claim: UserClaim,
    groups_claim: String,
    jwks: Arc<Jwks>,
}

struct Agent {
    issuer: String,
    audience: String,
    max_ttl: Duration,
    kid: String,
    key: DecodingKey,
}

/// The header members read before the signature is checked.
#[derive(Debug, Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<Value>,
}

// === impl TokenVerifier ===

impl TokenVerifier {
    /// A verifier for `settings`: reads a `jwks_file`, and loads (creating it if missing) the
    /// agent-token key. A `jwks_url` is not fetched here: until [`TokenVerifier::start_refresh`]
    /// (or [`TokenVerifier::refresh_keys`]) reads it, OIDC tokens are refused with
    /// [`Error::NoKeys`].
    ///
    /// # Errors
    /// An unreadable or invalid key-set file or CA file, or an unusable agent key file.
    pub fn new(settings: &TokenSettings) -> Result<TokenVerifier, SetupError> {
        let oidc = match &settings.oidc {
            None => None,
            Some(o) => Some(Oidc {
                issuer: o.issuer.clone(),
                audience: o.audience.clone(),
                user_claim: o.user_claim,
                groups_claim: o.groups_claim.clone(),
                jwks: Arc::new(Jwks::new(
                    &o.jwks,
                    o.jwks_ca_file.as_deref(),
                    o.jwks_refresh,
                )?),
            }),
        };
        let agent = match &settings.agent {
            None => None,
            Some(a) => {
                let key = AgentKey::load_or_create(&a.key_file)?;
                Some(Agent {
                    issuer: a.issuer.clone(),
                    audience: a.audience.clone(),
                    max_ttl: a.max_ttl,
                    kid: key.kid().to_owned(),
                    key: key.decoding_key(),
                })
            }
        };
        Ok(TokenVerifier {
            oidc,
            agent,
            leeway: settings.leeway,
            refresh: None,
        })
    }

    /// [`TokenVerifier::new`], then [`TokenVerifier::start_refresh`]: what the server calls at
    /// start, inside its runtime.
    ///
    /// # Errors
    /// As [`TokenVerifier::new`].
    ///
    /// # Panics
    /// Outside a tokio runtime, when there is an OIDC key set to refresh.
    pub fn start(settings: &TokenSettings) -> Result<TokenVerifier, SetupError> {
        let mut verifier = TokenVerifier::new(settings)?;
        verifier.start_refresh();
        Ok(verifier)
    }

    /// A verifier over given parts, for tests: an OIDC key source and an agent key.
    #[cfg(any(test, fuzzing))]
    pub fn for_test(
        settings: &TokenSettings,
        jwks: Option<Arc<Jwks>>,
        agent: Option<&AgentKey>,
    ) -> TokenVerifier {
        TokenVerifier {
            oidc: settings.oidc.as_ref().zip(jwks).map(|(o, jwks)| Oidc {
                issuer: o.issuer.clone(),
                audience: o.audience.clone(),
                user_claim: o.user_claim,
                groups_claim: o.groups_claim.clone(),
                jwks,
            }),
            agent: settings.agent.as_ref().zip(agent).map(|(a, key)| Agent {
                issuer: a.issuer.clone(),
                audience: a.audience.clone(),
                max_ttl: a.max_ttl,
                kid: key.kid().to_owned(),
                key: key.decoding_key(),
            }),
            leeway: settings.leeway,
            refresh: None,
        }
    }

    /// Starts keeping the OIDC key set current in the background (a URL is fetched at once).
    /// Does nothing without OIDC, or when already started. The task stops when the verifier is
    /// dropped.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start_refresh(&mut self) {
        if let (Some(o), None) = (&self.oidc, &self.refresh) {
            self.refresh = Some(o.jwks.spawn_refresh());
        }
    }

    /// Reads the OIDC key set once now, e.g. to wait for it at start. `Ok(0)` without OIDC.
    ///
    /// # Errors
    /// Why the key set could not be read; the last good keys stay in use.
    pub async fn refresh_keys(&self) -> Result<usize, jwks::Error> {
        match &self.oidc {
            Some(o) => o.jwks.refresh().await,
            None => Ok(0),
        }
    }

    /// The OIDC key source, if OIDC tokens are accepted.
    pub fn jwks(&self) -> Option<&Arc<Jwks>> {
        self.oidc.as_ref().map(|o| &o.jwks)
    }

    /// Checks `token` (a client's cleartext password) for the startup user `startup_user`, now.
    ///
    /// # Performance
    /// No I/O, no lock and no waiting: one signature check, or one per key of the token's type
    /// when the token names no `kid`; so it is called directly from the handshake task.
    ///
    /// # Errors
    /// The precise reason the token is refused; see [`Error`].
    pub fn verify(&self, token: &str, startup_user: &str) -> Result<VerifiedToken, Error> {
        self.verify_at(token, startup_user, SystemTime::now())
    }

    /// Verifies a token presented on its own, with no startup user to match (the admin API and
    /// console): the identity is whatever its user claim says, once everything else checks out.
    ///
    /// # Errors
    /// As [`TokenVerifier::verify`].
    pub fn verify_bearer(&self, token: &str) -> Result<VerifiedToken, Error> {
        let payload = token
            .trim_ascii()
            .split('.')
            .nth(1)
            .ok_or(Error::Malformed("not three dot-separated parts"))?;
        let unverified: Map<String, Value> = json_part(payload, "claims")?;
        let iss = unverified.get("iss").and_then(Value::as_str);
        let claim = match (&self.agent, &self.oidc) {
            (Some(agent), _) if iss == Some(agent.issuer.as_str()) => "sub",
            (_, Some(oidc)) => oidc.user_claim.name(),
            _ => "sub",
        };
        // Only names the user to compare with: `verify` checks the signature and that claim.
        let user = unverified
            .get(claim)
            .and_then(Value::as_str)
            .ok_or_else(|| Error::MissingClaim(claim.to_owned()))?;
        self.verify(token, user)
    }

    /// As [`TokenVerifier::verify`], at the time `now`.
    ///
    /// # Errors
    /// The precise reason the token is refused; see [`Error`].
    pub fn verify_at(
        &self,
        token: &str,
        startup_user: &str,
        now: SystemTime,
    ) -> Result<VerifiedToken, Error> {
        let token = token.trim_ascii();
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Error::TooLong {
                len: token.len(),
                limit: MAX_TOKEN_BYTES,
            });
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Malformed("not three dot-separated parts"));
        };
        // An empty signature is left to the algorithm check: `alg: none` tokens have one, and
        // deserve the precise reason.
        if header.is_empty() || payload.is_empty() {
            return Err(Error::Malformed("an empty header or claims part"));
        }
        let header: RawHeader = json_part(header, "header")?;
        let alg = match header.alg.as_deref() {
            Some("RS256") => Algorithm::RS256,
            Some("ES256") => Algorithm::ES256,
            Some("EdDSA") => Algorithm::EdDSA,
            Some(other) => return Err(Error::BadAlgorithm { alg: shown(other) }),
            None => return Err(Error::Malformed("the header has no `alg`")),
        };
        if header.crit.is_some() {
            return Err(Error::CriticalHeader);
        }
        // The issuer chooses which keys may verify the token; it is read before the signature
        // is checked only for that, and checked again on the verified claims below.
        let unverified: Map<String, Value> = json_part(payload, "claims")?;
        let iss = match unverified.get("iss") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(Error::BadClaim("iss".to_owned())),
            None => return Err(Error::MissingClaim("iss".to_owned())),
        };
        if let Some(agent) = self.agent.as_ref().filter(|a| a.issuer == iss) {
            if alg != Algorithm::EdDSA {
                return Err(Error::KeyTypeMismatch {
                    alg: alg_name(alg),
                    kid: shown(&agent.kid),
                    key_type: KeyKind::Ed25519.name(),
                    expected: alg_name(Algorithm::EdDSA),
                });
            }
            if let Some(kid) = header.kid.as_deref().filter(|k| *k != agent.kid) {
                return Err(Error::UnknownKid { kid: shown(kid) });
            }
            let claims = decode(token, &agent.key, alg)?;
            return self.check_agent(agent, &claims, startup_user, now);
        }
        let Some(oidc) = self.oidc.as_ref().filter(|o| o.issuer == iss) else {
            return Err(Error::WrongIssuer { got: shown(iss) });
        };
        let state = oidc.jwks.state();
        let Some(keys) = state.keys.as_ref() else {
            return Err(Error::NoKeys {
                issuer: oidc.issuer.clone(),
                reason: state
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "no key set read yet".to_owned()),
            });
        };
        let candidates = match candidates(keys.keys(), header.kid.as_deref(), alg) {
            Ok(c) => c,
            Err(e) => {
                if matches!(e, Error::UnknownKid { .. }) && oidc.jwks.request_refresh() {
                    debug!(issuer = %oidc.issuer, "Unknown kid: asked for an early key-set refresh");
                }
                return Err(e);
            }
        };
        let mut last = Error::BadSignature;
        for key in candidates {
            match decode(token, key.decoding_key(), alg) {
                Ok(claims) => return self.check_oidc(oidc, &claims, startup_user, now),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn check_agent(
        &self,
        agent: &Agent,
        claims: &Map<String, Value>,
        startup_user: &str,
        now: SystemTime,
    ) -> Result<VerifiedToken, Error> {
        check_issuer(claims, &agent.issuer)?;
        let exp = self.check_times(claims, now)?;
        check_audience(claims, &agent.audience)?;
        let name = check_user(claims, "sub", startup_user)?;
        let iat = date(claims, "iat")?.ok_or_else(|| Error::MissingClaim("iat".to_owned()))?;
        let lifetime = exp.saturating_sub(iat);
        let max = agent.max_ttl.as_secs();
        if lifetime > i64::try_from(max.saturating_add(self.leeway.as_secs())).unwrap_or(i64::MAX) {
            return Err(Error::LifetimeTooLong { lifetime, max });
        }
        Ok(VerifiedToken {
            name,
            groups: Vec::new(),
            roles: strings(claims, "roles")?,
            issuer: agent.issuer.clone(),
            expires: unix(exp),
            kind: TokenKind::Agent,
        })
    }

    fn check_oidc(
        &self,
        oidc: &Oidc,
        claims: &Map<String, Value>,
        startup_user: &str,
        now: SystemTime,
    ) -> Result<VerifiedToken, Error> {
        check_issuer(claims, &oidc.issuer)?;
        let exp = self.check_times(claims, now)?;
        check_audience(claims, &oidc.audience)?;
        let name = check_user(claims, oidc.user_claim.name(), startup_user)?;
        let groups = strings(claims, &oidc.groups_claim)?;
        Ok(VerifiedToken {
            name,
            groups,
            roles: Vec::new(),
            issuer: oidc.issuer.clone(),
            expires: unix(exp),
            kind: TokenKind::Oidc,
        })
    }

    /// Checks `exp` (required) and `nbf`, returning `exp`.
    fn check_times(&self, claims: &Map<String, Value>, now: SystemTime) -> Result<i64, Error> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let leeway = self.leeway.as_secs();
        let lee = i64::try_from(leeway).unwrap_or(i64::MAX);
        let exp = date(claims, "exp")?.ok_or_else(|| Error::MissingClaim("exp".to_owned()))?;
        if now >= exp.saturating_add(lee) {
            return Err(Error::Expired { exp, now, leeway });
        }
        if let Some(nbf) = date(claims, "nbf")?
            && now.saturating_add(lee) < nbf
        {
            return Err(Error::NotYetValid { nbf, now, leeway });
        }
        // `iat`, when present, must at least be a date.
        date(claims, "iat")?;
        Ok(exp)
    }
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("oidc_issuer", &self.oidc.as_ref().map(|o| &o.issuer))
            .field("agent_issuer", &self.agent.as_ref().map(|a| &a.issuer))
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

// === impl Error ===

impl ToErrorResponse for Error {
    fn sqlstate(&self) -> SqlState {
        match self {
            Error::NoKeys { .. } => SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            _ => SqlState::INVALID_PASSWORD,
        }
    }
    fn severity(&self) -> Severity {
        Severity::Fatal
    }
    fn side(&self) -> Side {
        match self {
            Error::NoKeys { .. } => Side::Internal,
            _ => Side::Client,
        }
    }
}

/// The keys of `keys` that may check a token signed `alg` naming `kid`.
fn candidates<'k>(
    keys: &'k [Key],
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Vec<&'k Key>, Error> {
    let fits = |k: &Key| -> Result<(), Error> {
        let shown_kid = k.kid().map_or_else(|| "(no kid)".to_owned(), shown);
        if k.kind().algorithm() != alg {
            return Err(Error::KeyTypeMismatch {
                alg: alg_name(alg),
                kid: shown_kid,
                key_type: k.kind().name(),
                expected: alg_name(k.kind().algorithm()),
            });
        }
        match k.alg() {
            Some(jwk_alg) if jwk_alg != alg_name(alg) => Err(Error::JwkAlgMismatch {
                alg: alg_name(alg),
                kid: shown_kid,
                jwk_alg: shown(jwk_alg),
            }),
            _ => Ok(()),
        }
    };
    match kid {
        Some(kid) => {
            let named: Vec<&Key> = keys.iter().filter(|k| k.kid() == Some(kid)).collect();
            if named.is_empty() {
                return Err(Error::UnknownKid { kid: shown(kid) });
            }
            let mut first_err = None;
            let mut fitting = Vec::with_capacity(named.len());
            for k in named {
                match fits(k) {
                    Ok(()) => fitting.push(k),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            match first_err {
                Some(e) if fitting.is_empty() => Err(e),
                _ => Ok(fitting),
            }
        }
        None => {
            let fitting: Vec<&Key> = keys.iter().filter(|k| fits(k).is_ok()).collect();
            if fitting.is_empty() {
                return Err(Error::NoKeyForAlg { alg: alg_name(alg) });
            }
            Ok(fitting)
        }
    }
}

/// Checks the signature with `key` and returns the claims. Claims are checked by the caller:
/// `jsonwebtoken`'s own claim checks are off, so that each failure has its precise reason and
/// the time can be given.
fn decode(token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Map<String, Value>, Error> {
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    match jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::Provider(_) => Error::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => Error::BadAlgorithm {
                alg: shown(alg_name(alg)),
            },
            ErrorKind::Base64(_) => Error::Malformed("a part is not base64url"),
            ErrorKind::Json(_) | ErrorKind::Utf8(_) => Error::Malformed("a part is not JSON"),
            _ => Error::Malformed("rejected by the JWT decoder"),
        }),
    }
}

fn check_issuer(claims: &Map<String, Value>, issuer: &str) -> Result<(), Error> {
    match claims.get("iss") {
        Some(Value::String(s)) if s == issuer => Ok(()),
        Some(Value::String(s)) => Err(Error::WrongIssuer { got: shown(s) }),
        Some(_) => Err(Error::BadClaim("iss".to_owned())),
        None => Err(Error::MissingClaim("iss".to_owned())),
    }
}

fn check_audience(claims: &Map<String, Value>, audience: &str) -> Result<(), Error> {
    let wrong = |got: &Value| Error::WrongAudience {
        expected: audience.to_owned(),
        got: shown(&got.to_string()),
    };
    match claims.get("aud") {
        Some(Value::String(s)) if s == audience => Ok(()),
        Some(v @ Value::String(_)) => Err(wrong(v)),
        Some(Value::Array(items)) => {
            if items.iter().any(|i| !i.is_string()) {
                return Err(Error::BadClaim("aud".to_owned()));
            }
            if items.iter().any(|i| i.as_str() == Some(audience)) {
                Ok(())
            } else {
                Err(wrong(&Value::Array(items.clone())))
            }
        }
        Some(_) => Err(Error::BadClaim("aud".to_owned())),
        None => Err(Error::MissingClaim("aud".to_owned())),
    }
}

fn check_user(
    claims: &Map<String, Value>,
    claim: &'static str,
    startup_user: &str,
) -> Result<String, Error> {
    match claims.get(claim) {
        Some(Value::String(s)) if s.is_empty() => Err(Error::BadClaim(claim.to_owned())),
        Some(Value::String(s)) if s == startup_user => Ok(s.clone()),
        Some(Value::String(s)) => Err(Error::UserMismatch {
            claim,
            got: shown(s),
            user: shown(startup_user),
        }),
        Some(_) => Err(Error::BadClaim(claim.to_owned())),
        None => Err(Error::MissingClaim(claim.to_owned())),
    }
}

/// A NumericDate claim, in whole seconds (rounded towards the stricter side is not needed:
/// fractions are dropped, which makes `exp` end earlier and `nbf` start up to a second early,
/// inside any leeway).
fn date(claims: &Map<String, Value>, claim: &str) -> Result<Option<i64>, Error> {
    match claims.get(claim) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 1e15)
                    .map(|f| f.floor() as i64)
            })
            .map(Some)
            .ok_or_else(|| Error::BadClaim(claim.to_owned())),
        Some(_) => Err(Error::BadClaim(claim.to_owned())),
    }
}

/// A claim holding a string or an array of strings; absent means none. Empty strings and
/// repeats are dropped.
fn strings(claims: &Map<String, Value>, claim: &str) -> Result<Vec<String>, Error> {
    let bad = || Error::BadClaim(claim.to_owned());
    let mut out: Vec<String> = match claims.get(claim) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad()),
    };
    out.retain(|s| !s.is_empty());
    let mut seen = std::collections::HashSet::new();
    out.retain(|s| seen.insert(s.clone()));
    Ok(out)
}

fn json_part<T: serde::de::DeserializeOwned>(part: &str, what: &'static str) -> Result<T, Error> {
    let bytes = jwks::b64url(part).ok_or(Error::Malformed(match what {
        "header" => "the header is not base64url",
        _ => "the claims are not base64url",
    }))?;
    serde_json::from_slice(&bytes).map_err(|_| {
        Error::Malformed(match what {
            "header" => "the header is not a JSON object",
            _ => "the claims are not a JSON object",
        })
    })
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        _ => "an unsupported algorithm",
    }
}

fn unix(secs: i64) -> SystemTime {
    u64::try_from(secs).map_or(UNIX_EPOCH, |s| UNIX_EPOCH + Duration::from_secs(s))
}

/// A string from a token, made safe to show: at most [`SHOWN_MAX`] characters, quoted and
/// escaped.
fn shown(s: &str) -> String {
    let mut cut: String = s.chars().take(SHOWN_MAX).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

#[cfg(test)]
mod tests;
