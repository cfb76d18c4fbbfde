//! One logged-in server connection and what the proxy knows about its state.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use crate::cancel::CancelTarget;

/// A server connection, idle in a pool or lent to a client through a `PooledConn`.
#[derive(Debug)]
pub struct ServerConn {
    pub stream: crate::net::Stream,
    /// Bytes read from the server and not yet forwarded. Empty whenever the connection is idle.
    pub read_buf: BytesMut,
    pub created: Instant,
    pub last_used: Instant,
    /// Session settings changed on this connection away from the pool's login defaults
    /// (lower-case name, value), so the next client's settings can be replayed as a diff.
    pub applied: Vec<(String, String)>,
    /// Registry statements prepared on this connection (see `prepared`).
    pub statements: crate::prepared::ServerStatements,
    /// SQL-level prepared statements (`PREPARE`) the session holds: (name, PREPARE text).
    pub sql_prepared: Vec<(String, String)>,
    /// Process-unique id, for logs and `SHOW SERVERS`.
    pub id: u64,
    /// TLS version and cipher suite, read once at connect (`SHOW SERVERS`); `None` in
    /// plaintext.
    pub tls: Option<Arc<str>>,
    /// The proxy's end of the connection, read once at connect (`SHOW SERVERS`).
    pub local_addr: Option<std::net::SocketAddr>,
    /// The server's BackendKeyData and address: where a client's CancelRequest goes while
    /// this connection runs its request.
    pub cancel: Arc<CancelTarget>,
}

impl ServerConn {
    /// Non-blocking check that an idle connection is still usable: no EOF, no error and no
    /// unexpected bytes (an idle server only speaks to say it is going away).
    pub fn is_healthy(&mut self) -> bool {
        self.stream.is_silent()
    }
}

impl Drop for ServerConn {
    /// Says goodbye before closing, so the server logs a clean disconnect rather than an
    /// unexpected EOF. Best effort and non-blocking: a full socket buffer just skips it.
    fn drop(&mut self) {
        self.stream.try_send(&[b'X', 0, 0, 0, 4]);
    }
}
