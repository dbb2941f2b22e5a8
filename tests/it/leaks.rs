//! The masking leak corpus (`fixtures/mask/leaks.toml`): adversarial statements that try to get
//! PII past pgward's masking, each with the outcome a reviewer expects.
//!
//! One pgward (the masking rules of [`crate::mask`]) serves every case. Each case runs as the
//! agent on a fresh connection per protocol, so that cursors, prepared statements and settings
//! never carry over:
//!
//! - **simple**: raw frames ([`RawClient`]), so that every message the client receives is looked
//!   at: DataRow and CopyData values, errors, notices, notifications and ParameterStatus.
//! - **extended**: tokio-postgres `query` (Parse, Describe, Bind with binary results, Execute).
//!   Every cell is checked: decoded as a string when its type allows, as an integer or float for
//!   those types, otherwise as its raw binary bytes (in which json, arrays, records and bytea
//!   carry their text as is). Errors and asynchronous messages are checked too.
//!
//! All failures are collected and reported together. Cases marked `known_leak` are real leaks
//! in pgward: printed, not failed, until fixed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use serde::Deserialize;
use tokio_postgres::AsyncMessage;
use tokio_postgres::types::{FromSql, Type};

use crate::mask::{AGENT, AGENT_PW, RULES, SCHEMA, SECRETS};
use crate::support::wire::{self, RawClient};
use crate::support::{Harness, Running, harness, pg};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    sql: Option<String>,
    #[serde(default)]
    steps: Vec<String>,
    expect: Expect,
    #[serde(default)]
    protocol: Protocol,
    #[serde(default)]
    secrets: Vec<String>,
    #[serde(default)]
    cleanup: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
    known_leak: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Masked,
    Refused,
    Allowed,
    Error,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Protocol {
    Simple,
    Extended,
    #[default]
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Run {
    Simple,
    Extended,
}

/// What one statement got back.
#[derive(Debug, Default)]
struct Reply {
    /// SQLSTATE and message of the first error, if any.
    error: Option<(String, String)>,
    /// Each forbidden substring found, with where.
    leaks: Vec<String>,
    /// DataRows and CopyData rows received.
    rows: usize,
    /// Non-NULL values looked at: (as text, as numbers or raw bytes).
    cells: (usize, usize),
}

/// A binary value of any type, for looking into it.
struct Raw(Option<Vec<u8>>);

/// The outcome of a case under one protocol.
enum Verdict {
    Pass,
    Fail(String),
}

/// Counts per expectation: cases, runs, passed, known leaks, failed.
#[derive(Default)]
struct Tally {
    cases: usize,
    runs: usize,
    passed: usize,
    known: usize,
    failed: usize,
}

// === impl Case ===

impl Case {
    fn statements(&self) -> Vec<&str> {
        match &self.sql {
            Some(sql) => vec![sql.as_str()],
            None => self.steps.iter().map(String::as_str).collect(),
        }
    }

    fn label(&self) -> String {
        match &self.sql {
            Some(sql) => sql.clone(),
            None => format!("steps {:?}", self.steps),
        }
    }

    fn runs(&self) -> Vec<Run> {
        match self.protocol {
            Protocol::Simple => vec![Run::Simple],
            Protocol::Extended => vec![Run::Extended],
            Protocol::Both => vec![Run::Simple, Run::Extended],
        }
    }

    /// The substrings that must not come back: the case's own, and every secret the client did
    /// not send itself.
    fn forbidden(&self) -> Vec<String> {
        let text = self.statements().join("\n");
        SECRETS
            .iter()
            .filter(|s| !text.contains(**s))
            .map(|s| s.to_string())
            .chain(self.secrets.iter().cloned())
            .collect()
    }

    fn judge(&self, replies: &[Reply]) -> Verdict {
        let mut problems = Vec::new();
        for (i, r) in replies.iter().enumerate() {
            for l in &r.leaks {
                problems.push(format!("step {}: leaked {l}", i + 1));
            }
        }
        let first_error = replies
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.error.as_ref().map(|e| (i + 1, e)));
        let rows: usize = replies.iter().map(|r| r.rows).sum();
        match (self.expect, first_error) {
            (Expect::Masked | Expect::Allowed, Some((step, (code, message)))) => {
                problems.push(format!("step {step} failed: {code} {message}"));
            }
            (Expect::Masked, None) if rows == 0 => {
                problems.push("no rows came back: the case tests nothing".to_owned());
            }
            (Expect::Masked | Expect::Allowed, None) => {}
            (Expect::Refused, None) => problems.push(format!(
                "not refused: every step succeeded ({rows} rows returned)"
            )),
            (Expect::Refused, Some((step, (code, message)))) if code != "42501" => {
                problems.push(format!(
                    "step {step} failed with {code} instead of 42501: {message}"
                ));
            }
            (Expect::Refused, Some(_)) => {}
            (Expect::Error, None) => problems.push("succeeded; expected an error".to_owned()),
            (Expect::Error, Some(_)) => {}
        }
        if problems.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail(problems.join("; "))
        }
    }
}

