//! The OpenAPI document and the server agree (issue 17 item 9c): for each constrained request
//! field, a value at the document's limit is valid under the served schema and the server takes it
//! (no 400), and a value past the limit is invalid under the schema and the server refuses it with
//! 400 naming the field. The schemas are read from the served `/v1/openapi.json` and checked with
//! the `jsonschema` crate; the requests go through the real HTTP API.

use std::time::Duration;

use baton_tests::{Cluster, free_port};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::{Value, json};

const WORKFLOW: &str = r#"
name: contract-echo
version: 1
steps:
  - {id: a, handler: echo}
"#;

/// One request: the status and the body as JSON.
async fn call(port: u16, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(60), client.request(req))
        .await
        .expect("an answer within 60 s")
        .expect("an answer");
    let status = resp.status().as_u16();
    let raw = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&raw).unwrap_or(Value::Null))
}

/// The schema a `$ref` names, or the schema itself.
fn resolve(doc: &Value, schema: &Value) -> Value {
    match schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        Some(name) => doc["components"]["schemas"][name].clone(),
        None => schema.clone(),
    }
}

/// Where a field's schema sits in the document.
#[derive(Clone, Copy)]
enum At {
    /// A property of a component schema (a request body).
    Body(&'static str, &'static str),
    /// A parameter of an operation: path, method, name.
    Param(&'static str, &'static str, &'static str),
}

fn schema_of(doc: &Value, at: At) -> Value {
    match at {
        At::Body(schema, field) => resolve(doc, &doc["components"]["schemas"][schema]["properties"][field]),
        At::Param(path, method, name) => {
            let params = doc["paths"][path][method]["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let p = params
                .iter()
                .find(|p| p["name"] == name)
                .cloned()
                .unwrap_or(Value::Null);
            resolve(doc, &p["schema"])
        }
    }
}

/// One row: the field, a value, the request that carries it, and whether it is within the rule.
struct Case {
    field: &'static str,
    at: At,
    value: Value,
    method: Method,
    path: String,
    body: Option<Value>,
    valid: bool,
}

fn case(
    field: &'static str,
    at: At,
    value: Value,
    method: Method,
    path: String,
    body: Option<Value>,
    valid: bool,
) -> Case {
    Case {
        field,
        at,
        value,
        method,
        path,
        body,
        valid,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_constrained_field_is_refused_past_the_documents_limit_and_taken_at_it() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cluster = Cluster::start("openapi-contract", &[("BATON_HTTP_ADDR", &addr)]).await;
    cluster.register(WORKFLOW).await;
    let (status, doc) = call(port, Method::GET, "/v1/openapi.json", None).await;
    assert_eq!(status, 200);

    let uuid = "0b8f1a52-7f3c-4c1e-9a7d-2f6f0d1c9e11";
    let s = |n: usize, c: char| c.to_string().repeat(n);
    let submit = |field: &str, v: &Value| {
        let mut b = json!({"workflow": "contract-echo", "input": {}});
        b[field] = v.clone();
        Some(b)
    };
    let event = |field: &str, v: &Value| {
        let mut b = json!({"name": "contract.event", "key": "k"});
        b[field] = v.clone();
        Some(b)
    };
    let schedule = |field: &str, v: &Value| {
        let mut b = json!({"workflow": "contract-echo", "cron": "0 0 1 1 *"});
        b[field] = v.clone();
        Some(b)
    };
    let get = |path: String| (Method::GET, path, None);
    let mut cases = Vec::new();
    let mut add = |field, at, value: Value, (method, path, body): (Method, String, Option<Value>), valid| {
        cases.push(case(field, at, value, method, path, body, valid));
    };

    // Run ids: a UUID; anything else is refused before any look-up.
    let run_id = At::Param("/v1/runs/{run_id}", "get", "run_id");
    add("run_id", run_id, json!(uuid), get(format!("/v1/runs/{uuid}")), true);
    add(
        "run_id",
        run_id,
        json!("not-a-uuid"),
        get("/v1/runs/not-a-uuid".into()),
        false,
    );
    let parent = At::Param("/v1/runs", "get", "parent_run_id");
    add(
        "parent_run_id",
        parent,
        json!(uuid),
        get(format!("/v1/runs?parent_run_id={uuid}")),
        true,
    );
    add(
        "parent_run_id",
        parent,
        json!("x1"),
        get("/v1/runs?parent_run_id=x1".into()),
        false,
    );
    // Workflow names: 1 to 128 of [A-Za-z0-9_.-].
    let wf = At::Body("SubmitRunBody", "workflow");
    for (v, ok) in [(s(128, 'w'), true), (s(129, 'w'), false), ("a b".into(), false)] {
        let v = json!(v);
        add(
            "workflow",
            wf,
            v.clone(),
            (Method::POST, "/v1/runs".into(), submit("workflow", &v)),
            ok,
        );
    }
    // Idempotency keys: at most 1024 bytes.
    let key = At::Body("SubmitRunBody", "idempotency_key");
    for (n, ok) in [(1024, true), (1025, false)] {
        let v = json!(s(n, 'k'));
        add(
            "idempotency_key",
            key,
            v.clone(),
            (Method::POST, "/v1/runs".into(), submit("idempotency_key", &v)),
            ok,
        );
    }
    // Run status filter: an enum.
    let status_at = At::Param("/v1/runs", "get", "status");
    add(
        "status",
        status_at,
        json!("timed_out"),
        get("/v1/runs?status=timed_out".into()),
        true,
    );
    add(
        "status",
        status_at,
        json!("RUNNING"),
        get("/v1/runs?status=RUNNING".into()),
        false,
    );
    // Limits: 1 to 1000.
    let limit = At::Param("/v1/runs", "get", "limit");
    add("limit", limit, json!(1000), get("/v1/runs?limit=1000".into()), true);
    add("limit", limit, json!(1001), get("/v1/runs?limit=1001".into()), false);
    add("limit", limit, json!(0), get("/v1/runs?limit=0".into()), false);
    // Task status filter: an enum.
    let task_status = At::Param("/v1/tasks", "get", "status");
    add(
        "status",
        task_status,
        json!("open"),
        get("/v1/tasks?status=open".into()),
        true,
    );
    add(
        "status",
        task_status,
        json!("done"),
        get("/v1/tasks?status=done".into()),
        false,
    );
    // Event names: 1 to 128 of [A-Za-z0-9_.:/-]; keys at most 1024 bytes.
    let name = At::Body("PublishEventBody", "name");
    for (v, ok) in [
        (s(128, 'e'), true),
        (s(129, 'e'), false),
        ("a\nb".into(), false),
        ("a\u{0}b".into(), false),
    ] {
        let v = json!(v);
        add(
            "name",
            name,
            v.clone(),
            (Method::POST, "/v1/events".into(), event("name", &v)),
            ok,
        );
    }
    let ekey = At::Body("PublishEventBody", "key");
    for (n, ok) in [(1024, true), (1025, false)] {
        let v = json!(s(n, 'k'));
        add(
            "key",
            ekey,
            v.clone(),
            (Method::POST, "/v1/events".into(), event("key", &v)),
            ok,
        );
    }
    // Human task completion: step id and user at most 200 bytes.
    let step = At::Param("/v1/tasks/{run_id}/{step_id}/complete", "post", "step_id");
    for (n, ok) in [(200, true), (201, false)] {
        let path = format!("/v1/tasks/{uuid}/{}/complete", s(n, 's'));
        add(
            "step_id",
            step,
            json!(s(n, 's')),
            (Method::POST, path, Some(json!({"data": {}, "user": "ann"}))),
            ok,
        );
    }
    let user = At::Body("CompleteTaskBody", "user");
    for (n, ok) in [(200, true), (201, false)] {
        let v = json!(s(n, 'u'));
        let path = format!("/v1/tasks/{uuid}/approve/complete");
        add(
            "user",
            user,
            v.clone(),
            (Method::POST, path, Some(json!({"data": {}, "user": v}))),
            ok,
        );
    }
    // Step logs: `limit` 1 to 10,000, `attempt` from 1, `step` at most 200 bytes.
    let logs_limit = At::Param("/v1/runs/{run_id}/logs", "get", "limit");
    for (n, ok) in [(10_000, true), (10_001, false), (0, false)] {
        add(
            "limit",
            logs_limit,
            json!(n),
            get(format!("/v1/runs/{uuid}/logs?limit={n}")),
            ok,
        );
    }
    let logs_attempt = At::Param("/v1/runs/{run_id}/logs", "get", "attempt");
    for (n, ok) in [(1, true), (0, false)] {
        let path = format!("/v1/runs/{uuid}/logs?step=a&attempt={n}");
        add("attempt", logs_attempt, json!(n), get(path), ok);
    }
    let logs_step = At::Param("/v1/runs/{run_id}/logs", "get", "step");
    for (n, ok) in [(200, true), (201, false)] {
        let path = format!("/v1/runs/{uuid}/logs?step={}", s(n, 's'));
        add("step", logs_step, json!(s(n, 's')), get(path), ok);
    }
    // Cancel reason: at most 4096 bytes.
    let reason = At::Body("CancelRunBody", "reason");
    for (n, ok) in [(4096, true), (4097, false)] {
        let v = json!(s(n, 'r'));
        let path = format!("/v1/runs/{uuid}/cancel");
        add(
            "reason",
            reason,
            v.clone(),
            (Method::POST, path, Some(json!({"reason": v}))),
            ok,
        );
    }
    // Schedules: id pattern, overlap enum, catch-up window maximum, time zone length.
    let id = At::Body("CreateScheduleBody", "id");
    for (v, ok) in [(s(200, 'i'), true), (s(201, 'i'), false), ("a b".into(), false)] {
        let v = json!(v);
        add(
            "id",
            id,
            v.clone(),
            (Method::POST, "/v1/schedules".into(), schedule("id", &v)),
            ok,
        );
    }
    let overlap = At::Body("CreateScheduleBody", "overlap");
    for (v, ok) in [("buffer_one", true), ("cancel_other", true), ("sometimes", false)] {
        let v = json!(v);
        add(
            "overlap",
            overlap,
            v.clone(),
            (Method::POST, "/v1/schedules".into(), schedule("overlap", &v)),
            ok,
        );
    }
    let window = At::Body("CreateScheduleBody", "catchup_window_ms");
    let max_window = 30 * 86_400 * 1000_u64;
    for (n, ok) in [(max_window, true), (max_window + 1, false)] {
        let v = json!(n);
        let body = schedule("catchup_window_ms", &v);
        add(
            "catchup_window_ms",
            window,
            v,
            (Method::POST, "/v1/schedules".into(), body),
            ok,
        );
    }
    let tz = At::Body("CreateScheduleBody", "timezone");
    let v = json!(s(65, 'z'));
    add(
        "timezone",
        tz,
        v.clone(),
        (Method::POST, "/v1/schedules".into(), schedule("timezone", &v)),
        false,
    );

    let mut wrong = Vec::new();
    for c in &cases {
        let schema = schema_of(&doc, c.at);
        assert!(schema.is_object(), "{}: no schema in the document", c.field);
        let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
        let schema_says = validator.is_valid(&c.value);
        let (status, body) = call(port, c.method.clone(), &c.path, c.body.as_ref()).await;
        let server_refused = status == 400 && body["code"] == "INVALID_ARGUMENT";
        let shown: String = c.value.to_string().chars().take(40).collect();
        if schema_says != c.valid {
            wrong.push(format!(
                "{} = {shown}: the schema says valid={schema_says}, expected {}",
                c.field, c.valid
            ));
        }
        if server_refused == c.valid {
            wrong.push(format!("{} = {shown}: the server answered {status} {body}", c.field));
        }
        if !c.valid && body["field"].as_str().is_some_and(|f| !f.starts_with(c.field)) {
            wrong.push(format!(
                "{} = {shown}: the error names {} instead",
                c.field, body["field"]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the document and the server disagree:\n{}",
        wrong.join("\n")
    );
    drop(cluster);
}
