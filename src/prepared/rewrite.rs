//! Rewrites a client's Parse / Bind / Describe / Close of a *named* statement for the server
//! it is about to reach, and records in the [`ReplyQueue`] what each message sent (or answered
//! here) will get back. Everything else is forwarded untouched; [`pass_through`] says what it
//! owes. Sans-IO: appends to a buffer.
//!
//! - Parse: the statement is registered; if this server has it the Parse is answered here
//!   (ParseComplete), else it is sent under the proxy name. Parsing a name the client already
//!   has is sent on (under that statement's proxy name, prepared first if need be), so the
//!   server raises its own `42P05` with all its effects, and the client's name is put back
//!   into the message.
//! - Bind / Describe: the name is rewritten, after a Parse the client never sees if this server
//!   lacks the statement. An unknown name is sent as [`MISSING_NAME`] for the server's own
//!   `26000`.
//! - Close: answered here; the statement stays on servers for other clients and for the LRU.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::{ClientStatements, Registry, ServerStatements, Statement};
use crate::protocol::messages::encode;
use crate::protocol::messages::parse::cstr;
use crate::protocol::replies::{Expect, MISSING_NAME, Names, ReplyQueue, Synthetic};

/// What rewriting needs: the client's names, the server's statements, the queue of replies.
pub struct Ctx<'a> {
    pub registry: &'a Registry,
    /// The pool's scope in the registry.
    pub scope: &'a [u8],
    pub client: &'a mut ClientStatements,
    pub server: &'a mut ServerStatements,
    pub cap: usize,
    pub replies: &'a mut ReplyQueue,
}

/// True for a message [`rewrite`] must handle: one that names a statement. `body` is the
/// whole body (these message types are always buffered whole).
pub fn is_named(tag: u8, body: &[u8]) -> bool {
    match tag {
        b'P' => body.first().is_some_and(|&b| b != 0),
        b'B' => cstr(body)
            .and_then(|(_, rest)| rest.first())
            .is_some_and(|&b| b != 0),
        b'D' | b'C' => body.first() == Some(&b'S') && body.get(1).is_some_and(|&b| b != 0),
        _ => false,
    }
}

/// The reply entry for a message forwarded as is (`body` when buffered; Describe needs it).
/// Also starts a new batch on the server's statement set at Sync and Query.
pub fn pass_through(tag: u8, body: Option<&[u8]>) -> Option<Expect> {
    Some(match tag {
        b'P' => Expect::Parse {
            swallow: false,
            prepares: None,
            client: None,
            names: Names::Unnamed,
        },
        b'B' => Expect::Bind {
            names: Names::Unnamed,
        },
        b'D' => match body.and_then(|b| b.first()) {
            Some(b'S') => Expect::DescribeStatement {
                names: Names::Unnamed,
            },
            _ => Expect::DescribePortal,
        },
        b'E' => Expect::Execute,
        b'C' => Expect::Close { swallow: false },
        b'S' => Expect::Sync,
        b'Q' => Expect::Query,
        // (A Query answered by the proxy uses `Expect::QueryDoneAs`, pushed by its caller.)
        b'F' => Expect::FunctionCall,
        b'c' | b'f' => Expect::CopyEnd,
        _ => return None,
    })
}

/// Rewrites one named-statement message (see [`is_named`]) into `out`. A body too malformed
/// to read is forwarded as is, for the server to reject. Returns the statement a Bind runs, so
/// the caller can note what running it does.
pub fn rewrite(
    ctx: &mut Ctx<'_>,
    tag: u8,
    body: &[u8],
    out: &mut BytesMut,
) -> Option<Arc<Statement>> {
    let done = match tag {
        b'P' => parse(ctx, body, out).map(|()| None),
        b'B' => bind(ctx, body, out),
        b'D' => describe(ctx, body, out).map(|()| None),
        b'C' => close(ctx, body).map(|()| None),
        _ => None,
    };
    match done {
        Some(bound) => bound,
        None => {
            encode::message(out, tag, |o| o.put_slice(body));
            if let Some(e) = pass_through(tag, Some(body)) {
                ctx.replies.push(e);
            }
            None
        }
    }
}

