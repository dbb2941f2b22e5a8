//! The steady state of a session: frames pumped in both directions, concurrently.
//!
//! Each direction owns one reused read buffer. A read is walked to its last complete frame and
//! that prefix is written out as it is: no frame is copied or allocated per message. A frame too
//! large to be worth buffering whole, of a type nothing inspects (CopyData; DataRow from the server), is
//! streamed through as it arrives, so memory stays bounded whatever the row or COPY size.
//!
//! # Cancellation safety
//! [`Pump::run`] is not cancel-safe while writing: a write interrupted by cancellation may have
//! sent part of a frame. [`Pump::mid_write`] tells whether that happened, so the session never
//! appends its own message to a torn frame.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};

use std::sync::Arc;

use super::Refusal;
use super::enforce::{ClientStage, ServerStage, Verdict};
use super::results::Pipeline;
use crate::net::{ReadHalf, Stream, WriteHalf};
use crate::proto::SqlState;
use crate::proto::{self, Frames, tag};
use crate::upstream::ServerHalves;

/// Free space kept in a read buffer before each read.
const READ_RESERVE: usize = 16 * 1024;
/// Initial capacity of each direction's buffer.
const INITIAL_CAPACITY: usize = 64 * 1024;
/// Capacity of the write buffer in front of each sink.
const SINK_BUFFER: usize = 8 * 1024;
/// While a statement is held, client bytes beyond this are left unread (pipelined messages wait
/// in the socket).
const HOLD_READ_LIMIT: usize = 1024 * 1024;
/// Frames longer than this are streamed instead of buffered whole, when their type allows.
const STREAM_THRESHOLD: usize = 256 * 1024;
/// Terminate, as pgward sends it to end a server session.
const TERMINATE: [u8; 5] = [tag::TERMINATE, 0, 0, 0, 4];

/// Which way a pump moves frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    ClientToServer,
    /// Server to client.
    ServerToClient,
}

/// How a pump stopped.
#[derive(Debug)]
pub enum End {
    /// The source closed its socket between frames.
    SourceClosed,
    /// The client sent Terminate, which was forwarded.
    Terminated,
    /// The server sent a FATAL error, which was forwarded, then closed.
    ServerFatal,
    /// Reading the source failed (including EOF inside a frame).
    ReadFailed(io::Error),
    /// Writing to the destination failed.
    WriteFailed(io::Error),
    /// The source sent a malformed or oversized frame.
    Malformed(proto::Error),
    /// A result could not be masked: the session ends rather than pass it on.
    Unmaskable(String),
    /// pgward is shutting down and the session was idle.
    Shutdown,
}

/// One direction of a session.
pub struct Pump {
    source: ReadHalf,
    /// Buffered so that a masked result, written a rewritten row at a time between runs of
    /// untouched rows, still leaves in few syscalls; writes larger than the buffer go straight
    /// through, so the untouched path copies nothing.
    sink: BufWriter<WriteHalf>,
    buf: BytesMut,
    limit: usize,
    /// Bytes of a streamed frame still to forward.
    streaming: usize,
    /// Set while a write is in progress (see the module's cancellation note).
    writing: bool,
    /// What looks at (and may replace) frames in this direction.
    stage: Stage,
    /// Where a stage writes a replacement frame; reused.
    scratch: BytesMut,
    /// Counts the bytes read from the source, when metrics are kept.
    bytes: Option<prometheus::IntCounter>,
    /// Frames dealt with (forwarded, replaced or refused), when counted.
    frames: Option<prometheus::IntCounter>,
    /// Time from read to forward, when measured (client to server only).
    latency: Option<prometheus::Histogram>,
    /// When the last read completed, while its bytes are not yet all forwarded.
    read_at: Option<std::time::Instant>,
    /// The outgoing bytes of a walk that replaced a frame: the frames passed around it are
    /// copied here too, so a result with a masked column in every row still leaves in one write
    /// per read instead of one per row. Empty (and unused) when nothing is replaced.
    out: BytesMut,
}

/// The per-direction stage of a pump.
#[derive(Debug)]
pub enum Stage {
    /// Frames pass untouched (benches, tests).
    Plain,
    /// Client to server: analyze, decide, replace refused messages.
    Client(Box<ClientStage>),
    /// Server to client: mask results, rewrite refusals into pgward's errors.
    Server(Box<ServerStage>),
}

