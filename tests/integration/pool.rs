//! Pooling behaviour (issue 2, item 6): transaction mode shares servers, a transaction keeps its
//! server, session mode keeps a server per client and cleans it on disconnect, the checkout queue
//! is a fair FIFO with a deadline, max_client_conn, fast failure when the server is down, and the
//! maintenance knobs (server_lifetime_ms, server_idle_timeout_ms, min_idle).
//!
//! Queries here use the simple protocol or unnamed statements (`query_typed`): named prepared
//! statements across transactions are a later issue.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::*;

/// The pool of the test database for the SCRAM test user (the one `proxy.connect()` uses).
fn only_pool(proxy: &TestProxy) -> Arc<lagoon::pool::Pool> {
    proxy
        .shared
        .pools
        .all()
        .into_iter()
        .find(|p| p.database == DB && p.user == SCRAM_USER.0)
        .expect("a pool for the test database and user")
}

/// The backend pid serving this statement (unnamed statement: one round trip, one transaction
/// unless the client is inside one).
async fn pid(client: &Client) -> i32 {
    client
        .query_typed_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("select pg_backend_pid()")
        .get(0)
}

/// The first column of every row of a simple query.
async fn simple_col(client: &Client, sql: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    let msgs = client.simple_query(sql).await?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
            _ => None,
        })
        .collect())
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

#[tokio::test]
async fn transaction_mode_shares_two_servers_among_ten_clients() {
    let proxy = start_proxy("size = 2", "").await;
    let clients = join_all((0..10).map(|_| proxy.connect())).await;
    let runs = clients.iter().enumerate().map(|(i, c)| async move {
        let mut pids = Vec::new();
        for j in 0..5 {
            // An explicit transaction and an autocommit one, each checking its own result.
            let rows = simple_col(
                c,
                &format!("BEGIN; SELECT pg_backend_pid()::text || ':' || {i} * 100 + {j}; COMMIT"),
            )
            .await
            .expect("transaction through the pool");
            assert_eq!(rows.len(), 1);
            let (p, v) = rows[0].split_once(':').expect("pid:value");
            assert_eq!(
                v,
                (i * 100 + j).to_string(),
                "client {i} got another's result"
            );
            pids.push(p.parse::<i32>().unwrap());
            let v = j as i32;
            let row = c
                .query_typed_one(
                    "SELECT pg_backend_pid(), $1",
                    &[(&v as &(dyn ToSql + Sync), Type::INT4)],
                )
                .await
                .expect("autocommit query through the pool");
            assert_eq!(row.get::<_, i32>(1), j as i32);
            pids.push(row.get(0));
            tokio::task::yield_now().await;
        }
        pids
    });
    let all: Vec<Vec<i32>> = join_all(runs).await;
    assert_eq!(
        all.iter().map(Vec::len).sum::<usize>(),
        100,
        "every query ran"
    );
    let distinct: HashSet<i32> = all.into_iter().flatten().collect();
    assert!(
        distinct.len() <= 2,
        "10 clients on a pool of size 2 used {} server backends: {distinct:?}",
        distinct.len()
    );
    let (_, total, waiting) = only_pool(&proxy).snapshot();
    assert!(total <= 2, "pool total {total} exceeds size 2");
    assert_eq!(waiting, 0);
}

#[tokio::test]
async fn a_transaction_keeps_its_server_while_others_run() {
    let proxy = start_proxy("size = 2", "").await;
    let a = proxy.connect().await;
    let others = join_all((0..4).map(|_| proxy.connect())).await;

    a.simple_query("BEGIN").await.unwrap();
    let a_pid = pid(&a).await;
    let a_xid = simple_col(&a, "SELECT txid_current()").await.unwrap();

    // While A's transaction is open, the others must all share the one remaining server.
    let busy = others.iter().map(|c| async move {
        let mut seen = Vec::new();
        for _ in 0..10 {
            seen.push(pid(c).await);
            tokio::task::yield_now().await;
        }
        seen
    });
    let a_checks = async {
        let mut seen = Vec::new();
        for _ in 0..10 {
            seen.push(pid(&a).await);
            tokio::task::yield_now().await;
        }
        seen
    };
    let (others_seen, a_seen) = tokio::join!(join_all(busy), a_checks);

    assert!(
        a_seen.iter().all(|p| *p == a_pid),
        "pid changed inside BEGIN..COMMIT: started on {a_pid}, saw {a_seen:?}"
    );
    let others_pids: HashSet<i32> = others_seen.into_iter().flatten().collect();
    assert!(
        !others_pids.contains(&a_pid),
        "another client ran on the server of an open transaction ({a_pid})"
    );
    assert_eq!(others_pids.len(), 1, "others used {others_pids:?}");
    // Same transaction throughout.
    assert_eq!(
        simple_col(&a, "SELECT txid_current()").await.unwrap(),
        a_xid
    );
    a.simple_query("COMMIT").await.unwrap();
}

