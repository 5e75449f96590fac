//! Hardening of the run engine (issue 8), end to end through the real API: workflows that start
//! themselves, sub-workflow depth, huge durations, event names and keys that look alike, names that
//! look like internal keys, timeouts of steps that run no handler, re-runs and retries of human and
//! retried steps, buffered events and sleeping steps. Each test asserts what a user sees: the code,
//! the field named in the message, the run's final status and error, and the coordinator still
//! answering.

use std::time::Duration;

use baton_shared::proto::{
    CancelRunRequest, CompleteHumanTaskRequest, CreateScheduleRequest, GetWorkflowRequest, ListBufferedEventsRequest,
    PurgeBufferedEventsRequest, RegisterWorkflowRequest, RerunRunRequest, RetryRunRequest, Run, StartStepRequest,
    StepRun, SubmitRunRequest,
};
use baton_tests::{Cluster, ms, status, step_status};
use serde_json::{Value, json};
use tonic::Code;

/// Generous: the machine running these is small and shared.
const WITHIN: Duration = Duration::from_secs(60);

fn step<'a>(run: &'a Run, id: &str) -> &'a StepRun {
    run.steps
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no step {id} in {run:#?}"))
}

/// Registers a definition and returns the refusal.
async fn refused(cluster: &Cluster, yaml: &str) -> tonic::Status {
    cluster
        .workflows()
        .await
        .register_workflow(RegisterWorkflowRequest {
            definition: yaml.into(),
        })
        .await
        .expect_err("the definition should be refused")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_that_starts_itself_directly_or_through_another_is_refused_at_registration() {
    let cluster = Cluster::start("self-start", &[]).await;

    let direct = refused(
        &cluster,
        "name: selfie\nversion: 1\nsteps:\n  - {id: again, workflow: {name: selfie}}\n",
    )
    .await;
    assert_eq!(direct.code(), Code::InvalidArgument, "{direct:?}");
    assert!(
        direct.message().contains("steps[0].workflow") && direct.message().contains("selfie -> selfie"),
        "{}",
        direct.message()
    );

    // B starts A (not registered yet: allowed); then A, which starts B, closes the cycle.
    cluster
        .register("name: bee\nversion: 1\nsteps:\n  - {id: call_a, workflow: {name: ay}}\n")
        .await;
    let indirect = refused(
        &cluster,
        "name: ay\nversion: 1\nsteps:\n  - {id: first, handler: echo}\n  - {id: call_b, workflow: {name: bee}, depends_on: [first]}\n",
    )
    .await;
    assert_eq!(indirect.code(), Code::InvalidArgument, "{indirect:?}");
    assert!(
        indirect.message().contains("steps[1].workflow") && indirect.message().contains("ay -> bee -> ay"),
        "{}",
        indirect.message()
    );
    // An emitting step that emits runs of its own workflow is a cycle too.
    let emitted = refused(
        &cluster,
        "name: fountain\nversion: 1\nsteps:\n  - {id: go, handler: echo, emit: {workflow: fountain, items: 'steps.go.output.items', key: string(item)}}\n",
    )
    .await;
    assert_eq!(emitted.code(), Code::InvalidArgument, "{emitted:?}");
    assert!(
        emitted.message().contains("steps[0].emit.workflow"),
        "{}",
        emitted.message()
    );
    cluster.assert_answers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_child_deeper_than_the_depth_limit_fails_its_parent_step_and_the_run_cleanly() {
    let cluster = Cluster::start("depth", &[]).await;
    let levels = baton_shared::limits::MAX_WORKFLOW_DEPTH + 2;
    // level0 -> level1 -> ... -> level{N-1}: no cycle, only too deep. Registered from the bottom up.
    cluster
        .register(&format!(
            "name: level{}\nversion: 1\nsteps:\n  - {{id: rest, sleep: 10ms}}\n",
            levels - 1
        ))
        .await;
    for i in (0..levels - 1).rev() {
        cluster
            .register(&format!(
                "name: level{i}\nversion: 1\nsteps:\n  - {{id: down, workflow: {{name: level{}}}}}\n",
                i + 1
            ))
            .await;
    }
    let run_id = cluster.submit("level0", json!({})).await;
    let run = cluster.wait_run(&run_id, WITHIN).await;
    assert_eq!(status(&run), "failed", "{run:#?}");
    assert!(run.error.contains("WorkflowDepthExceeded"), "{}", run.error);
    assert!(run.error.contains("16"), "names the limit: {}", run.error);
    cluster.assert_answers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ten_year_timeout_with_a_slot_runs_and_a_ten_year_sleep_waits_until_cancelled() {
    let mut cluster = Cluster::start("huge-durations", &[]).await;
    cluster
        .register("name: patient\nversion: 1\nsteps:\n  - {id: work, handler: echo, timeout: 3650days, concurrency: {limit: 1}}\n")
        .await;
    cluster
        .register("name: sleeper\nversion: 1\nsteps:\n  - {id: nap, sleep: 3650days}\n")
        .await;
    cluster
        .register("name: listener\nversion: 1\ntimeout: 3650days\nsteps:\n  - {id: wait, wait_for_event: {event: never, timeout: 3650days}}\n")
        .await;
    cluster.spawn_worker("w1", 4);

    let run_id = cluster.submit("patient", json!({"x": 1})).await;
    let run = cluster.wait_run(&run_id, WITHIN).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");

    let started = baton_shared::time::now_ms();
    let listener = cluster.submit("listener", json!({})).await;
    let run_id = cluster.submit("sleeper", json!({})).await;
    let run = cluster.wait_step(&run_id, "nap", "waiting", WITHIN).await;
    // Defect 25: a sleeping step waits, with its wake time, on no worker.
    let nap = step(&run, "nap");
    assert!(nap.worker.is_empty(), "{nap:#?}");
    let wake = ms(&nap.wake_at);
    let nine_years = 9 * 365 * 86_400_000_i64;
    assert!(wake > started + nine_years, "wakes in ten years, not now: {nap:#?}");
    assert!(nap.waiting_for.starts_with("until "), "{nap:#?}");
    // Still asleep a few seconds later (a wrapped deadline would have fired at once).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let run = cluster.get_run(&run_id).await;
    assert_eq!(status(&run), "running", "{run:#?}");
    assert_eq!(step_status(&run, "nap"), "waiting", "{run:#?}");
    // Neither the ten-year wait nor the ten-year run timeout fired.
    let run = cluster.get_run(&listener).await;
    assert_eq!(status(&run), "running", "{run:#?}");
    assert_eq!(step_status(&run, "wait"), "waiting", "{run:#?}");

    cluster
        .runs()
        .await
        .cancel_run(CancelRunRequest {
            run_id: run_id.clone(),
            reason: "enough".into(),
        })
        .await
        .expect("cancel");
    let run = cluster.wait_run(&run_id, WITHIN).await;
    assert_eq!(status(&run), "cancelled", "{run:#?}");
    assert_eq!(step_status(&run, "nap"), "cancelled", "{run:#?}");
    cluster.assert_answers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn event_names_and_keys_that_look_alike_never_meet_and_a_key_may_hold_a_bar() {
    let cluster = Cluster::start("event-keys", &[]).await;
    cluster
        .register("name: waiter\nversion: 1\nsteps:\n  - {id: wait, wait_for_event: {event: 'a:b', key: input.k}}\n")
        .await;
    let run_id = cluster.submit("waiter", json!({"k": "c"})).await;
    cluster.wait_step(&run_id, "wait", "waiting", WITHIN).await;

    // Event `a` key `b:c` is another event than `a:b` key `c`: buffered, not delivered.
    let other = cluster.publish("a", "b:c", json!({"wrong": true})).await;
    assert!(other.delivered.is_empty() && other.buffered, "{other:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(step_status(&cluster.get_run(&run_id).await, "wait"), "waiting");

    let right = cluster.publish("a:b", "c", json!({"right": true})).await;
    assert_eq!(right.delivered.len(), 1, "{right:?}");
    let run = cluster.wait_run(&run_id, WITHIN).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(
        serde_json::from_str::<Value>(&step(&run, "wait").output_json).unwrap(),
        json!({"right": true})
    );

    // A key with a `|` can be published and received.
    let run_id = cluster.submit("waiter", json!({"k": "x|y"})).await;
    cluster.wait_step(&run_id, "wait", "waiting", WITHIN).await;
    let barred = cluster.publish("a:b", "x|y", json!({"bar": 1})).await;
    assert_eq!(barred.delivered.len(), 1, "{barred:?}");
    let run = cluster.wait_run(&run_id, WITHIN).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    cluster.assert_answers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_that_looks_like_an_internal_key_is_invalid_everywhere_never_internal() {
    let cluster = Cluster::start("alias-names", &[]).await;
    cluster
        .register("name: x\nversion: 1\nsteps:\n  - {id: s, handler: echo}\n")
        .await;
    let bad = "x:registered";
    // Each answer names the request's own field (`name` in GetWorkflow, `workflow` elsewhere).
    let check = |what: &str, e: tonic::Status| {
        let field = if what == "GetWorkflow" { "name: " } else { "workflow: " };
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
        assert!(e.message().starts_with(field), "{what}: {}", e.message());
    };
    let e = cluster
        .workflows()
        .await
        .get_workflow(GetWorkflowRequest {
            name: bad.into(),
            version: 0,
        })
        .await
        .unwrap_err();
    check("GetWorkflow", e);
    let e = cluster
        .runs()
        .await
        .submit_run(SubmitRunRequest {
            workflow: bad.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    check("SubmitRun", e);
    let e = cluster
        .schedules()
        .await
        .create_schedule(CreateScheduleRequest {
            workflow: bad.into(),
            cron: "* * * * *".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    check("CreateSchedule", e);
    let e = cluster
        .worker_api()
        .await
        .start_step(StartStepRequest {
            run_id: uuid::Uuid::new_v4().to_string(),
            step_id: "s".into(),
            attempt: 1,
            worker_id: "w".into(),
            workflow: bad.into(),
            workflow_version: 1,
            input_json: String::new(),
        })
        .await
        .unwrap_err();
    check("StartStep", e);
    cluster.assert_answers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_timeout_on_a_step_without_a_handler_is_refused_and_a_human_task_times_out() {
    let cluster = Cluster::start("wait-timeouts", &[]).await;
    for (yaml, field) in [
        (
            "name: t1\nversion: 1\nsteps:\n  - {id: nap, sleep: 1s, timeout: 5s}\n",
            "steps[0].timeout",
        ),
        (
            "name: t2\nversion: 1\nsteps:\n  - {id: w, wait_for_event: {event: e}, timeout: 5s}\n",
            "steps[0].timeout",
        ),
        (
            "name: t3\nversion: 1\nsteps:\n  - {id: h, human: {title: ok?}, timeout: 5s}\n",
            "steps[0].timeout",
        ),
    ] {
        let e = refused(&cluster, yaml).await;
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(field), "{}", e.message());
        if yaml.contains("human") {
            assert!(
                e.message().contains("human.timeout"),
                "points at human.timeout: {}",
                e.message()
            );
        }
    }

    cluster
        .register("name: lapse\nversion: 1\nsteps:\n  - {id: approve, human: {title: Approve?, assignees: [ann], timeout: 1s}}\n")
        .await;
    cluster
        .register("name: shrug\nversion: 1\nsteps:\n  - {id: approve, human: {title: Approve?, timeout: 1s, on_timeout: skip}}\n  - {id: after, sleep: 10ms, depends_on: [approve]}\n")
        .await;
    let failed = cluster.submit("lapse", json!({})).await;
    let skipped = cluster.submit("shrug", json!({})).await;
    let run = cluster.wait_run(&failed, WITHIN).await;
    assert_eq!(status(&run), "failed", "{run:#?}");
    assert!(run.error.contains("Timeout"), "{}", run.error);
    let run = cluster.wait_run(&skipped, WITHIN).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(step_status(&run, "approve"), "skipped", "{run:#?}");
    let open = cluster.open_human_tasks().await;
    assert!(
        open.iter().all(|t| t.run_id != failed && t.run_id != skipped),
        "timed-out tasks left the open list: {open:#?}"
    );
    cluster.assert_answers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_from_a_human_step_reopens_a_clean_task_and_resets_times() {
    let mut cluster = Cluster::start("rerun-human", &[]).await;
    cluster
        .register("name: approval\nversion: 1\nsteps:\n  - {id: approve, human: {title: Approve?, assignees: [ann]}}\n  - {id: after, handler: echo, depends_on: [approve]}\n")
        .await;
    cluster.spawn_worker("w1", 2);
    let run_id = cluster.submit("approval", json!({})).await;
    cluster.wait_step(&run_id, "approve", "waiting", WITHIN).await;
    cluster
        .human_tasks()
        .await
        .complete_human_task(CompleteHumanTaskRequest {
            run_id: run_id.clone(),
            step_id: "approve".into(),
            user: "ann".into(),
            data_json: "{}".into(),
        })
        .await
        .expect("complete task");
    let run = cluster.wait_run(&run_id, WITHIN).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(step(&run, "approve").completed_by, "ann");

    cluster
        .runs()
        .await
        .rerun_run(RerunRunRequest {
            run_id: run_id.clone(),
            from_step: "approve".into(),
            input_json: String::new(),
        })
        .await
        .expect("rerun");
    let run = cluster.wait_step(&run_id, "approve", "waiting", WITHIN).await;
    let approve = step(&run, "approve");
    assert!(approve.completed_by.is_empty(), "{approve:#?}");
    assert!(approve.finished_at.is_none(), "{approve:#?}");
    let after = step(&run, "after");
    assert_eq!(step_status(&run, "after"), "pending", "{run:#?}");
    assert!(
        after.started_at.is_none() && after.finished_at.is_none() && after.dispatched_at.is_none(),
        "a reset step keeps no old times: {after:#?}"
    );
    let tasks = cluster.open_human_tasks().await;
    let task = tasks
        .iter()
        .find(|t| t.run_id == run_id)
        .expect("the task is open again");
    assert!(task.completed_by.is_empty() && task.completed_at.is_none(), "{task:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_retry_attempts_count_from_the_new_round_and_a_success_shows_no_error() {
    let mut cluster = Cluster::start("retry-round", &[]).await;
    cluster
        .register("name: flaky\nversion: 1\nsteps:\n  - {id: try, handler: fail, retry: {max_attempts: 2, initial_interval: 100ms, jitter: 0}}\n")
        .await;
    cluster.spawn_worker("w1", 2);
    // Attempts 1 and 2 fail (the policy allows 2); after RetryRun, attempt 3 succeeds.
    let run_id = cluster.submit("flaky", json!({"succeed_on_attempt": 3})).await;
    let run = cluster.wait_run(&run_id, WITHIN).await;
    assert_eq!(status(&run), "failed", "{run:#?}");
    assert_eq!(step(&run, "try").attempt, 2);
    cluster
        .runs()
        .await
        .retry_run(RetryRunRequest { run_id: run_id.clone() })
        .await
        .expect("retry");
    let run = cluster.wait_run(&run_id, WITHIN).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    let s = step(&run, "try");
    assert_eq!((s.attempt, s.attempt_base, s.max_attempts), (3, 2, 2), "{s:#?}");
    assert!(s.attempt - s.attempt_base <= s.max_attempts, "{s:#?}");
    assert!(s.error.is_empty(), "a succeeded step shows no error: {s:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn buffered_events_without_a_key_can_be_listed_and_purged_and_filter_errors_are_returned() {
    let cluster = Cluster::start("buffered", &[]).await;
    let first = cluster.publish("tick", "", json!({"n": 1})).await;
    assert!(first.buffered, "{first:?}");
    cluster.publish("tick", "", json!({"n": 2})).await;
    cluster.publish("tock", "k|1", json!({"n": 3})).await;

    let mut events = cluster.events().await;
    let listed = events
        .list_buffered_events(ListBufferedEventsRequest {
            name: "tick".into(),
            limit: 0,
        })
        .await
        .expect("list")
        .into_inner()
        .events;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!((listed[0].key.as_str(), listed[0].count), ("", 2), "{listed:#?}");
    assert_eq!(listed[0].newest_payload_json, json!({"n": 2}).to_string());
    let all = events
        .list_buffered_events(ListBufferedEventsRequest::default())
        .await
        .expect("list all")
        .into_inner()
        .events;
    assert!(all.iter().any(|e| e.name == "tock" && e.key == "k|1"), "{all:#?}");

    let purged = events
        .purge_buffered_events(PurgeBufferedEventsRequest {
            name: "tick".into(),
            key: String::new(),
            all_keys: false,
        })
        .await
        .expect("purge")
        .into_inner()
        .purged;
    assert_eq!(purged, 2);
    let listed = events
        .list_buffered_events(ListBufferedEventsRequest {
            name: "tick".into(),
            limit: 0,
        })
        .await
        .expect("list")
        .into_inner()
        .events;
    assert!(listed.is_empty(), "{listed:#?}");
    let e = events
        .purge_buffered_events(PurgeBufferedEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("name"), "{}", e.message());

    // A trigger whose filter cannot be evaluated over the payload is reported, not only logged.
    cluster
        .register("name: picky\nversion: 1\non: {event: order, filter: 'input.total > 10'}\nsteps:\n  - {id: s, sleep: 10ms}\n")
        .await;
    let answer = cluster.publish("order", "", json!({"no_total": true})).await;
    assert!(answer.started_run_ids.is_empty(), "{answer:?}");
    assert_eq!(answer.trigger_errors.len(), 1, "{answer:?}");
    assert_eq!(answer.trigger_errors[0].workflow, "picky");
    assert!(!answer.trigger_errors[0].error.is_empty(), "{answer:?}");
    let ok = cluster.publish("order", "", json!({"total": 11})).await;
    assert_eq!(ok.started_run_ids.len(), 1, "{ok:?}");
    assert!(ok.trigger_errors.is_empty(), "{ok:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sleep_until_step_shows_waiting_with_its_wake_time() {
    let cluster = Cluster::start("sleep-until", &[]).await;
    cluster
        .register("name: alarm\nversion: 1\nsteps:\n  - {id: until, sleep_until: input.at}\n")
        .await;
    let at = baton_shared::time::now_ms() + 3_600_000;
    let run_id = cluster
        .submit("alarm", json!({"at": baton_shared::time::rfc3339(at)}))
        .await;
    let run = cluster.wait_step(&run_id, "until", "waiting", WITHIN).await;
    let s = step(&run, "until");
    assert_eq!(ms(&s.wake_at), at, "{s:#?}");
    assert!(s.worker.is_empty(), "no `timer` worker: {s:#?}");
    assert_eq!(status(&run), "running");
    cluster
        .runs()
        .await
        .cancel_run(CancelRunRequest {
            run_id: run_id.clone(),
            reason: String::new(),
        })
        .await
        .expect("cancel");
    let run = cluster.wait_run(&run_id, WITHIN).await;
    assert_eq!(status(&run), "cancelled", "{run:#?}");
}
