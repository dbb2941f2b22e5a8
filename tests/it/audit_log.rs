//! The audit log through its library API, on real files: verify passes on a clean log and names
//! the broken record after each kind of tampering; strict mode keeps every acknowledged record
//! across a crash; Parquet export reads back the same records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use arrow_array::RecordBatch;
use pgward::audit::batch::{Columns, StoredRecord};
use pgward::audit::file::{self, HeadSignature};
use pgward::audit::{
    ApprovalEvent, ApprovalEventKind, AuditLog, BreakKind, Durability, Options, Outcome, Record,
    Report, Rows, SessionEnd, SessionStart, Statement, replay, verify,
};

const SESSIONS: u64 = 4;
const STATEMENTS: u64 = 6;

/// Small enough that the log spans several files of several records each.
const ROLL_BYTES: u64 = 12_000;

fn options(dir: &Path, durability: Durability, key: Option<[u8; 32]>) -> Options {
    Options {
        dir: dir.to_owned(),
        durability,
        roll_bytes: ROLL_BYTES,
        roll_age: Duration::from_secs(3600),
        signing_key: key.map(|k| ed25519_dalek::SigningKey::from_bytes(&k)),
    }
}

fn at(secs: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn statement(session: u64, seq: u64) -> Statement {
    Statement {
        session,
        seq,
        time: at(session * 100 + seq),
        text: format!("SELECT * FROM orders WHERE note = 'marker_{session}_{seq}'"),
        params: vec![Some(format!("{seq}")), None],
        class: "read".to_owned(),
        tables: vec!["public.orders".to_owned()],
        decision: if seq == 3 { "deny" } else { "allow" }.to_owned(),
        rule: Some("orders-read".to_owned()),
        approval_request: None,
        approvers: vec![],
        masked_columns: vec!["public.orders.email".to_owned()],
    }
}

/// The records of one session, in the order the session would write them.
fn session_records(session: u64) -> Vec<Record> {
    let mut out = vec![Record::SessionStart(SessionStart {
        session,
        time: at(session * 100),
        identity: format!("agent-{session}"),
        roles: vec!["analyst".to_owned()],
        client_addr: "127.0.0.1:5000".to_owned(),
        tls: session.is_multiple_of(2),
        application_name: "psql".to_owned(),
        database: "shop".to_owned(),
        upstream_user: "pgward".to_owned(),
    })];
    for seq in 1..=STATEMENTS {
        out.push(Record::Statement(statement(session, seq)));
        if seq == 2 {
            out.push(Record::Rows(Rows {
                session,
                seq,
                time: at(session * 100 + seq),
                columns: vec!["id".to_owned(), "email".to_owned()],
                rows: vec![
                    vec![Some("1".to_owned()), Some("a***@x".to_owned())],
                    vec![Some("2".to_owned()), None],
                ],
                truncated: false,
            }));
        }
        let denied = seq == 3;
        out.push(Record::Outcome(Outcome {
            session,
            seq,
            time: at(session * 100 + seq),
            command_tag: (!denied).then(|| "SELECT 2".to_owned()),
            rows: (!denied).then_some(2),
            bytes: 120,
            duration_us: 1500,
            sqlstate: denied.then(|| "42501".to_owned()),
            message: denied.then(|| "denied by rule orders-read".to_owned()),
        }));
    }
    out.push(Record::Approval(ApprovalEvent {
        request: format!("req-{session}"),
        event: ApprovalEventKind::Created,
        session: Some(session),
        actor: format!("agent-{session}"),
        reason: None,
        time: at(session * 100 + 50),
    }));
    out.push(Record::SessionEnd(SessionEnd {
        session,
        time: at(session * 100 + 99),
        reason: "client closed".to_owned(),
    }));
    out
}

/// Writes every session in strict mode, one durable record at a time; returns each
/// statement's text with its global sequence number.
async fn write_log(dir: &Path, key: Option<[u8; 32]>) -> BTreeMap<String, u64> {
    let log = AuditLog::open(options(dir, Durability::Strict, key)).unwrap();
    let mut seqs = BTreeMap::new();
    for s in 1..=SESSIONS {
        for r in session_records(s) {
            let text = match &r {
                Record::Statement(st) => Some(st.text.clone()),
                _ => None,
            };
            let seq = log.record_durable(r).await.unwrap();
            if let Some(t) = text {
                seqs.insert(t, seq);
            }
        }
    }
    log.close().await.unwrap();
    seqs
}

fn files(dir: &Path) -> Vec<PathBuf> {
    file::list(dir)
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect()
}

fn check(dir: &Path) -> Report {
    verify(dir, None).unwrap()
}

fn broken(dir: &Path) -> pgward::audit::Break {
    let r = check(dir);
    r.first_break
        .clone()
        .unwrap_or_else(|| panic!("verify passed:\n{r}"))
}

/// The file holding `needle`, and where.
fn find(dir: &Path, needle: &str) -> (PathBuf, usize) {
    for f in files(dir) {
        let bytes = std::fs::read(&f).unwrap();
        if let Some(at) = bytes
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
        {
            return (f, at);
        }
    }
    panic!("{needle} is in no file");
}

/// Every row of an audit file as a one-row batch.
fn rows_of(path: &Path) -> Vec<RecordBatch> {
    let contents = file::read(path).unwrap();
    contents
        .batches
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(move |i| b.slice(i, 1)))
        .collect()
}

