//! The identity a client certificate names. rustls has already verified the chain against
//! `[tls] client_ca` during the handshake; this only reads the name out of the leaf.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::CertIdentity;

/// The identity in a DER certificate: its subject CN, or its first e-mail or DNS subject
/// alternative name.
///
/// # Errors
/// A message for pgward's log: the certificate does not parse or has no such name.
pub fn identity_of(der: &[u8], kind: CertIdentity) -> Result<String, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("client certificate does not parse: {e}"))?;
    match kind {
        CertIdentity::CommonName => {
            let mut names = cert.subject().iter_common_name();
            let cn = names
                .next()
                .ok_or("client certificate has no subject CN")?
                .as_str()
                .map_err(|e| format!("client certificate CN is not text: {e}"))?;
            if names.next().is_some() {
                return Err("client certificate has more than one subject CN".to_owned());
            }
            Ok(cn.to_owned())
        }
        CertIdentity::SubjectAltName => {
            let san = cert
                .subject_alternative_name()
                .map_err(|e| format!("client certificate SAN is invalid: {e}"))?
                .ok_or("client certificate has no subject alternative name")?;
            san.value
                .general_names
                .iter()
                .find_map(|n| match n {
                    GeneralName::RFC822Name(s) | GeneralName::DNSName(s) => Some((*s).to_owned()),
                    _ => None,
                })
                .ok_or_else(|| "client certificate has no e-mail or DNS SAN".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if !cn.is_empty() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        params.subject_alt_names = sans;
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn names_come_from_cn_or_san() {
        let der = cert(
            "svc-reporting",
            vec![rcgen::SanType::Rfc822Name(
                "svc@example.com".try_into().unwrap(),
            )],
        );
        assert_eq!(
            identity_of(&der, CertIdentity::CommonName).unwrap(),
            "svc-reporting"
        );
        assert_eq!(
            identity_of(&der, CertIdentity::SubjectAltName).unwrap(),
            "svc@example.com"
        );
        let bare = cert("", vec![]);
        assert!(identity_of(&bare, CertIdentity::CommonName).is_err());
        assert!(identity_of(&bare, CertIdentity::SubjectAltName).is_err());
        assert!(identity_of(b"garbage", CertIdentity::CommonName).is_err());
    }
}
