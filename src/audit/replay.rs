//! `pgward replay` and `pgward audit sessions`: the log read back as sessions.
//!
//! A session is named `INSTANCE-NUMBER` (the writer's instance and the session's number), which
//! is unique across restarts; a bare `NUMBER` is accepted when only one instance used it.
//! Replay prints what the client saw: each statement with its decision and rule, its outcome
//! (command tag or SQLSTATE and message, rows, bytes, duration), approval events, and captured
//! rows as psql-like tables. Rendering is pure ([`Renderer`]); only [`load`] and [`follow`]
//! touch files.

use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Error;
use super::batch::{Columns, StoredRecord};
use super::file;
use super::record::{Record, Rows, micros};
use super::time::format_micros;

/// A session's name: the writer instance and the session number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionKey {
    /// The writer's instance.
    pub instance: String,
    /// The session number.
    pub session: u64,
}

/// One line of `pgward audit sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// The session.
    pub key: SessionKey,
    /// Who.
    pub identity: String,
    /// From where.
    pub client_addr: String,
    /// The database.
    pub database: String,
    /// When it started, in microseconds since the epoch.
    pub started_us: i64,
    /// When it ended, if it has.
    pub ended_us: Option<i64>,
    /// Statements recorded.
    pub statements: u64,
    /// Statements denied.
    pub denials: u64,
}

/// Which sessions to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this identity.
    pub identity: Option<String>,
    /// Only sessions started at or after this time (microseconds since the epoch).
    pub since_us: Option<i64>,
    /// Only sessions started at or before this time (microseconds since the epoch).
    pub until_us: Option<i64>,
    /// Only sessions with at least one statement with this decision.
    pub decision: Option<String>,
}

/// Picks one session's records out of the log, record by record: its own, and the events of
/// approval requests its statements made (a decision is recorded outside the session, by the
/// approver). Shared by [`Renderer`] and the admin API's timeline, so both show the same records.
#[derive(Debug, Clone)]
pub struct Selector {
    key: SessionKey,
    /// Approval requests of this session's statements, so that their events are shown.
    requests: HashSet<String>,
}

/// Reads a log that may be growing, a step at a time: each [`LogReader::read_new`] returns the
/// records written since the one before. Only the newest file read so far and any after it are
/// read again, so following a live log costs what was appended, not the whole log.
#[derive(Debug, Clone)]
pub struct LogReader {
    dir: PathBuf,
    /// The newest file read so far: it may have grown.
    from_file: u64,
    /// The highest sequence number returned so far.
    seen: u64,
}

/// Renders one session's records as text, record by record (so that `--follow` can feed it).
#[derive(Debug)]
pub struct Renderer {
    key: SessionKey,
    selector: Selector,
}

// === impl SessionKey ===

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.instance, self.session)
    }
}

impl SessionKey {
    /// The session of `r`, if it belongs to one.
    pub fn of(r: &StoredRecord) -> Option<SessionKey> {
        Some(SessionKey {
            instance: r.envelope.instance.clone(),
            session: r.envelope.record.session()?,
        })
    }

