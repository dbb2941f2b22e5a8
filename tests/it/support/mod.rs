//! Shared test support: a throwaway PostgreSQL, pgward in-process, raw-frame helpers.

pub mod harness;
pub mod jwks;
pub mod pg;
pub mod process;
pub mod wire;

pub use harness::{Harness, Running};

/// The FATAL a client got for a refused connection: its SQLSTATE and message.
pub fn fatal(e: &tokio_postgres::Error) -> (tokio_postgres::error::SqlState, String) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("a server error, got {e}"));
    assert_eq!(db.severity(), "FATAL");
    (db.code().clone(), db.message().to_owned())
}

/// Runs `psql -X -A -t -w -c SQL` on `conninfo` (with extra environment variables) and
/// returns its output, trimmed; panics with psql's stderr when it fails.
pub async fn psql_value(
    conninfo: String,
    sql: &'static str,
    env: Vec<(&'static str, String)>,
) -> String {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("psql")
            .arg(conninfo)
            .args(["-X", "-A", "-t", "-w", "-c", sql])
            .envs(env)
            .env_remove("PGSERVICE")
            .output()
            .expect("psql runs")
    })
    .await
    .expect("psql task");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Waits for a condition, polling, for at most ten seconds; panics with `what` otherwise.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $what:expr) => {{
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if $cond {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {}",
                $what
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}
