//! The Redis adapter: run state, durable timers, the dispatch outbox, the effects outbox, run
//! indexes and the workflow registry. Every change of one run's state is one Lua script
//! (`scripts/*.lua`, the common prelude `common.lua` plus a body; one struct of named arguments
//! each, sent as one JSON object, and a typed reply) over keys it declares: the run's own (one hash
//! tag), the namespace's timers, outbox and effects, and the few others the caller names (a
//! handler's queued index, a run-slot pool, an event's waiters, the run indexes and the
//! definition's delete fence at creation). A run script never builds a key: what a commit means
//! for keys that are not the run's (a slot to give back or lease, an emitting parent to tell) it
//! writes as an [`Effect`] in the same commit, which the store applies at once with declared keys
//! and the effects sweeper applies after a crash. Other global writes are plain commands pipelined
//! *before* the script, so a crash between the two leaves at worst an entry that points at nothing
//! (timers and outbox entries are fenced by attempt and found harmless when they fire).
//!
//! This module and its children (`store/`) are the only ones that name the `redis` crate
//! (`store/boundary.rs` checks it): the rest of the coordinator calls typed methods, hands writes
//! on global keys over as a [`Batch`], and sees failures as [`StoreError`]. The standalone
//! scripts (claims, pools, events, the registry, parked items) are called through
//! `store/script.rs`: declared KEYS, one JSON argument, a tagged reply.

use std::{collections::HashMap, sync::Arc, time::Duration};

use baton_shared::{
    definition::WorkflowDefinition,
    keys::{Keys, run_index_member},
};
use redis::{AsyncCommands, Pipeline, aio::ConnectionManager};

use crate::error::{CoordinatorError, Result};

mod logs;
pub use logs::{Appended, LogRange, StoredLine};
mod admin;
mod archived;
mod batch;
#[cfg(test)]
mod boundary;
mod claims;
pub mod cluster;
mod error;
mod events;
mod schedules;
mod script;
mod slots;
pub mod tls;
mod workflows;

pub use admin::{ParkedRecord, QueueFigures, QueuedAttempt, TimerFigures};
pub use archived::{ArchiveBacklog, TombstoneOf, Tombstoned};
pub use batch::Batch;
pub use claims::EXPEDITE_BATCH;
pub use error::StoreError;
pub use events::PUBLISH_TRIES;
pub use schedules::ScheduleState;
pub use workflows::{DELETE_FENCE_LEASE, DELETE_SCAN_PAGE, DeleteVersion, PutWorkflow};

/// Fan-out elements per script call: staged per `stage_items` call, dispatched at most by the
/// `start_items` call, and outputs read per `HMGET` when a fan-out completes. 250 elements keep
/// each call to about a millisecond of Redis time (see docs/limits.md).
pub const ITEM_BATCH: usize = 250;

/// Waiters one `wake.lua` or `wake_runs.lua` call looks at, at most; a 'sem-wake' or 'run-wake'
/// timer due at once goes on with the rest, so a pool with thousands of waiters never holds Redis
/// for long.
pub const WAKE_BATCH: usize = 250;

/// Bytes of element inputs staged per `stage_items` call at most (a batch may hold fewer than
/// [`ITEM_BATCH`] elements when they are large): 1 MiB.
pub const ITEM_BATCH_BYTES: usize = 1024 * 1024;

/// Digits of one element index in a fan-out's running order (`<step>:items_order`): enough for
/// every index below `MAX_FAN_OUT`.
pub const ORDER_WIDTH: usize = 6;

/// The running order of a fan-out's elements for `start_items.lua`: '' when none is kept (every
/// element runs, by index), else the indexes not in `kept`, [`ORDER_WIDTH`] digits each.
fn running_order(total: usize, kept: &[usize]) -> String {
    if kept.is_empty() {
        return String::new();
    }
    let kept: std::collections::HashSet<usize> = kept.iter().copied().collect();
    (0..total)
        .filter(|i| !kept.contains(i))
        .map(|i| format!("{i:0width$}", width = ORDER_WIDTH))
        .collect()
}

/// The fields of a step that a run's view shows ([`Store::read_run`]). Its output is not among
/// them: `read_run` gives only its size (`<step>:output_bytes`) and [`Store::read_step_outputs`]
/// reads those that fit an answer.
pub const SHOWN_STEP_FIELDS: &[&str] = &[
    "status",
    "attempt",
    "base",
    "error",
    "dispatched_at",
    "started_at",
    "finished_at",
    "history",
    "history_dropped",
    "worker",
    "wake_at",
    "waiting_for",
    "completed_by",
    "child_run",
    "slot",
    "items_total",
    "items_ok",
    "items_failed",
    "items_next",
    "items_kept",
    "emit_total",
    "emit_next",
    "emit_succeeded",
    "emit_failed",
];

/// Steps read per `HMGET` in [`Store::read_run`]: 50 steps of 25 fields, so one command stays
/// well under a millisecond of Redis time.
const READ_STEPS_BATCH: usize = 50;

/// A run script: the common prelude plus its own body. It runs as a function of the run scripts'
/// Redis function library ([`RunLibrary`], `FCALL`) or, on a Redis without functions (before 7.0),
/// as a script of its own (`EVALSHA`); either way it answers `{its reply, the effects it wrote}`
/// (see [`Effect`]), which the caller applies at once.
struct RunScript {
    /// The script form (`EVALSHA`): the prelude, `begin`, then the body.
    script: redis::Script,
    /// The function form: its name in the library (`FCALL`).
    function: String,
    /// The script's name in metrics (`baton_redis_script_duration_seconds{script}`).
    name: &'static str,
}

/// One run script of a pipelined round trip ([`Store::eval_runs`]): its keys after the six every
/// run script gets, and its arguments.
struct RunEval<'a> {
    script: &'a RunScript,
    extra_keys: &'a [String],
    args: &'a [String],
}

/// The run scripts, by name and body (`scripts/<name>.lua`).
const RUN_SCRIPTS: [(&str, &str); 14] = [
    ("create_run", include_str!("scripts/create_run.lua")),
    ("start_step", include_str!("scripts/start_step.lua")),
    ("heartbeat", include_str!("scripts/heartbeat.lua")),
    ("complete_step", include_str!("scripts/complete_step.lua")),
    ("dispatch_attempt", include_str!("scripts/dispatch_attempt.lua")),
    ("cancel_run", include_str!("scripts/cancel_run.lua")),
    ("reset_steps", include_str!("scripts/reset_steps.lua")),
    ("emit_event", include_str!("scripts/emit_event.lua")),
    ("start_items", include_str!("scripts/start_items.lua")),
    ("stage_items", include_str!("scripts/stage_items.lua")),
    ("wait", include_str!("scripts/wait.lua")),
    ("resume", include_str!("scripts/resume.lua")),
    ("park", include_str!("scripts/park.lua")),
    ("take_over", include_str!("scripts/take_over.lua")),
];

/// The run scripts as one Redis function library (Redis 7.0 and later): `common.lua` once, then
/// each script's body as a function `<library>_<script>` that calls `begin` with its keys and
/// arguments. Redis runs a library's top level once, when it is loaded, so a call no longer pays
/// for the prelude (35 helper closures, its tables and constants: 8 µs of Redis CPU per call,
/// measured with `redis-benchmark`: 12.3 µs for an `EVALSHA` of the prelude and an empty body, 4.2
/// µs for the same by `FCALL`). The library's name carries a hash of its text, so coordinators of
/// two versions sharing a Redis (a rolling upgrade) each call their own.
struct RunLibrary {
    /// `baton_<12 hex digits of the SHA1 of the prelude and the bodies>`.
    name: String,
    /// The library's code, `#!lua name=<name>` first.
    code: String,
}

impl RunLibrary {
    fn new(prelude: &str) -> Self {
        let mut text = prelude.to_string();
        for (_, body) in RUN_SCRIPTS {
            text.push_str(body);
        }
        let hash = redis::Script::new(&text).get_hash().to_string();
        let name = format!("baton_{}", hash.get(..12).unwrap_or(&hash));
        let mut code = format!("#!lua name={name}\n{prelude}\n");
        for (script, body) in RUN_SCRIPTS {
            code.push_str(&format!(
                "local function run_{script}()\n{body}\nend\n\
                 redis.register_function('{name}_{script}', function(keys, argv) begin(keys, argv) \
                 return answer(run_{script}()) end)\n"
            ));
        }
        Self { name, code }
    }

    /// The run script `name` of this library: its function name and its script form.
    fn script(&self, prelude: &str, name: &'static str, body: &str) -> RunScript {
        let code = format!(
            "local keys_in, argv_in = KEYS, ARGV\n{prelude}\nbegin(keys_in, argv_in)\n\
             return answer((function()\n{body}\nend)())\n"
        );
        RunScript {
            script: redis::Script::new(&code),
            function: format!("{}_{name}", self.name),
            name,
        }
    }
}

/// Whether `e` says Redis does not have Baton's scripts or functions (it restarted without
/// persistence, or its functions were flushed): they are loaded again and the call retried once.
fn lost_scripts(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        || e.to_string().contains("Function not found")
}

/// Whether `e`, the answer to `FUNCTION LOAD`, says this Redis cannot have functions: an older
/// Redis (unknown command) or an ACL that does not allow them. The run scripts then go by `EVALSHA`.
fn functions_unavailable(e: &redis::RedisError) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    ["unknown command", "unknown subcommand", "noperm"]
        .iter()
        .any(|w| text.contains(w))
}

/// `common.lua` with the bounds it keeps put in from `baton_shared::limits`, so the two cannot drift.
fn common_prelude() -> String {
    use baton_shared::limits::{KEPT_ATTEMPTS, MAX_ATTEMPT_ERROR_BYTES};
    include_str!("scripts/common.lua")
        .replace("__KEPT_ATTEMPTS__", &KEPT_ATTEMPTS.to_string())
        .replace("__MAX_ATTEMPT_ERROR_BYTES__", &MAX_ATTEMPT_ERROR_BYTES.to_string())
        .replace("__ITEM_BATCH__", &ITEM_BATCH.to_string())
        .replace("__ORDER_WIDTH__", &ORDER_WIDTH.to_string())
}

struct Scripts {
    create_run: RunScript,
    start_step: RunScript,
    heartbeat: RunScript,
    complete_step: RunScript,
    dispatch_attempt: RunScript,
    cancel_run: RunScript,
    reset_steps: RunScript,
    emit_event: RunScript,
    start_items: RunScript,
    stage_items: RunScript,
    wait: RunScript,
    resume: RunScript,
    park: RunScript,
    take_over: RunScript,
    append_logs: redis::Script,
    emit_done: redis::Script,
    /// The run scripts above as one function library.
    library: RunLibrary,
}

impl Scripts {
    fn new() -> Self {
        let prelude = common_prelude();
        let library = RunLibrary::new(&prelude);
        let run = |name: &'static str| {
            let body = RUN_SCRIPTS.iter().find(|(n, _)| *n == name).map_or("", |(_, b)| *b);
            library.script(&prelude, name, body)
        };
        Self {
            create_run: run("create_run"),
            start_step: run("start_step"),
            heartbeat: run("heartbeat"),
            complete_step: run("complete_step"),
            dispatch_attempt: run("dispatch_attempt"),
            cancel_run: run("cancel_run"),
            reset_steps: run("reset_steps"),
            emit_event: run("emit_event"),
            start_items: run("start_items"),
            stage_items: run("stage_items"),
            wait: run("wait"),
            resume: run("resume"),
            park: run("park"),
            take_over: run("take_over"),
            append_logs: redis::Script::new(include_str!("scripts/append_logs.lua")),
            emit_done: redis::Script::new(include_str!("scripts/emit_done.lua")),
            library,
        }
    }

    /// Every run script.
    fn run_scripts(&self) -> [&RunScript; 14] {
        [
            &self.create_run,
            &self.start_step,
            &self.heartbeat,
            &self.complete_step,
            &self.dispatch_attempt,
            &self.cancel_run,
            &self.reset_steps,
            &self.emit_event,
            &self.start_items,
            &self.stage_items,
            &self.wait,
            &self.resume,
            &self.park,
            &self.take_over,
        ]
    }
}

/// What a worker should do with an attempt (the answer of start, heartbeat and report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The attempt is current.
    Proceed,
    /// The attempt is not current; drop it.
    Stale,
    /// The run is over; stop.
    Cancelled,
    /// (StartStep) Another live worker holds the attempt: drop this copy without running it.
    Duplicate,
}

/// What `start_step.lua` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// The answer to give the worker.
    Answer(Disposition),
    /// The attempt is running on this other worker: ask again with it as [`StartArgs::holder`].
    Held(String),
}

/// Arguments of `start_step.lua` (StartStep, one script and one round trip: the fence, the
/// attempt marked running, its timeout and heartbeat timers armed, and its queued-index entry and
/// schedule-to-start timer removed).
pub struct StartArgs<'a> {
    /// The step (or fan-out element), which the caller checked runs a handler.
    pub step: &'a str,
    /// The step's handler: the attempt leaves this handler's queued index ([`Keys::queued`]).
    pub handler: &'a str,
    /// The attempt the worker was given.
    pub attempt: u32,
    /// The worker starting it (not empty).
    pub worker: &'a str,
    /// `workflow@version` the worker was given.
    pub pinned: &'a str,
    /// The attempt's start-to-close timeout, as a due time (Unix ms).
    pub timeout_due: i64,
    /// Its heartbeat timeout as a due time (Unix ms), if it has one.
    pub heartbeat_due: Option<i64>,
    /// The lease of the concurrency slot it holds, from now (ms); 0 for none.
    pub slot_lease_ms: u64,
    /// The holder a previous call answered ([`Started::Held`]): its liveness decides.
    pub holder: Option<&'a str>,
    /// How long after the holder's liveness lapses its attempt is checked again.
    pub recheck_margin: Duration,
    /// The input the worker received (JSON text, checked by the caller), kept with the attempt
    /// as `<step>:input@<attempt>` when it proceeds; `""` records none.
    pub input: &'a str,
}

/// `start_step.lua`'s arguments (`A`, ARGV[6]): [`StartArgs`] by name.
#[derive(serde::Serialize)]
struct StartStepJson<'a> {
    step: &'a str,
    attempt: u32,
    worker: &'a str,
    pinned: &'a str,
    #[serde(skip_serializing_if = "is_zero_u64")]
    slot_lease_ms: u64,
    timeout_due: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    heartbeat_due: i64,
    #[serde(skip_serializing_if = "str::is_empty")]
    holder: &'a str,
    recheck_ms: u64,
    input: &'a str,
}

/// Leaves a zero number out of a script's JSON arguments (the script reads it as absent).
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// Leaves a zero number out of a script's JSON arguments (the script reads it as absent).
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// What `take_over.lua` answered.
#[derive(Debug, Clone, PartialEq)]
pub enum TakeOver {
    /// The attempt ended, or another worker holds it now: nothing to do.
    Stale,
    /// The holder is alive for this many ms more (`None`: its liveness key has no expiry).
    Alive(Option<u64>),
    /// The holder is gone: the attempt is dispatched again; publish it.
    Dispatch(DispatchPayload),
}

/// What a dispatch needs from the run: the payload of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchPayload {
    /// The step to dispatch.
    pub step_id: String,
    /// Its attempt number (1-based).
    pub attempt: u32,
    /// Attempts the step had before its run was last retried or re-run (see `StepTask.attempt_base`).
    pub attempt_base: u32,
    /// When the dispatch was committed, Unix ms.
    pub dispatched_at: i64,
    /// The run input, JSON text.
    pub input_json: String,
    /// For a fan-out element: its own input (JSON text).
    pub item_input: Option<String>,
    /// For a resumed handler: the payload of the event that resumed it (JSON text), else empty.
    pub resume_data: String,
    /// Outputs of the steps the step reads (its parents first), JSON text by step id.
    pub parent_outputs: HashMap<String, String>,
    /// Statuses of the same steps (`succeeded` or `skipped`).
    pub parent_statuses: HashMap<String, String>,
    /// Whether the commit that dispatched it also put the attempt in its handler's queued index and
    /// armed its schedule-to-start timer (a [`QueuedPlan`] entry): then the launch need not, and
    /// must take it out again if the step does not go to a worker after all.
    pub queued: bool,
}

/// What goes straight to a worker when a script dispatches it: per step id, its handler's queued
/// index (a key declared in the script's KEYS) and its schedule-to-start timeout. The script that
/// commits such a dispatch also writes the attempt's queued-index entry and schedule-to-start timer
/// (which were a round trip of their own, `note_dispatched`). Sent as one JSON argument:
/// `{"<step>": {"key": <KEYS index, 1-based>, "s2s_ms": <ms, 0 for none>}}`.
#[derive(Debug, Clone, Default)]
pub struct QueuedPlan {
    /// The distinct queued-index keys, in KEYS order after the script's own keys.
    keys: Vec<String>,
    /// Per step id: (position in `keys`, schedule-to-start ms).
    entries: std::collections::BTreeMap<String, (usize, u64)>,
}

#[derive(serde::Serialize)]
struct QueuedEntry {
    key: usize,
    s2s_ms: u64,
}

impl QueuedPlan {
    /// Adds `step`, whose handler is `handler` (its queued index [`Keys::queued`]), with its
    /// schedule-to-start timeout (`None`: none).
    pub fn add(&mut self, keys: &Keys, step: &str, handler: &str, schedule_to_start: Option<Duration>) {
        let key = keys.queued(handler);
        let i = match self.keys.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                self.keys.push(key);
                self.keys.len() - 1
            }
        };
        let s2s = schedule_to_start.map(crate::machine::span_ms).unwrap_or(0);
        self.entries.insert(step.to_string(), (i, s2s));
    }

    /// Whether `step` is in the plan.
    pub fn contains(&self, step: &str) -> bool {
        self.entries.contains_key(step)
    }

    /// Whether it has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The plan as the scripts read it, with KEYS indexes counted from `first_key` (1-based: the
    /// index of the first queued key in the script's KEYS).
    fn entries(&self, first_key: usize) -> std::collections::BTreeMap<&str, QueuedEntry> {
        self.entries
            .iter()
            .map(|(step, (i, s2s))| {
                (
                    step.as_str(),
                    QueuedEntry {
                        key: first_key.saturating_add(*i),
                        s2s_ms: *s2s,
                    },
                )
            })
            .collect()
    }

    /// [`QueuedPlan::entries`] as JSON text (an object, `{}` when empty).
    #[cfg(test)]
    fn json(&self, first_key: usize) -> String {
        serde_json::to_string(&self.entries(first_key)).unwrap_or_else(|_| "{}".into())
    }
}

/// The parent of a child run.
#[derive(Debug, Clone, Copy)]
pub struct ParentRef<'a> {
    /// The parent run.
    pub run: &'a str,
    /// Its step that started the child.
    pub step: &'a str,
    /// That step's attempt.
    pub attempt: u32,
    /// What the child is to its parent.
    pub kind: ParentKind,
    /// The child's depth: sub-workflow levels below its root run (a root run is 0), at most
    /// `baton_shared::limits::MAX_WORKFLOW_DEPTH`.
    pub depth: u32,
}