/// What a walk of the buffer found.
struct Walked {
    /// Received bytes dealt with: to write as they are, or already copied into `out`.
    consumed: usize,
    /// The bytes to send are in `out` (a frame was replaced), not the first `consumed` of `buf`.
    rewritten: bool,
    /// What to do after writing.
    step: Step,
}

/// What the walk found to do next.
enum Step {
    /// Read more.
    Continue,
    /// Look up catalog entries, then walk again from the frame that asked.
    Lookup,
    /// Wait for a held statement's approval, then walk again from the held frame.
    Hold,
    /// Stop.
    End(End),
}

// === impl End ===

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::SourceClosed => f.write_str("peer closed"),
            End::Terminated => f.write_str("client terminated"),
            End::ServerFatal => f.write_str("server ended the session"),
            End::ReadFailed(e) => write!(f, "read failed: {e}"),
            End::WriteFailed(e) => write!(f, "write failed: {e}"),
            End::Malformed(e) => write!(f, "{e}"),
            End::Unmaskable(e) => write!(f, "{e}"),
            End::Shutdown => f.write_str("pgward shut down"),
        }
    }
}

// === impl Pump ===

impl Pump {
    /// A pump from `source` to `sink`, starting with `initial` bytes already read from `source`.
    pub fn new(
        source: ReadHalf,
        sink: WriteHalf,
        initial: BytesMut,
        limit: usize,
        stage: Stage,
    ) -> Self {
        let mut buf = BytesMut::with_capacity(INITIAL_CAPACITY.max(initial.len()));
        buf.extend_from_slice(&initial);
        Pump {
            source,
            sink: BufWriter::with_capacity(SINK_BUFFER, sink),
            buf,
            limit,
            streaming: 0,
            writing: false,
            stage,
            scratch: BytesMut::new(),
            out: BytesMut::new(),
            bytes: None,
            latency: None,
            read_at: None,
            frames: None,
        }
    }

    /// Counts the bytes read from the source in `counter`.
    pub fn count_bytes(&mut self, counter: prometheus::IntCounter) {
        self.bytes = Some(counter);
    }

    /// Counts the frames dealt with in `counter`.
    pub fn count_frames(&mut self, counter: prometheus::IntCounter) {
        self.frames = Some(counter);
    }

    /// Observes, in `histogram`, the time from the read that completed a batch of messages to
    /// their being forwarded (flushed), whenever the batch leaves nothing partial behind.
    pub fn time_forwarding(&mut self, histogram: prometheus::Histogram) {
        self.latency = Some(histogram);
    }

    /// Whether a write was interrupted mid-way: the sink may hold part of a frame.
    pub fn mid_write(&self) -> bool {
        self.writing
    }

