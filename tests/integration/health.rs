//! The health monitor against the real cluster: every member comes up, replicas' lag is
//! measured and stays at 0 on an idle primary, the primary's insert LSN is one replicas reach
//! (read-your-writes relies on that), and probes say who they are in pg_stat_activity.
//!
//! Non-disruptive on purpose: other tests share this cluster at the same time, so nothing here
//! stops a server or pauses replay (the failure cases are tested elsewhere).

use std::sync::Arc;
use std::time::{Duration, Instant};

use lagoon::health::{Health, MemberState, Role, lsn, probe_login};
use tokio_util::sync::CancellationToken;

use super::harness::{DB, cluster, eventually, parse_config, replica_urls_toml};

/// Generous bound for the waits: the first probes include a SCRAM login, and the machine may
/// be busy with the rest of the suite.
const WAIT: Duration = Duration::from_secs(20);

/// A config with the test database on the cluster's primary and both replicas, probed as
/// the superuser (the first `[[users]]` entry with a password).
fn config() -> lagoon::config::Config {
    let c = cluster();
    let text = format!(
        r#"
[[users]]
name = "{user}"
password = "{password}"

[[databases]]
name = "{DB}"
primary = "{primary}"
replicas = [{replicas}]
"#,
        user = c.superuser,
        password = c.superuser_password,
        primary = c.url(&c.primary, DB),
        replicas = replica_urls_toml(c, DB),
    );
    parse_config(&text)
}

/// Waits for the monitor to finish `n` more rounds.
async fn rounds(health: &Arc<Health>, n: u64) {
    let target = health.rounds() + n;
    eventually(&format!("{n} more probe rounds"), WAIT, || {
        let h = Arc::clone(health);
        async move { h.rounds() >= target }
    })
    .await;
}

async fn psql_primary(sql: &'static str) -> String {
    tokio::task::spawn_blocking(move || {
        let c = cluster();
        c.psql(&c.primary, DB, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
    .await
    .expect("psql task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_sees_the_cluster_up_and_replicas_caught_up() {
    let config = config();
    let db = &config.databases[0];
    let health = Health::new(&config, db);
    let login = probe_login(&config, db).expect("a probe login");
    assert_eq!(login.user, cluster().superuser);
    let stop = CancellationToken::new();
    let _stop_on_panic = stop.clone().drop_guard();
    let task = tokio::spawn(Arc::clone(&health).run(login, stop.clone()));

    // Every member comes up, in its role.
    eventually("every member usable", WAIT, || {
        let h = Arc::clone(&health);
        async move { h.members().all(|m| m.usable()) }
    })
    .await;
    let report = health.report();
    eprintln!("{report:#?}");
    assert_eq!(report.len(), 3);
    assert_eq!(report[0].role, Role::Primary);
    assert_eq!(report[0].name, "primary");
    assert_eq!(
        (report[1].name.as_str(), report[2].name.as_str()),
        ("replica1", "replica2")
    );
    for r in &report {
        assert_eq!(r.state, MemberState::Up, "{}", r.name);
        assert!(r.lsn.is_some_and(|l| l > 0), "{}: {:?}", r.name, r.lsn);
        assert!(r.rtt_seconds.is_some_and(|s| s > 0.0), "{}", r.name);
        assert!(r.latency_seconds.is_some(), "{}", r.name);
        assert_eq!(r.last_error, None, "{}", r.name);
    }

    // Probe connections say who they are.
    let probes = psql_primary(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lagoon-health'",
    )
    .await;
    assert!(
        probes.trim().parse::<u32>().is_ok_and(|n| n >= 1),
        "{probes}"
    );

    // Once the replicas replayed everything, their lag in bytes is small (other tests may be
    // writing meanwhile, so not necessarily 0).
    tokio::task::spawn_blocking(|| {
        cluster()
            .wait_replicas_caught_up(WAIT)
            .unwrap_or_else(|e| panic!("replicas catch up: {e}"))
    })
    .await
    .expect("wait task");
    eventually("replica lag under 1 MiB", WAIT, || {
        let h = Arc::clone(&health);
        async move { h.replicas.iter().all(|r| r.lag_bytes() < 1 << 20) }
    })
    .await;

    // Read-your-writes: the primary's insert LSN from a probe sent after now is one every
    // replica reaches.
    let since = Instant::now();
    eventually("a primary probe after `since`", WAIT, || {
        let h = Arc::clone(&health);
        async move { h.primary_lsn_since(since).is_some() }
    })
    .await;
    let target = health.primary_lsn_since(since).expect("checked above");
    eventually(
        &format!("replicas to replay {}", lsn::format(target)),
        WAIT,
        || {
            let h = Arc::clone(&health);
            async move { h.replicas.iter().all(|r| lsn::reached(r.lsn(), target)) }
        },
    )
    .await;

    // Lag in time over several rounds. An idle primary (its insert LSN did not move) must
    // give exactly 0: that is what the LSN history buys over pg_last_xact_replay_timestamp().
    // When other tests write meanwhile, it must still stay within max_lag_ms.
    let primary_before = health.primary.lsn();
    let mut seen = Vec::new();
    for _ in 0..8 {
        rounds(&health, 1).await;
        for r in &health.replicas {
            assert!(r.usable(), "{} stays usable", r.name);
            seen.push((r.name.clone(), r.lag_ms(), r.lag_bytes()));
        }
    }
    let idle = health.primary.lsn() == primary_before;
    eprintln!("primary idle: {idle}; (replica, lag ms, lag bytes): {seen:?}");
    for (name, ms, bytes) in &seen {
        assert!(*ms <= config.routing.max_lag_ms, "{name}: {ms} ms");
        if idle {
            assert_eq!((*ms, *bytes), (0, 0), "{name} on an idle primary");
        }
    }

    stop.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("monitor stops when cancelled")
        .expect("monitor task");
}
