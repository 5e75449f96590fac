//! The `baton` binary at the edge (issue 8): addresses it must refuse, a port where no Baton
//! coordinator answers, errors under `-o json`, and an idempotency key reused with another input.
//! A real coordinator runs in this process over the real Redis and RabbitMQ.

use std::{process::Command, time::Duration};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Runs `baton --addr ADDR ARGS`; returns (exit code, stdout, stderr).
async fn baton(addr: &str, args: &[&str]) -> (i32, String, String) {
    let addr = addr.to_string();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("--addr")
            .arg(&addr)
            .args(&args)
            .env_remove("BATON_ADDR")
            .output()
            .expect("run baton");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

/// A coordinator serving a namespace of its own, until dropped.
struct Coordinator {
    addr: String,
    namespace: String,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Coordinator {
    /// Starts one and waits until its gRPC health answers SERVING.
    async fn start(test: &str) -> Self {
        baton_tests::ensure_services();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos();
        let namespace = format!("t-cli-{test}-{:x}{nanos:x}", std::process::id());
        let port = free_port();
        let config = baton_coordinator::CoordinatorConfig {
            listen: format!("127.0.0.1:{port}").parse().expect("listen address"),
            namespace: namespace.clone(),
            timer_poll_interval: Duration::from_millis(50),
            ..Default::default()
        };
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        tokio::spawn(baton_coordinator::serve(config, async move {
            let _ = rx.changed().await;
        }));
        let addr = format!("http://127.0.0.1:{port}");
        let channel = tonic::transport::Channel::from_shared(addr.clone())
            .expect("address")
            .connect_lazy();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let start = std::time::Instant::now();
        loop {
            let answer = health
                .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
                .await;
            if answer.is_ok_and(|r| r.into_inner().status == 1) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "the coordinator did not serve within 90 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { addr, namespace, stop }
    }

    async fn stop(self, handlers: &[&str]) {
        let _ = self.stop.send(true);
        let handlers: Vec<String> = handlers.iter().map(|h| h.to_string()).collect();
        baton_tests::cleanup_namespace(&self.namespace, &handlers).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test]
async fn https_and_unknown_schemes_are_refused_and_never_downgraded() {
    let (code, out, err) = baton("https://127.0.0.1:1", &["run", "get", "x"]).await;
    assert_eq!(code, 2, "{out}{err}");
    // TLS is supported now: nothing listens there, and the error names the https:// address
    // (the CLI never retries it in plaintext).
    assert!(
        err.starts_with("error: cannot connect to the coordinator at https://127.0.0.1:1"),
        "{err}"
    );

    let (code, _, err) = baton("ftp://127.0.0.1:1", &["run", "get", "x"]).await;
    assert_eq!(code, 2);
    assert!(err.starts_with("error: unsupported scheme ftp://"), "{err}");
}

/// A server on a free port that answers every connection with `reply` (then closes it), or
/// says nothing and keeps it open when `reply` is `None`. Answers its address.
async fn impostor(reply: Option<&'static [u8]>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_millis(500), socket.read(&mut buf)).await;
            match reply {
                Some(bytes) => {
                    let _ = socket.write_all(bytes).await;
                    let _ = socket.shutdown().await;
                }
                None => held.push(socket),
            }
        }
    });
    addr
}

#[tokio::test]
async fn a_port_where_no_baton_coordinator_answers_is_named_as_such() {
    let http1 = impostor(Some(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ))
    .await;
    let (code, out, err) = baton(&http1, &["run", "get", "0190b7c4-0000-7000-8000-000000000000"]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.starts_with(&format!("error: no Baton coordinator answers at {http1}")),
        "{err}"
    );
    assert!(!err.contains("h2 protocol error"), "{err}");

    let silent = impostor(None).await;
    let (code, _, err) = baton(&silent, &["workflow", "list"]).await;
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!("error: no Baton coordinator answers at {silent}")),
        "{err}"
    );

    let (code, out, err) = baton(&http1, &["-o", "json", "workflow", "list"]).await;
    assert_eq!(code, 2);
    assert!(out.is_empty(), "{out}");
    let doc: Value = serde_json::from_str(err.trim()).expect("a JSON error");
    assert_eq!(doc["error"]["code"], "UNAVAILABLE");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("no Baton coordinator answers")),
        "{doc}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_output_prints_errors_as_json_on_stderr_with_the_same_exit_code() {
    let c = Coordinator::start("json-err").await;
    let (code, out, err) = baton(&c.addr, &["-o", "json", "run", "get", "not-a-run"]).await;
    assert_eq!(code, 2);
    assert!(out.is_empty(), "{out}");
    let doc: Value = serde_json::from_str(err.trim()).expect("a JSON error");
    assert_eq!(doc["error"]["code"], "INVALID_ARGUMENT", "{doc}");
    assert!(
        doc["error"]["message"].as_str().is_some_and(|m| m.contains("run_id")),
        "{doc}"
    );

    let (code, _, err) = baton(
        &c.addr,
        &["-o", "json", "run", "get", "0190b7c4-0000-7000-8000-000000000000"],
    )
    .await;
    assert_eq!(code, 2);
    let doc: Value = serde_json::from_str(err.trim()).expect("a JSON error");
    assert_eq!(doc["error"]["code"], "NOT_FOUND", "{doc}");

    // The same error as text, for people.
    let (code, _, err) = baton(&c.addr, &["run", "get", "not-a-run"]).await;
    assert_eq!(code, 2);
    assert!(err.starts_with("error: INVALID_ARGUMENT: run_id: "), "{err}");

    // Local errors (before any call) too.
    let (code, _, err) = baton(&c.addr, &["-o", "json", "run", "submit", "w", "--input", "{oops"]).await;
    assert_eq!(code, 2);
    let doc: Value = serde_json::from_str(err.trim()).expect("a JSON error");
    assert_eq!(doc["error"]["code"], "INVALID_ARGUMENT", "{doc}");
    c.stop(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_says_when_a_reused_idempotency_key_came_with_another_input() {
    let c = Coordinator::start("idem").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("keyed.yaml");
    std::fs::write(
        &file,
        "name: keyed\nversion: 1\nsteps:\n  - {id: a, handler: cli-idem-echo}\n",
    )
    .expect("write");
    let (code, out, err) = baton(&c.addr, &["workflow", "apply", "-f", file.to_str().expect("path")]).await;
    assert_eq!(code, 0, "{out}{err}");

    let submit = |input: &'static str| {
        let addr = c.addr.clone();
        async move {
            baton(
                &addr,
                &["run", "submit", "keyed", "--input", input, "--idempotency-key", "k-1"],
            )
            .await
        }
    };
    let (code, out, err) = submit(r#"{"a": 1}"#).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created"), "{out}");
    let (code, out, _) = submit(r#"{"a": 1}"#).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("already exists") && !out.contains("different input"),
        "{out}"
    );
    let (code, out, _) = submit(r#"{"a": 2}"#).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("already exists") && out.contains("with a different input"),
        "{out}"
    );

    let (code, out, _) = baton(
        &c.addr,
        &[
            "-o",
            "json",
            "run",
            "submit",
            "keyed",
            "--input",
            r#"{"a": 3}"#,
            "--idempotency-key",
            "k-1",
        ],
    )
    .await;
    assert_eq!(code, 0);
    let doc: Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(doc["created"], json!(false));
    assert_eq!(doc["input_differs"], json!(true));
    c.stop(&["cli-idem-echo"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_watch_after_a_retry_follows_the_new_attempts_to_the_new_end() {
    let c = Coordinator::start("watch-retry").await;
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let worker = baton_worker::WorkerConfig {
        coordinator: c.addr.clone(),
        namespace: c.namespace.clone(),
        worker_id: "cli-edge-w1".into(),
        ..Default::default()
    };
    tokio::spawn(
        baton_worker::Worker::new(worker)
            .handler(
                "cli-edge-flaky",
                |ctx: baton_worker::StepContext, _input: Value| async move {
                    if ctx.attempt() < 2 {
                        return Err(baton_worker::StepError::retryable("the first attempt fails"));
                    }
                    Ok(json!({"attempt": ctx.attempt()}))
                },
            )
            .run(async move {
                let _ = rx.changed().await;
            }),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("flaky.yaml");
    std::fs::write(
        &file,
        "name: cli-edge-flaky\nversion: 1\nsteps:\n  - id: f\n    handler: cli-edge-flaky\n    retry: {max_attempts: 1}\n",
    )
    .expect("write");
    let (code, out, err) = baton(&c.addr, &["workflow", "apply", "-f", file.to_str().expect("path")]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = baton(&c.addr, &["-o", "json", "run", "submit", "cli-edge-flaky", "--wait"]).await;
    assert_eq!(code, 1, "the first round fails: {out}{err}");
    let first: Value = serde_json::from_str(out.lines().next().expect("a line")).expect("JSON");
    let run_id = first["run_id"].as_str().expect("run id").to_string();

    let (code, out, err) = baton(&c.addr, &["run", "retry", &run_id]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = baton(&c.addr, &["-o", "json", "run", "watch", &run_id]).await;
    assert_eq!(code, 0, "the watch ends at the new end: {out}{err}");
    assert!(!err.contains("polling"), "the event stream stopped early: {err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|e| e["kind"] == "step" && e["attempt"] == 2 && e["status"] == "succeeded"),
        "the new attempt is shown: {out}"
    );
    assert_eq!(
        lines.last().map(|r| r["status"].clone()),
        Some(json!("succeeded")),
        "{out}"
    );
    let _ = stop.send(true);
    c.stop(&["cli-edge-flaky"]).await;
}
