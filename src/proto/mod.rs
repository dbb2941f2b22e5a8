//! PostgreSQL wire protocol: framing, typed views over bytes, and the few messages pgward writes itself.
//!
//! This module owns no I/O and no tokio: it takes byte slices and returns views or errors, so the
//! framing can be unit tested at every byte boundary and fuzzed. It must never panic on input from
//! the network: every length is checked before it is used as an index.

mod error_response;
mod frame;
mod read;
pub mod sqlstate;
mod startup;
mod write;

pub use error_response::{ErrorFields, Severity, Side, ToErrorResponse, write_withheld};
pub use frame::{Frame, Frames, HEADER_LEN, Header, parse_header};
pub use read::{MessageReader, cstr};
pub use sqlstate::SqlState;
pub use startup::{
    CancelRequest, MAX_STARTUP_PACKET_LEN, StartupPacket, StartupRequest, parse_startup_packet,
};
pub use write::{
    write_auth, write_backend_key_data, write_error_response, write_negotiate_protocol_version,
    write_notice, write_parameter_status, write_ready_for_query,
};

/// Frontend (client → server) message tags that pgward acts on or names.
pub mod tag {
    /// Simple Query.
    pub const QUERY: u8 = b'Q';
    /// Parse (extended protocol).
    pub const PARSE: u8 = b'P';
    /// Bind (extended protocol).
    pub const BIND: u8 = b'B';
    /// Execute (extended protocol).
    pub const EXECUTE: u8 = b'E';
    /// Describe (extended protocol).
    pub const DESCRIBE: u8 = b'D';
    /// Close (extended protocol).
    pub const CLOSE: u8 = b'C';
    /// Sync (extended protocol).
    pub const SYNC: u8 = b'S';
    /// Flush (extended protocol).
    pub const FLUSH: u8 = b'H';
    /// Terminate.
    pub const TERMINATE: u8 = b'X';
    /// Password, SASLInitialResponse and SASLResponse share this tag.
    pub const PASSWORD: u8 = b'p';
    /// CopyData (both directions).
    pub const COPY_DATA: u8 = b'd';
    /// CopyDone (both directions).
    pub const COPY_DONE: u8 = b'c';
    /// CopyFail.
    pub const COPY_FAIL: u8 = b'f';
    /// FunctionCall.
    pub const FUNCTION_CALL: u8 = b'F';

    /// Backend: Authentication family.
    pub const AUTHENTICATION: u8 = b'R';
    /// Backend: ParameterStatus.
    pub const PARAMETER_STATUS: u8 = b'S';
    /// Backend: BackendKeyData.
    pub const BACKEND_KEY_DATA: u8 = b'K';
    /// Backend: ReadyForQuery.
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// Backend: ErrorResponse.
    pub const ERROR_RESPONSE: u8 = b'E';
    /// Backend: NoticeResponse.
    pub const NOTICE_RESPONSE: u8 = b'N';
    /// Backend: NotificationResponse (LISTEN/NOTIFY).
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    /// Backend: NegotiateProtocolVersion.
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    /// Backend: RowDescription.
    pub const ROW_DESCRIPTION: u8 = b'T';
    /// Backend: DataRow.
    pub const DATA_ROW: u8 = b'D';
    /// ParseComplete.
    pub const PARSE_COMPLETE: u8 = b'1';
    /// BindComplete.
    pub const BIND_COMPLETE: u8 = b'2';
    /// CloseComplete.
    pub const CLOSE_COMPLETE: u8 = b'3';
    /// NoData (a Describe of something that returns no rows).
    pub const NO_DATA: u8 = b'n';
    /// CommandComplete.
    pub const COMMAND_COMPLETE: u8 = b'C';
    /// EmptyQueryResponse.
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    /// PortalSuspended (an Execute's row limit was reached).
    pub const PORTAL_SUSPENDED: u8 = b's';
    /// CopyOutResponse.
    pub const COPY_OUT_RESPONSE: u8 = b'H';
}

/// Errors in bytes received from a peer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A length field below its own size, or a body that ends before its fields do.
    #[error("malformed {what}")]
    Malformed {
        /// Which message or field was malformed.
        what: &'static str,
    },
    /// A frame longer than the configured limit. Reported before anything is allocated for it.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The length the frame announced.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A startup packet with a protocol version pgward does not speak.
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0")]
    UnsupportedProtocol {
        /// Major version.
        major: u16,
        /// Minor version.
        minor: u16,
    },
}

impl ToErrorResponse for Error {
    fn sqlstate(&self) -> SqlState {
        match self {
            Error::UnsupportedProtocol { .. } => SqlState::FEATURE_NOT_SUPPORTED,
            Error::Malformed { .. } | Error::FrameTooLarge { .. } => SqlState::PROTOCOL_VIOLATION,
        }
    }
    fn severity(&self) -> Severity {
        Severity::Fatal
    }
    fn side(&self) -> Side {
        Side::Client
    }
}
