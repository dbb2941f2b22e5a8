//! The masker on one DataRow: the untouched check (nothing to mask) and a rewrite; and content
//! detectors on 1,000 rows of 8 text columns with no hit (per-row time = reported time / 1,000).

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgward::mask::{ColumnMask, Detectors, MaskPlan, MaskReason, apply};
use pgward::policy::{MaskStrategy, RuleSet};

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
            constant: false,
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

/// 1,000 rows of 8 typical text values, none holding anything a detector looks for (though the
/// timestamps, phone numbers and notes pass the digit prefilter).
fn rows() -> Vec<Vec<u8>> {
    (0..1000)
        .map(|i| {
            let id = format!("{}", 100_000 + i);
            let created = format!("2024-05-{:02} 12:34:56.789+00", 1 + i % 28);
            let amount = format!("{}.{:02}", i * 7, i % 100);
            let phone = format!("+1 217 555 {:04}", i);
            let note = format!(
                "Customer asked about order {} and a refund before Friday",
                1_000_000 + i
            );
            data_row(&[
                Some(id.as_bytes()),
                Some(b"Jane Doe"),
                Some(b"Springfield"),
                Some(created.as_bytes()),
                Some(amount.as_bytes()),
                Some(b"shipped"),
                Some(phone.as_bytes()),
                Some(note.as_bytes()),
            ])
        })
        .collect()
}

fn detectors(c: &mut Criterion) {
    let rules = |kinds: &str| {
        format!(
            "[roles.agent]\nmembers = [\"agent-*\"]\n[[rules]]\nid = \"r\"\nroles = [\"agent\"]\n\
             classes = [\"read\"]\naction = \"allow\"\n[[detectors]]\nroles = [\"agent\"]\n\
             kinds = [{kinds}]\nstrategy = \"redact\"\n"
        )
    };
    let plan = |kinds: &str| {
        let (set, _) = RuleSet::parse(&[("r.toml".to_owned(), rules(kinds))]).unwrap();
        let d = Detectors::for_roles(set.detectors(), &["agent".to_owned()]);
        MaskPlan::from_columns(vec![None; 8]).with_detectors(d)
    };
    let rows = rows();
    let key = b"bench-key";
    let mut out = BytesMut::with_capacity(4096);
    let mut g = c.benchmark_group("detect_1000_rows_8_text_columns");
    g.throughput(Throughput::Elements(rows.len() as u64));
    for (name, p) in [
        ("none", MaskPlan::from_columns(vec![None; 8])),
        ("card_secret_iban", plan(r#""card", "secret", "iban""#)),
        (
            "all_kinds",
            plan(r#""card", "ssn", "email", "iban", "secret""#),
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                for row in &rows {
                    let applied = apply(std::hint::black_box(row), &p, key, &mut out);
                    assert!(matches!(applied, Ok(pgward::mask::Applied::Untouched)));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, masker, detectors);
criterion_main!(benches);
