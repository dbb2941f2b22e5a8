//! Routes, authentication and error answers of the admin API.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /health` | `{"status":"ok"}`, no authentication |
//! | `GET /v1/approvals?state=pending\|all` | `{"requests": [RequestView…]}`, oldest first |
//! | `GET /v1/approvals/{id}` | a [`RequestView`] |
//! | `POST /v1/approvals/{id}/approve` | a [`DecisionResult`]; body empty or `{}` |
//! | `POST /v1/approvals/{id}/reject` | a [`DecisionResult`]; body `{"reason": "…"}` |
//! | `GET /v1/me` | a [`MeView`]: the caller's identity, roles, and what they may do |
//! | `GET /v1/audit/sessions?identity=&since=&until=&decision=` | `{"sessions": [SessionSummaryView…]}`, auditors only |
//! | `GET /v1/audit/sessions/{id}` | a [`TimelineView`], auditors only |
//! | `GET /v1/audit/sessions/{id}?after=SEQ&wait=SECS` | the same once the session has a record after log sequence number `SEQ`, it has ended, or `SECS` (at most 25) have passed |
//! | `GET /v1/audit/verify` | a [`VerifyView`]: `pgward audit verify` on the live log, auditors only |
//! | `GET /` | a redirect to `/console` |
//! | `GET /console`, `/console/app.js`, `/console/app.css` | the web console ([`console`](super::console)), no authentication: it holds no data and signs in through this API |
//!
//! Every [`RequestView`] carries `can_decide` and `can_reject` for the caller, from the same
//! duty checks a decision passes ([`Request::may_decide`](crate::approval::Request::may_decide)). The audit
//! routes need one of `[admin] auditor_roles` (roles as the live rules resolve them, like
//! approvers' roles): others get 403. With auditing off they answer 409. `since` and `until`
//! take what `pgward audit sessions --since` takes (RFC 3339, a date, Unix seconds).
//!
//! Every error answer is an [`ErrorBody`]: the message, the SQLSTATE the same refusal carries
//! on the wire, and a hint. Nothing the client sends can make a handler panic: bodies are capped
//! and parsed into typed structs, and path segments are only compared, never interpreted.
//!
//! # Security
//! The bearer token is hashed and compared with every identity's `admin_token` in constant
//! time ([`Identities::by_admin_token`](crate::auth::Identities::by_admin_token)); it is never
//! logged. The approver's roles are resolved at each decision from the live rule set, so a
//! rules change that removes someone from an approver role takes effect at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use tracing::{info, warn};

use super::view::{DecisionResult, ErrorBody, MeView, RequestView};
#[cfg(doc)]
use super::view::{SessionSummaryView, TimelineView, VerifyView};
use crate::approval::{DutyError, Party, RequestId, StoreError, Ticket, Timestamp, Verdict};
use crate::audit::replay;
use crate::policy::Action;
use crate::proto::{Severity, Side, SqlState, ToErrorResponse};
use crate::session::Shared;

/// Largest request body accepted; approve and reject bodies are tiny.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Time a client has to send a request body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest request id looked up; ids pgward makes are far shorter.
const MAX_ID_LEN: usize = 128;

/// Longest a follower waits for a session's next record before it is answered anyway; well
/// under the listener's connection age, and short enough for proxies' idle timeouts.
const MAX_FOLLOW_WAIT: Duration = Duration::from_secs(25);

/// How often a follower checks whether the log grew.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// The admin API over what the sessions share.
#[derive(Debug)]
pub struct Api {
    shared: Arc<Shared>,
}

/// Who is calling, resolved once per request by `Api::authenticate`: the identity, its
/// roles under the live rules, and the credential it used. Every route decides from this, so
/// a new kind of credential only has to produce one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The identity, with its roles.
    pub party: Party,
    /// How it authenticated.
    pub credential: Credential,
}

/// How a caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An identity's `admin_token` from the identities file.
    AdminToken,
    /// A JWT: an OIDC provider's or a `pgward token issue` agent token.
    Token,
}

