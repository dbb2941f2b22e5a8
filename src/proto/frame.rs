//! Walking typed frames (`tag`, `i32` length, body) in a byte buffer without copying.

use super::Error;

/// Bytes in a typed frame's header: one tag byte and a four-byte length.
pub const HEADER_LEN: usize = 5;

/// A typed frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The message type byte.
    pub tag: u8,
    /// The length field: the body plus the four bytes of the length itself.
    pub len: u32,
}

/// One complete frame, borrowed from the buffer it was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    bytes: &'a [u8],
}

/// Iterator over the complete frames at the start of a buffer.
///
/// It stops at the first incomplete frame; [`Frames::consumed`] then tells how many bytes the
/// complete frames took. An invalid header ends the walk with an error.
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
    limit: usize,
    failed: bool,
}

/// Parses the header at the start of `buf`, or `None` when fewer than [`HEADER_LEN`] bytes are there.
///
/// # Errors
/// [`Error::Malformed`] when the length is below 4, [`Error::FrameTooLarge`] when the whole frame
/// would exceed `limit` bytes. Both are decided from the header alone, before any allocation.
pub fn parse_header(buf: &[u8], limit: usize) -> Result<Option<Header>, Error> {
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    // A negative i32 length reads as a huge u32 and is caught by the limit below.
    if len < 4 {
        return Err(Error::Malformed {
            what: "message length",
        });
    }
    let header = Header { tag: head[0], len };
    if header.frame_len() > limit {
        return Err(Error::FrameTooLarge {
            size: header.frame_len(),
            limit,
        });
    }
    Ok(Some(header))
}

// === impl Header ===

impl Header {
    /// Bytes of the whole frame: tag, length and body.
    pub fn frame_len(&self) -> usize {
        1 + self.len as usize
    }
}

// === impl Frame ===

impl<'a> Frame<'a> {
    /// The message type byte.
    pub fn tag(&self) -> u8 {
        self.bytes[0]
    }
    /// The whole frame as received: tag, length and body.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// The body, after the length field.
    pub fn body(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..]
    }
}

// === impl Frames ===

impl<'a> Frames<'a> {
    /// Walks `buf`, refusing any frame longer than `limit` bytes.
    pub fn new(buf: &'a [u8], limit: usize) -> Self {
        Frames {
            buf,
            pos: 0,
            limit,
            failed: false,
        }
    }
    /// Bytes taken by the complete frames yielded so far.
    pub fn consumed(&self) -> usize {
        self.pos
    }
    /// The header of the incomplete frame at the current position, if its header is complete.
    pub fn pending_header(&self) -> Option<Header> {
        parse_header(&self.buf[self.pos..], self.limit)
            .ok()
            .flatten()
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = &self.buf[self.pos..];
        match parse_header(rest, self.limit) {
            Ok(Some(header)) => {
                let bytes = rest.get(..header.frame_len())?;
                self.pos += bytes.len();
                Some(Ok(Frame { bytes }))
            }
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests;
