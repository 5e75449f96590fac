//! What every Baton binary does the same way: log set-up (with trace export) and the shutdown signal.

/// Where [`subscriber`] writes its log lines (stderr, a file, a buffer in tests).
pub use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`, with lapin's chatter at `warn`; e.g.
/// `RUST_LOG=debug,lapin=warn,h2=info`). `BATON_LOG_FORMAT=json` writes one JSON object per line
/// (`timestamp`, `level`, `target`, `fields` with the event's fields such as `run`, `step` and
/// `attempt`, and the spans it happened in); anything else, or nothing, writes text. Text has ANSI
/// colours only when stderr is a terminal, so log files stay plain.
///
/// Also exports OpenTelemetry traces when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, as service `baton`
/// unless `OTEL_SERVICE_NAME` says otherwise: see [`init_tracing_as`] and [`crate::telemetry`].
pub fn init_tracing() {
    init_tracing_as("baton");
}

/// [`init_tracing`], exporting traces (when configured) as service `service` unless
/// `OTEL_SERVICE_NAME` is set. Call it inside the Tokio runtime.
pub fn init_tracing_as(service: &str) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let env = |k: &str| std::env::var(k).ok();
    let ansi = std::io::stderr().is_terminal();
    subscriber(service, &env, BoxMakeWriter::new(std::io::stderr), ansi).init();
}

/// The subscriber [`init_tracing_as`] installs, configured from `env` (`RUST_LOG`,
/// `BATON_LOG_FORMAT` and the `OTEL_*` variables, see [`crate::telemetry`]) and logging to
/// `writer` (with ANSI colours when `ansi`). Call it inside the Tokio runtime when traces may be
/// exported (the OTLP channel is made there).
///
/// What it costs when a span is not wanted: nothing. Without trace export it is one log layer under
/// one global filter, `RUST_LOG` with Baton's trace spans ([`crate::telemetry::TARGET`]) turned
/// off, so a span no one records (h2's `trace` spans, lapin's, Baton's own) is disabled at its call
/// site and never reaches the span registry. With export, the OpenTelemetry layer is added beside
/// the log layer, each with its own filter.
///
/// (It never adds an empty `Option` layer, nor a per-layer filter when one layer is all there is:
/// tracing-subscriber 0.3 then answers "sometimes" for call sites every filter refuses, and its
/// registry creates a span when a per-layer filter refused it. With the trace spans of h2's codec
/// that was about 15% of the coordinator's CPU in span bookkeeping, export off.)
pub fn subscriber(
    service: &str,
    env: &dyn Fn(&str) -> Option<String>,
    writer: BoxMakeWriter,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync + 'static> {
    use tracing_subscriber::{EnvFilter, Layer as _, filter::Directive, layer::SubscriberExt as _};
    let filter = || {
        env("RUST_LOG")
            .and_then(|s| EnvFilter::try_new(s).ok())
            .unwrap_or_else(|| EnvFilter::new("info,lapin=warn"))
    };
    // The spans made for traces are not log lines.
    let logged = match format!("{}=off", crate::telemetry::TARGET).parse::<Directive>() {
        Ok(off) => filter().add_directive(off),
        Err(_) => filter(),
    };
    let json = env("BATON_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    match crate::telemetry::layer(env, service, filter()) {
        // Two layers that want different spans: a filter each.
        Some(traces) => Box::new(
            tracing_subscriber::registry()
                .with(log_layer(writer, json, ansi).with_filter(logged))
                .with(traces),
        ),
        // One layer: its filter is the subscriber's, which answers "disabled" itself.
        None => Box::new(
            tracing_subscriber::registry()
                .with(logged)
                .with(log_layer(writer, json, ansi)),
        ),
    }
}

/// The log layer: one JSON object per line when `json` (with the spans an event happened in), else
/// text (ANSI colours when `ansi`).
fn log_layer<S>(writer: BoxMakeWriter, json: bool, ansi: bool) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    let log = tracing_subscriber::fmt::layer().with_writer(writer);
    if json {
        log.json().with_current_span(true).with_span_list(true).boxed()
    } else {
        log.with_ansi(ansi).boxed()
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C): the signal for a graceful shutdown.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// A subscriber that counts the spans `inner` creates (its `new_span` calls) and otherwise is
/// `inner`: how the tests prove that a path makes no span when traces are not exported. A span
/// disabled at its call site, or refused by every filter, never reaches `new_span` and is not
/// counted. Spans are counted, not linked: the OpenTelemetry layer inside is not reachable through
/// it (`Span::context()` answers an empty context).
pub struct SpanCounter {
    inner: Box<dyn tracing::Subscriber + Send + Sync + 'static>,
    created: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl SpanCounter {
    /// Wraps `inner`; the returned counter reads how many spans it has created so far.
    pub fn new(
        inner: Box<dyn tracing::Subscriber + Send + Sync + 'static>,
    ) -> (Self, std::sync::Arc<std::sync::atomic::AtomicU64>) {
        let created = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        (
            Self {
                inner,
                created: created.clone(),
            },
            created,
        )
    }
}

impl tracing::Subscriber for SpanCounter {
    fn register_callsite(&self, metadata: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        self.inner.register_callsite(metadata)
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.inner.max_level_hint()
    }
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }
    fn event_enabled(&self, event: &tracing::Event<'_>) -> bool {
        self.inner.event_enabled(event)
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        self.created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.new_span(span)
    }
    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        self.inner.record(span, values);
    }
    fn record_follows_from(&self, span: &tracing::span::Id, follows: &tracing::span::Id) {
        self.inner.record_follows_from(span, follows);
    }
    fn event(&self, event: &tracing::Event<'_>) {
        self.inner.event(event);
    }
    fn enter(&self, span: &tracing::span::Id) {
        self.inner.enter(span);
    }
    fn exit(&self, span: &tracing::span::Id) {
        self.inner.exit(span);
    }
    fn clone_span(&self, id: &tracing::span::Id) -> tracing::span::Id {
        self.inner.clone_span(id)
    }
    fn try_close(&self, id: tracing::span::Id) -> bool {
        self.inner.try_close(id)
    }
    fn current_span(&self) -> tracing_core::span::Current {
        self.inner.current_span()
    }
    // `downcast_raw` is not forwarded (the workspace forbids unsafe code): `Span::context()` and
    // `set_parent` find no OpenTelemetry layer through a `SpanCounter`, so spans are counted, not linked.
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, atomic::Ordering};

    use super::*;

    /// A writer that keeps what the log layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = self.0.lock() {
                b.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            self.0
                .lock()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        }
    }

    #[test]
    fn without_export_the_spans_no_one_records_never_reach_the_registry() {
        let out = Captured::default();
        let writer = out.clone();
        let env = |_: &str| None;
        let (counted, created) = SpanCounter::new(subscriber(
            "test",
            &env,
            BoxMakeWriter::new(move || writer.clone()),
            false,
        ));
        tracing::subscriber::with_default(counted, || {
            // What h2 and lapin make on every frame and poll, and Baton's own trace spans.
            for _ in 0..100 {
                let _poll = tracing::trace_span!(target: "h2::proto::connection", "poll").entered();
                let _frame =
                    tracing::trace_span!(target: "h2::codec::framed_write", "FramedWrite::buffer", frame = 1).entered();
                let _conn =
                    tracing::debug_span!(target: "h2::proto::connection", "Connection", peer = "server").entered();
                let _io = tracing::info_span!(target: "lapin::io_loop", "io_loop").entered();
                let _ours =
                    tracing::info_span!(target: crate::telemetry::TARGET, "dispatch", baton.run_id = "r").entered();
                tracing::trace!(target: "h2::proto::connection", "a trace event");
            }
            assert_eq!(created.load(Ordering::Relaxed), 0, "spans were created");
            // The logs are still what RUST_LOG's default asks for.
            tracing::info!(target: "baton_coordinator", "an info line");
            tracing::debug!(target: "baton_coordinator", "a debug line");
            // A span that is logged is still made: it is in the log lines' context.
            let _logged = tracing::info_span!(target: "baton_coordinator", "served").entered();
            assert_eq!(created.load(Ordering::Relaxed), 1);
        });
        let text = out.text();
        assert!(text.contains("an info line"), "{text}");
        assert!(!text.contains("a debug line"), "{text}");
        assert!(!text.contains("a trace event"), "{text}");
    }

    #[test]
    fn rust_log_still_chooses_what_is_logged_and_never_logs_trace_spans() {
        let out = Captured::default();
        let writer = out.clone();
        let env = |k: &str| (k == "RUST_LOG").then(|| "debug,h2=trace".to_string());
        let (counted, created) = SpanCounter::new(subscriber(
            "test",
            &env,
            BoxMakeWriter::new(move || writer.clone()),
            false,
        ));
        tracing::subscriber::with_default(counted, || {
            let _ours = tracing::info_span!(target: crate::telemetry::TARGET, "dispatch").entered();
            assert_eq!(
                created.load(Ordering::Relaxed),
                0,
                "a trace span was made without export"
            );
            let _poll = tracing::trace_span!(target: "h2::proto::connection", "poll").entered();
            assert_eq!(
                created.load(Ordering::Relaxed),
                1,
                "RUST_LOG asked for h2's trace spans"
            );
            tracing::debug!(target: "baton_coordinator", "a debug line");
        });
        assert!(out.text().contains("a debug line"));
    }
}
