//! One throwaway PostgreSQL per test binary; a fresh database per test.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use pgward::localpg::LocalPostgres;

/// The superuser password of the test cluster.
pub const SUPERUSER_PASSWORD: &str = "pgward-test-superuser";

static SERVER: OnceLock<LocalPostgres> = OnceLock::new();
/// The test server's self-signed certificate (PEM), valid for 127.0.0.1 and localhost.
static SERVER_CERT: OnceLock<String> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(1);

/// The shared server, started on first use, with TLS available (plaintext too).
pub fn server() -> &'static LocalPostgres {
    SERVER.get_or_init(|| {
        let mut pg = match LocalPostgres::start(SUPERUSER_PASSWORD) {
            Ok(pg) => pg,
            Err(e) => panic!("cannot start the test PostgreSQL: {e}"),
        };
        let cert = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("server certificate");
        pg.enable_ssl(&cert.cert.pem(), &cert.signing_key.serialize_pem())
            .expect("enable TLS on the test server");
        let _ = SERVER_CERT.set(cert.cert.pem());
        pg
    })
}

/// The test server's certificate, to trust it as a CA.
pub fn server_cert_pem() -> &'static str {
    server();
    SERVER_CERT.get().map(String::as_str).unwrap_or_default()
}

/// A superuser connection straight to the server (bypassing pgward).
pub async fn direct(database: &str) -> tokio_postgres::Client {
    let (client, conn) =
        tokio_postgres::connect(&server().conninfo(database), tokio_postgres::NoTls)
            .await
            .expect("direct connection to the test server");
    tokio::spawn(conn);
    client
}

/// Creates an empty database for one test and returns its name.
pub async fn fresh_database() -> String {
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    direct("postgres")
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    name
}

/// Rows in `table` of `database`, counted on a direct connection.
pub async fn count(database: &str, table: &str) -> i64 {
    direct(database)
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

/// Waits until the server is running `query` in `database` (bounded by `assert_eventually!`).
pub async fn wait_until_running(database: &str, query: &str) {
    let observer = direct(database).await;
    crate::assert_eventually!(
        observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'",
                &[&query]
            )
            .await
            .expect("pg_stat_activity")
            .get::<_, i64>(0)
            == 1,
        format!("`{query}` to run")
    );
}
