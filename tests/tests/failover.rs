//! Failover in seconds: what a coordinator, broker or Redis fault costs, with real processes.
//! Each test prints the stall it measured (`cargo test -- --nocapture` shows it).

use std::time::{Duration, Instant};

use baton_shared::{
    proto::{
        GetWorkflowRequest, ListScheduleTicksRequest, ReportResultRequest, StartStepRequest, WatchRunRequest,
        report_result_request,
    },
    time::now_ms,
};
use baton_tests::{Cluster, REDIS_URL, TcpProxy, ms, status, step_status};
use redis::AsyncCommands;
use serde_json::json;

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(REDIS_URL)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection")
}

/// Case 1: the coordinator that claimed a due per-second schedule is frozen while it holds the
/// claim and then killed; another coordinator takes the schedule over within the lease, fires every
/// missed tick once (none skipped: each is judged as of its own time), and says they were caught up.
#[tokio::test(flavor = "multi_thread")]
async fn a_per_second_schedule_goes_on_within_5s_when_its_claiming_coordinator_is_killed() {
    let mut cluster = Cluster::start("sched-failover", &[]).await;
    cluster
        .register(
            "name: ticker\nversion: 1\nschedules:\n  - {name: every, cron: '* * * * * *', overlap: skip}\nsteps:\n  - {id: a, handler: echo}\n",
        )
        .await;
    cluster.spawn_worker("w1", 4);
    let id = "ticker/every";
    let due_key = baton_shared::keys::Keys::new(cluster.namespace.clone()).schedule_due();
    let mut conn = redis().await;
    // Let it tick a few times on the first coordinator alone: wait for its ledger to hold two ticks
    // (a fixed sleep raced the coordinator's start on a loaded machine: frozen before its first
    // tick, it owed no tick to catch up, and the case below tested nothing).
    let ledger_key = baton_shared::keys::Keys::new(cluster.namespace.clone()).schedule_ticks(id);
    let start = Instant::now();
    loop {
        let n: usize = conn.hlen(&ledger_key).await.expect("hlen");
        if n >= 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the schedule never ticked on the first coordinator"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = cluster.coordinator_pid().expect("coordinator runs");
    // Freeze the coordinator at a moment it holds the schedule's claim: its due score then lies a
    // lease ahead (a due tick is at most 1 s ahead).
    let start = Instant::now();
    loop {
        signal(pid, "-STOP");
        let score: Option<f64> = conn.zscore(&due_key, id).await.expect("zscore");
        if score.is_some_and(|s| s as i64 > now_ms() + 1500) {
            break;
        }
        signal(pid, "-CONT");
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never caught the coordinator holding the claim"
        );
        tokio::time::sleep(Duration::from_millis(7)).await;
    }
    // A healthy second coordinator, then the claimer dies.
    let (second, _) = cluster.start_another_coordinator().await;
    let killed_at = now_ms();
    signal(pid, "-KILL");
    cluster.stop_coordinator(true);

    let mut schedules = baton_shared::proto::schedule_service_client::ScheduleServiceClient::new(
        tonic::transport::Endpoint::from_shared(second.clone())
            .expect("address")
            .connect()
            .await
            .expect("connect to the second coordinator"),
    );
    let ticks = |schedules: &mut baton_shared::proto::schedule_service_client::ScheduleServiceClient<_>| {
        let mut s = schedules.clone();
        async move {
            let mut t = s
                .list_schedule_ticks(ListScheduleTicksRequest {
                    id: id.into(),
                    limit: 1000,
                })
                .await
                .expect("ticks")
                .into_inner()
                .ticks;
            t.sort_by_key(|t| ms(&t.tick_at));
            t
        }
    };
    // The first tick due after the kill fires within 5 s of it.
    let deadline = Instant::now() + Duration::from_secs(40);
    let first_after = loop {
        let t = ticks(&mut schedules).await;
        if let Some(t) = t.into_iter().find(|t| ms(&t.tick_at) >= killed_at) {
            break t;
        }
        assert!(Instant::now() < deadline, "no tick after the kill");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stall = ms(&first_after.recorded_at) - killed_at;
    eprintln!("schedule failover: the first tick after the kill was recorded {stall} ms after it");
    assert!(
        stall <= 5_000,
        "the next tick fired {stall} ms after the kill: {first_after:?}"
    );

    // Every second from the first tick to the last is in the ledger once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = ticks(&mut schedules).await;
    assert!(all.len() >= 6, "{all:#?}");
    for pair in all.windows(2) {
        assert_eq!(
            ms(&pair[1].tick_at) - ms(&pair[0].tick_at),
            1000,
            "a tick is missing or twice: {pair:#?}"
        );
    }
    // The ticks caught up after the stall say so, and each is judged as of its own time
    // (overlap: skip): a tick is skipped only for a run that was going at its due time (started
    // by then, not finished by then), never for the run that the caught-up tick before it started
    // a moment ago. Whether a caught-up tick fires or is skipped depends on how long the run
    // before the stall takes on this machine, so the test asserts the rule, not the outcome.
    assert!(
        all.iter().any(|t| t.reason.contains("caught up")),
        "the late ticks say they were caught up: {all:#?}"
    );
    let mut runs = baton_shared::proto::run_service_client::RunServiceClient::new(
        tonic::transport::Endpoint::from_shared(second)
            .expect("address")
            .connect()
            .await
            .expect("connect to the second coordinator"),
    );
    for t in &all {
        match t.outcome.as_str() {
            "fired" => assert!(!t.run_id.is_empty(), "{t:?}"),
            "skipped" => {
                let previous = t
                    .reason
                    .strip_prefix("the previous run ")
                    .and_then(|r| r.split_whitespace().next())
                    .unwrap_or_else(|| panic!("a skip names the run in the way: {t:?}"));
                let run = runs
                    .get_run(baton_shared::proto::GetRunRequest {
                        run_id: previous.into(),
                        ..Default::default()
                    })
                    .await
                    .expect("the run in the way")
                    .into_inner();
                assert!(
                    ms(&run.created_at) <= ms(&t.tick_at),
                    "tick {t:?} was skipped for run {previous}, created after the tick was due"
                );
                let finished = ms(&run.finished_at);
                assert!(
                    finished == 0 || finished > ms(&t.tick_at),
                    "tick {t:?} was skipped for run {previous}, which had finished before the tick was due"
                );
            }
            other => panic!("unexpected outcome {other}: {t:?}"),
        }
    }
}

/// Case 2: the coordinator's connection to RabbitMQ is cut (a proxy between them closes it and
/// refuses new ones) while runs are submitted; their dispatches are committed but cannot be
/// published. When the connection comes back, the backlog goes out at once, not after the 15 s
/// dispatch grace.
#[tokio::test(flavor = "multi_thread")]
async fn dispatches_that_failed_while_rabbitmq_was_cut_are_sent_within_3s_of_its_return() {
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let amqp = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port);
    let mut cluster = Cluster::start(
        "amqp-cut",
        &[("BATON_AMQP_URL", amqp.as_str()), ("BATON_PUBLISH_TIMEOUT", "2s")],
    )
    .await;
    cluster.register("name: quick\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n  - {id: b, handler: echo, depends_on: [a]}\n").await;
    cluster.spawn_worker("w1", 8);
    // Warm up: the path works.
    let warm = cluster.submit("quick", json!({})).await;
    assert_eq!(
        status(&cluster.wait_run(&warm, Duration::from_secs(30)).await),
        "succeeded"
    );

    proxy.cut();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(cluster.submit("quick", json!({"i": i})).await);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    for id in &ids {
        assert_eq!(
            step_status(&cluster.get_run(id).await, "a"),
            "dispatched",
            "nothing ran while RabbitMQ was cut"
        );
    }
    let restored = now_ms();
    proxy.restore();
    // The backlog is re-sent when the connection is back: every first step has started within
    // 4 s (the 1 s health probe notices, then the re-send is at once), not after the dispatch
    // grace. How long the runs then take is the machine's business.
    let mut drained = 0;
    for id in &ids {
        let run = cluster.wait_run(id, Duration::from_secs(30)).await;
        assert_eq!(status(&run), "succeeded", "{run:#?}");
        drained = drained.max(ms(&run.steps[0].started_at) - restored);
    }
    eprintln!("RabbitMQ cut: the last waiting step started {drained} ms after the connection came back");
    assert!(
        drained <= 4_000,
        "the backlog took {drained} ms after RabbitMQ came back"
    );
}

