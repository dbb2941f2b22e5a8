//! The README's first command: `pgward demo` serves the sample data through pgward with the
//! example rules, and stops cleanly.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_postgres::error::SqlState;

async fn connect(conninfo: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .expect("connect to the demo");
    tokio::spawn(conn);
    client
}

#[tokio::test]
async fn the_demo_serves_sample_data_under_the_example_rules_and_stops_on_sigterm() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgward"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("pgward demo starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // The demo prints the exact psql command; take its connection string.
    let conninfo = loop {
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .expect("the demo prints its psql command in time")
            .expect("stdout readable")
            .expect("the demo is still running");
        if let Some(start) = line.find("\"host=") {
            let rest = &line[start + 1..];
            break rest[..rest.find('"').expect("closing quote")].to_owned();
        }
    };

    let alice = connect(&format!("{conninfo} password=alice-demo")).await;
    let people: i64 = alice
        .query_one("SELECT count(*) FROM people", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(people, 200);

    let agent = connect(&format!(
        "{} password=agent-demo",
        conninfo.replace("user=alice", "user=agent-7")
    ))
    .await;
    let e = agent
        .batch_execute("DELETE FROM payments")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("agent-no-other-writes"),
        "{e:?}"
    );
    let payments: i64 = agent
        .query_one("SELECT count(*) FROM payments", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(payments, 500);

    let pid = child.id().expect("pid").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the demo stops")
        .unwrap();
    assert!(status.success(), "{status:?}");
}
