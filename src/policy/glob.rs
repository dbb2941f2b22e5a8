//! Wildcard patterns for names in rules, compiled once at load time.
//!
//! Patterns are deliberately small: `*` matches any run of characters
//! (including none), `?` exactly one character, everything else itself,
//! case-sensitively (PostgreSQL stores unquoted names folded to lower case,
//! and so does the analyzer). `[`, `]`, `{`, `}` and `\` are rejected rather
//! than taken literally, so that someone expecting character classes or
//! alternatives from another glob dialect gets an error instead of a pattern
//! that silently matches nothing.
//!
//! Qualified names are matched part by part (`schema` against the schema
//! glob, `table` against the table glob) instead of formatting
//! `schema.table` into a string: matching never allocates.

use std::fmt;

/// One compiled wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Glob {
    /// `*`: everything.
    Any,
    /// No wildcard at all.
    Exact(Box<str>),
    /// `abc*`.
    Prefix(Box<str>),
    /// `*abc`.
    Suffix(Box<str>),
    /// Anything else with wildcards: matched by backtracking on the last `*`.
    Wild(Box<str>),
}

/// `schema.table`, or `*` for every table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableGlob {
    text: Box<str>,
    schema: Glob,
    name: Glob,
}

/// `name` (any schema) or `schema.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FunctionGlob {
    text: Box<str>,
    schema: Option<Glob>,
    name: Glob,
}

/// `schema.table.column`; missing leading parts are `*` (`*.card_number`
/// is `*.*.card_number`, `people.ssn` is `*.people.ssn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnGlob {
    text: Box<str>,
    schema: Glob,
    table: Glob,
    column: Glob,
}

// === impl Glob ===

impl Glob {
    /// Compiles one pattern (no dots are special here).
    pub(crate) fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("empty pattern".to_owned());
        }
        if let Some(c) = pattern.chars().find(|c| "[]{}\\".contains(*c)) {
            return Err(format!(
                "`{c}` is not supported in patterns (only `*` and `?` are wildcards)"
            ));
        }
        let stars = pattern.matches('*').count();
        let has_q = pattern.contains('?');
        Ok(if pattern.chars().all(|c| c == '*') {
            Glob::Any
        } else if stars == 0 && !has_q {
            Glob::Exact(pattern.into())
        } else if stars == 1 && !has_q && pattern.ends_with('*') {
            Glob::Prefix(pattern.trim_end_matches('*').into())
        } else if stars == 1 && !has_q && pattern.starts_with('*') {
            Glob::Suffix(pattern.trim_start_matches('*').into())
        } else {
            Glob::Wild(pattern.into())
        })
    }

    /// Whether `text` matches the whole pattern.
    pub(crate) fn is_match(&self, text: &str) -> bool {
        match self {
            Glob::Any => true,
            Glob::Exact(p) => **p == *text,
            Glob::Prefix(p) => text.starts_with(&**p),
            Glob::Suffix(p) => text.ends_with(&**p),
            Glob::Wild(p) => wild_match(p.as_bytes(), text.as_bytes()),
        }
    }

    /// Whether the pattern matches every text.
    pub(crate) fn is_any(&self) -> bool {
        matches!(self, Glob::Any)
    }

    /// The one text it matches, when it has no wildcard.
    pub(crate) fn exact(&self) -> Option<&str> {
        match self {
            Glob::Exact(s) => Some(s),
            _ => None,
        }
    }
}

/// A 64-bit one-hot digest of a name (FNV-1a, folded to 6 bits), for
/// [`NameFilter`].
pub(crate) fn name_bit(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    1 << ((h ^ (h >> 32)) & 63)
}

/// A Bloom-style summary of names: one bit per name (all bits when any
/// pattern has a wildcard), so that most rules that cannot match are
/// rejected with two `AND`s before any pattern is compared.
///
/// Only ever used to *reject*: a set bit proves nothing, a missing bit
/// proves a name cannot match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct NameFilter {
    pub(crate) schemas: u64,
    pub(crate) names: u64,
}

impl NameFilter {
    /// The filter of a rule's table patterns.
    pub(crate) fn of_patterns(globs: &[TableGlob]) -> Self {
        let mut f = NameFilter::default();
        for g in globs {
            f.schemas |= g.schema.exact().map_or(u64::MAX, name_bit);
            f.names |= g.name.exact().map_or(u64::MAX, name_bit);
        }
        f
    }

    /// Adds one table of a statement.
    pub(crate) fn add(&mut self, schema: &str, name: &str) {
        self.schemas |= name_bit(schema);
        self.names |= name_bit(name);
    }

