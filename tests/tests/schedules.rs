//! Cron schedules end to end: ticks and the ledger, overlap policies, catch-up after downtime, two
//! coordinators, schedules declared in a definition, and the schedule operations.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use baton_shared::proto::{
    CreateScheduleRequest, ListRunsRequest, ListScheduleTicksRequest, ListSchedulesRequest, RegisterWorkflowRequest,
    Run, ScheduleRef, ScheduleTick,
};
use baton_tests::{Cluster, status};
use serde_json::json;
use tonic::Code;

const EVERY_SECOND: &str = "* * * * * *";

async fn create(cluster: &Cluster, id: &str, workflow: &str, overlap: &str, input: serde_json::Value, window_ms: u64) {
    cluster
        .schedules()
        .await
        .create_schedule(CreateScheduleRequest {
            id: id.into(),
            workflow: workflow.into(),
            workflow_version: 0,
            cron: EVERY_SECOND.into(),
            timezone: "Europe/Paris".into(),
            input_json: input.to_string(),
            overlap: overlap.into(),
            catchup_window_ms: window_ms,
        })
        .await
        .unwrap();
}

async fn ticks(cluster: &Cluster, id: &str) -> Vec<ScheduleTick> {
    let mut t = cluster
        .schedules()
        .await
        .list_schedule_ticks(ListScheduleTicksRequest {
            id: id.into(),
            limit: 1000,
        })
        .await
        .unwrap()
        .into_inner()
        .ticks;
    t.reverse();
    t
}

fn outcomes(ticks: &[ScheduleTick]) -> Vec<&str> {
    ticks.iter().map(|t| t.outcome.as_str()).collect()
}

