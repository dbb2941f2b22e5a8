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
    /// Whether the viewer may approve it now, by the duty checks a decision passes
    /// ([`Request::may_decide`](crate::approval::Request::may_decide)). The console offers
    /// Approve and Reject only when this is true.
    #[serde(default)]
    pub can_decide: bool,
    /// Why the viewer may not decide it, when `can_decide` is false.
    #[serde(default)]
    pub cannot_decide: Option<String>,
    /// Whether the viewer may reject it now: as `can_decide`, and also after approving it
    /// themself (a change of mind only ever makes the outcome safer).
    #[serde(default)]
    pub can_reject: bool,
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

/// `GET /v1/me`: who the caller is and what the API lets them do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeView {
    /// The identity.
    pub identity: String,
    /// Its roles under the rules in force now.
    pub roles: Vec<String>,
    /// How it authenticated: `admin_token`.
    pub credential: String,
    /// Whether it holds one of `[admin] auditor_roles`, so may read the audit log.
    pub is_auditor: bool,
    /// Whether the audit log is on (the audit routes answer 409 when it is off).
    pub audit_enabled: bool,
    /// The `approve` rules whose requests it may decide (never its own requests).
    pub approver_of: Vec<String>,
}

/// One session in `GET /v1/audit/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummaryView {
    /// `INSTANCE-NUMBER`, as `pgward replay` takes it.
    pub id: String,
    /// Who.
    pub identity: String,
    /// From where.
    pub client_addr: String,
    /// The database.
    pub database: String,
    /// When it started.
    pub started: TimeView,
    /// When it ended, if it has.
    pub ended: Option<TimeView>,
    /// Statements recorded.
    pub statements: u64,
    /// Statements denied.
    pub denials: u64,
}

/// `GET /v1/audit/sessions/{id}`: one session as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineView {
    /// `INSTANCE-NUMBER`.
    pub id: String,
    /// How it began, once its first record is in the log.
    pub start: Option<SessionStartView>,
    /// Its statements, in order.
    pub statements: Vec<TimelineStatement>,
    /// Approval events of this session not tied to a recorded statement (for instance a
    /// request withdrawn when the client left).
    pub approval_events: Vec<ApprovalEventView>,
    /// How it ended; `None` while it is open.
    pub end: Option<SessionEndView>,
    /// The log sequence number of the session's newest record: pass it as `after` to wait for
    /// the next one.
    pub last_seq: u64,
    /// With `after`: whether anything newer than `after` is shown.
    pub changed: bool,
}

/// How a session began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStartView {
    /// When.
    pub time: TimeView,
    /// Who.
    pub identity: String,
    /// With which roles.
    pub roles: Vec<String>,
    /// From where.
    pub client_addr: String,
    /// Over TLS.
    pub tls: bool,
    /// The client's `application_name`.
    pub application_name: String,
    /// The database.
    pub database: String,
    /// pgward's login on the server for the session.
    pub upstream_user: String,
}

/// One statement of a session: the decision, the approval, what came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineStatement {
    /// Its number in the session.
    pub seq: u64,
    /// When pgward received it.
    pub time: TimeView,
    /// The SQL text.
    pub sql: String,
    /// Parameters as the log holds them (masked as the client's role saw them).
    pub params: Vec<Option<String>>,
    /// Statement class.
    pub class: String,
    /// Tables touched.
    pub tables: Vec<String>,
    /// `allow`, `deny`, `approve` …
    pub decision: String,
    /// The rule that decided.
    pub rule: Option<String>,
    /// The approval request that held it.
    pub approval_request: Option<String>,
    /// Who approved it.
    pub approvers: Vec<String>,
    /// Result columns that were masked.
    pub masked_columns: Vec<String>,
    /// What happened to its approval request.
    pub approval_events: Vec<ApprovalEventView>,
    /// How it ended, once it has.
    pub outcome: Option<OutcomeView>,
    /// The result rows captured, as the client saw them (masked).
    pub rows: Option<RowsView>,
}

/// How a statement ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeView {
    /// When.
    pub time: TimeView,
    /// The command tag, e.g. `INSERT 0 1`.
    pub command_tag: Option<String>,
    /// Rows returned or affected.
    pub rows: Option<u64>,
    /// Bytes sent to the client.
    pub bytes: u64,
    /// From receipt to completion, in microseconds.
    pub duration_us: u64,
    /// The SQLSTATE of a failure or refusal.
    pub sqlstate: Option<String>,
    /// Its message.
    pub message: Option<String>,
}

/// Captured result rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowsView {
    /// Column names.
    pub columns: Vec<String>,
    /// Cells as text; `null` is SQL NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// Whether the capture stopped at its size limit.
    pub truncated: bool,
}

/// Something that happened to an approval request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalEventView {
    /// The request.
    pub request: String,
    /// `created`, `approved`, `rejected`, `expired`, `withdrawn` …
    pub event: String,
    /// Who.
    pub actor: String,
    /// The reason of a rejection.
    pub reason: Option<String>,
    /// When.
    pub time: TimeView,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEndView {
    /// When.
    pub time: TimeView,
    /// Why.
    pub reason: String,
}

/// `GET /v1/audit/verify`: what `pgward audit verify` says about the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyView {
    /// `ok` or `broken`.
    pub status: String,
    /// Files checked.
    pub files: usize,
    /// Records whose chain checked out, up to the first break.
    pub records: u64,
    /// The sequence number of the last good record.
    pub head_seq: u64,
    /// The first break.
    pub first_break: Option<BreakView>,
    /// Facts that are not breaks (the file being written, crash recoveries …).
    pub notes: Vec<String>,
    /// Whether signatures were checked against the configured signing key.
    pub trusted_key: bool,
    /// When the check ran.
    pub checked_at: TimeView,
}

/// Where the chain broke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakView {
    /// The file's name.
    pub file: String,
    /// The row in it, from 1.
    pub row: Option<usize>,
    /// The record's sequence number.
    pub seq: Option<u64>,
    /// `edited`, `missing`, `reordered`, `truncated` or `bad signature`.
    pub kind: String,
    /// Details.
    pub detail: String,
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
            can_decide: false,
            cannot_decide: None,
            can_reject: false,
        }
    }
}

// === impl DecisionResult ===

impl DecisionResult {
    /// The answer for `outcome`, with the request as it now is (as the approver may see it).
    pub fn new(outcome: Outcome, request: RequestView) -> Self {
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

impl TimeView {
    /// From microseconds since the epoch, as the audit log keeps them (before the epoch counts
    /// as the epoch).
    pub fn from_micros(us: i64) -> Self {
        let ms = u64::try_from(us / 1000).unwrap_or(0);
        TimeView {
            rfc3339: format_rfc3339(ms),
            unix_ms: ms,
        }
    }

    /// From a record's time.
    pub fn from_system_time(t: std::time::SystemTime) -> Self {
        Timestamp::from_system_time(t).into()
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
