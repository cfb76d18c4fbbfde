//! The pooling loop for one logged-in client.
//!
//! Detached (no server): client bytes are scanned and buffered until they form a request the
//! server must answer (Query, Sync, FunctionCall, Flush) — so no server waits on a slow client —
//! then a server is checked out, brought to the client's settings, and given the request.
//! Attached: both directions are forwarded as read while the tracker counts the ReadyForQuery
//! messages still owed; once nothing is owed and the server says idle, the server goes back to
//! the pool (transaction mode) and the client is detached again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::net::Stream;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::forward::Wire;
use super::params::SessionParams;
use super::probe::Ask;
use super::registry::ClientState;
use super::relay;
use super::route::{Placed, Route};
use super::stop;
use crate::app::Shared;
use crate::cancel::CancelSlot;
use crate::error::ClientFacing;
use crate::pool::cluster::Cluster;
use crate::pool::{Pool, PoolError, PooledConn};
use crate::prepared::ClientStatements;
use crate::protocol::codec::walk_messages;
use crate::protocol::messages::encode::{self, Severity};
use crate::protocol::messages::parse::cstr;
use crate::protocol::sqlstate::{self, SqlState};
use crate::protocol::tracker::{ClientEvent, Flow, StreamScanner, TxnTracker, client_needs_body};
use crate::router::select::Target;

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
    pub(super) fn fatal(code: SqlState, msg: impl Into<String>) -> Exit {
        Exit::Fatal(code, msg.into())
    }
    pub(super) fn shutdown() -> Exit {
        Exit::fatal(
            sqlstate::ADMIN_SHUTDOWN,
            "terminating connection due to administrator command",
        )
    }
    /// The admin console's `KILL` of this client's database.
    pub(super) fn killed() -> Exit {
        Exit::fatal(
            sqlstate::ADMIN_SHUTDOWN,
            "terminating connection due to administrator command (KILL of its database)",
        )
    }
    pub(super) fn server_lost() -> Exit {
        Exit::fatal(
            sqlstate::CONNECTION_FAILURE,
            "server connection lost while running this client's request",
        )
    }
}

/// How long a closing session may spend writing its last message and shutting its socket.
pub(crate) const EXIT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Session<'a> {
    pub shared: &'a Shared,
    /// This client in the proxy's client list (state, `KILL`).
    pub entry: Arc<super::registry::ClientEntry>,
    /// The figures of this client's database (`SHOW STATS`, query metrics).
    pub db_stats: Arc<crate::stats::DbStats>,
    pub client: Stream,
    pub cbuf: BytesMut,
    /// Bytes at the front of `cbuf` already scanned (and counted by `tracker`) but not yet
    /// forwarded.
    pub scanned: usize,
    pub cscan: StreamScanner,
    pub sscan: StreamScanner,
    pub tracker: TxnTracker,
    pub server: Option<PooledConn>,
    /// Bytes at the front of the server's read buffer scanned and owed to the client.
    pub to_client: usize,
    pub params: SessionParams,
    /// The primary's pool: its settings, statement scope and names serve the whole cluster.
    pub pool: Arc<Pool>,
    /// Every member's pool for this client's database and user.
    pub cluster: Arc<Cluster>,
    /// Read/write routing, when the database has replicas (see [`super::route`]).
    pub route: Option<Box<Route>>,
    /// `shared.pools.generation()` when `cluster` was looked up: a reload that replaced
    /// clusters changes it (see [`Self::follow_reload`]).
    pub cluster_generation: u64,
    pub session_mode: bool,
    pub slot: Arc<CancelSlot>,
    pub max_message: usize,
    pub idle_txn_timeout: Option<Duration>,
    pub rollback_timeout: Duration,
    /// `pool.max_prepared_statements`: the cap on each server's prepared set.
    pub max_prepared: usize,
    /// This client's named prepared statements.
    pub statements: ClientStatements,
    /// Bytes read from / written to the client since they were last added to `db_stats`
    /// (as queries finish: a shared counter per socket operation would bounce its cache line
    /// between cores).
    pub received: u64,
    pub sent: u64,
    /// The requests in flight, timed (see [`super::timing`]).
    pub timing: super::timing::Timing,
    /// What sits between the two sockets while attached: see [`super::forward`].
    pub wire: Wire,
    /// What this client's statements since the last check may have changed in the server
    /// session: asked of the server before it goes back to the pool (see [`super::probe`]).
    pub ask: Ask,
    /// The session-only state that keeps this client on its server (transaction mode).
    pub pinned: Option<String>,
    /// The transaction ended with `ask` pending: check the server before releasing it.
    pub probe_due: bool,
    /// `pool.session_features = "error"`.
    pub refuse_features: bool,
    /// This client's SQL-level prepared statements (name, PREPARE text), replayed on each
    /// server it lands on.
    pub sql_prepared: Vec<(String, String)>,
    /// PREPARE statements seen since the last probe, for their text.
    pub captured: Vec<(String, String)>,
    /// The idle-in-transaction timer, made at its first use (`pool.idle_transaction_timeout_ms`).
    pub idle_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Flips at every attached wait: which socket it looks at first (see `attached_step`).
    pub flip: bool,
}