async fn runs_of(cluster: &Cluster, workflow: &str) -> Vec<Run> {
    cluster
        .runs()
        .await
        .list_runs(ListRunsRequest {
            workflow: workflow.into(),
            status: 0,
            limit: 1000,
            page_token: String::new(),
            parent_run_id: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .runs
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_fires_each_tick_once_and_records_it_in_its_ledger() {
    let mut cluster = Cluster::start("schedule", &[]).await;
    cluster
        .register("name: tick\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster.spawn_worker("w1", 4);
    create(&cluster, "tick-every-second", "tick", "", json!({"hello": "cron"}), 0).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let ledger = ticks(&cluster, "tick-every-second").await;
    assert!(ledger.len() >= 3, "{ledger:#?}");
    assert!(ledger.iter().all(|t| t.outcome == "fired"), "{ledger:#?}");
    let times: Vec<i64> = ledger.iter().map(|t| baton_tests::ms(&t.tick_at)).collect();
    for w in times.windows(2) {
        assert_eq!(w[1] - w[0], 1000, "one tick per second, none missed: {times:?}");
    }
    for t in &ledger {
        let run = cluster.wait_run(&t.run_id, Duration::from_secs(30)).await;
        assert_eq!(status(&run), "succeeded");
        assert_eq!(run.input_json, r#"{"hello":"cron"}"#);
    }
    let ids: HashSet<&str> = ledger.iter().map(|t| t.run_id.as_str()).collect();
    assert_eq!(ids.len(), ledger.len(), "a run per tick");

    // Trigger, pause, resume, delete.
    let mut schedules = cluster.schedules().await;
    let id = || ScheduleRef {
        id: "tick-every-second".into(),
    };
    let triggered = schedules.trigger_schedule(id()).await.unwrap().into_inner();
    assert_eq!(triggered.outcome, "triggered");
    let run = cluster.wait_run(&triggered.run_id, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded");
    let paused = schedules.pause_schedule(id()).await.unwrap().into_inner();
    assert!(paused.paused && paused.next_tick_at.is_none());
    let before = ticks(&cluster, "tick-every-second").await.len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        ticks(&cluster, "tick-every-second").await.len(),
        before,
        "a paused schedule records nothing"
    );
    let resumed = schedules.resume_schedule(id()).await.unwrap().into_inner();
    assert!(!resumed.paused && resumed.next_tick_at.is_some());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = ticks(&cluster, "tick-every-second").await;
    assert!(after.len() >= before + 2, "resumed: {after:#?}");
    assert!(
        after[before..].iter().all(|t| t.outcome == "fired"),
        "ticks missed while paused are not caught up: {after:#?}"
    );
    schedules.delete_schedule(id()).await.unwrap();
    let err = schedules.get_schedule(id()).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_overlap_policy_does_what_it_says_while_the_previous_run_goes() {
    let mut cluster = Cluster::start("overlap", &[]).await;
    for policy in ["skip", "buffer_one", "allow_all", "cancel_other"] {
        cluster
            .register(&format!(
                "name: slow-{policy}\nversion: 1\nsteps:\n  - {{id: a, handler: slow, timeout: 1m}}\n"
            ))
            .await;
    }
    cluster.spawn_worker("w1", 32);
    for policy in ["skip", "buffer_one", "allow_all", "cancel_other"] {
        create(
            &cluster,
            policy,
            &format!("slow-{policy}"),
            policy,
            json!({"ms": 2600}),
            0,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(5500)).await;
    for policy in ["skip", "buffer_one", "allow_all", "cancel_other"] {
        cluster
            .schedules()
            .await
            .pause_schedule(ScheduleRef { id: policy.into() })
            .await
            .unwrap();
    }

    // skip: the first tick fires, the next ones are skipped while it runs, then one fires again.
    let skip = ticks(&cluster, "skip").await;
    assert_eq!(skip[0].outcome, "fired", "{skip:#?}");
    assert_eq!(skip[1].outcome, "skipped");
    assert!(skip[1].reason.contains("still running"), "{}", skip[1].reason);
    assert!(
        skip.iter().filter(|t| t.outcome == "fired").count() >= 2,
        "{:?}",
        outcomes(&skip)
    );
    assert!(
        runs_of(&cluster, "slow-skip")
            .await
            .iter()
            .filter(|r| status(r) == "running")
            .count()
            <= 1,
        "never two runs at once"
    );

    // buffer_one: ticks during the run are buffered (a later one replacing an earlier one), and the
    // last buffered tick fires when the run ends.
    let buffered = ticks(&cluster, "buffer_one").await;
    assert_eq!(buffered[0].outcome, "fired", "{buffered:#?}");
    assert!(
        buffered
            .iter()
            .any(|t| t.outcome == "skipped" && t.reason.contains("replaced")),
        "{buffered:#?}"
    );
    let fired_later = buffered[1..].iter().filter(|t| t.outcome == "fired").count();
    assert!(fired_later >= 1, "a buffered tick fired after the run: {buffered:#?}");

    // allow_all: every tick fires, runs overlap.
    let all = ticks(&cluster, "allow_all").await;
    assert!(all.iter().all(|t| t.outcome == "fired"), "{:?}", outcomes(&all));
    assert!(all.len() >= 5);

    // cancel_other: every tick fires and cancels the run before it.
    let cancel = ticks(&cluster, "cancel_other").await;
    assert!(cancel.iter().all(|t| t.outcome == "fired"), "{:?}", outcomes(&cancel));
    assert!(
        cancel[1].reason.contains("cancelled the previous run"),
        "{}",
        cancel[1].reason
    );
    let first = cluster.wait_run(&cancel[0].run_id, Duration::from_secs(10)).await;
    assert_eq!(status(&first), "cancelled");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_downtime_missed_ticks_inside_the_window_fire_and_older_ones_are_skipped() {
    let mut cluster = Cluster::start("catch-up", &[]).await;
    cluster
        .register("name: catch\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster.spawn_worker("w1", 8);
    create(&cluster, "catch", "catch", "allow_all", json!({}), 2500).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.stop_coordinator(true);
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(7)).await;
    cluster.start_coordinator().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ledger = ticks(&cluster, "catch").await;
    let missed: Vec<&ScheduleTick> = ledger.iter().filter(|t| t.reason.contains("missed")).collect();
    assert!(missed.len() >= 3, "old ticks recorded as skipped: {ledger:#?}");
    assert!(missed.iter().all(|t| t.outcome == "skipped"));
    assert!(missed[0].reason.contains("catch-up window"), "{}", missed[0].reason);
    // The ticks of the last 2.5 s of the outage fired when the coordinator came back.
    let restarted = baton_tests::ms(&ledger.last().unwrap().recorded_at) - down.elapsed().as_millis() as i64;
    let caught_up = ledger
        .iter()
        .filter(|t| t.outcome == "fired" && baton_tests::ms(&t.recorded_at) > restarted)
        .count();
    assert!(caught_up >= 2, "missed ticks inside the window fired: {ledger:#?}");
    // Every tick of the outage is in the ledger: none silently lost.
    let times: Vec<i64> = ledger.iter().map(|t| baton_tests::ms(&t.tick_at)).collect();
    for w in times.windows(2) {
        assert_eq!(w[1] - w[0], 1000, "{times:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_coordinators_fire_each_tick_once() {
    let mut cluster = Cluster::start("two-coordinators", &[]).await;
    cluster.start_another_coordinator().await;
    cluster
        .register("name: once\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster.spawn_worker("w1", 8);
    create(&cluster, "once", "once", "allow_all", json!({}), 0).await;
    tokio::time::sleep(Duration::from_millis(5500)).await;
    cluster
        .schedules()
        .await
        .pause_schedule(ScheduleRef { id: "once".into() })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ledger = ticks(&cluster, "once").await;
    assert!(ledger.len() >= 5, "{ledger:#?}");
    let times: Vec<i64> = ledger.iter().map(|t| baton_tests::ms(&t.tick_at)).collect();
    let distinct: HashSet<i64> = times.iter().copied().collect();
    assert_eq!(distinct.len(), times.len(), "each tick recorded once");
    let runs = runs_of(&cluster, "once").await;
    assert_eq!(runs.len(), ledger.len(), "one run per tick, no more: {times:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_definition_declares_its_schedules_and_a_new_version_replaces_them() {
    let mut cluster = Cluster::start("declared", &[]).await;
    cluster
        .register("name: nightly\nversion: 1\nschedules:\n  - {cron: '* * * * * *', input: {from: definition}}\n  - {name: never, cron: '0 0 30 2 *', timezone: America/New_York}\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster.spawn_worker("w1", 4);
    let mut schedules = cluster.schedules().await;
    let list = schedules
        .list_schedules(ListSchedulesRequest {
            workflow: "nightly".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .schedules;
    let ids: Vec<&str> = list.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["nightly/default", "nightly/never"]);
    assert!(list.iter().all(|s| s.source == "definition"));
    assert!(list[1].next_tick_at.is_none(), "February 30th never comes");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let fired = ticks(&cluster, "nightly/default").await;
    assert!(!fired.is_empty());
    let run = cluster.wait_run(&fired[0].run_id, Duration::from_secs(30)).await;
    assert_eq!(run.input_json, r#"{"from":"definition"}"#);
    let err = schedules
        .delete_schedule(ScheduleRef {
            id: "nightly/default".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "it belongs to the definition");

    cluster
        .register("name: nightly\nversion: 2\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    let list = schedules
        .list_schedules(ListSchedulesRequest {
            workflow: "nightly".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .schedules;
    assert!(list.is_empty(), "{list:#?}");

    // A bad schedule is refused at registration with its field path.
    let err = cluster
        .workflows()
        .await
        .register_workflow(RegisterWorkflowRequest {
            definition: "name: bad\nversion: 1\nschedules:\n  - {cron: '61 * * * *', timezone: Mars/Olympus}\nsteps:\n  - {id: a, handler: echo}\n"
                .into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("schedules[0].cron"), "{}", err.message());
}
