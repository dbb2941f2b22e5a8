//! Opening and authenticating one upstream connection, and sending cancel requests.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Error;
use crate::config::{Secret, SslMode, Upstream};
use crate::net::{ReadHalf, Stream, WriteHalf, read_frame};
use crate::proto::{ErrorFields, HEADER_LEN, MessageReader, tag};

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
// Startup-phase messages from the server are small; PostgreSQL itself caps them far lower.
const STARTUP_FRAME_LIMIT: usize = 1 << 20;

/// What the client asked for that is passed to the server's StartupMessage.
#[derive(Debug, Clone, Default)]
pub struct StartupParams {
    /// The server database to connect to.
    pub database: String,
    /// Parameters to pass through as sent (`application_name`, `options`, `DateStyle` …); never
    /// `user`, `database` or `replication`, which pgward sets itself.
    pub passthrough: Vec<(String, String)>,
}

/// The server login a session uses: pgward's own, or the one its role maps to.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The server user.
    pub user: String,
    /// Its password, when the server asks for one.
    pub password: Option<Secret>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A server socket, split for the relay's two directions.
pub struct ServerHalves {
    /// What the server sends.
    pub read: ReadHalf,
    /// What pgward sends it.
    pub write: WriteHalf,
}

impl std::fmt::Debug for ServerHalves {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerHalves")
    }
}

/// An authenticated upstream connection, ready for queries.
#[derive(Debug)]
pub struct Connected {
    /// The socket; `None` while a session relays through it (or once it is broken).
    pub server: Option<ServerHalves>,
    /// The server backend's process id.
    pub backend_pid: i32,
    /// The server's cancel secret, as sent (4 bytes in protocol 3.0).
    pub backend_secret: Vec<u8>,
    /// ParameterStatus and NoticeResponse frames from startup, whole, to relay to the client.
    pub startup_frames: Vec<Bytes>,
    /// The transaction status of the server's first ReadyForQuery.
    pub ready_status: u8,
    /// Bytes read past the first ReadyForQuery (normally none).
    pub leftover: BytesMut,
    /// Whether the socket is TLS.
    pub tls: bool,
    /// Keeps the open-connections gauge right however the connection ends.
    pub(super) open: Option<OpenGauge>,
}

/// Decrements a gauge when dropped.
#[derive(Debug)]
pub(super) struct OpenGauge(pub(super) prometheus::IntGauge);

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

// === impl Connected ===

impl Connected {
    /// The server's ParameterStatus values from startup, as (name, value).
    pub fn startup_params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.startup_frames
            .iter()
            .filter(|f| f.first() == Some(&tag::PARAMETER_STATUS))
            .filter_map(|f| {
                let mut r = MessageReader::new(f.get(HEADER_LEN..)?, "ParameterStatus");
                Some((r.cstr_utf8().ok()?, r.cstr_utf8().ok()?))
            })
    }
}

/// Connects, negotiates TLS per `sslmode`, sends the startup message and authenticates with
/// pgward's credentials, all within `cfg.connect_timeout`.
///
/// # Errors
/// See [`Error`]: an ErrorResponse other than an authentication failure is returned whole so the
/// session can relay it.
pub async fn connect(
    cfg: &Upstream,
    tls: Option<&Arc<ClientConfig>>,
    login: &Login,
    params: &StartupParams,
) -> Result<Connected, Error> {
    tokio::time::timeout(cfg.connect_timeout, connect_inner(cfg, tls, login, params))
        .await
        .map_err(|_| Error::Timeout)?
}

