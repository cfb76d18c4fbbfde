//! The top-queries table behind `SHOW QUERIES`: per fingerprint, calls, time (total, max, and
//! p50/p95/p99 from an HDR histogram), the three phases, rows, errors and slow count. Shared
//! by every session, bounded, cheap to update.
//!
//! It owns the table and its eviction; it does not compute fingerprints (`fingerprint`, the
//! caller passes one) nor print rows (the admin console formats [`QueryStats`]).
//!
//! # Concurrency
//!
//! The table is split into up to 16 shards by fingerprint, each a `std::sync::Mutex` over a
//! small map, held only for the few counter and histogram updates of one record (never across
//! an `.await`, never while normalizing text). Sessions recording different fingerprints
//! rarely meet; a hot fingerprint serializes its own updates, about 25 ns each
//! (`benches/stats.rs`). A panic under a lock cannot leave more than one half-updated row of
//! counters, so a poisoned lock is taken over rather than propagated.
//!
//! # Bounds and eviction
//!
//! Each shard holds its share of `capacity` (the total is exactly `capacity`). When a new
//! fingerprint arrives at a full shard, the shard's *least-used* entry is evicted: fewest
//! calls, ties going to the oldest (first recorded earliest). Finding it scans the shard,
//! about capacity / 16 entries (63 for the default 1000): only on the insertion of a new
//! fingerprint into a full shard, never on a hit (`benches/stats.rs` measures both). Fewest
//! calls keeps the established queries and lets one-off texts (ad-hoc queries, unbatched
//! literals the normalizer could not fold) churn among themselves. Eviction is per shard, so
//! it approximates the global least-used entry; fingerprints spread evenly over shards.
//! `reset` clears everything (entries that were hot long ago are otherwise kept).
//!
//! # Memory
//!
//! An entry's histogram tracks 1 µs to 1 hour at 2 significant digits (1% resolution, finer
//! than any p99 anyone acts on) with `u32` counts: about 13 KB, fixed at creation, so about
//! 13 MB at the default 1000 entries. Three significant digits would be 0.1% resolution at
//! about 94 KB per entry (94 MB for 1000): not worth it. Durations above an hour count as an
//! hour in the histogram (exact in total and max).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::QueryRecord;

/// Entries kept by default (`[slow_query] top_queries`).
pub const DEFAULT_CAPACITY: usize = 1000;

/// Most shards; fewer when the capacity is smaller (a shard holds at least one entry).
const MAX_SHARDS: usize = 16;

/// Histogram range and precision (see the module doc).
const HIST_MAX_MICROS: u64 = 3_600_000_000;
const HIST_SIGFIGS: u8 = 2;

/// How `top` ranks entries (highest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// 99th percentile latency: the slowest shapes.
    P99,
    /// Total time: where the database's time goes.
    Total,
    /// Number of calls: the busiest shapes.
    Calls,
}

/// A snapshot of one entry. Times are per query, except the `total*` sums.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryStats {
    pub fingerprint: u64,
    /// The normalized text first seen for this fingerprint.
    pub query: Arc<str>,
    pub calls: u64,
    pub total: Duration,
    pub mean: Duration,
    pub max: Duration,
    /// Quantiles of the total time (highest value of the histogram bucket: an upper bound
    /// within 1%).
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    /// Sums of the phases over all calls: divide by `calls` for the mean of each.
    pub total_pool_wait: Duration,
    pub total_server: Duration,
    pub total_client: Duration,
    pub rows: u64,
    /// Calls that ended in an error (a SQLSTATE recorded).
    pub errors: u64,
    /// Calls at or above the slow threshold.
    pub slow: u64,
}

/// The table. Share it (`Arc`); every method takes `&self`.
pub struct Aggregate {
    shards: Box<[Mutex<Shard>]>,
    capacity: usize,
}

struct Shard {
    map: HashMap<u64, Entry, BuildHasherDefault<FingerprintHasher>>,
    capacity: usize,
    /// Insertion counter: the age of entries, for eviction ties.
    next_seq: u64,
}

struct Entry {
    query: Arc<str>,
    seq: u64,
    calls: u64,
    total_us: u64,
    max_us: u64,
    pool_wait_us: u64,
    server_us: u64,
    client_us: u64,
    rows: u64,
    errors: u64,
    slow: u64,
    hist: Histogram<u32>,
}

