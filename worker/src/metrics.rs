//! Prometheus metrics of a worker: the `/metrics` endpoint ([`install`], off unless
//! `--metrics-addr`/`BATON_METRICS_ADDR` is set) and one short function per event. Names follow
//! Prometheus conventions (`baton_worker_` prefix, `_total` counters, `_seconds` durations); the
//! only label values are registered handler names and fixed words. docs/operations.md ("Metrics") lists them.

use std::{net::SocketAddr, time::Duration};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::PrometheusBuilder;

/// Upper bounds of the buckets of every `_seconds` histogram: 1 ms to 300 s.
const BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Installs the Prometheus recorder and serves `GET /metrics` on `addr` in the current tokio
/// runtime. Once per process.
///
/// # Errors
/// A message naming `metrics_addr` when the address cannot be bound or a recorder is already
/// installed in this process.
pub(crate) fn install(addr: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(BUCKETS_SECONDS)
        .and_then(PrometheusBuilder::install)
        .map_err(|e| format!("metrics_addr: cannot serve metrics on {addr}: {e}"))?;
    metrics::describe_gauge!(
        "baton_worker_steps_in_flight",
        "Steps running now (started, not yet reported), by handler."
    );
    metrics::describe_histogram!(
        "baton_worker_handler_duration_seconds",
        "Handler run time, by handler and outcome (succeeded, failed, suspended)."
    );
    metrics::describe_counter!(
        "baton_worker_reconnects_total",
        "RabbitMQ consumer sessions that failed and were reconnected, by handler."
    );
    metrics::describe_counter!(
        "baton_worker_results_refused_total",
        "Results the coordinator did not take, by handler and reason (stale: the attempt was no longer current; refused: an error that trying again cannot mend)."
    );
    tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    Ok(())
}

/// A step of `handler` runs; dropping the guard ends it (also when the task is aborted).
pub(crate) struct InFlight(String);

impl InFlight {
    /// Counts a step of `handler` in flight until the guard drops.
    pub(crate) fn start(handler: &str) -> Self {
        gauge!("baton_worker_steps_in_flight", "handler" => handler.to_string()).increment(1.0);
        Self(handler.to_string())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!("baton_worker_steps_in_flight", "handler" => self.0.clone()).decrement(1.0);
    }
}

/// A handler of `handler` ran `elapsed` and ended with `outcome`.
pub(crate) fn handler_ran(handler: &str, outcome: &'static str, elapsed: Duration) {
    histogram!("baton_worker_handler_duration_seconds", "handler" => handler.to_string(), "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// The consumer of `handler`'s queue failed and reconnects.
pub(crate) fn reconnect(handler: &str) {
    counter!("baton_worker_reconnects_total", "handler" => handler.to_string()).increment(1);
}

/// The coordinator did not take a result of `handler` (`reason`: stale, refused).
pub(crate) fn result_refused(handler: &str, reason: &'static str) {
    counter!("baton_worker_results_refused_total", "handler" => handler.to_string(), "reason" => reason).increment(1);
}
