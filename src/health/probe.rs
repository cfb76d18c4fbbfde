//! One probe of one member: a kept-open tokio-postgres connection (opened when there is none)
//! and one simple query asking the server's role and WAL position, all bounded by one
//! deadline (the probe interval, connect included). The round trip is timed around the query
//! alone, so it measures the server and the network, not our login.
//!
//! Any error or timeout drops the connection: a hung or restarted server gets a fresh one on
//! the next probe rather than a wait on a dead socket. The connection's driver task is
//! aborted with it, so a server that never answers cannot pile up tasks or sockets.
//!
//! Also the probe login rule ([`probe_login`]). What the answers mean (role checks, bans,
//! lag) is the monitor's business; reply parsing is sans-IO ([`parse_reply`]).

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use super::lsn;
use crate::config::{Config, DatabaseConfig, Endpoint};

/// The probe query. On the primary the *insert* LSN: it is at or past every commit the proxy
/// has seen acknowledged (even with `synchronous_commit = off`), which read-your-writes relies
/// on. On a standby the replay LSN. CASE keeps the primary-only function from being evaluated
/// on a standby (it would raise an error there).
pub const QUERY: &str = "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() \
     THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END::text";

/// `application_name` of probe connections, so operators can tell them apart in
/// `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "lagoon-health";

/// The login the monitor uses for every member of a database. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ProbeLogin {
    pub user: String,
    /// Plaintext; `None` logs in without one (trust).
    pub password: Option<String>,
}

impl std::fmt::Debug for ProbeLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeLogin")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .finish()
    }
}

/// Who the monitor logs in as to probe `db`'s members:
/// 1. the user (and password) named in the database's `primary` URL, when it names one (the
///    login the pools use for every client, so it certainly may connect);
/// 2. else the first `[[users]]` entry with a server password (`UserConfig::server_password`:
///    `server_password`, or a plaintext `password`);
/// 3. else `auth_query.user` when auth_query is on and its password is plaintext or absent
///    (an md5 hash cannot log in through tokio-postgres), so a proxy whose users all come
///    from auth_query still probes its replicas;
/// 4. else the first `[[users]]` entry at all, without a password (works under trust).
///
/// `None` only when the URL names no user, there are no `[[users]]` and no usable auth_query
/// login: then nothing can log in and the database cannot be probed. A replica URL that names its own user
/// overrides this for that replica, as it would for its pool. Each member is reached at its
/// own endpoint's host, port and dbname, with its `options` startup parameter if it has one,
/// and `application_name = lagoon-health`.
pub fn probe_login(config: &Config, db: &DatabaseConfig) -> Option<ProbeLogin> {
    let ep = &db.primary_endpoint;
    if let Some(user) = &ep.user {
        return Some(ProbeLogin {
            user: user.clone(),
            password: ep.password.clone(),
        });
    }
    if let Some(u) = config.users.iter().find(|u| u.server_password().is_some()) {
        return Some(ProbeLogin {
            user: u.name.clone(),
            password: u.server_password().map(str::to_owned),
        });
    }
    let aq = &config.auth_query;
    if aq.enabled()
        && aq
            .password
            .as_deref()
            .is_none_or(|p| !crate::auth::is_md5_hash(p))
    {
        return Some(ProbeLogin {
            user: aq.user.clone(),
            password: aq.password.clone(),
        });
    }
    config.users.first().map(|u| ProbeLogin {
        user: u.name.clone(),
        password: None,
    })
}

/// What a good probe read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// `pg_is_in_recovery()`: a standby.
    pub in_recovery: bool,
    /// Replay LSN on a standby, insert LSN on a primary.
    pub lsn: u64,
    /// When the query was sent (after connecting).
    pub sent_at: Instant,
    /// Query round trip.
    pub rtt: Duration,
}

/// Why a probe failed. The text goes to logs and SHOW REPLICAS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer within {0:?} (probe_interval_ms)")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("probe query failed: {0}")]
    Query(String),
    #[error("unexpected probe reply: {0}")]
    Reply(String),
}

