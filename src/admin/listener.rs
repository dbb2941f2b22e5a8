//! The admin listener: accepts TCP connections, terminates TLS when configured, and serves
//! HTTP/1.1 on each with [`Api`].
//!
//! Every connection runs in its own task inside a [`JoinSet`] owned by the accept loop, so
//! dropping the loop (pgward stopping) ends them all. Each resource a client could hold is
//! bounded: connections at once, time to finish the TLS handshake, time to send headers, and a
//! connection's age.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use super::{Api, Error};
use crate::config::Admin;
use crate::session::Shared;

/// Connections served at once; more are closed on accept. Approvers are few, so this only
/// bounds what a misbehaving client can hold.
const MAX_CONNECTIONS: usize = 256;

/// Time a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a client has to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// After this long a connection is closed once its current request is answered, so that idle
/// keep-alive connections can't hold the connection slots forever.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

/// A bound admin listener, ready to serve.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

// === impl Listener ===

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("addr", &self.tcp.local_addr().ok())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Listener {
    /// Loads the HTTPS certificate (if any) and binds `config.listen`.
    ///
    /// # Errors
    /// When the certificate or key is unusable or the address can't be bound.
    pub async fn bind(config: &Admin) -> Result<Listener, Error> {
        let tls = match &config.cert_and_key {
            Some((cert, key)) => Some(TlsAcceptor::from(crate::tls::server_config(cert, key)?)),
            None => None,
        };
        let tcp = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        Ok(Listener { tcp, tls })
    }

    /// The address actually bound (useful with port 0).
    ///
    /// # Errors
    /// When the socket can't tell.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Serves the API until the task is dropped, which also ends every open connection.
    pub async fn serve(self, shared: Arc<Shared>) {
        let api = Arc::new(Api::new(shared));
        info!(
            listen = %self.local_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string()),
            tls = self.tls.is_some(),
            "Admin API is serving"
        );
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        if connections.len() >= MAX_CONNECTIONS {
                            warn!(%peer, limit = MAX_CONNECTIONS, "Admin connection refused: too many open");
                            continue;
                        }
                        connections.spawn(connection(tcp, peer, self.tls.clone(), Arc::clone(&api)));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        error!(error = %e, "Admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }
}

/// One client connection: TLS if configured, then HTTP/1.1 until the client closes, errs, or the
/// connection reaches its maximum age.
async fn connection(tcp: TcpStream, peer: SocketAddr, tls: Option<TlsAcceptor>, api: Arc<Api>) {
    match tls {
        None => http(tcp, peer, api).await,
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => http(stream, peer, api).await,
                Ok(Err(e)) => debug!(%peer, error = %e, "Admin TLS handshake failed"),
                Err(_) => debug!(%peer, "Admin TLS handshake timed out"),
            }
        }
    }
}

async fn http<S>(io: S, peer: SocketAddr, api: Arc<Api>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let api = Arc::clone(&api);
        async move { Ok::<_, Infallible>(api.handle(req, peer).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = tokio::time::sleep(MAX_CONNECTION_AGE) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "Admin connection ended with an error");
    }
}
