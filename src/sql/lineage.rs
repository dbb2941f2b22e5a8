//! Name resolution and column lineage: the [`Walker`] and its scopes.
//!
//! Owns how a column reference in the AST becomes [`ColumnSource`]s: the
//! stack of FROM scopes (one per SELECT being walked, innermost last, so
//! correlated and LATERAL references resolve outward), the stack of CTE
//! frames, and the rules for relations whose columns are not known without
//! a catalog (base tables, `*` expansions).
//!
//! Also owns which parts of an expression steer its value without being it
//! (CASE conditions, FILTER, window and aggregate ordering, and the oracles
//! of [`super::oracle`]: predicate columns) and which calls may store their
//! arguments (written sources).
//!
//! # Security
//! Lineage feeds the masker, so it over-approximates: a bare column that
//! more than one relation could hold maps to every candidate, a reference
//! pgward cannot pin to a column maps to the whole row, and a column that a
//! base table in the inner scope may or may not have also resolves outward.
//! Only a `*` over tables is narrowed to a column by name; the columns of a
//! function or of misaligned set operations never are, and a column whose
//! name pgward cannot figure ([`UNNAMED`]) may be the one any name means.
//! It must never drop a source to look precise.

use std::collections::{BTreeSet, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArguments,
    HavingBound, Ident, ObjectName, ObjectNamePart, Query, TableAlias, Visit, Visitor,
    WindowFrameBound, WindowType,
};

use super::AnalyzeContext;
use super::class::{call_stores_arguments, config_arg};
use super::oracle;
use super::profile::{ColumnRef, ColumnSource, OutputColumn, StatementProfile, TableName};

/// A relation visible in a FROM scope.
#[derive(Debug, Clone)]
pub(crate) struct Rel {
    /// The name the query uses for it: its alias, else its own name.
    pub alias: String,
    /// For base tables: the table (also matched by `schema.table.col`).
    pub table: Option<TableName>,
    pub kind: RelKind,
}

/// What a relation's columns are.
#[derive(Debug, Clone)]
pub(crate) enum RelKind {
    /// A base table (or view): its columns are unknown without a catalog.
    /// `renamed` holds an alias column list (`t AS x(a, b)`), whose names
    /// map to unknown columns of the table.
    Table { renamed: Vec<String> },
    /// A subquery, CTE, VALUES list or function: its output columns.
    Derived(Vec<OutputColumn>),
}

/// The name of an output column whose real name pgward does not know (and
/// PostgreSQL's own for an expression it cannot name): a reference by any
/// name that matches no other column may mean it.
pub(crate) const UNNAMED: &str = "?column?";

/// The outcome of looking a column name up in one relation.
enum Lookup {
    /// The relation surely has the column (a derived relation's named column).
    Definite(BTreeSet<ColumnSource>),
    /// The relation may have it (base table, `*` expansion).
    Maybe(BTreeSet<ColumnSource>),
    /// The relation surely does not have it.
    No,
}

/// Walks one statement's AST, filling a profile's tables, predicates and flags.
pub(crate) struct Walker<'c, 'a> {
    pub ctx: &'c AnalyzeContext<'a>,
    pub profile: StatementProfile,
    /// FROM scopes, innermost last.
    pub scopes: Vec<Vec<Rel>>,
    /// CTE frames, innermost last: (name, output columns).
    pub ctes: Vec<Vec<(String, Vec<OutputColumn>)>>,
}

// === impl Rel ===

impl Rel {
    /// Every source a whole-row reference to this relation covers.
    pub fn whole_row(&self) -> BTreeSet<ColumnSource> {
        match (&self.kind, &self.table) {
            (RelKind::Table { .. }, Some(t)) => [ColumnSource::WholeRow(t.clone())].into(),
            (RelKind::Table { .. }, None) => BTreeSet::new(),
            (RelKind::Derived(cols), _) => cols
                .iter()
                .flat_map(|c| c.sources.iter().cloned())
                .collect(),
        }
    }

