//! Duty rules on the data path: refusals are ERROR 42501 naming the rule, keep PostgreSQL's
//! transaction semantics, and leave the session usable; rule changes reach live sessions.

use tokio_postgres::error::SqlState;

use crate::support::wire::{self, RawClient, sqlstate};
use crate::support::{Harness, Running, pg};

const RULES: &str = r#"
[roles.dba]
members = ["alice"]

[roles.agent]
members = ["agent-*"]

[[rules]]
id = "dba-everything"
roles = ["dba"]
classes = ["tx", "session", "read", "write", "ddl", "code", "privilege", "admin", "unknown"]
action = "allow"

[[rules]]
id = "agent-reads"
roles = ["agent"]
classes = ["read", "tx", "session"]
action = "allow"

[[rules]]
id = "agent-writes-items"
roles = ["agent"]
classes = ["write"]
tables = ["public.items"]
action = "allow"

[[rules]]
id = "agent-no-ddl"
roles = ["agent"]
classes = ["ddl"]
action = "deny"
"#;

const AGENT: &str = "agent-7";
const AGENT_PW: &str = "agent-pw";

async fn start(rules: &str) -> Running {
    let h = Harness::new()
        .identity(AGENT, AGENT_PW, &[])
        .rules(rules)
        .start()
        .await;
    pg::direct(&h.database)
        .await
        .batch_execute("CREATE TABLE items (id int); CREATE TABLE ledger (id int); INSERT INTO ledger VALUES (1), (2)")
        .await
        .unwrap();
    h
}

async fn count(h: &Running, table: &str) -> i64 {
    pg::count(&h.database, table).await
}

fn assert_refused(e: &tokio_postgres::Error, rule: &str) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e:?}"));
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{db:?}");
    assert!(
        db.message().contains(rule),
        "message {:?} does not name rule {rule}",
        db.message()
    );
    assert!(db.hint().is_some_and(|h| !h.is_empty()), "no hint: {db:?}");
}

#[tokio::test]
async fn a_denied_statement_names_its_rule_and_the_session_goes_on() {
    let h = start(RULES).await;
    let c = h.client_as(AGENT, AGENT_PW).await.unwrap();
    assert_refused(
        &c.batch_execute("CREATE TABLE x (id int)")
            .await
            .unwrap_err(),
        "agent-no-ddl",
    );
    assert_eq!(
        c.query_one("SELECT count(*) FROM ledger", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        2
    );
    // Extended protocol: refused at Parse.
    assert_refused(
        &c.prepare("DROP TABLE ledger").await.unwrap_err(),
        "agent-no-ddl",
    );
    assert_eq!(
        c.query_one("SELECT 41 + 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        42
    );
}

#[tokio::test]
async fn nothing_matched_is_denied_by_default() {
    let h = start(RULES).await;
    let c = h.client_as(AGENT, AGENT_PW).await.unwrap();
    assert_refused(
        &c.execute("DELETE FROM ledger", &[]).await.unwrap_err(),
        "default-deny",
    );
    assert_refused(
        &c.batch_execute("DELETE FROM ledger").await.unwrap_err(),
        "default-deny",
    );
    assert_eq!(count(&h, "ledger").await, 2);
    // Allowed writes still work.
    assert_eq!(
        c.execute("INSERT INTO items VALUES (1)", &[])
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn unclassifiable_text_is_refused_not_sent() {
    let h = start(RULES).await;
    let c = h.client_as(AGENT, AGENT_PW).await.unwrap();
    // The server would answer 42601; pgward refuses first, because it cannot classify it.
    assert_refused(
        &c.batch_execute("FROBNICATE ledger").await.unwrap_err(),
        "default-deny",
    );
    // The dba's rules allow `unknown`, so the server's own syntax error comes back.
    let dba = h.client().await;
    let e = dba.batch_execute("FROBNICATE ledger").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::SYNTAX_ERROR));
}

#[tokio::test]
async fn a_refused_statement_runs_nothing_of_its_batch() {
    let h = start(RULES).await;
    let c = h.client_as(AGENT, AGENT_PW).await.unwrap();
    let e = c
        .batch_execute("INSERT INTO items VALUES (1); COMMIT; DELETE FROM ledger")
        .await
        .unwrap_err();
    assert_refused(&e, "default-deny");
    assert_eq!(count(&h, "items").await, 0);
    assert_eq!(count(&h, "ledger").await, 2);
}

#[tokio::test]
async fn a_pipeline_with_a_refused_message_rolls_back_as_one() {
    let h = start(RULES).await;
    let mut raw = RawClient::connect(h.addr).await;
    raw.login(AGENT, AGENT_PW, &h.database).await;
    let pipeline = [
        wire::unnamed_step("INSERT INTO items VALUES (1)"),
        wire::unnamed_step("DELETE FROM ledger"),
        wire::sync(),
    ]
    .concat();
    raw.send(&pipeline).await;
    let replies = raw.read_until_ready().await;
    let tags: Vec<u8> = replies.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        tags, b"12CEZ",
        "ParseComplete, BindComplete, CommandComplete, ErrorResponse, ReadyForQuery"
    );
    assert_eq!(sqlstate(&replies[3].1), "42501");
    assert_eq!(
        replies[4].1[0], b'I',
        "the failed implicit transaction is over"
    );
    assert_eq!(
        count(&h, "items").await,
        0,
        "the allowed INSERT of the pipeline was rolled back"
    );
    assert_eq!(count(&h, "ledger").await, 2);
    raw.send(&wire::query("SELECT 1")).await;
    assert!(raw.read_until_ready().await.iter().any(|(t, _)| *t == b'D'));
}

#[tokio::test]
async fn a_refusal_aborts_the_transaction_block() {
    let h = start(RULES).await;
    let c = h.client_as(AGENT, AGENT_PW).await.unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    c.execute("INSERT INTO items VALUES (1)", &[])
        .await
        .unwrap();
    c.query_one("SELECT 1", &[]).await.unwrap();
    assert_refused(
        &c.execute("DELETE FROM ledger", &[]).await.unwrap_err(),
        "default-deny",
    );
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        "the server's block is aborted"
    );
    c.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        count(&h, "items").await,
        0,
        "COMMIT of an aborted block commits nothing"
    );
    assert_eq!(
        c.query_one("SELECT 7", &[]).await.unwrap().get::<_, i32>(0),
        7
    );
}