/// A conversation the proxy holds with a server on its own account (settings replay, SQL
/// prepared sync, the session-state probe): bounded by `limit`
/// (`pool.server_rollback_timeout_ms`; `None` when it ran out) and ended by the stop flags in
/// `mask`.
pub(super) async fn on_own_account<T>(
    flags: &stop::StopFlags,
    mask: u8,
    limit: Duration,
    work: impl Future<Output = T>,
) -> Result<Option<T>, Exit> {
    tokio::select! {
        r = tokio::time::timeout(limit, work) => Ok(r.ok()),
        raised = flags.wait(mask) => Err(stopped(raised)),
    }
}

/// How a session ends on stop flags raised for it (see [`super::stop`]): `KILL` says so; a
/// shutdown is `57P01` plain.
fn stopped(raised: u8) -> Exit {
    if raised & (stop::HARD | stop::DRAIN) != 0 {
        Exit::shutdown()
    } else {
        Exit::killed()
    }
}

/// How readying a checked-out server for this client went (see `Session::ready_server`).
enum Ready {
    Yes,
    /// The server refused the client's settings; the connection itself is fine.
    Refused(String),
    /// The connection broke (or timed out) before the request went out: it is closed.
    Broken,
}

/// Connections that may break while being readied, one after another, before the request
/// fails with `08006`: a primary restarting leaves a few stale ones.
const MAX_BROKEN_ATTACH: u32 = 3;

/// What woke an attached session. Readiness, not I/O: the I/O is done afterwards with
/// `try_read`/`try_write`, so both directions progress independently and neither side's
/// backpressure can stall the other (a server blocked writing a large result while the proxy
/// waits to hand it more of a pipeline would otherwise deadlock).
enum Event {
    ClientReadable,
    ServerReadable,
    ClientWritable,
    ServerWritable,
    IoError(Side),
    IdleTimeout,
    /// The stop flags raised (see [`super::stop`]).
    Stop(u8),
}

#[derive(Debug, Clone, Copy)]
enum Side {
    Client,
    Server,
}