    /// The output columns `rel.*` expands to.
    pub fn star(&self) -> Vec<OutputColumn> {
        match &self.kind {
            RelKind::Table { .. } => vec![OutputColumn {
                name: "*".to_owned(),
                wildcard: true,
                sources: self.whole_row(),
            }],
            RelKind::Derived(cols) => cols.clone(),
        }
    }

    fn column(&self, name: &str) -> Lookup {
        match (&self.kind, &self.table) {
            (RelKind::Table { renamed }, Some(t)) => {
                if renamed.iter().any(|r| r == name) {
                    // Renamed positionally: which column it is needs the catalog.
                    Lookup::Definite(self.whole_row())
                } else {
                    Lookup::Maybe(
                        [ColumnSource::Column(ColumnRef {
                            table: t.clone(),
                            column: name.to_owned(),
                        })]
                        .into(),
                    )
                }
            }
            (RelKind::Table { .. }, None) => Lookup::No,
            (RelKind::Derived(cols), _) => {
                let named: Vec<&OutputColumn> = cols
                    .iter()
                    .filter(|c| !c.wildcard && c.name == name)
                    .collect();
                if !named.is_empty() {
                    return Lookup::Definite(
                        named
                            .iter()
                            .flat_map(|c| c.sources.iter().cloned())
                            .collect(),
                    );
                }
                let mut maybe = BTreeSet::new();
                let mut unsure = false;
                for c in cols.iter().filter(|c| c.name == UNNAMED) {
                    unsure = true;
                    maybe.extend(c.sources.iter().cloned());
                }
                // A `*` over tables: the column of that name, if they have it.
                for c in cols.iter().filter(|c| c.wildcard && c.name == "*") {
                    unsure = true;
                    for s in &c.sources {
                        maybe.insert(match s {
                            ColumnSource::WholeRow(t) => ColumnSource::Column(ColumnRef {
                                table: t.clone(),
                                column: name.to_owned(),
                            }),
                            other => other.clone(),
                        });
                    }
                }
                if unsure {
                    Lookup::Maybe(maybe)
                } else {
                    Lookup::No
                }
            }
        }
    }
}

// === impl Walker ===

impl<'c, 'a> Walker<'c, 'a> {
    pub fn new(ctx: &'c AnalyzeContext<'a>, profile: StatementProfile) -> Self {
        Walker {
            ctx,
            profile,
            scopes: Vec::new(),
            ctes: Vec::new(),
        }
    }

    /// A relation name resolved against the search path.
    pub fn table_name(&self, name: &ObjectName) -> Option<TableName> {
        let parts = object_parts(name);
        match parts.as_slice() {
            [] => None,
            [n] => Some(TableName::new(self.default_schema(n), n.clone())),
            [.., s, n] => Some(TableName::new(s.clone(), n.clone())),
        }
    }

    /// The schema an unqualified relation resolves to.
    ///
    /// PostgreSQL searches `pg_catalog` first; every system catalog and
    /// view is named `pg_*`, so such names go there. Otherwise the first
    /// schema of the path (`$user` must be substituted by the session).
    pub fn default_schema(&self, name: &str) -> String {
        let explicit_catalog = self.ctx.search_path.iter().any(|s| s == "pg_catalog");
        if name.starts_with("pg_") && !explicit_catalog {
            return "pg_catalog".to_owned();
        }
        self.ctx
            .search_path
            .iter()
            .find(|s| s.as_str() != "$user" && !s.is_empty())
            .cloned()
            .unwrap_or_else(|| "public".to_owned())
    }

