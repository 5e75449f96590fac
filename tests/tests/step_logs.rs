//! Step data end to end: a real coordinator, a real Rust worker whose handler logs with `ctx.log`,
//! Redis and RabbitMQ. The lines come back in order with their levels and times (GetStepLogs, by
//! step and by attempt, and `baton run logs`), live on WatchRun and never replayed from the
//! history; an attempt keeps its newest 1,000 lines; a worker that does not hold the attempt
//! keeps nothing; GetRun shows each attempt's input, error type, details and log count.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use baton_shared::proto::{
    AppendLogsRequest, AttemptDisposition, GetStepLogsRequest, LogLine, RunEvent, StartStepRequest, WatchRunRequest,
};
use baton_tests::{Cluster, free_port, status};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};

const CHATTY: &str = r#"
name: chatty
version: 1
steps:
  - id: talk
    handler: chatty
    retry: {max_attempts: 3, initial_interval: 100ms, jitter: 0}
    input: {lines: "${{ input.lines }}", ms: "${{ input.ms }}", succeed_on_attempt: "${{ input.succeed }}", tag: talk}
"#;

async fn logs(cluster: &Cluster, run_id: &str, step: &str, attempt: u32, limit: u32) -> (Vec<LogLine>, u32) {
    let r = cluster
        .runs()
        .await
        .get_step_logs(GetStepLogsRequest {
            run_id: run_id.into(),
            step_id: step.into(),
            attempt,
            limit,
        })
        .await
        .expect("GetStepLogs")
        .into_inner();
    (r.lines, r.omitted)
}

fn messages(lines: &[LogLine]) -> Vec<String> {
    lines.iter().map(|l| l.message.clone()).collect()
}

/// The `baton` binary cargo built beside this test (`cargo build -p baton-cli`).
fn baton_cli() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let p = profile.join("baton");
    assert!(
        p.exists(),
        "{} is missing: build it first (`cargo build -p baton-cli`)",
        p.display()
    );
    p
}

/// `GET http://127.0.0.1:{port}{path}`: the status and the JSON body.
async fn http_get(port: u16, path: &str) -> (u16, Value) {
    let (status, raw) = http_get_text(port, path).await;
    (status, serde_json::from_str(&raw).unwrap_or(Value::Null))
}

