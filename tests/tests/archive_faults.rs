//! Issue 20's faults of the archive, each at a point the test chooses rather than by timing:
//! Redis killed (`kill -9`) while the archiver is half way through its outbox, PostgreSQL's
//! connection cut in the middle of a batch's transaction (several times), PostgreSQL gone without
//! a word in the middle of one (its client hears nothing more), and a coordinator killed
//! after PostgreSQL committed a batch and before Redis shrank it to tombstones. In each, every run
//! ends archived exactly once, reads the same, and the outbox drains; an outage only delays
//! archiving, which the backlog metrics and health show.
//!
//! How a test stops the archiver at a point: it holds, in a PostgreSQL transaction of its own, a
//! row with the key of one run of the outbox (`Schema::hold_run_row`), so the archiver's insert of
//! the batch with that run waits for it, inside its own transaction; the batches before it are
//! committed and shrunk. Everything else is a real server, process and client.

use std::{collections::HashMap, time::Duration};

use baton_tests::{
    Cluster, ClusterOptions, RedisServer, ServingStatus, TcpProxy,
    archive::{
        PG_PORT, archive_env, hold_archiver, outbox, outbox_len, release_archiver, run_hash, runs_in_redis,
        wait_metric, wait_outbox, wait_tombstone,
    },
    free_port,
    pg::Schema,
    status,
};
use serde_json::json;

/// One step that succeeds, or fails for good when the input says `fatal`.
const MIXED: &str = r#"
name: mixed
version: 1
steps:
  - id: a
    handler: fail
    retry: {max_attempts: 1}
"#;

const MINUTE: Duration = Duration::from_secs(60);

async fn start(test: &str, env: Vec<(String, String)>) -> Cluster {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Cluster::start(test, &env).await
}

/// Submits `n` runs of `mixed` (every third one fails) and waits until each is over; answers their
/// ids and the status GetRun answered for each.
async fn run_all(c: &Cluster, n: usize) -> (Vec<String>, HashMap<String, &'static str>) {
    let mut ids = Vec::with_capacity(n);
    let inputs: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            if i % 3 == 2 {
                json!({"i": i, "fatal": true})
            } else {
                json!({"i": i})
            }
        })
        .collect();
    for chunk in inputs.chunks(25) {
        let submits = chunk.iter().map(|input| c.submit("mixed", input.clone()));
        ids.extend(futures::future::join_all(submits).await);
    }
    let mut statuses = HashMap::new();
    for id in &ids {
        let run = c.wait_run(id, Duration::from_secs(120)).await;
        statuses.insert(id.clone(), status(&run));
    }
    let failed = statuses.values().filter(|s| **s == "failed").count();
    assert_eq!(failed, n / 3, "every third run fails: {statuses:?}");
    (ids, statuses)
}

/// Panics unless GetRun answers each run with the status it answered before.
async fn assert_same_statuses(c: &Cluster, before: &HashMap<String, &'static str>) {
    for (id, was) in before {
        assert_eq!(status(&c.get_run(id).await), *was, "run {id} reads as it did");
    }
}

