//! Queries: WITH, set operations, SELECT, FROM items, projections.
//!
//! Owns the walk of [`Query`] trees: which relations a query reads, which
//! output columns it produces and what each derives from, and which columns
//! its clauses filter, join, group or sort on.
//!
//! Invariant: every FROM item adds a relation to the current scope (even one
//! the walker does not understand, as a derived relation over whatever it
//! references), so no reference silently resolves to nothing.

use std::collections::BTreeSet;

use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, Join, JoinConstraint, JoinOperator, LockClause, ObjectName,
    OrderBy, OrderByKind, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr,
    SetOperator, SetQuantifier, TableFactor, TableWithJoins, Value,
};

use super::catalog::ConfigName;
use super::class::{call_stores_arguments, first_string_arg};
use super::lineage::{
    Rel, RelKind, UNNAMED, Walker, apply_alias_columns, fold, object_parts, unsure_columns,
};
use super::profile::{ColumnSource, OutputColumn, TableName};

// === impl Walker (queries) ===

impl Walker<'_, '_> {
    /// Walks a query; returns its output columns.
    pub fn query(&mut self, q: &Query) -> Vec<OutputColumn> {
        let pushed = match &q.with {
            Some(with) => {
                self.ctes.push(Vec::new());
                for cte in &with.cte_tables {
                    let name = fold(&cte.alias.name);
                    if with.recursive {
                        // The recursive term refers to the CTE itself: give it
                        // the anchor's columns first.
                        let anchor = match cte.query.body.as_ref() {
                            SetExpr::SetOperation { left, .. } => self.set_expr(left, None, &[]),
                            _ => Vec::new(),
                        };
                        let anchor = apply_alias_columns(anchor, Some(&cte.alias));
                        if let Some(frame) = self.ctes.last_mut() {
                            frame.push((name.clone(), anchor));
                        }
                    }
                    let cols = self.query(&cte.query);
                    let cols = apply_alias_columns(cols, Some(&cte.alias));
                    if let Some(frame) = self.ctes.last_mut() {
                        frame.push((name, cols));
                    }
                }
                true
            }
            None => false,
        };
        let cols = self.set_expr(&q.body, q.order_by.as_ref(), &q.locks);
        // `LIMIT (SELECT count(*) FROM t WHERE …)` decides how many rows show.
        self.predicate(&q.limit_clause);
        self.predicate(&q.fetch);
        if pushed {
            self.ctes.pop();
        }
        cols
    }

    /// Walks a query body. `order_by` and `locks` belong to the enclosing
    /// query but refer to this body's FROM scope when it is a plain SELECT.
    pub fn set_expr(
        &mut self,
        e: &SetExpr,
        order_by: Option<&OrderBy>,
        locks: &[LockClause],
    ) -> Vec<OutputColumn> {
        match e {
            SetExpr::Select(s) => self.select(s, order_by, locks),
            SetExpr::Query(q) => {
                let cols = self.query(q);
                self.order_by_outputs(order_by, &cols);
                cols
            }
            SetExpr::SetOperation {
                op,
                set_quantifier,
                left,
                right,
            } => {
                let l = self.set_expr(left, None, &[]);
                let r = self.set_expr(right, None, &[]);
                // Only UNION ALL keeps rows without comparing them: a
                // deduplicating UNION, INTERSECT and EXCEPT tell whether a
                // value on one side equals one on the other.
                let compares = *op != SetOperator::Union
                    || !matches!(
                        set_quantifier,
                        SetQuantifier::All | SetQuantifier::AllByName
                    );
                if compares {
                    for c in l.iter().chain(&r) {
                        self.profile
                            .predicate_columns
                            .extend(c.sources.iter().cloned());
                    }
                }
                let cols = merge_positional(l, r);
                self.order_by_outputs(order_by, &cols);
                cols
            }
            SetExpr::Values(values) => {
                let mut cols: Vec<OutputColumn> = Vec::new();
                for row in &values.rows {
                    for (i, expr) in row.iter().enumerate() {
                        let s = self.sources(expr);
                        if cols.len() <= i {
                            cols.push(OutputColumn {
                                name: format!("column{}", i + 1),
                                wildcard: false,
                                sources: BTreeSet::new(),
                            });
                        }
                        if let Some(c) = cols.get_mut(i) {
                            c.sources.extend(s);
                        }
                    }
                }
                self.order_by_outputs(order_by, &cols);
                cols
            }
            SetExpr::Insert(st)
            | SetExpr::Update(st)
            | SetExpr::Delete(st)
            | SetExpr::Merge(st) => self.dml(st),
            SetExpr::Table(t) => {
                let Some(name) = &t.table_name else {
                    return Vec::new();
                };
                let lname = name.to_lowercase();
                if t.schema_name.is_none()
                    && let Some(cols) = self.cte(&lname)
                {
                    return cols;
                }
                let table = match &t.schema_name {
                    Some(s) => TableName::new(s.to_lowercase(), lname),
                    None => TableName::new(self.default_schema(&lname), lname),
                };
                self.profile.tables_read.insert(table.clone());
                vec![OutputColumn {
                    name: "*".to_owned(),
                    wildcard: true,
                    sources: [ColumnSource::WholeRow(table)].into(),
                }]
            }
        }
    }

