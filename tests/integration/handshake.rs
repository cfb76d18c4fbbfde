//! The startup phase, byte by byte over raw TCP: SSLRequest / GSSENCRequest refused with `N`,
//! protocol negotiation, malformed and oversized startup packets (08P01, then close, never a
//! hang), a missing user (28000), and startup parameters reaching the session.

use std::time::Duration;

use crate::harness::*;
use crate::login_wire::*;

fn trust_startup() -> Vec<u8> {
    startup(&[("user", TRUST_USER.0), ("database", DB)])
}

/// A login that must go straight to AuthenticationOk and end in ReadyForQuery 'I', then a
/// query that must work.
async fn assert_logs_in_and_queries(raw: &mut Raw, startup: &[u8]) -> Login {
    let login = login_no_password(raw, startup).await;
    let tags = login.tags();
    assert!(
        tags.starts_with('R') && tags.ends_with('Z'),
        "login messages: {tags}"
    );
    assert_eq!(
        login.msgs.last().unwrap().body,
        b"I",
        "ReadyForQuery status"
    );
    assert_eq!(
        raw.simple_query("SELECT current_user").await,
        [Some(TRUST_USER.0.to_owned())]
    );
    login
}

#[tokio::test]
async fn ssl_request_is_answered_n_then_startup_logs_in() {
    let proxy = start_proxy("", "").await;
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&packet(SSL_REQUEST, b"")).await;
    assert_eq!(raw.read_byte().await, b'N');
    assert_logs_in_and_queries(&mut raw, &trust_startup()).await;
}

#[tokio::test]
async fn gssenc_request_is_answered_n_then_startup_logs_in() {
    let proxy = start_proxy("", "").await;
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&packet(GSSENC_REQUEST, b"")).await;
    assert_eq!(raw.read_byte().await, b'N');
    assert_logs_in_and_queries(&mut raw, &trust_startup()).await;
}

#[tokio::test]
async fn gssenc_then_ssl_request_both_answered_n() {
    // libpq with gssencmode=prefer and sslmode=prefer sends both, one after the other.
    let proxy = start_proxy("", "").await;
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&packet(GSSENC_REQUEST, b"")).await;
    assert_eq!(raw.read_byte().await, b'N');
    raw.send(&packet(SSL_REQUEST, b"")).await;
    assert_eq!(raw.read_byte().await, b'N');
    assert_logs_in_and_queries(&mut raw, &trust_startup()).await;
}

/// Reads a NegotiateProtocolVersion: (version number, unrecognised options).
fn negotiate(m: &Msg) -> (i32, Vec<String>) {
    assert_eq!(
        m.tag,
        b'v',
        "expected NegotiateProtocolVersion, got {:?}: {:?}",
        char::from(m.tag),
        m.fields()
    );
    let version = m.i32_at(0);
    let n = m.i32_at(4);
    let mut names = m.cstrings(8);
    // cstrings yields a trailing empty piece after the last terminator.
    assert_eq!(names.pop().as_deref(), Some(""), "layout: {m:?}");
    assert_eq!(names.len(), n as usize, "count vs names: {m:?}");
    (version, names)
}

#[tokio::test]
async fn protocol_3_2_with_pq_option_gets_negotiate_protocol_version_then_logs_in() {
    let proxy = start_proxy("", "").await;
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&startup_with_version(
        PROTOCOL_3_2,
        &[
            ("user", TRUST_USER.0),
            ("database", DB),
            ("_pq_.foo", "bar"),
        ],
    ))
    .await;
    let first = raw.read_msg().await;
    let (version, names) = negotiate(&first);
    // Carry on in 3.0: the version offered back is 3.0 (Postgres sends the full number).
    assert_eq!(version, PROTOCOL_3_0, "offered protocol version");
    assert_eq!(names, ["_pq_.foo"]);
    // Byte for byte what Postgres itself answers to the same request.
    let mut direct = Raw::connect_port(cluster().primary.port).await;
    direct
        .send(&startup_with_version(
            PROTOCOL_3_2,
            &[
                ("user", TRUST_USER.0),
                ("database", DB),
                ("_pq_.foo", "bar"),
            ],
        ))
        .await;
    let d = direct.read_msg().await;
    assert_eq!((d.tag, &d.body), (first.tag, &first.body), "vs Postgres");
    // Then the normal login, in 3.0.
    let rest = raw.read_until(b'Z').await;
    let tags: String = rest.iter().map(|m| char::from(m.tag)).collect();
    assert!(tags.starts_with('R') && tags.ends_with('Z'), "{tags}");
    assert_eq!(rest[0].i32_at(0), 0, "AuthenticationOk");
    let key = rest.iter().find(|m| m.tag == b'K').expect("BackendKeyData");
    assert_eq!(key.body.len(), 8, "a 3.0 BackendKeyData has a 4-byte key");
    assert_eq!(
        raw.simple_query("SELECT 40 + 2").await,
        [Some("42".to_owned())]
    );
}

