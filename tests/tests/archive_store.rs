//! The PostgreSQL archive of finished runs against the real server: what is written reads back
//! equal, writing again changes nothing, a run PostgreSQL refuses does not take the batch down
//! with it, and retention drops whole days. Each test works in a schema of its own, dropped at
//! the end.

use baton_coordinator::archive::{Archive, ArchivedRun};
use baton_shared::proto::{self, RunStatus, StepStatus};
use std::time::Duration;

use chrono::{DateTime, Utc};

use baton_tests::pg::Schema;

fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

/// A finished run of two steps (the second failed twice, then succeeded), with history and a
/// human task, finished at `finished`.
fn run(namespace: &str, finished: DateTime<Utc>) -> ArchivedRun {
    let id = uuid::Uuid::new_v4().to_string();
    let created = finished - chrono::Duration::seconds(30);
    let attempt = |n: u32, outcome: &str, error_type: &str| proto::Attempt {
        number: n,
        outcome: outcome.into(),
        error: if error_type.is_empty() {
            String::new()
        } else {
            format!("{error_type}: boom {n}")
        },
        worker: "w-1".into(),
        started_at: ts(created),
        finished_at: ts(created + chrono::Duration::seconds(1)),
        input_json: r#"{"n":1}"#.into(),
        error_type: error_type.into(),
        error_details: if error_type.is_empty() {
            String::new()
        } else {
            "trace\nback".into()
        },
        ..Default::default()
    };
    ArchivedRun {
        namespace: namespace.into(),
        run: proto::Run {
            id: id.clone(),
            workflow: "orders".into(),
            version: 3,
            status: RunStatus::Succeeded as i32,
            input_json: r#"{"customer":{"id":"c-42","tier":2},"items":[1,2]}"#.into(),
            output_json: r#"{"ship":{"ok":true}}"#.into(),
            idempotency_key: format!("key-{id}"),
            created_at: ts(created),
            started_at: ts(created),
            finished_at: ts(finished),
            steps: vec![
                proto::StepRun {
                    id: "charge".into(),
                    handler: "charge".into(),
                    status: StepStatus::Succeeded as i32,
                    attempt: 1,
                    max_attempts: 3,
                    output_json: r#"{"paid":12.5}"#.into(),
                    kind: "task".into(),
                    attempts: vec![attempt(1, "succeeded", "")],
                    ..Default::default()
                },
                proto::StepRun {
                    id: "ship".into(),
                    handler: "ship".into(),
                    status: StepStatus::Succeeded as i32,
                    attempt: 3,
                    max_attempts: 3,
                    output_json: r#"{"ok":true}"#.into(),
                    error: "Timeout: boom 2".into(),
                    kind: "task".into(),
                    depends_on: vec!["charge".into()],
                    attempts: vec![
                        attempt(1, "failed", "CarrierDown"),
                        attempt(2, "failed", "Timeout"),
                        attempt(3, "succeeded", ""),
                    ],
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
        error_types: vec!["CarrierDown".into(), "Timeout".into()],
        history: vec![
            proto::RunEvent {
                run_id: id.clone(),
                sequence: "1700000000000-0".into(),
                time: ts(created),
                kind: "run".into(),
                status: "running".into(),
                ..Default::default()
            },
            proto::RunEvent {
                run_id: id.clone(),
                sequence: "1700000000001-0".into(),
                time: ts(finished),
                kind: "custom".into(),
                step_id: "ship".into(),
                attempt: 3,
                payload_json: r#"{ "progress": 1 }"#.into(),
                ..Default::default()
            },
        ],
        human_tasks: vec![proto::HumanTask {
            run_id: id,
            step_id: "approve".into(),
            workflow: "orders".into(),
            workflow_version: 3,
            title: "Approve".into(),
            assignees: vec!["ann".into(), "bob".into()],
            status: "completed".into(),
            created_at: ts(created),
            completed_by: "ann".into(),
            completed_at: ts(finished),
            data_json: r#"{"approved":true}"#.into(),
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn a_written_batch_reads_back_equal_run_by_run() {
    let schema = Schema::new();
    let archive = Archive::connect(&schema.config()).await.expect("connect");
    let now = Utc::now();
    let batch = vec![run("ns-a", now), run("ns-a", now), run("ns-b", now)];
    let report = archive.write(&batch).await.expect("write");
    assert_eq!((report.written, report.already_archived), (3, 0));
    assert!(report.parked.is_empty(), "{:?}", report.parked);
    for r in &batch {
        let back = archive.get_run(&r.namespace, &r.run.id).await.expect("get_run");
        assert_eq!(back.as_ref(), Some(r));
    }
    // Another namespace does not see the run.
    assert_eq!(archive.get_run("ns-b", &batch[0].run.id).await.expect("get_run"), None);
    // Steps, attempts, history and tasks are rows of their own, for search and a DBA.
    assert_eq!(schema.count("SELECT count(*) FROM steps").await, 6);
    assert_eq!(schema.count("SELECT count(*) FROM attempts").await, 12);
    assert_eq!(schema.count("SELECT count(*) FROM run_events").await, 6);
    assert_eq!(
        schema
            .count("SELECT count(*) FROM runs WHERE error_types @> ARRAY['Timeout'] AND input @> '{\"customer\":{\"id\":\"c-42\"}}'")
            .await,
        3
    );
    assert_eq!(
        schema
            .count("SELECT count(*) FROM human_tasks WHERE assignees @> ARRAY['bob'] AND status = 'completed'")
            .await,
        3
    );
    // The human task list reads archived tasks, filtered.
    let tasks = archive
        .list_human_tasks("ns-a", "bob", "orders", "completed", 10)
        .await
        .expect("tasks");
    assert_eq!(tasks.len(), 2);
    assert!(
        tasks
            .iter()
            .all(|t| t.completed_by == "ann" && t.data_json == r#"{"approved":true}"#)
    );
    assert!(
        archive
            .list_human_tasks("ns-a", "carol", "", "", 10)
            .await
            .expect("tasks")
            .is_empty()
    );
    assert!(
        archive
            .list_human_tasks("ns-a", "", "", "open", 10)
            .await
            .expect("tasks")
            .is_empty()
    );
    // Connecting again (a second coordinator, a restart) finds the migrations applied.
    let again = Archive::connect(&schema.config()).await.expect("connect again");
    again.ping().await.expect("ping");
    assert_eq!(
        again.get_run("ns-a", &batch[0].run.id).await.expect("get_run").as_ref(),
        Some(&batch[0])
    );
}

#[tokio::test]
async fn writing_the_same_batch_twice_leaves_one_copy() {
    let schema = Schema::new();
    let archive = Archive::connect(&schema.config()).await.expect("connect");
    let now = Utc::now();
    let batch = vec![run("ns", now), run("ns", now)];
    let first = archive.write(&batch).await.expect("write");
    assert_eq!((first.written, first.already_archived), (2, 0));
    // A sweeper that died after the commit and before the tombstone writes the batch again,
    // and a batch may even hold the same run twice.
    let mut twice = batch.clone();
    twice.push(batch[0].clone());
    let second = archive.write(&twice).await.expect("write again");
    assert_eq!((second.written, second.already_archived), (0, 3));
    assert_eq!(schema.count("SELECT count(*) FROM runs").await, 2);
    assert_eq!(schema.count("SELECT count(*) FROM steps").await, 4);
    assert_eq!(schema.count("SELECT count(*) FROM attempts").await, 8);
    assert_eq!(schema.count("SELECT count(*) FROM run_events").await, 4);
    assert_eq!(schema.count("SELECT count(*) FROM human_tasks").await, 2);
    assert_eq!(
        archive.get_run("ns", &batch[1].run.id).await.expect("get_run").as_ref(),
        Some(&batch[1])
    );
    // Deleted (a rerun brought it back to Redis), it is gone with its rows, and only it.
    assert!(archive.delete_run("ns", &batch[0].run.id).await.expect("delete"));
    assert!(!archive.delete_run("ns", &batch[0].run.id).await.expect("delete again"));
    assert_eq!(archive.get_run("ns", &batch[0].run.id).await.expect("get_run"), None);
    assert_eq!(schema.count("SELECT count(*) FROM runs").await, 1);
    assert_eq!(schema.count("SELECT count(*) FROM attempts").await, 4);
}

#[tokio::test]
async fn a_run_postgresql_refuses_is_parked_and_the_rest_of_its_batch_is_written() {
    let schema = Schema::new();
    let archive = Archive::connect(&schema.config()).await.expect("connect");
    let now = Utc::now();
    // NUL characters, which PostgreSQL's text and jsonb refuse: cleaned in the searchable
    // columns, kept exactly in the stored run.
    let mut nul = run("ns", now);
    nul.run.error = "bad\0byte".into();
    nul.run.input_json = r#"{"k":"a\u0000b"}"#.into();
    nul.run.steps[1].attempts[0].error_details = "x\0y".into();
    // No finish time: no partition can hold it.
    let mut unfinished = run("ns", now);
    unfinished.run.finished_at = None;
    // An idempotency key far over the index's row limit: PostgreSQL refuses the insert itself,
    // and the writer finds which run it was.
    let mut huge = run("ns", now);
    huge.run.idempotency_key = (0..400).map(|_| uuid::Uuid::new_v4().simple().to_string()).collect();
    let good = run("ns", now);
    let batch = vec![nul.clone(), unfinished.clone(), huge.clone(), good.clone()];
    let report = archive.write(&batch).await.expect("write");
    assert_eq!(report.written, 2, "{report:?}");
    let mut parked: Vec<(String, String)> = report
        .parked
        .iter()
        .map(|p| (p.run_id.clone(), p.reason.clone()))
        .collect();
    parked.sort();
    assert_eq!(parked.len(), 2, "{parked:?}");
    let reason_of = |id: &str| {
        parked
            .iter()
            .find(|(r, _)| r == id)
            .map(|(_, reason)| reason.clone())
            .unwrap_or_default()
    };
    assert_eq!(reason_of(&unfinished.run.id), "run.finished_at: not set");
    assert!(
        reason_of(&huge.run.id).contains("refused by PostgreSQL") && reason_of(&huge.run.id).contains("index row"),
        "{parked:?}"
    );
    // Nothing is lost: every run reads back as it was written, the parked ones too.
    for r in [&nul, &unfinished, &huge, &good] {
        assert_eq!(
            archive.get_run("ns", &r.run.id).await.expect("get_run").as_ref(),
            Some(r),
            "{}",
            r.run.id
        );
    }
    assert_eq!(
        schema
            .count(&format!(
                "SELECT count(*) FROM runs WHERE run_id = '{}' AND error = 'bad\u{FFFD}byte' AND input @> '{{\"k\":\"a\u{FFFD}b\"}}'",
                nul.run.id
            ))
            .await,
        1
    );
    assert_eq!(schema.count("SELECT count(*) FROM parked_runs").await, 2);
    // Writing the batch again parks nothing twice and writes nothing twice.
    let again = archive.write(&batch).await.expect("write again");
    assert_eq!((again.written, again.already_archived), (0, 2), "{again:?}");
    assert_eq!(schema.count("SELECT count(*) FROM parked_runs").await, 2);
    assert_eq!(schema.count("SELECT count(*) FROM runs").await, 2);
}

#[tokio::test]
async fn retention_drops_the_days_past_it_and_creates_the_days_ahead() {
    let schema = Schema::new();
    let archive = Archive::connect(&schema.config()).await.expect("connect");
    let now = Utc::now();
    let old_day = now - chrono::Duration::days(40);
    // Partitions for a day 40 days ago (as a coordinator running then made them).
    let made = archive.ensure_partitions(old_day).await.expect("partitions then");
    assert!(made.created.iter().any(|p| p.starts_with("runs_p")), "{made:?}");
    let old = run("ns", old_day);
    let ancient = run("ns", now - chrono::Duration::days(100)); // no partition: the default one
    let fresh = run("ns", now);
    let report = archive
        .write(&[old.clone(), ancient.clone(), fresh.clone()])
        .await
        .expect("write");
    assert_eq!(report.written, 3);
    assert_eq!(schema.count("SELECT count(*) FROM runs_default").await, 1);

    let done = archive.maintain(now).await.expect("maintain");
    let day = old_day.format("%Y%m%d").to_string();
    for table in ["runs", "steps", "attempts", "run_events", "human_tasks"] {
        assert!(
            done.dropped.contains(&format!("{table}_p{day}")),
            "{table}_p{day} not dropped: {done:?}"
        );
    }
    assert_eq!(done.deleted_default_rows, 1 + 2 + 4 + 2 + 1, "{done:?}");
    assert_eq!(archive.get_run("ns", &old.run.id).await.expect("get_run"), None);
    assert_eq!(archive.get_run("ns", &ancient.run.id).await.expect("get_run"), None);
    assert_eq!(
        archive.get_run("ns", &fresh.run.id).await.expect("get_run").as_ref(),
        Some(&fresh)
    );
    // Today's and the next days' partitions exist; a second pass changes nothing.
    let ahead = (now + chrono::Duration::days(3)).format("%Y%m%d").to_string();
    assert_eq!(
        schema
            .count(&format!(
                "SELECT count(*) FROM pg_class WHERE relname = 'runs_p{ahead}' AND relnamespace = '{}'::regnamespace",
                schema.0
            ))
            .await,
        1
    );
    let second = archive.maintain(now).await.expect("maintain again");
    assert!(second.created.is_empty() && second.dropped.is_empty(), "{second:?}");
}

#[tokio::test]
async fn the_maintenance_loop_survives_a_failing_pass_and_goes_on() {
    let schema = Schema::new();
    let archive = std::sync::Arc::new(Archive::connect(&schema.config()).await.expect("connect"));
    let ahead = format!("runs_p{}", (Utc::now() + chrono::Duration::days(3)).format("%Y%m%d"));
    let exists = format!(
        "SELECT count(*) FROM pg_class WHERE relname = '{ahead}' AND relnamespace = '{}'::regnamespace",
        schema.0
    );
    assert_eq!(schema.count(&exists).await, 1);
    // Break every pass: without its default partition, the retention step fails (before the
    // partitions ahead are made), and a partition ahead is missing.
    schema.execute("DROP TABLE runs_default").await;
    schema.execute(&format!("DROP TABLE {ahead}")).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let looping = tokio::spawn(baton_coordinator::archive::partitions::run_every(
        archive.clone(),
        Duration::from_millis(100),
        stop_rx,
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!looping.is_finished(), "the loop stopped on a failed pass");
    assert_eq!(schema.count(&exists).await, 0, "a failing pass made no partition");
    // Mended, the next pass makes the missing partition.
    schema
        .execute("CREATE TABLE runs_default PARTITION OF runs DEFAULT")
        .await;
    let start = std::time::Instant::now();
    while schema.count(&exists).await == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the loop did not go on");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(true);
    tokio::time::timeout(Duration::from_secs(5), looping)
        .await
        .expect("the loop stops when asked")
        .expect("no panic");
}
