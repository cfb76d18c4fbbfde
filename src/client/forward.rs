//! Moving bytes between an attached client and its server, with named prepared statements
//! rewritten on the way (see `prepared`).
//!
//! Client to server: the scanned client bytes are walked once more at write time, when the
//! server is known. Runs of messages that name no statement go out as they are, straight from
//! the client's buffer; a message that names one is rewritten into `Wire::sout` (with any Parse
//! this server needs first). Every message sent, or answered by the proxy, gets its entry in the
//! [`ReplyQueue`].
//!
//! Server to client: server messages are forwarded in the chunks read, except where the reply
//! queue says otherwise: the proxy's own replies go out where the server's would have, replies
//! to the proxy's own messages are swallowed, errors naming a proxy statement name the
//! client's. Such a message is handled alone, once what precedes it has been written.

use bytes::{Buf, BytesMut};

use super::route::Redirect;
use super::session::{Exit, Session};
use crate::prepared::registry::server_name;
use crate::prepared::rewrite::{self, Ctx};
use crate::protocol::codec::{HEADER_LEN, peek_header, walk_messages};
use crate::protocol::messages::{encode, parse};
use crate::protocol::replies::{self, Event, Expect, ReplyQueue, Verdict};
use crate::protocol::tracker::{Flow, IDLE, StreamScanner, client_needs_body, server_needs_body};
use crate::sql::Flags;

/// Server messages are trusted for size (Postgres bounds them itself); only their headers are
/// read, so no bound short of the protocol's own is needed.
const SERVER_MAX_MESSAGE: usize = i32::MAX as usize;

/// The rewriting layer's state while attached.
#[derive(Debug, Default)]
pub struct Wire {
    /// Client bytes at the front of the client buffer cleared to go out as they are.
    raw: usize,
    /// Rewritten client messages, sent before anything after them.
    pub sout: BytesMut,
    /// Walks client messages at write time (the read-time scan only counts requests).
    wscan: StreamScanner,
    pub replies: ReplyQueue,
    /// Bytes for the client (the proxy's replies, replaced messages) due before any more
    /// server bytes.
    pub client_out: BytesMut,
    /// The verdict on the server message at the head of the server's buffer, taken when the
    /// scan stopped before it.
    head: Option<Verdict>,
    events: Vec<Event>,
    /// The batch in flight, kept for one transparent retry after a stale plan.
    retry: Retry,
    /// Something of the batch in flight has reached the client: too late to retry it.
    replied: bool,
    /// Extended-protocol messages were planned since the last Sync: an implicit transaction
    /// may be open, which a retried batch would not redo.
    open_batch: bool,
    /// What to do with the message at the head of the client buffer, decided by the scan that
    /// stopped before it (one scan of its SQL, and no chance of two checks disagreeing).
    head_plan: Option<HeadPlan>,
    /// A reply the server skipped left this connection's prepared set unknown: close it
    /// instead of reusing it.
    pub suspect: bool,
}

/// Why a read leaves its replica (see [`Retry`]).
#[derive(Debug, Clone, Copy)]
enum Move {
    /// `25006`: the replica refused a write the grammar could not see.
    Refused,
    /// FATAL: the replica is going away.
    Died,
}

/// A Query or Parse the proxy handles itself, found by the write-time scan.
#[derive(Debug)]
enum HeadPlan {
    /// Replace its SQL with an error (`session_features = "error"`, reserved names).
    Refuse(String),
    /// Replace its SQL with this (`router::route_setting`).
    Replace(Vec<u8>),
    /// A lone DEALLOCATE of these protocol-level statements of the client.
    Deallocate(Vec<Vec<u8>>),
}

/// Keeping a batch for re-sending after `0A000 cached plan must not change result type`.
///
/// Postgres raises it at Bind when a schema change altered a prepared statement's result
/// type; a direct client must re-prepare by hand (PgBouncer's users must even RECONNECT). The
/// proxy can do it for them when the whole batch can simply be sent again: it started with
/// nothing else in flight and outside a transaction block (so the error rolled back nothing
/// that was not part of it), holds only extended-protocol messages up to its Sync, nothing
/// after it has been sent, and nothing of its reply has reached the client yet. And it must
/// Describe what it runs: a client that relies on a row description cached before the change
/// would decode the new rows with the old types, so it gets Postgres's error instead (and its
/// next prepare of the statement gets a fresh plan).
#[derive(Debug, Default)]
enum Retry {
    #[default]
    Off,
    /// Copying the batch's client messages as they are planned.
    Recording(BytesMut),
    /// The batch's Sync was planned: all of it is here.
    Complete(BytesMut),
    /// The stale error was swallowed; swallowing its batch's replies up to ReadyForQuery,
    /// then re-sending these bytes.
    Replaying(BytesMut),
    /// A replica refused the batch as a write (`25006`): swallowing its replies up to
    /// ReadyForQuery, then sending these bytes to the primary (see [`Session::move_batch`]).
    Moving(BytesMut),
    /// The re-sent batch: not retried again.
    Retried,
}

