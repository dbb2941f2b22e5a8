use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::*;

/// The loopback HTTPS key-set server, shared with the token tests.
#[path = "../../../tests/it/support/jwks.rs"]
pub(crate) mod server;

use server::JwksServer;

fn ed_jwk(kid: &str, seed: u8) -> Value {
    let public = ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
        .verifying_key()
        .to_bytes();
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": URL_SAFE_NO_PAD.encode(public)})
}

fn set(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

fn kids(jwks: &Jwks) -> Vec<String> {
    jwks.state()
        .keys
        .as_ref()
        .map(|k| {
            k.keys()
                .iter()
                .filter_map(|k| k.kid().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn unusable_keys_are_skipped() {
    let b = |len: usize| URL_SAFE_NO_PAD.encode(vec![0x42u8; len]);
    let doc = set(&[
        json!({"kty": "RSA", "kid": "short-rsa", "n": b(128), "e": "AQAB"}),
        json!({"kty": "RSA", "kid": "rsa", "n": b(256), "e": "AQAB", "alg": "RS256"}),
        json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": b(256), "e": "AQAB"}),
        json!({"kty": "oct", "kid": "hmac", "k": b(32)}),
        json!({"kty": "EC", "crv": "P-384", "kid": "p384", "x": b(48), "y": b(48)}),
        json!({"kty": "EC", "crv": "P-256", "kid": "p256", "x": b(32), "y": b(32)}),
        json!({"kty": "EC", "crv": "P-256", "kid": "p256-short", "x": b(31), "y": b(32)}),
        json!({"kty": "OKP", "crv": "X25519", "kid": "x25519", "x": b(32)}),
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed-short", "x": b(16)}),
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b(32)}),
        json!("not an object"),
        json!({"kid": "no-kty"}),
    ]);
    let keys = KeySet::parse(doc.as_bytes()).unwrap();
    let found: Vec<(Option<&str>, KeyKind)> =
        keys.keys().iter().map(|k| (k.kid(), k.kind())).collect();
    assert_eq!(
        found,
        [
            (Some("rsa"), KeyKind::Rsa),
            (Some("p256"), KeyKind::P256),
            (Some("ed"), KeyKind::Ed25519)
        ]
    );
    assert_eq!(keys.keys()[0].alg(), Some("RS256"));

    let only_bad = set(&[json!({"kty": "oct", "k": b(32)})]);
    assert!(matches!(
        KeySet::parse(only_bad.as_bytes()),
        Err(Error::NoUsableKeys { total: 1 })
    ));
    assert!(matches!(KeySet::parse(b"<html>"), Err(Error::Parse(_))));
    assert!(matches!(
        KeySet::parse(b"{\"kees\":[]}"),
        Err(Error::Parse(_))
    ));
}

#[test]
fn a_file_is_read_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, set(&[ed_jwk("a", 1)])).unwrap();
    let jwks = Jwks::new(
        &JwksSource::File(path.clone()),
        None,
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(kids(&jwks), ["a"]);
    assert!(jwks.state().last_error.is_none());
    std::fs::write(&path, "{}").unwrap();
    assert!(matches!(
        Jwks::new(&JwksSource::File(path), None, Duration::from_secs(60)),
        Err(Error::Parse(_))
    ));
    assert!(matches!(
        Jwks::new(
            &JwksSource::File(dir.path().join("missing")),
            None,
            Duration::from_secs(60)
        ),
        Err(Error::Read { .. })
    ));
}

#[tokio::test]
async fn a_broken_file_keeps_the_last_good_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, set(&[ed_jwk("a", 1)])).unwrap();
    let jwks = Jwks::new(
        &JwksSource::File(path.clone()),
        None,
        Duration::from_secs(60),
    )
    .unwrap();
    std::fs::write(&path, "not json").unwrap();
    assert!(jwks.refresh().await.is_err());
    assert_eq!(kids(&jwks), ["a"]);
    assert!(jwks.state().last_error.is_some());
    std::fs::write(&path, set(&[ed_jwk("b", 2)])).unwrap();
    assert_eq!(jwks.refresh().await.unwrap(), 1);
    assert_eq!(kids(&jwks), ["b"]);
    assert!(jwks.state().last_error.is_none());
}

