//! Client authentication: SCRAM against the identities file, one answer for every failure.

use tokio_postgres::error::SqlState;

use crate::support::wire::{self, RawClient};
use crate::support::{Harness, harness};

#[tokio::test]
async fn right_password_connects_and_the_client_never_sees_the_upstream_login() {
    let h = Harness::new()
        .identity("agent-7", "agent-pw", &["agent"])
        .start()
        .await;
    let c = h.client_as("agent-7", "agent-pw").await.unwrap();
    // The server session runs as pgward's upstream user, whatever the client's identity.
    let user: String = c
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "postgres");
}

#[tokio::test]
async fn wrong_password_and_unknown_identity_get_the_same_fatal() {
    let h = Harness::new().start().await;
    let wrong = h
        .client_as(harness::USER, "not-the-password")
        .await
        .unwrap_err();
    let unknown = h.client_as("mallory", "whatever").await.unwrap_err();
    for e in [&wrong, &unknown] {
        let db = e.as_db_error().expect("a server error");
        assert_eq!(db.code(), &SqlState::INVALID_PASSWORD);
        assert_eq!(db.severity(), "FATAL");
    }
    let shape = |e: &tokio_postgres::Error| {
        e.as_db_error()
            .unwrap()
            .message()
            .replace("mallory", "alice")
    };
    assert_eq!(shape(&wrong), shape(&unknown));
    // Failures leave the proxy serving.
    h.client().await.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_sasl_does_not_disturb_others() {
    let h = Harness::new().start().await;
    let mut raw = RawClient::connect(h.addr).await;
    raw.send(&wire::startup(
        0,
        &[("user", harness::USER), ("database", &h.database)],
    ))
    .await;
    let (tag, _) = raw.read_msg().await.unwrap();
    assert_eq!(tag, b'R');
    drop(raw);
    h.client().await.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn unknown_database_gets_the_servers_own_error() {
    let h = Harness::new().start().await;
    let conninfo = h
        .conninfo(harness::USER, harness::PASSWORD)
        .replace(&h.database, "no_such_db");
    let Err(err) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await else {
        panic!("connected to a database that does not exist")
    };
    assert_eq!(err.code(), Some(&SqlState::INVALID_CATALOG_NAME));
}

#[tokio::test]
async fn backend_key_carries_the_server_pid_and_pgwards_own_secret() {
    let h = Harness::new().start().await;
    let mut raw = RawClient::connect(h.addr).await;
    let after_auth = raw
        .login(harness::USER, harness::PASSWORD, &h.database)
        .await;
    let key = after_auth
        .iter()
        .find(|(t, _)| *t == b'K')
        .expect("BackendKeyData")
        .1
        .clone();
    let pid = i32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    assert!(
        after_auth
            .iter()
            .any(|(t, b)| *t == b'S' && b.starts_with(b"server_version\0"))
    );
    raw.send(&wire::query("SELECT pg_backend_pid()")).await;
    let reply = raw.read_until_ready().await;
    let row = reply
        .iter()
        .find(|(t, _)| *t == b'D')
        .expect("a row")
        .1
        .clone();
    assert_eq!(String::from_utf8_lossy(&row[6..]), pid.to_string());
}
