//! The authentication exchange with a client, after its StartupMessage: the only part of
//! `auth` that touches a stream. The crypto is in `scram` and `md5`.
//!
//! Not here: the overall time limit (the caller wraps this in its authentication timeout),
//! the ErrorResponse on failure (the caller sends it from [`ClientFacing`]), and deciding
//! whether an unknown user may log in at all.
//!
//! [`ClientFacing`]: crate::error::ClientFacing

use bytes::BytesMut;
use pgwire::messages::Message;
use pgwire::messages::startup::Authentication;
use rand::RngCore;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::scram::{ScramServer, ScramVerifier};
use super::{AuthError, Method, Secret, md5};
use crate::net::framed::read_message;
use crate::protocol::codec::HEADER_LEN;

/// Largest message a client may send during authentication. SCRAM and md5 messages are a few
/// hundred bytes; Postgres's own limit for them (`PG_MAX_AUTH_TOKEN_LENGTH`) is 65535.
const MAX_AUTH_MESSAGE: usize = 8192;

/// What a successful client authentication yields.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Authenticated {
    /// ClientKey recovered from a successful SCRAM proof (None for md5/trust). With it the
    /// proxy can log in to Postgres as this user by SCRAM without ever holding the password,
    /// provided it also has the verifier the proof was checked against (auth_query).
    pub client_key: Option<[u8; 32]>,
}

impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The ClientKey logs in as the user: never print it.
        f.debug_struct("Authenticated")
            .field("client_key", &self.client_key.map(|_| ".."))
            .finish()
    }
}

/// Runs the authentication exchange with a client after its StartupMessage.
///
/// `secret` is `None` for an unknown user: the exchange still runs (SCRAM with
/// [`ScramVerifier::mock`], md5 with a random salt) and fails with the same `28P01` as a wrong
/// password, so user names cannot be probed. With [`Method::Trust`] an unknown user fails
/// `28P01` at once without anything written: a caller that wants to let unknown users in
/// under trust must decide so itself and not call this.
///
/// With [`Method::Md5`] and a [`Secret::Scram`] the exchange is SCRAM (md5 cannot be checked
/// against a SCRAM verifier), as Postgres does. With [`Method::ScramSha256`] and a
/// [`Secret::Md5`] no proof can succeed: the exchange runs and fails like a wrong password
/// (a warning is logged for the operator), as Postgres does.
///
/// `channel_binding` is the connection's `tls-server-end-point` data when the client is on
/// TLS (`None` in plaintext): SCRAM then offers `SCRAM-SHA-256-PLUS` first, so a client with
/// `channel_binding=require` can log in, and refuses a `y` flag as a downgrade.
///
/// Messages are read with `read_message(stream, read_buf, 8192)` and must be type `p`. On
/// success writes AuthenticationOk (for SCRAM: SASLFinal then Ok) and flushes. Does NOT write
/// an ErrorResponse on failure: the caller does.
pub async fn authenticate_client<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    read_buf: &mut BytesMut,
    user: &str,
    method: Method,
    secret: Option<&Secret>,
    mock_secret: &[u8; 32],
    channel_binding: Option<&[u8]>,
) -> Result<Authenticated, AuthError> {
    let mut out = BytesMut::new();
    let cb = channel_binding;
    let result = match (method, secret) {
        (Method::Trust, Some(_)) => Ok(Authenticated::default()),
        (Method::Trust, None) => Err(AuthError::Rejected),
        (Method::Md5 | Method::ScramSha256, Some(Secret::Scram(v))) => {
            run_scram(stream, read_buf, &mut out, v.clone(), true, cb).await
        }
        (Method::Md5, Some(Secret::Plain(pw))) => {
            run_md5(stream, read_buf, Some(&md5::md5_hash(user, pw))).await
        }
        (Method::Md5, Some(Secret::Md5(hash))) => run_md5(stream, read_buf, Some(hash)).await,
        (Method::Md5, None) => run_md5(stream, read_buf, None).await,
        (Method::ScramSha256, Some(Secret::Plain(pw))) => {
            let v = ScramVerifier::for_plain_password(user, pw, mock_secret);
            run_scram(stream, read_buf, &mut out, v, true, cb).await
        }
        (Method::ScramSha256, Some(Secret::Md5(_))) => {
            tracing::warn!(
                user,
                "user has an md5 password hash but the method is scram-sha-256: \
                 configure a plaintext password or a SCRAM verifier"
            );
            let v = ScramVerifier::mock(user, mock_secret);
            run_scram(stream, read_buf, &mut out, v, false, cb).await
        }
        (Method::ScramSha256, None) => {
            let v = ScramVerifier::mock(user, mock_secret);
            run_scram(stream, read_buf, &mut out, v, false, cb).await
        }
    };
    let authenticated = match result {
        Ok(a) => a,
        Err(AuthError::Rejected) => {
            return Err(AuthError::InvalidPassword {
                user: user.to_owned(),
            });
        }
        Err(e) => return Err(e),
    };
    encode(&Authentication::Ok, &mut out)?;
    stream.write_all(&out).await?;
    stream.flush().await?;
    Ok(authenticated)
}

