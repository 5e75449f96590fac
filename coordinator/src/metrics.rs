//! Prometheus metrics of the coordinator: the `/metrics` endpoint ([`install`]), the names
//! (`baton_` prefix, `_total` for counters, `_seconds` for durations, base units), one short
//! function per event for the places where events happen, the sampler of gauges that are read
//! from Redis and RabbitMQ ([`sample_loop`]), and the gRPC layer ([`GrpcMetrics`]).
//!
//! Labels carry only bounded values: workflow names, handler names, step ids and fixed words
//! (statuses, outcomes, gRPC codes and methods). Never a run id, a key value or free text.
//! docs/operations.md ("Metrics") lists every metric.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use baton_shared::time::{duration_ms, now_ms};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::PrometheusBuilder;
use sha2::Digest as _;
use tokio::sync::watch;
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};

use crate::{
    engine::Engine,
    store::{Completion, StoredTime},
};

/// Upper bounds of the buckets of every `_seconds` histogram: 1 ms to 300 s.
pub const BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// How often [`sample_loop`] reads the queue, timer, outbox and slot gauges.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// A timer due longer ago than this counts as overdue (`baton_timers_overdue`).
pub const OVERDUE_AFTER: Duration = Duration::from_secs(5);

/// Whether [`install`] succeeded: the `observe_*` functions, which read Redis to time an event,
/// do nothing without it (no Redis reads for metrics that nobody serves).
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Installs the Prometheus recorder and serves `GET /metrics` (any path answers) on `addr` in the
/// current tokio runtime. Once per process. With a non-empty `token`, a scrape must send
/// `Authorization: Bearer <token>` (401 otherwise). The listener has the HTTP API's slow-client
/// bounds (10 s to send a request head, 60 s idle) and at most [`MAX_METRICS_CONNECTIONS`]
/// connections.
///
/// # Errors
/// A message naming `metrics_addr` when the address cannot be bound or a recorder is already
/// installed in this process.
pub fn install(addr: SocketAddr, token: &baton_shared::credentials::Secret) -> anyhow::Result<()> {
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("metrics_addr: cannot serve metrics on {addr}: {e}");
    let listener = std::net::TcpListener::bind(addr).map_err(|e| fail(&e))?;
    listener.set_nonblocking(true).map_err(|e| fail(&e))?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| fail(&e))?;
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS_SECONDS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| fail(&e))?;
    describe();
    ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let want = (!token.is_empty()).then(|| sha2::Sha256::digest(format!("Bearer {}", token.expose().trim())));
    let router = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let (handle, want) = (handle.clone(), want);
        async move {
            use axum::response::IntoResponse as _;
            if let Some(want) = want {
                let got = headers
                    .get(axum::http::header::AUTHORIZATION)
                    .map(|v| sha2::Sha256::digest(v.as_bytes()));
                let ok = got.is_some_and(|g| bool::from(subtle::ConstantTimeEq::ct_eq(g.as_slice(), want.as_slice())));
                if !ok {
                    return (
                        axum::http::StatusCode::UNAUTHORIZED,
                        [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                        "metrics_token: send Authorization: Bearer <metrics_token>\n",
                    )
                        .into_response();
                }
            }
            (
                [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            )
                .into_response()
        }
    });
    let bounds = crate::http::ConnectionBounds {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        admission: crate::connections::Admission::new("metrics", MAX_METRICS_CONNECTIONS),
    };
    let (keep, never) = watch::channel(false);
    tokio::spawn(async move {
        let _keep = keep;
        let _ = crate::http::serve(listener, router, never, bounds).await;
    });
    tracing::info!(%addr, token = !token.is_empty(), "serving Prometheus metrics at /metrics");
    Ok(())
}

/// Most connections open at once on the `/metrics` listener.
pub const MAX_METRICS_CONNECTIONS: usize = 64;

