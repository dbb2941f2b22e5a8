//! What the audit log records: one [`Record`] per event, as plain owned values.
//!
//! The session fills these structs and hands them to [`super::AuditLog::record`]; the writer adds
//! the global sequence number, the instance and the chain hashes (see [`Envelope`]). Each record
//! has one canonical byte encoding ([`Envelope::encode`]), which is what the hash chain covers.
//!
//! # Canonical encoding (version 1)
//! Every value is written in a fixed order, with nothing implicit, so that two different records
//! can never encode to the same bytes:
//!
//! - `u64` and `i64`: 8 bytes, big-endian;
//! - `bool`: one byte, 0 or 1;
//! - a string: its length in bytes as a `u32`, big-endian, then its UTF-8 bytes;
//! - an `Option`: one byte, 0 for `None`, or 1 followed by the value;
//! - a list: its length as a `u32`, big-endian, then each element.
//!
//! The envelope comes first: the format tag `pgward-audit/1` (as a string), the global sequence
//! number, the instance, the kind's name (as a string), the time in microseconds since the Unix
//! epoch (`i64`), the session (`Option<u64>`); then the kind's fields in the order they are
//! declared in its struct.
//!
//! # Security
//! No field holds a secret: passwords, tokens and keys never reach a record. Parameter values
//! and captured rows are stored as the client's role saw them, that is after masking; the
//! session is responsible for passing masked values.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The tag that starts every record's canonical bytes; a new encoding gets a new tag.
pub const FORMAT_TAG: &str = "pgward-audit/1";

/// One audited event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A client authenticated and its session began.
    SessionStart(SessionStart),
    /// A statement was decided; written before it is forwarded (or refused).
    Statement(Statement),
    /// A statement completed, successfully or not.
    Outcome(Outcome),
    /// Something happened to an approval request.
    Approval(ApprovalEvent),
    /// Result rows of a statement as the client received them (masked), up to a cap.
    Rows(Rows),
    /// The session ended.
    SessionEnd(SessionEnd),
}

/// The kinds of [`Record`], as named in the `kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// [`Record::SessionStart`]
    SessionStart,
    /// [`Record::Statement`]
    Statement,
    /// [`Record::Outcome`]
    Outcome,
    /// [`Record::Approval`]
    Approval,
    /// [`Record::Rows`]
    Rows,
    /// [`Record::SessionEnd`]
    SessionEnd,
}

/// A session began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStart {
    /// The session's number, unique within this pgward instance.
    pub session: u64,
    /// When authentication completed.
    pub time: SystemTime,
    /// The authenticated identity.
    pub identity: String,
    /// The pgward roles it holds.
    pub roles: Vec<String>,
    /// The client's address, as `ip:port`.
    pub client_addr: String,
    /// Whether the client connection uses TLS.
    pub tls: bool,
    /// The client's `application_name`, empty when it sent none.
    pub application_name: String,
    /// The database the client asked for.
    pub database: String,
    /// The login pgward uses on the server for this session.
    pub upstream_user: String,
}

/// A statement and the decision on it. Recorded before the statement is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The session.
    pub session: u64,
    /// The statement's number within the session, from 1; its [`Outcome`] and [`Rows`] carry
    /// the same number.
    pub seq: u64,
    /// When pgward received it.
    pub time: SystemTime,
    /// The SQL text as the client sent it.
    pub text: String,
    /// Bound parameter values in text form (masked as the role saw them); `None` is SQL NULL.
    pub params: Vec<Option<String>>,
    /// The statement class, e.g. `read`, `write`, `ddl`.
    pub class: String,
    /// The tables it touches, qualified.
    pub tables: Vec<String>,
    /// `allow`, `deny`, `approve` …
    pub decision: String,
    /// The rule that decided, if a rule did.
    pub rule: Option<String>,
    /// The approval request that held it, if any.
    pub approval_request: Option<String>,
    /// The identities that approved it.
    pub approvers: Vec<String>,
    /// The result columns that were masked, e.g. `public.users.email`.
    pub masked_columns: Vec<String>,
}

