//! OpenTelemetry traces: one trace per run, carried across the coordinator, RabbitMQ and the workers
//! in W3C trace context (`traceparent`, `tracestate`).
//!
//! **Export** is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set
//! (and neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says otherwise): spans go over
//! OTLP/gRPC through a batch processor (`OTEL_BSP_*` tune it), as service `OTEL_SERVICE_NAME`
//! (default `baton-coordinator` / `baton-worker`). The batch processor runs on a thread of its own
//! and drops spans when its queue is full, so an endpoint that is down never slows or stops the
//! engine; the failure is logged once (and the recovery once). With no endpoint set nothing is
//! exported and no span is recorded; only trace context that arrives is passed on.
//!
//! **Spans** are `tracing` spans of target [`TARGET`], turned into OpenTelemetry spans by
//! `tracing-opentelemetry`. They never show in the logs (the log layer leaves that target out), so
//! log output is the same with tracing on or off. Their attributes are named in [`attr`].
//!
//! **Propagation** helpers read and write trace context in gRPC metadata, HTTP headers and (with the
//! `amqp` feature) the headers of a RabbitMQ message.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    propagation::TraceContextPropagator,
    trace::{SdkTracerProvider, SpanData, SpanExporter},
};
use tonic::codegen::http;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{Layer, registry::LookupSpan};

/// The `tracing` target of every span Baton makes for its traces. The log layer leaves it out.
pub const TARGET: &str = "baton_otel";

/// The W3C trace-context header with the trace id, the parent span id and the flags.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C trace-context header with vendor-specific state.
pub const TRACESTATE: &str = "tracestate";

/// Attribute names of Baton's spans (all prefixed `baton.`).
pub mod attr {
    /// The run's id (every span of a run).
    pub const RUN_ID: &str = "baton.run_id";
    /// The step's id (`dispatch` and `handler` spans, `StartStep` and `ReportResult`); a fan-out
    /// element's is `step#index`.
    pub const STEP_ID: &str = "baton.step_id";
    /// The attempt number, from 1.
    pub const ATTEMPT: &str = "baton.attempt";
    /// The step's handler (the RabbitMQ routing key).
    pub const HANDLER: &str = "baton.handler";
    /// The workflow's name.
    pub const WORKFLOW: &str = "baton.workflow";
    /// The workflow's version.
    pub const WORKFLOW_VERSION: &str = "baton.workflow_version";
    /// The worker's id (`handler` spans, `StartStep` and `ReportResult`).
    pub const WORKER_ID: &str = "baton.worker_id";
    /// How the attempt ended: `succeeded`, `failed`, `suspended` (`handler` and `ReportResult`).
    pub const OUTCOME: &str = "baton.outcome";
}

/// Whether the environment read by `get` asks for OTLP trace export: an endpoint is set
/// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`, not blank), and neither
/// `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` turns it off.
pub fn export_configured(get: impl Fn(&str) -> Option<String>) -> bool {
    let set = |k: &str| get(k).is_some_and(|v| !v.trim().is_empty());
    let endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT");
    let disabled = get("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let no_exporter = get("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    endpoint && !disabled && !no_exporter
}

/// The service name spans are exported under: `OTEL_SERVICE_NAME` when set (not blank), else
/// `default`.
pub fn service_name(get: impl Fn(&str) -> Option<String>, default: &str) -> String {
    get("OTEL_SERVICE_NAME")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default.to_string())
}

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether this process exports traces (its subscriber has the OpenTelemetry layer).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The OpenTelemetry layer for the process's subscriber when the environment read by `env` asks for
/// export (see [`export_configured`]), else `None`. Call it once, inside the Tokio runtime (the OTLP
/// channel is made there); it also installs the W3C propagator and the tracer provider globally and
/// turns [`enabled`] on. The layer takes Baton's spans ([`TARGET`]) and whatever else `filter` lets
/// through (events in a span become its span events). The exporter itself reads the `OTEL_*`
/// variables of the process.
///
/// A configuration the exporter refuses (a malformed endpoint) is reported on stderr and leaves
/// tracing off: tracing never stops a process from starting.
pub fn layer<S>(
    env: &dyn Fn(&str) -> Option<String>,
    default_service: &str,
    filter: tracing_subscriber::EnvFilter,
) -> Option<Box<dyn Layer<S> + Send + Sync + 'static>>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    if !export_configured(env) || PROVIDER.get().is_some() {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder().with_tonic().build() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("warning: OpenTelemetry traces are off: the OTLP exporter could not be made: {e}");
            return None;
        }
    };
    let service = service_name(env, default_service);
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(LogOnceExporter::new(exporter))
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    let tracer = provider.tracer("baton");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    let _ = PROVIDER.set(provider);
    ENABLED.store(true, Ordering::Relaxed);
    use tracing_subscriber::filter::FilterExt as _;
    let ours = tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::TRACE);
    Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(ours.or(filter))
            .boxed(),
    )
}

