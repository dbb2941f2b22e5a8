//! Unit tests of the policy module: loading and validation (with the line of
//! each error), matching, messages, the example rules and their test cases.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::sql::{AnalyzeContext, FunctionCatalog, StatementProfile, TableName, analyze};

/// Three roles on lines 1–6; rules in tests start on line 7.
const ROLES: &str = "[roles.agent]\nmembers = [\"agent-*\", \"group:ai-agents\"]\n\
                     [roles.dba]\nmembers = [\"alice\", \"carol\"]\n\
                     [roles.analyst]\nmembers = [\"bob\"]\n";

fn parse(text: &str) -> Result<(RuleSet, Vec<Warning>), Error> {
    RuleSet::parse(&[("r.toml".to_owned(), text.to_owned())])
}

fn with_roles(rules: &str) -> Result<(RuleSet, Vec<Warning>), Error> {
    parse(&format!("{ROLES}{rules}"))
}

fn ok(rules: &str) -> RuleSet {
    match with_roles(rules) {
        Ok((set, _)) => set,
        Err(e) => panic!("rules should load: {e}"),
    }
}

/// The single error's (line, key, message).
fn invalid(rules: &str) -> (usize, String, String) {
    match with_roles(rules) {
        Err(Error::Invalid {
            line, key, message, ..
        }) => (line, key, message),
        Err(e) => panic!("expected exactly one Invalid error, got: {e}"),
        Ok(_) => panic!("rules should not load"),
    }
}

fn warnings(rules: &str) -> Vec<Warning> {
    match with_roles(rules) {
        Ok((_, w)) => w,
        Err(e) => panic!("rules should load: {e}"),
    }
}

fn profile(sql: &str) -> StatementProfile {
    let path = vec!["public".to_owned()];
    let catalog = FunctionCatalog::builtin_only();
    let a = analyze(sql, &AnalyzeContext::new(&path, &catalog));
    (*a.combined).clone()
}

fn roles(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// (action, rule id) for `sql` by roles in database `demo`.
fn decide(set: &RuleSet, who: &[&str], sql: &str) -> (&'static str, String) {
    decide_in(set, who, "demo", sql)
}

fn decide_in(set: &RuleSet, who: &[&str], db: &str, sql: &str) -> (&'static str, String) {
    let p = profile(sql);
    let r = roles(who);
    let d = set.decide(&Request {
        roles: &r,
        database: db,
        profile: &p,
    });
    (d.action.as_str(), d.rule.to_string())
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/rules")
        .join(name)
}

fn example_rules() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/rules"))
}

fn assert_invalid(e: &Error, file_suffix: &str, line: usize, key: &str) {
    match e {
        Error::Invalid {
            file,
            line: l,
            key: k,
            ..
        } => {
            assert!(file.ends_with(file_suffix), "{e}");
            assert_eq!((*l, k.as_str()), (line, key), "{e}");
        }
        other => panic!("expected Invalid, got {other}"),
    }
}

// === loading the fixture directories ===

#[test]
fn fixture_syntax_error_names_file_and_line() {
    let e = RuleSet::load_dir(&fixture("syntax_error")).unwrap_err();
    assert_invalid(&e, "syntax_error/rules.toml", 7, "");
}

#[test]
fn fixture_unknown_key() {
    let e = RuleSet::load_dir(&fixture("unknown_key")).unwrap_err();
    assert_invalid(&e, "unknown_key/rules.toml", 8, "clases");
    assert!(e.to_string().contains("unknown field `clases`"), "{e}");
}

#[test]
fn fixture_unknown_role_points_at_the_entry() {
    let e = RuleSet::load_dir(&fixture("unknown_role")).unwrap_err();
    assert_invalid(&e, "unknown_role/rules.toml", 7, "rules.roles");
    assert!(
        e.to_string()
            .contains("unknown role `agents` (defined roles: agent)"),
        "{e}"
    );
}

#[test]
fn fixture_unknown_class() {
    let e = RuleSet::load_dir(&fixture("unknown_class")).unwrap_err();
    assert_invalid(&e, "unknown_class/rules.toml", 8, "rules.classes");
    assert!(e.to_string().contains("unknown class `select`"), "{e}");
}

#[test]
fn fixture_duplicate_id_names_both_places() {
    let e = RuleSet::load_dir(&fixture("duplicate_id")).unwrap_err();
    assert_invalid(&e, "duplicate_id/b.toml", 3, "rules.id");
    let text = e.to_string();
    assert!(
        text.contains("duplicate rule id `agent-may-read`"),
        "{text}"
    );
    assert!(text.contains("duplicate_id/a.toml:6"), "{text}");
}

#[test]
fn fixture_shadowed_rule_is_a_warning() {
    let (set, w) = RuleSet::load_dir(&fixture("shadowed")).unwrap();
    assert_eq!(set.rules().len(), 2);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].file.ends_with("shadowed/rules.toml"));
    assert_eq!(w[0].line, 13);
    assert!(
        w[0].message
            .contains("`agent-order-writes-need-a-dba` can never match")
    );
    assert!(w[0].message.contains("`agent-may-read-write`"));
    assert!(w[0].to_string().contains("rules.toml:13: rule"));
}

#[test]
fn fixture_no_rules_is_an_error_not_deny_all() {
    let e = RuleSet::load_dir(&fixture("empty_rules")).unwrap_err();
    assert!(matches!(e, Error::NoRules { .. }), "{e}");
}

