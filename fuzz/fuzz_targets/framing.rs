//! Regular-message framing (`protocol::codec`) over arbitrary bytes, with small and large
//! maximum lengths. Invariants: a split message is exactly as long as its header says and is a
//! prefix of what was buffered; a refused or incomplete message consumes nothing; never more
//! bytes are consumed than given; `walk_messages` agrees with repeated `split_message`.
#![no_main]

use bytes::BytesMut;
use lagoon::protocol::codec::{
    DEFAULT_MAX_MESSAGE_BYTES, FrameError, HEADER_LEN, Header, peek_header, split_message,
    walk_messages,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A maximum picked by the input too, so the fuzzer can aim at the boundary.
    let picked = match data {
        [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
        _ => 0,
    };
    for max_len in [
        0,
        3,
        4,
        5,
        16,
        300,
        picked,
        1 << 20,
        DEFAULT_MAX_MESSAGE_BYTES,
        i32::MAX as usize,
        usize::MAX,
    ] {
        check(data, max_len);
    }
});

fn declared(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[1], b[2], b[3], b[4]])
}

fn check_peek(buf: &[u8], max_len: usize) -> Result<Option<Header>, FrameError> {
    let r = peek_header(buf, max_len);
    match &r {
        Ok(None) => assert!(buf.len() < HEADER_LEN),
        Ok(Some(h)) => {
            assert!(buf.len() >= HEADER_LEN);
            assert_eq!(h.tag, buf[0]);
            let d = declared(buf);
            assert!(d >= 4 && d as usize <= max_len);
            assert_eq!(h.total_len, d as usize + 1);
        }
        Err(FrameError::BadLength { tag, len }) => {
            assert_eq!(*tag, buf[0]);
            assert_eq!(*len, i64::from(declared(buf)));
            assert!(*len < 4);
        }
        Err(FrameError::TooLong { tag, len, max }) => {
            assert_eq!(*tag, buf[0]);
            assert_eq!(*len, declared(buf) as usize);
            assert_eq!(*max, max_len);
            assert!(*len > max_len);
        }
    }
    r
}

fn check(data: &[u8], max_len: usize) {
    // split_message until it needs more bytes or refuses.
    let mut buf = BytesMut::from(data);
    let mut consumed = 0;
    let mut split = Vec::new();
    let split_err = loop {
        let before = buf.len();
        let peeked = check_peek(&buf, max_len);
        match split_message(&mut buf, max_len) {
            Ok(Some(m)) => {
                assert!(m.len() >= HEADER_LEN);
                assert_eq!(m.len(), declared(&m) as usize + 1, "declared length");
                assert_eq!(Ok(Some(m.len())), peeked.map(|h| h.map(|h| h.total_len)));
                assert_eq!(&m[..], &data[consumed..consumed + m.len()]);
                assert_eq!(buf.len(), before - m.len());
                consumed += m.len();
                split.push((consumed, m[0], m[HEADER_LEN..].to_vec()));
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) must not consume");
                match peeked {
                    Ok(None) => {}
                    Ok(Some(h)) => assert!(h.total_len > before),
                    Err(e) => panic!("peek refused ({e}) but split_message did not"),
                }
                break None;
            }
            Err(e) => {
                assert_eq!(buf.len(), before, "an error must not consume");
                assert_eq!(peeked, Err(e.clone()));
                break Some(e);
            }
        }
    };
    assert!(consumed <= data.len());
    assert_eq!(&buf[..], &data[consumed..]);

    // walk_messages from 0 sees the same messages and ends at the same offset.
    let mut walked = Vec::new();
    let mut off = 0;
    let r = walk_messages(data, 0, max_len, |tag, body| {
        off += HEADER_LEN + body.len();
        walked.push((off, tag, body.to_vec()));
        true
    });
    match (&r, &split_err) {
        (Ok(end), None) => assert_eq!(*end, consumed),
        (Err(a), Some(b)) => assert_eq!(a, b),
        _ => panic!("walk_messages {r:?} disagrees with split_message {split_err:?}"),
    }
    assert_eq!(walked, split);

    // Stopping early: the returned offset is just past the message the callback refused.
    if let Some(&(stop_at, ..)) = split.first() {
        let mut n = 0;
        let end = walk_messages(data, 0, max_len, |_, _| {
            n += 1;
            false
        })
        .expect("the first message was split fine");
        assert_eq!((n, end), (1, stop_at));
    }

    // From an offset inside the buffer: the same as walking the suffix, shifted.
    if !data.is_empty() {
        let start = usize::from(data[0]) % (data.len() + 1);
        let shifted = walk_messages(data, start, max_len, |_, _| true);
        let suffix = walk_messages(&data[start..], 0, max_len, |_, _| true);
        match (shifted, suffix) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b + start);
                assert!(a <= data.len());
            }
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("walk from {start}: {a:?} vs suffix {b:?}"),
        }
    }
}
