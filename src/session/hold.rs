//! Statements an `approve` rule holds: the session's side of approvals.
//!
//! The decide stage finds that a statement needs approval and hands a [`Pending`] here; the
//! relay stops reading the client's frames at that message and calls [`Holds::resolve`]:
//!
//! - `hold` mode: a request is made, the client is sent a NoticeResponse naming it, and the
//!   session waits (a sleeping task: no CPU) until approval, rejection, expiry, or a cancel
//!   from the client, which withdraws the request.
//! - `retry` mode: an unused grant of this identity for exactly this text and these
//!   parameters lets it run once; otherwise a request is made and refused at once, naming it.
//!
//! The outcome is applied when the relay offers the same message again: it runs as sent, or is
//! replaced by a refusal like any denied statement, so a refusal inside a transaction block
//! aborts it exactly as PostgreSQL's own error would. If the request can't even be stored,
//! the statement is refused (fail closed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tracing::{info, warn};

use super::cancel::CancelSignal;
use super::enforce::Refusals;
use crate::approval::{Approvals, Ended, Origin, Party, Statement, Ticket};
use crate::policy::{ApprovalMode, ApprovalSpec, RuleId};
use crate::proto::{self, SqlState};

/// Texts of prepared statements are kept only for approvals and the audit log; past this many
/// the map starts again (a Bind of a forgotten one is recorded without its text).
const MAX_KEPT_TEXTS: usize = 4096;

/// A statement waiting to be held.
#[derive(Debug)]
pub struct Pending {
    /// The `approve` rule.
    pub rule: RuleId,
    /// Its approvers, count, timeout and mode.
    pub spec: ApprovalSpec,
    /// What will run.
    pub statement: Statement,
}

/// How a hold ended: what to do with the message when it is offered again.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Send it to the server: approved as `request` by `approvers`.
    Run {
        /// The approval request.
        request: String,
        /// Who approved it.
        approvers: Vec<String>,
    },
    /// Refuse it.
    Refuse {
        /// SQLSTATE: 42501, or 57014 for a cancel.
        code: SqlState,
        /// The rule that held it.
        rule: String,
        /// The ErrorResponse message.
        message: String,
        /// The HINT.
        hint: String,
        /// The approval request it was refused under, when one was made.
        request: Option<String>,
    },
}

/// One session's approvals.
pub struct Holds {
    approvals: Arc<Approvals>,
    requester: Party,
    origin: Origin,
    cancel: Arc<CancelSignal>,
    refusals: Arc<Refusals>,
    /// Set by the decide stage before it answers `Verdict::Hold`.
    pub(super) pending: Option<Pending>,
    /// Set by [`Holds::resolve`]; applied to the message offered again.
    pub(super) outcome: Option<Outcome>,
    /// The texts of prepared statements an `approve` rule matched at Parse, by name, so that
    /// the Bind that runs them can show approvers the SQL.
    texts: HashMap<String, Arc<str>>,
    /// The request being waited on, to withdraw if the client leaves.
    waiting: Option<Arc<Ticket>>,
}

impl std::fmt::Debug for Holds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holds")
            .field("requester", &self.requester.identity)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

// === impl Holds ===

impl Holds {
    /// The approvals of one session.
    pub fn new(
        approvals: Arc<Approvals>,
        requester: Party,
        origin: Origin,
        cancel: Arc<CancelSignal>,
        refusals: Arc<Refusals>,
    ) -> Self {
        Holds {
            approvals,
            requester,
            origin,
            cancel,
            refusals,
            pending: None,
            outcome: None,
            texts: HashMap::new(),
            waiting: None,
        }
    }

    /// Updates the requester's roles (rules may have been reloaded).
    pub fn set_roles(&mut self, roles: &[String]) {
        if self.requester.roles != roles {
            self.requester.roles = roles.to_vec();
        }
    }

    /// Remembers the text of prepared statement `name`, which needs approval to run.
    pub fn keep_text(&mut self, name: &[u8], text: &[u8]) {
        if self.texts.len() >= MAX_KEPT_TEXTS {
            self.texts.clear();
        }
        self.texts.insert(
            String::from_utf8_lossy(name).into_owned(),
            Arc::from(String::from_utf8_lossy(text).as_ref()),
        );
    }

    /// The kept text of prepared statement `name`.
    pub fn text(&self, name: &[u8]) -> Option<Arc<str>> {
        self.texts
            .get(String::from_utf8_lossy(name).as_ref())
            .cloned()
    }

    /// Forgets prepared statement `name` (Close, or a new Parse under the same name).
    pub fn forget_text(&mut self, name: &[u8]) {
        if !self.texts.is_empty() {
            self.texts.remove(String::from_utf8_lossy(name).as_ref());
        }
    }

    /// Makes the request for the pending statement and waits for its outcome (see the module
    /// documentation). Cancel-safe: if the future is dropped (the client left), call
    /// [`Holds::abandon`].
    pub async fn resolve(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let outcome = match pending.spec.mode {
            ApprovalMode::Retry => self.retry(pending).await,
            ApprovalMode::Hold => self.hold(pending).await,
        };
        self.outcome = Some(outcome);
    }

    /// Withdraws the request being waited on, if any: the client is gone.
    pub async fn abandon(&mut self) {
        if let Some(t) = self.waiting.take() {
            let id = t.request.id();
            if let Err(e) = self.approvals.withdraw(id, &self.requester.identity).await {
                warn!(request = %id, error = %e, "Could not withdraw an abandoned approval request");
            }
        }
    }

