//! Masking on the data path: what an agent sees of PII through pgward, by every route a value
//! can take to the client (simple and extended protocol, text and binary, computed columns,
//! views, COPY), and what it is refused.

use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::error::SqlState;

use crate::support::{Harness, Running, pg};

pub const RULES: &str = r#"
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
id = "agent-works"
roles = ["agent"]
classes = ["read", "write", "tx", "session", "ddl"]
action = "allow"

[[masks]]
roles = ["agent"]
columns = ["public.people.ssn"]
strategy = "partial"
keep_last = 4

[[masks]]
roles = ["agent"]
columns = ["public.people.email"]
strategy = "email"

[[masks]]
roles = ["agent"]
columns = ["public.people.phone"]
strategy = "redact"

[[masks]]
roles = ["agent"]
columns = ["public.people.score"]
strategy = "null"

[[masks]]
roles = ["agent"]
columns = ["public.people.card"]
strategy = "hash"

[[masks]]
roles = ["agent"]
columns = ["public.people.nickname"]
strategy = "fake"

[[masks]]
roles = ["agent"]
columns = ["public.people.city"]
strategy = "redact"
allow_inference = true

[[masks]]
roles = ["agent"]
columns = ["public.cards.card_number"]
strategy = "partial"
keep_last = 4

[[masks]]
roles = ["agent"]
columns = ["public.profiles.doc", "public.profiles.tags"]
strategy = "redact"

[[masks]]
roles = ["agent"]
columns = ["hr.employees.tax_id"]
strategy = "hash"

[[masks]]
roles = ["agent"]
columns = ["public.Staff.SSN"]
strategy = "redact"
"#;

pub const SCHEMA: &str = "
CREATE TABLE people (id int PRIMARY KEY, name text, ssn text, email varchar(80), phone text,
    score int, card text, nickname text, city text);
INSERT INTO people VALUES
 (1, 'Ada',   '123-45-6789', 'ada@example.com',   '+1 555 0101', 713705, '4111111111111111', 'adster', 'Paris'),
 (2, 'Grace', '987-65-4321', 'grace@example.org', '+1 555 0102', 820931, '5500005555555559', 'amazing', 'Lyon'),
 (3, 'Alan',  NULL,          'alan@example.net',  NULL,          NULL, '4111111111111111', NULL, 'Nice');
CREATE TABLE notes (id int, body text);
CREATE VIEW people_view AS SELECT id, name, ssn AS national_id, upper(email) AS mail FROM people;
CREATE VIEW people_view2 AS SELECT id, national_id AS nid, lower(mail) AS m FROM people_view;
CREATE MATERIALIZED VIEW people_mv AS SELECT id, ssn, email FROM people;
CREATE TABLE cards (id int PRIMARY KEY, person_id int, card_number text, holder text);
INSERT INTO cards VALUES (1, 1, '378282246310005', 'Ada'), (2, 2, '6011111111111117', 'Grace');
CREATE TABLE profiles (id int PRIMARY KEY, doc jsonb, tags text[]);
INSERT INTO profiles VALUES
 (1, '{\"ssn\": \"078-05-1120\", \"mail\": \"joan@secret.test\"}', ARRAY['+44 20 7946 0958', 'vip']);
CREATE SCHEMA hr;
CREATE TABLE hr.employees (id int, tax_id text);
INSERT INTO hr.employees VALUES (1, 'TX-99887766');
CREATE TABLE \"Staff\" (id int, \"SSN\" text);
INSERT INTO \"Staff\" VALUES (1, '219-09-9999');
";

/// Raw values that must never reach an agent.
pub const SECRETS: &[&str] = &[
    "123-45-6789",
    "987-65-4321",
    "123-45",
    "987-65",
    "ada@example",
    "grace@example",
    "ADA@EXAMPLE",
    "555 0101",
    "555 0102",
    "4111111111111111",
    "5500005555555559",
    "adster",
    "amazing",
    "713705",
    "820931",
    "378282246310005",
    "6011111111111117",
    "078-05-1120",
    "joan@secret",
    "7946 0958",
    "TX-99887766",
    "219-09-9999",
];

pub const AGENT: &str = "agent-1";
pub const AGENT_PW: &str = "agent-pw";

