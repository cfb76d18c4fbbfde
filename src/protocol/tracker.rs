//! Finds message boundaries in a byte stream without buffering whole messages, and tracks where a
//! connection is in the request/response cycle so the pool knows when a server may be released.
//!
//! [`StreamScanner`] walks only 5-byte headers and skips bodies, so rows and COPY data are
//! forwarded in the chunks they were read. Bodies are kept whole only for the few message types
//! the proxy must look into (ReadyForQuery, ErrorResponse, ParameterStatus, ...), which are small.
//!
//! [`TxnTracker`] counts the ReadyForQuery messages the server still owes (one per Query, Sync
//! and FunctionCall sent) and remembers the last transaction status. A server may go back to
//! the pool only when nothing is owed, the status is idle, no extended-protocol batch is open
//! (messages sent after the last Sync) and no COPY is running.

use super::codec::{FrameError, HEADER_LEN, peek_header};

/// What the scanner's callback wants done with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Include it in the forwardable prefix and keep scanning.
    Continue,
    /// Stop before this message: it is not forwarded and stays at the head of the buffer.
    StopBefore,
}

/// Incremental header walker; see the module docs.
#[derive(Debug, Default, Clone)]
pub struct StreamScanner {
    /// Body bytes of the current (uninteresting) message not yet seen.
    skip: usize,
}

impl StreamScanner {
    /// True when the last scanned byte ended a message.
    pub fn at_boundary(&self) -> bool {
        self.skip == 0
    }

    /// The caller forwarded the first `seen` bytes of a message of `total_len` bytes itself
    /// (after stopping before it): skip the rest of its body from the next scan on.
    pub fn resume_inside(&mut self, total_len: usize, seen: usize) {
        self.skip = total_len.saturating_sub(seen);
    }

    /// Scans `buf` (bytes not yet scanned) and returns how many of them can be forwarded.
    /// `need_body(tag)` says whether a message must be complete before it is reported; for those
    /// `f` gets `Some(body)`, for the rest `None` as soon as the header is seen. What is not
    /// forwardable is an incomplete header or an incomplete message that needs its body; the
    /// caller keeps those bytes and calls again with them at the front once more have arrived.
    pub fn scan<N, F>(
        &mut self,
        buf: &[u8],
        max_len: usize,
        need_body: N,
        mut f: F,
    ) -> Result<usize, FrameError>
    where
        N: Fn(u8) -> bool,
        F: FnMut(u8, Option<&[u8]>) -> Flow,
    {
        let mut off = 0;
        loop {
            if self.skip > 0 {
                let take = self.skip.min(buf.len() - off);
                self.skip -= take;
                off += take;
                if self.skip > 0 {
                    return Ok(off);
                }
            }
            let Some(h) = peek_header(&buf[off..], max_len)? else {
                return Ok(off);
            };
            if need_body(h.tag) {
                if buf.len() - off < h.total_len {
                    return Ok(off);
                }
                let body = &buf[off + HEADER_LEN..off + h.total_len];
                if f(h.tag, Some(body)) == Flow::StopBefore {
                    return Ok(off);
                }
                off += h.total_len;
            } else {
                if f(h.tag, None) == Flow::StopBefore {
                    return Ok(off);
                }
                off += HEADER_LEN;
                self.skip = h.total_len - HEADER_LEN;
            }
        }
    }
}

/// Server messages whose body the proxy reads.
pub fn server_needs_body(tag: u8) -> bool {
    matches!(tag, b'Z' | b'E' | b'S' | b'K')
}

/// Client messages that must be complete before they count. A Query or FunctionCall asks for a
/// server; counting it at its header would check one out while the rest of the message still
/// trickles in from a slow client, holding the server hostage.
///
/// Parse, Bind, Describe and Close may name a prepared statement, which the proxy rewrites; it
/// reads them whole.
pub fn client_needs_body(tag: u8) -> bool {
    matches!(tag, b'Q' | b'F' | b'P' | b'B' | b'D' | b'C')
}

/// Transaction status from ReadyForQuery.
pub const IDLE: u8 = b'I';

/// Request/response bookkeeping for one client's use of one server; see the module docs.
#[derive(Debug, Clone)]
pub struct TxnTracker {
    owed: u32,
    status: u8,
    unsynced: bool,
    copy_in: bool,
    flush: bool,
    /// Syncs counted since the last Execute: if that Execute turns out to start a COPY FROM
    /// STDIN, the server ignores them (drivers send Sync before they see CopyInResponse).
    syncs_since_execute: u32,
}