/// Polls until the archive's `runs` table holds `n` committed rows; panics after `within`.
async fn wait_archived_total(schema: &Schema, n: i64, within: Duration) {
    let start = std::time::Instant::now();
    loop {
        let now = schema.archived_total().await;
        if now == n {
            return;
        }
        assert!(now < n, "the archive holds {now} rows, more than the {n} expected");
        assert!(
            start.elapsed() < within,
            "the archive holds {now} rows after {within:?}, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until none of `ids` has a run hash (nor a tombstone) in Redis; panics after `within`.
async fn wait_gone_from_redis(c: &Cluster, ids: &[String], within: Duration) {
    let start = std::time::Instant::now();
    loop {
        let left = runs_in_redis(c, ids).await;
        if left == 0 {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{left} runs still in Redis after {within:?}: the tombstones did not expire"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_while_archiving_leaves_every_run_archived_exactly_once() {
    let schema = Schema::new();
    let mut redis = RedisServer::start().await;
    let metrics_port = free_port();
    let mut env = archive_env(&schema, PG_PORT, "25");
    env.push(("BATON_METRICS_ADDR".into(), format!("127.0.0.1:{metrics_port}")));
    env.push(("BATON_HEALTH_PROBE_INTERVAL".into(), "200ms".into()));
    let mut c = Cluster::start_with(
        "archive-redis-kill",
        ClusterOptions {
            env,
            redis_url: Some(redis.url()),
            ..Default::default()
        },
    )
    .await;
    c.register(MIXED).await;
    c.spawn_worker("w1", 16);
    hold_archiver(&c).await;
    let (ids, before) = run_all(&c, 300).await;
    let queue = outbox(&c).await;
    assert_eq!(queue.len(), 300, "every finished run is queued for the archive");

    // The archiver takes batches of 25 in outbox order: hold the seventh batch (runs 150..175)
    // in PostgreSQL, so it stops there with six batches archived and shrunk.
    let (held, end) = &queue[150];
    let mut lock = schema.hold_run_row(&c.namespace, held, *end).await;
    release_archiver(&c).await;
    lock.wait_for_new_writer(MINUTE).await;
    assert_eq!(schema.archived_total().await, 150);
    assert_eq!(outbox_len(&c).await, 150, "the archiver is half way");

    // Redis dies; then the archiver's write of the seventh batch commits, and it cannot shrink
    // those runs in Redis: its round fails, and health says Redis is gone.
    redis.kill9();
    lock.release().await;
    wait_archived_total(&schema, 175, MINUTE).await;
    wait_metric(metrics_port, "baton_archive_errors_total", MINUTE, |v| v >= 1.0).await;
    c.wait_health(ServingStatus::NotServing, MINUTE).await;

    // Redis comes back with what it acknowledged (its append-only file); the coordinator
    // recovers and the archiver finishes the job, writing the seventh batch again (ignored).
    redis.restart().await;
    c.wait_health(ServingStatus::Serving, MINUTE).await;
    wait_outbox(&c, Duration::from_secs(120), |n| n == 0).await;
    assert_eq!(
        schema.archived_once(&ids).await,
        (300, 1),
        "every run is in PostgreSQL, each once"
    );
    assert_eq!(schema.archived_total().await, 300, "and nothing else is");
    for id in &ids {
        let tomb = run_hash(&c, id).await;
        assert!(
            tomb.is_empty() || tomb.contains_key("archived_at"),
            "run {id} is a tombstone or gone: {tomb:?}"
        );
    }
    assert_same_statuses(&c, &before).await;
    // The tombstones expire after the grace (2 s); the archive still answers.
    wait_gone_from_redis(&c, &ids, MINUTE).await;
    assert_same_statuses(&c, &before).await;
    c.stop_coordinator(false);
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_cut_in_the_middle_of_a_batch_only_delays_archiving_and_health_says_so() {
    let schema = Schema::new();
    let proxy = TcpProxy::start(&format!("127.0.0.1:{PG_PORT}")).await;
    let metrics_port = free_port();
    let mut env = archive_env(&schema, proxy.port, "500");
    env.push(("BATON_METRICS_ADDR".into(), format!("127.0.0.1:{metrics_port}")));
    env.push(("BATON_HEALTH_PROBE_INTERVAL".into(), "200ms".into()));
    env.push(("BATON_ARCHIVE_MAX_BACKLOG_AGE".into(), "3s".into()));
    let mut c = start("archive-pg-cut", env).await;
    c.register(MIXED).await;
    c.spawn_worker("w1", 16);
    hold_archiver(&c).await;
    let (ids, before) = run_all(&c, 200).await;
    let queue = outbox(&c).await;
    assert_eq!(queue.len(), 200);

    // One batch of 200: hold one of its runs, so each write stops half way through its
    // transaction (the rows before the held one inserted, not committed), and cut PostgreSQL's
    // connection there, three times.
    let (held, end) = &queue[120];
    let mut lock = schema.hold_run_row(&c.namespace, held, *end).await;
    release_archiver(&c).await;
    for cut in 1..=3 {
        lock.wait_for_new_writer(MINUTE).await;
        proxy.reset();
        assert_eq!(
            schema.archived_total().await,
            0,
            "cut {cut}: nothing of a cut transaction is committed"
        );
    }
    // The archiver comes back after each (its backoff: 1 s, 2 s, 4 s) and writes again.
    lock.wait_for_new_writer(MINUTE).await;

    // Meanwhile the runs wait in Redis; the backlog and its age are metrics, and health says so
    // past archive_max_backlog_age.
    wait_metric(metrics_port, "baton_archive_backlog", MINUTE, |v| v == 200.0).await;
    wait_metric(metrics_port, "baton_archive_backlog_age_seconds", MINUTE, |v| v > 3.0).await;
    wait_metric(metrics_port, "baton_archive_errors_total", MINUTE, |v| v >= 3.0).await;
    c.wait_health(ServingStatus::NotServing, MINUTE).await;
    assert_eq!(outbox_len(&c).await, 200);
    assert_same_statuses(&c, &before).await;

    // PostgreSQL answers again: the batch goes in once, the backlog drains, health is back.
    lock.release().await;
    wait_outbox(&c, Duration::from_secs(120), |n| n == 0).await;
    assert_eq!(schema.archived_once(&ids).await, (200, 1));
    assert_eq!(schema.archived_total().await, 200);
    wait_metric(metrics_port, "baton_archive_backlog", MINUTE, |v| v == 0.0).await;
    c.wait_health(ServingStatus::Serving, MINUTE).await;
    for id in &ids {
        assert!(
            run_hash(&c, id).await.contains_key("archived_at"),
            "run {id} is its tombstone"
        );
    }
    assert_same_statuses(&c, &before).await;
    c.stop_coordinator(false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_that_dies_without_a_word_in_the_middle_of_a_batch_only_delays_archiving() {
    let schema = Schema::new();
    let proxy = TcpProxy::start(&format!("127.0.0.1:{PG_PORT}")).await;
    let mut env = archive_env(&schema, proxy.port, "500");
    env.push(("BATON_ARCHIVE_WRITE_TIMEOUT".into(), "3s".into()));
    let mut c = start("archive-pg-stall", env).await;
    c.register(MIXED).await;
    c.spawn_worker("w1", 16);
    hold_archiver(&c).await;
    let (ids, before) = run_all(&c, 60).await;
    let queue = outbox(&c).await;
    assert_eq!(queue.len(), 60);

    // Stop the write half way through its transaction, then take PostgreSQL's side of the
    // connection away without a word to the coordinator (a host that died): the server rolls the
    // transaction back, and the archiver would wait for an answer that never comes.
    let (held, end) = &queue[30];
    let mut lock = schema.hold_run_row(&c.namespace, held, *end).await;
    release_archiver(&c).await;
    lock.wait_for_new_writer(MINUTE).await;
    proxy.stall();
    lock.release().await;
    assert_eq!(schema.archived_total().await, 0);

    // Past archive_write_timeout the archiver gives that write up and writes again on a new
    // connection: archiving was only delayed.
    wait_outbox(&c, MINUTE, |n| n == 0).await;
    assert_eq!(schema.archived_once(&ids).await, (60, 1));
    assert_eq!(schema.archived_total().await, 60);
    assert_same_statuses(&c, &before).await;
    c.stop_coordinator(false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_killed_after_the_archive_commit_and_before_the_tombstones_leaves_every_run_archived_once() {
    let schema = Schema::new();
    // The coordinator reaches the shared Redis through a proxy the test can pause; the test reads
    // Redis directly.
    let redis_proxy = TcpProxy::start("127.0.0.1:6379").await;
    let mut env = archive_env(&schema, PG_PORT, "10");
    env.push((
        "BATON_REDIS_URL".into(),
        format!("redis://127.0.0.1:{}", redis_proxy.port),
    ));
    let mut c = start("archive-kill-point", env).await;
    c.register(MIXED).await;
    c.spawn_worker("w1", 8);
    hold_archiver(&c).await;
    let (ids, before) = run_all(&c, 40).await;
    let queue = outbox(&c).await;
    assert_eq!(queue.len(), 40);

    // Stop the archiver in its second batch (runs 10..20), in PostgreSQL.
    let (held, end) = &queue[15];
    let mut lock = schema.hold_run_row(&c.namespace, held, *end).await;
    release_archiver(&c).await;
    lock.wait_for_new_writer(MINUTE).await;
    assert_eq!(schema.archived_total().await, 10);
    assert_eq!(outbox_len(&c).await, 30);

    // Hold the coordinator's Redis traffic, then let its write commit: PostgreSQL holds the
    // second batch, and the tombstones that would follow wait in the proxy.
    redis_proxy.pause();
    lock.release().await;
    wait_archived_total(&schema, 20, MINUTE).await;
    let batch: Vec<&String> = queue[10..20].iter().map(|(id, _)| id).collect();
    for id in &batch {
        let h = run_hash(&c, id).await;
        assert!(
            !h.contains_key("archived_at"),
            "run {id} is still whole in Redis: {h:?}"
        );
        assert_eq!(h.get("status").map(String::as_str), Some(before[*id]));
    }

    // Kill it there. What it had sent Redis is dropped with its connections.
    c.stop_coordinator(true);
    redis_proxy.cut();
    redis_proxy.restore();
    assert_eq!(
        outbox_len(&c).await,
        30,
        "the killed coordinator shrank none of its batch"
    );
    for id in &batch {
        assert!(!run_hash(&c, id).await.contains_key("archived_at"));
    }

    // A second coordinator (the dead one's lease dropped rather than waited out, 30 s) finishes
    // the job: the second batch is written again (ignored) and shrunk, and the rest archived.
    release_archiver(&c).await;
    c.start_coordinator().await;
    for id in &ids {
        wait_tombstone(&c, id, MINUTE).await;
    }
    assert_eq!(outbox_len(&c).await, 0);
    assert_eq!(schema.archived_once(&ids).await, (40, 1));
    assert_eq!(schema.archived_total().await, 40);
    assert_same_statuses(&c, &before).await;
    c.stop_coordinator(false);
}