// === impl Reply ===

impl Reply {
    fn check(&mut self, forbidden: &[String], what: &str, text: &str) {
        for s in forbidden {
            if text.contains(s.as_str()) {
                self.leaks
                    .push(format!("{s:?} in {what}: {:?}", shorten(text)));
            }
        }
    }

    fn fail(&mut self, code: &str, message: &str) {
        if self.error.is_none() {
            self.error = Some((code.to_owned(), message.to_owned()));
        }
    }
}

// === impl Raw ===

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw.to_vec())))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 160;
    if text.chars().count() <= MAX {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(MAX).collect();
    s.push('…');
    s
}

fn load() -> Vec<Case> {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/mask/leaks.toml"
    ));
    let text = std::fs::read_to_string(path).expect("fixtures/mask/leaks.toml is readable");
    let corpus: Corpus =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for c in &corpus.case {
        assert!(
            c.sql.is_some() == c.steps.is_empty(),
            "a case has `sql` or `steps`, not both or neither: {c:?}"
        );
    }
    corpus.case
}

/// pgward with the masking rules, the schema of [`crate::mask`], and a fixed masking key, so
/// that `hash` and `fake` outputs are the same on every run (a random key could, once in a
/// while, make a hash that happens to contain a short secret such as `710`).
async fn start(key_dir: &Path) -> Running {
    let key = key_dir.join("mask.key");
    std::fs::write(&key, [0x5au8; 32]).expect("write the masking key");
    let h = Harness::new()
        .identity(AGENT, AGENT_PW, &[])
        .config(&format!("mask_key_file = {:?}", key.display().to_string()))
        .rules(RULES)
        .start()
        .await;
    pg::direct(&h.database)
        .await
        .batch_execute(SCHEMA)
        .await
        .expect("load the schema");
    h
}

/// Runs each statement as the agent through the simple protocol, looking at every message.
async fn run_simple(h: &Running, statements: &[String], forbidden: &[String]) -> Vec<Reply> {
    let mut c = RawClient::connect(h.addr).await;
    let startup = c.login(AGENT, AGENT_PW, &h.database).await;
    assert!(
        wire::error_codes(&startup).is_empty(),
        "agent login: {startup:?}"
    );
    let mut replies = Vec::new();
    for sql in statements {
        let mut r = Reply::default();
        c.send(&wire::query(sql)).await;
        loop {
            let Some((tag, body)) = c.read_msg().await else {
                r.fail("EOF", "the connection closed");
                break;
            };
            match tag {
                b'Z' => break,
                b'D' => data_row(&mut r, forbidden, &body),
                b'd' => {
                    r.rows += 1;
                    r.cells.0 += 1;
                    r.check(forbidden, "CopyData", &String::from_utf8_lossy(&body));
                }
                b'E' => {
                    r.fail(&wire::sqlstate(&body), &wire::field(&body, b'M'));
                    r.check(forbidden, "ErrorResponse", &fields(&body));
                }
                b'N' => r.check(forbidden, "NoticeResponse", &fields(&body)),
                b'A' => r.check(
                    forbidden,
                    "NotificationResponse",
                    &String::from_utf8_lossy(body.get(4..).unwrap_or_default()),
                ),
                b'S' => r.check(
                    forbidden,
                    "ParameterStatus",
                    &String::from_utf8_lossy(&body),
                ),
                b'C' => r.check(
                    forbidden,
                    "CommandComplete",
                    &String::from_utf8_lossy(&body),
                ),
                // COPY FROM STDIN: no corpus case means to send data.
                b'G' => {
                    c.send(&wire::frame(b'f', b"leak corpus sends no data\0"))
                        .await
                }
                _ => {}
            }
        }
        replies.push(r);
    }
    replies
}