/// SCRAM-SHA-256 (and -PLUS when `channel_binding` is given). On success the SASLFinal is
/// left in `out`, to go out with AuthenticationOk in one write.
async fn run_scram<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    read_buf: &mut BytesMut,
    out: &mut BytesMut,
    verifier: ScramVerifier,
    succeed_possible: bool,
    channel_binding: Option<&[u8]>,
) -> Result<Authenticated, AuthError> {
    let mut server = ScramServer::new(verifier, succeed_possible);
    if let Some(data) = channel_binding {
        server = server.with_channel_binding(data);
    }
    let offered = server
        .mechanisms()
        .iter()
        .map(|m| (*m).to_owned())
        .collect();
    send(stream, &Authentication::SASL(offered)).await?;

    let msg = read_password_message(stream, read_buf).await?;
    let (mechanism, data) = parse_sasl_initial_response(body(&msg))?;
    server.select_mechanism(mechanism)?;
    let server_first = server.client_first(data)?;
    send(stream, &Authentication::SASLContinue(server_first.into())).await?;

    let msg = read_password_message(stream, read_buf).await?;
    let server_final = server.client_final(body(&msg))?;
    encode(&Authentication::SASLFinal(server_final.into()), out)?;
    Ok(Authenticated {
        client_key: server.client_key(),
    })
}

/// md5 challenge. `stored` is the user's md5 hash, `None` for an unknown user (the exchange
/// still runs and fails).
async fn run_md5<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    read_buf: &mut BytesMut,
    stored: Option<&str>,
) -> Result<Authenticated, AuthError> {
    let mut salt = [0u8; 4];
    rand::thread_rng().fill_bytes(&mut salt);
    send(stream, &Authentication::MD5Password(salt.to_vec())).await?;
    let msg = read_password_message(stream, read_buf).await?;
    let response = parse_password_message(body(&msg))?;
    // An unknown user is checked against a dummy hash: same work, cannot match.
    let ok = md5::verify(stored.unwrap_or("md5-unknown-user"), salt, response);
    if ok && stored.is_some() {
        Ok(Authenticated::default())
    } else {
        Err(AuthError::Rejected)
    }
}

/// Reads one message, which must be a `p` (PasswordMessage / SASL*Response).
async fn read_password_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    read_buf: &mut BytesMut,
) -> Result<BytesMut, AuthError> {
    let msg = read_message(stream, read_buf, MAX_AUTH_MESSAGE)
        .await?
        .ok_or(AuthError::Closed)?;
    match msg.first() {
        Some(b'p') => Ok(msg),
        Some(&tag) => Err(AuthError::Protocol(format!(
            "expected a password response, got message type '{}'",
            char::from(tag).escape_default()
        ))),
        None => Err(AuthError::Protocol("empty message".into())),
    }
}

/// The body of a framed message (after the 5-byte header).
fn body(msg: &[u8]) -> &[u8] {
    msg.get(HEADER_LEN..).unwrap_or_default()
}

/// SASLInitialResponse body: mechanism name (C string), i32 data length, data. Returns the
/// mechanism (checked against the offer by `ScramServer::select_mechanism`) and the data.
fn parse_sasl_initial_response(body: &[u8]) -> Result<(&[u8], &[u8]), AuthError> {
    let bad = |why: &str| AuthError::Protocol(format!("malformed SASLInitialResponse: {why}"));
    let nul = body
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| bad("unterminated mechanism name"))?;
    let (mechanism, rest) = body.split_at(nul);
    let rest = rest.get(1..).unwrap_or_default();
    let (len, data) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| bad("missing data length"))?;
    let len = i32::from_be_bytes(*len);
    if usize::try_from(len).ok() != Some(data.len()) {
        return Err(bad("data length does not match the message"));
    }
    Ok((mechanism, data))
}

/// PasswordMessage body: one C string, nothing after it.
fn parse_password_message(body: &[u8]) -> Result<&[u8], AuthError> {
    match body.split_last() {
        Some((0, pw)) if !pw.contains(&0) => Ok(pw),
        _ => Err(AuthError::Protocol("invalid password packet".into())),
    }
}

fn encode(msg: &Authentication, out: &mut BytesMut) -> Result<(), AuthError> {
    msg.encode(out)
        .map_err(|e| AuthError::Encode(e.to_string()))
}

async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    msg: &Authentication,
) -> Result<(), AuthError> {
    let mut out = BytesMut::new();
    encode(msg, &mut out)?;
    stream.write_all(&out).await?;
    stream.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests;
