//! The HTTP API's JSON shapes and the one place where they convert to and from the protobuf
//! messages of `baton.v1`: `foo_json` text becomes a real JSON value `foo` (`null` when empty),
//! timestamps RFC 3339 strings, enums lower-case words. See `docs/http-api.md`.

use baton_shared::proto;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

#[allow(unused_imports)] // named by `#[schema(value_type = ...)]` only
use super::schema::{
    CatchupWindowMs, Cron, EventName, Key, OverlapWord, RunId, RunStatusWord, ScheduleId, ShortId, StepStatusWord,
    TaskStatusWord, Text, TimeZone, WorkflowName,
};

/// `text` (a `*_json` field) as a JSON value: `null` when empty. Stored payloads were checked when
/// they entered, so a text that does not parse is kept as a JSON string rather than lost.
pub fn json(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Null;
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// `value` as the `*_json` text of a request: empty for `null` or absent (the gRPC default).
pub fn json_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(v) => v.to_string(),
    }
}

/// RFC 3339 in UTC with milliseconds, or `None` for an absent or out-of-range timestamp.
pub fn time(t: Option<&prost_types::Timestamp>) -> Option<String> {
    let t = t?;
    let nanos = u32::try_from(t.nanos).ok()?;
    chrono::DateTime::from_timestamp(t.seconds, nanos).map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// An RFC 3339 time as a protobuf timestamp; `Err` with the parser's reason.
pub fn parse_time(s: &str) -> Result<prost_types::Timestamp, String> {
    let d = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| format!("not an RFC 3339 time: {e}"))?;
    Ok(prost_types::Timestamp {
        seconds: d.timestamp(),
        nanos: i32::try_from(d.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

/// A run status word of the protobuf enum value `v` (`"unspecified"` for an unknown value).
fn run_status(v: i32) -> String {
    proto::RunStatus::try_from(v)
        .unwrap_or(proto::RunStatus::Unspecified)
        .word()
        .to_string()
}

fn step_status(v: i32) -> String {
    proto::StepStatus::try_from(v)
        .unwrap_or(proto::StepStatus::Unspecified)
        .word()
        .to_string()
}

fn worker_state(v: i32) -> String {
    match proto::WorkerState::try_from(v) {
        Ok(proto::WorkerState::Running) => "running",
        Ok(proto::WorkerState::Draining) => "draining",
        Ok(proto::WorkerState::Stopped) => "stopped",
        _ => "unspecified",
    }
    .to_string()
}

// ------------------------------------------------------------------------------------------
// Errors and health
// ------------------------------------------------------------------------------------------

/// Every error answer: the gRPC code's name, the message, and the request field at fault.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The gRPC status code's name, e.g. `INVALID_ARGUMENT`, `NOT_FOUND`.
    pub code: String,
    /// What went wrong (as over gRPC).
    pub message: String,
    /// The field at fault (`workflow`, `steps[2].retry.max_interval`, `data/amount`), when the
    /// error is about one field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The answer of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    /// `SERVING` or `NOT_SERVING` (as gRPC health).
    pub status: String,
}

// ------------------------------------------------------------------------------------------
// Workflows
// ------------------------------------------------------------------------------------------

/// `POST /v1/workflows`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterWorkflowBody {
    /// The definition: YAML or JSON text, or a JSON object (registered as JSON).
    pub definition: Value,
}

/// The answer of `POST /v1/workflows`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterWorkflowAnswer {
    /// The stored workflow.
    pub workflow: Workflow,
    /// False when this exact definition was already registered.
    pub created: bool,
}

/// `GET /v1/workflows`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowList {
    /// The latest version of every registered workflow, in name order, a page at a time.
    pub workflows: Vec<Workflow>,
    /// For the next page (`?page_token=`); empty on the last.
    pub next_page_token: String,
}

/// An edge of a workflow's graph: `to` depends on `from`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Edge {
    /// The step depended on.
    pub from: String,
    /// The dependent step.
    pub to: String,
}

