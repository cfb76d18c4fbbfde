use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;

const MOCK_SECRET: [u8; 32] = [7; 32];

/// RFC 7677 section 3: user "user", password "pencil".
#[test]
fn rfc7677_vector() {
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let verifier = ScramVerifier::from_password("pencil", &salt, 4096);
    let mut server = ScramServer::new(verifier, true);
    let server_first = server
        .client_first_with_nonce(
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        )
        .unwrap();
    assert_eq!(
        server_first,
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let server_final = server
        .client_final(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        )
        .unwrap();
    assert_eq!(
        server_final,
        b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    );
}

#[test]
fn verifier_matches_postgres_protocol_and_round_trips() {
    for pw in [
        "secret",
        "pässwörd",
        "I\u{00AD}X",
        "tab\there",
        "\u{0007}bell",
        "",
    ] {
        let stored = postgres_protocol::password::scram_sha_256(pw.as_bytes());
        let parsed = ScramVerifier::parse(&stored).unwrap();
        assert_eq!(parsed.encode(), stored);
        assert_eq!(parsed.iterations, 4096);
        // Same salt and password -> same keys: our SASLprep fallback matches theirs.
        let ours = ScramVerifier::from_password(pw, &parsed.salt, parsed.iterations);
        assert_eq!(ours, parsed, "password {pw:?}");
    }
    // SASLprep maps the soft hyphen to nothing: "I\u{AD}X" and "IX" are the same password.
    let salt = b"0123456789abcdef";
    assert_eq!(
        ScramVerifier::from_password("I\u{00AD}X", salt, 4096),
        ScramVerifier::from_password("IX", salt, 4096)
    );
}

#[test]
fn parse_rejects_malformed() {
    let good = postgres_protocol::password::scram_sha_256(b"pw");
    assert!(ScramVerifier::parse(&good).is_ok());
    let (head, keys) = good.rsplit_once('$').unwrap();
    let (stored, _server) = keys.split_once(':').unwrap();
    for bad in [
        String::new(),
        "SCRAM-SHA-256$".into(),
        good.replace("SCRAM-SHA-256$", "SCRAM-SHA-1$"),
        good.replace("$4096:", "$x:"),
        good.replace("$4096:", "$0:"),
        good.replace("$4096:", "$-1:"),
        good.replace("$4096:", "$99999999999:"),
        format!("{head}${stored}"),
        format!("{head}${stored}:"),
        format!("{head}${stored}:AAAA"),
        format!("{head}${stored}:{stored}A"),
        format!("{head}$!!!:{stored}"),
        "SCRAM-SHA-256$4096:$AAAA:AAAA".into(),
        format!("SCRAM-SHA-256$4096:***${stored}:{stored}"),
    ] {
        assert!(ScramVerifier::parse(&bad).is_err(), "{bad}");
    }
}

#[test]
fn mock_is_stable_and_shaped_like_a_real_verifier() {
    let a = ScramVerifier::mock("bob", &MOCK_SECRET);
    assert_eq!(a, ScramVerifier::mock("bob", &MOCK_SECRET));
    assert_ne!(a.salt, ScramVerifier::mock("alice", &MOCK_SECRET).salt);
    assert_ne!(a.salt, ScramVerifier::mock("bob", &[8; 32]).salt);
    assert_eq!(a.salt.len(), DEFAULT_SALT_LEN);
    assert_eq!(a.iterations, DEFAULT_ITERATIONS);
    // A plaintext user shows the same salt as an unknown user of that name would.
    let p = ScramVerifier::for_plain_password("bob", "pw", &MOCK_SECRET);
    assert_eq!(p.salt, a.salt);
    assert_eq!(p.iterations, a.iterations);
    assert!(ScramVerifier::parse(&a.encode()).is_ok());
}

/// Runs a full exchange with postgres_protocol's client; returns the server's final result.
fn exchange(
    password: &str,
    verifier: ScramVerifier,
    succeed_possible: bool,
    binding: ChannelBinding,
) -> Result<(), AuthError> {
    let mut client = ScramSha256::new(password.as_bytes(), binding);
    let mut server = ScramServer::new(verifier, succeed_possible);
    let first = server.client_first(client.message())?;
    client.update(&first).unwrap();
    let fin = server.client_final(client.message())?;
    client
        .finish(&fin)
        .expect("the client verifies the server signature");
    Ok(())
}

#[test]
fn full_exchange_with_postgres_protocol_client() {
    let stored = postgres_protocol::password::scram_sha_256(b"s3cret");
    let v = ScramVerifier::parse(&stored).unwrap();
    exchange("s3cret", v.clone(), true, ChannelBinding::unsupported()).unwrap();
    // 'y': the client could bind but thinks we cannot: allowed (we offer no PLUS).
    exchange("s3cret", v.clone(), true, ChannelBinding::unrequested()).unwrap();
    let plain = ScramVerifier::for_plain_password("app", "s3cret", &MOCK_SECRET);
    exchange("s3cret", plain, true, ChannelBinding::unsupported()).unwrap();

    let wrong = exchange("s3creT", v.clone(), true, ChannelBinding::unsupported());
    assert!(matches!(wrong, Err(AuthError::Rejected)), "{wrong:?}");
    // The right password still fails when success is impossible (mock path).
    let impossible = exchange("s3cret", v, false, ChannelBinding::unsupported());
    assert!(matches!(impossible, Err(AuthError::Rejected)));
    let mock = exchange(
        "anything",
        ScramVerifier::mock("ghost", &MOCK_SECRET),
        false,
        ChannelBinding::unsupported(),
    );
    assert!(matches!(mock, Err(AuthError::Rejected)));
}

#[test]
fn server_nonce_is_fresh_and_long_enough() {
    let v = ScramVerifier::mock("u", &MOCK_SECRET);
    let nonce = |s: &[u8]| {
        let s = std::str::from_utf8(s).unwrap();
        s.strip_prefix("r=abc")
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .to_owned()
    };
    let a = nonce(
        &ScramServer::new(v.clone(), false)
            .client_first(b"n,,n=,r=abc")
            .unwrap(),
    );
    let b = nonce(
        &ScramServer::new(v, false)
            .client_first(b"n,,n=,r=abc")
            .unwrap(),
    );
    assert_ne!(a, b);
    assert!(B64.decode(&a).unwrap().len() >= 18);
}

fn protocol_err(r: Result<Vec<u8>, AuthError>) -> String {
    match r {
        Err(AuthError::Protocol(m)) => m,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn refuses_what_postgres_refuses() {
    let v = || ScramVerifier::mock("u", &MOCK_SECRET);
    let first = |m: &[u8]| ScramServer::new(v(), true).client_first(m);
    let m = protocol_err(first(b"p=tls-server-end-point,,n=,r=abc"));
    assert!(m.contains("SCRAM-SHA-256-PLUS"), "{m}");
    protocol_err(first(b"n,a=admin,n=,r=abc"));
    protocol_err(first(b"n,,m=ext,n=,r=abc"));
    protocol_err(first(b"n,,n=,r="));
    protocol_err(first(b"n,,n=,r=a\x01b"));
    protocol_err(first(b"n,,r=abc"));
    protocol_err(first(b"x,,n=,r=abc"));
    protocol_err(first(b"n,,n=,r=abc\0"));
    protocol_err(first(b"n,,n=,r=\xff\xfe"));
    // Extensions after the nonce are allowed and ignored.
    first(b"n,,n=user,r=abc,x=ext").unwrap();
}

#[test]
fn final_message_must_match_the_exchange() {
    let password = "pw";
    let stored = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let v = ScramVerifier::parse(&stored).unwrap();
    let setup = || {
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let mut server = ScramServer::new(v.clone(), true);
        let first = server.client_first(client.message()).unwrap();
        client.update(&first).unwrap();
        (
            server,
            String::from_utf8(client.message().to_vec()).unwrap(),
        )
    };
    // Sanity: unmodified works.
    let (mut s, fin) = setup();
    s.client_final(fin.as_bytes()).unwrap();
    // The channel-binding echo must match the GS2 header we saw ("n,," -> "biws").
    let (mut s, fin) = setup();
    protocol_err(s.client_final(fin.replacen("c=biws", "c=eSws", 1).as_bytes()));
    // The nonce must be ours.
    let (mut s, fin) = setup();
    protocol_err(s.client_final(fin.replacen(",r=", ",r=X", 1).as_bytes()));
    // The proof must be 32 bytes of base64 and the last attribute.
    let (mut s, fin) = setup();
    protocol_err(s.client_final(format!("{fin},x=1").as_bytes()));
    let (mut s, fin) = setup();
    let (head, _) = fin.rsplit_once(",p=").unwrap();
    protocol_err(s.client_final(format!("{head},p=AAAA").as_bytes()));
    // A flipped proof is a wrong password, not a protocol error.
    let (mut s, fin) = setup();
    let (head, proof) = fin.rsplit_once(",p=").unwrap();
    let mut raw = B64.decode(proof).unwrap();
    raw[0] ^= 1;
    let r = s.client_final(format!("{head},p={}", B64.encode(raw)).as_bytes());
    assert!(matches!(r, Err(AuthError::Rejected)));
}

#[test]
fn out_of_order_calls_are_errors() {
    let v = ScramVerifier::mock("u", &MOCK_SECRET);
    let mut s = ScramServer::new(v.clone(), true);
    protocol_err(s.client_final(b"c=biws,r=abc,p=AAAA"));
    let mut s = ScramServer::new(v.clone(), true);
    s.client_first(b"n,,n=,r=abc").unwrap();
    protocol_err(s.client_first(b"n,,n=,r=abc"));
    protocol_err(s.client_final(b"c=biws,r=abc,p=AAAA"));
    // A failed first message ends the exchange too.
    let mut s = ScramServer::new(v, true);
    protocol_err(s.client_first(b"garbage"));
    protocol_err(s.client_first(b"n,,n=,r=abc"));
}

/// Property-style: truncated, garbled and random messages give errors, never panics.
#[test]
fn malformed_inputs_never_panic() {
    let stored = postgres_protocol::password::scram_sha_256(b"pw");
    let v = ScramVerifier::parse(&stored).unwrap();
    let mut client = ScramSha256::new(b"pw", ChannelBinding::unsupported());
    let first_msg = client.message().to_vec();
    let mut server = ScramServer::new(v.clone(), true);
    let server_first = server.client_first(&first_msg).unwrap();
    client.update(&server_first).unwrap();
    let final_msg = client.message().to_vec();
    let nonce_server = || {
        let mut s = ScramServer::new(v.clone(), true);
        // Reuse the same server nonce so the valid final message would verify.
        let nonce = std::str::from_utf8(&server_first).unwrap();
        let full = nonce.strip_prefix("r=").unwrap().split(',').next().unwrap();
        let client_nonce = std::str::from_utf8(&first_msg)
            .unwrap()
            .rsplit("r=")
            .next()
            .unwrap();
        let server_nonce = full.strip_prefix(client_nonce).unwrap();
        s.client_first_with_nonce(&first_msg, server_nonce).unwrap();
        s
    };
    assert!(nonce_server().client_final(&final_msg).is_ok());

    for len in 0..first_msg.len() {
        let _ = ScramServer::new(v.clone(), true).client_first(&first_msg[..len]);
    }
    for len in 0..final_msg.len() {
        assert!(
            nonce_server().client_final(&final_msg[..len]).is_err(),
            "len {len}"
        );
    }
    let mut rng = StdRng::seed_from_u64(0x5c4a);
    for _ in 0..3000 {
        let garble = |m: &[u8], rng: &mut StdRng| {
            let mut m = m.to_vec();
            for _ in 0..rng.gen_range(1..4) {
                match rng.gen_range(0..4) {
                    0 if !m.is_empty() => {
                        let i = rng.gen_range(0..m.len());
                        m[i] = rng.r#gen();
                    }
                    1 if !m.is_empty() => {
                        let i = rng.gen_range(0..m.len());
                        m.remove(i);
                    }
                    2 => {
                        let i = rng.gen_range(0..=m.len());
                        m.insert(i, *b",=\0\xffpcrn".get(rng.gen_range(0..8)).unwrap());
                    }
                    _ => {
                        let len = rng.gen_range(0..40);
                        m = (0..len).map(|_| rng.r#gen()).collect();
                    }
                }
            }
            m
        };
        let g = garble(&first_msg, &mut rng);
        let _ = ScramServer::new(v.clone(), true).client_first(&g);
        let g = garble(&final_msg, &mut rng);
        if g != final_msg {
            assert!(nonce_server().client_final(&g).is_err());
        }
    }
}

/// A stand-in for the hash of the proxy's certificate.
const CERT_HASH: &[u8] = b"\x01\x02cert-hash-bytes\xfe";

fn binding_verifier() -> ScramVerifier {
    ScramVerifier::from_password("pw", b"0123456789abcdef", 4096)
}

/// A full exchange with postgres_protocol's client: the server offers PLUS with `offered`
/// (None = plaintext), the client names `mechanism` and binds as `binding` says. Returns the
/// ClientKey the server recovered.
fn exchange_with_binding(
    offered: Option<&[u8]>,
    mechanism: &str,
    binding: ChannelBinding,
) -> Result<Option<[u8; 32]>, AuthError> {
    let mut server = ScramServer::new(binding_verifier(), true);
    if let Some(data) = offered {
        server = server.with_channel_binding(data);
    }
    server.select_mechanism(mechanism.as_bytes())?;
    let mut client = ScramSha256::new(b"pw", binding);
    let first = server.client_first(client.message())?;
    client.update(&first).unwrap();
    let fin = server.client_final(client.message())?;
    client
        .finish(&fin)
        .expect("the client verifies the server signature");
    Ok(server.client_key())
}

#[test]
fn mechanisms_offered() {
    let v = ScramVerifier::mock("u", &MOCK_SECRET);
    assert_eq!(ScramServer::new(v.clone(), true).mechanisms(), [MECHANISM]);
    assert_eq!(
        ScramServer::new(v, true)
            .with_channel_binding(CERT_HASH)
            .mechanisms(),
        ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
    );
}

#[test]
fn plus_with_the_right_binding_succeeds() {
    let key = exchange_with_binding(
        Some(CERT_HASH),
        MECHANISM_PLUS,
        ChannelBinding::tls_server_end_point(CERT_HASH.to_vec()),
    )
    .unwrap();
    // The recovered ClientKey is the password's: SHA-256 of it is the StoredKey.
    let v = binding_verifier();
    let expected = hmac_sha256(&hi(b"pw", &v.salt, v.iterations), &[b"Client Key"]);
    assert_eq!(key, Some(expected));
}

#[test]
fn plus_with_another_certificate_is_refused() {
    // What a client behind a man in the middle computes: the hash of the MITM's certificate.
    let e = exchange_with_binding(
        Some(CERT_HASH),
        MECHANISM_PLUS,
        ChannelBinding::tls_server_end_point(b"mitm-cert-hash".to_vec()),
    )
    .unwrap_err();
    assert!(
        matches!(&e, AuthError::Protocol(m) if m.contains("channel binding")),
        "{e:?}"
    );
    // One byte off, same length.
    let mut near = CERT_HASH.to_vec();
    near[3] ^= 1;
    let e = exchange_with_binding(
        Some(CERT_HASH),
        MECHANISM_PLUS,
        ChannelBinding::tls_server_end_point(near),
    )
    .unwrap_err();
    assert!(matches!(e, AuthError::Protocol(_)), "{e:?}");
}

#[test]
fn binding_negotiation_follows_postgres() {
    let over_tls = Some(CERT_HASH);
    let bind = || ChannelBinding::tls_server_end_point(CERT_HASH.to_vec());
    // Over TLS, a client that cannot bind ('n') uses plain SCRAM: fine.
    exchange_with_binding(over_tls, MECHANISM, ChannelBinding::unsupported()).unwrap();
    // 'y' over TLS: the client thinks we cannot bind, but we offered PLUS: a downgrade.
    let e = exchange_with_binding(over_tls, MECHANISM, ChannelBinding::unrequested());
    assert!(
        matches!(&e, Err(AuthError::Protocol(m)) if m.contains("SCRAM channel binding negotiation error")),
        "{e:?}"
    );
    // PLUS must carry binding data, and binding data needs PLUS.
    let e = exchange_with_binding(over_tls, MECHANISM_PLUS, ChannelBinding::unsupported());
    assert!(matches!(e, Err(AuthError::Protocol(_))), "{e:?}");
    let e = exchange_with_binding(over_tls, MECHANISM_PLUS, ChannelBinding::unrequested());
    assert!(matches!(e, Err(AuthError::Protocol(_))), "{e:?}");
    let e = exchange_with_binding(over_tls, MECHANISM, bind());
    assert!(matches!(e, Err(AuthError::Protocol(_))), "{e:?}");
    // Plaintext: PLUS cannot even be selected, 'p' is refused, 'y' and 'n' are fine.
    let e = exchange_with_binding(None, MECHANISM_PLUS, bind());
    assert!(
        matches!(&e, Err(AuthError::Protocol(m)) if m.contains("invalid SASL authentication mechanism")),
        "{e:?}"
    );
    let e = exchange_with_binding(None, MECHANISM, bind());
    assert!(matches!(e, Err(AuthError::Protocol(_))), "{e:?}");
    exchange_with_binding(None, MECHANISM, ChannelBinding::unrequested()).unwrap();
    exchange_with_binding(None, MECHANISM, ChannelBinding::unsupported()).unwrap();
    // Unknown mechanisms are refused either way.
    for offered in [None, over_tls] {
        let e = exchange_with_binding(offered, "SCRAM-SHA-1", ChannelBinding::unsupported());
        assert!(matches!(e, Err(AuthError::Protocol(_))), "{e:?}");
    }
}

#[test]
fn plus_refuses_other_binding_types() {
    let v = ScramVerifier::mock("u", &MOCK_SECRET);
    let mut s = ScramServer::new(v, true).with_channel_binding(CERT_HASH);
    s.select_mechanism(MECHANISM_PLUS.as_bytes()).unwrap();
    let m = protocol_err(s.client_first(b"p=tls-unique,,n=,r=abc"));
    assert!(m.contains("unsupported SCRAM channel-binding type"), "{m}");
    let mut s = ScramServer::new(ScramVerifier::mock("u", &MOCK_SECRET), true)
        .with_channel_binding(CERT_HASH);
    s.select_mechanism(MECHANISM_PLUS.as_bytes()).unwrap();
    protocol_err(s.client_first(b"p=tls-server-end-point,a=admin,n=,r=abc"));
}

#[test]
fn client_key_only_after_success() {
    let stored = postgres_protocol::password::scram_sha_256(b"pw");
    let v = ScramVerifier::parse(&stored).unwrap();
    for (password, possible, expect) in [
        ("pw", true, true),
        ("nope", true, false),
        ("pw", false, false),
    ] {
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let mut server = ScramServer::new(v.clone(), possible);
        assert_eq!(server.client_key(), None);
        let first = server.client_first(client.message()).unwrap();
        client.update(&first).unwrap();
        assert_eq!(server.client_key(), None);
        let r = server.client_final(client.message());
        assert_eq!(r.is_ok(), expect);
        assert_eq!(server.client_key().is_some(), expect);
    }
}
