//! The Redis adapter: run state, durable timers, the dispatch outbox, run indexes and the workflow
//! registry. Every change of one run's state is one Lua script (`scripts/*.lua`) over that run's keys;
//! global indexes are written with plain commands pipelined *before* the script, so a crash between
//! the two leaves at worst an index entry that points at nothing (timers and outbox entries are fenced
//! by attempt and found harmless when they fire; run index entries are dropped lazily by listings).

use std::{collections::HashMap, sync::Arc, time::Duration};

use baton_shared::keys::{Keys, run_index_member};
use redis::{AsyncCommands, Pipeline, aio::ConnectionManager};

use crate::error::{CoordinatorError, Result};

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

/// A run script: the common prelude plus its own body, and its SHA1 for `EVALSHA`.
struct RunScript {
    script: redis::Script,
    /// The script's name in metrics (`baton_redis_script_duration_seconds{script}`).
    name: &'static str,
}

impl RunScript {
    fn new(name: &'static str, body: &str) -> Self {
        let code = format!("{}\n{}", common_prelude(), body);
        Self {
            script: redis::Script::new(&code),
            name,
        }
    }
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
    publish_event: redis::Script,
    acquire: redis::Script,
    wake: redis::Script,
    wake_runs: redis::Script,
    rate: redis::Script,
    claim: redis::Script,
    release: redis::Script,
    expedite: redis::Script,
    renew: redis::Script,
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
}

/// `start_step.lua`'s one JSON argument (ARGV[5]): [`StartArgs`] by name.
#[derive(serde::Serialize)]
struct StartStepJson<'a> {
    step: &'a str,
    attempt: u32,
    worker: &'a str,
    pinned: &'a str,
    slot_lease_ms: u64,
    timeout_due: i64,
    heartbeat_due: i64,
    holder: &'a str,
    recheck_ms: u64,
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
    /// `workflow` (a workflow step: the child's end completes the step) or `emit` (an emitting step:
    /// the child's end is counted).
    pub kind: &'a str,
    /// The child's depth: sub-workflow levels below its root run (a root run is 0), at most
    /// `baton_shared::limits::MAX_WORKFLOW_DEPTH`.
    pub depth: u32,
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
/// `Internal` naming the script for an unknown tag (never read as "exists").
fn create_outcome(out: &[String]) -> Result<CreateOutcome> {
    match out.first().map(String::as_str) {
        Some("created") => Ok(CreateOutcome::Created),
        Some("queued") => Ok(CreateOutcome::Queued),
        Some("exists") => Ok(CreateOutcome::Exists(out.get(1).cloned().unwrap_or_default())),
        other => Err(CoordinatorError::Internal(format!("create_run.lua answered {other:?}"))),
    }
}

/// How `dispatch_attempt.lua` dispatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// `event` (a wait_for_event step), `suspend` (a handler suspended itself), `human`, `child`
    /// (a workflow step's child run) or `sleep` (a sleep or sleep_until step; `timeout_at` is then
    /// its wake time), as `wait.lua` reads them.
    pub mode: &'a str,
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
    keys: Keys,
    scripts: std::sync::Arc<Scripts>,
    events_max_len: u64,
    retention: Duration,
    dispatch_grace: Duration,
    /// How far ahead of a commit a new outbox entry comes due (see [`Store::with_outbox_hold`]).
    outbox_hold: Duration,
    max_payload_bytes: usize,
    /// The step ids of runs read lately (a run's `step_ids`, fixed when it is created), so that
    /// [`Store::read_run`] reads the run and its steps in one round trip after the first time.
    step_ids: moka::sync::Cache<String, std::sync::Arc<str>>,
}

/// Most bytes the [`Store::read_run`] cache of step ids holds (1 MiB), counting each entry's run
/// id and step ids plus [`STEP_IDS_ENTRY_BYTES`]: at most 4,096 runs. Only runs read again soon
/// (polled) profit from it.
const STEP_IDS_CACHE_BYTES: u64 = 1 << 20;
/// What one entry of that cache costs besides its text (the cache's own bookkeeping, estimated).
const STEP_IDS_ENTRY_BYTES: usize = 256;
/// How long a run's step ids stay cached without being read.
const STEP_IDS_CACHE_IDLE: Duration = Duration::from_secs(30);

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

fn strings(v: Vec<redis::Value>) -> Result<Vec<String>> {
    let last = v
        .into_iter()
        .last()
        .ok_or_else(|| CoordinatorError::Internal("empty answer from Redis".into()))?;
    redis::from_redis_value(last)
        .map_err(|e| CoordinatorError::Internal(format!("unexpected answer from a script: {e}")))
}

