//! INSERT, UPDATE, DELETE and MERGE: targets, sources, RETURNING lineage.
//!
//! Owns which tables a data-modifying statement writes and reads, which
//! columns its WHERE/ON clauses test, which table columns it copies into its
//! target (`written_sources`), and the lineage of its RETURNING list.
//!
//! Invariant: the target of UPDATE, DELETE and MERGE is also listed as read
//! (finding the rows reads them); an INSERT target is read only when ON
//! CONFLICT or RETURNING look at its rows. RETURNING sees the stored row, so a
//! target column in it also derives from whatever was stored into it.

use std::collections::{BTreeMap, BTreeSet};

use sqlparser::ast::{
    Assignment, AssignmentTarget, ConflictTarget, Delete, FromTable, Insert, Merge, MergeAction,
    MergeInsertKind, MergeUpdateKind, ObjectName, OnConflictAction, OnInsert, OutputClause,
    SelectItem, Statement, TableFactor, TableObject, Update, UpdateTableFromKind,
};

use super::lineage::{Rel, RelKind, Walker, fold, object_parts};
use super::profile::{ColumnRef, ColumnSource, OutputColumn, TableName};

/// What a statement stores into its target's columns.
#[derive(Debug, Default)]
struct Stored {
    /// Sources stored into a named column.
    by_column: BTreeMap<String, BTreeSet<ColumnSource>>,
    /// Sources stored into columns pgward cannot tell apart (`INSERT INTO t
    /// SELECT …` without a column list).
    anywhere: BTreeSet<ColumnSource>,
}

// === impl Walker (DML) ===

impl Walker<'_, '_> {
    /// Walks a data-modifying statement (top level or inside WITH);
    /// returns its RETURNING columns.
    pub fn dml(&mut self, st: &Statement) -> Vec<OutputColumn> {
        self.scopes.push(Vec::new());
        let cols = match st {
            Statement::Insert(i) => self.insert(i),
            Statement::Update(u) => self.update(u),
            Statement::Delete(d) => self.delete(d),
            Statement::Merge(m) => self.merge(m),
            other => {
                let _ = self.sources(other);
                Vec::new()
            }
        };
        self.scopes.pop();
        cols
    }

    /// The table a target FROM item names (None for subqueries and CTEs).
    fn target(&mut self, f: &TableFactor) -> Option<TableName> {
        let before = self.scope_len();
        self.table_factor(f);
        let t = self
            .rels_since(before)
            .first()
            .and_then(|r| r.table.clone());
        if let Some(t) = &t {
            self.profile.tables_written.insert(t.clone());
        }
        t
    }

    fn insert(&mut self, i: &Insert) -> Vec<OutputColumn> {
        let table = match &i.table {
            TableObject::TableName(name) => self.table_name(name),
            other => {
                let _ = self.sources(other);
                None
            }
        };
        let columns: Vec<String> = i
            .columns
            .iter()
            .filter_map(|c| object_parts(c).pop())
            .collect();
        let mut stored = Stored::default();
        if let Some(src) = &i.source {
            // The source query cannot see the target.
            let cols = self.query(src);
            stored.positional(&columns, cols);
        }
        self.assignments(&i.assignments, &mut stored);
        let Some(table) = table else {
            self.profile.written_sources.extend(stored.all());
            return Vec::new();
        };
        self.profile.tables_written.insert(table.clone());
        let alias = i
            .table_alias
            .as_ref()
            .map(|a| fold(&a.alias))
            .unwrap_or_else(|| table.name.clone());
        self.add_rel(Rel {
            alias,
            table: Some(table.clone()),
            kind: RelKind::Table {
                renamed: Vec::new(),
            },
        });
        if let Some(on) = &i.on {
            self.profile.tables_read.insert(table.clone());
            // EXCLUDED is the proposed row, of the target's shape; it is
            // visible only here, not in RETURNING.
            self.scopes.push(vec![Rel {
                alias: "excluded".to_owned(),
                table: Some(table.clone()),
                kind: RelKind::Table {
                    renamed: Vec::new(),
                },
            }]);
            match on {
                OnInsert::OnConflict(c) => {
                    if let OnConflictAction::DoUpdate(u) = &c.action {
                        self.assignments(&u.assignments, &mut stored);
                        self.predicate(&u.selection);
                    }
                    // Whether a row conflicts depends on the target columns.
                    if let Some(ConflictTarget::Columns(cols)) = &c.conflict_target {
                        for col in cols {
                            self.profile
                                .predicate_columns
                                .insert(column_of(&table, fold(col)));
                        }
                    }
                }
                OnInsert::DuplicateKeyUpdate(assignments) => {
                    self.assignments(assignments, &mut stored);
                }
                other => {
                    let _ = self.sources(other);
                }
            }
            self.scopes.pop();
        }
        self.profile.written_sources.extend(stored.all());
        self.returning(i.returning.as_deref(), i.output.as_ref(), &table, &stored)
    }

