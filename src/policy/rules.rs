//! The compiled rule set: roles, ordered rules and masks, validated and
//! indexed once at load time.
//!
//! Invariants of a [`RuleSet`]: every role a rule, approver list or mask
//! names is defined; every pattern is compiled; rule ids are unique and never
//! [`DEFAULT_DENY`]; permissive rules name their classes; there is at least
//! one rule. Nothing changes after construction, so a set can be shared
//! behind an `Arc` and swapped whole on reload.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::build::{Builder, Parts};
use super::glob::{ColumnGlob, FunctionGlob, Glob, NameFilter, TableGlob};
use super::raw::RawFile;
use super::{Error, Locator, Warning};
use crate::sql::{ColumnRef, StatementClass};

/// The rule id of the decision taken when no rule matched.
pub const DEFAULT_DENY: &str = "default-deny";

const CLASS_COUNT: usize = StatementClass::ALL.len();

/// The identifier of a rule, as written in its `id` (or [`DEFAULT_DENY`]).
///
/// Cheap to clone (shared), so audit records and approval requests can keep it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId(Arc<str>);

/// A set of statement classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassSet(u16);

/// What a matching rule decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The statement runs.
    Allow,
    /// The statement is refused.
    Deny,
    /// The statement runs once enough approvers signed off; until the
    /// approvals module lands, it is refused with a message saying so.
    Approve(ApprovalSpec),
}

/// Who must sign off an `approve` rule's statements, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSpec {
    /// Roles whose members may approve (never the requester themself).
    pub approvers: Vec<String>,
    /// Distinct approvers needed, at least 1.
    pub min_approvals: u32,
    /// How long a request waits for its approvals.
    pub timeout: Duration,
    /// Whether the client waits or retries.
    pub mode: ApprovalMode,
    /// In retry mode, how long after approval the requester may run the statement (once).
    pub grant_window: Duration,
}

/// How a client experiences a statement waiting for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalMode {
    /// The statement is held like a slow query until decided.
    Hold,
    /// The client gets an error naming the request at once and runs the
    /// statement again once approved.
    Retry,
}

/// A role: who is in it, and the server login its sessions use.
#[derive(Debug, Clone)]
pub struct Role {
    pub(super) name: String,
    pub(super) description: Option<String>,
    pub(super) members: Vec<Member>,
    pub(super) literal_members: usize,
    pub(super) upstream_user: Option<String>,
    pub(super) file: String,
    pub(super) line: usize,
}

#[derive(Debug, Clone)]
pub(super) enum Member {
    Identity(Glob),
    Group(Glob),
}

/// One compiled `[[rules]]` entry.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(super) id: RuleId,
    pub(super) file: String,
    pub(super) line: usize,
    pub(super) description: Option<String>,
    pub(super) reason: Option<String>,
    pub(super) roles: Vec<String>,
    pub(super) classes: ClassSet,
    pub(super) tables: Vec<TableGlob>,
    /// Quick reject for `tables`.
    pub(super) table_filter: NameFilter,
    pub(super) functions: Vec<FunctionGlob>,
    pub(super) databases: Vec<(String, Glob)>,
    pub(super) action: Action,
}

/// One compiled `[[masks]]` entry, enforced by the masking module.
#[derive(Debug, Clone)]
pub struct MaskRule {
    /// `mask:FILE:LINE`, how decisions name it.
    pub(super) id: RuleId,
    pub(super) file: String,
    pub(super) line: usize,
    pub(super) description: Option<String>,
    pub(super) roles: Vec<String>,
    pub(super) columns: Vec<ColumnGlob>,
    pub(super) strategy: MaskStrategy,
    /// Predicates, joins, groupings and sorts on the masked columns are allowed (they can
    /// reveal a value one comparison at a time; refused by default).
    pub(super) allow_inference: bool,
}

/// One compiled `[[detectors]]` entry: for its roles, the masker scans every
/// result value that no column mask covers for these kinds of content, and
/// masks a value that holds one with `strategy`.
#[derive(Debug, Clone)]
pub struct DetectorRule {
    pub(super) file: String,
    pub(super) line: usize,
    pub(super) description: Option<String>,
    pub(super) roles: Vec<String>,
    pub(super) kinds: Vec<DetectorKind>,
    pub(super) strategy: MaskStrategy,
}

