//! The server's function catalog (`pg_proc`), loaded once per database and shared by sessions.
//!
//! The analyzer needs to know which functions are immutable or stable built-ins (reads) and
//! which are volatile or user-defined (code). A database whose catalog can't be loaded is
//! analyzed with the compiled-in list only, which treats every other function as code: failing
//! closed, never open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::{debug, warn};

use super::metadata::{self, MetadataPools};
use crate::sql::{FunctionCatalog, FunctionInfo, Volatility};

const QUERY: &str = "SELECT n.nspname::text, p.proname::text, p.provolatile::text, \
     n.nspname IN ('pg_catalog', 'information_schema') \
     FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace";

/// Catalogs by server database name.
#[derive(Debug, Default)]
pub struct Catalogs {
    by_database: Mutex<HashMap<String, Arc<FunctionCatalog>>>,
}

// === impl Catalogs ===

impl Catalogs {
    /// The catalog of `database`, loading it on first use.
    pub async fn get(&self, pools: &MetadataPools, database: &str) -> Arc<FunctionCatalog> {
        if let Some(c) = self.lock().get(database) {
            return Arc::clone(c);
        }
        // Loaded outside the lock: two sessions racing on a cold database both load it, which
        // costs one extra query and nothing else.
        let catalog = match load(pools, database).await {
            Ok(c) => {
                debug!(database, "Function catalog loaded");
                Arc::new(c)
            }
            Err(e) => {
                warn!(database, error = %e, "Function catalog unavailable; unknown functions count as code");
                return Arc::new(FunctionCatalog::builtin_only());
            }
        };
        self.lock()
            .insert(database.to_owned(), Arc::clone(&catalog));
        catalog
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<FunctionCatalog>>> {
        self.by_database
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

async fn load(pools: &MetadataPools, database: &str) -> Result<FunctionCatalog, metadata::Error> {
    let client = pools.get(database).await?;
    let rows = client.query(QUERY, &[]).await?;
    let mut functions = Vec::with_capacity(rows.len());
    for row in rows {
        let volatility = match row.try_get::<_, String>(2)?.as_str() {
            "i" => Volatility::Immutable,
            "s" => Volatility::Stable,
            _ => Volatility::Volatile,
        };
        functions.push(FunctionInfo {
            schema: row.try_get(0)?,
            name: row.try_get(1)?,
            volatility,
            builtin: row.try_get(3)?,
        });
    }
    Ok(FunctionCatalog::from_rows(functions))
}
