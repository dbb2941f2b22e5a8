//! The recorder: one writer thread that appends records to the current audit file.
//!
//! Sessions call [`AuditLog::record`], which only sends the record over an unbounded channel and
//! never blocks; the writer numbers it, chains it ([`super::chain`]), appends it to an Arrow
//! batch and, at a commit point, writes the batch and fsyncs. A session that needs durability
//! awaits the returned [`Pending`]; nobody holds a lock or the channel while waiting, so one slow
//! session never delays another's records.
//!
//! # Durability modes and crashes
//! - [`Durability::Strict`] (group commit): the writer drains everything queued, writes it as one
//!   batch, fsyncs the file (and the directory when it created the file), then resolves every
//!   waiter. A resolved [`Pending`] means the record is on disk. After a crash, every record
//!   whose `Pending` resolved is in the log; a batch being written when the machine lost power
//!   may be torn, which `verify` reports as a truncation after the last complete record (the
//!   writer continues in a new file after a restart, linked to that last complete record).
//! - [`Durability::Batched`]: records collect in memory and are written and fsynced every
//!   `interval` (and when many are queued, and on roll or close). `Pending` resolves at that
//!   fsync, but callers normally don't wait. A crash loses at most the records of the last
//!   interval; what was written still verifies.
//!
//! Each batch is encoded in memory and written with one `write` call, so a killed process
//! (as opposed to a lost machine) never leaves half a batch.
//!
//! # Failure
//! When a write or fsync fails, the log *fails closed*: every waiting and later [`Pending`]
//! resolves to [`Error::Failed`] and [`AuditLog::check`] returns it, so a session in strict mode
//! refuses statements (SQLSTATE 58030) instead of running them unrecorded. Records are never
//! skipped silently; a failed log stays failed until pgward restarts.
//!
//! # Why a thread
//! fsync blocks for milliseconds; on a tokio worker it would stall every session scheduled there.
//! The writer therefore runs on its own OS thread, and only the acknowledgements cross back into
//! async code (through `oneshot` channels).

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow_ipc::MetadataVersion;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use ed25519_dalek::SigningKey;
use tokio::sync::oneshot;

use super::Error;
use super::batch::{BatchBuilder, Columns, schema};
use super::chain::{Hash, Head};
use super::file::{self, HeadSignature};
use super::record::{Envelope, Record};

/// How hard the writer works to keep records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A record is acknowledged only after it is fsynced (group commit).
    Strict,
    /// Records are written and fsynced every `interval`.
    Batched {
        /// The longest a record waits in memory.
        interval: Duration,
    },
}

/// What [`AuditLog::open`] needs.
#[derive(Clone)]
pub struct Options {
    /// The log directory; created if missing.
    pub dir: PathBuf,
    /// Strict or batched.
    pub durability: Durability,
    /// A file is closed and a new one started once it holds this many bytes.
    pub roll_bytes: u64,
    /// … or once it has been open this long.
    pub roll_age: Duration,
    /// Signs each closed file's chain head, when set.
    pub signing_key: Option<SigningKey>,
}

/// A handle on the audit log; cheap to clone, one per session is fine.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

/// The acknowledgement of one record: resolves to its global sequence number once it is durable,
/// or to the error that stopped the log. Dropping it does not cancel the record.
///
/// # Cancellation safety
/// Dropping a `Pending` only drops the acknowledgement; the record is still written.
pub struct Pending {
    state: PendingState,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

enum PendingState {
    Waiting(oneshot::Receiver<Result<u64, Error>>),
    Done(Option<Error>),
}

struct Inner {
    tx: mpsc::Sender<Command>,
    failed: Arc<OnceLock<Error>>,
    instance: String,
    meter: Arc<OnceLock<Meter>>,
}

/// Where the writer reports what it wrote and how long writes took.
#[derive(Debug, Clone)]
pub struct Meter {
    /// Records written and fsynced.
    pub records: prometheus::IntCounter,
    /// Time of each write + fsync.
    pub write_seconds: prometheus::Histogram,
}

#[expect(
    clippy::large_enum_variant,
    reason = "nearly every command is an Append; boxing it would allocate once more per record"
)]
enum Command {
    /// A record, and who waits for its acknowledgement (nobody, for a detached record).
    Append(Record, Option<oneshot::Sender<Result<u64, Error>>>),
    Close(oneshot::Sender<Result<(), Error>>),
    Abandon(oneshot::Sender<()>),
}

