//! The keyword fallback for statements the parser rejects.
//!
//! sqlparser does not know every PostgreSQL utility statement (DO, REINDEX,
//! CLUSTER, REFRESH MATERIALIZED VIEW, SECURITY LABEL, many ALTER forms, …).
//! For one statement (a [`super::lexer::Piece`]) that did not parse, this
//! module looks at its leading keywords and may assign only `ddl`, `code`,
//! `privilege` or `admin`, and only when that class is at least as strict
//! as anything a statement starting with those keywords can do.
//!
//! # Security
//! Must never assign `read`, `write`, `tx` or `session`: those are the
//! classes a rule is likely to allow, and a guess from keywords is not
//! enough to allow anything. Later tokens may only raise the class: words
//! such as `OWNER`, `GRANT` or `SECURITY` raise it to `privilege`, anything
//! that looks like a function call raises it to `code` (or `admin` for a
//! known server-level function), and a `CREATE TABLE … AS` (which runs a
//! query the fallback cannot see) gives up (`None`, i.e. `unknown`).

use super::catalog::{is_admin_function, is_known_builtin};
use super::lexer::{Lexer, Token, TokenKind, upper};
use super::profile::StatementClass;

/// Words that, anywhere in an unparsed DDL statement, suggest a change of
/// ownership, grants, row-level security or routine security.
const PRIVILEGE_WORDS: &[&str] = &[
    "AUTHORIZATION",
    "DEFINER",
    "GRANT",
    "OWNER",
    "POLICY",
    "PRIVILEGES",
    "REVOKE",
    "ROLE",
    "SEARCH_PATH",
    "SECURITY",
];

/// Words that may directly precede `(` without it being a function call
/// (types with modifiers, constraint and clause keywords).
const PAREN_WORDS: &[&str] = &[
    "AND",
    "ARRAY",
    "AS",
    "BIT",
    "BY",
    "CHAR",
    "CHARACTER",
    "CHECK",
    "DECIMAL",
    "EXCLUDE",
    "FLOAT",
    "FROM",
    "IN",
    "INCLUDE",
    "INTERVAL",
    "KEY",
    "NOT",
    "NUMERIC",
    "ON",
    "OPTIONS",
    "OR",
    "PARTITION",
    "RANGE",
    "LIST",
    "HASH",
    "REFERENCES",
    "SET",
    "TIME",
    "TIMESTAMP",
    "TO",
    "UNIQUE",
    "USING",
    "VALUES",
    "VARBIT",
    "VARCHAR",
    "VARYING",
    "WHERE",
    "WITH",
    "ZONE",
    "BTREE",
    "GIN",
    "GIST",
    "BRIN",
    "SPGIST",
    "ADD",
    "COLUMNS",
    "DEFAULT",
];

/// Words after which the next name (possibly qualified) is an object being
/// defined or referenced, so a `(` after that name opens a column list.
const NAME_INTRODUCERS: &[&str] = &[
    "TABLE",
    "ON",
    "REFERENCES",
    "EXISTS",
    "INTO",
    "ONLY",
    "VIEW",
    "INDEX",
    "TYPE",
    "OF",
    "PARTITION",
    "CONSTRAINT",
    "FUNCTION",
    "PROCEDURE",
    "AGGREGATE",
    "ROUTINE",
    "STATISTICS",
    "OPERATOR",
    "CONCURRENTLY",
];

