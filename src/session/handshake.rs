//! From a client's first byte to a relaying session: TLS, startup, authentication, upstream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use pgwire::messages::startup::Authentication;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{Instrument, debug, info, info_span, warn};

use super::hold::Holds;
use super::identity;
use super::recorder::Recorder;
use super::results::{Pipeline, ResultMasker, ResultTracker};
use super::{
    BackendKey, ClientStage, LiveRules, Refusal, Refusals, ServerStage, Shared, StatementTracker,
};
use crate::approval::{Origin, Party};
use crate::audit::{Record, SessionEnd, SessionStart};
use crate::auth::scram::{self, ScramServer, Verifier};
use crate::auth::{self, AuthMethod, Identity};
use crate::config::TlsMode;
use crate::net::{Stream, read_frame};
use crate::proto::{self, MessageReader, SqlState, StartupPacket, StartupRequest, tag};
use crate::sql::lexer_unsafe_parameter;
use crate::upstream::{self, StartupParams};

// SASL messages are a few hundred bytes; anything longer is not a client we want to parse.
const AUTH_FRAME_LIMIT: usize = 16 * 1024;

/// How the startup phase ended.
enum Outcome {
    /// Authenticated, with the server connection ready.
    Ready(Stream, Box<Established>),
    /// Refused: the refusal is written to the stream before it closes.
    Refused(Stream, Refusal),
    /// Nothing more to say: a cancel request, a client that hung up, or an answer already sent.
    Done,
}

/// How SSL/GSS negotiation ended.
enum Negotiated {
    Startup(Stream, StartupPacket),
    Refused(Stream, Refusal),
    Done,
}

/// Serves one client connection to its end. Never panics on client input; errors are reported to
/// the client as PostgreSQL would and logged.
pub async fn serve_client(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let id = shared.next_session_id.fetch_add(1, Ordering::Relaxed);
    let span = info_span!("session", id, %peer);
    async move {
        let _ = tcp.set_nodelay(true);
        shared.metrics.connections.inc();
        let deadline = shared.config.startup_timeout;
        // On timeout the half-done handshake is dropped and the socket closes, as PostgreSQL
        // does when authentication_timeout passes.
        match tokio::time::timeout(deadline, start(Stream::Plain(tcp), peer, &shared)).await {
            Ok(Outcome::Ready(client, established)) => {
                established.relay(client, &shared, id, peer).await;
            }
            Ok(Outcome::Refused(mut stream, refusal)) => {
                info!(code = refusal.code.code(), reason = %refusal.message, "Connection refused");
                shared
                    .metrics
                    .refused
                    .with_label_values(&[refusal.code.code()])
                    .inc();
                let mut err = BytesMut::new();
                refusal.write(&mut err);
                let _ = stream.write_all(&err).await;
                let _ = stream.flush().await;
                let _ = stream.shutdown().await;
            }
            Ok(Outcome::Done) => {}
            Err(_) => info!("Startup timed out"),
        }
    }
    .instrument(span)
    .await
}

/// A client that has authenticated, with its server connection ready.
struct Established {
    /// The server database.
    database: String,
    /// The database the client asked for.
    client_database: String,
    /// Whether the client connection is TLS.
    tls: bool,
    /// The client's application_name, if it sent one.
    application_name: String,
    identity: Identity,
    /// The server connection, pooled or not.
    lease: upstream::Lease,
    /// The server login it is authenticated as.
    upstream_user: String,
    registration: super::Registration,
}

async fn start(stream: Stream, peer: SocketAddr, shared: &Arc<Shared>) -> Outcome {
    match negotiate(stream, shared).await {
        Negotiated::Startup(mut stream, startup) => {
            match authenticate_and_connect(&mut stream, peer, shared, &startup).await {
                Ok(Some(established)) => Outcome::Ready(stream, Box::new(established)),
                Ok(None) => Outcome::Done,
                Err(refusal) => Outcome::Refused(stream, refusal),
            }
        }
        Negotiated::Refused(stream, refusal) => Outcome::Refused(stream, refusal),
        Negotiated::Done => Outcome::Done,
    }
}

