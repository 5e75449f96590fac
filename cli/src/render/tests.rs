//! Tests of the rendering functions, with `insta` snapshots of whole views.

use baton_shared::proto::{
    Attempt, ConcurrencyDefinition, EmitDefinition, EmitProgress, HumanStepDefinition, HumanTask, ItemProgress,
    PublishEventResponse, RateLimitDefinition, RegisterWorkflowResponse, RetryPolicy, Run, RunEvent, RunStatus,
    Schedule, ScheduleTick, StepDefinition, StepRef, StepRun, StepStatus, SubmitRunResponse, WaitForEventDefinition,
    Workflow,
};
use baton_shared::time::timestamp;

use super::*;

/// 2025-03-01T12:00:00Z in Unix milliseconds.
const T0: i64 = 1_740_830_400_000;

fn at(offset_ms: i64) -> Option<prost_types::Timestamp> {
    timestamp(T0 + offset_ms)
}

fn attempt(number: u32, outcome: &str, error: &str, worker: &str, start: i64, end: i64) -> Attempt {
    Attempt {
        number,
        outcome: outcome.to_owned(),
        error: error.to_owned(),
        worker: worker.to_owned(),
        started_at: at(start),
        finished_at: at(end),
        ..Attempt::default()
    }
}

/// A failed run: `fetch` succeeded first time, `charge` failed three times, `notify` was skipped.
fn failed_run() -> Run {
    Run {
        id: "run-0001".to_owned(),
        workflow: "orders".to_owned(),
        version: 3,
        status: RunStatus::Failed as i32,
        input_json: r#"{"order": 42}"#.to_owned(),
        output_json: String::new(),
        error: "step charge failed after 3 attempts: card declined".to_owned(),
        idempotency_key: "order-42".to_owned(),
        created_at: at(0),
        started_at: at(50),
        finished_at: at(4_250),
        steps: vec![
            StepRun {
                id: "fetch".to_owned(),
                handler: "http.get".to_owned(),
                status: StepStatus::Succeeded as i32,
                attempt: 1,
                max_attempts: 3,
                output_json: r#"{"amount": 12.5}"#.to_owned(),
                dispatched_at: at(50),
                started_at: at(60),
                finished_at: at(410),
                attempts: vec![attempt(1, "succeeded", "", "worker-a", 60, 410)],
                worker: "worker-a".to_owned(),
                ..StepRun::default()
            },
            StepRun {
                id: "charge".to_owned(),
                handler: "payments.charge".to_owned(),
                status: StepStatus::Failed as i32,
                attempt: 3,
                max_attempts: 3,
                error: "card declined".to_owned(),
                dispatched_at: at(3_000),
                started_at: at(3_010),
                finished_at: at(4_200),
                depends_on: vec!["fetch".to_owned()],
                attempts: vec![
                    attempt(1, "failed", "connection reset\nby peer", "worker-a", 420, 1_420),
                    attempt(2, "timed_out", "no heartbeat for 5s", "worker-b", 2_000, 7_000),
                    attempt(3, "failed", "card declined", "worker-a", 3_010, 4_200),
                ],
                worker: "worker-a".to_owned(),
                ..StepRun::default()
            },
            StepRun {
                id: "notify".to_owned(),
                handler: "email.send".to_owned(),
                status: StepStatus::Skipped as i32,
                max_attempts: 1,
                depends_on: vec!["charge".to_owned()],
                ..StepRun::default()
            },
        ],
        ..Run::default()
    }
}

/// A running run whose step is on its second attempt.
fn running_run() -> Run {
    Run {
        id: "run-0002".to_owned(),
        workflow: "orders".to_owned(),
        version: 3,
        status: RunStatus::Running as i32,
        input_json: "{}".to_owned(),
        created_at: at(0),
        started_at: at(100),
        steps: vec![StepRun {
            id: "charge".to_owned(),
            handler: "payments.charge".to_owned(),
            status: StepStatus::Running as i32,
            attempt: 2,
            max_attempts: 5,
            error: "connection reset".to_owned(),
            dispatched_at: at(1_500),
            started_at: at(1_600),
            attempts: vec![attempt(1, "failed", "connection reset", "worker-a", 200, 1_200)],
            worker: "worker-b".to_owned(),
            ..StepRun::default()
        }],
        ..Run::default()
    }
}

fn workflow() -> Workflow {
    Workflow {
        name: "orders".to_owned(),
        version: 3,
        description: "Charge and notify.".to_owned(),
        steps: vec![
            StepDefinition {
                id: "fetch".to_owned(),
                handler: "http.get".to_owned(),
                retry: Some(RetryPolicy {
                    max_attempts: 3,
                    initial_interval_ms: 1_000,
                    backoff_coefficient: 2.0,
                    max_interval_ms: 30_000,
                    jitter: 0.1,
                    non_retryable_errors: vec![],
                }),
                timeout_ms: 30_000,
                ..StepDefinition::default()
            },
            StepDefinition {
                id: "charge".to_owned(),
                handler: "payments.charge".to_owned(),
                depends_on: vec!["fetch".to_owned()],
                retry: Some(RetryPolicy {
                    max_attempts: 5,
                    initial_interval_ms: 500,
                    backoff_coefficient: 1.5,
                    max_interval_ms: 0,
                    jitter: 0.0,
                    non_retryable_errors: vec!["card_declined".to_owned(), "fraud".to_owned()],
                }),
                timeout_ms: 120_000,
                heartbeat_timeout_ms: 5_000,
                ..StepDefinition::default()
            },
        ],
        input_schema_json: r#"{"type":"object","required":["order"]}"#.to_owned(),
        definition_json: r#"{"name":"orders"}"#.to_owned(),
        registered_at: at(-86_400_000),
        versions: vec![1, 2, 3],
        ..Workflow::default()
    }
}

