//! The proxy logging in to Postgres, sans-IO: the StartupMessage, which answer to build for
//! which `Authentication*` request, and the messages up to the first ReadyForQuery.
//! `pool::connect` moves the bytes and owns the socket and the time limit.
//!
//! Methods: trust, cleartext, md5 (also pass-the-hash when the configured password is itself an
//! md5 hash, as PgBouncer allows), SCRAM-SHA-256 through `postgres_protocol`'s client with a
//! password, or through our `scram::client` with a ClientKey (auth_query users, whose password
//! the proxy never has: see `auth::credential`). No channel binding, so SCRAM-SHA-256-PLUS is
//! never chosen. Once SCRAM has started
//! we insist on the server's signature (SASLFinal) before accepting AuthenticationOk: a server
//! that skips it has not proven it knows the password.
//!
//! Server bytes are parsed with our own bounds-checked readers, never pgwire's decoders.

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend;

use super::credential::ServerCredential;
use super::md5;
use super::scram::client::{ClientError, KeyClient, ScramKeys};

mod login;
pub use login::{LoggedIn, Login, Step, parse_fields};

/// Why the login did not succeed, before any socket concern. `pool::connect` wraps it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The proxy could not prove its identity (no or unusable password, bad server signature).
    #[error("{0}")]
    Auth(String),
    /// The server sent something we cannot make sense of.
    #[error("{0}")]
    Protocol(String),
    /// The server asked for an authentication method we do not implement (the request code).
    #[error("unsupported authentication method {0}")]
    UnsupportedAuth(i32),
    /// The server refused us with an ErrorResponse; its fields as sent.
    #[error("server error")]
    Server(Vec<(u8, String)>),
}

/// Encodes the StartupMessage (protocol 3.0): `user`, `database`, then `params` in order.
/// `user`/`database` keys in `params` are skipped: ours are the ones that count.
pub fn startup_message(
    user: &str,
    database: &str,
    params: &[(String, String)],
    out: &mut BytesMut,
) -> Result<(), UpstreamError> {
    let extra = params
        .iter()
        .filter(|(k, _)| k != "user" && k != "database")
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let all = [("user", user), ("database", database)]
        .into_iter()
        .chain(extra);
    frontend::startup_message(all, out)
        .map_err(|e| UpstreamError::Protocol(format!("cannot build the startup message: {e}")))
}

/// An `Authentication*` request (message `R`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest<'a> {
    Ok,
    Cleartext,
    Md5 {
        salt: [u8; 4],
    },
    /// The mechanisms the server offers.
    Sasl(Vec<&'a [u8]>),
    SaslContinue(&'a [u8]),
    SaslFinal(&'a [u8]),
    /// Any other request code (Kerberos, GSSAPI, SSPI, ...).
    Other(i32),
}

/// Parses the body of an `R` message.
pub fn parse_auth_request(body: &[u8]) -> Result<AuthRequest<'_>, UpstreamError> {
    let bad = || UpstreamError::Protocol("malformed authentication request".into());
    let (code, rest) = body.split_first_chunk::<4>().ok_or_else(bad)?;
    Ok(match i32::from_be_bytes(*code) {
        0 => AuthRequest::Ok,
        3 => AuthRequest::Cleartext,
        5 => AuthRequest::Md5 {
            salt: <[u8; 4]>::try_from(rest).map_err(|_| bad())?,
        },
        10 => {
            // A list of C strings ended by an empty one.
            let list = rest.strip_suffix(&[0]).ok_or_else(bad)?;
            AuthRequest::Sasl(list.split(|&b| b == 0).filter(|m| !m.is_empty()).collect())
        }
        11 => AuthRequest::SaslContinue(rest),
        12 => AuthRequest::SaslFinal(rest),
        other => AuthRequest::Other(other),
    })
}

/// What the configured password is, for choosing what we can answer.
enum Password {
    None,
    Plain(String),
    /// `md5...` hash: answers md5 challenges only (pass-the-hash).
    Md5Hash(String),
    /// A SCRAM verifier cannot produce a client proof: useless for logging in.
    ScramVerifier,
    /// A ClientKey with its verifier: answers SCRAM only.
    Keys(Box<ScramKeys>),
}

/// The client side of a SCRAM exchange: from a password, or from a ClientKey.
enum ScramClient {
    Password(Box<ScramSha256>),
    Keys(Box<KeyClient>),
}

enum State {
    /// Nothing asked yet.
    Start,
    /// A password or md5 answer was sent; AuthenticationOk may follow.
    PasswordSent,
    /// SASLInitialResponse sent, waiting for SASLContinue.
    ScramContinue(ScramClient),
    /// SASLResponse sent, waiting for SASLFinal.
    ScramFinal(ScramClient),
    /// The server's signature verified; AuthenticationOk may follow.
    ScramVerified,
    /// AuthenticationOk received, or failed.
    Done,
}

/// Answers the server's authentication requests for one login.
pub struct UpstreamAuth {
    user: String,
    password: Password,
    state: State,
}

/// Whether authentication is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Keep reading; send whatever was written to `out`.
    Continue,
    /// AuthenticationOk received.
    Authenticated,
}

