//! Cache keys that ignore the values of numeric literals: `WHERE aid = 4711` and
//! `WHERE aid = 1234` share one profile.
//!
//! Simple-protocol clients inline their values, so keying the cache by the exact text would make
//! every such statement a miss. The key replaces each digit of a numeric literal with `0`.
//!
//! # Security
//! Two texts with the same key differ only in the digits of numeric literals, which never change
//! a statement's class, tables, functions or lineage, with one exception that is kept out: a
//! number right after `BY` or `,` may be an output-column ordinal (`ORDER BY 2`, `GROUP BY 1, 2`),
//! which changes which column a clause touches, so such numbers stay as written. The
//! replacement keeps every byte offset, so the statement ranges of a cached analysis are valid
//! for every text sharing its key. Tokens come from the same lexer the splitter uses; strings,
//! quoted identifiers, dollar quotes, comments and `$n` parameters are never touched.

use super::lexer::{Lexer, TokenKind};

/// Writes the cache key of `sql` into `out` (cleared first). Returns `false`, leaving `out`
/// empty, when nothing would change: the text is its own key.
pub fn normalized_key(sql: &str, out: &mut String) -> bool {
    out.clear();
    let bytes = sql.as_bytes();
    let mut copied = 0;
    let mut after_by_or_comma = false;
    for token in Lexer::new(sql) {
        let text = &bytes[token.range.clone()];
        let literal = token.kind == TokenKind::Number
            && text
                .first()
                .is_some_and(|c| c.is_ascii_digit() || *c == b'.');
        if literal && !after_by_or_comma && text.iter().any(|c| matches!(c, b'1'..=b'9')) {
            // Same length, ASCII for ASCII: every char boundary and offset is preserved.
            out.push_str(&sql[copied..token.range.start]);
            out.extend(
                sql[token.range.clone()]
                    .chars()
                    .map(|c| if c.is_ascii_digit() { '0' } else { c }),
            );
            copied = token.range.end;
        }
        after_by_or_comma = match token.kind {
            TokenKind::Word => text.eq_ignore_ascii_case(b"by"),
            TokenKind::Other => text == b",",
            _ => false,
        };
    }
    if copied == 0 {
        out.clear();
        return false;
    }
    out.push_str(&sql[copied..]);
    true
}

/// The statement as pgward's log shows it: every literal (string, number, dollar-quoted body)
/// replaced by `?`, comments and runs of whitespace by one space, and cut after `max` characters.
/// A literal can hold a password (`ALTER ROLE … PASSWORD '…'`) or a value of a masked column
/// typed by the client; the log keeps the statement's shape only.
pub fn for_log(sql: &str, max: usize) -> String {
    let mut out = String::with_capacity(sql.len().min(max) + 3);
    let mut last_end = 0;
    for token in Lexer::new(sql) {
        if out.chars().count() >= max {
            out.push('…');
            return out;
        }
        if token.range.start > last_end && !out.is_empty() {
            out.push(' ');
        }
        last_end = token.range.end;
        let text = &sql[token.range.clone()];
        match token.kind {
            TokenKind::String | TokenKind::Unterminated => out.push('?'),
            TokenKind::Number if !text.starts_with('$') => out.push('?'),
            _ => out.push_str(text),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_statements_keep_their_shape_and_lose_their_values() {
        assert_eq!(
            for_log(
                "ALTER ROLE bob PASSWORD 'hunter2' -- note\n VALID UNTIL '2030-01-01'",
                200
            ),
            "ALTER ROLE bob PASSWORD ? VALID UNTIL ?"
        );
        assert_eq!(
            for_log(
                "SELECT * FROM people WHERE ssn = $1 AND id = 42 AND x = $$secret$$",
                200
            ),
            "SELECT * FROM people WHERE ssn = $1 AND id = ? AND x = ?"
        );
        assert_eq!(for_log("SELECT aaaa, bbbb, cccc", 10), "SELECT aaaa…");
        assert_eq!(for_log("SELECT 'unterminated", 200), "SELECT ?");
    }

    fn key(sql: &str) -> String {
        let mut out = String::new();
        if normalized_key(sql, &mut out) {
            out
        } else {
            sql.to_owned()
        }
    }

    #[test]
    fn numeric_literals_share_a_key_of_the_same_length() {
        let a = key("SELECT abalance FROM pgbench_accounts WHERE aid = 4711;");
        assert_eq!(a, "SELECT abalance FROM pgbench_accounts WHERE aid = 0000;");
        assert_eq!(
            key("SELECT abalance FROM pgbench_accounts WHERE aid = 1234;"),
            a
        );
        assert_eq!(key("SELECT 1.5e3 + .25"), "SELECT 0.0e0 + .00");
    }

    #[test]
    fn ordinals_strings_identifiers_and_parameters_are_kept() {
        assert_eq!(
            key("SELECT a, b FROM t ORDER BY 2"),
            "SELECT a, b FROM t ORDER BY 2"
        );
        assert_eq!(
            key("SELECT a, b FROM t GROUP BY 1, 2"),
            "SELECT a, b FROM t GROUP BY 1, 2"
        );
        assert_eq!(
            key("SELECT 'x1', \"c2\", t3.c4, $5 FROM t6"),
            "SELECT 'x1', \"c2\", t3.c4, $5 FROM t6"
        );
        assert_eq!(
            key("SELECT $$ 42 $$ || E'\\' 42' || /* 42 */ 7 -- 42"),
            "SELECT $$ 42 $$ || E'\\' 42' || /* 42 */ 0 -- 42"
        );
        assert_eq!(
            key("SELECT U&'\\0041' || B'101' || X'1F'"),
            "SELECT U&'\\0041' || B'101' || X'1F'"
        );
    }

    #[test]
    fn unchanged_text_reports_false() {
        let mut out = String::from("stale");
        assert!(!normalized_key("SELECT a FROM t WHERE b = $1", &mut out));
        assert!(out.is_empty());
        assert!(!normalized_key("SELECT 0", &mut out));
    }
}
