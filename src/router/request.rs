//! What a whole buffered request does: the classification of each SQL text in it, folded.
//!
//! A request is what the session buffers before it checks out a server: one or more Query
//! messages, or extended-protocol messages up to Sync (pipelined requests included). It reads
//! only if every statement in it reads; one write, one message the proxy cannot see through
//! (FunctionCall, a Bind of an unnamed statement parsed in an earlier request, a message cut
//! short) makes it a write. Sans-IO: the SQL verdicts come from the caller.

use super::{Class, Hint, Verdict};
use crate::protocol::codec::walk_messages;
use crate::protocol::messages::parse::cstr;

/// The verdict of nothing at all (a lone Sync): it may run anywhere.
const NOTHING: Verdict = Verdict {
    class: Class::Read,
    hint: None,
};

const WRITE: Verdict = Verdict {
    class: Class::Write,
    hint: None,
};

/// Folds the verdicts of the SQL in `buf` (whole client messages). `sql(text)` classifies one
/// Query or Parse text; `statement(name)` does the same for the text of the client's named
/// prepared statement `name` (None when the client has no such statement).
pub fn classify_request(
    buf: &[u8],
    mut sql: impl FnMut(&[u8]) -> Verdict,
    mut statement: impl FnMut(&[u8]) -> Option<Verdict>,
) -> Verdict {
    let mut acc = NOTHING;
    let mut unnamed_parsed = false;
    // Names this request parses itself (drivers send Parse + Bind of a new statement in one
    // batch): their Bind adds nothing to what the Parse's text said.
    let mut parsed: Vec<&[u8]> = Vec::new();
    let walked = walk_messages(buf, 0, usize::MAX, |tag, body| {
        let v = match tag {
            b'Q' => cstr(body).map_or(WRITE, |(text, _)| sql(text)),
            b'P' => match cstr(body).and_then(|(name, rest)| Some((name, cstr(rest)?.0))) {
                Some((name, text)) => {
                    if name.is_empty() {
                        unnamed_parsed = true;
                    } else {
                        parsed.push(name);
                    }
                    sql(text)
                }
                None => WRITE,
            },
            b'B' => match cstr(body).and_then(|(_, rest)| cstr(rest)) {
                Some((name, _)) if name.is_empty() && unnamed_parsed => NOTHING,
                Some((name, _)) if parsed.contains(&name) => NOTHING,
                Some((name, _)) if !name.is_empty() => statement(name).unwrap_or(WRITE),
                _ => WRITE,
            },
            b'D' | b'E' | b'S' | b'H' | b'C' => NOTHING,
            _ => WRITE,
        };
        acc = fold(acc, v);
        true
    });
    match walked {
        Ok(end) if end == buf.len() => acc,
        // A message cut short or malformed: not seen through.
        _ => fold(acc, WRITE),
    }
}

/// Two verdicts of one request together: a write anywhere makes it a write; a transaction
/// start with reads stays a transaction start; a primary hint beats a replica hint.
fn fold(a: Verdict, b: Verdict) -> Verdict {
    let class = match (a.class, b.class) {
        (Class::Write, _) | (_, Class::Write) => Class::Write,
        (Class::Begin, _) | (_, Class::Begin) => Class::Begin,
        _ => Class::Read,
    };
    let hint = match (a.hint, b.hint) {
        (Some(Hint::Primary), _) | (_, Some(Hint::Primary)) => Some(Hint::Primary),
        (Some(Hint::Replica), _) | (_, Some(Hint::Replica)) => Some(Hint::Replica),
        _ => None,
    };
    Verdict { class, hint }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::encode;
    use bytes::BytesMut;

    fn by_text(text: &[u8]) -> Verdict {
        let class = if text.starts_with(b"SELECT") {
            Class::Read
        } else if text == b"BEGIN" {
            Class::Begin
        } else {
            Class::Write
        };
        let hint = text.ends_with(b"/*p*/").then_some(Hint::Primary);
        Verdict { class, hint }
    }

    fn msg(out: &mut BytesMut, tag: u8, parts: &[&[u8]]) {
        encode::message(out, tag, |o| {
            for p in parts {
                o.extend_from_slice(p);
            }
        });
    }

    fn classify(buf: &[u8]) -> Verdict {
        classify_request(buf, by_text, |name| {
            (name == b"ro").then_some(Verdict {
                class: Class::Read,
                hint: None,
            })
        })
    }

    #[test]
    fn queries_fold_to_the_strongest() {
        let mut b = BytesMut::new();
        msg(&mut b, b'Q', &[b"SELECT 1\0"]);
        assert_eq!(classify(&b).class, Class::Read);
        msg(&mut b, b'Q', &[b"BEGIN\0"]);
        assert_eq!(classify(&b).class, Class::Begin);
        msg(&mut b, b'Q', &[b"SELECT 2 /*p*/\0"]);
        assert_eq!(
            classify(&b),
            Verdict {
                class: Class::Begin,
                hint: Some(Hint::Primary)
            }
        );
        msg(&mut b, b'Q', &[b"INSERT\0"]);
        assert_eq!(classify(&b).class, Class::Write);
    }

    #[test]
    fn extended_batches_classify_their_parse_or_named_statement() {
        let mut b = BytesMut::new();
        msg(&mut b, b'P', &[b"\0SELECT $1\0\0\0"]);
        msg(&mut b, b'B', &[b"\0\0\0\0\0\0\0\0"]);
        msg(&mut b, b'D', &[b"P\0"]);
        msg(&mut b, b'E', &[b"\0\0\0\0\0"]);
        msg(&mut b, b'S', &[]);
        assert_eq!(classify(&b).class, Class::Read);

        let mut named = BytesMut::new();
        msg(&mut named, b'B', &[b"\0ro\0\0\0\0\0\0\0"]);
        msg(&mut named, b'E', &[b"\0\0\0\0\0"]);
        msg(&mut named, b'S', &[]);
        assert_eq!(classify(&named).class, Class::Read);

        let mut fresh = BytesMut::new();
        msg(&mut fresh, b'P', &[b"new\0SELECT 1\0\0\0"]);
        msg(&mut fresh, b'B', &[b"\0new\0\0\0\0\0\0\0"]);
        msg(&mut fresh, b'E', &[b"\0\0\0\0\0"]);
        msg(&mut fresh, b'S', &[]);
        assert_eq!(
            classify(&fresh).class,
            Class::Read,
            "parsed and bound together"
        );

        let mut unknown = BytesMut::new();
        msg(&mut unknown, b'B', &[b"\0other\0\0\0\0\0\0\0"]);
        msg(&mut unknown, b'S', &[]);
        assert_eq!(classify(&unknown).class, Class::Write, "unknown statement");

        let mut earlier = BytesMut::new();
        msg(&mut earlier, b'B', &[b"\0\0\0\0\0\0\0\0"]);
        msg(&mut earlier, b'S', &[]);
        assert_eq!(
            classify(&earlier).class,
            Class::Write,
            "unnamed, parsed before"
        );
    }

    #[test]
    fn opaque_or_cut_messages_are_writes() {
        let mut b = BytesMut::new();
        msg(&mut b, b'F', &[b"\0\0\0\x01"]);
        assert_eq!(classify(&b).class, Class::Write);
        let mut cut = BytesMut::new();
        msg(&mut cut, b'Q', &[b"SELECT 1\0"]);
        assert_eq!(classify(&cut[..cut.len() - 2]).class, Class::Write);
        let mut sync = BytesMut::new();
        msg(&mut sync, b'S', &[]);
        assert_eq!(classify(&sync), NOTHING);
    }
}
