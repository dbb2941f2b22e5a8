//! [`RuleSet::decide`]: one request → one [`Decision`], first match wins.
//!
//! Pure and cheap: the candidates for each (role, class) pair were indexed at
//! load time, so deciding walks only the rules that could apply, compares
//! names against compiled patterns, and allocates nothing. Text for the
//! client ([`Decision::message`], [`Decision::hint`]) is built only when
//! asked for, which the session does only on a refusal.
//!
//! # Security
//! Fail closed: no matching rule is a deny ([`DEFAULT_DENY`]); requester
//! roles the rules do not define match nothing. Refusal text names the rule,
//! the roles and the class, never the SQL text or any value from it.

use std::fmt::Write as _;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::glob::NameFilter;
use super::leak::{self, Leak};
use super::rules::{Action, ApprovalMode, DEFAULT_DENY, RuleId, RuleSet};
use crate::sql::{Analysis, StatementClass, StatementProfile};

/// The outcome for the default rule.
static DEFAULT_ACTION: Action = Action::Deny;

/// What is being decided: who asks, where, to run what.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The requester's roles (see [`RuleSet::roles_for`]).
    pub roles: &'a [String],
    /// The database the session is connected to, as the client named it.
    pub database: &'a str,
    /// The statement's profile.
    pub profile: &'a StatementProfile,
}

/// The decision for one request, borrowing from the rule set and the request.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    /// What to do.
    pub action: &'a Action,
    /// The rule that decided, or [`DEFAULT_DENY`].
    pub rule: &'a RuleId,
    /// The class of the statement decided.
    pub class: StatementClass,
    /// The requester's roles.
    pub roles: &'a [String],
    reason: Option<&'a str>,
    /// Set when a rule allowed the statement but it would reveal a masked value: the decision
    /// is then a deny by that mask rule.
    pub leak: Option<Leak<'a>>,
}

// === impl RuleSet (evaluation) ===

impl RuleSet {
    /// Decides one statement: the first rule (in file order) whose conditions
    /// all hold, or a deny by [`DEFAULT_DENY`].
    ///
    /// # Performance
    /// No allocation; walks only the rules indexed under the requester's
    /// roles and the statement's class (see `benches/policy.rs`).
    pub fn decide<'a>(&'a self, req: &Request<'a>) -> Decision<'a> {
        let class = req.profile.class;
        let touched = touched_tables(req.profile);
        let mut best: Option<u32> = None;
        for role in req.roles {
            for c in self.candidates(role, class) {
                let i = c.index;
                if best.is_some_and(|b| i >= b) {
                    break;
                }
                if !c.may_match(touched) {
                    continue;
                }
                if self
                    .rule_at(i)
                    .is_some_and(|r| r.matches_rest(req.database, req.profile, touched))
                {
                    best = Some(i);
                    break;
                }
            }
        }
        let decision = match best.and_then(|i| self.rule_at(i)) {
            Some(rule) => Decision {
                action: rule.action(),
                rule: rule.id(),
                class,
                roles: req.roles,
                reason: rule.reason(),
                leak: None,
            },
            None => Decision {
                action: &DEFAULT_ACTION,
                rule: self.default_rule(),
                class,
                roles: req.roles,
                reason: None,
                leak: None,
            },
        };
        if matches!(decision.action, Action::Deny) {
            return decision;
        }
        // Allowed or to be approved, but neither can unmask what it would reveal.
        match leak::check(req.profile, self.masks(), req.roles) {
            Some(leak) => Decision {
                action: &DEFAULT_ACTION,
                rule: leak.rule.id(),
                reason: leak.rule.description(),
                leak: Some(leak),
                ..decision
            },
            None => decision,
        }
    }

