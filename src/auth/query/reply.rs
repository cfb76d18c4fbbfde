//! The auth_query exchange on the wire, sans-IO: the request (extended protocol, so the user
//! name travels as a bound parameter and can never change the SQL) and the reading of the
//! server's reply into a [`Lookup`].
//!
//! Server bytes are parsed here with our own bounds-checked readers: a confused or hostile
//! server yields an error, never a panic.

use bytes::BytesMut;
use postgres_protocol::IsNull;
use postgres_protocol::message::frontend;

use super::{FetchError, Lookup};
use crate::auth::Secret;
use crate::auth::upstream::parse_fields;
use crate::protocol::codec::HEADER_LEN;

/// Parse (unnamed, `$1`'s type left to the server), Bind (the user name as text), Execute
/// (all rows), Sync.
pub fn encode_request(query: &str, user: &str, out: &mut BytesMut) -> Result<(), FetchError> {
    let bad = |e: &dyn std::fmt::Display| FetchError::Request(e.to_string());
    frontend::parse("", query, [], out).map_err(|e| bad(&e))?;
    frontend::bind(
        "",
        "",
        [0], // text
        [user],
        |v, buf| {
            buf.extend_from_slice(v.as_bytes());
            Ok(IsNull::No)
        },
        [0], // text results
        out,
    )
    .map_err(|e| match e {
        frontend::BindError::Conversion(e) => bad(&e),
        frontend::BindError::Serialization(e) => bad(&e),
    })?;
    frontend::execute("", 0, out).map_err(|e| bad(&e))?;
    frontend::sync(out);
    Ok(())
}

/// Reads the reply, message by message, until ReadyForQuery.
#[derive(Default)]
pub struct Reply {
    /// The first row's second column: `Some(None)` for NULL.
    first: Option<Option<Vec<u8>>>,
    /// The server's ErrorResponse message, if it sent one.
    error: Option<String>,
}

impl Reply {
    /// Handles one whole framed message. `Some` once ReadyForQuery ends the reply.
    pub fn on_message(&mut self, msg: &[u8]) -> Result<Option<Lookup>, FetchError> {
        let tag = msg.first().copied().unwrap_or(0);
        let body = msg.get(HEADER_LEN..).unwrap_or_default();
        match tag {
            // ParseComplete, BindComplete, CommandComplete, NoData, PortalSuspended; notices
            // and parameter changes are for a human reading the server log.
            b'1' | b'2' | b'C' | b'n' | b's' | b'N' | b'S' => {}
            b'D' => {
                if self.first.is_none() {
                    self.first = Some(second_column(body)?);
                }
            }
            b'E' => {
                let fields = parse_fields(body);
                let field = |c: u8| fields.iter().find(|(k, _)| *k == c).map(|(_, v)| v);
                self.error = Some(format!(
                    "{} ({})",
                    field(b'M').map_or("error without a message", |m| m.as_str()),
                    field(b'C').map_or("no SQLSTATE", |c| c.as_str())
                ));
            }
            b'Z' => return self.outcome().map(Some),
            other => {
                return Err(FetchError::Protocol(format!(
                    "unexpected message type '{}' in the reply",
                    char::from(other).escape_default()
                )));
            }
        }
        Ok(None)
    }

    fn outcome(&mut self) -> Result<Lookup, FetchError> {
        if let Some(e) = self.error.take() {
            return Err(FetchError::Query(e));
        }
        Ok(match self.first.take() {
            None => Lookup::Missing("the query returned no row for this user".into()),
            Some(None) => {
                Lookup::Missing("the query returned NULL: the role has no password".into())
            }
            Some(Some(raw)) => classify(&raw),
        })
    }
}

/// A returned secret, as the login can use it: SCRAM verifiers and md5 hashes only.
fn classify(raw: &[u8]) -> Lookup {
    let Ok(text) = std::str::from_utf8(raw) else {
        return Lookup::Missing("the returned password is not valid UTF-8".into());
    };
    match Secret::parse(text) {
        Ok(s @ (Secret::Scram(_) | Secret::Md5(_))) => Lookup::Found(s),
        Ok(Secret::Plain(_)) => Lookup::Missing(
            "the query returned something that is neither a SCRAM-SHA-256 verifier nor an md5 \
             hash (a plaintext password?); only those are used, so the proxy never holds a \
             plaintext password"
                .into(),
        ),
        Err(e) => Lookup::Missing(format!("the returned verifier is unusable: {e}")),
    }
}

