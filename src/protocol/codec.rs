//! Length-prefixed framing of regular protocol messages (type byte + i32 length + body) over a
//! `BytesMut`. Check-then-parse: "not enough bytes yet" is `Ok(None)`, never an error, and the
//! length is validated before any body byte is awaited, so a hostile length cannot make us
//! buffer a gigabyte. Sans-IO: the caller owns the socket.
//!
//! Startup-phase packets (no type byte) are framed by `protocol::startup`.

use bytes::BytesMut;

/// Size of a regular message header: type byte plus the i32 length.
pub const HEADER_LEN: usize = 5;

/// Postgres's own limit for startup packets (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET: usize = 10_000;

/// Default bound for one message: large enough for COPY rows and bytea values.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 30;

/// A framing violation: the connection cannot be resynchronised and must end with `08P01`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid message length {len} for message type '{}'", char::from(*.tag))]
    BadLength { tag: u8, len: i64 },
    #[error(
        "message of type '{}' is {len} bytes, over the limit of {max} bytes (server.max_message_bytes)",
        char::from(*.tag)
    )]
    TooLong { tag: u8, len: usize, max: usize },
}

/// The header of a regular message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message type byte.
    pub tag: u8,
    /// Total length on the wire, type byte included (`1 + declared length`).
    pub total_len: usize,
}

/// Reads the header at the start of `buf`, validating the declared length against
/// `4 ..= max_len`. `Ok(None)` when fewer than five bytes are buffered.
#[inline]
pub fn peek_header(buf: &[u8], max_len: usize) -> Result<Option<Header>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let tag = buf[0];
    let declared = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if declared < 4 {
        return Err(FrameError::BadLength {
            tag,
            len: i64::from(declared),
        });
    }
    // A non-negative i32 always fits in usize on the platforms we build for.
    let declared = declared as usize;
    if declared > max_len {
        return Err(FrameError::TooLong {
            tag,
            len: declared,
            max: max_len,
        });
    }
    Ok(Some(Header {
        tag,
        total_len: declared + 1,
    }))
}

/// Splits one whole message (header included) off the front of `buf`, or `Ok(None)` if it is
/// not all there yet. The returned buffer shares the allocation of `buf`: no copy.
#[inline]
pub fn split_message(buf: &mut BytesMut, max_len: usize) -> Result<Option<BytesMut>, FrameError> {
    match peek_header(buf, max_len)? {
        Some(h) if buf.len() >= h.total_len => Ok(Some(buf.split_to(h.total_len))),
        Some(h) => {
            // Reserve for the rest of this message, but never more than a modest chunk up
            // front: the length is the peer's word until the bytes arrive.
            let missing = h.total_len - buf.len();
            buf.reserve(missing.min(1 << 20));
            Ok(None)
        }
        None => Ok(None),
    }
}

