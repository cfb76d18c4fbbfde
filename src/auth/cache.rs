//! SCRAM verifiers derived from plaintext passwords, computed once per (user, password) and
//! reused: deriving one costs 4096 HMAC rounds, which would otherwise be paid by every login
//! (and dominate `pgbench -C`). A changed password (config reload) simply misses the cache:
//! every lookup compares the password it was derived from, so a stale verifier is never
//! served, even to a login that raced the reload. A reload also [`VerifierCache::forget`]s
//! removed users and changed passwords, so the cache does not keep them.

use std::sync::Arc;

use dashmap::DashMap;

use super::scram::ScramVerifier;

#[derive(Default)]
pub struct VerifierCache {
    map: DashMap<String, (String, Arc<ScramVerifier>)>,
}

impl VerifierCache {
    /// The verifier for `user` with plaintext `password`, salted as
    /// [`ScramVerifier::for_plain_password`] does.
    pub fn get(&self, user: &str, password: &str, mock_secret: &[u8; 32]) -> Arc<ScramVerifier> {
        if let Some(e) = self.map.get(user) {
            if e.0 == password {
                return Arc::clone(&e.1);
            }
        }
        let v = Arc::new(ScramVerifier::for_plain_password(
            user,
            password,
            mock_secret,
        ));
        self.map
            .insert(user.to_owned(), (password.to_owned(), Arc::clone(&v)));
        v
    }

    /// Drops `user`'s verifier (removed, or its password changed).
    pub fn forget(&self, user: &str) {
        self.map.remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_password_hits_and_a_new_one_misses() {
        let c = VerifierCache::default();
        let s = [7u8; 32];
        let a = c.get("u", "p1", &s);
        assert!(Arc::ptr_eq(&a, &c.get("u", "p1", &s)));
        let b = c.get("u", "p2", &s);
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(*b, ScramVerifier::for_plain_password("u", "p2", &s));
        // Back to the old password (a reload undone): derived afresh, never the p2 one.
        let c2 = c.get("u", "p1", &s);
        assert_eq!(*c2, *a);
        assert!(!Arc::ptr_eq(&c2, &b));
    }

    #[test]
    fn forget_drops_the_entry() {
        let c = VerifierCache::default();
        let s = [7u8; 32];
        let a = c.get("u", "p1", &s);
        c.forget("u");
        assert!(!Arc::ptr_eq(&a, &c.get("u", "p1", &s)));
    }
}