    fn update(&mut self, u: &Update) -> Vec<OutputColumn> {
        let target = self.target(&u.table.relation);
        self.joins(&u.table.joins);
        match &u.from {
            Some(UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from)) => {
                for twj in from {
                    self.table_with_joins(twj);
                }
            }
            None => {}
        }
        let mut stored = Stored::default();
        self.assignments(&u.assignments, &mut stored);
        self.profile.written_sources.extend(stored.all());
        self.predicate(&u.selection);
        self.predicate(&u.order_by);
        self.predicate(&u.limit);
        match target {
            Some(t) => {
                self.profile.tables_read.insert(t.clone());
                self.returning(u.returning.as_deref(), u.output.as_ref(), &t, &stored)
            }
            None => Vec::new(),
        }
    }

    fn delete(&mut self, d: &Delete) -> Vec<OutputColumn> {
        let from = match &d.from {
            FromTable::WithFromKeyword(v) | FromTable::WithoutKeyword(v) => v,
        };
        let mut target = None;
        for (n, twj) in from.iter().enumerate() {
            if n == 0 {
                target = self.target(&twj.relation);
            } else {
                self.table_factor(&twj.relation);
            }
            self.joins(&twj.joins);
        }
        for name in &d.tables {
            if let Some(t) = self.table_name(name) {
                self.profile.tables_written.insert(t);
            }
        }
        if let Some(using) = &d.using {
            for twj in using {
                self.table_with_joins(twj);
            }
        }
        self.predicate(&d.selection);
        self.predicate(&d.order_by);
        self.predicate(&d.limit);
        match target {
            Some(t) => {
                self.profile.tables_read.insert(t.clone());
                let nothing = Stored::default();
                self.returning(d.returning.as_deref(), d.output.as_ref(), &t, &nothing)
            }
            None => Vec::new(),
        }
    }

    fn merge(&mut self, m: &Merge) -> Vec<OutputColumn> {
        let target = self.target(&m.table);
        let before = self.scope_len();
        self.table_factor(&m.source);
        // What `UPDATE *` / `INSERT *` copy: the source's whole rows.
        let source_rows: BTreeSet<ColumnSource> = self
            .rels_since(before)
            .iter()
            .flat_map(Rel::whole_row)
            .collect();
        self.predicate(m.on.as_ref());
        let mut stored = Stored::default();
        for clause in &m.clauses {
            self.predicate(&clause.predicate);
            match &clause.action {
                MergeAction::Update(u) => {
                    match &u.kind {
                        MergeUpdateKind::Set(assignments) => {
                            self.assignments(assignments, &mut stored)
                        }
                        other => {
                            // `UPDATE *`: every source column, anywhere.
                            let s = self.sources(other);
                            stored.anywhere.extend(s);
                            stored.anywhere.extend(source_rows.iter().cloned());
                        }
                    }
                    self.predicate(&u.update_predicate);
                    self.predicate(&u.delete_predicate);
                }
                MergeAction::Insert(ins) => {
                    let columns: Vec<String> = ins
                        .columns
                        .iter()
                        .filter_map(|c| object_parts(c).pop())
                        .collect();
                    match &ins.kind {
                        MergeInsertKind::Values(values) => {
                            for row in &values.rows {
                                let cols: Vec<OutputColumn> = row
                                    .content
                                    .iter()
                                    .map(|e| OutputColumn {
                                        name: String::new(),
                                        wildcard: false,
                                        sources: self.sources(e),
                                    })
                                    .collect();
                                stored.positional(&columns, cols);
                            }
                        }
                        other => {
                            // `INSERT ROW`/`INSERT *`: the whole source row.
                            let s = self.sources(other);
                            stored.anywhere.extend(s);
                            stored.anywhere.extend(source_rows.iter().cloned());
                        }
                    }
                    let _ = self.sources(&ins.insert_predicate);
                }
                other => {
                    let _ = self.sources(other);
                }
            }
        }
        self.profile.written_sources.extend(stored.all());
        match target {
            Some(t) => {
                self.profile.tables_read.insert(t.clone());
                self.returning(None, m.output.as_ref(), &t, &stored)
            }
            None => Vec::new(),
        }
    }

    /// `SET col = expr, (a, b) = (…)`: what goes into which column.
    fn assignments(&mut self, assignments: &[Assignment], stored: &mut Stored) {
        for a in assignments {
            let sources = self.sources(&a.value);
            let targets: Vec<&ObjectName> = match &a.target {
                AssignmentTarget::ColumnName(n) => vec![n],
                AssignmentTarget::Tuple(names) => names.iter().collect(),
            };
            for t in targets {
                match object_parts(t).pop() {
                    Some(col) => stored
                        .by_column
                        .entry(col)
                        .or_default()
                        .extend(sources.iter().cloned()),
                    None => stored.anywhere.extend(sources.iter().cloned()),
                }
            }
        }
    }

    /// RETURNING (or the OUTPUT clause of other dialects), in the DML scope.
    ///
    /// `old.col` and `new.col` (PostgreSQL 18) name the target's row before
    /// and after; a target column also derives from what `stored` put into it.
    fn returning(
        &mut self,
        returning: Option<&[SelectItem]>,
        output: Option<&OutputClause>,
        table: &TableName,
        stored: &Stored,
    ) -> Vec<OutputColumn> {
        let items: Vec<&[SelectItem]> = returning
            .into_iter()
            .chain(output.map(|o| match o {
                OutputClause::Returning { select_items, .. }
                | OutputClause::Output { select_items, .. } => select_items.as_slice(),
            }))
            .collect();
        if items.is_empty() {
            return Vec::new();
        }
        self.profile.tables_read.insert(table.clone());
        // Outside the DML scope, so that `*` does not expand them.
        let versions: Vec<Rel> = ["old", "new"]
            .into_iter()
            .map(|alias| Rel {
                alias: alias.to_owned(),
                table: Some(table.clone()),
                kind: RelKind::Table {
                    renamed: Vec::new(),
                },
            })
            .collect();
        let at = self.scopes.len().saturating_sub(1);
        self.scopes.insert(at, versions);
        let mut cols = Vec::new();
        for list in items {
            cols.extend(self.projection(list));
        }
        self.scopes.remove(at);
        for c in &mut cols {
            let extra = stored.stored_into(table, &c.sources);
            c.sources.extend(extra);
        }
        cols
    }
}

