//! Why a session must stop, raised from outside it: a drain or hard shutdown, or `KILL` of its
//! database. Each client carries its own flags and one waker.
//!
//! Why not the shutdown `CancellationToken`s directly: a session waits on them between every
//! request and around every transaction, and each such wait registered with (and each
//! `is_cancelled` locked) the one token every session shares, so both worker threads contended
//! for its lock several times per transaction; the waits' state also sat in every idle
//! client's task. Here a wait is a load and a waker registration on the client's own cache
//! line, and `ClientRegistry::raise_all` fans a shutdown out to every client once.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// Stop accepting requests: end at the next transaction boundary.
pub const DRAIN: u8 = 1;
/// End now, whatever is in flight.
pub const HARD: u8 = 2;
/// `KILL` of the client's database: end now.
pub const KILL: u8 = 4;

/// The raised flags of one client, and the waker of the task waiting on them.
#[derive(Debug, Default)]
pub struct StopFlags {
    flags: AtomicU8,
    waker: AtomicWaker,
}

impl StopFlags {
    /// Raises `flag` and wakes the client's task if it waits.
    pub fn raise(&self, flag: u8) {
        self.flags.fetch_or(flag, Ordering::SeqCst);
        self.waker.wake();
    }

    /// Which of `mask` are raised (0 when none).
    pub fn raised(&self, mask: u8) -> u8 {
        self.flags.load(Ordering::Acquire) & mask
    }

    /// Resolves, with the raised flags among `mask`, once any of them is raised. Meant to be
    /// one branch of a `select!` in the client's own task: the flags hold one waker, the
    /// latest registered.
    pub fn wait(&self, mask: u8) -> Wait<'_> {
        Wait { flags: self, mask }
    }
}

/// See [`StopFlags::wait`].
pub struct Wait<'a> {
    flags: &'a StopFlags,
    mask: u8,
}

impl Future for Wait<'_> {
    type Output = u8;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u8> {
        let raised = self.flags.raised(self.mask);
        if raised != 0 {
            return Poll::Ready(raised);
        }
        self.flags.waker.register(cx.waker());
        // Raised between the check and the registration: its wake may have found no waker.
        match self.flags.raised(self.mask) {
            0 => Poll::Pending,
            raised => Poll::Ready(raised),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_wait_ends_on_its_flags_only() {
        let f = Arc::new(StopFlags::default());
        let waiting = {
            let f = Arc::clone(&f);
            tokio::spawn(async move { f.wait(HARD | KILL).await })
        };
        // Lets the task register its waker before anything is raised.
        tokio::task::yield_now().await;
        f.raise(DRAIN);
        assert_eq!(f.raised(DRAIN | HARD), DRAIN);
        // Woken by DRAIN, polled again, still waiting.
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        f.raise(KILL);
        assert_eq!(waiting.await.expect("wait task"), KILL);
        // Already raised: resolves at once.
        assert_eq!(f.wait(DRAIN).await, DRAIN);
    }
}