/// The writer thread's state.
struct Writer {
    opts: Options,
    instance: String,
    head: Head,
    next_number: u64,
    current: Option<OpenFile>,
    builder: BatchBuilder,
    acks: Vec<(u64, oneshot::Sender<Result<u64, Error>>)>,
    /// When the oldest unwritten record arrived (batched mode).
    oldest: Option<Instant>,
    scratch: Vec<u8>,
    failed: Arc<OnceLock<Error>>,
    meter: Arc<OnceLock<Meter>>,
}

struct OpenFile {
    name: String,
    file: std::fs::File,
    stream: StreamWriter<Vec<u8>>,
    bytes: u64,
    opened: Instant,
}

/// In batched mode, a batch is written early once this many records wait.
const BATCHED_MAX_ROWS: usize = 4096;
/// Batched mode: the shortest nap of an idle writer, so that it never spins.
const MIN_SLEEP: Duration = Duration::from_millis(1);
/// In strict mode, one group commit takes at most this many records, so that a flood of
/// records does not delay the first waiters without bound.
const STRICT_MAX_ROWS: usize = 4096;

// === impl Options ===

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("dir", &self.dir)
            .field("durability", &self.durability)
            .field("roll_bytes", &self.roll_bytes)
            .field("roll_age", &self.roll_age)
            // The key is a secret: show only whether there is one.
            .field("signing_key", &self.signing_key.as_ref().map(|_| "_"))
            .finish()
    }
}

// === impl AuditLog ===

