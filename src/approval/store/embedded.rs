//! The embedded store: a redb database file in `data_dir`, used by one pgward process.
//!
//! Every write is a committed (fsynced) redb transaction, so a request survives a crash or a
//! restart. redb calls block, so they run on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Change, StoreError, decode, encode};
use crate::approval::duty::{Error as DutyError, RequestId, State};
use crate::approval::ticket::Ticket;

/// Requests by id, as JSON.
const REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("requests");

/// The embedded store; cheap to clone.
#[derive(Clone)]
pub struct Embedded {
    db: Arc<Database>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

// === impl Embedded ===

impl Embedded {
    /// Opens (or creates) the database at `path`.
    ///
    /// # Errors
    /// When the file can't be opened, is not a redb database, or is held by another process.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let fail = |e: &dyn std::fmt::Display| StoreError::Embedded {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let db = Database::create(path).map_err(|e| fail(&e))?;
        Self::with(db, path).map_err(|e| fail(&e))
    }

    /// A store in memory, for a pgward without a `data_dir`: requests are lost on restart.
    ///
    /// # Errors
    /// Only if redb fails to set up its in-memory file.
    pub fn in_memory() -> Result<Self, StoreError> {
        let path = Path::new("(memory)");
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| StoreError::Embedded {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        Self::with(db, path).map_err(|e| StoreError::Embedded {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    fn with(db: Database, path: &Path) -> Result<Self, redb::Error> {
        // Create the table up front so that readers never see it missing.
        let w = db.begin_write()?;
        w.open_table(REQUESTS)?;
        w.commit()?;
        Ok(Embedded {
            db: Arc::new(db),
            path: Arc::new(path.to_owned()),
        })
    }

    pub(super) async fn insert(&self, ticket: &Ticket) -> Result<(), StoreError> {
        let id = ticket.request.id().as_str().to_owned();
        let bytes = encode(ticket);
        self.blocking(move |db| {
            let w = db.begin_write()?;
            {
                let mut t = w.open_table(REQUESTS)?;
                t.insert(id.as_str(), bytes.as_slice())?;
            }
            w.commit()?;
            Ok(())
        })
        .await
    }

    pub(super) async fn get(&self, id: &RequestId) -> Result<Option<Ticket>, StoreError> {
        let id = id.as_str().to_owned();
        let bytes = self
            .blocking(move |db| {
                let r = db.begin_read()?;
                let t = r.open_table(REQUESTS)?;
                Ok(t.get(id.as_str())?.map(|v| v.value().to_vec()))
            })
            .await?;
        bytes.map(|b| decode("?", &b)).transpose()
    }

    pub(super) async fn list(&self, pending_only: bool) -> Result<Vec<Ticket>, StoreError> {
        let rows = self
            .blocking(|db| {
                let r = db.begin_read()?;
                let t = r.open_table(REQUESTS)?;
                let mut rows = Vec::new();
                for entry in t.iter()? {
                    let (k, v) = entry?;
                    rows.push((k.value().to_owned(), v.value().to_vec()));
                }
                Ok(rows)
            })
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, bytes) in rows {
            let ticket = decode(&id, &bytes)?;
            if !pending_only || *ticket.request.state() == State::Pending {
                out.push(ticket);
            }
        }
        Ok(out)
    }

    pub(super) async fn update<T: Send + 'static>(
        &self,
        id: &RequestId,
        change: Change<T>,
    ) -> Result<Result<T, DutyError>, StoreError> {
        let key = id.as_str().to_owned();
        let missing = id.clone();
        self.blocking(move |db| {
            // redb allows one write transaction at a time: concurrent decisions are serialized.
            let w = db.begin_write()?;
            let result = {
                let mut t = w.open_table(REQUESTS)?;
                let Some(bytes) = t.get(key.as_str())?.map(|v| v.value().to_vec()) else {
                    return Err(Failure::NotFound(missing));
                };
                let mut ticket = decode(&key, &bytes).map_err(Failure::Store)?;
                let before = ticket.clone();
                let result = change(&mut ticket);
                let changed = result.is_ok() && ticket != before;
                if changed {
                    t.insert(key.as_str(), encode(&ticket).as_slice())?;
                }
                (result, changed)
            };
            if result.1 {
                w.commit()?;
            }
            Ok(result.0)
        })
        .await
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|db| {
            let r = db.begin_read()?;
            r.open_table(REQUESTS)?;
            Ok(())
        })
        .await
    }

    pub(super) async fn grant_candidates(
        &self,
        identity: &str,
        fingerprint: &str,
    ) -> Result<Vec<RequestId>, StoreError> {
        Ok(self
            .list(false)
            .await?
            .into_iter()
            .filter(|t| {
                *t.request.state() == State::Approved
                    && t.request.requester().identity == identity
                    && t.fingerprint == fingerprint
                    && t.grant_used.is_none()
            })
            .map(|t| t.request.id().clone())
            .collect())
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        let path = Arc::clone(&self.path);
        let result = tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| Failure::Other(e.to_string()));
        match result.and_then(|r| r) {
            Ok(v) => Ok(v),
            Err(Failure::NotFound(id)) => Err(StoreError::NotFound(id)),
            Err(Failure::Store(e)) => Err(e),
            Err(Failure::Other(message)) => Err(StoreError::Embedded {
                path: path.display().to_string(),
                message,
            }),
        }
    }
}

/// What went wrong inside a blocking call.
enum Failure {
    NotFound(RequestId),
    Store(StoreError),
    Other(String),
}

impl<E: Into<redb::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Other(e.into().to_string())
    }
}