/// Case 3: a worker's `ReportResult` is cancelled right after it was sent (as when the worker is
/// killed just after reporting). Whenever the result was committed, the next step starts within
/// 3 s (not after the sweeper's 10 s lease): the publish of a committed transition does not die
/// with the request.
#[tokio::test(flavor = "multi_thread")]
async fn a_result_committed_while_its_report_was_cancelled_still_starts_the_next_step_within_3s() {
    // A long lease: a publish that died with the request would leave step b to the sweeper, which
    // takes it up only when the outbox entry's hold (one lease) lapses, 10 s later; a bound of 3 s
    // tells the two apart on a loaded machine.
    let cluster = Cluster::start("report-cancel", &[("BATON_TIMER_LEASE", "10s")]).await;
    // `manual` is served by no worker: the test plays the worker of step a.
    cluster
        .register("name: handoff\nversion: 1\nsteps:\n  - {id: a, handler: manual}\n  - {id: b, handler: echo, depends_on: [a]}\n")
        .await;
    let mut cluster = cluster;
    cluster.spawn_worker("w1", 8);
    let version = cluster
        .workflows()
        .await
        .get_workflow(GetWorkflowRequest {
            name: "handoff".into(),
            version: 0,
        })
        .await
        .expect("workflow")
        .into_inner()
        .version;
    let mut api = cluster.worker_api().await;
    let mut cancelled_after_commit = 0;
    let mut worst = 0i64;
    // How long a report takes to be answered on this machine now, from the reports let through
    // whole (every 8th): the others are given up after 0 to 2 times that, so that on a fast or a
    // loaded machine alike some are dropped before the coordinator commits and some after. Goes on
    // (at most 240 runs) until at least 3 were dropped after their commit, and for 60 runs at least.
    let mut whole: Vec<Duration> = Vec::new();
    for i in 0..240u64 {
        if i >= 60 && cancelled_after_commit >= 3 {
            break;
        }
        let run_id = cluster.submit("handoff", json!({"i": i})).await;
        cluster
            .wait_step(&run_id, "a", "dispatched", Duration::from_secs(10))
            .await;
        api.start_step(StartStepRequest {
            run_id: run_id.clone(),
            step_id: "a".into(),
            attempt: 1,
            worker_id: "test".into(),
            workflow: "handoff".into(),
            workflow_version: version,
            input_json: String::new(),
        })
        .await
        .expect("start a");
        let report = api.report_result(ReportResultRequest {
            run_id: run_id.clone(),
            step_id: "a".into(),
            attempt: 1,
            worker_id: "test".into(),
            outcome: Some(report_result_request::Outcome::OutputJson("{}".into())),
            workflow: "handoff".into(),
            workflow_version: version,
            attempt_base: 0,
            ..Default::default()
        });
        // Give up on the answer after 0 to 2 times a whole report's time (3 ms until one was
        // measured): some reports are dropped before the coordinator commits, some after.
        let typical = {
            let mut w = whole.clone();
            w.sort();
            w.get(w.len() / 2).copied().unwrap_or(Duration::from_millis(3))
        };
        let give_up = if i % 8 == 7 {
            Duration::from_secs(10)
        } else {
            typical.mul_f64((i % 8) as f64 / 3.5)
        };
        let sent = Instant::now();
        let answered = tokio::time::timeout(give_up, report).await;
        if i % 8 == 7 && answered.is_ok() {
            whole.push(sent.elapsed());
        }
        let run = cluster.get_run(&run_id).await;
        if step_status(&run, "a") != "succeeded" {
            // Maybe the commit is on its way: wait a little before deciding it did not happen.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let run = cluster.get_run(&run_id).await;
        if step_status(&run, "a") != "succeeded" {
            continue;
        }
        if answered.is_err() {
            cancelled_after_commit += 1;
        }
        let a_done = ms(&run.steps[0].finished_at);
        let run = cluster
            .wait_step(&run_id, "b", "succeeded", Duration::from_secs(30))
            .await;
        let b_started = ms(&run.steps[1].started_at);
        worst = worst.max(b_started - a_done);
        assert!(
            b_started - a_done <= 3_000,
            "step b started {} ms after a was committed (report answered: {})",
            b_started - a_done,
            answered.is_ok()
        );
    }
    eprintln!(
        "cancelled reports: {cancelled_after_commit} committed without an answer; worst a→b start {worst} ms; \
         a whole report took {whole:?}"
    );
    assert!(
        cancelled_after_commit > 0,
        "no report was cancelled after its commit: the test did not produce the fault"
    );
}

/// Case 5: a worker given two coordinator addresses keeps working when the first is killed for
/// good: its calls fail over to the second.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_with_two_coordinators_keeps_working_when_the_first_is_killed_for_good() {
    let mut cluster = Cluster::start("worker-failover", &[("BATON_QUEUE_TYPE", "quorum")]).await;
    cluster
        .register(
            "name: pair\nversion: 1\nsteps:\n  - {id: a, handler: slow}\n  - {id: b, handler: echo, depends_on: [a]}\n",
        )
        .await;
    let (second, _) = cluster.start_another_coordinator().await;
    let both = format!("{},{second}", cluster.addr);
    cluster.spawn_worker_with("w1", 4, &[("BATON_COORDINATOR", both.as_str())]);
    let before = cluster.submit("pair", json!({"ms": 50})).await;
    assert_eq!(
        status(&cluster.wait_run(&before, Duration::from_secs(30)).await),
        "succeeded"
    );
    // A run in flight when the first coordinator dies, and runs submitted after.
    let during = cluster.submit("pair", json!({"ms": 1500})).await;
    cluster
        .wait_step(&during, "a", "running", Duration::from_secs(10))
        .await;
    cluster.stop_coordinator(true);
    let killed = Instant::now();
    let mut runs = baton_shared::proto::run_service_client::RunServiceClient::new(
        tonic::transport::Endpoint::from_shared(second)
            .expect("address")
            .connect()
            .await
            .expect("connect to the second coordinator"),
    );
    let mut after = Vec::new();
    for i in 0..3 {
        after.push(
            runs.submit_run(baton_shared::proto::SubmitRunRequest {
                workflow: "pair".into(),
                input_json: json!({"ms": 50, "i": i}).to_string(),
                ..Default::default()
            })
            .await
            .expect("submit to the second coordinator")
            .into_inner()
            .run_id,
        );
    }
    for id in std::iter::once(&during).chain(&after) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let run = runs
                .get_run(baton_shared::proto::GetRunRequest {
                    run_id: id.clone(),
                    ..Default::default()
                })
                .await
                .expect("get run")
                .into_inner();
            if status(&run) == "succeeded" {
                assert_eq!(run.steps[1].worker, "w1");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} did not finish through the second coordinator: {run:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprintln!(
        "worker failover: every run finished {} ms after the first coordinator was killed",
        killed.elapsed().as_millis()
    );
}

/// Case 6: the namespace's data disappears from Redis (as after a restart without persistence).
/// The coordinator says so: an error in its log, NOT_SERVING while it restores what it can, the
/// definitions of `definitions_dir` registered again, and NOT_FOUND answers that name the loss.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_lost_its_data_is_detected_reported_and_the_definitions_restored() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("restored.yaml"),
        "name: restored\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n",
    )
    .expect("write definition");
    let defs = dir.path().to_string_lossy().to_string();
    let mut cluster = Cluster::start("redis-reset", &[("BATON_DEFINITIONS_DIR", defs.as_str())]).await;
    cluster.spawn_worker("w1", 2);
    let old = cluster.submit("restored", json!({})).await;
    assert_eq!(
        status(&cluster.wait_run(&old, Duration::from_secs(30)).await),
        "succeeded"
    );
    // Let the health probe see the marker once.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Everything of this namespace goes, as a FLUSHALL would take it (the Redis is shared with
    // other tests, so only this namespace's keys).
    let mut conn = redis().await;
    let keys = baton_tests::scan_keys(
        &mut conn,
        &baton_shared::keys::Keys::new(cluster.namespace.clone()).scan_pattern(),
    )
    .await;
    assert!(
        keys.iter().any(|k| k.ends_with(":marker")),
        "the coordinator wrote its marker: {keys:?}"
    );
    let _: () = conn.del(&keys).await.expect("del");

    // The definitions come back by themselves, and new runs work.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = cluster
            .workflows()
            .await
            .get_workflow(GetWorkflowRequest {
                name: "restored".into(),
                version: 0,
            })
            .await;
        if got.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the definition was not registered again: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new = cluster.submit("restored", json!({})).await;
    assert_eq!(
        status(&cluster.wait_run(&new, Duration::from_secs(30)).await),
        "succeeded"
    );

    // The old run is gone, and the answer says why it may be.
    let err = cluster
        .runs()
        .await
        .watch_run(WatchRunRequest {
            run_id: old.clone(),
            ..Default::default()
        })
        .await
        .err()
        .or(cluster
            .runs()
            .await
            .get_run(baton_shared::proto::GetRunRequest {
                run_id: old.clone(),
                ..Default::default()
            })
            .await
            .err())
        .expect("the old run is gone");
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.message().contains("Redis lost its data"), "{}", err.message());

    let log = std::fs::read_to_string(cluster.log_path("coordinator")).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("Redis lost its data")),
        "the coordinator logs the loss as an error"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("NOT_SERVING") && l.contains("Redis lost its data")),
        "health says NOT_SERVING with the reason while it restores"
    );
}