/// Authentication through the upstream connection, then the client's welcome: AuthenticationOk,
/// the server's ParameterStatus, pgward's BackendKeyData, ReadyForQuery.
async fn authenticate_and_connect(
    stream: &mut Stream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    startup: &StartupPacket,
) -> Result<Option<Established>, Refusal> {
    if shared.config.tls.mode == TlsMode::Require && !stream.is_tls() {
        return Err(Refusal::new(
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            "pgward accepts only TLS connections",
        )
        .hint("connect with sslmode=require"));
    }

    let mut out = BytesMut::new();
    let unsupported: Vec<String> = startup
        .params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.clone())
        .collect();
    if startup.minor > 0 || !unsupported.is_empty() {
        proto::write_negotiate_protocol_version(&mut out, 0, unsupported);
    }
    if startup
        .param("replication")
        .is_some_and(|v| !matches!(v, "false" | "off" | "no" | "0"))
    {
        return Err(Refusal::new(
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            "pgward does not serve replication connections",
        ));
    }
    let user = startup.param("user").unwrap_or_default().to_owned();
    let client_db = startup
        .param("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_owned();

    let Some(identity) = login(stream, peer, shared, &user, &client_db, &mut out).await? else {
        return Ok(None);
    };
    let rules = shared.rules.current();
    let roles = rules.roles_for(&identity.name, &identity.roles, &identity.groups);
    if let Some(refused) =
        super::settings::judge_startup(&startup.params, &rules, &roles, &client_db)
    {
        info!(identity = %identity.name, reason = %refused.message, "Startup setting refused");
        return Err(
            Refusal::new(SqlState::INSUFFICIENT_PRIVILEGE, refused.message).hint(refused.hint),
        );
    }

    let upstream_cfg = &shared.config.upstream;
    let database = upstream_cfg.map_database(&client_db).ok_or_else(|| {
        Refusal::new(
            SqlState::INVALID_CATALOG_NAME,
            format!("database \"{client_db}\" does not exist"),
        )
    })?;
    let client_app = startup.param("application_name").unwrap_or("");
    let mut passthrough: Vec<(String, String)> = startup
        .params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "user" | "database" | "replication"))
        .filter(|(k, _)| !k.starts_with("_pq_."))
        .cloned()
        .collect();
    let server_app = identity::server_application_name(
        &upstream_cfg.application_name,
        client_app,
        &identity.name,
    );
    if let Some(app) = &server_app {
        passthrough.retain(|(k, _)| k != "application_name");
        passthrough.push(("application_name".to_owned(), app.clone()));
    }
    let params = StartupParams {
        database: database.to_owned(),
        passthrough,
    };
    let login = identity::upstream_login(upstream_cfg, &rules, &roles);
    let pooled = shared.pools.pools_session(&client_db, &roles);
    let upstream_user = login.user.clone();
    let mut lease = match shared.pools.acquire(login, params, pooled).await {
        Ok(lease) => lease,
        Err(upstream::Error::Server {
            code,
            message,
            frame,
        }) => {
            // The server's own refusal (no such database, too many connections …) is the
            // client's answer, as sent.
            info!(code, reason = %message, "Upstream refused the session");
            let _ = stream.write_all(&frame).await;
            let _ = stream.flush().await;
            return Ok(None);
        }
        Err(e) => {
            warn!(error = %e, detail = ?e, "Upstream connection failed");
            return Err(e.into());
        }
    };
    let upstream = lease.conn();

    let registration = shared.cancel.register(BackendKey {
        pid: upstream.backend_pid,
        secret: upstream.backend_secret.clone(),
    });
    proto::write_auth(&mut out, Authentication::Ok);
    for frame in &upstream.startup_frames {
        identity::client_view_of_startup_frame(frame, server_app.is_some(), client_app, &mut out);
    }
    let key = registration.key();
    proto::write_backend_key_data(&mut out, key.pid, key.secret);
    proto::write_ready_for_query(&mut out, upstream.ready_status);
    stream.write_all(&out).await.map_err(client_gone)?;
    stream.flush().await.map_err(client_gone)?;

    info!(
        identity = %identity.name,
        roles = ?roles,
        method = %identity.method,
        database = %client_db,
        upstream_user = %upstream_user,
        pooled = lease.is_pooled(),
        tls = stream.is_tls(),
        application_name = client_app,
        "Session started"
    );
    Ok(Some(Established {
        identity,
        lease,
        upstream_user,
        registration,
        database: database.to_owned(),
        client_database: client_db.to_string(),
        tls: stream.is_tls(),
        application_name: client_app.to_owned(),
    }))
}

