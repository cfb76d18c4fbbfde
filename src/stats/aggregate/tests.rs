use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::stats::{fingerprint, sample_record};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn record(agg: &Aggregate, sql: &str, total: Duration, slow: bool) -> u64 {
    let rec = sample_record(sql.as_bytes(), total);
    let fp = fingerprint(sql.as_bytes(), true);
    agg.record(fp, &rec, slow);
    fp
}

#[test]
fn counts_per_fingerprint() {
    let agg = Aggregate::new(DEFAULT_CAPACITY);
    let fp = record(&agg, "SELECT * FROM t WHERE id = 1", ms(10), false);
    record(&agg, "select * from t where id = 2", ms(30), true);
    let mut err = sample_record(b"SELECT * FROM t WHERE id = 3", ms(20));
    err.sqlstate = Some(*b"57014");
    err.rows = 0;
    agg.record(fp, &err, false);
    assert_eq!(agg.len(), 1);
    let rows = agg.top(10, Order::Calls);
    let r = &rows[0];
    assert_eq!(r.fingerprint, fp);
    assert_eq!(&*r.query, "SELECT * FROM t WHERE id = $1");
    assert_eq!((r.calls, r.rows, r.errors, r.slow), (3, 2, 1, 1));
    assert_eq!((r.total, r.mean, r.max), (ms(60), ms(20), ms(30)));
    assert_eq!(r.total_pool_wait, ms(3));
    assert_eq!(r.total_client, ms(6));
    assert_eq!(r.total_server, ms(7 + 27 + 17));
    // Two significant digits: within 1% of the true value, never above the max.
    let close = |got: Duration, want: Duration| {
        let (g, w) = (got.as_micros() as f64, want.as_micros() as f64);
        assert!((g - w).abs() <= w / 100.0 + 1.0, "{got:?} vs {want:?}");
    };
    close(r.p50, ms(20));
    close(r.p99, ms(30));
    assert!(r.p99 <= r.max);
}

#[test]
fn quantiles_over_many_calls() {
    let agg = Aggregate::new(10);
    for i in 1..=1000u64 {
        record(&agg, "SELECT 1", Duration::from_micros(i * 100), false);
    }
    let r = &agg.top(1, Order::P99)[0];
    for (got, want) in [(r.p50, 50_000u64), (r.p95, 95_000), (r.p99, 99_000)] {
        let g = got.as_micros() as f64;
        assert!(
            (g - want as f64).abs() <= want as f64 / 100.0,
            "{got:?} vs {want}µs"
        );
    }
    // Beyond the histogram's hour: exact max, clamped quantiles, no panic.
    record(&agg, "SELECT 1", Duration::from_secs(10_000), false);
    let r = &agg.top(1, Order::P99)[0];
    assert_eq!(r.max, Duration::from_secs(10_000));
}

#[test]
fn top_orders() {
    let agg = Aggregate::new(100);
    // many fast calls; one slow shape; a middle one with the most total time
    for _ in 0..50 {
        record(&agg, "SELECT a FROM busy", ms(1), false);
    }
    record(&agg, "SELECT pg_sleep(0.6)", ms(600), true);
    for _ in 0..10 {
        record(&agg, "SELECT b FROM heavy", ms(100), false);
    }
    let names = |order| {
        agg.top(3, order)
            .iter()
            .map(|r| r.query.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(Order::P99),
        [
            "SELECT pg_sleep($1)",
            "SELECT b FROM heavy",
            "SELECT a FROM busy"
        ]
    );
    assert_eq!(
        names(Order::Total),
        [
            "SELECT b FROM heavy",
            "SELECT pg_sleep($1)",
            "SELECT a FROM busy"
        ]
    );
    assert_eq!(
        names(Order::Calls),
        [
            "SELECT a FROM busy",
            "SELECT b FROM heavy",
            "SELECT pg_sleep($1)"
        ]
    );
    assert_eq!(agg.top(1, Order::Calls).len(), 1);
    agg.reset();
    assert!(agg.is_empty());
    assert!(agg.top(10, Order::P99).is_empty());
}

#[test]
fn bounded_and_evicts_the_least_used_oldest_first() {
    // Capacity 1 is one shard of one entry: a new fingerprint replaces the old one.
    let agg = Aggregate::new(1);
    record(&agg, "SELECT a FROM t", ms(1), false);
    record(&agg, "SELECT b FROM t", ms(1), false);
    assert_eq!(agg.len(), 1);
    assert_eq!(&*agg.top(1, Order::Calls)[0].query, "SELECT b FROM t");

    // The whole table never exceeds its capacity.
    let agg = Aggregate::new(DEFAULT_CAPACITY);
    let texts: Vec<String> = (0..200).map(|i| format!("SELECT c{i} FROM t")).collect();
    for t in texts.iter().cycle().take(5000) {
        record(&agg, &format!("{t} WHERE x = 1"), ms(1), false);
    }
    for i in 0..3000 {
        record(&agg, &format!("SELECT one_off_{i}"), ms(1), false);
    }
    assert!(agg.len() <= DEFAULT_CAPACITY, "{}", agg.len());
    // The 200 established shapes (25 calls each) survived 3000 one-off texts.
    let top = agg.top(200, Order::Calls);
    assert!(top.iter().all(|r| r.calls == 25), "{:?}", top.last());
}

#[test]
fn eviction_order_within_a_shard() {
    let mut shard = Shard {
        map: HashMap::default(),
        capacity: 3,
        next_seq: 0,
    };
    let mut put = |fp: u64, calls: u64| {
        let mut e = Entry::new(Arc::from("q"));
        e.calls = calls;
        e.seq = shard.next_seq;
        shard.next_seq += 1;
        shard.map.insert(fp, e);
    };
    put(1, 5);
    put(2, 1);
    put(3, 1);
    shard.evict();
    // Fewest calls, and of those the oldest (2 before 3).
    assert!(!shard.map.contains_key(&2));
    shard.evict();
    assert!(!shard.map.contains_key(&3));
    assert!(shard.map.contains_key(&1));
}

#[test]
fn shards_split_capacity_exactly() {
    for cap in [1usize, 2, 3, 15, 16, 17, 1000, 1001] {
        let agg = Aggregate::new(cap);
        let total: usize = agg.shards.iter().map(|s| lock(s).capacity).sum();
        assert_eq!(total, cap);
        assert!(agg.shards.len().is_power_of_two());
        assert!(agg.shards.len() <= cap.min(MAX_SHARDS));
    }
    assert_eq!(Aggregate::new(0).capacity(), 1);
}

#[test]
fn histogram_memory_per_entry() {
    // The module doc's figure: about 13 KB per entry.
    let e = Entry::new(Arc::from("q"));
    let bytes = e.hist.distinct_values() * std::mem::size_of::<u32>();
    assert!((10_000..16_000).contains(&bytes), "{bytes}");
}

#[test]
fn shared_across_threads() {
    let agg = Arc::new(Aggregate::new(64));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let agg = agg.clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    record(&agg, &format!("SELECT x{} FROM t", i % 8 + t), ms(1), false);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("recording thread");
    }
    let calls: u64 = agg.top(100, Order::Calls).iter().map(|r| r.calls).sum();
    assert_eq!(calls, 4000);
}