    async fn retry(&mut self, pending: Pending) -> Outcome {
        let identity = self.requester.identity.clone();
        match self
            .approvals
            .take_grant(&identity, &pending.statement)
            .await
        {
            Ok(Some(t)) => {
                info!(request = %t.request.id(), "Approved statement run on its grant");
                return Outcome::Run {
                    request: t.request.id().to_string(),
                    approvers: t
                        .request
                        .decisions()
                        .iter()
                        .map(|d| d.approver.clone())
                        .collect(),
                };
            }
            Ok(None) => {}
            Err(e) => return unavailable(&pending.rule, &e),
        }
        let window = pending.spec.grant_window;
        let ticket = match self.submit(&pending).await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let id = ticket.request.id();
        Outcome::Refuse {
            request: Some(id.to_string()),
            code: SqlState::INSUFFICIENT_PRIVILEGE,
            rule: pending.rule.to_string(),
            message: format!(
                "approval required by pgward rule \"{}\": request {id} is waiting for {}",
                pending.rule,
                approvers(&pending.spec)
            ),
            hint: format!(
                "once it is approved (pgward approvals approve {id}), run exactly the same \
                 statement again within {}; the approval is good for one run",
                human(window)
            ),
        }
    }

    async fn hold(&mut self, pending: Pending) -> Outcome {
        // A cancel sent before the hold began was meant for something else.
        let cancels = self.cancel.count();
        let ticket = match self.submit(&pending).await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let id = ticket.request.id().clone();
        let mut notice = BytesMut::new();
        proto::write_notice(
            &mut notice,
            &format!(
                "pgward is holding this statement for approval: request {id} (rule \"{}\") \
                 waits for {}, for at most {}",
                pending.rule,
                approvers(&pending.spec),
                human(pending.spec.timeout)
            ),
            Some(&format!(
                "an approver runs: pgward approvals approve {id}; cancel the query to withdraw it"
            )),
        );
        self.refusals.notify_client(&notice);
        self.waiting = Some(ticket);
        let rule = pending.rule.to_string();
        let ended = tokio::select! {
            ended = self.approvals.wait(&id) => ended,
            () = self.cancel.raised_after(cancels) => {
                info!(request = %id, "Held statement cancelled by the client");
                match self.approvals.withdraw(&id, &self.requester.identity).await {
                    // Approved in the same instant: the decision stands, and so does the run.
                    Ok(t) if t.request.state() == &crate::approval::State::Approved => {
                        Ok(Ended::Approved(Vec::new()))
                    }
                    Ok(_) => Ok(Ended::Withdrawn),
                    Err(e) => Err(e),
                }
            }
        };
        self.waiting = None;
        match ended {
            Ok(Ended::Approved(by)) => {
                info!(request = %id, approvers = ?by, "Held statement approved");
                Outcome::Run {
                    request: id.to_string(),
                    approvers: by,
                }
            }
            Ok(Ended::Rejected { by, reason }) => Outcome::Refuse {
                request: Some(id.to_string()),
                code: SqlState::INSUFFICIENT_PRIVILEGE,
                rule,
                message: format!("approval request {id} was rejected by {by}: {reason}"),
                hint: "the statement did not run; talk to the approver before asking again"
                    .to_owned(),
            },
            Ok(Ended::Expired) => Outcome::Refuse {
                request: Some(id.to_string()),
                code: SqlState::INSUFFICIENT_PRIVILEGE,
                rule,
                message: format!(
                    "approval request {id} expired after {} without a decision",
                    human(pending.spec.timeout)
                ),
                hint: format!(
                    "the statement did not run; ask {} to watch for it and run it again",
                    approvers(&pending.spec)
                ),
            },
            Ok(Ended::Withdrawn) => Outcome::Refuse {
                request: Some(id.to_string()),
                code: SqlState::QUERY_CANCELED,
                rule,
                message: "canceling statement due to user request".to_owned(),
                hint: format!("approval request {id} was withdrawn; the statement did not run"),
            },
            Err(e) => unavailable(&pending.rule, &e),
        }
    }

    async fn submit(&self, pending: &Pending) -> Result<Arc<Ticket>, Outcome> {
        self.approvals
            .submit(
                self.requester.clone(),
                pending.rule.clone(),
                pending.spec.clone(),
                pending.statement.clone(),
                self.origin.clone(),
            )
            .await
            .map_err(|e| unavailable(&pending.rule, &e))
    }
}

/// The refusal when the approval store can't be used.
fn unavailable(rule: &RuleId, e: &crate::approval::StoreError) -> Outcome {
    warn!(error = %e, "Approval store unavailable; statement refused");
    Outcome::Refuse {
        request: None,
        code: SqlState::INSUFFICIENT_PRIVILEGE,
        rule: rule.to_string(),
        message: format!(
            "approval required by pgward rule \"{rule}\", but the approval store is unavailable"
        ),
        hint: "the statement did not run; retry shortly, and tell the DBA if it persists"
            .to_owned(),
    }
}

fn approvers(spec: &ApprovalSpec) -> String {
    let n = spec.min_approvals.max(1);
    format!(
        "{n} approval{} by {}",
        if n == 1 { "" } else { "s" },
        spec.approvers.join(" or ")
    )
}

/// `90s` → `1m30s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}
