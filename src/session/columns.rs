//! Where a result column comes from: table OID and attribute number → `schema.table.column`.
//!
//! A RowDescription names, for each field that is a plain column reference, the relation's OID
//! and the column's number. Masking needs the names. This cache maps them, per database, through
//! pgward's metadata connections:
//!
//! - a table column is itself;
//! - a view column (or materialized view's) is what the view's definition computes it from:
//!   the definition is analyzed with pgward's own analyzer, and the lineage at the column's
//!   position gives its sources. When that can't be trusted (the definition reads other views,
//!   or positions don't line up), every column the view depends on, transitively, counts as a
//!   source of every one of its columns: over-masking, never a leak.
//!
//! Entries expire after a TTL, and the whole database's entries are dropped when DDL passes
//! through pgward ([`ColumnCatalog::invalidate`]). A lookup that fails is cached briefly as
//! unresolvable, which the mask planner treats as "origin unknown" (fail closed).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::metadata::{self, MetadataPools};
use crate::mask::Resolved;
use crate::sql::{
    AnalyzeContext, ColumnRef, ColumnSource, FunctionCatalog, StatementClass, TableName, analyze,
};

/// How long a resolved relation is trusted without DDL through pgward.
const TTL: Duration = Duration::from_secs(60);
/// How long a failed lookup is remembered before it is tried again.
const FAILURE_TTL: Duration = Duration::from_secs(5);

const RELATIONS: &str = "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, \
       a.attnum, a.attname::text, \
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END \
     FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     LEFT JOIN pg_catalog.pg_attribute a \
       ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
     WHERE c.oid = ANY($1) \
     ORDER BY c.oid, a.attnum";

/// Every relation column a view depends on, following views of views. A dependency on a whole
/// relation (attribute 0) has a NULL column name.
const VIEW_DEPENDENCIES: &str = "WITH RECURSIVE deps(ref, att) AS ( \
       SELECT d.refobjid, d.refobjsubid FROM pg_catalog.pg_rewrite r \
       JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass \
         AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass \
       WHERE r.ev_class = $1 AND d.refobjid <> r.ev_class \
       UNION \
       SELECT d.refobjid, d.refobjsubid FROM deps \
       JOIN pg_catalog.pg_rewrite r ON r.ev_class = deps.ref \
       JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass \
         AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass \
       WHERE d.refobjid <> r.ev_class) \
     SELECT DISTINCT n.nspname::text, c.relname::text, a.attname::text \
     FROM deps JOIN pg_catalog.pg_class c ON c.oid = deps.ref \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     LEFT JOIN pg_catalog.pg_attribute a \
       ON a.attrelid = deps.ref AND a.attnum = deps.att AND deps.att > 0 \
     WHERE c.relkind <> 'v'";

/// Relations named in statements, to their OIDs (NULL when there is no such relation).
const NAMES: &str =
    "SELECT n, pg_catalog.to_regclass(n)::oid FROM pg_catalog.unnest($1::text[]) AS n";

/// Each column's sources, in attribute order.
pub type Columns = Arc<[Arc<[ColumnSource]>]>;

/// A relation as read from `pg_class`: its name, its live columns, a view's definition.
type RelationRow = (TableName, Vec<(i16, String)>, Option<String>);

/// One relation's columns: names and sources by attribute number.
#[derive(Debug)]
pub struct Relation {
    /// Index `attnum - 1`; dropped columns hold an empty set.
    columns: Vec<Arc<[ColumnSource]>>,
    /// Index `attnum - 1`; dropped columns hold an empty name.
    names: Vec<String>,
    /// A view or materialized view: its columns are computed, not stored values.
    view: bool,
    fetched: Instant,
}

#[derive(Debug)]
enum Entry {
    Known(Arc<Relation>),
    Failed(Instant),
}

/// Column origins of one server database, shared by its sessions.
pub struct ColumnCatalog {
    database: String,
    pools: Arc<MetadataPools>,
    functions: Arc<FunctionCatalog>,
    entries: Mutex<HashMap<u32, Entry>>,
    /// Relations named in statements, to their OIDs; `None` when there is no such relation
    /// (a CTE's name) or the lookup failed.
    names: Mutex<HashMap<TableName, (Instant, NameState)>>,
}

impl std::fmt::Debug for ColumnCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColumnCatalog")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

/// What the cache knows about one field's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The column's sources (one, for a table column).
    Sources(Resolved),
    /// Looked up and failed, or no such column: unknown.
    Unknown,
    /// Not in the cache: [`ColumnCatalog::fetch`] it first.
    Missing,
}