impl Default for TxnTracker {
    fn default() -> Self {
        TxnTracker {
            owed: 0,
            status: IDLE,
            unsynced: false,
            copy_in: false,
            flush: false,
            syncs_since_execute: 0,
        }
    }
}

/// What a client message means for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    /// An ordinary message, forwarded.
    Forward,
    /// Terminate: never forwarded to a pooled server.
    Terminate,
}

impl TxnTracker {
    /// Accounts for a client message about to be forwarded (called at its header).
    pub fn client_message(&mut self, tag: u8) -> ClientEvent {
        match tag {
            b'X' => return ClientEvent::Terminate,
            // During COPY FROM STDIN the server ignores Sync and Flush: they owe nothing.
            b'S' | b'H' if self.copy_in => {}
            b'Q' | b'F' => {
                self.owed = self.owed.saturating_add(1);
                self.syncs_since_execute = 0;
            }
            b'S' => {
                self.owed = self.owed.saturating_add(1);
                self.unsynced = false;
                self.syncs_since_execute = self.syncs_since_execute.saturating_add(1);
            }
            b'H' => self.flush = true,
            b'E' => {
                self.unsynced = true;
                self.syncs_since_execute = 0;
            }
            b'P' | b'B' | b'D' | b'C' => self.unsynced = true,
            b'c' | b'f' => self.copy_in = false,
            _ => {}
        }
        ClientEvent::Forward
    }

    /// Accounts for a server message (called with the body for `server_needs_body` tags).
    pub fn server_message(&mut self, tag: u8, body: Option<&[u8]>) {
        match tag {
            b'Z' => {
                self.owed = self.owed.saturating_sub(1);
                self.copy_in = false;
                if let Some(&s) = body.and_then(|b| b.first()) {
                    self.status = s;
                }
            }
            b'G' => {
                self.copy_in = true;
                // Syncs already sent after the COPY's Execute are skipped by the server.
                self.owed = self.owed.saturating_sub(self.syncs_since_execute);
                self.syncs_since_execute = 0;
            }
            _ => {}
        }
    }

    /// The client has sent something the server must answer now (Query, Sync, FunctionCall,
    /// Flush): time to check out a server.
    pub fn wants_server(&self) -> bool {
        self.owed > 0 || self.flush
    }

    /// Clears the pending-Flush flag once the buffered request went to a server.
    pub fn flushed(&mut self) {
        self.flush = false;
    }

    /// Nothing owed, nothing open: the server may go back to the pool.
    pub fn releasable(&self) -> bool {
        self.owed == 0 && self.status == IDLE && !self.unsynced && !self.copy_in
    }

    /// Holding a server with no reply owed: inside an explicit transaction (status `T` or
    /// `E`), or with an extended-protocol batch left open without Sync. The client is
    /// thinking, and `idle_transaction_timeout` applies.
    pub fn idle_in_transaction(&self) -> bool {
        self.owed == 0 && (self.status != IDLE || self.unsynced)
    }

    pub fn owed(&self) -> u32 {
        self.owed
    }

    pub fn status(&self) -> u8 {
        self.status
    }

    /// Extended-protocol messages were sent since the last Sync.
    pub fn unsynced(&self) -> bool {
        self.unsynced
    }

