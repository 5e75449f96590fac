//! Workflow definitions: the YAML/JSON document a user writes, its validation, and the step graph.
//!
//! A definition is parsed into a loose document model (durations as strings), then validated as a
//! whole into [`WorkflowDefinition`]. Every problem found is reported with the field path it concerns
//! (`steps[2].retry.max_interval`), all at once, so a user fixes a document in one pass.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    duration,
    expr::{Expr, Scope, Template, Want},
    ids,
    limits::{
        MAX_ATTEMPTS, MAX_BACKOFF_COEFFICIENT, MAX_CATCHUP_WINDOW, MAX_ECHO_BYTES, MAX_PROBLEM_BYTES, MAX_RATE_PERIOD,
        MAX_REPORTED_PROBLEMS, MAX_RETRY_INTERVAL, MAX_STEPS, MAX_TIMEOUT, MIN_RETRY_INTERVAL, cut, echo, format_bound,
    },
    retry::RetryPolicy,
};

/// Default start-to-close timeout of a step that names none.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(300);

/// One problem in a definition (or a run input): where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, e.g. `steps[1].depends_on[0]`; empty for the document as a whole.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a definition was refused: every problem found, each with its field path. Displayed as the
/// first [`MAX_REPORTED_PROBLEMS`] of them, each path and message cut to [`MAX_PROBLEM_BYTES`],
/// joined with `; `, then `; and N more`: an error message stays small whatever the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.summary())]
pub struct InvalidDefinition(pub Vec<FieldError>);

impl InvalidDefinition {
    fn summary(&self) -> String {
        let problems: Vec<String> = self
            .0
            .iter()
            .take(MAX_REPORTED_PROBLEMS)
            .map(|e| {
                FieldError {
                    path: cut(&e.path, MAX_PROBLEM_BYTES).into_owned(),
                    message: cut(&e.message, MAX_PROBLEM_BYTES).into_owned(),
                }
                .to_string()
            })
            .collect();
        // Room for the "; and N more" tail within MAX_ERROR_MESSAGE_BYTES.
        let budget = crate::limits::MAX_ERROR_MESSAGE_BYTES - 32;
        let mut out = String::new();
        let mut listed = 0;
        for p in &problems {
            let sep = if listed == 0 { 0 } else { 2 };
            if listed > 0 && out.len() + sep + p.len() > budget {
                break;
            }
            if listed > 0 {
                out.push_str("; ");
            }
            out.push_str(&cut(p, budget));
            listed += 1;
        }
        if self.0.len() > listed {
            out.push_str(&format!("; and {} more", self.0.len() - listed));
        }
        out
    }
}

impl InvalidDefinition {
    fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![FieldError {
            path: path.into(),
            message: message.into(),
        }])
    }
}

