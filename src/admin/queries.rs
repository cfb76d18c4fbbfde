//! `SHOW QUERIES`: the 100 query fingerprints with the highest p99 latency (the table is
//! `stats::Aggregate`, sized by `slow_query.top_queries`). Times are milliseconds with three
//! decimals; the `mean_*_ms` phases are per call.

use std::time::Duration;

use super::result_set::{INT, ResultSet, TEXT, millis};
use crate::app::Shared;
use crate::stats::Order;

/// Rows shown: enough to find the culprits, few enough for a terminal.
const TOP: usize = 100;

pub fn show(shared: &Shared) -> ResultSet {
    let mut rs = ResultSet::new(&[
        ("fingerprint", TEXT),
        ("query", TEXT),
        ("calls", INT),
        ("total_ms", TEXT),
        ("mean_ms", TEXT),
        ("p50_ms", TEXT),
        ("p95_ms", TEXT),
        ("p99_ms", TEXT),
        ("max_ms", TEXT),
        ("mean_pool_wait_ms", TEXT),
        ("mean_server_ms", TEXT),
        ("mean_client_ms", TEXT),
        ("rows", INT),
        ("errors", INT),
        ("slow", INT),
    ]);
    let mean = |total: Duration, calls: u64| {
        millis(
            u32::try_from(calls)
                .ok()
                .filter(|&n| n > 0)
                .map_or(Duration::ZERO, |n| total / n),
        )
    };
    for q in shared.stats.aggregate().top(TOP, Order::P99) {
        rs.push(vec![
            format!("{:016x}", q.fingerprint).into(),
            q.query.as_ref().into(),
            q.calls.into(),
            millis(q.total).into(),
            millis(q.mean).into(),
            millis(q.p50).into(),
            millis(q.p95).into(),
            millis(q.p99).into(),
            millis(q.max).into(),
            mean(q.total_pool_wait, q.calls).into(),
            mean(q.total_server, q.calls).into(),
            mean(q.total_client, q.calls).into(),
            q.rows.into(),
            q.errors.into(),
            q.slow.into(),
        ]);
    }
    rs
}