    pub fn copy_in(&self) -> bool {
        self.copy_in
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// (tag, body if the scanner kept it) for each message seen.
    type Seen = Vec<(u8, Option<Vec<u8>>)>;

    /// Feeds `stream` in chunks of `chunk` bytes, as a socket would, and returns the tags seen
    /// and the total forwarded.
    fn scan_chunked(stream: &[u8], chunk: usize) -> (Seen, usize) {
        let mut sc = StreamScanner::default();
        let mut pending: Vec<u8> = vec![];
        let mut seen = vec![];
        let mut forwarded = 0;
        for piece in stream.chunks(chunk) {
            pending.extend_from_slice(piece);
            let n = sc
                .scan(&pending, 1 << 20, server_needs_body, |t, b| {
                    seen.push((t, b.map(|b| b.to_vec())));
                    Flow::Continue
                })
                .unwrap();
            forwarded += n;
            pending.drain(..n);
        }
        assert!(pending.is_empty());
        assert!(sc.at_boundary());
        (seen, forwarded)
    }

    #[test]
    fn every_chunking_sees_the_same_messages() {
        let mut s = msg(b'T', b"rowdesc");
        s.extend(msg(b'D', &[7u8; 300]));
        s.extend(msg(b'C', b"SELECT 1\0"));
        s.extend(msg(b'Z', b"T"));
        let (whole, n) = scan_chunked(&s, s.len());
        assert_eq!(n, s.len());
        assert_eq!(whole.last(), Some(&(b'Z', Some(b"T".to_vec()))));
        for chunk in 1..40 {
            assert_eq!(scan_chunked(&s, chunk).0, whole, "chunk {chunk}");
        }
    }

    #[test]
    fn stop_before_keeps_the_message() {
        let mut s = msg(b'Q', b"select 1\0");
        s.extend(msg(b'X', b""));
        let mut sc = StreamScanner::default();
        let n = sc
            .scan(&s, 1024, client_needs_body, |t, _| {
                if t == b'X' {
                    Flow::StopBefore
                } else {
                    Flow::Continue
                }
            })
            .unwrap();
        assert_eq!(n, s.len() - 5);
    }

    #[test]
    fn pipeline_holds_until_last_ready() {
        let mut t = TxnTracker::default();
        for tag in [b'P', b'B', b'E', b'S', b'B', b'E', b'S'] {
            t.client_message(tag);
        }
        assert_eq!(t.owed(), 2);
        t.server_message(b'Z', Some(b"I"));
        assert!(!t.releasable());
        t.server_message(b'Z', Some(b"I"));
        assert!(t.releasable());
    }

    #[test]
    fn open_batch_and_transactions_hold_the_server() {
        let mut t = TxnTracker::default();
        t.client_message(b'P');
        t.client_message(b'H');
        assert!(t.wants_server());
        assert!(!t.releasable());
        t.client_message(b'S');
        t.server_message(b'Z', Some(b"T"));
        assert!(!t.releasable());
        assert!(t.idle_in_transaction());
        t.client_message(b'Q');
        t.server_message(b'Z', Some(b"E"));
        assert!(!t.releasable());
        t.client_message(b'Q');
        t.server_message(b'Z', Some(b"I"));
        assert!(t.releasable());
    }

    #[test]
    fn extended_copy_in_forgives_the_early_sync() {
        let mut t = TxnTracker::default();
        for tag in [b'B', b'E', b'S'] {
            t.client_message(tag);
        }
        t.server_message(b'2', None);
        t.server_message(b'G', None);
        t.client_message(b'd');
        t.client_message(b'c');
        t.client_message(b'S');
        assert_eq!(t.owed(), 1);
        t.server_message(b'C', None);
        t.server_message(b'Z', Some(b"I"));
        assert!(t.releasable());
    }

    #[test]
    fn copy_in_ignores_sync_and_ends_with_ready() {
        let mut t = TxnTracker::default();
        t.client_message(b'Q');
        t.server_message(b'G', None);
        t.client_message(b'd');
        t.client_message(b'S');
        t.client_message(b'c');
        assert_eq!(t.owed(), 1);
        t.server_message(b'Z', Some(b"I"));
        assert!(t.releasable());
        assert_eq!(t.client_message(b'X'), ClientEvent::Terminate);
    }
}
/// Deterministic "no panic on random input" checks, the CI-sized cousin of `fuzz/` target
/// `scanner`: random streams read in random chunks must give the same events as one read.
#[cfg(test)]
mod random_input_tests {
    use super::*;

    /// The generator must reach each interesting case (see the final assertion) at least this
    /// often, so that it cannot quietly stop exercising the code under test.
    const LOTS: usize = 50;

    use crate::test_rng::Rng;

    /// Server and client tags the tracker cares about, plus bytes it does not know.
    const TAGS: &[u8] = b"ZESKGCDT123dcfQFSHPBXxy\0";

    fn stream(rng: &mut Rng) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..rng.below(10) {
            let tag = TAGS[rng.below(TAGS.len())];
            let body = if tag == b'Z' && rng.below(4) != 0 {
                vec![b"ITE?"[rng.below(4)]]
            } else {
                let cap = if rng.below(8) == 0 { 200 } else { 12 };
                let n = rng.below(cap);
                (0..n).map(|_| rng.next() as u8).collect()
            };
            v.push(tag);
            let mut len = body.len() as i32 + 4;
            if rng.below(40) == 0 {
                len = [-1, 3, 40_000, rng.next() as i32][rng.below(4)];
            }
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(&body);
        }
        if rng.below(3) == 0 {
            v.truncate(rng.below(v.len() + 1));
        }
        v
    }

