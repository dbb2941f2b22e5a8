//! Errors as the client sees them: severity, SQLSTATE, and a view over ErrorResponse fields.

use super::{MessageReader, SqlState};

/// Severity of an error pgward reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement fails; the session goes on.
    Error,
    /// The session ends after the message.
    Fatal,
}

/// Whose fault an error is, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something wrong.
    Client,
    /// The upstream server failed or refused.
    Server,
    /// pgward itself failed.
    Internal,
}

/// How a module's error is shown to a PostgreSQL client. The session maps errors to the wire in
/// one place through this trait.
pub trait ToErrorResponse: std::fmt::Display {
    /// The SQLSTATE code.
    fn sqlstate(&self) -> SqlState;
    /// Whether the session survives.
    fn severity(&self) -> Severity;
    /// Whose fault it is.
    fn side(&self) -> Side;
    /// A HINT for the client, if there is one.
    fn hint(&self) -> Option<String> {
        None
    }
}

/// The fields of an ErrorResponse or NoticeResponse body, borrowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    /// `V`, or `S` when `V` is absent: ERROR, FATAL, PANIC, NOTICE …
    pub severity: &'a str,
    /// `C`: the SQLSTATE.
    pub code: &'a str,
    /// `M`: the primary message.
    pub message: &'a str,
}

// === impl Severity ===

impl Severity {
    /// The severity word on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

// === impl ErrorFields ===

impl<'a> ErrorFields<'a> {
    /// Parses an ErrorResponse or NoticeResponse body.
    ///
    /// # Errors
    /// [`super::Error::Malformed`] when a field is not terminated or not UTF-8.
    pub fn parse(body: &'a [u8]) -> Result<Self, super::Error> {
        let mut r = MessageReader::new(body, "error response");
        let mut fields = ErrorFields::default();
        loop {
            let code = r.u8()?;
            if code == 0 {
                return Ok(fields);
            }
            let value = r.cstr_utf8()?;
            match code {
                b'S' if fields.severity.is_empty() => fields.severity = value,
                b'V' => fields.severity = value,
                b'C' => fields.code = value,
                b'M' => fields.message = value,
                _ => {}
            }
        }
    }
}

/// Writes a copy of an ErrorResponse or NoticeResponse (`tag`, `body`) whose message is
/// `message` and which leaves out every field that may quote data: DETAIL, HINT, CONTEXT
/// (`W`) and the internal query. Severity, SQLSTATE, position and the schema, table, column,
/// type and constraint names are kept.
///
/// # Errors
/// When `body` is not a well-formed list of fields; nothing is written then.
pub fn write_withheld(
    out: &mut bytes::BytesMut,
    tag: u8,
    body: &[u8],
    message: &str,
) -> Result<(), super::Error> {
    use bytes::BufMut;
    let start = out.len();
    out.put_u8(tag);
    out.put_i32(0);
    let mut r = MessageReader::new(body, "error response");
    let result = loop {
        let code = match r.u8() {
            Ok(c) => c,
            Err(e) => break Err(e),
        };
        if code == 0 {
            out.put_u8(0);
            break Ok(());
        }
        let value = match r.cstr() {
            Ok(v) => v,
            Err(e) => break Err(e),
        };
        match code {
            b'D' | b'H' | b'W' | b'q' | b'p' => {}
            b'M' => {
                out.put_u8(code);
                out.put_slice(message.as_bytes());
                out.put_u8(0);
            }
            _ => {
                out.put_u8(code);
                out.put_slice(value);
                out.put_u8(0);
            }
        }
    };
    match result {
        Ok(()) => {
            let len = (out.len() - start - 1) as i32;
            out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn withheld_errors_keep_codes_and_names_and_drop_quoting_fields() {
        let mut body = Vec::new();
        for (t, v) in [
            (b'S', "ERROR"),
            (b'C', "23505"),
            (
                b'M',
                "duplicate key value violates unique constraint \"people_ssn_key\"",
            ),
            (b'D', "Key (ssn)=(123-45-6789) already exists."),
            (b'W', "SQL function \"f\" statement 1"),
            (b'n', "people_ssn_key"),
            (b'P', "8"),
        ] {
            body.push(t);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut out = bytes::BytesMut::new();
        write_withheld(&mut out, b'E', &body, "withheld").unwrap();
        let fields = ErrorFields::parse(&out[5..]).unwrap();
        assert_eq!((fields.code, fields.message), ("23505", "withheld"));
        let text = String::from_utf8_lossy(&out);
        assert!(
            !text.contains("123-45-6789") && !text.contains("SQL function"),
            "{text}"
        );
        assert!(text.contains("people_ssn_key") && text.contains('8'));
        assert_eq!(
            u32::from_be_bytes(out[1..5].try_into().unwrap()) as usize,
            out.len() - 1
        );
        assert!(write_withheld(&mut out, b'E', b"Mno terminator", "x").is_err());
    }
}
