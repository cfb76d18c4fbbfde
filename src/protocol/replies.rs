//! The replies a server owes, in order, so the proxy can add, drop or replace some of them.
//!
//! When the proxy rewrites a client's extended-protocol traffic (see `prepared`), the server's
//! reply stream no longer matches what the client sent: a Parse the proxy injected answers with
//! a ParseComplete the client never asked for; a Parse or Close the proxy answered itself gets
//! no server reply at all, yet the client expects one exactly where the server would have sent
//! it. [`ReplyQueue`] holds one [`Expect`] per message sent (or answered locally), in order, and
//! walks the server's messages against it: each reply message is forwarded, swallowed or
//! replaced, and the proxy's own replies are emitted when everything before them has been.
//!
//! It follows the server's rules: an ErrorResponse to an extended-protocol message makes the
//! server skip everything up to the next Sync, so the entries in between get no reply (and the
//! proxy's synthetic replies among them are dropped, as the server would have dropped the
//! message); errors inside a simple Query or FunctionCall do not skip. Sans-IO.

use std::collections::VecDeque;

use bytes::{BufMut, BytesMut};

use super::messages::{encode, parse};

/// A reply the proxy makes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synthetic {
    ParseComplete,
    CloseComplete,
}

/// The statement a message names, for errors that mention it: the server says
/// `lagoon_<id>` where the client said its own name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Names {
    #[default]
    Unnamed,
    /// A registry statement, by id.
    Id(u64),
    /// A client name that stands for nothing: the proxy sent [`MISSING_NAME`] so the server
    /// raises its own "does not exist" error (with its transaction and skip-to-Sync effects),
    /// and the client's name is put back into the message.
    Missing(Box<[u8]>),
}

/// A statement name no server ever has.
pub const MISSING_NAME: &str = "lagoon_missing";

/// What one message sent to the server (or answered by the proxy) will get back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Parse {
        /// Injected by the proxy: the ParseComplete is not the client's.
        swallow: bool,
        /// Registry id this Parse prepares on the server: forgotten if it fails or is skipped.
        prepares: Option<u64>,
        /// The client's statement name, forgotten if the client's own Parse fails.
        client: Option<Box<[u8]>>,
        names: Names,
    },
    Bind {
        names: Names,
    },
    DescribeStatement {
        names: Names,
    },
    DescribePortal,
    Execute,
    Close {
        swallow: bool,
    },
    Sync,
    Query,
    /// A Query the proxy replaced with an empty one (it did the work itself): the server's
    /// EmptyQueryResponse becomes CommandComplete with this tag.
    QueryDoneAs(&'static str),
    FunctionCall,
    /// The client's CopyDone or CopyFail: no reply of its own, but it ends the window in which
    /// the server ignores Syncs (see [`ReplyQueue::server_message`] on CopyInResponse).
    CopyEnd,
    Synthetic(Synthetic),
}

impl Expect {
    fn is_sync_like(&self) -> bool {
        matches!(
            self,
            Expect::Sync | Expect::Query | Expect::QueryDoneAs(_) | Expect::FunctionCall
        )
    }
}

/// What to do with one server message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Forward,
    Swallow,
    /// Send these bytes instead.
    Replace(BytesMut),
    /// An error about registry statement `id`: show the client its own name for it (see
    /// [`rename_error`]).
    Rename(u64),
}

/// Things the session must act on, reported while walking replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A Parse preparing registry statement `id` failed or was skipped: the server lacks it.
    /// `client` is the client's name for it when the Parse was the client's own.
    ParseFailed {
        id: Option<u64>,
        client: Option<Box<[u8]>>,
    },
    /// Binding statement `id` failed with `0A000 cached plan must not change result type`.
    StalePlan { id: u64 },
    /// A Parse preparing registry statement `id` succeeded.
    Parsed { id: u64 },
    /// A Close the proxy sent to evict a statement was skipped: the server still has a
    /// statement the proxy believes gone.
    Unknown,
}

const STALE_PLAN_CODE: &str = "0A000";

