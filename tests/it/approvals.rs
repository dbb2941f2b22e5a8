//! Approvals in live sessions: a statement an `approve` rule matches is held (nothing reaches
//! the server) until a *different* person with an approver role signs off; rejection, expiry
//! and cancel refuse it; retry mode grants one run; two pgward instances share a PostgreSQL
//! queue; the embedded queue survives a restart.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt, TryStreamExt};
use pgward::approval::{DutyError, Outcome, Party, State, Ticket, Verdict};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::assert_eventually;
use crate::support::wire::{self, RawClient};
use crate::support::{Harness, Running, pg, process};

const RULES: &str = r#"
[roles.dba]
members = ["alice", "carol", "bob"]

[roles.dev]
members = ["dave", "erin"]

[[rules]]
id = "reads"
roles = ["dba", "dev"]
classes = ["read", "tx", "session"]
action = "allow"

[[rules]]
id = "quick-expiry"
roles = ["dev"]
classes = ["write"]
tables = ["public.short_fuse"]
action = "approve"
approvers = ["dba"]
timeout = "1s"

[[rules]]
id = "retry-refunds"
roles = ["dev"]
classes = ["write"]
tables = ["public.refunds"]
action = "approve"
approvers = ["dba"]
mode = "retry"
grant_window = "5m"

[[rules]]
id = "dev-writes"
roles = ["dev"]
classes = ["write"]
action = "approve"
approvers = ["dba"]
timeout = "60s"

[[rules]]
id = "ddl-two-dbas"
roles = ["dba", "dev"]
classes = ["ddl"]
action = "approve"
approvers = ["dba"]
min_approvals = 2
timeout = "60s"
"#;

const SCHEMA: &str = "CREATE TABLE orders (id int, note text); \
                      CREATE TABLE short_fuse (id int); \
                      CREATE TABLE refunds (id int, amount int);";

fn harness() -> Harness {
    Harness::new()
        .identity("carol", "carol-pw", &[])
        .identity("bob", "bob-pw", &[])
        .identity("dave", "dave-pw", &[])
        .identity("erin", "erin-pw", &[])
        .rules(RULES)
}

async fn start(h: Harness) -> Running {
    let h = h.start().await;
    pg::direct(&h.database)
        .await
        .batch_execute(SCHEMA)
        .await
        .unwrap();
    h
}

/// A client as `user` whose notices arrive on the returned channel.
async fn client_with_notices(
    h: &Running,
    user: &str,
) -> (
    tokio_postgres::Client,
    futures::channel::mpsc::UnboundedReceiver<AsyncMessage>,
) {
    let (client, mut conn) =
        tokio_postgres::connect(&h.conninfo(user, &format!("{user}-pw")), NoTls)
            .await
            .expect("connect through pgward");
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let messages =
        futures::stream::poll_fn(move |cx| conn.poll_message(cx)).map_err(|e| panic!("{e}"));
    tokio::spawn(messages.forward(tx).map(|_| ()));
    (client, rx)
}

async fn client(h: &Running, user: &str) -> tokio_postgres::Client {
    h.client_as(user, &format!("{user}-pw")).await.unwrap()
}

/// The one pending request, once there is one.
async fn pending(h: &Running) -> Ticket {
    let approvals = &h.shared.approvals;
    assert_eventually!(
        !approvals.list(true).await.unwrap().is_empty(),
        "a pending approval request"
    );
    let mut found = approvals.list(true).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

fn dba(name: &str) -> Party {
    Party::new(name, vec!["dba".to_owned()])
}

async fn decide(
    h: &Running,
    t: &Ticket,
    who: Party,
    verdict: Verdict,
) -> Result<Outcome, DutyError> {
    h.shared
        .approvals
        .decide(t.request.id(), who, verdict)
        .await
        .expect("store works")
        .map(|(o, _)| o)
}

fn db_error(e: &tokio_postgres::Error) -> &tokio_postgres::error::DbError {
    e.as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e:?}"))
}

