//! Run operations (cancel, retry, rerun) and custom progress events.

use std::time::Duration;

use baton_shared::proto::{CancelRunRequest, RerunRunRequest, RetryRunRequest, WatchRunRequest};
use baton_tests::{Cluster, status, step_status};
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tonic::Code;

async fn wait_started(cluster: &Cluster, run_id: &str, step: &str) {
    let start = std::time::Instant::now();
    while cluster.executions(run_id, step).await == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "{step} never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_run_stops_its_running_handler_and_what_follows() {
    let mut cluster = Cluster::start("cancel", &[]).await;
    cluster.register("name: long\nversion: 1\nsteps:\n  - {id: a, handler: patient}\n  - {id: b, handler: echo, depends_on: [a]}\n").await;
    cluster.spawn_worker("w1", 2);
    let run_id = cluster.submit("long", json!({"ticks": 600, "ms": 100})).await;
    wait_started(&cluster, &run_id, "a").await;
    let mut runs = cluster.runs().await;
    let cancelled = std::time::Instant::now();
    runs.cancel_run(CancelRunRequest {
        run_id: run_id.clone(),
        reason: "changed my mind".into(),
    })
    .await
    .unwrap();
    let run = cluster.wait_run(&run_id, Duration::from_secs(5)).await;
    assert_eq!(status(&run), "cancelled");
    assert!(run.error.contains("changed my mind"), "{}", run.error);
    assert_eq!(step_status(&run, "a"), "cancelled");
    assert_eq!(step_status(&run, "b"), "cancelled");
    // The running handler saw the cancellation through its context, long before its 60 s of work.
    while cluster.count("saw-cancel", &run_id, "a").await == 0 {
        assert!(
            cancelled.elapsed() < Duration::from_secs(10),
            "the handler never saw the cancel"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cluster.executions(&run_id, "b").await, 0);
    let err = runs
        .cancel_run(CancelRunRequest {
            run_id: run_id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::FailedPrecondition,
        "a finished run cannot be cancelled"
    );
    // Its late report changed nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cluster.wait_run(&run_id, Duration::from_secs(5)).await, run);
}

#[tokio::test(flavor = "multi_thread")]
async fn retrying_a_failed_run_reruns_only_what_failed_and_what_follows() {
    let mut cluster = Cluster::start("retryrun", &[]).await;
    cluster
        .register(
            "name: twice\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n  - {id: b, handler: fail, depends_on: [a], retry: {max_attempts: 2, initial_interval: 50ms}}\n  - {id: c, handler: echo, depends_on: [b]}\n",
        )
        .await;
    cluster.spawn_worker("w1", 4);
    // b fails its two attempts; after the retry it has two more, and succeeds on the second of them.
    let run_id = cluster.submit("twice", json!({"succeed_on_attempt": 4})).await;
    let failed = cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&failed), "failed");
    assert_eq!(step_status(&failed, "c"), "cancelled");

    let mut runs = cluster.runs().await;
    let answer = runs
        .retry_run(RetryRunRequest { run_id: run_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.dispatched_steps, ["b"]);
    let run = cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(
        cluster.executions(&run_id, "a").await,
        1,
        "a's output was kept, not recomputed"
    );
    assert_eq!(
        cluster.executions(&run_id, "b").await,
        4,
        "the retry policy applied afresh after the retry"
    );
    assert_eq!(cluster.executions(&run_id, "c").await, 1);
    let b = run.steps.iter().find(|s| s.id == "b").unwrap();
    assert_eq!(
        b.attempt, 4,
        "attempt numbers go on, so earlier attempts' results stay stale"
    );
    let outcomes: Vec<&str> = b.attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["failed", "failed", "failed", "succeeded"]);

    let err = runs
        .retry_run(RetryRunRequest { run_id: run_id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "nothing left to retry");
}

#[tokio::test(flavor = "multi_thread")]
async fn rerunning_from_a_step_with_a_new_input_keeps_the_steps_before_it() {
    let mut cluster = Cluster::start("rerun", &[]).await;
    cluster
        .register(
            "name: pair\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n  - {id: b, handler: echo, depends_on: [a]}\n",
        )
        .await;
    cluster.spawn_worker("w1", 4);
    let run_id = cluster.submit("pair", json!({"v": 1})).await;
    assert_eq!(
        status(&cluster.wait_run(&run_id, Duration::from_secs(30)).await),
        "succeeded"
    );

    let mut runs = cluster.runs().await;
    let err = runs
        .rerun_run(RerunRunRequest {
            run_id: run_id.clone(),
            from_step: "zz".into(),
            input_json: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("from_step"), "{}", err.message());
    let answer = runs
        .rerun_run(RerunRunRequest {
            run_id: run_id.clone(),
            from_step: "b".into(),
            input_json: r#"{"v": 2}"#.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.dispatched_steps, ["b"]);
    let run = cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded");
    assert_eq!(cluster.executions(&run_id, "a").await, 1);
    assert_eq!(cluster.executions(&run_id, "b").await, 2);
    let output: Value = serde_json::from_str(&run.output_json).unwrap();
    assert_eq!(output["b"], json!({"v": 2}), "b ran on the new input");
    assert_eq!(run.steps[0].output_json, r#"{"v":1}"#, "a kept its output");
}

#[tokio::test(flavor = "multi_thread")]
async fn handlers_progress_events_are_streamed_with_the_step_events() {
    let mut cluster = Cluster::start("emit", &[]).await;
    cluster
        .register("name: ticking\nversion: 1\nsteps:\n  - {id: a, handler: patient}\n")
        .await;
    cluster.spawn_worker("w1", 2);
    let run_id = cluster.submit("ticking", json!({"ticks": 3, "ms": 20})).await;
    assert_eq!(
        status(&cluster.wait_run(&run_id, Duration::from_secs(30)).await),
        "succeeded"
    );
    let mut stream = cluster
        .runs()
        .await
        .watch_run(WatchRunRequest { run_id, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(e) = stream.next().await {
        let e = e.unwrap();
        match e.kind.as_str() {
            "custom" => seen.push(e.payload_json),
            "step" if e.status == "running" => seen.push("running".into()),
            "step" if e.status == "succeeded" => seen.push("succeeded".into()),
            _ => {}
        }
    }
    assert_eq!(
        seen,
        [
            "running",
            r#"{"tick":0}"#,
            r#"{"tick":1}"#,
            r#"{"tick":2}"#,
            "succeeded"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_durable_sleep_survives_a_coordinator_restart_and_holds_no_worker() {
    let mut cluster = Cluster::start("sleep", &[("BATON_DISPATCH_GRACE", "1s")]).await;
    cluster
        .register(
            "name: nap\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n  - {id: rest, sleep: 2s, depends_on: [a]}\n  - {id: b, handler: echo, depends_on: [rest]}\n",
        )
        .await;
    // One worker with one slot: if a sleep held a slot, the second run could not proceed meanwhile.
    cluster.spawn_worker("w1", 1);
    let sleeper = cluster.submit("nap", json!({"n": 1})).await;
    wait_started(&cluster, &sleeper, "a").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster
        .register("name: quick\nversion: 1\nsteps:\n  - {id: q, handler: echo}\n")
        .await;
    let quick = cluster.submit("quick", json!({})).await;
    let q = cluster.wait_run(&quick, Duration::from_secs(1)).await;
    assert_eq!(status(&q), "succeeded", "the sleeping run holds no worker slot");

    // Kill the coordinator in the middle of the sleep; the timer is in Redis.
    cluster.stop_coordinator(true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    cluster.start_coordinator().await;
    let run = cluster.wait_run(&sleeper, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    let rest = run.steps.iter().find(|s| s.id == "rest").unwrap();
    assert_eq!(rest.output_json, r#"{"slept_ms":2000}"#);
    let slept = baton_tests::ms(&rest.finished_at) - baton_tests::ms(&rest.started_at);
    assert!(slept >= 1900, "woke after {slept} ms");
    assert_eq!(
        cluster.executions(&sleeper, "a").await,
        1,
        "no completed step ran again after the restart"
    );
    assert_eq!(cluster.executions(&sleeper, "b").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_outlives_its_timeout_ends_timed_out() {
    let mut cluster = Cluster::start("runtimeout", &[]).await;
    cluster
        .register("name: bounded\nversion: 1\ntimeout: 1s\nsteps:\n  - {id: a, handler: patient}\n  - {id: b, handler: echo, depends_on: [a]}\n")
        .await;
    cluster
        .register("name: bounded_ok\nversion: 1\ntimeout: 30s\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster.spawn_worker("w1", 2);
    let slow = cluster.submit("bounded", json!({"ticks": 600, "ms": 100})).await;
    let quick = cluster.submit("bounded_ok", json!({})).await;
    let run = cluster.wait_run(&slow, Duration::from_secs(15)).await;
    assert_eq!(status(&run), "timed_out", "{run:#?}");
    assert!(run.error.contains("timeout of 1s"), "{}", run.error);
    assert_eq!(step_status(&run, "a"), "cancelled");
    assert_eq!(step_status(&run, "b"), "cancelled");
    let took = baton_tests::ms(&run.finished_at) - baton_tests::ms(&run.created_at);
    assert!((1000..5000).contains(&took), "timed out after {took} ms");
    let start = std::time::Instant::now();
    while cluster.count("saw-cancel", &slow, "a").await == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the handler was never told");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        status(&cluster.wait_run(&quick, Duration::from_secs(15)).await),
        "succeeded",
        "a run within its timeout is untouched"
    );
}
