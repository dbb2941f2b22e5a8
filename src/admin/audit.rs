//! The audit routes' work: reading the log back as session summaries and timelines, and
//! verifying its chain, for auditors using the API or the console.
//!
//! Everything here is blocking file I/O over [`replay`] and [`verify`](mod@crate::audit::verify):
//! the API calls it through `spawn_blocking`, never on the async runtime. The log may be being
//! written while it is read: [`replay::load`] skips a torn tail, and a verification that finds
//! the newest file torn is repeated once the write has had time to finish, so that a write in
//! flight is not reported as a truncation.
//!
//! # Security
//! Parameters and captured rows are shown exactly as the log holds them, which is already
//! masked as the session's role saw them; nothing here unmasks or adds data. Whether the
//! caller may see any of it is decided by the API (`[admin] auditor_roles`) before calling.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::view::{
    ApprovalEventView, BreakView, OutcomeView, RowsView, SessionEndView, SessionStartView,
    SessionSummaryView, TimeView, TimelineStatement, TimelineView, VerifyView,
};
use crate::audit::batch::StoredRecord;
use crate::audit::replay::{self, LogReader, Selector, SessionKey};
use crate::audit::{BreakKind, Error, Record, file, verify};

/// How often a torn newest file is re-read before it counts as a break.
const TORN_RETRIES: u32 = 3;

/// Time given to a write in flight before verifying again.
const TORN_RETRY_DELAY: Duration = Duration::from_millis(200);

/// One session read from the log, and kept up to date as the log grows: following it costs
/// what is appended, not a new read of the whole log.
#[derive(Debug)]
pub struct Follower {
    /// `INSTANCE-NUMBER`.
    id: String,
    reader: LogReader,
    selector: Selector,
    /// The session's records so far, in log order.
    records: Vec<StoredRecord>,
}

// === impl Follower ===

impl Follower {
    /// Reads the log in `dir` and finds the session `id` (`INSTANCE-NUMBER`, or `NUMBER` when
    /// only one instance used it).
    ///
    /// # Errors
    /// [`Error::NoSession`] when the log has no such session (or several); read errors.
    pub fn open(dir: &Path, id: &str) -> Result<Follower, Error> {
        let mut reader = LogReader::new(dir);
        let all = reader.read_new()?;
        let key = SessionKey::find(&all, id).map_err(Error::NoSession)?;
        let id = key.to_string();
        let mut selector = Selector::new(key);
        let records = all.into_iter().filter(|r| selector.admits(r)).collect();
        Ok(Follower {
            id,
            reader,
            selector,
            records,
        })
    }

    /// Reads what the log gained since; returns whether the session has new records.
    ///
    /// # Errors
    /// When the log can't be read.
    pub fn poll(&mut self) -> Result<bool, Error> {
        let before = self.records.len();
        for r in self.reader.read_new()? {
            if self.selector.admits(&r) {
                self.records.push(r);
            }
        }
        Ok(self.records.len() > before)
    }

    /// The session as a timeline; with `after`, [`TimelineView::changed`] says whether it has
    /// records newer than that log sequence number.
    pub fn timeline(&self, after: Option<u64>) -> TimelineView {
        let mut view = build_timeline(self.id.clone(), &self.records);
        view.changed = after.is_none_or(|a| view.last_seq > a);
        view
    }
}

/// The sessions in the log at `dir` that pass `filter`, in start order.
///
/// # Errors
/// When the log can't be read.
pub fn sessions(dir: &Path, filter: &replay::Filter) -> Result<Vec<SessionSummaryView>, Error> {
    let records = replay::load(dir)?;
    Ok(replay::sessions(&records, filter)
        .into_iter()
        .map(|s| SessionSummaryView {
            id: s.key.to_string(),
            identity: s.identity,
            client_addr: s.client_addr,
            database: s.database,
            started: TimeView::from_micros(s.started_us),
            ended: s.ended_us.map(TimeView::from_micros),
            statements: s.statements,
            denials: s.denials,
        })
        .collect())
}

/// A stamp of the log's state: each file's number and length. It changes whenever a record
/// is written, so a follower re-reads the log only then.
///
/// # Errors
/// When the directory can't be read.
pub fn stamp(dir: &Path) -> Result<Vec<(u64, u64)>, Error> {
    let files = file::list(dir).map_err(|e| Error::io(dir, e))?;
    Ok(files
        .iter()
        .map(|f| {
            let len = std::fs::metadata(&f.path).map_or(0, |m| m.len());
            (f.number, len)
        })
        .collect())
}

