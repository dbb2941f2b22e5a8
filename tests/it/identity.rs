//! Identity beyond SCRAM: `[[auth]]` entries, client certificates, per-role upstream logins,
//! and what the server sees of the identity.

use std::path::{Path, PathBuf};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_postgres::error::SqlState;

use crate::support::wire::{self, RawClient};
use crate::support::{Harness, Running, fatal, harness, pg};

/// A test CA that signs client certificates.
struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

/// A client certificate chain and its key.
struct ClientCert {
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    fn client(&self, cn: &str) -> ClientCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ClientCert {
            chain: vec![cert.der().clone()],
            key_der: key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl ClientCert {
    fn rustls(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            self.chain.clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
        )
    }

    /// Writes the certificate and its key (mode 0600, as libpq insists) into `dir`.
    fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        (cert, key)
    }
}

#[tokio::test]
async fn auth_entries_pick_the_method_and_nothing_matched_is_refused() {
    let h = Harness::new()
        .identity("bob", "bob-pw", &[])
        .identity("blocked", "blocked-pw", &[])
        .identity("carol", "carol-pw", &[])
        .identity("dave", "dave-pw", &[])
        .config(
            r#"
[[auth]]
identities = ["blocked"]
method = "reject"

[[auth]]
identities = ["dave"]
addresses = ["10.0.0.0/8"]
method = "scram"

[[auth]]
identities = ["alice", "b*"]
addresses = ["127.0.0.0/8", "::1"]
databases = ["t*"]
method = "scram"
"#,
        )
        .start()
        .await;
    h.client().await.simple_query("SELECT 1").await.unwrap();
    h.client_as("bob", "bob-pw").await.unwrap();
    // Refused by a reject entry, by an entry for another address, by no entry at all: one
    // answer, whatever the reason, even with the right password.
    for (user, pw) in [
        ("blocked", "blocked-pw"),
        ("dave", "dave-pw"),
        ("carol", "carol-pw"),
    ] {
        let e = h.client_as(user, pw).await.unwrap_err();
        assert_eq!(
            fatal(&e),
            (
                SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
                format!("authentication failed for user \"{user}\"")
            )
        );
    }
    // The database glob counts: alice's entry covers databases t*, not postgres.
    let other_db = h
        .conninfo(harness::USER, harness::PASSWORD)
        .replace(&format!("dbname={}", h.database), "dbname=postgres");
    let Err(e) = tokio_postgres::connect(&other_db, tokio_postgres::NoTls).await else {
        panic!("a database outside the entry's globs was served");
    };
    assert_eq!(fatal(&e).0, SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
    h.client().await.simple_query("SELECT 1").await.unwrap();
}

const CERT_RULES: &str = r#"
[roles.reporting]
description = "read-only service accounts"

[[rules]]
id = "reporting-reads"
roles = ["reporting"]
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

async fn cert_harness(ca: &Ca, extra_dir: &Path) -> Running {
    let ca_path = extra_dir.join("clients-ca.crt");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    Harness::new()
        .rules(CERT_RULES)
        .identity("svc-report", "unused-pw", &["reporting"])
        .identity("mallory", "unused-pw", &[])
        .tls("allow")
        .config(
            r#"
[[auth]]
identities = ["svc-*", "mallory"]
method = "cert"

[[auth]]
method = "scram"
"#,
        )
        .client_ca(&ca_path)
        .start()
        .await
}

#[tokio::test]
async fn a_client_certificate_from_the_ca_names_the_identity_and_others_are_refused() {
    let files = tempfile::tempdir().unwrap();
    let ca = Ca::new("pgward test client CA");
    let h = cert_harness(&ca, files.path()).await;
    let connect = |user: &str, cert: Option<&ClientCert>| {
        let conninfo = h.tls_conninfo(user);
        let tls = crate::tls::connector_presenting(&h.cert_path(), cert.map(ClientCert::rustls));
        async move {
            let (c, conn) = tokio_postgres::connect(&conninfo, tls).await?;
            tokio::spawn(conn);
            Ok::<_, tokio_postgres::Error>(c)
        }
    };

    // The CA's certificate for svc-report: no password asked, roles from the identities file
    // (reads allowed by the reporting rule, writes denied).
    let good = ca.client("svc-report");
    let c = connect("svc-report", Some(&good)).await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
    let denied = c
        .simple_query("CREATE TABLE nope (i int)")
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));

    let expected = |user: &str| {
        (
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            format!("authentication failed for user \"{user}\""),
        )
    };
    // Another CA's certificate with the right name.
    let stranger = Ca::new("another CA").client("svc-report");
    let e = connect("svc-report", Some(&stranger))
        .await
        .expect_err("refused");
    assert_eq!(fatal(&e), expected("svc-report"));
    // A good certificate naming someone else.
    let e = connect("mallory", Some(&good)).await.expect_err("refused");
    assert_eq!(fatal(&e), expected("mallory"));
    // No certificate over TLS, and plaintext.
    let e = connect("svc-report", None).await.expect_err("refused");
    assert_eq!(fatal(&e), expected("svc-report"));
    let e = h.client_as("svc-report", "unused-pw").await.unwrap_err();
    assert_eq!(fatal(&e), expected("svc-report"));
    // SCRAM identities are untouched by the certificate entry.
    h.client().await.simple_query("SELECT 1").await.unwrap();

    // psql with sslcert/sslkey.
    let (cert, key) = good.write(files.path(), "svc");
    let conninfo = format!(
        "{} sslcert={} sslkey={}",
        h.tls_conninfo("svc-report"),
        cert.display(),
        key.display()
    );
    assert_eq!(
        crate::support::psql_value(conninfo, "SELECT 40 + 2", Vec::new()).await,
        "42"
    );
}

