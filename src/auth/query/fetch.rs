//! Running the auth_query on a server: log in as `auth_query.user` through the proxy's own
//! server login (`pool::connect`: the same methods as the pools, md5 pass-the-hash included),
//! send the request, read the reply, hang up. One connection per fetch: lookups are rare (the
//! cache absorbs bursts), and a kept-open connection would be one more thing to keep healthy.
//!
//! Not here: what the request and reply look like (`reply`), caching (`cache`).

use std::time::Duration;

use bytes::BytesMut;

use super::reply::{Reply, encode_request};
use super::{FetchError, Lookup};
use crate::net::framed::{ReadError, read_message};
use crate::pool::connect::{self, ServerTarget};

/// `application_name` of lookup connections, so operators can tell them apart in
/// `pg_stat_activity` and the server log.
pub const APPLICATION_NAME: &str = "lagoon-auth-query";

/// Largest reply message accepted: a row with a name and a verifier is well under 1 KiB.
const MAX_REPLY_MESSAGE: usize = 64 * 1024;

/// Looks `user` up with `query` at `target`, all within `timeout` (login included).
pub async fn fetch(
    target: &ServerTarget,
    query: &str,
    user: &str,
    timeout: Duration,
) -> Result<Lookup, FetchError> {
    tokio::time::timeout(timeout, fetch_inner(target, query, user, timeout))
        .await
        .map_err(|_| FetchError::Timeout)?
}

async fn fetch_inner(
    target: &ServerTarget,
    query: &str,
    user: &str,
    timeout: Duration,
) -> Result<Lookup, FetchError> {
    let params = [("application_name".to_owned(), APPLICATION_NAME.to_owned())];
    let login = connect::login(target, &params, timeout).await?;
    let (mut stream, mut buf) = (login.stream, login.read_buf);
    let mut out = BytesMut::new();
    encode_request(query, user, &mut out)?;
    stream.send(&out).await?;
    let mut reply = Reply::default();
    let lookup = loop {
        let msg = match read_message(&mut stream, &mut buf, MAX_REPLY_MESSAGE).await {
            Ok(Some(m)) => m,
            Ok(None) | Err(ReadError::UnexpectedEof) => {
                return Err(FetchError::Protocol(
                    "the server closed the connection before answering".into(),
                ));
            }
            Err(ReadError::Io(e)) => return Err(FetchError::Io(e)),
            Err(ReadError::Frame(e)) => return Err(FetchError::Protocol(e.to_string())),
        };
        if let Some(lookup) = reply.on_message(&msg)? {
            break lookup;
        }
    };
    // A polite goodbye, so the server logs no "unexpected EOF"; failure to send it is moot.
    out.clear();
    postgres_protocol::message::frontend::terminate(&mut out);
    let _ = stream.send(&out).await;
    Ok(lookup)
}
