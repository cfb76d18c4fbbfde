//! The server side of SCRAM-SHA-256 (`auth::scram::ScramServer`) fed an arbitrary
//! client-first-message and then an arbitrary client-final-message, plus `ScramVerifier::parse`
//! and `auth::Secret::parse` on arbitrary strings. Nothing a client sends may panic.
//!
//! Input: byte 0 = flags, then client-first, a 0xFF byte (never valid UTF-8, so never part of a
//! real message), then client-final. In client-final, `{nonce}` is replaced with the combined
//! nonce the server chose (random per run, so the fuzzer could never guess it). Flags:
//! - bit 0: append `,p=<a correct proof>` for the final message as given (so the fuzzer
//!   explores everything after the proof check, extensions included);
//! - bit 1: `succeed_possible = false` (the unknown-user path).
//!
//! Invariants: the server-first-message echoes the client nonce and carries our salt and
//! iteration count; a correct proof is never `Rejected` when success is possible and never
//! accepted when not; an accepted exchange returns the right ServerSignature; a finished
//! exchange refuses further messages; a parsed verifier round-trips through `encode`.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use lagoon::auth::scram::{ScramServer, ScramVerifier};
use lagoon::auth::{AuthError, Secret};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const PASSWORD: &str = "pw";
const SALT: &[u8] = b"salt1234salt1234";
const ITERATIONS: u32 = 4096;

struct Keys {
    verifier: ScramVerifier,
    client_key: [u8; 32],
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let verifier = ScramVerifier::from_password(PASSWORD, SALT, ITERATIONS);
        // Hi() computed independently of lagoon, as a client would.
        let mut u = hmac(PASSWORD.as_bytes(), &[SALT, &1u32.to_be_bytes()]);
        let mut salted = u;
        for _ in 1..ITERATIONS {
            u = hmac(PASSWORD.as_bytes(), &[&u]);
            for (s, x) in salted.iter_mut().zip(u) {
                *s ^= x;
            }
        }
        let client_key = hmac(&salted, &[b"Client Key"]);
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        assert_eq!(stored, verifier.stored_key);
        assert_eq!(hmac(&salted, &[b"Server Key"]), verifier.server_key);
        Keys {
            verifier,
            client_key,
        }
    })
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fuzz_target!(|data: &[u8]| {
    secrets(data);

    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let with_proof = flags & 1 != 0;
    let succeed_possible = flags & 2 == 0;
    let (first, fin) = match rest.iter().position(|&b| b == 0xff) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };

    let k = keys();
    let mut server = ScramServer::new(k.verifier.clone(), succeed_possible);
    let server_first = match server.client_first(first) {
        Ok(m) => m,
        Err(e) => {
            assert!(matches!(e, AuthError::Protocol(_)), "{e:?}");
            // The exchange is over: a client-final is refused too.
            assert!(server.client_final(fin).is_err());
            return;
        }
    };
    let server_first = String::from_utf8(server_first).expect("server-first is text");
    let first = std::str::from_utf8(first).expect("accepted client-first is UTF-8");
    let bare = &first[3..];
    let client_nonce = bare.split(',').nth(1).unwrap().strip_prefix("r=").unwrap();
    let mut parts = server_first.split(',');
    let nonce = parts.next().unwrap().strip_prefix("r=").unwrap().to_owned();
    assert!(nonce.starts_with(client_nonce) && nonce.len() > client_nonce.len());
    assert_eq!(parts.next(), Some(&*format!("s={}", B64.encode(SALT))));
    assert_eq!(parts.next(), Some(&*format!("i={ITERATIONS}")));
    assert_eq!(parts.next(), None);

    // A second client-first is refused (and ends the exchange): try it on a clone of the state
    // only by running a fresh server, since the real one must go on.
    {
        let mut again = ScramServer::new(k.verifier.clone(), succeed_possible);
        if again.client_first(first.as_bytes()).is_ok() {
            assert!(again.client_first(first.as_bytes()).is_err());
            assert!(again.client_final(b"c=biws,r=x,p=").is_err());
        }
    }

    // Client-final, with the real nonce spliced in and maybe a correct proof.
    let fin = String::from_utf8_lossy(fin).replace("{nonce}", &nonce);
    let fin = if with_proof {
        let auth_message = format!("{bare},{server_first},{fin}");
        let sig = hmac(&k.verifier.stored_key, &[auth_message.as_bytes()]);
        let mut proof = k.client_key;
        for (p, s) in proof.iter_mut().zip(sig) {
            *p ^= s;
        }
        format!("{fin},p={}", B64.encode(proof))
    } else {
        fin
    };
    let result = server.client_final(fin.as_bytes());
    match &result {
        Ok(server_final) => {
            assert!(succeed_possible, "accepted although success was impossible");
            let (without_proof, _) = fin.rsplit_once(",p=").unwrap();
            let auth_message = format!("{bare},{server_first},{without_proof}");
            let sig = hmac(&k.verifier.server_key, &[auth_message.as_bytes()]);
            assert_eq!(server_final, format!("v={}", B64.encode(sig)).as_bytes());
        }
        Err(AuthError::Rejected) => {
            // The server splits at the last ",p=", which is the one we appended (base64 has no
            // comma), so its AuthMessage is the one our proof was computed over.
            assert!(
                !(with_proof && succeed_possible),
                "a correct proof was rejected: {fin:?}"
            );
        }
        Err(e) => assert!(matches!(e, AuthError::Protocol(_)), "{e:?}"),
    }
    assert!(
        server.client_final(fin.as_bytes()).is_err(),
        "exchange must be over"
    );
    assert!(
        server.client_first(first.as_bytes()).is_err(),
        "exchange must be over"
    );
});

fn secrets(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    for s in [s.to_string(), format!("SCRAM-SHA-256${s}")] {
        let v = ScramVerifier::parse(&s);
        if let Ok(v) = &v {
            assert!(v.iterations > 0 && !v.salt.is_empty());
            assert_eq!(ScramVerifier::parse(&v.encode()).as_ref().ok(), Some(v));
        }
        match Secret::parse(&s) {
            Ok(Secret::Scram(sv)) => assert_eq!(Some(&sv), v.as_ref().ok()),
            Ok(Secret::Md5(m)) => {
                assert_eq!(m, s);
                assert_eq!(m.len(), 35);
            }
            Ok(Secret::Plain(p)) => {
                assert_eq!(p, s);
                assert!(!s.starts_with("SCRAM-SHA-256$"));
            }
            Err(e) => {
                assert!(matches!(e, AuthError::InvalidSecret(_)));
                assert!(s.starts_with("SCRAM-SHA-256$") && v.is_err());
            }
        }
    }
}