#[tokio::test]
async fn https_fetch_rotation_and_outage_keep_the_last_good_keys() {
    let mut server = JwksServer::start(set(&[ed_jwk("k1", 1)])).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = server.write_ca(dir.path());
    let source = JwksSource::Url(server.url());
    let jwks = Jwks::new(&source, Some(&ca), Duration::from_secs(60)).unwrap();
    assert!(kids(&jwks).is_empty(), "nothing is fetched before asked");
    assert_eq!(jwks.refresh().await.unwrap(), 1);
    assert_eq!(kids(&jwks), ["k1"]);

    // The issuer rotates its keys.
    server.set_body(set(&[ed_jwk("k2", 2), ed_jwk("k1", 1)]));
    jwks.refresh().await.unwrap();
    assert_eq!(kids(&jwks), ["k2", "k1"]);

    // A bad answer keeps the last good set.
    server.set_body("{\"keys\": []}");
    assert!(matches!(
        jwks.refresh().await,
        Err(Error::NoUsableKeys { total: 0 })
    ));
    assert_eq!(kids(&jwks), ["k2", "k1"]);

    // The issuer goes down.
    server.stop();
    let e = jwks.refresh().await.unwrap_err();
    assert!(matches!(e, Error::Fetch { .. }), "{e}");
    assert_eq!(kids(&jwks), ["k2", "k1"]);
    let reason = jwks.state().last_error.clone().unwrap();
    assert!(reason.contains("cannot fetch"), "{reason}");
    assert!(reason.contains(&server.url()), "{reason}");
}

#[tokio::test]
async fn an_unknown_ca_is_a_precise_failure() {
    let server = JwksServer::start(set(&[ed_jwk("k1", 1)])).await;
    let jwks = Jwks::new(
        &JwksSource::Url(server.url()),
        None,
        Duration::from_secs(60),
    )
    .unwrap();
    let e = jwks.refresh().await.unwrap_err().to_string();
    assert!(e.contains("UnknownIssuer"), "{e}");
    assert!(jwks.state().keys.is_none());
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn the_refresh_task_retries_refreshes_and_keeps_keys_through_an_outage() {
    let mut server = JwksServer::start("not yet a key set").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = server.write_ca(dir.path());
    let jwks = Arc::new(
        Jwks::new(
            &JwksSource::Url(server.url()),
            Some(&ca),
            Duration::from_millis(200),
        )
        .unwrap(),
    );
    let task = jwks.spawn_refresh();
    // A bad start: no keys, with the reason.
    eventually("a first failed fetch", || server.hits() >= 1).await;
    eventually("the failure reason", || {
        jwks.state()
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("JSON Web Key Set"))
    })
    .await;
    assert!(jwks.state().keys.is_none());
    // Retried in the background until it works.
    server.set_body(set(&[ed_jwk("k1", 1)]));
    eventually("the first keys", || kids(&jwks) == ["k1"]).await;
    // Rotation is picked up on the interval.
    server.set_body(set(&[ed_jwk("k2", 2)]));
    eventually("the rotated keys", || kids(&jwks) == ["k2"]).await;
    // An outage keeps the last good keys.
    server.stop();
    eventually("a failed refresh", || jwks.state().last_error.is_some()).await;
    assert_eq!(kids(&jwks), ["k2"]);
    drop(task);
}

#[tokio::test]
async fn an_unknown_kid_asks_for_an_early_refresh_at_most_once_per_interval() {
    let server = JwksServer::start(set(&[ed_jwk("k1", 1)])).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = server.write_ca(dir.path());
    let jwks = Arc::new(
        Jwks::new(
            &JwksSource::Url(server.url()),
            Some(&ca),
            Duration::from_secs(3600),
        )
        .unwrap(),
    );
    assert_eq!(jwks.kid_refetch_interval(), Duration::from_secs(30));
    let _task = jwks.spawn_refresh();
    eventually("the first keys", || kids(&jwks) == ["k1"]).await;
    server.set_body(set(&[ed_jwk("k2", 2)]));
    assert!(jwks.request_refresh());
    eventually("the rotated keys", || kids(&jwks) == ["k2"]).await;
    let hits = server.hits();
    // A flood of unknown kids: all but the first are ignored.
    for _ in 0..100 {
        assert!(!jwks.request_refresh());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.hits(), hits);
}

#[test]
fn only_https_urls() {
    for url in ["http://idp.test/jwks", "not a url", "ftp://x/y"] {
        assert!(matches!(
            Jwks::new(
                &JwksSource::Url(url.to_owned()),
                None,
                Duration::from_secs(60)
            ),
            Err(Error::Url)
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "no certificate here").unwrap();
    assert!(matches!(
        Jwks::new(
            &JwksSource::Url("https://idp.test/jwks".to_owned()),
            Some(&ca),
            Duration::from_secs(60)
        ),
        Err(Error::Ca { .. })
    ));
}

#[test]
fn shown_urls_lose_credentials_and_query() {
    let jwks = Jwks::new(
        &JwksSource::Url("https://user:pw@idp.test/jwks?key=secret".to_owned()),
        None,
        Duration::from_secs(60),
    )
    .unwrap();
    let shown = format!("{jwks:?}");
    assert!(shown.contains("https://idp.test/jwks"), "{shown}");
    assert!(
        !shown.contains("secret") && !shown.contains("pw@"),
        "{shown}"
    );
}