/// A read routed to a replica is kept the same way, with a single Query counting as a whole
/// batch: if the replica refuses it as a write (`25006`) or dies under it before any byte of
/// the reply reached the client, it runs again on the primary or another member (see
/// `client::route`). A read that already streamed part of its reply is past that point: the
/// client gets what a direct connection would have given it.
///
/// Batches larger than this are not kept for a retry.
const RETRY_MAX: usize = 64 * 1024;

impl Wire {
    /// A server was just checked out: nothing is in flight on it.
    pub fn attached(&mut self) {
        debug_assert!(self.replies.is_empty() && self.raw == 0 && self.sout.is_empty());
        self.wscan = StreamScanner::default();
        self.head = None;
    }

    /// Nothing is half-way between the sockets.
    pub fn idle(&self) -> bool {
        self.raw == 0 && self.sout.is_empty() && self.client_out.is_empty() && self.head.is_none()
    }

    /// Something is ready to go to the server: planned bytes, or scanned client bytes that
    /// may be planned now (not while a failed batch waits to be sent again).
    pub fn wants_write(&self, scanned: usize) -> bool {
        !self.sout.is_empty() || self.raw > 0 || (scanned > 0 && !self.retry.resending())
    }

    /// No message was left half-written to the server.
    pub fn sent_whole_messages(&self) -> bool {
        self.sout.is_empty() && self.wscan.at_boundary()
    }
}