impl<'a> Session<'a> {
    /// Runs the session to its end and cleans up: a FATAL to the client if one is owed, and the
    /// server (if still attached) rolled back and returned, or closed.
    pub fn run(self) -> impl std::future::Future<Output = ()> + Send + 'a {
        // Not an `async fn run(mut self)`: rustc would keep the argument and its binding as
        // two copies of the whole session in the task's state. Captured once, used in place.
        let mut this = self;
        async move { this.run_to_end().await }
    }

    async fn run_to_end(&mut self) {
        let exit = self.run_loop().await;
        self.flush_byte_counts();
        self.slot.set(None);
        // A client that leaves holding session state (pinned, or with state not yet checked)
        // must not leave it to the next client: its server is reset with DISCARD ALL.
        let reset = self.session_mode || self.pinned.is_some() || !self.ask.is_empty();
        self.unpin_at_exit();
        if let Some(conn) = self.server.take() {
            let boundary =
                self.cscan.at_boundary() && self.scanned == 0 && self.wire.sent_whole_messages();
            if self.wire.replies.uncertain()
                || self.wire.suspect
                || self.entry.stop.raised(stop::KILL) != 0
            {
                // A Parse's fate is unknown: so is what this server has prepared. Or KILL:
                // it drops the database's server connections too.
                conn.discard();
            } else {
                tokio::spawn(relay::cleanup(
                    conn,
                    self.tracker.clone(),
                    boundary,
                    reset,
                    self.rollback_timeout,
                ));
            }
        }
        // Boxed: its two timers would otherwise be part of the task's state (held by every
        // idle client) for a step taken once.
        Box::pin(goodbye(&mut self.client, exit)).await;
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

    pub(super) fn flush_byte_counts(&mut self) {
        self.db_stats.add_bytes(
            std::mem::take(&mut self.received),
            std::mem::take(&mut self.sent),
        );
    }

    fn terminate_pending(&self) -> bool {
        self.cscan.at_boundary() && self.cbuf.get(self.scanned) == Some(&b'X')
    }

    /// Scans newly read client bytes, counting what they owe; stops before a Terminate.
    fn scan_client(&mut self) -> Result<(), Exit> {
        let tracker = &mut self.tracker;
        let timing = &mut self.timing;
        let statements = &self.statements;
        let timed = self.shared.stats.enabled();
        let attached = self.server.is_some();
        // One clock read serves every request completed by these bytes.
        let mut now = None;
        let n = self
            .cscan
            .scan(
                &self.cbuf[self.scanned..],
                self.max_message,
                client_needs_body,
                |tag, body| {
                    let owed = tracker.owed();
                    match tracker.client_message(tag) {
                        ClientEvent::Forward => {
                            if timed {
                                let owes = tracker.owed() > owed;
                                let text = |name: &[u8]| statements.get(name).map(|s| s.text());
                                timing.client_message(tag, body, owes, attached, text, &mut now);
                            }
                            Flow::Continue
                        }
                        ClientEvent::Terminate => Flow::StopBefore,
                    }
                },
            )
            .map_err(|e| Exit::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
        self.scanned += n;
        Ok(())
    }

    async fn detached_step(&mut self) -> Result<(), Exit> {
        // However the server went (released, lost, moved), the client holds none now.
        if self.entry.state() != ClientState::Idle {
            self.entry.set_state(ClientState::Idle);
            self.entry.set_server(None);
            // A timer left armed would wake the idle task once for nothing, and stay allocated.
            self.idle_timer = None;
            self.timing.shrink();
            // With per-query stats off nothing else adds them between transactions.
            self.flush_byte_counts();
        }
        if self.terminate_pending() {
            return Err(Exit::ClientGone);
        }
        if self.tracker.wants_server() || self.scanned >= ATTACH_AT {
            if let Some(reply) = self.answer_locally() {
                // Boxed: the reply and the write would otherwise be held in every idle
                // client's task state.
                return Box::pin(self.client.send(&reply))
                    .await
                    .map_err(|_| Exit::ClientGone);
            }
            // Boxed: a task's future is as large as its largest state, held for the client's
            // whole life. The checkout and setting replay are the largest; boxed, an idle
            // client does not carry them (one allocation per attach instead).
            return Box::pin(self.attach()).await;
        }
        let read = tokio::select! {
            biased;
            raised = self.entry.stop.wait(stop::DRAIN | stop::HARD | stop::KILL) => return Err(stopped(raised)),
            r = read_client(&mut self.client, &mut self.cbuf) => r,
        };
        match read {
            Ok(0) | Err(_) => Err(Exit::ClientGone),
            Ok(n) => {
                self.received += n as u64;
                self.scan_client()
            }
        }
    }

    /// Answers, without a server, a request made only of Parse of statements some server has
    /// already accepted and Close of named statements, ended by Sync: what drivers send to
    /// prepare ahead (pgbench -M prepared, pgjdbc) and to drop statements. Besides saving a
    /// round trip, it matters when the client prepares synchronously while its other
    /// connections hold every server in open transactions (pgbench with fewer threads than
    /// clients): waiting for a server there would deadlock until checkout_timeout.
    /// A text that fails under this client's settings (another search_path) then fails at its
    /// first Bind instead of at Parse.
    fn answer_locally(&mut self) -> Option<BytesMut> {
        if self.session_mode || !self.cscan.at_boundary() {
            return None;
        }
        let buf = &self.cbuf[..self.scanned];
        // In message order: Some(statement) for a Parse, None for a Close.
        let mut ops: Vec<(&[u8], Option<Arc<crate::prepared::Statement>>)> = Vec::new();
        let mut out = BytesMut::new();
        let mut syncs = 0;
        let mut last = 0u8;
        let mut step = |tag, body| -> Option<()> {
            match tag {
                b'P' => {
                    let (name, key) = cstr(body)?;
                    // A name this request already used is left to the server's rules.
                    if name.is_empty()
                        || self.statements.get(name).is_some()
                        || ops.iter().any(|(n, _)| *n == name)
                    {
                        return None;
                    }
                    let stmt = self
                        .shared
                        .statements
                        .get(&self.pool.statement_scope, key)?;
                    if !stmt.is_validated() {
                        return None;
                    }
                    ops.push((name, Some(stmt)));
                    encode::parse_complete(&mut out);
                }
                b'C' if crate::prepared::rewrite::is_named(b'C', body) => {
                    let (name, _) = cstr(&body[1..])?;
                    if ops.iter().any(|(n, _)| *n == name) {
                        return None;
                    }
                    ops.push((name, None));
                    encode::close_complete(&mut out);
                }
                b'S' => {
                    syncs += 1;
                    encode::ready_for_query(&mut out, b'I');
                }
                _ => return None,
            }
            last = tag;
            Some(())
        };
        let mut whole = true;
        let end = walk_messages(buf, 0, usize::MAX, |tag, body| {
            whole = step(tag, body).is_some();
            whole
        });
        if !whole || end.ok() != Some(buf.len()) {
            return None;
        }
        if last != b'S' {
            return None;
        }
        for (name, stmt) in ops {
            match stmt {
                Some(stmt) => self.statements.insert(name, stmt),
                None => {
                    self.statements.remove(name);
                }
            }
        }
        for _ in 0..syncs {
            self.tracker.server_message(b'Z', Some(b"I"));
        }
        // Answered without a server: nothing to time.
        self.timing.clear();
        self.cbuf.advance(self.scanned);
        self.scanned = 0;
        Some(out)
    }

    /// Checks out a server, replays the client's settings on it, and sends it the buffered
    /// request. A checkout failure answers the request with an error and keeps the client.
    async fn attach(&mut self) -> Result<(), Exit> {
        let started = Instant::now();
        self.entry.set_state(ClientState::Waiting);
        // SHOW CLIENTS' request_time: the latest request that needed a server.
        self.entry.request_started(started);
        let mut deadline_from = started;
        if self.shared.pauses.is_paused(&self.pool.database) {
            // PAUSE: the request waits for RESUME; its checkout deadline starts after.
            tokio::select! {
                _ = self.shared.pauses.wait_resumed(&self.pool.database) => {}
                raised = self.entry.stop.wait(stop::HARD | stop::KILL) => return Err(stopped(raised)),
            }
            deadline_from = Instant::now();
        }
        let deadline = deadline_from + self.pool.settings().checkout_timeout;
        if !self.session_mode {
            self.follow_reload();
        }
        let redirect = self.route.as_mut().and_then(|r| r.take_redirect());
        let mut avoid = None;
        let mut failed = 0;
        let mut broken = 0;
        let mut got;
        let (conn, placed) = loop {
            let (pool, placed) = match self.choose_pool(redirect, avoid) {
                Ok(p) => p,
                Err(e) => return self.refuse_request(&e).await,
            };
            let checkout = tokio::select! {
                r = pool.checkout(deadline) => r,
                raised = self.entry.stop.wait(stop::HARD | stop::KILL) => return Err(stopped(raised)),
            };
            let e = match checkout {
                Ok(mut c) => {
                    // Pool wait ends here; readying the server counts as its time.
                    got = Instant::now();
                    match self.ready_server(&mut c).await? {
                        Ready::Yes => break (c, placed),
                        Ready::Refused(msg) => {
                            // The server is fine (it answered); the client's settings are not.
                            c.release();
                            return Err(Exit::fatal(
                                sqlstate::INVALID_PARAMETER_VALUE,
                                format!("could not apply this client's session settings: {msg}"),
                            ));
                        }
                        // Broke while being readied (a server shutting down between the pool's
                        // check and our first bytes): the request has not gone out, so it is
                        // placed again, a bounded number of times.
                        Ready::Broken => {
                            drop(c);
                            broken += 1;
                            if broken >= MAX_BROKEN_ATTACH || Instant::now() >= deadline {
                                return Err(Exit::fatal(
                                    sqlstate::CONNECTION_FAILURE,
                                    "server connections kept breaking before this client's request could be sent",
                                ));
                            }
                            // One broken connection says little about its server (a DBA may have
                            // killed it): the first retry takes a fresh one from the same member,
                            // and a server really going away then fails to connect, which routes
                            // a read elsewhere. A replica breaking twice is avoided at once.
                            if broken > 1
                                && let Some(Placed {
                                    target: Target::Replica(i),
                                    ..
                                }) = placed
                                && failed < self.cluster.replicas.len()
                            {
                                tracing::info!(member = %pool.member, "replica connections broke before the read went out; routing it elsewhere");
                                avoid = Some(i);
                                failed += 1;
                            }
                            continue;
                        }
                    }
                }
                Err(e) => e,
            };
            match e {
                // A replica that cannot be reached: the read goes elsewhere (each replica is
                // marked down as it fails, so this ends at the primary at worst).
                e @ (PoolError::Connect(_) | PoolError::Down { .. })
                    if failed < self.cluster.replicas.len()
                        && let Some(Placed {
                            target: Target::Replica(i),
                            ..
                        }) = placed =>
                {
                    tracing::info!(member = %pool.member, error = %e, "replica unreachable; routing the read elsewhere");
                    self.replica_failed(i, &e.to_string());
                    avoid = Some(i);
                    failed += 1;
                }
                // The primary unreachable while routing: writes fail at once, as `08006`.
                e @ (PoolError::Connect(_) | PoolError::Down { .. })
                    if matches!(
                        placed,
                        Some(Placed {
                            target: Target::Primary,
                            ..
                        })
                    ) && e.sqlstate() == crate::protocol::sqlstate::CONNECTION_REJECTED =>
                {
                    let err = super::route::RouteError::PrimaryDown(
                        self.pool.database.clone(),
                        e.to_string(),
                    );
                    return self.refuse_request(&err).await;
                }
                e => return self.refuse_request(&e).await,
            }
        };
        // Pool wait, retries on other members included: every pool of the database shares
        // this histogram (its label is the database), resolved once by the pool.
        self.pool.wait_seconds().record(got - started);
        self.timing.checked_out(got);
        self.attached_to(placed);
        self.slot.set(Some(Arc::clone(&conn.cancel)));
        self.entry.set_state(ClientState::Active);
        self.entry.set_server(Some(conn.id));
        self.db_stats.assigned();
        self.server = Some(conn);
        self.wire.attached();
        // The request goes out through the attached loop, which also reads the replies: a
        // request bigger than the socket buffers cannot deadlock against them.
        self.write_server()
    }

    /// After a reload that replaced this client's cluster (new members, replicas added or
    /// removed), takes the current one and the routing state that goes with it, between
    /// transactions: the next request goes where the config says now. Read-your-writes
    /// carries over (it holds an LSN, not a member). A database or user the reload removed
    /// keeps its old cluster until the client leaves.
    fn follow_reload(&mut self) {
        let generation = self.shared.pools.generation();
        if generation == self.cluster_generation {
            return;
        }
        self.cluster_generation = generation;
        let Some(cluster) = self
            .shared
            .pools
            .current(&self.pool.database, &self.pool.user)
        else {
            return;
        };
        let config = self.shared.config.load();
        let mut route = Route::new(self.shared, &config, &self.pool.database);
        if let (Some(new), Some(old)) = (route.as_mut(), self.route.take()) {
            new.carry_over(&old);
        }
        self.route = route;
        self.pool = Arc::clone(&cluster.primary);
        self.cluster = cluster;
    }

    /// Gives a checked-out server this client's session settings and SQL prepared statements,
    /// before the request goes out.
    async fn ready_server(&mut self, conn: &mut PooledConn) -> Result<Ready, Exit> {
        if let Some(sql) = self.params.diff_sql(&conn.applied) {
            // A server that stops answering (no reset) is treated as broken.
            let replayed = on_own_account(
                &self.entry.stop,
                stop::HARD | stop::KILL,
                self.rollback_timeout,
                relay::replay(conn, &sql),
            )
            .await?;
            match replayed {
                Some(Ok(())) => conn.applied = self.params.desired().to_vec(),
                Some(Err(relay::ReplayError::Server(_, msg))) => return Ok(Ready::Refused(msg)),
                Some(Err(relay::ReplayError::Broken)) | None => return Ok(Ready::Broken),
            }
        }
        self.sync_sql_prepared(conn).await
    }

    /// Brings the server's SQL-level prepared statements to this client's: its own prepared
    /// (from their PREPARE text), anyone else's deallocated, as a direct connection would have
    /// them. A statement that no longer prepares (its table is gone) is dropped: the client's
    /// EXECUTE of it then fails as if deallocated.
    async fn sync_sql_prepared(&mut self, conn: &mut PooledConn) -> Result<Ready, Exit> {
        if self.sql_prepared.is_empty() && conn.sql_prepared.is_empty() {
            return Ok(Ready::Yes);
        }
        let mut sqls = Vec::new();
        for (name, text) in &conn.sql_prepared {
            if !self
                .sql_prepared
                .iter()
                .any(|(n, t)| n == name && t == text)
            {
                sqls.push(format!("DEALLOCATE {}", super::params::quote_ident(name)));
            }
        }
        let first_prepare = sqls.len();
        let missing: Vec<(String, String)> = self
            .sql_prepared
            .iter()
            .filter(|s| !conn.sql_prepared.contains(s))
            .cloned()
            .collect();
        sqls.extend(missing.iter().map(|(_, t)| t.clone()));
        if sqls.is_empty() {
            return Ok(Ready::Yes);
        }
        let replayed = on_own_account(
            &self.entry.stop,
            stop::HARD,
            self.rollback_timeout,
            relay::replay_each(conn, &sqls),
        )
        .await?;
        let Some(Ok(ok)) = replayed else {
            // The connection is closed by the caller; the client's request never went out.
            return Ok(Ready::Broken);
        };
        for ((name, _), ok) in missing.iter().zip(&ok[first_prepare..]) {
            if !ok {
                tracing::info!(statement = %name, "a client's SQL prepared statement no longer prepares; dropped");
                self.sql_prepared.retain(|(n, _)| n != name);
            }
        }
        conn.sql_prepared = self.sql_prepared.clone();
        Ok(Ready::Yes)
    }

    /// Answers a request that could not get a server: an error, then the ReadyForQuery
    /// messages it is owed, and forgets the request.
    async fn refuse_request(&mut self, err: &impl ClientFacing) -> Result<(), Exit> {
        tracing::warn!(database = %self.pool.database, error = %err, "request refused");
        if !self.cscan.at_boundary() {
            return Err(Exit::Fatal(err.sqlstate(), err.client_message()));
        }
        // Each request (Query, or batch up to Sync) gets its own error, as the server would
        // have answered each; a lone Flush gets just the error.
        crate::metrics::count_error(err.kind());
        self.record_refused(err.sqlstate());
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
        self.client.send(&out).await.map_err(|_| Exit::ClientGone)
    }

    async fn attached_step(&mut self) -> Result<(), Exit> {
        if self.probe_due {
            self.probe_due = false;
            // Boxed for the same reason as `attach` (and it is rare).
            Box::pin(self.check_session_state()).await?;
            return self.maybe_release();
        }
        let idle_timer = match self.idle_txn_timeout {
            Some(t) if self.tracker.idle_in_transaction() => {
                let deadline = (Instant::now() + t).into();
                let timer = self
                    .idle_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                timer.as_mut().reset(deadline);
                Some(timer)
            }
            _ => None,
        };
        let flags = &self.entry.stop;
        // TLS can hold decrypted bytes the sockets' readiness cannot see: such a side is
        // readable now.
        let client_buffered = self.client.has_buffered_read();
        let server_buffered = match self.server.as_mut() {
            Some(conn) => conn.stream.has_buffered_read(),
            None => return Ok(()),
        };
        let event = {
            let Some(conn) = self.server.as_ref() else {
                return Ok(());
            };
            let server = conn.stream.tcp();
            let client = self.client.tcp();
            let to_server = self.wire.wants_write(self.scanned) || conn.stream.needs_flush();
            let unsent = self.scanned > 0 || !self.wire.sout.is_empty();
            let to_client =
                self.to_client > 0 || !self.wire.client_out.is_empty() || self.client.needs_flush();
            // A routed read on a replica: what the client sends next waits until it is
            // answered and the server released, then is routed on its own (a write pipelined
            // behind the read must not reach the replica).
            let hold_client = self.pinned.is_none()
                && self.tracker.owed() > 0
                && self.cscan.at_boundary()
                && self
                    .route
                    .as_ref()
                    .is_some_and(|r| r.on_replica().is_some());
            // Each direction reads only once its previous chunk is fully written: memory stays
            // bounded and a slow reader slows its writer, as on a direct connection.
            let server_wants = Wants {
                write: to_server,
                read: !to_client,
            };
            let client_wants = Wants {
                write: to_client,
                read: !unsent && !hold_client,
            };
            // Which socket is looked at first alternates, so neither can starve the other.
            self.flip = !self.flip;
            let client_first = self.flip;
            let mut idle_timer = idle_timer;
            // Polled by hand rather than with `select!`: the sockets' `poll_*_ready` keep this
            // task's waker in each socket's own slot (the session is their only user), where
            // `readable()`/`writable()` futures would link and unlink a waiter node under the
            // socket's lock at every event and sit in every task's state.
            std::future::poll_fn(|cx| {
                if let Poll::Ready(raised) =
                    Pin::new(&mut flags.wait(stop::HARD | stop::KILL)).poll(cx)
                {
                    return Poll::Ready(Event::Stop(raised));
                }
                if server_buffered && server_wants.read {
                    return Poll::Ready(Event::ServerReadable);
                }
                if client_buffered && client_wants.read {
                    return Poll::Ready(Event::ClientReadable);
                }
                let ready = if client_first {
                    poll_side(client, client_wants, Side::Client, cx)
                        .or_else(|| poll_side(server, server_wants, Side::Server, cx))
                } else {
                    poll_side(server, server_wants, Side::Server, cx)
                        .or_else(|| poll_side(client, client_wants, Side::Client, cx))
                };
                if let Some(event) = ready {
                    return Poll::Ready(event);
                }
                if let Some(t) = idle_timer.as_mut()
                    && t.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Event::IdleTimeout);
                }
                Poll::Pending
            })
            .await
        };
        match event {
            Event::ServerWritable => self.write_server(),
            Event::ClientWritable => self.pump_client(),
            Event::ServerReadable => self.read_server(),
            Event::ClientReadable => self.read_client_attached(),
            Event::IoError(Side::Client) => Err(Exit::ClientGone),
            Event::IoError(Side::Server) => self.server_failed(),
            Event::IdleTimeout => Err(Exit::fatal(
                sqlstate::IDLE_IN_TRANSACTION_TIMEOUT,
                "terminating connection due to idle-in-transaction timeout (pool.idle_transaction_timeout_ms)",
            )),
            Event::Stop(raised) => Err(stopped(raised)),
        }
    }

    /// The server's socket failed: a read on a replica that had answered nothing yet runs
    /// again elsewhere; anything else ends the client (see [`Self::lose_server`]).
    pub(super) fn server_failed(&mut self) -> Result<(), Exit> {
        if self.reroute_lost() {
            return Ok(());
        }
        Err(self.lose_server())
    }

    /// The server is gone, and with it this client's transaction: tell the client plainly.
    pub(super) fn lose_server(&mut self) -> Exit {
        if let Some(conn) = self.server.take() {
            conn.discard();
        }
        if let Some(r) = self.route.as_mut() {
            r.detached();
        }
        Exit::server_lost()
    }

    fn read_client_attached(&mut self) -> Result<(), Exit> {
        if self.cbuf.capacity() - self.cbuf.len() < 1024 {
            self.cbuf.reserve(8 * 1024);
        }
        match self.client.try_read_buf(&mut self.cbuf) {
            Ok(0) => return Err(Exit::ClientGone),
            Ok(n) => self.received += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(_) => return Err(Exit::ClientGone),
        }
        self.scan_client()?;
        self.note_attached_write();
        if self.scanned > 0 {
            self.write_server()?;
        }
        if self.terminate_pending() {
            return Err(Exit::ClientGone);
        }
        Ok(())
    }

    /// Reads what the server sent and passes it on (see [`super::forward`]).
    fn read_server(&mut self) -> Result<(), Exit> {
        let Some(conn) = self.server.as_mut() else {
            return Ok(());
        };
        let sc: &mut crate::pool::ServerConn = conn;
        if sc.read_buf.capacity() - sc.read_buf.len() < 4096 {
            sc.read_buf.reserve(16 * 1024);
        }
        match sc.stream.try_read_buf(&mut sc.read_buf) {
            Ok(0) => return self.server_failed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(_) => return self.server_failed(),
        }
        self.pump_client()
    }

    /// In transaction mode, gives the server back once nothing is owed or in flight.
    pub(super) fn maybe_release(&mut self) -> Result<(), Exit> {
        if self.session_mode
            || !self.tracker.releasable()
            || !self.sscan.at_boundary()
            || !self.cscan.at_boundary()
            || self.scanned > 0
            || !self.wire.idle()
            // TLS records still queued for the client: the attached loop flushes them when
            // the socket drains. Released now, nothing would (the idle loop only reads).
            || self.client.needs_flush()
        {
            return Ok(());
        }
        if !self.ask.is_empty() {
            // First learn what the transaction left in the session (an async round trip:
            // the attached loop runs it next).
            self.probe_due = true;
            return Ok(());
        }
        if self.pinned.is_some() {
            return Ok(());
        }
        if let Some(conn) = self.server.take() {
            self.slot.set(None);
            if self.wire.suspect {
                self.wire.suspect = false;
                tracing::debug!("a server's prepared statements are unknown; closing it");
                conn.discard();
            } else if self.wire.replies.is_empty() {
                conn.release();
                if let Some(r) = self.route.as_mut() {
                    r.released();
                }
            } else {
                // The server answered everything the tracker counted, yet replies are still
                // expected: the two disagree about this conversation, so trust neither.
                tracing::warn!(
                    pending = self.wire.replies.len(),
                    "reply bookkeeping out of step at release; closing the server connection"
                );
                self.wire.replies = Default::default();
                conn.discard();
            }
            if let Some(r) = self.route.as_mut() {
                r.detached();
            }
        }
        if self.entry.stop.raised(stop::DRAIN) != 0 {
            return Err(Exit::shutdown());
        }
        Ok(())
    }
}

