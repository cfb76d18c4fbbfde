use super::*;
use crate::protocol::replies::Verdict;

fn msg(tag: u8, parts: &[&[u8]]) -> (u8, Vec<u8>) {
    (tag, parts.concat())
}

/// Splits `out` into (tag, body) messages.
fn messages(out: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut v = vec![];
    let mut rest = out;
    while !rest.is_empty() {
        let len = i32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        v.push((rest[0], rest[5..1 + len].to_vec()));
        rest = &rest[1 + len..];
    }
    v
}

const KEY: &[u8] = b"select $1::int\0\0\0";

struct World {
    registry: Registry,
    client: ClientStatements,
    server: ServerStatements,
    replies: ReplyQueue,
    cap: usize,
}

impl World {
    fn new() -> World {
        World {
            registry: Registry::default(),
            client: ClientStatements::default(),
            server: ServerStatements::default(),
            replies: ReplyQueue::default(),
            cap: 10,
        }
    }
    fn send(&mut self, m: (u8, Vec<u8>)) -> Vec<(u8, Vec<u8>)> {
        let mut ctx = Ctx {
            registry: &self.registry,
            scope: b"db\0u\0",
            client: &mut self.client,
            server: &mut self.server,
            cap: self.cap,
            replies: &mut self.replies,
        };
        assert!(is_named(m.0, &m.1));
        let mut out = BytesMut::new();
        rewrite(&mut ctx, m.0, &m.1, &mut out);
        messages(&out)
    }
    /// Feeds one server reply; returns what the client gets (synthetic first, then the verdict).
    fn reply(&mut self, tag: u8) -> (Vec<u8>, Verdict) {
        let mut before = BytesMut::new();
        let mut events = vec![];
        let v = self
            .replies
            .server_message(tag, Some(b""), &mut before, &mut events);
        (before.to_vec(), v)
    }
}

#[test]
fn what_names_a_statement() {
    assert!(is_named(b'P', b"s1\0select 1\0\0\0"));
    assert!(!is_named(b'P', b"\0select 1\0\0\0"));
    assert!(is_named(b'B', b"\0s1\0\0\0\0\0\0\0"));
    assert!(!is_named(b'B', b"p1\0\0\0\0\0\0\0\0"));
    assert!(is_named(b'D', b"Ss1\0"));
    assert!(!is_named(b'D', b"Pp1\0"));
    assert!(!is_named(b'D', b"S\0"));
    assert!(is_named(b'C', b"Ss1\0"));
    assert!(!is_named(b'C', b"Pp\0"));
    assert!(!is_named(b'B', b"no nul"));
    assert!(!is_named(b'E', b"\0\0\0\0\0"));
}

#[test]
fn first_parse_goes_out_under_the_proxy_name() {
    let mut w = World::new();
    let out = w.send(msg(b'P', &[b"s1\0", KEY]));
    assert_eq!(out, vec![msg(b'P', &[b"lagoon_1\0", KEY])]);
    assert!(w.server.contains(1));
    assert_eq!(w.reply(b'1'), (vec![], Verdict::Forward));
}

#[test]
fn a_parse_the_server_already_has_is_answered_here() {
    let mut w = World::new();
    let stmt = w.registry.register(b"db\0u\0", KEY);
    w.server.insert(stmt.id(), &stmt, 10);
    let out = w.send(msg(b'P', &[b"mine\0", KEY]));
    assert!(out.is_empty());
    let mut ready = BytesMut::new();
    w.replies.take_ready(&mut ready);
    assert_eq!(&ready[..], &[b'1', 0, 0, 0, 4]);
}

#[test]
fn bind_on_a_server_without_the_statement_prepares_it_first() {
    let mut w = World::new();
    w.send(msg(b'P', &[b"s1\0", KEY]));
    w.reply(b'1');
    // The next transaction lands on another server.
    w.server = ServerStatements::default();
    let out = w.send(msg(b'B', &[b"\0s1\0", b"\0\0\0\0\0\0"]));
    assert_eq!(
        out,
        vec![
            msg(b'P', &[b"lagoon_1\0", KEY]),
            msg(b'B', &[b"\0lagoon_1\0", b"\0\0\0\0\0\0"]),
        ]
    );
    assert_eq!(w.reply(b'1'), (vec![], Verdict::Swallow));
    assert_eq!(w.reply(b'2'), (vec![], Verdict::Forward));
}

#[test]
fn describe_is_renamed() {
    let mut w = World::new();
    w.send(msg(b'P', &[b"s1\0", KEY]));
    let out = w.send(msg(b'D', &[b"Ss1\0"]));
    assert_eq!(out, vec![msg(b'D', &[b"Slagoon_1\0"])]);
}

#[test]
fn unknown_names_are_sent_as_the_missing_name() {
    let mut w = World::new();
    let out = w.send(msg(b'B', &[b"\0nope\0", b"\0\0\0\0\0\0"]));
    assert_eq!(
        out,
        vec![msg(b'B', &[b"\0lagoon_missing\0", b"\0\0\0\0\0\0"])]
    );
    let out = w.send(msg(b'D', &[b"Snope\0"]));
    assert_eq!(out, vec![msg(b'D', &[b"Slagoon_missing\0"])]);
}

#[test]
fn close_is_answered_here_and_the_name_can_be_reused() {
    let mut w = World::new();
    w.send(msg(b'P', &[b"s1\0", KEY]));
    w.reply(b'1');
    assert!(w.send(msg(b'C', &[b"Ss1\0"])).is_empty());
    let mut ready = BytesMut::new();
    w.replies.take_ready(&mut ready);
    assert_eq!(&ready[..], &[b'3', 0, 0, 0, 4]);
    assert!(w.client.get(b"s1").is_none());
    assert!(w.server.contains(1), "other clients may still use it");
    let other = b"select 2\0\0\0";
    let out = w.send(msg(b'P', &[b"s1\0", other]));
    assert_eq!(out, vec![msg(b'P', &[b"lagoon_2\0", other])]);
}

#[test]
fn parsing_a_name_twice_lets_the_server_refuse_it() {
    let mut w = World::new();
    w.send(msg(b'P', &[b"s1\0", KEY]));
    w.reply(b'1');
    let out = w.send(msg(b'P', &[b"s1\0", b"select 2\0\0\0"]));
    assert_eq!(out, vec![msg(b'P', &[b"lagoon_1\0", b"select 2\0\0\0"])]);
    assert_eq!(w.client.get(b"s1").map(|s| s.id()), Some(1));
}

#[test]
fn the_lru_closes_what_it_evicts() {
    let mut w = World::new();
    w.cap = 1;
    w.send(msg(b'P', &[b"a\0", KEY]));
    w.reply(b'1');
    w.server.new_batch();
    let out = w.send(msg(b'P', &[b"b\0", b"select 2\0\0\0"]));
    assert_eq!(
        out,
        vec![
            msg(b'C', &[b"Slagoon_1\0"]),
            msg(b'P', &[b"lagoon_2\0", b"select 2\0\0\0"]),
        ]
    );
    assert_eq!(w.reply(b'3'), (vec![], Verdict::Swallow));
    assert_eq!(w.reply(b'1'), (vec![], Verdict::Forward));
}
