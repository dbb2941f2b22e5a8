//! Benchmarks of the audit recorder, per statement:
//!
//! - `encode_hash`: canonical bytes and chain hash of one statement record (the writer's CPU
//!   cost per record, apart from Arrow);
//! - `encode_hash_append`: the same plus appending it to an Arrow batch;
//! - `batched`: N records through the writer thread to a temp dir in batched mode, close
//!   included (sessions don't wait, so this is the writer's throughput);
//! - `strict_group_commit`: W concurrent sessions each awaiting every record (fsync per group
//!   commit), as strict mode runs.
//!
//! Numbers for the disk-bound cases depend on the machine's fsync latency. On the 2-core
//! development VM (shared with another build): encode_hash 0.47 µs, encode_hash_append 0.88 µs,
//! batched 166k records/s (6 µs each, open and close included), strict with 8 sessions 6k
//! records/s (group commits of up to 8).

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgward::audit::batch::BatchBuilder;
use pgward::audit::chain::{GENESIS, Hash};
use pgward::audit::record::Envelope;
use pgward::audit::{AuditLog, Durability, Options, Record, Statement};

fn statement(session: u64, seq: u64) -> Record {
    Record::Statement(Statement {
        session,
        seq,
        time: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        text: "SELECT id, email, total FROM public.orders WHERE customer_id = $1 AND status = $2"
            .to_owned(),
        params: vec![Some("12345".to_owned()), Some("shipped".to_owned())],
        class: "read".to_owned(),
        tables: vec!["public.orders".to_owned()],
        decision: "allow".to_owned(),
        rule: Some("agents-read-orders".to_owned()),
        approval_request: None,
        approvers: vec![],
        masked_columns: vec!["public.orders.email".to_owned()],
    })
}

fn options(dir: &std::path::Path, durability: Durability) -> Options {
    Options {
        dir: dir.to_owned(),
        durability,
        roll_bytes: 64 << 20,
        roll_age: Duration::from_secs(3600),
        signing_key: None,
    }
}

fn recorder(c: &mut Criterion) {
    let envelope = Envelope {
        seq: 1,
        instance: "0123456789ab".to_owned(),
        record: statement(1, 1),
    };
    let mut scratch = Vec::new();
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_hash", |b| {
        b.iter(|| Hash::of(&GENESIS, black_box(&envelope), &mut scratch))
    });
    let mut builder = BatchBuilder::default();
    g.bench_function("encode_hash_append", |b| {
        b.iter(|| {
            let h = Hash::of(&GENESIS, black_box(&envelope), &mut scratch);
            builder.push(&envelope, &GENESIS, &h).unwrap();
            if builder.len() == 1024 {
                black_box(builder.finish().unwrap());
            }
        })
    });
    g.finish();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("audit_writer");
    g.sample_size(10);
    const N: u64 = 10_000;
    g.throughput(Throughput::Elements(N));
    g.bench_function("batched_10k", |b| {
        b.iter(|| {
            let dir = tempfile::tempdir().unwrap();
            rt.block_on(async {
                let interval = Duration::from_millis(20);
                let log =
                    AuditLog::open(options(dir.path(), Durability::Batched { interval })).unwrap();
                for i in 0..N {
                    drop(log.record(statement(1, i)));
                }
                log.close().await.unwrap();
            })
        })
    });
    const SESSIONS: u64 = 8;
    const PER_SESSION: u64 = 50;
    g.throughput(Throughput::Elements(SESSIONS * PER_SESSION));
    g.bench_function("strict_8_sessions", |b| {
        b.iter(|| {
            let dir = tempfile::tempdir().unwrap();
            rt.block_on(async {
                let log = AuditLog::open(options(dir.path(), Durability::Strict)).unwrap();
                let tasks: Vec<_> = (0..SESSIONS)
                    .map(|s| {
                        let log = log.clone();
                        tokio::spawn(async move {
                            for i in 0..PER_SESSION {
                                log.record_durable(statement(s, i)).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                log.close().await.unwrap();
            })
        })
    });
    g.finish();
}

criterion_group!(benches, recorder);
criterion_main!(benches);
