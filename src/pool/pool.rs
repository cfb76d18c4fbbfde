//! A pool of server connections for one (database, user) on one member.
//!
//! Checkout is a fair FIFO: a returned connection goes straight to the longest waiter, so a
//! newcomer can never overtake the queue, and every waiter gives up at its own deadline. A pool
//! whose server cannot be reached fails checkouts at once (for a short back-off after each failed
//! connect) instead of letting clients queue to the timeout. The state lock is a plain mutex that
//! is never held across `.await`.
//!
//! A config reload changes a pool in place ([`Pool::set_settings`]): growing opens connections
//! for the queued checkouts at once; shrinking closes surplus idle connections now and lent
//! ones as they come back. A pool the reload replaced or removed is [`Pool::retire`]d: it keeps
//! serving the sessions still holding it, but keeps nothing idle.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::oneshot;

use super::connect::{self, ConnectError, ServerTarget};
use super::guard::PooledConn;
use super::server_conn::ServerConn;
use crate::cancel::CancelTarget;
use crate::error::{ClientFacing, ErrorKind};
use crate::protocol::sqlstate::{self, SqlState};

/// Sizing and timeouts of one pool (from `[pool]`, with per-database overrides applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub size: usize,
    pub min_idle: usize,
    pub checkout_timeout: Duration,
    pub idle_timeout: Duration,
    pub lifetime: Duration,
    pub connect_timeout: Duration,
}

/// ParameterStatus (name, value) pairs in the order the server sent them.
pub type ServerParams = Vec<(String, String)>;

/// Server connection ids, unique in the process (not per pool): `SHOW SERVERS`' `ptr` and the
/// `link` of `SHOW CLIENTS` must name one connection, whichever member's pool it is in. A
/// counter, not shared state: proxies in one process never look at each other's ids.
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// How long a pool refuses checkouts after a failed connect before trying again.
const DOWN_BACKOFF: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    #[error(
        "no server connection for database \"{database}\" within {waited_ms} ms (pool.checkout_timeout_ms)"
    )]
    Timeout { database: String, waited_ms: u128 },
    #[error("server for database \"{database}\" is unavailable: {cause}")]
    Down { database: String, cause: String },
    #[error("{0}")]
    Connect(Arc<ConnectError>),
    #[error("pool for database \"{0}\" is closed")]
    Closed(String),
}

impl ClientFacing for PoolError {
    fn sqlstate(&self) -> SqlState {
        match self {
            PoolError::Timeout { .. } => sqlstate::TOO_MANY_CONNECTIONS,
            PoolError::Down { .. } => sqlstate::CONNECTION_REJECTED,
            PoolError::Connect(e) => e.sqlstate(),
            PoolError::Closed(_) => sqlstate::ADMIN_SHUTDOWN,
        }
    }
    fn kind(&self) -> ErrorKind {
        match self {
            PoolError::Connect(_) | PoolError::Down { .. } => ErrorKind::Server,
            _ => ErrorKind::Pool,
        }
    }
    fn client_message(&self) -> String {
        match self {
            PoolError::Connect(e) => e.client_message(),
            other => other.to_string(),
        }
    }
}

struct Waiter {
    id: u64,
    tx: oneshot::Sender<Result<Box<ServerConn>, PoolError>>,
    /// When its checkout began: the front waiter's age is the pool's max wait (metrics).
    since: Instant,
}

/// A queued checkout in progress. Dropped while armed (the checkout was cancelled: client
/// gone, KILL, shutdown), it leaves the queue; a connection already handed to it goes back
/// to the pool instead of dying in the channel with its slot still counted.
struct Waiting<'a> {
    pool: &'a Arc<Pool>,
    id: u64,
    rx: oneshot::Receiver<Result<Box<ServerConn>, PoolError>>,
    armed: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.pool.lock().waiters.retain(|w| w.id != self.id);
        if let Ok(Ok(conn)) = self.rx.try_recv() {
            self.pool.checkin(conn);
        }
    }
}

struct Down {
    retry_at: Instant,
    cause: String,
}