impl Session<'_> {
    /// Writes to the server what it may have now: rewritten messages and raw runs, in order.
    pub(super) fn write_server(&mut self) -> Result<(), Exit> {
        // TLS records a full socket left queued go first.
        if let Some(conn) = self.server.as_mut()
            && conn.stream.try_flush().is_err()
        {
            return self.server_failed();
        }
        loop {
            let Some(conn) = self.server.as_mut() else {
                return Ok(());
            };
            let (buf, from_client) = if !self.wire.sout.is_empty() {
                (&self.wire.sout[..], false)
            } else if self.wire.raw > 0 {
                (&self.cbuf[..self.wire.raw], true)
            } else if self.scanned > 0 && self.wire.retry.resending() {
                // A failed batch's replies are being swallowed before it is sent again: what
                // the client sent after it waits, so its replies are not swallowed too (and it
                // goes out after the re-sent batch, in the client's order).
                break;
            } else if self.scanned > 0 {
                if !self.plan() {
                    // Scanned bytes that cannot be planned are a bug; waiting for the socket
                    // again would spin on it. End this client rather than the process's CPU.
                    tracing::error!("client bytes could not be forwarded; ending the session");
                    return Err(Exit::fatal(
                        crate::protocol::sqlstate::INTERNAL_ERROR,
                        "internal error in Lagoon while forwarding this request",
                    ));
                }
                continue;
            } else {
                self.tracker.flushed();
                self.timing.flushed();
                break;
            };
            let n = match conn.stream.try_write(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(_) => return self.server_failed(),
            };
            if from_client {
                self.cbuf.advance(n);
                self.scanned -= n;
                self.wire.raw -= n;
            } else {
                self.wire.sout.advance(n);
            }
        }
        // A request the proxy answers itself (a Close) may owe the client replies right now.
        self.pump_client()
    }

    /// Decides how the next scanned client bytes go out: a named-statement message at the
    /// head is rewritten; otherwise the run of messages up to the next one is cleared to go
    /// as is. False when nothing could be planned.
    fn plan(&mut self) -> bool {
        let rewrite_on = !self.session_mode;
        let Some(conn) = self.server.as_mut() else {
            return false;
        };
        let conn: &mut crate::pool::ServerConn = conn;
        let w = &mut self.wire;
        if w.replies.is_empty() {
            // Nothing in flight: a batch starts here.
            w.replied = false;
            w.retry = match std::mem::take(&mut w.retry) {
                // The batch being re-sent: once is enough.
                Retry::Retried => Retry::Off,
                _ if rewrite_on && self.tracker.status() == IDLE && !w.open_batch => {
                    Retry::Recording(BytesMut::new())
                }
                _ => Retry::Off,
            };
        } else if matches!(w.retry, Retry::Complete(_)) {
            // A second batch goes out behind the first: the first can no longer be re-sent.
            w.retry = Retry::Off;
        }
        let refuse_on = rewrite_on && self.refuse_features;
        // With standard_conforming_strings off, backslashes escape quotes in '...' strings: a
        // scan that assumed otherwise could miss a SET hidden after one.
        let std_strings = self.params.standard_strings();
        if w.wscan.at_boundary()
            && let Ok(Some(h)) = peek_header(&self.cbuf[..self.scanned], self.max_message)
            && h.total_len <= self.scanned
        {
            let body = &self.cbuf[HEADER_LEN..h.total_len];
            let named = rewrite_on && rewrite::is_named(h.tag, body);
            let mut refused = None;
            match w.head_plan.take() {
                Some(HeadPlan::Deallocate(names)) => {
                    // DEALLOCATE of the client's protocol-level statements (pgx drops
                    // statements this way): they are the proxy's to drop. The server runs an
                    // empty query, so the reply keeps its place and its transaction status.
                    for n in names {
                        self.statements.remove(&n);
                    }
                    conn.statements.new_batch();
                    w.open_batch = false;
                    encode::message(&mut w.sout, b'Q', |o| o.extend_from_slice(&[0]));
                    w.replies.push(Expect::QueryDoneAs("DEALLOCATE"));
                    w.retry.record(&self.cbuf[..h.total_len], false);
                    self.cbuf.advance(h.total_len);
                    self.scanned -= h.total_len;
                    return true;
                }
                Some(HeadPlan::Refuse(msg)) => refused = refusal_sql(&msg),
                Some(HeadPlan::Replace(sql)) => {
                    self.ask
                        .note(&crate::sql::effects::scan_with(&sql, std_strings));
                    refused = Some(sql);
                }
                None if named && h.tag == b'P' => {
                    // Named Parses skip the scan callback: check them here (once per
                    // statement and client).
                    refused = query_text(h.tag, body)
                        .and_then(|t| {
                            refusal_reason(
                                &crate::sql::effects::scan_with(t, std_strings),
                                refuse_on,
                            )
                        })
                        .and_then(|m| refusal_sql(&m));
                }
                None => {}
            }
            if refused.is_some() || named {
                let replaced;
                let body = match refused.and_then(|sql| with_sql(h.tag, body, &sql)) {
                    Some(b) => {
                        replaced = b;
                        &replaced[..]
                    }
                    None => body,
                };
                if named {
                    let mut ctx = Ctx {
                        registry: &self.shared.statements,
                        scope: &self.pool.statement_scope,
                        client: &mut self.statements,
                        server: &mut conn.statements,
                        cap: self.max_prepared,
                        replies: &mut w.replies,
                    };
                    // A statement's effects are noted when it is bound, as that is where it runs.
                    if let Some(stmt) = rewrite::rewrite(&mut ctx, h.tag, body, &mut w.sout) {
                        self.ask.note(&stmt.effects);
                    }
                } else {
                    encode::message(&mut w.sout, h.tag, |o| o.extend_from_slice(body));
                    if let Some(e) = rewrite::pass_through(h.tag, Some(body)) {
                        w.replies.push(e);
                    }
                    if h.tag == b'Q' {
                        conn.statements.new_batch();
                    }
                }
                w.open_batch = h.tag != b'Q';
                w.retry.record(&self.cbuf[..h.total_len], false);
                self.cbuf.advance(h.total_len);
                self.scanned -= h.total_len;
                return true;
            }
        }
        let replies = &mut w.replies;
        let server_set = &mut conn.statements;
        let ask = &mut self.ask;
        let client_names = &self.statements;
        let sql_prepared = &self.sql_prepared;
        let captured = &mut self.captured;
        let head_plan = &mut w.head_plan;
        let open_batch = &mut w.open_batch;
        let recording = matches!(w.retry, Retry::Recording(_));
        // Nothing recorded yet: a Query here is a whole batch by itself, worth keeping only
        // when it is a read on a replica (a stale plan never hits a simple Query).
        let mut fresh = matches!(&w.retry, Retry::Recording(b) if b.is_empty())
            && self
                .route
                .as_ref()
                .is_some_and(|r| r.on_replica().is_some());
        let mut ends_batch = false;
        let mut retryable = true;
        let scanned = w.wscan.scan(
            &self.cbuf[w.raw..self.scanned],
            self.max_message,
            client_needs_body,
            |tag, body| {
                if rewrite_on && body.is_some_and(|b| rewrite::is_named(tag, b)) {
                    return Flow::StopBefore;
                }
                if let (b'Q' | b'P', Some(b)) = (tag, body)
                    && let Some(text) = query_text(tag, b)
                {
                    let effects = crate::sql::effects::scan_with(text, std_strings);
                    if rewrite_on && let Some(msg) = refusal_reason(&effects, refuse_on) {
                        *head_plan = Some(HeadPlan::Refuse(msg));
                        return Flow::StopBefore;
                    }
                    if rewrite_on
                        && effects
                            .custom_settings
                            .iter()
                            .any(|n| n == crate::router::route_setting::NAME.as_bytes())
                        && let Some(sql) = crate::router::route_setting::quote_primary(text)
                    {
                        *head_plan = Some(HeadPlan::Replace(sql));
                        return Flow::StopBefore;
                    }
                    if rewrite_on
                        && tag == b'Q'
                        && effects.flags == Flags::DEALLOCATE
                        && let Some(names) =
                            local_deallocate(client_names, sql_prepared, text, &effects)
                    {
                        *head_plan = Some(HeadPlan::Deallocate(names));
                        return Flow::StopBefore;
                    }
                    for p in &effects.prepares {
                        if let (Ok(name), Some(Ok(text))) = (
                            std::str::from_utf8(&p.name),
                            text.get(p.range.clone()).map(std::str::from_utf8),
                        ) {
                            captured.push((name.to_owned(), text.to_owned()));
                        }
                    }
                    ask.note(&effects);
                }
                match tag {
                    b'S' | b'Q' => *open_batch = false,
                    b'P' | b'B' | b'D' | b'E' | b'C' | b'H' => *open_batch = true,
                    // A fastpath call can do anything (set_config among them) and shows no SQL.
                    b'F' => ask.note(&crate::sql::Effects {
                        flags: Flags::OPAQUE,
                        ..Default::default()
                    }),
                    _ => {}
                }
                if recording {
                    // Plan a recorded batch only up to its end, so what follows is seen
                    // as a second batch.
                    if ends_batch {
                        return Flow::StopBefore;
                    }
                    let lone_query = tag == b'Q' && fresh;
                    fresh = false;
                    ends_batch = tag == b'S' || lone_query;
                    retryable &=
                        lone_query || matches!(tag, b'P' | b'B' | b'D' | b'E' | b'S' | b'C' | b'H');
                }
                if let Some(e) = rewrite::pass_through(tag, body) {
                    replies.push(e);
                }
                if matches!(tag, b'S' | b'Q') {
                    server_set.new_batch();
                }
                Flow::Continue
            },
        );
        match scanned {
            Ok(n) if n > 0 => {
                if recording {
                    if retryable && w.wscan.at_boundary() {
                        w.retry.record(&self.cbuf[w.raw..w.raw + n], ends_batch);
                    } else {
                        w.retry = Retry::Off;
                    }
                }
                w.raw += n;
                true
            }
            // Stopped before a message the proxy handles itself: the next call takes it.
            Ok(_) if w.head_plan.is_some() => true,
            // The read-time scan already validated these bytes; nothing to plan is a bug.
            _ => false,
        }
    }

    /// Passes server bytes (and the proxy's own replies) to the client as far as its socket
    /// takes them now; releases the server once the reply is complete.
    pub(super) fn pump_client(&mut self) -> Result<(), Exit> {
        // TLS records a full socket left queued go first.
        if self.client.try_flush().is_err() {
            return Err(Exit::ClientGone);
        }
        loop {
            let Some(conn) = self.server.as_mut() else {
                return Ok(());
            };
            let buf = if self.to_client > 0 {
                &conn.read_buf[..self.to_client]
            } else if !self.wire.client_out.is_empty() {
                &self.wire.client_out[..]
            } else if let Some(verdict) = self.wire.head.take() {
                self.apply_head(verdict);
                continue;
            } else {
                // Everything up to the last ReadyForQuery scanned has reached the client.
                if self.timing.has_answered() {
                    self.finish_answered();
                }
                self.wire.replies.take_ready(&mut self.wire.client_out);
                if !self.wire.client_out.is_empty() {
                    continue;
                }
                if !self.scan_server()? {
                    break;
                }
                continue;
            };
            let n = match self.client.try_write(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.timing.client_blocked();
                    return Ok(());
                }
                Err(_) => return Err(Exit::ClientGone),
            };
            self.timing.client_wrote();
            self.sent += n as u64;
            self.wire.replied = true;
            if self.to_client > 0 {
                conn.read_buf.advance(n);
                self.to_client -= n;
            } else {
                self.wire.client_out.advance(n);
            }
        }
        self.maybe_release()
    }

    /// Scans unread server bytes: the plain prefix becomes `to_client`; a message the reply
    /// queue wants handled stops the scan with its verdict in `wire.head`. False when there is
    /// nothing more to do until more bytes arrive.
    fn scan_server(&mut self) -> Result<bool, Exit> {
        let Some(conn) = self.server.as_mut() else {
            return Ok(false);
        };
        // Through the guard once, so the fields can be borrowed apart.
        let conn: &mut crate::pool::ServerConn = conn;
        let tracker = &mut self.tracker;
        let timing = &mut self.timing;
        let db_stats = &self.db_stats;
        let params = &mut self.params;
        let ask = &mut self.ask;
        let applied = &mut conn.applied;
        let w = &mut self.wire;
        let mut head = None;
        let replaying = matches!(w.retry, Retry::Replaying(_) | Retry::Moving(_));
        // A read on a replica, kept whole, of which the client has seen nothing yet: a
        // refusal or a dying server sends it elsewhere instead of to the client.
        let movable = self.pinned.is_none()
            && self
                .route
                .as_ref()
                .is_some_and(|r| r.on_replica().is_some())
            && !w.replied
            && matches!(w.retry, Retry::Complete(_));
        let mut moving = None;
        // A server that dies between transactions is closed quietly at release (see below).
        let may_drop = !self.session_mode && self.pinned.is_none();
        let mut dying = false;
        let scanned = self.sscan.scan(
            &conn.read_buf,
            SERVER_MAX_MESSAGE,
            // CommandComplete too: its tag holds the row count the query timing records.
            |tag| tag == b'C' || server_needs_body(tag),
            |tag, body| {
                // A server going away (FATAL) is looked at before anything counts it.
                if tag == b'E'
                    && let Some(f) = body.and_then(parse::error_fields)
                    && f.ends_session()
                {
                    if may_drop && tracker.releasable() && ask.is_empty() {
                        // Between transactions, with nothing of the client's on it: the
                        // client loses nothing, so it never hears of it.
                        dying = true;
                        return Flow::StopBefore;
                    }
                    if movable && tracker.owed() > 0 {
                        moving = Some(Move::Died);
                        return Flow::StopBefore;
                    }
                }
                let verdict = w
                    .replies
                    .server_message(tag, body, &mut w.client_out, &mut w.events);
                tracker.server_message(tag, body);
                if let Some(xact) = timing.server_message(tag, body, replaying) {
                    db_stats.xact_done(xact);
                }
                if matches!(tag, b'G' | b'Z') {
                    timing.settle(tag, tracker.owed(), replaying);
                }
                if tag == b'S'
                    && let Some((name, value)) = body.and_then(parse::parameter_status)
                    && params.observe_reported(name, value)
                {
                    super::params::upsert(applied, name, value);
                    // Something changed a setting: learn exactly what before release.
                    ask.settings = true;
                }
                if movable
                    && tag == b'E'
                    && let Some(f) = body.and_then(parse::error_fields)
                    && f.code == Some(crate::protocol::sqlstate::READ_ONLY_SQL_TRANSACTION.code())
                {
                    moving = Some(Move::Refused);
                    head = Some(Verdict::Swallow);
                    return Flow::StopBefore;
                }
                if replaying && !matches!(tag, b'N' | b'A' | b'S') {
                    // The failed batch's own replies (its error and ReadyForQuery, both read
                    // whole): the client sees the retry's instead.
                    w.client_out.clear();
                    head = Some(Verdict::Swallow);
                    return Flow::StopBefore;
                }
                if verdict == Verdict::Forward && w.client_out.is_empty() {
                    Flow::Continue
                } else {
                    head = Some(verdict);
                    Flow::StopBefore
                }
            },
        );
        let n = match scanned {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "server sent a malformed message");
                return Err(self.lose_server());
            }
        };
        if let Some(m) = moving {
            // What the replica answered so far never reaches the client: the batch runs
            // again elsewhere and answers in full there.
            if let Some(conn) = self.server.as_mut() {
                conn.read_buf.advance(n);
            }
            self.wire.client_out.clear();
            self.to_client = 0;
            match m {
                Move::Refused => {
                    if let Retry::Complete(batch) = std::mem::take(&mut self.wire.retry) {
                        tracing::debug!(
                            "a replica refused a read as a write; running it on the primary"
                        );
                        self.wire.retry = Retry::Moving(batch);
                    }
                    self.wire.head = head;
                    // The dropped replies' effects on this server's prepared set still hold.
                    self.handle_events();
                }
                Move::Died => {
                    // The scan checked the same conditions; should they ever disagree, the
                    // server is dropped rather than scanned again (which would spin).
                    if !self.reroute_lost() {
                        return Err(self.lose_server());
                    }
                }
            }
            return Ok(true);
        }
        if dying {
            // Everything before the FATAL goes to the client; the scan stops at it each time,
            // so once that is written the server is released, as one that must be closed.
            self.wire.suspect = true;
        }
        self.to_client = n;
        self.wire.head = head;
        self.handle_events();
        Ok(n > 0 || self.wire.head.is_some() || !self.wire.client_out.is_empty())
    }

    /// Acts on the verdict for the message at the head of the server buffer, everything before
    /// it having been written.
    fn apply_head(&mut self, verdict: Verdict) {
        let Some(conn) = self.server.as_mut() else {
            return;
        };
        // The scan stopped before this message with its header in hand.
        let Ok(Some(h)) = peek_header(&conn.read_buf, SERVER_MAX_MESSAGE) else {
            return;
        };
        let len = h.total_len;
        match verdict {
            Verdict::Forward => {
                // Forwarded in the chunks it arrives in, like any other.
                let have = conn.read_buf.len().min(len);
                self.to_client = have;
                self.sscan.resume_inside(len, have);
            }
            Verdict::Swallow => {
                conn.read_buf.advance(len);
                if self.wire.replies.is_empty() {
                    match std::mem::take(&mut self.wire.retry) {
                        Retry::Replaying(batch) => self.resend(batch),
                        Retry::Moving(batch) => {
                            self.move_batch(batch, Redirect::Primary, true);
                        }
                        other => self.wire.retry = other,
                    }
                }
            }
            Verdict::Replace(bytes) => {
                conn.read_buf.advance(len);
                self.wire.client_out.unsplit(bytes);
            }
            Verdict::Rename(id) => {
                let body = &conn.read_buf[HEADER_LEN..len];
                let out = match self.statements.name_of(id) {
                    Some(client) => replies::rename_error(body, server_name(id).as_bytes(), client),
                    None => BytesMut::from(&conn.read_buf[..len]),
                };
                conn.read_buf.advance(len);
                self.wire.client_out.unsplit(out);
            }
        }
    }

    /// Puts a failed batch back in front of the client's unsent bytes, as if just read, so it
    /// is planned again: the stale statement, now with a new id, gets prepared first.
    fn resend(&mut self, batch: BytesMut) {
        let tracker = &mut self.tracker;
        let statements = &mut self.statements;
        let _ = walk_messages(&batch, 0, usize::MAX, |tag, body| {
            tracker.client_message(tag);
            // A named Parse of the batch registered the client's name when first planned: it
            // is planned afresh, as new (else it meets that name and the server's `42P05`).
            if tag == b'P'
                && let Some((name, _)) = parse::cstr(body)
                && !name.is_empty()
            {
                statements.remove(name);
            }
            true
        });
        let len = batch.len();
        let rest = self.cbuf.split();
        self.cbuf = batch;
        self.cbuf.unsplit(rest);
        self.scanned += len;
        self.wire.retry = Retry::Retried;
        self.timing.retrying();
    }

    /// The replica serving a read died (FATAL, or the socket failed) before any of its reply
    /// reached the client: the read runs again on another member. False when that is not
    /// possible (not a routed read, already answered in part, not kept whole).
    /// A pinned client's session state died with the server: it is not moved (it gets
    /// `08006`, as any client whose server is lost mid-session).
    pub(super) fn reroute_lost(&mut self) -> bool {
        let Some(i) = self.route.as_ref().and_then(|r| r.on_replica()) else {
            return false;
        };
        // `owed`: the batch's ReadyForQuery has not come yet (a read answered in full is not
        // run twice because its server went away afterwards).
        if self.wire.replied
            || self.pinned.is_some()
            || self.tracker.owed() == 0
            || !matches!(self.wire.retry, Retry::Complete(_))
        {
            return false;
        }
        let Retry::Complete(batch) = std::mem::take(&mut self.wire.retry) else {
            return false;
        };
        tracing::info!(
            member = i + 1,
            "a replica died under a read; running it elsewhere"
        );
        self.move_batch(batch, Redirect::Avoid(i), false);
        true
    }

    /// Sends a whole read batch to another member: the current server goes (back to its pool
    /// when it answered in full and is idle, closed otherwise), the batch is put back in front
    /// of the client's unsent bytes as if just read, and the next attach goes `to`.
    fn move_batch(&mut self, batch: BytesMut, to: Redirect, server_ok: bool) {
        if let Some(conn) = self.server.take() {
            if server_ok && !self.wire.suspect && self.wire.replies.is_empty() {
                conn.release();
            } else {
                conn.discard();
            }
        }
        self.slot.set(None);
        if !server_ok {
            // Its ReadyForQuery never came: what the tracker counted for the batch is settled
            // here, and the re-sent batch is counted afresh.
            let tracker = &mut self.tracker;
            let _ = walk_messages(&batch, 0, usize::MAX, |tag, _| {
                if matches!(tag, b'S' | b'Q') {
                    tracker.server_message(b'Z', Some(b"I"));
                }
                true
            });
            // Bytes of the batch not yet written are in `batch` too.
            self.cbuf.advance(self.wire.raw);
            self.scanned -= self.wire.raw;
            self.wire.raw = 0;
            self.wire.sout.clear();
            self.wire.replies = Default::default();
            self.wire.events.clear();
            self.sscan = Default::default();
        }
        self.wire.suspect = false;
        self.wire.head = None;
        self.wire.client_out.clear();
        self.to_client = 0;
        if let Some(r) = self.route.as_mut() {
            r.detached();
            r.redirect(to);
        }
        self.resend(batch);
    }

    /// Keeps the client's names and the server's prepared set true to what the server did.
    fn handle_events(&mut self) {
        if self.wire.events.is_empty() {
            return;
        }
        let Some(conn) = self.server.as_mut() else {
            return;
        };
        for event in self.wire.events.drain(..) {
            match event {
                Event::ParseFailed { id, client } => {
                    if let Some(id) = id {
                        conn.statements.remove(id);
                        if let Some(name) = client {
                            self.statements.remove_if(&name, id);
                        }
                    }
                }
                Event::Unknown => self.wire.suspect = true,
                Event::Parsed { id } => {
                    if let Some(stmt) = conn.statements.get(id) {
                        stmt.mark_validated();
                    }
                }
                Event::StalePlan { id } => {
                    // The statement's result type changed: every server's plan for it is
                    // stale. A new id makes each prepare it afresh on next use.
                    conn.statements.remove(id);
                    if let Some(stmt) = self.statements.by_id(id) {
                        self.shared.statements.invalidate(&stmt, id);
                    }
                    let untouched = self.to_client == 0
                        && self.wire.client_out.is_empty()
                        && !self.wire.replied;
                    if untouched
                        && self.wire.head.is_some()
                        && let Retry::Complete(batch) = std::mem::take(&mut self.wire.retry)
                        && describes(&batch)
                    {
                        tracing::debug!("statement plan went stale; preparing it again");
                        self.wire.retry = Retry::Replaying(batch);
                        self.wire.head = Some(Verdict::Swallow);
                    }
                }
            }
        }
    }
}

