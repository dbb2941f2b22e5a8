//! Benchmarks of statement analysis: the cache hit every repeated statement
//! pays, and cold analysis of typical statements.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pgward::sql::{AnalyzeContext, FunctionCatalog, ProfileCache, analyze};

const PGBENCH_SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";

const JOIN_WITH_CTE: &str = "WITH recent AS (SELECT customer_id, sum(total) AS spent FROM orders \
     WHERE created_at > now() - interval '30 days' GROUP BY customer_id) \
     SELECT c.id, c.email, r.spent, a.city FROM customers c \
     JOIN recent r ON r.customer_id = c.id \
     LEFT JOIN addresses a ON a.customer_id = c.id AND a.is_primary \
     WHERE r.spent > $1 ORDER BY r.spent DESC LIMIT 50";

fn multi_values_insert(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| format!("({i}, 'name {i}', 'user{i}@example.com', {i}.5, now())"))
        .collect();
    format!(
        "INSERT INTO users (id, name, email, score, created_at) VALUES {}",
        values.join(", ")
    )
}

fn benches(c: &mut Criterion) {
    let path = vec!["public".to_owned()];
    let catalog = FunctionCatalog::builtin_only();
    let ctx = AnalyzeContext::new(&path, &catalog);

    let cache = ProfileCache::new(10_000);
    let _ = cache.get_or_analyze(PGBENCH_SELECT, &ctx);
    c.bench_function("cache_hit_pgbench_select", |b| {
        b.iter(|| cache.get_or_analyze(black_box(PGBENCH_SELECT), black_box(&ctx)))
    });

    c.bench_function("cold_pgbench_select", |b| {
        b.iter(|| analyze(black_box(PGBENCH_SELECT), black_box(&ctx)))
    });

    c.bench_function("cold_3way_join_with_cte", |b| {
        b.iter(|| analyze(black_box(JOIN_WITH_CTE), black_box(&ctx)))
    });

    let insert = multi_values_insert(100);
    c.bench_function("cold_insert_100_rows", |b| {
        b.iter(|| analyze(black_box(&insert), black_box(&ctx)))
    });
}

criterion_group!(analysis, benches);
criterion_main!(analysis);
