//! Audit files on disk: names, IPC stream framing, reading, and signed chain heads.
//!
//! A log directory holds `audit-000001.arrow`, `audit-000002.arrow` …, each an Arrow IPC
//! *stream*: a schema message, record batch messages, and an end-of-stream marker once the file
//! is closed. Names sort in write order. A closed file may have a sidecar
//! `audit-000001.arrow.sig` holding an ed25519 signature of its chain head (see [`HeadSignature`]).
//!
//! Reading walks the framing itself ([`walk`]) before decoding, so that a file cut inside a
//! message (torn or truncated) is told apart from a file that simply has no end-of-stream marker
//! yet (still being written, or its writer crashed between batches).

use std::io::Write;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};

use super::chain::{Hash, Head, hex_decode, hex_encode};

/// The prefix of every audit file name.
pub const PREFIX: &str = "audit-";
/// The extension of audit files.
pub const EXTENSION: &str = ".arrow";
/// The extension added to a file's name for its signature sidecar.
pub const SIG_EXTENSION: &str = ".sig";

/// One audit file in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// Its path.
    pub path: PathBuf,
    /// Its number, from its name.
    pub number: u64,
}

/// Where the framing of a file ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framing {
    /// Bytes of complete messages (including the end-of-stream marker, if any).
    pub complete_len: usize,
    /// Complete messages, the schema included.
    pub messages: usize,
    /// Whether the file ends with an end-of-stream marker, i.e. was closed.
    pub closed: bool,
    /// What is wrong after `complete_len`, if anything.
    pub tail: Tail,
}

/// The end of a file after its last complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Nothing: the file ends at a message boundary.
    Clean,
    /// The file ends inside a message: `len` bytes of an incomplete one.
    Torn {
        /// Bytes after the last complete message.
        len: usize,
    },
    /// The bytes at `offset` are not a message.
    Corrupt {
        /// Where the bad message starts.
        offset: usize,
        /// What is wrong.
        detail: String,
    },
}

/// What reading a file found.
#[derive(Debug)]
pub struct FileContents {
    /// The record batches that decoded, in order.
    pub batches: Vec<RecordBatch>,
    /// The framing.
    pub framing: Framing,
    /// Why decoding stopped before the end of the complete messages, if it did.
    pub decode_error: Option<String>,
}

/// A signed chain head: the last record of a file, signed when the file is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadSignature {
    /// The file's name (not its path, so that the directory can move).
    pub file: String,
    /// The file's last record.
    pub head: Head,
    /// The public key that signed.
    pub public_key: [u8; 32],
    /// The ed25519 signature of [`HeadSignature::message`].
    pub signature: [u8; 64],
}

/// The name of file number `n`.
pub fn file_name(n: u64) -> String {
    format!("{PREFIX}{n:06}{EXTENSION}")
}

/// The number in an audit file's name, or `None` for any other name.
pub fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(EXTENSION)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The audit files in `dir`, in order. A missing directory has none.
///
/// # Errors
/// When the directory can't be read.
pub fn list(dir: &Path) -> std::io::Result<Vec<LogFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(number) = entry.file_name().to_str().and_then(parse_name) {
            files.push(LogFile {
                path: entry.path(),
                number,
            });
        }
    }
    files.sort_by_key(|f| f.number);
    Ok(files)
}

