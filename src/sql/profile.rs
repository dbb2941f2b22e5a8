//! What the analyzer says about one statement: [`StatementProfile`] and its parts.
//!
//! Owns the vocabulary shared by the policy, the masker and the audit log:
//! [`StatementClass`] with its total order of strictness, schema-qualified
//! [`TableName`]s, column lineage ([`OutputColumn`], [`ColumnSource`]) and
//! [`Flag`]s. Everything here is plain data: serializable, comparable, and
//! free of any reference to the SQL text or the AST it came from.
//!
//! Invariant: merging profiles ([`StatementProfile::absorb`]) only ever makes
//! the result stricter and larger, never weaker or smaller, so "the profile of
//! a batch" can be built by folding its statements in any order.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// The kind of effect a statement has, ordered from least to most strict.
///
/// The order is the derive order below; `max` of two classes is the stricter one:
///
/// `tx < session < read < write < ddl < code < privilege < admin < unknown`
///
/// Why this order:
/// - `tx` only brackets other statements; alone it touches no data.
/// - `session` changes the caller's own session state (SET, LISTEN, …).
/// - `read` exposes data; `write` changes data.
/// - `ddl` changes the schema, which usually also destroys or rewrites data.
/// - `code` runs logic pgward cannot see (DO, CALL, user or volatile
///   functions). It is still checked by PostgreSQL's permissions of the
///   upstream role, so it sits below the classes that change those
///   permissions: allowing `code` is only sound for a least-privileged role.
/// - `privilege` changes who may do what (GRANT, roles, `search_path`, which
///   can shadow functions).
/// - `admin` acts outside the database's permission model: server files,
///   programs, other backends, server configuration.
/// - `unknown` could be anything, so it is the strictest (fail closed).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum StatementClass {
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, SET TRANSACTION.
    Tx,
    /// SET/SHOW/RESET of ordinary settings, LISTEN, DISCARD (not ALL), DEALLOCATE.
    Session,
    /// SELECT, VALUES, COPY TO STDOUT, EXPLAIN without ANALYZE.
    Read,
    /// INSERT, UPDATE, DELETE, MERGE, COPY FROM STDIN, FOR UPDATE, nextval, NOTIFY.
    Write,
    /// CREATE/ALTER/DROP of schema objects, TRUNCATE, COMMENT, SELECT INTO.
    Ddl,
    /// DO, CALL, CREATE FUNCTION/TRIGGER/RULE, user-defined or volatile functions.
    Code,
    /// GRANT, REVOKE, roles, SET ROLE, SET search_path, policies, ownership.
    Privilege,
    /// VACUUM, LOCK, ALTER SYSTEM, COPY PROGRAM/file, server-level functions.
    Admin,
    /// Not understood: denied unless a rule allows `unknown` explicitly.
    Unknown,
}

/// A schema-qualified relation name, as PostgreSQL would store it.
///
/// Unquoted identifiers are folded to lower case; quoted ones keep their case.
/// Serialized as the string `schema.name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    /// The schema, resolved from the search path when the text did not name one.
    pub schema: String,
    /// The relation (table, view, sequence, …) itself.
    pub name: String,
}

/// One column of one table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ColumnRef {
    /// The table the column belongs to.
    pub table: TableName,
    /// The column name, case-folded like any identifier.
    pub column: String,
}

/// Where (part of) a value comes from.
///
/// Serialized as `{"column": "schema.table.column"}` or `{"whole_row": "schema.table"}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ColumnSource {
    /// A named column of a table.
    Column(ColumnRef),
    /// Every column of a table: `t.*`, `SELECT t FROM t`, `row_to_json(t)`, or a
    /// column reference that pgward cannot pin down without the catalog.
    WholeRow(TableName),
}

/// The lineage of one output column of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputColumn {
    /// The name PostgreSQL would give the column (alias, column or function
    /// name), or `?column?` when PostgreSQL has none or pgward is unsure.
    /// For a wildcard: `*` when it is the columns of the tables in its
    /// sources (`*`, `t.*`, `TABLE t`), `?column?` when it is columns that
    /// pgward cannot name or place (a function in FROM, one side of a set
    /// operation that does not line up, the rest of an alias column list).
    pub name: String,
    /// True when this entry stands for columns that are not known without a
    /// catalog: it may be several columns of the result (or none).
    pub wildcard: bool,
    /// Every table column the value may derive from; empty for constants.
    pub sources: BTreeSet<ColumnSource>,
}

