//! Read/write split (issue 4): which server answers what, replica health (lag, latency, down),
//! read-your-writes and failover, observed with `SELECT inet_server_port()` through the proxy.
//!
//! Everything here runs on the routing cluster (`routing_cluster()`, not the shared one) and
//! holds `routing_lock()` throughout, since tests pause replay, delay apply and stop servers.
//! Each disruption has a guard that undoes it on drop, also when the test fails. The
//! `harness_*` tests check those disruptions directly against Postgres, without the proxy.
//!
//! Tests print what they measured (shares, times) with `eprintln!`: run with `--nocapture`.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::delay::DelayProxy;
use crate::harness::*;

/// How long a test waits for routing to settle (probes every 250 ms, hysteresis of a few).
const SETTLE: Duration = Duration::from_secs(15);

// --- Disruption guards -----------------------------------------------------------------------

/// Superuser SQL on a routing cluster member from a `Drop` (blocking, never panics).
fn cleanup_sql(member: &str, sql: &str) {
    let c = routing_cluster();
    let result = match c.member(member) {
        Ok(m) => c.psql(m, "postgres", sql).map(drop),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        eprintln!("cleanup on {member} failed: {sql}: {e}");
    }
}

/// Replay paused on a replica (`pg_wal_replay_pause()`); resumed on drop.
struct ReplayPaused {
    member: &'static str,
    paused: bool,
}

impl ReplayPaused {
    /// Pauses replay and waits until the replica says it is paused.
    async fn pause(member: &'static str) -> ReplayPaused {
        routing_sql(member, "postgres", "SELECT pg_wal_replay_pause()").await;
        let guard = ReplayPaused {
            member,
            paused: true,
        };
        eventually(
            &format!("{member} to report replay paused"),
            Duration::from_secs(10),
            || async move {
                routing_sql(member, "postgres", "SELECT pg_get_wal_replay_pause_state()").await
                    == "paused"
            },
        )
        .await;
        guard
    }

    async fn resume(&mut self) {
        routing_sql(self.member, "postgres", "SELECT pg_wal_replay_resume()").await;
        self.paused = false;
    }
}

impl Drop for ReplayPaused {
    fn drop(&mut self) {
        if self.paused {
            cleanup_sql(self.member, "SELECT pg_wal_replay_resume()");
        }
    }
}

/// `recovery_min_apply_delay` set on replicas (ALTER SYSTEM + reload); reset on drop.
struct ApplyDelay {
    members: Vec<&'static str>,
}

impl ApplyDelay {
    /// Sets the delay on each member and waits until `SHOW` reports it.
    async fn set(members: &[&'static str], delay: &'static str) -> ApplyDelay {
        let guard = ApplyDelay {
            members: members.to_vec(),
        };
        for &m in members {
            // Separate calls: ALTER SYSTEM cannot run in psql -c's implicit transaction.
            routing_sql(
                m,
                "postgres",
                &format!("ALTER SYSTEM SET recovery_min_apply_delay = '{delay}'"),
            )
            .await;
            routing_sql(m, "postgres", "SELECT pg_reload_conf()").await;
            eventually(
                &format!("{m} to show recovery_min_apply_delay = {delay}"),
                Duration::from_secs(10),
                || async move {
                    routing_sql(m, "postgres", "SHOW recovery_min_apply_delay").await == delay
                },
            )
            .await;
        }
        guard
    }
}

impl Drop for ApplyDelay {
    fn drop(&mut self) {
        for m in &self.members {
            cleanup_sql(m, "ALTER SYSTEM RESET recovery_min_apply_delay");
            cleanup_sql(m, "SELECT pg_reload_conf()");
        }
    }
}

/// A stopped routing cluster member; started again on drop (and, for the primary, waited on
/// until the replicas stream from it again).
struct MemberDown {
    member: &'static str,
    down: bool,
}

impl MemberDown {
    /// Stops the member (`pg_ctl stop -m fast`, waited on); returns the guard and how long
    /// stopping took.
    async fn stop(member: &'static str) -> (MemberDown, Duration) {
        let t = Instant::now();
        let guard = MemberDown { member, down: true };
        tokio::task::spawn_blocking(move || {
            routing_cluster()
                .stop_member(member)
                .map_err(|e| e.to_string())
        })
        .await
        .expect("stop_member panicked")
        .unwrap_or_else(|e| panic!("stop {member}: {e}"));
        (guard, t.elapsed())
    }

    /// Starts it again and waits until both replicas stream (from the primary, if that was
    /// the one stopped); returns how long that took.
    async fn start(&mut self) -> Duration {
        let t = Instant::now();
        let member = self.member;
        tokio::task::spawn_blocking(move || restart(member))
            .await
            .expect("start_member panicked")
            .unwrap_or_else(|e| panic!("start {member}: {e}"));
        self.down = false;
        t.elapsed()
    }
}

/// `start_member`, then `wait_streaming`.
fn restart(member: &str) -> Result<(), String> {
    let c = routing_cluster();
    c.start_member(member).map_err(|e| e.to_string())?;
    c.wait_streaming(Duration::from_secs(30))
        .map_err(|e| e.to_string())
}

impl Drop for MemberDown {
    fn drop(&mut self) {
        if self.down
            && let Err(e) = restart(self.member)
        {
            eprintln!("cleanup: restarting {} failed: {e}", self.member);
        }
    }
}

// --- Helpers ---------------------------------------------------------------------------------

/// The first column of the first row of a simple query.
async fn simple_value(client: &Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    let msgs = client.simple_query(sql).await?;
    Ok(msgs
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no row from {sql}")))
}

/// `simple_value` parsed as a port, panicking on error.
async fn port_of(client: &Client, sql: &str) -> u16 {
    let v = simple_value(client, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    v.parse()
        .unwrap_or_else(|_| panic!("{sql}: not a port: {v:?}"))
}

/// Which port served each of `n` sequential reads.
async fn shares(client: &Client, n: usize) -> HashMap<u16, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        *seen.entry(served_by(client).await).or_insert(0) += 1;
    }
    seen
}

/// Waits until a plain read of `client` is served by a replica (health probes done).
async fn wait_replica_serving(client: &Client) {
    let replicas = replica_ports();
    eventually(
        &format!("a read served by a replica {replicas:?}"),
        SETTLE,
        || {
            let replicas = replicas.clone();
            async move { replicas.contains(&served_by(client).await) }
        },
    )
    .await;
}

/// Waits until `port` serves one of 20 sequential reads of `client`.
async fn wait_port_serving(client: &Client, port: u16, what: &str, timeout: Duration) {
    eventually(what, timeout, || async move {
        shares(client, 20).await.contains_key(&port)
    })
    .await;
}

/// `n` distinct ports nothing listens on (bound together, then released).
fn closed_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

/// A number no other run of these tests used (for marker rows).
fn unique() -> i32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    (nanos % 1_000_000_000) as i32 + 1
}

