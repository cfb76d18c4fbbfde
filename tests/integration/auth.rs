//! Client authentication (SCRAM-SHA-256, md5, trust; plaintext or SCRAM-verifier secrets),
//! server login (SCRAM, md5, cleartext, trust), refusals that open no server connection, and
//! the ParameterStatus burst a client sees at login compared with a direct connection.

use std::sync::atomic::Ordering;

use crate::harness::*;
use crate::login_wire::*;

/// Server connections the proxy has opened, over all its pools.
fn server_connects(proxy: &TestProxy) -> u64 {
    proxy
        .shared
        .pools
        .all()
        .iter()
        .map(|p| p.counters.connects.load(Ordering::Relaxed))
        .sum()
}

/// Asserts the proxy opened no server connection (no pool, or pools that never connected).
fn assert_no_server_connection(proxy: &TestProxy, what: &str) {
    let pools = proxy.shared.pools.all();
    let connects = server_connects(proxy);
    assert!(
        pools.is_empty() || connects == 0,
        "{what}: the proxy opened {connects} server connection(s) over {} pool(s)",
        pools.len()
    );
}

/// Logs in as `user` through the proxy with tokio-postgres and checks the session is that
/// user's on the real server.
async fn assert_login_works(proxy: &TestProxy, user: &str, password: Option<&str>) {
    let mut conninfo = format!(
        "host={} port={} user={user} dbname={DB}",
        proxy.addr.ip(),
        proxy.addr.port()
    );
    if let Some(pw) = password {
        conninfo.push_str(&format!(" password={pw}"));
    }
    let client = proxy
        .try_connect(&conninfo)
        .await
        .unwrap_or_else(|e| panic!("login as {user} failed: {e}"));
    let row = client
        .query_one("SELECT current_user::text, $1::int + 1", &[&41i32])
        .await
        .unwrap_or_else(|e| panic!("query as {user} failed: {e}"));
    assert_eq!(row.get::<_, String>(0), user);
    assert_eq!(row.get::<_, i32>(1), 42);
    // A second transaction too (the server connection went back to the pool in between).
    let rows = client.simple_query("SELECT 7").await.unwrap();
    assert!(rows.iter().any(|m| matches!(m,
        tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("7"))));
}

/// The first authentication request the proxy sends for `user`: (code, body after the code).
async fn first_auth_request(proxy: &TestProxy, user: &str) -> (i32, Vec<u8>) {
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&startup(&[("user", user), ("database", DB)]))
        .await;
    let m = raw.read_msg().await;
    assert_eq!(m.tag, b'R', "{user}: expected an auth request, got {m:?}");
    (m.i32_at(0), m.body[4..].to_vec())
}

#[tokio::test]
async fn each_user_is_asked_for_its_configured_method() {
    let proxy = start_proxy("", "").await;
    // SCRAM (10 = AuthenticationSASL listing SCRAM-SHA-256 only).
    for user in [SCRAM_USER.0, PLAIN_USER.0] {
        let (code, body) = first_auth_request(&proxy, user).await;
        assert_eq!(code, 10, "{user}");
        assert_eq!(body, b"SCRAM-SHA-256\0\0", "{user}: mechanisms");
    }
    // md5 (5, with a 4-byte salt).
    let (code, body) = first_auth_request(&proxy, MD5_USER.0).await;
    assert_eq!((code, body.len()), (5, 4), "md5 user");
    // trust (0 = AuthenticationOk at once).
    let (code, _) = first_auth_request(&proxy, TRUST_USER.0).await;
    assert_eq!(code, 0, "trust user");
    // Nothing above completed a login that needs a server, except trust's.
}

#[tokio::test]
async fn scram_client_and_scram_server_login() {
    let proxy = start_proxy("", "").await;
    assert_login_works(&proxy, SCRAM_USER.0, Some(SCRAM_USER.1)).await;
    assert!(server_connects(&proxy) >= 1);
}

#[tokio::test]
async fn md5_client_and_md5_server_login() {
    let proxy = start_proxy("", "").await;
    assert_login_works(&proxy, MD5_USER.0, Some(MD5_USER.1)).await;
    assert!(server_connects(&proxy) >= 1);
}

