//! `pgward approvals list | show ID | approve ID | reject ID --reason TEXT`: the admin API from
//! a terminal.
//!
//! Exit codes: 0 done; 1 refused by the duty checks (own request, not an approver, already
//! decided, expired), with the error and its hint on stderr; 2 usage, authentication,
//! connection and server errors.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use pgward::admin::view::{DecisionResult, ErrorBody, RequestView};
use reqwest::StatusCode;

/// Time a single API call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// SQL shown per row of `list`.
const LIST_SQL_CHARS: usize = 60;

/// Where the admin API is and who is calling.
#[derive(clap::Args)]
pub struct Connection {
    /// The admin API's base URL.
    #[arg(
        long,
        global = true,
        env = "PGWARD_ADMIN_URL",
        default_value = "http://127.0.0.1:6433"
    )]
    url: String,
    /// The bearer token (from `pgward passwd --admin-token`); prefer the environment variable,
    /// which keeps it out of shell history.
    #[arg(
        long,
        global = true,
        env = "PGWARD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// A PEM CA certificate to trust for an HTTPS admin API with a private CA (instead of the
    /// built-in roots).
    #[arg(long, global = true)]
    ca_file: Option<PathBuf>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential: never in Debug output.
        f.debug_struct("Connection")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "_"))
            .field("ca_file", &self.ca_file)
            .field("json", &self.json)
            .finish()
    }
}

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// List pending requests (all of them with --all).
    List {
        /// Include approved, rejected, expired and withdrawn requests.
        #[arg(long)]
        all: bool,
    },
    /// Show one request in full: SQL, parameters, requester, rule, approvals, expiry.
    Show {
        /// The request id.
        id: String,
    },
    /// Approve a request.
    Approve {
        /// The request id.
        id: String,
    },
    /// Reject a request; the requester is shown the reason.
    Reject {
        /// The request id.
        id: String,
        /// Why; shown to the requester.
        #[arg(long)]
        reason: String,
    },
}

/// Runs `action` against the admin API.
pub fn run(conn: &Connection, action: &Action) -> anyhow::Result<ExitCode> {
    let Some(token) = conn.token.as_deref().filter(|t| !t.is_empty()) else {
        bail!("no admin token: set PGWARD_ADMIN_TOKEN (or pass --token)");
    };
    if let Action::Reject { reason, .. } = action
        && reason.trim().is_empty()
    {
        bail!("--reason must say why; the requester is shown it");
    }
    let client = client(conn)?;
    let base = conn.url.trim_end_matches('/');
    let rt = super::runtime()?;
    let (status, body) = rt.block_on(async {
        let request = match action {
            Action::List { all } => client.get(format!(
                "{base}/v1/approvals?state={}",
                if *all { "all" } else { "pending" }
            )),
            Action::Show { id } => client.get(format!("{base}/v1/approvals/{}", path_segment(id))),
            Action::Approve { id } => client
                .post(format!("{base}/v1/approvals/{}/approve", path_segment(id)))
                .json(&serde_json::json!({})),
            Action::Reject { id, reason } => client
                .post(format!("{base}/v1/approvals/{}/reject", path_segment(id)))
                .json(&serde_json::json!({ "reason": reason })),
        };
        let response = request
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {base}"))?;
        let status = response.status();
        let body = response.bytes().await.context("reading the answer")?;
        anyhow::Ok((status, body))
    })?;

    if !status.is_success() {
        return refused(status, &body, conn.json);
    }
    if conn.json {
        println!("{}", pretty(&body));
        return Ok(ExitCode::SUCCESS);
    }
    let now = now_ms();
    match action {
        Action::List { .. } => {
            #[derive(serde::Deserialize)]
            struct List {
                requests: Vec<RequestView>,
            }
            let list: List = parse(&body)?;
            print!("{}", table(&list.requests, now));
        }
        Action::Show { .. } => print!("{}", block(&parse::<RequestView>(&body)?, now)),
        Action::Approve { .. } | Action::Reject { .. } => {
            let result: DecisionResult = parse(&body)?;
            let r = &result.request;
            match result.outcome.as_str() {
                "pending" => println!(
                    "Approved {}: {} of {} approvals; waiting for another member of {}.",
                    r.id,
                    result.approvals,
                    result.needed,
                    r.approvers.join(", ")
                ),
                "approved" => println!(
                    "Approved {}: {} of {} approvals; the statement may run.",
                    r.id, result.approvals, result.needed
                ),
                _ => println!("Rejected {}; the requester is told why.", r.id),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The HTTP client: only the given CA when `--ca-file` is set, else the built-in roots.
fn client(conn: &Connection) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT);
    if let Some(path) = &conn.ca_file {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{}: not a PEM certificate", path.display()))?;
        if certs.is_empty() {
            bail!("{}: no certificate found", path.display());
        }
        builder = builder.tls_built_in_root_certs(false);
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder.build()?)
}

/// Prints a refusal; duty refusals exit 1, everything else 2.
fn refused(status: StatusCode, body: &[u8], json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", pretty(body));
    }
    let Ok(err) = serde_json::from_slice::<ErrorBody>(body) else {
        bail!("the admin API answered {status}");
    };
    eprintln!("pgward: {} (SQLSTATE {})", err.error, err.sqlstate);
    if let Some(hint) = &err.hint {
        eprintln!("hint: {hint}");
    }
    Ok(match status {
        StatusCode::FORBIDDEN | StatusCode::CONFLICT => ExitCode::from(1),
        _ => ExitCode::from(2),
    })
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(body).context("the admin API answered something unexpected")
}

fn pretty(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned())
}

