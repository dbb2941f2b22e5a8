//! Validation: raw rule files → checked roles, rules, masks and detectors, plus warnings.
//!
//! Every check that spans keys or files lives here, and every problem is
//! reported with its file, line and key; the builder keeps going after an
//! error so that one run of `pgward check` shows them all. It never builds a
//! partial rule set: [`super::RuleSet::parse`] refuses to index anything
//! while an error is pending.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use toml::Spanned;

use super::glob::{ColumnGlob, FunctionGlob, Glob, NameFilter, TableGlob};
use super::raw::{RawDetector, RawMask, RawRole, RawRule, RawStrategy, SpannedList};
use super::rules::{
    Action, ApprovalMode, ApprovalSpec, ClassSet, DEFAULT_DENY, DetectorKind, DetectorRule,
    MaskRule, MaskStrategy, Member, Role, Rule, RuleId,
};
use super::{Error, Locator, Warning, class_names};
use crate::sql::StatementClass;

/// Largest `min_approvals` accepted: more is surely a typo.
const MAX_APPROVALS: i64 = 100;

/// Collects roles, rules and masks while validating, then indexes them.
#[derive(Default)]
pub(super) struct Builder {
    pub(super) errors: Vec<Error>,
    pub(super) warnings: Vec<Warning>,
    pub(super) roles: BTreeMap<String, Role>,
    pub(super) rules: Vec<Rule>,
    pub(super) ids: HashMap<String, (String, usize)>,
    pub(super) masks: Vec<MaskRule>,
    pub(super) detectors: Vec<DetectorRule>,
}

/// What a [`Builder`] hands to the rule set once nothing is wrong.
pub(super) struct Parts {
    pub(super) roles: Vec<Role>,
    pub(super) rules: Vec<Rule>,
    pub(super) masks: Vec<MaskRule>,
    pub(super) detectors: Vec<DetectorRule>,
}

impl Builder {
    pub(super) fn role(&mut self, at: &Locator<'_>, name: &str, raw: &Spanned<RawRole>) {
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

    pub(super) fn rule(&mut self, at: &Locator<'_>, raw: &Spanned<RawRule>) {
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
                    ("grant_window", r.grant_window.as_ref().map(|s| s.span())),
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
        let grant_window = match &r.grant_window {
            None => Duration::from_secs(900),
            Some(t) => match parse_duration(t.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    self.errors.push(at.err(t, "rules.grant_window", e));
                    Duration::ZERO
                }
            },
        };
        (self.errors.len() == before).then_some(ApprovalSpec {
            approvers,
            min_approvals,
            timeout,
            mode,
            grant_window,
        })
    }

    pub(super) fn mask(&mut self, at: &Locator<'_>, raw: &Spanned<RawMask>) {
        let m = raw.get_ref();
        let before = self.errors.len();
        let roles = self.role_list(at, &m.roles, "masks.roles");
        if m.columns.get_ref().is_empty() {
            self.errors
                .push(at.err(&m.columns, "masks.columns", "must name at least one column"));
        }
        let columns = self.patterns(at, Some(&m.columns), "masks.columns", ColumnGlob::new);
        let strategy = self.strategy(at, "masks", &m.strategy_keys());
        if self.errors.len() > before {
            return;
        }
        let Some(strategy) = strategy else { return };
        let line = at.line_of(raw);
        self.masks.push(MaskRule {
            // Named by file name, not path, so the id is the same wherever the directory lives.
            id: RuleId::new(&format!(
                "mask:{}:{line}",
                std::path::Path::new(at.file)
                    .file_name()
                    .map_or(at.file.into(), |n| n.to_string_lossy())
            )),
            file: at.file.to_owned(),
            line,
            description: m.description.as_ref().map(|d| d.get_ref().clone()),
            roles,
            columns,
            strategy,
            allow_inference: m.allow_inference.unwrap_or(false),
        });
    }

