//! The health of each database's members (primary and replicas), as the data path sees it:
//! up or not, how far behind, how fast. The monitor task (`monitor`) probes every member each
//! `routing.probe_interval_ms` and publishes into [`Member`]'s atomics; the router
//! (`router::select`) and the session read them per request without locks or allocation, and
//! feed back what they observe (query latency, in-flight count, a refused connection).
//!
//! Owns: the shared view ([`Health`], [`Member`], [`MemberReport`] for SHOW REPLICAS and
//! metrics), the peak-EWMA latency estimate (`ewma`), the up/down hysteresis (`ban`), the
//! primary's LSN history and lag (`lag`), LSN text (`lsn`), one probe over a kept-open
//! connection (`probe`), the loop (`monitor`) and the stop token of each running loop
//! (`monitors`). Does not own: which member a query goes to (`router`), the pools, or deciding
//! which databases are monitored (`app` at start, `config::reload` later).
//!
//! Rules the view keeps:
//! - A member is [`Member::usable`] only when up (see `ban`: up after its first good probe,
//!   down after `down_after_failures` bad ones, back after `up_after_successes`) **and** its
//!   last good probe is recent: older than 3 probe intervals counts as unknown (the monitor is
//!   stuck, or probes hang), whatever the last state said.
//! - A member answering in the wrong role (a "replica" not in recovery, i.e. promoted; a
//!   "primary" in recovery) is down at once: no reads to a diverged server, no writes to a
//!   standby.

mod ban;
pub mod ewma;
pub mod lag;
pub mod lsn;
mod monitor;
mod monitors;
mod probe;

use std::sync::Arc;
use std::sync::atomic::{
    AtomicU8, AtomicU32, AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

pub use ban::State;
pub use monitors::Monitors;
pub use probe::{ProbeLogin, probe_login};

use crate::config::{Config, DatabaseConfig, Endpoint};

/// A good probe older than this many intervals makes a member unknown (not used).
pub const STALE_INTERVALS: u32 = 3;

/// Marks "never" in the nanosecond stamps and "unknown" in the lag atomics.
const NEVER: u64 = u64::MAX;

/// Which part a member plays in its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// A member's state as reported (SHOW REPLICAS): the hysteresis state, or `Stale` when it is
/// up but its last good probe is too old to trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Unknown,
    Up,
    Down,
    Stale,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Unknown => "unknown",
            MemberState::Up => "up",
            MemberState::Down => "down",
            MemberState::Stale => "stale",
        }
    }
}

/// The health view of one database: its primary and replicas, and the primary's newest
/// probed LSN for read-your-writes. Built by [`Health::new`] (no I/O), kept current by
/// [`Health::run`].
pub struct Health {
    /// The `[[databases]]` name (metric label).
    pub database: String,
    pub primary: Arc<Member>,
    /// In config order; `Target::Replica(i)` is `replicas[i]`.
    pub replicas: Vec<Arc<Member>>,
    pub(crate) interval: Duration,
    pub(crate) down_after_failures: u32,
    pub(crate) up_after_successes: u32,
    /// Origin of every nanosecond stamp in this view (members included).
    pub(crate) base: Instant,
    /// The primary's newest insert LSN; written before `primary_lsn_at` (see
    /// [`Health::primary_lsn_since`]).
    primary_lsn: AtomicU64,
    /// When the probe that read `primary_lsn` sent its query, nanos since `base`; `NEVER`.
    primary_lsn_at: AtomicU64,
    /// Round-robin cursor of `router::select`.
    pub(crate) next: AtomicUsize,
    /// Completed probe rounds.
    rounds: AtomicU64,
}

impl Health {
    /// The view for `db`, every member Unknown. No I/O: start [`Health::run`] to fill it.
    pub fn new(config: &Config, db: &DatabaseConfig) -> Arc<Health> {
        let r = &config.routing;
        let interval = r.probe_interval().max(Duration::from_millis(1));
        let base = Instant::now();
        let stale_after = interval * STALE_INTERVALS;
        let primary = Arc::new(Member::new(
            "primary".to_owned(),
            Role::Primary,
            &db.primary_endpoint,
            base,
            stale_after,
        ));
        let replicas = db
            .replica_endpoints
            .iter()
            .enumerate()
            .map(|(i, ep)| {
                Arc::new(Member::new(
                    format!("replica{}", i + 1),
                    Role::Replica,
                    ep,
                    base,
                    stale_after,
                ))
            })
            .collect();
        Arc::new(Health {
            database: db.name.clone(),
            primary,
            replicas,
            interval,
            down_after_failures: r.down_after_failures,
            up_after_successes: r.up_after_successes,
            base,
            primary_lsn: AtomicU64::new(0),
            primary_lsn_at: AtomicU64::new(NEVER),
            next: AtomicUsize::new(0),
            rounds: AtomicU64::new(0),
        })
    }

