//! Bearer tokens and roles end to end: a coordinator with auth on (tokens in `BATON_AUTH_TOKENS`),
//! every RPC of the proto called without a token, with roles that must not have it and with roles
//! that must; workers with a worker and with a viewer token; human tasks completed by their
//! assignee and refused to others; and no token in the coordinator's log.

use std::time::Duration;

use baton_shared::credentials::AuthChannel;
use baton_shared::proto::{
    CompleteHumanTaskRequest, GetRunRequest, ListHumanTasksRequest, RegisterWorkflowRequest, SubmitRunRequest,
    human_task_service_client::HumanTaskServiceClient, run_service_client::RunServiceClient,
    workflow_service_client::WorkflowServiceClient,
};
use baton_tests::{Cluster, ClusterOptions};
use prost::Message as _;
use serde_json::json;
use tonic::Code;

const ADMIN: &str = "tok-admin-4f9c2a7e1b";
const OPERATOR: &str = "tok-operator-olga-8d3e5f";
const OTHER_OPERATOR: &str = "tok-operator-bob-2c6a9d";
const WORKER: &str = "tok-worker-7b1e4c9a0f";
const VIEWER: &str = "tok-viewer-3a8f6d2e1c";

/// The tokens as `BATON_AUTH_TOKENS` lists them (`role:user:token`).
fn token_list() -> String {
    [
        format!("admin:ada:{ADMIN}"),
        format!("operator:olga:{OPERATOR}"),
        format!("operator:bob:{OTHER_OPERATOR}"),
        format!("worker::{WORKER}"),
        format!("viewer:vic:{VIEWER}"),
    ]
    .join(",")
}

async fn start(test: &str) -> Cluster {
    Cluster::start_with(
        test,
        ClusterOptions {
            env: vec![("BATON_AUTH_TOKENS".into(), token_list())],
            ..Default::default()
        },
    )
    .await
}

/// Calls `path` with an empty request; answers the status code (`Ok` for an answer).
async fn call(channel: AuthChannel, path: &str) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(e) = grpc.ready().await {
        panic!("channel not ready: {e}");
    }
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path.to_string()).expect("path");
    // `()` is protobuf's empty message: every request type's default, and any answer decodes into it.
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let call = grpc.unary(tonic::Request::new(()), path, codec);
    match tokio::time::timeout(Duration::from_secs(30), call).await {
        Ok(Ok(_)) => Code::Ok,
        Ok(Err(s)) => s.code(),
        // A streaming method (WatchRun) that did answer with headers but keeps streaming.
        Err(_) => Code::DeadlineExceeded,
    }
}

