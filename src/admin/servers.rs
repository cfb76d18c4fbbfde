//! `SHOW SERVERS`: every server connection of every pool (lent, idle, logging in), with
//! PgBouncer's columns, then Lagoon's `member`. `link` is the id of the client holding it
//! (`SHOW CLIENTS`' `ptr`); `remote_pid` the Postgres backend's pid.

use std::collections::HashMap;

use super::result_set::{ResultSet, TEXT, timestamp, wall};
use crate::app::Shared;
use crate::pool::pool::ServerState;

pub fn show(shared: &Shared) -> ResultSet {
    // Server connection id -> (client id, application_name) of the client holding it.
    let holders: HashMap<u64, (u64, String)> = shared
        .client_registry
        .all()
        .into_iter()
        .filter_map(|e| Some((e.server()?, (e.id, e.application_name.clone()))))
        .collect();
    let mut rs =
        ResultSet::new(&[super::clients::CONNECTION_COLUMNS, &[("member", TEXT)]].concat());
    for pools in super::pools::clusters(shared).into_values() {
        for pool in pools {
            let (host, port) = pool.server_addr();
            for s in pool.servers() {
                let holder =
                    s.id.filter(|_| s.state == ServerState::Active)
                        .and_then(|id| holders.get(&id));
                rs.push(vec![
                    "S".into(),
                    (&pool.user).into(),
                    (&pool.database).into(),
                    s.state.as_str().into(),
                    host.into(),
                    port.into(),
                    s.local_addr.map(|a| a.ip().to_string()).into(),
                    s.local_addr.map(|a| a.port()).into(),
                    s.connect_time.map(|t| timestamp(wall(t))).into(),
                    s.request_time.map(|t| timestamp(wall(t))).into(),
                    0u64.into(),
                    0u64.into(),
                    0u64.into(),
                    s.id.into(),
                    holder.map(|h| h.0).into(),
                    s.remote_pid.into(),
                    s.tls.as_deref().unwrap_or("").into(),
                    holder.map_or("", |h| h.1.as_str()).into(),
                    s.prepared.into(),
                    (&pool.member).into(),
                ]);
            }
        }
    }
    rs
}
