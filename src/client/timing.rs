//! Which query is which, for the per-query timer: the session's requests (simple queries,
//! extended batches up to Sync, function calls) in the order it owes their ReadyForQuery,
//! each with its [`QueryTimer`], first statement text, rows and SQLSTATE.
//!
//! It owns lining the timers up with the conversation; it reads no socket and records
//! nothing (the session hands finished entries to `stats::Stats`). The session calls it at
//! the points where the tracker counts: a request is pushed when the read-time scan counts
//! the ReadyForQuery it owes, and marked answered when the server's ReadyForQuery is scanned.
//! A batch the proxy re-sends (a stale plan, a read moved off a replica) keeps its entry: the
//! failed attempt's ReadyForQuery is swallowed without marking it, so the entry ends with
//! the reply the client actually gets, and its time includes the retry.
//!
//! A batch that executes nothing (Parse/Describe up to Sync: a driver preparing a statement)
//! is timed but marked: it is a round trip, not a query, and the stats skip it, so a driver
//! that prepares before each execution does not count each query twice.
//!
//! Pipelined requests share the `written` mark (the moment everything scanned so far had
//! reached the server), so an earlier request of a pipeline shows a little less server time
//! than it had. A client that vanishes mid-request leaves its entries unrecorded.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::protocol::messages::parse;
use crate::stats::{FingerprintMemo, QueryTimer};

/// Statement text kept per request: enough to fingerprint any real query shape (normalized
/// text is cut at 4 KiB anyway), while a multi-megabyte INSERT costs no more than this to
/// time, and a burst of them cannot fill the slow log's queue with copies.
const MAX_SQL: usize = 16 * 1024;

/// Copies at most [`MAX_SQL`] bytes of `text`.
fn keep(text: &[u8]) -> Bytes {
    Bytes::copy_from_slice(&text[..text.len().min(MAX_SQL)])
}

/// The text recorded for a FunctionCall (it has no SQL).
const FUNCTION_CALL: &[u8] = b"-- function call (fastpath)";
/// The text recorded for a batch that binds the unnamed statement parsed in an earlier one.
const UNNAMED: &[u8] = b"-- unnamed prepared statement";

/// One request the session owes an answer for.
#[derive(Debug)]
pub struct Pending {
    pub timer: QueryTimer,
    /// First statement text as sent, up to [`MAX_SQL`] bytes (literals included; never
    /// logged as is unless asked).
    pub sql: Bytes,
    pub rows: u64,
    pub sqlstate: Option<[u8; 5]>,
    /// It runs something: a Query, a FunctionCall, or a batch with an Execute.
    pub executes: bool,
    answered: bool,
}

/// The session's requests in flight. Empty and unallocated between requests.
#[derive(Debug, Default)]
pub struct Timing {
    pending: VecDeque<Pending>,
    /// The current extended batch's first statement text, until its Sync.
    batch_sql: Option<Bytes>,
    /// The current extended batch has an Execute.
    batch_executes: bool,
    /// Start of the first request of the open transaction block.
    xact_start: Option<Instant>,
    /// When a write to the client last found its socket full, until one succeeds.
    blocked_since: Option<Instant>,
    /// Some entry has no `written` mark yet.
    unwritten: bool,
    /// Some entry has no `checked_out` mark yet.
    unchecked: bool,
    /// Entries answered (ReadyForQuery scanned), at the front.
    answered: usize,
    /// Requests still to be counted into the entry before them: an extended COPY FROM STDIN
    /// has one ReadyForQuery for its Sync and the Sync after CopyDone (the server skips the
    /// first, as `TxnTracker` does on CopyInResponse).
    absorb: u32,
    /// Fingerprints of the texts this session sent lately: its finished entries are recorded
    /// with them (see [`Timing::take_answered_with_memo`]).
    memo: FingerprintMemo,
}