#[derive(Default)]
struct State {
    /// Idle connections; the most recently used is at the end and is reused first, so the
    /// others age out under `idle_timeout` when load drops.
    // Boxed (allowed below): what a checkout hands out and a session keeps is the box, so
    // checkin and checkout move a pointer and an idle session's `Option<PooledConn>` is small.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<ServerConn>>,
    /// Idle + lent + being connected.
    total: usize,
    /// Connects in progress (counted in `total`, not yet idle or lent).
    connecting: usize,
    waiters: VecDeque<Waiter>,
    next_waiter: u64,
    down: Option<Down>,
    closed: bool,
    /// Connections lent to clients, by id: what `SHOW SERVERS` lists for them (the
    /// connection itself is with its client).
    lent: HashMap<u64, LentInfo>,
    /// Replaced or removed by a config reload: a connection coming back is closed unless a
    /// checkout is waiting for it (see [`Pool::retire`]).
    retired: bool,
    /// Lent when [`Pool::close_idle`] ran (KILL, PAUSE): closed when they come back, or a
    /// client releasing just after the KILL would leave a server idle in a killed database.
    doomed: std::collections::HashSet<u64>,
}

/// A lent connection as [`Pool::servers`] reports it.
#[derive(Debug, Clone)]
struct LentInfo {
    created: Instant,
    lent_at: Instant,
    local_addr: Option<std::net::SocketAddr>,
    remote_pid: i32,
    prepared: usize,
    tls: Option<Arc<str>>,
}

/// What a server connection is doing, in PgBouncer's words (`SHOW SERVERS` `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Lent to a client.
    Active,
    /// In the pool, ready.
    Idle,
    /// Being opened (connect, startup, authentication).
    Login,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Active => "active",
            ServerState::Idle => "idle",
            ServerState::Login => "login",
        }
    }
}

/// One server connection of a pool, for `SHOW SERVERS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// The connection id (`ServerConn::id`); `None` while logging in.
    pub id: Option<u64>,
    pub state: ServerState,
    /// When it was opened; `None` while logging in.
    pub connect_time: Option<Instant>,
    /// Active: when it was lent; idle: when it was last returned.
    pub request_time: Option<Instant>,
    pub local_addr: Option<std::net::SocketAddr>,
    /// The server's backend process id (from its BackendKeyData).
    pub remote_pid: i32,
    /// Statements prepared on it (at lending time, for an active one).
    pub prepared: usize,
    /// TLS version and cipher suite; `None` in plaintext.
    pub tls: Option<Arc<str>>,
}

/// Counters readable without the lock (for SHOW POOLS and the metrics endpoint).
#[derive(Debug, Default)]
pub struct PoolCounters {
    pub checkouts: AtomicU64,
    pub timeouts: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
}

pub struct Pool {
    pub database: String,
    pub user: String,
    /// Which member of the database this pool reaches: `primary`, `replica1`, ...
    pub member: String,
    /// `database NUL user NUL`: the scope of this pool's prepared statements in the registry.
    pub statement_scope: Box<[u8]>,
    target: ServerTarget,
    /// Settings sent in every server StartupMessage of this pool.
    startup_params: Vec<(String, String)>,
    /// Swapped by a reload ([`Pool::set_settings`]); a lock-free load on the data path.
    settings: ArcSwap<PoolSettings>,
    state: Mutex<State>,
    /// ParameterStatus values from the first login: what a client is told at its own login.
    server_params: ArcSwapOption<ServerParams>,
    /// (lower-case setting, value as a client wrote it) -> the server's spelling of it, learnt
    /// from `set_config`'s result, so logins report settings as a direct connection would.
    normalized: Mutex<HashMap<(String, String), String>>,
    pub counters: PoolCounters,
    /// Checkouts waiting for a connection this pool is opening for them (not queued in
    /// `waiters`): they wait too, and the metrics count them as waiting clients. Touched only on
    /// the slow path (no idle connection).
    connect_waiting: AtomicUsize,
    /// `lagoon_pool_wait_seconds{database}`, resolved once: the session records each checkout's
    /// wait on it without a registry lookup.
    wait_seconds: metrics::Histogram,
}

/// What a pool holds right now, for the metrics endpoint and SHOW POOLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections ready in the pool.
    pub idle: usize,
    /// Connections checked out by a client (PgBouncer's `sv_active`).
    pub active: usize,
    /// Connections being opened (login in progress).
    pub connecting: usize,
    /// Checkouts waiting: queued for a returned connection or for one being opened for them.
    pub waiting: usize,
    /// How long the oldest queued checkout has waited (zero when none is queued). A checkout
    /// waiting on its own connect is not in it: that wait is bounded by `connect_timeout_ms`.
    pub max_wait: Duration,
}

