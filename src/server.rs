//! The listener: accepts clients and runs one session task each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{error, info};

use crate::approval::store::{Embedded, Postgres};
use crate::approval::{Approvals, Store, StoreError, Webhook};
use crate::auth::{self, Identities};
use crate::config::{ApprovalStore, Config, TlsMode};
use crate::session::{self, CancelRegistry, Shared};
use crate::tls;
use crate::upstream::ClientSettings;

/// Statement texts whose profiles are kept: a few MiB for typical statements.
const PROFILE_CACHE_ENTRIES: usize = 10_000;

/// How often the rules directory is checked for changes.
const RULES_POLL: Duration = Duration::from_secs(1);

/// Errors starting pgward.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The identities file is unusable.
    #[error(transparent)]
    Identities(#[from] auth::Error),
    /// A TLS file is unusable.
    #[error(transparent)]
    Tls(#[from] tls::Error),
    /// The rules can't be loaded.
    #[error("rules: {0}")]
    Rules(#[from] crate::policy::Error),
    /// The masking key can't be read or created.
    #[error("masking key: {0}")]
    MaskKey(#[from] crate::keyfile::Error),
    /// The audit log can't be opened.
    #[error(transparent)]
    Audit(#[from] crate::audit::Error),
    /// The metrics can't be set up.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The approval store can't be opened.
    #[error(transparent)]
    Approvals(#[from] crate::approval::StoreError),
    /// The approvals webhook can't be set up.
    #[error("approvals webhook: {0}")]
    Webhook(#[from] reqwest::Error),
    /// The admin listener can't be started.
    #[error(transparent)]
    Admin(#[from] crate::admin::Error),
    /// The `[token]` key set or agent key is unusable.
    #[error("token: {0}")]
    Token(#[from] crate::auth::token::SetupError),
    /// The listen address can't be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A bound pgward, ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    admin: Option<crate::admin::Listener>,
}

// === impl Server ===

impl Server {
    /// Loads identities and TLS material and binds the listen address.
    ///
    /// # Errors
    /// When a file is unusable or the address can't be bound.
    pub async fn bind(config: Config) -> Result<Server, Error> {
        let identities = Identities::load(&config.identities)?;
        let client_tls = arc_swap::ArcSwapOption::new(client_tls(&config)?.map(Arc::new));
        let upstream_tls =
            tls::upstream_config(config.upstream.sslmode, config.upstream.ca_file.as_deref())?;
        let rules = session::RulesHandle::load(&config.rules)?;
        let mask_key = mask_key(&config)?;
        let metadata = Arc::new(session::MetadataPools::new(
            config.upstream.clone(),
            upstream_tls.clone(),
        ));
        let approvals = approvals(&config, upstream_tls.clone()).await?;
        let audit = match &config.audit {
            Some(c) => match crate::audit::Options::from_config(c)? {
                Some(options) => Some(crate::audit::AuditLog::open(options)?),
                None => None,
            },
            None => None,
        };
        let metrics = Arc::new(crate::metrics::Metrics::new()?);
        if let Some(log) = &audit {
            log.measure_with(crate::audit::Meter {
                records: metrics.audit_records.clone(),
                write_seconds: metrics.audit_write_seconds.clone(),
            });
        }
        follow_approval_events(&approvals, audit.clone(), Arc::clone(&metrics));
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let admin = match &config.admin {
            Some(admin) => Some(crate::admin::Listener::bind(admin).await?),
            None => None,
        };
        let pools = Arc::new(crate::upstream::Pools::new(
            config.upstream.clone(),
            upstream_tls.clone(),
            config.pool.clone(),
            Arc::clone(&metrics),
        ));
        tokio::spawn(Arc::clone(&pools).reap_forever());
        let tokens = match &config.token {
            Some(settings) => Some(Arc::new(crate::auth::TokenVerifier::start(settings)?)),
            None => None,
        };
        let shared = Arc::new(Shared {
            tokens,
            pools,
            config,
            identities,
            client_tls,
            upstream_tls,
            cancel: Arc::new(CancelRegistry::default()),
            process_secret: rand::random(),
            next_session_id: AtomicU64::new(1),
            profiles: Arc::new(crate::sql::ProfileCache::new(PROFILE_CACHE_ENTRIES)),
            catalogs: session::Catalogs::default(),
            metadata,
            columns: session::ColumnCatalogs::default(),
            mask_key,
            rules,
            refusal_token: session::refusal_token(),
            approvals,
            audit,
            metrics,
            shutdown: tokio::sync::watch::Sender::new(false),
        });
        Ok(Server {
            listener,
            shared,
            admin,
        })
    }

    /// The address actually bound (useful with port 0).
    ///
    /// # Errors
    /// When the socket can't tell.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address the admin API actually bound, when `[admin]` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// What every session shares (the admin API serves from it too).
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// The live rule set (for reload status).
    pub fn rules(&self) -> Arc<session::RulesHandle> {
        Arc::clone(&self.shared.rules)
    }

    /// Accepts clients until the task is dropped. Each client runs in its own task, so one
    /// client's failure never touches another's; the admin API, when configured, is served by
    /// its own task beside them.
    pub async fn run(mut self) {
        info!(
            listen = %self.local_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string()),
            identities = self.shared.identities.len(),
            upstream = %format!("{}:{}", self.shared.config.upstream.host, self.shared.config.upstream.port),
            "pgward is serving"
        );
        let _reloader = AbortOnDrop(tokio::spawn(
            Arc::clone(&self.shared.rules).watch(RULES_POLL),
        ));
        let _tls_reloader =
            AbortOnDrop(tokio::spawn(reload_tls_on_hangup(Arc::clone(&self.shared))));
        let _admin = self
            .admin
            .take()
            .map(|admin| AbortOnDrop(tokio::spawn(admin.serve(Arc::clone(&self.shared)))));
        loop {
            match self.listener.accept().await {
                Ok((tcp, peer)) => {
                    tokio::spawn(session::serve_client(tcp, peer, Arc::clone(&self.shared)));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    error!(error = %e, "Accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Stops a background task when its owner goes away.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The approval service on the configured store: redb in `data_dir` (in memory without one), or
/// the shared PostgreSQL table, whose changes made elsewhere arrive by LISTEN.
async fn approvals(
    config: &Config,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Arc<Approvals>, Error> {
    let cfg = &config.approvals;
    let webhook = match &cfg.webhook_url {
        Some(url) => Some(Webhook::start(url.clone(), cfg.webhook_timeout)?),
        None => None,
    };
    Ok(match &cfg.store {
        ApprovalStore::Embedded => {
            let store = match &config.data_dir {
                Some(dir) => {
                    std::fs::create_dir_all(dir).map_err(|e| StoreError::Embedded {
                        path: dir.display().to_string(),
                        message: e.to_string(),
                    })?;
                    Embedded::open(&dir.join("approvals.redb"))?
                }
                None => {
                    tracing::warn!(
                        "No data_dir: approval requests are kept in memory and lost on restart"
                    );
                    Embedded::in_memory()?
                }
            };
            Approvals::new(Store::Embedded(store), webhook)
        }
        ApprovalStore::Postgres { database } => {
            let settings = ClientSettings::new(config.upstream.clone(), tls);
            let pool = settings
                .pool(database, "pgward-approvals", APPROVAL_POOL_SIZE)
                .map_err(|e| StoreError::Postgres(e.to_string()))?;
            let store = Postgres::open(pool).await?;
            let service = Approvals::new(Store::Postgres(store), webhook);
            service.spawn_listener(settings, database.clone());
            service
        }
    })
}

/// Follows every approval event this process sees (requests its sessions make, decisions its
/// admin API takes, expiries and withdrawals) until the service is dropped: each is counted, and
/// recorded in the audit log when there is one.
fn follow_approval_events(
    approvals: &Arc<Approvals>,
    log: Option<crate::audit::AuditLog>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    use crate::approval::EventKind;
    use crate::audit::{ApprovalEvent, ApprovalEventKind, Record};
    use tokio::sync::broadcast::error::RecvError;
    let mut events = approvals.subscribe();
    tokio::spawn(async move {
        loop {
            let e = match events.recv().await {
                Ok(e) => e,
                Err(RecvError::Lagged(n)) => {
                    tracing::error!(missed = n, "Fell behind the approval events");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            metrics
                .approval_events
                .with_label_values(&[e.kind.as_str()])
                .inc();
            let r = &e.request.request;
            if !matches!(e.kind, EventKind::Created | EventKind::GrantUsed)
                && let Some(closed) = r.closed_at()
            {
                let waited = closed
                    .as_unix_millis()
                    .saturating_sub(r.created_at().as_unix_millis());
                metrics.approval_closed(Duration::from_millis(waited));
            }
            let Some(log) = &log else {
                continue;
            };
            let event = match e.kind {
                EventKind::Created => ApprovalEventKind::Created,
                EventKind::Approved => ApprovalEventKind::Approved,
                EventKind::Rejected => ApprovalEventKind::Rejected,
                EventKind::Expired => ApprovalEventKind::Expired,
                EventKind::Withdrawn => ApprovalEventKind::Withdrawn,
                EventKind::GrantUsed => ApprovalEventKind::GrantUsed,
            };
            // Session labels are `INSTANCE-NUMBER` (see the handshake).
            let session = e
                .request
                .origin
                .session
                .rsplit('-')
                .next()
                .and_then(|n| n.parse().ok());
            // Not awaited: the writer keeps the order, and a failed log shows on statements.
            log.record_detached(Record::Approval(ApprovalEvent {
                request: r.id().to_string(),
                event,
                session,
                actor: e.actor.unwrap_or_else(|| "pgward".to_owned()),
                reason: e.reason,
                time: std::time::UNIX_EPOCH + Duration::from_millis(e.at),
            }));
        }
    });
}

/// Connections to the shared approval store: decisions and lookups are short.
const APPROVAL_POOL_SIZE: usize = 4;

/// Bytes in a masking key pgward creates.
const MASK_KEY_BYTES: usize = 32;

/// The key of the `hash` and `fake` mask strategies: `mask_key_file`, else `data_dir/mask.key`
/// (both created when missing), else a key for this process only, so that hashed values don't
/// stay comparable across restarts.
fn mask_key(config: &Config) -> Result<Arc<[u8]>, Error> {
    let path = config
        .mask_key_file
        .clone()
        .or_else(|| config.data_dir.as_ref().map(|d| d.join("mask.key")));
    Ok(match path {
        Some(path) => crate::keyfile::load_or_create(&path, MASK_KEY_BYTES)?.into(),
        None => {
            tracing::warn!("No data_dir or mask_key_file: masked hashes change on every restart");
            (0..MASK_KEY_BYTES).map(|_| rand::random::<u8>()).collect()
        }
    })
}

/// Client TLS as configured: the acceptor, and the client-certificate check when `client_ca` is
/// set; `None` when TLS is off.
fn client_tls(config: &Config) -> Result<Option<session::ClientTls>, Error> {
    let (Some((cert, key)), TlsMode::Allow | TlsMode::Require) =
        (&config.tls.cert_and_key, config.tls.mode)
    else {
        return Ok(None);
    };
    let client_auth = match &config.tls.client_certs {
        Some(c) => Some(tls::DeferredClientAuth::new(&c.ca_file)?),
        None => None,
    };
    let acceptor = TlsAcceptor::from(tls::server_config_with_client_auth(
        cert,
        key,
        client_auth.clone(),
    )?);
    Ok(Some(session::ClientTls {
        acceptor,
        client_auth,
    }))
}

/// Re-reads the client TLS certificate, key and client CA. New connections use them at once;
/// sessions already established keep theirs. Files that fail to load leave the current ones in
/// force (logged), so a half-copied certificate never takes TLS down.
pub fn reload_tls(shared: &Shared) -> bool {
    match client_tls(&shared.config) {
        Ok(fresh) => {
            shared.client_tls.store(fresh.map(Arc::new));
            info!("TLS certificates reloaded");
            true
        }
        Err(e) => {
            error!(error = %e, "TLS reload failed; the previous certificates stay in force");
            false
        }
    }
}

/// Reloads client TLS on every SIGHUP (the rules reload on the same signal).
async fn reload_tls_on_hangup(shared: Arc<Shared>) {
    let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        return;
    };
    while hangup.recv().await.is_some() {
        reload_tls(&shared);
    }
}