    /// Walks a SELECT in a new scope; returns its output columns.
    fn select(
        &mut self,
        s: &Select,
        order_by: Option<&OrderBy>,
        locks: &[LockClause],
    ) -> Vec<OutputColumn> {
        self.scopes.push(Vec::new());
        let read_before = self.profile.tables_read.clone();
        for twj in &s.from {
            self.table_with_joins(twj);
        }
        if let Some(w) = &s.selection {
            self.predicate(w);
        }
        if let Some(h) = &s.having {
            self.predicate(h);
        }
        if let Some(Distinct::On(exprs)) = &s.distinct {
            self.predicate(exprs);
        }
        let distinct = matches!(s.distinct, Some(Distinct::Distinct));
        self.predicate(&s.named_window);
        self.predicate(&s.prewhere);
        self.predicate(&s.qualify);
        self.predicate(&s.connect_by);
        self.predicate(&s.cluster_by);
        self.predicate(&s.distribute_by);
        self.predicate(&s.sort_by);

        let cols = self.projection(&s.projection);
        if distinct {
            // Deduplication compares the values: the row count reveals
            // which are equal even when the values themselves are masked.
            for c in &cols {
                self.profile
                    .predicate_columns
                    .extend(c.sources.iter().cloned());
            }
        }

        match &s.group_by {
            GroupByExpr::Expressions(exprs, _) => {
                for e in exprs {
                    self.output_aware_predicate(e, &cols);
                }
            }
            GroupByExpr::All(_) => {
                for c in &cols {
                    self.profile
                        .predicate_columns
                        .extend(c.sources.iter().cloned());
                }
            }
        }
        if let Some(ob) = order_by {
            match &ob.kind {
                OrderByKind::Expressions(exprs) => {
                    for e in exprs {
                        self.output_aware_predicate(&e.expr, &cols);
                    }
                }
                OrderByKind::All(_) => {
                    for c in &cols {
                        self.profile
                            .predicate_columns
                            .extend(c.sources.iter().cloned());
                    }
                }
            }
        }
        if let Some(into) = &s.into {
            for target in &into.targets {
                let name = match target {
                    Expr::Identifier(id) => {
                        Some(sqlparser::ast::ObjectName::from(vec![id.clone()]))
                    }
                    Expr::CompoundIdentifier(ids) => {
                        Some(sqlparser::ast::ObjectName::from(ids.clone()))
                    }
                    _ => None,
                };
                if let Some(t) = name.and_then(|n| self.table_name(&n)) {
                    self.profile.tables_written.insert(t);
                }
            }
        }
        if !locks.is_empty() {
            // FOR UPDATE/SHARE needs UPDATE privilege on the locked tables and
            // reaches into subqueries and views: count every table this
            // SELECT reads as locked (written), unless OF names base tables.
            let named: Vec<TableName> = locks
                .iter()
                .filter_map(|l| l.of.as_ref())
                .filter_map(|n| {
                    let parts = object_parts(n);
                    self.scopes.last().and_then(|scope| {
                        scope
                            .iter()
                            .find(|r| parts.last().is_some_and(|p| *p == r.alias))
                            .and_then(|r| r.table.clone())
                    })
                })
                .collect();
            let all_named = locks.iter().all(|l| l.of.is_some()) && !named.is_empty();
            if all_named {
                self.profile.tables_written.extend(named);
            } else {
                let locked: Vec<TableName> = self
                    .profile
                    .tables_read
                    .difference(&read_before)
                    .cloned()
                    .collect();
                self.profile.tables_written.extend(locked);
                if let Some(scope) = self.scopes.last() {
                    let tables: Vec<TableName> =
                        scope.iter().filter_map(|r| r.table.clone()).collect();
                    self.profile.tables_written.extend(tables);
                }
            }
        }
        self.scopes.pop();
        cols
    }