/// Bound on the normalisation cache: distinct application_names could otherwise grow it
/// without limit. When full it is cleared and relearnt.
const MAX_NORMALIZED: usize = 4096;

enum Plan {
    Got(Box<ServerConn>),
    Connect,
    Wait(
        u64,
        oneshot::Receiver<Result<Box<ServerConn>, PoolError>>,
        Instant,
    ),
}

impl Pool {
    pub fn new(
        database: String,
        user: String,
        member: String,
        target: ServerTarget,
        startup_params: Vec<(String, String)>,
        settings: PoolSettings,
    ) -> Arc<Pool> {
        let statement_scope = [database.as_bytes(), b"\0", user.as_bytes(), b"\0"]
            .concat()
            .into_boxed_slice();
        let wait_seconds = crate::metrics::pool_wait_histogram(&database);
        Arc::new(Pool {
            statement_scope,
            database,
            user,
            member,
            target,
            startup_params,
            settings: ArcSwap::from_pointee(settings),
            state: Mutex::new(State::default()),
            server_params: ArcSwapOption::empty(),
            normalized: Mutex::new(HashMap::new()),
            counters: PoolCounters::default(),
            connect_waiting: AtomicUsize::new(0),
            wait_seconds,
        })
    }

    /// The current settings: a cheap lock-free snapshot (derefs to [`PoolSettings`]) that a
    /// reload may replace at any time, so read it where it is used rather than keep it.
    pub fn settings(&self) -> arc_swap::Guard<Arc<PoolSettings>> {
        self.settings.load()
    }

    /// Where and as whom this pool logs in.
    pub fn target(&self) -> &ServerTarget {
        &self.target
    }

    /// Whether this pool logs in at `target` with `startup_params`: a reload keeps a pool
    /// whose member did not change, with its warm connections.
    pub fn serves(&self, target: &ServerTarget, startup_params: &[(String, String)]) -> bool {
        self.target == *target && self.startup_params == startup_params
    }

    /// Applies reloaded sizing and timeouts in place, without touching a lent connection.
    /// Growing opens connections for the queued checkouts right away (up to the new size), so
    /// they do not sit out their timeout; shrinking closes surplus idle connections now (least
    /// recently used first), and lent ones at check-in while the pool is over its size.
    pub fn set_settings(self: &Arc<Self>, new: PoolSettings) {
        let (surplus, to_open) = {
            let mut st = self.lock();
            let size = new.size;
            // Stored under the state lock: checkout, checkin and discard compare `total` with
            // the size under it too, so none of them sees half a change.
            self.settings.store(Arc::new(new));
            let excess = st.total.saturating_sub(size).min(st.idle.len());
            let surplus: Vec<Box<ServerConn>> = st.idle.drain(..excess).collect();
            st.total -= excess;
            let to_open = if st.closed {
                0
            } else {
                st.waiters.len().min(size.saturating_sub(st.total))
            };
            st.total += to_open;
            st.connecting += to_open;
            (surplus, to_open)
        };
        drop(surplus);
        for _ in 0..to_open {
            self.spawn_connect();
        }
    }

    /// Takes the pool out of service after a reload replaced or removed it (its member's
    /// address or login changed, or its database or user is gone). Sessions still holding it
    /// keep working (checkouts still open connections as needed, so an in-flight transaction
    /// or a removed user's open session is never cut off), but it keeps nothing idle: its idle
    /// connections close now and every connection closes when it comes back, unless a
    /// checkout is queued for it. When the last session lets go, the pool is dropped.
    pub fn retire(&self) {
        let idle = {
            let mut st = self.lock();
            st.retired = true;
            let idle = std::mem::take(&mut st.idle);
            st.total -= idle.len();
            idle
        };
        drop(idle);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave State inconsistent in a way that
        // matters more than refusing service; recover the guard.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The server's ParameterStatus values from the first successful login, if any yet.
    pub fn server_params(&self) -> Option<Arc<ServerParams>> {
        self.server_params.load_full()
    }

    /// The server's spelling of `value` for setting `name` (lower-case), if learnt.
    pub fn normalized(&self, name: &str, value: &str) -> Option<String> {
        let map = self.normalized.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(name.to_owned(), value.to_owned())).cloned()
    }

    /// Records the server's spelling of a setting value.
    pub fn learn_normalized(&self, name: &str, value: &str, normalized: &str) {
        let mut map = self.normalized.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_NORMALIZED {
            map.clear();
        }
        map.insert((name.to_owned(), value.to_owned()), normalized.to_owned());
    }