    /// `routing.probe_interval_ms` (at least 1 ms).
    pub fn probe_interval(&self) -> Duration {
        self.interval
    }

    /// The primary's newest probed insert LSN, if that probe sent its query at or after
    /// `since`. Read-your-writes: a commit acknowledged to a client before `since` is at or
    /// below it (the insert position covers even commits not yet flushed, with
    /// `synchronous_commit = off`), so a replica that replayed up to it has the client's write.
    /// `None`: no such probe yet (wait for the next round, or read from the primary).
    pub fn primary_lsn_since(&self, since: Instant) -> Option<u64> {
        // Stamp first, LSN second, the reverse of the writer: a new stamp guarantees the new
        // LSN; an old stamp with a new LSN only errs high, which is safe.
        let at = self.primary_lsn_at.load(Acquire);
        if at == NEVER || at < nanos_since(self.base, since) {
            return None;
        }
        Some(self.primary_lsn.load(Acquire))
    }

    /// Records the primary's insert LSN read by a probe sent at `at` (the monitor).
    pub(crate) fn set_primary_lsn(&self, lsn: u64, at: Instant) {
        self.primary_lsn.store(lsn, Release);
        self.primary_lsn_at
            .store(nanos_since(self.base, at).min(NEVER - 1), Release);
    }

    /// Probe rounds completed since [`Health::run`] started.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Relaxed)
    }

    pub(crate) fn count_round(&self) {
        self.rounds.fetch_add(1, Relaxed);
    }

    /// The primary then every replica, in config order.
    pub fn members(&self) -> impl Iterator<Item = &Arc<Member>> {
        std::iter::once(&self.primary).chain(&self.replicas)
    }

    /// A snapshot of every member (primary first) for SHOW REPLICAS and metrics.
    pub fn report(&self) -> Vec<MemberReport> {
        let now = Instant::now();
        self.members().map(|m| m.report(now)).collect()
    }
}

/// One member (primary or replica) of a database. Written by the monitor, read and fed by the
/// data path, all through atomics.
pub struct Member {
    /// `"primary"`, `"replica1"`, `"replica2"`, ... (1-based, config order): metric label and
    /// SHOW REPLICAS name.
    pub name: String,
    /// `host:port`.
    pub addr: String,
    pub role: Role,
    /// Where the monitor probes it.
    pub(crate) endpoint: Endpoint,
    /// A [`State`] as `u8` (`state_to_u8`). Written by the monitor; the data path only ever
    /// writes Down ([`Member::mark_down`]), which the monitor notices.
    state: AtomicU8,
    /// When the last good probe sent its query, nanos since `base`; `NEVER`.
    last_ok: AtomicU64,
    /// When the last probe (any outcome) finished, nanos since `base`; `NEVER`.
    last_probe: AtomicU64,
    /// Replay LSN (replica) or insert LSN (primary) at the last good probe.
    lsn: AtomicU64,
    /// `NEVER` = unknown.
    lag_bytes: AtomicU64,
    /// `NEVER` = unknown.
    lag_ms: AtomicU64,
    /// Peak EWMA of probe RTTs and observed query latencies: the `latency` strategy's cost.
    latency: ewma::Ewma,
    /// Plain EWMA of probe RTTs alone, for reports.
    rtt: ewma::Ewma,
    outstanding: AtomicU32,
    routed: AtomicU64,
    last_error: ArcSwapOption<String>,
    base: Instant,
    stale_after: u64,
}

