//! Per-step retry policies: attempt counts, backoff delays within their bounds, non-retryable
//! errors, and timeouts.

use std::time::Duration;

use baton_tests::{Cluster, ms, status, step_status};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn retryable_failures_follow_the_policy() {
    let mut cluster = Cluster::start("retry", &[]).await;
    cluster.spawn_worker("w1", 4);
    cluster
        .register(
            "name: flaky\nversion: 1\nsteps:\n  - id: f\n    handler: fail\n    retry: {max_attempts: 4, initial_interval: 300ms, backoff_coefficient: 2, max_interval: 1s, jitter: 0.5}\n",
        )
        .await;
    let run_id = cluster.submit("flaky", json!({"succeed_on_attempt": 4})).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(
        cluster.executions(&run_id, "f").await,
        4,
        "ran exactly max_attempts times"
    );
    let step = &run.steps[0];
    assert_eq!(step.attempt, 4);
    assert_eq!(step.max_attempts, 4);
    let outcomes: Vec<&str> = step.attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["failed", "failed", "failed", "succeeded"]);
    assert!(
        step.attempts[0].error.contains("attempt 1 fails"),
        "{:?}",
        step.attempts[0]
    );
    // Delay before attempt n+1 lies in [base * (1 - jitter), base] (+ dispatch latency), with base =
    // 300ms, 600ms, then 1200ms capped at max_interval 1s.
    for (i, base) in [300i64, 600, 1000].into_iter().enumerate() {
        let gap = ms(&step.attempts[i + 1].started_at) - ms(&step.attempts[i].finished_at);
        assert!(
            gap >= base / 2,
            "retry {} came after {gap} ms, before the lower bound {} ms",
            i + 1,
            base / 2
        );
        assert!(
            gap <= base + 1500,
            "retry {} came after {gap} ms, long after the upper bound {base} ms",
            i + 1
        );
    }
    let output: serde_json::Value = serde_json::from_str(&run.output_json).unwrap();
    assert_eq!(output["f"]["attempt"], 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_and_non_retryable_errors_fail_the_run() {
    let mut cluster = Cluster::start("fatal", &[]).await;
    cluster.spawn_worker("w1", 4);
    cluster
        .register(
            "name: doomed\nversion: 1\nsteps:\n  - id: f\n    handler: fail\n    retry: {max_attempts: 5, initial_interval: 50ms, non_retryable_errors: [Quota]}\n  - {id: after, handler: echo, depends_on: [f]}\n",
        )
        .await;
    let fatal = cluster.submit("doomed", json!({"fatal": true})).await;
    let listed = cluster.submit("doomed", json!({"error_type": "Quota"})).await;
    let exhausted = cluster.submit("doomed", json!({"succeed_on_attempt": 99})).await;

    let run = cluster.wait_run(&fatal, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "failed");
    assert_eq!(
        cluster.executions(&fatal, "f").await,
        1,
        "a non-retryable error is not retried"
    );
    assert_eq!(step_status(&run, "f"), "failed");
    assert_eq!(
        step_status(&run, "after"),
        "cancelled",
        "what follows a failed step never runs"
    );
    assert_eq!(cluster.executions(&fatal, "after").await, 0);
    assert!(run.error.contains("Fatal"), "{}", run.error);

    let run = cluster.wait_run(&listed, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "failed");
    assert_eq!(
        cluster.executions(&listed, "f").await,
        1,
        "an error type in non_retryable_errors is not retried"
    );

    let run = cluster.wait_run(&exhausted, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "failed");
    assert_eq!(
        cluster.executions(&exhausted, "f").await,
        5,
        "retried up to max_attempts"
    );
    assert_eq!(run.steps[0].attempts.len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_that_outlives_its_timeout_is_retried() {
    let mut cluster = Cluster::start("timeout", &[]).await;
    cluster.spawn_worker("w1", 4);
    cluster
        .register("name: sluggish\nversion: 1\nsteps:\n  - id: s\n    handler: slow\n    timeout: 500ms\n    retry: {max_attempts: 3, initial_interval: 100ms}\n")
        .await;
    // Attempt 1 sleeps 5 s, far past its 500 ms timeout; attempt 2 is quick.
    let run_id = cluster.submit("sluggish", json!({"ms": 5000, "only_attempt": 1})).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    let step = &run.steps[0];
    assert_eq!(step.attempt, 2);
    assert!(step.attempts[0].error.contains("Timeout"), "{:?}", step.attempts[0]);
    let took = ms(&step.attempts[0].finished_at) - ms(&step.attempts[0].started_at);
    assert!(
        took < 4000,
        "the timed-out attempt was cut off at its timeout, not after the handler's 5 s ({took} ms)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_that_stops_heartbeating_is_timed_out_by_the_coordinator_and_retried() {
    let mut cluster = Cluster::start("heartbeat", &[]).await;
    cluster.spawn_worker("w1", 4);
    // The worker enforces only the 1-minute start-to-close timeout; the 600 ms heartbeat timeout is
    // the coordinator's durable timer, and `slow` never heartbeats.
    cluster
        .register(
            "name: silent\nversion: 1\nsteps:\n  - id: s\n    handler: slow\n    timeout: 1m\n    heartbeat_timeout: 600ms\n    retry: {max_attempts: 2, initial_interval: 100ms}\n",
        )
        .await;
    let run_id = cluster.submit("silent", json!({"ms": 4000, "only_attempt": 1})).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    let step = &run.steps[0];
    assert_eq!(step.attempt, 2);
    assert_eq!(step.attempts[0].outcome, "timed_out");
    assert!(
        step.attempts[0].error.contains("HeartbeatTimeout"),
        "{:?}",
        step.attempts[0]
    );
    let silent_for = ms(&step.attempts[0].finished_at) - ms(&step.attempts[0].started_at);
    assert!(
        (600..3500).contains(&silent_for),
        "declared dead after {silent_for} ms of silence"
    );
    // The first attempt's late result, when its 4 s sleep ends, is stale and changes nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = cluster.wait_run(&run_id, Duration::from_secs(5)).await;
    assert_eq!(later, run);
}
