//! The monitor task of one database ([`Health::run`]): every `probe_interval_ms` it probes the
//! primary, then all replicas at once, and publishes what it learnt into the members'
//! atomics (state, LSN, lag, latency) and the `lagoon_replica_*` gauges.
//!
//! Order and bounds: the primary goes first so each replica's replay position is compared
//! with a primary sample taken just before it. Replica probes run concurrently, each bounded
//! by the interval, so one hung replica delays neither the others nor the next round by more
//! than one interval. A round therefore takes at most two intervals (primary, then replicas)
//! and every member is probed well within the 3-interval staleness limit. Ticks missed by a
//! slow round are delayed, not bunched (`MissedTickBehavior::Delay`).
//!
//! How fast a failure is seen: a stopped member refuses connections, so its probes fail at
//! once and it is down after `down_after_failures` rounds (immediately when the data path
//! calls `Member::mark_down` on a refused connection). A hung one costs a whole interval per
//! failed probe, so with the defaults it is down 2 to 3 intervals after it stopped answering;
//! meanwhile the requests piling up on it raise its `cost()` and the `latency` strategy
//! already sends new reads elsewhere.
//!
//! The hysteresis ([`Ban`]) and the primary's LSN history ([`LsnHistory`]) live here, owned by
//! this task alone; the data path's `Member::mark_down` reaches the hysteresis by knocking the
//! published state down, which the next round notices (and a compare-and-swap on publish keeps
//! the monitor from overwriting one that lands mid-round).

use std::sync::Arc;
use std::time::Instant;

use metrics::Gauge;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::ban::{Ban, State};
use super::lag::{LsnHistory, Sample};
use super::probe::{ProbeError, ProbeLogin, Prober, Reading};
use super::{Health, Member, Role};

impl Health {
    /// Probes this database's members every `probe_interval_ms` until `stop` is cancelled.
    /// Spawn it once per database with replicas, e.g.
    /// `tokio::spawn(Arc::clone(&health).run(login, shutdown.hard.clone()))`, `login` from
    /// [`super::probe_login`].
    pub async fn run(self: Arc<Self>, login: ProbeLogin, stop: CancellationToken) {
        tracing::info!(
            database = %self.database,
            replicas = self.replicas.len(),
            interval = ?self.interval,
            user = %login.user,
            "health monitor started"
        );
        let mut monitor = Monitor::new(&self, &login);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            tokio::select! {
                _ = monitor.round(&self) => {}
                _ = stop.cancelled() => break,
            }
        }
        tracing::debug!(database = %self.database, "health monitor stopped");
    }
}

/// The monitor's private state.
struct Monitor {
    primary: Watched,
    replicas: Vec<Watched>,
    history: LsnHistory,
    login: ProbeLogin,
}

/// One member as the monitor tracks it.
struct Watched {
    member: Arc<Member>,
    /// `None` while its probe runs in a spawned task (or if that task was lost).
    prober: Option<Prober>,
    ban: Ban,
    /// The state this task last published; a different one in the member means the data path
    /// marked it down.
    published: State,
    /// Whether a wrong-role warning was logged and not yet resolved (log on change only).
    wrong_role: bool,
    gauges: Gauges,
}

struct Gauges {
    up: Gauge,
    latency: Gauge,
    /// Replicas only.
    lag: Option<(Gauge, Gauge)>,
}

impl Gauges {
    fn new(database: &str, member: &Member) -> Gauges {
        let labels = [
            ("database", database.to_owned()),
            ("member", member.name.clone()),
        ];
        Gauges {
            up: metrics::gauge!("lagoon_replica_up", &labels),
            latency: metrics::gauge!("lagoon_replica_latency_seconds", &labels),
            lag: (member.role == Role::Replica).then(|| {
                (
                    metrics::gauge!("lagoon_replica_lag_bytes", &labels),
                    metrics::gauge!("lagoon_replica_lag_seconds", &labels),
                )
            }),
        }
    }