/// Exports the spans still buffered (at most `within`; an endpoint that is down is given up on).
/// Harmless when export is off. Call it before the process exits.
pub async fn flush(within: Duration) {
    let Some(provider) = PROVIDER.get() else {
        return;
    };
    let provider = provider.clone();
    let _ = tokio::time::timeout(within, tokio::task::spawn_blocking(move || provider.force_flush())).await;
}

/// Wraps the OTLP exporter: logs its first failure (then drops spans quietly until an export
/// succeeds again, which is logged too), so an endpoint that is down gives one line, not one per batch.
#[derive(Debug)]
struct LogOnceExporter<E> {
    inner: E,
    failing: AtomicBool,
}

impl<E> LogOnceExporter<E> {
    fn new(inner: E) -> Self {
        Self {
            inner,
            failing: AtomicBool::new(false),
        }
    }
}

impl<E: SpanExporter> SpanExporter for LogOnceExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!(error = %e, spans, "could not export traces to the OTLP endpoint; dropping spans until it answers");
            }
            Err(e) => tracing::debug!(error = %e, spans, "traces still not exported; spans dropped"),
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!("exporting traces to the OTLP endpoint again");
            }
            _ => {}
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

// ---- Context ----

/// The context of a W3C `traceparent` (with its `tracestate`, if any); an empty context when it is
/// not a valid one.
pub fn context_from_traceparent(traceparent: &str, tracestate: Option<&str>) -> Context {
    struct Two<'a>(&'a str, Option<&'a str>);
    impl Extractor for Two<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            match key {
                TRACEPARENT => Some(self.0),
                TRACESTATE => self.1,
                _ => None,
            }
        }
        fn keys(&self) -> Vec<&str> {
            vec![TRACEPARENT, TRACESTATE]
        }
    }
    TraceContextPropagator::new().extract(&Two(traceparent.trim(), tracestate))
}

/// Whether `cx` holds a valid span context (one to pass on downstream).
pub fn has_span(cx: &Context) -> bool {
    cx.span().span_context().is_valid()
}

/// The `traceparent` of `cx`, when it holds a valid span context.
pub fn traceparent(cx: &Context) -> Option<String> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut out = None;
    struct One<'a>(&'a mut Option<String>);
    impl Injector for One<'_> {
        fn set(&mut self, key: &str, value: String) {
            if key == TRACEPARENT {
                *self.0 = Some(value);
            }
        }
    }
    TraceContextPropagator::new().inject_context(cx, &mut One(&mut out));
    out
}

/// Makes `span` a child of `parent` (when `parent` holds a span context) and returns the context to
/// pass on downstream: `span`'s own when this process exports traces, else `parent` itself, so trace
/// context that arrives still travels on. Call it before the span is first entered.
pub fn adopt(span: &tracing::Span, parent: Context) -> Context {
    if !enabled() || span.is_disabled() {
        return parent;
    }
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span.context()
}

/// The context to pass on from here: the current span's when exporting (entering a span makes its
/// context current), else the one attached with [`opentelemetry::context::FutureExt::with_context`].
pub fn current() -> Context {
    Context::current()
}

/// Sets the span's status to error with `message` (no-op for a disabled span).
pub fn set_error(span: &tracing::Span, message: impl Into<String>) {
    if enabled() && !span.is_disabled() {
        span.set_status(opentelemetry::trace::Status::error(message.into()));
    }
}

pub use opentelemetry::Context as TraceContext;
pub use opentelemetry::context::FutureExt as WithTraceContext;

// ---- gRPC metadata and HTTP headers ----

struct MetadataCarrier<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct HeaderCarrier<'a>(&'a http::HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The trace context in HTTP/2 headers (a gRPC request's metadata); empty when there is none.
pub fn extract_headers(headers: &http::HeaderMap) -> Context {
    if !headers.contains_key(TRACEPARENT) {
        return Context::new();
    }
    TraceContextPropagator::new().extract(&HeaderCarrier(headers))
}

/// The trace context in gRPC metadata; empty when there is none.
pub fn extract_metadata(metadata: &tonic::metadata::MetadataMap) -> Context {
    match metadata.get(TRACEPARENT).and_then(|v| v.to_str().ok()) {
        Some(tp) => context_from_traceparent(tp, metadata.get(TRACESTATE).and_then(|v| v.to_str().ok())),
        None => Context::new(),
    }
}

/// Writes `cx` into gRPC metadata (`traceparent`, `tracestate`); nothing when it holds no span.
pub fn inject_metadata(cx: &Context, metadata: &mut tonic::metadata::MetadataMap) {
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(cx, &mut MetadataCarrier(metadata));
    }
}

