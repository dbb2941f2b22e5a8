//! The messages pgward writes itself, encoded with pgwire's message types.
//!
//! Relayed frames never pass through here: these are pgward's own words to a peer (auth
//! challenges, its BackendKeyData, its errors), so they are rare and may allocate.

use bytes::BytesMut;
use pgwire::messages::Message;
use pgwire::messages::response::{ErrorResponse, NoticeResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey,
};

use super::{Severity, SqlState};

// pgwire only fails to encode messages over its size limits, which pgward's own short messages
// never reach; a failure would drop the message, and the peer then sees the connection close.
fn encode(msg: &impl Message, buf: &mut BytesMut) {
    if let Err(e) = msg.encode(buf) {
        tracing::error!(error = %e, "Failed to encode a message");
    }
}

/// Writes an ErrorResponse with severity, SQLSTATE, message and optional detail and hint.
pub fn write_error_response(
    buf: &mut BytesMut,
    severity: Severity,
    code: SqlState,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) {
    let mut fields = vec![
        (b'S', severity.as_str().to_owned()),
        (b'V', severity.as_str().to_owned()),
        (b'C', code.code().to_owned()),
        (b'M', message.to_owned()),
    ];
    if let Some(d) = detail {
        fields.push((b'D', d.to_owned()));
    }
    if let Some(h) = hint {
        fields.push((b'H', h.to_owned()));
    }
    encode(&ErrorResponse::new(fields), buf);
}

/// Writes a NoticeResponse (severity NOTICE, SQLSTATE 00000) with a message and optional hint.
pub fn write_notice(buf: &mut BytesMut, message: &str, hint: Option<&str>) {
    let mut fields = vec![
        (b'S', "NOTICE".to_owned()),
        (b'V', "NOTICE".to_owned()),
        (b'C', "00000".to_owned()),
        (b'M', message.to_owned()),
    ];
    if let Some(h) = hint {
        fields.push((b'H', h.to_owned()));
    }
    encode(&NoticeResponse::new(fields), buf);
}

/// Writes an Authentication message.
pub fn write_auth(buf: &mut BytesMut, auth: Authentication) {
    encode(&auth, buf);
}

/// Writes a ParameterStatus message.
pub fn write_parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    encode(
        &ParameterStatus::new(name.to_owned(), value.to_owned()),
        buf,
    );
}

/// Writes a BackendKeyData message with a protocol 3.0 (four-byte) secret key.
pub fn write_backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    encode(&BackendKeyData::new(pid, SecretKey::I32(secret)), buf);
}

/// Writes ReadyForQuery with the given transaction status byte (`I`, `T` or `E`).
pub fn write_ready_for_query(buf: &mut BytesMut, status: u8) {
    let status = match status {
        b'T' => TransactionStatus::Transaction,
        b'E' => TransactionStatus::Error,
        _ => TransactionStatus::Idle,
    };
    encode(&ReadyForQuery::new(status), buf);
}

/// Writes NegotiateProtocolVersion: the newest minor version pgward speaks and the protocol
/// options (`_pq_.*`) it did not recognise.
pub fn write_negotiate_protocol_version(buf: &mut BytesMut, minor: i32, unsupported: Vec<String>) {
    encode(&NegotiateProtocolVersion::new(minor, unsupported), buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ErrorFields, Frames};

    #[test]
    fn error_response_round_trips_through_the_parser() {
        let mut buf = BytesMut::new();
        write_error_response(
            &mut buf,
            Severity::Error,
            SqlState::INSUFFICIENT_PRIVILEGE,
            "denied by rule r1",
            None,
            Some("ask a DBA"),
        );
        let frame = Frames::new(&buf, 1024).next().unwrap().unwrap();
        assert_eq!(frame.tag(), b'E');
        let f = ErrorFields::parse(frame.body()).unwrap();
        assert_eq!(
            (f.severity, f.code, f.message),
            ("ERROR", "42501", "denied by rule r1")
        );
    }
}