#[tokio::test]
async fn a_held_write_runs_once_a_dba_approves_it() {
    let h = start(harness()).await;
    let (dave, mut notices) = client_with_notices(&h, "dave").await;
    let run = tokio::spawn(async move {
        dave.execute("INSERT INTO orders VALUES (1, 'held')", &[])
            .await
            .map(|n| (n, dave))
    });

    let t = pending(&h).await;
    assert_eq!(t.statement.sql, "INSERT INTO orders VALUES (1, 'held')");
    assert_eq!(t.statement.class, "write");
    assert_eq!(t.statement.tables, ["public.orders"]);
    assert_eq!(t.statement.database, h.database);
    assert_eq!(t.request.requester().identity, "dave");
    assert_eq!(t.request.requester().roles, ["dev"]);
    assert_eq!(t.request.rule().as_str(), "dev-writes");
    assert!(
        t.origin.client_addr.starts_with("127.0.0.1:"),
        "{:?}",
        t.origin
    );
    // The client is told which request it waits on, while it waits.
    let notice = tokio::time::timeout(Duration::from_secs(10), notices.next())
        .await
        .expect("a notice while held")
        .expect("connection open");
    let AsyncMessage::Notice(n) = notice else {
        panic!("expected a notice, got {notice:?}")
    };
    assert!(
        n.message().contains(t.request.id().as_str()),
        "{}",
        n.message()
    );
    assert!(
        n.hint()
            .is_some_and(|h| h.contains("pgward approvals approve"))
    );
    // Held: nothing reached the server.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!run.is_finished());
    assert_eq!(pg::count(&h.database, "orders").await, 0);

    assert_eq!(
        decide(&h, &t, dba("alice"), Verdict::Approve).await,
        Ok(Outcome::Approved)
    );
    let (n, dave) = run.await.unwrap().expect("the approved statement runs");
    assert_eq!(n, 1);
    assert_eq!(pg::count(&h.database, "orders").await, 1);
    // The session goes on, and the next write is held again.
    let one: i32 = dave.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    let approved = h
        .shared
        .approvals
        .get(t.request.id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*approved.request.state(), State::Approved);
    assert_eq!(approved.request.decisions()[0].approver, "alice");
}