    /// Whether some table in `tables` might match one of these patterns.
    pub(crate) fn may_match_any(self, tables: NameFilter) -> bool {
        self.schemas & tables.schemas != 0 && self.names & tables.names != 0
    }

    /// Whether every table in `tables` might match one of these patterns.
    pub(crate) fn may_match_every(self, tables: NameFilter) -> bool {
        tables.schemas & !self.schemas == 0 && tables.names & !self.names == 0
    }
}

/// Length in bytes of the UTF-8 character starting with `lead`.
fn char_len(lead: u8) -> usize {
    match lead {
        0xf0.. => 4,
        0xe0.. => 3,
        0xc0.. => 2,
        _ => 1,
    }
}

/// Iterative wildcard matching with backtracking to the last `*` only:
/// linear in practice, never recursive. Both sides are valid UTF-8, so
/// literal bytes can be compared directly; `?` and the `*` resume point
/// always step over whole characters.
fn wild_match(p: &[u8], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    // (pattern index after the last `*`, text index it currently resumes at)
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi + 1, ti));
                pi += 1;
            }
            Some(b'?') => {
                ti += char_len(t[ti]);
                pi += 1;
            }
            Some(&c) if c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    let next = st + char_len(t[st]);
                    star = Some((sp, next));
                    pi = sp;
                    ti = next;
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

// === impl TableGlob ===

impl TableGlob {
    /// Compiles `schema.table` or `*`.
    pub(crate) fn new(pattern: &str) -> Result<TableGlob, String> {
        let (schema, name) = if pattern == "*" {
            ("*", "*")
        } else {
            match pattern.split_once('.') {
                Some((s, n)) if !n.contains('.') => (s, n),
                _ => {
                    return Err(format!(
                        "`{pattern}` is not a schema-qualified table pattern like \
                         `public.orders`, `public.*` or `*.orders`"
                    ));
                }
            }
        };
        Ok(TableGlob {
            text: pattern.into(),
            schema: Glob::new(schema)?,
            name: Glob::new(name)?,
        })
    }

    /// Whether the table `schema.name` matches.
    pub(crate) fn is_match(&self, schema: &str, name: &str) -> bool {
        self.schema.is_match(schema) && self.name.is_match(name)
    }

    /// The pattern as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

// === impl FunctionGlob ===

impl FunctionGlob {
    /// Compiles `name` or `schema.name`.
    pub(crate) fn new(pattern: &str) -> Result<FunctionGlob, String> {
        let (schema, name) = match pattern.split_once('.') {
            None => (None, pattern),
            Some((s, n)) if !n.contains('.') => (Some(Glob::new(s)?), n),
            Some(_) => {
                return Err(format!(
                    "`{pattern}` is not a function pattern like `lower` or `pg_catalog.*`"
                ));
            }
        };
        Ok(FunctionGlob {
            text: pattern.into(),
            schema,
            name: Glob::new(name)?,
        })
    }

    /// Whether a call of `called` (as the analyzer records it: `name`,
    /// `schema.name` or `db.schema.name`) matches.
    ///
    /// An unqualified call resolves through the session's `search_path`, so
    /// pgward cannot know its schema. `surely` says which way to fail
    /// closed: when `true` (a rule that lets the statement through) an
    /// unqualified call only matches a pattern whose schema is `*` or
    /// absent; when `false` (a deny rule) it matches whatever the pattern's
    /// schema is.
    pub(crate) fn is_match(&self, called: &str, surely: bool) -> bool {
        let (schema, name) = match called.rsplit_once('.') {
            Some((qual, name)) => (Some(qual.rsplit('.').next().unwrap_or(qual)), name),
            None => (None, called),
        };
        if !self.name.is_match(name) {
            return false;
        }
        match (&self.schema, schema) {
            (None, _) => true,
            (Some(g), Some(s)) => g.is_match(s),
            (Some(g), None) => g.is_any() || !surely,
        }
    }

    /// The pattern as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

// === impl ColumnGlob ===

impl ColumnGlob {
    /// Compiles `schema.table.column`, `table.column` or `column` (missing
    /// leading parts are `*`).
    pub(crate) fn new(pattern: &str) -> Result<ColumnGlob, String> {
        let parts: Vec<&str> = pattern.split('.').collect();
        let (schema, table, column) = match parts.as_slice() {
            [c] => ("*", "*", *c),
            [t, c] => ("*", *t, *c),
            [s, t, c] => (*s, *t, *c),
            _ => {
                return Err(format!(
                    "`{pattern}` is not a column pattern like `public.people.ssn` or `*.card_number`"
                ));
            }
        };
        Ok(ColumnGlob {
            text: pattern.into(),
            schema: Glob::new(schema)?,
            table: Glob::new(table)?,
            column: Glob::new(column)?,
        })
    }