/// The document as written: what serde reads before validation.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Document {
    name: String,
    version: u32,
    #[serde(default)]
    description: String,
    #[serde(default)]
    input_schema: Option<Value>,
    steps: Vec<StepDocument>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    schedules: Vec<ScheduleDocument>,
    #[serde(default)]
    on: Option<TriggerDocument>,
    #[serde(default)]
    max_concurrent_runs: Option<u32>,
    #[serde(default)]
    concurrency_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ScheduleDocument {
    #[serde(default)]
    name: Option<String>,
    cron: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    overlap: Option<String>,
    #[serde(default)]
    catchup_window: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TriggerDocument {
    event: String,
    #[serde(default)]
    filter: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ConcurrencyDocument {
    limit: u32,
    #[serde(default)]
    key: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RateLimitDocument {
    limit: u32,
    period: String,
    #[serde(default)]
    key: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct EmitDocument {
    workflow: String,
    #[serde(default)]
    version: Option<u32>,
    items: String,
    key: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    wait: Option<bool>,
    #[serde(default)]
    max_in_flight: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct StepDocument {
    id: String,
    #[serde(default)]
    handler: Option<String>,
    #[serde(default)]
    sleep: Option<String>,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    retry: Option<RetryDocument>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    heartbeat_timeout: Option<String>,
    #[serde(default)]
    schedule_to_start: Option<String>,
    #[serde(default)]
    when: Option<String>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    for_each: Option<String>,
    #[serde(default)]
    max_parallel: Option<u32>,
    #[serde(default)]
    sleep_until: Option<String>,
    #[serde(default)]
    wait_for_event: Option<WaitDocument>,
    #[serde(default)]
    human: Option<HumanDocument>,
    #[serde(default)]
    workflow: Option<ChildDocument>,
    #[serde(default)]
    concurrency: Option<ConcurrencyDocument>,
    #[serde(default)]
    rate_limit: Option<RateLimitDocument>,
    #[serde(default)]
    emit: Option<EmitDocument>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct WaitDocument {
    event: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    on_timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct HumanDocument {
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    assignees: Vec<String>,
    #[serde(default)]
    form: Option<Value>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    on_timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ChildDocument {
    name: String,
    #[serde(default)]
    version: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RetryDocument {
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    initial_interval: Option<String>,
    #[serde(default)]
    backoff_coefficient: Option<f64>,
    #[serde(default)]
    max_interval: Option<String>,
    #[serde(default)]
    jitter: Option<f64>,
    #[serde(default)]
    non_retryable_errors: Vec<String>,
}

/// One step of a validated workflow.
#[derive(Debug, Clone)]
pub struct StepDefinition {
    /// Unique within the workflow; `[A-Za-z0-9_-]`, at most 64 characters.
    pub id: String,
    /// The handler name workers register; also the RabbitMQ routing key. `[A-Za-z0-9_.-]`.
    pub handler: String,
    /// Steps that must succeed before this one starts (all of them).
    pub depends_on: Vec<String>,
    /// Per-step retry policy.
    pub retry: RetryPolicy,
    /// Start-to-close timeout of one attempt.
    pub timeout: Duration,
    /// Longest silence between heartbeats before the attempt counts as timed out.
    pub heartbeat_timeout: Option<Duration>,
    /// Schedule-to-start timeout (`schedule_to_start`, at most `limits::MAX_TIMEOUT`): how long a
    /// dispatched attempt may wait in its queue before a worker starts it; then the attempt fails
    /// with `ScheduleToStartTimeout` and is retried per `retry`. `None`: the coordinator's
    /// `default_schedule_to_start` (off unless configured). Only for steps with a handler.
    pub schedule_to_start: Option<Duration>,
    /// For a durable sleep step (no handler): how long it waits. Its output is `{"slept_ms": N}`.
    pub sleep: Option<Duration>,
    /// What the step does.
    pub kind: StepKind,
    /// The condition (`when:`): the step runs only when it holds, and is `skipped` otherwise.
    pub when: Option<Expr>,
    /// The input template (`input:`); without one the step gets the run input.
    pub input: Option<Template>,
    /// For a fan-out step: the list to run the handler over.
    pub for_each: Option<ForEach>,
    /// The steps whose status and output this step needs when it is dispatched: its parents, then
    /// the other steps its expressions read.
    pub reads: Vec<String>,
    /// A concurrency limit: at most `limit` attempts hold a slot at once, per key.
    pub concurrency: Option<Concurrency>,
    /// A rate limit: at most `limit` starts per `period`, per key.
    pub rate_limit: Option<RateLimit>,
    /// Runs of another workflow started from the step's output.
    pub emit: Option<Emit>,
}

/// A step's concurrency limit (a Redis semaphore per key).
#[derive(Debug, Clone)]
pub struct Concurrency {
    /// Slots per key, at least 1.
    pub limit: u32,
    /// CEL over `input` and the steps before; `None`: one pool for every run.
    pub key: Option<Expr>,
}

/// A step's rate limit.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// Starts per period, at least 1.
    pub limit: u32,
    /// The sliding window.
    pub period: Duration,
    /// CEL over `input` and the steps before; `None`: one limit for every run.
    pub key: Option<Expr>,
}

/// An emitting step: after its handler succeeds, one run of `workflow` per element of `items`.
#[derive(Debug, Clone)]
pub struct Emit {
    /// The processor workflow.
    pub workflow: String,
    /// Its version; 0 for the latest when the step emits.
    pub version: u32,
    /// CEL list over `input` and `steps` (this step's output is `steps.<this step>.output`).
    pub items: Expr,
    /// CEL per element (`item`, `index` in scope): the child run's id is derived from (run, key).
    pub key: Expr,
    /// Each child's input; without one, the element itself.
    pub input: Option<Template>,
    /// Whether the step waits for every child to finish (otherwise it ends once all are started).
    pub wait: bool,
    /// Children unfinished at once, at most.
    pub max_in_flight: u32,
}

/// Default `max_in_flight` of an emitting step.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1000;

/// A schedule declared in a definition (validated; the coordinator makes it a schedule with id
/// `<workflow>/<name>`).
#[derive(Debug, Clone)]
pub struct DeclaredSchedule {
    /// Unique within the definition; `default` when the document gives none.
    pub name: String,
    /// The parsed cron expression and time zone.
    pub cron: crate::schedule::CronSchedule,
    /// The input of every run.
    pub input: Value,
    /// What a tick does while the previous run still goes.
    pub overlap: crate::schedule::OverlapPolicy,
    /// How late a missed tick may still fire.
    pub catchup_window: Duration,
}

/// Default catch-up window of a schedule.
pub const DEFAULT_CATCHUP_WINDOW: Duration = Duration::from_secs(3600);

/// An event trigger: a published event starts a run with the payload as its input.
#[derive(Debug, Clone)]
pub struct EventTrigger {
    /// The event name.
    pub event: String,
    /// CEL over `input` (the payload): runs start only when it holds.
    pub filter: Option<Expr>,
}

/// What a step does when its turn comes.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// Runs `handler` on a worker.
    Task,
    /// Waits `sleep` on a durable timer.
    Sleep,
    /// Waits until the time a CEL expression gives (a timestamp, an RFC 3339 string or Unix ms).
    SleepUntil(Expr),
    /// Waits for an event published with `PublishEvent`.
    WaitForEvent(WaitForEvent),
    /// Waits for a person to complete a form.
    Human(HumanStep),
    /// Runs another workflow as a child run and waits for it.
    Workflow(ChildWorkflow),
}

impl StepKind {
    /// The kind's name: `task`, `sleep`, `sleep_until`, `wait_for_event`, `human` or `workflow`.
    pub fn word(&self) -> &'static str {
        match self {
            StepKind::Task => "task",
            StepKind::Sleep => "sleep",
            StepKind::SleepUntil(_) => "sleep_until",
            StepKind::WaitForEvent(_) => "wait_for_event",
            StepKind::Human(_) => "human",
            StepKind::Workflow(_) => "workflow",
        }
    }
}

/// A `wait_for_event` step.
#[derive(Debug, Clone)]
pub struct WaitForEvent {
    /// The event name, as given to `PublishEvent`.
    pub event: String,
    /// The correlation key (CEL, a string or an int); `None` matches the empty key.
    pub key: Option<Expr>,
    /// How long to wait; `None` waits for ever.
    pub timeout: Option<Duration>,
    /// What a timeout does.
    pub on_timeout: OnTimeout,
}

/// What a `wait_for_event` or `human` step does when its wait timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    /// The step (and so the run) fails with a `Timeout` error.
    Fail,
    /// The step is skipped, and what only depends on it too.
    Skip,
}

/// A `human` step: a task for a person, completed with `CompleteHumanTask`.
#[derive(Debug, Clone)]
pub struct HumanStep {
    /// One line shown in task lists.
    pub title: String,
    /// Free text.
    pub description: String,
    /// Who may see it in their list (any user may complete it).
    pub assignees: Vec<String>,
    /// The JSON Schema the submitted data must satisfy (`{}` when none was given).
    pub form: Value,
    /// How long the task stays open (`human.timeout`, at most `limits::MAX_TIMEOUT`); `None`: until
    /// it is completed or the run ends.
    pub timeout: Option<Duration>,
    /// What a timeout does (`human.on_timeout`: `fail`, the default, or `skip`); either way the task
    /// leaves the open list.
    pub on_timeout: OnTimeout,
    /// The compiled form; `None` only in a definition that is refused for its form (parsing goes
    /// on to report the step's other problems).
    validator: Option<Arc<jsonschema::Validator>>,
}

impl HumanStep {
    /// Checks submitted data against the form.
    ///
    /// # Errors
    /// Every violation, with its JSON path under `data` (e.g. `data/approved`); `human.form` when
    /// the form is not a valid JSON Schema (such a definition is refused, so no run has it).
    pub fn validate(&self, data: &Value) -> Result<(), InvalidDefinition> {
        match &self.validator {
            Some(v) => check_schema(v, data, "data"),
            None => Err(InvalidDefinition(vec![FieldError {
                path: "human.form".into(),
                message: "not a valid JSON Schema".into(),
            }])),
        }
    }
}

/// A `workflow` step: the child workflow it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildWorkflow {
    /// The workflow's name.
    pub name: String,
    /// Its version; 0 for the latest when the step starts.
    pub version: u32,
}

/// A fan-out (`for_each`) step's list and parallelism.
#[derive(Debug, Clone)]
pub struct ForEach {
    /// A CEL list over `input` and `steps`.
    pub items: Expr,
    /// How many elements run at once.
    pub max_parallel: u32,
}

/// Default and largest `max_parallel` of a fan-out step.
pub const DEFAULT_MAX_PARALLEL: u32 = 100;
pub use crate::limits::MAX_FAN_OUT;

/// A validated workflow definition with its step graph.
///
/// Built by [`WorkflowDefinition::parse`] (YAML or JSON text) or [`WorkflowDefinition::from_value`].
#[derive(Debug, Clone)]
pub struct WorkflowDefinition {
    /// `[A-Za-z0-9_.-]`, at most 128 characters.
    pub name: String,
    /// At least 1. A run pins the version it started with.
    pub version: u32,
    /// Free text.
    pub description: String,
    /// JSON Schema that run inputs must satisfy.
    pub input_schema: Option<Value>,
    /// Steps in document order.
    pub steps: Vec<StepDefinition>,
    /// The run timeout: a run still going this long after it was submitted ends as `timed_out`.
    pub timeout: Option<Duration>,
    /// The document as JSON, as it was accepted (what the registry stores).
    pub document: Value,
    /// Schedules declared with the definition.
    pub schedules: Vec<DeclaredSchedule>,
    /// The event that starts runs of this workflow.
    pub on: Option<EventTrigger>,
    /// At most this many unfinished runs at once (per `concurrency_key`).
    pub max_concurrent_runs: Option<u32>,
    /// CEL over the input: one run limit per value.
    pub concurrency_key: Option<Expr>,
    graph: Arc<Graph>,
    validator: Option<Arc<jsonschema::Validator>>,
}

impl PartialEq for WorkflowDefinition {
    fn eq(&self, other: &Self) -> bool {
        self.document == other.document
    }
}

/// Derived facts about the step graph, computed once at validation.
#[derive(Debug, Default)]
struct Graph {
    index: HashMap<String, usize>,
    children: Vec<Vec<usize>>,
    roots: Vec<usize>,
    leaves: Vec<usize>,
}

/// Checks an event name as definitions (`on.event`, `wait_for_event.event`) and `PublishEvent` take
/// it: after trimming, 1 to 128 characters of letters, digits, `_`, `-`, `.`, `:`, `/` (no spaces,
/// control characters, NUL or newlines).
///
/// # Errors
/// The problem, with the name echoed (the caller prefixes the field).
pub fn check_event_name(name: &str) -> Result<(), String> {
    if valid_name(name.trim(), 128, &['.', ':', '/']) {
        Ok(())
    } else {
        Err(format!(
            "{} must be 1 to 128 characters of letters, digits, '_', '-', '.', ':', '/'",
            echo(name)
        ))
    }
}

fn valid_name(s: &str, max: usize, extra: &[char]) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
}

/// Whether a definition is being registered (every bound is enforced) or read back from the
/// registry (bounds added after it was registered are applied as clamps, so runs pinned to it go on).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Admission {
    New,
    Stored,
}

impl WorkflowDefinition {
    /// Parses and validates a YAML or JSON document.
    ///
    /// # Errors
    /// [`InvalidDefinition`] listing every problem with its field path: syntax errors (with line and
    /// column), unknown fields, duplicate or unknown step ids, cycles, a missing handler, bad durations,
    /// an invalid input schema.
    pub fn parse(text: &str) -> Result<Self, InvalidDefinition> {
        // YAML 1.2 booleans only: under YAML 1.1 rules `n`, `no`, `on` and `y` become booleans, which
        // silently breaks schemas such as `required: [n]`.
        let mut options = serde_saphyr::Options::default();
        options.strict_booleans = true;
        let value: Value = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
            InvalidDefinition::one(
                "definition",
                format!(
                    "not a valid YAML or JSON document: {}",
                    cut(&e.to_string(), MAX_PROBLEM_BYTES)
                ),
            )
        })?;
        Self::from_value(value)
    }

    /// Validates a document already parsed as JSON.
    ///
    /// # Errors
    /// As [`WorkflowDefinition::parse`].
    pub fn from_value(value: Value) -> Result<Self, InvalidDefinition> {
        Self::check(value, Admission::New)
    }

    /// Reads a definition the registry stored earlier, perhaps under an older release whose bounds
    /// were looser. Runs already pinned to it must go on, so the bounds that only registration
    /// enforces are applied as clamps: more than [`MAX_STEPS`] steps are kept; a retry interval under
    /// [`MIN_RETRY_INTERVAL`] is raised to it and `max_attempts` over [`MAX_ATTEMPTS`] is lowered to it.
    ///
    /// # Errors
    /// As [`WorkflowDefinition::parse`], for every other rule.
    pub fn from_stored(value: Value) -> Result<Self, InvalidDefinition> {
        Self::check(value, Admission::Stored)
    }

    fn check(value: Value, admission: Admission) -> Result<Self, InvalidDefinition> {
        let doc: Document = serde_path_to_error::deserialize(&value).map_err(|e| {
            let message = e.inner().to_string();
            let mut segments: Vec<&serde_path_to_error::Segment> = e.path().iter().collect();
            // An unknown field whose name is not a plain word (`a:|b`, a megabyte of text) is named
            // only by the message (cut); the path is where it stands, so it stays a path.
            let plain = |key: &str| {
                !key.is_empty()
                    && key.len() <= 64
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            };
            if message.starts_with("unknown field")
                && matches!(segments.last(), Some(serde_path_to_error::Segment::Map { key }) if !plain(key))
            {
                segments.pop();
            }
            let mut path = String::new();
            for segment in segments {
                match segment {
                    serde_path_to_error::Segment::Seq { index } => path.push_str(&format!("[{index}]")),
                    serde_path_to_error::Segment::Map { key } => {
                        if !path.is_empty() {
                            path.push('.');
                        }
                        path.push_str(&cut(key, MAX_ECHO_BYTES));
                    }
                    serde_path_to_error::Segment::Enum { variant } => {
                        if !path.is_empty() {
                            path.push('.');
                        }
                        path.push_str(&cut(variant, MAX_ECHO_BYTES));
                    }
                    serde_path_to_error::Segment::Unknown => path.push_str(".?"),
                }
            }
            // The document as a whole (a string, a list, a missing field): `definition`.
            if path.is_empty() {
                path = "definition".into();
            }
            InvalidDefinition::one(path, message)
        })?;
        let mut errors = Vec::new();
        let mut err = |path: String, message: String| errors.push(FieldError { path, message });

        if !ids::is_workflow_name(&doc.name) {
            err(
                "name".into(),
                format!("{} {}", echo(&doc.name), ids::WORKFLOW_NAME_RULE),
            );
        }
        if doc.version == 0 {
            err("version".into(), "must be at least 1".into());
        }
        let validator = match &doc.input_schema {
            None => None,
            Some(schema) => match jsonschema::meta::validate(schema)
                .map_err(|e| e.to_string())
                .and_then(|_| jsonschema::validator_for(schema).map_err(|e| e.to_string()))
            {
                Ok(v) => Some(Arc::new(v)),
                Err(e) => {
                    err("input_schema".into(), format!("not a valid JSON Schema: {e}"));
                    None
                }
            },
        };
        if doc.steps.is_empty() {
            err("steps".into(), "a workflow needs at least one step".into());
        }
        if doc.steps.len() > MAX_STEPS && admission == Admission::New {
            // Nothing else is checked: validating the steps of a document this large is itself the
            // cost the bound is there to avoid.
            return Err(InvalidDefinition::one(
                "steps",
                format!(
                    "{} steps is over the limit of {MAX_STEPS} steps per workflow (fan out with for_each, or emit runs \
                     of a processor workflow)",
                    doc.steps.len()
                ),
            ));
        }

        let run_timeout = match doc.timeout.as_deref().map(|t| duration::parse_bounded(t, MAX_TIMEOUT)) {
            None => None,
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                err("timeout".into(), e);
                None
            }
        };
        let mut index = HashMap::new();
        for (i, s) in doc.steps.iter().enumerate() {
            if !valid_name(&s.id, 64, &[]) {
                err(
                    format!("steps[{i}].id"),
                    format!(
                        "{} must be 1 to 64 characters of letters, digits, '_', '-'",
                        echo(&s.id)
                    ),
                );
            } else if index.insert(s.id.clone(), i).is_some() {
                err(format!("steps[{i}].id"), format!("duplicate step id {}", echo(&s.id)));
            }
        }

        let mut steps = Vec::with_capacity(doc.steps.len());
        for (i, s) in doc.steps.iter().enumerate() {
            let p = format!("steps[{i}]");
            let kinds: Vec<&str> = [
                ("handler", s.handler.is_some()),
                ("sleep", s.sleep.is_some()),
                ("sleep_until", s.sleep_until.is_some()),
                ("wait_for_event", s.wait_for_event.is_some()),
                ("human", s.human.is_some()),
                ("workflow", s.workflow.is_some()),
            ]
            .into_iter()
            .filter_map(|(k, set)| set.then_some(k))
            .collect();
            if kinds.is_empty() {
                err(
                    format!("{p}.handler"),
                    "missing handler (or one of sleep, sleep_until, wait_for_event, human, workflow)".into(),
                );
            } else if kinds.len() > 1 {
                err(
                    format!("{p}.{}", kinds[1]),
                    format!("a step does one thing: it has both {} and {}", kinds[0], kinds[1]),
                );
            }
            let handler = match s.handler.as_deref().map(str::trim) {
                None => String::new(),
                Some(h) if !valid_name(h, 128, &['.']) => {
                    err(
                        format!("{p}.handler"),
                        format!(
                            "{} must be 1 to 128 characters of letters, digits, '_', '-', '.'",
                            echo(h)
                        ),
                    );
                    String::new()
                }
                Some(h) => h.to_string(),
            };
            if s.for_each.is_none() && s.max_parallel.is_some() {
                err(
                    format!("{p}.max_parallel"),
                    "only a for_each step has max_parallel".into(),
                );
            }
            if s.for_each.is_some() && s.handler.is_none() {
                err(format!("{p}.for_each"), "only a step with a handler can fan out".into());
            }
            if let Some(n) = s.max_parallel
                && n == 0
            {
                err(format!("{p}.max_parallel"), "must be at least 1".into());
            }
            let mut seen = HashSet::new();
            for (j, d) in s.depends_on.iter().enumerate() {
                if !index.contains_key(d) {
                    err(format!("{p}.depends_on[{j}]"), format!("unknown step {}", echo(d)));
                } else if d == &s.id {
                    err(format!("{p}.depends_on[{j}]"), "a step cannot depend on itself".into());
                } else if !seen.insert(d) {
                    err(format!("{p}.depends_on[{j}]"), format!("{} is listed twice", echo(d)));
                }
            }
            // every duration is more than zero and at most its bound in `limits`
            let mut dur = |field: &str, text: &Option<String>, max: Duration| -> Option<Duration> {
                let text = text.as_ref()?;
                duration::parse_bounded(text, max)
                    .map_err(|e| err(format!("{p}.{field}"), e))
                    .ok()
            };
            let timeout = dur("timeout", &s.timeout, MAX_TIMEOUT).unwrap_or(DEFAULT_STEP_TIMEOUT);
            let heartbeat_timeout = dur("heartbeat_timeout", &s.heartbeat_timeout, MAX_TIMEOUT);
            let schedule_to_start = dur("schedule_to_start", &s.schedule_to_start, MAX_TIMEOUT);
            let sleep = dur("sleep", &s.sleep, MAX_TIMEOUT);
            let mut retry = RetryPolicy::default();
            if let Some(r) = &s.retry {
                let initial = dur("retry.initial_interval", &r.initial_interval, MAX_RETRY_INTERVAL);
                let max = dur("retry.max_interval", &r.max_interval, MAX_RETRY_INTERVAL);
                // at least MIN_RETRY_INTERVAL: a 1 ns interval turns a failing handler into a busy loop
                let mut at_least_min = |field: &str, d: Option<Duration>, text: &Option<String>| {
                    let d = d?;
                    if d < MIN_RETRY_INTERVAL {
                        if admission == Admission::Stored {
                            return Some(MIN_RETRY_INTERVAL);
                        }
                        err(
                            format!("{p}.{field}"),
                            format!(
                                "must be at least {} (got {})",
                                format_bound(MIN_RETRY_INTERVAL),
                                echo(text.as_deref().unwrap_or_default())
                            ),
                        );
                        return None;
                    }
                    Some(d)
                };
                let initial = at_least_min("retry.initial_interval", initial, &r.initial_interval);
                let max = at_least_min("retry.max_interval", max, &r.max_interval);
                if let Some(d) = initial {
                    retry.initial_interval = d;
                    retry.max_interval = retry.max_interval.max(d);
                }
                if let Some(d) = max {
                    retry.max_interval = d;
                }
                if let Some(n) = r.max_attempts {
                    if n == 0 {
                        err(format!("{p}.retry.max_attempts"), "must be at least 1".into());
                    } else if n > MAX_ATTEMPTS && admission == Admission::New {
                        err(
                            format!("{p}.retry.max_attempts"),
                            format!("{n} is over the limit of {MAX_ATTEMPTS} attempts"),
                        );
                    }
                    retry.max_attempts = n.clamp(1, MAX_ATTEMPTS);
                }
                if let Some(c) = r.backoff_coefficient {
                    if (1.0..=MAX_BACKOFF_COEFFICIENT).contains(&c) {
                        retry.backoff_coefficient = c;
                    } else {
                        err(
                            format!("{p}.retry.backoff_coefficient"),
                            format!("{c} must be between 1.0 and {MAX_BACKOFF_COEFFICIENT:.1}"),
                        );
                    }
                }
                if let Some(j) = r.jitter {
                    if (0.0..=1.0).contains(&j) {
                        retry.jitter = j;
                    } else {
                        err(format!("{p}.retry.jitter"), format!("{j} must be between 0.0 and 1.0"));
                    }
                }
                if r.max_interval.is_some() && retry.max_interval < retry.initial_interval {
                    err(
                        format!("{p}.retry.max_interval"),
                        "must not be shorter than initial_interval".into(),
                    );
                }
                retry.non_retryable_errors = r.non_retryable_errors.clone();
            }
            if s.schedule_to_start.is_some() && s.handler.is_none() {
                err(
                    format!("{p}.schedule_to_start"),
                    "only a step with a handler waits in a queue for a worker".into(),
                );
            }
            let kind = step_kind(s, &p, &mut err);
            steps.push(StepDefinition {
                id: s.id.clone(),
                handler,
                depends_on: s.depends_on.clone(),
                retry,
                timeout,
                heartbeat_timeout,
                schedule_to_start,
                sleep,
                kind,
                when: None,
                input: None,
                for_each: None,
                reads: s.depends_on.clone(),
                concurrency: None,
                rate_limit: None,
                emit: None,
            });
        }

        let graph = build_graph(&steps, &index);
        match &graph {
            Err(cycle) => err("steps".into(), format!("the steps form a cycle: {cycle}")),
            // Expressions are checked against the graph: a step reads only the steps before it.
            Ok(g) => {
                for (i, s) in doc.steps.iter().enumerate() {
                    let readable = ancestors(g, &steps, i);
                    compile_expressions(s, &mut steps[i], readable, &format!("steps[{i}]"), &mut err);
                }
            }
        }
        let schedules = declared_schedules(&doc, &mut err);
        let input_scope = Scope::default();
        let on = doc.on.as_ref().map(|t| {
            if let Err(why) = check_event_name(&t.event) {
                err("on.event".into(), why);
            }
            EventTrigger {
                event: t.event.trim().to_string(),
                filter: t
                    .filter
                    .as_deref()
                    .and_then(|f| match Expr::compile(f, &input_scope, Want::Bool) {
                        Ok(e) => Some(e),
                        Err(e) => {
                            err("on.filter".into(), e);
                            None
                        }
                    }),
            }
        });
        if doc.max_concurrent_runs == Some(0) {
            err("max_concurrent_runs".into(), "must be at least 1".into());
        }
        if doc.concurrency_key.is_some() && doc.max_concurrent_runs.is_none() {
            err("concurrency_key".into(), "only with max_concurrent_runs".into());
        }
        let concurrency_key =
            doc.concurrency_key
                .as_deref()
                .and_then(|k| match Expr::compile(k, &input_scope, Want::Key) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        err("concurrency_key".into(), e);
                        None
                    }
                });
        if !errors.is_empty() {
            return Err(InvalidDefinition(errors));
        }
        Ok(Self {
            schedules,
            on,
            max_concurrent_runs: doc.max_concurrent_runs,
            concurrency_key,
            name: doc.name,
            version: doc.version,
            description: doc.description,
            input_schema: doc.input_schema,
            steps,
            timeout: run_timeout,
            document: value,
            graph: Arc::new(graph.unwrap_or_default()),
            validator,
        })
    }

    /// The step with this id; for a fan-out element (`<step>#<index>`), its step.
    pub fn step(&self, id: &str) -> Option<&StepDefinition> {
        self.graph.index.get(split_item(id).0).map(|&i| &self.steps[i])
    }

    /// The step whose handler a worker runs for `step_id`, the only steps a worker may start,
    /// heartbeat, emit from or report: a task step (`<step>`), or an element (`<step>#<index>`) of
    /// a task step that fans out. `None` for a step of any other kind (sleep, wait, human, child
    /// workflow: the coordinator completes those itself), for a fan-out step itself (its elements
    /// run the handler), for an element of a step that does not fan out, and for unknown ids.
    pub fn handler_step(&self, step_id: &str) -> Option<&StepDefinition> {
        let (id, element) = match step_id.split_once('#') {
            Some((id, index)) => (id, Some(index.parse::<u32>().ok()?)),
            None => (step_id, None),
        };
        let step = self.graph.index.get(id).map(|&i| &self.steps[i])?;
        (matches!(step.kind, StepKind::Task) && step.for_each.is_some() == element.is_some()).then_some(step)
    }

    /// Steps that depend on `id` directly.
    pub fn children(&self, id: &str) -> impl Iterator<Item = &StepDefinition> {
        let list = self
            .graph
            .index
            .get(id)
            .map(|&i| self.graph.children[i].as_slice())
            .unwrap_or(&[]);
        list.iter().map(|&c| &self.steps[c])
    }

    /// The distinct handler names of the steps, in first-use order (only task steps have one).
    pub fn handlers(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.steps {
            if !s.handler.is_empty() && !out.contains(&s.handler) {
                out.push(s.handler.clone());
            }
        }
        out
    }

    /// Steps with no dependencies: the ones a new run dispatches.
    pub fn roots(&self) -> impl Iterator<Item = &StepDefinition> {
        self.graph.roots.iter().map(|&i| &self.steps[i])
    }

    /// Steps nothing depends on: their outputs make the run's output.
    pub fn leaves(&self) -> impl Iterator<Item = &StepDefinition> {
        self.graph.leaves.iter().map(|&i| &self.steps[i])
    }

    /// Checks a run input against the input schema.
    ///
    /// # Errors
    /// Every violation, with its JSON path under `input` (e.g. `input/count`).
    pub fn validate_input(&self, input: &Value) -> Result<(), InvalidDefinition> {
        match &self.validator {
            Some(v) => check_schema(v, input, "input"),
            None => Ok(()),
        }
    }
}

