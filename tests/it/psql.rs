//! psql, the reference client of the simple protocol, through pgward.

use std::process::Command;

use crate::support::{Harness, harness};

fn psql(h: &crate::support::Running, args: &[&str]) -> std::process::Output {
    Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user={} dbname={} sslmode=disable",
            h.addr.port(),
            harness::USER,
            h.database
        ))
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .env("PGPASSWORD", harness::PASSWORD)
        .env_remove("PGSERVICE")
        .output()
        .expect("psql runs")
}

#[tokio::test]
async fn psql_runs_scripts_and_copies() {
    let h = std::sync::Arc::new(Harness::new().start().await);
    let h2 = h.clone();
    let out = tokio::task::spawn_blocking(move || {
        psql(
            &h2,
            &[
                "-c",
                "CREATE TABLE n (i int)",
                "-c",
                "INSERT INTO n SELECT generate_series(1, 100)",
                "-c",
                "\\copy n TO STDOUT",
                "-c",
                "SELECT sum(i) FROM n",
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 101, "{stdout}");
    assert_eq!(lines[0], "1");
    assert_eq!(lines[100], "5050");
}

#[tokio::test]
async fn psql_reports_server_errors() {
    let h = std::sync::Arc::new(Harness::new().start().await);
    let h2 = h.clone();
    let out =
        tokio::task::spawn_blocking(move || psql(&h2, &["-c", "SELECT * FROM no_such_table"]))
            .await
            .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("relation \"no_such_table\" does not exist")
    );
}