#[tokio::test]
async fn a_rejected_statement_fails_with_the_reason_and_aborts_the_transaction() {
    let h = start(harness()).await;
    let dave = client(&h, "dave").await;
    dave.batch_execute("BEGIN").await.unwrap();
    let run = tokio::spawn(async move {
        let r = dave
            .execute("INSERT INTO orders VALUES ($1, $2)", &[&7i32, &"rejected"])
            .await;
        (r, dave)
    });
    let t = pending(&h).await;
    // Parameters are shown as bound (tokio-postgres binds in binary: hex).
    assert_eq!(t.statement.sql, "INSERT INTO orders VALUES ($1, $2)");
    assert_eq!(
        t.statement.params,
        [
            Some("\\x00000007".to_owned()),
            Some("\\x72656a6563746564".to_owned())
        ]
    );
    // A rejection needs a reason.
    assert!(matches!(
        decide(&h, &t, dba("carol"), Verdict::Reject { reason: " ".into() }).await,
        Err(DutyError::MissingReason { .. })
    ));
    let reason = "refunds go through billing".to_owned();
    assert_eq!(
        decide(&h, &t, dba("carol"), Verdict::Reject { reason }).await,
        Ok(Outcome::Rejected)
    );
    let (r, dave) = run.await.unwrap();
    let e = r.unwrap_err();
    let db = db_error(&e);
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert!(
        db.message()
            .contains("rejected by carol: refunds go through billing"),
        "{db:?}"
    );
    assert!(db.hint().is_some());
    // As for any error in a transaction block: aborted until rollback.
    let e = dave.query_one("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    dave.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(pg::count(&h.database, "orders").await, 0);
    // A decided request can't be decided again.
    assert!(matches!(
        decide(&h, &t, dba("alice"), Verdict::Approve).await,
        Err(DutyError::Decided { .. })
    ));
}

#[tokio::test]
async fn an_undecided_request_expires_and_the_statement_fails() {
    let h = start(harness()).await;
    let dave = client(&h, "dave").await;
    let e = dave
        .batch_execute("INSERT INTO short_fuse VALUES (1)")
        .await
        .unwrap_err();
    let db = db_error(&e);
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert!(db.message().contains("expired after 1s"), "{db:?}");
    assert!(
        db.detail().is_some_and(|d| d.contains("quick-expiry")),
        "{db:?}"
    );
    assert_eq!(pg::count(&h.database, "short_fuse").await, 0);
    let all = h.shared.approvals.list(false).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(*all[0].request.state(), State::Expired);
    // Too late to approve.
    assert!(matches!(
        decide(&h, &all[0], dba("alice"), Verdict::Approve).await,
        Err(DutyError::Expired { .. } | DutyError::Decided { .. })
    ));
    dave.batch_execute("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn cancelling_a_held_statement_withdraws_its_request() {
    let h = start(harness()).await;
    let dave = client(&h, "dave").await;
    let cancel = dave.cancel_token();
    let run = tokio::spawn(async move {
        let r = dave.batch_execute("DELETE FROM orders").await;
        (r, dave)
    });
    let t = pending(&h).await;
    cancel.cancel_query(NoTls).await.unwrap();
    let (r, dave) = run.await.unwrap();
    let e = r.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e:?}");
    let t = h
        .shared
        .approvals
        .get(t.request.id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*t.request.state(), State::Withdrawn);
    // The session is usable, and a withdrawn request can't be approved into running.
    dave.batch_execute("SELECT 1").await.unwrap();
    assert!(
        decide(&h, &t, dba("alice"), Verdict::Approve)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_client_that_leaves_while_held_withdraws_its_request() {
    let h = start(harness()).await;
    // A raw connection, so that leaving closes the socket at once.
    let mut dave = RawClient::connect(h.addr).await;
    dave.login("dave", "dave-pw", &h.database).await;
    dave.send(&wire::query("DELETE FROM orders")).await;
    let t = pending(&h).await;
    drop(dave);
    let approvals = Arc::clone(&h.shared.approvals);
    let id = t.request.id().clone();
    assert_eventually!(
        approvals.get(&id).await.unwrap().unwrap().request.state() == &State::Withdrawn,
        "the request withdrawn"
    );
}

#[tokio::test]
async fn retry_mode_grants_exactly_one_run_of_exactly_the_approved_statement() {
    let h = start(harness()).await;
    let dave = client(&h, "dave").await;
    let insert = "INSERT INTO refunds VALUES ($1, $2)";
    let e = dave.execute(insert, &[&1i32, &500i32]).await.unwrap_err();
    let db = db_error(&e);
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    let t = pending(&h).await;
    assert!(db.message().contains(t.request.id().as_str()), "{db:?}");
    assert!(db.hint().is_some_and(|h| h.contains("again")), "{db:?}");
    assert_eq!(
        decide(&h, &t, dba("bob"), Verdict::Approve).await,
        Ok(Outcome::Approved)
    );
    // Other parameters are another statement: not covered by the grant.
    let e = dave
        .execute(insert, &[&1i32, &50_000i32])
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    // Another identity is not covered either.
    let erin = client(&h, "erin").await;
    let e = erin.execute(insert, &[&1i32, &500i32]).await.unwrap_err();
    assert_eq!(db_error(&e).code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    // The requester, same text and parameters: runs once.
    assert_eq!(dave.execute(insert, &[&1i32, &500i32]).await.unwrap(), 1);
    let e = dave.execute(insert, &[&1i32, &500i32]).await.unwrap_err();
    assert_eq!(db_error(&e).code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert_eq!(pg::count(&h.database, "refunds").await, 1);
    let used = h
        .shared
        .approvals
        .get(t.request.id())
        .await
        .unwrap()
        .unwrap();
    assert!(used.grant_used.is_some());
}

#[tokio::test]
async fn nobody_approves_their_own_request_and_only_approvers_approve() {
    let h = start(harness()).await;
    // alice is a dba; DDL needs two *other* dbas.
    let alice = client(&h, "alice").await;
    let run = tokio::spawn(async move { alice.batch_execute("CREATE TABLE t_new (id int)").await });
    let t = pending(&h).await;
    assert!(matches!(
        decide(&h, &t, dba("alice"), Verdict::Approve).await,
        Err(DutyError::SelfDecision { .. })
    ));
    let dev = Party::new("erin", vec!["dev".to_owned()]);
    assert!(matches!(
        decide(&h, &t, dev, Verdict::Approve).await,
        Err(DutyError::NotAnApprover { .. })
    ));
    // Two distinct dbas: the first leaves it pending, the same one again does not count.
    assert_eq!(
        decide(&h, &t, dba("carol"), Verdict::Approve).await,
        Ok(Outcome::Pending {
            approvals: 1,
            needed: 2
        })
    );
    let carol_with_two_roles = Party::new("carol", vec!["dba".to_owned(), "dev".to_owned()]);
    assert!(matches!(
        decide(&h, &t, carol_with_two_roles, Verdict::Approve).await,
        Err(DutyError::AlreadyApproved { .. })
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !run.is_finished(),
        "one approval of two must not release it"
    );
    assert_eq!(
        decide(&h, &t, dba("bob"), Verdict::Approve).await,
        Ok(Outcome::Approved)
    );
    run.await.unwrap().expect("created after two approvals");
    pg::direct(&h.database)
        .await
        .batch_execute("SELECT * FROM t_new")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_decision_on_one_instance_releases_a_client_held_by_another() {
    let queue = pg::fresh_database().await;
    let shared_store = format!("[approvals]\nstore = \"postgres\"\ndatabase = \"{queue}\"\n");
    let a = start(harness().config(&shared_store)).await;
    let b = start(harness().config(&shared_store)).await;
    let dave = client(&a, "dave").await;
    let run = tokio::spawn(async move { dave.execute("UPDATE orders SET note = 'x'", &[]).await });
    // Instance b sees a's request in the shared queue and decides it there.
    let t = pending(&b).await;
    assert_eq!(t.statement.database, a.database);
    assert_eq!(
        decide(&b, &t, dba("carol"), Verdict::Approve).await,
        Ok(Outcome::Approved)
    );
    // a learns of it by NOTIFY and releases the statement.
    let n = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("released promptly")
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
    let on_a = a
        .shared
        .approvals
        .get(t.request.id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*on_a.request.state(), State::Approved);
}

#[tokio::test]
async fn a_pending_request_survives_a_crash_and_restart_of_the_embedded_store() {
    let database = pg::fresh_database().await;
    pg::direct(&database)
        .await
        .batch_execute(SCHEMA)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = process::free_port();
    process::write_config(dir.path(), port, &[("dave", "dave-pw")], RULES, "");
    let conninfo = format!(
        "host=127.0.0.1 port={port} user=dave password=dave-pw dbname={database} sslmode=disable"
    );

    let mut first = process::serve(dir.path(), port).await;
    let (dave, mut conn) = tokio_postgres::connect(&conninfo, NoTls).await.unwrap();
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        // Ends with the connection (it is killed below).
        while let Some(Ok(m)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            if tx.send(m).is_err() {
                break;
            }
        }
    });
    let run = tokio::spawn(async move { dave.batch_execute("DELETE FROM orders").await });
    // The notice comes after the request is stored.
    let notice = tokio::time::timeout(Duration::from_secs(10), notices.recv())
        .await
        .expect("held")
        .expect("open");
    assert!(matches!(notice, AsyncMessage::Notice(_)), "{notice:?}");

    // A crash: the held client gets an error, the request stays pending on disk.
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let e = run.await.unwrap().unwrap_err();
    assert!(e.is_closed() || e.as_db_error().is_none(), "{e:?}");
    let store_file = dir.path().join("data/approvals.redb");
    let listed = {
        let store = pgward::approval::store::Embedded::open(&store_file).unwrap();
        pgward::approval::Approvals::new(pgward::approval::Store::Embedded(store), None)
            .list(true)
            .await
            .unwrap()
    };
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].statement.sql, "DELETE FROM orders");
    assert_eq!(*listed[0].request.state(), State::Pending);

    // pgward starts again on the same store and serves; the request is still there after.
    let mut second = process::serve(dir.path(), port).await;
    let (dave, conn) = tokio_postgres::connect(&conninfo, NoTls).await.unwrap();
    tokio::spawn(conn);
    dave.batch_execute("SELECT 1").await.unwrap();
    second.start_kill().unwrap();
    second.wait().await.unwrap();
    let store = pgward::approval::store::Embedded::open(&store_file).unwrap();
    let again = pgward::approval::Approvals::new(pgward::approval::Store::Embedded(store), None)
        .list(true)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].request.id(), listed[0].request.id());
}

#[tokio::test]
async fn psql_shows_the_hold_notice_and_runs_the_statement_once_approved() {
    let h = start(harness()).await;
    let conninfo = h.conninfo("dave", "dave-pw");
    let psql = tokio::process::Command::new("psql")
        .arg(conninfo)
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg("INSERT INTO orders VALUES (3, 'from psql')")
        .env_remove("PGSERVICE")
        .output();
    let psql = tokio::spawn(psql);
    let t = pending(&h).await;
    assert_eq!(
        decide(&h, &t, dba("carol"), Verdict::Approve).await,
        Ok(Outcome::Approved)
    );
    let out = psql.await.unwrap().expect("psql runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("NOTICE:") && stderr.contains(t.request.id().as_str()),
        "{stderr}"
    );
    assert!(stdout.contains("INSERT 0 1"), "{stdout}");
    assert_eq!(pg::count(&h.database, "orders").await, 1);
}