impl Retry {
    /// A failed batch is waiting for its replies to end, to be sent again.
    fn resending(&self) -> bool {
        matches!(self, Retry::Replaying(_) | Retry::Moving(_))
    }

    /// Appends planned client bytes to a recording; `ends` when they end with the batch's Sync.
    fn record(&mut self, bytes: &[u8], ends: bool) {
        let Retry::Recording(buf) = self else {
            if matches!(self, Retry::Complete(_)) {
                *self = Retry::Off;
            }
            return;
        };
        if buf.len() + bytes.len() > RETRY_MAX {
            *self = Retry::Off;
            return;
        }
        buf.extend_from_slice(bytes);
        if ends {
            *self = Retry::Complete(std::mem::take(buf));
        }
    }
}

/// The names, when a Query is a lone `DEALLOCATE` of this client's protocol-level statements
/// (not SQL-level ones: those are the server's own).
fn local_deallocate(
    statements: &crate::prepared::ClientStatements,
    sql_prepared: &[(String, String)],
    text: &[u8],
    e: &crate::sql::Effects,
) -> Option<Vec<Vec<u8>>> {
    if e.flags != Flags::DEALLOCATE || e.deallocate_all || e.deallocated.is_empty() {
        return None;
    }
    // One statement only: anything after it would run without its own reply otherwise.
    let trimmed = text.trim_ascii();
    let trimmed = trimmed.strip_suffix(b";").unwrap_or(trimmed);
    if trimmed.contains(&b';') {
        return None;
    }
    let all_ours = e.deallocated.iter().all(|n| {
        statements.get(n).is_some()
            && !sql_prepared
                .iter()
                .any(|(s, _)| s.as_bytes() == n.as_slice())
    });
    all_ours.then(|| e.deallocated.clone())
}

