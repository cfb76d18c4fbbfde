//! Criterion benches for the per-query statistics path (`stats`), which runs once per simple
//! Query and once per extended batch: the fingerprint of a typical ORM statement, recording
//! into the top-queries table for a known fingerprint (the common case), both together, and
//! the rarer paths (a new fingerprint into a full table: normalize, allocate, evict).

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use lagoon::stats::{Aggregate, QueryRecord, Route, fingerprint, normalize};

/// About 150 bytes, the shape ORMs emit, with literals that change from query to query.
fn orm_select(i: usize) -> Vec<u8> {
    format!(
        "SELECT \"users\".\"id\", \"users\".\"email\", \"users\".\"name\" FROM \"users\" \
         WHERE \"users\".\"org_id\" = {} AND \"users\".\"status\" = 'active_{}' LIMIT {}",
        1000 + i * 7,
        i % 3,
        10 + i % 5
    )
    .into_bytes()
}

fn record(sql: &[u8]) -> QueryRecord<'_> {
    QueryRecord {
        database: "appdb",
        user: "app",
        application_name: "bench",
        route: Route::Replica,
        member: "127.0.0.1:5433",
        sql,
        std_strings: true,
        pool_wait: Duration::from_micros(20),
        server: Duration::from_micros(400),
        client: Duration::ZERO,
        total: Duration::from_micros(450),
        rows: 20,
        sqlstate: None,
        at: SystemTime::UNIX_EPOCH,
    }
}

fn bench(c: &mut Criterion) {
    let texts: Vec<Vec<u8>> = (0..64).map(orm_select).collect();
    let len = texts[0].len() as u64;
    let mut g = c.benchmark_group("stats");

    g.throughput(Throughput::Bytes(len));
    let mut i = 0;
    g.bench_function("fingerprint_orm_150b", |b| {
        b.iter(|| {
            i = (i + 1) % texts.len();
            fingerprint(black_box(&texts[i]), true)
        })
    });
    g.bench_function("normalize_orm_150b", |b| {
        b.iter(|| {
            i = (i + 1) % texts.len();
            normalize(black_box(&texts[i]), true)
        })
    });

    g.throughput(Throughput::Elements(1));
    let agg = Aggregate::new(1000);
    // A realistic table: 500 other shapes around the one measured.
    for k in 0..500 {
        let sql = format!("SELECT c{k} FROM t WHERE id = 1");
        agg.record(
            fingerprint(sql.as_bytes(), true),
            &record(sql.as_bytes()),
            false,
        );
    }
    let fp = fingerprint(&texts[0], true);
    g.bench_function("record_hit", |b| {
        b.iter(|| agg.record(black_box(fp), &record(&texts[0]), false))
    });
    g.bench_function("fingerprint_and_record", |b| {
        b.iter(|| {
            i = (i + 1) % texts.len();
            let rec = record(black_box(&texts[i]));
            agg.record(fingerprint(rec.sql, rec.std_strings), &rec, false)
        })
    });

    // A new fingerprint into a full table: normalize, a fresh 13 KB histogram, and the scan
    // of one shard for the least-used entry.
    let full = Aggregate::new(1000);
    for k in 0..1000 {
        let sql = format!("SELECT c{k} FROM t");
        full.record(
            fingerprint(sql.as_bytes(), true),
            &record(sql.as_bytes()),
            false,
        );
    }
    let mut n = 0u64;
    g.bench_function("record_miss_evicting", |b| {
        b.iter_batched(
            || {
                n += 1;
                format!("SELECT new_{n} FROM t").into_bytes()
            },
            |sql| full.record(fingerprint(&sql, true), &record(&sql), false),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
