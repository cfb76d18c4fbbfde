//! The per-query stopwatch the session runs: it marks the moments of one request's life and
//! turns them into the three phases users ask about ("waiting for a server? slow on the
//! server? slow client?").
//!
//! It owns the phase definitions; it does not read sockets (the session marks the moments)
//! nor decide what is slow (the caller compares [`Phases::total`] with the threshold).
//!
//! # Moments (marked by the session, in this order)
//!
//! - `start`: the request is complete in the proxy (a whole simple Query, or an extended batch
//!   up to Sync).
//! - `checked_out`: a server connection is in hand (at once, for a client that already holds
//!   one: pinned, session mode, or inside a transaction).
//! - `written`: the request has been written to the server (after any state the proxy sends
//!   first: parameter replay, re-prepares).
//! - `ready`: ReadyForQuery has been read from the server.
//! - `client_done`: the last reply byte has been written to the client.
//!
//! Between `written` and `client_done` the relay calls [`QueryTimer::add_client_blocked`] with
//! each span it spent blocked writing to the client (its socket buffer full).
//!
//! # Phases
//!
//! - **pool wait** = `checked_out − start`: queueing for a server, including connecting a new
//!   one.
//! - **server** = `ready − written`, less the client-blocked time that fell before `ready`:
//!   replies are streamed while the server is still sending, and a stall on a slow client then
//!   delays reading the server; that time belongs to the client.
//! - **client** = the sum of the client-blocked spans, before and after `ready`.
//! - **total** = `client_done − start`: what the client waited, as the slow threshold sees it.
//!   Whatever total holds beyond the three phases is the proxy's own work (writing the request
//!   to the server, state replay, re-prepares).
//!
//! A missing mark (an error cut the request short) takes the next later mark present: no
//! `checked_out` (checkout timed out) makes the whole request pool wait; no `ready` (server
//! lost) ends the server phase at `client_done`. Marks are `std::time::Instant`s; every
//! `*_at` method takes one the caller already read, so one clock read serves several uses.

use std::time::{Duration, Instant};

/// One request's marks; `Copy` and small, so it lives on the session's stack.
#[derive(Clone, Copy, Debug)]
pub struct QueryTimer {
    start: Instant,
    checked_out: Option<Instant>,
    written: Option<Instant>,
    ready: Option<Instant>,
    done: Option<Instant>,
    client_blocked: Duration,
    /// `client_blocked` when `ready` was marked.
    blocked_before_ready: Duration,
}

/// The phases of one request (see the module doc for their exact definitions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Phases {
    pub pool_wait: Duration,
    pub server: Duration,
    pub client: Duration,
    pub total: Duration,
}

impl Phases {
    /// Slow when the total reaches `threshold` (so a threshold of 0 logs everything).
    pub fn is_slow(&self, threshold: Duration) -> bool {
        self.total >= threshold
    }
}

impl QueryTimer {
    /// The request is complete, now.
    pub fn start() -> Self {
        Self::start_at(Instant::now())
    }

    /// The request was complete at `at`.
    pub fn start_at(at: Instant) -> Self {
        QueryTimer {
            start: at,
            checked_out: None,
            written: None,
            ready: None,
            done: None,
            client_blocked: Duration::ZERO,
            blocked_before_ready: Duration::ZERO,
        }
    }

    /// A server connection is in hand.
    pub fn checked_out(&mut self) {
        self.checked_out_at(Instant::now());
    }

    pub fn checked_out_at(&mut self, at: Instant) {
        self.checked_out = Some(at);
    }

    /// The request has been written to the server.
    pub fn written(&mut self) {
        self.written_at(Instant::now());
    }

    pub fn written_at(&mut self, at: Instant) {
        self.written = Some(at);
    }

    /// ReadyForQuery has been read.
    pub fn ready(&mut self) {
        self.ready_at(Instant::now());
    }

    pub fn ready_at(&mut self, at: Instant) {
        self.ready = Some(at);
        self.blocked_before_ready = self.client_blocked;
    }

    /// The last reply byte has been written to the client.
    pub fn client_done(&mut self) {
        self.client_done_at(Instant::now());
    }

    pub fn client_done_at(&mut self, at: Instant) {
        self.done = Some(at);
    }

    /// When the request was complete.
    pub fn started(&self) -> Instant {
        self.start
    }

    pub fn has_checked_out(&self) -> bool {
        self.checked_out.is_some()
    }

    pub fn has_written(&self) -> bool {
        self.written.is_some()
    }

    /// The relay spent `d` blocked writing replies to the client.
    pub fn add_client_blocked(&mut self, d: Duration) {
        self.client_blocked = self.client_blocked.saturating_add(d);
    }

    /// The phases so far. Before `client_done` the request's end is the latest mark (or
    /// `start`), so a request cut short still gets figures.
    pub fn phases(&self) -> Phases {
        let end = self
            .done
            .or(self.ready)
            .or(self.written)
            .or(self.checked_out)
            .unwrap_or(self.start);
        let since = |a: Instant, b: Instant| b.saturating_duration_since(a);
        let pool_wait = since(
            self.start,
            self.checked_out
                .or(self.written)
                .or(self.ready)
                .unwrap_or(end),
        );
        let server = match self.written {
            None => Duration::ZERO,
            Some(w) => match self.ready {
                Some(r) => since(w, r).saturating_sub(self.blocked_before_ready),
                None => since(w, end).saturating_sub(self.client_blocked),
            },
        };
        Phases {
            pool_wait,
            server,
            client: self.client_blocked,
            total: since(self.start, end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn phases_of_a_whole_request() {
        let t0 = Instant::now();
        let mut t = QueryTimer::start_at(t0);
        t.checked_out_at(t0 + ms(5));
        t.written_at(t0 + ms(6));
        t.add_client_blocked(ms(3)); // while the server was still sending
        t.ready_at(t0 + ms(20));
        t.add_client_blocked(ms(4)); // flushing the tail to a slow client
        t.client_done_at(t0 + ms(25));
        let p = t.phases();
        assert_eq!(
            p,
            Phases {
                pool_wait: ms(5),
                server: ms(11),
                client: ms(7),
                total: ms(25),
            }
        );
        assert!(p.is_slow(ms(25)));
        assert!(!p.is_slow(ms(26)));
    }

    #[test]
    fn missing_marks_take_the_next_one() {
        let t0 = Instant::now();
        // Checkout timed out: all of it was pool wait.
        let mut t = QueryTimer::start_at(t0);
        t.client_done_at(t0 + ms(50));
        let p = t.phases();
        assert_eq!((p.pool_wait, p.server, p.total), (ms(50), ms(0), ms(50)));
        // Server lost before ReadyForQuery: the server phase runs to the end.
        let mut t = QueryTimer::start_at(t0);
        t.checked_out_at(t0 + ms(1));
        t.written_at(t0 + ms(2));
        t.client_done_at(t0 + ms(30));
        let p = t.phases();
        assert_eq!((p.pool_wait, p.server, p.total), (ms(1), ms(28), ms(30)));
        // Nothing marked yet.
        assert_eq!(QueryTimer::start_at(t0).phases(), Phases::default());
    }

    #[test]
    fn clock_reading_variants_are_ordered() {
        let mut t = QueryTimer::start();
        t.checked_out();
        t.written();
        t.ready();
        t.client_done();
        let p = t.phases();
        assert!(p.pool_wait + p.server <= p.total);
    }
}