/// Starts a coordinator of `cluster`'s namespace whose step-task publishes wait `delay` first (as
/// one stuck between commit and publish), waits until it serves, and returns its address and pid.
/// It must be the cluster's first additional coordinator.
async fn stalled_coordinator(cluster: &mut Cluster, delay: &str) -> (String, u32) {
    let addr = cluster.spawn_coordinator_unwaited(&[("BATON_TEST_PUBLISH_DELAY", delay)]);
    let i = 0;
    let start = Instant::now();
    while baton_tests::health_status(&addr, "").await != Ok(tonic_health::ServingStatus::Serving) {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the stalled coordinator never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (addr, cluster.another_coordinator_pid(i).expect("it runs"))
}

/// Submits `n` one-step runs of `workflow` to the coordinator at `addr`; returns their ids.
async fn submit_to(addr: &str, workflow: &str, n: usize) -> Vec<String> {
    let mut runs = baton_shared::proto::run_service_client::RunServiceClient::new(
        tonic::transport::Endpoint::from_shared(addr.to_string())
            .expect("address")
            .connect()
            .await
            .expect("connect"),
    );
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            runs.submit_run(baton_shared::proto::SubmitRunRequest {
                workflow: workflow.into(),
                input_json: json!({"i": i}).to_string(),
                ..Default::default()
            })
            .await
            .expect("submit")
            .into_inner()
            .run_id,
        );
    }
    ids
}