/// Rewrites an audit file as a well-formed, closed IPC stream of `rows`: only the chain can
/// tell that something changed.
fn rewrite(path: &Path, rows: &[RecordBatch]) {
    let mut w =
        arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &pgward::audit::batch::schema())
            .unwrap();
    for r in rows {
        w.write(r).unwrap();
    }
    w.finish().unwrap();
    std::fs::write(path, w.into_inner().unwrap()).unwrap();
}

fn seq_of(row: &RecordBatch) -> u64 {
    Columns::new(row).unwrap().seq(0).unwrap()
}

/// A file in the middle of the log with at least two rows, and its rows.
fn middle_file(dir: &Path) -> (PathBuf, Vec<RecordBatch>) {
    let all = files(dir);
    assert!(all.len() >= 3, "the log should span several files: {all:?}");
    let path = all[all.len() / 2].clone();
    let rows = rows_of(&path);
    assert!(
        rows.len() >= 3,
        "{} has {} rows",
        path.display(),
        rows.len()
    );
    (path, rows)
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[tokio::test]
async fn a_clean_log_verifies_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let seqs = write_log(dir.path(), None).await;
    let report = check(dir.path());
    assert!(report.is_ok(), "{report}");
    let total = SESSIONS * (STATEMENTS * 2 + 4);
    assert_eq!(report.records, total);
    assert!(report.files >= 3, "{report}");
    assert_eq!(seqs.len() as u64, SESSIONS * STATEMENTS);

    // Each file starts from the previous file's last hash.
    let mut prev_last = None;
    for f in files(dir.path()) {
        let rows = rows_of(&f);
        let first = Columns::new(&rows[0]).unwrap().row(0).unwrap();
        let last = Columns::new(rows.last().unwrap()).unwrap().row(0).unwrap();
        if let Some(h) = prev_last {
            assert_eq!(first.prev_hash, h, "{}", f.display());
        }
        prev_last = Some(last.hash);
    }
}

#[tokio::test]
async fn one_changed_byte_names_the_edited_record() {
    let dir = tempfile::tempdir().unwrap();
    let seqs = write_log(dir.path(), None).await;
    let text = statement(3, 4).text;
    let (path, at) = find(dir.path(), "marker_3_4");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at] = b'n';
    std::fs::write(&path, bytes).unwrap();

    let b = broken(dir.path());
    assert_eq!(b.kind, BreakKind::Edited, "{b}");
    assert_eq!(b.seq, Some(seqs[&text]), "{b}");
    assert_eq!(b.file, name(&path));
}

#[tokio::test]
async fn a_removed_record_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), None).await;
    let (path, mut rows) = middle_file(dir.path());
    let removed = seq_of(&rows.remove(1));
    rewrite(&path, &rows);

    let b = broken(dir.path());
    assert_eq!(b.kind, BreakKind::Missing, "{b}");
    assert_eq!(
        b.seq,
        Some(removed + 1),
        "named by the record after the gap: {b}"
    );
    assert_eq!((b.file.as_str(), b.row), (name(&path).as_str(), Some(2)));
}

#[tokio::test]
async fn swapped_records_are_reordered() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), None).await;
    let (path, mut rows) = middle_file(dir.path());
    rows.swap(0, 1);
    let first_out_of_place = seq_of(&rows[0]);
    rewrite(&path, &rows);

    let b = broken(dir.path());
    assert_eq!(b.kind, BreakKind::Reordered, "{b}");
    assert_eq!(b.seq, Some(first_out_of_place), "{b}");
    assert_eq!(b.row, Some(1));
}

