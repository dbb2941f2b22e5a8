use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use crate::auth::agent::AgentKey;
use crate::auth::jwks::tests::server;
use crate::auth::jwks::{Jwks, KeySet};
use crate::config::{AgentTokenSettings, JwksSource, OidcSettings, TokenSettings, UserClaim};

const ISS: &str = "https://idp.test";
const AUD: &str = "pgward-db";
const NOW_SECS: u64 = 1_800_000_000;
const RSA_PEM: &str = include_str!("../../../fixtures/tokens/rsa2048.pem");
const RSA_PUBLIC_PEM: &str = include_str!("../../../fixtures/tokens/rsa2048.pub.pem");

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn n(offset: i64) -> i64 {
    NOW_SECS as i64 + offset
}

/// The issuer's keys: RSA (kid `rsa`), EC P-256 (kid `ec`) and Ed25519 (kid `ed`).
struct Keys {
    rsa: EncodingKey,
    ec: EncodingKey,
    ed: EncodingKey,
    jwks: Value,
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

fn ed25519_pkcs8(seed: [u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    der
}

fn keys() -> Keys {
    let rsa = EncodingKey::from_rsa_der(&pem_der(RSA_PEM));
    let mut rsa_jwk =
        serde_json::to_value(Jwk::from_encoding_key(&rsa, Algorithm::RS256).unwrap()).unwrap();
    rsa_jwk["kid"] = json!("rsa");

    let ec_pair = rcgen::KeyPair::generate().unwrap();
    let ec = EncodingKey::from_ec_der(&ec_pair.serialize_der());
    let point = ec_pair.public_key_raw();
    assert_eq!(point.len(), 65);
    let ec_jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": "ec", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    });

    let seed = [9u8; 32];
    let ed = EncodingKey::from_ed_der(&ed25519_pkcs8(seed));
    let public = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    let ed_jwk = json!({
        "kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA",
        "x": URL_SAFE_NO_PAD.encode(public),
    });
    Keys {
        rsa,
        ec,
        ed,
        jwks: json!({ "keys": [rsa_jwk, ec_jwk, ed_jwk] }),
    }
}

fn settings() -> TokenSettings {
    TokenSettings {
        oidc: Some(OidcSettings {
            issuer: ISS.to_owned(),
            audience: AUD.to_owned(),
            jwks: JwksSource::File(PathBuf::new()),
            jwks_ca_file: None,
            jwks_refresh: Duration::from_secs(300),
            user_claim: UserClaim::Sub,
            groups_claim: "groups".to_owned(),
        }),
        agent: Some(AgentTokenSettings {
            key_file: PathBuf::new(),
            issuer: "pgward".to_owned(),
            audience: "pgward".to_owned(),
            max_ttl: Duration::from_secs(3600),
        }),
        leeway: Duration::from_secs(30),
        allow_plaintext_loopback: false,
    }
}

fn agent_key() -> AgentKey {
    AgentKey::from_seed([5; 32])
}

fn verifier_with(settings: &TokenSettings, jwks: &Value) -> TokenVerifier {
    let set = KeySet::parse(jwks.to_string().as_bytes()).unwrap();
    TokenVerifier::for_test(
        settings,
        Some(Arc::new(Jwks::fixed(set))),
        Some(&agent_key()),
    )
}

fn verifier(keys: &Keys) -> TokenVerifier {
    verifier_with(&settings(), &keys.jwks)
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "email": "alice@example.com",
        "iat": n(0), "nbf": n(0), "exp": n(600),
        "groups": ["ai-agents", "dba"],
    })
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn unsigned(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// The reason `token` is refused for `user`; the token never appears in it.
fn refused(v: &TokenVerifier, token: &str, user: &str) -> Error {
    let e = v.verify_at(token, user, now()).unwrap_err();
    let shown = format!("{e} {e:?}");
    if token.len() > 8 {
        assert!(!shown.contains(token), "the token leaked into {shown}");
        if let Some(sig) = token.rsplit('.').next().filter(|s| s.len() > 8) {
            assert!(!shown.contains(sig), "the signature leaked into {shown}");
        }
    }
    e
}

#[test]
fn good_rs256_es256_and_eddsa_tokens() {
    let k = keys();
    let v = verifier(&k);
    for (alg, key, kid) in [
        (Algorithm::RS256, &k.rsa, "rsa"),
        (Algorithm::ES256, &k.ec, "ec"),
        (Algorithm::EdDSA, &k.ed, "ed"),
    ] {
        let t = sign(alg, key, Some(kid), &claims());
        let ok = v.verify_at(&t, "alice", now()).unwrap();
        assert_eq!(ok.name, "alice");
        assert_eq!(ok.groups, ["ai-agents", "dba"]);
        assert!(ok.roles.is_empty());
        assert_eq!(ok.issuer, ISS);
        assert_eq!(ok.kind, TokenKind::Oidc);
        assert_eq!(ok.expires, now() + Duration::from_secs(600));
        // Without a kid, every key of the right type is tried.
        let t = sign(alg, key, None, &claims());
        assert_eq!(v.verify_at(&t, "alice", now()).unwrap().name, "alice");
    }
}

#[test]
fn alg_none_is_refused() {
    let k = keys();
    let v = verifier(&k);
    for alg in ["none", "None", "NONE"] {
        let t = unsigned(&json!({"alg": alg, "typ": "JWT"}), &claims(), "");
        let e = refused(&v, &t, "alice");
        assert!(matches!(e, Error::BadAlgorithm { .. }), "{alg}: {e}");
    }
    let t = unsigned(&json!({"typ": "JWT"}), &claims(), "");
    assert!(matches!(refused(&v, &t, "alice"), Error::Malformed(_)));
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let k = keys();
    let v = verifier(&k);
    for secret in [RSA_PUBLIC_PEM.as_bytes().to_vec(), pem_der(RSA_PUBLIC_PEM)] {
        for (alg, kid) in [(Algorithm::HS256, Some("rsa")), (Algorithm::HS256, None)] {
            let t = sign(alg, &EncodingKey::from_secret(&secret), kid, &claims());
            let e = refused(&v, &t, "alice");
            assert_eq!(
                e,
                Error::BadAlgorithm {
                    alg: "\"HS256\"".to_owned()
                }
            );
        }
    }
    let t = sign(
        Algorithm::HS512,
        &EncodingKey::from_secret(b"k"),
        None,
        &claims(),
    );
    assert!(matches!(
        refused(&v, &t, "alice"),
        Error::BadAlgorithm { .. }
    ));
}

#[test]
fn other_asymmetric_algorithms_are_refused() {
    let k = keys();
    let v = verifier(&k);
    for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
        let t = sign(alg, &k.rsa, Some("rsa"), &claims());
        assert!(matches!(
            refused(&v, &t, "alice"),
            Error::BadAlgorithm { .. }
        ));
    }
}

#[test]
fn alg_and_key_type_must_agree() {
    let k = keys();
    let v = verifier(&k);
    // Signed with the EC key but naming the RSA key.
    let t = sign(Algorithm::ES256, &k.ec, Some("rsa"), &claims());
    let e = refused(&v, &t, "alice");
    assert!(
        matches!(
            e,
            Error::KeyTypeMismatch {
                alg: "ES256",
                key_type: "RSA",
                ..
            }
        ),
        "{e}"
    );
    // RS256 naming the Ed25519 key.
    let t = sign(Algorithm::RS256, &k.rsa, Some("ed"), &claims());
    assert!(matches!(
        refused(&v, &t, "alice"),
        Error::KeyTypeMismatch { .. }
    ));
}

#[test]
fn a_jwk_whose_alg_contradicts_the_token_is_refused() {
    let k = keys();
    let mut jwks = k.jwks.clone();
    jwks["keys"][0]["alg"] = json!("PS256");
    let v = verifier_with(&settings(), &jwks);
    let t = sign(Algorithm::RS256, &k.rsa, Some("rsa"), &claims());
    let e = refused(&v, &t, "alice");
    assert!(
        matches!(&e, Error::JwkAlgMismatch { alg: "RS256", jwk_alg, .. } if jwk_alg == "\"PS256\""),
        "{e}"
    );
    // Without a kid, the contradicting key is not a candidate.
    let t = sign(Algorithm::RS256, &k.rsa, None, &claims());
    assert_eq!(
        refused(&v, &t, "alice"),
        Error::NoKeyForAlg { alg: "RS256" }
    );
}

#[test]
fn expiry_and_not_before_honour_the_leeway() {
    let k = keys();
    let v = verifier(&k);
    let with = |field: &str, value: i64| {
        let mut c = claims();
        c[field] = json!(value);
        sign(Algorithm::ES256, &k.ec, Some("ec"), &c)
    };
    assert!(v.verify_at(&with("exp", n(-29)), "alice", now()).is_ok());
    assert_eq!(
        refused(&v, &with("exp", n(-30)), "alice"),
        Error::Expired {
            exp: n(-30),
            now: n(0),
            leeway: 30
        }
    );
    assert!(v.verify_at(&with("nbf", n(30)), "alice", now()).is_ok());
    assert_eq!(
        refused(&v, &with("nbf", n(31)), "alice"),
        Error::NotYetValid {
            nbf: n(31),
            now: n(0),
            leeway: 30
        }
    );
    // Fractional dates are NumericDates too.
    let mut c = claims();
    c["exp"] = json!(n(600) as f64 + 0.5);
    assert!(
        v.verify_at(
            &sign(Algorithm::ES256, &k.ec, Some("ec"), &c),
            "alice",
            now()
        )
        .is_ok()
    );
    let mut c = claims();
    c["exp"] = json!("tomorrow");
    let t = sign(Algorithm::ES256, &k.ec, Some("ec"), &c);
    assert_eq!(refused(&v, &t, "alice"), Error::BadClaim("exp".to_owned()));
}

#[test]
fn exp_is_required() {
    let k = keys();
    let v = verifier(&k);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    let t = sign(Algorithm::RS256, &k.rsa, Some("rsa"), &c);
    assert_eq!(
        refused(&v, &t, "alice"),
        Error::MissingClaim("exp".to_owned())
    );
}

#[test]
fn wrong_issuer_and_audience() {
    let k = keys();
    let v = verifier(&k);
    let mut c = claims();
    c["iss"] = json!("https://evil.test");
    let t = sign(Algorithm::ES256, &k.ec, Some("ec"), &c);
    assert_eq!(
        refused(&v, &t, "alice"),
        Error::WrongIssuer {
            got: "\"https://evil.test\"".to_owned()
        }
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("iss");
    let t = sign(Algorithm::ES256, &k.ec, Some("ec"), &c);
    assert_eq!(
        refused(&v, &t, "alice"),
        Error::MissingClaim("iss".to_owned())
    );

    let mut c = claims();
    c["aud"] = json!("another-service");
    let t = sign(Algorithm::ES256, &k.ec, Some("ec"), &c);
    assert!(matches!(
        refused(&v, &t, "alice"),
        Error::WrongAudience { .. }
    ));
    c["aud"] = json!(["another-service", "a-third"]);
    let t = sign(Algorithm::ES256, &k.ec, Some("ec"), &c);
    assert!(matches!(
        refused(&v, &t, "alice"),
        Error::WrongAudience { .. }
    ));
    c["aud"] = json!(["another-service", AUD]);
    let t = sign(Algorithm::ES256, &k.ec, Some("ec"), &c);
    assert!(v.verify_at(&t, "alice", now()).is_ok());
    c.as_object_mut().unwrap().remove("aud");
    let t = sign(Algorithm::ES256, &k.ec, Some("ec"), &c);
    assert_eq!(
        refused(&v, &t, "alice"),
        Error::MissingClaim("aud".to_owned())
    );
}

#[test]
fn unknown_kid_and_bad_signature() {
    let k = keys();
    let v = verifier(&k);
    let t = sign(Algorithm::RS256, &k.rsa, Some("rotated-away"), &claims());
    assert_eq!(
        refused(&v, &t, "alice"),
        Error::UnknownKid {
            kid: "\"rotated-away\"".to_owned()
        }
    );
    // A valid token whose claims were changed after signing.
    let t = sign(Algorithm::RS256, &k.rsa, Some("rsa"), &claims());
    let mut parts: Vec<&str> = t.split('.').collect();
    let mut forged = claims();
    forged["sub"] = json!("mallory");
    let body = URL_SAFE_NO_PAD.encode(forged.to_string());
    parts[1] = &body;
    assert_eq!(
        refused(&v, &parts.join("."), "mallory"),
        Error::BadSignature
    );
    // Signed by another EC key under the issuer's kid.
    let other = EncodingKey::from_ec_der(&rcgen::KeyPair::generate().unwrap().serialize_der());
    let t = sign(Algorithm::ES256, &other, Some("ec"), &claims());
    assert_eq!(refused(&v, &t, "alice"), Error::BadSignature);
}

#[test]
fn the_user_claim_must_be_the_startup_user() {
    let k = keys();
    let v = verifier(&k);
    let t = sign(Algorithm::EdDSA, &k.ed, Some("ed"), &claims());
    let e = refused(&v, &t, "bob");
    assert_eq!(
        e,
        Error::UserMismatch {
            claim: "sub",
            got: "\"alice\"".to_owned(),
            user: "\"bob\"".to_owned()
        }
    );
    let mut s = settings();
    if let Some(o) = s.oidc.as_mut() {
        o.user_claim = UserClaim::Email;
    }
    let v = verifier_with(&s, &k.jwks);
    assert_eq!(
        v.verify_at(&t, "alice@example.com", now()).unwrap().name,
        "alice@example.com"
    );
    assert!(matches!(
        refused(&v, &t, "alice"),
        Error::UserMismatch { claim: "email", .. }
    ));
    if let Some(o) = s.oidc.as_mut() {
        o.user_claim = UserClaim::PreferredUsername;
    }
    let v = verifier_with(&s, &k.jwks);
    assert_eq!(
        refused(&v, &t, "alice"),
        Error::MissingClaim("preferred_username".to_owned())
    );
}

#[test]
fn garbage_is_malformed() {
    let k = keys();
    let v = verifier(&k);
    for t in [
        "",
        "hunter2",
        "a.b",
        "a.b.c",
        "..",
        "a.b.c.d",
        "eyJhbGciOiJSUzI1NiJ9..sig",
        "!!!.???.***",
    ] {
        assert!(
            matches!(refused(&v, t, "alice"), Error::Malformed(_)),
            "{t:?}"
        );
    }
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"rsa"}"#);
    let t = format!("{header}.{}.c2ln", URL_SAFE_NO_PAD.encode("[1,2]"));
    assert!(matches!(refused(&v, &t, "alice"), Error::Malformed(_)));
    let long = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert!(matches!(refused(&v, &long, "alice"), Error::TooLong { .. }));
}

#[test]
fn critical_header_extensions_are_refused() {
    let k = keys();
    let v = verifier(&k);
    let t = unsigned(
        &json!({"alg": "RS256", "kid": "rsa", "crit": ["exp"]}),
        &claims(),
        "c2ln",
    );
    assert_eq!(refused(&v, &t, "alice"), Error::CriticalHeader);
}

#[test]
fn groups_claim_as_array_or_string() {
    let k = keys();
    let v = verifier(&k);
    let with = |groups: Value| {
        let mut c = claims();
        c["groups"] = groups;
        sign(Algorithm::ES256, &k.ec, Some("ec"), &c)
    };
    let ok = v.verify_at(&with(json!("dba")), "alice", now()).unwrap();
    assert_eq!(ok.groups, ["dba"]);
    let ok = v
        .verify_at(&with(json!(["a", "", "b", "a"])), "alice", now())
        .unwrap();
    assert_eq!(ok.groups, ["a", "b"]);
    let ok = v.verify_at(&with(json!([])), "alice", now()).unwrap();
    assert!(ok.groups.is_empty());
    assert_eq!(
        refused(&v, &with(json!([1, 2])), "alice"),
        Error::BadClaim("groups".to_owned())
    );
    assert_eq!(
        refused(&v, &with(json!({"a": 1})), "alice"),
        Error::BadClaim("groups".to_owned())
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("groups");
    let t = sign(Algorithm::ES256, &k.ec, Some("ec"), &c);
    assert!(v.verify_at(&t, "alice", now()).unwrap().groups.is_empty());

    let mut s = settings();
    if let Some(o) = s.oidc.as_mut() {
        o.groups_claim = "cognito:groups".to_owned();
    }
    let v = verifier_with(&s, &k.jwks);
    let mut c = claims();
    c["cognito:groups"] = json!(["ops"]);
    let t = sign(Algorithm::ES256, &k.ec, Some("ec"), &c);
    assert_eq!(v.verify_at(&t, "alice", now()).unwrap().groups, ["ops"]);
}

#[test]
fn oidc_tokens_never_get_roles_from_a_claim() {
    let k = keys();
    let v = verifier(&k);
    let mut c = claims();
    c["roles"] = json!(["admin", "dba"]);
    let t = sign(Algorithm::RS256, &k.rsa, Some("rsa"), &c);
    let ok = v.verify_at(&t, "alice", now()).unwrap();
    assert!(ok.roles.is_empty());
    assert_eq!(ok.groups, ["ai-agents", "dba"]);
}

#[test]
fn agent_token_round_trip() {
    let k = keys();
    let v = verifier(&k);
    let s = settings();
    let agent = s.agent.as_ref().unwrap();
    let key = agent_key();
    let roles = vec!["reader".to_owned(), "ai-agents".to_owned()];
    let t = key
        .issue(agent, "bot-7", &roles, Duration::from_secs(900), now())
        .unwrap();
    let header = jsonwebtoken::decode_header(&t).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some(key.kid()));
    assert_eq!(key.kid().len(), 16);
    let ok = v.verify_at(&t, "bot-7", now()).unwrap();
    assert_eq!(ok.name, "bot-7");
    assert_eq!(ok.roles, roles);
    assert!(ok.groups.is_empty());
    assert_eq!(ok.issuer, "pgward");
    assert_eq!(ok.kind, TokenKind::Agent);
    assert_eq!(ok.expires, now() + Duration::from_secs(900));

    // Claims as documented, with a random jti.
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(t.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], "pgward");
    assert_eq!(claims["iat"], json!(NOW_SECS));
    assert_eq!(claims["nbf"], json!(NOW_SECS));
    let t2 = key
        .issue(agent, "bot-7", &roles, Duration::from_secs(900), now())
        .unwrap();
    let claims2: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(t2.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_ne!(claims["jti"], claims2["jti"]);

    assert!(matches!(
        refused(&v, &t, "bot-8"),
        Error::UserMismatch { .. }
    ));
    let later = now() + Duration::from_secs(900 + 30);
    assert!(matches!(
        v.verify_at(&t, "bot-7", later),
        Err(Error::Expired { .. })
    ));
    // Agent tokens work without an OIDC issuer.
    let mut s = settings();
    s.oidc = None;
    let v = TokenVerifier::for_test(&s, None, Some(&key));
    assert_eq!(
        v.verify_at(&t, "bot-7", now()).unwrap().kind,
        TokenKind::Agent
    );
    // … and are refused when agent tokens are off.
    let mut s = settings();
    s.agent = None;
    let v = verifier_with(&s, &k.jwks);
    assert!(matches!(
        refused(&v, &t, "bot-7"),
        Error::WrongIssuer { .. }
    ));
}

#[test]
fn agent_tokens_from_another_key_or_alg_are_refused() {
    let k = keys();
    let v = verifier(&k);
    let s = settings();
    let agent = s.agent.as_ref().unwrap();
    let stranger = AgentKey::from_seed([6; 32]);
    let t = stranger
        .issue(agent, "bot", &[], Duration::from_secs(60), now())
        .unwrap();
    assert!(matches!(refused(&v, &t, "bot"), Error::UnknownKid { .. }));
    // The same, without the kid that gives it away.
    let mut c: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(t.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let t = sign(
        Algorithm::EdDSA,
        &EncodingKey::from_ed_der(&ed25519_pkcs8([6; 32])),
        None,
        &c,
    );
    assert_eq!(refused(&v, &t, "bot"), Error::BadSignature);
    // An RSA token claiming the agent issuer, to smuggle a `roles` claim.
    c["roles"] = json!(["admin"]);
    let t = sign(Algorithm::RS256, &k.rsa, Some("rsa"), &c);
    assert!(matches!(
        refused(&v, &t, "bot"),
        Error::KeyTypeMismatch { .. }
    ));
}

#[test]
fn agent_ttl_is_capped() {
    let s = settings();
    let agent = s.agent.as_ref().unwrap();
    let e = agent_key()
        .issue(agent, "bot", &[], Duration::from_secs(7200), now())
        .unwrap_err();
    assert!(matches!(e, agent::Error::TtlTooLong { .. }));
    assert!(e.to_string().contains("1h"), "{e}");
    assert!(e.to_string().contains("2h"), "{e}");
    assert!(
        agent_key()
            .issue(agent, "bot", &[], Duration::from_secs(3600), now())
            .is_ok()
    );
    assert!(
        agent_key()
            .issue(agent, "", &[], Duration::from_secs(60), now())
            .is_err()
    );

    // A token issued under a longer limit is refused once the limit is lowered.
    let mut longer = agent.clone();
    longer.max_ttl = Duration::from_secs(7200);
    let t = agent_key()
        .issue(&longer, "bot", &[], Duration::from_secs(7200), now())
        .unwrap();
    let k = keys();
    let v = verifier(&k);
    assert!(matches!(
        refused(&v, &t, "bot"),
        Error::LifetimeTooLong { max: 3600, .. }
    ));
}

#[test]
fn no_keys_yet_refuses_with_the_reason() {
    let k = keys();
    let mut s = settings();
    let url = "https://127.0.0.1:9/jwks.json".to_owned();
    if let Some(o) = s.oidc.as_mut() {
        o.jwks = JwksSource::Url(url.clone());
    }
    let jwks = Jwks::new(&JwksSource::Url(url), None, Duration::from_secs(60)).unwrap();
    let v = TokenVerifier::for_test(&s, Some(Arc::new(jwks)), Some(&agent_key()));
    let t = sign(Algorithm::RS256, &k.rsa, Some("rsa"), &claims());
    let e = refused(&v, &t, "alice");
    assert!(
        matches!(&e, Error::NoKeys { issuer, .. } if issuer == ISS),
        "{e}"
    );
    assert_eq!(e.sqlstate(), SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
    // Agent tokens still work.
    let agent = s.agent.as_ref().unwrap();
    let t = agent_key()
        .issue(agent, "bot", &[], Duration::from_secs(60), now())
        .unwrap();
    assert!(v.verify_at(&t, "bot", now()).is_ok());
}

#[test]
fn refusals_are_invalid_password_and_debug_hides_keys() {
    assert_eq!(Error::BadSignature.sqlstate(), SqlState::INVALID_PASSWORD);
    assert_eq!(Error::BadSignature.severity(), Severity::Fatal);
    let key = agent_key();
    let shown = format!("{key:?}");
    assert!(!shown.contains("05050505"), "{shown}");
    let k = keys();
    let shown = format!("{:?}", verifier(&k));
    assert!(shown.contains("pgward"), "{shown}");
    assert!(!shown.contains(&k.jwks["keys"][0]["n"].as_str().unwrap()[..20]));
}

#[test]
fn verify_uses_the_clock() {
    let s = settings();
    let key = agent_key();
    let t = key
        .issue(
            s.agent.as_ref().unwrap(),
            "bot",
            &[],
            Duration::from_secs(60),
            SystemTime::now(),
        )
        .unwrap();
    let v = TokenVerifier::for_test(&s, None, Some(&key));
    assert!(v.verify(&t, "bot").is_ok());
    assert!(v.verify(&format!(" {t}\n"), "bot").is_ok());
}

#[test]
fn new_creates_the_agent_key_and_reads_a_jwks_file() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, k.jwks.to_string()).unwrap();
    let mut s = settings();
    if let Some(o) = s.oidc.as_mut() {
        o.jwks = JwksSource::File(jwks_path);
    }
    if let Some(a) = s.agent.as_mut() {
        a.key_file = dir.path().join("keys/token.key");
    }
    let v = TokenVerifier::new(&s).unwrap();
    let t = sign(Algorithm::ES256, &k.ec, Some("ec"), &claims());
    assert!(v.verify_at(&t, "alice", now()).is_ok());
    let key = AgentKey::load_or_create(&dir.path().join("keys/token.key")).unwrap();
    let t = key
        .issue(
            s.agent.as_ref().unwrap(),
            "bot",
            &[],
            Duration::from_secs(60),
            now(),
        )
        .unwrap();
    assert!(v.verify_at(&t, "bot", now()).is_ok());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("keys/token.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    if let Some(o) = s.oidc.as_mut() {
        o.jwks = JwksSource::File(dir.path().join("missing.json"));
    }
    assert!(matches!(
        TokenVerifier::new(&s),
        Err(SetupError::Jwks(jwks::Error::Read { .. }))
    ));
}

#[tokio::test]
async fn keys_from_https_arrive_in_the_background_and_an_unknown_kid_fetches_the_rotation() {
    let ec1 = rcgen::KeyPair::generate().unwrap();
    let ec2 = rcgen::KeyPair::generate().unwrap();
    let jwk = |pair: &rcgen::KeyPair, kid: &str| {
        let point = pair.public_key_raw();
        json!({"kty": "EC", "crv": "P-256", "kid": kid,
               "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])})
    };
    let server = server::JwksServer::start(json!({"keys": [jwk(&ec1, "ec1")]}).to_string()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    if let Some(o) = s.oidc.as_mut() {
        o.jwks = JwksSource::Url(server.url());
        o.jwks_ca_file = Some(server.write_ca(dir.path()));
        o.jwks_refresh = Duration::from_secs(3600);
    }
    if let Some(a) = s.agent.as_mut() {
        a.key_file = dir.path().join("token.key");
    }
    let v = TokenVerifier::start(&s).unwrap();
    let mut c = claims();
    let real_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    c["iat"] = json!(real_now);
    c["nbf"] = json!(real_now);
    c["exp"] = json!(real_now + 600);
    let t1 = sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_der(&ec1.serialize_der()),
        Some("ec1"),
        &c,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match v.verify(&t1, "alice") {
            Ok(ok) => {
                assert_eq!(ok.kind, TokenKind::Oidc);
                break;
            }
            Err(e) => assert!(matches!(e, Error::NoKeys { .. }), "{e}"),
        }
        assert!(std::time::Instant::now() < deadline, "no keys after 10s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The issuer rotates to a new key; the first token naming it asks for an early refresh.
    server.set_body(json!({"keys": [jwk(&ec2, "ec2")]}).to_string());
    let t2 = sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_der(&ec2.serialize_der()),
        Some("ec2"),
        &c,
    );
    assert!(matches!(
        v.verify(&t2, "alice"),
        Err(Error::UnknownKid { .. })
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while v.verify(&t2, "alice").is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "rotation not picked up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(
        v.verify(&t1, "alice"),
        Err(Error::UnknownKid { .. })
    ));
}

#[test]
fn the_verifier_can_be_shared_across_tasks() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<TokenVerifier>();
    send_sync::<VerifiedToken>();
    send_sync::<Error>();
}