#[tokio::test]
async fn protocol_3_0_with_pq_option_and_3_2_alone_negotiate_too() {
    let proxy = start_proxy("", "").await;
    // 3.0 naming an extension we do not know: listed back, as Postgres does.
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&startup(&[
        ("user", TRUST_USER.0),
        ("database", DB),
        ("_pq_.bar", "1"),
    ]))
    .await;
    let (version, names) = negotiate(&raw.read_msg().await);
    assert_eq!(
        (version, names),
        (PROTOCOL_3_0, vec!["_pq_.bar".to_owned()])
    );
    assert_eq!(raw.read_until(b'Z').await.last().unwrap().tag, b'Z');

    // 3.2 with no extension: offered 3.0, nothing listed.
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&startup_with_version(
        PROTOCOL_3_2,
        &[("user", TRUST_USER.0), ("database", DB)],
    ))
    .await;
    let (version, names) = negotiate(&raw.read_msg().await);
    assert_eq!((version, names), (PROTOCOL_3_0, vec![]));
    assert_eq!(raw.read_until(b'Z').await.last().unwrap().tag, b'Z');
    assert_eq!(raw.simple_query("SELECT 1").await, [Some("1".to_owned())]);
}

#[tokio::test]
async fn plain_3_0_startup_gets_no_negotiate_message() {
    let proxy = start_proxy("", "").await;
    let mut raw = Raw::connect(proxy.addr).await;
    let login = assert_logs_in_and_queries(&mut raw, &trust_startup()).await;
    assert!(!login.tags().contains('v'), "{}", login.tags());
}

/// Sends `bytes` as the first thing on a fresh connection; expects ErrorResponse 08P01 and
/// then the connection closed.
async fn assert_protocol_violation(proxy: &TestProxy, what: &str, bytes: &[u8]) -> Msg {
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(bytes).await;
    let e = raw.expect_fatal().await;
    assert_eq!(
        e.sqlstate().as_deref(),
        Some("08P01"),
        "{what}: {:?}",
        e.fields()
    );
    assert_eq!(e.field(b'S').as_deref(), Some("FATAL"), "{what}");
    e
}

#[tokio::test]
async fn protocol_2_is_refused_with_08p01_and_closed() {
    let proxy = start_proxy("", "").await;
    // A 2.0 startup packet: fixed 296 bytes (database 64, user 32, options 64, unused 64,
    // tty 64) after the version.
    let mut body = vec![0u8; 288];
    body[..DB.len()].copy_from_slice(DB.as_bytes());
    body[64..64 + TRUST_USER.0.len()].copy_from_slice(TRUST_USER.0.as_bytes());
    let e = assert_protocol_violation(&proxy, "protocol 2.0", &packet(2 << 16, &body)).await;
    let msg = e.field(b'M').unwrap_or_default();
    assert!(msg.contains("protocol"), "message names the problem: {msg}");
    // Protocol 4.0 likewise.
    assert_protocol_violation(
        &proxy,
        "protocol 4.0",
        &startup_with_version(4 << 16, &[("user", TRUST_USER.0)]),
    )
    .await;
}

