//! The `token` method through pgward: OIDC tokens checked against a JWKS (file and HTTPS URL),
//! pgward's own agent tokens, and every bad token refused with one answer.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;

use crate::support::jwks::JwksServer;
use crate::support::{Harness, Running, fatal};

const ISS: &str = "https://idp.test";
const AUD: &str = "pgward-db";
const RSA_PEM: &str = include_str!("../../fixtures/tokens/rsa2048.pem");
const RSA_PUBLIC_PEM: &str = include_str!("../../fixtures/tokens/rsa2048.pub.pem");

const RULES: &str = r#"
[roles.agents]
members = ["group:ai-agents"]

[roles.reader]
description = "given by agent tokens"

[[rules]]
id = "agents-read"
roles = ["agents", "reader"]
classes = ["read", "session", "tx"]
action = "allow"

[roles.everyone]
members = ["alice"]

[[rules]]
id = "alice-all"
roles = ["everyone"]
classes = ["read", "write", "ddl", "session", "tx"]
action = "allow"
"#;

/// The issuer's signing keys and their JWKS.
struct Issuer {
    rsa: EncodingKey,
    ec: EncodingKey,
    jwks: Value,
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

impl Issuer {
    fn new() -> Issuer {
        let rsa = EncodingKey::from_rsa_der(&pem_der(RSA_PEM));
        let mut rsa_jwk =
            serde_json::to_value(Jwk::from_encoding_key(&rsa, Algorithm::RS256).unwrap()).unwrap();
        rsa_jwk["kid"] = json!("rsa");
        let ec_pair = rcgen::KeyPair::generate().unwrap();
        let ec = EncodingKey::from_ec_der(&ec_pair.serialize_der());
        let point = ec_pair.public_key_raw();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let ec_jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": "ec",
            "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..]),
        });
        Issuer {
            rsa,
            ec,
            jwks: json!({ "keys": [rsa_jwk, ec_jwk] }),
        }
    }

    fn sign(&self, alg: Algorithm, kid: &str, claims: &Value) -> String {
        let key = match alg {
            Algorithm::ES256 => &self.ec,
            _ => &self.rsa,
        };
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(sub: &str, groups: &[&str]) -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": sub,
        "iat": now(), "nbf": now() - 5, "exp": now() + 600,
        "groups": groups,
    })
}

/// pgward with TLS, `[token]` for the issuer and agent tokens, and tokens for `ana`, `agent-*`.
async fn start(jwks_keys: &str, state: &Path) -> Running {
    Harness::new()
        .rules(RULES)
        .tls("allow")
        .admin()
        .config(&format!(
            r#"data_dir = {state:?}

{jwks_keys}
audience = "{AUD}"
issuer = "{ISS}"
leeway = "5s"

[[auth]]
identities = ["ana", "agent-*"]
method = "token"

[[auth]]
method = "scram"
"#,
            state = state.display().to_string(),
        ))
        .start()
        .await
}

/// [`start`] with the issuer's key set in a JWKS file; the state directory lives as long as
/// the returned `TempDir`.
async fn start_with_jwks_file(issuer: &Issuer) -> (Running, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let jwks = state.path().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks.to_string()).unwrap();
    let h = start(
        &format!("[token]\njwks_file = {:?}", jwks.display().to_string()),
        state.path(),
    )
    .await;
    (h, state)
}

/// Connects with `token` as the password, over TLS when `tls`.
async fn connect(
    h: &Running,
    user: &str,
    token: &str,
    tls: bool,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut conninfo = h.tls_conninfo(user);
    if !tls {
        conninfo = conninfo.replace("sslmode=require", "sslmode=disable");
    }
    let config = {
        let mut c: tokio_postgres::Config = conninfo.parse().unwrap();
        c.password(token);
        c
    };
    let (c, conn) = config
        .connect(crate::tls::connector_presenting(&h.cert_path(), None))
        .await?;
    tokio::spawn(conn);
    Ok(c)
}

#[tokio::test]
async fn oidc_tokens_log_in_over_tls_and_their_groups_become_roles() {
    let issuer = Issuer::new();
    let (h, _state) = start_with_jwks_file(&issuer).await;
    for (alg, kid) in [(Algorithm::RS256, "rsa"), (Algorithm::ES256, "ec")] {
        let token = issuer.sign(alg, kid, &claims("ana", &["ai-agents"]));
        let c = connect(&h, "ana", &token, true).await.unwrap();
        c.simple_query("SELECT 1").await.unwrap();
        // The identity reaches the rules: writes are not in the agents role's rule.
        let e = c.simple_query("CREATE TABLE x (i int)").await.unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    }
    // Without the group, the same person has no role here.
    let token = issuer.sign(Algorithm::RS256, "rsa", &claims("ana", &[]));
    let c = connect(&h, "ana", &token, true).await.unwrap();
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));

    // psql sends the token as its password.
    let token = issuer.sign(Algorithm::RS256, "rsa", &claims("ana", &["ai-agents"]));
    let conninfo = h.tls_conninfo("ana");
    assert_eq!(
        crate::support::psql_value(conninfo, "SELECT 6 * 7", vec![("PGPASSWORD", token)]).await,
        "42"
    );
}

