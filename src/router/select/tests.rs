//! Replica choice against staged member states (no Postgres).

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::config::RoutingConfig;
use crate::health::test_support::{Staged, health, now, stage};

const ROUNDS: usize = 2000;

fn limits(strategy: RoutingStrategy) -> Limits {
    Limits {
        strategy,
        ..Limits::from_config(&RoutingConfig::default())
    }
}

const ALL: [RoutingStrategy; 4] = [
    RoutingStrategy::Latency,
    RoutingStrategy::RoundRobin,
    RoutingStrategy::Random,
    RoutingStrategy::LeastOutstanding,
];

/// How often each target was picked in `ROUNDS` selections.
fn histogram(
    h: &Health,
    l: &Limits,
    min_lsn: Option<u64>,
    exclude: Option<usize>,
) -> HashMap<Option<Target>, usize> {
    let mut counts = HashMap::new();
    for _ in 0..ROUNDS {
        *counts
            .entry(select_at(h, l, min_lsn, exclude, now(h)))
            .or_default() += 1;
    }
    counts
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn limits_come_from_the_config() {
    let r = RoutingConfig {
        strategy: RoutingStrategy::Random,
        max_lag_bytes: 7,
        max_lag_ms: 9,
        primary_reads: true,
        ..RoutingConfig::default()
    };
    assert_eq!(
        Limits::from_config(&r),
        Limits {
            strategy: RoutingStrategy::Random,
            max_lag_bytes: 7,
            max_lag_ms: 9,
            primary_reads: true
        }
    );
}

#[test]
fn nothing_eligible_is_none() {
    let h = health(2);
    for s in ALL {
        assert_eq!(select_at(&h, &limits(s), None, None, now(&h)), None, "{s}");
    }
    // The primary is not a read candidate unless primary_reads.
    stage(&h, &h.primary, Staged::default());
    assert_eq!(
        select_at(&h, &limits(RoutingStrategy::Latency), None, None, now(&h)),
        None
    );
}

#[test]
fn down_stale_or_lagging_replicas_are_never_chosen() {
    let h = health(5);
    let d = RoutingConfig::default();
    stage(
        &h,
        &h.replicas[0],
        Staged {
            up: false,
            ..Staged::default()
        },
    );
    stage(
        &h,
        &h.replicas[1],
        Staged {
            probe_age: ms(800),
            ..Staged::default()
        },
    );
    stage(
        &h,
        &h.replicas[2],
        Staged {
            lag_bytes: d.max_lag_bytes + 1,
            ..Staged::default()
        },
    );
    stage(
        &h,
        &h.replicas[3],
        Staged {
            lag_ms: d.max_lag_ms + 1,
            ..Staged::default()
        },
    );
    // At the limits is still eligible; it is also the slowest, so latency must still pick it
    // when it is the only one.
    stage(
        &h,
        &h.replicas[4],
        Staged {
            lag_bytes: d.max_lag_bytes,
            lag_ms: d.max_lag_ms,
            latency: ms(500),
            ..Staged::default()
        },
    );
    for s in ALL {
        let counts = histogram(&h, &limits(s), None, None);
        assert_eq!(counts.len(), 1, "{s}: {counts:?}");
        assert_eq!(counts.get(&Some(Target::Replica(4))), Some(&ROUNDS), "{s}");
    }
}

#[test]
fn unknown_lag_is_not_eligible() {
    let h = health(1);
    let m = &h.replicas[0];
    stage(&h, m, Staged::default());
    m.set_lag(None, Some(Duration::ZERO));
    assert_eq!(
        select_at(&h, &limits(RoutingStrategy::Random), None, None, now(&h)),
        None
    );
    m.set_lag(Some(0), None);
    assert_eq!(
        select_at(&h, &limits(RoutingStrategy::Random), None, None, now(&h)),
        None
    );
}

#[test]
fn latency_prefers_the_fast_replica_but_spreads_among_equal_ones() {
    let h = health(3);
    stage(
        &h,
        &h.replicas[0],
        Staged {
            latency: ms(40),
            ..Staged::default()
        },
    );
    stage(
        &h,
        &h.replicas[1],
        Staged {
            latency: ms(1),
            ..Staged::default()
        },
    );
    stage(
        &h,
        &h.replicas[2],
        Staged {
            latency: ms(1),
            ..Staged::default()
        },
    );
    let counts = histogram(&h, &limits(RoutingStrategy::Latency), None, None);
    let slow = counts.get(&Some(Target::Replica(0))).copied().unwrap_or(0);
    let fast1 = counts.get(&Some(Target::Replica(1))).copied().unwrap_or(0);
    let fast2 = counts.get(&Some(Target::Replica(2))).copied().unwrap_or(0);
    // Power of two choices: the slow one only wins when drawn twice, which it cannot be.
    assert!(slow <= ROUNDS / 10, "{counts:?}");
    // The two equal ones share (each about half; far from all-or-nothing).
    assert!(fast1 > ROUNDS / 4 && fast2 > ROUNDS / 4, "{counts:?}");

    // Two candidates: both compared, the cheaper always wins.
    let two = health(2);
    stage(
        &two,
        &two.replicas[0],
        Staged {
            latency: ms(40),
            ..Staged::default()
        },
    );
    stage(
        &two,
        &two.replicas[1],
        Staged {
            latency: ms(1),
            ..Staged::default()
        },
    );
    let counts = histogram(&two, &limits(RoutingStrategy::Latency), None, None);
    assert!(counts.get(&Some(Target::Replica(1))).copied().unwrap_or(0) >= ROUNDS * 9 / 10);
}

#[test]
fn latency_counts_requests_in_flight() {
    let h = health(2);
    stage(
        &h,
        &h.replicas[0],
        Staged {
            latency: ms(10),
            ..Staged::default()
        },
    );
    stage(
        &h,
        &h.replicas[1],
        Staged {
            latency: ms(15),
            ..Staged::default()
        },
    );
    let l = limits(RoutingStrategy::Latency);
    assert_eq!(
        select_at(&h, &l, None, None, now(&h)),
        Some(Target::Replica(0))
    );
    let _busy = h.replicas[0].start_request(); // 10 ms x 2 > 15 ms x 1
    assert_eq!(
        select_at(&h, &l, None, None, now(&h)),
        Some(Target::Replica(1))
    );
}

#[test]
fn round_robin_takes_turns() {
    let h = health(3);
    for m in &h.replicas {
        stage(&h, m, Staged::default());
    }
    let l = limits(RoutingStrategy::RoundRobin);
    let picks: Vec<_> = (0..6)
        .map(|_| select_at(&h, &l, None, None, now(&h)))
        .collect();
    for w in picks.windows(3) {
        assert_ne!(w[0], w[1]);
        assert_ne!(w[0], w[2]);
    }
    assert_eq!(picks[0], picks[3]);
}

#[test]
fn random_spreads_uniformly() {
    let h = health(4);
    for m in &h.replicas {
        stage(
            &h,
            m,
            Staged {
                latency: ms(1),
                ..Staged::default()
            },
        );
    }
    // Very different latencies must not matter to `random`.
    stage(
        &h,
        &h.replicas[3],
        Staged {
            latency: ms(900),
            ..Staged::default()
        },
    );
    let counts = histogram(&h, &limits(RoutingStrategy::Random), None, None);
    for i in 0..4 {
        let n = counts.get(&Some(Target::Replica(i))).copied().unwrap_or(0);
        assert!(n > ROUNDS / 8, "replica {i}: {counts:?}");
    }
}

#[test]
fn least_outstanding_picks_the_least_busy_and_spreads_ties() {
    let h = health(3);
    for m in &h.replicas {
        stage(&h, m, Staged::default());
    }
    let _a = h.replicas[0].start_request();
    let _b = h.replicas[0].start_request();
    let _c = h.replicas[1].start_request();
    let l = limits(RoutingStrategy::LeastOutstanding);
    assert_eq!(
        select_at(&h, &l, None, None, now(&h)),
        Some(Target::Replica(2))
    );
    let _d = h.replicas[2].start_request(); // now 2, 1, 1
    let counts = histogram(&h, &l, None, None);
    assert_eq!(counts.get(&Some(Target::Replica(0))), None, "{counts:?}");
    for i in [1, 2] {
        assert!(counts.get(&Some(Target::Replica(i))).copied().unwrap_or(0) > ROUNDS / 4);
    }
}

#[test]
fn exclude_skips_that_replica() {
    let h = health(2);
    for m in &h.replicas {
        stage(&h, m, Staged::default());
    }
    for s in ALL {
        let counts = histogram(&h, &limits(s), None, Some(0));
        assert_eq!(counts.len(), 1, "{s}: {counts:?}");
        assert!(counts.contains_key(&Some(Target::Replica(1))), "{s}");
        assert_eq!(
            select_at(&health(1), &limits(s), None, Some(0), now(&h)),
            None,
            "{s}: the only replica excluded"
        );
    }
}

#[test]
fn min_lsn_keeps_reads_on_replicas_that_have_the_write() {
    let h = health(2);
    stage(
        &h,
        &h.replicas[0],
        Staged {
            lsn: 500,
            ..Staged::default()
        },
    );
    stage(
        &h,
        &h.replicas[1],
        Staged {
            lsn: 900,
            ..Staged::default()
        },
    );
    for s in ALL {
        let l = limits(s);
        let counts = histogram(&h, &l, Some(600), None);
        assert_eq!(counts.len(), 1, "{s}: {counts:?}");
        assert!(counts.contains_key(&Some(Target::Replica(1))));
        assert_eq!(select_at(&h, &l, Some(901), None, now(&h)), None, "{s}");
        assert!(select_at(&h, &l, Some(500), None, now(&h)).is_some());
    }
    // The page-header rule: a replica at a page boundary has an insert LSN just past it.
    let b = health(1);
    stage(
        &b,
        &b.replicas[0],
        Staged {
            lsn: 8192 * 4,
            ..Staged::default()
        },
    );
    let l = limits(RoutingStrategy::Latency);
    assert_eq!(
        select_at(&b, &l, Some(8192 * 4 + 24), None, now(&b)),
        Some(Target::Replica(0))
    );
}

#[test]
fn primary_reads_adds_the_primary_as_a_candidate() {
    let h = health(1);
    stage(&h, &h.primary, Staged::default());
    stage(&h, &h.replicas[0], Staged::default());
    let l = Limits {
        primary_reads: true,
        ..limits(RoutingStrategy::RoundRobin)
    };
    let counts = histogram(&h, &l, None, None);
    assert_eq!(counts.get(&Some(Target::Primary)), Some(&(ROUNDS / 2)));
    assert_eq!(counts.get(&Some(Target::Replica(0))), Some(&(ROUNDS / 2)));
    // The primary has every write: read-your-writes does not exclude it.
    stage(
        &h,
        &h.replicas[0],
        Staged {
            lsn: 1,
            ..Staged::default()
        },
    );
    assert_eq!(
        select_at(&h, &l, Some(5_000), None, now(&h)),
        Some(Target::Primary)
    );
    // A down primary is not a candidate.
    h.primary.mark_down("refused");
    assert_eq!(select_at(&h, &l, Some(5_000), None, now(&h)), None);
}

#[test]
fn many_replicas_spill_past_the_inline_buffer() {
    let h = health(INLINE + 4);
    for m in &h.replicas {
        stage(&h, m, Staged::default());
    }
    let l = limits(RoutingStrategy::RoundRobin);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..(INLINE + 4) {
        seen.insert(select_at(&h, &l, None, None, now(&h)));
    }
    assert_eq!(seen.len(), INLINE + 4);
}