    /// Decides a whole text: each statement on its own, and the strictest
    /// outcome wins (deny, then approve, then allow; the earliest statement
    /// among equals). A text without statements is decided by its combined
    /// profile.
    ///
    /// Deciding statement by statement is sound (each one that runs was
    /// allowed on its own) and avoids refusing `SELECT …; UPDATE orders …`
    /// just because no single rule covers the union of both statements' tables.
    pub fn decide_all<'a>(
        &'a self,
        roles: &'a [String],
        database: &'a str,
        analysis: &'a Analysis,
    ) -> Decision<'a> {
        let decide = |profile: &'a StatementProfile| {
            self.decide(&Request {
                roles,
                database,
                profile,
            })
        };
        let mut worst: Option<Decision<'a>> = None;
        for s in &analysis.statements {
            let d = decide(&s.profile);
            if worst.is_none_or(|w| d.action.severity() > w.action.severity()) {
                worst = Some(d);
            }
        }
        worst.unwrap_or_else(|| decide(&analysis.combined))
    }
}

/// The [`NameFilter`] of every table a statement reads or writes, computed
/// once per decision; `None` when it touches none.
fn touched_tables(p: &StatementProfile) -> Option<NameFilter> {
    let mut f = NameFilter::default();
    let mut any = false;
    for t in p.tables_read.iter().chain(&p.tables_written) {
        f.add(&t.schema, &t.name);
        any = true;
    }
    any.then_some(f)
}

// === impl Decision ===

impl Decision<'_> {
    /// Whether the statement may run now.
    pub fn is_allowed(&self) -> bool {
        matches!(self.action, Action::Allow)
    }

    /// Whether no rule matched.
    pub fn is_default(&self) -> bool {
        self.rule.as_str() == DEFAULT_DENY
    }

    /// The matching rule's `reason`, if it gave one.
    pub fn reason(&self) -> Option<&str> {
        self.reason
    }

    /// The one-line message for the client's ErrorResponse (or the log, when allowed).
    pub fn message(&self) -> String {
        if let Some(leak) = &self.leak {
            return leak.message();
        }
        match self.action {
            Action::Allow => format!("allowed by pgward rule \"{}\"", self.rule),
            Action::Deny => format!("permission denied by pgward rule \"{}\"", self.rule),
            Action::Approve(_) => format!("approval required by pgward rule \"{}\"", self.rule),
        }
    }

    /// The HINT for a refusal: how to get the statement through. `None` when allowed.
    pub fn hint(&self) -> Option<String> {
        let mut h = String::new();
        if let Some(reason) = self.reason {
            let _ = write!(h, "{reason}; ");
        }
        if let Some(leak) = &self.leak {
            h.push_str(leak.hint());
            return Some(h);
        }
        match self.action {
            Action::Allow => return None,
            Action::Deny if self.is_default() => {
                let _ = match self.roles {
                    [] => write!(
                        h,
                        "no rule allows an identity without roles to run {} statements; give it \
                         a role in the identities file or the rules directory",
                        self.class
                    ),
                    roles => write!(
                        h,
                        "no rule allows role(s) {} to run {} statements; add a rule to the rules \
                         directory",
                        roles.join(", "),
                        self.class
                    ),
                };
            }
            Action::Deny => {
                let _ = write!(
                    h,
                    "ask a DBA to change rule \"{}\" in the rules directory",
                    self.rule
                );
            }
            Action::Approve(spec) => {
                let n = spec.min_approvals;
                let _ = write!(
                    h,
                    "this statement needs approval by {} ({n} approval{}); {}",
                    spec.approvers.join(" or "),
                    if n == 1 { "" } else { "s" },
                    match spec.mode {
                        ApprovalMode::Hold => "pgward holds it until they decide",
                        ApprovalMode::Retry =>
                            "pgward makes a request; run it again once it is approved",
                    }
                );
            }
        }
        Some(h)
    }
}

impl Serialize for Decision<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let approve = match self.action {
            Action::Approve(spec) => Some(spec),
            _ => None,
        };
        let mut st = s.serialize_struct("Decision", 6)?;
        st.serialize_field("decision", self.action.as_str())?;
        st.serialize_field("rule", self.rule)?;
        st.serialize_field("class", &self.class)?;
        st.serialize_field("message", &self.message())?;
        st.serialize_field("hint", &self.hint())?;
        match approve {
            Some(spec) => st.serialize_field("approval", spec)?,
            None => st.skip_field("approval")?,
        }
        st.end()
    }
}