#[test]
fn no_files_is_an_error() {
    let e = RuleSet::parse(&[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "(no files): the rule files define no [[rules]]"
    );
}

#[test]
fn missing_or_empty_directory_is_an_error() {
    let e = RuleSet::load_dir(&fixture("no_such_dir")).unwrap_err();
    assert!(matches!(e, Error::Read { .. }), "{e}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not rules").unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::write(dir.path().join("tests/x.toml"), "").unwrap();
    let e = RuleSet::load_dir(dir.path()).unwrap_err();
    assert!(matches!(e, Error::NoRuleFiles { .. }), "{e}");
    assert!(check(dir.path()).is_err());
}

#[test]
fn files_merge_in_the_order_given_and_roles_cross_files() {
    let files = [
        (
            "a.toml".to_owned(),
            "[[rules]]\nid = \"first\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"deny\"\n"
                .to_owned(),
        ),
        (
            "b.toml".to_owned(),
            "[roles.agent]\n[[rules]]\nid = \"second\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"allow\"\n"
                .to_owned(),
        ),
    ];
    let (set, w) = RuleSet::parse(&files).unwrap();
    let ids: Vec<&str> = set.rules().iter().map(|r| r.id().as_str()).collect();
    assert_eq!(ids, ["first", "second"]);
    assert_eq!(
        decide(&set, &["agent"], "SELECT 1"),
        ("deny", "first".into())
    );
    assert_eq!(w.len(), 1, "second is shadowed: {w:?}");
    assert_eq!(set.rule("second").unwrap().location(), ("b.toml", 3));
}

#[test]
fn several_errors_are_all_reported() {
    let e = with_roles(
        "[[rules]]\nid = \"a\"\nroles = [\"nobody\"]\nclasses = [\"reads\"]\naction = \"allow\"\n",
    )
    .unwrap_err();
    let lines: Vec<(usize, String)> = e
        .iter()
        .map(|e| match e {
            Error::Invalid { line, key, .. } => (*line, key.clone()),
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(
        lines,
        [
            (9, "rules.roles".to_owned()),
            (10, "rules.classes".to_owned())
        ]
    );
    assert_eq!(e.to_string().lines().count(), 2);
}

#[test]
fn duplicate_role_across_files() {
    let files = [
        ("a.toml".to_owned(), "[roles.agent]\n".to_owned()),
        (
            "b.toml".to_owned(),
            "\n[roles.agent]\nmembers = []\n[[rules]]\nid = \"x\"\nroles = [\"agent\"]\naction = \"deny\"\n"
                .to_owned(),
        ),
    ];
    let e = RuleSet::parse(&files).unwrap_err();
    assert_invalid(&e, "b.toml", 2, "roles.agent");
    assert!(e.to_string().contains("already defined at a.toml:1"), "{e}");
}

// === validation, one error at a time (rules start on line 7) ===

#[test]
fn missing_required_key() {
    let (line, key, _) =
        invalid("[[rules]]\nid = \"x\"\nclasses = [\"read\"]\naction = \"allow\"\n");
    assert_eq!((line, key.as_str()), (7, "roles"));
}

#[test]
fn unknown_key_in_role_and_mask() {
    let (line, key, _) = invalid("[roles.ops]\nmember = [\"x\"]\n");
    assert_eq!((line, key.as_str()), (8, "member"));
    let (line, key, _) = invalid(
        "[[masks]]\nroles = [\"agent\"]\ncolumns = [\"*.ssn\"]\nstrategy = \"null\"\nkeep = 1\n",
    );
    assert_eq!((line, key.as_str()), (11, "keep"));
}

#[test]
fn bad_action_mode_and_strategy() {
    let (line, key, msg) = invalid(
        "[[rules]]\nid = \"x\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"permit\"\n",
    );
    assert_eq!((line, key.as_str()), (11, "rules.action"));
    assert!(msg.contains("unknown action `permit`"));
    let (line, key, _) = invalid(
        "[[rules]]\nid = \"x\"\nroles = [\"agent\"]\nclasses = [\"write\"]\naction = \"approve\"\n\
         approvers = [\"dba\"]\nmode = \"wait\"\n",
    );
    assert_eq!((line, key.as_str()), (13, "rules.mode"));
    let (line, key, _) =
        invalid("[[masks]]\nroles = [\"agent\"]\ncolumns = [\"*.ssn\"]\nstrategy = \"scramble\"\n");
    assert_eq!((line, key.as_str()), (10, "masks.strategy"));
}

#[test]
fn approve_needs_known_approvers() {
    let (line, key, msg) = invalid(
        "[[rules]]\nid = \"x\"\nroles = [\"agent\"]\nclasses = [\"write\"]\naction = \"approve\"\n",
    );
    assert_eq!((line, key.as_str()), (11, "rules.approvers"));
    assert!(msg.contains("needs `approvers`"));
    let (line, key, msg) = invalid(
        "[[rules]]\nid = \"x\"\nroles = [\"agent\"]\nclasses = [\"write\"]\naction = \"approve\"\n\
         approvers = [\"dbas\"]\n",
    );
    assert_eq!((line, key.as_str()), (12, "rules.approvers"));
    assert!(msg.contains("unknown role `dbas`"));
}

#[test]
fn approval_keys_only_on_approve() {
    let (line, key, msg) = invalid(
        "[[rules]]\nid = \"x\"\nroles = [\"agent\"]\nclasses = [\"write\"]\naction = \"deny\"\n\
         timeout = \"5m\"\n",
    );
    assert_eq!((line, key.as_str()), (12, "rules.timeout"));
    assert!(msg.contains("only applies to action = \"approve\""));
}

#[test]
fn min_approvals_and_timeout() {
    let approve = "[[rules]]\nid = \"x\"\nroles = [\"agent\"]\nclasses = [\"write\"]\n\
                   action = \"approve\"\napprovers = [\"dba\"]\n";
    let (line, key, _) = invalid(&format!("{approve}min_approvals = 0\n"));
    assert_eq!((line, key.as_str()), (13, "rules.min_approvals"));
    let (line, key, _) = invalid(&format!("{approve}timeout = \"soon\"\n"));
    assert_eq!((line, key.as_str()), (13, "rules.timeout"));
    let (line, key, _) = invalid(&format!("{approve}timeout = \"0s\"\n"));
    assert_eq!((line, key.as_str()), (13, "rules.timeout"));

    // dba lists two people (alice, carol): three approvals can never be met.
    let w = warnings(&format!("{approve}min_approvals = 3\n"));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].line, 8);
    assert!(w[0].message.contains("needs 3 approval(s)"), "{}", w[0]);
    assert!(warnings(&format!("{approve}min_approvals = 2\n")).is_empty());

    let set = ok(&format!(
        "{approve}min_approvals = 2\ntimeout = \"90s\"\nmode = \"retry\"\n"
    ));
    match set.rules()[0].action() {
        Action::Approve(spec) => {
            assert_eq!(spec.approvers, ["dba"]);
            assert_eq!(spec.min_approvals, 2);
            assert_eq!(spec.timeout, std::time::Duration::from_secs(90));
            assert_eq!(spec.mode, ApprovalMode::Retry);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn permissive_rules_must_list_classes() {
    let (line, key, msg) =
        invalid("[[rules]]\nid = \"x\"\nroles = [\"agent\"]\naction = \"allow\"\n");
    assert_eq!((line, key.as_str()), (10, "rules.classes"));
    assert!(msg.contains("unknown and admin"));
    // A deny without classes covers every class.
    let set = ok("[[rules]]\nid = \"x\"\nroles = [\"agent\"]\naction = \"deny\"\n");
    assert_eq!(set.rules()[0].classes(), ClassSet::ALL);
}

#[test]
fn empty_lists_and_bad_patterns() {
    let (line, key, _) =
        invalid("[[rules]]\nid = \"x\"\nroles = []\nclasses = [\"read\"]\naction = \"allow\"\n");
    assert_eq!((line, key.as_str()), (9, "rules.roles"));
    let (line, key, msg) = invalid(
        "[[rules]]\nid = \"x\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"allow\"\n\
         tables = [\"public.ok\", \"orders\"]\n",
    );
    assert_eq!((line, key.as_str()), (12, "rules.tables"));
    assert!(msg.contains("schema-qualified"), "{msg}");
    let (line, key, msg) = invalid(
        "[[rules]]\nid = \"x\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"allow\"\n\
         databases = [\"demo[12]\"]\n",
    );
    assert_eq!((line, key.as_str()), (12, "rules.databases"));
    assert!(msg.contains("not supported"), "{msg}");
    let (line, key, _) = invalid(
        "[[rules]]\nid = \"x\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"allow\"\n\
         functions = []\n",
    );
    assert_eq!((line, key.as_str()), (12, "rules.functions"));
}

#[test]
fn ids_are_checked() {
    let (line, key, msg) =
        invalid("[[rules]]\nid = \"default-deny\"\nroles = [\"agent\"]\naction = \"deny\"\n");
    assert_eq!((line, key.as_str()), (8, "rules.id"));
    assert!(msg.contains("reserved"));
    let (_, key, _) =
        invalid("[[rules]]\nid = \"has space\"\nroles = [\"agent\"]\naction = \"deny\"\n");
    assert_eq!(key, "rules.id");
}

#[test]
fn mask_validation() {
    let (line, key, msg) = invalid(
        "[[masks]]\nroles = [\"agent\"]\ncolumns = [\"*.ssn\"]\nstrategy = \"hash\"\nkeep_last = 4\n",
    );
    assert_eq!((line, key.as_str()), (11, "masks.keep_last"));
    assert!(msg.contains("does not apply to strategy \"hash\""));
    let (line, key, _) =
        invalid("[[masks]]\nroles = [\"auditor\"]\ncolumns = [\"*.ssn\"]\nstrategy = \"null\"\n");
    assert_eq!((line, key.as_str()), (8, "masks.roles"));
    let (line, key, _) =
        invalid("[[masks]]\nroles = [\"agent\"]\ncolumns = [\"a.b.c.d\"]\nstrategy = \"null\"\n");
    assert_eq!((line, key.as_str()), (9, "masks.columns"));
    let (line, key, _) = invalid(
        "[[masks]]\nroles = [\"agent\"]\ncolumns = [\"*.ssn\"]\nstrategy = \"partial\"\nkeep_first = -1\n",
    );
    assert_eq!((line, key.as_str()), (11, "masks.keep_first"));
}

#[test]
fn masks_are_parsed_for_the_masker() {
    let set = ok(
        "[[rules]]\nid = \"x\"\nroles = [\"agent\"]\naction = \"deny\"\n\
                  [[masks]]\nroles = [\"agent\", \"analyst\"]\n\
                  columns = [\"public.people.ssn\", \"*.card_number\"]\nstrategy = \"partial\"\n\
                  keep_last = 4\n",
    );
    let m = &set.masks()[0];
    assert_eq!(m.location().1, 11);
    assert_eq!(
        m.strategy(),
        &MaskStrategy::Partial {
            keep_first: 0,
            keep_last: 4,
            text: "***".into()
        }
    );
    assert!(m.applies_to(&roles(&["analyst"])));
    assert!(!m.applies_to(&roles(&["dba"])));
    let col = |s: &str, t: &str, c: &str| crate::sql::ColumnRef {
        table: TableName::new(s, t),
        column: c.to_owned(),
    };
    assert!(m.matches_column(&col("public", "people", "ssn")));
    assert!(m.matches_column(&col("billing", "cards", "card_number")));
    assert!(!m.matches_column(&col("public", "people", "email")));
    assert_eq!(
        m.columns().collect::<Vec<_>>(),
        ["public.people.ssn", "*.card_number"]
    );
}

#[test]
fn detectors_are_parsed_for_the_masker() {
    let set = ok(
        "[[rules]]\nid = \"x\"\nroles = [\"agent\"]\naction = \"deny\"\n\
                  [[detectors]]\ndescription = \"cards and keys\"\nroles = [\"agent\", \"analyst\"]\n\
                  kinds = [\"card\", \"secret\", \"card\"]\nstrategy = \"partial\"\nkeep_first = 2\n\
                  [[detectors]]\nroles = [\"dba\"]\nkinds = [\"ssn\", \"email\", \"iban\"]\nstrategy = \"redact\"\n",
    );
    let d = set.detectors();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].location(), ("r.toml", 11));
    assert_eq!(d[0].description(), Some("cards and keys"));
    assert_eq!(d[0].kinds(), [DetectorKind::Card, DetectorKind::Secret]);
    assert_eq!(
        d[0].strategy(),
        &MaskStrategy::Partial {
            keep_first: 2,
            keep_last: 4,
            text: "***".into()
        }
    );
    assert!(d[0].applies_to(&roles(&["analyst"])));
    assert!(!d[0].applies_to(&roles(&["dba"])));
    assert_eq!(d[1].roles(), ["dba"]);
    assert_eq!(
        d[1].kinds(),
        [DetectorKind::Ssn, DetectorKind::Email, DetectorKind::Iban]
    );
    assert_eq!(
        d[1].strategy(),
        &MaskStrategy::Redact { text: "***".into() }
    );
    for kind in DetectorKind::ALL {
        assert_eq!(DetectorKind::from_name(kind.as_str()), Some(kind));
    }
    assert!(
        ok("[[rules]]\nid = \"x\"\nroles = [\"agent\"]\naction = \"deny\"\n")
            .detectors()
            .is_empty()
    );
}

#[test]
fn detector_validation() {
    let det = |rest: &str| invalid(&format!("[[detectors]]\nroles = [\"agent\"]\n{rest}"));
    let (line, key, msg) = det("kinds = [\"card\",\n  \"passport\"]\nstrategy = \"redact\"\n");
    assert_eq!((line, key.as_str()), (10, "detectors.kinds"));
    assert!(msg.contains("unknown kind `passport`"), "{msg}");
    assert!(msg.contains("card, ssn, email, iban, secret"), "{msg}");
    let (line, key, msg) = det("kinds = []\nstrategy = \"redact\"\n");
    assert_eq!((line, key.as_str()), (9, "detectors.kinds"));
    assert!(msg.contains("at least one kind"), "{msg}");
    let (line, key, _) = det("kinds = [\"card\"]\nstrategy = \"scramble\"\n");
    assert_eq!((line, key.as_str()), (10, "detectors.strategy"));
    let (line, key, msg) = det("kinds = [\"card\"]\nstrategy = \"hash\"\nkeep_last = 4\n");
    assert_eq!((line, key.as_str()), (11, "detectors.keep_last"));
    assert!(msg.contains("does not apply to strategy \"hash\""));
    let (line, key, _) = det("kinds = [\"card\"]\nstrategy = \"partial\"\nkeep_first = 5000\n");
    assert_eq!((line, key.as_str()), (11, "detectors.keep_first"));
    let (line, key, _) = det("kinds = [\"card\"]\nstrategy = \"null\"\ntext = \"x\"\n");
    assert_eq!((line, key.as_str()), (11, "detectors.text"));
    let (line, key, _) =
        invalid("[[detectors]]\nroles = [\"auditor\"]\nkinds = [\"card\"]\nstrategy = \"null\"\n");
    assert_eq!((line, key.as_str()), (8, "detectors.roles"));
    let (_, key, _) = det("kinds = [\"card\"]\nstrategy = \"null\"\ncolumns = [\"*.x\"]\n");
    assert_eq!(key, "columns");
    let (_, key, _) = det("strategy = \"null\"\n");
    assert_eq!(key, "kinds");
    // The masks' strategy keys keep their own section name in errors.
    let (_, key, _) = invalid(
        "[[masks]]\nroles = [\"agent\"]\ncolumns = [\"*.ssn\"]\nstrategy = \"null\"\ntext = \"x\"\n",
    );
    assert_eq!(key, "masks.text");
    // Every problem of an entry is reported, in a file with a rule.
    let e = with_roles(
        "[[rules]]\nid = \"x\"\nroles = [\"agent\"]\naction = \"deny\"\n\
         [[detectors]]\nroles = [\"nobody\"]\nkinds = [\"cards\"]\nstrategy = \"hash\"\ntext = \"x\"\n",
    )
    .err()
    .unwrap();
    let keys: Vec<(usize, String)> = e
        .iter()
        .map(|e| match e {
            Error::Invalid { line, key, .. } => (*line, key.clone()),
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(
        keys,
        [
            (12, "detectors.roles".to_owned()),
            (13, "detectors.kinds".to_owned()),
            (15, "detectors.text".to_owned())
        ]
    );
    assert!(
        e.to_string()
            .contains("r.toml:13: detectors.kinds: unknown kind `cards`")
    );
}

// === warnings ===

#[test]
fn shadowing_is_conservative() {
    let allow_read = "[[rules]]\nid = \"a\"\nroles = [\"agent\", \"dba\"]\nclasses = [\"read\", \"write\"]\naction = \"allow\"\n";
    // Narrower roles, classes and tables: shadowed.
    let w = warnings(&format!(
        "{allow_read}[[rules]]\nid = \"b\"\nroles = [\"agent\"]\nclasses = [\"write\"]\ntables = [\"public.x\"]\naction = \"deny\"\n"
    ));
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].line, 13);
    // A role the earlier rule does not cover: live.
    assert!(
        warnings(&format!(
            "{allow_read}[[rules]]\nid = \"b\"\nroles = [\"analyst\"]\nclasses = [\"read\"]\naction = \"allow\"\n"
        ))
        .is_empty()
    );
    // The earlier rule has tables, the later not: live.
    let earlier_tables = "[[rules]]\nid = \"a\"\nroles = [\"agent\"]\nclasses = [\"write\"]\ntables = [\"public.orders\"]\naction = \"approve\"\napprovers = [\"dba\"]\n";
    assert!(
        warnings(&format!(
            "{earlier_tables}[[rules]]\nid = \"b\"\nroles = [\"agent\"]\nclasses = [\"write\"]\naction = \"deny\"\n"
        ))
        .is_empty()
    );
    // Same tables but an earlier "every" rule does not cover a later "any" rule.
    assert!(
        warnings(&format!(
            "{earlier_tables}[[rules]]\nid = \"b\"\nroles = [\"agent\"]\nclasses = [\"write\"]\ntables = [\"public.orders\"]\naction = \"deny\"\n"
        ))
        .is_empty()
    );
    // An earlier deny ("any") covers a later allow ("every") of the same tables.
    let w = warnings(
        "[[rules]]\nid = \"a\"\nroles = [\"agent\"]\ntables = [\"public.people\", \"public.orders\"]\naction = \"deny\"\n\
         [[rules]]\nid = \"b\"\nroles = [\"agent\"]\nclasses = [\"read\"]\ntables = [\"public.people\"]\naction = \"allow\"\n",
    );
    assert_eq!(w.len(), 1, "{w:?}");
    // Databases: only a superset shadows.
    assert!(
        warnings(
            "[[rules]]\nid = \"a\"\nroles = [\"agent\"]\nclasses = [\"read\"]\ndatabases = [\"demo\"]\naction = \"allow\"\n\
             [[rules]]\nid = \"b\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"deny\"\n"
        )
        .is_empty()
    );
}

#[test]
fn self_approval_is_a_warning() {
    let w = warnings(
        "[[rules]]\nid = \"dba-ddl\"\nroles = [\"dba\"]\nclasses = [\"ddl\"]\naction = \"approve\"\napprovers = [\"dba\"]\n",
    );
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].line, 8);
    assert!(w[0].message.contains("dba may approve their own requests"));
    assert!(w[0].message.contains("different member"));
    // A dba role of one person: nobody else can approve.
    let w = warnings(
        "[roles.solo]\nmembers = [\"zoe\"]\n[[rules]]\nid = \"solo-ddl\"\nroles = [\"solo\"]\nclasses = [\"ddl\"]\naction = \"approve\"\napprovers = [\"solo\"]\n",
    );
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[1].message
            .contains("from people other than the requester"),
        "{}",
        w[1]
    );
    assert!(
        warnings(
            "[[rules]]\nid = \"agent-w\"\nroles = [\"agent\"]\nclasses = [\"write\"]\naction = \"approve\"\napprovers = [\"dba\"]\n",
        )
        .is_empty()
    );
}