impl Member {
    fn new(
        name: String,
        role: Role,
        endpoint: &Endpoint,
        base: Instant,
        stale_after: Duration,
    ) -> Member {
        let lag = if role == Role::Primary { 0 } else { NEVER };
        Member {
            name,
            addr: format!("{}:{}", endpoint.host, endpoint.port),
            role,
            endpoint: endpoint.clone(),
            state: AtomicU8::new(state_to_u8(State::Unknown)),
            last_ok: AtomicU64::new(NEVER),
            last_probe: AtomicU64::new(NEVER),
            lsn: AtomicU64::new(0),
            lag_bytes: AtomicU64::new(lag),
            lag_ms: AtomicU64::new(lag),
            latency: ewma::Ewma::peak(base, ewma::DECAY),
            rtt: ewma::Ewma::plain(base, ewma::DECAY),
            outstanding: AtomicU32::new(0),
            routed: AtomicU64::new(0),
            last_error: ArcSwapOption::empty(),
            base,
            stale_after: u64::try_from(stale_after.as_nanos()).unwrap_or(NEVER - 1),
        }
    }

    /// Up, in the right role, and probed successfully within the last 3 intervals.
    pub fn usable(&self) -> bool {
        self.usable_at(Instant::now())
    }

    /// [`Member::usable`] as of `now` (one clock read for a whole selection).
    pub fn usable_at(&self, now: Instant) -> bool {
        self.state() == State::Up && self.fresh_at(now)
    }

    fn fresh_at(&self, now: Instant) -> bool {
        let last = self.last_ok.load(Relaxed);
        last != NEVER && nanos_since(self.base, now).saturating_sub(last) <= self.stale_after
    }

    /// The hysteresis state last published (a data-path [`Member::mark_down`] included).
    pub fn state(&self) -> State {
        state_from_u8(self.state.load(Relaxed))
    }

    /// Bytes of WAL behind the primary; `u64::MAX` while unknown. 0 for the primary.
    pub fn lag_bytes(&self) -> u64 {
        self.lag_bytes.load(Relaxed)
    }

    /// Milliseconds behind the primary (see `lag`); `u64::MAX` while unknown. 0 for the
    /// primary.
    pub fn lag_ms(&self) -> u64 {
        self.lag_ms.load(Relaxed)
    }

    /// Replay LSN (replica) or insert LSN (primary) at the last good probe; 0 before one.
    pub fn lsn(&self) -> u64 {
        self.lsn.load(Relaxed)
    }

    /// Data path: the server time of one request on this member. Feeds the peak EWMA, so a
    /// member that turns slow loses traffic on its first slow answer.
    pub fn observe_latency(&self, d: Duration) {
        self.latency.observe(d, Instant::now());
    }

    /// Data path: connecting to this member failed outright (refused, reset during login).
    /// It stops being used now, without waiting for probes, and comes back after
    /// `up_after_successes` good probes. Logs only when it was not already down, so a
    /// burst of failing clients logs once.
    pub fn mark_down(&self, cause: &str) {
        let was = self.state.swap(state_to_u8(State::Down), Relaxed);
        if state_from_u8(was) != State::Down {
            self.last_error.store(Some(Arc::new(cause.to_owned())));
            tracing::warn!(member = %self.name, addr = %self.addr, cause, "member down: a connection to it failed");
        }
    }

