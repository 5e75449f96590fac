//! The API's answers to bad input, idempotency keys, listing, and fencing of stale results.

use std::time::Duration;

use baton_shared::proto::{
    AttemptDisposition, GetRunRequest, GetWorkflowRequest, ListRunsRequest, ListWorkflowsRequest,
    RegisterWorkflowRequest, ReportResultRequest, RunStatus, SubmitRunRequest, report_result_request::Outcome,
};
use baton_tests::{Cluster, status};
use serde_json::json;
use tonic::Code;

const GOOD: &str = "name: good\nversion: 1\ninput_schema: {type: object, required: [n], properties: {n: {type: integer}}}\nsteps:\n  - {id: a, handler: echo}\n";

#[tokio::test(flavor = "multi_thread")]
async fn invalid_definitions_are_refused_naming_the_field_and_write_nothing() {
    let cluster = Cluster::start("invalid", &[]).await;
    let mut wf = cluster.workflows().await;
    let cases = [
        (
            "name: w\nversion: 1\nsteps:\n  - {id: a, handler: h}\n  - {id: a, handler: h}\n",
            "steps[1].id",
        ),
        (
            "name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, depends_on: [nope]}\n",
            "steps[0].depends_on[0]",
        ),
        (
            "name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, depends_on: [b]}\n  - {id: b, handler: h, depends_on: [a]}\n",
            "cycle",
        ),
        ("name: w\nversion: 1\nsteps:\n  - {id: a}\n", "steps[0].handler"),
        (
            "name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, timeout: forever}\n",
            "steps[0].timeout",
        ),
        (
            "name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, retry: {initial_interval: 2 fortnights}}\n",
            "steps[0].retry.initial_interval",
        ),
        (
            "name: w\nversion: 1\ninput_schema: {type: [not-a-type]}\nsteps:\n  - {id: a, handler: h}\n",
            "input_schema",
        ),
        ("name: w\nversion: 0\nsteps:\n  - {id: a, handler: h}\n", "version"),
        ("name: w\nversion: 1\nsteps: []\n", "steps"),
        (
            "name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, retries: 3}\n",
            "steps[0]",
        ),
        ("name: [w\n", "not a valid YAML"),
    ];
    for (doc, field) in cases {
        let err = wf
            .register_workflow(RegisterWorkflowRequest { definition: doc.into() })
            .await
            .expect_err(doc);
        assert_eq!(err.code(), Code::InvalidArgument, "{doc}: {err:?}");
        assert!(
            err.message().contains(field),
            "{doc}: message {:?} does not name {field}",
            err.message()
        );
    }
    let listed = wf
        .list_workflows(ListWorkflowsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.workflows.is_empty(), "nothing was registered: {listed:?}");
    let err = wf
        .get_workflow(GetWorkflowRequest {
            name: "w".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // The same name and version with another content is refused; the identical document is accepted again.
    cluster.register(GOOD).await;
    let again = wf
        .register_workflow(RegisterWorkflowRequest {
            definition: GOOD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    let err = wf
        .register_workflow(RegisterWorkflowRequest {
            definition: GOOD.replace("handler: echo", "handler: trace"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let v2 = wf
        .register_workflow(RegisterWorkflowRequest {
            definition: GOOD.replace("version: 1", "version: 2"),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(v2.created);
    assert_eq!(v2.workflow.unwrap().versions, [1, 2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_run_input_and_unknown_workflows_are_refused_and_create_nothing() {
    let cluster = Cluster::start("badinput", &[]).await;
    cluster.register(GOOD).await;
    let mut runs = cluster.runs().await;
    let submit = |workflow: &str, input: &str| SubmitRunRequest {
        workflow: workflow.into(),
        input_json: input.into(),
        ..Default::default()
    };

    let err = runs.submit_run(submit("good", r#"{"n": "three"}"#)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("input/n"), "{}", err.message());
    let err = runs.submit_run(submit("good", "{}")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("\"n\" is a required property"),
        "{}",
        err.message()
    );
    let err = runs.submit_run(submit("good", "{not json")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("input_json"), "{}", err.message());
    let err = runs.submit_run(submit("missing", "{}")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("missing"), "{}", err.message());
    let err = runs
        .submit_run(SubmitRunRequest {
            workflow: "good".into(),
            version: 7,
            input_json: r#"{"n": 1}"#.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = runs
        .get_run(GetRunRequest {
            run_id: "not-a-uuid".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = runs
        .get_run(GetRunRequest {
            run_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let listed = runs.list_runs(ListRunsRequest::default()).await.unwrap().into_inner();
    assert!(listed.runs.is_empty(), "no run was created: {listed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_idempotency_key_returns_the_same_run() {
    let mut cluster = Cluster::start("idem", &[]).await;
    cluster.register(GOOD).await;
    let mut runs = cluster.runs().await;
    let req = |key: &str| SubmitRunRequest {
        workflow: "good".into(),
        input_json: r#"{"n": 1}"#.into(),
        idempotency_key: key.into(),
        ..Default::default()
    };
    let first = runs.submit_run(req("order-17")).await.unwrap().into_inner();
    let second = runs.submit_run(req("order-17")).await.unwrap().into_inner();
    let other = runs.submit_run(req("order-18")).await.unwrap().into_inner();
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(first.run_id, second.run_id);
    assert_ne!(first.run_id, other.run_id);

    cluster.spawn_worker("w1", 4);
    let run = cluster.wait_run(&first.run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), "succeeded");
    assert_eq!(run.idempotency_key, "order-17");
    assert_eq!(
        cluster.executions(&first.run_id, "a").await,
        1,
        "one run, one execution"
    );
    // Still the same run after it finished.
    let third = runs.submit_run(req("order-17")).await.unwrap().into_inner();
    assert_eq!(third.run_id, first.run_id);
    assert!(!third.created);

    cluster.wait_run(&other.run_id, Duration::from_secs(60)).await;
    let listed = runs
        .list_runs(ListRunsRequest {
            workflow: "good".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.runs.len(), 2, "two keys, two runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn list_runs_filters_and_pages() {
    let mut cluster = Cluster::start("list", &[]).await;
    cluster
        .register("name: ok\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster
        .register("name: bad\nversion: 1\nsteps:\n  - {id: a, handler: fail, retry: {max_attempts: 1}}\n")
        .await;
    cluster.spawn_worker("w1", 8);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(cluster.submit("ok", json!({"i": i})).await);
    }
    let failed = cluster.submit("bad", json!({"fatal": true})).await;
    for id in ids.iter().chain([&failed]) {
        cluster.wait_run(id, Duration::from_secs(60)).await;
    }
    let mut runs = cluster.runs().await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = runs
            .list_runs(ListRunsRequest {
                workflow: "ok".into(),
                limit: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.runs.len() <= 2);
        seen.extend(page.runs.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, every run once");
    let failed_only = runs
        .list_runs(ListRunsRequest {
            status: RunStatus::Failed as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        failed_only.runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        [failed]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn late_and_duplicate_results_are_stale_and_change_nothing() {
    let mut cluster = Cluster::start("stale", &[]).await;
    cluster
        .register(
            "name: once\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n  - {id: b, handler: echo, depends_on: [a]}\n",
        )
        .await;
    cluster.spawn_worker("w1", 4);
    let run_id = cluster.submit("once", json!({"v": 1})).await;
    let before = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&before), "succeeded");

    let mut api = cluster.worker_api().await;
    let report = |step: &str, attempt: u32, out: &str| ReportResultRequest {
        run_id: run_id.clone(),
        step_id: step.into(),
        attempt,
        worker_id: "impostor".into(),
        outcome: Some(Outcome::OutputJson(out.into())),
        workflow: "once".into(),
        workflow_version: 1,
        attempt_base: 0,
        ..Default::default()
    };
    for (step, attempt) in [("a", 1), ("b", 1), ("a", 2), ("a", 0)] {
        let r = api
            .report_result(report(step, attempt, r#"{"forged": true}"#))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.disposition, AttemptDisposition::Stale as i32, "{step}#{attempt}");
    }
    let after = cluster
        .runs()
        .await
        .get_run(GetRunRequest {
            run_id: run_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, before, "a stale report changed the run");
    assert_eq!(cluster.executions(&run_id, "b").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn finished_runs_expire_after_the_retention() {
    let mut cluster = Cluster::start("retention", &[("BATON_RETENTION", "1s")]).await;
    cluster
        .register("name: brief\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    cluster.spawn_worker("w1", 2);
    let run_id = cluster.submit("brief", json!({})).await;
    assert_eq!(
        status(&cluster.wait_run(&run_id, Duration::from_secs(30)).await),
        "succeeded"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let err = cluster
        .runs()
        .await
        .get_run(GetRunRequest {
            run_id: run_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let listed = cluster
        .runs()
        .await
        .list_runs(ListRunsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.runs.is_empty(), "an expired run is not listed");
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_grpc_health_and_reflection() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let cluster = Cluster::start("health", &[]).await;
    let channel = tonic::transport::Channel::from_shared(cluster.addr.clone())
        .unwrap()
        .connect_lazy();
    let mut health = HealthClient::new(channel.clone());
    for service in [
        "",
        "baton.v1.RunService",
        "baton.v1.WorkerService",
        "baton.v1.WorkflowService",
    ] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service}");
    }
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in [
        "baton.v1.RunService",
        "baton.v1.WorkerService",
        "baton.v1.WorkflowService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&s.to_string()), "{s} not in {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_coordinator_registers_the_definitions_of_its_directory_at_start() {
    let dir = std::env::temp_dir().join(format!("baton-defs-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("boot.yaml"),
        "name: boot\nversion: 3\nsteps:\n  - {id: a, handler: echo}\n",
    )
    .unwrap();
    let mut cluster = Cluster::start("defsdir", &[("BATON_DEFINITIONS_DIR", dir.to_str().unwrap())]).await;
    let wf = cluster
        .workflows()
        .await
        .get_workflow(GetWorkflowRequest {
            name: "boot".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(wf.version, 3);
    cluster.spawn_worker("w1", 2);
    let run_id = cluster.submit("boot", json!({"x": 1})).await;
    assert_eq!(
        status(&cluster.wait_run(&run_id, Duration::from_secs(30)).await),
        "succeeded"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_keeps_the_version_it_started_with() {
    let mut cluster = Cluster::start("pinned", &[]).await;
    cluster
        .register("name: evolving\nversion: 1\nsteps:\n  - {id: old, handler: echo}\n")
        .await;
    // Submitted while no worker runs: the run is still pending when version 2 arrives.
    let v1_run = cluster.submit("evolving", json!({"v": 1})).await;
    cluster
        .register("name: evolving\nversion: 2\nsteps:\n  - {id: new, handler: echo}\n  - {id: newer, handler: echo, depends_on: [new]}\n")
        .await;
    let v2_run = cluster.submit("evolving", json!({"v": 2})).await;
    cluster.spawn_worker("w1", 4);

    let run = cluster.wait_run(&v1_run, Duration::from_secs(30)).await;
    assert_eq!(status(&run), "succeeded");
    assert_eq!(run.version, 1);
    assert_eq!(run.steps.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["old"]);
    let run = cluster.wait_run(&v2_run, Duration::from_secs(30)).await;
    assert_eq!(run.version, 2, "a new run takes the latest version");
    assert_eq!(
        run.steps.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["new", "newer"]
    );
}

/// GetRun remembers the step ids of the runs it read (so that polling a run is one Redis round
/// trip): a run that expired and was made again under the same id (the same idempotency key,
/// against a newer version with other steps) is shown with its own steps, not the remembered ones.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_made_again_under_the_same_id_shows_its_own_steps() {
    let cluster = Cluster::start("getrun-again", &[]).await;
    cluster
        .register("name: again\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n")
        .await;
    let mut runs = cluster.runs().await;
    let req = || SubmitRunRequest {
        workflow: "again".into(),
        input_json: "{}".into(),
        idempotency_key: "order-1".into(),
        ..Default::default()
    };
    // No worker: the run stays dispatched while it is read.
    let first = runs.submit_run(req()).await.unwrap().into_inner();
    assert!(first.created);
    for _ in 0..2 {
        let run = cluster.get_run(&first.run_id).await;
        let ids: Vec<&str> = run.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a"], "{run:#?}");
    }

    // The run expires (its keys go, as after its retention) and the key is used again against
    // version 2, whose steps differ: the same run id.
    let mut conn = redis::Client::open(baton_tests::REDIS_URL)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let id = &first.run_id;
    let ns = &cluster.namespace;
    let _: () = redis::cmd("DEL")
        .arg(baton_shared::keys::Keys::new(ns.clone()).run(id))
        .arg(baton_shared::keys::Keys::new(ns.clone()).steps(id))
        .arg(baton_shared::keys::Keys::new(ns.clone()).events(id))
        .query_async(&mut conn)
        .await
        .expect("DEL");
    cluster
        .register("name: again\nversion: 2\nsteps:\n  - {id: b, handler: echo}\n  - {id: c, handler: echo, depends_on: [b]}\n")
        .await;
    let second = runs.submit_run(req()).await.unwrap().into_inner();
    assert_eq!(
        second.run_id, first.run_id,
        "the same idempotency key gives the same run id"
    );
    assert!(second.created);
    let run = cluster.get_run(&second.run_id).await;
    let ids: Vec<&str> = run.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!((run.version, ids), (2, vec!["b", "c"]), "{run:#?}");

    // Gone again: not found, whatever was remembered.
    let _: () = redis::cmd("DEL")
        .arg(baton_shared::keys::Keys::new(ns.clone()).run(id))
        .query_async(&mut conn)
        .await
        .expect("DEL");
    let gone = runs
        .get_run(GetRunRequest {
            run_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("the run is gone");
    assert_eq!(gone.code(), Code::NotFound);
}
