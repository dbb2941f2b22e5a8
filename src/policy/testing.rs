//! Rule test cases for `pgward test`: the `opa test` habit for DBAs.
//!
//! Cases live beside the rules in `DIR/tests/*.toml` (read in file-name
//! order; the rule loader never reads that directory):
//!
//! ```toml
//! [[case]]
//! name = "agent cannot drop orders"   # optional; defaults to the SQL
//! role = "agent"                      # or roles = ["agent", "analyst"],
//!                                     # or identity = "agent-7" (groups = ["ai-agents"])
//! sql = "DROP TABLE orders"
//! database = "demo"                   # optional, default "postgres"
//! expect = "deny"                     # allow | deny | approve
//! rule = "agent-no-ddl"               # the id of the deciding rule, or "default-deny"
//! ```
//!
//! Each case's SQL is analyzed as the session would with the built-in
//! function catalog and `search_path = public`, then decided with
//! [`RuleSet::decide_all`]. A case naming an unknown role or rule id is an
//! error, not a failure: it would otherwise pass or fail for the wrong reason.

use std::fmt;
use std::path::Path;

use toml::Spanned;

use super::raw::RawTestFile;
use super::{DEFAULT_DENY, Error, Locator, RuleSet, Warning};
use crate::sql::{AnalyzeContext, FunctionCatalog, analyze};

/// The subdirectory of the rules directory that holds test cases.
pub const TESTS_DIR: &str = "tests";

/// The database a case runs against when it names none.
pub const DEFAULT_DATABASE: &str = "postgres";

/// The outcome of every case.
#[derive(Debug, Clone)]
pub struct TestReport {
    /// Warnings from loading the rules.
    pub warnings: Vec<Warning>,
    /// Each case, in file order.
    pub cases: Vec<CaseResult>,
}

/// One case's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The test file.
    pub file: String,
    /// The line of its `[[case]]`.
    pub line: usize,
    /// Its name (or its SQL, shortened).
    pub name: String,
    /// The expected action (`allow`, `deny` or `approve`).
    pub expected_action: String,
    /// The expected rule id.
    pub expected_rule: String,
    /// The action decided.
    pub actual_action: &'static str,
    /// The rule that decided.
    pub actual_rule: String,
}

/// Loads the rules of `dir` and runs every case of `dir/tests/*.toml`.
///
/// # Errors
/// Whatever [`RuleSet::load_dir`] reports; [`Error::Read`] for an
/// unreadable test file; [`Error::Invalid`] for a malformed case;
/// [`Error::NoTestCases`] when there is none.
pub fn run(dir: &Path) -> Result<TestReport, Error> {
    let (set, warnings) = RuleSet::load_dir(dir)?;
    let tests = dir.join(TESTS_DIR);
    let no_cases = || Error::NoTestCases {
        dir: tests.display().to_string(),
    };
    let entries = match std::fs::read_dir(&tests) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_cases()),
        Err(source) => {
            return Err(Error::Read {
                path: tests.display().to_string(),
                source,
            });
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read {
            path: tests.display().to_string(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".toml") && !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        let path = tests.join(name);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        files.push((path.display().to_string(), text));
    }
    let cases = run_cases(&set, &files)?;
    if cases.is_empty() {
        return Err(no_cases());
    }
    Ok(TestReport { warnings, cases })
}

/// Runs the cases of test files given as `(name, text)` against `set`. Pure.
///
/// # Errors
/// [`Error::Invalid`] (or [`Error::Several`]) for malformed cases.
pub fn run_cases(set: &RuleSet, files: &[(String, String)]) -> Result<Vec<CaseResult>, Error> {
    let path = vec!["public".to_owned()];
    let catalog = FunctionCatalog::builtin_only();
    let ctx = AnalyzeContext::new(&path, &catalog);
    let mut errors = Vec::new();
    let mut results = Vec::new();
    for (file, text) in files {
        let at = Locator::new(file, text);
        let raw: RawTestFile = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                errors.push(at.toml_err(&e));
                continue;
            }
        };
        for case in &raw.case {
            let before = errors.len();
            let c = case.get_ref();
            let known_role = |r: &Spanned<String>, errors: &mut Vec<Error>| {
                if set.role(r.get_ref()).is_none() {
                    errors.push(at.err(r, "case.role", format!("unknown role `{}`", r.get_ref())));
                }
                r.get_ref().clone()
            };
            let roles = match (&c.role, &c.roles, &c.identity) {
                (Some(r), None, None) => vec![known_role(r, &mut errors)],
                (None, Some(list), None) => list
                    .get_ref()
                    .iter()
                    .map(|r| known_role(r, &mut errors))
                    .collect(),
                (None, None, Some(id)) => set.roles_for(id.get_ref(), &[], &c.groups),
                _ => {
                    errors.push(at.err(
                        case,
                        "case.role",
                        "give exactly one of `role`, `roles` or `identity`",
                    ));
                    Vec::new()
                }
            };
            if !["allow", "deny", "approve"].contains(&c.expect.get_ref().as_str()) {
                errors.push(at.err(
                    &c.expect,
                    "case.expect",
                    format!(
                        "unknown decision `{}` (allow, deny or approve)",
                        c.expect.get_ref()
                    ),
                ));
            }
            let rule = c.rule.get_ref();
            let is_mask = set.masks().iter().any(|m| m.id().as_str() == rule);
            if rule != DEFAULT_DENY && set.rule(rule).is_none() && !is_mask {
                errors.push(at.err(&c.rule, "case.rule", format!("no rule has the id `{rule}`")));
            }
            if errors.len() > before {
                continue;
            }
            let database = c.database.as_deref().unwrap_or(DEFAULT_DATABASE);
            let analysis = analyze(c.sql.get_ref(), &ctx);
            let d = set.decide_all(&roles, database, &analysis);
            results.push(CaseResult {
                file: file.clone(),
                line: at.line_of(case),
                name: c.name.clone().unwrap_or_else(|| shorten(c.sql.get_ref())),
                expected_action: c.expect.get_ref().clone(),
                expected_rule: rule.clone(),
                actual_action: d.action.as_str(),
                actual_rule: d.rule.to_string(),
            });
        }
    }
    if errors.is_empty() {
        Ok(results)
    } else {
        Err(Error::from_list(errors))
    }
}

/// The SQL on one line, at most 60 characters.
fn shorten(sql: &str) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

// === impl CaseResult ===

impl CaseResult {
    /// Whether the decision and the rule are the ones expected.
    pub fn passed(&self) -> bool {
        self.expected_action == self.actual_action && self.expected_rule == self.actual_rule
    }
}

impl fmt::Display for CaseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed() {
            write!(
                f,
                "ok    {}:{}: {} ({} by {})",
                self.file, self.line, self.name, self.actual_action, self.actual_rule
            )
        } else {
            write!(
                f,
                "FAIL  {}:{}: {}: expected {} by {}, got {} by {}",
                self.file,
                self.line,
                self.name,
                self.expected_action,
                self.expected_rule,
                self.actual_action,
                self.actual_rule
            )
        }
    }
}

// === impl TestReport ===

impl TestReport {
    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed()).count()
    }

    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    /// Whether every case passed.
    pub fn is_success(&self) -> bool {
        self.failed() == 0
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        for c in &self.cases {
            writeln!(f, "{c}")?;
        }
        writeln!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}
