//! The compiled rule set: roles, ordered rules and masks, validated and
//! indexed once at load time.
//!
//! Invariants of a [`RuleSet`]: every role a rule, approver list or mask
//! names is defined; every pattern is compiled; rule ids are unique and never
//! [`DEFAULT_DENY`]; permissive rules name their classes; there is at least
//! one rule. Nothing changes after construction, so a set can be shared
//! behind an `Arc` and swapped whole on reload.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, Serializer};
use toml::Spanned;

use super::glob::{ColumnGlob, FunctionGlob, Glob, NameFilter, TableGlob};
use super::raw::{RawFile, RawMask, RawRole, RawRule, SpannedList};
use super::{Error, Locator, Warning, class_names};
use crate::sql::{ColumnRef, StatementClass};

/// The rule id of the decision taken when no rule matched.
pub const DEFAULT_DENY: &str = "default-deny";

const CLASS_COUNT: usize = StatementClass::ALL.len();

/// Largest `min_approvals` accepted: more is surely a typo.
const MAX_APPROVALS: i64 = 100;

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
}

/// How a client experiences a statement waiting for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    name: String,
    description: Option<String>,
    members: Vec<Member>,
    literal_members: usize,
    upstream_user: Option<String>,
    file: String,
    line: usize,
}

#[derive(Debug, Clone)]
enum Member {
    Identity(Glob),
    Group(Glob),
}

/// One compiled `[[rules]]` entry.
#[derive(Debug, Clone)]
pub struct Rule {
    id: RuleId,
    file: String,
    line: usize,
    description: Option<String>,
    reason: Option<String>,
    roles: Vec<String>,
    classes: ClassSet,
    tables: Vec<TableGlob>,
    /// Quick reject for `tables`.
    table_filter: NameFilter,
    functions: Vec<FunctionGlob>,
    databases: Vec<(String, Glob)>,
    action: Action,
}

/// One compiled `[[masks]]` entry, enforced by the masking module.
#[derive(Debug, Clone)]
pub struct MaskRule {
    file: String,
    line: usize,
    description: Option<String>,
    roles: Vec<String>,
    columns: Vec<ColumnGlob>,
    strategy: MaskStrategy,
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

/// The immutable, compiled rules of one rules directory.
///
/// `Send + Sync`; share it as `Arc<RuleSet>` and replace it whole on reload.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    roles: BTreeMap<String, Role>,
    /// Role name → its slot in `by_role`.
    role_index: HashMap<String, usize>,
    /// For each role and class, the indices of the rules that can match, in order.
    by_role: Vec<[Vec<u32>; CLASS_COUNT]>,
    masks: Vec<MaskRule>,
    default_rule: RuleId,
}

// === impl RuleId ===

