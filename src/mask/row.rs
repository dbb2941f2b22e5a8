//! The masker: walks a DataRow's field lengths and rebuilds the row only when
//! a masked column holds a value, or a content detector finds something in
//! the value of a column no rule masks.
//!
//! Detectors scan values of every format. A binary value of a fixed-size type
//! (integers, dates, floats, UUIDs) is a few raw bytes that practically never
//! pass a detector's prefilter, but text, varchar, json and bytea are sent in
//! binary as their raw bytes, the same content as in text: skipping them
//! would let a client evade detection by asking for binary results. A binary
//! value with a hit becomes NULL (as [`write_value`] does with every binary
//! value it masks), a text value is masked with the detector's strategy.

use bytes::{BufMut, BytesMut};

use super::Error;
use super::plan::MaskPlan;
use super::strategy::write_value;
use crate::policy::{DetectorKind, MaskStrategy};

/// The DataRow message tag.
pub const DATA_ROW_TAG: u8 = b'D';

/// What [`apply`] did with a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// No masked column held a non-NULL value: forward the original frame as it is.
    Untouched,
    /// A whole new DataRow frame (tag, length, body) was appended to `out`.
    Rewritten,
    /// As [`Applied::Rewritten`], and a content detector masked at least one
    /// value: the first such value (in column order) was found by rule `rule`
    /// (its index in [`crate::policy::RuleSet::detectors`]) as a `kind`.
    Detected {
        /// The index of the detector rule.
        rule: usize,
        /// What it found.
        kind: DetectorKind,
    },
}

// === impl Applied ===

impl Applied {
    /// Whether a new frame was appended to `out` (and must be sent instead of the original).
    pub fn is_rewritten(self) -> bool {
        !matches!(self, Applied::Untouched)
    }
}

/// Masks one DataRow body (after the tag and length) according to `plan`.
///
/// The row is first walked without decoding anything: when no masked column
/// holds a non-NULL value and no detector of the plan finds anything in the
/// others, the answer is [`Applied::Untouched`], nothing is written and
/// nothing is allocated. Otherwise the rebuilt frame is appended to `out` (a
/// buffer the caller reuses; it is not cleared, so several rows can be
/// batched into it).
///
/// # Errors
/// [`Error::FieldCount`] when the row's field count differs from the plan's,
/// [`Error::DataRow`] for a truncated field, a length below -1 or trailing
/// bytes, and what [`write_value`] reports. On error `out` is left as it was.
/// The caller must fail closed: never forward a row that failed here.
pub fn apply(
    row_body: &[u8],
    plan: &MaskPlan,
    key: &[u8],
    out: &mut BytesMut,
) -> Result<Applied, Error> {
    let masks = plan.columns();
    let detectors = plan.detectors();
    let mut needs_rewrite = false;
    // The first hit: (column, rule, kind). Later columns are scanned again when rewriting.
    let mut first_hit = None;
    for (i, field) in Fields::new(row_body, masks.len())?.enumerate() {
        let mask = masks.get(i).and_then(Option::as_ref);
        let Some(value) = field? else {
            // A constant mask hides NULL-ness too.
            needs_rewrite |= mask.is_some_and(|m| m.constant);
            continue;
        };
        if mask.is_some() {
            needs_rewrite = true;
        } else if let (None, Some(d)) = (first_hit, detectors) {
            first_hit = d.detect(value).map(|(rule, kind)| (i, rule, kind));
        }
    }
    if !needs_rewrite && first_hit.is_none() {
        return Ok(Applied::Untouched);
    }
    let start = out.len();
    let result = rewrite(row_body, plan, first_hit, key, out, start);
    if result.is_err() {
        out.truncate(start);
    }
    result.map(|()| match first_hit {
        Some((_, rule, kind)) => Applied::Detected { rule, kind },
        None => Applied::Rewritten,
    })
}

