//! The metrics endpoint (`server.metrics_listen`): `/metrics` after real queries has the
//! series of DESIGN.md section 6 with their labels, real histogram buckets and help texts;
//! `/healthz` and `/readyz` answer; bad requests get 4xx without taking the endpoint down.
//!
//! The recorder is one per process and the sampled gauges are keyed by database name, so the
//! tests here take [`LOCK`]: two of them sampling `lagoon_test` at once would overwrite each
//! other's values between sample and render.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const METRICS: &str = "metrics_listen = \"127.0.0.1:0\"";

/// A raw HTTP exchange: (status, headers text, body).
async fn http_raw(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.expect("connect to metrics");
        s.write_all(request).await.expect("write request");
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read response");
        out
    };
    let out = tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .expect("metrics endpoint answers within 20 s");
    let text = String::from_utf8(out).expect("response is UTF-8");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head.to_owned(), body.to_owned())
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    http_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: lagoon\r\nUser-Agent: test\r\n\r\n").as_bytes(),
    )
    .await
}

fn metrics_addr(proxy: &TestProxy) -> SocketAddr {
    *proxy
        .shared
        .metrics_addr
        .get()
        .expect("metrics_listen set: the endpoint is bound")
}

/// The value of the series `series` (name and labels exactly as rendered) in `body`.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split(' ').next()?.parse().ok()
    })
}

fn must(body: &str, series: &str) -> f64 {
    value(body, series).unwrap_or_else(|| panic!("series {series} missing from:\n{body}"))
}

/// The test database plus `lagoon_test_ro`: the same data on the cluster's primary and both
/// replicas, so a health monitor runs and the replica gauges appear.
fn config_with_replicas() -> String {
    let c = cluster();
    format!(
        "{}\n[[databases]]\nname = \"lagoon_test_ro\"\nprimary = \"{}\"\nreplicas = [{}]\n",
        base_config("size = 2", METRICS),
        c.url(&c.primary, DB),
        replica_urls_toml(c, DB)
    )
}

