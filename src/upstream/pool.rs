//! Authenticated server connections kept for the next session (session pooling).
//!
//! One deadpool pool per key: server database, server login, and every startup parameter the
//! client passed (`application_name`, `DateStyle`, `TimeZone`, `options` …). A pooled
//! connection was therefore started with exactly the parameters the next client asks for, and
//! `RESET` behaves as on a direct connection. A session takes a connection at start and gives it
//! back at its end; pgward then sends `DISCARD ALL` and waits for an idle ReadyForQuery before
//! the connection can serve anyone else. A connection is closed instead when the session ended
//! in a transaction, mid-statement or mid-COPY, when the reset fails, when it is older than
//! `max_lifetime`, or when the server sent anything while it was idle (a terminated backend).
//!
//! What pooling cannot hide, and the README lists: the next session sees the same backend pid
//! and `backend_start`; per-process state that `DISCARD ALL` keeps (loaded libraries, plan and
//! function caches, `pg_stat` counters) carries over.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use deadpool::managed::{
    self, Metrics as ObjectMetrics, Object, PoolError, RecycleError, Timeouts,
};
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tracing::{debug, warn};

use super::connect::{OpenGauge, ServerHalves};
use super::{Connected, Error, Login, StartupParams, connect};
use crate::config::{Pool as PoolSettings, Upstream};
use crate::metrics::Metrics;
use crate::net::read_frame;
use crate::proto::{ErrorFields, tag};

/// Terminate, as a client sends it.
const TERMINATE: [u8; 5] = [tag::TERMINATE, 0, 0, 0, 4];

/// `DISCARD ALL` as a simple Query.
const DISCARD_ALL: &[u8] = b"Q\0\0\0\x10DISCARD ALL\0";

/// The most a reset may take before the connection is closed instead.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// Frames read while resetting are small (CommandComplete, ParameterStatus, notices).
const RESET_FRAME_LIMIT: usize = 1 << 20;

/// Every pool, by key, and how to make connections.
pub struct Pools {
    upstream: Upstream,
    tls: Option<Arc<ClientConfig>>,
    settings: PoolSettings,
    metrics: Arc<Metrics>,
    pools: Mutex<HashMap<PoolKey, Keyed>>,
}

type Pool = managed::Pool<Manager>;

/// A pool and when a session last asked for it: a pool is forgotten only once it is empty and
/// unasked for longer than `idle_timeout`, so a session that just looked it up never ends up
/// with a pool nobody else can find.
struct Keyed {
    pool: Pool,
    asked: std::time::Instant,
}

/// What makes two sessions' server connections interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    database: String,
    user: String,
    params: Vec<(String, String)>,
}

/// Makes and checks the connections of one pool.
pub struct Manager {
    upstream: Upstream,
    tls: Option<Arc<ClientConfig>>,
    login: Login,
    params: StartupParams,
    max_lifetime: Duration,
    metrics: Arc<Metrics>,
}

/// A session's server connection: from a pool, or opened for it alone.
#[derive(Debug)]
pub enum Lease {
    /// Goes back to its pool at the session's end.
    Pooled(Object<Manager>),
    /// Closed at the session's end.
    Direct(Box<Connected>),
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("login", &self.login)
            .field("database", &self.params.database)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pools").finish_non_exhaustive()
    }
}

// === impl Pools ===

