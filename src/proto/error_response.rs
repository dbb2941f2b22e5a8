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
