//! Content detectors: a second line of masking for values that no column
//! rule names.
//!
//! A [`Detectors`] is compiled once per set of roles from the `[[detectors]]`
//! rules that apply to them, and then asked about single values with
//! [`Detectors::detect`]. It is pure: no I/O, no globals; the regexes are
//! compiled when the `Detectors` is built and never afterwards.
//!
//! What each kind matches (all ASCII, anywhere inside the value):
//!
//! - `card`: a run of 13–19 digits, each group separated from the next by a
//!   single space or dash, that passes the Luhn check. A run is split into
//!   groups at its separators, and every sequence of whole groups holding
//!   13–19 digits is tried, so `4111 1111 1111 1111 2024` still hits; in a
//!   sequence of several groups each group has at least 3 digits, so dates
//!   (`2024-05-01 2024-05-02`) and lists of small numbers are not tried. A
//!   run of more than 19 digits without separators is not a card.
//! - `ssn`: `ddd-dd-dddd` not touching another digit (nor a dash next to
//!   one), with area not 000, 666 or 9xx, group not 00, serial not 0000.
//! - `email`: `local@domain.tld`, ASCII only (a top-level domain of two or
//!   more letters).
//! - `iban`: two upper-case letters, two check digits (02–98) and 11–30
//!   upper-case letters or digits, written together or in space-separated
//!   groups of 4, 15–34 characters in all, not inside a longer word, and
//!   passing the ISO 13616 mod-97 check. The country code is not checked
//!   against a list: mod-97 lets through about one IBAN-shaped string in 97.
//! - `secret`: AWS access key ids (`AKIA`/`ASIA` + 16 upper-case letters or
//!   digits), private key headers (`-----BEGIN … PRIVATE KEY-----`), bearer
//!   tokens (`Bearer ` + 16 or more token characters), GitHub tokens
//!   (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` + 30 or more letters or digits,
//!   `github_pat_` + 20 or more), Slack tokens (`xoxa-`, `xoxb-`, `xoxp-`,
//!   `xoxr-` + 10 or more), and JWT-looking `eyJ….eyJ….` strings.
//!
//! A value that is not UTF-8 is scanned as bytes all the same.
//!
//! # Performance
//!
//! Nearly every value is rejected by a byte-level prefilter before any regex
//! runs. One branch-free pass over the value (a 256-entry class table) counts
//! its ASCII digits and notes which of a few bytes occur; that alone rules
//! out a kind when the value has fewer than 13 (card) or 9 (ssn, iban)
//! digits, no `@` (email), no `-` (ssn), no upper-case letter (iban), or
//! none of the byte sets every secret format holds. A value still in the
//! running is then scanned for an exact necessary shape: a run of 13 digits
//! in groups (card), `ddd-dd-dddd` around a dash (ssn, by `memchr`), two
//! upper-case letters followed by two digits (iban), a literal marker such
//! as `AKIA`, `-----BEGIN`, `Bearer `, `ghp_`, `xox` or `eyJ` (secret). Only a
//! value that passes runs the kind's regex (bytes API, ASCII mode, compiled
//! once per `Detectors`) and then the Luhn or mod-97 check. Nothing here
//! allocates per value.
//!
//! Building a `Detectors` compiles up to five regexes (well under a
//! millisecond): build it once per session (or per set of roles), not per
//! result.
//!
//! # Security
//!
//! Detection is a heuristic second line behind column rules, not a proof:
//! content encoded or split differently than above is not found.

use std::sync::Arc;

use regex::bytes::Regex;

use crate::policy::{DetectorKind, DetectorRule, MaskStrategy};

/// The compiled detectors of one set of roles.
///
/// `Send + Sync`: share it as `Arc<Detectors>` between the plans of a session.
#[derive(Debug)]
pub struct Detectors {
    /// Each kind looked for, once, in the order the applicable rules name
    /// them (file order, then order in `kinds`).
    checks: Vec<Check>,
    /// The strategy of every rule some check names, by rule index.
    strategies: Vec<(usize, MaskStrategy)>,
}

