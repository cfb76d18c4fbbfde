//! Semantic checks on a typed config, after the TOML layer has reported unknown keys and type
//! errors. Every check runs and every problem is returned: a user fixing a config should see
//! the whole list at once. Validation also fills the derived fields (`UserConfig::secret`,
//! `DatabaseConfig::primary_endpoint`, `replica_endpoints`) so nothing downstream re-parses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::Problem;
use super::document::{Locations, Parsed};
use super::endpoint;
use super::model::{AuthType, Config, DatabaseConfig, TlsMode};
use crate::auth::Secret;
use crate::net::tls::{Acceptor, Upstream};

/// Smallest accepted `server.max_message_bytes`: below it ordinary queries cannot get through,
/// which is a typo, not a policy.
const MIN_MESSAGE_BYTES: usize = 1024;

/// Checks `parsed.config`, fills its derived fields, and returns every problem found.
pub(crate) fn validate(parsed: &mut Parsed) -> Vec<Problem> {
    let mut v = Validator {
        at: &parsed.locations,
        problems: Vec::new(),
    };
    let config = &mut parsed.config;
    v.server(config);
    v.tls(config);
    v.pool(config);
    v.routing_and_slow_query(config);
    v.users(config, &parsed.user_index);
    v.auth_query(config);
    v.databases(config, &parsed.database_index);
    v.problems
}

