//! The console's API over real HTTP against a pgward started by the harness: who the caller is
//! (`/v1/me`), `can_decide` from the duty checks, the auditor-only audit routes (sessions,
//! timelines, following, verify), and the console's files with their security headers. The
//! browser test itself is in `tests/browser/` (run by `tests/browser/run.sh`).

#[path = "../browser/console.rs"]
mod browser;
#[path = "../browser/webdriver.rs"]
mod webdriver;

use std::time::Duration;

use pgward::approval::{Origin, Party, Statement};
use pgward::policy::Action;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_postgres::NoTls;

use crate::assert_eventually;
use crate::support::{Harness, Running, pg};

/// An agent whose writes need a DBA; ann and agent-7 are DBAs too (so only the own-request
/// check keeps them from deciding their own requests); masks apply to agents on orders.note.
const RULES: &str = r#"
[roles.agent]
members = ["agent-*"]

[roles.dev]
members = ["ann"]

[roles.dba]
members = ["dora", "ann", "agent-7"]

[[rules]]
id = "agent-reads"
roles = ["agent"]
classes = ["read", "tx", "session"]
action = "allow"

[[rules]]
id = "agent-writes-need-a-dba"
roles = ["agent"]
classes = ["write"]
action = "approve"
approvers = ["dba"]
timeout = "5m"

[[rules]]
id = "dev-ddl-needs-two-dbas"
roles = ["dev"]
classes = ["ddl"]
action = "approve"
approvers = ["dba"]
min_approvals = 2
timeout = "5m"

[[masks]]
roles = ["agent"]
columns = ["public.orders.note"]
strategy = "redact"
"#;

pub const AGENT: &str = "agent-7";
pub const AGENT_PASSWORD: &str = "agent-pw";
pub const WRITE_RULE: &str = "agent-writes-need-a-dba";

/// A pgward with the admin API, an audit log (unless `audit` is false) and a token for each
/// person: agent-7 asks, dora approves, audrey audits, ann is a dev and a dba, bob is nobody.
pub struct Setup {
    pub h: Running,
    pub agent: String,
    pub dora: String,
    pub audrey: String,
    pub ann: String,
    pub bob: String,
    _data: tempfile::TempDir,
}

pub async fn setup(audit: bool) -> Setup {
    let data = tempfile::tempdir().expect("temp dir");
    let mut b = Harness::new()
        .identity(AGENT, AGENT_PASSWORD, &[])
        .identity("dora", "pw", &[])
        .identity("audrey", "pw", &["auditor"])
        .identity("ann", "pw", &[])
        .identity("bob", "pw", &["analyst"])
        .rules(RULES);
    if audit {
        b = b.config(&format!(
            "data_dir = {:?}\n[audit]\nmode = \"batched\"\nflush_interval_ms = 5\n\
             capture_roles = [\"agent\"]\n",
            data.path()
        ));
    }
    let agent = b.admin_token(AGENT);
    let dora = b.admin_token("dora");
    let audrey = b.admin_token("audrey");
    let ann = b.admin_token("ann");
    let bob = b.admin_token("bob");
    let h = b.start().await;
    pg::direct(&h.database)
        .await
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
        .await
        .expect("create orders");
    Setup {
        h,
        agent,
        dora,
        audrey,
        ann,
        bob,
        _data: data,
    }
}

/// A client through pgward as the agent.
pub async fn agent_client(h: &Running) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&h.conninfo(AGENT, AGENT_PASSWORD), NoTls)
        .await
        .expect("the agent connects");
    tokio::spawn(conn);
    client
}

/// The agent's write, held until someone approves it; the task ends with its row count.
pub fn held_insert(
    client: tokio_postgres::Client,
) -> tokio::task::JoinHandle<(u64, tokio_postgres::Client)> {
    tokio::spawn(async move {
        let n = client
            .execute(
                "INSERT INTO orders (id, note) VALUES ($1, $2)",
                &[&42i32, &"rush order"],
            )
            .await
            .expect("the held insert runs once approved");
        (n, client)
    })
}

/// The id of the one pending request, once there is one.
pub async fn pending_id(h: &Running) -> String {
    let approvals = &h.shared.approvals;
    assert_eventually!(
        !approvals.list(true).await.unwrap().is_empty(),
        "a held statement"
    );
    approvals.list(true).await.unwrap()[0]
        .request
        .id()
        .to_string()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client")
}

