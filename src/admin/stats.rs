//! `SHOW STATS`: per database, PgBouncer's totals and averages, then Lagoon's slow and
//! error counts. Totals count since the proxy started. The `avg_*` rates
//! (`avg_server_assignment_count`, `avg_xact_count`, `avg_query_count`, `avg_recv`,
//! `avg_sent`) are per second *since the proxy started* (PgBouncer's are over its last stats
//! period; a scraper that wants current rates derives them from the totals). `avg_xact_time`
//! is µs per transaction; `avg_query_time` and `avg_wait_time` µs per query (the wait is
//! recorded per query).

use std::sync::atomic::Ordering::Relaxed;

use super::result_set::{INT, ResultSet, TEXT};
use crate::app::Shared;

pub fn show(shared: &Shared) -> ResultSet {
    let mut rs = ResultSet::new(&[
        ("database", TEXT),
        ("total_server_assignment_count", INT),
        ("total_xact_count", INT),
        ("total_query_count", INT),
        ("total_received", INT),
        ("total_sent", INT),
        ("total_xact_time", INT),
        ("total_query_time", INT),
        ("total_wait_time", INT),
        ("avg_server_assignment_count", INT),
        ("avg_xact_count", INT),
        ("avg_query_count", INT),
        ("avg_recv", INT),
        ("avg_sent", INT),
        ("avg_xact_time", INT),
        ("avg_query_time", INT),
        ("avg_wait_time", INT),
        ("total_slow_count", INT),
        ("total_error_count", INT),
    ]);
    let uptime = shared.started.elapsed().as_secs().max(1);
    let per = |total: u64, n: u64| total.checked_div(n).unwrap_or(0);
    for d in shared.stats.databases() {
        let assignments = d.server_assignments.load(Relaxed);
        let xacts = d.xacts.load(Relaxed);
        let queries = d.queries.load(Relaxed);
        let received = d.received.load(Relaxed);
        let sent = d.sent.load(Relaxed);
        let xact_time = d.xact_time_us.load(Relaxed);
        let query_time = d.query_time_us.load(Relaxed);
        let wait_time = d.wait_time_us.load(Relaxed);
        rs.push(vec![
            (&d.database).into(),
            assignments.into(),
            xacts.into(),
            queries.into(),
            received.into(),
            sent.into(),
            xact_time.into(),
            query_time.into(),
            wait_time.into(),
            per(assignments, uptime).into(),
            per(xacts, uptime).into(),
            per(queries, uptime).into(),
            per(received, uptime).into(),
            per(sent, uptime).into(),
            per(xact_time, xacts).into(),
            per(query_time, queries).into(),
            per(wait_time, queries).into(),
            d.slow.load(Relaxed).into(),
            d.errors.load(Relaxed).into(),
        ]);
    }
    rs
}
