//! `SHOW CONFIG`: every setting in force as `key, value, default, changeable` (PgBouncer's
//! columns), keys dotted as in the file (`pool.size`), per-database and per-user settings as
//! `databases.<name>.<key>` and `users.<name>.<key>`. `changeable` says whether `RELOAD`
//! applies a change (listen addresses and TLS need a restart).
//!
//! Secrets never appear: users' and `auth_query`'s passwords are left out entirely, and a database URL that
//! carries a password is shown rebuilt from its parsed parts with the password masked.

use super::result_set::{Cell, ResultSet, TEXT};
use crate::config::{Config, Endpoint};

type Get = fn(&Config) -> Option<String>;

fn list(v: &[String]) -> Option<String> {
    Some(v.join(", "))
}

/// The section keys: (key, applied by RELOAD, read it from a config). Value and default are
/// both read with the same function, from the config in force and from `Config::default()`.
const KEYS: &[(&str, bool, Get)] = &[
    ("server.listen", false, |c| Some(c.server.listen.clone())),
    ("server.admin_database", true, |c| {
        Some(c.server.admin_database.clone())
    }),
    ("server.admin_users", true, |c| list(&c.server.admin_users)),
    ("server.metrics_listen", false, |c| {
        c.server.metrics_listen.clone()
    }),
    ("server.max_client_conn", true, |c| {
        Some(c.server.max_client_conn.to_string())
    }),
    ("server.auth_type", true, |c| {
        Some(c.server.auth_type.to_string())
    }),
    ("server.max_message_bytes", true, |c| {
        Some(c.server.max_message_bytes.to_string())
    }),
    ("server.shutdown_timeout_ms", true, |c| {
        Some(c.server.shutdown_timeout_ms.to_string())
    }),
    ("server.client_login_timeout_ms", true, |c| {
        Some(c.server.client_login_timeout_ms.to_string())
    }),
    ("tls.mode", true, |c| Some(c.tls.mode.to_string())),
    ("tls.cert", true, |c| {
        c.tls.cert.as_ref().map(|p| p.display().to_string())
    }),
    ("tls.key", true, |c| {
        c.tls.key.as_ref().map(|p| p.display().to_string())
    }),
    ("tls.ca", true, |c| {
        c.tls.ca.as_ref().map(|p| p.display().to_string())
    }),
    ("tls.client_cert", true, |c| {
        Some(c.tls.client_cert.to_string())
    }),
    ("pool.mode", true, |c| Some(c.pool.mode.to_string())),
    ("pool.size", true, |c| Some(c.pool.size.to_string())),
    ("pool.min_idle", true, |c| Some(c.pool.min_idle.to_string())),
    ("pool.checkout_timeout_ms", true, |c| {
        Some(c.pool.checkout_timeout_ms.to_string())
    }),
    ("pool.server_idle_timeout_ms", true, |c| {
        Some(c.pool.server_idle_timeout_ms.to_string())
    }),
    ("pool.server_lifetime_ms", true, |c| {
        Some(c.pool.server_lifetime_ms.to_string())
    }),
    ("pool.idle_transaction_timeout_ms", true, |c| {
        Some(c.pool.idle_transaction_timeout_ms.to_string())
    }),
    ("pool.connect_timeout_ms", true, |c| {
        Some(c.pool.connect_timeout_ms.to_string())
    }),
    ("pool.max_prepared_statements", true, |c| {
        Some(c.pool.max_prepared_statements.to_string())
    }),
    ("pool.session_features", true, |c| {
        Some(c.pool.session_features.to_string())
    }),
    ("pool.server_rollback_timeout_ms", true, |c| {
        Some(c.pool.server_rollback_timeout_ms.to_string())
    }),
    ("routing.read_write_split", true, |c| {
        Some(c.routing.read_write_split.to_string())
    }),
    ("routing.strategy", true, |c| {
        Some(c.routing.strategy.to_string())
    }),
    ("routing.max_lag_bytes", true, |c| {
        Some(c.routing.max_lag_bytes.to_string())
    }),
    ("routing.max_lag_ms", true, |c| {
        Some(c.routing.max_lag_ms.to_string())
    }),
    ("routing.probe_interval_ms", true, |c| {
        Some(c.routing.probe_interval_ms.to_string())
    }),
    ("routing.no_replica", true, |c| {
        Some(c.routing.no_replica.to_string())
    }),
    ("routing.read_your_writes", true, |c| {
        Some(c.routing.read_your_writes.to_string())
    }),
    ("routing.write_functions", false, |c| {
        list(&c.routing.write_functions)
    }),
    ("routing.primary_reads", true, |c| {
        Some(c.routing.primary_reads.to_string())
    }),
    ("routing.down_after_failures", true, |c| {
        Some(c.routing.down_after_failures.to_string())
    }),
    ("routing.up_after_successes", true, |c| {
        Some(c.routing.up_after_successes.to_string())
    }),
    ("slow_query.enabled", true, |c| {
        Some(c.slow_query.enabled.to_string())
    }),
    ("slow_query.threshold_ms", true, |c| {
        Some(c.slow_query.threshold_ms.to_string())
    }),
    ("slow_query.log", true, |c| Some(c.slow_query.log.clone())),
    ("slow_query.log_parameters", true, |c| {
        Some(c.slow_query.log_parameters.to_string())
    }),
    ("slow_query.max_lines_per_second", true, |c| {
        Some(c.slow_query.max_lines_per_second.to_string())
    }),
    ("slow_query.top_queries", true, |c| {
        Some(c.slow_query.top_queries.to_string())
    }),
    // auth_query.password is never shown, like users' passwords.
    ("auth_query.user", true, |c| Some(c.auth_query.user.clone())),
    ("auth_query.query", true, |c| {
        Some(c.auth_query.query.clone())
    }),
    ("auth_query.database", true, |c| {
        Some(c.auth_query.database.clone())
    }),
    ("auth_query.cache_ttl_ms", true, |c| {
        Some(c.auth_query.cache_ttl_ms.to_string())
    }),
];

