//! From StartupMessage to the first ReadyForQuery: protocol negotiation, user and database
//! lookup, client authentication, and the post-login burst (ParameterStatus as the server
//! reports them, with the client's own settings; a proxy-made BackendKeyData; ReadyForQuery).
//! No server connection is opened before the client has authenticated and its database is
//! known; one is opened only if the pool has never logged in yet, to learn the server's
//! parameters. A user without a `[[users]]` entry is looked up by auth_query when it is on
//! (`auth::query`); what its login proved goes to its cluster's credential slot.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::params::SessionParams;
use super::relay;
use crate::app::Shared;
use crate::auth::{self, AuthError, Method, Secret};
use crate::config::{AuthType, Config, PoolMode};
use crate::error::{ClientFacing, ErrorKind};
use crate::net::Stream;
use crate::pool::{Pool, PoolError};
use crate::protocol::messages::encode;
use crate::protocol::sqlstate::{self, SqlState};
use crate::protocol::startup::{self, StartupMessage};

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("no PostgreSQL user name specified in startup packet")]
    NoUser,
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("database \"{0}\" does not exist")]
    UnknownDatabase(String),
    #[error("user \"{0}\" is not allowed to use the admin console (server.admin_users)")]
    NotAdmin(String),
    #[error("replication connections are not supported through Lagoon")]
    Replication,
    #[error("invalid options in startup packet: {0}")]
    Options(String),
    #[error("{0}")]
    Pool(#[from] PoolError),
    #[error("{0}")]
    Setting(String),
    #[error("server connection lost during login")]
    ServerLost,
    #[error("connection error during login: {0}")]
    Io(#[from] std::io::Error),
}

impl ClientFacing for LoginError {
    fn sqlstate(&self) -> SqlState {
        match self {
            LoginError::NoUser => sqlstate::INVALID_AUTHORIZATION,
            LoginError::Auth(e) => e.sqlstate(),
            LoginError::UnknownDatabase(_) => sqlstate::INVALID_CATALOG_NAME,
            LoginError::NotAdmin(_) => sqlstate::INVALID_AUTHORIZATION,
            LoginError::Replication => sqlstate::FEATURE_NOT_SUPPORTED,
            LoginError::Options(_) => sqlstate::PROTOCOL_VIOLATION,
            LoginError::Pool(e) => e.sqlstate(),
            LoginError::Setting(_) => sqlstate::INVALID_PARAMETER_VALUE,
            LoginError::Io(_) | LoginError::ServerLost => sqlstate::CONNECTION_FAILURE,
        }
    }
    fn kind(&self) -> ErrorKind {
        match self {
            LoginError::Auth(e) => e.kind(),
            LoginError::NoUser | LoginError::NotAdmin(_) => ErrorKind::Auth,
            LoginError::UnknownDatabase(_) => ErrorKind::Config,
            LoginError::Replication | LoginError::Options(_) => ErrorKind::Protocol,
            LoginError::Pool(e) => e.kind(),
            LoginError::Setting(_) => ErrorKind::Config,
            LoginError::ServerLost => ErrorKind::Server,
            LoginError::Io(_) => ErrorKind::Client,
        }
    }
    fn client_message(&self) -> String {
        match self {
            LoginError::Auth(e) => e.client_message(),
            LoginError::Pool(e) => e.client_message(),
            other => other.to_string(),
        }
    }
}

/// Where a logged-in client goes next.
pub enum Login {
    /// The pooling loop.
    Pooled(LoggedIn),
    /// The admin console (database `server.admin_database`, a user in `server.admin_users`).
    Admin(AdminLogin),
}

/// An admin console client, told it is logged in (burst and ReadyForQuery sent).
pub struct AdminLogin {
    pub user: String,
    /// `server.admin_database` as the client spelled it.
    pub database: String,
    pub application_name: String,
}

/// A logged-in client, ready for the pooling loop.
pub struct LoggedIn {
    /// Every member's pool of the client's database (for its user).
    pub cluster: Arc<crate::pool::cluster::Cluster>,
    pub params: SessionParams,
    pub session_mode: bool,
    pub config: Arc<Config>,
}

fn method(t: AuthType) -> Method {
    match t {
        AuthType::ScramSha256 => Method::ScramSha256,
        AuthType::Md5 => Method::Md5,
        AuthType::Trust => Method::Trust,
    }
}

/// Runs login for a client that sent `msg`. On success the client has received
/// AuthenticationOk, ParameterStatus, BackendKeyData and ReadyForQuery.
///
/// `channel_binding` is the `tls-server-end-point` data of the client's TLS connection (`None`
/// in plaintext): with it SCRAM-SHA-256-PLUS is offered.
pub async fn login(
    stream: &mut Stream,
    buf: &mut BytesMut,
    msg: &StartupMessage,
    shared: &Shared,
    key: (i32, i32),
    channel_binding: Option<&[u8]>,
) -> Result<Login, LoginError> {
    let config = shared.config.load_full();
    let mut out = BytesMut::new();

    // We speak 3.0. Ask for anything newer, or name a protocol extension, and we say so.
    let unsupported: Vec<String> = msg
        .params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.clone())
        .collect();
    if msg.minor > 0 || !unsupported.is_empty() {
        encode::negotiate_protocol_version(&mut out, unsupported);
        stream.send(&out).await?;
        out.clear();
    }

    let user_name = msg
        .get("user")
        .filter(|u| !u.is_empty())
        .ok_or(LoginError::NoUser)?;
    if msg
        .get("replication")
        .is_some_and(|r| !matches!(r, "false" | "off" | "no" | "0"))
    {
        return Err(LoginError::Replication);
    }
    let db_name = msg
        .get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(user_name);
    let options = match msg.get("options") {
        Some(o) => startup::parse_options(o).map_err(LoginError::Options)?,
        None => Vec::new(),
    };

    // Authenticate before saying anything about the database, as Postgres does. An unknown
    // user runs the same exchange and fails the same way as a wrong password.
    let user = config.user(user_name);
    let method = method(
        user.and_then(|u| u.auth_type)
            .unwrap_or(config.server.auth_type),
    );
    // What an auth_query user's login proved, for the server logins.
    let mut fetched = None;
    match user {
        Some(_) if method == Method::Trust => {
            let mut ok = BytesMut::new();
            encode::authentication_ok(&mut ok);
            stream.send(&ok).await?;
        }
        Some(u) => {
            let secret = match &u.secret {
                // Derive the verifier once, not on every login.
                Some(Secret::Plain(pw)) if method == Method::ScramSha256 => Some(Secret::Scram(
                    (*shared.verifiers.get(user_name, pw, &shared.mock_secret)).clone(),
                )),
                other => other.clone(),
            };
            auth::authenticate_client(
                stream,
                buf,
                user_name,
                method,
                secret.as_ref(),
                &shared.mock_secret,
                channel_binding,
            )
            .await?;
        }
        // Not configured: auth_query, when on, looks the user up on the database's primary
        // (an unknown database gives it nowhere to look: the exchange below fails).
        None if config.auth_query.enabled() && config.database(db_name).is_some() => {
            let db = config
                .database(db_name)
                .ok_or_else(|| LoginError::UnknownDatabase(db_name.to_owned()))?;
            fetched = Some(
                auth::query::authenticate(
                    stream,
                    buf,
                    user_name,
                    &config,
                    db,
                    &shared.auth_query,
                    &shared.mock_secret,
                    channel_binding,
                )
                .await?,
            );
        }
        None => {
            // Trust still needs a configured user: run an exchange that must fail.
            let method = if method == Method::Trust {
                Method::ScramSha256
            } else {
                method
            };
            auth::authenticate_client(
                stream,
                buf,
                user_name,
                method,
                None,
                &shared.mock_secret,
                channel_binding,
            )
            .await?;
            return Err(LoginError::Auth(AuthError::InvalidPassword {
                user: user_name.to_owned(),
            }));
        }
    }
    // Authentication took round trips: a reload may have landed meanwhile. What follows (the
    // cluster above all, which would otherwise be built from the old config and stay in the
    // registry) comes from the config in force now; a user the reload removed (or moved
    // between `[[users]]` and auth_query) is refused.
    let config = shared.config.load_full();
    let user = config.user(user_name);
    let still_valid = match &fetched {
        None => user.is_some(),
        Some(_) => user.is_none() && config.auth_query.enabled(),
    };
    if !still_valid {
        return Err(LoginError::Auth(AuthError::InvalidPassword {
            user: user_name.to_owned(),
        }));
    }

    if db_name == config.server.admin_database {
        if !config.server.admin_users.iter().any(|a| a == user_name) {
            return Err(LoginError::NotAdmin(user_name.to_owned()));
        }
        let application_name = msg.get("application_name").unwrap_or_default();
        crate::admin::login_burst(&mut out, user_name, application_name, key);
        stream.send(&out).await?;
        return Ok(Login::Admin(AdminLogin {
            user: user_name.to_owned(),
            database: db_name.to_owned(),
            application_name: application_name.to_owned(),
        }));
    }
    let db = config
        .database(db_name)
        .ok_or_else(|| LoginError::UnknownDatabase(db_name.to_owned()))?;
    let cluster = match (user, fetched) {
        (Some(user), _) => shared.pools.get_or_create(&config, db, user),
        (None, credential) => {
            let cluster = shared.pools.get_or_create_fetched(&config, db, user_name);
            // Every member's pool reads this slot: the replicas share the primary's pg_authid.
            if let (Some(slot), Some(credential)) = (&cluster.credential, credential) {
                slot.set(credential);
            }
            cluster
        }
    };
    let pool = Arc::clone(&cluster.primary);
    let session_mode = db.pool_mode.unwrap_or(config.pool.mode) == PoolMode::Session;

    let mut params = SessionParams::from_startup(&msg.params, options);
    let server_params = learn_server_view(&pool, &params, &shared.pauses).await?;
    // Kept as the server spells them, as the settings read back from servers are.
    params.normalize(|k, v| pool.normalized(k, v));
    for (name, value) in server_params.iter() {
        let lower = name.to_ascii_lowercase();
        let value = match params.get(&lower) {
            Some(raw) => pool
                .normalized(&lower, raw)
                .unwrap_or_else(|| raw.to_owned()),
            None => value.clone(),
        };
        encode::parameter_status(&mut out, name, &value);
    }
    encode::backend_key_data(&mut out, key.0, key.1);
    encode::ready_for_query(&mut out, b'I');
    stream.send(&out).await?;

    Ok(Login::Pooled(LoggedIn {
        cluster,
        params,
        session_mode,
        config,
    }))
}