#[tokio::test]
async fn session_mode_keeps_the_server_and_discards_state_on_disconnect() {
    let proxy = start_proxy("mode = \"session\"\nsize = 1", "").await;
    let first = proxy.connect().await;
    let p0 = pid(&first).await;
    first
        .simple_query("SET work_mem = '12345kB'")
        .await
        .unwrap();
    for _ in 0..3 {
        let rows = simple_col(
            &first,
            "BEGIN; SELECT pg_backend_pid()::text || ' ' || current_setting('work_mem'); COMMIT",
        )
        .await
        .unwrap();
        assert_eq!(
            rows,
            [format!("{p0} 12345kB")],
            "session mode moved or lost SET"
        );
    }
    drop(first);

    // Pool size 1: the next client gets the same server once it is cleaned and returned.
    let second = proxy.connect().await;
    let rows = simple_col(
        &second,
        "SELECT pg_backend_pid()::text || ' ' || current_setting('work_mem')",
    )
    .await
    .unwrap();
    let (p1, work_mem) = rows[0].split_once(' ').unwrap();
    assert_ne!(
        work_mem, "12345kB",
        "the previous session's SET leaked to the next client"
    );
    assert_eq!(
        p1.parse::<i32>().unwrap(),
        p0,
        "the server was closed instead of cleaned (DISCARD ALL) and reused"
    );
}

#[tokio::test]
async fn checkout_timeout_fails_the_waiter_with_53300_and_it_stays_usable() {
    let proxy = start_proxy("size = 1\ncheckout_timeout_ms = 300", "").await;
    let a = proxy.connect().await;
    let b = proxy.connect().await;
    a.simple_query("BEGIN; SELECT 1").await.unwrap();

    let started = Instant::now();
    let err = b
        .simple_query("SELECT 2")
        .await
        .expect_err("B must not get a server while A holds the only one");
    let waited = started.elapsed();
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"), "{err:?}");
    let msg = err.as_db_error().unwrap().message().to_owned();
    assert!(
        msg.contains("pool.checkout_timeout_ms"),
        "message should name the setting: {msg}"
    );
    assert!(
        waited >= Duration::from_millis(250),
        "gave up after {waited:?}, before checkout_timeout_ms"
    );
    assert!(
        waited < Duration::from_secs(5),
        "gave up after {waited:?}, long after checkout_timeout_ms"
    );
    let pool = only_pool(&proxy);
    assert!(
        pool.counters
            .timeouts
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );

    // A was not disturbed, and B is usable once A is done.
    assert_eq!(simple_col(&a, "SELECT 3").await.unwrap(), ["3"]);
    a.simple_query("COMMIT").await.unwrap();
    assert_eq!(simple_col(&b, "SELECT 4").await.unwrap(), ["4"]);
    assert_eq!(pool.snapshot().2, 0, "no waiter left behind");
}

