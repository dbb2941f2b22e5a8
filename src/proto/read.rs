//! Checked reads from a message body: every read says what was malformed instead of panicking.

use super::Error;

/// A cursor over a message body whose reads fail with [`Error::Malformed`] instead of panicking.
#[derive(Debug, Clone)]
pub struct MessageReader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

/// Splits a NUL-terminated string off the front of `buf`: `(string, rest)`.
pub fn cstr(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = buf.iter().position(|&b| b == 0)?;
    Some((&buf[..nul], &buf[nul + 1..]))
}

// === impl MessageReader ===

impl<'a> MessageReader<'a> {
    /// Reads `buf`; errors name `what`, the message being read.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        MessageReader { buf, what }
    }
    fn malformed(&self) -> Error {
        Error::Malformed { what: self.what }
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> &'a [u8] {
        self.buf
    }
    /// Takes `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.buf.len() {
            return Err(self.malformed());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    /// Takes one byte.
    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.bytes(1)?[0])
    }
    /// Takes a big-endian `i16`.
    pub fn i16(&mut self) -> Result<i16, Error> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    /// Takes a big-endian `i32`.
    pub fn i32(&mut self) -> Result<i32, Error> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// Takes a NUL-terminated string (without the NUL).
    pub fn cstr(&mut self) -> Result<&'a [u8], Error> {
        let (s, rest) = cstr(self.buf).ok_or_else(|| self.malformed())?;
        self.buf = rest;
        Ok(s)
    }
    /// Takes a NUL-terminated UTF-8 string.
    pub fn cstr_utf8(&mut self) -> Result<&'a str, Error> {
        let s = self.cstr()?;
        std::str::from_utf8(s).map_err(|_| self.malformed())
    }
    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.malformed())
        }
    }
}