    /// Whether the column `schema.table.column` matches.
    pub(crate) fn is_match(&self, schema: &str, table: &str, column: &str) -> bool {
        self.column.is_match(column) && self.table.is_match(table) && self.schema.is_match(schema)
    }

    /// The pattern as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for ColumnGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    #[test]
    fn wildcards() {
        assert!(g("*").is_match(""));
        assert!(g("orders").is_match("orders"));
        assert!(!g("orders").is_match("orders2"));
        assert!(g("orders*").is_match("orders_2024"));
        assert!(g("*_log").is_match("audit_log"));
        assert!(g("a*b*c").is_match("abc"));
        assert!(g("a*b*c").is_match("axxbyyc"));
        assert!(!g("a*b*c").is_match("axxbyy"));
        assert!(g("a?c").is_match("abc"));
        assert!(g("a?c").is_match("aéc"));
        assert!(!g("a?c").is_match("ac"));
        assert!(g("*é*").is_match("xéy"));
        assert!(g("agent-*-prod").is_match("agent-7-prod"));
        assert!(!g("Orders").is_match("orders"), "case-sensitive");
    }

    #[test]
    fn rejects_other_dialects() {
        assert!(Glob::new("[ab]").is_err());
        assert!(Glob::new("{a,b}").is_err());
        assert!(Glob::new("").is_err());
    }

    #[test]
    fn tables_match_part_by_part() {
        let t = TableGlob::new("public.orders*").unwrap();
        assert!(t.is_match("public", "orders"));
        assert!(t.is_match("public", "orders_archive"));
        assert!(!t.is_match("private", "orders"));
        assert!(TableGlob::new("*").unwrap().is_match("x", "y"));
        assert!(TableGlob::new("orders").is_err());
        assert!(TableGlob::new("a.b.c").is_err());
    }

    #[test]
    fn unqualified_calls_fail_closed_both_ways() {
        let f = FunctionGlob::new("pg_catalog.lower").unwrap();
        assert!(f.is_match("pg_catalog.lower", true));
        assert!(
            !f.is_match("lower", true),
            "a permissive rule cannot be sure"
        );
        assert!(f.is_match("lower", false), "a deny rule assumes the worst");
        assert!(f.is_match("mydb.pg_catalog.lower", true));
        let any = FunctionGlob::new("lower").unwrap();
        assert!(any.is_match("public.lower", true));
        assert!(any.is_match("lower", true));
        assert!(
            FunctionGlob::new("*.lower")
                .unwrap()
                .is_match("lower", true)
        );
    }

    #[test]
    fn columns_pad_with_wildcards() {
        let c = ColumnGlob::new("*.card_number").unwrap();
        assert!(c.is_match("public", "payments", "card_number"));
        let c = ColumnGlob::new("people.ssn").unwrap();
        assert!(c.is_match("hr", "people", "ssn"));
        assert!(!c.is_match("hr", "people", "email"));
        assert!(ColumnGlob::new("a.b.c.d").is_err());
    }

    #[test]
    fn name_filter_never_rejects_a_real_match() {
        let patterns = [
            "public.orders",
            "public.*",
            "*.people",
            "app.t?",
            "*",
            "hr.emp*",
        ];
        let tables = [
            ("public", "orders"),
            ("public", "people"),
            ("hr", "people"),
            ("hr", "employees"),
            ("app", "t1"),
            ("x", "y"),
        ];
        // Every pair of patterns against every pair of tables.
        for (i, a) in patterns.iter().enumerate() {
            for b in &patterns[i..] {
                let globs = [TableGlob::new(a).unwrap(), TableGlob::new(b).unwrap()];
                let filter = NameFilter::of_patterns(&globs);
                for (j, t1) in tables.iter().enumerate() {
                    for t2 in &tables[j..] {
                        let mut touched = NameFilter::default();
                        touched.add(t1.0, t1.1);
                        touched.add(t2.0, t2.1);
                        let hit = |t: &(&str, &str)| globs.iter().any(|g| g.is_match(t.0, t.1));
                        if hit(t1) && hit(t2) {
                            assert!(filter.may_match_every(touched), "{a} {b} {t1:?} {t2:?}");
                        }
                        if hit(t1) || hit(t2) {
                            assert!(filter.may_match_any(touched), "{a} {b} {t1:?} {t2:?}");
                        }
                    }
                }
            }
        }
        // And it does reject: other schemas, exact patterns.
        let f = NameFilter::of_patterns(&[TableGlob::new("tenant_1.*").unwrap()]);
        let mut touched = NameFilter::default();
        touched.add("public", "orders");
        assert!(!f.may_match_any(touched) || name_bit("tenant_1") == name_bit("public"));
    }
}
