//! The archive of finished runs end to end: a real coordinator with `archive_url` (a PostgreSQL
//! schema of each test's own), a real worker, Redis, RabbitMQ and PostgreSQL. A finished run moves
//! to PostgreSQL and Redis keeps only its small tombstone, which expires; GetRun and WatchRun answer
//! the same before and after; an archive outage only delays archiving (nothing lost, nothing
//! twice); a coordinator killed while it archives leaves every run archived once; a re-run of an
//! archived run brings it back and runs it.

use std::time::{Duration, Instant};

use baton_shared::proto::{GetRunRequest, RerunRunRequest, Run, RunEvent, WatchRunRequest};
use baton_tests::{
    Cluster, TcpProxy,
    archive::{
        PG_HOST, PG_PORT, archive_env, hold_archiver, outbox_len, redis, release_archiver, run_hash, wait_metric,
        wait_tombstone,
    },
    free_port,
    pg::Schema,
    scan_keys, status,
};
use serde_json::json;

const ONE_STEP: &str = r#"
name: archived
version: 1
steps:
  - id: a
    handler: echo
    input: {n: "${{ input.n }}"}
"#;

async fn start(test: &str, env: Vec<(String, String)>) -> Cluster {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Cluster::start(test, &env).await
}

async fn get(c: &Cluster, run_id: &str, step: &str) -> Run {
    c.runs()
        .await
        .get_run(GetRunRequest {
            run_id: run_id.into(),
            step_id: step.into(),
        })
        .await
        .expect("GetRun")
        .into_inner()
}

