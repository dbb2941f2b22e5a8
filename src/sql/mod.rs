//! Statement analysis: SQL text → [`StatementProfile`] (class, tables, lineage, flags).
//!
//! This module owns understanding what a client's SQL text would do if the
//! server ran it. [`analyze`] splits the text into statements with a
//! PostgreSQL-compatible lexer (`lexer.rs`), parses it with sqlparser's
//! PostgreSQL dialect, and walks every statement's whole tree: the strictest
//! class of anything inside wins (`WITH d AS (DELETE …) SELECT …` is a
//! write; `EXPLAIN DELETE` is a read, `EXPLAIN ANALYZE DELETE` a write).
//! [`ProfileCache`] makes a repeated text cost one hash lookup.
//!
//! The result, [`Analysis`], holds one profile per statement (with its byte
//! range in the text, so the session can refuse a single statement of a
//! batch) and `combined`, the profile of the whole text: the strictest
//! class, the union of everything else, and [`Flag::MultiStatement`] when
//! there was more than one statement.
//!
//! # Security
//! Fail closed. Text that does not parse is [`StatementClass::Unknown`] with
//! [`Flag::Unparsed`], except that a single statement the parser rejects may
//! be classified from its leading keywords ([`Flag::KeywordFallback`]), and
//! then only as `ddl`, `code`, `privilege` or `admin`, never weaker than
//! what such a statement can do. When the lexer and the parser disagree on
//! where statements end, the whole text is `unknown` ([`Flag::SplitMismatch`]).
//! Invalid UTF-8, NUL bytes, text over [`MAX_SQL_BYTES`] and nesting deeper
//! than [`RECURSION_LIMIT`] are `unknown`, never a panic or a stack overflow.
//! The analyzer assumes `standard_conforming_strings = on` and a UTF-8 client
//! encoding; statements that change either carry [`Flag::LexerChange`].
//!
//! This module is pure: no I/O, no clocks, no globals.
//!
//! # Example
//! ```
//! use pgward::sql::{analyze, AnalyzeContext, FunctionCatalog, StatementClass};
//!
//! let path = vec!["public".to_owned()];
//! let catalog = FunctionCatalog::builtin_only();
//! let ctx = AnalyzeContext::new(&path, &catalog);
//! let a = analyze("WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d", &ctx);
//! assert_eq!(a.combined.class, StatementClass::Write);
//! assert!(a.combined.tables_written.iter().any(|t| t.to_string() == "public.orders"));
//! ```

use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};

mod cache;
mod catalog;
mod class;
mod dml;
pub mod explain;
mod fallback;
mod lexer;
mod lineage;
mod normalize;
pub use normalize::for_log;
mod oracle;
mod profile;
mod select;
mod statement;

pub use cache::ProfileCache;
pub use catalog::{FunctionCatalog, FunctionInfo, Volatility, lexer_unsafe_parameter};
pub use profile::{
    ColumnRef, ColumnSource, Execute, Flag, OutputColumn, Prepared, StatementClass,
    StatementProfile, TableName,
};

/// Texts longer than this are not parsed (`unknown`): 8 MiB.
pub const MAX_SQL_BYTES: usize = 8 << 20;

/// sqlparser's recursion limit: deeper nesting is `unknown`. Bounds the
/// depth of every AST, so walking and dropping it cannot overflow the stack.
pub const RECURSION_LIMIT: usize = 64;

/// Statements with a longer operator chain at one parenthesis level
/// (`a OR b OR …`) are `unknown` without being parsed: sqlparser parses such
/// chains in a loop but builds an AST as deep as the chain, and walking or
/// dropping a much deeper one could overflow a 2 MiB stack.
pub const MAX_OPERATOR_CHAIN: usize = 10_000;

/// Why a text or statement was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The bytes are not UTF-8.
    #[error("sql text is not valid utf-8 (valid up to byte {valid_up_to})")]
    InvalidUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// The text holds a NUL byte, which the protocol cannot carry in a query.
    #[error("sql text contains a nul byte at {offset}")]
    NulByte {
        /// Byte offset of the first NUL.
        offset: usize,
    },
    /// The text is longer than [`MAX_SQL_BYTES`].
    #[error("sql text of {len} bytes exceeds the limit of {limit}")]
    TooLong {
        /// The text's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// sqlparser rejected the statement.
    #[error("sql parser: {0}")]
    Parse(String),
    /// An operator chain longer than [`MAX_OPERATOR_CHAIN`].
    #[error("expression chain of {len} operators exceeds the limit of {limit}")]
    ChainTooLong {
        /// The chain's length (an upper bound).
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A string, quoted identifier, dollar quote or comment never ends.
    #[error("unterminated string, identifier or comment")]
    Unterminated,
    /// The lexer and the parser disagree on the number of statements.
    #[error(
        "statement boundaries are ambiguous ({pieces} by the lexer, {statements} by the parser)"
    )]
    SplitMismatch {
        /// Statements found by the lexer.
        pieces: usize,
        /// Statements found by the parser.
        statements: usize,
    },
}

