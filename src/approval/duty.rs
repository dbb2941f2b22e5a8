//! Duty checks: who may decide an approval request, and what each decision does to it.
//!
//! A [`Request`] is a statement held by an `approve` rule. It owns its state and its list of
//! [`Decision`]s, and changes only through [`Request::decide`], [`Request::withdraw`] and
//! [`Request::expire_if_due`], which enforce separation of duties:
//!
//! - the approver is never the requester (same identity);
//! - the approver holds one of the rule's approver roles;
//! - `min_approvals` *distinct identities* must approve: one person holding two approver roles,
//!   or approving twice, counts once;
//! - one rejection by a valid approver rejects the request;
//! - a request that is approved, rejected, expired or withdrawn is never decided again;
//! - a request past its expiry is expired, whoever asks;
//! - every decision names the identity that made it.
//!
//! This module is pure: no I/O and no clock. Time comes in as a [`Timestamp`] argument, and
//! roles come in already resolved (the caller uses `RuleSet::roles_for`), so every rule above is
//! unit-tested with literal inputs. Persisting requests and waking sessions is the store's job.
//!
//! # Security
//! The [`ApprovalSpec`] is copied into the request when it is made: a rules reload while the
//! request waits changes neither who may approve it nor how many approvals it needs.

use std::fmt;

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::policy::{ApprovalSpec, RuleId};
use crate::proto::{Severity, Side, SqlState, ToErrorResponse};

#[cfg(test)]
mod tests;

/// The identifier of an approval request, as approvers type it (`pgward approvals approve ID`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(String);

/// A point in time: milliseconds since the Unix epoch. Passed in by callers, never read here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(u64);

/// An identity and the pgward roles it holds, as the caller resolved them
/// (`RuleSet::roles_for`). Used for both the requester and approvers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    /// The identity's name.
    pub identity: String,
    /// Its roles.
    pub roles: Vec<String>,
}

/// A statement waiting for approval, and the decisions made on it so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    id: RequestId,
    requester: Party,
    rule: RuleId,
    spec: ApprovalSpec,
    created_at: Timestamp,
    expires_at: Timestamp,
    state: State,
    /// When the request left `Pending`.
    closed_at: Option<Timestamp>,
    decisions: Vec<Decision>,
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for approvals.
    Pending,
    /// Enough distinct approvers approved.
    Approved,
    /// An approver rejected it.
    Rejected {
        /// The approver's identity.
        by: String,
        /// Why, as the approver wrote it; shown to the requester.
        reason: String,
    },
    /// Nobody decided before it expired.
    Expired,
    /// The requester withdrew it (for instance by cancelling the held statement).
    Withdrawn,
}

/// One accepted decision, attributed to the approver who made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The approver's identity.
    pub approver: String,
    /// The approver's roles when deciding.
    pub approver_roles: Vec<String>,
    /// When.
    pub at: Timestamp,
    /// What they decided.
    pub verdict: Verdict,
}

/// What an approver decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Sign off.
    Approve,
    /// Refuse; one rejection rejects the request.
    Reject {
        /// Why, shown to the requester; never blank.
        reason: String,
    },
}

/// What an accepted decision left the request in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still waiting: `approvals` distinct approvers of the `needed`.
    Pending {
        /// Distinct approvers so far.
        approvals: u32,
        /// Distinct approvers needed.
        needed: u32,
    },
    /// Approved; the statement may run.
    Approved,
    /// Rejected; the statement must not run.
    Rejected,
}

