//! The hot path: walking frames, and relaying a batch of DataRows through a pump.

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgward::proto::Frames;
use pgward::session::relay::{End, Pump, Stage};

#[path = "../tests/common/frames.rs"]
mod frames;
use frames::result_batch;

fn frames(c: &mut Criterion) {
    let batch = result_batch(100);
    let mut g = c.benchmark_group("frames");
    g.throughput(Throughput::Elements(101));
    g.bench_function("walk_100_datarows", |b| {
        b.iter(|| {
            Frames::new(std::hint::black_box(&batch), 1 << 30)
                .filter(Result::is_ok)
                .count()
        })
    });
    g.finish();
}

fn relay(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let batch = result_batch(1_000);
    let mut g = c.benchmark_group("relay");
    g.throughput(Throughput::Bytes(batch.len() as u64));
    g.bench_function("pump_1000_datarows", |b| {
        b.iter(|| {
            let mut pump = Pump::new(
                Box::new(std::io::Cursor::new(batch.clone())),
                Box::new(tokio::io::sink()),
                BytesMut::new(),
                1 << 30,
                Stage::Plain,
            );
            let end = rt.block_on(pump.run());
            assert!(matches!(end, End::SourceClosed));
        })
    });
    g.finish();
}

criterion_group!(benches, frames, relay);
criterion_main!(benches);
