//! `SHOW POOLS`: one row per (database, user), summed over its members (primary and
//! replicas). PgBouncer's columns first (so its exporters read them), then Lagoon's:
//! `pool_size` (the size in force, per member) and `members`.
//!
//! Client figures come from the client registry (`cl_waiting` counts requests held by a
//! `PAUSE` as well as those queued for a connection); server figures from `Pool::stats`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::result_set::{INT, ResultSet, TEXT, wait_split};
use crate::app::Shared;
use crate::client::registry::ClientState;
use crate::pool::Pool;

/// (database, user) -> the pools of its members.
pub(super) fn clusters(shared: &Shared) -> BTreeMap<(String, String), Vec<Arc<Pool>>> {
    let mut map: BTreeMap<(String, String), Vec<Arc<Pool>>> = BTreeMap::new();
    for pool in shared.pools.all() {
        map.entry((pool.database.clone(), pool.user.clone()))
            .or_default()
            .push(pool);
    }
    for pools in map.values_mut() {
        // Primary first, then replicas in config order.
        pools.sort_by_key(|p| (p.member != "primary", p.member.len(), p.member.clone()));
    }
    map
}

#[derive(Default)]
struct ClientCounts {
    active: u64,
    waiting: u64,
    max_wait: Duration,
}

pub fn show(shared: &Shared) -> ResultSet {
    let config = shared.config.load();
    let now = SystemTime::now();
    let mut clients: HashMap<(String, String), ClientCounts> = HashMap::new();
    for e in shared
        .client_registry
        .all()
        .into_iter()
        .filter(|e| !e.admin)
    {
        let c = clients
            .entry((e.database.clone(), e.user.clone()))
            .or_default();
        match e.state() {
            ClientState::Waiting => {
                c.waiting += 1;
                if let Some(t) = e.request_time() {
                    c.max_wait = c.max_wait.max(now.duration_since(t).unwrap_or_default());
                }
            }
            ClientState::Active | ClientState::Idle => c.active += 1,
        }
    }
    let mut rs = ResultSet::new(&[
        ("database", TEXT),
        ("user", TEXT),
        ("cl_active", INT),
        ("cl_waiting", INT),
        ("cl_active_cancel_req", INT),
        ("cl_waiting_cancel_req", INT),
        ("sv_active", INT),
        ("sv_active_cancel", INT),
        ("sv_being_canceled", INT),
        ("sv_idle", INT),
        ("sv_used", INT),
        ("sv_tested", INT),
        ("sv_login", INT),
        ("maxwait", INT),
        ("maxwait_us", INT),
        ("pool_mode", TEXT),
        ("pool_size", INT),
        ("members", INT),
    ]);
    for ((database, user), pools) in clusters(shared) {
        let (mut active, mut idle, mut login) = (0usize, 0usize, 0usize);
        let mut max_wait = Duration::ZERO;
        for p in &pools {
            let s = p.stats();
            active += s.active;
            idle += s.idle;
            login += s.connecting;
            max_wait = max_wait.max(s.max_wait);
        }
        let c = clients
            .remove(&(database.clone(), user.clone()))
            .unwrap_or_default();
        let (secs, us) = wait_split(max_wait.max(c.max_wait));
        let mode = config
            .database(&database)
            .map_or(config.pool.mode, |d| d.effective_pool_mode(&config.pool));
        let size = pools.first().map_or(0, |p| p.settings().size);
        rs.push(vec![
            (&database).into(),
            (&user).into(),
            c.active.into(),
            c.waiting.into(),
            0u64.into(),
            0u64.into(),
            active.into(),
            0u64.into(),
            0u64.into(),
            idle.into(),
            0u64.into(),
            0u64.into(),
            login.into(),
            secs.into(),
            us.into(),
            mode.as_str().into(),
            size.into(),
            pools.len().into(),
        ]);
    }
    rs
}
