//! Duty rules: the rules directory → a compiled [`RuleSet`] → a [`Decision`] per statement.
//!
//! This module owns what a DBA writes in `rules/*.toml` and what it means:
//! who belongs to which role, which role may run which statements, which
//! need a sign-off, which columns are masked for whom, and which content
//! detectors scan the rest. It turns rule files into an immutable
//! [`RuleSet`] once, with every pattern compiled and every rule indexed by
//! role and class, so that [`RuleSet::decide`] is a pure function of a
//! [`Request`] that does not allocate on the allow path.
//!
//! It never performs I/O except in [`RuleSet::load_dir`] (and the helpers
//! built on it: [`check`], [`testing::run`]), never reads a clock, holds no
//! globals, and never enforces anything itself: the session enforces the
//! decision, the masker the masks, the approvals module the sign-offs.
//!
//! # The rules directory
//!
//! Every `*.toml` file directly in the directory is a rule file (names
//! starting with `.` are skipped, as are subdirectories). Files are read in
//! file-name order and merged: roles may be used in any file, whichever file
//! defines them. Test cases for `pgward test` live in the `tests/`
//! subdirectory (see [`testing`]), which is never read as rules. A missing
//! directory, one without rule files, or files defining no rule at all are
//! errors, never an empty rule set: the caller keeps its last good set.
//!
//! ```toml
//! [roles.agent]
//! members = ["agent-*", "group:ai-agents"]  # identity-name globs; group:<glob> for token groups
//! upstream_user = "app_agent"               # server login for this role (used by the session)
//!
//! [[rules]]
//! id = "agent-may-read"                     # unique across all files
//! roles = ["agent"]                         # required: any of the requester's roles
//! classes = ["read", "tx", "session"]       # required unless action = "deny"
//! action = "allow"                          # allow | deny | approve
//!
//! [[rules]]
//! id = "agent-writes-need-a-dba"
//! roles = ["agent"]
//! classes = ["write"]
//! tables = ["public.orders"]                # schema.table globs; `*` = any table
//! action = "approve"
//! approvers = ["dba"]                       # roles; never the requester themself
//! min_approvals = 1                         # default 1
//! timeout = "10m"                           # ms, s, m, h; default 10m
//! mode = "hold"                             # hold (default) | retry
//! reason = "orders are shared with billing" # optional, shown in the hint
//!
//! [[masks]]
//! roles = ["agent", "analyst"]
//! columns = ["public.people.ssn", "*.card_number"]  # [[schema.]table.]column globs
//! strategy = "partial"                      # redact | partial | hash | null | email | fake
//! keep_last = 4                             # partial: keep_first (0), keep_last (4), text ("***")
//!
//! [[detectors]]                             # a second line: values no column mask covers
//! roles = ["agent", "analyst"]
//! kinds = ["card", "secret", "iban"]        # card | ssn | email | iban | secret
//! strategy = "redact"                       # the keys and defaults of [[masks]]
//! ```
//!
//! A detector scans, for its roles, every non-NULL result value of a column
//! that no applicable `[[masks]]` entry masks, and masks a value holding one
//! of its kinds with its strategy (a binary-format value becomes NULL). The
//! first detector in file order that names a kind decides that kind's
//! strategy. See `mask::Detectors` for what each kind matches.
//!
//! Other keys: `description` on roles, rules, masks and detectors; `functions`
//! (`name` or `schema.name` globs) and `databases` (globs on the database
//! name) on rules; `text` for `redact` (default `"***"`).
//!
//! # How a statement is decided
//!
//! Rules are tried in order (file order, then order in the file); the first
//! rule that matches decides. A rule matches when all the conditions it gives
//! hold:
//!
//! - `roles`: the requester has at least one of them.
//! - `classes`: the statement's class (see [`StatementClass`]) is one of
//!   them. Omitted means every class, which only `deny` rules may do: an
//!   allow without classes would also allow `unknown` and `admin`.
//!   Statements pgward cannot classify are `unknown`, so only a rule that
//!   names `unknown` can let them through.
//! - `databases`: the session's database matches one of the globs.
//! - `tables` and `functions` are read in the direction that fails closed.
//!   An `allow` or `approve` rule covers a statement only when **every**
//!   table it reads or writes matches one of its globs (every function
//!   likewise); a `deny` rule catches a statement when **any** of its tables
//!   (functions) matches. A statement touching no table matches no rule that
//!   has `tables`. An unqualified function call (`lower(x)`) is resolved by
//!   the session's `search_path`, so a pattern naming a schema matches it for
//!   a deny rule but not for a permissive one.
//!
//! Nothing matched: deny, by the rule id [`DEFAULT_DENY`]. `approve` is a
//! refusal until the approvals module enforces it: the refusal says which
//! approvers the statement needs. For a text holding several statements,
//! [`RuleSet::decide_all`] decides each and keeps the strictest outcome.
//!
//! # Validation
//!
//! Errors name the file, the line and the key: TOML syntax, unknown keys,
//! unknown roles (in `roles`, `approvers`, mask and detector `roles`), unknown
//! classes, actions, modes, strategies and detector kinds, bad patterns and durations, duplicate rule
//! ids (naming both places), `approve` without approvers, approval keys on
//! other actions, `min_approvals` below 1, an allow or approve rule without
//! `classes`. Warnings, which do not stop loading: a rule that can never
//! match because an earlier rule matches everything it would; a rule whose
//! requesters may also approve (a *different* member must then sign off);
//! `min_approvals` higher than the approver roles' listed members; an allow of
//! `unknown`; an upper-case table pattern (names are stored folded).
//!
//! # Example
//! ```
//! use pgward::policy::{Request, RuleSet};
//! use pgward::sql::{analyze, AnalyzeContext, FunctionCatalog};
//!
//! let rules = r#"
//!     [roles.agent]
//!     members = ["agent-*"]
//!
//!     [[rules]]
//!     id = "agent-may-read"
//!     roles = ["agent"]
//!     classes = ["read"]
//!     action = "allow"
//! "#;
//! let (set, warnings) = RuleSet::parse(&[("agent.toml".into(), rules.into())]).unwrap();
//! assert!(warnings.is_empty());
//!
//! let roles = set.roles_for("agent-7", &[], &[]);
//! let path = vec!["public".to_owned()];
//! let catalog = FunctionCatalog::builtin_only();
//! let a = analyze("DROP TABLE orders", &AnalyzeContext::new(&path, &catalog));
//! let d = set.decide(&Request { roles: &roles, database: "demo", profile: &a.combined });
//! assert_eq!(d.rule.as_str(), "default-deny");
//! assert_eq!(d.hint().as_deref(),
//!     Some("no rule allows role(s) agent to run ddl statements; add a rule to the rules directory"));
//! ```