#[tokio::test]
async fn scram_client_and_cleartext_server_login() {
    let proxy = start_proxy("", "").await;
    assert_login_works(&proxy, PLAIN_USER.0, Some(PLAIN_USER.1)).await;
    assert!(server_connects(&proxy) >= 1);
}

#[tokio::test]
async fn trust_client_and_trust_server_login() {
    let proxy = start_proxy("", "").await;
    assert_login_works(&proxy, TRUST_USER.0, None).await;
    assert!(server_connects(&proxy) >= 1);
}

#[tokio::test]
async fn md5_stored_role_behind_a_scram_client() {
    // Client side SCRAM, server side md5: the two directions are independent.
    let c = cluster();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[users]]
name = "{mu}"
password = "{mp}"
auth_type = "scram-sha-256"

[[databases]]
name = "{DB}"
primary = "{url}"
"#,
        mu = MD5_USER.0,
        mp = MD5_USER.1,
        url = c.url(&c.primary, DB),
    );
    let proxy = start_proxy_with(&config).await;
    let (code, _) = first_auth_request(&proxy, MD5_USER.0).await;
    assert_eq!(code, 10, "client side is SCRAM");
    assert_login_works(&proxy, MD5_USER.0, Some(MD5_USER.1)).await;
}

pub async fn psql_as(proxy: &TestProxy, user: &str, password: &str) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(pg_tool("psql"));
    cmd.args([
        "-X",
        "-w",
        "-At",
        "-h",
        &proxy.addr.ip().to_string(),
        "-p",
        &proxy.addr.port().to_string(),
        "-U",
        user,
        "-d",
        DB,
        "-c",
        "SELECT current_user || ':' || 6 * 7",
    ])
    .env("PGPASSWORD", password)
    .env_remove("PGSSLMODE")
    .env_remove("PGSERVICE")
    .env_remove("PGOPTIONS")
    .env("PGCONNECT_TIMEOUT", "10")
    .kill_on_drop(true);
    tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("psql did not finish in 60 s")
        .expect("run psql")
}

#[tokio::test]
async fn psql_with_pgpassword_logs_in() {
    let proxy = start_proxy("", "").await;
    for (user, pw) in [SCRAM_USER, MD5_USER, PLAIN_USER] {
        let out = psql_as(&proxy, user, pw).await;
        assert!(
            out.status.success(),
            "psql as {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{user}:42")
        );
    }
    // And a wrong password is refused.
    let out = psql_as(&proxy, SCRAM_USER.0, "wrong").await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("password authentication failed"),
        "psql stderr: {err}"
    );
}

/// Connects and expects a refusal; returns (SQLSTATE, severity, message).
async fn refused(
    proxy: &TestProxy,
    user: &str,
    password: &str,
    db: &str,
) -> (String, String, String) {
    let err = match proxy.try_connect(&proxy.conninfo(user, password, db)).await {
        Ok(_) => panic!("login as {user} to {db} with password {password:?} succeeded"),
        Err(e) => e,
    };
    let db_err = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{user}/{db}: not an error from the proxy: {err}"));
    (
        db_err.code().code().to_owned(),
        db_err.severity().to_owned(),
        db_err.message().to_owned(),
    )
}

#[tokio::test]
async fn wrong_password_gets_28p01_without_a_server_connection() {
    let proxy = start_proxy("", "").await;
    for user in [SCRAM_USER.0, MD5_USER.0, PLAIN_USER.0] {
        let (code, severity, msg) = refused(&proxy, user, "not-the-password", DB).await;
        assert_eq!(code, "28P01", "{user}: {msg}");
        assert_eq!(severity, "FATAL");
        assert!(msg.contains(user), "{msg}");
    }
    assert_no_server_connection(&proxy, "wrong password");
}