/// A yes/no fact about a statement that a rule or the session may care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// The text holds more than one statement.
    MultiStatement,
    /// A `FOR UPDATE/SHARE` locking clause.
    LockingClause,
    /// A `WITH` query holding INSERT/UPDATE/DELETE/MERGE.
    DataModifyingCte,
    /// A call to a function marked volatile, or one whose volatility is unknown.
    VolatileFunction,
    /// A call to a function that is neither in the catalog nor in the built-in list.
    UnknownFunction,
    /// A call to a function that is not built in (user or extension code).
    UserFunction,
    /// The text (or this statement) could not be parsed.
    Unparsed,
    /// The class was assigned from leading keywords only, never weaker than the truth.
    KeywordFallback,
    /// The statement changes `search_path`, so later name resolution changes.
    SearchPathChange,
    /// The statement changes the current role or session user.
    RoleChange,
    /// The statement changes how later text is lexed (`standard_conforming_strings`,
    /// a client encoding whose characters can hide ASCII quotes or backslashes).
    LexerChange,
    /// `SELECT … INTO` creates a table.
    SelectInto,
    /// EXPLAIN: without ANALYZE the inner statement is planned, not run.
    Explain,
    /// The splitter and the parser disagree about where statements end.
    SplitMismatch,
    /// The text held no statement at all (only blanks, comments or `;`).
    Empty,
}

/// An `EXECUTE name` whose class is only known once the session substitutes
/// the profile recorded at `PREPARE name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Execute {
    /// The prepared statement's name, case-folded.
    pub name: String,
    /// The class of everything around the EXECUTE itself (its parameters, an
    /// enclosing EXPLAIN ANALYZE or CREATE TABLE AS).
    pub base_class: StatementClass,
    /// Table columns the parameters read (`EXECUTE p((SELECT ssn FROM t))`):
    /// the prepared statement may output them, so once resolved every output
    /// column may derive from them. They are also in the profile's
    /// `predicate_columns` and `written_sources`.
    pub parameter_sources: BTreeSet<ColumnSource>,
}

/// A `PREPARE name AS …`: what the session must remember for later EXECUTEs.
#[derive(Debug, Clone, Serialize)]
pub struct Prepared {
    /// The prepared statement's name, case-folded.
    pub name: String,
    /// The profile of the prepared (inner) statement.
    #[serde(serialize_with = "serialize_arc")]
    pub profile: Arc<StatementProfile>,
}