    pub(super) fn detector(&mut self, at: &Locator<'_>, raw: &Spanned<RawDetector>) {
        let d = raw.get_ref();
        let before = self.errors.len();
        let roles = self.role_list(at, &d.roles, "detectors.roles");
        if d.kinds.get_ref().is_empty() {
            self.errors
                .push(at.err(&d.kinds, "detectors.kinds", "must name at least one kind"));
        }
        let mut kinds = Vec::new();
        for k in d.kinds.get_ref() {
            match DetectorKind::from_name(k.get_ref()) {
                Some(kind) if kinds.contains(&kind) => {}
                Some(kind) => kinds.push(kind),
                None => {
                    let names: Vec<&str> = DetectorKind::ALL.iter().map(|k| k.as_str()).collect();
                    self.errors.push(at.err(
                        k,
                        "detectors.kinds",
                        format!(
                            "unknown kind `{}` (kinds: {})",
                            k.get_ref(),
                            names.join(", ")
                        ),
                    ));
                }
            }
        }
        let strategy = self.strategy(at, "detectors", &d.strategy_keys());
        if self.errors.len() > before {
            return;
        }
        let Some(strategy) = strategy else { return };
        self.detectors.push(DetectorRule {
            file: at.file.to_owned(),
            line: at.line_of(raw),
            description: d.description.as_ref().map(|d| d.get_ref().clone()),
            roles,
            kinds,
            strategy,
        });
    }

    /// The strategy of a `[[masks]]` or `[[detectors]]` entry (`section`
    /// names it in errors), with its options checked: `keep_first` and
    /// `keep_last` only for `partial`, `text` only for `partial` and `redact`.
    fn strategy(
        &mut self,
        at: &Locator<'_>,
        section: &str,
        m: &RawStrategy<'_>,
    ) -> Option<MaskStrategy> {
        let count =
            |v: Option<&Spanned<i64>>, key: &str, default: u32, errors: &mut Vec<Error>| match v {
                None => default,
                Some(n) => match u32::try_from(*n.get_ref()) {
                    Ok(n) if n <= 1000 => n,
                    _ => {
                        errors.push(at.err(
                            n,
                            &format!("{section}.{key}"),
                            "must be between 0 and 1000",
                        ));
                        default
                    }
                },
            };
        let text = m
            .text
            .map_or_else(|| "***".to_owned(), |t| t.get_ref().clone());
        let strategy = match m.strategy.get_ref().as_str() {
            "redact" => Some(MaskStrategy::Redact { text }),
            "partial" => Some(MaskStrategy::Partial {
                keep_first: count(m.keep_first, "keep_first", 0, &mut self.errors),
                keep_last: count(m.keep_last, "keep_last", 4, &mut self.errors),
                text,
            }),
            "hash" => Some(MaskStrategy::Hash),
            "null" => Some(MaskStrategy::Null),
            "email" => Some(MaskStrategy::Email),
            "fake" => Some(MaskStrategy::Fake),
            other => {
                self.errors.push(at.err(
                    m.strategy,
                    &format!("{section}.strategy"),
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
                ("keep_first", m.keep_first.map(|v| v.span()), partial),
                ("keep_last", m.keep_last.map(|v| v.span()), partial),
                ("text", m.text.map(|v| v.span()), takes_text),
            ];
            for (key, span, ok) in misplaced {
                if let (Some(span), false) = (span, ok) {
                    self.errors.push(Error::Invalid {
                        file: at.file.to_owned(),
                        line: at.line(span.start),
                        key: format!("{section}.{key}"),
                        message: format!("does not apply to strategy \"{name}\""),
                    });
                }
            }
        }
        strategy
    }

    /// Warnings about rules that load but are probably wrong.
    pub(super) fn lint(&mut self) {
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
                // A requester in an approver role cannot approve their own request.
                let needed = u64::from(spec.min_approvals) + u64::from(!own.is_empty());
                if all_literal && (listed.len() as u64) < needed {
                    self.warnings.push(warn(format!(
                        "rule `{}` needs {} approval(s){} but its approver roles list {} \
                         member(s) here; unless the identities file gives these roles to more \
                         people it can never be approved",
                        rule.id,
                        spec.min_approvals,
                        if own.is_empty() {
                            ""
                        } else {
                            " from people other than the requester"
                        },
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

    /// The validated parts and the warnings, sorted by place.
    pub(super) fn finish(self) -> (Parts, Vec<Warning>) {
        let mut warnings = self.warnings;
        warnings.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        let parts = Parts {
            roles: self.roles.into_values().collect(),
            rules: self.rules,
            masks: self.masks,
            detectors: self.detectors,
        };
        (parts, warnings)
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