/// What [`ColumnCatalog::scan`] found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Some source is in a view or materialized view.
    pub any_view: bool,
    /// A relation whose lookup failed.
    pub failed: Option<TableName>,
}

/// A name's lookup result.
#[derive(Debug, Clone, Copy)]
enum NameState {
    Relation(u32),
    NoRelation,
    Failed,
}

/// What the cache knows about a relation named in a statement.
#[derive(Debug, Clone)]
pub enum Named {
    /// The relation.
    Known(Arc<Relation>),
    /// No such relation (a CTE's name).
    Unknown,
    /// The lookup failed: nothing is known (fail closed).
    Failed,
    /// Not in the cache: [`ColumnCatalog::fetch_names`] it first.
    Missing,
}

// === impl Relation ===

impl Relation {
    /// A view or materialized view.
    pub fn is_view(&self) -> bool {
        self.view
    }
}

// === impl ColumnCatalog ===

impl ColumnCatalog {
    /// An empty cache for `database`.
    pub fn new(database: &str, pools: Arc<MetadataPools>, functions: Arc<FunctionCatalog>) -> Self {
        ColumnCatalog {
            database: database.to_owned(),
            pools,
            functions,
            entries: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
        }
    }

    /// The relation named `table`, as far as the cache knows.
    pub fn named(&self, table: &TableName) -> Named {
        let oid = {
            let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
            match names.get(table) {
                Some((at, NameState::Relation(oid))) if at.elapsed() < TTL => *oid,
                Some((at, NameState::NoRelation)) if at.elapsed() < TTL => return Named::Unknown,
                Some((at, NameState::Failed)) if at.elapsed() < FAILURE_TTL => {
                    return Named::Failed;
                }
                _ => return Named::Missing,
            }
        };
        match self.lock().get(&oid) {
            Some(Entry::Known(r)) if r.fetched.elapsed() < TTL => Named::Known(Arc::clone(r)),
            Some(Entry::Failed(at)) if at.elapsed() < FAILURE_TTL => Named::Failed,
            _ => Named::Missing,
        }
    }

    /// Records that `tables` name no relation, as a lookup finding nothing would (for callers
    /// that run without a server: benches and allocation tests).
    pub fn assume_no_relations(&self, tables: &[TableName]) {
        let now = Instant::now();
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        for t in tables {
            names.insert(t.clone(), (now, NameState::NoRelation));
        }
    }

    /// Looks up relations by name (and then their columns); failures are cached as unknown.
    pub async fn fetch_names(&self, tables: &[TableName]) {
        let now = Instant::now();
        let found = match self.try_fetch_names(tables).await {
            Ok(found) => Some(found),
            Err(e) => {
                warn!(database = %self.database, error = %e, "Relation names unavailable");
                None
            }
        };
        let oids: Vec<u32> = found
            .iter()
            .flat_map(|f| f.values().flatten().copied())
            .collect();
        {
            let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
            for t in tables {
                let state = match found.as_ref().map(|f| f.get(t).copied().flatten()) {
                    Some(Some(oid)) => NameState::Relation(oid),
                    Some(None) => NameState::NoRelation,
                    None => NameState::Failed,
                };
                names.insert(t.clone(), (now, state));
            }
        }
        let missing: Vec<u32> = {
            let entries = self.lock();
            oids.into_iter()
                .filter(|o| !matches!(entries.get(o), Some(Entry::Known(r)) if r.fetched.elapsed() < TTL))
                .collect()
        };
        if !missing.is_empty() {
            self.fetch(&missing).await;
        }
    }