/// A child run (of `run-0000`'s step `batch`) with a step of every kind: a fan-out under way, a
/// step waiting for an event, a completed human step, a child workflow, a sleep.
fn orchestrated_run() -> Run {
    let step = |id: &str, kind: &str, handler: &str, status: StepStatus| StepRun {
        id: id.to_owned(),
        kind: kind.to_owned(),
        handler: handler.to_owned(),
        status: status as i32,
        max_attempts: 1,
        ..StepRun::default()
    };
    Run {
        id: "run-0003".to_owned(),
        workflow: "refunds".to_owned(),
        version: 2,
        status: RunStatus::Running as i32,
        input_json: r#"{"order": 42}"#.to_owned(),
        created_at: at(0),
        started_at: at(100),
        parent_run_id: "run-0000".to_owned(),
        parent_step_id: "batch".to_owned(),
        child_run_ids: vec!["run-0004".to_owned()],
        steps: vec![
            StepRun {
                attempt: 1,
                output_json: r#"{"id": 42}"#.to_owned(),
                started_at: at(100),
                finished_at: at(300),
                ..step("fetch", "task", "orders.fetch", StepStatus::Succeeded)
            },
            StepRun {
                completed_by: "alice".to_owned(),
                output_json: r#"{"approved": true}"#.to_owned(),
                started_at: at(300),
                finished_at: at(60_300),
                depends_on: vec!["fetch".to_owned()],
                ..step("approve", "human", "", StepStatus::Succeeded)
            },
            StepRun {
                attempt: 1,
                items: Some(ItemProgress {
                    total: 40,
                    succeeded: 12,
                    failed: 1,
                    in_flight: 3,
                }),
                started_at: at(60_300),
                depends_on: vec!["approve".to_owned()],
                ..step("refund_items", "task", "payments.refund", StepStatus::Running)
            },
            StepRun {
                waiting_for: r#"event "payment" key "42""#.to_owned(),
                started_at: at(60_300),
                depends_on: vec!["approve".to_owned()],
                ..step("payment", "wait_for_event", "", StepStatus::Waiting)
            },
            StepRun {
                child_run_id: "run-0004".to_owned(),
                started_at: at(60_300),
                depends_on: vec!["approve".to_owned()],
                ..step("notify", "workflow", "", StepStatus::Running)
            },
            StepRun {
                depends_on: vec!["refund_items".to_owned(), "payment".to_owned()],
                ..step("cool_down", "sleep", "", StepStatus::Pending)
            },
        ],
        ..Run::default()
    }
}

/// A workflow with conditions, a fan-out, and steps of every kind.
fn orchestrated_workflow() -> Workflow {
    let step = |id: &str, kind: &str, after: &[&str]| StepDefinition {
        id: id.to_owned(),
        kind: kind.to_owned(),
        depends_on: after.iter().map(|s| (*s).to_owned()).collect(),
        ..StepDefinition::default()
    };
    Workflow {
        name: "refunds".to_owned(),
        version: 2,
        steps: vec![
            StepDefinition {
                handler: "orders.fetch".to_owned(),
                timeout_ms: 30_000,
                retry: Some(RetryPolicy {
                    max_attempts: 3,
                    initial_interval_ms: 1_000,
                    backoff_coefficient: 2.0,
                    ..RetryPolicy::default()
                }),
                ..step("fetch", "task", &[])
            },
            StepDefinition {
                when: "input.amount > 100".to_owned(),
                human: Some(HumanStepDefinition {
                    title: "Approve the refund".to_owned(),
                    description: "Check the order first.".to_owned(),
                    assignees: vec!["alice".to_owned(), "bob".to_owned()],
                    form_schema_json: r#"{"type":"object","required":["approved"]}"#.to_owned(),
                }),
                ..step("approve", "human", &["fetch"])
            },
            StepDefinition {
                handler: "payments.refund".to_owned(),
                input_template_json: r#"{"item": "${item}", "order": "${input.order}"}"#.to_owned(),
                for_each: "steps.fetch.output.items".to_owned(),
                max_parallel: 4,
                timeout_ms: 60_000,
                ..step("refund_items", "task", &["approve"])
            },
            StepDefinition {
                wait_for_event: Some(WaitForEventDefinition {
                    event: "payment".to_owned(),
                    key: "input.order".to_owned(),
                    timeout_ms: 86_400_000,
                    on_timeout: "skip".to_owned(),
                }),
                ..step("payment", "wait_for_event", &["approve"])
            },
            StepDefinition {
                workflow: "notify".to_owned(),
                workflow_version: 3,
                when: "input.notify".to_owned(),
                ..step("notify", "workflow", &["approve"])
            },
            StepDefinition {
                sleep_ms: 300_000,
                ..step("cool_down", "sleep", &["refund_items", "payment"])
            },
            StepDefinition {
                sleep_until: "timestamp(input.close_at)".to_owned(),
                ..step("close", "sleep_until", &["cool_down"])
            },
        ],
        registered_at: at(-3_600_000),
        versions: vec![1, 2],
        ..Workflow::default()
    }
}

fn human_task(status: &str) -> HumanTask {
    HumanTask {
        run_id: "run-0003".to_owned(),
        step_id: "approve".to_owned(),
        workflow: "refunds".to_owned(),
        workflow_version: 2,
        title: "Approve the refund".to_owned(),
        description: "Check the order first.".to_owned(),
        assignees: vec!["alice".to_owned(), "bob".to_owned()],
        form_schema_json: r#"{"type":"object","required":["approved"]}"#.to_owned(),
        status: status.to_owned(),
        created_at: at(300),
        ..HumanTask::default()
    }
}

fn completed_task() -> HumanTask {
    HumanTask {
        completed_by: "alice".to_owned(),
        completed_at: at(60_300),
        data_json: r#"{"approved": true, "note": "ok"}"#.to_owned(),
        ..human_task("completed")
    }
}

#[test]
fn durations_are_short() {
    assert_eq!(human_duration(0), "0ms");
    assert_eq!(human_duration(-5), "0ms");
    assert_eq!(human_duration(999), "999ms");
    assert_eq!(human_duration(1_000), "1s");
    assert_eq!(human_duration(1_250), "1.2s");
    assert_eq!(human_duration(59_900), "59.9s");
    assert_eq!(human_duration(60_000), "1m");
    assert_eq!(human_duration(125_000), "2m05s");
    assert_eq!(human_duration(3_600_000), "1h");
    assert_eq!(human_duration(3_780_000), "1h03m");
}

#[test]
fn times_are_utc_rfc3339() {
    assert_eq!(rfc3339_millis(T0 + 5_250), "2025-03-01T12:00:05.250Z");
    assert_eq!(table_time(at(5_250).as_ref()), "2025-03-01T12:00:05Z");
    assert_eq!(table_time(None), "-");
    assert_eq!(time_of_day(at(5_250).as_ref()), "12:00:05.250Z");
    assert_eq!(time_of_day(None), "-");
    // Out of RFC 3339's range: shown as unset rather than a panic.
    let far = prost_types::Timestamp {
        seconds: i64::MAX / 2000,
        nanos: 0,
    };
    assert_eq!(table_time(Some(&far)), "-");
    let huge = prost_types::Timestamp {
        seconds: i64::MAX,
        nanos: 0,
    };
    assert_eq!(table_time(Some(&huge)), "-");
    assert_eq!(rfc3339_millis(i64::MAX), "9999-12-31T23:59:59.999Z");
}

