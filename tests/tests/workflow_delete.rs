//! Deleting a workflow version races the submits of that version: two real coordinators, a
//! worker, Redis and RabbitMQ. Every submit either succeeds and its run finishes normally, or is
//! refused `NOT_FOUND`; no run is left without its definition. The coordinators cache no
//! definition (`BATON_DEFINITION_CACHE_BYTES=1`), so a run whose version went away under it could
//! not dispatch its second step (read from the definition when the first reports) and would never
//! succeed.

use std::time::{Duration, Instant};

use baton_shared::proto::{
    DeleteWorkflowVersionRequest, RunStatus, SubmitRunRequest, run_service_client::RunServiceClient,
    workflow_service_client::WorkflowServiceClient,
};
use baton_tests::{Cluster, status};
use tonic::{Code, transport::Channel};

/// Submitters per round, each submitting until the delete is through (and 3 times after).
const SUBMITTERS: usize = 6;
/// Submits one submitter makes at most before it waits for the delete, so that the delete (refused
/// while runs are unfinished) cannot be starved by a stream of new runs.
const BURST: usize = 200;
/// Rounds: each registers a new version and races its delete against the submits.
const ROUNDS: u32 = 4;

async fn channel(addr: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(addr.to_string())
        .expect("address")
        .connect()
        .await
        .expect("connect")
}

