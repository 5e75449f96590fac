//! Eager report (`ReportResultRequest.start`): a worker whose handler finished before it sent
//! StartStep starts the attempt and reports its result in one call. The tests drive the real
//! coordinator over a real tonic client as a worker would, and a real eager worker through chains:
//! the run's history, its attempts and the fencing are the same as with StartStep first.

use std::time::Duration;

use baton_shared::proto::{
    AttemptDisposition, CancelRunRequest, RegisterWorkerRequest, ReportResultRequest, Run, StartStepRequest,
    StepFailure, StepRun, Suspend, WatchRunRequest, WorkerState, report_result_request::Outcome,
};
use baton_tests::{
    Cluster, free_port,
    prom::{scrape_until, sum},
    status, step_status,
};
use futures::StreamExt;
use serde_json::json;

const PROCEED: i32 = AttemptDisposition::Proceed as i32;
const STALE: i32 = AttemptDisposition::Stale as i32;
const CANCELLED: i32 = AttemptDisposition::Cancelled as i32;
const DUPLICATE: i32 = AttemptDisposition::Duplicate as i32;

/// An eager report of attempt 1 of step `a` of `run_id` (workflow `workflow`) by `worker`.
fn eager(run_id: &str, workflow: &str, worker: &str, outcome: Outcome) -> ReportResultRequest {
    ReportResultRequest {
        run_id: run_id.into(),
        step_id: "a".into(),
        attempt: 1,
        worker_id: worker.into(),
        outcome: Some(outcome),
        workflow: workflow.into(),
        workflow_version: 1,
        start: true,
        input_json: r#"{"given":1}"#.into(),
        ..Default::default()
    }
}

fn output(by: &str) -> Outcome {
    Outcome::OutputJson(json!({ "by": by }).to_string())
}