/// The routing cluster's replica ports as (replica1, replica2).
fn r1_r2() -> (u16, u16) {
    let p = replica_ports();
    (p[0], p[1])
}

// --- Harness checks (no proxy involved; these pass without routing) ---------------------------

#[tokio::test]
async fn harness_stop_and_start_members_of_the_routing_cluster() {
    let _lock = routing_lock().await;
    let (_, r2) = r1_r2();

    let (mut down, took) = MemberDown::stop("replica2").await;
    eprintln!("harness: replica2 stopped in {took:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", r2)).is_err(),
        "replica2 still accepts connections after stop_member"
    );
    let marker = unique();
    routing_sql(
        "primary",
        DB,
        &format!("INSERT INTO rt_items (v) VALUES ({marker})"),
    )
    .await;
    let took = down.start().await;
    eprintln!("harness: replica2 started and streaming again in {took:?}");
    assert_eq!(
        routing_sql("replica2", "postgres", "SELECT pg_is_in_recovery()").await,
        "t"
    );
    let count = format!("SELECT count(*) FROM rt_items WHERE v = {marker}");
    eventually(
        "replica2 to replay the write made while it was down",
        Duration::from_secs(20),
        || {
            let count = count.clone();
            async move { routing_sql("replica2", DB, &count).await == "1" }
        },
    )
    .await;

    // The primary: replicas keep serving reads while it is down and stream again after.
    let (mut down, took) = MemberDown::stop("primary").await;
    eprintln!("harness: primary stopped in {took:?}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", primary_port())).is_err());
    for r in ["replica1", "replica2"] {
        assert_eq!(routing_sql(r, DB, &count).await, "1", "{r} serves reads");
    }
    let took = down.start().await;
    eprintln!("harness: primary started, both replicas streaming again in {took:?}");
    let marker = unique();
    routing_sql(
        "primary",
        DB,
        &format!("INSERT INTO rt_items (v) VALUES ({marker})"),
    )
    .await;
    tokio::task::spawn_blocking(|| {
        routing_cluster()
            .wait_replicas_caught_up(Duration::from_secs(20))
            .expect("replicas catch up after the primary restarted")
    })
    .await
    .expect("wait panicked");
}

#[tokio::test]
async fn harness_pause_and_resume_replay_on_a_replica() {
    let _lock = routing_lock().await;
    let mut paused = ReplayPaused::pause("replica1").await;
    let before = routing_sql("replica1", "postgres", "SELECT pg_last_wal_replay_lsn()").await;
    let marker = unique();
    routing_sql(
        "primary",
        DB,
        &format!("INSERT INTO rt_items (v) VALUES ({marker})"),
    )
    .await;
    let target = tokio::task::spawn_blocking(|| {
        routing_cluster()
            .primary_flush_lsn()
            .map_err(|e| e.to_string())
    })
    .await
    .expect("primary_flush_lsn panicked")
    .expect("primary_flush_lsn");
    // Received but not replayed: the WAL arrives, replay stays put.
    let received = format!("SELECT pg_last_wal_receive_lsn() >= '{target}'::pg_lsn");
    eventually(
        "replica1 to receive the write",
        Duration::from_secs(10),
        || {
            let received = received.clone();
            async move { routing_sql("replica1", "postgres", &received).await == "t" }
        },
    )
    .await;
    let during = routing_sql("replica1", "postgres", "SELECT pg_last_wal_replay_lsn()").await;
    eprintln!("harness: replica1 paused: replay lsn {before} -> {during}, primary at {target}");
    assert_eq!(before, during, "replay moved while paused");
    let count = format!("SELECT count(*) FROM rt_items WHERE v = {marker}");
    assert_eq!(routing_sql("replica1", DB, &count).await, "0");

    paused.resume().await;
    let replayed = format!("SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn");
    eventually(
        "replica1 to replay after resume",
        Duration::from_secs(10),
        || {
            let replayed = replayed.clone();
            async move { routing_sql("replica1", "postgres", &replayed).await == "t" }
        },
    )
    .await;
    assert_eq!(routing_sql("replica1", DB, &count).await, "1");
}

#[tokio::test]
async fn harness_apply_delay_holds_back_replay() {
    let _lock = routing_lock().await;
    let _delay = ApplyDelay::set(&["replica1"], "2s").await;
    let tag = format!("harness-apply-{}", unique());
    routing_sql(
        "primary",
        DB,
        &format!("INSERT INTO rt_ryw (tag) VALUES ('{tag}')"),
    )
    .await;
    let t = Instant::now();
    let count = format!("SELECT count(*) FROM rt_ryw WHERE tag = '{tag}'");
    let c2 = count.clone();
    eventually("replica2 (no delay) to show the row", SETTLE, || {
        let c = c2.clone();
        async move { routing_sql("replica2", DB, &c).await == "1" }
    })
    .await;
    let on_replica2 = t.elapsed();
    assert_eq!(
        routing_sql("replica1", DB, &count).await,
        "0",
        "replica1 applied the commit before its 2 s apply delay ({on_replica2:?} after commit)"
    );
    eventually("replica1 to show the row", SETTLE, || {
        let c = count.clone();
        async move { routing_sql("replica1", DB, &c).await == "1" }
    })
    .await;
    let on_replica1 = t.elapsed();
    eprintln!(
        "harness: row visible on replica2 after {on_replica2:?}, on replica1 (apply delay 2s) \
         after {on_replica1:?}"
    );
    assert!(
        on_replica1 >= Duration::from_millis(1500),
        "apply delay not in effect: {on_replica1:?}"
    );
}

// --- Routing --------------------------------------------------------------------------------

/// The common start of a routing test: the routing lock, a proxy with the default routing
/// over both replicas, one client, and a read of that client already served by a replica.
struct Routed {
    _lock: tokio::sync::MutexGuard<'static, ()>,
    proxy: TestProxy,
    client: Client,
}