/// The SQL text of a Query or Parse body.
fn query_text(tag: u8, body: &[u8]) -> Option<&[u8]> {
    let text = match tag {
        b'Q' => body,
        b'P' => parse::cstr(body)?.1,
        _ => return None,
    };
    Some(parse::cstr(text)?.0)
}

/// Why the proxy refuses a statement with these effects, if it does: a session-only feature
/// when `session_features = "error"` (`features_refused`), or a statement name in the
/// proxy's own namespace (a client could otherwise drop or take over other clients'
/// statements on a shared server).
fn refusal_reason(e: &crate::sql::Effects, features_refused: bool) -> Option<String> {
    if features_refused && let Some(feature) = e.session_feature() {
        return Some(format!(
            "{feature} cannot be used through Lagoon in transaction pooling mode: the state would \
             stay on a server connection other clients share (pool.session_features = \"error\")"
        ));
    }
    let reserved = |n: &[u8]| n.starts_with(crate::prepared::registry::NAME_PREFIX.as_bytes());
    if e.prepares.iter().any(|p| reserved(&p.name))
        || e.deallocated.iter().any(|n| reserved(n))
        || e.executed.iter().any(|n| reserved(n))
    {
        return Some(format!(
            "prepared statement names beginning with \"{}\" are reserved by Lagoon",
            crate::prepared::registry::NAME_PREFIX
        ));
    }
    None
}