/// Gives every metric its help text (the `# HELP` lines).
fn describe() {
    use metrics::{describe_counter as c, describe_gauge as g, describe_histogram as h};
    c!("baton_runs_started_total", "Runs created, by workflow.");
    g!(
        "baton_watch_streams",
        "WatchRun streams (gRPC and HTTP event streams) open on this coordinator."
    );
    g!(
        "baton_watch_runs",
        "Runs this coordinator's watch streams follow (one shared subscription each)."
    );
    c!(
        "baton_watch_streams_refused_total",
        "WatchRun streams refused at a cap, by limit (max_watch_streams, max_watch_streams_per_identity)."
    );
    c!(
        "baton_latency_samples_dropped_total",
        "Latency samples (run duration, schedule-to-start, start-to-close) dropped because more than 4096 \
         reads of their start times were waiting."
    );
    c!(
        "baton_runs_finished_total",
        "Runs finished, by workflow and status (succeeded, failed, cancelled, timed_out)."
    );
    h!(
        "baton_run_duration_seconds",
        "Whole-run duration, creation to finish, by workflow and status."
    );
    c!(
        "baton_step_attempts_total",
        "Ended attempts of task steps, by workflow, handler and outcome (succeeded, failed, retried, timed_out, stale, suspended)."
    );
    h!(
        "baton_step_schedule_to_start_seconds",
        "Time a task waited in RabbitMQ: dispatch commit to a worker's StartStep, by workflow and handler."
    );
    h!(
        "baton_step_start_to_close_seconds",
        "StartStep to the result (or the timeout), by workflow and handler."
    );
    g!(
        "baton_queue_messages_ready",
        "Messages ready in a handler's queue (sampled with a passive declare)."
    );
    g!(
        "baton_queue_consumers",
        "Consumers of a handler's queue (sampled with a passive declare)."
    );
    g!(
        "baton_timers_due",
        "Timers (retries, timeouts, sleeps, wakes) due now and not yet claimed."
    );
    g!(
        "baton_timers_overdue",
        "Timers due for more than 5 s and not yet claimed."
    );
    g!(
        "baton_archive_backlog",
        "Finished runs queued in the archive outbox and not yet archived (with archive_url)."
    );
    g!(
        "baton_archive_backlog_age_seconds",
        "Seconds since the run that waits longest in the archive outbox finished, 0 when none."
    );
    c!(
        "baton_archive_written_total",
        "Finished runs written to the archive and shrunk to their tombstone in Redis."
    );
    c!(
        "baton_archive_errors_total",
        "Archiver rounds that failed (the archive or Redis unreachable; the runs stay queued) and runs parked because they could not be built."
    );
    g!(
        "baton_outbox_entries",
        "Dispatches committed in Redis whose publish RabbitMQ has not confirmed."
    );
    g!(
        "baton_outbox_oldest_age_seconds",
        "Age of the oldest outbox entry since it was committed or last held by its coordinator (now - its due time + timer_lease), 0 when empty."
    );
    h!(
        "baton_publish_confirm_seconds",
        "Publish of a step task to RabbitMQ's confirm, by result (ack, nack, returned, timeout, error)."
    );
    c!(
        "baton_grpc_requests_total",
        "gRPC requests answered, by method (/package.Service/Method) and code (OK, NOT_FOUND, ...)."
    );
    h!(
        "baton_grpc_request_duration_seconds",
        "gRPC request to response headers, by method."
    );
    c!(
        "baton_http_requests_total",
        "HTTP API requests answered, by route (the matched pattern, e.g. /v1/runs/{run_id}; other for none) and status (the HTTP status code)."
    );
    h!(
        "baton_http_request_duration_seconds",
        "HTTP API request to response headers, by route."
    );
    h!(
        "baton_redis_script_duration_seconds",
        "Round trip of one Lua script call (with its pipelined prelude), by script."
    );
    g!(
        "baton_concurrency_slots_held",
        "Concurrency slots held (leases not expired), by workflow and step."
    );
    g!(
        "baton_concurrency_slots_waiting",
        "Attempts waiting for a concurrency slot, by workflow and step."
    );
    c!(
        "baton_schedule_ticks_total",
        "Schedule ticks recorded, by outcome (fired, skipped, buffered, triggered)."
    );
    h!(
        "baton_schedule_tick_lateness_seconds",
        "How long after its due time a schedule tick was recorded, by outcome (fired, skipped, buffered, triggered)."
    );
    g!(
        "baton_connections",
        "Connections open, by listener (grpc, http, metrics)."
    );
    c!(
        "baton_connections_refused_total",
        "Connections closed at once because the listener's connection cap was reached, by listener."
    );
    c!(
        "baton_redis_data_lost_total",
        "Times this coordinator found that Redis had lost its data (its marker key gone)."
    );
}