/// What a content detector looks for (see `mask::Detectors` for the exact checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DetectorKind {
    /// Payment card numbers (13–19 digits, Luhn-checked).
    Card,
    /// US social security numbers (`ddd-dd-dddd`).
    Ssn,
    /// E-mail addresses.
    Email,
    /// IBANs (mod-97-checked).
    Iban,
    /// Keys and tokens: AWS access key ids, private keys, bearer, GitHub and
    /// Slack tokens, JWTs.
    Secret,
}

/// How a masked value is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskStrategy {
    /// The whole value becomes `text`.
    Redact {
        /// The replacement (default `***`).
        text: String,
    },
    /// The first `keep_first` and last `keep_last` characters stay; what is
    /// between becomes `text`, whatever its length (so the length is not revealed).
    Partial {
        /// Characters kept at the start (default 0).
        keep_first: u32,
        /// Characters kept at the end (default 4).
        keep_last: u32,
        /// Replacement of the hidden part (default `***`).
        text: String,
    },
    /// A digest of the value: equal values stay equal, so joins and counts still work.
    Hash,
    /// SQL NULL.
    Null,
    /// An e-mail address keeps its domain: `***@example.com`.
    Email,
    /// A made-up value of the same shape.
    Fake,
}

/// A rule in a role's and class's candidate list, with what is needed to skip it without
/// touching the [`Rule`] itself: a decision scans these compact entries, not the rules.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate {
    /// The rule's index in `RuleSet::rules`.
    pub(super) index: u32,
    /// The rule has `tables`.
    pub(super) has_tables: bool,
    /// The rule is allow or approve (every table must match) rather than deny (any table).
    pub(super) permissive: bool,
    /// The rule's table pre-filter.
    pub(super) filter: NameFilter,
}

impl Candidate {
    /// False when the rule surely cannot match a statement touching `touched`.
    #[inline]
    pub(super) fn may_match(&self, touched: Option<NameFilter>) -> bool {
        if !self.has_tables {
            return true;
        }
        match touched {
            None => false,
            Some(t) if self.permissive => self.filter.may_match_every(t),
            Some(t) => self.filter.may_match_any(t),
        }
    }
}

/// The immutable, compiled rules of one rules directory.
///
/// `Send + Sync`; share it as `Arc<RuleSet>` and replace it whole on reload.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    roles: BTreeMap<String, Role>,
    /// Role name → its slot in `by_role`.
    role_index: HashMap<String, usize>,
    /// For each role and class, the rules that can match, in order.
    by_role: Vec<[Vec<Candidate>; CLASS_COUNT]>,
    masks: Vec<MaskRule>,
    detectors: Vec<DetectorRule>,
    default_rule: RuleId,
}

// === impl RuleId ===

impl RuleId {
    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(super) fn new(s: &str) -> Self {
        RuleId(Arc::from(s))
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RuleId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(RuleId(Arc::from(s)))
    }
}

impl Serialize for RuleId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

// === impl ClassSet ===

impl ClassSet {
    /// Every class.
    pub const ALL: ClassSet = ClassSet((1 << CLASS_COUNT) - 1);

    /// Whether `class` is in the set.
    pub fn contains(self, class: StatementClass) -> bool {
        self.0 & (1 << class as u16) != 0
    }

    /// Whether every class of `other` is in the set.
    pub fn is_superset(self, other: ClassSet) -> bool {
        self.0 & other.0 == other.0
    }

    /// The classes in the set, least strict first.
    pub fn iter(self) -> impl Iterator<Item = StatementClass> {
        StatementClass::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }

    pub(super) fn insert(&mut self, class: StatementClass) {
        self.0 |= 1 << class as u16;
    }
}

impl fmt::Display for ClassSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(c.as_str())?;
        }
        Ok(())
    }
}

// === impl Action ===

