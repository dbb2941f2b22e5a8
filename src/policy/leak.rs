//! Statements that would reveal masked values without returning them: refused before they run.
//!
//! - **Inference**: a predicate, join, grouping or sort on a masked column (`WHERE ssn LIKE
//!   '1%'`) answers yes/no questions about its value, one character at a time. Refused unless
//!   the mask rule says `allow_inference = true`.
//! - **Copies**: a write that stores a masked column's value where the role can read it
//!   unmasked (`INSERT INTO t SELECT ssn …`, `CREATE TABLE AS`, `UPDATE … SET note = ssn`).
//!   Always refused: the copy would no longer be under the rule.
//!
//! Checked as part of every decision ([`super::RuleSet::decide`]), so the session, `pgward
//! explain` and `pgward test` agree. No allocation.

use super::MaskRule;
use crate::sql::{ColumnSource, StatementProfile};

/// How a statement would reveal a masked value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakKind {
    /// The column steers the result (WHERE, JOIN, GROUP BY, ORDER BY …).
    Inference,
    /// The column's value is written into a table.
    Copy,
}

/// Why a statement is refused: which mask rule, which source, how.
#[derive(Debug, Clone, Copy)]
pub struct Leak<'a> {
    /// The mask rule whose column would leak.
    pub rule: &'a MaskRule,
    /// The masked source, as the statement uses it.
    pub source: &'a ColumnSource,
    /// How it would leak.
    pub kind: LeakKind,
}

/// The first way `profile` would reveal a value masked for `roles`, if any.
pub(super) fn check<'a>(
    profile: &'a StatementProfile,
    masks: &'a [MaskRule],
    roles: &[String],
) -> Option<Leak<'a>> {
    if profile.written_sources.is_empty() && profile.predicate_columns.is_empty() {
        return None;
    }
    let applicable = || masks.iter().filter(|m| m.applies_to(roles));
    let found = |sources: &'a std::collections::BTreeSet<ColumnSource>,
                 kind: LeakKind,
                 counts: fn(&MaskRule) -> bool| {
        sources.iter().find_map(|source| {
            applicable()
                .find(|m| counts(m) && m.matches_source(source))
                .map(|rule| Leak { rule, source, kind })
        })
    };
    found(&profile.written_sources, LeakKind::Copy, |_| true).or_else(|| {
        found(&profile.predicate_columns, LeakKind::Inference, |m| {
            !m.allows_inference()
        })
    })
}

impl Leak<'_> {
    /// The refusal's message.
    pub fn message(&self) -> String {
        let what = match self.source {
            ColumnSource::Column(c) => format!("masked column {c}"),
            ColumnSource::WholeRow(t) => format!("a row of {t}, which has masked columns,"),
        };
        let how = match self.kind {
            LeakKind::Inference => "is used to filter, join, group or sort",
            LeakKind::Copy => "would be copied into a table",
        };
        format!(
            "permission denied by pgward mask rule \"{}\": {what} {how}",
            self.rule.id()
        )
    }

    /// The refusal's hint.
    pub fn hint(&self) -> &'static str {
        match self.kind {
            LeakKind::Inference => {
                "conditions on a masked column reveal its value; a DBA can set allow_inference = true on the mask rule"
            }
            LeakKind::Copy => {
                "a copy of a masked column would not be masked; read it through a SELECT instead"
            }
        }
    }
}