#[test]
fn allowing_unknown_and_upper_case_tables_warn() {
    let w = warnings(
        "[[rules]]\nid = \"x\"\nroles = [\"dba\"]\nclasses = [\"unknown\"]\naction = \"allow\"\n",
    );
    assert_eq!(w.len(), 1);
    assert!(w[0].message.contains("could not understand"));
    let w = warnings(
        "[[rules]]\nid = \"x\"\nroles = [\"dba\"]\nclasses = [\"read\"]\ntables = [\"public.Orders\"]\naction = \"allow\"\n",
    );
    assert_eq!((w.len(), w[0].line), (1, 11));
}

// === matching ===

#[test]
fn first_match_wins_and_nothing_matched_is_default_deny() {
    let set = ok(
        "[[rules]]\nid = \"deny-people\"\nroles = [\"agent\"]\ntables = [\"public.people\"]\naction = \"deny\"\n\
                  [[rules]]\nid = \"read\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"allow\"\n",
    );
    assert_eq!(
        decide(&set, &["agent"], "SELECT * FROM orders"),
        ("allow", "read".into())
    );
    assert_eq!(
        decide(&set, &["agent"], "SELECT * FROM people"),
        ("deny", "deny-people".into())
    );
    assert_eq!(
        decide(&set, &["agent"], "DELETE FROM orders"),
        ("deny", DEFAULT_DENY.into())
    );
    assert_eq!(
        decide(&set, &["dba"], "SELECT 1"),
        ("deny", DEFAULT_DENY.into())
    );
    assert_eq!(
        decide(&set, &["stranger"], "SELECT 1"),
        ("deny", DEFAULT_DENY.into())
    );
    assert_eq!(decide(&set, &[], "SELECT 1"), ("deny", DEFAULT_DENY.into()));
}

