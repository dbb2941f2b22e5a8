//! `pgward audit verify`: recompute the chain over every file and report the first break.
//!
//! Every record's hash is recomputed from its decoded fields and compared with the stored one;
//! every record must link to the one before it (across files too) and carry the next sequence
//! number; every signature sidecar must match its file's actual last record.
//!
//! # What is detected
//! - any change to a record's fields (one byte of text, a number, a null): **edited**;
//! - a record removed: **missing**, named by the record after the gap;
//! - records swapped or moved: **reordered**, named by the first record out of place;
//! - a file cut inside a message: **truncated** after its last complete record; and a file
//!   cut at a message boundary when a later file, or its signed head, says what it ended with;
//! - a signature that does not verify, or that does not match the file: **bad signature**.
//!
//! # What is not
//! - Records removed from the end of the *last* file at a batch boundary, or the last files
//!   deleted, when no signed head covers them: the log then looks like one whose writer
//!   crashed or is still writing. Signed heads narrow this to the file still being written.
//! - A whole chain recomputed from some point on by someone who can write the files: hashes
//!   alone cannot tell; a signed head past that point can, when checked with a trusted key.
//! - Changes that leave every decoded value the same (for example in alignment padding):
//!   they change nothing the log says.
//!
//! A file that the writer left open (a crash), followed by a file that links to its last
//! complete record, is a crash recovery, not a break: it is listed in [`Report::notes`].

use std::fmt;
use std::path::Path;

use ed25519_dalek::VerifyingKey;

use super::Error;
use super::batch::{Columns, StoredRecord};
use super::chain::{Hash, Head, hex_decode};
use super::file::{self, HeadSignature, Tail};

/// The result of checking a log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Files checked.
    pub files: usize,
    /// Records whose chain checked out, up to the first break.
    pub records: u64,
    /// The last good record.
    pub head: Head,
    /// The first break, if any.
    pub first_break: Option<Break>,
    /// Facts worth knowing that are not breaks (crash recoveries, an open last file …).
    pub notes: Vec<String>,
}

/// Where and how the chain broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The file's name.
    pub file: String,
    /// The row within the file, from 1, when the break is at a row.
    pub row: Option<usize>,
    /// The sequence number of the record named, when known.
    pub seq: Option<u64>,
    /// What kind of break.
    pub kind: BreakKind,
    /// Details for the auditor.
    pub detail: String,
}

/// Kinds of break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakKind {
    /// A record's content no longer matches its hash, or a file's bytes are not records.
    Edited,
    /// Records are missing before the one named.
    Missing,
    /// The record named is out of order.
    Reordered,
    /// A file ends early.
    Truncated,
    /// A signature is missing, invalid, or does not match its file.
    BadSignature,
}

/// Checks every file in `dir`. With `key`, every closed file must carry a head signature by
/// that key; without, signatures present are checked against the key they name (which proves
/// consistency, not authorship).
///
/// # Errors
/// Only when a file or the directory can't be read at all; everything wrong inside files is
/// in the [`Report`].
pub fn verify(dir: &Path, key: Option<&VerifyingKey>) -> Result<Report, Error> {
    let files = file::list(dir).map_err(|e| Error::io(dir, e))?;
    let mut v = Verifier {
        report: Report {
            files: files.len(),
            records: 0,
            head: Head::EMPTY,
            first_break: None,
            notes: Vec::new(),
        },
        scratch: Vec::new(),
        torn: None,
        self_signed: 0,
    };
    for (i, f) in files.iter().enumerate() {
        let last = i + 1 == files.len();
        if let Err(b) = v.file(&f.path, last, key) {
            v.report.first_break = Some(b);
            return Ok(v.report);
        }
    }
    if v.self_signed > 0 {
        v.report.notes.push(format!(
            "{} file signatures checked against the key they name: pass a trusted key (--key) \
             to check who signed",
            v.self_signed
        ));
    }
    // A file torn before its end with no record after it to vouch for a crash.
    if let Some((file, head)) = v.torn.take() {
        v.report.first_break = Some(Break {
            file,
            row: None,
            seq: Some(head.seq),
            kind: BreakKind::Truncated,
            detail: format!(
                "the file ends inside a message after record {}, and no later record continues \
                 from there",
                head.seq
            ),
        });
    }
    Ok(v.report)
}

