//! How far behind the primary a replica is, in bytes and in time, from the primary's LSN
//! history: a bounded ring of (when probed, insert LSN) samples.
//!
//! Lag in time is "how old is the newest primary state the replica has not replayed yet",
//! read off the history: when was the primary last no further than the replica is now. That
//! stays 0 on an idle primary with a caught-up replica, however long nothing is written, and
//! grows with wall time when replay stops while the primary writes. Postgres's own
//! `now() - pg_last_xact_replay_timestamp()` instead grows on an idle primary (no new commits
//! to replay) and would ban every healthy replica of a quiet database.
//!
//! Sans-IO: times are `Instant`s handed in, so tests build synthetic timelines. Owned by the
//! monitor task alone; the results are published to the members' atomics.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::lsn;

/// Primary samples kept: 1024 at the default 250 ms interval is about 4 minutes, far past any
/// sane `max_lag_ms`; older lag is reported as "at least the history's age".
pub const HISTORY: usize = 1024;

/// One probe reading: the LSN a server reported and when the probe query was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at: Instant,
    pub lsn: u64,
}

/// A replica's lag; `None` parts are unknown (no primary sample to compare with yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    pub bytes: Option<u64>,
    pub time: Option<Duration>,
}

/// The primary's recent insert LSNs, oldest first, at most `cap`.
#[derive(Debug, Clone)]
pub struct LsnHistory {
    samples: VecDeque<Sample>,
    cap: usize,
}

impl Default for LsnHistory {
    fn default() -> Self {
        LsnHistory::new(HISTORY)
    }
}

impl LsnHistory {
    pub fn new(cap: usize) -> LsnHistory {
        let cap = cap.max(1);
        LsnHistory {
            samples: VecDeque::with_capacity(cap),
            cap,
        }
    }