/// `message` as a request carrying the current trace context ([`current`]) in its metadata.
pub fn request<T>(message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    inject_metadata(&current(), req.metadata_mut());
    req
}

// ---- RabbitMQ headers ----

/// The trace context in the headers of a RabbitMQ message; empty when there is none.
#[cfg(feature = "amqp")]
pub fn extract_amqp(headers: Option<&lapin::types::FieldTable>) -> Context {
    let Some(headers) = headers else {
        return Context::new();
    };
    let get = |key: &str| {
        headers.into_iter().find_map(|(k, v)| match v {
            lapin::types::AMQPValue::LongString(s) if k.as_str() == key => std::str::from_utf8(s.as_bytes()).ok(),
            _ => None,
        })
    };
    match get(TRACEPARENT) {
        Some(tp) => context_from_traceparent(tp, get(TRACESTATE)),
        None => Context::new(),
    }
}

/// Writes `cx` into the headers of a RabbitMQ message (`traceparent`, `tracestate` as long
/// strings); nothing when it holds no span.
#[cfg(feature = "amqp")]
pub fn inject_amqp(cx: &Context, headers: &mut lapin::types::FieldTable) {
    struct Amqp<'a>(&'a mut lapin::types::FieldTable);
    impl Injector for Amqp<'_> {
        fn set(&mut self, key: &str, value: String) {
            self.0.insert(
                key.into(),
                lapin::types::AMQPValue::LongString(lapin::types::LongString::from(value)),
            );
        }
    }
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(cx, &mut Amqp(headers));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn export_is_off_unless_an_endpoint_is_set() {
        assert!(!export_configured(env(&[])));
        assert!(!export_configured(env(&[("OTEL_SERVICE_NAME", "x")])));
        assert!(!export_configured(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")])));
        assert!(export_configured(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4317"
        )])));
        assert!(export_configured(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:4317"
        )])));
        assert!(!export_configured(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ])));
        assert!(!export_configured(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ])));
        assert!(export_configured(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
        ])));
    }

    #[test]
    fn the_service_name_defaults_per_binary() {
        assert_eq!(service_name(env(&[]), "baton-worker"), "baton-worker");
        assert_eq!(
            service_name(env(&[("OTEL_SERVICE_NAME", " ")]), "baton-worker"),
            "baton-worker"
        );
        assert_eq!(
            service_name(env(&[("OTEL_SERVICE_NAME", "billing")]), "baton-worker"),
            "billing"
        );
    }

    #[test]
    fn with_export_off_nothing_is_recorded_and_context_passes_through() {
        assert!(!enabled());
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let parent = context_from_traceparent(tp, None);
        let span = tracing::info_span!(target: "baton_otel", "dispatch");
        let passed = adopt(&span, parent);
        assert_eq!(traceparent(&passed).as_deref(), Some(tp));
    }

    #[test]
    fn traceparent_round_trips_and_garbage_is_no_context() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let cx = context_from_traceparent(tp, Some("vendor=1"));
        assert_eq!(traceparent(&cx).as_deref(), Some(tp));
        assert_eq!(traceparent(&context_from_traceparent("nonsense", None)), None);
        assert_eq!(
            traceparent(&context_from_traceparent(
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                None
            )),
            None
        );
        assert_eq!(traceparent(&Context::new()), None);
    }

    #[test]
    fn metadata_carries_the_context() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let cx = context_from_traceparent(tp, Some("vendor=1"));
        let mut md = tonic::metadata::MetadataMap::new();
        inject_metadata(&cx, &mut md);
        assert_eq!(md.get(TRACEPARENT).and_then(|v| v.to_str().ok()), Some(tp));
        assert_eq!(md.get(TRACESTATE).and_then(|v| v.to_str().ok()), Some("vendor=1"));
        assert_eq!(traceparent(&extract_metadata(&md)).as_deref(), Some(tp));
        let headers = md.clone().into_headers();
        assert_eq!(traceparent(&extract_headers(&headers)).as_deref(), Some(tp));
        let mut empty = tonic::metadata::MetadataMap::new();
        inject_metadata(&Context::new(), &mut empty);
        assert!(empty.is_empty());
        assert_eq!(traceparent(&extract_metadata(&empty)), None);
    }

    #[cfg(feature = "amqp")]
    #[test]
    fn amqp_headers_carry_the_context() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let cx = context_from_traceparent(tp, None);
        let mut headers = lapin::types::FieldTable::default();
        inject_amqp(&cx, &mut headers);
        assert!(headers.contains_key(TRACEPARENT));
        assert_eq!(traceparent(&extract_amqp(Some(&headers))).as_deref(), Some(tp));
        assert_eq!(traceparent(&extract_amqp(None)), None);
        assert_eq!(
            traceparent(&extract_amqp(Some(&lapin::types::FieldTable::default()))),
            None
        );
    }
}