impl Timing {
    /// Nothing in flight.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Notes a client message of a request, read-time scan order (body when the scan has it).
    /// `owes` when the tracker counted a ReadyForQuery for it: the request is complete, `now`.
    pub fn client_message(
        &mut self,
        tag: u8,
        body: Option<&[u8]>,
        owes: bool,
        attached: bool,
        named_text: impl FnOnce(&[u8]) -> Option<Bytes>,
        now: &mut Option<Instant>,
    ) {
        match (tag, body) {
            (b'P', Some(b)) if self.batch_sql.is_none() => {
                if let Some(text) = parse::cstr(b)
                    .and_then(|(_, rest)| parse::cstr(rest))
                    .map(|(t, _)| t)
                {
                    self.batch_sql = Some(keep(text));
                }
            }
            (b'B', Some(b)) if self.batch_sql.is_none() => {
                let stmt = parse::cstr(b)
                    .and_then(|(_, rest)| parse::cstr(rest))
                    .map(|(s, _)| s);
                self.batch_sql = Some(match stmt {
                    Some(name) if !name.is_empty() => {
                        named_text(name).unwrap_or_else(|| Bytes::from_static(UNNAMED))
                    }
                    _ => Bytes::from_static(UNNAMED),
                });
            }
            (b'E', _) => self.batch_executes = true,
            _ => {}
        }
        if !owes {
            return;
        }
        if self.absorb > 0 {
            self.absorb -= 1;
            self.batch_sql = None;
            self.batch_executes = false;
            return;
        }
        let (sql, executes) = match (tag, body) {
            (b'Q', Some(b)) => (keep(parse::cstr(b).map_or(b, |(t, _)| t)), true),
            (b'F', _) => (Bytes::from_static(FUNCTION_CALL), true),
            _ => (
                self.batch_sql.take().unwrap_or_default(),
                std::mem::take(&mut self.batch_executes),
            ),
        };
        let at = *now.get_or_insert_with(Instant::now);
        let mut timer = QueryTimer::start_at(at);
        if attached {
            timer.checked_out_at(at);
        } else {
            self.unchecked = true;
        }
        self.unwritten = true;
        self.pending.push_back(Pending {
            timer,
            sql,
            rows: 0,
            sqlstate: None,
            executes,
            answered: false,
        });
    }

    /// A server is in hand for the requests waiting for one.
    pub fn checked_out(&mut self, now: Instant) {
        if !self.unchecked {
            return;
        }
        self.unchecked = false;
        for p in self.pending.iter_mut().skip(self.answered) {
            if !p.timer.has_checked_out() {
                p.timer.checked_out_at(now);
            }
        }
    }

    /// Everything scanned so far has been written to the server.
    pub fn flushed(&mut self) {
        if !self.unwritten {
            return;
        }
        self.unwritten = false;
        let now = Instant::now();
        for p in self.pending.iter_mut().skip(self.answered) {
            if !p.timer.has_written() {
                p.timer.written_at(now);
            }
        }
    }

    /// Notes a server message (body for `E`, `C`, `Z`). `replaying`: the batch it answers
    /// failed and will be sent again, so its ReadyForQuery does not end the entry. Returns
    /// the transaction time when a ReadyForQuery closed a transaction (or an autocommit
    /// query).
    pub fn server_message(
        &mut self,
        tag: u8,
        body: Option<&[u8]>,
        replaying: bool,
    ) -> Option<Duration> {
        // Rows and notices are most of the traffic: out before any lookup.
        if !matches!(tag, b'C' | b'E' | b'Z') {
            return None;
        }
        let p = self.pending.get_mut(self.answered)?;
        match (tag, body) {
            (b'C', Some(b)) => p.rows += rows_of(b),
            (b'E', Some(b)) if p.sqlstate.is_none() => {
                if let Some(code) = parse::error_fields(b)
                    .and_then(|f| f.code)
                    .and_then(|c| <[u8; 5]>::try_from(c.as_bytes()).ok())
                {
                    p.sqlstate = Some(code);
                }
            }
            (b'Z', body) if !replaying => {
                let now = Instant::now();
                p.timer.ready_at(now);
                p.answered = true;
                let start = p.timer.started();
                self.answered += 1;
                let xact_start = *self.xact_start.get_or_insert(start);
                if body.and_then(|b| b.first()) == Some(&b'I') {
                    self.xact_start = None;
                    return Some(now.saturating_duration_since(xact_start));
                }
            }
            _ => {}
        }
        None
    }

