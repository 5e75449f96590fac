//! Fencing of the worker protocol, with auth on and a worker token forging calls on a raw
//! `WorkerService` client: only a step that runs a handler, in a running attempt, started by the
//! worker that reports, can be moved by a worker; and one worker holds an attempt while it lives,
//! so that a duplicate copy of a task (a re-send, a redelivery) is dropped instead of run twice.

use std::time::{Duration, Instant};

use baton_shared::{
    credentials::AuthChannel,
    proto::{
        AttemptDisposition, CancelRunRequest, CompleteHumanTaskRequest, EmitEventRequest, GetRunRequest,
        HeartbeatRequest, ListHumanTasksRequest, RegisterWorkerRequest, RegisterWorkflowRequest, ReportResultRequest,
        Run, StartStepRequest, StepFailure, StepTask, SubmitRunRequest, Suspend, WorkerState,
        human_task_service_client::HumanTaskServiceClient, report_result_request::Outcome,
        run_service_client::RunServiceClient, worker_service_client::WorkerServiceClient,
        workflow_service_client::WorkflowServiceClient,
    },
};
use baton_tests::{AMQP_URL, Cluster, ClusterOptions, REDIS_URL, ms, status, step_status};
use lapin::{BasicProperties, options::BasicPublishOptions};
use prost::Message as _;
use serde_json::json;

const ADMIN: &str = "tok-fence-admin-5e8a1c";
const OLGA: &str = "tok-fence-olga-9b2d7f";
const WORKER: &str = "tok-fence-worker-3c6e0a";

const PROCEED: i32 = AttemptDisposition::Proceed as i32;
const STALE: i32 = AttemptDisposition::Stale as i32;
const DUPLICATE: i32 = AttemptDisposition::Duplicate as i32;

/// A cluster with auth on: an admin, an operator `olga`, and a worker token its workers use.
async fn start(test: &str) -> Cluster {
    Cluster::start_with(
        test,
        ClusterOptions {
            env: vec![(
                "BATON_AUTH_TOKENS".into(),
                format!("admin:ada:{ADMIN},operator:olga:{OLGA},worker::{WORKER}"),
            )],
            worker_env: vec![("BATON_TOKEN".into(), WORKER.into())],
            ..Default::default()
        },
    )
    .await
}

async fn channel(cluster: &Cluster, token: &str) -> AuthChannel {
    cluster.channel_with_token(Some(token)).await
}

async fn worker_api(cluster: &Cluster) -> WorkerServiceClient<AuthChannel> {
    WorkerServiceClient::new(channel(cluster, WORKER).await)
}

async fn register(cluster: &Cluster, yaml: &str) {
    WorkflowServiceClient::new(channel(cluster, ADMIN).await)
        .register_workflow(RegisterWorkflowRequest {
            definition: yaml.into(),
        })
        .await
        .expect("register");
}

async fn submit(cluster: &Cluster, workflow: &str, input: serde_json::Value) -> String {
    RunServiceClient::new(channel(cluster, ADMIN).await)
        .submit_run(SubmitRunRequest {
            workflow: workflow.into(),
            input_json: input.to_string(),
            ..Default::default()
        })
        .await
        .expect("submit")
        .into_inner()
        .run_id
}

async fn get_run(cluster: &Cluster, run_id: &str) -> Run {
    RunServiceClient::new(channel(cluster, ADMIN).await)
        .get_run(GetRunRequest {
            run_id: run_id.into(),
            ..Default::default()
        })
        .await
        .expect("get run")
        .into_inner()
}

