//! Where the session hands each finished query: one call ([`Stats::finish`]) feeds the
//! fingerprint table, the slow log, the per-database totals behind `SHOW STATS`, and the
//! query metrics (`lagoon_queries_total`, `lagoon_query_duration_seconds`,
//! `lagoon_slow_queries_total`).
//!
//! It owns the per-database figures and the metric handles (resolved once per database, so a
//! query costs atomic additions, not registry lookups) and the settings a reload may change
//! (threshold, `log_parameters`, the table size, the log target). It does not time queries
//! (the session's [`super::QueryTimer`] does) nor serve them (the admin console and the
//! metrics endpoint read from here).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;

use super::slow_log::DEFAULT_RECENT;
use super::{Aggregate, LogTarget, QueryRecord, Route, SlowLog};
use crate::config::Config;
use crate::metrics::names;

/// The proxy's query statistics; one per `Shared`.
pub struct Stats {
    aggregate: ArcSwap<Aggregate>,
    slow_log: ArcSwap<SlowLog>,
    /// What `slow_log` writes to and how fast: a reload that changes them starts a new log.
    log_settings: std::sync::Mutex<(LogTarget, u32)>,
    databases: DashMap<String, Arc<DbStats>>,
    log_parameters: AtomicBool,
    enabled: AtomicBool,
    /// `[slow_query] threshold_ms`, for databases without their own.
    default_threshold_us: AtomicU64,
}

/// One database's running totals (PgBouncer's `SHOW STATS` columns) and its metric handles.
/// Counters only grow; times are microseconds.
pub struct DbStats {
    pub database: String,
    /// Server connections checked out for this database's clients.
    pub server_assignments: AtomicU64,
    /// Transactions completed (a query outside a transaction block is one).
    pub xacts: AtomicU64,
    /// Queries completed (simple queries and extended batches up to Sync).
    pub queries: AtomicU64,
    /// Bytes read from clients / written to clients.
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub xact_time_us: AtomicU64,
    /// Time queries spent on a server (the server phase).
    pub query_time_us: AtomicU64,
    /// Time requests waited for a server (the pool-wait phase).
    pub wait_time_us: AtomicU64,
    /// Queries at or above the slow threshold.
    pub slow: AtomicU64,
    /// Queries that ended in an error.
    pub errors: AtomicU64,
    /// This database's slow threshold (its own, or `[slow_query] threshold_ms`).
    threshold_us: AtomicU64,
    /// `threshold_us` came from the database's own `slow_query_threshold_ms`.
    own_threshold: AtomicBool,
    queries_total: [metrics::Counter; 2],
    duration: [metrics::Histogram; 2],
    slow_total: metrics::Counter,
}

impl DbStats {
    fn new(database: &str, threshold: Duration, own: bool) -> DbStats {
        let by_route = |route: Route| {
            (
                metrics::counter!(names::QUERIES_TOTAL, "database" => database.to_owned(), "route" => route.as_str()),
                metrics::histogram!(names::QUERY_DURATION_SECONDS, "database" => database.to_owned(), "route" => route.as_str()),
            )
        };
        let (qp, dp) = by_route(Route::Primary);
        let (qr, dr) = by_route(Route::Replica);
        DbStats {
            database: database.to_owned(),
            server_assignments: AtomicU64::new(0),
            xacts: AtomicU64::new(0),
            queries: AtomicU64::new(0),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            xact_time_us: AtomicU64::new(0),
            query_time_us: AtomicU64::new(0),
            wait_time_us: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            threshold_us: AtomicU64::new(micros(threshold)),
            own_threshold: AtomicBool::new(own),
            queries_total: [qp, qr],
            duration: [dp, dr],
            slow_total: metrics::counter!(names::SLOW_QUERIES_TOTAL, "database" => database.to_owned()),
        }
    }

    /// The slow threshold now in force for this database.
    pub fn threshold(&self) -> Duration {
        Duration::from_micros(self.threshold_us.load(Ordering::Relaxed))
    }

    /// A finished transaction of `time` (from its first query's start to the ReadyForQuery
    /// that ended it).
    pub fn xact_done(&self, time: Duration) {
        self.xacts.fetch_add(1, Ordering::Relaxed);
        self.xact_time_us.fetch_add(micros(time), Ordering::Relaxed);
    }

