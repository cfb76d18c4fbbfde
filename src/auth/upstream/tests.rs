//! The login state machine against our own SCRAM / md5 server code, message by message.

use bytes::{BufMut, BytesMut};
use pgwire::messages::Message;
use pgwire::messages::startup::Authentication;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;
use crate::auth::credential::ServerCredential;
use crate::auth::scram::client::ScramKeys;
use crate::auth::scram::{ScramServer, ScramVerifier};

fn auth_msg(a: Authentication) -> BytesMut {
    let mut b = BytesMut::new();
    a.encode(&mut b).unwrap();
    b
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend((body.len() as i32 + 4).to_be_bytes());
    m.extend(body);
    m
}

/// Splits a frontend `p` message written to `out` into its body.
fn take_p(out: &mut BytesMut) -> Vec<u8> {
    assert_eq!(out.first(), Some(&b'p'));
    let len = i32::from_be_bytes(out[1..5].try_into().unwrap()) as usize;
    let m = out.split_to(1 + len);
    m[5..].to_vec()
}

/// The server's tail of a successful login: params, key, ReadyForQuery.
fn feed_preamble(login: &mut Login) -> LoggedIn {
    let mut out = BytesMut::new();
    for (k, v) in [("server_version", "15.4"), ("client_encoding", "UTF8")] {
        let body = [k.as_bytes(), b"\0", v.as_bytes(), b"\0"].concat();
        assert_eq!(
            login.on_message(&msg(b'S', &body), &mut out),
            Ok(Step::Continue)
        );
    }
    let notice = msg(b'N', b"SNOTICE\0Mhello\0\0");
    assert_eq!(login.on_message(&notice, &mut out), Ok(Step::Continue));
    let key = [&1234i32.to_be_bytes()[..], &[1, 2, 3, 4]].concat();
    assert_eq!(
        login.on_message(&msg(b'K', &key), &mut out),
        Ok(Step::Continue)
    );
    let Ok(Step::Done(done)) = login.on_message(&msg(b'Z', b"I"), &mut out) else {
        panic!("not done");
    };
    assert!(out.is_empty());
    done
}

fn expected_done() -> LoggedIn {
    LoggedIn {
        params: vec![
            ("server_version".into(), "15.4".into()),
            ("client_encoding".into(), "UTF8".into()),
        ],
        process_id: 1234,
        secret_key: vec![1, 2, 3, 4],
    }
}

/// Runs a SCRAM login against our ScramServer; returns the result of the last step that
/// failed, or the login when it completes.
fn scram_login(
    client_password: &str,
    server_password: &str,
    tamper_final: bool,
) -> Result<LoggedIn, UpstreamError> {
    let salt = b"0123456789abcdef";
    let verifier = ScramVerifier::from_password(server_password, salt, 4096);
    scram_login_with(
        Login::new("app", Some(client_password)),
        verifier,
        tamper_final,
    )
}

/// [`scram_login`] for any login, against a server holding `verifier`.
fn scram_login_with(
    mut login: Login,
    verifier: ScramVerifier,
    tamper_final: bool,
) -> Result<LoggedIn, UpstreamError> {
    let mut server = ScramServer::new(verifier, true);
    let mut out = BytesMut::new();

    let sasl = auth_msg(Authentication::SASL(vec![
        "SCRAM-SHA-256-PLUS".into(),
        "SCRAM-SHA-256".into(),
    ]));
    assert_eq!(login.on_message(&sasl, &mut out)?, Step::Continue);
    let body = take_p(&mut out);
    let data = body
        .strip_prefix(b"SCRAM-SHA-256\0".as_slice())
        .expect("chose SCRAM-SHA-256, not PLUS");
    let data = &data[4..];
    assert!(data.starts_with(b"n,,"), "no channel binding without TLS");
    let first = server.client_first(data).unwrap();
    login.on_message(
        &auth_msg(Authentication::SASLContinue(first.into())),
        &mut out,
    )?;
    let Ok(mut fin) = server.client_final(&take_p(&mut out)) else {
        // The server would now send ErrorResponse 28P01.
        let e = msg(b'E', b"SFATAL\0C28P01\0Mpassword authentication failed\0\0");
        return Err(login.on_message(&e, &mut out).unwrap_err());
    };
    if tamper_final {
        let last = fin.len() - 2;
        fin[last] ^= 1;
    }
    login.on_message(&auth_msg(Authentication::SASLFinal(fin.into())), &mut out)?;
    login.on_message(&auth_msg(Authentication::Ok), &mut out)?;
    assert!(out.is_empty());
    Ok(feed_preamble(&mut login))
}