impl AuditLog {
    /// Opens the log in `opts.dir`, continuing the chain of the files already there, and starts
    /// the writer thread. A new file is started on the first record; an existing file is never
    /// appended to, since it may end in a torn write.
    ///
    /// # Errors
    /// When the directory can't be created or read, or its last file can't be read.
    pub fn open(opts: Options) -> Result<AuditLog, Error> {
        std::fs::create_dir_all(&opts.dir).map_err(|e| Error::io(&opts.dir, e))?;
        let files = file::list(&opts.dir).map_err(|e| Error::io(&opts.dir, e))?;
        let next_number = files.last().map_or(1, |f| f.number + 1);
        let mut head = Head::EMPTY;
        for f in files.iter().rev() {
            if let Some(h) = last_head(&f.path)? {
                head = h;
                break;
            }
        }
        let instance = format!("{:012x}", rand::random::<u64>() >> 16);
        let failed = Arc::new(OnceLock::new());
        let meter = Arc::new(OnceLock::new());
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            opts,
            instance: instance.clone(),
            head,
            next_number,
            current: None,
            builder: BatchBuilder::default(),
            acks: Vec::new(),
            oldest: None,
            scratch: Vec::new(),
            failed: failed.clone(),
            meter: meter.clone(),
        };
        std::thread::Builder::new()
            .name("pgward-audit".to_owned())
            .spawn(move || writer.run(&rx))
            .map_err(|e| Error::Io {
                path: "writer thread".to_owned(),
                source: Arc::new(e),
            })?;
        Ok(AuditLog {
            inner: Arc::new(Inner {
                tx,
                failed,
                instance,
                meter,
            }),
        })
    }

    /// Reports records written and write times to `meter` from now on (once; later calls are
    /// ignored).
    pub fn measure_with(&self, meter: Meter) {
        let _ = self.inner.meter.set(meter);
    }

    /// Queues `record`; never blocks. The result resolves once the record is durable.
    pub fn record(&self, record: Record) -> Pending {
        if let Some(e) = self.inner.failed.get() {
            return Pending::done(e.clone());
        }
        let (ack, rx) = oneshot::channel();
        match self.inner.tx.send(Command::Append(record, Some(ack))) {
            Ok(()) => Pending {
                state: PendingState::Waiting(rx),
            },
            Err(_) => Pending::done(Error::Closed),
        }
    }

    /// Queues `record` with nobody waiting for it: no acknowledgement is made, which saves a
    /// channel per record where the caller would drop it anyway (batched mode, outcomes). A
    /// log that has failed drops it; callers check [`AuditLog::check`] before forwarding.
    pub fn record_detached(&self, record: Record) {
        if self.inner.failed.get().is_none() {
            let _ = self.inner.tx.send(Command::Append(record, None));
        }
    }

    /// Queues `record` and waits until it is durable: in strict mode, until it is fsynced.
    ///
    /// # Errors
    /// [`Error::Failed`] when the log can't be written, [`Error::Closed`] after close; both map
    /// to SQLSTATE 58030.
    pub async fn record_durable(&self, record: Record) -> Result<u64, Error> {
        self.record(record).await
    }

    /// `Err` once the log has failed: a cheap check before forwarding a statement in batched
    /// mode, where callers don't await each record.
    ///
    /// # Errors
    /// The error that stopped the log.
    pub fn check(&self) -> Result<(), Error> {
        match self.inner.failed.get() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// This pgward instance's identifier, stored with every record so that session numbers are
    /// unique across restarts (`INSTANCE-SESSION`).
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Writes what is queued, closes and signs the current file, and stops the writer. Records
    /// sent through other handles afterwards resolve to [`Error::Closed`].
    ///
    /// # Errors
    /// When the last write, fsync or signature fails, or the log had already failed.
    pub async fn close(self) -> Result<(), Error> {
        let (done, rx) = oneshot::channel();
        if self.inner.tx.send(Command::Close(done)).is_err() {
            return Err(Error::Closed);
        }
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// Stops the writer at once, as a crash would: records queued behind this command are
    /// dropped and the current file is left open and unsigned. Resolves once the writer has
    /// stopped touching files. Only for crash tests.
    #[doc(hidden)]
    pub async fn abandon_for_test(self) {
        let (done, rx) = oneshot::channel();
        if self.inner.tx.send(Command::Abandon(done)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The head of the last readable record in `path`, if it has any.
fn last_head(path: &std::path::Path) -> Result<Option<Head>, Error> {
    let contents = file::read(path).map_err(|e| Error::io(path, e))?;
    let Some(batch) = contents.batches.iter().rev().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let cols = Columns::new(batch).map_err(|m| Error::Unreadable {
        path: path.display().to_string(),
        message: m,
    })?;
    let row = cols.row(cols.len() - 1).map_err(|m| Error::Unreadable {
        path: path.display().to_string(),
        message: m,
    })?;
    Ok(Some(Head {
        seq: row.envelope.seq,
        hash: row.hash,
    }))
}

// === impl Pending ===

impl Pending {
    fn done(e: Error) -> Pending {
        Pending {
            state: PendingState::Done(Some(e)),
        }
    }
}

impl Future for Pending {
    type Output = Result<u64, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            PendingState::Waiting(rx) => match Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(r)) => Poll::Ready(r),
                // The writer dropped the acknowledgement: it stopped without writing the record.
                Poll::Ready(Err(_)) => Poll::Ready(Err(Error::Closed)),
                Poll::Pending => Poll::Pending,
            },
            PendingState::Done(e) => Poll::Ready(Err(e.take().unwrap_or(Error::Closed))),
        }
    }
}

// === impl Writer ===

