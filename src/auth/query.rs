//! auth_query: logging in a client whose user has no `[[users]]` entry, against the SCRAM
//! verifier (or md5 hash) Postgres itself stores for it, fetched with `auth_query.query` as
//! `auth_query.user` on the client's database's primary and cached for
//! `auth_query.cache_ttl_ms`. What the login proves becomes the user's [`ServerCredential`]:
//! the SCRAM ClientKey (with the verifier) or the md5 hash, which the pools log in with. No
//! plaintext password is ever held.
//!
//! Failures all look the same to the client: the `28P01` of a wrong password, after the same
//! exchange an unknown user gets, so user names cannot be probed. The operator gets a warning
//! with the real cause (cannot connect, the query's error, no row, NULL password).
//!
//! Not here: the query's wire exchange (`reply`), running it (`fetch`), caching (`cache`),
//! where the credential goes (`pool::cluster`, `client::login`).

mod cache;
mod fetch;
mod reply;

pub use cache::{AuthQueryCache, Key};
pub use fetch::APPLICATION_NAME;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use super::credential::ServerCredential;
use super::scram::client::ScramKeys;
use super::{AuthError, Method, Secret, authenticate_client};
use crate::config::{AuthQueryConfig, AuthType, Config, DatabaseConfig, Endpoint};
use crate::pool::connect::{ConnectError, ServerTarget};

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// A SCRAM verifier or an md5 hash (never plaintext).
    Found(Secret),
    /// Nothing a login can be checked against, and why (for the operator's log).
    Missing(String),
}

/// Why a lookup could not be made. Logged for the operator; the client sees `28P01`.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot log in to run auth_query: {0}")]
    Connect(#[from] ConnectError),
    #[error("auth_query did not answer within pool.connect_timeout_ms")]
    Timeout,
    #[error("auth_query failed: {0}")]
    Query(String),
    #[error("cannot build the auth_query request: {0}")]
    Request(String),
    #[error("protocol violation from the server during auth_query: {0}")]
    Protocol(String),
    #[error("connection error during auth_query: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the lookup for a client of database `ep` (its primary) runs, and as whom.
pub fn lookup_target(aq: &AuthQueryConfig, ep: &Endpoint) -> ServerTarget {
    ServerTarget {
        host: ep.host.clone(),
        port: ep.port,
        user: aq.user.clone(),
        password: aq.password.clone(),
        database: if aq.database.is_empty() {
            ep.dbname.clone()
        } else {
            aq.database.clone()
        },
        // The lookup goes to the same server as the pools, with the same TLS.
        tls: ep.tls.clone(),
        credential: None,
    }
}

/// Authenticates client `user` of `db` (a user without a `[[users]]` entry, auth_query on)
/// and returns what the proxy logs in to its servers with. Writes AuthenticationOk on success
/// like [`authenticate_client`]; on failure writes nothing more than the exchange, for the
/// caller's ErrorResponse. `server.auth_type` picks the exchange, as for configured users
/// (SCRAM, -PLUS when `channel_binding` is given; md5, which falls back to SCRAM for a SCRAM
/// verifier; `trust` is read as SCRAM: it would leave nothing to log in to the servers with). A failed proof drops the cached secret, so a password changed since
/// it was fetched is seen at the next attempt.
#[allow(clippy::too_many_arguments)]
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    read_buf: &mut BytesMut,
    user: &str,
    config: &Config,
    db: &DatabaseConfig,
    cache: &AuthQueryCache,
    mock_secret: &[u8; 32],
    channel_binding: Option<&[u8]>,
) -> Result<ServerCredential, AuthError> {
    let aq = &config.auth_query;
    let target = lookup_target(aq, &db.primary_endpoint);
    let key = Key {
        host: target.host.clone(),
        port: target.port,
        dbname: target.database.clone(),
        user: user.to_owned(),
        tls: target.tls.id(),
    };
    let timeout = config.pool.connect_timeout();
    let looked = cache
        .get_or_fetch(&key, aq.cache_ttl(), || {
            fetch::fetch(&target, &aq.query, user, timeout)
        })
        .await;
    let secret = match looked {
        Ok(Lookup::Found(secret)) => secret,
        Ok(Lookup::Missing(why)) => {
            tracing::warn!(user, database = %db.name, "auth_query: login refused: {why}");
            return refuse(stream, read_buf, user, config, mock_secret, channel_binding).await;
        }
        Err(e) => {
            tracing::warn!(
                user,
                database = %db.name,
                auth_user = %aq.user,
                server = %format!("{}:{}/{}", key.host, key.port, key.dbname),
                "auth_query: login refused: {e}"
            );
            return refuse(stream, read_buf, user, config, mock_secret, channel_binding).await;
        }
    };
    // The operator's auth_type decides, as for an unknown user (see `refuse`): a found role
    // and a missing one then start the same exchange, so names cannot be probed. As in
    // Postgres, md5 falls back to SCRAM for a SCRAM verifier, and scram-sha-256 cannot be
    // satisfied by an md5 hash (the exchange runs and fails).
    let method = configured_method(config);
    let done = authenticate_client(
        stream,
        read_buf,
        user,
        method,
        Some(&secret),
        mock_secret,
        channel_binding,
    )
    .await;
    let done = match done {
        Ok(done) => done,
        Err(e) => {
            if matches!(e, AuthError::InvalidPassword { .. }) {
                cache.invalidate(&key);
            }
            return Err(e);
        }
    };
    match (secret, done.client_key) {
        (Secret::Scram(verifier), Some(client_key)) => Ok(ServerCredential::Scram(ScramKeys {
            client_key,
            verifier,
        })),
        (Secret::Md5(hash), _) => Ok(ServerCredential::Md5Hash(hash)),
        // A SCRAM login always yields the key, and the lookup never finds plaintext.
        _ => Err(AuthError::InvalidPassword {
            user: user.to_owned(),
        }),
    }
}

/// The method auth_query users are asked to prove themselves with: `server.auth_type`, with
/// `trust` read as SCRAM (a looked-up user must prove something: the proof is what the proxy
/// logs in to the servers with).
fn configured_method(config: &Config) -> Method {
    match config.server.auth_type {
        AuthType::Md5 => Method::Md5,
        AuthType::ScramSha256 | AuthType::Trust => Method::ScramSha256,
    }
}

/// The exchange an unknown user gets, then `28P01`.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    read_buf: &mut BytesMut,
    user: &str,
    config: &Config,
    mock_secret: &[u8; 32],
    channel_binding: Option<&[u8]>,
) -> Result<ServerCredential, AuthError> {
    let method = configured_method(config);
    authenticate_client(
        stream,
        read_buf,
        user,
        method,
        None,
        mock_secret,
        channel_binding,
    )
    .await?;
    Err(AuthError::InvalidPassword {
        user: user.to_owned(),
    })
}
