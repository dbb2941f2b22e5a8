//! A stored approval request: the duty-checked [`Request`] plus what approvers are shown (the
//! statement, its parameters, where it came from) and, in retry mode, the one-time grant.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::duty::{Party, Request, RequestId, State, Timestamp};
use crate::policy::{ApprovalMode, ApprovalSpec, RuleId};

/// What a held statement would run, as approvers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// The SQL text as the client sent it.
    pub sql: String,
    /// Bound parameter values rendered as text (`None` for SQL NULL); binary values as `\x…` hex.
    pub params: Vec<Option<String>>,
    /// The statement class (`write`, `ddl` …).
    pub class: String,
    /// Tables read or written.
    pub tables: Vec<String>,
    /// The server database.
    pub database: String,
}

/// Where a request came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The pgward session (instance-qualified, unique across restarts).
    pub session: String,
    /// The client's address.
    pub client_addr: String,
}

/// One approval request as the stores keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Its state and decisions; changed only through the duty checks.
    pub request: Request,
    /// What will run.
    pub statement: Statement,
    /// Who asked from where.
    pub origin: Origin,
    /// SHA-256 of the text and parameters: what a retry-mode grant is valid for.
    pub fingerprint: String,
    /// When a retry-mode grant was used (it is good for one run).
    pub grant_used: Option<Timestamp>,
}

// === impl Ticket ===

impl Ticket {
    /// A new pending ticket.
    pub fn new(
        id: RequestId,
        requester: Party,
        rule: RuleId,
        spec: ApprovalSpec,
        statement: Statement,
        origin: Origin,
        now: Timestamp,
    ) -> Self {
        let fingerprint = fingerprint(&statement.sql, &statement.params);
        Ticket {
            request: Request::new(id, requester, rule, spec, now),
            statement,
            origin,
            fingerprint,
            grant_used: None,
        }
    }

    /// Whether `identity` may now run the statement with `fingerprint` once on this ticket's
    /// retry-mode grant: approved, same requester and statement, unused, within the window.
    pub fn grant_open(&self, identity: &str, fingerprint: &str, now: Timestamp) -> bool {
        let r = &self.request;
        let window_end = r
            .closed_at()
            .map(|at| at.saturating_add(r.spec().grant_window));
        r.spec().mode == ApprovalMode::Retry
            && *r.state() == State::Approved
            && r.requester().identity == identity
            && self.fingerprint == fingerprint
            && self.grant_used.is_none()
            && window_end.is_some_and(|end| now < end)
    }
}

/// SHA-256 (hex) over the text and each parameter, length-prefixed so that no two different
/// statements share a fingerprint by moving bytes between fields.
pub fn fingerprint(sql: &str, params: &[Option<String>]) -> String {
    let mut h = Sha256::new();
    h.update((sql.len() as u64).to_be_bytes());
    h.update(sql.as_bytes());
    for p in params {
        match p {
            None => h.update([0]),
            Some(v) => {
                h.update([1]);
                h.update((v.len() as u64).to_be_bytes());
                h.update(v.as_bytes());
            }
        }
    }
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

/// Renders protocol parameter values for people: text format as UTF-8 (lossy), binary as hex.
pub fn render_params(
    values: &[Option<&[u8]>],
    binary: impl Fn(usize) -> bool,
) -> Vec<Option<String>> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.map(|bytes| {
                if binary(i) {
                    let mut s = String::with_capacity(2 + bytes.len() * 2);
                    s.push_str("\\x");
                    for b in bytes {
                        s.push_str(&format!("{b:02x}"));
                    }
                    s
                } else {
                    String::from_utf8_lossy(bytes).into_owned()
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_separates_text_from_parameters() {
        let a = fingerprint("select $1", &[Some("ab".into())]);
        let b = fingerprint("select $1a", &[Some("b".into())]);
        let c = fingerprint("select $1", &[None]);
        let d = fingerprint("select $1", &[Some(String::new())]);
        assert_ne!(a, b);
        assert_ne!(c, d);
        assert_eq!(a, fingerprint("select $1", &[Some("ab".into())]));
    }

    #[test]
    fn parameters_render_as_text_or_hex() {
        let v: [Option<&[u8]>; 3] = [Some(b"42"), None, Some(&[0, 255])];
        let r = render_params(&v, |i| i == 2);
        assert_eq!(r, [Some("42".into()), None, Some("\\x00ff".into())]);
    }
}
