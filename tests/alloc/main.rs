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
    let refusals = Arc::new(Refusals::default());
    let approvals = pgward::approval::Approvals::new(
        pgward::approval::Store::Embedded(
            pgward::approval::store::Embedded::in_memory().expect("in-memory store"),
        ),
        None,
    );
    let holds = pgward::session::Holds::new(
        approvals,
        pgward::approval::Party::new("agent-1", Vec::new()),
        pgward::approval::Origin {
            session: "test-1".to_owned(),
            client_addr: "127.0.0.1:1".to_owned(),
        },
        Arc::new(pgward::session::CancelSignal::default()),
        Arc::clone(&refusals),
    );
    let stage = ClientStage::new(
        tracker,
        live,
        "db",
        refusal_token(),
        refusals,
        // Nothing answers here, so the queue holds every message: room for all of them up front.
        ResultTracker::new(Arc::new(Pipeline::with_capacity(4096))),
        masking::offline_catalog(),
        holds,
        None,
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

/// Allocations made while `apply` runs `n` times on `body` under `plan` (into `out`, cleared
/// each time), checking each row is untouched exactly when it is `untouched`.
fn allocations_applying(
    plan: &pgward::mask::MaskPlan,
    body: &[u8],
    untouched: &[u8],
    n: usize,
    out: &mut BytesMut,
) -> u64 {
    use pgward::mask::{Applied, apply};
    let before = allocations();
    for _ in 0..n {
        out.clear();
        let applied = apply(body, plan, b"key", out).unwrap();
        assert_eq!(applied == Applied::Untouched, body == untouched);
    }
    allocations() - before
}

/// The masker: a row with nothing to mask is answered without allocating, and rewriting rows
/// into a reused buffer allocates nothing once the buffer has grown.
#[test]
fn masking_allocates_nothing_per_row() {
    use pgward::mask::{ColumnMask, MaskPlan, MaskReason};
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
            constant: false,
        }),
    ]);
    let (untouched, masked) = (row(None), row(Some(b"123-45-6789")));
    let mut out = BytesMut::with_capacity(1024);
    let per_rows =
        |n, body: &[u8], out: &mut BytesMut| allocations_applying(&plan, body, &untouched, n, out);
    assert_eq!(per_rows(10_000, &untouched, &mut out), 0);
    per_rows(1, &masked, &mut out);
    assert_eq!(per_rows(10_000, &masked, &mut out), 0);
}

#[path = "../common/masking.rs"]
mod masking;

/// Allocations made by the server stage while a result of `rows` rows of 3 columns passes, `masked`
/// of them masked.
fn allocations_masking(rows: usize, masked: usize) -> u64 {
    let stage = masking::server_stage(3, masked);
    allocations_pumping(
        masking::described_result(rows, 3, 16),
        Stage::Server(Box::new(stage)),
    )
}

#[test]
fn masked_results_allocate_nothing_per_row_through_the_server_stage() {
    // A buffer may grow once more for a longer input; per-row allocation would add 90 000.
    for masked in [0, 2] {
        let (few, many) = (
            allocations_masking(10_000, masked),
            allocations_masking(100_000, masked),
        );
        assert!(
            many <= few + 2,
            "{masked} masked columns: {few} allocations for 10000 rows, {many} for 100000"
        );
    }
}

/// Content detectors: scanning rows with no hit allocates nothing (neither the prefilters nor the
/// regexes and checks that run when a value passes them), nor does rewriting rows with a hit.
#[test]
fn detecting_allocates_nothing_per_row() {
    use pgward::mask::{Detectors, MaskPlan};
    use pgward::policy::RuleSet;

    let rules = "[roles.agent]\nmembers = [\"agent-*\"]\n\
        [[rules]]\nid = \"r\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"allow\"\n\
        [[detectors]]\nroles = [\"agent\"]\nkinds = [\"card\", \"ssn\", \"email\", \"iban\", \"secret\"]\nstrategy = \"redact\"\n";
    let (set, _) = RuleSet::parse(&[("r.toml".to_owned(), rules.to_owned())]).unwrap();
    let detectors = Detectors::for_roles(set.detectors(), &["agent".to_owned()]);
    let plan = MaskPlan::from_columns(vec![None; 4]).with_detectors(detectors);
    // Every value passes some prefilter (digits, `@`, a secret marker) and fails the check.
    let no_hit = frames::data_row(&[
        Some(b"4111 1111 1111 1112"),
        Some(b"2024-05-01 12:34:56.789012+00"),
        Some(b"jane@localhost AKIA eyJ"),
        Some(b"DE89 3704 0044 0532 0130 01"),
    ]);
    let hit = frames::data_row(&[Some(b"42"), Some(b"4111111111111111"), None, None]);
    let mut out = BytesMut::with_capacity(1024);
    let per_rows =
        |n, body: &[u8], out: &mut BytesMut| allocations_applying(&plan, body, &no_hit, n, out);
    // The first scan may set up the regexes' per-thread caches.
    per_rows(1, &no_hit, &mut out);
    assert_eq!(per_rows(10_000, &no_hit, &mut out), 0);
    per_rows(1, &hit, &mut out);
    assert_eq!(per_rows(10_000, &hit, &mut out), 0);
}
