//! Replica choice: given the health view, which member serves a read.
//!
//! Eligible: usable (up, right role, probed within 3 intervals), lag within both
//! `max_lag_bytes` and `max_lag_ms` (at the limit is still eligible), replayed up to the
//! client's last write when read-your-writes gives a `min_lsn`, and not the member the caller
//! is retrying away from. With `primary_reads` the primary is one more candidate (it has no lag
//! and every write). Among the eligible, by `routing.strategy`:
//! - `latency` (default): power of two choices on [`Member::cost`] (peak-EWMA latency times
//!   in-flight + 1). Two random distinct candidates, the cheaper wins; random order decides
//!   ties, so equal members share the load, and a slow member still gets picked when it is
//!   drawn against an even slower one rather than never being measured by real traffic.
//!   (Probes keep every member's estimate current anyway.)
//! - `round_robin`: a shared cursor over the eligible list.
//! - `random`: uniform.
//! - `least_outstanding`: fewest in flight, ties broken at random.
//!
//! No eligible member: `None`, and the caller applies `routing.no_replica`.
//!
//! Hot path: atomics only, one clock read, a thread-local RNG, and no allocation up to
//! [`INLINE`] candidates.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use rand::Rng;

use crate::config::{RoutingConfig, RoutingStrategy};
use crate::health::{Health, Member, lsn};

/// Where a read goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Primary,
    /// Index into `Health::replicas` (config order).
    Replica(usize),
}

/// The routing settings `select` needs, copied out of the config once per request (or per
/// reload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// Candidates held without allocating; more spill into a `Vec`.
pub const INLINE: usize = 16;

/// The member to serve a read: eligible = usable, lag under both limits, lsn ≥ `min_lsn`
/// (read-your-writes; `None` = no constraint), not replica `exclude`. `None` when no member is
/// eligible (the caller applies `no_replica`).
pub fn select(
    health: &Health,
    limits: &Limits,
    min_lsn: Option<u64>,
    exclude: Option<usize>,
) -> Option<Target> {
    select_at(health, limits, min_lsn, exclude, Instant::now())
}

/// [`select`] as of `now` (tests stage member ages against a fixed clock).
pub(crate) fn select_at(
    health: &Health,
    limits: &Limits,
    min_lsn: Option<u64>,
    exclude: Option<usize>,
    now: Instant,
) -> Option<Target> {
    let mut c = Candidates::default();
    for (i, m) in health.replicas.iter().enumerate() {
        if exclude != Some(i) && eligible(m, limits, min_lsn, now) {
            c.push(Target::Replica(i));
        }
    }
    if limits.primary_reads && health.primary.usable_at(now) {
        c.push(Target::Primary);
    }
    let member = |t: Target| -> &Member {
        match t {
            Target::Primary => &health.primary,
            Target::Replica(i) => &health.replicas[i],
        }
    };
    let n = c.len();
    match n {
        0 => return None,
        1 => return c.get(0),
        _ => {}
    }
    let pick = match limits.strategy {
        RoutingStrategy::Latency => {
            let mut rng = rand::thread_rng();
            let a = rng.gen_range(0..n);
            // A second index distinct from the first, uniformly.
            let b = (a + rng.gen_range(1..n)) % n;
            let (ta, tb) = (c.get(a)?, c.get(b)?);
            if member(tb).cost() < member(ta).cost() {
                tb
            } else {
                ta
            }
        }
        RoutingStrategy::RoundRobin => c.get(health.next.fetch_add(1, Relaxed) % n)?,
        RoutingStrategy::Random => c.get(rand::thread_rng().gen_range(0..n))?,
        RoutingStrategy::LeastOutstanding => {
            // Scan from a random start so ties do not always favour the first replica.
            let start = rand::thread_rng().gen_range(0..n);
            (0..n)
                .filter_map(|k| c.get((start + k) % n))
                .min_by_key(|&t| member(t).outstanding())?
        }
    };
    Some(pick)
}

/// A replica may serve this read.
fn eligible(m: &Member, limits: &Limits, min_lsn: Option<u64>, now: Instant) -> bool {
    m.usable_at(now)
        && m.lag_bytes() <= limits.max_lag_bytes
        && m.lag_ms() <= limits.max_lag_ms
        && min_lsn.is_none_or(|want| lsn::reached(m.lsn(), want))
}

/// The eligible targets: inline up to [`INLINE`], then a `Vec` (allocated only past that).
#[derive(Default)]
struct Candidates {
    inline: [Option<Target>; INLINE],
    len: usize,
    spill: Vec<Target>,
}

impl Candidates {
    fn push(&mut self, t: Target) {
        if self.len < INLINE {
            self.inline[self.len] = Some(t);
        } else {
            self.spill.push(t);
        }
        self.len += 1;
    }

    fn len(&self) -> usize {
        self.len
    }

    /// The `i`-th candidate (`None` only past `len()`).
    fn get(&self, i: usize) -> Option<Target> {
        match self.inline.get(i) {
            Some(t) => *t,
            None => self.spill.get(i - INLINE).copied(),
        }
    }
}

#[cfg(test)]
mod tests;