/// A refused decision or withdrawal. The request is unchanged, except that a request found past
/// its expiry is marked [`State::Expired`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The requester tried to decide their own request.
    #[error(
        "approval request {request} (rule {rule}): {identity} made this request and cannot decide it"
    )]
    SelfDecision {
        /// The request.
        request: RequestId,
        /// Its rule.
        rule: RuleId,
        /// The requester's identity.
        identity: String,
        /// The rule's approver roles.
        approvers: Vec<String>,
    },
    /// The would-be approver holds none of the rule's approver roles.
    #[error(
        "approval request {request} (rule {rule}): {identity} holds none of the approver roles ({})",
        approvers.join(", ")
    )]
    NotAnApprover {
        /// The request.
        request: RequestId,
        /// Its rule.
        rule: RuleId,
        /// Who tried.
        identity: String,
        /// The rule's approver roles.
        approvers: Vec<String>,
    },
    /// The approver already approved; a second approval by the same identity does not count.
    #[error(
        "approval request {request} (rule {rule}): {identity} already approved it ({approvals} of {needed} approvals)"
    )]
    AlreadyApproved {
        /// The request.
        request: RequestId,
        /// Its rule.
        rule: RuleId,
        /// The approver.
        identity: String,
        /// Distinct approvals so far.
        approvals: u32,
        /// Distinct approvals needed.
        needed: u32,
        /// The rule's approver roles.
        approvers: Vec<String>,
    },
    /// Only the requester may withdraw a request.
    #[error(
        "approval request {request} (rule {rule}): only its requester can withdraw it, not {identity}"
    )]
    NotRequester {
        /// The request.
        request: RequestId,
        /// Its rule.
        rule: RuleId,
        /// Who tried.
        identity: String,
    },
    /// A rejection needs a reason, since the requester is shown it.
    #[error("approval request {request} (rule {rule}): a rejection needs a reason")]
    MissingReason {
        /// The request.
        request: RequestId,
        /// Its rule.
        rule: RuleId,
    },
    /// The request was already approved, rejected or withdrawn.
    #[error("approval request {request} (rule {rule}) is already {state}")]
    Decided {
        /// The request.
        request: RequestId,
        /// Its rule.
        rule: RuleId,
        /// `approved`, `rejected` or `withdrawn`.
        state: &'static str,
    },
    /// The request expired before this call.
    #[error("approval request {request} (rule {rule}) expired")]
    Expired {
        /// The request.
        request: RequestId,
        /// Its rule.
        rule: RuleId,
    },
}

// === impl RequestId ===