    /// Lines the queue up with the tracker after a server message: `owed` is what it says
    /// the server still owes. On CopyInResponse the server has skipped the Syncs sent after
    /// the COPY's Execute: their entries are folded into the COPY's (the next requests the
    /// client sends are counted into it). After a ReadyForQuery more unanswered entries than
    /// owed replies would never end: the oldest are dropped, unrecorded, so one mistake
    /// cannot shift every later query's figures. `replaying`: see [`Self::server_message`].
    pub fn settle(&mut self, tag: u8, owed: u32, replaying: bool) {
        let unanswered = (self.pending.len() - self.answered) as u64;
        let excess = unanswered.saturating_sub(u64::from(owed));
        if excess == 0 {
            return;
        }
        match tag {
            b'G' => {
                // Entries pushed for the skipped Syncs go; their requests' time counts in
                // the COPY's entry, which ends with the last ReadyForQuery.
                for _ in 0..excess {
                    if self.pending.len() > self.answered + 1 {
                        self.pending.pop_back();
                    } else {
                        self.absorb += 1;
                    }
                }
            }
            b'Z' if !replaying => {
                let drop_from = self.answered;
                let n = usize::try_from(excess).unwrap_or(usize::MAX);
                self.pending.drain(drop_from..drop_from + n);
            }
            _ => {}
        }
    }

    /// The request being re-sent starts its reply afresh: what its failed attempt said
    /// (an error, rows) does not count.
    pub fn retrying(&mut self) {
        for p in self.pending.iter_mut().skip(self.answered) {
            p.rows = 0;
            p.sqlstate = None;
        }
    }

    /// A write to the client found its socket full.
    pub fn client_blocked(&mut self) {
        if self.blocked_since.is_none() && !self.pending.is_empty() {
            self.blocked_since = Some(Instant::now());
        }
    }

    /// A write to the client went through: the time it was blocked goes to every entry not
    /// yet finished.
    pub fn client_wrote(&mut self) {
        if let Some(since) = self.blocked_since.take() {
            let d = since.elapsed();
            for p in self.pending.iter_mut() {
                p.timer.add_client_blocked(d);
            }
        }
    }

    /// Some entries are answered and wait only for their reply to reach the client.
    pub fn has_answered(&self) -> bool {
        self.answered > 0
    }

    /// Takes the answered entries whose replies have all been written, marking them done.
    pub fn take_answered(&mut self, now: Instant) -> impl Iterator<Item = Pending> + '_ {
        self.take_answered_with_memo(now).0
    }

    /// [`Timing::take_answered`], with the session's fingerprint memo beside it for recording
    /// them.
    pub fn take_answered_with_memo(
        &mut self,
        now: Instant,
    ) -> (impl Iterator<Item = Pending> + '_, &mut FingerprintMemo) {
        let n = std::mem::take(&mut self.answered);
        if n == self.pending.len() {
            self.unwritten = false;
            self.unchecked = false;
        }
        let done = self.pending.drain(..n).map(move |mut p| {
            p.timer.client_done_at(now);
            p
        });
        (done, &mut self.memo)
    }

    /// Takes every entry (answered by the proxy, or cut short), marking them done.
    pub fn take_all(&mut self, now: Instant) -> impl Iterator<Item = Pending> + '_ {
        self.answered = 0;
        self.unwritten = false;
        self.unchecked = false;
        self.batch_sql = None;
        self.batch_executes = false;
        self.xact_start = None;
        self.pending.drain(..).map(move |mut p| {
            p.timer.client_done_at(now);
            p
        })
    }

    /// Forgets everything in flight (requests the proxy answered without a server).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.answered = 0;
        self.unwritten = false;
        self.unchecked = false;
        self.batch_sql = None;
        self.batch_executes = false;
    }

    /// Frees the queue's memory once idle: an idle client holds none.
    pub fn shrink(&mut self) {
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            self.pending = VecDeque::new();
        }
    }
}