/// A registered workflow definition.
#[derive(Debug, Serialize, ToSchema)]
pub struct Workflow {
    /// Name.
    pub name: String,
    /// Version.
    pub version: u32,
    /// Description.
    pub description: String,
    /// Steps in definition order.
    pub steps: Vec<StepDefinition>,
    /// The graph: one edge per `depends_on` entry.
    pub edges: Vec<Edge>,
    /// The JSON Schema run inputs must satisfy; `null` when none.
    pub input_schema: Value,
    /// The normalised definition the coordinator stored.
    pub definition: Value,
    /// When it was registered.
    pub registered_at: Option<String>,
    /// Every registered version, ascending.
    pub versions: Vec<u32>,
    /// Runs at once (0: no limit), per value of `concurrency_key`.
    pub max_concurrent_runs: u32,
    /// CEL over the input.
    pub concurrency_key: String,
    /// The event that starts a run (empty: none).
    pub on_event: String,
    /// CEL filter over the event's `payload`.
    pub on_event_filter: String,
}

/// A step of a workflow definition (see `StepDefinition` in `baton.proto`).
#[derive(Debug, Serialize, ToSchema)]
pub struct StepDefinition {
    /// Step id.
    pub id: String,
    /// Handler (task steps).
    pub handler: String,
    /// `task`, `sleep`, `sleep_until`, `wait_for_event`, `human` or `workflow`.
    pub kind: String,
    /// Steps it depends on.
    pub depends_on: Vec<String>,
    /// CEL condition (empty: always runs).
    pub when: String,
    /// Input template; `null`: the step gets the run input.
    pub input_template: Value,
    /// Retry policy.
    pub retry: Option<RetryPolicy>,
    /// Start-to-close timeout, ms.
    pub timeout_ms: u64,
    /// Heartbeat timeout, ms (0: none).
    pub heartbeat_timeout_ms: u64,
    /// Schedule-to-start timeout, ms (0: the coordinator's default).
    pub schedule_to_start_ms: u64,
    /// Sleep duration of a sleep step, ms.
    pub sleep_ms: u64,
    /// CEL timestamp of a `sleep_until` step.
    pub sleep_until: String,
    /// CEL list of a fan-out step.
    pub for_each: String,
    /// Fan-out elements at once.
    pub max_parallel: u32,
    /// A `wait_for_event` step's event.
    pub wait_for_event: Option<WaitForEvent>,
    /// A human step's form.
    pub human: Option<HumanStep>,
    /// A workflow step's child workflow.
    pub workflow: String,
    /// Its version (0: latest).
    pub workflow_version: u32,
    /// Concurrency slot.
    pub concurrency: Option<Concurrency>,
    /// Rate limit.
    pub rate_limit: Option<RateLimit>,
    /// Runs emitted from the step's output.
    pub emit: Option<Emit>,
}

/// A step's retry policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryPolicy {
    /// Attempts in all.
    pub max_attempts: u32,
    /// First delay, ms.
    pub initial_interval_ms: u64,
    /// Growth per attempt.
    pub backoff_coefficient: f64,
    /// Largest delay, ms.
    pub max_interval_ms: u64,
    /// Jitter fraction.
    pub jitter: f64,
    /// Error types never retried.
    pub non_retryable_errors: Vec<String>,
}

/// A `wait_for_event` step's event.
#[derive(Debug, Serialize, ToSchema)]
pub struct WaitForEvent {
    /// Event name.
    pub event: String,
    /// CEL correlation key.
    pub key: String,
    /// Timeout, ms (0: for ever).
    pub timeout_ms: u64,
    /// `fail` or `skip`.
    pub on_timeout: String,
}

/// A human step's screen.
#[derive(Debug, Serialize, ToSchema)]
pub struct HumanStep {
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Who may complete it (empty: anyone with `operate`).
    pub assignees: Vec<String>,
    /// The JSON Schema the submitted data must satisfy.
    pub form_schema: Value,
}

/// A concurrency slot.
#[derive(Debug, Serialize, ToSchema)]
pub struct Concurrency {
    /// Slots.
    pub limit: u32,
    /// CEL key.
    pub key: String,
}

/// A rate limit.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimit {
    /// Starts per period.
    pub limit: u32,
    /// Period, ms.
    pub period_ms: u64,
    /// CEL key.
    pub key: String,
}

/// Runs emitted from a step.
#[derive(Debug, Serialize, ToSchema)]
pub struct Emit {
    /// The processor workflow.
    pub workflow: String,
    /// CEL list of items.
    pub items: String,
    /// CEL key per item.
    pub key: String,
    /// Whether the step waits for the children.
    pub wait: bool,
    /// Children unfinished at once.
    pub max_in_flight: u32,
}