    /// Unknown lag is exported as +Inf: "not usable", and alerts on a threshold fire.
    fn set(&self, member: &Member, now: Instant) {
        self.up.set(if member.usable_at(now) { 1.0 } else { 0.0 });
        self.latency.set(member.latency_estimate());
        if let Some((bytes, seconds)) = &self.lag {
            let unknown = |v: u64| v == u64::MAX;
            let b = member.lag_bytes();
            let ms = member.lag_ms();
            bytes.set(if unknown(b) { f64::INFINITY } else { b as f64 });
            seconds.set(if unknown(ms) {
                f64::INFINITY
            } else {
                ms as f64 / 1000.0
            });
        }
    }
}

impl Monitor {
    fn new(health: &Health, login: &ProbeLogin) -> Monitor {
        let watch = |member: &Arc<Member>| Watched {
            member: Arc::clone(member),
            prober: Some(Prober::new(&member.endpoint, login)),
            ban: Ban::new(health.down_after_failures, health.up_after_successes),
            published: State::Unknown,
            wrong_role: false,
            gauges: Gauges::new(&health.database, member),
        };
        Monitor {
            primary: watch(&health.primary),
            replicas: health.replicas.iter().map(watch).collect(),
            history: LsnHistory::default(),
            login: login.clone(),
        }
    }

    /// One round: the primary, then every replica concurrently; then lag and gauges.
    async fn round(&mut self, health: &Health) {
        let timeout = health.interval;
        let primary_result = match self.primary.prober.as_mut() {
            Some(p) => p.probe(timeout).await,
            None => Err(ProbeError::Connect("prober lost".to_owned())),
        };
        if let Some(reading) = self.primary.apply(&health.database, primary_result) {
            let sample = Sample {
                at: reading.sent_at,
                lsn: reading.lsn,
            };
            self.history.push(sample);
            health.set_primary_lsn(reading.lsn, reading.sent_at);
        }

        let mut probes = JoinSet::new();
        for (i, w) in self.replicas.iter_mut().enumerate() {
            let mut prober = w
                .prober
                .take()
                .unwrap_or_else(|| Prober::new(&w.member.endpoint, &self.login));
            probes.spawn(async move {
                let result = prober.probe(timeout).await;
                (i, prober, result)
            });
        }
        while let Some(joined) = probes.join_next().await {
            // A panicked probe task loses its prober; the next round makes a new one.
            let Ok((i, prober, result)) = joined else {
                continue;
            };
            let Some(w) = self.replicas.get_mut(i) else {
                continue;
            };
            w.prober = Some(prober);
            if let Some(reading) = w.apply(&health.database, result) {
                let lag = self.history.lag(Sample {
                    at: reading.sent_at,
                    lsn: reading.lsn,
                });
                w.member.set_lag(lag.bytes, lag.time);
            }
        }

        let now = Instant::now();
        for w in std::iter::once(&self.primary).chain(&self.replicas) {
            w.gauges.set(&w.member, now);
        }
        health.count_round();
    }
}

