//! Text rendering of a [`Decision`] for `pgward explain --rules`.
//!
//! Short and stable, for people: the action, the rule, and what the client
//! would be told. Never the SQL text (the caller prints the profile itself).

use std::fmt::Write as _;

use super::{Action, Decision};

/// Renders a decision as a few `key: value` lines.
///
/// ```text
/// decision: approve
/// rule:     agent-writes-need-a-dba
/// message:  approval required by pgward rule "agent-writes-need-a-dba"
/// hint:     this statement needs approval by dba (1 approval); …
/// approval: dba, 1 approval(s), timeout 600s, mode hold
/// ```
pub fn render(decision: &Decision<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "decision: {}", decision.action.as_str());
    let _ = writeln!(out, "rule:     {}", decision.rule);
    let _ = writeln!(out, "class:    {}", decision.class);
    let _ = writeln!(out, "message:  {}", decision.message());
    if let Some(hint) = decision.hint() {
        let _ = writeln!(out, "hint:     {hint}");
    }
    if let Action::Approve(spec) = decision.action {
        let _ = writeln!(
            out,
            "approval: {}, {} approval(s), timeout {}s, mode {}",
            spec.approvers.join(" or "),
            spec.min_approvals,
            spec.timeout.as_secs(),
            spec.mode.as_str()
        );
    }
    out
}