/// Why a request was not answered with what it asked for.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No bearer token, or one that matches no identity.
    #[error("missing or unknown bearer token")]
    Unauthorized,
    /// No route has this path.
    #[error("no such route: {0}")]
    NoRoute(String),
    /// The route exists, but not for this method.
    #[error("method {method} is not allowed here (allowed: {allow})")]
    MethodNotAllowed {
        /// The method used.
        method: Method,
        /// The methods the route accepts.
        allow: &'static str,
    },
    /// No request has this id.
    #[error("approval request {0} does not exist")]
    NotFound(String),
    /// The query string is not understood.
    #[error("bad query: {0}")]
    BadQuery(String),
    /// The body is not the JSON the route expects.
    #[error("bad request body: {0}")]
    BadJson(String),
    /// The body is larger than [`MAX_BODY_BYTES`].
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body could not be read in time or at all.
    #[error("request body unreadable: {0}")]
    BodyRead(String),
    /// The duty checks refused the decision.
    #[error(transparent)]
    Duty(#[from] DutyError),
    /// The caller lacks the role a route needs.
    #[error("{identity} holds none of the roles that may {what} ({})", roles.join(", "))]
    Forbidden {
        /// The caller.
        identity: String,
        /// What they tried.
        what: &'static str,
        /// The roles that may.
        roles: Vec<String>,
    },
    /// The audit routes were called with auditing off.
    #[error("auditing is off: pgward has no audit log to read")]
    AuditOff,
    /// The audit log has no such session.
    #[error("{0}")]
    NoSession(String),
    /// The audit log could not be read.
    #[error(transparent)]
    Audit(crate::audit::Error),
    /// A blocking task failed (a bug).
    #[error("internal error: {0}")]
    Internal(String),
    /// The approval store failed.
    #[error(transparent)]
    Store(StoreError),
}

/// `{}`: an approval carries nothing, but a body with unknown fields is refused rather than
/// silently ignored, so that a client can't believe it attached a comment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {}

/// `{"reason": "…"}`; a missing reason is left to the duty checks, which refuse it with a hint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectBody {
    #[serde(default)]
    reason: String,
}

// === impl Api ===

impl Api {
    /// The API over `shared`: its approvals, identities and rules.
    pub fn new(shared: Arc<Shared>) -> Self {
        Api { shared }
    }