/// A run was created.
pub fn run_started(workflow: &str) {
    counter!("baton_runs_started_total", "workflow" => workflow.to_string()).increment(1);
}

/// A run of `workflow` finished with `status`.
pub fn run_finished(workflow: &str, status: &str) {
    counter!("baton_runs_finished_total", "workflow" => workflow.to_string(), "status" => status.to_string())
        .increment(1);
}

/// A run of `workflow` that finished with `status` took `ms` from its creation.
fn run_duration(workflow: &str, status: &str, ms: i64) {
    let labels = [("workflow", workflow.to_string()), ("status", status.to_string())];
    histogram!("baton_run_duration_seconds", &labels).record(seconds(ms));
}

/// The status of the run after `completion`, when that ended the run.
pub fn finished_status(completion: &Completion) -> Option<&'static str> {
    match completion {
        Completion::Failed => Some("failed"),
        Completion::Succeeded { run_status, .. } if run_status == "succeeded" => Some("succeeded"),
        _ => None,
    }
}

/// The attempt outcome word of a worker's report that ended as `completion`.
pub fn attempt_outcome(completion: &Completion) -> &'static str {
    match completion {
        Completion::Stale | Completion::Alive(_) => "stale",
        Completion::Retry(_) => "retried",
        Completion::Failed => "failed",
        Completion::Emit | Completion::Succeeded { .. } => "succeeded",
    }
}

/// An attempt of a task step ended with `outcome` (see [`attempt_outcome`], or `timed_out`,
/// `suspended`).
pub fn attempt(workflow: &str, handler: &str, outcome: &str) {
    counter!(
        "baton_step_attempts_total",
        "workflow" => workflow.to_string(),
        "handler" => handler.to_string(),
        "outcome" => outcome.to_string()
    )
    .increment(1);
}

/// A task waited `ms` in RabbitMQ before a worker started it.
pub fn schedule_to_start(workflow: &str, handler: &str, ms: i64) {
    histogram!("baton_step_schedule_to_start_seconds", "workflow" => workflow.to_string(), "handler" => handler.to_string())
        .record(seconds(ms));
}

/// An attempt ran `ms` from its start to its result or timeout.
pub fn start_to_close(workflow: &str, handler: &str, ms: i64) {
    histogram!("baton_step_start_to_close_seconds", "workflow" => workflow.to_string(), "handler" => handler.to_string())
        .record(seconds(ms));
}

/// A publish got its answer (`result`: ack, nack, returned, timeout, error) after `elapsed`.
pub fn publish_confirm(result: &'static str, elapsed: Duration) {
    histogram!("baton_publish_confirm_seconds", "result" => result).record(elapsed.as_secs_f64());
}

/// The result word of a publish's answer, for [`publish_confirm`].
pub fn confirm_word(c: &lapin::Result<lapin::Confirmation>) -> &'static str {
    match c {
        Ok(lapin::Confirmation::Ack(None)) => "ack",
        Ok(lapin::Confirmation::Ack(Some(_))) => "returned",
        Ok(lapin::Confirmation::Nack(_)) => "nack",
        Ok(lapin::Confirmation::NotRequested) | Err(_) => "error",
    }
}

/// One call of Lua script `script` took `elapsed`.
pub fn redis_script(script: &'static str, elapsed: Duration) {
    histogram!("baton_redis_script_duration_seconds", "script" => script).record(elapsed.as_secs_f64());
}

/// The archive outbox: `runs` queued, the oldest finished `age_seconds` ago.
#[allow(clippy::cast_precision_loss)]
pub fn archive_backlog(runs: u64, age_seconds: f64) {
    gauge!("baton_archive_backlog").set(runs as f64);
    gauge!("baton_archive_backlog_age_seconds").set(age_seconds);
}