#[derive(Debug, Default)]
pub struct ReplyQueue {
    q: VecDeque<Expect>,
}

impl ReplyQueue {
    pub fn push(&mut self, e: Expect) {
        self.q.push_back(e);
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// Replies still owed include a Parse whose outcome decides what a server holds: if the
    /// conversation is cut now, that server's prepared set is unknown.
    pub fn uncertain(&self) -> bool {
        self.q.iter().any(|e| {
            matches!(
                e,
                Expect::Parse {
                    prepares: Some(_),
                    ..
                } | Expect::Close { swallow: true }
            )
        })
    }

    /// Emits the proxy's own replies that are now due (everything before them was answered).
    pub fn take_ready(&mut self, out: &mut BytesMut) {
        while let Some(front) = self.q.front() {
            match front {
                Expect::Synthetic(s) => {
                    encode_synthetic(out, *s);
                    self.q.pop_front();
                }
                Expect::CopyEnd => {
                    self.q.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Judges one server message. Synthetic replies due before it are appended to `before`;
    /// events for the session are appended to `events`.
    pub fn server_message(
        &mut self,
        tag: u8,
        body: Option<&[u8]>,
        before: &mut BytesMut,
        events: &mut Vec<Event>,
    ) -> Verdict {
        // Messages that may come at any time and answer nothing.
        if matches!(tag, b'N' | b'A' | b'S') {
            return Verdict::Forward;
        }
        self.take_ready(before);
        let Some(front) = self.q.front() else {
            // Nothing owed (a FATAL before exit, or a reply to traffic we do not track).
            return Verdict::Forward;
        };
        match tag {
            b'E' => self.error(body, events),
            b'Z' => {
                // Pop through anything left before the Sync-like entry this answers: a server
                // that answers out of the expected order has skipped those messages.
                while let Some(e) = self.q.pop_front() {
                    if e.is_sync_like() {
                        break;
                    }
                    report_skipped(&e, events);
                }
                Verdict::Forward
            }
            b'1' => match front {
                Expect::Parse {
                    swallow, prepares, ..
                } => {
                    let swallow = *swallow;
                    if let Some(id) = prepares {
                        events.push(Event::Parsed { id: *id });
                    }
                    self.q.pop_front();
                    swallowed_if(swallow)
                }
                _ => Verdict::Forward,
            },
            b'3' => match front {
                Expect::Close { swallow } => {
                    let swallow = *swallow;
                    self.q.pop_front();
                    swallowed_if(swallow)
                }
                _ => Verdict::Forward,
            },
            b'2' => {
                if matches!(front, Expect::Bind { .. }) {
                    self.q.pop_front();
                }
                Verdict::Forward
            }
            b'T' | b'n' => {
                if matches!(
                    front,
                    Expect::DescribeStatement { .. } | Expect::DescribePortal
                ) {
                    self.q.pop_front();
                }
                Verdict::Forward
            }
            b'I' if matches!(front, Expect::QueryDoneAs(_)) => {
                let Expect::QueryDoneAs(tag) = front else {
                    return Verdict::Forward;
                };
                let mut out = BytesMut::new();
                encode::command_complete(&mut out, tag);
                Verdict::Replace(out)
            }
            b'C' | b'I' | b's' => {
                if matches!(front, Expect::Execute) {
                    self.q.pop_front();
                }
                Verdict::Forward
            }
            b'G' => {
                // COPY FROM STDIN: the server ignores Syncs until the copy ends, so the ones
                // the client sent after this Execute (and before its CopyDone/CopyFail) will
                // never be answered.
                if matches!(front, Expect::Execute) {
                    let mut i = 1;
                    while i < self.q.len() {
                        match self.q[i] {
                            Expect::CopyEnd => break,
                            Expect::Sync => {
                                self.q.remove(i);
                            }
                            _ => i += 1,
                        }
                    }
                }
                Verdict::Forward
            }
            _ => Verdict::Forward,
        }
    }

    fn error(&mut self, body: Option<&[u8]>, events: &mut Vec<Event>) -> Verdict {
        let Some(front) = self.q.pop_front() else {
            return Verdict::Forward;
        };
        if front.is_sync_like() {
            // Errors in a simple Query, a FunctionCall or at Sync end at their ReadyForQuery.
            self.q.push_front(front);
            return Verdict::Forward;
        }
        let fields = body.and_then(parse::error_fields);
        let verdict = match &front {
            Expect::Parse { names, .. }
            | Expect::Bind { names }
            | Expect::DescribeStatement { names } => match (names, body) {
                (Names::Missing(client), Some(b)) => {
                    Verdict::Replace(rename_error(b, MISSING_NAME.as_bytes(), client))
                }
                (Names::Id(id), Some(_)) => Verdict::Rename(*id),
                _ => Verdict::Forward,
            },
            _ => Verdict::Forward,
        };
        if let Expect::Bind {
            names: Names::Id(id),
        } = front
            && fields.as_ref().and_then(|f| f.code) == Some(STALE_PLAN_CODE)
            && fields
                .as_ref()
                .and_then(|f| f.message)
                .is_some_and(|m| m.contains("must not change result type"))
        {
            events.push(Event::StalePlan { id });
        }
        report_skipped(&front, events);
        // The server now skips to the next Sync: nothing before it gets a reply.
        while let Some(e) = self.q.front() {
            if matches!(e, Expect::Sync) {
                break;
            }
            if let Some(e) = self.q.pop_front() {
                report_skipped(&e, events);
            }
        }
        verdict
    }
}

/// The reply to a message the proxy sent on its own account is not the client's.
fn swallowed_if(swallow: bool) -> Verdict {
    if swallow {
        Verdict::Swallow
    } else {
        Verdict::Forward
    }
}

/// A Parse that got no ParseComplete left the server (and maybe the client) without it; an
/// eviction Close that got no CloseComplete left the server with a statement.
fn report_skipped(e: &Expect, events: &mut Vec<Event>) {
    if let Expect::Close { swallow: true } = e {
        events.push(Event::Unknown);
    }
    if let Expect::Parse {
        prepares, client, ..
    } = e
        && (prepares.is_some() || client.is_some())
    {
        events.push(Event::ParseFailed {
            id: *prepares,
            client: client.clone(),
        });
    }
}

fn encode_synthetic(out: &mut BytesMut, s: Synthetic) {
    match s {
        Synthetic::ParseComplete => encode::parse_complete(out),
        Synthetic::CloseComplete => encode::close_complete(out),
    }
}

/// The ErrorResponse `body` with the statement name `server` replaced by the client's name in
/// every text field, re-framed. Names are quoted in Postgres's messages, so the quotes are
/// matched too: `lagoon_1` never matches inside `lagoon_12`.
pub fn rename_error(body: &[u8], server: &[u8], client: &[u8]) -> BytesMut {
    let mut from = Vec::with_capacity(server.len() + 2);
    from.push(b'"');
    from.extend_from_slice(server);
    from.push(b'"');
    let mut to = Vec::with_capacity(client.len() + 2);
    to.push(b'"');
    to.extend_from_slice(client);
    to.push(b'"');
    let mut out = BytesMut::with_capacity(body.len() + 32);
    encode::message(&mut out, b'E', |out| {
        let mut rest = body;
        while let Some((&code, tail)) = rest.split_first() {
            if code == 0 {
                break;
            }
            let Some((value, tail)) = parse::cstr(tail) else {
                break;
            };
            out.put_u8(code);
            replace_all(out, value, &from, &to);
            out.put_u8(0);
            rest = tail;
        }
        out.put_u8(0);
    });
    out
}

fn replace_all(out: &mut BytesMut, hay: &[u8], from: &[u8], to: &[u8]) {
    let mut i = 0;
    while i < hay.len() {
        if !from.is_empty() && hay[i..].starts_with(from) {
            out.put_slice(to);
            i += from.len();
        } else {
            out.put_u8(hay[i]);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests;