/// Walks the IPC stream messages in `bytes` without decoding them.
pub fn walk(bytes: &[u8]) -> Framing {
    let mut off = 0;
    let mut messages = 0;
    let le32 = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let framing = |complete_len, messages, closed, tail| Framing {
        complete_len,
        messages,
        closed,
        tail,
    };
    loop {
        let rest = bytes.len() - off;
        if rest == 0 {
            return framing(off, messages, false, Tail::Clean);
        }
        let (Some(marker), Some(meta_len)) = (le32(off), le32(off + 4)) else {
            return framing(off, messages, false, Tail::Torn { len: rest });
        };
        if marker != 0xFFFF_FFFF {
            let detail = "no continuation marker".to_owned();
            return framing(
                off,
                messages,
                false,
                Tail::Corrupt {
                    offset: off,
                    detail,
                },
            );
        }
        if meta_len == 0 {
            let end = off + 8;
            if end != bytes.len() {
                let detail = format!("{} bytes after the end-of-stream marker", bytes.len() - end);
                return framing(
                    end,
                    messages,
                    true,
                    Tail::Corrupt {
                        offset: end,
                        detail,
                    },
                );
            }
            return framing(end, messages, true, Tail::Clean);
        }
        let meta_start = off + 8;
        let Some(meta_end) = meta_start.checked_add(meta_len as usize) else {
            return framing(off, messages, false, Tail::Torn { len: rest });
        };
        let Some(meta) = bytes.get(meta_start..meta_end) else {
            return framing(off, messages, false, Tail::Torn { len: rest });
        };
        let body_len = match arrow_ipc::root_as_message(meta) {
            Ok(m) => m.bodyLength(),
            Err(e) => {
                let detail = format!("unreadable message header: {e}");
                return framing(
                    off,
                    messages,
                    false,
                    Tail::Corrupt {
                        offset: off,
                        detail,
                    },
                );
            }
        };
        let Some(end) = usize::try_from(body_len)
            .ok()
            .and_then(|b| meta_end.checked_add(b))
        else {
            let detail = format!("bad body length {body_len}");
            return framing(
                off,
                messages,
                false,
                Tail::Corrupt {
                    offset: off,
                    detail,
                },
            );
        };
        if end > bytes.len() {
            return framing(off, messages, false, Tail::Torn { len: rest });
        }
        off = end;
        messages += 1;
    }
}

/// Reads and decodes one audit file as far as it goes.
///
/// # Errors
/// Only when the file can't be read; everything wrong inside it is in the result.
pub fn read(path: &Path) -> std::io::Result<FileContents> {
    let bytes = std::fs::read(path)?;
    Ok(decode(&bytes))
}

/// Decodes the bytes of one audit file as far as they go.
pub fn decode(bytes: &[u8]) -> FileContents {
    let framing = walk(bytes);
    let complete = &bytes[..framing.complete_len];
    let mut batches = Vec::new();
    let mut decode_error = None;
    if framing.messages == 0 {
        return FileContents {
            batches,
            framing,
            decode_error,
        };
    }
    match arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(complete), None) {
        Ok(reader) => {
            for batch in reader {
                match batch {
                    Ok(b) => batches.push(b),
                    Err(e) => {
                        decode_error = Some(format!("batch {}: {e}", batches.len() + 1));
                        break;
                    }
                }
            }
        }
        Err(e) => decode_error = Some(format!("schema: {e}")),
    }
    FileContents {
        batches,
        framing,
        decode_error,
    }
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, then fsync of the
/// directory, so that a crash leaves either the old state or the whole new file.
///
/// # Errors
/// When any step fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Fsyncs a directory, so that files created or renamed in it survive a crash.
///
/// # Errors
/// When the directory can't be opened or synced.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    // Directories can't be opened for syncing on every platform; where they can't, renames are
    // durable by other means or not at all, and there is nothing more to do.
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The sidecar path of an audit file.
pub fn sig_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(SIG_EXTENSION);
    PathBuf::from(s)
}

// === impl HeadSignature ===

impl HeadSignature {
    /// Signs the head of the file named `file`.
    pub fn sign(key: &SigningKey, file: &str, head: Head) -> HeadSignature {
        let signature = key.sign(&HeadSignature::message(file, head)).to_bytes();
        HeadSignature {
            file: file.to_owned(),
            head,
            public_key: key.verifying_key().to_bytes(),
            signature,
        }
    }

    /// The signed bytes: a tag, the file name (length-prefixed), the last sequence number and
    /// the last hash.
    pub fn message(file: &str, head: Head) -> Vec<u8> {
        const TAG: &[u8] = b"pgward-audit-head/1";
        let mut m = Vec::with_capacity(TAG.len() + file.len() + 48);
        m.extend_from_slice(&(TAG.len() as u32).to_be_bytes());
        m.extend_from_slice(TAG);
        m.extend_from_slice(&u32::try_from(file.len()).unwrap_or(u32::MAX).to_be_bytes());
        m.extend_from_slice(file.as_bytes());
        m.extend_from_slice(&head.seq.to_be_bytes());
        m.extend_from_slice(&head.hash.0);
        m
    }

