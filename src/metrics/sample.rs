//! Gauges sampled at scrape time from what the proxy keeps anyway: pool connection counts,
//! waiters, the oldest waiter, checkout timeouts, connected clients. Sampling costs the data
//! path nothing (no gauge updates per checkout) and is exact at the moment of the scrape.
//!
//! Series are aggregated over users (`user` is never a label). Every configured database and
//! member gets its series from the first scrape, zero before its first client, so dashboards
//! and `absent()` alerts see them at once. A series whose pool no longer exists (a database
//! removed by a reload) is set to zero rather than left at its last value.
//!
//! The recorder is per process: two proxies in one process serving the same database name
//! overwrite each other's sampled values (tests only; a real process runs one proxy).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::names::{self, ClientState, ServerState};
use crate::app::Shared;

/// Label sets set by the previous scrape, to zero those that disappeared.
#[derive(Default)]
pub(super) struct Sampler {
    previous: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    members: BTreeSet<(String, String)>,
    databases: BTreeSet<String>,
}

#[derive(Default)]
struct DatabaseSample {
    waiting: usize,
    max_wait: Duration,
    timeouts: u64,
}

impl Sampler {
    /// Sets every sampled gauge from `shared` now.
    pub(super) fn refresh(&self, shared: &Shared) {
        let config = shared.config.load();
        let mut members: BTreeMap<(String, String), [usize; 3]> = BTreeMap::new();
        let mut databases: BTreeMap<String, DatabaseSample> = BTreeMap::new();
        for db in &config.databases {
            databases.entry(db.name.clone()).or_default();
            members
                .entry((db.name.clone(), "primary".to_owned()))
                .or_default();
            for i in 1..=db.replica_endpoints.len() {
                members
                    .entry((db.name.clone(), format!("replica{i}")))
                    .or_default();
            }
        }
        for pool in shared.pools.all() {
            let s = pool.stats();
            let m = members
                .entry((pool.database.clone(), pool.member.clone()))
                .or_default();
            m[0] += s.active;
            m[1] += s.idle;
            m[2] += s.connecting;
            let d = databases.entry(pool.database.clone()).or_default();
            d.waiting += s.waiting;
            d.max_wait = d.max_wait.max(s.max_wait);
            d.timeouts += pool.counters.timeouts.load(Ordering::Relaxed);
        }

        let waiting: usize = databases.values().map(|d| d.waiting).sum();
        let clients = shared.clients.load(Ordering::Relaxed);
        for state in ClientState::ALL {
            let v = match state {
                ClientState::Waiting => waiting.min(clients),
                ClientState::Active => clients.saturating_sub(waiting),
            };
            ::metrics::gauge!(names::CLIENT_CONNECTIONS, "state" => state.as_str()).set(v as f64);
        }

        for ((db, member), counts) in &members {
            for (state, n) in ServerState::ALL.into_iter().zip(counts) {
                set_server(db, member, state, *n as f64);
            }
        }
        for (db, d) in &databases {
            ::metrics::gauge!(names::POOL_CLIENTS_WAITING, "database" => db.clone())
                .set(d.waiting as f64);
            ::metrics::gauge!(names::POOL_MAX_WAIT_SECONDS, "database" => db.clone())
                .set(d.max_wait.as_secs_f64());
            ::metrics::counter!(names::CHECKOUT_TIMEOUTS_TOTAL, "database" => db.clone())
                .absolute(d.timeouts);
        }

        let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        for (db, member) in previous
            .members
            .iter()
            .filter(|k| !members.contains_key(*k))
        {
            for state in ServerState::ALL {
                set_server(db, member, state, 0.0);
            }
        }
        for db in previous
            .databases
            .iter()
            .filter(|k| !databases.contains_key(*k))
        {
            ::metrics::gauge!(names::POOL_CLIENTS_WAITING, "database" => db.clone()).set(0.0);
            ::metrics::gauge!(names::POOL_MAX_WAIT_SECONDS, "database" => db.clone()).set(0.0);
        }
        *previous = Seen {
            members: members.into_keys().collect(),
            databases: databases.into_keys().collect(),
        };
    }
}

fn set_server(db: &str, member: &str, state: ServerState, value: f64) {
    ::metrics::gauge!(
        names::SERVER_CONNECTIONS,
        "database" => db.to_owned(),
        "member" => member.to_owned(),
        "state" => state.as_str()
    )
    .set(value);
}
