//! OpenTelemetry traces end to end: a coordinator and a worker export to an OTLP trace receiver run
//! in this test process (the collector's gRPC `TraceService`), and one run's spans arrive as one
//! trace with the caller's trace id, the right parents and the step attributes. An endpoint that is
//! down costs the runs nothing and is logged once.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use baton_shared::proto::SubmitRunRequest;
use baton_tests::{Cluster, free_port, status};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, any_value},
    trace::v1::Span,
};
use serde_json::json;

/// One received span with the service that sent it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn attr(&self, key: &str) -> Option<&any_value::Value> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v: &AnyValue| v.value.as_ref())
    }

    fn str_attr(&self, key: &str) -> Option<&str> {
        match self.attr(key) {
            Some(any_value::Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    fn int_attr(&self, key: &str) -> Option<i64> {
        match self.attr(key) {
            Some(any_value::Value::IntValue(i)) => Some(*i),
            _ => None,
        }
    }
}

/// The receiver: keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().expect("spans");
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push(Received {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Serves on a free port of 127.0.0.1; answers its URL.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let svc = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming),
        );
        format!("http://{addr}")
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().expect("spans").clone()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const TWO_STEPS: &str = r#"
name: traced
version: 1
steps:
  - {id: first, handler: echo}
  - {id: second, handler: trace, depends_on: [first]}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn one_run_is_one_trace_with_the_callers_trace_id_parents_and_step_attributes() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let mut cluster = Cluster::start("traces", &otel).await;
    cluster.set_worker_env(&otel);
    cluster.spawn_worker("w1", 4);
    cluster.register(TWO_STEPS).await;

    // The caller's own span: the run joins its trace.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    let mut req = tonic::Request::new(SubmitRunRequest {
        workflow: "traced".into(),
        input_json: json!({"x": 1}).to_string(),
        ..Default::default()
    });
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse().expect("metadata"),
    );
    let run_id = cluster
        .runs()
        .await
        .submit_run(req)
        .await
        .expect("submit")
        .into_inner()
        .run_id;
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");

    // Wait until the run's spans have all arrived: SubmitRun, and per step a dispatch, a handler,
    // a StartStep and a ReportResult.
    let start = Instant::now();
    let spans = loop {
        let spans: Vec<Received> = collector
            .spans()
            .into_iter()
            .filter(|s| hex(&s.span.trace_id) == trace_id || s.str_attr("baton.run_id") == Some(&run_id))
            .collect();
        let count = |name: &str| spans.iter().filter(|s| s.span.name == name).count();
        if count("SubmitRun") >= 1
            && count("dispatch first") >= 1
            && count("dispatch second") >= 1
            && count("handler echo") >= 1
            && count("handler trace") >= 1
            && count("StartStep") >= 2
            && count("ReportResult") >= 2
        {
            break spans;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run's spans did not all arrive within 60 s; got {:#?}",
            spans
                .iter()
                .map(|s| (&s.service, &s.span.name, hex(&s.span.parent_span_id)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // One trace: the caller's.
    for s in &spans {
        assert_eq!(
            hex(&s.span.trace_id),
            trace_id,
            "span {} of {} is in another trace",
            s.span.name,
            s.service
        );
    }
    let one = |name: &str| -> &Received {
        let all: Vec<&Received> = spans.iter().filter(|s| s.span.name == name).collect();
        assert_eq!(all.len(), 1, "one {name} span: {all:#?}");
        all[0]
    };
    let id = |s: &Received| hex(&s.span.span_id);
    let parent = |s: &Received| hex(&s.span.parent_span_id);

    let submit = one("SubmitRun");
    assert_eq!(submit.service, "baton-coordinator");
    assert_eq!(parent(submit), caller_span, "SubmitRun is a child of the caller's span");
    assert_eq!(submit.str_attr("baton.run_id"), Some(run_id.as_str()));
    assert_eq!(submit.str_attr("baton.workflow"), Some("traced"));

    for (step, handler) in [("first", "echo"), ("second", "trace")] {
        let dispatch = one(&format!("dispatch {step}"));
        assert_eq!(dispatch.service, "baton-coordinator");
        assert_eq!(
            parent(dispatch),
            id(submit),
            "dispatch {step} is a child of the run's root"
        );
        assert_eq!(dispatch.str_attr("baton.step_id"), Some(step));
        assert_eq!(dispatch.str_attr("baton.handler"), Some(handler));
        assert_eq!(dispatch.int_attr("baton.attempt"), Some(1));
        assert_eq!(dispatch.str_attr("baton.run_id"), Some(run_id.as_str()));

        let work = one(&format!("handler {handler}"));
        assert_eq!(work.service, "baton-worker");
        assert_eq!(
            parent(work),
            id(dispatch),
            "handler {handler}'s parent is dispatch {step}"
        );
        assert_eq!(work.str_attr("baton.run_id"), Some(run_id.as_str()), "{work:#?}");
        assert_eq!(work.str_attr("baton.step_id"), Some(step));
        assert_eq!(work.int_attr("baton.attempt"), Some(1));
        assert_eq!(work.str_attr("baton.handler"), Some(handler));
        assert_eq!(work.str_attr("baton.workflow"), Some("traced"));
        assert_eq!(work.str_attr("baton.worker_id"), Some("w1"));
        assert_eq!(work.str_attr("baton.outcome"), Some("succeeded"));

        let of_step = |name: &str| -> Vec<&Received> {
            spans
                .iter()
                .filter(|s| s.span.name == name && s.str_attr("baton.step_id") == Some(step))
                .collect()
        };
        let reports = of_step("ReportResult");
        assert_eq!(reports.len(), 1, "one ReportResult for {step}: {reports:#?}");
        assert_eq!(reports[0].service, "baton-coordinator");
        assert_eq!(
            parent(reports[0]),
            id(work),
            "ReportResult of {step} is a child of its handler span"
        );
        assert_eq!(reports[0].int_attr("baton.attempt"), Some(1));
        assert_eq!(reports[0].str_attr("baton.outcome"), Some("succeeded"));
        let starts = of_step("StartStep");
        assert_eq!(starts.len(), 1, "one StartStep for {step}: {starts:#?}");
        assert_eq!(
            parent(starts[0]),
            id(work),
            "StartStep of {step} is a child of its handler span"
        );
    }

    // GetRun polls without trace context make no spans.
    assert!(
        collector.spans().iter().all(|s| s.span.name != "GetRun"),
        "calls without trace context are not traced"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_that_is_down_costs_the_runs_nothing_and_is_logged_once() {
    // Nobody listens on this port.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
        // Each later failed export is a debug line: the proof that exports went on failing.
        ("RUST_LOG", "info,lapin=warn,baton_shared::telemetry=debug"),
    ];
    let mut cluster = Cluster::start("traces-down", &otel).await;
    cluster.set_worker_env(&otel);
    cluster.spawn_worker("w1", 4);
    cluster.register(TWO_STEPS).await;
    let lines = |name: &str, text: &str| {
        std::fs::read_to_string(cluster.log_path(name))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(text))
            .count()
    };
    let wait_for = |name: &'static str, text: &'static str| {
        let start = Instant::now();
        let lines = &lines;
        async move {
            while lines(name, text) == 0 {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "{text:?} never showed in the {name} log"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let run_some = |from: u32| {
        let cluster = &cluster;
        async move {
            let mut runs = Vec::new();
            for i in from..from + 3 {
                runs.push(cluster.submit("traced", json!({"i": i})).await);
            }
            for run_id in &runs {
                let run = cluster.wait_run(run_id, Duration::from_secs(60)).await;
                assert_eq!(status(&run), "succeeded", "{run:#?}");
            }
        }
    };
    run_some(0).await;
    wait_for("coordinator", "could not export traces").await;
    wait_for("w1", "could not export traces").await;
    // Later runs' spans fail to export too: still one warning per process.
    run_some(3).await;
    wait_for("coordinator", "traces still not exported").await;
    wait_for("w1", "traces still not exported").await;
    assert_eq!(
        lines("coordinator", "could not export traces"),
        1,
        "logged once by the coordinator"
    );
    assert_eq!(lines("w1", "could not export traces"), 1, "logged once by the worker");
}
