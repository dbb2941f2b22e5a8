//! Routes, authentication and error answers of the admin API.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /health` | `{"status":"ok"}`, no authentication |
//! | `GET /v1/approvals?state=pending\|all` | `{"requests": [RequestView…]}`, oldest first |
//! | `GET /v1/approvals/{id}` | a [`RequestView`] |
//! | `POST /v1/approvals/{id}/approve` | a [`DecisionResult`]; body empty or `{}` |
//! | `POST /v1/approvals/{id}/reject` | a [`DecisionResult`]; body `{"reason": "…"}` |
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

use super::view::{DecisionResult, ErrorBody, RequestView};
use crate::approval::{DutyError, Party, RequestId, StoreError, Ticket, Verdict};
use crate::proto::{Severity, Side, SqlState, ToErrorResponse};
use crate::session::Shared;

/// Largest request body accepted; approve and reject bodies are tiny.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Time a client has to send a request body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest request id looked up; ids pgward makes are far shorter.
const MAX_ID_LEN: usize = 128;

/// The admin API over what the sessions share.
#[derive(Debug)]
pub struct Api {
    shared: Arc<Shared>,
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
        if segments.first() != Some(&"v1") {
            return Err(Error::NoRoute(path));
        }
        // Authenticate before routing, so that unauthenticated callers learn nothing about
        // which paths or requests exist.
        let identity = self.authenticate(req.headers(), peer)?;
        match (&method, segments.as_slice()) {
            (&Method::GET, ["v1", "approvals"]) => self.list(&identity, req.uri().query()).await,
            (_, ["v1", "approvals"]) => Err(Error::MethodNotAllowed {
                method,
                allow: "GET",
            }),
            (&Method::GET, ["v1", "approvals", id]) => self.show(&identity, id).await,
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
                self.decide(&id, &identity, verdict).await
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

    /// The identity whose admin token the request carries.
    fn authenticate(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<String, Error> {
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
        match self.shared.identities.by_admin_token(token) {
            Some(identity) => Ok(identity.to_owned()),
            None => {
                info!(%peer, "Admin API: unknown bearer token");
                Err(Error::Unauthorized)
            }
        }
    }

    /// `identity` with its roles under the rules in force now.
    fn party(&self, identity: &str) -> Party {
        let file_roles = self
            .shared
            .identities
            .get(identity)
            .map_or(&[][..], |e| e.roles.as_slice());
        let roles = self
            .shared
            .rules
            .current()
            .roles_for(identity, file_roles, &[]);
        Party::new(identity, roles)
    }

    /// A request as `viewer` may see it: when a mask rule applies to the viewer on a table the
    /// statement touches, its parameter values are hidden (which parameter lands in which column
    /// is not known, so all of them are).
    fn view_for(&self, viewer: &Party, t: &Ticket) -> RequestView {
        let mut view = RequestView::from(t);
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

    async fn list(
        &self,
        identity: &str,
        query: Option<&str>,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let mut pending_only = true;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
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
        let viewer = self.party(identity);
        let requests: Vec<RequestView> =
            tickets.iter().map(|t| self.view_for(&viewer, t)).collect();
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "requests": requests }),
        ))
    }

    async fn show(&self, identity: &str, id: &str) -> Result<Response<Full<Bytes>>, Error> {
        let id = request_id(id)?;
        match self.shared.approvals.get(&id).await.map_err(Error::Store)? {
            Some(ticket) => Ok(json(
                StatusCode::OK,
                &self.view_for(&self.party(identity), &ticket),
            )),
            None => Err(Error::NotFound(id.to_string())),
        }
    }

    async fn decide(
        &self,
        id: &str,
        identity: &str,
        verdict: Verdict,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let id = request_id(id)?;
        let approver = self.party(identity);
        match self.shared.approvals.decide(&id, approver, verdict).await {
            Ok(Ok((outcome, ticket))) => {
                Ok(json(StatusCode::OK, &DecisionResult::new(outcome, &ticket)))
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
            Error::Store(_) => SqlState::IO_ERROR,
        }
    }

    fn severity(&self) -> Severity {
        Severity::Error
    }

    fn side(&self) -> Side {
        match self {
            Error::Store(StoreError::NotFound(_)) => Side::Client,
            Error::Store(_) => Side::Internal,
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
