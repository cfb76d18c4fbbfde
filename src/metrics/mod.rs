//! The metrics endpoint: `/metrics` (Prometheus text format), `/healthz` and `/readyz` on
//! `server.metrics_listen`, a listener of its own so a scrape never competes with clients.
//!
//! Owns: the metric names, help texts and label enums (`names`, a contract), the process's
//! Prometheus recorder (`recorder`), the gauges sampled at scrape time from the pools and the
//! client count (`sample`), the readiness rule (`ready`) and the small HTTP/1.1 server
//! (`http`). Does not own: recording on the data path (the session, pool and health monitor
//! record through the `metrics` facade, or through handles built here such as
//! [`pool_wait_histogram`]), nor starting the task (`app`).
//!
//! Two ways a value gets here, chosen by cost on the data path:
//! - **recorded** where it happens, through a handle resolved once (histograms such as
//!   `lagoon_pool_wait_seconds`, counters, the replica gauges the monitor sets each round);
//! - **sampled** at scrape time from state the proxy keeps anyway (pool connection counts,
//!   waiters, checkout timeouts, connected clients): nothing on the data path at all.
//!
//! Without `metrics_listen` no recorder is installed and every recording is the facade's
//! no-op.

pub mod http;
pub mod names;
mod ready;
pub mod recorder;
mod sample;

use std::net::SocketAddr;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::app::Shared;

pub use ready::readiness;

/// The `lagoon_pool_wait_seconds{database}` histogram of `database`. Resolve it once (a pool
/// keeps it) and record on it per checkout: no registry lookup or label allocation per query.
pub fn pool_wait_histogram(database: &str) -> ::metrics::Histogram {
    ::metrics::histogram!(names::POOL_WAIT_SECONDS, "database" => database.to_owned())
}

/// Counts one error the proxy originated in `lagoon_errors_total{kind}`. Errors are rare
/// enough for a registry lookup each.
pub fn count_error(kind: crate::error::ErrorKind) {
    ::metrics::counter!(names::ERRORS_TOTAL, "kind" => kind.as_str()).increment(1);
}

/// The endpoint, bound and with the recorder installed, not yet serving.
pub struct MetricsEndpoint {
    listener: TcpListener,
    handle: PrometheusHandle,
}

impl MetricsEndpoint {
    /// Installs the process's Prometheus recorder (once; see `recorder`) and binds `addr`.
    /// Done at proxy start, before any pool or monitor resolves a metric handle, so none of
    /// them is left holding a no-op handle; a bad address fails the start, not the first scrape.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<MetricsEndpoint> {
        let handle = recorder::install().map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(addr).await?;
        Ok(MetricsEndpoint { listener, handle })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shared.shutdown.hard` is cancelled (it keeps answering while the proxy
    /// drains, so `/readyz` can say so).
    pub async fn run(self, shared: Arc<Shared>) {
        http::serve(self.listener, self.handle, shared).await;
    }
}