/// What a child run is to its parent (`create_run.lua`'s `parent.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParentKind {
    /// The child of a workflow step: the child's end completes the step (a `child-done` timer).
    Workflow,
    /// A run an emitting step started: the child's end is counted (an `emit_done` effect).
    Emit,
}

/// `create_run.lua`'s `parent`.
#[derive(serde::Serialize)]
struct ParentJson<'a> {
    run: &'a str,
    step: &'a str,
    attempt: u32,
    kind: ParentKind,
}

/// `create_run.lua`'s `run_slot`.
#[derive(serde::Serialize)]
struct RunSlotJson<'a> {
    pool: &'a str,
    limit: u32,
    detail: String,
}

/// A run's graph as its scripts read it: stored once by `create_run.lua` (`put_graph` in
/// common.lua), so a report or a dispatch sends only its step. Sent as `{"children": {"<step>":
/// "<spec>"}, "reads": {"<step>": "<csv>"}, "leaves": "<csv>"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunGraph {
    /// Per step that has children: its children with their parents and reads,
    /// `c1=p1,p2=r1;c2=p1` ([`crate::machine::children_spec`]).
    children: std::collections::BTreeMap<String, String>,
    /// Per step whose dispatch hands over other steps' statuses and outputs: those steps, its
    /// parents first, comma-separated ([`crate::machine::reads_csv`]).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    reads: std::collections::BTreeMap<String, String>,
    /// The leaf step ids, comma-separated (their outputs make the run output).
    leaves: String,
}

impl RunGraph {
    /// The graph of `def`.
    pub fn of(def: &WorkflowDefinition) -> Self {
        Self {
            children: def
                .steps
                .iter()
                .map(|s| (s.id.clone(), crate::machine::children_spec(def, &s.id)))
                .filter(|(_, spec)| !spec.is_empty())
                .collect(),
            reads: def
                .steps
                .iter()
                .map(|s| (s.id.clone(), crate::machine::reads_csv(def, &s.id)))
                .filter(|(_, reads)| !reads.is_empty())
                .collect(),
            leaves: crate::machine::leaves_csv(def),
        }
    }
}

/// `create_run.lua`'s arguments (`A`); the input travels beside them.
#[derive(serde::Serialize)]
struct CreateRunJson<'a> {
    workflow: &'a str,
    version: u32,
    idempotency_key: &'a str,
    step_ids: &'a str,
    roots: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<ParentJson<'a>>,
    depth: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_slot: Option<RunSlotJson<'a>>,
    graph: &'a RunGraph,
    queued: std::collections::BTreeMap<&'a str, QueuedEntry>,
    /// The definition fence and the run indexes (`store/workflows.rs`).
    fence: workflows::CreateFence<'a>,
}

/// A script's named arguments as JSON text.
///
/// # Errors
/// `Internal` naming the script (the structs here always serialize).
fn to_json<T: serde::Serialize>(script: &str, args: &T) -> Result<String> {
    serde_json::to_string(args).map_err(|e| CoordinatorError::Internal(format!("{script}.lua: arguments: {e}")))
}

/// One run to create in a batch ([`Store::create_runs`]).
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Its id.
    pub run_id: String,
    /// Its input, JSON text.
    pub input_json: String,
    /// Its run-slot pool, for a workflow with `max_concurrent_runs`.
    pub run_slot: Option<String>,
}

/// The events buffered for one (name, key) ([`Store::buffered_events`]).
#[derive(Debug, Clone)]
pub struct BufferedPair {
    /// The event name.
    pub name: String,
    /// The key.
    pub key: String,
    /// Events buffered.
    pub count: u64,
    /// The oldest payload, JSON text.
    pub oldest: String,
    /// The newest payload, JSON text.
    pub newest: String,
    /// When an event was last buffered (Unix ms).
    pub last_at: i64,
}

/// The run slots of a workflow with `max_concurrent_runs`: a pool and its limit.
#[derive(Debug, Clone)]
pub struct RunSlot {
    /// `<workflow>/run` or `<workflow>/run/<key>`.
    pub pool: String,
    /// Unfinished runs at once, at most.
    pub limit: u32,
}

impl RunSlot {
    fn detail(&self) -> String {
        format!("a run slot of {} (limit {})", self.pool, self.limit)
    }
}

/// What became of a run to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// Created, its roots dispatched.
    Created,
    /// Created, its roots waiting for a run slot.
    Queued,
    /// A run of that id existed, with this status.
    Exists(String),
}

/// Reads `create_run.lua`'s reply.
///
/// # Errors
/// `NotFound` naming `version` when the version is deleted or being deleted (`no_version`);
/// `Internal` naming the script for an unknown tag (never read as "exists").
fn create_outcome(out: &[String], workflow: &str, version: u32) -> Result<CreateOutcome> {
    match out.first().map(String::as_str) {
        Some("created") => Ok(CreateOutcome::Created),
        Some("queued") => Ok(CreateOutcome::Queued),
        Some("exists") => Ok(CreateOutcome::Exists(out.get(1).cloned().unwrap_or_default())),
        Some("no_version") => Err(CoordinatorError::NotFound(format!(
            "version: workflow {} has no version {version} (it was deleted)",
            baton_shared::limits::echo(workflow)
        ))),
        other => Err(CoordinatorError::Internal(format!("create_run.lua answered {other:?}"))),
    }
}

/// How `dispatch_attempt.lua` dispatches (its `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DispatchMode {
    /// A retrying step whose backoff elapsed: dispatch it as the given attempt.
    Retry,
    /// A parked step (rate limited) whose timer fired: dispatch it again.
    Unpark,
    /// The sweeper: answer only if the step is still dispatched.
    Check,
}

/// What became of a request for a concurrency slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotOutcome {
    /// The attempt holds a slot (now, or since an earlier request).
    Held,
    /// The step waits for a slot, holding no worker.
    Queued,
    /// The step is no longer dispatched at that attempt.
    Stale,
}

/// Arguments of `wait.lua`.
pub struct WaitArgs<'a> {
    /// The step.
    pub step: &'a str,
    /// Its current attempt.
    pub attempt: u32,
    /// What it waits for (`Sleep`: `timeout_at` is then its wake time).
    pub mode: WaitMode,
    /// What it waits for, in words.
    pub detail: &'a str,
    /// For `event` and `suspend`: the event name and key.
    pub event: Option<(&'a str, &'a str)>,
    /// For `child`: the child run.
    pub child_run: &'a str,
    /// For `event` and `suspend`: when the wait times out (Unix ms), or 0.
    pub timeout_at: i64,
    /// For `suspend`: the worker that suspended.
    pub worker: &'a str,
}

/// How a step waits (`wait.lua`'s `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitMode {
    /// A wait_for_event step.
    Event,
    /// A handler suspended itself until an event.
    Suspend,
    /// A human task.
    Human,
    /// A workflow step whose child run was created.
    Child,
    /// A sleep or sleep_until step, until its `wake` timer.
    Sleep,
}

/// What became of a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Not the current attempt, or the run is over.
    Stale,
    /// Waiting.
    Waiting,
    /// A buffered event was taken at once; an `event` timer completes the delivery.
    Delivered,
}

/// The result of applying an attempt's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// Not the current attempt of a live step: nothing changed.
    Stale,
    /// (Heartbeat timer) the attempt beat at this time (Unix ms); check again later.
    Alive(i64),
    /// The step will be retried as this attempt.
    Retry(u32),
    /// The step and the run failed.
    Failed,
    /// An emitting step's handler succeeded: the step now starts its child runs.
    Emit,
    /// The step succeeded; these children were dispatched; `run_status` is the run's status now.
    Succeeded {
        /// The run's status after this step (`succeeded` if it was the last).
        run_status: String,
        /// Children that became ready and were committed as dispatched: publish them.
        dispatched: Vec<DispatchPayload>,
    },
}

/// An entry claimed from a durable-time sorted set, to be released when handled.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The entry.
    pub member: String,
    /// The lease its batch holds.
    pub lease: Lease,
}

/// The score a claimed batch holds in its sorted set: the Unix ms at which the claim lapses and the
/// entries come due again for any coordinator. Shared by the entries of one claim and moved forward
/// by [`Store::renew`] while they are worked on; a release reads it under the lock, so a release and
/// a renewal never cross.
#[derive(Debug, Clone)]
pub struct Lease(Arc<tokio::sync::RwLock<i64>>);

impl Lease {
    /// A lease whose score is `until_ms` (Unix ms).
    pub fn new(until_ms: i64) -> Self {
        Self(Arc::new(tokio::sync::RwLock::new(until_ms)))
    }
}

/// Arguments common to every run script.
pub struct RunCall<'a> {
    /// The run.
    pub run_id: &'a str,
    /// Now, Unix ms.
    pub now: i64,
}

/// A connection of its own for blocking reads (`XREAD BLOCK`, no response timeout), from
/// [`Store::blocking_connection`]; named here so that callers outside the store need not name redis.
pub type BlockingConnection = redis::aio::MultiplexedConnection;

/// Redis-backed state of runs, timers and the registry.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    client: redis::Client,
    /// Whether `redis_url` is a Redis Cluster (`redis+cluster://`): the store then talks to the
    /// primary of the namespace's slot through `relay`.
    cluster: bool,
    /// With a Redis Cluster: the relay to the slot's primary, kept while any clone of the store
    /// lives.
    _relay: Option<std::sync::Arc<cluster::Relay>>,
    keys: Keys,
    scripts: std::sync::Arc<Scripts>,
    /// Whether Redis has the run scripts' function library ([`RunLibrary`]): they are called by
    /// `FCALL` then, else by `EVALSHA` (set by each load, [`Store::load_scripts`]).
    functions: std::sync::Arc<std::sync::atomic::AtomicBool>,
    events_max_len: u64,
    retention: Duration,
    dispatch_grace: Duration,
    /// How far ahead of a commit a new outbox entry comes due (see [`Store::with_outbox_hold`]).
    outbox_hold: Duration,
    max_payload_bytes: usize,
    /// Whether finished runs are queued for the archive (the coordinator has an `archive_url`):
    /// see [`Store::with_archive`].
    archive: bool,
    /// With `durability = "replicated"`: the replicas each commit waits for (see
    /// [`Store::with_durability`]); `None` (the default): a commit is acknowledged by the primary.
    durability: Option<Replicated>,
    /// With `durability = "replicated"`: the connections commits go through ([`COMMIT_CONNECTIONS`],
    /// taken in turn). Redis's `WAIT` holds its connection until the replicas acknowledge, so
    /// commits do not share the connection of reads, health probes and the sweepers' claims.
    commit_conns: std::sync::Arc<Vec<ConnectionManager>>,
    /// The next of `commit_conns` to use.
    next_commit_conn: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The step ids of runs read lately (a run's `step_ids`, fixed when it is created), so that
    /// [`Store::read_run`] reads the run and its steps in one round trip after the first time.
    step_ids: moka::sync::Cache<String, std::sync::Arc<str>>,
    /// The queue of [`Store::read_time_later`], with its reader task started on first use.
    time_reads: std::sync::Arc<std::sync::OnceLock<tokio::sync::mpsc::Sender<TimeRead>>>,
}

/// Most reads [`Store::read_time_later`] holds before it drops new ones (a metric's sample).
pub const TIME_READ_QUEUE: usize = 4096;
/// Most reads one round trip of [`Store::read_time_later`]'s reader carries.
pub const TIME_READ_BATCH: usize = 512;

/// What a metric measures its latency from: a stored Unix-ms time, read off the caller's path by
/// [`Store::read_time_later`].
#[derive(Debug, Clone, Copy)]
pub enum StoredTime<'a> {
    /// Field `field` of step (or fan-out element) `step` of run `run_id`, e.g. `dispatched_at`.
    Step {
        /// The run.
        run_id: &'a str,
        /// The step.
        step: &'a str,
        /// The field.
        field: &'a str,
    },
    /// Field `field` of run `run_id`, e.g. `created_at`.
    Run {
        /// The run.
        run_id: &'a str,
        /// The field.
        field: &'a str,
    },
}

/// One queued read of [`Store::read_time_later`]: a hash field and what to do with its time.
struct TimeRead {
    key: String,
    field: String,
    then: Box<dyn FnOnce(i64) + Send>,
}

/// Most bytes the [`Store::read_run`] cache of step ids holds (1 MiB), counting each entry's run
/// id and step ids plus [`STEP_IDS_ENTRY_BYTES`]: at most 4,096 runs. Only runs read again soon
/// (polled) profit from it.
const STEP_IDS_CACHE_BYTES: u64 = 1 << 20;
/// What one entry of that cache costs besides its text (the cache's own bookkeeping, estimated).
const STEP_IDS_ENTRY_BYTES: usize = 256;
/// How long a run's step ids stay cached without being read.
const STEP_IDS_CACHE_IDLE: Duration = Duration::from_secs(30);

/// A run script's named arguments `a` (one JSON object, as `to_json` writes it) with the field
/// `archive` added: the index into KEYS of the archive outbox.
///
/// # Errors
/// `Internal` when `a` is not a JSON object's text.
fn with_archive_index(a: &str, index: usize) -> Result<String> {
    let rest = a
        .trim_start()
        .strip_prefix('{')
        .ok_or_else(|| CoordinatorError::Internal("a run script's arguments are not a JSON object".into()))?;
    if rest.trim_start().starts_with('}') {
        Ok(format!("{{\"archive\":{index}}}"))
    } else {
        Ok(format!("{{\"archive\":{index},{rest}"))
    }
}

/// A reply Redis should not give, as an error.
fn unexpected(e: redis::ParsingError) -> CoordinatorError {
    CoordinatorError::Internal(format!("unexpected answer from Redis: {e}"))
}

/// The step fields of [`Store::read_run`] from the answers to [`Store::step_reads`] (`values`:
/// the `HMGET`s, then one `HSTRLEN` per step of `ids`), keyed `<step>:<field>`; a step's output
/// size is `<step>:output_bytes`, left out when it has none.
fn step_fields_read(
    ids: &[&str],
    names: Vec<String>,
    mut values: Vec<redis::Value>,
) -> Result<HashMap<String, String>> {
    let mut steps = HashMap::with_capacity(names.len());
    let sizes = values.split_off(values.len().saturating_sub(ids.len()));
    let fields = values
        .into_iter()
        .map(redis::from_redis_value::<Vec<Option<String>>>)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(unexpected)?;
    for (name, value) in names.into_iter().zip(fields.into_iter().flatten()) {
        if let Some(v) = value {
            steps.insert(name, v);
        }
    }
    for (id, size) in ids.iter().zip(sizes) {
        let size: u64 = redis::from_redis_value(size).map_err(unexpected)?;
        if size > 0 {
            steps.insert(format!("{id}:output_bytes"), size.to_string());
        }
    }
    Ok(steps)
}

impl Store {
    /// Connects to `url` (`redis://host:port/db`, or a Redis Cluster's
    /// `redis+cluster://host:port[,host:port...]`: see [`cluster`]).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`] when Redis cannot be reached.
    /// `dispatch_grace` is how long after a dispatch the sweeper republishes it unless RabbitMQ
    /// confirmed it first.
    pub async fn connect(
        url: &str,
        keys: Keys,
        events_max_len: u64,
        retention: Duration,
        dispatch_grace: Duration,
    ) -> Result<Self> {
        Self::connect_with_tls(
            url,
            &tls::RedisTls::default(),
            keys,
            events_max_len,
            retention,
            dispatch_grace,
        )
        .await
    }

    /// [`Store::connect`] with the TLS settings `tls` for `rediss://` and `rediss+cluster://`
    /// (see [`tls`]).
    ///
    /// # Errors
    /// As [`Store::connect`]; `InvalidArgument` for TLS settings rustls refuses.
    pub async fn connect_with_tls(
        url: &str,
        tls: &tls::RedisTls,
        keys: Keys,
        events_max_len: u64,
        retention: Duration,
        dispatch_grace: Duration,
    ) -> Result<Self> {
        let relay = match cluster::ClusterUrl::parse(url)? {
            Some(cluster_url) => Some(std::sync::Arc::new(
                cluster::Relay::start(cluster_url, &keys.tag(baton_shared::keys::Scope::Namespace), tls).await?,
            )),
            None => None,
        };
        // Through a relay, the store's own connections are plain (the relay speaks TLS to the nodes).
        let client = match &relay {
            Some(r) => redis::Client::open(r.url.as_str())?,
            None => tls.client(url)?,
        };
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(3);
        let conn = client.get_connection_manager_with_config(cfg).await?;
        let scripts = Scripts::new();
        let store = Self {
            conn,
            client,
            cluster: relay.is_some(),
            _relay: relay,
            keys,
            scripts: std::sync::Arc::new(scripts),
            functions: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            events_max_len,
            retention,
            dispatch_grace,
            outbox_hold: dispatch_grace,
            max_payload_bytes: usize::MAX,
            archive: false,
            durability: None,
            commit_conns: std::sync::Arc::new(Vec::new()),
            next_commit_conn: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            step_ids: moka::sync::Cache::builder()
                .max_capacity(STEP_IDS_CACHE_BYTES)
                .weigher(|run: &String, ids: &std::sync::Arc<str>| {
                    u32::try_from(run.len().saturating_add(ids.len()).saturating_add(STEP_IDS_ENTRY_BYTES))
                        .unwrap_or(u32::MAX)
                })
                .time_to_idle(STEP_IDS_CACHE_IDLE)
                .build(),
            time_reads: std::sync::Arc::new(std::sync::OnceLock::new()),
        };
        store.load_scripts().await?;
        Ok(store)
    }