impl From<proto::Workflow> for Workflow {
    fn from(w: proto::Workflow) -> Self {
        let edges = w
            .steps
            .iter()
            .flat_map(|s| {
                s.depends_on.iter().map(|d| Edge {
                    from: d.clone(),
                    to: s.id.clone(),
                })
            })
            .collect();
        Self {
            name: w.name,
            version: w.version,
            description: w.description,
            edges,
            steps: w.steps.into_iter().map(StepDefinition::from).collect(),
            input_schema: json(&w.input_schema_json),
            definition: json(&w.definition_json),
            registered_at: time(w.registered_at.as_ref()),
            versions: w.versions,
            max_concurrent_runs: w.max_concurrent_runs,
            concurrency_key: w.concurrency_key,
            on_event: w.on_event,
            on_event_filter: w.on_event_filter,
        }
    }
}

impl From<proto::StepDefinition> for StepDefinition {
    fn from(s: proto::StepDefinition) -> Self {
        Self {
            id: s.id,
            handler: s.handler,
            kind: s.kind,
            depends_on: s.depends_on,
            when: s.when,
            input_template: json(&s.input_template_json),
            retry: s.retry.map(|r| RetryPolicy {
                max_attempts: r.max_attempts,
                initial_interval_ms: r.initial_interval_ms,
                backoff_coefficient: r.backoff_coefficient,
                max_interval_ms: r.max_interval_ms,
                jitter: r.jitter,
                non_retryable_errors: r.non_retryable_errors,
            }),
            timeout_ms: s.timeout_ms,
            heartbeat_timeout_ms: s.heartbeat_timeout_ms,
            schedule_to_start_ms: s.schedule_to_start_ms,
            sleep_ms: s.sleep_ms,
            sleep_until: s.sleep_until,
            for_each: s.for_each,
            max_parallel: s.max_parallel,
            wait_for_event: s.wait_for_event.map(|w| WaitForEvent {
                event: w.event,
                key: w.key,
                timeout_ms: w.timeout_ms,
                on_timeout: w.on_timeout,
            }),
            human: s.human.map(|h| HumanStep {
                title: h.title,
                description: h.description,
                assignees: h.assignees,
                form_schema: json(&h.form_schema_json),
            }),
            workflow: s.workflow,
            workflow_version: s.workflow_version,
            concurrency: s.concurrency.map(|c| Concurrency {
                limit: c.limit,
                key: c.key,
            }),
            rate_limit: s.rate_limit.map(|r| RateLimit {
                limit: r.limit,
                period_ms: r.period_ms,
                key: r.key,
            }),
            emit: s.emit.map(|e| Emit {
                workflow: e.workflow,
                items: e.items,
                key: e.key,
                wait: e.wait,
                max_in_flight: e.max_in_flight,
            }),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Runs
// ------------------------------------------------------------------------------------------

/// `POST /v1/runs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRunBody {
    /// The workflow's name.
    #[schema(value_type = WorkflowName)]
    pub workflow: String,
    /// Its version; 0 or absent: the latest.
    #[serde(default)]
    pub version: u32,
    /// The run input (any JSON); absent or `null`: `{}`.
    #[serde(default)]
    pub input: Option<Value>,
    /// The same (workflow, key) always answers the same run; at most 1024 bytes.
    #[serde(default)]
    #[schema(value_type = Key)]
    pub idempotency_key: String,
}

/// The answer of `POST /v1/runs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubmitRunAnswer {
    /// The run.
    #[schema(value_type = RunId)]
    pub run_id: String,
    /// False when the idempotency key matched an existing run.
    pub created: bool,
    /// With `created: false`: whether this call's input differs from the existing run's.
    pub input_differs: bool,
}

/// `POST /v1/runs/{run_id}/cancel`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRunBody {
    /// Shown as the run's error; at most 4096 bytes.
    #[serde(default)]
    #[schema(value_type = Text)]
    pub reason: String,
}

/// An empty request body (`{}` or nothing).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// An empty answer (`{}`).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct EmptyAnswer {}

/// `POST /v1/runs/{run_id}/rerun`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerunRunBody {
    /// The step to start again from (required); at most 200 bytes.
    #[serde(default)]
    #[schema(value_type = ShortId)]
    pub from_step: String,
    /// A new run input; absent or `null` keeps the old one.
    #[serde(default)]
    pub input: Option<Value>,
}

/// The answer of cancel, retry and rerun.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunOperation {
    /// The run.
    #[schema(value_type = RunId)]
    pub run_id: String,
    /// Its status after the operation.
    #[schema(value_type = RunStatusWord)]
    pub status: String,
    /// Steps dispatched by the operation.
    pub dispatched_steps: Vec<String>,
}

