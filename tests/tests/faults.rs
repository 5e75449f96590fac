//! Faults: a worker killed mid-step, a coordinator killed and restarted mid-run, a publish lost
//! between commit and confirm, a malformed queue message; and two workers sharing the load.

use std::{collections::HashSet, time::Duration};

use baton_coordinator::store::{RunCall, Store};
use baton_shared::keys::Keys;
use baton_tests::{AMQP_URL, Cluster, REDIS_URL, status};
use lapin::{
    BasicProperties,
    options::{BasicPublishOptions, QueueDeclareOptions},
    types::FieldTable,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_step_has_its_step_delivered_again() {
    let mut cluster = Cluster::start("kill9", &[("BATON_QUEUE_TYPE", "quorum")]).await;
    cluster.register("name: long\nversion: 1\nsteps:\n  - {id: s, handler: slow, timeout: 1m}\n  - {id: t, handler: echo, depends_on: [s]}\n").await;
    let w1 = cluster.spawn_worker("w1", 1);
    let run_id = cluster.submit("long", json!({"ms": 3000})).await;
    // Wait until the handler is really running, then kill -9 its worker.
    let start = std::time::Instant::now();
    while cluster.executions(&run_id, "s").await == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "the step never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.stop_worker(w1, true);
    cluster.spawn_worker("w2", 1);
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert!(
        cluster.executions(&run_id, "s").await >= 2,
        "the handler ran again after the kill"
    );
    assert_eq!(run.steps[0].worker, "w2", "the surviving worker finished it");
    assert_eq!(run.steps[0].attempt, 1, "a redelivery is the same attempt, not a retry");
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_finish_when_the_coordinator_is_killed_and_restarted_mid_run() {
    let mut cluster = Cluster::start(
        "restart",
        &[("BATON_DISPATCH_GRACE", "2s"), ("BATON_QUEUE_TYPE", "quorum")],
    )
    .await;
    cluster
        .register(
            "name: chain\nversion: 1\nsteps:\n  - {id: a, handler: slow}\n  - {id: b, handler: slow, depends_on: [a]}\n  - {id: c, handler: fail, depends_on: [b], retry: {max_attempts: 3, initial_interval: 1s, jitter: 0}}\n",
        )
        .await;
    cluster.spawn_worker("w1", 8);
    cluster.spawn_worker("w2", 8);
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            cluster
                .submit("chain", json!({"ms": 100 + (i % 5) * 100, "succeed_on_attempt": 2}))
                .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.stop_coordinator(true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.start_coordinator().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // And a graceful stop too, while retries are pending as timers.
    cluster.stop_coordinator(false);
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.start_coordinator().await;
    for id in &ids {
        let run = cluster.wait_run(id, Duration::from_secs(90)).await;
        assert_eq!(status(&run), "succeeded", "{run:#?}");
        assert_eq!(run.steps[2].attempt, 2, "c failed once and was retried once");
        assert!(cluster.executions(id, "c").await >= 2);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dispatch_committed_but_never_published_is_swept_and_run() {
    let mut cluster = Cluster::start("sweep", &[("BATON_DISPATCH_GRACE", "1s")]).await;
    let yaml = "name: swept\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n";
    cluster.register(yaml).await;
    cluster.spawn_worker("w1", 2);
    // Do what a coordinator does on submit, up to the commit, then "crash": never publish.
    let store = Store::connect(
        REDIS_URL,
        Keys::new(cluster.namespace.clone()),
        1000,
        Duration::from_secs(3600),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let run_id = baton_shared::ids::new_run_id();
    let now = baton_shared::time::now_ms();
    let created = store
        .create_run(
            &RunCall { run_id: &run_id, now },
            &baton_shared::definition::WorkflowDefinition::parse(yaml).unwrap(),
            r#"{"lost": true}"#,
            "",
            None,
            &[],
            None,
            &baton_coordinator::store::QueuedPlan::default(),
        )
        .await
        .unwrap();
    assert_eq!(created, baton_coordinator::store::CreateOutcome::Created);
    let run = cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded");
    assert_eq!(run.output_json, r#"{"a":{"lost":true}}"#);
    assert_eq!(cluster.executions(&run_id, "a").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_share_the_load() {
    let mut cluster = Cluster::start("share", &[]).await;
    cluster
        .register("name: many\nversion: 1\nsteps:\n  - {id: s, handler: slow}\n")
        .await;
    cluster.spawn_worker("w1", 2);
    cluster.spawn_worker("w2", 2);
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(cluster.submit("many", json!({"ms": 100})).await);
    }
    let mut workers = HashSet::new();
    for id in &ids {
        let run = cluster.wait_run(id, Duration::from_secs(60)).await;
        assert_eq!(status(&run), "succeeded");
        workers.insert(run.steps[0].worker.clone());
    }
    assert_eq!(
        workers,
        HashSet::from(["w1".to_string(), "w2".to_string()]),
        "both workers executed steps"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_message_goes_to_the_dead_letter_queue_and_the_worker_keeps_serving() {
    let mut cluster = Cluster::start("poison", &[("BATON_QUEUE_TYPE", "quorum")]).await;
    cluster
        .register("name: fine\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster.spawn_worker("w1", 2);
    let t = cluster.topology();
    let conn = baton_shared::amqp::connect(AMQP_URL, "poison-test").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    for payload in [&b"\xff\xfe definitely not protobuf"[..], &b""[..]] {
        let confirm = ch
            .basic_publish(
                t.exchange().as_str().into(),
                "echo".into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                payload,
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack());
    }
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let start = std::time::Instant::now();
    loop {
        let q = ch
            .queue_declare(t.dead_letter_queue().as_str().into(), passive, FieldTable::default())
            .await
            .unwrap();
        if q.message_count() == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "dead-letter queue holds {} messages, expected 2",
            q.message_count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run_id = cluster.submit("fine", json!({"after": "poison"})).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded", "the worker still serves");
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_stopped_with_sigterm_finishes_its_step_before_exiting() {
    let mut cluster = Cluster::start("sigterm", &[]).await;
    cluster
        .register("name: graceful\nversion: 1\nsteps:\n  - {id: s, handler: slow}\n")
        .await;
    let w1 = cluster.spawn_worker("w1", 2);
    let run_id = cluster.submit("graceful", json!({"ms": 1500})).await;
    let start = std::time::Instant::now();
    while cluster.executions(&run_id, "s").await == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "the step never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Blocks until the worker has exited: by then the step must be finished and reported.
    cluster.stop_worker(w1, false);
    let run = cluster.wait_run(&run_id, Duration::from_secs(2)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(run.steps[0].worker, "w1");
    assert_eq!(
        cluster.executions(&run_id, "s").await,
        1,
        "finished once, not redelivered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_effect_committed_but_never_applied_is_applied_by_the_sweeper() {
    let mut cluster = Cluster::start("effects", &[]).await;
    cluster
        .register("name: gated\nversion: 1\nsteps:\n  - {id: work, handler: echo, concurrency: {limit: 1}}\n")
        .await;
    // A coordinator committed the end of an attempt that held the pool's only slot, then died
    // before applying the effect that gives it back: the slot is still held (for an hour, by its
    // lease) and the release_slot effect waits in the namespace's effects outbox.
    let ns = cluster.namespace.clone();
    let mut conn = redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let now = baton_shared::time::now_ms();
    let ghost = "ghost-run|work|1";
    let effect = json!({"kind": "release_slot", "pool": "gated/work", "member": ghost}).to_string();
    let _: () = redis::pipe()
        .zadd(
            baton_shared::keys::Keys::new(ns.clone()).slot_holders("gated/work"),
            ghost,
            now + 3_600_000,
        )
        .ignore()
        .zadd(baton_shared::keys::Keys::new(ns.clone()).effects(), &effect, now)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    cluster.spawn_worker("w1", 1);
    let run_id = cluster.submit("gated", json!({"v": 1})).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded", "the sweeper gave the slot back: {run:#?}");
    let left: Option<f64> =
        redis::AsyncCommands::zscore(&mut conn, baton_shared::keys::Keys::new(ns.clone()).effects(), &effect)
            .await
            .unwrap();
    assert_eq!(left, None, "the applied effect left the outbox");
    let holders: Vec<String> = redis::AsyncCommands::zrange(
        &mut conn,
        baton_shared::keys::Keys::new(ns.clone()).slot_holders("gated/work"),
        0,
        -1,
    )
    .await
    .unwrap();
    assert!(holders.is_empty(), "the run's own slot went back too: {holders:?}");
}