    /// The output columns of a CTE visible under `name`, innermost first.
    pub fn cte(&self, name: &str) -> Option<Vec<OutputColumn>> {
        self.ctes.iter().rev().find_map(|frame| {
            frame
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, c)| c.clone())
        })
    }

    /// Adds a relation to the innermost scope.
    pub fn add_rel(&mut self, rel: Rel) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.push(rel);
        } else {
            self.scopes.push(vec![rel]);
        }
    }

    /// How many relations the innermost scope holds, for [`Walker::rels_since`].
    pub fn scope_len(&self) -> usize {
        self.scopes.last().map_or(0, Vec::len)
    }

    /// The relations added to the innermost scope since it held `before`.
    pub fn rels_since(&self, before: usize) -> &[Rel] {
        self.scopes
            .last()
            .map(|s| &s[before.min(s.len())..])
            .unwrap_or_default()
    }

    /// The relation named `qualifier` (`alias`, `table`, `schema.table`), innermost first.
    fn find_rel(&self, qualifier: &[String]) -> Option<&Rel> {
        for scope in self.scopes.iter().rev() {
            for rel in scope.iter().rev() {
                let hit = match qualifier {
                    [a] => rel.alias == *a,
                    [.., s, t] => rel
                        .table
                        .as_ref()
                        .is_some_and(|tn| tn.schema == *s && tn.name == *t),
                    [] => false,
                };
                if hit {
                    return Some(rel);
                }
            }
        }
        None
    }

    /// The sources a bare column name (or whole-row alias) may refer to.
    pub fn resolve_bare(&self, name: &str) -> BTreeSet<ColumnSource> {
        let mut out = BTreeSet::new();
        for scope in self.scopes.iter().rev() {
            let mut definite = false;
            for rel in scope {
                if rel.alias == name {
                    // `SELECT u FROM users u`: a whole-row reference (unless
                    // the table has a column `u`, which is covered too).
                    out.extend(rel.whole_row());
                    definite = true;
                }
                match rel.column(name) {
                    Lookup::Definite(s) => {
                        out.extend(s);
                        definite = true;
                    }
                    Lookup::Maybe(s) => out.extend(s),
                    Lookup::No => {}
                }
            }
            if definite {
                break;
            }
        }
        out
    }

    /// The sources of a qualified reference `q.col` or `a.b.c`.
    pub fn resolve_compound(&self, parts: &[String]) -> BTreeSet<ColumnSource> {
        for k in (1..parts.len()).rev() {
            if let Some(rel) = self.find_rel(&parts[..k]) {
                return match rel.column(&parts[k]) {
                    Lookup::Definite(s) | Lookup::Maybe(s) => s,
                    // A derived relation without that column: the query is
                    // wrong, or it is a field of a composite; be generous.
                    Lookup::No => rel.whole_row(),
                };
            }
        }
        // No relation of that name: PostgreSQL would reject it unless it is
        // a name pgward does not model (`old.x`/`new.x` of a RETURNING list
        // elsewhere, a composite's field): anything in scope, and the column
        // the first part may name.
        let mut out = self.everything_in_scope();
        if let Some(p) = parts.first() {
            out.extend(self.resolve_bare(p));
        }
        out
    }

    /// The whole-row sources of the relation named by `name` (`t.*`).
    pub fn resolve_star(&self, name: &ObjectName) -> Vec<OutputColumn> {
        let parts = object_parts(name);
        match self.find_rel(&parts) {
            Some(rel) => rel.star(),
            None => {
                // Not a relation in scope: maybe a composite column `c.*`.
                let sources = parts
                    .first()
                    .map(|p| self.resolve_bare(p))
                    .unwrap_or_default();
                vec![unsure_columns(sources)]
            }
        }
    }

    /// The sources of every column reference in `node` (any AST node);
    /// subqueries inside it are walked with the current scopes.
    ///
    /// Parts of `node` that steer a value without being it (CASE
    /// conditions, FILTER, window and aggregate ordering) or that it
    /// reveals otherwise (comparisons, casts that may fail, divisors,
    /// set-returning calls: [`super::oracle`]) are also recorded as
    /// predicate columns, and the arguments of calls that may store them
    /// as written sources.
    pub fn sources<V: Visit>(&mut self, node: &V) -> BTreeSet<ColumnSource> {
        let mut collector = Collector {
            walker: self,
            depth: 0,
            out: BTreeSet::new(),
            steers: HashSet::new(),
            stored: HashSet::new(),
            steering: 0,
            storing: 0,
        };
        let _ = node.visit(&mut collector);
        collector.out
    }

    /// Like [`Walker::sources`], recording the result as predicate columns.
    pub fn predicate<V: Visit>(&mut self, node: &V) {
        let s = self.sources(node);
        self.profile.predicate_columns.extend(s);
    }

    /// Like [`Walker::sources`], recording the result as written sources.
    pub fn copied<V: Visit>(&mut self, node: &V) -> BTreeSet<ColumnSource> {
        let s = self.sources(node);
        self.profile.written_sources.extend(s.iter().cloned());
        s
    }

    /// Every source of every relation in scope: what a reference that
    /// cannot be pinned down may read.
    fn everything_in_scope(&self) -> BTreeSet<ColumnSource> {
        self.scopes
            .iter()
            .flatten()
            .flat_map(Rel::whole_row)
            .collect()
    }
}

