//! The signing keys of a token issuer: a JSON Web Key Set (RFC 7517) read from a file or fetched
//! over HTTPS, and kept current in the background.
//!
//! Invariants:
//! - Verification never waits on the network: it reads the current [`KeySet`] from an
//!   [`ArcSwap`]; only the refresh task ([`Jwks::spawn_refresh`]) does I/O.
//! - A failed refresh keeps the last good key set (and logs a warning); before the first good
//!   one there are no keys, and every token is refused with the reason of the last failure.
//! - Only RS256 (RSA, 2048 bits or more), ES256 (EC P-256) and EdDSA (OKP Ed25519) signing keys
//!   are kept; any other key is skipped with a debug log.
//! - A token naming an unknown `kid` may ask for an early refresh ([`Jwks::request_refresh`]),
//!   at most once per [`Jwks::kid_refetch_interval`], so a flood of made-up kids can't hammer
//!   the issuer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tracing::{debug, info, warn};

use crate::config::JwksSource;

/// Largest key set accepted from a file or a URL.
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// Time limit of one fetch of a key-set URL.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// RSA keys shorter than this are skipped.
pub const MIN_RSA_BITS: usize = 2048;
/// The longest an unknown `kid` makes the refresh task wait before it fetches again.
const MAX_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// The shortest refresh interval, whatever is asked.
const MIN_REFRESH: Duration = Duration::from_millis(50);
/// First retry delay after a failed refresh; doubles up to the refresh interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Why a key set could not be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key-set file could not be read.
    #[error("cannot read key set {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key-set URL could not be fetched (connection, TLS, timeout …).
    #[error("cannot fetch key set {url}: {message}")]
    Fetch {
        /// The URL, without user info or query.
        url: String,
        /// The cause, with its chain.
        message: String,
    },
    /// The key-set URL answered with an error status.
    #[error("key set {url} answered HTTP {status}")]
    Status {
        /// The URL, without user info or query.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The key set is larger than [`MAX_JWKS_BYTES`].
    #[error("key set is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The document is not a JSON Web Key Set.
    #[error("not a JSON Web Key Set: {0}")]
    Parse(String),
    /// The key set holds no key pgward can use.
    #[error(
        "the key set holds {total} keys, none usable (RS256 with 2048+ bits, ES256 on P-256 or \
         EdDSA on Ed25519, for signing)"
    )]
    NoUsableKeys {
        /// How many keys it held.
        total: usize,
    },
    /// The extra CA file (`jwks_ca_file`) is unreadable or not PEM certificates.
    #[error("jwks_ca_file {path}: {message}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The HTTPS client could not be set up.
    #[error("cannot set up the HTTPS client for jwks_url: {0}")]
    Client(String),
    /// The key-set URL is not a valid `https://` URL.
    #[error("jwks_url is not a valid https:// URL")]
    Url,
}

/// The kind of a usable key, which fixes the one algorithm it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA, for RS256.
    Rsa,
    /// EC on P-256, for ES256.
    P256,
    /// OKP on Ed25519, for EdDSA.
    Ed25519,
}

/// One usable verification key.
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    alg: Option<String>,
    kind: KeyKind,
    decoding: DecodingKey,
}

/// The usable keys of one issuer, as of one read of its key set.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// What the verifier currently knows: the last good key set, and why the last refresh failed.
#[derive(Debug, Default)]
pub struct KeyState {
    /// The last good key set; `None` until one has been read.
    pub keys: Option<Arc<KeySet>>,
    /// The reason the last refresh failed, cleared by a good one.
    pub last_error: Option<String>,
}

/// An issuer's key set and where it comes from. Share it in an [`Arc`]; one refresh task keeps
/// it current.
pub struct Jwks {
    source: Source,
    state: ArcSwap<KeyState>,
    refresh: Duration,
    kid_refetch: Duration,
    last_kid_refetch: Mutex<Option<Instant>>,
    wake: tokio::sync::Notify,
}

/// The background refresh of a [`Jwks`]; dropping it stops the task.
#[derive(Debug)]
pub struct RefreshTask(tokio::task::JoinHandle<()>);

