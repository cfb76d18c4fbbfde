//! The pooling loop for one logged-in client.
//!
//! Detached (no server): client bytes are scanned and buffered until they form a request the
//! server must answer (Query, Sync, FunctionCall, Flush) — so no server waits on a slow client —
//! then a server is checked out, brought to the client's settings, and given the request.
//! Attached: both directions are forwarded as read while the tracker counts the ReadyForQuery
//! messages still owed; once nothing is owed and the server says idle, the server goes back to
//! the pool (transaction mode) and the client is detached again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::params::SessionParams;
use super::relay;
use crate::app::Shared;
use crate::cancel::CancelSlot;
use crate::error::ClientFacing;
use crate::pool::{Pool, PooledConn};
use crate::protocol::messages::encode::{self, Severity};
use crate::protocol::sqlstate::{self, SqlState};
use crate::protocol::tracker::{
    ClientEvent, Flow, StreamScanner, TxnTracker, client_needs_body, server_needs_body,
};

/// Buffered request bytes past which we stop waiting for the end of the request and stream
/// it to a server (a huge Bind or a long pipeline without Sync).
const ATTACH_AT: usize = 256 * 1024;

/// How a session ends.
#[derive(Debug)]
pub enum Exit {
    /// The client closed its socket or sent Terminate.
    ClientGone,
    /// End the client with a FATAL error.
    Fatal(SqlState, String),
}

impl Exit {
    fn fatal(code: SqlState, msg: impl Into<String>) -> Exit {
        Exit::Fatal(code, msg.into())
    }
    fn shutdown() -> Exit {
        Exit::fatal(
            sqlstate::ADMIN_SHUTDOWN,
            "terminating connection due to administrator command",
        )
    }
    fn server_lost() -> Exit {
        Exit::fatal(
            sqlstate::CONNECTION_FAILURE,
            "server connection lost while running this client's request",
        )
    }
}

pub struct Session<'a> {
    pub shared: &'a Shared,
    pub client: TcpStream,
    pub cbuf: BytesMut,
    /// Bytes at the front of `cbuf` already scanned (and counted by `tracker`) but not yet
    /// forwarded.
    pub scanned: usize,
    pub cscan: StreamScanner,
    pub sscan: StreamScanner,
    pub tracker: TxnTracker,
    pub server: Option<PooledConn>,
    pub params: SessionParams,
    pub pool: Arc<Pool>,
    pub session_mode: bool,
    pub slot: Arc<CancelSlot>,
    pub max_message: usize,
    pub idle_txn_timeout: Option<Duration>,
    pub rollback_timeout: Duration,
}

enum Event {
    Client(std::io::Result<usize>),
    Server(std::io::Result<usize>),
    IdleTimeout,
    Hard,
}