/// The server's ParameterStatus values for this pool, after making sure the pool knows how the
/// server spells each of this client's reported settings. The first client with a value the
/// pool has not seen (and the first client of a pool) checks out a server and applies all its
/// settings there: that validates them at login, as Postgres does (a bad value is a FATAL
/// `22023` now, not at the first query), and `set_config`'s result gives their normalised
/// spelling. Later clients with the same values log in without touching a server.
async fn learn_server_view(
    pool: &Arc<Pool>,
    params: &SessionParams,
    pauses: &crate::pool::pause::Pauses,
) -> Result<Arc<crate::pool::pool::ServerParams>, LoginError> {
    if let Some(sp) = pool.server_params() {
        let known = params.desired().iter().all(|(k, v)| {
            !sp.iter().any(|(n, _)| n.eq_ignore_ascii_case(k)) || pool.normalized(k, v).is_some()
        });
        if known {
            return Ok(sp);
        }
    }
    // A paused database (PAUSE, KILL) opens no server connection, not even for a login: the
    // DBA may be restarting it. The login timeout bounds the wait.
    pauses.wait_resumed(&pool.database).await;
    let deadline = Instant::now() + pool.settings().checkout_timeout;
    let mut conn = pool.checkout(deadline).await?;
    if let Some(sql) = params.full_sql(&conn.applied) {
        match relay::replay_returning(&mut conn, &sql).await {
            Ok(row) => {
                let mut applied = Vec::with_capacity(row.len());
                for ((k, v), norm) in params.desired().iter().zip(row) {
                    if let Some(norm) = norm {
                        pool.learn_normalized(k, v, &norm);
                        applied.push((k.clone(), norm));
                    }
                }
                conn.applied = applied;
            }
            Err(relay::ReplayError::Server(_, msg)) => {
                conn.release();
                return Err(LoginError::Setting(msg));
            }
            Err(relay::ReplayError::Broken) => {
                conn.discard();
                return Err(LoginError::ServerLost);
            }
        }
    }
    conn.release();
    Ok(pool.server_params().unwrap_or_default())
}