/// Every violation of `schema` by `value`, with its JSON path under `root` (`input/count`; a
/// missing required property's own path).
fn check_schema(schema: &jsonschema::Validator, value: &Value, root: &str) -> Result<(), InvalidDefinition> {
    let errors: Vec<FieldError> = schema
        .iter_errors(value)
        .map(|e| {
            // A missing required property is named by its own path (`data/approved`), not its
            // parent's, so that a form can show the error next to the field.
            let missing = match e.kind() {
                jsonschema::error::ValidationErrorKind::Required {
                    property: Value::String(p),
                } => {
                    format!("/{}", p.replace('~', "~0").replace('/', "~1"))
                }
                _ => String::new(),
            };
            FieldError {
                path: format!("{root}{}{missing}", e.instance_path()),
                message: e.to_string(),
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(InvalidDefinition(errors))
    }
}

/// The schedules a definition declares, validated.
fn declared_schedules(doc: &Document, err: &mut impl FnMut(String, String)) -> Vec<DeclaredSchedule> {
    let mut out: Vec<DeclaredSchedule> = Vec::new();
    for (i, s) in doc.schedules.iter().enumerate() {
        let p = format!("schedules[{i}]");
        let name = s.name.clone().unwrap_or_else(|| {
            if i == 0 {
                "default".into()
            } else {
                format!("schedule-{i}")
            }
        });
        if !valid_name(&name, 64, &[]) {
            err(
                format!("{p}.name"),
                format!(
                    "{} must be 1 to 64 characters of letters, digits, '_', '-'",
                    echo(&name)
                ),
            );
        } else if out.iter().any(|o| o.name == name) {
            err(format!("{p}.name"), format!("duplicate schedule name {}", echo(&name)));
        }
        let cron = crate::schedule::CronSchedule::parse(&s.cron, s.timezone.as_deref().unwrap_or("UTC"))
            .map_err(|e| err(format!("{p}.{}", e.field), e.message));
        let overlap = match s.overlap.as_deref().map(crate::schedule::OverlapPolicy::parse) {
            None => Ok(crate::schedule::OverlapPolicy::default()),
            Some(r) => r.map_err(|e| err(format!("{p}.overlap"), e.message)),
        };
        let catchup_window = match s
            .catchup_window
            .as_deref()
            .map(|w| duration::parse(w).and_then(|d| crate::limits::check_duration(d, MAX_CATCHUP_WINDOW)))
        {
            None => DEFAULT_CATCHUP_WINDOW,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                err(format!("{p}.catchup_window"), e);
                DEFAULT_CATCHUP_WINDOW
            }
        };
        if let (Ok(cron), Ok(overlap)) = (cron, overlap) {
            out.push(DeclaredSchedule {
                name,
                cron,
                input: s.input.clone().unwrap_or_else(|| serde_json::json!({})),
                overlap,
                catchup_window,
            });
        }
    }
    out
}

/// The kind of step a document describes; `Task` when it names none (an error reported elsewhere).
fn step_kind(s: &StepDocument, p: &str, err: &mut impl FnMut(String, String)) -> StepKind {
    // A step `timeout` bounds one attempt of a handler: a step that runs none has no use for it,
    // and one that waits is bounded by its own wait's timeout.
    if s.timeout.is_some() {
        let why = if s.sleep.is_some() || s.sleep_until.is_some() {
            Some("a sleep step runs no handler, so it has no timeout (its sleep is its length)".to_string())
        } else if s.wait_for_event.is_some() {
            Some("a wait_for_event step runs no handler; bound its wait with wait_for_event.timeout".to_string())
        } else if s.human.is_some() {
            Some("a human step runs no handler; bound its task with human.timeout".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            err(format!("{p}.timeout"), why);
        }
    }
    if s.sleep.is_some() {
        return StepKind::Sleep;
    }
    if let Some(w) = &s.wait_for_event {
        if let Err(why) = check_event_name(&w.event) {
            err(format!("{p}.wait_for_event.event"), why);
        }
        let timeout = match w.timeout.as_deref().map(|t| duration::parse_bounded(t, MAX_TIMEOUT)) {
            None => None,
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                err(format!("{p}.wait_for_event.timeout"), e);
                None
            }
        };
        let on_timeout = match w.on_timeout.as_deref() {
            None | Some("fail") => OnTimeout::Fail,
            Some("skip") => OnTimeout::Skip,
            Some(other) => {
                err(
                    format!("{p}.wait_for_event.on_timeout"),
                    format!("{} must be \"fail\" or \"skip\"", echo(other)),
                );
                OnTimeout::Fail
            }
        };
        // The key expression is compiled with the others, once the graph is known.
        return StepKind::WaitForEvent(WaitForEvent {
            event: w.event.trim().to_string(),
            key: None,
            timeout,
            on_timeout,
        });
    }
    if let Some(h) = &s.human {
        if h.title.trim().is_empty() {
            err(format!("{p}.human.title"), "must not be empty".into());
        }
        let form = h.form.clone().unwrap_or_else(|| serde_json::json!({}));
        let validator = match jsonschema::meta::validate(&form)
            .map_err(|e| e.to_string())
            .and_then(|_| jsonschema::validator_for(&form).map_err(|e| e.to_string()))
        {
            Ok(v) => Some(Arc::new(v)),
            Err(e) => {
                err(format!("{p}.human.form"), format!("not a valid JSON Schema: {e}"));
                None
            }
        };
        let timeout = match h.timeout.as_deref().map(duration::parse) {
            None => None,
            Some(Ok(d)) if d.is_zero() => {
                err(format!("{p}.human.timeout"), "must be greater than zero".into());
                None
            }
            Some(Ok(d)) => match crate::limits::check_duration(d, crate::limits::MAX_TIMEOUT) {
                Ok(d) => Some(d),
                Err(e) => {
                    err(format!("{p}.human.timeout"), e);
                    None
                }
            },
            Some(Err(e)) => {
                err(format!("{p}.human.timeout"), e);
                None
            }
        };
        let on_timeout = match h.on_timeout.as_deref() {
            None | Some("fail") => OnTimeout::Fail,
            Some("skip") => OnTimeout::Skip,
            Some(other) => {
                err(
                    format!("{p}.human.on_timeout"),
                    format!("{} must be \"fail\" or \"skip\"", crate::limits::echo(other)),
                );
                OnTimeout::Fail
            }
        };
        if h.on_timeout.is_some() && timeout.is_none() && h.timeout.is_none() {
            err(
                format!("{p}.human.on_timeout"),
                "needs human.timeout (without it the task never times out)".into(),
            );
        }
        return StepKind::Human(HumanStep {
            title: h.title.clone(),
            description: h.description.clone(),
            assignees: h.assignees.clone(),
            form,
            timeout,
            on_timeout,
            validator,
        });
    }
    if let Some(w) = &s.workflow {
        if !ids::is_workflow_name(&w.name) {
            err(
                format!("{p}.workflow.name"),
                format!("{} {}", echo(&w.name), ids::WORKFLOW_NAME_RULE),
            );
        }
        if w.version == Some(0) {
            err(
                format!("{p}.workflow.version"),
                "must be at least 1 (leave it out for the latest)".into(),
            );
        }
        return StepKind::Workflow(ChildWorkflow {
            name: w.name.clone(),
            version: w.version.unwrap_or(0),
        });
    }
    // A `sleep_until` step becomes `SleepUntil` once its expression compiles (with the others).
    StepKind::Task
}

/// Every step `i` depends on, directly or not.
fn ancestors(g: &Graph, steps: &[StepDefinition], i: usize) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut stack: Vec<usize> = steps[i]
        .depends_on
        .iter()
        .filter_map(|d| g.index.get(d).copied())
        .collect();
    while let Some(j) = stack.pop() {
        if seen.insert(steps[j].id.clone()) {
            stack.extend(steps[j].depends_on.iter().filter_map(|d| g.index.get(d).copied()));
        }
    }
    seen
}