/// The second column of a DataRow body (`Some(None)` = NULL). The first (the name) is not
/// needed: the query was asked about one name.
fn second_column(body: &[u8]) -> Result<Option<Vec<u8>>, FetchError> {
    let bad = || FetchError::Protocol("malformed DataRow".into());
    let (count, mut rest) = body.split_first_chunk::<2>().ok_or_else(bad)?;
    let count = i16::from_be_bytes(*count);
    if count < 2 {
        return Err(FetchError::Query(format!(
            "the query must return two columns (name, password); it returned {count}"
        )));
    }
    let column = |rest: &mut &[u8]| -> Result<Option<Vec<u8>>, FetchError> {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        let len = i32::from_be_bytes(*len);
        if len == -1 {
            *rest = tail;
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| bad())?;
        let (value, tail) = tail.split_at_checked(len).ok_or_else(bad)?;
        *rest = tail;
        Ok(Some(value.to_vec()))
    };
    column(&mut rest)?;
    column(&mut rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend((body.len() as i32 + 4).to_be_bytes());
        m.extend(body);
        m
    }

    fn data_row(cols: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = (cols.len() as i16).to_be_bytes().to_vec();
        for c in cols {
            match c {
                None => b.extend((-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend((v.len() as i32).to_be_bytes());
                    b.extend(*v);
                }
            }
        }
        msg(b'D', &b)
    }

    fn run(messages: &[Vec<u8>]) -> Result<Option<Lookup>, FetchError> {
        let mut r = Reply::default();
        for m in messages {
            if let Some(l) = r.on_message(m)? {
                return Ok(Some(l));
            }
        }
        Ok(None)
    }

    fn head() -> Vec<Vec<u8>> {
        vec![msg(b'1', b""), msg(b'2', b"")]
    }

    fn tail() -> Vec<Vec<u8>> {
        vec![msg(b'C', b"SELECT 1\0"), msg(b'Z', b"I")]
    }

    #[test]
    fn request_is_parse_bind_execute_sync_with_the_name_bound() {
        let mut out = BytesMut::new();
        encode_request("SELECT u, p FROM f($1)", "bob'; DROP", &mut out).unwrap();
        let tags: Vec<u8> = {
            let mut tags = Vec::new();
            let mut rest = &out[..];
            while let Some((&tag, tail)) = rest.split_first() {
                let len = i32::from_be_bytes(tail[..4].try_into().unwrap()) as usize;
                tags.push(tag);
                rest = &tail[len..];
            }
            tags
        };
        assert_eq!(tags, b"PBES");
        // The SQL text is untouched; the name is a parameter value.
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("SELECT u, p FROM f($1)\0"));
        assert!(text.contains("bob'; DROP"));
        assert!(encode_request("SELECT\0", "u", &mut BytesMut::new()).is_err());
    }

    #[test]
    fn found_verifier_and_md5_hash() {
        let v = postgres_protocol::password::scram_sha_256(b"pw");
        let m = crate::auth::md5::md5_hash("bob", "pw");
        for (secret, scram) in [(v.as_bytes(), true), (m.as_bytes(), false)] {
            let mut msgs = head();
            msgs.push(data_row(&[Some(b"bob"), Some(secret)]));
            msgs.push(data_row(&[Some(b"bob"), None]));
            msgs.extend(tail());
            match run(&msgs).unwrap() {
                Some(Lookup::Found(Secret::Scram(_))) => assert!(scram),
                Some(Lookup::Found(Secret::Md5(h))) => assert!(!scram && h == m),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn missing_null_plaintext_and_garbage_are_missing() {
        let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
            (vec![], "no row"),
            (vec![data_row(&[Some(b"bob"), None])], "NULL"),
            (
                vec![data_row(&[Some(b"bob"), Some(b"hunter2")])],
                "plaintext",
            ),
            (
                vec![data_row(&[Some(b"bob"), Some(b"SCRAM-SHA-256$x")])],
                "unusable",
            ),
            (vec![data_row(&[Some(b"bob"), Some(b"\xff")])], "UTF-8"),
        ];
        for (rows, why) in cases {
            let mut msgs = head();
            msgs.extend(rows);
            msgs.extend(tail());
            match run(&msgs).unwrap() {
                Some(Lookup::Missing(m)) => {
                    assert!(m.contains(why), "{m}");
                    assert!(!m.contains("hunter2"), "the secret leaked: {m}");
                }
                other => panic!("{why}: {other:?}"),
            }
        }
    }

    #[test]
    fn server_error_is_a_query_error_with_its_text() {
        let e = msg(
            b'E',
            b"SERROR\0C42883\0Mfunction lagoon.user_lookup(text) does not exist\0\0",
        );
        let r = run(&[e, msg(b'Z', b"I")]);
        let Err(FetchError::Query(m)) = r else {
            panic!("{r:?}")
        };
        assert!(m.contains("user_lookup") && m.contains("42883"), "{m}");
        // One column is a mistake in the query, said as such.
        let mut msgs = head();
        msgs.push(data_row(&[Some(b"x")]));
        assert!(matches!(run(&msgs), Err(FetchError::Query(_))));
    }

    #[test]
    fn malformed_replies_are_errors_never_panics() {
        assert!(matches!(
            run(&[msg(b'R', b"\0\0\0\0")]),
            Err(FetchError::Protocol(_))
        ));
        let good = data_row(&[Some(b"bob"), Some(b"md5x")]);
        for len in 0..good.len() {
            let mut m = good[..len].to_vec();
            if m.len() >= 5 {
                m[1..5].copy_from_slice(&((len - 1) as i32).to_be_bytes());
            }
            let _ = Reply::default().on_message(&m);
        }
        let mut rng = Rng(0x3C6E_F372_FE94_F82B);
        for _ in 0..3000 {
            let mut body = rng.bytes(24);
            if rng.below(2) == 0 && body.len() >= 2 {
                body[..2].copy_from_slice(&2i16.to_be_bytes());
            }
            let m = msg(rng.pick(b"DEZ1CNx"), &body);
            let mut r = Reply::default();
            let _ = r.on_message(&m);
            let _ = r.on_message(&msg(b'Z', b"I"));
        }
    }
}