async fn routed() -> Routed {
    let lock = routing_lock().await;
    let proxy = start_proxy_with(&routing_config("", &[])).await;
    let client = proxy.connect().await;
    wait_replica_serving(&client).await;
    Routed {
        _lock: lock,
        proxy,
        client,
    }
}

#[tokio::test]
async fn reads_go_to_replicas_and_writes_to_the_primary() {
    let Routed {
        _lock,
        proxy: _proxy,
        client,
    } = routed().await;
    let replicas = replica_ports();
    let primary = primary_port();

    // Reads, simple and extended protocol (named and unnamed statements).
    for i in 0..20 {
        let msgs = client
            .simple_query("SELECT pg_is_in_recovery(), inet_server_port()")
            .await
            .expect("simple read");
        let row = msgs
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some((
                    r.get(0).unwrap_or("").to_owned(),
                    r.get(1).unwrap_or("").parse::<u16>().unwrap_or(0),
                )),
                _ => None,
            })
            .expect("a row");
        assert_eq!(
            row.0, "t",
            "simple read {i} ran on a server not in recovery"
        );
        assert!(replicas.contains(&row.1), "simple read {i} on {}", row.1);

        let row = client
            .query_one("SELECT pg_is_in_recovery(), inet_server_port()", &[])
            .await
            .expect("extended read");
        let port = row.get::<_, i32>(1) as u16;
        assert!(row.get::<_, bool>(0), "extended read {i} not on a standby");
        assert!(replicas.contains(&port), "extended read {i} on {port}");

        let row = client
            .query_typed_one("SELECT inet_server_port()", &[])
            .await
            .expect("unnamed-statement read");
        let port = row.get::<_, i32>(0) as u16;
        assert!(replicas.contains(&port), "unnamed read {i} on {port}");
    }

    // Writes, and statements that look like reads but are not: the primary.
    let writes = [
        "INSERT INTO rt_items (v) VALUES (1) RETURNING inet_server_port()",
        "UPDATE rt_items SET v = v WHERE v = 0 RETURNING inet_server_port()",
        "SELECT inet_server_port() FROM (SELECT nextval('rt_seq')) s",
        "SELECT inet_server_port() FROM rt_items WHERE v = 0 FOR UPDATE",
        "SELECT inet_server_port() FROM rt_items WHERE v = 0 FOR SHARE",
        "WITH x AS (INSERT INTO rt_items (v) VALUES (2) RETURNING 1) \
         SELECT inet_server_port() FROM x",
        "WITH x AS (DELETE FROM rt_items WHERE v = 2 RETURNING 1) \
         SELECT inet_server_port() FROM (SELECT count(*) FROM x) n",
    ];
    for sql in writes {
        assert_eq!(port_of(&client, sql).await, primary, "{sql}");
        let row = client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("extended {sql}: {e}"));
        assert_eq!(row.get::<_, i32>(0) as u16, primary, "extended {sql}");
    }
    // DDL runs (it could not on a replica).
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS rt_ddl (x int); DROP TABLE rt_ddl")
        .await
        .expect("DDL through the proxy");
    eprintln!(
        "routing: 60 reads on replicas {replicas:?}; {} write shapes on primary {primary}",
        writes.len()
    );
}

#[tokio::test]
async fn hints_and_session_route_override_the_classifier() {
    let Routed {
        _lock,
        proxy,
        client,
    } = routed().await;
    let replicas = replica_ports();
    let primary = primary_port();

    for _ in 0..10 {
        assert_eq!(
            port_of(&client, "/* lagoon:primary */ SELECT inet_server_port()").await,
            primary,
            "a read hinted lagoon:primary"
        );
        let p = port_of(&client, "/* lagoon:replica */ SELECT inet_server_port()").await;
        assert!(
            replicas.contains(&p),
            "a read hinted lagoon:replica ran on {p}"
        );
        let row = client
            .query_one("/* lagoon:primary */ SELECT inet_server_port()", &[])
            .await
            .expect("extended hinted read");
        assert_eq!(row.get::<_, i32>(0) as u16, primary, "extended hint");
    }

    for (route, on_replica) in [("primary", false), ("auto", true), ("replica", true)] {
        let set = format!("SET lagoon.route = {route}");
        client.simple_query(&set).await.expect(&set);
        for _ in 0..10 {
            let p = served_by(&client).await;
            let ok = if on_replica {
                replicas.contains(&p)
            } else {
                p == primary
            };
            assert!(ok, "route = {route}: read on {p}");
        }
    }
    // The quoted spelling, valid for any setting in Postgres's grammar (where the bare
    // `primary` is not: PRIMARY is a reserved word, so the proxy must take this SET itself).
    // Per session: another client of the same proxy is not affected by this one's setting.
    client
        .simple_query("SET lagoon.route = 'primary'")
        .await
        .expect("SET lagoon.route = 'primary'");
    let other = proxy.connect().await;
    let p = served_by(&other).await;
    assert!(replicas.contains(&p), "other session's read on {p}");
    assert_eq!(served_by(&client).await, primary);
}

#[tokio::test]
async fn read_only_transactions_may_use_a_replica_others_use_the_primary() {
    let Routed {
        _lock,
        proxy: _proxy,
        mut client,
    } = routed().await;
    let replicas = replica_ports();
    let primary = primary_port();

    for begin in ["BEGIN READ ONLY", "START TRANSACTION READ ONLY"] {
        client.simple_query(begin).await.expect(begin);
        let first = port_of(&client, "SELECT inet_server_port()").await;
        let pid1 = simple_value(&client, "SELECT pg_backend_pid()")
            .await
            .unwrap();
        let second = port_of(&client, "SELECT inet_server_port()").await;
        let pid2 = simple_value(&client, "SELECT pg_backend_pid()")
            .await
            .unwrap();
        client.simple_query("COMMIT").await.expect("COMMIT");
        assert!(replicas.contains(&first), "{begin}: ran on {first}");
        assert_eq!(
            (first, pid1),
            (second, pid2),
            "{begin}: moved servers mid-transaction"
        );
    }
    // tokio-postgres's read-only transaction (START TRANSACTION ... READ ONLY).
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .expect("read-only transaction");
    let p = tx
        .query_one("SELECT inet_server_port()", &[])
        .await
        .expect("read in read-only tx")
        .get::<_, i32>(0) as u16;
    tx.commit().await.expect("commit");
    assert!(
        replicas.contains(&p),
        "driver read-only transaction ran on {p}"
    );

    // A plain transaction may write later, so it starts on the primary, reads included.
    client.simple_query("BEGIN").await.expect("BEGIN");
    let p = port_of(&client, "SELECT inet_server_port()").await;
    client.simple_query("COMMIT").await.expect("COMMIT");
    assert_eq!(p, primary, "plain BEGIN");
    let tx = client.transaction().await.expect("driver transaction");
    let p = tx
        .query_one("SELECT inet_server_port()", &[])
        .await
        .expect("read in transaction")
        .get::<_, i32>(0) as u16;
    tx.rollback().await.expect("rollback");
    assert_eq!(p, primary, "driver transaction");
}

