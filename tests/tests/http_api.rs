//! The HTTP JSON API (`docs/http-api.md`) end to end: a real coordinator with `http_addr` set, real
//! workers, Redis and RabbitMQ, driven by a real HTTP/1.1 client (hyper's). It checks what a `curl`
//! user or the web console sees: the JSON shapes, the HTTP statuses and error bodies mapped from the
//! gRPC codes, auth with the gRPC tokens and roles, and a run's Server-Sent Events (history, live,
//! end, resume with `Last-Event-ID`). The OpenAPI document is validated with the Python
//! `openapi-spec-validator` of the CI venv and compared with the routes.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use baton_tests::{Cluster, ClusterOptions, free_port};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::{Value, json};

/// A client of one coordinator's HTTP API.
struct Http {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// An answer: HTTP status and the JSON body (`Value::Null` when it is not JSON).
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    /// Whether the answer said `Connection: close`.
    closes: bool,
}

impl Answer {
    /// The error body's `code` and `field`.
    fn error(&self) -> (u16, &str, Option<&str>) {
        (
            self.status,
            self.body["code"].as_str().unwrap_or("<no code>"),
            self.body["field"].as_str(),
        )
    }
}

impl Http {
    fn new(base: String) -> Self {
        Self {
            base,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Bytes>) -> Answer {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default())).expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer in 30 s"))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let closes = resp
            .headers()
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer { status, body, closes }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.send(Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.send(Method::POST, path, token, Some(Bytes::from(body.to_string())))
            .await
    }

    /// GET that must answer 200; its body.
    async fn ok(&self, path: &str) -> Value {
        let a = self.get(path, None).await;
        assert_eq!(a.status, 200, "GET {path}: {a:?}");
        a.body
    }

    /// POST that must answer 200; its body.
    async fn post_ok(&self, path: &str, body: Value) -> Value {
        let a = self.post(path, None, body).await;
        assert_eq!(a.status, 200, "POST {path}: {a:?}");
        a.body
    }

    /// Opens an SSE stream at `path` with extra `headers`; panics unless it answers 200
    /// `text/event-stream`.
    async fn sse(&self, path: &str, headers: &[(&str, &str)]) -> Sse {
        let mut req = Request::builder()
            .uri(format!("{}{path}", self.base))
            .header("accept", "text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::new())).expect("request");
        let resp = self.client.request(req).await.expect("SSE request");
        assert_eq!(resp.status().as_u16(), 200, "SSE {path}");
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        Sse {
            body: resp.into_body(),
            buf: String::new(),
        }
    }

    /// Polls `path` until `done(body)` holds; panics after `within`.
    async fn wait(&self, path: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let body = self.ok(path).await;
            if done(&body) {
                return body;
            }
            assert!(start.elapsed() < within, "GET {path} never got there: {body:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
struct SseEvent {
    id: Option<String>,
    event: String,
    data: Value,
}

/// An SSE stream being read.
struct Sse {
    body: hyper::body::Incoming,
    buf: String,
}

impl Sse {
    /// The next event (comments skipped), or `None` when the stream ended. Panics after `within`.
    async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, "message".to_string(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() && id.is_none() {
                    continue; // a comment (keep-alive)
                }
                let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some(SseEvent { id, event, data });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = tokio::time::timeout(left, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no SSE event within {within:?}; buffered: {:?}", self.buf));
            match frame {
                None => return None,
                Some(Err(e)) => panic!("SSE body: {e}"),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.push_str(&String::from_utf8_lossy(&data));
                    }
                }
            }
        }
    }

    /// Reads until a comment line (`: text`) arrives; answers its text. Panics after `within` or
    /// when an event comes first.
    async fn comment(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.buf.lines().find(|l| l.starts_with(':')) {
                return line.trim_start_matches(':').trim().to_string();
            }
            assert!(!self.buf.contains("data:"), "an event came first: {:?}", self.buf);
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = tokio::time::timeout(left, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no comment within {within:?}"));
            match frame {
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.push_str(&String::from_utf8_lossy(&data));
                    }
                }
                other => panic!("the stream ended or failed: {other:?}"),
            }
        }
    }

    /// Every event until the stream ends (the last is `end`).
    async fn rest(&mut self, within: Duration) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.next(within).await {
            out.push(e);
        }
        out
    }
}

/// `(ms, n)` of a sequence `ms-n`, for ordering.
fn seq(s: &str) -> (u64, u64) {
    let (a, b) = s.split_once('-').expect("sequence ms-n");
    (a.parse().expect("ms"), b.parse().expect("n"))
}