#[tokio::test]
async fn every_bad_token_gets_the_same_answer() {
    let issuer = Issuer::new();
    let (h, _state) = start_with_jwks_file(&issuer).await;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let good = claims("ana", &["ai-agents"]);
    let with = |key: &str, value: Value| {
        let mut c = good.clone();
        c[key] = value;
        c
    };
    let alg_none = format!(
        "{}.{}.",
        b64.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
        b64.encode(good.to_string())
    );
    let hs256_with_public_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa".to_owned());
        jsonwebtoken::encode(
            &header,
            &good,
            &EncodingKey::from_secret(RSA_PUBLIC_PEM.as_bytes()),
        )
        .unwrap()
    };
    let bad = [
        ("alg none", alg_none),
        ("HS256 keyed with the RSA public key", hs256_with_public_key),
        (
            "expired",
            issuer.sign(Algorithm::RS256, "rsa", &with("exp", json!(now() - 60))),
        ),
        (
            "not yet valid",
            issuer.sign(Algorithm::RS256, "rsa", &with("nbf", json!(now() + 300))),
        ),
        (
            "wrong issuer",
            issuer.sign(
                Algorithm::RS256,
                "rsa",
                &with("iss", json!("https://evil.test")),
            ),
        ),
        (
            "wrong audience",
            issuer.sign(Algorithm::RS256, "rsa", &with("aud", json!("another-db"))),
        ),
        (
            "unknown kid",
            issuer.sign(Algorithm::RS256, "rotated-away", &good),
        ),
        (
            "another user's token",
            issuer.sign(Algorithm::RS256, "rsa", &with("sub", json!("agent-9"))),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    let expected = (
        SqlState::INVALID_PASSWORD,
        "password authentication failed for user \"ana\"".to_owned(),
    );
    for (what, token) in &bad {
        let e = connect(&h, "ana", token, true)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what} was accepted"));
        assert_eq!(fatal(&e), expected, "{what}");
    }
    // A good token over plaintext is refused before it is even asked for.
    let token = issuer.sign(Algorithm::RS256, "rsa", &good);
    let e = connect(&h, "ana", &token, false).await.unwrap_err();
    assert_eq!(
        fatal(&e),
        (
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            "authentication failed for user \"ana\"".to_owned()
        )
    );
    // pgward keeps serving, and the good token still works over TLS.
    connect(&h, "ana", &token, true).await.unwrap();
    h.client().await.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn agent_tokens_from_pgward_token_issue_carry_their_roles() {
    let issuer = Issuer::new();
    let (h, state) = start_with_jwks_file(&issuer).await;
    let key_file = state.path().join("token.key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgward"))
        .args([
            "token",
            "issue",
            "--identity",
            "agent-7",
            "--roles",
            "reader",
        ])
        .args(["--ttl", "5m", "--key-file"])
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let c = connect(&h, "agent-7", &token, true).await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
    let e = c.simple_query("CREATE TABLE x (i int)").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    // Another identity can't use agent-7's token.
    let e = connect(&h, "agent-8", &token, true).await.unwrap_err();
    assert_eq!(fatal(&e).0, SqlState::INVALID_PASSWORD);

    // The same token signs in to the admin API and console, with the same roles.
    let me: Value = reqwest::Client::new()
        .get(format!("{}/v1/me", h.admin_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["identity"], "agent-7");
    assert_eq!(me["credential"], "token");
    assert!(me["roles"].as_array().unwrap().contains(&json!("reader")));
    // One signature character changed (in the middle: every bit there counts).
    let mut forged = token.clone().into_bytes();
    let i = token.len() - 20;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let status = reqwest::Client::new()
        .get(format!("{}/v1/me", h.admin_url()))
        .bearer_auth(forged)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_jwks_url_is_fetched_over_https_and_its_keys_outlive_the_issuer() {
    let issuer = Issuer::new();
    let mut server = JwksServer::start(issuer.jwks.to_string()).await;
    let state = tempfile::tempdir().unwrap();
    let ca = server.write_ca(state.path());
    let h = start(
        &format!(
            "[token]\njwks_url = \"{}\"\njwks_ca_file = {:?}\njwks_refresh = \"10s\"",
            server.url(),
            ca.display().to_string()
        ),
        state.path(),
    )
    .await;
    let token = issuer.sign(Algorithm::RS256, "rsa", &claims("ana", &["ai-agents"]));
    crate::assert_eventually!(
        connect(&h, "ana", &token, true).await.is_ok(),
        "the key set to be fetched"
    );
    // The issuer goes down; a refresh (every 10s, the shortest allowed) fails meanwhile.
    server.stop();
    tokio::time::sleep(Duration::from_secs(11)).await;
    let c = connect(&h, "ana", &token, true).await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();

    // An issuer unreachable from the start: no token gets in, and nothing else waits on it.
    let dead = tempfile::tempdir().unwrap();
    let h2 = start(
        &format!(
            "[token]\njwks_url = \"{}\"\njwks_ca_file = {:?}",
            server.url(),
            ca.display().to_string()
        ),
        dead.path(),
    )
    .await;
    let started = std::time::Instant::now();
    let e = connect(&h2, "ana", &token, true).await.unwrap_err();
    assert_eq!(fatal(&e).0, SqlState::INVALID_PASSWORD);
    h2.client().await.simple_query("SELECT 1").await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}