/// What `pgward audit verify` says about the log at `dir`, checked against the signing key in
/// `key_file` when one is configured.
///
/// # Errors
/// When the log or the key can't be read at all.
pub fn verify_log(dir: &Path, key_file: Option<&Path>) -> Result<VerifyView, Error> {
    let key = key_file.map(verify::read_verifying_key).transpose()?;
    let mut tries = 0;
    let report = loop {
        let report = crate::audit::verify(dir, key.as_ref())?;
        let newest = file::list(dir)
            .ok()
            .and_then(|f| f.last().cloned())
            .and_then(|f| f.path.file_name().map(|n| n.to_string_lossy().into_owned()));
        let in_flight = report
            .first_break
            .as_ref()
            .is_some_and(|b| b.kind == BreakKind::Truncated && Some(&b.file) == newest.as_ref());
        tries += 1;
        if !in_flight || tries > TORN_RETRIES {
            break report;
        }
        std::thread::sleep(TORN_RETRY_DELAY);
    };
    Ok(VerifyView {
        status: if report.is_ok() { "ok" } else { "broken" }.to_owned(),
        files: report.files,
        records: report.records,
        head_seq: report.head.seq,
        first_break: report.first_break.map(|b| BreakView {
            file: b.file,
            row: b.row,
            seq: b.seq,
            kind: break_kind(b.kind).to_owned(),
            detail: b.detail,
        }),
        notes: report.notes,
        trusted_key: key.is_some(),
        checked_at: TimeView::from_system_time(std::time::SystemTime::now()),
    })
}

fn break_kind(kind: BreakKind) -> &'static str {
    match kind {
        BreakKind::Edited => "edited",
        BreakKind::Missing => "missing",
        BreakKind::Reordered => "reordered",
        BreakKind::Truncated => "truncated",
        BreakKind::BadSignature => "bad signature",
    }
}

