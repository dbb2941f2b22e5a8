//! The audit log on the data path: what a session did is what its records say (statements,
//! decisions, approvals, outcomes), the chain verifies, and in strict mode a pgward killed
//! during a write load leaves every row in the database with its INSERT recorded.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use pgward::approval::{Outcome as Decided, Party, Verdict};
use pgward::audit::{ApprovalEventKind, Outcome, Record, Statement, replay, verify};
use tokio_postgres::NoTls;

use crate::assert_eventually;
use crate::support::{Harness, pg, process};

const RULES: &str = r#"
[roles.dba]
members = ["alice", "carol"]

[roles.dev]
members = ["dave"]

[[rules]]
id = "dba-all"
roles = ["dba"]
classes = ["tx", "session", "read", "write", "ddl"]
action = "allow"

[[rules]]
id = "dev-reads"
roles = ["dev"]
classes = ["read", "tx", "session"]
action = "allow"

[[rules]]
id = "dev-writes"
roles = ["dev"]
classes = ["write"]
action = "approve"
approvers = ["dba"]
timeout = "60s"

[[masks]]
roles = ["dev"]
columns = ["public.orders.note"]
strategy = "redact"
"#;

fn records(dir: &Path) -> Vec<Record> {
    replay::load(dir)
        .map(|rs| rs.into_iter().map(|r| r.envelope.record).collect())
        .unwrap_or_default()
}

fn statements(rs: &[Record], session: u64) -> Vec<(Statement, Option<Outcome>)> {
    rs.iter()
        .filter_map(|r| match r {
            Record::Statement(s) if s.session == session => Some(s.clone()),
            _ => None,
        })
        .map(|s| {
            let outcome = rs.iter().find_map(|r| match r {
                Record::Outcome(o) if o.session == session && o.seq == s.seq => Some(o.clone()),
                _ => None,
            });
            (s, outcome)
        })
        .collect()
}