/// `GET http://127.0.0.1:{port}{path}`: the status and the whole body as text (an event stream
/// is read to its end).
async fn http_get_text(port: u16, path: &str) -> (u16, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let uri = format!("http://127.0.0.1:{port}{path}").parse().expect("a URI");
    let resp = tokio::time::timeout(Duration::from_secs(30), client.get(uri))
        .await
        .expect("an answer within 30 s")
        .expect("an answer");
    let status = resp.status().as_u16();
    let raw = tokio::time::timeout(Duration::from_secs(60), resp.into_body().collect())
        .await
        .expect("the body ends within 60 s")
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&raw).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_inputs_and_errors_of_each_attempt() {
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let mut cluster = Cluster::start("step-logs", &[("BATON_HTTP_ADDR", &http)]).await;
    cluster.register(CHATTY).await;
    cluster.spawn_worker("w1", 2);
    let run_id = cluster
        .submit("chatty", json!({"lines": 5, "ms": 0, "succeed": 2}))
        .await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");

    // Every line of the step, attempt 1's before attempt 2's, each in the order it was logged.
    let (lines, omitted) = logs(&cluster, &run_id, "talk", 0, 0).await;
    assert_eq!(omitted, 0);
    let want: Vec<String> = (1..=2)
        .flat_map(|a| (0..5).map(move |i| format!("line {i} of attempt {a}")))
        .collect();
    assert_eq!(messages(&lines), want);
    let levels: Vec<&str> = lines.iter().take(5).map(|l| l.level.as_str()).collect();
    assert_eq!(levels, ["debug", "info", "warn", "error", "debug"]);
    let started = baton_tests::ms(&run.created_at);
    let mut last = 0;
    for l in &lines {
        assert_eq!(l.step_id, "talk");
        let t = baton_tests::ms(&l.time);
        assert!(
            t >= started && t >= last,
            "times in order, after the run began: {lines:#?}"
        );
        last = t;
    }
    // One attempt.
    let (first, _) = logs(&cluster, &run_id, "talk", 1, 0).await;
    assert_eq!(messages(&first), want[..5]);
    assert!(first.iter().all(|l| l.attempt == 1));
    // The newest lines within a limit, the others counted.
    let (newest, omitted) = logs(&cluster, &run_id, "", 0, 3).await;
    assert_eq!(messages(&newest), want[7..]);
    assert_eq!(omitted, 7);
    // A step the run does not have.
    let e = cluster
        .runs()
        .await
        .get_step_logs(GetStepLogsRequest {
            run_id: run_id.clone(),
            step_id: "nope".into(),
            ..Default::default()
        })
        .await
        .expect_err("no such step");
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(e.message().starts_with("step_id:"), "{}", e.message());

    // GetRun: each attempt's input, error type and details, and log count.
    let step = run.steps.iter().find(|s| s.id == "talk").expect("talk");
    assert_eq!(step.attempts.len(), 2, "{step:#?}");
    let want_input = json!({"lines": 5, "ms": 0, "succeed_on_attempt": 2, "tag": "talk"});
    for a in &step.attempts {
        let input: Value = serde_json::from_str(&a.input_json).expect("the attempt's input is JSON");
        assert_eq!(input, want_input, "attempt {}", a.number);
        assert_eq!(a.input_omitted_bytes, 0);
        assert_eq!(a.log_lines, 5, "attempt {}", a.number);
    }
    let (a1, a2) = (&step.attempts[0], &step.attempts[1]);
    assert_eq!((a1.outcome.as_str(), a2.outcome.as_str()), ("failed", "succeeded"));
    assert_eq!(a1.error_type, "Flaky");
    assert_eq!(a1.error_details, "Traceback: attempt 1\n  at chatty");
    assert!(a2.error_type.is_empty() && a2.error_details.is_empty());

    // The CLI prints the lines as `TIME LEVEL  step#attempt  message`.
    let out = std::process::Command::new(baton_cli())
        .args([
            "--addr",
            &cluster.addr,
            "run",
            "logs",
            &run_id,
            "talk",
            "--attempt",
            "2",
        ])
        .output()
        .expect("run baton");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let printed: Vec<&str> = text.lines().collect();
    assert_eq!(printed.len(), 5, "{text}");
    for (i, line) in printed.iter().enumerate() {
        let (time, rest) = line.split_once(' ').expect("a time first");
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T' && time.as_bytes()[19] == b'.',
            "an RFC 3339 UTC time with milliseconds: {line:?}"
        );
        let level = ["DEBUG", "INFO ", "WARN ", "ERROR", "DEBUG"][i];
        assert_eq!(rest, format!("{level} talk#2  line {i} of attempt 2"), "{text}");
    }
    // `run get` shows the attempts' inputs.
    let out = std::process::Command::new(baton_cli())
        .args(["--addr", &cluster.addr, "run", "get", &run_id])
        .output()
        .expect("run baton");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("INPUT") && text.contains(r#"{"lines":5,"#), "{text}");
    assert!(text.contains("Flaky: attempt 1 is flaky"), "{text}");

    // Over HTTP: the lines, and the attempts' inputs and errors in the run.
    let (code, body) = http_get(port, &format!("/v1/runs/{run_id}/logs?step=talk&attempt=1&limit=2")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["omitted"], 3);
    let got: Vec<&str> = body["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l["message"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(got, ["line 3 of attempt 1", "line 4 of attempt 1"]);
    assert_eq!(body["lines"][0]["level"], "error");
    assert_eq!(body["lines"][0]["step_id"], "talk");
    assert!(
        body["lines"][0]["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );
    let (code, body) = http_get(port, &format!("/v1/runs/{run_id}")).await;
    assert_eq!(code, 200);
    let attempts = &body["steps"][0]["attempts"];
    assert_eq!(attempts[0]["input"], want_input, "{body}");
    assert_eq!(attempts[0]["error_type"], "Flaky");
    assert_eq!(attempts[0]["error_details"], "Traceback: attempt 1\n  at chatty");
    assert_eq!(attempts[1]["log_lines"], 5);
    let (code, body) = http_get(port, &format!("/v1/runs/{run_id}/logs?step=nope")).await;
    assert_eq!((code, body["field"].as_str()), (404, Some("step_id")), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn baton_run_logs_follow_prints_each_line_once_until_the_run_ends() {
    let mut cluster = Cluster::start("step-logs-follow", &[]).await;
    cluster.register(CHATTY).await;
    cluster.spawn_worker("w1", 2);
    let run_id = cluster
        .submit("chatty", json!({"lines": 8, "ms": 250, "succeed": 1}))
        .await;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(baton_cli())
            .args(["--addr", &cluster.addr, "run", "logs", &run_id, "--follow"])
            .output(),
    )
    .await
    .expect("--follow ends with the run")
    .expect("run baton");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let said: Vec<&str> = text
        .lines()
        .map(|l| l.split_once("talk#1  ").map_or(l, |(_, m)| m))
        .collect();
    let want: Vec<String> = (0..8).map(|i| format!("line {i} of attempt 1")).collect();
    assert_eq!(said, want, "each line once, in order:\n{text}");
    assert_eq!(status(&cluster.get_run(&run_id).await), "succeeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn live_lines_arrive_on_watch_run_and_are_not_replayed() {
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let mut cluster = Cluster::start("step-logs-live", &[("BATON_HTTP_ADDR", &http)]).await;
    cluster.register(CHATTY).await;
    let run_id = cluster
        .submit("chatty", json!({"lines": 6, "ms": 300, "succeed": 1}))
        .await;
    // The HTTP event stream, open before the worker starts.
    let sse = tokio::spawn(http_get_text(port, format!("/v1/runs/{run_id}/events").leak()));
    let mut stream = cluster
        .runs()
        .await
        .watch_run(WatchRunRequest {
            run_id: run_id.clone(),
            after_sequence: String::new(),
            include_run: false,
        })
        .await
        .expect("WatchRun")
        .into_inner();
    cluster.spawn_worker("w1", 2);
    let mut events: Vec<RunEvent> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(ev) = tokio::time::timeout_at(deadline.into(), stream.message())
        .await
        .expect("the stream ends with the run")
        .expect("WatchRun answers")
    {
        events.push(ev);
    }
    let live: Vec<&RunEvent> = events.iter().filter(|e| e.kind == "log").collect();
    let said: Vec<String> = live
        .iter()
        .map(|e| e.log.as_ref().expect("a log event carries its line").message.clone())
        .collect();
    let want: Vec<String> = (0..6).map(|i| format!("line {i} of attempt 1")).collect();
    assert_eq!(said, want, "every line, live, in order: {events:#?}");
    for e in &live {
        assert_eq!((e.step_id.as_str(), e.attempt), ("talk", 1));
        assert!(e.sequence.is_empty(), "a log event has no sequence to resume from");
    }
    // They came while the step ran: the first before the step's end.
    let first_log = events.iter().position(|e| e.kind == "log").expect("a log event");
    let step_done = events
        .iter()
        .position(|e| e.kind == "step" && e.step_id == "talk" && e.status == "succeeded")
        .expect("the step's end");
    assert!(first_log < step_done, "{events:#?}");

    // The same lines on the HTTP event stream, as `event: log` without an `id:`.
    let (code, text) = sse.await.expect("the SSE reader");
    assert_eq!(code, 200);
    let logged: Vec<String> = text
        .split("\n\n")
        .filter(|block| block.lines().any(|l| l == "event: log"))
        .map(|block| {
            assert!(
                !block.lines().any(|l| l.starts_with("id:")),
                "a log event has no id: {block}"
            );
            let data = block.lines().find_map(|l| l.strip_prefix("data: ")).expect("data");
            let ev: Value = serde_json::from_str(data).expect("JSON data");
            ev["log"]["message"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(logged, want, "{text}");
    assert!(text.contains("event: end"), "{text}");

    // Read again (the run over): the history only, no log line replayed.
    let mut again = cluster
        .runs()
        .await
        .watch_run(WatchRunRequest {
            run_id: run_id.clone(),
            after_sequence: String::new(),
            include_run: false,
        })
        .await
        .expect("WatchRun")
        .into_inner();
    let mut replayed = Vec::new();
    while let Some(ev) = again.message().await.expect("WatchRun answers") {
        replayed.push(ev);
    }
    assert!(!replayed.is_empty());
    assert!(replayed.iter().all(|e| e.kind != "log"), "{replayed:#?}");
    let (kept, _) = logs(&cluster, &run_id, "talk", 1, 0).await;
    assert_eq!(messages(&kept), want);
}

const MANUAL: &str = r#"
name: manual-logs
version: 1
steps:
  - {id: hand, handler: manual-logs-h, input: {who: "${{ input.who }}"}}
"#;

fn lines(from: usize, n: usize) -> Vec<LogLine> {
    (from..from + n)
        .map(|i| LogLine {
            time: baton_shared::time::timestamp(baton_shared::time::now_ms()),
            level: "info".into(),
            message: format!("n{i}"),
            ..Default::default()
        })
        .collect()
}

/// Attempt 1 of the `manual-logs` run's `hand` step, started by worker `w-holder` with this input
/// echoed back.
fn start_hand(run_id: &str, input_json: &str) -> StartStepRequest {
    StartStepRequest {
        run_id: run_id.into(),
        step_id: "hand".into(),
        attempt: 1,
        worker_id: "w-holder".into(),
        workflow: "manual-logs".into(),
        workflow_version: 1,
        input_json: input_json.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attempt_keeps_its_newest_lines_and_only_its_holder_appends() {
    // No worker runs: this test is the worker, on the raw protocol.
    let cluster = Cluster::start("step-logs-bound", &[]).await;
    cluster.register(MANUAL).await;
    let run_id = cluster.submit("manual-logs", json!({"who": "ann"})).await;
    cluster
        .wait_step(&run_id, "hand", "dispatched", Duration::from_secs(10))
        .await;
    let mut api = cluster.worker_api().await;
    let start = api
        .start_step(start_hand(&run_id, r#"{"who":"ann"}"#))
        .await
        .expect("StartStep")
        .into_inner();
    assert_eq!(start.disposition, AttemptDisposition::Proceed as i32);
    let append = |worker: &str, lines: Vec<LogLine>| AppendLogsRequest {
        run_id: run_id.clone(),
        step_id: "hand".into(),
        attempt: 1,
        worker_id: worker.into(),
        lines,
    };

    // 1,200 lines in three calls: the oldest 200 are dropped, and counted.
    let mut dropped = Vec::new();
    for (from, n) in [(0, 500), (500, 500), (1000, 200)] {
        let r = api
            .append_logs(append("w-holder", lines(from, n)))
            .await
            .expect("AppendLogs")
            .into_inner();
        assert_eq!(r.disposition, AttemptDisposition::Proceed as i32);
        dropped.push(r.dropped);
    }
    assert_eq!(dropped, [0, 0, 200]);
    let (kept, omitted) = logs(&cluster, &run_id, "hand", 1, 0).await;
    assert_eq!(omitted, 0);
    assert_eq!(kept.len(), 1000);
    assert_eq!(kept[0].message, "n200");
    assert_eq!(kept[999].message, "n1199");

    // Another worker (a stale copy) is refused and keeps nothing.
    let r = api
        .append_logs(append("w-stale", lines(5000, 3)))
        .await
        .expect("AppendLogs")
        .into_inner();
    assert_eq!(r.disposition, AttemptDisposition::Stale as i32);
    // So is the holder for an attempt it does not hold.
    let mut other = append("w-holder", lines(6000, 1));
    other.attempt = 2;
    let r = api.append_logs(other).await.expect("AppendLogs").into_inner();
    assert_eq!(r.disposition, AttemptDisposition::Stale as i32);
    let (after, _) = logs(&cluster, &run_id, "hand", 0, 0).await;
    assert_eq!(messages(&after), messages(&kept), "nothing of the stale calls was kept");

    // Bounds at the door: too many lines, an unknown level; a long message is cut.
    let e = api
        .append_logs(append("w-holder", lines(0, 501)))
        .await
        .expect_err("501 lines");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("lines:"), "{}", e.message());
    let mut bad = lines(0, 2);
    bad[1].level = "loud".into();
    let e = api.append_logs(append("w-holder", bad)).await.expect_err("a bad level");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("lines[1].level:"), "{}", e.message());
    let mut long = lines(0, 1);
    long[0].message = "é".repeat(5_000);
    api.append_logs(append("w-holder", long)).await.expect("a long line");
    let (newest, _) = logs(&cluster, &run_id, "hand", 1, 1).await;
    assert!(newest[0].message.ends_with("… (cut)") && newest[0].message.len() <= 4096);

    // The input the attempt started with, in GetRun once the attempt is over; its log count.
    // A redelivered start whose echoed input is not JSON still proceeds (refusing it would have
    // the worker hand the task back for ever); the input is not kept, the first one stays.
    let again = api
        .start_step(start_hand(&run_id, "{not json"))
        .await
        .expect("a start whose input is not JSON")
        .into_inner();
    assert_eq!(again.disposition, AttemptDisposition::Proceed as i32);
    // While it runs, the step shows the input its attempt runs with.
    let running = cluster.get_run(&run_id).await;
    assert!(running.steps[0].attempts.is_empty());
    assert_eq!(running.steps[0].input_json, r#"{"who":"ann"}"#);
    cluster
        .runs()
        .await
        .cancel_run(baton_shared::proto::CancelRunRequest {
            run_id: run_id.clone(),
            reason: "done".into(),
        })
        .await
        .expect("cancel");
    let run = cluster.get_run(&run_id).await;
    let step = &run.steps[0];
    let a = step.attempts.first().expect("the cancelled attempt is listed");
    assert_eq!(a.input_json, r#"{"who":"ann"}"#);
    assert_eq!(a.log_lines, 1000);
    assert!(step.input_json.is_empty(), "over, the input is the attempt's");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attempt_that_leaves_the_kept_history_takes_its_lines_and_input_with_it() {
    let mut cluster = Cluster::start("step-logs-forget", &[]).await;
    cluster
        .register(
            r#"
name: chatty-long
version: 1
steps:
  - id: talk
    handler: chatty
    retry: {max_attempts: 30, initial_interval: 10ms, backoff_coefficient: 1, jitter: 0}
    input: {lines: 2, succeed_on_attempt: 23}
"#,
        )
        .await;
    cluster.spawn_worker("w1", 2);
    let run_id = cluster.submit("chatty-long", json!({})).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    let step = &run.steps[0];
    // The last 20 attempts are kept (4 to 23), the 3 before only counted.
    assert_eq!(step.attempts.len(), 20);
    assert_eq!(step.earlier_attempts, 3);
    assert_eq!(step.attempts[0].number, 4);
    assert!(
        step.attempts
            .iter()
            .all(|a| a.log_lines == 2 && !a.input_json.is_empty())
    );
    // Attempts 1 to 3 took their lines with them; the kept ones still have theirs.
    for gone in 1..=3 {
        assert!(
            logs(&cluster, &run_id, "talk", gone, 0).await.0.is_empty(),
            "attempt {gone}"
        );
    }
    let (all, omitted) = logs(&cluster, &run_id, "talk", 0, 0).await;
    assert_eq!((all.len(), omitted), (40, 0));
    assert_eq!(all[0].message, "line 0 of attempt 4");
    // The run's byte count (its 64 MiB bound) is what its kept attempts hold.
    let mut conn = redis::Client::open(baton_tests::REDIS_URL)
        .expect("redis")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let key = baton_shared::keys::Keys::new(cluster.namespace.clone()).steps(&run_id);
    let fields: Vec<String> = (4..=23).map(|a| format!("talk:log_bytes@{a}")).collect();
    let kept: Vec<u64> = redis::cmd("HMGET")
        .arg(&key)
        .arg(&fields)
        .query_async(&mut conn)
        .await
        .expect("HMGET");
    let total: u64 = redis::AsyncCommands::hget(&mut conn, &key, ":log_bytes")
        .await
        .expect("HGET");
    assert_eq!(total, kept.iter().sum::<u64>());
    let gone: Option<String> = redis::AsyncCommands::hget(&mut conn, &key, "talk:input@1")
        .await
        .expect("HGET");
    assert_eq!(gone, None, "attempt 1's input went with it");
}
