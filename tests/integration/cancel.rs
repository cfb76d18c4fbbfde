//! Cancel (issue 2, item 9): a CancelRequest reaches the server running the client's query, never
//! waits for a pool slot, does nothing when the client is idle or the key is wrong; a cancelled
//! query returns 57014 and the client stays usable.

use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

use crate::faultkit::*;
use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_query_and_the_client_stays_usable() {
    let proxy = start_proxy("size = 2", "").await;
    let client = proxy.connect().await;
    let marker = "cancel_running_q1";
    let token = client.cancel_token();
    let sql = format!("SELECT pg_sleep(30) /* {marker} */");
    let (res, sent_at) = tokio::join!(client.simple_query(&sql), async {
        wait_marker_active(marker).await;
        token.cancel_query(NoTls).await.expect("send cancel");
        Instant::now()
    });
    let err = res.expect_err("a cancelled query must fail");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err}");
    assert!(
        sent_at.elapsed() < Duration::from_secs(5),
        "the query ended {:?} after the cancel",
        sent_at.elapsed()
    );
    wait_marker_gone(marker, Duration::from_secs(5)).await;
    // Same client, same session: usable, and not left inside a transaction.
    assert_eq!(scalar(&client, "SELECT 1").await.as_deref(), Some("1"));
    assert_eq!(
        scalar(&client, "SELECT txid_current_if_assigned()").await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_does_not_wait_for_a_pool_slot() {
    let proxy = start_proxy("size = 1\ncheckout_timeout_ms = 30000", "").await;
    let a = proxy.connect().await;
    let b = proxy.connect().await;
    let pool = only_pool(&proxy);
    let marker = "cancel_full_pool_q2";
    let token = a.cancel_token();
    // A holds the only server connection with a long query.
    let a_task = tokio::spawn(async move {
        let r = a
            .simple_query(&format!("SELECT pg_sleep(30) /* {marker} */"))
            .await;
        (a, r, Instant::now())
    });
    wait_marker_active(marker).await;
    // B queues behind it.
    let b_task = tokio::spawn(async move { rows(&b, "SELECT 2").await });
    wait_for_waiters("B waiting in the checkout queue", &pool, 1).await;

    let sent = Instant::now();
    token.cancel_query(NoTls).await.expect("send cancel");
    let (a, res, ended) = tokio::time::timeout(Duration::from_secs(10), a_task)
        .await
        .expect("A's query was not cancelled while B waited for the only server")
        .unwrap();
    let err = res.expect_err("a cancelled query must fail");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err}");
    assert!(
        ended.duration_since(sent) < Duration::from_secs(5),
        "cancel took {:?}",
        ended.duration_since(sent)
    );
    // Then B gets the server, and A keeps working.
    let b_rows = tokio::time::timeout(Duration::from_secs(10), b_task)
        .await
        .expect("B never got the server")
        .unwrap()
        .expect("B's query");
    assert_eq!(b_rows, [Some("2".to_owned())]);
    assert_eq!(scalar(&a, "SELECT 1").await.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_idle_does_nothing() {
    // One server: what A ran on is exactly what B runs on next.
    let proxy = start_proxy("size = 1\ncheckout_timeout_ms = 30000", "").await;
    let mut a = Raw::login_trust(proxy.addr, TRUST_USER.0, DB).await;
    let a_server = first_value(&a.simple("SELECT pg_backend_pid()").await).unwrap();
    let b = proxy.connect_as(TRUST_USER.0, "unused", DB).await;
    let marker = "cancel_idle_q3";
    let b_task = tokio::spawn(async move {
        let r = rows(
            &b,
            &format!("SELECT pg_backend_pid()::text || ' ' || pg_sleep(2)::text /* {marker} */"),
        )
        .await;
        (b, r)
    });
    wait_marker_active(marker).await;
    // A is idle: its cancel must not touch the server it used last, now running B's query.
    raw_cancel(proxy.addr, a.pid, a.secret).await;
    let (b, res) = tokio::time::timeout(Duration::from_secs(10), b_task)
        .await
        .expect("B's query did not finish")
        .unwrap();
    let res = res.unwrap_or_else(|e| {
        panic!(
            "B's query failed after an idle client's cancel ({:?}): {e}",
            sqlstate(&e)
        )
    });
    let b_server = res[0].clone().unwrap();
    assert_eq!(
        b_server.split(' ').next(),
        Some(a_server.as_str()),
        "B should have run on the server A used (pool size 1)"
    );
    // A itself is unaffected.
    let a_rows = a.simple("SELECT 1").await;
    assert_eq!(first_error(&a_rows), None);
    assert_eq!(first_value(&a_rows).as_deref(), Some("1"));
    assert_eq!(scalar(&b, "SELECT 3").await.as_deref(), Some("3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_with_a_wrong_key_does_nothing() {
    let proxy = start_proxy("size = 2", "").await;
    let mut a = Raw::login_trust(proxy.addr, TRUST_USER.0, DB).await;
    let marker = "cancel_wrong_key_q4";
    a.send(&query(&format!("SELECT pg_sleep(1.5) /* {marker} */")))
        .await
        .unwrap();
    wait_marker_active(marker).await;
    raw_cancel(proxy.addr, a.pid, a.secret ^ 1).await;
    raw_cancel(proxy.addr, a.pid ^ 0x10, a.secret).await;
    raw_cancel(proxy.addr, a.pid, !a.secret).await;
    let reply = a.read_until_ready().await.expect("connection closed");
    assert_eq!(
        first_error(&reply),
        None,
        "a CancelRequest with a wrong key cancelled the query"
    );
    assert!(reply.iter().any(|m| m.tag == b'C'), "{reply:?}");

    // Control: the right key on the same raw path does cancel.
    let marker2 = "cancel_right_key_q4";
    a.send(&query(&format!("SELECT pg_sleep(30) /* {marker2} */")))
        .await
        .unwrap();
    wait_marker_active(marker2).await;
    let sent = Instant::now();
    raw_cancel(proxy.addr, a.pid, a.secret).await;
    let reply = a.read_until_ready().await.expect("connection closed");
    assert_eq!(first_error(&reply).as_deref(), Some("57014"));
    assert!(sent.elapsed() < Duration::from_secs(5));
    assert_eq!(
        first_value(&a.simple("SELECT 1").await).as_deref(),
        Some("1")
    );
}

/// Under `server_tls = "verify-full"` the cancel reaches the server over TLS too (its key never
/// crosses in clear) and still stops the query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_server_under_verify_full() {
    let text = format!(
        "{}server_tls = \"verify-full\"\nserver_tls_ca = {:?}\n",
        base_config("size = 2", ""),
        crate::certs::path_str(&crate::certs::pki().ca())
    );
    let proxy = start_proxy_with(&text).await;
    let client = proxy.connect().await;
    let marker = "cancel_verify_full_q1";
    let token = client.cancel_token();
    let sql = format!("SELECT pg_sleep(30) /* {marker} */");
    let (res, ()) = tokio::join!(client.simple_query(&sql), async {
        wait_marker_active(marker).await;
        token.cancel_query(NoTls).await.expect("send cancel");
    });
    let err = res.expect_err("a cancelled query must fail");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err}");
    wait_marker_gone(marker, Duration::from_secs(5)).await;
}