impl Action {
    /// `allow`, `deny` or `approve`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Approve(_) => "approve",
        }
    }

    /// How strict the outcome is: deny > approve > allow.
    pub(super) fn severity(&self) -> u8 {
        match self {
            Action::Allow => 0,
            Action::Approve(_) => 1,
            Action::Deny => 2,
        }
    }

    /// Permissive rules need every table and function covered; deny rules any.
    pub(super) fn is_permissive(&self) -> bool {
        !matches!(self, Action::Deny)
    }
}

// === impl ApprovalSpec ===

impl Serialize for ApprovalSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ApprovalSpec", 5)?;
        st.serialize_field("approvers", &self.approvers)?;
        st.serialize_field("min_approvals", &self.min_approvals)?;
        st.serialize_field("timeout_secs", &self.timeout.as_secs())?;
        st.serialize_field("mode", &self.mode)?;
        st.serialize_field("grant_window_secs", &self.grant_window.as_secs())?;
        st.end()
    }
}

/// Read back by the approval stores, which keep each request's spec as it was when made.
impl<'de> Deserialize<'de> for ApprovalSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Stored {
            approvers: Vec<String>,
            min_approvals: u32,
            timeout_secs: u64,
            mode: ApprovalMode,
            #[serde(default)]
            grant_window_secs: u64,
        }
        let s = Stored::deserialize(d)?;
        Ok(ApprovalSpec {
            approvers: s.approvers,
            min_approvals: s.min_approvals,
            timeout: Duration::from_secs(s.timeout_secs),
            mode: s.mode,
            grant_window: Duration::from_secs(s.grant_window_secs),
        })
    }
}

// === impl ApprovalMode ===

impl ApprovalMode {
    /// `hold` or `retry`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::Hold => "hold",
            ApprovalMode::Retry => "retry",
        }
    }
}

// === impl Role ===

impl Role {
    /// The role's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its `description`.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The server login for this role's sessions, when the rules give one.
    pub fn upstream_user(&self) -> Option<&str> {
        self.upstream_user.as_deref()
    }

    /// Where the role is defined.
    pub fn location(&self) -> (&str, usize) {
        (&self.file, self.line)
    }

    /// Whether the identity `name`, in token groups `groups`, is a member.
    pub fn has_member(&self, name: &str, groups: &[String]) -> bool {
        self.members.iter().any(|m| match m {
            Member::Identity(g) => g.is_match(name),
            Member::Group(g) => groups.iter().any(|grp| g.is_match(grp)),
        })
    }
}

// === impl Rule ===

impl Rule {
    /// The rule's id.
    pub fn id(&self) -> &RuleId {
        &self.id
    }

    /// The file and line of its `id`.
    pub fn location(&self) -> (&str, usize) {
        (&self.file, self.line)
    }

    /// Its `description`.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Its `reason`, shown to refused clients.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The roles it applies to.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// The classes it applies to (every class when the rule gave none).
    pub fn classes(&self) -> ClassSet {
        self.classes
    }

