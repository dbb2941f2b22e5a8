//! A server stage that masks for an `agent`, fed by a described simple-query result: shared by
//! the allocation tests and the masking benches (included with `#[path]`).

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use pgward::config::{SslMode, Upstream};
use pgward::session::{
    ColumnCatalog, LiveRules, MetadataPools, Pipeline, Refusals, ResultMasker, ResultTracker,
    RulesHandle, ServerStage, refusal_token,
};
use pgward::sql::{AnalyzeContext, FunctionCatalog, analyze};

/// Text columns of the wide result: `c0` … `c{n-1}`.
pub fn column_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i}")).collect()
}

/// A simple-query result as the server sends it: RowDescription (text columns with no table
/// origin, so the lineage of `SELECT c0, … FROM wide` decides), `rows` DataRows of `width`
/// values of `value_len` bytes, CommandComplete, ReadyForQuery.
pub fn described_result(rows: usize, width: usize, value_len: usize) -> Vec<u8> {
    let mut b = BytesMut::new();
    let mut body = BytesMut::new();
    body.put_i16(width as i16);
    for name in column_names(width) {
        body.put_slice(name.as_bytes());
        body.put_u8(0);
        body.put_u32(0);
        body.put_i16(0);
        body.put_u32(25);
        body.put_i16(-1);
        body.put_i32(-1);
        body.put_i16(0);
    }
    b.put_u8(b'T');
    b.put_i32(4 + body.len() as i32);
    b.put_slice(&body);
    let value: Vec<u8> = (0..value_len).map(|i| b'0' + (i % 10) as u8).collect();
    for _ in 0..rows {
        b.put_u8(b'D');
        b.put_i32((4 + 2 + width * (4 + value_len)) as i32);
        b.put_i16(width as i16);
        for _ in 0..width {
            b.put_i32(value_len as i32);
            b.put_slice(&value);
        }
    }
    b.put_slice(b"C\0\0\0\x0dSELECT 1\0Z\0\0\0\x05I");
    b.to_vec()
}

/// A column catalog that never connects (no lookup happens while nothing has a table origin
/// and no mask applies).
pub fn offline_catalog() -> Arc<ColumnCatalog> {
    let upstream = Upstream {
        host: "127.0.0.1".to_owned(),
        port: 1,
        user: "nobody".to_owned(),
        password: None,
        sslmode: SslMode::Disable,
        ca_file: None,
        connect_timeout: std::time::Duration::from_secs(1),
        databases: Default::default(),
        logins: Default::default(),
        application_name: String::new(),
    };
    Arc::new(ColumnCatalog::new(
        "db",
        Arc::new(MetadataPools::new(upstream, None)),
        Arc::new(FunctionCatalog::builtin_only()),
    ))
}

/// The server stage of an `agent-1` session that has just sent `SELECT c0, … FROM wide`, under
/// rules that mask `masked` of its columns (`c0`, `c1` …) with `partial`.
pub fn server_stage(width: usize, masked: usize) -> ServerStage {
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from(
        "[roles.agent]\nmembers = [\"agent-*\"]\n[[rules]]\nid = \"reads\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"allow\"\n",
    );
    // A mask on another table keeps masking on for the session even with 0 masked columns.
    rules.push_str(
        "[[masks]]\nroles = [\"agent\"]\ncolumns = [\"other.secret\"]\nstrategy = \"null\"\n",
    );
    for name in column_names(width).iter().take(masked) {
        rules.push_str(&format!(
            "[[masks]]\nroles = [\"agent\"]\ncolumns = [\"wide.{name}\"]\nstrategy = \"partial\"\n"
        ));
    }
    std::fs::write(dir.path().join("rules.toml"), rules).unwrap();
    let rules = RulesHandle::load(dir.path()).unwrap();
    let functions = Arc::new(FunctionCatalog::builtin_only());
    // Never connects: no field has a table origin, and `wide` is taken for a plain table.
    let catalog = offline_catalog();
    catalog.assume_no_relations(&[pgward::sql::TableName::new("public", "wide")]);
    let pipeline = Arc::new(Pipeline::with_capacity(16));
    let path = vec!["public".to_owned()];
    let sql = format!("SELECT {} FROM wide", column_names(width).join(", "));
    let analysis = analyze(&sql, &AnalyzeContext::new(&path, &functions));
    ResultTracker::new(Arc::clone(&pipeline)).query(Arc::new(analysis), None, None);
    let masker = ResultMasker::new(
        pipeline,
        LiveRules::new(Arc::clone(&rules), "agent-1", &[]),
        catalog,
        Arc::from(&b"key"[..]),
    );
    ServerStage::new(refusal_token(), Arc::new(Refusals::default()), masker)
}