impl UpstreamAuth {
    pub fn new(user: &str, password: Option<&str>) -> Self {
        let password = match password {
            None => Password::None,
            Some(p) if p.starts_with("SCRAM-SHA-256$") => Password::ScramVerifier,
            Some(p) if super::is_md5_hash(p) => Password::Md5Hash(p.to_owned()),
            Some(p) => Password::Plain(p.to_owned()),
        };
        UpstreamAuth {
            user: user.to_owned(),
            password,
            state: State::Start,
        }
    }

    /// Logs in with what a client's login left in a `CredentialSlot` (auth_query users).
    pub fn with_credential(user: &str, credential: &ServerCredential) -> Self {
        let password = match credential {
            ServerCredential::Scram(keys) => Password::Keys(Box::new(keys.clone())),
            ServerCredential::Md5Hash(hash) => Password::Md5Hash(hash.clone()),
        };
        UpstreamAuth {
            user: user.to_owned(),
            password,
            state: State::Start,
        }
    }

    /// Handles one request; any answer is appended to `out`.
    pub fn respond(
        &mut self,
        req: AuthRequest<'_>,
        out: &mut BytesMut,
    ) -> Result<Progress, UpstreamError> {
        let state = std::mem::replace(&mut self.state, State::Done);
        let (next, progress) = match (state, req) {
            (State::Start | State::PasswordSent | State::ScramVerified, AuthRequest::Ok) => {
                (State::Done, Progress::Authenticated)
            }
            (State::ScramContinue(_) | State::ScramFinal(_), AuthRequest::Ok) => {
                return Err(self.auth_err(
                    "the server accepted the login without proving it knows the password \
                     (SCRAM exchange not finished)",
                ));
            }
            (State::Start, AuthRequest::Cleartext) => {
                let pw = self.plain_password("cleartext password")?;
                frontend::password_message(pw.as_bytes(), out).map_err(|_| self.nul_err())?;
                (State::PasswordSent, Progress::Continue)
            }
            (State::Start, AuthRequest::Md5 { salt }) => {
                let hash = match &self.password {
                    Password::Md5Hash(h) => h.clone(),
                    _ => md5::md5_hash(&self.user, self.plain_password("md5")?),
                };
                frontend::password_message(md5::md5_response(&hash, salt).as_bytes(), out)
                    .map_err(|_| self.nul_err())?;
                (State::PasswordSent, Progress::Continue)
            }
            (State::Start, AuthRequest::Sasl(mechanisms)) => {
                if !mechanisms.contains(&SCRAM_SHA_256.as_bytes()) {
                    return Err(UpstreamError::UnsupportedAuth(10));
                }
                let (client, first) = match &self.password {
                    Password::Keys(keys) => {
                        let client = KeyClient::new((**keys).clone());
                        let first = client.client_first();
                        (ScramClient::Keys(Box::new(client)), first)
                    }
                    _ => {
                        let pw = self.plain_password("SCRAM-SHA-256")?;
                        let client = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                        let first = client.message().to_vec();
                        (ScramClient::Password(Box::new(client)), first)
                    }
                };
                frontend::sasl_initial_response(SCRAM_SHA_256, &first, out)
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                (State::ScramContinue(client), Progress::Continue)
            }
            (State::ScramContinue(mut client), AuthRequest::SaslContinue(data)) => {
                let fin = match &mut client {
                    ScramClient::Password(c) => {
                        c.update(data).map_err(|e| {
                            UpstreamError::Protocol(format!(
                                "invalid SCRAM message from the server: {e}"
                            ))
                        })?;
                        c.message().to_vec()
                    }
                    ScramClient::Keys(c) => c.server_first(data).map_err(|e| self.key_err(e))?,
                };
                frontend::sasl_response(&fin, out)
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                (State::ScramFinal(client), Progress::Continue)
            }
            (State::ScramFinal(mut client), AuthRequest::SaslFinal(data)) => {
                match &mut client {
                    ScramClient::Password(c) => c.finish(data).map_err(|e| {
                        self.auth_err(&format!(
                            "the server's SCRAM signature did not verify ({e})"
                        ))
                    })?,
                    ScramClient::Keys(c) => c.server_final(data).map_err(|e| self.key_err(e))?,
                }
                (State::ScramVerified, Progress::Continue)
            }
            (_, AuthRequest::Other(code)) => return Err(UpstreamError::UnsupportedAuth(code)),
            (_, req) => {
                return Err(UpstreamError::Protocol(format!(
                    "unexpected authentication request {} during login",
                    request_name(&req)
                )));
            }
        };
        self.state = next;
        Ok(progress)
    }