#[tokio::test]
async fn psql_shows_the_refusal() {
    let h = start(RULES).await;
    let conninfo = h.conninfo(AGENT, AGENT_PW);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("psql")
            .args([
                &conninfo,
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "TRUNCATE ledger",
            ])
            .env("PGPASSWORD", AGENT_PW)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("agent-no-ddl") && stderr.contains("HINT"),
        "{stderr}"
    );
    assert_eq!(count(&h, "ledger").await, 2);
}

#[tokio::test]
async fn rule_changes_reach_live_sessions_and_bad_files_are_not_loaded() {
    let h = start(RULES).await;
    let c = h.client_as(AGENT, AGENT_PW).await.unwrap();
    let stmt = c.prepare("SELECT count(*) FROM ledger").await.unwrap();
    assert_refused(
        &c.batch_execute("DELETE FROM ledger WHERE id = 1")
            .await
            .unwrap_err(),
        "default-deny",
    );

    // A broken file is refused; the last good rules stay in force.
    let rules_file = h.dir.path().join("rules/main.toml");
    std::fs::write(&rules_file, "this is = not [valid toml").unwrap();
    crate::assert_eventually!(
        h.rules().last_error().is_some(),
        "the broken rules to be rejected"
    );
    assert_eq!(c.query_one(&stmt, &[]).await.unwrap().get::<_, i64>(0), 2);

    // Allow writes to the ledger: the same session's next statement is allowed.
    let more = format!(
        "{RULES}\n[[rules]]\nid = \"agent-writes-ledger\"\nroles = [\"agent\"]\nclasses = [\"write\"]\ntables = [\"public.ledger\"]\naction = \"allow\"\n"
    );
    std::fs::write(&rules_file, more).unwrap();
    crate::assert_eventually!(
        c.batch_execute("DELETE FROM ledger WHERE id = 1")
            .await
            .is_ok(),
        "the new rule to apply"
    );
    assert_eq!(count(&h, "ledger").await, 1);

    // Withdraw reads: the statement prepared earlier is refused at its next execution.
    let no_reads = RULES.replace(
        "classes = [\"read\", \"tx\", \"session\"]",
        "classes = [\"tx\", \"session\"]",
    );
    std::fs::write(&rules_file, no_reads).unwrap();
    crate::assert_eventually!(
        c.query_one(&stmt, &[]).await.is_err(),
        "reads to be withdrawn"
    );
    assert_refused(&c.query_one(&stmt, &[]).await.unwrap_err(), "default-deny");
    assert!(
        h.rules().last_error().is_none(),
        "a good reload clears the error"
    );

    // The directory emptied while running: refused as a rule set, the last good one stays.
    std::fs::remove_file(&rules_file).unwrap();
    crate::assert_eventually!(
        h.rules().last_error().is_some(),
        "the empty directory to be rejected"
    );
    c.batch_execute("BEGIN; COMMIT").await.unwrap();
    assert_refused(&c.query_one(&stmt, &[]).await.unwrap_err(), "default-deny");
}

