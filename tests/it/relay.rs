//! Transparency: what a driver does through pgward works as it does against PostgreSQL.

use futures::{SinkExt, StreamExt, TryStreamExt, future, stream};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, NoTls, SimpleQueryMessage};

use crate::support::Harness;

#[tokio::test]
async fn simple_protocol_returns_rows_and_command_tags() {
    let h = Harness::new().start().await;
    let c = h.client().await;
    let msgs = c
        .simple_query("SELECT 1 AS one, 'x' AS letter; SELECT generate_series(1, 3)")
        .await
        .unwrap();
    let rows: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(rows, ["1", "1", "2", "3"]);
    let counts: Vec<u64> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(counts, [1, 3]);
}

#[tokio::test]
async fn extended_protocol_binds_and_returns_binary_values() {
    let h = Harness::new().start().await;
    let c = h.client().await;
    // tokio-postgres binds parameters and reads results in binary format.
    let row = c
        .query_one(
            "SELECT $1::int4 + 1, $2::text || '!', $3::float8 * 2, $4::bytea",
            &[&41i32, &"hi", &1.25f64, &vec![0u8, 255, 7]],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(row.get::<_, String>(1), "hi!");
    assert_eq!(row.get::<_, f64>(2), 2.5);
    assert_eq!(row.get::<_, Vec<u8>>(3), vec![0u8, 255, 7]);

    // A named prepared statement, executed many times.
    let stmt = c.prepare("SELECT $1::int8 * $1::int8").await.unwrap();
    for i in 0..50i64 {
        assert_eq!(
            c.query_one(&stmt, &[&i]).await.unwrap().get::<_, i64>(0),
            i * i
        );
    }
}

#[tokio::test]
async fn pipelined_queries_complete_in_order() {
    let h = Harness::new().start().await;
    let c = h.client().await;
    let stmt = c
        .prepare("SELECT $1::int4, pg_sleep(0.001)::text")
        .await
        .unwrap();
    // All 200 queries are written before the first result is read: one pipeline.
    let results = future::join_all((0..200i32).map(|i| {
        let c = &c;
        let stmt = &stmt;
        async move { c.query_one(stmt, &[&i]).await.map(|r| r.get::<_, i32>(0)) }
    }))
    .await;
    let got: Vec<i32> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(got, (0..200).collect::<Vec<_>>());
}

#[tokio::test]
async fn copy_in_and_out_move_every_row() {
    let h = Harness::new().start().await;
    let c = h.client().await;
    c.batch_execute("CREATE TABLE t (id int, name text)")
        .await
        .unwrap();
    let sink = c.copy_in("COPY t FROM STDIN").await.unwrap();
    let lines: Vec<Result<bytes::Bytes, tokio_postgres::Error>> = (0..20_000)
        .map(|i| Ok(bytes::Bytes::from(format!("{i}\tname-{i}\n"))))
        .collect();
    let mut sink = std::pin::pin!(sink);
    sink.send_all(&mut stream::iter(lines)).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 20_000);
    assert_eq!(
        c.query_one("SELECT count(*), sum(id) FROM t", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        20_000
    );

    let out: Vec<bytes::Bytes> = c
        .copy_out("COPY t TO STDOUT")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let text: String = out
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(text.lines().count(), 20_000);
    assert!(text.contains("19999\tname-19999\n"));
}

#[tokio::test]
async fn copy_in_error_rolls_back_and_session_recovers() {
    let h = Harness::new().start().await;
    let c = h.client().await;
    c.batch_execute("CREATE TABLE t (id int)").await.unwrap();
    let sink = c.copy_in("COPY t FROM STDIN").await.unwrap();
    let mut sink = std::pin::pin!(sink);
    sink.send(bytes::Bytes::from_static(b"1\nnot-a-number\n"))
        .await
        .unwrap();
    let err = sink.finish().await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INVALID_TEXT_REPRESENTATION));
    assert_eq!(
        c.query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );
}

#[tokio::test]
async fn listen_notify_reaches_the_listener_with_the_senders_pid() {
    let h = Harness::new().start().await;
    let (listener, mut rx) = h.client_with_messages().await;
    listener.batch_execute("LISTEN events").await.unwrap();

    let sender = h.client().await;
    let sender_pid: i32 = sender
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    sender
        .batch_execute("NOTIFY events, 'hello'")
        .await
        .unwrap();

    let note = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), rx.next())
            .await
            .unwrap()
        {
            Some(AsyncMessage::Notification(n)) => break n,
            Some(_) => continue,
            None => panic!("connection ended"),
        }
    };
    assert_eq!((note.channel(), note.payload()), ("events", "hello"));
    assert_eq!(note.process_id(), sender_pid);
}

