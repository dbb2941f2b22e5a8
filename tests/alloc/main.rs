//! The relay's hot path allocates nothing per message: the count of allocations while relaying
//! a result is the same for 10 rows as for 20 000.
//!
//! Its own test binary, because counting needs a global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use pgward::session::relay::{End, Pump, Stage};

#[path = "../common/result_batch.rs"]
mod result_batch;
use result_batch::result_batch;

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

/// Allocations made while relaying `rows` rows, after the pump exists.
fn allocations_relaying(rows: usize) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut pump = Pump::new(
        Box::new(std::io::Cursor::new(result_batch(rows))),
        Box::new(tokio::io::sink()),
        BytesMut::new(),
        1 << 30,
        Stage::Plain,
    );
    let before = allocations();
    let end = rt.block_on(pump.run());
    let after = allocations();
    assert!(matches!(end, End::SourceClosed), "{end}");
    after - before
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
