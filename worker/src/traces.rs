//! The worker's part of a run's trace (see [`baton_shared::telemetry`]): each delivery runs in a
//! span `handler <handler>`, child of the coordinator's `dispatch` span whose context came in the
//! message headers, with the attempt's attributes; its context goes to the coordinator in the
//! metadata of `StartStep` and `ReportResult`. With trace export off there is no span, and the
//! context that came in is passed on as it is.

use std::future::Future;

use baton_shared::{
    proto::{StepTask, report_result_request::Outcome},
    telemetry::{self, TARGET, WithTraceContext as _},
};
use lapin::message::Delivery;
use tracing::{Instrument as _, field::Empty};

/// The `handler` span of one delivery of `handler`'s queue, and the context to pass on.
pub(crate) struct Trace {
    span: tracing::Span,
    cx: telemetry::TraceContext,
}

impl Trace {
    /// The span for `delivery`, child of the context in its headers.
    pub(crate) fn of(handler: &str, delivery: &Delivery) -> Self {
        let parent = telemetry::extract_amqp(delivery.properties.headers().as_ref());
        let name = format!("handler {handler}");
        let span = tracing::info_span!(
            target: TARGET,
            "handler",
            otel.name = name.as_str(),
            otel.kind = "consumer",
            baton.handler = handler,
            baton.run_id = Empty,
            baton.step_id = Empty,
            baton.attempt = Empty,
            baton.workflow = Empty,
            baton.workflow_version = Empty,
            baton.worker_id = Empty,
            baton.outcome = Empty,
        );
        let cx = telemetry::adopt(&span, parent);
        Self { span, cx }
    }

    /// `work` (the handling of the delivery) in the span, with the context to pass on current.
    pub(crate) fn wrap<F: Future>(self, work: F) -> impl Future<Output = F::Output> {
        work.instrument(self.span).with_context(self.cx)
    }
}

/// Records the task's attempt on the current `handler` span.
pub(crate) fn record_task(task: &StepTask, worker_id: &str) {
    let span = tracing::Span::current();
    span.record(telemetry::attr::RUN_ID, task.run_id.as_str());
    span.record(telemetry::attr::STEP_ID, task.step_id.as_str());
    span.record(telemetry::attr::ATTEMPT, i64::from(task.attempt));
    span.record(telemetry::attr::WORKFLOW, task.workflow.as_str());
    span.record(telemetry::attr::WORKFLOW_VERSION, i64::from(task.workflow_version));
    span.record(telemetry::attr::WORKER_ID, worker_id);
}

/// Records how the handler ended on the current `handler` span; a failure also sets its status.
pub(crate) fn record_outcome(outcome: &Outcome) {
    let span = tracing::Span::current();
    let name = match outcome {
        Outcome::OutputJson(_) => "succeeded",
        Outcome::Failure(f) => {
            telemetry::set_error(&span, format!("{}: {}", f.error_type, f.message));
            "failed"
        }
        Outcome::Suspend(_) => "suspended",
    };
    span.record(telemetry::attr::OUTCOME, name);
}