/// A cluster whose coordinator serves HTTP on a free port, and a client of it.
async fn start(test: &str, mut env: Vec<(String, String)>, worker_env: Vec<(String, String)>) -> (Cluster, Http) {
    let port = free_port();
    env.push(("BATON_HTTP_ADDR".into(), format!("127.0.0.1:{port}")));
    let cluster = Cluster::start_with(
        test,
        ClusterOptions {
            env,
            worker_env,
            ..Default::default()
        },
    )
    .await;
    (cluster, Http::new(format!("http://127.0.0.1:{port}")))
}

const APPROVAL: &str = r#"
name: expense
version: 1
description: An expense waits for a manager's approval.
steps:
  - {id: submit, handler: echo}
  - id: approve
    depends_on: [submit]
    human:
      title: Approve the expense
      description: Check the amount.
      assignees: [manager]
      form:
        type: object
        required: [approved]
        properties:
          approved: {type: boolean}
          note: {type: string}
  - {id: process, handler: echo, depends_on: [approve]}
"#;

const SLOW: &str = r#"
name: slowpoke
version: 1
steps:
  - {id: wait, handler: slow}
"#;

const FAILING: &str = r#"
name: doomed
version: 1
steps:
  - {id: boom, handler: fail, retry: {max_attempts: 1}}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn runs_are_registered_submitted_listed_and_operated_over_http_with_grpc_errors() {
    let (mut cluster, http) = start("http-runs", vec![], vec![]).await;
    cluster.spawn_worker("w1", 4);

    // Health mirrors gRPC health.
    assert_eq!(http.ok("/healthz").await, json!({"status": "SERVING"}));

    // Register: YAML text; the answer carries the steps and the graph.
    let reg = http.post_ok("/v1/workflows", json!({"definition": APPROVAL})).await;
    assert_eq!(reg["created"], json!(true));
    assert_eq!(reg["workflow"]["name"], "expense");
    let edges = &reg["workflow"]["edges"];
    assert_eq!(
        edges,
        &json!([{"from": "submit", "to": "approve"}, {"from": "approve", "to": "process"}])
    );
    assert_eq!(
        reg["workflow"]["steps"][1]["human"]["form_schema"]["required"],
        json!(["approved"])
    );
    let again = http.post_ok("/v1/workflows", json!({"definition": APPROVAL})).await;
    assert_eq!(again["created"], json!(false), "the same definition again");
    for def in [SLOW, FAILING] {
        http.post_ok("/v1/workflows", json!({"definition": def})).await;
    }
    let bad = http
        .post(
            "/v1/workflows",
            None,
            json!({"definition": "name: x\nversion: 1\nsteps:\n  - {id: a, handler: echo, depends_on: [nope]}\n"}),
        )
        .await;
    assert_eq!(bad.error().0, 400, "{bad:?}");
    assert_eq!(bad.error().1, "INVALID_ARGUMENT");
    assert!(bad.error().2.is_some_and(|f| f.starts_with("steps[0]")), "{bad:?}");

    let listed = http.ok("/v1/workflows").await;
    let names: BTreeSet<&str> = listed["workflows"]
        .as_array()
        .expect("workflows")
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert_eq!(names, BTreeSet::from(["doomed", "expense", "slowpoke"]));
    let got = http.ok("/v1/workflows/expense?version=1").await;
    assert_eq!(got["version"], 1);
    assert_eq!(got["definition"]["name"], "expense", "the definition is a JSON value");
    let missing = http.get("/v1/workflows/nosuch", None).await;
    assert_eq!(missing.error(), (404, "NOT_FOUND", Some("workflow")), "{missing:?}");

    // Submit with an idempotency key: the second submit answers the same run.
    // A millisecond back: the run may be created within the same millisecond, and the bounds are
    // exclusive.
    let before_submit =
        (chrono::Utc::now() - chrono::Duration::milliseconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let first = http
        .post_ok(
            "/v1/runs",
            json!({"workflow": "expense", "input": {"amount": 42, "who": "ann"}, "idempotency_key": "exp-1"}),
        )
        .await;
    assert_eq!(first["created"], json!(true));
    let run_id = first["run_id"].as_str().expect("run_id").to_string();
    let second = http
        .post_ok(
            "/v1/runs",
            json!({"workflow": "expense", "input": {"amount": 42, "who": "ann"}, "idempotency_key": "exp-1"}),
        )
        .await;
    assert_eq!(second["run_id"], first["run_id"]);
    assert_eq!(second["created"], json!(false));
    assert_eq!(second["input_differs"], json!(false));

    // Get: input is a JSON value, steps in definition order.
    let run = http
        .wait(&format!("/v1/runs/{run_id}"), Duration::from_secs(30), |r| {
            r["steps"][1]["status"] == "waiting"
        })
        .await;
    assert_eq!(run["input"], json!({"amount": 42, "who": "ann"}));
    assert_eq!(run["status"], "running");
    let ids: Vec<&str> = run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, ["submit", "approve", "process"]);
    assert_eq!(run["steps"][0]["output"], json!({"amount": 42, "who": "ann"}));
    assert!(run["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{run:#}");

    // Errors: unknown run, malformed id, malformed JSON, a limit out of range, a bad status.
    let unknown = http.get("/v1/runs/00000000-0000-4000-8000-000000000000", None).await;
    assert_eq!(unknown.error(), (404, "NOT_FOUND", Some("run_id")), "{unknown:?}");
    assert!(unknown.body["message"].as_str().is_some_and(|m| m.contains("no run")));
    let garbled = http.get("/v1/runs/not-a-uuid", None).await;
    assert_eq!(garbled.error(), (400, "INVALID_ARGUMENT", Some("run_id")));
    // A path segment that does not decode is a JSON error too, not axum's plain text.
    let undecodable = http.get("/v1/runs/%FF%FE", None).await;
    assert_eq!(
        undecodable.error(),
        (400, "INVALID_ARGUMENT", Some("path")),
        "{undecodable:?}"
    );
    let malformed = http
        .send(
            Method::POST,
            "/v1/runs",
            None,
            Some(Bytes::from_static(b"{\"workflow\": ")),
        )
        .await;
    // Cut off after `"workflow": `: the path where parsing stopped, and the position.
    assert_eq!(
        malformed.error(),
        (400, "INVALID_ARGUMENT", Some("workflow")),
        "{malformed:?}"
    );
    assert!(
        malformed.body["message"].as_str().is_some_and(|m| m.contains("line 1")),
        "{malformed:?}"
    );
    let garbage = http
        .send(Method::POST, "/v1/runs", None, Some(Bytes::from_static(b"not json")))
        .await;
    assert_eq!(garbage.error(), (400, "INVALID_ARGUMENT", Some("body")), "{garbage:?}");
    let wrong_type = http.post("/v1/runs", None, json!({"workflow": 7})).await;
    assert_eq!(wrong_type.error(), (400, "INVALID_ARGUMENT", Some("workflow")));
    let stray = http
        .post("/v1/runs", None, json!({"workflow": "expense", "inptu": {}}))
        .await;
    assert_eq!(stray.error(), (400, "INVALID_ARGUMENT", Some("inptu")));
    let limit = http.get("/v1/runs?limit=5000", None).await;
    assert_eq!(limit.error(), (400, "INVALID_ARGUMENT", Some("limit")));
    let status = http.get("/v1/runs?status=sleeping", None).await;
    assert_eq!(status.error(), (400, "INVALID_ARGUMENT", Some("status")));
    let long = http.get(&format!("/v1/runs?workflow={}", "w".repeat(2000)), None).await;
    assert_eq!(long.error(), (400, "INVALID_ARGUMENT", Some("workflow")));
    let when = http.get("/v1/runs?created_after=yesterday", None).await;
    assert_eq!(when.error(), (400, "INVALID_ARGUMENT", Some("created_after")));
    let no_route = http.get("/v1/nothing-here", None).await;
    assert_eq!(no_route.error().0, 404);
    let no_workflow = http.post("/v1/runs", None, json!({"workflow": "nosuch"})).await;
    assert_eq!(no_workflow.error().0, 404);

    // A failed run and a slow one, for the filters and the operations.
    let failed_id = http
        .post_ok("/v1/runs", json!({"workflow": "doomed", "input": {"fatal": true}}))
        .await["run_id"]
        .as_str()
        .expect("run_id")
        .to_string();
    let slow_id = http
        .post_ok("/v1/runs", json!({"workflow": "slowpoke", "input": {"ms": 60000}}))
        .await["run_id"]
        .as_str()
        .expect("run_id")
        .to_string();
    http.wait(&format!("/v1/runs/{failed_id}"), Duration::from_secs(30), |r| {
        r["status"] == "failed"
    })
    .await;

    // List with filters and paging.
    let by_status = http.ok("/v1/runs?status=failed").await;
    let failed_ids: Vec<&str> = by_status["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(failed_ids, [failed_id.as_str()]);
    let by_workflow = http.ok("/v1/runs?workflow=expense").await;
    assert_eq!(by_workflow["runs"].as_array().map(Vec::len), Some(1));
    assert_eq!(by_workflow["runs"][0]["steps"], json!([]), "lists carry no steps");
    let page1 = http.ok("/v1/runs?limit=2").await;
    assert_eq!(page1["runs"].as_array().map(Vec::len), Some(2));
    let token = page1["next_page_token"].as_str().expect("token").to_string();
    assert!(!token.is_empty());
    let page2 = http.ok(&format!("/v1/runs?limit=2&page_token={token}")).await;
    assert_eq!(page2["runs"].as_array().map(Vec::len), Some(1));
    assert_eq!(page2["next_page_token"], "");
    let all: Vec<String> = [&page1, &page2]
        .iter()
        .flat_map(|p| p["runs"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["id"].as_str().map(String::from))
        .collect();
    // Newest first (the two last runs may share a millisecond: then either comes first).
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(all[2], run_id, "newest first: {all:?}");
    assert_eq!(
        BTreeSet::from([all[0].clone(), all[1].clone()]),
        BTreeSet::from([slow_id.clone(), failed_id.clone()])
    );
    // created_after / created_before: the expense run was created first.
    let expense_created = run["created_at"].as_str().expect("created_at").to_string();
    let after = http
        .ok(&format!("/v1/runs?created_after={}", urlencode(&expense_created)))
        .await;
    let after_ids: BTreeSet<&str> = after["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert!(
        !after_ids.contains(run_id.as_str()),
        "created_after is exclusive: {after:#}"
    );
    let before = http
        .ok(&format!("/v1/runs?created_before={}", urlencode(&before_submit)))
        .await;
    assert_eq!(before["runs"], json!([]), "nothing was created before the first submit");
    let window = http
        .ok(&format!(
            "/v1/runs?created_after={}&workflow=expense",
            urlencode(&before_submit)
        ))
        .await;
    assert_eq!(
        window["runs"][0]["id"],
        run_id.as_str(),
        "created after {before_submit}: {window:#}; the run was created at {expense_created}"
    );

    // Cancel, retry, rerun.
    http.wait(&format!("/v1/runs/{slow_id}"), Duration::from_secs(30), |r| {
        r["steps"][0]["status"] == "running"
    })
    .await;
    let cancelled = http
        .post_ok(&format!("/v1/runs/{slow_id}/cancel"), json!({"reason": "too slow"}))
        .await;
    assert_eq!(cancelled["status"], "cancelled");
    let run = http.ok(&format!("/v1/runs/{slow_id}")).await;
    assert_eq!(run["status"], "cancelled");
    let twice = http.post(&format!("/v1/runs/{slow_id}/cancel"), None, json!({})).await;
    assert_eq!(twice.error(), (400, "FAILED_PRECONDITION", Some("run_id")), "{twice:?}");
    let retried = http.post_ok(&format!("/v1/runs/{failed_id}/retry"), json!({})).await;
    assert_eq!(retried["dispatched_steps"], json!(["boom"]));
    http.wait(&format!("/v1/runs/{failed_id}"), Duration::from_secs(30), |r| {
        r["status"] == "failed" && r["steps"][0]["attempt"] == 2
    })
    .await;
    let rerun = http
        .post_ok(
            &format!("/v1/runs/{failed_id}/rerun"),
            json!({"from_step": "boom", "input": {"fatal": true, "again": 1}}),
        )
        .await;
    assert_eq!(rerun["dispatched_steps"], json!(["boom"]));
    let rerun_bad = http
        .post(
            &format!("/v1/runs/{failed_id}/rerun"),
            None,
            json!({"from_step": "nope"}),
        )
        .await;
    assert_eq!(rerun_bad.error().0, 400, "{rerun_bad:?}");
    let run = http
        .wait(&format!("/v1/runs/{failed_id}"), Duration::from_secs(30), |r| {
            r["status"] == "failed" && r["steps"][0]["attempt"] == 3
        })
        .await;
    assert_eq!(
        run["input"],
        json!({"fatal": true, "again": 1}),
        "rerun with a new input"
    );

    // Events: nobody waits, so it is buffered.
    let published = http
        .post_ok(
            "/v1/events",
            json!({"name": "paid", "key": "42", "payload": {"ok": true}}),
        )
        .await;
    assert_eq!(published["buffered"], json!(true));
    assert_eq!(published["delivered"], json!([]));

    // Workers and queues.
    let workers = http
        .wait("/v1/workers", Duration::from_secs(30), |w| {
            w["workers"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert_eq!(workers["workers"][0]["worker_id"], "w1");
    assert_eq!(workers["workers"][0]["state"], "running");
    let queues = http.ok("/v1/queues").await;
    let handlers: BTreeSet<&str> = queues["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .filter_map(|q| q["handler"].as_str())
        .collect();
    assert!(
        handlers.is_superset(&BTreeSet::from(["echo", "fail", "slow"])),
        "{queues:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_human_task_is_completed_over_http_and_the_sse_stream_shows_the_run_to_its_end_and_resumes() {
    let (mut cluster, http) = start("http-sse", vec![], vec![]).await;
    cluster.spawn_worker("w1", 4);
    http.post_ok("/v1/workflows", json!({"definition": APPROVAL})).await;
    let run_id = http
        .post_ok("/v1/runs", json!({"workflow": "expense", "input": {"amount": 42}}))
        .await["run_id"]
        .as_str()
        .expect("run_id")
        .to_string();

    // The stream: history first (the run up to the human step), then live.
    let mut sse = http.sse(&format!("/v1/runs/{run_id}/events"), &[]).await;
    let mut seen = Vec::new();
    loop {
        let e = sse.next(Duration::from_secs(30)).await.expect("stream open");
        seen.push(e.clone());
        if e.event == "step" && e.data["step_id"] == "approve" && e.data["status"] == "waiting" {
            break;
        }
    }
    assert_eq!(seen[0].event, "run");
    assert_eq!(seen[0].data["run_id"], run_id.as_str());
    for e in &seen {
        assert_eq!(
            e.id.as_deref(),
            e.data["sequence"].as_str(),
            "the SSE id is the sequence"
        );
        assert_eq!(e.event, e.data["kind"].as_str().unwrap_or(""));
    }
    let waiting_seq = seen.last().and_then(|e| e.id.clone()).expect("id");
    // While the run waits, the stream stays open with keep-alive comments (every 15 s).
    let mut quiet = http
        .sse(&format!("/v1/runs/{run_id}/events"), &[("last-event-id", &waiting_seq)])
        .await;
    assert_eq!(quiet.comment(Duration::from_secs(25)).await, "keep-alive");
    drop(quiet);

    // The task is listed (filters) and refuses data its form schema refuses, naming the field.
    let tasks = http
        .wait(
            "/v1/tasks?assignee=manager&workflow=expense&status=open",
            Duration::from_secs(10),
            |t| t["tasks"].as_array().is_some_and(|a| a.len() == 1),
        )
        .await;
    let task = &tasks["tasks"][0];
    assert_eq!(task["run_id"], run_id.as_str());
    assert_eq!(task["title"], "Approve the expense");
    assert_eq!(
        task["form_schema"]["properties"]["approved"],
        json!({"type": "boolean"})
    );
    assert_eq!(http.ok("/v1/tasks?assignee=nobody").await["tasks"], json!([]));
    let complete = format!("/v1/tasks/{run_id}/approve/complete");
    let invalid = http
        .post(&complete, None, json!({"data": {"approved": "yes"}, "user": "manager"}))
        .await;
    assert_eq!(
        invalid.error(),
        (400, "INVALID_ARGUMENT", Some("data/approved")),
        "{invalid:?}"
    );
    let missing = http.post(&complete, None, json!({"data": {}, "user": "manager"})).await;
    assert_eq!(
        missing.error(),
        (400, "INVALID_ARGUMENT", Some("data/approved")),
        "{missing:?}"
    );
    let done = http
        .post_ok(
            &complete,
            json!({"data": {"approved": true, "note": "fine"}, "user": "manager"}),
        )
        .await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["completed_by"], "manager");
    assert_eq!(done["data"], json!({"approved": true, "note": "fine"}));
    let again = http
        .post(&complete, None, json!({"data": {"approved": true}, "user": "manager"}))
        .await;
    assert_eq!(
        again.error(),
        (400, "FAILED_PRECONDITION", Some("step_id")),
        "{again:?}"
    );

    // Live: the rest of the run, its terminal event, then `end`, then the stream closes.
    let live = sse.rest(Duration::from_secs(30)).await;
    let end = live.last().expect("events after the task");
    assert_eq!(end.event, "end");
    assert_eq!(end.data, json!({"status": "succeeded"}));
    let terminal = &live[live.len() - 2];
    assert_eq!(
        (terminal.event.as_str(), &terminal.data["status"]),
        ("run", &json!("succeeded"))
    );
    assert!(
        live.iter()
            .any(|e| e.data["step_id"] == "process" && e.data["status"] == "succeeded"),
        "{live:#?}"
    );
    let mut last = seq(&waiting_seq);
    for e in live.iter().filter(|e| e.event != "end") {
        let s = seq(e.id.as_deref().expect("id"));
        assert!(s > last, "increasing sequences");
        last = s;
    }
    let run = http.ok(&format!("/v1/runs/{run_id}")).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["steps"][1]["completed_by"], "manager");
    // `process` has no input template: it gets (and echoes) the run input.
    assert_eq!(run["output"], json!({"process": {"amount": 42}}));
    assert_eq!(run["steps"][1]["output"], json!({"approved": true, "note": "fine"}));

    // Resume with Last-Event-ID: only the events after it, the same ones as live, then `end`.
    let mut resumed = http
        .sse(&format!("/v1/runs/{run_id}/events"), &[("last-event-id", &waiting_seq)])
        .await;
    let again = resumed.rest(Duration::from_secs(30)).await;
    let ids = |v: &[SseEvent]| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&live), "resumed: only the later events");
    assert_eq!(again.last().map(|e| e.event.as_str()), Some("end"));
    // gRPC's WatchRun takes the same resume point.
    let mut grpc = cluster
        .runs()
        .await
        .watch_run(baton_shared::proto::WatchRunRequest {
            run_id: run_id.clone(),
            after_sequence: waiting_seq.clone(),
            include_run: false,
        })
        .await
        .expect("watch")
        .into_inner();
    let mut grpc_ids = Vec::new();
    while let Some(ev) = grpc.message().await.expect("event") {
        grpc_ids.push(Some(ev.sequence));
    }
    let live_ids: Vec<Option<String>> = live.iter().filter(|e| e.event != "end").map(|e| e.id.clone()).collect();
    assert_eq!(grpc_ids, live_ids, "gRPC resumes at the same point");
    // Resuming after the terminal event: just `end`.
    let terminal_id = terminal.id.clone().expect("id");
    let mut after_end = http
        .sse(&format!("/v1/runs/{run_id}/events?after_sequence={terminal_id}"), &[])
        .await;
    let tail = after_end.rest(Duration::from_secs(30)).await;
    assert_eq!(tail.len(), 1, "{tail:#?}");
    assert_eq!(tail[0].event, "end");

    // Errors before the stream starts are JSON.
    let bad = http
        .send(
            Method::GET,
            &format!("/v1/runs/{run_id}/events?after_sequence=yesterday"),
            None,
            None,
        )
        .await;
    assert_eq!(
        bad.error(),
        (400, "INVALID_ARGUMENT", Some("after_sequence")),
        "{bad:?}"
    );
    let unknown = http
        .get("/v1/runs/00000000-0000-4000-8000-000000000000/events", None)
        .await;
    assert_eq!(unknown.error(), (404, "NOT_FOUND", Some("run_id")));
}

#[tokio::test(flavor = "multi_thread")]
async fn schedules_are_created_triggered_paused_and_deleted_over_http_with_their_ticks() {
    let metrics_port = free_port();
    let (_cluster, http) = start(
        "http-schedules",
        vec![
            ("BATON_MAX_PAYLOAD_BYTES".into(), "1000".into()),
            ("BATON_METRICS_ADDR".into(), format!("127.0.0.1:{metrics_port}")),
        ],
        vec![],
    )
    .await;
    http.post_ok("/v1/workflows", json!({"definition": SLOW})).await;
    let created = http
        .post_ok(
            "/v1/schedules",
            json!({"id": "nightly", "workflow": "slowpoke", "cron": "0 3 * * *", "input": {"ms": 1}}),
        )
        .await;
    assert_eq!(created["id"], "nightly");
    assert_eq!(created["input"], json!({"ms": 1}));
    assert_eq!(created["source"], "api");
    assert!(created["next_tick_at"].as_str().is_some(), "{created:#}");
    let bad = http
        .post(
            "/v1/schedules",
            None,
            json!({"workflow": "slowpoke", "cron": "every tuesday"}),
        )
        .await;
    assert_eq!(bad.error(), (400, "INVALID_ARGUMENT", Some("cron")), "{bad:?}");
    let tick = http.post_ok("/v1/schedules/nightly/trigger", json!({})).await;
    assert_eq!(tick["outcome"], "triggered");
    let ticks = http.ok("/v1/schedules/nightly/ticks?limit=10").await;
    assert_eq!(ticks["ticks"][0]["run_id"], tick["run_id"]);
    let run = http
        .ok(&format!("/v1/runs/{}", tick["run_id"].as_str().expect("run id")))
        .await;
    assert_eq!(run["workflow"], "slowpoke");
    let paused = http.post_ok("/v1/schedules/nightly/pause", json!({})).await;
    assert_eq!(paused["paused"], json!(true));
    let listed = http.ok("/v1/schedules?workflow=slowpoke").await;
    assert_eq!(listed["schedules"][0]["paused"], json!(true));
    let resumed = http
        .send(Method::POST, "/v1/schedules/nightly/resume", None, None)
        .await;
    assert_eq!(resumed.status, 200, "an empty body is `{{}}`: {resumed:?}");
    assert_eq!(resumed.body["paused"], json!(false));
    let deleted = http.send(Method::DELETE, "/v1/schedules/nightly", None, None).await;
    assert_eq!((deleted.status, &deleted.body), (200, &json!({})));
    let gone = http.get("/v1/schedules/nightly", None).await;
    assert_eq!(gone.error().0, 404, "{gone:?}");

    // A body over the gRPC message limit (max_payload_bytes + 1 MiB) is refused with 413, naming the body.
    let huge = json!({"workflow": "slowpoke", "cron": "0 3 * * *", "input": {"blob": "x".repeat(1_100_000)}});
    let refused = http.post("/v1/schedules", None, huge).await;
    assert_eq!(
        refused.error(),
        (413, "INVALID_ARGUMENT", Some("body")),
        "{:?}",
        refused.error()
    );
    // A refused body may be left partly unread, so the connection closes after the answer, which
    // says so: the client does not send the next request on it.
    assert!(refused.closes, "a 413 answer says Connection: close");
    // A client still writing its refused body when the answer is ready gets the 413 too, not a
    // reset: the coordinator reads the rest (up to 8 MiB, for 5 s) before it answers and closes.
    let slow = slow_post(&http.base, "/v1/schedules", 1_100_000, 12, Duration::from_millis(80)).await;
    assert!(slow.starts_with("HTTP/1.1 413"), "{}", &slow[..slow.len().min(300)]);
    assert!(slow.contains(r#""field":"body""#), "{slow}");
    let over = http
        .post(
            "/v1/schedules",
            None,
            json!({"workflow": "slowpoke", "cron": "0 3 * * *", "input": {"blob": "x".repeat(2000)}}),
        )
        .await;
    assert_eq!(over.error(), (400, "INVALID_ARGUMENT", Some("input")), "{over:?}");

    // Every request is counted by route and status.
    let text = scrape(metrics_port).await;
    let count = |route: &str, status: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("baton_http_requests_total{")
                    && l.contains(&format!("route=\"{route}\""))
                    && l.contains(&format!("status=\"{status}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(count("/v1/schedules/{id}/trigger", "200"), Some(1.0), "{text}");
    assert_eq!(count("/v1/schedules/{id}", "404"), Some(1.0), "{text}");
}

/// POSTs a body of `len` bytes (a JSON string) to `path` over a raw connection, in `chunks` writes
/// `pause` apart, then reads the whole answer. Panics if a write fails: the server reset the
/// connection before the client could finish.
async fn slow_post(base: &str, path: &str, len: usize, chunks: usize, pause: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("HTTP port");
    let body = format!("\"{}\"", "x".repeat(len.saturating_sub(2)));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("request head");
    let step = body.len().div_ceil(chunks);
    for (i, part) in body.as_bytes().chunks(step).enumerate() {
        tokio::time::sleep(pause).await;
        s.write_all(part)
            .await
            .unwrap_or_else(|e| panic!("write {i} of the body: {e} (the server reset the connection)"));
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer))
        .await
        .expect("an answer in 30 s")
        .expect("read the answer");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The coordinator's `/metrics` text.
async fn scrape(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("metrics port");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

const ADMIN: &str = "tok-admin-5f1c0e7d9b";
const OPERATOR: &str = "tok-operator-olga-8d3e5f";
const WORKER: &str = "tok-worker-7b1e4c9a0f";
const VIEWER: &str = "tok-viewer-3a8f6d2e1c";

#[tokio::test(flavor = "multi_thread")]
async fn the_http_api_takes_the_grpc_tokens_and_roles() {
    let tokens = [
        format!("admin:ada:{ADMIN}"),
        format!("operator:manager:{OPERATOR}"),
        format!("worker::{WORKER}"),
        format!("viewer:vic:{VIEWER}"),
    ]
    .join(",");
    let (mut cluster, http) = start(
        "http-auth",
        vec![("BATON_AUTH_TOKENS".into(), tokens)],
        vec![("BATON_TOKEN".into(), WORKER.into())],
    )
    .await;
    cluster.spawn_worker("w1", 2);

    // No token: 401; a viewer may read but not submit: 403, as over gRPC.
    let none = http.get("/v1/runs", None).await;
    assert_eq!(none.error().0, 401, "{none:?}");
    assert_eq!(none.error().1, "UNAUTHENTICATED");
    let wrong = http.get("/v1/runs", Some("tok-not-a-real-token-1234")).await;
    assert_eq!(wrong.error().0, 401);
    assert_eq!(http.get("/v1/runs", Some(VIEWER)).await.status, 200);
    let denied = http
        .post("/v1/workflows", Some(VIEWER), json!({"definition": APPROVAL}))
        .await;
    assert_eq!(denied.error(), (403, "PERMISSION_DENIED", None), "{denied:?}");
    let worker_reads = http.get("/v1/runs", Some(WORKER)).await;
    assert_eq!(worker_reads.error().0, 403, "a worker token reads nothing");
    // Health, the document and the console need no token.
    assert_eq!(http.get("/healthz", None).await.status, 200);
    assert_eq!(http.get("/v1/openapi.json", None).await.status, 200);

    let reg = http
        .post("/v1/workflows", Some(ADMIN), json!({"definition": APPROVAL}))
        .await;
    assert_eq!(reg.status, 200, "{reg:?}");
    let submitted = http
        .post("/v1/runs", Some(VIEWER), json!({"workflow": "expense"}))
        .await;
    assert_eq!(submitted.error().0, 403);
    let submitted = http
        .post(
            "/v1/runs",
            Some(OPERATOR),
            json!({"workflow": "expense", "input": {"amount": 1}}),
        )
        .await;
    assert_eq!(submitted.status, 200, "{submitted:?}");
    let run_id = submitted.body["run_id"].as_str().expect("run_id").to_string();

    // The events route also takes `?access_token=` (EventSource cannot set headers).
    let no_token = http.get(&format!("/v1/runs/{run_id}/events"), None).await;
    assert_eq!(no_token.error().0, 401);
    let mut sse = http
        .sse(&format!("/v1/runs/{run_id}/events?access_token={VIEWER}"), &[])
        .await;
    let first = sse.next(Duration::from_secs(30)).await.expect("an event");
    assert_eq!(first.event, "run");
    drop(sse);

    // The task is completed by the token's identity; naming someone else is refused.
    let start = Instant::now();
    loop {
        let t = http.get("/v1/tasks?status=open", Some(VIEWER)).await;
        if t.body["tasks"].as_array().is_some_and(|a| a.len() == 1) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no task: {t:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let complete = format!("/v1/tasks/{run_id}/approve/complete");
    let viewer = http
        .post(&complete, Some(VIEWER), json!({"data": {"approved": true}}))
        .await;
    assert_eq!(viewer.error().0, 403);
    let impostor = http
        .post(
            &complete,
            Some(OPERATOR),
            json!({"data": {"approved": true}, "user": "ada"}),
        )
        .await;
    assert_eq!(
        impostor.error(),
        (403, "PERMISSION_DENIED", Some("user")),
        "{impostor:?}"
    );
    let done = http
        .post(&complete, Some(OPERATOR), json!({"data": {"approved": true}}))
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.body["completed_by"], "manager", "the token's user");
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The CI venv's python (`BATON_CI_VENV`, made by `.ci/python-venv.sh`). Fails, never skips, when
/// it is missing, saying how to make it.
fn venv_python() -> PathBuf {
    let venv = std::env::var("BATON_CI_VENV").unwrap_or_default();
    assert!(
        !venv.is_empty(),
        "BATON_CI_VENV is not set: make the venv with `export BATON_CI_VENV=$(bash .ci/python-venv.sh)` (.ci/run \
         does this) and run the test again"
    );
    let python = PathBuf::from(venv).join("bin/python");
    assert!(
        python.exists(),
        "{} does not exist: make the venv with `export BATON_CI_VENV=$(bash .ci/python-venv.sh)`",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_validates_and_lists_exactly_the_routes() {
    let python = venv_python();
    let (_cluster, http) = start("http-openapi", vec![], vec![]).await;
    let doc = http.ok("/v1/openapi.json").await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{doc:#}");

    // openapi-spec-validator: the document is valid OpenAPI.
    let path = std::env::temp_dir().join(format!("baton-openapi-{}.json", std::process::id()));
    std::fs::write(&path, doc.to_string()).expect("write the document");
    let out = std::process::Command::new(&python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output()
        .expect("run openapi_spec_validator");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every operation of the document is a route of the server (a request to it is never the
    // router's "no route"), and the document's routes are the table of docs/http-api.md.
    let mut documented = BTreeSet::new();
    for (p, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if !["get", "post", "delete", "put", "patch"].contains(&method.as_str()) {
                continue;
            }
            documented.insert((method.to_uppercase(), p.clone()));
            let concrete = p
                .replace("{run_id}", "00000000-0000-4000-8000-000000000000")
                .replace("{step_id}", "s")
                .replace("{name}", "nosuch")
                .replace("{id}", "nosuch");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let body = (m == Method::POST).then(|| Bytes::from_static(b"{}"));
            let a = http.send(m.clone(), &concrete, None, body).await;
            let no_route = a.status == 405
                || a.body["message"]
                    .as_str()
                    .is_some_and(|msg| msg.starts_with("no route"));
            assert!(!no_route, "{m} {concrete} is documented but not routed: {a:?}");
            assert!(a.status < 500, "{m} {concrete}: {a:?}");
        }
    }
    let contract = std::fs::read_to_string(repo_root().join("docs/http-api.md")).expect("docs/http-api.md");
    let mut tabled = BTreeSet::new();
    for line in contract.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() >= 4 && ["GET", "POST", "DELETE"].contains(&cells[1]) {
            tabled.insert((cells[1].to_string(), cells[2].trim_matches('`').to_string()));
        }
    }
    assert_eq!(
        documented, tabled,
        "the OpenAPI document and the route table of docs/http-api.md differ"
    );
}

/// Percent-encodes the characters of an RFC 3339 time that a query string cannot carry as is.
fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}
