//! Baton on a Redis Cluster (`redis_url = "redis+cluster://..."`): a coordinator and a worker on a
//! 6-node cluster of the test's own (`deploy/local/cluster.sh`) run the core cases end to end (a
//! DAG, retries, a fan-out, a child workflow, an event delivered to a waiting step, a schedule, a
//! concurrency pool, a human task), and with `durability = "replicated"` (and two replicas per
//! primary) they lose no run when the primary that owns the namespace's slot is killed while runs
//! are in flight; with the default durability no run that survives the failover hangs.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use baton_shared::{
    keys::{Keys, Scope},
    proto::{
        CompleteHumanTaskRequest, CreateScheduleRequest, GetRunRequest, ListScheduleTicksRequest, Run, SubmitRunRequest,
    },
};
use baton_tests::{Cluster, ClusterOptions, RedisCluster, ServingStatus, ms, redis_cluster::NODE_TIMEOUT_MS, status};
use futures::StreamExt;
use serde_json::{Value, json};

const MINUTE: Duration = Duration::from_secs(60);

/// How many submits the failover tests keep in flight.
const SUBMITTERS: usize = 8;

fn output(run: &Run, id: &str) -> Value {
    let step = run.steps.iter().find(|s| s.id == id).expect("the step");
    serde_json::from_str(&step.output_json).unwrap_or(Value::Null)
}