/// Reads a key for `verify`: 64 hex digits of a public key, or a 32-byte signing key file.
///
/// # Errors
/// [`Error::Key`] when the file can't be read or holds neither.
pub fn read_verifying_key(path: &Path) -> Result<VerifyingKey, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::Key(format!("{}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&bytes);
    if let Some(public) = hex_decode(text.trim()).and_then(|b| <[u8; 32]>::try_from(b).ok()) {
        return VerifyingKey::from_bytes(&public)
            .map_err(|e| Error::Key(format!("{}: {e}", path.display())));
    }
    file::signing_key(&bytes)
        .map(|k| k.verifying_key())
        .ok_or_else(|| Error::Key(format!("{}: not a key", path.display())))
}

struct Verifier {
    report: Report,
    scratch: Vec<u8>,
    /// A file that ended inside a message, and its last complete record: the next file must
    /// link to exactly that record for it to be a crash rather than a truncation.
    torn: Option<(String, Head)>,
    /// Signatures checked only against the key they name (no trusted key given).
    self_signed: usize,
}

// === impl Verifier ===

impl Verifier {
    fn file(&mut self, path: &Path, last: bool, key: Option<&VerifyingKey>) -> Result<(), Break> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let brk = |row: Option<usize>, seq: Option<u64>, kind, detail: String| Break {
            file: name.clone(),
            row,
            seq,
            kind,
            detail,
        };
        let contents = file::read(path).map_err(|e| {
            brk(
                None,
                None,
                BreakKind::Truncated,
                format!("cannot be read: {e}"),
            )
        })?;

        // Decode every row first, so that a record out of place can be looked for further on.
        let mut rows: Vec<(Option<u64>, Result<StoredRecord, String>)> = Vec::new();
        let mut batch_error = None;
        for batch in &contents.batches {
            match Columns::new(batch) {
                Ok(cols) => rows.extend((0..cols.len()).map(|i| (cols.seq(i), cols.row(i)))),
                Err(m) => {
                    batch_error = Some(m);
                    break;
                }
            }
        }

        for (idx, (stored_seq, row)) in rows.iter().enumerate() {
            let row_no = Some(idx + 1);
            let rec = match row {
                Ok(r) => r,
                Err(m) => {
                    return Err(brk(row_no, *stored_seq, BreakKind::Edited, m.clone()));
                }
            };
            let seq = rec.envelope.seq;
            let computed = Hash::of(&rec.prev_hash, &rec.envelope, &mut self.scratch);
            if computed != rec.hash {
                return Err(brk(
                    row_no,
                    Some(seq),
                    BreakKind::Edited,
                    "its content does not match its hash".to_owned(),
                ));
            }
            let expected = self.report.head.seq + 1;
            if rec.prev_hash != self.report.head.hash || seq != expected {
                if let Some((torn_file, head)) = self.torn.take() {
                    return Err(Break {
                        file: torn_file,
                        row: None,
                        seq: Some(head.seq),
                        kind: BreakKind::Truncated,
                        detail: format!(
                            "the file ends inside a message after record {}, and {name} does \
                             not continue from there",
                            head.seq
                        ),
                    });
                }
                let (kind, detail) = if seq > expected {
                    let later = rows[idx + 1..]
                        .iter()
                        .any(|(s, r)| *s == Some(expected) && r.is_ok());
                    if later {
                        (
                            BreakKind::Reordered,
                            format!("record {seq} comes before record {expected}"),
                        )
                    } else if expected == seq - 1 {
                        (BreakKind::Missing, format!("record {expected} is missing"))
                    } else {
                        (
                            BreakKind::Missing,
                            format!("records {expected} to {} are missing", seq - 1),
                        )
                    }
                } else if seq < expected {
                    (
                        BreakKind::Reordered,
                        format!("record {seq} comes after record {}", expected - 1),
                    )
                } else {
                    (
                        BreakKind::Edited,
                        format!(
                            "it does not link to record {}: a record before it was replaced or \
                             the chain was rewritten",
                            expected - 1
                        ),
                    )
                };
                return Err(brk(row_no, Some(seq), kind, detail));
            }
            if let Some((torn_file, head)) = self.torn.take() {
                self.report.notes.push(format!(
                    "{torn_file} ends in an incomplete write after record {} (a crash); {name} \
                     continues from that record",
                    head.seq
                ));
            }
            self.report.head = Head {
                seq,
                hash: rec.hash,
            };
            self.report.records += 1;
        }

        let after = self.report.head.seq;
        let end_row = Some(rows.len() + 1);
        if let Some(m) = batch_error.or(contents.decode_error) {
            return Err(brk(
                end_row,
                None,
                BreakKind::Edited,
                format!("unreadable after record {after}: {m}"),
            ));
        }
        match &contents.framing.tail {
            Tail::Clean => {}
            Tail::Corrupt { offset, detail } => {
                return Err(brk(
                    end_row,
                    None,
                    BreakKind::Edited,
                    format!("byte {offset}, after record {after}: {detail}"),
                ));
            }
            Tail::Torn { len } if last => {
                return Err(brk(
                    None,
                    Some(after),
                    BreakKind::Truncated,
                    format!(
                        "the file ends inside a message ({len} bytes) after record {after}: \
                         truncated, or torn by a crash while writing"
                    ),
                ));
            }
            Tail::Torn { .. } => self.torn = Some((name.clone(), self.report.head)),
        }

        let closed = contents.framing.closed;
        self.signature(path, &name, closed, last, key)?;
        if !closed && contents.framing.tail == Tail::Clean {
            self.report.notes.push(if last {
                format!(
                    "{name} is open (being written, or its writer stopped): records cut from \
                     its end at a batch boundary could not be detected"
                )
            } else {
                format!(
                    "{name} was not closed (its writer stopped); the next file continues the chain"
                )
            });
        }
        Ok(())
    }

    fn signature(
        &mut self,
        path: &Path,
        name: &str,
        closed: bool,
        last: bool,
        key: Option<&VerifyingKey>,
    ) -> Result<(), Break> {
        let head = self.report.head;
        let brk = |kind, detail: String| Break {
            file: name.to_owned(),
            row: None,
            seq: Some(head.seq),
            kind,
            detail,
        };
        let text = match std::fs::read_to_string(file::sig_path(path)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A closed file, or any file before the last, was closed by the writer, which
                // signs on close when it has a key.
                if key.is_some() && (closed || !last) {
                    return Err(brk(
                        BreakKind::BadSignature,
                        "the signature file is missing".to_owned(),
                    ));
                }
                return Ok(());
            }
            Err(e) => return Err(brk(BreakKind::BadSignature, format!("signature: {e}"))),
        };
        let sig = HeadSignature::parse(&text)
            .map_err(|m| brk(BreakKind::BadSignature, format!("signature: {m}")))?;
        let verifying = match key {
            Some(k) => *k,
            None => VerifyingKey::from_bytes(&sig.public_key).map_err(|e| {
                brk(
                    BreakKind::BadSignature,
                    format!("signature public key: {e}"),
                )
            })?,
        };
        if !sig.verify(&verifying) || sig.file != name {
            return Err(brk(
                BreakKind::BadSignature,
                "the signature does not verify".to_owned(),
            ));
        }
        if sig.head.seq > head.seq {
            return Err(brk(
                BreakKind::Truncated,
                format!(
                    "the signed head is record {} but the file ends at record {}",
                    sig.head.seq, head.seq
                ),
            ));
        }
        if sig.head != head {
            return Err(brk(
                BreakKind::BadSignature,
                format!(
                    "the signed head (record {}) is not the file's last record ({})",
                    sig.head.seq, head.seq
                ),
            ));
        }
        if key.is_none() {
            self.self_signed += 1;
        }
        Ok(())
    }
}

// === impl Report ===

impl Report {
    /// Whether the whole log checked out.
    pub fn is_ok(&self) -> bool {
        self.first_break.is_none()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        match &self.first_break {
            None => writeln!(
                f,
                "ok: {} records in {} files, last record {} ({})",
                self.records, self.files, self.head.seq, self.head.hash
            ),
            Some(b) => {
                writeln!(f, "BROKEN: {b}")?;
                writeln!(
                    f,
                    "{} records checked out before it (last good record {})",
                    self.records, self.head.seq
                )
            }
        }
    }
}

// === impl Break ===

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.file)?;
        if let Some(row) = self.row {
            write!(f, " row {row}")?;
        }
        if let Some(seq) = self.seq {
            write!(f, " (record {seq})")?;
        }
        write!(f, ": {}", self.detail)
    }
}

// === impl BreakKind ===

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakKind::Edited => "edited",
            BreakKind::Missing => "missing",
            BreakKind::Reordered => "reordered",
            BreakKind::Truncated => "truncated",
            BreakKind::BadSignature => "bad signature",
        })
    }
}