    /// Answers one request. Never fails: every error becomes an [`ErrorBody`] answer.
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match self.route(req, peer).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        }
    }

    async fn route<B>(
        &self,
        req: Request<B>,
        peer: SocketAddr,
    ) -> Result<Response<Full<Bytes>>, Error>
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = req.method().clone();
        // Open to probes and scrapers: they say how pgward is, not what its data is.
        if let ["health" | "healthz" | "readyz" | "metrics"] = segments.as_slice() {
            if method != Method::GET {
                return Err(Error::MethodNotAllowed {
                    method,
                    allow: "GET",
                });
            }
            return Ok(match segments[0] {
                "readyz" => self.readiness().await,
                "metrics" => metrics_text(&self.shared.metrics.render()),
                _ => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
            });
        }
        // The console's files hold no data: the page signs in through this API like any client.
        if let [""] | ["console", ..] = segments.as_slice() {
            if method != Method::GET && method != Method::HEAD {
                return Err(Error::MethodNotAllowed {
                    method,
                    allow: "GET, HEAD",
                });
            }
            if segments == [""] {
                return Ok(super::console::redirect());
            }
            return super::console::asset(&path).ok_or(Error::NoRoute(path));
        }
        if segments.first() != Some(&"v1") {
            return Err(Error::NoRoute(path));
        }
        // Authenticate before routing, so that unauthenticated callers learn nothing about
        // which paths or requests exist.
        let caller = self.authenticate(req.headers(), peer)?;
        let query = req.uri().query().unwrap_or("");
        match (&method, segments.as_slice()) {
            (&Method::GET, ["v1", "me"]) => Ok(json(StatusCode::OK, &self.me(&caller))),
            (&Method::GET, ["v1", "audit", "sessions"]) => self.sessions(&caller, query).await,
            (&Method::GET, ["v1", "audit", "sessions", id]) => {
                self.timeline(&caller, id, query).await
            }
            (&Method::GET, ["v1", "audit", "verify"]) => self.verify(&caller).await,
            (_, ["v1", "me"] | ["v1", "audit", "sessions" | "verify"])
            | (_, ["v1", "audit", "sessions", _]) => Err(Error::MethodNotAllowed {
                method,
                allow: "GET",
            }),
            (&Method::GET, ["v1", "approvals"]) => self.list(&caller, query).await,
            (_, ["v1", "approvals"]) => Err(Error::MethodNotAllowed {
                method,
                allow: "GET",
            }),
            (&Method::GET, ["v1", "approvals", id]) => self.show(&caller, id).await,
            (_, ["v1", "approvals", _]) => Err(Error::MethodNotAllowed {
                method,
                allow: "GET",
            }),
            (&Method::POST, ["v1", "approvals", id, verb @ ("approve" | "reject")]) => {
                let (id, verb) = ((*id).to_owned(), *verb);
                let body = read_body(req).await?;
                let verdict = if verb == "approve" {
                    parse_body::<ApproveBody>(&body)?;
                    Verdict::Approve
                } else {
                    let RejectBody { reason } = parse_body(&body)?;
                    Verdict::Reject { reason }
                };
                self.decide(&id, &caller, verdict).await
            }
            (_, ["v1", "approvals", _, "approve" | "reject"]) => Err(Error::MethodNotAllowed {
                method,
                allow: "POST",
            }),
            _ => Err(Error::NoRoute(path)),
        }
    }

    /// `/readyz`: 200 when pgward can serve, else 503 naming what fails. Checked: the upstream
    /// server (a `SELECT 1` on pgward's own connection), the audit log (not failed), the approval
    /// store (answers). The rules are reported but never fail readiness: after a bad reload the
    /// previous rules stay in force, and taking every instance out at once would be an outage.
    async fn readiness(&self) -> Response<Full<Bytes>> {
        let shared = &self.shared;
        let mut checks = serde_json::Map::new();
        let mut failing = Vec::new();
        let mut check = |name: &str, result: Result<(), String>| match result {
            Ok(()) => {
                checks.insert(name.to_owned(), "ok".into());
            }
            Err(e) => {
                checks.insert(name.to_owned(), e.into());
                failing.push(name.to_owned());
            }
        };
        let upstream = &shared.config.upstream;
        let database = upstream
            .databases
            .get("*")
            .or_else(|| upstream.databases.values().next())
            .map_or("postgres", String::as_str);
        let probe = async {
            let client = shared
                .metadata
                .get(database)
                .await
                .map_err(|e| e.to_string())?;
            client
                .simple_query("SELECT 1")
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let timeout = upstream.connect_timeout.max(Duration::from_secs(1));
        check(
            "upstream",
            tokio::time::timeout(timeout, probe)
                .await
                .unwrap_or_else(|_| Err("timed out".to_owned())),
        );
        check(
            "audit",
            shared
                .audit
                .as_ref()
                .map_or(Ok(()), |log| log.check().map_err(|e| e.to_string())),
        );
        check(
            "approvals",
            tokio::time::timeout(timeout, shared.approvals.ping())
                .await
                .map_err(|_| "timed out".to_owned())
                .and_then(|r| r.map_err(|e| e.to_string())),
        );
        let rules = match shared.rules.last_error() {
            None => "ok".to_owned(),
            Some(e) => format!("serving the previous rules; the last reload failed: {e}"),
        };
        checks.insert("rules".to_owned(), rules.into());
        let ready = failing.is_empty();
        json(
            if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            &serde_json::json!({
                "status": if ready { "ready" } else { "not ready" },
                "failing": failing,
                "checks": checks,
            }),
        )
    }

    /// The caller whose bearer token the request carries, with its roles under the rules in
    /// force now. This is the one place a credential becomes a [`Caller`].
    fn authenticate(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<Caller, Error> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(Error::Unauthorized);
        };
        if let Some(identity) = self.shared.identities.by_admin_token(token) {
            return Ok(Caller {
                party: self.party(identity, &[]),
                credential: Credential::AdminToken,
            });
        }
        // A JWT (an OIDC provider's or an agent token) verified like a client's token: its
        // groups map to roles exactly as for client connections.
        if let Some(verifier) = &self.shared.tokens
            && token.matches('.').count() == 2
        {
            match verifier.verify_bearer(token) {
                Ok(v) => {
                    // As in sessions: the token's roles and groups, never the identities file's.
                    let roles = self
                        .shared
                        .rules
                        .current()
                        .roles_for(&v.name, &v.roles, &v.groups);
                    return Ok(Caller {
                        party: Party::new(v.name, roles),
                        credential: Credential::Token,
                    });
                }
                Err(e) => {
                    info!(%peer, reason = %e, "Admin API: bearer token refused");
                    return Err(Error::Unauthorized);
                }
            }
        }
        info!(%peer, "Admin API: unknown bearer token");
        Err(Error::Unauthorized)
    }

    /// `identity` with its roles under the rules in force now: those the identities file gives
    /// it, those whose members name it, and those of its token `groups`.
    fn party(&self, identity: &str, groups: &[String]) -> Party {
        let file_roles = self
            .shared
            .identities
            .get(identity)
            .map_or(&[][..], |e| e.roles.as_slice());
        let roles = self
            .shared
            .rules
            .current()
            .roles_for(identity, file_roles, groups);
        Party::new(identity, roles)
    }

    /// `GET /v1/me`.
    fn me(&self, caller: &Caller) -> MeView {
        let rules = self.shared.rules.current();
        let approver_of = rules
            .rules()
            .iter()
            .filter(|r| match r.action() {
                Action::Approve(spec) => spec
                    .approvers
                    .iter()
                    .any(|a| caller.party.roles.contains(a)),
                _ => false,
            })
            .map(|r| r.id().to_string())
            .collect();
        MeView {
            identity: caller.party.identity.clone(),
            roles: caller.party.roles.clone(),
            credential: match caller.credential {
                Credential::AdminToken => "admin_token",
                Credential::Token => "token",
            }
            .to_owned(),
            is_auditor: self.is_auditor(caller),
            audit_enabled: self.shared.config.audit.is_some(),
            approver_of,
        }
    }

    /// Whether the caller holds one of `[admin] auditor_roles`.
    fn is_auditor(&self, caller: &Caller) -> bool {
        self.auditor_roles()
            .iter()
            .any(|r| caller.party.roles.contains(r))
    }

    fn auditor_roles(&self) -> &[String] {
        self.shared
            .config
            .admin
            .as_ref()
            .map_or(&[][..], |a| a.auditor_roles.as_slice())
    }

    /// The audit log's directory, for an auditor.
    ///
    /// # Errors
    /// [`Error::Forbidden`] for anyone else; [`Error::AuditOff`] when there is no log.
    fn audit_dir(&self, caller: &Caller) -> Result<std::path::PathBuf, Error> {
        if !self.is_auditor(caller) {
            warn!(identity = %caller.party.identity, "Admin API: audit log refused to a non-auditor");
            return Err(Error::Forbidden {
                identity: caller.party.identity.clone(),
                what: "read the audit log",
                roles: self.auditor_roles().to_vec(),
            });
        }
        match &self.shared.config.audit {
            Some(a) => Ok(a.dir.clone()),
            None => Err(Error::AuditOff),
        }
    }

    /// `GET /v1/audit/sessions`.
    async fn sessions(&self, caller: &Caller, query: &str) -> Result<Response<Full<Bytes>>, Error> {
        let dir = self.audit_dir(caller)?;
        let mut filter = replay::Filter::default();
        for (key, value) in query_pairs(query) {
            let value = Some(value).filter(|v| !v.is_empty());
            let time = |v: Option<String>| {
                v.as_deref()
                    .map(crate::audit::time::parse_since)
                    .transpose()
                    .map_err(|e| Error::BadQuery(format!("{key}: {e}")))
            };
            match key.as_str() {
                "identity" => filter.identity = value,
                "decision" => filter.decision = value,
                "since" => filter.since_us = time(value)?,
                "until" => filter.until_us = time(value)?,
                _ => {
                    return Err(Error::BadQuery(format!(
                        "unknown parameter `{key}` (identity, since, until, decision)"
                    )));
                }
            }
        }
        let sessions = blocking(move || super::audit::sessions(&dir, &filter)).await?;
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "sessions": sessions }),
        ))
    }

    /// `GET /v1/audit/sessions/{id}`, and with `after`, waiting for the session's next record.
    async fn timeline(
        &self,
        caller: &Caller,
        id: &str,
        query: &str,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let dir = self.audit_dir(caller)?;
        let id = session_id(id)?;
        let (mut after, mut wait) = (None, Duration::ZERO);
        for (key, value) in query_pairs(query) {
            match key.as_str() {
                "after" => {
                    after = Some(value.parse::<u64>().map_err(|_| {
                        Error::BadQuery("after must be a log sequence number".to_owned())
                    })?);
                }
                "wait" => {
                    let secs = value.parse::<u64>().map_err(|_| {
                        Error::BadQuery("wait must be a number of seconds".to_owned())
                    })?;
                    wait = Duration::from_secs(secs).min(MAX_FOLLOW_WAIT);
                }
                _ => {
                    return Err(Error::BadQuery(format!(
                        "unknown parameter `{key}` (after, wait)"
                    )));
                }
            }
        }
        let deadline = tokio::time::Instant::now() + wait;
        let mut stamp = {
            let dir = dir.clone();
            blocking(move || super::audit::stamp(&dir)).await?
        };
        let mut follower = {
            let dir = dir.clone();
            blocking(move || super::audit::Follower::open(&dir, &id)).await?
        };
        loop {
            let view = follower.timeline(after);
            if view.changed || view.end.is_some() || tokio::time::Instant::now() >= deadline {
                return Ok(json(StatusCode::OK, &view));
            }
            // Nothing new yet: sleep until the log grows (or the wait is over), then read what
            // was appended. Dropping this future (the client went away) ends the wait.
            tokio::time::sleep(FOLLOW_POLL).await;
            let grown = {
                let dir = dir.clone();
                blocking(move || super::audit::stamp(&dir)).await?
            };
            if grown != stamp {
                stamp = grown;
                follower = blocking(move || {
                    let mut f = follower;
                    f.poll()?;
                    Ok(f)
                })
                .await?;
            }
        }
    }

    /// `GET /v1/audit/verify`.
    async fn verify(&self, caller: &Caller) -> Result<Response<Full<Bytes>>, Error> {
        let dir = self.audit_dir(caller)?;
        let key = self
            .shared
            .config
            .audit
            .as_ref()
            .and_then(|a| a.signing_key_file.clone());
        let view = blocking(move || super::audit::verify_log(&dir, key.as_deref())).await?;
        Ok(json(StatusCode::OK, &view))
    }

    /// A request as `viewer` may see it: when a mask rule applies to the viewer on a table the
    /// statement touches, its parameter values are hidden (which parameter lands in which column
    /// is not known, so all of them are).
    fn view_for(&self, viewer: &Party, t: &Ticket) -> RequestView {
        let mut view = RequestView::from(t);
        let now = Timestamp::from_system_time(std::time::SystemTime::now());
        match t.request.may_decide(viewer, &Verdict::Approve, now) {
            Ok(()) => view.can_decide = true,
            Err(e) => view.cannot_decide = Some(why_not(&e)),
        }
        // Any reason will do here: only whether the viewer may reject at all is asked.
        let reject = Verdict::Reject {
            reason: "?".to_owned(),
        };
        view.can_reject = t.request.may_decide(viewer, &reject, now).is_ok();
        let rules = self.shared.rules.current();
        let tables: Vec<crate::sql::TableName> = t
            .statement
            .tables
            .iter()
            .map(|table| {
                let (schema, name) = table.split_once('.').unwrap_or(("public", table));
                crate::sql::TableName::new(schema, name)
            })
            .collect();
        if rules.masks_on(&viewer.roles, &tables).next().is_some() {
            for p in view.statement.params.iter_mut().flatten() {
                *p = MASKED_PARAMETER.to_owned();
            }
            view.statement.params_masked = true;
        }
        view
    }

    async fn list(&self, caller: &Caller, query: &str) -> Result<Response<Full<Bytes>>, Error> {
        let mut pending_only = true;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("state", "pending")) => pending_only = true,
                Some(("state", "all")) => pending_only = false,
                Some(("state", _)) | None if pair.starts_with("state") => {
                    return Err(Error::BadQuery(
                        "state must be `pending` or `all`".to_owned(),
                    ));
                }
                _ => {}
            }
        }
        let tickets = self
            .shared
            .approvals
            .list(pending_only)
            .await
            .map_err(Error::Store)?;
        let requests: Vec<RequestView> = tickets
            .iter()
            .map(|t| self.view_for(&caller.party, t))
            .collect();
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "requests": requests }),
        ))
    }

    async fn show(&self, caller: &Caller, id: &str) -> Result<Response<Full<Bytes>>, Error> {
        let id = request_id(id)?;
        match self.shared.approvals.get(&id).await.map_err(Error::Store)? {
            Some(ticket) => Ok(json(StatusCode::OK, &self.view_for(&caller.party, &ticket))),
            None => Err(Error::NotFound(id.to_string())),
        }
    }

    async fn decide(
        &self,
        id: &str,
        caller: &Caller,
        verdict: Verdict,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let id = request_id(id)?;
        let identity = &caller.party.identity;
        match self
            .shared
            .approvals
            .decide(&id, caller.party.clone(), verdict)
            .await
        {
            Ok(Ok((outcome, ticket))) => {
                // Shown as the approver may see it: masked parameters stay masked.
                let request = self.view_for(&caller.party, &ticket);
                Ok(json(StatusCode::OK, &DecisionResult::new(outcome, request)))
            }
            Ok(Err(refused)) => {
                // Refused attempts are not stored on the request; the log is their record.
                warn!(request = %id, approver = %identity, error = %refused, "Approval decision refused");
                Err(Error::Duty(refused))
            }
            Err(e) => Err(Error::Store(e)),
        }
    }
}

