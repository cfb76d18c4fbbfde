//! Per-query timing end to end: the slow-query log (one JSON line per slow query, with its
//! phases and no literal), the fingerprint table ranking by p99, `SHOW STATS` totals, and
//! requests the proxy answers itself (a checkout timeout) timed as pool wait.

use std::time::Duration;

use crate::harness::*;

/// A fresh slow-log file path for one test.
fn log_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("lagoon-slow-{name}-{}.jsonl", std::process::id()))
}

fn slow_config(log: &std::path::Path, pool: &str) -> String {
    format!(
        "{}\n[slow_query]\nthreshold_ms = 500\nlog = \"{}\"\n",
        base_config(pool, ""),
        log.display()
    )
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

fn ms(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

#[tokio::test]
async fn a_slow_query_gives_one_line_with_its_phases_and_no_literal() {
    let path = log_path("one");
    let _ = std::fs::remove_file(&path);
    let proxy = start_proxy_with(&slow_config(&path, "size = 2")).await;
    let client = proxy.connect().await;
    // Fast queries (simple and extended) around the slow one: not logged.
    for i in 0..20i32 {
        client.query_one("SELECT $1::int", &[&i]).await.unwrap();
    }
    client
        .simple_query("SELECT pg_sleep(0.6), 'very-secret-literal' AS s")
        .await
        .unwrap();
    client.simple_query("SELECT 'another', 42").await.unwrap();

    eventually(
        "the slow line is written",
        Duration::from_secs(20),
        || async { !lines(&path).is_empty() },
    )
    .await;
    // The fast query after it is recorded by now too: had it been slow, it would be there.
    let stats = proxy.shared.stats.aggregate();
    eventually("every query recorded", Duration::from_secs(20), || async {
        stats
            .top(100, lagoon::stats::Order::Calls)
            .iter()
            .map(|q| q.calls)
            .sum::<u64>()
            >= 22
    })
    .await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("very-secret-literal"),
        "literal logged: {text}"
    );
    assert!(!text.contains("0.6"), "literal logged: {text}");
    let got = lines(&path);
    assert_eq!(got.len(), 1, "exactly one slow line: {text}");
    let line = &got[0];
    assert_eq!(line["query"], "SELECT pg_sleep($1), $2 AS s", "{line}");
    assert_eq!(line["database"], DB);
    assert_eq!(line["user"], SCRAM_USER.0);
    assert_eq!(line["member"], "primary");
    assert_eq!(line["route"], "primary");
    assert_eq!(line["rows"], 1);
    assert!(line["sqlstate"].is_null(), "{line}");
    assert!(
        line.get("text").is_none(),
        "text only with log_parameters: {line}"
    );
    let fp = line["fingerprint"].as_str().expect("fingerprint");
    assert_eq!(fp.len(), 16, "{fp}");
    let (total, wait, server, client_ms) = (
        ms(line, "duration_ms"),
        ms(line, "pool_wait_ms"),
        ms(line, "server_ms"),
        ms(line, "client_ms"),
    );
    assert!(total >= 600.0, "total {total}");
    assert!(
        server >= 590.0 && server <= total,
        "server {server} of {total}"
    );
    assert!(wait >= 0.0 && wait + server <= total + 0.001, "{line}");
    assert!((0.0..100.0).contains(&client_ms), "{line}");

    // The table knows it: the slowest by p99, one call, one slow.
    let top = stats.top(3, lagoon::stats::Order::P99);
    assert_eq!(format!("{:016x}", top[0].fingerprint), fp);
    assert_eq!((top[0].calls, top[0].slow), (1, 1));
    assert!(top[0].p99 >= Duration::from_millis(600));
    let select = stats
        .top(100, lagoon::stats::Order::Calls)
        .into_iter()
        .find(|q| &*q.query == "SELECT $1::int")
        .expect("the extended query's fingerprint");
    assert_eq!((select.calls, select.rows, select.slow), (20, 20, 0));
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn show_stats_totals_count_queries_transactions_and_errors() {
    let path = log_path("totals");
    let proxy = start_proxy_with(&slow_config(&path, "size = 2")).await;
    let client = proxy.connect().await;
    let db = proxy.shared.stats.database(DB);
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    client
        .batch_execute("CREATE TEMP TABLE IF NOT EXISTS t (x int)")
        .await
        .ok();
    let (q0, x0, e0) = (load(&db.queries), load(&db.xacts), load(&db.errors));
    client
        .batch_execute("BEGIN; SELECT 1; SELECT 2; COMMIT")
        .await
        .unwrap();
    client.simple_query("BEGIN").await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    client.simple_query("COMMIT").await.unwrap();
    let err = client
        .simple_query("SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42P01"));
    eventually("totals counted", Duration::from_secs(10), || async {
        // One Query message with four statements, three Queries, one failing Query (the
        // temporary table pins this client: its totals must not wait for a release).
        load(&db.queries) - q0 == 5 && load(&db.received) > 0 && load(&db.sent) > 0
    })
    .await;
    // Two transaction blocks and the failed autocommit query.
    assert_eq!(load(&db.xacts) - x0, 3);
    assert_eq!(load(&db.errors) - e0, 1);
    assert!(load(&db.server_assignments) >= 1);
    let failed = proxy
        .shared
        .stats
        .aggregate()
        .top(100, lagoon::stats::Order::Calls)
        .into_iter()
        .find(|q| q.query.contains("no_such_table"))
        .expect("the failing query's fingerprint");
    assert_eq!((failed.calls, failed.errors), (1, 1));
}

#[tokio::test]
async fn a_checkout_timeout_is_timed_as_pool_wait() {
    let path = log_path("timeout");
    let _ = std::fs::remove_file(&path);
    let proxy = start_proxy_with(&format!(
        "{}\n[slow_query]\nthreshold_ms = 100\nlog = \"{}\"\n",
        base_config("size = 1\ncheckout_timeout_ms = 300", ""),
        path.display()
    ))
    .await;
    let holder = proxy.connect().await;
    holder.simple_query("BEGIN").await.unwrap();
    let waiter = proxy.connect().await;
    let err = waiter.simple_query("SELECT 7").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"));
    eventually(
        "the timed-out query is logged",
        Duration::from_secs(20),
        || async { !lines(&path).is_empty() },
    )
    .await;
    let got = lines(&path);
    let line = &got[0];
    assert_eq!(line["query"], "SELECT $1", "{line}");
    assert_eq!(line["sqlstate"], "53300", "{line}");
    assert_eq!(line["member"], "", "{line}");
    let (total, wait) = (ms(line, "duration_ms"), ms(line, "pool_wait_ms"));
    assert!(total >= 300.0 && (total - wait).abs() < 1.0, "{line}");
    holder.simple_query("COMMIT").await.unwrap();
    let _ = std::fs::remove_file(&path);
}

/// An extended-protocol COPY FROM STDIN (tokio-postgres sends Bind, Execute, Sync, then the
/// data, CopyDone and Sync; one ReadyForQuery answers) is one query, and the queries after it
/// are recorded with their own text and rows.
#[tokio::test]
async fn an_extended_copy_counts_once_and_the_next_queries_line_up() {
    use futures_util::SinkExt;
    let proxy = start_proxy("size = 2", "").await;
    let client = proxy.connect().await;
    client
        .batch_execute("CREATE TEMP TABLE copy_timing (v int)")
        .await
        .unwrap();
    let sink = client.copy_in("COPY copy_timing FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"1\n2\n3\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 3);
    for _ in 0..3 {
        let n: i64 = client
            .query_one("SELECT count(*) FROM copy_timing", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 3);
    }
    let stats = proxy.shared.stats.aggregate();
    let find = |text: &str| {
        stats
            .top(100, lagoon::stats::Order::Calls)
            .into_iter()
            .find(|q| &*q.query == text)
            .unwrap_or_else(|| {
                panic!(
                    "no {text:?} in {:?}",
                    stats.top(100, lagoon::stats::Order::Calls)
                )
            })
    };
    eventually(
        "the last query recorded",
        Duration::from_secs(10),
        || async {
            stats
                .top(100, lagoon::stats::Order::Calls)
                .iter()
                .any(|q| &*q.query == "SELECT count(*) FROM copy_timing" && q.calls == 3)
        },
    )
    .await;
    let copy = find("COPY copy_timing FROM STDIN");
    assert_eq!((copy.calls, copy.rows), (1, 3));
    let count = find("SELECT count(*) FROM copy_timing");
    assert_eq!((count.calls, count.rows, count.errors), (3, 3, 0));
}