/// Walks complete messages in `buf` from `start`, calling `f(tag, body)` for each, and returns
/// the offset just past the last complete message. Nothing is copied or removed; bodies borrow
/// from `buf`, so `f` may keep them.
#[inline]
pub fn walk_messages<'a, F>(
    buf: &'a [u8],
    start: usize,
    max_len: usize,
    mut f: F,
) -> Result<usize, FrameError>
where
    F: FnMut(u8, &'a [u8]) -> bool,
{
    let mut off = start;
    while let Some(h) = peek_header(&buf[off..], max_len)? {
        if buf.len() - off < h.total_len {
            break;
        }
        let body = &buf[off + HEADER_LEN..off + h.total_len];
        off += h.total_len;
        if !f(h.tag, body) {
            break;
        }
    }
    Ok(off)
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

    #[test]
    fn partial_header_and_body_need_more() {
        let m = msg(b'Q', b"select 1\0");
        for cut in 0..m.len() {
            let mut b = BytesMut::from(&m[..cut]);
            assert_eq!(split_message(&mut b, 1024).unwrap(), None, "cut at {cut}");
        }
        let mut b = BytesMut::from(&m[..]);
        assert_eq!(&split_message(&mut b, 1024).unwrap().unwrap()[..], &m[..]);
        assert!(b.is_empty());
    }

    #[test]
    fn lengths_below_four_and_above_max_are_rejected() {
        for bad in [-1i32, 0, 3, i32::MIN] {
            let mut v = vec![b'Q'];
            v.extend_from_slice(&bad.to_be_bytes());
            assert!(matches!(
                peek_header(&v, 100),
                Err(FrameError::BadLength { .. })
            ));
        }
        let v = msg(b'd', &[0u8; 200]);
        assert!(matches!(
            peek_header(&v, 100),
            Err(FrameError::TooLong { len: 204, .. })
        ));
    }

    #[test]
    fn walk_stops_at_partial_message() {
        let mut all = msg(b'1', b"");
        all.extend(msg(b'Z', b"I"));
        let full = all.len();
        all.extend(&msg(b'C', b"SELECT 1\0")[..3]);
        let mut seen = vec![];
        let end = walk_messages(&all, 0, 1024, |t, b| {
            seen.push((t, b.to_vec()));
            true
        })
        .unwrap();
        assert_eq!(end, full);
        assert_eq!(seen, vec![(b'1', vec![]), (b'Z', b"I".to_vec())]);
    }
}
/// Deterministic "no panic on random input" checks, the CI-sized cousin of `fuzz/` target
/// `framing`: the same invariants over a few thousand generated streams.
#[cfg(test)]
mod random_input_tests {
    use super::*;

    /// The generator must reach each interesting case (see the final assertion) at least this
    /// often, so that it cannot quietly stop exercising the code under test.
    const LOTS: usize = 1000;

    use crate::test_rng::Rng;

    /// Mostly well-formed messages, with corrupt lengths, flipped bytes, garbage and a
    /// truncated tail mixed in, so every branch of the framing is reached.
    fn stream(rng: &mut Rng) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..rng.below(8) {
            match rng.below(10) {
                0 => v.extend((0..rng.below(12)).map(|_| rng.next() as u8)),
                1 => {
                    v.push(rng.next() as u8);
                    v.extend_from_slice(&(rng.next() as i32).to_be_bytes());
                }
                2 => {
                    v.push(b'd');
                    v.extend_from_slice(&(rng.below(8) as i32 - 2).to_be_bytes());
                }
                _ => {
                    let cap = if rng.below(8) == 0 { 400 } else { 24 };
                    let body = rng.below(cap);
                    v.push(rng.next() as u8);
                    v.extend_from_slice(&((body + 4) as i32).to_be_bytes());
                    v.extend((0..body).map(|_| rng.next() as u8));
                }
            }
        }
        if !v.is_empty() && rng.below(4) == 0 {
            let i = rng.below(v.len());
            v[i] = rng.next() as u8;
        }
        if rng.below(3) == 0 {
            v.truncate(rng.below(v.len() + 1));
        }
        v
    }

    fn declared(b: &[u8]) -> i32 {
        i32::from_be_bytes([b[1], b[2], b[3], b[4]])
    }

    /// Checks the invariants; returns how many messages were split and whether it was refused.
    fn check(data: &[u8], max_len: usize) -> (usize, bool) {
        let mut buf = BytesMut::from(data);
        let mut consumed = 0;
        let mut split = Vec::new();
        let split_err = loop {
            let before = buf.len();
            let peeked = peek_header(&buf, max_len);
            match &peeked {
                Ok(None) => assert!(before < HEADER_LEN),
                Ok(Some(h)) => {
                    assert_eq!(h.tag, buf[0]);
                    assert!(h.total_len >= HEADER_LEN && h.total_len - 1 <= max_len);
                }
                Err(FrameError::BadLength { len, .. }) => assert!(*len < 4),
                Err(FrameError::TooLong { len, max, .. }) => assert!(len > max),
            }
            match split_message(&mut buf, max_len) {
                Ok(Some(m)) => {
                    assert_eq!(m.len(), declared(&m) as usize + 1);
                    assert_eq!(&m[..], &data[consumed..consumed + m.len()]);
                    assert_eq!(buf.len(), before - m.len());
                    consumed += m.len();
                    split.push((m[0], m[HEADER_LEN..].to_vec()));
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before);
                    if let Ok(Some(h)) = peeked {
                        assert!(h.total_len > before);
                    }
                    break None;
                }
                Err(e) => {
                    assert_eq!(buf.len(), before);
                    assert_eq!(peeked, Err(e.clone()));
                    break Some(e);
                }
            }
        };
        assert!(consumed <= data.len());
        assert_eq!(&buf[..], &data[consumed..]);

        let mut walked = Vec::new();
        let r = walk_messages(data, 0, max_len, |t, b| {
            walked.push((t, b.to_vec()));
            true
        });
        match (&r, &split_err) {
            (Ok(end), None) => assert_eq!(*end, consumed),
            (Err(a), Some(b)) => assert_eq!(a, b),
            _ => panic!("walk {r:?} vs split {split_err:?} on {data:?}"),
        }
        assert_eq!(walked, split);

        let start = data
            .first()
            .map_or(0, |&b| usize::from(b) % (data.len() + 1));
        match (
            walk_messages(data, start, max_len, |_, _| true),
            walk_messages(&data[start..], 0, max_len, |_, _| true),
        ) {
            (Ok(a), Ok(b)) => assert_eq!(a, b + start),
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("walk from {start}: {a:?} vs {b:?}"),
        }
        (split.len(), split_err.is_some())
    }

    #[test]
    fn random_streams_frame_consistently() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut messages, mut refused) = (0, 0);
        for _ in 0..3000 {
            let data = stream(&mut rng);
            for max_len in [0, 4, 16, 64, 1 << 20, usize::MAX] {
                let (n, err) = check(&data, max_len);
                messages += n;
                refused += usize::from(err);
            }
        }
        // The generator must keep reaching both outcomes.
        assert!(messages > LOTS && refused > LOTS, "{messages} {refused}");
    }
}
