//! pgward's own connections to the server for catalog lookups: one small pool per database.
//!
//! These connections log in with the configured upstream credentials and only read `pg_catalog`.
//! They are separate from client sessions so that a lookup never runs inside a client's
//! transaction or sees its uncommitted DDL.

use deadpool_postgres::Pool;
use rustls::ClientConfig;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::Upstream;
use crate::upstream::ClientSettings;

/// Connections per database: lookups are short and rare (cache misses only).
const POOL_SIZE: usize = 2;

/// Metadata connection pools by server database.
pub struct MetadataPools {
    settings: ClientSettings,
    pools: Mutex<HashMap<String, Pool>>,
}

impl std::fmt::Debug for MetadataPools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataPools").finish_non_exhaustive()
    }
}

/// Why a metadata query failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection could be had from the pool.
    #[error("metadata connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The query failed.
    #[error("metadata query: {0}")]
    Query(#[from] tokio_postgres::Error),
    /// The pool could not be built.
    #[error("metadata pool: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
}

// === impl MetadataPools ===

impl MetadataPools {
    /// Pools that connect to `upstream`, over TLS when `tls` is given.
    pub fn new(upstream: Upstream, tls: Option<Arc<ClientConfig>>) -> Self {
        MetadataPools {
            settings: ClientSettings::new(upstream, tls),
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// A connection to `database`.
    ///
    /// # Errors
    /// When the server can't be reached or refuses the login.
    pub async fn get(&self, database: &str) -> Result<deadpool_postgres::Object, Error> {
        let pool = self.pool(database)?;
        Ok(pool.get().await?)
    }

    fn pool(&self, database: &str) -> Result<Pool, Error> {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = pools.get(database) {
            return Ok(p.clone());
        }
        let pool = self.build(database)?;
        pools.insert(database.to_owned(), pool.clone());
        Ok(pool)
    }

    /// A lazy pool: nothing connects until the first `get`.
    fn build(&self, database: &str) -> Result<Pool, Error> {
        Ok(self.settings.pool(database, "pgward-metadata", POOL_SIZE)?)
    }
}
