//! The session's side of the audit log: what one session records, and when.
//!
//! - The client half numbers each statement (a simple Query, or a Bind with its parameters)
//!   and records it with its decision *before* forwarding it. In strict mode the message waits
//!   (a [`super::Verdict::Hold`]) until the record is durable; if the log can't be written the
//!   statement is refused with 58030, in either mode, once the log is known to have failed.
//! - The server half records each statement's outcome (command tag, rows, result bytes,
//!   duration, SQLSTATE) when its answer completes, matched through the result pipeline.
//! - A refused statement's outcome is recorded at once by the client half: the server never
//!   runs it.

use std::time::{Instant, SystemTime};

use crate::audit::{self, AuditLog, Outcome, Record, Statement};

/// Records for one session; cheap to clone (both halves hold one).
#[derive(Clone)]
pub struct Recorder {
    log: AuditLog,
    session: u64,
    strict: bool,
    /// Cell bytes of result rows captured per statement, when this session's rows are captured.
    capture: Option<usize>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("session", &self.session)
            .field("strict", &self.strict)
            .finish_non_exhaustive()
    }
}

/// A statement whose outcome is still to be recorded.
#[derive(Debug, Clone)]
pub struct Audited {
    /// Its number in the session.
    pub seq: u64,
    /// When pgward received it.
    pub started: Instant,
    /// Command tag of the last statement that completed (a Query may hold several).
    pub tag: Option<String>,
    /// Rows returned or affected, summed over the statements of a Query.
    pub rows: u64,
    /// Whether any completion carried a row count.
    pub counted: bool,
    /// The first error: SQLSTATE and, when the session has no masks, the message.
    pub error: Option<(String, Option<String>)>,
}

// === impl Recorder ===

impl Recorder {
    /// The recorder of session `session`.
    pub fn new(log: AuditLog, session: u64, strict: bool) -> Self {
        Recorder {
            log,
            session,
            strict,
            capture: None,
        }
    }

    /// Captures result rows, up to `max_bytes` of cells per statement.
    pub fn capture_rows(&mut self, max_bytes: usize) {
        self.capture = Some(max_bytes);
    }

    /// The per-statement cap of captured rows, when rows are captured.
    pub fn capture(&self) -> Option<usize> {
        self.capture
    }

    /// Records the rows captured for statement `seq`.
    pub fn rows(&self, seq: u64, rows: audit::RowsCapture) {
        self.log.record_detached(Record::Rows(rows.finish(
            self.session,
            seq,
            SystemTime::now(),
        )));
    }

    /// The session's number.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Whether statements wait for their record to be durable.
    pub fn strict(&self) -> bool {
        self.strict
    }

    /// `Err` once the log has failed: nothing may run unrecorded.
    ///
    /// # Errors
    /// The error that stopped the log.
    pub fn check(&self) -> Result<(), audit::Error> {
        self.log.check()
    }

    /// Queues a record nobody waits for.
    pub fn record_detached(&self, record: Record) {
        self.log.record_detached(record);
    }

    /// Records the statement and returns what its outcome needs, and in strict mode the
    /// acknowledgement to await before forwarding it.
    pub fn statement(&self, s: Statement) -> (Audited, Option<audit::Pending>) {
        let audited = Audited {
            seq: s.seq,
            started: Instant::now(),
            tag: None,
            rows: 0,
            counted: false,
            error: None,
        };
        let ack = if self.strict {
            Some(self.log.record(Record::Statement(s)))
        } else {
            self.log.record_detached(Record::Statement(s));
            None
        };
        (audited, ack)
    }

    /// Records how statement `a` ended; `bytes` of results were sent for it.
    pub fn outcome(&self, a: Audited, bytes: u64) {
        let (sqlstate, message) = match a.error {
            Some((code, message)) => (Some(code), message),
            None => (None, None),
        };
        // Not awaited: outcomes follow their statements in the writer's order.
        self.log.record_detached(Record::Outcome(Outcome {
            session: self.session,
            seq: a.seq,
            time: SystemTime::now(),
            command_tag: a.tag,
            rows: a.counted.then_some(a.rows),
            bytes,
            duration_us: u64::try_from(a.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            sqlstate,
            message,
        }));
    }
}

// === impl Audited ===

impl Audited {
    /// A CommandComplete's tag (`SELECT 3`, `INSERT 0 1`, `COPY 10` …): its row count, if any,
    /// is added.
    pub fn complete(&mut self, tag: &[u8]) {
        let tag = String::from_utf8_lossy(tag).into_owned();
        if let Some(n) = tag.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok()) {
            self.rows += n;
            self.counted = true;
        }
        self.tag = Some(tag);
    }

    /// An error answered the statement; the first one is kept.
    pub fn fail(&mut self, code: String, message: Option<String>) {
        if self.error.is_none() {
            self.error = Some((code, message));
        }
    }
}

/// The cells of a DataRow frame (header included); `None` when it is malformed.
pub fn data_row_cells(frame: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let body = frame.get(5..)?;
    let mut r = crate::proto::MessageReader::new(body, "DataRow");
    let n = usize::try_from(r.i16().ok()?).ok()?;
    let mut cells = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.i32().ok()?;
        cells.push(match usize::try_from(len) {
            Ok(len) => Some(r.bytes(len).ok()?),
            Err(_) => None,
        });
    }
    Some(cells)
}
