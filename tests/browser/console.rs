//! The console end to end in headless Chromium (Debian's `chromium` and `chromium-driver`):
//! an agent's statement is held; the agent's own sign-in shows no Approve button for it; a DBA
//! signs in, sees it, approves it, and the agent's statement completes; the DBA rejects the
//! agent's next write with a reason, which the agent is told; an auditor opens the agent's
//! session, sees the approved and the rejected statement and the verified log, and follows the
//! session live while the agent runs another statement. Screenshots go to
//! `$PGWARD_SCREENSHOTS` (the runner's `--screenshots` points it at `docs/screenshots`), else
//! under the target directory.
//!
//! Ignored by plain `cargo test` because it needs a browser: `tests/browser/run.sh` runs it
//! (and fails under `CI=true` when the browser is missing).

use std::path::PathBuf;
use std::time::Duration;

use super::webdriver::{Browser, Driver, find_browser};
use super::{AGENT, WRITE_RULE, agent_client, held_insert, pending_id, setup};

fn screenshot_dir() -> PathBuf {
    std::env::var_os("PGWARD_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"))
}

async fn sign_in(b: &Browser, console: &str, identity: &str, token: &str) {
    b.goto(console).await;
    b.type_into("[data-testid=token-input]", token).await;
    b.click("[data-testid=sign-in]").await;
    b.wait_for_text("[data-testid=whoami]", identity).await;
}

async fn sign_out(b: &Browser) {
    b.click("[data-testid=sign-out]").await;
    b.wait_for("[data-testid=signin]:not([hidden])").await;
}

