//! A database member's address, parsed from the `primary` / `replicas` strings with
//! `tokio_postgres::Config` (both `postgres://` URLs and `key=value` strings), so we do not
//! carry a hand-written URL parser. Only what the proxy uses is kept.

use std::str::FromStr;

use tokio_postgres::config::{Host, SslMode};

use super::kinds::ServerTlsMode;
use crate::net::tls::Upstream;

/// Where one member (primary or replica) of a database lives and how to log in there.
/// `Debug` never prints the password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// TCP host name or IP address (one per URL; unix sockets are refused).
    pub host: String,
    /// TCP port; 5432 when the URL has none.
    pub port: u16,
    /// Database on the server; the `[[databases]]` entry's `name` when the URL has none.
    pub dbname: String,
    /// Server login forced for every client user (like PgBouncer's `user=`); `None` logs in
    /// as the client's user.
    pub user: Option<String>,
    /// Password for `user`; `None` logs in without one (or with the user's server_password).
    pub password: Option<String>,
    /// The `options` startup parameter (e.g. `-c search_path=app`), sent as is.
    pub options: Option<String>,
    /// The URL's own `sslmode` (`disable`, `prefer` when absent, or `require`); the
    /// database's `server_tls` overrides it.
    pub url_tls: ServerTlsMode,
    /// TLS to this member, built from `server_tls` / `url_tls`; filled by validation.
    pub tls: Upstream,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .field("options", &self.options)
            .field("tls", &self.tls.mode)
            .finish()
    }
}

/// Parses one member string. The error text never repeats the input: it may hold a password.
pub(crate) fn parse(text: &str, default_dbname: &str) -> Result<Endpoint, String> {
    let cfg = tokio_postgres::Config::from_str(text)
        .map_err(|e| format!("not a valid postgres URL or key=value string: {e}"))?;
    let host = match cfg.get_hosts() {
        [Host::Tcp(host)] if !host.is_empty() => host.clone(),
        [] | [Host::Tcp(_)] => {
            return Err(
                "no host: give a TCP host, e.g. \"postgres://127.0.0.1:5432/appdb\"".to_owned(),
            );
        }
        [_] => return Err("unix socket paths are not supported: give a TCP host".to_owned()),
        _ => {
            return Err(
                "several hosts in one URL: give one host per URL (replicas go in `replicas`)"
                    .to_owned(),
            );
        }
    };
    if !cfg.get_hostaddrs().is_empty() {
        return Err("`hostaddr` is not supported: put the address in `host`".to_owned());
    }
    let port = match cfg.get_ports() {
        [] => 5432,
        [port] => *port,
        _ => return Err("several ports in one URL: give one port per URL".to_owned()),
    };
    let url_tls = match cfg.get_ssl_mode() {
        SslMode::Disable => ServerTlsMode::Disable,
        SslMode::Prefer => ServerTlsMode::Prefer,
        SslMode::Require => ServerTlsMode::Require,
        _ => {
            return Err(
                "unsupported sslmode: use disable, prefer or require here, or the database's \
                 server_tls (verify-ca, verify-full) with server_tls_ca"
                    .to_owned(),
            );
        }
    };
    let password = match cfg.get_password() {
        None => None,
        Some(bytes) => Some(
            String::from_utf8(bytes.to_vec())
                .map_err(|_| "the password is not valid UTF-8".to_owned())?,
        ),
    };
    let user = cfg.get_user().filter(|u| !u.is_empty()).map(str::to_owned);
    if user.is_none() && password.is_some() {
        // The login user comes from the client then, and this password is not theirs.
        return Err(
            "a password without a user: add the user it belongs to, or remove it \
                    (client users log in with their own server_password)"
                .to_owned(),
        );
    }
    Ok(Endpoint {
        host,
        port,
        dbname: cfg.get_dbname().unwrap_or(default_dbname).to_owned(),
        user,
        password,
        options: cfg.get_options().map(str::to_owned),
        url_tls,
        tls: Upstream::disabled(),
    })
}
