//! The `baton` binary against a real coordinator and worker (run in this process, over the real
//! Redis, RabbitMQ and gRPC): what a user types, and what they see.

use std::time::Duration;

use baton_worker::{StepContext, StepError, Worker, WorkerConfig};
use serde_json::{Value, json};

mod common;
use common::baton;

struct Setup {
    addr: String,
    namespace: String,
    stop: tokio::sync::watch::Sender<bool>,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    baton_tests::ensure_services();
    let namespace = format!("t-cli-{}", &uuid_like());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = baton_coordinator::CoordinatorConfig {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        namespace: namespace.clone(),
        timer_poll_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut rx1 = rx.clone();
    tokio::spawn(baton_coordinator::serve(config, async move {
        let _ = rx1.changed().await;
    }));
    let worker = WorkerConfig {
        coordinator: format!("http://127.0.0.1:{port}"),
        namespace: namespace.clone(),
        worker_id: "cli-w1".into(),
        ..Default::default()
    };
    let mut rx2 = rx;
    tokio::spawn(
        Worker::new(worker)
            .handler("fail", |ctx: StepContext, input: Value| async move {
                if input["fatal"] == json!(true) {
                    return Err(StepError::non_retryable("fatal failure requested").with_type("Fatal"));
                }
                if ctx.attempt() < input["succeed_on_attempt"].as_u64().unwrap_or(1) as u32 {
                    return Err(StepError::retryable(format!(
                        "attempt {} fails on purpose",
                        ctx.attempt()
                    )));
                }
                Ok(json!({"attempt": ctx.attempt()}))
            })
            // `{"pad": "xx…"}` of `output_bytes` x's: a large output.
            .handler("pad", |_ctx: StepContext, input: Value| async move {
                let n = input["output_bytes"].as_u64().unwrap_or(0) as usize;
                Ok::<_, StepError>(json!({"pad": "x".repeat(n)}))
            })
            .run(async move {
                let _ = rx2.changed().await;
            }),
    );
    let start = std::time::Instant::now();
    // Ready means health SERVING: the coordinator listens before its start-up work is done.
    let addr = format!("http://127.0.0.1:{port}");
    while baton_tests::health_status(&addr, "").await != Ok(baton_tests::ServingStatus::Serving) {
        assert!(start.elapsed() < Duration::from_secs(60), "coordinator did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Setup {
        addr: format!("http://127.0.0.1:{port}"),
        namespace,
        stop,
        dir: tempfile::tempdir().unwrap(),
    }
}

fn uuid_like() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_applies_a_workflow_runs_it_and_sees_its_retries() {
    let s = setup().await;
    let file = s.dir.path().join("flaky.yaml");
    std::fs::write(&file, "name: flaky\nversion: 1\nsteps:\n  - id: f\n    handler: fail\n    retry: {max_attempts: 3, initial_interval: 100ms}\n").unwrap();
    let file = file.to_str().unwrap();

    let (code, out, err) = baton(&s.addr, &["workflow", "apply", "-f", file]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("flaky") && out.contains("created"), "{out}");
    let (code, out, _) = baton(&s.addr, &["workflow", "apply", "-f", file]).await;
    assert_eq!(code, 0);
    assert!(out.contains("unchanged"), "{out}");

    // Submit and wait: succeeds on the second attempt, and the JSON shows both attempts.
    let (code, out, err) = baton(
        &s.addr,
        &[
            "run",
            "submit",
            "flaky",
            "--input",
            r#"{"succeed_on_attempt": 2}"#,
            "--wait",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let run: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(run["status"], "succeeded");
    let attempts = run["steps"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["outcome"], "failed");
    let id = run["id"].as_str().unwrap().to_string();

    // The table view makes the retry visible.
    let (code, out, _) = baton(&s.addr, &["run", "get", &id]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("succeeded") && out.contains("attempt 1 fails on purpose"),
        "{out}"
    );

    // A run that fails: --wait exits 1.
    let (code, out, _) = baton(
        &s.addr,
        &["run", "submit", "flaky", "--input", r#"{"fatal": true}"#, "--wait"],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("failed"), "{out}");

    let (code, out, _) = baton(&s.addr, &["run", "list", "--workflow", "flaky", "--output", "json"]).await;
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["runs"].as_array().map(Vec::len), Some(2), "{out}");

    // Bad input: a clear error naming the field, exit 2.
    let bad = s.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: bad\nversion: 1\nsteps:\n  - {id: a, handler: h, depends_on: [ghost]}\n",
    )
    .unwrap();
    let (code, _, err) = baton(&s.addr, &["workflow", "apply", "-f", bad.to_str().unwrap()]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("INVALID_ARGUMENT") && err.contains("steps[0].depends_on[0]"),
        "{err}"
    );
    let (code, _, err) = baton(&s.addr, &["run", "submit", "nope", "--input", "{}"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("NOT_FOUND"), "{err}");
    let _ = s.stop.send(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    baton_tests::cleanup_namespace(&s.namespace, &["fail".to_string()]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_sees_which_outputs_a_large_run_left_out_and_reads_one_by_its_step() {
    let s = setup().await;
    let file = s.dir.path().join("large.yaml");
    // 2 MB and 2 MB of outputs: the second no longer fits GetRun's 3 MiB budget (`c` keeps the
    // run's own output, its leaves' outputs, small).
    std::fs::write(
        &file,
        "name: large\nversion: 1\nsteps:\n  - {id: a, handler: pad, input: {output_bytes: 2000000}}\n  - {id: b, handler: pad, input: {output_bytes: 2000000}}\n  - {id: c, handler: pad, depends_on: [a, b], input: {output_bytes: 3}}\n",
    )
    .unwrap();
    let (code, out, err) = baton(&s.addr, &["workflow", "apply", "-f", file.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = baton(&s.addr, &["run", "submit", "large", "--wait", "--output", "json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let run: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let id = run["id"].as_str().unwrap().to_string();

    let (code, out, err) = baton(&s.addr, &["run", "get", &id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "step b output: omitted (2.0 MB): baton run get {id} --step b\n"
        )),
        "{out}"
    );
    assert!(!out.contains("step a output"), "{out}");

    let (code, out, err) = baton(&s.addr, &["run", "get", &id, "--step", "b", "--output", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let one: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        one["steps"].as_array().map(Vec::len),
        Some(1),
        "{}",
        &out[..out.len().min(500)]
    );
    assert_eq!(one["steps"][0]["output"]["pad"].as_str().map(str::len), Some(2_000_000));
    assert_eq!(one["steps"][0]["output_omitted_bytes"], 0);
    let (code, out, err) = baton(&s.addr, &["run", "get", &id, "--step", "b"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Step:      b\n"), "{}", &out[..out.len().min(500)]);
    assert!(
        out.contains(&format!("\"pad\": \"{}\"", "x".repeat(2_000_000))),
        "the whole output"
    );
    let (code, _, err) = baton(&s.addr, &["run", "get", &id, "--step", "ghost"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("NOT_FOUND") && err.contains("step_id"), "{err}");

    let _ = s.stop.send(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    baton_tests::cleanup_namespace(&s.namespace, &["fail".to_string(), "pad".to_string()]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_deletes_a_workflow_version_only_once_no_run_of_it_is_unfinished() {
    let s = setup().await;
    for (name, text) in [
        (
            "v1.yaml",
            "name: doomed\nversion: 1\nsteps:\n  - {id: a, handler: nobody_serves_this}\n",
        ),
        (
            "v2.yaml",
            "name: doomed\nversion: 2\nsteps:\n  - {id: a, handler: fail}\n",
        ),
    ] {
        let file = s.dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let (code, out, err) = baton(&s.addr, &["workflow", "apply", "-f", file.to_str().unwrap()]).await;
        assert_eq!(code, 0, "{out}{err}");
    }
    // A run of version 1 that cannot finish: no worker serves its handler.
    let (code, out, err) = baton(&s.addr, &["run", "submit", "doomed", "--version", "1", "--input", "{}"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let run_id = out.split_whitespace().find(|w| w.len() == 36).unwrap().to_string();

    let (code, _, err) = baton(&s.addr, &["workflow", "delete", "doomed", "--version", "1"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("FAILED_PRECONDITION") && err.contains("has 1 unfinished run"),
        "{err}"
    );
    let (code, _, err) = baton(&s.addr, &["workflow", "delete", "doomed", "--version", "7"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("NOT_FOUND") && err.contains("no version 7"), "{err}");

    let (code, out, err) = baton(&s.addr, &["run", "cancel", &run_id]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = baton(&s.addr, &["workflow", "delete", "doomed", "--version", "1"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "deleted workflow doomed version 1; versions left: 2\n");
    let (code, _, err) = baton(&s.addr, &["workflow", "get", "doomed", "--version", "1"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("NOT_FOUND"), "{err}");
    // The finished run keeps its history.
    let (code, out, _) = baton(&s.addr, &["run", "get", &run_id]).await;
    assert_eq!(code, 0);
    assert!(out.contains("cancelled"), "{out}");

    // A schedule that starts runs of version 2 keeps it until the schedule goes.
    let (code, out, err) = baton(
        &s.addr,
        &[
            "schedule",
            "create",
            "--id",
            "doomed-nightly",
            "--workflow",
            "doomed",
            "--version",
            "2",
            "--cron",
            "0 3 * * *",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = baton(&s.addr, &["workflow", "delete", "doomed", "--version", "2"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("FAILED_PRECONDITION") && err.contains("schedule doomed-nightly starts runs of workflow"),
        "{err}"
    );
    let (code, out, err) = baton(&s.addr, &["schedule", "delete", "doomed-nightly"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = baton(
        &s.addr,
        &["workflow", "delete", "doomed", "--version", "2", "--output", "json"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["remaining_versions"], json!([]));
    let (code, out, _) = baton(&s.addr, &["workflow", "list"]).await;
    assert_eq!(code, 0);
    assert!(!out.contains("doomed"), "the last version took the name with it: {out}");
    let _ = s.stop.send(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    baton_tests::cleanup_namespace(&s.namespace, &["fail".to_string(), "nobody_serves_this".to_string()]).await;
}
