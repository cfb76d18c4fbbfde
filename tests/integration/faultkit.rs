//! Helpers for the fault, cancel and shutdown tests: a raw protocol client (to send what no
//! driver would), raw CancelRequests, tokio-postgres connections whose connection task the test
//! can watch or kill, and superuser SQL that does not block the runtime.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// How long a raw read waits before the test gives up on the proxy.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A tokio-postgres client whose connection task is kept: `conn` ends with the error that
/// ended the connection (e.g. a FATAL the proxy sent between queries), and aborting it drops
/// the socket at once, as a crashed client would.
pub struct Tracked {
    pub client: Client,
    pub conn: JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl Tracked {
    /// Waits (bounded) for the connection to end and returns the SQLSTATE it ended with, if it
    /// ended with a database error.
    pub async fn ended_with(self, timeout: Duration) -> Option<String> {
        let res = tokio::time::timeout(timeout, self.conn)
            .await
            .unwrap_or_else(|_| panic!("connection still open after {timeout:?}"))
            .expect("connection task panicked");
        res.err().as_ref().and_then(crate::harness::sqlstate)
    }

    /// Kills the connection without a Terminate: the socket just closes.
    pub fn crash(&self) {
        self.conn.abort();
    }
}

pub async fn connect_tracked(conninfo: &str) -> Tracked {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {conninfo} failed: {e}"));
    Tracked {
        client,
        conn: tokio::spawn(conn),
    }
}

/// Superuser SQL on the primary, off the runtime threads (psql is a blocking child process).
pub async fn admin(sql: &str) -> String {
    let sql = sql.to_owned();
    tokio::task::spawn_blocking(move || crate::harness::admin_sql(&sql))
        .await
        .expect("admin_sql panicked")
}

/// Is a backend running a query whose text contains `marker` (and is not this probe)?
pub async fn marker_active(marker: &str) -> bool {
    admin(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
         AND query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
    ))
    .await
        != "0"
}

/// Waits until a backend runs a query containing `marker`.
pub async fn wait_marker_active(marker: &str) {
    let m = marker.to_owned();
    crate::harness::eventually(
        &format!("a backend running the query marked {marker}"),
        Duration::from_secs(10),
        || {
            let m = m.clone();
            async move { marker_active(&m).await }
        },
    )
    .await;
}

/// Waits until no backend runs a query containing `marker`.
pub async fn wait_marker_gone(marker: &str, timeout: Duration) {
    let m = marker.to_owned();
    crate::harness::eventually(
        &format!("no backend running the query marked {marker}"),
        timeout,
        || {
            let m = m.clone();
            async move { !marker_active(&m).await }
        },
    )
    .await;
}

/// pg_stat_activity.state of backend `pid` ("" when that backend is gone).
pub async fn backend_state(pid: i32) -> String {
    admin(&format!(
        "SELECT coalesce(state, '') FROM pg_stat_activity WHERE pid = {pid}"
    ))
    .await
}

/// One message as read: type byte and body.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// The SQLSTATE of an ErrorResponse / NoticeResponse.
    pub fn sqlstate(&self) -> Option<String> {
        field(&self.body, b'C')
    }
}

/// A field of an ErrorResponse/NoticeResponse body.
pub fn field(body: &[u8], code: u8) -> Option<String> {
    let mut rest = body;
    while let Some((&c, tail)) = rest.split_first() {
        if c == 0 {
            return None;
        }
        let end = tail.iter().position(|&b| b == 0)?;
        if c == code {
            return Some(String::from_utf8_lossy(&tail[..end]).into_owned());
        }
        rest = &tail[end + 1..];
    }
    None
}

/// A protocol-level client on a plain socket.
pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
    /// BackendKeyData the proxy gave this client.
    pub pid: i32,
    pub secret: i32,
}

impl Raw {
    /// Opens a socket and logs in as a user the proxy trusts (no password exchange).
    pub async fn login_trust(addr: SocketAddr, user: &str, db: &str) -> Raw {
        Raw::login_trust_with(addr, &[("user", user), ("database", db)]).await
    }