/// Polls GetRun until `done` holds; panics after `within` (an upper bound, not an expectation).
async fn wait_for(cluster: &Cluster, run_id: &str, what: &str, within: Duration, done: impl Fn(&Run) -> bool) -> Run {
    let start = Instant::now();
    loop {
        let run = get_run(cluster, run_id).await;
        if done(&run) {
            return run;
        }
        assert!(start.elapsed() < within, "{what} not within {within:?}: {run:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a forged call could change in a run, with `waiting_for` left out (for a task step it
/// tells how long its queue is, which moves by itself).
fn state(run: &Run) -> (i32, String, Vec<baton_shared::proto::StepRun>) {
    let steps = run
        .steps
        .iter()
        .cloned()
        .map(|mut s| {
            s.waiting_for.clear();
            s.slot_holders.clear();
            s
        })
        .collect();
    (run.status, run.output_json.clone(), steps)
}

/// Entries of the run's event stream in Redis (custom events from EmitEvent are among them).
async fn event_count(cluster: &Cluster, run_id: &str) -> usize {
    let mut conn = redis::Client::open(REDIS_URL)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let key = baton_shared::keys::Keys::new(cluster.namespace.clone()).events(run_id);
    redis::AsyncCommands::xlen(&mut conn, key).await.expect("XLEN")
}

fn attempt_of(run: &Run, step: &str) -> u32 {
    run.steps
        .iter()
        .find(|s| s.id == step)
        .unwrap_or_else(|| panic!("no step {step}"))
        .attempt
}

/// Every worker call a forger can make on (`step`, `attempt`) as `worker`: StartStep (unless
/// `start` is false), Heartbeat, EmitEvent, and ReportResult with an output that breaks a form, a
/// failure and a suspension. Returns the answers, by call.
async fn forge_all(
    api: &mut WorkerServiceClient<AuthChannel>,
    run_id: &str,
    workflow: &str,
    step: &str,
    attempt: u32,
    worker: &str,
) -> Vec<(String, i32)> {
    let mut answers = vec![(
        "StartStep".to_string(),
        forge_start(api, run_id, workflow, step, attempt, worker).await,
    )];
    answers.extend(forge_calls(api, run_id, workflow, step, attempt, worker).await);
    answers
}

async fn forge_start(
    api: &mut WorkerServiceClient<AuthChannel>,
    run_id: &str,
    workflow: &str,
    step: &str,
    attempt: u32,
    worker: &str,
) -> i32 {
    api.start_step(StartStepRequest {
        run_id: run_id.into(),
        step_id: step.into(),
        attempt,
        worker_id: worker.into(),
        workflow: workflow.into(),
        workflow_version: 1,
        input_json: String::new(),
    })
    .await
    .expect("StartStep answers")
    .into_inner()
    .disposition
}

/// [`forge_all`] without StartStep.
async fn forge_calls(
    api: &mut WorkerServiceClient<AuthChannel>,
    run_id: &str,
    workflow: &str,
    step: &str,
    attempt: u32,
    worker: &str,
) -> Vec<(String, i32)> {
    let mut answers = Vec::new();
    let hb = api
        .heartbeat(HeartbeatRequest {
            run_id: run_id.into(),
            step_id: step.into(),
            attempt,
            worker_id: worker.into(),
        })
        .await
        .expect("Heartbeat answers")
        .into_inner();
    answers.push(("Heartbeat".to_string(), hb.disposition));
    let emit = api
        .emit_event(EmitEventRequest {
            run_id: run_id.into(),
            step_id: step.into(),
            attempt,
            payload_json: json!({"forged": true}).to_string(),
            worker_id: worker.into(),
        })
        .await
        .expect("EmitEvent answers")
        .into_inner();
    answers.push(("EmitEvent".to_string(), emit.disposition));
    for (name, outcome) in [
        (
            "ReportResult(output)",
            Outcome::OutputJson(r#"{"ok": "not-a-bool"}"#.into()),
        ),
        (
            "ReportResult(failure)",
            Outcome::Failure(StepFailure {
                message: "forged".into(),
                error_type: "Forged".into(),
                retryable: false,
                details: String::new(),
            }),
        ),
        (
            "ReportResult(suspend)",
            Outcome::Suspend(Suspend {
                event: "forged".into(),
                key: String::new(),
                timeout_ms: 0,
            }),
        ),
    ] {
        let r = api
            .report_result(ReportResultRequest {
                run_id: run_id.into(),
                step_id: step.into(),
                attempt,
                worker_id: worker.into(),
                outcome: Some(outcome),
                workflow: workflow.into(),
                workflow_version: 1,
                attempt_base: 0,
                ..Default::default()
            })
            .await
            .expect("ReportResult answers")
            .into_inner();
        answers.push((name.to_string(), r.disposition));
    }
    answers
}

const KID: &str = "name: fence-kid\nversion: 1\nsteps:\n  - {id: hold, human: {title: Hold}}\n";

const GATES: &str = r#"
name: fence-gates
version: 1
steps:
  - id: approve
    human:
      title: Approve
      assignees: [olga]
      form:
        type: object
        required: [ok]
        properties:
          ok: {type: boolean}
  - {id: nap, sleep: 1h}
  - {id: hear, wait_for_event: {event: fence-go}}
  - {id: sub, workflow: {name: fence-kid}}
  - {id: fan, handler: square, for_each: '[1, 2]'}
  - {id: after, handler: echo, depends_on: [approve]}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_token_cannot_start_beat_emit_or_report_a_step_that_runs_no_handler() {
    let cluster = start("fence-kinds").await;
    register(&cluster, KID).await;
    register(&cluster, GATES).await;
    // No worker runs: the fan-out's elements stay dispatched.
    let run_id = submit(&cluster, "fence-gates", json!({})).await;
    let before = wait_for(&cluster, &run_id, "every gate waiting", Duration::from_secs(60), |r| {
        ["approve", "nap", "hear", "sub"]
            .iter()
            .all(|s| step_status(r, s) == "waiting")
            && step_status(r, "fan") == "running"
    })
    .await;
    let events_before = event_count(&cluster, &run_id).await;

    let mut api = worker_api(&cluster).await;
    // A human, a sleep, a wait and a sub-workflow step, and the fan-out step itself (its elements
    // run the handler): the current attempt, and its neighbours.
    for step in ["approve", "nap", "hear", "sub", "fan"] {
        let current = attempt_of(&before, step);
        for attempt in [current, current + 1, 0] {
            for worker in ["forger", "human:olga", "coordinator", "timer"] {
                for (call, answer) in forge_all(&mut api, &run_id, "fence-gates", step, attempt, worker).await {
                    assert_eq!(
                        answer, STALE,
                        "{call} on {step} attempt {attempt} as {worker:?} was not refused"
                    );
                }
            }
        }
    }
    // An empty worker id is refused outright (no worker holds an attempt as nobody).
    let e = api
        .report_result(ReportResultRequest {
            run_id: run_id.clone(),
            step_id: "approve".into(),
            attempt: 1,
            worker_id: String::new(),
            outcome: Some(Outcome::OutputJson(r#"{"ok": true}"#.into())),
            workflow: "fence-gates".into(),
            workflow_version: 1,
            attempt_base: 0,
            ..Default::default()
        })
        .await
        .expect_err("no worker id");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("worker_id: required"), "{}", e.message());

    let after = get_run(&cluster, &run_id).await;
    assert_eq!(state(&after), state(&before), "a refused call changed the run");
    assert_eq!(
        event_count(&cluster, &run_id).await,
        events_before,
        "a refused call added events"
    );

    // The human task is still open, and its assignee completes it as before: the step takes her
    // data, records her as `completed_by`, and the run goes on.
    let mut tasks = HumanTaskServiceClient::new(channel(&cluster, OLGA).await);
    let open = tasks
        .list_human_tasks(ListHumanTasksRequest {
            status: "open".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .tasks;
    assert!(
        open.iter().any(|t| t.run_id == run_id && t.step_id == "approve"),
        "{open:#?}"
    );
    let task = tasks
        .complete_human_task(CompleteHumanTaskRequest {
            run_id: run_id.clone(),
            step_id: "approve".into(),
            user: String::new(),
            data_json: json!({"ok": true}).to_string(),
        })
        .await
        .expect("the assignee completes the task")
        .into_inner();
    assert_eq!(
        (task.status.as_str(), task.completed_by.as_str()),
        ("completed", "olga")
    );
    let run = wait_for(&cluster, &run_id, "approve to succeed", Duration::from_secs(30), |r| {
        step_status(r, "approve") == "succeeded" && step_status(r, "after") != "pending"
    })
    .await;
    let approve = run.steps.iter().find(|s| s.id == "approve").expect("approve");
    assert_eq!(approve.completed_by, "olga");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&approve.output_json).expect("json"),
        json!({"ok": true})
    );
    RunServiceClient::new(channel(&cluster, ADMIN).await)
        .cancel_run(CancelRunRequest {
            run_id,
            reason: "done".into(),
        })
        .await
        .expect("cancel");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_for_a_task_attempt_no_worker_started_is_refused_and_the_worker_then_runs_it_once() {
    let mut cluster = start("fence-unstarted").await;
    register(
        &cluster,
        "name: fence-once\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n  - {id: b, handler: echo, depends_on: [a]}\n",
    )
    .await;
    let run_id = submit(&cluster, "fence-once", json!({"real": true})).await;
    let before = wait_for(&cluster, &run_id, "a dispatched", Duration::from_secs(30), |r| {
        step_status(r, "a") == "dispatched"
    })
    .await;
    let events_before = event_count(&cluster, &run_id).await;
    let mut api = worker_api(&cluster).await;
    // Heartbeat, EmitEvent and ReportResult without StartStep (StartStep itself would start it).
    for (call, answer) in forge_calls(&mut api, &run_id, "fence-once", "a", 1, "forger").await {
        assert_eq!(answer, STALE, "{call} for a dispatched attempt no worker started");
    }
    assert_eq!(state(&get_run(&cluster, &run_id).await), state(&before));
    assert_eq!(event_count(&cluster, &run_id).await, events_before);

    cluster.spawn_worker("fence-w", 2);
    let start = Instant::now();
    let run = loop {
        let run = get_run(&cluster, &run_id).await;
        if status(&run) == "succeeded" {
            break run;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{run:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(cluster.executions(&run_id, "a").await, 1);
    assert_eq!(cluster.executions(&run_id, "b").await, 1);
    let a = &run.steps[0];
    assert_eq!(a.worker, "fence-w");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&a.output_json).expect("json"),
        json!({"real": true}),
        "the real output, not a forged one"
    );
}

/// Registers `worker` as a live worker with heartbeat interval `interval_ms` (raw RegisterWorker).
async fn register_worker(
    api: &mut WorkerServiceClient<AuthChannel>,
    cluster: &Cluster,
    worker: &str,
    interval_ms: u64,
    state: WorkerState,
) {
    api.register_worker(RegisterWorkerRequest {
        worker_id: worker.into(),
        host: "test".into(),
        pid: 1,
        version: "test".into(),
        namespace: cluster.namespace.clone(),
        handlers: vec!["manual".into()],
        concurrency: 1,
        state: state as i32,
        heartbeat_interval_ms: interval_ms,
        ..Default::default()
    })
    .await
    .expect("register worker");
}

async fn start_as(api: &mut WorkerServiceClient<AuthChannel>, run_id: &str, worker: &str) -> i32 {
    api.start_step(StartStepRequest {
        run_id: run_id.into(),
        step_id: "a".into(),
        attempt: 1,
        worker_id: worker.into(),
        workflow: "fence-manual".into(),
        workflow_version: 1,
        input_json: String::new(),
    })
    .await
    .expect("StartStep answers")
    .into_inner()
    .disposition
}

async fn report_as(api: &mut WorkerServiceClient<AuthChannel>, run_id: &str, worker: &str) -> i32 {
    api.report_result(ReportResultRequest {
        run_id: run_id.into(),
        step_id: "a".into(),
        attempt: 1,
        worker_id: worker.into(),
        outcome: Some(Outcome::OutputJson(json!({"by": worker}).to_string())),
        workflow: "fence-manual".into(),
        workflow_version: 1,
        attempt_base: 0,
        ..Default::default()
    })
    .await
    .expect("ReportResult answers")
    .into_inner()
    .disposition
}

#[tokio::test(flavor = "multi_thread")]
async fn one_live_worker_holds_an_attempt_and_a_lost_or_stopped_holder_hands_it_over() {
    let cluster = start("fence-holder").await;
    // `manual`: no worker serves it; the test plays the workers.
    register(
        &cluster,
        "name: fence-manual\nversion: 1\nsteps:\n  - {id: a, handler: manual}\n",
    )
    .await;
    let mut api = worker_api(&cluster).await;
    let dispatched = |r: &Run| step_status(r, "a") == "dispatched";

    // A live holder (heartbeat every 60 s): another worker's calls are refused, its start is a
    // duplicate; the holder's own redelivery proceeds and its report counts.
    register_worker(&mut api, &cluster, "w-one", 60_000, WorkerState::Running).await;
    let run_id = submit(&cluster, "fence-manual", json!({})).await;
    wait_for(&cluster, &run_id, "a dispatched", Duration::from_secs(30), dispatched).await;
    assert_eq!(start_as(&mut api, &run_id, "w-one").await, PROCEED);
    let running = get_run(&cluster, &run_id).await;
    assert_eq!(
        (step_status(&running, "a"), running.steps[0].worker.as_str()),
        ("running", "w-one")
    );
    let events = event_count(&cluster, &run_id).await;
    for (call, answer) in forge_all(&mut api, &run_id, "fence-manual", "a", 1, "w-two").await {
        let want = if call == "StartStep" { DUPLICATE } else { STALE };
        assert_eq!(answer, want, "{call} by a worker that does not hold the attempt");
    }
    assert_eq!(state(&get_run(&cluster, &run_id).await), state(&running));
    assert_eq!(event_count(&cluster, &run_id).await, events);
    assert_eq!(
        start_as(&mut api, &run_id, "w-one").await,
        PROCEED,
        "the holder's own redelivery"
    );
    assert_eq!(report_as(&mut api, &run_id, "w-two").await, STALE);
    assert_eq!(report_as(&mut api, &run_id, "w-one").await, PROCEED);
    let run = get_run(&cluster, &run_id).await;
    assert_eq!(status(&run), "succeeded");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&run.output_json).expect("json"),
        json!({"a": {"by": "w-one"}})
    );

    // A holder that stopped gracefully (its last RegisterWorker says STOPPED): taken over at once.
    register_worker(&mut api, &cluster, "w-three", 60_000, WorkerState::Running).await;
    let run_id = submit(&cluster, "fence-manual", json!({})).await;
    wait_for(&cluster, &run_id, "a dispatched", Duration::from_secs(30), dispatched).await;
    assert_eq!(start_as(&mut api, &run_id, "w-three").await, PROCEED);
    register_worker(&mut api, &cluster, "w-three", 60_000, WorkerState::Stopped).await;
    assert_eq!(start_as(&mut api, &run_id, "w-four").await, PROCEED);
    assert_eq!(
        report_as(&mut api, &run_id, "w-three").await,
        STALE,
        "the old holder's late report"
    );
    assert_eq!(report_as(&mut api, &run_id, "w-four").await, PROCEED);
    assert_eq!(status(&get_run(&cluster, &run_id).await), "succeeded");

    // A holder that stops beating (interval 100 ms: lost after 300 ms): its attempt is held while
    // it lives and taken over once it is lost.
    register_worker(&mut api, &cluster, "w-five", 100, WorkerState::Running).await;
    let run_id = submit(&cluster, "fence-manual", json!({})).await;
    wait_for(&cluster, &run_id, "a dispatched", Duration::from_secs(30), dispatched).await;
    assert_eq!(start_as(&mut api, &run_id, "w-five").await, PROCEED);
    let start = Instant::now();
    let mut duplicates = 0;
    loop {
        match start_as(&mut api, &run_id, "w-six").await {
            PROCEED => break,
            DUPLICATE => duplicates += 1,
            other => panic!("StartStep answered {other} while w-five was being lost"),
        }
        assert!(start.elapsed() < Duration::from_secs(10), "w-six never took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "w-six took over {:?} after w-five's last heartbeat ({duplicates} duplicate answers before)",
        start.elapsed()
    );
    assert_eq!(report_as(&mut api, &run_id, "w-five").await, STALE);
    assert_eq!(report_as(&mut api, &run_id, "w-six").await, PROCEED);
    let run = get_run(&cluster, &run_id).await;
    assert_eq!(status(&run), "succeeded");
    assert_eq!(run.steps[0].worker, "w-six");
}

/// Publishes one copy of the task of attempt `attempt` of `step` (handler `handler`) to the
/// cluster's exchange, as a re-send after a lost confirm would.
async fn publish_copy(
    cluster: &Cluster,
    run_id: &str,
    step: &str,
    handler: &str,
    workflow: &str,
    input: &serde_json::Value,
) {
    let task = StepTask {
        run_id: run_id.into(),
        step_id: step.into(),
        attempt: 1,
        handler: handler.into(),
        workflow: workflow.into(),
        workflow_version: 1,
        input_json: input.to_string(),
        timeout_ms: 60_000,
        ..Default::default()
    };
    let conn = baton_shared::amqp::connect(AMQP_URL, "fencing-test")
        .await
        .expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(Default::default()).await.expect("confirms");
    let confirm = ch
        .basic_publish(
            cluster.topology().exchange().as_str().into(),
            handler.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &task.encode_to_vec(),
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(
        confirm.is_ack() && confirm.take_message().is_none(),
        "the copy was routed"
    );
    let _ = conn.close(200, "done".into()).await;
}

fn log_of(cluster: &Cluster, worker: &str) -> String {
    std::fs::read_to_string(cluster.log_path(worker)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_copy_of_a_running_task_is_dropped_and_the_handler_runs_once() {
    let mut cluster = start("fence-dup").await;
    register(
        &cluster,
        "name: fence-slow\nversion: 1\nsteps:\n  - {id: s, handler: slow, timeout: 1m}\n",
    )
    .await;
    // One task at a time each: the copy goes to the worker that does not hold the attempt.
    cluster.spawn_worker("dup-a", 1);
    cluster.spawn_worker("dup-b", 1);
    let input = json!({"ms": 4000});
    let run_id = submit(&cluster, "fence-slow", input.clone()).await;
    let running = wait_for(&cluster, &run_id, "s running", Duration::from_secs(30), |r| {
        step_status(r, "s") == "running"
    })
    .await;
    let holder = running.steps[0].worker.clone();
    let other = if holder == "dup-a" { "dup-b" } else { "dup-a" };
    publish_copy(&cluster, &run_id, "s", "slow", "fence-slow", &input).await;
    // The other worker takes the copy, is answered DUPLICATE and drops it without running it.
    let start = Instant::now();
    while !log_of(&cluster, other).contains("dropping a duplicate copy of a task") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{other} never dropped the copy: {}",
            log_of(&cluster, other)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        step_status(&get_run(&cluster, &run_id).await, "s"),
        "running",
        "the copy was dropped while the holder ran the attempt"
    );
    let run = wait_for(&cluster, &run_id, "the run to succeed", Duration::from_secs(60), |r| {
        status(r) == "succeeded"
    })
    .await;
    assert_eq!(cluster.executions(&run_id, "s").await, 1, "the handler ran once");
    assert_eq!(run.steps[0].worker, holder);
    assert_eq!(run.steps[0].attempts.len(), 1, "{:#?}", run.steps[0].attempts);
}

/// The copy reaches the worker that runs the attempt (a re-send after a lost confirm, as in a
/// Redis failover, goes to whichever worker has room). The coordinator would let it start: the
/// same worker starting an attempt again is how a restarted worker takes its attempts back. The
/// worker knows the attempt is in hand and drops the copy, so the handler runs once.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_of_an_attempt_the_same_worker_runs_is_dropped_and_the_handler_runs_once() {
    let mut cluster = start("fence-dup-self").await;
    register(
        &cluster,
        "name: fence-slow\nversion: 1\nsteps:\n  - {id: s, handler: slow, timeout: 1m}\n",
    )
    .await;
    // One worker with room for the copy beside the attempt it runs.
    cluster.spawn_worker("dup-self", 2);
    let input = json!({"ms": 4000});
    let run_id = submit(&cluster, "fence-slow", input.clone()).await;
    wait_for(&cluster, &run_id, "s running", Duration::from_secs(30), |r| {
        step_status(r, "s") == "running"
    })
    .await;
    publish_copy(&cluster, &run_id, "s", "slow", "fence-slow", &input).await;
    let start = Instant::now();
    while !log_of(&cluster, "dup-self")
        .contains("dropping a duplicate copy of a task: this worker is handling this attempt")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the worker never dropped the copy ({} executions, run {:?}): {}",
            cluster.executions(&run_id, "s").await,
            get_run(&cluster, &run_id).await,
            log_of(&cluster, "dup-self")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = wait_for(&cluster, &run_id, "the run to succeed", Duration::from_secs(60), |r| {
        status(r) == "succeeded"
    })
    .await;
    assert_eq!(cluster.executions(&run_id, "s").await, 1, "the handler ran once");
    assert_eq!(run.steps[0].worker, "dup-self");
    assert_eq!(run.steps[0].attempts.len(), 1, "{:#?}", run.steps[0].attempts);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivered_copy_takes_over_when_its_holder_is_killed_and_the_run_finishes() {
    let mut cluster = Cluster::start_with(
        "fence-takeover",
        ClusterOptions {
            env: vec![
                (
                    "BATON_AUTH_TOKENS".into(),
                    format!("admin:ada:{ADMIN},worker::{WORKER}"),
                ),
                ("BATON_QUEUE_TYPE".into(), "quorum".into()),
            ],
            worker_env: vec![("BATON_TOKEN".into(), WORKER.into())],
            ..Default::default()
        },
    )
    .await;
    register(
        &cluster,
        "name: fence-slow\nversion: 1\nsteps:\n  - {id: s, handler: slow, timeout: 1m}\n",
    )
    .await;
    // Heartbeat every 200 ms: a killed worker is lost (and its attempts free) 600 ms after its last.
    let fast = [("BATON_HEARTBEAT_INTERVAL", "200ms")];
    let a = cluster.spawn_worker_with("take-a", 1, &fast);
    let b = cluster.spawn_worker_with("take-b", 1, &fast);
    let run_id = submit(&cluster, "fence-slow", json!({"ms": 3000})).await;
    let start = Instant::now();
    while cluster.executions(&run_id, "s").await == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "the step never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let holder = get_run(&cluster, &run_id).await.steps[0].worker.clone();
    let (doomed, survivor) = if holder == "take-a" {
        (a, "take-b")
    } else {
        (b, "take-a")
    };
    cluster.stop_worker(doomed, true);
    let killed_at = baton_shared::time::now_ms();
    let run = wait_for(&cluster, &run_id, "the run to succeed", Duration::from_secs(60), |r| {
        status(r) == "succeeded"
    })
    .await;
    let s = &run.steps[0];
    assert_eq!(s.worker, survivor);
    assert_eq!(s.attempt, 1, "the same attempt, taken over, not a retry");
    assert_eq!(
        cluster.executions(&run_id, "s").await,
        2,
        "once on the killed worker, once on the survivor"
    );
    let stall = ms(&s.started_at) - killed_at;
    println!("the survivor started the attempt {stall} ms after its holder was killed");
    // Lost after 3 heartbeat intervals (600 ms), then at most the recheck margin and a publish.
    assert!(stall <= 5_000, "the takeover took {stall} ms");
}
