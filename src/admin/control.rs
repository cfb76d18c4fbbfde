//! `PAUSE [db]`, `RESUME [db]`, `KILL db`: PgBouncer's semantics over `pool::pause`, the
//! client registry and the pools.
//!
//! - `PAUSE` marks the database (or everything) paused, so new requests wait before
//!   checkout; waits until its pools have no active server connection (transactions in
//!   flight finish), bounded by `server.shutdown_timeout_ms`; then closes the idle ones, so
//!   the DBA can restart Postgres under connected clients. If the wait runs out the database
//!   stays paused and the admin gets `55000` with the count still active. If the admin
//!   client leaves mid-wait, the pause also stays (RESUME undoes it).
//! - `RESUME` lets the waiting requests go.
//! - `KILL db` ends every pooled client of the database now (`57P01`), closes its idle
//!   server connections (active ones are discarded as their sessions end) and leaves it
//!   paused until `RESUME`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::net::Stream;
use bytes::BytesMut;

use super::commands::{CommandError, Ctx, Failure};
use crate::app::Shared;
use crate::pool::Pool;
use crate::protocol::messages::encode;
use crate::protocol::sqlstate;

/// How often `PAUSE` looks at the pools while it waits.
const POLL: Duration = Duration::from_millis(10);

/// `Some(db)` must be a configured database.
fn check(shared: &Shared, db: Option<&str>) -> Result<(), CommandError> {
    match db {
        Some(name) if shared.config.load().database(name).is_none() => {
            Err(CommandError::unknown_database(name))
        }
        _ => Ok(()),
    }
}

/// The pools of `db`, or every pool. Looked up again on each use: a client logging in may
/// create a pool meanwhile.
fn pools_of(shared: &Shared, db: Option<&str>) -> Vec<Arc<Pool>> {
    let mut pools = shared.pools.all();
    if let Some(name) = db {
        pools.retain(|p| p.database == name);
    }
    pools
}

/// Server connections in use or being opened: a checkout that passed the pause check just
/// before PAUSE may still be connecting, and its client would run on the paused database.
fn active(pools: &[Arc<Pool>]) -> usize {
    pools
        .iter()
        .map(|p| {
            let s = p.stats();
            s.active + s.connecting
        })
        .sum()
}

fn close_idle(shared: &Shared, db: Option<&str>) -> usize {
    pools_of(shared, db).iter().map(|p| p.close_idle()).sum()
}

fn what(db: Option<&str>) -> String {
    match db {
        Some(name) => format!("database \"{name}\""),
        None => "every database".to_owned(),
    }
}

/// Resolves when the client's socket is closed (true) or has bytes waiting (false, and the
/// caller stops watching: a pipelined next command is not a departure).
async fn closed(stream: &Stream) -> bool {
    let mut b = [0u8; 1];
    // The socket underneath: on TLS any record (a close_notify too) counts as "bytes
    // waiting", and a plain close still reads as 0.
    matches!(stream.tcp().peek(&mut b).await, Ok(0) | Err(_))
}

pub async fn pause(ctx: &Ctx<'_>, db: Option<&str>, out: &mut BytesMut) -> Result<(), Failure> {
    let shared = ctx.shared;
    check(shared, db)?;
    shared.pauses.pause(db);
    let timeout = shared.config.load().server.shutdown_timeout();
    tracing::info!(user = %ctx.entry.user, target = %what(db), "PAUSE from the admin console");
    let deadline = Instant::now() + timeout;
    let mut watch_client = true;
    loop {
        let still = active(&pools_of(shared, db));
        if still == 0 {
            break;
        }
        if Instant::now() >= deadline {
            return Err(CommandError::new(
                sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "PAUSE did not complete: {still} server connection(s) of {} still active \
                     after server.shutdown_timeout_ms ({} ms); it stays paused (RESUME to undo)",
                    what(db),
                    timeout.as_millis()
                ),
            )
            .into());
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shared.shutdown.hard.cancelled() => return Err(Failure::Shutdown),
            gone = closed(ctx.stream), if watch_client => {
                if gone {
                    return Err(Failure::ClientGone);
                }
                watch_client = false;
            }
        }
    }
    let closed = close_idle(shared, db);
    tracing::info!(target = %what(db), closed, "paused; idle server connections closed");
    encode::command_complete(out, "PAUSE");
    Ok(())
}

pub fn resume(shared: &Shared, db: Option<&str>, out: &mut BytesMut) -> Result<(), CommandError> {
    check(shared, db)?;
    if db.is_some() && shared.pauses.all_paused() {
        // Resuming one database of a global pause would report success and change nothing.
        return Err(CommandError::new(
            sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
            "every database is paused (PAUSE without a database); RESUME without a database resumes them all",
        ));
    }
    shared.pauses.resume(db);
    tracing::info!(target = %what(db), "RESUME from the admin console");
    encode::command_complete(out, "RESUME");
    Ok(())
}

pub fn kill(shared: &Shared, db: &str, out: &mut BytesMut) -> Result<(), CommandError> {
    check(shared, Some(db))?;
    // Paused first: a killed client's reconnect must not get a server before RESUME.
    shared.pauses.pause(Some(db));
    let clients = shared.client_registry.kill_database(db);
    let closed = close_idle(shared, Some(db));
    tracing::info!(database = %db, clients, closed, "KILL from the admin console; paused until RESUME");
    encode::command_complete(out, "KILL");
    Ok(())
}