#[tokio::test]
async fn garbage_startup_bytes_get_08p01_and_close() {
    let proxy = start_proxy("", "").await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("length below 8", vec![0, 0, 0, 4, 0, 3, 0, 0]),
        ("negative length", vec![0xff, 0xff, 0xff, 0xf0, 0, 3, 0, 0]),
        (
            "params without the final terminator",
            packet(PROTOCOL_3_0, b"user\0lagoon_trust\0"),
        ),
        (
            "a name without a value",
            packet(PROTOCOL_3_0, b"user\0lagoon_trust\0database\0"),
        ),
        (
            "bytes after the final terminator",
            packet(PROTOCOL_3_0, b"user\0lagoon_trust\0\0junk"),
        ),
        ("SSLRequest with a body", packet(SSL_REQUEST, b"xxxx")),
    ];
    for (what, bytes) in cases {
        assert_protocol_violation(&proxy, what, &bytes).await;
    }
}

#[tokio::test]
async fn truncated_startup_packet_then_close_does_not_hang_the_proxy() {
    // The client announces 100 bytes, sends 10 and half-closes: the proxy must end the
    // connection (no error owed to a gone client), not wait forever.
    let proxy = start_proxy("", "").await;
    let mut raw = Raw::connect(proxy.addr).await;
    let mut bytes = 100i32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    bytes.extend_from_slice(b"us");
    raw.send(&bytes).await;
    tokio::io::AsyncWriteExt::shutdown(&mut raw.stream)
        .await
        .unwrap();
    raw.expect_closed().await;
    // And the proxy still serves others.
    let mut raw = Raw::connect(proxy.addr).await;
    assert_logs_in_and_queries(&mut raw, &trust_startup()).await;
}

#[tokio::test]
async fn oversized_startup_packet_gets_08p01() {
    let proxy = start_proxy("", "").await;
    // Only the header: refused on the announced length alone, without waiting for the body.
    let mut header = 100_000i32.to_be_bytes().to_vec();
    header.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    assert_protocol_violation(&proxy, "header announcing 100000 bytes", &header).await;

    // A whole packet of 10001 bytes (Postgres's limit is 10000).
    let pad = "x".repeat(10_001 - 8 - "user\0lagoon_trust\0application_name\0\0\0".len());
    let big = startup(&[("user", TRUST_USER.0), ("application_name", &pad)]);
    assert_eq!(big.len(), 10_001);
    assert_protocol_violation(&proxy, "10001-byte startup packet", &big).await;
}

#[tokio::test]
async fn startup_packet_of_exactly_10000_bytes_is_accepted() {
    let proxy = start_proxy("", "").await;
    let fixed = "user\0lagoon_trust\0database\0lagoon_test\0application_name\0\0\0";
    let pad = "x".repeat(10_000 - 8 - fixed.len());
    let pkt = startup(&[
        ("user", TRUST_USER.0),
        ("database", DB),
        ("application_name", &pad),
    ]);
    assert_eq!(pkt.len(), 10_000);
    let mut raw = Raw::connect(proxy.addr).await;
    assert_logs_in_and_queries(&mut raw, &pkt).await;
}

#[tokio::test]
async fn bytes_pipelined_after_ssl_request_get_08p01() {
    let proxy = start_proxy("", "").await;
    // SSLRequest and the StartupMessage in one write, without waiting for the 'N': what a
    // TLS-stripping injection looks like (CVE-2021-23214). Postgres refuses it too.
    let mut bytes = packet(SSL_REQUEST, b"");
    bytes.extend_from_slice(&trust_startup());
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&bytes).await;
    let first = raw.read_msg().await;
    assert_eq!(
        first.tag, b'E',
        "expected an ErrorResponse, not a login: {first:?}"
    );
    assert_eq!(first.sqlstate().as_deref(), Some("08P01"));
    assert!(raw.expect_closed().await.is_empty());

    // Same after GSSENCRequest.
    let mut bytes = packet(GSSENC_REQUEST, b"");
    bytes.extend_from_slice(&trust_startup());
    let e = assert_protocol_violation(&proxy, "pipelined after GSSENCRequest", &bytes).await;
    assert_eq!(e.tag, b'E');
}