/// What the analysis depends on besides the text.
#[derive(Debug, Clone, Copy)]
pub struct AnalyzeContext<'a> {
    /// The session's effective `search_path`, `$user` already substituted
    /// by the session (entries still named `$user` are skipped). Empty means
    /// `["public"]`.
    pub search_path: &'a [String],
    /// The functions known to be safe.
    pub catalog: &'a FunctionCatalog,
}

/// The analysis of one text.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// Each statement in text order; empty when the text holds none.
    pub statements: Vec<AnalyzedStatement>,
    /// The whole text: strictest class, union of the rest; the same `Arc`
    /// as the only statement's profile when there is exactly one.
    #[serde(serialize_with = "serialize_arc")]
    pub combined: Arc<StatementProfile>,
}

/// One statement of an analyzed text.
#[derive(Debug, Clone, Serialize)]
pub struct AnalyzedStatement {
    /// Its bytes in the text: from its first token to the end of its last
    /// (leading comments and the closing `;` excluded). When the text could
    /// not be split reliably, the whole text.
    pub range: Range<usize>,
    /// Its profile.
    #[serde(serialize_with = "serialize_arc")]
    pub profile: Arc<StatementProfile>,
}

fn serialize_arc<S: Serializer, T: Serialize>(v: &Arc<T>, s: S) -> Result<S::Ok, S::Error> {
    (**v).serialize(s)
}

// === impl AnalyzeContext ===

impl<'a> AnalyzeContext<'a> {
    /// A context from a search path and a catalog.
    pub fn new(search_path: &'a [String], catalog: &'a FunctionCatalog) -> Self {
        AnalyzeContext {
            search_path,
            catalog,
        }
    }

    /// A digest of everything in the context that can change an analysis;
    /// part of the profile cache key.
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.search_path.hash(&mut h);
        self.catalog.fingerprint().hash(&mut h);
        h.finish()
    }
}

// === impl Analysis ===

impl Analysis {
    /// The analysis of a text that could not be looked at, as one `unknown` statement.
    pub fn unparsed(len: usize, error: &Error) -> Self {
        let p = Arc::new(StatementProfile::unparsed(error.to_string()));
        Analysis {
            statements: vec![AnalyzedStatement {
                range: 0..len,
                profile: p.clone(),
            }],
            combined: p,
        }
    }

    fn from_statements(statements: Vec<AnalyzedStatement>) -> Self {
        let combined = match statements.as_slice() {
            [] => {
                let mut p = StatementProfile::new(StatementClass::Session);
                p.flags.insert(Flag::Empty);
                Arc::new(p)
            }
            [one] => one.profile.clone(),
            [first, rest @ ..] => {
                let mut p = (*first.profile).clone();
                p.prepares = None;
                p.executes = None;
                for s in rest {
                    p.absorb(&s.profile);
                    // An EXECUTE in a batch is unknown until resolved per statement.
                    if s.profile.executes.is_some() {
                        p.raise(StatementClass::Unknown);
                    }
                }
                p.flags.insert(Flag::MultiStatement);
                Arc::new(p)
            }
        };
        Analysis {
            statements,
            combined,
        }
    }
}

