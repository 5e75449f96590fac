//! Runs the `baton` binary against a fake in-process coordinator: output, exit statuses, error
//! reporting and the fall back to polling when the event stream ends before the run does.

use std::process::Output;
use std::sync::Mutex;
use std::time::Duration;

use baton_shared::proto::run_service_server::{RunService, RunServiceServer};
use baton_shared::proto::workflow_service_server::{WorkflowService, WorkflowServiceServer};
use baton_shared::proto::{
    CancelRunRequest, GetRunRequest, GetWorkflowRequest, ListRunsRequest, ListRunsResponse, ListWorkflowsRequest,
    ListWorkflowsResponse, RegisterWorkflowRequest, RegisterWorkflowResponse, RerunRunRequest, RetryRunRequest, Run,
    RunEvent, RunOperationResponse, RunStatus, StepRun, StepStatus, SubmitRunRequest, SubmitRunResponse,
    WatchRunRequest, Workflow,
};
use baton_shared::time::{now_ms, timestamp};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Run `ok` has succeeded. Run `slow` is running for its first two `GetRun`s, then failed; its
/// event stream ends early, after two events.
#[derive(Default)]
struct Fake {
    slow_gets: Mutex<u32>,
}

fn run(id: &str, status: RunStatus) -> Run {
    Run {
        id: id.to_owned(),
        workflow: "orders".to_owned(),
        version: 1,
        status: status as i32,
        input_json: "{}".to_owned(),
        created_at: timestamp(now_ms() - 2_000),
        started_at: timestamp(now_ms() - 1_900),
        finished_at: RunStatus::is_terminal(status).then(|| timestamp(now_ms())).flatten(),
        steps: vec![StepRun {
            id: "charge".to_owned(),
            handler: "payments.charge".to_owned(),
            status: if status == RunStatus::Succeeded {
                StepStatus::Succeeded
            } else {
                StepStatus::Failed
            } as i32,
            attempt: 2,
            max_attempts: 2,
            ..StepRun::default()
        }],
        ..Run::default()
    }
}

#[tonic::async_trait]
impl RunService for Fake {
    async fn cancel_run(&self, _: Request<CancelRunRequest>) -> Result<Response<RunOperationResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn retry_run(&self, _: Request<RetryRunRequest>) -> Result<Response<RunOperationResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn rerun_run(&self, _: Request<RerunRunRequest>) -> Result<Response<RunOperationResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn submit_run(&self, request: Request<SubmitRunRequest>) -> Result<Response<SubmitRunResponse>, Status> {
        match request.into_inner().workflow.as_str() {
            "good" => Ok(Response::new(SubmitRunResponse {
                run_id: "ok".to_owned(),
                created: false,
            })),
            "bad" => Ok(Response::new(SubmitRunResponse {
                run_id: "slow".to_owned(),
                created: true,
            })),
            other => Err(Status::not_found(format!("workflow {other} not found"))),
        }
    }

    async fn get_run(&self, request: Request<GetRunRequest>) -> Result<Response<Run>, Status> {
        match request.into_inner().run_id.as_str() {
            "ok" => Ok(Response::new(run("ok", RunStatus::Succeeded))),
            "slow" => {
                let mut gets = self.slow_gets.lock().map_err(|_| Status::internal("poisoned"))?;
                *gets += 1;
                let status = if *gets > 2 {
                    RunStatus::Failed
                } else {
                    RunStatus::Running
                };
                Ok(Response::new(run("slow", status)))
            }
            other => Err(Status::not_found(format!("run {other} not found"))),
        }
    }

    async fn list_runs(&self, _: Request<ListRunsRequest>) -> Result<Response<ListRunsResponse>, Status> {
        Ok(Response::new(ListRunsResponse {
            runs: vec![run("ok", RunStatus::Succeeded)],
            next_page_token: "next".to_owned(),
        }))
    }

    type WatchRunStream = tokio_stream::Iter<std::vec::IntoIter<Result<RunEvent, Status>>>;

    async fn watch_run(&self, request: Request<WatchRunRequest>) -> Result<Response<Self::WatchRunStream>, Status> {
        let run_id = request.into_inner().run_id;
        let event = |kind: &str, step: &str, attempt: u32, status: &str, detail: &str| {
            Ok(RunEvent {
                run_id: run_id.clone(),
                sequence: "1-0".to_owned(),
                time: timestamp(now_ms()),
                kind: kind.to_owned(),
                step_id: step.to_owned(),
                attempt,
                status: status.to_owned(),
                detail: detail.to_owned(),
                payload_json: String::new(),
            })
        };
        let events = match run_id.as_str() {
            "ok" => vec![event("run", "", 0, "running", ""), event("run", "", 0, "succeeded", "")],
            "slow" => vec![
                event("run", "", 0, "running", ""),
                event("step", "charge", 1, "retrying", "connection reset"),
            ],
            other => return Err(Status::not_found(format!("run {other} not found"))),
        };
        Ok(Response::new(tokio_stream::iter(events)))
    }
}