    /// Sets the largest step output the scripts accept for a fan-out step's combined results
    /// (unlimited by default).
    #[must_use]
    pub fn with_max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }

    /// Sets how far ahead of its commit a new dispatch's outbox entry comes due (default: the
    /// dispatch grace). The coordinator sets its `timer_lease`: the committing coordinator holds
    /// its entries that long at a time while it publishes ([`crate::dispatch::Dispatcher::hold`]),
    /// so the entries of a coordinator that died come due for the sweeper within one lease.
    #[must_use]
    pub fn with_outbox_hold(mut self, hold: Duration) -> Self {
        self.outbox_hold = hold;
        self
    }

    /// Queues every run that finishes from now on for the archive, in the commit that finishes it
    /// (`finish_run` in common.lua, [`Keys::archive_outbox`]), instead of letting it expire after
    /// the retention: the archiver (`crate::archiver`) writes it to PostgreSQL and shrinks it to a
    /// tombstone. Off by default (no `archive_url`): nothing changes.
    #[must_use]
    pub fn with_archive(mut self, on: bool) -> Self {
        self.archive = on;
        self
    }

    /// Makes every run transition wait, in the same round trip as its commit, until `replicated`'s
    /// number of Redis replicas have it (`WAIT`), so a failover to one of them loses no
    /// transition a caller was told of. A commit that reaches fewer within its timeout stands on
    /// the primary but answers `Unavailable` (naming `durability`), so the caller tries again (a
    /// worker's report, a submit with its idempotency key: each applies once). `None` (the
    /// default): the primary's acknowledgement is enough, and a failover can lose the last
    /// transitions (docs/guarantees.md).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`] when the commit connections cannot be opened.
    pub async fn with_durability(mut self, replicated: Option<Replicated>) -> Result<Self> {
        self.durability = replicated;
        if replicated.is_some() {
            let mut conns = Vec::with_capacity(COMMIT_CONNECTIONS);
            for _ in 0..COMMIT_CONNECTIONS {
                let cfg = redis::aio::ConnectionManagerConfig::new()
                    .set_response_timeout(Some(Duration::from_secs(70)))
                    .set_connection_timeout(Some(Duration::from_secs(5)))
                    .set_number_of_retries(3);
                conns.push(self.client.get_connection_manager_with_config(cfg).await?);
            }
            self.commit_conns = std::sync::Arc::new(conns);
        }
        Ok(self)
    }

    /// The connection a commit goes through: the shared one, or with `durability = "replicated"`
    /// the next commit connection.
    fn commit_conn(&self) -> ConnectionManager {
        let n = self.commit_conns.len();
        if n == 0 {
            return self.conn.clone();
        }
        let i = self.next_commit_conn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
        self.commit_conns.get(i).map_or_else(|| self.conn.clone(), Clone::clone)
    }

    /// The replicas commits wait for ([`Store::with_durability`]).
    pub fn durability(&self) -> Option<Replicated> {
        self.durability
    }

    /// With `durability = "replicated"`: why Redis cannot give commits the replicas they wait for
    /// (fewer replicas online than asked, by `INFO replication` of the primary), or `None` when it
    /// can, or when commits wait for none.
    ///
    /// # Errors
    /// `Redis` when `INFO` fails.
    pub async fn replicas_missing(&self) -> Result<Option<String>> {
        let Some(r) = self.durability else {
            return Ok(None);
        };
        let mut conn = self.conn.clone();
        let info: String = redis::cmd("INFO").arg("replication").query_async(&mut conn).await?;
        let online = replicas_online(&info);
        Ok((online < r.replicas).then(|| {
            format!(
                "durability replicated waits for {} replica(s) and the Redis primary has {online} online",
                r.replicas
            )
        }))
    }

    /// Whether finished runs are queued for the archive ([`Store::with_archive`]).
    pub fn archives(&self) -> bool {
        self.archive
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A dedicated connection without a response timeout, for blocking reads (`XREAD BLOCK`).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn blocking_connection(&self) -> Result<BlockingConnection> {
        let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        Ok(self.client.get_multiplexed_async_connection_with_config(&cfg).await?)
    }

    /// A clone of the shared multiplexed connection (for the store's own modules).
    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Loads the run scripts' function library (`FUNCTION LOAD REPLACE`: the same text under the
    /// same name changes nothing), or, where Redis cannot have functions, each run script
    /// (`SCRIPT LOAD`); then the two scripts that go in pipelines by hash.
    async fn load_scripts(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let s = &self.scripts;
        let loaded = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(&s.library.code)
            .query_async::<String>(&mut conn)
            .await;
        let functions = match loaded {
            Ok(_) => true,
            Err(e) if functions_unavailable(&e) => {
                tracing::info!(error = %e, "Redis cannot load Baton's function library; run scripts go by EVALSHA");
                false
            }
            Err(e) => return Err(e.into()),
        };
        self.functions.store(functions, std::sync::atomic::Ordering::Relaxed);
        if !functions {
            for script in s.run_scripts() {
                script.script.prepare_invoke().load_async(&mut conn).await?;
            }
        }
        // The standalone scripts (store/script.rs) load themselves on first use; these two go in
        // pipelines by hash (EVALSHA), so they load here.
        for script in [&s.append_logs, &s.emit_done] {
            script.prepare_invoke().load_async(&mut conn).await?;
        }
        Ok(())
    }

    /// Appends a call of run script `script` to `pipe` (`FCALL` of its function, or `EVALSHA`
    /// where Redis has no functions); its key count, keys and arguments go after.
    fn run_call<'p>(&self, pipe: &'p mut Pipeline, script: &RunScript) -> &'p mut Pipeline {
        if self.functions.load(std::sync::atomic::Ordering::Relaxed) {
            pipe.cmd("FCALL").arg(&script.function)
        } else {
            pipe.cmd("EVALSHA").arg(script.script.get_hash())
        }
    }

    /// Runs `prelude` (plain commands on global keys) and then `script` on the run's keys, in one
    /// pipeline: one round trip. Reloads the scripts once if Redis lost them (a restart).
    async fn eval_run(
        &self,
        prelude: impl Into<Pipeline>,
        script: &RunScript,
        call: &RunCall<'_>,
        args: &[String],
    ) -> Result<Vec<String>> {
        self.eval_run_with(prelude, script, call, &[], args).await
    }

    /// As `eval_run`, with keys after the six every run script gets.
    async fn eval_run_with(
        &self,
        prelude: impl Into<Pipeline>,
        script: &RunScript,
        call: &RunCall<'_>,
        extra_keys: &[String],
        args: &[String],
    ) -> Result<Vec<String>> {
        Ok(self
            .eval_run_effects(prelude.into(), script, call, extra_keys, args)
            .await?
            .0)
    }

    /// As `eval_run_with`, for a script that reads the run's stored graph: `args` builds its
    /// arguments with the graph to store first (`None` on the first call). A run created before
    /// graphs were stored (layout 2) answers `no_graph`, having changed nothing; it is called again
    /// with the graph of `def` (once per such run: the script stores it). The global writes in
    /// `prelude` go with the first call only.
    async fn eval_run_graph(
        &self,
        prelude: Pipeline,
        script: &RunScript,
        call: &RunCall<'_>,
        def: &WorkflowDefinition,
        extra_keys: &[String],
        args: impl Fn(Option<&RunGraph>) -> Result<Vec<String>>,
    ) -> Result<Vec<String>> {
        let mut prelude = Some(prelude);
        let mut graph = None;
        loop {
            let a = args(graph.as_ref())?;
            let out = self
                .eval_run_with(prelude.take().unwrap_or_else(redis::pipe), script, call, extra_keys, &a)
                .await?;
            if graph.is_none() && no_graph(&out) {
                graph = Some(RunGraph::of(def));
                continue;
            }
            return Ok(out);
        }
    }

    /// As `eval_run_with`, and the effects the script wrote, which are applied before this returns
    /// (one more round trip, only when there are any; see [`Store::apply_effects`]).
    async fn eval_run_effects(
        &self,
        prelude: Pipeline,
        script: &RunScript,
        call: &RunCall<'_>,
        extra_keys: &[String],
        args: &[String],
    ) -> Result<(Vec<String>, Vec<Effect>)> {
        let mut out = self
            .eval_runs(
                prelude,
                script.name,
                call,
                &[RunEval {
                    script,
                    extra_keys,
                    args,
                }],
            )
            .await?;
        let first = out.pop().unwrap_or_default();
        let effects = self.apply_effects(&first.1, call.now).await;
        Ok((first.0, effects))
    }

    /// Runs `prelude`, then each of `evals` in order on the run's keys (each script atomic on its
    /// own), in one pipeline: one round trip, with `durability`'s `WAIT` at its end. Answers each
    /// script's reply and the effects it wrote (not applied). Reloads the scripts once if Redis
    /// lost them (a restart); `label` names the round trip in the metrics.
    async fn eval_runs(
        &self,
        prelude: Pipeline,
        label: &'static str,
        call: &RunCall<'_>,
        evals: &[RunEval<'_>],
    ) -> Result<Vec<(Vec<String>, Vec<String>)>> {
        let k = &self.keys;
        // With an archive, the archive outbox goes after a script's own keys and its index into
        // A as `archive` (see common.lua), so that a script that finishes the run queues it.
        let mut prepared = Vec::with_capacity(evals.len());
        for e in evals {
            prepared.push(if self.archive {
                let mut keys = e.extra_keys.to_vec();
                keys.push(k.archive_outbox());
                let index = RUN_KEYS.saturating_add(keys.len());
                let mut args = e.args.to_vec();
                if let Some(a) = args.first_mut() {
                    *a = with_archive_index(a, index)?;
                }
                (std::borrow::Cow::Owned(keys), std::borrow::Cow::Owned(args))
            } else {
                (
                    std::borrow::Cow::Borrowed(e.extra_keys),
                    std::borrow::Cow::Borrowed(e.args),
                )
            });
        }
        for tried in 0..2 {
            let mut pipe = prelude.clone();
            for (e, (extra_keys, args)) in evals.iter().zip(&prepared) {
                let (extra_keys, args): (&[String], &[String]) = (extra_keys, args);
                self.run_call(&mut pipe, e.script)
                    .arg(RUN_KEYS + extra_keys.len())
                    .arg(k.run(call.run_id))
                    .arg(k.steps(call.run_id))
                    .arg(k.events(call.run_id))
                    .arg(k.timers())
                    .arg(k.outbox())
                    .arg(k.effects())
                    .arg(extra_keys)
                    .arg(call.now)
                    .arg(self.events_max_len)
                    .arg(self.retention.as_secs().max(1))
                    .arg(self.outbox_hold.as_millis() as u64)
                    .arg(call.run_id)
                    .arg(args);
            }
            if let Some(r) = self.durability {
                pipe.cmd("WAIT").arg(r.replicas).arg(r.timeout_ms());
            }
            let mut conn = self.commit_conn();
            match crate::metrics::script(label, pipe.query_async::<Vec<redis::Value>>(&mut conn)).await {
                Ok(mut v) => {
                    // With durability, the last answer is WAIT's: the replicas that have the commit.
                    let acked = match self.durability {
                        Some(r) => {
                            let n = v.pop().map(redis::from_redis_value::<u32>).transpose();
                            Some((r, n.map_err(unexpected)?.unwrap_or(0)))
                        }
                        None => None,
                    };
                    // The scripts' replies are the last ones, after the prelude's.
                    let first = v.len().saturating_sub(evals.len());
                    let mut replies = Vec::with_capacity(evals.len());
                    for (e, reply) in evals.iter().zip(v.into_iter().skip(first)) {
                        replies.push(run_reply(e.script.name, reply)?);
                    }
                    if replies.len() != evals.len() {
                        return Err(CoordinatorError::Internal(format!(
                            "{label}: {} answers from Redis for {} scripts",
                            replies.len(),
                            evals.len()
                        )));
                    }
                    if let Some((r, n)) = acked {
                        // The commit stands on the primary; apply what it asked for before
                        // answering that it is not replicated.
                        if let Err(e) = r.check(label, n) {
                            for (_, written) in &replies {
                                self.apply_effects(written, call.now).await;
                            }
                            return Err(e);
                        }
                    }
                    return Ok(replies);
                }
                Err(e) if lost_scripts(&e) && tried == 0 => self.load_scripts().await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoordinatorError::Internal("Redis keeps losing Baton's scripts".into()))
    }

    /// Applies the effects a run script just committed (`members`, as the effects outbox holds
    /// them) and removes them from the outbox, in one round trip. Failures are logged, not
    /// returned: the commit stands, and the effects sweeper applies what is left after the outbox
    /// hold. Returns the effects read.
    ///
    /// Slot leases alone (StartStep of a step with a concurrency limit) are applied in the
    /// background, so the worker's answer does not wait for them: a lease applied after the slot
    /// was given back changes nothing (`ZADD XX`), so their order does not matter.
    async fn apply_effects(&self, members: &[String], now: i64) -> Vec<Effect> {
        if members.is_empty() {
            return Vec::new();
        }
        let mut effects = Vec::with_capacity(members.len());
        let mut applied = Vec::with_capacity(members.len());
        for m in members {
            match Effect::parse(m) {
                Ok(e) => {
                    effects.push(e);
                    applied.push(m);
                }
                // Left in the outbox: the sweeper parks it with this reason.
                Err(e) => tracing::warn!(error = %e, "a script wrote an effect this coordinator cannot read"),
            }
        }
        if effects.iter().all(|e| matches!(e, Effect::LeaseSlot { .. })) {
            let (store, leases) = (self.clone(), effects.clone());
            let applied: Vec<String> = applied.into_iter().cloned().collect();
            tokio::spawn(async move {
                let applied: Vec<&String> = applied.iter().collect();
                if let Err(e) = store.apply_effect_list(&leases, &applied, now).await {
                    tracing::warn!(error = %e, "could not extend a slot lease at once; the effects sweeper will");
                }
            });
            return effects;
        }
        if let Err(e) = self.apply_effect_list(&effects, &applied, now).await {
            tracing::warn!(error = %e, count = effects.len(), "could not apply effects at once; the effects sweeper will");
        }
        effects
    }

    /// Applies `effects` (each idempotent, in order) and then removes `members` (their entries) from
    /// the effects outbox: one pipeline, reloading the scripts once if Redis lost them.
    async fn apply_effect_list(&self, effects: &[Effect], members: &[&String], now: i64) -> Result<()> {
        let k = &self.keys;
        for tried in 0..2 {
            let mut pipe = redis::pipe();
            for e in effects {
                match e {
                    Effect::ReleaseSlot { pool, member } => {
                        pipe.zrem(k.slot_holders(pool), member)
                            .ignore()
                            .lrem(k.slot_waiters(pool), 0, member)
                            .ignore()
                            .zadd(k.timers(), timer_member(TimerKind::SlotWake, pool, "", 0), now)
                            .ignore();
                    }
                    Effect::LeaseSlot { pool, member, until } => {
                        pipe.cmd("ZADD")
                            .arg(k.slot_holders(pool))
                            .arg("XX")
                            .arg(*until)
                            .arg(member)
                            .ignore();
                    }
                    Effect::ReleaseRunSlot { pool, run } => {
                        pipe.zrem(k.slot_holders(pool), run)
                            .ignore()
                            .lrem(k.slot_waiters(pool), 0, run)
                            .ignore()
                            .zadd(k.timers(), timer_member(TimerKind::RunWake, pool, "", 0), now)
                            .ignore();
                    }
                    Effect::EmitDone {
                        parent_run,
                        parent_step,
                        run,
                        succeeded,
                    } => {
                        let field = if *succeeded { "emit_succeeded" } else { "emit_failed" };
                        pipe.cmd("EVALSHA")
                            .arg(self.scripts.emit_done.get_hash())
                            .arg(3)
                            .arg(k.steps(parent_run))
                            .arg(k.emit_done(parent_run, parent_step))
                            .arg(k.timers())
                            .arg(run)
                            .arg(parent_step)
                            .arg(field)
                            .arg(now)
                            .arg(timer_member(TimerKind::Emit, parent_run, parent_step, 0))
                            .ignore();
                    }
                }
            }
            if !members.is_empty() {
                pipe.zrem(k.effects(), members).ignore();
            }
            let mut conn = self.conn.clone();
            let timed = tokio::time::Instant::now();
            match pipe.query_async::<()>(&mut conn).await {
                Ok(()) => {
                    crate::metrics::redis_script("effects", timed.elapsed());
                    return Ok(());
                }
                Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) && tried == 0 => {
                    self.load_scripts().await?
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoordinatorError::Internal("Redis keeps losing Baton's scripts".into()))
    }

    /// Applies one effect the effects sweeper claimed (its committing coordinator did not: it
    /// died, or Redis failed it) and removes it.
    ///
    /// # Errors
    /// `Internal` for an entry that is no effect (the supervisor parks it with that reason);
    /// [`CoordinatorError::Redis`]: it stays claimed and comes due again after its lease.
    pub async fn apply_claimed_effect(&self, claimed: &Claimed, now: i64) -> Result<()> {
        let effect = Effect::parse(&claimed.member)?;
        self.apply_effect_list(std::slice::from_ref(&effect), &[&claimed.member], now)
            .await
    }

    /// Creates a run of `def` with its root steps dispatched (or, without a free run slot, queued for
    /// one), after writing its index entries; its graph ([`RunGraph`]) is stored with it. The roots
    /// in `queued` that were dispatched join their handler's queued index, with their
    /// schedule-to-start timers, in the same commit (`QueuedPlan::default()` for none). The script
    /// indexes the run it creates, and creates none of a version that is deleted or being deleted
    /// (see `store/workflows.rs`).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `NotFound` naming `version` when the version is deleted or
    /// being deleted; `Internal` for a reply the script does not give.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_run(
        &self,
        call: &RunCall<'_>,
        def: &WorkflowDefinition,
        input_json: &str,
        idempotency_key: &str,
        run_slot: Option<&RunSlot>,
        timers: &[(String, i64)],
        parent: Option<&ParentRef<'_>>,
        queued: &QueuedPlan,
    ) -> Result<CreateOutcome> {
        let mut pre = redis::pipe();
        for (member, due) in timers {
            pre.zadd(self.keys.timers(), member, *due).ignore();
        }
        // The script indexes the run when it creates it (not when it exists already), and refuses a
        // version that is deleted or being deleted.
        let member = run_index_member(call.now, call.run_id);
        let graph = RunGraph::of(def);
        let (keys, json) = self.create_run_call(def, &graph, idempotency_key, run_slot, parent, queued, &member)?;
        let out = self
            .eval_run_with(
                pre,
                &self.scripts.create_run,
                call,
                &keys,
                &[json, input_json.to_string()],
            )
            .await?;
        create_outcome(&out, &def.name, def.version)
    }

    /// The keys after the run's own and the JSON arguments of one `create_run.lua` call.
    #[allow(clippy::too_many_arguments)]
    fn create_run_call(
        &self,
        def: &WorkflowDefinition,
        graph: &RunGraph,
        idempotency_key: &str,
        run_slot: Option<&RunSlot>,
        parent: Option<&ParentRef<'_>>,
        queued: &QueuedPlan,
        member: &str,
    ) -> Result<(Vec<String>, String)> {
        let mut keys = Vec::with_capacity(6 + queued.keys.len());
        if let Some(slot) = run_slot {
            keys.push(self.keys.slot_holders(&slot.pool));
            keys.push(self.keys.slot_waiters(&slot.pool));
        }
        let first_queued = RUN_KEYS + 1 + keys.len();
        keys.extend(queued.keys.iter().cloned());
        let (fence_keys, fence) = self.create_fence(&def.name, def.version, member, RUN_KEYS + 1 + keys.len());
        keys.extend(fence_keys);
        let roots: Vec<&str> = def.roots().map(|s| s.id.as_str()).collect();
        let json = to_json(
            "create_run",
            &CreateRunJson {
                workflow: &def.name,
                version: def.version,
                idempotency_key,
                step_ids: &crate::machine::step_ids_csv(def),
                roots: &roots.join(","),
                parent: parent.map(|p| ParentJson {
                    run: p.run,
                    step: p.step,
                    attempt: p.attempt,
                    kind: p.kind,
                }),
                depth: parent.map_or(0, |p| p.depth),
                run_slot: run_slot.map(|s| RunSlotJson {
                    pool: &s.pool,
                    limit: s.limit,
                    detail: s.detail(),
                }),
                graph,
                queued: queued.entries(first_queued),
                fence,
            },
        )?;
        Ok((keys, json))
    }

    /// Marks an attempt as started by `a.worker` and arms its timeout (and heartbeat) timers, in
    /// one script: a refused start changes nothing. A running attempt of another worker answers
    /// [`Started::Held`] with that worker; called again with it as `a.holder`, the script checks
    /// the holder's liveness key (`Keys::worker_alive`): alive, the answer is
    /// [`Disposition::Duplicate`] (and a `held` timer checks again later); gone, `a.worker` takes
    /// the attempt over.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Internal` for a reply the script does not give.
    pub async fn start_step(&self, call: &RunCall<'_>, a: &StartArgs<'_>) -> Result<Started> {
        let (keys, json) = self.start_call(a)?;
        let out = self
            .eval_run_with(redis::pipe(), &self.scripts.start_step, call, &keys, &[json])
            .await?;
        parse_started(out)
    }

    /// `start_step.lua`'s extra keys and arguments for `a`.
    fn start_call(&self, a: &StartArgs<'_>) -> Result<(Vec<String>, String)> {
        let mut keys = vec![self.keys.queued(a.handler)];
        keys.extend(a.holder.map(|h| self.keys.worker_alive(h)));
        let json = serde_json::to_string(&StartStepJson {
            step: a.step,
            attempt: a.attempt,
            worker: a.worker,
            pinned: a.pinned,
            slot_lease_ms: a.slot_lease_ms,
            timeout_due: a.timeout_due,
            heartbeat_due: a.heartbeat_due.unwrap_or(0),
            holder: a.holder.unwrap_or_default(),
            recheck_ms: crate::machine::span_ms(a.recheck_margin),
            input: a.input,
        })
        .map_err(|e| CoordinatorError::Internal(format!("start_step.lua: arguments: {e}")))?;
        Ok((keys, json))
    }

    /// An eager report ([`Store::start_step`] and then [`Store::complete_step_released`] for a
    /// worker's result, `complete.by` a [`Reporter::Worker`]): both scripts in one pipeline, one
    /// round trip. The completion is fenced on the start (it counts only for a running attempt
    /// this worker holds), so it changes nothing unless the start answered
    /// [`Disposition::Proceed`]; it is then the second value. A start that answered anything else
    /// comes with `None`: the caller goes the long way ([`Started::Held`]) or answers the worker.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Internal` for a reply a script does not give.
    pub async fn start_and_complete(
        &self,
        call: &RunCall<'_>,
        start: &StartArgs<'_>,
        complete: &CompleteArgs<'_>,
        plan: &QueuedPlan,
    ) -> Result<(Started, Option<(Completion, Vec<String>)>)> {
        let (start_keys, start_json) = self.start_call(start)?;
        let complete_args = self.complete_call(complete, plan, None)?;
        let start_args = [start_json];
        let evals = [
            RunEval {
                script: &self.scripts.start_step,
                extra_keys: &start_keys,
                args: &start_args,
            },
            RunEval {
                script: &self.scripts.complete_step,
                extra_keys: &plan.keys,
                args: &complete_args,
            },
        ];
        let mut replies = self
            .eval_runs(redis::pipe(), "start_and_complete", call, &evals)
            .await?
            .into_iter();
        let (Some((started, start_written)), Some((completed, complete_written))) = (replies.next(), replies.next())
        else {
            return Err(CoordinatorError::Internal(
                "start_and_complete: a script's answer is missing".into(),
            ));
        };
        let mut written = start_written;
        written.extend(complete_written);
        let effects = self.apply_effects(&written, call.now).await;
        let started = parse_started(started)?;
        if started != Started::Answer(Disposition::Proceed) {
            return Ok((started, None));
        }
        if no_graph(&completed) {
            // A run of layout 2, which changed nothing: the long way stores its graph.
            return Ok((
                started,
                Some(self.complete_step_released(Batch::new(), call, complete, plan).await?),
            ));
        }
        Ok((started, Some(self.completed(call, complete, completed, &effects)?)))
    }

    /// Sends attempt `attempt` of `step` (of a run of `def`) again if `holder`, which started it,
    /// is gone (see `take_over.lua`).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Internal` for a malformed reply.
    pub async fn take_over(
        &self,
        call: &RunCall<'_>,
        def: &WorkflowDefinition,
        step: &str,
        attempt: u32,
        holder: &str,
    ) -> Result<TakeOver> {
        let keys = [self.keys.worker_alive(holder)];
        let out = self
            .eval_run_graph(redis::pipe(), &self.scripts.take_over, call, def, &keys, |graph| {
                Ok(vec![to_json(
                    "take_over",
                    &TakeOverJson {
                        step,
                        attempt,
                        holder,
                        graph,
                    },
                )?])
            })
            .await?;
        let mut it = out.into_iter();
        Ok(match it.next().as_deref() {
            Some("alive") => {
                let ms: i64 = it.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
                    CoordinatorError::Internal("take_over.lua answered 'alive' without a time to live".into())
                })?;
                // -1: the liveness key has no expiry.
                TakeOver::Alive(u64::try_from(ms).ok())
            }
            Some("dispatch") => {
                let input = it.next().unwrap_or_default();
                TakeOver::Dispatch(read_payload(&mut it, &input)?)
            }
            Some("stale") => TakeOver::Stale,
            other => return Err(CoordinatorError::Internal(format!("take_over.lua answered {other:?}"))),
        })
    }

    /// Records a heartbeat of an attempt from `worker`, which must hold it.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn heartbeat(&self, call: &RunCall<'_>, step: &str, attempt: u32, worker: &str) -> Result<Disposition> {
        let args = [to_json("heartbeat", &AttemptJson { step, attempt, worker })?];
        let out = self
            .eval_run(redis::pipe(), &self.scripts.heartbeat, call, &args)
            .await?;
        disposition("heartbeat.lua", &out)
    }

    /// Applies the outcome of an attempt (see `complete_step.lua`), after the pipelined global
    /// writes in `pre` (one round trip; two when it gives back a slot or finishes an emitted run:
    /// the effects are applied at once). A worker's report ([`Reporter::Worker`]) also disarms the
    /// attempt's timeout and heartbeat timers, and a retry (`retry_at > 0`) arms its `retry`
    /// timer, in the script. Children it dispatches are not indexed as queued: see
    /// [`Store::complete_step_queued`].
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Internal` for a reply the script does not give.
    pub async fn complete_step(&self, pre: Batch, call: &RunCall<'_>, args: &CompleteArgs<'_>) -> Result<Completion> {
        self.complete_step_queued(pre, call, args, &QueuedPlan::default()).await
    }

    /// As [`Store::complete_step`], and the children it dispatches that are in `plan` join their
    /// handler's queued index, with their schedule-to-start timers, in the same commit
    /// ([`DispatchPayload::queued`] says which did).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Internal` for a reply the script does not give.
    pub async fn complete_step_queued(
        &self,
        pre: Batch,
        call: &RunCall<'_>,
        args: &CompleteArgs<'_>,
        plan: &QueuedPlan,
    ) -> Result<Completion> {
        Ok(self.complete_step_released(pre, call, args, plan).await?.0)
    }

    /// As [`Store::complete_step_queued`], and the concurrency pools whose slots the commit gave
    /// back (already applied), for the caller to hand to their next waiters at once.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Internal` for a reply the script does not give.
    pub async fn complete_step_released(
        &self,
        pre: Batch,
        call: &RunCall<'_>,
        args: &CompleteArgs<'_>,
        plan: &QueuedPlan,
    ) -> Result<(Completion, Vec<String>)> {
        let mut graph = None;
        let mut pre = Some(Pipeline::from(pre));
        loop {
            let a = self.complete_call(args, plan, graph.as_ref())?;
            // The global writes go with the first call only (a second one follows a 'no_graph',
            // which changed nothing).
            let (out, effects) = self
                .eval_run_effects(
                    pre.take().unwrap_or_else(redis::pipe),
                    &self.scripts.complete_step,
                    call,
                    &plan.keys,
                    &a,
                )
                .await?;
            if graph.is_none() && no_graph(&out) {
                graph = Some(RunGraph::of(args.def));
                continue;
            }
            return self.completed(call, args, out, &effects);
        }
    }

    /// `complete_step.lua`'s arguments (A and the body) for `args`, with `graph` to store first.
    fn complete_call(
        &self,
        args: &CompleteArgs<'_>,
        plan: &QueuedPlan,
        graph: Option<&RunGraph>,
    ) -> Result<[String; 2]> {
        let (who, by) = match args.by {
            Reporter::Worker(w) => (w, ReporterPath::Worker),
            Reporter::Human(user) => (user, ReporterPath::Human),
            Reporter::Coordinator(source) => (source, ReporterPath::Coordinator),
        };
        let pinned = crate::machine::pinned(args.def);
        let json = to_json(
            "complete_step",
            &CompleteStepJson {
                step: args.step,
                attempt: args.attempt,
                who,
                by,
                outcome: args.outcome,
                retry_at: args.retry_at,
                heartbeat_timeout_ms: args.heartbeat_timeout_ms,
                pinned: &pinned,
                queued: plan.entries(RUN_KEYS + 1),
                graph,
                error_type: args.error_type,
                error_details: args.error_details,
            },
        )?;
        Ok([json, args.body.to_string()])
    }

    /// Reads `complete_step.lua`'s answer `out`: the completion, and the pools whose slots its
    /// `effects` gave back.
    fn completed(
        &self,
        call: &RunCall<'_>,
        args: &CompleteArgs<'_>,
        out: Vec<String>,
        effects: &[Effect],
    ) -> Result<(Completion, Vec<String>)> {
        let completion = parse_completion("complete_step.lua", out)?;
        if let Some(status) = crate::metrics::finished_status(&completion) {
            crate::metrics::observe_finish(self, &args.def.name, status, call.run_id, call.now);
        }
        let released = effects
            .iter()
            .filter_map(|e| e.released_pool().map(str::to_string))
            .collect();
        Ok((completion, released))
    }

    /// Stores one batch of a fan-out step's element inputs, elements `first..` (see
    /// `stage_items.lua`). Answers the indexes of the batch's elements that keep their result from
    /// before (after a RetryRun), or `None` when the dispatch is stale.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; [`CoordinatorError::Internal`] for an answer it cannot read.
    pub async fn stage_items(
        &self,
        call: &RunCall<'_>,
        step: &str,
        attempt: u32,
        first: usize,
        inputs: &[String],
    ) -> Result<Option<Vec<usize>>> {
        let mut a = Vec::with_capacity(inputs.len().saturating_add(1));
        a.push(to_json("stage_items", &StageItemsJson { step, attempt, first })?);
        a.extend(inputs.iter().cloned());
        let out = self
            .eval_run(redis::pipe(), &self.scripts.stage_items, call, &a)
            .await?;
        match out.as_slice() {
            [tag] if tag == "stale" => Ok(None),
            [tag, kept] if tag == "ok" => kept
                .split(',')
                .filter(|k| !k.is_empty())
                .map(|k| {
                    k.parse()
                        .map_err(|_| CoordinatorError::Internal(format!("stage_items: bad index {k:?}")))
                })
                .collect::<Result<Vec<usize>>>()
                .map(Some),
            _ => Err(CoordinatorError::Internal(format!(
                "stage_items: unexpected answer {out:?}"
            ))),
        }
    }

    /// Starts a fan-out step of `def` over its `total` elements, whose inputs
    /// [`Store::stage_items`] stored (see `start_items.lua`): dispatches the first of them (at most
    /// [`ITEM_BATCH`] and `max_parallel`), leaving out the `kept` ones (`kept` lists their
    /// indexes, ascending). Answers like [`Store::complete_step`]: `Succeeded` with the elements
    /// dispatched (or, for no elements, the step's children, from the run's stored graph), or
    /// `Stale`.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Internal` for a reply the script does not give.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_items(
        &self,
        call: &RunCall<'_>,
        def: &WorkflowDefinition,
        step: &str,
        attempt: u32,
        max_parallel: u32,
        total: usize,
        kept: &[usize],
    ) -> Result<Completion> {
        let order = running_order(total, kept);
        let mut graph = None;
        loop {
            let a = [to_json(
                "start_items",
                &StartItemsJson {
                    step,
                    attempt,
                    max_parallel,
                    total,
                    kept: kept.len(),
                    order: &order,
                    graph: graph.as_ref(),
                },
            )?];
            let out = self
                .eval_run(redis::pipe(), &self.scripts.start_items, call, &a)
                .await?;
            if graph.is_none() && no_graph(&out) {
                graph = Some(RunGraph::of(def));
                continue;
            }
            return parse_completion("start_items.lua", out);
        }
    }

    /// The fan-out outputs of elements `from..to` of `step`, JSON text each (`null` for none).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn item_outputs(&self, run_id: &str, step: &str, from: usize, to: usize) -> Result<Vec<String>> {
        if from >= to {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.keys.steps(run_id));
        for i in from..to {
            cmd.arg(format!("{step}#{i}:output"));
        }
        let values: Vec<Option<String>> = cmd.query_async(&mut conn).await?;
        Ok(values
            .into_iter()
            .map(|v| v.filter(|v| !v.is_empty()).unwrap_or_else(|| "null".into()))
            .collect())
    }

    /// A step starts waiting (see `wait.lua`), after the global writes in `pre`.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn wait(&self, pre: Batch, call: &RunCall<'_>, w: &WaitArgs<'_>) -> Result<WaitOutcome> {
        let (keys, identity) = match w.event {
            Some((name, key)) => (
                vec![self.keys.event_waiters(name, key), self.keys.event_buffer(name, key)],
                baton_shared::keys::event_identity(name, key),
            ),
            None => (Vec::new(), w.child_run.to_string()),
        };
        let a = [to_json(
            "wait",
            &WaitJson {
                step: w.step,
                attempt: w.attempt,
                mode: w.mode,
                detail: w.detail,
                identity: &identity,
                due: w.timeout_at,
                worker: w.worker,
            },
        )?];
        let out = self.eval_run_with(pre, &self.scripts.wait, call, &keys, &a).await?;
        match out.first().map(String::as_str) {
            Some("waiting") => Ok(WaitOutcome::Waiting),
            Some("delivered") => Ok(WaitOutcome::Delivered),
            Some("stale") => Ok(WaitOutcome::Stale),
            other => Err(CoordinatorError::Internal(format!("wait.lua answered {other:?}"))),
        }
    }

    /// Dispatches a suspended step of a run of `def` again with the event delivered to it (see
    /// `resume.lua`).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Internal` for a reply the script does not give.
    pub async fn resume(
        &self,
        call: &RunCall<'_>,
        def: &WorkflowDefinition,
        step: &str,
        attempt: u32,
    ) -> Result<Option<DispatchPayload>> {
        let out = self
            .eval_run_graph(redis::pipe(), &self.scripts.resume, call, def, &[], |graph| {
                Ok(vec![to_json("resume", &StepJson { step, attempt, graph })?])
            })
            .await?;
        dispatch_reply("resume.lua", out)
    }

    /// The buffered (name, key) pairs, oldest first, only those of `name` unless it is empty, at
    /// most `limit`. Index entries whose buffer expired are dropped on the way.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn buffered_events(&self, name: &str, limit: usize) -> Result<Vec<BufferedPair>> {
        /// Index entries read per round trip.
        const PAGE: isize = 500;
        let mut conn = self.conn.clone();
        let index = self.keys.event_buffers();
        let mut out = Vec::new();
        let mut gone = Vec::new();
        let mut start: isize = 0;
        while out.len() < limit {
            let members: Vec<(String, f64)> = conn
                .zrange_withscores(&index, start, start.saturating_add(PAGE - 1))
                .await?;
            if members.is_empty() {
                break;
            }
            start = start.saturating_add(PAGE);
            let pairs: Vec<(String, (String, String), i64)> = members
                .into_iter()
                .filter_map(|(m, at)| baton_shared::keys::parse_buffered_member(&m).map(|p| (m, p, at as i64)))
                .filter(|(_, (n, _), _)| name.is_empty() || n == name)
                .collect();
            let mut pipe = redis::pipe();
            for (_, (n, k), _) in &pairs {
                let buffer = self.keys.event_buffer(n, k);
                pipe.llen(&buffer).lindex(&buffer, 0).lindex(&buffer, -1);
            }
            let answers: Vec<(u64, Option<String>, Option<String>)> = if pairs.is_empty() {
                Vec::new()
            } else {
                let flat: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
                flat.chunks(3)
                    .map(|c| {
                        (
                            redis::from_redis_value(c[0].clone()).unwrap_or(0),
                            redis::from_redis_value(c[1].clone()).unwrap_or(None),
                            redis::from_redis_value(c[2].clone()).unwrap_or(None),
                        )
                    })
                    .collect()
            };
            for ((member, (n, k), at), (count, oldest, newest)) in pairs.into_iter().zip(answers) {
                if count == 0 {
                    gone.push(member);
                } else if out.len() < limit {
                    out.push(BufferedPair {
                        name: n,
                        key: k,
                        count,
                        oldest: oldest.unwrap_or_default(),
                        newest: newest.unwrap_or_default(),
                        last_at: at,
                    });
                }
            }
        }
        if !gone.is_empty() {
            let _: i64 = conn.zrem(&index, &gone).await?;
        }
        Ok(out)
    }

    /// Drops the buffered events of `name` and `key` (every key of `name` when `key` is `None`).
    /// Returns how many events were dropped.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn purge_buffered_events(&self, name: &str, key: Option<&str>) -> Result<u64> {
        let mut conn = self.conn.clone();
        let index = self.keys.event_buffers();
        let pairs: Vec<(String, String)> = match key {
            Some(k) => vec![(name.to_string(), k.to_string())],
            None => {
                let members: Vec<String> = conn.zrange(&index, 0, -1).await?;
                members
                    .iter()
                    .filter_map(|m| baton_shared::keys::parse_buffered_member(m))
                    .filter(|(n, _)| n == name)
                    .collect()
            }
        };
        let mut purged = 0u64;
        for (n, k) in pairs {
            let buffer = self.keys.event_buffer(&n, &k);
            let (count, _, _): (u64, i64, i64) = redis::pipe()
                .llen(&buffer)
                .del(&buffer)
                .zrem(&index, baton_shared::keys::buffered_member(&n, &k))
                .query_async(&mut conn)
                .await?;
            purged = purged.saturating_add(count);
        }
        Ok(purged)
    }

    /// Creates many runs of `def` in one round trip (an emitting step's children): each is created
    /// whole with its roots dispatched, or found existing. Returns, per run, `None` when created or
    /// `Some(status)` when it existed. Index entries are written for the created ones.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `NotFound` when the version is deleted or being deleted;
    /// `Internal` for a reply the script does not give.
    pub async fn create_runs(
        &self,
        runs: &[NewRun],
        def: &WorkflowDefinition,
        parent: &ParentRef<'_>,
        now: i64,
    ) -> Result<Vec<CreateOutcome>> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let k = &self.keys;
        let graph = RunGraph::of(def);
        let run_limit = def.max_concurrent_runs.unwrap_or(0);
        let mut calls = Vec::with_capacity(runs.len());
        for r in runs {
            let slot = r.run_slot.as_ref().map(|pool| RunSlot {
                pool: pool.clone(),
                limit: run_limit,
            });
            let member = run_index_member(now, &r.run_id);
            calls.push(self.create_run_call(
                def,
                &graph,
                "",
                slot.as_ref(),
                Some(parent),
                &QueuedPlan::default(),
                &member,
            )?);
        }
        let build = || {
            let mut pipe = redis::pipe();
            for (r, (keys, json)) in runs.iter().zip(&calls) {
                if let Some(t) = def.timeout {
                    pipe.zadd(
                        k.timers(),
                        timer_member(TimerKind::RunTimeout, &r.run_id, "", 0),
                        crate::machine::due(now, t),
                    )
                    .ignore();
                }
                self.run_call(&mut pipe, &self.scripts.create_run)
                    .arg(RUN_KEYS + keys.len())
                    .arg(k.run(&r.run_id))
                    .arg(k.steps(&r.run_id))
                    .arg(k.events(&r.run_id))
                    .arg(k.timers())
                    .arg(k.outbox())
                    .arg(k.effects())
                    .arg(keys)
                    .arg(now)
                    .arg(self.events_max_len)
                    .arg(self.retention.as_secs().max(1))
                    .arg(self.outbox_hold.as_millis() as u64)
                    .arg(&r.run_id)
                    .arg(json)
                    .arg(&r.input_json);
            }
            pipe
        };
        let mut conn = self.conn.clone();
        let answers: Vec<(Vec<String>, Vec<String>)> = match build().query_async(&mut conn).await {
            Ok(v) => v,
            Err(e) if lost_scripts(&e) => {
                self.load_scripts().await?;
                build().query_async(&mut conn).await?
            }
            Err(e) => return Err(e.into()),
        };
        // Each created run was indexed by its script.
        answers
            .iter()
            .map(|(a, _)| create_outcome(a, &def.name, def.version))
            .collect()
    }

    /// The run input and, for each of `steps`, its status and output; for the last one, its field
    /// `last_output_field` instead of `output` (an emitting step's output before it completes).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn step_bindings(
        &self,
        run_id: &str,
        steps: &[String],
        last_output_field: &str,
    ) -> Result<(String, Vec<String>, Vec<String>)> {
        let mut pipe = redis::pipe();
        pipe.hget(self.keys.run(run_id), "input");
        let mut fields = redis::cmd("HMGET");
        fields.arg(self.keys.steps(run_id));
        for (i, s) in steps.iter().enumerate() {
            let out = if i + 1 == steps.len() {
                last_output_field
            } else {
                "output"
            };
            fields.arg(format!("{s}:status")).arg(format!("{s}:{out}"));
        }
        pipe.add_command(fields);
        let mut conn = self.conn.clone();
        let (input, values): (Option<String>, Vec<Option<String>>) = pipe.query_async(&mut conn).await?;
        let mut statuses = Vec::with_capacity(steps.len());
        let mut outputs = Vec::with_capacity(steps.len());
        for pair in values.chunks(2) {
            statuses.push(pair[0].clone().unwrap_or_default());
            outputs.push(pair.get(1).cloned().flatten().unwrap_or_else(|| "null".into()));
        }
        Ok((input.unwrap_or_else(|| "null".into()), statuses, outputs))
    }

    /// Stores an emitting step's plan (child id and input per element) and resets its counts, so
    /// that [`Store::emit_plan_range`] hands it out in order.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn store_emit_plan(&self, run_id: &str, step: &str, plan: &[(String, String)]) -> Result<()> {
        let list = self.keys.emit_plan(run_id, step);
        let done = self.keys.emit_done(run_id, step);
        let keep = self.retention.max(Duration::from_secs(30 * 24 * 3600)).as_secs();
        let mut pipe = redis::pipe();
        pipe.del(&list).ignore().del(&done).ignore();
        for chunk in plan.chunks(1000) {
            let entries: Vec<String> = chunk.iter().map(|(id, input)| format!("{id}\t{input}")).collect();
            pipe.rpush(&list, entries).ignore();
        }
        pipe.expire(&list, keep as i64).ignore();
        pipe.hset_multiple(
            self.keys.steps(run_id),
            &[
                (format!("{step}:emit_total"), plan.len().to_string()),
                (format!("{step}:emit_next"), "0".into()),
                (format!("{step}:emit_succeeded"), "0".into()),
                (format!("{step}:emit_failed"), "0".into()),
                (format!("{step}:emit_planned"), "1".into()),
                (format!("{step}:waiting_for"), format!("{} emitted runs", plan.len())),
            ],
        )
        .ignore();
        let mut conn = self.conn.clone();
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// `count` entries of an emitting step's plan from position `from`: (child id, input JSON).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn emit_plan_range(
        &self,
        run_id: &str,
        step: &str,
        from: u64,
        count: u64,
    ) -> Result<Vec<(String, String)>> {
        let mut conn = self.conn.clone();
        let entries: Vec<String> = conn
            .lrange(
                self.keys.emit_plan(run_id, step),
                from as isize,
                (from + count) as isize - 1,
            )
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                e.split_once('\t')
                    .map(|(id, input)| (id.to_string(), input.to_string()))
            })
            .collect())
    }

    /// Counts children of an emitting step that had already finished when it emitted them again
    /// (each once, as the children's own ends are counted). Returns how many were new.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn count_emitted_done(&self, run_id: &str, step: &str, done: &[(String, bool)]) -> Result<u64> {
        let mut conn = self.conn.clone();
        let mut new = 0;
        for (child, ok) in done {
            let added: i64 = conn.sadd(self.keys.emit_done(run_id, step), child).await?;
            if added == 1 {
                let field = if *ok { "emit_succeeded" } else { "emit_failed" };
                let _: i64 = conn
                    .hincr(self.keys.steps(run_id), format!("{step}:{field}"), 1)
                    .await?;
                new += 1;
            }
        }
        Ok(new)
    }

    /// Records how far an emitting step got through its plan.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn set_emit_next(&self, run_id: &str, step: &str, next: u64) -> Result<()> {
        let mut conn = self.conn.clone();
        let keep = self.retention.max(Duration::from_secs(30 * 24 * 3600)).as_secs();
        let _: () = redis::pipe()
            .hset(self.keys.steps(run_id), format!("{step}:emit_next"), next)
            .ignore()
            .expire(self.keys.emit_done(run_id, step), keep as i64)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The attempts holding slots of `pool` now (`run|step|attempt`), oldest lease first.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn slot_holders(&self, pool: &str, now: i64) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        Ok(conn.zrangebyscore(self.keys.slot_holders(pool), now, "+inf").await?)
    }

    /// Parks a dispatched step until `timer` fires at `due` (see `park.lua`). Returns false when stale.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Internal` for a reply the script does not give.
    pub async fn park(
        &self,
        call: &RunCall<'_>,
        step: &str,
        attempt: u32,
        detail: &str,
        timer: &str,
        due: i64,
    ) -> Result<bool> {
        let args = [to_json(
            "park",
            &ParkJson {
                step,
                attempt,
                detail,
                timer,
                due,
            },
        )?];
        let out = self.eval_run(redis::pipe(), &self.scripts.park, call, &args).await?;
        match out.first().map(String::as_str) {
            Some("parked") => Ok(true),
            Some("stale") => Ok(false),
            other => Err(CoordinatorError::Internal(format!("park.lua answered {other:?}"))),
        }
    }

    /// Fields of one step (`None` for those not set).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn step_fields(&self, run_id: &str, step: &str, fields: &[&str]) -> Result<Vec<Option<String>>> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.keys.steps(run_id));
        for f in fields {
            cmd.arg(format!("{step}:{f}"));
        }
        let mut conn = self.conn.clone();
        Ok(cmd.query_async(&mut conn).await?)
    }

    /// Reads the stored time `at` (Unix ms) off the caller's path and calls `then` with it, for a
    /// metric's latency. Reads queued while one is under way go together in the next round trip
    /// (at most [`TIME_READ_BATCH`]), so metrics cost a fraction of a round trip per step however
    /// busy the coordinator is, and a slow Redis holds at most [`TIME_READ_QUEUE`] of them. Best
    /// effort: a time not set (or not a number) or a failed read drops the sample (a debug log), and
    /// so does a full queue (counted in `baton_latency_samples_dropped_total`).
    pub fn read_time_later(&self, at: StoredTime<'_>, then: impl FnOnce(i64) + Send + 'static) {
        let (key, field) = match at {
            StoredTime::Step { run_id, step, field } => (self.keys.steps(run_id), format!("{step}:{field}")),
            StoredTime::Run { run_id, field } => (self.keys.run(run_id), field.to_string()),
        };
        let read = TimeRead {
            key,
            field,
            then: Box::new(then),
        };
        let queue = self.time_reads.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(TIME_READ_QUEUE);
            tokio::spawn(read_times(self.conn.clone(), rx));
            tx
        });
        if let Err(e) = queue.try_send(read) {
            crate::metrics::latency_sample_dropped();
            tracing::debug!(error = %e, "a latency sample's time read was dropped");
        }
    }

    /// Fields of one run (`None` for those not set).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn run_fields(&self, run_id: &str, fields: &[&str]) -> Result<Vec<Option<String>>> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("HMGET")
            .arg(self.keys.run(run_id))
            .arg(fields)
            .query_async(&mut conn)
            .await?)
    }

    /// Keeps the trace context of run `run_id` (field `traceparent` of its hash), when the run exists.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn set_run_traceparent(&self, run_id: &str, traceparent: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::Script::new(
            "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HSET', KEYS[1], 'traceparent', ARGV[1]) end return 0",
        )
        .key(self.keys.run(run_id))
        .arg(traceparent)
        .invoke_async(&mut conn)
        .await?;
        Ok(())
    }

    /// The trace context of run `run_id` ([`Store::set_run_traceparent`]), if it has one.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn run_traceparent(&self, run_id: &str) -> Result<Option<String>> {
        Ok(self.run_fields(run_id, &["traceparent"]).await?.pop().flatten())
    }

    /// Entries of the human-task index, newest first: `(run, step)`.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn human_tasks(&self, limit: usize) -> Result<Vec<(String, String)>> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = conn.zrevrange(self.keys.human_tasks(), 0, limit as isize - 1).await?;
        Ok(members
            .into_iter()
            .filter_map(|m| m.split_once('|').map(|(r, s)| (r.to_string(), s.to_string())))
            .collect())
    }

    /// Drops human-task index entries of runs that no longer exist.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn drop_human_tasks(&self, members: &[String]) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let _: i64 = conn.zrem(self.keys.human_tasks(), members).await?;
        Ok(())
    }
}