/// Analyzes SQL text. Pure and uncached; see [`ProfileCache`] for the hot path.
pub fn analyze(sql: &str, ctx: &AnalyzeContext<'_>) -> Analysis {
    if sql.len() > MAX_SQL_BYTES {
        return Analysis::unparsed(
            sql.len(),
            &Error::TooLong {
                len: sql.len(),
                limit: MAX_SQL_BYTES,
            },
        );
    }
    if let Some(offset) = sql.bytes().position(|b| b == 0) {
        return Analysis::unparsed(sql.len(), &Error::NulByte { offset });
    }
    let pieces = lexer::split(sql);
    if pieces.is_empty() {
        return Analysis::from_statements(Vec::new());
    }
    let whole = if pieces
        .iter()
        .any(|p| p.unterminated || p.chain > MAX_OPERATOR_CHAIN)
    {
        Err(Error::Unterminated)
    } else {
        parse(sql)
    };
    match whole {
        Ok(stmts) if stmts.len() == pieces.len() => {
            let mut path = PathTracker::default();
            let statements = stmts
                .iter()
                .zip(&pieces)
                .map(|(st, piece)| {
                    let profile = path.analyze(ctx, |c| statement::analyze_statement(st, c));
                    AnalyzedStatement {
                        range: piece.range.clone(),
                        profile: Arc::new(profile),
                    }
                })
                .collect();
            Analysis::from_statements(statements)
        }
        Ok(stmts) => {
            let err = Error::SplitMismatch {
                pieces: pieces.len(),
                statements: stmts.len(),
            };
            split_mismatch(sql, &err)
        }
        Err(_) => {
            // Some statement does not parse: look at each on its own.
            let mut all_parsed = true;
            let mut path = PathTracker::default();
            let statements: Vec<AnalyzedStatement> = pieces
                .iter()
                .map(|piece| {
                    let mut parsed = false;
                    let profile = path.analyze(ctx, |c| {
                        let (profile, ok) = analyze_piece(&sql[piece.range.clone()], piece, c);
                        parsed = ok;
                        profile
                    });
                    all_parsed &= parsed;
                    AnalyzedStatement {
                        range: piece.range.clone(),
                        profile: Arc::new(profile),
                    }
                })
                .collect();
            if all_parsed && pieces.len() > 1 {
                // Each piece parses alone but the whole did not: the two
                // splitters disagree somewhere, so trust neither.
                let err = Error::SplitMismatch {
                    pieces: pieces.len(),
                    statements: 0,
                };
                return split_mismatch(sql, &err);
            }
            Analysis::from_statements(statements)
        }
    }
}

/// Follows `SET search_path` through a batch: the server resolves each
/// statement's names after the previous statements ran, so a statement
/// after `SET search_path = x` is analyzed with path `x`, and one after a
/// change to a path pgward cannot know is `unknown`.
#[derive(Default)]
struct PathTracker {
    path: Option<Vec<String>>,
    unknowable: bool,
}

impl PathTracker {
    fn analyze(
        &mut self,
        ctx: &AnalyzeContext<'_>,
        f: impl FnOnce(&AnalyzeContext<'_>) -> StatementProfile,
    ) -> StatementProfile {
        let mut profile = match &self.path {
            Some(p) => f(&AnalyzeContext::new(p, ctx.catalog)),
            None => f(ctx),
        };
        if self.unknowable {
            profile.raise(StatementClass::Unknown);
            profile.error = Some("follows a change of search_path to an unknown value".to_owned());
        }
        if profile.has(Flag::SearchPathChange) {
            match &profile.search_path {
                Some(p) => {
                    self.path = Some(p.clone());
                    self.unknowable = false;
                }
                None => self.unknowable = true,
            }
        }
        profile
    }
}

/// Analyzes bytes as handed over by the protocol: invalid UTF-8 is `unknown`.
pub fn analyze_bytes(sql: &[u8], ctx: &AnalyzeContext<'_>) -> Analysis {
    match std::str::from_utf8(sql) {
        Ok(s) => analyze(s, ctx),
        Err(e) => Analysis::unparsed(
            sql.len(),
            &Error::InvalidUtf8 {
                valid_up_to: e.valid_up_to(),
            },
        ),
    }
}

fn split_mismatch(sql: &str, err: &Error) -> Analysis {
    let mut p = StatementProfile::unparsed(err.to_string());
    p.flags.insert(Flag::SplitMismatch);
    let p = Arc::new(p);
    Analysis {
        statements: vec![AnalyzedStatement {
            range: 0..sql.len(),
            profile: p.clone(),
        }],
        combined: p,
    }
}

/// Parses text with the PostgreSQL dialect and the recursion limit.
fn parse(sql: &str) -> Result<Vec<Statement>, Error> {
    Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e: ParserError| Error::Parse(e.to_string()))
}

/// One statement of a text whose whole did not parse. Returns its profile
/// and whether it parsed as it is (not after a rewrite, not by fallback).
fn analyze_piece(
    text: &str,
    piece: &lexer::Piece,
    ctx: &AnalyzeContext<'_>,
) -> (StatementProfile, bool) {
    if piece.unterminated {
        return (
            StatementProfile::unparsed(Error::Unterminated.to_string()),
            false,
        );
    }
    if piece.chain > MAX_OPERATOR_CHAIN {
        let err = Error::ChainTooLong {
            len: piece.chain,
            limit: MAX_OPERATOR_CHAIN,
        };
        return (StatementProfile::unparsed(err.to_string()), false);
    }
    let first_err = match parse(text) {
        Ok(stmts) => return (single(stmts, ctx), true),
        Err(e) => e,
    };
    if let Some(rewritten) = rewrite(text)
        && let Ok(stmts) = parse(&rewritten)
    {
        return (single(stmts, ctx), false);
    }
    match fallback::classify(text) {
        Some(class) => {
            let mut p = StatementProfile::new(class);
            p.flags.insert(Flag::KeywordFallback);
            p.error = Some(first_err.to_string());
            (p, false)
        }
        None => (StatementProfile::unparsed(first_err.to_string()), false),
    }
}