    /// [`Raw::login_trust`] with the startup parameters given.
    pub async fn login_trust_with(addr: SocketAddr, params: &[(&str, &str)]) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect to proxy");
        let _ = stream.set_nodelay(true);
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
            pid: 0,
            secret: 0,
        };
        raw.send(&startup(params)).await.expect("send startup");
        loop {
            let m = raw
                .read_msg()
                .await
                .expect("login: connection closed by the proxy");
            match m.tag {
                b'R' => assert_eq!(
                    &m.body[..4],
                    &[0, 0, 0, 0],
                    "trust login must not ask for a password"
                ),
                b'K' => {
                    raw.pid = i32::from_be_bytes(m.body[0..4].try_into().unwrap());
                    raw.secret = i32::from_be_bytes(m.body[4..8].try_into().unwrap());
                }
                b'E' => panic!("login refused: {:?}", m.sqlstate()),
                b'Z' => break,
                _ => {}
            }
        }
        assert_ne!(raw.pid, 0, "no BackendKeyData at login");
        raw
    }

    /// Opens a socket and sends nothing yet (for startup-phase tests).
    pub async fn connect_only(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect to proxy");
        Raw {
            stream,
            buf: BytesMut::new(),
            pid: 0,
            secret: 0,
        }
    }

    /// Reads and ignores bytes until the peer closes or `timeout` passes; true if it closed.
    pub async fn drain_bytes(&mut self, timeout: Duration) -> bool {
        let mut sink = Vec::new();
        tokio::time::timeout(timeout, self.stream.read_to_end(&mut sink))
            .await
            .is_ok()
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next whole message, or `None` when the peer closed the socket (or reset it).
    /// Panics after [`READ_TIMEOUT`] without one.
    pub async fn read_msg(&mut self) -> Option<Msg> {
        tokio::time::timeout(READ_TIMEOUT, self.read_msg_inner())
            .await
            .expect("no message from the proxy in time")
    }

    /// Like [`Raw::read_msg`] but gives `Err(())` on timeout instead of panicking.
    pub async fn try_read_msg(&mut self, timeout: Duration) -> Result<Option<Msg>, ()> {
        tokio::time::timeout(timeout, self.read_msg_inner())
            .await
            .map_err(|_| ())
    }

    async fn read_msg_inner(&mut self) -> Option<Msg> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap());
                assert!(len >= 4, "the proxy sent a bad length {len}");
                let total = len as usize + 1;
                if self.buf.len() >= total {
                    let tag = self.buf[0];
                    self.buf.advance(5);
                    let body = self.buf.split_to(total - 5).to_vec();
                    return Some(Msg { tag, body });
                }
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads messages up to and including the next ReadyForQuery; `None` in place of the
    /// list means the connection closed first (the messages read before are dropped).
    pub async fn read_until_ready(&mut self) -> Option<Vec<Msg>> {
        let mut out = Vec::new();
        loop {
            let m = self.read_msg().await?;
            let done = m.tag == b'Z';
            out.push(m);
            if done {
                return Some(out);
            }
        }
    }

    /// Reads every message until the proxy closes the connection.
    pub async fn read_until_closed(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.read_msg().await {
            out.push(m);
        }
        out
    }

    /// Simple-protocol query; returns the replies up to ReadyForQuery.
    pub async fn simple(&mut self, sql: &str) -> Vec<Msg> {
        self.send(&query(sql)).await.expect("send query");
        self.read_until_ready()
            .await
            .unwrap_or_else(|| panic!("connection closed while running {sql}"))
    }
}

/// The first column of the first DataRow in `msgs`, as text.
pub fn first_value(msgs: &[Msg]) -> Option<String> {
    let d = msgs.iter().find(|m| m.tag == b'D')?;
    let len = i32::from_be_bytes(d.body[2..6].try_into().unwrap());
    if len < 0 {
        return None;
    }
    Some(String::from_utf8_lossy(&d.body[6..6 + len as usize]).into_owned())
}

/// The SQLSTATE of the first ErrorResponse in `msgs`.
pub fn first_error(msgs: &[Msg]) -> Option<String> {
    msgs.iter().find(|m| m.tag == b'E').and_then(Msg::sqlstate)
}

fn message(tag: u8, body: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(body.len() + 5);
    b.put_u8(tag);
    b.put_i32(body.len() as i32 + 4);
    b.put_slice(body);
    b
}

/// A protocol 3.0 StartupMessage (built by `login_wire`, which owns the startup packets).
pub fn startup(params: &[(&str, &str)]) -> BytesMut {
    BytesMut::from(&crate::login_wire::startup_with_version(196_608, params)[..])
}

pub fn query(sql: &str) -> BytesMut {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(b'Q', &body)
}