#[tokio::test]
async fn unknown_user_looks_exactly_like_a_wrong_password() {
    let proxy = start_proxy("", "").await;
    let (wcode, wsev, wmsg) = refused(&proxy, SCRAM_USER.0, "not-the-password", DB).await;
    let ghost = "lagoon_no_such_user";
    let (ucode, usev, umsg) = refused(&proxy, ghost, "whatever", DB).await;
    assert_eq!(ucode, "28P01", "{umsg}");
    assert_eq!(
        (usev.as_str(), ucode.as_str()),
        (wsev.as_str(), wcode.as_str())
    );
    assert_eq!(
        umsg.replace(ghost, "<user>"),
        wmsg.replace(SCRAM_USER.0, "<user>"),
        "same message shape"
    );
    // An unknown user with an unknown database: still the password error, nothing about
    // the database (authentication comes first, as in Postgres).
    let (code, _, msg) = refused(&proxy, ghost, "whatever", "no_such_db").await;
    assert_eq!(code, "28P01", "{msg}");
    assert_no_server_connection(&proxy, "unknown user");
}

/// The SCRAM server-first message for `user` after a client-first with a fixed nonce:
/// (salt, iterations).
async fn scram_server_first(proxy: &TestProxy, user: &str) -> (String, String) {
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&startup(&[("user", user), ("database", DB)]))
        .await;
    let m = raw.read_msg().await;
    assert_eq!((m.tag, m.i32_at(0)), (b'R', 10), "{user}: SASL");
    let client_first = b"n,,n=,r=abcdefghijklmnopqrstuvwx";
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&(client_first.len() as i32).to_be_bytes());
    body.extend_from_slice(client_first);
    raw.send(&message(b'p', &body)).await;
    let m = raw.read_msg().await;
    assert_eq!(
        (m.tag, m.i32_at(0)),
        (b'R', 11),
        "{user}: SASLContinue {m:?}"
    );
    let text = String::from_utf8(m.body[4..].to_vec()).unwrap();
    let attr = |k: &str| {
        text.split(',')
            .find_map(|a| a.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {text}"))
            .to_owned()
    };
    assert!(attr("r=").starts_with("abcdefghijklmnopqrstuvwx"), "{text}");
    (attr("s="), attr("i="))
}

#[tokio::test]
async fn unknown_user_gets_a_scram_challenge_like_a_known_one() {
    let proxy = start_proxy("", "").await;
    // Same method and mechanism list.
    assert_eq!(
        first_auth_request(&proxy, "lagoon_no_such_user").await,
        first_auth_request(&proxy, SCRAM_USER.0).await
    );
    // Same iteration count and salt length; and the fake salt is stable across attempts, as a
    // real one is, so repeating the probe tells nothing.
    let (known_salt, known_iter) = scram_server_first(&proxy, SCRAM_USER.0).await;
    let (ghost_salt, ghost_iter) = scram_server_first(&proxy, "lagoon_no_such_user").await;
    assert_eq!(ghost_iter, known_iter);
    assert_eq!(ghost_salt.len(), known_salt.len());
    assert_eq!(scram_server_first(&proxy, SCRAM_USER.0).await.0, known_salt);
    assert_eq!(
        scram_server_first(&proxy, "lagoon_no_such_user").await.0,
        ghost_salt
    );
    assert_no_server_connection(&proxy, "SCRAM probes");
}

#[tokio::test]
async fn unknown_database_gets_3d000_without_a_server_connection() {
    let proxy = start_proxy("", "").await;
    let (code, severity, msg) = refused(&proxy, SCRAM_USER.0, SCRAM_USER.1, "no_such_db").await;
    assert_eq!(code, "3D000", "{msg}");
    assert_eq!(severity, "FATAL");
    assert!(msg.contains("no_such_db"), "{msg}");
    // A trust user too: authentication succeeds, the database does not exist.
    let (code, _, msg) = refused(&proxy, TRUST_USER.0, "", "no_such_db").await;
    assert_eq!(code, "3D000", "{msg}");
    assert_no_server_connection(&proxy, "unknown database");
}

#[tokio::test]
async fn a_refused_login_leaves_the_proxy_serving() {
    let proxy = start_proxy("", "").await;
    refused(&proxy, SCRAM_USER.0, "nope", DB).await;
    refused(&proxy, "ghost", "nope", DB).await;
    refused(&proxy, SCRAM_USER.0, SCRAM_USER.1, "no_such_db").await;
    assert_no_server_connection(&proxy, "after three refusals");
    assert_login_works(&proxy, SCRAM_USER.0, Some(SCRAM_USER.1)).await;
    assert_eq!(
        server_connects(&proxy),
        1,
        "one server login for one client"
    );
}