/// A live probe connection; dropping it closes the socket and stops its driver task.
struct Conn {
    client: Client,
    driver: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Probes one member, keeping its connection between probes.
pub(crate) struct Prober {
    config: tokio_postgres::Config,
    /// The member's `server_tls` as tokio-postgres takes it; `None` under `disable`.
    tls: Option<crate::net::tls::upstream::MakeTls>,
    conn: Option<Conn>,
}

impl Prober {
    /// A prober for the member at `endpoint`, logging in as `login` (or as the endpoint's own
    /// user when its URL names one).
    pub(crate) fn new(endpoint: &Endpoint, login: &ProbeLogin) -> Prober {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&endpoint.host)
            .port(endpoint.port)
            .dbname(&endpoint.dbname)
            .application_name(APPLICATION_NAME)
            .ssl_mode(SslMode::Disable);
        // The same TLS as the pools: a server that only accepts TLS must not look down.
        let tls = endpoint.tls.tokio_postgres().map(|(mode, make)| {
            config.ssl_mode(mode);
            make
        });
        let (user, password) = match &endpoint.user {
            Some(u) => (u, endpoint.password.as_ref()),
            None => (&login.user, login.password.as_ref()),
        };
        config.user(user);
        if let Some(pw) = password {
            config.password(pw.as_bytes());
        }
        if let Some(opts) = &endpoint.options {
            config.options(opts);
        }
        Prober {
            config,
            tls,
            conn: None,
        }
    }

    /// One probe, finished within `timeout` (connecting included) or failed.
    pub(crate) async fn probe(&mut self, timeout: Duration) -> Result<Reading, ProbeError> {
        let result = tokio::time::timeout(timeout, self.probe_inner(timeout)).await;
        let result = result.unwrap_or(Err(ProbeError::Timeout(timeout)));
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn probe_inner(&mut self, timeout: Duration) -> Result<Reading, ProbeError> {
        let conn = match &mut self.conn {
            Some(conn) if !conn.client.is_closed() => conn,
            slot => {
                *slot = None;
                slot.insert(connect(&self.config, self.tls.clone(), timeout).await?)
            }
        };
        let sent_at = Instant::now();
        let messages = conn
            .client
            .simple_query(QUERY)
            .await
            .map_err(|e| ProbeError::Query(e.to_string()))?;
        let rtt = sent_at.elapsed();
        let row = messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .ok_or_else(|| ProbeError::Reply("no row".to_owned()))?;
        let column = |i: usize| {
            row.try_get(i)
                .map_err(|e| ProbeError::Reply(format!("column {i}: {e}")))
        };
        let (in_recovery, lsn) = parse_reply(column(0)?, column(1)?)?;
        Ok(Reading {
            in_recovery,
            lsn,
            sent_at,
            rtt,
        })
    }
}

async fn connect(
    config: &tokio_postgres::Config,
    tls: Option<crate::net::tls::upstream::MakeTls>,
    timeout: Duration,
) -> Result<Conn, ProbeError> {
    let mut config = config.clone();
    config.connect_timeout(timeout);
    match tls {
        Some(tls) => spawn_connection(&config, tls).await,
        None => spawn_connection(&config, NoTls).await,
    }
}

/// Connects and runs the connection's driver on its own task. Ends when the client is
/// dropped or the server goes away; the error is the probe's to report (its query fails).
async fn spawn_connection<T>(config: &tokio_postgres::Config, tls: T) -> Result<Conn, ProbeError>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config
        .connect(tls)
        .await
        .map_err(|e| ProbeError::Connect(e.to_string()))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn { client, driver })
}