    /// Its table patterns as written.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.tables.iter().map(TableGlob::as_str)
    }

    /// Its function patterns as written.
    pub fn functions(&self) -> impl Iterator<Item = &str> {
        self.functions.iter().map(FunctionGlob::as_str)
    }

    /// Its database patterns as written.
    pub fn databases(&self) -> impl Iterator<Item = &str> {
        self.databases.iter().map(|(t, _)| t.as_str())
    }

    /// What it decides.
    pub fn action(&self) -> &Action {
        &self.action
    }

    /// Whether the rule matches a request with this database and profile;
    /// roles and class are matched by the index before this is called.
    /// `touched` is the [`NameFilter`] of the profile's tables.
    pub(super) fn matches_rest(
        &self,
        database: &str,
        p: &crate::sql::StatementProfile,
        touched: Option<NameFilter>,
    ) -> bool {
        if !self.databases.is_empty() && !self.databases.iter().any(|(_, g)| g.is_match(database)) {
            return false;
        }
        let surely = self.action.is_permissive();
        if !self.tables.is_empty() {
            // A statement touching no table matches no rule with `tables`.
            let Some(touched) = touched else { return false };
            let may = if surely {
                self.table_filter.may_match_every(touched)
            } else {
                self.table_filter.may_match_any(touched)
            };
            if !may {
                return false;
            }
            let mut all = p.tables_read.iter().chain(&p.tables_written);
            let covered = |t: &crate::sql::TableName| {
                self.tables.iter().any(|g| g.is_match(&t.schema, &t.name))
            };
            let ok = if surely {
                all.all(covered)
            } else {
                all.any(covered)
            };
            if !ok {
                return false;
            }
        }
        if !self.functions.is_empty() {
            if p.functions.is_empty() {
                return false;
            }
            let covered = |f: &String| self.functions.iter().any(|g| g.is_match(f, surely));
            let ok = if surely {
                p.functions.iter().all(covered)
            } else {
                p.functions.iter().any(covered)
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// Conservative check that every request `later` matches also matches
    /// `self` (so `later` is dead when `self` comes first).
    pub(super) fn shadows(&self, later: &Rule) -> bool {
        /// `every`: the rule needs every touched name covered (permissive
        /// rules); otherwise any one suffices (deny rules).
        fn covers<T: PartialEq>(
            early: &[T],
            early_every: bool,
            late: &[T],
            late_every: bool,
        ) -> bool {
            if early.is_empty() {
                return true;
            }
            // With L's patterns ⊆ E's: "every name in L" implies both "every"
            // and "any name in E", but "any name in L" only implies "any in E".
            let quantifiers_compatible = late_every || !early_every;
            quantifiers_compatible && !late.is_empty() && late.iter().all(|g| early.contains(g))
        }
        let (es, ls) = (self.action.is_permissive(), later.action.is_permissive());
        later.roles.iter().all(|r| self.roles.contains(r))
            && self.classes.is_superset(later.classes)
            && covers(&self.tables, es, &later.tables, ls)
            && covers(&self.functions, es, &later.functions, ls)
            && (self.databases.is_empty()
                || (!later.databases.is_empty()
                    && later
                        .databases
                        .iter()
                        .all(|(t, _)| self.databases.iter().any(|(e, _)| e == t))))
    }
}

// === impl MaskRule ===

impl MaskRule {
    /// The file and line of the `[[masks]]` entry.
    pub fn location(&self) -> (&str, usize) {
        (&self.file, self.line)
    }

    /// Its `description`.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The roles it applies to.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// Whether it applies to a requester with these roles.
    pub fn applies_to(&self, roles: &[String]) -> bool {
        roles.iter().any(|r| self.roles.contains(r))
    }

    /// Its column patterns as written.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(ColumnGlob::as_str)
    }

    /// Whether the column is one it masks.
    pub fn matches_column(&self, column: &ColumnRef) -> bool {
        self.columns
            .iter()
            .any(|g| g.is_match(&column.table.schema, &column.table.name, &column.column))
    }

    /// How values are masked.
    pub fn strategy(&self) -> &MaskStrategy {
        &self.strategy
    }

    /// How refusals name it: `mask:FILE:LINE`.
    pub fn id(&self) -> &RuleId {
        &self.id
    }

    /// Whether statements may filter, join, group or sort on the masked columns.
    pub fn allows_inference(&self) -> bool {
        self.allow_inference
    }

    /// Whether some column of `table` could be one it masks (without knowing the table's
    /// columns): for each pattern, a column name its column part matches by construction
    /// (`*` → nothing, `?` → one character) is tried, so the answer depends only on the
    /// pattern's schema and table parts and the rule's own matcher stays the only one.
    pub fn may_match_table(&self, table: &crate::sql::TableName) -> bool {
        self.columns().any(|pattern| {
            let column_part = pattern.rsplit('.').next().unwrap_or(pattern);
            let column: String = column_part
                .chars()
                .filter(|&c| c != '*')
                .map(|c| if c == '?' { 'x' } else { c })
                .collect();
            self.matches_column(&ColumnRef {
                table: table.clone(),
                column,
            })
        })
    }

    /// Whether a value from `source` may be one it masks.
    pub fn matches_source(&self, source: &crate::sql::ColumnSource) -> bool {
        match source {
            crate::sql::ColumnSource::Column(c) => self.matches_column(c),
            crate::sql::ColumnSource::WholeRow(t) => self.may_match_table(t),
        }
    }
}

// === impl DetectorRule ===

impl DetectorRule {
    /// The file and line of the `[[detectors]]` entry.
    pub fn location(&self) -> (&str, usize) {
        (&self.file, self.line)
    }

    /// Its `description`.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The roles it applies to.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// Whether it applies to a requester with these roles.
    pub fn applies_to(&self, roles: &[String]) -> bool {
        roles.iter().any(|r| self.roles.contains(r))
    }

    /// The kinds it looks for, in the order written (without repeats).
    pub fn kinds(&self) -> &[DetectorKind] {
        &self.kinds
    }

    /// How a value holding one of them is masked.
    pub fn strategy(&self) -> &MaskStrategy {
        &self.strategy
    }
}

// === impl DetectorKind ===

impl DetectorKind {
    /// Every kind.
    pub const ALL: [DetectorKind; 5] = [
        DetectorKind::Card,
        DetectorKind::Ssn,
        DetectorKind::Email,
        DetectorKind::Iban,
        DetectorKind::Secret,
    ];

    /// The kind's name as written in rules.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::Card => "card",
            DetectorKind::Ssn => "ssn",
            DetectorKind::Email => "email",
            DetectorKind::Iban => "iban",
            DetectorKind::Secret => "secret",
        }
    }

    /// The kind named `name` in rules.
    pub fn from_name(name: &str) -> Option<DetectorKind> {
        DetectorKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl MaskStrategy ===

impl MaskStrategy {
    /// The strategy's name as written in rules.
    pub fn as_str(&self) -> &'static str {
        match self {
            MaskStrategy::Redact { .. } => "redact",
            MaskStrategy::Partial { .. } => "partial",
            MaskStrategy::Hash => "hash",
            MaskStrategy::Null => "null",
            MaskStrategy::Email => "email",
            MaskStrategy::Fake => "fake",
        }
    }
}