    /// Whether the signature is valid for `key`.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(&self.signature);
        key.verify(&HeadSignature::message(&self.file, self.head), &sig)
            .is_ok()
    }

    /// The sidecar text.
    pub fn to_text(&self) -> String {
        format!(
            "pgward-audit-signature/1\nfile {}\nlast-seq {}\nlast-hash {}\npublic-key {}\nsignature {}\n",
            self.file,
            self.head.seq,
            self.head.hash,
            hex_encode(&self.public_key),
            hex_encode(&self.signature),
        )
    }

    /// Parses sidecar text.
    ///
    /// # Errors
    /// A message saying which line is wrong.
    pub fn parse(text: &str) -> Result<HeadSignature, String> {
        let mut lines = text.lines();
        if lines.next() != Some("pgward-audit-signature/1") {
            return Err("not a pgward audit signature".to_owned());
        }
        let mut field = |name: &str| -> Result<String, String> {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|v| v.strip_prefix(' '))
                .map(str::to_owned)
                .ok_or_else(|| format!("expected `{name} …`"))
        };
        let file = field("file")?;
        let seq = field("last-seq")?
            .parse()
            .map_err(|_| "last-seq is not a number".to_owned())?;
        let hash = Hash::from_hex(&field("last-hash")?).ok_or("last-hash is not a hash")?;
        let public_key = hex_decode(&field("public-key")?)
            .and_then(|b| b.try_into().ok())
            .ok_or("public-key is not 32 bytes of hex")?;
        let signature = hex_decode(&field("signature")?)
            .and_then(|b| b.try_into().ok())
            .ok_or("signature is not 64 bytes of hex")?;
        Ok(HeadSignature {
            file,
            head: Head { seq, hash },
            public_key,
            signature,
        })
    }
}

/// The signing key in a 32-byte key file.
pub fn signing_key(bytes: &[u8]) -> Option<SigningKey> {
    let secret: [u8; 32] = bytes.get(..32)?.try_into().ok()?;
    Some(SigningKey::from_bytes(&secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse() {
        assert_eq!(file_name(1), "audit-000001.arrow");
        assert_eq!(parse_name("audit-000001.arrow"), Some(1));
        assert_eq!(parse_name("audit-1234567.arrow"), Some(1_234_567));
        assert_eq!(parse_name("audit-000001.arrow.sig"), None);
        assert_eq!(parse_name("audit-.arrow"), None);
        assert_eq!(parse_name("audit-+1.arrow"), None);
        assert!(file_name(9) < file_name(10));
    }

    #[test]
    fn signatures_verify_only_with_their_key_and_head() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let head = Head {
            seq: 42,
            hash: Hash([1; 32]),
        };
        let sig = HeadSignature::sign(&key, "audit-000001.arrow", head);
        assert!(sig.verify(&key.verifying_key()));
        assert!(!sig.verify(&other.verifying_key()));
        let mut moved = sig.clone();
        moved.head.seq = 41;
        assert!(!moved.verify(&key.verifying_key()));
        let parsed = HeadSignature::parse(&sig.to_text()).unwrap();
        assert_eq!(parsed, sig);
    }

    #[test]
    fn walking_finds_torn_and_closed_streams() {
        use crate::audit::batch::{BatchBuilder, schema};
        use crate::audit::record::{Envelope, Record, SessionEnd, from_micros};
        let mut b = BatchBuilder::default();
        let e = Envelope {
            seq: 1,
            instance: "i".to_owned(),
            record: Record::SessionEnd(SessionEnd {
                session: 1,
                time: from_micros(0),
                reason: "x".to_owned(),
            }),
        };
        b.push(&e, &Hash([0; 32]), &Hash([1; 32])).unwrap();
        let batch = b.finish().unwrap();
        let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &schema()).unwrap();
        w.write(&batch).unwrap();
        let open = w.get_ref().clone();
        w.finish().unwrap();
        let closed = w.into_inner().unwrap();

        let f = walk(&open);
        assert_eq!((f.messages, f.closed, &f.tail), (2, false, &Tail::Clean));
        let f = walk(&closed);
        assert_eq!((f.messages, f.closed, &f.tail), (2, true, &Tail::Clean));
        for cut in 1..open.len() {
            let f = walk(&open[..cut]);
            assert!(f.messages < 2, "cut at {cut}");
            // Cutting right after the schema message leaves a clean (open) stream.
            let clean_cut = f.complete_len == cut && f.tail == Tail::Clean;
            assert!(
                clean_cut || matches!(f.tail, Tail::Torn { .. }),
                "cut at {cut}: {f:?}"
            );
        }
        assert_eq!(decode(&closed).batches, vec![batch]);
    }
}
