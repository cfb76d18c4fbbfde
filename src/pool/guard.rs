//! `PooledConn`: a checked-out server connection that cannot leak. Dropping it without an
//! explicit [`PooledConn::release`] closes the server connection, so an early return or a panic
//! never hands a dirty server to the next client.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use super::pool::Pool;
use super::server_conn::ServerConn;

pub struct PooledConn {
    /// Boxed: every session holds an `Option<PooledConn>`, idle or not, and the pool's idle
    /// list moves only a pointer.
    conn: Option<Box<ServerConn>>,
    pool: Arc<Pool>,
}

impl PooledConn {
    pub(super) fn new(conn: Box<ServerConn>, pool: Arc<Pool>) -> Self {
        PooledConn {
            conn: Some(conn),
            pool,
        }
    }

    /// Returns a clean connection (idle, nothing owed, nothing buffered) to its pool.
    pub fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.checkin(conn);
        }
    }

    /// Closes the connection instead of returning it.
    pub fn discard(self) {
        drop(self);
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Deref for PooledConn {
    type Target = ServerConn;
    fn deref(&self) -> &ServerConn {
        // Only `release`/`drop` take the connection, and both consume the guard.
        self.conn.as_ref().expect("PooledConn used after release")
    }
}

impl DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut ServerConn {
        self.conn.as_mut().expect("PooledConn used after release")
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.discard(conn);
        }
    }
}
