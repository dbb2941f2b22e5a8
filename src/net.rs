//! Sockets that may or may not be TLS, split into halves for the relay, and frame reads for the
//! handshakes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::proto;

/// A connection to a client or to the server, plaintext or TLS.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS accepted from a client.
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// TLS opened towards the upstream server.
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The read half of a [`Stream`].
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a [`Stream`].
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Errors reading a frame during a handshake.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed or closed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The bytes were not a valid frame.
    #[error(transparent)]
    Proto(#[from] proto::Error),
}

// === impl Stream ===

impl Stream {
    /// Whether the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// Splits into independently owned halves. Plain TCP splits without a lock; TLS needs the
    /// shared session state behind tokio's split lock.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Plain(tcp) => {
                let (r, w) = tcp.into_split();
                (Box::new(r), Box::new(w))
            }
            tls => {
                let (r, w) = tokio::io::split(tls);
                (Box::new(r), Box::new(w))
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::ServerTls(s) => Pin::new(s).poll_read(cx, buf),
            Stream::ClientTls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::ServerTls(s) => Pin::new(s).poll_write(cx, buf),
            Stream::ClientTls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::ServerTls(s) => Pin::new(s).poll_flush(cx),
            Stream::ClientTls(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::ServerTls(s) => Pin::new(s).poll_shutdown(cx),
            Stream::ClientTls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Reads one typed frame (tag, body) during a handshake, buffering in `buf`. `Ok(None)` means the
/// peer closed cleanly between frames.
///
/// # Errors
/// An I/O error (including EOF inside a frame), or a malformed or oversized header.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    limit: usize,
) -> Result<Option<(u8, Bytes)>, FrameError> {
    loop {
        if let Some(header) = proto::parse_header(buf, limit)? {
            let len = header.frame_len();
            if buf.len() >= len {
                let mut frame = buf.split_to(len).freeze();
                frame.advance(proto::HEADER_LEN);
                return Ok(Some((header.tag, frame)));
            }
            buf.reserve(len - buf.len());
        } else {
            buf.reserve(proto::HEADER_LEN);
        }
        if r.read_buf(buf).await? == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
    }
}
