//! The admin API and `pgward approvals` over real HTTP against a pgward started by the harness:
//! bearer tokens, the duty checks as HTTP answers, malformed input, HTTPS with a private CA.

use pgward::approval::{Origin, Party, Statement};
use pgward::policy::Action;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Harness, Running, harness, pg};

const RULES: &str = r#"
[roles.dev]
members = ["ann"]

[roles.dba]
members = ["ann", "carol", "dan"]

[roles.contractor]
members = ["dan"]

[[masks]]
roles = ["contractor"]
columns = ["public.orders.note"]
strategy = "redact"

[[rules]]
id = "dev-ddl-needs-a-dba"
roles = ["dev"]
classes = ["ddl"]
action = "approve"
approvers = ["dba"]
timeout = "10m"

[[rules]]
id = "dev-privilege-needs-two-dbas"
roles = ["dev"]
classes = ["privilege"]
action = "approve"
approvers = ["dba"]
min_approvals = 2
timeout = "10m"
"#;

const ONE_DBA: &str = "dev-ddl-needs-a-dba";
const TWO_DBAS: &str = "dev-privilege-needs-two-dbas";

/// A pgward with the admin API and a token for each person: ann asks (and is also a dba),
/// carol and dan are dbas by the rules, alice is a dba by the identities file, bob is nobody.
struct Setup {
    h: Running,
    ann: String,
    carol: String,
    dan: String,
    alice: String,
    bob: String,
}

async fn setup(https: bool) -> Setup {
    let mut b = Harness::new()
        .identity("ann", "pw", &[])
        .identity("carol", "pw", &[])
        .identity("dan", "pw", &[])
        .identity("bob", "pw", &["analyst"])
        .rules(RULES);
    if https {
        b = b.admin_https();
    }
    let (ann, carol, dan) = (
        b.admin_token("ann"),
        b.admin_token("carol"),
        b.admin_token("dan"),
    );
    let (alice, bob) = (b.admin_token("alice"), b.admin_token("bob"));
    Setup {
        h: b.start().await,
        ann,
        carol,
        dan,
        alice,
        bob,
    }
}

