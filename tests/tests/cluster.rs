//! Baton on a Redis Cluster (`redis_url = "redis+cluster://..."`): a coordinator and a worker on a
//! 6-node cluster of the test's own (`deploy/local/cluster.sh`) run the core cases end to end (a
//! DAG, retries, a fan-out, a child workflow, an event delivered to a waiting step, a schedule, a
//! concurrency pool, a human task), and with `durability = "replicated"` (and two replicas per
//! primary) they lose no run when the primary that owns the namespace's slot is killed while runs
//! are in flight.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use baton_shared::{
    keys::{Keys, Scope},
    proto::{CompleteHumanTaskRequest, CreateScheduleRequest, ListScheduleTicksRequest, Run, SubmitRunRequest},
};
use baton_tests::{Cluster, ClusterOptions, RedisCluster, ServingStatus, ms, redis_cluster::NODE_TIMEOUT_MS, status};
use serde_json::{Value, json};

const MINUTE: Duration = Duration::from_secs(60);

fn output(run: &Run, id: &str) -> Value {
    let step = run.steps.iter().find(|s| s.id == id).expect("the step");
    serde_json::from_str(&step.output_json).unwrap_or(Value::Null)
}

/// A coordinator of a fresh namespace on `redis`, with `env` over the defaults.
async fn coordinator_on(redis: &RedisCluster, test: &str, env: &[(&str, &str)]) -> Cluster {
    Cluster::start_with(
        test,
        ClusterOptions {
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            redis_url: Some(redis.url.clone()),
            ..Default::default()
        },
    )
    .await
}

const DIAMOND: &str = "name: diamond\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n  - {id: b, handler: echo, depends_on: [a]}\n  - {id: c, handler: trace, depends_on: [a]}\n  - {id: d, handler: trace, depends_on: [b, c]}\n";
const RETRIES: &str = "name: flaky\nversion: 1\nsteps:\n  - {id: try, handler: fail, retry: {max_attempts: 3, initial_interval: 100ms}}\n";
const FAN_OUT: &str = "name: squares\nversion: 1\nsteps:\n  - {id: each, handler: square, for_each: input.items, max_parallel: 5, retry: {max_attempts: 2, initial_interval: 50ms}}\n";
const KID: &str = "name: kid\nversion: 1\nsteps:\n  - {id: hello, handler: echo}\n";
const PARENT: &str = "name: parent\nversion: 1\nsteps:\n  - id: child\n    workflow: {name: kid}\n    input: {word: \"${{ input.word }}\"}\n  - {id: after, handler: trace, depends_on: [child]}\n";
const WAITER: &str = "name: waiter\nversion: 1\nsteps:\n  - {id: first, handler: echo}\n  - id: paid\n    depends_on: [first]\n    wait_for_event: {event: payment, key: input.order, timeout: 1h}\n";
const GUARDED: &str = "name: guarded\nversion: 1\nsteps:\n  - id: work\n    handler: guarded\n    timeout: 20s\n    concurrency: {limit: 2, key: input.pool}\n";
const APPROVAL: &str = "name: approval\nversion: 1\nsteps:\n  - id: approve\n    human:\n      title: Approve\n      assignees: [alice]\n      form: {type: object, required: [ok], properties: {ok: {type: boolean}}}\n  - {id: publish, handler: trace, depends_on: [approve]}\n";
const TICK: &str = "name: tick\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n";