#[tokio::test]
async fn checkout_timeout_fails_every_pipelined_request_alike() {
    // The oracle: Postgres answers each failing pipelined request with its own error.
    let c = cluster();
    let url = c.url(&c.primary, DB).replacen(
        "postgres://",
        &format!("postgres://{}:{}@", SCRAM_USER.0, SCRAM_USER.1),
        1,
    );
    let (direct, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let results = join_all((0..5).map(|_| direct.query_typed("SELECT 1/0", &[]))).await;
    for r in results {
        assert_eq!(sqlstate(&r.expect_err("1/0")).as_deref(), Some("22012"));
    }

    let proxy = start_proxy("size = 1\ncheckout_timeout_ms = 300", "").await;
    let a = proxy.connect().await;
    let b = proxy.connect().await;
    a.simple_query("BEGIN; SELECT 1").await.unwrap();
    // Five requests in flight at once (each its own Sync): as with a server error, each one
    // is answered with its own ErrorResponse before its ReadyForQuery.
    let results = join_all((0..5i32).map(|i| {
        let b = &b;
        async move {
            b.query_typed("SELECT $1", &[(&i as &(dyn ToSql + Sync), Type::INT4)])
                .await
        }
    }))
    .await;
    for (i, r) in results.into_iter().enumerate() {
        let err = r.expect_err("no server within checkout_timeout_ms");
        assert_eq!(
            sqlstate(&err).as_deref(),
            Some("53300"),
            "pipelined request {i}: {err:?}"
        );
    }
    a.simple_query("COMMIT").await.unwrap();
    assert_eq!(simple_col(&b, "SELECT 4").await.unwrap(), ["4"]);
}

#[tokio::test]
async fn checkout_queue_is_first_in_first_out() {
    let proxy = start_proxy("size = 1\ncheckout_timeout_ms = 20000", "").await;
    let a = proxy.connect().await;
    a.simple_query("DROP SEQUENCE IF EXISTS pool_fifo_seq; CREATE SEQUENCE pool_fifo_seq")
        .await
        .unwrap();
    let waiters = join_all((0..4).map(|_| proxy.connect())).await;
    let pool = only_pool(&proxy);
    a.simple_query("BEGIN; SELECT 1").await.unwrap();

    // Queue the waiters one at a time, in a known order.
    let mut pending = Vec::new();
    for (i, w) in waiters.iter().enumerate() {
        pending.push(async move {
            let v = simple_col(w, "SELECT nextval('pool_fifo_seq')").await;
            (i, v)
        });
    }
    let mut started = Vec::new();
    for (i, fut) in pending.into_iter().enumerate() {
        let handle = Box::pin(fut);
        started.push(handle);
        // Poll the new request until the pool has queued it.
        let want = i + 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.snapshot().2 < want {
            assert!(Instant::now() < deadline, "waiter {i} never queued");
            let _ = futures_util::poll!(started.last_mut().unwrap());
            tokio::task::yield_now().await;
        }
    }
    a.simple_query("COMMIT").await.unwrap();
    let results = join_all(started).await;
    for (i, v) in results {
        let v = v.unwrap_or_else(|e| panic!("waiter {i} failed: {e}"));
        assert_eq!(
            v,
            [(i + 1).to_string()],
            "waiter {i} was served out of queue order"
        );
    }
    a.simple_query("DROP SEQUENCE pool_fifo_seq").await.unwrap();
}

#[tokio::test]
async fn max_client_conn_refuses_the_third_client_with_53300() {
    let proxy = start_proxy("size = 2", "max_client_conn = 2").await;
    let c1 = proxy.connect().await;
    let c2 = proxy.connect().await;
    let conninfo = proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB);
    let err = match proxy.try_connect(&conninfo).await {
        Ok(_) => panic!("a third client got in past max_client_conn = 2"),
        Err(e) => e,
    };
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"), "{err:?}");
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("max_client_conn"),
        "{err}"
    );
    // The two admitted clients are fine, and a slot frees up when one leaves.
    assert_eq!(simple_col(&c1, "SELECT 1").await.unwrap(), ["1"]);
    drop(c2);
    eventually(
        "a freed client slot admits a new client",
        Duration::from_secs(10),
        || {
            let conninfo = conninfo.clone();
            let proxy = &proxy;
            async move { proxy.try_connect(&conninfo).await.is_ok() }
        },
    )
    .await;
}

