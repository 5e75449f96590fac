//! The API edge and the worker under hostile or unlucky input (issue 8): oversized values and ids,
//! forged page tokens, outputs over the payload limit, a worker whose coordinator is down, https
//! addresses, watching a retried run, and idempotency keys reused with another input. Real
//! coordinator and worker processes, Redis, RabbitMQ and tonic clients.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use baton_shared::proto::{
    CancelRunRequest, CreateScheduleRequest, GetRunRequest, GetWorkflowRequest, ListHumanTasksRequest, ListRunsRequest,
    PublishEventRequest, RerunRunRequest, RetryRunRequest, ScheduleRef, SubmitRunRequest, WatchRunRequest,
};
use baton_tests::{AMQP_URL, Cluster, REDIS_URL, status, step_status};
use serde_json::json;
use tonic::Code;

/// A test worker process started by a test itself (its own coordinator address and settings);
/// killed when dropped.
struct OwnWorker {
    child: Child,
    log: std::path::PathBuf,
}

impl OwnWorker {
    /// Starts `test-worker` for `cluster`'s namespace against `coordinator`, with `env` on top.
    fn start(cluster: &Cluster, name: &str, coordinator: &str, env: &[(&str, &str)]) -> Self {
        let dir = target_dir().join("e2e-logs");
        let _ = std::fs::create_dir_all(&dir);
        let log = dir.join(format!("{}-{name}.log", cluster.namespace));
        let file = std::fs::File::create(&log).expect("worker log");
        let mut cmd = Command::new(target_dir().join("test-worker"));
        cmd.env_remove("BATON_ADDR")
            .env("BATON_COORDINATOR", coordinator)
            .env("BATON_AMQP_URL", AMQP_URL)
            .env("BATON_REDIS_URL", REDIS_URL)
            .env("BATON_NAMESPACE", &cluster.namespace)
            .env("BATON_WORKER_ID", name)
            .env("BATON_QUEUE_TYPE", "classic")
            .env("BATON_CONCURRENCY", "4")
            .env("RUST_LOG", "info,lapin=warn")
            .stdout(Stdio::from(file.try_clone().expect("log")))
            .stderr(Stdio::from(file));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().expect("spawn test-worker"),
            log,
        }
    }

    /// Waits until the worker's log holds `text`; panics after `within` or when the worker died.
    async fn wait_log(&mut self, text: &str, within: Duration) {
        let start = Instant::now();
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains(text) {
                return;
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                panic!("worker exited with {s} before logging {text:?}:\n{log}");
            }
            assert!(
                start.elapsed() < within,
                "worker did not log {text:?} within {within:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM and answers how long the worker took to exit (panics after `within`).
    fn terminate(&mut self, within: Duration) -> Duration {
        let start = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        loop {
            if self.child.try_wait().ok().flatten().is_some() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "worker still running {within:?} after SIGTERM:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OwnWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn target_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .to_path_buf()
}

/// An address where nothing listens (a port just freed).
fn dead_address() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    format!("http://127.0.0.1:{port}")
}

/// A run's step, by id.
fn step<'a>(run: &'a baton_shared::proto::Run, id: &str) -> &'a baton_shared::proto::StepRun {
    run.steps
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no step {id}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_ids_and_keys_are_refused_naming_the_field_with_a_short_message() {
    let cluster = Cluster::start("edge-ids", &[]).await;
    let huge = "r".repeat(1024 * 1024);
    let mut runs = cluster.runs().await;

    let e = runs
        .get_run(GetRunRequest {
            run_id: huge.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    assert!(
        e.message().starts_with("run_id: "),
        "{}",
        &e.message()[..100.min(e.message().len())]
    );
    assert!(e.message().len() < 400, "{} bytes", e.message().len());

    let e = runs
        .cancel_run(CancelRunRequest {
            run_id: huge.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("run_id: ") && e.message().len() < 400);

    let e = runs
        .watch_run(WatchRunRequest {
            run_id: huge.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("run_id: ") && e.message().len() < 400);

    let e = runs
        .submit_run(SubmitRunRequest {
            workflow: "w".into(),
            idempotency_key: huge.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("idempotency_key: ") && e.message().len() < 400,
        "{}",
        e.message()
    );

    let e = runs
        .submit_run(SubmitRunRequest {
            workflow: huge.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("workflow: ") && e.message().len() < 400,
        "{}",
        e.message()
    );

    let e = cluster
        .events()
        .await
        .publish_event(PublishEventRequest {
            name: "order".into(),
            key: huge.clone(),
            payload_json: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("key: ") && e.message().len() < 400,
        "{}",
        e.message()
    );

    let e = runs
        .rerun_run(RerunRunRequest {
            run_id: "0190b7c4-0000-7000-8000-000000000000".into(),
            from_step: huge.clone(),
            input_json: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("from_step: ") && e.message().len() < 400,
        "{}",
        e.message()
    );

    let mut schedules = cluster.schedules().await;
    let e = schedules
        .create_schedule(CreateScheduleRequest {
            workflow: "w".into(),
            cron: format!("0 * * * * {huge}"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("cron: ") && e.message().len() < 400,
        "{}",
        e.message()
    );
    let e = schedules
        .create_schedule(CreateScheduleRequest {
            workflow: "w".into(),
            cron: "0 * * * *".into(),
            catchup_window_ms: u64::MAX,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("catchup_window_ms: must be at most"),
        "{}",
        e.message()
    );
    let e = schedules
        .get_schedule(ScheduleRef { id: huge.clone() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("id: ") && e.message().len() < 400,
        "{}",
        e.message()
    );

    let e = cluster
        .human_tasks()
        .await
        .list_human_tasks(ListHumanTasksRequest {
            assignee: huge.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("assignee: ") && e.message().len() < 400,
        "{}",
        e.message()
    );

    // A name that would alias an internal key is not looked up at all.
    let e = cluster
        .workflows()
        .await
        .get_workflow(GetWorkflowRequest {
            name: "x:registered".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("name: \"x:registered\""), "{}", e.message());

    cluster.assert_answers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_page_token_is_refused_and_a_real_one_still_pages() {
    let cluster = Cluster::start("edge-pages", &[]).await;
    cluster
        .register("name: paged\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(cluster.submit("paged", json!({"i": i})).await);
    }
    let mut runs = cluster.runs().await;
    let page1 = runs
        .list_runs(ListRunsRequest {
            workflow: "paged".into(),
            limit: 2,
            ..Default::default()
        })
        .await
        .expect("page 1")
        .into_inner();
    assert_eq!(page1.runs.len(), 2);
    assert!(!page1.next_page_token.is_empty());
    let page2 = runs
        .list_runs(ListRunsRequest {
            workflow: "paged".into(),
            limit: 2,
            page_token: page1.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .expect("page 2")
        .into_inner();
    let mut seen: Vec<String> = page1.runs.iter().chain(&page2.runs).map(|r| r.id.clone()).collect();
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids, "the two pages hold every run once");

    for forged in [
        "garbage".to_string(),
        "9999999999999:not-a-run".to_string(),
        format!("{}x", page1.next_page_token),
        "t".repeat(100_000),
    ] {
        let e = runs
            .list_runs(ListRunsRequest {
                workflow: "paged".into(),
                page_token: forged.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{forged:.40}: {}", e.message());
        assert!(
            e.message().starts_with("page_token: ") && e.message().len() < 400,
            "{}",
            e.message()
        );
    }
    cluster.assert_answers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_of_large_runs_ends_early_and_fits_a_default_client() {
    let cluster = Cluster::start("edge-page-bytes", &[]).await;
    cluster
        .register("name: bulky\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    // Four runs of 1.2 MB inputs: 4.8 MB in all, over gRPC's default 4 MiB answer limit.
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            cluster
                .submit("bulky", json!({"i": i, "s": "x".repeat(1_200_000)}))
                .await,
        );
    }
    // A client with tonic's default limits, as any caller has.
    let mut runs = baton_shared::proto::run_service_client::RunServiceClient::connect(cluster.addr.clone())
        .await
        .expect("connect");
    let (mut seen, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = runs
            .list_runs(ListRunsRequest {
                workflow: "bulky".into(),
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("every page fits a default client")
            .into_inner();
        pages += 1;
        assert!(!page.runs.is_empty(), "page {pages} is empty");
        seen.extend(page.runs.into_iter().map(|r| r.id));
        token = page.next_page_token;
        if token.is_empty() || pages > 10 {
            break;
        }
    }
    assert!(pages >= 2, "4.8 MB of runs came in {pages} page(s)");
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids, "the pages hold every run once");
    cluster.assert_answers().await;
}

/// A workflow whose one step returns `{a: input.s, b: input.s}`: an output twice the input's text.
const DOUBLER: &str = "name: doubler\nversion: 1\nsteps:\n  - id: big\n    handler: echo\n    timeout: 5m\n    retry: {max_attempts: 3, initial_interval: 100ms}\n    input: {a: '${{ input.s }}', b: '${{ input.s }}'}\n";

#[tokio::test(flavor = "multi_thread")]
async fn an_output_over_the_coordinators_limit_fails_the_step_as_output_too_large_at_once() {
    let mut cluster = Cluster::start("edge-out-coord", &[("BATON_MAX_PAYLOAD_BYTES", "4000")]).await;
    cluster.register(DOUBLER).await;
    // The worker's own limit is the default 4 MiB: the coordinator's check is the one that acts.
    cluster.spawn_worker("w1", 4);
    let run_id = cluster.submit("doubler", json!({"s": "x".repeat(3000)})).await;
    let started = Instant::now();
    let run = cluster.wait_run(&run_id, Duration::from_secs(90)).await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}: the step waited for its timeout",
        started.elapsed()
    );
    assert_eq!(status(&run), "failed");
    let error = &step(&run, "big").error;
    assert!(
        error.contains("OutputTooLarge") && error.contains("over the limit of 4000 bytes"),
        "{error}"
    );
    assert_eq!(cluster.executions(&run_id, "big").await, 1, "not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_output_over_the_workers_limit_is_not_sent_and_fails_the_step() {
    let cluster = Cluster::start("edge-out-worker", &[]).await;
    cluster.register(DOUBLER).await;
    let _worker = OwnWorker::start(&cluster, "small", &cluster.addr, &[("BATON_MAX_PAYLOAD_BYTES", "1000")]);
    let run_id = cluster.submit("doubler", json!({"s": "y".repeat(800)})).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(90)).await;
    assert_eq!(status(&run), "failed");
    let error = &step(&run, "big").error;
    assert!(
        error.contains("OutputTooLarge") && error.contains("over the limit of 1000 bytes"),
        "{error}"
    );
    assert_eq!(cluster.executions(&run_id, "big").await, 1, "not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_output_over_the_grpc_message_limit_does_not_leave_the_step_to_its_timeout() {
    // 8 MiB allowed on both sides, an output of about 5 MB: more than gRPC's default 4 MiB
    // message. It either goes through (the server's message limit fits the payload limit) or fails
    // the step as OutputTooLarge; it never hangs until the 5-minute timeout.
    let cluster = Cluster::start("edge-out-grpc", &[("BATON_MAX_PAYLOAD_BYTES", "8388608")]).await;
    cluster.register(DOUBLER).await;
    let _worker = OwnWorker::start(
        &cluster,
        "big",
        &cluster.addr,
        &[("BATON_MAX_PAYLOAD_BYTES", "8388608")],
    );
    let run_id = cluster.submit("doubler", json!({"s": "z".repeat(2_600_000)})).await;
    let started = Instant::now();
    let run = cluster.wait_run(&run_id, Duration::from_secs(240)).await;
    assert!(
        started.elapsed() < Duration::from_secs(180),
        "took {:?}: the step waited for its timeout",
        started.elapsed()
    );
    match status(&run) {
        "succeeded" => {}
        "failed" => {
            let error = &step(&run, "big").error;
            assert!(error.contains("OutputTooLarge"), "{error}");
        }
        other => panic!("run {other}: {}", run.error),
    }
    assert_eq!(cluster.executions(&run_id, "big").await, 1, "not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_whose_coordinator_is_down_takes_nothing_and_exits_on_sigterm_within_its_grace() {
    let mut cluster = Cluster::start("edge-worker-down", &[]).await;
    cluster
        .register("name: stranded\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    let run_id = cluster.submit("stranded", json!({"x": 1})).await;

    let mut lost = OwnWorker::start(&cluster, "lost", &dead_address(), &[("BATON_SHUTDOWN_GRACE", "5s")]);
    lost.wait_log("not taking tasks", Duration::from_secs(60)).await;
    // Give it time to (wrongly) take the task, then check that the run did not move.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let run = cluster
        .runs()
        .await
        .get_run(GetRunRequest {
            run_id: run_id.clone(),
            ..Default::default()
        })
        .await
        .expect("get run")
        .into_inner();
    assert_eq!(step_status(&run, "a"), "dispatched");
    assert_eq!(cluster.executions(&run_id, "a").await, 0);

    let took = lost.terminate(Duration::from_secs(15));
    assert!(took < Duration::from_secs(10), "exit took {took:?}");

    // The task is still on its queue: a worker whose coordinator answers runs it.
    cluster.spawn_worker("found", 4);
    let run = cluster.wait_run(&run_id, Duration::from_secs(90)).await;
    assert_eq!(status(&run), "succeeded", "{}", run.error);
    assert_eq!(cluster.executions(&run_id, "a").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_holding_a_task_its_coordinator_cannot_take_exits_within_its_grace_and_gives_it_back() {
    let mut cluster = Cluster::start("edge-worker-held", &[]).await;
    cluster
        .register("name: held\nversion: 1\nsteps:\n  - {id: s, handler: slow}\n")
        .await;
    let mut worker = OwnWorker::start(&cluster, "holder", &cluster.addr, &[("BATON_SHUTDOWN_GRACE", "5s")]);
    worker.wait_log("consuming", Duration::from_secs(60)).await;
    let run_id = cluster.submit("held", json!({"ms": 3000})).await;
    let start = Instant::now();
    while cluster.executions(&run_id, "s").await == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the worker never started the step"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The coordinator goes away while the handler runs: its result cannot be reported.
    cluster.stop_coordinator(true);
    worker
        .wait_log("coordinator unreachable at report", Duration::from_secs(60))
        .await;

    let took = worker.terminate(Duration::from_secs(30));
    assert!(took < Duration::from_secs(12), "exit took {took:?} with a 5 s grace");

    // The task went back to its queue: with the coordinator back, another worker finishes the run.
    cluster.start_coordinator().await;
    cluster.spawn_worker("second", 4);
    let run = cluster.wait_run(&run_id, Duration::from_secs(120)).await;
    assert_eq!(status(&run), "succeeded", "{}", run.error);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_started_before_its_coordinator_takes_the_task_once_it_answers() {
    let mut cluster = Cluster::start("edge-worker-first", &[]).await;
    cluster
        .register("name: early\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    let run_id = cluster.submit("early", json!({"x": 1})).await;
    cluster.stop_coordinator(false);

    let mut worker = OwnWorker::start(&cluster, "early", &cluster.addr, &[]);
    worker.wait_log("not taking tasks", Duration::from_secs(60)).await;
    assert_eq!(cluster.executions(&run_id, "a").await, 0);

    cluster.start_coordinator().await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(120)).await;
    assert_eq!(status(&run), "succeeded", "{}", run.error);
    worker
        .wait_log("coordinator answers; taking tasks", Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_and_unknown_schemes_stop_the_worker_with_a_clear_message() {
    let cluster = Cluster::start("edge-worker-tls", &[]).await;
    // https:// is supported now; one whose CA file cannot be read stops the worker too.
    for (addr, env, expected) in [
        (
            "https://127.0.0.1:7450",
            &[("BATON_CA_FILE", "/nonexistent/ca.pem")][..],
            "--ca-file (BATON_CA_FILE): cannot read /nonexistent/ca.pem",
        ),
        ("ftp://127.0.0.1:7450", &[][..], "unsupported scheme"),
    ] {
        let mut worker = OwnWorker::start(&cluster, "tls", addr, env);
        let start = Instant::now();
        let code = loop {
            if let Some(s) = worker.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "worker with {addr} kept running"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(!code.success(), "{addr}: exited with {code}");
        let log = std::fs::read_to_string(&worker.log).unwrap_or_default();
        assert!(log.contains(expected), "{addr}: {log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watching_a_retried_run_follows_the_new_attempts_to_the_new_end() {
    let mut cluster = Cluster::start("edge-watch-retry", &[]).await;
    cluster
        .register(
            "name: second-time\nversion: 1\nsteps:\n  - id: f\n    handler: fail\n    retry: {max_attempts: 1}\n  - {id: after, handler: echo, depends_on: [f]}\n",
        )
        .await;
    cluster.spawn_worker("w1", 4);
    let run_id = cluster.submit("second-time", json!({"succeed_on_attempt": 2})).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "failed");

    let mut runs = cluster.runs().await;
    runs.retry_run(RetryRunRequest { run_id: run_id.clone() })
        .await
        .expect("retry");
    let mut stream = runs
        .watch_run(WatchRunRequest {
            run_id: run_id.clone(),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let mut run_events = Vec::new();
    let collected = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(ev) = stream.message().await.expect("event") {
            if ev.kind == "run" {
                run_events.push(ev.status.clone());
            }
        }
    })
    .await;
    assert!(
        collected.is_ok(),
        "the stream did not end; run events so far: {run_events:?}"
    );
    // The whole history (the first end included), then the new attempts.
    let failed_at = run_events.iter().position(|s| s == "failed");
    assert!(failed_at.is_some(), "{run_events:?}");
    assert!(
        run_events[failed_at.unwrap_or(0)..].contains(&"running".to_string()),
        "{run_events:?}"
    );
    assert_eq!(
        run_events.last().map(String::as_str),
        Some("succeeded"),
        "the stream ended at an old end: {run_events:?}"
    );
    let run = cluster.wait_run(&run_id, Duration::from_secs(10)).await;
    assert_eq!(status(&run), "succeeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn reusing_an_idempotency_key_says_whether_the_input_differs() {
    let cluster = Cluster::start("edge-idem", &[]).await;
    cluster
        .register("name: keyed\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    let mut runs = cluster.runs().await;
    let submit = |input: &str| SubmitRunRequest {
        workflow: "keyed".into(),
        input_json: input.into(),
        idempotency_key: "order-7".into(),
        ..Default::default()
    };
    let first = runs
        .submit_run(submit(r#"{"a": 1, "b": [2]}"#))
        .await
        .expect("first")
        .into_inner();
    assert!(first.created && !first.input_differs);

    // The same input, written another way: the same run, and nothing differs.
    let same = runs
        .submit_run(submit(r#"{"b":[2],"a":1}"#))
        .await
        .expect("same")
        .into_inner();
    assert_eq!(same.run_id, first.run_id);
    assert!(!same.created && !same.input_differs, "{same:?}");

    let other = runs
        .submit_run(submit(r#"{"a": 2, "b": [2]}"#))
        .await
        .expect("other")
        .into_inner();
    assert_eq!(other.run_id, first.run_id);
    assert!(!other.created && other.input_differs, "{other:?}");

    // The run keeps the input it started with.
    let run = runs
        .get_run(GetRunRequest {
            run_id: first.run_id.clone(),
            ..Default::default()
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&run.input_json).expect("json"),
        json!({"a": 1, "b": [2]})
    );
}