#[test]
fn unknown_status_numbers_are_shown_not_hidden() {
    assert_eq!(run_status_word(RunStatus::TimedOut as i32), "timed_out");
    assert_eq!(run_status_word(42), "unknown(42)");
    assert_eq!(step_status_word(StepStatus::Retrying as i32), "retrying");
    assert_eq!(step_status_word(-1), "unknown(-1)");
}

#[test]
fn version_ranges_collapse() {
    assert_eq!(version_ranges(&[]), "");
    assert_eq!(version_ranges(&[1]), "1");
    assert_eq!(version_ranges(&[1, 2, 3, 5, 7, 8]), "1-3, 5, 7-8");
    assert_eq!(
        version_ranges(&[u32::MAX - 1, u32::MAX]),
        format!("{}-{}", u32::MAX - 1, u32::MAX)
    );
}

#[test]
fn tables_align_and_trim() {
    let text = table(
        &["A", "LONG HEADER", "C"],
        &[vec!["wide cell".into(), "x".into(), String::new()]],
    );
    assert_eq!(text, "A          LONG HEADER  C\nwide cell  x\n");
}

#[test]
fn run_view_shows_retries() {
    let text = run_text(&failed_run(), T0 + 10_000);
    assert!(text.contains("charge  payments.charge  failed     3/3"), "{text}");
    assert!(text.contains("Attempts of step charge (3 of at most 3):"), "{text}");
    assert!(!text.contains("Attempts of step fetch"), "{text}");
    insta::assert_snapshot!("run_failed", text);
}

#[test]
fn running_run_view_shows_the_current_attempt() {
    let text = run_text(&running_run(), T0 + 2_600);
    assert!(text.contains("Duration:         2.5s so far"), "{text}");
    assert!(text.contains("#2       running  1s so far  worker-b"), "{text}");
    insta::assert_snapshot!("run_running", text);
}

#[test]
fn long_json_is_pretty_printed_under_its_label() {
    let mut run = running_run();
    run.steps.clear();
    run.input_json = format!(
        r#"{{"items": [{}], "note": "a long enough input to need several lines"}}"#,
        "1, ".repeat(20) + "2"
    );
    insta::assert_snapshot!("run_long_input", run_text(&run, T0 + 2_600));
}

#[test]
fn run_json_has_the_documented_shape() {
    let value = serde_json::to_value(run_json(&failed_run())).unwrap();
    assert_eq!(value["status"], "failed");
    assert_eq!(value["input"]["order"], 42);
    assert!(value["output"].is_null());
    assert_eq!(value["created_at"], "2025-03-01T12:00:00.000Z");
    assert_eq!(value["steps"][1]["attempts"][1]["outcome"], "timed_out");
    assert!(value["steps"][2]["started_at"].is_null());
    insta::assert_snapshot!(
        "run_failed_json",
        serde_json::to_string_pretty(&run_json(&failed_run())).unwrap()
    );
}

#[test]
fn unparsable_json_fields_are_kept_as_strings() {
    let run = Run {
        input_json: "not json".to_owned(),
        ..Run::default()
    };
    let value = serde_json::to_value(run_json(&run)).unwrap();
    assert_eq!(value["input"], "not json");
    assert!(value["created_at"].is_null());
    assert!(value["error"].is_null());
}

#[test]
fn run_list() {
    let runs = [failed_run(), running_run()];
    insta::assert_snapshot!("run_list", run_list_text(&runs, "page-2", T0 + 10_000));
    assert_eq!(run_list_text(&[], "", T0), "no runs found\n");
    let value = serde_json::to_value(run_list_json(&runs, "")).unwrap();
    assert!(value["next_page_token"].is_null());
    assert_eq!(value["runs"].as_array().map(Vec::len), Some(2));
}

#[test]
fn workflows() {
    insta::assert_snapshot!("workflow_list", workflow_list_text(&[workflow()]));
    assert_eq!(workflow_list_text(&[]), "no workflows registered\n");
    insta::assert_snapshot!("workflow_get", workflow_text(&workflow()));
    insta::assert_snapshot!(
        "workflow_get_json",
        serde_json::to_string_pretty(&workflow_json(&workflow())).unwrap()
    );
}

#[test]
fn apply_and_submit_answers() {
    let created = RegisterWorkflowResponse {
        workflow: Some(workflow()),
        created: true,
    };
    assert_eq!(apply_text(&created), "workflow orders version 3 created\n");
    let same = RegisterWorkflowResponse {
        workflow: Some(workflow()),
        created: false,
    };
    assert!(apply_text(&same).starts_with("workflow orders version 3 unchanged"));
    assert_eq!(
        serde_json::to_string(&apply_json(&same)).unwrap(),
        r#"{"name":"orders","version":3,"created":false}"#
    );

    let new_run = SubmitRunResponse {
        run_id: "r-1".to_owned(),
        created: true,
        input_differs: false,
    };
    assert_eq!(submit_text(&new_run), "run r-1 created\n");
    let old_run = SubmitRunResponse {
        run_id: "r-1".to_owned(),
        created: false,
        input_differs: false,
    };
    assert!(submit_text(&old_run).contains("already exists"));
    assert!(!submit_text(&old_run).contains("different input"));
    assert_eq!(
        serde_json::to_string(&submit_json(&old_run)).unwrap(),
        r#"{"run_id":"r-1","created":false,"input_differs":false}"#
    );
    let other_input = SubmitRunResponse {
        input_differs: true,
        ..old_run
    };
    assert!(submit_text(&other_input).contains("with a different input"));
    assert_eq!(
        serde_json::to_string(&submit_json(&other_input)).unwrap(),
        r#"{"run_id":"r-1","created":false,"input_differs":true}"#
    );
}

