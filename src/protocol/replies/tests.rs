use super::*;

fn run(q: &mut ReplyQueue, tag: u8, body: &[u8]) -> (Verdict, Vec<u8>, Vec<Event>) {
    let mut before = BytesMut::new();
    let mut events = vec![];
    let v = q.server_message(tag, Some(body), &mut before, &mut events);
    (v, before.to_vec(), events)
}

fn err_body(code: &str, msg: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    b.extend_from_slice(b"ERROR\0C");
    b.extend_from_slice(code.as_bytes());
    b.extend_from_slice(b"\0M");
    b.extend_from_slice(msg.as_bytes());
    b.extend_from_slice(b"\0\0");
    b
}

fn injected_parse(id: u64) -> Expect {
    Expect::Parse {
        swallow: true,
        prepares: Some(id),
        client: None,
        names: Names::Id(id),
    }
}

const PARSE_COMPLETE: &[u8] = &[b'1', 0, 0, 0, 4];
const CLOSE_COMPLETE: &[u8] = &[b'3', 0, 0, 0, 4];

#[test]
fn injected_parse_reply_is_swallowed_and_the_rest_forwarded() {
    let mut q = ReplyQueue::default();
    for e in [
        injected_parse(1),
        Expect::Bind {
            names: Names::Id(1),
        },
        Expect::Execute,
        Expect::Sync,
    ] {
        q.push(e);
    }
    assert!(q.uncertain());
    assert_eq!(run(&mut q, b'1', b"").0, Verdict::Swallow);
    assert!(!q.uncertain());
    assert_eq!(run(&mut q, b'2', b"").0, Verdict::Forward);
    assert_eq!(run(&mut q, b'D', b"").0, Verdict::Forward);
    assert_eq!(run(&mut q, b'C', b"SELECT 1\0").0, Verdict::Forward);
    assert_eq!(run(&mut q, b'Z', b"I").0, Verdict::Forward);
    assert!(q.is_empty());
}

#[test]
fn synthetic_replies_go_out_where_the_server_would_have_sent_them() {
    let mut q = ReplyQueue::default();
    q.push(Expect::Synthetic(Synthetic::ParseComplete));
    q.push(Expect::Bind {
        names: Names::Id(1),
    });
    q.push(Expect::Execute);
    q.push(Expect::Synthetic(Synthetic::CloseComplete));
    q.push(Expect::Sync);
    let (v, before, _) = run(&mut q, b'2', b"");
    assert_eq!((v, before.as_slice()), (Verdict::Forward, PARSE_COMPLETE));
    assert_eq!(run(&mut q, b'C', b"SELECT 1\0").1, b"");
    let (v, before, _) = run(&mut q, b'Z', b"I");
    assert_eq!((v, before.as_slice()), (Verdict::Forward, CLOSE_COMPLETE));
    assert!(q.is_empty());
}

#[test]
fn a_lone_synthetic_reply_is_ready_at_once() {
    let mut q = ReplyQueue::default();
    q.push(Expect::Synthetic(Synthetic::CloseComplete));
    let mut out = BytesMut::new();
    q.take_ready(&mut out);
    assert_eq!(&out[..], CLOSE_COMPLETE);
    assert!(q.is_empty());
}

#[test]
fn asynchronous_messages_change_nothing() {
    let mut q = ReplyQueue::default();
    q.push(Expect::Synthetic(Synthetic::ParseComplete));
    q.push(Expect::Sync);
    for tag in [b'N', b'A', b'S'] {
        let (v, before, _) = run(&mut q, tag, b"x\0y\0");
        assert_eq!((v, before.len()), (Verdict::Forward, 0));
    }
    assert_eq!(q.len(), 2);
}