/// The text of every field of an ErrorResponse or NoticeResponse body.
fn fields(body: &[u8]) -> String {
    body.split(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn data_row(r: &mut Reply, forbidden: &[String], body: &Bytes) {
    r.rows += 1;
    let mut b = body.clone();
    let n = b.get_i16();
    for i in 0..n {
        let len = b.get_i32();
        if len < 0 {
            continue;
        }
        let value = b.split_to(len as usize);
        r.cells.0 += 1;
        r.check(
            forbidden,
            &format!("DataRow column {}", i + 1),
            &String::from_utf8_lossy(&value),
        );
    }
}

/// Runs each statement as the agent through tokio-postgres's extended protocol.
async fn run_extended(h: &Running, statements: &[String], forbidden: &[String]) -> Vec<Reply> {
    let (client, mut conn) =
        tokio_postgres::connect(&h.conninfo(AGENT, AGENT_PW), tokio_postgres::NoTls)
            .await
            .expect("agent connects");
    let (tx, mut messages) = futures::channel::mpsc::unbounded();
    let messages_of_conn = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(messages_of_conn.for_each(move |m| {
        if let Ok(m) = m {
            let _ = tx.unbounded_send(m);
        }
        std::future::ready(())
    }));
    let mut replies = Vec::new();
    for sql in statements {
        let mut r = Reply::default();
        match client.query(sql.as_str(), &[]).await {
            Ok(rows) => {
                r.rows += rows.len();
                for row in &rows {
                    for (i, column) in row.columns().iter().enumerate() {
                        cell(&mut r, forbidden, row, i, column.type_());
                    }
                }
            }
            Err(e) => match e.as_db_error() {
                Some(db) => {
                    r.fail(db.code().code(), db.message());
                    let text = [
                        Some(db.message()),
                        db.detail(),
                        db.hint(),
                        db.where_(),
                        db.column(),
                        db.table(),
                        db.constraint(),
                        db.datatype(),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" | ");
                    r.check(forbidden, "error", &text);
                }
                None => r.fail("client", &e.to_string()),
            },
        }
        while let Ok(m) = messages.try_recv() {
            match m {
                AsyncMessage::Notice(n) => {
                    let text = format!("{} | {:?} | {:?}", n.message(), n.detail(), n.hint());
                    r.check(forbidden, "notice", &text);
                }
                AsyncMessage::Notification(n) => {
                    let text = format!("{} | {}", n.channel(), n.payload());
                    r.check(forbidden, "notification", &text);
                }
                _ => {}
            }
        }
        replies.push(r);
    }
    replies
}

/// Looks into one cell of an extended-protocol row, whatever its type.
fn cell(r: &mut Reply, forbidden: &[String], row: &tokio_postgres::Row, i: usize, ty: &Type) {
    let what = format!("column {} ({ty})", i + 1);
    if <String as FromSql>::accepts(ty) {
        if let Ok(Some(s)) = row.try_get::<_, Option<String>>(i) {
            r.cells.0 += 1;
            r.check(forbidden, &what, &s);
        }
        return;
    }
    let Ok(Raw(Some(bytes))) = row.try_get::<_, Raw>(i) else {
        return;
    };
    r.cells.1 += 1;
    let text = match *ty {
        Type::INT2 => row.try_get::<_, i16>(i).map(|v| v.to_string()),
        Type::INT4 => row.try_get::<_, i32>(i).map(|v| v.to_string()),
        Type::INT8 => row.try_get::<_, i64>(i).map(|v| v.to_string()),
        Type::FLOAT4 => row.try_get::<_, f32>(i).map(|v| v.to_string()),
        Type::FLOAT8 => row.try_get::<_, f64>(i).map(|v| v.to_string()),
        _ => Ok(String::from_utf8_lossy(&bytes).into_owned()),
    }
    .unwrap_or_default();
    r.check(forbidden, &what, &text);
}

/// The message of a refusal that came from the duty rules (the statement's class) rather than
/// from masking: safe, but worth knowing when reading the corpus's results.
fn duty_refusal(case: &Case, replies: &[Reply]) -> Option<String> {
    let (code, message) = replies.iter().find_map(|r| r.error.as_ref())?;
    let masking = message.contains("mask rule") || message.starts_with("COPY refused");
    (case.expect == Expect::Refused && code == "42501" && !masking).then(|| message.clone())
}

/// Runs the cleanup statements as the DBA through pgward (so that DDL invalidates pgward's
/// catalog cache as it would in production); errors are expected (nothing to clean) and ignored.
async fn cleanup(h: &Running, statements: &[String]) {
    if statements.is_empty() {
        return;
    }
    let dba = h
        .client_as(harness::USER, harness::PASSWORD)
        .await
        .expect("DBA connects");
    for sql in statements {
        let _ = dba.batch_execute(sql).await;
    }
}

/// A digest of the tables the corpus reads, to show no case changed them for the next ones.
async fn fingerprint(database: &str) -> String {
    pg::direct(database)
        .await
        .query_one(
            "SELECT (SELECT string_agg(p::text, ',' ORDER BY id) FROM people p) || \
                    coalesce((SELECT string_agg(n::text, ',') FROM notes n), '')",
            &[],
        )
        .await
        .expect("fingerprint")
        .get(0)
}

#[tokio::test]
async fn leak_corpus() {
    let cases = load();
    assert!(
        cases.len() >= 80,
        "the leak corpus must hold at least 80 cases, has {}",
        cases.len()
    );
    let key_dir = tempfile::tempdir().expect("temp dir");
    let h = std::sync::Arc::new(start(key_dir.path()).await);
    let before = fingerprint(&h.database).await;

    let mut tally: BTreeMap<Expect, Tally> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut known = Vec::new();
    let mut fixed = Vec::new();
    let mut by_duty = Vec::new();
    let (mut text_cells, mut raw_cells) = (0, 0);
    for case in &cases {
        let t = tally.entry(case.expect).or_default();
        t.cases += 1;
        let statements: Vec<String> = case.statements().into_iter().map(str::to_owned).collect();
        let forbidden = case.forbidden();
        let mut case_failed = false;
        for run in case.runs() {
            // Each run in its own task: a panic (a hang past the read timeout) is one failure,
            // not the end of the report.
            let (h2, s2, f2) = (h.clone(), statements.clone(), forbidden.clone());
            let replies = tokio::spawn(async move {
                match run {
                    Run::Simple => run_simple(&h2, &s2, &f2).await,
                    Run::Extended => run_extended(&h2, &s2, &f2).await,
                }
            })
            .await;
            cleanup(&h, &case.cleanup).await;
            let verdict = match &replies {
                Ok(replies) => {
                    for r in replies {
                        text_cells += r.cells.0;
                        raw_cells += r.cells.1;
                    }
                    if let Some(message) = duty_refusal(case, replies) {
                        by_duty.push(format!("[{run:?}] {}\n    {message}", case.label()));
                    }
                    case.judge(replies)
                }
                Err(e) => Verdict::Fail(format!("the run panicked: {e}")),
            };
            let t = tally.entry(case.expect).or_default();
            t.runs += 1;
            match verdict {
                Verdict::Pass => t.passed += 1,
                Verdict::Fail(why) => {
                    case_failed = true;
                    let line = format!(
                        "[{:?}, expect {:?}] {}\n    {why}",
                        run,
                        case.expect,
                        case.label()
                    );
                    match &case.known_leak {
                        Some(reason) => {
                            t.known += 1;
                            known.push(format!("{line}\n    known leak: {reason}"));
                        }
                        None => {
                            t.failed += 1;
                            failures.push(line);
                        }
                    }
                }
            }
        }
        if let (Some(reason), false) = (&case.known_leak, case_failed) {
            fixed.push(format!("{} (was: {reason})", case.label()));
        }
    }
    let after = fingerprint(&h.database).await;

    let mut report = String::new();
    let _ = writeln!(
        report,
        "leak corpus: {} cases; {text_cells} values checked as text, {raw_cells} as numbers or raw bytes",
        cases.len()
    );
    let _ = writeln!(
        report,
        "{:<8} {:>6} {:>6} {:>7} {:>7} {:>7}",
        "expect", "cases", "runs", "passed", "known", "failed"
    );
    for (expect, t) in &tally {
        let _ = writeln!(
            report,
            "{:<8} {:>6} {:>6} {:>7} {:>7} {:>7}",
            format!("{expect:?}").to_lowercase(),
            t.cases,
            t.runs,
            t.passed,
            t.known,
            t.failed
        );
    }
    if !known.is_empty() {
        let _ = writeln!(report, "\nknown leaks ({}):", known.len());
        for k in &known {
            let _ = writeln!(report, "{k}");
        }
    }
    if !by_duty.is_empty() {
        let _ = writeln!(
            report,
            "\nrefused by a duty rule rather than by masking ({}):",
            by_duty.len()
        );
        for d in &by_duty {
            let _ = writeln!(report, "{d}");
        }
    }
    if !fixed.is_empty() {
        let _ = writeln!(
            report,
            "\nmarked known_leak but passing now (remove the marker):"
        );
        for f in &fixed {
            let _ = writeln!(report, "  {f}");
        }
    }
    println!("{report}");
    if before != after {
        failures.push(format!(
            "the corpus changed the data later cases read:\n    before {before}\n    after  {after}"
        ));
    }
    assert!(
        failures.is_empty(),
        "{} leak corpus failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