/// Case 7: a coordinator commits dispatches and dies before it publishes them (kill -9 while its
/// publishes are stuck). The survivor's sweeper re-sends them within one hold lease (3 s), not
/// after the 15 s dispatch grace, and each step runs once.
#[tokio::test(flavor = "multi_thread")]
async fn dispatches_of_a_coordinator_killed_between_commit_and_publish_are_sent_again_within_5s() {
    let mut cluster = Cluster::start("outbox-dead", &[]).await;
    cluster
        .register("name: one\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    // The worker talks to the survivor (the cluster's first coordinator) only.
    cluster.spawn_worker("w1", 8);
    let warm = cluster.submit("one", json!({})).await;
    assert_eq!(
        status(&cluster.wait_run(&warm, Duration::from_secs(30)).await),
        "succeeded"
    );

    let (victim, pid) = stalled_coordinator(&mut cluster, "1h").await;
    let ids = submit_to(&victim, "one", 6).await;
    for id in &ids {
        cluster.wait_step(id, "a", "dispatched", Duration::from_secs(10)).await;
    }
    signal(pid, "-KILL");
    let killed_at = now_ms();
    let mut stall = 0;
    for id in &ids {
        let run = cluster.wait_run(id, Duration::from_secs(60)).await;
        assert_eq!(status(&run), "succeeded", "{run:#?}");
        stall = stall.max(ms(&run.steps[0].started_at) - killed_at);
        assert_eq!(cluster.executions(id, "a").await, 1, "step a of {id} ran once");
    }
    eprintln!(
        "coordinator killed between commit and publish: its {} dispatches started at most {stall} ms after the kill",
        ids.len()
    );
    assert!(stall <= 5_000, "a dispatch of the dead coordinator waited {stall} ms");
}

/// Case 8: a live coordinator's publishes are slow (6 s, two hold leases, within the 15 s dispatch
/// grace). It holds their outbox entries meanwhile, so no other coordinator sends them a second
/// time: every step runs once, delivered by the slow publish, and no coordinator logs a re-send.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_coordinators_slow_publishes_are_not_sent_twice_by_another() {
    let mut cluster = Cluster::start("outbox-slow", &[]).await;
    cluster
        .register("name: one\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster.spawn_worker("w1", 8);
    let (slow, _) = stalled_coordinator(&mut cluster, "6s").await;
    let ids = submit_to(&slow, "one", 6).await;
    let mut earliest = i64::MAX;
    for id in &ids {
        let run = cluster.wait_run(id, Duration::from_secs(60)).await;
        assert_eq!(status(&run), "succeeded", "{run:#?}");
        earliest = earliest.min(ms(&run.steps[0].started_at) - ms(&run.created_at));
        assert_eq!(cluster.executions(id, "a").await, 1, "step a of {id} ran once");
    }
    let log = std::fs::read_to_string(cluster.log_path("coordinator")).unwrap_or_default();
    let resent: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("re-sending an unconfirmed dispatch") && ids.iter().any(|id| l.contains(id.as_str())))
        .collect();
    eprintln!(
        "slow publishes (6 s): {} runs, each step ran once, the first started {earliest} ms after its submit, {} re-sends",
        ids.len(),
        resent.len()
    );
    assert!(
        resent.is_empty(),
        "another coordinator re-sent a live one's dispatch: {resent:#?}"
    );
    assert!(
        earliest >= 5_000,
        "the steps were delivered by the slow publishes, not by a re-send"
    );
}