enum Source {
    /// Keys given once ([`Jwks::fixed`]), never refreshed.
    Fixed,
    File(PathBuf),
    Url {
        url: reqwest::Url,
        shown: String,
        client: reqwest::Client,
    },
}

/// One JWK as found in the set: only the members pgward reads.
#[derive(Debug, Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawJwkSet {
    keys: Vec<serde_json::Value>,
}

// === impl KeyKind ===

impl KeyKind {
    /// The one algorithm a key of this kind verifies.
    pub fn algorithm(self) -> Algorithm {
        match self {
            KeyKind::Rsa => Algorithm::RS256,
            KeyKind::P256 => Algorithm::ES256,
            KeyKind::Ed25519 => Algorithm::EdDSA,
        }
    }

    /// The JWK key type and curve, for messages.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Rsa => "RSA",
            KeyKind::P256 => "EC P-256",
            KeyKind::Ed25519 => "OKP Ed25519",
        }
    }
}

// === impl Key ===

impl Key {
    /// A key from its parts; `alg` is the JWK's own `alg`, if it has one.
    pub fn new(
        kid: Option<String>,
        alg: Option<String>,
        kind: KeyKind,
        decoding: DecodingKey,
    ) -> Key {
        Key {
            kid,
            alg,
            kind,
            decoding,
        }
    }

    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The JWK's own `alg`, if it names one.
    pub fn alg(&self) -> Option<&str> {
        self.alg.as_deref()
    }

    /// The key's kind.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key, for `jsonwebtoken`.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

// === impl KeySet ===

impl KeySet {
    /// A set of the given keys.
    pub fn new(keys: Vec<Key>) -> KeySet {
        KeySet { keys }
    }

    /// Parses a JSON Web Key Set, keeping the usable keys (see the module docs).
    ///
    /// # Errors
    /// [`Error::Parse`] when it is not a key set, [`Error::NoUsableKeys`] when no key is usable.
    pub fn parse(json: &[u8]) -> Result<KeySet, Error> {
        let raw: RawJwkSet =
            serde_json::from_slice(json).map_err(|e| Error::Parse(e.to_string()))?;
        let total = raw.keys.len();
        let mut keys = Vec::with_capacity(total);
        for (i, value) in raw.keys.into_iter().enumerate() {
            let raw = match serde_json::from_value::<RawJwk>(value) {
                Ok(raw) => raw,
                Err(e) => {
                    debug!(index = i, error = %e, "JWK skipped: not a key object");
                    continue;
                }
            };
            match key_from_jwk(raw) {
                Ok(key) => keys.push(key),
                Err((kid, why)) => debug!(index = i, kid = ?kid, why, "JWK skipped"),
            }
        }
        if keys.is_empty() {
            return Err(Error::NoUsableKeys { total });
        }
        Ok(KeySet { keys })
    }

    /// The keys.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

// === impl Jwks ===

impl Jwks {
    /// A key source refreshed every `refresh`. A file is read now, so that a broken file stops
    /// pgward at start; a URL is only fetched by the refresh task (or [`Jwks::refresh`]).
    ///
    /// # Errors
    /// An unreadable or invalid key-set file, an unreadable `ca_file`, or an invalid URL.
    pub fn new(
        source: &JwksSource,
        ca_file: Option<&Path>,
        refresh: Duration,
    ) -> Result<Jwks, Error> {
        let source = match source {
            JwksSource::File(path) => Source::File(path.clone()),
            JwksSource::Url(url) => {
                let url: reqwest::Url = url.parse().map_err(|_| Error::Url)?;
                if url.scheme() != "https" {
                    return Err(Error::Url);
                }
                let mut shown = url.clone();
                let _ = shown.set_username("");
                let _ = shown.set_password(None);
                shown.set_query(None);
                shown.set_fragment(None);
                Source::Url {
                    url,
                    shown: shown.to_string(),
                    client: http_client(ca_file)?,
                }
            }
        };
        let jwks = Jwks {
            source,
            state: ArcSwap::from_pointee(KeyState {
                keys: None,
                last_error: Some("the key set has not been fetched yet".to_owned()),
            }),
            // A zero interval would spin.
            refresh: refresh.max(MIN_REFRESH),
            kid_refetch: refresh.clamp(MIN_REFRESH, MAX_KID_REFETCH_INTERVAL),
            last_kid_refetch: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
        };
        if let Source::File(path) = &jwks.source {
            let keys = KeySet::parse(&read_file(path)?)?;
            jwks.store(keys);
        }
        Ok(jwks)
    }

