//! Masking `COPY … TO STDOUT` rows (text and CSV formats).
//!
//! For `COPY … TO STDOUT` the server sends one row per CopyData message, each ending in a
//! newline. Neither format can be masked without knowing its options (delimiter, quote, escape,
//! NULL string, header), which are read from the statement with sqlparser
//! ([`copy_formats`]). Binary COPY can't be masked in its own types: the session refuses it
//! before it runs when masks apply.
//!
//! A masked field is decoded (text escapes, CSV quoting), masked like a text value, and encoded
//! again; a field whose mask is `null` becomes the format's NULL.

use bytes::{BufMut, BytesMut};
use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::Error;
use super::plan::MaskPlan;
use super::row::Applied;
use super::strategy::{FORMAT_TEXT, write_value};
use crate::proto::tag;

/// How a `COPY … TO STDOUT` writes its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFormat {
    /// `FORMAT csv` rather than text.
    pub csv: bool,
    /// `FORMAT binary`: can't be masked.
    pub binary: bool,
    /// Field separator (tab for text, comma for CSV).
    pub delimiter: u8,
    /// CSV quote character.
    pub quote: u8,
    /// CSV escape character (the quote by default).
    pub escape: u8,
    /// How NULL is written (`\N` for text, empty for CSV).
    pub null: Vec<u8>,
    /// The first row is a header of column names.
    pub header: bool,
    /// An `ENCODING` option: rows are converted to an encoding pgward does not parse.
    pub encoding: bool,
    /// `COPY table [(columns)]` rather than `COPY (query)`: fields are the columns' own values.
    pub from_table: bool,
}

/// Masks the rows of one COPY according to a plan.
#[derive(Debug)]
pub struct CopyMasker {
    plan: MaskPlan,
    format: CopyFormat,
    /// Rows seen (the first is the header, if any).
    rows: u64,
    /// Rows can't be parsed (binary COPY): each is replaced by an empty CopyData.
    unreadable: bool,
    /// Reused: one decoded field, then its masked value.
    field: Vec<u8>,
    value: BytesMut,
}

// === impl CopyFormat ===

impl Default for CopyFormat {
    fn default() -> Self {
        CopyFormat {
            csv: false,
            binary: false,
            delimiter: b'\t',
            quote: b'"',
            escape: b'"',
            null: b"\\N".to_vec(),
            header: false,
            encoding: false,
            from_table: false,
        }
    }
}

impl CopyFormat {
    /// Whether rows in this format can be masked.
    pub fn maskable(&self) -> bool {
        !self.binary && !self.encoding
    }
}

/// For each statement of `sql`, the format of a `COPY … TO STDOUT`, `None` for any other
/// statement; `None` overall when the text doesn't parse (the caller then can't know).
pub fn copy_formats(sql: &str) -> Option<Vec<Option<CopyFormat>>> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    Some(statements.iter().map(copy_format).collect())
}