/// What one pass over a value found: enough to rule out nearly every kind.
#[derive(Debug, Clone, Copy)]
struct Shape {
    digits: usize,
    /// The union of the [`CLASS`] bits of the value's bytes.
    bits: u16,
}

/// One kind, the rule that decides its strategy, and its compiled regex.
#[derive(Debug)]
struct Check {
    kind: DetectorKind,
    rule: usize,
    /// `None` only if the regex failed to compile, which the tests rule out;
    /// then every value passing the prefilter is a hit, to fail closed.
    regex: Option<Regex>,
}

const CARD: &str = r"(?-u)[0-9](?:[ -]?[0-9]){12,}";
const SSN: &str = r"(?-u)[0-9]{3}-[0-9]{2}-[0-9]{4}";
const EMAIL: &str = r"(?-u)[A-Za-z0-9._%+\-]+@(?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2,}";
const IBAN: &str =
    r"(?-u)[A-Z]{2}[0-9]{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)";
const SECRET: &str = concat!(
    r"(?-u)\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
    r"|-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----",
    r"|Bearer [A-Za-z0-9._~+/\-]{16,}",
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}",
    r"|\bgithub_pat_[A-Za-z0-9_]{20,}",
    r"|\bxox[abpr]-[A-Za-z0-9\-]{10,}",
    r"|eyJ[A-Za-z0-9_\-]{2,}\.eyJ[A-Za-z0-9_\-]{2,}\.",
);

/// No kind fits in fewer bytes (`a@b.co`).
const SHORTEST: usize = 6;

// Bits of [`CLASS`]: the digit bit is bit 0 so that it can be added up.
const DIGIT: u16 = 1;
const UPPER: u16 = 1 << 1;
const AT: u16 = 1 << 2;
const DASH: u16 = 1 << 3;
const UNDERSCORE: u16 = 1 << 4;
const DOT: u16 = 1 << 5;
const LETTER_A: u16 = 1 << 6;
const LETTER_I: u16 = 1 << 7;
const LETTER_B: u16 = 1 << 8;
const LETTER_J: u16 = 1 << 9;
const LETTER_X: u16 = 1 << 10;

/// The class bits of each byte value.
const CLASS: [u16; 256] = classes();

/// The fewest digits a value needs for a card number.
const CARD_MIN_DIGITS: usize = 13;
const CARD_MAX_DIGITS: usize = 19;
/// The fewest digits a value needs for an SSN, and for any IBAN (the
/// shortest BBANs with letters, such as the Netherlands', still have 10).
const SSN_MIN_DIGITS: usize = 9;
const IBAN_MIN_DIGITS: usize = 9;
const IBAN_MIN_LEN: usize = 15;
const IBAN_MAX_LEN: usize = 34;

// === impl Detectors ===

impl Detectors {
    /// The detectors of the rules (of `rules`, which is
    /// [`crate::policy::RuleSet::detectors`]) that apply to `roles`; `None`
    /// when none does.
    ///
    /// When several rules name a kind, the first in `rules` decides its
    /// strategy.
    pub fn for_roles(rules: &[DetectorRule], roles: &[String]) -> Option<Arc<Detectors>> {
        let mut checks: Vec<Check> = Vec::new();
        let mut strategies = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            if !rule.applies_to(roles) {
                continue;
            }
            let before = checks.len();
            for &kind in rule.kinds() {
                if !checks.iter().any(|c| c.kind == kind) {
                    checks.push(Check {
                        kind,
                        rule: i,
                        regex: Regex::new(pattern(kind)).ok(),
                    });
                }
            }
            if checks.len() > before {
                strategies.push((i, rule.strategy().clone()));
            }
        }
        (!checks.is_empty()).then(|| Arc::new(Detectors { checks, strategies }))
    }

    /// The first kind found in `value`, in the order of [`Detectors::for_roles`],
    /// with the index of the rule deciding its strategy.
    pub fn detect(&self, value: &[u8]) -> Option<(usize, DetectorKind)> {
        if value.len() < SHORTEST {
            return None;
        }
        let shape = Shape::of(value);
        self.checks
            .iter()
            .find(|c| {
                shape.may_hold(c.kind, value)
                    && match &c.regex {
                        Some(re) => confirm(c.kind, re, value),
                        None => true,
                    }
            })
            .map(|c| (c.rule, c.kind))
    }

    /// The strategy of the rule at `rule` (an index [`Detectors::detect`] returned).
    pub fn strategy(&self, rule: usize) -> Option<&MaskStrategy> {
        self.strategies
            .iter()
            .find(|(i, _)| *i == rule)
            .map(|(_, s)| s)
    }

    /// The kinds looked for, each with the index of the rule deciding its strategy.
    pub fn kinds(&self) -> impl Iterator<Item = (usize, DetectorKind)> + '_ {
        self.checks.iter().map(|c| (c.rule, c.kind))
    }
}