    /// Waits for a server connection until `deadline`; see the module docs for the policy.
    pub async fn checkout(self: &Arc<Self>, deadline: Instant) -> Result<PooledConn, PoolError> {
        let plan = {
            let mut st = self.lock();
            if st.closed {
                return Err(PoolError::Closed(self.database.clone()));
            }
            let mut got = None;
            while let Some(mut conn) = st.idle.pop() {
                if self.reusable(&mut conn) {
                    got = Some(conn);
                    break;
                }
                st.total -= 1;
            }
            match got {
                Some(conn) => Plan::Got(conn),
                None => {
                    if let Some(d) = &st.down {
                        if Instant::now() < d.retry_at && st.total == 0 {
                            return Err(PoolError::Down {
                                database: self.database.clone(),
                                cause: d.cause.clone(),
                            });
                        }
                    }
                    if st.total < self.settings.load().size && st.waiters.is_empty() {
                        st.total += 1;
                        st.connecting += 1;
                        Plan::Connect
                    } else {
                        let (tx, rx) = oneshot::channel();
                        let id = st.next_waiter;
                        st.next_waiter += 1;
                        // The wait's start, read only when there is a wait.
                        let since = Instant::now();
                        st.waiters.push_back(Waiter { id, tx, since });
                        Plan::Wait(id, rx, since)
                    }
                }
            }
        };
        let conn = match plan {
            Plan::Got(conn) => conn,
            Plan::Connect => {
                // Connect in a task of its own: if this checkout is cancelled (client gone,
                // login timeout), the connection still lands in the pool and the slot is
                // never lost.
                let (tx, rx) = oneshot::channel();
                let pool = Arc::clone(self);
                tokio::spawn(async move {
                    if let Err(Ok(conn)) = tx.send(pool.connect_counted().await) {
                        pool.checkin(conn);
                    }
                });
                let _waiting = ConnectWaiting::new(&self.connect_waiting);
                match rx.await {
                    Ok(res) => res?,
                    Err(_) => return Err(PoolError::Closed(self.database.clone())),
                }
            }
            Plan::Wait(id, rx, started) => {
                let mut wait = Waiting {
                    pool: self,
                    id,
                    rx,
                    armed: true,
                };
                let waited = tokio::time::timeout_at(deadline.into(), &mut wait.rx).await;
                // No await below: past here this checkout settles the wait itself.
                wait.armed = false;
                let rx = &mut wait.rx;
                match waited {
                    Ok(Ok(res)) => res?,
                    Ok(Err(_)) => return Err(PoolError::Closed(self.database.clone())),
                    Err(_) => {
                        let mut st = self.lock();
                        let before = st.waiters.len();
                        st.waiters.retain(|w| w.id != id);
                        if st.waiters.len() == before {
                            // Already handed something under the lock: take it.
                            drop(st);
                            if let Ok(res) = rx.try_recv() {
                                res?
                            } else {
                                return Err(PoolError::Closed(self.database.clone()));
                            }
                        } else {
                            self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                            return Err(PoolError::Timeout {
                                database: self.database.clone(),
                                waited_ms: started.elapsed().as_millis(),
                            });
                        }
                    }
                }
            }
        };
        self.counters.checkouts.fetch_add(1, Ordering::Relaxed);
        let lent = LentInfo {
            created: conn.created,
            lent_at: Instant::now(),
            local_addr: conn.local_addr,
            remote_pid: conn.cancel.process_id,
            prepared: conn.statements.len(),
            tls: conn.tls.clone(),
        };
        self.lock().lent.insert(conn.id, lent);
        Ok(PooledConn::new(conn, Arc::clone(self)))
    }

    fn reusable(&self, conn: &mut ServerConn) -> bool {
        conn.created.elapsed() < self.settings.load().lifetime && conn.is_healthy()
    }

