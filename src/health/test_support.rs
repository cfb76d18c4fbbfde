//! Staging member states without Postgres, for unit tests here and in `router`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Health, Member, State};
use crate::config::{Config, DatabaseConfig, Endpoint};

/// A database with `replicas` replicas on made-up ports, probe interval 250 ms, down after
/// 2 failures, up after 3 successes. Every member Unknown.
pub(crate) fn health(replicas: usize) -> Arc<Health> {
    let ep = |port: u16| Endpoint {
        host: "127.0.0.1".to_owned(),
        port,
        dbname: "appdb".to_owned(),
        user: None,
        password: None,
        options: None,
        ..Endpoint::default()
    };
    let db = DatabaseConfig {
        name: "appdb".to_owned(),
        primary: String::new(),
        replicas: Vec::new(),
        pool_size: None,
        pool_mode: None,
        slow_query_threshold_ms: None,
        primary_endpoint: ep(5432),
        replica_endpoints: (0..replicas).map(|i| ep(5433 + i as u16)).collect(),
        server_tls: None,
        server_tls_ca: None,
    };
    Health::new(&Config::default(), &db)
}

/// What a staged member looks like.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Staged {
    pub up: bool,
    /// Last good probe this long before `now` (past 750 ms it is stale).
    pub probe_age: Duration,
    pub lsn: u64,
    pub lag_bytes: u64,
    pub lag_ms: u64,
    /// Becomes the latency estimate (first sample of the peak EWMA).
    pub latency: Duration,
}

impl Default for Staged {
    fn default() -> Self {
        Staged {
            up: true,
            probe_age: Duration::ZERO,
            lsn: 1000,
            lag_bytes: 0,
            lag_ms: 0,
            latency: Duration::from_millis(1),
        }
    }
}

/// A fixed "now" for staged tests: the view's clock origin plus a minute, so a probe age
/// can be subtracted from it.
pub(crate) fn now(h: &Health) -> Instant {
    h.base + Duration::from_secs(60)
}

/// Puts `m` into the state `s` describes, as of [`now`].
pub(crate) fn stage(h: &Health, m: &Member, s: Staged) {
    let at = now(h) - s.probe_age;
    m.record_ok(s.lsn, at, s.latency);
    m.set_lag(Some(s.lag_bytes), Some(Duration::from_millis(s.lag_ms)));
    let target = if s.up { State::Up } else { State::Down };
    assert!(m.publish_state(m.state(), target));
}