/// Compiles a step's CEL expressions (`when`, `input`, `for_each`, `sleep_until`, the event key)
/// against what it may read: the run input and the steps it depends on.
fn compile_expressions(
    doc: &StepDocument,
    step: &mut StepDefinition,
    readable: std::collections::BTreeSet<String>,
    p: &str,
    err: &mut impl FnMut(String, String),
) {
    let scope = Scope {
        steps: readable,
        item: false,
    };
    let compile = |field: &str, source: &str, want: Want, err: &mut dyn FnMut(String, String)| {
        Expr::compile(source, &scope, want)
            .map_err(|e| err(format!("{p}.{field}"), e))
            .ok()
    };
    step.when = doc.when.as_deref().and_then(|w| compile("when", w, Want::Bool, err));
    if let Some(items) = &doc.for_each {
        step.for_each = compile("for_each", items, Want::List, err).map(|items| ForEach {
            items,
            max_parallel: doc.max_parallel.unwrap_or(DEFAULT_MAX_PARALLEL).max(1),
        });
    }
    if let Some(until) = &doc.sleep_until
        && let Some(e) = compile("sleep_until", until, Want::Time, err)
    {
        step.kind = StepKind::SleepUntil(e);
    }
    if let (StepKind::WaitForEvent(w), Some(doc_wait)) = (&mut step.kind, &doc.wait_for_event)
        && let Some(key) = &doc_wait.key
    {
        w.key = compile("wait_for_event.key", key, Want::Key, err);
    }
    if let Some(template) = &doc.input {
        let scope = Scope {
            item: doc.for_each.is_some(),
            ..scope.clone()
        };
        match Template::compile(template, &scope) {
            Ok(t) => step.input = Some(t),
            Err(errors) => {
                for (path, message) in errors {
                    let at = if path.is_empty() {
                        format!("{p}.input")
                    } else {
                        format!("{p}.input.{path}")
                    };
                    err(at, message);
                }
            }
        }
    }
    if let Some(c) = &doc.concurrency {
        if c.limit == 0 {
            err(format!("{p}.concurrency.limit"), "must be at least 1".into());
        }
        step.concurrency = Some(Concurrency {
            limit: c.limit.max(1),
            key: c
                .key
                .as_deref()
                .and_then(|k| compile("concurrency.key", k, Want::Key, err)),
        });
    }
    if let Some(r) = &doc.rate_limit {
        if r.limit == 0 {
            err(format!("{p}.rate_limit.limit"), "must be at least 1".into());
        }
        let period = match duration::parse_bounded(&r.period, MAX_RATE_PERIOD) {
            Ok(d) => d,
            Err(e) => {
                err(format!("{p}.rate_limit.period"), e);
                Duration::from_secs(1)
            }
        };
        step.rate_limit = Some(RateLimit {
            limit: r.limit.max(1),
            period,
            key: r
                .key
                .as_deref()
                .and_then(|k| compile("rate_limit.key", k, Want::Key, err)),
        });
    }
    if let Some(e) = &doc.emit {
        if doc.handler.is_none() || doc.for_each.is_some() {
            err(
                format!("{p}.emit"),
                "only a handler step without for_each can emit runs".into(),
            );
        }
        if !ids::is_workflow_name(&e.workflow) {
            err(
                format!("{p}.emit.workflow"),
                format!("{} {}", echo(&e.workflow), ids::WORKFLOW_NAME_RULE),
            );
        }
        if e.max_in_flight == Some(0) {
            err(format!("{p}.emit.max_in_flight"), "must be at least 1".into());
        }
        let mut own = scope.clone();
        own.steps.insert(step.id.clone());
        let items = Expr::compile(&e.items, &own, Want::List).map_err(|m| err(format!("{p}.emit.items"), m));
        let per_item = Scope { item: true, ..own };
        let key = Expr::compile(&e.key, &per_item, Want::Key).map_err(|m| err(format!("{p}.emit.key"), m));
        let input = match e.input.as_ref().map(|t| Template::compile(t, &per_item)) {
            None => None,
            Some(Ok(t)) => Some(t),
            Some(Err(errors)) => {
                for (path, message) in errors {
                    let at = if path.is_empty() {
                        format!("{p}.emit.input")
                    } else {
                        format!("{p}.emit.input.{path}")
                    };
                    err(at, message);
                }
                None
            }
        };
        if let (Ok(items), Ok(key)) = (items, key) {
            step.emit = Some(Emit {
                workflow: e.workflow.clone(),
                version: e.version.unwrap_or(0),
                items,
                key,
                input,
                wait: e.wait.unwrap_or(true),
                max_in_flight: e.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT).max(1),
            });
        }
    }
    let mut read: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for e in [
        step.when.as_ref(),
        step.for_each.as_ref().map(|f| &f.items),
        step.concurrency.as_ref().and_then(|c| c.key.as_ref()),
        step.rate_limit.as_ref().and_then(|r| r.key.as_ref()),
    ]
    .into_iter()
    .flatten()
    {
        read.extend(e.steps_read().iter().cloned());
    }
    match &step.kind {
        StepKind::SleepUntil(e) => read.extend(e.steps_read().iter().cloned()),
        StepKind::WaitForEvent(WaitForEvent { key: Some(e), .. }) => read.extend(e.steps_read().iter().cloned()),
        _ => {}
    }
    if let Some(t) = &step.input {
        read.extend(t.steps_read());
    }
    for r in read {
        if !step.reads.contains(&r) {
            step.reads.push(r);
        }
    }
}

