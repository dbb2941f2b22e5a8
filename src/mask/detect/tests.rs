//! Unit tests of the content detectors: hits, near misses and values inside
//! longer text, for every kind.

use std::sync::Arc;

use super::*;
use crate::policy::RuleSet;

/// The detector rules of a rule file with roles `agent` and `dba`.
fn rules(toml: &str) -> Vec<DetectorRule> {
    let text = format!(
        "[roles.agent]\nmembers = [\"agent-*\"]\n[roles.dba]\nmembers = [\"alice\"]\n\
         [[rules]]\nid = \"r\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"allow\"\n{toml}"
    );
    let (set, _) = RuleSet::parse(&[("r.toml".to_owned(), text)]).expect("rules parse");
    set.detectors().to_vec()
}

fn agent() -> Vec<String> {
    vec!["agent".to_owned()]
}

/// Detectors for one kind, for `agent`.
fn only(kind: &str) -> Arc<Detectors> {
    let r = rules(&format!(
        "[[detectors]]\nroles = [\"agent\"]\nkinds = [\"{kind}\"]\nstrategy = \"redact\"\n"
    ));
    Detectors::for_roles(&r, &agent()).expect("applies")
}

fn hits(d: &Detectors, value: &str) -> bool {
    d.detect(value.as_bytes()).is_some()
}

#[track_caller]
fn assert_hits(d: &Detectors, values: &[&str]) {
    for v in values {
        assert!(hits(d, v), "should hit: {v:?}");
    }
}

#[track_caller]
fn assert_misses(d: &Detectors, values: &[&str]) {
    for v in values {
        assert!(!hits(d, v), "should miss: {v:?}");
    }
}

#[test]
fn every_pattern_compiles() {
    for kind in DetectorKind::ALL {
        assert!(Regex::new(pattern(kind)).is_ok(), "{kind}");
    }
}

#[test]
fn card_numbers() {
    let d = only("card");
    assert_hits(
        &d,
        &[
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "3782 822463 10005",
            "5555555555554444",
            "4222222222222",
            "6304000000000000018",
            "paid with 4111 1111 1111 1111, thanks",
            "card:4111111111111111.",
            "4111 1111 1111 1111 2024",
            "12 4111111111111111",
            "ref 2024-05-01 then 5555-5555-5555-4444",
        ],
    );
    assert_misses(
        &d,
        &[
            "4111111111111112",
            "4111 1111 1111 1112",
            "411111111111",
            "41111111111111111111111",
            "4111  1111 1111 1111",
            "4111--1111-1111-1111",
            // Passes Luhn as 16 digits, but small groups are not tried together.
            "2024-05-01 2024-05-05",
            "order 1234567890 shipped",
            "",
        ],
    );
}

#[test]
fn social_security_numbers() {
    let d = only("ssn");
    assert_hits(
        &d,
        &[
            "123-45-6789",
            "ssn: 123-45-6789.",
            "ID-123-45-6789",
            "a 078-05-1120 b",
        ],
    );
    assert_misses(
        &d,
        &[
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
            "123456789",
            "1123-45-6789",
            "123-45-67890",
            "1-123-45-6789",
            "123-45-6789-1",
            "12-345-6789 or 123 45 6789",
        ],
    );
}

#[test]
fn email_addresses() {
    let d = only("email");
    assert_hits(
        &d,
        &[
            "jane@example.com",
            "Contact: Jane.Doe+work@mail.example.co.uk, please",
            "<a@b.io>",
        ],
    );
    assert_misses(
        &d,
        &[
            "jane@",
            "@example.com",
            "jane@localhost",
            "a@b.c",
            "no at sign here",
            "x @ y.com",
        ],
    );
}

#[test]
fn ibans() {
    let d = only("iban");
    assert_hits(
        &d,
        &[
            "DE89370400440532013000",
            "DE89 3704 0044 0532 0130 00",
            "GB82 WEST 1234 5698 7654 32",
            "NO9386011117947",
            "NL91ABNA0417164300",
            "pay to DE89 3704 0044 0532 0130 00 by Friday",
            "BE68 5390 0754 7034 EUR",
            "iban=BE68539007547034;",
        ],
    );
    assert_misses(
        &d,
        &[
            "DE89 3704 0044 0532 0130 01",
            "DE88370400440532013000",
            "XDE89370400440532013000",
            "DE89370400440532013000X",
            "de89370400440532013000",
            "DE89 3704",
            "AB12 3456 7890 1234 5678",
        ],
    );
}

