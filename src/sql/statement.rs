//! One parsed statement → its [`StatementProfile`].
//!
//! Owns the statements whose inner statement does not simply run (EXPLAIN
//! without ANALYZE, PREPARE, EXECUTE), and the tables touched by DDL and
//! utility statements. Everything else is the [`Walker`] (tables, lineage)
//! plus the [`Sweep`] (class, functions, flags).
//!
//! Invariant: every relation name anywhere in the statement ends up in
//! `tables_read` or `tables_written` (a CTE name excepted), even where the
//! walker does not look: the sweep's list of relations is the safety net.

use std::collections::BTreeSet;
use std::sync::Arc;

use sqlparser::ast::{
    CommentObject, CopySource, CopyTarget, Expr, ObjectName, ObjectType, Set, Statement, Value,
    Visit,
};

use super::AnalyzeContext;
use super::class::Sweep;
use super::lineage::{Walker, fold, object_parts};
use super::profile::{
    ColumnRef, ColumnSource, Execute, Flag, OutputColumn, Prepared, StatementClass,
    StatementProfile, TableName,
};

/// Analyzes one parsed statement.
pub(crate) fn analyze_statement(st: &Statement, ctx: &AnalyzeContext<'_>) -> StatementProfile {
    match st {
        Statement::Explain {
            analyze,
            statement,
            options,
            ..
        } => {
            let inner = analyze_statement(statement, ctx);
            let runs = *analyze
                || options.iter().flatten().any(|o| {
                    o.name.value.eq_ignore_ascii_case("analyze") && !is_false(o.arg.as_ref())
                });
            let mut p = inner;
            p.flags.insert(Flag::Explain);
            // The result is the plan, not the statement's rows.
            p.columns.clear();
            p.prepares = None;
            if !runs {
                // Planned, not run: nothing is copied.
                p.written_sources.clear();
                if p.class == StatementClass::Unknown && p.executes.is_none() {
                    return p;
                }
                p.class = StatementClass::Read;
                p.executes = None;
                let written = std::mem::take(&mut p.tables_written);
                p.tables_read.extend(written);
            }
            p
        }
        Statement::Prepare {
            name, statement, ..
        } => {
            let inner = analyze_statement(statement, ctx);
            let mut p = inner.clone();
            p.prepares = Some(Prepared {
                name: fold(name),
                profile: Arc::new(inner),
            });
            p
        }
        Statement::Execute {
            name,
            parameters,
            using,
            ..
        } => {
            let mut sweep = Sweep::new(ctx, StatementClass::Tx);
            let mut walker = Walker::new(ctx, StatementProfile::new(StatementClass::Unknown));
            let _ = parameters.visit(&mut sweep);
            let _ = using.visit(&mut sweep);
            // The prepared statement may test, store or output its parameters.
            let mut parameter_sources = walker.copied(parameters);
            parameter_sources.extend(walker.copied(using));
            let mut p = walker.profile;
            p.predicate_columns
                .extend(parameter_sources.iter().cloned());
            p.functions = sweep.functions;
            p.flags.extend(sweep.flags);
            p.class = StatementClass::Unknown;
            p.executes = name.as_ref().map(|n| Execute {
                name: object_parts(n).join("."),
                base_class: sweep.class,
                parameter_sources,
            });
            p
        }
        Statement::Set(Set::SingleAssignment {
            variable, values, ..
        }) if object_parts(variable).join(".") == "search_path" => {
            let mut p = plain(st, ctx);
            p.search_path = literal_path(values);
            p
        }
        _ => plain(st, ctx),
    }
}

