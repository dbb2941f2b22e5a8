//! Session pooling: a server connection serves the next session only after a clean reset, and
//! never one that ended mid-transaction, was terminated, or was started with other parameters.

use tokio_postgres::error::SqlState;

use crate::support::{Harness, Running, harness, pg};

async fn backend_pid(c: &tokio_postgres::Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

async fn setting(c: &tokio_postgres::Client, name: &str) -> String {
    c.query_one("SELECT current_setting($1)", &[&name])
        .await
        .unwrap()
        .get(0)
}

/// Waits until the server process `pid` is gone from `pg_stat_activity`.
async fn wait_backend_gone(h: &Running, pid: i32, what: &str) {
    let direct = pg::direct(&h.database).await;
    crate::assert_eventually!(
        direct
            .query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap()
            .is_empty(),
        what
    );
}

/// Drops a client (tokio-postgres sends Terminate) and waits until pgward pooled its server
/// connection: `idle` connections are then waiting.
async fn leave_and_wait_pooled(h: &Running, c: tokio_postgres::Client, idle: usize) {
    drop(c);
    crate::assert_eventually!(
        h.shared.pools.idle() == idle,
        "the server connection to be back in the pool"
    );
}

#[tokio::test]
async fn a_returned_connection_is_reset_before_the_next_session_gets_it() {
    let h = Harness::new().start().await;
    let c = h.client().await;
    let pid = backend_pid(&c).await;
    c.batch_execute(
        "SET work_mem = '7MB';
         CREATE TEMP TABLE scratch (i int);
         PREPARE stmt AS SELECT 1;
         SELECT pg_advisory_lock(4242);
         LISTEN somewhere;",
    )
    .await
    .unwrap();
    let default_work_mem = {
        let direct = pg::direct(&h.database).await;
        setting(&direct, "work_mem").await
    };
    leave_and_wait_pooled(&h, c, 1).await;

    let c = h.client().await;
    assert_eq!(
        backend_pid(&c).await,
        pid,
        "the pooled connection is reused"
    );
    assert_eq!(setting(&c, "work_mem").await, default_work_mem);
    let temp = c.simple_query("SELECT * FROM scratch").await.unwrap_err();
    assert_eq!(temp.code(), Some(&SqlState::UNDEFINED_TABLE));
    let prepared = c.simple_query("EXECUTE stmt").await.unwrap_err();
    assert_eq!(prepared.code(), Some(&SqlState::UNDEFINED_PSTATEMENT));
    let locks: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(locks, 0);
    let listening: i64 = c
        .query_one("SELECT count(*) FROM pg_listening_channels()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(listening, 0);
    assert_eq!(h.shared.metrics.upstream_reused.get(), 1);
}

#[tokio::test]
async fn startup_parameters_key_the_pool_and_reset_returns_to_them() {
    let h = Harness::new().start().await;
    let with_options = |timeout: &str| {
        format!(
            "{} options='-c statement_timeout={timeout}'",
            h.conninfo(harness::USER, harness::PASSWORD)
        )
    };
    let connect = |conninfo: String| async move {
        let (c, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c
    };
    let a = connect(with_options("1234")).await;
    let pid_a = backend_pid(&a).await;
    a.batch_execute("SET statement_timeout = 5").await.unwrap();
    leave_and_wait_pooled(&h, a, 1).await;

    // Other parameters: another server connection, started with them.
    let b = connect(with_options("4321")).await;
    assert_ne!(backend_pid(&b).await, pid_a);
    assert_eq!(setting(&b, "statement_timeout").await, "4321ms");
    leave_and_wait_pooled(&h, b, 2).await;

    // The same parameters: the first connection, back at its startup value (as RESET does).
    let a = connect(with_options("1234")).await;
    assert_eq!(backend_pid(&a).await, pid_a);
    assert_eq!(setting(&a, "statement_timeout").await, "1234ms");
    a.batch_execute("SET statement_timeout = 9; RESET statement_timeout")
        .await
        .unwrap();
    assert_eq!(setting(&a, "statement_timeout").await, "1234ms");
}

#[tokio::test]
async fn a_session_that_leaves_mid_transaction_is_rolled_back_and_never_reused() {
    let h = Harness::new().start().await;
    let setup = h.client().await;
    setup.batch_execute("CREATE TABLE t (i int)").await.unwrap();
    leave_and_wait_pooled(&h, setup, 1).await;

    let c = h.client().await;
    let pid = backend_pid(&c).await;
    c.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    drop(c);
    wait_backend_gone(
        &h,
        pid,
        "the server connection of the abandoned transaction to close",
    )
    .await;
    assert_eq!(pg::count(&h.database, "t").await, 0);
    assert_eq!(h.shared.pools.idle(), 0);
    let c = h.client().await;
    assert_ne!(backend_pid(&c).await, pid);
}

#[tokio::test]
async fn a_connection_terminated_while_idle_is_replaced() {
    let h = Harness::new().start().await;
    let c = h.client().await;
    let pid = backend_pid(&c).await;
    leave_and_wait_pooled(&h, c, 1).await;
    pg::direct(&h.database)
        .await
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    wait_backend_gone(&h, pid, "the backend to exit").await;
    let c = h.client().await;
    assert_ne!(backend_pid(&c).await, pid);
    c.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn an_exhausted_pool_answers_too_many_connections() {
    let h = Harness::new()
        .config("[pool]\nmax_size = 1\nacquire_timeout = \"300ms\"\n")
        .start()
        .await;
    let holder = h.client().await;
    let e = h
        .client_as(harness::USER, harness::PASSWORD)
        .await
        .unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code(), &SqlState::TOO_MANY_CONNECTIONS);
    assert_eq!(db.severity(), "FATAL");
    assert!(db.hint().unwrap_or_default().contains("max_size"));
    drop(holder);
    crate::assert_eventually!(h.shared.pools.idle() == 1, "the connection to come back");
    h.client().await.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn pooling_can_be_switched_off_for_a_role() {
    let h = Harness::new()
        .config("[pool]\nexclude_roles = [\"everyone\"]\n")
        .start()
        .await;
    let c = h.client().await;
    let pid = backend_pid(&c).await;
    drop(c);
    wait_backend_gone(
        &h,
        pid,
        "the unpooled server connection to close with its session",
    )
    .await;
    assert_eq!(h.shared.pools.idle(), 0);
    let c = h.client().await;
    assert_ne!(backend_pid(&c).await, pid);
}
