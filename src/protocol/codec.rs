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
/// the offset just past the last complete message. Nothing is copied or removed.
#[inline]
pub fn walk_messages<F>(
    buf: &[u8],
    start: usize,
    max_len: usize,
    mut f: F,
) -> Result<usize, FrameError>
where
    F: FnMut(u8, &[u8]) -> bool,
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
