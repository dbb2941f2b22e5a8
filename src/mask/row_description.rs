//! A checked view of a RowDescription body: the fields a plan is built from.

use super::Error;
use crate::proto::MessageReader;

/// One field of a RowDescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDescription<'a> {
    /// The column name as the server sent it (not necessarily UTF-8).
    pub name: &'a [u8],
    /// The OID of the table the column comes from, or 0 for a computed value.
    pub table_oid: u32,
    /// The column's attribute number in that table, or 0.
    pub attnum: i16,
    /// The OID of the value's type.
    pub type_oid: u32,
    /// The type's size (negative for variable-width types).
    pub type_size: i16,
    /// The type modifier.
    pub type_modifier: i32,
    /// 0 for text, 1 for binary (other values are treated as binary: not text).
    pub format: i16,
}

/// The fields of one RowDescription, borrowing the message body.
///
/// One `Vec` per RowDescription (once per result, not per row) is the only
/// allocation: rows are never decoded into owned structs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDescriptionView<'a> {
    fields: Vec<FieldDescription<'a>>,
}

/// Bytes of a field after its name: table OID, attnum, type OID, size, modifier, format.
const FIXED_FIELD_LEN: usize = 4 + 2 + 4 + 2 + 4 + 2;

impl<'a> RowDescriptionView<'a> {
    /// Parses a RowDescription body (after the tag and length).
    ///
    /// # Errors
    /// [`Error::RowDescription`] when the body is truncated, has a negative
    /// field count, or has bytes after the last field.
    pub fn parse(body: &'a [u8]) -> Result<Self, Error> {
        let mut r = MessageReader::new(body, "RowDescription");
        let bad = |_| Error::RowDescription;
        let count = r.i16().map_err(bad)?;
        let count = usize::try_from(count).map_err(|_| Error::RowDescription)?;
        // The count is the peer's word: never reserve more than the body could hold.
        let mut fields = Vec::with_capacity(count.min(body.len() / (FIXED_FIELD_LEN + 1)));
        for _ in 0..count {
            let name = r.cstr().map_err(bad)?;
            let table_oid = r.i32().map_err(bad)? as u32;
            let attnum = r.i16().map_err(bad)?;
            let type_oid = r.i32().map_err(bad)? as u32;
            let type_size = r.i16().map_err(bad)?;
            let type_modifier = r.i32().map_err(bad)?;
            let format = r.i16().map_err(bad)?;
            fields.push(FieldDescription {
                name,
                table_oid,
                attnum,
                type_oid,
                type_size,
                type_modifier,
                format,
            });
        }
        r.finish().map_err(bad)?;
        Ok(RowDescriptionView { fields })
    }

    /// The fields, in column order.
    pub fn fields(&self) -> &[FieldDescription<'a>] {
        &self.fields
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields (a statement that returns no columns).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}