/// Ids are plain, but one typed with a slash or `?` must not reach another route.
fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The `list` table.
fn table(requests: &[RequestView], now: u64) -> String {
    if requests.is_empty() {
        return "No approval requests.\n".to_owned();
    }
    let rows: Vec<[String; 7]> = requests
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.state.clone(),
                r.requester.identity.clone(),
                r.rule.clone(),
                format!("{}/{}", r.approvals, r.needed),
                if r.state == "pending" {
                    until(r.expires_at.unix_ms, now)
                } else {
                    "-".to_owned()
                },
                one_line(&r.statement.sql, LIST_SQL_CHARS),
            ]
        })
        .collect();
    let header = [
        "ID",
        "STATE",
        "REQUESTER",
        "RULE",
        "APPROVALS",
        "EXPIRES",
        "SQL",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == header.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// The `show` block.
fn block(r: &RequestView, now: u64) -> String {
    let mut out = format!("Request   {}\n", r.id);
    let mut state = r.state.clone();
    if let Some(rej) = &r.rejection {
        state = format!("{state} by {}: {}", rej.by, rej.reason);
    }
    out.push_str(&format!("State     {state}\n"));
    out.push_str(&format!(
        "Requester {} (roles: {})\n",
        r.requester.identity,
        list_or_none(&r.requester.roles)
    ));
    out.push_str(&format!("Rule      {} ({} mode)\n", r.rule, r.mode));
    out.push_str(&format!(
        "Approvals {} of {} (approvers: {})\n",
        r.approvals,
        r.needed,
        list_or_none(&r.approvers)
    ));
    out.push_str(&format!("Created   {}\n", r.created_at.rfc3339));
    let expiry = if r.state == "pending" {
        format!(" ({})", until(r.expires_at.unix_ms, now))
    } else {
        String::new()
    };
    out.push_str(&format!("Expires   {}{expiry}\n", r.expires_at.rfc3339));
    out.push_str(&format!(
        "Database  {}   class: {}   tables: {}\n",
        r.statement.database,
        r.statement.class,
        list_or_none(&r.statement.tables)
    ));
    out.push_str(&format!(
        "Origin    session {} from {}\n",
        r.origin.session, r.origin.client_addr
    ));
    out.push_str("SQL\n");
    for l in r.statement.sql.lines() {
        out.push_str(&format!("    {l}\n"));
    }
    if !r.statement.params.is_empty() {
        out.push_str("Parameters\n");
        for (i, p) in r.statement.params.iter().enumerate() {
            let shown = p
                .as_deref()
                .map_or_else(|| "NULL".to_owned(), |v| format!("{v:?}"));
            out.push_str(&format!("    ${} = {shown}\n", i + 1));
        }
    }
    if !r.decisions.is_empty() {
        out.push_str("Decisions\n");
        for d in &r.decisions {
            let reason = d
                .reason
                .as_deref()
                .map_or_else(String::new, |why| format!(": {why}"));
            out.push_str(&format!(
                "    {} {} by {}{reason}\n",
                d.at.rfc3339, d.verdict, d.approver
            ));
        }
    }
    out
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// `in 4m 10s`, or `expired`.
fn until(at_ms: u64, now_ms: u64) -> String {
    let Some(left) = at_ms.checked_sub(now_ms).filter(|&l| l > 0) else {
        return "expired".to_owned();
    };
    let s = left / 1000;
    match s {
        0..60 => format!("in {s}s"),
        60..3600 => format!("in {}m {}s", s / 60, s % 60),
        _ => format!("in {}h {}m", s / 3600, s % 3600 / 60),
    }
}

/// The SQL on one line, whitespace collapsed and cut to `max` characters.
fn one_line(sql: &str, max: usize) -> String {
    let flat = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_reads_as_time_left() {
        assert_eq!(until(1_000, 2_000), "expired");
        assert_eq!(until(61_500, 0), "in 1m 1s");
        assert_eq!(until(7_200_000, 0), "in 2h 0m");
    }

    #[test]
    fn ids_cannot_leave_their_path_segment() {
        assert_eq!(path_segment("ab12-3"), "ab12-3");
        assert_eq!(path_segment("../x?y"), "%2E%2E%2Fx%3Fy");
    }

    #[test]
    fn long_sql_is_cut_on_one_line() {
        assert_eq!(one_line("drop\n  table t", 60), "drop table t");
        assert_eq!(one_line("abcdef", 4), "abc…");
    }
}
