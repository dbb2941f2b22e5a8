//! Masking of result rows: which output columns to hide, and how.
//!
//! This is the pure part of masking: no I/O, no clocks, no globals. The session
//! parses each RowDescription into a [`RowDescriptionView`], builds a [`MaskPlan`]
//! once per result (resolving table OIDs through its catalog cache and using the
//! statement's lineage for computed columns), then runs every DataRow through
//! [`apply`]. A row with nothing to mask is reported as [`Applied::Untouched`]
//! so that its frame goes out as it came, without a copy; a row with something
//! to mask is rebuilt into one reused buffer.
//!
//! Content [`Detectors`] are a second line: built once per session from the
//! `[[detectors]]` rules of its roles and attached to each plan with
//! [`MaskPlan::with_detectors`], they scan the values of the columns no
//! column rule masks, and a value holding a card number, SSN, e-mail, IBAN or
//! secret is masked with the detector rule's strategy
//! ([`Applied::Detected`] says which rule fired).
//!
//! Everything here fails closed: a malformed message is an [`Error`] (the
//! caller ends the result rather than forwarding it), a column whose origin
//! cannot be established is masked, and a value that cannot be masked in its
//! own format (binary) becomes NULL, never the raw bytes.

mod copy;
mod detect;
mod plan;
mod row;
mod row_description;
mod strategy;

#[cfg(test)]
mod tests;

pub use copy::{CopyFormat, CopyMasker, copy_formats};
pub use detect::Detectors;
pub use plan::{ColumnMask, MaskPlan, MaskReason, Resolved, plan};
pub use row::{Applied, DATA_ROW_TAG, apply, null_all};
pub use row_description::{FieldDescription, RowDescriptionView};
pub use strategy::{FORMAT_TEXT, HASH_HEX_LEN, write_value};

/// Why a message could not be read or a row could not be masked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A RowDescription body was truncated or had trailing bytes.
    #[error("malformed RowDescription")]
    RowDescription,
    /// A DataRow has a different number of fields than its RowDescription.
    #[error("DataRow has {found} fields, the RowDescription {expected}")]
    FieldCount {
        /// Fields in the plan (the RowDescription).
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
    /// A DataRow was truncated, had trailing bytes or a length below -1.
    #[error("malformed DataRow")]
    DataRow,
    /// A rebuilt DataRow would exceed the protocol's length limit.
    #[error("masked DataRow too large")]
    TooLarge,
    /// The masking key was refused by HMAC (cannot happen for HMAC-SHA256, which
    /// takes keys of any length; kept so that no path can panic).
    #[error("invalid masking key")]
    Key,
}
