//! The mask plan: for each output column of a result, whether and how to mask it.
//!
//! Built once per RowDescription. A column is found to be masked in one of three ways:
//!
//! 1. **Direct**: the field carries a table OID and attribute number that the
//!    caller's `resolve` maps to a column some applicable rule masks.
//! 2. **Lineage**: the statement's lineage (the profile's output columns) says
//!    the value at this position derives from a masked column, or from the
//!    whole row of a table that some applicable rule could mask
//!    (`row_to_json(u)`, `SELECT u FROM users u`). Lineage positions are only
//!    trusted when no output column is a wildcard and the lineage has exactly
//!    as many entries as the RowDescription has fields.
//! 3. **Fail closed**: when a field cannot be explained by a table column (no
//!    table OID, or an OID the catalog cannot resolve) and the lineage cannot be
//!    lined up with the fields, the field may derive from anything the
//!    statement reads. It is then masked when *any* source of the whole
//!    statement is masked (and, with no lineage at all, whenever any rule
//!    applies to the roles). This over-masks `SELECT *, count(*) FROM people`;
//!    that is the price of never leaking `SELECT * FROM (SELECT upper(ssn) …) s`.
//!
//! The first applicable rule that matches decides the strategy; in the
//! fail-closed case with no lineage, the first applicable rule does.
//!
//! A plan may also carry the session's content [`Detectors`], which the
//! masker runs on the values of the columns no rule masks; the plan then
//! keeps every column's format code, not only the masked ones'.

use std::sync::Arc;

use super::detect::Detectors;
use super::row_description::RowDescriptionView;
use super::strategy::FORMAT_TEXT;
use crate::policy::{MaskRule, MaskStrategy};
use crate::sql::{ColumnSource, OutputColumn};

/// How one output column is masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMask {
    /// The strategy of the deciding rule.
    pub strategy: MaskStrategy,
    /// The field's format code from the RowDescription (0 text, 1 binary).
    pub format: i16,
    /// The deciding rule's index in the `masks` slice the plan was built from.
    pub rule_index: usize,
    /// How the column was found to be masked (for audit and messages).
    pub reason: MaskReason,
    /// The value is computed from a masked one (lineage, a view, unknown origin): the same
    /// text is written whatever it is, NULL included, so that neither a kept part (`partial`
    /// of `reverse(ssn)` would show its first digits), equality (`hash`) nor NULL-ness
    /// (`nullif(ssn, guess)`) tells anything about it.
    pub constant: bool,
}

/// Why a column is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskReason {
    /// The field comes straight from a masked table column.
    Direct,
    /// The statement's lineage at this position derives from a masked column
    /// or from the whole row of a table a rule could mask.
    Lineage,
    /// The field's origin is unknown and the statement reads masked data (or
    /// nothing is known about the statement): masked to fail closed.
    Unknown,
}

/// For each output column of a result, `Some` mask or `None` (forwarded as is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaskPlan {
    columns: Vec<Option<ColumnMask>>,
    /// Every column's format code; empty when all are text (the common case,
    /// kept without allocating).
    formats: Vec<i16>,
    detectors: Option<Arc<Detectors>>,
}

impl MaskPlan {
    /// A plan from explicit per-column masks (for callers and tests that
    /// already know the answer).
    ///
    /// Unmasked columns are taken to be text.
    pub fn from_columns(columns: Vec<Option<ColumnMask>>) -> Self {
        let formats = text_or(
            columns
                .iter()
                .map(|c| c.as_ref().map_or(FORMAT_TEXT, |m| m.format)),
        );
        MaskPlan {
            columns,
            formats,
            detectors: None,
        }
    }

    /// The plan with content detectors for the columns it does not mask
    /// (`None`: without).
    pub fn with_detectors(mut self, detectors: Option<Arc<Detectors>>) -> Self {
        self.detectors = detectors;
        self
    }

    /// True when no column is masked and no detector runs: rows can be
    /// forwarded without looking at them.
    pub fn is_empty(&self) -> bool {
        self.detectors.is_none() && self.columns.iter().all(Option::is_none)
    }

    /// The number of output columns (masked or not).
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Each output column's mask, in order.
    pub fn columns(&self) -> &[Option<ColumnMask>] {
        &self.columns
    }

    /// The format code of output column `column` (text when out of range).
    pub fn format(&self, column: usize) -> i16 {
        self.formats.get(column).copied().unwrap_or(FORMAT_TEXT)
    }

    /// The content detectors run on unmasked columns, if any.
    pub fn detectors(&self) -> Option<&Detectors> {
        self.detectors.as_deref()
    }
}

/// The format codes, or nothing when all are text.
fn text_or(formats: impl Iterator<Item = i16> + Clone) -> Vec<i16> {
    if formats.clone().all(|f| f == FORMAT_TEXT) {
        Vec::new()
    } else {
        formats.collect()
    }
}

/// What the catalog says a field with a table origin holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The table columns its value comes from.
    pub sources: Arc<[ColumnSource]>,
    /// It is computed (a view's column) rather than a table column's value itself.
    pub derived: bool,
}

