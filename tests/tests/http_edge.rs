//! The coordinator's HTTP and connection edge against hostile or careless clients (issue 17): slow
//! and silent connections are closed by the header-read and idle timeouts, connections over the caps
//! are refused and counted while ordinary calls succeed again once capacity frees; cross-site
//! requests (foreign `Origin`, foreign `Host` on a loopback bind, non-JSON bodies) are refused;
//! every error body is small JSON naming a field; `ListWorkflows` pages; `PublishEvent` checks
//! event names as definitions do; `/metrics` takes a token.
//!
//! Real coordinator, Redis and RabbitMQ; raw TCP clients for the slow connections and raw bytes,
//! hyper's HTTP/1.1 client for the rest.

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
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinSet,
};

/// A coordinator with the HTTP API on `http_port` and metrics on `metrics_port`.
struct Edge {
    cluster: Cluster,
    http_port: u16,
    metrics_port: u16,
}

async fn start(test: &str, env: &[(&str, &str)]) -> Edge {
    let (http_port, metrics_port) = (free_port(), free_port());
    let http = format!("127.0.0.1:{http_port}");
    let metrics = format!("127.0.0.1:{metrics_port}");
    let mut all: Vec<(&str, &str)> = vec![("BATON_HTTP_ADDR", &http), ("BATON_METRICS_ADDR", &metrics)];
    all.extend_from_slice(env);
    let cluster = Cluster::start(test, &all).await;
    Edge {
        cluster,
        http_port,
        metrics_port,
    }
}

/// An HTTP answer: status, headers and the body as JSON (`Null` when it is not JSON) and as bytes.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    body: Value,
    raw: Bytes,
}

/// One request with hyper's client; `Err` when the connection failed or closed without an answer.
async fn request(
    port: u16,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Answer, String> {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| "no answer in 30 s".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let raw = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Ok(Answer {
        status,
        headers,
        body,
        raw,
    })
}

/// Sends `bytes` on a fresh connection and reads the answer until the server closes it.
async fn raw(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The coordinator's `/metrics` text (`token`: the Bearer token to send).
async fn scrape(port: u16, token: Option<&str>) -> String {
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    raw(
        port,
        format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}\r\n").as_bytes(),
    )
    .await
}

/// The value of the sample `name{labels}` in a Prometheus text, if present.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// What happened to one slow client.
#[derive(Debug)]
enum Fate {
    /// The server closed it, this long after it connected.
    Closed(Duration),
    /// It was still open when the client gave up.
    Open,
}

/// A slow-loris client: connects, sends `head` (an unfinished request head), then one more byte
/// every `every` until the server closes the connection or `give_up` passes.
async fn slow_client(port: u16, head: &'static [u8], every: Duration, give_up: Duration) -> Fate {
    let started = Instant::now();
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return Fate::Closed(started.elapsed());
    };
    let _ = s.write_all(head).await;
    let mut buf = [0u8; 512];
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Fate::Closed(started.elapsed()),
                Ok(_) => {} // an answer (408, say): keep reading until the close
            },
            _ = tokio::time::sleep(every) => {
                if started.elapsed() > give_up {
                    return Fate::Open;
                }
                if s.write_all(b"x").await.is_err() {
                    return Fate::Closed(started.elapsed());
                }
            }
        }
    }
}