#[tokio::test]
async fn a_read_only_error_from_a_replica_is_retried_on_the_primary() {
    let Routed {
        _lock,
        proxy: _proxy,
        client,
    } = routed().await;
    let primary = primary_port();

    // rt_insert_marker looks like a read (a function call in a SELECT) but INSERTs: a replica
    // answers 25006, the proxy re-runs it on the primary once, the client sees the result.
    let m1 = unique();
    let got = port_of(&client, &format!("SELECT rt_insert_marker({m1})")).await;
    assert_eq!(got, primary, "simple protocol: answer from the primary");
    let m2 = m1.wrapping_add(1);
    let row = client
        .query_one(&format!("SELECT rt_insert_marker({m2})"), &[])
        .await
        .expect("extended protocol: retried, no error");
    assert_eq!(row.get::<_, i32>(0) as u16, primary);
    let m3 = m1.wrapping_add(2);
    let row = client
        .query_typed_one(&format!("SELECT rt_insert_marker({m3})"), &[])
        .await
        .expect("unnamed statement: retried, no error");
    assert_eq!(row.get::<_, i32>(0) as u16, primary);
    // Each ran exactly once where it could write.
    let counts = routing_sql(
        "primary",
        DB,
        &format!(
            "SELECT count(*) FILTER (WHERE v = {m1}) || ',' || count(*) FILTER (WHERE v = {m2}) \
             || ',' || count(*) FILTER (WHERE v = {m3}) FROM rt_items"
        ),
    )
    .await;
    assert_eq!(counts, "1,1,1", "rows written per call");
    // Plain reads still go to replicas afterwards (once they replayed this client's writes).
    wait_replica_serving(&client).await;
}

/// A client pinned to a replica (a session advisory lock taken there under `lagoon.route =
/// replica`) is never moved off it: a write it sends there fails with the replica's 25006, and
/// the lock, held by that server session, stays with the client instead of going back to the
/// pool with the server.
#[tokio::test]
async fn a_client_pinned_to_a_replica_is_not_moved_by_a_refused_write() {
    let Routed {
        _lock,
        proxy: _proxy,
        client,
    } = routed().await;
    let replicas = replica_ports();
    client
        .simple_query("SET lagoon.route = replica")
        .await
        .expect("SET lagoon.route");
    let key = unique();
    client
        .simple_query(&format!("SELECT pg_advisory_lock({key})"))
        .await
        .expect("advisory lock on a replica");
    let pinned_on = served_by(&client).await;
    assert!(replicas.contains(&pinned_on), "lock taken on {pinned_on}");
    let pid = simple_value(&client, "SELECT pg_backend_pid()")
        .await
        .unwrap();
    let err = client
        .simple_query(&format!("INSERT INTO rt_items (v) VALUES ({key})"))
        .await
        .expect_err("a write on the pinned replica must fail, not move");
    assert_eq!(sqlstate(&err).as_deref(), Some("25006"), "{err}");
    assert_eq!(served_by(&client).await, pinned_on, "still on its replica");
    assert_eq!(
        simple_value(&client, "SELECT pg_backend_pid()")
            .await
            .unwrap(),
        pid,
        "still on the same server session"
    );
    let held = simple_value(
        &client,
        &format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {key} \
             AND pid = pg_backend_pid()"
        ),
    )
    .await
    .unwrap();
    assert_eq!(held, "1", "the lock is still this client's");
    client
        .simple_query(&format!("SELECT pg_advisory_unlock({key})"))
        .await
        .expect("unlock");
}

#[tokio::test]
async fn no_eligible_replica_means_the_primary_or_57p03_as_configured() {
    let _lock = routing_lock().await;
    let primary = primary_port();
    let unreachable: Vec<String> = closed_ports(2).into_iter().map(member_url).collect();

    let proxy = start_proxy_with(&routing_config("no_replica = \"error\"", &unreachable)).await;
    let client = proxy.connect().await;
    eventually(
        "a read refused with 57P03 (no replica reachable)",
        SETTLE,
        || async {
            match try_served_by(&client).await {
                Err(e) => sqlstate(&e).as_deref() == Some("57P03"),
                Ok(_) => false,
            }
        },
    )
    .await;
    for i in 0..10 {
        let e = try_served_by(&client)
            .await
            .expect_err("no_replica = error: read must fail");
        assert_eq!(sqlstate(&e).as_deref(), Some("57P03"), "read {i}: {e}");
        if i == 0 {
            eprintln!("routing: no_replica = \"error\" read fails with: {e}");
        }
    }
    // Writes are unaffected.
    assert_eq!(
        port_of(
            &client,
            "INSERT INTO rt_items (v) VALUES (3) RETURNING inet_server_port()"
        )
        .await,
        primary
    );
    drop(client);
    drop(proxy);

    let proxy = start_proxy_with(&routing_config("no_replica = \"primary\"", &unreachable)).await;
    let client = proxy.connect().await;
    for i in 0..20 {
        let p = try_served_by(&client)
            .await
            .unwrap_or_else(|e| panic!("no_replica = primary: read {i} failed: {e}"));
        assert_eq!(p, primary, "no_replica = primary: read {i}");
    }
}