/// Rows from a CommandComplete tag: the last number of `SELECT 5`, `INSERT 0 5`, `UPDATE 5`,
/// `COPY 5`...; 0 for tags without one (`CREATE TABLE`).
fn rows_of(body: &[u8]) -> u64 {
    let tag = parse::cstr(body).map_or(body, |(t, _)| t);
    let last = tag.rsplit(|&b| b == b' ').next().unwrap_or_default();
    if last.is_empty() || !last.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    std::str::from_utf8(last)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(sql: &str) -> Vec<u8> {
        let mut b = sql.as_bytes().to_vec();
        b.push(0);
        b
    }

    fn parse_body(name: &str, sql: &str) -> Vec<u8> {
        let mut b = query(name);
        b.extend(query(sql));
        b.extend([0, 0]);
        b
    }

    fn bind_body(stmt: &str) -> Vec<u8> {
        let mut b = query("");
        b.extend(query(stmt));
        b.extend([0, 0, 0, 0, 0, 0]);
        b
    }

    #[test]
    fn rows_come_from_the_last_number_of_the_tag() {
        assert_eq!(rows_of(b"SELECT 5\0"), 5);
        assert_eq!(rows_of(b"INSERT 0 12\0"), 12);
        assert_eq!(rows_of(b"CREATE TABLE\0"), 0);
        assert_eq!(rows_of(b"\0"), 0);
        assert_eq!(rows_of(b"SELECT 99999999999999999999999\0"), 0);
    }

    #[test]
    fn a_simple_query_is_timed_from_scan_to_client_done() {
        let mut t = Timing::default();
        let mut now = None;
        t.client_message(
            b'Q',
            Some(&query("select 1")),
            true,
            false,
            |_| None,
            &mut now,
        );
        assert!(!t.is_empty());
        t.checked_out(Instant::now());
        t.flushed();
        assert_eq!(t.server_message(b'C', Some(b"SELECT 1\0"), false), None);
        assert!(t.server_message(b'Z', Some(b"I"), false).is_some());
        let done: Vec<_> = t.take_answered(Instant::now()).collect();
        assert_eq!(done.len(), 1);
        assert_eq!(&done[0].sql[..], b"select 1");
        assert_eq!(done[0].rows, 1);
        assert!(t.is_empty());
    }

    #[test]
    fn a_batch_takes_its_first_parse_or_its_named_statement() {
        let mut t = Timing::default();
        let mut now = None;
        t.client_message(
            b'P',
            Some(&parse_body("", "select $1")),
            false,
            true,
            |_| None,
            &mut now,
        );
        t.client_message(
            b'P',
            Some(&parse_body("", "select 2")),
            false,
            true,
            |_| None,
            &mut now,
        );
        t.client_message(b'S', None, true, true, |_| None, &mut now);
        t.client_message(
            b'B',
            Some(&bind_body("s1")),
            false,
            true,
            |n| {
                assert_eq!(n, b"s1");
                Some(Bytes::from_static(b"select * from t"))
            },
            &mut now,
        );
        t.client_message(b'E', Some(b"\0\0\0\0\0"), false, true, |_| None, &mut now);
        t.client_message(b'S', None, true, true, |_| None, &mut now);
        t.client_message(b'F', None, true, true, |_| None, &mut now);
        for _ in 0..3 {
            t.server_message(b'Z', Some(b"I"), false);
        }
        let sqls: Vec<(Vec<u8>, bool)> = t
            .take_answered(Instant::now())
            .map(|p| (p.sql.to_vec(), p.executes))
            .collect();
        // The first batch only prepares.
        assert_eq!(
            sqls,
            vec![
                (b"select $1".to_vec(), false),
                (b"select * from t".to_vec(), true),
                (FUNCTION_CALL.to_vec(), true)
            ]
        );
    }

    #[test]
    fn a_replayed_batch_keeps_its_entry_and_forgets_the_failed_attempt() {
        let mut t = Timing::default();
        let mut now = None;
        t.client_message(b'S', None, true, true, |_| None, &mut now);
        t.server_message(b'E', Some(b"SERROR\0C0A000\0\0"), false);
        // The failed attempt's ReadyForQuery is swallowed while replaying.
        assert_eq!(t.server_message(b'Z', Some(b"I"), true), None);
        assert!(!t.has_answered());
        t.retrying();
        t.server_message(b'C', Some(b"SELECT 3\0"), false);
        t.server_message(b'Z', Some(b"I"), false);
        let done: Vec<_> = t.take_answered(Instant::now()).collect();
        assert_eq!((done[0].rows, done[0].sqlstate), (3, None));
    }

    #[test]
    fn a_transaction_is_timed_from_its_first_query_to_idle() {
        let mut t = Timing::default();
        let mut now = None;
        t.client_message(b'Q', Some(&query("begin")), true, true, |_| None, &mut now);
        assert_eq!(t.server_message(b'Z', Some(b"T"), false), None);
        t.client_message(
            b'Q',
            Some(&query("commit")),
            true,
            true,
            |_| None,
            &mut None,
        );
        assert!(t.server_message(b'Z', Some(b"I"), false).is_some());
        t.server_message(b'E', Some(b"SERROR\0C42P01\0\0"), false);
        assert_eq!(t.take_answered(Instant::now()).count(), 2);
    }

    #[test]
    fn errors_keep_the_first_sqlstate_and_messages_without_a_request_are_ignored() {
        let mut t = Timing::default();
        assert_eq!(t.server_message(b'Z', Some(b"I"), false), None);
        t.client_message(b'Q', Some(&query("x")), true, true, |_| None, &mut None);
        t.server_message(b'E', Some(b"SERROR\0C42601\0\0"), false);
        t.server_message(b'E', Some(b"SERROR\0C25P02\0\0"), false);
        t.server_message(b'Z', Some(b"I"), false);
        let done: Vec<_> = t.take_answered(Instant::now()).collect();
        assert_eq!(done[0].sqlstate, Some(*b"42601"));
        t.shrink();
        assert_eq!(t.pending.capacity(), 0);
    }

    #[test]
    fn an_extended_copy_is_one_entry_ending_at_its_last_ready_for_query() {
        let mut t = Timing::default();
        // Bind, Execute, Sync: the COPY; the server answers CopyInResponse and skips the Sync.
        t.client_message(
            b'P',
            Some(&parse_body("", "COPY t FROM STDIN")),
            false,
            true,
            |_| None,
            &mut None,
        );
        t.client_message(b'E', Some(b"\0\0\0\0\0"), false, true, |_| None, &mut None);
        t.client_message(b'S', None, true, true, |_| None, &mut None);
        t.settle(b'G', 0, false);
        // CopyData, CopyDone, Sync: the request the one ReadyForQuery answers.
        t.client_message(b'S', None, true, true, |_| None, &mut None);
        t.server_message(b'C', Some(b"COPY 3\0"), false);
        t.server_message(b'Z', Some(b"I"), false);
        t.settle(b'Z', 0, false);
        let done: Vec<_> = t.take_answered(Instant::now()).collect();
        assert_eq!(done.len(), 1);
        assert_eq!(
            (&done[0].sql[..], done[0].rows),
            (&b"COPY t FROM STDIN"[..], 3)
        );
        assert!(t.is_empty());
        // The next query lines up with its own reply.
        t.client_message(
            b'Q',
            Some(&query("select 2")),
            true,
            true,
            |_| None,
            &mut None,
        );
        t.server_message(b'Z', Some(b"I"), false);
        let done: Vec<_> = t.take_answered(Instant::now()).collect();
        assert_eq!(&done[0].sql[..], b"select 2");
    }

    #[test]
    fn entries_no_reply_will_end_are_dropped_at_the_next_ready_for_query() {
        let mut t = Timing::default();
        for q in ["a", "b", "c"] {
            t.client_message(b'Q', Some(&query(q)), true, true, |_| None, &mut None);
        }
        t.server_message(b'Z', Some(b"I"), false);
        // The tracker says nothing more is owed: "b" and "c" will never be answered.
        t.settle(b'Z', 0, false);
        assert_eq!(t.take_answered(Instant::now()).count(), 1);
        assert!(t.is_empty());
        // While a failed batch is being replayed the gap is expected: nothing is dropped.
        t.client_message(b'Q', Some(&query("d")), true, true, |_| None, &mut None);
        t.settle(b'Z', 0, true);
        assert!(!t.is_empty());
    }
}
