//! Postgres's legacy md5 password scheme, both directions: the stored hash
//! (`"md5" + hex(md5(password || user))`) and the salted challenge response
//! (`"md5" + hex(md5(hex_part || salt))`).
//!
//! md5 is pass-the-hash: whoever holds the stored hash can answer any challenge. We keep it for
//! clients and servers that still require it; SCRAM is preferred everywhere else.

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// Length of a stored hash or a response: `"md5"` plus 32 hex digits.
pub const MD5_HASH_LEN: usize = 35;

/// The stored form of a password, `"md5" + hex(md5(password || user))`, as in
/// `pg_authid.rolpassword`.
pub fn md5_hash(user: &str, password: &str) -> String {
    let mut h = Md5::new();
    h.update(password.as_bytes());
    h.update(user.as_bytes());
    with_prefix(&h.finalize())
}

/// The answer to an `AuthenticationMD5Password` challenge, computed from the stored hash:
/// `"md5" + hex(md5(hex_part || salt))` where `hex_part` is the stored hash without its `md5`
/// prefix. A hash without the prefix is used as is, so a caller's mistake yields a wrong answer,
/// never a panic.
pub fn md5_response(stored_md5_hash: &str, salt: [u8; 4]) -> String {
    let hex_part = stored_md5_hash
        .strip_prefix("md5")
        .unwrap_or(stored_md5_hash);
    let mut h = Md5::new();
    h.update(hex_part.as_bytes());
    h.update(salt);
    with_prefix(&h.finalize())
}

/// Checks a client's `PasswordMessage` (without the trailing NUL) against the stored hash.
/// The comparison is constant-time in the contents; only the (public) length may short-cut.
pub fn verify(stored_md5_hash: &str, salt: [u8; 4], client_response: &[u8]) -> bool {
    let expected = md5_response(stored_md5_hash, salt);
    expected.as_bytes().ct_eq(client_response).into()
}

fn with_prefix(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(MD5_HASH_LEN);
    s.push_str("md5");
    for b in digest {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_hash_matches_known_vector_and_postgres_protocol() {
        // `SELECT 'md5' || md5('postgres' || 'postgres')` in Postgres.
        assert_eq!(
            md5_hash("postgres", "postgres"),
            "md53175bce1d3201d16594cebf9d7eb3f9d"
        );
        for (user, pw) in [
            ("postgres", "postgres"),
            ("app", "s3cr3t"),
            ("ü", "pässwörd"),
            ("", ""),
        ] {
            assert_eq!(
                md5_hash(user, pw),
                postgres_protocol::password::md5(pw.as_bytes(), user)
            );
        }
    }

    #[test]
    fn response_matches_postgres_protocol_client() {
        let salt = [0x01, 0x02, 0xfe, 0xff];
        for (user, pw) in [("postgres", "postgres"), ("app", "s3cr3t")] {
            let ours = md5_response(&md5_hash(user, pw), salt);
            let theirs =
                postgres_protocol::authentication::md5_hash(user.as_bytes(), pw.as_bytes(), salt);
            assert_eq!(ours, theirs);
            assert_eq!(ours.len(), MD5_HASH_LEN);
        }
    }

    #[test]
    fn verify_accepts_right_and_rejects_wrong() {
        let stored = md5_hash("app", "secret");
        let salt = [9, 8, 7, 6];
        let good = md5_response(&stored, salt);
        assert!(verify(&stored, salt, good.as_bytes()));
        assert!(!verify(&stored, [9, 8, 7, 5], good.as_bytes()));
        assert!(!verify(&md5_hash("app", "Secret"), salt, good.as_bytes()));
        assert!(!verify(&stored, salt, b""));
        assert!(!verify(&stored, salt, &good.as_bytes()[..34]));
        let mut longer = good.clone().into_bytes();
        longer.push(b'0');
        assert!(!verify(&stored, salt, &longer));
    }
}