impl From<proto::RunOperationResponse> for RunOperation {
    fn from(r: proto::RunOperationResponse) -> Self {
        Self {
            run_id: r.run_id,
            status: run_status(r.status),
            dispatched_steps: r.dispatched_steps,
        }
    }
}

/// `GET /v1/runs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    /// Newest first; `steps` is empty in lists.
    pub runs: Vec<Run>,
    /// For the next page; empty on the last.
    pub next_page_token: String,
    /// With `counts=true`: how many runs match the filters, by status word, over every matching
    /// run (not only this page); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_counts: Option<std::collections::BTreeMap<String, u64>>,
    /// True when matching runs may be missing: the archive could not be read (the runs and
    /// counts are those still in Redis), or the counts stopped at the bound of a scan of Redis.
    pub partial: bool,
    /// Why the answer is partial (absent when it is not), e.g. `the archive is unavailable: ...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_reason: Option<String>,
}

/// A run.
#[derive(Debug, Serialize, ToSchema)]
pub struct Run {
    /// Run id.
    #[schema(value_type = RunId)]
    pub id: String,
    /// Workflow.
    pub workflow: String,
    /// Workflow version.
    pub version: u32,
    /// `pending`, `running`, `succeeded`, `failed`, `cancelled` or `timed_out`.
    #[schema(value_type = RunStatusWord)]
    pub status: String,
    /// The run input.
    pub input: Value,
    /// The leaf steps' outputs keyed by step id, once it succeeded; else `null`.
    pub output: Value,
    /// Error.
    pub error: String,
    /// Idempotency key.
    pub idempotency_key: String,
    /// Created.
    pub created_at: Option<String>,
    /// Started.
    pub started_at: Option<String>,
    /// Finished.
    pub finished_at: Option<String>,
    /// Steps in definition order (empty in lists).
    pub steps: Vec<StepRun>,
    /// Parent run of a child run.
    pub parent_run_id: String,
    /// Parent step of a child run.
    pub parent_step_id: String,
    /// Child runs started by workflow steps.
    pub child_run_ids: Vec<String>,
    /// What a pending run waits for.
    pub waiting_for: String,
    /// Background items set aside.
    pub parked_items: Vec<String>,
}

/// A step of a run.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepRun {
    /// Step id.
    pub id: String,
    /// Handler.
    pub handler: String,
    /// As in the definition.
    pub kind: String,
    /// `pending`, `dispatched`, `running`, `retrying`, `succeeded`, `failed`, `skipped`,
    /// `cancelled` or `waiting`.
    #[schema(value_type = StepStatusWord)]
    pub status: String,
    /// Current attempt (1-based; 0 before the first dispatch).
    pub attempt: u32,
    /// Attempts per round.
    pub max_attempts: u32,
    /// Attempts before the last retry or rerun of the run.
    pub attempt_base: u32,
    /// Output (`null` when left out of the answer: see `output_omitted_bytes`).
    pub output: Value,
    /// The size in bytes of an output left out of this answer, 0 when `output` is whole. Without
    /// `step_id` an answer stays under 3 MiB: the run's input and output count first, then the
    /// steps' outputs in step order, each one that fits; read a left-out one with `?step_id=`.
    pub output_omitted_bytes: u64,
    /// While an attempt is in flight (running or waiting, not yet in `attempts`): the input it runs
    /// with; null otherwise, or when left out of the answer (`input_omitted_bytes`).
    pub input: Value,
    /// The size of that input when left out to keep the answer within its budget (bytes).
    pub input_omitted_bytes: u64,
    /// Last error.
    pub error: String,
    /// Dispatched.
    pub dispatched_at: Option<String>,
    /// Started.
    pub started_at: Option<String>,
    /// Finished.
    pub finished_at: Option<String>,
    /// When a sleeping step wakes.
    pub wake_at: Option<String>,
    /// Dependencies.
    pub depends_on: Vec<String>,
    /// The last finished attempts (at most 20), oldest first.
    pub attempts: Vec<Attempt>,
    /// Finished attempts older than those in `attempts`, only counted.
    pub earlier_attempts: u32,
    /// Worker that runs or ran it.
    pub worker: String,
    /// Child run of a workflow step.
    pub child_run_id: String,
    /// Fan-out progress.
    pub items: Option<ItemProgress>,
    /// Emitted runs, rolled up.
    pub emitted: Option<EmitProgress>,
    /// What it waits for.
    pub waiting_for: String,
    /// Who completed a human step.
    pub completed_by: String,
    /// Concurrency pool.
    pub slot: String,
    /// Attempts holding the pool's slots.
    pub slot_holders: Vec<String>,
}

