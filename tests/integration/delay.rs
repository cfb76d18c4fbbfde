//! A TCP delay proxy for the routing tests: it sits in front of a server and holds every chunk
//! it forwards, in each direction, for a configurable number of milliseconds, so a replica
//! looks slower (higher latency) without being any different otherwise. The delay is an
//! `Arc<AtomicU64>` the test may change while connections are open.
//!
//! Each direction is a FIFO of (chunk, when it may be sent): a reader task stamps each chunk
//! with `now + delay` as it arrives and a writer task sends them in order once due. Chunks are
//! never reordered (lowering the delay only lets later chunks follow sooner), and the delay
//! adds latency, not a throughput cap: many chunks can be in the queue at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::harness::*;

/// A running delay proxy. Dropping it closes the listener and every proxied connection.
pub struct DelayProxy {
    pub addr: SocketAddr,
    /// Milliseconds added to every chunk in each direction (so a round trip gets twice this).
    pub delay_ms: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl DelayProxy {
    /// Listens on 127.0.0.1:0 and forwards each connection to `target` with `delay_ms`.
    pub async fn start(target: SocketAddr, delay_ms: u64) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind delay proxy");
        let addr = listener.local_addr().expect("delay proxy addr");
        let delay = Arc::new(AtomicU64::new(delay_ms));
        let d = Arc::clone(&delay);
        let task = tokio::spawn(async move {
            // Owned here: aborting the accept task drops the set, which aborts every connection.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        let d = Arc::clone(&d);
                        conns.spawn(async move { relay(client, target, d).await });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        DelayProxy {
            addr,
            delay_ms: delay,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Changes the delay for chunks read from now on.
    pub fn set_delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::Relaxed);
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards one connection both ways until either side closes.
async fn relay(client: TcpStream, target: SocketAddr, delay: Arc<AtomicU64>) {
    let Ok(server) = TcpStream::connect(target).await else {
        return; // the client sees the connection close, as with a dead server
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = direction(cr, sw, Arc::clone(&delay));
    let down = direction(sr, cw, delay);
    // When one direction ends (EOF or error) the other is dropped with it: the sockets close.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// One direction: read chunks, stamp them, send each once its time has come, in order. Ends
/// after forwarding the EOF (a write shutdown), or on an error either side.
async fn direction(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Arc<AtomicU64>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Bytes)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break, // dropping tx ends the writer after the queue drains
                Ok(n) => {
                    let due = Instant::now() + Duration::from_millis(delay.load(Ordering::Relaxed));
                    if tx.send((due, Bytes::copy_from_slice(&buf[..n]))).is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            // A chunk already due goes at once: the timer rounds a sleep up to its next
            // millisecond tick, which would make "no delay" cost ~2 ms per round trip.
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// Median of a few `SELECT 1` round trips, in milliseconds.
async fn median_rtt_ms(client: &tokio_postgres::Client, n: usize) -> f64 {
    let mut rtts = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client.simple_query("SELECT 1").await.expect("SELECT 1");
        rtts.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    rtts.sort_by(f64::total_cmp);
    rtts[n / 2]
}

/// The SCRAM test user straight to the routing cluster's primary through a delay proxy.
async fn connect_via(proxy: &DelayProxy) -> tokio_postgres::Client {
    let conninfo = format!(
        "host=127.0.0.1 port={} user={} password={} dbname={DB}",
        proxy.port(),
        SCRAM_USER.0,
        SCRAM_USER.1
    );
    let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect through the delay proxy failed: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The routing cluster's psql (same version as its servers).
fn psql() -> String {
    routing_cluster()
        .bin_dir()
        .join("psql")
        .to_string_lossy()
        .into_owned()
}

fn primary_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], primary_port()))
}

#[tokio::test]
async fn delay_proxy_adds_its_delay_to_every_round_trip_and_can_change_it() {
    // The routing tests stop the routing cluster's primary: wait for them.
    let _lock = routing_lock().await;
    let proxy = DelayProxy::start(primary_addr(), 0).await;
    let client = connect_via(&proxy).await;
    assert_eq!(served_by(&client).await, primary_port());
    let base = median_rtt_ms(&client, 9).await;

    proxy.set_delay(30);
    // Chunks already stamped are not affected; the next query is.
    let slow = median_rtt_ms(&client, 5).await;
    eprintln!(
        "delay proxy: SELECT 1 median round trip {base:.2} ms at 0 ms, {slow:.2} ms at 30 ms"
    );
    assert!(
        slow >= 60.0 && slow - base >= 30.0,
        "a 30 ms delay each way must make a round trip >= 60 ms: {base:.2} -> {slow:.2} ms"
    );
    assert!(
        slow < base + 60.0 + 200.0,
        "delay far above the setting: {slow:.2} ms"
    );

    proxy.set_delay(0);
    let again = median_rtt_ms(&client, 9).await;
    eprintln!("delay proxy: back to 0 ms: {again:.2} ms");
    assert!(
        again < 30.0,
        "delay set to 0 but round trip still {again:.2} ms"
    );
}

#[tokio::test]
async fn delay_proxy_keeps_order_and_carries_large_results_and_psql() {
    let _lock = routing_lock().await;
    let proxy = DelayProxy::start(primary_addr(), 5).await;
    let client = connect_via(&proxy).await;
    // Many chunks in flight (a ~1 MB result) arrive whole and in order.
    let rows = client
        .query(
            "SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 4000) g ORDER BY g",
            &[],
        )
        .await
        .expect("large result through the delay proxy");
    assert_eq!(rows.len(), 4000);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.get::<_, i32>(0), i as i32 + 1, "rows out of order");
    }
    // Pipelined queries come back in order.
    let (a, b, c) = tokio::join!(
        client.query_one("SELECT 1::int", &[]),
        client.query_one("SELECT 2::int", &[]),
        client.query_one("SELECT 3::int", &[])
    );
    assert_eq!(
        [a, b, c].map(|r| r.expect("pipelined query").get::<_, i32>(0)),
        [1, 2, 3]
    );

    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres password={} dbname=postgres sslmode=disable",
        proxy.port(),
        routing_cluster().superuser_password
    );
    let out = run_cmd(
        &psql(),
        &["-X", "-At", "-d", &conninfo, "-c", "SELECT 40 + 2"],
    )
    .await;
    assert_success("psql through the delay proxy", &out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
}
