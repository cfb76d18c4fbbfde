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

use super::session::{Exit, Session};
use crate::prepared::registry::server_name;
use crate::prepared::rewrite::{self, Ctx};
use crate::protocol::codec::{HEADER_LEN, peek_header};
use crate::protocol::messages::parse;
use crate::protocol::replies::{self, Event, ReplyQueue, Verdict};
use crate::protocol::tracker::{Flow, StreamScanner, client_needs_body, server_needs_body};

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
}

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

    /// No message was left half-written to the server.
    pub fn sent_whole_messages(&self) -> bool {
        self.sout.is_empty() && self.wscan.at_boundary()
    }
}

impl Session<'_> {
    /// Writes to the server what it may have now: rewritten messages and raw runs, in order.
    pub(super) fn write_server(&mut self) -> Result<(), Exit> {
        loop {
            let Some(conn) = self.server.as_ref() else {
                return Ok(());
            };
            let (buf, from_client) = if !self.wire.sout.is_empty() {
                (&self.wire.sout[..], false)
            } else if self.wire.raw > 0 {
                (&self.cbuf[..self.wire.raw], true)
            } else if self.scanned > 0 {
                if !self.plan() {
                    break;
                }
                continue;
            } else {
                self.tracker.flushed();
                break;
            };
            let n = match conn.stream.try_write(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(_) => return Err(self.lose_server()),
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
        if rewrite_on
            && w.wscan.at_boundary()
            && let Ok(Some(h)) = peek_header(&self.cbuf[..self.scanned], self.max_message)
            && h.total_len <= self.scanned
            && rewrite::is_named(h.tag, &self.cbuf[HEADER_LEN..h.total_len])
        {
            let mut ctx = Ctx {
                registry: &self.shared.statements,
                client: &mut self.statements,
                server: &mut conn.statements,
                cap: self.max_prepared,
                replies: &mut w.replies,
            };
            rewrite::rewrite(
                &mut ctx,
                h.tag,
                &self.cbuf[HEADER_LEN..h.total_len],
                &mut w.sout,
            );
            self.cbuf.advance(h.total_len);
            self.scanned -= h.total_len;
            return true;
        }
        let replies = &mut w.replies;
        let server_set = &mut conn.statements;
        let scanned = w.wscan.scan(
            &self.cbuf[w.raw..self.scanned],
            self.max_message,
            client_needs_body,
            |tag, body| {
                if rewrite_on && body.is_some_and(|b| rewrite::is_named(tag, b)) {
                    return Flow::StopBefore;
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
                w.raw += n;
                true
            }
            // The read-time scan already validated these bytes; nothing to plan is a bug, and
            // stopping here (the client waits) beats spinning.
            _ => false,
        }
    }

    /// Passes server bytes (and the proxy's own replies) to the client as far as its socket
    /// takes them now; releases the server once the reply is complete.
    pub(super) fn pump_client(&mut self) -> Result<(), Exit> {
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
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(_) => return Err(Exit::ClientGone),
            };
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
        let params = &mut self.params;
        let applied = &mut conn.applied;
        let w = &mut self.wire;
        let mut head = None;
        let scanned = self.sscan.scan(
            &conn.read_buf,
            SERVER_MAX_MESSAGE,
            server_needs_body,
            |tag, body| {
                let verdict = w
                    .replies
                    .server_message(tag, body, &mut w.client_out, &mut w.events);
                tracker.server_message(tag, body);
                if tag == b'S'
                    && let Some((name, value)) = body.and_then(parse::parameter_status)
                    && params.observe_reported(name, value)
                {
                    super::params::upsert(applied, name, value);
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
            Verdict::Swallow => conn.read_buf.advance(len),
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
                Event::StalePlan { id } => {
                    // The statement's result type changed: every server's plan for it is
                    // stale. A new id makes each prepare it afresh on next use.
                    conn.statements.remove(id);
                    if let Some(stmt) = self.statements.by_id(id) {
                        self.shared.statements.invalidate(&stmt, id);
                    }
                }
            }
        }
    }
}