mod build;
mod eval;
pub mod explain;
mod glob;
mod leak;
mod raw;
mod rules;
pub mod testing;

use std::fmt;
use std::path::Path;

use serde::Serialize;
use toml::Spanned;

use crate::sql::StatementClass;
pub use eval::{Decision, Request};
pub(crate) use glob::Glob;
pub use leak::{Leak, LeakKind};
pub use rules::{
    Action, ApprovalMode, ApprovalSpec, ClassSet, DEFAULT_DENY, DetectorKind, DetectorRule,
    MaskRule, MaskStrategy, Role, Rule, RuleId, RuleSet,
};

/// Why a rules directory (or a test-case file) was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The directory holds no `*.toml` rule file.
    #[error("{dir}: no rule files (*.toml) in the rules directory")]
    NoRuleFiles {
        /// The directory.
        dir: String,
    },
    /// The files parse but define no `[[rules]]`: refused rather than
    /// silently denying everything.
    #[error("{files}: the rule files define no [[rules]]")]
    NoRules {
        /// The files, comma-separated.
        files: String,
    },
    /// The tests directory holds no `[[case]]`.
    #[error("{dir}: no test cases ([[case]] in tests/*.toml)")]
    NoTestCases {
        /// The directory searched.
        dir: String,
    },
    /// Something in a file is wrong.
    #[error("{}", invalid(file, *line, key, message))]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line of the offending key or value; 0 when unknown.
        line: usize,
        /// The key, dotted (`rules.classes`), or empty when the parser could not tell.
        key: String,
        /// What is wrong, lowercase.
        message: String,
    },
    /// More than one thing is wrong: each on its own line, in file order.
    #[error("{}", several(.0))]
    Several(Vec<Error>),
}

/// Something legal but probably not what the author meant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What looks wrong, lowercase.
    pub message: String,
}

fn invalid(file: &str, line: usize, key: &str, message: &str) -> String {
    if key.is_empty() {
        format!("{file}:{line}: {message}")
    } else {
        format!("{file}:{line}: {key}: {message}")
    }
}

fn several(errors: &[Error]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// Validates the rules directory `dir`: the warnings when it loads.
///
/// # Errors
/// Whatever [`RuleSet::load_dir`] reports.
pub fn check(dir: &Path) -> Result<Vec<Warning>, Error> {
    RuleSet::load_dir(dir).map(|(_, warnings)| warnings)
}

// === impl Error ===

impl Error {
    /// Every single error, flattening [`Error::Several`].
    pub fn iter(&self) -> impl Iterator<Item = &Error> {
        let list: &[Error] = match self {
            Error::Several(v) => v,
            one => std::slice::from_ref(one),
        };
        list.iter()
    }

    /// One error for a non-empty list, [`Error::Several`] for more.
    fn from_list(mut errors: Vec<Error>) -> Error {
        if errors.len() == 1
            && let Some(e) = errors.pop()
        {
            return e;
        }
        Error::Several(errors)
    }
}

// === impl Warning ===

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// Maps byte offsets of one file to line numbers for errors and warnings.
struct Locator<'a> {
    file: &'a str,
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    fn new(file: &'a str, text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Locator { file, starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }

    fn line_of<T>(&self, at: &Spanned<T>) -> usize {
        self.line(at.span().start)
    }

    fn err<T>(&self, at: &Spanned<T>, key: &str, message: impl Into<String>) -> Error {
        Error::Invalid {
            file: self.file.to_owned(),
            line: self.line_of(at),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn warn<T>(&self, at: &Spanned<T>, message: impl Into<String>) -> Warning {
        Warning {
            file: self.file.to_owned(),
            line: self.line_of(at),
            message: message.into(),
        }
    }

    /// A TOML syntax or shape error, with the key when the message names one.
    fn toml_err(&self, e: &toml::de::Error) -> Error {
        let message = e.message().trim_end().to_owned();
        let key = ["unknown field `", "missing field `", "duplicate key `"]
            .iter()
            .find_map(|p| message.strip_prefix(p))
            .and_then(|rest| rest.split('`').next())
            .unwrap_or_default()
            .to_owned();
        Error::Invalid {
            file: self.file.to_owned(),
            line: e.span().map_or(0, |s| self.line(s.start)),
            key,
            message,
        }
    }
}

/// The names of all classes, for error messages.
fn class_names() -> String {
    let names: Vec<&str> = StatementClass::ALL.iter().map(|c| c.as_str()).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests;