    /// Writes pgward's own bytes to this pump's sink and flushes.
    ///
    /// # Errors
    /// When the sink fails.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sink.write_all(bytes).await?;
        self.sink.flush().await
    }

    /// Withdraws the approval request of a statement this (client) pump was holding, if any.
    pub async fn abandon_hold(&mut self) {
        if let Stage::Client(stage) = &mut self.stage {
            stage.abandon_hold().await;
        }
    }

    /// Shuts the sink down (sends FIN / TLS close_notify).
    pub async fn shutdown(&mut self) {
        let _ = self.sink.shutdown().await;
    }

    /// Pumps until the source closes, a session-ending frame passes, or an error.
    pub async fn run(&mut self) -> End {
        loop {
            let Walked {
                consumed: forward,
                rewritten,
                step,
            } = match self.walk() {
                Ok(walked) => walked,
                Err(e) => return End::Malformed(e),
            };
            let written = if rewritten {
                self.write_out(forward).await
            } else if forward > 0 {
                self.write_buffered(forward).await
            } else {
                Ok(())
            };
            if let Err(e) = written {
                return End::WriteFailed(e);
            }
            match step {
                Step::End(end) => {
                    let _ = self.sink.flush().await;
                    return end;
                }
                Step::Lookup => {
                    // What was forwarded so far reaches the client while the lookup runs.
                    if let Err(e) = self.sink.flush().await {
                        return End::WriteFailed(e);
                    }
                    match &mut self.stage {
                        Stage::Server(stage) => stage.fetch().await,
                        Stage::Client(stage) => stage.fetch().await,
                        Stage::Plain => {}
                    }
                    continue;
                }
                Step::Hold => {
                    if let Err(e) = self.sink.flush().await {
                        return End::WriteFailed(e);
                    }
                    if let Some(end) = self.hold().await {
                        return end;
                    }
                    // Time spent waiting for an approver is not pgward's added latency.
                    self.read_at = None;
                    continue;
                }
                Step::Continue => {}
            }
            // After a streamed frame ends, whole frames may already follow it in the buffer.
            if forward > 0 && !self.buf.is_empty() {
                continue;
            }
            // Flush before waiting for input: the write side is caught up with what was read.
            if let Err(e) = self.sink.flush().await {
                return End::WriteFailed(e);
            }
            // pgward's own time: from the read that completed what is now forwarded, to here.
            if let Some((latency, read_at)) = self.latency.as_ref().zip(self.read_at.take())
                && self.buf.is_empty()
            {
                latency.observe(read_at.elapsed().as_secs_f64());
            }
            let want = self
                .pending_frame_len()
                .saturating_sub(self.buf.len())
                .max(READ_RESERVE);
            self.buf.reserve(want);
            let read = match &self.stage {
                // pgward's own notices for the client go out between frames, so the server side
                // also wakes for them (not while a frame is streaming through).
                Stage::Server(stage) if self.streaming == 0 => {
                    let notices = stage.refusals();
                    tokio::select! {
                        biased;
                        () = notices.client_notices() => None,
                        r = self.source.read_buf(&mut self.buf) => Some(r),
                    }
                }
                _ => Some(self.source.read_buf(&mut self.buf).await),
            };
            let Some(read) = read else {
                if let Err(e) = self.send_notices().await {
                    return End::WriteFailed(e);
                }
                continue;
            };
            match read {
                Ok(0) if self.buf.is_empty() && self.streaming == 0 => {
                    let fatal = matches!(&self.stage, Stage::Server(s) if s.saw_fatal);
                    return if fatal {
                        End::ServerFatal
                    } else {
                        End::SourceClosed
                    };
                }
                Ok(0) => return End::ReadFailed(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    if let Some(c) = &self.bytes {
                        c.inc_by(n as u64);
                    }
                    if self.latency.is_some() {
                        self.read_at = Some(std::time::Instant::now());
                    }
                }
                Err(e) => return End::ReadFailed(e),
            }
        }
    }

    /// Waits for the held frame at the head of the buffer to be approved or refused, reading
    /// (and keeping) what the client sends meanwhile only to notice that it left: then the
    /// request is withdrawn and the session ends.
    async fn hold(&mut self) -> Option<End> {
        let Stage::Client(stage) = &mut self.stage else {
            return None;
        };
        let gone = {
            let resolve = stage.resolve_hold();
            tokio::pin!(resolve);
            loop {
                tokio::select! {
                    () = &mut resolve => break None,
                    r = self.source.read_buf(&mut self.buf), if self.buf.len() < HOLD_READ_LIMIT => {
                        match r {
                            Ok(0) => break Some(End::SourceClosed),
                            Ok(_) => {}
                            Err(e) => break Some(End::ReadFailed(e)),
                        }
                    }
                }
            }
        };
        if gone.is_some() {
            stage.abandon_hold().await;
        }
        gone
    }

    /// Sends the frames the client side queued for the client.
    async fn send_notices(&mut self) -> io::Result<()> {
        let Stage::Server(stage) = &self.stage else {
            return Ok(());
        };
        let frames = stage.refusals().take_notices();
        self.writing = true;
        self.sink.write_all(&frames).await?;
        self.writing = false;
        self.sink.flush().await
    }

    /// Writes `out` (the walk's rewritten bytes) and drops the `consumed` received bytes it
    /// stands for.
    async fn write_out(&mut self, consumed: usize) -> io::Result<()> {
        self.writing = true;
        self.sink.write_all(&self.out).await?;
        self.writing = false;
        self.out.clear();
        self.buf.advance(consumed);
        Ok(())
    }

    async fn write_buffered(&mut self, n: usize) -> io::Result<()> {
        self.writing = true;
        self.sink.write_all(&self.buf[..n]).await?;
        self.writing = false;
        self.buf.advance(n);
        Ok(())
    }

    /// Decides how many buffered bytes can be forwarded, whether as they are or rewritten, and
    /// what comes after them.
    fn walk(&mut self) -> Result<Walked, proto::Error> {
        if self.streaming > 0 {
            let n = self.streaming.min(self.buf.len());
            self.streaming -= n;
            return Ok(Walked {
                consumed: n,
                rewritten: false,
                step: Step::Continue,
            });
        }
        let mut frames = Frames::new(&self.buf, self.limit);
        // `copied`: received bytes already in `out`; `start`: where the current frame begins.
        let (mut copied, mut start) = (0, 0);
        let mut step = Step::Continue;
        let mut dealt = 0u64;
        while let Some(frame) = frames.next() {
            let frame = frame?;
            let verdict = match &mut self.stage {
                Stage::Plain => Verdict::Pass,
                // Not forwarded: `run` ends the server session itself, or keeps it for the pool.
                Stage::Client(_) if frame.tag() == tag::TERMINATE => {
                    step = Step::End(End::Terminated);
                    break;
                }
                // Once rewriting with nothing passed since, a replacement can go straight into
                // `out` (stages only append): a masked result is copied once, not twice.
                Stage::Client(stage) => stage.on_frame(&frame, &mut self.scratch),
                Stage::Server(stage) if copied == start && copied > 0 => {
                    stage.on_frame(&frame, &mut self.out)
                }
                Stage::Server(stage) => stage.on_frame(&frame, &mut self.scratch),
            };
            match verdict {
                Verdict::Pass => {}
                Verdict::Replace => {
                    self.out.extend_from_slice(&self.buf[copied..start]);
                    self.out.extend_from_slice(&self.scratch);
                    self.scratch.clear();
                    copied = frames.consumed();
                }
                Verdict::Lookup => {
                    step = Step::Lookup;
                    break;
                }
                Verdict::Hold => {
                    step = Step::Hold;
                    break;
                }
                Verdict::Abort => {
                    let why = match &mut self.stage {
                        Stage::Server(stage) => stage.take_failure().map(|e| e.to_string()),
                        _ => None,
                    };
                    step = Step::End(End::Unmaskable(
                        why.unwrap_or_else(|| "result could not be masked".to_owned()),
                    ));
                    break;
                }
            }
            start = frames.consumed();
            dealt += 1;
        }
        if let Some(counter) = &self.frames {
            counter.inc_by(dealt);
        }
        // Everything before `start` is dealt with; a frame that stopped the walk is not.
        let mut forward = start;
        if matches!(step, Step::Continue) {
            forward = frames.consumed();
            if let Some(header) = frames.pending_header() {
                let have = self.buf.len() - forward;
                if header.frame_len() > STREAM_THRESHOLD && self.streamable(header.tag) {
                    self.streaming = header.frame_len() - have;
                    forward = self.buf.len();
                }
            }
        }
        let rewritten = copied > 0 || !self.out.is_empty();
        if rewritten {
            self.out.extend_from_slice(&self.buf[copied..forward]);
        }
        Ok(Walked {
            consumed: forward,
            rewritten,
            step,
        })
    }

    /// Whether a frame of this type may pass without being buffered whole: only types pgward never
    /// inspects in this direction.
    fn streamable(&self, frame_tag: u8) -> bool {
        match &self.stage {
            Stage::Plain => matches!(frame_tag, tag::COPY_DATA | tag::DATA_ROW),
            Stage::Client(_) => ClientStage::may_stream(frame_tag),
            Stage::Server(stage) => stage.may_stream(frame_tag),
        }
    }

    /// Length of the incomplete frame at the head of the buffer, once its header has arrived.
    fn pending_frame_len(&self) -> usize {
        if self.streaming > 0 {
            return 0;
        }
        proto::parse_header(&self.buf, self.limit)
            .ok()
            .flatten()
            .map_or(0, |h| h.frame_len())
    }
}