/// A finished attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct Attempt {
    /// 1-based.
    pub number: u32,
    /// `succeeded`, `failed` or `timed_out`.
    pub outcome: String,
    /// Error.
    pub error: String,
    /// Worker.
    pub worker: String,
    /// Started.
    pub started_at: Option<String>,
    /// Finished.
    pub finished_at: Option<String>,
    /// The input the attempt ran with (the rendered `input:` template); null when no worker
    /// started it, or when left out of the answer (`input_omitted_bytes`).
    pub input: Value,
    /// The size of the input left out to keep the answer within its budget (bytes); 0 otherwise.
    pub input_omitted_bytes: u64,
    /// For a failed attempt: the error's type (e.g. `ValueError`, `Timeout`).
    pub error_type: String,
    /// For a failed attempt: a traceback or stack trace, at most 16 KiB.
    pub error_details: String,
    /// Log lines kept for the attempt (at most 1,000; read them at `/v1/runs/{id}/logs`).
    pub log_lines: u32,
}

/// Fan-out progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemProgress {
    /// Elements.
    pub total: u32,
    /// Succeeded.
    pub succeeded: u32,
    /// Failed.
    pub failed: u32,
    /// Dispatched, running or retrying.
    pub in_flight: u32,
}

/// Emitted child runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmitProgress {
    /// Children.
    pub total: u32,
    /// Not started.
    pub pending: u32,
    /// Running.
    pub running: u32,
    /// Succeeded.
    pub succeeded: u32,
    /// Failed, cancelled or timed out.
    pub failed: u32,
}

impl From<proto::Run> for Run {
    fn from(r: proto::Run) -> Self {
        Self {
            id: r.id,
            workflow: r.workflow,
            version: r.version,
            status: run_status(r.status),
            input: json(&r.input_json),
            output: json(&r.output_json),
            error: r.error,
            idempotency_key: r.idempotency_key,
            created_at: time(r.created_at.as_ref()),
            started_at: time(r.started_at.as_ref()),
            finished_at: time(r.finished_at.as_ref()),
            steps: r.steps.into_iter().map(StepRun::from).collect(),
            parent_run_id: r.parent_run_id,
            parent_step_id: r.parent_step_id,
            child_run_ids: r.child_run_ids,
            waiting_for: r.waiting_for,
            parked_items: r.parked_items,
        }
    }
}

impl From<proto::StepRun> for StepRun {
    fn from(s: proto::StepRun) -> Self {
        Self {
            id: s.id,
            handler: s.handler,
            kind: s.kind,
            status: step_status(s.status),
            attempt: s.attempt,
            max_attempts: s.max_attempts,
            attempt_base: s.attempt_base,
            output: json(&s.output_json),
            output_omitted_bytes: s.output_omitted_bytes,
            input: json(&s.input_json),
            input_omitted_bytes: s.input_omitted_bytes,
            error: s.error,
            dispatched_at: time(s.dispatched_at.as_ref()),
            started_at: time(s.started_at.as_ref()),
            finished_at: time(s.finished_at.as_ref()),
            wake_at: time(s.wake_at.as_ref()),
            depends_on: s.depends_on,
            attempts: s
                .attempts
                .into_iter()
                .map(|a| Attempt {
                    number: a.number,
                    outcome: a.outcome,
                    error: a.error,
                    worker: a.worker,
                    started_at: time(a.started_at.as_ref()),
                    finished_at: time(a.finished_at.as_ref()),
                    input: json(&a.input_json),
                    input_omitted_bytes: a.input_omitted_bytes,
                    error_type: a.error_type,
                    error_details: a.error_details,
                    log_lines: a.log_lines,
                })
                .collect(),
            earlier_attempts: s.earlier_attempts,
            worker: s.worker,
            child_run_id: s.child_run_id,
            items: s.items.map(|i| ItemProgress {
                total: i.total,
                succeeded: i.succeeded,
                failed: i.failed,
                in_flight: i.in_flight,
            }),
            emitted: s.emitted.map(|e| EmitProgress {
                total: e.total,
                pending: e.pending,
                running: e.running,
                succeeded: e.succeeded,
                failed: e.failed,
            }),
            waiting_for: s.waiting_for,
            completed_by: s.completed_by,
            slot: s.slot,
            slot_holders: s.slot_holders,
        }
    }
}