#[tokio::test]
async fn notices_are_relayed() {
    let h = Harness::new().start().await;
    let (client, mut rx) = h.client_with_messages().await;
    client
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'hello from %', 'plpgsql'; END $$")
        .await
        .unwrap();
    drop(client);
    let mut notices = Vec::new();
    while let Some(m) = rx.next().await {
        if let AsyncMessage::Notice(n) = m {
            notices.push(n.message().to_owned());
        }
    }
    assert_eq!(notices, ["hello from plpgsql"]);
}

#[tokio::test]
async fn errors_keep_postgres_semantics_and_the_session_recovers() {
    let h = Harness::new().start().await;
    let c = h.client().await;
    let err = c.query_one("SELECT 1/0", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO));
    assert_eq!(
        c.query_one("SELECT 2", &[]).await.unwrap().get::<_, i32>(0),
        2
    );

    c.batch_execute("CREATE TABLE t (id int primary key)")
        .await
        .unwrap();
    let err = c
        .batch_execute("BEGIN; INSERT INTO t VALUES (1); INSERT INTO t VALUES (1); COMMIT")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION));
    // The failed block is still open on the server: commands are refused until ROLLBACK.
    let err = c.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        c.query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );
}

#[tokio::test]
async fn cancel_stops_a_running_query() {
    let h = Harness::new().start().await;
    let c = h.client().await;
    let token = c.cancel_token();
    let sleeper = tokio::spawn(async move {
        let r = c.query("SELECT pg_sleep(60)", &[]).await;
        (r, c)
    });
    // Let the query reach the server, then cancel through pgward.
    crate::support::pg::wait_until_running(&h.database, "SELECT pg_sleep(60)").await;
    token.cancel_query(NoTls).await.unwrap();
    let (result, c) = tokio::time::timeout(std::time::Duration::from_secs(20), sleeper)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.unwrap_err().code(), Some(&SqlState::QUERY_CANCELED));
    assert_eq!(
        c.query_one("SELECT 3", &[]).await.unwrap().get::<_, i32>(0),
        3
    );
}

#[tokio::test]
async fn startup_parameters_pass_through_as_sent() {
    let h = Harness::new().start().await;
    let conninfo = format!(
        "{} application_name=pgward-it options='-c search_path=custom,public -c statement_timeout=1234'",
        h.conninfo(
            crate::support::harness::USER,
            crate::support::harness::PASSWORD
        )
    );
    let (c, conn) = tokio_postgres::connect(&conninfo, NoTls).await.unwrap();
    tokio::spawn(conn);
    let row = c
        .query_one(
            "SELECT current_setting('application_name'), current_setting('search_path'), current_setting('statement_timeout')",
            &[],
        )
        .await
        .unwrap();
    // The server sees who is behind the connection; see tests/it/identity.rs for the client's view.
    assert_eq!(
        row.get::<_, String>(0),
        format!("pgward-it (pgward:{})", crate::support::harness::USER)
    );
    assert_eq!(row.get::<_, String>(1), "custom,public");
    assert_eq!(row.get::<_, String>(2), "1234ms");
}

#[tokio::test]
async fn large_values_stream_through_both_ways() {
    let h = Harness::new().start().await;
    let c = h.client().await;
    // 20 MB: far past the relay's streaming threshold, in a Bind and in a DataRow.
    let blob: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let row = c
        .query_one(
            "SELECT $1::bytea, md5($1::bytea), length($1::bytea)",
            &[&blob],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vec<u8>>(0), blob);
    assert_eq!(row.get::<_, i32>(2), 20_000_000);
    let big_text = c
        .simple_query("SELECT repeat('x', 30000000)")
        .await
        .unwrap();
    let SimpleQueryMessage::Row(r) = &big_text[1] else {
        panic!("expected a row, got {big_text:?}")
    };
    assert_eq!(r.get(0).unwrap().len(), 30_000_000);
}

#[tokio::test]
async fn many_concurrent_sessions_are_independent() {
    let h = Harness::new().start().await;
    let results = future::join_all((0..20).map(|i| {
        let h = &h;
        async move {
            let c = h.client().await;
            let pid: i32 = c
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .unwrap()
                .get(0);
            let v: i32 = c
                .query_one("SELECT $1::int4 * 10", &[&i])
                .await
                .unwrap()
                .get(0);
            (pid, v)
        }
    }))
    .await;
    let mut pids: Vec<i32> = results.iter().map(|r| r.0).collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 20, "each session has its own server backend");
    assert_eq!(
        results.iter().map(|r| r.1).collect::<Vec<_>>(),
        (0..20).map(|i| i * 10).collect::<Vec<_>>()
    );
}