    /// A server was checked out for one of this database's clients.
    pub fn assigned(&self) {
        self.server_assignments.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes a session read from and wrote to its client since it last said.
    pub fn add_bytes(&self, received: u64, sent: u64) {
        if received > 0 {
            self.received.fetch_add(received, Ordering::Relaxed);
        }
        if sent > 0 {
            self.sent.fetch_add(sent, Ordering::Relaxed);
        }
    }
}

fn route_index(route: Route) -> usize {
    match route {
        Route::Primary => 0,
        Route::Replica => 1,
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Stats {
    /// Starts the slow-log writer on the current tokio runtime.
    pub fn new(config: &Config) -> Stats {
        let sq = &config.slow_query;
        let target = LogTarget::from_config(&sq.log);
        let stats = Stats {
            aggregate: ArcSwap::from_pointee(Aggregate::new(sq.top_queries)),
            slow_log: ArcSwap::from_pointee(SlowLog::start(
                target.clone(),
                sq.max_lines_per_second,
                DEFAULT_RECENT,
            )),
            log_settings: std::sync::Mutex::new((target, sq.max_lines_per_second)),
            databases: DashMap::new(),
            log_parameters: AtomicBool::new(sq.log_parameters),
            enabled: AtomicBool::new(sq.enabled),
            default_threshold_us: AtomicU64::new(micros(sq.threshold())),
        };
        stats.add_databases(config);
        stats
    }

    /// Creates the figures of every database of `config` not yet known, each with its own
    /// threshold (a session's first lookup would otherwise give it the global one).
    fn add_databases(&self, config: &Config) {
        let sq = &config.slow_query;
        for db in &config.databases {
            self.database_with(
                &db.name,
                db.effective_slow_query_threshold(sq),
                db.slow_query_threshold_ms.is_some(),
            );
        }
    }

    /// Applies a reloaded `[slow_query]` and per-database thresholds. The fingerprint table
    /// is replaced (emptied) only when `top_queries` changed; the slow log is restarted only
    /// when its target or rate changed (the old one finishes writing what it has queued).
    pub fn configure(&self, config: &Config) {
        let sq = &config.slow_query;
        self.log_parameters
            .store(sq.log_parameters, Ordering::Relaxed);
        self.enabled.store(sq.enabled, Ordering::Relaxed);
        self.default_threshold_us
            .store(micros(sq.threshold()), Ordering::Relaxed);
        if self.aggregate.load().capacity() != sq.top_queries.max(1) {
            self.aggregate
                .store(Arc::new(Aggregate::new(sq.top_queries)));
        }
        let target = LogTarget::from_config(&sq.log);
        let mut settings = self
            .log_settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *settings != (target.clone(), sq.max_lines_per_second) {
            let old = self.slow_log.swap(Arc::new(SlowLog::start(
                target.clone(),
                sq.max_lines_per_second,
                DEFAULT_RECENT,
            )));
            tokio::spawn(async move { old.close().await });
            *settings = (target, sq.max_lines_per_second);
        }
        drop(settings);
        // A database the reload added gets its own threshold from its first query on.
        self.add_databases(config);
        for entry in self.databases.iter() {
            let db = config.database(entry.key());
            let own = db.and_then(|d| d.slow_query_threshold_ms).is_some();
            let t = db.map_or(sq.threshold(), |d| d.effective_slow_query_threshold(sq));
            entry.threshold_us.store(micros(t), Ordering::Relaxed);
            entry.own_threshold.store(own, Ordering::Relaxed);
        }
    }

    /// Per-query statistics are on (`[slow_query] enabled`).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// The figures of `database`, created on first use. A session resolves this once.
    pub fn database(&self, database: &str) -> Arc<DbStats> {
        if let Some(d) = self.databases.get(database) {
            return Arc::clone(&d);
        }
        let t = Duration::from_micros(self.default_threshold_us.load(Ordering::Relaxed));
        self.database_with(database, t, false)
    }

    fn database_with(&self, database: &str, threshold: Duration, own: bool) -> Arc<DbStats> {
        Arc::clone(
            &self
                .databases
                .entry(database.to_owned())
                .or_insert_with(|| Arc::new(DbStats::new(database, threshold, own))),
        )
    }

    /// Every database's figures, by name.
    pub fn databases(&self) -> Vec<Arc<DbStats>> {
        let mut v: Vec<_> = self
            .databases
            .iter()
            .map(|e| Arc::clone(e.value()))
            .collect();
        v.sort_by(|a, b| a.database.cmp(&b.database));
        v
    }

    /// The fingerprint table (`SHOW QUERIES`).
    pub fn aggregate(&self) -> Arc<Aggregate> {
        self.aggregate.load_full()
    }

    /// The slow log (`SHOW SLOW`).
    pub fn slow_log(&self) -> Arc<SlowLog> {
        self.slow_log.load_full()
    }

    /// One finished query of `db`: fingerprint table, totals, metrics, and the slow log when
    /// it reached the threshold. Returns whether it was slow.
    pub fn finish(&self, db: &DbStats, rec: &QueryRecord<'_>) -> bool {
        self.finish_with(db, rec, rec.fingerprint())
    }

    /// [`Stats::finish`] with the record's fingerprint already known (a session's
    /// [`super::FingerprintMemo`] had it).
    pub fn finish_with(&self, db: &DbStats, rec: &QueryRecord<'_>, fp: u64) -> bool {
        let slow = rec.total >= db.threshold();
        let i = route_index(rec.route);
        db.queries_total[i].increment(1);
        db.duration[i].record(rec.total.as_secs_f64());
        db.queries.fetch_add(1, Ordering::Relaxed);
        db.query_time_us
            .fetch_add(micros(rec.server), Ordering::Relaxed);
        db.wait_time_us
            .fetch_add(micros(rec.pool_wait), Ordering::Relaxed);
        if rec.sqlstate.is_some() {
            db.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.aggregate.load().record(fp, rec, slow);
        if slow {
            db.slow.fetch_add(1, Ordering::Relaxed);
            db.slow_total.increment(1);
            self.slow_log
                .load()
                .record(fp, rec, self.log_parameters.load(Ordering::Relaxed));
        }
        slow
    }

    /// Stops the slow-log writer after it has written what is queued (shutdown).
    pub async fn close(&self) {
        self.slow_log.load_full().close().await;
    }
}