/// One event of a run's history (the `data:` of an SSE event).
#[derive(Debug, Serialize, ToSchema)]
pub struct RunEvent {
    /// Run id.
    pub run_id: String,
    /// Position in the run's history (increasing); the SSE `id:`.
    pub sequence: String,
    /// When.
    pub time: Option<String>,
    /// `run`, `step`, `custom` or `log`.
    pub kind: String,
    /// Empty for run events.
    pub step_id: String,
    /// Attempt.
    pub attempt: u32,
    /// The new status, lower case.
    pub status: String,
    /// Error or other detail.
    pub detail: String,
    /// For `custom`: what the handler emitted.
    pub payload: Value,
    /// For `log`: the line a handler logged (live only: a resumed stream does not repeat log
    /// lines, and a log event has no `sequence`; read them at `/v1/runs/{id}/logs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogLine>,
}

/// One line a handler logged (`ctx.log`).
#[derive(Debug, Serialize, ToSchema)]
pub struct LogLine {
    /// When the handler wrote it (the worker's clock), RFC 3339 with milliseconds.
    pub time: Option<String>,
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// At most 4 KiB (a longer line is cut, ending `… (cut)`).
    pub message: String,
    /// The step (a fan-out element is `<step>#<index>`).
    pub step_id: String,
    /// The attempt.
    pub attempt: u32,
}

impl From<proto::LogLine> for LogLine {
    fn from(l: proto::LogLine) -> Self {
        Self {
            time: time(l.time.as_ref()),
            level: l.level,
            message: l.message,
            step_id: l.step_id,
            attempt: l.attempt,
        }
    }
}

/// `GET /v1/runs/{id}/logs`: a run's log lines, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepLogs {
    /// The lines.
    pub lines: Vec<LogLine>,
    /// Lines left out by `limit` (the oldest).
    pub omitted: u32,
}

impl From<proto::RunEvent> for RunEvent {
    fn from(e: proto::RunEvent) -> Self {
        Self {
            run_id: e.run_id,
            sequence: e.sequence,
            time: time(e.time.as_ref()),
            kind: e.kind,
            step_id: e.step_id,
            attempt: e.attempt,
            status: e.status,
            detail: e.detail,
            payload: json(&e.payload_json),
            log: e.log.map(LogLine::from),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Human tasks
// ------------------------------------------------------------------------------------------

/// `POST /v1/tasks/{run_id}/{step_id}/complete`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteTaskBody {
    /// The form data (must satisfy the step's form schema); becomes the step's output.
    #[serde(default)]
    pub data: Option<Value>,
    /// Who completes it: required with auth off; with auth on, omit it (the token's identity is
    /// recorded). At most 200 bytes.
    #[serde(default)]
    #[schema(value_type = ShortId)]
    pub user: String,
}

/// `GET /v1/tasks`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskList {
    /// Newest first.
    pub tasks: Vec<HumanTask>,
}

/// A human task.
#[derive(Debug, Serialize, ToSchema)]
pub struct HumanTask {
    /// Run.
    pub run_id: String,
    /// Step.
    pub step_id: String,
    /// Workflow.
    pub workflow: String,
    /// Workflow version.
    pub workflow_version: u32,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Who may complete it.
    pub assignees: Vec<String>,
    /// The form's JSON Schema.
    pub form_schema: Value,
    /// `open`, `completed` or `cancelled`.
    #[schema(value_type = TaskStatusWord)]
    pub status: String,
    /// Opened.
    pub created_at: Option<String>,
    /// Who completed it.
    pub completed_by: String,
    /// Completed.
    pub completed_at: Option<String>,
    /// The submitted data; `null` while open.
    pub data: Value,
}

impl From<proto::HumanTask> for HumanTask {
    fn from(t: proto::HumanTask) -> Self {
        Self {
            run_id: t.run_id,
            step_id: t.step_id,
            workflow: t.workflow,
            workflow_version: t.workflow_version,
            title: t.title,
            description: t.description,
            assignees: t.assignees,
            form_schema: json(&t.form_schema_json),
            status: t.status,
            created_at: time(t.created_at.as_ref()),
            completed_by: t.completed_by,
            completed_at: time(t.completed_at.as_ref()),
            data: json(&t.data_json),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Events
// ------------------------------------------------------------------------------------------

/// `POST /v1/events`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishEventBody {
    /// Event name.
    #[schema(value_type = EventName)]
    pub name: String,
    /// Correlation key; at most 1024 bytes.
    #[serde(default)]
    #[schema(value_type = Key)]
    pub key: String,
    /// Payload (any JSON); absent: `null`.
    #[serde(default)]
    pub payload: Option<Value>,
}

/// A step of a run.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepRef {
    /// Run.
    pub run_id: String,
    /// Step.
    pub step_id: String,
}

/// A trigger whose filter failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct TriggerError {
    /// Workflow.
    pub workflow: String,
    /// Version.
    pub version: u32,
    /// Why.
    pub error: String,
}

/// The answer of `POST /v1/events`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublishEventAnswer {
    /// Steps the event was delivered to.
    pub delivered: Vec<StepRef>,
    /// True when no step waited and the event was buffered.
    pub buffered: bool,
    /// Runs the event started.
    pub started_run_ids: Vec<String>,
    /// Triggers whose filter failed.
    pub trigger_errors: Vec<TriggerError>,
}