/// What the server watches a session with: its counters, and the shutdown signal with the
/// session's pipeline (to end it between statements).
pub struct Oversight<'a> {
    /// Byte counters.
    pub metrics: &'a crate::metrics::Metrics,
    /// `true` once pgward is shutting down.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Empty when every message sent has been answered.
    pub pipeline: Arc<Pipeline>,
    /// Give the server connection back (for the pool) when the client leaves between
    /// transactions, instead of ending its server session.
    pub keep_server: bool,
}

/// How a session's relay ended.
#[derive(Debug)]
pub struct Finished {
    /// Why.
    pub end: End,
    /// The server connection, idle and outside any transaction, when it was asked to be kept.
    pub server: Option<ServerHalves>,
}

/// Resolves once shutdown was asked for and the session is between statements (every message
/// answered); never without `shutdown`. Sleeps until shutdown, then checks a few times a second.
async fn idle_after_shutdown(
    shutdown: Option<(tokio::sync::watch::Receiver<bool>, Arc<Pipeline>)>,
) {
    let Some((mut requested, pipeline)) = shutdown else {
        return std::future::pending().await;
    };
    while !*requested.borrow_and_update() {
        if requested.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
    while !pipeline.is_idle() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Relays between an authenticated client and its server connection until either side ends,
/// then tells the client why, if it is still there and the reason is not its own doing. The
/// server connection is given back when [`Oversight::keep_server`] asks for it and the client
/// left between transactions; otherwise its session is ended with Terminate.
pub async fn run(
    client: Stream,
    server: ServerHalves,
    server_leftover: BytesMut,
    limit: usize,
    client_stage: ClientStage,
    server_stage: ServerStage,
    oversight: Option<Oversight<'_>>,
) -> Finished {
    let (metrics, shutdown, keep_server) = match oversight {
        Some(o) => (
            Some(o.metrics),
            Some((o.shutdown, Arc::clone(&o.pipeline))),
            o.keep_server.then_some(o.pipeline),
        ),
        None => (None, None, None),
    };
    let (client_r, client_w) = client.into_split();
    let ServerHalves {
        read: server_r,
        write: server_w,
    } = server;
    let mut c2s = Pump::new(
        client_r,
        server_w,
        BytesMut::new(),
        limit,
        Stage::Client(Box::new(client_stage)),
    );
    let mut s2c = Pump::new(
        server_r,
        client_w,
        server_leftover,
        limit,
        Stage::Server(Box::new(server_stage)),
    );
    if let Some(m) = metrics {
        c2s.count_bytes(m.bytes_from_clients.clone());
        c2s.time_forwarding(m.added_latency.clone());
        c2s.count_frames(m.frames_from_clients.clone());
        s2c.count_bytes(m.bytes_to_clients.clone());
        s2c.count_frames(m.frames_to_clients.clone());
    }
    let (direction, end) = tokio::select! {
        end = c2s.run() => (Direction::ClientToServer, end),
        end = s2c.run() => (Direction::ServerToClient, end),
        () = idle_after_shutdown(shutdown) => (Direction::ClientToServer, End::Shutdown),
    };
    let client_left = direction == Direction::ClientToServer
        && matches!(end, End::Terminated | End::SourceClosed);
    if client_left
        && keep_server.is_some_and(|p| p.is_reusable())
        && s2c.buf.is_empty()
        && !s2c.mid_write()
        && !c2s.mid_write()
    {
        s2c.shutdown().await;
        let server = ServerHalves {
            read: s2c.source,
            write: c2s.sink.into_inner(),
        };
        return Finished {
            end,
            server: Some(server),
        };
    }
    if matches!(end, End::Terminated) && !c2s.mid_write() {
        let _ = c2s.send(&TERMINATE).await;
    }
    let refusal = match (direction, &end) {
        (Direction::ClientToServer, End::Malformed(e)) => Some(Refusal::from(e.clone())),
        (Direction::ClientToServer, End::WriteFailed(_))
        | (Direction::ServerToClient, End::SourceClosed | End::ReadFailed(_)) => {
            Some(Refusal::new(
                SqlState::CONNECTION_FAILURE,
                "server closed the connection unexpectedly",
            ))
        }
        (Direction::ServerToClient, End::Malformed(e)) => Some(Refusal::new(
            SqlState::CONNECTION_FAILURE,
            format!("upstream protocol error: {e}"),
        )),
        (_, End::Shutdown) => {
            // A statement held for approval will not run now: its request is withdrawn.
            c2s.abandon_hold().await;
            // The server session ends too, as it would on the client's Terminate.
            if !c2s.mid_write() {
                let _ = c2s.send(&TERMINATE).await;
            }
            Some(
                Refusal::new(
                    SqlState::ADMIN_SHUTDOWN,
                    "terminating connection due to administrator command",
                )
                .hint("pgward is shutting down; reconnect to another instance or retry shortly"),
            )
        }
        (Direction::ServerToClient, End::Unmaskable(e)) => Some(
            Refusal::new(SqlState::PROTOCOL_VIOLATION, e.clone())
                .hint("The session was closed so that no unmasked value reached the client."),
        ),
        _ => None,
    };
    // A write to the client cut off mid-frame leaves nothing we could safely append to.
    if let Some(refusal) = refusal.filter(|_| !s2c.mid_write()) {
        let mut buf = BytesMut::new();
        refusal.write(&mut buf);
        let _ = s2c.send(&buf).await;
    }
    s2c.shutdown().await;
    c2s.shutdown().await;
    Finished { end, server: None }
}
#[cfg(test)]
mod tests;