/// The schemas of `SET search_path = a, "B", 'c'`, or `None` for DEFAULT or
/// anything that is not a plain name.
fn literal_path(values: &[Expr]) -> Option<Vec<String>> {
    values
        .iter()
        .map(|v| match v {
            Expr::Identifier(id)
                if id.quote_style.is_some() || !id.value.eq_ignore_ascii_case("default") =>
            {
                Some(fold(id))
            }
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// A statement whose every part runs: walk it, then sweep it.
fn plain(st: &Statement, ctx: &AnalyzeContext<'_>) -> StatementProfile {
    let mut walker = Walker::new(ctx, StatementProfile::new(StatementClass::Tx));
    let columns = walker.statement(st);
    let mut sweep = Sweep::new(ctx, StatementClass::Tx);
    match st {
        // A partition key (`PARTITION BY RANGE (lower(a))`) is evaluated when
        // rows arrive, not now; sqlparser shows `RANGE(…)` as a function call.
        Statement::CreateTable(ct) if ct.partition_by.is_some() => {
            let mut ct = ct.clone();
            ct.partition_by = None;
            let _ = Statement::CreateTable(ct).visit(&mut sweep);
        }
        _ => {
            let _ = st.visit(&mut sweep);
        }
    }
    if sweep.flags.contains(&Flag::SelectInto) {
        // `SELECT … INTO t` stores the whole result, whichever branch of a
        // set operation carries the INTO.
        walker.outputs_stored(&columns);
    }
    let mut p = walker.profile;
    p.columns = columns;
    p.class = sweep.class;
    p.functions = sweep.functions;
    p.flags.extend(sweep.flags);
    for parts in sweep.relations {
        if let [single] = parts.as_slice()
            && sweep.cte_names.contains(single)
        {
            continue;
        }
        // Function calls in FROM, and the ONLY keyword sqlparser takes for a name.
        if sweep.function_relations.contains(&parts) || parts == ["only"] {
            continue;
        }
        if let Some(t) = walker_table(ctx, &parts)
            && !p.tables_read.contains(&t)
            && !p.tables_written.contains(&t)
        {
            p.tables_read.insert(t);
        }
    }
    p
}

/// A relation name from folded parts, resolved like [`Walker::table_name`].
fn walker_table(ctx: &AnalyzeContext<'_>, parts: &[String]) -> Option<TableName> {
    let w = Walker::new(ctx, StatementProfile::new(StatementClass::Tx));
    match parts {
        [] => None,
        [n] => Some(TableName::new(w.default_schema(n), n.clone())),
        [.., s, n] => Some(TableName::new(s.clone(), n.clone())),
    }
}

/// True when an EXPLAIN option's value turns it off (`ANALYZE false`, `off`, `0`).
fn is_false(arg: Option<&Expr>) -> bool {
    match arg {
        None => false,
        Some(Expr::Value(v)) => match &v.value {
            Value::Boolean(b) => !b,
            Value::Number(n, _) => n == "0",
            Value::SingleQuotedString(s) => matches!(
                s.to_ascii_lowercase().as_str(),
                "off" | "false" | "0" | "no"
            ),
            _ => false,
        },
        Some(Expr::Identifier(id)) => matches!(
            id.value.to_ascii_lowercase().as_str(),
            "off" | "false" | "no"
        ),
        Some(_) => false,
    }
}

// === impl Walker (statements) ===

impl Walker<'_, '_> {
    fn written(&mut self, name: &ObjectName) {
        if let Some(t) = self.table_name(name) {
            self.profile.tables_written.insert(t);
        }
    }

    fn read(&mut self, name: &ObjectName) {
        if let Some(t) = self.table_name(name) {
            self.profile.tables_read.insert(t);
        }
    }

    /// Records that the values of `cols` are stored where later statements
    /// can read them.
    fn outputs_stored(&mut self, cols: &[OutputColumn]) {
        self.profile
            .written_sources
            .extend(cols.iter().flat_map(|c| c.sources.iter().cloned()));
    }

    /// The tables and output columns of `COPY source TO/FROM …`.
    fn copy(&mut self, source: &CopySource, to: bool) -> Vec<OutputColumn> {
        match source {
            CopySource::Table {
                table_name,
                columns,
            } => {
                let Some(t) = self.table_name(table_name) else {
                    return Vec::new();
                };
                if !to {
                    self.profile.tables_written.insert(t);
                    return Vec::new();
                }
                self.profile.tables_read.insert(t.clone());
                if columns.is_empty() {
                    vec![OutputColumn {
                        name: "*".to_owned(),
                        wildcard: true,
                        sources: [ColumnSource::WholeRow(t)].into(),
                    }]
                } else {
                    columns
                        .iter()
                        .map(|c| OutputColumn {
                            name: fold(c),
                            wildcard: false,
                            sources: [ColumnSource::Column(ColumnRef {
                                table: t.clone(),
                                column: fold(c),
                            })]
                            .into(),
                        })
                        .collect()
                }
            }
            CopySource::Query(q) => self.query(q),
        }
    }

    /// Tables and output columns of any statement.
    pub fn statement(&mut self, st: &Statement) -> Vec<OutputColumn> {
        match st {
            Statement::Query(q) => self.query(q),
            Statement::Insert(_)
            | Statement::Update(_)
            | Statement::Delete(_)
            | Statement::Merge(_) => self.dml(st),
            Statement::CreateTable(ct) => {
                self.written(&ct.name);
                for parent in ct.inherits.iter().flatten().chain(ct.partition_of.iter()) {
                    // Attaching to a parent changes the parent's contents.
                    self.written(parent);
                }
                if let Some(clone) = &ct.clone {
                    self.read(clone);
                }
                if let Some(q) = &ct.query {
                    let cols = self.query(q);
                    self.outputs_stored(&cols);
                }
                Vec::new()
            }
            Statement::CreateView(cv) => {
                // A view is no copy, but its columns are read under its own
                // name, which rules written for the tables do not match.
                self.written(&cv.name);
                let cols = self.query(&cv.query);
                self.outputs_stored(&cols);
                Vec::new()
            }
            Statement::CreateIndex(ci) => {
                self.written(&ci.table_name);
                Vec::new()
            }
            Statement::AlterTable(a) => {
                // Renamed columns or tables, generated columns, new types
                // computed by USING, detached partitions: values that rules
                // name one way become readable another way.
                self.written(&a.name);
                if let Some(t) = self.table_name(&a.name) {
                    self.profile
                        .written_sources
                        .insert(ColumnSource::WholeRow(t));
                }
                Vec::new()
            }
            Statement::AlterIndex { name, .. } => {
                self.written(name);
                Vec::new()
            }
            Statement::AlterView { name, query, .. } => {
                self.written(name);
                let cols = self.query(query);
                self.outputs_stored(&cols);
                Vec::new()
            }
            Statement::Drop {
                object_type, names, ..
            } => {
                if matches!(
                    object_type,
                    ObjectType::Table
                        | ObjectType::View
                        | ObjectType::MaterializedView
                        | ObjectType::Index
                        | ObjectType::Sequence
                ) {
                    for n in names {
                        self.written(n);
                    }
                }
                Vec::new()
            }
            Statement::Truncate(t) => {
                for target in &t.table_names {
                    self.written(&target.name);
                }
                Vec::new()
            }
            Statement::Copy {
                source, to, target, ..
            } => {
                let cols = self.copy(source, *to);
                if *to && !matches!(target, CopyTarget::Stdout) {
                    // A server file or program: readable later, unmasked.
                    self.outputs_stored(&cols);
                    return Vec::new();
                }
                cols
            }
            Statement::Call(f) => {
                // A procedure may store its arguments anywhere.
                let _ = self.copied(f);
                Vec::new()
            }
            Statement::Lock(l) => {
                for target in &l.tables {
                    self.written(&target.name);
                }
                Vec::new()
            }
            Statement::Analyze(a) => {
                if let Some(n) = &a.table_name {
                    self.written(n);
                }
                Vec::new()
            }
            Statement::Vacuum(v) => {
                // sqlparser reads `VACUUM ANALYZE` as a table named analyze.
                if let Some(n) = &v.table_name
                    && !matches!(object_parts(n).as_slice(), [w] if ["analyze", "full", "freeze", "verbose"].contains(&w.as_str()))
                {
                    self.written(n);
                }
                Vec::new()
            }
            Statement::Comment {
                object_type,
                object_name,
                ..
            } => {
                match object_type {
                    CommentObject::Table
                    | CommentObject::MaterializedView
                    | CommentObject::Index
                    | CommentObject::Sequence => self.written(object_name),
                    CommentObject::Column => {
                        let mut parts = object_name.0.clone();
                        parts.pop();
                        self.written(&ObjectName(parts));
                    }
                    _ => {}
                }
                Vec::new()
            }
            Statement::Declare { stmts } => {
                let mut cols = Vec::new();
                for d in stmts {
                    if let Some(q) = &d.for_query {
                        cols.extend(self.query(q));
                    }
                }
                cols
            }
            Statement::CreateTrigger(t) => {
                self.written(&t.table_name);
                Vec::new()
            }
            Statement::CreatePolicy(p) => {
                self.written(&p.table_name);
                let _ = self.sources(&p.using);
                let _ = self.sources(&p.with_check);
                Vec::new()
            }
            other => {
                // Whatever it references still counts (the sweep adds the
                // relations; subqueries get walked here).
                let _: BTreeSet<ColumnSource> = self.sources(other);
                Vec::new()
            }
        }
    }
}