#[tokio::test]
async fn missing_user_gets_28000() {
    let proxy = start_proxy("", "").await;
    for params in [
        &[("database", DB)][..],
        &[("user", ""), ("database", DB)][..],
    ] {
        let mut raw = Raw::connect(proxy.addr).await;
        raw.send(&startup(params)).await;
        let e = raw.expect_fatal().await;
        assert_eq!(
            e.sqlstate().as_deref(),
            Some("28000"),
            "{params:?}: {:?}",
            e.fields()
        );
    }
    assert!(
        proxy.shared.pools.all().is_empty(),
        "no pool for a refused login"
    );
}

#[tokio::test]
async fn silent_client_is_disconnected_after_the_login_timeout() {
    // An idle unauthenticated socket must not hold a slot forever.
    let proxy = start_proxy("", "client_login_timeout_ms = 300").await;
    let mut raw = Raw::connect(proxy.addr).await;
    let started = std::time::Instant::now();
    raw.expect_closed().await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed too early: {:?}",
        started.elapsed()
    );
}

fn show(rows: &[tokio_postgres::SimpleQueryMessage]) -> String {
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a row")
}

async fn show_via(client: &tokio_postgres::Client, name: &str) -> String {
    show(
        &client
            .simple_query(&format!("SHOW {name}"))
            .await
            .unwrap_or_else(|e| panic!("SHOW {name}: {e}")),
    )
}

#[tokio::test]
async fn startup_options_and_application_name_reach_the_session() {
    let proxy = start_proxy("size = 2", "").await;
    let extra = "options='-c search_path=pg_catalog,public -c statement_timeout=1234' \
                 application_name=lagoon_handshake_test";
    let via = proxy
        .try_connect(&format!(
            "{} {extra}",
            proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB)
        ))
        .await
        .expect("connect through the proxy with options");
    // What Postgres itself says for the same startup, to compare with.
    let c = cluster();
    let (direct, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={} password={} dbname={DB} {extra}",
            c.primary.port, SCRAM_USER.0, SCRAM_USER.1
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("direct connect");
    tokio::spawn(conn);

    for name in ["search_path", "statement_timeout", "application_name"] {
        let want = show_via(&direct, name).await;
        // Several transactions: every one must see the settings.
        for _ in 0..3 {
            assert_eq!(show_via(&via, name).await, want, "SHOW {name}");
        }
    }
    assert_eq!(
        show_via(&via, "search_path").await.replace(' ', ""),
        "pg_catalog,public"
    );
    assert_eq!(show_via(&via, "statement_timeout").await, "1234ms");
    assert_eq!(
        show_via(&via, "application_name").await,
        "lagoon_handshake_test"
    );
    // The setting acts, not just shows: a query past the timeout is cancelled by Postgres.
    let err = via
        .simple_query("SELECT pg_sleep(5)")
        .await
        .expect_err("statement_timeout must cancel this");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err}");
    assert_eq!(show_via(&via, "statement_timeout").await, "1234ms");
}

#[tokio::test]
async fn startup_settings_sent_as_parameters_reach_the_session() {
    let proxy = start_proxy("", "").await;
    let params = [
        ("user", TRUST_USER.0),
        ("database", DB),
        ("application_name", "raw_app"),
        ("DateStyle", "German, DMY"),
        ("TimeZone", "Asia/Tokyo"),
        ("IntervalStyle", "sql_standard"),
        ("extra_float_digits", "1"),
        ("options", "-c work_mem=4321kB --lock-timeout=4s"),
    ];
    let mut raw = Raw::connect(proxy.addr).await;
    let login = assert_logs_in_and_queries(&mut raw, &startup(&params)).await;
    assert_eq!(login.param("application_name").as_deref(), Some("raw_app"));
    assert_eq!(login.param("TimeZone").as_deref(), Some("Asia/Tokyo"));

    // Direct, same startup, for the expected SHOW values.
    let c = cluster();
    let mut direct = Raw::connect_port(c.primary.port).await;
    login_no_password(&mut direct, &startup(&params)).await;
    for name in [
        "application_name",
        "DateStyle",
        "TimeZone",
        "IntervalStyle",
        "extra_float_digits",
        "work_mem",
        "lock_timeout",
    ] {
        let sql = format!("SHOW {name}");
        let want = direct.simple_query(&sql).await;
        assert_eq!(raw.simple_query(&sql).await, want, "{sql}");
    }
    assert_eq!(
        raw.simple_query("SHOW work_mem").await,
        [Some("4321kB".to_owned())]
    );
    assert_eq!(
        raw.simple_query("SHOW DateStyle").await,
        [Some("German, DMY".to_owned())]
    );
}