/// The timeline of one session from its records, in log order. Pure: the records are those a
/// [`Selector`] admitted.
pub fn build_timeline<'a>(
    id: String,
    records: impl IntoIterator<Item = &'a StoredRecord>,
) -> TimelineView {
    let mut view = TimelineView {
        id,
        start: None,
        statements: Vec::new(),
        approval_events: Vec::new(),
        end: None,
        last_seq: 0,
        changed: true,
    };
    // Statement numbers to their index, so outcomes and rows find their statement.
    let mut by_seq: BTreeMap<u64, usize> = BTreeMap::new();
    let mut events = Vec::new();
    for r in records {
        view.last_seq = view.last_seq.max(r.envelope.seq);
        match &r.envelope.record {
            Record::SessionStart(s) => {
                view.start = Some(SessionStartView {
                    time: TimeView::from_system_time(s.time),
                    identity: s.identity.clone(),
                    roles: s.roles.clone(),
                    client_addr: s.client_addr.clone(),
                    tls: s.tls,
                    application_name: s.application_name.clone(),
                    database: s.database.clone(),
                    upstream_user: s.upstream_user.clone(),
                });
            }
            Record::Statement(s) => {
                by_seq.insert(s.seq, view.statements.len());
                view.statements.push(TimelineStatement {
                    seq: s.seq,
                    time: TimeView::from_system_time(s.time),
                    sql: s.text.clone(),
                    params: s.params.clone(),
                    class: s.class.clone(),
                    tables: s.tables.clone(),
                    decision: s.decision.clone(),
                    rule: s.rule.clone(),
                    approval_request: s.approval_request.clone(),
                    approvers: s.approvers.clone(),
                    masked_columns: s.masked_columns.clone(),
                    approval_events: Vec::new(),
                    outcome: None,
                    rows: None,
                });
            }
            Record::Outcome(o) => {
                if let Some(&i) = by_seq.get(&o.seq) {
                    view.statements[i].outcome = Some(OutcomeView {
                        time: TimeView::from_system_time(o.time),
                        command_tag: o.command_tag.clone(),
                        rows: o.rows,
                        bytes: o.bytes,
                        duration_us: o.duration_us,
                        sqlstate: o.sqlstate.clone(),
                        message: o.message.clone(),
                    });
                }
            }
            Record::Rows(rows) => {
                if let Some(&i) = by_seq.get(&rows.seq) {
                    view.statements[i].rows = Some(RowsView {
                        columns: rows.columns.clone(),
                        rows: rows.rows.clone(),
                        truncated: rows.truncated,
                    });
                }
            }
            Record::Approval(a) => events.push(ApprovalEventView {
                request: a.request.clone(),
                event: a.event.as_str().to_owned(),
                actor: a.actor.clone(),
                reason: a.reason.clone(),
                time: TimeView::from_system_time(a.time),
            }),
            Record::SessionEnd(e) => {
                view.end = Some(SessionEndView {
                    time: TimeView::from_system_time(e.time),
                    reason: e.reason.clone(),
                });
            }
        }
    }
    // A held statement's approval events are written while it waits, before its statement
    // record (which names the approvers): attach them by request once all are read.
    for event in events {
        let statement = view
            .statements
            .iter_mut()
            .find(|s| s.approval_request.as_deref() == Some(event.request.as_str()));
        match statement {
            Some(s) => s.approval_events.push(event),
            None => view.approval_events.push(event),
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::audit::chain::GENESIS;
    use crate::audit::record::Envelope;
    use crate::audit::{
        ApprovalEvent, ApprovalEventKind, Outcome, SessionEnd, SessionStart, Statement,
    };

    fn stored(seq: u64, record: Record) -> StoredRecord {
        StoredRecord {
            envelope: Envelope {
                seq,
                instance: "i".to_owned(),
                record,
            },
            prev_hash: GENESIS,
            hash: GENESIS,
        }
    }

    fn at(ms: u64) -> std::time::SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn statement(seq: u64, text: &str, decision: &str, request: Option<&str>) -> Record {
        Record::Statement(Statement {
            session: 1,
            seq,
            time: at(2000 + seq),
            text: text.to_owned(),
            params: vec![Some("***".to_owned())],
            class: "write".to_owned(),
            tables: vec!["public.orders".to_owned()],
            decision: decision.to_owned(),
            rule: Some("r".to_owned()),
            approval_request: request.map(str::to_owned),
            approvers: request.map(|_| vec!["dora".to_owned()]).unwrap_or_default(),
            masked_columns: vec![],
        })
    }

    fn approval(request: &str, event: ApprovalEventKind, actor: &str) -> Record {
        Record::Approval(ApprovalEvent {
            request: request.to_owned(),
            event,
            session: Some(1),
            actor: actor.to_owned(),
            reason: None,
            time: at(1500),
        })
    }

    /// Outcomes find their statements by number, and a held statement's approval events (logged
    /// while it waited, before its statement record) are attached to it.
    #[test]
    fn a_timeline_groups_records_by_statement() {
        let records = [
            stored(
                1,
                Record::SessionStart(SessionStart {
                    session: 1,
                    time: at(1000),
                    identity: "agent-7".to_owned(),
                    roles: vec!["agent".to_owned()],
                    client_addr: "127.0.0.1:1".to_owned(),
                    tls: false,
                    application_name: String::new(),
                    database: "db".to_owned(),
                    upstream_user: "app".to_owned(),
                }),
            ),
            stored(2, statement(1, "DROP TABLE t", "deny", None)),
            stored(3, approval("req-1", ApprovalEventKind::Created, "agent-7")),
            stored(4, approval("req-1", ApprovalEventKind::Approved, "dora")),
            stored(
                5,
                approval("req-9", ApprovalEventKind::Withdrawn, "agent-7"),
            ),
            stored(6, statement(2, "DELETE FROM t", "approve", Some("req-1"))),
            stored(
                7,
                Record::Outcome(Outcome {
                    session: 1,
                    seq: 2,
                    time: at(3000),
                    command_tag: Some("DELETE 1".to_owned()),
                    rows: Some(1),
                    bytes: 0,
                    duration_us: 10,
                    sqlstate: None,
                    message: None,
                }),
            ),
            stored(
                8,
                Record::SessionEnd(SessionEnd {
                    session: 1,
                    time: at(4000),
                    reason: "client closed".to_owned(),
                }),
            ),
        ];
        let t = build_timeline("i-1".to_owned(), &records);
        assert_eq!(
            t.start.as_ref().map(|s| s.identity.as_str()),
            Some("agent-7")
        );
        assert_eq!(t.statements.len(), 2);
        assert!(t.statements[0].outcome.is_none());
        assert!(t.statements[0].approval_events.is_empty());
        let held = &t.statements[1];
        assert_eq!(held.approvers, ["dora"]);
        let events: Vec<&str> = held
            .approval_events
            .iter()
            .map(|e| e.event.as_str())
            .collect();
        assert_eq!(events, ["created", "approved"]);
        assert_eq!(
            held.outcome.as_ref().and_then(|o| o.command_tag.as_deref()),
            Some("DELETE 1")
        );
        assert_eq!(t.approval_events.len(), 1, "req-9 has no statement");
        assert_eq!(
            t.end.as_ref().map(|e| e.reason.as_str()),
            Some("client closed")
        );
        assert_eq!(t.last_seq, 8);
    }
}
