//! Per-query statistics, sans-IO except for the slow-log writer task: what one query cost
//! ([`QueryRecord`], measured by [`timer::QueryTimer`]), what shape it was
//! ([`fingerprint`]), the per-shape table behind `SHOW QUERIES` ([`aggregate::Aggregate`]),
//! and the slow-query JSON log behind `SHOW SLOW` ([`slow_log::SlowLog`]).
//!
//! It owns measuring and keeping these figures; it does not decide when a query starts or
//! ends (`client::session` calls the timer), nor export them (the metrics endpoint and the
//! admin console read [`aggregate::Aggregate::top`] and [`slow_log::SlowLog::recent`]).
//!
//! The session records once per simple Query and once per extended batch (up to Sync), on
//! the data path: a record borrows everything, [`fingerprint::fingerprint`] allocates
//! nothing, [`aggregate::Aggregate::record`] takes one short uncontended-by-design lock, and
//! the slow log is fed with `try_send`, so none of it waits on a side task.

use std::time::{Duration, SystemTime};

use serde::Serialize;

pub mod aggregate;
pub mod fingerprint;
pub mod sink;
pub mod slow_log;
pub mod timer;

pub use aggregate::{Aggregate, Order, QueryStats};
pub use fingerprint::{Memo as FingerprintMemo, fingerprint, normalize};
pub use sink::{DbStats, Stats};
pub use slow_log::{LogTarget, SlowEntry, SlowLog};
pub use timer::{Phases, QueryTimer};

/// Where a query ran: the metric label and the `route` of a slow-log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Primary,
    Replica,
}

impl Route {
    /// `"primary"` or `"replica"`, as in metric labels and log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Primary => "primary",
            Route::Replica => "replica",
        }
    }
}

/// One query's timing and context, borrowed from the session: built and consumed on the data
/// path, so it copies nothing. The slow log copies what it keeps.
#[derive(Clone, Copy, Debug)]
pub struct QueryRecord<'a> {
    pub database: &'a str,
    pub user: &'a str,
    pub application_name: &'a str,
    pub route: Route,
    /// The member that ran it: `primary`, `replica1`, ... (as in metric labels and `SHOW
    /// REPLICAS`); empty when no server could be had.
    pub member: &'a str,
    /// The first statement text as sent (simple Query text, or the first Parse's query):
    /// may be non-UTF-8, holds the literals. Only fingerprinted and normalized; written out
    /// as is only with `log_parameters = true`.
    pub sql: &'a [u8],
    /// The session's `standard_conforming_strings` (true unless the client turned it off):
    /// how `sql` is lexed.
    pub std_strings: bool,
    /// Phases as [`timer::QueryTimer`] defines them.
    pub pool_wait: Duration,
    pub server: Duration,
    pub client: Duration,
    pub total: Duration,
    /// Rows returned or affected (from CommandComplete tags).
    pub rows: u64,
    /// The SQLSTATE of the ErrorResponse that ended it, if one did.
    pub sqlstate: Option<[u8; 5]>,
    /// Wall-clock time it completed, for log lines (the session reads the clock only for a
    /// query that reached its threshold).
    pub at: SystemTime,
}

impl QueryRecord<'_> {
    /// Its fingerprint (see [`fingerprint`]).
    pub fn fingerprint(&self) -> u64 {
        fingerprint::fingerprint(self.sql, self.std_strings)
    }

    /// Its normalized text (see [`fingerprint`]); allocates.
    pub fn normalized(&self) -> String {
        fingerprint::normalize(self.sql, self.std_strings)
    }
}

/// A record for tests and benches.
#[cfg(test)]
pub(crate) fn sample_record(sql: &[u8], total: Duration) -> QueryRecord<'_> {
    QueryRecord {
        database: "appdb",
        user: "app",
        application_name: "psql",
        route: Route::Replica,
        member: "127.0.0.1:5433",
        sql,
        std_strings: true,
        pool_wait: Duration::from_millis(1),
        server: total.saturating_sub(Duration::from_millis(3)),
        client: Duration::from_millis(2),
        total,
        rows: 1,
        sqlstate: None,
        at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    }
}