/// The configured authentication method for this connection, then its exchange. `Ok(None)`:
/// the client hung up mid-exchange (psql does this to prompt for a password, then reconnects).
/// Every failure reaches the client as the same terse message; the reason goes to the log.
async fn login(
    stream: &mut Stream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    user: &str,
    database: &str,
    out: &mut BytesMut,
) -> Result<Option<Identity>, Refusal> {
    let Some(rule) = shared.config.auth.find(user, database, peer.ip()) else {
        info!(
            user,
            database, "Authentication refused: no [[auth]] entry matches"
        );
        return Err(identity::refused(user));
    };
    match rule.method {
        AuthMethod::Scram => authenticate(stream, shared, user, out).await,
        AuthMethod::Cert => identity::by_certificate(stream, shared, user).map(Some),
        AuthMethod::Token => identity::by_token(stream, peer, shared, user, out).await,
        AuthMethod::Reject => {
            info!(user, database, rule = %rule.at, "Authentication refused by a reject entry");
            Err(identity::refused(user))
        }
    }
}

/// The SSLRequest / GSSENCRequest / CancelRequest dance up to the StartupMessage.
async fn negotiate(mut stream: Stream, shared: &Arc<Shared>) -> Negotiated {
    loop {
        let body = match read_startup_packet(&mut stream).await {
            Ok(Some(body)) => body,
            Ok(None) => return Negotiated::Done,
            Err(r) => return Negotiated::Refused(stream, r),
        };
        let request = match proto::parse_startup_packet(&body) {
            Ok(r) => r,
            Err(e) => return Negotiated::Refused(stream, e.into()),
        };
        let answer: &[u8] = match request {
            StartupRequest::Ssl | StartupRequest::GssEnc if stream.is_tls() => {
                let r = Refusal::new(SqlState::PROTOCOL_VIOLATION, "encryption requested twice");
                return Negotiated::Refused(stream, r);
            }
            StartupRequest::Ssl => match (
                shared.client_tls.load_full(),
                shared.config.tls.mode,
                stream,
            ) {
                (Some(tls), TlsMode::Allow | TlsMode::Require, Stream::Plain(mut tcp)) => {
                    let acceptor = &tls.acceptor;
                    if tcp.write_all(b"S").await.is_err() {
                        return Negotiated::Done;
                    }
                    match acceptor.accept(tcp).await {
                        Ok(tls) => {
                            stream = Stream::ServerTls(Box::new(tls));
                            continue;
                        }
                        Err(e) => {
                            debug!(error = %e, "TLS handshake failed");
                            return Negotiated::Done;
                        }
                    }
                }
                (_, _, s) => {
                    stream = s;
                    b"N"
                }
            },
            StartupRequest::GssEnc => b"N",
            StartupRequest::Cancel(c) => {
                if let Some(backend) = shared.cancel.cancel(c.pid, &c.secret) {
                    debug!(pid = c.pid, "Forwarding cancel request");
                    let upstream = &shared.config.upstream;
                    if let Err(e) = upstream::cancel(upstream, backend.pid, &backend.secret).await {
                        warn!(error = %e, "Cancel request could not be forwarded");
                    }
                }
                return Negotiated::Done;
            }
            StartupRequest::Startup(p) => return Negotiated::Startup(stream, p),
        };
        if stream.write_all(answer).await.is_err() {
            return Negotiated::Done;
        }
    }
}

