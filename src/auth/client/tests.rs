//! `authenticate_client` over `tokio::io::duplex`, with postgres_protocol's frontend messages
//! and SCRAM client playing the application.

use bytes::{BufMut, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::backend::Message as Backend;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::error::ClientFacing;
use crate::protocol::sqlstate;

const MOCK: [u8; 32] = [42; 32];
const USER: &str = "app";

/// Starts the server side; returns the client end and the server's result.
fn start(
    method: Method,
    secret: Option<Secret>,
) -> (DuplexStream, tokio::task::JoinHandle<Result<(), AuthError>>) {
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(async move {
        let mut buf = BytesMut::new();
        let r =
            authenticate_client(&mut server, &mut buf, USER, method, secret.as_ref(), &MOCK).await;
        drop(server);
        r
    });
    (client, task)
}

/// Reads one backend message; `None` at end of stream.
async fn recv(c: &mut DuplexStream, buf: &mut BytesMut) -> Option<Backend> {
    loop {
        if let Some(m) = Backend::parse(buf).unwrap() {
            return Some(m);
        }
        if c.read_buf(buf).await.unwrap() == 0 {
            assert!(buf.is_empty(), "trailing bytes");
            return None;
        }
    }
}

async fn send(c: &mut DuplexStream, f: impl FnOnce(&mut BytesMut)) {
    let mut out = BytesMut::new();
    f(&mut out);
    c.write_all(&out).await.unwrap();
}

/// Plays the SCRAM client; returns the server-first-message it saw and whether the client
/// received and verified SASLFinal + AuthenticationOk.
async fn scram_client(c: &mut DuplexStream, password: &str) -> (String, bool) {
    let mut buf = BytesMut::new();
    // AuthenticationSASL offering exactly SCRAM-SHA-256, checked byte for byte.
    let sasl = read_message(c, &mut buf, 8192).await.unwrap().unwrap();
    let mut expected = BytesMut::new();
    expected.put_u8(b'R');
    expected.put_i32(4 + 4 + 15);
    expected.put_i32(10);
    expected.put_slice(b"SCRAM-SHA-256\0\0");
    assert_eq!(sasl, expected);
    let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    send(c, |o| {
        frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), o).unwrap()
    })
    .await;
    let Some(Backend::AuthenticationSaslContinue(body)) = recv(c, &mut buf).await else {
        panic!("expected AuthenticationSASLContinue");
    };
    let server_first = String::from_utf8(body.data().to_vec()).unwrap();
    scram.update(body.data()).unwrap();
    send(c, |o| frontend::sasl_response(scram.message(), o).unwrap()).await;
    match recv(c, &mut buf).await {
        Some(Backend::AuthenticationSaslFinal(body)) => {
            scram.finish(body.data()).unwrap();
            let ok = matches!(recv(c, &mut buf).await, Some(Backend::AuthenticationOk));
            (server_first, ok)
        }
        None => (server_first, false),
        Some(_) => panic!("unexpected message"),
    }
}

/// Plays the md5 client; returns whether AuthenticationOk came.
async fn md5_client(c: &mut DuplexStream, password: &str) -> bool {
    let mut buf = BytesMut::new();
    let Some(Backend::AuthenticationMd5Password(body)) = recv(c, &mut buf).await else {
        panic!("expected AuthenticationMD5Password");
    };
    let answer = postgres_protocol::authentication::md5_hash(
        USER.as_bytes(),
        password.as_bytes(),
        body.salt(),
    );
    send(c, |o| {
        frontend::password_message(answer.as_bytes(), o).unwrap()
    })
    .await;
    matches!(recv(c, &mut buf).await, Some(Backend::AuthenticationOk))
}

fn assert_password_failed(r: Result<(), AuthError>) {
    let e = r.unwrap_err();
    assert!(
        matches!(&e, AuthError::InvalidPassword { user } if user == USER),
        "{e:?}"
    );
    assert_eq!(e.sqlstate(), sqlstate::INVALID_PASSWORD);
    assert_eq!(
        e.client_message(),
        "password authentication failed for user \"app\""
    );
}

fn assert_protocol(r: Result<(), AuthError>) {
    let e = r.unwrap_err();
    assert_eq!(e.sqlstate(), sqlstate::PROTOCOL_VIOLATION, "{e:?}");
}

fn plain(pw: &str) -> Option<Secret> {
    Some(Secret::Plain(pw.into()))
}