/// A request by ann under `rule`, made the way a held session makes one.
async fn submit(h: &Running, rule: &str) -> String {
    let rules = h.rules().current();
    let r = rules.rule(rule).expect("rule exists");
    let Action::Approve(spec) = r.action() else {
        panic!("{rule} is not an approve rule")
    };
    let requester = Party::new("ann", rules.roles_for("ann", &[], &[]));
    let ticket = h
        .shared
        .approvals
        .submit(
            requester,
            r.id().clone(),
            spec.clone(),
            Statement {
                sql: "ALTER TABLE orders ADD COLUMN note text DEFAULT $1".into(),
                params: vec![Some("n/a".into())],
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

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// Sends `method path` with an optional token and raw body; returns the status and JSON body.
async fn call(
    h: &Running,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (StatusCode, Value) {
    let mut req = http().request(method, format!("{}{path}", h.admin_url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.expect("admin API answers");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

async fn get(h: &Running, path: &str, token: &str) -> (StatusCode, Value) {
    call(h, reqwest::Method::GET, path, Some(token), None).await
}

async fn approve(h: &Running, id: &str, token: &str) -> (StatusCode, Value) {
    let path = format!("/v1/approvals/{id}/approve");
    call(h, reqwest::Method::POST, &path, Some(token), None).await
}

async fn reject(h: &Running, id: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let path = format!("/v1/approvals/{id}/reject");
    call(
        h,
        reqwest::Method::POST,
        &path,
        Some(token),
        Some(body.to_string()),
    )
    .await
}

/// A refusal: the status, the SQLSTATE, a message naming the rule, and a hint.
fn assert_refused(answer: &(StatusCode, Value), status: StatusCode, sqlstate: &str, rule: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["sqlstate"], sqlstate, "{body}");
    let message = body["error"].as_str().expect("error message");
    assert!(message.contains(rule), "{message:?} does not name {rule}");
}

#[tokio::test]
async fn health_is_open_and_every_v1_route_needs_a_known_token() {
    let s = setup(false).await;
    let h = &s.h;
    let (status, body) = call(h, reqwest::Method::GET, "/health", None, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));

    for path in ["/v1/approvals", "/v1/approvals/nope", "/v1/nothing-here"] {
        let resp = http()
            .get(format!("{}{path}", h.admin_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["sqlstate"], "28000");

        let (status, _) = get(h, path, "pgw_not-a-real-token").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        let (status, _) = get(h, path, &format!("{}x", s.carol)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let resp = http()
        .get(format!("{}/v1/approvals", h.admin_url()))
        .header("authorization", format!("Basic {}", s.carol))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn list_and_show_describe_what_would_run() {
    let s = setup(false).await;
    let h = &s.h;
    let id = submit(h, ONE_DBA).await;

    let (status, body) = get(h, "/v1/approvals", &s.bob).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = body["requests"].as_array().expect("requests");
    assert_eq!(list.len(), 1, "{body}");
    let r = &list[0];
    assert_eq!(r["id"], id.as_str());
    assert_eq!(r["state"], "pending");
    assert_eq!(r["requester"]["identity"], "ann");
    assert_eq!(r["requester"]["roles"], json!(["dba", "dev"]));
    assert_eq!(r["rule"], ONE_DBA);
    assert_eq!(r["mode"], "hold");
    assert_eq!(
        (r["approvals"].as_u64(), r["needed"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(r["approvers"], json!(["dba"]));
    assert_eq!(r["statement"]["params"], json!(["n/a"]));
    assert_eq!(r["statement"]["tables"], json!(["public.orders"]));
    assert_eq!(r["statement"]["database"], h.database.as_str());
    assert_eq!(r["origin"]["client_addr"], "127.0.0.1:5555");
    let (created, expires) = (
        r["created_at"]["unix_ms"].as_u64().unwrap(),
        r["expires_at"]["unix_ms"].as_u64().unwrap(),
    );
    assert_eq!(expires - created, 600_000);
    let text = r["created_at"]["rfc3339"].as_str().unwrap();
    assert!(text.ends_with('Z') && text.len() == 24, "{text}");

    let (status, mut one) = get(h, &format!("/v1/approvals/{id}"), &s.carol).await;
    assert_eq!(status, StatusCode::OK);
    // The same request, but carol (a dba) may decide it and bob may not.
    assert_eq!(one["can_decide"], true);
    assert_eq!(r["can_decide"], false);
    let mut r = r.clone();
    for view in [&mut one, &mut r] {
        let fields = view.as_object_mut().unwrap();
        fields.remove("can_decide");
        fields.remove("cannot_decide");
        fields.remove("can_reject");
    }
    assert_eq!(one, r);
    assert_eq!(one["statement"]["params_masked"], false);
    // dan has a mask on orders: he sees that there are parameters, not their values.
    let (status, masked) = get(h, &format!("/v1/approvals/{id}"), &s.dan).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(masked["statement"]["params"], json!(["***"]));
    assert_eq!(masked["statement"]["params_masked"], true);

    let (status, body) = get(h, "/v1/approvals/no-such-request", &s.carol).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = get(h, "/v1/approvals?state=everything", &s.carol).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Decided requests leave the pending list but stay in `all`.
    assert_eq!(approve(h, &id, &s.carol).await.0, StatusCode::OK);
    let (_, pending) = get(h, "/v1/approvals?state=pending", &s.carol).await;
    assert_eq!(pending["requests"], json!([]));
    let (_, all) = get(h, "/v1/approvals?state=all", &s.carol).await;
    assert_eq!(all["requests"][0]["state"], "approved");
    assert_eq!(all["requests"][0]["decisions"][0]["approver"], "carol");
    assert_eq!(all["requests"][0]["decisions"][0]["verdict"], "approve");
}

#[tokio::test]
async fn the_requester_and_non_approvers_are_refused() {
    let s = setup(false).await;
    let h = &s.h;
    let id = submit(h, ONE_DBA).await;

    // ann holds the approver role, and still can't approve her own request.
    let own = approve(h, &id, &s.ann).await;
    assert_refused(&own, StatusCode::FORBIDDEN, "42501", ONE_DBA);
    assert!(
        own.1["hint"].as_str().is_some_and(|h| h.contains("dba")),
        "{}",
        own.1
    );
    let own_reject = reject(h, &id, &s.ann, json!({"reason": "changed my mind"})).await;
    assert_refused(&own_reject, StatusCode::FORBIDDEN, "42501", ONE_DBA);

    let nobody = approve(h, &id, &s.bob).await;
    assert_refused(&nobody, StatusCode::FORBIDDEN, "42501", ONE_DBA);
    assert!(nobody.1["error"].as_str().unwrap().contains("bob"));

    let (_, r) = get(h, &format!("/v1/approvals/{id}"), &s.carol).await;
    assert_eq!(
        (r["state"].as_str(), r["decisions"].as_array().map(Vec::len)),
        (Some("pending"), Some(0))
    );

    // alice is a dba through the identities file, not the rules: her roles count too.
    let (status, body) = approve(h, &id, &s.alice).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "approved");
}

#[tokio::test]
async fn two_approvals_need_two_distinct_people() {
    let s = setup(false).await;
    let h = &s.h;
    let id = submit(h, TWO_DBAS).await;

    let (status, first) = approve(h, &id, &s.carol).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(
        (&first["outcome"], &first["approvals"], &first["needed"]),
        (&json!("pending"), &json!(1), &json!(2))
    );
    assert_eq!(first["request"]["state"], "pending");

    let twice = approve(h, &id, &s.carol).await;
    assert_refused(&twice, StatusCode::FORBIDDEN, "42501", TWO_DBAS);

    let (status, second) = approve(h, &id, &s.dan).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["outcome"], "approved");
    assert_eq!(second["approvals"], 2);
    assert_eq!(second["request"]["state"], "approved");
    let approvers: Vec<&str> = second["request"]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["approver"].as_str().unwrap())
        .collect();
    assert_eq!(approvers, ["carol", "dan"]);

    let late = approve(h, &id, &s.alice).await;
    assert_refused(&late, StatusCode::CONFLICT, "55000", TWO_DBAS);
}

#[tokio::test]
async fn a_rejection_needs_a_reason_and_closes_the_request() {
    let s = setup(false).await;
    let h = &s.h;
    let id = submit(h, TWO_DBAS).await;

    for body in [json!({}), json!({"reason": "   "})] {
        let answer = reject(h, &id, &s.carol, body).await;
        assert_refused(&answer, StatusCode::BAD_REQUEST, "22023", TWO_DBAS);
    }
    let (status, body) = reject(h, &id, &s.carol, json!({"reason": "not during the sale"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "rejected");
    assert_eq!(
        body["request"]["rejection"],
        json!({"by": "carol", "reason": "not during the sale"})
    );
    assert_eq!(
        body["request"]["decisions"][0]["reason"],
        "not during the sale"
    );

    let after = approve(h, &id, &s.dan).await;
    assert_refused(&after, StatusCode::CONFLICT, "55000", TWO_DBAS);
}

#[tokio::test]
async fn malformed_requests_get_clean_client_errors() {
    let s = setup(false).await;
    let h = &s.h;
    let id = submit(h, ONE_DBA).await;
    let approve_path = format!("/v1/approvals/{id}/approve");
    let reject_path = format!("/v1/approvals/{id}/reject");
    let post = reqwest::Method::POST;

    let cases: [(&str, String, StatusCode, &str); 5] = [
        (
            &reject_path,
            "{\"reason\": ".into(),
            StatusCode::BAD_REQUEST,
            "22032",
        ),
        (
            &reject_path,
            "[1, 2]".into(),
            StatusCode::BAD_REQUEST,
            "22032",
        ),
        (
            &approve_path,
            "{\"comment\": \"lgtm\"}".into(),
            StatusCode::BAD_REQUEST,
            "22032",
        ),
        (
            &approve_path,
            "\u{0}\u{1}garbage".into(),
            StatusCode::BAD_REQUEST,
            "22032",
        ),
        (
            &reject_path,
            format!("{{\"reason\": \"{}\"}}", "x".repeat(100_000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "54000",
        ),
    ];
    for (path, body, status, sqlstate) in cases {
        let (got, answer) = call(h, post.clone(), path, Some(&s.carol), Some(body)).await;
        assert_eq!(
            (got, answer["sqlstate"].as_str()),
            (status, Some(sqlstate)),
            "{answer}"
        );
    }

    // A body that never says how long it is, streamed past the cap.
    let chunks = futures::stream::iter((0..100).map(|_| {
        Ok::<_, std::io::Error>(hyper::body::Frame::data(bytes::Bytes::from(vec![
            b' ';
            4096
        ])))
    }));
    let resp = http()
        .post(format!("{}{reject_path}", h.admin_url()))
        .bearer_auth(&s.carol)
        .body(reqwest::Body::wrap(http_body_util::StreamBody::new(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    for path in [
        "/v1/approvals/no-such-request/approve".to_owned(),
        "/v1/approvals/..%2F..%2Fetc/approve".to_owned(),
        format!("/v1/approvals/{}/approve", "a".repeat(5000)),
    ] {
        let (got, answer) = call(h, post.clone(), &path, Some(&s.carol), None).await;
        assert_eq!(got, StatusCode::NOT_FOUND, "{path}: {answer}");
    }
    let (got, _) = call(
        h,
        reqwest::Method::DELETE,
        &format!("/v1/approvals/{id}"),
        Some(&s.carol),
        None,
    )
    .await;
    assert_eq!(got, StatusCode::METHOD_NOT_ALLOWED);
    let (got, _) = call(h, reqwest::Method::GET, &approve_path, Some(&s.carol), None).await;
    assert_eq!(got, StatusCode::METHOD_NOT_ALLOWED);

    // None of that changed the request, and the API still works.
    let (status, r) = get(h, &format!("/v1/approvals/{id}"), &s.carol).await;
    assert_eq!(
        (status, r["state"].as_str()),
        (StatusCode::OK, Some("pending"))
    );
    assert_eq!(approve(h, &id, &s.carol).await.0, StatusCode::OK);
}

/// Runs `pgward approvals ARGS` with the admin URL and `token` in its environment.
async fn cli(h: &Running, token: Option<&str>, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgward"));
    cmd.arg("approvals")
        .args(args)
        .env("PGWARD_ADMIN_URL", h.admin_url())
        .env_remove("PGWARD_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.env("PGWARD_ADMIN_TOKEN", t);
    }
    let out = cmd.output().await.expect("run pgward");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_lists_shows_and_decides() {
    let s = setup(false).await;
    let h = &s.h;
    let id = submit(h, TWO_DBAS).await;

    let (code, out, err) = cli(h, Some(&s.carol), &["list"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("ID"), "{out}");
    for want in [id.as_str(), "ann", TWO_DBAS, "0/2", "ALTER TABLE orders"] {
        assert!(out.contains(want), "list lacks {want:?}:\n{out}");
    }

    let (code, out, err) = cli(h, Some(&s.carol), &["show", &id]).await;
    assert_eq!(code, Some(0), "{err}");
    for want in [
        "ALTER TABLE orders ADD COLUMN note",
        "$1 = \"n/a\"",
        "ann",
        TWO_DBAS,
        "0 of 2",
        "Expires",
        "public.orders",
    ] {
        assert!(out.contains(want), "show lacks {want:?}:\n{out}");
    }

    // Duty refusals exit 1 with the error and its hint.
    let (code, _, err) = cli(h, Some(&s.ann), &["approve", &id]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(TWO_DBAS) && err.contains("hint:"), "{err}");

    let (code, out, err) = cli(h, Some(&s.carol), &["approve", &id]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("1 of 2"), "{out}");
    let (code, out, err) = cli(h, Some(&s.dan), &["approve", &id, "--json"]).await;
    assert_eq!(code, Some(0), "{err}");
    let answer: Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(answer["outcome"], "approved");

    let (code, _, err) = cli(h, Some(&s.alice), &["reject", &id, "--reason", "too late"]).await;
    assert_eq!(code, Some(1), "{err}");

    let (code, out, _) = cli(h, Some(&s.carol), &["list"]).await;
    assert_eq!((code, out.as_str()), (Some(0), "No approval requests.\n"));
    let (code, out, _) = cli(h, Some(&s.carol), &["list", "--all", "--json"]).await;
    assert_eq!(code, Some(0));
    let all: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(all["requests"][0]["state"], "approved");

    // Usage and authentication problems exit 2.
    assert_eq!(cli(h, None, &["list"]).await.0, Some(2));
    assert_eq!(cli(h, Some("pgw_wrong"), &["list"]).await.0, Some(2));
    assert_eq!(
        cli(h, Some(&s.carol), &["show", "no-such-request"]).await.0,
        Some(2)
    );
    assert_eq!(cli(h, Some(&s.carol), &["reject", &id]).await.0, Some(2));
}

#[tokio::test]
async fn https_with_a_private_ca() {
    let s = setup(true).await;
    let h = &s.h;
    assert!(h.admin_url().starts_with("https://"));
    let id = submit(h, ONE_DBA).await;

    let pem = std::fs::read(h.admin_cert_path()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}/health", h.admin_url()))
        .send()
        .await
        .expect("HTTPS with the CA");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        http()
            .get(format!("{}/health", h.admin_url()))
            .send()
            .await
            .is_err(),
        "a client that doesn't trust the certificate must fail"
    );
    let plain = h.admin_url().replace("https://", "http://");
    assert!(
        http().get(format!("{plain}/health")).send().await.is_err(),
        "plain HTTP to the HTTPS listener must fail"
    );

    let ca = h.admin_cert_path();
    let ca = ca.to_str().unwrap();
    let (code, out, err) = cli(h, Some(&s.carol), &["list", "--ca-file", ca]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&id), "{out}");
    let (code, out, err) = cli(h, Some(&s.carol), &["approve", &id, "--ca-file", ca]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("may run"), "{out}");
    let (code, _, err) = cli(h, Some(&s.carol), &["list"]).await;
    assert_eq!(
        code,
        Some(2),
        "without --ca-file the certificate is untrusted: {err}"
    );
}

#[tokio::test]
async fn without_admin_tokens_the_api_only_answers_health() {
    let h = Harness::new().admin().start().await;
    let (status, _) = call(&h, reqwest::Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = get(&h, "/v1/approvals", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["hint"]
            .as_str()
            .is_some_and(|h| h.contains("--admin-token"))
    );
    // Sessions are unaffected by the admin listener.
    h.client().await.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn a_statement_held_in_a_session_runs_once_approved_through_the_cli() {
    let s = setup(false).await;
    let h = &s.h;
    let ann = h.client_as("ann", "pw").await.expect("ann connects");
    let held = tokio::spawn(async move {
        ann.batch_execute("CREATE TABLE released_by_the_cli (id int)")
            .await
    });

    let mut id = String::new();
    crate::assert_eventually!(
        {
            let (_, body) = get(h, "/v1/approvals", &s.carol).await;
            match body["requests"].as_array().map(Vec::as_slice) {
                Some([r]) => {
                    id = r["id"].as_str().unwrap_or_default().to_owned();
                    true
                }
                _ => false,
            }
        },
        "the held statement's request to be listed"
    );
    let (_, r) = get(h, &format!("/v1/approvals/{id}"), &s.carol).await;
    assert_eq!(
        r["statement"]["sql"],
        "CREATE TABLE released_by_the_cli (id int)"
    );
    assert_eq!(
        (r["rule"].as_str(), r["requester"]["identity"].as_str()),
        (Some(ONE_DBA), Some("ann"))
    );
    assert!(
        !held.is_finished(),
        "the statement must wait for the approval"
    );

    let (code, _, err) = cli(h, Some(&s.ann), &["approve", &id]).await;
    assert_eq!(code, Some(1), "{err}");
    let (code, _, err) = cli(h, Some(&s.carol), &["approve", &id]).await;
    assert_eq!(code, Some(0), "{err}");
    tokio::time::timeout(std::time::Duration::from_secs(10), held)
        .await
        .expect("released in time")
        .unwrap()
        .expect("the approved statement runs");
    assert_eq!(
        crate::support::pg::count(&h.database, "released_by_the_cli").await,
        0
    );
}

#[tokio::test]
async fn readiness_names_what_fails() {
    let h = Harness::new().admin().start().await;
    let (status, body) = call(&h, reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["upstream"], "ok");
    assert_eq!(body["checks"]["approvals"], "ok");
    let (status, _) = call(&h, reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);

    // The upstream server is not there: not ready, and the answer says which part.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let h = Harness::new().admin().upstream_port(dead).start().await;
    let (status, body) = call(&h, reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["failing"], json!(["upstream"]));
    assert_ne!(body["checks"]["upstream"], "ok");
    // Alive all the same.
    let (status, _) = call(&h, reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

/// `/metrics`, as text.
async fn metrics_text(h: &Running) -> String {
    http()
        .get(format!("{}/metrics", h.admin_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample `name` (with its labels, as rendered) in `/metrics`, or 0.
async fn metric(h: &Running, name: &str) -> f64 {
    metrics_text(h)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_connections_statements_and_refusals() {
    let h = Harness::new().admin().rules(RULES).start().await;
    let reads = "pgward_statements_total{class=\"read\",decision=\"allow\"}";
    let denied = "pgward_statements_total{class=\"write\",decision=\"deny\"}";
    assert_eq!(metric(&h, "pgward_sessions_open").await, 0.0);
    // ann has no identity in this harness: refused like a wrong password.
    let c = h.client_as("ann", "pw").await;
    assert!(c.is_err());
    assert_eq!(
        metric(
            &h,
            "pgward_client_connections_refused_total{sqlstate=\"28P01\"}"
        )
        .await,
        1.0
    );
    // alice is a dba by the identities file; no rule here lets a dba write.
    let alice = h.client().await;
    crate::assert_eventually!(
        metric(&h, "pgward_sessions_open").await == 1.0,
        "the session counted"
    );
    let before = metric(&h, denied).await;
    let e = alice
        .batch_execute("DELETE FROM nothing")
        .await
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42501");
    assert_eq!(metric(&h, denied).await, before + 1.0);
    assert_eq!(metric(&h, reads).await, 0.0);
    assert!(metric(&h, "pgward_client_connections_total").await >= 2.0);
    assert!(metric(&h, "pgward_server_bytes_total").await > 0.0);
    drop(alice);
    crate::assert_eventually!(
        metric(&h, "pgward_sessions_open").await == 0.0,
        "the session closed"
    );
}

/// The sum of every sample of the metric family `name` (all label sets) in `/metrics`.
async fn metric_sum(h: &Running, name: &str) -> f64 {
    metrics_text(h)
        .await
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_cover_latency_masking_audit_and_the_pool() {
    let state = tempfile::tempdir().unwrap();
    let rules = format!(
        "{}\n[[masks]]\nroles = [\"everyone\"]\ncolumns = [\"people.ssn\"]\nstrategy = \"redact\"\n\
         [[detectors]]\nroles = [\"everyone\"]\nkinds = [\"email\"]\nstrategy = \"redact\"\n",
        harness::ALLOW_ALL
    );
    let h = Harness::new()
        .admin()
        .rules(&rules)
        .config(&format!(
            "data_dir = {:?}\n",
            state.path().display().to_string()
        ))
        .start()
        .await;
    pg::direct(&h.database)
        .await
        .batch_execute(
            "CREATE TABLE people (ssn text); INSERT INTO people VALUES ('123-45-6789'), ('987-65-4321')",
        )
        .await
        .unwrap();
    let c = h.client().await;
    let rows = c.query("SELECT ssn FROM people", &[]).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_ne!(rows[0].get::<_, String>(0), "123-45-6789");
    assert_eq!(metric_sum(&h, "pgward_masked_values_total").await, 2.0);
    // A value no column rule names, found by the e-mail detector.
    let found: String = c
        .query_one("SELECT 'someone@example.com'::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(found, "someone@example.com");
    assert_eq!(
        metric(&h, "pgward_masked_values_total{rule=\"detector:email\"}").await,
        1.0
    );
    assert_eq!(metric_sum(&h, "pgward_masked_values_total").await, 3.0);
    assert!(metric(&h, "pgward_added_latency_seconds_count").await > 0.0);
    assert!(metric(&h, "pgward_client_messages_total").await >= 5.0);
    assert!(metric(&h, "pgward_server_messages_total").await >= 5.0);
    crate::assert_eventually!(
        metric(&h, "pgward_audit_records_total").await > 0.0
            && metric(&h, "pgward_audit_write_seconds_count").await > 0.0,
        "audit writes counted"
    );
    assert_eq!(metric(&h, "pgward_upstream_connections_open").await, 1.0);
    assert_eq!(metric(&h, "pgward_upstream_connections_total").await, 1.0);
    drop(c);
    crate::assert_eventually!(h.shared.pools.idle() == 1, "the connection pooled");
    h.client().await.simple_query("SELECT 1").await.unwrap();
    assert_eq!(
        metric(&h, "pgward_upstream_connections_reused_total").await,
        1.0
    );
    assert_eq!(metric(&h, "pgward_upstream_connections_total").await, 1.0);
}
