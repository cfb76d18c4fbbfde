//! Cancel requests. Each client gets a proxy-made BackendKeyData; while one of its requests is
//! on a server, its slot names that server's own key. A CancelRequest for the client is
//! forwarded to that server on a fresh connection, without touching any pool queue, and does
//! nothing when the client is idle.

use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use subtle::ConstantTimeEq;

/// The server-side key of the backend currently running a client's request.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    pub host: String,
    pub port: u16,
    pub process_id: i32,
    pub secret_key: Vec<u8>,
    /// The connection's `server_tls`: under `require` and `verify-*` the cancel goes over TLS
    /// too, so its key never crosses the network in clear.
    pub tls: crate::net::tls::Upstream,
}

#[derive(Debug)]
pub struct CancelSlot {
    secret: [u8; 4],
    target: Mutex<Option<Arc<CancelTarget>>>,
}

impl CancelSlot {
    pub fn set(&self, target: Option<Arc<CancelTarget>>) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = target;
    }

    pub fn secret(&self) -> i32 {
        i32::from_be_bytes(self.secret)
    }
}

#[derive(Default)]
pub struct CancelRegistry {
    slots: DashMap<i32, Arc<CancelSlot>>,
}

/// Removes the client's slot when its session ends.
pub struct Registration<'a> {
    registry: &'a CancelRegistry,
    pub process_id: i32,
    pub slot: Arc<CancelSlot>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.registry.slots.remove(&self.process_id);
    }
}

impl CancelRegistry {
    /// A fresh, unused process id and a random secret for a new client.
    pub fn register(&self) -> Registration<'_> {
        loop {
            let pid: i32 = rand::random::<i32>() & 0x7fff_ffff;
            if pid == 0 {
                continue;
            }
            let slot = Arc::new(CancelSlot {
                secret: rand::random(),
                target: Mutex::new(None),
            });
            if let dashmap::Entry::Vacant(v) = self.slots.entry(pid) {
                v.insert(Arc::clone(&slot));
                return Registration {
                    registry: self,
                    process_id: pid,
                    slot,
                };
            }
        }
    }

    /// The server to cancel for (pid, secret), if the key is right and the client is busy.
    pub fn lookup(&self, process_id: i32, secret: &[u8]) -> Option<Arc<CancelTarget>> {
        let slot = self.slots.get(&process_id)?.clone();
        if secret.len() != 4 || !bool::from(slot.secret.ct_eq(secret)) {
            return None;
        }
        slot.target
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_key_of_a_busy_client_finds_a_target() {
        let reg = CancelRegistry::default();
        let r = reg.register();
        let key = r.slot.secret().to_be_bytes();
        assert!(reg.lookup(r.process_id, &key).is_none(), "idle client");
        r.slot.set(Some(Arc::new(CancelTarget {
            host: "h".into(),
            port: 1,
            process_id: 9,
            secret_key: vec![1, 2, 3, 4],
            tls: Default::default(),
        })));
        assert_eq!(
            reg.lookup(r.process_id, &key).map(|t| t.process_id),
            Some(9)
        );
        let mut wrong = key;
        wrong[0] ^= 1;
        assert!(reg.lookup(r.process_id, &wrong).is_none());
        let pid = r.process_id;
        drop(r);
        assert!(reg.lookup(pid, &key).is_none());
    }
}