    type Events = Vec<(u8, Option<Vec<u8>>)>;

    /// Feeds `stream` in reads of the given sizes (cycled; empty = all at once), as the server
    /// side (`server` = true) or the client side, stopping before Terminate like the session.
    /// Returns the events, the bytes forwarded (`None` when refused), whether the scanner ended
    /// at a boundary, and the tracker.
    fn run(
        stream: &[u8],
        sizes: &[usize],
        server: bool,
    ) -> (Events, Option<usize>, bool, TxnTracker) {
        let mut sc = StreamScanner::default();
        let mut t = TxnTracker::default();
        let mut events = Vec::new();
        let mut pending = Vec::new();
        let (mut fed, mut forwarded, mut i) = (0, 0, 0);
        let mut stopped = false;
        while fed < stream.len() && !stopped {
            let n = sizes
                .get(i % sizes.len().max(1))
                .copied()
                .unwrap_or(stream.len());
            i += 1;
            let end = (fed + n).min(stream.len());
            pending.extend_from_slice(&stream[fed..end]);
            fed = end;
            let r = if server {
                sc.scan(&pending, 1024, server_needs_body, |tag, body| {
                    events.push((tag, body.map(<[u8]>::to_vec)));
                    t.server_message(tag, body);
                    Flow::Continue
                })
            } else {
                sc.scan(&pending, 1024, client_needs_body, |tag, body| {
                    events.push((tag, body.map(<[u8]>::to_vec)));
                    match t.client_message(tag) {
                        ClientEvent::Forward => Flow::Continue,
                        ClientEvent::Terminate => {
                            stopped = true;
                            Flow::StopBefore
                        }
                    }
                })
            };
            match r {
                Ok(n) => {
                    assert!(n <= pending.len());
                    forwarded += n;
                    pending.drain(..n);
                }
                Err(_) => return (events, None, sc.at_boundary(), t),
            }
        }
        assert!(forwarded <= stream.len());
        if !stopped {
            assert_eq!(forwarded + pending.len(), stream.len());
        }
        (events, Some(forwarded), sc.at_boundary(), t)
    }

    fn state(t: &TxnTracker) -> (u32, u8, bool, bool, bool, bool, bool) {
        (
            t.owed(),
            t.status(),
            t.unsynced(),
            t.copy_in(),
            t.releasable(),
            t.wants_server(),
            t.idle_in_transaction(),
        )
    }

    #[test]
    fn random_streams_scan_the_same_in_any_chunks() {
        let mut rng = Rng(0xBF58_476D_1CE4_E5B9);
        let (mut refused, mut terminated, mut mid_message) = (0, 0, 0);
        for _ in 0..2000 {
            let s = stream(&mut rng);
            let sizes: Vec<usize> = (0..1 + rng.below(4)).map(|_| 1 + rng.below(16)).collect();
            for server in [true, false] {
                let (events, fwd, boundary, t) = run(&s, &[], server);
                for chunks in [&[1][..], &sizes] {
                    let (e2, f2, b2, t2) = run(&s, chunks, server);
                    assert_eq!(e2, events, "chunks {chunks:?} server {server} on {s:?}");
                    assert_eq!((f2, b2), (fwd, boundary));
                    assert_eq!(state(&t2), state(&t));
                }
                if let Some(f) = fwd {
                    assert!(f <= s.len());
                }
                refused += usize::from(fwd.is_none());
                terminated += usize::from(!server && events.last().is_some_and(|e| e.0 == b'X'));
                mid_message += usize::from(!boundary);
                if t.releasable() {
                    assert!(t.owed() == 0 && t.status() == IDLE && !t.unsynced() && !t.copy_in());
                    assert!(!t.idle_in_transaction());
                }
                if server {
                    assert_eq!(t.owed(), 0);
                    for (tag, body) in &events {
                        assert_eq!(body.is_some(), server_needs_body(*tag));
                    }
                }
            }
        }
        // The generator must keep reaching these outcomes.
        assert!(
            refused > LOTS && terminated > LOTS && mid_message > LOTS,
            "{refused} {terminated} {mid_message}"
        );
    }
}
