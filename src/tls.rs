//! rustls configurations: pgward as a TLS server for clients, and as a TLS client of PostgreSQL.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::config::SslMode;

/// Errors building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Pem {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no certificate found"));
    }
    Ok(certs)
}

/// A server configuration without client certificates (the admin listener's).
///
/// # Errors
/// When the certificate or key can't be read or don't match.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, Error> {
    server_config_with_client_auth(cert, key, None)
}

/// The server configuration for clients connecting to pgward. With `client_auth`, clients are
/// asked for a certificate (and may decline; the `cert` method then refuses them).
///
/// # Errors
/// When the certificate or key can't be read or don't match.
pub fn server_config_with_client_auth(
    cert: &Path,
    key: &Path,
    client_auth: Option<Arc<DeferredClientAuth>>,
) -> Result<Arc<ServerConfig>, Error> {
    let certs = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match client_auth {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    Ok(Arc::new(builder.with_single_cert(certs, key)?))
}

/// Client certificates checked in two steps. During the TLS handshake rustls checks that the
/// client holds the key of the certificate it presents (the handshake signature), but any
/// chain is let through, so that a certificate from the wrong CA gets PostgreSQL's own answer
/// (FATAL 28000) rather than a bare TLS alert. The `cert` method then calls
/// [`DeferredClientAuth::check`], which verifies the chain against `client_ca` with webpki.
#[derive(Debug)]
pub struct DeferredClientAuth {
    webpki: Arc<dyn ClientCertVerifier>,
}

impl DeferredClientAuth {
    /// Trusts client certificates chaining to the PEM CA certificates in `ca_file`.
    ///
    /// # Errors
    /// When the file can't be read or holds no usable CA.
    pub fn new(ca_file: &Path) -> Result<Arc<DeferredClientAuth>, Error> {
        let mut roots = RootCertStore::empty();
        for cert in load_certs(ca_file)? {
            roots.add(cert)?;
        }
        let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| pem_err(ca_file, e))?;
        Ok(Arc::new(DeferredClientAuth { webpki }))
    }

    /// Verifies a presented chain (leaf first) against the CA, now.
    ///
    /// # Errors
    /// Why the chain is not trusted (unknown issuer, expired, not for client auth …).
    pub fn check(&self, chain: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or(rustls::Error::NoCertificatesPresented)?;
        self.webpki
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map(|_| ())
    }
}

impl ClientCertVerifier for DeferredClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The client configuration towards the upstream server, or `None` for `sslmode = disable`.
///
/// `prefer` and `require` encrypt without verifying the certificate, as libpq does; only
/// `verify-full` checks the chain against `ca_file` and the host name.
///
/// # Errors
/// When the CA file can't be read.
pub fn upstream_config(
    mode: SslMode,
    ca_file: Option<&Path>,
) -> Result<Option<Arc<ClientConfig>>, Error> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = match mode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth(),
        SslMode::VerifyFull => {
            let mut roots = RootCertStore::empty();
            if let Some(ca) = ca_file {
                for cert in load_certs(ca)? {
                    roots.add(cert)?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Some(Arc::new(config)))
}

/// The upstream host as a TLS server name (a DNS name or an IP address).
///
/// # Errors
/// When `host` is neither.
pub fn server_name(host: &str) -> Result<ServerName<'static>, Error> {
    ServerName::try_from(host.to_owned()).map_err(|e| Error::Pem {
        path: host.to_owned(),
        message: e.to_string(),
    })
}

/// libpq's `sslmode=require`: encryption without authentication of the server. Signatures are
/// still checked so the handshake itself is sound.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
