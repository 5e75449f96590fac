//! Runs the `baton` binary against a fake in-process coordinator: output, exit statuses, error
//! reporting, the fall back to polling when the event stream ends before the run does, and the
//! requests that `event publish`, `task list/complete` and `schedule ...` send.

use std::io::Write as _;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_shared::proto::event_service_server::{EventService, EventServiceServer};
use baton_shared::proto::human_task_service_server::{HumanTaskService, HumanTaskServiceServer};
use baton_shared::proto::run_service_server::{RunService, RunServiceServer};
use baton_shared::proto::schedule_service_server::{ScheduleService, ScheduleServiceServer};
use baton_shared::proto::workflow_service_server::{WorkflowService, WorkflowServiceServer};
use baton_shared::proto::{
    CancelRunRequest, CompleteHumanTaskRequest, CreateScheduleRequest, DeleteScheduleResponse, GetRunRequest,
    GetWorkflowRequest, HumanTask, ListHumanTasksRequest, ListHumanTasksResponse, ListRunsRequest, ListRunsResponse,
    ListScheduleTicksRequest, ListScheduleTicksResponse, ListSchedulesRequest, ListSchedulesResponse,
    ListWorkflowsRequest, ListWorkflowsResponse, PublishEventRequest, PublishEventResponse, RegisterWorkflowRequest,
    RegisterWorkflowResponse, RerunRunRequest, RetryRunRequest, Run, RunEvent, RunOperationResponse, RunStatus,
    Schedule, ScheduleRef, ScheduleTick, StepRef, StepRun, StepStatus, SubmitRunRequest, SubmitRunResponse,
    WatchRunRequest, Workflow,
};
use baton_shared::time::{now_ms, timestamp};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Run `ok` has succeeded. Run `slow` is running for its first two `GetRun`s, then failed; its
/// event stream ends early, after two events. Step `r-1/payment` waits for event `payment`; other
/// events are buffered; event `order.created` starts two runs. Task `r-1/approve` is open and
/// needs `{"approved": <bool>}`. Schedule `nightly` exists (of workflow `reports`, the only one that
/// schedules can be created for). The event, task and schedule requests are kept for the tests to
/// check.
#[derive(Default)]
struct Fake {
    slow_gets: Mutex<u32>,
    published: Mutex<Vec<PublishEventRequest>>,
    task_lists: Mutex<Vec<ListHumanTasksRequest>>,
    completions: Mutex<Vec<CompleteHumanTaskRequest>>,
    schedule_creates: Mutex<Vec<CreateScheduleRequest>>,
    schedule_lists: Mutex<Vec<ListSchedulesRequest>>,
    /// `<rpc> <id>` for the RPCs that take a schedule id (get, pause, resume, delete, trigger).
    schedule_calls: Mutex<Vec<String>>,
    tick_lists: Mutex<Vec<ListScheduleTicksRequest>>,
}

/// Keeps a request in `log`.
fn record<T>(log: &Mutex<Vec<T>>, request: T) -> Result<(), Status> {
    log.lock().map_err(|_| Status::internal("poisoned"))?.push(request);
    Ok(())
}

/// The requests kept in `log` so far.
fn recorded<T: Clone>(log: &Mutex<Vec<T>>) -> Vec<T> {
    log.lock().expect("not poisoned").clone()
}

/// The human task `r-1/approve`, open.
fn approve_task() -> HumanTask {
    HumanTask {
        run_id: "r-1".to_owned(),
        step_id: "approve".to_owned(),
        workflow: "refunds".to_owned(),
        workflow_version: 2,
        title: "Approve the refund".to_owned(),
        assignees: vec!["alice".to_owned(), "ops".to_owned()],
        form_schema_json: r#"{"type":"object","required":["approved"]}"#.to_owned(),
        status: "open".to_owned(),
        created_at: timestamp(1_740_830_400_000),
        ..HumanTask::default()
    }
}