#[tonic::async_trait]
impl WorkflowService for Fake {
    async fn register_workflow(
        &self,
        request: Request<RegisterWorkflowRequest>,
    ) -> Result<Response<RegisterWorkflowResponse>, Status> {
        if !request.into_inner().definition.contains("name: orders") {
            return Err(Status::invalid_argument("steps[0].handler: missing"));
        }
        let workflow = Workflow {
            name: "orders".to_owned(),
            version: 1,
            ..Workflow::default()
        };
        Ok(Response::new(RegisterWorkflowResponse {
            workflow: Some(workflow),
            created: true,
        }))
    }

    async fn get_workflow(&self, request: Request<GetWorkflowRequest>) -> Result<Response<Workflow>, Status> {
        Err(Status::not_found(format!(
            "workflow {} not found",
            request.into_inner().name
        )))
    }

    async fn list_workflows(
        &self,
        _: Request<ListWorkflowsRequest>,
    ) -> Result<Response<ListWorkflowsResponse>, Status> {
        Ok(Response::new(ListWorkflowsResponse::default()))
    }
}

/// Starts the fake coordinator and answers its address as `host:port`.
async fn start() -> String {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().expect("address")).expect("bind");
    let addr = incoming.local_addr().expect("local address");
    let fake = std::sync::Arc::new(Fake::default());
    tokio::spawn(
        Server::builder()
            .add_service(RunServiceServer::from_arc(fake.clone()))
            .add_service(WorkflowServiceServer::from_arc(fake))
            .serve_with_incoming(incoming),
    );
    addr.to_string()
}

/// Runs `baton` with `args` against `addr` (given as `BATON_ADDR`).
async fn baton(addr: &str, args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .env("BATON_ADDR", addr)
        .output();
    tokio::time::timeout(Duration::from_secs(30), child)
        .await
        .expect("baton took too long")
        .expect("baton runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn watch_falls_back_to_polling_and_exits_1_on_failure() {
    let addr = start().await;
    let out = baton(&addr, &["run", "watch", "slow"]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("charge  retrying    attempt 1   connection reset"),
        "{text}"
    );
    assert!(text.contains("Status:           failed"), "{text}");
    assert!(stderr(&out).contains("polling every 500 ms"), "{}", stderr(&out));
}

#[tokio::test]
async fn submit_wait_prints_json_lines_and_exits_0_on_success() {
    let addr = start().await;
    let out = baton(
        &addr,
        &[
            "run",
            "submit",
            "good",
            "--input",
            r#"{"a": 1}"#,
            "--wait",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0], serde_json::json!({"run_id": "ok", "created": false}));
    assert_eq!(lines[1]["status"], "succeeded");
}

#[tokio::test]
async fn submit_watch_exits_1_when_the_run_fails() {
    let addr = start().await;
    let out = baton(&addr, &["run", "submit", "bad", "--watch"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("run slow created\n"), "{}", stdout(&out));
}

#[tokio::test]
async fn grpc_errors_print_code_and_message_and_exit_2() {
    let addr = start().await;
    let out = baton(&addr, &["run", "get", "nope"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "error: NOT_FOUND: run nope not found\n");
    let out = baton(&addr, &["workflow", "get", "nope", "--version", "2"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "error: NOT_FOUND: workflow nope not found\n");
}

#[tokio::test]
async fn bad_input_is_refused_before_connecting() {
    // Nothing listens on port 1: the input error must come first.
    let out = baton("127.0.0.1:1", &["run", "submit", "good", "--input", "{oops"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: --input is not valid JSON"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn apply_list_and_page_tokens() {
    let addr = start().await;
    let dir = std::env::temp_dir().join(format!("baton-cli-apply-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("orders.yaml");
    std::fs::write(&file, "name: orders\nsteps: []\n").expect("write");
    let out = baton(&addr, &["workflow", "apply", "-f", &file.to_string_lossy()]).await;
    assert_eq!(stdout(&out), "workflow orders version 1 created\n", "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).expect("clean up");

    let out = baton(&addr, &["workflow", "list"]).await;
    assert_eq!(stdout(&out), "no workflows registered\n");

    let out = baton(&addr, &["run", "list", "--status", "succeeded"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).ends_with("more runs: --page-token next\n"),
        "{}",
        stdout(&out)
    );
}