/// Builds the plan for one RowDescription.
///
/// `resolve` maps a table OID and attribute number to the column's sources
/// (the session's catalog cache: one column for a table, what the definition
/// reads for a view), `None` when unknown; `lineage` is the statement profile's output
/// columns, if the statement was analyzed; `masks` are every mask rule, of
/// which those that apply to `roles` are used.
pub fn plan(
    fields: &RowDescriptionView<'_>,
    resolve: impl Fn(u32, i16) -> Option<Resolved>,
    lineage: Option<&[OutputColumn]>,
    masks: &[MaskRule],
    roles: &[String],
) -> MaskPlan {
    let applicable: Vec<(usize, &MaskRule)> = masks
        .iter()
        .enumerate()
        .filter(|(_, m)| m.applies_to(roles))
        .collect();
    // For content detectors: a hit in a text-like column is masked as text in either format
    // (same bytes); in any other type it becomes NULL, whatever format Bind chooses later.
    let formats = text_or(fields.fields().iter().map(|f| {
        if is_text_like(f.type_oid) {
            FORMAT_TEXT
        } else {
            1
        }
    }));
    if applicable.is_empty() {
        return MaskPlan {
            columns: vec![None; fields.len()],
            formats,
            detectors: None,
        };
    }
    // Lineage positions line up with fields only without wildcards and with equal counts.
    let aligned = lineage.filter(|l| l.len() == fields.len() && !l.iter().any(|c| c.wildcard));
    // When positions cannot be trusted, an unexplained field may derive from any source.
    let any_source = || -> Option<usize> {
        match lineage {
            Some(l) => first_rule(&applicable, l.iter().flat_map(|c| c.sources.iter())),
            None => applicable.first().map(|(i, _)| *i),
        }
    };
    let mut fallback: Option<Option<usize>> = None;
    let columns = fields
        .fields()
        .iter()
        .enumerate()
        .map(|(pos, f)| {
            let resolved = if f.table_oid != 0 {
                resolve(f.table_oid, f.attnum)
            } else {
                None
            };
            let mut found = resolved
                .as_ref()
                .and_then(|r| first_rule(&applicable, r.sources.iter()))
                .map(|i| (i, MaskReason::Direct));
            let derived_view = resolved.as_ref().is_some_and(|r| r.derived);
            // A resolved field is exactly that column's value (the server only reports an
            // origin for plain column references; a view column's origin is its definition), so
            // lineage is for the rest: consulting it here too would mask `id` in
            // `people JOIN orders USING (…)`, whose lineage without a catalog is the whole row
            // of both tables.
            if resolved.is_none() {
                if let Some(out) = aligned.and_then(|l| l.get(pos)) {
                    found = first_rule(&applicable, out.sources.iter())
                        .map(|i| (i, MaskReason::Lineage));
                } else {
                    let rule = *fallback.get_or_insert_with(any_source);
                    found = rule.map(|i| (i, MaskReason::Unknown));
                }
            }
            found.and_then(|(i, reason)| {
                masks.get(i).map(|m| {
                    // Text-like values are the same bytes in both formats, so any strategy
                    // works in either; any other type would be corrupted by text, so it is
                    // nulled, which every driver accepts.
                    let text_like = is_text_like(f.type_oid);
                    let constant = reason != MaskReason::Direct || derived_view;
                    let strategy = match (text_like, constant) {
                        (false, _) => MaskStrategy::Null,
                        (true, false) => m.strategy().clone(),
                        (true, true) => constant_strategy(m.strategy()),
                    };
                    ColumnMask {
                        constant: constant && strategy != MaskStrategy::Null,
                        strategy,
                        format: if text_like { FORMAT_TEXT } else { f.format },
                        rule_index: i,
                        reason,
                    }
                })
            })
        })
        .collect();
    MaskPlan {
        columns,
        formats,
        detectors: None,
    }
}

/// What a value computed from a masked one becomes: the rule's replacement text (or `***`),
/// or NULL for a `null` rule. Keeping a part, a domain, a digest or a shape of a computed value
/// would let the query choose what is kept.
fn constant_strategy(rule: &MaskStrategy) -> MaskStrategy {
    match rule {
        MaskStrategy::Null => MaskStrategy::Null,
        MaskStrategy::Redact { text } | MaskStrategy::Partial { text, .. } => {
            MaskStrategy::Redact { text: text.clone() }
        }
        MaskStrategy::Hash | MaskStrategy::Email | MaskStrategy::Fake => MaskStrategy::Redact {
            text: "***".to_owned(),
        },
    }
}

/// Types whose text and binary representations are both the value's characters, so a masked
/// string is a valid value of the type: `text`, `varchar`, `bpchar`, `name`, and `unknown`
/// (an untyped literal). Domains and extension types such as `citext` have other OIDs and are
/// nulled instead: never wrong, sometimes more than needed.
pub fn is_text_like(type_oid: u32) -> bool {
    matches!(type_oid, 25 | 1043 | 1042 | 19 | 705)
}

/// The index of the first applicable rule (in rule order, not source order)
/// that masks (part of) any of these sources.
fn first_rule<'s>(
    applicable: &[(usize, &MaskRule)],
    sources: impl Iterator<Item = &'s ColumnSource> + Clone,
) -> Option<usize> {
    applicable
        .iter()
        .find(|(_, m)| sources.clone().any(|source| m.matches_source(source)))
        .map(|(i, _)| *i)
}