impl Store {
    /// The payload of an attempt of `step` (of a run of `def`) to (re)publish, by `mode`: `Retry`
    /// moves the step, retrying as `attempt`, to dispatched, and `Unpark` a parked one; `Check`
    /// answers only while the step is still dispatched (never started), with its current attempt.
    /// `None` when stale. A dispatch it commits writes its outbox entry in the same script, so a
    /// crash after the commit still gets the attempt published by the sweeper.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Internal` for a reply the script does not give.
    pub async fn dispatch_attempt(
        &self,
        call: &RunCall<'_>,
        def: &WorkflowDefinition,
        step: &str,
        attempt: u32,
        mode: DispatchMode,
    ) -> Result<Option<DispatchPayload>> {
        let out = self
            .eval_run_graph(redis::pipe(), &self.scripts.dispatch_attempt, call, def, &[], |graph| {
                Ok(vec![to_json(
                    "dispatch_attempt",
                    &DispatchAttemptJson {
                        step,
                        attempt,
                        mode,
                        graph,
                    },
                )?])
            })
            .await?;
        dispatch_reply("dispatch_attempt.lua", out)
    }

    /// Ends an unfinished run: cancels its unfinished steps and sets its status to `status`
    /// (`Cancelled`, or `TimedOut` for a run timeout) with `reason` as its error.
    ///
    /// # Errors
    /// `NotFound` for no such run; `FailedPrecondition` when it already finished; `Redis`;
    /// `Internal` for a reply the script does not give.
    pub async fn cancel_run(&self, call: &RunCall<'_>, reason: &str, status: EndStatus) -> Result<()> {
        let args = [to_json("cancel_run", &CancelRunJson { reason, status })?];
        let out = self
            .eval_run(redis::pipe(), &self.scripts.cancel_run, call, &args)
            .await?;
        match out.first().map(String::as_str) {
            Some("cancelled") => {
                let workflow = out.get(1).map(String::as_str).unwrap_or_default();
                crate::metrics::observe_finish(self, workflow, status.word(), call.run_id, call.now);
                Ok(())
            }
            Some("finished") => Err(CoordinatorError::FailedPrecondition(format!(
                "run_id: run {} already finished ({})",
                call.run_id,
                out.get(1).map(String::as_str).unwrap_or("?")
            ))),
            Some("missing") => Err(not_found(call.run_id)),
            other => Err(CoordinatorError::Internal(format!("cancel_run.lua answered {other:?}"))),
        }
    }

