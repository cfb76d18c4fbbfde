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

/// Client messages whose body the proxy reads (none yet: the tag is enough to track state).
pub fn client_needs_body(_tag: u8) -> bool {
    false
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
}

impl Default for TxnTracker {
    fn default() -> Self {
        TxnTracker {
            owed: 0,
            status: IDLE,
            unsynced: false,
            copy_in: false,
            flush: false,
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
            b'Q' | b'F' => self.owed += 1,
            b'S' => {
                self.owed += 1;
                self.unsynced = false;
            }
            b'H' => self.flush = true,
            b'P' | b'B' | b'D' | b'E' | b'C' => self.unsynced = true,
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
            b'G' => self.copy_in = true,
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

    /// Inside an explicit transaction (status `T` or `E`) with no reply owed: the client is
    /// thinking, and `idle_transaction_timeout` applies.
    pub fn idle_in_transaction(&self) -> bool {
        self.owed == 0 && self.status != IDLE
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