/// Collects column sources of an expression tree, walking nested queries
/// through the walker (so they get their own scopes) and skipping their insides.
struct Collector<'w, 'c, 'a> {
    walker: &'w mut Walker<'c, 'a>,
    depth: usize,
    out: BTreeSet<ColumnSource>,
    /// Expressions (by address in the tree being visited) whose sources
    /// steer the value (a CASE condition): also predicate columns.
    steers: HashSet<*const Expr>,
    /// Expressions whose sources a call may store: also written sources.
    stored: HashSet<*const Expr>,
    /// How many entered expressions of each kind enclose the current node.
    steering: usize,
    storing: usize,
}

impl Collector<'_, '_, '_> {
    fn add(&mut self, s: BTreeSet<ColumnSource>) {
        if self.steering > 0 {
            self.walker
                .profile
                .predicate_columns
                .extend(s.iter().cloned());
        }
        if self.storing > 0 {
            self.walker
                .profile
                .written_sources
                .extend(s.iter().cloned());
        }
        self.out.extend(s);
    }

    /// Adds every source of `cols`.
    fn add_columns(&mut self, cols: Vec<OutputColumn>) {
        self.add(cols.into_iter().flat_map(|c| c.sources).collect());
    }

    fn steers(&mut self, e: &Expr) {
        self.steers.insert(e);
    }

    /// Marks `part` of the expression being entered, `current`, as
    /// revealed by an oracle ([`oracle::revealed_parts`]): a steering part.
    fn reveals(&mut self, part: &Expr, current: &Expr) {
        if std::ptr::eq(part, current) {
            // Entered right away: this node was already looked up.
            if self.steers.insert(current) {
                self.steering += 1;
            }
        } else {
            self.steers(part);
        }
    }

    /// Marks the parts of a call that steer its value, and the whole call
    /// when it may store its arguments.
    fn mark_call(&mut self, e: &Expr, f: &Function) {
        if let Some(filter) = &f.filter {
            self.steers(filter);
        }
        for o in &f.within_group {
            self.steers(&o.expr);
        }
        if let FunctionArguments::List(list) = &f.args {
            for clause in &list.clauses {
                match clause {
                    FunctionArgumentClause::OrderBy(items) => {
                        for o in items {
                            self.steers(&o.expr);
                        }
                    }
                    FunctionArgumentClause::Limit(x)
                    | FunctionArgumentClause::Where(x)
                    | FunctionArgumentClause::Having(HavingBound(_, x)) => self.steers(x),
                    _ => {}
                }
            }
        }
        if let Some(WindowType::WindowSpec(spec)) = &f.over {
            for p in &spec.partition_by {
                self.steers(p);
            }
            for o in &spec.order_by {
                self.steers(&o.expr);
            }
            if let Some(frame) = &spec.window_frame {
                for bound in std::iter::once(&frame.start_bound).chain(&frame.end_bound) {
                    if let WindowFrameBound::Preceding(Some(x))
                    | WindowFrameBound::Following(Some(x)) = bound
                    {
                        self.steers(x);
                    }
                }
            }
        }
        if call_stores_arguments(self.walker.ctx, &f.name, config_arg(&f.args)) {
            // Entered right away: this node was already looked up.
            if self.stored.insert(e) {
                self.storing += 1;
            }
        }
    }
}

