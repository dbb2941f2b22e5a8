//! `pgward audit export --parquet OUT`: every record of a log directory in one Parquet file.
//!
//! The Parquet schema is the audit schema ([`super::batch::schema`]): one row per record, the
//! same columns, `hash` and `prev_hash` as 32-byte fixed binaries, times as UTC microsecond
//! timestamps. Snappy compression (pure Rust) keeps it readable by DuckDB, pandas and polars.
//! Export reads what decodes and does not check the chain: run `verify` for that.

use std::path::Path;

use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::Error;
use super::batch::schema;
use super::file;

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// Audit files read.
    pub files: usize,
    /// Rows written.
    pub rows: u64,
}

/// Writes every record in `dir` to the Parquet file `out`, in log order.
///
/// # Errors
/// When a file can't be read or the output can't be written.
pub fn export_parquet(dir: &Path, out: &Path) -> Result<Exported, Error> {
    let fail = |message: String| Error::Export {
        path: out.display().to_string(),
        message,
    };
    let files = file::list(dir).map_err(|e| Error::io(dir, e))?;
    let sink = std::fs::File::create(out).map_err(|e| Error::io(out, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer =
        ArrowWriter::try_new(sink, schema(), Some(props)).map_err(|e| fail(e.to_string()))?;
    let mut rows = 0;
    for f in &files {
        let contents = file::read(&f.path).map_err(|e| Error::io(&f.path, e))?;
        for batch in &contents.batches {
            writer.write(batch).map_err(|e| fail(e.to_string()))?;
            rows += batch.num_rows() as u64;
        }
    }
    let sink = writer.into_inner().map_err(|e| fail(e.to_string()))?;
    sink.sync_all().map_err(|e| Error::io(out, e))?;
    Ok(Exported {
        files: files.len(),
        rows,
    })
}
