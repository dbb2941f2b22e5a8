use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::policy::{Action, RuleSet};

/// alice is a dba, dave and erin are in security, carol is in both, bob approves nothing, and agents
/// request. Approvers of `prod-writes` are dba and security.
fn rules(min_approvals: u32) -> RuleSet {
    let text = format!(
        "[roles.agent]\nmembers = [\"agent-*\"]\n\
         [roles.dba]\nmembers = [\"alice\", \"carol\"]\n\
         [roles.security]\nmembers = [\"carol\", \"dave\", \"erin\"]\n\
         [roles.analyst]\nmembers = [\"bob\"]\n\
         [[rules]]\nid = \"prod-writes\"\nroles = [\"agent\", \"dba\"]\nclasses = [\"write\"]\n\
         action = \"approve\"\napprovers = [\"dba\", \"security\"]\n\
         min_approvals = {min_approvals}\ntimeout = \"60s\"\n"
    );
    let (set, warnings) = RuleSet::parse(&[("r.toml".to_owned(), text)]).unwrap();
    // dba both requests and approves: exactly the case the self-decision check is for.
    assert!(
        warnings
            .iter()
            .all(|w| w.message.contains("may approve their own requests")),
        "{warnings:?}"
    );
    set
}

fn party(set: &RuleSet, name: &str) -> Party {
    Party::new(name, set.roles_for(name, &[], &[]))
}

const T0: Timestamp = Timestamp::from_unix_millis(1_000_000);

fn at(secs: u64) -> Timestamp {
    T0.saturating_add(Duration::from_secs(secs))
}

/// A request by `requester` under `prod-writes` needing `min_approvals`, made at `T0`.
fn request_by(requester: &str, min_approvals: u32) -> (RuleSet, Request) {
    let set = rules(min_approvals);
    let rule = set.rule("prod-writes").unwrap();
    let Action::Approve(spec) = rule.action() else {
        panic!("prod-writes is an approve rule");
    };
    let req = Request::new(
        RequestId::new("r-1"),
        party(&set, requester),
        rule.id().clone(),
        spec.clone(),
        T0,
    );
    (set, req)
}

fn request(min_approvals: u32) -> (RuleSet, Request) {
    request_by("agent-7", min_approvals)
}

fn reject(reason: &str) -> Verdict {
    Verdict::Reject {
        reason: reason.to_owned(),
    }
}

#[test]
fn new_request_is_pending_until_timeout() {
    let (_, req) = request(2);
    assert_eq!(req.state(), &State::Pending);
    assert_eq!(req.expires_at(), at(60));
    assert_eq!((req.approvals(), req.needed()), (0, 2));
    assert_eq!(req.requester().roles, ["agent"]);
    assert!(req.decisions().is_empty());
    assert_eq!(req.closed_at(), None);
}

#[test]
fn requester_cannot_decide_own_request() {
    // alice is a dba, so only the identity check stops her.
    let (set, mut req) = request_by("alice", 1);
    let alice = party(&set, "alice");
    for verdict in [Verdict::Approve, reject("no")] {
        let e = req.decide(&alice, verdict, at(1)).unwrap_err();
        assert!(matches!(e, Error::SelfDecision { .. }), "{e}");
        assert_eq!(e.sqlstate(), SqlState::INSUFFICIENT_PRIVILEGE);
        assert!(e.to_string().contains("prod-writes"), "{e}");
    }
    assert_eq!(req.state(), &State::Pending);
    assert!(req.decisions().is_empty());
    // Someone else can.
    let carol = party(&set, "carol");
    assert_eq!(
        req.decide(&carol, Verdict::Approve, at(2)),
        Ok(Outcome::Approved)
    );
}

#[test]
fn approver_without_role_is_refused() {
    let (set, mut req) = request(1);
    let e = req
        .decide(&party(&set, "bob"), Verdict::Approve, at(1))
        .unwrap_err();
    assert!(matches!(e, Error::NotAnApprover { .. }), "{e}");
    assert_eq!(e.sqlstate(), SqlState::INSUFFICIENT_PRIVILEGE);
    assert_eq!(e.severity(), Severity::Error);
    assert!(e.to_string().contains("prod-writes"), "{e}");
    assert_eq!(
        e.hint().as_deref(),
        Some("only members of dba, security may decide it")
    );
    // Rejecting needs the role too.
    let e = req
        .decide(&party(&set, "bob"), reject("no"), at(1))
        .unwrap_err();
    assert!(matches!(e, Error::NotAnApprover { .. }), "{e}");
    assert_eq!(req.state(), &State::Pending);
    assert!(req.decisions().is_empty());
}