/// Keys as a client login through our ScramServer recovers them, for password `pw`.
fn keys_for(password: &str, verifier: &ScramVerifier) -> ScramKeys {
    let mut client = postgres_protocol::authentication::sasl::ScramSha256::new(
        password.as_bytes(),
        postgres_protocol::authentication::sasl::ChannelBinding::unsupported(),
    );
    let mut server = ScramServer::new(verifier.clone(), true);
    let first = server.client_first(client.message()).unwrap();
    client.update(&first).unwrap();
    server.client_final(client.message()).unwrap();
    ScramKeys {
        client_key: server.client_key().unwrap(),
        verifier: verifier.clone(),
    }
}

fn key_login(keys: ScramKeys) -> Login {
    let credential = ServerCredential::Scram(keys);
    Login::with_auth(UpstreamAuth::with_credential("app", &credential))
}

#[test]
fn scram_login_with_a_client_key() {
    let verifier = ScramVerifier::from_password("pw", b"0123456789abcdef", 4096);
    let keys = keys_for("pw", &verifier);
    assert_eq!(
        scram_login_with(key_login(keys.clone()), verifier.clone(), false),
        Ok(expected_done())
    );
    // A server that cannot sign is caught.
    let r = scram_login_with(key_login(keys.clone()), verifier, true);
    assert!(
        matches!(&r, Err(UpstreamError::Auth(m)) if m.contains("signature")),
        "{r:?}"
    );
    // The role's password changed (new salt) since the key's verifier was fetched.
    let changed = ScramVerifier::from_password("pw2", b"fedcba9876543210", 4096);
    let r = scram_login_with(key_login(keys), changed, false);
    assert!(
        matches!(&r, Err(UpstreamError::Auth(m)) if m.contains("password changed")),
        "{r:?}"
    );
}

#[test]
fn a_client_key_answers_scram_only() {
    let verifier = ScramVerifier::from_password("pw", b"0123456789abcdef", 4096);
    for req in [
        Authentication::CleartextPassword,
        Authentication::MD5Password(vec![1, 2, 3, 4]),
    ] {
        let r =
            key_login(keys_for("pw", &verifier)).on_message(&auth_msg(req), &mut BytesMut::new());
        assert!(
            matches!(&r, Err(UpstreamError::Auth(m)) if m.contains("auth_query")),
            "{r:?}"
        );
    }
}

#[test]
fn an_md5_credential_passes_the_hash() {
    let salt = [9, 8, 7, 6];
    let credential = ServerCredential::Md5Hash(md5::md5_hash("app", "pw"));
    let mut login = Login::with_auth(UpstreamAuth::with_credential("app", &credential));
    let mut out = BytesMut::new();
    login
        .on_message(
            &auth_msg(Authentication::MD5Password(salt.to_vec())),
            &mut out,
        )
        .unwrap();
    let expected = postgres_protocol::authentication::md5_hash(b"app", b"pw", salt);
    assert_eq!(take_p(&mut out), [expected.as_bytes(), b"\0"].concat());
}

#[test]
fn scram_login_completes() {
    assert_eq!(scram_login("pw", "pw", false), Ok(expected_done()));
}

#[test]
fn scram_wrong_password_surfaces_server_error() {
    let Err(UpstreamError::Server(fields)) = scram_login("pw", "other", false) else {
        panic!("expected a server error");
    };
    assert!(fields.contains(&(b'C', "28P01".into())));
}

#[test]
fn scram_bad_server_signature_is_auth_error() {
    let r = scram_login("pw", "pw", true);
    assert!(
        matches!(&r, Err(UpstreamError::Auth(m)) if m.contains("\"app\"")),
        "{r:?}"
    );
}

#[test]
fn ok_before_scram_final_is_refused() {
    let mut login = Login::new("app", Some("pw"));
    let mut out = BytesMut::new();
    login
        .on_message(
            &auth_msg(Authentication::SASL(vec!["SCRAM-SHA-256".into()])),
            &mut out,
        )
        .unwrap();
    let r = login.on_message(&auth_msg(Authentication::Ok), &mut out);
    assert!(matches!(r, Err(UpstreamError::Auth(_))), "{r:?}");
}