impl From<proto::PublishEventResponse> for PublishEventAnswer {
    fn from(r: proto::PublishEventResponse) -> Self {
        Self {
            delivered: r
                .delivered
                .into_iter()
                .map(|d| StepRef {
                    run_id: d.run_id,
                    step_id: d.step_id,
                })
                .collect(),
            buffered: r.buffered,
            started_run_ids: r.started_run_ids,
            trigger_errors: r
                .trigger_errors
                .into_iter()
                .map(|t| TriggerError {
                    workflow: t.workflow,
                    version: t.version,
                    error: t.error,
                })
                .collect(),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Schedules
// ------------------------------------------------------------------------------------------

/// `POST /v1/schedules`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateScheduleBody {
    /// `[A-Za-z0-9_.:/-]`, 1 to 200; absent: generated.
    #[serde(default)]
    #[schema(value_type = ScheduleId)]
    pub id: String,
    /// Workflow.
    #[schema(value_type = WorkflowName)]
    pub workflow: String,
    /// 0: the latest when each run starts.
    #[serde(default)]
    pub workflow_version: u32,
    /// 5 or 6 fields; at most 200 bytes.
    #[schema(value_type = Cron)]
    pub cron: String,
    /// IANA time zone; empty: UTC; at most 64 bytes.
    #[serde(default)]
    #[schema(value_type = TimeZone)]
    pub timezone: String,
    /// Every run's input; absent: `{}`.
    #[serde(default)]
    pub input: Option<Value>,
    /// `skip` (default), `buffer_one`, `allow_all` or `cancel_other`.
    #[serde(default)]
    #[schema(value_type = OverlapWord)]
    pub overlap: String,
    /// How late a missed tick may still fire, ms; 0: 1 h; at most 30 days.
    #[serde(default)]
    #[schema(value_type = CatchupWindowMs)]
    pub catchup_window_ms: u64,
}

/// A schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct Schedule {
    /// Id.
    pub id: String,
    /// Workflow.
    pub workflow: String,
    /// 0: latest.
    pub workflow_version: u32,
    /// Cron expression.
    pub cron: String,
    /// Time zone.
    pub timezone: String,
    /// Every run's input.
    pub input: Value,
    /// Overlap policy.
    #[schema(value_type = OverlapWord)]
    pub overlap: String,
    /// Catch-up window, ms.
    pub catchup_window_ms: u64,
    /// Paused.
    pub paused: bool,
    /// `definition` or `api`.
    pub source: String,
    /// Created.
    pub created_at: Option<String>,
    /// Next tick.
    pub next_tick_at: Option<String>,
    /// Run of the last fire.
    pub last_run_id: String,
}

impl From<proto::Schedule> for Schedule {
    fn from(s: proto::Schedule) -> Self {
        Self {
            id: s.id,
            workflow: s.workflow,
            workflow_version: s.workflow_version,
            cron: s.cron,
            timezone: s.timezone,
            input: json(&s.input_json),
            overlap: s.overlap,
            catchup_window_ms: s.catchup_window_ms,
            paused: s.paused,
            source: s.source,
            created_at: time(s.created_at.as_ref()),
            next_tick_at: time(s.next_tick_at.as_ref()),
            last_run_id: s.last_run_id,
        }
    }
}

/// `GET /v1/schedules`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleList {
    /// By id.
    pub schedules: Vec<Schedule>,
}

