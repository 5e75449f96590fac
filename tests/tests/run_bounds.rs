//! Runs whose size could stall everyone, and attempt histories that could grow without bound
//! (issue 17, items 6 and 8), through the real API: a definition over the step limit and retry
//! policies over their bounds are refused naming the field; a step retried many times with a long
//! error keeps a bounded history in Redis and in GetRun, and counts the attempts it no longer shows.

use std::time::Duration;

use baton_shared::{
    limits::{KEPT_ATTEMPTS, MAX_ATTEMPT_ERROR_BYTES, MAX_STEPS},
    proto::{RegisterWorkflowRequest, Run, StepRun},
};
use baton_tests::{Cluster, REDIS_URL, status};
use prost::Message;
use serde_json::json;
use tonic::Code;

fn step<'a>(run: &'a Run, id: &str) -> &'a StepRun {
    run.steps.iter().find(|s| s.id == id).expect("step")
}

/// Registers `doc` and returns the refusal; panics if it is accepted.
async fn refused(cluster: &Cluster, doc: &str) -> tonic::Status {
    cluster
        .workflows()
        .await
        .register_workflow(RegisterWorkflowRequest { definition: doc.into() })
        .await
        .expect_err("refused")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_definition_over_the_step_limit_and_retry_policies_over_their_bounds_are_refused_naming_the_field() {
    let cluster = Cluster::start("bounds-steps", &[]).await;
    let steps = |n: usize| -> String { (0..n).map(|i| format!("  - {{id: s{i}, handler: echo}}\n")).collect() };

    let e = refused(&cluster, &format!("name: huge\nversion: 1\nsteps:\n{}", steps(MAX_STEPS + 1))).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("steps: 1001 steps is over the limit of 1000 steps per workflow"),
        "{}",
        e.message()
    );
    // The limit itself is accepted.
    cluster
        .register(&format!("name: largest\nversion: 1\nsteps:\n{}", steps(MAX_STEPS)))
        .await;

    let e = refused(
        &cluster,
        "name: busy\nversion: 1\nsteps:\n  - {id: a, handler: fail, retry: {max_attempts: 100000, initial_interval: 1ns}}\n",
    )
    .await;
    assert_eq!(e.code(), Code::InvalidArgument);
    for said in [
        "steps[0].retry.max_attempts: 100000 is over the limit of 1000 attempts",
        "steps[0].retry.initial_interval: must be at least 10ms (got \"1ns\")",
    ] {
        assert!(e.message().contains(said), "{said:?} not in {}", e.message());
    }
    let e = refused(
        &cluster,
        "name: busy\nversion: 1\nsteps:\n  - {id: a, handler: fail, retry: {max_attempts: 4294967295, max_interval: 9ms}}\n",
    )
    .await;
    assert!(e.message().contains("steps[0].retry.max_interval: must be at least 10ms"), "{}", e.message());
    assert!(e.message().contains("steps[0].retry.max_attempts: 4294967295 is over"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_failing_many_times_with_a_long_message_keeps_a_bounded_history_and_counts_the_rest() {
    let mut cluster = Cluster::start("bounds-history", &[]).await;
    const ATTEMPTS: u32 = 45;
    const MESSAGE_BYTES: usize = 16 * 1024;
    cluster
        .register(&format!(
            "name: stubborn\nversion: 1\nsteps:\n  - id: call\n    handler: fail\n    retry: {{max_attempts: {ATTEMPTS}, \
             initial_interval: 10ms, max_interval: 10ms, jitter: 0}}\n"
        ))
        .await;
    cluster.spawn_worker("w1", 4);
    let run_id = cluster
        .submit("stubborn", json!({"succeed_on_attempt": 10_000, "message_bytes": MESSAGE_BYTES}))
        .await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(180)).await;
    assert_eq!(status(&run), "failed");
    let s = step(&run, "call");
    assert_eq!(s.attempt, ATTEMPTS, "the step's own attempt number is the last one");
    assert_eq!(s.attempts.len(), KEPT_ATTEMPTS, "only the last attempts are kept");
    assert_eq!(s.earlier_attempts, ATTEMPTS - KEPT_ATTEMPTS as u32, "the others are counted");
    let numbers: Vec<u32> = s.attempts.iter().map(|a| a.number).collect();
    let want: Vec<u32> = (ATTEMPTS - KEPT_ATTEMPTS as u32 + 1..=ATTEMPTS).collect();
    assert_eq!(numbers, want, "the kept attempts are the last ones, oldest first");
    for a in &s.attempts {
        assert_eq!(a.outcome, "failed");
        assert!(a.error.ends_with("… (cut)"), "{}", &a.error[..80]);
        assert!(a.error.len() <= MAX_ATTEMPT_ERROR_BYTES + "… (cut)".len(), "{}", a.error.len());
        assert!(a.error.starts_with(&format!("attempt {} fails on purpose", a.number)));
    }
    // The step's own error (and the run's) is the last attempt's, whole.
    assert!(s.error.starts_with(&format!("attempt {ATTEMPTS} fails on purpose")), "{}", &s.error[..80]);
    assert!(s.error.len() >= MESSAGE_BYTES - 64 && !s.error.contains("(cut)"), "{}", s.error.len());

    // What Redis holds for the run and what GetRun answers stay bounded: without the bound the
    // history alone would be 45 x 16 KiB = 720 KiB (and 4.95 MB after 300 attempts).
    let mut redis = redis::Client::open(REDIS_URL)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys = baton_shared::keys::Keys::new(&cluster.namespace);
    let history: usize = redis::cmd("HSTRLEN")
        .arg(keys.steps(&run_id))
        .arg("call:history")
        .query_async(&mut redis)
        .await
        .expect("HSTRLEN");
    let memory: usize = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(keys.steps(&run_id))
        .query_async(&mut redis)
        .await
        .expect("MEMORY USAGE");
    let answer = run.encoded_len();
    eprintln!("history {history} bytes, steps hash {memory} bytes, GetRun {answer} bytes");
    assert!(history <= KEPT_ATTEMPTS * (MAX_ATTEMPT_ERROR_BYTES + 200), "history is {history} bytes");
    assert!(memory <= 64 * 1024, "the run's steps hash is {memory} bytes");
    assert!(answer <= 64 * 1024, "GetRun answers {answer} bytes");
}