    /// Resets steps of a finished run of `def` and dispatches those that are ready (see
    /// `reset_steps.lua`, which reads the run's stored graph). `steps` is `None` for a retry
    /// (every failed or cancelled step). The outbox entries of every step of `def` are written
    /// first, in the same round trip.
    ///
    /// # Errors
    /// `NotFound`; `FailedPrecondition` when the run has not finished, or (retry) nothing failed;
    /// `Redis`; `Internal` for a reply the script does not give.
    pub async fn reset_steps(
        &self,
        call: &RunCall<'_>,
        def: &WorkflowDefinition,
        steps: Option<&[String]>,
        input_json: Option<&str>,
        outbox_due: i64,
        timers: &[(String, i64)],
    ) -> Result<Vec<DispatchPayload>> {
        let mut pre = redis::pipe();
        for (member, due) in timers {
            pre.zadd(self.keys.timers(), member, *due).ignore();
        }
        for s in &def.steps {
            pre.zadd(self.keys.outbox(), outbox_member(call.run_id, &s.id), outbox_due)
                .ignore();
        }
        let mode = if steps.is_some() {
            ResetMode::Rerun
        } else {
            ResetMode::Retry
        };
        let names = steps.map(|s| s.join(",")).unwrap_or_default();
        let out = self
            .eval_run_graph(pre, &self.scripts.reset_steps, call, def, &[], |graph| {
                Ok(vec![
                    to_json(
                        "reset_steps",
                        &ResetStepsJson {
                            mode,
                            steps: &names,
                            graph,
                        },
                    )?,
                    input_json.unwrap_or("").to_string(),
                ])
            })
            .await?;
        let mut it = out.into_iter();
        match it.next().as_deref() {
            Some("ok") => {
                let input = it.next().unwrap_or_default();
                let n: usize = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                (0..n).map(|_| read_payload(&mut it, &input)).collect()
            }
            Some("not_finished") => Err(CoordinatorError::FailedPrecondition(format!(
                "run_id: run {} is still {}; cancel it first",
                call.run_id,
                it.next().unwrap_or_default()
            ))),
            Some("nothing") => Err(CoordinatorError::FailedPrecondition(format!(
                "run_id: run {} has no failed or cancelled step to retry",
                call.run_id
            ))),
            Some("missing") => Err(not_found(call.run_id)),
            other => Err(CoordinatorError::Internal(format!(
                "reset_steps.lua answered {other:?}"
            ))),
        }
    }