#[tokio::test]
async fn a_replica_with_paused_replay_is_skipped_until_it_catches_up() {
    let _lock = routing_lock().await;
    let proxy = start_proxy_with(&routing_config(
        "strategy = \"round_robin\"\nmax_lag_bytes = 1048576",
        &[],
    ))
    .await;
    let client = proxy.connect().await;
    let (r1, r2) = r1_r2();
    wait_port_serving(&client, r1, "replica1 serving", SETTLE).await;
    wait_port_serving(&client, r2, "replica2 serving", SETTLE).await;

    let mut paused = ReplayPaused::pause("replica1").await;
    let replay = routing_sql("replica1", "postgres", "SELECT pg_last_wal_replay_lsn()").await;
    routing_sql(
        "primary",
        DB,
        "TRUNCATE rt_bulk; \
         INSERT INTO rt_bulk SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g",
    )
    .await;
    let lag: u64 = routing_sql(
        "primary",
        "postgres",
        &format!("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '{replay}')::bigint"),
    )
    .await
    .parse()
    .expect("lag bytes");
    eprintln!("routing: replica1 paused, {lag} bytes behind (max_lag_bytes = 1048576)");
    assert!(
        lag > 2 * 1048576,
        "the test write made only {lag} bytes of WAL"
    );

    let t = Instant::now();
    eventually(
        "50 consecutive reads all on replica2 while replica1 lags",
        SETTLE,
        || async { shares(&client, 50).await.get(&r2) == Some(&50) },
    )
    .await;
    eprintln!(
        "routing: lagging replica1 dropped from reads after {:?}",
        t.elapsed()
    );
    // And it stays out while it lags.
    let s = shares(&client, 100).await;
    assert_eq!(s.get(&r2), Some(&100), "reads while replica1 lags: {s:?}");

    // What the monitor sees against what the primary itself reports for the paused replica.
    let report = |name: &str| {
        let h = proxy
            .shared
            .health
            .get(DB)
            .expect("health view of the test database");
        h.report()
            .into_iter()
            .find(|m| m.name == name)
            .expect("member in the report")
    };
    let before = report("replica1");
    let stat = routing_sql(
        "primary",
        "postgres",
        "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), replay_lsn)::bigint || ',' || \
         coalesce(extract(epoch FROM replay_lag)::text, 'null') \
         FROM pg_stat_replication WHERE application_name = 'replica1'",
    )
    .await;
    let after = report("replica1");
    eprintln!(
        "routing: replica1 lag, monitor: {:?} bytes / {:?} s (then {:?} / {:?}); \
         pg_stat_replication (bytes, replay_lag s): {stat}",
        before.lag_bytes, before.lag_seconds, after.lag_bytes, after.lag_seconds
    );
    let stat_bytes: u64 = stat
        .split(',')
        .next()
        .and_then(|b| b.parse().ok())
        .expect("pg_stat_replication row for replica1");
    let monitor_bytes = after.lag_bytes.expect("monitor knows replica1's lag");
    assert!(
        monitor_bytes >= 2 * 1048576 && monitor_bytes.abs_diff(stat_bytes) < 1048576,
        "monitor {monitor_bytes} bytes vs pg_stat_replication {stat_bytes}"
    );
    assert!(
        after.lag_seconds.is_some_and(|s| s > 0.0),
        "paused replay shows a lag in time: {:?}",
        after.lag_seconds
    );

    paused.resume().await;
    let t = Instant::now();
    wait_port_serving(&client, r1, "replica1 serving again after resume", SETTLE).await;
    eprintln!(
        "routing: replica1 serving again {:?} after resume",
        t.elapsed()
    );
}

#[tokio::test]
async fn latency_strategy_prefers_the_faster_replica() {
    let _lock = routing_lock().await;
    let (r1, r2) = r1_r2();
    let slow = DelayProxy::start(SocketAddr::from(([127, 0, 0, 1], r1)), 20).await;
    let proxy = start_proxy_with(&routing_config(
        "strategy = \"latency\"",
        &[member_url(slow.port()), member_url(r2)],
    ))
    .await;
    let client = proxy.connect().await;
    wait_replica_serving(&client).await;

    // Warm-up: let probes and observed queries shape the latency estimates.
    eventually(
        "50 reads with >= 90% on replica2 (replica1 is 20 ms slower each way)",
        SETTLE,
        || async {
            let s = shares(&client, 50).await;
            s.get(&r2).copied().unwrap_or(0) >= 45
        },
    )
    .await;
    let s = shares(&client, 200).await;
    let fast = s.get(&r2).copied().unwrap_or(0);
    eprintln!(
        "routing: latency strategy with +20 ms on replica1: replica2 served {fast}/200 ({:.0}%), \
         replica1 {}/200, others {:?}",
        fast as f64 / 2.0,
        s.get(&r1).copied().unwrap_or(0),
        s
    );
    assert!(
        fast >= 180,
        "replica2 served only {fast} of 200 reads: {s:?}"
    );

    slow.set_delay(0);
    let t = Instant::now();
    let last = Cell::new(HashMap::new());
    eventually(
        "both replicas serving >= 10% of 100 reads once the delay is gone",
        Duration::from_secs(30),
        || {
            let last = &last;
            let client = &client;
            async move {
                let s = shares(client, 100).await;
                let ok = s.get(&r1).copied().unwrap_or(0) >= 10
                    && s.get(&r2).copied().unwrap_or(0) >= 10;
                last.set(s);
                ok
            }
        },
    )
    .await;
    let s = last.take();
    eprintln!(
        "routing: delay removed: after {:?}, replica1 {} / replica2 {} of 100 reads",
        t.elapsed(),
        s.get(&r1).copied().unwrap_or(0),
        s.get(&r2).copied().unwrap_or(0)
    );
}