/// Two `Detectors` are equal when built from the same rules: same kinds,
/// deciding rules and strategies (the regexes follow from the kinds).
impl PartialEq for Detectors {
    fn eq(&self, other: &Self) -> bool {
        self.strategies == other.strategies && self.kinds().eq(other.kinds())
    }
}

impl Eq for Detectors {}

fn pattern(kind: DetectorKind) -> &'static str {
    match kind {
        DetectorKind::Card => CARD,
        DetectorKind::Ssn => SSN,
        DetectorKind::Email => EMAIL,
        DetectorKind::Iban => IBAN,
        DetectorKind::Secret => SECRET,
    }
}

/// Whether a value that passed the prefilter holds the kind: the regex, then
/// the kind's own checks on each match.
fn confirm(kind: DetectorKind, re: &Regex, value: &[u8]) -> bool {
    match kind {
        DetectorKind::Card => re.find_iter(value).any(|m| card_run(m.as_bytes())),
        DetectorKind::Ssn => re
            .find_iter(value)
            .any(|m| ssn_at(value, m.start(), m.end())),
        DetectorKind::Iban => re
            .find_iter(value)
            .any(|m| iban_at(value, m.start(), m.end())),
        DetectorKind::Email | DetectorKind::Secret => re.is_match(value),
    }
}

const fn classes() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let letter = match c {
            b'A' => LETTER_A,
            b'I' => LETTER_I,
            b'B' => LETTER_B,
            b'J' => LETTER_J,
            _ => 0,
        };
        t[b] = letter
            | match c {
                b'0'..=b'9' => DIGIT,
                b'A'..=b'Z' => UPPER,
                b'@' => AT,
                b'-' => DASH,
                b'_' => UNDERSCORE,
                b'.' => DOT,
                b'x' => LETTER_X,
                _ => 0,
            };
        b += 1;
    }
    t
}

// === impl Shape ===

impl Shape {
    /// One branch-free pass over `value`.
    fn of(value: &[u8]) -> Shape {
        let (mut digits, mut bits) = (0usize, 0u16);
        for &b in value {
            let c = CLASS[usize::from(b)];
            digits += usize::from(c & DIGIT);
            bits |= c;
        }
        Shape { digits, bits }
    }

    fn has(self, bits: u16) -> bool {
        self.bits & bits == bits
    }

    /// The prefilter: false when `value` surely holds no `kind`. The bits
    /// rule out most values at once; the scans after them are exact
    /// necessary conditions of each kind's regex.
    fn may_hold(self, kind: DetectorKind, value: &[u8]) -> bool {
        match kind {
            DetectorKind::Card => {
                self.digits >= CARD_MIN_DIGITS && longest_digit_run(value) >= CARD_MIN_DIGITS
            }
            DetectorKind::Ssn => {
                self.digits >= SSN_MIN_DIGITS && self.has(DASH) && has_ssn_shape(value)
            }
            DetectorKind::Email => self.has(AT),
            DetectorKind::Iban => {
                value.len() >= IBAN_MIN_LEN
                    && self.digits >= IBAN_MIN_DIGITS
                    && self.has(UPPER)
                    && has_iban_start(value)
            }
            DetectorKind::Secret => {
                // Each format holds one of these byte sets: `B` (Bearer, BEGIN), `_` (GitHub),
                // `A` and `I` (AKIA, ASIA), `x` and `-` (Slack), `J` and `.` (JWT).
                (self.has(LETTER_B)
                    || self.has(UNDERSCORE)
                    || self.has(LETTER_A | LETTER_I)
                    || self.has(LETTER_X | DASH)
                    || self.has(LETTER_J | DOT))
                    && has_secret_marker(value)
            }
        }
    }
}