    /// A source that always holds `keys` (never refreshed), for tests and embedding.
    pub fn fixed(keys: KeySet) -> Jwks {
        let jwks = Jwks {
            source: Source::Fixed,
            state: ArcSwap::from_pointee(KeyState::default()),
            refresh: Duration::MAX,
            kid_refetch: Duration::MAX,
            last_kid_refetch: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
        };
        jwks.store(keys);
        jwks
    }

    /// The current keys and the last failure. Never waits.
    pub fn state(&self) -> Arc<KeyState> {
        self.state.load_full()
    }

    /// The least time between two early refreshes asked for by unknown kids.
    pub fn kid_refetch_interval(&self) -> Duration {
        self.kid_refetch
    }

    /// Reads the key set once; on success it replaces the current one. On failure the last good
    /// set stays, and the failure becomes [`KeyState::last_error`].
    ///
    /// # Errors
    /// Why the key set could not be read; the caller logs it.
    pub async fn refresh(&self) -> Result<usize, Error> {
        let result = match &self.source {
            Source::Fixed => return Ok(self.state().keys.as_ref().map_or(0, |k| k.len())),
            Source::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_file(&path))
                    .await
                    .map_err(|e| Error::Parse(format!("reading task failed: {e}")))
                    .and_then(|r| r)
                    .and_then(|bytes| KeySet::parse(&bytes))
            }
            Source::Url { url, shown, client } => fetch(client, url, shown)
                .await
                .and_then(|bytes| KeySet::parse(&bytes)),
        };
        match result {
            Ok(keys) => {
                let n = keys.len();
                self.store(keys);
                Ok(n)
            }
            Err(e) => {
                let reason = e.to_string();
                self.state.rcu(|old| KeyState {
                    keys: old.keys.clone(),
                    last_error: Some(reason.clone()),
                });
                Err(e)
            }
        }
    }

    /// Asks the refresh task for an early refresh, because a token named a `kid` the current set
    /// lacks. Ignored when the last such request was less than [`Jwks::kid_refetch_interval`]
    /// ago. Never waits.
    pub fn request_refresh(&self) -> bool {
        if matches!(self.source, Source::Fixed) {
            return false;
        }
        let mut last = self
            .last_kid_refetch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < self.kid_refetch) {
            return false;
        }
        *last = Some(now);
        drop(last);
        self.wake.notify_one();
        true
    }

    /// Starts the refresh task: a URL is fetched at once, then every `refresh`; a file is read
    /// again every `refresh`. After a failure it retries sooner (1 s, doubling up to `refresh`),
    /// keeping the last good keys meanwhile.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn_refresh(self: &Arc<Self>) -> RefreshTask {
        let jwks = Arc::clone(self);
        RefreshTask(tokio::spawn(async move { jwks.refresh_loop().await }))
    }

    async fn refresh_loop(&self) {
        let mut retry = FIRST_RETRY;
        let mut due = match self.source {
            Source::Fixed => return,
            Source::File(_) => false,
            Source::Url { .. } => true,
        };
        loop {
            if due {
                match self.refresh().await {
                    Ok(n) => {
                        retry = FIRST_RETRY;
                        debug!(source = %self.describe(), keys = n, "Token key set refreshed");
                    }
                    Err(e) => {
                        let kept = self.state().keys.as_ref().map_or(0, |k| k.len());
                        if kept == 0 {
                            warn!(source = %self.describe(), error = %e, retry_in = ?retry,
                                "Token key set unavailable: every token is refused until it is read");
                        } else {
                            warn!(source = %self.describe(), error = %e, kept_keys = kept, retry_in = ?retry,
                                "Token key set refresh failed; keeping the last good keys");
                        }
                    }
                }
            }
            let wait = if self.state().last_error.is_some() {
                let w = retry.min(self.refresh);
                retry = retry.saturating_mul(2);
                w
            } else {
                self.refresh
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {
                    info!(source = %self.describe(), "Token key set refresh: a token named an unknown kid");
                }
            }
            due = true;
        }
    }

    fn store(&self, keys: KeySet) {
        self.state.store(Arc::new(KeyState {
            keys: Some(Arc::new(keys)),
            last_error: None,
        }));
    }

    fn describe(&self) -> String {
        match &self.source {
            Source::Fixed => "(fixed keys)".to_owned(),
            Source::File(p) => p.display().to_string(),
            Source::Url { shown, .. } => shown.clone(),
        }
    }
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("source", &self.describe())
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