/// Reads one untyped startup packet's body. `None`: the client closed before sending anything.
async fn read_startup_packet(stream: &mut Stream) -> Result<Option<Vec<u8>>, Refusal> {
    let mut len = [0u8; 4];
    if stream.read_exact(&mut len).await.is_err() {
        return Ok(None);
    }
    let len = u32::from_be_bytes(len) as usize;
    if !(8..=proto::MAX_STARTUP_PACKET_LEN).contains(&len) {
        return Err(Refusal::new(
            SqlState::PROTOCOL_VIOLATION,
            "invalid length of startup packet",
        ));
    }
    let mut body = vec![0u8; len - 4];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|_| Refusal::new(SqlState::PROTOCOL_VIOLATION, "incomplete startup packet"))?;
    Ok(Some(body))
}

/// SCRAM-SHA-256 against the identities file. `Ok(None)`: the client hung up mid-exchange (psql
/// does this to prompt for a password, then reconnects).
async fn authenticate(
    stream: &mut Stream,
    shared: &Arc<Shared>,
    user: &str,
    out: &mut BytesMut,
) -> Result<Option<Identity>, Refusal> {
    let entry = shared.identities.get(user);
    let verifier = entry.map_or_else(
        || Verifier::fake(user, &shared.process_secret),
        |e| e.verifier.clone(),
    );
    let mut server = ScramServer::new(user, verifier, entry.is_some(), &rand::random());

    proto::write_auth(out, Authentication::SASL(vec![scram::MECHANISM.to_owned()]));
    stream.write_all(out).await.map_err(client_gone)?;
    stream.flush().await.map_err(client_gone)?;
    out.clear();

    let mut buf = BytesMut::new();
    let Some(initial) = read_password_message(stream, &mut buf).await? else {
        return Ok(None);
    };
    let mut r = MessageReader::new(&initial, "SASLInitialResponse");
    let mechanism = r.cstr()?;
    if mechanism != scram::MECHANISM.as_bytes() {
        return Err(Refusal::new(
            SqlState::PROTOCOL_VIOLATION,
            "unsupported SASL mechanism",
        ));
    }
    let len = r.i32()?;
    let data = r.bytes(usize::try_from(len).map_err(|_| proto::Error::Malformed {
        what: "SASLInitialResponse",
    })?)?;
    let server_first = server.client_first(data)?;
    proto::write_auth(
        out,
        Authentication::SASLContinue(server_first.into_bytes().into()),
    );
    stream.write_all(out).await.map_err(client_gone)?;
    stream.flush().await.map_err(client_gone)?;
    out.clear();

    let Some(last) = read_password_message(stream, &mut buf).await? else {
        return Ok(None);
    };
    let server_final = server.client_final(&last).inspect_err(|e| {
        if let auth::Error::Failed { user } = e {
            info!(user, known = entry.is_some(), "Authentication failed");
        }
    })?;
    proto::write_auth(
        out,
        Authentication::SASLFinal(server_final.into_bytes().into()),
    );
    let roles = entry.map(|e| e.roles.clone()).unwrap_or_default();
    Ok(Some(Identity {
        name: user.to_owned(),
        roles,
        groups: Vec::new(),
        method: AuthMethod::Scram,
    }))
}