/// The profile of a piece that parsed into `stmts` (exactly one expected).
fn single(stmts: Vec<Statement>, ctx: &AnalyzeContext<'_>) -> StatementProfile {
    match stmts.as_slice() {
        [st] => statement::analyze_statement(st, ctx),
        _ => {
            let mut p = StatementProfile::unparsed(
                Error::SplitMismatch {
                    pieces: 1,
                    statements: stmts.len(),
                }
                .to_string(),
            );
            p.flags.insert(Flag::SplitMismatch);
            p
        }
    }
}

/// PostgreSQL syntax sqlparser lacks, rewritten to equivalent syntax it has:
/// `TABLE t` → `SELECT * FROM t`; `FOR NO KEY UPDATE` → `FOR UPDATE` and
/// `FOR KEY SHARE` → `FOR SHARE` (weaker locks, the same class). Token-based,
/// so nothing inside strings or comments is touched.
fn rewrite(text: &str) -> Option<String> {
    let tokens: Vec<lexer::Token> = lexer::Lexer::new(text).collect();
    let word = |i: usize, w: &str| {
        tokens.get(i).is_some_and(|t| {
            t.kind == lexer::TokenKind::Word && text[t.range.clone()].eq_ignore_ascii_case(w)
        })
    };
    let mut out = text.to_owned();
    let mut changed = false;
    for i in 0..tokens.len() {
        if word(i, "FOR") && word(i + 1, "NO") && word(i + 2, "KEY") && word(i + 3, "UPDATE") {
            for t in &tokens[i + 1..i + 3] {
                out.replace_range(t.range.clone(), &" ".repeat(t.range.len()));
            }
            changed = true;
        } else if word(i, "FOR") && word(i + 1, "KEY") && word(i + 2, "SHARE") {
            let t = &tokens[i + 1];
            out.replace_range(t.range.clone(), &" ".repeat(t.range.len()));
            changed = true;
        }
    }
    if word(0, "TABLE") {
        let rest = tokens.get(1).map(|t| t.range.start).unwrap_or(text.len());
        out = format!("SELECT * FROM {}", &out[rest..]);
        changed = true;
    }
    changed.then_some(out)
}

/// What the `fuzz/` targets run: a few lines there call into this. Also
/// run by the unit tests over every prefix of tricky texts.
#[cfg(any(test, fuzzing))]
pub mod fuzz_logic {
    use super::*;

    /// Analyzes arbitrary bytes and checks the fail-closed invariants:
    /// no panic; text not understood is `unknown`; a keyword-fallback class
    /// is never one of the weak classes; the combined class is the
    /// strictest of the statements'.
    pub fn analyze_arbitrary(data: &[u8]) {
        let path = vec!["public".to_owned()];
        let catalog = FunctionCatalog::builtin_only();
        let ctx = AnalyzeContext::new(&path, &catalog);
        let a = analyze_bytes(data, &ctx);
        check(&a);
        if let Ok(text) = std::str::from_utf8(data) {
            let cache = ProfileCache::new(4);
            let cached = cache.get_or_analyze(text, &ctx);
            assert_eq!(cached.combined.class, a.combined.class);
        }
    }

    fn check(a: &Analysis) {
        let mut strictest = None;
        for s in &a.statements {
            check_profile(&s.profile);
            strictest = strictest.max(Some(s.profile.class));
        }
        check_profile(&a.combined);
        if let Some(c) = strictest {
            assert!(a.combined.class >= c, "combined weaker than a statement");
        }
    }

    fn check_profile(p: &StatementProfile) {
        if p.has(Flag::Unparsed) || p.has(Flag::SplitMismatch) {
            assert_eq!(
                p.class,
                StatementClass::Unknown,
                "unparsed text must be unknown"
            );
        }
        if p.has(Flag::KeywordFallback) {
            assert!(
                p.class >= StatementClass::Ddl,
                "fallback assigned a weak class"
            );
        }
        if p.executes.is_some() {
            assert_eq!(
                p.class,
                StatementClass::Unknown,
                "EXECUTE before resolution must be unknown"
            );
        }
    }
}

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod lineage_tests;
#[cfg(test)]
mod tests;
