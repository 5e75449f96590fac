//! The coordinator's part of a run's trace (see [`baton_shared::telemetry`]):
//! - a server span for `SubmitRun` (child of the caller's `traceparent` when it sends one, else the
//!   root of a new trace), and for any other call that arrives with trace context (the workers'
//!   `StartStep` and `ReportResult` come as children of their `handler` span);
//! - the run's trace context, kept in its Redis hash (field `traceparent`) when it is created, so
//!   every later dispatch of its steps joins the trace, whichever coordinator, call or timer makes it;
//! - a `dispatch <step>` span around each publish, whose context goes to the worker in the message
//!   headers.
//!
//! All of it is off (no span, no Redis read or write) unless the process exports traces.

use std::future::Future;

use baton_shared::{
    proto::StepTask,
    telemetry::{self, TARGET, TraceContext},
};
use lapin::types::FieldTable;
use tonic::codegen::http;
use tracing::{Instrument as _, field::Empty};

use crate::{engine::Outcome, error::Result, store::Store};

/// The span of a gRPC call (the server's `trace_fn`): see the module doc. A disabled span when the
/// call gets none.
pub fn grpc_span(req: &http::Request<()>) -> tracing::Span {
    if !telemetry::enabled() {
        return tracing::Span::none();
    }
    let path = req.uri().path();
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or(("", path));
    let parent = telemetry::extract_headers(req.headers());
    if method != "SubmitRun" && telemetry::traceparent(&parent).is_none() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        "grpc",
        otel.name = method,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        baton.run_id = Empty,
        baton.step_id = Empty,
        baton.attempt = Empty,
        baton.workflow = Empty,
        baton.worker_id = Empty,
        baton.outcome = Empty,
    );
    telemetry::adopt(&span, parent);
    span
}

/// Records the run a call is about on its span (no-op without one).
pub fn record_run(run_id: &str, workflow: &str) {
    if !telemetry::enabled() {
        return;
    }
    let span = tracing::Span::current();
    span.record(telemetry::attr::RUN_ID, run_id);
    span.record(telemetry::attr::WORKFLOW, workflow);
}

/// Records the attempt a worker's call is about on its span (no-op without one).
pub fn record_attempt(run_id: &str, step_id: &str, attempt: u32, workflow: &str, worker_id: &str) {
    if !telemetry::enabled() {
        return;
    }
    let span = tracing::Span::current();
    record_run(run_id, workflow);
    span.record(telemetry::attr::STEP_ID, step_id);
    span.record(telemetry::attr::ATTEMPT, i64::from(attempt));
    span.record(telemetry::attr::WORKER_ID, worker_id);
}

/// Records how a reported attempt ended (`succeeded`, `failed`, `suspended`) on the call's span; a
/// failure also sets the span's status to error with its message.
pub fn record_outcome(outcome: &Outcome) {
    if !telemetry::enabled() {
        return;
    }
    let span = tracing::Span::current();
    let name = match outcome {
        Outcome::Output(_) => "succeeded",
        Outcome::Failure(f) => {
            telemetry::set_error(&span, format!("{}: {}", f.error_type, f.message));
            "failed"
        }
        Outcome::Suspend { .. } => "suspended",
    };
    span.record(telemetry::attr::OUTCOME, name);
}

/// Keeps the trace context of run `run_id`, just created, in its hash: a child run's is its parent
/// run's, so it joins that trace; another run's is the current span's (the `SubmitRun` call's), else
/// that of a new root span `run <workflow>` (a run a schedule started). Best effort: a failure
/// leaves the run untraced.
pub async fn remember_run(store: &Store, run_id: &str, workflow: &str, parent_run: Option<&str>) {
    if !telemetry::enabled() {
        return;
    }
    let mut traceparent = match parent_run {
        Some(parent) => store.run_traceparent(parent).await.ok().flatten(),
        None => None,
    };
    if traceparent.is_none() {
        let mut cx = telemetry::current();
        if telemetry::traceparent(&cx).is_none() {
            let name = format!("run {workflow}");
            let span = tracing::info_span!(
                target: TARGET,
                "run",
                otel.name = name.as_str(),
                baton.run_id = run_id,
                baton.workflow = workflow,
            );
            cx = telemetry::adopt(&span, TraceContext::new());
        }
        traceparent = telemetry::traceparent(&cx);
    }
    let Some(traceparent) = traceparent else {
        return;
    };
    if let Err(e) = store.set_run_traceparent(run_id, &traceparent).await {
        tracing::debug!(run = %run_id, error = %e, "could not keep the run's trace context");
    }
}

/// Runs `publish` (one publish of `task`, given the message headers to send) in a span
/// `dispatch <step>`, child of the run's trace context; the headers carry the span's context.
/// Without trace export, `publish` runs as it is with no headers.
///
/// # Errors
/// `publish`'s.
pub async fn dispatch<F, Fut>(store: &Store, task: &StepTask, publish: F) -> Result<()>
where
    F: FnOnce(FieldTable) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    if !telemetry::enabled() {
        return publish(FieldTable::default()).await;
    }
    let parent = match store.run_traceparent(&task.run_id).await {
        Ok(Some(tp)) => telemetry::context_from_traceparent(&tp, None),
        Ok(None) => TraceContext::new(),
        Err(e) => {
            tracing::debug!(run = %task.run_id, error = %e, "could not read the run's trace context");
            TraceContext::new()
        }
    };
    let name = format!("dispatch {}", task.step_id);
    let span = tracing::info_span!(
        target: TARGET,
        "dispatch",
        otel.name = name.as_str(),
        otel.kind = "producer",
        baton.run_id = task.run_id.as_str(),
        baton.step_id = task.step_id.as_str(),
        baton.attempt = i64::from(task.attempt),
        baton.handler = task.handler.as_str(),
        baton.workflow = task.workflow.as_str(),
        baton.workflow_version = i64::from(task.workflow_version),
    );
    let cx = telemetry::adopt(&span, parent);
    let mut headers = FieldTable::default();
    telemetry::inject_amqp(&cx, &mut headers);
    let result = publish(headers).instrument(span.clone()).await;
    if let Err(e) = &result {
        telemetry::set_error(&span, e.to_string());
    }
    result
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use baton_shared::process::{BoxMakeWriter, SpanCounter, subscriber};

    use super::*;

    /// A worker's call as the server's `trace_fn` sees it, with the trace context of its
    /// `handler` span.
    fn call(method: &str) -> http::Request<()> {
        let mut req = http::Request::new(());
        *req.uri_mut() = format!("/baton.v1.WorkerService/{method}").parse().unwrap_or_default();
        req.headers_mut().insert(
            telemetry::TRACEPARENT,
            http::HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        req
    }

    #[test]
    fn without_an_endpoint_the_step_path_makes_no_span() {
        assert!(!telemetry::enabled());
        let env = |_: &str| None;
        let (counted, created) = SpanCounter::new(subscriber("test", &env, BoxMakeWriter::new(std::io::sink), false));
        tracing::subscriber::with_default(counted, || {
            for method in ["SubmitRun", "StartStep", "ReportResult", "Heartbeat"] {
                let span = grpc_span(&call(method));
                assert!(span.is_none(), "{method} got a span");
                let _in = span.entered();
                record_attempt("run", "step", 1, "wf", "worker-1");
                record_outcome(&Outcome::Output("{}".into()));
            }
        });
        assert_eq!(created.load(Ordering::Relaxed), 0);
    }
}
