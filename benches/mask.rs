//! The masker on one DataRow: the untouched check (nothing to mask) and a rewrite.

use bytes::{BufMut, BytesMut};
use criterion::{Criterion, criterion_group, criterion_main};
use pgward::mask::{ColumnMask, MaskPlan, MaskReason, apply};
use pgward::policy::MaskStrategy;

fn data_row(fields: &[Option<&[u8]>]) -> Vec<u8> {
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