#[test]
fn md5_login_plain_and_pass_the_hash() {
    let salt = [1, 2, 3, 4];
    for password in ["pw".to_owned(), md5::md5_hash("app", "pw")] {
        let mut login = Login::new("app", Some(&password));
        let mut out = BytesMut::new();
        login
            .on_message(
                &auth_msg(Authentication::MD5Password(salt.to_vec())),
                &mut out,
            )
            .unwrap();
        let body = take_p(&mut out);
        let expected = postgres_protocol::authentication::md5_hash(b"app", b"pw", salt);
        assert_eq!(body, [expected.as_bytes(), b"\0"].concat());
        login
            .on_message(&auth_msg(Authentication::Ok), &mut out)
            .unwrap();
        assert_eq!(feed_preamble(&mut login), expected_done());
    }
}

#[test]
fn cleartext_and_trust() {
    let mut login = Login::new("app", Some("pw"));
    let mut out = BytesMut::new();
    login
        .on_message(&auth_msg(Authentication::CleartextPassword), &mut out)
        .unwrap();
    assert_eq!(take_p(&mut out), b"pw\0");
    login
        .on_message(&auth_msg(Authentication::Ok), &mut out)
        .unwrap();
    assert_eq!(feed_preamble(&mut login), expected_done());

    let mut login = Login::new("app", None);
    login
        .on_message(&auth_msg(Authentication::Ok), &mut out)
        .unwrap();
    assert!(out.is_empty());
    assert_eq!(feed_preamble(&mut login), expected_done());
}

#[test]
fn unusable_passwords_are_auth_errors_naming_the_user() {
    let verifier = postgres_protocol::password::scram_sha_256(b"pw");
    let md5_hash = md5::md5_hash("app", "pw");
    let cases: Vec<(Option<&str>, Authentication)> = vec![
        (None, Authentication::CleartextPassword),
        (None, Authentication::MD5Password(vec![1, 2, 3, 4])),
        (None, Authentication::SASL(vec!["SCRAM-SHA-256".into()])),
        (Some(&verifier), Authentication::CleartextPassword),
        (
            Some(&verifier),
            Authentication::MD5Password(vec![1, 2, 3, 4]),
        ),
        (Some(&md5_hash), Authentication::CleartextPassword),
        (
            Some(&md5_hash),
            Authentication::SASL(vec!["SCRAM-SHA-256".into()]),
        ),
        (Some("nul\0byte"), Authentication::CleartextPassword),
    ];
    for (pw, req) in cases {
        let mut login = Login::new("app", pw);
        let r = login.on_message(&auth_msg(req), &mut BytesMut::new());
        assert!(
            matches!(&r, Err(UpstreamError::Auth(m)) if m.contains("user \"app\"")),
            "{pw:?}: {r:?}"
        );
    }
}

#[test]
fn unsupported_methods() {
    for code in [2i32, 6, 7, 9, 42] {
        let mut login = Login::new("app", Some("pw"));
        let r = login.on_message(&msg(b'R', &code.to_be_bytes()), &mut BytesMut::new());
        assert_eq!(r, Err(UpstreamError::UnsupportedAuth(code)));
    }
    let mut login = Login::new("app", Some("pw"));
    let plus_only = auth_msg(Authentication::SASL(vec!["SCRAM-SHA-256-PLUS".into()]));
    let r = login.on_message(&plus_only, &mut BytesMut::new());
    assert_eq!(r, Err(UpstreamError::UnsupportedAuth(10)));
}

#[test]
fn out_of_order_messages_are_protocol_errors() {
    let mut out = BytesMut::new();
    for m in [
        msg(b'S', b"a\0b\0"),
        msg(b'K', &[0; 8]),
        msg(b'Z', b"I"),
        msg(b'D', b""),
        msg(b'v', &[0; 8]),
        auth_msg(Authentication::SASLContinue(b"r=x".to_vec().into())).to_vec(),
        auth_msg(Authentication::SASLFinal(b"v=x".to_vec().into())).to_vec(),
    ] {
        let r = Login::new("app", Some("pw")).on_message(&m, &mut out);
        assert!(matches!(r, Err(UpstreamError::Protocol(_))), "{m:?}: {r:?}");
    }
    // A second challenge after a password was sent.
    let mut login = Login::new("app", Some("pw"));
    login
        .on_message(&auth_msg(Authentication::CleartextPassword), &mut out)
        .unwrap();
    let r = login.on_message(&auth_msg(Authentication::CleartextPassword), &mut out);
    assert!(matches!(r, Err(UpstreamError::Protocol(_))));
    // An authentication request after AuthenticationOk.
    let mut login = Login::new("app", None);
    login
        .on_message(&auth_msg(Authentication::Ok), &mut out)
        .unwrap();
    let r = login.on_message(&auth_msg(Authentication::Ok), &mut out);
    assert!(matches!(r, Err(UpstreamError::Protocol(_))));
}