pub(super) async fn read_password_message(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<Option<bytes::Bytes>, Refusal> {
    match read_frame(stream, buf, AUTH_FRAME_LIMIT).await {
        Ok(Some((tag::PASSWORD, body))) => Ok(Some(body)),
        Ok(Some(_)) => Err(Refusal::new(
            SqlState::PROTOCOL_VIOLATION,
            "expected SASL response",
        )),
        Ok(None) => Ok(None),
        Err(crate::net::FrameError::Io(_)) => Ok(None),
        Err(crate::net::FrameError::Proto(e)) => Err(e.into()),
    }
}

pub(super) fn client_gone(_: std::io::Error) -> Refusal {
    Refusal::new(SqlState::CONNECTION_FAILURE, "client closed the connection")
}

// === impl Established ===

impl Established {
    async fn relay(self, client: Stream, shared: &Shared, id: u64, peer: SocketAddr) {
        let Established {
            identity,
            mut lease,
            upstream_user,
            registration,
            database,
            client_database,
            tls,
            application_name,
        } = self;
        let started = std::time::Instant::now();
        let catalog = shared.catalogs.get(&shared.metadata, &database).await;
        let columns = shared.columns.get(&database, &shared.metadata, &catalog);
        let tracker = StatementTracker::new(Arc::clone(&shared.profiles), catalog);
        let rules = LiveRules::for_identity(Arc::clone(&shared.rules), &identity);
        let refusals = Arc::new(Refusals::default());
        let upstream = lease.conn();
        let (Some(server), leftover) = (
            upstream.server.take(),
            std::mem::take(&mut upstream.leftover),
        ) else {
            warn!("Server connection lost before the session began");
            return;
        };
        if upstream
            .startup_params()
            .any(|(name, value)| lexer_unsafe_parameter(name, value))
        {
            refusals.mark_lexer_unsafe();
        }
        let pipeline = Arc::new(Pipeline::default());
        let shutdown_pipeline = Arc::clone(&pipeline);
        let recorder = shared.audit.as_ref().map(|log| {
            let strict = shared
                .config
                .audit
                .as_ref()
                .is_some_and(|a| a.mode == crate::config::AuditMode::Strict);
            let mut recorder = Recorder::new(log.clone(), id, strict);
            if let Some(a) = &shared.config.audit {
                let roles = &rules.current().roles;
                if a.capture_rows_max_bytes > 0 && a.capture_roles.iter().any(|r| roles.contains(r))
                {
                    recorder.capture_rows(a.capture_rows_max_bytes);
                }
            }
            // Ordered before the session's statements; a failure shows on the first of them.
            recorder.record_detached(Record::SessionStart(SessionStart {
                session: id,
                time: std::time::SystemTime::now(),
                identity: identity.name.clone(),
                roles: rules.current().roles.clone(),
                client_addr: peer.to_string(),
                tls,
                application_name,
                database: client_database,
                upstream_user,
            }));
            recorder
        });
        let mut masker = ResultMasker::new(
            Arc::clone(&pipeline),
            LiveRules::for_identity(Arc::clone(&shared.rules), &identity),
            Arc::clone(&columns),
            Arc::clone(&shared.mask_key),
        );
        let holds = Holds::new(
            Arc::clone(&shared.approvals),
            Party::new(identity.name.clone(), rules.current().roles.clone()),
            Origin {
                session: format!("{}-{id}", shared.approvals.instance()),
                client_addr: peer.to_string(),
            },
            registration.signal(),
            Arc::clone(&refusals),
        );
        let mut client_stage = ClientStage::new(
            tracker,
            rules,
            &database,
            Arc::clone(&shared.refusal_token),
            Arc::clone(&refusals),
            ResultTracker::new(pipeline),
            columns,
            holds,
            recorder.clone(),
        );
        if let Some(r) = &recorder {
            masker.record_with(r.clone());
        }
        masker.count_with(Arc::clone(&shared.metrics));
        client_stage.count_with(Arc::clone(&shared.metrics));
        let server_stage = ServerStage::new(Arc::clone(&shared.refusal_token), refusals, masker);
        shared.metrics.sessions_open.inc();
        let finished = super::relay::run(
            client,
            server,
            leftover,
            shared.config.max_message_bytes,
            client_stage,
            server_stage,
            Some(super::relay::Oversight {
                metrics: &shared.metrics,
                shutdown: shared.shutdown.subscribe(),
                pipeline: shutdown_pipeline,
                keep_server: lease.is_pooled(),
            }),
        )
        .await;
        let end = finished.end;
        lease.release(finished.server).await;
        shared.metrics.sessions_open.dec();
        drop(registration);
        if let Some(r) = &recorder {
            r.record_detached(Record::SessionEnd(SessionEnd {
                session: id,
                time: std::time::SystemTime::now(),
                reason: end.to_string(),
            }));
        }
        info!(identity = %identity.name, end = %end, elapsed_ms = started.elapsed().as_millis() as u64, "Session ended");
    }
}
