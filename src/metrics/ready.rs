//! `/readyz`: may a load balancer send clients here now?
//!
//! Ready when both hold:
//! 1. **Listening**: the client listener is bound and accepting, i.e. the proxy runs and has
//!    not begun to drain (after SIGTERM it stops accepting, so it says so at once).
//! 2. **Every database's primary is reachable**:
//!    - where a health monitor runs (a database with replicas and read/write split on) and has
//!      completed a probe round, its verdict: the primary must be `up` (logged in, answered,
//!      freshly probed). The monitor already talks to it every `probe_interval_ms`; asking it
//!      costs nothing and agrees with what the router does;
//!    - otherwise a TCP connect to the primary's `host:port` within [`CONNECT_TIMEOUT`], all
//!      databases at once. Cheap for Postgres (no login, no backend forked) and independent
//!      of any client having used the pool.
//!
//! Not ready: one line naming every database whose primary failed and why.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::app::Shared;
use crate::health::MemberState;

/// How long a readiness TCP connect to a primary may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// `Ok(())` when ready, else the reason (one line).
pub async fn readiness(shared: &Arc<Shared>) -> Result<(), String> {
    if shared.shutdown.drain.is_cancelled() {
        return Err("draining: the proxy is shutting down and accepts no new clients".to_owned());
    }
    let config = shared.config.load_full();
    let mut problems: Vec<(usize, String)> = Vec::new();
    let mut connects = JoinSet::new();
    for (i, db) in config.databases.iter().enumerate() {
        let monitored = shared
            .health
            .get(&db.name)
            .map(|h| Arc::clone(h.value()))
            .filter(|h| h.rounds() > 0);
        if let Some(health) = monitored {
            let state = health.primary.report(std::time::Instant::now()).state;
            if state != MemberState::Up {
                problems.push((
                    i,
                    format!(
                        "database \"{}\": primary {} is {} (health monitor)",
                        db.name,
                        health.primary.addr,
                        state.as_str()
                    ),
                ));
            }
            continue;
        }
        let host = db.primary_endpoint.host.clone();
        let port = db.primary_endpoint.port;
        let name = db.name.clone();
        connects.spawn(async move {
            let outcome = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio::net::TcpStream::connect((&*host, port)),
            )
            .await;
            let why = match outcome {
                Ok(Ok(_)) => return None,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {} ms", CONNECT_TIMEOUT.as_millis()),
            };
            Some((
                i,
                format!("database \"{name}\": primary {host}:{port} unreachable: {why}"),
            ))
        });
    }
    while let Some(done) = connects.join_next().await {
        match done {
            Ok(Some(problem)) => problems.push(problem),
            Ok(None) => {}
            Err(e) => problems.push((usize::MAX, format!("readiness check failed: {e}"))),
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    problems.sort();
    Err(problems
        .into_iter()
        .map(|(_, p)| p)
        .collect::<Vec<_>>()
        .join("; "))
}
