//! Which member of the database serves the request a detached client is about to send: the
//! session's side of `router`.
//!
//! The request is classified as a whole (`router::request`) before checkout. Reads go to a
//! replica picked from the health view (`router::select`), honouring the client's own writes
//! (`router::rw`); writes, read-write transactions and anything uncertain go to the primary.
//! A replica that cannot be reached is marked down and the next one tried, so a read that had
//! not started never fails because one replica died. A read that fails on its replica before
//! any byte of its reply reached the client (a write the grammar could not see, answered
//! `25006`; a replica that died under it) is sent again elsewhere by `client::forward`, which
//! asks [`Route::redirect`] where.

use std::sync::Arc;
use std::time::Instant;

use super::session::Session;
use crate::config::{Config, NoReplica};
use crate::error::{ClientFacing, ErrorKind};
use crate::health::{Health, InFlight, State};
use crate::pool::Pool;
use crate::protocol::messages::parse::cstr;
use crate::protocol::sqlstate::{self, SqlState};
use crate::router::rw::{Need, ReadYourWrites};
use crate::router::select::{self, Limits, Target};
use crate::router::{Class, Hint, Verdict, route_setting};

/// Routing state of one client (only for databases with replicas, in transaction mode).
pub struct Route {
    health: Arc<Health>,
    limits: Limits,
    no_replica_error: bool,
    read_your_writes: bool,
    rw: ReadYourWrites,
    /// The member the attached server belongs to.
    on: Option<OnMember>,
    /// Where the re-run of a failed read must go (set by `forward`).
    redirect: Option<Redirect>,
}

/// Where a failed read runs again.
#[derive(Debug, Clone, Copy)]
pub enum Redirect {
    /// A replica refused it as a write (`25006`).
    Primary,
    /// This replica failed under it: any other member.
    Avoid(usize),
}

/// The attached server's member, counted as outstanding there while attached.
struct OnMember {
    target: Target,
    member: InFlight,
    since: Instant,
    /// The request may have written: the client's later reads must see it.
    may_write: bool,
}

/// The member chosen for a request.
#[derive(Debug, Clone, Copy)]
pub struct Placed {
    pub target: Target,
    /// It may write, by its SQL (a read sent to the primary for lack of a replica, or because
    /// the client asked, does not; a re-run after `25006` did try to).
    pub may_write: bool,
}

/// What the request wants, before a member is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A write, or the client asked for the primary.
    Primary,
    /// A read by classification: read-your-writes applies.
    Read,
    /// A replica because the client said so (hint or `lagoon.route`).
    Replica,
}

/// Why a request gets no server at all.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(
        "no replica of database \"{0}\" can serve this read now (down, or lagging past routing.max_lag_bytes / routing.max_lag_ms), and routing.no_replica = \"error\""
    )]
    NoReplica(String),
    #[error("the primary of database \"{0}\" is down ({1}); writes cannot run until it is back")]
    PrimaryDown(String, String),
}

impl ClientFacing for RouteError {
    fn sqlstate(&self) -> SqlState {
        match self {
            RouteError::NoReplica(_) => sqlstate::CANNOT_CONNECT_NOW,
            RouteError::PrimaryDown(..) => sqlstate::CONNECTION_FAILURE,
        }
    }
    fn kind(&self) -> ErrorKind {
        ErrorKind::Server
    }
}

impl Route {
    /// The routing state for a client of database `db`, or None when its requests all go
    /// to the primary (no replicas, read/write split off, session pooling).
    /// Boxed: most databases have no replicas, and every client of theirs would otherwise
    /// carry the empty space in its session.
    pub fn new(shared: &crate::app::Shared, config: &Config, db: &str) -> Option<Box<Route>> {
        let health = shared.health.get(db).map(|h| Arc::clone(&h))?;
        let r = &config.routing;
        Some(Box::new(Route {
            health,
            limits: Limits::from_config(r),
            no_replica_error: r.no_replica == NoReplica::Error,
            read_your_writes: r.read_your_writes,
            rw: ReadYourWrites::default(),
            on: None,
            redirect: None,
        }))
    }

    /// Keeps `old`'s read-your-writes state and pending redirect (a reload rebuilt the
    /// routing state between a refused read and its re-run).
    pub fn carry_over(&mut self, old: &Route) {
        self.rw = old.rw.clone();
        self.redirect = old.redirect;
    }

    /// The re-run of the request in flight goes to `to`.
    pub fn redirect(&mut self, to: Redirect) {
        self.redirect = Some(to);
    }

    /// Where the next attach must go, once (see [`Route::redirect`]).
    pub fn take_redirect(&mut self) -> Option<Redirect> {
        self.redirect.take()
    }

    /// The replica the attached server belongs to, if it is one.
    pub fn on_replica(&self) -> Option<usize> {
        match self.on.as_ref()?.target {
            Target::Replica(i) => Some(i),
            Target::Primary => None,
        }
    }

    /// The attached server went back to its pool after a complete transaction: its latency
    /// feeds the member's estimate, and a possible write is remembered for the client's reads.
    pub fn released(&mut self) {
        if let Some(on) = self.on.take() {
            on.member.member().observe_latency(on.since.elapsed());
            if on.may_write && on.target == Target::Primary && self.read_your_writes {
                self.rw.committed(Instant::now());
            }
        }
    }

    /// The attached server is gone otherwise (lost, discarded, session over). A write may
    /// have committed before it went: the client's reads assume it did.
    pub fn detached(&mut self) {
        if let Some(on) = self.on.take()
            && on.may_write
            && on.target == Target::Primary
            && self.read_your_writes
        {
            self.rw.committed(Instant::now());
        }
    }