    /// Opens a connection for a slot already counted in `total`; on failure gives the slot back
    /// and marks the pool down.
    async fn connect_counted(self: &Arc<Self>) -> Result<Box<ServerConn>, PoolError> {
        self.counters.connects.fetch_add(1, Ordering::Relaxed);
        let result = connect::login(
            &self.target,
            &self.startup_params,
            self.settings.load().connect_timeout,
        )
        .await;
        self.lock().connecting -= 1;
        match result {
            Ok(login) => {
                if self.server_params.load().is_none() {
                    self.server_params
                        .store(Some(Arc::new(login.params.clone())));
                }
                self.lock().down = None;
                let now = Instant::now();
                let local_addr = login.stream.tcp().local_addr().ok();
                Ok(Box::new(ServerConn {
                    local_addr,
                    tls: login
                        .stream
                        .is_tls()
                        .then(|| Arc::from(login.stream.tls_description())),
                    stream: login.stream,
                    read_buf: login.read_buf,
                    created: now,
                    last_used: now,
                    applied: Vec::new(),
                    statements: Default::default(),
                    sql_prepared: Vec::new(),
                    id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
                    cancel: Arc::new(CancelTarget {
                        host: self.target.host.clone(),
                        port: self.target.port,
                        process_id: login.process_id,
                        secret_key: login.secret_key,
                        tls: self.target.tls.clone(),
                    }),
                }))
            }
            Err(e) => {
                self.counters
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(database = %self.database, user = %self.user, error = %e, "server connect failed");
                let err = Arc::new(e);
                let mut st = self.lock();
                st.total -= 1;
                st.down = Some(Down {
                    retry_at: Instant::now() + DOWN_BACKOFF,
                    cause: err.to_string(),
                });
                if st.total == 0 {
                    // Nobody will return a connection to the queue: fail it now.
                    for w in st.waiters.drain(..) {
                        let _ = w.tx.send(Err(PoolError::Connect(Arc::clone(&err))));
                    }
                }
                Err(PoolError::Connect(err))
            }
        }
    }

    /// Takes back a clean connection: to the longest waiter first, else to the idle list.
    pub(super) fn checkin(self: &Arc<Self>, mut conn: Box<ServerConn>) {
        if !conn.read_buf.is_empty() || conn.created.elapsed() >= self.settings.load().lifetime {
            self.discard(conn);
            return;
        }
        conn.last_used = Instant::now();
        // Give an idle connection no buffer to hold on to.
        conn.read_buf = bytes::BytesMut::new();
        let mut st = self.lock();
        st.lent.remove(&conn.id);
        // Closed, doomed by close_idle, or over a size a reload shrank: this one closes (after
        // the lock is released, as `conn` outlives `st`).
        let doomed = !st.doomed.is_empty() && st.doomed.remove(&conn.id);
        if st.closed || doomed || st.total > self.settings.load().size {
            st.total -= 1;
            return;
        }
        while let Some(w) = st.waiters.pop_front() {
            match w.tx.send(Ok(conn)) {
                Ok(()) => return,
                Err(Ok(back)) => conn = back,
                Err(Err(_)) => return,
            }
        }
        if st.retired {
            st.total -= 1;
            return;
        }
        st.idle.push(conn);
    }

    /// Closes a connection and, if clients are waiting, opens a replacement for them.
    pub(super) fn discard(self: &Arc<Self>, conn: Box<ServerConn>) {
        let id = conn.id;
        drop(conn);
        let replace = {
            let mut st = self.lock();
            st.lent.remove(&id);
            st.doomed.remove(&id);
            st.total -= 1;
            let replace =
                !st.closed && !st.waiters.is_empty() && st.total < self.settings.load().size;
            if replace {
                st.total += 1;
                st.connecting += 1;
            }
            replace
        };
        if replace {
            self.spawn_connect();
        }
    }