/// Everything the analyzer knows about one statement (or, combined, a whole text).
#[derive(Debug, Clone, Serialize)]
pub struct StatementProfile {
    /// The strictest class of everything inside the statement.
    pub class: StatementClass,
    /// Relations whose rows the statement may read.
    pub tables_read: BTreeSet<TableName>,
    /// Relations whose rows or definition the statement changes (DML and DDL
    /// targets, TRUNCATE, COPY FROM, `SELECT … INTO`, tables locked by
    /// `FOR UPDATE`, which PostgreSQL also ties to UPDATE privilege).
    pub tables_written: BTreeSet<TableName>,
    /// Functions called, qualified as written (`pg_catalog.set_config`, `lower`).
    pub functions: BTreeSet<String>,
    /// Lineage of each output column, in output order (RETURNING for DML).
    pub columns: Vec<OutputColumn>,
    /// Columns whose values steer the result without (necessarily) being
    /// output, so that a result can reveal something about them: WHERE, JOIN
    /// ON/USING, GROUP BY, HAVING, ORDER BY, DISTINCT and DISTINCT ON, the
    /// operands of UNION (without ALL), INTERSECT and EXCEPT, window PARTITION
    /// BY/ORDER BY/frames, LIMIT/OFFSET/FETCH, CASE operands and WHEN
    /// conditions, aggregate FILTER, ORDER BY and WITHIN GROUP, arguments of
    /// functions in FROM (they decide how many rows there are), ON CONFLICT
    /// targets, MERGE conditions and EXECUTE parameters; and, wherever they
    /// occur (select list, RETURNING, VALUES, arguments), the operands of
    /// oracles, whose answer shows through an error, NULL-ness or a row count
    /// even when the output is masked: comparisons (`=`, LIKE, regex, IN,
    /// BETWEEN, `nullif`, `greatest`, `strpos`, …), casts to non-text types
    /// and parsers (`ssn::int`, `to_date`), divisors, set-returning calls and
    /// aggregates over DISTINCT. All at any depth (CTEs, subqueries, the WHERE
    /// of UPDATE and DELETE). A subquery in one of these places contributes
    /// its own output sources as well.
    pub predicate_columns: BTreeSet<ColumnSource>,
    /// Table columns whose values the statement may copy somewhere a later
    /// statement can read them back: into a table (INSERT … SELECT/VALUES,
    /// UPDATE … SET, ON CONFLICT DO UPDATE SET, MERGE, CREATE TABLE AS,
    /// SELECT INTO, CREATE VIEW and CREATE MATERIALIZED VIEW), into a file or
    /// program (COPY … TO a file or PROGRAM), under another name (every
    /// ALTER TABLE counts as the whole row of its table: a renamed column or
    /// table, a generated column or a detached partition escapes rules
    /// written for the old name), or through a call that may store its
    /// arguments (functions classed `write` or stricter, `set_config`, CALL,
    /// EXECUTE parameters).
    /// An expression whose sources cannot be pinned down contributes the whole
    /// row of every table it may read. `COPY … FROM` copies no read data.
    ///
    /// Only values count here; which rows are copied is steered by
    /// `predicate_columns`.
    pub written_sources: BTreeSet<ColumnSource>,
    /// Facts about the statement.
    pub flags: BTreeSet<Flag>,
    /// For `PREPARE name AS …`: the inner statement to remember.
    pub prepares: Option<Prepared>,
    /// For `EXECUTE name`: the class is `unknown` until resolved with
    /// [`StatementProfile::resolve_execute`].
    pub executes: Option<Execute>,
    /// For `SET search_path` to literal schemas: the new path, case-folded,
    /// for the session's later analyses. A change whose result pgward cannot
    /// know (`DEFAULT`, `RESET`, `set_config`) has [`Flag::SearchPathChange`]
    /// and `None` here: the session should then read the path back.
    pub search_path: Option<Vec<String>>,
    /// Why the text was not understood, when it was not.
    pub error: Option<String>,
}

fn serialize_arc<S: Serializer, T: Serialize>(v: &Arc<T>, s: S) -> Result<S::Ok, S::Error> {
    (**v).serialize(s)
}

// === impl StatementClass ===

impl StatementClass {
    /// Every class, least strict first.
    pub const ALL: [StatementClass; 9] = [
        StatementClass::Tx,
        StatementClass::Session,
        StatementClass::Read,
        StatementClass::Write,
        StatementClass::Ddl,
        StatementClass::Code,
        StatementClass::Privilege,
        StatementClass::Admin,
        StatementClass::Unknown,
    ];

    /// The lowercase name used in rules and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementClass::Tx => "tx",
            StatementClass::Session => "session",
            StatementClass::Read => "read",
            StatementClass::Write => "write",
            StatementClass::Ddl => "ddl",
            StatementClass::Code => "code",
            StatementClass::Privilege => "privilege",
            StatementClass::Admin => "admin",
            StatementClass::Unknown => "unknown",
        }
    }

    /// Parses the lowercase name; `None` for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for StatementClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl TableName ===

impl TableName {
    /// A name from its two parts, taken as already case-folded.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableName {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

impl Serialize for TableName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

// === impl ColumnRef ===

impl fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.table, self.column)
    }
}

// === impl ColumnSource ===

impl ColumnSource {
    /// The table this source belongs to.
    pub fn table(&self) -> &TableName {
        match self {
            ColumnSource::Column(c) => &c.table,
            ColumnSource::WholeRow(t) => t,
        }
    }
}

impl fmt::Display for ColumnSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnSource::Column(c) => c.fmt(f),
            ColumnSource::WholeRow(t) => write!(f, "{t}.*"),
        }
    }
}

