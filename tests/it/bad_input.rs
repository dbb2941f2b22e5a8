//! Bad input: each case gets PostgreSQL's answer or a clean close, and the proxy keeps serving.

use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::support::wire::{self, RawClient, sqlstate};
use crate::support::{Harness, harness, pg};

async fn logged_in(h: &crate::support::Running) -> RawClient {
    let mut raw = RawClient::connect(h.addr).await;
    raw.login(harness::USER, harness::PASSWORD, &h.database)
        .await;
    raw
}

/// Reads to EOF and returns the SQLSTATEs of the ErrorResponses seen.
async fn errors_until_close(raw: &mut RawClient) -> Vec<String> {
    let mut codes = Vec::new();
    while let Some((tag, body)) = raw.read_msg().await {
        if tag == b'E' {
            codes.push(sqlstate(&body));
        }
    }
    codes
}

#[tokio::test]
async fn a_length_below_four_is_a_fatal_protocol_violation() {
    let h = Harness::new().start().await;
    let bystander = h.client().await;
    let mut raw = logged_in(&h).await;
    raw.send(&[b'Q', 0, 0, 0, 3]).await;
    assert_eq!(errors_until_close(&mut raw).await, ["08P01"]);
    assert_eq!(
        bystander
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn an_oversized_frame_is_refused_from_its_header() {
    let h = Harness::new()
        .config("max_message_bytes = 65536")
        .start()
        .await;
    let mut raw = logged_in(&h).await;
    // Only the header: pgward must refuse without waiting for (or allocating) the body.
    let mut header = vec![b'Q'];
    header.extend_from_slice(&(10_000_000i32).to_be_bytes());
    raw.send(&header).await;
    assert_eq!(errors_until_close(&mut raw).await, ["08P01"]);
    h.client().await.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn a_truncated_frame_then_disconnect_leaves_the_proxy_serving() {
    let h = Harness::new().start().await;
    let mut raw = logged_in(&h).await;
    let q = wire::query("SELECT 1");
    raw.send(&q[..q.len() - 3]).await;
    drop(raw);
    h.client().await.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn bad_startup_packets_get_postgres_answers() {
    let h = Harness::new().start().await;
    // Length outside 8..=10000.
    for len in [3i32, 20_000, -1] {
        let mut raw = RawClient::connect(h.addr).await;
        raw.send(&len.to_be_bytes()).await;
        raw.send(&[0u8; 8]).await;
        assert_eq!(
            errors_until_close(&mut raw).await,
            ["08P01"],
            "length {len}"
        );
    }
    // Protocol 2.0.
    let mut raw = RawClient::connect(h.addr).await;
    raw.send(&wire::untyped(2 << 16, b"user\0alice\0\0")).await;
    assert_eq!(errors_until_close(&mut raw).await, ["0A000"]);
    // No user.
    let mut raw = RawClient::connect(h.addr).await;
    raw.send(&wire::startup(0, &[("database", "x")])).await;
    assert_eq!(errors_until_close(&mut raw).await, ["08P01"]);
    // Replication.
    let mut raw = RawClient::connect(h.addr).await;
    raw.send(&wire::startup(
        0,
        &[("user", "alice"), ("replication", "database")],
    ))
    .await;
    assert_eq!(errors_until_close(&mut raw).await, ["28000"]);
}

#[tokio::test]
async fn a_startup_that_never_completes_times_out() {
    let h = Harness::new()
        .config("startup_timeout = \"1s\"")
        .start()
        .await;
    let mut raw = RawClient::connect(h.addr).await;
    raw.send(&[0, 0, 0]).await;
    // The connection is closed by pgward; read_msg panics after 20 s if it is not.
    assert!(raw.read_msg().await.is_none());
}

#[tokio::test]
async fn gssenc_and_ssl_requests_are_declined_when_tls_is_off() {
    let h = Harness::new().start().await;
    let mut raw = RawClient::connect(h.addr).await;
    raw.send(&wire::untyped(80_877_104, b"")).await;
    assert_eq!(raw.read_byte().await, b'N');
    raw.send(&wire::untyped(80_877_103, b"")).await;
    assert_eq!(raw.read_byte().await, b'N');
    raw.send(&wire::startup(
        0,
        &[("user", harness::USER), ("database", &h.database)],
    ))
    .await;
    raw.scram(harness::PASSWORD).await;
    let msgs = raw.read_until_ready().await;
    assert_eq!(msgs.last().unwrap().0, b'Z');
}

#[tokio::test]
async fn a_newer_minor_protocol_is_negotiated_down() {
    let h = Harness::new().start().await;
    let mut raw = RawClient::connect(h.addr).await;
    raw.send(&wire::startup(
        2,
        &[
            ("user", harness::USER),
            ("database", &h.database),
            ("_pq_.future_option", "on"),
        ],
    ))
    .await;
    let (tag, body) = raw.read_msg().await.unwrap();
    assert_eq!(tag, b'v');
    assert_eq!(
        &body[..8],
        &[0, 0, 0, 0, 0, 0, 0, 1],
        "newest minor 0, one unsupported option"
    );
    assert_eq!(&body[8..], b"_pq_.future_option\0");
    raw.scram(harness::PASSWORD).await;
    raw.read_until_ready().await;
    raw.send(&wire::query("SELECT 1")).await;
    assert!(raw.read_until_ready().await.iter().any(|(t, _)| *t == b'D'));
}

#[tokio::test]
async fn unknown_cancel_keys_are_ignored() {
    let h = Harness::new().start().await;
    let mut raw = RawClient::connect(h.addr).await;
    raw.send(&wire::untyped(80_877_102, &[0, 0, 0, 1, 0, 0, 0, 2]))
        .await;
    assert!(raw.read_msg().await.is_none(), "closed without a reply");
}

#[tokio::test]
async fn a_client_vanishing_mid_query_leaves_the_proxy_serving() {
    let h = Harness::new().start().await;
    let mut raw = logged_in(&h).await;
    raw.send(&wire::query("SELECT pg_sleep(0.3)")).await;
    drop(raw);
    let c = h.client().await;
    assert_eq!(
        c.query_one("SELECT 5", &[]).await.unwrap().get::<_, i32>(0),
        5
    );
}

#[tokio::test]
async fn a_server_ending_the_session_is_relayed_and_others_go_on() {
    let h = Harness::new().start().await;
    let victim = h.client().await;
    let bystander = h.client().await;
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    pg::direct(&h.database)
        .await
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    crate::assert_eventually!(
        victim.is_closed() || victim.simple_query("SELECT 1").await.is_err(),
        "victim to fail"
    );
    let err = victim.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        err.is_closed() || err.code() == Some(&SqlState::ADMIN_SHUTDOWN),
        "{err:?}"
    );
    assert_eq!(
        bystander
            .query_one("SELECT 6", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        6
    );
    h.client().await.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn the_server_terminating_a_session_reaches_the_client_as_57p01() {
    let h = Harness::new().start().await;
    let mut raw = logged_in(&h).await;
    raw.send(&wire::query("SELECT pg_backend_pid()")).await;
    let reply = raw.read_until_ready().await;
    let row = reply.iter().find(|(t, _)| *t == b'D').unwrap().1.clone();
    let pid: i32 = String::from_utf8_lossy(&row[6..]).parse().unwrap();
    pg::direct(&h.database)
        .await
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    assert_eq!(errors_until_close(&mut raw).await, ["57P01"]);
}

#[tokio::test]
async fn an_unreachable_upstream_gives_08001_and_no_panic() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let h = Harness::new().upstream_port(closed_port).start().await;
    // Twice: the listener is still up after the first failure.
    for _ in 0..2 {
        let err = h
            .client_as(harness::USER, harness::PASSWORD)
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION)
        );
    }
}

#[tokio::test]
async fn function_call_messages_pass_through() {
    let h = Harness::new().start().await;
    let mut raw = logged_in(&h).await;
    // FunctionCall of int4pl (oid 177) with two text-format arguments, text result.
    let mut body = Vec::new();
    body.extend_from_slice(&177i32.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&2i16.to_be_bytes());
    for arg in [&b"40"[..], b"2"] {
        body.extend_from_slice(&(arg.len() as i32).to_be_bytes());
        body.extend_from_slice(arg);
    }
    body.extend_from_slice(&0i16.to_be_bytes());
    raw.send(&wire::frame(b'F', &body)).await;
    let reply = raw.read_until_ready().await;
    let (tag, result) = &reply[0];
    assert_eq!(*tag, b'V');
    assert_eq!(&result[4..], b"42");
}

#[tokio::test]
async fn pipelined_raw_frames_split_at_every_boundary_still_work() {
    let h = Harness::new().start().await;
    let mut raw = logged_in(&h).await;
    let batch: Vec<u8> = [
        wire::query("SELECT 1"),
        wire::query("SELECT 2"),
        wire::query("SELECT 3"),
    ]
    .concat();
    // Dribble the batch a few bytes at a time so frames straddle reads.
    for chunk in batch.chunks(3) {
        raw.send(chunk).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut values = Vec::new();
    for _ in 0..3 {
        for (t, b) in raw.read_until_ready().await {
            if t == b'D' {
                values.push(String::from_utf8_lossy(&b[6..]).into_owned());
            }
        }
    }
    assert_eq!(values, ["1", "2", "3"]);
}