#[test]
fn first_match_across_several_roles() {
    let set = ok(
        "[[rules]]\nid = \"analyst-read\"\nroles = [\"analyst\"]\nclasses = [\"read\"]\naction = \"allow\"\n\
                  [[rules]]\nid = \"agent-deny\"\nroles = [\"agent\"]\naction = \"deny\"\n\
                  [[rules]]\nid = \"analyst-deny\"\nroles = [\"analyst\"]\naction = \"deny\"\n",
    );
    // Order of the requester's roles does not matter, rule order does.
    for who in [["agent", "analyst"], ["analyst", "agent"]] {
        assert_eq!(
            decide(&set, &who, "SELECT 1"),
            ("allow", "analyst-read".into())
        );
        assert_eq!(
            decide(&set, &who, "DELETE FROM t"),
            ("deny", "agent-deny".into())
        );
    }
}

#[test]
fn unknown_is_only_allowed_explicitly() {
    let set = ok("[[rules]]\nid = \"everything-known\"\nroles = [\"dba\"]\n\
                  classes = [\"tx\", \"session\", \"read\", \"write\", \"ddl\", \"code\", \"privilege\", \"admin\"]\naction = \"allow\"\n\
                  [[rules]]\nid = \"agent-unknown\"\nroles = [\"agent\"]\nclasses = [\"unknown\"]\naction = \"allow\"\n");
    let garbage = "SELEC * FROM t";
    assert_eq!(profile(garbage).class, crate::sql::StatementClass::Unknown);
    assert_eq!(
        decide(&set, &["dba"], garbage),
        ("deny", DEFAULT_DENY.into())
    );
    assert_eq!(
        decide(&set, &["agent"], garbage),
        ("allow", "agent-unknown".into())
    );
    assert_eq!(
        decide(&set, &["dba"], "DROP TABLE t"),
        ("allow", "everything-known".into())
    );
}

