//! STUB (replaced by the health branch).
use crate::config::{Config, DatabaseConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
pub struct ProbeLogin;
pub fn probe_login(_config: &Config, _db: &DatabaseConfig) -> Option<ProbeLogin> {
    Some(ProbeLogin)
}
pub struct Member {
    pub name: String,
    pub addr: String,
    out: AtomicU32,
    routed: AtomicU64,
}
impl Member {
    pub fn usable(&self) -> bool {
        true
    }
    pub fn known_down(&self) -> bool {
        false
    }
    pub fn lsn(&self) -> u64 {
        u64::MAX
    }
    pub fn observe_latency(&self, _d: Duration) {}
    pub fn mark_down(&self, _cause: &str) {}
    pub fn begin(&self) {
        self.out.fetch_add(1, Ordering::Relaxed);
    }
    pub fn end(&self) {
        self.out.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn count_routed(&self) {
        self.routed.fetch_add(1, Ordering::Relaxed);
    }
}
pub struct Health {
    pub database: String,
    pub primary: Arc<Member>,
    pub replicas: Vec<Arc<Member>>,
}
impl Health {
    pub fn new(_config: &Config, db: &DatabaseConfig) -> Arc<Health> {
        let m = |name: String| {
            Arc::new(Member {
                name,
                addr: String::new(),
                out: AtomicU32::new(0),
                routed: AtomicU64::new(0),
            })
        };
        Arc::new(Health {
            database: db.name.clone(),
            primary: m("primary".into()),
            replicas: (0..db.replicas.len())
                .map(|i| m(format!("replica{}", i + 1)))
                .collect(),
        })
    }
    pub async fn run(self: Arc<Self>, _login: ProbeLogin, stop: CancellationToken) {
        stop.cancelled().await
    }
    pub fn primary_lsn_since(&self, _since: Instant) -> Option<u64> {
        Some(0)
    }
}