/// The class of an unparsed single statement, or `None` (stays `unknown`).
pub(crate) fn classify(text: &str) -> Option<StatementClass> {
    let tokens: Vec<Token> = Lexer::new(text).collect();
    if tokens.iter().any(|t| t.kind == TokenKind::Unterminated) {
        return None;
    }
    let words: Vec<String> = tokens
        .iter()
        .take_while(|t| t.kind == TokenKind::Word)
        .take(6)
        .map(|t| text[t.range.clone()].to_ascii_uppercase())
        .collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    use StatementClass::*;
    let base = match w.as_slice() {
        ["DO", ..] | ["CALL", ..] => Code,
        ["GRANT", ..] | ["REVOKE", ..] | ["REASSIGN", ..] => Privilege,
        ["SECURITY", "LABEL", ..] => Privilege,
        ["SET", "ROLE", ..]
        | ["SET", "SESSION", "AUTHORIZATION", ..]
        | ["SET", "LOCAL", "ROLE", ..]
        | ["SET", "SESSION", "ROLE", ..]
        | ["SET", "LOCAL", "SESSION", "AUTHORIZATION", ..]
        | ["RESET", "ROLE"]
        | ["RESET", "SESSION", "AUTHORIZATION"]
        | ["DISCARD", "ALL"] => return Some(Privilege),
        ["VACUUM", ..]
        | ["ANALYZE", ..]
        | ["ANALYSE", ..]
        | ["CLUSTER", ..]
        | ["REINDEX", ..]
        | ["CHECKPOINT", ..]
        | ["LOCK", ..]
        | ["LOAD", ..]
        | ["COPY", ..] => Admin,
        ["PREPARE", "TRANSACTION", ..]
        | ["COMMIT", "PREPARED", ..]
        | ["ROLLBACK", "PREPARED", ..] => {
            return Some(Admin);
        }
        ["TRUNCATE", ..] | ["COMMENT", "ON", ..] | ["REFRESH", "MATERIALIZED", "VIEW", ..] => Ddl,
        ["IMPORT", "FOREIGN", "SCHEMA", ..] => Ddl,
        ["CREATE", rest @ ..] => create_class(rest, &tokens, text)?,
        ["ALTER", rest @ ..] => alter_class(rest)?,
        ["DROP", rest @ ..] => drop_class(rest)?,
        _ => return None,
    };
    Some(raise(base, &tokens, text))
}

/// Skips CREATE's modifiers and classifies the object kind.
fn create_class(rest: &[&str], tokens: &[Token], text: &str) -> Option<StatementClass> {
    use StatementClass::*;
    let mut i = 0;
    while let Some(w) = rest.get(i) {
        if matches!(
            *w,
            "OR" | "REPLACE"
                | "TEMP"
                | "TEMPORARY"
                | "UNLOGGED"
                | "GLOBAL"
                | "LOCAL"
                | "CONSTRAINT"
                | "TRUSTED"
                | "PROCEDURAL"
                | "DEFAULT"
                | "RECURSIVE"
                | "UNIQUE"
        ) {
            i += 1;
        } else {
            break;
        }
    }
    let obj = &rest[i.min(rest.len())..];
    Some(match obj {
        ["USER", "MAPPING", ..] => Admin,
        ["ROLE", ..] | ["USER", ..] | ["GROUP", ..] | ["POLICY", ..] => Privilege,
        ["EXTENSION", ..]
        | ["DATABASE", ..]
        | ["TABLESPACE", ..]
        | ["SERVER", ..]
        | ["FOREIGN", "DATA", ..]
        | ["SUBSCRIPTION", ..]
        | ["PUBLICATION", ..]
        | ["EVENT", ..]
        | ["LANGUAGE", ..]
        | ["ACCESS", ..] => Admin,
        ["FUNCTION", ..]
        | ["PROCEDURE", ..]
        | ["TRIGGER", ..]
        | ["RULE", ..]
        | ["AGGREGATE", ..]
        | ["OPERATOR", ..]
        | ["CAST", ..]
        | ["TRANSFORM", ..]
        | ["CONVERSION", ..] => Code,
        ["TABLE", ..] | ["MATERIALIZED", "VIEW", ..] => {
            // CREATE TABLE … AS / CREATE MATERIALIZED VIEW … AS runs a query.
            if has_top_level_word(tokens, text, "AS") {
                return None;
            }
            Ddl
        }
        ["VIEW", ..]
        | ["FOREIGN", "TABLE", ..]
        | ["SEQUENCE", ..]
        | ["INDEX", ..]
        | ["SCHEMA", ..]
        | ["TYPE", ..]
        | ["DOMAIN", ..]
        | ["COLLATION", ..]
        | ["STATISTICS", ..]
        | ["TEXT", "SEARCH", ..] => Ddl,
        _ => return None,
    })
}