fn copy_format(statement: &Statement) -> Option<CopyFormat> {
    let Statement::Copy {
        source,
        to: true,
        target: CopyTarget::Stdout,
        options,
        legacy_options,
        ..
    } = statement
    else {
        return None;
    };
    let mut f = CopyFormat {
        from_table: matches!(source, CopySource::Table { .. }),
        ..CopyFormat::default()
    };
    let mut null = None;
    let mut delimiter = None;
    let mut escape = None;
    let set_csv = |f: &mut CopyFormat| {
        f.csv = true;
        f.binary = false;
    };
    for o in options {
        match o {
            CopyOption::Format(name) => match name.value.to_ascii_lowercase().as_str() {
                "csv" => set_csv(&mut f),
                "text" => f.csv = false,
                _ => f.binary = true,
            },
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Null(s) => null = Some(s.clone()),
            CopyOption::Header(h) => f.header = *h,
            CopyOption::Quote(c) => f.quote = ascii(*c, &mut f),
            CopyOption::Escape(c) => escape = Some(*c),
            CopyOption::Encoding(_) => f.encoding = true,
            CopyOption::Freeze(_)
            | CopyOption::ForceQuote(_)
            | CopyOption::ForceNotNull(_)
            | CopyOption::ForceNull(_) => {}
        }
    }
    for o in legacy_options {
        match o {
            CopyLegacyOption::Binary => f.binary = true,
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
            CopyLegacyOption::Null(s) => null = Some(s.clone()),
            CopyLegacyOption::Csv(csv) => {
                set_csv(&mut f);
                for c in csv {
                    match c {
                        CopyLegacyCsvOption::Header => f.header = true,
                        CopyLegacyCsvOption::Quote(q) => f.quote = ascii(*q, &mut f),
                        CopyLegacyCsvOption::Escape(e) => escape = Some(*e),
                        CopyLegacyCsvOption::ForceQuote(_)
                        | CopyLegacyCsvOption::ForceNotNull(_) => {}
                    }
                }
            }
            // Options of other dialects: nothing PostgreSQL would accept; treat as unknown.
            _ => f.binary = true,
        }
    }
    if f.csv {
        f.delimiter = b',';
        f.null.clear();
    }
    if let Some(d) = delimiter {
        f.delimiter = ascii(d, &mut f);
    }
    f.escape = match escape {
        Some(e) => ascii(e, &mut f),
        None => f.quote,
    };
    if let Some(n) = null {
        f.null = n.into_bytes();
    }
    Some(f)
}

/// A one-byte option value; anything else can't be parsed safely, so the format is marked
/// unmaskable.
fn ascii(c: char, f: &mut CopyFormat) -> u8 {
    if c.is_ascii() {
        c as u8
    } else {
        f.encoding = true;
        b'\t'
    }
}

// === impl CopyMasker ===

impl CopyMasker {
    /// A masker of rows in `format`; `plan` has one entry per COPY column.
    pub fn new(plan: MaskPlan, format: CopyFormat) -> Self {
        CopyMasker {
            plan,
            format,
            rows: 0,
            unreadable: false,
            field: Vec::new(),
            value: BytesMut::new(),
        }
    }

    /// A masker for rows that can't be parsed while `plan` masks some of their columns:
    /// every row is replaced by an empty CopyData, never passed.
    pub fn unreadable(plan: MaskPlan) -> Self {
        CopyMasker {
            unreadable: true,
            ..CopyMasker::new(plan, CopyFormat::default())
        }
    }

    /// Masks one CopyData body (one row). A row needing no change is [`Applied::Untouched`];
    /// otherwise a whole new CopyData frame is appended to `out`.
    ///
    /// # Errors
    /// [`Error::FieldCount`] when the row has a different number of fields than the plan,
    /// [`Error::DataRow`] when a CSV field's quoting is broken.
    pub fn apply(&mut self, row: &[u8], key: &[u8], out: &mut BytesMut) -> Result<Applied, Error> {
        self.rows += 1;
        if self.unreadable {
            out.put_u8(tag::COPY_DATA);
            out.put_i32(4);
            return Ok(Applied::Rewritten);
        }
        if (self.rows == 1 && self.format.header) || self.plan.is_empty() {
            return Ok(Applied::Untouched);
        }
        let line = row.strip_suffix(b"\n").unwrap_or(row);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let start = out.len();
        out.put_u8(tag::COPY_DATA);
        out.put_i32(0);
        let result = self.rewrite(line, key, out);
        if let Err(e) = result {
            out.truncate(start);
            return Err(e);
        }
        out.put_u8(b'\n');
        let len = i32::try_from(out.len() - start - 1).map_err(|_| Error::TooLarge)?;
        out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
        Ok(Applied::Rewritten)
    }