/// Parse (unnamed, no parameter types) + Bind (unnamed, no parameters, text results) +
/// Execute (all rows), without Sync.
pub fn extended(sql: &str) -> BytesMut {
    let mut out = BytesMut::new();
    let mut parse = vec![0u8];
    parse.extend_from_slice(sql.as_bytes());
    parse.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&message(b'P', &parse));
    out.extend_from_slice(&message(b'B', &[0, 0, 0, 0, 0, 0, 0, 0]));
    out.extend_from_slice(&message(b'E', &[0, 0, 0, 0, 0]));
    out
}

pub fn sync() -> BytesMut {
    message(b'S', &[])
}

/// A CancelRequest sent straight to `addr`; returns once the proxy has closed the socket,
/// i.e. has finished handling it (forwarding included).
pub async fn raw_cancel(addr: SocketAddr, pid: i32, secret: i32) {
    let mut s = TcpStream::connect(addr).await.expect("connect for cancel");
    let mut b = BytesMut::new();
    b.put_i32(16);
    b.put_i32(80_877_102);
    b.put_i32(pid);
    b.put_i32(secret);
    s.write_all(&b).await.expect("send cancel");
    let mut sink = Vec::new();
    tokio::time::timeout(READ_TIMEOUT, s.read_to_end(&mut sink))
        .await
        .expect("the proxy kept a cancel connection open")
        .ok();
    assert!(sink.is_empty(), "a CancelRequest gets no reply: {sink:?}");
}

/// The rows of a simple-protocol query, first column as text (`None` for NULL). Simple
/// protocol on purpose: these tests must not depend on named prepared statements surviving a
/// change of server between transactions.
pub async fn rows(
    client: &Client,
    sql: &str,
) -> Result<Vec<Option<String>>, tokio_postgres::Error> {
    Ok(client
        .simple_query(sql)
        .await?
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
            _ => None,
        })
        .collect())
}

/// The first column of the last row a simple query returns.
pub async fn scalar(client: &Client, sql: &str) -> Option<String> {
    rows(client, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .pop()
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// The only pool of a proxy (tests that look at a pool use one database and one user).
pub fn only_pool(proxy: &crate::harness::TestProxy) -> Arc<lagoon::pool::Pool> {
    let all = proxy.shared.pools.all();
    assert_eq!(all.len(), 1, "expected exactly one pool");
    Arc::clone(&all[0])
}

/// A TCP relay in front of a server whose connections the test can cut one by one, as a
/// network failure or a crashed server host would (the proxy sees its server socket close
/// without any goodbye).
pub struct Relay {
    pub port: u16,
    conns: RelayConns,
    accept: JoinHandle<()>,
}

/// Each relayed connection's task, and its `cut_on_next_send` switch.
type RelayConns = Arc<Mutex<Vec<(JoinHandle<()>, Arc<AtomicBool>)>>>;

impl Relay {
    pub async fn start(host: &str, port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let local = listener.local_addr().expect("relay addr").port();
        let conns: RelayConns = Arc::default();
        let list = Arc::clone(&conns);
        let upstream = (host.to_owned(), port);
        let accept = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let up = upstream.clone();
                let armed = Arc::new(AtomicBool::new(false));
                let mut down = Tripwire {
                    inner: down,
                    armed: Arc::clone(&armed),
                };
                let task = tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(up).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                list.lock().unwrap().push((task, armed));
            }
        });
        Relay {
            port: local,
            conns,
            accept,
        }
    }

    /// Connections accepted so far (cut or not).
    pub fn count(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    /// Closes the `i`-th connection (in accept order) on both sides at once.
    pub fn cut(&self, i: usize) {
        self.conns.lock().unwrap()[i].0.abort();
    }

    /// Cuts the `i`-th connection when the proxy next sends on it, before those bytes reach
    /// the server: a server that died just as the proxy picked its idle connection.
    pub fn cut_on_next_send(&self, i: usize) {
        self.conns.lock().unwrap()[i]
            .1
            .store(true, Ordering::SeqCst);
    }
}

/// The proxy's side of a relayed connection: once armed, bytes arriving fail the relay
/// instead of being passed on.
struct Tripwire {
    inner: TcpStream,
    armed: Arc<AtomicBool>,
}

impl tokio::io::AsyncRead for Tripwire {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.armed.load(Ordering::SeqCst)
            && matches!(polled, std::task::Poll::Ready(Ok(())))
            && buf.filled().len() > before
        {
            return std::task::Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()));
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Tripwire {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        for (c, _) in self.conns.lock().unwrap().iter() {
            c.abort();
        }
    }
}