impl Writer {
    fn run(mut self, rx: &mpsc::Receiver<Command>) {
        loop {
            let cmd = match self.opts.durability {
                // Batched: sleep through the interval rather than block on the channel, so that
                // sessions sending records push onto the queue without waking this thread once
                // per record.
                Durability::Batched { interval } => match rx.try_recv() {
                    Ok(cmd) => cmd,
                    Err(TryRecvError::Empty) => {
                        std::thread::sleep(self.wait().min(interval).max(MIN_SLEEP));
                        self.tick();
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => {
                        let _ = self.close();
                        return;
                    }
                },
                Durability::Strict => match rx.recv_timeout(self.wait()) {
                    Ok(cmd) => cmd,
                    Err(RecvTimeoutError::Timeout) => {
                        self.tick();
                        continue;
                    }
                    // Every handle is gone without a close: shut down as cleanly as close would.
                    Err(RecvTimeoutError::Disconnected) => {
                        let _ = self.close();
                        return;
                    }
                },
            };
            let mut next = Some(cmd);
            let mut taken = 0;
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Append(record, ack) => self.append(record, ack),
                    Command::Close(done) => {
                        let _ = done.send(self.close());
                        return;
                    }
                    Command::Abandon(done) => {
                        let _ = done.send(());
                        return;
                    }
                }
                taken += 1;
                if taken < STRICT_MAX_ROWS {
                    next = rx.try_recv().ok();
                }
            }
            match self.opts.durability {
                Durability::Strict => self.commit(),
                Durability::Batched { .. } if self.builder.len() >= BATCHED_MAX_ROWS => {
                    self.commit();
                }
                Durability::Batched { .. } => self.tick(),
            }
        }
    }

    /// How long to wait for the next command before [`Writer::tick`] has work.
    fn wait(&self) -> Duration {
        let mut wait = Duration::from_secs(1);
        if let Some(f) = &self.current {
            wait = wait.min(self.opts.roll_age.saturating_sub(f.opened.elapsed()));
        }
        if let (Durability::Batched { interval }, Some(oldest)) =
            (self.opts.durability, self.oldest)
        {
            wait = wait.min(interval.saturating_sub(oldest.elapsed()));
        }
        wait
    }

    /// Timer work: commit records that waited an interval, and roll an old file.
    fn tick(&mut self) {
        if let (Durability::Batched { interval }, Some(oldest)) =
            (self.opts.durability, self.oldest)
            && oldest.elapsed() >= interval
        {
            self.commit();
        }
        if self
            .current
            .as_ref()
            .is_some_and(|f| f.opened.elapsed() >= self.opts.roll_age)
            && self.builder.is_empty()
            && let Err(e) = self.roll()
        {
            self.fail(e);
        }
    }

    fn append(&mut self, record: Record, ack: Option<oneshot::Sender<Result<u64, Error>>>) {
        if let Some(e) = self.failed.get() {
            if let Some(ack) = ack {
                let _ = ack.send(Err(e.clone()));
            }
            return;
        }
        let envelope = Envelope {
            seq: self.head.seq + 1,
            instance: self.instance.clone(),
            record,
        };
        let hash = Hash::of(&self.head.hash, &envelope, &mut self.scratch);
        if let Err(e) = self.builder.push(&envelope, &self.head.hash, &hash) {
            if let Some(ack) = ack {
                let _ = ack.send(Err(Error::failed(format!("encoding a record: {e}"))));
            }
            self.fail(Error::failed(format!("encoding a record: {e}")));
            return;
        }
        self.head = Head {
            seq: envelope.seq,
            hash,
        };
        if let Some(ack) = ack {
            self.acks.push((envelope.seq, ack));
        }
        self.oldest.get_or_insert_with(Instant::now);
    }

    /// Writes the pending batch, fsyncs, acknowledges, and rolls if the file is full or old.
    fn commit(&mut self) {
        if self.builder.is_empty() {
            return;
        }
        let (rows, started) = (self.builder.len() as u64, Instant::now());
        match self.write_batch() {
            Ok(()) => {
                if let Some(m) = self.meter.get() {
                    m.records.inc_by(rows);
                    m.write_seconds.observe(started.elapsed().as_secs_f64());
                }
                self.oldest = None;
                for (seq, ack) in self.acks.drain(..) {
                    let _ = ack.send(Ok(seq));
                }
                let full = self.current.as_ref().is_some_and(|f| {
                    f.bytes >= self.opts.roll_bytes || f.opened.elapsed() >= self.opts.roll_age
                });
                if full && let Err(e) = self.roll() {
                    self.fail(e);
                }
            }
            Err(e) => self.fail(e),
        }
    }

    fn write_batch(&mut self) -> Result<(), Error> {
        let batch = self
            .builder
            .finish()
            .map_err(|e| Error::failed(format!("building a batch: {e}")))?;
        if self.current.is_none() {
            self.current = Some(self.create_file()?);
        }
        let dir = self.opts.dir.clone();
        let Some(f) = self.current.as_mut() else {
            return Err(Error::failed("no open file".to_owned()));
        };
        let path = dir.join(&f.name);
        f.stream
            .write(&batch)
            .map_err(|e| Error::failed(format!("{}: encoding a batch: {e}", path.display())))?;
        let bytes = std::mem::take(f.stream.get_mut());
        // One write per batch: a killed process leaves whole batches only.
        f.file
            .write_all(&bytes)
            .and_then(|()| f.file.sync_data())
            .map_err(|e| Error::failed(format!("{}: {e}", path.display())))?;
        f.bytes += bytes.len() as u64;
        Ok(())
    }

    fn create_file(&mut self) -> Result<OpenFile, Error> {
        let name = file::file_name(self.next_number);
        let path = self.opts.dir.join(&name);
        let fail = |e: String| Error::failed(format!("{}: {e}", path.display()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| fail(e.to_string()))?;
        // 8-byte alignment instead of the default 64: with ~100 buffers per batch, padding each
        // to 64 bytes would make a one-row batch (strict mode under light load) several times
        // its size. Readers realign buffers as they need.
        let ipc = IpcWriteOptions::try_new(8, false, MetadataVersion::V5)
            .map_err(|e| fail(e.to_string()))?;
        let mut stream = StreamWriter::try_new_with_options(Vec::new(), &schema(), ipc)
            .map_err(|e| fail(e.to_string()))?;
        let header = std::mem::take(stream.get_mut());
        file.write_all(&header)
            .and_then(|()| file.sync_all())
            .and_then(|()| file::sync_dir(&self.opts.dir))
            .map_err(|e| fail(e.to_string()))?;
        self.next_number += 1;
        tracing::debug!(file = %name, first_seq = self.head.seq + 1, "Audit file started");
        Ok(OpenFile {
            name,
            file,
            stream,
            bytes: header.len() as u64,
            opened: Instant::now(),
        })
    }

    /// Closes the current file (end-of-stream marker, fsync) and signs its head.
    fn roll(&mut self) -> Result<(), Error> {
        let Some(mut f) = self.current.take() else {
            return Ok(());
        };
        let path = self.opts.dir.join(&f.name);
        let fail = |e: String| Error::failed(format!("{}: {e}", path.display()));
        f.stream.finish().map_err(|e| fail(e.to_string()))?;
        let eos = std::mem::take(f.stream.get_mut());
        f.file
            .write_all(&eos)
            .and_then(|()| f.file.sync_all())
            .map_err(|e| fail(e.to_string()))?;
        if let Some(key) = &self.opts.signing_key {
            let sig = HeadSignature::sign(key, &f.name, self.head);
            file::write_atomic(&file::sig_path(&path), sig.to_text().as_bytes())
                .map_err(|e| fail(format!("signature: {e}")))?;
        }
        tracing::debug!(file = %f.name, last_seq = self.head.seq, "Audit file closed");
        Ok(())
    }

    fn close(&mut self) -> Result<(), Error> {
        self.commit();
        if let Some(e) = self.failed.get() {
            return Err(e.clone());
        }
        self.roll()
    }

    /// Enters the failed state: every waiter and every later record gets `e`.
    fn fail(&mut self, e: Error) {
        tracing::error!(error = %e, "Audit log failed; statements needing it are refused");
        let e = self.failed.get_or_init(|| e).clone();
        for (_, ack) in self.acks.drain(..) {
            let _ = ack.send(Err(e.clone()));
        }
        self.builder = BatchBuilder::default();
        self.oldest = None;
        // Nothing more is written to a file whose last batch may be partial.
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{SessionEnd, from_micros};
    use crate::audit::verify::verify;

    fn end(session: u64) -> Record {
        Record::SessionEnd(SessionEnd {
            session,
            time: from_micros(1),
            reason: "x".repeat(100),
        })
    }

    fn opts(dir: &std::path::Path, roll_bytes: u64, key: Option<SigningKey>) -> Options {
        Options {
            dir: dir.to_owned(),
            durability: Durability::Strict,
            roll_bytes,
            roll_age: Duration::from_secs(3600),
            signing_key: key,
        }
    }

    fn heads(dir: &std::path::Path) -> Vec<(u64, Hash, Hash)> {
        let mut out = Vec::new();
        for f in file::list(dir).unwrap() {
            for b in file::read(&f.path).unwrap().batches {
                let c = Columns::new(&b).unwrap();
                for i in 0..c.len() {
                    let r = c.row(i).unwrap();
                    out.push((f.number, r.prev_hash, r.hash));
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn rolls_by_size_and_links_each_file_to_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(opts(dir.path(), 4096, None)).unwrap();
        for s in 1..=6 {
            assert_eq!(log.record_durable(end(s)).await.unwrap(), s);
        }
        log.close().await.unwrap();
        let rows = heads(dir.path());
        assert!(rows.last().unwrap().0 >= 2, "several files: {rows:?}");
        for w in rows.windows(2) {
            assert_eq!(w[1].1, w[0].2, "each record links to the one before");
        }
        assert_eq!(rows[0].1, crate::audit::chain::GENESIS);
        for f in file::list(dir.path()).unwrap() {
            assert!(
                file::read(&f.path).unwrap().framing.closed,
                "closed on roll"
            );
        }
    }

    #[tokio::test]
    async fn rolls_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path(), 1 << 30, None);
        // Every file is already old when its first batch is written.
        o.roll_age = Duration::ZERO;
        let log = AuditLog::open(o).unwrap();
        for s in 1..=3 {
            log.record_durable(end(s)).await.unwrap();
        }
        log.close().await.unwrap();
        assert_eq!(file::list(dir.path()).unwrap().len(), 3);
    }

    #[tokio::test]
    async fn signs_each_closed_file_and_reopens_where_it_left_off() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[3; 32]);
        let log = AuditLog::open(opts(dir.path(), 4096, Some(key.clone()))).unwrap();
        for s in 1..=4 {
            log.record_durable(end(s)).await.unwrap();
        }
        log.close().await.unwrap();
        let log = AuditLog::open(opts(dir.path(), 4096, Some(key.clone()))).unwrap();
        assert_eq!(log.record_durable(end(5)).await.unwrap(), 5);
        log.close().await.unwrap();

        let files = file::list(dir.path()).unwrap();
        for f in &files {
            let text = std::fs::read_to_string(file::sig_path(&f.path)).unwrap();
            let sig = HeadSignature::parse(&text).unwrap();
            assert!(sig.verify(&key.verifying_key()));
        }
        let report = verify(dir.path(), Some(&key.verifying_key())).unwrap();
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.head.seq, 5);
    }

    #[test]
    fn the_signing_key_is_not_in_debug_output() {
        let o = opts(
            std::path::Path::new("d"),
            1,
            Some(SigningKey::from_bytes(&[0xab; 32])),
        );
        let shown = format!("{o:?}");
        assert!(
            !shown.contains("171") && !shown.to_lowercase().contains("abab"),
            "{shown}"
        );
    }
}
