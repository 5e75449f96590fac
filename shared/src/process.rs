//! What every Baton binary does the same way: log set-up and the shutdown signal.

/// Logs to stderr, filtered by `RUST_LOG` (default `info`, with lapin's chatter at `warn`; e.g.
/// `RUST_LOG=debug,lapin=warn,h2=info`). `BATON_LOG_FORMAT=json` writes one JSON object per line
/// (`timestamp`, `level`, `target`, `fields` with the event's fields such as `run`, `step` and
/// `attempt`, and the spans it happened in); anything else, or nothing, writes text. Text has ANSI
/// colours only when stderr is a terminal, so log files stay plain.
pub fn init_tracing() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,lapin=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("BATON_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().with_current_span(true).with_span_list(true).init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
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
