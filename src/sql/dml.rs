//! INSERT, UPDATE, DELETE and MERGE: targets, sources, RETURNING lineage.
//!
//! Owns which tables a data-modifying statement writes and reads, which
//! columns its WHERE/ON clauses test, and the lineage of its RETURNING list.
//!
//! Invariant: the target of UPDATE, DELETE and MERGE is also listed as read
//! (finding the rows reads them); an INSERT target is read only when ON
//! CONFLICT or RETURNING look at its rows.

use sqlparser::ast::{
    Delete, FromTable, Insert, Merge, OnConflictAction, OnInsert, OutputClause, Statement,
    TableFactor, TableObject, Update, UpdateTableFromKind,
};

use super::lineage::{Rel, RelKind, Walker, fold};
use super::profile::{OutputColumn, TableName};

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
        let before = self.scopes.last().map_or(0, Vec::len);
        self.table_factor(f);
        let t = self
            .scopes
            .last()
            .and_then(|s| s.get(before))
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
        if let Some(src) = &i.source {
            // The source query cannot see the target.
            let _ = self.query(src);
        }
        let _ = self.sources(&i.assignments);
        let Some(table) = table else {
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
        // EXCLUDED is the proposed row: of the target's shape.
        self.add_rel(Rel {
            alias: "excluded".to_owned(),
            table: Some(table.clone()),
            kind: RelKind::Table {
                renamed: Vec::new(),
            },
        });
        if let Some(on) = &i.on {
            self.profile.tables_read.insert(table.clone());
            match on {
                OnInsert::OnConflict(c) => {
                    if let OnConflictAction::DoUpdate(u) = &c.action {
                        let _ = self.sources(&u.assignments);
                        self.predicate(&u.selection);
                    }
                    self.predicate(&c.conflict_target);
                }
                other => {
                    let _ = self.sources(other);
                }
            }
        }
        self.returning(i.returning.as_deref(), i.output.as_ref(), &table)
    }

    fn update(&mut self, u: &Update) -> Vec<OutputColumn> {
        let target = self.target(&u.table.relation);
        for j in &u.table.joins {
            self.table_factor(&j.relation);
        }
        match &u.from {
            Some(UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from)) => {
                for twj in from {
                    self.table_with_joins(twj);
                }
            }
            None => {}
        }
        let _ = self.sources(&u.assignments);
        self.predicate(&u.selection);
        self.predicate(&u.order_by);
        let _ = self.sources(&u.limit);
        match target {
            Some(t) => {
                self.profile.tables_read.insert(t.clone());
                self.returning(u.returning.as_deref(), u.output.as_ref(), &t)
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
            for j in &twj.joins {
                self.table_factor(&j.relation);
            }
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
        let _ = self.sources(&d.limit);
        match target {
            Some(t) => {
                self.profile.tables_read.insert(t.clone());
                self.returning(d.returning.as_deref(), d.output.as_ref(), &t)
            }
            None => Vec::new(),
        }
    }

    fn merge(&mut self, m: &Merge) -> Vec<OutputColumn> {
        let target = self.target(&m.table);
        self.table_factor(&m.source);
        self.predicate(m.on.as_ref());
        for clause in &m.clauses {
            self.predicate(&clause.predicate);
            let _ = self.sources(&clause.action);
        }
        match target {
            Some(t) => {
                self.profile.tables_read.insert(t.clone());
                self.returning(None, m.output.as_ref(), &t)
            }
            None => Vec::new(),
        }
    }

    /// RETURNING (or the OUTPUT clause of other dialects), in the DML scope.
    fn returning(
        &mut self,
        returning: Option<&[sqlparser::ast::SelectItem]>,
        output: Option<&OutputClause>,
        table: &TableName,
    ) -> Vec<OutputColumn> {
        let mut cols = Vec::new();
        if let Some(items) = returning {
            cols.extend(self.projection(items));
        }
        match output {
            Some(OutputClause::Returning { select_items, .. })
            | Some(OutputClause::Output { select_items, .. }) => {
                cols.extend(self.projection(select_items));
            }
            None => {}
        }
        if !cols.is_empty() {
            self.profile.tables_read.insert(table.clone());
        }
        cols
    }
}
