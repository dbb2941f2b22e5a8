//! The relay's hot path allocates nothing per message: the count of allocations while relaying
//! a result is the same for 10 rows as for 20 000.
//!
//! Its own test binary, because counting needs a global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use std::sync::Arc;

use pgward::session::relay::{End, Pump, Stage};
use pgward::session::{
    ClientStage, LiveRules, Pipeline, Refusals, ResultTracker, RulesHandle, StatementTracker,
    refusal_token,
};
use pgward::sql::{FunctionCatalog, ProfileCache};

#[path = "../common/frames.rs"]
mod frames;
use frames::result_batch;

/// Counts allocations made by the current thread, so other test threads don't disturb the count.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call forwards to `System` with the caller's arguments unchanged; counting uses a
// const-initialized thread-local `Cell`, which never allocates or re-enters the allocator.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: CountingAlloc = CountingAlloc;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Allocations made while `stage` pumps `input` to a sink, after the pump exists.
fn allocations_pumping(input: Vec<u8>, stage: Stage) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut pump = Pump::new(
        Box::new(std::io::Cursor::new(input)),
        Box::new(tokio::io::sink()),
        BytesMut::new(),
        1 << 30,
        stage,
    );
    let before = allocations();
    let end = rt.block_on(pump.run());
    let after = allocations();
    assert!(matches!(end, End::SourceClosed), "{end}");
    after - before
}

/// Allocations made while relaying `rows` rows.
fn allocations_relaying(rows: usize) -> u64 {
    allocations_pumping(result_batch(rows), Stage::Plain)
}

#[test]
fn relaying_allocates_nothing_per_message() {
    let few = allocations_relaying(10);
    let many = allocations_relaying(20_000);
    assert_eq!(
        few, many,
        "allocations grew with the number of rows: {few} for 10 rows, {many} for 20000"
    );
    assert!(few <= 4, "{few} allocations to relay a result");
}

/// `n` simple Queries with different literal values, as a client sends them.
fn queries(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let sql = format!(
            "SELECT abalance FROM pgbench_accounts WHERE aid = {}\0",
            1000 + i % 9000
        );
        out.push(b'Q');
        out.extend_from_slice(&((sql.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(sql.as_bytes());
    }
    out
}

/// Allocations made while analyzing, deciding and forwarding `n` allowed queries.
fn allocations_deciding(n: usize, rules: &Arc<RulesHandle>) -> u64 {
    let tracker = StatementTracker::new(
        Arc::new(ProfileCache::new(64)),
        Arc::new(FunctionCatalog::builtin_only()),
    );
    let live = LiveRules::new(Arc::clone(rules), "agent-1", &[]);
    let stage = ClientStage::new(
        tracker,
        live,
        "db",
        refusal_token(),
        Arc::new(Refusals::default()),
        // Nothing answers here, so the queue holds every message: room for all of them up front.
        ResultTracker::new(Arc::new(Pipeline::with_capacity(4096))),
    );
    allocations_pumping(queries(n), Stage::Client(Box::new(stage)))
}

#[test]
fn deciding_cached_statements_allocates_nothing_per_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.toml"),
        "[roles.agent]\nmembers = [\"agent-*\"]\n[[rules]]\nid = \"agent-reads\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"allow\"\n",
    )
    .unwrap();
    let rules = RulesHandle::load(dir.path()).unwrap();
    // The first query of each run is a cache miss (parse, insert); the others are hits whose
    // keys differ only in the literal, so the count must not grow with the number of queries.
    let few = allocations_deciding(10, &rules);
    let many = allocations_deciding(2_000, &rules);
    assert_eq!(
        few, many,
        "allocations grew with the number of queries: {few} for 10, {many} for 2000"
    );
}

/// The masker: a row with nothing to mask is answered without allocating, and rewriting rows
/// into a reused buffer allocates nothing once the buffer has grown.
#[test]
fn masking_allocates_nothing_per_row() {
    use pgward::mask::{Applied, ColumnMask, MaskPlan, MaskReason, apply};
    use pgward::policy::MaskStrategy;

    let row = |ssn: Option<&[u8]>| frames::data_row(&[Some(b"42"), ssn]);
    let plan = MaskPlan::from_columns(vec![
        None,
        Some(ColumnMask {
            strategy: MaskStrategy::Partial {
                keep_first: 0,
                keep_last: 4,
                text: "***-**-".to_owned(),
            },
            format: 0,
            rule_index: 0,
            reason: MaskReason::Direct,
        }),
    ]);
    let (untouched, masked) = (row(None), row(Some(b"123-45-6789")));
    let mut out = BytesMut::with_capacity(1024);
    let per_rows = |n: usize, body: &[u8], out: &mut BytesMut| {
        let before = allocations();
        for _ in 0..n {
            out.clear();
            let applied = apply(body, &plan, b"key", out).unwrap();
            assert_eq!(applied == Applied::Untouched, body == untouched.as_slice());
        }
        allocations() - before
    };
    assert_eq!(per_rows(10_000, &untouched, &mut out), 0);
    per_rows(1, &masked, &mut out);
    assert_eq!(per_rows(10_000, &masked, &mut out), 0);
}