    /// Records a GROUP BY / ORDER BY item, which may name an output column
    /// (by alias or position) instead of an input column.
    fn output_aware_predicate(&mut self, e: &Expr, cols: &[OutputColumn]) {
        match e {
            Expr::Identifier(id) => {
                let n = fold(id);
                for c in cols.iter().filter(|c| c.name == n) {
                    self.profile
                        .predicate_columns
                        .extend(c.sources.iter().cloned());
                }
            }
            Expr::Value(v) => {
                if let Value::Number(n, _) = &v.value
                    && let Ok(i) = n.parse::<usize>()
                    && let Some(c) = i.checked_sub(1).and_then(|i| cols.get(i))
                {
                    self.profile
                        .predicate_columns
                        .extend(c.sources.iter().cloned());
                }
            }
            _ => {}
        }
        self.predicate(e);
    }

    /// ORDER BY of a set operation or VALUES: names and positions of outputs.
    fn order_by_outputs(&mut self, order_by: Option<&OrderBy>, cols: &[OutputColumn]) {
        let Some(ob) = order_by else { return };
        if let OrderByKind::Expressions(exprs) = &ob.kind {
            for e in exprs {
                self.output_aware_predicate(&e.expr, cols);
            }
        } else {
            for c in cols {
                self.profile
                    .predicate_columns
                    .extend(c.sources.iter().cloned());
            }
        }
    }

    /// The output columns of a select list (or RETURNING list).
    pub fn projection(&mut self, items: &[SelectItem]) -> Vec<OutputColumn> {
        let mut cols = Vec::new();
        for item in items {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let sources = self.sources(e);
                    cols.push(OutputColumn {
                        name: column_name(e),
                        wildcard: false,
                        sources,
                    });
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let sources = self.sources(expr);
                    cols.push(OutputColumn {
                        name: fold(alias),
                        wildcard: false,
                        sources,
                    });
                }
                SelectItem::ExprWithAliases { expr, aliases } => {
                    let sources = self.sources(expr);
                    for a in aliases {
                        cols.push(OutputColumn {
                            name: fold(a),
                            wildcard: false,
                            sources: sources.clone(),
                        });
                    }
                }
                SelectItem::Wildcard(_) => {
                    let rels: Vec<Rel> = self.scopes.last().cloned().unwrap_or_default();
                    for rel in &rels {
                        cols.extend(rel.star());
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => match kind {
                    SelectItemQualifiedWildcardKind::ObjectName(name) => {
                        cols.extend(self.resolve_star(name))
                    }
                    SelectItemQualifiedWildcardKind::Expr(e) => {
                        // `(composite).*`: fields pgward cannot name.
                        let sources = self.sources(e);
                        cols.push(unsure_columns(sources));
                    }
                },
            }
        }
        cols
    }

    /// Adds the relations of a FROM item and its joins to the current scope.
    pub fn table_with_joins(&mut self, twj: &TableWithJoins) {
        self.table_factor(&twj.relation);
        self.joins(&twj.joins);
    }