/// One `SHOW CONFIG` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Option<String>,
    pub default: Option<String>,
    pub changeable: bool,
}

/// Every row, in file order: sections, then users, then databases.
pub fn entries(config: &Config) -> Vec<Entry> {
    let defaults = Config::default();
    let mut out: Vec<Entry> = KEYS
        .iter()
        .map(|(key, changeable, get)| Entry {
            key: (*key).to_owned(),
            value: get(config),
            default: get(&defaults),
            changeable: *changeable,
        })
        .collect();
    let mut add = |key: String, value: Option<String>, default: Option<String>| {
        out.push(Entry {
            key,
            value,
            default,
            changeable: true,
        });
    };
    for u in &config.users {
        // Passwords and server passwords are never shown, not even masked.
        add(
            format!("users.{}.auth_type", u.name),
            Some(u.effective_auth_type(config.server.auth_type).to_string()),
            Some(config.server.auth_type.to_string()),
        );
    }
    for d in &config.databases {
        let key = |k: &str| format!("databases.{}.{k}", d.name);
        add(
            key("primary"),
            Some(masked(&d.primary, &d.primary_endpoint)),
            None,
        );
        let replicas: Vec<String> = d
            .replicas
            .iter()
            .enumerate()
            .map(|(i, r)| match d.replica_endpoints.get(i) {
                Some(ep) => masked(r, ep),
                None => masked(r, &Endpoint::default()),
            })
            .collect();
        add(key("replicas"), list(&replicas), Some(String::new()));
        add(
            key("pool_size"),
            Some(d.effective_pool_size(&config.pool).to_string()),
            Some(config.pool.size.to_string()),
        );
        add(
            key("pool_mode"),
            Some(d.effective_pool_mode(&config.pool).to_string()),
            Some(config.pool.mode.to_string()),
        );
        add(
            key("server_tls"),
            Some(match d.server_tls {
                Some(mode) => mode.to_string(),
                None => d.primary_endpoint.url_tls.to_string(),
            }),
            Some(crate::config::ServerTlsMode::default().to_string()),
        );
        add(
            key("server_tls_ca"),
            d.server_tls_ca.as_ref().map(|p| p.display().to_string()),
            None,
        );
        add(
            key("slow_query_threshold_ms"),
            Some(
                d.slow_query_threshold_ms
                    .unwrap_or(config.slow_query.threshold_ms)
                    .to_string(),
            ),
            Some(config.slow_query.threshold_ms.to_string()),
        );
    }
    out
}

pub fn show(config: &Config) -> ResultSet {
    let mut rs = ResultSet::new(&[
        ("key", TEXT),
        ("value", TEXT),
        ("default", TEXT),
        ("changeable", TEXT),
    ]);
    for e in entries(config) {
        rs.push(vec![
            e.key.into(),
            Cell(e.value),
            Cell(e.default),
            if e.changeable { "yes" } else { "no" }.into(),
        ]);
    }
    rs
}