/// How a statement ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The session.
    pub session: u64,
    /// The statement's number within the session.
    pub seq: u64,
    /// When it completed.
    pub time: SystemTime,
    /// The command tag, e.g. `SELECT 3`, `INSERT 0 1`, when it completed.
    pub command_tag: Option<String>,
    /// Rows returned or affected, when known.
    pub rows: Option<u64>,
    /// Bytes of results sent to the client.
    pub bytes: u64,
    /// Time from receiving the statement to its completion, in microseconds.
    pub duration_us: u64,
    /// The SQLSTATE when it failed or was refused.
    pub sqlstate: Option<String>,
    /// The error message when it failed or was refused.
    pub message: Option<String>,
}

/// An approval request changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalEvent {
    /// The request.
    pub request: String,
    /// What happened.
    pub event: ApprovalEventKind,
    /// The session of the held statement, when the event is tied to one.
    pub session: Option<u64>,
    /// Who made it happen: requester, approver, or `pgward` for expiry.
    pub actor: String,
    /// The reason given (rejections), if any.
    pub reason: Option<String>,
    /// When.
    pub time: SystemTime,
}

/// What happened to an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalEventKind {
    /// A statement was held and the request made.
    Created,
    /// An approver approved (the request may still need more approvals).
    Approved,
    /// An approver rejected it.
    Rejected,
    /// Nobody decided in time.
    Expired,
    /// The requester withdrew it.
    Withdrawn,
    /// An approved grant was used to run the statement.
    GrantUsed,
}

/// Captured result rows of one statement, as text cells, capped in size (see [`RowsCapture`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rows {
    /// The session.
    pub session: u64,
    /// The statement's number within the session.
    pub seq: u64,
    /// When the capture ended.
    pub time: SystemTime,
    /// Column names.
    pub columns: Vec<String>,
    /// The rows; `None` is SQL NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// Whether rows were left out because of the cap.
    pub truncated: bool,
}

/// A session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    /// The session.
    pub session: u64,
    /// When.
    pub time: SystemTime,
    /// Why, e.g. `client closed`, `terminated`, or an error.
    pub reason: String,
}

/// Collects rows for a [`Rows`] record until a byte budget is spent.
///
/// # Performance
/// Cells are copied only while the budget lasts; past it, [`RowsCapture::push`] returns at once.
#[derive(Debug, Clone)]
pub struct RowsCapture {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
    budget: usize,
    truncated: bool,
}

/// A record as stored: the record plus what the writer adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Global sequence number, from 1, continuous across files and restarts.
    pub seq: u64,
    /// The pgward instance (process start) that wrote it.
    pub instance: String,
    /// The record.
    pub record: Record,
}

// === impl Record ===

impl Record {
    /// The record's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Record::SessionStart(_) => Kind::SessionStart,
            Record::Statement(_) => Kind::Statement,
            Record::Outcome(_) => Kind::Outcome,
            Record::Approval(_) => Kind::Approval,
            Record::Rows(_) => Kind::Rows,
            Record::SessionEnd(_) => Kind::SessionEnd,
        }
    }

    /// When it happened.
    pub fn time(&self) -> SystemTime {
        match self {
            Record::SessionStart(r) => r.time,
            Record::Statement(r) => r.time,
            Record::Outcome(r) => r.time,
            Record::Approval(r) => r.time,
            Record::Rows(r) => r.time,
            Record::SessionEnd(r) => r.time,
        }
    }

    /// The session it belongs to, if any.
    pub fn session(&self) -> Option<u64> {
        match self {
            Record::SessionStart(r) => Some(r.session),
            Record::Statement(r) => Some(r.session),
            Record::Outcome(r) => Some(r.session),
            Record::Approval(r) => r.session,
            Record::Rows(r) => Some(r.session),
            Record::SessionEnd(r) => Some(r.session),
        }
    }
}

// === impl Kind ===

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 6] = [
        Kind::SessionStart,
        Kind::Statement,
        Kind::Outcome,
        Kind::Approval,
        Kind::Rows,
        Kind::SessionEnd,
    ];

    /// The name in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SessionStart => "session_start",
            Kind::Statement => "statement",
            Kind::Outcome => "outcome",
            Kind::Approval => "approval",
            Kind::Rows => "rows",
            Kind::SessionEnd => "session_end",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

// === impl ApprovalEventKind ===

impl ApprovalEventKind {
    /// Every event kind.
    pub const ALL: [ApprovalEventKind; 6] = [
        ApprovalEventKind::Created,
        ApprovalEventKind::Approved,
        ApprovalEventKind::Rejected,
        ApprovalEventKind::Expired,
        ApprovalEventKind::Withdrawn,
        ApprovalEventKind::GrantUsed,
    ];

