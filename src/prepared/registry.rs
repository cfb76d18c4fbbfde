//! The proxy-wide statement registry: one entry per distinct (query text, parameter types),
//! shared by every client that prepares it, so a server that has it prepared serves them all.
//!
//! Entries are shared (`Arc`) by the registry, the clients that named them and the server
//! connections that hold them prepared, so a statement outlives the client that first
//! prepared it for as long as some server has it: the next client with the same text finds it
//! ready (a connection-per-request application prepares once per server, not once per request).
//! [`Registry::sweep`] drops the entries nobody else holds. Ids are never reused: a server can
//! never mistake a new statement for an old one with the same name.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use dashmap::DashMap;

/// Prefix of proxy-made statement names. Clients never see it.
pub const NAME_PREFIX: &str = "lagoon_";

/// One distinct statement.
#[derive(Debug)]
pub struct Statement {
    /// The Parse body after the statement name: query text, NUL, parameter count and types.
    /// What the proxy sends to prepare it on a server.
    pub body: Bytes,
    /// What running it may do to session state (`sql::effects` of its text), noted each time
    /// a client binds it: a SET prepared once and run in many transactions changes settings in
    /// each of them.
    pub effects: crate::sql::Effects,
    /// Some server accepted it (a ParseComplete came back): a client's Parse of it can be
    /// answered without a server.
    validated: std::sync::atomic::AtomicBool,
    /// Current id; replaced by [`Registry::invalidate`] when the statement's result type
    /// changed under a schema change, so every server prepares it afresh.
    id: AtomicU64,
}

impl Statement {
    /// Its query text (the body up to the first NUL), sharing the body's memory.
    pub fn text(&self) -> Bytes {
        let end = self
            .body
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.body.len());
        self.body.slice(..end)
    }

    pub fn id(&self) -> u64 {
        self.id.load(Ordering::Acquire)
    }

    pub fn is_validated(&self) -> bool {
        self.validated.load(Ordering::Relaxed)
    }

    pub fn mark_validated(&self) {
        self.validated.store(true, Ordering::Relaxed);
    }
}

/// The server-side name for statement id `id`, as a C string body fragment (no NUL).
pub fn server_name(id: u64) -> String {
    format!("{NAME_PREFIX}{id}")
}

#[derive(Debug, Default)]
pub struct Registry {
    map: DashMap<Bytes, Arc<Statement>>,
    next_id: AtomicU64,
}

impl Registry {
    /// The statement for this Parse body (after the name) in `scope` (one per pool: a
    /// statement's existence and validity say something about other users' queries, so they
    /// are not shared across databases and users), created on first use.
    pub fn register(&self, scope: &[u8], body: &[u8]) -> Arc<Statement> {
        let key = [scope, body].concat();
        if let Some(stmt) = self.map.get(key.as_slice()) {
            return Arc::clone(&stmt);
        }
        let body = Bytes::copy_from_slice(body);
        let slot = self.map.entry(Bytes::from(key)).or_insert_with(|| {
            let text = body.split(|&b| b == 0).next().unwrap_or_default();
            Arc::new(Statement {
                effects: crate::sql::scan(text),
                validated: Default::default(),
                body,
                id: AtomicU64::new(self.fresh_id()),
            })
        });
        Arc::clone(&slot)
    }

    /// The statement for this Parse body in `scope`, if known.
    pub fn get(&self, scope: &[u8], body: &[u8]) -> Option<Arc<Statement>> {
        self.map
            .get([scope, body].concat().as_slice())
            .map(|s| Arc::clone(&s))
    }

    /// Gives `stmt` a new id, so servers that prepared the old plan are not used for it again.
    /// Servers that still hold the old id drop it when their LRU evicts it.
    pub fn invalidate(&self, stmt: &Statement, seen_id: u64) {
        let fresh = self.fresh_id();
        // Only the first of several clients hitting the same stale plan bumps it.
        let _ = stmt
            .id
            .compare_exchange(seen_id, fresh, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Forgets statements no client names and no server holds.
    pub fn sweep(&self) {
        self.map.retain(|_, s| Arc::strong_count(s) > 1);
    }

    /// Distinct statements known (including ones awaiting a sweep).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn fresh_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_shares_an_entry_and_different_types_do_not() {
        let r = Registry::default();
        let a = r.register(b"db\0u\0", b"select $1\0\0\x01\0\0\0\x17");
        let b = r.register(b"db\0u\0", b"select $1\0\0\x01\0\0\0\x17");
        let c = r.register(b"db\0u\0", b"select $1\0\0\x01\0\0\0\x19");
        assert!(Arc::ptr_eq(&a, &b));
        assert_ne!(a.id(), c.id());
    }

    #[test]
    fn unused_statements_are_swept_and_ids_never_come_back() {
        let r = Registry::default();
        let held = r.register(b"db\0u\0", b"select 1\0\0\0");
        let first = held.id();
        r.sweep();
        assert_eq!(r.len(), 1, "still used");
        drop(held);
        assert_eq!(
            r.register(b"db\0u\0", b"select 1\0\0\0").id(),
            first,
            "not swept yet"
        );
        r.sweep();
        assert!(r.is_empty());
        assert_ne!(r.register(b"db\0u\0", b"select 1\0\0\0").id(), first);
    }

    #[test]
    fn invalidate_bumps_once_per_stale_id() {
        let r = Registry::default();
        let s = r.register(b"db\0u\0", b"select * from t\0\0\0");
        let old = s.id();
        r.invalidate(&s, old);
        let new = s.id();
        assert_ne!(new, old);
        r.invalidate(&s, old);
        assert_eq!(
            s.id(),
            new,
            "a second client seeing the same stale id changes nothing"
        );
    }
}