impl Pools {
    /// No connections yet; pools are made per key on first use.
    pub fn new(
        upstream: Upstream,
        tls: Option<Arc<ClientConfig>>,
        settings: PoolSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Pools {
            upstream,
            tls,
            settings,
            metrics,
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a session on client database `database` with `roles` takes a pooled connection:
    /// pooling is on and neither is excluded.
    pub fn pools_session(&self, database: &str, roles: &[String]) -> bool {
        let s = &self.settings;
        s.enabled
            && !s.exclude_databases.iter().any(|g| g.is_match(database))
            && !roles.iter().any(|r| s.exclude_roles.contains(r))
    }

    /// Server connections waiting in a pool for a session.
    pub fn idle(&self) -> usize {
        let pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools.values().map(|k| k.pool.status().available).sum()
    }

    /// A server connection for a session: a pooled one when `pooled` (see
    /// [`Pools::pools_session`]), else a new one.
    ///
    /// # Errors
    /// [`Error::PoolExhausted`] when no pooled connection came free within `acquire_timeout`;
    /// otherwise whatever connecting failed with.
    pub async fn acquire(
        &self,
        login: Login,
        params: StartupParams,
        pooled: bool,
    ) -> Result<Lease, Error> {
        if !pooled {
            let mut conn = connect(&self.upstream, self.tls.as_ref(), &login, &params).await?;
            count_open(&self.metrics, &mut conn);
            return Ok(Lease::Direct(Box::new(conn)));
        }
        let pool = self.pool(login, params)?;
        let timeouts = Timeouts {
            wait: Some(self.settings.acquire_timeout),
            create: None,
            recycle: None,
        };
        let size_before = pool.status().size;
        match pool.timeout_get(&timeouts).await {
            Ok(obj) => {
                if pool.status().size == size_before {
                    self.metrics.upstream_reused.inc();
                }
                Ok(Lease::Pooled(obj))
            }
            Err(PoolError::Backend(e)) => Err(e),
            Err(PoolError::Timeout(_)) => Err(Error::PoolExhausted {
                waited: self.settings.acquire_timeout,
                max_size: self.settings.max_size,
            }),
            Err(e) => Err(Error::Protocol(format!("connection pool: {e}"))),
        }
    }

    fn pool(&self, login: Login, params: StartupParams) -> Result<Pool, Error> {
        let mut sorted = params.passthrough.clone();
        sorted.sort();
        let key = PoolKey {
            database: params.database.clone(),
            user: login.user.clone(),
            params: sorted,
        };
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(keyed) = pools.get_mut(&key) {
            keyed.asked = std::time::Instant::now();
            return Ok(keyed.pool.clone());
        }
        let manager = Manager {
            upstream: self.upstream.clone(),
            tls: self.tls.clone(),
            login,
            params,
            max_lifetime: self.settings.max_lifetime,
            metrics: Arc::clone(&self.metrics),
        };
        let pool = Pool::builder(manager)
            .max_size(self.settings.max_size)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Protocol(format!("connection pool: {e}")))?;
        pools.insert(
            key,
            Keyed {
                pool: pool.clone(),
                asked: std::time::Instant::now(),
            },
        );
        Ok(pool)
    }

    /// Closes connections idle past `idle_timeout` or older than `max_lifetime`, and forgets
    /// pools left empty. Run periodically by [`Pools::reap_forever`].
    pub fn reap(&self) {
        let idle = self.settings.idle_timeout;
        let lifetime = self.settings.max_lifetime;
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        for keyed in pools.values() {
            let removed = keyed
                .pool
                .retain(|_, m| m.last_used() < idle && m.age() < lifetime)
                .removed;
            for conn in removed {
                tokio::spawn(close(conn));
            }
        }
        pools.retain(|_, k| {
            let status = k.pool.status();
            status.size > 0 || status.waiting > 0 || k.asked.elapsed() < idle
        });
    }

    /// Ends every idle pooled server session with Terminate (at shutdown, so the server logs a
    /// clean disconnect rather than an unexpected EOF).
    pub async fn close_idle(&self) {
        let removed: Vec<Connected> = {
            let pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
            pools
                .values()
                .flat_map(|k| k.pool.retain(|_, _| false).removed)
                .collect()
        };
        for conn in removed {
            close(conn).await;
        }
    }

    /// Reaps every few seconds, for as long as pgward runs.
    pub async fn reap_forever(self: Arc<Self>) {
        let every =
            (self.settings.idle_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.reap();
        }
    }
}

/// Counts a new connection in the open and opened metrics.
fn count_open(metrics: &Metrics, conn: &mut Connected) {
    metrics.upstream_opened.inc();
    metrics.upstream_open.inc();
    conn.open = Some(OpenGauge(metrics.upstream_open.clone()));
}

/// Sends Terminate and closes, best effort.
async fn close(mut conn: Connected) {
    if let Some(mut server) = conn.server.take() {
        let _ = server.write.write_all(&TERMINATE).await;
        let _ = server.write.shutdown().await;
    }
}

// === impl Lease ===

impl Lease {
    /// The connection.
    pub fn conn(&mut self) -> &mut Connected {
        match self {
            Lease::Pooled(obj) => obj,
            Lease::Direct(conn) => conn,
        }
    }