/// A tick of a schedule's ledger.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleTick {
    /// Schedule.
    pub schedule_id: String,
    /// The tick's time.
    pub tick_at: Option<String>,
    /// `fired`, `skipped`, `buffered` or `triggered`.
    pub outcome: String,
    /// The run it started.
    pub run_id: String,
    /// Why.
    pub reason: String,
    /// Recorded.
    pub recorded_at: Option<String>,
}

impl From<proto::ScheduleTick> for ScheduleTick {
    fn from(t: proto::ScheduleTick) -> Self {
        Self {
            schedule_id: t.schedule_id,
            tick_at: time(t.tick_at.as_ref()),
            outcome: t.outcome,
            run_id: t.run_id,
            reason: t.reason,
            recorded_at: time(t.recorded_at.as_ref()),
        }
    }
}

/// `GET /v1/schedules/{id}/ticks`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TickList {
    /// Newest first.
    pub ticks: Vec<ScheduleTick>,
}

// ------------------------------------------------------------------------------------------
// Workers and queues
// ------------------------------------------------------------------------------------------

/// `GET /v1/workers`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerList {
    /// By worker id.
    pub workers: Vec<Worker>,
}

/// A registered worker.
#[derive(Debug, Serialize, ToSchema)]
pub struct Worker {
    /// Id.
    pub worker_id: String,
    /// Host.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Software version.
    pub version: String,
    /// Namespace.
    pub namespace: String,
    /// Handlers served.
    pub handlers: Vec<String>,
    /// Steps at once per handler.
    pub concurrency: u32,
    /// Steps running now.
    pub in_flight: u32,
    /// Started.
    pub started_at: Option<String>,
    /// Last heartbeat.
    pub last_seen: Option<String>,
    /// `running`, `draining` or `stopped`.
    pub state: String,
    /// No heartbeat for 3 intervals.
    pub lost: bool,
    /// Heartbeat interval, ms.
    pub heartbeat_interval_ms: u64,
}

impl From<proto::WorkerInfo> for Worker {
    fn from(w: proto::WorkerInfo) -> Self {
        Self {
            worker_id: w.worker_id,
            host: w.host,
            pid: w.pid,
            version: w.version,
            namespace: w.namespace,
            handlers: w.handlers,
            concurrency: w.concurrency,
            in_flight: w.in_flight,
            started_at: time(w.started_at.as_ref()),
            last_seen: time(w.last_seen.as_ref()),
            state: worker_state(w.state),
            lost: w.lost,
            heartbeat_interval_ms: w.heartbeat_interval_ms,
        }
    }
}

/// `GET /v1/queues`.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    /// By handler.
    pub queues: Vec<Queue>,
}

/// A handler's queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct Queue {
    /// Handler.
    pub handler: String,
    /// RabbitMQ queue.
    pub queue: String,
    /// Messages ready.
    pub ready: u64,
    /// Consumers.
    pub consumers: u32,
    /// Whether the queue exists.
    pub exists: bool,
    /// Steps running now.
    pub unacknowledged: u64,
    /// Oldest dispatched, unstarted attempt.
    pub oldest_waiting_since: Option<String>,
    /// Attempts dispatched, not started.
    pub waiting: u64,
    /// Live workers for the handler.
    pub live_workers: u32,
}

impl From<proto::QueueInfo> for Queue {
    fn from(q: proto::QueueInfo) -> Self {
        Self {
            handler: q.handler,
            queue: q.queue,
            ready: q.ready,
            consumers: q.consumers,
            exists: q.exists,
            unacknowledged: q.unacknowledged,
            oldest_waiting_since: time(q.oldest_waiting_since.as_ref()),
            waiting: q.waiting,
            live_workers: q.live_workers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_text_becomes_json_and_back() {
        assert_eq!(json(""), Value::Null);
        assert_eq!(json("{\"a\":1}"), serde_json::json!({"a": 1}));
        assert_eq!(json_text(Some(&serde_json::json!({"a": 1}))), "{\"a\":1}");
        assert_eq!(json_text(Some(&Value::Null)), "");
        assert_eq!(json_text(None), "");
    }

    #[test]
    fn times_are_rfc3339_utc_millis_both_ways() {
        let t = prost_types::Timestamp {
            seconds: 1_764_489_662,
            nanos: 345_000_000,
        };
        let s = time(Some(&t)).unwrap_or_default();
        assert_eq!(s, "2025-11-30T08:01:02.345Z");
        assert_eq!(parse_time(&s).ok(), Some(t));
        assert!(parse_time("yesterday").is_err());
        assert_eq!(time(None), None);
    }
}