/// Splits a step address into the step id and, for a fan-out element (`<step>#<index>`), its index.
pub fn split_item(step: &str) -> (&str, Option<u32>) {
    match step.split_once('#') {
        Some((id, index)) => (id, index.parse().ok()),
        None => (step, None),
    }
}

/// Children lists, roots and leaves; or the ids along a cycle (Kahn's algorithm, then a walk).
fn build_graph(steps: &[StepDefinition], index: &HashMap<String, usize>) -> Result<Graph, String> {
    let n = steps.len();
    let mut children = vec![Vec::new(); n];
    let mut indegree = vec![0usize; n];
    for (i, s) in steps.iter().enumerate() {
        for d in &s.depends_on {
            if let Some(&p) = index.get(d)
                && p != i
                && !children[p].contains(&i)
            {
                children[p].push(i);
                indegree[i] += 1;
            }
        }
    }
    let mut queue: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let roots = queue.clone();
    let mut left = indegree.clone();
    let mut seen = 0;
    while let Some(i) = queue.pop() {
        seen += 1;
        for &c in &children[i] {
            left[c] -= 1;
            if left[c] == 0 {
                queue.push(c);
            }
        }
    }
    if seen < n {
        // Walk parents among the unresolved steps until one repeats: that is a cycle.
        let mut path: Vec<usize> = Vec::new();
        let mut at = (0..n).find(|&i| left[i] > 0).unwrap_or(0);
        let mut pos: BTreeMap<usize, usize> = BTreeMap::new();
        while let std::collections::btree_map::Entry::Vacant(e) = pos.entry(at) {
            e.insert(path.len());
            path.push(at);
            at = steps[at]
                .depends_on
                .iter()
                .filter_map(|d| index.get(d).copied())
                .find(|&p| left[p] > 0)
                .unwrap_or(at);
        }
        // `path[start..]` walks the cycle against its edges (from a step to one it depends on):
        // reversed, it follows them. Start it at its first step in the document, and close it.
        let start = pos.get(&at).copied().unwrap_or(0);
        let mut cycle: Vec<usize> = path[start..].iter().rev().copied().collect();
        if let Some(first) = cycle.iter().enumerate().min_by_key(|(_, i)| **i).map(|(k, _)| k) {
            cycle.rotate_left(first);
        }
        let mut names: Vec<&str> = cycle.iter().map(|&i| steps[i].id.as_str()).collect();
        if let Some(&first) = names.first() {
            names.push(first);
        }
        return Err(names.join(" -> "));
    }
    let leaves = (0..n).filter(|&i| children[i].is_empty()).collect();
    Ok(Graph {
        index: index.clone(),
        children,
        roots,
        leaves,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_task_steps_and_fan_out_elements_run_a_handler() {
        let def = WorkflowDefinition::parse(
            "name: kinds\nversion: 1\nsteps:\n  - {id: task, handler: h}\n  - {id: fan, handler: h, for_each: input.items}\n  - {id: nap, sleep: 1h}\n  - {id: until, sleep_until: input.at}\n  - {id: wait, wait_for_event: {event: e}}\n  - {id: approve, human: {title: ok?}}\n  - {id: child, workflow: {name: other}}\n  - {id: out, handler: h, emit: {workflow: other, items: steps.out.output, key: string(item)}}\n",
        )
        .unwrap();
        let runs = |id: &str| def.handler_step(id).map(|s| s.id.as_str());
        assert_eq!(runs("task"), Some("task"));
        assert_eq!(runs("out"), Some("out"), "an emitter runs its handler");
        assert_eq!(runs("fan#0"), Some("fan"));
        assert_eq!(runs("fan#4294967295"), Some("fan"));
        for refused in [
            "fan",
            "fan#",
            "fan#x",
            "fan#-1",
            "fan#4294967296",
            "task#0",
            "out#1",
            "nap",
            "until",
            "wait",
            "approve",
            "child",
            "child#0",
            "nope",
            "",
            "#0",
        ] {
            assert_eq!(runs(refused), None, "{refused:?}");
        }
    }

    fn paths(text: &str) -> Vec<String> {
        WorkflowDefinition::parse(text)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.path)
            .collect()
    }

    #[test]
    fn step_count_attempts_and_retry_intervals_are_bounded() {
        let many: String = (0..=crate::limits::MAX_STEPS)
            .map(|i| format!("  - {{id: s{i}, handler: h}}\n"))
            .collect();
        let e = WorkflowDefinition::parse(&format!("name: w\nversion: 1\nsteps:\n{many}")).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].path, "steps");
        assert!(
            e.0[0].message.contains("1001 steps is over the limit of 1000"),
            "{}",
            e.0[0].message
        );
        assert_eq!(
            paths(
                "name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, retry: {max_attempts: 100000, initial_interval: 1ns, max_interval: 5ms}}\n"
            ),
            [
                "steps[0].retry.initial_interval",
                "steps[0].retry.max_interval",
                "steps[0].retry.max_attempts"
            ]
        );
        let def = WorkflowDefinition::parse(
            "name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, retry: {max_attempts: 1000, initial_interval: 10ms, max_interval: 10ms}}\n",
        )
        .unwrap();
        assert_eq!(def.steps[0].retry.max_attempts, 1000);
        assert_eq!(def.steps[0].retry.initial_interval, Duration::from_millis(10));
    }

    #[test]
    fn a_definition_stored_under_looser_bounds_still_loads_with_its_retries_clamped() {
        let yaml =
            |body: &str| -> Value { serde_saphyr::from_str(&format!("name: w\nversion: 1\nsteps:\n{body}")).unwrap() };
        let many: String = (0..=crate::limits::MAX_STEPS)
            .map(|i| format!("  - {{id: s{i}, handler: h}}\n"))
            .collect();
        assert!(WorkflowDefinition::from_value(yaml(&many)).is_err());
        let def = WorkflowDefinition::from_stored(yaml(&many)).unwrap();
        assert_eq!(def.steps.len(), crate::limits::MAX_STEPS + 1);

        let fast = "  - {id: a, handler: h, retry: {max_attempts: 100000, initial_interval: 1ns, max_interval: 5ms}}\n";
        assert!(WorkflowDefinition::from_value(yaml(fast)).is_err());
        let def = WorkflowDefinition::from_stored(yaml(fast)).unwrap();
        assert_eq!(def.steps[0].retry.max_attempts, crate::limits::MAX_ATTEMPTS);
        assert_eq!(def.steps[0].retry.initial_interval, MIN_RETRY_INTERVAL);
        assert_eq!(def.steps[0].retry.max_interval, MIN_RETRY_INTERVAL);
        // Every other rule still holds for a stored definition.
        assert!(WorkflowDefinition::from_stored(yaml("  - {id: a, handler: h, depends_on: [zz]}\n")).is_err());
    }

    #[test]
    fn parses_a_fan_in_graph() {
        let def = WorkflowDefinition::parse(
            "name: docs\nversion: 1\nsteps:\n  - {id: a, handler: h}\n  - {id: b, handler: h, depends_on: [a]}\n  - {id: c, handler: h, depends_on: [a], retry: {max_attempts: 5, initial_interval: 2s}}\n  - {id: d, handler: h, depends_on: [b, c], timeout: 5m}\n",
        )
        .unwrap();
        assert_eq!(def.roots().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(def.leaves().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["d"]);
        let mut kids: Vec<_> = def.children("a").map(|s| s.id.as_str()).collect();
        kids.sort();
        assert_eq!(kids, ["b", "c"]);
        assert_eq!(def.step("c").unwrap().retry.max_attempts, 5);
        assert_eq!(def.step("c").unwrap().retry.initial_interval, Duration::from_secs(2));
        assert_eq!(def.step("d").unwrap().timeout, Duration::from_secs(300));
        assert_eq!(def.timeout, None);
        assert_eq!(
            paths("name: w\nversion: 1\ntimeout: someday\nsteps:\n  - {id: a, handler: h}\n"),
            ["timeout"]
        );
    }

    #[test]
    fn reports_every_rule_with_its_path() {
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a, handler: h}\n  - {id: a, handler: h}\n"),
            ["steps[1].id"]
        );
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, depends_on: [zz]}\n"),
            ["steps[0].depends_on[0]"]
        );
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a}\n"),
            ["steps[0].handler"]
        );
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, timeout: soon}\n"),
            ["steps[0].timeout"]
        );
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, retry: {max_interval: 3 parsecs}}\n"),
            ["steps[0].retry.max_interval"]
        );
        assert_eq!(
            paths("name: w\nversion: 1\ninput_schema: {type: 12}\nsteps:\n  - {id: a, handler: h}\n"),
            ["input_schema"]
        );
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, timout: 3s}\n"),
            ["steps[0].timout"]
        );
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, retry: {max_attempts: many}}\n"),
            ["steps[0].retry.max_attempts"]
        );
    }

    #[test]
    fn a_step_does_exactly_one_thing() {
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, sleep: 1s}\n"),
            ["steps[0].sleep"]
        );
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a, human: {title: t}, workflow: {name: x}}\n"),
            ["steps[0].workflow"]
        );
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a, sleep: 1s, for_each: '[1]'}\n"),
            ["steps[0].for_each"]
        );
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, max_parallel: 3}\n"),
            ["steps[0].max_parallel"]
        );
    }

    #[test]
    fn checks_the_fields_of_each_kind() {
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a, wait_for_event: {event: e, on_timeout: shrug}}\n"),
            ["steps[0].wait_for_event.on_timeout"]
        );
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a, wait_for_event: {event: ' ', timeout: 0s}}\n"),
            ["steps[0].wait_for_event.event", "steps[0].wait_for_event.timeout"]
        );
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a, human: {title: t, form: {type: 12}}}\n"),
            ["steps[0].human.form"]
        );
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a, human: {title: t, timeout: 0s, on_timeout: maybe}}\n"),
            ["steps[0].human.timeout", "steps[0].human.on_timeout"]
        );
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a, human: {title: t, timeout: 3651days}}\n"),
            ["steps[0].human.timeout"]
        );
        assert_eq!(
            paths(
                "name: w\nversion: 1\nsteps:\n  - {id: a, sleep: 1s, timeout: 5s}\n  - {id: b, sleep_until: 'input.at', timeout: 5s}\n  - {id: c, wait_for_event: {event: e}, timeout: 5s}\n  - {id: d, human: {title: t}, timeout: 5s}\n"
            ),
            [
                "steps[0].timeout",
                "steps[1].timeout",
                "steps[2].timeout",
                "steps[3].timeout"
            ]
        );
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a, workflow: {name: 'no spaces', version: 0}}\n"),
            ["steps[0].workflow.name", "steps[0].workflow.version"]
        );
        assert_eq!(
            paths("name: w\nversion: 1\nsteps:\n  - {id: a, sleep_until: 'input.when +'}\n"),
            ["steps[0].sleep_until"]
        );
    }

    #[test]
    fn expressions_read_only_the_steps_before_them() {
        let text = "name: w\nversion: 1\nsteps:\n  - {id: a, handler: h}\n  - {id: b, handler: h, depends_on: [a]}\n  - {id: c, handler: h, depends_on: [b], when: 'steps.a.output.ok && input.go', input: {x: '${{ steps.b.output }}'}}\n  - {id: d, handler: h, when: 'steps.c.output == 1'}\n";
        assert_eq!(paths(text), ["steps[3].when"], "d does not depend on c");
        let def = WorkflowDefinition::parse(&text.replace("when: 'steps.c.output == 1'", "depends_on: [c]")).unwrap();
        let c = def.step("c").unwrap();
        assert_eq!(c.reads, ["b", "a"], "its parent first, then what its expressions read");
        assert!(c.when.is_some() && c.input.is_some());
        assert_eq!(def.step("d").unwrap().reads, ["c"]);
    }

    #[test]
    fn reads_every_kind() {
        let def = WorkflowDefinition::parse(
            "name: w\nversion: 1\nsteps:\n  - {id: t, handler: h, for_each: 'input.items', max_parallel: 4}\n  - {id: s, sleep: 2s}\n  - {id: u, sleep_until: 'input.at'}\n  - {id: e, wait_for_event: {event: paid, key: input.order, timeout: 1h, on_timeout: skip}}\n  - {id: h, human: {title: Approve, assignees: [ann], form: {type: object, required: [ok]}}}\n  - {id: c, workflow: {name: child, version: 2}}\n",
        )
        .unwrap();
        let kinds: Vec<&str> = def.steps.iter().map(|s| s.kind.word()).collect();
        assert_eq!(
            kinds,
            ["task", "sleep", "sleep_until", "wait_for_event", "human", "workflow"]
        );
        assert_eq!(def.step("t").unwrap().for_each.as_ref().unwrap().max_parallel, 4);
        assert_eq!(def.handlers(), ["h"]);
        let StepKind::Human(h) = &def.step("h").unwrap().kind else {
            panic!("not human")
        };
        assert!(h.validate(&serde_json::json!({"ok": true})).is_ok());
        // A missing required property is named by its own path.
        assert_eq!(h.validate(&serde_json::json!({})).unwrap_err().0[0].path, "data/ok");
        let StepKind::WaitForEvent(w) = &def.step("e").unwrap().kind else {
            panic!("not a wait")
        };
        assert_eq!(
            (w.on_timeout, w.timeout),
            (OnTimeout::Skip, Some(Duration::from_secs(3600)))
        );
        assert_eq!(split_item("each#12"), ("each", Some(12)));
        assert_eq!(def.step("t#3").unwrap().id, "t", "an element address finds its step");
    }

    #[test]
    fn the_readme_control_flow_example_is_valid() {
        let yaml = readme_yaml("# Control flow");
        let def = WorkflowDefinition::parse(&format!("name: readme\nversion: 1\n{yaml}"))
            .unwrap_or_else(|e| panic!("the docs example is refused: {e}"));
        let kinds: Vec<&str> = def.steps.iter().map(|s| s.kind.word()).collect();
        assert_eq!(
            kinds,
            [
                "task",
                "task",
                "task",
                "sleep",
                "sleep_until",
                "wait_for_event",
                "human",
                "workflow"
            ]
        );
    }

    /// The first yaml block after `heading` in the book's chapter on control flow.
    fn readme_yaml(heading: &str) -> &'static str {
        first_yaml_after(include_str!("../../docs/control-flow.md"), heading)
    }

    /// The text of the first yaml fence after `heading` in `doc` (whatever else its info string
    /// says, e.g. `yaml steps` for a fragment: docs/writing-docs.md).
    fn first_yaml_after(doc: &'static str, heading: &str) -> &'static str {
        doc.split(heading)
            .nth(1)
            .and_then(|section| section.split("```yaml").nth(1))
            .and_then(|s| s.split_once('\n'))
            .and_then(|(_, s)| s.split("```").next())
            .unwrap_or_else(|| panic!("a yaml block after {heading:?}"))
    }

    #[test]
    fn the_readme_times_and_optional_fields_example_is_valid_and_means_what_it_says() {
        use crate::expr::Bindings;
        let yaml = readme_yaml("## Times and optional fields");
        let def = WorkflowDefinition::parse(&format!("name: readme\nversion: 1\n{yaml}"))
            .unwrap_or_else(|e| panic!("the docs example is refused: {e}"));
        let bind = |input: Value| Bindings {
            input,
            ..Bindings::default()
        };
        let until = |id: &str| match &def.step(id).unwrap().kind {
            StepKind::SleepUntil(e) => e.clone(),
            other => panic!("{id} is {}", other.word()),
        };
        // 2030-01-01T09:00:00Z
        assert_eq!(until("launch").eval_time_ms(&bind(json!({}))), Ok(1_893_488_400_000));
        let remind = until("remind");
        assert_eq!(
            remind.eval_time_ms(&bind(json!({"remind_at": "2030-01-01T10:00:00+01:00"}))),
            Ok(1_893_488_400_000)
        );
        assert_eq!(remind.eval_time_ms(&bind(json!({"remind_at": 5}))), Ok(5));
        let greet = def.step("greet").unwrap();
        let when = greet.when.as_ref().unwrap();
        let input = greet.input.as_ref().unwrap();
        assert_eq!(when.eval_bool(&bind(json!({}))), Ok(false));
        assert_eq!(when.eval_bool(&bind(json!({"name": "Ann"}))), Ok(true));
        assert_eq!(
            input.render(&bind(json!({}))),
            Ok(json!({"name": "stranger", "lang": "en"}))
        );
        assert_eq!(
            input.render(&bind(json!({"name": "Ann", "lang": "fr"}))),
            Ok(json!({"name": "Ann", "lang": "fr"}))
        );

        // what the docs say goes wrong without them
        let unquoted = WorkflowDefinition::parse(
            "name: w\nversion: 1\nsteps:\n  - {id: launch, sleep_until: 2030-01-01T09:00:00Z}\n",
        )
        .unwrap_err();
        assert_eq!(unquoted.0[0].path, "steps[0].sleep_until");
        assert!(unquoted.0[0].message.starts_with("syntax error"), "{unquoted}");
        let bare = WorkflowDefinition::parse(
            "name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, when: 'input.name != \"\"'}\n",
        )
        .unwrap();
        assert_eq!(
            bare.step("a")
                .unwrap()
                .when
                .as_ref()
                .unwrap()
                .eval_bool(&bind(json!({}))),
            Err("input.name != \"\": no such key: name".to_owned())
        );
    }

    #[test]
    fn the_readme_limits_table_lists_every_bound() {
        let limits = include_str!("../../docs/limits.md");
        for said in [
            format!("{} days (10 years)", MAX_TIMEOUT.as_secs() / 86_400),
            "| 1 day |".to_owned(),
            format!("1.0 to {MAX_BACKOFF_COEFFICIENT:.1}"),
            format!("| {} days |", MAX_CATCHUP_WINDOW.as_secs() / 86_400),
            format!("{} bytes, checked before parsing", crate::limits::MAX_EXPRESSION_BYTES),
            format!("| {} nodes |", crate::limits::MAX_EXPRESSION_NODES),
            format!("| {} levels |", crate::limits::MAX_EXPRESSION_DEPTH),
            "1,000,000 units per evaluation".to_owned(),
            format!("{} bytes, compiled to at most 256 KiB", crate::limits::MAX_REGEX_BYTES),
            format!("{} levels below a root run", crate::limits::MAX_WORKFLOW_DEPTH),
            format!("| {} bytes |", crate::limits::MAX_ECHO_BYTES),
        ] {
            assert!(limits.contains(&said), "the Limits section does not say {said:?}");
        }
        assert_eq!(crate::limits::MAX_EXPRESSION_COST, 1_000_000);
        assert_eq!(crate::limits::MAX_REGEX_PROGRAM_BYTES, 256 * 1024);
        assert_eq!(MAX_RETRY_INTERVAL.as_secs(), 86_400);
        assert_eq!(MAX_RATE_PERIOD.as_secs(), 86_400);
    }

    #[test]
    fn the_shipped_example_workflows_are_within_the_bounds() {
        for (file, text) in [
            (
                "documents.yaml",
                include_str!("../../examples/workflows/documents.yaml"),
            ),
            ("review.yaml", include_str!("../../examples/workflows/review.yaml")),
            ("scan.yaml", include_str!("../../examples/workflows/scan.yaml")),
        ] {
            WorkflowDefinition::parse(text).unwrap_or_else(|e| panic!("{file} is refused: {e}"));
        }
    }

    #[test]
    fn the_readme_schedules_example_is_valid() {
        let yaml = first_yaml_after(
            include_str!("../../docs/schedules.md"),
            "# Schedules, emitters, triggers and limits",
        );
        let def = WorkflowDefinition::parse(yaml).unwrap_or_else(|e| panic!("the docs example is refused: {e}"));
        assert_eq!(def.schedules.len(), 1);
        assert_eq!(def.max_concurrent_runs, Some(1));
        assert!(def.on.is_some());
        assert!(def.step("list").unwrap().emit.is_some());
        let notify = def.step("notify").unwrap();
        assert!(notify.concurrency.is_some() && notify.rate_limit.is_some());
    }

    #[test]
    fn reads_yaml_1_2_booleans() {
        let def = WorkflowDefinition::parse(
            "name: w\nversion: 1\ninput_schema: {required: [n, y, no, on]}\nsteps:\n  - {id: a, handler: h}\n",
        )
        .unwrap();
        assert_eq!(
            def.input_schema.unwrap()["required"],
            serde_json::json!(["n", "y", "no", "on"])
        );
    }

    #[test]
    fn document_level_and_unknown_field_errors_name_where_they_stand() {
        assert_eq!(paths("just a string"), vec!["definition"]);
        assert_eq!(paths("name: [unclosed"), vec!["definition"]);
        assert_eq!(
            paths("name: a\nversion: 1\nsteps: []\n\"a:|b\": 1\n"),
            vec!["definition"]
        );
        assert_eq!(
            paths("name: a\nversion: 1\nsteps:\n  - {id: s, handler: h, \"bo:gus\": 1}\n"),
            vec!["steps[0]"]
        );
    }

    #[test]
    fn many_long_problems_stay_within_the_error_message_bound() {
        let steps: String = (0..40)
            .map(|i| format!("  - {{id: \"{}\", handler: h}}\n", "é".repeat(300 + i)))
            .collect();
        let e = WorkflowDefinition::parse(&format!("name: a\nversion: 1\nsteps:\n{steps}")).unwrap_err();
        let text = e.to_string();
        assert!(text.len() <= crate::limits::MAX_ERROR_MESSAGE_BYTES, "{}", text.len());
        assert!(text.contains("more"), "{text}");
    }

    #[test]
    fn names_the_cycle() {
        let e = WorkflowDefinition::parse("name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, depends_on: [c]}\n  - {id: b, handler: h, depends_on: [a]}\n  - {id: c, handler: h, depends_on: [b]}\n  - {id: d, handler: h}\n").unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].path, "steps");
        assert_eq!(e.0[0].message, "the steps form a cycle: a -> b -> c -> a");
    }

    fn cycle_message(steps: &str) -> String {
        let e = WorkflowDefinition::parse(&format!("name: w\nversion: 1\nsteps:\n{steps}")).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        format!("{}: {}", e.0[0].path, e.0[0].message)
    }

    #[test]
    fn the_cycle_error_names_the_real_cycle() {
        // a -> b -> a (defect 20 reported it as `b -> a -> a`)
        assert_eq!(
            cycle_message("  - {id: a, handler: h, depends_on: [b]}\n  - {id: b, handler: h, depends_on: [a]}\n"),
            "steps: the steps form a cycle: a -> b -> a"
        );
        // a 3-cycle behind a step that is not on it, listed in another order
        assert_eq!(
            cycle_message(
                "  - {id: z, handler: h, depends_on: [y]}\n  - {id: x, handler: h, depends_on: [w]}\n  - {id: y, handler: h, depends_on: [x]}\n  - {id: w, handler: h, depends_on: [y]}\n"
            ),
            "steps: the steps form a cycle: x -> y -> w -> x"
        );
        // a self-loop is refused on the dependency itself
        assert_eq!(
            cycle_message("  - {id: a, handler: h, depends_on: [a]}\n"),
            "steps[0].depends_on[0]: a step cannot depend on itself"
        );
    }

    fn problems(text: &str) -> Vec<String> {
        WorkflowDefinition::parse(text)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    }

    #[test]
    fn every_duration_is_bounded_with_its_field_path() {
        let huge = "18446744073709551615s";
        let text = format!(
            "name: w\nversion: 1\ntimeout: {huge}\nschedules:\n  - {{cron: '* * * * *', catchup_window: 31days}}\nsteps:\n  - {{id: a, handler: h, timeout: {huge}, heartbeat_timeout: {huge}, schedule_to_start: {huge}, retry: {{initial_interval: {huge}, max_interval: 2days, backoff_coefficient: 1000}}, rate_limit: {{limit: 1, period: 3000years}}}}\n  - {{id: s, sleep: 3651days}}\n  - {{id: e, wait_for_event: {{event: x, timeout: {huge}}}}}\n"
        );
        let got = problems(&text);
        let expect = [
            "timeout: must be at most 3650days (got ",
            "steps[0].timeout: must be at most 3650days",
            "steps[0].heartbeat_timeout: must be at most 3650days",
            "steps[0].schedule_to_start: must be at most 3650days",
            "steps[0].retry.initial_interval: must be at most 1day (got ",
            "steps[0].retry.max_interval: must be at most 1day (got \"2days\")",
            "steps[0].retry.backoff_coefficient: 1000 must be between 1.0 and 100.0",
            "steps[0].rate_limit.period: must be at most 1day",
            "steps[1].sleep: must be at most 3650days",
            "steps[2].wait_for_event.timeout: must be at most 3650days",
            "schedules[0].catchup_window: must be at most 30days (got \"1month 13h",
        ];
        for e in expect {
            assert!(got.iter().any(|g| g.starts_with(e)), "missing {e:?} in {got:#?}");
        }
        assert_eq!(got.len(), expect.len(), "{got:#?}");
        // at the bound is fine
        WorkflowDefinition::parse(
            "name: w\nversion: 1\ntimeout: 3650days\nschedules:\n  - {cron: '* * * * *', catchup_window: 30days}\nsteps:\n  - {id: a, handler: h, timeout: 3650days, retry: {initial_interval: 1day, max_interval: 1day, backoff_coefficient: 100}, rate_limit: {limit: 1, period: 1day}}\n",
        )
        .unwrap();
    }

    #[test]
    fn schedule_to_start_is_read_for_handler_steps_and_refused_elsewhere() {
        let def = WorkflowDefinition::parse(
            "name: w\nversion: 1\nsteps:\n  - {id: a, handler: h, schedule_to_start: 30s}\n  - {id: b, handler: h}\n",
        )
        .unwrap();
        assert_eq!(def.steps[0].schedule_to_start, Some(Duration::from_secs(30)));
        assert_eq!(def.steps[1].schedule_to_start, None);
        let got = problems(
            "name: w\nversion: 1\nsteps:\n  - {id: s, sleep: 1s, schedule_to_start: 30s}\n  - {id: a, handler: h, schedule_to_start: 0s}\n",
        );
        assert!(
            got.iter()
                .any(|g| g.starts_with("steps[0].schedule_to_start: only a step with a handler")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|g| g == "steps[1].schedule_to_start: must be greater than zero"),
            "{got:#?}"
        );
    }

    #[test]
    fn names_follow_the_one_workflow_name_rule() {
        let got = problems(
            "name: 'x:registered'\nversion: 1\nsteps:\n  - {id: a, workflow: {name: 'x:registered'}}\n  - {id: b, handler: h, emit: {workflow: 'a}b', items: '[1]', key: 'item'}}\n",
        );
        assert_eq!(
            got,
            [
                "name: \"x:registered\" must be 1 to 128 characters of letters, digits, '_', '-', '.'",
                "steps[0].workflow.name: \"x:registered\" must be 1 to 128 characters of letters, digits, '_', '-', '.'",
                "steps[1].emit.workflow: \"a}b\" must be 1 to 128 characters of letters, digits, '_', '-', '.'",
            ]
        );
        for name in ["docs.v2-x_y", "x:registered", "", &"a".repeat(129), "é"] {
            let text = format!("name: '{name}'\nversion: 1\nsteps:\n  - {{id: a, handler: h}}\n");
            assert_eq!(
                WorkflowDefinition::parse(&text).is_ok(),
                crate::ids::check_workflow_name("workflow", name).is_ok(),
                "{name:?}"
            );
        }
    }

    #[test]
    fn an_error_lists_twenty_problems_and_counts_the_others() {
        let steps: String = (0..50).map(|i| format!("  - {{id: 's {i}', handler: h}}\n")).collect();
        let e = WorkflowDefinition::parse(&format!("name: w\nversion: 1\nsteps:\n{steps}")).unwrap_err();
        assert_eq!(e.0.len(), 50);
        let text = e.to_string();
        assert!(text.ends_with("; and 30 more"), "{text}");
        assert_eq!(text.matches("must be 1 to 64 characters").count(), 20);
    }

    #[test]
    fn echoed_values_are_cut() {
        let long = "x".repeat(100_000);
        let got = problems(&format!(
            "name: w\nversion: 1\nsteps:\n  - {{id: a, handler: '{long}', depends_on: ['{long}']}}\n"
        ));
        assert!(got.iter().all(|g| g.len() < 400), "{got:?}");
    }

    #[test]
    fn checks_input_against_schema() {
        let def = WorkflowDefinition::parse("name: w\nversion: 1\ninput_schema: {type: object, required: [path], properties: {path: {type: string}}}\nsteps:\n  - {id: a, handler: h}\n").unwrap();
        assert!(def.validate_input(&serde_json::json!({"path": "x"})).is_ok());
        let e = def.validate_input(&serde_json::json!({"path": 3})).unwrap_err();
        assert_eq!(e.0[0].path, "input/path");
    }
}
