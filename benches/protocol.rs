//! Criterion benches for the sans-IO hot path: framing a client request and scanning a server
//! reply for the transaction boundary. The pgbench driver that compares Lagoon with PgBouncer
//! lands with the benchmarks issue (#7).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lagoon::protocol::codec;
use lagoon::protocol::tracker::{Flow, StreamScanner, TxnTracker, server_needs_body};

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A pgbench -S reply in extended mode: ParseComplete, BindComplete, RowDescription, one row,
/// CommandComplete, ReadyForQuery.
fn select_reply() -> Vec<u8> {
    let mut r = msg(b'1', b"");
    r.extend(msg(b'2', b""));
    r.extend(msg(b'T', &[0u8; 30]));
    r.extend(msg(b'D', &[0u8; 14]));
    r.extend(msg(b'C', b"SELECT 1\0"));
    r.extend(msg(b'Z', b"I"));
    r
}

fn bench(c: &mut Criterion) {
    let reply = select_reply();
    let mut g = c.benchmark_group("server_reply");
    g.throughput(Throughput::Bytes(reply.len() as u64));
    g.bench_function("scan_and_track", |b| {
        b.iter(|| {
            let mut sc = StreamScanner::default();
            let mut t = TxnTracker::default();
            t.client_message(b'S');
            let n = sc
                .scan(
                    black_box(&reply),
                    1 << 30,
                    server_needs_body,
                    |tag, body| {
                        t.server_message(tag, body);
                        Flow::Continue
                    },
                )
                .unwrap_or(0);
            black_box((n, t.releasable()))
        })
    });
    g.finish();

    let mut req = msg(
        b'P',
        b"\0SELECT abalance FROM pgbench_accounts WHERE aid = $1\0\0\0",
    );
    req.extend(msg(b'B', b"\0\0\0\0\0\x01\0\0\0\x0512345\0\0"));
    req.extend(msg(b'E', b"\0\0\0\0\0"));
    req.extend(msg(b'S', b""));
    c.bench_function("client_request/split_messages", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(black_box(&req[..]));
            let mut n = 0;
            while let Ok(Some(m)) = codec::split_message(&mut buf, 1 << 30) {
                n += m.len();
            }
            black_box(n)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