/// The digits of the longest run of digit groups separated by single spaces or dashes.
fn longest_digit_run(value: &[u8]) -> usize {
    let (mut best, mut run, mut after_digit) = (0, 0, false);
    for &b in value {
        if b.is_ascii_digit() {
            run += 1;
            best = best.max(run);
            after_digit = true;
        } else if after_digit && (b == b' ' || b == b'-') {
            after_digit = false;
        } else {
            run = 0;
            after_digit = false;
        }
    }
    best
}

/// Whether some `-` of `value` is the first dash of a `ddd-dd-dddd`.
fn has_ssn_shape(value: &[u8]) -> bool {
    let digits = |s: Option<&[u8]>| s.is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    memchr::memchr_iter(b'-', value).any(|p| {
        p >= 3
            && value.get(p + 3) == Some(&b'-')
            && digits(value.get(p - 3..p))
            && digits(value.get(p + 1..p + 3))
            && digits(value.get(p + 4..p + 8))
    })
}

/// Whether `value` holds two upper-case letters followed by two digits.
fn has_iban_start(value: &[u8]) -> bool {
    value.windows(4).any(|w| {
        w[2].is_ascii_digit()
            && w[3].is_ascii_digit()
            && w[0].is_ascii_uppercase()
            && w[1].is_ascii_uppercase()
    })
}

/// Whether `value` holds a literal marker of one of the secret formats.
fn has_secret_marker(value: &[u8]) -> bool {
    value.iter().enumerate().any(|(i, &b)| {
        // Only the first byte of a marker is compared on every position.
        if !matches!(b, b'A' | b'-' | b'B' | b'g' | b'x' | b'e') {
            return false;
        }
        let rest = value.get(i..).unwrap_or_default();
        match b {
            b'A' => rest.starts_with(b"AKIA") || rest.starts_with(b"ASIA"),
            b'-' => rest.starts_with(b"-----BEGIN"),
            b'B' => rest.starts_with(b"Bearer "),
            b'g' => {
                (rest.starts_with(b"gh") && rest.get(3) == Some(&b'_'))
                    || rest.starts_with(b"github_pat_")
            }
            b'x' => rest.starts_with(b"xox"),
            _ => rest.starts_with(b"eyJ"),
        }
    })
}

/// Whether a maximal run of digits separated by single spaces or dashes holds
/// a card number: some sequence of whole groups with 13–19 digits (each group
/// at least 3 digits when there are several) that passes Luhn.
///
/// Linear in the run: a sequence ends once it holds more than 19 digits.
fn card_run(run: &[u8]) -> bool {
    let mut firsts = group_ranges(run);
    while let Some((start, first_end)) = firsts.next() {
        let first_len = first_end - start;
        let mut digits = first_len;
        if digits > CARD_MAX_DIGITS {
            continue;
        }
        if digits >= CARD_MIN_DIGITS && luhn(run.get(start..first_end).unwrap_or_default()) {
            return true;
        }
        if first_len < 3 {
            continue;
        }
        for (group_start, end) in firsts.clone() {
            let len = end - group_start;
            digits += len;
            if len < 3 || digits > CARD_MAX_DIGITS {
                break;
            }
            if digits >= CARD_MIN_DIGITS && luhn(run.get(start..end).unwrap_or_default()) {
                return true;
            }
        }
    }
    false
}

/// The byte ranges of the digit groups of a run (separated by one byte each).
fn group_ranges(run: &[u8]) -> impl Iterator<Item = (usize, usize)> + Clone + '_ {
    let mut at = 0;
    run.split(|b| !b.is_ascii_digit()).map(move |g| {
        let start = at;
        at += g.len() + 1;
        (start, start + g.len())
    })
}