    async fn try_fetch_names(
        &self,
        tables: &[TableName],
    ) -> Result<HashMap<TableName, Option<u32>>, metadata::Error> {
        let client = self.pools.get(&self.database).await?;
        let qualified: Vec<String> = tables
            .iter()
            .map(|t| format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name)))
            .collect();
        let rows = client.query(NAMES, &[&qualified]).await?;
        let mut found = HashMap::new();
        for (row, table) in rows.iter().zip(tables) {
            found.insert(table.clone(), row.try_get::<_, Option<u32>>(1)?);
        }
        Ok(found)
    }

    /// The table columns `source` stands for: a view's column (or whole row) becomes what the
    /// view computes it from; anything else is itself. `Err` with the relation's name when it
    /// must be looked up first ([`ColumnCatalog::fetch_names`]).
    pub fn expand(
        &self,
        source: &ColumnSource,
        out: &mut Vec<ColumnSource>,
    ) -> Result<(), TableName> {
        let table = match source {
            ColumnSource::Column(c) => &c.table,
            ColumnSource::WholeRow(t) => t,
        };
        let relation = match self.named(table) {
            Named::Missing => return Err(table.clone()),
            Named::Known(r) if r.view => r,
            // A table, or a name that is no relation (a CTE): itself.
            _ => {
                out.push(source.clone());
                return Ok(());
            }
        };
        let column = match source {
            ColumnSource::Column(c) => relation.names.iter().position(|n| *n == c.column),
            ColumnSource::WholeRow(_) => None,
        };
        match column.and_then(|i| relation.columns.get(i)) {
            Some(sources) => out.extend(sources.iter().cloned()),
            // The whole row, or a column the view doesn't have: everything it reads.
            None => out.extend(relation.columns.iter().flat_map(|s| s.iter().cloned())),
        }
        Ok(())
    }

    /// What the cache knows about the relations of `sources`: whether one is a view, the first
    /// whose lookup failed; relations not in the cache are added to `missing`.
    pub fn scan<'s>(
        &self,
        sources: impl Iterator<Item = &'s ColumnSource>,
        missing: &mut Vec<TableName>,
    ) -> Scan {
        let mut scan = Scan::default();
        for source in sources {
            let table = match source {
                ColumnSource::Column(c) => &c.table,
                ColumnSource::WholeRow(t) => t,
            };
            match self.named(table) {
                Named::Missing if !missing.contains(table) => missing.push(table.clone()),
                Named::Known(r) if r.is_view() => scan.any_view = true,
                Named::Failed => scan.failed = Some(table.clone()),
                _ => {}
            }
        }
        scan
    }

    /// The columns of a relation in order, as sources (for `COPY t TO STDOUT`).
    #[must_use]
    pub fn columns_of(relation: &Relation) -> Columns {
        relation.columns.iter().cloned().collect()
    }

    /// The origin of column `attnum` of relation `table_oid`, as far as the cache knows.
    pub fn origin(&self, table_oid: u32, attnum: i16) -> Origin {
        let entries = self.lock();
        match entries.get(&table_oid) {
            Some(Entry::Known(r)) if r.fetched.elapsed() < TTL => usize::try_from(attnum)
                .ok()
                .and_then(|a| a.checked_sub(1))
                .and_then(|i| r.columns.get(i))
                .map_or(Origin::Unknown, |s| {
                    Origin::Sources(Resolved {
                        sources: Arc::clone(s),
                        derived: r.view,
                    })
                }),
            Some(Entry::Failed(at)) if at.elapsed() < FAILURE_TTL => Origin::Unknown,
            _ => Origin::Missing,
        }
    }

    /// Looks up `oids` and caches what was found; failures are cached as unknown.
    pub async fn fetch(&self, oids: &[u32]) {
        if let Err(e) = self.try_fetch(oids).await {
            warn!(database = %self.database, error = %e, "Column origins unavailable; masking those columns as unknown");
            let now = Instant::now();
            let mut entries = self.lock();
            for oid in oids {
                entries.insert(*oid, Entry::Failed(now));
            }
        }
    }

    /// Forgets everything (DDL passed through pgward).
    pub fn invalidate(&self) {
        self.lock().clear();
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    async fn try_fetch(&self, oids: &[u32]) -> Result<(), metadata::Error> {
        let client = self.pools.get(&self.database).await?;
        let rows = client.query(RELATIONS, &[&oids]).await?;
        let now = Instant::now();
        let mut found: HashMap<u32, RelationRow> = HashMap::new();
        for row in &rows {
            let oid: u32 = row.try_get(0)?;
            let entry = found.entry(oid).or_insert_with(|| {
                (
                    TableName::new(
                        row.try_get::<_, String>(1).unwrap_or_default(),
                        row.try_get::<_, String>(2).unwrap_or_default(),
                    ),
                    Vec::new(),
                    None,
                )
            });
            if let (Ok(Some(attnum)), Ok(Some(name))) = (
                row.try_get::<_, Option<i16>>(4),
                row.try_get::<_, Option<String>>(5),
            ) {
                entry.1.push((attnum, name));
            }
            if let Ok(Some(def)) = row.try_get::<_, Option<String>>(6) {
                entry.2 = Some(def);
            }
        }
        let mut resolved = Vec::with_capacity(found.len());
        for (oid, (table, attrs, viewdef)) in found {
            let view = viewdef.is_some();
            let names = column_names(&attrs);
            let columns = match viewdef {
                None => table_columns(&table, &attrs),
                Some(def) => {
                    let deps = self.view_dependencies(&client, oid).await?;
                    view_columns(&def, &attrs, deps, &self.functions)
                }
            };
            debug!(database = %self.database, table = %table, "Column origins cached");
            resolved.push((
                oid,
                Entry::Known(Arc::new(Relation {
                    columns,
                    names,
                    view,
                    fetched: now,
                })),
            ));
        }
        let mut entries = self.lock();
        for oid in oids {
            // A relation that no longer exists: nothing can be said about its columns.
            entries.insert(*oid, Entry::Failed(now));
        }
        entries.extend(resolved);
        Ok(())
    }

    async fn view_dependencies(
        &self,
        client: &tokio_postgres::Client,
        oid: u32,
    ) -> Result<Arc<[ColumnSource]>, metadata::Error> {
        let rows = client.query(VIEW_DEPENDENCIES, &[&oid]).await?;
        let mut sources = BTreeSet::new();
        for row in rows {
            let table = TableName::new(row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?);
            match row.try_get::<_, Option<String>>(2)? {
                Some(column) => sources.insert(ColumnSource::Column(ColumnRef { table, column })),
                None => sources.insert(ColumnSource::WholeRow(table)),
            };
        }
        Ok(sources.into_iter().collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Column names by attribute number (dropped columns empty).
fn column_names(attrs: &[(i16, String)]) -> Vec<String> {
    let len = attrs.iter().map(|(n, _)| *n).max().unwrap_or(0).max(0) as usize;
    let mut names = vec![String::new(); len];
    for (attnum, name) in attrs {
        if let Some(slot) = usize::try_from(*attnum - 1)
            .ok()
            .and_then(|i| names.get_mut(i))
        {
            slot.clone_from(name);
        }
    }
    names
}

/// A table's columns are themselves.
fn table_columns(table: &TableName, attrs: &[(i16, String)]) -> Vec<Arc<[ColumnSource]>> {
    let len = attrs.iter().map(|(n, _)| *n).max().unwrap_or(0).max(0) as usize;
    let mut columns: Vec<Arc<[ColumnSource]>> = vec![Arc::from(Vec::new()); len];
    for (attnum, name) in attrs {
        if let Some(slot) = usize::try_from(*attnum - 1)
            .ok()
            .and_then(|i| columns.get_mut(i))
        {
            *slot = Arc::from(vec![ColumnSource::Column(ColumnRef {
                table: table.clone(),
                column: name.clone(),
            })]);
        }
    }
    columns
}

/// A view's columns are what its definition computes them from (see the module docs).
fn view_columns(
    definition: &str,
    attrs: &[(i16, String)],
    dependencies: Arc<[ColumnSource]>,
    functions: &FunctionCatalog,
) -> Vec<Arc<[ColumnSource]>> {
    let len = attrs.iter().map(|(n, _)| *n).max().unwrap_or(0).max(0) as usize;
    // The definition is printed with schema-qualified names where the search path would not
    // find them, so an empty search path (`public`) reads it as the server does.
    let path = vec!["public".to_owned()];
    let analysis = analyze(definition, &AnalyzeContext::new(&path, functions));
    let profile = match analysis.statements.as_slice() {
        [one] => Some(&one.profile),
        _ => None,
    };
    let reads_only_tables = profile.is_some_and(|p| {
        p.class == StatementClass::Read
            && p.tables_read.iter().all(|t| {
                dependencies.iter().any(|d| match d {
                    ColumnSource::Column(c) => &c.table == t,
                    ColumnSource::WholeRow(w) => w == t,
                })
            })
    });
    let aligned = profile.filter(|p| {
        reads_only_tables && p.columns.len() == len && !p.columns.iter().any(|c| c.wildcard)
    });
    (0..len)
        .map(|i| match aligned.and_then(|p| p.columns.get(i)) {
            Some(out) => Arc::from(out.sources.iter().cloned().collect::<Vec<_>>()),
            None => Arc::clone(&dependencies),
        })
        .collect()
}

/// An identifier quoted for SQL: `"` doubled inside double quotes.
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Column origin caches by server database.
#[derive(Debug, Default)]
pub struct ColumnCatalogs {
    by_database: Mutex<HashMap<String, Arc<ColumnCatalog>>>,
}

impl ColumnCatalogs {
    /// The cache of `database`, created empty on first use.
    pub fn get(
        &self,
        database: &str,
        pools: &Arc<MetadataPools>,
        functions: &Arc<FunctionCatalog>,
    ) -> Arc<ColumnCatalog> {
        let mut all = self
            .by_database
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(all.entry(database.to_owned()).or_insert_with(|| {
            Arc::new(ColumnCatalog::new(
                database,
                Arc::clone(pools),
                Arc::clone(functions),
            ))
        }))
    }
}
