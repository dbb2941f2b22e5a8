//! The untyped packets a client sends first: SSLRequest, GSSENCRequest, CancelRequest, StartupMessage.

use super::{Error, MessageReader};

/// The longest startup packet PostgreSQL accepts (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET_LEN: usize = 10_000;

const SSL_REQUEST_CODE: i32 = 80_877_103;
const GSSENC_REQUEST_CODE: i32 = 80_877_104;
const CANCEL_REQUEST_CODE: i32 = 80_877_102;

/// What a client's first packet asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupRequest {
    /// SSLRequest: the client wants TLS.
    Ssl,
    /// GSSENCRequest: the client wants GSSAPI encryption (pgward always answers 'N').
    GssEnc,
    /// CancelRequest for a running query.
    Cancel(CancelRequest),
    /// StartupMessage.
    Startup(StartupPacket),
}

/// A CancelRequest: the process id and secret key the client was given.
#[derive(Clone, PartialEq, Eq)]
pub struct CancelRequest {
    /// The process id from BackendKeyData.
    pub pid: i32,
    /// The secret key from BackendKeyData (4 bytes in protocol 3.0, up to 256 in 3.2).
    pub secret: Vec<u8>,
}

/// A StartupMessage: protocol version and parameters, in the order the client sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupPacket {
    /// Major protocol version (always 3 once parsed).
    pub major: u16,
    /// Minor protocol version as requested; pgward speaks 3.0 and negotiates down.
    pub minor: u16,
    /// Parameters (`user`, `database`, `options`, `application_name` …) as sent.
    pub params: Vec<(String, String)>,
}

/// Parses a startup packet's body: everything after its four-byte length.
///
/// # Errors
/// [`Error::Malformed`] for truncated packets, unterminated or non-UTF-8 parameters, or a startup
/// message without `user`; [`Error::UnsupportedProtocol`] for a major version other than 3.
pub fn parse_startup_packet(body: &[u8]) -> Result<StartupRequest, Error> {
    let mut r = MessageReader::new(body, "startup packet");
    let code = r.i32()?;
    match code {
        SSL_REQUEST_CODE => {
            r.finish()?;
            Ok(StartupRequest::Ssl)
        }
        GSSENC_REQUEST_CODE => {
            r.finish()?;
            Ok(StartupRequest::GssEnc)
        }
        CANCEL_REQUEST_CODE => {
            let pid = r.i32()?;
            let secret = r.remaining();
            if !(4..=256).contains(&secret.len()) {
                return Err(Error::Malformed {
                    what: "cancel request",
                });
            }
            Ok(StartupRequest::Cancel(CancelRequest {
                pid,
                secret: secret.to_vec(),
            }))
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(Error::UnsupportedProtocol { major, minor });
            }
            let mut params = Vec::new();
            loop {
                let key = r.cstr_utf8()?;
                if key.is_empty() {
                    break;
                }
                let value = r.cstr_utf8()?;
                params.push((key.to_owned(), value.to_owned()));
            }
            r.finish()?;
            if !params.iter().any(|(k, _)| k == "user") {
                return Err(Error::Malformed {
                    what: "startup packet: no user name",
                });
            }
            Ok(StartupRequest::Startup(StartupPacket {
                major,
                minor,
                params,
            }))
        }
    }
}

// === impl StartupPacket ===

impl StartupPacket {
    /// The value of parameter `key`, if sent.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

// === impl CancelRequest ===

impl std::fmt::Debug for CancelRequest {
    // The secret key is a credential for cancelling someone's query: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelRequest")
            .field("pid", &self.pid)
            .field("secret", &"_")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: i32, rest: &[u8]) -> Vec<u8> {
        let mut v = code.to_be_bytes().to_vec();
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn parses_startup_with_params_in_order() {
        let b = body(
            196_608,
            b"user\0alice\0database\0app\0application_name\0psql\0\0",
        );
        let StartupRequest::Startup(p) = parse_startup_packet(&b).unwrap() else {
            panic!()
        };
        assert_eq!((p.major, p.minor), (3, 0));
        assert_eq!(p.param("user"), Some("alice"));
        let keys: Vec<_> = p.params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["user", "database", "application_name"]);
    }

    #[test]
    fn parses_the_special_requests() {
        assert_eq!(
            parse_startup_packet(&body(SSL_REQUEST_CODE, b"")),
            Ok(StartupRequest::Ssl)
        );
        assert_eq!(
            parse_startup_packet(&body(GSSENC_REQUEST_CODE, b"")),
            Ok(StartupRequest::GssEnc)
        );
        let c =
            parse_startup_packet(&body(CANCEL_REQUEST_CODE, &[0, 0, 0, 7, 1, 2, 3, 4])).unwrap();
        assert_eq!(
            c,
            StartupRequest::Cancel(CancelRequest {
                pid: 7,
                secret: vec![1, 2, 3, 4]
            })
        );
    }

    #[test]
    fn refuses_bad_packets_at_every_truncation() {
        let good = body(196_608, b"user\0alice\0\0");
        for end in 0..good.len() {
            assert!(parse_startup_packet(&good[..end]).is_err(), "prefix {end}");
        }
        assert!(parse_startup_packet(&body(196_608, b"database\0x\0\0")).is_err());
        assert_eq!(
            parse_startup_packet(&body(2 << 16, b"")),
            Err(Error::UnsupportedProtocol { major: 2, minor: 0 })
        );
        assert!(parse_startup_packet(&body(196_608, b"user\0\xff\0\0")).is_err());
        assert!(parse_startup_packet(&body(CANCEL_REQUEST_CODE, &[0, 0, 0, 7, 1])).is_err());
    }
}
