//! Concurrency slots and rate limits (Redis), end to end.

use std::time::{Duration, Instant};

use baton_shared::proto::GetRunRequest;
use baton_tests::{Cluster, REDIS_URL, status, step_status};
use redis::AsyncCommands;
use serde_json::json;

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

const GUARDED: &str = r#"
name: guarded
version: 1
steps:
  - id: work
    handler: guarded
    timeout: 20s
    concurrency: {limit: 3, key: input.pool}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_limit_of_three_never_has_four_holders_and_waiting_steps_hold_no_worker() {
    let mut cluster = Cluster::start("slots", &[]).await;
    cluster.register(GUARDED).await;
    // More worker capacity than slots: only the slots can hold the runs back.
    cluster.spawn_worker("w1", 16);
    let mut ids = Vec::new();
    for i in 0..50 {
        // Two pools: "a" gets 40 runs, "b" 10, each with its own 3 slots.
        let pool = if i % 5 == 0 { "b" } else { "a" };
        ids.push(cluster.submit("guarded", json!({"pool": pool, "ms": 150})).await);
    }
    // While they run, a waiting step shows what it waits for and who holds it.
    let mut saw_waiting = false;
    let start = Instant::now();
    while !saw_waiting && start.elapsed() < Duration::from_secs(10) {
        for id in ids.iter().rev().take(10) {
            let run = cluster
                .runs()
                .await
                .get_run(GetRunRequest {
                    run_id: id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            if step_status(&run, "work") == "waiting" {
                let s = &run.steps[0];
                assert!(s.slot.starts_with("guarded/work/"), "{s:?}");
                assert!(s.waiting_for.contains("limit 3"), "{s:?}");
                assert!(!s.slot_holders.is_empty() && s.slot_holders.len() <= 3, "{s:?}");
                saw_waiting = true;
                break;
            }
        }
    }
    assert!(saw_waiting, "no step was ever seen waiting for a slot");
    for id in &ids {
        let run = cluster.wait_run(id, Duration::from_secs(120)).await;
        assert_eq!(status(&run), "succeeded", "{run:#?}");
    }
    let mut conn = redis().await;
    for pool in ["a", "b"] {
        let most: i64 = conn
            .get(
                baton_shared::keys::Keys::new(cluster.namespace.clone()).namespaced(&format!("test:max-inside:{pool}")),
            )
            .await
            .unwrap();
        assert!(most <= 3, "pool {pool} had {most} holders at once");
        if pool == "a" {
            // 40 runs of 150 ms submitted at once: the pool's three slots were all in use.
            assert_eq!(most, 3, "pool {pool} used its three slots");
        }
        let holders: i64 = conn
            .zcard(
                baton_shared::keys::Keys::new(cluster.namespace.clone()).slot_holders(&format!("guarded/work/{pool}")),
            )
            .await
            .unwrap();
        assert_eq!(holders, 0, "every slot was given back");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_held_by_a_killed_worker_is_recovered() {
    let mut cluster = Cluster::start("slots-kill", &[("BATON_QUEUE_TYPE", "quorum")]).await;
    cluster
        .register("name: one\nversion: 1\nsteps:\n  - {id: work, handler: guarded, timeout: 3s, retry: {max_attempts: 3, initial_interval: 100ms}, concurrency: {limit: 1}}\n")
        .await;
    let doomed = cluster.spawn_worker("w1", 4);
    let first = cluster.submit("one", json!({"pool": "k", "ms": 60_000})).await;
    let second = cluster.submit("one", json!({"pool": "k", "ms": 50})).await;
    let start = Instant::now();
    while cluster.executions(&first, "work").await == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "the first run never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // kill -9 the worker in the middle of the slot holder's 60 s of work.
    cluster.stop_worker(doomed, true);
    cluster.spawn_worker("w2", 4);
    // The holder's attempt times out after 3 s (nobody runs it any more, or its redelivery runs
    // into the same 60 s), gives its slot back, and the second run gets it.
    let run = cluster.wait_run(&second, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    cluster
        .runs()
        .await
        .cancel_run(baton_shared::proto::CancelRunRequest {
            run_id: first.clone(),
            reason: "done".into(),
        })
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_spaces_the_starts() {
    let mut cluster = Cluster::start("rate", &[]).await;
    cluster
        .register("name: limited\nversion: 1\nsteps:\n  - {id: call, handler: guarded, rate_limit: {limit: 2, period: 1s, key: input.pool}}\n")
        .await;
    cluster.spawn_worker("w1", 16);
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(cluster.submit("limited", json!({"pool": "api", "ms": 1})).await);
    }
    // The limit holds when the coordinator lets the steps go to the workers: their dispatch times.
    let mut dispatched = Vec::new();
    for id in &ids {
        let run = cluster.wait_run(id, Duration::from_secs(30)).await;
        assert_eq!(status(&run), "succeeded", "{run:#?}");
        dispatched.push(baton_tests::ms(&run.steps[0].dispatched_at));
    }
    dispatched.sort_unstable();
    for w in dispatched.windows(3) {
        assert!(
            w[2] - w[0] >= 1000,
            "three starts within {} ms: {dispatched:?}",
            w[2] - w[0]
        );
    }
    // And the handlers ran six times, the later ones spread over the seconds that took.
    let mut conn = redis().await;
    let starts: Vec<i64> = conn
        .lrange(
            baton_shared::keys::Keys::new(cluster.namespace.clone()).namespaced("test:starts:api"),
            0,
            -1,
        )
        .await
        .unwrap();
    assert_eq!(starts.len(), 6);
    assert!(dispatched[5] - dispatched[0] >= 2000, "{dispatched:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_concurrent_runs_queues_runs_per_key_until_a_run_slot_frees() {
    let mut cluster = Cluster::start("run-slots", &[]).await;
    cluster
        .register("name: tenants\nversion: 1\nmax_concurrent_runs: 2\nconcurrency_key: input.pool\nsteps:\n  - {id: one, handler: guarded}\n  - {id: two, handler: guarded, depends_on: [one]}\n")
        .await;
    cluster.spawn_worker("w1", 16);
    let mut ids = Vec::new();
    for i in 0..10 {
        let pool = if i < 8 { "tenant-a" } else { "tenant-b" };
        ids.push(cluster.submit("tenants", json!({"pool": pool, "ms": 100})).await);
    }
    // The last runs of tenant a wait, pending, for a run slot.
    let queued = cluster
        .runs()
        .await
        .get_run(GetRunRequest {
            run_id: ids[7].clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status(&queued), "pending");
    assert!(queued.waiting_for.contains("tenants/run/tenant-a"), "{queued:#?}");
    for id in &ids {
        let run = cluster.wait_run(id, Duration::from_secs(60)).await;
        assert_eq!(status(&run), "succeeded", "{run:#?}");
    }
    let mut conn = redis().await;
    let most_a: i64 = conn
        .get(baton_shared::keys::Keys::new(cluster.namespace.clone()).namespaced("test:max-inside:tenant-a"))
        .await
        .unwrap();
    assert_eq!(most_a, 2, "two runs of tenant a at once, never more");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_started_attempt_leases_its_slot_to_the_end_of_its_timeout_and_gives_it_back() {
    let mut cluster = Cluster::start("slot-lease", &[]).await;
    cluster
        .register(
            "name: leased\nversion: 1\nsteps:\n  - {id: work, handler: slow, timeout: 5m, concurrency: {limit: 1}}\n",
        )
        .await;
    cluster.spawn_worker("w1", 1);
    let before = baton_shared::time::now_ms();
    let run_id = cluster.submit("leased", json!({"ms": 1500})).await;
    cluster
        .wait_step(&run_id, "work", "running", Duration::from_secs(30))
        .await;
    let holders = baton_shared::keys::Keys::new(cluster.namespace.clone()).slot_holders("leased/work");
    let member = format!("{run_id}|work|1");
    let mut conn = redis().await;
    // The lease a start sets (timeout + 60 s margin from the start) is shorter than the one the
    // dispatch took (which also covers the dispatch grace and 10 min of queueing): it is applied
    // in the background, so look for a few seconds.
    let start = Instant::now();
    loop {
        let lease: Option<f64> = conn.zscore(&holders, &member).await.unwrap();
        let lease = lease.expect("the attempt holds the slot") as i64;
        let after = baton_shared::time::now_ms();
        if lease <= after + 360_000 {
            assert!(
                lease >= before + 360_000,
                "lease {lease} ends with the attempt's timeout and margin"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the start never extended the lease: {lease}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let run = cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded");
    let left: Vec<String> = conn.zrange(&holders, 0, -1).await.unwrap();
    assert!(left.is_empty(), "the slot went back at the end: {left:?}");
}