/// A member string as it can be shown: as written when it holds no secret, else rebuilt
/// from its parsed parts with the password replaced by `********`. "No secret" is judged
/// from the text too, not only from the parse, so a string that was never parsed (or that
/// spells a password some other way) is never shown raw.
fn masked(raw: &str, ep: &Endpoint) -> String {
    let lower = raw.to_ascii_lowercase();
    let userinfo_has_colon = lower
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .is_some_and(|(userinfo, _)| userinfo.contains(':'));
    if ep.password.is_none() && !lower.contains("password") && !userinfo_has_colon {
        return raw.to_owned();
    }
    let user = ep
        .user
        .as_deref()
        .map(|u| format!("{}:********@", encode(u)))
        .unwrap_or_else(|| "********@".to_owned());
    let host = if ep.host.contains(':') {
        format!("[{}]", ep.host)
    } else {
        ep.host.clone()
    };
    let mut s = format!("postgres://{user}{host}:{}/{}", ep.port, encode(&ep.dbname));
    if let Some(o) = &ep.options {
        s.push_str("?options=");
        s.push_str(&encode(o));
    }
    s
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::field_names;
    use crate::config::{
        AuthQueryConfig, PoolConfig, RoutingConfig, ServerConfig, SlowQueryConfig, TlsConfig,
    };

    const TEXT_CONFIG: &str = r#"
[server]
admin_users = ["app"]
[pool]
size = 7
[[users]]
name = "app"
password = "user-secret-1"
server_password = "server-secret-2"
[auth_query]
user = "lagoon_auth"
password = "auth-secret-5"
[[databases]]
name = "appdb"
primary = "postgres://owner:url-secret-3@db.internal:5433/real?options=-c%20x%3D1"
replicas = ["host=r1 port=5434 user=owner password=kv-secret-4", "postgres://r2/real"]
pool_size = 3
"#;

    fn parsed() -> Config {
        crate::config::parse(TEXT_CONFIG).unwrap_or_else(|p| panic!("{p:?}"))
    }

    fn value(entries: &[Entry], key: &str) -> Option<String> {
        entries
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("{key} missing"))
            .value
            .clone()
    }

    #[test]
    fn every_section_key_is_shown() {
        let keys: Vec<String> = entries(&Config::default())
            .into_iter()
            .map(|e| e.key)
            .collect();
        for (section, fields) in [
            ("server", field_names::<ServerConfig>()),
            ("tls", field_names::<TlsConfig>()),
            ("pool", field_names::<PoolConfig>()),
            ("routing", field_names::<RoutingConfig>()),
            ("slow_query", field_names::<SlowQueryConfig>()),
            ("auth_query", field_names::<AuthQueryConfig>()),
        ] {
            assert!(!fields.is_empty());
            for f in fields {
                let key = format!("{section}.{f}");
                if key == "auth_query.password" {
                    assert!(!keys.contains(&key), "SHOW CONFIG shows {key}");
                    continue;
                }
                assert!(keys.contains(&key), "SHOW CONFIG lacks {key}");
            }
        }
    }

    #[test]
    fn values_defaults_and_changeable() {
        let e = entries(&parsed());
        assert_eq!(value(&e, "pool.size").as_deref(), Some("7"));
        let size = e.iter().find(|e| e.key == "pool.size").unwrap();
        assert_eq!(
            (size.default.as_deref(), size.changeable),
            (Some("20"), true)
        );
        let listen = e.iter().find(|e| e.key == "server.listen").unwrap();
        assert!(!listen.changeable);
        assert_eq!(value(&e, "databases.appdb.pool_size").as_deref(), Some("3"));
        assert_eq!(value(&e, "server.metrics_listen"), None);
        assert_eq!(
            value(&e, "users.app.auth_type").as_deref(),
            Some("scram-sha-256")
        );
    }

    #[test]
    fn no_password_is_ever_shown() {
        let config = parsed();
        let e = entries(&config);
        let all = format!("{e:?}");
        for secret in [
            "user-secret-1",
            "server-secret-2",
            "url-secret-3",
            "kv-secret-4",
            "auth-secret-5",
        ] {
            assert!(!all.contains(secret), "{secret} leaked: {all}");
        }
        let primary = value(&e, "databases.appdb.primary").unwrap();
        assert_eq!(
            primary,
            "postgres://owner:********@db.internal:5433/real?options=-c%20x%3D1"
        );
        let replicas = value(&e, "databases.appdb.replicas").unwrap();
        assert!(
            replicas.contains("postgres://owner:********@r1:5434/appdb"),
            "{replicas}"
        );
        assert!(replicas.ends_with(", postgres://r2/real"), "{replicas}");
        // Unparsed text that looks like it holds a password is not shown raw either.
        assert!(!masked("postgres://u:pw@h/d", &Endpoint::default()).contains("pw"));
        assert!(!masked("host=h password=pw", &Endpoint::default()).contains("pw"));
    }
}
