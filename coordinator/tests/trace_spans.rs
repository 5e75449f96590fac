//! With an OTLP endpoint configured, the coordinator's step path makes its trace spans (and still
//! none of the libraries' `trace` spans). A test binary of its own: turning export on is once per
//! process, and the library's unit tests prove the opposite with export off.

use std::sync::atomic::Ordering;

use baton_coordinator::traces::grpc_span;
use baton_shared::{
    process::{BoxMakeWriter, SpanCounter, subscriber},
    telemetry,
};
use tonic::codegen::http;

/// A worker's call as the server's `trace_fn` sees it, with the trace context of its `handler` span.
fn call(method: &str) -> http::Request<()> {
    let mut req = http::Request::new(());
    *req.uri_mut() = format!("/baton.v1.WorkerService/{method}").parse().unwrap_or_default();
    req.headers_mut().insert(
        telemetry::TRACEPARENT,
        http::HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    );
    req
}

#[tokio::test]
async fn with_an_endpoint_the_step_path_makes_its_spans_and_no_others() {
    // Nothing listens there: spans are made and their export fails quietly.
    let env = |k: &str| (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://127.0.0.1:9".to_string());
    let (counted, created) = SpanCounter::new(subscriber("test", &env, BoxMakeWriter::new(std::io::sink), false));
    assert!(telemetry::enabled(), "export is on with an endpoint");
    tracing::subscriber::with_default(counted, || {
        for method in ["StartStep", "ReportResult"] {
            let span = grpc_span(&call(method));
            assert!(!span.is_none(), "{method} got no span");
        }
        assert_eq!(created.load(Ordering::Relaxed), 2);
        let _poll = tracing::trace_span!(target: "h2::proto::connection", "poll").entered();
        let _io = tracing::info_span!(target: "lapin::io_loop", "io_loop").entered();
        assert_eq!(created.load(Ordering::Relaxed), 2, "a library's span was made");
    });
}