impl RequestId {
    /// Wraps an id made by the store.
    pub fn new(id: impl Into<String>) -> Self {
        RequestId(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// === impl Timestamp ===

impl Timestamp {
    /// From milliseconds since the Unix epoch.
    pub const fn from_unix_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_unix_millis(self) -> u64 {
        self.0
    }

    /// From a clock reading taken by the caller; times before the epoch become the epoch, and
    /// times past `u64::MAX` milliseconds saturate.
    pub fn from_system_time(t: SystemTime) -> Self {
        let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// `self + d`, saturating, so that no configured timeout can overflow.
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }
}

// === impl Party ===

impl Party {
    /// An identity with its roles.
    pub fn new(identity: impl Into<String>, roles: Vec<String>) -> Self {
        Party {
            identity: identity.into(),
            roles,
        }
    }
}

// === impl Request ===

impl Request {
    /// A new pending request by `requester` under `rule`, expiring `spec.timeout` after
    /// `created_at`.
    pub fn new(
        id: RequestId,
        requester: Party,
        rule: RuleId,
        spec: ApprovalSpec,
        created_at: Timestamp,
    ) -> Self {
        let expires_at = created_at.saturating_add(spec.timeout);
        Request {
            id,
            requester,
            rule,
            spec,
            created_at,
            expires_at,
            state: State::Pending,
            closed_at: None,
            decisions: Vec::new(),
        }
    }

    /// The request's id.
    pub fn id(&self) -> &RequestId {
        &self.id
    }

    /// Who asked, with the roles they held then.
    pub fn requester(&self) -> &Party {
        &self.requester
    }

    /// The `approve` rule that held the statement.
    pub fn rule(&self) -> &RuleId {
        &self.rule
    }

    /// The rule's approval settings, as they were when the request was made.
    pub fn spec(&self) -> &ApprovalSpec {
        &self.spec
    }

    /// When it was made.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// When it expires if still pending.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// Where it stands.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// When it left [`State::Pending`], if it has.
    pub fn closed_at(&self) -> Option<Timestamp> {
        self.closed_at
    }

    /// The accepted decisions, oldest first. Refused attempts are not recorded here; they are
    /// returned as errors for the caller to report and audit.
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// Distinct identities that approved.
    pub fn approvals(&self) -> u32 {
        let mut seen: Vec<&str> = Vec::new();
        for d in &self.decisions {
            if d.verdict == Verdict::Approve && !seen.contains(&d.approver.as_str()) {
                seen.push(&d.approver);
            }
        }
        u32::try_from(seen.len()).unwrap_or(u32::MAX)
    }

    /// Distinct approvals needed: the rule's `min_approvals`, and never fewer than one.
    pub fn needed(&self) -> u32 {
        self.spec.min_approvals.max(1)
    }

    /// Whether `approver` may give `verdict` at `now`: the checks [`Request::decide`] makes, in
    /// the same order, without deciding or changing anything. A request past its expiry answers
    /// [`Error::Expired`] here (and is marked so by the next `decide`). This is how the admin
    /// API tells a viewer whether to offer them Approve, so the console and the decision can
    /// never disagree.
    ///
    /// # Errors
    /// The error `decide` would return.
    pub fn may_decide(
        &self,
        approver: &Party,
        verdict: &Verdict,
        now: Timestamp,
    ) -> Result<(), Error> {
        self.check_decider(approver)?;
        if let Some(closed) = self.closed_error(now) {
            return Err(closed);
        }
        self.check_verdict(approver, verdict)
    }

    /// Records `approver`'s `verdict` at `now`.
    ///
    /// Who may decide is checked before whether the request can still be decided, so that an
    /// attempt breaking a duty rule is reported as such whatever the request's state.
    ///
    /// An approver who already approved may still reject (a change of mind only ever makes
    /// the outcome safer), but a second approval is refused with
    /// [`Error::AlreadyApproved`] rather than accepted silently, so the approver learns that it
    /// did not count.
    ///
    /// # Errors
    /// [`Error::SelfDecision`], [`Error::NotAnApprover`], [`Error::Decided`],
    /// [`Error::Expired`] (the request is marked expired if it was still pending),
    /// [`Error::AlreadyApproved`] and [`Error::MissingReason`]. Nothing is recorded then.
    pub fn decide(
        &mut self,
        approver: &Party,
        verdict: Verdict,
        now: Timestamp,
    ) -> Result<Outcome, Error> {
        self.check_decider(approver)?;
        self.check_open(now)?;
        self.check_verdict(approver, &verdict)?;

        self.decisions.push(Decision {
            approver: approver.identity.clone(),
            approver_roles: approver.roles.clone(),
            at: now,
            verdict: verdict.clone(),
        });
        if let Verdict::Reject { reason } = verdict {
            self.close(
                State::Rejected {
                    by: approver.identity.clone(),
                    reason,
                },
                now,
            );
            return Ok(Outcome::Rejected);
        }
        let (approvals, needed) = (self.approvals(), self.needed());
        if approvals >= needed {
            self.close(State::Approved, now);
            Ok(Outcome::Approved)
        } else {
            Ok(Outcome::Pending { approvals, needed })
        }
    }

    /// The requester `by` withdraws the request at `now`.
    ///
    /// # Errors
    /// [`Error::NotRequester`] when `by` is someone else; [`Error::Decided`] or
    /// [`Error::Expired`] when it is no longer pending.
    pub fn withdraw(&mut self, by: &str, now: Timestamp) -> Result<(), Error> {
        if by != self.requester.identity {
            return Err(Error::NotRequester {
                request: self.id.clone(),
                rule: self.rule.clone(),
                identity: by.to_owned(),
            });
        }
        self.check_open(now)?;
        self.close(State::Withdrawn, now);
        Ok(())
    }

    /// Marks a pending request expired when `now` is at or past its expiry. Returns whether it
    /// did; a request already out of `Pending` is left alone.
    pub fn expire_if_due(&mut self, now: Timestamp) -> bool {
        if self.state != State::Pending || now < self.expires_at {
            return false;
        }
        self.close(State::Expired, self.expires_at);
        true
    }

    /// Who may decide: never the requester, and only a holder of an approver role. Checked
    /// before the request's state, so that an attempt breaking a duty rule is reported as such
    /// whatever the request's state.
    fn check_decider(&self, approver: &Party) -> Result<(), Error> {
        if approver.identity == self.requester.identity {
            return Err(Error::SelfDecision {
                request: self.id.clone(),
                rule: self.rule.clone(),
                identity: approver.identity.clone(),
                approvers: self.spec.approvers.clone(),
            });
        }
        if !approver
            .roles
            .iter()
            .any(|r| self.spec.approvers.contains(r))
        {
            return Err(Error::NotAnApprover {
                request: self.id.clone(),
                rule: self.rule.clone(),
                identity: approver.identity.clone(),
                approvers: self.spec.approvers.clone(),
            });
        }
        Ok(())
    }

    /// What the verdict itself must satisfy: a second approval by the same person does not
    /// count, and a rejection says why.
    fn check_verdict(&self, approver: &Party, verdict: &Verdict) -> Result<(), Error> {
        match verdict {
            Verdict::Approve if self.has_approved(&approver.identity) => {
                Err(Error::AlreadyApproved {
                    request: self.id.clone(),
                    rule: self.rule.clone(),
                    identity: approver.identity.clone(),
                    approvals: self.approvals(),
                    needed: self.needed(),
                    approvers: self.spec.approvers.clone(),
                })
            }
            Verdict::Reject { reason } if reason.trim().is_empty() => Err(Error::MissingReason {
                request: self.id.clone(),
                rule: self.rule.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Why the request can't be decided at `now`, if it can't: it is closed, or due to expire.
    fn closed_error(&self, now: Timestamp) -> Option<Error> {
        match self.state {
            State::Pending if now < self.expires_at => None,
            State::Pending | State::Expired => Some(Error::Expired {
                request: self.id.clone(),
                rule: self.rule.clone(),
            }),
            State::Approved | State::Rejected { .. } | State::Withdrawn => Some(Error::Decided {
                request: self.id.clone(),
                rule: self.rule.clone(),
                state: self.state.as_str(),
            }),
        }
    }

    /// Fails unless the request is pending and not yet due to expire (marking it expired if it
    /// is due).
    fn check_open(&mut self, now: Timestamp) -> Result<(), Error> {
        let closed = self.closed_error(now);
        self.expire_if_due(now);
        closed.map_or(Ok(()), Err)
    }

    fn has_approved(&self, identity: &str) -> bool {
        self.decisions
            .iter()
            .any(|d| d.verdict == Verdict::Approve && d.approver == identity)
    }

    fn close(&mut self, state: State, at: Timestamp) {
        self.state = state;
        self.closed_at = Some(at);
    }
}

// === impl State ===

impl State {
    /// `pending`, `approved`, `rejected`, `expired` or `withdrawn`.
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Rejected { .. } => "rejected",
            State::Expired => "expired",
            State::Withdrawn => "withdrawn",
        }
    }
}

// === impl Error ===

impl ToErrorResponse for Error {
    fn sqlstate(&self) -> SqlState {
        match self {
            Error::SelfDecision { .. }
            | Error::NotAnApprover { .. }
            | Error::AlreadyApproved { .. }
            | Error::NotRequester { .. } => SqlState::INSUFFICIENT_PRIVILEGE,
            Error::MissingReason { .. } => SqlState::INVALID_PARAMETER_VALUE,
            Error::Decided { .. } | Error::Expired { .. } => {
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE
            }
        }
    }

    fn severity(&self) -> Severity {
        Severity::Error
    }

    fn side(&self) -> Side {
        Side::Client
    }

    fn hint(&self) -> Option<String> {
        match self {
            Error::SelfDecision { approvers, .. } => Some(format!(
                "another member of {} must decide it",
                approvers.join(", ")
            )),
            Error::NotAnApprover { approvers, .. } => Some(format!(
                "only members of {} may decide it",
                approvers.join(", ")
            )),
            Error::AlreadyApproved { approvers, .. } => Some(format!(
                "each person counts once; another member of {} must approve it",
                approvers.join(", ")
            )),
            Error::MissingReason { .. } => Some("say why; the requester is shown it".to_owned()),
            Error::Expired { .. } => {
                Some("run the statement again to make a new request".to_owned())
            }
            Error::NotRequester { .. } | Error::Decided { .. } => None,
        }
    }
}