/// A coordinator of a fresh namespace on the Redis (or Redis Cluster) of `redis_url`, with `env`
/// over the defaults.
async fn coordinator_on(redis_url: &str, test: &str, env: &[(&str, &str)]) -> Cluster {
    Cluster::start_with(
        test,
        ClusterOptions {
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            redis_url: Some(redis_url.to_string()),
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
    let mut c = coordinator_on(&redis.url, "cluster-core", &[]).await;
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
    let owner = redis.owner_of(&tag).await.expect("the namespace's slot has a primary");
    assert!(
        !keys_on(owner, &tag).await.is_empty(),
        "no key of the namespace on its primary"
    );

    // A second namespace, on another primary of the same cluster, runs beside the first: each
    // namespace's keys are on the primary of its own slot only.
    let mut other = None;
    for _ in 0..10 {
        let d = coordinator_on(&redis.url, "cluster-other", &[]).await;
        let t = Keys::new(d.namespace.clone()).tag(Scope::Namespace);
        if let Some(p) = redis.owner_of(&t).await
            && p != owner
        {
            other = Some((d, t, p));
            break;
        }
    }
    // Each namespace has two chances in three to hash to another of the three primaries.
    let (mut d, other_tag, other_owner) = other.expect("a namespace on another primary within 10 tries");
    d.register(DIAMOND).await;
    d.spawn_worker("w2", 4);
    let (here, there) = tokio::join!(
        c.submit("diamond", json!({"v": 2})),
        d.submit("diamond", json!({"v": 3}))
    );
    let (here, there) = tokio::join!(c.wait_run(&here, MINUTE), d.wait_run(&there, MINUTE));
    assert_eq!(status(&here), "succeeded", "{here:#?}");
    assert_eq!(status(&there), "succeeded", "{there:#?}");
    assert_eq!(output(&there, "b"), json!({"v": 3}));
    assert!(
        !keys_on(other_owner, &other_tag).await.is_empty(),
        "no key of the second namespace on its primary"
    );
    assert!(
        keys_on(owner, &other_tag).await.is_empty(),
        "keys of the second namespace on the first's primary"
    );
    assert!(
        keys_on(other_owner, &tag).await.is_empty(),
        "keys of the first namespace on the second's primary"
    );

    // The coordinators ask the nodes which primary owns their slot twice a second, on connections
    // they keep: over 3 s (6 questions each, to every node) a node that owns neither namespace
    // sees no new connection from them, or one should a connection have dropped.
    let idle = redis
        .ports()
        .into_iter()
        .find(|p| *p != owner && *p != other_owner)
        .expect("a third node");
    let before = connections_received(idle).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = connections_received(idle).await;
    // One of them is this test's own second INFO.
    assert!(
        after - before <= 3,
        "node {idle} received {} connections in 3 s: the coordinators open one per question",
        after - before
    );
}

/// A DAG and a fan-out run on a cluster that speaks only TLS (`rediss+cluster://`, a private CA, a
/// client certificate); the namespace's keys are on the cluster's nodes; a coordinator that trusts
/// another CA does not start and says why.
#[tokio::test(flavor = "multi_thread")]
async fn runs_go_through_a_redis_cluster_over_tls_with_a_private_ca() {
    let redis = RedisCluster::start_tls().await;
    assert!(redis.url.starts_with("rediss+cluster://"), "{}", redis.url);
    let (ca, cert, key) = (
        redis.tls_file("ca.crt"),
        redis.tls_file("client.crt"),
        redis.tls_file("client.key"),
    );
    let tls = [
        ("BATON_REDIS_TLS_CA", ca.as_str()),
        ("BATON_REDIS_TLS_CERT", cert.as_str()),
        ("BATON_REDIS_TLS_KEY", key.as_str()),
    ];
    let mut c = coordinator_on(&redis.url, "cluster-tls", &tls).await;
    for def in [DIAMOND, FAN_OUT] {
        c.register(def).await;
    }
    c.spawn_worker("w1", 16);
    let dag = c.submit("diamond", json!({"v": 1})).await;
    let items: Vec<Value> = (0..20).map(|i| json!({"n": i, "fail_once": i % 7 == 3})).collect();
    let fan = c.submit("squares", json!({"items": items})).await;

    let run = c.wait_run(&dag, MINUTE).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(output(&run, "d")["received"]["b"], json!({"v": 1}));
    let run = c.wait_run(&fan, MINUTE).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(
        output(&run, "each"),
        json!((0..20).map(|i| i * i).collect::<Vec<i64>>())
    );

    // The runs are on the cluster (whose nodes listen for TLS only), read back over TLS.
    let tag = Keys::new(c.namespace.clone()).tag(Scope::Namespace);
    let mut found = Vec::new();
    for port in redis.ports() {
        let certs = redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: std::fs::read(&cert).expect("client.crt"),
                client_key: std::fs::read(&key).expect("client.key"),
            }),
            root_cert: Some(std::fs::read(&ca).expect("ca.crt")),
        };
        let client = redis::Client::build_with_tls(format!("rediss://127.0.0.1:{port}"), certs).expect("a TLS client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("the node answers over TLS");
        found.extend(baton_tests::scan_keys(&mut conn, &format!("{tag}:*")).await);
    }
    assert!(
        found.iter().any(|k| k.contains(&dag)) && found.iter().any(|k| k.contains(&fan)),
        "the runs' keys are not on the cluster: {found:?}"
    );

    // A coordinator that trusts another CA refuses the nodes' certificates and says so.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("a certificate");
    let other_ca = std::env::temp_dir().join(format!("baton-other-ca-{}.pem", uuid::Uuid::new_v4().simple()));
    std::fs::write(&other_ca, other.cert.pem()).expect("write the other CA");
    let log = c.log_path("coordinator");
    let before = std::fs::read_to_string(&log).unwrap_or_default().len();
    c.spawn_coordinator_unwaited(&[("BATON_REDIS_TLS_CA", other_ca.to_string_lossy().as_ref())]);
    let start = Instant::now();
    let said = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let new = text.get(before..).unwrap_or_default().to_string();
        if new.contains("invalid peer certificate: UnknownIssuer") {
            break new;
        }
        assert!(
            start.elapsed() < MINUTE,
            "no certificate error in a minute from a coordinator with another CA: {new}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(said.contains("redis_url: no node of the Redis Cluster"), "{said}");
    let _ = std::fs::remove_file(&other_ca);

    // One Redis that speaks only TLS (`rediss://`), with the same private CA and client certificate.
    let port = baton_tests::free_port();
    let data = tempfile::tempdir().expect("a directory for the TLS Redis");
    let server = Stopped(
        std::process::Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args([
                "--tls-cert-file",
                &redis.tls_file("node.crt"),
                "--tls-key-file",
                &redis.tls_file("node.key"),
            ])
            .args(["--tls-ca-cert-file", &ca])
            .current_dir(data.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server"),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < MINUTE, "the TLS Redis does not listen on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut one = coordinator_on(&format!("rediss://127.0.0.1:{port}"), "tls-one", &tls).await;
    one.register(DIAMOND).await;
    one.spawn_worker("w1", 4);
    let dag = one.submit("diamond", json!({"v": 2})).await;
    let run = one.wait_run(&dag, MINUTE).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(output(&run, "d")["received"]["b"], json!({"v": 2}));
    drop(one);
    drop(server);
}

/// A child process killed (and reaped) when dropped.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `total_connections_received` of the node on `port` (its `INFO stats`).
async fn connections_received(port: u16) -> i64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("node url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("the node answers");
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .expect("INFO stats");
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("total_connections_received in INFO stats")
}

/// The keys under hash tag `tag` (`{<namespace>}`) that the node on `port` holds.
async fn keys_on(port: u16, tag: &str) -> Vec<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("node url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("the node answers");
    baton_tests::scan_keys(&mut conn, &format!("{tag}:*")).await
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

/// What a primary's `kill -9` did to runs of [`CHAIN`]-like workflows in flight.
struct Failover {
    /// The runs submitted (and answered) before, during and after the kill.
    ids: Vec<String>,
    /// Runs whose submit was answered and that no longer exist after the failover.
    lost: Vec<String>,
    /// Handler executions beyond one per step of the runs that exist.
    again: i64,
    /// The longest time without a step finishing, from the kill on (ms).
    worst: i64,
    /// When the cluster had promoted a replica, from the kill on (ms; `None`: not within a minute).
    promoted_ms: Option<i64>,
}

impl Failover {
    /// When Baton could go on at the earliest, from the kill on (ms): the node timeout, or the
    /// cluster's own promotion of a replica when that took longer (as it does on a loaded
    /// machine: the election is Redis's, not Baton's). The stall bounds are counted from it.
    fn cluster_back_ms(&self) -> i64 {
        let timeout = i64::try_from(NODE_TIMEOUT_MS).unwrap_or(i64::MAX);
        self.promoted_ms.map_or(timeout, |p| p.max(timeout))
    }
}

/// Submits `runs` runs of the registered `chain` (half before the kill, half during and after
/// it), kills the primary that owns the namespace's slot with SIGKILL (with `lag`, after cutting
/// its replicas off for that long, so that the writes of that window are lost), checks that health said
/// NOT_SERVING meanwhile and SERVING again, that a replica took the slot over, and that every run
/// that still exists succeeds within `within`; counts what was lost and run again.
async fn kill_the_primary_during_chains(
    redis: &RedisCluster,
    c: &Cluster,
    runs: u32,
    within: Duration,
    lag: Option<Duration>,
) -> Failover {
    let tag = Keys::new(c.namespace.clone()).tag(Scope::Namespace);
    let owner = redis.owner_of(&tag).await.expect("the namespace's slot has a primary");

    // Runs in flight: the first half submitted before the kill, the rest during and after it,
    // SUBMITTERS at a time, as a client's pool of connections would.
    let submit_range = |range: std::ops::Range<u32>| {
        futures::stream::iter(range)
            .map(|n| submit_chain(c, n))
            .buffered(SUBMITTERS)
            .collect::<Vec<String>>()
    };
    let mut ids = submit_range(0..runs / 2).await;
    // The second half is submitted during the cut, the kill and the failover.
    let submits = submit_range(runs / 2..runs);
    // Meanwhile health is watched: NOT_SERVING while the slot has no primary, SERVING again
    // after; and the cluster: when it promoted a replica (what the stall owes to the cluster).
    let kill = async {
        let cut = match lag {
            Some(lag) => {
                let replicas = redis.cut_replication(owner).await;
                tokio::time::sleep(lag).await;
                replicas
            }
            None => Vec::new(),
        };
        let killed_at = Instant::now();
        let killed_ms = baton_shared::time::now_ms();
        redis.kill9(owner);
        redis.resume(&cut);
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
        (killed_at, killed_ms, down, up, promoted)
    };
    let (more, (killed_at, killed_ms, down, up, promoted)) = tokio::join!(submits, kill);
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

    // Every run that exists finishes; every step of each ran (the counters are on the shared
    // Redis, not on the cluster).
    let mut finishes: Vec<i64> = Vec::new();
    let mut lost = Vec::new();
    let mut again = 0;
    for id in &ids {
        let found = c
            .runs()
            .await
            .get_run(GetRunRequest {
                run_id: id.clone(),
                ..Default::default()
            })
            .await;
        if found.as_ref().is_err_and(|e| e.code() == tonic::Code::NotFound) {
            lost.push(id.clone());
            continue;
        }
        let run = c.wait_run(id, within).await;
        assert_eq!(status(&run), "succeeded", "{run:#?}");
        for s in &run.steps {
            if s.finished_at.is_some() {
                finishes.push(ms(&s.finished_at));
            }
        }
    }
    // Every step of each run that exists ran at least once; what ran more often ran again.
    let found: Vec<&String> = ids.iter().filter(|id| !lost.contains(id)).collect();
    let steps = ["s1", "s2", "s3", "s4", "s5"];
    let of: Vec<(&str, &str, &str)> = found
        .iter()
        .flat_map(|id| steps.iter().map(move |step| ("exec", id.as_str(), *step)))
        .collect();
    for ((_, id, step), n) in of.iter().zip(c.counts(&of).await) {
        assert!(n >= 1, "{id} {step} never ran");
        again += n - 1;
    }
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), runs as usize, "one run per idempotency key");
    // The worst stall: the longest time without a step finishing, from the kill on.
    finishes.sort_unstable();
    let mut worst = 0;
    let mut last = killed_ms;
    for t in finishes.iter().copied().filter(|t| *t >= killed_ms) {
        worst = worst.max(t - last);
        last = t;
    }
    eprintln!(
        "failover: {runs} runs of 5 steps, primary {owner} killed, slot now on {new_owner:?}; runs lost: {}; worst stall {worst} ms \
         (node timeout {NODE_TIMEOUT_MS} ms); steps run again after the failover: {again}; health NOT_SERVING from {down:?} to {up:?} after the kill, replica promoted after {promoted:?}; \
         second half submitted in {submitted_in:?}",
        lost.len()
    );
    Failover {
        ids,
        lost,
        again,
        worst,
        promoted_ms: promoted.map(|p| i64::try_from(p.as_millis()).unwrap_or(i64::MAX)),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_primary_of_the_namespace_slot_loses_no_run_with_replicated_durability() {
    const RUNS: u32 = 2_000;
    // Two replicas per primary: after one is promoted, the other replicates it, so commits still
    // find the replica `durability = "replicated"` waits for.
    let redis = RedisCluster::start_with(2).await;
    let mut c = coordinator_on(
        &redis.url,
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
    let f = kill_the_primary_during_chains(&redis, &c, RUNS, MINUTE, None).await;
    assert!(f.lost.is_empty(), "runs lost with replicated durability: {:?}", f.lost);
    assert_eq!(f.ids.len(), RUNS as usize);
    // No acknowledged transition was lost, so no step's handler ran twice: a completion the
    // failover interrupted is reported again by its worker, a dispatch whose confirm was lost is
    // refused at StartStep as a copy.
    assert_eq!(
        f.again, 0,
        "steps whose handler ran more than once with replicated durability"
    );
    let bound = f.cluster_back_ms() + 5_000;
    assert!(
        f.worst <= bound,
        "worst stall {} ms > the later of the node timeout and the promotion ({} ms) + 5 s ({bound} ms)",
        f.worst,
        f.cluster_back_ms()
    );
}

/// The chain with what default durability needs to recover a lost transition: an attempt
/// timeout (a step whose completion the failover lost is still "running" on the new primary, and
/// its timeout sweeper runs it again) and retries.
const TIMED_CHAIN: &str = "name: chain\nversion: 1\nsteps:\n  - {id: s1, handler: echo, timeout: 10s, retry: {max_attempts: 5, initial_interval: 100ms}}\n  - {id: s2, handler: echo, depends_on: [s1], timeout: 10s, retry: {max_attempts: 5, initial_interval: 100ms}}\n  - {id: s3, handler: echo, depends_on: [s2], timeout: 10s, retry: {max_attempts: 5, initial_interval: 100ms}}\n  - {id: s4, handler: echo, depends_on: [s3], timeout: 10s, retry: {max_attempts: 5, initial_interval: 100ms}}\n  - {id: s5, handler: echo, depends_on: [s4], timeout: 10s, retry: {max_attempts: 5, initial_interval: 100ms}}\n";

/// With the default durability a failover can lose the last writes the old primary acknowledged
/// (replication is asynchronous): a run whose submit was lost is gone (`NOT_FOUND`), a step
/// whose completion was lost runs again after its timeout. What must hold: no run that exists
/// hangs, and the stall is bounded by the failover plus a step's timeout. The figures (runs lost,
/// steps run again) are printed, for docs/operations.md.
#[tokio::test(flavor = "multi_thread")]
async fn killing_the_primary_with_default_durability_leaves_no_run_hanging() {
    const RUNS: u32 = 2_000;
    let redis = RedisCluster::start().await;
    let mut c = coordinator_on(
        &redis.url,
        "cluster-failover-default",
        &[("BATON_HEALTH_PROBE_INTERVAL", "200ms")],
    )
    .await;
    c.register(TIMED_CHAIN).await;
    c.spawn_worker("w1", 16);
    // The replica is cut off for the last 300 ms before the kill: what the primary acknowledged
    // then is lost (as with a replication lag of 300 ms).
    let f = kill_the_primary_during_chains(&redis, &c, RUNS, 2 * MINUTE, Some(Duration::from_millis(300))).await;
    assert!(
        f.lost.len() < RUNS as usize / 2,
        "more runs lost than were submitted before the kill: {}",
        f.lost.len()
    );
    // The failover, then a lost completion's 10 s timeout, its retry's 100 ms and 5 s of slack.
    let bound = f.cluster_back_ms() + 10_000 + 5_000;
    assert!(
        f.worst <= bound,
        "worst stall {} ms > the later of the node timeout and the promotion ({} ms) + step timeout + 5 s \
         ({bound} ms); steps run again: {}",
        f.worst,
        f.cluster_back_ms(),
        f.again
    );
}