/// Version `v` of the racing workflow: `a` takes a moment, then `b` (dispatched from the
/// definition when `a` reports) echoes.
fn definition(v: u32) -> String {
    format!(
        "name: racy\nversion: {v}\nsteps:\n  - {{id: a, handler: slow, input: {{ms: 30}}}}\n  - {{id: b, handler: echo, depends_on: [a]}}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn submits_racing_a_delete_of_their_version_either_run_to_the_end_or_are_refused_not_found() {
    let mut cluster = Cluster::start("wfdelete", &[("BATON_DEFINITION_CACHE_BYTES", "1")]).await;
    let (other, _) = cluster.start_another_coordinator().await;
    cluster.spawn_worker("w1", 16);
    // Version 1 stays, so that the name is kept and version 0 ("latest") never aliases a round's.
    cluster.register(&definition(1)).await;
    let addrs = [cluster.addr.clone(), other];

    let (mut accepted, mut refused) = (Vec::new(), 0usize);
    for v in 2..2 + ROUNDS {
        cluster.register(&definition(v)).await;
        // A run of the version on each coordinator before the race: the first deletes are refused.
        for addr in &addrs {
            RunServiceClient::new(channel(addr).await)
                .submit_run(SubmitRunRequest {
                    workflow: "racy".into(),
                    version: v,
                    input_json: "{}".into(),
                    ..Default::default()
                })
                .await
                .expect("a submit before the delete");
        }
        let deleted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut submitters = Vec::new();
        for i in 0..SUBMITTERS {
            let addr = addrs[i % addrs.len()].clone();
            let deleted = deleted.clone();
            submitters.push(tokio::spawn(async move {
                let mut runs = RunServiceClient::new(channel(&addr).await);
                let (mut ok, mut not_found) = (Vec::new(), 0usize);
                // Until the delete is through (pausing after a burst), and a few more after it.
                let (mut sent, mut after) = (0, 0);
                while after < 3 {
                    if deleted.load(std::sync::atomic::Ordering::SeqCst) {
                        after += 1;
                    } else if sent >= BURST {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    sent += 1;
                    let answer = runs
                        .submit_run(SubmitRunRequest {
                            workflow: "racy".into(),
                            version: v,
                            input_json: "{}".into(),
                            ..Default::default()
                        })
                        .await;
                    match answer {
                        Ok(r) => ok.push(r.into_inner().run_id),
                        Err(e) if e.code() == Code::NotFound => {
                            assert!(e.message().contains("version"), "the refusal names the version: {e:?}");
                            not_found += 1;
                        }
                        Err(e) => panic!("a submit racing the delete got {e:?}"),
                    }
                }
                (ok, not_found)
            }));
        }
        // The delete is refused while runs of the version are unfinished; it is tried again until
        // it goes through, from either coordinator.
        let start = Instant::now();
        let mut tries = 0usize;
        loop {
            let addr = &addrs[tries % addrs.len()];
            tries += 1;
            let answer = WorkflowServiceClient::new(channel(addr).await)
                .delete_workflow_version(DeleteWorkflowVersionRequest {
                    name: "racy".into(),
                    version: v,
                })
                .await;
            match answer {
                Ok(r) => {
                    assert!(!r.into_inner().remaining_versions.contains(&v), "version {v} is gone");
                    break;
                }
                Err(e) if e.code() == Code::FailedPrecondition => {
                    assert!(
                        e.message().contains("unfinished") || e.message().contains("being deleted"),
                        "{e:?}"
                    );
                }
                Err(e) => panic!("deleting version {v} got {e:?}"),
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "version {v} could not be deleted within 60 s ({tries} tries)"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        deleted.store(true, std::sync::atomic::Ordering::SeqCst);
        for s in submitters {
            let (ok, not_found) = s.await.expect("submitter");
            accepted.extend(ok);
            refused += not_found;
        }
        // After the delete, both coordinators (one still caching the definition) refuse it.
        for addr in &addrs {
            let e = RunServiceClient::new(channel(addr).await)
                .submit_run(SubmitRunRequest {
                    workflow: "racy".into(),
                    version: v,
                    input_json: "{}".into(),
                    ..Default::default()
                })
                .await
                .expect_err("a submit after the delete");
            assert_eq!(e.code(), Code::NotFound, "{e:?}");
        }
    }

    assert!(!accepted.is_empty(), "some submits raced ahead of the deletes");
    assert!(
        refused > 0,
        "some submits were refused after (or while) the deletes went through"
    );
    println!(
        "{} submits accepted and {refused} refused NOT_FOUND over {ROUNDS} deletes",
        accepted.len()
    );
    for run_id in &accepted {
        let run = cluster.wait_run(run_id, Duration::from_secs(60)).await;
        assert_eq!(
            status(&run),
            "succeeded",
            "run {run_id} of a deleted version did not finish normally: {run:#?}"
        );
        assert_eq!(run.status, RunStatus::Succeeded as i32);
    }
}

/// The fence step by step on a real Redis, through the store's public calls: a run created before a
/// delete is counted (the delete is refused and lifts its fence); while a delete holds the fence,
/// runs of the version are refused `NOT_FOUND` and a second delete is refused as busy; once the
/// version is gone, no run of it is created.
#[tokio::test(flavor = "multi_thread")]
async fn while_a_delete_holds_its_fence_no_run_of_the_version_is_created() {
    use baton_coordinator::{
        error::CoordinatorError,
        store::{CreateOutcome, DeleteVersion, EndStatus, QueuedPlan, RunCall, Store},
    };
    let namespace = format!("t-wfdelfence-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let keys = baton_shared::keys::Keys::new(namespace.clone());
    let store = Store::connect(
        "redis://127.0.0.1:6379",
        keys.clone(),
        1000,
        Duration::from_secs(3600),
        Duration::from_secs(60),
    )
    .await
    .expect("connect");
    let now = baton_shared::time::now_ms();
    store.put_workflow("w", 1, "{}", now, 10).await.expect("register");
    let def = baton_shared::definition::WorkflowDefinition::parse(
        "name: w\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n",
    )
    .expect("definition");
    let create = |run: &'static str| {
        let (store, def) = (store.clone(), def.clone());
        async move {
            store
                .create_run(
                    &RunCall { run_id: run, now },
                    &def,
                    "{}",
                    "",
                    None,
                    &[],
                    None,
                    &QueuedPlan::default(),
                )
                .await
        }
    };

    assert_eq!(create("r1").await.expect("r1"), CreateOutcome::Created);
    assert_eq!(
        store.delete_workflow_version("w", 1).await.expect("delete"),
        DeleteVersion::Unfinished(1),
        "the run created before the delete is counted"
    );
    assert_eq!(
        create("r2").await.expect("r2"),
        CreateOutcome::Created,
        "a refused delete lifts its fence"
    );

    // Another delete under way: it holds the fence (store/workflows.rs: <ns>:wf:<name>:deleting:<v>).
    let fence = format!("{}:deleting:1", keys.workflow("w"));
    let client = redis::Client::open("redis://127.0.0.1:6379").expect("url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let _: () = redis::cmd("SET")
        .arg(&fence)
        .arg("another-delete")
        .arg("PX")
        .arg(30_000)
        .query_async(&mut conn)
        .await
        .expect("SET");
    match create("r3").await {
        Err(CoordinatorError::NotFound(m)) => assert!(m.starts_with("version:"), "{m}"),
        other => panic!("a run of a fenced version: {other:?}"),
    }
    assert_eq!(
        store.delete_workflow_version("w", 1).await.expect("delete"),
        DeleteVersion::Busy
    );
    let _: () = redis::AsyncCommands::del(&mut conn, &fence).await.expect("DEL");

    for run in ["r1", "r2"] {
        store
            .cancel_run(&RunCall { run_id: run, now }, "cancelled: test", EndStatus::Cancelled)
            .await
            .expect("cancel");
    }
    assert_eq!(
        store.delete_workflow_version("w", 1).await.expect("delete"),
        DeleteVersion::Deleted(Vec::new())
    );
    match create("r4").await {
        Err(CoordinatorError::NotFound(m)) => assert!(m.contains("no version 1"), "{m}"),
        other => panic!("a run of a deleted version: {other:?}"),
    }
    assert_eq!(
        store.delete_workflow_version("w", 1).await.expect("delete"),
        DeleteVersion::Missing
    );
    baton_tests::cleanup_namespace(&namespace, &[]).await;
}