    /// Finds the session named `id` (`INSTANCE-NUMBER` or `NUMBER`) among `records`.
    ///
    /// # Errors
    /// When no session or several sessions match.
    pub fn find(records: &[StoredRecord], id: &str) -> Result<SessionKey, String> {
        let (instance, number) = match id.rsplit_once('-') {
            Some((i, n)) => (Some(i), n),
            None => (None, id),
        };
        let number: u64 = number
            .parse()
            .map_err(|_| format!("`{id}` is not a session id (INSTANCE-NUMBER or NUMBER)"))?;
        let mut found: Vec<SessionKey> = records
            .iter()
            .filter(|r| matches!(r.envelope.record, Record::SessionStart(_)))
            .filter_map(SessionKey::of)
            .filter(|k| k.session == number && instance.is_none_or(|i| i == k.instance))
            .collect();
        found.dedup();
        match found.len() {
            0 => Err(format!("no session {id} in the log")),
            1 => Ok(found.remove(0)),
            _ => Err(format!(
                "session number {number} was used by several instances: {}",
                found
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// Every record in `dir` that decodes, in log order. Unreadable rows and torn tails are
/// skipped: replay shows what the log holds, `verify` judges it.
///
/// # Errors
/// When a file or the directory can't be read.
pub fn load(dir: &Path) -> Result<Vec<StoredRecord>, Error> {
    let mut out = Vec::new();
    for f in file::list(dir).map_err(|e| Error::io(dir, e))? {
        load_file(&f.path, &mut out)?;
    }
    Ok(out)
}

fn load_file(path: &Path, out: &mut Vec<StoredRecord>) -> Result<(), Error> {
    let contents = file::read(path).map_err(|e| Error::io(path, e))?;
    for batch in &contents.batches {
        let Ok(cols) = Columns::new(batch) else {
            continue;
        };
        out.extend((0..cols.len()).filter_map(|i| cols.row(i).ok()));
    }
    Ok(())
}

/// The sessions in `records` that pass `filter`, in start order.
pub fn sessions(records: &[StoredRecord], filter: &Filter) -> Vec<SessionSummary> {
    let mut by_key: BTreeMap<SessionKey, SessionSummary> = BTreeMap::new();
    let mut order = Vec::new();
    let mut decided: HashSet<SessionKey> = HashSet::new();
    for r in records {
        let Some(key) = SessionKey::of(r) else {
            continue;
        };
        match &r.envelope.record {
            Record::SessionStart(s) => {
                order.push(key.clone());
                by_key.insert(
                    key.clone(),
                    SessionSummary {
                        key,
                        identity: s.identity.clone(),
                        client_addr: s.client_addr.clone(),
                        database: s.database.clone(),
                        started_us: micros(s.time),
                        ended_us: None,
                        statements: 0,
                        denials: 0,
                    },
                );
            }
            Record::Statement(s) => {
                if filter.decision.as_deref() == Some(s.decision.as_str()) {
                    decided.insert(key.clone());
                }
                if let Some(sum) = by_key.get_mut(&key) {
                    sum.statements += 1;
                    sum.denials += u64::from(s.decision == "deny");
                }
            }
            Record::SessionEnd(s) => {
                if let Some(sum) = by_key.get_mut(&key) {
                    sum.ended_us = Some(micros(s.time));
                }
            }
            _ => {}
        }
    }
    order
        .into_iter()
        .filter_map(|k| by_key.remove(&k))
        .filter(|s| filter.identity.as_ref().is_none_or(|i| *i == s.identity))
        .filter(|s| filter.since_us.is_none_or(|t| s.started_us >= t))
        .filter(|s| filter.until_us.is_none_or(|t| s.started_us <= t))
        .filter(|s| filter.decision.is_none() || decided.contains(&s.key))
        .collect()
}

/// The session table printed by `pgward audit sessions`.
pub fn render_sessions(list: &[SessionSummary]) -> String {
    let header = [
        "session",
        "identity",
        "started",
        "ended",
        "statements",
        "denials",
        "client",
        "database",
    ];
    let rows: Vec<Vec<Option<String>>> = list
        .iter()
        .map(|s| {
            vec![
                Some(s.key.to_string()),
                Some(s.identity.clone()),
                Some(format_micros(s.started_us)),
                Some(
                    s.ended_us
                        .map_or_else(|| "(open)".to_owned(), format_micros),
                ),
                Some(s.statements.to_string()),
                Some(s.denials.to_string()),
                Some(s.client_addr.clone()),
                Some(s.database.clone()),
            ]
        })
        .collect();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    table(&header, &rows)
}

// === impl LogReader ===

impl LogReader {
    /// A reader of the log in `dir`; its first [`LogReader::read_new`] returns every record.
    pub fn new(dir: &Path) -> Self {
        LogReader {
            dir: dir.to_owned(),
            from_file: 0,
            seen: 0,
        }
    }

    /// The records written since the last call, in log order. A torn tail (a write in flight)
    /// is left for the next call.
    ///
    /// # Errors
    /// When a file or the directory can't be read.
    pub fn read_new(&mut self) -> Result<Vec<StoredRecord>, Error> {
        let mut fresh = Vec::new();
        for f in file::list(&self.dir).map_err(|e| Error::io(&self.dir, e))? {
            if f.number >= self.from_file {
                load_file(&f.path, &mut fresh)?;
                self.from_file = f.number;
            }
        }
        fresh.retain(|r| r.envelope.seq > self.seen);
        if let Some(last) = fresh.iter().map(|r| r.envelope.seq).max() {
            self.seen = last;
        }
        Ok(fresh)
    }
}

// === impl Selector ===

impl Selector {
    /// Selects the records of session `key`.
    pub fn new(key: SessionKey) -> Self {
        Selector {
            key,
            requests: HashSet::new(),
        }
    }

    /// The session selected.
    pub fn key(&self) -> &SessionKey {
        &self.key
    }

    /// Whether `r` belongs to the session. Records must be offered in log order: an approval
    /// event is selected once a statement of the session named its request.
    pub fn admits(&mut self, r: &StoredRecord) -> bool {
        let mine = SessionKey::of(r).as_ref() == Some(&self.key);
        match &r.envelope.record {
            Record::Statement(s) if mine => {
                if let Some(req) = &s.approval_request {
                    self.requests.insert(req.clone());
                }
                true
            }
            Record::Approval(a) => mine || self.requests.contains(&a.request),
            _ => mine,
        }
    }
}

// === impl Renderer ===

impl Renderer {
    /// Renders the session `key`.
    pub fn new(key: SessionKey) -> Self {
        Renderer {
            selector: Selector::new(key.clone()),
            key,
        }
    }

    /// Appends `r` to `out` if it belongs to the session; returns `true` at its end.
    pub fn record(&mut self, r: &StoredRecord, out: &mut String) -> bool {
        if !self.selector.admits(r) {
            return false;
        }
        let t = |time| format_micros(micros(time));
        match &r.envelope.record {
            Record::SessionStart(s) => {
                let _ = writeln!(
                    out,
                    "session {}: {} (roles: {}) from {}{}, database {} as {}, application {:?}\n\
                     started {}",
                    self.key,
                    s.identity,
                    s.roles.join(", "),
                    s.client_addr,
                    if s.tls { " over TLS" } else { "" },
                    s.database,
                    s.upstream_user,
                    s.application_name,
                    t(s.time),
                );
            }
            Record::Statement(s) => {
                let rule = s
                    .rule
                    .as_deref()
                    .map(|r| format!(" by rule {r}"))
                    .unwrap_or_default();
                let _ = writeln!(out, "\n[{}] {}  {}{rule}", s.seq, t(s.time), s.decision);
                for line in s.text.lines() {
                    let _ = writeln!(out, "    {line}");
                }
                if !s.params.is_empty() {
                    let params: Vec<String> = s
                        .params
                        .iter()
                        .enumerate()
                        .map(|(i, p)| match p {
                            Some(v) => format!("${}={v:?}", i + 1),
                            None => format!("${}=NULL", i + 1),
                        })
                        .collect();
                    let _ = writeln!(out, "    params: {}", params.join(", "));
                }
                if let Some(req) = &s.approval_request {
                    let by = if s.approvers.is_empty() {
                        String::new()
                    } else {
                        format!(", approved by {}", s.approvers.join(", "))
                    };
                    let _ = writeln!(out, "    approval request {req}{by}");
                }
                if !s.masked_columns.is_empty() {
                    let _ = writeln!(out, "    masked: {}", s.masked_columns.join(", "));
                }
            }
            Record::Outcome(s) => {
                let what = match (&s.sqlstate, &s.command_tag) {
                    (Some(code), _) => {
                        format!("ERROR {code}: {}", s.message.as_deref().unwrap_or_default())
                    }
                    (None, Some(tag)) => tag.clone(),
                    (None, None) => "done".to_owned(),
                };
                let rows = s.rows.map(|n| format!("{n} rows, ")).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "    -> {what}  ({rows}{} bytes, {}.{:03} ms)",
                    s.bytes,
                    s.duration_us / 1000,
                    s.duration_us % 1000
                );
            }
            Record::Rows(s) => out.push_str(&render_rows(s)),
            Record::Approval(a) => {
                let reason = a
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "    {}  approval request {} {} by {}{reason}",
                    t(a.time),
                    a.request,
                    a.event.as_str(),
                    a.actor
                );
            }
            Record::SessionEnd(s) => {
                let _ = writeln!(out, "\nended {}: {}", t(s.time), s.reason);
                return true;
            }
        }
        false
    }
}

/// Captured rows as a psql-like table.
pub fn render_rows(r: &Rows) -> String {
    let mut s = table(&r.columns, &r.rows)
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>();
    if r.truncated {
        s.push_str("    (more rows were returned; the capture stopped at its size limit)\n");
    }
    s
}

/// A psql-like aligned table: header, rule, rows, and `(N rows)`. NULL prints as nothing.
fn table(header: &[String], rows: &[Vec<Option<String>>]) -> String {
    let cols = header
        .len()
        .max(rows.iter().map(Vec::len).max().unwrap_or(0));
    let mut widths = vec![0; cols];
    let cell = |row: &[Option<String>], i: usize| -> String {
        row.get(i).cloned().flatten().unwrap_or_default()
    };
    for (i, w) in widths.iter_mut().enumerate() {
        *w = header.get(i).map_or(0, |h| h.chars().count());
        for r in rows {
            *w = (*w).max(cell(r, i).chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c}{} ", " ".repeat(w - c.chars().count())))
            .collect();
        format!("{}\n", padded.join("|").trim_end())
    };
    let mut out = line(
        (0..cols)
            .map(|i| header.get(i).cloned().unwrap_or_default())
            .collect(),
    );
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    out.push_str(&rule.join("+"));
    out.push('\n');
    for r in rows {
        out.push_str(&line((0..cols).map(|i| cell(r, i)).collect()));
    }
    let n = rows.len();
    let _ = writeln!(out, "({n} row{})", if n == 1 { "" } else { "s" });
    out
}

/// Prints the session `id` from `dir` to `out`, and with `follow`, keeps printing its new
/// records (polling every `poll`) until it ends.
///
/// # Errors
/// [`Error::NoSession`] when the session is not in the log; read errors; write errors on `out`.
pub fn follow(
    dir: &Path,
    id: &str,
    follow: bool,
    poll: Duration,
    out: &mut dyn std::io::Write,
) -> Result<(), Error> {
    let mut reader = LogReader::new(dir);
    let mut records = reader.read_new()?;
    let key = SessionKey::find(&records, id).map_err(Error::NoSession)?;
    let mut r = Renderer::new(key);
    let mut text = String::new();
    let mut ended = false;
    let output = |e| Error::io(Path::new("output"), e);
    loop {
        text.clear();
        for rec in &records {
            ended |= r.record(rec, &mut text);
        }
        out.write_all(text.as_bytes()).map_err(output)?;
        out.flush().map_err(output)?;
        if !follow || ended {
            return Ok(());
        }
        std::thread::sleep(poll);
        records = reader.read_new()?;
    }
}