#[test]
fn permissive_table_globs_cover_every_table() {
    let set = ok(
        "[[rules]]\nid = \"orders\"\nroles = [\"agent\"]\nclasses = [\"read\", \"write\"]\n\
                  tables = [\"public.orders*\"]\naction = \"allow\"\n",
    );
    assert_eq!(
        decide(&set, &["agent"], "SELECT * FROM orders"),
        ("allow", "orders".into())
    );
    assert_eq!(
        decide(&set, &["agent"], "SELECT * FROM public.orders_2025"),
        ("allow", "orders".into())
    );
    // Two tables, one covered: not matched.
    assert_eq!(
        decide(
            &set,
            &["agent"],
            "SELECT * FROM orders o JOIN people p ON p.id = o.person_id"
        )
        .1,
        DEFAULT_DENY
    );
    assert_eq!(
        decide(&set, &["agent"], "INSERT INTO orders SELECT * FROM people").1,
        DEFAULT_DENY
    );
    // No table at all: a rule with `tables` does not match.
    assert_eq!(decide(&set, &["agent"], "SELECT 1").1, DEFAULT_DENY);
    assert_eq!(
        decide(&set, &["agent"], "SELECT * FROM other.orders").1,
        DEFAULT_DENY
    );
}

#[test]
fn deny_table_globs_catch_any_table() {
    let set = ok(
        "[[rules]]\nid = \"no-people\"\nroles = [\"agent\"]\ntables = [\"public.people\"]\naction = \"deny\"\n\
                  [[rules]]\nid = \"read\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"allow\"\n",
    );
    assert_eq!(
        decide(
            &set,
            &["agent"],
            "SELECT * FROM orders o JOIN people p ON p.id = o.person_id"
        ),
        ("deny", "no-people".into())
    );
    assert_eq!(
        decide(&set, &["agent"], "SELECT 1"),
        ("allow", "read".into())
    );
}