impl Visitor for Collector<'_, '_, '_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if self.depth == 0 {
            let cols = self.walker.query(query);
            self.add_columns(cols);
        }
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        let here: *const Expr = expr;
        if self.steers.contains(&here) {
            self.steering += 1;
        }
        if self.stored.contains(&here) {
            self.storing += 1;
        }
        // Before the `t.*` arguments below are added: they may be revealed too.
        oracle::revealed_parts(expr, |part| self.reveals(part, expr));
        match expr {
            Expr::Identifier(id) => {
                let s = self.walker.resolve_bare(&fold(id));
                self.add(s);
            }
            Expr::CompoundIdentifier(ids) => {
                let parts: Vec<String> = ids.iter().map(fold).collect();
                let s = self.walker.resolve_compound(&parts);
                self.add(s);
            }
            Expr::QualifiedWildcard(name, _) => {
                let cols = self.walker.resolve_star(name);
                self.add_columns(cols);
            }
            Expr::Case {
                operand,
                conditions,
                ..
            } => {
                // `CASE WHEN ssn LIKE '1%' THEN 1 END` reveals ssn.
                if let Some(o) = operand {
                    self.steers(o);
                }
                for c in conditions {
                    self.steers(&c.condition);
                }
            }
            Expr::Function(f) => {
                self.mark_call(expr, f);
                // `count(t.*)`, `row_to_json(t.*)`: not visited as expressions.
                if let FunctionArguments::List(list) = &f.args {
                    for arg in &list.args {
                        let a = match arg {
                            FunctionArg::Named { arg, .. }
                            | FunctionArg::ExprNamed { arg, .. }
                            | FunctionArg::Unnamed(arg) => arg,
                        };
                        if let FunctionArgExpr::QualifiedWildcard(name) = a {
                            let cols = self.walker.resolve_star(name);
                            self.add_columns(cols);
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        let here: *const Expr = expr;
        if self.steers.remove(&here) {
            self.steering = self.steering.saturating_sub(1);
        }
        if self.stored.remove(&here) {
            self.storing = self.storing.saturating_sub(1);
        }
        ControlFlow::Continue(())
    }
}

/// An identifier as PostgreSQL stores it: unquoted ones fold to lower case.
pub(crate) fn fold(id: &Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_lowercase()
    }
}

/// The folded parts of an object name.
pub(crate) fn object_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(id) => fold(id),
            ObjectNamePart::Function(f) => fold(&f.name),
        })
        .collect()
}

/// A wildcard entry for columns pgward cannot name or place, each of which
/// may derive from any of `sources`. Unlike a `*` entry (a relation's own
/// columns), it is never narrowed to one column of a table.
pub(crate) fn unsure_columns(sources: BTreeSet<ColumnSource>) -> OutputColumn {
    OutputColumn {
        name: UNNAMED.to_owned(),
        wildcard: true,
        sources,
    }
}

/// Applies an alias's column list (`AS x(a, b)`) to derived output columns.
pub(crate) fn apply_alias_columns(
    cols: Vec<OutputColumn>,
    alias: Option<&TableAlias>,
) -> Vec<OutputColumn> {
    let Some(alias) = alias else { return cols };
    if alias.columns.is_empty() {
        return cols;
    }
    let names: Vec<String> = alias.columns.iter().map(|c| fold(&c.name)).collect();
    let first_wildcard = cols.iter().position(|c| c.wildcard).unwrap_or(cols.len());
    if first_wildcard < names.len() {
        // Positions are unknown: every alias column may be any source, and
        // so may the columns after them.
        let all: BTreeSet<ColumnSource> = cols
            .iter()
            .flat_map(|c| c.sources.iter().cloned())
            .collect();
        let mut out: Vec<OutputColumn> = names
            .into_iter()
            .map(|name| OutputColumn {
                name,
                wildcard: false,
                sources: all.clone(),
            })
            .collect();
        out.push(unsure_columns(all));
        return out;
    }
    let mut cols = cols;
    for (c, n) in cols.iter_mut().zip(names) {
        c.name = n;
    }
    cols
}
