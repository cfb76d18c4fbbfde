//! `StreamScanner` + `TxnTracker` over an arbitrary byte stream read in arbitrary chunks, once
//! as a server stream (`server_needs_body`, `server_message`) and once as a client stream
//! (`client_needs_body`, `client_message`, stopping before Terminate as the session does).
//!
//! Input: byte 0 = how many chunk-size bytes follow (mod 16); those bytes give the sizes of
//! the reads (each + 1, cycled); the rest is the stream. Zero sizes = the whole stream at once.
//!
//! Invariants: the (tag, body) events, the outcome (refused or not), the forwarded byte count
//! and the tracker's state are the same whatever the chunking, and match a straightforward
//! model of the protocol; forwarded bytes never exceed the input nor the bytes offered; the
//! tracker stays coherent (releasable => nothing open), also when the client and server events
//! are interleaved through one tracker as the stream's bits say.
#![no_main]

use lagoon::protocol::codec::{FrameError, HEADER_LEN, peek_header};
use lagoon::protocol::tracker::{
    ClientEvent, Flow, StreamScanner, TxnTracker, client_needs_body, server_needs_body,
};
use libfuzzer_sys::fuzz_target;

type Event = (u8, Option<Vec<u8>>);

#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<Event>,
    /// `None` when the stream was refused (bytes forwarded before the error depend on how the
    /// reads fell, so only the error itself is compared).
    forwarded: Option<usize>,
    error: Option<FrameError>,
    at_boundary: bool,
    tracker: (u32, u8, bool, bool, bool, bool, bool),
}

fn tracker_state(t: &TxnTracker) -> (u32, u8, bool, bool, bool, bool, bool) {
    (
        t.owed(),
        t.status(),
        t.unsynced(),
        t.copy_in(),
        t.releasable(),
        t.wants_server(),
        t.idle_in_transaction(),
    )
}

#[derive(Clone, Copy)]
enum Side {
    Server,
    Client,
}