/// A column of `table`.
fn column_of(table: &TableName, column: String) -> ColumnSource {
    ColumnSource::Column(ColumnRef {
        table: table.clone(),
        column,
    })
}

// === impl Stored ===

impl Stored {
    /// Output columns stored into `columns` (empty: the target's columns in
    /// an order pgward does not know) by position.
    fn positional(&mut self, columns: &[String], values: Vec<OutputColumn>) {
        let aligned = !columns.is_empty()
            && columns.len() == values.len()
            && !values.iter().any(|v| v.wildcard);
        if aligned {
            for (c, v) in columns.iter().zip(values) {
                self.by_column
                    .entry(c.clone())
                    .or_default()
                    .extend(v.sources);
            }
        } else {
            for v in values {
                self.anywhere.extend(v.sources);
            }
        }
    }

    /// Every source stored anywhere.
    fn all(&self) -> BTreeSet<ColumnSource> {
        self.by_column
            .values()
            .flatten()
            .chain(&self.anywhere)
            .cloned()
            .collect()
    }

    /// What was stored into the columns of `table` that `sources` name.
    fn stored_into(
        &self,
        table: &TableName,
        sources: &BTreeSet<ColumnSource>,
    ) -> BTreeSet<ColumnSource> {
        let mut out = BTreeSet::new();
        for s in sources.iter().filter(|s| s.table() == table) {
            match s {
                ColumnSource::Column(c) => {
                    if let Some(v) = self.by_column.get(&c.column) {
                        out.extend(v.iter().cloned());
                    }
                    out.extend(self.anywhere.iter().cloned());
                }
                ColumnSource::WholeRow(_) => out.extend(self.all()),
            }
        }
        out
    }
}
