//! The worker's part of a run's trace (see [`baton_shared::telemetry`]): each delivery runs in a
//! span `handler <handler>`, child of the coordinator's `dispatch` span whose context came in the
//! message headers, with the attempt's attributes; its context goes to the coordinator in the
//! metadata of `StartStep` and `ReportResult`. With trace export off there is no span (none is
//! made, not even a disabled one, and no span name is formatted), and the context that came in is
//! passed on as it is.

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
    /// The span for `delivery`, child of the context in its headers; without trace export, no span
    /// and that context as it came.
    pub(crate) fn of(handler: &str, delivery: &Delivery) -> Self {
        let parent = telemetry::extract_amqp(delivery.properties.headers().as_ref());
        if !telemetry::enabled() {
            return Self {
                span: tracing::Span::none(),
                cx: parent,
            };
        }
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

    /// `work` (the handling of the delivery) in the span, with the context to pass on current; `work`
    /// as it is when there is neither a span nor a context to pass on.
    pub(crate) fn wrap<F: Future>(self, work: F) -> impl Future<Output = F::Output> {
        use futures::future::Either;
        if self.span.is_none() && !telemetry::has_span(&self.cx) {
            return Either::Left(work);
        }
        Either::Right(work.instrument(self.span).with_context(self.cx))
    }
}

/// Records the task's attempt on the current `handler` span (nothing without trace export).
pub(crate) fn record_task(task: &StepTask, worker_id: &str) {
    if !telemetry::enabled() {
        return;
    }
    let span = tracing::Span::current();
    span.record(telemetry::attr::RUN_ID, task.run_id.as_str());
    span.record(telemetry::attr::STEP_ID, task.step_id.as_str());
    span.record(telemetry::attr::ATTEMPT, i64::from(task.attempt));
    span.record(telemetry::attr::WORKFLOW, task.workflow.as_str());
    span.record(telemetry::attr::WORKFLOW_VERSION, i64::from(task.workflow_version));
    span.record(telemetry::attr::WORKER_ID, worker_id);
}

/// Records how the handler ended on the current `handler` span; a failure also sets its status
/// (nothing without trace export).
pub(crate) fn record_outcome(outcome: &Outcome) {
    if !telemetry::enabled() {
        return;
    }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use baton_shared::process::{BoxMakeWriter, SpanCounter, subscriber};
    use lapin::types::{AMQPValue, FieldTable, LongString};

    use super::*;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    /// A delivery of `echo`'s queue carrying the `dispatch` span's context.
    fn delivery() -> Delivery {
        let mut headers = FieldTable::default();
        headers.insert(
            telemetry::TRACEPARENT.into(),
            AMQPValue::LongString(LongString::from(TP)),
        );
        let mut d = Delivery::mock(1, "baton".into(), "echo".into(), false, b"task".to_vec());
        d.properties = d.properties.with_headers(headers);
        d
    }

    #[tokio::test]
    async fn without_an_endpoint_a_delivery_makes_no_span_and_passes_the_context_on() {
        assert!(!telemetry::enabled());
        let env = |_: &str| None;
        let (counted, created) = SpanCounter::new(subscriber("test", &env, BoxMakeWriter::new(std::io::sink), false));
        let _default = tracing::subscriber::set_default(counted);
        let task = StepTask {
            run_id: "run".into(),
            step_id: "step".into(),
            attempt: 1,
            ..Default::default()
        };
        let passed = Trace::of("echo", &delivery())
            .wrap(async {
                record_task(&task, "worker-1");
                record_outcome(&Outcome::OutputJson("{}".into()));
                telemetry::traceparent(&telemetry::current())
            })
            .await;
        assert_eq!(passed.as_deref(), Some(TP), "the context that came is passed on");
        assert_eq!(created.load(Ordering::Relaxed), 0);
    }
}
