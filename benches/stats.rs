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
    // What pgbench -S sends with -M simple: a short statement whose literal changes every
    // time (no two texts alike), and with -M extended/prepared: the same text every time.
    let mut aid = 0u64;
    g.bench_function("fingerprint_pgbench_select_new_literal", |b| {
        b.iter_batched(
            || {
                aid += 7919;
                format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};").into_bytes()
            },
            |sql| fingerprint(black_box(&sql), true),
            BatchSize::SmallInput,
        )
    });
    let param = b"SELECT abalance FROM pgbench_accounts WHERE aid = $1;";
    g.bench_function("fingerprint_pgbench_select_param", |b| {
        b.iter(|| fingerprint(black_box(param), true))
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

/// What the session adds to one simple query, end to end: the timer's marks (clock reads
/// included), the text copy, then `Stats::finish` with the Prometheus recorder installed
/// (fingerprint through the session's memo, table, totals, the query counter and histogram).
/// Compare with the figure a pgbench run gives per query: the budget is under 1 µs.
/// Two workloads: literals inlined (each text new to the memo) and a parameterized text sent
/// again and again (what ORMs with bind parameters and `-M extended` send).
fn per_query(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _in_rt = rt.enter();
    lagoon::metrics::recorder::install().expect("recorder");
    let config = lagoon::config::parse(
        "[[users]]\nname = \"app\"\npassword = \"pw\"\n[[databases]]\nname = \"appdb\"\n\
         primary = \"postgres://127.0.0.1:5432/appdb\"\n",
    )
    .expect("config");
    let stats = lagoon::stats::Stats::new(&config);
    let db = stats.database("appdb");
    let with_nul = |mut q: Vec<u8>| {
        q.push(0);
        q
    };
    let literals: Vec<Vec<u8>> = (0..64).map(|i| with_nul(orm_select(i))).collect();
    let param = vec![with_nul(
        b"SELECT \"users\".\"id\", \"users\".\"email\", \"users\".\"name\" FROM \"users\" \
          WHERE \"users\".\"org_id\" = $1 AND \"users\".\"status\" = $2 LIMIT $3"
            .to_vec(),
    )];
    let mut g = c.benchmark_group("stats");
    g.throughput(Throughput::Elements(1));
    for (name, texts) in [
        ("per_query_session_path", &literals),
        ("per_query_session_path_same_text", &param),
    ] {
        let mut timing = lagoon::client::timing::Timing::default();
        let mut i = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % texts.len();
                let mut now = None;
                timing.client_message(b'Q', Some(&texts[i]), true, true, |_| None, &mut now);
                timing.flushed();
                timing.server_message(b'C', Some(b"SELECT 20\0"), false);
                if let Some(x) = timing.server_message(b'Z', Some(b"I"), false) {
                    db.xact_done(x);
                }
                let at = SystemTime::now();
                let (done, memo) = timing.take_answered_with_memo(std::time::Instant::now());
                for p in done {
                    let ph = p.timer.phases();
                    let mut rec = record(&p.sql);
                    rec.route = Route::Primary;
                    rec.member = "primary";
                    rec.pool_wait = ph.pool_wait;
                    rec.server = ph.server;
                    rec.client = ph.client;
                    rec.total = ph.total;
                    rec.rows = p.rows;
                    rec.at = at;
                    let fp = memo.fingerprint(rec.sql, rec.std_strings);
                    black_box(stats.finish_with(&db, &rec, fp));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, per_query);
criterion_main!(benches);