    /// Appends a custom event of a running attempt, sent by `worker` (`""`: not checked).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn emit_event(
        &self,
        call: &RunCall<'_>,
        step: &str,
        attempt: u32,
        worker: &str,
        payload_json: &str,
    ) -> Result<Disposition> {
        let args = [
            to_json("emit_event", &AttemptJson { step, attempt, worker })?,
            payload_json.to_string(),
        ];
        let out = self
            .eval_run(redis::pipe(), &self.scripts.emit_event, call, &args)
            .await?;
        disposition("emit_event.lua", &out)
    }

    /// Schedules (or reschedules) a timer.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn schedule_timer(&self, member: &str, due: i64) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.zadd(self.keys.timers(), member, due).await?;
        Ok(())
    }

    /// Holds outbox entries this coordinator is still publishing: moves each that is still there
    /// to `until_ms` (Unix ms), unless it is due later already (`ZADD XX GT`: a hold never makes an
    /// entry due sooner, nor brings back one that was cleared). Sent in batches of 512.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn hold_outbox(&self, members: &[String], until_ms: i64) -> Result<()> {
        let mut conn = self.conn.clone();
        for batch in members.chunks(512) {
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(self.keys.outbox()).arg("XX").arg("GT");
            for m in batch {
                cmd.arg(until_ms).arg(m);
            }
            let _: i64 = cmd.query_async(&mut conn).await?;
        }
        Ok(())
    }

    /// Removes outbox entries whose publish RabbitMQ confirmed.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn outbox_done(&self, members: &[String]) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let _: i64 = conn.zrem(self.keys.outbox(), members).await?;
        Ok(())
    }

    /// The run's own fields and its step fields (`<step>:<field>`), or `None` if it does not exist.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    ///
    /// The steps hash is read field by field for the run's own steps ([`SHOWN_STEP_FIELDS`], one
    /// `HMGET` per `READ_STEPS_BATCH` (50) steps, pipelined), never whole: a fan-out step's elements
    /// (up to 10,000 of them, seven fields each) live in the same hash, and one `HGETALL` of it
    /// held Redis for everyone while it copied them all. A step's output is not read, only its
    /// size (`HSTRLEN`, as `<step>:output_bytes`): 1,000 outputs of up to `max_payload_bytes`
    /// each would be gigabytes; read those an answer shows with [`Self::read_step_outputs`].
    /// A run's step ids are cached (bounded: 1 MiB, `STEP_IDS_CACHE_BYTES`, and 30 s, `STEP_IDS_CACHE_IDLE`,
    /// unread), so reading a run again (a client polling it) is one round trip.
    pub async fn read_run(&self, run_id: &str) -> Result<Option<(HashMap<String, String>, HashMap<String, String>)>> {
        let mut conn = self.conn.clone();
        // A run's step ids never change: once known, the run hash and its steps' fields are read
        // in one pipeline (polling a run costs one round trip, not two).
        if let Some(known) = self.step_ids.get(run_id) {
            let ids: Vec<&str> = known.split(',').filter(|s| !s.is_empty()).collect();
            let mut pipe = redis::pipe();
            pipe.hgetall(self.keys.run(run_id));
            let names = self.step_reads(&mut pipe, run_id, &ids);
            let mut values: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
            if values.is_empty() {
                return Err(CoordinatorError::Internal("empty answer from Redis".into()));
            }
            let run: HashMap<String, String> = redis::from_redis_value(values.remove(0)).map_err(unexpected)?;
            if run.is_empty() {
                self.step_ids.invalidate(run_id);
                return Ok(None);
            }
            // The cache is right unless the run was deleted and made again under the same id
            // between two reads: then read its steps again.
            if run.get("step_ids").map(String::as_str) == Some(&*known) {
                let steps = step_fields_read(&ids, names, values)?;
                return Ok(Some((run, steps)));
            }
            self.step_ids.invalidate(run_id);
        }
        let run: HashMap<String, String> = conn.hgetall(self.keys.run(run_id)).await?;
        if run.is_empty() {
            return Ok(None);
        }
        let ids: Vec<&str> = run
            .get("step_ids")
            .map(|s| s.split(',').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        if let Some(all) = run.get("step_ids") {
            self.step_ids
                .insert(run_id.to_string(), std::sync::Arc::from(all.as_str()));
        }
        if ids.is_empty() {
            return Ok(Some((run, HashMap::new())));
        }
        let mut pipe = redis::pipe();
        let names = self.step_reads(&mut pipe, run_id, &ids);
        let values: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
        let steps = step_fields_read(&ids, names, values)?;
        Ok(Some((run, steps)))
    }

    /// Adds to `pipe` the reads of [`Store::read_run`] for steps `ids` of run `run_id`: one
    /// `HMGET` of [`SHOWN_STEP_FIELDS`] per [`READ_STEPS_BATCH`] steps, then one `HSTRLEN` of each
    /// step's output. Returns the field names the `HMGET`s ask for, in order.
    fn step_reads(&self, pipe: &mut Pipeline, run_id: &str, ids: &[&str]) -> Vec<String> {
        let key = self.keys.steps(run_id);
        let mut names = Vec::with_capacity(ids.len() * SHOWN_STEP_FIELDS.len());
        for chunk in ids.chunks(READ_STEPS_BATCH) {
            let cmd = pipe.cmd("HMGET").arg(&key);
            for id in chunk {
                for f in SHOWN_STEP_FIELDS {
                    let name = format!("{id}:{f}");
                    cmd.arg(&name);
                    names.push(name);
                }
            }
        }
        for id in ids {
            pipe.cmd("HSTRLEN").arg(&key).arg(format!("{id}:output"));
        }
        names
    }

    /// The outputs of the run's steps `ids`, keyed `<step>:output` as in [`Self::read_run`] (a
    /// step without an output is left out). The caller bounds their total: each may be up to
    /// `max_payload_bytes`.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn read_step_outputs(&self, run_id: &str, ids: &[&str]) -> Result<HashMap<String, String>> {
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let names: Vec<String> = ids.iter().map(|id| format!("{id}:output")).collect();
        let mut conn = self.conn.clone();
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.steps(run_id))
            .arg(&names)
            .query_async(&mut conn)
            .await?;
        for (name, value) in names.into_iter().zip(values) {
            if let Some(v) = value {
                out.insert(name, v);
            }
        }
        Ok(out)
    }

    /// The workflow and version a run is pinned to.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn run_workflow(&self, run_id: &str) -> Result<Option<(String, u32)>> {
        let mut conn = self.conn.clone();
        let (wf, v): (Option<String>, Option<u32>) = redis::cmd("HMGET")
            .arg(self.keys.run(run_id))
            .arg("workflow")
            .arg("version")
            .query_async(&mut conn)
            .await?;
        Ok(wf.zip(v))
    }

    /// The attempt base of a step (0 unless its run was retried or re-run).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn attempt_base(&self, run_id: &str, step: &str) -> Result<u32> {
        let mut conn = self.conn.clone();
        let base: Option<u32> = conn.hget(self.keys.steps(run_id), format!("{step}:base")).await?;
        Ok(base.unwrap_or(0))
    }

    /// One page of run ids from a run index, newest first, strictly older than `after` (an index member).
    /// Returns `(member, run_id)` pairs.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn run_index_page(
        &self,
        workflow: Option<&str>,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<String>> {
        let key = match workflow {
            Some(w) => self.keys.workflow_runs_index(w),
            None => self.keys.runs_index(),
        };
        let max = after.map(|a| format!("({a}")).unwrap_or_else(|| "+".into());
        let mut conn = self.conn.clone();
        Ok(redis::cmd("ZREVRANGEBYLEX")
            .arg(key)
            .arg(max)
            .arg("-")
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .query_async(&mut conn)
            .await?)
    }

    /// The summary fields of several runs at once (`None` for runs that expired).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn run_summaries(&self, run_ids: &[String]) -> Result<Vec<Option<HashMap<String, String>>>> {
        let mut pipe = redis::pipe();
        for id in run_ids {
            pipe.hgetall(self.keys.run(id));
        }
        let mut conn = self.conn.clone();
        let maps: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
        Ok(maps.into_iter().map(|m| (!m.is_empty()).then_some(m)).collect())
    }

    /// The attempt histories (`<step>:history`, JSON as [`crate::view::run_error_types`] reads
    /// it) of several runs at once, one pipeline: for each `(run id, step ids)` the histories of
    /// those steps that have one.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn step_histories(&self, runs: &[(&str, Vec<&str>)]) -> Result<Vec<Vec<String>>> {
        let mut pipe = redis::pipe();
        let mut asked = 0usize;
        for (run_id, steps) in runs {
            if steps.is_empty() {
                continue;
            }
            let cmd = pipe.cmd("HMGET").arg(self.keys.steps(run_id));
            for step in steps {
                cmd.arg(format!("{step}:history"));
            }
            asked += 1;
        }
        if asked == 0 {
            return Ok(vec![Vec::new(); runs.len()]);
        }
        let mut conn = self.conn.clone();
        let answers: Vec<Vec<Option<String>>> = pipe.query_async(&mut conn).await?;
        let mut answers = answers.into_iter();
        Ok(runs
            .iter()
            .map(|(_, steps)| {
                if steps.is_empty() {
                    Vec::new()
                } else {
                    answers.next().unwrap_or_default().into_iter().flatten().collect()
                }
            })
            .collect())
    }

    /// Drops index entries of runs that no longer exist.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn drop_index_entries(&self, workflow: &str, members: &[String]) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .zrem(self.keys.runs_index(), members)
            .ignore()
            .zrem(self.keys.workflow_runs_index(workflow), members)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// One version's definition JSON, `None` when the workflow has no such version.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn workflow_version(&self, name: &str, version: u32) -> Result<Option<String>> {
        let mut conn = self.conn.clone();
        Ok(conn.hget(self.keys.workflow(name), version).await?)
    }

    /// The version numbers of a workflow, ascending, each with its registration time (Unix ms; 0
    /// when unknown), without their definitions.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn workflow_version_numbers(&self, name: &str) -> Result<Vec<(u32, i64)>> {
        let mut conn = self.conn.clone();
        let (numbers, times): (Vec<u32>, HashMap<u32, i64>) = redis::pipe()
            .hkeys(self.keys.workflow(name))
            .hgetall(self.keys.workflow_registered(name))
            .query_async(&mut conn)
            .await?;
        let mut out: Vec<_> = numbers
            .into_iter()
            .map(|v| (v, times.get(&v).copied().unwrap_or(0)))
            .collect();
        out.sort_by_key(|(v, _)| *v);
        Ok(out)
    }

    /// Names of every registered workflow.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn workflow_names(&self) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let mut names: Vec<String> = conn.smembers(self.keys.workflow_names()).await?;
        names.sort();
        Ok(names)
    }

    /// Events of a run after `after` (a stream id; `"-"` for the start), at most `count`.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn events_after(
        &self,
        run_id: &str,
        after: &str,
        count: usize,
    ) -> Result<Vec<(String, HashMap<String, String>)>> {
        let mut conn = self.conn.clone();
        let start = if after == "-" {
            "-".to_string()
        } else {
            format!("({after}")
        };
        let reply: redis::streams::StreamRangeReply =
            conn.xrange_count(self.keys.events(run_id), start, "+", count).await?;
        Ok(reply.ids.into_iter().map(stream_entry).collect())
    }

    /// What `WatchRun` needs to open a stream, in one round trip: whether the run is in Redis
    /// (`state`: `None` when not, `Some(true)` when only its archived tombstone is), the ids of
    /// the last event and the last live log line (where a subscription starts), and the first
    /// `count` events of its history after `after` (`-`: from the start).
    ///
    /// The commands run in this order in one pipeline, so the cursors are never past the history
    /// read after them (a later event may be in both: watchers skip what they sent by sequence).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn watch_open(&self, run_id: &str, after: &str, count: usize) -> Result<WatchOpen> {
        let mut conn = self.conn.clone();
        let start = if after == "-" {
            "-".to_string()
        } else {
            format!("({after}")
        };
        let run_key = self.keys.run(run_id);
        let events_key = self.keys.events(run_id);
        #[allow(clippy::type_complexity)]
        let (exists, archived, last_event, last_log, history): (
            bool,
            bool,
            redis::streams::StreamRangeReply,
            redis::streams::StreamRangeReply,
            redis::streams::StreamRangeReply,
        ) = redis::pipe()
            .exists(&run_key)
            .hexists(&run_key, "archived_at")
            .xrevrange_count(&events_key, "+", "-", 1)
            .xrevrange_count(self.keys.log_tail(run_id), "+", "-", 1)
            .xrange_count(&events_key, start, "+", count)
            .query_async(&mut conn)
            .await?;
        Ok(WatchOpen {
            state: exists.then_some(archived),
            last_event: last_event.ids.into_iter().next().map(|e| e.id),
            last_log: last_log.ids.into_iter().next().map(|e| e.id),
            history: history.ids.into_iter().map(stream_entry).collect(),
        })
    }

    /// One `XREAD BLOCK` over many event streams on `conn` (a [`Store::blocking_connection`]):
    /// for each stream the events after its cursor (`cursors[i]` for `keys[i]`), at most `count`
    /// each, waiting up to `block` for the first. Answers each stream that had events, with them.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn read_streams(
        conn: &mut BlockingConnection,
        keys: &[&str],
        cursors: &[&str],
        block: Duration,
        count: usize,
    ) -> Result<Vec<(String, Vec<StreamEntry>)>> {
        let block_ms = usize::try_from(block.as_millis()).unwrap_or(usize::MAX);
        let opts = redis::streams::StreamReadOptions::default()
            .block(block_ms)
            .count(count);
        let reply: Option<redis::streams::StreamReadReply> = conn.xread_options(keys, cursors, &opts).await?;
        Ok(reply
            .map(|r| {
                r.keys
                    .into_iter()
                    .map(|k| (k.key, k.ids.into_iter().map(stream_entry).collect()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The `CLIENT ID` of `conn`, for [`Store::unblock_client`].
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn client_id(conn: &mut BlockingConnection) -> Result<i64> {
        Ok(redis::cmd("CLIENT").arg("ID").query_async(conn).await?)
    }

    /// Ends the blocking command the client `id` waits in (`CLIENT UNBLOCK`, as if it timed out);
    /// nothing when it waits in none.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn unblock_client(&self, id: i64) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("CLIENT")
            .arg("UNBLOCK")
            .arg(id)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Whether each key exists, in order (one pipelined round trip).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn streams_exist(&self, keys: &[&str]) -> Result<Vec<bool>> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.exists(*k);
        }
        Ok(pipe.query_async(&mut conn).await?)
    }

    /// Trims run index entries (and human-task entries) older than `cutoff` (Unix ms).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn trim_indexes(&self, cutoff: i64) -> Result<()> {
        let mut conn = self.conn.clone();
        let names = self.workflow_names().await?;
        let max = format!("({cutoff:013}");
        let mut pipe = redis::pipe();
        pipe.zrembyscore(self.keys.human_tasks(), "-inf", format!("({cutoff}"))
            .ignore();
        pipe.cmd("ZREMRANGEBYLEX")
            .arg(self.keys.runs_index())
            .arg("-")
            .arg(&max)
            .ignore();
        for n in names {
            pipe.cmd("ZREMRANGEBYLEX")
                .arg(self.keys.workflow_runs_index(&n))
                .arg("-")
                .arg(&max)
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }
}

/// The layout of a namespace's Redis keys and values that this version reads and writes, stored
/// in `{<namespace>}:layout` (`<namespace>:layout` up to layout 3) and checked when a coordinator
/// starts ([`Store::check_layout`]).
///
/// - 1: the releases before the layout was stored (no `<namespace>:layout` key).
/// - 2: the scripts that commit a dispatch also write its queued-index entry and
///   schedule-to-start timer, and StartStep's script removes them; the stored runs, steps, timers,
///   outbox and indexes have the same keys and values as in layout 1, so runs in flight from
///   layout 1 go on unchanged.
/// - 3: a run stores its graph (`<step>:children` in its steps hash, `leaves` in its
///   run hash: [`RunGraph`]) when it is created, and reports no longer carry it; cross-run effects
///   (slots given back, slot leases, an emitting parent's count) go through the effects outbox
///   (`<namespace>:effects`, [`Effect`]) instead of being written by a run's script on keys it
///   did not declare. A run of layout 1 or 2 has no stored graph: the first script that needs it
///   answers `no_graph` and is called again with it (a lazy migration, so runs in flight go on;
///   the migration on start only records the new number). Its slots are given back through
///   effects like any other run's.
/// - 4: this one. Every key carries the namespace's hash tag first (`{<namespace>}:<rest>`,
///   [`Keys::tag`]), so every script touches one Redis Cluster slot; the rest of each name is as
///   in layout 3. The migration renames the keys ([`Store::check_layout`]); values are unchanged.
pub const LAYOUT_VERSION: u32 = 4;

/// The oldest layout a coordinator of this version migrates on start; an older one is refused.
pub const MIN_MIGRATED_LAYOUT: u32 = 1;

/// What [`Store::check_layout`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutCheck {
    /// The namespace was empty: it is now marked [`LAYOUT_VERSION`].
    New,
    /// The namespace was of this layout already.
    Current,
    /// The namespace held data of this older layout and was migrated to [`LAYOUT_VERSION`].
    Migrated(u32),
}

/// The docs section that says how to drain a namespace before an upgrade it cannot take.
pub const DRAIN_PROCEDURE: &str = "docs/operations.md, \"Upgrades and the namespace layout\"";

impl Store {
    /// Checks the namespace's layout before this coordinator serves it: an empty namespace is
    /// marked [`LAYOUT_VERSION`]; one without a mark that holds data is of layout 1 (the releases
    /// before the mark) and, like any layout from [`MIN_MIGRATED_LAYOUT`] up, is migrated; the
    /// current layout passes.
    ///
    /// The migration from layout 3 or earlier renames every key `<prefix>:<rest>` to
    /// `{<prefix>}:<rest>` ([`Keys::from_untagged`]; `RENAMENX`, so a key already renamed by another
    /// coordinator migrating at the same time is left alone, and TTLs are kept), then writes the
    /// mark. It runs on a standalone Redis only: those layouts were cross-slot and never ran on a
    /// cluster, so on a cluster only the tagged mark is read.
    ///
    /// # Errors
    /// `FailedPrecondition` naming the namespace, both layouts and [`DRAIN_PROCEDURE`] when the
    /// namespace holds a layout this version cannot read: a newer one (written by a later
    /// release), one older than [`MIN_MIGRATED_LAYOUT`], or a mark that is not a number; nothing is
    /// changed then. [`CoordinatorError::Redis`].
    pub async fn check_layout(&self) -> Result<LayoutCheck> {
        let key = self.keys.layout();
        let mut conn = self.conn.clone();
        let mark: Option<String> = conn.get(&key).await?;
        let (found, untagged) = match mark {
            Some(text) => (self.parse_layout_mark(&text)?, false),
            None if self.cluster => {
                // Layouts before 4 never ran on a cluster: a namespace without the mark is new.
                self.mark_new_layout(&mut conn).await?;
                return Ok(LayoutCheck::New);
            }
            None => {
                // No tagged mark: a new namespace, or one of layout 1 to 3 (untagged keys; layout 1
                // kept no mark).
                let old = |name: &str| self.keys.untagged(name);
                let (old_mark, runs, names, timers, outbox): (Option<String>, u64, u64, u64, u64) = redis::pipe()
                    .get(old("layout"))
                    .zcard(old("runs"))
                    .scard(old("wf-names"))
                    .zcard(old("timers"))
                    .zcard(old("outbox"))
                    .query_async(&mut conn)
                    .await?;
                match old_mark {
                    Some(text) => (self.parse_layout_mark(&text)?, true),
                    None if runs == 0 && names == 0 && timers == 0 && outbox == 0 => {
                        self.mark_new_layout(&mut conn).await?;
                        return Ok(LayoutCheck::New);
                    }
                    None => (1, true),
                }
            }
        };
        if found == LAYOUT_VERSION && !untagged {
            return Ok(LayoutCheck::Current);
        }
        if found >= LAYOUT_VERSION && untagged || found > LAYOUT_VERSION {
            return Err(self.refuse_layout(&format!(
                "layout {found}, written by a newer Baton release (this coordinator reads layout {LAYOUT_VERSION}); run that release's coordinators"
            )));
        }
        if found < MIN_MIGRATED_LAYOUT {
            return Err(self.refuse_layout(&format!(
                "layout {found}, older than this coordinator migrates (layout {MIN_MIGRATED_LAYOUT} to {LAYOUT_VERSION})"
            )));
        }
        // Layouts 1 to 3 to 4: every key gets the namespace's hash tag (renamed here, before the
        // mark). Runs of layout 1 or 2 get their graph stored when a script first needs it (see
        // LAYOUT_VERSION). A later layout adds its migration step here, before the mark.
        if untagged {
            self.tag_untagged_keys(&mut conn).await?;
        }
        let _: () = redis::pipe()
            .set(&key, LAYOUT_VERSION)
            .ignore()
            .del(self.keys.untagged("layout"))
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(LayoutCheck::Migrated(found))
    }

    /// Reads a layout mark.
    ///
    /// # Errors
    /// `FailedPrecondition` (the refusal) for a mark that is not a number.
    fn parse_layout_mark(&self, text: &str) -> Result<u32> {
        text.trim().parse::<u32>().map_err(|_| {
            self.refuse_layout(&format!(
                "a layout mark {} that is not a number",
                baton_shared::limits::echo(text)
            ))
        })
    }

    /// Marks an empty namespace [`LAYOUT_VERSION`]; two coordinators starting at once both find it
    /// empty, and either mark stands (`SET NX`).
    async fn mark_new_layout(&self, conn: &mut ConnectionManager) -> Result<()> {
        let _: Option<String> = redis::cmd("SET")
            .arg(self.keys.layout())
            .arg(LAYOUT_VERSION)
            .arg("NX")
            .query_async(conn)
            .await?;
        Ok(())
    }

    /// Renames every untagged key of the namespace (`<prefix>:<rest>`, layout 3 and earlier) to
    /// its tagged name, page by page (`SCAN`). A key that another coordinator renamed meanwhile
    /// is gone (`no such key`) and skipped; one whose new name exists already (written by a
    /// coordinator of this release while one of the previous release still ran) is left as it
    /// is, counted and logged.
    async fn tag_untagged_keys(&self, conn: &mut ConnectionManager) -> Result<()> {
        let pattern = self.keys.untagged_scan_pattern();
        let old_mark = self.keys.untagged("layout");
        let mut cursor: u64 = 0;
        let (mut renamed, mut kept) = (0u64, 0u64);
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(conn)
                .await?;
            let moves: Vec<(String, String)> = page
                .into_iter()
                .filter(|old| *old != old_mark)
                .filter_map(|old| self.keys.from_untagged(&old).map(|new| (old, new)))
                .collect();
            if !moves.is_empty() {
                let mut pipe = redis::pipe();
                // One key's `no such key` must not fail the others: each answer is read alone.
                pipe.ignore_errors();
                for (old, new) in &moves {
                    pipe.cmd("RENAMENX").arg(old).arg(new);
                }
                let answers: Vec<redis::Value> = pipe.query_async(conn).await?;
                for answer in answers {
                    match answer {
                        redis::Value::Int(1) => renamed = renamed.saturating_add(1),
                        redis::Value::Int(_) => kept = kept.saturating_add(1),
                        // Renamed by another coordinator between our SCAN and RENAMENX.
                        _ => {}
                    }
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        if kept > 0 {
            tracing::warn!(
                namespace = %self.keys.prefix(),
                kept,
                "{kept} untagged key(s) were left as they were: their tagged name exists already"
            );
        }
        tracing::info!(namespace = %self.keys.prefix(), renamed, "gave the namespace's keys its hash tag");
        Ok(())
    }

    fn refuse_layout(&self, what: &str) -> CoordinatorError {
        CoordinatorError::FailedPrecondition(format!(
            "namespace {}: holds {what}; this coordinator will not serve it. Drain the namespace with the \
             coordinators of its release first (see {DRAIN_PROCEDURE}), or start this one on another namespace",
            baton_shared::limits::echo(self.keys.prefix())
        ))
    }
}

/// One event of a run's stream: its id (the event's `sequence`) and fields.
pub type StreamEntry = (String, HashMap<String, String>);

/// Arguments of `complete_step.lua`.
pub struct CompleteArgs<'a> {
    /// The definition the run is pinned to: its `workflow@version` fences the call, and its graph
    /// is stored for a run created before graphs were (the script asks for it).
    pub def: &'a WorkflowDefinition,
    /// The step.
    pub step: &'a str,
    /// The attempt being completed.
    pub attempt: u32,
    /// Who reports it, and so how the outcome is fenced.
    pub by: Reporter<'a>,
    /// The outcome.
    pub outcome: StepOutcome,
    /// The output JSON (`Ok`, `Emit`, `Items`), the reason (`Skip`) or the error message.
    pub body: &'a str,
    /// When to dispatch the next attempt (Unix ms), 0 to give up. The script arms the `retry`
    /// timer of the next attempt when it applies the retry.
    pub retry_at: i64,
    /// For `Heartbeat`: the heartbeat timeout, ms.
    pub heartbeat_timeout_ms: u64,
    /// For a failure: its type (`StepFailure.error_type`, or the coordinator's, e.g. `Timeout`),
    /// kept in the attempt's history; `""` for none.
    pub error_type: &'a str,
    /// For a worker's failure: its details (a traceback, at most
    /// [`baton_shared::limits::MAX_ERROR_DETAILS_BYTES`]), kept in the attempt's history.
    pub error_details: &'a str,
}

/// Who reports an attempt's outcome to `complete_step.lua`. A worker's report and the
/// coordinator's own completions take separate paths: a worker's counts only for a running attempt
/// it holds, and nothing a worker sends can pass for a person or the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporter<'a> {
    /// A worker's `ReportResult`, by worker id.
    Worker(&'a str),
    /// `CompleteHumanTask` by this (authenticated, or claimed with auth off) user: recorded as
    /// the task's `completed_by`.
    Human(&'a str),
    /// The coordinator itself (a timer, a skip, an event, a child run, an emitter's end), named
    /// in the attempt history by this word (`timer`, `coordinator`, `event`, `child`).
    Coordinator(&'a str),
}

/// Connections commits go through with `durability = "replicated"` (each `WAIT` holds one until
/// the replicas acknowledge, so this many commits wait at once).
const COMMIT_CONNECTIONS: usize = 16;

/// `durability = "replicated"`: how many Redis replicas each commit waits for, and how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replicated {
    /// Replicas that must have a commit (`durability_replicas`, 1 to 16).
    pub replicas: u32,
    /// Longest wait for them (`durability_timeout`, 10 ms to 60 s).
    pub timeout: Duration,
}

impl Replicated {
    /// The timeout in whole milliseconds, at least 1 (`WAIT 0` would wait for ever).
    fn timeout_ms(self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// `Unavailable` naming `durability` when `acked` replicas are fewer than asked.
    ///
    /// # Errors
    /// [`CoordinatorError::Unavailable`].
    pub(crate) fn check(self, script: &str, acked: u32) -> Result<()> {
        if acked >= self.replicas {
            return Ok(());
        }
        Err(CoordinatorError::Unavailable(format!(
            "durability: the commit of {script} reached {acked} of the {} Redis replica(s) it waits for within {}; \
             it stands on the primary but could be lost in a failover; try again",
            self.replicas,
            baton_shared::duration::format(self.timeout)
        )))
    }
}

/// Replicas `INFO replication` of a primary says are online (`slaveN:...,state=online,...`).
fn replicas_online(info: &str) -> u32 {
    let n = info
        .lines()
        .filter(|l| l.starts_with("slave") && l.contains("state=online"))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// [`Store::watch_open`]'s answer.
#[derive(Debug)]
pub struct WatchOpen {
    /// `None`: no such run in Redis; `Some(true)`: only its archived tombstone; `Some(false)`: the
    /// run itself.
    pub state: Option<bool>,
    /// The id of the run's last event, if it has one.
    pub last_event: Option<String>,
    /// The id of the run's last live log line, if it has one.
    pub last_log: Option<String>,
    /// The first events of its history after the asked sequence, oldest first.
    pub history: Vec<StreamEntry>,
}

/// Converts one stream entry to (id, fields).
pub fn stream_entry(e: redis::streams::StreamId) -> StreamEntry {
    let fields = e
        .map
        .into_iter()
        .filter_map(|(k, v)| redis::from_redis_value::<String>(v).ok().map(|v| (k, v)))
        .collect();
    (e.id, fields)
}

fn not_found(run_id: &str) -> CoordinatorError {
    CoordinatorError::NotFound(format!("run_id: no run {run_id} ({})", crate::reset::lost_hint()))
}

/// The keys every run script gets first (run, steps, events, timers, outbox, effects): a script's
/// own keys start at `KEYS[RUN_KEYS + 1]`.
const RUN_KEYS: usize = 6;

/// Splits a run script's answer (the last value of its pipeline) into its own reply and the
/// effects it wrote (see `RunScript`).
///
/// # Errors
/// `Internal` naming the script for an answer of another shape.
/// Reads `start_step.lua`'s answer.
fn parse_started(out: Vec<String>) -> Result<Started> {
    let mut it = out.into_iter();
    Ok(match it.next().as_deref() {
        Some("held") => Started::Held(
            it.next()
                .ok_or_else(|| CoordinatorError::Internal("start_step.lua answered 'held' without a holder".into()))?,
        ),
        Some("proceed") => Started::Answer(Disposition::Proceed),
        Some("stale") => Started::Answer(Disposition::Stale),
        Some("cancelled") => Started::Answer(Disposition::Cancelled),
        Some("duplicate") => Started::Answer(Disposition::Duplicate),
        other => return Err(CoordinatorError::Internal(format!("start_step.lua answered {other:?}"))),
    })
}

/// The reader of [`Store::read_time_later`]: takes what is queued (at most [`TIME_READ_BATCH`]),
/// reads it in one pipeline, hands each time on, and goes on until every sender is gone. A failed
/// round trip drops its batch.
async fn read_times(mut conn: ConnectionManager, mut queue: tokio::sync::mpsc::Receiver<TimeRead>) {
    let mut batch = Vec::with_capacity(TIME_READ_BATCH);
    while queue.recv_many(&mut batch, TIME_READ_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for r in &batch {
            pipe.cmd("HGET").arg(&r.key).arg(&r.field);
        }
        match pipe.query_async::<Vec<Option<String>>>(&mut conn).await {
            Ok(times) => {
                for (r, t) in batch.drain(..).zip(times) {
                    if let Some(t) = t.and_then(|t| t.parse::<i64>().ok()) {
                        (r.then)(t);
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, reads = batch.len(), "metrics' time reads failed");
            }
        }
        batch.clear();
    }
}

fn run_reply(script: &str, reply: redis::Value) -> Result<(Vec<String>, Vec<String>)> {
    redis::from_redis_value(reply)
        .map_err(|e| CoordinatorError::Internal(format!("{script}.lua answered something unexpected: {e}")))
}

/// A cross-run effect a run script committed to the effects outbox ([`Keys::effects`]) in the same
/// commit as the state change that needs it: the keys it touches are not the run's (another run's,
/// or a pool's), so the script does not touch them; the committing coordinator applies it at once,
/// the effects sweeper after a crash. Each applies idempotently. Stored as JSON, `kind` naming it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Effect {
    /// An attempt (`member`: `<run>|<step>|<attempt>`) gives back the slot of concurrency pool
    /// `pool` it holds or waits for; a `sem-wake` timer then hands it to the next waiter.
    ReleaseSlot {
        /// The pool.
        pool: String,
        /// The attempt.
        member: String,
    },
    /// A started attempt's slot lease runs to `until` (Unix ms), if it still holds the slot.
    LeaseSlot {
        /// The pool.
        pool: String,
        /// The attempt.
        member: String,
        /// The new end of its lease, Unix ms.
        until: i64,
    },
    /// A finished run gives back its run slot (`max_concurrent_runs`); a `run-wake` timer then
    /// starts the next queued run.
    ReleaseRunSlot {
        /// The pool, `<workflow>/run[/<key>]`.
        pool: String,
        /// The run.
        run: String,
    },
    /// A run an emitting step started has finished: counted once in the step, whose `emit` timer
    /// then goes on.
    EmitDone {
        /// The emitting run.
        parent_run: String,
        /// Its emitting step.
        parent_step: String,
        /// The finished run.
        run: String,
        /// Whether it succeeded.
        succeeded: bool,
    },
}

impl Effect {
    /// Reads an effects-outbox member.
    ///
    /// # Errors
    /// `Internal` quoting (cut) the member when it is no effect.
    pub fn parse(member: &str) -> Result<Self> {
        serde_json::from_str(member).map_err(|e| {
            CoordinatorError::Internal(format!("not an effect ({e}): {}", baton_shared::limits::echo(member)))
        })
    }

    /// The concurrency pool whose slot this gives back, if it does.
    pub fn released_pool(&self) -> Option<&str> {
        match self {
            Effect::ReleaseSlot { pool, .. } => Some(pool),
            _ => None,
        }
    }
}

/// Reads the reply of a completing script (`script` names it in errors): `stale`, `alive`,
/// `retry`, `failed`, `emit` or `ok` with payloads (see `complete_step.lua`).
///
/// # Errors
/// `Internal` naming `script` for an unknown tag or a malformed reply: never read as `Stale`.
fn parse_completion(script: &str, out: Vec<String>) -> Result<Completion> {
    let bad = |what: &str| CoordinatorError::Internal(format!("{script} answered {what}"));
    let mut it = out.into_iter();
    let tag = it.next().ok_or_else(|| bad("nothing"))?;
    Ok(match tag.as_str() {
        "stale" => Completion::Stale,
        "alive" => Completion::Alive(
            it.next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("'alive' without a time"))?,
        ),
        "retry" => Completion::Retry(
            it.next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("'retry' without an attempt"))?,
        ),
        "failed" => Completion::Failed,
        "emit" => Completion::Emit,
        "ok" => {
            let run_status = it.next().ok_or_else(|| bad("'ok' without a run status"))?;
            let input = it.next().ok_or_else(|| bad("'ok' without the run input"))?;
            let n: usize = it
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("'ok' without a count"))?;
            let mut dispatched = Vec::with_capacity(n.min(crate::store::ITEM_BATCH.saturating_mul(4)));
            for _ in 0..n {
                dispatched.push(read_payload(&mut it, &input)?);
            }
            Completion::Succeeded { run_status, dispatched }
        }
        other => return Err(bad(&format!("an unknown tag {other:?}"))),
    })
}

/// `complete_step.lua`'s path of an outcome (`by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum ReporterPath {
    /// A worker's ReportResult.
    Worker,
    /// CompleteHumanTask.
    Human,
    /// The coordinator itself.
    Coordinator,
}

/// An attempt's outcome as `complete_step.lua` reads it (`outcome`): the run core's word.
pub use crate::core::classify::OutcomeWord as StepOutcome;

/// `complete_step.lua`'s arguments (`A`); the body travels beside them as ARGV[7], so an output of
/// megabytes is not escaped into JSON and parsed again. The step's children and the run's leaves
/// are not sent: the script reads them from the graph the run stored.
#[derive(serde::Serialize)]
struct CompleteStepJson<'a> {
    step: &'a str,
    attempt: u32,
    who: &'a str,
    by: ReporterPath,
    outcome: StepOutcome,
    #[serde(skip_serializing_if = "is_zero_i64")]
    retry_at: i64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    heartbeat_timeout_ms: u64,
    pinned: &'a str,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    queued: std::collections::BTreeMap<&'a str, QueuedEntry>,
    #[serde(skip_serializing_if = "str::is_empty")]
    error_type: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    error_details: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    graph: Option<&'a RunGraph>,
}

/// The arguments of `heartbeat.lua` and `emit_event.lua`.
#[derive(serde::Serialize)]
struct AttemptJson<'a> {
    step: &'a str,
    attempt: u32,
    worker: &'a str,
}