/// 2025-03-01T12:00:00Z in Unix milliseconds.
const T0: i64 = 1_740_830_400_000;

/// The schedule `nightly`: `reports` every day at 02:00 in Paris, skipping overlapping ticks.
fn nightly() -> Schedule {
    Schedule {
        id: "nightly".to_owned(),
        workflow: "reports".to_owned(),
        cron: "0 2 * * *".to_owned(),
        timezone: "Europe/Paris".to_owned(),
        input_json: "{}".to_owned(),
        overlap: "skip".to_owned(),
        catchup_window_ms: 3_600_000,
        source: "api".to_owned(),
        created_at: timestamp(T0 - 86_400_000),
        next_tick_at: timestamp(T0 + 46_800_000),
        last_run_id: "sched-nightly-1".to_owned(),
        ..Schedule::default()
    }
}

/// A tick of `nightly`, `offset_ms` after T0.
fn nightly_tick(outcome: &str, offset_ms: i64, run_id: &str, reason: &str) -> ScheduleTick {
    ScheduleTick {
        schedule_id: "nightly".to_owned(),
        tick_at: timestamp(T0 + offset_ms),
        outcome: outcome.to_owned(),
        run_id: run_id.to_owned(),
        reason: reason.to_owned(),
        recorded_at: timestamp(T0 + offset_ms + 20),
    }
}