/// The probe row's two text columns: `t`/`f` and an LSN. Sans-IO; never panics.
pub fn parse_reply(
    in_recovery: Option<&str>,
    lsn: Option<&str>,
) -> Result<(bool, u64), ProbeError> {
    let in_recovery = match in_recovery {
        Some("t") => true,
        Some("f") => false,
        other => {
            return Err(ProbeError::Reply(format!(
                "pg_is_in_recovery() = {other:?}"
            )));
        }
    };
    let text = lsn.ok_or_else(|| {
        // A standby that has replayed nothing yet (or lost its WAL source) reports NULL.
        ProbeError::Reply("no WAL position (NULL LSN)".to_owned())
    })?;
    let lsn = lsn::parse(text).ok_or_else(|| ProbeError::Reply(format!("LSN {text:?}")))?;
    Ok((in_recovery, lsn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UserConfig;

    #[test]
    fn parses_the_two_columns() {
        assert_eq!(
            parse_reply(Some("t"), Some("0/3000148")),
            Ok((true, 0x300_0148))
        );
        assert_eq!(
            parse_reply(Some("f"), Some("16/B374D848")),
            Ok((false, 0x16_B374_D848))
        );
    }

    #[test]
    fn junk_replies_are_errors_not_panics() {
        for (a, b) in [
            (None, Some("0/1")),
            (Some("true"), Some("0/1")),
            (Some(""), Some("0/1")),
            (Some("t"), None),
            (Some("t"), Some("")),
            (Some("f"), Some("not an lsn")),
            (Some("f"), Some("0/1/2")),
        ] {
            assert!(
                matches!(parse_reply(a, b), Err(ProbeError::Reply(_))),
                "{a:?} {b:?}"
            );
        }
    }

    fn user(name: &str, password: Option<&str>, server_password: Option<&str>) -> UserConfig {
        UserConfig {
            name: name.to_owned(),
            password: password.map(str::to_owned),
            auth_type: None,
            server_password: server_password.map(str::to_owned),
            secret: None,
        }
    }

    fn db(primary_user: Option<(&str, &str)>) -> DatabaseConfig {
        DatabaseConfig {
            name: "appdb".to_owned(),
            primary: String::new(),
            replicas: Vec::new(),
            pool_size: None,
            pool_mode: None,
            slow_query_threshold_ms: None,
            primary_endpoint: Endpoint {
                host: "127.0.0.1".to_owned(),
                port: 5432,
                dbname: "appdb".to_owned(),
                user: primary_user.map(|(u, _)| u.to_owned()),
                password: primary_user.map(|(_, p)| p.to_owned()),
                options: None,
                ..Endpoint::default()
            },
            replica_endpoints: Vec::new(),
            server_tls: None,
            server_tls_ca: None,
        }
    }

    fn login(user: &str, password: Option<&str>) -> Option<ProbeLogin> {
        Some(ProbeLogin {
            user: user.to_owned(),
            password: password.map(str::to_owned),
        })
    }

    #[test]
    fn login_prefers_the_url_user() {
        let config = Config {
            users: vec![user("app", Some("pw"), None)],
            ..Config::default()
        };
        assert_eq!(
            probe_login(&config, &db(Some(("forced", "fpw")))),
            login("forced", Some("fpw"))
        );
    }

    #[test]
    fn login_takes_the_first_user_that_can_log_in_to_postgres() {
        let verifier = "md50123456789abcdef0123456789abcdef";
        let config = Config {
            users: vec![
                user("hashed", Some(verifier), None),
                user("second", Some(verifier), Some("spw")),
                user("third", Some("plain"), None),
            ],
            ..Config::default()
        };
        assert_eq!(
            probe_login(&config, &db(None)),
            login("second", Some("spw"))
        );
    }

    #[test]
    fn login_uses_the_auth_query_role_when_no_user_has_a_password() {
        let mut config = Config {
            users: vec![user("trusted", None, None)],
            ..Config::default()
        };
        config.auth_query.user = "lagoon_auth".into();
        config.auth_query.password = Some("apw".into());
        assert_eq!(
            probe_login(&config, &db(None)),
            login("lagoon_auth", Some("apw"))
        );
        // A configured password still comes first; an md5 hash cannot be used.
        config.users.push(user("app", Some("pw"), None));
        assert_eq!(probe_login(&config, &db(None)), login("app", Some("pw")));
        config.users.pop();
        config.auth_query.password = Some(crate::auth::md5::md5_hash("lagoon_auth", "x"));
        assert_eq!(probe_login(&config, &db(None)), login("trusted", None));
    }

    #[test]
    fn login_falls_back_to_the_first_user_without_a_password() {
        let config = Config {
            users: vec![user("trusted", None, None), user("other", None, None)],
            ..Config::default()
        };
        assert_eq!(probe_login(&config, &db(None)), login("trusted", None));
        assert_eq!(probe_login(&Config::default(), &db(None)), None);
    }

    #[test]
    fn debug_hides_the_password() {
        let text = format!("{:?}", login("u", Some("secret-pw")));
        assert!(!text.contains("secret-pw"), "{text}");
    }
}