pub async fn start() -> Running {
    let h = Harness::new()
        .identity(AGENT, AGENT_PW, &[])
        .rules(RULES)
        .start()
        .await;
    pg::direct(&h.database)
        .await
        .batch_execute(SCHEMA)
        .await
        .unwrap();
    h
}

/// Every cell of every row of a simple query, as text (NULL as "NULL").
pub async fn simple(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<Vec<Vec<String>>, tokio_postgres::Error> {
    let mut rows = Vec::new();
    for m in client.simple_query(sql).await? {
        if let SimpleQueryMessage::Row(r) = m {
            rows.push(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_owned())
                    .collect(),
            );
        }
    }
    Ok(rows)
}

pub fn assert_no_secret(sql: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{sql}: leaked {s:?} in {text:?}");
    }
}

fn code(e: &tokio_postgres::Error) -> Option<&SqlState> {
    e.as_db_error().map(|d| d.code())
}

#[tokio::test]
async fn direct_columns_are_masked_by_each_strategy() {
    let h = start().await;
    let agent = h.client_as(AGENT, AGENT_PW).await.unwrap();
    let rows = simple(
        &agent,
        "SELECT id, name, ssn, email, phone, score, card, nickname, city FROM people ORDER BY id",
    )
    .await
    .unwrap();
    assert_eq!(rows[0][1], "Ada", "unmasked columns pass");
    assert_eq!(rows[0][2], "***6789", "partial keeps the last 4");
    assert_eq!(rows[0][3], "***@example.com", "email keeps the domain");
    assert_eq!(rows[0][4], "***", "redact");
    assert_eq!(rows[0][5], "NULL", "null");
    assert_eq!(
        rows[0][6].len(),
        pgward::mask::HASH_HEX_LEN,
        "hash is hex: {}",
        rows[0][6]
    );
    assert_eq!(
        rows[0][6], rows[2][6],
        "hash is deterministic: equal stays equal"
    );
    assert_ne!(rows[0][6], rows[1][6]);
    assert_eq!(rows[0][7].len(), "adster".len(), "fake keeps the shape");
    assert_ne!(rows[0][7], "adster");
    assert_eq!(rows[0][8], "***");
    assert_eq!(rows[2][2], "NULL", "NULL stays NULL");
    assert_no_secret("select", &format!("{rows:?}"));

    // The DBA sees everything.
    let dba = h.client_as("alice", "alice-pw").await.unwrap();
    let rows = simple(&dba, "SELECT ssn FROM people WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(rows[0][0], "123-45-6789");
}

#[tokio::test]
async fn extended_protocol_binary_prepared_once_executed_many_times() {
    let h = start().await;
    let agent = h.client_as(AGENT, AGENT_PW).await.unwrap();
    // tokio-postgres prepares (Parse + Describe), then binds with binary result formats.
    let stmt = agent
        .prepare("SELECT name, ssn, score, email FROM people WHERE id = $1")
        .await
        .unwrap();
    for _ in 0..3 {
        let row = agent.query_one(&stmt, &[&1i32]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "Ada");
        assert_eq!(row.get::<_, String>(1), "***6789");
        assert_eq!(row.get::<_, Option<i32>>(2), None, "a binary int is nulled");
        assert_eq!(row.get::<_, String>(3), "***@example.com");
    }
    // Unprepared (the unnamed statement), pipelined.
    let (a, b) = tokio::join!(
        agent.query("SELECT ssn FROM people ORDER BY id", &[]),
        agent.query("SELECT upper(ssn) AS s FROM people ORDER BY id", &[]),
    );
    // An error in one pipelined statement leaves the others' results planned and masked.
    let (bad, good, again) = tokio::join!(
        agent.query("SELECT 1 / 0", &[]),
        agent.query("SELECT name, ssn FROM people WHERE id = 1", &[]),
        agent.query("SELECT name, id FROM people WHERE id = 2", &[]),
    );
    assert_eq!(code(&bad.unwrap_err()), Some(&SqlState::DIVISION_BY_ZERO));
    let good = good.unwrap();
    assert_eq!(
        (good[0].get::<_, String>(0), good[0].get::<_, String>(1)),
        ("Ada".to_owned(), "***6789".to_owned())
    );
    assert_eq!(again.unwrap()[0].get::<_, String>(0), "Grace");
    let a: Vec<Option<String>> = a.unwrap().iter().map(|r| r.get(0)).collect();
    let b: Vec<Option<String>> = b.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(a[0].as_deref(), Some("***6789"));
    assert_no_secret("pipelined", &format!("{a:?}{b:?}"));
}

#[tokio::test]
async fn prepared_statements_stay_masked_across_ddl_and_rule_reloads() {
    let h = start().await;
    let agent = h.client_as(AGENT, AGENT_PW).await.unwrap();
    let stmt = agent
        .prepare("SELECT name, ssn FROM people WHERE id = 1")
        .await
        .unwrap();
    let row = agent.query_one(&stmt, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(1), "***6789");
    // DDL through pgward drops cached column origins; the statement is planned again.
    agent
        .batch_execute("CREATE TABLE scratch (x int)")
        .await
        .unwrap();
    let row = agent.query_one(&stmt, &[]).await.unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("Ada".to_owned(), "***6789".to_owned())
    );
    // A rule change reaches the prepared statement at its next execution.
    let stricter = RULES.replace(
        "strategy = \"partial\"\nkeep_last = 4",
        "strategy = \"redact\"",
    );
    std::fs::write(h.dir.path().join("rules/main.toml"), stricter).unwrap();
    assert!(h.rules().reload());
    let row = agent.query_one(&stmt, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(1), "***");
}