/// `runs` runs were archived and shrunk to their tombstones.
pub fn archive_written(runs: u64) {
    counter!("baton_archive_written_total").increment(runs);
}

/// An archiver round failed, or a run was parked.
pub fn archive_error() {
    counter!("baton_archive_errors_total").increment(1);
}

/// A schedule tick was recorded with `outcome`.
pub fn schedule_tick(outcome: &str) {
    counter!("baton_schedule_ticks_total", "outcome" => outcome.to_string()).increment(1);
}

/// A schedule tick due at `due_ms` (Unix ms) was recorded with `outcome` at `now_ms`: its lateness
/// (0 when the clocks disagree), so a dashboard shows how late schedules fire.
pub fn schedule_tick_lateness(outcome: &str, due_ms: i64, now_ms: i64) {
    histogram!("baton_schedule_tick_lateness_seconds", "outcome" => outcome.to_string())
        .record(seconds(now_ms.saturating_sub(due_ms)));
}

/// A latency sample was dropped: its time read found the queue full.
pub fn latency_sample_dropped() {
    counter!("baton_latency_samples_dropped_total").increment(1);
}

/// This coordinator saw Redis lose its data (and registered its definitions again).
pub fn redis_reset() {
    counter!("baton_redis_data_lost_total").increment(1);
}

/// Milliseconds as seconds, negative (clock skew between coordinators) as 0.
fn seconds(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}

/// Counts run `run_id` of `workflow` finished with `status`, and records, off the caller's path,
/// its duration from its `created_at` to `now` ([`Store::read_time_later`](crate::store::Store::read_time_later): a read that fails
/// records no duration).
pub fn observe_finish(store: &crate::store::Store, workflow: &str, status: &'static str, run_id: &str, now: i64) {
    if !enabled() {
        return;
    }
    // Counted now, exactly; the duration is the sample that may be dropped.
    run_finished(workflow, status);
    let workflow = workflow.to_string();
    store.read_time_later(
        StoredTime::Run {
            run_id,
            field: "created_at",
        },
        move |created| {
            run_duration(&workflow, status, now.saturating_sub(created));
        },
    );
}

/// Times `fut`, one call of Lua script `name`, into `baton_redis_script_duration_seconds`.
pub async fn script<T>(name: &'static str, fut: impl std::future::Future<Output = T>) -> T {
    let started = tokio::time::Instant::now();
    let out = fut.await;
    redis_script(name, started.elapsed());
    out
}

/// Records, off the caller's path, how long attempt `attempt` of `step_id` waited in the queue (its
/// `dispatched_at` to `now`; [`Store::read_time_later`](crate::store::Store::read_time_later)). A read that fails records nothing.
pub fn observe_start(engine: &Engine, workflow: &str, handler: &str, run_id: &str, step_id: &str, now: i64) {
    let at = StoredTime::Step {
        run_id,
        step: step_id,
        field: "dispatched_at",
    };
    observe_step(engine, workflow, handler, at, now, schedule_to_start);
}

/// Records, off the caller's path, the start-to-close time of an attempt of `step_id` that ended at
/// `now` (its `started_at` to `now`; [`Store::read_time_later`](crate::store::Store::read_time_later)). A read that fails records
/// nothing.
pub fn observe_close(engine: &Engine, workflow: &str, handler: &str, run_id: &str, step_id: &str, now: i64) {
    let at = StoredTime::Step {
        run_id,
        step: step_id,
        field: "started_at",
    };
    observe_step(engine, workflow, handler, at, now, start_to_close);
}

/// Has `record` take the time from the stored time `at` to `now` (ms) of a step of `workflow` that
/// runs `handler`, once the store has read `at`; nothing when metrics are off.
fn observe_step(
    engine: &Engine,
    workflow: &str,
    handler: &str,
    at: StoredTime<'_>,
    now: i64,
    record: fn(&str, &str, i64),
) {
    if !enabled() {
        return;
    }
    let (workflow, handler) = (workflow.to_string(), handler.to_string());
    engine.store.read_time_later(at, move |then| {
        record(&workflow, &handler, now.saturating_sub(then));
    });
}

