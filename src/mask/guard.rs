//! Statements that would reveal masked values without returning them: refused before they run.
//!
//! - **Inference**: a predicate, join, grouping or sort on a masked column (`WHERE ssn LIKE
//!   '1%'`) answers yes/no questions about its value, one character at a time. Refused unless
//!   the mask rule says `allow_inference = true`.
//! - **Copies**: a write that stores a masked column's value where the role can read it
//!   unmasked (`INSERT INTO t SELECT ssn …`, `CREATE TABLE AS`, `UPDATE … SET note = ssn`).
//!   Always refused: the copy would no longer be under the rule.
//!
//! Pure: the caller passes the profile, the mask rules and the session's roles.

use crate::policy::MaskRule;
use crate::sql::{ColumnSource, StatementProfile};

/// How a statement would reveal a masked value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeakKind {
    /// The column steers the result (WHERE, JOIN, GROUP BY, ORDER BY …).
    Inference,
    /// The column's value is written into a table.
    Copy,
}

/// A refused statement: which rule, which source, how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// Index of the mask rule in the slice given to [`check`].
    pub rule_index: usize,
    /// The masked source.
    pub source: ColumnSource,
    /// How it would leak.
    pub kind: LeakKind,
}

/// The first way `profile` would reveal a value masked for `roles`, if any.
pub fn check(profile: &StatementProfile, masks: &[MaskRule], roles: &[String]) -> Option<Leak> {
    let applicable = || {
        masks
            .iter()
            .enumerate()
            .filter(|(_, m)| m.applies_to(roles))
    };
    for source in &profile.written_sources {
        if let Some((i, _)) = applicable().find(|(_, m)| m.matches_source(source)) {
            return Some(Leak {
                rule_index: i,
                source: source.clone(),
                kind: LeakKind::Copy,
            });
        }
    }
    for source in &profile.predicate_columns {
        if let Some((i, _)) =
            applicable().find(|(_, m)| !m.allows_inference() && m.matches_source(source))
        {
            return Some(Leak {
                rule_index: i,
                source: source.clone(),
                kind: LeakKind::Inference,
            });
        }
    }
    None
}

impl Leak {
    /// The refusal's message.
    pub fn message(&self) -> String {
        let what = match &self.source {
            ColumnSource::Column(c) => format!("masked column {c}"),
            ColumnSource::WholeRow(t) => format!("rows of {t}, which has masked columns,"),
        };
        match self.kind {
            LeakKind::Inference => {
                format!("statement refused: {what} is used to filter, join, group or sort")
            }
            LeakKind::Copy => format!("statement refused: {what} would be copied into a table"),
        }
    }

    /// The refusal's hint.
    pub fn hint(&self) -> &'static str {
        match self.kind {
            LeakKind::Inference => {
                "Conditions on a masked column reveal its value; a DBA can set allow_inference = true on the mask rule."
            }
            LeakKind::Copy => {
                "A copy of a masked column would not be masked; read it through a SELECT instead."
            }
        }
    }
}