fn verifier_config(verifier: &str, auth_type: &str) -> String {
    let c = cluster();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[users]]
name = "{su}"
password = "{verifier}"
server_password = "{sp}"
auth_type = "{auth_type}"

[[databases]]
name = "{DB}"
primary = "{url}"
"#,
        su = SCRAM_USER.0,
        sp = SCRAM_USER.1,
        url = c.url(&c.primary, DB),
    )
}

#[tokio::test]
async fn user_with_a_scram_verifier_and_server_password_logs_in() {
    let verifier = postgres_protocol::password::scram_sha_256(b"client-side-pw");
    assert!(verifier.starts_with("SCRAM-SHA-256$"));
    let proxy = start_proxy_with(&verifier_config(&verifier, "scram-sha-256")).await;
    assert_login_works(&proxy, SCRAM_USER.0, Some("client-side-pw")).await;
    // The server password is not the client password.
    let (code, _, msg) = refused(&proxy, SCRAM_USER.0, SCRAM_USER.1, DB).await;
    assert_eq!(code, "28P01", "{msg}");
}

#[tokio::test]
async fn scram_verifier_user_gets_scram_even_when_md5_is_configured() {
    // md5 cannot be checked against a verifier; Postgres answers with SCRAM then.
    let verifier = postgres_protocol::password::scram_sha_256(b"client-side-pw");
    let proxy = start_proxy_with(&verifier_config(&verifier, "md5")).await;
    assert_eq!(first_auth_request(&proxy, SCRAM_USER.0).await.0, 10);
    assert_login_works(&proxy, SCRAM_USER.0, Some("client-side-pw")).await;
}

/// Logs in with raw bytes (trust on both sides) and returns everything up to ReadyForQuery.
async fn raw_login(port: u16, extra: &[(&str, &str)]) -> (Raw, Login) {
    let mut params = vec![("user", TRUST_USER.0), ("database", DB)];
    params.extend_from_slice(extra);
    let mut raw = Raw::connect_port(port).await;
    let login = login_no_password(&mut raw, &startup(&params)).await;
    (raw, login)
}

/// Checks the shape of a login burst: AuthenticationOk, ParameterStatus..., BackendKeyData,
/// ReadyForQuery 'I'.
fn assert_login_shape(login: &Login, who: &str) {
    let tags = login.tags();
    let s_count = tags.matches('S').count();
    let want = format!("R{}KZ", "S".repeat(s_count));
    assert_eq!(tags, want, "{who}: message order");
    assert!(s_count > 0, "{who}: no ParameterStatus");
    assert_eq!(login.msgs[0].i32_at(0), 0, "{who}: AuthenticationOk");
    let k = &login.msgs[tags.len() - 2];
    assert_eq!(k.body.len(), 8, "{who}: BackendKeyData (pid, 4-byte key)");
    assert_eq!(
        login.msgs.last().unwrap().body,
        b"I",
        "{who}: ReadyForQuery"
    );
}