/// Samples the gauges read from Redis and RabbitMQ every [`SAMPLE_INTERVAL`] until `shutdown`:
/// queue depth and consumers per known handler, timers due and overdue, the outbox size and the
/// age of its oldest entry, and concurrency slots held and waiting. A failed read is logged and
/// the loop goes on.
pub async fn sample_loop(engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = sample_once(&engine).await {
            tracing::debug!(error = %e, "could not sample metrics");
        }
        tokio::select! {
            _ = tokio::time::sleep(SAMPLE_INTERVAL) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// One round of [`sample_loop`].
async fn sample_once(engine: &Engine) -> anyhow::Result<()> {
    let now = now_ms();
    let overdue_before = now.saturating_sub(duration_ms(OVERDUE_AFTER));
    let figures = engine.store.timer_figures(now, overdue_before).await?;
    gauge!("baton_timers_due").set(figures.due as f64);
    gauge!("baton_timers_overdue").set(figures.overdue as f64);
    gauge!("baton_outbox_entries").set(figures.outbox as f64);
    let age_ms = figures
        .oldest_outbox_due
        .map(|due| {
            now.saturating_sub(due)
                .saturating_add(duration_ms(engine.config.timer_lease))
        })
        .unwrap_or(0);
    gauge!("baton_outbox_oldest_age_seconds").set(seconds(age_ms));

    let mut handlers = std::collections::BTreeSet::new();
    let mut pools = Vec::new();
    for name in engine.registry.names().await? {
        let latest = engine.registry.get(&name, 0).await?.definition;
        handlers.extend(engine.registry.handlers(&name).await?);
        for step in &latest.steps {
            if let Some(c) = &step.concurrency {
                pools.push((latest.name.clone(), step.id.clone(), c.key.is_some()));
            }
        }
    }
    let mut channel = None;
    for h in &handlers {
        // A passive declare of a missing queue closes its channel: open another for the next.
        let ch = match channel.take() {
            Some(ch) => ch,
            None => engine.dispatcher.sample_channel().await?,
        };
        match crate::queues::sample_queue(&ch, &engine.dispatcher.topology().queue(h)).await {
            Ok(s) => {
                gauge!("baton_queue_messages_ready", "handler" => h.clone()).set(f64::from(s.ready));
                gauge!("baton_queue_consumers", "handler" => h.clone()).set(f64::from(s.consumers));
                channel = Some(ch);
            }
            Err(e) => tracing::debug!(handler = %h, error = %e, "could not sample a queue"),
        }
    }
    if let Some(ch) = channel {
        let _ = ch.close(200, "sampled".into()).await;
    }
    for (workflow, step, keyed) in pools {
        let (held, waiting) = slots(engine, &format!("{workflow}/{step}"), keyed, now).await?;
        gauge!("baton_concurrency_slots_held", "workflow" => workflow.clone(), "step" => step.clone()).set(held as f64);
        gauge!("baton_concurrency_slots_waiting", "workflow" => workflow, "step" => step).set(waiting as f64);
    }
    Ok(())
}

/// Most pool keys of one keyed concurrency pool summed per sample.
const MAX_KEYED_POOLS: usize = 1_000;

/// Slots held (leases not expired) and attempts waiting in pool `base`, summed over its keyed
/// pools (`base/<key>`, at most [`MAX_KEYED_POOLS`]) when `keyed`.
async fn slots(engine: &Engine, base: &str, keyed: bool, now: i64) -> anyhow::Result<(u64, u64)> {
    let pools: Vec<String> = if keyed {
        engine.store.keyed_pools(base, MAX_KEYED_POOLS).await?
    } else {
        vec![base.to_string()]
    };
    let (mut held, mut waiting) = (0u64, 0u64);
    for pool in pools {
        let (h, w) = engine.store.pool_figures(&pool, now).await?;
        held = held.saturating_add(h);
        waiting = waiting.saturating_add(w);
    }
    Ok((held, waiting))
}

/// A tower layer's service in front of the gRPC server that counts every request by method and
/// code (`baton_grpc_requests_total`) and times it to its response headers
/// (`baton_grpc_request_duration_seconds`). The code comes from the `grpc-status` header (a
/// trailers-only answer: errors, and what the edge answers itself) or, when the headers have none
/// (a unary answer that succeeds, or a stream), from the `grpc-status` trailer when the body ends;
/// a stream is counted when its body ends. Method labels are the paths the server routes
/// (`/baton.v1.RunService/SubmitRun`); any other path counts as `unknown`.
#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S> GrpcMetrics<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

/// The method label of a request path: the path when it looks like a gRPC method of a package
/// Baton serves, else `unknown` (a label must not take arbitrary caller text).
fn method_label(path: &str) -> String {
    let known = ["/baton.v1.", "/grpc.health.v1.", "/grpc.reflection."];
    let well_formed = path.len() <= 128
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/' || b == b'_')
        && path.matches('/').count() == 2;
    if well_formed && known.iter().any(|k| path.starts_with(k)) {
        path.to_string()
    } else {
        "unknown".to_string()
    }
}

/// The gRPC code name of a `grpc-status` value (`OK`, `NOT_FOUND`, ...).
fn code_label(status: Option<&http::HeaderValue>) -> Option<&'static str> {
    let n: i32 = status?.to_str().ok()?.trim().parse().ok()?;
    Some(baton_shared::status::code_name(tonic::Code::from_i32(n)))
}

fn count_request(method: &str, code: &'static str) {
    counter!("baton_grpc_requests_total", "method" => method.to_string(), "code" => code).increment(1);
}

impl<S> Service<http::Request<tonic::body::Body>> for GrpcMetrics<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let method = method_label(req.uri().path());
        let started = tokio::time::Instant::now();
        // The service that was polled ready serves this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let resp = inner.call(req).await?;
            histogram!("baton_grpc_request_duration_seconds", "method" => method.clone())
                .record(started.elapsed().as_secs_f64());
            if let Some(code) = code_label(resp.headers().get("grpc-status")) {
                count_request(&method, code);
                return Ok(resp);
            }
            let (parts, body) = resp.into_parts();
            Ok(http::Response::from_parts(
                parts,
                tonic::body::Body::new(TrailerCounter {
                    inner: body,
                    method: Some(method),
                }),
            ))
        })
    }
}