#[tokio::test]
async fn a_sessions_records_match_what_it_did() {
    let data = tempfile::tempdir().unwrap();
    let audit_dir = data.path().join("audit");
    let h = Harness::new()
        .identity("carol", "carol-pw", &[])
        .identity("dave", "dave-pw", &[])
        .rules(RULES)
        .config(&format!(
            "data_dir = {:?}\n[audit]\nmode = \"batched\"\nflush_interval_ms = 5\ncapture_roles = [\"dev\"]\n",
            data.path()
        ))
        .start()
        .await;
    pg::direct(&h.database)
        .await
        .batch_execute(
            "CREATE TABLE orders (id int, note text); INSERT INTO orders VALUES (1, 'a'), (2, 'b')",
        )
        .await
        .unwrap();

    let (dave, conn) = tokio_postgres::connect(&h.conninfo("dave", "dave-pw"), NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    dave.batch_execute("SELECT * FROM orders").await.unwrap();
    let rows = dave
        .query("SELECT id FROM orders WHERE id >= $1", &[&1i32])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let e = dave.batch_execute("SELECT 1/0").await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "22012");
    let e = dave.batch_execute("DROP TABLE orders").await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42501");
    // A held write, approved by carol.
    let held = tokio::spawn(async move {
        let n = dave
            .execute("DELETE FROM orders WHERE id = $1", &[&2i32])
            .await
            .unwrap();
        (n, dave)
    });
    let approvals = &h.shared.approvals;
    assert_eventually!(
        !approvals.list(true).await.unwrap().is_empty(),
        "the held write"
    );
    let request = approvals.list(true).await.unwrap().remove(0);
    let carol = Party::new("carol", vec!["dba".to_owned()]);
    let decided = approvals
        .decide(request.request.id(), carol, Verdict::Approve)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decided.0, Decided::Approved);
    let (n, dave) = held.await.unwrap();
    assert_eq!(n, 1);
    // Another, rejected by carol: refused, and recorded under its request.
    let held = tokio::spawn(async move {
        let e = dave
            .execute("DELETE FROM orders WHERE id = $1", &[&1i32])
            .await
            .unwrap_err();
        (e, dave)
    });
    assert_eventually!(
        !approvals.list(true).await.unwrap().is_empty(),
        "the second held write"
    );
    let rejected = approvals.list(true).await.unwrap().remove(0);
    approvals
        .decide(
            rejected.request.id(),
            Party::new("carol", vec!["dba".to_owned()]),
            Verdict::Reject {
                reason: "not today".to_owned(),
            },
        )
        .await
        .unwrap()
        .unwrap();
    let (e, dave) = held.await.unwrap();
    assert_eq!(e.code().unwrap().code(), "42501");
    drop(dave);
    conn.await.unwrap().unwrap();

    // The session's end is recorded once pgward sees the client leave.
    assert_eventually!(
        records(&audit_dir)
            .iter()
            .any(|r| matches!(r, Record::SessionEnd(_))),
        "the session's end recorded"
    );
    let rs = records(&audit_dir);
    let start = rs
        .iter()
        .find_map(|r| match r {
            Record::SessionStart(s) if s.identity == "dave" => Some(s.clone()),
            _ => None,
        })
        .expect("session start");
    assert_eq!(start.roles, ["dev"]);
    assert_eq!(start.database, h.database);
    assert_eq!(start.upstream_user, "postgres");
    assert!(!start.tls);
    assert!(start.client_addr.starts_with("127.0.0.1:"));

    let done = statements(&rs, start.session);
    let summary: Vec<(&str, &str, Option<&str>, Option<u64>)> = done
        .iter()
        .map(|(s, o)| {
            (
                s.text.as_str(),
                s.decision.as_str(),
                o.as_ref().and_then(|o| o.sqlstate.as_deref()),
                o.as_ref().and_then(|o| o.rows),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("SELECT * FROM orders", "allow", None, Some(2)),
            (
                "SELECT id FROM orders WHERE id >= $1",
                "allow",
                None,
                Some(2)
            ),
            ("SELECT 1/0", "allow", Some("22012"), None),
            ("DROP TABLE orders", "deny", Some("42501"), None),
            ("DELETE FROM orders WHERE id = $1", "approve", None, Some(1)),
            (
                "DELETE FROM orders WHERE id = $1",
                "deny",
                Some("42501"),
                None
            ),
        ]
    );
    assert_eq!(
        done[5].0.approval_request.as_deref(),
        Some(rejected.request.id().as_str())
    );
    assert!(done[5].0.approvers.is_empty());
    let (select, select_outcome) = &done[0];
    assert_eq!(select.class, "read");
    assert_eq!(select.tables, ["public.orders"]);
    assert_eq!(select.rule.as_deref(), Some("dev-reads"));
    assert_eq!(select.masked_columns, ["public.orders.note"]);
    let outcome = select_outcome.as_ref().unwrap();
    assert_eq!(outcome.command_tag.as_deref(), Some("SELECT 2"));
    assert!(outcome.bytes > 0);
    // Masks apply to dave on orders: his parameters are kept hidden.
    let (bound, _) = &done[1];
    assert_eq!(bound.params, [Some("***".to_owned())]);
    // His result rows are captured as he received them: masked.
    let captured: Vec<_> = rs
        .iter()
        .filter_map(|r| match r {
            Record::Rows(rows) if rows.session == start.session => Some(rows.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(captured[0].seq, select.seq);
    assert_eq!(captured[0].columns, ["id", "note"]);
    assert_eq!(
        captured[0].rows,
        [
            vec![Some("1".to_owned()), Some("***".to_owned())],
            vec![Some("2".to_owned()), Some("***".to_owned())]
        ]
    );
    assert!(!captured[0].truncated);
    let (denied, _) = &done[3];
    assert_eq!(denied.rule.as_deref(), Some("default-deny"));
    let (approved, _) = &done[4];
    assert_eq!(approved.rule.as_deref(), Some("dev-writes"));
    assert_eq!(
        approved.approval_request.as_deref(),
        Some(request.request.id().as_str())
    );
    assert_eq!(approved.approvers, ["carol"]);
    // The request's life is in the log too, attributed.
    let events: Vec<(ApprovalEventKind, String)> = rs
        .iter()
        .filter_map(|r| match r {
            Record::Approval(e) if e.request == request.request.id().as_str() => {
                Some((e.event, e.actor.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        events,
        [
            (ApprovalEventKind::Created, "dave".to_owned()),
            (ApprovalEventKind::Approved, "carol".to_owned()),
        ]
    );
    let report = verify(&audit_dir, None).unwrap();
    assert!(report.first_break.is_none(), "{report:?}");
}

#[tokio::test]
async fn strict_mode_records_every_insert_before_it_runs_even_when_killed() {
    let database = pg::fresh_database().await;
    pg::direct(&database)
        .await
        .batch_execute("CREATE TABLE load (id int)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = process::free_port();
    process::write_config(
        dir.path(),
        port,
        &[("alice", "alice-pw")],
        RULES,
        "[audit]\nmode = \"strict\"\n",
    );
    let mut pgward = process::serve(dir.path(), port).await;
    let conninfo = format!(
        "host=127.0.0.1 port={port} user=alice password=alice-pw dbname={database} sslmode=disable"
    );
    // Four writers insert distinct ids as fast as they can.
    let mut writers = Vec::new();
    for w in 0..4 {
        let conninfo = conninfo.clone();
        writers.push(tokio::spawn(async move {
            let (c, conn) = tokio_postgres::connect(&conninfo, NoTls).await.unwrap();
            tokio::spawn(conn);
            for i in 0.. {
                let id = w * 1_000_000 + i;
                if c.batch_execute(&format!("INSERT INTO load VALUES ({id})"))
                    .await
                    .is_err()
                {
                    return i;
                }
            }
            unreachable!()
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    pgward.start_kill().unwrap();
    pgward.wait().await.unwrap();
    let mut attempted = 0;
    for w in writers {
        attempted += w.await.unwrap();
    }
    assert!(attempted > 10, "the load ran ({attempted} inserts)");

    let in_db: BTreeSet<i32> = pg::direct(&database)
        .await
        .query("SELECT id FROM load", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let audit_dir = dir.path().join("data/audit");
    let recorded: BTreeSet<i32> = records(&audit_dir)
        .iter()
        .filter_map(|r| match r {
            Record::Statement(s) => s
                .text
                .strip_prefix("INSERT INTO load VALUES (")
                .and_then(|t| t.strip_suffix(')'))
                .and_then(|n| n.parse().ok()),
            _ => None,
        })
        .collect();
    let unrecorded: Vec<_> = in_db.difference(&recorded).collect();
    assert!(
        unrecorded.is_empty(),
        "{} rows in the database have no INSERT in the log: {unrecorded:?}",
        unrecorded.len()
    );
    // The log verifies up to its last record: at most a torn tail from the kill.
    let report = verify(&audit_dir, None).unwrap();
    if let Some(b) = &report.first_break {
        assert_eq!(b.kind, pgward::audit::BreakKind::Truncated, "{report:?}");
    }
    assert!(report.records as usize >= in_db.len(), "{report:?}");
}

#[tokio::test]
async fn sigterm_drains_sessions_and_closes_the_audit_log() {
    let database = pg::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let port = process::free_port();
    pg::direct(&database)
        .await
        .batch_execute("CREATE TABLE orders (id int, note text)")
        .await
        .unwrap();
    process::write_config(
        dir.path(),
        port,
        &[("alice", "alice-pw"), ("dave", "dave-pw")],
        RULES,
        "",
    );
    let mut pgward = process::serve(dir.path(), port).await;
    let conninfo = format!(
        "host=127.0.0.1 port={port} user=alice password=alice-pw dbname={database} sslmode=disable"
    );
    // A session whose write is held for approval.
    let (dave, dave_conn) = tokio_postgres::connect(
        &conninfo.replace("user=alice password=alice-pw", "user=dave password=dave-pw"),
        NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(dave_conn);
    let held = tokio::spawn(async move { dave.batch_execute("DELETE FROM orders").await });
    // An idle session, and one whose statement is running when the signal comes.
    let (idle, idle_conn) = tokio_postgres::connect(&conninfo, NoTls).await.unwrap();
    let idle_conn = tokio::spawn(idle_conn);
    idle.batch_execute("SELECT 1").await.unwrap();
    let (busy, busy_conn) = tokio_postgres::connect(&conninfo, NoTls).await.unwrap();
    tokio::spawn(busy_conn);
    let running = tokio::spawn(async move { busy.batch_execute("SELECT pg_sleep(1.5)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = pgward.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    // The idle session is told why it ends, as PostgreSQL's own shutdown does.
    let ended = tokio::time::timeout(Duration::from_secs(10), idle_conn)
        .await
        .expect("the idle session ends")
        .unwrap()
        .unwrap_err();
    assert_eq!(ended.code().map(|c| c.code()), Some("57P01"), "{ended:?}");
    // New clients are not accepted any more.
    assert!(tokio_postgres::connect(&conninfo, NoTls).await.is_err());
    // The running statement finishes.
    running
        .await
        .unwrap()
        .expect("the running statement completes");
    let status = tokio::time::timeout(Duration::from_secs(10), pgward.wait())
        .await
        .expect("pgward stops once drained")
        .unwrap();
    assert!(status.success(), "{status:?}");
    // The held statement did not run, and its request was withdrawn.
    assert!(held.await.unwrap().is_err());
    let store =
        pgward::approval::store::Embedded::open(&dir.path().join("data/approvals.redb")).unwrap();
    let requests = pgward::approval::Approvals::new(pgward::approval::Store::Embedded(store), None)
        .list(false)
        .await
        .unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].request.state(),
        &pgward::approval::State::Withdrawn
    );
    // The queued records were written and the file closed: the statements are there, and the
    // log verifies without a note about a file left open.
    let audit_dir = dir.path().join("data/audit");
    let rs = records(&audit_dir);
    assert!(rs.iter().any(|r| matches!(r, Record::Outcome(o) if o.command_tag.as_deref() == Some("SELECT 1") && o.sqlstate.is_none())));
    let report = verify(&audit_dir, None).unwrap();
    assert!(report.first_break.is_none(), "{report:?}");
    assert!(
        report.notes.iter().all(|n| !n.contains("is open")),
        "{report:?}"
    );
}
