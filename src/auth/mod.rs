//! Authentication, both directions.
//!
//! - Clients logging in to the proxy (`client`): SCRAM-SHA-256 (-PLUS over TLS), md5 or
//!   trust against the configured users' [`Secret`]s. Unknown users run the same exchange and fail the same way as
//!   a wrong password, so user names cannot be probed.
//! - Users without a `[[users]]` entry (`query`, when `[auth_query]` is on): their SCRAM
//!   verifier or md5 hash is fetched from Postgres, and what their login proves
//!   (`credential`: the ClientKey, or the hash) is what the proxy logs in to servers with.
//! - The proxy logging in to Postgres (`upstream`): which answer to build for which
//!   `Authentication*` request. The socket side of that lives in `pool::connect`.
//!
//! The crypto is sans-IO (`scram`, `md5`); only [`authenticate_client`] touches a stream.
//! Not here: which method applies to which user/database (config) and sending the
//! `ErrorResponse` on failure (the caller does, from [`ClientFacing`]).

pub mod cache;
mod client;
pub mod credential;
pub mod md5;
pub mod query;
pub mod scram;
pub mod upstream;

pub use client::{Authenticated, authenticate_client};

use crate::error::{ClientFacing, ErrorKind};
use crate::net::framed::ReadError;
use crate::protocol::sqlstate::{self, SqlState};

/// How a client must prove who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// No proof: AuthenticationOk straight away (for known users).
    Trust,
    /// md5 challenge; falls back to SCRAM when the secret is a SCRAM verifier, as Postgres does.
    Md5,
    /// SCRAM-SHA-256; over TLS also SCRAM-SHA-256-PLUS (channel binding), as Postgres offers.
    ScramSha256,
}

/// A configured user's secret, as written in the config's `password` field.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A plaintext password: any method can verify it.
    Plain(String),
    /// A SCRAM-SHA-256 verifier (`SCRAM-SHA-256$...`): only SCRAM can verify it.
    Scram(scram::ScramVerifier),
    /// A stored `md5` + hex(md5(password || user)) hash: md5 only.
    Md5(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets, only their kind.
        f.write_str(match self {
            Secret::Plain(_) => "Secret::Plain(..)",
            Secret::Scram(_) => "Secret::Scram(..)",
            Secret::Md5(_) => "Secret::Md5(..)",
        })
    }
}

impl Secret {
    /// Classifies a configured password the way Postgres classifies `rolpassword`: a
    /// `SCRAM-SHA-256$` prefix must be a well-formed verifier (a typo there is an error, not a
    /// plaintext password), `md5` + 32 lowercase hex digits is an md5 hash, anything else is
    /// plaintext.
    pub fn parse(s: &str) -> Result<Secret, AuthError> {
        if s.starts_with("SCRAM-SHA-256$") {
            return scram::ScramVerifier::parse(s).map(Secret::Scram);
        }
        if is_md5_hash(s) {
            return Ok(Secret::Md5(s.to_owned()));
        }
        Ok(Secret::Plain(s.to_owned()))
    }
}

/// `md5` followed by exactly 32 lowercase hex digits (Postgres's `isMD5`).
pub(crate) fn is_md5_hash(s: &str) -> bool {
    s.strip_prefix("md5").is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Why authentication did not succeed, or a configured secret is unusable.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong password or unknown user: the same text for both, so users cannot be enumerated.
    #[error("password authentication failed for user \"{user}\"")]
    InvalidPassword { user: String },
    /// A proof did not verify, from the sans-IO layer that does not know the user name;
    /// [`authenticate_client`] turns it into [`AuthError::InvalidPassword`].
    #[error("password authentication failed")]
    Rejected,
    /// A configured secret is malformed (config validation reports it).
    #[error("{0}")]
    InvalidSecret(String),
    /// The client broke the authentication protocol.
    #[error("protocol violation during authentication: {0}")]
    Protocol(String),
    /// Reading the client's message failed (I/O, or a framing violation).
    #[error("{0}")]
    Read(#[from] ReadError),
    /// Writing to the client failed.
    #[error("connection write failed during authentication: {0}")]
    Io(#[from] std::io::Error),
    /// The client hung up between messages. psql does this on purpose when it needs to prompt
    /// for a password, so callers should not log it as an error.
    #[error("the client closed the connection during authentication")]
    Closed,
    /// We could not encode a message (a bug, e.g. an oversized message).
    #[error("could not encode an authentication message: {0}")]
    Encode(String),
}

impl ClientFacing for AuthError {
    fn sqlstate(&self) -> SqlState {
        match self {
            AuthError::InvalidPassword { .. } | AuthError::Rejected => sqlstate::INVALID_PASSWORD,
            AuthError::InvalidSecret(_) => sqlstate::CONFIG_FILE_ERROR,
            AuthError::Protocol(_) => sqlstate::PROTOCOL_VIOLATION,
            AuthError::Read(e) => e.sqlstate(),
            AuthError::Io(_) | AuthError::Closed => sqlstate::CONNECTION_FAILURE,
            AuthError::Encode(_) => sqlstate::INTERNAL_ERROR,
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            AuthError::InvalidPassword { .. } | AuthError::Rejected => ErrorKind::Auth,
            AuthError::InvalidSecret(_) => ErrorKind::Config,
            AuthError::Protocol(_) => ErrorKind::Protocol,
            AuthError::Read(e) => e.kind(),
            AuthError::Io(_) | AuthError::Closed => ErrorKind::Client,
            AuthError::Encode(_) => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_parse_classifies_like_postgres() {
        let v = postgres_protocol::password::scram_sha_256(b"pw");
        assert!(matches!(Secret::parse(&v), Ok(Secret::Scram(_))));
        let m = md5::md5_hash("u", "pw");
        assert!(matches!(Secret::parse(&m), Ok(Secret::Md5(ref s)) if *s == m));
        // Uppercase hex or a wrong length is not an md5 hash: plaintext.
        for plain in [
            "secret",
            "",
            "md5",
            &m.to_uppercase(),
            &format!("{m}0"),
            &m[..34],
            "SCRAM-SHA-256",
        ] {
            assert!(matches!(Secret::parse(plain), Ok(Secret::Plain(ref s)) if s == plain));
        }
        // A SCRAM prefix with a broken body is an error, not a plaintext password.
        for bad in [
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$4096:c2FsdA==$",
            "SCRAM-SHA-256$0:c2FsdA==$AAAA:AAAA",
        ] {
            let e = Secret::parse(bad).unwrap_err();
            assert_eq!(e.sqlstate(), sqlstate::CONFIG_FILE_ERROR);
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let s = Secret::parse("hunter2").unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        let v = Secret::parse(&postgres_protocol::password::scram_sha_256(b"pw")).unwrap();
        let Secret::Scram(ref verifier) = v else {
            panic!("not scram")
        };
        let key = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            verifier.stored_key,
        );
        assert!(!format!("{v:?} {verifier:?}").contains(&key));
    }

    #[test]
    fn unknown_user_and_wrong_password_look_identical() {
        let e = AuthError::InvalidPassword { user: "bob".into() };
        assert_eq!(e.sqlstate(), sqlstate::INVALID_PASSWORD);
        assert_eq!(
            e.client_message(),
            "password authentication failed for user \"bob\""
        );
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert_eq!(
            AuthError::Protocol("x".into()).sqlstate(),
            sqlstate::PROTOCOL_VIOLATION
        );
        assert_eq!(AuthError::Closed.sqlstate(), sqlstate::CONNECTION_FAILURE);
    }
}
