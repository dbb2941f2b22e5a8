//! pgward's own tokio-postgres connections to the server (catalog lookups, the shared approval
//! store): configured from `[upstream]`, over the same TLS as client sessions' connections.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use rustls::ClientConfig;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, Socket};

use crate::config::{SslMode, Upstream};

/// How pgward's own connections reach the server.
#[derive(Clone)]
pub struct ClientSettings {
    upstream: Upstream,
    tls: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings")
            .field("host", &self.upstream.host)
            .field("port", &self.upstream.port)
            .finish_non_exhaustive()
    }
}

/// A notification received on a [`ClientSettings::listen`] connection, or its loss.
#[derive(Debug)]
pub enum Heard {
    /// `NOTIFY channel, payload`.
    Notification {
        /// The payload.
        payload: String,
    },
    /// The connection ended; the listener reconnects.
    Lost(String),
}

// === impl ClientSettings ===

impl ClientSettings {
    /// Connections to `upstream`, over TLS when `tls` is given.
    pub fn new(upstream: Upstream, tls: Option<Arc<ClientConfig>>) -> Self {
        ClientSettings { upstream, tls }
    }

    fn config(&self, database: &str, application: &str) -> tokio_postgres::Config {
        let cfg = &self.upstream;
        let mut pg = tokio_postgres::Config::new();
        pg.host(&cfg.host)
            .port(cfg.port)
            .user(&cfg.user)
            .dbname(database)
            .application_name(application)
            .connect_timeout(cfg.connect_timeout);
        if let Some(p) = &cfg.password {
            pg.password(p.expose());
        }
        if self.tls.is_some() {
            pg.ssl_mode(match cfg.sslmode {
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            });
        }
        pg
    }

    /// A lazy pool of `size` connections to `database`: nothing connects until the first `get`.
    ///
    /// # Errors
    /// When the pool can't be built.
    pub fn pool(
        &self,
        database: &str,
        application: &str,
        size: usize,
    ) -> Result<Pool, deadpool_postgres::BuildError> {
        let pg = self.config(database, application);
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &self.tls {
            Some(tls) => {
                let connector = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                Manager::from_config(pg, connector, manager_config)
            }
            None => Manager::from_config(pg, tokio_postgres::NoTls, manager_config),
        };
        let wait = self.upstream.connect_timeout.max(Duration::from_secs(1));
        Pool::builder(manager)
            .max_size(size)
            .wait_timeout(Some(wait))
            .create_timeout(Some(wait))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
    }

    /// Connects to `database`, runs `LISTEN channel`, and forwards what it hears until the
    /// connection ends (the last message is then [`Heard::Lost`]) or `tx` is dropped.
    pub async fn listen(
        &self,
        database: &str,
        channel: &str,
        tx: tokio::sync::mpsc::Sender<Heard>,
    ) {
        let pg = self.config(database, "pgward-listen");
        let why = match &self.tls {
            Some(tls) => {
                let connector = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                listen_on(pg, connector, channel, &tx).await
            }
            None => listen_on(pg, tokio_postgres::NoTls, channel, &tx).await,
        };
        let _ = tx.send(Heard::Lost(why)).await;
    }
}

/// The body of [`ClientSettings::listen`]; returns why it stopped.
async fn listen_on<T>(
    pg: tokio_postgres::Config,
    tls: T,
    channel: &str,
    tx: &tokio::sync::mpsc::Sender<Heard>,
) -> String
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = match pg.connect(tls).await {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    // The connection must be polled for the LISTEN to complete, and for notifications after.
    let quoted = format!("LISTEN \"{}\"", channel.replace('"', "\"\""));
    let listen = client.batch_execute(&quoted);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            r = &mut listen, if !listening => {
                if let Err(e) = r {
                    return e.to_string();
                }
                listening = true;
                // The listener is live: whoever waits may have missed a notification before it.
                if tx.send(Heard::Notification { payload: String::new() }).await.is_err() {
                    return "stopped".to_owned();
                }
            }
            m = std::future::poll_fn(|cx| connection.poll_message(cx)) => match m {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let heard = Heard::Notification { payload: n.payload().to_owned() };
                    if tx.send(heard).await.is_err() {
                        return "stopped".to_owned();
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return e.to_string(),
                None => return "connection closed".to_owned(),
            },
        }
    }
}
