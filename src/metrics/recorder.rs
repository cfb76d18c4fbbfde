//! The Prometheus recorder: the one process global DESIGN.md allows. The `metrics` facade
//! sends every `counter!`/`gauge!`/`histogram!` of the process to a single global recorder,
//! so it is installed once per process ([`install`]) and every proxy in the process (tests
//! run several) renders from the same handle.
//!
//! Histograms are real Prometheus histograms with explicit buckets ([`SECONDS_BUCKETS`]),
//! never summaries: quantiles from summaries cannot be aggregated across instances.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::names::{self, Kind};

/// Upper bounds (seconds) of every `_seconds` histogram: from half a millisecond (a pooled
/// checkout, a point query) to 30 s (a report, a stuck queue).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The installed recorder's handle, or why it could not be installed (another recorder was
/// set first by something else in the process). Kept as the error text: retrying would fail
/// the same way.
static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder, once; later calls
/// (a second proxy in the same process) get the same handle. Fails only when a different
/// recorder was installed first.
pub fn install() -> Result<PrometheusHandle, String> {
    HANDLE.get_or_init(build_and_install).clone()
}

fn build_and_install() -> Result<PrometheusHandle, String> {
    let mut builder = PrometheusBuilder::new()
        // A default for any histogram not listed below: still a histogram, not a summary.
        .set_buckets(SECONDS_BUCKETS)
        .map_err(|e| e.to_string())?;
    for m in names::ALL.iter().filter(|m| m.kind == Kind::Histogram) {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(m.name.to_owned()), SECONDS_BUCKETS)
            .map_err(|e| e.to_string())?;
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| {
        format!("cannot install the Prometheus recorder: another metrics recorder is set ({e})")
    })?;
    describe_all();
    Ok(handle)
}

/// Gives every metric its `# HELP` text (shown once the metric has a series).
fn describe_all() {
    for m in names::ALL {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => {
                metrics::describe_histogram!(m.name, metrics::Unit::Seconds, m.help)
            }
        }
    }
}