/// A run service client of the coordinator at `addr`.
async fn runs_at(addr: &str) -> baton_shared::proto::run_service_client::RunServiceClient<tonic::transport::Channel> {
    baton_shared::proto::run_service_client::RunServiceClient::new(
        tonic::transport::Endpoint::from_shared(addr.to_string())
            .expect("address")
            .connect()
            .await
            .expect("connect"),
    )
}

/// Case 9: one of two coordinators is cut off from Redis for 10 s (a proxy between them refuses)
/// while runs flow; the workers list it first. It answers UNAVAILABLE at once while cut off (it
/// does not hold calls), the workers move to the other coordinator (health watch, UNAVAILABLE,
/// call deadline), and steps keep finishing: no stall over 5 s.
#[tokio::test(flavor = "multi_thread")]
async fn workers_move_off_a_coordinator_cut_from_redis_and_steps_keep_finishing() {
    let proxy = TcpProxy::start("127.0.0.1:6379").await;
    let cut_redis = format!("redis://127.0.0.1:{}", proxy.port);
    let mut cluster = Cluster::start("redis-cut", &[("BATON_REDIS_URL", cut_redis.as_str())]).await;
    cluster
        .register("name: chain\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n  - {id: b, handler: echo, depends_on: [a]}\n")
        .await;
    let cut_off = cluster.addr.clone();
    let other = cluster.spawn_coordinator_unwaited(&[("BATON_REDIS_URL", baton_tests::REDIS_URL)]);
    let start = Instant::now();
    while baton_tests::health_status(&other, "").await != Ok(tonic_health::ServingStatus::Serving) {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the second coordinator never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let both = format!("{cut_off},{other}");
    cluster.spawn_worker_with("w1", 8, &[("BATON_COORDINATOR", both.as_str())]);
    cluster.spawn_worker_with("w2", 8, &[("BATON_COORDINATOR", both.as_str())]);
    let warm = cluster.submit("chain", json!({})).await;
    assert_eq!(
        status(&cluster.wait_run(&warm, Duration::from_secs(30)).await),
        "succeeded"
    );

    // Runs flow through the other coordinator, one every 100 ms, for 3 s before the cut, the
    // 10 s of the cut and 3 s after.
    let submitter = {
        let other = other.clone();
        tokio::spawn(async move {
            let mut runs = runs_at(&other).await;
            let mut ids = Vec::new();
            let until = Instant::now() + Duration::from_secs(16);
            while Instant::now() < until {
                let id = runs
                    .submit_run(baton_shared::proto::SubmitRunRequest {
                        workflow: "chain".into(),
                        input_json: "{}".into(),
                        ..Default::default()
                    })
                    .await
                    .expect("submit to the other coordinator")
                    .into_inner()
                    .run_id;
                ids.push(id);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            ids
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cut_at = now_ms();
    proxy.cut();

    // Once its probe has seen Redis gone, the cut-off coordinator answers at once.
    let start = Instant::now();
    while baton_tests::health_status(&cut_off, "").await != Ok(tonic_health::ServingStatus::NotServing) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the cut-off coordinator still says SERVING"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let noticed = now_ms() - cut_at;
    let mut cut_runs = runs_at(&cut_off).await;
    let mut worst_answer = Duration::ZERO;
    for _ in 0..5 {
        let asked = Instant::now();
        let err = cut_runs
            .get_run(baton_shared::proto::GetRunRequest {
                run_id: warm.clone(),
                ..Default::default()
            })
            .await
            .expect_err("a coordinator without Redis cannot answer");
        worst_answer = worst_answer.max(asked.elapsed());
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        assert!(err.message().contains("cannot reach Redis"), "{}", err.message());
    }
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(Duration::from_millis(noticed.max(0) as u64))).await;
    let restored_at = now_ms();
    proxy.restore();

    let ids = submitter.await.expect("submitter");
    let mut runs = runs_at(&other).await;
    let mut finishes = Vec::new();
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(60);
        let run = loop {
            let run = runs
                .get_run(baton_shared::proto::GetRunRequest {
                    run_id: id.clone(),
                    ..Default::default()
                })
                .await
                .expect("get run")
                .into_inner();
            if status(&run) == "succeeded" {
                break run;
            }
            assert!(Instant::now() < deadline, "run {id} did not finish: {run:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        finishes.extend(run.steps.iter().map(|s| ms(&s.finished_at)));
        for s in ["a", "b"] {
            assert_eq!(cluster.executions(id, s).await, 1, "step {s} of {id} ran once");
        }
    }
    // The longest time during the cut in which no step finished anywhere.
    let mut marks: Vec<i64> = finishes
        .into_iter()
        .filter(|&t| t > cut_at && t < restored_at)
        .collect();
    marks.push(cut_at);
    marks.push(restored_at);
    marks.sort_unstable();
    let stall = marks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    eprintln!(
        "Redis cut from one of two coordinators for 10 s: {} runs; NOT_SERVING {noticed} ms after the cut; its \
         answers came in at most {worst_answer:?} (UNAVAILABLE); {} step finishes during the cut; worst stall {stall} ms",
        ids.len(),
        marks.len() - 2
    );
    assert!(
        worst_answer <= Duration::from_secs(1),
        "the cut-off coordinator held a call {worst_answer:?}"
    );
    assert!(stall <= 5_000, "no step finished for {stall} ms during the cut");
}
