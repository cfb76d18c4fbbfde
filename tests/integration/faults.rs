//! Bad input and faults (issue 2, item 10): framing bounds give 08P01 and a closed connection;
//! no input crashes the proxy; a client that vanishes mid-transaction, mid-query, mid-pipeline
//! or mid-COPY leaves no dirty server behind; a server that dies mid-query costs only its own
//! client (08006); idle-in-transaction clients are cut off; slow clients hold no server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::SinkExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::faultkit::*;
use crate::harness::*;

/// (backend pid, txid_current_if_assigned) of the server a new client lands on.
async fn next_server(proxy: &TestProxy, user: (&str, &str)) -> (String, Option<String>) {
    let c = tokio::time::timeout(Duration::from_secs(5), proxy.connect_as(user.0, user.1, DB))
        .await
        .expect("connecting a new client took too long");
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        rows(
            &c,
            "SELECT pg_backend_pid()::text; SELECT txid_current_if_assigned()::text",
        ),
    )
    .await
    .expect("a new client's query waited too long: the server was not freed")
    .expect("query on the reused server");
    (r[0].clone().unwrap(), r[1].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_gets_08p01_and_the_connection_closes() {
    let proxy = start_proxy("size = 2", "max_message_bytes = 1024").await;
    let bystander = proxy.connect().await;
    let victim = connect_tracked(&proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB)).await;
    // Just under the limit is fine.
    let near = format!("SELECT '{}'", "x".repeat(900));
    assert_eq!(
        rows(&victim.client, &near).await.unwrap()[0]
            .as_ref()
            .map(String::len),
        Some(900)
    );
    // Over it: 08P01, then the proxy hangs up.
    let big = format!("SELECT '{}'", "x".repeat(5000));
    let err = victim
        .client
        .simple_query(&big)
        .await
        .expect_err("5000-byte query");
    assert_eq!(sqlstate(&err).as_deref(), Some("08P01"), "{err}");
    tokio::time::timeout(Duration::from_secs(5), victim.conn)
        .await
        .expect("the proxy kept the connection open after 08P01")
        .unwrap()
        .ok();
    assert!(victim.client.is_closed());
    // Everyone else carries on.
    assert_eq!(scalar(&bystander, "SELECT 1").await.as_deref(), Some("1"));
    let fresh = proxy.connect().await;
    assert_eq!(scalar(&fresh, "SELECT 2").await.as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_message_length_gets_08p01_and_the_connection_closes() {
    let proxy = start_proxy("size = 2", "").await;
    // Negative, below the 4-byte minimum, and over max_message_bytes (default 1 GiB).
    for len in [-1i32, i32::MIN, 0, 3, i32::MAX] {
        let mut raw = Raw::login_trust(proxy.addr, TRUST_USER.0, DB).await;
        let mut bytes = vec![b'Q'];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(b"SELECT 1\0");
        raw.send(&bytes).await.unwrap();
        let msgs = raw.read_until_closed().await;
        let last = msgs
            .last()
            .unwrap_or_else(|| panic!("length {len}: closed without an error"));
        assert_eq!(last.tag, b'E', "length {len}: {msgs:?}");
        assert_eq!(last.sqlstate().as_deref(), Some("08P01"), "length {len}");
        assert_eq!(field(&last.body, b'S').as_deref(), Some("FATAL"));
    }
    let c = proxy.connect().await;
    assert_eq!(scalar(&c, "SELECT 1").await.as_deref(), Some("1"));
}

static GARBAGE_PANICS: AtomicUsize = AtomicUsize::new(0);
const GARBAGE_THREAD: &str = "faults-garbage";
const GARBAGE_APP: &str = "lagoon_faults_garbage";

/// Random bytes, before and after login, on a few hundred connections: the proxy must not
/// panic, must end or keep serving each connection, and must leak neither clients nor server
/// connections. Runs on its own runtime whose threads are named so a panic hook can count
/// panics in the proxy's tasks (which tokio would otherwise swallow).
#[test]
fn random_garbage_never_crashes_the_proxy() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with(GARBAGE_THREAD))
        {
            GARBAGE_PANICS.fetch_add(1, Ordering::SeqCst);
        }
        prev(info);
    }));
    cluster();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(GARBAGE_THREAD)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(garbage_run());
}