#[tokio::test]
#[ignore = "needs Chromium and chromedriver; tests/browser/run.sh runs it"]
async fn an_approver_approves_in_the_console_and_an_auditor_sees_it() {
    let (chromedriver, chromium) = find_browser().expect(
        "chromedriver not found: install Debian's chromium and chromium-driver \
         (or set PGWARD_CHROMEDRIVER and PGWARD_CHROMIUM)",
    );
    let shots = screenshot_dir();
    let s = setup(true).await;
    let console = format!("{}/console", s.h.admin_url());
    let driver = Driver::start(&chromedriver).await;
    let b = driver.browser(chromium.as_deref()).await;

    // An agent's write is held.
    let agent = agent_client(&s.h).await;
    agent
        .batch_execute("SELECT count(*) FROM orders")
        .await
        .unwrap();
    let held = held_insert(agent);
    let id = pending_id(&s.h).await;
    let card = format!("[data-testid=request][data-request-id='{id}']");

    // The agent signs in: its own request is listed, without Approve or Reject, saying why.
    sign_in(&b, &console, AGENT, &s.agent).await;
    let own = b.wait_for(&card).await;
    let why = b
        .wait_for_text(
            &format!("{card} [data-testid=cannot-decide]"),
            "your own request",
        )
        .await;
    assert!(why.contains("another member of dba"), "{why}");
    assert!(b.find_in(&own, "[data-testid=approve]").await.is_empty());
    assert!(b.find_in(&own, "[data-testid=reject]").await.is_empty());
    // Masks apply to agents on orders: even the requester sees its parameters hidden.
    b.wait_for_text(&format!("{card} [data-testid=request-params]"), "***")
        .await;
    b.screenshot(&shots.join("console-requester.png")).await;
    sign_out(&b).await;

    // dora, a DBA, signs in, sees the statement and approves it.
    sign_in(&b, &console, "dora", &s.dora).await;
    b.wait_for_text(
        &format!("{card} [data-testid=request-sql]"),
        "INSERT INTO orders (id, note) VALUES ($1, $2)",
    )
    .await;
    // Not masked for dora. tokio-postgres binds in binary, which approvers are shown as hex:
    // `rush order`.
    b.wait_for_text(
        &format!("{card} [data-testid=request-params]"),
        "$2 = \\x72757368206f72646572",
    )
    .await;
    b.wait_for_text(&format!("{card} [data-testid=request-requester]"), AGENT)
        .await;
    b.wait_for_text(&format!("{card} [data-testid=request-rule]"), WRITE_RULE)
        .await;
    assert!(!held.is_finished(), "the statement waits for approval");
    b.screenshot(&shots.join("console-approvals.png")).await;
    b.click(&format!("{card} [data-testid=approve]")).await;
    let (n, agent) = tokio::time::timeout(Duration::from_secs(20), held)
        .await
        .expect("the agent's statement completes once approved")
        .unwrap();
    assert_eq!(n, 1);
    b.wait_for_text("[data-testid=flash]", "approved").await;
    b.wait_for("[data-testid=approvals-empty]:not([hidden])")
        .await;

    // The agent's next write is held; dora rejects it with a reason, which the agent is told.
    let delete = tokio::spawn(async move {
        let r = agent
            .execute("DELETE FROM orders WHERE id = $1", &[&42i32])
            .await;
        (r, agent)
    });
    let second = pending_id(&s.h).await;
    let card = format!("[data-testid=request][data-request-id='{second}']");
    b.click(&format!("{card} [data-testid=reject]")).await; // shown by the 2 s refresh
    b.type_into(
        &format!("{card} [data-testid=reject-reason]"),
        "not during the sale",
    )
    .await;
    b.click(&format!("{card} [data-testid=reject-confirm]"))
        .await;
    let (r, agent) = tokio::time::timeout(Duration::from_secs(20), delete)
        .await
        .expect("the rejected statement fails at once")
        .unwrap();
    let e = r.expect_err("rejected");
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42501");
    assert!(
        db.message()
            .contains("rejected by dora: not during the sale"),
        "{db:?}"
    );
    b.wait_for_text("[data-testid=flash]", "rejected").await;
    sign_out(&b).await;

    // audrey, an auditor, finds the agent's session and sees the approved statement.
    sign_in(&b, &console, "audrey", &s.audrey).await;
    b.wait_for_text("[data-testid=verify-status]", "verified")
        .await;
    b.click("[data-testid=nav-sessions]").await;
    b.type_into("[data-testid=filter-identity]", AGENT).await;
    b.click("[data-testid=filter-apply]").await;
    let row = format!("[data-testid=session-row][data-identity='{AGENT}']");
    b.wait_for(&row).await;
    b.screenshot(&shots.join("console-sessions.png")).await;
    b.click(&format!("{row} [data-testid=open-session]")).await;
    let approved = "[data-testid=timeline-statement][data-decision=approve]";
    b.wait_for_text(
        &format!("{approved} [data-testid=statement-sql]"),
        "INSERT INTO orders",
    )
    .await;
    b.wait_for_text(
        &format!("{approved} [data-testid=statement-approval]"),
        "approved by dora",
    )
    .await;
    b.wait_for_text(
        &format!("{approved} [data-testid=statement-outcome]"),
        "INSERT 0 1",
    )
    .await;
    // The rejected write is logged as refused, under its request, with that request's events.
    let rejected = "[data-testid=timeline-statement][data-seq='3']";
    b.wait_for_text(
        &format!("{rejected} [data-testid=statement-decision]"),
        "deny",
    )
    .await;
    b.wait_for_text(
        &format!("{rejected} [data-testid=statement-outcome]"),
        "ERROR 42501",
    )
    .await;
    b.wait_for_text(
        &format!("{rejected} [data-testid=statement-approval]"),
        "rejected by dora: not during the sale",
    )
    .await;

    // Following the open session live: the agent's next statement appears by itself.
    b.click("[data-testid=follow]").await;
    agent
        .batch_execute("SELECT id FROM orders WHERE id = 42")
        .await
        .unwrap();
    b.wait_for_text(
        "[data-testid=timeline-statement][data-seq='4'] [data-testid=statement-sql]",
        "SELECT id FROM orders WHERE id = 42",
    )
    .await;
    b.resize(1280, 1900).await;
    b.screenshot(&shots.join("console-timeline.png")).await;
    drop(agent);
    b.wait_for_text("[data-testid=timeline-end]", "Ended").await;
    b.close().await;
    println!("screenshots in {}", shots.display());
}
