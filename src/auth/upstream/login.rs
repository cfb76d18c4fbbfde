//! The whole login conversation after the StartupMessage, sans-IO: authentication (delegated to
//! [`UpstreamAuth`]), then ParameterStatus / BackendKeyData until the first ReadyForQuery.
//! Feed it whole framed messages; it says what to send and when the login is done.

use bytes::BytesMut;

use super::{AuthRequest, Progress, UpstreamAuth, UpstreamError, parse_auth_request};
use crate::protocol::codec::HEADER_LEN;

/// Largest BackendKeyData secret we accept: 4 bytes in protocol 3.0, up to 256 in 3.2.
const MAX_SECRET_KEY: usize = 256;

/// What a successful login yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedIn {
    /// ParameterStatus pairs, in the order received.
    pub params: Vec<(String, String)>,
    /// BackendKeyData process id (0 when the server sent none).
    pub process_id: i32,
    /// BackendKeyData secret (empty when the server sent none).
    pub secret_key: Vec<u8>,
}

/// Whether the login is finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Keep reading; send whatever was written to `out` first.
    Continue,
    /// ReadyForQuery arrived: the connection is ready for use.
    Done(LoggedIn),
}

/// One login in progress.
pub struct Login {
    auth: UpstreamAuth,
    authenticated: bool,
    params: Vec<(String, String)>,
    key: Option<(i32, Vec<u8>)>,
}

impl Login {
    pub fn new(user: &str, password: Option<&str>) -> Self {
        Self::with_auth(UpstreamAuth::new(user, password))
    }

    /// A login that authenticates with `auth` (e.g. [`UpstreamAuth::with_credential`]).
    pub fn with_auth(auth: UpstreamAuth) -> Self {
        Login {
            auth,
            authenticated: false,
            params: Vec::new(),
            key: None,
        }
    }

    /// Handles one whole framed message (header included); answers go to `out`.
    pub fn on_message(&mut self, msg: &[u8], out: &mut BytesMut) -> Result<Step, UpstreamError> {
        let tag = msg.first().copied().unwrap_or(0);
        let body = msg.get(HEADER_LEN..).unwrap_or_default();
        match tag {
            b'R' => {
                let req = parse_auth_request(body)?;
                if self.authenticated && req != AuthRequest::Ok {
                    return Err(unexpected(tag));
                }
                if self.auth.respond(req, out)? == Progress::Authenticated {
                    self.authenticated = true;
                }
            }
            b'E' => return Err(UpstreamError::Server(parse_fields(body))),
            // Warnings during login are for a human watching the server log, not for us.
            b'N' => {}
            b'S' if self.authenticated => {
                let mut parts = body.split(|&b| b == 0);
                let (Some(name), Some(value), Some(b""), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(UpstreamError::Protocol("malformed ParameterStatus".into()));
                };
                self.params.push((lossy(name), lossy(value)));
            }
            b'K' if self.authenticated => {
                let (pid, key) = body.split_first_chunk::<4>().ok_or_else(bad_key)?;
                if key.len() < 4 || key.len() > MAX_SECRET_KEY {
                    return Err(bad_key());
                }
                self.key = Some((i32::from_be_bytes(*pid), key.to_vec()));
            }
            b'Z' if self.authenticated => {
                if body.len() != 1 {
                    return Err(UpstreamError::Protocol("malformed ReadyForQuery".into()));
                }
                let (process_id, secret_key) = self.key.take().unwrap_or_default();
                if secret_key.is_empty() {
                    tracing::debug!("server sent no BackendKeyData: queries cannot be cancelled");
                }
                return Ok(Step::Done(LoggedIn {
                    params: std::mem::take(&mut self.params),
                    process_id,
                    secret_key,
                }));
            }
            other => return Err(unexpected(other)),
        }
        Ok(Step::Continue)
    }
}

fn unexpected(tag: u8) -> UpstreamError {
    UpstreamError::Protocol(format!(
        "unexpected message type '{}' during login",
        char::from(tag).escape_default()
    ))
}

fn bad_key() -> UpstreamError {
    UpstreamError::Protocol("malformed BackendKeyData".into())
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Fields of an ErrorResponse/NoticeResponse body: (type byte, text) pairs. Lenient: a
/// truncated last field is kept as far as it goes, since the error is what matters.
pub fn parse_fields(body: &[u8]) -> Vec<(u8, String)> {
    let mut fields = Vec::new();
    let mut rest = body;
    while let Some((&code, tail)) = rest.split_first() {
        if code == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        let (text, after) = tail.split_at(end);
        fields.push((code, lossy(text)));
        rest = after.get(1..).unwrap_or_default();
    }
    fields
}