/// The arguments of `resume.lua`.
#[derive(serde::Serialize)]
struct StepJson<'a> {
    step: &'a str,
    attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    graph: Option<&'a RunGraph>,
}

/// The arguments of `take_over.lua`.
#[derive(serde::Serialize)]
struct TakeOverJson<'a> {
    step: &'a str,
    attempt: u32,
    holder: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    graph: Option<&'a RunGraph>,
}

/// The arguments of `dispatch_attempt.lua`.
#[derive(serde::Serialize)]
struct DispatchAttemptJson<'a> {
    step: &'a str,
    attempt: u32,
    mode: DispatchMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    graph: Option<&'a RunGraph>,
}

/// The arguments of `stage_items.lua`; the inputs travel beside them.
#[derive(serde::Serialize)]
struct StageItemsJson<'a> {
    step: &'a str,
    attempt: u32,
    first: usize,
}

/// The arguments of `start_items.lua`.
#[derive(serde::Serialize)]
struct StartItemsJson<'a> {
    step: &'a str,
    attempt: u32,
    max_parallel: u32,
    total: usize,
    kept: usize,
    order: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    graph: Option<&'a RunGraph>,
}

/// The arguments of `wait.lua`.
#[derive(serde::Serialize)]
struct WaitJson<'a> {
    step: &'a str,
    attempt: u32,
    mode: WaitMode,
    detail: &'a str,
    identity: &'a str,
    due: i64,
    worker: &'a str,
}

/// The arguments of `park.lua`.
#[derive(serde::Serialize)]
struct ParkJson<'a> {
    step: &'a str,
    attempt: u32,
    detail: &'a str,
    timer: &'a str,
    due: i64,
}

/// The arguments of `cancel_run.lua`.
#[derive(serde::Serialize)]
struct CancelRunJson<'a> {
    reason: &'a str,
    status: EndStatus,
}

/// The status [`Store::cancel_run`] ends a run with (`cancel_run.lua`'s `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndStatus {
    /// CancelRun (or a parent's end, a newer schedule tick).
    Cancelled,
    /// The run timeout fired.
    TimedOut,
}

impl EndStatus {
    /// The run status word.
    pub fn word(self) -> &'static str {
        match self {
            EndStatus::Cancelled => "cancelled",
            EndStatus::TimedOut => "timed_out",
        }
    }
}

/// What `reset_steps.lua` resets (its `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum ResetMode {
    /// Every failed or cancelled step (RetryRun).
    Retry,
    /// The steps named (RerunRun).
    Rerun,
}

/// The arguments of `reset_steps.lua`; a new input travels beside them.
#[derive(serde::Serialize)]
struct ResetStepsJson<'a> {
    mode: ResetMode,
    steps: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    graph: Option<&'a RunGraph>,
}

/// Whether a script that reads the run's graph answered that the run has none stored (a run of
/// layout 2): it changed nothing, and is called again with the graph.
fn no_graph(out: &[String]) -> bool {
    matches!(out, [tag] if tag == "no_graph")
}

/// Reads a `{'stale'}` or `{'dispatch', run_input, payload}` reply of `script`.
///
/// # Errors
/// `Internal` naming `script` for an unknown tag or a malformed payload.
fn dispatch_reply(script: &str, out: Vec<String>) -> Result<Option<DispatchPayload>> {
    let mut it = out.into_iter();
    match it.next().as_deref() {
        Some("dispatch") => {}
        Some("stale") => return Ok(None),
        other => return Err(CoordinatorError::Internal(format!("{script} answered {other:?}"))),
    }
    let input = it.next().unwrap_or_default();
    Ok(Some(read_payload(&mut it, &input)?))
}

fn read_payload(it: &mut impl Iterator<Item = String>, input: &str) -> Result<DispatchPayload> {
    let bad = || CoordinatorError::Internal("malformed dispatch payload from Redis".into());
    let step_id = it.next().ok_or_else(bad)?;
    let attempt: u32 = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let attempt_base: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let dispatched_at: i64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let item_input = it.next().ok_or_else(bad)?;
    let resume_data = it.next().ok_or_else(bad)?;
    let queued = it.next().ok_or_else(bad)? == "1";
    let n: usize = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let mut parent_outputs = HashMap::with_capacity(n);
    let mut parent_statuses = HashMap::with_capacity(n);
    for _ in 0..n {
        let p = it.next().ok_or_else(bad)?;
        let st = it.next().ok_or_else(bad)?;
        let o = it.next().ok_or_else(bad)?;
        parent_statuses.insert(p.clone(), st);
        parent_outputs.insert(p, o);
    }
    Ok(DispatchPayload {
        step_id,
        attempt,
        attempt_base,
        dispatched_at,
        input_json: input.to_string(),
        item_input: (!item_input.is_empty()).then_some(item_input),
        resume_data,
        parent_outputs,
        parent_statuses,
        queued,
    })
}