#[tokio::test(flavor = "multi_thread")]
async fn the_core_cases_run_on_a_redis_cluster() {
    let redis = RedisCluster::start().await;
    let mut c = coordinator_on(&redis, "cluster-core", &[]).await;
    for def in [DIAMOND, RETRIES, FAN_OUT, KID, PARENT, WAITER, GUARDED, APPROVAL, TICK] {
        c.register(def).await;
    }
    c.spawn_worker("w1", 16);

    // Submitted together, so that they share the cluster at once.
    let dag = c.submit("diamond", json!({"v": 1})).await;
    let flaky = c.submit("flaky", json!({"succeed_on_attempt": 3})).await;
    let items: Vec<Value> = (0..20).map(|i| json!({"n": i, "fail_once": i % 7 == 3})).collect();
    let fan = c.submit("squares", json!({"items": items})).await;
    let parent = c.submit("parent", json!({"word": "hi"})).await;
    let waiter = c.submit("waiter", json!({"order": "A-1"})).await;
    let guarded: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..8 {
            ids.push(c.submit("guarded", json!({"pool": "p", "ms": 100})).await);
        }
        ids
    };
    let approval = c.submit("approval", json!({})).await;
    c.schedules()
        .await
        .create_schedule(CreateScheduleRequest {
            id: "every-second".into(),
            workflow: "tick".into(),
            cron: "* * * * * *".into(),
            input_json: json!({"from": "cron"}).to_string(),
            ..Default::default()
        })
        .await
        .expect("create schedule");

    // A DAG: fan-in after both branches.
    let run = c.wait_run(&dag, MINUTE).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(output(&run, "d")["received"]["b"], json!({"v": 1}));
    for step in ["a", "b", "c", "d"] {
        assert_eq!(c.executions(&dag, step).await, 1, "{step} ran once");
    }

    // Retries: two failed attempts, then success on the third.
    let run = c.wait_run(&flaky, MINUTE).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(output(&run, "try"), json!({"attempt": 3}));
    assert_eq!(c.executions(&flaky, "try").await, 3);

    // A fan-out: every element once (twice for those failing their first attempt), in order.
    let run = c.wait_run(&fan, MINUTE).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(
        output(&run, "each"),
        json!((0..20).map(|i| i * i).collect::<Vec<i64>>())
    );
    for (i, n) in c.item_executions(&fan, "each").await {
        assert_eq!(n, if i % 7 == 3 { 2 } else { 1 }, "element {i}");
    }

    // A child workflow: its output is the step's.
    let run = c.wait_run(&parent, MINUTE).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(run.child_run_ids.len(), 1);
    let child = c.get_run(&run.child_run_ids[0]).await;
    assert_eq!(status(&child), "succeeded");
    assert_eq!(child.parent_run_id, parent);
    assert_eq!(
        output(&run, "after")["received"]["child"]["hello"],
        json!({"word": "hi"})
    );

    // An event delivered to a waiting step.
    c.wait_step(&waiter, "paid", "waiting", MINUTE).await;
    let sent = c.publish("payment", "A-1", json!({"amount": 42})).await;
    assert_eq!(sent.delivered.len(), 1, "{sent:?}");
    let run = c.wait_run(&waiter, MINUTE).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(output(&run, "paid"), json!({"amount": 42}));

    // A concurrency pool of 2: never 3 inside at once, every slot given back.
    for id in &guarded {
        let run = c.wait_run(id, MINUTE).await;
        assert_eq!(status(&run), "succeeded", "{run:#?}");
    }
    let most = c.count_key("test:max-inside:p").await;
    assert!((1..=2).contains(&most), "pool p had {most} holders at once");

    // A human task completed by its assignee.
    c.wait_step(&approval, "approve", "waiting", MINUTE).await;
    let tasks = c.open_human_tasks().await;
    assert!(tasks.iter().any(|t| t.run_id == approval), "{tasks:?}");
    c.human_tasks()
        .await
        .complete_human_task(CompleteHumanTaskRequest {
            run_id: approval.clone(),
            step_id: "approve".into(),
            user: "alice".into(),
            data_json: json!({"ok": true}).to_string(),
        })
        .await
        .expect("complete the human task");
    let run = c.wait_run(&approval, MINUTE).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(output(&run, "approve"), json!({"ok": true}));

    // A schedule: ticks one second apart, each a run that succeeds.
    let start = Instant::now();
    let ticks = loop {
        let ticks = c
            .schedules()
            .await
            .list_schedule_ticks(ListScheduleTicksRequest {
                id: "every-second".into(),
                limit: 100,
            })
            .await
            .expect("list ticks")
            .into_inner()
            .ticks;
        if ticks.len() >= 2 || start.elapsed() > Duration::from_secs(20) {
            break ticks;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(ticks.len() >= 2, "{ticks:#?}");
    let ids: HashSet<&str> = ticks.iter().map(|t| t.run_id.as_str()).collect();
    assert_eq!(ids.len(), ticks.len(), "a run per tick");
    for t in &ticks {
        assert_eq!(t.outcome, "fired", "{t:?}");
        let run = c.wait_run(&t.run_id, MINUTE).await;
        assert_eq!(status(&run), "succeeded");
    }

    // Every key of the namespace is in the namespace's slot, on the primary that owns it.
    let tag = Keys::new(c.namespace.clone()).tag(Scope::Namespace);
    assert!(redis.owner_of(&tag).await.is_some());
}

const CHAIN: &str = "name: chain\nversion: 1\nsteps:\n  - {id: s1, handler: echo}\n  - {id: s2, handler: echo, depends_on: [s1]}\n  - {id: s3, handler: echo, depends_on: [s2]}\n  - {id: s4, handler: echo, depends_on: [s3]}\n  - {id: s5, handler: echo, depends_on: [s4]}\n";

/// Submits run `n` of the chain with an idempotency key, trying again (the same key: one run)
/// while the coordinator answers UNAVAILABLE during the failover.
async fn submit_chain(c: &Cluster, n: u32) -> String {
    let start = Instant::now();
    loop {
        let req = SubmitRunRequest {
            workflow: "chain".into(),
            input_json: json!({"n": n}).to_string(),
            idempotency_key: format!("chain-{n}"),
            ..Default::default()
        };
        match c.runs().await.submit_run(req).await {
            Ok(r) => return r.into_inner().run_id,
            Err(e) => {
                assert!(
                    start.elapsed() < MINUTE,
                    "submit {n} still refused after a minute: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_primary_of_the_namespace_slot_loses_no_run_with_replicated_durability() {
    const RUNS: u32 = 300;
    // Two replicas per primary: after one is promoted, the other replicates it, so commits still
    // find the replica `durability = "replicated"` waits for.
    let redis = RedisCluster::start_with(2).await;
    let mut c = coordinator_on(
        &redis,
        "cluster-failover",
        &[
            ("BATON_DURABILITY", "replicated"),
            ("BATON_DURABILITY_TIMEOUT", "1s"),
            ("BATON_HEALTH_PROBE_INTERVAL", "200ms"),
        ],
    )
    .await;
    c.register(CHAIN).await;
    c.spawn_worker("w1", 16);
    let tag = Keys::new(c.namespace.clone()).tag(Scope::Namespace);
    let owner = redis.owner_of(&tag).await.expect("the namespace's slot has a primary");

    // Runs in flight: the first half submitted before the kill, the rest during and after it.
    let mut ids = Vec::new();
    for n in 0..RUNS / 2 {
        ids.push(submit_chain(&c, n).await);
    }
    let killed_at = Instant::now();
    redis.kill9(owner);
    let killed_ms = baton_shared::time::now_ms();
    // Meanwhile health is watched: NOT_SERVING while the slot has no primary, SERVING again after.
    let submits = async {
        let mut more = Vec::new();
        for n in RUNS / 2..RUNS {
            more.push(submit_chain(&c, n).await);
        }
        more
    };
    // And the cluster: when it promoted a replica (what the stall owes to the cluster itself).
    let health = async {
        let (mut down, mut up, mut promoted) = (None, None, None);
        while (up.is_none() || promoted.is_none()) && killed_at.elapsed() < MINUTE {
            match (c.health("").await.ok(), down) {
                (Some(ServingStatus::NotServing), None) => down = Some(killed_at.elapsed()),
                (Some(ServingStatus::Serving), Some(_)) if up.is_none() => up = Some(killed_at.elapsed()),
                _ => {}
            }
            if promoted.is_none() && redis.owner_of(&tag).await.is_some_and(|p| p != owner) {
                promoted = Some(killed_at.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (down, up, promoted)
    };
    let (more, (down, up, promoted)) = tokio::join!(submits, health);
    ids.extend(more);
    let submitted_in = killed_at.elapsed();
    assert!(
        down.is_some(),
        "health never said NOT_SERVING while the slot had no primary"
    );
    assert!(up.is_some(), "health did not come back to SERVING within a minute");
    let new_owner = redis.owner_of(&tag).await;
    assert!(
        new_owner.is_some_and(|p| p != owner),
        "a replica took the slot over: {new_owner:?}"
    );

    // Every run finishes; every step of each ran (the counters are on the shared Redis).
    let mut finishes: Vec<i64> = Vec::new();
    for id in &ids {
        let run = c.wait_run(id, MINUTE).await;
        assert_eq!(status(&run), "succeeded", "{run:#?}");
        for s in &run.steps {
            if s.finished_at.is_some() {
                finishes.push(ms(&s.finished_at));
            }
        }
    }
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), RUNS as usize, "one run per idempotency key, none lost");
    let mut again = 0;
    for id in &ids {
        for step in ["s1", "s2", "s3", "s4", "s5"] {
            let n = c.executions(id, step).await;
            assert!(n >= 1, "{id} {step} never ran");
            again += n - 1;
        }
    }
    // The worst stall: the longest time without a step finishing, from the kill on.
    finishes.sort_unstable();
    let mut worst = 0;
    let mut last = killed_ms;
    for t in finishes.iter().copied().filter(|t| *t >= killed_ms) {
        worst = worst.max(t - last);
        last = t;
    }
    eprintln!(
        "failover: {RUNS} runs of 5 steps, primary {owner} killed, slot now on {new_owner:?}; worst stall {worst} ms \
         (node timeout {NODE_TIMEOUT_MS} ms); steps run again after the failover: {again}; health NOT_SERVING from {down:?} to {up:?} after the kill, replica promoted after {promoted:?}; \
         second half submitted in {submitted_in:?}"
    );
    let bound = i64::try_from(NODE_TIMEOUT_MS).unwrap_or(i64::MAX) + 5_000;
    assert!(
        worst <= bound,
        "worst stall {worst} ms > node timeout + 5 s ({bound} ms)"
    );
}