async fn connect_inner(
    cfg: &Upstream,
    tls: Option<&Arc<ClientConfig>>,
    login: &Login,
    params: &StartupParams,
) -> Result<Connected, Error> {
    let tcp = TcpStream::connect((cfg.host.as_str(), cfg.port)).await?;
    tcp.set_nodelay(true)?;
    let mut stream = negotiate_tls(tcp, cfg, tls).await?;

    let mut startup = BytesMut::new();
    write_startup(&mut startup, &login.user, params);
    stream.write_all(&startup).await?;

    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut scram: Option<ScramSha256> = None;
    let mut backend_key = None;
    let mut startup_frames = Vec::new();
    let mut out = BytesMut::new();
    loop {
        let (frame_tag, body) = read_frame(&mut stream, &mut buf, STARTUP_FRAME_LIMIT)
            .await?
            .ok_or_else(|| Error::Protocol("server closed the connection during startup".into()))?;
        match frame_tag {
            tag::AUTHENTICATION => {
                out.clear();
                authenticate(&body, login, &mut scram, &mut out)?;
                if !out.is_empty() {
                    stream.write_all(&out).await?;
                }
            }
            tag::PARAMETER_STATUS | tag::NOTICE_RESPONSE => {
                startup_frames.push(whole_frame(frame_tag, &body));
            }
            tag::BACKEND_KEY_DATA => {
                let mut r = MessageReader::new(&body, "BackendKeyData");
                let pid = r.i32()?;
                backend_key = Some((pid, r.remaining().to_vec()));
            }
            tag::NEGOTIATE_PROTOCOL_VERSION => {}
            tag::ERROR_RESPONSE => {
                let fields = ErrorFields::parse(&body)?;
                if fields.code.starts_with("28") {
                    return Err(Error::Auth(format!("{} ({})", fields.message, fields.code)));
                }
                return Err(Error::Server {
                    code: fields.code.to_owned(),
                    message: fields.message.to_owned(),
                    frame: whole_frame(frame_tag, &body),
                });
            }
            tag::READY_FOR_QUERY => {
                let (backend_pid, backend_secret) = backend_key.ok_or_else(|| {
                    Error::Protocol("no BackendKeyData before ReadyForQuery".into())
                })?;
                let tls = stream.is_tls();
                let (read, write) = stream.into_split();
                return Ok(Connected {
                    server: Some(ServerHalves { read, write }),
                    tls,
                    open: None,
                    backend_pid,
                    backend_secret,
                    startup_frames,
                    ready_status: body.first().copied().unwrap_or(b'I'),
                    leftover: buf,
                });
            }
            other => {
                return Err(Error::Protocol(format!(
                    "unexpected message '{}' during startup",
                    char::from(other)
                )));
            }
        }
    }
}

/// Answers one Authentication message into `out` (empty when nothing is to be sent).
fn authenticate(
    body: &[u8],
    cfg: &Login,
    scram: &mut Option<ScramSha256>,
    out: &mut BytesMut,
) -> Result<(), Error> {
    let mut r = MessageReader::new(body, "Authentication");
    let code = r.i32()?;
    let password = || {
        cfg.password
            .as_ref()
            .map(|p| p.expose().as_bytes())
            .ok_or_else(|| {
                Error::Auth(format!(
                    "the server asks a password of login {}; set its password_env or password_file",
                    cfg.user
                ))
            })
    };
    match code {
        0 => Ok(()),
        3 => {
            let pw = password()?;
            write_password_message(out, |b| {
                b.put_slice(pw);
                b.put_u8(0);
            });
            Ok(())
        }
        5 => {
            let salt: [u8; 4] = r
                .bytes(4)?
                .try_into()
                .map_err(|_| Error::Protocol("bad MD5 salt".into()))?;
            let hash =
                postgres_protocol::authentication::md5_hash(cfg.user.as_bytes(), password()?, salt);
            write_password_message(out, |b| {
                b.put_slice(hash.as_bytes());
                b.put_u8(0);
            });
            Ok(())
        }
        10 => {
            let mut offered = Vec::new();
            loop {
                let m = r.cstr()?;
                if m.is_empty() {
                    break;
                }
                offered.push(m);
            }
            if !offered.iter().any(|m| *m == sasl::SCRAM_SHA_256.as_bytes()) {
                return Err(Error::Auth(
                    "the server offers no SASL mechanism pgward supports".into(),
                ));
            }
            // pgward does not bind SCRAM to the TLS channel ('n'); the server accepts that.
            let s = ScramSha256::new(password()?, ChannelBinding::unsupported());
            let msg = s.message().to_vec();
            *scram = Some(s);
            write_password_message(out, |b| {
                b.put_slice(sasl::SCRAM_SHA_256.as_bytes());
                b.put_u8(0);
                b.put_i32(msg.len() as i32);
                b.put_slice(&msg);
            });
            Ok(())
        }
        11 => {
            let s = scram
                .as_mut()
                .ok_or_else(|| Error::Protocol("SASLContinue before SASL".into()))?;
            s.update(r.remaining())
                .map_err(|e| Error::Auth(e.to_string()))?;
            let msg = s.message().to_vec();
            write_password_message(out, |b| b.put_slice(&msg));
            Ok(())
        }
        12 => {
            let s = scram
                .as_mut()
                .ok_or_else(|| Error::Protocol("SASLFinal before SASL".into()))?;
            // Verifies the server's signature: a server that does not know the verifier fails here.
            s.finish(r.remaining())
                .map_err(|e| Error::Auth(e.to_string()))
        }
        other => Err(Error::Auth(format!(
            "unsupported authentication method {other}"
        ))),
    }
}

