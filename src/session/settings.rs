//! Startup settings are statements too: every startup parameter other than `user`, `database`
//! and `options` is a server setting, and so is every `-c name=value` in `options`. A raw client
//! could otherwise run `SET search_path` or `SET role` by putting it in its StartupMessage.
//!
//! Each setting is analyzed as the `SET` it amounts to. Plain session settings (DateStyle,
//! TimeZone, application_name …), which every driver sends, pass; anything stricter — a
//! privilege, admin, lexer-changing or unreadable setting — is judged by the duty rules like
//! the statement would be, and a refusal ends the connection before the server is contacted.

use crate::policy::{Decision, Request, RuleSet};
use crate::sql::{
    AnalyzeContext, Flag, FunctionCatalog, StatementClass, StatementProfile, analyze,
};

/// A refused startup setting: the rule's message and hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The client-facing message.
    pub message: String,
    /// How to get it through.
    pub hint: String,
}

/// Judges a StartupMessage's settings for an identity holding `roles`.
pub fn judge_startup(
    params: &[(String, String)],
    rules: &RuleSet,
    roles: &[String],
    database: &str,
) -> Option<Refused> {
    let path = vec!["public".to_owned()];
    let catalog = FunctionCatalog::builtin_only();
    let ctx = AnalyzeContext::new(&path, &catalog);
    for (name, value) in settings(params) {
        let decision = match (&name, &value) {
            (Some(n), Some(v)) => {
                let analysis = analyze(
                    &format!("SET {} TO {}", quote_ident(n), quote_literal(v)),
                    &ctx,
                );
                let harmless = analysis.statements.iter().all(|s| {
                    s.profile.class <= StatementClass::Session && !s.profile.has(Flag::LexerChange)
                });
                if harmless {
                    continue;
                }
                decision_text(rules.decide_all(roles, database, &analysis))
            }
            // A switch pgward does not read is judged as an unclassifiable statement.
            _ => {
                let profile = StatementProfile::unparsed("unreadable startup option");
                decision_text(rules.decide(&Request {
                    roles,
                    database,
                    profile: &profile,
                }))
            }
        };
        if let Some((message, hint)) = decision {
            return Some(Refused {
                message: format!(
                    "startup setting {}: {message}",
                    name.as_deref().unwrap_or("in options")
                ),
                hint,
            });
        }
    }
    None
}

/// The message and hint of a refusal, `None` when allowed.
fn decision_text(decision: Decision<'_>) -> Option<(String, String)> {
    (!decision.is_allowed()).then(|| (decision.message(), decision.hint().unwrap_or_default()))
}

/// The (name, value) settings of a StartupMessage; `(None, None)` for an `options` switch that is
/// not `-c name=value` or `--name=value`.
fn settings(params: &[(String, String)]) -> Vec<(Option<String>, Option<String>)> {
    let mut out = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "user" | "database" | "replication" => {}
            "options" => {
                let words = split_options(v);
                let mut it = words.iter();
                while let Some(w) = it.next() {
                    let setting = if w == "-c" {
                        it.next().map(String::as_str)
                    } else {
                        w.strip_prefix("-c").or_else(|| w.strip_prefix("--"))
                    };
                    match setting.and_then(|s| s.split_once('=')) {
                        Some((n, v)) => out.push((Some(n.replace('-', "_")), Some(v.to_owned()))),
                        None => out.push((None, None)),
                    }
                }
            }
            k if k.starts_with("_pq_.") => {}
            k => out.push((Some(k.to_owned()), Some(v.clone()))),
        }
    }
    out
}

/// Splits `options` as the server does: on whitespace, with backslash escaping the next char.
fn split_options(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
[roles.agent]
members = ["agent-*"]
[[rules]]
id = "agent-reads"
roles = ["agent"]
classes = ["read", "session"]
action = "allow"
"#;

    fn judge(params: &[(&str, &str)]) -> Option<Refused> {
        let (rules, _) = RuleSet::parse(&[("r.toml".into(), RULES.into())]).unwrap();
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        judge_startup(&params, &rules, &["agent".to_owned()], "db")
    }

    #[test]
    fn ordinary_driver_settings_pass() {
        assert_eq!(
            judge(&[
                ("user", "agent-7"),
                ("database", "db"),
                ("client_encoding", "UTF8"),
                ("DateStyle", "ISO"),
                ("TimeZone", "UTC"),
                ("application_name", "it's fine"),
                ("options", "-c statement_timeout=5s --lock-timeout=1s"),
            ]),
            None
        );
    }

    #[test]
    fn settings_that_change_privilege_or_parsing_are_judged() {
        for params in [
            &[("options", "-c search_path=evil,pg_catalog")][..],
            &[("options", "-crole=admin")],
            &[("search_path", "evil")],
            &[("client_encoding", "SJIS")],
            &[("standard_conforming_strings", "off")],
            &[("options", "-B 1000")],
            &[("options", "-c search_path=a\\ b")],
        ] {
            assert!(judge(params).is_some(), "{params:?}");
        }
    }

    #[test]
    fn options_split_like_the_server() {
        assert_eq!(
            split_options(r"-c a=b\ c  --d-e=f"),
            ["-c", "a=b c", "--d-e=f"]
        );
    }
}
