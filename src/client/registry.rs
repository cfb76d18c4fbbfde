//! The list of logged-in clients, for `SHOW CLIENTS` and `KILL`: who each is, what it is
//! doing, and a token that ends it.
//!
//! It owns the entries; it does not decide states (the session sets its own, with one relaxed
//! store per change) nor count clients for `max_client_conn` (`Shared::clients` does, from
//! before login).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;

use super::stop::{self, StopFlags};
use crate::shutdown::Shutdown;

/// What a client is doing, in PgBouncer's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ClientState {
    /// Connected, with no server and no request waiting for one.
    Idle = 0,
    /// A request waits for a server connection.
    Waiting = 1,
    /// Holds a server connection.
    Active = 2,
}

impl ClientState {
    /// The `state` column of `SHOW CLIENTS`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Idle => "idle",
            ClientState::Waiting => "waiting",
            ClientState::Active => "active",
        }
    }

    fn from_u8(v: u8) -> ClientState {
        match v {
            1 => ClientState::Waiting,
            2 => ClientState::Active,
            _ => ClientState::Idle,
        }
    }
}

/// One logged-in client. Fixed at login except for the atomics.
#[derive(Debug)]
pub struct ClientEntry {
    /// Unique for the life of the proxy (the `ptr` column).
    pub id: u64,
    pub addr: SocketAddr,
    pub local_addr: Option<SocketAddr>,
    pub connect_time: SystemTime,
    pub user: String,
    pub database: String,
    pub application_name: String,
    /// TLS version and cipher suite (`SHOW CLIENTS`' `tls`); empty in plaintext.
    pub tls: String,
    /// The BackendKeyData process id the proxy gave it.
    pub process_id: i32,
    /// A console session rather than a pooled one.
    pub admin: bool,
    state: AtomicU8,
    /// Microseconds from `clock_epoch` to the start of its latest request; `NO_REQUEST`
    /// before any.
    request_at_us: AtomicI64,
    /// The server connection id it holds (0 when none), for `SHOW SERVERS`' `link`.
    server_id: AtomicU64,
    /// Shutdown and `KILL`, raised for this client (see [`super::stop`]).
    pub stop: StopFlags,
}

/// What [`ClientRegistry::register`] needs to know about a client.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub addr: SocketAddr,
    pub local_addr: Option<SocketAddr>,
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub tls: String,
    pub process_id: i32,
    pub admin: bool,
}

impl ClientEntry {
    pub fn state(&self) -> ClientState {
        ClientState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, s: ClientState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    /// A request started at `at`. Monotonic, from the clock read the session already made:
    /// a wall-clock read per request showed in the per-transaction CPU; the rare `SHOW`
    /// converts.
    pub fn request_started(&self, at: Instant) {
        let (epoch, _) = clock_epoch();
        // Signed: the epoch is read at first use, possibly just after `at`.
        let us = match at.checked_duration_since(*epoch) {
            Some(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            None => -i64::try_from(epoch.duration_since(at).as_micros()).unwrap_or(i64::MAX),
        };
        self.request_at_us.store(us, Ordering::Relaxed);
    }

    /// The start of its latest request (wall clock), if it made one.
    pub fn request_time(&self) -> Option<SystemTime> {
        let us = self.request_at_us.load(Ordering::Relaxed);
        if us == NO_REQUEST {
            return None;
        }
        let wall = clock_epoch().1;
        let d = Duration::from_micros(us.unsigned_abs());
        if us >= 0 {
            wall.checked_add(d)
        } else {
            wall.checked_sub(d)
        }
    }

    pub fn set_server(&self, id: Option<u64>) {
        self.server_id.store(id.unwrap_or(0), Ordering::Relaxed);
    }

    /// The id of the server connection it holds.
    pub fn server(&self) -> Option<u64> {
        match self.server_id.load(Ordering::Relaxed) {
            0 => None,
            id => Some(id),
        }
    }
}

/// `ClientEntry::request_at_us` before the first request.
const NO_REQUEST: i64 = i64::MIN;

/// One moment read on both clocks, for turning `Instant`s into wall-clock times.
fn clock_epoch() -> &'static (Instant, SystemTime) {
    static EPOCH: OnceLock<(Instant, SystemTime)> = OnceLock::new();
    EPOCH.get_or_init(|| (Instant::now(), SystemTime::now()))
}

/// Every logged-in client of one proxy.
#[derive(Default)]
pub struct ClientRegistry {
    map: DashMap<u64, Arc<ClientEntry>>,
    next_id: AtomicU64,
}

/// Keeps a client listed; unlists it on drop.
pub struct Registered<'a> {
    registry: &'a ClientRegistry,
    pub entry: Arc<ClientEntry>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.registry.map.remove(&self.entry.id);
    }
}

