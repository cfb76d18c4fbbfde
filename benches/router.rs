//! Criterion benches for `router::Classifier`, which runs on every simple Query and every
//! Parse: the cost per statement for a repeated ORM-like shape whose literals change each
//! time (the cache hit the shape scan exists for), for a fresh shape (a miss: scan, parse,
//! tree walk, insert), and for pg_query's parse of the same text alone, which a hit replaces.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use lagoon::router::Classifier;

/// About 150 bytes with literals where an ORM inlines them; `{n}` changes every iteration.
fn orm_select(n: u64) -> String {
    format!(
        "SELECT \"users\".\"id\", \"users\".\"email\" FROM \"users\" WHERE \"users\".\"org_id\" = {n} \
AND \"users\".\"state\" = 'active_{n}' ORDER BY \"users\".\"id\" LIMIT 20"
    )
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("router_classify");
    let sample = orm_select(12345);
    eprintln!("text: {} bytes", sample.len());

    let classifier = Classifier::new(&[], 10_000);
    let texts: Vec<String> = (0..1024).map(orm_select).collect();
    let mut i = 0;
    g.bench_function("hit_changing_literals", |b| {
        b.iter(|| {
            i = (i + 1) % texts.len();
            classifier.classify(black_box(texts[i].as_bytes()), true)
        })
    });

    // A new identifier each time makes a new shape; a cache of 10k entries is swept now and
    // then, which is part of what a miss costs.
    let mut n = 0u64;
    g.bench_function("miss_fresh_shape", |b| {
        b.iter_batched(
            || {
                n += 1;
                sample.replace("\"users\".\"email\"", &format!("\"users\".\"c{n}\""))
            },
            |sql| classifier.classify(black_box(sql.as_bytes()), true),
            criterion::BatchSize::SmallInput,
        )
    });

    g.bench_function("pg_query_parse_only", |b| {
        b.iter(|| pg_query::parse(black_box(&sample), 0).is_ok())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
