//! The verifiers auth_query fetched, reused for `auth_query.cache_ttl_ms`, so a burst of
//! logins (`pgbench -C`, an application restarting its pool) costs one query, not one each.
//!
//! Keyed by where the lookup ran and for whom: (host, port, dbname, user). Logins of the same
//! user that arrive together share one fetch: each key has an async mutex, held across the
//! fetch (only that key's logins wait on it; the data path never touches this). Only found
//! secrets are kept: a "no such user" answer or a failure is not, so a role created a moment
//! ago can log in at once and unknown names leave nothing behind.
//!
//! Not here: running the query (`fetch`), what a login does with the secret (`super`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::Mutex;

use super::{FetchError, Lookup};
use crate::auth::Secret;

/// Where a lookup ran and for which user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    /// The lookup's TLS settings ([`crate::net::tls::Upstream::id`]): a secret fetched over
    /// weaker TLS (or plaintext, where someone in between could have answered) is never
    /// served to a database that demands `verify-*`.
    pub tls: [u8; 32],
}

struct Fetched {
    at: Instant,
    secret: Secret,
}

type Entry = Arc<Mutex<Option<Fetched>>>;

/// Lookups running at once, across all users. Each opens a server connection, and
/// unauthenticated clients can ask for any name: without a bound, a flood of made-up names
/// would open as many connections to the primary as `max_client_conn` allows. Waiting
/// logins are bounded by the login timeout.
const MAX_CONCURRENT_LOOKUPS: usize = 4;

/// All verifiers fetched by auth_query, per [`Key`].
pub struct AuthQueryCache {
    map: DashMap<Key, Entry>,
    lookups: tokio::sync::Semaphore,
}

impl Default for AuthQueryCache {
    fn default() -> Self {
        AuthQueryCache {
            map: DashMap::new(),
            lookups: tokio::sync::Semaphore::new(MAX_CONCURRENT_LOOKUPS),
        }
    }
}

impl AuthQueryCache {
    /// The secret for `key` if one was fetched less than `ttl` ago, else what `fetch` finds
    /// (kept when it is a secret). Concurrent calls for one key run one `fetch`.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        key: &Key,
        ttl: Duration,
        fetch: F,
    ) -> Result<Lookup, FetchError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Lookup, FetchError>>,
    {
        // Cloned out so no map shard lock is held across the await below.
        let entry = Arc::clone(&self.map.entry(key.clone()).or_default());
        let mut slot = entry.lock().await;
        if let Some(f) = slot.as_ref() {
            if f.at.elapsed() < ttl {
                return Ok(Lookup::Found(f.secret.clone()));
            }
        }
        let result = match self.lookups.acquire().await {
            Ok(_permit) => fetch().await,
            // Never closed; if it were, looking up unbounded beats refusing every login.
            Err(_) => fetch().await,
        };
        *slot = match &result {
            Ok(Lookup::Found(secret)) => Some(Fetched {
                at: Instant::now(),
                secret: secret.clone(),
            }),
            _ => None,
        };
        if slot.is_none() {
            drop(slot);
            // Nothing worth keeping: leave no entry behind (unless another login replaced it).
            self.map.remove_if(key, |_, e| Arc::ptr_eq(e, &entry));
        }
        result
    }

    /// Drops `key`'s secret: a proof failed against it, and the password may have changed.
    pub fn invalidate(&self, key: &Key) {
        self.map.remove(key);
    }

    /// Drops everything (a reload changed where or how lookups run).
    pub fn clear(&self) {
        self.map.clear();
    }

    /// How many keys are held (tests).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn key(user: &str) -> Key {
        Key {
            host: "h".into(),
            port: 5432,
            dbname: "d".into(),
            user: user.into(),
            tls: [0; 32],
        }
    }

    fn md5(n: usize) -> Secret {
        Secret::Md5(format!("md5{n:032x}"))
    }

    /// A fetch that counts its calls and finds `md5(call number)`.
    async fn counting(calls: &AtomicUsize) -> Result<Lookup, FetchError> {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        Ok(Lookup::Found(md5(n)))
    }

    fn found(r: Result<Lookup, FetchError>) -> Secret {
        match r {
            Ok(Lookup::Found(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn reused_within_ttl_and_refetched_after() {
        let c = AuthQueryCache::default();
        let calls = AtomicUsize::new(0);
        let ttl = Duration::from_secs(60);
        let a = found(c.get_or_fetch(&key("u"), ttl, || counting(&calls)).await);
        let b = found(c.get_or_fetch(&key("u"), ttl, || counting(&calls)).await);
        assert_eq!((a, b, calls.load(Ordering::SeqCst)), (md5(0), md5(0), 1));
        // Another user, another fetch.
        c.get_or_fetch(&key("v"), ttl, || counting(&calls))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // TTL 0: always fetched.
        let z = found(
            c.get_or_fetch(&key("u"), Duration::ZERO, || counting(&calls))
                .await,
        );
        assert_eq!(z, md5(2));
    }

    #[tokio::test]
    async fn invalidate_and_clear_force_a_fetch() {
        let c = AuthQueryCache::default();
        let calls = AtomicUsize::new(0);
        let ttl = Duration::from_secs(60);
        c.get_or_fetch(&key("u"), ttl, || counting(&calls))
            .await
            .unwrap();
        c.invalidate(&key("u"));
        let s = found(c.get_or_fetch(&key("u"), ttl, || counting(&calls)).await);
        assert_eq!(s, md5(1));
        c.clear();
        assert!(c.is_empty());
        let s = found(c.get_or_fetch(&key("u"), ttl, || counting(&calls)).await);
        assert_eq!(s, md5(2));
    }

    #[tokio::test]
    async fn misses_and_failures_are_not_kept() {
        let c = AuthQueryCache::default();
        let ttl = Duration::from_secs(60);
        let r = c
            .get_or_fetch(&key("ghost"), ttl, || async {
                Ok(Lookup::Missing("no row".into()))
            })
            .await;
        assert!(matches!(r, Ok(Lookup::Missing(_))));
        let r = c
            .get_or_fetch(&key("u"), ttl, || async {
                Err(FetchError::Query("boom".into()))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(c.len(), 0, "nothing left behind");
    }

    #[tokio::test]
    async fn concurrent_logins_share_one_fetch() {
        let c = Arc::new(AuthQueryCache::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (c, calls, gate) = (Arc::clone(&c), Arc::clone(&calls), Arc::clone(&gate));
            tasks.push(tokio::spawn(async move {
                c.get_or_fetch(&key("u"), Duration::from_secs(60), || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Ok(Lookup::Found(md5(7)))
                })
                .await
            }));
        }
        // Let every task reach the lock, then release the one fetch.
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for t in tasks {
            assert_eq!(found(t.await.unwrap()), md5(7));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
