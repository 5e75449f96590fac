//! GetRun of a run whose steps hold large outputs (issue 17, item 6), through the real API: a
//! client with gRPC's default 4 MiB answer limit reads the run, the answer stays under
//! `MAX_GET_RUN_BYTES`, the outputs that did not fit say their size, and GetRun with `step_id`
//! answers one step with its whole output; the same over HTTP.

use std::time::Duration;

use baton_shared::{
    limits::MAX_GET_RUN_BYTES,
    proto::{GetRunRequest, Run, RunStatus, StepRun, run_service_client::RunServiceClient},
};
use baton_tests::{Cluster, free_port};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use prost::Message;
use serde_json::Value;
use tonic::Code;

/// Four root steps whose outputs (`{"pad": "xx…"}`, 10 bytes more than `output_bytes`) add up to
/// 6.7 MB, over the 3 MiB budget; `big` alone (3.5 MB) is over it too but under the 4 MiB limit
/// of a default client. `last` gives the run a small output.
const WORKFLOW: &str = r#"
name: large-outputs
version: 1
steps:
  - {id: a, handler: echo, input: {output_bytes: 1000000}}
  - {id: big, handler: echo, input: {output_bytes: 3500000}}
  - {id: c, handler: echo, input: {output_bytes: 1000000}}
  - {id: d, handler: echo, input: {output_bytes: 1200000}}
  - {id: last, handler: echo, depends_on: [a, big, c, d], input: {done: true}}
"#;

fn step<'a>(run: &'a Run, id: &str) -> &'a StepRun {
    run.steps.iter().find(|s| s.id == id).expect("step")
}

/// The length of the `pad` of an output `{"pad": "xx…"}`.
fn pad(output: &Value) -> usize {
    output["pad"].as_str().map_or(0, str::len)
}

/// A GET over HTTP/1.1 with hyper: the status and the body's bytes.
async fn http_get(url: &str) -> (u16, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(30), client.get(url.parse().expect("url")))
        .await
        .unwrap_or_else(|_| panic!("GET {url}: no answer in 30 s"))
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.expect("body").to_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_with_large_step_outputs_is_read_within_the_default_answer_limit_and_each_output_by_its_step() {
    let http_port = free_port();
    let http_addr = format!("127.0.0.1:{http_port}");
    let mut cluster = Cluster::start("get-run-bounds", &[("BATON_HTTP_ADDR", http_addr.as_str())]).await;
    cluster.register(WORKFLOW).await;
    cluster.spawn_worker("w", 4);
    let run_id = cluster.submit("large-outputs", serde_json::json!({})).await;
    let done = cluster.wait_run(&run_id, Duration::from_secs(120)).await;
    assert_eq!(done.status, RunStatus::Succeeded as i32, "{}", done.error);

    // A client with tonic's defaults (it refuses answers over 4 MiB).
    let channel = tonic::transport::Endpoint::from_shared(cluster.addr.clone())
        .expect("address")
        .connect()
        .await
        .expect("connect");
    let mut client = RunServiceClient::new(channel);
    let run = client
        .get_run(GetRunRequest {
            run_id: run_id.clone(),
            ..Default::default()
        })
        .await
        .expect("a default client reads the run")
        .into_inner();
    let size = run.encoded_len();
    eprintln!("GetRun answer: {size} bytes (budget {MAX_GET_RUN_BYTES})");
    assert!(size <= MAX_GET_RUN_BYTES, "{size} bytes");
    assert_eq!(run.steps.len(), 5);
    assert!(!run.output_json.is_empty(), "the run's own output is there");
    // In step order: `a` fits, `big` does not, `c` still fits, `d` no longer does, `last` is small.
    for (id, padded) in [("a", 1_000_000), ("c", 1_000_000)] {
        let s = step(&run, id);
        assert_eq!(s.output_omitted_bytes, 0, "{id}");
        assert_eq!(
            pad(&serde_json::from_str(&s.output_json).expect("json")),
            padded,
            "{id}"
        );
    }
    assert_eq!(step(&run, "last").output_json, r#"{"done":true}"#);
    for (id, bytes) in [("big", 3_500_010), ("d", 1_200_010)] {
        let s = step(&run, id);
        assert_eq!((s.output_json.as_str(), s.output_omitted_bytes), ("", bytes), "{id}");
        assert_eq!(s.status, done.steps.iter().find(|t| t.id == id).expect("step").status);
    }

    // One step: its whole output, whatever the budget, and nothing else large.
    let one = client
        .get_run(GetRunRequest {
            run_id: run_id.clone(),
            step_id: "big".into(),
        })
        .await
        .expect("the step alone")
        .into_inner();
    assert_eq!(one.steps.len(), 1);
    assert_eq!(one.steps[0].id, "big");
    assert_eq!(one.steps[0].output_omitted_bytes, 0);
    assert_eq!(one.steps[0].output_json.len(), 3_500_010);
    assert_eq!(
        pad(&serde_json::from_str(&one.steps[0].output_json).expect("json")),
        3_500_000
    );
    assert_eq!((one.input_json.as_str(), one.output_json.as_str()), ("", ""));
    assert_eq!(one.status, RunStatus::Succeeded as i32);
    let e = client
        .get_run(GetRunRequest {
            run_id: run_id.clone(),
            step_id: "nope".into(),
        })
        .await
        .expect_err("no such step");
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().starts_with("step_id: run "), "{}", e.message());
    let e = client
        .get_run(GetRunRequest {
            run_id: run_id.clone(),
            step_id: "s".repeat(201),
        })
        .await
        .expect_err("a step id over 200 bytes");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("step_id: "), "{}", e.message());

    // The same over HTTP.
    let base = format!("http://{http_addr}/v1/runs/{run_id}");
    let (status, body) = http_get(&base).await;
    assert_eq!(status, 200);
    eprintln!("GET /v1/runs/{{id}}: {} bytes", body.len());
    assert!(body.len() < 4 * 1024 * 1024, "{} bytes", body.len());
    let json: Value = serde_json::from_slice(&body).expect("json");
    let steps = json["steps"].as_array().expect("steps");
    let find = |id: &str| steps.iter().find(|s| s["id"] == id).expect("step");
    assert_eq!(pad(&find("a")["output"]), 1_000_000);
    assert_eq!(find("a")["output_omitted_bytes"], 0);
    assert_eq!(find("big")["output"], Value::Null);
    assert_eq!(find("big")["output_omitted_bytes"], 3_500_010);
    assert_eq!(find("d")["output_omitted_bytes"], 1_200_010);

    let (status, body) = http_get(&format!("{base}?step_id=big")).await;
    assert_eq!(status, 200);
    let json: Value = serde_json::from_slice(&body).expect("json");
    let steps = json["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 1);
    assert_eq!(pad(&steps[0]["output"]), 3_500_000);
    assert_eq!(steps[0]["output_omitted_bytes"], 0);

    let (status, body) = http_get(&format!("{base}?step_id=nope")).await;
    assert_eq!(status, 404);
    let json: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(json["field"], "step_id", "{json}");
}