/// What a hidden parameter value shows.
const MASKED_PARAMETER: &str = "***";

/// Why a viewer may not decide a request, in the words the console shows them.
fn why_not(e: &DutyError) -> String {
    match e {
        DutyError::SelfDecision { approvers, .. } => format!(
            "your own request: another member of {} must decide it",
            approvers.join(", ")
        ),
        DutyError::NotAnApprover {
            rule, approvers, ..
        } => format!(
            "not an approver of rule {rule}: only members of {} may decide it",
            approvers.join(", ")
        ),
        DutyError::AlreadyApproved {
            approvals, needed, ..
        } => format!("you already approved it ({approvals} of {needed} approvals)"),
        DutyError::Decided { state, .. } => format!("it is already {state}"),
        DutyError::Expired { .. } => "it expired".to_owned(),
        DutyError::NotRequester { .. } | DutyError::MissingReason { .. } => e.to_string(),
    }
}

/// Runs blocking work (reading the audit log) off the async runtime.
async fn blocking<T, F>(f: F) -> Result<T, Error>
where
    F: FnOnce() -> Result<T, crate::audit::Error> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(crate::audit::Error::NoSession(m))) => Err(Error::NoSession(m)),
        Ok(Err(e)) => Err(Error::Audit(e)),
        Err(e) => Err(Error::Internal(e.to_string())),
    }
}

