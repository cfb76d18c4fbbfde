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
use sha2::Digest as _;

const MOCK: [u8; 32] = [42; 32];
const USER: &str = "app";

type Task = tokio::task::JoinHandle<Result<Authenticated, AuthError>>;

/// Starts the server side (plaintext); returns the client end and the server's result.
fn start(method: Method, secret: Option<Secret>) -> (DuplexStream, Task) {
    start_with_binding(method, secret, None)
}

/// Starts the server side as if on TLS with `binding` as the channel-binding data.
fn start_with_binding(
    method: Method,
    secret: Option<Secret>,
    binding: Option<&'static [u8]>,
) -> (DuplexStream, Task) {
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(async move {
        let mut buf = BytesMut::new();
        let r = authenticate_client(
            &mut server,
            &mut buf,
            USER,
            method,
            secret.as_ref(),
            &MOCK,
            binding,
        )
        .await;
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

fn assert_password_failed(r: Result<Authenticated, AuthError>) {
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

fn assert_protocol(r: Result<Authenticated, AuthError>) -> String {
    let e = r.unwrap_err();
    assert_eq!(e.sqlstate(), sqlstate::PROTOCOL_VIOLATION, "{e:?}");
    e.to_string()
}

fn plain(pw: &str) -> Option<Secret> {
    Some(Secret::Plain(pw.into()))
}

#[tokio::test]
async fn scram_with_plain_and_verifier_secrets() {
    let stored = postgres_protocol::password::scram_sha_256(b"pw");
    let verifier = Secret::parse(&stored).unwrap();
    for secret in [plain("pw"), Some(verifier)] {
        let (mut c, task) = start(Method::ScramSha256, secret);
        let (_, ok) = scram_client(&mut c, "pw").await;
        assert!(ok);
        let done = task.await.unwrap().unwrap();
        assert!(done.client_key.is_some());
    }
    // With a stored verifier, the recovered ClientKey is the one its StoredKey hashes.
    let (mut c, task) = start(Method::ScramSha256, Secret::parse(&stored).ok());
    assert!(scram_client(&mut c, "pw").await.1);
    let key = task.await.unwrap().unwrap().client_key.unwrap();
    let v = ScramVerifier::parse(&stored).unwrap();
    assert_eq!(<[u8; 32]>::from(sha2::Sha256::digest(key)), v.stored_key);
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
        assert_eq!(task.await.unwrap().unwrap().client_key, None);

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

/// The AuthenticationSASL a TLS connection gets: PLUS first, as Postgres lists them.
async fn expect_sasl_with_plus(c: &mut DuplexStream, buf: &mut BytesMut) {
    let sasl = read_message(c, buf, 8192).await.unwrap().unwrap();
    assert_eq!(&sasl[5..9], &10i32.to_be_bytes());
    assert_eq!(&sasl[9..], b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
}

/// Runs the SCRAM client over a "TLS" connection: `mechanism` and `binding` as a libpq
/// with `channel_binding=require|prefer|disable` would choose. Returns whether it got in.
async fn scram_client_tls(c: &mut DuplexStream, mechanism: &str, binding: ChannelBinding) -> bool {
    let mut buf = BytesMut::new();
    expect_sasl_with_plus(c, &mut buf).await;
    let mut scram = ScramSha256::new(b"pw", binding);
    send(c, |o| {
        frontend::sasl_initial_response(mechanism, scram.message(), o).unwrap()
    })
    .await;
    let Some(Backend::AuthenticationSaslContinue(body)) = recv(c, &mut buf).await else {
        return false;
    };
    scram.update(body.data()).unwrap();
    send(c, |o| frontend::sasl_response(scram.message(), o).unwrap()).await;
    match recv(c, &mut buf).await {
        Some(Backend::AuthenticationSaslFinal(body)) => {
            scram.finish(body.data()).unwrap();
            matches!(recv(c, &mut buf).await, Some(Backend::AuthenticationOk))
        }
        _ => false,
    }
}

const CERT_HASH: &[u8] = b"certificate-hash-32-bytes-long!!";

#[tokio::test]
async fn tls_offers_plus_and_binding_logs_in() {
    for secret in [
        plain("pw"),
        Secret::parse(&postgres_protocol::password::scram_sha_256(b"pw")).ok(),
    ] {
        let (mut c, task) = start_with_binding(Method::ScramSha256, secret, Some(CERT_HASH));
        let bind = ChannelBinding::tls_server_end_point(CERT_HASH.to_vec());
        assert!(scram_client_tls(&mut c, "SCRAM-SHA-256-PLUS", bind).await);
        assert!(task.await.unwrap().unwrap().client_key.is_some());
    }
    // An md5 method with a SCRAM verifier falls back to SCRAM, PLUS included.
    let verifier = Secret::parse(&postgres_protocol::password::scram_sha_256(b"pw")).ok();
    let (mut c, task) = start_with_binding(Method::Md5, verifier, Some(CERT_HASH));
    let bind = ChannelBinding::tls_server_end_point(CERT_HASH.to_vec());
    assert!(scram_client_tls(&mut c, "SCRAM-SHA-256-PLUS", bind).await);
    task.await.unwrap().unwrap();
    // A client that cannot bind may still use plain SCRAM over TLS.
    let (mut c, task) = start_with_binding(Method::ScramSha256, plain("pw"), Some(CERT_HASH));
    assert!(scram_client_tls(&mut c, "SCRAM-SHA-256", ChannelBinding::unsupported()).await);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn tls_refuses_a_wrong_binding_and_a_downgrade() {
    // The hash of another certificate: a man in the middle.
    let (mut c, task) = start_with_binding(Method::ScramSha256, plain("pw"), Some(CERT_HASH));
    let other = ChannelBinding::tls_server_end_point(b"another-certificate".to_vec());
    assert!(!scram_client_tls(&mut c, "SCRAM-SHA-256-PLUS", other).await);
    assert_protocol(task.await.unwrap());
    // 'y': the client could bind but believes we cannot, although we offered PLUS.
    let (mut c, task) = start_with_binding(Method::ScramSha256, plain("pw"), Some(CERT_HASH));
    assert!(!scram_client_tls(&mut c, "SCRAM-SHA-256", ChannelBinding::unrequested()).await);
    let m = assert_protocol(task.await.unwrap());
    assert!(m.contains("SCRAM channel binding negotiation error"), "{m}");
    // An unknown user over TLS runs the same exchange and fails like a wrong password.
    let (mut c, task) = start_with_binding(Method::ScramSha256, None, Some(CERT_HASH));
    let bind = ChannelBinding::tls_server_end_point(CERT_HASH.to_vec());
    assert!(!scram_client_tls(&mut c, "SCRAM-SHA-256-PLUS", bind).await);
    assert_password_failed(task.await.unwrap());
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
    assert_eq!(
        parse_sasl_initial_response(&good).unwrap(),
        (&b"SCRAM-SHA-256"[..], &b"abc"[..])
    );
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