/// A simple-query result as the server sends it: RowDescription (id, email, card; no table
/// origins, so lineage decides), `rows` DataRows, CommandComplete, ReadyForQuery.
fn described_result(rows: usize) -> Vec<u8> {
    use bytes::BufMut;
    let mut b = BytesMut::new();
    let fields: [(&str, u32); 3] = [("id", 23), ("email", 25), ("card", 25)];
    let mut body = BytesMut::new();
    body.put_i16(3);
    for (name, type_oid) in fields {
        body.put_slice(name.as_bytes());
        body.put_u8(0);
        body.put_u32(0);
        body.put_i16(0);
        body.put_u32(type_oid);
        body.put_i16(-1);
        body.put_i32(-1);
        body.put_i16(0);
    }
    b.put_u8(b'T');
    b.put_i32(4 + body.len() as i32);
    b.put_slice(&body);
    b.extend_from_slice(&result_batch(rows));
    b.put_slice(b"C\0\0\0\x0dSELECT 1\0Z\0\0\0\x05I");
    b.to_vec()
}

/// Allocations made by the server stage while a result of `rows` rows passes, for an agent
/// whose masks are `masks` (TOML).
fn allocations_masking(rows: usize, masks: &str) -> u64 {
    use pgward::config::{SslMode, Upstream};
    use pgward::session::{ColumnCatalog, MetadataPools, ResultMasker, ServerStage};
    use pgward::sql::{AnalyzeContext, analyze};

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.toml"),
        format!("[roles.agent]\nmembers = [\"agent-*\"]\n[[rules]]\nid = \"reads\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"allow\"\n{masks}"),
    )
    .unwrap();
    let rules = RulesHandle::load(dir.path()).unwrap();
    let upstream = Upstream {
        host: "127.0.0.1".to_owned(),
        port: 1,
        user: "nobody".to_owned(),
        password: None,
        sslmode: SslMode::Disable,
        ca_file: None,
        connect_timeout: std::time::Duration::from_secs(1),
        databases: Default::default(),
    };
    let functions = Arc::new(FunctionCatalog::builtin_only());
    // Never connects: no field has a table origin to look up.
    let catalog = Arc::new(ColumnCatalog::new(
        "db",
        Arc::new(MetadataPools::new(upstream, None)),
        Arc::clone(&functions),
    ));
    let pipeline = Arc::new(Pipeline::with_capacity(16));
    let path = vec!["public".to_owned()];
    let analysis = analyze(
        "SELECT id, email, card FROM people",
        &AnalyzeContext::new(&path, &functions),
    );
    ResultTracker::new(Arc::clone(&pipeline)).query(Arc::new(analysis), None);
    let masker = ResultMasker::new(
        pipeline,
        LiveRules::new(Arc::clone(&rules), "agent-1", &[]),
        catalog,
        Arc::from(&b"key"[..]),
    );
    let stage = ServerStage::new(refusal_token(), Arc::new(Refusals::default()), masker);
    allocations_pumping(described_result(rows), Stage::Server(Box::new(stage)))
}

#[test]
fn masked_results_allocate_nothing_per_row_through_the_server_stage() {
    // No mask touches this result: rows pass as they came.
    let other = "[[masks]]\nroles = [\"agent\"]\ncolumns = [\"people.ssn\"]\nstrategy = \"null\"\n";
    let (few, many) = (
        allocations_masking(10, other),
        allocations_masking(20_000, other),
    );
    // Buffer growth differs with the input's size; what must not happen is growth with rows.
    assert!(
        many <= few,
        "untouched: {few} for 10 rows, {many} for 20000"
    );
    // Two masked columns: every row is rewritten into the reused buffer.
    let masked = "[[masks]]\nroles = [\"agent\"]\ncolumns = [\"people.email\"]\nstrategy = \"email\"\n\
                  [[masks]]\nroles = [\"agent\"]\ncolumns = [\"people.card\"]\nstrategy = \"partial\"\n";
    // A buffer may grow once more for a longer input; per-row allocation would add 90 000.
    let (few, many) = (
        allocations_masking(10_000, masked),
        allocations_masking(100_000, masked),
    );
    assert!(
        many <= few + 2,
        "rewritten: {few} for 10000 rows, {many} for 100000"
    );
}
