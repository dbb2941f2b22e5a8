//! Who is connecting: client authentication and the identities it yields.
//!
//! An [`Identity`] is a name and its roles. Duty rules name roles, never identities. Nothing here
//! ever holds a plaintext password: the identities file stores SCRAM verifiers only.

pub mod agent;
pub mod cert;
mod identities;
pub mod jwks;
mod rules;
pub mod scram;
pub mod token;

pub use agent::AgentKey;
pub use identities::{Identities, IdentityEntry, entry_for, new_admin_token};
pub use rules::{AddressRange, AuthMethod, AuthRule, AuthRules};
pub use token::{Error as TokenError, TokenKind, TokenVerifier, VerifiedToken};

use crate::proto::{Severity, Side, SqlState, ToErrorResponse};

/// An authenticated client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The identity's name (the startup `user`).
    pub name: String,
    /// The pgward roles given to it by name: the identities file's, then an agent token's.
    pub roles: Vec<String>,
    /// Its groups from an OIDC token, which rules name as `group:<name>` members.
    pub groups: Vec<String>,
    /// How it proved who it is.
    pub method: AuthMethod,
}

/// Authentication failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Unknown identity or wrong password. One message for both, so that a client cannot learn
    /// which identities exist.
    #[error("password authentication failed for user \"{user}\"")]
    Failed {
        /// The name the client gave.
        user: String,
    },
    /// The client broke the SASL exchange.
    #[error("malformed SCRAM message: {0}")]
    Protocol(&'static str),
    /// The identities file is unreadable or invalid.
    #[error("{path}: {message}")]
    Identities {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ToErrorResponse for Error {
    fn sqlstate(&self) -> SqlState {
        match self {
            Error::Failed { .. } => SqlState::INVALID_PASSWORD,
            Error::Protocol(_) => SqlState::PROTOCOL_VIOLATION,
            Error::Identities { .. } => SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        }
    }
    fn severity(&self) -> Severity {
        Severity::Fatal
    }
    fn side(&self) -> Side {
        match self {
            Error::Identities { .. } => Side::Internal,
            _ => Side::Client,
        }
    }
}