    /// Whether the connection goes back to a pool at the session's end.
    pub fn is_pooled(&self) -> bool {
        matches!(self, Lease::Pooled(_))
    }

    /// Ends the session's use of the connection. `server` is the socket the relay gives back
    /// when the session ended cleanly between transactions: a pooled connection is then reset
    /// and returned; anything else is closed.
    pub async fn release(self, server: Option<ServerHalves>) {
        match (self, server) {
            (Lease::Pooled(mut obj), Some(mut server)) => match reset(&mut server).await {
                Ok(()) => obj.server = Some(server),
                Err(e) => {
                    // Taken out of the pool, the connection closes as it is dropped.
                    debug!(error = %e, "Server connection not reusable; closing it");
                    drop(Object::take(obj));
                }
            },
            (Lease::Pooled(obj), None) => drop(Object::take(obj)),
            (Lease::Direct(mut conn), server) => {
                if let Some(server) = server {
                    conn.server = Some(server);
                }
                close(*conn).await;
            }
        }
    }
}

/// `DISCARD ALL`, then the idle ReadyForQuery: anything else and the connection is not reused.
async fn reset(server: &mut ServerHalves) -> Result<(), Error> {
    tokio::time::timeout(RESET_TIMEOUT, async {
        server.write.write_all(DISCARD_ALL).await?;
        server.write.flush().await?;
        let mut buf = BytesMut::new();
        let mut completed = false;
        loop {
            let (frame_tag, body) = read_frame(&mut server.read, &mut buf, RESET_FRAME_LIMIT)
                .await?
                .ok_or_else(|| Error::Protocol("server closed during reset".into()))?;
            match frame_tag {
                tag::COMMAND_COMPLETE => completed = true,
                tag::PARAMETER_STATUS | tag::NOTICE_RESPONSE | tag::NOTIFICATION_RESPONSE => {}
                tag::ERROR_RESPONSE => {
                    let fields = ErrorFields::parse(&body)?;
                    return Err(Error::Protocol(format!(
                        "DISCARD ALL failed: {} ({})",
                        fields.message, fields.code
                    )));
                }
                tag::READY_FOR_QUERY
                    if completed && body.first() == Some(&b'I') && buf.is_empty() =>
                {
                    return Ok(());
                }
                other => {
                    return Err(Error::Protocol(format!(
                        "unexpected message '{}' during reset",
                        char::from(other)
                    )));
                }
            }
        }
    })
    .await
    .map_err(|_| Error::Timeout)?
}

/// Whether the server sent anything (or closed) on an idle connection: one poll, no waiting.
async fn has_input(read: &mut (dyn AsyncRead + Send + Unpin)) -> bool {
    let mut byte = [0u8; 1];
    std::future::poll_fn(|cx| {
        let mut buf = ReadBuf::new(&mut byte);
        Poll::Ready(!Pin::new(&mut *read).poll_read(cx, &mut buf).is_pending())
    })
    .await
}

// === impl Manager ===

impl managed::Manager for Manager {
    type Type = Connected;
    type Error = Error;

    async fn create(&self) -> Result<Connected, Error> {
        let mut conn =
            connect(&self.upstream, self.tls.as_ref(), &self.login, &self.params).await?;
        count_open(&self.metrics, &mut conn);
        Ok(conn)
    }

    async fn recycle(
        &self,
        conn: &mut Connected,
        metrics: &ObjectMetrics,
    ) -> managed::RecycleResult<Error> {
        if metrics.age() >= self.max_lifetime {
            return Err(RecycleError::message("older than max_lifetime"));
        }
        let Some(server) = conn.server.as_mut() else {
            return Err(RecycleError::message("not returned cleanly"));
        };
        if has_input(&mut *server.read).await {
            warn!(
                pid = conn.backend_pid,
                "Pooled server connection closed or spoke while idle; dropping it"
            );
            return Err(RecycleError::message("server closed or spoke while idle"));
        }
        Ok(())
    }
}