impl Serialize for ColumnSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(1))?;
        match self {
            ColumnSource::Column(c) => map.serialize_entry("column", &c.to_string())?,
            ColumnSource::WholeRow(t) => map.serialize_entry("whole_row", &t.to_string())?,
        }
        map.end()
    }
}

// === impl Flag ===

impl Flag {
    /// The snake_case name used in JSON and in the text rendering.
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::MultiStatement => "multi_statement",
            Flag::LockingClause => "locking_clause",
            Flag::DataModifyingCte => "data_modifying_cte",
            Flag::VolatileFunction => "volatile_function",
            Flag::UnknownFunction => "unknown_function",
            Flag::UserFunction => "user_function",
            Flag::Unparsed => "unparsed",
            Flag::KeywordFallback => "keyword_fallback",
            Flag::SearchPathChange => "search_path_change",
            Flag::RoleChange => "role_change",
            Flag::LexerChange => "lexer_change",
            Flag::SelectInto => "select_into",
            Flag::Explain => "explain",
            Flag::SplitMismatch => "split_mismatch",
            Flag::Empty => "empty",
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl StatementProfile ===

impl StatementProfile {
    /// An empty profile of the given class.
    pub fn new(class: StatementClass) -> Self {
        StatementProfile {
            class,
            tables_read: BTreeSet::new(),
            tables_written: BTreeSet::new(),
            functions: BTreeSet::new(),
            columns: Vec::new(),
            predicate_columns: BTreeSet::new(),
            written_sources: BTreeSet::new(),
            flags: BTreeSet::new(),
            prepares: None,
            executes: None,
            search_path: None,
            error: None,
        }
    }

    /// The fail-closed profile of text that was not understood.
    pub fn unparsed(reason: impl Into<String>) -> Self {
        let mut p = StatementProfile::new(StatementClass::Unknown);
        p.flags.insert(Flag::Unparsed);
        p.error = Some(reason.into());
        p
    }

    /// Whether `flag` is set.
    pub fn has(&self, flag: Flag) -> bool {
        self.flags.contains(&flag)
    }

    /// Raises the class to at least `class`.
    pub fn raise(&mut self, class: StatementClass) {
        self.class = self.class.max(class);
    }

    /// Folds `other` into `self`: the stricter class, the union of tables,
    /// functions, predicates, written sources and flags, and `other`'s
    /// output columns appended.
    ///
    /// `prepares`/`executes` are not merged: they describe single statements
    /// and stay on the per-statement profiles.
    pub fn absorb(&mut self, other: &StatementProfile) {
        self.raise(other.class);
        self.tables_read.extend(other.tables_read.iter().cloned());
        self.tables_written
            .extend(other.tables_written.iter().cloned());
        self.functions.extend(other.functions.iter().cloned());
        self.columns.extend(other.columns.iter().cloned());
        self.predicate_columns
            .extend(other.predicate_columns.iter().cloned());
        self.written_sources
            .extend(other.written_sources.iter().cloned());
        self.flags.extend(other.flags.iter().copied());
        if self.error.is_none() {
            self.error.clone_from(&other.error);
        }
        if other.has(Flag::SearchPathChange) {
            // The last change wins, as it would on the server.
            self.search_path.clone_from(&other.search_path);
        }
    }

    /// The profile of an `EXECUTE`, once the session knows what it runs.
    ///
    /// `prepared` is the profile recorded for the prepared statement's name
    /// (the `profile` of [`Prepared`]); `None` means the name is unknown to
    /// the session, which stays `unknown`. A profile that is not an EXECUTE
    /// is returned unchanged.
    pub fn resolve_execute(&self, prepared: Option<&StatementProfile>) -> StatementProfile {
        let Some(exec) = &self.executes else {
            return self.clone();
        };
        let Some(prepared) = prepared else {
            return self.clone();
        };
        let mut out = self.clone();
        out.class = exec.base_class;
        out.executes = None;
        // The EXECUTE's own columns are those of the prepared statement,
        // any of which may be a parameter.
        out.columns.clear();
        out.absorb(prepared);
        for c in &mut out.columns {
            c.sources.extend(exec.parameter_sources.iter().cloned());
        }
        out
    }
}