/// Every method of every Baton service in the proto, as gRPC paths.
fn proto_methods() -> Vec<(String, String, String)> {
    let set = prost_types::FileDescriptorSet::decode(baton_shared::proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut out = Vec::new();
    for file in set.file {
        let package = file.package().to_string();
        for service in &file.service {
            for method in &service.method {
                let path = format!("/{package}.{}/{}", service.name(), method.name());
                out.push((path, service.name().to_string(), method.name().to_string()));
            }
        }
    }
    assert!(out.len() >= 27, "the descriptor lists only {} methods", out.len());
    out
}

/// What the issue grants each role, independent of the coordinator's table: admin everything;
/// operator everything but the worker protocol; worker the worker protocol only; viewer reads.
fn granted(role: &str, service: &str, method: &str) -> bool {
    match role {
        "admin" => true,
        "operator" => service != "WorkerService",
        "worker" => service == "WorkerService",
        "viewer" => ["Get", "List", "Watch"].iter().any(|p| method.starts_with(p)),
        _ => false,
    }
}

#[test]
fn every_rpc_of_the_proto_has_a_permission_in_the_table() {
    for (path, _, _) in proto_methods() {
        assert!(
            baton_coordinator::auth::METHODS.iter().any(|(m, _)| *m == path),
            "{path} is not in baton_coordinator::auth::METHODS: give it a permission (else only admin may call it)"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_needs_a_token_and_a_role_that_has_it_and_no_token_is_logged() {
    let cluster = start("auth-rpcs").await;
    let roles = [
        ("admin", ADMIN),
        ("operator", OPERATOR),
        ("worker", WORKER),
        ("viewer", VIEWER),
    ];
    let mut failures = Vec::new();
    for (path, service, method) in proto_methods() {
        let code = call(cluster.channel_with_token(None).await, &path).await;
        if code != Code::Unauthenticated {
            failures.push(format!("{path} without a token: {code:?}, want Unauthenticated"));
        }
        let code = call(cluster.channel_with_token(Some("tok-nobody-0123456789")).await, &path).await;
        if code != Code::Unauthenticated {
            failures.push(format!("{path} with an unknown token: {code:?}, want Unauthenticated"));
        }
        for (role, token) in roles {
            let code = call(cluster.channel_with_token(Some(token)).await, &path).await;
            let ok = if granted(role, &service, &method) {
                !matches!(code, Code::Unauthenticated | Code::PermissionDenied)
            } else {
                code == Code::PermissionDenied
            };
            if !ok {
                failures.push(format!(
                    "{path} as {role}: {code:?} (granted: {})",
                    granted(role, &service, &method)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Health needs no token.
    assert_eq!(cluster.health("").await, Ok(baton_tests::ServingStatus::Serving));

    // The refusal says what is missing, and names the role and the method.
    let err = RunServiceClient::new(cluster.channel_with_token(None).await)
        .get_run(GetRunRequest {
            run_id: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.message(), "missing bearer token in `authorization` metadata");
    let err = RunServiceClient::new(cluster.channel_with_token(Some(VIEWER)).await)
        .submit_run(SubmitRunRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.message(), "role viewer may not call /baton.v1.RunService/SubmitRun");

    let log = std::fs::read_to_string(cluster.log_path("coordinator")).expect("coordinator log");
    assert!(log.contains("auth on"), "{log}");
    for token in [ADMIN, OPERATOR, OTHER_OPERATOR, WORKER, VIEWER, "tok-nobody-0123456789"] {
        assert!(!log.contains(token), "the coordinator log shows a token");
    }
}

const ECHO: &str = "name: auth-echo\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n";

async fn register(cluster: &Cluster, token: &str, yaml: &str) {
    WorkflowServiceClient::new(cluster.channel_with_token(Some(token)).await)
        .register_workflow(RegisterWorkflowRequest {
            definition: yaml.into(),
        })
        .await
        .expect("register");
}

async fn submit(cluster: &Cluster, token: &str, workflow: &str) -> String {
    RunServiceClient::new(cluster.channel_with_token(Some(token)).await)
        .submit_run(SubmitRunRequest {
            workflow: workflow.into(),
            input_json: json!({"n": 1}).to_string(),
            ..Default::default()
        })
        .await
        .expect("submit")
        .into_inner()
        .run_id
}

async fn wait_status(cluster: &Cluster, run_id: &str, word: &str, within: Duration) -> baton_shared::proto::Run {
    let mut runs = RunServiceClient::new(cluster.channel_with_token(Some(VIEWER)).await);
    let start = std::time::Instant::now();
    loop {
        let run = runs
            .get_run(GetRunRequest {
                run_id: run_id.into(),
                ..Default::default()
            })
            .await
            .expect("get run")
            .into_inner();
        if baton_tests::status(&run) == word {
            return run;
        }
        assert!(
            start.elapsed() < within,
            "run {run_id} not {word} within {within:?}: {run:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_with_a_worker_token_completes_a_run_and_one_with_a_viewer_token_cannot() {
    let mut cluster = start("auth-workers").await;
    register(&cluster, OPERATOR, ECHO).await;

    // A worker with a viewer token is refused at registration: it says why in one line and exits
    // non-zero without taking the task, which stays dispatched.
    let run_id = submit(&cluster, OPERATOR, "auth-echo").await;
    let log = cluster.log_path("viewer-w");
    let mut viewer = cluster
        .worker_command("viewer-w", 4)
        .env("BATON_TOKEN", VIEWER)
        .spawn()
        .expect("spawn the viewer worker");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = viewer.try_wait().expect("wait for the viewer worker") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = viewer.kill();
            panic!(
                "the worker with a viewer token did not exit:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "{status}: {text}");
    assert!(text.contains("refused this worker's token"), "{text}");
    assert!(text.contains("PermissionDenied"), "{text}");
    assert!(
        text.contains("role viewer may not call /baton.v1.WorkerService/RegisterWorker"),
        "{text}"
    );
    assert!(!text.contains(VIEWER), "the token was printed: {text}");
    let run = RunServiceClient::new(cluster.channel_with_token(Some(VIEWER)).await)
        .get_run(GetRunRequest {
            run_id: run_id.clone(),
            ..Default::default()
        })
        .await
        .expect("get run")
        .into_inner();
    assert_eq!(baton_tests::step_status(&run, "a"), "dispatched", "{run:#?}");
    assert!(run.steps[0].attempts.iter().all(|a| a.worker != "viewer-w"), "{run:#?}");

    // A worker with a worker token runs it (the task went back to the queue).
    cluster.spawn_worker_with("worker-w", 4, &[("BATON_TOKEN", WORKER)]);
    let run = wait_status(&cluster, &run_id, "succeeded", Duration::from_secs(60)).await;
    assert_eq!(
        run.steps[0].attempts.last().map(|a| a.worker.as_str()),
        Some("worker-w")
    );
    let second = submit(&cluster, ADMIN, "auth-echo").await;
    wait_status(&cluster, &second, "succeeded", Duration::from_secs(60)).await;
}

const APPROVAL: &str = r#"
name: auth-approval
version: 1
steps:
  - id: approve
    human:
      title: Approve
      assignees: [olga]
      form:
        type: object
        required: [approved]
        properties:
          approved: {type: boolean}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_human_task_is_completed_by_its_assignee_and_recorded_under_the_token_user() {
    let cluster = start("auth-human").await;
    register(&cluster, ADMIN, APPROVAL).await;
    let run_id = submit(&cluster, OPERATOR, "auth-approval").await;
    let complete = |user: &str| CompleteHumanTaskRequest {
        run_id: run_id.clone(),
        step_id: "approve".into(),
        user: user.into(),
        data_json: json!({"approved": true}).to_string(),
    };
    let tasks = |token: &'static str| {
        let cluster = &cluster;
        async move { HumanTaskServiceClient::new(cluster.channel_with_token(Some(token)).await) }
    };
    // Wait until the task is open (a viewer may list).
    let start = std::time::Instant::now();
    loop {
        let open = tasks(VIEWER)
            .await
            .list_human_tasks(ListHumanTasksRequest {
                status: "open".into(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner()
            .tasks;
        if open.iter().any(|t| t.run_id == run_id) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the task never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // bob is an operator but not an assignee; claiming to be olga does not help him.
    let err = tasks(OTHER_OPERATOR)
        .await
        .complete_human_task(complete(""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("user \"bob\" is not an assignee"),
        "{}",
        err.message()
    );
    let err = tasks(OTHER_OPERATOR)
        .await
        .complete_human_task(complete("olga"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("is not the authenticated user"),
        "{}",
        err.message()
    );
    // A viewer may not complete tasks at all.
    let err = tasks(VIEWER).await.complete_human_task(complete("")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // olga, the assignee, completes it: `completed_by` is her token's user.
    let task = tasks(OPERATOR)
        .await
        .complete_human_task(complete(""))
        .await
        .expect("the assignee completes the task")
        .into_inner();
    assert_eq!(
        (task.status.as_str(), task.completed_by.as_str()),
        ("completed", "olga")
    );
    wait_status(&cluster, &run_id, "succeeded", Duration::from_secs(30)).await;
}