#[test]
fn an_extended_error_skips_to_sync_dropping_synthetic_replies_and_parses() {
    let mut q = ReplyQueue::default();
    q.push(Expect::Bind {
        names: Names::Id(5),
    });
    q.push(Expect::Execute);
    q.push(Expect::Synthetic(Synthetic::CloseComplete));
    q.push(Expect::Parse {
        swallow: false,
        prepares: Some(7),
        client: Some(b"s7".as_slice().into()),
        names: Names::Id(7),
    });
    q.push(Expect::Sync);
    q.push(Expect::Query);
    let (v, before, events) = run(&mut q, b'E', &err_body("22P02", "bad input"));
    assert_eq!(v, Verdict::Rename(5));
    assert!(before.is_empty());
    assert_eq!(
        events,
        vec![Event::ParseFailed {
            id: Some(7),
            client: Some(b"s7".as_slice().into())
        }]
    );
    assert_eq!(
        run(&mut q, b'Z', b"I").1,
        b"",
        "the CloseComplete was dropped"
    );
    assert_eq!(q.len(), 1, "the Query after the Sync is still owed");
}

#[test]
fn errors_inside_a_simple_query_do_not_skip() {
    let mut q = ReplyQueue::default();
    q.push(Expect::Query);
    q.push(Expect::Synthetic(Synthetic::CloseComplete));
    q.push(Expect::Sync);
    assert_eq!(
        run(&mut q, b'E', &err_body("42601", "syntax")).0,
        Verdict::Forward
    );
    assert_eq!(run(&mut q, b'Z', b"I").0, Verdict::Forward);
    let (_, before, _) = run(&mut q, b'Z', b"I");
    assert_eq!(before, CLOSE_COMPLETE);
    assert!(q.is_empty());
}

#[test]
fn an_unknown_name_gets_the_servers_error_with_the_clients_name() {
    let mut q = ReplyQueue::default();
    q.push(Expect::Bind {
        names: Names::Missing(b"my_stmt".as_slice().into()),
    });
    q.push(Expect::Sync);
    let body = err_body(
        "26000",
        &format!("prepared statement \"{MISSING_NAME}\" does not exist"),
    );
    let Verdict::Replace(bytes) = run(&mut q, b'E', &body).0 else {
        panic!("expected a replacement")
    };
    assert_eq!(bytes[0], b'E');
    let len = i32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    assert_eq!(len + 1, bytes.len());
    let f = parse::error_fields(&bytes[5..]).unwrap();
    assert_eq!(f.code, Some("26000"));
    assert_eq!(
        f.message,
        Some("prepared statement \"my_stmt\" does not exist")
    );
}

#[test]
fn a_stale_plan_is_reported() {
    let mut q = ReplyQueue::default();
    q.push(Expect::Bind {
        names: Names::Id(3),
    });
    q.push(Expect::Sync);
    let body = err_body("0A000", "cached plan must not change result type");
    let (_, _, events) = run(&mut q, b'E', &body);
    assert_eq!(events, vec![Event::StalePlan { id: 3 }]);
    let other = err_body("0A000", "something else unsupported");
    q.push(Expect::Bind {
        names: Names::Id(3),
    });
    run(&mut q, b'Z', b"I");
    assert!(run(&mut q, b'E', &other).2.is_empty());
}

#[test]
fn syncs_sent_into_a_copy_in_are_not_answered() {
    let mut q = ReplyQueue::default();
    for e in [Expect::Execute, Expect::Sync, Expect::CopyEnd, Expect::Sync] {
        q.push(e);
    }
    run(&mut q, b'G', b"");
    assert_eq!(q.len(), 3);
    run(&mut q, b'C', b"COPY 3\0");
    run(&mut q, b'Z', b"I");
    assert!(q.is_empty());
}

#[test]
fn rename_matches_whole_quoted_names_only() {
    let body = err_body("42P05", "prepared statement \"lagoon_12\" already exists");
    let out = rename_error(&body, b"lagoon_1", b"s0");
    let f = parse::error_fields(&out[5..]).unwrap();
    assert_eq!(
        f.message,
        Some("prepared statement \"lagoon_12\" already exists")
    );
    let out = rename_error(&body, b"lagoon_12", b"s0");
    let f = parse::error_fields(&out[5..]).unwrap();
    assert_eq!(f.message, Some("prepared statement \"s0\" already exists"));
}

#[test]
fn a_reply_nobody_expects_is_forwarded() {
    let mut q = ReplyQueue::default();
    assert_eq!(
        run(&mut q, b'E', &err_body("57P01", "terminating")).0,
        Verdict::Forward
    );
}