/// A path segment as a session id (`INSTANCE-NUMBER` or `NUMBER`): short and plain, or it
/// names no session.
fn session_id(segment: &str) -> Result<String, Error> {
    let plain = !segment.is_empty()
        && segment.len() <= MAX_ID_LEN
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        Ok(segment.to_owned())
    } else {
        Err(Error::NoSession(format!(
            "`{}` is not a session id (INSTANCE-NUMBER or NUMBER)",
            segment.chars().take(MAX_ID_LEN).collect::<String>()
        )))
    }
}

/// The `key=value` pairs of a query string, percent-decoded (`+` is a space).
fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

/// Decodes `%XX` escapes and `+`; a malformed escape is kept as it is, and invalid UTF-8
/// becomes U+FFFD (such a value then matches nothing).
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => {
                    // Two hex digits are at most 0xff.
                    out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A path segment as a request id: ids pgward makes are short and plain, so anything else
/// can't name a request.
fn request_id(segment: &str) -> Result<RequestId, Error> {
    let plain = !segment.is_empty()
        && segment.len() <= MAX_ID_LEN
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        Ok(RequestId::new(segment))
    } else {
        Err(Error::NotFound(segment.chars().take(MAX_ID_LEN).collect()))
    }
}

/// The whole body, at most [`MAX_BODY_BYTES`], within [`BODY_READ_TIMEOUT`].
async fn read_body<B>(req: Request<B>) -> Result<Bytes, Error>
where
    B: Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(Error::TooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES);
    match tokio::time::timeout(BODY_READ_TIMEOUT, body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(Error::TooLarge {
            limit: MAX_BODY_BYTES,
        }),
        Ok(Err(e)) => Err(Error::BodyRead(e.to_string())),
        Err(_) => Err(Error::BodyRead("timed out".to_owned())),
    }
}