/// A response body that counts its request when the `grpc-status` trailer passes (or, without
/// one, when the body ends or is dropped: `UNKNOWN`).
struct TrailerCounter {
    inner: tonic::body::Body,
    /// Taken when counted.
    method: Option<String>,
}

impl Drop for TrailerCounter {
    fn drop(&mut self) {
        if let Some(m) = self.method.take() {
            count_request(&m, "UNKNOWN");
        }
    }
}

impl http_body::Body for TrailerCounter {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(trailers) = frame.trailers_ref()
            && let Some(code) = code_label(trailers.get("grpc-status"))
            && let Some(m) = self.method.take()
        {
            count_request(&m, code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(
            method_label("/baton.v1.RunService/SubmitRun"),
            "/baton.v1.RunService/SubmitRun"
        );
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        assert_eq!(method_label("/evil/{run-id}"), "unknown");
        assert_eq!(method_label(&format!("/baton.v1.X/{}", "a".repeat(500))), "unknown");
        assert_eq!(method_label("/baton.v1.X/Y/Z"), "unknown");
    }

    #[test]
    fn codes_read_from_the_header_value() {
        let v = |s: &str| http::HeaderValue::from_str(s).ok();
        assert_eq!(code_label(v("0").as_ref()), Some("OK"));
        assert_eq!(code_label(v("5").as_ref()), Some("NOT_FOUND"));
        assert_eq!(code_label(v("x").as_ref()), None);
        assert_eq!(code_label(None), None);
    }

    #[test]
    fn negative_durations_count_as_zero() {
        assert_eq!(seconds(-5), 0.0);
        assert_eq!(seconds(1500), 1.5);
    }
}
