//! STUB (replaced by the health branch).
use crate::config::{RoutingConfig, RoutingStrategy};
use crate::health::Health;
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Primary,
    Replica(usize),
}
pub struct Limits {
    pub strategy: RoutingStrategy,
    pub max_lag_bytes: u64,
    pub max_lag_ms: u64,
    pub primary_reads: bool,
}
impl Limits {
    pub fn from_config(r: &RoutingConfig) -> Limits {
        Limits {
            strategy: r.strategy,
            max_lag_bytes: r.max_lag_bytes,
            max_lag_ms: r.max_lag_ms,
            primary_reads: r.primary_reads,
        }
    }
}
pub fn select(
    health: &Health,
    _limits: &Limits,
    min_lsn: Option<u64>,
    exclude: Option<usize>,
) -> Option<Target> {
    (0..health.replicas.len())
        .find(|&i| {
            Some(i) != exclude
                && health.replicas[i].usable()
                && min_lsn.is_none_or(|l| health.replicas[i].lsn() >= l)
        })
        .map(Target::Replica)
}
