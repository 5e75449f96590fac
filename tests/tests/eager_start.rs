//! Eager start (`BATON_EAGER_START=true`): the worker sends StartStep and runs the handler at once,
//! reports only after the start answered PROCEED, and abandons the work on any other answer.

use std::time::{Duration, Instant};

use baton_shared::proto::StepTask;
use baton_tests::{AMQP_URL, Cluster, status, step_status};
use lapin::{BasicProperties, options::BasicPublishOptions};
use prost::Message;
use serde_json::json;

const EAGER: [(&str, &str); 1] = [("BATON_EAGER_START", "true")];

#[tokio::test(flavor = "multi_thread")]
async fn an_eager_worker_runs_a_chain_with_progress_events_and_a_retry_and_each_result_counts_once() {
    let mut cluster = Cluster::start("eager-chain", &[]).await;
    cluster
        .register(
            "name: eager\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n  - {id: b, handler: patient, depends_on: [a]}\n  - id: c\n    handler: fail\n    depends_on: [b]\n    retry: {max_attempts: 3, initial_interval: 50ms}\n",
        )
        .await;
    cluster.spawn_worker_with("eager-w", 2, &EAGER);
    let run_id = cluster
        .submit("eager", json!({"ticks": 3, "ms": 10, "succeed_on_attempt": 2}))
        .await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    // The progress events (emitted before the start's answer could have come) were accepted.
    let b = run.steps.iter().find(|s| s.id == "b").expect("step b");
    assert_eq!(b.attempts.len(), 1, "{b:#?}");
    let c = run.steps.iter().find(|s| s.id == "c").expect("step c");
    assert_eq!(c.attempts.len(), 2, "one failed attempt, then a success: {c:#?}");
    assert_eq!(cluster.executions(&run_id, "a").await, 1);
    assert_eq!(cluster.executions(&run_id, "b").await, 1);
    assert_eq!(cluster.executions(&run_id, "c").await, 2);
}

/// Publishes a second copy of attempt 1 of `step`, as a re-send after a lost confirm would.
async fn publish_copy(
    cluster: &Cluster,
    run_id: &str,
    step: &str,
    handler: &str,
    workflow: &str,
    input: &serde_json::Value,
) {
    let task = StepTask {
        run_id: run_id.into(),
        step_id: step.into(),
        attempt: 1,
        handler: handler.into(),
        workflow: workflow.into(),
        workflow_version: 1,
        input_json: input.to_string(),
        timeout_ms: 60_000,
        ..Default::default()
    };
    let conn = baton_shared::amqp::connect(AMQP_URL, "eager-test").await.expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(Default::default()).await.expect("confirms");
    let confirm = ch
        .basic_publish(
            cluster.topology().exchange().as_str().into(),
            handler.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &task.encode_to_vec(),
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(
        confirm.is_ack() && confirm.take_message().is_none(),
        "the copy was routed"
    );
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_eager_worker_abandons_a_duplicate_copy_and_only_the_holders_result_counts() {
    let mut cluster = Cluster::start("eager-dup", &[]).await;
    cluster
        .register("name: eager-slow\nversion: 1\nsteps:\n  - {id: s, handler: slow, timeout: 1m}\n")
        .await;
    cluster.spawn_worker_with("eager-a", 1, &EAGER);
    cluster.spawn_worker_with("eager-b", 1, &EAGER);
    let input = json!({"ms": 3000});
    let run_id = cluster.submit("eager-slow", input.clone()).await;
    let running = cluster
        .wait_step(&run_id, "s", "running", Duration::from_secs(30))
        .await;
    let holder = running.steps[0].worker.clone();
    let other = if holder == "eager-a" { "eager-b" } else { "eager-a" };
    publish_copy(&cluster, &run_id, "s", "slow", "eager-slow", &input).await;
    let start = Instant::now();
    while !std::fs::read_to_string(cluster.log_path(other))
        .unwrap_or_default()
        .contains("dropping a duplicate copy of a task")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{other} never dropped the copy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(step_status(&cluster.get_run(&run_id).await, "s"), "running");
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(run.steps[0].worker, holder, "the holder's result counts");
    assert_eq!(run.steps[0].attempts.len(), 1, "{:#?}", run.steps[0].attempts);
}
