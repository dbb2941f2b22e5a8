//! Benchmarks of rule evaluation: `RuleSet::decide` on a generated 200-rule
//! set. Target: ≤ 1 µs per decision.
//!
//! The set is adversarial on purpose: all 200 rules apply to the requester's
//! role, so the index by role cannot skip any, and the 198 rules before the
//! deciding ones all have table patterns that must be compared and fail.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pgward::policy::{Request, RuleSet};
use pgward::sql::{AnalyzeContext, FunctionCatalog, StatementProfile, analyze};

/// 198 deny rules on other schemas' tables (read and write), then the
/// approve for orders and the allow for reads: 200 rules for `agent`, plus
/// one rule for another role.
fn rule_set() -> RuleSet {
    let mut text = String::from(
        "[roles.agent]\nmembers = [\"agent-*\"]\n[roles.dba]\nmembers = [\"alice\"]\n",
    );
    for i in 0..198 {
        text.push_str(&format!(
            "[[rules]]\nid = \"deny-{i}\"\nroles = [\"agent\"]\nclasses = [\"read\", \"write\"]\n\
             tables = [\"tenant_{i}.*\", \"archive.t{i}_*\"]\naction = \"deny\"\n"
        ));
    }
    text.push_str(
        "[[rules]]\nid = \"agent-order-writes\"\nroles = [\"agent\"]\nclasses = [\"write\"]\n\
         tables = [\"public.orders\"]\naction = \"approve\"\napprovers = [\"dba\"]\n\
         [[rules]]\nid = \"agent-may-read\"\nroles = [\"agent\"]\nclasses = [\"read\", \"tx\", \"session\"]\naction = \"allow\"\n\
         [[rules]]\nid = \"dba-all\"\nroles = [\"dba\"]\nclasses = [\"read\", \"write\"]\naction = \"allow\"\n",
    );
    match RuleSet::parse(&[("bench.toml".to_owned(), text)]) {
        Ok((set, _)) => set,
        Err(e) => panic!("bench rules: {e}"),
    }
}

fn profile(sql: &str) -> StatementProfile {
    let path = vec!["public".to_owned()];
    let catalog = FunctionCatalog::builtin_only();
    (*analyze(sql, &AnalyzeContext::new(&path, &catalog)).combined).clone()
}

fn benches(c: &mut Criterion) {
    let set = rule_set();
    assert_eq!(set.rules().len(), 201);
    let agent = vec!["agent".to_owned()];
    let stranger = vec!["contractor".to_owned()];

    let read = profile(
        "SELECT o.id, o.item, p.full_name FROM orders o JOIN people p ON p.id = o.person_id \
         WHERE o.status = $1",
    );
    let write = profile("UPDATE payments SET amount = amount + 1 WHERE id = $1");
    let ddl = profile("DROP TABLE orders");

    let check = |roles: &[String], p: &StatementProfile, rule: &str| {
        let d = set.decide(&Request {
            roles,
            database: "demo",
            profile: p,
        });
        assert_eq!(d.rule.as_str(), rule);
    };
    check(&agent, &read, "agent-may-read");
    check(&agent, &write, "default-deny");
    check(&agent, &ddl, "default-deny");
    check(&stranger, &read, "default-deny");

    c.bench_function("decide_200_rules_read_matches_last", |b| {
        b.iter(|| {
            set.decide(black_box(&Request {
                roles: &agent,
                database: "demo",
                profile: &read,
            }))
            .is_allowed()
        })
    });
    c.bench_function("decide_200_rules_write_denied_after_all", |b| {
        b.iter(|| {
            set.decide(black_box(&Request {
                roles: &agent,
                database: "demo",
                profile: &write,
            }))
            .is_allowed()
        })
    });
    c.bench_function("decide_200_rules_default_deny_no_candidates", |b| {
        b.iter(|| {
            set.decide(black_box(&Request {
                roles: &agent,
                database: "demo",
                profile: &ddl,
            }))
            .is_allowed()
        })
    });
    c.bench_function("decide_200_rules_unknown_role", |b| {
        b.iter(|| {
            set.decide(black_box(&Request {
                roles: &stranger,
                database: "demo",
                profile: &read,
            }))
            .is_allowed()
        })
    });
}

criterion_group!(policy, benches);
criterion_main!(policy);