/// Parses a JSON body; an empty body counts as `{}`.
fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Error> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| Error::BadJson(e.to_string()))
}

/// A JSON answer. Approval data names people and statements, so nothing may cache it.
/// The Prometheus text exposition.
fn metrics_text(text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    // Views hold only strings, numbers and lists: serializing them can't fail.
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// === impl Error ===

impl Error {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::NoRoute(_) | Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::BadQuery(_) | Error::BadJson(_) | Error::BodyRead(_) => StatusCode::BAD_REQUEST,
            Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Duty(e) => match e {
                DutyError::SelfDecision { .. }
                | DutyError::NotAnApprover { .. }
                | DutyError::AlreadyApproved { .. }
                | DutyError::NotRequester { .. } => StatusCode::FORBIDDEN,
                DutyError::Decided { .. } | DutyError::Expired { .. } => StatusCode::CONFLICT,
                DutyError::MissingReason { .. } => StatusCode::BAD_REQUEST,
            },
            Error::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            Error::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::AuditOff => StatusCode::CONFLICT,
            Error::NoSession(_) => StatusCode::NOT_FOUND,
            Error::Audit(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error as an HTTP answer with an [`ErrorBody`].
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = ErrorBody {
            error: self.to_string(),
            sqlstate: self.sqlstate().code().to_owned(),
            hint: self.hint(),
        };
        let mut response = json(self.status(), &body);
        let headers = response.headers_mut();
        match &self {
            Error::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"pgward\""),
                );
            }
            Error::MethodNotAllowed { allow, .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            _ => {}
        }
        response
    }
}

