//! `SHOW DATABASES`: one row per `[[databases]]` entry (where its primary is, its pool
//! settings, whether it is paused), then one for the admin database, with PgBouncer's
//! columns and Lagoon's `replicas` (how many) at the end.

use std::net::SocketAddr;

use super::result_set::{Cell, INT, ResultSet, TEXT};
use crate::app::Shared;

pub fn show(shared: &Shared, console_addr: Option<SocketAddr>) -> ResultSet {
    let config = shared.config.load();
    let mut rs = ResultSet::new(&[
        ("name", TEXT),
        ("host", TEXT),
        ("port", INT),
        ("database", TEXT),
        ("force_user", TEXT),
        ("pool_size", INT),
        ("min_pool_size", INT),
        ("reserve_pool", INT),
        ("pool_mode", TEXT),
        ("max_connections", INT),
        ("current_connections", INT),
        ("paused", INT),
        ("disabled", INT),
        ("replicas", INT),
    ]);
    let pools = shared.pools.all();
    for db in &config.databases {
        let ep = &db.primary_endpoint;
        let current: usize = pools
            .iter()
            .filter(|p| p.database == db.name)
            .map(|p| {
                let s = p.stats();
                s.active + s.idle + s.connecting
            })
            .sum();
        rs.push(vec![
            (&db.name).into(),
            (&ep.host).into(),
            ep.port.into(),
            (&ep.dbname).into(),
            ep.user.as_ref().into(),
            db.effective_pool_size(&config.pool).into(),
            config.pool.min_idle.into(),
            0u64.into(),
            db.effective_pool_mode(&config.pool).as_str().into(),
            0u64.into(),
            current.into(),
            u64::from(shared.pauses.is_paused(&db.name)).into(),
            0u64.into(),
            db.replicas.len().into(),
        ]);
    }
    // The console itself: served in-process, no pool.
    rs.push(vec![
        (&config.server.admin_database).into(),
        Cell(None),
        console_addr.map(|a| a.port()).into(),
        (&config.server.admin_database).into(),
        Cell(None),
        0u64.into(),
        0u64.into(),
        0u64.into(),
        Cell(None),
        0u64.into(),
        0u64.into(),
        0u64.into(),
        0u64.into(),
        0u64.into(),
    ]);
    rs
}
