//! Approvals: statements an `approve` rule holds until enough *other* people sign off.
//!
//! This first slice is the pure core, [`duty`]: an approval [`Request`], the [`Decision`]s on
//! it, and the separation-of-duty checks every decision passes (the requester never decides
//! their own request, approvers hold an approver role of the rule, `min_approvals` distinct
//! identities approve, decided and expired requests stay closed). It performs no I/O and reads
//! no clock. The stores, notifications and the session's hold/retry handling build on it and
//! must never change a request's state except through its methods.

pub mod duty;

pub use duty::{
    Decision, Error as DutyError, Outcome, Party, Request, RequestId, State, Timestamp, Verdict,
};