impl Aggregate {
    /// A table of at most `capacity` fingerprints (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        // A power of two, so a shard is picked by masking.
        let shards = 1usize << MAX_SHARDS.min(capacity).ilog2();
        let shards = (0..shards)
            .map(|i| {
                let share = capacity / shards + usize::from(i < capacity % shards);
                Mutex::new(Shard {
                    map: HashMap::with_capacity_and_hasher(share, Default::default()),
                    capacity: share,
                    next_seq: 0,
                })
            })
            .collect();
        Aggregate { shards, capacity }
    }

    /// Most fingerprints kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Fingerprints currently kept.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts one query under `fp` (its fingerprint, from [`super::fingerprint`]); `slow`
    /// when it reached the slow threshold. On a hit: one lock, a few additions and a
    /// histogram increment, no allocation. On a miss: normalizes `rec.sql` and allocates the
    /// entry outside the lock, then inserts (evicting if full).
    pub fn record(&self, fp: u64, rec: &QueryRecord<'_>, slow: bool) {
        let shard = self.shard(fp);
        if let Some(e) = lock(shard).map.get_mut(&fp) {
            e.add(rec, slow);
            return;
        }
        let mut fresh = Entry::new(rec.normalized().into());
        let mut s = lock(shard);
        // Another session may have inserted it meanwhile.
        if let Some(e) = s.map.get_mut(&fp) {
            e.add(rec, slow);
            return;
        }
        if s.map.len() >= s.capacity {
            s.evict();
        }
        fresh.seq = s.next_seq;
        s.next_seq += 1;
        fresh.add(rec, slow);
        s.map.insert(fp, fresh);
    }

    /// The `n` highest entries by `order`, highest first (ties: more calls, then
    /// fingerprint, so the order is deterministic). Costs a quantile computation per entry
    /// under its shard's lock: an admin command, not the data path.
    pub fn top(&self, n: usize, order: Order) -> Vec<QueryStats> {
        let mut rows: Vec<QueryStats> = Vec::with_capacity(self.capacity.min(1024));
        for shard in self.shards.iter() {
            let s = lock(shard);
            rows.extend(s.map.iter().map(|(&fp, e)| e.snapshot(fp)));
        }
        rows.sort_unstable_by(|a, b| {
            let key = |r: &QueryStats| match order {
                Order::P99 => (r.p99.as_nanos(), r.total.as_nanos()),
                Order::Total => (r.total.as_nanos(), r.p99.as_nanos()),
                Order::Calls => (u128::from(r.calls), r.total.as_nanos()),
            };
            key(b)
                .cmp(&key(a))
                .then(b.calls.cmp(&a.calls))
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        rows.truncate(n);
        rows
    }

    /// Forgets every entry.
    pub fn reset(&self) {
        for shard in self.shards.iter() {
            lock(shard).map.clear();
        }
    }

    fn shard(&self, fp: u64) -> &Mutex<Shard> {
        // Middle bits: the map uses the low bits for its buckets and the top ones for its tags.
        let i = (fp >> 32) as usize & (self.shards.len() - 1);
        &self.shards[i]
    }
}

impl Shard {
    /// Removes the least-used entry: fewest calls, then oldest.
    fn evict(&mut self) {
        let victim = self
            .map
            .iter()
            .min_by_key(|(_, e)| (e.calls, e.seq))
            .map(|(&fp, _)| fp);
        if let Some(fp) = victim {
            self.map.remove(&fp);
        }
    }
}

impl Entry {
    fn new(query: Arc<str>) -> Self {
        // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfigs <= 5):
        // this cannot fail, whatever the input (a test builds one).
        let hist = Histogram::new_with_bounds(1, HIST_MAX_MICROS, HIST_SIGFIGS)
            .expect("constant histogram bounds are valid");
        Entry {
            query,
            seq: 0,
            calls: 0,
            total_us: 0,
            max_us: 0,
            pool_wait_us: 0,
            server_us: 0,
            client_us: 0,
            rows: 0,
            errors: 0,
            slow: 0,
            hist,
        }
    }

    fn add(&mut self, rec: &QueryRecord<'_>, slow: bool) {
        let us = micros(rec.total);
        self.calls += 1;
        self.total_us = self.total_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
        self.pool_wait_us = self.pool_wait_us.saturating_add(micros(rec.pool_wait));
        self.server_us = self.server_us.saturating_add(micros(rec.server));
        self.client_us = self.client_us.saturating_add(micros(rec.client));
        self.rows = self.rows.saturating_add(rec.rows);
        self.errors += u64::from(rec.sqlstate.is_some());
        self.slow += u64::from(slow);
        self.hist.saturating_record(us);
    }

    fn snapshot(&self, fingerprint: u64) -> QueryStats {
        let q = |q: f64| Duration::from_micros(self.hist.value_at_quantile(q).min(self.max_us));
        QueryStats {
            fingerprint,
            query: self.query.clone(),
            calls: self.calls,
            total: Duration::from_micros(self.total_us),
            mean: Duration::from_micros(self.total_us.checked_div(self.calls).unwrap_or(0)),
            max: Duration::from_micros(self.max_us),
            p50: q(0.50),
            p95: q(0.95),
            p99: q(0.99),
            total_pool_wait: Duration::from_micros(self.pool_wait_us),
            total_server: Duration::from_micros(self.server_us),
            total_client: Duration::from_micros(self.client_us),
            rows: self.rows,
            errors: self.errors,
            slow: self.slow,
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Map keys are already XXH3 outputs: hashing them again would only cost time.
#[derive(Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests;