fn run(stream: &[u8], sizes: &[usize], max_len: usize, side: Side) -> Outcome {
    let mut sc = StreamScanner::default();
    let mut tracker = TxnTracker::default();
    let mut events = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut forwarded = 0;
    let mut error = None;
    let mut terminated = false;
    let mut i = 0;
    while fed < stream.len() && !terminated {
        let n = if sizes.is_empty() {
            stream.len()
        } else {
            sizes[i % sizes.len()]
        };
        i += 1;
        let end = (fed + n).min(stream.len());
        pending.extend_from_slice(&stream[fed..end]);
        fed = end;
        let r = match side {
            Side::Server => sc.scan(&pending, max_len, server_needs_body, |tag, body| {
                events.push((tag, body.map(<[u8]>::to_vec)));
                tracker.server_message(tag, body);
                Flow::Continue
            }),
            Side::Client => sc.scan(&pending, max_len, client_needs_body, |tag, body| {
                assert_eq!(body.is_some(), client_needs_body(tag));
                events.push((tag, body.map(<[u8]>::to_vec)));
                match tracker.client_message(tag) {
                    ClientEvent::Forward => Flow::Continue,
                    ClientEvent::Terminate => {
                        terminated = true;
                        Flow::StopBefore
                    }
                }
            }),
        };
        match r {
            Ok(n) => {
                assert!(n <= pending.len(), "forwarded more than offered");
                forwarded += n;
                pending.drain(..n);
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert!(forwarded <= stream.len(), "forwarded more than the input");
    if error.is_none() && !terminated {
        assert_eq!(fed, stream.len());
        assert_eq!(forwarded + pending.len(), stream.len());
    }
    // After a stop, the next scan reports the same Terminate again and still forwards nothing.
    if terminated {
        let again = sc
            .scan(&pending, max_len, client_needs_body, |tag, _| {
                assert_eq!(tag, b'X');
                Flow::StopBefore
            })
            .expect("the Terminate header was valid a moment ago");
        assert_eq!(again, 0);
    }
    Outcome {
        events,
        forwarded: error.is_none().then_some(forwarded),
        error,
        at_boundary: sc.at_boundary(),
        tracker: tracker_state(&tracker),
    }
}

/// The protocol as the scanner should see it, on the whole stream at once, written plainly.
fn model(
    stream: &[u8],
    max_len: usize,
    side: Side,
) -> (Vec<Event>, Option<usize>, Option<FrameError>, bool) {
    let need = |t| match side {
        Side::Server => server_needs_body(t),
        Side::Client => client_needs_body(t),
    };
    let mut events = Vec::new();
    let mut off = 0;
    loop {
        let rest = &stream[off..];
        if rest.len() < HEADER_LEN {
            return (events, Some(off), None, true);
        }
        let h = match peek_header(rest, max_len) {
            Ok(h) => h.expect("five bytes are a header"),
            Err(e) => return (events, None, Some(e), true),
        };
        if need(h.tag) {
            if rest.len() < h.total_len {
                return (events, Some(off), None, true);
            }
            events.push((h.tag, Some(rest[HEADER_LEN..h.total_len].to_vec())));
            off += h.total_len;
        } else {
            events.push((h.tag, None));
            if matches!(side, Side::Client) && h.tag == b'X' {
                return (events, Some(off), None, true);
            }
            if rest.len() < h.total_len {
                return (events, Some(stream.len()), None, false);
            }
            off += h.total_len;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let k = usize::from(k % 16).min(rest.len());
    let (size_bytes, stream) = rest.split_at(k);
    let sizes: Vec<usize> = size_bytes.iter().map(|&b| usize::from(b) + 1).collect();

    for max_len in [16, 1 << 20] {
        for side in [Side::Server, Side::Client] {
            let whole = run(stream, &[], max_len, side);
            let one_by_one = run(stream, &[1], max_len, side);
            let chunked = run(stream, &sizes, max_len, side);
            let mut t = TxnTracker::default();
            for (tag, body) in &whole.events {
                match side {
                    Side::Server => t.server_message(*tag, body.as_deref()),
                    Side::Client => {
                        let _ = t.client_message(*tag);
                    }
                }
                coherent(&t);
            }
            assert_eq!(one_by_one, whole, "byte-at-a-time differs from whole");
            assert_eq!(chunked, whole, "chunks {sizes:?} differ from whole");

            let (events, forwarded, error, at_boundary) = model(stream, max_len, side);
            assert_eq!(whole.events, events, "events differ from the model");
            assert_eq!(whole.error, error);
            if error.is_none() {
                assert_eq!(whole.forwarded, forwarded);
                assert_eq!(whole.at_boundary, at_boundary);
            }

            let (owed, _, _, _, _, wants_server, _) = whole.tracker;
            if matches!(side, Side::Server) {
                assert_eq!(owed, 0, "server messages never add to what is owed");
                assert!(!wants_server);
            }
        }
    }

    // Both directions through one tracker, interleaved as the stream's bits say: the
    // session's view. The state must stay coherent after every message.
    let client = run(stream, &[], 1 << 20, Side::Client).events;
    let server = run(stream, &[], 1 << 20, Side::Server).events;
    let mut t = TxnTracker::default();
    let (mut c, mut s) = (client.iter(), server.iter());
    for bit in stream.iter().flat_map(|b| (0..8).map(move |i| b >> i & 1)) {
        if bit == 0 {
            let Some((tag, _)) = c.next() else { break };
            let _ = t.client_message(*tag);
        } else {
            let Some((tag, body)) = s.next() else { break };
            t.server_message(*tag, body.as_deref());
            if t.wants_server() {
                t.flushed();
            }
        }
        coherent(&t);
    }
});

/// What must hold in any state: a releasable server has nothing open and is never also
/// "idle in transaction"; a reply owed means a server is wanted.
fn coherent(t: &TxnTracker) {
    if t.releasable() {
        assert!(t.owed() == 0 && t.status() == b'I' && !t.unsynced() && !t.copy_in());
        assert!(!t.idle_in_transaction());
    }
    if t.idle_in_transaction() {
        assert_eq!(t.owed(), 0);
    }
    if t.owed() > 0 {
        assert!(t.wants_server());
    }
}