#[tokio::test]
async fn a_refusal_skipped_after_an_earlier_error_does_not_mislabel_the_next_one() {
    let h = start(RULES).await;
    let mut raw = RawClient::connect(h.addr).await;
    raw.login(AGENT, AGENT_PW, &h.database).await;
    // The server fails first (division by zero) and skips the rest of the pipeline, including
    // the replacement of the refused DELETE: that refusal never produces an error of its own.
    raw.send(
        &[
            wire::unnamed_step("SELECT 1/0"),
            wire::unnamed_step("DELETE FROM ledger"),
            wire::sync(),
        ]
        .concat(),
    )
    .await;
    let replies = raw.read_until_ready().await;
    let errors = wire::error_codes(&replies);
    assert_eq!(errors, ["22012"]);
    // The next refusal is reported under its own rule, not the skipped one's.
    raw.send(&wire::query("TRUNCATE ledger")).await;
    let replies = raw.read_until_ready().await;
    let (_, err) = replies.iter().find(|(t, _)| *t == b'E').expect("an error");
    assert_eq!(sqlstate(err), "42501");
    assert!(
        wire::field(err, b'M').contains("agent-no-ddl"),
        "{:?}",
        wire::field(err, b'M')
    );
    assert_eq!(count(&h, "ledger").await, 2);
}

#[tokio::test]
async fn startup_settings_are_judged_like_the_set_they_amount_to() {
    let h = start(RULES).await;
    // search_path and role through `options`, or any GUC as a startup parameter: privilege.
    for extra in [
        ("options", "-c search_path=evil,pg_catalog"),
        ("options", "-c role=postgres"),
        ("search_path", "evil"),
    ] {
        // pgward judges settings once the identity is authenticated, before the server is contacted.
        let mut errors = Vec::new();
        let mut raw = RawClient::connect(h.addr).await;
        raw.send(&wire::startup(
            0,
            &[("user", AGENT), ("database", &h.database), extra],
        ))
        .await;
        raw.scram_expecting_refusal(AGENT_PW, &mut errors).await;
        assert_eq!(errors, ["42501"], "{extra:?}");
    }
    // Ordinary driver settings pass (tokio-postgres sends client_encoding, DateStyle, TimeZone).
    h.client_as(AGENT, AGENT_PW)
        .await
        .unwrap()
        .simple_query("SELECT 1")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_client_encoding_the_lexer_cannot_read_makes_every_statement_unknown() {
    // `encoder` may change settings (privilege) but not run what pgward cannot classify.
    let rules = format!(
        "{RULES}\n[roles.encoder]\nmembers = [\"enc-*\"]\n\n[[rules]]\nid = \"encoder-reads-and-settings\"\nroles = [\"encoder\"]\nclasses = [\"read\", \"tx\", \"session\", \"privilege\"]\naction = \"allow\"\n"
    );
    let h = Harness::new()
        .identity("enc-1", "enc-pw", &[])
        .rules(&rules)
        .start()
        .await;
    pg::direct(&h.database)
        .await
        .batch_execute("CREATE TABLE ledger (id int); INSERT INTO ledger VALUES (1), (2)")
        .await
        .unwrap();
    let mut raw = RawClient::connect(h.addr).await;
    raw.login("enc-1", "enc-pw", &h.database).await;
    // The SET is allowed and runs; pipelined behind it, before the server has answered, comes a
    // text that in UTF-8 is one SELECT whose E'' string swallows "; DELETE …" but in SJIS is
    // E3 81 82 5C — two characters, no backslash — so the DELETE would run.
    let mut attack = b"SELECT E'\xE3\x81\x82\\' ; DELETE FROM ledger; --'".to_vec();
    attack.push(0);
    raw.send(
        &[
            wire::query("SET client_encoding = 'SJIS'"),
            wire::frame(b'Q', &attack),
        ]
        .concat(),
    )
    .await;
    assert!(
        raw.read_until_ready().await.iter().all(|(t, _)| *t != b'E'),
        "the SET runs"
    );
    let replies = raw.read_until_ready().await;
    let errors = wire::error_codes(&replies);
    assert_eq!(errors, ["42501"]);
    // Even a plain read is unknown now: the session's text can't be analyzed.
    raw.send(&wire::query("SELECT 1")).await;
    let replies = raw.read_until_ready().await;
    assert!(
        replies
            .iter()
            .any(|(t, b)| *t == b'E' && sqlstate(b) == "42501")
    );
    assert_eq!(count(&h, "ledger").await, 2);

    // Another session of the same identity is unaffected.
    let c = h.client_as("enc-1", "enc-pw").await.unwrap();
    assert_eq!(
        c.query_one("SELECT count(*) FROM ledger", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        2
    );
}