#[tokio::test]
async fn computed_columns_views_ctes_and_unions_are_masked() {
    let h = start().await;
    let agent = h.client_as(AGENT, AGENT_PW).await.unwrap();
    for sql in [
        "SELECT upper(ssn) FROM people",
        "SELECT ssn || '' AS s FROM people",
        "SELECT substr(ssn, 1, 6) FROM people",
        "SELECT row_to_json(p) FROM people p",
        "SELECT to_jsonb(p.*) FROM people p",
        "SELECT json_agg(p) FROM people p",
        "SELECT string_agg(ssn, ',') FROM people",
        "SELECT array_agg(email)::text FROM people",
        "SELECT p FROM people p",
        "SELECT * FROM people_view",
        "SELECT national_id, mail FROM people_view",
        "WITH x AS (SELECT ssn AS s FROM people) SELECT s FROM x",
        "SELECT s FROM (SELECT ssn AS s FROM people) sub",
        "SELECT name FROM people UNION ALL SELECT ssn FROM people",
        "SELECT (SELECT ssn FROM people WHERE id = 1)",
        "SELECT coalesce(phone, email) FROM people",
        "SELECT greatest(city, name) FROM people",
        "SELECT CASE WHEN id = 1 THEN card ELSE nickname END FROM people",
        "SELECT * FROM people",
        "TABLE people",
        "SELECT * FROM people p JOIN people q USING (id)",
    ] {
        let rows = simple(&agent, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        assert!(!rows.is_empty(), "{sql}: no rows");
        assert_no_secret(sql, &format!("{rows:?}"));
        // The same through the extended protocol (binary formats).
        let rows = agent
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let text = rows
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        r.try_get::<_, Option<String>>(i)
                            .ok()
                            .flatten()
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_no_secret(sql, &text);
    }
}

#[tokio::test]
async fn predicates_on_masked_columns_are_refused_unless_allowed() {
    let h = start().await;
    let agent = h.client_as(AGENT, AGENT_PW).await.unwrap();
    for sql in [
        "SELECT name FROM people WHERE ssn LIKE '1%'",
        "SELECT name FROM people ORDER BY ssn",
        "SELECT count(*) FROM people GROUP BY email",
        "SELECT p.name FROM people p JOIN people q ON p.ssn = q.ssn",
        "SELECT name FROM people WHERE id IN (SELECT id FROM people WHERE card = '4111111111111111')",
        "UPDATE people SET name = name WHERE ssn = '123-45-6789'",
    ] {
        let e = agent.simple_query(sql).await.expect_err(sql);
        assert_eq!(
            code(&e),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {e}"
        );
        let db = e.as_db_error().unwrap();
        assert!(
            db.message().contains("mask rule"),
            "{sql}: {}",
            db.message()
        );
        assert!(db.hint().is_some(), "{sql}");
        // The session goes on.
        assert_eq!(simple(&agent, "SELECT 1").await.unwrap()[0][0], "1");
    }
    // allow_inference = true on the city rule.
    let rows = simple(&agent, "SELECT name FROM people WHERE city = 'Paris'")
        .await
        .unwrap();
    assert_eq!(rows, vec![vec!["Ada".to_owned()]]);
}

#[tokio::test]
async fn server_errors_that_may_quote_a_masked_value_are_withheld() {
    let h = start().await;
    let agent = h.client_as(AGENT, AGENT_PW).await.unwrap();
    // A cast of a masked column that may fail is refused before it runs (an oracle); the city
    // rule allows inference, so its cast reaches the server, whose error would quote the value.
    let e = agent
        .simple_query("SELECT ssn::int FROM people WHERE id = 1")
        .await
        .expect_err("an oracle");
    assert_eq!(code(&e), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
    let e = agent
        .simple_query("SELECT city::int FROM people WHERE id = 1")
        .await
        .expect_err("not an integer");
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code(), &SqlState::INVALID_TEXT_REPRESENTATION);
    assert!(db.message().contains("withheld"), "{}", db.message());
    assert!(!format!("{db:?}").contains("Paris"), "{db:?}");
    // Errors that can't quote data pass as the server wrote them; so do the DBA's.
    let e = agent
        .simple_query("SELECT nope FROM people")
        .await
        .unwrap_err();
    assert!(e.as_db_error().unwrap().message().contains("nope"), "{e}");
    let dba = h.client().await;
    let e = dba
        .simple_query("SELECT ssn::int FROM people WHERE id = 1")
        .await
        .unwrap_err();
    assert!(e.as_db_error().unwrap().message().contains("123-45-6789"));
}

#[tokio::test]
async fn writes_are_masked_in_returning_and_copies_refused() {
    let h = start().await;
    let agent = h.client_as(AGENT, AGENT_PW).await.unwrap();
    let rows = simple(
        &agent,
        "UPDATE people SET name = name WHERE id = 1 RETURNING ssn, email",
    )
    .await
    .unwrap();
    assert_eq!(
        rows[0],
        vec!["***6789".to_owned(), "***@example.com".to_owned()]
    );
    for sql in [
        "INSERT INTO notes SELECT id, ssn FROM people",
        "CREATE TABLE stolen AS SELECT ssn FROM people",
        "UPDATE notes SET body = (SELECT ssn FROM people WHERE id = 1)",
    ] {
        let e = agent.simple_query(sql).await.expect_err(sql);
        assert_eq!(
            code(&e),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {e}"
        );
    }
    assert_eq!(pg::count(&h.database, "notes").await, 0);
}

#[tokio::test]
async fn copy_to_stdout_is_masked_or_refused() {
    use futures::TryStreamExt;
    let h = start().await;
    let agent = h.client_as(AGENT, AGENT_PW).await.unwrap();
    for (sql, expect) in [
        ("COPY people TO STDOUT", "***6789"),
        (
            "COPY people (name, ssn) TO STDOUT WITH (FORMAT csv, HEADER)",
            "name,ssn\nAda,\"***6789\"",
        ),
        (
            "COPY (SELECT name, upper(ssn), email FROM people) TO STDOUT",
            "***",
        ),
        (
            "COPY people TO STDOUT WITH (FORMAT csv, DELIMITER ';')",
            "\"***6789\"",
        ),
    ] {
        // tokio-postgres sends COPY through the extended protocol.
        let stream = agent
            .copy_out(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
        let text = String::from_utf8(chunks.concat()).unwrap();
        assert!(text.contains(expect), "{sql}: {text}");
        assert_no_secret(sql, &text);
        assert!(text.contains("Ada"), "{sql}: unmasked columns pass: {text}");
    }
    let Err(e) = agent
        .copy_out("COPY people TO STDOUT WITH (FORMAT binary)")
        .await
    else {
        panic!("binary COPY of masked columns passed");
    };
    assert_eq!(code(&e), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
}

#[tokio::test]
async fn psql_sees_masked_rows_and_copies() {
    let h = std::sync::Arc::new(start().await);
    let h2 = std::sync::Arc::clone(&h);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("psql")
            .arg(h2.conninfo(AGENT, AGENT_PW))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-c",
                "SELECT name, ssn, email, phone FROM people ORDER BY id",
            ])
            .args([
                "-c",
                "\\copy (SELECT name, ssn FROM people ORDER BY id) TO STDOUT WITH CSV",
            ])
            .args(["-c", "SELECT * FROM people_view ORDER BY id"])
            .env_remove("PGSERVICE")
            .output()
            .expect("psql runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Ada|***6789|***@example.com|***"),
        "{stdout}"
    );
    // A COPY of a query sends computed values: masked as a whole.
    assert!(stdout.contains("Ada,\"***\""), "{stdout}");
    assert_no_secret("psql", &stdout);
}

