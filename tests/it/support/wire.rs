//! Raw protocol frames, for edge cases no driver would send.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A hand-driven client connection.
pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
}

/// Builds an untyped startup-style packet from a code and body.
pub fn untyped(code: i32, body: &[u8]) -> Vec<u8> {
    let mut v = ((body.len() + 8) as i32).to_be_bytes().to_vec();
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A StartupMessage for protocol `3.minor` with `params`.
pub fn startup(minor: u16, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    untyped((3 << 16) | i32::from(minor), &body)
}

/// A typed frame.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A simple Query frame.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    frame(b'Q', &body)
}

/// Parse, Bind and Execute of `sql` as the unnamed statement and portal, without a Sync: one
/// step of an extended-protocol pipeline.
pub fn unnamed_step(sql: &str) -> Vec<u8> {
    [
        frame(b'P', &[b"\0", sql.as_bytes(), b"\0\0\0"].concat()),
        frame(b'B', b"\0\0\0\0\0\0\0\0"),
        frame(b'E', b"\0\0\0\0\0"),
    ]
    .concat()
}

/// A Sync frame.
pub fn sync() -> Vec<u8> {
    frame(b'S', b"")
}

impl RawClient {
    pub async fn connect(addr: std::net::SocketAddr) -> RawClient {
        RawClient {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Reads one byte (answers to SSLRequest / GSSENCRequest).
    pub async fn read_byte(&mut self) -> u8 {
        if !self.buf.is_empty() {
            return self.buf.get_u8();
        }
        self.stream.read_u8().await.expect("read byte")
    }

    /// Reads one typed message, or `None` at EOF.
    pub async fn read_msg(&mut self) -> Option<(u8, Bytes)> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() > len {
                    let tag = self.buf.get_u8();
                    self.buf.advance(4);
                    return Some((tag, self.buf.split_to(len - 4).freeze()));
                }
            }
            let n = tokio::time::timeout(
                std::time::Duration::from_secs(20),
                self.stream.read_buf(&mut self.buf),
            )
            .await
            .expect("read timed out")
            .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Reads messages through the next ReadyForQuery, returning them all.
    pub async fn read_until_ready(&mut self) -> Vec<(u8, Bytes)> {
        let mut out = Vec::new();
        while let Some(m) = self.read_msg().await {
            let done = m.0 == b'Z';
            out.push(m);
            if done {
                break;
            }
        }
        out
    }

    /// Startup and SCRAM login; returns the messages after AuthenticationOk through ReadyForQuery.
    pub async fn login(&mut self, user: &str, password: &str, database: &str) -> Vec<(u8, Bytes)> {
        self.send(&startup(0, &[("user", user), ("database", database)]))
            .await;
        self.scram(password).await;
        self.read_until_ready().await
    }

    /// Answers the SCRAM exchange correctly, then collects the SQLSTATEs of the errors that
    /// follow until the connection closes (a refusal after authentication).
    pub async fn scram_expecting_refusal(&mut self, password: &str, errors: &mut Vec<String>) {
        let (tag, body) = self.read_msg().await.expect("auth request");
        assert_eq!((tag, &body[..4]), (b'R', &10i32.to_be_bytes()[..]));
        let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let mut first = BytesMut::new();
        first.put_slice(b"SCRAM-SHA-256\0");
        first.put_i32(scram.message().len() as i32);
        first.put_slice(scram.message());
        self.send(&frame(b'p', &first)).await;
        let (_, cont) = self.read_msg().await.expect("SASLContinue");
        scram.update(&cont[4..]).expect("server-first");
        self.send(&frame(b'p', scram.message())).await;
        while let Some((tag, body)) = self.read_msg().await {
            if tag == b'E' {
                errors.push(sqlstate(&body));
            }
        }
    }

    /// Answers the SCRAM exchange; panics unless it ends in AuthenticationOk.
    pub async fn scram(&mut self, password: &str) {
        let (tag, body) = self.read_msg().await.expect("auth request");
        assert_eq!(tag, b'R', "expected an authentication request");
        assert_eq!(&body[..4], &10i32.to_be_bytes(), "expected SASL");
        let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let mut body = BytesMut::new();
        body.put_slice(b"SCRAM-SHA-256\0");
        body.put_i32(scram.message().len() as i32);
        body.put_slice(scram.message());
        self.send(&frame(b'p', &body)).await;
        let (_, cont) = self.read_msg().await.expect("SASLContinue");
        scram.update(&cont[4..]).expect("server-first");
        self.send(&frame(b'p', scram.message())).await;
        let (_, fin) = self.read_msg().await.expect("SASLFinal");
        assert_eq!(
            &fin[..4],
            &12i32.to_be_bytes(),
            "expected SASLFinal, got {fin:?}"
        );
        scram.finish(&fin[4..]).expect("server signature");
        let (tag, ok) = self.read_msg().await.expect("AuthenticationOk");
        assert_eq!((tag, &ok[..]), (b'R', &0i32.to_be_bytes()[..]));
    }
}

/// The SQLSTATEs of the ErrorResponses among `replies`, in order.
pub fn error_codes(replies: &[(u8, Bytes)]) -> Vec<String> {
    replies
        .iter()
        .filter(|(t, _)| *t == b'E')
        .map(|(_, b)| sqlstate(b))
        .collect()
}

/// The SQLSTATE (`C` field) of an ErrorResponse body.
pub fn sqlstate(body: &[u8]) -> String {
    field(body, b'C')
}

/// One field of an ErrorResponse or NoticeResponse body.
pub fn field(body: &[u8], code: u8) -> String {
    let mut rest = body;
    while let Some((&c, tail)) = rest.split_first() {
        if c == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        if c == code {
            return String::from_utf8_lossy(&tail[..end]).into_owned();
        }
        rest = &tail[(end + 1).min(tail.len())..];
    }
    String::new()
}