fn alter_class(rest: &[&str]) -> Option<StatementClass> {
    use StatementClass::*;
    Some(match rest {
        ["SYSTEM", ..]
        | ["DATABASE", ..]
        | ["TABLESPACE", ..]
        | ["SERVER", ..]
        | ["FOREIGN", "DATA", ..]
        | ["USER", "MAPPING", ..]
        | ["EXTENSION", ..]
        | ["SUBSCRIPTION", ..]
        | ["PUBLICATION", ..]
        | ["EVENT", ..]
        | ["LANGUAGE", ..]
        | ["PROCEDURAL", ..] => Admin,
        ["ROLE", ..]
        | ["USER", ..]
        | ["GROUP", ..]
        | ["DEFAULT", "PRIVILEGES", ..]
        | ["POLICY", ..]
        | ["LARGE", "OBJECT", ..] => Privilege,
        ["FUNCTION", ..] | ["PROCEDURE", ..] | ["ROUTINE", ..] | ["TRIGGER", ..] | ["RULE", ..] => {
            Code
        }
        obj if is_schema_object(obj) => Ddl,
        _ => return None,
    })
}

fn drop_class(rest: &[&str]) -> Option<StatementClass> {
    use StatementClass::*;
    Some(match rest {
        ["USER", "MAPPING", ..] => Admin,
        ["ROLE", ..] | ["USER", ..] | ["GROUP", ..] | ["POLICY", ..] | ["OWNED", ..] => Privilege,
        ["DATABASE", ..]
        | ["TABLESPACE", ..]
        | ["SERVER", ..]
        | ["FOREIGN", "DATA", ..]
        | ["EXTENSION", ..]
        | ["SUBSCRIPTION", ..]
        | ["PUBLICATION", ..]
        | ["EVENT", ..]
        | ["LANGUAGE", ..]
        | ["PROCEDURAL", ..]
        | ["ACCESS", ..] => Admin,
        obj if is_schema_object(obj) => StatementClass::Ddl,
        ["FUNCTION", ..]
        | ["PROCEDURE", ..]
        | ["ROUTINE", ..]
        | ["TRIGGER", ..]
        | ["RULE", ..]
        | ["CAST", ..]
        | ["TRANSFORM", ..] => StatementClass::Ddl,
        _ => return None,
    })
}

/// Plain schema objects, whose ALTER and DROP are `ddl`.
fn is_schema_object(obj: &[&str]) -> bool {
    matches!(
        obj,
        ["TABLE", ..]
            | ["INDEX", ..]
            | ["VIEW", ..]
            | ["MATERIALIZED", "VIEW", ..]
            | ["SEQUENCE", ..]
            | ["SCHEMA", ..]
            | ["TYPE", ..]
            | ["DOMAIN", ..]
            | ["COLLATION", ..]
            | ["CONVERSION", ..]
            | ["AGGREGATE", ..]
            | ["OPERATOR", ..]
            | ["STATISTICS", ..]
            | ["TEXT", "SEARCH", ..]
            | ["FOREIGN", "TABLE", ..]
    )
}

/// Raises `base` from what the rest of the statement holds; never lowers it.
fn raise(base: StatementClass, tokens: &[Token], text: &str) -> StatementClass {
    let mut class = base;
    for (i, tok) in tokens.iter().enumerate() {
        let is_name = matches!(tok.kind, TokenKind::Word | TokenKind::QuotedIdent);
        if !is_name {
            continue;
        }
        let raw = &text[tok.range.clone()];
        let word = raw.to_ascii_uppercase();
        if tok.kind == TokenKind::Word && PRIVILEGE_WORDS.contains(&word.as_str()) {
            class = class.max(StatementClass::Privilege);
        }
        let called = tokens
            .get(i + 1)
            .is_some_and(|t| t.kind == TokenKind::LParen);
        if !called {
            continue;
        }
        let name = if tok.kind == TokenKind::QuotedIdent {
            raw.trim_matches('"').to_owned()
        } else {
            raw.to_ascii_lowercase()
        };
        if is_admin_function(&name) {
            class = class.max(StatementClass::Admin);
            continue;
        }
        if tok.kind == TokenKind::Word && PAREN_WORDS.contains(&word.as_str()) {
            continue;
        }
        if is_introduced_name(tokens, i, text)
            || (tok.kind == TokenKind::Word && is_known_builtin(&name))
        {
            continue;
        }
        // Something is called (in a default, a check, an index expression, a
        // USING clause): with a rewrite, that runs it for every row.
        class = class.max(StatementClass::Code);
    }
    class
}