    /// Adds joined relations to the current scope; their conditions are predicates.
    pub fn joins(&mut self, joins: &[Join]) {
        for join in joins {
            self.table_factor(&join.relation);
            let constraint = match &join.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::CrossJoin(c)
                | JoinOperator::Semi(c)
                | JoinOperator::LeftSemi(c)
                | JoinOperator::RightSemi(c)
                | JoinOperator::Anti(c)
                | JoinOperator::LeftAnti(c)
                | JoinOperator::RightAnti(c)
                | JoinOperator::StraightJoin(c) => Some(c),
                JoinOperator::AsOf {
                    match_condition,
                    constraint,
                } => {
                    self.predicate(match_condition);
                    Some(constraint)
                }
                _ => None,
            };
            match constraint {
                Some(JoinConstraint::On(e)) => self.predicate(e),
                Some(JoinConstraint::Using(names)) => {
                    for n in names {
                        if let Some(col) = object_parts(n).last() {
                            let s = self.resolve_bare(col);
                            self.profile.predicate_columns.extend(s);
                        }
                    }
                }
                Some(JoinConstraint::Natural) => {
                    // Joins on every common column: which ones needs the catalog.
                    let rels: Vec<Rel> = self.scopes.last().cloned().unwrap_or_default();
                    for rel in rels.iter().rev().take(2) {
                        self.profile.predicate_columns.extend(rel.whole_row());
                    }
                }
                Some(JoinConstraint::None) | None => {}
            }
        }
    }

    /// Adds one FROM item to the current scope.
    pub fn table_factor(&mut self, f: &TableFactor) {
        match f {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                if let Some(args) = args {
                    // `FROM generate_series(1, 10)`: a function, not a table.
                    let sources = self.sources(args);
                    self.stored_by_call(name, first_string_arg(&args.args), &sources);
                    let fname = object_parts(name).last().cloned().unwrap_or_default();
                    self.add_derived(fname, sources, alias.as_ref());
                    return;
                }
                // sqlparser reads `FROM ONLY t` as table `only` aliased `t`;
                // ONLY is reserved in PostgreSQL, so unquoted it is the keyword.
                let only_fix;
                let (name, alias) = match (name.0.as_slice(), alias) {
                    ([sqlparser::ast::ObjectNamePart::Identifier(id)], Some(a))
                        if id.quote_style.is_none()
                            && id.value.eq_ignore_ascii_case("only")
                            && a.columns.is_empty() =>
                    {
                        only_fix = sqlparser::ast::ObjectName::from(vec![a.name.clone()]);
                        (&only_fix, &None)
                    }
                    _ => (name, alias),
                };
                let parts = object_parts(name);
                if let [single] = parts.as_slice()
                    && let Some(cols) = self.cte(single)
                {
                    let cols = apply_alias_columns(cols, alias.as_ref());
                    let alias_name = alias
                        .as_ref()
                        .map(|a| fold(&a.name))
                        .unwrap_or_else(|| single.clone());
                    self.add_rel(Rel {
                        alias: alias_name,
                        table: None,
                        kind: RelKind::Derived(cols),
                    });
                    return;
                }
                let Some(table) = self.table_name(name) else {
                    return;
                };
                self.profile.tables_read.insert(table.clone());
                let alias_name = alias
                    .as_ref()
                    .map(|a| fold(&a.name))
                    .unwrap_or_else(|| table.name.clone());
                let renamed = alias
                    .as_ref()
                    .map(|a| a.columns.iter().map(|c| fold(&c.name)).collect())
                    .unwrap_or_default();
                self.add_rel(Rel {
                    alias: alias_name,
                    table: Some(table),
                    kind: RelKind::Table { renamed },
                });
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                ..
            } => {
                // A non-LATERAL subquery cannot see its siblings in FROM.
                let hidden = if *lateral { None } else { self.scopes.pop() };
                if hidden.is_some() {
                    self.scopes.push(Vec::new());
                }
                let cols = self.query(subquery);
                if let Some(h) = hidden {
                    self.scopes.pop();
                    self.scopes.push(h);
                }
                let cols = apply_alias_columns(cols, alias.as_ref());
                let alias_name = alias.as_ref().map(|a| fold(&a.name)).unwrap_or_default();
                self.add_rel(Rel {
                    alias: alias_name,
                    table: None,
                    kind: RelKind::Derived(cols),
                });
            }
            TableFactor::Function {
                name, args, alias, ..
            } => {
                let sources = self.sources(args);
                self.stored_by_call(name, first_string_arg(args), &sources);
                let fname = object_parts(name).last().cloned().unwrap_or_default();
                self.add_derived(fname, sources, alias.as_ref());
            }
            TableFactor::TableFunction { expr, alias } => {
                let sources = self.sources(expr);
                let fname = match expr {
                    Expr::Function(func) => {
                        object_parts(&func.name).last().cloned().unwrap_or_default()
                    }
                    _ => String::new(),
                };
                self.add_derived(fname, sources, alias.as_ref());
            }
            TableFactor::UNNEST {
                alias, array_exprs, ..
            } => {
                let sources = self.sources(array_exprs);
                self.add_derived("unnest".to_owned(), sources, alias.as_ref());
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let before = self.scope_len();
                self.table_with_joins(table_with_joins);
                if let Some(a) = alias {
                    let inner: Vec<OutputColumn> =
                        self.rels_since(before).iter().flat_map(Rel::star).collect();
                    // The alias hides the names inside the join (and `*`
                    // expands it once, not once more for each of them).
                    if let Some(scope) = self.scopes.last_mut() {
                        scope.truncate(before);
                    }
                    let cols = apply_alias_columns(inner, Some(a));
                    self.add_rel(Rel {
                        alias: fold(&a.name),
                        table: None,
                        kind: RelKind::Derived(cols),
                    });
                }
            }
            other => {
                // JSON_TABLE, XMLTABLE and dialect extras: whatever they
                // reference is all their columns may derive from.
                let sources = self.sources(other);
                self.add_derived(String::new(), sources, None);
            }
        }
    }

    /// Records the sources of a FROM function's arguments as written when
    /// the call may store them (a call in an expression is seen by
    /// [`Walker::sources`] itself).
    fn stored_by_call(
        &mut self,
        name: &ObjectName,
        config: ConfigName<'_>,
        sources: &BTreeSet<ColumnSource>,
    ) {
        if call_stores_arguments(self.ctx, name, config) {
            self.profile.written_sources.extend(sources.iter().cloned());
        }
    }

    /// Adds a function-like relation whose columns all derive from `sources`.
    /// They are predicates too: the arguments decide how many rows there are.
    fn add_derived(
        &mut self,
        name: String,
        sources: BTreeSet<ColumnSource>,
        alias: Option<&sqlparser::ast::TableAlias>,
    ) {
        self.profile
            .predicate_columns
            .extend(sources.iter().cloned());
        let cols = apply_alias_columns(vec![unsure_columns(sources)], alias);
        let alias_name = alias.map(|a| fold(&a.name)).unwrap_or(name);
        self.add_rel(Rel {
            alias: alias_name,
            table: None,
            kind: RelKind::Derived(cols),
        });
    }
}