/// The run's history as `kind:step:status` words (WatchRun from the start, to the run's end).
async fn history(cluster: &Cluster, run_id: &str) -> Vec<String> {
    let mut stream = cluster
        .runs()
        .await
        .watch_run(WatchRunRequest {
            run_id: run_id.into(),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let mut words = Vec::new();
    while let Some(e) = stream.next().await {
        let e = e.expect("event");
        if e.kind != "log" {
            words.push(format!("{}:{}:{}", e.kind, e.step_id, e.status));
        }
    }
    words
}

/// A step as a refused call must leave it, without `waiting_for` and `slot_holders` (for a
/// dispatched task step they tell its queue's length, which moves by itself).
fn steady(step: &StepRun) -> StepRun {
    let mut s = step.clone();
    s.waiting_for.clear();
    s.slot_holders.clear();
    s
}

async fn dispatched(cluster: &Cluster, run_id: &str) -> Run {
    cluster
        .wait_step(run_id, "a", "dispatched", Duration::from_secs(30))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_eager_report_starts_and_records_an_attempt_once_and_is_fenced_as_start_and_report_are() {
    let mut cluster = Cluster::start("eager-report-api", &[]).await;
    // `manual`: no worker serves it; the test plays the worker. `b` runs on a real worker.
    cluster
        .register(
            "name: eager-manual\nversion: 1\nsteps:\n  - id: a\n    handler: manual\n    retry: {max_attempts: 2, initial_interval: 10ms}\n  - {id: b, handler: echo, depends_on: [a]}\n",
        )
        .await;
    cluster.spawn_worker("w-echo", 2);
    let mut api = cluster.worker_api().await;

    // One call starts the attempt and records its output; the next step runs.
    let run_id = cluster.submit("eager-manual", json!({"n": 1})).await;
    dispatched(&cluster, &run_id).await;
    let answer = api
        .report_result(eager(&run_id, "eager-manual", "w-one", output("w-one")))
        .await
        .expect("ReportResult")
        .into_inner();
    assert_eq!(answer.disposition, PROCEED);
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    let a = &run.steps[0];
    assert_eq!((a.worker.as_str(), a.attempts.len()), ("w-one", 1), "{a:#?}");
    assert_eq!(a.attempts[0].input_json, r#"{"given":1}"#, "the echoed input is kept");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&a.output_json).expect("json"),
        json!({"by": "w-one"})
    );
    let words = history(&cluster, &run_id).await;
    let at = |w: &str| {
        words
            .iter()
            .position(|x| x == w)
            .unwrap_or_else(|| panic!("no {w} in {words:?}"))
    };
    assert!(
        at("step:a:dispatched") < at("step:a:running") && at("step:a:running") < at("step:a:succeeded"),
        "the same history as StartStep then ReportResult: {words:?}"
    );

    // The same call again (its answer was lost): the run is over, as StartStep would say, and
    // nothing changes.
    let again = api
        .report_result(eager(&run_id, "eager-manual", "w-one", output("again")))
        .await
        .expect("ReportResult")
        .into_inner();
    assert_eq!(again.disposition, CANCELLED);
    assert_eq!(cluster.get_run(&run_id).await.steps, run.steps);

    // A suspension is refused, naming the field: a suspending handler starts first.
    let run_id = cluster.submit("eager-manual", json!({"n": 2})).await;
    dispatched(&cluster, &run_id).await;
    let suspend = Outcome::Suspend(Suspend {
        event: "go".into(),
        key: "k".into(),
        timeout_ms: 0,
    });
    let e = api
        .report_result(eager(&run_id, "eager-manual", "w-one", suspend))
        .await
        .expect_err("a suspension with start");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("start:"), "{}", e.message());
    assert_eq!(step_status(&cluster.get_run(&run_id).await, "a"), "dispatched");

    // A failure: the attempt is started and failed, and the retry policy runs the next one.
    let failure = Outcome::Failure(StepFailure {
        message: "boom".into(),
        error_type: "Boom".into(),
        retryable: true,
        details: String::new(),
    });
    let answer = api
        .report_result(eager(&run_id, "eager-manual", "w-one", failure))
        .await
        .expect("ReportResult")
        .into_inner();
    assert_eq!(answer.disposition, PROCEED);
    let run = cluster
        .wait_step(&run_id, "a", "dispatched", Duration::from_secs(30))
        .await;
    let a = &run.steps[0];
    assert_eq!(a.attempt, 2, "{a:#?}");
    assert_eq!(a.attempts[0].error_type, "Boom", "{a:#?}");
    // The failed attempt reported again: no longer current, and nothing changes.
    let again = api
        .report_result(eager(&run_id, "eager-manual", "w-one", output("late")))
        .await
        .expect("ReportResult")
        .into_inner();
    assert_eq!(again.disposition, STALE);
    assert_eq!(steady(&cluster.get_run(&run_id).await.steps[0]), steady(&run.steps[0]));

    // Another live worker holds the attempt: the eager copy is a duplicate and changes nothing;
    // the holder's report counts.
    api.register_worker(RegisterWorkerRequest {
        worker_id: "w-holder".into(),
        host: "test".into(),
        pid: 1,
        version: "test".into(),
        namespace: cluster.namespace.clone(),
        handlers: vec!["manual".into()],
        concurrency: 1,
        state: WorkerState::Running as i32,
        heartbeat_interval_ms: 60_000,
        ..Default::default()
    })
    .await
    .expect("register worker");
    let run_id = cluster.submit("eager-manual", json!({"n": 3})).await;
    dispatched(&cluster, &run_id).await;
    let started = api
        .start_step(StartStepRequest {
            run_id: run_id.clone(),
            step_id: "a".into(),
            attempt: 1,
            worker_id: "w-holder".into(),
            workflow: "eager-manual".into(),
            workflow_version: 1,
            input_json: String::new(),
        })
        .await
        .expect("StartStep")
        .into_inner();
    assert_eq!(started.disposition, PROCEED);
    let held = cluster.get_run(&run_id).await;
    let dup = api
        .report_result(eager(&run_id, "eager-manual", "w-copy", output("w-copy")))
        .await
        .expect("ReportResult")
        .into_inner();
    assert_eq!(dup.disposition, DUPLICATE);
    assert_eq!(steady(&cluster.get_run(&run_id).await.steps[0]), steady(&held.steps[0]));
    let holder = api
        .report_result(ReportResultRequest {
            start: false,
            input_json: String::new(),
            ..eager(&run_id, "eager-manual", "w-holder", output("w-holder"))
        })
        .await
        .expect("ReportResult")
        .into_inner();
    assert_eq!(holder.disposition, PROCEED);
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded");
    assert_eq!(run.steps[0].worker, "w-holder");

    // A cancelled run: the eager report is answered CANCELLED.
    let run_id = cluster.submit("eager-manual", json!({"n": 4})).await;
    dispatched(&cluster, &run_id).await;
    cluster
        .runs()
        .await
        .cancel_run(CancelRunRequest {
            run_id: run_id.clone(),
            ..Default::default()
        })
        .await
        .expect("cancel");
    let answer = api
        .report_result(eager(&run_id, "eager-manual", "w-one", output("late")))
        .await
        .expect("ReportResult")
        .into_inner();
    assert_eq!(answer.disposition, CANCELLED);
    assert_eq!(status(&cluster.get_run(&run_id).await), "cancelled");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_eager_worker_reports_quick_handlers_in_one_call_and_starts_slow_ones_first() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut cluster = Cluster::start("eager-report-chain", &[("BATON_METRICS_ADDR", &addr)]).await;
    // Ten quick steps, then one that emits progress events (they wait for the start's answer, so
    // it cannot finish within the window: StartStep goes first), then one that fails once.
    let mut yaml = String::from("name: eager-chain\nversion: 1\nsteps:\n  - {id: s0, handler: echo}\n");
    for i in 1..10 {
        yaml.push_str(&format!("  - {{id: s{i}, handler: echo, depends_on: [s{}]}}\n", i - 1));
    }
    yaml.push_str("  - {id: p, handler: patient, depends_on: [s9]}\n");
    yaml.push_str(
        "  - id: f\n    handler: fail\n    depends_on: [p]\n    retry: {max_attempts: 3, initial_interval: 50ms}\n",
    );
    cluster.register(&yaml).await;
    // The longest window, so that on a loaded machine every quick handler still finishes in it.
    cluster.spawn_worker_with(
        "eager-w",
        2,
        &[("BATON_EAGER_START", "true"), ("BATON_EAGER_REPORT_WINDOW", "1s")],
    );
    let run_id = cluster
        .submit("eager-chain", json!({"ticks": 3, "ms": 10, "succeed_on_attempt": 2}))
        .await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(120)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    for s in &run.steps {
        let want = if s.id == "f" { 2 } else { 1 };
        assert_eq!(s.attempts.len(), want, "{s:#?}");
        assert_eq!(cluster.executions(&run_id, &s.id).await, want as i64, "step {}", s.id);
    }
    let words = history(&cluster, &run_id).await;
    for s in &run.steps {
        for st in ["dispatched", "running", "succeeded"] {
            assert!(
                words.contains(&format!("step:{}:{st}", s.id)),
                "step:{}:{st} in {words:?}",
                s.id
            );
        }
    }
    // The ten quick steps and f's two attempts went as eager reports (one commit each); p, which
    // waited for its start, went through StartStep and ReportResult.
    let eager_commits = |m: &[_]| {
        sum(
            m,
            "baton_redis_script_duration_seconds_count",
            &[("script", "start_and_complete")],
        )
    };
    let m = scrape_until(port, Duration::from_secs(30), |m| eager_commits(m) >= 12.0).await;
    assert_eq!(eager_commits(&m), 12.0, "eager reports");
    let starts = sum(
        &m,
        "baton_redis_script_duration_seconds_count",
        &[("script", "start_step")],
    );
    assert_eq!(starts, 1.0, "StartStep calls (p's)");
}
