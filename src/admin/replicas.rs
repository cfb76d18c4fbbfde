//! `SHOW REPLICAS` (Lagoon's own): every member of every database the health monitor
//! watches (those with replicas and `routing.read_write_split` on), primary included, as the
//! router sees it: state, whether usable, LSN, lag, latency, load. Databases without replicas
//! have no rows.

use std::time::Duration;

use super::result_set::{INT, ResultSet, TEXT, millis};
use crate::app::Shared;
use crate::health::lsn;

pub fn show(shared: &Shared) -> ResultSet {
    let mut rs = ResultSet::new(&[
        ("database", TEXT),
        ("member", TEXT),
        ("addr", TEXT),
        ("role", TEXT),
        ("state", TEXT),
        ("usable", INT),
        ("lsn", TEXT),
        ("lag_bytes", INT),
        ("lag_seconds", TEXT),
        ("latency_ms", TEXT),
        ("rtt_ms", TEXT),
        ("outstanding", INT),
        ("routed", INT),
        ("last_error", TEXT),
    ]);
    let mut healths: Vec<_> = shared
        .health
        .iter()
        .map(|e| (e.key().clone(), std::sync::Arc::clone(e.value())))
        .collect();
    healths.sort_by(|a, b| a.0.cmp(&b.0));
    let secs = |s: Option<f64>| s.filter(|v| v.is_finite() && *v >= 0.0);
    for (database, health) in healths {
        for m in health.report() {
            rs.push(vec![
                (&database).into(),
                (&m.name).into(),
                (&m.addr).into(),
                m.role.as_str().into(),
                m.state.as_str().into(),
                u64::from(m.usable).into(),
                m.lsn.map(lsn::format).into(),
                m.lag_bytes.into(),
                secs(m.lag_seconds).map(|s| format!("{s:.3}")).into(),
                secs(m.latency_seconds)
                    .map(|s| millis(Duration::from_secs_f64(s.min(1e9))))
                    .into(),
                secs(m.rtt_seconds)
                    .map(|s| millis(Duration::from_secs_f64(s.min(1e9))))
                    .into(),
                m.outstanding.into(),
                m.routed.into(),
                m.last_error.into(),
            ]);
        }
    }
    rs
}