#[tokio::test]
async fn scram_with_plain_and_verifier_secrets() {
    let verifier = Secret::parse(&postgres_protocol::password::scram_sha_256(b"pw")).unwrap();
    for secret in [plain("pw"), Some(verifier)] {
        let (mut c, task) = start(Method::ScramSha256, secret);
        let (_, ok) = scram_client(&mut c, "pw").await;
        assert!(ok);
        task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn scram_wrong_password_and_unknown_user_fail_identically() {
    let (mut c, task) = start(Method::ScramSha256, plain("pw"));
    let (known_first, ok) = scram_client(&mut c, "wrong").await;
    assert!(!ok);
    assert_password_failed(task.await.unwrap());

    let mut unknown_firsts = Vec::new();
    for _ in 0..2 {
        let (mut c, task) = start(Method::ScramSha256, None);
        let (first, ok) = scram_client(&mut c, "pw").await;
        assert!(!ok);
        assert_password_failed(task.await.unwrap());
        unknown_firsts.push(first);
    }
    // Same salt and iterations for a plaintext user and for an unknown user of that name, and
    // stable across attempts: nothing to tell them apart by.
    let tail = |s: &str| s.split_once(",s=").unwrap().1.to_owned();
    assert_eq!(tail(&known_first), tail(&unknown_firsts[0]));
    assert_eq!(tail(&unknown_firsts[0]), tail(&unknown_firsts[1]));
}

#[tokio::test]
async fn scram_method_with_md5_secret_cannot_succeed() {
    let (mut c, task) = start(
        Method::ScramSha256,
        Some(Secret::Md5(md5::md5_hash(USER, "pw"))),
    );
    let (_, ok) = scram_client(&mut c, "pw").await;
    assert!(!ok);
    assert_password_failed(task.await.unwrap());
}

#[tokio::test]
async fn md5_with_plain_and_hash_secrets() {
    for secret in [plain("pw"), Some(Secret::Md5(md5::md5_hash(USER, "pw")))] {
        let (mut c, task) = start(Method::Md5, secret.clone());
        assert!(md5_client(&mut c, "pw").await);
        task.await.unwrap().unwrap();

        let (mut c, task) = start(Method::Md5, secret);
        assert!(!md5_client(&mut c, "nope").await);
        assert_password_failed(task.await.unwrap());
    }
    let (mut c, task) = start(Method::Md5, None);
    assert!(!md5_client(&mut c, "pw").await);
    assert_password_failed(task.await.unwrap());
}

#[tokio::test]
async fn md5_method_with_scram_verifier_uses_scram() {
    let verifier = Secret::parse(&postgres_protocol::password::scram_sha_256(b"pw")).unwrap();
    let (mut c, task) = start(Method::Md5, Some(verifier));
    let (_, ok) = scram_client(&mut c, "pw").await;
    assert!(ok);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn trust() {
    let (mut c, task) = start(Method::Trust, plain("pw"));
    let mut buf = BytesMut::new();
    assert!(matches!(
        recv(&mut c, &mut buf).await,
        Some(Backend::AuthenticationOk)
    ));
    task.await.unwrap().unwrap();

    // Unknown user under trust: fails at once, nothing written.
    let (mut c, task) = start(Method::Trust, None);
    assert_password_failed(task.await.unwrap());
    assert!(recv(&mut c, &mut buf).await.is_none());
}

#[tokio::test]
async fn wrong_message_type_is_protocol_violation() {
    let (mut c, task) = start(Method::Md5, plain("pw"));
    send(&mut c, |o| frontend::query("SELECT 1", o).unwrap()).await;
    assert_protocol(task.await.unwrap());
}

#[tokio::test]
async fn client_hanging_up_is_closed() {
    let (c, task) = start(Method::ScramSha256, plain("pw"));
    drop(c);
    let e = task.await.unwrap().unwrap_err();
    // Either the write of AuthenticationSASL or the read notices first.
    assert!(matches!(e, AuthError::Closed | AuthError::Io(_)), "{e:?}");
    assert_eq!(e.sqlstate(), sqlstate::CONNECTION_FAILURE);
}

#[tokio::test]
async fn plus_mechanism_is_refused() {
    let (mut c, task) = start(Method::ScramSha256, plain("pw"));
    send(&mut c, |o| {
        frontend::sasl_initial_response("SCRAM-SHA-256-PLUS", b"p=tls-server-end-point,,n=,r=x", o)
            .unwrap()
    })
    .await;
    assert_protocol(task.await.unwrap());
}

#[tokio::test]
async fn oversized_message_is_protocol_violation() {
    let (mut c, task) = start(Method::Md5, plain("pw"));
    let mut out = BytesMut::new();
    out.put_u8(b'p');
    out.put_i32(100_000);
    c.write_all(&out).await.unwrap();
    assert_protocol(task.await.unwrap());
}

#[test]
fn body_parsers_reject_garbage() {
    assert!(parse_password_message(b"abc\0").is_ok());
    for bad in [&b""[..], b"abc", b"a\0b\0", b"\0\0"] {
        assert!(parse_password_message(bad).is_err(), "{bad:?}");
    }
    let mut good = b"SCRAM-SHA-256\0".to_vec();
    good.extend(3i32.to_be_bytes());
    good.extend(b"abc");
    assert_eq!(parse_sasl_initial_response(&good).unwrap(), b"abc");
    for len in 0..good.len() {
        assert!(parse_sasl_initial_response(&good[..len]).is_err());
    }
    let mut minus_one = b"SCRAM-SHA-256\0".to_vec();
    minus_one.extend((-1i32).to_be_bytes());
    assert!(parse_sasl_initial_response(&minus_one).is_err());
    let mut long = good.clone();
    long.push(b'x');
    assert!(parse_sasl_initial_response(&long).is_err());
}