/// Polls `f` until it returns `Some` (an upper bound for "eventually"; panics after `within`).
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => assert!(start.elapsed() < within, "{what} not within {within:?}: last {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const HEADER_TIMEOUT_SECS: u64 = 4;

#[tokio::test(flavor = "multi_thread")]
async fn slow_http_clients_are_closed_by_the_header_timeout_and_over_the_caps_connections_are_refused_and_counted() {
    let http_cap = 100usize;
    let grpc_cap = 20usize;
    let (hc, gc) = (http_cap.to_string(), grpc_cap.to_string());
    let edge = start(
        "slowloris",
        &[
            ("BATON_HTTP_HEADER_READ_TIMEOUT", &format!("{HEADER_TIMEOUT_SECS}s")),
            ("BATON_HTTP_MAX_CONNECTIONS", &hc),
            ("BATON_GRPC_MAX_CONNECTIONS", &gc),
        ],
    )
    .await;
    let header_timeout = Duration::from_secs(HEADER_TIMEOUT_SECS);
    let port = edge.http_port;

    // 1. Fill the HTTP cap with slow clients: a request head, then one byte every 500 ms.
    let slow = http_cap + 30;
    let mut clients = JoinSet::new();
    for _ in 0..slow {
        clients.spawn(slow_client(
            port,
            b"GET /v1/runs HTTP/1.1\r\nHost: x\r\nX-Slow: ",
            Duration::from_millis(500),
            Duration::from_secs(60),
        ));
    }
    let mut fates = Vec::new();
    while let Some(f) = clients.join_next().await {
        fates.push(f.expect("client task"));
    }
    // Every one was closed: the admitted ones by the header-read timeout (never before it), the
    // ones over the cap at once.
    let open = fates.iter().filter(|f| matches!(f, Fate::Open)).count();
    assert_eq!(open, 0, "slow clients still open after 60 s: {fates:?}");
    let closed: Vec<Duration> = fates
        .iter()
        .filter_map(|f| match f {
            Fate::Closed(d) => Some(*d),
            Fate::Open => None,
        })
        .collect();
    let timed_out: Vec<&Duration> = closed.iter().filter(|d| **d >= header_timeout).collect();
    let refused = closed.len() - timed_out.len();
    assert!(
        timed_out.len() <= http_cap,
        "more connections than the cap were held: {} held to the timeout",
        timed_out.len()
    );
    assert!(
        refused >= slow - http_cap,
        "{refused} connections closed before the header timeout; at least {} were over the cap",
        slow - http_cap
    );
    let longest = timed_out.iter().map(|d| **d).max().unwrap_or_default();
    eprintln!(
        "slow clients: {} held and closed by the {HEADER_TIMEOUT_SECS} s header timeout (the last after {longest:?}), \
         {refused} refused",
        timed_out.len()
    );
    assert!(
        longest < header_timeout + Duration::from_secs(10),
        "a slow client was held {longest:?}, past the header timeout of {header_timeout:?}"
    );

    // 2. Capacity freed: an ordinary request succeeds.
    let ok = eventually(Duration::from_secs(30), "GET /v1/runs", || async {
        let a = request(port, Method::GET, "/v1/runs", &[], None).await?;
        if a.status == 200 { Ok(a) } else { Err(format!("{a:?}")) }
    })
    .await;
    assert!(ok.body["runs"].is_array(), "{ok:?}");

    // 3. gRPC: silent connections fill the cap; a new call is refused while they are held and
    // succeeds once they are gone.
    let grpc_port: u16 = edge
        .cluster
        .addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("grpc port");
    let mut silent = Vec::new();
    for _ in 0..grpc_cap + 10 {
        silent.push(TcpStream::connect(("127.0.0.1", grpc_port)).await.expect("connect"));
    }
    // Over the cap the server closes at once: at least 10 of them see the close.
    let mut seen_closed = 0;
    for s in &mut silent {
        let mut b = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(300), s.read(&mut b)).await {
            seen_closed += 1;
        }
    }
    assert!(
        seen_closed >= 10,
        "only {seen_closed} gRPC connections over the cap were closed"
    );
    let at_cap = tokio::time::timeout(Duration::from_secs(20), edge.cluster.health("")).await;
    assert!(
        !matches!(at_cap, Ok(Ok(_))),
        "a gRPC call succeeded while {grpc_cap} silent connections held the cap: {at_cap:?}"
    );
    drop(silent);
    eventually(Duration::from_secs(30), "gRPC health", || async {
        edge.cluster.health("").await.map(|_| ())
    })
    .await;

    // 4. The metrics count it.
    let text = scrape(edge.metrics_port, None).await;
    let http_refused = sample(&text, "baton_connections_refused_total{listener=\"http\"}").unwrap_or(0.0);
    let grpc_refused = sample(&text, "baton_connections_refused_total{listener=\"grpc\"}").unwrap_or(0.0);
    assert!(
        http_refused >= (slow - http_cap) as f64,
        "http refused {http_refused}:\n{text}"
    );
    assert!(grpc_refused >= 10.0, "grpc refused {grpc_refused}:\n{text}");
    assert!(
        sample(&text, "baton_connections{listener=\"http\"}").is_some_and(|n| n <= http_cap as f64),
        "{text}"
    );
    let log = std::fs::read_to_string(edge.cluster.log_path("coordinator")).unwrap_or_default();
    assert!(log.contains("connection cap reached"), "no log line about the cap");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_grpc_connection_is_closed_after_the_idle_timeout_and_a_silent_http_one_after_the_header_timeout() {
    let edge = start(
        "grpcidle",
        &[
            ("BATON_GRPC_KEEPALIVE_INTERVAL", "1s"),
            ("BATON_GRPC_IDLE_TIMEOUT", "3s"),
            ("BATON_HTTP_HEADER_READ_TIMEOUT", "2s"),
        ],
    )
    .await;
    let idle = Duration::from_secs(3);
    let grpc_port: u16 = edge
        .cluster
        .addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("grpc port");
    // A live client: one channel, used, left idle past the timeout, used again.
    let mut workflows = edge.cluster.workflows().await;
    workflows
        .list_workflows(baton_shared::proto::ListWorkflowsRequest::default())
        .await
        .expect("list");

    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", grpc_port)).await.expect("connect");
    let mut b = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    let held = started.elapsed();
    assert!(r.is_ok(), "a silent gRPC connection was held for 60 s");
    assert!(
        held >= idle - Duration::from_millis(100),
        "closed after {held:?}, before the idle timeout"
    );
    eprintln!("a silent gRPC connection was closed after {held:?} (idle timeout {idle:?})");

    // The same for HTTP: a connection that sends nothing is closed by the header-read timeout.
    let started = Instant::now();
    let fate = slow_client(edge.http_port, b"", Duration::from_secs(3600), Duration::from_secs(60)).await;
    eprintln!("a silent HTTP connection: {fate:?} (header timeout 2 s)");
    assert!(
        matches!(fate, Fate::Closed(d) if d >= Duration::from_millis(1900)),
        "{fate:?} after {:?}",
        started.elapsed()
    );

    workflows
        .list_workflows(baton_shared::proto::ListWorkflowsRequest::default())
        .await
        .expect("list after idle");
}

const ECHO: &str = r#"
name: edge-echo
version: 1
steps:
  - {id: a, handler: echo}
"#;

/// How many runs the HTTP API lists.
async fn run_count(port: u16) -> usize {
    let a = request(port, Method::GET, "/v1/runs", &[], None)
        .await
        .expect("list runs");
    a.body["runs"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_site_requests_are_refused_while_the_consoles_own_origin_and_configured_ones_work() {
    let edge = start(
        "crosssite",
        &[(
            "BATON_HTTP_ALLOWED_ORIGINS",
            "https://console.example, http://dev.example:3000",
        )],
    )
    .await;
    edge.cluster.register(ECHO).await;
    let port = edge.http_port;
    let own = format!("http://127.0.0.1:{port}");
    let body = br#"{"workflow": "edge-echo", "input": {}}"#;

    // The probe's request: a foreign page posting text/plain (no CORS preflight needed).
    let evil = request(
        port,
        Method::POST,
        "/v1/runs",
        &[("origin", "http://evil.example"), ("content-type", "text/plain")],
        Some(body),
    )
    .await
    .expect("answer");
    assert_eq!(
        (evil.status, &evil.body["field"]),
        (403, &Value::from("origin")),
        "{evil:?}"
    );
    // Even as JSON, the foreign origin is refused; so is a read, and an event stream.
    for (method, path, b) in [
        (Method::POST, "/v1/runs", Some(&body[..])),
        (Method::GET, "/v1/runs", None),
        (
            Method::GET,
            "/v1/runs/00000000-0000-0000-0000-000000000000/events",
            None,
        ),
    ] {
        let a = request(
            port,
            method.clone(),
            path,
            &[("origin", "http://evil.example"), ("content-type", "application/json")],
            b,
        )
        .await
        .expect("answer");
        assert_eq!(a.status, 403, "{method} {path}: {a:?}");
        assert!(!a.headers.contains_key("access-control-allow-origin"), "{a:?}");
    }
    // Without an Origin (curl), a body must still say it is JSON.
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let headers: Vec<(&str, &str)> = ct.map(|c| ("content-type", c)).into_iter().collect();
        let a = request(port, Method::POST, "/v1/runs", &headers, Some(body))
            .await
            .expect("answer");
        assert_eq!(
            (a.status, a.body["code"].as_str(), a.body["field"].as_str()),
            (415, Some("INVALID_ARGUMENT"), Some("content-type")),
            "{ct:?}: {a:?}"
        );
    }
    // A DNS-rebinding page: the coordinator listens on loopback, so a foreign Host is refused.
    let rebound = request(
        port,
        Method::GET,
        "/v1/runs",
        &[("host", &format!("evil.example:{port}"))],
        None,
    )
    .await
    .expect("answer");
    assert_eq!(
        (rebound.status, &rebound.body["field"]),
        (403, &Value::from("host")),
        "{rebound:?}"
    );
    let console = request(port, Method::GET, "/", &[("host", "evil.example")], None)
        .await
        .expect("answer");
    assert_eq!(console.status, 403, "the console too: {console:?}");
    assert_eq!(run_count(port).await, 0, "a refused request created a run");

    // The console's own origin, its loopback equivalents and the configured origins work.
    for origin in [
        own.as_str(),
        &format!("http://localhost:{port}"),
        &format!("http://[::1]:{port}"),
        "https://console.example",
        "http://dev.example:3000",
    ] {
        let a = request(
            port,
            Method::POST,
            "/v1/runs",
            &[("origin", origin), ("content-type", "application/json; charset=utf-8")],
            Some(body),
        )
        .await
        .expect("answer");
        assert_eq!(a.status, 200, "{origin}: {a:?}");
        assert!(!a.headers.contains_key("access-control-allow-origin"), "{a:?}");
    }
    for host in [
        "localhost",
        &format!("localhost:{port}"),
        &format!("[::1]:{port}"),
        "127.0.0.1",
    ] {
        let a = request(port, Method::GET, "/v1/runs", &[("host", host)], None)
            .await
            .expect("answer");
        assert_eq!(a.status, 200, "{host}: {a:?}");
    }
    // A bodyless POST needs no content type (the console's cancel, curl -X POST).
    assert_eq!(run_count(port).await, 5);
    let cancel = request(
        port,
        Method::POST,
        "/v1/runs/00000000-0000-0000-0000-000000000000/cancel",
        &[],
        None,
    )
    .await
    .expect("answer");
    assert_ne!(cancel.status, 415, "{cancel:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_http_error_is_a_small_json_body_naming_a_field() {
    let edge = start("errorbodies", &[("BATON_MAX_PAYLOAD_BYTES", "1000")]).await;
    let port = edge.http_port;
    let json = [("content-type", "application/json")];
    let check = |what: &str, a: &Answer, status: u16, field: &str| {
        assert_eq!(a.status, status, "{what}: {a:?}");
        assert!(a.raw.len() < 2048, "{what}: a body of {} bytes", a.raw.len());
        assert!(
            a.body["code"].is_string() && a.body["message"].is_string(),
            "{what}: {a:?}"
        );
        assert_eq!(a.body["field"].as_str(), Some(field), "{what}: {a:?}");
    };

    // The probe's 1 MiB key: 400, small, naming the (cut) key.
    let key = "k".repeat(1 << 20);
    let big = format!("{{\"{key}\": 1}}");
    let a = request(port, Method::POST, "/v1/runs", &json, Some(big.as_bytes()))
        .await
        .expect("answer");
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.raw.len() < 2048, "a body of {} bytes", a.raw.len());
    let field = a.body["field"].as_str().expect("a field");
    assert!(field.starts_with("kkkk") && field.len() <= 210, "{field}");
    // Long values in a query parameter, a query and a path.
    let long = "v".repeat(2_000);
    let a = request(port, Method::GET, &format!("/v1/runs?workflow={long}"), &[], None)
        .await
        .expect("answer");
    check("long query value", &a, 400, "workflow");
    let long = "v".repeat(60_000);
    let a = request(port, Method::GET, &format!("/v1/runs?workflow={long}"), &[], None)
        .await
        .expect("answer");
    check("long query", &a, 400, "query");
    let a = request(port, Method::GET, &format!("/v1/runs/{long}"), &[], None)
        .await
        .expect("answer");
    assert!(a.raw.len() < 2048 && a.status == 400, "long run id: {a:?}");
    // Headers over the bound: 431 with JSON.
    let many: Vec<(String, String)> = (0..150).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let a = request(port, Method::GET, "/v1/runs", &many, None)
        .await
        .expect("answer");
    check("150 headers", &a, 431, "headers");
    let huge = "h".repeat(70_000);
    let a = request(port, Method::GET, "/v1/runs", &[("x-huge", &huge)], None)
        .await
        .expect("answer");
    check("70 kB header", &a, 431, "headers");
    // A method a route does not take: 405 with JSON; no route under /v1: 404 with JSON.
    let a = request(port, Method::DELETE, "/v1/runs", &[], None)
        .await
        .expect("answer");
    check("DELETE /v1/runs", &a, 405, "method");
    let a = request(port, Method::PUT, "/v1/workflows", &json, Some(b"{}"))
        .await
        .expect("answer");
    check("PUT /v1/workflows", &a, 405, "method");
    let a = request(port, Method::GET, "/v1/nothing/here", &[], None)
        .await
        .expect("answer");
    check("no route", &a, 404, "path");
    // A body over the limit: 413 with JSON.
    let over = format!(
        "{{\"workflow\": \"x\", \"input\": {{\"b\": \"{}\"}}}}",
        "x".repeat(1_100_000)
    );
    let a = request(port, Method::POST, "/v1/runs", &json, Some(over.as_bytes()))
        .await
        .expect("answer");
    check("1.1 MB body", &a, 413, "body");
    // Undecodable bytes: percent-encoded non-UTF-8 in the path and the query, raw bytes in a body.
    let a = request(port, Method::GET, "/v1/runs/%FF%FE", &[], None)
        .await
        .expect("answer");
    check("non-UTF-8 path", &a, 400, "path");
    let a = request(port, Method::GET, "/v1/runs?workflow=%FF", &[], None)
        .await
        .expect("answer");
    assert!(
        a.status == 400 && a.body["field"].is_string() && a.raw.len() < 2048,
        "non-UTF-8 query: {a:?}"
    );
    let a = request(port, Method::POST, "/v1/runs", &json, Some(b"\xff\xfe{\x00"))
        .await
        .expect("answer");
    check("raw bytes body", &a, 400, "body");
}

#[tokio::test(flavor = "multi_thread")]
async fn workflows_are_listed_a_page_at_a_time_and_event_names_are_checked_as_definitions_check_them() {
    let edge = start("smaller", &[("BATON_METRICS_TOKEN", "metrics-secret-1")]).await;
    let port = edge.http_port;
    for i in 0..7 {
        edge.cluster
            .register(&format!(
                "name: pw-{i}\nversion: 1\nsteps:\n  - {{id: a, handler: echo}}\n"
            ))
            .await;
    }
    // gRPC: pages of 3 follow each other in name order, and end.
    let mut wf = edge.cluster.workflows().await;
    let (mut names, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = wf
            .list_workflows(baton_shared::proto::ListWorkflowsRequest {
                limit: 3,
                page_token: token.clone(),
            })
            .await
            .expect("list")
            .into_inner();
        assert!(page.workflows.len() <= 3);
        names.extend(page.workflows.into_iter().map(|w| w.name));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let want: Vec<String> = (0..7).map(|i| format!("pw-{i}")).collect();
    assert_eq!((names, pages), (want, 3));
    let bad = wf
        .list_workflows(baton_shared::proto::ListWorkflowsRequest {
            limit: 3,
            page_token: "not a token\n".into(),
        })
        .await
        .expect_err("a bad token");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().starts_with("page_token: "), "{bad:?}");
    // HTTP: ?limit= and ?page_token=.
    let first = request(port, Method::GET, "/v1/workflows?limit=4", &[], None)
        .await
        .expect("answer");
    assert_eq!(first.body["workflows"].as_array().map(Vec::len), Some(4), "{first:?}");
    let token = first.body["next_page_token"].as_str().expect("token").to_string();
    let rest = request(
        port,
        Method::GET,
        &format!("/v1/workflows?limit=4&page_token={token}"),
        &[],
        None,
    )
    .await
    .expect("answer");
    assert_eq!(rest.body["workflows"].as_array().map(Vec::len), Some(3), "{rest:?}");
    assert_eq!(rest.body["next_page_token"], "");

    // PublishEvent refuses the names a definition refuses (NUL, newline, spaces).
    let mut events = edge.cluster.events().await;
    for name in ["paid\0", "paid\nx", "a b", ""] {
        let e = events
            .publish_event(baton_shared::proto::PublishEventRequest {
                name: name.into(),
                key: "k".into(),
                payload_json: "{}".into(),
            })
            .await
            .expect_err(name);
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{name:?}: {e:?}");
        assert!(e.message().starts_with("name: "), "{e:?}");
    }
    let defined = baton_shared::definition::WorkflowDefinition::parse(
        "name: w\nversion: 1\nsteps:\n  - {id: e, wait_for_event: {event: \"paid\\nx\", key: input.k}}\n",
    );
    assert!(defined.is_err(), "the definition takes the same name");
    events
        .publish_event(baton_shared::proto::PublishEventRequest {
            name: "order.paid:v1/x".into(),
            key: "k".into(),
            payload_json: "{}".into(),
        })
        .await
        .expect("a good name");

    // /metrics asks for its token.
    let none = scrape(edge.metrics_port, None).await;
    assert!(none.starts_with("HTTP/1.1 401"), "{none}");
    let wrong = scrape(edge.metrics_port, Some("nope")).await;
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let right = scrape(edge.metrics_port, Some("metrics-secret-1")).await;
    assert!(
        right.starts_with("HTTP/1.1 200") && right.contains("baton_http_requests_total"),
        "{right}"
    );
}