/// A statement that raises `0A000` with `message`: the server raises it, so the error has all
/// of Postgres's own effects (it aborts an open transaction, and an extended batch skips to
/// Sync).
fn refusal_sql(message: &str) -> Option<Vec<u8>> {
    let hint = "Set pool.session_features = \"pin\" to keep such a client on its server \
                connection while the state exists, or use session pooling for it.";
    Some(
        format!(
            "DO $lagoon$BEGIN RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = {}, HINT = {}; END$lagoon$",
            super::params::literal(message),
            super::params::literal(hint)
        )
        .into_bytes(),
    )
}

/// The Query or Parse body with its SQL replaced by `sql`.
fn with_sql(tag: u8, body: &[u8], sql: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() + sql.len());
    match tag {
        b'Q' => {}
        b'P' => {
            let (name, _) = parse::cstr(body)?;
            out.extend_from_slice(name);
            out.push(0);
        }
        _ => return None,
    }
    out.extend_from_slice(sql);
    out.push(0);
    if tag == b'P' {
        // Keep the declared parameter types: the client's Bind still matches.
        let (_, rest) = parse::cstr(body)?;
        let (_, types) = parse::cstr(rest)?;
        out.extend_from_slice(types);
    }
    Some(out)
}

/// The batch asks for a description (of its statement or portal), so the client learns the
/// new row shape from the retry's own reply.
fn describes(batch: &[u8]) -> bool {
    let mut found = false;
    let _ = walk_messages(batch, 0, usize::MAX, |tag, _| {
        found |= tag == b'D';
        !found
    });
    found
}
