//! A serde mirror of one rule file and of one test-case file. Nothing here
//! is validated beyond its shape; unknown keys are errors so that a typo
//! (`clases = […]`) never silently widens or narrows a rule.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A list whose entries keep their own positions.
pub(super) type SpannedList = Spanned<Vec<Spanned<String>>>;

/// One `*.toml` file of the rules directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    /// `[roles.NAME]` tables.
    #[serde(default)]
    pub roles: BTreeMap<String, Spanned<RawRole>>,
    /// `[[rules]]`, in order.
    #[serde(default)]
    pub rules: Vec<Spanned<RawRule>>,
    /// `[[masks]]`, in order.
    #[serde(default)]
    pub masks: Vec<Spanned<RawMask>>,
    /// `[[detectors]]`, in order.
    #[serde(default)]
    pub detectors: Vec<Spanned<RawDetector>>,
}

/// `[roles.NAME]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRole {
    /// Identity-name globs and `group:<glob>` entries.
    pub members: Option<SpannedList>,
    /// The server login this role's sessions use (enforced elsewhere).
    pub upstream_user: Option<Spanned<String>>,
    /// Free text for people reading the file.
    pub description: Option<Spanned<String>>,
}

/// `[[rules]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub id: Spanned<String>,
    pub description: Option<Spanned<String>>,
    pub roles: SpannedList,
    pub classes: Option<SpannedList>,
    pub tables: Option<SpannedList>,
    pub functions: Option<SpannedList>,
    pub databases: Option<SpannedList>,
    pub action: Spanned<String>,
    pub reason: Option<Spanned<String>>,
    pub approvers: Option<SpannedList>,
    pub min_approvals: Option<Spanned<i64>>,
    pub timeout: Option<Spanned<String>>,
    pub mode: Option<Spanned<String>>,
    pub grant_window: Option<Spanned<String>>,
}

/// `[[masks]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMask {
    pub description: Option<Spanned<String>>,
    pub roles: SpannedList,
    pub columns: SpannedList,
    pub strategy: Spanned<String>,
    pub keep_first: Option<Spanned<i64>>,
    pub keep_last: Option<Spanned<i64>>,
    pub text: Option<Spanned<String>>,
    /// Statements may filter, join, group or sort on the masked columns.
    pub allow_inference: Option<bool>,
}

/// `[[detectors]]`: the strategy keys are those of `[[masks]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDetector {
    pub description: Option<Spanned<String>>,
    pub roles: SpannedList,
    pub kinds: SpannedList,
    pub strategy: Spanned<String>,
    pub keep_first: Option<Spanned<i64>>,
    pub keep_last: Option<Spanned<i64>>,
    pub text: Option<Spanned<String>>,
}

/// The strategy keys shared by `[[masks]]` and `[[detectors]]`, borrowed, so
/// that one function parses them for both.
pub(super) struct RawStrategy<'a> {
    pub strategy: &'a Spanned<String>,
    pub keep_first: Option<&'a Spanned<i64>>,
    pub keep_last: Option<&'a Spanned<i64>>,
    pub text: Option<&'a Spanned<String>>,
}

// === impl RawMask ===

impl RawMask {
    pub(super) fn strategy_keys(&self) -> RawStrategy<'_> {
        RawStrategy {
            strategy: &self.strategy,
            keep_first: self.keep_first.as_ref(),
            keep_last: self.keep_last.as_ref(),
            text: self.text.as_ref(),
        }
    }
}

// === impl RawDetector ===

impl RawDetector {
    pub(super) fn strategy_keys(&self) -> RawStrategy<'_> {
        RawStrategy {
            strategy: &self.strategy,
            keep_first: self.keep_first.as_ref(),
            keep_last: self.keep_last.as_ref(),
            text: self.text.as_ref(),
        }
    }
}

/// One file of `tests/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTestFile {
    #[serde(default)]
    pub case: Vec<Spanned<RawCase>>,
}

/// `[[case]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCase {
    pub name: Option<String>,
    pub role: Option<Spanned<String>>,
    pub roles: Option<SpannedList>,
    pub identity: Option<Spanned<String>>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub sql: Spanned<String>,
    pub database: Option<String>,
    pub expect: Spanned<String>,
    pub rule: Spanned<String>,
}
