//! Conversations the proxy holds with a server on its own account: replaying a client's
//! settings before its request, and cleaning up after a client that left mid-request or
//! mid-transaction, so that no dirty server ever goes back to the pool.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use crate::pool::{PooledConn, ServerConn};
use crate::protocol::messages::{encode, parse};
use crate::protocol::tracker::{Flow, StreamScanner, TxnTracker, server_needs_body};

/// Bound for messages read on the proxy's own account (no rows are expected).
const OWN_MAX: usize = 64 * 1024 * 1024;

#[derive(Debug)]
pub enum ReplayError {
    /// The server refused the settings: its SQLSTATE and message.
    Server(String, String),
    /// The connection broke.
    Broken,
}

/// Runs `sql` (simple protocol) and swallows its replies up to ReadyForQuery.
pub async fn replay(conn: &mut ServerConn, sql: &str) -> Result<(), ReplayError> {
    replay_returning(conn, sql).await.map(drop)
}

/// Like [`replay`], and returns the text values of the first row the statement returned.
pub async fn replay_returning(
    conn: &mut ServerConn,
    sql: &str,
) -> Result<Vec<Option<String>>, ReplayError> {
    let rows = query_rows(conn, sql).await?;
    Ok(rows.into_iter().next().unwrap_or_default())
}

/// Runs `sql` (simple protocol) and returns the text values of every row it returned.
pub async fn query_rows(
    conn: &mut ServerConn,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, ReplayError> {
    let mut out = BytesMut::new();
    encode::query(&mut out, sql);
    conn.stream
        .send(&out)
        .await
        .map_err(|_| ReplayError::Broken)?;
    let mut tracker = TxnTracker::default();
    tracker.client_message(b'Q');
    let mut error = None;
    let mut rows = Vec::new();
    // A FATAL ends the connection whatever follows it: broken, not a refusal.
    let mut fatal = false;
    drain(conn, &mut tracker, |tag, body| match (tag, body) {
        (b'E', Some(body)) if error.is_none() => {
            let f = parse::error_fields(body).unwrap_or_default();
            fatal = f.ends_session();
            error = Some((
                f.code.unwrap_or("22023").to_owned(),
                f.message.unwrap_or("unknown error").to_owned(),
            ));
        }
        (b'D', Some(body)) => {
            if let Some(cols) = parse::data_row(body) {
                rows.push(
                    cols.into_iter()
                        .map(|c| c.map(|v| String::from_utf8_lossy(v).into_owned()))
                        .collect::<Vec<_>>(),
                );
            }
        }
        _ => {}
    })
    .await
    .map_err(|_| ReplayError::Broken)?;
    if fatal {
        return Err(ReplayError::Broken);
    }
    match error {
        Some((code, msg)) => Err(ReplayError::Server(code, msg)),
        None => Ok(rows),
    }
}

/// Runs each statement as its own Query (pipelined, one round trip), so one failing does not
/// undo the others; returns whether each succeeded.
pub async fn replay_each(conn: &mut ServerConn, sqls: &[String]) -> Result<Vec<bool>, ReplayError> {
    let mut out = BytesMut::new();
    let mut tracker = TxnTracker::default();
    for sql in sqls {
        encode::query(&mut out, sql);
        tracker.client_message(b'Q');
    }
    conn.stream
        .send(&out)
        .await
        .map_err(|_| ReplayError::Broken)?;
    let mut ok = vec![true; sqls.len()];
    let mut i = 0;
    let mut fatal = false;
    drain(conn, &mut tracker, |tag, body| match tag {
        b'E' => {
            fatal |= body
                .and_then(parse::error_fields)
                .is_some_and(|f| f.ends_session());
            if let Some(slot) = ok.get_mut(i) {
                *slot = false;
            }
        }
        b'Z' => i += 1,
        _ => {}
    })
    .await
    .map_err(|_| ReplayError::Broken)?;
    if fatal {
        return Err(ReplayError::Broken);
    }
    Ok(ok)
}

/// On its own account the proxy also reads the rows (replays return one small row).
fn own_needs_body(tag: u8) -> bool {
    tag == b'D' || server_needs_body(tag)
}

/// Reads and discards server messages until the tracker owes nothing, reporting each message
/// (with its body for the tags the tracker needs) to `on`.
async fn drain<F>(conn: &mut ServerConn, tracker: &mut TxnTracker, mut on: F) -> std::io::Result<()>
where
    F: FnMut(u8, Option<&[u8]>),
{
    let mut scanner = StreamScanner::default();
    while tracker.owed() > 0 {
        if conn.read_buf.capacity() - conn.read_buf.len() < 4096 {
            conn.read_buf.reserve(16 * 1024);
        }
        if conn.stream.read_buf(&mut conn.read_buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let n = scanner
            .scan(&conn.read_buf, OWN_MAX, own_needs_body, |tag, body| {
                tracker.server_message(tag, body);
                on(tag, body);
                Flow::Continue
            })
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let _ = conn.read_buf.split_to(n);
    }
    if !scanner.at_boundary() {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    Ok(())
}

/// Brings a server whose client left back to a clean idle state and returns it to the pool,
/// or closes it. A request still running is cancelled first, an open COPY is failed, an open
/// extended batch is synced, an open transaction is rolled back; `reset` (session mode, or a
/// client that held session state) also runs DISCARD ALL. Bounded by `timeout` (pool.server_rollback_timeout_ms).
pub async fn cleanup(
    mut conn: PooledConn,
    mut tracker: TxnTracker,
    at_boundary: bool,
    reset: bool,
    timeout: Duration,
) {
    if !at_boundary {
        // Part of a message went to the server: nothing can resynchronise it.
        conn.discard();
        return;
    }
    let work = async {
        let mut out = BytesMut::new();
        if tracker.owed() > 0 {
            let t = &conn.cancel;
            let _ = crate::pool::connect::send_cancel(t).await;
        }
        if tracker.copy_in() {
            encode::copy_fail(&mut out, "client disconnected");
            tracker.client_message(b'f');
        }
        if tracker.unsynced() {
            out.extend_from_slice(&[b'S', 0, 0, 0, 4]);
            tracker.client_message(b'S');
        }
        if !out.is_empty() {
            conn.stream.send(&out).await?;
            out.clear();
        }
        drain(&mut conn, &mut tracker, |_, _| {}).await?;
        if tracker.status() != crate::protocol::tracker::IDLE {
            encode::query(&mut out, "ROLLBACK");
            tracker.client_message(b'Q');
        }
        if reset {
            encode::query(&mut out, "DISCARD ALL");
            tracker.client_message(b'Q');
        }
        if !out.is_empty() {
            conn.stream.send(&out).await?;
            drain(&mut conn, &mut tracker, |_, _| {}).await?;
            if reset {
                // DISCARD ALL reset the settings and dropped every prepared statement.
                conn.applied.clear();
                conn.statements.clear();
                conn.sql_prepared.clear();
            }
        }
        Ok::<bool, std::io::Error>(tracker.releasable())
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(true)) => conn.release(),
        _ => conn.discard(),
    }
}