/// The client's last words (a FATAL, when one is owed) and the socket's shutdown, each
/// bounded: a client that stopped reading must not hold its task (and with it a shutdown
/// waiting on every task) on them or on the TLS close_notify.
async fn goodbye(client: &mut Stream, exit: Exit) {
    if let Exit::Fatal(code, msg) = exit {
        tracing::debug!(code = code.code(), %msg, "ending client");
        crate::metrics::count_error(crate::error::ErrorKind::of_fatal(code));
        let mut out = BytesMut::new();
        encode::error(&mut out, Severity::Fatal, code, &msg);
        let _ = tokio::time::timeout(EXIT_WRITE_TIMEOUT, client.send(&out)).await;
    }
    let _ = tokio::time::timeout(EXIT_WRITE_TIMEOUT, client.shutdown()).await;
}

/// Which readiness an attached session waits for on one socket.
#[derive(Clone, Copy)]
struct Wants {
    write: bool,
    read: bool,
}

/// Polls one socket for the readiness `wants` names; `None` when none is ready yet (the
/// task's waker is then registered for each).
fn poll_side(
    tcp: &tokio::net::TcpStream,
    wants: Wants,
    side: Side,
    cx: &mut Context<'_>,
) -> Option<Event> {
    let (writable, readable) = match side {
        Side::Server => (Event::ServerWritable, Event::ServerReadable),
        Side::Client => (Event::ClientWritable, Event::ClientReadable),
    };
    if wants.write {
        match tcp.poll_write_ready(cx) {
            Poll::Ready(Ok(())) => return Some(writable),
            Poll::Ready(Err(_)) => return Some(Event::IoError(side)),
            Poll::Pending => {}
        }
    }
    if wants.read {
        match tcp.poll_read_ready(cx) {
            Poll::Ready(Ok(())) => return Some(readable),
            Poll::Ready(Err(_)) => return Some(Event::IoError(side)),
            Poll::Pending => {}
        }
    }
    None
}

/// Reads client bytes. Between requests the client holds no buffer at all: an idle client
/// costs its task and socket, not a read buffer.
async fn read_client(client: &mut Stream, cbuf: &mut BytesMut) -> std::io::Result<usize> {
    if cbuf.is_empty() {
        if cbuf.capacity() > 0 {
            *cbuf = BytesMut::new();
        }
        client.readable().await?;
    }
    if cbuf.is_empty() && cbuf.capacity() == 0 {
        // A request usually fits in a small buffer; a bigger one grows it below (and the
        // attached loop reads in 8 KiB steps). Small transient buffers matter: allocated by
        // thousands of clients between long-lived session state, big ones leave resident
        // holes in the heap.
        *cbuf = BytesMut::with_capacity(FIRST_READ);
    } else if cbuf.capacity() - cbuf.len() < 1024 {
        cbuf.reserve(8 * 1024);
    }
    client.read_buf(cbuf).await
}

/// The buffer a request's first read gets.
const FIRST_READ: usize = 1024;