impl Session<'_> {
    /// Runs the session to its end and cleans up: a FATAL to the client if one is owed, and the
    /// server (if still attached) rolled back and returned, or closed.
    pub async fn run(mut self) {
        let exit = self.run_loop().await;
        self.slot.set(None);
        if let Some(conn) = self.server.take() {
            let boundary = self.cscan.at_boundary() && self.scanned == 0;
            tokio::spawn(relay::cleanup(
                conn,
                self.tracker.clone(),
                boundary,
                self.session_mode,
                self.rollback_timeout,
            ));
        }
        if let Exit::Fatal(code, msg) = exit {
            tracing::debug!(code = code.code(), %msg, "ending client");
            let mut out = BytesMut::new();
            encode::error(&mut out, Severity::Fatal, code, &msg);
            let _ = self.client.write_all(&out).await;
        }
        let _ = self.client.shutdown().await;
    }

    async fn run_loop(&mut self) -> Exit {
        loop {
            if self.server.is_none() {
                if let Err(exit) = self.detached_step().await {
                    return exit;
                }
            } else if let Err(exit) = self.attached_step().await {
                return exit;
            }
        }
    }

    fn terminate_pending(&self) -> bool {
        self.cscan.at_boundary() && self.cbuf.get(self.scanned) == Some(&b'X')
    }

    /// Scans newly read client bytes, counting what they owe; stops before a Terminate.
    fn scan_client(&mut self) -> Result<(), Exit> {
        let tracker = &mut self.tracker;
        let n = self
            .cscan
            .scan(
                &self.cbuf[self.scanned..],
                self.max_message,
                client_needs_body,
                |tag, _| match tracker.client_message(tag) {
                    ClientEvent::Forward => Flow::Continue,
                    ClientEvent::Terminate => Flow::StopBefore,
                },
            )
            .map_err(|e| Exit::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
        self.scanned += n;
        Ok(())
    }

    async fn detached_step(&mut self) -> Result<(), Exit> {
        if self.terminate_pending() {
            return Err(Exit::ClientGone);
        }
        if self.tracker.wants_server() || self.scanned >= ATTACH_AT {
            return self.attach().await;
        }
        let read = tokio::select! {
            biased;
            _ = self.shared.shutdown.drain.cancelled() => return Err(Exit::shutdown()),
            r = read_client(&mut self.client, &mut self.cbuf) => r,
        };
        match read {
            Ok(0) | Err(_) => Err(Exit::ClientGone),
            Ok(_) => self.scan_client(),
        }
    }

    /// Checks out a server, replays the client's settings on it, and sends it the buffered
    /// request. A checkout failure answers the request with an error and keeps the client.
    async fn attach(&mut self) -> Result<(), Exit> {
        let deadline = Instant::now() + self.pool.settings().checkout_timeout;
        let checkout = tokio::select! {
            r = self.pool.checkout(deadline) => r,
            _ = self.shared.shutdown.hard.cancelled() => return Err(Exit::shutdown()),
        };
        let mut conn = match checkout {
            Ok(c) => c,
            Err(e) => return self.refuse_request(&e).await,
        };
        if let Some(sql) = self.params.diff_sql(&conn.applied) {
            match relay::replay(&mut conn, &sql).await {
                Ok(()) => conn.applied = self.params.desired().to_vec(),
                Err(relay::ReplayError::Server(_, msg)) => {
                    // The server is fine (it answered); the client's settings are not.
                    conn.release();
                    return Err(Exit::fatal(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        format!("could not apply this client's session settings: {msg}"),
                    ));
                }
                Err(relay::ReplayError::Broken) => return Err(Exit::server_lost()),
            }
        }
        self.slot.set(Some(Arc::clone(&conn.cancel)));
        if conn
            .stream
            .write_all(&self.cbuf[..self.scanned])
            .await
            .is_err()
        {
            return Err(Exit::server_lost());
        }
        self.cbuf.advance(self.scanned);
        self.scanned = 0;
        self.tracker.flushed();
        self.server = Some(conn);
        Ok(())
    }

    /// Answers a request that could not get a server: an error, then the ReadyForQuery
    /// messages it is owed, and forgets the request.
    async fn refuse_request(&mut self, err: &crate::pool::PoolError) -> Result<(), Exit> {
        tracing::warn!(database = %self.pool.database, error = %err, "checkout failed");
        if !self.cscan.at_boundary() {
            return Err(Exit::Fatal(err.sqlstate(), err.client_message()));
        }
        // Each request (Query, or batch up to Sync) gets its own error, as the server would
        // have answered each; a lone Flush gets just the error.
        let mut out = BytesMut::new();
        let msg = err.client_message();
        for _ in 0..self.tracker.owed().max(1) {
            encode::error(&mut out, Severity::Error, err.sqlstate(), &msg);
            if self.tracker.owed() > 0 {
                encode::ready_for_query(&mut out, b'I');
            }
        }
        self.cbuf.advance(self.scanned);
        self.scanned = 0;
        self.tracker = TxnTracker::default();
        self.client
            .write_all(&out)
            .await
            .map_err(|_| Exit::ClientGone)
    }

    async fn attached_step(&mut self) -> Result<(), Exit> {
        let idle_deadline = match self.idle_txn_timeout {
            Some(t) if self.tracker.idle_in_transaction() => Some(Instant::now() + t),
            _ => None,
        };
        let event = {
            let Some(conn) = self.server.as_mut() else {
                return Ok(());
            };
            let sc: &mut crate::pool::ServerConn = conn;
            if sc.read_buf.capacity() - sc.read_buf.len() < 4096 {
                sc.read_buf.reserve(16 * 1024);
            }
            if self.cbuf.capacity() - self.cbuf.len() < 1024 {
                self.cbuf.reserve(8 * 1024);
            }
            tokio::select! {
                r = sc.stream.read_buf(&mut sc.read_buf) => Event::Server(r),
                r = self.client.read_buf(&mut self.cbuf) => Event::Client(r),
                _ = sleep_until(idle_deadline), if idle_deadline.is_some() => Event::IdleTimeout,
                _ = self.shared.shutdown.hard.cancelled() => Event::Hard,
            }
        };
        match event {
            Event::Server(Ok(0)) | Event::Server(Err(_)) => {
                // The server is gone; so is this client's transaction. Tell it plainly.
                if let Some(conn) = self.server.take() {
                    conn.discard();
                }
                Err(Exit::server_lost())
            }
            Event::Server(Ok(_)) => self.forward_server().await,
            Event::Client(Ok(0)) | Event::Client(Err(_)) => Err(Exit::ClientGone),
            Event::Client(Ok(_)) => {
                self.scan_client()?;
                self.forward_client().await?;
                if self.terminate_pending() {
                    return Err(Exit::ClientGone);
                }
                Ok(())
            }
            Event::IdleTimeout => Err(Exit::fatal(
                sqlstate::IDLE_IN_TRANSACTION_TIMEOUT,
                "terminating connection due to idle-in-transaction timeout (pool.idle_transaction_timeout_ms)",
            )),
            Event::Hard => Err(Exit::shutdown()),
        }
    }

    async fn forward_client(&mut self) -> Result<(), Exit> {
        if self.scanned == 0 {
            return Ok(());
        }
        let Some(conn) = self.server.as_mut() else {
            return Ok(());
        };
        if conn
            .stream
            .write_all(&self.cbuf[..self.scanned])
            .await
            .is_err()
        {
            if let Some(conn) = self.server.take() {
                conn.discard();
            }
            return Err(Exit::server_lost());
        }
        self.cbuf.advance(self.scanned);
        self.scanned = 0;
        self.tracker.flushed();
        Ok(())
    }

    /// Forwards what the server sent, as read, and releases the server at the boundary.
    async fn forward_server(&mut self) -> Result<(), Exit> {
        let Some(conn) = self.server.as_mut() else {
            return Ok(());
        };
        let sc: &mut crate::pool::ServerConn = conn;
        let tracker = &mut self.tracker;
        let params = &mut self.params;
        let applied = &mut sc.applied;
        let n = self.sscan.scan(
            &sc.read_buf,
            self.max_message,
            server_needs_body,
            |tag, body| {
                tracker.server_message(tag, body);
                if tag == b'S' {
                    if let Some((name, value)) =
                        body.and_then(crate::protocol::messages::parse::parameter_status)
                    {
                        if params.observe_reported(name, value) {
                            crate::pool::server_conn::set_applied(applied, name, value);
                        }
                    }
                }
                Flow::Continue
            },
        );
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "server sent a malformed message");
                if let Some(conn) = self.server.take() {
                    conn.discard();
                }
                return Err(Exit::server_lost());
            }
        };
        if n > 0 {
            if self.client.write_all(&sc.read_buf[..n]).await.is_err() {
                return Err(Exit::ClientGone);
            }
            sc.read_buf.advance(n);
        }
        if !self.session_mode
            && self.tracker.releasable()
            && self.sscan.at_boundary()
            && self.cscan.at_boundary()
            && self.scanned == 0
        {
            if let Some(conn) = self.server.take() {
                self.slot.set(None);
                conn.release();
            }
            if self.shared.shutdown.drain.is_cancelled() {
                return Err(Exit::shutdown());
            }
        }
        Ok(())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Reads client bytes. Between requests the client holds no buffer at all: an idle client
/// costs its task and socket, not a read buffer.
async fn read_client(client: &mut TcpStream, cbuf: &mut BytesMut) -> std::io::Result<usize> {
    if cbuf.is_empty() {
        if cbuf.capacity() > 0 {
            *cbuf = BytesMut::new();
        }
        client.readable().await?;
    }
    if cbuf.capacity() - cbuf.len() < 1024 {
        cbuf.reserve(8 * 1024);
    }
    client.read_buf(cbuf).await
}