    /// The plaintext password, or why the method cannot be answered.
    fn plain_password(&self, method: &str) -> Result<&str, UpstreamError> {
        match &self.password {
            Password::Plain(p) => Ok(p),
            Password::None => Err(self.auth_err(&format!(
                "the server asks for a password ({method}) but none is configured"
            ))),
            Password::Md5Hash(_) => Err(self.auth_err(&format!(
                "the server asks for {method} but the configured password is an md5 hash, \
                 which only answers md5"
            ))),
            Password::ScramVerifier => Err(self.auth_err(&format!(
                "the server asks for {method} but the configured password is a SCRAM verifier; \
                 the plaintext password is needed to log in"
            ))),
            Password::Keys(_) => Err(self.auth_err(&format!(
                "the server asks for {method} but the user's password comes from auth_query \
                 as a SCRAM verifier, which can only answer SCRAM-SHA-256: make the server \
                 authenticate this user with scram-sha-256"
            ))),
        }
    }

    /// A failed ClientKey exchange: the server's malformed message is a protocol error,
    /// anything else says why we could not prove who we are.
    fn key_err(&self, e: ClientError) -> UpstreamError {
        match e {
            ClientError::Protocol(_) => UpstreamError::Protocol(e.to_string()),
            _ => self.auth_err(&format!("with the ClientKey from auth_query: {e}")),
        }
    }

    fn auth_err(&self, why: &str) -> UpstreamError {
        UpstreamError::Auth(format!("as user \"{}\": {why}", self.user))
    }

    fn nul_err(&self) -> UpstreamError {
        self.auth_err("the configured password contains a NUL byte")
    }
}

fn request_name(req: &AuthRequest<'_>) -> &'static str {
    match req {
        AuthRequest::Ok => "AuthenticationOk",
        AuthRequest::Cleartext => "AuthenticationCleartextPassword",
        AuthRequest::Md5 { .. } => "AuthenticationMD5Password",
        AuthRequest::Sasl(_) => "AuthenticationSASL",
        AuthRequest::SaslContinue(_) => "AuthenticationSASLContinue",
        AuthRequest::SaslFinal(_) => "AuthenticationSASLFinal",
        AuthRequest::Other(_) => "Authentication (other)",
    }
}

#[cfg(test)]
mod tests;