fn parse(ctx: &mut Ctx<'_>, body: &[u8], out: &mut BytesMut) -> Option<()> {
    let (name, key) = cstr(body)?;
    if let Some(existing) = ctx.client.get(name).cloned() {
        let id = ensure(ctx, &existing, out);
        put_parse(out, id, key);
        ctx.replies.push(Expect::Parse {
            swallow: false,
            prepares: None,
            client: None,
            names: Names::Id(id),
        });
        return Some(());
    }
    let stmt = ctx.registry.register(ctx.scope, key);
    let id = stmt.id();
    ctx.client.insert(name, Arc::clone(&stmt));
    if ctx.server.touch(id) {
        ctx.replies
            .push(Expect::Synthetic(Synthetic::ParseComplete));
        return Some(());
    }
    evict_for(ctx, id, &stmt, out);
    put_parse(out, id, key);
    ctx.replies.push(Expect::Parse {
        swallow: false,
        prepares: Some(id),
        client: Some(name.into()),
        names: Names::Id(id),
    });
    Some(())
}

fn bind(ctx: &mut Ctx<'_>, body: &[u8], out: &mut BytesMut) -> Option<Option<Arc<Statement>>> {
    let (portal, rest) = cstr(body)?;
    let (name, tail) = cstr(rest)?;
    let bound = ctx.client.get(name).cloned();
    let names = match &bound {
        Some(stmt) => {
            let id = ensure(ctx, stmt, out);
            encode::message(out, b'B', |o| {
                put_cstr(o, portal);
                put_server_name(o, id);
                o.put_slice(tail);
            });
            Names::Id(id)
        }
        None => {
            encode::message(out, b'B', |o| {
                put_cstr(o, portal);
                put_cstr(o, MISSING_NAME.as_bytes());
                o.put_slice(tail);
            });
            Names::Missing(name.into())
        }
    };
    ctx.replies.push(Expect::Bind { names });
    Some(bound)
}

fn describe(ctx: &mut Ctx<'_>, body: &[u8], out: &mut BytesMut) -> Option<()> {
    let (name, _) = cstr(body.get(1..)?)?;
    let names = match ctx.client.get(name).cloned() {
        Some(stmt) => {
            let id = ensure(ctx, &stmt, out);
            encode::message(out, b'D', |o| {
                o.put_u8(b'S');
                put_server_name(o, id);
            });
            Names::Id(id)
        }
        None => {
            encode::message(out, b'D', |o| {
                o.put_u8(b'S');
                put_cstr(o, MISSING_NAME.as_bytes());
            });
            Names::Missing(name.into())
        }
    };
    ctx.replies.push(Expect::DescribeStatement { names });
    Some(())
}

fn close(ctx: &mut Ctx<'_>, body: &[u8]) -> Option<()> {
    let (name, _) = cstr(body.get(1..)?)?;
    // Closing a name that does not exist is not an error in Postgres either.
    ctx.client.remove(name);
    ctx.replies
        .push(Expect::Synthetic(Synthetic::CloseComplete));
    Some(())
}

/// Makes sure the server has `stmt` before the message that uses it: a Parse the client never
/// sees, after closing what the LRU evicts. Returns the id to name it by.
fn ensure(ctx: &mut Ctx<'_>, stmt: &Arc<Statement>, out: &mut BytesMut) -> u64 {
    let id = stmt.id();
    if ctx.server.touch(id) {
        return id;
    }
    evict_for(ctx, id, stmt, out);
    put_parse(out, id, &stmt.body);
    ctx.replies.push(Expect::Parse {
        swallow: true,
        prepares: Some(id),
        client: None,
        names: Names::Id(id),
    });
    id
}

fn evict_for(ctx: &mut Ctx<'_>, id: u64, stmt: &Arc<Statement>, out: &mut BytesMut) {
    if let Some(victim) = ctx.server.insert(id, stmt, ctx.cap) {
        encode::message(out, b'C', |o| {
            o.put_u8(b'S');
            put_server_name(o, victim);
        });
        ctx.replies.push(Expect::Close { swallow: true });
    }
}

fn put_parse(out: &mut BytesMut, id: u64, key: &[u8]) {
    encode::message(out, b'P', |o| {
        put_server_name(o, id);
        o.put_slice(key);
    });
}

fn put_server_name(out: &mut BytesMut, id: u64) {
    // Writing into a BytesMut cannot fail.
    let _ = write!(out, "{}{id}", super::registry::NAME_PREFIX);
    out.put_u8(0);
}

fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

#[cfg(test)]
mod tests;