impl ClientRegistry {
    /// Lists a client until the returned guard drops.
    pub fn register(&self, c: NewClient, shutdown: &Shutdown) -> Registered<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Arc::new(ClientEntry {
            id,
            addr: c.addr,
            local_addr: c.local_addr,
            connect_time: SystemTime::now(),
            user: c.user,
            database: c.database,
            application_name: c.application_name,
            tls: c.tls,
            process_id: c.process_id,
            admin: c.admin,
            state: AtomicU8::new(ClientState::Idle as u8),
            request_at_us: AtomicI64::new(NO_REQUEST),
            server_id: AtomicU64::new(0),
            stop: StopFlags::default(),
        });
        self.map.insert(id, Arc::clone(&entry));
        // A shutdown that began before the insert was fanned out without this client.
        // (One that begins after it sees the client: `raise_all` runs after its token.)
        if shutdown.drain.is_cancelled() {
            entry.stop.raise(stop::DRAIN);
        }
        if shutdown.hard.is_cancelled() {
            entry.stop.raise(stop::HARD);
        }
        Registered {
            registry: self,
            entry,
        }
    }

    /// Every listed client, oldest first.
    pub fn all(&self) -> Vec<Arc<ClientEntry>> {
        let mut v: Vec<_> = self.map.iter().map(|e| Arc::clone(e.value())).collect();
        v.sort_by_key(|e| e.id);
        v
    }

    /// Ends every pooled (non-admin) client of `database`; returns how many.
    pub fn kill_database(&self, database: &str) -> usize {
        let mut n = 0;
        for e in self.map.iter() {
            if !e.admin && e.database == database {
                e.stop.raise(stop::KILL);
                n += 1;
            }
        }
        n
    }

    /// Raises `flag` for every listed client.
    pub fn raise_all(&self, flag: u8) {
        for e in self.map.iter() {
            e.stop.raise(flag);
        }
    }

    /// Fans the shutdown tokens out to every client, each once, as they are cancelled.
    pub async fn follow_shutdown(&self, shutdown: &Shutdown) {
        shutdown.drain.cancelled().await;
        self.raise_all(stop::DRAIN);
        shutdown.hard.cancelled().await;
        self.raise_all(stop::HARD);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(db: &str, admin: bool) -> NewClient {
        NewClient {
            addr: "127.0.0.1:5000".parse().expect("addr"),
            local_addr: None,
            user: "app".into(),
            database: db.into(),
            application_name: "psql".into(),
            tls: String::new(),
            process_id: 7,
            admin,
        }
    }

    #[test]
    fn entries_list_until_dropped_and_kill_targets_one_database() {
        let r = ClientRegistry::default();
        let s = Shutdown::default();
        let a = r.register(client("appdb", false), &s);
        let b = r.register(client("other", false), &s);
        let c = r.register(client("appdb", true), &s);
        assert_eq!(r.all().len(), 3);
        a.entry.set_state(ClientState::Active);
        assert_eq!(r.all()[0].state(), ClientState::Active);
        assert_eq!(r.kill_database("appdb"), 1);
        assert_eq!(a.entry.stop.raised(stop::KILL), stop::KILL);
        assert_eq!(
            b.entry.stop.raised(stop::KILL) | c.entry.stop.raised(stop::KILL),
            0
        );
        drop(a);
        assert_eq!(r.all().iter().map(|e| e.id).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn request_time_is_the_wall_clock_of_the_request_instant() {
        let r = ClientRegistry::default();
        let a = r.register(client("appdb", false), &Shutdown::default());
        assert_eq!(a.entry.request_time(), None);
        // A machine up for less than a minute cannot go back that far: nothing to check.
        let Some(earlier) = Instant::now().checked_sub(Duration::from_secs(60)) else {
            return;
        };
        a.entry.request_started(earlier);
        let t = a.entry.request_time().expect("a request time");
        let ago = SystemTime::now().duration_since(t).expect("in the past");
        assert!(
            ago >= Duration::from_secs(59) && ago < Duration::from_secs(70),
            "{ago:?}"
        );
    }

    #[tokio::test]
    async fn a_shutdown_reaches_clients_listed_before_and_after_it() {
        let r = Arc::new(ClientRegistry::default());
        let s = Shutdown::default();
        let before = r.register(client("appdb", false), &s);
        let follow = {
            let (r, s) = (Arc::clone(&r), s.clone());
            tokio::spawn(async move { r.follow_shutdown(&s).await })
        };
        s.drain.cancel();
        before.entry.stop.wait(stop::DRAIN).await;
        assert_eq!(before.entry.stop.raised(stop::HARD), 0);
        let after = r.register(client("appdb", false), &s);
        assert_eq!(
            after.entry.stop.raised(stop::DRAIN | stop::HARD),
            stop::DRAIN
        );
        s.hard.cancel();
        follow.await.expect("follow task");
        assert_eq!(before.entry.stop.raised(stop::HARD), stop::HARD);
        assert_eq!(after.entry.stop.raised(stop::HARD), stop::HARD);
        let late = r.register(client("appdb", false), &s);
        assert_eq!(
            late.entry.stop.raised(stop::DRAIN | stop::HARD),
            stop::DRAIN | stop::HARD
        );
    }
}
