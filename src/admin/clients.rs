//! `SHOW CLIENTS`: every logged-in client, pooled or admin console, with PgBouncer's
//! columns. `ptr` is the client's registry id and `link` the id of the server connection it
//! holds (`SHOW SERVERS`' `ptr`).

use std::time::SystemTime;

use super::result_set::{INT, ResultSet, TEXT, timestamp, wait_split};
use crate::app::Shared;
use crate::client::registry::ClientState;
use crate::protocol::messages::encode::ColumnType;

/// PgBouncer's columns for a connection, the same for `SHOW CLIENTS` and `SHOW SERVERS`.
pub(super) const CONNECTION_COLUMNS: &[(&str, ColumnType)] = &[
    ("type", TEXT),
    ("user", TEXT),
    ("database", TEXT),
    ("state", TEXT),
    ("addr", TEXT),
    ("port", INT),
    ("local_addr", TEXT),
    ("local_port", INT),
    ("connect_time", TEXT),
    ("request_time", TEXT),
    ("wait", INT),
    ("wait_us", INT),
    ("close_needed", INT),
    ("ptr", INT),
    ("link", INT),
    ("remote_pid", INT),
    ("tls", TEXT),
    ("application_name", TEXT),
    ("prepared_statements", INT),
];

pub fn show(shared: &Shared) -> ResultSet {
    let now = SystemTime::now();
    let mut rs = ResultSet::new(CONNECTION_COLUMNS);
    for e in shared.client_registry.all() {
        let state = e.state();
        let request = e.request_time();
        let waited = match (state, request) {
            (ClientState::Waiting, Some(t)) => now.duration_since(t).unwrap_or_default(),
            _ => Default::default(),
        };
        let (wait, wait_us) = wait_split(waited);
        rs.push(vec![
            "C".into(),
            (&e.user).into(),
            (&e.database).into(),
            state.as_str().into(),
            e.addr.ip().to_string().into(),
            e.addr.port().into(),
            e.local_addr.map(|a| a.ip().to_string()).into(),
            e.local_addr.map(|a| a.port()).into(),
            timestamp(e.connect_time).into(),
            timestamp(request.unwrap_or(e.connect_time)).into(),
            wait.into(),
            wait_us.into(),
            0u64.into(),
            e.id.into(),
            e.server().into(),
            0u64.into(),
            (&e.tls).into(),
            (&e.application_name).into(),
            0u64.into(),
        ]);
    }
    rs
}