#[test]
fn secrets() {
    let d = only("secret");
    let github = format!("token {}", ["ghp_", &"a1B2".repeat(9)].concat());
    let fine_grained = format!("github_pat_{}", "A1b_".repeat(20));
    let slack = ["xox", "b-", "1234567890-abcdefABCDEF"].concat();
    let jwt = "Authorization: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl";
    assert_hits(
        &d,
        &[
            "AKIAIOSFODNN7EXAMPLE",
            "key=ASIAIOSFODNN7EXAMPLE;",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE...",
            "-----BEGIN PRIVATE KEY-----",
            "-----BEGIN OPENSSH PRIVATE KEY-----",
            "Authorization: Bearer abcdefghijklmnop0123456789",
            &github,
            &fine_grained,
            &slack,
            jwt,
        ],
    );
    let short_github = ["ghp_", "abc"].concat();
    assert_misses(
        &d,
        &[
            "AKIAIOSFODNN7EXAMPL",
            "AKIAIOSFODNN7EXAMPLEX",
            "-----BEGIN PUBLIC KEY-----",
            "-----BEGIN CERTIFICATE-----",
            "Bearer bonds",
            &short_github,
            "xoxo, see you",
            "eyJhbGciOiJIUzI1NiJ9 only one part",
            "the key is in the drawer",
        ],
    );
}

#[test]
fn non_utf8_values_are_scanned_as_bytes() {
    let d = only("card");
    let mut v = b"\xff\xfe card ".to_vec();
    v.extend_from_slice(b"4111 1111 1111 1111 \x80");
    assert_eq!(d.detect(&v), Some((0, DetectorKind::Card)));
    let d = only("secret");
    assert!(d.detect(b"\xc3\x28AKIAIOSFODNN7EXAMPLE\xa0").is_some());
}

#[test]
fn first_rule_naming_a_kind_decides() {
    let r = rules(
        "[[detectors]]\nroles = [\"dba\"]\nkinds = [\"card\"]\nstrategy = \"null\"\n\
         [[detectors]]\nroles = [\"agent\"]\nkinds = [\"email\", \"card\", \"email\"]\nstrategy = \"redact\"\n\
         [[detectors]]\nroles = [\"agent\"]\nkinds = [\"card\", \"ssn\"]\nstrategy = \"hash\"\n",
    );
    assert!(Detectors::for_roles(&r, &["analyst".to_owned()]).is_none());
    assert!(Detectors::for_roles(&[], &agent()).is_none());
    let d = Detectors::for_roles(&r, &agent()).unwrap();
    assert_eq!(
        d.kinds().collect::<Vec<_>>(),
        [
            (1, DetectorKind::Email),
            (1, DetectorKind::Card),
            (2, DetectorKind::Ssn)
        ]
    );
    assert_eq!(d.detect(b"4111111111111111"), Some((1, DetectorKind::Card)));
    assert_eq!(d.detect(b"123-45-6789"), Some((2, DetectorKind::Ssn)));
    // Several kinds in one value: the first looked for wins.
    assert_eq!(
        d.detect(b"123-45-6789 jane@example.com"),
        Some((1, DetectorKind::Email))
    );
    assert_eq!(
        d.strategy(1),
        Some(&MaskStrategy::Redact {
            text: "***".to_owned()
        })
    );
    assert_eq!(d.strategy(2), Some(&MaskStrategy::Hash));
    assert_eq!(d.strategy(0), None);
    assert_eq!(*d, *Detectors::for_roles(&r, &agent()).unwrap());
    let dba = Detectors::for_roles(&r, &["dba".to_owned()]).unwrap();
    assert_ne!(*d, *dba);
}

#[test]
fn pathological_values_stay_linear() {
    let d = Detectors::for_roles(
        &rules(
            "[[detectors]]\nroles = [\"agent\"]\nkinds = [\"card\", \"ssn\", \"email\", \"iban\", \"secret\"]\nstrategy = \"redact\"\n",
        ),
        &agent(),
    )
    .unwrap();
    // Long runs that pass every prefilter but hold nothing; these would take
    // minutes if any check were quadratic.
    let digits = "1 ".repeat(200_000);
    assert_eq!(d.detect(digits.as_bytes()), None);
    let groups = "1234 ".repeat(100_000);
    assert_eq!(d.detect(groups.as_bytes()), None);
    let ibans = "AB12 ".repeat(100_000);
    assert_eq!(d.detect(ibans.as_bytes()), None);
    let ats = "a@".repeat(100_000);
    assert_eq!(d.detect(ats.as_bytes()), None);
    let markers = "AKIA eyJ. Bearer gh_ xox ".repeat(50_000);
    assert_eq!(d.detect(markers.as_bytes()), None);
}

#[test]
fn detectors_are_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Detectors>();
}