    /// Records a primary sample. Samples are expected in time order; an LSN lower than the
    /// previous one means a different server or timeline answered (failover, restore), and the
    /// old history says nothing about it, so it is dropped.
    pub fn push(&mut self, sample: Sample) {
        if let Some(last) = self.samples.back() {
            if sample.lsn < last.lsn || sample.at < last.at {
                self.samples.clear();
            }
        }
        if self.samples.len() == self.cap {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The newest sample.
    pub fn latest(&self) -> Option<Sample> {
        self.samples.back().copied()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The lag of a replica that reported replay position `replica.lsn` at `replica.at`.
    ///
    /// - bytes: the newest primary LSN minus the replay LSN, 0 when [`lsn::reached`].
    /// - time, looking only at primary samples taken at or before the replica's:
    ///   0 if the replica has reached the newest of them (it has everything the primary had
    ///   when it was asked); else the replica's sample time minus the time of the newest
    ///   primary sample it has reached (the primary was no further than the replica then, and
    ///   moved on after it; this errs high by at most one probe interval, the safe side for
    ///   `max_lag_ms`); if it has reached none of them, at least the age of the oldest.
    ///   Unknown when there is no primary sample from before the replica's.
    pub fn lag(&self, replica: Sample) -> Lag {
        let bytes = self.latest().map(|p| {
            if lsn::reached(replica.lsn, p.lsn) {
                0
            } else {
                p.lsn - replica.lsn
            }
        });
        let mut before = self.samples.iter().rev().filter(|p| p.at <= replica.at);
        let time = match before.next() {
            None => None,
            Some(p) if lsn::reached(replica.lsn, p.lsn) => Some(Duration::ZERO),
            Some(newest) => {
                let mut oldest = *newest;
                let mut reached_at = None;
                for p in before {
                    if lsn::reached(replica.lsn, p.lsn) {
                        reached_at = Some(p.at);
                        break;
                    }
                    oldest = *p;
                }
                let since = reached_at.unwrap_or(oldest.at);
                Some(replica.at.saturating_duration_since(since))
            }
        };
        Lag { bytes, time }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(250);

    fn at(t0: Instant, ticks: u32) -> Instant {
        t0 + TICK * ticks
    }

    fn s(at: Instant, lsn: u64) -> Sample {
        Sample { at, lsn }
    }

    #[test]
    fn unknown_without_primary_samples() {
        let h = LsnHistory::default();
        let t0 = Instant::now();
        let lag = h.lag(s(t0, 100));
        assert_eq!(
            lag,
            Lag {
                bytes: None,
                time: None
            }
        );
    }

    #[test]
    fn idle_primary_and_caught_up_replica_is_zero_forever() {
        let t0 = Instant::now();
        let mut h = LsnHistory::new(16);
        for tick in 0..10_000 {
            h.push(s(at(t0, tick), 0x300_0148));
            // The replica is probed a moment after the primary, every round.
            let lag = h.lag(s(at(t0, tick) + Duration::from_millis(3), 0x300_0148));
            assert_eq!(lag.bytes, Some(0));
            assert_eq!(lag.time, Some(Duration::ZERO), "tick {tick}");
        }
        assert_eq!(h.len(), 16, "bounded");
    }

    #[test]
    fn idle_primary_at_a_page_header_is_still_zero() {
        // The last record ended at a page end: insert LSN is past the next page's header,
        // the replica's replay LSN is the boundary.
        let t0 = Instant::now();
        let boundary = 0x5000_0000;
        let mut h = LsnHistory::new(8);
        for tick in 0..100 {
            h.push(s(at(t0, tick), boundary + 24));
        }
        let lag = h.lag(s(at(t0, 100), boundary));
        assert_eq!(lag.bytes, Some(0));
        assert_eq!(lag.time, Some(Duration::ZERO));
    }

    #[test]
    fn paused_replay_with_a_writing_primary_grows_with_wall_time() {
        let t0 = Instant::now();
        let mut h = LsnHistory::default();
        let replay = 1_000 + 4 * 100; // the primary was here at tick 4
        let mut previous = Duration::ZERO;
        for tick in 0..200u32 {
            h.push(s(at(t0, tick), 1_000 + u64::from(tick) * 100));
            if tick <= 4 {
                continue;
            }
            let lag = h.lag(s(at(t0, tick) + Duration::from_millis(1), replay));
            let want = TICK * (tick - 4) + Duration::from_millis(1);
            assert_eq!(lag.time, Some(want), "tick {tick}");
            assert_eq!(lag.bytes, Some(u64::from(tick - 4) * 100));
            assert!(lag.time.unwrap_or_default() > previous);
            previous = lag.time.unwrap_or_default();
        }
    }

    #[test]
    fn replica_between_two_samples_counts_from_the_older() {
        let t0 = Instant::now();
        let mut h = LsnHistory::default();
        h.push(s(at(t0, 0), 100));
        h.push(s(at(t0, 1), 200));
        h.push(s(at(t0, 2), 300));
        // Replayed 250: the primary was no further than that at tick 1, moved past it by 2.
        let lag = h.lag(s(at(t0, 2) + Duration::from_millis(5), 250));
        assert_eq!(lag.time, Some(TICK + Duration::from_millis(5)));
        assert_eq!(lag.bytes, Some(50));
    }

    #[test]
    fn caught_up_with_the_primary_as_of_its_own_sample_is_zero() {
        let t0 = Instant::now();
        let mut h = LsnHistory::default();
        h.push(s(at(t0, 0), 100));
        h.push(s(at(t0, 1), 200));
        // The replica was asked before the primary's newest sample and had all it had then:
        // no time lag, though bytes (against the newest) are not 0.
        h.push(s(at(t0, 3), 900));
        let lag = h.lag(s(at(t0, 2), 200));
        assert_eq!(lag.time, Some(Duration::ZERO));
        assert_eq!(lag.bytes, Some(700));
        // Ahead of the primary's sample (it kept writing): 0 bytes too.
        assert_eq!(h.lag(s(at(t0, 4), 950)).bytes, Some(0));
    }

    #[test]
    fn history_too_short_gives_at_least_its_age() {
        let t0 = Instant::now();
        let mut h = LsnHistory::new(4);
        for tick in 0..10u32 {
            h.push(s(at(t0, tick), 1_000 + u64::from(tick)));
        }
        // Replica at 500: behind every sample kept (ticks 6..=9).
        let lag = h.lag(s(at(t0, 10), 500));
        assert_eq!(lag.time, Some(TICK * 4));
        assert_eq!(lag.bytes, Some(509));
    }

    #[test]
    fn replica_sampled_before_any_primary_sample_is_unknown_time() {
        let t0 = Instant::now();
        let mut h = LsnHistory::default();
        h.push(s(at(t0, 5), 100));
        let lag = h.lag(s(at(t0, 4), 100));
        assert_eq!(lag.time, None);
        assert_eq!(lag.bytes, Some(0));
    }

    #[test]
    fn lsn_going_backwards_starts_a_new_history() {
        let t0 = Instant::now();
        let mut h = LsnHistory::default();
        h.push(s(at(t0, 0), 5_000));
        h.push(s(at(t0, 1), 6_000));
        h.push(s(at(t0, 2), 10)); // another server answered
        assert_eq!(h.len(), 1);
        assert_eq!(h.latest(), Some(s(at(t0, 2), 10)));
    }
}
