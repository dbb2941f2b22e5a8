//! The JSON shapes of the admin API, shared by the server (which builds them from tickets) and
//! `pgward approvals` (which reads them back).
//!
//! These are a stable, flat view for people and scripts, deliberately separate from the stored
//! [`Ticket`] encoding: the store may change its layout without breaking API clients. Times are
//! given twice, as RFC 3339 (UTC) for people and as Unix milliseconds for programs.

use serde::{Deserialize, Serialize};

use crate::approval::{Outcome, State, Ticket, Timestamp, Verdict};

/// One approval request as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    /// The request id, as typed in `pgward approvals approve ID`.
    pub id: String,
    /// `pending`, `approved`, `rejected`, `expired` or `withdrawn`.
    pub state: String,
    /// For a rejected request: who rejected it and why.
    pub rejection: Option<RejectionView>,
    /// Who asked, with the roles they held then.
    pub requester: PartyView,
    /// The rule that held the statement.
    pub rule: String,
    /// `hold` or `retry`.
    pub mode: String,
    /// Distinct approvals so far.
    pub approvals: u32,
    /// Distinct approvals needed.
    pub needed: u32,
    /// Roles whose members may decide.
    pub approvers: Vec<String>,
    /// When it was made.
    pub created_at: TimeView,
    /// When it expires if still pending.
    pub expires_at: TimeView,
    /// When it was decided, expired or withdrawn.
    pub closed_at: Option<TimeView>,
    /// What would run.
    pub statement: StatementView,
    /// Where it came from.
    pub origin: OriginView,
    /// Accepted decisions, oldest first.
    pub decisions: Vec<DecisionView>,
}

/// An identity and its roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyView {
    /// The identity.
    pub identity: String,
    /// Its pgward roles.
    pub roles: Vec<String>,
}

/// Who rejected a request and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionView {
    /// The approver.
    pub by: String,
    /// Their reason.
    pub reason: String,
}

/// A point in time, for people and for programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeView {
    /// RFC 3339 in UTC, millisecond precision.
    pub rfc3339: String,
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

/// The held statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementView {
    /// SQL text as the client sent it.
    pub sql: String,
    /// Bound parameter values as text (`null` for SQL NULL).
    pub params: Vec<Option<String>>,
    /// The values were hidden (`***`) because masks apply to the viewer on these tables.
    #[serde(default)]
    pub params_masked: bool,
    /// Statement class.
    pub class: String,
    /// Tables read or written.
    pub tables: Vec<String>,
    /// Server database.
    pub database: String,
}

/// Where a request came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginView {
    /// The pgward session.
    pub session: String,
    /// The client's address.
    pub client_addr: String,
}

/// One accepted decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionView {
    /// The approver.
    pub approver: String,
    /// Their roles when deciding.
    pub approver_roles: Vec<String>,
    /// `approve` or `reject`.
    pub verdict: String,
    /// The reason of a rejection.
    pub reason: Option<String>,
    /// When.
    pub at: TimeView,
}

/// The answer to an approve or reject: where the request now stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionResult {
    /// `pending` (more approvals needed), `approved` or `rejected`.
    pub outcome: String,
    /// Distinct approvals so far.
    pub approvals: u32,
    /// Distinct approvals needed.
    pub needed: u32,
    /// The request after the decision.
    pub request: RequestView,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, naming the request and rule where there is one.
    pub error: String,
    /// The SQLSTATE the same refusal has on the wire.
    pub sqlstate: String,
    /// What to do about it, when pgward knows.
    pub hint: Option<String>,
}

// === impl RequestView ===

impl From<&Ticket> for RequestView {
    fn from(t: &Ticket) -> Self {
        let r = &t.request;
        let rejection = match r.state() {
            State::Rejected { by, reason } => Some(RejectionView {
                by: by.clone(),
                reason: reason.clone(),
            }),
            _ => None,
        };
        RequestView {
            id: r.id().to_string(),
            state: r.state().as_str().to_owned(),
            rejection,
            requester: PartyView {
                identity: r.requester().identity.clone(),
                roles: r.requester().roles.clone(),
            },
            rule: r.rule().to_string(),
            mode: r.spec().mode.as_str().to_owned(),
            approvals: r.approvals(),
            needed: r.needed(),
            approvers: r.spec().approvers.clone(),
            created_at: r.created_at().into(),
            expires_at: r.expires_at().into(),
            closed_at: r.closed_at().map(TimeView::from),
            statement: StatementView {
                sql: t.statement.sql.clone(),
                params: t.statement.params.clone(),
                params_masked: false,
                class: t.statement.class.clone(),
                tables: t.statement.tables.clone(),
                database: t.statement.database.clone(),
            },
            origin: OriginView {
                session: t.origin.session.clone(),
                client_addr: t.origin.client_addr.clone(),
            },
            decisions: r
                .decisions()
                .iter()
                .map(|d| {
                    let (verdict, reason) = match &d.verdict {
                        Verdict::Approve => ("approve", None),
                        Verdict::Reject { reason } => ("reject", Some(reason.clone())),
                    };
                    DecisionView {
                        approver: d.approver.clone(),
                        approver_roles: d.approver_roles.clone(),
                        verdict: verdict.to_owned(),
                        reason,
                        at: d.at.into(),
                    }
                })
                .collect(),
        }
    }
}

// === impl DecisionResult ===

impl DecisionResult {
    /// The answer for `outcome`, with the request as it now is.
    pub fn new(outcome: Outcome, ticket: &Ticket) -> Self {
        let request = RequestView::from(ticket);
        let outcome = match outcome {
            Outcome::Pending { .. } => "pending",
            Outcome::Approved => "approved",
            Outcome::Rejected => "rejected",
        };
        DecisionResult {
            outcome: outcome.to_owned(),
            approvals: request.approvals,
            needed: request.needed,
            request,
        }
    }
}

// === impl TimeView ===

impl From<Timestamp> for TimeView {
    fn from(t: Timestamp) -> Self {
        TimeView {
            rfc3339: format_rfc3339(t.as_unix_millis()),
            unix_ms: t.as_unix_millis(),
        }
    }
}

/// Formats Unix milliseconds as RFC 3339 UTC with milliseconds, e.g. `2025-03-01T12:00:00.000Z`.
pub fn format_rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01, by counting 400-year eras of
/// 146 097 days from 0000-03-01 (starting years in March puts the leap day last).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            format_rfc3339(1_709_251_199_999),
            "2024-02-29T23:59:59.999Z"
        );
        assert_eq!(
            format_rfc3339(4_102_444_800_123),
            "2100-01-01T00:00:00.123Z"
        );
    }
}
