//! TLS between clients and pgward.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_postgres::error::SqlState;

use crate::support::{Harness, harness};

/// Trusts exactly the certificate the harness generated.
#[derive(Debug)]
struct TrustOne(CertificateDer<'static>, Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for TrustOne {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.0.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("unexpected certificate".into()))
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.1.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.1.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

fn connector(cert_pem: &std::path::Path) -> tokio_postgres_rustls::MakeRustlsConnect {
    connector_presenting(cert_pem, None)
}

/// A connector trusting pgward's certificate at `cert_pem` that presents a client certificate
/// chain and its key, if given.
pub(crate) fn connector_presenting(
    cert_pem: &std::path::Path,
    client: Option<(
        Vec<CertificateDer<'static>>,
        rustls_pki_types::PrivateKeyDer<'static>,
    )>,
) -> tokio_postgres_rustls::MakeRustlsConnect {
    use rustls_pki_types::pem::PemObject;
    let cert = CertificateDer::from_pem_file(cert_pem).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustOne(cert, provider)));
    let config = match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

/// A client connected to `h` over TLS.
async fn tls_client(
    h: &crate::support::Running,
) -> (
    tokio_postgres::Client,
    tokio_postgres_rustls::MakeRustlsConnect,
) {
    let conninfo = h
        .conninfo(harness::USER, harness::PASSWORD)
        .replace("sslmode=disable", "sslmode=require");
    let tls = connector(&h.cert_path());
    let (c, conn) = tokio_postgres::connect(&conninfo, tls.clone())
        .await
        .unwrap();
    tokio::spawn(conn);
    (c, tls)
}

#[tokio::test]
async fn queries_run_over_tls_and_plaintext_is_refused_when_required() {
    let h = Harness::new().tls("require").start().await;
    let (c, _) = tls_client(&h).await;
    let rows = c
        .query("SELECT generate_series(1, 1000)", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1000);
    let err = h
        .client_as(harness::USER, harness::PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    );
}

#[tokio::test]
async fn cancel_requests_work_inside_tls() {
    let h = Harness::new().tls("require").start().await;
    let (c, tls) = tls_client(&h).await;
    let token = c.cancel_token();
    let sleeper = tokio::spawn(async move { c.query("SELECT pg_sleep(60)", &[]).await });
    crate::support::pg::wait_until_running(&h.database, "SELECT pg_sleep(60)").await;
    // tokio-postgres sends the CancelRequest inside TLS when the session used TLS.
    token.cancel_query(tls).await.unwrap();
    let result = tokio::time::timeout(std::time::Duration::from_secs(20), sleeper)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.unwrap_err().code(), Some(&SqlState::QUERY_CANCELED));
}

#[tokio::test]
async fn tls_allow_serves_both() {
    let h = Harness::new().tls("allow").start().await;
    let (c, _) = tls_client(&h).await;
    assert_eq!(
        c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
    h.client().await.simple_query("SELECT 1").await.unwrap();
}

/// Whether the server session behind `c` is encrypted, as the server itself reports.
async fn server_side_ssl(c: &tokio_postgres::Client) -> bool {
    c.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn upstream_tls_modes_encrypt_and_verify_full_checks_the_certificate() {
    let ca = crate::support::pg::server_cert_pem();
    for (mode, ca) in [
        ("require", None),
        ("prefer", None),
        ("verify-full", Some(ca)),
    ] {
        let h = Harness::new().upstream_tls(mode, ca).start().await;
        assert!(server_side_ssl(&h.client().await).await, "sslmode {mode}");
    }
    let h = Harness::new().start().await;
    assert!(!server_side_ssl(&h.client().await).await, "sslmode disable");

    // verify-full against a CA that did not sign the server's certificate: refused.
    let stranger = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let h = Harness::new()
        .upstream_tls("verify-full", Some(&stranger.cert.pem()))
        .start()
        .await;
    let err = h
        .client_as(harness::USER, harness::PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION)
    );
}

#[tokio::test]
async fn certificates_are_reloaded_without_dropping_sessions() {
    let h = Harness::new().tls("require").start().await;
    let old_cert = std::fs::read(h.cert_path()).unwrap();
    let (before, _) = tls_client(&h).await;

    let fresh = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(h.cert_path(), fresh.cert.pem()).unwrap();
    std::fs::write(
        h.dir.path().join("server.key"),
        fresh.signing_key.serialize_pem(),
    )
    .unwrap();
    assert!(pgward::server::reload_tls(&h.shared));

    // New connections get the new certificate; a client pinning the old one is turned away.
    let (after, _) = tls_client(&h).await;
    after.simple_query("SELECT 1").await.unwrap();
    let old_path = h.dir.path().join("old.crt");
    std::fs::write(&old_path, &old_cert).unwrap();
    let conninfo = h
        .conninfo(harness::USER, harness::PASSWORD)
        .replace("sslmode=disable", "sslmode=require");
    assert!(
        tokio_postgres::connect(&conninfo, connector(&old_path))
            .await
            .is_err()
    );
    // The session from before the reload carries on.
    before.simple_query("SELECT 1").await.unwrap();

    // A broken file leaves the current certificate in force.
    std::fs::write(h.cert_path(), "not a certificate").unwrap();
    assert!(!pgward::server::reload_tls(&h.shared));
    std::fs::write(h.cert_path(), fresh.cert.pem()).unwrap();
    let (again, _) = tls_client(&h).await;
    again.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn sighup_reloads_the_certificate_of_a_running_pgward() {
    use crate::support::process;
    let dir = tempfile::tempdir().unwrap();
    let write_cert = |name: &str| {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.path().join("server.crt"), cert.cert.pem()).unwrap();
        std::fs::write(
            dir.path().join("server.key"),
            cert.signing_key.serialize_pem(),
        )
        .unwrap();
        let kept = dir.path().join(name);
        std::fs::write(&kept, cert.cert.pem()).unwrap();
        kept
    };
    let first = write_cert("first.crt");
    let port = process::free_port();
    process::write_config(
        dir.path(),
        port,
        &[(harness::USER, harness::PASSWORD)],
        harness::ALLOW_ALL,
        "[tls]\nmode = \"require\"\ncert = \"server.crt\"\nkey = \"server.key\"\n",
    );
    let mut pgward = process::serve(dir.path(), port).await;
    let conninfo = format!(
        "host=127.0.0.1 port={port} user={} password={} dbname=postgres sslmode=require",
        harness::USER,
        harness::PASSWORD
    );
    let connect = |cert: std::path::PathBuf| {
        let conninfo = conninfo.clone();
        async move {
            let (c, conn) = tokio_postgres::connect(&conninfo, connector(&cert)).await?;
            tokio::spawn(conn);
            Ok::<_, tokio_postgres::Error>(c)
        }
    };
    let before = connect(first.clone()).await.unwrap();

    let second = write_cert("second.crt");
    let pid = pgward.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    crate::assert_eventually!(
        connect(second.clone()).await.is_ok(),
        "the new certificate served after SIGHUP"
    );
    assert!(connect(first).await.is_err());
    before.simple_query("SELECT 1").await.unwrap();
    pgward.kill().await.unwrap();
}
