//! Workers, queues and why a run waits: the worker registry (live, lost, stopped), the queue
//! figures, GetRun's `waiting_for` on a dispatched step, the schedule-to-start timeout, cancelled
//! runs' queued tasks, and a worker whose queue settings are not the coordinator's.

use std::time::{Duration, Instant};

use baton_shared::proto::{
    CancelRunRequest, ListQueuesRequest, ListWorkersRequest, QueueInfo, Run, WorkerInfo, WorkerState,
};
use baton_tests::{Cluster, TEST_WORKER_HANDLERS, status, step_status};
use serde_json::json;

/// Generous: the machine may be loaded.
const PATIENCE: Duration = Duration::from_secs(60);

async fn workers(cluster: &Cluster) -> Vec<WorkerInfo> {
    cluster
        .operations()
        .await
        .list_workers(ListWorkersRequest {})
        .await
        .expect("ListWorkers")
        .into_inner()
        .workers
}

async fn queue(cluster: &Cluster, handler: &str) -> Option<QueueInfo> {
    cluster
        .operations()
        .await
        .list_queues(ListQueuesRequest {})
        .await
        .expect("ListQueues")
        .into_inner()
        .queues
        .into_iter()
        .find(|q| q.handler == handler)
}

/// Polls `probe` until it answers `Some`, panicking with `what` after [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(t) = probe().await {
            return t;
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn step<'a>(run: &'a Run, id: &str) -> &'a baton_shared::proto::StepRun {
    run.steps.iter().find(|s| s.id == id).expect("step")
}

