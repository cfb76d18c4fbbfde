//! `SHOW SLOW`: the slow log's most recent entries (those kept in memory by
//! `stats::SlowLog`), newest first: when, which fingerprint, the normalized text, the time
//! and its phases (milliseconds, three decimals), and where it ran.

use super::result_set::{INT, ResultSet, TEXT, millis, timestamp_ms};
use crate::app::Shared;

pub fn show(shared: &Shared) -> ResultSet {
    let mut rs = ResultSet::new(&[
        ("time", TEXT),
        ("fingerprint", TEXT),
        ("query", TEXT),
        ("duration_ms", TEXT),
        ("pool_wait_ms", TEXT),
        ("server_ms", TEXT),
        ("client_ms", TEXT),
        ("database", TEXT),
        ("user", TEXT),
        ("application_name", TEXT),
        ("member", TEXT),
        ("route", TEXT),
        ("sqlstate", TEXT),
        ("rows", INT),
    ]);
    for e in shared.stats.slow_log().recent() {
        rs.push(vec![
            timestamp_ms(e.at).into(),
            format!("{:016x}", e.fingerprint).into(),
            e.query.into(),
            millis(e.total).into(),
            millis(e.pool_wait).into(),
            millis(e.server).into(),
            millis(e.client).into(),
            e.database.into(),
            e.user.into(),
            e.application_name.into(),
            e.member.into(),
            e.route.as_str().into(),
            e.sqlstate
                .map(|c| String::from_utf8_lossy(&c).into_owned())
                .into(),
            e.rows.into(),
        ]);
    }
    rs
}
