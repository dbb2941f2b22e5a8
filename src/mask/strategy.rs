//! Applying a [`MaskStrategy`] to one value, written straight into the output row.
//!
//! Text values are masked as UTF-8 text; a value that is not valid UTF-8 is
//! opaque and redacted. A binary-format value (or any format other than text)
//! cannot be masked in its own type without knowing that type's encoding, so
//! every strategy turns it into NULL: never the raw bytes.

use bytes::{BufMut, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::Error;
use crate::policy::MaskStrategy;

/// The text format code.
pub const FORMAT_TEXT: i16 = 0;

/// Hex characters kept from the HMAC by the `hash` strategy (64 bits: enough to
/// keep distinct values distinct in practice, short enough to read).
pub const HASH_HEX_LEN: usize = 16;

/// What a value with no usable text (invalid UTF-8, e-mail without `@`) becomes.
const OPAQUE: &str = "***";

/// Appends one DataRow field (Int32 length, then bytes; -1 for NULL) holding
/// `value` masked with `strategy` to `out`.
///
/// `value` is `None` for NULL, which stays NULL whatever the strategy (a NULL
/// reveals nothing the column's presence does not). `key` keys the HMAC of
/// `hash` and `fake`, so that equal values mask equally within a deployment
/// but cannot be looked up in a table by someone without the key.
///
/// # Errors
/// [`Error::Key`] if HMAC refuses the key (it takes any length), and
/// [`Error::TooLarge`] if the masked value would not fit a field length.
pub fn write_value(
    strategy: &MaskStrategy,
    format: i16,
    value: Option<&[u8]>,
    key: &[u8],
    out: &mut BytesMut,
) -> Result<(), Error> {
    let Some(value) = value else {
        out.put_i32(-1);
        return Ok(());
    };
    if format != FORMAT_TEXT || *strategy == MaskStrategy::Null {
        out.put_i32(-1);
        return Ok(());
    }
    let len_at = out.len();
    out.put_i32(0);
    let start = out.len();
    let text = std::str::from_utf8(value).ok();
    match (strategy, text) {
        (MaskStrategy::Null, _) => {}
        (MaskStrategy::Redact { text: r }, _) => out.put_slice(r.as_bytes()),
        (MaskStrategy::Hash, _) => {
            // Hashing works on bytes, so even invalid UTF-8 keeps equal-stays-equal.
            let digest = hmac(key, value)?;
            for b in digest.iter().take(HASH_HEX_LEN / 2) {
                out.put_slice(&hex_byte(*b));
            }
        }
        (MaskStrategy::Partial { text: r, .. }, None) => out.put_slice(r.as_bytes()),
        (
            MaskStrategy::Partial {
                keep_first,
                keep_last,
                text: r,
            },
            Some(s),
        ) => partial(s, *keep_first as usize, *keep_last as usize, r, out),
        (MaskStrategy::Email, Some(s)) => match s.rfind('@') {
            Some(at) => {
                out.put_slice(OPAQUE.as_bytes());
                out.put_slice(&s.as_bytes()[at..]);
            }
            None => out.put_slice(OPAQUE.as_bytes()),
        },
        (MaskStrategy::Fake, Some(s)) => fake(s, &hmac(key, value)?, out),
        (MaskStrategy::Email | MaskStrategy::Fake, None) => out.put_slice(OPAQUE.as_bytes()),
    }
    let written = i32::try_from(out.len() - start).map_err(|_| Error::TooLarge)?;
    out[len_at..start].copy_from_slice(&written.to_be_bytes());
    Ok(())
}

/// Keeps the first and last characters; the middle becomes `text`. A value too
/// short to hide anything (no more characters than are kept) becomes `text`
/// alone: keeping it all would reveal it whole.
fn partial(s: &str, first: usize, last: usize, text: &str, out: &mut BytesMut) {
    // ASCII (the usual national ids, card and phone numbers): characters are bytes.
    if s.is_ascii() {
        let b = s.as_bytes();
        if b.len() <= first.saturating_add(last) {
            out.put_slice(text.as_bytes());
        } else {
            out.put_slice(&b[..first]);
            out.put_slice(text.as_bytes());
            out.put_slice(&b[b.len() - last..]);
        }
        return;
    }
    let count = s.chars().count();
    if count <= first.saturating_add(last) {
        out.put_slice(text.as_bytes());
        return;
    }
    // Byte offsets of the character boundaries, so that multibyte characters stay whole.
    let head_end = s.char_indices().nth(first).map_or(s.len(), |(i, _)| i);
    let tail_start = s
        .char_indices()
        .nth(count - last)
        .map_or(s.len(), |(i, _)| i);
    out.put_slice(&s.as_bytes()[..head_end]);
    out.put_slice(text.as_bytes());
    out.put_slice(&s.as_bytes()[tail_start..]);
}

/// A value of the same shape: each digit becomes an ASCII digit, each letter an
/// ASCII letter of the same case (uncased scripts become lower case), every
/// other character stays (so `-`, `@` and spaces keep the format readable). The choices come
/// from the HMAC of the value, so equal inputs give equal outputs.
fn fake(s: &str, digest: &[u8; 32], out: &mut BytesMut) {
    let mut tmp = [0u8; 4];
    for (i, c) in s.chars().enumerate() {
        // Past 32 characters, vary the byte by the round so that patterns do not repeat exactly.
        let round = u8::try_from((i / digest.len()) % 256).unwrap_or(0);
        let b = digest[i % digest.len()].wrapping_add(round.wrapping_mul(97));
        let m = match c {
            '0'..='9' => char::from(b'0' + b % 10),
            'a'..='z' => char::from(b'a' + b % 26),
            'A'..='Z' => char::from(b'A' + b % 26),
            // Other scripts' letters and digits would leak (`José`): ASCII of the same kind.
            c if c.is_numeric() => char::from(b'0' + b % 10),
            c if c.is_uppercase() => char::from(b'A' + b % 26),
            c if c.is_alphabetic() => char::from(b'a' + b % 26),
            other => other,
        };
        out.put_slice(m.encode_utf8(&mut tmp).as_bytes());
    }
}

fn hmac(key: &[u8], value: &[u8]) -> Result<[u8; 32], Error> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).map_err(|_| Error::Key)?;
    mac.update(value);
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&mac.finalize().into_bytes());
    Ok(digest)
}

fn hex_byte(b: u8) -> [u8; 2] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]
}