/// Keeps `<rpc> <id>` in `fake.schedule_calls`; NOT_FOUND unless the id is `nightly`.
fn schedule_call(fake: &Fake, rpc: &str, request: Request<ScheduleRef>) -> Result<(), Status> {
    let id = request.into_inner().id;
    record(&fake.schedule_calls, format!("{rpc} {id}"))?;
    if id == "nightly" {
        Ok(())
    } else {
        Err(Status::not_found(format!("schedule {id} not found")))
    }
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

    async fn get_step_logs(
        &self,
        _: Request<baton_shared::proto::GetStepLogsRequest>,
    ) -> Result<Response<baton_shared::proto::GetStepLogsResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn submit_run(&self, request: Request<SubmitRunRequest>) -> Result<Response<SubmitRunResponse>, Status> {
        match request.into_inner().workflow.as_str() {
            "good" => Ok(Response::new(SubmitRunResponse {
                run_id: "ok".to_owned(),
                created: false,
                input_differs: false,
            })),
            "bad" => Ok(Response::new(SubmitRunResponse {
                run_id: "slow".to_owned(),
                created: true,
                input_differs: false,
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
            ..Default::default()
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
                log: None,
                run: None,
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

    async fn delete_workflow_version(
        &self,
        _: Request<baton_shared::proto::DeleteWorkflowVersionRequest>,
    ) -> Result<Response<baton_shared::proto::DeleteWorkflowVersionResponse>, Status> {
        Err(Status::unimplemented("the fake coordinator deletes nothing"))
    }
}

#[tonic::async_trait]
impl EventService for Fake {
    async fn publish_event(
        &self,
        request: Request<PublishEventRequest>,
    ) -> Result<Response<PublishEventResponse>, Status> {
        let request = request.into_inner();
        record(&self.published, request.clone())?;
        match request.name.as_str() {
            "" => Err(Status::invalid_argument("name: must not be empty")),
            "payment" => Ok(Response::new(PublishEventResponse {
                delivered: vec![StepRef {
                    run_id: "r-1".to_owned(),
                    step_id: "payment".to_owned(),
                }],
                buffered: false,
                started_run_ids: vec![],
                trigger_errors: vec![],
            })),
            "order.created" => Ok(Response::new(PublishEventResponse {
                delivered: vec![],
                buffered: true,
                started_run_ids: vec!["ev-billing-1".to_owned(), "ev-audit-1".to_owned()],
                trigger_errors: vec![],
            })),
            _ => Ok(Response::new(PublishEventResponse {
                delivered: vec![],
                buffered: true,
                started_run_ids: vec![],
                trigger_errors: vec![],
            })),
        }
    }
    async fn list_buffered_events(
        &self,
        _: Request<baton_shared::proto::ListBufferedEventsRequest>,
    ) -> Result<Response<baton_shared::proto::ListBufferedEventsResponse>, Status> {
        Ok(Response::new(baton_shared::proto::ListBufferedEventsResponse::default()))
    }

    async fn purge_buffered_events(
        &self,
        _: Request<baton_shared::proto::PurgeBufferedEventsRequest>,
    ) -> Result<Response<baton_shared::proto::PurgeBufferedEventsResponse>, Status> {
        Ok(Response::new(
            baton_shared::proto::PurgeBufferedEventsResponse::default(),
        ))
    }
}

#[tonic::async_trait]
impl HumanTaskService for Fake {
    async fn list_human_tasks(
        &self,
        request: Request<ListHumanTasksRequest>,
    ) -> Result<Response<ListHumanTasksResponse>, Status> {
        record(&self.task_lists, request.into_inner())?;
        let done = HumanTask {
            run_id: "r-0".to_owned(),
            status: "completed".to_owned(),
            completed_by: "bob".to_owned(),
            completed_at: timestamp(1_740_830_460_000),
            data_json: r#"{"approved":false}"#.to_owned(),
            ..approve_task()
        };
        Ok(Response::new(ListHumanTasksResponse {
            tasks: vec![approve_task(), done],
        }))
    }

    async fn complete_human_task(
        &self,
        request: Request<CompleteHumanTaskRequest>,
    ) -> Result<Response<HumanTask>, Status> {
        let request = request.into_inner();
        record(&self.completions, request.clone())?;
        if (request.run_id.as_str(), request.step_id.as_str()) != ("r-1", "approve") {
            return Err(Status::not_found(format!(
                "no human task {}/{}",
                request.run_id, request.step_id
            )));
        }
        let data: serde_json::Value = serde_json::from_str(&request.data_json)
            .map_err(|e| Status::invalid_argument(format!("data_json: not JSON: {e}")))?;
        if !data["approved"].is_boolean() {
            return Err(Status::invalid_argument(format!(
                "data_json: /approved: {} is not of type \"boolean\"",
                data["approved"]
            )));
        }
        Ok(Response::new(HumanTask {
            status: "completed".to_owned(),
            completed_by: request.user,
            completed_at: timestamp(1_740_830_460_000),
            data_json: request.data_json,
            ..approve_task()
        }))
    }
}

#[tonic::async_trait]
impl ScheduleService for Fake {
    async fn create_schedule(&self, request: Request<CreateScheduleRequest>) -> Result<Response<Schedule>, Status> {
        let request = request.into_inner();
        record(&self.schedule_creates, request.clone())?;
        let fields = request.cron.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(Status::invalid_argument(format!(
                "cron: expected 5 or 6 fields, got {fields}"
            )));
        }
        if request.workflow != "reports" {
            return Err(Status::not_found(format!("workflow {} not found", request.workflow)));
        }
        Ok(Response::new(Schedule {
            id: if request.id.is_empty() {
                "sch-generated".to_owned()
            } else {
                request.id
            },
            workflow: request.workflow,
            workflow_version: request.workflow_version,
            cron: request.cron,
            timezone: request.timezone,
            input_json: request.input_json,
            overlap: request.overlap,
            catchup_window_ms: request.catchup_window_ms,
            paused: false,
            source: "api".to_owned(),
            created_at: timestamp(T0),
            next_tick_at: timestamp(T0 + 3_600_000),
            last_run_id: String::new(),
        }))
    }

    async fn get_schedule(&self, request: Request<ScheduleRef>) -> Result<Response<Schedule>, Status> {
        schedule_call(self, "get", request)?;
        Ok(Response::new(nightly()))
    }

    async fn list_schedules(
        &self,
        request: Request<ListSchedulesRequest>,
    ) -> Result<Response<ListSchedulesResponse>, Status> {
        record(&self.schedule_lists, request.into_inner())?;
        Ok(Response::new(ListSchedulesResponse {
            schedules: vec![nightly()],
        }))
    }

    async fn pause_schedule(&self, request: Request<ScheduleRef>) -> Result<Response<Schedule>, Status> {
        schedule_call(self, "pause", request)?;
        Ok(Response::new(Schedule {
            paused: true,
            next_tick_at: None,
            ..nightly()
        }))
    }

    async fn resume_schedule(&self, request: Request<ScheduleRef>) -> Result<Response<Schedule>, Status> {
        schedule_call(self, "resume", request)?;
        Ok(Response::new(nightly()))
    }

    async fn delete_schedule(&self, request: Request<ScheduleRef>) -> Result<Response<DeleteScheduleResponse>, Status> {
        schedule_call(self, "delete", request)?;
        Ok(Response::new(DeleteScheduleResponse {}))
    }

    async fn trigger_schedule(&self, request: Request<ScheduleRef>) -> Result<Response<ScheduleTick>, Status> {
        schedule_call(self, "trigger", request)?;
        Ok(Response::new(nightly_tick(
            "triggered",
            60_000,
            "sched-nightly-t-2",
            "",
        )))
    }

    async fn list_schedule_ticks(
        &self,
        request: Request<ListScheduleTicksRequest>,
    ) -> Result<Response<ListScheduleTicksResponse>, Status> {
        let request = request.into_inner();
        record(&self.tick_lists, request.clone())?;
        if request.id != "nightly" {
            return Err(Status::not_found(format!("schedule {} not found", request.id)));
        }
        let mut ticks = vec![
            nightly_tick("triggered", 60_000, "sched-nightly-t-2", ""),
            nightly_tick("skipped", 0, "", "run sched-nightly-1 is still running"),
            nightly_tick("fired", -86_400_000, "sched-nightly-1", ""),
        ];
        if request.limit > 0 {
            ticks.truncate(request.limit as usize);
        }
        Ok(Response::new(ListScheduleTicksResponse { ticks }))
    }
}

/// Starts the fake coordinator and answers its address as `host:port`.
async fn start() -> String {
    start_fake().await.0
}

/// Starts the fake coordinator and answers its address as `host:port` and the fake, to look at
/// the requests it got.
async fn start_fake() -> (String, Arc<Fake>) {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind")
        .with_nodelay(Some(true));
    let addr = incoming.local_addr().expect("local address");
    let fake = Arc::new(Fake::default());
    tokio::spawn(
        Server::builder()
            .add_service(RunServiceServer::from_arc(fake.clone()))
            .add_service(WorkflowServiceServer::from_arc(fake.clone()))
            .add_service(EventServiceServer::from_arc(fake.clone()))
            .add_service(HumanTaskServiceServer::from_arc(fake.clone()))
            .add_service(ScheduleServiceServer::from_arc(fake.clone()))
            .serve_with_incoming(incoming),
    );
    (addr.to_string(), fake)
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

/// Runs `baton` with `args` against `addr`, with `USER` set to `user` (unset for `None`) and `stdin`
/// as its standard input.
async fn baton_with(addr: &str, args: &[&str], user: Option<&str>, stdin: &str) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_baton"));
    command
        .args(args)
        .env("BATON_ADDR", addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match user {
        Some(user) => command.env("USER", user),
        None => command.env_remove("USER"),
    };
    let stdin = stdin.to_owned();
    let run = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("baton runs");
        let mut input = child.stdin.take().expect("a stdin pipe");
        // baton may exit without reading it all: a broken pipe here is not the test's business.
        let _ = input.write_all(stdin.as_bytes());
        drop(input);
        child.wait_with_output().expect("baton runs")
    });
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("baton took too long")
        .expect("baton's thread")
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
    assert_eq!(
        lines[0],
        serde_json::json!({"run_id": "ok", "created": false, "input_differs": false})
    );
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

#[tokio::test]
async fn event_publish_sends_name_key_and_payload() {
    let (addr, fake) = start_fake().await;
    let out = baton(
        &addr,
        &[
            "event",
            "publish",
            "payment",
            "--key",
            "42",
            "--payload",
            r#"{"amount": 5}"#,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "delivered to 1 step(s):\n  r-1  payment\n");

    // No payload: `null`. Nothing waiting: buffered. JSON: the answer.
    let out = baton(&addr, &["event", "publish", "shipped", "--key", "", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(
        answer,
        serde_json::json!({"delivered": [], "buffered": true, "started_run_ids": []})
    );
    let out = baton(&addr, &["event", "publish", "shipped", "--key", "k"]).await;
    assert_eq!(
        stdout(&out),
        "no step was waiting; buffered for the coordinator's event TTL\n"
    );

    let expected = |name: &str, key: &str, payload: &str| PublishEventRequest {
        name: name.to_owned(),
        key: key.to_owned(),
        payload_json: payload.to_owned(),
    };
    assert_eq!(
        recorded(&fake.published),
        [
            expected("payment", "42", r#"{"amount": 5}"#),
            expected("shipped", "", "null"),
            expected("shipped", "k", "null"),
        ]
    );
}

#[tokio::test]
async fn event_payloads_come_from_files_and_standard_input() {
    let (addr, fake) = start_fake().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("payload.json");
    std::fs::write(&file, "[1, 2]\n").expect("write");
    let at_file = format!("@{}", file.display());
    let out = baton(&addr, &["event", "publish", "payment", "--key", "1", "-p", &at_file]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = baton_with(
        &addr,
        &["event", "publish", "payment", "--key", "2", "--payload", "-"],
        None,
        r#"{"from": "stdin"}"#,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let payloads: Vec<String> = recorded(&fake.published).into_iter().map(|r| r.payload_json).collect();
    assert_eq!(payloads, ["[1, 2]\n", r#"{"from": "stdin"}"#]);

    // Not JSON: refused before anything is sent.
    let out = baton(&addr, &["event", "publish", "payment", "--key", "3", "-p", "{oops"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: --payload is not valid JSON"),
        "{}",
        stderr(&out)
    );
    assert_eq!(recorded(&fake.published).len(), 2);

    // The server's INVALID_ARGUMENT as it is.
    let out = baton(&addr, &["event", "publish", "", "--key", "k"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "error: INVALID_ARGUMENT: name: must not be empty\n");
}

#[tokio::test]
async fn task_list_sends_the_filters_and_prints_the_tasks() {
    let (addr, fake) = start_fake().await;
    let out = baton(
        &addr,
        &[
            "task",
            "list",
            "--assignee",
            "alice",
            "--workflow",
            "refunds",
            "--status",
            "open",
            "--limit",
            "5",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "RUN  STEP     TITLE               ASSIGNEES   STATUS     CREATED               COMPLETED BY\n\
         r-1  approve  Approve the refund  alice, ops  open       2025-03-01T12:00:00Z  -\n\
         r-0  approve  Approve the refund  alice, ops  completed  2025-03-01T12:00:00Z  bob\n"
    );

    let out = baton(&addr, &["task", "list", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let tasks: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(tasks.as_array().map(Vec::len), Some(2), "{tasks}");
    assert_eq!(tasks[0]["status"], "open");
    assert!(tasks[0]["data"].is_null());
    assert_eq!(tasks[1]["completed_by"], "bob");
    assert_eq!(tasks[1]["data"], serde_json::json!({"approved": false}));
    assert_eq!(tasks[1]["form_schema"]["required"][0], "approved");

    assert_eq!(
        recorded(&fake.task_lists),
        [
            ListHumanTasksRequest {
                assignee: "alice".to_owned(),
                workflow: "refunds".to_owned(),
                status: "open".to_owned(),
                limit: 5,
            },
            ListHumanTasksRequest::default(),
        ]
    );
}

#[tokio::test]
async fn task_complete_sends_user_and_data_and_prints_the_task() {
    let (addr, fake) = start_fake().await;
    let out = baton_with(
        &addr,
        &[
            "task",
            "complete",
            "r-1",
            "approve",
            "--data",
            r#"{"approved": true}"#,
            "--user",
            "bob",
        ],
        Some("alice"),
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Run:           r-1\n\
         Step:          approve\n\
         Workflow:      refunds@2\n\
         Title:         Approve the refund\n\
         Assignees:     alice, ops\n\
         Status:        completed\n\
         Created:       2025-03-01T12:00:00Z\n\
         Completed by:  bob\n\
         Completed at:  2025-03-01T12:01:00Z\n\
         Data:          {\"approved\":true}\n"
    );

    // Without --user: $USER. Data from standard input; JSON output.
    let out = baton_with(
        &addr,
        &["task", "complete", "r-1", "approve", "--data", "-", "-o", "json"],
        Some("alice"),
        r#"{"approved": false}"#,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let task: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(task["completed_by"], "alice");
    assert_eq!(task["completed_at"], "2025-03-01T12:01:00.000Z");
    assert_eq!(task["data"], serde_json::json!({"approved": false}));

    let expected = |user: &str, data: &str| CompleteHumanTaskRequest {
        run_id: "r-1".to_owned(),
        step_id: "approve".to_owned(),
        user: user.to_owned(),
        data_json: data.to_owned(),
    };
    assert_eq!(
        recorded(&fake.completions),
        [
            expected("bob", r#"{"approved": true}"#),
            expected("alice", r#"{"approved": false}"#),
        ]
    );
}

#[tokio::test]
async fn task_complete_prints_invalid_argument_as_it_is_and_exits_2() {
    let (addr, fake) = start_fake().await;
    let out = baton(
        &addr,
        &[
            "task",
            "complete",
            "r-1",
            "approve",
            "--data",
            r#"{"approved": "yes"}"#,
            "--user",
            "bob",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        "error: INVALID_ARGUMENT: data_json: /approved: \"yes\" is not of type \"boolean\"\n"
    );

    let out = baton(
        &addr,
        &["task", "complete", "r-9", "approve", "--data", "{}", "--user", "bob"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "error: NOT_FOUND: no human task r-9/approve\n");
    assert_eq!(recorded(&fake.completions).len(), 2);
}

#[tokio::test]
async fn task_complete_needs_a_user_and_json_data_before_connecting() {
    // Nothing listens on port 1: these errors must come first.
    let out = baton_with(
        "127.0.0.1:1",
        &["task", "complete", "r-1", "approve", "--data", "{}"],
        None,
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "error: --user: required (or set $USER)\n");

    let out = baton_with(
        "127.0.0.1:1",
        &["task", "complete", "r-1", "approve", "--data", "{oops"],
        Some("alice"),
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: --data is not valid JSON"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn event_publish_prints_the_runs_it_started() {
    let addr = start().await;
    let out = baton(&addr, &["event", "publish", "order.created", "--key", "o-1"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "no step was waiting; buffered for the coordinator's event TTL\n\
         started 2 run(s): ev-billing-1, ev-audit-1\n"
    );
    let out = baton(
        &addr,
        &["event", "publish", "order.created", "--key", "o-1", "-o", "json"],
    )
    .await;
    let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(
        answer["started_run_ids"],
        serde_json::json!(["ev-billing-1", "ev-audit-1"])
    );
}

#[tokio::test]
async fn schedule_create_sends_the_request_and_prints_the_schedule() {
    let (addr, fake) = start_fake().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("input.json");
    std::fs::write(&file, "{\"format\": \"pdf\"}\n").expect("write");
    let at_file = format!("@{}", file.display());
    let out = baton(
        &addr,
        &[
            "schedule",
            "create",
            "--workflow",
            "reports",
            "--version",
            "2",
            "--cron",
            "0 2 * * *",
            "--timezone",
            "Europe/Paris",
            "--input",
            &at_file,
            "--overlap",
            "cancel_other",
            "--catchup-window",
            "1h 30m",
            "--id",
            "reports-nightly",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Schedule:         reports-nightly\n\
         Workflow:         reports@2\n\
         Cron:             0 2 * * *\n\
         Timezone:         Europe/Paris\n\
         Overlap:          cancel_other\n\
         Catch-up window:  1h30m\n\
         State:            active\n\
         Next tick:        2025-03-01T13:00:00Z\n\
         Last run:         -\n\
         Source:           api\n\
         Created:          2025-03-01T12:00:00Z\n\
         Input:            {\"format\":\"pdf\"}\n"
    );

    // The defaults: nothing but the workflow and the expression is sent. JSON: the schedule.
    let out = baton(
        &addr,
        &[
            "schedule",
            "create",
            "--workflow",
            "reports",
            "--cron",
            "*/5 * * * *",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let schedule: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(schedule["id"], "sch-generated");
    assert_eq!(schedule["timezone"], "UTC");
    assert_eq!(schedule["overlap"], "skip");
    assert_eq!(schedule["input"], serde_json::json!({}));
    assert!(schedule["workflow_version"].is_null() && schedule["catchup_window_ms"].is_null());
    assert_eq!(schedule["next_tick_at"], "2025-03-01T13:00:00.000Z");

    assert_eq!(
        recorded(&fake.schedule_creates),
        [
            CreateScheduleRequest {
                id: "reports-nightly".to_owned(),
                workflow: "reports".to_owned(),
                workflow_version: 2,
                cron: "0 2 * * *".to_owned(),
                timezone: "Europe/Paris".to_owned(),
                input_json: "{\"format\": \"pdf\"}\n".to_owned(),
                overlap: "cancel_other".to_owned(),
                catchup_window_ms: 5_400_000,
            },
            CreateScheduleRequest {
                workflow: "reports".to_owned(),
                cron: "*/5 * * * *".to_owned(),
                ..CreateScheduleRequest::default()
            },
        ]
    );
}

#[tokio::test]
async fn schedule_create_prints_invalid_argument_as_it_is_and_exits_2() {
    let (addr, fake) = start_fake().await;
    let out = baton(
        &addr,
        &[
            "schedule",
            "create",
            "--workflow",
            "reports",
            "--cron",
            "0 2 *",
            "--input",
            r#"{"a": 1}"#,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        "error: INVALID_ARGUMENT: cron: expected 5 or 6 fields, got 3\n"
    );

    let out = baton(
        &addr,
        &["schedule", "create", "--workflow", "nope", "--cron", "@daily x y z w"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "error: NOT_FOUND: workflow nope not found\n");
    assert_eq!(recorded(&fake.schedule_creates).len(), 2);
    assert_eq!(recorded(&fake.schedule_creates)[0].input_json, r#"{"a": 1}"#);
}

#[tokio::test]
async fn schedule_create_checks_its_input_and_window_before_connecting() {
    // Nothing listens on port 1: these errors must come first.
    let args = ["schedule", "create", "--workflow", "reports", "--cron", "0 2 * * *"];
    let out = baton("127.0.0.1:1", &[&args[..], &["--input", "{oops"]].concat()).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: --input is not valid JSON"),
        "{}",
        stderr(&out)
    );
    let out = baton("127.0.0.1:1", &[&args[..], &["--catchup-window", "0s"]].concat()).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--catchup-window"), "{}", stderr(&out));
}

#[tokio::test]
async fn schedule_history_prints_the_ledger() {
    let (addr, fake) = start_fake().await;
    let out = baton(&addr, &["schedule", "history", "nightly"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "TICK                  OUTCOME    RUN                REASON\n\
         2025-03-01T12:01:00Z  triggered  sched-nightly-t-2\n\
         2025-03-01T12:00:00Z  skipped    -                  run sched-nightly-1 is still running\n\
         2025-02-28T12:00:00Z  fired      sched-nightly-1\n"
    );

    let out = baton(&addr, &["schedule", "history", "nightly", "--limit", "2", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ticks: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(ticks.as_array().map(Vec::len), Some(2), "{ticks}");
    assert_eq!(ticks[1]["outcome"], "skipped");
    assert!(ticks[1]["run_id"].is_null());
    assert_eq!(ticks[1]["tick_at"], "2025-03-01T12:00:00.000Z");

    let out = baton(&addr, &["schedule", "history", "weekly"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "error: NOT_FOUND: schedule weekly not found\n");

    let expected = |id: &str, limit: u32| ListScheduleTicksRequest {
        id: id.to_owned(),
        limit,
    };
    assert_eq!(
        recorded(&fake.tick_lists),
        [expected("nightly", 0), expected("nightly", 2), expected("weekly", 0)]
    );
}

#[tokio::test]
async fn schedule_trigger_prints_the_tick() {
    let (addr, fake) = start_fake().await;
    let out = baton(&addr, &["schedule", "trigger", "nightly"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Schedule:  nightly\n\
         Tick:      2025-03-01T12:01:00Z\n\
         Outcome:   triggered\n\
         Run:       sched-nightly-t-2\n\
         Reason:    -\n\
         Recorded:  2025-03-01T12:01:00Z\n"
    );
    let out = baton(&addr, &["schedule", "trigger", "nightly", "-o", "json"]).await;
    let tick: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(
        tick,
        serde_json::json!({
            "schedule_id": "nightly",
            "tick_at": "2025-03-01T12:01:00.000Z",
            "outcome": "triggered",
            "run_id": "sched-nightly-t-2",
            "reason": null,
            "recorded_at": "2025-03-01T12:01:00.020Z",
        })
    );
    assert_eq!(recorded(&fake.schedule_calls), ["trigger nightly", "trigger nightly"]);
}

#[tokio::test]
async fn schedule_list_get_pause_resume_and_delete() {
    let (addr, fake) = start_fake().await;
    let out = baton(&addr, &["schedule", "list", "--workflow", "reports"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "ID       WORKFLOW  CRON       TIMEZONE      OVERLAP  NEXT TICK             STATE   LAST RUN\n\
         nightly  reports   0 2 * * *  Europe/Paris  skip     2025-03-02T01:00:00Z  active  sched-nightly-1\n"
    );
    let out = baton(&addr, &["schedule", "list", "-o", "json"]).await;
    let schedules: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(schedules[0]["catchup_window_ms"], 3_600_000);
    assert_eq!(
        recorded(&fake.schedule_lists),
        [
            ListSchedulesRequest {
                workflow: "reports".to_owned()
            },
            ListSchedulesRequest::default(),
        ]
    );

    let out = baton(&addr, &["schedule", "get", "nightly"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Workflow:         reports (latest version)\n"),
        "{}",
        stdout(&out)
    );

    let out = baton(&addr, &["schedule", "pause", "nightly"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("State:            paused\n") && text.contains("Next tick:        -\n"),
        "{text}"
    );
    let out = baton(&addr, &["schedule", "resume", "nightly", "-o", "json"]).await;
    let schedule: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(schedule["paused"], false);

    let out = baton(&addr, &["schedule", "delete", "nightly"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "schedule nightly deleted\n");
    let out = baton(&addr, &["schedule", "delete", "nightly", "-o", "json"]).await;
    let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(answer, serde_json::json!({"id": "nightly", "deleted": true}));
    let out = baton(&addr, &["schedule", "delete", "weekly"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "error: NOT_FOUND: schedule weekly not found\n");

    assert_eq!(
        recorded(&fake.schedule_calls),
        [
            "get nightly",
            "pause nightly",
            "resume nightly",
            "delete nightly",
            "delete nightly",
            "delete weekly"
        ]
    );
}