#[test]
fn function_globs() {
    let set = ok(
        "[[rules]]\nid = \"no-sleep\"\nroles = [\"agent\"]\nfunctions = [\"pg_catalog.pg_sleep*\"]\naction = \"deny\"\n\
                  [[rules]]\nid = \"string-fns\"\nroles = [\"agent\"]\nclasses = [\"read\"]\nfunctions = [\"lower\", \"upper\"]\naction = \"allow\"\n",
    );
    // Unqualified: could be pg_catalog's, so the deny catches it.
    assert_eq!(
        decide(&set, &["agent"], "SELECT pg_sleep(1)"),
        ("deny", "no-sleep".into())
    );
    assert_eq!(
        decide(&set, &["agent"], "SELECT lower('A'), upper('b')"),
        ("allow", "string-fns".into())
    );
    assert_eq!(
        decide(&set, &["agent"], "SELECT lower('A'), md5('b')").1,
        DEFAULT_DENY
    );
    assert_eq!(decide(&set, &["agent"], "SELECT 1").1, DEFAULT_DENY);
}

#[test]
fn database_globs() {
    let set = ok(
        "[[rules]]\nid = \"demo-only\"\nroles = [\"agent\"]\nclasses = [\"read\"]\ndatabases = [\"demo\", \"test_*\"]\naction = \"allow\"\n",
    );
    assert_eq!(
        decide_in(&set, &["agent"], "demo", "SELECT 1").1,
        "demo-only"
    );
    assert_eq!(
        decide_in(&set, &["agent"], "test_7", "SELECT 1").1,
        "demo-only"
    );
    assert_eq!(
        decide_in(&set, &["agent"], "prod", "SELECT 1").1,
        DEFAULT_DENY
    );
}

#[test]
fn role_membership_by_glob_group_and_identity_file() {
    let set = ok("[roles.ops]\nmembers = [\"group:sre-*\", \"root?\"]\n\
                  [[rules]]\nid = \"x\"\nroles = [\"agent\"]\naction = \"deny\"\n");
    assert_eq!(set.roles_for("agent-7", &[], &[]), ["agent"]);
    assert_eq!(
        set.roles_for("copilot", &[], &roles(&["ai-agents"])),
        ["agent"]
    );
    assert_eq!(set.roles_for("agent", &[], &[]), Vec::<String>::new());
    assert_eq!(set.roles_for("root1", &[], &roles(&["sre-eu"])), ["ops"]);
    assert_eq!(
        set.roles_for("alice", &roles(&["auditor", "dba"]), &[]),
        ["auditor", "dba"],
        "identity-file roles first, no duplicates"
    );
    assert_eq!(
        set.roles_for("agent-1", &roles(&["analyst"]), &roles(&["sre-us"])),
        ["analyst", "agent", "ops"]
    );
    assert!(
        set.role("ops")
            .unwrap()
            .has_member("x", &roles(&["sre-eu"]))
    );
}

#[test]
fn upstream_user_is_kept() {
    let set = ok(
        "[roles.svc]\nupstream_user = \"app_svc\"\ndescription = \"a service\"\n\
                  [[rules]]\nid = \"x\"\nroles = [\"svc\"]\naction = \"deny\"\n",
    );
    assert_eq!(set.role("svc").unwrap().upstream_user(), Some("app_svc"));
    assert_eq!(set.role("agent").unwrap().upstream_user(), None);
    let (line, key, _) = invalid("[roles.svc]\nupstream_user = 7\n");
    assert_eq!((line, key.as_str()), (8, ""));
}