#[tokio::test]
async fn read_your_writes_holds_with_delayed_replicas() {
    let _lock = routing_lock().await;
    let _delay = ApplyDelay::set(&["replica1", "replica2"], "2s").await;
    let proxy = start_proxy_with(&routing_config("max_lag_ms = 60000", &[])).await;
    let writer = proxy.connect().await;
    let reader = proxy.connect().await;
    let replicas = replica_ports();
    let primary = primary_port();
    wait_replica_serving(&reader).await;

    let run = unique();
    let done = Cell::new(false);
    let writes = async {
        let mut found = 0;
        let mut read_ports: HashMap<u16, usize> = HashMap::new();
        for i in 0..100 {
            let tag = format!("ryw-{run}-{i}");
            let (count, port) = if i % 2 == 0 {
                writer
                    .simple_query(&format!("INSERT INTO rt_ryw (tag) VALUES ('{tag}')"))
                    .await
                    .expect("insert");
                let msgs = writer
                    .simple_query(&format!(
                        "SELECT count(*), inet_server_port() FROM rt_ryw WHERE tag = '{tag}'"
                    ))
                    .await
                    .expect("read back");
                msgs.iter()
                    .find_map(|m| match m {
                        SimpleQueryMessage::Row(r) => Some((
                            r.get(0).unwrap_or("0").parse::<i64>().unwrap_or(0),
                            r.get(1).unwrap_or("0").parse::<u16>().unwrap_or(0),
                        )),
                        _ => None,
                    })
                    .expect("a row")
            } else {
                writer
                    .execute("INSERT INTO rt_ryw (tag) VALUES ($1)", &[&tag])
                    .await
                    .expect("insert (extended)");
                let row = writer
                    .query_one(
                        "SELECT count(*), inet_server_port() FROM rt_ryw WHERE tag = $1",
                        &[&tag],
                    )
                    .await
                    .expect("read back (extended)");
                (row.get::<_, i64>(0), row.get::<_, i32>(1) as u16)
            };
            if count == 1 {
                found += 1;
            }
            *read_ports.entry(port).or_insert(0) += 1;
        }
        done.set(true);
        (found, read_ports)
    };
    let other_reads = async {
        let mut ports: HashMap<u16, usize> = HashMap::new();
        while !done.get() {
            *ports.entry(served_by(&reader).await).or_insert(0) += 1;
        }
        ports
    };
    let ((found, read_ports), others) = tokio::join!(writes, other_reads);
    eprintln!(
        "routing: read-your-writes with 2 s apply delay: {found}/100 reads found their row \
         (served by {read_ports:?}, primary {primary}); other client's {} reads served by \
         {others:?}",
        others.values().sum::<usize>()
    );
    assert_eq!(found, 100, "reads that found the row just written");
    assert!(!others.is_empty(), "the other client made no reads");
    assert!(
        others.keys().all(|p| replicas.contains(p)),
        "the other client's reads must stay on replicas {replicas:?}: {others:?}"
    );
}

/// What the read load saw: (when, port) of every read that succeeded, and every error.
#[derive(Default)]
struct LoadLog {
    reads: Vec<(Instant, u16)>,
    errors: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_replica_under_read_load_loses_no_read() {
    let _lock = routing_lock().await;
    let proxy = start_proxy_with(&routing_config("strategy = \"round_robin\"", &[])).await;
    let (r1, r2) = r1_r2();
    let probe = proxy.connect().await;
    wait_port_serving(&probe, r1, "replica1 serving", SETTLE).await;
    wait_port_serving(&probe, r2, "replica2 serving", SETTLE).await;

    let log = Arc::new(Mutex::new(LoadLog::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = proxy.connect().await;
        let (log, stop) = (Arc::clone(&log), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            // A read that takes a few ms, so some are in flight when the replica stops.
            let sql = "SELECT inet_server_port() FROM (SELECT count(*) FROM \
                       generate_series(1, 20000)) s";
            while !stop.load(Ordering::Relaxed) {
                let r = simple_value(&client, sql).await;
                let mut l = log.lock().unwrap();
                match r {
                    Ok(v) => l.reads.push((Instant::now(), v.parse().unwrap_or(0))),
                    Err(e) => l.errors.push(format!(
                        "{e} ({:?}): {:?}",
                        sqlstate(&e),
                        e.as_db_error().map(|d| d.message())
                    )),
                }
                if client.is_closed() {
                    // The proxy ended this client: its one error says why.
                    break;
                }
            }
        }));
    }
    let reads_since = |since: Instant, port: Option<u16>| {
        log.lock()
            .unwrap()
            .reads
            .iter()
            .filter(|(t, p)| *t > since && port.is_none_or(|want| *p == want))
            .count()
    };
    let t0 = Instant::now();
    eventually("load on both replicas", SETTLE, || async {
        reads_since(t0, Some(r1)) > 0 && reads_since(t0, Some(r2)) > 0
    })
    .await;

    let (mut down, took) = MemberDown::stop("replica1").await;
    let stopped_at = Instant::now();
    eprintln!("routing: replica1 stopped under load in {took:?}");
    // Keep it down while the load does 200 more reads.
    eventually("200 reads with replica1 down", SETTLE, || async {
        reads_since(stopped_at, None) >= 200
    })
    .await;
    let during = reads_since(stopped_at, None);
    let took = down.start().await;
    let started_at = Instant::now();
    eprintln!(
        "routing: replica1 restarted (streaming) in {took:?} after {during} reads without it"
    );
    eventually(
        "replica1 serving reads again after restart",
        SETTLE,
        || async { reads_since(started_at, Some(r1)) > 0 },
    )
    .await;
    let back_after = started_at.elapsed();

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task panicked");
    }
    let l = log.lock().unwrap();
    let mut per_port: HashMap<u16, usize> = HashMap::new();
    for (_, p) in &l.reads {
        *per_port.entry(*p).or_insert(0) += 1;
    }
    eprintln!(
        "routing: read load: {} reads ({per_port:?}), {} errors; replica1 back in use {back_after:?} \
         after its restart",
        l.reads.len(),
        l.errors.len()
    );
    assert!(
        l.errors.is_empty(),
        "{} reads failed while a replica stopped and started, first: {:?}",
        l.errors.len(),
        l.errors.iter().take(5).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn with_the_primary_down_writes_fail_fast_and_reads_go_on() {
    let _lock = routing_lock().await;
    let proxy = start_proxy_with(&routing_config("", &[])).await;
    let reader = proxy.connect().await;
    let mut writer = proxy.connect().await;
    let replicas = replica_ports();
    let primary = primary_port();
    wait_replica_serving(&reader).await;
    let insert = "INSERT INTO rt_items (v) VALUES (4) RETURNING inet_server_port()";
    assert_eq!(port_of(&writer, insert).await, primary);

    let (mut down, took) = MemberDown::stop("primary").await;
    eprintln!("routing: primary stopped in {took:?}");

    for attempt in 0..2 {
        let t = Instant::now();
        let r = simple_value(&writer, insert).await;
        let elapsed = t.elapsed();
        let e = r.expect_err("a write with the primary down must fail");
        eprintln!("routing: write {attempt} with the primary down failed in {elapsed:?}: {e}");
        assert_eq!(
            sqlstate(&e).as_deref(),
            Some("08006"),
            "write {attempt}: {e}"
        );
        assert!(
            elapsed < Duration::from_secs(2),
            "write {attempt} took {elapsed:?} to fail"
        );
        if writer.is_closed() {
            writer = proxy.connect().await;
        }
    }
    for i in 0..20 {
        let p = try_served_by(&reader)
            .await
            .unwrap_or_else(|e| panic!("read {i} with the primary down failed: {e}"));
        assert!(
            replicas.contains(&p),
            "read {i} with the primary down on {p}"
        );
    }

    let took = down.start().await;
    eprintln!("routing: primary back, replicas streaming, in {took:?}");
    let t = Instant::now();
    drop(writer);
    let proxy = &proxy;
    eventually(
        "a write succeeding after the primary is back",
        SETTLE,
        || async move {
            // A fresh client each time: the proxy may have closed the old one with its 08006.
            let w = proxy.connect().await;
            simple_value(&w, insert).await.is_ok()
        },
    )
    .await;
    eprintln!(
        "routing: writes work again {:?} after the restart",
        t.elapsed()
    );
    assert!(replicas.contains(&served_by(&reader).await));
}

// --- Review 4: session integration edge cases ------------------------------------------------

/// One protocol message.
fn wire_msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut b = vec![tag];
    b.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    b.extend_from_slice(body);
    b
}

