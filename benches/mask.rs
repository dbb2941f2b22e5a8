//! The masker on one DataRow: the untouched check (nothing to mask) and a rewrite.

use bytes::BytesMut;
use criterion::{Criterion, criterion_group, criterion_main};
use pgward::mask::{ColumnMask, MaskPlan, MaskReason, apply};
use pgward::policy::MaskStrategy;

#[path = "../tests/common/frames.rs"]
mod frames;
use frames::data_row;

fn masker(c: &mut Criterion) {
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
        None,
    ]);
    let untouched = data_row(&[Some(b"42"), None, Some(b"Jane Doe")]);
    let masked = data_row(&[Some(b"42"), Some(b"123-45-6789"), Some(b"Jane Doe")]);
    let key = b"bench-key";
    let mut out = BytesMut::with_capacity(4096);
    let mut g = c.benchmark_group("mask");
    g.bench_function("datarow_untouched", |b| {
        b.iter(|| apply(std::hint::black_box(&untouched), &plan, key, &mut out))
    });
    g.bench_function("datarow_rewritten", |b| {
        b.iter(|| {
            out.clear();
            apply(std::hint::black_box(&masked), &plan, key, &mut out)
        })
    });
    g.finish();
}

criterion_group!(benches, masker);
criterion_main!(benches);
