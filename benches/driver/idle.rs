//! Proxy memory per idle client: RSS with N logged-in clients (each ran one query, as a real
//! idle application connection has) minus RSS before they came, divided by N. The clients are
//! tokio-postgres connections held by this process: spawning N psql processes would cost more
//! than what is measured.

use std::time::Duration;

use futures_util::{StreamExt, stream};
use tokio_postgres::NoTls;

use crate::procfs::rss_bytes;

/// Bytes of proxy RSS per idle client, or why it could not be measured.
pub fn bytes_per_client(
    pid: u32,
    port: u16,
    user: &str,
    password: &str,
    n: usize,
) -> Result<f64, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(measure(pid, port, user, password, n))
}

async fn measure(pid: u32, port: u16, user: &str, password: &str, n: usize) -> Result<f64, String> {
    let conninfo = format!(
        "host=127.0.0.1 port={port} user={user} password={password} dbname={} connect_timeout=60",
        crate::setup::DB
    );
    // Warm-up: one client and one query, so the pool's first server connection and the
    // proxy's one-off allocations are in the baseline, not in the per-client figure.
    let warm = connect(&conninfo).await?;
    drop(warm);
    settle().await;
    let before = rss_bytes(pid).ok_or("proxy gone")?;

    let clients: Vec<_> = stream::iter(0..n)
        .map(|_| connect(&conninfo))
        .buffer_unordered(64)
        .collect()
        .await;
    let clients: Vec<_> = clients.into_iter().collect::<Result<_, _>>()?;
    settle().await;
    let after = rss_bytes(pid).ok_or("proxy gone")?;
    drop(clients);
    Ok((after as f64 - before as f64) / n as f64)
}

/// A logged-in client that has run `SELECT 1`; its connection task runs in the background
/// until the client is dropped.
async fn connect(conninfo: &str) -> Result<tokio_postgres::Client, String> {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
        .simple_query("SELECT 1")
        .await
        .map_err(|e| format!("SELECT 1: {e}"))?;
    Ok(client)
}

/// Lets the proxy finish what the last logins started (buffers released, tasks parked).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}