/// Reads a disposition reply (`proceed`, `stale`, `cancelled`, `duplicate`) of `script`.
///
/// # Errors
/// `Internal` naming `script` for an unknown tag (never read as `Stale`).
fn disposition(script: &str, out: &[String]) -> Result<Disposition> {
    match out.first().map(String::as_str) {
        Some("proceed") => Ok(Disposition::Proceed),
        Some("stale") => Ok(Disposition::Stale),
        Some("cancelled") => Ok(Disposition::Cancelled),
        Some("duplicate") => Ok(Disposition::Duplicate),
        other => Err(CoordinatorError::Internal(format!("{script} answered {other:?}"))),
    }
}

/// The outbox member of a dispatched step: `<run>|<step>`. Keyed by step, not attempt, so an entry
/// written before the commit knows its key without knowing which attempt the script will dispatch;
/// the sweeper publishes whatever attempt is dispatched when it looks.
pub fn outbox_member(run_id: &str, step: &str) -> String {
    format!("{run_id}|{step}")
}

/// The member of a timer: `<kind>|<run>|<step>|<attempt>`.
pub fn timer_member(kind: TimerKind, run_id: &str, step: &str, attempt: u32) -> String {
    format!("{}|{run_id}|{step}|{attempt}", kind.word())
}

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// Dispatch the next attempt after a backoff.
    Retry,
    /// Fail a running attempt that outlived its start-to-close timeout.
    Timeout,
    /// Fail a running attempt that stopped beating.
    Heartbeat,
    /// End a sleep step.
    Wake,
    /// End a run that outlived its workflow's `timeout` (step and attempt are empty and 0).
    RunTimeout,
    /// Complete a waiting step with the event delivered to it (or resume a suspended handler).
    Event,
    /// A child run finished: complete the parent's workflow step (the member names the parent).
    ChildDone,
    /// The parent of this run ended: cancel it (step and attempt are empty and 0).
    CancelChild,
    /// A slot of a concurrency pool may be free: hand it to the next waiter (the member's "run" is
    /// the pool; step and attempt are empty and 0).
    SlotWake,
    /// A rate-limited step may start now: dispatch it again.
    RateWake,
    /// Go on with an emitting step's child runs (a backstop; child completions drive it too).
    Emit,
    /// A run slot may be free: start the next queued run (the member's "run" is the pool).
    RunWake,
    /// Fail a dispatched attempt that no worker started within its schedule-to-start timeout.
    ScheduleToStart,
    /// Every element of a fan-out step succeeded: gather their outputs and complete the step.
    Items,
    /// A copy of a running attempt was dropped as a duplicate: if the worker holding it is gone,
    /// send the attempt again.
    Held,
}

impl TimerKind {
    fn word(self) -> &'static str {
        match self {
            TimerKind::Retry => "retry",
            TimerKind::Timeout => "timeout",
            TimerKind::Heartbeat => "heartbeat",
            TimerKind::Wake => "wake",
            TimerKind::RunTimeout => "run-timeout",
            TimerKind::Event => "event",
            TimerKind::ChildDone => "child-done",
            TimerKind::CancelChild => "cancel-child",
            TimerKind::SlotWake => "sem-wake",
            TimerKind::RateWake => "rate-wake",
            TimerKind::Emit => "emit",
            TimerKind::RunWake => "run-wake",
            TimerKind::ScheduleToStart => "schedule-to-start",
            TimerKind::Items => "items",
            TimerKind::Held => "held",
        }
    }

    /// Parses a member back into (kind, run, step, attempt).
    pub fn parse(member: &str) -> Option<(TimerKind, &str, &str, u32)> {
        let mut it = member.splitn(4, '|');
        let kind = match it.next()? {
            "retry" => TimerKind::Retry,
            "timeout" => TimerKind::Timeout,
            "heartbeat" => TimerKind::Heartbeat,
            "wake" => TimerKind::Wake,
            "run-timeout" => TimerKind::RunTimeout,
            "event" => TimerKind::Event,
            "child-done" => TimerKind::ChildDone,
            "cancel-child" => TimerKind::CancelChild,
            "sem-wake" => TimerKind::SlotWake,
            "rate-wake" => TimerKind::RateWake,
            "emit" => TimerKind::Emit,
            "run-wake" => TimerKind::RunWake,
            "schedule-to-start" => TimerKind::ScheduleToStart,
            "items" => TimerKind::Items,
            "held" => TimerKind::Held,
            _ => return None,
        };
        let run = it.next()?;
        let step = it.next()?;
        let attempt = it.next()?.parse().ok()?;
        Some((kind, run, step, attempt))
    }
}

/// Parses an outbox member back into (run, step).
pub fn parse_outbox_member(member: &str) -> Option<(&str, &str)> {
    member.split_once('|')
}

#[cfg(test)]
mod tests {
    #[test]
    fn replicas_online_counts_the_online_replicas_of_info_replication() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
                    slave0:ip=127.0.0.1,port=7001,state=online,offset=10,lag=0\r\n\
                    slave1:ip=127.0.0.1,port=7002,state=wait_bgsave,offset=0,lag=0\r\nmaster_repl_offset:10\r\n";
        assert_eq!(super::replicas_online(info), 1);
        assert_eq!(
            super::replicas_online("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"),
            0
        );
    }

    #[test]
    fn a_commit_fewer_replicas_acknowledged_is_unavailable_naming_durability() {
        let r = super::Replicated {
            replicas: 2,
            timeout: std::time::Duration::from_millis(300),
        };
        assert!(r.check("complete_step", 2).is_ok());
        let e = r.check("complete_step", 1).unwrap_err();
        assert!(matches!(e, crate::error::CoordinatorError::Unavailable(_)), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("durability") && text.contains("1 of the 2"), "{text}");
        assert_eq!(
            super::Replicated {
                replicas: 1,
                timeout: std::time::Duration::ZERO
            }
            .timeout_ms(),
            1
        );
    }

    use super::*;

    #[test]
    fn the_common_prelude_has_its_bounds_put_in() {
        let code = common_prelude();
        assert!(!code.contains("__"), "a placeholder is left in common.lua");
        assert!(code.contains(&format!(
            "local KEPT_ATTEMPTS = {}\n",
            baton_shared::limits::KEPT_ATTEMPTS
        )));
    }

    #[test]
    fn an_unknown_reply_tag_is_an_error_naming_the_script_never_stale() {
        let e = parse_completion("complete_step.lua", vec!["bogus".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("complete_step.lua") && e.contains("bogus"), "{e}");
        assert_eq!(parse_completion("x", vec!["stale".into()]).unwrap(), Completion::Stale);
        assert!(
            parse_completion("x", vec!["retry".into()]).is_err(),
            "a retry without its attempt"
        );
        assert!(parse_completion("x", Vec::new()).is_err());
        assert!(disposition("heartbeat.lua", &["held".to_string()]).is_err());
        assert_eq!(
            disposition("heartbeat.lua", &["stale".into()]).unwrap(),
            Disposition::Stale
        );
        assert!(dispatch_reply("resume.lua", vec!["nope".into()]).is_err());
        assert_eq!(dispatch_reply("resume.lua", vec!["stale".into()]).unwrap(), None);
        assert!(matches!(
            create_outcome(&["maybe".to_string()], "w", 2),
            Err(CoordinatorError::Internal(_))
        ));
        let gone = create_outcome(&["no_version".to_string()], "w", 2).unwrap_err();
        assert!(
            matches!(&gone, CoordinatorError::NotFound(m) if m.starts_with("version:") && m.contains("no version 2")),
            "{gone}"
        );
    }

    #[test]
    fn a_queued_plan_numbers_its_keys_after_the_scripts_own() {
        let keys = Keys::new("ns");
        let mut plan = QueuedPlan::default();
        plan.add(&keys, "b", "echo", Some(Duration::from_secs(2)));
        plan.add(&keys, "c", "echo", None);
        plan.add(&keys, "d", "other", None);
        assert_eq!(plan.keys, [keys.queued("echo"), keys.queued("other")]);
        assert_eq!(
            plan.json(RUN_KEYS + 1),
            r#"{"b":{"key":7,"s2s_ms":2000},"c":{"key":7,"s2s_ms":0},"d":{"key":8,"s2s_ms":0}}"#
        );
        assert!(plan.contains("b") && !plan.contains("e"));
        assert_eq!(QueuedPlan::default().json(RUN_KEYS + 1), "{}");
    }

    /// The expressions of `text` separated by commas outside brackets and quotes.
    fn top_level_parts(text: &str) -> Vec<String> {
        let (mut parts, mut cur, mut depth, mut quote) = (Vec::new(), String::new(), 0i32, None);
        for ch in text.chars() {
            match (quote, ch) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(ch),
                (None, '(' | '[' | '{') => depth += 1,
                (None, ')' | ']' | '}') => {
                    depth -= 1;
                    if depth < 0 {
                        break;
                    }
                }
                (None, ',') if depth == 0 => {
                    parts.push(std::mem::take(&mut cur).trim().to_string());
                    continue;
                }
                _ => {}
            }
            cur.push(ch);
        }
        parts.push(cur.trim().to_string());
        parts
    }

    /// The variables `src` assigns from `KEYS[...]` (`local a, b = KEYS[1], KEYS[2]`, or without
    /// `local`, as common.lua's `begin` sets its per-call locals).
    fn key_locals(src: &str) -> std::collections::HashSet<String> {
        let mut names = std::collections::HashSet::new();
        for line in src.lines() {
            let line = line.trim_start();
            let rest = line.strip_prefix("local ").unwrap_or(line);
            let Some((lhs, rhs)) = rest.split_once('=') else {
                continue;
            };
            if rhs.starts_with('=')
                || !lhs
                    .split(',')
                    .all(|n| !n.trim().is_empty() && n.trim().chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            {
                continue;
            }
            for (name, expr) in lhs.split(',').zip(top_level_parts(rhs)) {
                if expr.starts_with("KEYS[") {
                    names.insert(name.trim().to_string());
                }
            }
        }
        names
    }

    /// (line, command, first argument) of every `redis.call`/`redis.pcall` in `src`.
    fn key_arguments(src: &str) -> Vec<(usize, String, String)> {
        let mut out = Vec::new();
        for needle in ["redis.call(", "redis.pcall("] {
            for (at, _) in src.match_indices(needle) {
                let rest = &src[at + needle.len()..];
                let parts = top_level_parts(rest);
                let line = src[..at].lines().count().max(1);
                let command = parts.first().cloned().unwrap_or_default();
                out.push((line, command, parts.get(1).cloned().unwrap_or_default()));
            }
        }
        out
    }

    #[test]
    fn no_script_builds_a_key_every_key_is_declared_in_keys() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/scripts");
        let common = std::fs::read_to_string(format!("{dir}/common.lua")).unwrap();
        let mut bad = Vec::new();
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.ends_with(".lua") {
                continue;
            }
            seen += 1;
            let src = std::fs::read_to_string(&path).unwrap();
            let mut declared = key_locals(&src);
            declared.extend(key_locals(&common));
            assert!(!src.contains("PREFIX"), "{name} derives a prefix");
            for (line, command, key) in key_arguments(&src) {
                let ok = key.starts_with("KEYS[") || declared.contains(&key);
                if !ok || key.contains("..") {
                    bad.push(format!("{name}:{line}: redis.call({command}, {key}, ...)"));
                }
            }
        }
        assert!(seen >= 20, "found only {seen} scripts in {dir}");
        assert!(
            bad.is_empty(),
            "keys built inside Lua instead of declared in KEYS:\n{}",
            bad.join("\n")
        );
        // The check itself finds a built key.
        let built = "local steps = ARGV[1] .. ':{' .. run .. '}:steps'\nredis.call('HGET', steps, 'x')";
        let found = key_arguments(built);
        assert_eq!(found.len(), 1);
        assert!(!key_locals(built).contains(&found[0].2));
    }

    #[test]
    fn the_run_scripts_are_one_function_library_and_the_same_code_as_scripts() {
        let scripts = Scripts::new();
        let lib = &scripts.library;
        assert!(
            lib.name.starts_with("baton_") && lib.name.len() == "baton_".len() + 12,
            "{}",
            lib.name
        );
        assert!(lib.code.starts_with(&format!("#!lua name={}\n", lib.name)));
        let mut functions = std::collections::HashSet::new();
        for s in scripts.run_scripts() {
            assert_eq!(s.function, format!("{}_{}", lib.name, s.name));
            assert!(
                lib.code
                    .contains(&format!("redis.register_function('{}', ", s.function)),
                "{} is not registered",
                s.function
            );
            functions.insert(s.name);
            // Its body, as the script form has it, is in the library.
            let body = RUN_SCRIPTS.iter().find(|(n, _)| *n == s.name).map(|(_, b)| *b).unwrap();
            assert!(!body.is_empty() && lib.code.contains(body), "{}", s.name);
        }
        assert_eq!(functions.len(), RUN_SCRIPTS.len());
        assert_eq!(lib.code.matches("redis.register_function(").count(), RUN_SCRIPTS.len());
        // Redis 7.0 runs a library's top level with only `redis` and basic Lua: common.lua's own
        // top level calls no global function (every call is inside a function).
        let mut depth = 0i32;
        for line in common_prelude().lines() {
            let code = line.split("--").next().unwrap_or("").trim();
            if depth == 0 && code.starts_with("local ") && !code.starts_with("local function") {
                assert!(!code.contains('('), "common.lua calls a function at load time: {line}");
            }
            if code.starts_with("local function") || code.starts_with("function") {
                depth += 1;
            } else if code == "end" && line.starts_with("end") {
                depth -= 1;
            }
        }
        // A new text is a new library: coordinators of two versions on one Redis each call their own.
        let other = RunLibrary::new("-- another common.lua");
        assert_ne!(other.name, lib.name);
    }

    #[test]
    fn effects_read_what_the_scripts_write_and_refuse_anything_else() {
        let e = Effect::parse(r#"{"kind":"release_slot","pool":"wf\/s","member":"r|s|2"}"#).unwrap();
        assert_eq!(
            e,
            Effect::ReleaseSlot {
                pool: "wf/s".into(),
                member: "r|s|2".into()
            }
        );
        assert_eq!(e.released_pool(), Some("wf/s"));
        assert_eq!(
            Effect::parse(r#"{"kind":"lease_slot","pool":"p","member":"r|s|1","until":1700000000000}"#).unwrap(),
            Effect::LeaseSlot {
                pool: "p".into(),
                member: "r|s|1".into(),
                until: 1_700_000_000_000
            }
        );
        assert_eq!(
            Effect::parse(r#"{"kind":"emit_done","parent_run":"p","parent_step":"e","run":"c","succeeded":false}"#)
                .unwrap(),
            Effect::EmitDone {
                parent_run: "p".into(),
                parent_step: "e".into(),
                run: "c".into(),
                succeeded: false
            }
        );
        let run_slot = Effect::parse(r#"{"kind":"release_run_slot","pool":"wf/run","run":"r"}"#).unwrap();
        assert_eq!(run_slot.released_pool(), None);
        for bad in [
            r#"{"kind":"launch","pool":"p"}"#,
            "r|s",
            r#"{"kind":"release_slot","pool":"p"}"#,
        ] {
            let e = Effect::parse(bad).unwrap_err().to_string();
            assert!(e.contains("not an effect"), "{e}");
        }
    }

    #[test]
    fn a_report_no_longer_carries_the_graph() {
        // A 10-step chain with a join: what each report sent before (the step's children and the
        // leaves) is stored once per run instead.
        let mut yaml = String::from("name: g\nversion: 1\nsteps:\n  - {id: s0, handler: echo}\n");
        for i in 1..10 {
            yaml.push_str(&format!("  - {{id: s{i}, handler: echo, depends_on: [s{}]}}\n", i - 1));
        }
        yaml.push_str("  - {id: join, handler: echo, depends_on: [s9, s0]}\n");
        let def = WorkflowDefinition::parse(&yaml).unwrap();
        let graph = RunGraph::of(&def);
        assert_eq!(graph.leaves, "join");
        assert_eq!(graph.children["s0"], crate::machine::children_spec(&def, "s0"));
        assert!(!graph.children.contains_key("join"), "a leaf has no children entry");
        assert_eq!(graph.reads["join"], "s9,s0");
        assert!(!graph.reads.contains_key("s0"), "a root reads nothing");
        let pinned = crate::machine::pinned(&def);
        let plan = QueuedPlan::default();
        let now = CompleteStepJson {
            step: "s0",
            attempt: 1,
            who: "worker-1",
            by: ReporterPath::Worker,
            outcome: StepOutcome::Ok,
            retry_at: 0,
            heartbeat_timeout_ms: 0,
            pinned: &pinned,
            queued: plan.entries(RUN_KEYS + 1),
            graph: None,
            error_type: "",
            error_details: "",
        };
        let json = serde_json::to_string(&now).unwrap();
        // Only the step, and no field the script reads as absent.
        assert_eq!(
            json,
            r#"{"step":"s0","attempt":1,"who":"worker-1","by":"worker","outcome":"ok","pinned":"g@1"}"#
        );
    }

    #[test]
    fn the_archive_index_joins_the_named_arguments() {
        let a = with_archive_index(r#"{"step":"s","attempt":2}"#, 9).unwrap();
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v["archive"], 9);
        assert_eq!(v["step"], "s");
        assert_eq!(v["attempt"], 2);
        let v: serde_json::Value = serde_json::from_str(&with_archive_index("{}", 7).unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"archive": 7}));
        assert!(with_archive_index("[1]", 7).is_err());
    }

    #[test]
    fn the_running_order_leaves_out_kept_elements() {
        assert_eq!(running_order(3, &[]), "");
        assert_eq!(running_order(4, &[0, 2]), "000001000003");
        assert!(baton_shared::definition::MAX_FAN_OUT < 10usize.pow(ORDER_WIDTH as u32));
    }

    #[test]
    fn members_round_trip() {
        let m = timer_member(TimerKind::Heartbeat, "r-1", "step_a", 3);
        assert_eq!(TimerKind::parse(&m), Some((TimerKind::Heartbeat, "r-1", "step_a", 3)));
        assert_eq!(parse_outbox_member(&outbox_member("r", "s")), Some(("r", "s")));
        assert_eq!(TimerKind::parse("bogus|r|s|1"), None);
        // start_step.lua builds this member itself.
        assert_eq!(TimerKind::parse("held|r|s#2|7"), Some((TimerKind::Held, "r", "s#2", 7)));
    }
}