#[test]
fn server_error_fields_as_sent() {
    let e = msg(
        b'E',
        b"SFATAL\0VFATAL\0C3D000\0Mdatabase \"nope\" does not exist\0Fpostinit.c\0\0",
    );
    let r = Login::new("app", None).on_message(&e, &mut BytesMut::new());
    assert_eq!(
        r,
        Err(UpstreamError::Server(vec![
            (b'S', "FATAL".into()),
            (b'V', "FATAL".into()),
            (b'C', "3D000".into()),
            (b'M', "database \"nope\" does not exist".into()),
            (b'F', "postinit.c".into()),
        ]))
    );
    // Truncated: keep what is there.
    assert_eq!(
        parse_fields(b"C28P01\0Mpass"),
        [(b'C', "28P01".into()), (b'M', "pass".into())]
    );
    assert!(parse_fields(b"").is_empty());
}

#[test]
fn startup_message_layout() {
    let params = vec![
        ("application_name".to_owned(), "psql".to_owned()),
        ("user".to_owned(), "evil".to_owned()),
        ("DateStyle".to_owned(), "ISO, MDY".to_owned()),
    ];
    let mut ours = BytesMut::new();
    startup_message("app", "appdb", &params, &mut ours).unwrap();
    let mut theirs = BytesMut::new();
    frontend::startup_message(
        [
            ("user", "app"),
            ("database", "appdb"),
            ("application_name", "psql"),
            ("DateStyle", "ISO, MDY"),
        ],
        &mut theirs,
    )
    .unwrap();
    assert_eq!(ours, theirs);
    assert_eq!(&ours[4..8], &196_608i32.to_be_bytes());
    let bad = vec![("options".to_owned(), "a\0b".to_owned())];
    assert!(startup_message("app", "appdb", &bad, &mut BytesMut::new()).is_err());
}

#[test]
fn parse_auth_request_bounds() {
    assert_eq!(parse_auth_request(&[0, 0, 0, 0]), Ok(AuthRequest::Ok));
    assert_eq!(
        parse_auth_request(&[0, 0, 0, 5, 9, 8, 7, 6]),
        Ok(AuthRequest::Md5 { salt: [9, 8, 7, 6] })
    );
    assert!(parse_auth_request(&[0, 0, 0, 5, 9, 8, 7]).is_err());
    assert!(parse_auth_request(&[0, 0, 0, 5, 9, 8, 7, 6, 5]).is_err());
    assert!(parse_auth_request(&[0, 0, 0]).is_err());
    assert!(parse_auth_request(&[0, 0, 0, 10, b'X']).is_err());
    assert_eq!(
        parse_auth_request(b"\0\0\0\x0aA\0B\0\0"),
        Ok(AuthRequest::Sasl(vec![b"A", b"B"]))
    );
}

/// Property-style: random and mutated server messages never panic.
#[test]
fn garbage_never_panics() {
    let mut rng = StdRng::seed_from_u64(7);
    let seeds: Vec<Vec<u8>> = vec![
        auth_msg(Authentication::SASL(vec!["SCRAM-SHA-256".into()])).to_vec(),
        auth_msg(Authentication::MD5Password(vec![1, 2, 3, 4])).to_vec(),
        auth_msg(Authentication::SASLContinue(
            b"r=abc,s=c2FsdA==,i=4096".to_vec().into(),
        ))
        .to_vec(),
        msg(b'S', b"a\0b\0"),
        msg(b'K', &[0; 8]),
        msg(b'E', b"C28P01\0\0"),
        msg(b'Z', b"I"),
    ];
    for _ in 0..5000 {
        let mut login = Login::new("app", Some("pw"));
        let mut out = BytesMut::new();
        for _ in 0..rng.gen_range(1..5) {
            let mut m = seeds[rng.gen_range(0..seeds.len())].clone();
            for _ in 0..rng.gen_range(0..4) {
                match rng.gen_range(0..3) {
                    0 if !m.is_empty() => {
                        let i = rng.gen_range(0..m.len());
                        m[i] = rng.r#gen();
                    }
                    1 => m.truncate(rng.gen_range(0..=m.len())),
                    _ => m.push(rng.r#gen()),
                }
            }
            if login.on_message(&m, &mut out).is_err() {
                break;
            }
            out.clear();
        }
    }
    let mut b = BytesMut::new();
    b.put_u8(0);
    let _ = Login::new("app", None).on_message(&b, &mut BytesMut::new());
    let _ = Login::new("app", None).on_message(&[], &mut BytesMut::new());
}