async fn negotiate_tls(
    mut tcp: TcpStream,
    cfg: &Upstream,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Stream, Error> {
    let Some(tls) = tls.filter(|_| cfg.sslmode != SslMode::Disable) else {
        return Ok(Stream::Plain(tcp));
    };
    tcp.write_all(&SSL_REQUEST).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    match answer[0] {
        b'S' => {
            let name = crate::tls::server_name(&cfg.host).map_err(|e| Error::Tls(e.to_string()))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
                .connect(name, tcp)
                .await
                .map_err(|e| Error::Tls(e.to_string()))?;
            Ok(Stream::ClientTls(Box::new(stream)))
        }
        b'N' if cfg.sslmode == SslMode::Prefer => Ok(Stream::Plain(tcp)),
        b'N' => Err(Error::TlsRefused),
        _ => Err(Error::Protocol("bad answer to SSLRequest".into())),
    }
}

fn write_startup(buf: &mut BytesMut, user: &str, params: &StartupParams) {
    write_untyped(buf, |b| {
        b.put_i32(196_608);
        for (k, v) in [("user", user), ("database", params.database.as_str())]
            .into_iter()
            .chain(
                params
                    .passthrough
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
        {
            b.put_slice(k.as_bytes());
            b.put_u8(0);
            b.put_slice(v.as_bytes());
            b.put_u8(0);
        }
        b.put_u8(0);
    });
}

/// Writes a length-prefixed packet without a tag (startup, cancel).
fn write_untyped(buf: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.put_i32(0);
    body(buf);
    let len = (buf.len() - start) as i32;
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn write_password_message(buf: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag::PASSWORD);
    write_untyped(buf, body);
}

fn whole_frame(frame_tag: u8, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(body.len() + 5);
    b.put_u8(frame_tag);
    b.put_i32(body.len() as i32 + 4);
    b.put_slice(body);
    b.freeze()
}

/// Sends a CancelRequest for the server backend `pid` with its secret key. Cancel requests go in
/// plaintext: the server reads them before any authentication and answers nothing.
///
/// # Errors
/// When the server can't be reached.
pub async fn cancel(cfg: &Upstream, pid: i32, secret: &[u8]) -> Result<(), Error> {
    let mut tcp = tokio::time::timeout(
        cfg.connect_timeout,
        TcpStream::connect((cfg.host.as_str(), cfg.port)),
    )
    .await
    .map_err(|_| Error::Timeout)??;
    let mut buf = BytesMut::new();
    write_untyped(&mut buf, |b| {
        b.put_i32(80_877_102);
        b.put_i32(pid);
        b.put_slice(secret);
    });
    tcp.write_all(&buf).await?;
    // Wait for the server to close, so the cancel has been read before we return.
    let mut sink = [0u8; 1];
    let _ = tcp.read(&mut sink).await;
    Ok(())
}