    /// The name in the `approval_event` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalEventKind::Created => "created",
            ApprovalEventKind::Approved => "approved",
            ApprovalEventKind::Rejected => "rejected",
            ApprovalEventKind::Expired => "expired",
            ApprovalEventKind::Withdrawn => "withdrawn",
            ApprovalEventKind::GrantUsed => "granted-used",
        }
    }

    /// The event kind named `s`.
    pub fn parse(s: &str) -> Option<ApprovalEventKind> {
        ApprovalEventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

// === impl RowsCapture ===

impl RowsCapture {
    /// Starts a capture of rows with these columns, keeping at most `max_bytes` of cell text.
    pub fn new(columns: Vec<String>, max_bytes: usize) -> Self {
        RowsCapture {
            columns,
            rows: Vec::new(),
            budget: max_bytes,
            truncated: false,
        }
    }

    /// Adds a row unless the budget is spent; returns whether it was kept. Once a row is left
    /// out, every later row is too, so the capture is always a prefix of the result.
    pub fn push<'a>(&mut self, cells: impl IntoIterator<Item = Option<&'a [u8]>>) -> bool {
        if self.truncated {
            return false;
        }
        let row: Vec<Option<String>> = cells
            .into_iter()
            .map(|c| c.map(|b| String::from_utf8_lossy(b).into_owned()))
            .collect();
        // A NULL still costs a byte, so that a flood of NULL rows is capped too.
        let size: usize = row.iter().map(|c| c.as_ref().map_or(1, String::len)).sum();
        if size > self.budget {
            self.truncated = true;
            return false;
        }
        self.budget -= size;
        self.rows.push(row);
        true
    }

    /// The [`Rows`] record for statement `seq` of `session`.
    pub fn finish(self, session: u64, seq: u64, time: SystemTime) -> Rows {
        Rows {
            session,
            seq,
            time,
            columns: self.columns,
            rows: self.rows,
            truncated: self.truncated,
        }
    }
}

// === impl Envelope ===

impl Envelope {
    /// Appends the canonical bytes (see the module docs) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let r = &self.record;
        put_str(out, FORMAT_TAG);
        put_u64(out, self.seq);
        put_str(out, &self.instance);
        put_str(out, r.kind().as_str());
        put_i64(out, micros(r.time()));
        put_opt(out, r.session().as_ref(), |o, v| put_u64(o, *v));
        match r {
            Record::SessionStart(s) => {
                put_str(out, &s.identity);
                put_list(out, &s.roles, |o, v| put_str(o, v));
                put_str(out, &s.client_addr);
                put_bool(out, s.tls);
                put_str(out, &s.application_name);
                put_str(out, &s.database);
                put_str(out, &s.upstream_user);
            }
            Record::Statement(s) => {
                put_u64(out, s.seq);
                put_str(out, &s.text);
                put_list(out, &s.params, |o, v| put_opt_str(o, v.as_deref()));
                put_str(out, &s.class);
                put_list(out, &s.tables, |o, v| put_str(o, v));
                put_str(out, &s.decision);
                put_opt_str(out, s.rule.as_deref());
                put_opt_str(out, s.approval_request.as_deref());
                put_list(out, &s.approvers, |o, v| put_str(o, v));
                put_list(out, &s.masked_columns, |o, v| put_str(o, v));
            }
            Record::Outcome(s) => {
                put_u64(out, s.seq);
                put_opt_str(out, s.command_tag.as_deref());
                put_opt(out, s.rows.as_ref(), |o, v| put_u64(o, *v));
                put_u64(out, s.bytes);
                put_u64(out, s.duration_us);
                put_opt_str(out, s.sqlstate.as_deref());
                put_opt_str(out, s.message.as_deref());
            }
            Record::Approval(s) => {
                put_str(out, &s.request);
                put_str(out, s.event.as_str());
                put_str(out, &s.actor);
                put_opt_str(out, s.reason.as_deref());
            }
            Record::Rows(s) => {
                put_u64(out, s.seq);
                put_list(out, &s.columns, |o, v| put_str(o, v));
                put_list(out, &s.rows, |o, row| {
                    put_list(o, row, |o, v| put_opt_str(o, v.as_deref()));
                });
                put_bool(out, s.truncated);
            }
            Record::SessionEnd(s) => put_str(out, &s.reason),
        }
    }
}