#[test]
fn multi_statement_texts_take_the_strictest_statement() {
    let set = ok(
        "[[rules]]\nid = \"read\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"allow\"\n\
                  [[rules]]\nid = \"orders\"\nroles = [\"agent\"]\nclasses = [\"write\"]\ntables = [\"public.orders\"]\n\
                  action = \"approve\"\napprovers = [\"dba\"]\n",
    );
    let r = roles(&["agent"]);
    let path = vec!["public".to_owned()];
    let catalog = FunctionCatalog::builtin_only();
    let ctx = AnalyzeContext::new(&path, &catalog);
    let a = analyze("SELECT * FROM people; UPDATE orders SET item = 'x'", &ctx);
    let d = set.decide_all(&r, "demo", &a);
    assert_eq!((d.action.as_str(), d.rule.as_str()), ("approve", "orders"));
    let a = analyze(
        "UPDATE orders SET item = 'x'; DROP TABLE people; SELECT 1",
        &ctx,
    );
    assert_eq!(set.decide_all(&r, "demo", &a).rule.as_str(), DEFAULT_DENY);
    let a = analyze("  ;  ", &ctx);
    assert!(
        set.decide_all(&r, "demo", &a).is_default(),
        "empty text is a session statement"
    );
}

// === messages, JSON, explain ===

#[test]
fn refusal_texts() {
    let set = ok(
        "[[rules]]\nid = \"agent-no-ddl\"\nroles = [\"agent\"]\nclasses = [\"ddl\"]\naction = \"deny\"\n\
                  [[rules]]\nid = \"agent-writes\"\nroles = [\"agent\"]\nclasses = [\"write\"]\naction = \"approve\"\n\
                  approvers = [\"dba\"]\nreason = \"orders are shared with billing\"\n\
                  [[rules]]\nid = \"agent-read\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"allow\"\n",
    );
    let r = roles(&["agent"]);
    let d = |sql: &str| {
        let p = Arc::new(profile(sql));
        let d = set.decide(&Request {
            roles: &r,
            database: "demo",
            profile: &p,
        });
        (d.message(), d.hint(), d.is_allowed())
    };
    assert_eq!(
        d("DROP TABLE secret_table_name"),
        (
            "permission denied by pgward rule \"agent-no-ddl\"".to_owned(),
            Some("ask a DBA to change rule \"agent-no-ddl\" in the rules directory".to_owned()),
            false
        )
    );
    assert_eq!(
        d("DELETE FROM orders WHERE id = 12345"),
        (
            "approval required by pgward rule \"agent-writes\"".to_owned(),
            Some(
                "orders are shared with billing; this statement needs approval by dba (1 approval); \
                 pgward holds it until they decide"
                    .to_owned()
            ),
            false
        )
    );
    assert_eq!(
        d("GRANT ALL ON t TO agent"),
        (
            "permission denied by pgward rule \"default-deny\"".to_owned(),
            Some(
                "no rule allows role(s) agent to run privilege statements; add a rule to the rules directory"
                    .to_owned()
            ),
            false
        )
    );
    let (msg, hint, allowed) = d("SELECT 1");
    assert!(allowed && hint.is_none());
    assert_eq!(msg, "allowed by pgward rule \"agent-read\"");
    // Never the SQL text or a value from it.
    for sql in [
        "DROP TABLE secret_table_name",
        "DELETE FROM orders WHERE id = 12345",
    ] {
        let (m, h, _) = d(sql);
        let all = format!("{m} {}", h.unwrap_or_default());
        assert!(!all.contains("secret") && !all.contains("12345"), "{all}");
    }
    let p = profile("SELECT 1");
    let none: Vec<String> = Vec::new();
    let d = set.decide(&Request {
        roles: &none,
        database: "demo",
        profile: &p,
    });
    assert!(d.hint().unwrap().contains("an identity without roles"));
}

#[test]
fn json_and_text_rendering() {
    let set = ok(
        "[[rules]]\nid = \"agent-writes\"\nroles = [\"agent\"]\nclasses = [\"write\"]\naction = \"approve\"\n\
                  approvers = [\"dba\"]\nmin_approvals = 2\ntimeout = \"10m\"\nmode = \"hold\"\n",
    );
    let r = roles(&["agent"]);
    let p = profile("DELETE FROM orders");
    let d = set.decide(&Request {
        roles: &r,
        database: "demo",
        profile: &p,
    });
    let v = serde_json::to_value(d).unwrap();
    assert_eq!(v["decision"], "approve");
    assert_eq!(v["rule"], "agent-writes");
    assert_eq!(v["class"], "write");
    assert_eq!(v["approval"]["min_approvals"], 2);
    assert_eq!(v["approval"]["timeout_secs"], 600);
    assert_eq!(v["approval"]["mode"], "hold");
    let text = explain::render(&d);
    assert!(
        text.starts_with("decision: approve\nrule:     agent-writes\n"),
        "{text}"
    );
    assert!(text.contains("(2 approvals)"), "{text}");
    assert!(
        text.contains("approval: dba, 2 approval(s), timeout 600s, mode hold"),
        "{text}"
    );

    let p = profile("SELECT 1");
    let d = set.decide(&Request {
        roles: &r,
        database: "demo",
        profile: &p,
    });
    let v = serde_json::to_value(d).unwrap();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["rule"], "default-deny");
    assert!(v.get("approval").is_none());
}

#[test]
fn rule_set_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RuleSet>();
    let set = Arc::new(ok(
        "[[rules]]\nid = \"x\"\nroles = [\"agent\"]\naction = \"deny\"\n",
    ));
    let s2 = Arc::clone(&set);
    let h = std::thread::spawn(move || decide(&s2, &["agent"], "SELECT 1").1);
    assert_eq!(h.join().unwrap(), "x");
}

// === the example rules and `pgward test` ===

#[test]
fn example_rules_pass_check_with_only_the_intended_warnings() {
    let warnings = check(example_rules()).unwrap();
    assert!(!warnings.is_empty());
    for w in &warnings {
        assert!(w.file.ends_with("dba.toml"), "unexpected warning: {w}");
        assert!(
            w.message.contains("dba may approve their own requests"),
            "{w}"
        );
    }
    let (set, _) = RuleSet::load_dir(example_rules()).unwrap();
    for role in ["agent", "analyst", "dba", "auditor"] {
        assert!(set.role(role).is_some(), "{role}");
    }
    assert_eq!(set.roles_for("alice", &[], &[]), ["dba"]);
    assert_eq!(set.roles_for("agent-7", &[], &[]), ["agent"]);
    assert!(set.masks().len() >= 3);
    let d = &set.detectors()[0];
    assert!(d.applies_to(&roles(&["agent"])) && d.applies_to(&roles(&["analyst"])));
    assert!(!d.applies_to(&roles(&["dba"])));
    assert_eq!(
        d.kinds(),
        [DetectorKind::Card, DetectorKind::Secret, DetectorKind::Iban]
    );
}

