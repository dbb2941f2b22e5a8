//! The masker in place: 1,000 wide DataRows (16 text columns of 24 bytes) relayed through the
//! server stage of a session that masks, with 0, 1 and 3 masked columns per row. Throughput is
//! the result's bytes as the server sent them.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pgward::session::relay::{End, Pump, Stage};
use tokio::io::AsyncWrite;

#[path = "../tests/common/masking.rs"]
mod masking;

const ROWS: usize = 1_000;
const WIDTH: usize = 16;
const VALUE_LEN: usize = 24;

/// A sink that counts what it is given.
struct Counting(Arc<AtomicUsize>);

impl AsyncWrite for Counting {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.fetch_add(b.len(), Ordering::Relaxed);
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A pump relaying `input` through a fresh server stage masking `masked` columns, and the count
/// of bytes it will have written.
fn pump(input: &[u8], masked: usize) -> (Pump, Arc<AtomicUsize>) {
    let written = Arc::new(AtomicUsize::new(0));
    let pump = Pump::new(
        Box::new(std::io::Cursor::new(input.to_vec())),
        Box::new(Counting(Arc::clone(&written))),
        BytesMut::new(),
        1 << 30,
        Stage::Server(Box::new(masking::server_stage(WIDTH, masked))),
    );
    (pump, written)
}

fn run(rt: &tokio::runtime::Runtime, (mut pump, written): (Pump, Arc<AtomicUsize>)) -> usize {
    let end = rt.block_on(pump.run());
    assert!(matches!(end, End::SourceClosed), "{end}");
    written.load(Ordering::Relaxed)
}

fn mask_stream(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let input = masking::described_result(ROWS, WIDTH, VALUE_LEN);
    // Masked rows are shorter (`***` and the last 4 characters): proof the masks apply.
    assert_eq!(run(&rt, pump(&input, 0)), input.len());
    assert!(run(&rt, pump(&input, 1)) < input.len());
    let mut g = c.benchmark_group("mask_stream");
    g.throughput(Throughput::Bytes(input.len() as u64));
    for masked in [0, 1, 3] {
        // The stage and the pump are set up outside the measurement: only relaying is timed.
        g.bench_function(format!("{ROWS}_rows_{WIDTH}_cols_{masked}_masked"), |b| {
            b.iter_batched(
                || pump(&input, masked),
                |p| run(&rt, p),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, mask_stream);
criterion_main!(benches);