/// Microseconds since the Unix epoch; negative before it, saturating far outside.
pub fn micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

/// The time `us` microseconds after the Unix epoch.
pub fn from_micros(us: i64) -> SystemTime {
    let d = Duration::from_micros(us.unsigned_abs());
    if us >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(u8::from(v));
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Lengths past u32 can't occur: a protocol message is at most 1 GiB. Saturating keeps the
    // encoder total; such a record would still hash, just not round-trip.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt<T>(out: &mut Vec<u8>, v: Option<&T>, put: impl Fn(&mut Vec<u8>, &T)) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put(out, v);
        }
    }
}

fn put_opt_str(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put_str(out, v);
        }
    }
}

fn put_list<T>(out: &mut Vec<u8>, items: &[T], put: impl Fn(&mut Vec<u8>, &T)) {
    put_len(out, items.len());
    for item in items {
        put(out, item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn at(us: i64) -> SystemTime {
        from_micros(us)
    }

    fn statement(text: &str, params: Vec<Option<String>>) -> Envelope {
        Envelope {
            seq: 7,
            instance: "i1".to_owned(),
            record: Record::Statement(Statement {
                session: 3,
                seq: 1,
                time: at(1_000_000),
                text: text.to_owned(),
                params,
                class: "read".to_owned(),
                tables: vec!["public.t".to_owned()],
                decision: "allow".to_owned(),
                rule: Some("r1".to_owned()),
                approval_request: None,
                approvers: vec![],
                masked_columns: vec![],
            }),
        }
    }

    fn bytes(e: &Envelope) -> Vec<u8> {
        let mut out = Vec::new();
        e.encode(&mut out);
        out
    }

    #[test]
    fn the_encoding_is_pinned() {
        let e = Envelope {
            seq: 1,
            instance: "x".to_owned(),
            record: Record::SessionEnd(SessionEnd {
                session: 2,
                time: at(3),
                reason: "bye".to_owned(),
            }),
        };
        let mut want = Vec::new();
        want.extend_from_slice(&14u32.to_be_bytes());
        want.extend_from_slice(b"pgward-audit/1");
        want.extend_from_slice(&1u64.to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 1, b'x']);
        want.extend_from_slice(&11u32.to_be_bytes());
        want.extend_from_slice(b"session_end");
        want.extend_from_slice(&3i64.to_be_bytes());
        want.push(1);
        want.extend_from_slice(&2u64.to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 3, b'b', b'y', b'e']);
        assert_eq!(bytes(&e), want);
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_encoding() {
        // Without length prefixes these two would both read "ab" + "c".
        let a = statement("ab", vec![Some("c".to_owned())]);
        let b = statement("a", vec![Some("bc".to_owned())]);
        assert_ne!(bytes(&a), bytes(&b));
    }

    #[test]
    fn null_and_empty_parameters_differ() {
        let a = statement("q", vec![None]);
        let b = statement("q", vec![Some(String::new())]);
        let c = statement("q", vec![]);
        assert_ne!(bytes(&a), bytes(&b));
        assert_ne!(bytes(&a), bytes(&c));
        assert_ne!(bytes(&b), bytes(&c));
    }

    #[test]
    fn times_round_trip_at_microsecond_precision() {
        for us in [0, 1, -1, 1_700_000_000_123_456, -86_400_000_001] {
            assert_eq!(micros(from_micros(us)), us);
        }
    }

    #[test]
    fn capture_keeps_a_prefix_within_the_budget() {
        let mut c = RowsCapture::new(vec!["a".to_owned()], 5);
        assert!(c.push([Some(&b"abc"[..])]));
        assert!(c.push([None]));
        assert!(!c.push([Some(&b"xy"[..])]));
        assert!(!c.push([None]), "nothing after the first row left out");
        let r = c.finish(1, 2, at(0));
        assert_eq!(r.rows, vec![vec![Some("abc".to_owned())], vec![None]]);
        assert!(r.truncated);
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        for k in ApprovalEventKind::ALL {
            assert_eq!(ApprovalEventKind::parse(k.as_str()), Some(k));
        }
    }
}