    /// Data path: a request starts on this member; the guard counts it as in flight until
    /// dropped (least_outstanding and the latency cost use the count).
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Requests in flight on this member.
    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Relaxed)
    }

    /// Data path: one query was routed here (SHOW REPLICAS, metrics).
    pub fn count_routed(&self) {
        self.routed.fetch_add(1, Relaxed);
    }

    /// Queries routed here so far.
    pub fn routed(&self) -> u64 {
        self.routed.load(Relaxed)
    }

    /// The peak-EWMA latency estimate, seconds (0 before any sample).
    pub fn latency_estimate(&self) -> f64 {
        self.latency.get()
    }

    /// Expected latency of one more request here, for the `latency` strategy: the peak EWMA
    /// times (in flight + 1), as linkerd's PeakEwma load, so a fast member that piles up
    /// requests stops looking fast.
    pub fn cost(&self) -> f64 {
        self.latency.get() * (f64::from(self.outstanding()) + 1.0)
    }

    /// The report row as of `now`.
    pub fn report(&self, now: Instant) -> MemberReport {
        let ban = self.state();
        let state = match ban {
            State::Up if !self.fresh_at(now) => MemberState::Stale,
            State::Up => MemberState::Up,
            State::Down => MemberState::Down,
            State::Unknown => MemberState::Unknown,
        };
        let known = |v: u64| (v != NEVER).then_some(v);
        let age = |stamp: u64| {
            known(stamp)
                .map(|s| Duration::from_nanos(nanos_since(self.base, now).saturating_sub(s)))
        };
        let last_ok = self.last_ok.load(Relaxed);
        MemberReport {
            name: self.name.clone(),
            addr: self.addr.clone(),
            role: self.role,
            state,
            usable: state == MemberState::Up,
            lsn: known(last_ok).map(|_| self.lsn()),
            lag_bytes: known(self.lag_bytes()),
            lag_seconds: known(self.lag_ms()).map(|ms| ms as f64 / 1000.0),
            latency_seconds: self.latency.has_samples().then(|| self.latency.get()),
            rtt_seconds: self.rtt.has_samples().then(|| self.rtt.get()),
            outstanding: self.outstanding(),
            routed: self.routed(),
            last_probe_age: age(self.last_probe.load(Relaxed)),
            last_ok_age: age(last_ok),
            last_error: self.last_error.load_full().map(|e| (*e).clone()),
        }
    }

    // ---- written by the monitor (and by tests to stage a member without Postgres) ----

    /// A good probe sent at `sent_at` read `lsn` in `rtt`.
    pub(crate) fn record_ok(&self, lsn: u64, sent_at: Instant, rtt: Duration) {
        self.lsn.store(lsn, Relaxed);
        self.latency.observe_smoothed(rtt, sent_at + rtt);
        self.rtt.observe(rtt, sent_at + rtt);
        self.last_ok
            .store(nanos_since(self.base, sent_at).min(NEVER - 1), Relaxed);
        self.last_error.store(None);
    }

    /// Any probe finished at `at`; `error` says why it failed.
    pub(crate) fn record_probe(&self, at: Instant, error: Option<String>) {
        self.last_probe
            .store(nanos_since(self.base, at).min(NEVER - 1), Relaxed);
        if let Some(e) = error {
            self.last_error.store(Some(Arc::new(e)));
        }
    }

    /// Lag against the primary; `None` = unknown (stored as `u64::MAX`).
    pub(crate) fn set_lag(&self, bytes: Option<u64>, time: Option<Duration>) {
        self.lag_bytes.store(bytes.unwrap_or(NEVER), Relaxed);
        let ms = time.map(|t| u64::try_from(t.as_millis()).unwrap_or(NEVER - 1));
        self.lag_ms.store(ms.unwrap_or(NEVER), Relaxed);
    }

    /// Publishes the monitor's state if nobody changed it since the monitor read `seen`
    /// (a data-path `mark_down` in between wins). Returns whether it was published.
    pub(crate) fn publish_state(&self, seen: State, state: State) -> bool {
        self.state
            .compare_exchange(state_to_u8(seen), state_to_u8(state), Relaxed, Relaxed)
            .is_ok()
    }
}

/// A request in flight on a member (see [`Member::start_request`]); dropping it ends it.
#[must_use = "the request counts as in flight only while the guard lives"]
pub struct InFlight(Arc<Member>);

impl InFlight {
    pub fn member(&self) -> &Arc<Member> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Relaxed);
    }
}

/// One member's row for SHOW REPLICAS and the `lagoon_replica_*` metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberReport {
    pub name: String,
    pub addr: String,
    pub role: Role,
    pub state: MemberState,
    /// Whether the router may use it now (state Up and fresh).
    pub usable: bool,
    /// Replay LSN (replica) or insert LSN (primary) at the last good probe (`lsn::format`
    /// prints it); `None` before one.
    pub lsn: Option<u64>,
    /// `None` while unknown; 0 for the primary.
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    /// Peak-EWMA latency estimate (probe RTTs and query latencies), seconds.
    pub latency_seconds: Option<f64>,
    /// Plain EWMA of probe round trips, seconds.
    pub rtt_seconds: Option<f64>,
    pub outstanding: u32,
    pub routed: u64,
    /// Since the last probe finished, any outcome.
    pub last_probe_age: Option<Duration>,
    /// Since the last good probe was sent.
    pub last_ok_age: Option<Duration>,
    /// Why the last probe failed, or why the data path marked it down; cleared by a good one.
    pub last_error: Option<String>,
}

fn state_to_u8(s: State) -> u8 {
    match s {
        State::Unknown => 0,
        State::Up => 1,
        State::Down => 2,
    }
}

fn state_from_u8(v: u8) -> State {
    match v {
        1 => State::Up,
        2 => State::Down,
        _ => State::Unknown,
    }
}

/// Nanoseconds from `base` to `at`: 0 if `at` is earlier, `NEVER - 1` at most.
fn nanos_since(base: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base).as_nanos()).unwrap_or(NEVER - 1)
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests;