#[test]
fn event_lines() {
    let run = failed_run();
    let width = event_subject_width(&run);
    let event = |kind: &str, step: &str, attempt: u32, status: &str, detail: &str, ms: i64| RunEvent {
        run_id: run.id.clone(),
        sequence: format!("{ms}-0"),
        time: at(ms),
        kind: kind.to_owned(),
        step_id: step.to_owned(),
        attempt,
        status: status.to_owned(),
        detail: detail.to_owned(),
        payload_json: String::new(),
        log: None,
        run: None,
    };
    let events = [
        event("run", "", 0, "running", "", 50),
        event("step", "fetch", 1, "dispatched", "", 50),
        event("step", "charge", 1, "retrying", "connection reset\nby peer", 1_420),
        event("step", "notify", 0, "skipped", "", 4_200),
        event(
            "run",
            "",
            0,
            "failed",
            "step charge failed after 3 attempts: card declined",
            4_250,
        ),
    ];
    let text: String = events.iter().map(|e| event_line(e, width) + "\n").collect();
    insta::assert_snapshot!("events", text);

    let json = serde_json::to_string(&event_json(&events[0])).unwrap();
    assert_eq!(
        json,
        r#"{"run_id":"run-0001","sequence":"50-0","time":"2025-03-01T12:00:00.050Z","kind":"run","step_id":null,"attempt":0,"status":"running","detail":null}"#
    );
    let mut progress = event("custom", "fetch", 1, "", "", 70);
    progress.payload_json = r#"{"done": 3}"#.into();
    assert!(
        event_line(&progress, width).contains(r#"progress    attempt 1   {"done": 3}"#),
        "{}",
        event_line(&progress, width)
    );
    let json = serde_json::to_value(event_json(&progress)).unwrap();
    assert_eq!(json["payload"], serde_json::json!({"done": 3}));
}

#[test]
fn run_view_shows_kinds_progress_waits_and_children() {
    let run = orchestrated_run();
    let text = run_text(&run, T0 + 70_000);
    assert!(text.contains("Parent:           run-0000 (step batch)\n"), "{text}");
    assert!(text.contains("Children:         run-0004\n"), "{text}");
    assert!(text.contains("12/40 ok, 1 failed, 3 in flight"), "{text}");
    assert!(text.contains(r#"waiting for event "payment" key "42""#), "{text}");
    assert!(text.contains("completed by alice"), "{text}");
    assert!(text.contains("child run run-0004"), "{text}");
    insta::assert_snapshot!("run_orchestrated", text);
    insta::assert_snapshot!(
        "run_orchestrated_json",
        serde_json::to_string_pretty(&run_json(&run)).unwrap()
    );
}

#[test]
fn progress_leaves_out_zero_counts() {
    let items = |total, succeeded, failed, in_flight| ItemProgress {
        total,
        succeeded,
        failed,
        in_flight,
    };
    assert_eq!(progress_text(&items(40, 12, 1, 3)), "12/40 ok, 1 failed, 3 in flight");
    assert_eq!(progress_text(&items(40, 40, 0, 0)), "40/40 ok");
    assert_eq!(progress_text(&items(0, 0, 0, 0)), "0/0 ok");
    assert_eq!(progress_text(&items(5, 2, 0, 3)), "2/5 ok, 3 in flight");
}

#[test]
fn waiting_for_is_shown_only_while_waiting() {
    let mut run = orchestrated_run();
    run.steps[3].status = StepStatus::Succeeded as i32;
    let text = run_text(&run, T0 + 70_000);
    assert!(!text.contains("waiting for"), "{text}");
    assert_eq!(
        serde_json::to_value(run_json(&run)).unwrap()["steps"][3]["waiting_for"],
        r#"event "payment" key "42""#
    );
}

#[test]
fn many_children_are_listed_one_per_line_up_to_a_limit() {
    let mut run = orchestrated_run();
    run.steps.clear();
    run.child_run_ids = (1..=3).map(|i| format!("c-{i}")).collect();
    assert!(run_text(&run, T0).contains("Children:         c-1, c-2, c-3\n"));
    run.child_run_ids = (1..=25).map(|i| format!("c-{i}")).collect();
    let text = run_text(&run, T0);
    assert!(
        text.contains("Children:         c-1\n                  c-2\n"),
        "{text}"
    );
    assert!(text.contains("                  c-20\n"), "{text}");
    assert!(!text.contains("c-21"), "{text}");
    assert!(
        text.contains("                  ... and 5 more (--output json lists them all)\n"),
        "{text}"
    );
}

#[test]
fn plain_runs_have_no_detail_column_or_family() {
    let text = run_text(&failed_run(), T0 + 10_000);
    assert!(!text.contains("DETAIL") && !text.contains("Parent:") && !text.contains("Children:"));
}

#[test]
fn workflow_view_shows_conditions_fan_outs_and_kinds() {
    let w = orchestrated_workflow();
    let text = workflow_text(&w);
    assert!(text.contains("CONDITION") && text.contains("FOR EACH"), "{text}");
    assert!(text.contains(r#"(wait event "payment")"#), "{text}");
    assert!(text.contains("24h then skip"), "{text}");
    assert!(text.contains("(human: alice, bob)"), "{text}");
    assert!(text.contains("(workflow notify@3)"), "{text}");
    assert!(text.contains("(sleep 5m)"), "{text}");
    assert!(text.contains("(sleep until timestamp(input.close_at))"), "{text}");
    assert!(text.contains("steps.fetch.output.items (4 at once)"), "{text}");
    insta::assert_snapshot!("workflow_orchestrated", text);
    insta::assert_snapshot!(
        "workflow_orchestrated_json",
        serde_json::to_string_pretty(&workflow_json(&w)).unwrap()
    );

    // Only the columns some step needs.
    let mut w = orchestrated_workflow();
    for step in &mut w.steps {
        step.when.clear();
    }
    let text = workflow_text(&w);
    assert!(!text.contains("CONDITION") && text.contains("FOR EACH"), "{text}");
    assert!(!workflow_text(&workflow()).contains("FOR EACH"));
}

#[test]
fn step_kinds_without_a_coordinator_kind_fall_back_to_sleep_or_task() {
    let sleep = StepDefinition {
        id: "s".to_owned(),
        sleep_ms: 5_000,
        ..StepDefinition::default()
    };
    assert_eq!(definition_action(&sleep), "(sleep 5s)");
    assert_eq!(
        serde_json::to_value(workflow_json(&Workflow {
            steps: vec![sleep],
            ..Workflow::default()
        }))
        .unwrap()["steps"][0]["kind"],
        "sleep"
    );
    let child_latest = StepDefinition {
        kind: "workflow".to_owned(),
        workflow: "notify".to_owned(),
        ..StepDefinition::default()
    };
    assert_eq!(definition_action(&child_latest), "(workflow notify)");
    let future = StepDefinition {
        kind: "teleport".to_owned(),
        ..StepDefinition::default()
    };
    assert_eq!(definition_action(&future), "(teleport)");
    let wait_forever = StepDefinition {
        kind: "wait_for_event".to_owned(),
        wait_for_event: Some(WaitForEventDefinition {
            event: "go".to_owned(),
            ..WaitForEventDefinition::default()
        }),
        ..StepDefinition::default()
    };
    assert_eq!(definition_action(&wait_forever), r#"(wait event "go")"#);
}

#[test]
fn publish_answers() {
    let delivered = PublishEventResponse {
        delivered: vec![
            StepRef {
                run_id: "run-0003".to_owned(),
                step_id: "payment".to_owned(),
            },
            StepRef {
                run_id: "run-12".to_owned(),
                step_id: "wait".to_owned(),
            },
        ],
        buffered: false,
        started_run_ids: vec![],
        trigger_errors: vec![],
    };
    assert_eq!(
        publish_text(&delivered),
        "delivered to 2 step(s):\n  run-0003  payment\n  run-12    wait\n"
    );
    assert_eq!(
        serde_json::to_string(&publish_json(&delivered)).unwrap(),
        r#"{"delivered":[{"run_id":"run-0003","step_id":"payment"},{"run_id":"run-12","step_id":"wait"}],"buffered":false,"started_run_ids":[]}"#
    );
    let buffered = PublishEventResponse {
        delivered: vec![],
        buffered: true,
        started_run_ids: vec![],
        trigger_errors: vec![],
    };
    assert_eq!(
        publish_text(&buffered),
        "no step was waiting; buffered for the coordinator's event TTL\n"
    );
    assert_eq!(
        serde_json::to_string(&publish_json(&buffered)).unwrap(),
        r#"{"delivered":[],"buffered":true,"started_run_ids":[]}"#
    );
}

#[test]
fn publish_answers_name_the_runs_the_event_started() {
    let started = PublishEventResponse {
        delivered: vec![StepRef {
            run_id: "run-0003".to_owned(),
            step_id: "payment".to_owned(),
        }],
        buffered: false,
        started_run_ids: vec!["run-0100".to_owned(), "run-0101".to_owned()],
        trigger_errors: vec![],
    };
    assert_eq!(
        publish_text(&started),
        "delivered to 1 step(s):\n  run-0003  payment\nstarted 2 run(s): run-0100, run-0101\n"
    );
    assert_eq!(
        serde_json::to_value(publish_json(&started)).unwrap()["started_run_ids"],
        serde_json::json!(["run-0100", "run-0101"])
    );
    let only_started = PublishEventResponse {
        delivered: vec![],
        buffered: true,
        started_run_ids: vec!["run-0100".to_owned()],
        trigger_errors: vec![],
    };
    assert_eq!(
        publish_text(&only_started),
        "no step was waiting; buffered for the coordinator's event TTL\nstarted 1 run(s): run-0100\n"
    );
}

/// A run whose `notify_all` step emits runs of `notify` and whose `charge` step waits for a
/// concurrency slot held by five other attempts.
fn limited_run() -> Run {
    let step = |id: &str, handler: &str, status: StepStatus| StepRun {
        id: id.to_owned(),
        kind: "task".to_owned(),
        handler: handler.to_owned(),
        status: status as i32,
        max_attempts: 3,
        ..StepRun::default()
    };
    Run {
        id: "run-0005".to_owned(),
        workflow: "billing".to_owned(),
        version: 4,
        status: RunStatus::Running as i32,
        input_json: r#"{"customer": "acme"}"#.to_owned(),
        created_at: at(0),
        started_at: at(100),
        steps: vec![
            StepRun {
                attempt: 1,
                started_at: at(100),
                emitted: Some(EmitProgress {
                    total: 1000,
                    pending: 10,
                    running: 5,
                    succeeded: 980,
                    failed: 5,
                }),
                ..step("notify_all", "users.list", StepStatus::Running)
            },
            StepRun {
                slot: "billing/charge/acme".to_owned(),
                slot_holders: (1..=5).map(|i| format!("run-01{i:02}/charge#1")).collect(),
                depends_on: vec!["notify_all".to_owned()],
                ..step("charge", "payments.charge", StepStatus::Waiting)
            },
            StepRun {
                attempt: 1,
                started_at: at(200),
                slot: "billing/export/acme".to_owned(),
                slot_holders: vec!["run-0005/export#1".to_owned()],
                ..step("export", "ledger.export", StepStatus::Running)
            },
        ],
        ..Run::default()
    }
}

#[test]
fn run_view_shows_emitted_runs_and_slot_holders() {
    let run = limited_run();
    let text = run_text(&run, T0 + 10_000);
    assert!(
        text.contains("emitted 1000: 10 pending, 5 running, 980 ok, 5 failed"),
        "{text}"
    );
    assert!(
        text.contains(
            "slot billing/charge/acme held by run-0101/charge#1, run-0102/charge#1, run-0103/charge#1 +2 more"
        ),
        "{text}"
    );
    // A step that holds its slot (running) does not say so.
    assert!(!text.contains("billing/export/acme"), "{text}");
    assert!(!text.contains("Waiting:"), "{text}");
    insta::assert_snapshot!("run_limited", text);
    let value = serde_json::to_value(run_json(&run)).unwrap();
    assert_eq!(value["steps"][1]["slot_holders"].as_array().map(Vec::len), Some(5));
    assert_eq!(value["steps"][2]["slot"], "billing/export/acme");
    assert!(value["waiting_for"].is_null() && value["steps"][1]["emitted"].is_null());
    insta::assert_snapshot!(
        "run_limited_json",
        serde_json::to_string_pretty(&run_json(&run)).unwrap()
    );
}

#[test]
fn emitted_and_slot_texts() {
    let emitted = |total, pending, running, succeeded, failed| EmitProgress {
        total,
        pending,
        running,
        succeeded,
        failed,
    };
    assert_eq!(
        emitted_text(&emitted(1000, 10, 5, 980, 5)),
        "emitted 1000: 10 pending, 5 running, 980 ok, 5 failed"
    );
    assert_eq!(emitted_text(&emitted(3, 0, 0, 3, 0)), "emitted 3: 3 ok");
    assert_eq!(emitted_text(&emitted(0, 0, 0, 0, 0)), "emitted 0: 0 ok");
    let holders = |n: usize| (1..=n).map(|i| format!("r-{i}/s#1")).collect::<Vec<_>>();
    assert_eq!(slot_text("w/s/k", &[]), "slot w/s/k");
    assert_eq!(slot_text("w/s/k", &holders(1)), "slot w/s/k held by r-1/s#1");
    assert_eq!(
        slot_text("w/s/k", &holders(3)),
        "slot w/s/k held by r-1/s#1, r-2/s#1, r-3/s#1"
    );
    assert_eq!(
        slot_text("w/s/k", &holders(4)),
        "slot w/s/k held by r-1/s#1, r-2/s#1, r-3/s#1 +1 more"
    );
}

#[test]
fn a_pending_run_says_what_run_slot_it_waits_for() {
    let run = Run {
        id: "run-0006".to_owned(),
        workflow: "billing".to_owned(),
        version: 4,
        status: RunStatus::Pending as i32,
        waiting_for: "a run slot of billing for \"acme\" (3 of 3 in use)".to_owned(),
        created_at: at(0),
        ..Run::default()
    };
    let text = run_text(&run, T0 + 5_000);
    assert!(
        text.contains(
            "Status:           pending\nWaiting:          a run slot of billing for \"acme\" (3 of 3 in use)\n"
        ),
        "{text}"
    );
    assert_eq!(
        serde_json::to_value(run_json(&run)).unwrap()["waiting_for"],
        "a run slot of billing for \"acme\" (3 of 3 in use)"
    );
}

/// A workflow limited to 3 runs at once per customer, started by `order.created` events, whose
/// steps are rate limited, concurrency limited and emit runs of `notify`.
fn limited_workflow() -> Workflow {
    let step = |id: &str, handler: &str, after: &[&str]| StepDefinition {
        id: id.to_owned(),
        kind: "task".to_owned(),
        handler: handler.to_owned(),
        depends_on: after.iter().map(|s| (*s).to_owned()).collect(),
        timeout_ms: 30_000,
        ..StepDefinition::default()
    };
    Workflow {
        name: "billing".to_owned(),
        version: 4,
        max_concurrent_runs: 3,
        concurrency_key: "input.customer".to_owned(),
        on_event: "order.created".to_owned(),
        on_event_filter: "payload.total > 100".to_owned(),
        steps: vec![
            StepDefinition {
                rate_limit: Some(RateLimitDefinition {
                    limit: 10,
                    period_ms: 60_000,
                    key: "input.tenant".to_owned(),
                }),
                ..step("fetch", "orders.fetch", &[])
            },
            StepDefinition {
                emit: Some(EmitDefinition {
                    workflow: "notify".to_owned(),
                    items: "output.users".to_owned(),
                    key: "item.id".to_owned(),
                    wait: true,
                    max_in_flight: 50,
                }),
                ..step("notify_all", "users.list", &["fetch"])
            },
            StepDefinition {
                concurrency: Some(ConcurrencyDefinition {
                    limit: 3,
                    key: "input.customer".to_owned(),
                }),
                ..step("charge", "payments.charge", &["fetch"])
            },
            StepDefinition {
                concurrency: Some(ConcurrencyDefinition {
                    limit: 1,
                    key: String::new(),
                }),
                rate_limit: Some(RateLimitDefinition {
                    limit: 100,
                    period_ms: 1_000,
                    key: String::new(),
                }),
                emit: Some(EmitDefinition {
                    workflow: "archive".to_owned(),
                    items: "[output]".to_owned(),
                    ..EmitDefinition::default()
                }),
                ..step("export", "ledger.export", &["charge"])
            },
        ],
        registered_at: at(-3_600_000),
        versions: vec![3, 4],
        ..Workflow::default()
    }
}

#[test]
fn workflow_view_shows_limits_emits_and_the_starting_event() {
    let w = limited_workflow();
    let text = workflow_text(&w);
    assert!(
        text.contains("Run limit:     3 runs at once per input.customer\n"),
        "{text}"
    );
    assert!(
        text.contains("On event:      \"order.created\" if payload.total > 100\n"),
        "{text}"
    );
    assert!(
        text.contains("CONCURRENCY") && text.contains("RATE LIMIT") && text.contains("EMIT"),
        "{text}"
    );
    assert!(text.contains("3 per input.customer"), "{text}");
    assert!(text.contains("10/1m per input.tenant"), "{text}");
    assert!(
        text.contains("emits notify per output.users (50 at once, waits)"),
        "{text}"
    );
    let export = text.lines().find(|l| l.starts_with("export")).map(one_line);
    assert_eq!(
        export.as_deref(),
        Some("export ledger.export charge 1 100/1s emits archive per [output] 30s - - - -"),
        "{text}"
    );
    insta::assert_snapshot!("workflow_limited", text);
    insta::assert_snapshot!(
        "workflow_limited_json",
        serde_json::to_string_pretty(&workflow_json(&w)).unwrap()
    );

    // Only the columns and header lines that are needed.
    let mut w = limited_workflow();
    w.steps.retain(|s| s.id == "charge");
    w.on_event_filter.clear();
    w.concurrency_key.clear();
    let text = workflow_text(&w);
    assert!(
        text.contains("CONCURRENCY") && !text.contains("RATE LIMIT") && !text.contains("EMIT"),
        "{text}"
    );
    assert!(text.contains("Run limit:     3 runs at once\n"), "{text}");
    assert!(text.contains("On event:      \"order.created\"\n"), "{text}");
    let plain = workflow_text(&workflow());
    assert!(
        !plain.contains("Run limit:") && !plain.contains("On event:") && !plain.contains("CONCURRENCY"),
        "{plain}"
    );
    let value = serde_json::to_value(workflow_json(&workflow())).unwrap();
    assert!(value["max_concurrent_runs"].is_null() && value["on_event"].is_null());
    assert!(value["steps"][0]["concurrency"].is_null() && value["steps"][0]["emit"].is_null());
}

/// A schedule pinned to version 2, in Paris, buffering one overlapping tick.
fn nightly_schedule() -> Schedule {
    Schedule {
        id: "reports-nightly".to_owned(),
        workflow: "reports".to_owned(),
        workflow_version: 2,
        cron: "0 2 * * *".to_owned(),
        timezone: "Europe/Paris".to_owned(),
        input_json: r#"{"format": "pdf"}"#.to_owned(),
        overlap: "buffer_one".to_owned(),
        catchup_window_ms: 7_200_000,
        paused: false,
        source: "api".to_owned(),
        created_at: at(-86_400_000),
        next_tick_at: at(46_800_000),
        last_run_id: "sched-reports-nightly-1740790800000".to_owned(),
    }
}

/// A paused schedule declared in a definition, with every default.
fn paused_schedule() -> Schedule {
    Schedule {
        id: "cleanup".to_owned(),
        workflow: "cleanup".to_owned(),
        cron: "*/15 * * * *".to_owned(),
        paused: true,
        source: "definition".to_owned(),
        created_at: at(-3_600_000),
        ..Schedule::default()
    }
}

fn tick(outcome: &str, offset_ms: i64, run_id: &str, reason: &str) -> ScheduleTick {
    ScheduleTick {
        schedule_id: "reports-nightly".to_owned(),
        tick_at: at(offset_ms),
        outcome: outcome.to_owned(),
        run_id: run_id.to_owned(),
        reason: reason.to_owned(),
        recorded_at: at(offset_ms + 15),
    }
}

#[test]
fn schedules() {
    let schedules = [nightly_schedule(), paused_schedule()];
    let list = schedule_list_text(&schedules);
    assert!(list.starts_with("ID   "), "{list}");
    insta::assert_snapshot!("schedule_list", list);
    assert_eq!(schedule_list_text(&[]), "no schedules found\n");

    insta::assert_snapshot!("schedule_get", schedule_text(&nightly_schedule()));
    let defaults = schedule_text(&paused_schedule());
    for line in [
        "Workflow:         cleanup (latest version)\n",
        "Timezone:         UTC\n",
        "Overlap:          skip\n",
        "Catch-up window:  the coordinator's default\n",
        "State:            paused\n",
        "Next tick:        -\n",
        "Last run:         -\n",
        "Input:            {}\n",
    ] {
        assert!(defaults.contains(line), "{line:?} in\n{defaults}");
    }

    insta::assert_snapshot!(
        "schedule_get_json",
        serde_json::to_string_pretty(&schedule_json(&nightly_schedule())).unwrap()
    );
    let value = serde_json::to_value(schedule_json(&paused_schedule())).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "id": "cleanup",
            "workflow": "cleanup",
            "workflow_version": null,
            "cron": "*/15 * * * *",
            "timezone": "UTC",
            "input": {},
            "overlap": "skip",
            "catchup_window_ms": null,
            "paused": true,
            "source": "definition",
            "created_at": "2025-03-01T11:00:00.000Z",
            "next_tick_at": null,
            "last_run_id": null,
        })
    );
    assert_eq!(
        serde_json::to_string(&schedule_deleted_json("cleanup")).unwrap(),
        r#"{"id":"cleanup","deleted":true}"#
    );
}

#[test]
fn schedule_ticks() {
    let ticks = [
        tick("triggered", 60_000, "sched-reports-nightly-t-1740830460000", ""),
        tick("buffered", 0, "", "the previous run is still running"),
        tick(
            "skipped",
            -60_000,
            "",
            "the previous run sched-reports-nightly-1 is still running",
        ),
        tick("fired", -120_000, "sched-reports-nightly-1", ""),
    ];
    insta::assert_snapshot!("schedule_history", tick_list_text(&ticks));
    assert_eq!(tick_list_text(&[]), "no ticks recorded\n");

    let triggered = &ticks[0];
    assert_eq!(
        tick_text(triggered),
        "Schedule:  reports-nightly\n\
         Tick:      2025-03-01T12:01:00Z\n\
         Outcome:   triggered\n\
         Run:       sched-reports-nightly-t-1740830460000\n\
         Reason:    -\n\
         Recorded:  2025-03-01T12:01:00Z\n"
    );
    assert_eq!(
        serde_json::to_value(tick_json(triggered)).unwrap(),
        serde_json::json!({
            "schedule_id": "reports-nightly",
            "tick_at": "2025-03-01T12:01:00.000Z",
            "outcome": "triggered",
            "run_id": "sched-reports-nightly-t-1740830460000",
            "reason": null,
            "recorded_at": "2025-03-01T12:01:00.015Z",
        })
    );
    let skipped = serde_json::to_value(tick_json(&ticks[2])).unwrap();
    assert!(skipped["run_id"].is_null(), "{skipped}");
    assert_eq!(
        skipped["reason"],
        "the previous run sched-reports-nightly-1 is still running"
    );
}

#[test]
fn human_tasks() {
    let tasks = [human_task("open"), completed_task()];
    insta::assert_snapshot!("task_list", task_list_text(&tasks));
    let open_only = task_list_text(&[human_task("open")]);
    assert!(!open_only.contains("COMPLETED BY"), "{open_only}");
    assert_eq!(task_list_text(&[]), "no human tasks found\n");

    insta::assert_snapshot!("task_completed", task_text(&completed_task()));
    insta::assert_snapshot!(
        "task_completed_json",
        serde_json::to_string_pretty(&task_json(&completed_task())).unwrap()
    );
    let open = serde_json::to_value(task_json(&human_task("open"))).unwrap();
    assert!(open["data"].is_null() && open["completed_by"].is_null() && open["completed_at"].is_null());
}

#[test]
fn a_retried_run_counts_attempts_from_its_last_retry_and_a_sleep_shows_its_wake_time() {
    let run = Run {
        id: "r-1".to_owned(),
        workflow: "flaky".to_owned(),
        version: 1,
        status: RunStatus::Running as i32,
        steps: vec![
            StepRun {
                id: "analyze".to_owned(),
                handler: "fail".to_owned(),
                status: StepStatus::Succeeded as i32,
                attempt: 7,
                attempt_base: 5,
                max_attempts: 5,
                attempts: (1..=7)
                    .map(|n| attempt(n, if n == 7 { "succeeded" } else { "failed" }, "", "w", 0, 10))
                    .collect(),
                ..StepRun::default()
            },
            StepRun {
                id: "nap".to_owned(),
                kind: "sleep".to_owned(),
                status: StepStatus::Waiting as i32,
                waiting_for: "until 2025-03-01T13:00:00.000Z".to_owned(),
                wake_at: at(3_600_000),
                ..StepRun::default()
            },
        ],
        ..Run::default()
    };
    let text = run_text(&run, T0);
    assert!(text.contains("2/5"), "{text}");
    assert!(!text.contains("7/5"), "{text}");
    assert!(
        text.contains("Attempts of step analyze (2 of at most 5 since the run was retried; 5 before)"),
        "{text}"
    );
    assert!(text.contains("until 2025-03-01T13:00:00Z"), "{text}");
    assert!(!text.contains("waiting for until"), "{text}");
}

#[test]
fn a_step_retried_past_its_kept_history_says_how_many_earlier_attempts_are_not_shown() {
    let run = Run {
        id: "r-1".to_owned(),
        workflow: "stubborn".to_owned(),
        version: 1,
        status: RunStatus::Running as i32,
        steps: vec![StepRun {
            id: "call".to_owned(),
            handler: "fail".to_owned(),
            status: StepStatus::Retrying as i32,
            attempt: 23,
            max_attempts: 100,
            earlier_attempts: 2,
            attempts: (3..=22)
                .map(|n| attempt(n, "failed", "boom… (cut)", "w", 0, 10))
                .collect(),
            ..StepRun::default()
        }],
        ..Run::default()
    };
    insta::assert_snapshot!("run_earlier_attempts", run_text(&run, T0));
    let json = serde_json::to_value(run_json(&run)).unwrap();
    assert_eq!(json["steps"][0]["earlier_attempts"], 2);
    assert_eq!(json["steps"][0]["attempts"].as_array().map(Vec::len), Some(20));
}

#[test]
fn publish_answers_name_the_triggers_whose_filter_failed() {
    let resp = PublishEventResponse {
        buffered: true,
        trigger_errors: vec![baton_shared::proto::TriggerError {
            workflow: "picky".to_owned(),
            version: 2,
            error: "on.filter: no such key: total".to_owned(),
        }],
        ..PublishEventResponse::default()
    };
    let text = publish_text(&resp);
    assert!(
        text.contains("no run of picky@2: on.filter: no such key: total"),
        "{text}"
    );
    let json = serde_json::to_value(publish_json(&resp)).unwrap();
    assert_eq!(json["trigger_errors"][0], "picky@2: on.filter: no such key: total");
}

/// A run whose `big` output was left out of the answer (over its 3 MiB budget) and whose `small`
/// output is whole.
fn run_with_an_omitted_output() -> Run {
    Run {
        id: "r-2".to_owned(),
        workflow: "reports".to_owned(),
        version: 1,
        status: RunStatus::Succeeded as i32,
        started_at: at(0),
        finished_at: at(2_000),
        steps: vec![
            StepRun {
                id: "big".to_owned(),
                handler: "render".to_owned(),
                status: StepStatus::Succeeded as i32,
                attempt: 1,
                max_attempts: 3,
                started_at: at(0),
                finished_at: at(1_500),
                worker: "w".to_owned(),
                output_omitted_bytes: 5_234_567,
                ..StepRun::default()
            },
            StepRun {
                id: "small".to_owned(),
                handler: "count".to_owned(),
                status: StepStatus::Succeeded as i32,
                attempt: 1,
                max_attempts: 3,
                started_at: at(1_500),
                finished_at: at(2_000),
                output_json: r#"{"pages": 12}"#.to_owned(),
                ..StepRun::default()
            },
        ],
        ..Run::default()
    }
}

#[test]
fn a_step_output_left_out_of_the_answer_is_named_with_its_size_and_the_command_that_shows_it() {
    let run = run_with_an_omitted_output();
    let text = run_text(&run, T0);
    assert!(
        text.contains("step big output: omitted (5.2 MB): baton run get r-2 --step big\n"),
        "{text}"
    );
    assert!(!text.contains("step small output"), "{text}");
    insta::assert_snapshot!("run_omitted_output", text);
    let json = serde_json::to_value(run_json(&run)).unwrap();
    assert_eq!(json["steps"][0]["output"], Value::Null);
    assert_eq!(json["steps"][0]["output_omitted_bytes"], 5_234_567);
    assert_eq!(json["steps"][1]["output_omitted_bytes"], 0);
}

#[test]
fn one_step_of_a_run_shows_its_whole_output() {
    let mut run = run_with_an_omitted_output();
    run.steps.retain(|s| s.id == "small");
    insta::assert_snapshot!("run_one_step", step_text(&run, T0));
}

#[test]
fn sizes_read_in_si_units_cut_to_one_decimal() {
    assert_eq!(size_text(0), "0 bytes");
    assert_eq!(size_text(999), "999 bytes");
    assert_eq!(size_text(12_345), "12.3 kB");
    assert_eq!(size_text(5_299_999), "5.2 MB");
    assert_eq!(size_text(u64::MAX), "18446744073.7 GB");
}

#[test]
fn purging_nothing_under_one_key_names_the_keys_that_hold_events() {
    let pair = |key: &str, count: u32| baton_shared::proto::BufferedEvents {
        name: "payment".into(),
        key: key.into(),
        count,
        ..Default::default()
    };
    assert_eq!(
        purged_text("payment", "", false, 0, &[pair("order-1", 2), pair("order-2", 1)]),
        "purged 0 buffered event(s)\n\
         no event of payment without a key is buffered; events of payment are buffered under key \"order-1\" (2), \"order-2\" (1)\n\
         purge one key with --key KEY, or every key of payment with --all-keys\n"
    );
    assert_eq!(
        purged_text("payment", "k", false, 0, &[]),
        "purged 0 buffered event(s)\nno event of payment with key \"k\" is buffered, nor under any other key (baton event list)\n"
    );
    assert_eq!(
        purged_text("payment", "", false, 3, &[]),
        "purged 3 buffered event(s)\n"
    );
    assert_eq!(purged_text("payment", "", true, 0, &[]), "purged 0 buffered event(s)\n");
    let many: Vec<_> = (0..12).map(|i| pair(&format!("k{i}"), 1)).collect();
    let text = purged_text("payment", "", false, 0, &many);
    assert!(
        text.contains("\"k9\" (1), and 2 more (baton event list --name payment)"),
        "{text}"
    );
    assert_eq!(
        purged_json(0, &[pair("order-1", 2)]),
        serde_json::json!({"purged": 0, "buffered_keys": [{"key": "order-1", "count": 2}]})
    );
    assert_eq!(purged_json(1, &[]), serde_json::json!({"purged": 1}));
}

#[test]
fn log_lines_read_time_level_step_attempt_and_message() {
    let line = |level: &str, message: &str| baton_shared::proto::LogLine {
        time: at(2_123),
        level: level.to_owned(),
        message: message.to_owned(),
        step_id: "charge".to_owned(),
        attempt: 2,
    };
    assert_eq!(
        log_line(&line("info", "charging 12 cents")),
        "2025-03-01T12:00:02.123Z INFO  charge#2  charging 12 cents"
    );
    assert_eq!(
        log_line(&line("error", "failed:\n  at pay()\n")),
        format!(
            "2025-03-01T12:00:02.123Z ERROR charge#2  failed:\n{}  at pay()",
            " ".repeat(41)
        )
    );
}

#[test]
fn attempts_show_their_input_cut_and_their_error_type() {
    let mut run = failed_run();
    let step = run
        .steps
        .iter_mut()
        .find(|s| s.attempts.len() > 1)
        .expect("a retried step");
    step.attempts[0].input_json = format!(r#"{{"card": "{}"}}"#, "4".repeat(60));
    step.attempts[0].error_type = "CardDeclined".to_owned();
    step.attempts[1].input_omitted_bytes = 5_200_000;
    let text = run_text(&run, T0 + 10_000);
    assert!(text.contains("INPUT"), "{text}");
    assert!(text.contains(r#"{"card":"444444444444444444444444444444…"#), "{text}");
    assert!(text.contains("omitted (5.2 MB)"), "{text}");
    assert!(text.contains("CardDeclined: "), "{text}");
}