    /// Opens a connection in the background (slot already counted) and checks it in.
    fn spawn_connect(self: &Arc<Self>) {
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            if let Ok(conn) = pool.connect_counted().await {
                pool.checkin(conn);
            }
        });
    }

    /// One maintenance pass: close idle connections past `idle_timeout` (down to `min_idle`) or
    /// past `lifetime` or found dead, then open connections up to `min_idle`.
    pub fn maintain(self: &Arc<Self>) {
        let now = Instant::now();
        let settings = self.settings.load();
        let (expired, to_open) = {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            let mut keep = Vec::with_capacity(st.idle.len());
            let mut expired = Vec::new();
            let idle = std::mem::take(&mut st.idle);
            let mut live = st.total;
            for mut conn in idle {
                let too_old = now.duration_since(conn.created) >= settings.lifetime;
                let idle_long = now.duration_since(conn.last_used) >= settings.idle_timeout
                    && live > settings.min_idle;
                if too_old || idle_long || !conn.is_healthy() {
                    live -= 1;
                    expired.push(conn);
                } else {
                    keep.push(conn);
                }
            }
            st.idle = keep;
            st.total = live;
            let down = st.down.as_ref().is_some_and(|d| now < d.retry_at);
            // An auth_query user's pool before any of its clients logged in: nothing to log
            // in with yet, so warming up would only fail (and log) every second.
            let down = down || !self.target.has_credential();
            let want = settings.min_idle.min(settings.size);
            let to_open = if down || st.retired {
                0
            } else {
                want.saturating_sub(st.idle.len() + st.connecting)
                    .min(settings.size - st.total.min(settings.size))
            };
            st.total += to_open;
            st.connecting += to_open;
            (expired, to_open)
        };
        drop(expired);
        for _ in 0..to_open {
            self.spawn_connect();
        }
    }

    /// Refuses new checkouts, fails the waiters and closes idle connections.
    pub fn close(&self) {
        let (idle, waiters) = {
            let mut st = self.lock();
            st.closed = true;
            let idle = std::mem::take(&mut st.idle);
            st.total -= idle.len();
            (idle, std::mem::take(&mut st.waiters))
        };
        drop(idle);
        for w in waiters {
            let _ = w.tx.send(Err(PoolError::Closed(self.database.clone())));
        }
    }

    /// Closes the idle connections now (`PAUSE`, `KILL`: so the server can be restarted under
    /// paused clients); returns how many. Lent ones are untouched, and the pool stays open.
    pub fn close_idle(&self) -> usize {
        let idle = {
            let mut st = self.lock();
            let idle = std::mem::take(&mut st.idle);
            st.total -= idle.len();
            let lent: Vec<u64> = st.lent.keys().copied().collect();
            st.doomed.extend(lent);
            idle
        };
        idle.len()
    }

    /// The server this pool connects to: (host, port).
    pub fn server_addr(&self) -> (&str, u16) {
        (&self.target.host, self.target.port)
    }

    /// Every connection of the pool, lent, idle or being opened (`SHOW SERVERS`), lent first
    /// by id, then idle from the most recently used.
    pub fn servers(&self) -> Vec<ServerInfo> {
        let st = self.lock();
        let mut out: Vec<ServerInfo> = st
            .lent
            .iter()
            .map(|(&id, l)| ServerInfo {
                id: Some(id),
                state: ServerState::Active,
                connect_time: Some(l.created),
                request_time: Some(l.lent_at),
                local_addr: l.local_addr,
                remote_pid: l.remote_pid,
                prepared: l.prepared,
                tls: l.tls.clone(),
            })
            .collect();
        out.sort_by_key(|s| s.id);
        out.extend(st.idle.iter().rev().map(|c| ServerInfo {
            id: Some(c.id),
            state: ServerState::Idle,
            connect_time: Some(c.created),
            request_time: Some(c.last_used),
            local_addr: c.local_addr,
            remote_pid: c.cancel.process_id,
            prepared: c.statements.len(),
            tls: c.tls.clone(),
        }));
        out.extend((0..st.connecting).map(|_| ServerInfo {
            id: None,
            state: ServerState::Login,
            connect_time: None,
            request_time: None,
            local_addr: None,
            remote_pid: 0,
            prepared: 0,
            tls: None,
        }));
        out
    }

    /// (idle, total, waiting) for observability.
    pub fn snapshot(&self) -> (usize, usize, usize) {
        let st = self.lock();
        (st.idle.len(), st.total, st.waiters.len())
    }

    /// Connection and waiter counts (see [`PoolStats`]), read under the lock once.
    pub fn stats(&self) -> PoolStats {
        let connect_waiting = self.connect_waiting.load(Ordering::Relaxed);
        let st = self.lock();
        let idle = st.idle.len();
        PoolStats {
            idle,
            active: st.total.saturating_sub(idle + st.connecting),
            connecting: st.connecting,
            waiting: st.waiters.len() + connect_waiting,
            max_wait: st
                .waiters
                .front()
                .map_or(Duration::ZERO, |w| w.since.elapsed()),
        }
    }

    /// The `lagoon_pool_wait_seconds` histogram of this pool's database.
    pub fn wait_seconds(&self) -> &metrics::Histogram {
        &self.wait_seconds
    }
}

/// Counts a checkout as waiting on its own connect while it lives (cancel-safe: the count
/// drops with the checkout future).
struct ConnectWaiting<'a>(&'a AtomicUsize);

impl<'a> ConnectWaiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        ConnectWaiting(count)
    }
}

impl Drop for ConnectWaiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
