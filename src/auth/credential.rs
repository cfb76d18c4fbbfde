//! The server-login credential of a user whose password the proxy never holds (auth_query):
//! what a client's successful login leaves behind for the pools to log in to Postgres with.
//!
//! For a SCRAM verifier that is the ClientKey the client proved it knows, with the verifier
//! (see `scram::client`); for an md5 hash, the hash itself (md5 is pass-the-hash). Both are
//! what the server's `pg_authid` already makes equivalent to the password for logging in, and
//! neither is the password.
//!
//! One [`CredentialSlot`] is shared by every member pool of a (database, user) cluster, since
//! replicas have the same `pg_authid`: filled at each successful client login, read at each
//! server login. Until a client has logged in it is empty and servers cannot be reached as
//! that user (pool warm-up waits; a checkout gets a clear error).
//!
//! Not here: fetching the verifier (`auth::query`), the login exchanges (`auth::upstream`).

use arc_swap::ArcSwapOption;
use std::sync::Arc;

use super::scram::client::ScramKeys;

/// How the proxy logs in to Postgres as an auth_query user.
#[derive(Clone, PartialEq, Eq)]
pub enum ServerCredential {
    /// SCRAM with the ClientKey from the client's own login.
    Scram(ScramKeys),
    /// md5 with the stored hash (`md5` + 32 hex digits), which answers any md5 challenge.
    Md5Hash(String),
}

impl std::fmt::Debug for ServerCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerCredential::Scram(_) => "ServerCredential::Scram(..)",
            ServerCredential::Md5Hash(_) => "ServerCredential::Md5Hash(..)",
        })
    }
}

/// The latest [`ServerCredential`] of one (database, user), shared by its pools.
#[derive(Default)]
pub struct CredentialSlot {
    current: ArcSwapOption<ServerCredential>,
}

impl CredentialSlot {
    /// Stores what the latest successful client login proved; later server logins use it.
    pub fn set(&self, credential: ServerCredential) {
        self.current.store(Some(Arc::new(credential)));
    }

    /// The latest credential; `None` until a client of this user has logged in.
    pub fn get(&self) -> Option<Arc<ServerCredential>> {
        self.current.load_full()
    }

    /// Whether a server login can be attempted at all.
    pub fn is_filled(&self) -> bool {
        self.current.load().is_some()
    }
}

/// Two slots are equal only when they are the same slot: a pool logs in with whatever its own
/// slot holds at the time, so a target reading another slot is another target.
impl PartialEq for CredentialSlot {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for CredentialSlot {}

impl std::fmt::Debug for CredentialSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSlot")
            .field("filled", &self.is_filled())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_empty_until_set_and_never_prints_secrets() {
        let slot = CredentialSlot::default();
        assert!(!slot.is_filled() && slot.get().is_none());
        slot.set(ServerCredential::Md5Hash("md5secrethash".into()));
        assert!(slot.is_filled());
        assert_eq!(
            slot.get().as_deref(),
            Some(&ServerCredential::Md5Hash("md5secrethash".into()))
        );
        let shown = format!("{slot:?} {:?}", slot.get());
        assert!(!shown.contains("secrethash"), "{shown}");
    }

    #[test]
    fn slots_are_equal_only_to_themselves() {
        let a = Arc::new(CredentialSlot::default());
        let b = Arc::new(CredentialSlot::default());
        assert_eq!(a, Arc::clone(&a));
        assert_ne!(a, b);
    }
}