/// The Luhn check over the digits of `s` (other bytes are skipped).
fn luhn(s: &[u8]) -> bool {
    let mut sum = 0u32;
    let digits = s.iter().rev().filter(|b| b.is_ascii_digit());
    for (i, &b) in digits.enumerate() {
        let d = u32::from(b - b'0');
        sum += match (i % 2 == 1, d * 2) {
            (false, _) => d,
            (true, x) if x > 9 => x - 9,
            (true, x) => x,
        };
    }
    sum.is_multiple_of(10)
}

/// Whether the `ddd-dd-dddd` at `start..end` of `value` is an SSN: not part
/// of a longer number and not a number never issued.
fn ssn_at(value: &[u8], start: usize, end: usize) -> bool {
    let digit_at = |i: Option<usize>| i.and_then(|i| value.get(i)).is_some_and(u8::is_ascii_digit);
    let byte_at = |i: Option<usize>| i.and_then(|i| value.get(i)).copied();
    let before = start.checked_sub(1);
    let after = Some(end);
    if digit_at(before)
        || (byte_at(before) == Some(b'-') && digit_at(start.checked_sub(2)))
        || digit_at(after)
        || (byte_at(after) == Some(b'-') && digit_at(end.checked_add(1)))
    {
        return false;
    }
    let Some(s) = value.get(start..end) else {
        return false;
    };
    let (area, group, serial) = (&s[0..3], &s[4..6], &s[7..11]);
    area != b"000" && area != b"666" && area[0] != b'9' && group != b"00" && serial != b"0000"
}

/// Whether the IBAN-shaped match at `start..end` of `value` is an IBAN: not
/// inside a longer word, and (the whole match, or for the grouped form the
/// match cut after one of its groups) 15–34 characters passing mod-97.
fn iban_at(value: &[u8], start: usize, end: usize) -> bool {
    let alnum_at = |i: Option<usize>| {
        i.and_then(|i| value.get(i))
            .is_some_and(u8::is_ascii_alphanumeric)
    };
    if alnum_at(start.checked_sub(1)) {
        return false;
    }
    let Some(m) = value.get(start..end) else {
        return false;
    };
    // Check digits are 02–98: 00, 01 and 99 pass mod-97 only in place of 97, 98 and 02.
    if !matches!(m.get(2..4), Some(c) if c >= b"02".as_slice() && c <= b"98".as_slice()) {
        return false;
    }
    // The characters without spaces, and how many of them end each group.
    let mut chars = [0u8; IBAN_MAX_LEN + 4];
    let mut len = 0;
    let mut ends = [0usize; 9];
    let mut groups = 0;
    for (i, &b) in m.iter().enumerate() {
        if b != b' ' {
            let Some(slot) = chars.get_mut(len) else {
                break;
            };
            *slot = b;
            len += 1;
        }
        let group_ends = i + 1 == m.len() || m.get(i + 1) == Some(&b' ');
        if group_ends
            && i >= 4
            && let Some(slot) = ends.get_mut(groups)
        {
            *slot = len;
            groups += 1;
        }
    }
    let whole_ok = !alnum_at(Some(end));
    let mut cuts = ends.iter().take(groups).rev().copied();
    let spaced = m.contains(&b' ');
    cuts.any(|n| {
        let at_end = n == len;
        (if at_end { whole_ok } else { spaced })
            && (IBAN_MIN_LEN..=IBAN_MAX_LEN).contains(&n)
            && chars.get(..n).is_some_and(mod97)
    })
}

/// ISO 13616: the first four characters moved to the end, letters as
/// 10–35, the number mod 97 is 1.
fn mod97(iban: &[u8]) -> bool {
    let (head, tail) = iban.split_at(4.min(iban.len()));
    let mut r = 0u32;
    for &b in tail.iter().chain(head) {
        r = match b {
            b'0'..=b'9' => (r * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => (r * 100 + u32::from(b - b'A') + 10) % 97,
            _ => return false,
        };
    }
    r == 1
}

#[cfg(test)]
mod tests;