struct Validator<'a> {
    at: &'a Locations,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn report(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(self.at.problem(path, message));
    }

    fn at_least(&mut self, path: &str, value: u64, min: u64) {
        if value < min {
            self.report(path, format!("must be at least {min}, got {value}"));
        }
    }

    fn socket_addr(&mut self, path: &str, value: &str) {
        if value.parse::<SocketAddr>().is_err() {
            self.report(
                path,
                format!("\"{value}\" is not an ip:port address (e.g. \"127.0.0.1:6432\")"),
            );
        }
    }

    fn server(&mut self, config: &Config) {
        let s = &config.server;
        self.socket_addr("server.listen", &s.listen);
        if let Some(metrics) = &s.metrics_listen {
            self.socket_addr("server.metrics_listen", metrics);
        }
        if s.admin_database.is_empty() {
            self.report("server.admin_database", "must not be empty");
        }
        self.at_least("server.max_client_conn", s.max_client_conn as u64, 1);
        self.at_least(
            "server.max_message_bytes",
            s.max_message_bytes as u64,
            MIN_MESSAGE_BYTES as u64,
        );
        self.at_least(
            "server.client_login_timeout_ms",
            s.client_login_timeout_ms,
            1,
        );
        for admin in &s.admin_users {
            if config.user(admin).is_none() {
                self.report(
                    "server.admin_users",
                    format!("\"{admin}\" is not the name of any [[users]] entry"),
                );
            }
        }
    }

    /// Client-side TLS: the files are read and checked here, so `lagoon check` and a reload
    /// report a bad certificate before anything uses it.
    fn tls(&mut self, config: &mut Config) {
        let tls = &mut config.tls;
        tls.acceptor = None;
        if tls.mode == TlsMode::Disable {
            return;
        }
        let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
            for (name, missing) in [
                ("tls.cert", tls.cert.is_none()),
                ("tls.key", tls.key.is_none()),
            ] {
                if missing {
                    self.report(
                        name,
                        format!("required by tls.mode = \"{}\" (a PEM file path)", tls.mode),
                    );
                }
            }
            return;
        };
        match Acceptor::load(cert, key, tls.ca.as_deref(), tls.client_cert) {
            Ok(acceptor) => tls.acceptor = Some(Arc::new(acceptor)),
            Err(problems) => {
                for (name, message) in problems {
                    self.report(name, message);
                }
            }
        }
    }

    fn pool(&mut self, config: &Config) {
        let p = &config.pool;
        self.at_least("pool.size", p.size.into(), 1);
        if p.min_idle > p.size {
            self.report(
                "pool.min_idle",
                format!("must be at most pool.size ({}), got {}", p.size, p.min_idle),
            );
        }
        self.at_least("pool.checkout_timeout_ms", p.checkout_timeout_ms, 1);
        self.at_least("pool.connect_timeout_ms", p.connect_timeout_ms, 1);
    }

    fn routing_and_slow_query(&mut self, config: &Config) {
        self.at_least(
            "routing.probe_interval_ms",
            config.routing.probe_interval_ms,
            1,
        );
        let r = &config.routing;
        self.at_least(
            "routing.down_after_failures",
            r.down_after_failures.into(),
            1,
        );
        self.at_least("routing.up_after_successes", r.up_after_successes.into(), 1);
        let sq = &config.slow_query;
        self.at_least(
            "slow_query.max_lines_per_second",
            sq.max_lines_per_second.into(),
            1,
        );
        self.at_least("slow_query.top_queries", sq.top_queries as u64, 1);
        if config.slow_query.log.is_empty() {
            self.report(
                "slow_query.log",
                "must be \"stderr\" or a file path, not empty",
            );
        }
    }

    /// `index[i]` is the file position of `config.users[i]`, for paths in messages.
    fn users(&mut self, config: &mut Config, index: &[usize]) {
        let server_auth = config.server.auth_type;
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (user, &i) in config.users.iter_mut().zip(index) {
            let path = format!("users[{i}]");
            if user.name.is_empty() {
                self.report(format!("{path}.name"), "must not be empty");
            } else if let Some(first) = seen.insert(user.name.clone(), i) {
                self.report(
                    format!("{path}.name"),
                    format!("duplicate user \"{}\" (also users[{first}])", user.name),
                );
            }
            let auth = user.effective_auth_type(server_auth);
            user.secret = match user.password.as_deref().map(Secret::parse) {
                None => {
                    if auth != AuthType::Trust {
                        self.report(
                            format!("{path}.password"),
                            format!(
                                "missing: auth type is {auth}; set a password, or \
                                 auth_type = \"trust\""
                            ),
                        );
                    }
                    None
                }
                Some(Err(e)) => {
                    self.report(format!("{path}.password"), e.to_string());
                    None
                }
                Some(Ok(secret)) => Some(secret),
            };
            if auth == AuthType::ScramSha256 && matches!(user.secret, Some(Secret::Md5(_))) {
                self.report(
                    format!("{path}.password"),
                    "an md5 hash cannot verify scram-sha-256 logins; give the plaintext or a \
                     SCRAM-SHA-256$ verifier, or set auth_type = \"md5\"",
                );
            }
        }
    }

    /// `[auth_query]`, when it is on (an empty `user` turns it off whatever else is set, so
    /// commenting out the user is enough to disable it).
    fn auth_query(&mut self, config: &Config) {
        let aq = &config.auth_query;
        if !aq.enabled() {
            return;
        }
        if !aq.query.contains("$1") {
            self.report(
                "auth_query.query",
                "must use $1 (the user name being looked up), e.g. the default \
                 \"SELECT uname, phash FROM lagoon.user_lookup($1)\"",
            );
        }
        if aq
            .password
            .as_deref()
            .is_some_and(|p| p.starts_with("SCRAM-SHA-256$"))
        {
            self.report(
                "auth_query.password",
                "a SCRAM verifier cannot log in to Postgres; give the auth_query.user role's \
                 plaintext password or its md5 hash",
            );
        }
    }

    /// `index[i]` is the file position of `config.databases[i]`, for paths in messages.
    fn databases(&mut self, config: &mut Config, index: &[usize]) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let (pool, admin) = (&config.pool, &config.server.admin_database);
        for (db, &i) in config.databases.iter_mut().zip(index) {
            let path = format!("databases[{i}]");
            if db.name.is_empty() {
                self.report(format!("{path}.name"), "must not be empty");
            } else if db.name == *admin {
                self.report(
                    format!("{path}.name"),
                    format!(
                        "\"{admin}\" is server.admin_database (the admin console); rename one \
                         of them"
                    ),
                );
            } else if let Some(first) = seen.insert(db.name.clone(), i) {
                self.report(
                    format!("{path}.name"),
                    format!(
                        "duplicate database \"{}\" (also databases[{first}])",
                        db.name
                    ),
                );
            }
            if let Some(size) = db.pool_size {
                self.at_least(&format!("{path}.pool_size"), size.into(), 1);
                if size >= 1 && pool.min_idle > size {
                    self.report(
                        format!("{path}.pool_size"),
                        format!(
                            "must be at least pool.min_idle ({}), got {size}",
                            pool.min_idle
                        ),
                    );
                }
            }
            match endpoint::parse(&db.primary, &db.name) {
                Ok(ep) => db.primary_endpoint = ep,
                Err(message) => self.report(format!("{path}.primary"), message),
            }
            db.replica_endpoints.clear();
            for (r, replica) in db.replicas.iter().enumerate() {
                match endpoint::parse(replica, &db.name) {
                    Ok(ep) => db.replica_endpoints.push(ep),
                    Err(message) => self.report(format!("{path}.replicas[{r}]"), message),
                }
            }
            self.server_tls(db, &path);
        }
    }

    /// Builds each member's server-side TLS: the database's `server_tls`, else the URL's
    /// `sslmode`. One configuration per mode, shared by the members using it.
    fn server_tls(&mut self, db: &mut DatabaseConfig, path: &str) {
        let mut built: Vec<Upstream> = Vec::new();
        let mut failed = Vec::new();
        let ca = db.server_tls_ca.clone();
        let explicit = db.server_tls;
        let endpoints =
            std::iter::once(&mut db.primary_endpoint).chain(db.replica_endpoints.iter_mut());
        for ep in endpoints {
            let mode = explicit.unwrap_or(ep.url_tls);
            if let Some(u) = built.iter().find(|u| u.mode == mode) {
                ep.tls = u.clone();
                continue;
            }
            if failed.contains(&mode) {
                continue;
            }
            match Upstream::build(mode, ca.as_deref()) {
                Ok(u) => {
                    ep.tls = u.clone();
                    built.push(u);
                }
                Err(message) => {
                    let key = if ca.is_none() {
                        "server_tls"
                    } else {
                        "server_tls_ca"
                    };
                    self.report(format!("{path}.{key}"), message);
                    // Reported once per database, not once per member.
                    failed.push(mode);
                }
            }
        }
    }
}