    fn rewrite(&mut self, line: &[u8], key: &[u8], out: &mut BytesMut) -> Result<(), Error> {
        let masks = self.plan.columns();
        let mut rest = line;
        let mut index = 0;
        loop {
            let (raw, next) = split_field(rest, &self.format)?;
            let mask = masks.get(index).ok_or(Error::FieldCount {
                expected: masks.len(),
                found: index + 1,
            })?;
            if index > 0 {
                out.put_u8(self.format.delimiter);
            }
            match mask {
                None => out.put_slice(raw),
                Some(m) => {
                    let is_null = raw == self.format.null.as_slice()
                        && !(self.format.csv && raw.first() == Some(&self.format.quote));
                    self.field.clear();
                    if !is_null {
                        decode(raw, &self.format, &mut self.field);
                    }
                    self.value.clear();
                    let value = (!is_null || m.constant).then_some(self.field.as_slice());
                    write_value(&m.strategy, FORMAT_TEXT, value, key, &mut self.value)?;
                    match self.value.get(4..) {
                        Some(masked) if self.value[..4] != (-1i32).to_be_bytes() => {
                            encode(masked, &self.format, out)
                        }
                        _ => out.put_slice(&self.format.null),
                    }
                }
            }
            index += 1;
            match next {
                Some(n) => rest = n,
                None => break,
            }
        }
        if index != masks.len() {
            return Err(Error::FieldCount {
                expected: masks.len(),
                found: index,
            });
        }
        Ok(())
    }
}

/// The first field of `line` as written, and what follows its delimiter (`None` at the end).
fn split_field<'a>(line: &'a [u8], f: &CopyFormat) -> Result<(&'a [u8], Option<&'a [u8]>), Error> {
    if !f.csv {
        // In text format a delimiter inside a value is always backslash-escaped.
        let mut i = 0;
        while i < line.len() {
            match line[i] {
                b'\\' => i += 2,
                b if b == f.delimiter => return Ok((&line[..i], Some(&line[i + 1..]))),
                _ => i += 1,
            }
        }
        return Ok((line, None));
    }
    let mut i = 0;
    let mut quoted = false;
    while i < line.len() {
        let b = line[i];
        if quoted {
            if b == f.escape && f.escape != f.quote && line.get(i + 1) == Some(&f.quote) {
                i += 2;
                continue;
            }
            if b == f.quote {
                if f.escape == f.quote && line.get(i + 1) == Some(&f.quote) {
                    i += 2;
                    continue;
                }
                quoted = false;
            }
        } else if b == f.quote {
            quoted = true;
        } else if b == f.delimiter {
            return Ok((&line[..i], Some(&line[i + 1..])));
        }
        i += 1;
    }
    if quoted {
        return Err(Error::DataRow);
    }
    Ok((line, None))
}

/// A field's value as the server had it: text escapes undone, or CSV quotes removed.
fn decode(raw: &[u8], f: &CopyFormat, out: &mut Vec<u8>) {
    if f.csv {
        let mut quoted = false;
        let mut i = 0;
        while i < raw.len() {
            let b = raw[i];
            if quoted && b == f.escape && raw.get(i + 1) == Some(&f.quote) && f.escape != f.quote {
                out.push(f.quote);
                i += 2;
                continue;
            }
            if b == f.quote {
                if quoted && f.escape == f.quote && raw.get(i + 1) == Some(&f.quote) {
                    out.push(f.quote);
                    i += 2;
                    continue;
                }
                quoted = !quoted;
            } else {
                out.push(b);
            }
            i += 1;
        }
        return;
    }
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' || i + 1 >= raw.len() {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let c = raw[i + 1];
        i += 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut digits = 0;
                while digits < 2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                            digits += 1;
                        }
                        None => break,
                    }
                }
                if digits == 0 {
                    out.push(b'x');
                } else {
                    out.push(v as u8);
                }
            }
            other => out.push(other),
        }
    }
}

/// Writes a masked value in the row's format: escaped for text, always quoted for CSV.
fn encode(value: &[u8], f: &CopyFormat, out: &mut BytesMut) {
    if f.csv {
        out.put_u8(f.quote);
        for &b in value {
            if b == f.quote || b == f.escape {
                out.put_u8(f.escape);
            }
            out.put_u8(b);
        }
        out.put_u8(f.quote);
        return;
    }
    for &b in value {
        match b {
            b'\\' => out.put_slice(b"\\\\"),
            b'\n' => out.put_slice(b"\\n"),
            b'\r' => out.put_slice(b"\\r"),
            b'\t' => out.put_slice(b"\\t"),
            b if b == f.delimiter => {
                out.put_u8(b'\\');
                out.put_u8(b);
            }
            b => out.put_u8(b),
        }
    }
}