impl ToErrorResponse for Error {
    fn sqlstate(&self) -> SqlState {
        match self {
            Error::Unauthorized => SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            Error::NoRoute(_) | Error::NotFound(_) | Error::Store(StoreError::NotFound(_)) => {
                SqlState::UNDEFINED_OBJECT
            }
            Error::MethodNotAllowed { .. } => SqlState::FEATURE_NOT_SUPPORTED,
            Error::BadQuery(_) => SqlState::INVALID_PARAMETER_VALUE,
            Error::BadJson(_) => SqlState::INVALID_JSON_TEXT,
            Error::TooLarge { .. } => SqlState::PROGRAM_LIMIT_EXCEEDED,
            Error::BodyRead(_) => SqlState::PROTOCOL_VIOLATION,
            Error::Duty(e) => e.sqlstate(),
            Error::Store(_) | Error::Audit(_) => SqlState::IO_ERROR,
            Error::Forbidden { .. } => SqlState::INSUFFICIENT_PRIVILEGE,
            Error::AuditOff => SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            Error::NoSession(_) => SqlState::UNDEFINED_OBJECT,
            Error::Internal(_) => SqlState::INTERNAL_ERROR,
        }
    }

    fn severity(&self) -> Severity {
        Severity::Error
    }

    fn side(&self) -> Side {
        match self {
            Error::Store(StoreError::NotFound(_)) => Side::Client,
            Error::Store(_) | Error::Audit(_) | Error::Internal(_) => Side::Internal,
            _ => Side::Client,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Error::Unauthorized => Some(
                "send `Authorization: Bearer <token>`; `pgward passwd NAME --admin-token` makes one"
                    .to_owned(),
            ),
            Error::NotFound(_) | Error::Store(StoreError::NotFound(_)) => {
                Some("`pgward approvals list --all` shows the known requests".to_owned())
            }
            Error::Duty(e) => e.hint(),
            Error::Store(_) => Some("the approval store is unavailable; try again".to_owned()),
            Error::Forbidden { roles, .. } => Some(format!(
                "ask for one of the roles {} (`[admin] auditor_roles`)",
                roles.join(", ")
            )),
            Error::AuditOff => {
                Some("turn the audit log on with an `[audit]` section (or `data_dir`)".to_owned())
            }
            Error::NoSession(_) => {
                Some("`GET /v1/audit/sessions` lists the sessions in the log".to_owned())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_are_looked_up() {
        assert!(request_id("0a1b2c3d-17beef").is_ok());
        for bad in ["", "..", "a/b", "a b", "ä", &"a".repeat(MAX_ID_LEN + 1)] {
            assert!(
                matches!(request_id(bad), Err(Error::NotFound(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(percent_decode("agent%2D7"), "agent-7");
        assert_eq!(percent_decode("group%3Aai+agents"), "group:ai agents");
        assert_eq!(
            percent_decode("2026-01-02T03%3A04%3A05.000Z"),
            "2026-01-02T03:04:05.000Z"
        );
        // Malformed escapes stay as they are; invalid UTF-8 can't match an identity.
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        let pairs: Vec<(String, String)> = query_pairs("identity=a%40b&&decision=&x").collect();
        assert_eq!(
            pairs,
            [
                ("identity".to_owned(), "a@b".to_owned()),
                ("decision".to_owned(), String::new()),
                ("x".to_owned(), String::new()),
            ]
        );
        assert!(session_id("abc-12").is_ok());
        assert!(matches!(session_id("../x"), Err(Error::NoSession(_))));
    }

    #[test]
    fn bodies_parse_strictly_and_empty_means_empty_object() {
        assert!(parse_body::<ApproveBody>(b"").is_ok());
        assert!(parse_body::<ApproveBody>(b" \n").is_ok());
        assert!(parse_body::<ApproveBody>(b"{}").is_ok());
        assert!(matches!(
            parse_body::<ApproveBody>(b"{\"comment\":1}"),
            Err(Error::BadJson(_))
        ));
        let r: RejectBody = parse_body(b"").unwrap();
        assert_eq!(r.reason, "");
        let r: RejectBody = parse_body(br#"{"reason":"why"}"#).unwrap();
        assert_eq!(r.reason, "why");
        assert!(matches!(
            parse_body::<RejectBody>(b"{\"reason\":"),
            Err(Error::BadJson(_))
        ));
    }

    #[test]
    fn duty_refusals_map_to_forbidden_conflict_or_bad_request() {
        let (request, rule) = (
            RequestId::new("r-1"),
            serde_json::from_str::<crate::policy::RuleId>("\"rule-a\"").unwrap(),
        );
        let forbidden = Error::Duty(DutyError::SelfDecision {
            request: request.clone(),
            rule: rule.clone(),
            identity: "ann".into(),
            approvers: vec!["dba".into()],
        });
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        assert_eq!(forbidden.sqlstate(), SqlState::INSUFFICIENT_PRIVILEGE);
        let conflict = Error::Duty(DutyError::Decided {
            request: request.clone(),
            rule: rule.clone(),
            state: "approved",
        });
        assert_eq!(conflict.status(), StatusCode::CONFLICT);
        let missing = Error::Duty(DutyError::MissingReason { request, rule });
        assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            Error::Store(StoreError::Postgres("down".into())).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let unauthorized = Error::Unauthorized.into_response();
        assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert!(
            unauthorized
                .headers()
                .contains_key(header::WWW_AUTHENTICATE)
        );
    }
}
