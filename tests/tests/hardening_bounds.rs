//! The bounds on what a definition may hold, through the real API (issue 8, defects 1, 5, 6, 8, 20):
//! huge durations and oversized or deep expressions are refused at registration with the field path
//! and the limit, and an expression over its evaluation budget fails its step with a clear error;
//! the coordinator keeps answering throughout.

use std::time::{Duration, Instant};

use baton_shared::proto::{RegisterWorkflowRequest, Run, StepRun};
use baton_tests::{Cluster, status};
use serde_json::json;
use tonic::Code;

fn step<'a>(run: &'a Run, id: &str) -> &'a StepRun {
    run.steps.iter().find(|s| s.id == id).expect("step")
}

/// Registers `doc` and returns the refusal; panics if it is accepted.
async fn refused(cluster: &Cluster, doc: &str) -> tonic::Status {
    cluster
        .workflows()
        .await
        .register_workflow(RegisterWorkflowRequest { definition: doc.into() })
        .await
        .expect_err("refused")
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_durations_are_refused_at_registration_naming_the_field_and_the_bound() {
    let cluster = Cluster::start("bounds-durations", &[]).await;
    let huge = "18446744073709551615s";
    let cases = [
        (
            format!("name: w\nversion: 1\nsteps:\n  - {{id: a, handler: h, timeout: {huge}}}\n"),
            "steps[0].timeout: must be at most 3650days",
        ),
        (
            format!("name: w\nversion: 1\ntimeout: {huge}\nsteps:\n  - {{id: a, handler: h}}\n"),
            "timeout: must be at most 3650days",
        ),
        (
            format!("name: w\nversion: 1\nsteps:\n  - {{id: a, handler: h, retry: {{initial_interval: {huge}}}}}\n"),
            "steps[0].retry.initial_interval: must be at most 1day",
        ),
        (
            "name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, retry: {backoff_coefficient: 1e300}}\n".to_owned(),
            "steps[0].retry.backoff_coefficient:",
        ),
        (
            format!("name: w\nversion: 1\nsteps:\n  - {{id: a, sleep: {huge}}}\n"),
            "steps[0].sleep: must be at most 3650days",
        ),
        (
            format!("name: w\nversion: 1\nsteps:\n  - {{id: a, wait_for_event: {{event: e, timeout: {huge}}}}}\n"),
            "steps[0].wait_for_event.timeout: must be at most 3650days",
        ),
        (
            "name: w\nversion: 1\nschedules:\n  - {cron: '* * * * *', catchup_window: 300000000years}\nsteps:\n  - {id: a, handler: h}\n".to_owned(),
            "schedules[0].catchup_window: must be at most 30days",
        ),
        (
            "name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, rate_limit: {limit: 1, period: 3001years}}\n".to_owned(),
            "steps[0].rate_limit.period: must be at most 1day",
        ),
    ];
    for (doc, expected) in cases {
        let err = refused(&cluster, &doc).await;
        assert_eq!(err.code(), Code::InvalidArgument, "{doc}: {err:?}");
        assert!(err.message().contains(expected), "{doc}: {}", err.message());
    }
    cluster.assert_answers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_deep_expressions_are_refused_and_the_coordinator_stays_up() {
    let cluster = Cluster::start("bounds-expressions", &[]).await;
    let doc = |when: &str| format!("name: w\nversion: 1\nsteps:\n  - id: a\n    handler: h\n    when: '{when}'\n");
    // defect 1: 6,000 terms (12 KB) aborted the coordinator with a stack overflow
    let long = format!("{}1 > 0", "1+".repeat(6_000));
    // 4 KiB of the same passes the byte limit and is refused for its depth
    let deep = format!("{}1 > 0", "1+".repeat(2_000));
    // defect 6: 80,000 `||` terms (1.25 MB) took 5 s and 784 MB
    let wide = format!("{}true", "input.a || ".repeat(80_000));
    let nested = format!("{}1{} == []", "[".repeat(1_000), "]".repeat(1_000));
    for (when, expected) in [
        (
            &long,
            "steps[0].when: expression is 12005 bytes, more than the limit of 4096",
        ),
        (
            &deep,
            "steps[0].when: expression nests more than 32 levels deep (the limit",
        ),
        (&wide, "more than the limit of 4096"),
        (&nested, "steps[0].when: "),
    ] {
        let started = Instant::now();
        let err = refused(&cluster, &doc(when)).await;
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(expected), "{}", err.message());
        assert!(err.message().len() < 2_000, "an error of {} bytes", err.message().len());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        cluster.assert_answers().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_condition_over_its_cost_budget_fails_its_step_and_the_next_run_goes_on() {
    let mut cluster = Cluster::start("bounds-cost", &[]).await;
    cluster.spawn_worker("w", 4);
    cluster
        .register(
            "name: costly\nversion: 1\nsteps:\n  - id: a\n    handler: echo\n    when: 'size(input.l.map(x, input.l.map(y, x))) > 0'\n",
        )
        .await;
    cluster
        .register("name: cheap\nversion: 1\nsteps:\n  - {id: a, handler: echo, when: 'size(input.l) > 0'}\n")
        .await;
    let l: Vec<u32> = (0..5_000).collect();
    let started = Instant::now();
    let run_id = cluster.submit("costly", json!({ "l": l })).await;
    // before the budget this took 5.3 s and 1.26 GB inside SubmitRun
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "SubmitRun took {:?}",
        started.elapsed()
    );
    let run = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "failed", "{run:#?}");
    let error = &step(&run, "a").error;
    assert!(
        error.starts_with("ConditionError: when: size(input.l.map(x, input.l.map(y, x))) > 0: evaluation exceeded its cost budget of 1000000 units"),
        "{error}"
    );
    // the coordinator goes on: the next run of the same size succeeds
    let next = cluster.submit("cheap", json!({ "l": l })).await;
    let run = cluster.wait_run(&next, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded", "{run:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn names_that_alias_keys_and_cycles_are_refused_naming_the_field() {
    let cluster = Cluster::start("bounds-names", &[]).await;
    for (doc, expected) in [
        (
            "name: 'x:registered'\nversion: 1\nsteps:\n  - {id: a, handler: h}\n",
            r#"name: "x:registered" must be 1 to 128 characters"#,
        ),
        (
            "name: w\nversion: 1\nsteps:\n  - {id: a, workflow: {name: 'x:registered'}}\n",
            r#"steps[0].workflow.name: "x:registered" must be"#,
        ),
        (
            "name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, emit: {workflow: 'a}b', items: '[1]', key: 'string(item)'}}\n",
            r#"steps[0].emit.workflow: "a}b" must be"#,
        ),
        (
            "name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, depends_on: [b]}\n  - {id: b, handler: h, depends_on: [a]}\n",
            "steps: the steps form a cycle: a -> b -> a",
        ),
    ] {
        let err = refused(&cluster, doc).await;
        assert_eq!(err.code(), Code::InvalidArgument, "{doc}: {err:?}");
        assert!(err.message().contains(expected), "{doc}: {}", err.message());
    }
    cluster.assert_answers().await;
}