/// Waits until `step` of `run_id` has a `waiting_for` that `want` accepts; returns it.
async fn waiting_for(cluster: &Cluster, run_id: &str, id: &str, want: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let run = cluster.get_run(run_id).await;
        let s = step(&run, id);
        if want(&s.waiting_for) {
            return s.waiting_for.clone();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "step {id} never showed the wait; last: status {} waiting_for {:?}",
            step_status(&run, id),
            s.waiting_for
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_is_listed_with_its_handlers_then_lost_after_kill_9_or_stopped_after_a_graceful_stop() {
    let mut cluster = Cluster::start("vis-workers", &[]).await;
    let killed = cluster.spawn_worker_with("vis-a", 3, &[("BATON_HEARTBEAT_INTERVAL", "200ms")]);
    let stopped = cluster.spawn_worker_with("vis-b", 2, &[("BATON_HEARTBEAT_INTERVAL", "200ms")]);

    let a = eventually("vis-a to register", || async {
        workers(&cluster).await.into_iter().find(|w| w.worker_id == "vis-a")
    })
    .await;
    let mut handlers: Vec<&str> = TEST_WORKER_HANDLERS.to_vec();
    handlers.sort();
    assert_eq!(a.handlers, handlers);
    assert_eq!(a.state, WorkerState::Running as i32);
    assert!(!a.lost);
    assert_eq!(a.concurrency, 3);
    assert_eq!(a.namespace, cluster.namespace);
    assert_eq!(a.heartbeat_interval_ms, 200);
    assert!(a.pid > 0 && !a.version.is_empty() && a.started_at.is_some(), "{a:?}");

    // kill -9: no goodbye; after 3 missed heartbeats it is lost, and still listed.
    cluster.stop_worker(killed, true);
    eventually("vis-a to be lost", || async {
        workers(&cluster)
            .await
            .into_iter()
            .find(|w| w.worker_id == "vis-a" && w.lost)
    })
    .await;

    // SIGTERM: it says goodbye, and is stopped, not lost.
    cluster.stop_worker(stopped, false);
    let b = eventually("vis-b to be stopped", || async {
        workers(&cluster)
            .await
            .into_iter()
            .find(|w| w.worker_id == "vis-b" && w.state == WorkerState::Stopped as i32)
    })
    .await;
    assert!(!b.lost, "{b:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_whose_handler_no_worker_serves_says_so_in_get_run_and_list_queues() {
    let mut cluster = Cluster::start("vis-nobody", &[]).await;
    cluster.spawn_worker("vis-w", 2);
    cluster
        .register("name: orphan\nversion: 1\nsteps:\n  - {id: a, handler: nobody}\n")
        .await;
    let run_id = cluster.submit("orphan", json!({})).await;
    let why = waiting_for(&cluster, &run_id, "a", |w| !w.is_empty()).await;
    assert_eq!(why, "no worker serves handler `nobody` (0 consumers)");
    assert_eq!(step_status(&cluster.get_run(&run_id).await, "a"), "dispatched");

    let q = eventually("the nobody queue to hold the task", || async {
        queue(&cluster, "nobody").await.filter(|q| q.ready == 1)
    })
    .await;
    assert_eq!(q.queue, format!("{}.step.nobody", cluster.namespace));
    assert!(q.exists);
    assert_eq!((q.consumers, q.live_workers, q.unacknowledged, q.waiting), (0, 0, 0, 1));
    assert!(q.oldest_waiting_since.is_some());
    // A served handler's queue has its consumer and live worker.
    let echo = queue(&cluster, "echo").await.expect("echo queue");
    assert_eq!((echo.consumers, echo.live_workers), (1, 1), "{echo:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_behind_others_in_a_busy_queue_says_how_many_tasks_are_ahead() {
    let mut cluster = Cluster::start("vis-ahead", &[]).await;
    cluster.spawn_worker_with("vis-busy", 1, &[("BATON_HEARTBEAT_INTERVAL", "200ms")]);
    cluster
        .register("name: hold\nversion: 1\nsteps:\n  - {id: a, handler: slow, timeout: 5m}\n")
        .await;
    let first = cluster.submit("hold", json!({"ms": 30000})).await;
    cluster.wait_step(&first, "a", "running", PATIENCE).await;
    let second = cluster.submit("hold", json!({"ms": 1})).await;
    let third = cluster.submit("hold", json!({"ms": 1})).await;
    let queue_name = format!("{}.step.slow", cluster.namespace);

    let why = waiting_for(&cluster, &third, "a", |w| !w.is_empty()).await;
    assert_eq!(why, format!("1 task ahead in queue `{queue_name}` (1 consumers)"));
    let why = waiting_for(&cluster, &second, "a", |w| !w.is_empty()).await;
    assert_eq!(why, format!("0 tasks ahead in queue `{queue_name}` (1 consumers)"));

    // The queue: two ready, one held by the worker (its heartbeat says so), two waiting.
    let q = eventually("the slow queue figures", || async {
        queue(&cluster, "slow")
            .await
            .filter(|q| q.ready == 2 && q.unacknowledged == 1)
    })
    .await;
    assert_eq!((q.consumers, q.live_workers, q.waiting), (1, 1, 2), "{q:?}");
    assert!(q.oldest_waiting_since.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_no_worker_starts_in_time_fails_its_attempt_with_schedule_to_start_timeout_and_is_retried() {
    // The coordinator's default applies to steps that set none.
    let mut cluster = Cluster::start("vis-sts", &[("BATON_DEFAULT_SCHEDULE_TO_START", "300ms")]).await;
    cluster
        .register("name: gives-up\nversion: 1\nsteps:\n  - {id: a, handler: echo, retry: {max_attempts: 2, initial_interval: 100ms}}\n")
        .await;
    cluster
        .register("name: patient-start\nversion: 1\nsteps:\n  - {id: a, handler: echo, schedule_to_start: 1s, retry: {max_attempts: 30, initial_interval: 100ms, max_interval: 100ms}}\n")
        .await;

    // No worker at all: both attempts time out waiting, and the run fails.
    let failed = cluster.submit("gives-up", json!({})).await;
    let run = cluster.wait_run(&failed, PATIENCE).await;
    assert_eq!(status(&run), "failed");
    let a = step(&run, "a");
    assert_eq!(a.attempts.len(), 2, "{:?}", a.attempts);
    for attempt in &a.attempts {
        assert_eq!(attempt.outcome, "timed_out");
        assert!(
            attempt
                .error
                .starts_with("ScheduleToStartTimeout: no worker started attempt"),
            "{}",
            attempt.error
        );
        assert!(attempt.error.contains("300ms"), "{}", attempt.error);
    }
    assert!(run.error.contains("ScheduleToStartTimeout"), "{}", run.error);

    // A worker that starts after the first timeout runs the retry, and only it: the attempts that
    // timed out are still in the queue, and are answered stale and dropped without running.
    let retried = cluster.submit("patient-start", json!({"x": 1})).await;
    eventually("the first schedule-to-start timeout", || async {
        let run = cluster.get_run(&retried).await;
        (!step(&run, "a").attempts.is_empty()).then_some(())
    })
    .await;
    cluster.spawn_worker("vis-late", 2);
    let run = cluster.wait_run(&retried, PATIENCE).await;
    assert_eq!(status(&run), "succeeded", "{}", run.error);
    let a = step(&run, "a");
    let (last, earlier) = a.attempts.split_last().expect("attempts");
    assert_eq!(last.outcome, "succeeded");
    assert!(!earlier.is_empty());
    for attempt in earlier {
        assert_eq!(attempt.outcome, "timed_out");
        assert!(attempt.error.contains("ScheduleToStartTimeout"), "{}", attempt.error);
        assert!(attempt.error.contains("1s"), "{}", attempt.error);
    }
    assert_eq!(cluster.executions(&retried, "a").await, 1, "the handler ran once");
    // The stale tasks left the queue too.
    eventually("the echo queue to drain", || async {
        queue(&cluster, "echo").await.filter(|q| q.ready == 0 && q.waiting == 0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_runs_queued_task_is_dropped_without_running_when_a_worker_comes() {
    let mut cluster = Cluster::start("vis-cancel", &[]).await;
    cluster
        .register("name: queued\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    let cancelled = cluster.submit("queued", json!({"n": 1})).await;
    waiting_for(&cluster, &cancelled, "a", |w| w.contains("0 consumers")).await;
    eventually("the task in the queue", || async {
        queue(&cluster, "echo").await.filter(|q| q.ready == 1)
    })
    .await;
    cluster
        .runs()
        .await
        .cancel_run(CancelRunRequest {
            run_id: cancelled.clone(),
            reason: "not needed".into(),
        })
        .await
        .expect("cancel");
    assert_eq!(status(&cluster.wait_run(&cancelled, PATIENCE).await), "cancelled");
    // A run submitted after it queues behind its task.
    let later = cluster.submit("queued", json!({"n": 2})).await;

    cluster.spawn_worker("vis-w", 1);
    assert_eq!(status(&cluster.wait_run(&later, PATIENCE).await), "succeeded");
    eventually("the echo queue to drain", || async {
        queue(&cluster, "echo")
            .await
            .filter(|q| q.ready == 0 && q.unacknowledged == 0 && q.waiting == 0)
    })
    .await;
    // The cancelled run's task was delivered first (the queue is FIFO), and dropped unrun.
    assert_eq!(cluster.executions(&cancelled, "a").await, 0);
    assert_eq!(cluster.executions(&later, "a").await, 1);
}

/// Starts a test worker with `env` and waits for it to exit; returns (exit code, its log).
async fn run_until_exit(cluster: &Cluster, name: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = cluster
        .worker_command(name, 1)
        .envs(env.iter().copied())
        .spawn()
        .expect("spawn test-worker");
    let start = Instant::now();
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "worker {name} did not exit:\n{}",
                std::fs::read_to_string(cluster.log_path(name)).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    (
        code,
        std::fs::read_to_string(cluster.log_path(name)).unwrap_or_default(),
    )
}

/// The lines of `log` that say the settings do not match.
fn mismatch_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("do not match the coordinator"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_with_another_delivery_limit_exits_non_zero_with_one_clear_line() {
    let mut cluster = Cluster::start("vis-limit", &[("BATON_QUEUE_TYPE", "quorum")]).await;
    let (code, log) = run_until_exit(
        &cluster,
        "vis-limit",
        &[("BATON_QUEUE_TYPE", "quorum"), ("BATON_DELIVERY_LIMIT", "7")],
    )
    .await;
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}:\n{log}");
    let lines = mismatch_lines(&log);
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("delivery_limit") && lines[0].contains("BATON_DELIVERY_LIMIT"),
        "{log}"
    );
    assert!(lines[0].contains('5') && lines[0].contains('7'), "{log}");
    // It declared no queue with its own limit: a worker with the coordinator's settings starts
    // and serves.
    cluster
        .register("name: ok\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster.spawn_worker("vis-right", 1);
    let run_id = cluster.submit("ok", json!({})).await;
    assert_eq!(status(&cluster.wait_run(&run_id, PATIENCE).await), "succeeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_with_another_queue_type_exits_non_zero_with_one_clear_line() {
    let cluster = Cluster::start("vis-qtype", &[]).await;
    let (code, log) = run_until_exit(&cluster, "vis-qtype", &[("BATON_QUEUE_TYPE", "quorum")]).await;
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}:\n{log}");
    let lines = mismatch_lines(&log);
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("queue_type") && lines[0].contains("BATON_QUEUE_TYPE"),
        "{log}"
    );
    assert!(lines[0].contains("classic") || lines[0].contains("quorum"), "{log}");
}