#[tokio::test]
async fn content_detectors_mask_pii_in_columns_no_rule_names() {
    let rules = format!(
        "{RULES}\n[[detectors]]\nroles = [\"agent\"]\nkinds = [\"card\", \"ssn\", \"email\", \"iban\", \"secret\"]\nstrategy = \"redact\"\n"
    );
    let h = Harness::new()
        .identity(AGENT, AGENT_PW, &[])
        .rules(&rules)
        .start()
        .await;
    pg::direct(&h.database)
        .await
        .batch_execute(
            "CREATE TABLE tickets (id int, body text);
             INSERT INTO tickets VALUES
              (1, 'customer paid with 4111 1111 1111 1111 yesterday'),
              (2, 'key AKIAIOSFODNN7EXAMPLE leaked in a log'),
              (3, 'refund to DE89 3704 0044 0532 0130 00 please'),
              (4, 'ssn on file: 219-09-9999, mail joan@secret.test'),
              (5, 'order 1234-5678 shipped on 2024-05-01');",
        )
        .await
        .unwrap();
    let agent = h.client_as(AGENT, AGENT_PW).await.unwrap();
    let rows = simple(&agent, "SELECT id, body FROM tickets ORDER BY id")
        .await
        .unwrap();
    for row in &rows[..4] {
        assert_eq!(row[1], "***", "{row:?}");
    }
    assert_eq!(
        rows[4][1], "order 1234-5678 shipped on 2024-05-01",
        "no false hit"
    );
    // Extended protocol (binary text) too.
    let rows = agent
        .query("SELECT body FROM tickets WHERE id <= 4", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        // A text value is masked as text in binary format too (the same bytes).
        assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("***"));
    }
}

