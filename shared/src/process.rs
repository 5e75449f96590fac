//! What every Baton binary does the same way: log set-up (with trace export) and the shutdown signal.

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
    use tracing_subscriber::{
        Layer as _, filter::FilterExt as _, layer::SubscriberExt as _, util::SubscriberInitExt as _,
    };
    let filter = || tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,lapin=warn".into());
    // The spans made for traces are not log lines.
    let logged = filter().and(tracing_subscriber::filter::filter_fn(|m| {
        m.target() != crate::telemetry::TARGET
    }));
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let log = if std::env::var("BATON_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        log.json()
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(logged)
            .boxed()
    } else {
        log.with_ansi(std::io::stderr().is_terminal())
            .with_filter(logged)
            .boxed()
    };
    tracing_subscriber::registry()
        .with(log)
        .with(crate::telemetry::layer(service, filter()))
        .init();
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