// === impl RuleSet ===

impl RuleSet {
    /// Reads every rule file of `dir` (see the module docs for which) in
    /// file-name order and parses them with [`RuleSet::parse`].
    ///
    /// # Errors
    /// [`Error::Read`] when the directory or a file cannot be read,
    /// [`Error::NoRuleFiles`] when it holds none, and whatever
    /// [`RuleSet::parse`] reports.
    pub fn load_dir(dir: &Path) -> Result<(RuleSet, Vec<Warning>), Error> {
        let read_err = |path: &Path, source| Error::Read {
            path: path.display().to_string(),
            source,
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| read_err(dir, e))? {
            let entry = entry.map_err(|e| read_err(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".toml") || name.starts_with('.') {
                continue;
            }
            // Follows symlinks: a rule file may be a link into a checkout.
            let meta = std::fs::metadata(entry.path()).map_err(|e| read_err(&entry.path(), e))?;
            if meta.is_file() {
                names.push(name);
            }
        }
        if names.is_empty() {
            return Err(Error::NoRuleFiles {
                dir: dir.display().to_string(),
            });
        }
        names.sort();
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            let path = dir.join(&name);
            let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
            files.push((path.display().to_string(), text));
        }
        RuleSet::parse(&files)
    }

    /// Parses and validates rule files given as `(name, text)`, merged in the
    /// order given. Pure: `name` only labels errors and warnings.
    ///
    /// # Errors
    /// [`Error::Invalid`] (or [`Error::Several`]) naming file, line and key;
    /// [`Error::NoRules`] when no file defines a rule.
    pub fn parse(files: &[(String, String)]) -> Result<(RuleSet, Vec<Warning>), Error> {
        let mut errors = Vec::new();
        let mut parsed = Vec::with_capacity(files.len());
        for (name, text) in files {
            let at = Locator::new(name, text);
            match toml::from_str::<RawFile>(text) {
                Ok(raw) => parsed.push((at, raw)),
                Err(e) => errors.push(at.toml_err(&e)),
            }
        }
        if !errors.is_empty() {
            // Later checks would only repeat these as unknown roles.
            return Err(Error::from_list(errors));
        }
        let mut b = Builder::default();
        for (at, raw) in &parsed {
            for (name, role) in &raw.roles {
                b.role(at, name, role);
            }
        }
        for (at, raw) in &parsed {
            for rule in &raw.rules {
                b.rule(at, rule);
            }
            for mask in &raw.masks {
                b.mask(at, mask);
            }
            for detector in &raw.detectors {
                b.detector(at, detector);
            }
        }
        if !b.errors.is_empty() {
            return Err(Error::from_list(b.errors));
        }
        if b.rules.is_empty() {
            let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Error::NoRules {
                files: if names.is_empty() {
                    "(no files)".to_owned()
                } else {
                    names.join(", ")
                },
            });
        }
        b.lint();
        let (parts, warnings) = b.finish();
        Ok((RuleSet::from_parts(parts), warnings))
    }

    /// Indexes validated parts: for each role and class, the rules that
    /// can match, in order.
    fn from_parts(parts: Parts) -> RuleSet {
        let Parts {
            roles,
            rules,
            masks,
            detectors,
        } = parts;
        let roles: BTreeMap<String, Role> =
            roles.into_iter().map(|r| (r.name.clone(), r)).collect();
        let role_index: HashMap<String, usize> = roles
            .keys()
            .enumerate()
            .map(|(i, name)| (name.clone(), i))
            .collect();
        let mut by_role: Vec<[Vec<Candidate>; CLASS_COUNT]> =
            (0..role_index.len()).map(|_| Default::default()).collect();
        for (i, rule) in rules.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            for role in &rule.roles {
                let Some(per_class) = role_index.get(role).and_then(|&r| by_role.get_mut(r)) else {
                    continue;
                };
                let candidate = Candidate {
                    index: i,
                    has_tables: !rule.tables.is_empty(),
                    permissive: rule.action.is_permissive(),
                    filter: rule.table_filter,
                };
                for class in rule.classes.iter() {
                    if let Some(list) = per_class.get_mut(class as usize) {
                        list.push(candidate);
                    }
                }
            }
        }
        RuleSet {
            rules,
            roles,
            role_index,
            by_role,
            masks,
            detectors,
            default_rule: RuleId::new(DEFAULT_DENY),
        }
    }

    /// Every rule, in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with this id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id.as_str() == id)
    }

    /// Every role, by name.
    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.roles.values()
    }

    /// The role with this name.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// The masks, in file order, for the masking module.
    pub fn masks(&self) -> &[MaskRule] {
        &self.masks
    }

    /// The masks that apply to `roles` and may match a column of one of `tables`, in file order.
    pub fn masks_on<'a>(
        &'a self,
        roles: &'a [String],
        tables: &'a [crate::sql::TableName],
    ) -> impl Iterator<Item = &'a MaskRule> + 'a {
        self.masks
            .iter()
            .filter(move |m| m.applies_to(roles) && tables.iter().any(|t| m.may_match_table(t)))
    }

    /// The content detectors, in file order, for the masking module.
    pub fn detectors(&self) -> &[DetectorRule] {
        &self.detectors
    }

    /// The id every unmatched request is denied by ([`DEFAULT_DENY`]).
    pub fn default_rule(&self) -> &RuleId {
        &self.default_rule
    }

    /// The roles of an identity: those the identities file gives it
    /// (`identity_roles`, kept first and in order) and those whose members
    /// match its name or one of its token groups as `group:<g>`, by name.
    pub fn roles_for(
        &self,
        identity: &str,
        identity_roles: &[String],
        groups: &[String],
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(identity_roles.len() + 1);
        for r in identity_roles {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
        for role in self.roles.values() {
            if !out.contains(&role.name) && role.has_member(identity, groups) {
                out.push(role.name.clone());
            }
        }
        out
    }

    /// Candidate rule indices for a role and class, in order.
    pub(super) fn candidates(&self, role: &str, class: StatementClass) -> &[Candidate] {
        match self.role_index.get(role) {
            Some(&i) => self
                .by_role
                .get(i)
                .and_then(|per_class| per_class.get(class as usize))
                .map_or(&[], Vec::as_slice),
            None => &[],
        }
    }

    /// The rule at an index returned by [`RuleSet::candidates`].
    pub(super) fn rule_at(&self, i: u32) -> Option<&Rule> {
        self.rules.get(i as usize)
    }
}