/// The name PostgreSQL gives an unaliased output column, or `?column?`
/// (its own name for an expression it cannot name, which pgward also uses
/// when unsure: such a column may be referenced under any name, see
/// [`UNNAMED`]).
fn column_name(e: &Expr) -> String {
    match figure_name(e) {
        Some((name, _)) => name,
        None => UNNAMED.to_owned(),
    }
}

/// PostgreSQL's `FigureColname`: a name and its strength (2 for a column,
/// function or sublink name; 1 for a placeholder like `case`, which a
/// cast replaces by the type's name), or `None` where pgward is unsure.
fn figure_name(e: &Expr) -> Option<(String, u8)> {
    match e {
        Expr::Identifier(id) => Some((fold(id), 2)),
        Expr::CompoundIdentifier(ids) => ids.last().map(|id| (fold(id), 2)),
        Expr::Function(f) => {
            let name = object_parts(&f.name).last().cloned()?;
            // `ROW(…)` and `ARRAY(…)` are constructors: weak names.
            let strength = if f.name.0.len() == 1 && (name == "row" || name == "array") {
                1
            } else {
                2
            };
            Some((name, strength))
        }
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => figure_name(inner),
        Expr::Cast { expr, .. } => match figure_name(expr) {
            Some((name, 2)) => Some((name, 2)),
            // PostgreSQL names it after the type, as its catalog spells it.
            _ => None,
        },
        Expr::Case { else_result, .. } => match else_result.as_deref().map(figure_name) {
            Some(Some((name, 2))) => Some((name, 2)),
            Some(None) => None,
            _ => Some(("case".to_owned(), 1)),
        },
        Expr::Exists { negated: false, .. } => Some(("exists".to_owned(), 2)),
        Expr::Array(_) => Some(("array".to_owned(), 1)),
        Expr::Subquery(q) => match q.body.as_ref() {
            SetExpr::Select(s) => match s.projection.first() {
                Some(SelectItem::ExprWithAlias { alias, .. }) => Some((fold(alias), 2)),
                Some(SelectItem::UnnamedExpr(e)) => figure_name(e).map(|(n, _)| (n, 2)),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// The outputs of `left UNION/INTERSECT/EXCEPT right`: column i derives
/// from column i of both sides; when a side has a `*` the positions are
/// unknown and every column may derive from anything either side reads.
fn merge_positional(left: Vec<OutputColumn>, right: Vec<OutputColumn>) -> Vec<OutputColumn> {
    let aligned = left.len() == right.len() && !left.iter().chain(right.iter()).any(|c| c.wildcard);
    if aligned {
        return left
            .into_iter()
            .zip(right)
            .map(|(mut l, r)| {
                l.sources.extend(r.sources);
                l
            })
            .collect();
    }
    let all: BTreeSet<ColumnSource> = left
        .iter()
        .chain(right.iter())
        .flat_map(|c| c.sources.iter().cloned())
        .collect();
    // A `*` of one side no longer lines up with the other side's columns:
    // never narrow it to a column name.
    let mut out: Vec<OutputColumn> = left
        .into_iter()
        .map(|c| {
            if c.wildcard {
                unsure_columns(all.clone())
            } else {
                OutputColumn {
                    sources: all.clone(),
                    ..c
                }
            }
        })
        .collect();
    if !out.iter().any(|c| c.wildcard) {
        out.push(unsure_columns(all));
    }
    out
}
