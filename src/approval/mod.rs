//! Approvals: statements an `approve` rule holds until enough *other* people sign off.
//!
//! - [`duty`] is the pure core: an approval [`Request`], the [`Decision`]s on it, and the
//!   separation-of-duty checks every decision passes (the requester never decides their own
//!   request, approvers hold an approver role of the rule, `min_approvals` distinct identities
//!   approve, decided and expired requests stay closed). No I/O, no clock.
//! - [`ticket`] is what the stores keep: the request plus the statement approvers are shown.
//! - [`store`] keeps tickets: redb in `data_dir`, or a PostgreSQL table shared by instances.
//! - [`service`] is what the session and the admin API call: submit, wait, decide, withdraw,
//!   retry-mode grants, and the event stream the audit log and the webhook consume.
//!
//! Nothing outside [`duty`] changes a request's state except through its methods.

pub mod duty;
pub mod service;
pub mod store;
pub mod ticket;
pub mod webhook;

pub use duty::{
    Decision, Error as DutyError, Outcome, Party, Request, RequestId, State, Timestamp, Verdict,
};
pub use service::{Approvals, Ended, Event, EventKind};
pub use store::{Store, StoreError};
pub use ticket::{Origin, Statement, Ticket};
pub use webhook::Webhook;