#[tokio::test]
async fn a_record_removed_from_the_end_of_a_file_is_missing_in_the_next() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), None).await;
    let (path, mut rows) = middle_file(dir.path());
    let removed = seq_of(&rows.pop().unwrap());
    rewrite(&path, &rows);

    let b = broken(dir.path());
    assert_eq!(b.kind, BreakKind::Missing, "{b}");
    assert_eq!(b.seq, Some(removed + 1), "{b}");
    assert_ne!(
        b.file,
        name(&path),
        "found where the next file fails to link"
    );
}

#[tokio::test]
async fn a_truncated_last_file_is_truncated_after_its_last_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), None).await;
    let last = files(dir.path()).pop().unwrap();
    let rows = rows_of(&last);
    let len = std::fs::metadata(&last).unwrap().len();
    // Drop the end-of-stream marker and part of the last message.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 20)
        .unwrap();

    let b = broken(dir.path());
    assert_eq!(b.kind, BreakKind::Truncated, "{b}");
    let last_whole = seq_of(&rows[rows.len() - 2]);
    assert_eq!(b.seq, Some(last_whole), "names the last whole record: {b}");
    assert!(
        b.detail.contains(&format!("after record {last_whole}")),
        "{b}"
    );
    assert_eq!(check(dir.path()).head.seq, last_whole);
}

#[tokio::test]
async fn a_truncated_middle_file_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), None).await;
    let (path, rows) = middle_file(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let b = broken(dir.path());
    assert_eq!(b.kind, BreakKind::Truncated, "{b}");
    assert_eq!(b.file, name(&path), "{b}");
    let kept = rows_of(&path).len();
    assert!(kept < rows.len());
    assert_eq!(b.seq, Some(seq_of(&rows[kept - 1])), "{b}");
}

#[tokio::test]
async fn signed_heads_catch_a_cut_tail_and_a_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = [9u8; 32];
    write_log(dir.path(), Some(key)).await;
    let trusted = ed25519_dalek::SigningKey::from_bytes(&key).verifying_key();
    let other = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
    for f in files(dir.path()) {
        let sig = std::fs::read_to_string(file::sig_path(&f)).unwrap();
        assert!(HeadSignature::parse(&sig).unwrap().verify(&trusted));
    }
    let ok = verify(dir.path(), Some(&trusted)).unwrap();
    assert!(ok.is_ok(), "{ok}");
    let wrong = verify(dir.path(), Some(&other)).unwrap();
    assert_eq!(wrong.first_break.unwrap().kind, BreakKind::BadSignature);

    // Cutting whole records from the end of the last file, at a message boundary and with a
    // fresh end-of-stream marker, is caught only by its signed head.
    let last = files(dir.path()).pop().unwrap();
    let mut rows = rows_of(&last);
    let cut = rows.pop().unwrap();
    rewrite(&last, &rows);
    let b = verify(dir.path(), Some(&trusted))
        .unwrap()
        .first_break
        .unwrap();
    assert_eq!(b.kind, BreakKind::Truncated, "{b}");
    assert!(
        b.detail.contains(&format!("record {}", seq_of(&cut))),
        "{b}"
    );
}