/// True when the name ending at token `i` (possibly `a.b.c`) directly
/// follows a word such as TABLE or ON, i.e. it names an object.
fn is_introduced_name(tokens: &[Token], i: usize, text: &str) -> bool {
    let mut j = i;
    // Walk back over `name . name . name`.
    while j >= 2 && tokens[j - 1].kind == TokenKind::Dot {
        j -= 2;
    }
    // CREATE/ALTER … EXISTS name ( — or the statement's object name itself.
    let Some(prev) = j.checked_sub(1).and_then(|k| tokens.get(k)) else {
        return false;
    };
    prev.kind == TokenKind::Word && {
        let w = upper(&text[prev.range.clone()]);
        NAME_INTRODUCERS.iter().any(|k| upper(k) == w)
    }
}

/// True when `word` occurs outside any parentheses.
fn has_top_level_word(tokens: &[Token], text: &str, word: &str) -> bool {
    let mut depth = 0usize;
    for t in tokens {
        match t.kind {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen => depth = depth.saturating_sub(1),
            TokenKind::Word if depth == 0 && text[t.range.clone()].eq_ignore_ascii_case(word) => {
                return true;
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use StatementClass::*;

    #[test]
    fn leading_keywords() {
        let cases: &[(&str, Option<StatementClass>)] = &[
            ("DO $$ BEGIN DELETE FROM t; END $$", Some(Code)),
            ("do language plpgsql $$ begin end $$", Some(Code)),
            ("REINDEX TABLE t", Some(Admin)),
            ("CLUSTER t USING i", Some(Admin)),
            ("VACUUM (VERBOSE, ANALYZE) t", Some(Admin)),
            ("REFRESH MATERIALIZED VIEW mv", Some(Ddl)),
            ("SECURITY LABEL ON TABLE t IS 'x'", Some(Privilege)),
            ("ALTER SYSTEM SET work_mem = '1GB'", Some(Admin)),
            (
                "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob",
                Some(Privilege),
            ),
            ("ALTER TABLE t SET SCHEMA s", Some(Ddl)),
            ("ALTER TABLE t OWNER TO bob", Some(Privilege)),
            ("ALTER SEQUENCE s RESTART WITH 1", Some(Ddl)),
            (
                "ALTER TABLE t ADD COLUMN c int DEFAULT my_func()",
                Some(Code),
            ),
            (
                "ALTER TABLE t ADD COLUMN c varchar(10) DEFAULT lower('X')",
                Some(Ddl),
            ),
            (
                "ALTER TABLE t ALTER c TYPE int USING pg_read_file('x')::int",
                Some(Admin),
            ),
            (
                "CREATE TABLE t (a int) PARTITION BY RANGE (a) WITH (fillfactor = 70)",
                Some(Ddl),
            ),
            (
                "CREATE TABLE s.t (a numeric(10,2) REFERENCES u(id))",
                Some(Ddl),
            ),
            ("CREATE TABLE t AS SELECT * FROM u", None),
            ("CREATE UNLOGGED TABLE t AS SELECT pg_read_file('x')", None),
            ("CREATE INDEX i ON s.t (slugify(a))", Some(Code)),
            (
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
                Some(Code),
            ),
            (
                "CREATE FUNCTION f() RETURNS int SECURITY DEFINER AS 'x' LANGUAGE sql",
                Some(Privilege),
            ),
            (
                "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()",
                Some(Admin),
            ),
            ("DROP OWNED BY bob", Some(Privilege)),
            ("PREPARE TRANSACTION 'x'", Some(Admin)),
            ("COMMIT PREPARED 'x'", Some(Admin)),
            ("SET ROLE admin", Some(Privilege)),
            // Never a weak class, whatever the keywords.
            ("SELECT 1 FROM t", None),
            ("INSERT INTO t VALUES (1)", None),
            ("BEGIN", None),
            ("SET work_mem = 1", None),
            ("LISTEN x", None),
            ("WITH x AS (DELETE FROM t) SELECT 1", None),
            ("EXPLAIN ANALYZE DELETE FROM t", None),
            ("ALTER TABLE t ADD c text DEFAULT 'unterminated", None),
        ];
        for (sql, want) in cases {
            assert_eq!(classify(sql), *want, "{sql}");
        }
    }

    #[test]
    fn comments_before_keywords_are_skipped() {
        assert_eq!(
            classify("/* a /* nested */ */ -- x\r\n REINDEX DATABASE d"),
            Some(Admin)
        );
        assert_eq!(classify("-- SELECT\rDO $$ $$"), Some(Code));
    }
}
