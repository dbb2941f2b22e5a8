//! pgward's own agent tokens: short-lived JWTs, signed EdDSA with pgward's ed25519 key, for
//! teams without an identity provider (`pgward token issue`).
//!
//! The key is a 32-byte seed in `data_dir/token.key` (or `[token] agent_key_file`), created with
//! mode 0600 on first use. An agent token carries `iss`, `aud`, `sub` (the identity), `roles`,
//! `iat`, `nbf`, `exp` and a random `jti`; its header's `kid` is [`AgentKey::kid`]. The
//! verifier ([`super::token::TokenVerifier`]) trusts its `roles` claim because only this key can
//! sign it. The seed never reaches `Debug` output or a log.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::AgentTokenSettings;

/// Characters of the key's thumbprint used as `kid`.
const KID_LEN: usize = 16;
/// The PKCS#8 v1 (RFC 8410) prefix of an Ed25519 private key: the seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Why an agent token could not be issued, or its key loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key file could not be read or created.
    #[error("agent token key: {0}")]
    Key(#[from] crate::keyfile::Error),
    /// The lifetime asked for is above `agent_max_ttl`.
    #[error(
        "a lifetime of {} exceeds the agent token limit of {} (token.agent_max_ttl)",
        human(*.ttl),
        human(*.max)
    )]
    TtlTooLong {
        /// Asked for.
        ttl: Duration,
        /// The limit.
        max: Duration,
    },
    /// A lifetime under one second.
    #[error("the lifetime must be at least 1s")]
    TtlTooShort,
    /// An empty identity or role name.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// Signing failed.
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

/// pgward's agent-token key.
pub struct AgentKey {
    signing: SigningKey,
    kid: String,
}

/// The claims of an agent token.
#[derive(Debug, Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    roles: &'a [String],
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
}

// === impl AgentKey ===

impl AgentKey {
    /// The key in `path`, created (32 random bytes, mode 0600) when missing.
    ///
    /// # Errors
    /// [`Error::Key`] when the file can't be read or created, or is too short.
    pub fn load_or_create(path: &Path) -> Result<AgentKey, Error> {
        let bytes = crate::keyfile::load_or_create(path, 32)?;
        let seed: [u8; 32] = bytes
            .get(..32)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| crate::keyfile::Error::TooShort {
                path: path.to_owned(),
                len: bytes.len(),
                min: 32,
            })?;
        Ok(AgentKey::from_seed(seed))
    }

    /// The key with this seed.
    pub fn from_seed(seed: [u8; 32]) -> AgentKey {
        let signing = SigningKey::from_bytes(&seed);
        let kid = thumbprint(&signing.verifying_key().to_bytes());
        AgentKey { signing, kid }
    }

    /// A short fingerprint of the public key: the start of its RFC 7638 JWK thumbprint.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The public key, for verification.
    pub fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_ed_der(&self.public_key())
    }

    /// Issues a token for `identity` with `roles`, valid from `now` for `ttl`.
    ///
    /// # Errors
    /// [`Error::TtlTooLong`] above `settings.max_ttl`, [`Error::TtlTooShort`] under a second,
    /// [`Error::Empty`] for an empty identity or role.
    pub fn issue(
        &self,
        settings: &AgentTokenSettings,
        identity: &str,
        roles: &[String],
        ttl: Duration,
        now: SystemTime,
    ) -> Result<String, Error> {
        if ttl > settings.max_ttl {
            return Err(Error::TtlTooLong {
                ttl,
                max: settings.max_ttl,
            });
        }
        if ttl < Duration::from_secs(1) {
            return Err(Error::TtlTooShort);
        }
        if identity.trim().is_empty() {
            return Err(Error::Empty("the identity"));
        }
        if roles.iter().any(|r| r.trim().is_empty()) {
            return Err(Error::Empty("a role"));
        }
        let iat = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claims = Claims {
            iss: &settings.issuer,
            aud: &settings.audience,
            sub: identity,
            roles,
            iat,
            nbf: iat,
            exp: iat.saturating_add(ttl.as_secs()),
            jti: URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let mut der = Vec::with_capacity(48);
        der.extend_from_slice(&PKCS8_ED25519_PREFIX);
        der.extend_from_slice(self.signing.as_bytes());
        let key = EncodingKey::from_ed_der(&der);
        jsonwebtoken::encode(&header, &claims, &key).map_err(|e| Error::Sign(e.to_string()))
    }
}

impl std::fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The first [`KID_LEN`] characters of the RFC 7638 thumbprint of an Ed25519 public key.
fn thumbprint(public: &[u8; 32]) -> String {
    let jwk = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public)
    );
    let mut kid = URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()));
    kid.truncate(KID_LEN);
    kid
}

/// `90m` → `1h30m`; whole seconds.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}