/// Client message tags, and a few that are not.
const TAGS: &[u8] = b"QPBEDCSHFdcfXp\0\xffZ";

fn garbage(rng: &mut StdRng) -> Vec<u8> {
    let mut out = Vec::new();
    // Sometimes start from an open transaction or an open COPY, where the proxy must clean
    // up more than an idle session.
    match rng.gen_range(0..4) {
        0 => out.extend_from_slice(&query("BEGIN; SELECT 1")),
        1 => out.extend_from_slice(&query("COPY faults_garbage_copy FROM STDIN")),
        _ => {}
    }
    match rng.gen_range(0..3) {
        // Pure noise.
        0 => out.extend((0..rng.gen_range(1..300)).map(|_| rng.r#gen::<u8>())),
        // Well-framed messages with random tags and bodies.
        1 => {
            for _ in 0..rng.gen_range(1..6) {
                let body: Vec<u8> = (0..rng.gen_range(0..80))
                    .map(|_| rng.r#gen::<u8>())
                    .collect();
                out.push(TAGS[rng.gen_range(0..TAGS.len())]);
                out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
                out.extend_from_slice(&body);
            }
        }
        // A plausible header with a random (often hostile) length, then noise.
        _ => {
            out.push(TAGS[rng.gen_range(0..TAGS.len())]);
            out.extend_from_slice(&rng.r#gen::<i32>().to_be_bytes());
            out.extend((0..rng.gen_range(0..40)).map(|_| rng.r#gen::<u8>()));
        }
    }
    out
}

async fn garbage_run() {
    let proxy = start_proxy("size = 3\ncheckout_timeout_ms = 10000", "").await;
    let setup = proxy.connect_as(TRUST_USER.0, "unused", DB).await;
    setup
        .batch_execute(
            "DROP TABLE IF EXISTS faults_garbage_copy; CREATE TABLE faults_garbage_copy (t text)",
        )
        .await
        .unwrap();
    drop(setup);
    let seed: u64 = std::env::var("LAGOON_GARBAGE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1a600);
    eprintln!("garbage seed {seed} (set LAGOON_GARBAGE_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let cases: Vec<(bool, bool, Vec<u8>)> = (0..300)
        .map(|_| (rng.gen_bool(0.8), rng.gen_bool(0.5), garbage(&mut rng)))
        .collect();
    for chunk in cases.chunks(10) {
        let mut tasks = Vec::new();
        for (after_login, half_close, bytes) in chunk.iter().cloned() {
            let addr = proxy.addr;
            tasks.push(tokio::spawn(async move {
                if !after_login {
                    // Startup phase: the replies may not be regular messages ('N'), so
                    // just read bytes until the proxy hangs up.
                    let mut raw = Raw::connect_only(addr).await;
                    if raw.send(&bytes).await.is_ok() {
                        if half_close {
                            let _ = tokio::io::AsyncWriteExt::shutdown(&mut raw.stream).await;
                            assert!(
                                raw.drain_bytes(READ_TIMEOUT).await,
                                "the proxy kept a half-closed startup connection open"
                            );
                        } else {
                            raw.drain_bytes(Duration::from_millis(200)).await;
                        }
                    }
                    return;
                }
                let mut raw = Raw::login_trust_with(
                    addr,
                    &[
                        ("user", TRUST_USER.0),
                        ("database", DB),
                        ("application_name", GARBAGE_APP),
                    ],
                )
                .await;
                if raw.send(&bytes).await.is_err() {
                    return;
                }
                if half_close {
                    // The proxy must answer what it got and then close.
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut raw.stream).await;
                    let _ = raw.read_until_closed().await;
                } else {
                    // Take whatever comes within a moment, then hang up.
                    while let Ok(Some(_)) = raw.try_read_msg(Duration::from_millis(200)).await {}
                }
            }));
        }
        for t in tasks {
            t.await.expect("garbage client task");
        }
    }
    assert_eq!(
        GARBAGE_PANICS.load(Ordering::SeqCst),
        0,
        "the proxy panicked on garbage input (seed {seed})"
    );
    // Every session ended and gave its server back.
    eventually(
        "all garbage sessions ended",
        Duration::from_secs(15),
        || {
            let n = proxy.shared.clients.load(Ordering::Relaxed);
            async move { n == 0 }
        },
    )
    .await;
    for pool in proxy.shared.pools.all() {
        let p = pool.clone();
        eventually(
            "every server connection back in the pool",
            Duration::from_secs(15),
            || {
                let (idle, total, waiting) = p.snapshot();
                async move { idle == total && waiting == 0 }
            },
        )
        .await;
    }
    // No server the garbage sessions used is left busy or inside a transaction.
    eventually(
        "no garbage session's server active or in a transaction",
        Duration::from_secs(15),
        || async {
            admin(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{GARBAGE_APP}' \
                 AND state <> 'idle'"
            ))
            .await
                == "0"
        },
    )
    .await;
    // And the proxy still serves normal clients, on clean servers.
    let (_, txid) = next_server(&proxy, TRUST_USER).await;
    assert_eq!(txid, None, "a server was handed back inside a transaction");
    let c = proxy.connect().await;
    assert_eq!(scalar(&c, "SELECT 1").await.as_deref(), Some("1"));
    assert_eq!(GARBAGE_PANICS.load(Ordering::SeqCst), 0);
}

/// A client inside a transaction (after `then`, which may fail it) vanishes: its work is
/// rolled back and the next client gets the same server, outside any transaction.
async fn vanish_mid_transaction(table: &str, then: &str) {
    let proxy = start_proxy("size = 1\ncheckout_timeout_ms = 10000", "").await;
    let setup = proxy.connect().await;
    setup
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int)"
        ))
        .await
        .unwrap();
    drop(setup);
    let victim = connect_tracked(&proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB)).await;
    let pid = scalar(
        &victim.client,
        &format!("BEGIN; INSERT INTO {table} VALUES (1); SELECT pg_backend_pid()"),
    )
    .await
    .unwrap();
    let p: i32 = pid.parse().unwrap();
    let _ = victim.client.batch_execute(then).await;
    assert!(backend_state(p).await.starts_with("idle in transaction"));
    victim.crash();

    eventually(
        "the vanished client's server no longer idle in transaction",
        Duration::from_secs(10),
        || async move { !backend_state(p).await.starts_with("idle in transaction") },
    )
    .await;
    assert_eq!(admin(&format!("SELECT count(*) FROM {table}")).await, "0");
    // The next client gets that same server (pool size 1), clean.
    let (server, txid) = next_server(&proxy, SCRAM_USER).await;
    assert_eq!(server, pid, "expected the rolled-back server to be reused");
    assert_eq!(
        txid, None,
        "the server was reused inside the old transaction"
    );
    assert_eq!(admin(&format!("SELECT count(*) FROM {table}")).await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_mid_transaction_is_rolled_back() {
    vanish_mid_transaction("faults_midtxn", "INSERT INTO faults_midtxn VALUES (2)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_in_a_failed_transaction_is_rolled_back() {
    vanish_mid_transaction("faults_failedtxn", "SELECT 1/0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_while_queued_leaks_nothing() {
    let proxy = start_proxy("size = 1\ncheckout_timeout_ms = 10000", "").await;
    let holder = proxy.connect().await;
    let queued = connect_tracked(&proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB)).await;
    let pool = only_pool(&proxy);
    holder.batch_execute("BEGIN").await.unwrap();
    let Tracked { client, conn } = queued;
    let q = tokio::spawn(async move { rows(&client, "SELECT 1").await.map(drop) });
    wait_for_waiters("a client waiting for the server", &pool, 1).await;
    conn.abort();
    assert!(q.await.unwrap().is_err());
    holder.batch_execute("COMMIT").await.unwrap();
    // Whatever the proxy does with the abandoned request, the server comes back clean.
    eventually(
        "the server back in the pool",
        Duration::from_secs(10),
        || {
            let p = pool.clone();
            async move { p.snapshot() == (1, 1, 0) }
        },
    )
    .await;
    let (_, txid) = next_server(&proxy, SCRAM_USER).await;
    assert_eq!(txid, None);
    assert_eq!(scalar(&holder, "SELECT 5").await.as_deref(), Some("5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_dying_while_idle_in_the_pool_goes_unnoticed() {
    let proxy = start_proxy("size = 1\ncheckout_timeout_ms = 10000", "").await;
    let client = proxy.connect().await;
    let pid = scalar(&client, "SELECT pg_backend_pid()").await.unwrap();
    admin(&format!("SELECT pg_terminate_backend({pid})")).await;
    let p: i32 = pid.parse().unwrap();
    eventually(
        "the idle server gone",
        Duration::from_secs(10),
        || async move { backend_state(p).await.is_empty() },
    )
    .await;
    // The client was idle: its next query runs on a new server, no error.
    let r = rows(&client, "SELECT pg_backend_pid()")
        .await
        .unwrap_or_else(|e| {
            panic!(
                "a dead idle server reached the client: {:?} {e}",
                sqlstate(&e)
            )
        });
    assert_ne!(r[0].as_deref(), Some(pid.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_mid_query_frees_its_server_quickly() {
    let proxy = start_proxy("size = 1\ncheckout_timeout_ms = 10000", "").await;
    let Tracked { client, conn } =
        connect_tracked(&proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB)).await;
    let marker = "faults_midquery_m1";
    let q = tokio::spawn(async move {
        client
            .simple_query(&format!("SELECT pg_sleep(10) /* {marker} */"))
            .await
            .map(drop)
    });
    wait_marker_active(marker).await;
    conn.abort();
    let gone = Instant::now();
    // The proxy cancels the query instead of waiting out the 10 s.
    wait_marker_gone(marker, Duration::from_secs(5)).await;
    let (_, txid) = next_server(&proxy, SCRAM_USER).await;
    assert_eq!(txid, None);
    assert!(
        gone.elapsed() < Duration::from_secs(8),
        "server freed only after {:?}",
        gone.elapsed()
    );
    assert!(q.await.unwrap().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_mid_pipeline_frees_its_server_quickly() {
    let proxy = start_proxy("size = 1\ncheckout_timeout_ms = 10000", "").await;
    let mut raw = Raw::login_trust(proxy.addr, TRUST_USER.0, DB).await;
    let marker = "faults_midpipeline_m2";
    // Three requests in flight, the last one without its Sync.
    let mut bytes = extended(&format!("SELECT pg_sleep(10) /* {marker} */")).to_vec();
    bytes.extend_from_slice(&sync());
    bytes.extend_from_slice(&extended("SELECT 1"));
    bytes.extend_from_slice(&sync());
    bytes.extend_from_slice(&extended("SELECT 2"));
    raw.send(&bytes).await.unwrap();
    wait_marker_active(marker).await;
    drop(raw);
    let gone = Instant::now();
    wait_marker_gone(marker, Duration::from_secs(5)).await;
    let (_, txid) = next_server(&proxy, TRUST_USER).await;
    assert_eq!(txid, None);
    assert!(gone.elapsed() < Duration::from_secs(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_during_copy_in_commits_nothing() {
    let proxy = start_proxy("size = 1\ncheckout_timeout_ms = 10000", "").await;
    let setup = proxy.connect().await;
    setup
        .batch_execute("DROP TABLE IF EXISTS faults_copy; CREATE TABLE faults_copy (id int)")
        .await
        .unwrap();
    drop(setup);
    let victim = connect_tracked(&proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB)).await;
    let marker = "faults_copy_m3";
    let sink = victim
        .client
        .copy_in::<_, Bytes>(&format!("COPY faults_copy FROM STDIN /* {marker} */"))
        .await
        .expect("COPY FROM STDIN starts");
    let mut sink = Box::pin(sink);
    sink.send(Bytes::from_static(b"1\n2\n3\n")).await.unwrap();
    wait_marker_active(marker).await;
    victim.crash();
    drop(sink);
    wait_marker_gone(marker, Duration::from_secs(10)).await;
    let (_, txid) = next_server(&proxy, SCRAM_USER).await;
    assert_eq!(txid, None);
    assert_eq!(
        admin("SELECT count(*) FROM faults_copy").await,
        "0",
        "rows of an unfinished COPY were committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_terminated_mid_query_ends_only_its_client() {
    let proxy = start_proxy("size = 2\ncheckout_timeout_ms = 10000", "").await;
    let Tracked {
        client: a,
        conn: a_conn,
    } = connect_tracked(&proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB)).await;
    let b = proxy.connect().await;
    let marker = "faults_terminate_m4";
    let a_task = tokio::spawn(async move {
        a.simple_query(&format!("SELECT pg_sleep(5) /* {marker} */"))
            .await
            .map(drop)
    });
    wait_marker_active(marker).await;
    // B is mid-transaction on the other server connection.
    assert_eq!(scalar(&b, "BEGIN; SELECT 1").await.as_deref(), Some("1"));
    admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
    ))
    .await;
    let err = tokio::time::timeout(Duration::from_secs(4), a_task)
        .await
        .expect("A's query did not end when its server died")
        .unwrap()
        .expect_err("A's query must fail");
    // Postgres's own FATAL (57P01, relayed as sent) or the proxy's 08006.
    let code = sqlstate(&err);
    assert!(
        matches!(code.as_deref(), Some("08006") | Some("57P01")),
        "A got {code:?}: {err}"
    );
    only_a_noticed(&proxy, a_conn, &b).await;
}

/// After client A lost its server: A's connection closes, client B (inside a transaction on
/// another server) commits as if nothing happened, and a new client is served.
async fn only_a_noticed(
    proxy: &TestProxy,
    a_conn: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    b: &tokio_postgres::Client,
) {
    tokio::time::timeout(Duration::from_secs(5), a_conn)
        .await
        .expect("A's connection should close with its server")
        .unwrap()
        .ok();
    assert_eq!(
        scalar(b, "SELECT 2; COMMIT; SELECT 3").await.as_deref(),
        Some("3")
    );
    let fresh = proxy.connect().await;
    assert_eq!(scalar(&fresh, "SELECT 4").await.as_deref(), Some("4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_connection_lost_mid_query_gives_08006() {
    let c = cluster();
    let relay = Relay::start(&c.primary.host, c.primary.port).await;
    let direct = c.url(&c.primary, DB);
    let via_relay = format!("postgres://{}:{}/{}", c.primary.host, relay.port, DB);
    let config = base_config("size = 2\ncheckout_timeout_ms = 10000", "");
    assert!(config.contains(&direct));
    let proxy = start_proxy_with(&config.replace(&direct, &via_relay)).await;
    let a = connect_tracked(&proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB)).await;
    let b = proxy.connect().await;
    assert_eq!(relay.count(), 1, "login opened the first server connection");
    let Tracked {
        client: a,
        conn: a_conn,
    } = a;
    let marker = "faults_netcut_m5";
    let a_task = tokio::spawn(async move {
        a.simple_query(&format!("SELECT pg_sleep(5) /* {marker} */"))
            .await
            .map(drop)
    });
    wait_marker_active(marker).await;
    assert_eq!(scalar(&b, "BEGIN; SELECT 1").await.as_deref(), Some("1"));
    assert_eq!(relay.count(), 2, "B runs on a second server connection");
    relay.cut(0);
    let cut = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(4), a_task)
        .await
        .expect("A's query did not end when its server connection broke")
        .unwrap()
        .expect_err("A's query must fail");
    assert_eq!(sqlstate(&err).as_deref(), Some("08006"), "{err}");
    assert!(cut.elapsed() < Duration::from_secs(3));
    only_a_noticed(&proxy, a_conn, &b).await;
}

/// A proxy in front of the primary through a relay whose connections the test can cut, with
/// a pool of one server connection.
async fn proxy_through_relay() -> (Relay, TestProxy) {
    let c = cluster();
    let relay = Relay::start(&c.primary.host, c.primary.port).await;
    let direct = c.url(&c.primary, DB);
    let via_relay = format!("postgres://{}:{}/{}", c.primary.host, relay.port, DB);
    let config = base_config("size = 1\ncheckout_timeout_ms = 10000", "");
    let proxy = start_proxy_with(&config.replace(&direct, &via_relay)).await;
    (relay, proxy)
}

/// Waits until the pool's one server connection is idle: the proxy is done with it (the
/// session-state probe after a SET included).
async fn wait_server_idle(pool: &lagoon::pool::Pool) {
    eventually(
        "the server connection idle",
        Duration::from_secs(10),
        || async { pool.snapshot().0 == 1 },
    )
    .await;
}

/// A server connection that breaks while the proxy readies it for a client (replaying the
/// client's settings), before the request went out, costs the client nothing: the request
/// runs on a fresh connection. (A replica or primary shutting down between the pool's
/// liveness check and those first bytes did this.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_lost_while_readied_is_replaced_before_the_request() {
    let (relay, proxy) = proxy_through_relay().await;
    let a = proxy.connect().await;
    let b = proxy.connect().await;
    let pool = only_pool(&proxy);
    a.batch_execute("SET work_mem = '5MB'").await.unwrap();
    // B leaves its own value on the one server connection: A's next request replays A's.
    b.batch_execute("SET work_mem = '6MB'").await.unwrap();
    wait_server_idle(&pool).await;
    assert_eq!(relay.count(), 1, "both clients share one server connection");
    relay.cut_on_next_send(0);
    assert_eq!(
        scalar(&a, "SHOW work_mem").await.as_deref(),
        Some("5MB"),
        "A's request must run on a fresh connection with A's settings"
    );
    assert_eq!(
        relay.count(),
        2,
        "a second server connection replaced the cut one"
    );
    assert_eq!(scalar(&b, "SHOW work_mem").await.as_deref(), Some("6MB"));
}

/// A server lost after a client's SET was answered but before the proxy could read what it
/// changed: the client's settings are unknown, so it ends with `08006` instead of going on
/// without them; another client is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_lost_before_a_set_is_read_back_ends_that_client() {
    let (relay, proxy) = proxy_through_relay().await;
    let other = proxy.connect().await;
    let pool = only_pool(&proxy);
    let Tracked { client: b, conn } =
        connect_tracked(&proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB)).await;
    let marker = "faults_probe_cut_m1";
    let set = tokio::spawn(async move {
        let r = b
            .batch_execute(&format!(
                "SET work_mem = '6MB'; SELECT pg_sleep(0.3) /* {marker} */"
            ))
            .await;
        (b, r)
    });
    wait_marker_active(marker).await;
    // The next bytes the proxy sends on it are its question about B's settings.
    relay.cut_on_next_send(0);
    let (b, r) = set.await.unwrap();
    r.expect("B's SET itself was answered");
    let code = Tracked { client: b, conn }
        .ended_with(Duration::from_secs(5))
        .await;
    assert_eq!(code.as_deref(), Some("08006"));
    assert_eq!(
        scalar(&other, "SHOW work_mem").await.as_deref(),
        Some("4MB")
    );
    wait_server_idle(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_in_transaction_client_gets_25p03_and_its_server_is_reused() {
    let proxy = start_proxy(
        "size = 1\ncheckout_timeout_ms = 10000\nidle_transaction_timeout_ms = 300",
        "",
    )
    .await;
    // A query that runs longer than the timeout inside a transaction is not "idle".
    let busy = proxy.connect().await;
    busy.batch_execute("BEGIN").await.unwrap();
    busy.batch_execute("SELECT pg_sleep(0.8)").await.unwrap();
    busy.batch_execute("COMMIT").await.unwrap();
    // Nor is a client sitting idle outside a transaction (the silence is the test).
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(scalar(&busy, "SELECT 1").await.as_deref(), Some("1"));
    drop(busy);

    let victim = connect_tracked(&proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB)).await;
    let pid = scalar(&victim.client, "BEGIN; SELECT pg_backend_pid()")
        .await
        .unwrap();
    let began = Instant::now();
    let code = victim.ended_with(Duration::from_secs(5)).await;
    assert_eq!(code.as_deref(), Some("25P03"));
    assert!(
        began.elapsed() >= Duration::from_millis(250),
        "cut off after only {:?}",
        began.elapsed()
    );
    let (server, txid) = next_server(&proxy, SCRAM_USER).await;
    assert_eq!(server, pid, "expected the rolled-back server to be reused");
    assert_eq!(txid, None);
    assert!(
        !backend_state(pid.parse().unwrap())
            .await
            .starts_with("idle in transaction")
    );
}

/// Runs `SELECT 1` three times on another client of the same pool (size 1, short checkout
/// timeout): fails if the server is held by someone else.
async fn server_is_free_for_others(proxy: &TestProxy) {
    let other = proxy.connect_as(TRUST_USER.0, "unused", DB).await;
    for _ in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(5), rows(&other, "SELECT 1"))
            .await
            .expect("stalled");
        assert_eq!(
            r.unwrap_or_else(|e| panic!("server held by a slow client: {:?} {e}", sqlstate(&e))),
            [Some("1".to_owned())]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_query_holds_no_server() {
    let proxy = start_proxy("size = 1\ncheckout_timeout_ms = 2000", "").await;
    // Half a Query message, then silence: the request is not complete, so no server may be
    // waiting on the rest of it.
    let mut half = Raw::login_trust(proxy.addr, TRUST_USER.0, DB).await;
    let q = query("SELECT 41 + 1");
    half.send(&q[..8]).await.unwrap();
    server_is_free_for_others(&proxy).await;
    // The slow client finishes and gets its answer.
    half.send(&q[8..]).await.unwrap();
    let r = half.read_until_ready().await.unwrap();
    assert_eq!(first_value(&r).as_deref(), Some("42"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsynced_batch_holds_no_server() {
    let proxy = start_proxy("size = 1\ncheckout_timeout_ms = 2000", "").await;
    // A whole extended batch without its Sync, then silence.
    let mut unsynced = Raw::login_trust(proxy.addr, TRUST_USER.0, DB).await;
    unsynced.send(&extended("SELECT 7")).await.unwrap();
    server_is_free_for_others(&proxy).await;
    unsynced.send(&sync()).await.unwrap();
    let r = unsynced.read_until_ready().await.unwrap();
    assert_eq!(first_error(&r), None);
    assert_eq!(first_value(&r).as_deref(), Some("7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_mid_result_frees_its_server_quickly() {
    let proxy = start_proxy("size = 1\ncheckout_timeout_ms = 10000", "").await;
    let mut raw = Raw::login_trust(proxy.addr, TRUST_USER.0, DB).await;
    let marker = "faults_midresult_m6";
    // About 2 GB of rows: far more than any socket buffer, so the proxy is mid-stream.
    raw.send(&query(&format!(
        "SELECT repeat('x', 2000) FROM generate_series(1, 1000000) /* {marker} */"
    )))
    .await
    .unwrap();
    for _ in 0..100 {
        let m = raw.read_msg().await.expect("rows");
        assert_ne!(m.tag, b'E', "{:?}", m.sqlstate());
    }
    drop(raw);
    let gone = Instant::now();
    wait_marker_gone(marker, Duration::from_secs(10)).await;
    let (_, txid) = next_server(&proxy, TRUST_USER).await;
    assert_eq!(txid, None);
    assert!(
        gone.elapsed() < Duration::from_secs(10),
        "server freed only after {:?}",
        gone.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_lost_while_others_queue_hands_them_a_new_server() {
    let (relay, proxy) = proxy_through_relay().await;
    let Tracked {
        client: a,
        conn: _a_conn,
    } = connect_tracked(&proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB)).await;
    let b = proxy.connect().await;
    let pool = only_pool(&proxy);
    let marker = "faults_netcut_queue_m7";
    let a_task = tokio::spawn(async move {
        a.simple_query(&format!("SELECT pg_sleep(5) /* {marker} */"))
            .await
            .map(drop)
    });
    wait_marker_active(marker).await;
    let b_task = tokio::spawn(async move { rows(&b, "SELECT 8").await });
    wait_for_waiters("B waiting for the only server", &pool, 1).await;
    relay.cut(0);
    let err = tokio::time::timeout(Duration::from_secs(4), a_task)
        .await
        .expect("A's query did not end when its server connection broke")
        .unwrap()
        .expect_err("A's query must fail");
    assert_eq!(sqlstate(&err).as_deref(), Some("08006"), "{err}");
    let r = tokio::time::timeout(Duration::from_secs(4), b_task)
        .await
        .expect("B still waiting after the dead server left the pool")
        .unwrap()
        .unwrap_or_else(|e| panic!("B noticed A's server dying: {:?} {e}", sqlstate(&e)));
    assert_eq!(r, [Some("8".to_owned())]);
    assert_eq!(
        relay.count(),
        2,
        "a replacement server connection was opened"
    );
}