/// A write pipelined behind a slow read the proxy sent to a replica (sent while the read is
/// still running, so it reaches the proxy while the replica is attached) must still run on
/// the primary: on a direct connection it simply succeeds.
#[tokio::test]
async fn a_write_pipelined_behind_a_replica_read_runs_on_the_primary() {
    use crate::faultkit::{Raw, first_error, first_value, query};
    let Routed {
        _lock,
        proxy,
        client: _client,
    } = routed().await;
    let primary = primary_port();

    let mut raw = Raw::login_trust(proxy.addr, TRUST_USER.0, DB).await;
    let m = unique();
    raw.send(&query("SELECT inet_server_port(), pg_sleep(0.5)"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    raw.send(&query(&format!(
        "INSERT INTO rt_items (v) VALUES ({m}) RETURNING inet_server_port()"
    )))
    .await
    .unwrap();
    let read = raw.read_until_ready().await.expect("read reply");
    eprintln!("read served by {:?}", first_value(&read));
    let write = raw.read_until_ready().await.expect("write reply");
    assert_eq!(first_error(&write), None, "the pipelined write failed");
    assert_eq!(
        first_value(&write).and_then(|p| p.parse::<u16>().ok()),
        Some(primary),
        "the pipelined write ran on the primary"
    );
}

/// A write pipelined behind a read the proxy sent to the primary (a `lagoon:primary` hint)
/// still counts for read-your-writes: the client's next read must see it, even though the
/// replicas apply WAL 2 s late.
#[tokio::test]
async fn a_write_pipelined_behind_a_primary_read_is_read_back() {
    use crate::faultkit::{Raw, first_error, first_value, query};
    let _lock = routing_lock().await;
    let _delay = ApplyDelay::set(&["replica1", "replica2"], "2s").await;
    let proxy = start_proxy_with(&routing_config("max_lag_ms = 60000", &[])).await;
    let client = proxy.connect().await;
    wait_replica_serving(&client).await;

    let mut raw = Raw::login_trust(proxy.addr, TRUST_USER.0, DB).await;
    let tag = format!("review4-pipe-{}", unique());
    raw.send(&query("/* lagoon:primary */ SELECT pg_sleep(0.5)"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    raw.send(&query(&format!(
        "INSERT INTO rt_ryw (tag) VALUES ('{tag}')"
    )))
    .await
    .unwrap();
    let r = raw.read_until_ready().await.expect("read reply");
    assert_eq!(first_error(&r), None);
    let w = raw.read_until_ready().await.expect("write reply");
    assert_eq!(first_error(&w), None, "the write");
    let back = raw
        .simple(&format!(
            "SELECT count(*) || ',' || inet_server_port() FROM rt_ryw WHERE tag = '{tag}'"
        ))
        .await;
    let v = first_value(&back).expect("a row");
    eprintln!("read back: {v}");
    assert!(v.starts_with("1,"), "the client's own write not seen: {v}");
}

/// A TCP relay in front of a server whose server-to-proxy direction can be held: bytes the
/// server sends while held are kept and written in a single write when released (and an EOF
/// from the server is passed on only after that).
struct Gate {
    port: u16,
    held: Arc<tokio::sync::watch::Sender<bool>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Gate {
    async fn start(target: SocketAddr) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = Arc::new(tokio::sync::watch::channel(false).0);
        let h = Arc::clone(&held);
        let accept = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    a = listener.accept() => {
                        let Ok((down, _)) = a else { continue };
                        let rx = h.subscribe();
                        conns.spawn(gate_conn(down, target, rx));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Gate { port, held, accept }
    }
    fn hold(&self, on: bool) {
        self.held.send_replace(on);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn gate_conn(
    down: tokio::net::TcpStream,
    target: SocketAddr,
    mut held: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(up) = tokio::net::TcpStream::connect(target).await else {
        return;
    };
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (mut dr, mut dw) = down.into_split();
    let (mut ur, mut uw) = up.into_split();
    let to_server = async move {
        let _ = tokio::io::copy(&mut dr, &mut uw).await;
        let _ = uw.shutdown().await;
    };
    let to_proxy = async move {
        let mut pending = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut eof = false;
        loop {
            if !*held.borrow() && !pending.is_empty() {
                if dw.write_all(&pending).await.is_err() {
                    return;
                }
                pending.clear();
            }
            if eof {
                if pending.is_empty() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = dw.shutdown().await;
                    return;
                }
                if held.changed().await.is_err() {
                    return;
                }
                continue;
            }
            tokio::select! {
                r = ur.read(&mut buf) => match r {
                    Ok(0) | Err(_) => eof = true,
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                },
                c = held.changed() => if c.is_err() { return },
            }
        }
    };
    tokio::join!(to_server, to_proxy);
}

/// A replica's server process that goes away (FATAL) right after it answered a read in full,
/// both arriving in one read: the client must still get its complete answer (and the proxy
/// must not spin on the FATAL). Multi-threaded: a proxy task that spins must not starve the
/// test's own timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_right_behind_a_complete_replica_answer_loses_nothing() {
    use crate::faultkit::{Raw, first_value, query};
    let _lock = routing_lock().await;
    let (r1, _) = r1_r2();
    let gate = Gate::start(SocketAddr::from(([127, 0, 0, 1], r1))).await;
    let proxy = start_proxy_with(&routing_config("", &[member_url(gate.port)])).await;
    let client = proxy.connect().await;
    wait_replica_serving(&client).await;

    let mut raw = Raw::login_trust(proxy.addr, TRUST_USER.0, DB).await;
    // Warm: this client's read lands on the replica.
    let v = first_value(&raw.simple("SELECT inet_server_port()").await);
    assert_eq!(v.as_deref(), Some(r1.to_string().as_str()));
    let marker = format!("review4_gate_{}", unique());
    gate.hold(true);
    raw.send(&query(&format!("SELECT '{marker}', inet_server_port()")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let killed = routing_sql(
        "replica1",
        DB,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
        ),
    )
    .await;
    assert_eq!(killed, "1", "the backend that ran the read");
    tokio::time::sleep(Duration::from_millis(400)).await;
    gate.hold(false);
    let mut got = Vec::new();
    loop {
        match raw.try_read_msg(Duration::from_secs(5)).await {
            Ok(Some(m)) => {
                let z = m.tag == b'Z';
                got.push(m);
                if z {
                    break;
                }
            }
            Ok(None) => break,
            Err(()) => break,
        }
    }
    let tags: String = got.iter().map(|m| m.tag as char).collect();
    eprintln!("after the FATAL: {tags}");
    assert_eq!(
        first_value(&got).as_deref(),
        Some(marker.as_str()),
        "({tags})"
    );
    assert!(
        got.last().is_some_and(|m| m.tag == b'Z'),
        "no ReadyForQuery ({tags})"
    );
    // And the client goes on.
    let v = first_value(&raw.simple("SELECT 42").await);
    assert_eq!(v.as_deref(), Some("42"));
}

/// A driver's prepare (Parse of a *named* statement, Describe, Sync: what tokio-postgres sends)
/// routed to a replica whose connection breaks before any reply is re-sent to another member:
/// the client gets its ParseComplete and description, not a `42P05` (prepared statement
/// already exists) from the proxy re-sending the client's Parse, and can then run it.
#[tokio::test]
async fn a_named_prepare_moved_off_a_dead_replica_prepares_cleanly() {
    use crate::faultkit::{Raw, first_error, first_value};
    let _lock = routing_lock().await;
    let (r1, _) = r1_r2();
    let slow = DelayProxy::start(SocketAddr::from(([127, 0, 0, 1], r1)), 0).await;
    let proxy = start_proxy_with(&routing_config("", &[member_url(slow.port())])).await;
    let client = proxy.connect().await;
    wait_replica_serving(&client).await;

    let mut raw = Raw::login_trust(proxy.addr, TRUST_USER.0, DB).await;
    let v = first_value(&raw.simple("SELECT inet_server_port()").await);
    assert_eq!(
        v.as_deref(),
        Some(r1.to_string().as_str()),
        "warm-up on the replica"
    );
    // Replies from the replica now take 2 s; the connection breaks before any arrives.
    slow.set_delay(2000);
    let mut batch = Vec::new();
    batch.extend(wire_msg(
        b'P',
        b"review4_p\0SELECT inet_server_port()\0\0\0",
    ));
    batch.extend(wire_msg(b'D', b"Sreview4_p\0"));
    batch.extend(wire_msg(b'S', &[]));
    raw.send(&batch).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(slow);
    let msgs = raw.read_until_ready().await.expect("reply");
    let tags: String = msgs.iter().map(|m| m.tag as char).collect();
    eprintln!("prepare reply tags: {tags}");
    assert_eq!(first_error(&msgs), None, "moved prepare failed ({tags})");
    let mut run = Vec::new();
    run.extend(wire_msg(b'B', b"\0review4_p\0\0\0\0\0\0\0"));
    run.extend(wire_msg(b'E', &[0, 0, 0, 0, 0]));
    run.extend(wire_msg(b'S', &[]));
    raw.send(&run).await.unwrap();
    let msgs = raw.read_until_ready().await.expect("reply");
    assert_eq!(first_error(&msgs), None, "running the prepared statement");
    assert_eq!(
        first_value(&msgs).and_then(|p| p.parse::<u16>().ok()),
        Some(primary_port())
    );
}

/// pgbench through the split, in all three query modes: select-only runs on the replicas
/// (named statements prepared on each member on first use there), the TPC-B-like script
/// (explicit transactions) on the primary; nothing fails, and the balances add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_through_the_split_in_every_query_mode() {
    let _lock = routing_lock().await;
    let proxy = start_proxy_with(&routing_config("", &[])).await;
    let url = proxy.url(SCRAM_USER.0, SCRAM_USER.1, DB);
    let pgbench = pg_tool("pgbench");
    let out = run_cmd(&pgbench, &["-i", "-s", "1", "-q", &url]).await;
    assert_success("pgbench -i", &out);
    // Other clients read from replicas: wait until they have the tables.
    tokio::task::spawn_blocking(|| {
        routing_cluster()
            .wait_replicas_caught_up(Duration::from_secs(20))
            .expect("replicas catch up after pgbench -i")
    })
    .await
    .expect("wait panicked");
    let client = proxy.connect().await;
    wait_replica_serving(&client).await;
    let replicas = replica_ports();
    let before: u64 = routed_to_replicas(&proxy);
    for mode in ["simple", "extended", "prepared"] {
        let out = run_cmd(
            &pgbench,
            &[
                "-n", "-M", mode, "-S", "-c", "4", "-j", "2", "-t", "200", &url,
            ],
        )
        .await;
        check_pgbench(&format!("pgbench -M {mode} -S"), &out, 800);
    }
    let on_replicas = routed_to_replicas(&proxy) - before;
    eprintln!("routing: pgbench -S: {on_replicas} of 2400 transactions routed to replicas");
    assert!(
        on_replicas >= 2000,
        "select-only transactions on replicas: {on_replicas} of 2400 (replicas {replicas:?})"
    );
    let out = run_cmd(
        &pgbench,
        &[
            "-n", "-M", "prepared", "-c", "4", "-j", "2", "-t", "100", &url,
        ],
    )
    .await;
    check_pgbench("pgbench -M prepared (tpcb-like)", &out, 400);
    let sums = simple_value(
        &client,
        "/* lagoon:primary */ SELECT ((SELECT sum(abalance) FROM pgbench_accounts) = \
         (SELECT sum(delta) FROM pgbench_history))::text",
    )
    .await
    .expect("balances");
    assert_eq!(sums, "true", "balances add up");
}

/// Requests routed to the replicas so far, from the health view's counters.
fn routed_to_replicas(proxy: &TestProxy) -> u64 {
    let h = proxy
        .shared
        .health
        .get(DB)
        .expect("health view of the test database");
    h.replicas.iter().map(|m| m.routed()).sum()
}