#[tokio::test]
async fn parameter_status_at_login_matches_a_direct_connection() {
    let c = cluster();
    let proxy = start_proxy("", "").await;
    const SAME_VALUE: &[&str] = &[
        "server_version",
        "server_encoding",
        "client_encoding",
        "DateStyle",
        "TimeZone",
        "integer_datetimes",
        "standard_conforming_strings",
    ];
    // Twice through the proxy: the first client's login opens the pool's first server
    // connection, the second is answered from what the pool learned.
    let (_d, direct) = raw_login(c.primary.port, &[]).await;
    assert_login_shape(&direct, "direct");
    let mut direct_names: Vec<String> = direct.params().into_iter().map(|(k, _)| k).collect();
    direct_names.sort();
    for name in SAME_VALUE {
        assert!(direct.param(name).is_some(), "direct: no {name}");
    }
    for round in 1..=2 {
        let (mut raw, via) = raw_login(proxy.addr.port(), &[]).await;
        let who = format!("proxy, login {round}");
        assert_login_shape(&via, &who);
        let mut names: Vec<String> = via.params().into_iter().map(|(k, _)| k).collect();
        names.sort();
        assert_eq!(names, direct_names, "{who}: parameter names");
        for name in SAME_VALUE {
            assert_eq!(
                via.param(name),
                direct.param(name),
                "{who}: value of {name}"
            );
        }
        // The session is usable afterwards.
        assert_eq!(raw.simple_query("SELECT 1").await, [Some("1".to_owned())]);
    }

    // With settings given at startup, both report the client's values.
    let given = [
        ("application_name", "ps_test"),
        ("client_encoding", "LATIN1"),
        ("DateStyle", "SQL, DMY"),
        ("TimeZone", "Europe/Paris"),
    ];
    let (_d, direct) = raw_login(c.primary.port, &given).await;
    let (mut raw, via) = raw_login(proxy.addr.port(), &given).await;
    assert_login_shape(&via, "proxy, with settings");
    for name in SAME_VALUE.iter().chain(&["application_name"]) {
        assert_eq!(
            via.param(name),
            direct.param(name),
            "with settings: value of {name}"
        );
    }
    assert_eq!(via.param("client_encoding").as_deref(), Some("LATIN1"));
    // And the session really has them.
    assert_eq!(
        raw.simple_query("SHOW client_encoding").await,
        [Some("LATIN1".to_owned())]
    );
    assert_eq!(
        raw.simple_query("SHOW TimeZone").await,
        [Some("Europe/Paris".to_owned())]
    );
}

#[tokio::test]
async fn backend_key_data_is_unique_per_client() {
    let proxy = start_proxy("", "").await;
    let (_a, a) = raw_login(proxy.addr.port(), &[]).await;
    let (_b, b) = raw_login(proxy.addr.port(), &[]).await;
    let key = |l: &Login| l.msgs.iter().find(|m| m.tag == b'K').unwrap().body.clone();
    assert_ne!(key(&a), key(&b), "two clients, two keys");
}

#[tokio::test]
async fn parameter_status_reports_settings_as_the_server_normalises_them() {
    // Postgres normalises what a client asks for at startup and reports the result; drivers
    // read these (pgjdbc checks client_encoding is exactly "UTF8" and DateStyle starts with
    // "ISO"). The proxy must report what the server would, not echo the request.
    let c = cluster();
    let proxy = start_proxy("", "").await;
    let given = [
        ("client_encoding", "utf8"),
        ("DateStyle", "ISO"),
        ("TimeZone", "utc"),
        ("IntervalStyle", "SQL_STANDARD"),
    ];
    let (_d, direct) = raw_login(c.primary.port, &given).await;
    assert_eq!(direct.param("client_encoding").as_deref(), Some("UTF8"));
    assert_eq!(direct.param("DateStyle").as_deref(), Some("ISO, MDY"));
    let (mut raw, via) = raw_login(proxy.addr.port(), &given).await;
    let mut wrong = Vec::new();
    for (name, _) in given {
        if via.param(name) != direct.param(name) {
            wrong.push(format!(
                "{name}: proxy {:?}, Postgres {:?}",
                via.param(name),
                direct.param(name)
            ));
        }
    }
    // Nor is it corrected later: the first query brings no ParameterStatus either.
    raw.send(&query("SELECT 1")).await;
    let later: Vec<_> = raw
        .read_until(b'Z')
        .await
        .iter()
        .filter(|m| m.tag == b'S')
        .map(Msg::parameter_status)
        .collect();
    assert!(
        wrong.is_empty(),
        "{wrong:?}; reported after the first query: {later:?}"
    );
}

#[tokio::test]
async fn user_with_an_md5_hash_and_server_password_logs_in() {
    use md5::{Digest, Md5};
    let digest = Md5::digest(format!("{}{}", MD5_USER.1, MD5_USER.0).as_bytes());
    let hash: String = std::iter::once("md5".to_owned())
        .chain(digest.iter().map(|b| format!("{b:02x}")))
        .collect();
    let c = cluster();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[users]]
name = "{mu}"
password = "{hash}"
server_password = "{mp}"
auth_type = "md5"