#[test]
fn min_approvals_two_needs_two_people() {
    let (set, mut req) = request(2);
    let outcome = req.decide(&party(&set, "alice"), Verdict::Approve, at(1));
    assert_eq!(
        outcome,
        Ok(Outcome::Pending {
            approvals: 1,
            needed: 2
        })
    );
    assert_eq!(req.state(), &State::Pending);
    let outcome = req.decide(&party(&set, "dave"), Verdict::Approve, at(2));
    assert_eq!(outcome, Ok(Outcome::Approved));
    assert_eq!(req.state(), &State::Approved);
    assert_eq!(req.closed_at(), Some(at(2)));
    let who: Vec<_> = req
        .decisions()
        .iter()
        .map(|d| d.approver.as_str())
        .collect();
    assert_eq!(who, ["alice", "dave"]);
}

#[test]
fn same_person_twice_counts_once() {
    let (set, mut req) = request(2);
    let alice = party(&set, "alice");
    req.decide(&alice, Verdict::Approve, at(1)).unwrap();
    let e = req.decide(&alice, Verdict::Approve, at(2)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::AlreadyApproved {
                approvals: 1,
                needed: 2,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.sqlstate(), SqlState::INSUFFICIENT_PRIVILEGE);
    assert!(e.to_string().contains("prod-writes"), "{e}");
    assert_eq!(req.approvals(), 1);
    assert_eq!(req.decisions().len(), 1);
    assert_eq!(req.state(), &State::Pending);
}

#[test]
fn person_with_two_approver_roles_counts_once() {
    let (set, mut req) = request(2);
    let carol = party(&set, "carol");
    assert_eq!(carol.roles, ["dba", "security"]);
    let outcome = req.decide(&carol, Verdict::Approve, at(1));
    assert_eq!(
        outcome,
        Ok(Outcome::Pending {
            approvals: 1,
            needed: 2
        })
    );
    assert!(req.decide(&carol, Verdict::Approve, at(2)).is_err());
    assert_eq!(req.approvals(), 1);
    assert_eq!(req.decisions()[0].approver_roles, ["dba", "security"]);
}

#[test]
fn one_rejection_with_reason_rejects() {
    let (set, mut req) = request(2);
    req.decide(&party(&set, "alice"), Verdict::Approve, at(1))
        .unwrap();
    let outcome = req.decide(&party(&set, "dave"), reject("not during the freeze"), at(2));
    assert_eq!(outcome, Ok(Outcome::Rejected));
    assert_eq!(
        req.state(),
        &State::Rejected {
            by: "dave".to_owned(),
            reason: "not during the freeze".to_owned()
        }
    );
    assert_eq!(req.closed_at(), Some(at(2)));
    let last = req.decisions().last().unwrap();
    assert_eq!((last.approver.as_str(), last.at), ("dave", at(2)));
    assert_eq!(last.verdict, reject("not during the freeze"));
}

#[test]
fn approver_may_reject_after_approving() {
    let (set, mut req) = request(2);
    let alice = party(&set, "alice");
    req.decide(&alice, Verdict::Approve, at(1)).unwrap();
    assert_eq!(
        req.decide(&alice, reject("wrong table"), at(2)),
        Ok(Outcome::Rejected)
    );
}

#[test]
fn rejection_needs_a_reason() {
    let (set, mut req) = request(1);
    let e = req
        .decide(&party(&set, "alice"), reject("  "), at(1))
        .unwrap_err();
    assert!(matches!(e, Error::MissingReason { .. }), "{e}");
    assert_eq!(e.sqlstate(), SqlState::INVALID_PARAMETER_VALUE);
    assert_eq!(req.state(), &State::Pending);
    assert!(req.decisions().is_empty());
}

#[test]
fn decided_request_cannot_be_decided_again() {
    let (set, mut approved) = request(1);
    approved
        .decide(&party(&set, "alice"), Verdict::Approve, at(1))
        .unwrap();
    let (_, mut rejected) = request(1);
    rejected
        .decide(&party(&set, "alice"), reject("no"), at(1))
        .unwrap();
    let (_, mut withdrawn) = request(1);
    withdrawn.withdraw("agent-7", at(1)).unwrap();

    let dave = party(&set, "dave");
    for (req, word) in [
        (&mut approved, "approved"),
        (&mut rejected, "rejected"),
        (&mut withdrawn, "withdrawn"),
    ] {
        let before = req.clone();
        for verdict in [Verdict::Approve, reject("late")] {
            let e = req.decide(&dave, verdict, at(2)).unwrap_err();
            assert_eq!(
                e,
                Error::Decided {
                    request: RequestId::new("r-1"),
                    rule: req.rule().clone(),
                    state: word,
                }
            );
            assert_eq!(e.sqlstate(), SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE);
            assert!(e.to_string().contains("prod-writes"), "{e}");
        }
        assert_eq!(*req, before);
    }
}

#[test]
fn duty_is_checked_before_state() {
    let (set, mut req) = request(1);
    req.decide(&party(&set, "alice"), Verdict::Approve, at(1))
        .unwrap();
    let e = req
        .decide(&party(&set, "bob"), Verdict::Approve, at(2))
        .unwrap_err();
    assert!(matches!(e, Error::NotAnApprover { .. }), "{e}");
    let e = req
        .decide(&party(&set, "agent-7"), Verdict::Approve, at(2))
        .unwrap_err();
    assert!(matches!(e, Error::SelfDecision { .. }), "{e}");
}

#[test]
fn expiry() {
    let (set, mut req) = request(2);
    let alice = party(&set, "alice");
    req.decide(&alice, Verdict::Approve, at(1)).unwrap();
    assert!(!req.expire_if_due(at(59)));
    assert_eq!(req.state(), &State::Pending);

    // A decision at the expiry instant is too late, and marks the request expired.
    let e = req
        .decide(&party(&set, "dave"), Verdict::Approve, at(60))
        .unwrap_err();
    assert!(matches!(e, Error::Expired { .. }), "{e}");
    assert_eq!(e.sqlstate(), SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE);
    assert!(e.to_string().contains("prod-writes"), "{e}");
    assert_eq!(req.state(), &State::Expired);
    assert_eq!(req.closed_at(), Some(at(60)));
    assert_eq!(req.decisions().len(), 1);

    // Still expired later, for decisions and withdrawal alike.
    let e = req.decide(&alice, reject("late"), at(90)).unwrap_err();
    assert!(matches!(e, Error::Expired { .. }), "{e}");
    let e = req.withdraw("agent-7", at(90)).unwrap_err();
    assert!(matches!(e, Error::Expired { .. }), "{e}");
    assert!(!req.expire_if_due(at(90)));
}

#[test]
fn expire_if_due_marks_at_the_expiry_time() {
    let (_, mut req) = request(1);
    assert!(req.expire_if_due(at(3600)));
    assert_eq!(req.state(), &State::Expired);
    // Expired when it was due, not when somebody noticed.
    assert_eq!(req.closed_at(), Some(at(60)));
    assert!(!req.expire_if_due(at(3601)));
}

#[test]
fn expire_if_due_leaves_decided_requests_alone() {
    let (set, mut req) = request(1);
    req.decide(&party(&set, "alice"), Verdict::Approve, at(1))
        .unwrap();
    assert!(!req.expire_if_due(at(3600)));
    assert_eq!(req.state(), &State::Approved);
}

#[test]
fn withdraw_by_requester_only_while_pending() {
    let (set, mut req) = request(1);
    for who in ["alice", "agent-8"] {
        let e = req.withdraw(who, at(1)).unwrap_err();
        assert!(matches!(e, Error::NotRequester { .. }), "{e}");
        assert_eq!(e.sqlstate(), SqlState::INSUFFICIENT_PRIVILEGE);
        assert!(e.to_string().contains("prod-writes"), "{e}");
    }
    assert_eq!(req.state(), &State::Pending);
    assert_eq!(req.withdraw("agent-7", at(2)), Ok(()));
    assert_eq!(req.state(), &State::Withdrawn);
    assert_eq!(req.closed_at(), Some(at(2)));
    let e = req.withdraw("agent-7", at(3)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Decided {
                state: "withdrawn",
                ..
            }
        ),
        "{e}"
    );

    let (_, mut approved) = request(1);
    approved
        .decide(&party(&set, "alice"), Verdict::Approve, at(1))
        .unwrap();
    let e = approved.withdraw("agent-7", at(2)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Decided {
                state: "approved",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn outcome_counts_pending_approvals() {
    let (set, mut req) = request(3);
    let mut outcomes = Vec::new();
    for (i, who) in ["alice", "carol", "dave"].into_iter().enumerate() {
        let now = at(u64::try_from(i).unwrap());
        outcomes.push(
            req.decide(&party(&set, who), Verdict::Approve, now)
                .unwrap(),
        );
    }
    assert_eq!(
        outcomes,
        [
            Outcome::Pending {
                approvals: 1,
                needed: 3
            },
            Outcome::Pending {
                approvals: 2,
                needed: 3
            },
            Outcome::Approved,
        ]
    );
}

#[test]
fn spec_is_copied_when_the_request_is_made() {
    let (set, mut req) = request(1);
    // A reload that raises the bar does not affect a waiting request.
    let stricter = rules(3);
    let Action::Approve(spec) = stricter.rule("prod-writes").unwrap().action() else {
        panic!("approve rule");
    };
    assert_eq!(spec.min_approvals, 3);
    assert_eq!(req.spec().min_approvals, 1);
    assert_eq!(
        req.decide(&party(&set, "alice"), Verdict::Approve, at(1)),
        Ok(Outcome::Approved)
    );
}

#[test]
fn huge_timeout_saturates() {
    let (set, req) = request(1);
    let mut spec = req.spec().clone();
    spec.timeout = Duration::MAX;
    let mut req = Request::new(
        RequestId::new("r-2"),
        party(&set, "agent-7"),
        req.rule().clone(),
        spec,
        T0,
    );
    assert_eq!(req.expires_at(), Timestamp::from_unix_millis(u64::MAX));
    assert!(!req.expire_if_due(Timestamp::from_unix_millis(u64::MAX - 1)));
}

#[test]
fn timestamp_from_system_time() {
    let t = UNIX_EPOCH + Duration::from_millis(1_234);
    assert_eq!(Timestamp::from_system_time(t).as_unix_millis(), 1_234);
    let before = UNIX_EPOCH - Duration::from_secs(1);
    assert_eq!(Timestamp::from_system_time(before).as_unix_millis(), 0);
    assert!(Timestamp::from_system_time(SystemTime::now()) > T0);
}

#[test]
fn every_refusal_keeps_the_session_and_names_request_and_rule() {
    let (set, mut req) = request(2);
    let alice = party(&set, "alice");
    let mut errors = vec![
        req.decide(&party(&set, "agent-7"), Verdict::Approve, at(1))
            .unwrap_err(),
        req.decide(&party(&set, "bob"), Verdict::Approve, at(1))
            .unwrap_err(),
        req.decide(&alice, reject(""), at(1)).unwrap_err(),
        req.withdraw("alice", at(1)).unwrap_err(),
    ];
    req.decide(&alice, Verdict::Approve, at(1)).unwrap();
    errors.push(req.decide(&alice, Verdict::Approve, at(2)).unwrap_err());
    let mut expired = req.clone();
    errors.push(expired.withdraw("agent-7", at(60)).unwrap_err());
    req.withdraw("agent-7", at(3)).unwrap();
    errors.push(req.withdraw("agent-7", at(4)).unwrap_err());

    let codes: Vec<&str> = errors.iter().map(|e| e.sqlstate().code()).collect();
    assert_eq!(
        codes,
        [
            "42501", "42501", "22023", "42501", "42501", "55000", "55000"
        ]
    );
    for e in &errors {
        assert_eq!((e.severity(), e.side()), (Severity::Error, Side::Client));
        assert!(
            e.to_string()
                .starts_with("approval request r-1 (rule prod-writes)"),
            "{e}"
        );
    }
}

/// `may_decide` answers exactly what `decide` would, for every person, verdict and moment,
/// and changes nothing.
#[test]
fn may_decide_agrees_with_decide() {
    let people = ["agent-7", "alice", "bob", "carol", "dave"];
    let verdicts = [Verdict::Approve, reject("no"), reject(" ")];
    let times = [at(1), at(60), at(61)];
    for min_approvals in [1, 2] {
        let (set, mut base) = request(min_approvals);
        // One approval already given, so that a second approval by carol is refused.
        base.decide(&party(&set, "carol"), Verdict::Approve, at(0))
            .unwrap();
        for who in people {
            for verdict in &verdicts {
                for now in times {
                    let approver = party(&set, who);
                    let before = base.clone();
                    let predicted = base.may_decide(&approver, verdict, now);
                    assert_eq!(base, before, "may_decide changed the request");
                    let mut copy = base.clone();
                    let actual = copy.decide(&approver, verdict.clone(), now).map(|_| ());
                    assert_eq!(predicted, actual, "{who} {verdict:?} at {now:?}");
                }
            }
        }
    }
    let (set, req) = request_by("alice", 1);
    assert!(matches!(
        req.may_decide(&party(&set, "alice"), &Verdict::Approve, at(1)),
        Err(Error::SelfDecision { .. })
    ));
}