// === impl RefreshTask ===

impl Drop for RefreshTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn http_client(ca_file: Option<&Path>) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .https_only(true);
    if let Some(path) = ca_file {
        let ca = |message: String| Error::Ca {
            path: path.to_owned(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| ca(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca("holds no PEM certificate".to_owned()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| Error::Client(chain(&e)))
}

async fn fetch(
    client: &reqwest::Client,
    url: &reqwest::Url,
    shown: &str,
) -> Result<Vec<u8>, Error> {
    let fetch_err = |e: reqwest::Error| Error::Fetch {
        url: shown.to_owned(),
        message: chain(&e.without_url()),
    };
    let mut response = client
        .get(url.clone())
        .header(
            reqwest::header::ACCEPT,
            "application/json, application/jwk-set+json",
        )
        .send()
        .await
        .map_err(fetch_err)?;
    if !response.status().is_success() {
        return Err(Error::Status {
            url: shown.to_owned(),
            status: response.status().as_u16(),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(fetch_err)? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(Error::TooLarge {
                limit: MAX_JWKS_BYTES,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    let read = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read)?.len();
    if len > MAX_JWKS_BYTES as u64 {
        return Err(Error::TooLarge {
            limit: MAX_JWKS_BYTES,
        });
    }
    std::fs::read(path).map_err(read)
}

/// An error and its causes, `: `-separated (reqwest hides the useful part in the sources).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// base64url, with or without padding (RFC 7518 says without; some issuers pad).
pub(crate) fn b64url(s: &str) -> Option<Vec<u8>> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    ENGINE.decode(s).ok()
}

/// A usable key from a JWK, or its kid and why it is skipped.
fn key_from_jwk(raw: RawJwk) -> Result<Key, (Option<String>, &'static str)> {
    let kid = raw.kid.clone();
    let skip = |why| Err((kid.clone(), why));
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return skip("not a signing key (`use` is not \"sig\")");
    }
    let field = |v: &Option<String>| v.as_deref().and_then(b64url);
    let (kind, decoding) = match (raw.kty.as_deref(), raw.crv.as_deref()) {
        (Some("RSA"), _) => {
            let (Some(n), Some(e)) = (field(&raw.n), field(&raw.e)) else {
                return skip("RSA key without valid `n` and `e`");
            };
            let n_bits = n
                .iter()
                .position(|&b| b != 0)
                .map_or(0, |first| (n.len() - first) * 8);
            if n_bits < MIN_RSA_BITS {
                return skip("RSA key shorter than 2048 bits");
            }
            if e.is_empty() || e.len() > 8 {
                return skip("RSA key with an invalid exponent");
            }
            (KeyKind::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        (Some("EC"), Some("P-256")) => {
            let (Some(x), Some(y)) = (field(&raw.x), field(&raw.y)) else {
                return skip("EC key without valid `x` and `y`");
            };
            if x.len() != 32 || y.len() != 32 {
                return skip("EC P-256 key whose coordinates are not 32 bytes");
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (KeyKind::P256, DecodingKey::from_ec_der(&point))
        }
        (Some("OKP"), Some("Ed25519")) => {
            let Some(x) = field(&raw.x) else {
                return skip("OKP key without a valid `x`");
            };
            if x.len() != 32 {
                return skip("Ed25519 key that is not 32 bytes");
            }
            (KeyKind::Ed25519, DecodingKey::from_ed_der(&x))
        }
        (Some("EC" | "OKP"), _) => return skip("unsupported curve (only P-256 and Ed25519)"),
        _ => return skip("unsupported key type (only RSA, EC and OKP)"),
    };
    Ok(Key {
        kid: raw.kid,
        alg: raw.alg,
        kind,
        decoding,
    })
}

#[cfg(test)]
pub(crate) mod tests;