[[databases]]
name = "{DB}"
primary = "{url}"
"#,
        mu = MD5_USER.0,
        mp = MD5_USER.1,
        url = c.url(&c.primary, DB),
    );
    let proxy = start_proxy_with(&config).await;
    assert_eq!(first_auth_request(&proxy, MD5_USER.0).await.0, 5, "md5");
    assert_login_works(&proxy, MD5_USER.0, Some(MD5_USER.1)).await;
    let (code, _, msg) = refused(&proxy, MD5_USER.0, "wrong", DB).await;
    assert_eq!(code, "28P01", "{msg}");
}

#[tokio::test]
async fn database_defaults_to_the_user_name() {
    // As in Postgres: no `database` means the database named like the user, which is not
    // configured here.
    let proxy = start_proxy("", "").await;
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&startup(&[("user", TRUST_USER.0)])).await;
    let msgs = raw.read_until(b'E').await;
    let e = msgs.last().unwrap();
    assert_eq!(e.tag, b'E', "{msgs:?}");
    assert_eq!(e.sqlstate().as_deref(), Some("3D000"), "{:?}", e.fields());
    assert!(
        e.field(b'M').unwrap_or_default().contains(TRUST_USER.0),
        "{:?}",
        e.fields()
    );
    assert!(raw.expect_closed().await.is_empty());
    assert_no_server_connection(&proxy, "database from the user name");
}

/// Starts a login as `user` (which must be asked for `method`), then sends `bad` instead of a
/// proper answer: the proxy must answer FATAL `code` and close, never hang or let it in.
async fn assert_bad_auth_answer(
    proxy: &TestProxy,
    user: &str,
    method: i32,
    what: &str,
    bad: &[u8],
    code: &str,
) {
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&startup(&[("user", user), ("database", DB)]))
        .await;
    let m = raw.read_msg().await;
    assert_eq!((m.tag, m.i32_at(0)), (b'R', method), "{what}: auth request");
    raw.send(bad).await;
    let e = raw.expect_fatal().await;
    assert_eq!(
        e.sqlstate().as_deref(),
        Some(code),
        "{what}: {:?}",
        e.fields()
    );
}

fn sasl_initial(mechanism: &str, data: &[u8]) -> Vec<u8> {
    let mut body = mechanism.as_bytes().to_vec();
    body.push(0);
    body.extend_from_slice(&(data.len() as i32).to_be_bytes());
    body.extend_from_slice(data);
    message(b'p', &body)
}

#[tokio::test]
async fn malformed_authentication_answers_get_08p01_and_close() {
    let proxy = start_proxy("", "").await;
    let scram = SCRAM_USER.0;
    let cases: Vec<(&str, &str, i32, Vec<u8>)> = vec![
        (
            "a query instead of a password",
            scram,
            10,
            query("SELECT 1"),
        ),
        (
            "an unoffered SASL mechanism",
            scram,
            10,
            sasl_initial("SCRAM-SHA-1", b"n,,n=,r=abc"),
        ),
        (
            "garbage SCRAM client-first",
            scram,
            10,
            sasl_initial("SCRAM-SHA-256", b"garbage"),
        ),
        (
            "channel binding asked without TLS",
            scram,
            10,
            sasl_initial("SCRAM-SHA-256", b"p=tls-server-end-point,,n=,r=abc"),
        ),
        ("SASL data length not matching", scram, 10, {
            let mut m = sasl_initial("SCRAM-SHA-256", b"n,,n=,r=abc");
            let n = m.len();
            m[n - 12..n - 11].copy_from_slice(&[0xff]);
            m
        }),
        (
            "md5 password with bytes after the terminator",
            MD5_USER.0,
            5,
            message(b'p', b"md5abc\0junk\0"),
        ),
        ("an auth message over the size limit", scram, 10, {
            let mut m = vec![b'p'];
            m.extend_from_slice(&1_000_000i32.to_be_bytes());
            m
        }),
    ];
    for (what, user, method, bad) in cases {
        assert_bad_auth_answer(&proxy, user, method, what, &bad, "08P01").await;
    }
    assert_no_server_connection(&proxy, "malformed authentication");
}
