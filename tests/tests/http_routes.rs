//! What answers on the coordinator's HTTP port (issue 19): the console's page at `/` and under its
//! screens' paths, the API under `/v1`, and a 404 with the API's JSON error body for every other
//! path (`/metrics` used to answer the console's HTML with 200), naming what the port serves and
//! where metrics and gRPC are; a gRPC call sent there is a 404 too, not the console.
//!
//! Real coordinator, Redis and RabbitMQ; hyper's HTTP/1.1 client.

use std::time::{Duration, Instant};

use baton_tests::{Cluster, free_port};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::Value;

/// An HTTP answer: status, content type and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// One request with hyper's client.
async fn request(port: u16, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::new())).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("an answer within 30 s")
        .expect("an answer");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let raw = resp.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        content_type,
        body: String::from_utf8_lossy(&raw).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_outside_the_console_are_404_with_json_while_the_console_and_api_answer() {
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let cluster = Cluster::start("http-routes", &[("BATON_HTTP_ADDR", &http)]).await;
    let start = Instant::now();
    while request(port, Method::GET, "/healthz", &[]).await.status != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no /healthz within 30 s; see {}",
            cluster.log_path("coordinator").display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for path in ["/metrics", "/favicon.ico", "/v1", "/graphql", "/runsx/1"] {
        let a = request(port, Method::GET, path, &[]).await;
        assert_eq!(a.status, 404, "GET {path}: {a:?}");
        assert!(a.content_type.starts_with("application/json"), "GET {path}: {a:?}");
        let body = a.json();
        assert_eq!(body["code"], "NOT_FOUND", "GET {path}: {a:?}");
        assert_eq!(body["field"], "path", "GET {path}: {a:?}");
        let message = body["message"].as_str().unwrap_or("");
        assert!(
            message.contains(&format!("no route \"GET\" \"{path}\"")) && message.contains("this is Baton's HTTP port"),
            "GET {path}: {message}"
        );
    }
    let metrics = request(port, Method::GET, "/metrics", &[]).await.json();
    assert!(
        metrics["message"].as_str().is_some_and(|m| m.contains("metrics_addr")),
        "the 404 of /metrics says where metrics are: {metrics}"
    );
    // Unknown API paths keep their own 404.
    let a = request(port, Method::GET, "/v1/nonexistent", &[]).await;
    assert_eq!((a.status, a.json()["field"].as_str()), (404, Some("path")), "{a:?}");

    // A gRPC method's path on this port: 404 with JSON, never the console's page (with a gRPC
    // body, the edge refuses it first: 415, JSON too).
    let a = request(port, Method::POST, "/baton.v1.RunService/ListRuns", &[]).await;
    assert_eq!(a.status, 404, "{a:?}");
    assert!(a.content_type.starts_with("application/json"), "{a:?}");
    assert!(a.body.contains("gRPC API on its own port"), "{a:?}");
    let a = request(
        port,
        Method::POST,
        "/baton.v1.RunService/ListRuns",
        &[("content-type", "application/grpc")],
    )
    .await;
    assert!(
        a.status >= 400 && a.content_type.starts_with("application/json"),
        "{a:?}"
    );

    // The console: its root and its screens' paths (written without the `#`) serve the page.
    for path in [
        "/",
        "/index.html",
        "/runs",
        "/runs/0190b7c4-0000-7000-8000-000000000000",
        "/tasks/inbox",
    ] {
        let a = request(port, Method::GET, path, &[]).await;
        assert_eq!(a.status, 200, "GET {path}: {a:?}");
        assert!(a.content_type.starts_with("text/html"), "GET {path}: {a:?}");
        assert!(a.body.contains("Baton console"), "GET {path}: {a:?}");
    }
    let a = request(port, Method::GET, "/v1/openapi.json", &[]).await;
    assert_eq!(a.status, 200, "{a:?}");
}