impl Watched {
    /// Applies one probe result: role check, hysteresis, publish. Returns the reading when
    /// the member answered in its expected role (its LSN is then worth using).
    fn apply(&mut self, database: &str, result: Result<Reading, ProbeError>) -> Option<Reading> {
        let m = Arc::clone(&self.member);
        let seen = m.state();
        if seen != self.published {
            // The data path marked it down since our last publish.
            self.ban.force_down();
            self.published = seen;
        }
        let finished = Instant::now();
        let (change, good, cause) = match result {
            Ok(reading) if reading.in_recovery == (m.role == Role::Replica) => {
                if self.wrong_role {
                    self.wrong_role = false;
                    tracing::info!(database, member = %m.name, addr = %m.addr,
                        "member answers in its configured role again");
                }
                m.record_ok(reading.lsn, reading.sent_at, reading.rtt);
                m.record_probe(finished, None);
                (
                    self.ban.success(),
                    Some(reading),
                    "probes answer".to_owned(),
                )
            }
            Ok(reading) => {
                let cause = if m.role == Role::Replica {
                    "configured as a replica but not in recovery (promoted?): no reads go to it"
                } else {
                    "configured as the primary but in recovery (a standby): no writes go to it"
                };
                if !self.wrong_role {
                    self.wrong_role = true;
                    tracing::warn!(database, member = %m.name, addr = %m.addr,
                        lsn = %super::lsn::format(reading.lsn), "{cause}");
                }
                m.record_probe(finished, Some(cause.to_owned()));
                (self.ban.force_down(), None, cause.to_owned())
            }
            Err(e) => {
                let cause = e.to_string();
                tracing::debug!(database, member = %m.name, addr = %m.addr, error = %cause,
                    "probe failed");
                m.record_probe(finished, Some(cause.clone()));
                (self.ban.failure(), None, cause)
            }
        };
        let state = self.ban.state();
        if m.publish_state(self.published, state) {
            self.published = state;
        } else {
            // Marked down while we worked: that wins; count from there.
            self.ban.force_down();
            self.published = State::Down;
        }
        match change {
            Some(State::Up) => tracing::info!(database, member = %m.name, addr = %m.addr,
                cause, "member up"),
            Some(State::Down) => tracing::warn!(database, member = %m.name, addr = %m.addr,
                cause, "member down"),
            _ => {}
        }
        good
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::health::test_support;

    fn reading(in_recovery: bool, lsn: u64) -> Result<Reading, ProbeError> {
        Ok(Reading {
            in_recovery,
            lsn,
            sent_at: Instant::now(),
            rtt: Duration::from_millis(1),
        })
    }

    fn watched(health: &Health, member: &Arc<Member>) -> Watched {
        let login = ProbeLogin {
            user: "u".to_owned(),
            password: None,
        };
        Watched {
            member: Arc::clone(member),
            prober: Some(Prober::new(&member.endpoint, &login)),
            ban: Ban::new(health.down_after_failures, health.up_after_successes),
            published: State::Unknown,
            wrong_role: false,
            gauges: Gauges::new(&health.database, member),
        }
    }

    #[test]
    fn first_good_probe_makes_a_member_usable() {
        let h = test_support::health(1);
        let mut w = watched(&h, &h.replicas[0]);
        assert!(!h.replicas[0].usable());
        assert!(w.apply("db", reading(true, 100)).is_some());
        assert!(h.replicas[0].usable());
        assert_eq!(h.replicas[0].lsn(), 100);
    }

    #[test]
    fn failures_ban_after_the_threshold() {
        let h = test_support::health(1); // down after 2, up after 3
        let m = &h.replicas[0];
        let mut w = watched(&h, m);
        w.apply("db", reading(true, 1));
        w.apply("db", Err(ProbeError::Timeout(Duration::from_millis(250))));
        assert!(m.usable(), "one failure is tolerated");
        w.apply("db", Err(ProbeError::Timeout(Duration::from_millis(250))));
        assert!(!m.usable());
        assert_eq!(m.state(), State::Down);
        assert!(
            m.report(Instant::now())
                .last_error
                .is_some_and(|e| e.contains("no answer"))
        );
        for _ in 0..2 {
            w.apply("db", reading(true, 1));
            assert!(!m.usable(), "hysteresis");
        }
        w.apply("db", reading(true, 1));
        assert!(m.usable());
    }

    #[test]
    fn a_promoted_replica_is_down_at_once_and_its_lsn_not_used() {
        let h = test_support::health(1);
        let m = &h.replicas[0];
        let mut w = watched(&h, m);
        w.apply("db", reading(true, 1));
        assert!(w.apply("db", reading(false, 999)).is_none());
        assert!(!m.usable());
        assert_eq!(m.lsn(), 1);
        assert!(
            m.report(Instant::now())
                .last_error
                .is_some_and(|e| e.contains("promoted"))
        );
    }

    #[test]
    fn a_primary_in_recovery_is_down() {
        let h = test_support::health(0);
        let mut w = watched(&h, &h.primary);
        w.apply("db", reading(false, 1));
        assert!(h.primary.usable());
        w.apply("db", reading(true, 1));
        assert!(!h.primary.usable());
    }

    #[test]
    fn mark_down_from_the_data_path_needs_the_full_hysteresis_to_return() {
        let h = test_support::health(1);
        let m = &h.replicas[0];
        let mut w = watched(&h, m);
        w.apply("db", reading(true, 1));
        m.mark_down("connection refused");
        assert!(!m.usable());
        w.apply("db", reading(true, 1));
        assert!(!m.usable(), "a good probe does not undo mark_down");
        w.apply("db", reading(true, 1));
        w.apply("db", reading(true, 1));
        assert!(m.usable(), "back after up_after_successes");
    }
}