#[tokio::test]
async fn one_clients_startup_settings_do_not_leak_to_the_next() {
    // One server connection, two clients in turn: the second must see defaults, not the
    // first client's startup settings.
    let proxy = start_proxy("size = 1", "").await;
    let mut a = Raw::connect(proxy.addr).await;
    login_no_password(
        &mut a,
        &startup(&[
            ("user", TRUST_USER.0),
            ("database", DB),
            ("application_name", "client_a"),
            ("options", "-c search_path=pg_catalog -c work_mem=1234kB"),
        ]),
    )
    .await;
    let a_pid = a.simple_query("SELECT pg_backend_pid()").await;
    assert_eq!(
        a.simple_query("SHOW application_name").await,
        [Some("client_a".to_owned())]
    );
    let mut b = Raw::connect(proxy.addr).await;
    login_no_password(&mut b, &trust_startup()).await;
    assert_eq!(
        b.simple_query("SELECT pg_backend_pid()").await,
        a_pid,
        "same server connection (pool size 1)"
    );
    let c = cluster();
    let mut direct = Raw::connect_port(c.primary.port).await;
    login_no_password(&mut direct, &trust_startup()).await;
    for name in ["application_name", "search_path", "work_mem"] {
        let sql = format!("SHOW {name}");
        assert_eq!(
            b.simple_query(&sql).await,
            direct.simple_query(&sql).await,
            "{sql}"
        );
    }
    // And the first client still has its own.
    assert_eq!(
        a.simple_query("SHOW work_mem").await,
        [Some("1234kB".to_owned())]
    );
}

#[tokio::test]
async fn client_stalling_mid_authentication_is_disconnected() {
    let proxy = start_proxy("", "client_login_timeout_ms = 300").await;
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&startup(&[("user", SCRAM_USER.0), ("database", DB)]))
        .await;
    let m = raw.read_msg().await;
    assert_eq!((m.tag, m.i32_at(0)), (b'R', 10), "SASL request");
    // Say nothing more: the proxy must give up (an error, then the close).
    let rest = raw.expect_closed().await;
    assert!(rest.iter().all(|m| m.tag == b'E'), "{rest:?}");
}

#[tokio::test]
async fn invalid_startup_setting_is_reported_with_22023() {
    // Postgres refuses such a login at once (FATAL 22023). The proxy may only learn at the
    // first transaction, when it applies the settings on a server: then the client must get
    // the same SQLSTATE naming the parameter, and the server must stay clean for others.
    let proxy = start_proxy("size = 1", "").await;
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&startup(&[
        ("user", TRUST_USER.0),
        ("database", DB),
        ("DateStyle", "bogus"),
    ]))
    .await;
    let mut msgs = raw.read_until(b'Z').await;
    if msgs.last().unwrap().tag == b'Z' {
        raw.send(&query("SELECT 1")).await;
        msgs = raw.read_until(b'Z').await;
    }
    let e = msgs.last().unwrap();
    assert_eq!(e.tag, b'E', "{msgs:?}");
    assert_eq!(e.sqlstate().as_deref(), Some("22023"), "{:?}", e.fields());
    assert_eq!(e.field(b'S').as_deref(), Some("FATAL"));
    assert!(
        e.field(b'M').unwrap_or_default().contains("DateStyle"),
        "{:?}",
        e.fields()
    );
    assert!(raw.expect_closed().await.is_empty());

    // The one server connection serves the next client, with default settings.
    let c = cluster();
    let mut direct = Raw::connect_port(c.primary.port).await;
    login_no_password(&mut direct, &trust_startup()).await;
    let mut next = Raw::connect(proxy.addr).await;
    login_no_password(&mut next, &trust_startup()).await;
    assert_eq!(
        next.simple_query("SHOW DateStyle").await,
        direct.simple_query("SHOW DateStyle").await
    );
}
