//! Hands the session's finished requests (see [`super::timing`]) to `stats::Stats`, with
//! the context a record needs: database, user, application_name, where it ran.
//!
//! It owns building the borrowed `QueryRecord`; it neither times (`timing`) nor keeps
//! figures (`stats`).

use std::time::{Instant, SystemTime};

use super::session::Session;
use super::timing::Pending;
use crate::protocol::sqlstate::SqlState;
use crate::stats::{FingerprintMemo, QueryRecord, Route, Stats};

/// What every record of one batch of finished entries shares.
struct Context<'a> {
    stats: &'a Stats,
    db: &'a crate::stats::DbStats,
    user: &'a str,
    application_name: &'a str,
    std_strings: bool,
    route: Route,
    member: &'a str,
}

impl<'a> Context<'a> {
    /// The context of one session's records, for a request no server ran. Takes the
    /// session's fields apart, so its timing queue can be drained meanwhile.
    fn of(
        shared: &'a crate::app::Shared,
        db: &'a crate::stats::DbStats,
        pool: &'a crate::pool::Pool,
        params: &'a super::params::SessionParams,
    ) -> Context<'a> {
        Context {
            stats: &shared.stats,
            db,
            user: &pool.user,
            application_name: params.get("application_name").unwrap_or_default(),
            std_strings: params.standard_strings(),
            route: Route::Primary,
            member: "",
        }
    }

    /// Records `p`; `memo` spares the fingerprint of a text the session sent lately.
    fn record(&self, p: &Pending, sqlstate: Option<[u8; 5]>, memo: Option<&mut FingerprintMemo>) {
        if !p.executes {
            return;
        }
        let phases = p.timer.phases();
        // Only a slow query's log line shows the wall clock: no clock read for the others.
        let at = if phases.total >= self.db.threshold() {
            SystemTime::now()
        } else {
            SystemTime::UNIX_EPOCH
        };
        let rec = QueryRecord {
            database: &self.db.database,
            user: self.user,
            application_name: self.application_name,
            route: self.route,
            member: self.member,
            sql: &p.sql,
            std_strings: self.std_strings,
            pool_wait: phases.pool_wait,
            server: phases.server,
            client: phases.client,
            total: phases.total,
            rows: p.rows,
            sqlstate: sqlstate.or(p.sqlstate),
            at,
        };
        let fp = match memo {
            Some(memo) => memo.fingerprint(&p.sql, self.std_strings),
            None => rec.fingerprint(),
        };
        self.stats.finish_with(self.db, &rec, fp);
    }
}

impl Session<'_> {
    /// Records the requests whose replies have all reached the client.
    pub(super) fn finish_answered(&mut self) {
        let now = Instant::now();
        // Where the router placed the server; without routing (or on the primary) it is the
        // primary's.
        let route = match self.route.as_ref().and_then(|r| r.on_replica()) {
            Some(_) => Route::Replica,
            None => Route::Primary,
        };
        let member = self
            .server
            .as_ref()
            .map_or("", |conn| conn.pool().member.as_str());
        let ctx = Context {
            route,
            member,
            ..Context::of(self.shared, &self.db_stats, &self.pool, &self.params)
        };
        let (done, memo) = self.timing.take_answered_with_memo(now);
        for p in done {
            ctx.record(&p, None, Some(&mut *memo));
        }
        self.flush_byte_counts();
    }

    /// Records every request in flight as failed with `code`: the proxy answered them itself
    /// (no server could be had). Their time is all pool wait.
    pub(super) fn record_refused(&mut self, code: SqlState) {
        if self.timing.is_empty() {
            return;
        }
        let ctx = Context::of(self.shared, &self.db_stats, &self.pool, &self.params);
        let sqlstate = <[u8; 5]>::try_from(code.code().as_bytes()).ok();
        for p in self.timing.take_all(Instant::now()) {
            ctx.record(&p, sqlstate, None);
        }
    }
}