async fn watch(c: &Cluster, run_id: &str) -> Vec<RunEvent> {
    let mut stream = c
        .runs()
        .await
        .watch_run(WatchRunRequest {
            run_id: run_id.into(),
            after_sequence: String::new(),
            include_run: false,
        })
        .await
        .expect("WatchRun")
        .into_inner();
    let mut out = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("the stream of a finished run ends")
        .expect("an event")
    {
        out.push(ev);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_run_moves_to_postgres_and_reads_the_same_from_there() {
    let schema = Schema::new();
    let mut c = start("archive-move", archive_env(&schema, PG_PORT, "100")).await;
    c.register(ONE_STEP).await;
    c.spawn_worker("w1", 4);
    hold_archiver(&c).await;
    let run_id = c.submit("archived", json!({"n": 7})).await;
    let before = c.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&before), "succeeded");
    // Queued for the archive in the commit that finished it; still whole in Redis meanwhile.
    assert_eq!(outbox_len(&c).await, 1);
    let before = get(&c, &run_id, "").await;
    let before_step = get(&c, &run_id, "a").await;
    let history_before = watch(&c, &run_id).await;
    assert!(
        history_before
            .iter()
            .any(|e| e.kind == "run" && e.status == "succeeded")
    );

    release_archiver(&c).await;
    let tomb = wait_tombstone(&c, &run_id, Duration::from_secs(30)).await;
    assert_eq!(tomb.get("status").map(String::as_str), Some("succeeded"));
    assert_eq!(schema.archived_rows(&run_id).await, 1, "the run is in PostgreSQL once");
    assert_eq!(outbox_len(&c).await, 0);
    let mut conn = redis(&c).await;
    for key in ["steps", "events"] {
        let exists: bool = redis::AsyncCommands::exists(
            &mut conn,
            baton_shared::keys::Keys::new(c.namespace.clone()).namespaced(&format!("{{{run_id}}}:{key}")),
        )
        .await
        .expect("EXISTS");
        assert!(!exists, "the run's {key} left Redis");
    }
    let bytes: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(baton_shared::keys::Keys::new(c.namespace.clone()).run(&run_id))
        .query_async(&mut conn)
        .await
        .expect("MEMORY USAGE");
    eprintln!("Redis bytes of a finished one-step run's tombstone: {bytes}");
    assert!(bytes <= 1_000, "the tombstone takes {bytes} bytes");

    // The same answers from the archive as from Redis.
    assert_eq!(get(&c, &run_id, "").await, before);
    assert_eq!(get(&c, &run_id, "a").await, before_step);
    assert_eq!(watch(&c, &run_id).await, history_before);

    // After the grace, the tombstone is gone too, and the archive still answers.
    let start = Instant::now();
    while !run_hash(&c, &run_id).await.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the tombstone did not expire"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(get(&c, &run_id, "").await, before);
    // Nothing of the run is left in Redis after the grace (the test worker's own counters aside).
    let left: Vec<String> = scan_keys(
        &mut conn,
        &baton_shared::keys::Keys::new(c.namespace.clone()).namespaced(&format!("*{run_id}*")),
    )
    .await
    .into_iter()
    .filter(|k| !k.contains(":test:"))
    .collect();
    assert!(left.is_empty(), "keys of the run left in Redis: {left:?}");
    c.stop_coordinator(false);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_outage_only_delays_archiving_nothing_is_lost_or_written_twice() {
    let schema = Schema::new();
    let proxy = TcpProxy::start(&format!("{PG_HOST}:{PG_PORT}")).await;
    let metrics_port = free_port();
    let mut env = archive_env(&schema, proxy.port, "5");
    env.push(("BATON_METRICS_ADDR".into(), format!("127.0.0.1:{metrics_port}")));
    env.push(("BATON_HEALTH_PROBE_INTERVAL".into(), "200ms".into()));
    let mut c = start("archive-outage", env).await;
    c.register(ONE_STEP).await;
    c.spawn_worker("w1", 8);
    proxy.cut();
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(c.submit("archived", json!({"n": n})).await);
    }
    for id in &ids {
        assert_eq!(status(&c.wait_run(id, Duration::from_secs(30)).await), "succeeded");
    }
    // PostgreSQL away: every finished run waits, whole, in Redis; reads still answer from Redis.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(outbox_len(&c).await, 12);
    wait_metric(metrics_port, "baton_archive_backlog", Duration::from_secs(10), |v| {
        v == 12.0
    })
    .await;
    let age = wait_metric(
        metrics_port,
        "baton_archive_backlog_age_seconds",
        Duration::from_secs(10),
        |v| v > 1.0,
    )
    .await;
    assert!(age < 600.0, "{age}");
    wait_metric(
        metrics_port,
        "baton_archive_errors_total",
        Duration::from_secs(10),
        |v| v >= 1.0,
    )
    .await;
    for id in &ids {
        assert!(!run_hash(&c, id).await.contains_key("archived_at"));
        assert_eq!(status(&get(&c, id, "").await), "succeeded");
    }
    proxy.restore();
    for id in &ids {
        wait_tombstone(&c, id, Duration::from_secs(90)).await;
    }
    assert_eq!(outbox_len(&c).await, 0);
    for id in &ids {
        assert_eq!(schema.archived_rows(id).await, 1, "run {id} archived once");
        assert_eq!(status(&get(&c, id, "").await), "succeeded");
    }
    wait_metric(metrics_port, "baton_archive_backlog", Duration::from_secs(10), |v| {
        v == 0.0
    })
    .await;
    wait_metric(
        metrics_port,
        "baton_archive_written_total",
        Duration::from_secs(10),
        |v| v == 12.0,
    )
    .await;
    c.stop_coordinator(false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_killed_while_archiving_leaves_every_run_archived_once() {
    let schema = Schema::new();
    let mut c = start("archive-kill", archive_env(&schema, PG_PORT, "4")).await;
    c.register(ONE_STEP).await;
    c.spawn_worker("w1", 8);
    hold_archiver(&c).await;
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(c.submit("archived", json!({"n": n})).await);
    }
    for id in &ids {
        c.wait_run(id, Duration::from_secs(60)).await;
    }
    assert_eq!(outbox_len(&c).await, 40);
    // Kill it a few times in the middle of its batches; a restarted one goes on (the test drops
    // the dead one's lease rather than waiting 30 s for it to lapse).
    for pause in [150u64, 60, 250] {
        release_archiver(&c).await;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        c.stop_coordinator(true);
        release_archiver(&c).await;
        c.start_coordinator().await;
    }
    for id in &ids {
        wait_tombstone(&c, id, Duration::from_secs(90)).await;
    }
    assert_eq!(outbox_len(&c).await, 0);
    for id in &ids {
        assert_eq!(schema.archived_rows(id).await, 1, "run {id} archived once");
    }
    c.stop_coordinator(false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_of_an_archived_run_brings_it_back_and_runs_it_again() {
    let schema = Schema::new();
    let mut c = start("archive-rerun", archive_env(&schema, PG_PORT, "100")).await;
    c.register(ONE_STEP).await;
    c.spawn_worker("w1", 4);
    let run_id = c.submit("archived", json!({"n": 1})).await;
    c.wait_run(&run_id, Duration::from_secs(30)).await;
    wait_tombstone(&c, &run_id, Duration::from_secs(30)).await;
    let archived = get(&c, &run_id, "").await;
    assert_eq!(archived.steps[0].attempt, 1);

    hold_archiver(&c).await;
    c.runs()
        .await
        .rerun_run(RerunRunRequest {
            run_id: run_id.clone(),
            from_step: "a".into(),
            input_json: json!({"n": 2}).to_string(),
        })
        .await
        .expect("RerunRun of an archived run");
    let again = c.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&again), "succeeded");
    assert_eq!(again.steps[0].attempt, 2, "{again:#?}");
    assert_eq!(again.input_json, json!({"n": 2}).to_string());
    assert_eq!(c.executions(&run_id, "a").await, 2);
    assert_eq!(
        schema.archived_rows(&run_id).await,
        0,
        "it left the archive when it came back"
    );
    // Its history goes on from the archived one.
    let history = watch(&c, &run_id).await;
    assert!(
        history
            .iter()
            .filter(|e| e.kind == "run" && e.status == "succeeded")
            .count()
            >= 2
    );

    release_archiver(&c).await;
    wait_tombstone(&c, &run_id, Duration::from_secs(30)).await;
    assert_eq!(schema.archived_rows(&run_id).await, 1);
    assert_eq!(get(&c, &run_id, "").await.steps[0].attempt, 2);
    c.stop_coordinator(false);
}

const HUMAN_AND_LOGS: &str = r#"
name: archived-human
version: 1
steps:
  - id: approve
    human: {title: Approve it, assignees: [ann]}
  - id: talk
    depends_on: [approve]
    handler: chatty
    input: {lines: 3, ms: 0, succeed_on_attempt: 1, tag: talk}
"#;

/// The completed human tasks, as ListHumanTasks answers them.
async fn completed_tasks(c: &Cluster) -> Vec<baton_shared::proto::HumanTask> {
    c.human_tasks()
        .await
        .list_human_tasks(baton_shared::proto::ListHumanTasksRequest {
            status: "completed".into(),
            ..Default::default()
        })
        .await
        .expect("ListHumanTasks")
        .into_inner()
        .tasks
}

/// GetStepLogs of step `talk`: (lines answered, lines omitted).
async fn talk_logs(c: &Cluster, run_id: &str) -> (usize, u32) {
    let r = c
        .runs()
        .await
        .get_step_logs(baton_shared::proto::GetStepLogsRequest {
            run_id: run_id.into(),
            step_id: "talk".into(),
            attempt: 0,
            limit: 0,
        })
        .await
        .expect("GetStepLogs")
        .into_inner();
    (r.lines.len(), r.omitted)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_human_tasks_and_log_counts_of_an_archived_run_read_from_the_archive() {
    use baton_shared::proto::CompleteHumanTaskRequest;
    let schema = Schema::new();
    let mut c = start("archive-human", archive_env(&schema, PG_PORT, "100")).await;
    c.register(HUMAN_AND_LOGS).await;
    c.spawn_worker("w1", 4);
    let run_id = c.submit("archived-human", json!({})).await;
    c.wait_step(&run_id, "approve", "waiting", Duration::from_secs(30))
        .await;
    c.human_tasks()
        .await
        .complete_human_task(CompleteHumanTaskRequest {
            run_id: run_id.clone(),
            step_id: "approve".into(),
            user: "ann".into(),
            data_json: json!({"ok": true}).to_string(),
        })
        .await
        .expect("CompleteHumanTask");
    assert_eq!(status(&c.wait_run(&run_id, Duration::from_secs(30)).await), "succeeded");
    let tasks_before = completed_tasks(&c).await;
    assert_eq!(tasks_before.len(), 1);
    assert_eq!(talk_logs(&c, &run_id).await, (3, 0));

    wait_tombstone(&c, &run_id, Duration::from_secs(30)).await;
    // The task as the archive keeps it; the log lines were dropped, and counted.
    assert_eq!(completed_tasks(&c).await, tasks_before);
    assert_eq!(talk_logs(&c, &run_id).await, (0, 3));
    c.stop_coordinator(false);
}

/// Submits a run of `archived` with the idempotency key `order-42`.
async fn submit_keyed(c: &Cluster) -> baton_shared::proto::SubmitRunResponse {
    c.runs()
        .await
        .submit_run(baton_shared::proto::SubmitRunRequest {
            workflow: "archived".into(),
            input_json: json!({"n": 5}).to_string(),
            idempotency_key: "order-42".into(),
            ..Default::default()
        })
        .await
        .expect("SubmitRun")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_still_names_its_run_after_the_run_left_redis() {
    let schema = Schema::new();
    let mut c = start("archive-key", archive_env(&schema, PG_PORT, "100")).await;
    c.register(ONE_STEP).await;
    c.spawn_worker("w1", 4);
    let first = submit_keyed(&c).await;
    assert!(first.created);
    c.wait_run(&first.run_id, Duration::from_secs(30)).await;
    wait_tombstone(&c, &first.run_id, Duration::from_secs(30)).await;
    let start = Instant::now();
    while !run_hash(&c, &first.run_id).await.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the tombstone did not expire"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = submit_keyed(&c).await;
    assert_eq!(again.run_id, first.run_id);
    assert!(!again.created, "the key's run is in the archive: no second run");
    assert!(
        run_hash(&c, &first.run_id).await.is_empty(),
        "nothing was created in Redis"
    );
    assert_eq!(c.executions(&first.run_id, "a").await, 1);
    c.stop_coordinator(false);
}