impl RuleId {
    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn new(s: &str) -> Self {
        RuleId(Arc::from(s))
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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

    fn insert(&mut self, class: StatementClass) {
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
    fn is_permissive(&self) -> bool {
        !matches!(self, Action::Deny)
    }
}

// === impl ApprovalSpec ===

impl Serialize for ApprovalSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ApprovalSpec", 4)?;
        st.serialize_field("approvers", &self.approvers)?;
        st.serialize_field("min_approvals", &self.min_approvals)?;
        st.serialize_field("timeout_secs", &self.timeout.as_secs())?;
        st.serialize_field("mode", &self.mode)?;
        st.end()
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
    fn shadows(&self, later: &Rule) -> bool {
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
        }
        if !b.errors.is_empty() {
            return Err(Error::from_list(b.errors));
        }
        if b.rules.is_empty() {
            let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Error::NoRules {
                files: names.join(", "),
            });
        }
        b.lint();
        let set = b.finish();
        Ok(set)
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
    pub(super) fn candidates(&self, role: &str, class: StatementClass) -> &[u32] {
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

/// Collects roles, rules and masks while validating, then indexes them.
#[derive(Default)]
struct Builder {
    errors: Vec<Error>,
    warnings: Vec<Warning>,
    roles: BTreeMap<String, Role>,
    rules: Vec<Rule>,
    /// The `id` span of each rule, for warnings.
    rule_spans: Vec<(String, usize)>,
    ids: HashMap<String, (String, usize)>,
    masks: Vec<MaskRule>,
}

impl Builder {
    fn role(&mut self, at: &Locator<'_>, name: &str, raw: &Spanned<RawRole>) {
        let key = format!("roles.{name}");
        if !valid_name(name) {
            self.errors.push(at.err(
                raw,
                &key,
                "role names use letters, digits, `_` and `-` only",
            ));
            return;
        }
        if let Some(prev) = self.roles.get(name) {
            self.errors.push(at.err(
                raw,
                &key,
                format!(
                    "role `{name}` is already defined at {}:{}",
                    prev.file, prev.line
                ),
            ));
            return;
        }
        let raw_role = raw.get_ref();
        let mut members = Vec::new();
        let mut literal_members = 0;
        for m in raw_role.members.iter().flat_map(|l| l.get_ref()) {
            let text = m.get_ref();
            let member = match text.strip_prefix("group:") {
                Some(g) => Glob::new(g).map(Member::Group),
                None => Glob::new(text).map(Member::Identity),
            };
            match member {
                Ok(member) => {
                    if matches!(&member, Member::Identity(Glob::Exact(_))) {
                        literal_members += 1;
                    }
                    members.push(member);
                }
                Err(e) => {
                    self.errors
                        .push(at.err(m, &format!("{key}.members"), format!("`{text}`: {e}")))
                }
            }
        }
        let upstream_user = match &raw_role.upstream_user {
            Some(u) if u.get_ref().trim().is_empty() => {
                self.errors
                    .push(at.err(u, &format!("{key}.upstream_user"), "must not be empty"));
                None
            }
            Some(u) => Some(u.get_ref().clone()),
            None => None,
        };
        self.roles.insert(
            name.to_owned(),
            Role {
                name: name.to_owned(),
                description: raw_role.description.as_ref().map(|d| d.get_ref().clone()),
                members,
                literal_members,
                upstream_user,
                file: at.file.to_owned(),
                line: at.line_of(raw),
            },
        );
    }

    /// Defined roles of a list, with an error for each unknown or for an empty list.
    fn role_list(&mut self, at: &Locator<'_>, list: &SpannedList, key: &str) -> Vec<String> {
        if list.get_ref().is_empty() {
            self.errors
                .push(at.err(list, key, "must name at least one role"));
        }
        let mut out = Vec::new();
        for r in list.get_ref() {
            let name = r.get_ref();
            if self.roles.contains_key(name) {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            } else {
                let known: Vec<&str> = self.roles.keys().map(String::as_str).collect();
                self.errors.push(at.err(
                    r,
                    key,
                    format!(
                        "unknown role `{name}` (defined roles: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        }
        out
    }

    /// Compiles each pattern of an optional, non-empty list.
    fn patterns<T>(
        &mut self,
        at: &Locator<'_>,
        list: Option<&SpannedList>,
        key: &str,
        compile: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        let Some(list) = list else { return Vec::new() };
        if list.get_ref().is_empty() {
            self.errors.push(at.err(
                list,
                key,
                "must not be empty (leave the key out to match anything)",
            ));
        }
        let mut out = Vec::new();
        for p in list.get_ref() {
            match compile(p.get_ref()) {
                Ok(g) => out.push(g),
                Err(e) => self.errors.push(at.err(p, key, e)),
            }
        }
        out
    }

    fn rule(&mut self, at: &Locator<'_>, raw: &Spanned<RawRule>) {
        let r = raw.get_ref();
        let errors_before = self.errors.len();
        let id = r.id.get_ref();
        let line = at.line_of(&r.id);
        if !valid_id(id) {
            self.errors.push(at.err(
                &r.id,
                "rules.id",
                "rule ids use letters, digits, `_`, `-`, `.` and `:` only",
            ));
        } else if id == DEFAULT_DENY {
            self.errors.push(at.err(
                &r.id,
                "rules.id",
                format!("`{DEFAULT_DENY}` is reserved for the decision when no rule matches"),
            ));
        } else if let Some((file, first)) = self.ids.get(id) {
            self.errors.push(at.err(
                &r.id,
                "rules.id",
                format!("duplicate rule id `{id}` (first defined at {file}:{first})"),
            ));
        } else {
            self.ids.insert(id.clone(), (at.file.to_owned(), line));
        }

        let roles = self.role_list(at, &r.roles, "rules.roles");

        let mut classes = ClassSet::default();
        match &r.classes {
            None => classes = ClassSet::ALL,
            Some(list) => {
                if list.get_ref().is_empty() {
                    self.errors
                        .push(at.err(list, "rules.classes", "must name at least one class"));
                }
                for c in list.get_ref() {
                    match StatementClass::from_name(c.get_ref()) {
                        Some(class) => classes.insert(class),
                        None => self.errors.push(at.err(
                            c,
                            "rules.classes",
                            format!(
                                "unknown class `{}` (classes: {})",
                                c.get_ref(),
                                class_names()
                            ),
                        )),
                    }
                }
            }
        }

        let tables = self.patterns(at, r.tables.as_ref(), "rules.tables", TableGlob::new);
        for t in r.tables.iter().flat_map(|l| l.get_ref()) {
            if t.get_ref().chars().any(char::is_uppercase) {
                self.warnings.push(at.warn(
                    t,
                    format!(
                        "table pattern `{}` has upper-case letters: unquoted names are stored in \
                         lower case, so it only matches quoted names",
                        t.get_ref()
                    ),
                ));
            }
        }
        let functions = self.patterns(
            at,
            r.functions.as_ref(),
            "rules.functions",
            FunctionGlob::new,
        );
        let databases = self.patterns(at, r.databases.as_ref(), "rules.databases", |s| {
            Glob::new(s).map(|g| (s.to_owned(), g))
        });

        let action = match r.action.get_ref().as_str() {
            "allow" => Some(Action::Allow),
            "deny" => Some(Action::Deny),
            "approve" => self.approval(at, r).map(Action::Approve),
            other => {
                self.errors.push(at.err(
                    &r.action,
                    "rules.action",
                    format!("unknown action `{other}` (allow, deny or approve)"),
                ));
                None
            }
        };
        if let Some(a) = &action {
            if !matches!(a, Action::Approve(_)) {
                let extra = [
                    ("approvers", r.approvers.as_ref().map(|s| s.span())),
                    ("min_approvals", r.min_approvals.as_ref().map(|s| s.span())),
                    ("timeout", r.timeout.as_ref().map(|s| s.span())),
                    ("mode", r.mode.as_ref().map(|s| s.span())),
                ];
                for (key, span) in extra {
                    if let Some(span) = span {
                        self.errors.push(Error::Invalid {
                            file: at.file.to_owned(),
                            line: at.line(span.start),
                            key: format!("rules.{key}"),
                            message: format!(
                                "only applies to action = \"approve\" (this rule's action is \"{}\")",
                                a.as_str()
                            ),
                        });
                    }
                }
            }
            if a.is_permissive() && r.classes.is_none() {
                self.errors.push(at.err(
                    &r.action,
                    "rules.classes",
                    format!(
                        "an {} rule must list its classes: without them it would also let through \
                         statements of class unknown and admin",
                        a.as_str()
                    ),
                ));
            }
        }
        let description = r.description.as_ref().map(|d| d.get_ref().clone());
        let reason = match &r.reason {
            Some(s) if s.get_ref().trim().is_empty() => {
                self.errors
                    .push(at.err(s, "rules.reason", "must not be empty"));
                None
            }
            Some(s) => Some(s.get_ref().trim().to_owned()),
            None => None,
        };

        if self.errors.len() > errors_before {
            return;
        }
        let Some(action) = action else { return };
        self.rule_spans.push((at.file.to_owned(), line));
        self.rules.push(Rule {
            id: RuleId::new(id),
            file: at.file.to_owned(),
            line,
            description,
            reason,
            roles,
            classes,
            table_filter: NameFilter::of_patterns(&tables),
            tables,
            functions,
            databases,
            action,
        });
    }

    fn approval(&mut self, at: &Locator<'_>, r: &RawRule) -> Option<ApprovalSpec> {
        let before = self.errors.len();
        let approvers = match &r.approvers {
            Some(list) => self.role_list(at, list, "rules.approvers"),
            None => {
                self.errors.push(at.err(
                    &r.action,
                    "rules.approvers",
                    "action = \"approve\" needs `approvers`, the roles that may sign off",
                ));
                Vec::new()
            }
        };
        let min_approvals = match &r.min_approvals {
            None => 1,
            Some(m) => match *m.get_ref() {
                n @ 1..=MAX_APPROVALS => n as u32,
                n => {
                    self.errors.push(at.err(
                        m,
                        "rules.min_approvals",
                        format!("must be between 1 and {MAX_APPROVALS}, not {n}"),
                    ));
                    1
                }
            },
        };
        let timeout = match &r.timeout {
            None => Duration::from_secs(600),
            Some(t) => match parse_duration(t.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    self.errors.push(at.err(t, "rules.timeout", e));
                    Duration::ZERO
                }
            },
        };
        let mode = match r.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
            None | Some((_, "hold")) => ApprovalMode::Hold,
            Some((_, "retry")) => ApprovalMode::Retry,
            Some((m, other)) => {
                self.errors.push(at.err(
                    m,
                    "rules.mode",
                    format!("unknown mode `{other}` (hold or retry)"),
                ));
                ApprovalMode::Hold
            }
        };
        (self.errors.len() == before).then_some(ApprovalSpec {
            approvers,
            min_approvals,
            timeout,
            mode,
        })
    }

    fn mask(&mut self, at: &Locator<'_>, raw: &Spanned<RawMask>) {
        let m = raw.get_ref();
        let before = self.errors.len();
        let roles = self.role_list(at, &m.roles, "masks.roles");
        if m.columns.get_ref().is_empty() {
            self.errors
                .push(at.err(&m.columns, "masks.columns", "must name at least one column"));
        }
        let columns = self.patterns(at, Some(&m.columns), "masks.columns", ColumnGlob::new);
        let count =
            |v: &Option<Spanned<i64>>, key: &str, default: u32, errors: &mut Vec<Error>| match v {
                None => default,
                Some(n) => match u32::try_from(*n.get_ref()) {
                    Ok(n) if n <= 1000 => n,
                    _ => {
                        errors.push(at.err(n, key, "must be between 0 and 1000"));
                        default
                    }
                },
            };
        let text = m
            .text
            .as_ref()
            .map_or_else(|| "***".to_owned(), |t| t.get_ref().clone());
        let strategy = match m.strategy.get_ref().as_str() {
            "redact" => Some(MaskStrategy::Redact { text }),
            "partial" => Some(MaskStrategy::Partial {
                keep_first: count(&m.keep_first, "masks.keep_first", 0, &mut self.errors),
                keep_last: count(&m.keep_last, "masks.keep_last", 4, &mut self.errors),
                text,
            }),
            "hash" => Some(MaskStrategy::Hash),
            "null" => Some(MaskStrategy::Null),
            "email" => Some(MaskStrategy::Email),
            "fake" => Some(MaskStrategy::Fake),
            other => {
                self.errors.push(at.err(
                    &m.strategy,
                    "masks.strategy",
                    format!(
                        "unknown strategy `{other}` (redact, partial, hash, null, email or fake)"
                    ),
                ));
                None
            }
        };
        if let Some(s) = &strategy {
            let name = s.as_str();
            let partial = matches!(s, MaskStrategy::Partial { .. });
            let takes_text = partial || matches!(s, MaskStrategy::Redact { .. });
            let misplaced = [
                (
                    "keep_first",
                    m.keep_first.as_ref().map(|v| v.span()),
                    partial,
                ),
                ("keep_last", m.keep_last.as_ref().map(|v| v.span()), partial),
                ("text", m.text.as_ref().map(|v| v.span()), takes_text),
            ];
            for (key, span, ok) in misplaced {
                if let (Some(span), false) = (span, ok) {
                    self.errors.push(Error::Invalid {
                        file: at.file.to_owned(),
                        line: at.line(span.start),
                        key: format!("masks.{key}"),
                        message: format!("does not apply to strategy \"{name}\""),
                    });
                }
            }
        }
        if self.errors.len() > before {
            return;
        }
        let Some(strategy) = strategy else { return };
        self.masks.push(MaskRule {
            file: at.file.to_owned(),
            line: at.line_of(raw),
            description: m.description.as_ref().map(|d| d.get_ref().clone()),
            roles,
            columns,
            strategy,
        });
    }

    /// Warnings about rules that load but are probably wrong.
    fn lint(&mut self) {
        for (i, rule) in self.rules.iter().enumerate() {
            let warn = |message: String| Warning {
                file: rule.file.clone(),
                line: rule.line,
                message,
            };
            if rule.action.is_permissive() && rule.classes.contains(StatementClass::Unknown) {
                self.warnings.push(warn(format!(
                    "rule `{}` lets through statements pgward could not understand (class unknown)",
                    rule.id
                )));
            }
            if let Action::Approve(spec) = &rule.action {
                let own: Vec<&str> = rule
                    .roles
                    .iter()
                    .filter(|r| spec.approvers.contains(r))
                    .map(String::as_str)
                    .collect();
                if !own.is_empty() {
                    self.warnings.push(warn(format!(
                        "rule `{}`: role(s) {} may approve their own requests; a different member \
                         must sign off each one",
                        rule.id,
                        own.join(", ")
                    )));
                }
                let roles: Vec<&Role> = spec
                    .approvers
                    .iter()
                    .filter_map(|a| self.roles.get(a))
                    .collect();
                let all_literal = roles.iter().all(|r| r.literal_members == r.members.len());
                let listed: BTreeSet<&str> = roles
                    .iter()
                    .flat_map(|r| &r.members)
                    .filter_map(|m| match m {
                        Member::Identity(Glob::Exact(n)) => Some(&**n),
                        _ => None,
                    })
                    .collect();
                if all_literal && (listed.len() as u64) < u64::from(spec.min_approvals) {
                    self.warnings.push(warn(format!(
                        "rule `{}` needs {} approval(s) but its approver roles list {} member(s) \
                         here; unless the identities file gives these roles to more people it can \
                         never be approved",
                        rule.id,
                        spec.min_approvals,
                        listed.len()
                    )));
                }
            }
            if let Some(earlier) = self.rules[..i].iter().find(|e| e.shadows(rule)) {
                self.warnings.push(warn(format!(
                    "rule `{}` can never match: the earlier rule `{}` ({}:{}) matches every \
                     statement it would",
                    rule.id, earlier.id, earlier.file, earlier.line
                )));
            }
        }
    }

    fn finish(self) -> (RuleSet, Vec<Warning>) {
        let role_index: HashMap<String, usize> = self
            .roles
            .keys()
            .enumerate()
            .map(|(i, name)| (name.clone(), i))
            .collect();
        let mut by_role: Vec<[Vec<u32>; CLASS_COUNT]> =
            (0..role_index.len()).map(|_| Default::default()).collect();
        for (i, rule) in self.rules.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            for role in &rule.roles {
                let Some(per_class) = role_index.get(role).and_then(|&r| by_role.get_mut(r)) else {
                    continue;
                };
                for class in rule.classes.iter() {
                    if let Some(list) = per_class.get_mut(class as usize) {
                        list.push(i);
                    }
                }
            }
        }
        let mut warnings = self.warnings;
        warnings.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        (
            RuleSet {
                rules: self.rules,
                roles: self.roles,
                role_index,
                by_role,
                masks: self.masks,
                default_rule: RuleId::new(DEFAULT_DENY),
            },
            warnings,
        )
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// Parses `500ms`, `30s`, `10m`, `2h` (a bare number is seconds); zero is refused.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("`{s}` is not a duration like 30s, 10m or 1h");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    match n.checked_mul(ms) {
        Some(0) => Err("must be longer than zero".to_owned()),
        Some(total) => Ok(Duration::from_millis(total)),
        None => Err(bad()),
    }
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten minutes").is_err());
        assert!(parse_duration("10 parsecs").is_err());
    }
}