/// `GET path` with `token`: the status and the JSON body.
pub async fn get(h: &Running, path: &str, token: &str) -> (StatusCode, Value) {
    let resp = http()
        .get(format!("{}{path}", h.admin_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("admin API answers");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

async fn post(h: &Running, path: &str, token: &str) -> (StatusCode, Value) {
    let resp = http()
        .post(format!("{}{path}", h.admin_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("admin API answers");
    (resp.status(), resp.json().await.expect("JSON"))
}

/// The request `id` as `token`'s holder sees it in the pending list.
async fn listed(h: &Running, token: &str, id: &str) -> Value {
    let (status, body) = get(h, "/v1/approvals", token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} not listed: {body}"))
}

/// A request by ann under `rule`, made the way a held session makes one.
async fn submit_as_ann(h: &Running, rule: &str) -> String {
    let rules = h.rules().current();
    let r = rules.rule(rule).expect("rule exists");
    let Action::Approve(spec) = r.action() else {
        panic!("{rule} is not an approve rule")
    };
    let ticket = h
        .shared
        .approvals
        .submit(
            Party::new("ann", rules.roles_for("ann", &[], &[])),
            r.id().clone(),
            spec.clone(),
            Statement {
                sql: "ALTER TABLE orders ADD COLUMN shipped date".into(),
                params: vec![],
                class: "ddl".into(),
                tables: vec!["public.orders".into()],
                database: h.database.clone(),
            },
            Origin {
                session: "test-1".into(),
                client_addr: "127.0.0.1:5555".into(),
            },
        )
        .await
        .expect("request stored");
    ticket.request.id().to_string()
}

#[tokio::test]
async fn me_names_the_caller_its_roles_and_what_it_may_do() {
    let s = setup(true).await;
    let (status, me) = get(&s.h, "/v1/me", &s.audrey).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["identity"], "audrey");
    assert_eq!(me["roles"], serde_json::json!(["auditor"]));
    assert_eq!(me["credential"], "admin_token");
    assert_eq!(me["is_auditor"], true);
    assert_eq!(me["audit_enabled"], true);
    assert_eq!(me["approver_of"], serde_json::json!([]));

    let (_, me) = get(&s.h, "/v1/me", &s.dora).await;
    assert_eq!(me["is_auditor"], false);
    assert_eq!(
        me["approver_of"],
        serde_json::json!([WRITE_RULE, "dev-ddl-needs-two-dbas"])
    );
    let resp = http()
        .get(format!("{}/v1/me", s.h.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // An OIDC token is not accepted until pgward verifies JWTs.
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhdWRyZXkifQ.c2lnbmF0dXJl";
    assert_eq!(get(&s.h, "/v1/me", jwt).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn can_decide_is_what_the_duty_checks_would_answer() {
    let s = setup(false).await;
    let h = &s.h;
    let id = submit_as_ann(h, "dev-ddl-needs-two-dbas").await;

    // ann is a dba, but this is her own request.
    let own = listed(h, &s.ann, &id).await;
    assert_eq!(own["can_decide"], false);
    assert_eq!(own["can_reject"], false);
    let why = own["cannot_decide"].as_str().unwrap();
    assert!(why.contains("your own request"), "{why}");
    let (status, refused) = post(h, &format!("/v1/approvals/{id}/approve"), &s.ann).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");

    // bob holds no approver role.
    let other = listed(h, &s.bob, &id).await;
    assert_eq!(other["can_decide"], false);
    let why = other["cannot_decide"].as_str().unwrap();
    assert!(
        why.contains("not an approver of rule dev-ddl-needs-two-dbas"),
        "{why}"
    );

    // dora may, and after approving once (of two) she may not again.
    let approver = listed(h, &s.dora, &id).await;
    assert_eq!(approver["can_decide"], true, "{approver}");
    assert!(approver["cannot_decide"].is_null());
    let (status, decided) = post(h, &format!("/v1/approvals/{id}/approve"), &s.dora).await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!(decided["outcome"], "pending");
    assert_eq!(decided["request"]["can_decide"], false);
    let again = listed(h, &s.dora, &id).await;
    assert_eq!(again["can_decide"], false);
    assert_eq!(again["can_reject"], true, "a change of mind may reject");
    assert!(
        again["cannot_decide"]
            .as_str()
            .unwrap()
            .contains("already approved")
    );
    // agent-7 (a dba) may still approve ann's request.
    let (_, single) = get(h, &format!("/v1/approvals/{id}"), &s.agent).await;
    assert_eq!(single["can_decide"], true, "{single}");
}

#[tokio::test]
async fn auditors_list_sessions_read_timelines_follow_and_verify() {
    let s = setup(true).await;
    let h = &s.h;
    let agent = agent_client(h).await;
    agent
        .batch_execute("SELECT count(*) FROM orders")
        .await
        .unwrap();
    let e = agent.batch_execute("DROP TABLE orders").await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42501");
    let held = held_insert(agent);
    let id = pending_id(h).await;
    let (status, _) = post(h, &format!("/v1/approvals/{id}/approve"), &s.dora).await;
    assert_eq!(status, StatusCode::OK);
    let (n, agent) = held.await.unwrap();
    assert_eq!(n, 1);

    // Everyone but an auditor is refused, before anything is read.
    for token in [&s.dora, &s.bob, &s.agent] {
        for path in [
            "/v1/audit/sessions",
            "/v1/audit/sessions/1",
            "/v1/audit/verify",
        ] {
            let (status, body) = get(h, path, token).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
            assert_eq!(body["sqlstate"], "42501");
        }
    }

    let sessions_of = |query: &'static str| {
        let audrey = s.audrey.clone();
        async move {
            let (status, body) = get(h, &format!("/v1/audit/sessions{query}"), &audrey).await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            body["sessions"].as_array().unwrap().clone()
        }
    };
    assert_eventually!(
        sessions_of("?identity=agent-7").await.len() == 1,
        "the agent's session listed"
    );
    let listed = sessions_of("?identity=agent-7&decision=approve").await;
    assert_eq!(listed.len(), 1);
    let session = listed[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(listed[0]["identity"], AGENT);
    assert!(listed[0]["ended"].is_null(), "the session is open");
    assert_eventually!(
        sessions_of("?identity=agent-7").await[0]["statements"] == 3,
        "three statements recorded"
    );
    assert_eq!(sessions_of("?decision=deny").await.len(), 1);
    assert_eq!(sessions_of("?identity=dora").await.len(), 0);
    assert_eq!(sessions_of("?since=2999-01-01").await.len(), 0);
    assert_eq!(sessions_of("?until=2000-01-01T00:00:00Z").await.len(), 0);
    assert_eq!(
        sessions_of("?identity=agent%2D7&since=2000-01-01&until=2999-01-01")
            .await
            .len(),
        1
    );
    let (status, body) = get(h, "/v1/audit/sessions?since=yesterday", &s.audrey).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The timeline: the statements, decisions, the approval and what came back.
    let path = format!("/v1/audit/sessions/{session}");
    let (status, t) = get(h, &path, &s.audrey).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["id"], session.as_str());
    assert_eq!(t["start"]["identity"], AGENT);
    assert!(t["end"].is_null());
    let statements = t["statements"].as_array().unwrap();
    let decisions: Vec<&str> = statements
        .iter()
        .map(|s| s["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["allow", "deny", "approve"]);
    assert_eq!(statements[1]["outcome"]["sqlstate"], "42501");
    let insert = &statements[2];
    assert_eq!(insert["rule"], WRITE_RULE);
    assert_eq!(insert["approval_request"], id.as_str());
    assert_eq!(insert["approvers"], serde_json::json!(["dora"]));
    assert_eq!(insert["outcome"]["command_tag"], "INSERT 0 1");
    // Parameters exactly as the log holds them: masked for the agent's role.
    assert_eq!(insert["params"], serde_json::json!(["***", "***"]));
    let events: Vec<(&str, &str)> = insert["approval_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(events, [("created", AGENT), ("approved", "dora")]);
    // Captured rows of the agent's read.
    assert_eq!(statements[0]["rows"]["rows"], serde_json::json!([["0"]]));

    // Following: nothing new answers at once without waiting…
    let last = t["last_seq"].as_u64().unwrap();
    let (_, same) = get(h, &format!("{path}?after={last}"), &s.audrey).await;
    assert_eq!(same["changed"], false);
    // …and a waiting follower is answered when the session does something.
    let follower = {
        let (h_url, token, path) = (h.admin_url(), s.audrey.clone(), path.clone());
        tokio::spawn(async move {
            http()
                .get(format!("{h_url}{path}?after={last}&wait=20"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!follower.is_finished(), "the follower waits for a record");
    agent.batch_execute("SELECT 1").await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .expect("the follower is answered")
        .unwrap();
    assert_eq!(next["changed"], true);
    assert!(next["last_seq"].as_u64().unwrap() > last);
    let texts: Vec<&str> = next["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sql"].as_str().unwrap())
        .collect();
    assert_eq!(texts.last(), Some(&"SELECT 1"));
    // The end of the session ends following.
    drop(agent);
    assert_eventually!(
        !get(h, &path, &s.audrey).await.1["end"].is_null(),
        "the session's end"
    );
    let (status, body) = get(h, "/v1/audit/sessions/999999", &s.audrey).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = get(h, "/v1/audit/sessions/..%2F..", &s.audrey).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, v) = get(h, "/v1/audit/verify", &s.audrey).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ok", "{v}");
    assert!(v["records"].as_u64().unwrap() >= 8, "{v}");
    assert!(v["first_break"].is_null());
}

#[tokio::test]
async fn audit_routes_say_so_when_auditing_is_off() {
    let s = setup(false).await;
    let (_, me) = get(&s.h, "/v1/me", &s.audrey).await;
    assert_eq!(me["audit_enabled"], false);
    for path in ["/v1/audit/sessions", "/v1/audit/verify"] {
        let (status, body) = get(&s.h, path, &s.audrey).await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("auditing is off"));
    }
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy() {
    let s = setup(false).await;
    let base = s.h.admin_url();
    let root = http().get(format!("{base}/")).send().await.unwrap();
    assert_eq!(root.status(), StatusCode::FOUND);
    assert_eq!(root.headers()["location"], "/console");
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let r = http().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let headers = r.headers();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert!(!r.text().await.unwrap().is_empty());
    }
    let page = http()
        .get(format!("{base}/console"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("src=\"/console/app.js\""));
    assert!(page.contains("data-testid=\"token-input\""));
    let missing = http()
        .get(format!("{base}/console/secrets.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let posted = http().post(format!("{base}/console")).send().await.unwrap();
    assert_eq!(posted.status(), StatusCode::METHOD_NOT_ALLOWED);
}
