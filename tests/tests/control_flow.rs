//! Control flow end to end: conditions and routers, input templates, fan-out and fan-in, sub-workflows,
//! `sleep_until`, waiting for events, suspending handlers and human tasks. Each test drives a real
//! coordinator and worker through RabbitMQ, Redis and a tonic client.

use std::time::{Duration, Instant};

use baton_shared::proto::{
    CancelRunRequest, CompleteHumanTaskRequest, ListHumanTasksRequest, PublishEventRequest, RegisterWorkflowRequest,
    RetryRunRequest, Run, StepRun,
};
use baton_tests::{Cluster, ms, status, step_status};
use serde_json::{Value, json};
use tonic::Code;

fn step<'a>(run: &'a Run, id: &str) -> &'a StepRun {
    run.steps.iter().find(|s| s.id == id).expect("step")
}

fn output(run: &Run, id: &str) -> Value {
    serde_json::from_str(&step(run, id).output_json).unwrap_or(Value::Null)
}

const ROUTER: &str = r#"
name: router
version: 1
steps:
  - id: route
    handler: echo
    input: "${{ input.kind }}"
  - id: long
    handler: echo
    depends_on: [route]
    when: 'steps.route.output == "long"'
    input: {branch: long, size: "${{ input.size * 2 }}"}
  - id: short
    handler: echo
    depends_on: [route]
    when: 'steps.route.output == "short"'
    input: {branch: short}
  - id: after_long
    handler: echo
    depends_on: [long]
  - id: join
    handler: trace
    depends_on: [long, short]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_router_picks_one_branch_the_other_is_skipped_and_the_join_proceeds() {
    let mut cluster = Cluster::start("router", &[]).await;
    cluster.register(ROUTER).await;
    cluster.spawn_worker("w1", 4);

    let short = cluster.submit("router", json!({"kind": "short", "size": 3})).await;
    let run = cluster.wait_run(&short, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(
        output(&run, "route"),
        json!("short"),
        "the input template made the router's input"
    );
    assert_eq!(step_status(&run, "long"), "skipped");
    assert_eq!(
        step_status(&run, "after_long"),
        "skipped",
        "it only depends on a skipped step"
    );
    assert_eq!(step_status(&run, "short"), "succeeded");
    assert_eq!(output(&run, "short"), json!({"branch": "short"}));
    assert_eq!(
        step_status(&run, "join"),
        "succeeded",
        "a join proceeds past a skipped parent"
    );
    assert_eq!(
        output(&run, "join")["received"],
        json!({"long": null, "short": {"branch": "short"}})
    );
    assert_eq!(cluster.executions(&short, "long").await, 0);
    assert_eq!(cluster.executions(&short, "after_long").await, 0);
    let events = cluster.get_run(&short).await;
    assert_eq!(events.status, run.status);

    let long = cluster.submit("router", json!({"kind": "long", "size": 3})).await;
    let run = cluster.wait_run(&long, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(step_status(&run, "short"), "skipped");
    assert_eq!(output(&run, "long"), json!({"branch": "long", "size": 6}));
    assert_eq!(step_status(&run, "after_long"), "succeeded");
    assert_eq!(cluster.executions(&long, "short").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_condition_that_does_not_compile_is_refused_at_registration() {
    let cluster = Cluster::start("cel-refused", &[]).await;
    let mut workflows = cluster.workflows().await;
    let cases = [
        ("when: 'steps.a.output =='", "steps[1].when", "syntax"),
        ("when: 'steps.c.output == 1'", "steps[1].when", "steps.c"),
        ("when: '\"yes\"'", "steps[1].when", "bool"),
        ("when: 'nobody.knows'", "steps[1].when", "nobody"),
        (
            "input: {text: '${{ steps.a.output + }}'}",
            "steps[1].input.text",
            "syntax",
        ),
        ("for_each: '3'", "steps[1].for_each", "list"),
    ];
    for (extra, path, word) in cases {
        let doc = format!(
            "name: bad\nversion: 1\nsteps:\n  - {{id: a, handler: echo}}\n  - id: b\n    handler: echo\n    depends_on: [a]\n    {extra}\n  - {{id: c, handler: echo, depends_on: [b]}}\n"
        );
        let err = workflows
            .register_workflow(RegisterWorkflowRequest { definition: doc })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{extra}");
        assert!(err.message().contains(path), "{extra}: {}", err.message());
        assert!(
            err.message().to_lowercase().contains(word),
            "{extra}: {}",
            err.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fan_out_runs_each_element_once_with_its_own_retries_and_keeps_input_order() {
    let mut cluster = Cluster::start("fan-out", &[]).await;
    cluster
        .register(
            r#"
name: squares
version: 1
steps:
  - {id: list, handler: echo}
  - id: square
    handler: square
    depends_on: [list]
    for_each: steps.list.output.items
    max_parallel: 7
    retry: {max_attempts: 3, initial_interval: 50ms}
  - id: total
    handler: echo
    depends_on: [square]
    input: {sum: "${{ steps.square.output.map(x, x).size() }}", first: "${{ steps.square.output[0] }}"}
"#,
        )
        .await;
    cluster.spawn_worker("w1", 8);
    let items: Vec<Value> = (0..60).map(|i| json!({"n": i, "fail_once": i % 10 == 3})).collect();
    let run_id = cluster.submit("squares", json!({"items": items})).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    let expected: Vec<i64> = (0..60).map(|i| i * i).collect();
    assert_eq!(output(&run, "square"), json!(expected), "results in input order");
    assert_eq!(output(&run, "total"), json!({"sum": 60, "first": 0}));
    let progress = step(&run, "square").items.expect("item progress");
    assert_eq!(
        (progress.total, progress.succeeded, progress.failed, progress.in_flight),
        (60, 60, 0, 0)
    );
    let counts = cluster.item_executions(&run_id, "square").await;
    assert_eq!(counts.len(), 60);
    for (i, n) in counts {
        let want = if i % 10 == 3 { 2 } else { 1 };
        assert_eq!(n, want, "element {i} ran {n} times");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fan_out_over_no_elements_succeeds_at_once_a_failing_element_fails_it_and_a_retry_keeps_the_rest() {
    let mut cluster = Cluster::start("fan-out-edges", &[]).await;
    cluster
        .register(
            r#"
name: edges
version: 1
steps:
  - id: each
    handler: square
    for_each: input.items
    max_parallel: 1
    retry: {max_attempts: 1}
  - {id: after, handler: echo, depends_on: [each]}
"#,
        )
        .await;
    cluster.spawn_worker("w1", 4);
    let empty = cluster.submit("edges", json!({"items": []})).await;
    let run = cluster.wait_run(&empty, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded");
    assert_eq!(output(&run, "each"), json!([]));

    let failing = cluster
        .submit("edges", json!({"items": [1, 2, {"n": 3, "fail_once": true}, 4]}))
        .await;
    let run = cluster.wait_run(&failing, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "failed");
    assert_eq!(step_status(&run, "each"), "failed");
    assert!(
        step(&run, "each").error.contains("element 2"),
        "{}",
        step(&run, "each").error
    );
    assert_eq!(cluster.executions(&failing, "after").await, 0);

    // A retry runs the failed element (and those never reached) again, not the ones that succeeded.
    cluster
        .runs()
        .await
        .retry_run(RetryRunRequest {
            run_id: failing.clone(),
        })
        .await
        .unwrap();
    let run = cluster.wait_run(&failing, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(output(&run, "each"), json!([1, 4, 9, 16]));
    let counts = cluster.item_executions(&failing, "each").await;
    let counts: Vec<i64> = (0..4).map(|i| counts.get(&i).copied().unwrap_or(0)).collect();
    assert_eq!(counts, [1, 1, 2, 1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_element_fan_out_survives_a_coordinator_kill_without_running_a_completed_element_again() {
    let mut cluster = Cluster::start("fan-out-restart", &[("BATON_DISPATCH_GRACE", "2s")]).await;
    cluster
        .register(
            "name: big\nversion: 1\nsteps:\n  - {id: each, handler: square, for_each: input.items, max_parallel: 50}\n",
        )
        .await;
    cluster.spawn_worker("w1", 16);
    let items: Vec<Value> = (0..1000).map(|i| json!({"n": i, "ms": 5})).collect();
    let run_id = cluster.submit("big", json!({"items": items})).await;
    // Kill the coordinator mid-way, then start it again.
    let start = Instant::now();
    loop {
        let done = cluster.get_run(&run_id).await.steps[0]
            .items
            .as_ref()
            .map(|p| p.succeeded)
            .unwrap_or(0);
        if done >= 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the fan-out never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.stop_coordinator(true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.start_coordinator().await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(120)).await;
    assert_eq!(status(&run), "succeeded", "{}", run.error);
    let expected: Vec<i64> = (0..1000).map(|i| i * i).collect();
    assert_eq!(output(&run, "each"), json!(expected));
    let counts = cluster.item_executions(&run_id, "each").await;
    assert_eq!(counts.len(), 1000, "every element ran");
    assert_eq!(
        cluster.count("late", &run_id, "each").await,
        0,
        "no element ran again after it was recorded as succeeded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_run_during_a_fan_out_starts_no_more_elements() {
    let mut cluster = Cluster::start("fan-out-cancel", &[]).await;
    cluster
        .register("name: slowfan\nversion: 1\nsteps:\n  - {id: each, handler: square, for_each: input.items, max_parallel: 2}\n")
        .await;
    cluster.spawn_worker("w1", 4);
    let items: Vec<Value> = (0..100).map(|i| json!({"n": i, "ms": 100})).collect();
    let run_id = cluster.submit("slowfan", json!({"items": items})).await;
    let start = Instant::now();
    while cluster.item_executions(&run_id, "each").await.len() < 4 {
        assert!(start.elapsed() < Duration::from_secs(30), "the fan-out never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster
        .runs()
        .await
        .cancel_run(CancelRunRequest {
            run_id: run_id.clone(),
            reason: "enough".into(),
        })
        .await
        .unwrap();
    let run = cluster.wait_run(&run_id, Duration::from_secs(10)).await;
    assert_eq!(status(&run), "cancelled");
    assert_eq!(step_status(&run, "each"), "cancelled");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ran = cluster.item_executions(&run_id, "each").await.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        cluster.item_executions(&run_id, "each").await.len(),
        ran,
        "no element started after the cancel"
    );
    assert!(ran < 20, "{ran} elements ran");
}

const KID: &str = r#"
name: kid
version: 1
input_schema: {type: object, required: [word], properties: {word: {type: string}}}
steps:
  - {id: hello, handler: echo}
  - {id: wait, handler: patient, depends_on: [hello], input: {ticks: "${{ input.ticks }}", ms: 100}}
"#;

const PARENT: &str = r#"
name: parent
version: 1
steps:
  - {id: prepare, handler: echo}
  - id: child
    workflow: {name: kid}
    depends_on: [prepare]
    input: {word: "${{ steps.prepare.output.word }}", ticks: "${{ input.ticks }}"}
  - {id: after, handler: trace, depends_on: [child]}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_sub_workflow_runs_as_a_child_run_and_its_output_is_the_step_output() {
    let mut cluster = Cluster::start("sub-workflow", &[]).await;
    cluster.register(KID).await;
    cluster.register(PARENT).await;
    cluster.spawn_worker("w1", 4);
    let run_id = cluster.submit("parent", json!({"word": "hi", "ticks": 1})).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(run.child_run_ids.len(), 1);
    let child_id = &run.child_run_ids[0];
    assert_eq!(&step(&run, "child").child_run_id, child_id);
    let child = cluster.get_run(child_id).await;
    assert_eq!(status(&child), "succeeded");
    assert_eq!(child.parent_run_id, run_id);
    assert_eq!(child.parent_step_id, "child");
    assert_eq!(child.workflow, "kid");
    assert_eq!(
        output(&child, "hello"),
        json!({"word": "hi", "ticks": 1}),
        "the child got the templated input"
    );
    let child_output: Value = serde_json::from_str(&child.output_json).unwrap();
    assert_eq!(
        output(&run, "child"),
        child_output,
        "the child's output is the step's output"
    );
    assert_eq!(output(&run, "after")["received"]["child"], child_output);

    // An input the child refuses fails the step before any child runs.
    let bad = cluster.submit("parent", json!({"word": 5, "ticks": 1})).await;
    let run = cluster.wait_run(&bad, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "failed");
    assert!(
        step(&run, "child").error.contains("ChildWorkflowError"),
        "{}",
        step(&run, "child").error
    );
    assert!(run.child_run_ids.is_empty());

    // A child that fails fails its step, and so its parent.
    cluster
        .register("name: failkid\nversion: 1\nsteps:\n  - {id: boom, handler: fail}\n")
        .await;
    cluster
        .register("name: failparent\nversion: 1\nsteps:\n  - {id: child, workflow: {name: failkid, version: 1}, input: {fatal: true}}\n")
        .await;
    let failing = cluster.submit("failparent", json!({})).await;
    let run = cluster.wait_run(&failing, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "failed");
    let error = &step(&run, "child").error;
    assert!(
        error.contains("ChildRunFailed") && error.contains("fatal failure requested"),
        "{error}"
    );
    assert_eq!(status(&cluster.get_run(&run.child_run_ids[0]).await), "failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_parent_cancels_its_running_child() {
    let mut cluster = Cluster::start("sub-cancel", &[]).await;
    cluster.register(KID).await;
    cluster.register(PARENT).await;
    cluster.spawn_worker("w1", 4);
    let run_id = cluster.submit("parent", json!({"word": "hi", "ticks": 600})).await;
    let run = cluster
        .wait_step(&run_id, "child", "waiting", Duration::from_secs(30))
        .await;
    let child_id = step(&run, "child").child_run_id.clone();
    cluster
        .wait_step(&child_id, "wait", "running", Duration::from_secs(30))
        .await;
    cluster
        .runs()
        .await
        .cancel_run(CancelRunRequest {
            run_id: run_id.clone(),
            reason: "stop".into(),
        })
        .await
        .unwrap();
    let child = cluster.wait_run(&child_id, Duration::from_secs(10)).await;
    assert_eq!(status(&child), "cancelled");
    assert!(child.error.contains("parent"), "{}", child.error);
    assert_eq!(status(&cluster.get_run(&run_id).await), "cancelled");
}

#[tokio::test(flavor = "multi_thread")]
async fn sleep_until_waits_for_a_cel_timestamp() {
    let mut cluster = Cluster::start("sleep-until", &[]).await;
    cluster
        .register("name: alarm\nversion: 1\nsteps:\n  - {id: nap, sleep_until: 'timestamp(input.at)'}\n  - {id: wake, handler: echo, depends_on: [nap]}\n")
        .await;
    cluster.spawn_worker("w1", 2);
    let at = baton_shared::time::now_ms() + 1500;
    let at_text = format!(
        "{}",
        humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(at as u64))
    );
    let run_id = cluster.submit("alarm", json!({"at": at_text})).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    let woke = ms(&step(&run, "nap").finished_at);
    assert!(woke >= at, "woke at {woke}, before {at}");
    assert!(woke < at + 3000, "woke at {woke}, long after {at}");
}

const WAITER: &str = r#"
name: waiter
version: 1
steps:
  - {id: first, handler: echo}
  - id: paid
    depends_on: [first]
    wait_for_event: {event: payment, key: input.order, timeout: 1h}
  - {id: ship, handler: trace, depends_on: [paid]}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_step_completes_with_the_event_payload_even_across_a_coordinator_restart() {
    let mut cluster = Cluster::start("wait-event", &[]).await;
    cluster.register(WAITER).await;
    cluster.spawn_worker("w1", 2);
    let run_id = cluster.submit("waiter", json!({"order": "A-1"})).await;
    let run = cluster
        .wait_step(&run_id, "paid", "waiting", Duration::from_secs(30))
        .await;
    assert!(
        step(&run, "paid").waiting_for.contains("payment"),
        "{:?}",
        step(&run, "paid")
    );

    cluster.stop_coordinator(true);
    cluster.start_coordinator().await;
    // Another key wakes nobody (and is buffered); the right key wakes the step.
    let other = cluster.publish("payment", "B-2", json!({"amount": 1})).await;
    assert!(other.buffered && other.delivered.is_empty());
    let sent = cluster.publish("payment", "A-1", json!({"amount": 42})).await;
    assert!(!sent.buffered);
    assert_eq!(sent.delivered.len(), 1);
    assert_eq!(sent.delivered[0].run_id, run_id);
    assert_eq!(sent.delivered[0].step_id, "paid");

    let run = cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(output(&run, "paid"), json!({"amount": 42}));
    assert_eq!(output(&run, "ship")["received"]["paid"], json!({"amount": 42}));
    assert_eq!(cluster.executions(&run_id, "first").await, 1, "nothing ran twice");
    assert_eq!(cluster.executions(&run_id, "ship").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_sent_before_the_step_is_reached_is_not_lost() {
    let mut cluster = Cluster::start("wait-early", &[]).await;
    cluster
        .register("name: early\nversion: 1\nsteps:\n  - {id: slow, handler: slow}\n  - {id: paid, depends_on: [slow], wait_for_event: {event: payment, key: input.order}}\n")
        .await;
    cluster.spawn_worker("w1", 2);
    let run_id = cluster.submit("early", json!({"order": "C-3", "ms": 700})).await;
    let sent = cluster.publish("payment", "C-3", json!({"early": true})).await;
    assert!(sent.buffered, "nobody waited yet");
    let run = cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(output(&run, "paid"), json!({"early": true}));
    // The buffered event was used up: a second run waits.
    let second = cluster.submit("early", json!({"order": "C-3", "ms": 10})).await;
    cluster
        .wait_step(&second, "paid", "waiting", Duration::from_secs(30))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wait_that_times_out_fails_or_skips_as_its_definition_says() {
    let mut cluster = Cluster::start("wait-timeout", &[]).await;
    cluster
        .register(
            "name: impatient\nversion: 1\nsteps:\n  - {id: fail, wait_for_event: {event: never, timeout: 300ms}}\n",
        )
        .await;
    cluster
        .register("name: lenient\nversion: 1\nsteps:\n  - {id: skip, wait_for_event: {event: never, timeout: 300ms, on_timeout: skip}}\n  - {id: then, handler: echo, depends_on: [skip]}\n")
        .await;
    cluster.spawn_worker("w1", 2);
    let failing = cluster.submit("impatient", json!({})).await;
    let skipping = cluster.submit("lenient", json!({})).await;
    let run = cluster.wait_run(&failing, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "failed");
    assert!(
        step(&run, "fail").error.contains("Timeout"),
        "{}",
        step(&run, "fail").error
    );
    let run = cluster.wait_run(&skipping, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded");
    assert_eq!(step_status(&run, "skip"), "skipped");
    assert_eq!(step_status(&run, "then"), "skipped");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspended_handler_runs_again_with_the_event_as_its_resume_data() {
    let mut cluster = Cluster::start("suspend", &[]).await;
    cluster
        .register("name: screen\nversion: 1\nsteps:\n  - {id: screen, handler: screen}\n  - {id: after, handler: trace, depends_on: [screen]}\n")
        .await;
    cluster.spawn_worker("w1", 2);
    let run_id = cluster.submit("screen", json!({"x": 21, "key": "doc-7"})).await;
    let run = cluster
        .wait_step(&run_id, "screen", "waiting", Duration::from_secs(30))
        .await;
    assert!(step(&run, "screen").waiting_for.contains("review"));
    assert_eq!(cluster.executions(&run_id, "screen").await, 1);
    let sent = cluster.publish("review", "doc-7", json!({"approved": true})).await;
    assert_eq!(sent.delivered.len(), 1);
    let run = cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
    assert_eq!(
        output(&run, "screen"),
        json!({"computed": {"double": 42}, "answer": {"approved": true}, "attempt": 2})
    );
    assert_eq!(cluster.executions(&run_id, "screen").await, 1, "computed once");
    assert_eq!(cluster.count("resumed", &run_id, "screen").await, 1, "resumed once");
    let outcomes: Vec<&str> = step(&run, "screen")
        .attempts
        .iter()
        .map(|a| a.outcome.as_str())
        .collect();
    assert_eq!(outcomes, ["suspended", "succeeded"]);
}

const APPROVAL: &str = r#"
name: approval
version: 1
steps:
  - {id: draft, handler: echo}
  - id: approve
    depends_on: [draft]
    human:
      title: Approve the draft
      description: Read it and decide.
      assignees: [alice, bob]
      form:
        type: object
        required: [approved]
        properties:
          approved: {type: boolean}
          note: {type: string}
  - {id: publish, handler: trace, depends_on: [approve]}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_human_task_is_listed_refuses_invalid_data_and_completes_with_valid_data() {
    let mut cluster = Cluster::start("human", &[]).await;
    cluster.register(APPROVAL).await;
    cluster.spawn_worker("w1", 2);
    let run_id = cluster.submit("approval", json!({"text": "hello"})).await;
    cluster
        .wait_step(&run_id, "approve", "waiting", Duration::from_secs(30))
        .await;
    let mut tasks = cluster.human_tasks().await;
    let list = |assignee: &str, status: &str| ListHumanTasksRequest {
        assignee: assignee.into(),
        workflow: "approval".into(),
        status: status.into(),
        limit: 0,
    };
    let open = tasks
        .list_human_tasks(list("alice", "open"))
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].run_id, run_id);
    assert_eq!(open[0].title, "Approve the draft");
    assert_eq!(open[0].assignees, ["alice", "bob"]);
    assert!(
        tasks
            .list_human_tasks(list("carol", ""))
            .await
            .unwrap()
            .into_inner()
            .tasks
            .is_empty()
    );

    let complete = |data: Value| CompleteHumanTaskRequest {
        run_id: run_id.clone(),
        step_id: "approve".into(),
        user: "alice".into(),
        data_json: data.to_string(),
    };
    let err = tasks
        .complete_human_task(complete(json!({"approved": "yes"})))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains(r#"data/approved: "yes" is not of type "boolean""#),
        "{}",
        err.message()
    );
    let err = tasks.complete_human_task(complete(json!({}))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("approved"), "{}", err.message());
    assert_eq!(
        step_status(&cluster.get_run(&run_id).await, "approve"),
        "waiting",
        "nothing changed"
    );

    let done = tasks
        .complete_human_task(complete(json!({"approved": true, "note": "fine"})))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.status, "completed");
    assert_eq!(done.completed_by, "alice");
    assert!(ms(&done.completed_at) > 0);
    let run = cluster.wait_run(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded");
    assert_eq!(output(&run, "approve"), json!({"approved": true, "note": "fine"}));
    assert_eq!(step(&run, "approve").completed_by, "alice");
    assert_eq!(
        output(&run, "publish")["received"]["approve"],
        json!({"approved": true, "note": "fine"})
    );
    let err = tasks
        .complete_human_task(complete(json!({"approved": false})))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "a task completes once");
    let completed = tasks
        .list_human_tasks(list("bob", "completed"))
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(completed.len(), 1);
    assert_eq!(
        completed[0].data_json,
        json!({"approved": true, "note": "fine"}).to_string()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fan_out_of_ten_thousand_elements_completes_with_every_result_in_order() {
    let mut cluster = Cluster::start("fan-out-10k", &[]).await;
    cluster
        .register(
            "name: huge\nversion: 1\nsteps:\n  - {id: each, handler: square, for_each: input.items, max_parallel: 500}\n  - {id: after, handler: echo, depends_on: [each], input: '${{ size(steps.each.output) }}'}\n",
        )
        .await;
    cluster.spawn_worker("w1", 64);
    let items: Vec<i64> = (0..10_000).collect();
    let started = Instant::now();
    let run_id = cluster.submit("huge", json!({"items": items})).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(300)).await;
    eprintln!("10,000 elements took {:?}", started.elapsed());
    assert_eq!(status(&run), "succeeded", "{}", run.error);
    let expected: Vec<i64> = (0..10_000i64).map(|i| i * i).collect();
    assert_eq!(output(&run, "each"), json!(expected));
    assert_eq!(output(&run, "after"), json!(10_000));
    let counts = cluster.item_executions(&run_id, "each").await;
    assert_eq!(counts.len(), 10_000);
    assert!(counts.values().all(|&n| n == 1), "every element ran once");
}

#[tokio::test(flavor = "multi_thread")]
async fn fan_out_results_over_the_size_limit_fail_the_step_clearly() {
    let mut cluster = Cluster::start("fan-out-limit", &[("BATON_MAX_PAYLOAD_BYTES", "2000")]).await;
    cluster
        .register("name: wide\nversion: 1\nsteps:\n  - {id: each, handler: square, for_each: input.items}\n")
        .await;
    cluster.spawn_worker("w1", 8);
    let items: Vec<i64> = (1000..1300).collect();
    let run_id = cluster.submit("wide", json!({"items": items})).await;
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "failed");
    let error = &step(&run, "each").error;
    assert!(
        error.contains("OutputTooLarge") && error.contains("over the limit of 2000 bytes"),
        "{error}"
    );
    assert_eq!(cluster.item_executions(&run_id, "each").await.len(), 300);

    let events = publish_too_large(&cluster).await;
    assert_eq!(events.code(), Code::InvalidArgument);
    assert!(events.message().contains("payload_json"), "{}", events.message());
}

async fn publish_too_large(cluster: &Cluster) -> tonic::Status {
    cluster
        .events()
        .await
        .publish_event(PublishEventRequest {
            name: "big".into(),
            key: String::new(),
            payload_json: json!({"text": "x".repeat(3000)}).to_string(),
        })
        .await
        .unwrap_err()
}