#[tokio::test]
async fn scrape_after_queries_has_the_series_labels_and_buckets() {
    let _serial = LOCK.lock().await;
    let proxy = start_proxy_with(&config_with_replicas()).await;
    let addr = metrics_addr(&proxy);
    let client = proxy.connect().await;
    for i in 0..5i32 {
        let row = client.query_one("SELECT $1::int + 1", &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
    }
    client.simple_query("SELECT 1").await.unwrap();

    let (status, head, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(head.contains("Connection: close"), "{head}");

    // Pool and client gauges, sampled now: the client is between transactions, so its
    // server connection is back in the pool.
    let db = "database=\"lagoon_test\"";
    let idle = must(
        &body,
        &format!("lagoon_server_connections{{{db},member=\"primary\",state=\"idle\"}}"),
    );
    assert!(idle >= 1.0, "idle server connections: {idle}");
    must(
        &body,
        &format!("lagoon_server_connections{{{db},member=\"primary\",state=\"active\"}}"),
    );
    must(
        &body,
        &format!("lagoon_server_connections{{{db},member=\"primary\",state=\"connecting\"}}"),
    );
    // Configured members appear before their first client.
    must(
        &body,
        "lagoon_server_connections{database=\"lagoon_test_ro\",member=\"replica2\",state=\"idle\"}",
    );
    assert!(must(&body, "lagoon_client_connections{state=\"active\"}") >= 1.0);
    must(&body, "lagoon_client_connections{state=\"waiting\"}");
    assert_eq!(
        must(&body, &format!("lagoon_pool_clients_waiting{{{db}}}")),
        0.0
    );
    assert_eq!(
        must(&body, &format!("lagoon_pool_max_wait_seconds{{{db}}}")),
        0.0
    );
    must(&body, &format!("lagoon_checkout_timeouts_total{{{db}}}"));
    assert!(body.contains("# TYPE lagoon_checkout_timeouts_total counter"));
    assert!(body.contains("# TYPE lagoon_server_connections gauge"));
    assert!(body.contains("# HELP lagoon_server_connections "));

    // The pool wait histogram: real buckets, not a summary.
    assert!(
        body.contains("# TYPE lagoon_pool_wait_seconds histogram"),
        "{body}"
    );
    assert!(body.contains("# HELP lagoon_pool_wait_seconds "), "{body}");
    for le in ["0.0005", "0.01", "1", "30", "+Inf"] {
        must(
            &body,
            &format!("lagoon_pool_wait_seconds_bucket{{{db},le=\"{le}\"}}"),
        );
    }
    let count = must(&body, &format!("lagoon_pool_wait_seconds_count{{{db}}}"));
    assert!(count >= 6.0, "6 checkouts at least, got {count}");
    assert_eq!(
        must(
            &body,
            &format!("lagoon_pool_wait_seconds_bucket{{{db},le=\"+Inf\"}}")
        ),
        count
    );
    must(&body, &format!("lagoon_pool_wait_seconds_sum{{{db}}}"));
    assert!(
        !body.contains("lagoon_pool_wait_seconds{"),
        "no summary quantiles: {body}"
    );
    // Every query timed: counted by route, a duration histogram with the same buckets.
    let route = "database=\"lagoon_test\",route=\"primary\"";
    let queries = must(&body, &format!("lagoon_queries_total{{{route}}}"));
    assert!(queries >= 6.0, "6 queries at least, got {queries}");
    assert!(body.contains("# TYPE lagoon_query_duration_seconds histogram"));
    for le in ["0.0005", "0.5", "30", "+Inf"] {
        must(
            &body,
            &format!("lagoon_query_duration_seconds_bucket{{{route},le=\"{le}\"}}"),
        );
    }
    let timed = must(
        &body,
        &format!("lagoon_query_duration_seconds_count{{{route}}}"),
    );
    assert!(timed >= 6.0, "6 timed queries at least, got {timed}");
    must(&body, &format!("lagoon_slow_queries_total{{{db}}}"));
    // No user names, SQL or addresses in labels.
    assert!(!body.contains(SCRAM_USER.0), "user name in a label: {body}");
    assert!(!body.contains("SELECT"), "SQL in a label: {body}");

    // The health monitor of lagoon_test_ro publishes the replica gauges.
    eventually(
        "replica gauges in /metrics",
        Duration::from_secs(20),
        || async {
            let (_, _, body) = get(addr, "/metrics").await;
            value(
            &body,
            "lagoon_replica_up{database=\"lagoon_test_ro\",member=\"replica1\"}",
        ) == Some(1.0)
            && value(
                &body,
                "lagoon_replica_lag_bytes{database=\"lagoon_test_ro\",member=\"replica2\"}",
            )
            .is_some()
            && value(
                &body,
                "lagoon_replica_latency_seconds{database=\"lagoon_test_ro\",member=\"primary\"}",
            )
            .is_some()
        },
    )
    .await;

    // Ready: listening, and both databases' primary reachable (by TCP for lagoon_test, by
    // the health monitor for lagoon_test_ro).
    let (status, _, body) = get(addr, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    drop(client);
}

#[tokio::test]
async fn health_paths_and_bad_requests() {
    let _serial = LOCK.lock().await;
    let proxy = start_proxy("size = 1", METRICS).await;
    let addr = metrics_addr(&proxy);

    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(get(addr, "/healthz").await.2, "ok\n");
    assert_eq!(get(addr, "/readyz").await.0, 200);
    assert_eq!(get(addr, "/readyz?full=1").await.0, 200);
    assert_eq!(get(addr, "/nope").await.0, 404);
    assert_eq!(get(addr, "/").await.0, 404);

    let (status, head, _) = http_raw(
        addr,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
    )
    .await;
    assert_eq!(status, 405);
    assert!(head.contains("Allow: GET"), "{head}");

    for garbage in [
        &b"HELLO\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
    ] {
        let (status, _, _) = http_raw(addr, garbage).await;
        assert_eq!(status, 400, "{:?}", String::from_utf8_lossy(garbage));
    }
    // Garbage that ends the connection without a blank line: still answered, with 400.
    let (status, _, _) = {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"\x00\x01\x02garbage").await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        (
            text.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok()),
            (),
            (),
        )
    };
    assert_eq!(status, Some(400));
    // An oversized head is refused without reading it all.
    let mut big = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    big.resize(20 * 1024, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    assert_eq!(http_raw(addr, &big).await.0, 431);

    // Still serving after all that.
    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(get(addr, "/metrics").await.0, 200);
}

#[tokio::test]
async fn readyz_is_503_while_a_primary_is_unreachable() {
    let _serial = LOCK.lock().await;
    // A port nothing listens on: bind one, note it, close it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = format!(
        "{}\n[[databases]]\nname = \"ghost\"\nprimary = \"postgres://127.0.0.1:{closed}/ghost\"\n",
        base_config("size = 1", METRICS)
    );
    let proxy = start_proxy_with(&config).await;
    let addr = metrics_addr(&proxy);
    let (status, _, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready: "), "{body}");
    assert!(body.contains("database \"ghost\""), "{body}");
    assert!(
        !body.contains("lagoon_test"),
        "only the failing database: {body}"
    );
    assert_eq!(body.lines().count(), 1, "one line: {body}");
    // Alive all the same, and the working database still serves.
    assert_eq!(get(addr, "/healthz").await.0, 200);
    let client = proxy.connect().await;
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn a_taken_metrics_address_fails_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = base_config(
        "size = 1",
        &format!("metrics_listen = \"{}\"", taken.local_addr().unwrap()),
    );
    let config = lagoon::config::parse(&config).expect("valid config");
    let err = match lagoon::app::Proxy::bind(config).await {
        Ok(_) => panic!("bind must fail on a taken metrics address"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("server.metrics_listen"), "{err}");
}

#[tokio::test]
async fn a_queued_client_shows_in_the_pool_gauges() {
    let _serial = LOCK.lock().await;
    let proxy = start_proxy("size = 1\ncheckout_timeout_ms = 20000", METRICS).await;
    let addr = metrics_addr(&proxy);
    let holder = proxy.connect().await;
    holder.simple_query("BEGIN").await.unwrap();
    let waiter = proxy.connect().await;
    let queued = tokio::spawn(async move {
        waiter.simple_query("SELECT 1").await.unwrap();
        waiter
    });
    let pool = proxy
        .shared
        .pools
        .all()
        .into_iter()
        .next()
        .expect("the test database's pool exists once a client logged in");
    wait_for_waiters("the second client queued", &pool, 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let (_, _, body) = get(addr, "/metrics").await;
    let db = "database=\"lagoon_test\"";
    assert_eq!(
        must(&body, &format!("lagoon_pool_clients_waiting{{{db}}}")),
        1.0
    );
    let max_wait = must(&body, &format!("lagoon_pool_max_wait_seconds{{{db}}}"));
    assert!((0.05..20.0).contains(&max_wait), "max wait {max_wait}");
    assert_eq!(
        must(
            &body,
            &format!("lagoon_server_connections{{{db},member=\"primary\",state=\"active\"}}")
        ),
        1.0
    );
    assert_eq!(
        must(
            &body,
            &format!("lagoon_server_connections{{{db},member=\"primary\",state=\"idle\"}}")
        ),
        0.0
    );
    assert_eq!(
        must(&body, "lagoon_client_connections{state=\"waiting\"}"),
        1.0
    );
    assert!(must(&body, "lagoon_client_connections{state=\"active\"}") >= 1.0);

    holder.simple_query("COMMIT").await.unwrap();
    let _waiter = queued.await.unwrap();
    let (_, _, body) = get(addr, "/metrics").await;
    assert_eq!(
        must(&body, &format!("lagoon_pool_clients_waiting{{{db}}}")),
        0.0
    );
    assert_eq!(
        must(&body, &format!("lagoon_pool_max_wait_seconds{{{db}}}")),
        0.0
    );
    // The queued checkout's wait is in the histogram's upper buckets.
    let slow = must(
        &body,
        &format!("lagoon_pool_wait_seconds_bucket{{{db},le=\"30\"}}"),
    ) - must(
        &body,
        &format!("lagoon_pool_wait_seconds_bucket{{{db},le=\"0.025\"}}"),
    );
    assert!(slow >= 1.0, "a wait over 25 ms recorded: {body}");
}

#[tokio::test]
async fn readyz_says_draining_while_transactions_finish() {
    let _serial = LOCK.lock().await;
    let proxy = start_proxy("size = 1", METRICS).await;
    let addr = metrics_addr(&proxy);
    let client = proxy.connect().await;
    client.simple_query("BEGIN").await.unwrap();
    assert_eq!(get(addr, "/readyz").await.0, 200);
    proxy.shared.shutdown.begin_drain(Duration::from_secs(30));
    // The open transaction keeps the proxy draining; the endpoint still answers.
    let (status, _, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready: draining"), "{body}");
    assert_eq!(get(addr, "/healthz").await.0, 200);
    client.simple_query("COMMIT").await.unwrap();
}