#[test]
fn example_rules_test_cases_all_pass() {
    let report = testing::run(example_rules()).unwrap();
    let text = report.to_string();
    assert!(report.is_success(), "{text}");
    assert!(report.cases.len() >= 30, "{text}");
    assert!(
        text.ends_with(&format!("{} passed, 0 failed\n", report.cases.len())),
        "{text}"
    );
    // Every role is exercised.
    let rules: Vec<&str> = report
        .cases
        .iter()
        .map(|c| c.actual_rule.as_str())
        .collect();
    for prefix in ["agent-", "analyst-", "dba-", "auditor-", "default-deny"] {
        assert!(rules.iter().any(|r| r.starts_with(prefix)), "{prefix}");
    }
}

#[test]
fn failing_and_malformed_cases() {
    let (set, _) = RuleSet::load_dir(example_rules()).unwrap();
    let case = |body: &str| vec![("t.toml".to_owned(), format!("[[case]]\n{body}"))];
    let results = testing::run_cases(
        &set,
        &case("role = \"agent\"\nsql = \"DROP TABLE orders\"\nexpect = \"allow\"\nrule = \"agent-may-read\"\n"),
    )
    .unwrap();
    assert_eq!(results.len(), 1);
    assert!(!results[0].passed());
    assert_eq!(results[0].line, 1);
    assert_eq!(results[0].name, "DROP TABLE orders");
    assert_eq!(
        results[0].to_string(),
        "FAIL  t.toml:1: DROP TABLE orders: expected allow by agent-may-read, got deny by agent-no-ddl"
    );
    let report = testing::TestReport {
        warnings: Vec::new(),
        cases: results,
    };
    assert!(!report.is_success());
    assert!(report.to_string().ends_with("0 passed, 1 failed\n"));

    let e = testing::run_cases(
        &set,
        &case(
            "role = \"agnt\"\nsql = \"SELECT 1\"\nexpect = \"allow\"\nrule = \"agent-may-read\"\n",
        ),
    )
    .unwrap_err();
    assert_invalid(&e, "t.toml", 2, "case.role");
    let e = testing::run_cases(
        &set,
        &case(
            "role = \"agent\"\nsql = \"SELECT 1\"\nexpect = \"allow\"\nrule = \"agent-may-reed\"\n",
        ),
    )
    .unwrap_err();
    assert_invalid(&e, "t.toml", 5, "case.rule");
    let e = testing::run_cases(
        &set,
        &case("role = \"agent\"\nsql = \"SELECT 1\"\nexpect = \"permit\"\nrule = \"agent-may-read\"\n"),
    )
    .unwrap_err();
    assert_invalid(&e, "t.toml", 4, "case.expect");
    let e = testing::run_cases(
        &set,
        &case("role = \"agent\"\nidentity = \"x\"\nsql = \"SELECT 1\"\nexpect = \"allow\"\nrule = \"agent-may-read\"\n"),
    )
    .unwrap_err();
    assert_invalid(&e, "t.toml", 1, "case.role");
    let e = testing::run_cases(
        &set,
        &case(
            "role = \"agent\"\nsq = \"SELECT 1\"\nexpect = \"allow\"\nrule = \"agent-may-read\"\n",
        ),
    )
    .unwrap_err();
    assert_invalid(&e, "t.toml", 3, "sq");
}

#[test]
fn test_dir_without_cases_is_an_error() {
    let e = testing::run(&fixture("shadowed")).unwrap_err();
    assert!(matches!(e, Error::NoTestCases { .. }), "{e}");
}

// === masks in decisions ===

const READS_AND_MASKS: &str = r#"
[[rules]]
id = "reads"
roles = ["agent", "dba"]
classes = ["read", "write", "ddl"]
action = "allow"

[[masks]]
roles = ["agent"]
columns = ["people.ssn"]
strategy = "null"

[[masks]]
roles = ["agent"]
columns = ["people.city"]
strategy = "redact"
allow_inference = true
"#;

#[test]
fn predicates_on_masked_columns_are_denied_by_the_mask_rule() {
    let set = ok(READS_AND_MASKS);
    for sql in [
        "SELECT name FROM people WHERE ssn LIKE '1%'",
        "SELECT name FROM people ORDER BY ssn",
        "SELECT count(*) FROM people GROUP BY ssn",
        "SELECT a.name FROM people a JOIN people b ON a.ssn = b.ssn",
    ] {
        assert_eq!(
            decide(&set, &["agent"], sql),
            ("deny", "mask:r.toml:14".to_owned()),
            "{sql}"
        );
    }
    // The rule's own message and hint.
    let p = profile("SELECT name FROM people WHERE ssn = '1'");
    let r = roles(&["agent"]);
    let d = set.decide(&Request {
        roles: &r,
        database: "demo",
        profile: &p,
    });
    assert!(d.message().contains("public.people.ssn"), "{}", d.message());
    assert!(d.hint().unwrap().contains("allow_inference"));
    // Without that mask, or on an unmasked column, or with allow_inference: allowed.
    assert_eq!(
        decide(&set, &["dba"], "SELECT name FROM people WHERE ssn = '1'").0,
        "allow"
    );
    assert_eq!(
        decide(&set, &["agent"], "SELECT ssn FROM people WHERE id = 1").0,
        "allow"
    );
    assert_eq!(
        decide(
            &set,
            &["agent"],
            "SELECT name FROM people WHERE city = 'Paris'"
        )
        .0,
        "allow"
    );
}
