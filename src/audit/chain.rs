//! The hash chain: every record's hash covers the previous record's hash and its own canonical
//! bytes, so editing, removing or reordering any record changes every hash after it.
//!
//! `hash(n) = SHA-256(hash(n - 1) || canonical_bytes(n))`, with `hash(0)` = [`GENESIS`] (32 zero
//! bytes). The chain runs across files: each file's first record links to the previous file's
//! last. Anyone who can rewrite the whole tail can recompute it, which is why chain heads are
//! signed on roll (see [`super::file`]).

use sha2::{Digest, Sha256};

use super::record::Envelope;

/// A SHA-256 chain hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hash(pub [u8; 32]);

/// The `prev_hash` of the very first record.
pub const GENESIS: Hash = Hash([0; 32]);

/// The head of a chain: the last record's sequence number and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The last record's global sequence number; 0 before the first record.
    pub seq: u64,
    /// The last record's hash; [`GENESIS`] before the first record.
    pub hash: Hash,
}

// === impl Hash ===

impl Hash {
    /// The hash of the record `canonical` (its canonical bytes) that follows `prev`.
    pub fn link(prev: &Hash, canonical: &[u8]) -> Hash {
        let mut h = Sha256::new();
        h.update(prev.0);
        h.update(canonical);
        Hash(h.finalize().into())
    }

    /// The hash of `record` following `prev`; `scratch` is reused for its canonical bytes.
    pub fn of(prev: &Hash, record: &Envelope, scratch: &mut Vec<u8>) -> Hash {
        scratch.clear();
        record.encode(scratch);
        Hash::link(prev, scratch)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Hash> {
        let bytes = hex_decode(s)?;
        Some(Hash(bytes.try_into().ok()?))
    }

    /// A hash from a 32-byte slice.
    pub fn from_slice(b: &[u8]) -> Option<Hash> {
        Some(Hash(b.try_into().ok()?))
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl std::fmt::Display for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

// === impl Head ===

impl Head {
    /// The head of an empty chain.
    pub const EMPTY: Head = Head {
        seq: 0,
        hash: GENESIS,
    };
}

/// Decodes an even-length hex string.
pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Lowercase hex of any bytes.
pub(crate) fn hex_encode(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{Record, SessionEnd, from_micros};

    fn end(seq: u64, reason: &str) -> Envelope {
        Envelope {
            seq,
            instance: "i".to_owned(),
            record: Record::SessionEnd(SessionEnd {
                session: 1,
                time: from_micros(5),
                reason: reason.to_owned(),
            }),
        }
    }

    #[test]
    fn each_hash_depends_on_the_previous_one() {
        let mut s = Vec::new();
        let a = Hash::of(&GENESIS, &end(1, "x"), &mut s);
        let b = Hash::of(&a, &end(2, "y"), &mut s);
        let b_from_other = Hash::of(&GENESIS, &end(2, "y"), &mut s);
        assert_ne!(b, b_from_other);
        assert_eq!(b, Hash::of(&a, &end(2, "y"), &mut s), "deterministic");
    }

    #[test]
    fn the_hash_is_sha256_of_prev_then_bytes() {
        // SHA-256 of 32 zero bytes followed by "abc", computed independently.
        let h = Hash::link(&GENESIS, b"abc");
        let mut all = vec![0u8; 32];
        all.extend_from_slice(b"abc");
        assert_eq!(h.0, <[u8; 32]>::from(Sha256::digest(&all)));
    }

    #[test]
    fn hex_round_trips() {
        let h = Hash::link(&GENESIS, b"x");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::from_hex("zz"), None);
        assert_eq!(hex_decode("0aFf"), Some(vec![0x0a, 0xff]));
    }
}