    /// The member for a request that wants `want`, avoiding replica `avoid`.
    fn place(&mut self, want: Want, avoid: Option<usize>) -> Result<Target, RouteError> {
        let h = &self.health;
        let min_lsn = match want {
            Want::Primary => {
                if h.primary.state() == State::Down {
                    return Err(RouteError::PrimaryDown(
                        h.database.clone(),
                        "its health probes fail".to_owned(),
                    ));
                }
                return Ok(Target::Primary);
            }
            Want::Replica => None,
            Want::Read if !self.read_your_writes => None,
            Want::Read => match self.rw.need(|t| h.primary_lsn_since(t)) {
                Need::Any => None,
                Need::AtLeast(lsn) => Some(lsn),
                Need::Primary => return Ok(Target::Primary),
            },
        };
        match select::select(h, &self.limits, min_lsn, avoid) {
            Some(t) => Ok(t),
            None if self.no_replica_error => Err(RouteError::NoReplica(h.database.clone())),
            None => Ok(Target::Primary),
        }
    }
}

impl Session<'_> {
    /// What the buffered request wants: classification of its SQL, then the statement's
    /// hint, then the session's `lagoon.route`; and whether it may write (by its SQL alone,
    /// wherever it is sent).
    fn want(&self, classifier: &crate::router::classify::Classifier) -> (Want, bool) {
        let std_strings = self.params.standard_strings();
        let v = crate::router::request::classify_request(
            &self.cbuf[..self.scanned],
            |text| {
                let v = classifier.classify(text, std_strings);
                // Unparsable as written (see `route_setting`), a plain SET once quoted.
                if v.class == Class::Write && route_setting::quote_primary(text).is_some() {
                    return Verdict {
                        class: Class::Read,
                        ..v
                    };
                }
                v
            },
            |name| {
                let stmt = self.statements.get(name)?;
                Some(classifier.classify(cstr(&stmt.body)?.0, std_strings))
            },
        );
        let reads = match v.class {
            Class::Read => true,
            Class::Begin => self.params.get("default_transaction_read_only") == Some("on"),
            Class::Write => false,
        };
        let want = match (v.hint, self.params.get("lagoon.route")) {
            (Some(Hint::Primary), _) => Want::Primary,
            (Some(Hint::Replica), _) => Want::Replica,
            (None, Some(r)) if r.eq_ignore_ascii_case("primary") => Want::Primary,
            (None, Some(r)) if r.eq_ignore_ascii_case("replica") => Want::Replica,
            _ if reads => Want::Read,
            _ => Want::Primary,
        };
        (want, !reads)
    }

    /// The pool to check the buffered request out of, and the routing note to keep while
    /// attached; `avoid` is a replica that just failed. Without routing, the primary's.
    pub(super) fn choose_pool(
        &mut self,
        redirect: Option<Redirect>,
        avoid: Option<usize>,
    ) -> Result<(Arc<Pool>, Option<Placed>), RouteError> {
        if self.route.is_none() {
            return Ok((Arc::clone(&self.cluster.primary), None));
        }
        let avoid = match (redirect, avoid) {
            (_, Some(i)) | (Some(Redirect::Avoid(i)), None) => Some(i),
            _ => None,
        };
        let (want, may_write) = match redirect {
            // Refused by a replica as a write: it did try to write.
            Some(Redirect::Primary) => (Want::Primary, true),
            _ => self.want(&self.shared.classifier),
        };
        let Some(route) = self.route.as_mut() else {
            return Ok((Arc::clone(&self.cluster.primary), None));
        };
        let target = route.place(want, avoid)?;
        let pool = match target {
            Target::Replica(i) => self.cluster.replicas.get(i),
            Target::Primary => None,
        };
        Ok((
            Arc::clone(pool.unwrap_or(&self.cluster.primary)),
            Some(Placed { target, may_write }),
        ))
    }

    /// A checkout on `target` succeeded: note the member while attached.
    pub(super) fn attached_to(&mut self, placed: Option<Placed>) {
        let Some(route) = self.route.as_mut() else {
            return;
        };
        let Some(Placed { target, may_write }) = placed else {
            return;
        };
        let member = match target {
            Target::Primary => &route.health.primary,
            Target::Replica(i) => match route.health.replicas.get(i) {
                Some(m) => m,
                None => return,
            },
        };
        member.count_routed();
        let member = member.start_request();
        route.on = Some(OnMember {
            target,
            member,
            since: Instant::now(),
            may_write,
        });
    }

    /// Client bytes read while attached go to the attached server unrouted (pipelined
    /// behind the request that was routed): if they may write, the client's later reads must
    /// see it, as for a write routed on its own.
    pub(super) fn note_attached_write(&mut self) {
        let reads_only = self
            .route
            .as_ref()
            .and_then(|r| r.on.as_ref())
            .is_some_and(|on| on.target == Target::Primary && !on.may_write);
        if !reads_only || self.scanned == 0 {
            return;
        }
        let (_, may_write) = self.want(&self.shared.classifier);
        if may_write && let Some(on) = self.route.as_mut().and_then(|r| r.on.as_mut()) {
            on.may_write = true;
        }
    }

    /// A checkout on replica `i` failed to connect: the replica is marked down so reads leave
    /// it now rather than at the next probes.
    pub(super) fn replica_failed(&mut self, i: usize, cause: &str) {
        if let Some(m) = self.route.as_ref().and_then(|r| r.health.replicas.get(i)) {
            m.mark_down(cause);
        }
    }
}