#[tokio::test]
async fn a_pool_whose_server_is_down_fails_logins_fast() {
    let c = cluster();
    let port = closed_port();
    let good = c.url(&c.primary, DB);
    let base = base_config("checkout_timeout_ms = 60000\nconnect_timeout_ms = 3000", "");
    assert!(base.contains(&good));
    let toml = base.replace(&good, &format!("postgres://127.0.0.1:{port}/{DB}"));
    let proxy = start_proxy_with(&toml).await;
    let conninfo = proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB);

    let started = Instant::now();
    let attempts = join_all((0..5).map(|_| proxy.try_connect(&conninfo)));
    let results = tokio::time::timeout(Duration::from_secs(20), attempts)
        .await
        .expect("logins queued instead of failing fast (checkout_timeout_ms is 60 s)");
    for r in results {
        let err = match r {
            Ok(_) => panic!("login succeeded against a closed port"),
            Err(e) => e,
        };
        let db = err
            .as_db_error()
            .unwrap_or_else(|| panic!("expected an error from the proxy, got {err:?}"));
        let code = db.code().code();
        assert_ne!(code, "53300", "a down server is not a pool timeout: {db:?}");
        assert!(
            code.starts_with("08"),
            "expected a connection error class 08: {db:?}"
        );
        let msg = db.message();
        assert!(
            msg.contains("connect") || msg.contains("unavailable"),
            "message should name the server problem: {msg}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn server_lifetime_replaces_old_connections() {
    let proxy = start_proxy("size = 1\nserver_lifetime_ms = 200", "").await;
    let client = proxy.connect().await;
    let first = pid(&client).await;
    eventually(
        "a server connection past server_lifetime_ms is replaced",
        Duration::from_secs(10),
        || {
            let client = &client;
            async move { pid(client).await != first }
        },
    )
    .await;
    let (_, total, _) = only_pool(&proxy).snapshot();
    assert!(total <= 1, "old connection not closed: total {total}");
}

#[tokio::test]
async fn server_idle_timeout_shrinks_the_pool_to_min_idle() {
    let proxy = start_proxy("size = 4\nmin_idle = 1\nserver_idle_timeout_ms = 200", "").await;
    let clients = join_all((0..4).map(|_| proxy.connect())).await;
    // Four open transactions at once force four server connections.
    for c in &clients {
        c.simple_query("BEGIN; SELECT 1").await.unwrap();
    }
    let pool = only_pool(&proxy);
    assert_eq!(pool.snapshot().1, 4);
    let pids: HashSet<i32> = join_all(clients.iter().map(pid))
        .await
        .into_iter()
        .collect();
    assert_eq!(pids.len(), 4);
    for c in &clients {
        c.simple_query("COMMIT").await.unwrap();
    }
    eventually(
        "idle connections past server_idle_timeout_ms are closed down to min_idle",
        Duration::from_secs(15),
        || {
            let pool = &pool;
            async move { pool.snapshot().1 == 1 }
        },
    )
    .await;
    let (idle, total, _) = pool.snapshot();
    assert_eq!((idle, total), (1, 1));
    // The backends really went away on the server.
    let list = pids
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    eventually("the closed backends exit", Duration::from_secs(10), || {
        let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE pid IN ({list})");
        async move { admin_sql(&sql) == "1" }
    })
    .await;
    // Still serving.
    assert_eq!(simple_col(&clients[0], "SELECT 5").await.unwrap(), ["5"]);
}

#[tokio::test]
async fn min_idle_opens_connections_ahead_of_demand() {
    let proxy = start_proxy("size = 4\nmin_idle = 2", "").await;
    let _client = proxy.connect().await;
    let pool = only_pool(&proxy);
    eventually(
        "the pool warms up to min_idle = 2 idle connections without queries",
        Duration::from_secs(10),
        || {
            let pool = &pool;
            async move {
                let (idle, total, _) = pool.snapshot();
                idle >= 2 && idle == total
            }
        },
    )
    .await;
    // min_idle = 2, plus at most the connection the first login opened itself if it raced
    // the warm-up; never more with no load.
    let (idle, total, waiting) = pool.snapshot();
    assert!(
        total <= 3,
        "min_idle = 2 with no load opened {total} connections ({idle} idle)"
    );
    assert_eq!(waiting, 0);
}

/// A queued checkout cancelled just after a connection was handed to it (its client left,
/// KILL, shutdown) gives that connection back: the pool keeps its slot, and the next checkout
/// gets a server at once instead of timing out.
#[tokio::test]
async fn a_cancelled_waiter_does_not_lose_the_connection_handed_to_it() {
    let proxy = start_proxy("size = 1\ncheckout_timeout_ms = 5000", "").await;
    let client = proxy.connect().await;
    client.simple_query("SELECT 1").await.unwrap();
    let pool = only_pool(&proxy);
    let deadline = || Instant::now() + Duration::from_secs(5);
    let held = pool.checkout(deadline()).await.expect("the one connection");
    let waiter = tokio::spawn({
        let pool = Arc::clone(&pool);
        async move { pool.checkout(deadline()).await.map(drop) }
    });
    wait_for_waiters("the second checkout queued", &pool, 1).await;
    // This test's runtime has one thread: the waiter cannot run between these two lines, so
    // the connection sits in its channel when it is cancelled.
    held.release();
    waiter.abort();
    assert!(waiter.await.expect_err("aborted").is_cancelled());
    let again = tokio::time::timeout(Duration::from_secs(2), pool.checkout(deadline()))
        .await
        .expect("the connection came back to the pool, not lost with the cancelled waiter")
        .expect("checkout");
    again.release();
    assert_eq!(pool.stats().active, 0);
    client.simple_query("SELECT 2").await.unwrap();
}

/// KILL and PAUSE close a database's idle connections; one lent at that moment must be closed
/// when it comes back, not parked idle (found in review: a client releasing just after KILL
/// left a server idle in the killed database, which the KILL test saw now and then).
#[tokio::test]
async fn a_connection_lent_during_close_idle_is_closed_on_return() {
    let proxy = start_proxy("size = 2", "").await;
    let client = proxy.connect().await;
    client.simple_query("SELECT 1").await.unwrap();
    let pool = only_pool(&proxy);
    let held = pool
        .checkout(Instant::now() + Duration::from_secs(5))
        .await
        .expect("a connection");
    pool.close_idle();
    held.release();
    let stats = pool.stats();
    assert_eq!(
        (stats.idle, stats.active),
        (0, 0),
        "the returned connection was closed, not kept"
    );
    // The pool still serves: a new connection is opened on demand.
    assert_eq!(
        client.simple_query("SELECT 2").await.map(|m| m.len()).ok(),
        Some(3)
    );
}