#[tokio::test]
async fn a_role_connects_upstream_as_its_own_login() {
    let files = tempfile::tempdir().unwrap();
    let setup = pg::direct("postgres").await;
    let login = format!("app_reader_{}", std::process::id());
    setup
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {login}; CREATE ROLE {login} LOGIN PASSWORD 'reader-pw'"
        ))
        .await
        .unwrap();
    let password_file = files.path().join("reader.pw");
    std::fs::write(&password_file, "reader-pw\n").unwrap();
    let bad_login = format!("app_bad_{}", std::process::id());
    setup
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {bad_login}; CREATE ROLE {bad_login} LOGIN PASSWORD 'right-pw'"
        ))
        .await
        .unwrap();
    let bad_file = files.path().join("bad.pw");
    std::fs::write(&bad_file, "wrong-pw").unwrap();
    let rules = format!(
        r#"{}
[roles.reader]
members = ["agent-*"]
upstream_user = "{login}"

[roles.broken]
members = ["broken-*"]
upstream_user = "{bad_login}"
"#,
        harness::ALLOW_ALL
    );
    let h = Harness::new()
        .rules(&rules)
        .identity("agent-7", "agent-pw", &[])
        .identity("broken-1", "broken-pw", &[])
        .config(&format!(
            "[upstream.logins.{login}]\npassword_file = {:?}\n\n[upstream.logins.{bad_login}]\npassword_file = {:?}\n",
            password_file.display().to_string(),
            bad_file.display().to_string()
        ))
        .start()
        .await;
    let current_user = |c: tokio_postgres::Client| async move {
        c.query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    let agent = h.client_as("agent-7", "agent-pw").await.unwrap();
    assert_eq!(current_user(agent).await, login);
    // The role's login is bounded by the database's own grants, and SET ROLE can't escape it.
    let agent = h.client_as("agent-7", "agent-pw").await.unwrap();
    let e = agent.simple_query("SET ROLE postgres").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    // Other identities keep pgward's own login.
    assert_eq!(current_user(h.client().await).await, "postgres");
    // A login pgward can't authenticate: the client learns that pgward could not connect,
    // not which login or why.
    let e = h.client_as("broken-1", "broken-pw").await.unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(
        db.code(),
        &SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
    );
    assert!(!db.message().contains(&bad_login), "{}", db.message());
    assert!(!format!("{:?}", h.shared.config).contains("reader-pw"));
}

#[tokio::test]
async fn the_server_sees_the_identity_and_the_client_its_own_application_name() {
    let h = Harness::new().start().await;
    let mut raw = RawClient::connect(h.addr).await;
    raw.send(&wire::startup(
        0,
        &[
            ("user", harness::USER),
            ("database", &h.database),
            ("application_name", "billing-job"),
        ],
    ))
    .await;
    raw.scram(harness::PASSWORD).await;
    let welcome = raw.read_until_ready().await;
    let shown: Vec<&[u8]> = welcome
        .iter()
        .filter(|(t, b)| *t == b'S' && b.starts_with(b"application_name\0"))
        .map(|(_, b)| &b[..])
        .collect();
    assert_eq!(shown, vec![&b"application_name\0billing-job\0"[..]]);
    let direct = pg::direct(&h.database).await;
    let expected = format!("billing-job (pgward:{})", harness::USER);
    crate::assert_eventually!(
        direct
            .query(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = $1",
                &[&expected]
            )
            .await
            .unwrap()
            .len()
            == 1,
        "pg_stat_activity to show the identity"
    );
}
