//! Raw server frames for tests and benches (included with `#[path]`, so every user compiles the
//! same functions; not every user calls every one).
#![allow(dead_code)]

use bytes::{BufMut, BytesMut};

/// `rows` DataRows of three text columns, then CommandComplete and ReadyForQuery.
pub fn result_batch(rows: usize) -> Vec<u8> {
    let mut b = BytesMut::new();
    for i in 0..rows {
        let cols = [
            format!("{i}"),
            "alice@example.com".to_owned(),
            "4111 1111 1111 1111".to_owned(),
        ];
        let len: usize = 4 + 2 + cols.iter().map(|c| 4 + c.len()).sum::<usize>();
        b.put_u8(b'D');
        b.put_i32(len as i32);
        b.put_i16(3);
        for c in &cols {
            b.put_i32(c.len() as i32);
            b.put_slice(c.as_bytes());
        }
    }
    b.put_u8(b'C');
    b.put_i32(4 + 10);
    b.put_slice(b"SELECT 10\0");
    b.put_u8(b'Z');
    b.put_i32(5);
    b.put_u8(b'I');
    b.to_vec()
}

/// The body of a DataRow (after tag and length) with these fields; `None` is NULL.
pub fn data_row(fields: &[Option<&[u8]>]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_i16(fields.len() as i16);
    for f in fields {
        match f {
            Some(v) => {
                b.put_i32(v.len() as i32);
                b.put_slice(v);
            }
            None => b.put_i32(-1),
        }
    }
    b.to_vec()
}