impl Store {
    /// Connects to `url` (`redis://host:port/db`).
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
        let client = redis::Client::open(url)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(3);
        let conn = client.get_connection_manager_with_config(cfg).await?;
        let scripts = Scripts {
            create_run: RunScript::new("create_run", include_str!("scripts/create_run.lua")),
            start_step: RunScript::new("start_step", include_str!("scripts/start_step.lua")),
            heartbeat: RunScript::new("heartbeat", include_str!("scripts/heartbeat.lua")),
            complete_step: RunScript::new("complete_step", include_str!("scripts/complete_step.lua")),
            dispatch_attempt: RunScript::new("dispatch_attempt", include_str!("scripts/dispatch_attempt.lua")),
            cancel_run: RunScript::new("cancel_run", include_str!("scripts/cancel_run.lua")),
            reset_steps: RunScript::new("reset_steps", include_str!("scripts/reset_steps.lua")),
            emit_event: RunScript::new("emit_event", include_str!("scripts/emit_event.lua")),
            start_items: RunScript::new("start_items", include_str!("scripts/start_items.lua")),
            stage_items: RunScript::new("stage_items", include_str!("scripts/stage_items.lua")),
            wait: RunScript::new("wait", include_str!("scripts/wait.lua")),
            resume: RunScript::new("resume", include_str!("scripts/resume.lua")),
            park: RunScript::new("park", include_str!("scripts/park.lua")),
            take_over: RunScript::new("take_over", include_str!("scripts/take_over.lua")),
            publish_event: redis::Script::new(include_str!("scripts/publish_event.lua")),
            acquire: redis::Script::new(include_str!("scripts/acquire.lua")),
            wake: redis::Script::new(include_str!("scripts/wake.lua")),
            wake_runs: redis::Script::new(include_str!("scripts/wake_runs.lua")),
            rate: redis::Script::new(include_str!("scripts/rate.lua")),
            claim: redis::Script::new(include_str!("scripts/claim.lua")),
            release: redis::Script::new(include_str!("scripts/release.lua")),
            expedite: redis::Script::new(include_str!("scripts/expedite.lua")),
            renew: redis::Script::new(include_str!("scripts/renew.lua")),
        };
        let store = Self {
            conn,
            client,
            keys,
            scripts: std::sync::Arc::new(scripts),
            events_max_len,
            retention,
            dispatch_grace,
            outbox_hold: dispatch_grace,
            max_payload_bytes: usize::MAX,
            step_ids: moka::sync::Cache::builder()
                .max_capacity(STEP_IDS_CACHE_BYTES)
                .weigher(|run: &String, ids: &std::sync::Arc<str>| {
                    u32::try_from(run.len().saturating_add(ids.len()).saturating_add(STEP_IDS_ENTRY_BYTES))
                        .unwrap_or(u32::MAX)
                })
                .time_to_idle(STEP_IDS_CACHE_IDLE)
                .build(),
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

    /// A clone of the shared multiplexed connection.
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    async fn load_scripts(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let s = &self.scripts;
        for script in [
            &s.create_run,
            &s.start_step,
            &s.heartbeat,
            &s.complete_step,
            &s.dispatch_attempt,
            &s.cancel_run,
            &s.reset_steps,
            &s.emit_event,
            &s.start_items,
            &s.stage_items,
            &s.wait,
            &s.resume,
            &s.park,
            &s.take_over,
        ] {
            script.script.prepare_invoke().load_async(&mut conn).await?;
        }
        for script in [
            &s.claim,
            &s.release,
            &s.expedite,
            &s.renew,
            &s.publish_event,
            &s.acquire,
            &s.wake,
            &s.wake_runs,
            &s.rate,
        ] {
            script.prepare_invoke().load_async(&mut conn).await?;
        }
        Ok(())
    }

    /// Runs `prelude` (plain commands on global keys) and then `script` on the run's keys, in one
    /// pipeline: one round trip. Reloads the scripts once if Redis lost them (a restart).
    async fn eval_run(
        &self,
        prelude: Pipeline,
        script: &RunScript,
        call: &RunCall<'_>,
        args: &[String],
    ) -> Result<Vec<String>> {
        self.eval_run_with(prelude, script, call, &[], args).await
    }

    /// As `eval_run`, with keys after the five every run script gets.
    async fn eval_run_with(
        &self,
        prelude: Pipeline,
        script: &RunScript,
        call: &RunCall<'_>,
        extra_keys: &[String],
        args: &[String],
    ) -> Result<Vec<String>> {
        let k = &self.keys;
        for tried in 0..2 {
            let mut pipe = prelude.clone();
            pipe.cmd("EVALSHA")
                .arg(script.script.get_hash())
                .arg(5 + extra_keys.len())
                .arg(k.run(call.run_id))
                .arg(k.steps(call.run_id))
                .arg(k.events(call.run_id))
                .arg(k.timers())
                .arg(k.outbox())
                .arg(extra_keys)
                .arg(call.now)
                .arg(self.events_max_len)
                .arg(self.retention.as_secs().max(1))
                .arg(self.outbox_hold.as_millis() as u64)
                .arg(args);
            let mut conn = self.conn.clone();
            match crate::metrics::script(script.name, pipe.query_async::<Vec<redis::Value>>(&mut conn)).await {
                Ok(v) => return strings(v),
                Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) && tried == 0 => {
                    self.load_scripts().await?
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoordinatorError::Internal("Redis keeps losing Baton's scripts".into()))
    }

    /// Creates a run with its root steps dispatched (or, without a free run slot, queued for one),
    /// after writing its index entries; the roots in `queued` that were dispatched join their
    /// handler's queued index, with their schedule-to-start timers, in the same commit
    /// (`QueuedPlan::default()` for none).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Internal` for a reply the script does not give.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_run(
        &self,
        call: &RunCall<'_>,
        workflow: &str,
        version: u32,
        input_json: &str,
        idempotency_key: &str,
        step_ids: &str,
        roots: &[&str],
        run_slot: Option<&RunSlot>,
        timers: &[(String, i64)],
        parent: Option<&ParentRef<'_>>,
        queued: &QueuedPlan,
    ) -> Result<CreateOutcome> {
        let mut pre = redis::pipe();
        for (member, due) in timers {
            pre.zadd(self.keys.timers(), member, *due).ignore();
        }
        let member = run_index_member(call.now, call.run_id);
        // With an idempotency key the run may exist already: its index entries were made the first time.
        if idempotency_key.is_empty() {
            pre.zadd(self.keys.runs_index(), &member, 0).ignore();
            pre.zadd(self.keys.workflow_runs_index(workflow), &member, 0).ignore();
        }
        let args = [
            call.run_id.to_string(),
            workflow.to_string(),
            version.to_string(),
            input_json.to_string(),
            idempotency_key.to_string(),
            step_ids.to_string(),
            roots.join(","),
            parent.map(|p| p.run.to_string()).unwrap_or_default(),
            parent.map(|p| p.step.to_string()).unwrap_or_default(),
            parent.map(|p| p.attempt.to_string()).unwrap_or_default(),
            parent.map(|p| p.kind.to_string()).unwrap_or_default(),
            run_slot.map(|s| s.pool.clone()).unwrap_or_default(),
            run_slot.map(|s| s.limit.to_string()).unwrap_or_default(),
            run_slot.map(RunSlot::detail).unwrap_or_default(),
            parent.map(|p| p.depth).unwrap_or(0).to_string(),
            queued.json(6),
        ];
        let out = self
            .eval_run_with(pre, &self.scripts.create_run, call, &queued.keys, &args)
            .await?;
        let outcome = create_outcome(&out)?;
        if !matches!(outcome, CreateOutcome::Exists(_)) && !idempotency_key.is_empty() {
            let mut conn = self.conn.clone();
            let _: () = redis::pipe()
                .zadd(self.keys.runs_index(), &member, 0)
                .ignore()
                .zadd(self.keys.workflow_runs_index(workflow), &member, 0)
                .ignore()
                .query_async(&mut conn)
                .await?;
        }
        Ok(outcome)
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
        })
        .map_err(|e| CoordinatorError::Internal(format!("start_step.lua: arguments: {e}")))?;
        let out = self
            .eval_run_with(redis::pipe(), &self.scripts.start_step, call, &keys, &[json])
            .await?;
        let mut it = out.into_iter();
        Ok(match it.next().as_deref() {
            Some("held") => {
                Started::Held(it.next().ok_or_else(|| {
                    CoordinatorError::Internal("start_step.lua answered 'held' without a holder".into())
                })?)
            }
            Some("proceed") => Started::Answer(Disposition::Proceed),
            Some("stale") => Started::Answer(Disposition::Stale),
            Some("cancelled") => Started::Answer(Disposition::Cancelled),
            Some("duplicate") => Started::Answer(Disposition::Duplicate),
            other => {
                return Err(CoordinatorError::Internal(format!("start_step.lua answered {other:?}")));
            }
        })
    }

    /// Sends attempt `attempt` of `step` again if `holder`, which started it, is gone (see
    /// `take_over.lua`).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Internal` for a malformed reply.
    pub async fn take_over(
        &self,
        call: &RunCall<'_>,
        step: &str,
        attempt: u32,
        holder: &str,
        reads: &str,
    ) -> Result<TakeOver> {
        let keys = [self.keys.worker_alive(holder)];
        let args = [
            step.to_string(),
            attempt.to_string(),
            holder.to_string(),
            reads.to_string(),
        ];
        let out = self
            .eval_run_with(redis::pipe(), &self.scripts.take_over, call, &keys, &args)
            .await?;
        let mut it = out.into_iter();
        Ok(match it.next().as_deref() {
            Some("alive") => TakeOver::Alive(
                it.next()
                    .and_then(|s| s.parse::<i64>().ok())
                    .and_then(|ms| u64::try_from(ms).ok()),
            ),
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
        let out = self
            .eval_run(
                redis::pipe(),
                &self.scripts.heartbeat,
                call,
                &[step.into(), attempt.to_string(), worker.into()],
            )
            .await?;
        disposition("heartbeat.lua", &out)
    }

    /// Applies the outcome of an attempt (see `complete_step.lua`), after the pipelined global
    /// writes in `pre` (one round trip). A worker's report ([`Reporter::Worker`]) also disarms the
    /// attempt's timeout and heartbeat timers, and a retry (`retry_at > 0`) arms its `retry` timer,
    /// in the script. Children it dispatches are not indexed as queued: see
    /// [`Store::complete_step_queued`].
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Internal` for a reply the script does not give.
    pub async fn complete_step(
        &self,
        pre: Pipeline,
        call: &RunCall<'_>,
        args: &CompleteArgs<'_>,
    ) -> Result<Completion> {
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
        pre: Pipeline,
        call: &RunCall<'_>,
        args: &CompleteArgs<'_>,
        plan: &QueuedPlan,
    ) -> Result<Completion> {
        let (who, by) = match args.by {
            Reporter::Worker(w) => (w, ReporterPath::Worker),
            Reporter::Human(user) => (user, ReporterPath::Human),
            Reporter::Coordinator(source) => (source, ReporterPath::Coordinator),
        };
        let outcome = StepOutcome::from_word(args.outcome)
            .ok_or_else(|| CoordinatorError::Internal(format!("complete_step.lua: no outcome {:?}", args.outcome)))?;
        let json = serde_json::to_string(&CompleteStepJson {
            step: args.step,
            attempt: args.attempt,
            who,
            by,
            outcome,
            retry_at: args.retry_at,
            heartbeat_timeout_ms: args.heartbeat_timeout_ms,
            children: args.children,
            leaves: args.leaves,
            pinned: args.pinned,
            disarm: by == ReporterPath::Worker,
            queued: plan.entries(6),
        })
        .map_err(|e| CoordinatorError::Internal(format!("complete_step.lua: arguments: {e}")))?;
        let a = [json, args.body.to_string()];
        let out = self
            .eval_run_with(pre, &self.scripts.complete_step, call, &plan.keys, &a)
            .await?;
        let completion = parse_completion("complete_step.lua", out)?;
        if let Some(status) = crate::metrics::finished_status(&completion) {
            let workflow = args.pinned.rsplit_once('@').map_or(args.pinned, |(w, _)| w);
            crate::metrics::observe_finish(self, workflow, status, call.run_id, call.now);
        }
        Ok(completion)
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
        let mut a = Vec::with_capacity(inputs.len() + 3);
        a.extend([step.to_string(), attempt.to_string(), first.to_string()]);
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

    /// Starts a fan-out step over its `total` elements, whose inputs [`Store::stage_items`]
    /// stored (see `start_items.lua`): dispatches the first of them (at most [`ITEM_BATCH`] and
    /// `max_parallel`), leaving out the `kept` ones (`kept` lists their indexes, ascending).
    /// Answers like [`Store::complete_step`]: `Succeeded` with the elements dispatched (or, for
    /// no elements, the step's children), or `Stale`.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    #[allow(clippy::too_many_arguments)]
    pub async fn start_items(
        &self,
        call: &RunCall<'_>,
        step: &str,
        attempt: u32,
        max_parallel: u32,
        children: &str,
        leaves: &str,
        total: usize,
        kept: &[usize],
    ) -> Result<Completion> {
        let a = [
            step.to_string(),
            attempt.to_string(),
            max_parallel.to_string(),
            children.to_string(),
            leaves.to_string(),
            total.to_string(),
            kept.len().to_string(),
            running_order(total, kept),
        ];
        let out = self
            .eval_run(redis::pipe(), &self.scripts.start_items, call, &a)
            .await?;
        parse_completion("start_items.lua", out)
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
    pub async fn wait(&self, pre: Pipeline, call: &RunCall<'_>, w: &WaitArgs<'_>) -> Result<WaitOutcome> {
        let (keys, identity) = match w.event {
            Some((name, key)) => (
                vec![self.keys.event_waiters(name, key), self.keys.event_buffer(name, key)],
                baton_shared::keys::event_identity(name, key),
            ),
            None => (Vec::new(), w.child_run.to_string()),
        };
        let a = [
            w.step.to_string(),
            w.attempt.to_string(),
            w.mode.to_string(),
            w.detail.to_string(),
            identity,
            w.timeout_at.to_string(),
            w.worker.to_string(),
        ];
        let out = self.eval_run_with(pre, &self.scripts.wait, call, &keys, &a).await?;
        match out.first().map(String::as_str) {
            Some("waiting") => Ok(WaitOutcome::Waiting),
            Some("delivered") => Ok(WaitOutcome::Delivered),
            Some("stale") => Ok(WaitOutcome::Stale),
            other => Err(CoordinatorError::Internal(format!("wait.lua answered {other:?}"))),
        }
    }

    /// Dispatches a suspended step again with the event delivered to it (see `resume.lua`).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn resume(
        &self,
        call: &RunCall<'_>,
        step: &str,
        attempt: u32,
        reads: &str,
    ) -> Result<Option<DispatchPayload>> {
        let out = self
            .eval_run(
                redis::pipe(),
                &self.scripts.resume,
                call,
                &[step.into(), attempt.to_string(), reads.into()],
            )
            .await?;
        dispatch_reply("resume.lua", out)
    }

    /// Delivers an event to the steps waiting for (name, key), or buffers it for `ttl` (at most
    /// `max_buffered` per name and key). Returns the (run, step) pairs it was delivered to; empty
    /// when it was buffered.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn publish_event(
        &self,
        name: &str,
        key: &str,
        payload: &str,
        ttl: Duration,
        max_buffered: usize,
        now: i64,
    ) -> Result<Vec<(String, String)>> {
        let mut conn = self.conn.clone();
        let timed = tokio::time::Instant::now();
        let out: Vec<String> = self
            .scripts
            .publish_event
            .key(self.keys.event_waiters(name, key))
            .key(self.keys.event_buffer(name, key))
            .key(self.keys.timers())
            .key(self.keys.event_buffers())
            .arg(self.keys.prefix())
            .arg(now)
            .arg(payload)
            .arg(ttl.as_secs().max(1))
            .arg(max_buffered.max(1))
            .arg(baton_shared::keys::event_identity(name, key))
            .arg(baton_shared::keys::buffered_member(name, key))
            .invoke_async(&mut conn)
            .await?;
        crate::metrics::redis_script("publish_event", timed.elapsed());
        Ok(out
            .get(1..)
            .unwrap_or_default()
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect())
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

    /// Creates many runs of one workflow in one round trip (an emitting step's children): each is
    /// created whole with its roots dispatched, or found existing. Returns, per run, `None` when
    /// created or `Some(status)` when it existed. Index entries are written for the created ones.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    #[allow(clippy::too_many_arguments)]
    pub async fn create_runs(
        &self,
        runs: &[NewRun],
        workflow: &str,
        version: u32,
        step_ids: &str,
        roots: &[&str],
        timeout: Option<Duration>,
        parent: &ParentRef<'_>,
        run_limit: u32,
        now: i64,
    ) -> Result<Vec<CreateOutcome>> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let k = &self.keys;
        let build = || {
            let mut pipe = redis::pipe();
            for r in runs {
                if let Some(t) = timeout {
                    pipe.zadd(
                        k.timers(),
                        format!("run-timeout|{}||0", r.run_id),
                        crate::machine::due(now, t),
                    )
                    .ignore();
                }
                pipe.cmd("EVALSHA")
                    .arg(self.scripts.create_run.script.get_hash())
                    .arg(5)
                    .arg(k.run(&r.run_id))
                    .arg(k.steps(&r.run_id))
                    .arg(k.events(&r.run_id))
                    .arg(k.timers())
                    .arg(k.outbox())
                    .arg(now)
                    .arg(self.events_max_len)
                    .arg(self.retention.as_secs().max(1))
                    .arg(self.outbox_hold.as_millis() as u64)
                    .arg(&r.run_id)
                    .arg(workflow)
                    .arg(version)
                    .arg(&r.input_json)
                    .arg("")
                    .arg(step_ids)
                    .arg(roots.join(","))
                    .arg(parent.run)
                    .arg(parent.step)
                    .arg(parent.attempt)
                    .arg(parent.kind);
                match &r.run_slot {
                    Some(pool) => {
                        let slot = RunSlot {
                            pool: pool.clone(),
                            limit: run_limit,
                        };
                        pipe.arg(pool).arg(run_limit).arg(slot.detail());
                    }
                    None => {
                        pipe.arg("").arg("").arg("");
                    }
                }
                pipe.arg(parent.depth);
            }
            pipe
        };
        let mut conn = self.conn.clone();
        let answers: Vec<Vec<String>> = match build().query_async(&mut conn).await {
            Ok(v) => v,
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.load_scripts().await?;
                build().query_async(&mut conn).await?
            }
            Err(e) => return Err(e.into()),
        };
        let mut index = redis::pipe();
        let mut created = 0;
        let mut out = Vec::with_capacity(runs.len());
        for (r, a) in runs.iter().zip(answers) {
            let outcome = create_outcome(&a)?;
            if !matches!(outcome, CreateOutcome::Exists(_)) {
                let member = run_index_member(now, &r.run_id);
                index.zadd(k.runs_index(), &member, 0).ignore();
                index.zadd(k.workflow_runs_index(workflow), &member, 0).ignore();
                created += 1;
            }
            out.push(outcome);
        }
        if created > 0 {
            let _: () = index.query_async(&mut conn).await?;
        }
        Ok(out)
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

    /// Asks for a slot of concurrency pool `pool` (at most `limit` holders) for an attempt; see
    /// `acquire.lua`. `lease_until` (Unix ms) bounds the slot if the attempt never ends.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    #[allow(clippy::too_many_arguments)]
    pub async fn acquire(
        &self,
        pool: &str,
        limit: u32,
        run_id: &str,
        step: &str,
        attempt: u32,
        lease_until: i64,
        detail: &str,
        now: i64,
    ) -> Result<SlotOutcome> {
        let mut conn = self.conn.clone();
        let timed = tokio::time::Instant::now();
        let out: Vec<String> = self
            .scripts
            .acquire
            .key(self.keys.slot_holders(pool))
            .key(self.keys.slot_waiters(pool))
            .key(self.keys.outbox())
            .key(self.keys.timers())
            .arg(self.keys.prefix())
            .arg(now)
            .arg(limit)
            .arg(run_id)
            .arg(step)
            .arg(attempt)
            .arg(lease_until)
            .arg(pool)
            .arg(detail)
            .arg(self.events_max_len)
            .invoke_async(&mut conn)
            .await?;
        crate::metrics::redis_script("acquire", timed.elapsed());
        Ok(match out.first().map(String::as_str) {
            Some("acquired" | "held") => SlotOutcome::Held,
            Some("queued") => SlotOutcome::Queued,
            _ => SlotOutcome::Stale,
        })
    }

    /// Gives the free run slots of `pool` to the queued runs (see `wake_runs.lua`). Returns the runs
    /// whose roots were dispatched, to publish.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn wake_runs(&self, pool: &str, limit: u32, now: i64) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        Ok(self
            .scripts
            .wake_runs
            .key(self.keys.slot_holders(pool))
            .key(self.keys.slot_waiters(pool))
            .key(self.keys.outbox())
            .key(self.keys.timers())
            .arg(self.keys.prefix())
            .arg(now)
            .arg(limit)
            .arg(self.outbox_hold.as_millis() as u64)
            .arg(self.events_max_len)
            .arg(pool)
            .arg(WAKE_BATCH)
            .invoke_async(&mut conn)
            .await?)
    }

    /// Hands the free slots of `pool` to its waiters (see `wake.lua`). Returns the (run, step,
    /// attempt) now holding a slot and dispatched again, to publish.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn wake(&self, pool: &str, limit: u32, lease_until: i64, now: i64) -> Result<Vec<(String, String, u32)>> {
        let mut conn = self.conn.clone();
        let out: Vec<String> = self
            .scripts
            .wake
            .key(self.keys.slot_holders(pool))
            .key(self.keys.slot_waiters(pool))
            .key(self.keys.outbox())
            .key(self.keys.timers())
            .arg(self.keys.prefix())
            .arg(now)
            .arg(limit)
            .arg(lease_until)
            .arg(self.outbox_hold.as_millis() as u64)
            .arg(self.events_max_len)
            .arg(WAKE_BATCH)
            .arg(pool)
            .invoke_async(&mut conn)
            .await?;
        Ok(out
            .chunks(3)
            .filter(|c| c.len() == 3)
            .map(|c| (c[0].clone(), c[1].clone(), c[2].parse().unwrap_or(0)))
            .collect())
    }

    /// The limit a concurrency pool was last asked for with (see `acquire.lua`), if any.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn slot_limit(&self, pool: &str) -> Result<Option<u32>> {
        let mut conn = self.conn.clone();
        Ok(conn.get(format!("{}:sem:{pool}:limit", self.keys.prefix())).await?)
    }

    /// The slot a step holds or waits for (`None` when it has none).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn step_slot(&self, run_id: &str, step: &str) -> Result<Option<String>> {
        let mut conn = self.conn.clone();
        let pool: Option<String> = conn.hget(self.keys.steps(run_id), format!("{step}:slot")).await?;
        Ok(pool.filter(|p| !p.is_empty()))
    }

    /// The attempts holding slots of `pool` now (`run|step|attempt`), oldest lease first.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn slot_holders(&self, pool: &str, now: i64) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        Ok(conn.zrangebyscore(self.keys.slot_holders(pool), now, "+inf").await?)
    }

    /// Takes one start from rate limit `pool` (`limit` per `period`) for `member`; `Ok(None)` when
    /// taken, `Ok(Some(t))` when the next start frees up at `t` (Unix ms).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn rate_take(
        &self,
        pool: &str,
        limit: u32,
        period: Duration,
        member: &str,
        now: i64,
    ) -> Result<Option<i64>> {
        let mut conn = self.conn.clone();
        let out: Vec<String> = self
            .scripts
            .rate
            .key(self.keys.rate_window(pool))
            .arg(now)
            .arg(crate::machine::span_ms(period))
            .arg(limit)
            .arg(member)
            .invoke_async(&mut conn)
            .await?;
        Ok(match out.first().map(String::as_str) {
            // A start frees up at that time; never before now + 1 s, so a window that cannot be read
            // back does not turn into a busy poll.
            Some("wait") => Some(
                out.get(1)
                    .and_then(|t| t.parse::<i64>().ok())
                    .unwrap_or(crate::machine::LATEST_DUE_MS)
                    .clamp(now.saturating_add(1), crate::machine::LATEST_DUE_MS),
            ),
            _ => None,
        })
    }

    /// Parks a dispatched step until `timer` fires at `due` (see `park.lua`). Returns false when stale.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn park(
        &self,
        call: &RunCall<'_>,
        step: &str,
        attempt: u32,
        detail: &str,
        timer: &str,
        due: i64,
    ) -> Result<bool> {
        let out = self
            .eval_run(
                redis::pipe(),
                &self.scripts.park,
                call,
                &[
                    step.into(),
                    attempt.to_string(),
                    detail.into(),
                    timer.into(),
                    due.to_string(),
                ],
            )
            .await?;
        Ok(out.first().map(String::as_str) == Some("parked"))
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
    /// The payload of an attempt to (re)publish: `retry = true` moves step `step`, retrying as
    /// `attempt`, to dispatched; otherwise only a step still dispatched (never started) answers, with
    /// its current attempt. `None` when stale.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    /// A retry writes the outbox entry (due at `outbox_due`) in the same round trip, before the commit,
    /// so a crash after the commit still gets the attempt published by the sweeper.
    pub async fn dispatch_attempt(
        &self,
        call: &RunCall<'_>,
        step: &str,
        attempt: u32,
        mode: DispatchMode,
        reads: &str,
    ) -> Result<Option<DispatchPayload>> {
        let mode = match mode {
            DispatchMode::Retry => "retry",
            DispatchMode::Unpark => "unpark",
            DispatchMode::Check => "check",
        };
        let out = self
            .eval_run(
                redis::pipe(),
                &self.scripts.dispatch_attempt,
                call,
                &[step.into(), attempt.to_string(), mode.into(), reads.into()],
            )
            .await?;
        dispatch_reply("dispatch_attempt.lua", out)
    }

    /// Ends an unfinished run: cancels its unfinished steps and sets its status.
    ///
    /// # Errors
    /// `NotFound` for no such run; `FailedPrecondition` when it already finished; `Redis`.
    /// `status` is the run's new status: `cancelled`, or `timed_out` for a run timeout.
    pub async fn cancel_run(&self, call: &RunCall<'_>, reason: &str, status: &str) -> Result<()> {
        let out = self
            .eval_run(
                redis::pipe(),
                &self.scripts.cancel_run,
                call,
                &[reason.into(), status.into()],
            )
            .await?;
        match out.first().map(String::as_str) {
            Some("cancelled") => {
                let status = if status == "timed_out" {
                    "timed_out"
                } else {
                    "cancelled"
                };
                let workflow = out.get(1).map(String::as_str).unwrap_or_default();
                crate::metrics::observe_finish(self, workflow, status, call.run_id, call.now);
                Ok(())
            }
            Some("finished") => Err(CoordinatorError::FailedPrecondition(format!(
                "run_id: run {} already finished ({})",
                call.run_id,
                out.get(1).map(String::as_str).unwrap_or("?")
            ))),
            _ => Err(not_found(call.run_id)),
        }
    }

    /// Resets steps of a finished run and dispatches those that are ready (see `reset_steps.lua`).
    /// `steps` is `None` for a retry (every failed or cancelled step). The outbox entries of every step
    /// in `all_steps` are written first, in the same round trip.
    ///
    /// # Errors
    /// `NotFound`; `FailedPrecondition` when the run has not finished, or (retry) nothing failed; `Redis`.
    pub async fn reset_steps(
        &self,
        call: &RunCall<'_>,
        steps: Option<&[String]>,
        input_json: Option<&str>,
        all_steps: &str,
        outbox_due: i64,
        timers: &[(String, i64)],
    ) -> Result<Vec<DispatchPayload>> {
        let mut pre = redis::pipe();
        for (member, due) in timers {
            pre.zadd(self.keys.timers(), member, *due).ignore();
        }
        for spec in all_steps.split(';') {
            if let Some((step, _)) = spec.split_once('=') {
                pre.zadd(self.keys.outbox(), outbox_member(call.run_id, step), outbox_due)
                    .ignore();
            }
        }
        let mode = if steps.is_some() { "rerun" } else { "retry" };
        let args = [
            mode.to_string(),
            steps.map(|s| s.join(",")).unwrap_or_default(),
            input_json.unwrap_or("").to_string(),
            all_steps.to_string(),
        ];
        let out = self.eval_run(pre, &self.scripts.reset_steps, call, &args).await?;
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
            _ => Err(not_found(call.run_id)),
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
            step.to_string(),
            attempt.to_string(),
            payload_json.to_string(),
            worker.to_string(),
        ];
        let out = self
            .eval_run(redis::pipe(), &self.scripts.emit_event, call, &args)
            .await?;
        disposition("emit_event.lua", &out)
    }

    /// Leases up to `limit` due entries of the timers (`outbox = false`) or the outbox.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn claim(&self, outbox: bool, now: i64, lease: Duration, limit: usize) -> Result<Vec<Claimed>> {
        let key = self.due_set_key(outbox);
        self.claim_key(&key, now, lease, limit).await
    }

    /// As [`Store::claim`], for any sorted set of due entries (the schedules' due times).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn claim_key(&self, key: &str, now: i64, lease: Duration, limit: usize) -> Result<Vec<Claimed>> {
        let mut conn = self.conn.clone();
        let timed = tokio::time::Instant::now();
        let out: Vec<String> = self
            .scripts
            .claim
            .key(key)
            .arg(now)
            .arg(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
            .arg(limit)
            .invoke_async(&mut conn)
            .await?;
        crate::metrics::redis_script("claim", timed.elapsed());
        let mut it = out.into_iter();
        let lease = Lease::new(it.next().and_then(|s| s.parse().ok()).unwrap_or(0));
        Ok(it
            .map(|member| Claimed {
                member,
                lease: lease.clone(),
            })
            .collect())
    }

    /// Moves `lease` forward to `until_ms` (Unix ms) for `members` that it still holds in `key`; with
    /// `until_ms` now, gives them back for any coordinator to claim at once. Returns how many moved.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; the lease is unchanged then.
    pub async fn renew(&self, key: &str, lease: &Lease, members: &[String], until_ms: i64) -> Result<usize> {
        if members.is_empty() {
            return Ok(0);
        }
        let mut held = lease.0.write().await;
        let mut conn = self.conn.clone();
        let timed = tokio::time::Instant::now();
        let mut call = self.scripts.renew.key(key);
        call.arg(*held).arg(until_ms);
        for m in members {
            call.arg(m);
        }
        let moved: usize = call.invoke_async(&mut conn).await?;
        crate::metrics::redis_script("renew", timed.elapsed());
        *held = until_ms;
        Ok(moved)
    }

    /// Gives one claimed entry back, due now, unless it is no longer held by its claim (a coordinator
    /// shutting down gives back what it claimed and has not started).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; the entry then comes due when its lease lapses.
    pub async fn give_back(&self, key: &str, claimed: &Claimed, now: i64) -> Result<()> {
        let held = claimed.lease.0.read().await;
        let mut conn = self.conn.clone();
        let _: usize = self
            .scripts
            .renew
            .key(key)
            .arg(*held)
            .arg(now)
            .arg(&claimed.member)
            .invoke_async(&mut conn)
            .await?;
        drop(held);
        Ok(())
    }

    /// The key of the durable-time sorted set a claim comes from: the outbox (`outbox = true`) or
    /// the timers. For [`Store::renew`] and [`Store::give_back`].
    pub fn due_set_key(&self, outbox: bool) -> String {
        if outbox { self.keys.outbox() } else { self.keys.timers() }
    }

    /// Makes every pending outbox entry due now (those due within the dispatch grace), for the
    /// sweeper to re-send at once: called when a fault that stopped publishes has ended. Returns how
    /// many entries moved (at most 10,000 per call).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn expedite_outbox(&self, now: i64) -> Result<usize> {
        let mut conn = self.conn.clone();
        let horizon = now.saturating_add(i64::try_from(self.dispatch_grace.as_millis()).unwrap_or(i64::MAX));
        let moved: usize = self
            .scripts
            .expedite
            .key(self.keys.outbox())
            .arg(now)
            .arg(horizon)
            .arg(10_000)
            .invoke_async(&mut conn)
            .await?;
        Ok(moved)
    }

    /// Removes a claimed entry unless it was rescheduled since.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn release(&self, outbox: bool, claimed: &Claimed) -> Result<()> {
        let key = self.due_set_key(outbox);
        let held = claimed.lease.0.read().await;
        let mut conn = self.conn.clone();
        let timed = tokio::time::Instant::now();
        let _: i64 = self
            .scripts
            .release
            .key(key)
            .arg(&claimed.member)
            .arg(*held)
            .invoke_async(&mut conn)
            .await?;
        drop(held);
        crate::metrics::redis_script("release", timed.elapsed());
        Ok(())
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
    /// `HMGET` per [`READ_STEPS_BATCH`] steps, pipelined), never whole: a fan-out step's elements
    /// (up to 10,000 of them, seven fields each) live in the same hash, and one `HGETALL` of it
    /// held Redis for everyone while it copied them all. A step's output is not read, only its
    /// size (`HSTRLEN`, as `<step>:output_bytes`): 1,000 outputs of up to `max_payload_bytes`
    /// each would be gigabytes; read those an answer shows with [`Self::read_step_outputs`].
    /// A run's step ids are cached (bounded: [`STEP_IDS_CACHE_BYTES`], [`STEP_IDS_CACHE_IDLE`]
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

    /// Stores a definition if this version is new and the workflow keeps fewer than
    /// `max_versions` versions (`put_workflow.lua`, one atomic step).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Internal` for an answer the script does not give.
    pub async fn put_workflow(
        &self,
        name: &str,
        version: u32,
        json: &str,
        now: i64,
        max_versions: u32,
    ) -> Result<PutWorkflow> {
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(include_str!("scripts/put_workflow.lua")));
        let mut conn = self.conn.clone();
        let reply: Vec<String> = SCRIPT
            .key(self.keys.workflow(name))
            .key(self.keys.workflow_registered(name))
            .key(self.keys.workflow_names())
            .arg(version)
            .arg(json)
            .arg(now)
            .arg(max_versions)
            .arg(name)
            .invoke_async(&mut conn)
            .await?;
        match reply.as_slice() {
            [tag] if tag == "created" => Ok(PutWorkflow::Created),
            [tag, stored] if tag == "exists" => Ok(PutWorkflow::Exists(stored.clone())),
            [tag, count] if tag == "full" => Ok(PutWorkflow::Full(count.parse().unwrap_or(max_versions))),
            other => Err(CoordinatorError::Internal(format!(
                "put_workflow.lua answered {:?}",
                other.first()
            ))),
        }
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

    /// The id of the last event of a run's stream, `None` when it has none.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn last_event_id(&self, run_id: &str) -> Result<Option<String>> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply =
            conn.xrevrange_count(self.keys.events(run_id), "+", "-", 1).await?;
        Ok(reply.ids.into_iter().next().map(|e| e.id))
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
/// in `<namespace>:layout` and checked when a coordinator starts ([`Store::check_layout`]).
///
/// - 1: the releases before the layout was stored (no `<namespace>:layout` key).
/// - 2: this one. The scripts that commit a dispatch also write its queued-index entry and
///   schedule-to-start timer, and StartStep's script removes them; the stored runs, steps, timers,
///   outbox and indexes have the same keys and values as in layout 1, so runs in flight from
///   layout 1 go on unchanged (the migration only records the new number).
pub const LAYOUT_VERSION: u32 = 2;

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
    /// The key holding the namespace's layout version.
    fn layout_key(&self) -> String {
        format!("{}:layout", self.keys.prefix())
    }

    /// Checks the namespace's layout before this coordinator serves it: an empty namespace is
    /// marked [`LAYOUT_VERSION`]; one without a mark that holds data is of layout 1 (the releases
    /// before the mark) and, like any layout from [`MIN_MIGRATED_LAYOUT`] up, is migrated; the
    /// current layout passes.
    ///
    /// # Errors
    /// `FailedPrecondition` naming the namespace, both layouts and [`DRAIN_PROCEDURE`] when the
    /// namespace holds a layout this version cannot read: a newer one (written by a later
    /// release), one older than [`MIN_MIGRATED_LAYOUT`], or a mark that is not a number; nothing is
    /// changed then. [`CoordinatorError::Redis`].
    pub async fn check_layout(&self) -> Result<LayoutCheck> {
        let key = self.layout_key();
        let mut conn = self.conn.clone();
        let mark: Option<String> = conn.get(&key).await?;
        let found = match mark {
            Some(text) => match text.trim().parse::<u32>() {
                Ok(v) => v,
                Err(_) => {
                    return Err(self.refuse_layout(&format!(
                        "a layout mark {} that is not a number",
                        baton_shared::limits::echo(&text)
                    )));
                }
            },
            None => {
                // No mark: a new namespace, or one of layout 1 (which kept no mark).
                let (runs, names, timers, outbox): (u64, u64, u64, u64) = redis::pipe()
                    .zcard(self.keys.runs_index())
                    .scard(self.keys.workflow_names())
                    .zcard(self.keys.timers())
                    .zcard(self.keys.outbox())
                    .query_async(&mut conn)
                    .await?;
                if runs == 0 && names == 0 && timers == 0 && outbox == 0 {
                    // Two coordinators starting at once both find it empty: either mark stands.
                    let _: Option<String> = redis::cmd("SET")
                        .arg(&key)
                        .arg(LAYOUT_VERSION)
                        .arg("NX")
                        .query_async(&mut conn)
                        .await?;
                    return Ok(LayoutCheck::New);
                }
                1
            }
        };
        if found == LAYOUT_VERSION {
            return Ok(LayoutCheck::Current);
        }
        if found > LAYOUT_VERSION {
            return Err(self.refuse_layout(&format!(
                "layout {found}, written by a newer Baton release (this coordinator reads layout {LAYOUT_VERSION}); run that release's coordinators"
            )));
        }
        if found < MIN_MIGRATED_LAYOUT {
            return Err(self.refuse_layout(&format!(
                "layout {found}, older than this coordinator migrates (layout {MIN_MIGRATED_LAYOUT} to {LAYOUT_VERSION})"
            )));
        }
        // Layout 1 to 2: the stored runs are the same (see LAYOUT_VERSION); only the mark changes.
        // A later layout adds its migration step here, before the mark.
        let _: () = conn.set(&key, LAYOUT_VERSION).await?;
        Ok(LayoutCheck::Migrated(found))
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

/// What [`Store::put_workflow`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutWorkflow {
    /// The version was new and is stored.
    Created,
    /// The version existed: its stored JSON (nothing changed).
    Exists(String),
    /// The workflow keeps this many versions already, its most (nothing changed).
    Full(u32),
}

/// Arguments of `complete_step.lua`.
pub struct CompleteArgs<'a> {
    /// The step.
    pub step: &'a str,
    /// The attempt being completed.
    pub attempt: u32,
    /// Who reports it, and so how the outcome is fenced.
    pub by: Reporter<'a>,
    /// The outcome word, one of [`StepOutcome`]'s: `ok`, `skip`, `error`, `timeout`, `items`,
    /// `heartbeat`, `emit` or `schedule` (any other is an `Internal` error before Redis is called).
    pub outcome: &'a str,
    /// The output JSON (`ok`, `emit`, `items`), the reason (`skip`) or the error message.
    pub body: &'a str,
    /// When to dispatch the next attempt (Unix ms), 0 to give up. The script arms the `retry`
    /// timer of the next attempt when it applies the retry.
    pub retry_at: i64,
    /// For `heartbeat`: the heartbeat timeout, ms.
    pub heartbeat_timeout_ms: u64,
    /// The step's children with their parents and reads: `child=parent,parent=read,read;...`
    /// ([`crate::machine::children_spec`]).
    pub children: &'a str,
    /// Leaf step ids, comma-separated.
    pub leaves: &'a str,
    /// `workflow@version`.
    pub pinned: &'a str,
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

/// An attempt's outcome as `complete_step.lua` reads it (`outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// The handler (or a human, a child run, an event) succeeded: the body is the output JSON.
    Ok,
    /// The step is skipped: the body is the reason.
    Skip,
    /// The attempt failed: the body is the error message.
    Error,
    /// Start-to-close timeout, or a wait's timeout.
    Timeout,
    /// Every element of a fan-out step succeeded: the body is their outputs, gathered.
    Items,
    /// Heartbeat timeout (counts only if the attempt has not beaten since).
    Heartbeat,
    /// An emitting step's handler succeeded.
    Emit,
    /// Schedule-to-start timeout (counts only while the attempt is still dispatched).
    Schedule,
}

impl StepOutcome {
    /// The outcome named by `word` as [`CompleteArgs::outcome`] gives it, `None` for another word.
    pub fn from_word(word: &str) -> Option<Self> {
        Some(match word {
            "ok" => Self::Ok,
            "skip" => Self::Skip,
            "error" => Self::Error,
            "timeout" => Self::Timeout,
            "items" => Self::Items,
            "heartbeat" => Self::Heartbeat,
            "emit" => Self::Emit,
            "schedule" => Self::Schedule,
            _ => return None,
        })
    }
}

/// `complete_step.lua`'s JSON argument (ARGV[5]); the body travels beside it as ARGV[6], so an
/// output of megabytes is not escaped into JSON and parsed again.
#[derive(serde::Serialize)]
struct CompleteStepJson<'a> {
    step: &'a str,
    attempt: u32,
    who: &'a str,
    by: ReporterPath,
    outcome: StepOutcome,
    retry_at: i64,
    heartbeat_timeout_ms: u64,
    children: &'a str,
    leaves: &'a str,
    pinned: &'a str,
    disarm: bool,
    queued: std::collections::BTreeMap<&'a str, QueuedEntry>,
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

/// Deleting a workflow version (`DeleteWorkflowVersion`).
impl Store {
    /// How many runs of `name` version `version` are unfinished (pending or running), read from
    /// the workflow's run index a page of [`DELETE_SCAN_PAGE`] runs at a time (one pipelined
    /// `HMGET` per page). Runs that expired are not counted.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn unfinished_runs_of_version(&self, name: &str, version: u32) -> Result<u64> {
        let index = self.keys.workflow_runs_index(name);
        let wanted = version.to_string();
        let mut conn = self.conn.clone();
        let mut count = 0u64;
        let mut start = 0isize;
        loop {
            let stop = start.saturating_add(DELETE_SCAN_PAGE - 1);
            let members: Vec<String> = conn.zrange(&index, start, stop).await?;
            if members.is_empty() {
                return Ok(count);
            }
            let mut pipe = redis::pipe();
            for m in &members {
                let id = m.split_once(':').map(|(_, id)| id).unwrap_or_default();
                pipe.cmd("HMGET").arg(self.keys.run(id)).arg("version").arg("status");
            }
            let rows: Vec<(Option<String>, Option<String>)> = pipe.query_async(&mut conn).await?;
            count = count.saturating_add(
                rows.iter()
                    .filter(|(v, st)| {
                        v.as_deref() == Some(wanted.as_str())
                            && st.as_deref().is_some_and(|w| {
                                baton_shared::proto::RunStatus::from_word(w).is_none_or(|s| !s.is_terminal())
                            })
                    })
                    .count() as u64,
            );
            if members.len() < DELETE_SCAN_PAGE as usize {
                return Ok(count);
            }
            start = start.saturating_add(DELETE_SCAN_PAGE);
        }
    }

    /// Deletes one version of a workflow (`delete_workflow_version.lua`, one atomic step): its
    /// definition and registration time; the name leaves the set of names with its last version.
    /// Returns the versions left, ascending, or `None` when there was no such version.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Internal` for an answer the script does not give.
    pub async fn delete_workflow_version(&self, name: &str, version: u32) -> Result<Option<Vec<u32>>> {
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(include_str!("scripts/delete_workflow_version.lua")));
        let mut conn = self.conn.clone();
        let reply: Vec<String> = SCRIPT
            .key(self.keys.workflow(name))
            .key(self.keys.workflow_registered(name))
            .key(self.keys.workflow_names())
            .arg(version)
            .arg(name)
            .invoke_async(&mut conn)
            .await?;
        match reply.split_first() {
            Some((tag, [])) if tag == "missing" => Ok(None),
            Some((tag, left)) if tag == "deleted" => {
                let mut versions = left
                    .iter()
                    .map(|v| {
                        v.parse::<u32>()
                            .map_err(|_| CoordinatorError::Internal(format!("stored workflow version {v:?}")))
                    })
                    .collect::<Result<Vec<u32>>>()?;
                versions.sort_unstable();
                Ok(Some(versions))
            }
            _ => Err(CoordinatorError::Internal(format!(
                "delete_workflow_version.lua answered {:?}",
                reply.first()
            ))),
        }
    }
}

/// Runs read per page by [`Store::unfinished_runs_of_version`].
pub const DELETE_SCAN_PAGE: isize = 1_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_prelude_has_its_bounds_put_in() {
        let code = common_prelude();
        assert!(!code.contains("__"), "a placeholder is left in common.lua");
        assert!(code.contains(&format!("tonumber('{}')", baton_shared::limits::KEPT_ATTEMPTS)));
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
        assert!(create_outcome(&["maybe".to_string()]).is_err());
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
            plan.json(6),
            r#"{"b":{"key":6,"s2s_ms":2000},"c":{"key":6,"s2s_ms":0},"d":{"key":7,"s2s_ms":0}}"#
        );
        assert!(plan.contains("b") && !plan.contains("e"));
        assert_eq!(QueuedPlan::default().json(6), "{}");
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