/// A driver that never describes: pgward describes the portal itself, keeps the answer, and
/// an error in the batch drains pgward's own Describe with the rest.
#[tokio::test]
async fn portals_never_described_are_described_by_pgward_and_errors_drain_it() {
    use crate::support::wire::{self, RawClient};
    use bytes::BufMut;
    let h = start().await;
    let mut c = RawClient::connect(h.addr).await;
    c.login(AGENT, AGENT_PW, &h.database).await;
    let mut parse = bytes::BytesMut::new();
    parse.put_slice(b"s1\0SELECT name, ssn FROM people WHERE id = $1\0");
    parse.put_i16(1);
    parse.put_u32(23);
    let bind = |value: &[u8]| {
        let mut b = bytes::BytesMut::new();
        b.put_slice(b"\0s1\0");
        b.put_i16(0);
        b.put_i16(1);
        b.put_i32(value.len() as i32);
        b.put_slice(value);
        b.put_i16(0);
        wire::frame(b'B', &b)
    };
    let execute = wire::frame(b'E', b"\0\0\0\0\0");
    let mut batch = wire::frame(b'P', &parse);
    batch.extend(bind(b"not a number"));
    batch.extend(&execute);
    batch.extend(wire::sync());
    c.send(&batch).await;
    let replies = c.read_until_ready().await;
    let tags: Vec<u8> = replies.iter().map(|(t, _)| *t).collect();
    assert_eq!(tags, b"1EZ", "parse ok, bind error, ready");
    let mut batch = bind(b"1");
    batch.extend(&execute);
    batch.extend(wire::sync());
    c.send(&batch).await;
    let replies = c.read_until_ready().await;
    let tags: Vec<u8> = replies.iter().map(|(t, _)| *t).collect();
    assert_eq!(tags, b"2DCZ", "no RowDescription the client didn't ask for");
    let row = &replies[1].1;
    assert!(
        row.windows(7).any(|w| w == b"***6789") && !row.windows(4).any(|w| w == b"-45-"),
        "{row:?}"
    );
}