#[tokio::test]
async fn strict_mode_keeps_every_acknowledged_record_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    // One file, so that the crash leaves it open.
    let one_file = || Options {
        roll_bytes: 1 << 30,
        ..options(dir.path(), Durability::Strict, None)
    };
    let log = AuditLog::open(one_file()).unwrap();
    // Several sessions at once: their records share group commits.
    let tasks: Vec<_> = (1..=SESSIONS)
        .map(|s| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for r in session_records(s) {
                    acked.push(log.record_durable(r).await.unwrap());
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    // Queued but never acknowledged: the crash may or may not keep these.
    let unacked: Vec<_> = session_records(99)
        .into_iter()
        .map(|r| log.record(r))
        .collect();
    log.abandon_for_test().await;
    drop(unacked);

    let report = check(dir.path());
    assert!(report.is_ok(), "{report}");
    let stored: Vec<u64> = replay::load(dir.path())
        .unwrap()
        .iter()
        .map(|r| r.envelope.seq)
        .collect();
    for seq in &acked {
        assert!(stored.contains(seq), "acknowledged record {seq} was lost");
    }

    // A restart continues the chain in a new file; the crashed file is noted, not broken.
    let log = AuditLog::open(one_file()).unwrap();
    let next = log
        .record_durable(session_records(7).remove(0))
        .await
        .unwrap();
    assert_eq!(next, stored.len() as u64 + 1);
    log.close().await.unwrap();
    let report = check(dir.path());
    assert!(report.is_ok(), "{report}");
    assert!(
        report.notes.iter().any(|n| n.contains("was not closed")),
        "{report}"
    );
}

#[tokio::test]
async fn batched_mode_writes_everything_by_close() {
    let dir = tempfile::tempdir().unwrap();
    let interval = Duration::from_millis(5);
    let log = AuditLog::open(options(dir.path(), Durability::Batched { interval }, None)).unwrap();
    let mut pending = Vec::new();
    for s in 1..=SESSIONS {
        for r in session_records(s) {
            pending.push(log.record(r));
        }
    }
    log.clone().close().await.unwrap();
    for (i, p) in pending.into_iter().enumerate() {
        assert_eq!(p.await.unwrap(), i as u64 + 1);
    }
    let err = log.record_durable(session_records(1).remove(0)).await;
    assert!(err.is_err(), "a closed log takes no records");
    let report = check(dir.path());
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records, SESSIONS * (STATEMENTS * 2 + 4));
}

#[tokio::test]
async fn a_log_that_cannot_be_written_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(options(dir.path(), Durability::Strict, None)).unwrap();
    // The next file's name is taken by a directory: creating it fails.
    std::fs::create_dir(dir.path().join(file::file_name(1))).unwrap();
    let e = log
        .record_durable(session_records(1).remove(0))
        .await
        .unwrap_err();
    use pgward::proto::ToErrorResponse;
    assert_eq!(e.sqlstate(), pgward::proto::SqlState::IO_ERROR);
    assert!(log.check().is_err());
    assert!(
        log.record_durable(session_records(2).remove(0))
            .await
            .is_err(),
        "the log stays failed"
    );
}

#[tokio::test]
async fn replay_and_sessions_read_the_log_back() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), None).await;
    let records = replay::load(dir.path()).unwrap();
    let denied = replay::sessions(
        &records,
        &replay::Filter {
            decision: Some("deny".to_owned()),
            identity: Some("agent-2".to_owned()),
            since_us: None,
            until_us: None,
        },
    );
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].statements, STATEMENTS);
    assert_eq!(denied[0].denials, 1);

    let key = replay::SessionKey::find(&records, "2").unwrap();
    let mut out = Vec::new();
    replay::follow(
        dir.path(),
        &key.to_string(),
        false,
        Duration::ZERO,
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("marker_2_6"), "{text}");
    assert!(!text.contains("marker_1_"), "only session 2: {text}");
    assert!(text.contains("ERROR 42501"), "{text}");
    assert!(text.contains("| a***@x\n"), "captured rows: {text}");
    assert!(
        text.contains("approval request req-2 created by agent-2"),
        "{text}"
    );
    assert!(text.contains("ended "), "{text}");
}

#[tokio::test]
async fn parquet_export_reads_back_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), None).await;
    let out = dir.path().join("audit.parquet");
    let done = pgward::audit::export::export_parquet(dir.path(), &out).unwrap();
    let want = replay::load(dir.path()).unwrap();
    assert_eq!(done.rows, want.len() as u64);

    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&out).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let mut got: Vec<StoredRecord> = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let cols = Columns::new(&batch).unwrap();
        got.extend((0..cols.len()).map(|i| cols.row(i).unwrap()));
    }
    assert_eq!(got, want);

    pyarrow_reads(&out, want.len());
}

/// Reads the export with pyarrow too, when it is installed.
fn pyarrow_reads(path: &Path, rows: usize) {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import pyarrow.parquet"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipping the pyarrow check: python3 with pyarrow is not installed");
        return;
    }
    let script = "import sys, pyarrow.parquet as pq\n\
                  t = pq.read_table(sys.argv[1])\n\
                  print(t.num_rows, t.column('kind').to_pylist().count('statement'))";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.trim(),
        format!("{rows} {}", SESSIONS * STATEMENTS),
        "pyarrow's view"
    );
}