fn rewrite(
    row_body: &[u8],
    plan: &MaskPlan,
    first_hit: Option<(usize, usize, DetectorKind)>,
    key: &[u8],
    out: &mut BytesMut,
    start: usize,
) -> Result<(), Error> {
    let masks = plan.columns();
    let detectors = plan.detectors();
    out.reserve(row_body.len() + 5);
    out.put_u8(DATA_ROW_TAG);
    out.put_i32(0);
    // Validated by the first pass; the count fits an i16 because the row held it.
    out.put_slice(row_body.get(..2).ok_or(Error::DataRow)?);
    for (i, (field, mask)) in Fields::new(row_body, masks.len())?.zip(masks).enumerate() {
        let field = field?;
        if let Some(m) = mask {
            let value = if m.constant {
                Some(field.unwrap_or_default())
            } else {
                field
            };
            write_value(&m.strategy, m.format, value, key, out)?;
            continue;
        }
        let Some(v) = field else {
            out.put_i32(-1);
            continue;
        };
        // Columns before the first hit were scanned by the first pass and hold nothing.
        let hit = match (first_hit, detectors) {
            (Some((col, rule, _)), _) if col == i => Some(rule),
            (Some((col, _, _)), Some(d)) if col < i => d.detect(v).map(|(rule, _)| rule),
            _ => None,
        };
        match hit {
            Some(rule) => {
                // A rule the detectors cannot name is impossible; NULL rather than the value.
                let strategy = detectors
                    .and_then(|d| d.strategy(rule))
                    .unwrap_or(&MaskStrategy::Null);
                write_value(strategy, plan.format(i), Some(v), key, out)?;
            }
            None => {
                out.put_i32(i32::try_from(v.len()).map_err(|_| Error::TooLarge)?);
                out.put_slice(v);
            }
        }
    }
    let len = i32::try_from(out.len() - start - 1).map_err(|_| Error::TooLarge)?;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// The fields of a DataRow body: `None` for NULL, else the value's bytes.
/// Checks the count against `expected` up front and trailing bytes at the end.
struct Fields<'a> {
    rest: &'a [u8],
    left: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(body: &'a [u8], expected: usize) -> Result<Self, Error> {
        let (count, rest) = body.split_first_chunk::<2>().ok_or(Error::DataRow)?;
        let found = usize::from(u16::from_be_bytes(*count));
        if found != expected {
            return Err(Error::FieldCount { expected, found });
        }
        Ok(Fields {
            rest,
            left: found,
            failed: false,
        })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Option<&'a [u8]>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.left == 0 {
            if self.rest.is_empty() {
                return None;
            }
            self.failed = true;
            return Some(Err(Error::DataRow));
        }
        self.left -= 1;
        let item = self.field();
        if item.is_err() {
            self.failed = true;
        }
        Some(item)
    }
}

impl<'a> Fields<'a> {
    fn field(&mut self) -> Result<Option<&'a [u8]>, Error> {
        let (len, rest) = self.rest.split_first_chunk::<4>().ok_or(Error::DataRow)?;
        let len = i32::from_be_bytes(*len);
        if len == -1 {
            self.rest = rest;
            return Ok(None);
        }
        // Negative lengths other than -1 are rejected before any cast.
        let len = usize::try_from(len).map_err(|_| Error::DataRow)?;
        if len > rest.len() {
            return Err(Error::DataRow);
        }
        let (value, rest) = rest.split_at(len);
        self.rest = rest;
        Ok(Some(value))
    }
}

/// Rewrites a DataRow with every field NULL: for rows of a result whose shape pgward never
/// saw while masks apply. The field count is kept so the client's decoder stays in step.
///
/// # Errors
/// [`Error::DataRow`] when the body is too short to hold a field count.
pub fn null_all(row_body: &[u8], out: &mut BytesMut) -> Result<Applied, Error> {
    let (count, _) = row_body.split_first_chunk::<2>().ok_or(Error::DataRow)?;
    let fields = usize::from(u16::from_be_bytes(*count));
    out.put_u8(DATA_ROW_TAG);
    out.put_i32(i32::try_from(4 + 2 + 4 * fields).map_err(|_| Error::TooLarge)?);
    out.put_slice(count);
    for _ in 0..fields {
        out.put_i32(-1);
    }
    Ok(Applied::Rewritten)
}
