//! The engine: the coordinator's use cases (submit, start, report, heartbeat, timers, sweeper), each
//! a thin sequence of "plan with the pure core, apply with one script, publish what became ready".

use std::{sync::Arc, time::Duration};

use baton_shared::{
    definition::{StepDefinition, StepKind, WorkflowDefinition, split_item},
    ids,
    limits::{MAX_WORKFLOW_DEPTH, echo},
    proto::{BufferedEvents, HumanTask, RunStatus, StepTask, TriggerError},
    time::now_ms,
};

use crate::{
    config::CoordinatorConfig,
    core::{
        self,
        classify::{self, AttemptTimer, Classified, Jitter},
        kinds::{Kind, StartPlan},
        texts,
    },
    dispatch::Dispatcher,
    error::{CoordinatorError, Result},
    machine,
    registry::Registry,
    store::{
        Batch, Claimed, CompleteArgs, Completion, CreateOutcome, DispatchMode, DispatchPayload, Disposition, EndStatus,
        NewRun, ParentKind, ParentRef, QueuedPlan, Reporter, RunCall, RunSlot, SlotOutcome, StartArgs, Started,
        StepOutcome, Store, TakeOver, TimerKind, WaitArgs, WaitMode, WaitOutcome, parse_outbox_member, timer_member,
    },
};

pub use crate::core::Outcome;

/// How long past its timeout an attempt's concurrency slot stays leased (if the attempt never ends).
const SLOT_LEASE_MARGIN: Duration = Duration::from_secs(60);
/// How long after the liveness of the worker holding an attempt lapses (3 of its heartbeat
/// intervals after its last `RegisterWorker`) the coordinator looks again at an attempt whose
/// duplicate copy it dropped, to send it again if that worker is gone.
const HOLDER_RECHECK_MARGIN: Duration = Duration::from_millis(250);
/// How many times StartStep looks up a running attempt's holder before answering `DUPLICATE`
/// (the holder changes between looks only when another worker just took the attempt over).
const HOLDER_LOOKS: usize = 3;
/// The coordinator's own completions (not a worker's report), by what found them.
const BY_TIMER: Reporter<'static> = Reporter::Coordinator("timer");
const BY_EVENT: Reporter<'static> = Reporter::Coordinator("event");
const BY_CHILD: Reporter<'static> = Reporter::Coordinator("child");
const BY_COORDINATOR: Reporter<'static> = Reporter::Coordinator("coordinator");
/// How long a dispatched task may wait in RabbitMQ for a worker while it holds a slot.
const SLOT_QUEUE_ALLOWANCE: Duration = Duration::from_secs(600);

/// The run-slot pool of a run of `def` with this input, for a workflow with `max_concurrent_runs`
/// ([`core::gates::run_pool`]).
///
/// # Errors
/// `InvalidArgument` when the key cannot be evaluated over the input.
fn run_slot(def: &WorkflowDefinition, input: &serde_json::Value) -> Result<Option<RunSlot>> {
    Ok(core::gates::run_pool(def, input)
        .map_err(CoordinatorError::InvalidArgument)?
        .map(|(pool, limit)| RunSlot { pool, limit }))
}

/// Child runs created per Redis round trip by an emitting step.
const EMIT_BATCH: u64 = 500;
/// How long after an emitting step's last progress its backstop timer looks again.
const EMIT_BACKSTOP_MS: i64 = 30_000;

/// Why [`Engine::decide`] does not start a step.
enum Halt {
    /// End the step as skipped, for this reason.
    Skip(String),
    /// Fail the step for good, with this message.
    Fail(String),
    /// Redis, RabbitMQ: the dispatch stays in the outbox and is tried again.
    Error(CoordinatorError),
}

impl From<CoordinatorError> for Halt {
    fn from(e: CoordinatorError) -> Self {
        Halt::Error(e)
    }
}

impl From<core::kinds::Halt> for Halt {
    fn from(h: core::kinds::Halt) -> Self {
        match h {
            core::kinds::Halt::Skip(reason) => Halt::Skip(reason),
            core::kinds::Halt::Fail(message) => Halt::Fail(message),
        }
    }
}

/// What the coordinator does with a dispatched step, decided in [`Engine::prepare`].
enum Launch {
    /// Publish this task to the workers.
    Publish(Box<StepTask>),
    /// The step was handled here (skipped, failed, started a timer or a wait) and these steps were
    /// dispatched as a consequence.
    More(Vec<DispatchPayload>),
    /// The step started a child run, created with these root steps dispatched: the caller's loop
    /// launches them like its own, so a chain of sub-workflows never recurses on the stack.
    Child {
        /// The child's definition.
        def: Arc<WorkflowDefinition>,
        /// The child run.
        run_id: String,
        /// Its root steps, committed as dispatched.
        payloads: Vec<DispatchPayload>,
    },
}

/// Identifies one attempt, as workers name it.
#[derive(Debug, Clone)]
pub struct AttemptRef<'a> {
    /// The run.
    pub run_id: &'a str,
    /// The step.
    pub step_id: &'a str,
    /// The attempt, 1-based.
    pub attempt: u32,
    /// The workflow the task named.
    pub workflow: &'a str,
    /// Its version.
    pub version: u32,
    /// The worker.
    pub worker: &'a str,
    /// Attempts before the run's last retry or re-run (the retry policy counts from there).
    pub attempt_base: u32,
}

/// The coordinator's application service. Cheap to share (`Arc`).
pub struct Engine {
    /// Settings.
    pub config: CoordinatorConfig,
    /// Redis state.
    pub store: Store,
    /// Definitions.
    pub registry: Registry,
    /// RabbitMQ publisher.
    pub dispatcher: Arc<Dispatcher>,
    /// The archive of finished runs (PostgreSQL), when `archive_url` is set.
    pub archive: Option<Arc<crate::archive::Archive>>,
}

fn check_run_id(run_id: &str) -> Result<()> {
    if ids::is_run_id(run_id) {
        Ok(())
    } else {
        Err(CoordinatorError::InvalidArgument(format!(
            "run_id: {} is not a run id (a UUID)",
            echo(run_id)
        )))
    }
}

impl Engine {
    /// Registers a definition and declares its handlers' queues.
    ///
    /// # Errors
    /// See [`Registry::register`]; `Amqp` if the queues cannot be declared.
    pub async fn register(&self, text: &str) -> Result<(Arc<WorkflowDefinition>, bool)> {
        let def = WorkflowDefinition::parse(text)?;
        self.register_definition(def).await
    }

    /// As [`Engine::register`], for a parsed definition.
    ///
    /// # Errors
    /// See [`Registry::register`].
    pub async fn register_definition(&self, def: WorkflowDefinition) -> Result<(Arc<WorkflowDefinition>, bool)> {
        self.registry.check_no_self_start(&def).await?;
        let (def, created) = self.registry.register_definition(def).await?;
        self.dispatcher.ensure_queues(&def.handlers()).await?;
        // The latest version's schedules are the workflow's schedules.
        if self.registry.get(&def.name, 0).await?.definition.version == def.version {
            self.sync_declared_schedules(&def).await?;
        }
        Ok((def, created))
    }

    /// Starts a run. Returns its id and whether it was created (false: the idempotency key matched).
    ///
    /// # Errors
    /// `InvalidArgument` for input that is not JSON or fails the schema (naming the JSON path);
    /// `NotFound` for an unknown workflow; `Redis`.
    pub async fn submit_run(
        &self,
        workflow: &str,
        version: u32,
        input_json: &str,
        idempotency_key: &str,
    ) -> Result<(String, bool)> {
        if workflow.is_empty() {
            return Err(CoordinatorError::InvalidArgument("workflow: required".into()));
        }
        let input = self.check_json("input_json", input_json, "{}")?;
        let def = self.registry.get(workflow, version).await?.definition;
        def.validate_input(&input)?;
        let run_id = if idempotency_key.is_empty() {
            ids::new_run_id()
        } else {
            ids::run_id_for_key(workflow, idempotency_key)
        };
        // A key whose run was archived and whose tombstone expired still names that run.
        if !idempotency_key.is_empty()
            && self.archive.is_some()
            && self.store.run_archived(&run_id).await?.is_none()
            && crate::archiver::archived(self, &run_id).await?.is_some()
        {
            return Ok((run_id, false));
        }
        self.create_run(&def, &run_id, &input, idempotency_key, None).await
    }

    /// Creates run `run_id` of `def` (its input already checked) for a schedule or a trigger, and
    /// launches its root steps. An existing run of that id is left as it is.
    ///
    /// # Errors
    /// `Redis`.
    pub(crate) async fn create_scheduled_run(
        &self,
        def: &WorkflowDefinition,
        run_id: &str,
        input: &serde_json::Value,
    ) -> Result<bool> {
        Ok(self.create_run(def, run_id, input, "", None).await?.1)
    }

    /// Creates run `run_id` of `def` (its input already checked) and launches its root steps.
    async fn create_run(
        &self,
        def: &WorkflowDefinition,
        run_id: &str,
        input: &serde_json::Value,
        idempotency_key: &str,
        parent: Option<&ParentRef<'_>>,
    ) -> Result<(String, bool)> {
        let (run_id, created, payloads) = self
            .create_run_unlaunched(def, run_id, input, idempotency_key, parent)
            .await?;
        if !payloads.is_empty() {
            self.launch(def, &run_id, payloads, now_ms()).await;
        }
        Ok((run_id, created))
    }

    /// Creates run `run_id` of `def` (its input already checked). Returns its id, whether it was
    /// created, and its root steps committed as dispatched (empty when it existed or waits for a run
    /// slot), for the caller to launch.
    async fn create_run_unlaunched(
        &self,
        def: &WorkflowDefinition,
        run_id: &str,
        input: &serde_json::Value,
        idempotency_key: &str,
        parent: Option<&ParentRef<'_>>,
    ) -> Result<(String, bool, Vec<DispatchPayload>)> {
        let run_id = run_id.to_string();
        let input_json = input.to_string();
        let now = now_ms();
        let call = RunCall { run_id: &run_id, now };
        let run_slot = run_slot(def, input)?;
        let queued = self.queued_plan(def, def.roots());
        let outcome = self
            .store
            .create_run(
                &call,
                def,
                &input_json,
                idempotency_key,
                run_slot.as_ref(),
                &self.run_timeout_timer(def, &run_id, now),
                parent,
                &queued,
            )
            .await?;
        if !matches!(outcome, CreateOutcome::Exists(_)) {
            crate::metrics::run_started(&def.name);
            crate::traces::remember_run(&self.store, &run_id, &def.name, parent.map(|p| p.run)).await;
        }
        Ok(match outcome {
            CreateOutcome::Exists(_) => (run_id, false, Vec::new()),
            // Its roots start when a run slot frees (a `run-wake` timer).
            CreateOutcome::Queued => (run_id, true, Vec::new()),
            CreateOutcome::Created => {
                let mut payloads = machine::root_payloads(def, &input_json, now);
                for p in &mut payloads {
                    p.queued = queued.contains(&p.step_id);
                }
                (run_id, true, payloads)
            }
        })
    }

    /// The depth a child of run `run_id` would have (its own depth plus one).
    ///
    /// # Errors
    /// `Ok(Err(message))` when that is deeper than [`MAX_WORKFLOW_DEPTH`] below the root run (the
    /// message is a step error, `WorkflowDepthExceeded: ...`); `Redis`.
    async fn child_depth(&self, run_id: &str, child: &str) -> Result<std::result::Result<u32, String>> {
        let depth: u32 = self
            .store
            .run_fields(run_id, &["depth"])
            .await?
            .pop()
            .flatten()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        if depth >= MAX_WORKFLOW_DEPTH {
            return Ok(Err(texts::too_deep(run_id, depth, child)));
        }
        Ok(Ok(depth.saturating_add(1)))
    }

    /// A worker starts an attempt: marks it running, held by this worker, arms its timeout (and
    /// heartbeat) timers, and takes it out of the queued index with its schedule-to-start timer,
    /// in one script (one round trip unless another worker holds the attempt; a step with a concurrency limit also has its `lease_slot` effect applied, in the background). Only a step that runs a handler (a task step or a fan-out element,
    /// [`WorkflowDefinition::handler_step`]) can be started; anything else is answered `Stale`. An
    /// attempt another live worker holds is answered `Duplicate` (drop the copy); one whose holder
    /// is gone is taken over; the same worker starting it again (a redelivery) proceeds.
    /// `input_json`, the input the worker received (`""`: none), is kept with the attempt when it
    /// proceeds (GetRun's `Attempt.input_json`), in the same script. An input over
    /// `max_payload_bytes` or not JSON is not kept (a warning is logged), but never refuses the
    /// start: the worker would hand the task back, and its redelivery would be refused again.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed run id; `Redis`.
    pub async fn start_step(&self, a: &AttemptRef<'_>, input_json: &str) -> Result<Disposition> {
        check_run_id(a.run_id)?;
        let input_json = self.kept_input(a, input_json);
        let def = match self.registry.pinned(a.workflow, a.version).await {
            Ok(d) => d,
            Err(CoordinatorError::NotFound(_)) => return Ok(Disposition::Stale),
            Err(e) => return Err(e),
        };
        let Some(step) = def.handler_step(a.step_id) else {
            return Ok(Disposition::Stale);
        };
        self.start_handler_step(&def, step, a, input_json).await
    }

    /// [`Engine::start_step`] once the step is known to run a handler.
    async fn start_handler_step(
        &self,
        def: &WorkflowDefinition,
        step: &StepDefinition,
        a: &AttemptRef<'_>,
        input_json: &str,
    ) -> Result<Disposition> {
        let now = now_ms();
        let pinned = machine::pinned(def);
        let call = RunCall { run_id: a.run_id, now };
        let mut holder: Option<String> = None;
        // Still held after every look: a worker that just took the attempt over holds it.
        let mut disposition = Disposition::Duplicate;
        for _ in 0..HOLDER_LOOKS {
            let args = self.start_args(step, a, &pinned, now, holder.as_deref(), input_json);
            match self.store.start_step(&call, &args).await? {
                Started::Answer(d) => {
                    disposition = d;
                    break;
                }
                Started::Held(h) => holder = Some(h),
            }
        }
        self.started(def, step, a, disposition, holder.as_deref(), now);
        // Whatever the answer, the script took the task out of the queued index: it left its queue.
        Ok(disposition)
    }

    /// `input_json` of a started attempt if it is to be kept: not over `max_payload_bytes` and
    /// JSON, else `""` (with a warning; it never refuses the start).
    fn kept_input<'a>(&self, a: &AttemptRef<'_>, input_json: &'a str) -> &'a str {
        if input_json.is_empty() {
            input_json
        } else if input_json.len() > self.config.max_payload_bytes {
            tracing::warn!(
                run_id = a.run_id,
                step_id = a.step_id,
                bytes = input_json.len(),
                "input_json of a started attempt is over max_payload_bytes: not kept"
            );
            ""
        } else if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(input_json) {
            tracing::warn!(run_id = a.run_id, step_id = a.step_id, error = %e, "input_json of a started attempt is not JSON: not kept");
            ""
        } else {
            input_json
        }
    }

    /// `start_step.lua`'s arguments for attempt `a` of handler step `step`, started at `now`.
    fn start_args<'a>(
        &self,
        step: &'a StepDefinition,
        a: &AttemptRef<'a>,
        pinned: &'a str,
        now: i64,
        holder: Option<&'a str>,
        input_json: &'a str,
    ) -> StartArgs<'a> {
        // An attempt holding a concurrency slot keeps it to the end of its timeout, and a margin.
        let slot_lease = if step.concurrency.is_some() && split_item(a.step_id).1.is_none() {
            machine::span_ms(step.timeout.saturating_add(SLOT_LEASE_MARGIN))
        } else {
            0
        };
        StartArgs {
            step: a.step_id,
            handler: &step.handler,
            attempt: a.attempt,
            worker: a.worker,
            pinned,
            timeout_due: machine::due(now, step.timeout),
            heartbeat_due: step.heartbeat_timeout.map(|hb| machine::due(now, hb)),
            slot_lease_ms: slot_lease,
            holder,
            recheck_margin: HOLDER_RECHECK_MARGIN,
            input: input_json,
        }
    }

    /// Metrics and logs of a start's answer.
    fn started(
        &self,
        def: &WorkflowDefinition,
        step: &StepDefinition,
        a: &AttemptRef<'_>,
        disposition: Disposition,
        holder: Option<&str>,
        now: i64,
    ) {
        match disposition {
            Disposition::Proceed => {
                crate::metrics::observe_start(self, &def.name, &step.handler, a.run_id, a.step_id, now);
            }
            Disposition::Duplicate => tracing::info!(
                run = a.run_id,
                step = a.step_id,
                attempt = a.attempt,
                worker = a.worker,
                holder = holder.unwrap_or_default(),
                "a duplicate copy of a running attempt is dropped: a live worker holds it"
            ),
            Disposition::Stale | Disposition::Cancelled => {}
        }
    }

    /// The definition run `run_id` is pinned to, if `step_id` of it runs a handler (the only steps
    /// a worker may heartbeat or emit from); `None` when the run is gone, its definition unknown, or
    /// the step is of another kind.
    async fn handler_run(&self, run_id: &str, step_id: &str) -> Result<Option<Arc<WorkflowDefinition>>> {
        let Some((workflow, version)) = self.store.run_workflow(run_id).await? else {
            return Ok(None);
        };
        let def = match self.registry.pinned(&workflow, version).await {
            Ok(d) => d,
            Err(CoordinatorError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(def.handler_step(step_id).is_some().then_some(def))
    }

    /// Records a heartbeat of a running attempt from the worker holding it; anything else (a step
    /// that runs no handler, an attempt not started, or started by another worker) is `Stale`.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed run id; `Redis`.
    pub async fn heartbeat(&self, run_id: &str, step_id: &str, attempt: u32, worker: &str) -> Result<Disposition> {
        check_run_id(run_id)?;
        if self.handler_run(run_id, step_id).await?.is_none() {
            return Ok(Disposition::Stale);
        }
        self.store
            .heartbeat(&RunCall { run_id, now: now_ms() }, step_id, attempt, worker)
            .await
    }

    /// Applies a worker's result: one script, one round trip to Redis (two for a step holding a
    /// concurrency slot: its `release_slot` effect is applied at once, and the pool handed to its
    /// next waiter), then the publishes of the steps
    /// that became ready (in the background: the outbox makes them durable). Returns `Proceed` when
    /// recorded, `Stale` when the attempt was not current, or is of a step that runs no handler,
    /// or was not started (StartStep) by this worker: then nothing changed.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed run id or an output that is not JSON or too large; `Redis`.
    pub async fn report_result(&self, a: &AttemptRef<'_>, outcome: Outcome) -> Result<Disposition> {
        self.report(a, outcome, None).await
    }

    /// An eager report: a worker whose handler finished before it sent StartStep starts the
    /// attempt and reports its result in one call ([`Engine::start_step`] with `input_json`, then
    /// [`Engine::report_result`]), one commit round trip to Redis (`start_step.lua` and
    /// `complete_step.lua` pipelined; the report is fenced on the start). Answers the start's
    /// disposition when it is not `Proceed` (nothing was recorded then), else the report's. An
    /// attempt another worker started goes the long way: the holder's liveness decides, as for
    /// StartStep, and the report follows a `Proceed`.
    ///
    /// # Errors
    /// `InvalidArgument` naming `start` for a suspension (a suspending handler starts first), and
    /// as [`Engine::report_result`].
    pub async fn start_and_report(
        &self,
        a: &AttemptRef<'_>,
        input_json: &str,
        outcome: Outcome,
    ) -> Result<Disposition> {
        if matches!(outcome, Outcome::Suspend { .. }) {
            return Err(CoordinatorError::InvalidArgument(
                "start: an eager report carries an output or a failure; a suspension needs StartStep first".into(),
            ));
        }
        self.report(a, outcome, Some(input_json)).await
    }

    /// [`Engine::report_result`], and with `start` (the input the worker received) the attempt's
    /// start in the same round trip ([`Engine::start_and_report`]).
    async fn report(&self, a: &AttemptRef<'_>, outcome: Outcome, start: Option<&str>) -> Result<Disposition> {
        check_run_id(a.run_id)?;
        let def = match self.registry.pinned(a.workflow, a.version).await {
            Ok(d) => d,
            Err(CoordinatorError::NotFound(_)) => return Ok(Disposition::Stale),
            Err(e) => return Err(e),
        };
        // A human, sleep, wait or child-workflow step is completed by the coordinator, never by a
        // worker's report (which would pass over its form, its timer or its child run).
        let Some(step) = def.handler_step(a.step_id) else {
            return Ok(Disposition::Stale);
        };
        let now = now_ms();
        // A failure's type and details go into the attempt's history with its message.
        let (error_type, error_details) = match &outcome {
            Outcome::Failure(f) => (f.error_type.clone(), f.details.clone()),
            _ => (String::new(), String::new()),
        };
        // The run core classifies the report (and decides a retry); the store records it.
        let classified = classify::report(
            step,
            a.step_id,
            outcome,
            a.attempt.saturating_sub(a.attempt_base),
            self.config.max_payload_bytes,
            now,
            Jitter::Random,
        )
        .map_err(CoordinatorError::InvalidArgument)?;
        let (outcome_word, body, retry_at) = match classified {
            Classified::Complete { word, body, retry_at } => (word, body, retry_at),
            Classified::Suspend {
                event,
                key,
                waiting_for,
                timeout_at,
            } => {
                // The attempt is over: its timers would only fire as no-ops.
                let mut pre = Batch::new();
                pre.zrem(
                    self.store.keys().timers(),
                    vec![
                        timer_member(TimerKind::Timeout, a.run_id, a.step_id, a.attempt),
                        timer_member(TimerKind::Heartbeat, a.run_id, a.step_id, a.attempt),
                    ],
                );
                let w = WaitArgs {
                    step: a.step_id,
                    attempt: a.attempt,
                    mode: WaitMode::Suspend,
                    detail: &waiting_for,
                    event: Some((&event, &key)),
                    child_run: "",
                    timeout_at,
                    worker: a.worker,
                };
                let waited = self.store.wait(pre, &RunCall { run_id: a.run_id, now }, &w).await?;
                let word = if waited == WaitOutcome::Stale {
                    "stale"
                } else {
                    "suspended"
                };
                crate::metrics::attempt(&def.name, &step.handler, word);
                return Ok(match waited {
                    WaitOutcome::Stale => Disposition::Stale,
                    WaitOutcome::Waiting | WaitOutcome::Delivered => Disposition::Proceed,
                });
            }
        };
        // The script disarms this attempt's timers, arms the retry timer and indexes the children
        // that go straight to a worker as queued (it reads them from the run's stored graph): one
        // round trip; a slot the attempt held goes back through an effect applied at once (one
        // more). A failing element ends its fan-out step, so the step's children matter then too.
        let (fan_out, item) = split_item(a.step_id);
        let mut queued = self.queued_plan(&def, def.children(fan_out));
        if item.is_some() {
            // The next elements this report dispatches go straight to a worker (no gates): the
            // commit indexes them as queued, instead of a `note_dispatched` round trip before
            // their publish.
            queued.add(
                self.store.keys(),
                &step.id,
                &step.handler,
                self.schedule_to_start(&def, &step.id),
            );
        }
        let args = CompleteArgs {
            def: &def,
            step: a.step_id,
            attempt: a.attempt,
            by: Reporter::Worker(a.worker),
            outcome: outcome_word,
            body: &body,
            retry_at,
            heartbeat_timeout_ms: 0,
            error_type: &error_type,
            error_details: &error_details,
        };
        let call = RunCall { run_id: a.run_id, now };
        let (completion, released) = match start {
            None => {
                self.store
                    .complete_step_released(Batch::new(), &call, &args, &queued)
                    .await?
            }
            Some(input_json) => {
                let input_json = self.kept_input(a, input_json);
                let pinned = machine::pinned(&def);
                let start_args = self.start_args(step, a, &pinned, now, None, input_json);
                match self
                    .store
                    .start_and_complete(&call, &start_args, &args, &queued)
                    .await?
                {
                    (Started::Answer(Disposition::Proceed), Some(completed)) => {
                        self.started(&def, step, a, Disposition::Proceed, None, now);
                        completed
                    }
                    (Started::Held(_), _) => {
                        // Another worker started the attempt (the report was fenced): its
                        // liveness decides, as for StartStep; the report follows a Proceed.
                        let d = self.start_handler_step(&def, step, a, input_json).await?;
                        if d != Disposition::Proceed {
                            return Ok(d);
                        }
                        self.store
                            .complete_step_released(Batch::new(), &call, &args, &queued)
                            .await?
                    }
                    (Started::Answer(Disposition::Proceed), None) => {
                        return Err(CoordinatorError::Internal(
                            "start_and_complete: a start that proceeded without its report's answer".into(),
                        ));
                    }
                    (Started::Answer(d), _) => {
                        self.started(&def, step, a, d, None, now);
                        return Ok(d);
                    }
                }
            }
        };
        crate::metrics::attempt(&def.name, &step.handler, crate::metrics::attempt_outcome(&completion));
        if !matches!(completion, Completion::Stale | Completion::Alive(_)) {
            crate::metrics::observe_close(self, &def.name, &step.handler, a.run_id, a.step_id, now);
        }
        let disposition = self.after_completion(&def, a.run_id, completion, now).await;
        // The slot this attempt held goes to the next waiter now, not at the next timer poll (the
        // `sem-wake` timer the effect armed stays as the backstop).
        for pool in released {
            if let Err(e) = self.wake_pool(&pool).await {
                tracing::warn!(pool = %pool, error = %e, "could not hand over a slot; the timer will");
            }
        }
        Ok(disposition)
    }

    async fn after_completion(
        &self,
        def: &WorkflowDefinition,
        run_id: &str,
        completion: Completion,
        now: i64,
    ) -> Disposition {
        match completion {
            Completion::Stale | Completion::Alive(_) => Disposition::Stale,
            // An emitting step goes on through its `emit` timer, due now.
            Completion::Retry(_) | Completion::Failed | Completion::Emit => Disposition::Proceed,
            Completion::Succeeded { dispatched, .. } => {
                self.launch(def, run_id, dispatched, now).await;
                Disposition::Proceed
            }
        }
    }

    /// Holds the outbox entries of `payloads` of run `run_id` (just committed) while this
    /// coordinator decides and publishes them, and notes them in `held` to release later.
    fn hold_outbox<'a>(
        &self,
        held: &mut Vec<String>,
        run_id: &str,
        payloads: impl Iterator<Item = &'a DispatchPayload>,
    ) {
        let first = held.len();
        held.extend(payloads.map(|p| crate::store::outbox_member(run_id, &p.step_id)));
        self.dispatcher
            .hold(held.get(first..).unwrap_or_default().iter().cloned());
    }

    /// Carries out dispatches a script committed: decides each step's fate ([`Engine::prepare`]:
    /// skip, fail, fan out, wait, sleep, start a child run) and publishes the task steps to RabbitMQ
    /// (in the background, many in flight). Each dispatch is in the outbox, so whatever fails here is
    /// done again by the sweeper.
    ///
    /// Child runs that steps start are launched by this same loop (a queue, not recursion), so a
    /// chain of sub-workflows, however deep, uses no more stack than one step.
    async fn launch(&self, def: &WorkflowDefinition, run_id: &str, payloads: Vec<DispatchPayload>, now: i64) {
        // The runs whose steps are queued: 0 is the caller's; child runs are added as they are made.
        let mut runs: Vec<(Option<Arc<WorkflowDefinition>>, String)> = vec![(None, run_id.to_string())];
        let mut queue: std::collections::VecDeque<(usize, DispatchPayload)> =
            payloads.into_iter().map(|p| (0, p)).collect();
        let mut tasks: Vec<StepTask> = Vec::with_capacity(queue.len());
        let mut queued = Vec::with_capacity(queue.len());
        // Hold the outbox entries just committed while their fate is decided and they are
        // published (see `dispatch`): another coordinator re-sends them only if this one dies.
        let mut held: Vec<String> = Vec::new();
        self.hold_outbox(&mut held, run_id, queue.iter().map(|(_, p)| p));
        while let Some((i, p)) = queue.pop_front() {
            let Some((owned, run)) = runs.get(i).cloned() else {
                continue;
            };
            let run_def: &WorkflowDefinition = owned.as_deref().unwrap_or(def);
            let step_id = p.step_id.clone();
            let (indexed, attempt) = (p.queued, p.attempt);
            let handler = if indexed {
                run_def.step(&step_id).map(|s| s.handler.clone()).unwrap_or_default()
            } else {
                String::new()
            };
            let launched = self.prepare(run_def, &run, p, now).await;
            if indexed && !matches!(launched, Ok(Launch::Publish(_)) | Err(_)) {
                // The commit indexed it as queued, but it does not go to a worker after all
                // (skipped, failed, parked, waiting for a slot): take the entry out again.
                crate::operations::unindex_queued(self, &handler, &run, &step_id, attempt).await;
            }
            match launched {
                Ok(Launch::Publish(task)) => {
                    if !indexed {
                        let limit = self.schedule_to_start(run_def, &task.step_id);
                        queued.push((
                            task.handler.clone(),
                            task.run_id.clone(),
                            task.step_id.clone(),
                            task.attempt,
                            limit,
                        ));
                    }
                    tasks.push(*task)
                }
                Ok(Launch::More(more)) => {
                    self.hold_outbox(&mut held, &run, more.iter());
                    queue.extend(more.into_iter().map(|p| (i, p)))
                }
                Ok(Launch::Child { def, run_id, payloads }) => {
                    self.hold_outbox(&mut held, &run_id, payloads.iter());
                    runs.push((Some(def), run_id));
                    let j = runs.len() - 1;
                    queue.extend(payloads.into_iter().map(|p| (j, p)));
                }
                Err(e) => {
                    tracing::warn!(run = %run, step = %step_id, error = %e, "could not launch a step; the sweeper will");
                }
            }
        }
        crate::operations::note_dispatched(self, &queued, now).await;
        // The holds of the tasks pass to their publishes; the rest (skipped, waiting, fanned
        // out, failed to launch: their entries are gone or left to the sweeper) end here.
        let publishing: std::collections::HashSet<String> = tasks
            .iter()
            .map(|t| crate::store::outbox_member(&t.run_id, &t.step_id))
            .collect();
        for m in held.iter().filter(|m| !publishing.contains(*m)) {
            self.dispatcher.unhold(m);
        }
        self.dispatcher.publish_detached(tasks);
    }

    /// The queued plan of `steps` of `def` ([`QueuedPlan`]): those that go straight to a worker
    /// when dispatched (a task step without `when`, `for_each`, rate limit or concurrency; its
    /// children when not every parent was skipped, which the script checks), with their handlers
    /// and schedule-to-start timeouts. The script that commits their dispatch indexes them as
    /// queued in the same round trip.
    fn queued_plan<'a>(&self, def: &WorkflowDefinition, steps: impl Iterator<Item = &'a StepDefinition>) -> QueuedPlan {
        let mut plan = QueuedPlan::default();
        for s in steps {
            let straight = matches!(s.kind, StepKind::Task)
                && s.for_each.is_none()
                && s.when.is_none()
                && s.rate_limit.is_none()
                && s.concurrency.is_none()
                && !s.handler.is_empty();
            if straight {
                plan.add(self.store.keys(), &s.id, &s.handler, self.schedule_to_start(def, &s.id));
            }
        }
        plan
    }

    /// The schedule-to-start timeout of `step_id` (a fan-out element counts as its step): the
    /// step's own, else the coordinator's `default_schedule_to_start`; `None` when neither is set.
    fn schedule_to_start(&self, def: &WorkflowDefinition, step_id: &str) -> Option<Duration> {
        def.step(step_id)
            .and_then(|s| s.schedule_to_start)
            .or((!self.config.default_schedule_to_start.is_zero()).then_some(self.config.default_schedule_to_start))
    }

    /// Decides what a dispatched step does, and does it: see [`Engine::decide`]. Idempotent: every
    /// change is fenced by the attempt in its script, so the sweeper may call this again for the
    /// same dispatch.
    async fn prepare(&self, def: &WorkflowDefinition, run_id: &str, p: DispatchPayload, now: i64) -> Result<Launch> {
        let Some(step) = def.step(&p.step_id) else {
            return Ok(Launch::More(Vec::new()));
        };
        match self.decide(def, step, run_id, &p, now).await {
            Ok(launch) => Ok(launch),
            Err(Halt::Skip(reason)) => self.skip(def, run_id, &p, &reason, now).await,
            Err(Halt::Fail(message)) => self.fail_now(def, run_id, &p, &message, now).await,
            Err(Halt::Error(e)) => Err(e),
        }
    }

    /// What a dispatched step does: the run core plans it by kind ([`core::kinds::plan`]: skipped,
    /// failed, published after its gates, fanned out, put to sleep or to wait, or given a child
    /// run), and this carries the plan out through the store.
    async fn decide(
        &self,
        def: &WorkflowDefinition,
        step: &StepDefinition,
        run_id: &str,
        p: &DispatchPayload,
        now: i64,
    ) -> std::result::Result<Launch, Halt> {
        let statuses = |id: &str| p.parent_statuses.get(id).cloned();
        let bindings = || machine::bindings(p);
        let planned = core::kinds::plan(
            step,
            core::kinds::Dispatched {
                workflow: &def.name,
                run_id,
                step_id: &p.step_id,
                attempt: p.attempt,
                dispatched_at: p.dispatched_at,
                input_json: &p.input_json,
                item_input: p.item_input.as_deref(),
                parent_statuses: &statuses,
                bindings: &bindings,
            },
            now,
        )?;
        let call = RunCall { run_id, now };
        let nothing = || Ok(Launch::More(Vec::new()));
        match planned {
            StartPlan::PublishElement { input } => Ok(Launch::Publish(Box::new(machine::task(
                def,
                step,
                run_id,
                p.clone(),
                input,
                now,
            )))),
            StartPlan::FanOut { inputs, max_parallel } => {
                // The inputs are stored a batch per call (bounded by elements and bytes), so
                // no call holds Redis for long; a stale answer means another launch started it.
                let mut kept = Vec::new();
                let mut first = 0;
                while first < inputs.len() {
                    let mut end = first;
                    let mut bytes = 0usize;
                    while let Some(input) = inputs.get(end)
                        && end - first < crate::store::ITEM_BATCH
                        && (end == first || bytes.saturating_add(input.len()) <= crate::store::ITEM_BATCH_BYTES)
                    {
                        bytes = bytes.saturating_add(input.len());
                        end += 1;
                    }
                    let batch = inputs.get(first..end).unwrap_or_default();
                    match self
                        .store
                        .stage_items(&call, &p.step_id, p.attempt, first, batch)
                        .await?
                    {
                        Some(k) => kept.extend(k),
                        None => return nothing(),
                    }
                    first = end;
                }
                let completion = self
                    .store
                    .start_items(&call, def, &p.step_id, p.attempt, max_parallel, inputs.len(), &kept)
                    .await?;
                if let Some(status) = crate::metrics::finished_status(&completion) {
                    crate::metrics::observe_finish(&self.store, &def.name, status, run_id, now);
                }
                Ok(Launch::More(match completion {
                    Completion::Succeeded { dispatched, .. } => dispatched,
                    _ => Vec::new(),
                }))
            }
            StartPlan::Publish { input, gates } => {
                if let Some(rate) = &gates.rate
                    && let Some(at) = self
                        .store
                        .rate_take(&rate.pool, rate.limit, rate.period, &rate.member, now)
                        .await?
                {
                    let timer = timer_member(TimerKind::RateWake, run_id, &step.id, p.attempt);
                    self.store
                        .park(&call, &step.id, p.attempt, &rate.waiting_for(at), &timer, at)
                        .await?;
                    return nothing();
                }
                if let Some(slot) = &gates.slot {
                    let lease = machine::due(now, self.slot_wait_lease(step));
                    match self
                        .store
                        .acquire(
                            &slot.pool,
                            slot.limit,
                            run_id,
                            &step.id,
                            p.attempt,
                            lease,
                            &slot.waiting_for(),
                            now,
                        )
                        .await?
                    {
                        SlotOutcome::Held => {}
                        SlotOutcome::Queued | SlotOutcome::Stale => return nothing(),
                    }
                }
                Ok(Launch::Publish(Box::new(machine::task(
                    def,
                    step,
                    run_id,
                    p.clone(),
                    input,
                    now,
                ))))
            }
            StartPlan::Sleep { wake } => {
                self.start_sleep(&step.id, wake, run_id, p, now).await?;
                nothing()
            }
            StartPlan::WaitEvent {
                ref event,
                ref key,
                timeout_at,
            } => {
                let detail = texts::waiting_for_event(event, key);
                let args = WaitArgs {
                    step: &step.id,
                    attempt: p.attempt,
                    mode: WaitMode::Event,
                    detail: &detail,
                    event: Some((event, key)),
                    child_run: "",
                    timeout_at,
                    worker: "",
                };
                self.store.wait(Batch::new(), &call, &args).await?;
                nothing()
            }
            StartPlan::Human { ref title, timeout_at } => {
                let mut pre = Batch::new();
                pre.zadd(self.store.keys().human_tasks(), format!("{run_id}|{}", step.id), now);
                let detail = texts::human_task(title);
                let args = WaitArgs {
                    step: &step.id,
                    attempt: p.attempt,
                    mode: WaitMode::Human,
                    detail: &detail,
                    event: None,
                    child_run: "",
                    timeout_at,
                    worker: "",
                };
                self.store.wait(pre, &call, &args).await?;
                nothing()
            }
            StartPlan::Child {
                workflow,
                version,
                input,
            } => self.start_child(step, run_id, p, &workflow, version, &input, now).await,
        }
    }

    /// Starts the child run of workflow step `step` (dispatched as `p`) and makes the step wait
    /// for it; the caller's loop launches the child's roots (no recursion).
    #[allow(clippy::too_many_arguments)]
    async fn start_child(
        &self,
        step: &StepDefinition,
        run_id: &str,
        p: &DispatchPayload,
        workflow: &str,
        version: u32,
        input: &serde_json::Value,
        now: i64,
    ) -> std::result::Result<Launch, Halt> {
        let call = RunCall { run_id, now };
        let child_def = match self.registry.get(workflow, version).await {
            Ok(d) => d.definition,
            Err(CoordinatorError::NotFound(m)) => return Err(Halt::Fail(texts::child_unknown(&m))),
            Err(e) => return Err(e.into()),
        };
        child_def
            .validate_input(input)
            .map_err(|e| Halt::Fail(texts::child_input_refused(&child_def.name, &e.to_string())))?;
        let depth = self.child_depth(run_id, &child_def.name).await?.map_err(Halt::Fail)?;
        // The id is derived from (run, step, attempt): doing this twice finds the same child.
        let child_id = ids::child_run_id(run_id, &step.id, p.attempt);
        let parent = ParentRef {
            run: run_id,
            step: &step.id,
            attempt: p.attempt,
            kind: ParentKind::Workflow,
            depth,
        };
        // Not launched here: the caller's loop launches the child's roots (no recursion).
        let (_, _, roots) = self
            .create_run_unlaunched(&child_def, &child_id, input, "", Some(&parent))
            .await?;
        let detail = texts::child_run(&child_id, &child_def.name, child_def.version);
        let args = WaitArgs {
            step: &step.id,
            attempt: p.attempt,
            mode: WaitMode::Child,
            detail: &detail,
            event: None,
            child_run: &child_id,
            timeout_at: 0,
            worker: "",
        };
        if self.store.wait(Batch::new(), &call, &args).await? == WaitOutcome::Stale {
            // The parent ended while the child was being made (a second launch of the same
            // dispatch is stale too, but then the parent is still going): stop the child.
            let parent_status = self.store.run_fields(run_id, &["status"]).await?.pop().flatten();
            if parent_status.is_none_or(|s| RunStatus::from_word(&s).is_none_or(RunStatus::is_terminal)) {
                match self.cancel_run(&child_id, "its parent run ended").await {
                    Ok(()) | Err(CoordinatorError::FailedPrecondition(_) | CoordinatorError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(Launch::Child {
            def: child_def,
            run_id: child_id,
            payloads: roots,
        })
    }

    /// Ends a dispatched step as `skipped`; returns what that dispatched.
    async fn skip(
        &self,
        def: &WorkflowDefinition,
        run_id: &str,
        p: &DispatchPayload,
        reason: &str,
        now: i64,
    ) -> Result<Launch> {
        self.finish_dispatched(def, run_id, p, StepOutcome::Skip, reason, now)
            .await
    }

    /// Fails a dispatched step for good (an expression could not be evaluated, a child workflow is
    /// unknown): retrying would give the same answer.
    async fn fail_now(
        &self,
        def: &WorkflowDefinition,
        run_id: &str,
        p: &DispatchPayload,
        message: &str,
        now: i64,
    ) -> Result<Launch> {
        tracing::info!(run = run_id, step = %p.step_id, message, "step failed before it started");
        self.finish_dispatched(def, run_id, p, StepOutcome::Error, message, now)
            .await
    }

    async fn finish_dispatched(
        &self,
        def: &WorkflowDefinition,
        run_id: &str,
        p: &DispatchPayload,
        outcome: StepOutcome,
        body: &str,
        now: i64,
    ) -> Result<Launch> {
        let mut pre = Batch::new();
        pre.zrem(
            self.store.keys().outbox(),
            [crate::store::outbox_member(run_id, &p.step_id)],
        );
        let args = CompleteArgs {
            def,
            step: &p.step_id,
            attempt: p.attempt,
            by: BY_COORDINATOR,
            outcome,
            body,
            retry_at: 0,
            heartbeat_timeout_ms: 0,
            error_type: "",
            error_details: "",
        };
        // Its children that go straight to a worker are indexed as queued by this same commit.
        let queued = self.queued_plan(def, def.children(split_item(&p.step_id).0));
        Ok(Launch::More(
            match self
                .store
                .complete_step_queued(pre, &RunCall { run_id, now }, &args, &queued)
                .await?
            {
                Completion::Succeeded { dispatched, .. } => dispatched,
                _ => Vec::new(),
            },
        ))
    }

    /// Completes a step the coordinator itself decided (a wake-up, an event, a human, a child run)
    /// with `outcome` (`ok`, `skip`, `error`, `timeout`), then launches what that dispatched.
    #[allow(clippy::too_many_arguments)]
    async fn complete_here(
        &self,
        def: &WorkflowDefinition,
        run_id: &str,
        step_id: &str,
        attempt: u32,
        by: Reporter<'_>,
        outcome: StepOutcome,
        body: &str,
        now: i64,
    ) -> Result<Disposition> {
        let args = CompleteArgs {
            def,
            step: step_id,
            attempt,
            by,
            outcome,
            body,
            retry_at: 0,
            heartbeat_timeout_ms: 0,
            error_type: "",
            error_details: "",
        };
        // Its children that go straight to a worker are indexed as queued by this same commit, not
        // by a `note_dispatched` round trip before their publish.
        let queued = self.queued_plan(def, def.children(split_item(step_id).0));
        let completion = self
            .store
            .complete_step_queued(Batch::new(), &RunCall { run_id, now }, &args, &queued)
            .await?;
        Ok(self.after_completion(def, run_id, completion, now).await)
    }

    /// Completes fan-out step `step_id` (attempt `attempt`) whose elements all succeeded: reads
    /// their outputs a page of [`crate::store::ITEM_BATCH`] at a time and completes the step with
    /// them in input order (outcome `items`), or fails it with `OutputTooLarge` when together they
    /// pass `max_payload_bytes`. Stale (a cancelled or re-run step) changes nothing.
    async fn gather_items(
        &self,
        def: &WorkflowDefinition,
        run_id: &str,
        step_id: &str,
        attempt: u32,
        now: i64,
    ) -> Result<()> {
        let f = self
            .store
            .step_fields(run_id, step_id, &["attempt", "status", "items_total"])
            .await?;
        let field = |i: usize| f.get(i).cloned().flatten().unwrap_or_default();
        if field(0) != attempt.to_string() || field(1) != "running" {
            return Ok(());
        }
        let total: usize = field(2).parse().unwrap_or(0);
        let limit = self.config.max_payload_bytes;
        let mut output = String::from("[");
        let mut from = 0;
        while from < total && output.len() <= limit {
            let to = from.saturating_add(crate::store::ITEM_BATCH).min(total);
            for (i, out) in self
                .store
                .item_outputs(run_id, step_id, from, to)
                .await?
                .iter()
                .enumerate()
            {
                if from + i > 0 {
                    output.push(',');
                }
                output.push_str(out);
            }
            from = to;
        }
        output.push(']');
        let (outcome, body) = if output.len() > limit {
            (StepOutcome::Error, texts::items_too_large(total, limit))
        } else {
            (StepOutcome::Items, output)
        };
        self.complete_here(
            def,
            run_id,
            step_id,
            attempt,
            Reporter::Coordinator("coordinator"),
            outcome,
            &body,
            now,
        )
        .await?;
        Ok(())
    }

    /// Starts a sleep (or `sleep_until`) step: it waits, holding no worker, `until <RFC 3339>`, and
    /// its wake-up timer is armed for `wake` (Unix ms) in the same script. A second start of the
    /// same dispatch (the sweeper) is stale and changes nothing.
    async fn start_sleep(&self, step: &str, wake: i64, run_id: &str, p: &DispatchPayload, now: i64) -> Result<()> {
        let detail = texts::sleeping_until(wake);
        let args = WaitArgs {
            step,
            attempt: p.attempt,
            mode: WaitMode::Sleep,
            detail: &detail,
            event: None,
            child_run: "",
            timeout_at: wake,
            worker: "",
        };
        self.store.wait(Batch::new(), &RunCall { run_id, now }, &args).await?;
        Ok(())
    }

    /// Handles one due timer. Idempotent: a timer of an attempt that is no longer current changes
    /// nothing.
    ///
    /// # Errors
    /// `Redis`, `Amqp`, `Publish`: the timer stays claimed and fires again after its lease.
    pub async fn fire_timer(&self, claimed: &Claimed) -> Result<()> {
        let Some((kind, run_id, step_id, attempt)) = TimerKind::parse(&claimed.member) else {
            tracing::warn!(member = %claimed.member, "dropping malformed timer");
            return self.store.release(false, claimed).await;
        };
        if kind == TimerKind::RunWake {
            self.wake_runs(run_id).await?;
            return self.store.release(false, claimed).await;
        }
        if kind == TimerKind::SlotWake {
            // The member's "run" is the pool.
            self.wake_pool(run_id).await?;
            return self.store.release(false, claimed).await;
        }
        if kind == TimerKind::CancelChild {
            match self.cancel_run(run_id, "its parent run ended").await {
                Ok(()) => tracing::info!(run = run_id, "cancelled a child run whose parent ended"),
                Err(CoordinatorError::FailedPrecondition(_) | CoordinatorError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            return self.store.release(false, claimed).await;
        }
        let Some((workflow, version)) = self.store.run_workflow(run_id).await? else {
            return self.store.release(false, claimed).await;
        };
        let def = self.registry.pinned(&workflow, version).await?;
        let now = now_ms();
        let call = RunCall { run_id, now };
        if kind == TimerKind::RunTimeout {
            let reason = texts::run_timed_out(def.timeout);
            match self.store.cancel_run(&call, &reason, EndStatus::TimedOut).await {
                Ok(()) => {
                    tracing::info!(run = run_id, "run timed out");
                    if let Err(e) = self.dispatcher.publish_cancel(run_id).await {
                        tracing::warn!(run = run_id, error = %e, "could not notify workers of a run timeout");
                    }
                }
                // Finished in time (or expired): nothing to do.
                Err(CoordinatorError::FailedPrecondition(_) | CoordinatorError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            return self.store.release(false, claimed).await;
        }
        let Some(step) = def.step(step_id) else {
            return self.store.release(false, claimed).await;
        };
        match kind {
            // A retry whose backoff elapsed, or a rate-limited step whose window has room: dispatch
            // it again (committed with its outbox entry: if this publish fails, the sweeper re-sends it).
            TimerKind::Retry | TimerKind::RateWake => {
                let mode = if kind == TimerKind::Retry {
                    DispatchMode::Retry
                } else {
                    DispatchMode::Unpark
                };
                if let Some(payload) = self.store.dispatch_attempt(&call, &def, step_id, attempt, mode).await? {
                    self.launch(&def, run_id, vec![payload], now).await;
                }
            }
            // Handled above: they name no step.
            TimerKind::RunTimeout | TimerKind::CancelChild | TimerKind::SlotWake | TimerKind::RunWake => {}
            TimerKind::Emit => self.emit_more(&def, run_id, step_id, attempt, now).await?,
            TimerKind::Items => self.gather_items(&def, run_id, step_id, attempt, now).await?,
            TimerKind::Wake => {
                let body = core::kinds::sleep::output(step, now);
                self.complete_here(&def, run_id, step_id, attempt, BY_TIMER, StepOutcome::Ok, &body, now)
                    .await?;
            }
            TimerKind::Event => {
                let delivered = self
                    .store
                    .step_fields(run_id, step_id, &["delivered"])
                    .await?
                    .pop()
                    .flatten()
                    .unwrap_or_default();
                if !delivered.is_empty() {
                    if core::kinds::wait::delivery(Kind::of(step, step_id)) == core::kinds::wait::Delivery::Resume {
                        // A suspended handler: run it again with the event as its resume data.
                        if let Some(p) = self.store.resume(&call, &def, step_id, attempt).await? {
                            self.launch(&def, run_id, vec![p], now).await;
                        }
                    } else {
                        self.complete_here(
                            &def,
                            run_id,
                            step_id,
                            attempt,
                            BY_EVENT,
                            StepOutcome::Ok,
                            &delivered,
                            now,
                        )
                        .await?;
                    }
                }
            }
            TimerKind::ChildDone => self.child_done(&def, run_id, step_id, attempt, now).await?,
            TimerKind::Held => {
                if let Some(due) = self.check_holder(&def, run_id, step_id, attempt, now).await? {
                    return self.store.schedule_timer(&claimed.member, due).await;
                }
            }
            TimerKind::Timeout | TimerKind::Heartbeat | TimerKind::ScheduleToStart => {
                if kind == TimerKind::Timeout && self.wait_timed_out(&def, run_id, step_id, attempt, now).await? {
                    return self.store.release(false, claimed).await;
                }
                let timer = match kind {
                    TimerKind::ScheduleToStart => AttemptTimer::ScheduleToStart,
                    TimerKind::Timeout => AttemptTimer::Timeout,
                    _ => AttemptTimer::Heartbeat,
                };
                let limit = self.schedule_to_start(&def, step_id).unwrap_or_default();
                let timed = classify::attempt_timer(timer, step, attempt, limit);
                let (outcome, message, hb_ms) = (timed.word, timed.message, timed.heartbeat_ms);
                let base = self.store.attempt_base(run_id, step_id).await?;
                let retry_at = classify::retry_time(
                    step,
                    attempt.saturating_sub(base),
                    timed.error_type,
                    true,
                    now,
                    Jitter::Random,
                );
                let mut pre = Batch::new();
                if retry_at > 0 {
                    pre.zadd(
                        self.store.keys().timers(),
                        timer_member(TimerKind::Retry, run_id, step_id, attempt.saturating_add(1)),
                        retry_at,
                    );
                }
                let args = CompleteArgs {
                    def: &def,
                    step: step_id,
                    attempt,
                    by: Reporter::Coordinator(""),
                    outcome,
                    body: &message,
                    retry_at,
                    heartbeat_timeout_ms: hb_ms,
                    error_type: timed.error_type,
                    error_details: "",
                };
                match self.store.complete_step(pre, &call, &args).await? {
                    Completion::Alive(last) => {
                        let due = last.saturating_add(i64::try_from(hb_ms).unwrap_or(i64::MAX));
                        let due = due.clamp(now.saturating_add(1), machine::LATEST_DUE_MS);
                        self.store.schedule_timer(&claimed.member, due).await?;
                        return Ok(());
                    }
                    other => {
                        if other != Completion::Stale {
                            crate::metrics::attempt(&def.name, &step.handler, "timed_out");
                            crate::metrics::observe_close(self, &def.name, &step.handler, run_id, step_id, now);
                            tracing::info!(
                                run = run_id,
                                step = step_id,
                                attempt,
                                outcome = outcome.word(),
                                "attempt timed out"
                            );
                        }
                    }
                }
            }
        }
        self.store.release(false, claimed).await
    }

    /// A copy of a running attempt was dropped as a duplicate: if the worker holding it is gone, the
    /// attempt is dispatched and published again (whoever starts it then holds it). Returns when to
    /// look again while the holder lives (Unix ms); `None` when done.
    async fn check_holder(
        &self,
        def: &WorkflowDefinition,
        run_id: &str,
        step_id: &str,
        attempt: u32,
        now: i64,
    ) -> Result<Option<i64>> {
        let f = self
            .store
            .step_fields(run_id, step_id, &["status", "attempt", "worker"])
            .await?;
        let holder = f[2].clone().unwrap_or_default();
        if f[0].as_deref() != Some("running")
            || f[1].as_deref() != Some(attempt.to_string().as_str())
            || holder.is_empty()
        {
            return Ok(None);
        }
        let call = RunCall { run_id, now };
        match self.store.take_over(&call, def, step_id, attempt, &holder).await? {
            TakeOver::Stale => Ok(None),
            TakeOver::Alive(left) => {
                let left = left.map_or(Duration::from_secs(5), Duration::from_millis);
                Ok(Some(machine::due(now, left.saturating_add(HOLDER_RECHECK_MARGIN))))
            }
            TakeOver::Dispatch(payload) => {
                tracing::info!(
                    run = run_id,
                    step = step_id,
                    attempt,
                    holder = %holder,
                    "the worker holding an attempt is gone; sending the attempt again"
                );
                self.launch(def, run_id, vec![payload], now).await;
                Ok(None)
            }
        }
    }

    /// A timeout of a waiting step (a `wait_for_event` step or a suspended handler): ends it as its
    /// definition says. Returns false when the step is not waiting (an ordinary timeout then).
    async fn wait_timed_out(
        &self,
        def: &WorkflowDefinition,
        run_id: &str,
        step_id: &str,
        attempt: u32,
        now: i64,
    ) -> Result<bool> {
        let f = self
            .store
            .step_fields(run_id, step_id, &["status", "attempt", "waiting_for"])
            .await?;
        if f[0].as_deref() != Some("waiting") || f[1].as_deref() != Some(attempt.to_string().as_str()) {
            return Ok(false);
        }
        let waiting_for = f[2].clone().unwrap_or_default();
        let Some(step) = def.step(step_id) else { return Ok(true) };
        let ending = core::kinds::wait::timed_out(Kind::of(step, step_id), &waiting_for);
        let (outcome, message) = ending.parts();
        self.complete_here(def, run_id, step_id, attempt, BY_TIMER, outcome, message, now)
            .await?;
        Ok(true)
    }

    /// A child run finished: its output becomes the workflow step's output, its failure the step's.
    async fn child_done(
        &self,
        def: &WorkflowDefinition,
        run_id: &str,
        step_id: &str,
        attempt: u32,
        now: i64,
    ) -> Result<()> {
        let Some(child) = self
            .store
            .step_fields(run_id, step_id, &["child_run"])
            .await?
            .pop()
            .flatten()
            .filter(|c| !c.is_empty())
            .or_else(|| Some(ids::child_run_id(run_id, step_id, attempt)))
        else {
            return Ok(());
        };
        let f = self.store.run_fields(&child, &["status", "output", "error"]).await?;
        let field = |i: usize| f.get(i).cloned().flatten();
        let error = field(2).unwrap_or_default();
        // Not finished (a stale notice) or expired: nothing to do.
        if let Some(ending) =
            core::kinds::child::ended(&child, &field(0).unwrap_or_default(), field(1).as_deref(), &error)
        {
            let (outcome, body) = ending.parts();
            self.complete_here(def, run_id, step_id, attempt, BY_CHILD, outcome, body, now)
                .await?;
        }
        Ok(())
    }

    /// Starts an emitting step's child runs: evaluates `emit.items` and `emit.key` over the step's
    /// output, stores the plan (child id and input per element, deduplicated by key) and starts the
    /// first `max_in_flight`. Child ids are derived from (run, step, key), so emitting again (a
    /// retry, a re-run, a coordinator that died half-way) finds the runs made before.
    async fn start_emit(
        &self,
        def: &WorkflowDefinition,
        run_id: &str,
        step_id: &str,
        attempt: u32,
        now: i64,
    ) -> Result<()> {
        let Some(step) = def.step(step_id) else { return Ok(()) };
        let Some(emit) = &step.emit else { return Ok(()) };
        let mut reads = step.reads.clone();
        reads.push(step.id.clone());
        let (input, statuses, outputs) = self.store.step_bindings(run_id, &reads, "emit_output").await?;
        let mut b = baton_shared::expr::Bindings {
            input: serde_json::from_str(&input).unwrap_or(serde_json::Value::Null),
            ..Default::default()
        };
        for ((id, status), output) in reads.iter().zip(statuses).zip(outputs) {
            let status = if id == &step.id {
                "succeeded".to_string()
            } else {
                status
            };
            let output = serde_json::from_str(&output).unwrap_or(serde_json::Value::Null);
            b.steps.insert(id.clone(), (status, output));
        }
        let plan = match core::kinds::emit::plan(emit, run_id, step_id, &mut b) {
            Ok(plan) => plan,
            Err(e) => return self.fail_emit(def, run_id, step_id, attempt, &e, now).await,
        };
        self.store.store_emit_plan(run_id, step_id, &plan).await?;
        tracing::info!(run = run_id, step = step_id, children = plan.len(), "emitting runs");
        self.emit_more(def, run_id, step_id, attempt, now).await
    }

    /// Fails an emitting step from the coordinator (a child workflow it cannot find, nest or
    /// start): the step's error is `texts::emit_failed(reason)`.
    async fn fail_emit(
        &self,
        def: &WorkflowDefinition,
        run_id: &str,
        step_id: &str,
        attempt: u32,
        reason: &str,
        now: i64,
    ) -> Result<()> {
        let message = texts::emit_failed(reason);
        self.complete_here(
            def,
            run_id,
            step_id,
            attempt,
            BY_COORDINATOR,
            StepOutcome::Error,
            &message,
            now,
        )
        .await?;
        Ok(())
    }

    /// Goes on with an emitting step: starts more child runs while fewer than `max_in_flight` are
    /// unfinished (batches of 500 in one Redis round trip each), and completes the step when all
    /// are started (`wait: false`) or finished (`wait: true`).
    async fn emit_more(
        &self,
        def: &WorkflowDefinition,
        run_id: &str,
        step_id: &str,
        _attempt: u32,
        now: i64,
    ) -> Result<()> {
        let Some(step) = def.step(step_id) else { return Ok(()) };
        let Some(emit) = &step.emit else { return Ok(()) };
        let f = self
            .store
            .step_fields(
                run_id,
                step_id,
                &[
                    "status",
                    "attempt",
                    "emit_planned",
                    "emit_total",
                    "emit_next",
                    "emit_succeeded",
                    "emit_failed",
                    "emit_output",
                    "worker",
                ],
            )
            .await?;
        let text = |i: usize| f[i].clone().unwrap_or_default();
        let num = |i: usize| text(i).parse::<u64>().unwrap_or(0);
        if text(0) != "waiting" {
            return Ok(());
        }
        let attempt = num(1) as u32;
        if text(2).is_empty() {
            return Box::pin(self.start_emit(def, run_id, step_id, attempt, now)).await;
        }
        let (total, mut next, succeeded, failed) = (num(3), num(4), num(5), num(6));
        let child_def = match self.registry.get(&emit.workflow, emit.version).await {
            Ok(r) => r.definition,
            Err(CoordinatorError::NotFound(m)) => {
                self.fail_emit(def, run_id, step_id, attempt, &m, now).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut finished = succeeded.saturating_add(failed);
        let depth = match self.child_depth(run_id, &child_def.name).await? {
            Ok(depth) => depth,
            Err(message) => {
                self.fail_emit(def, run_id, step_id, attempt, &message, now).await?;
                return Ok(());
            }
        };
        let parent = ParentRef {
            run: run_id,
            step: step_id,
            attempt,
            kind: ParentKind::Emit,
            depth,
        };
        while next < total {
            let room = core::kinds::emit::room(emit, next, finished, EMIT_BATCH);
            if room == 0 {
                break;
            }
            let batch = self.store.emit_plan_range(run_id, step_id, next, room).await?;
            if batch.is_empty() {
                break;
            }
            let mut runs = Vec::with_capacity(batch.len());
            for (child_id, input) in batch {
                let valid = serde_json::from_str(&input)
                    .map_err(|e| e.to_string())
                    .and_then(|v| child_def.validate_input(&v).map_err(|e| e.to_string()));
                if let Err(e) = valid {
                    self.fail_emit(
                        def,
                        run_id,
                        step_id,
                        attempt,
                        &format!("input of child run {child_id}: {e}"),
                        now,
                    )
                    .await?;
                    return Ok(());
                }
                let run_slot = match serde_json::from_str::<serde_json::Value>(&input)
                    .map_err(|e| CoordinatorError::InvalidArgument(e.to_string()))
                    .and_then(|v| run_slot(&child_def, &v))
                {
                    Ok(slot) => slot.map(|s| s.pool),
                    Err(e) => {
                        self.fail_emit(
                            def,
                            run_id,
                            step_id,
                            attempt,
                            &format!("child run {child_id}: {e}"),
                            now,
                        )
                        .await?;
                        return Ok(());
                    }
                };
                runs.push(NewRun {
                    run_id: child_id,
                    input_json: input,
                    run_slot,
                });
            }
            let answers = self.store.create_runs(&runs, &child_def, &parent, now).await?;
            let mut existed_done = Vec::new();
            for (r, answer) in runs.iter().zip(answers) {
                if !matches!(answer, CreateOutcome::Exists(_)) {
                    crate::traces::remember_run(&self.store, &r.run_id, &child_def.name, Some(run_id)).await;
                }
                match answer {
                    CreateOutcome::Queued => {}
                    CreateOutcome::Created => {
                        let payloads = machine::root_payloads(&child_def, &r.input_json, now);
                        Box::pin(self.launch(&child_def, &r.run_id, payloads, now)).await;
                    }
                    // Made by an earlier emission: if it already finished, count it now.
                    CreateOutcome::Exists(status)
                        if RunStatus::from_word(&status).is_some_and(RunStatus::is_terminal) =>
                    {
                        existed_done.push((r.run_id.clone(), status == "succeeded"));
                    }
                    CreateOutcome::Exists(_) => {}
                }
            }
            finished += self.store.count_emitted_done(run_id, step_id, &existed_done).await?;
            next += runs.len() as u64;
            self.store.set_emit_next(run_id, step_id, next).await?;
        }
        let counts = self
            .store
            .step_fields(run_id, step_id, &["emit_succeeded", "emit_failed"])
            .await?;
        let finished = counts
            .iter()
            .map(|c| c.as_deref().and_then(|c| c.parse::<u64>().ok()).unwrap_or(0))
            .sum::<u64>();
        let done = core::kinds::emit::done(emit, total, next, finished);
        if done {
            let output = text(7);
            // The emitter's handler ran on this worker; the step ends now by the coordinator's hand.
            let worker = text(8);
            self.complete_here(
                def,
                run_id,
                step_id,
                attempt,
                Reporter::Coordinator(&worker),
                StepOutcome::Ok,
                &output,
                now,
            )
            .await?;
            tracing::info!(run = run_id, step = step_id, total, finished, "emitting step done");
        } else {
            // A backstop: child completions drive this, but a coordinator that died half-way is
            // picked up by this timer.
            self.store
                .schedule_timer(
                    &timer_member(TimerKind::Emit, run_id, step_id, 0),
                    now.saturating_add(EMIT_BACKSTOP_MS),
                )
                .await?;
        }
        Ok(())
    }

    /// How long a slot given to a waiting step is held before its attempt starts (then the lease runs
    /// to the end of the attempt's timeout).
    fn slot_wait_lease(&self, step: &baton_shared::definition::StepDefinition) -> Duration {
        step.timeout
            .saturating_add(SLOT_LEASE_MARGIN)
            .saturating_add(self.config.dispatch_grace)
            .saturating_add(SLOT_QUEUE_ALLOWANCE)
    }

    /// Starts the runs queued for the free run slots of `pool` (`<workflow>/run[/<key>]`).
    async fn wake_runs(&self, pool: &str) -> Result<()> {
        let Some(workflow) = pool.split('/').next() else {
            return Ok(());
        };
        let def = match self.registry.get(workflow, 0).await {
            Ok(r) => r.definition,
            Err(CoordinatorError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(limit) = def.max_concurrent_runs else {
            return Ok(());
        };
        let now = now_ms();
        for run_id in self.store.wake_runs(pool, limit, now).await? {
            let Some((workflow, version)) = self.store.run_workflow(&run_id).await? else {
                continue;
            };
            let def = self.registry.pinned(&workflow, version).await?;
            let call = RunCall { run_id: &run_id, now };
            let mut payloads = Vec::new();
            for root in def.roots() {
                if let Some(p) = self
                    .store
                    .dispatch_attempt(&call, &def, &root.id, 0, DispatchMode::Check)
                    .await?
                {
                    payloads.push(p);
                }
            }
            tracing::info!(run = %run_id, pool, "a run got its run slot");
            self.launch(&def, &run_id, payloads, now).await;
        }
        Ok(())
    }

    /// Hands the free slots of concurrency pool `pool` to its waiters and publishes them.
    async fn wake_pool(&self, pool: &str) -> Result<()> {
        let mut parts = pool.splitn(3, '/');
        let (Some(workflow), Some(step_id)) = (parts.next(), parts.next()) else {
            return Ok(());
        };
        let def = match self.registry.get(workflow, 0).await {
            Ok(r) => r.definition,
            Err(CoordinatorError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(step) = def.step(step_id) else { return Ok(()) };
        // The limit the waiters asked with: a later version may have changed or dropped it.
        let limit = match self.store.slot_limit(pool).await? {
            Some(limit) => limit,
            None => match &step.concurrency {
                Some(c) => c.limit,
                None => return Ok(()),
            },
        };
        let now = now_ms();
        let granted = self
            .store
            .wake(pool, limit, machine::due(now, self.slot_wait_lease(step)), now)
            .await?;
        for (run_id, step_id, _) in granted {
            let Some((workflow, version)) = self.store.run_workflow(&run_id).await? else {
                continue;
            };
            let def = self.registry.pinned(&workflow, version).await?;
            let call = RunCall { run_id: &run_id, now };
            if let Some(payload) = self
                .store
                .dispatch_attempt(&call, &def, &step_id, 0, DispatchMode::Check)
                .await?
            {
                self.launch(&def, &run_id, vec![payload], now).await;
            }
        }
        Ok(())
    }

    /// Re-sends a dispatch whose publish was never confirmed (the coordinator died between commit and
    /// publish, or RabbitMQ was down), or whose launch did not finish. Only a step still `dispatched`
    /// at that attempt is re-sent.
    ///
    /// # Errors
    /// `Redis`, `Amqp`, `Publish`: the entry stays in the outbox and is tried again.
    pub async fn redispatch(&self, claimed: &Claimed) -> Result<()> {
        let Some((run_id, step_id)) = parse_outbox_member(&claimed.member) else {
            return self.store.release(true, claimed).await;
        };
        let Some((workflow, version)) = self.store.run_workflow(run_id).await? else {
            return self.store.release(true, claimed).await;
        };
        let def = self.registry.pinned(&workflow, version).await?;
        if def.step(step_id).is_none() {
            return self.store.release(true, claimed).await;
        }
        let now = now_ms();
        match self
            .store
            .dispatch_attempt(&RunCall { run_id, now }, &def, step_id, 0, DispatchMode::Check)
            .await?
        {
            Some(payload) => {
                tracing::info!(
                    run = run_id,
                    step = step_id,
                    attempt = payload.attempt,
                    "re-sending an unconfirmed dispatch"
                );
                match self.prepare(&def, run_id, payload, now).await? {
                    // A confirmed publish removes the entry.
                    Launch::Publish(task) => {
                        let limit = self.schedule_to_start(&def, &task.step_id);
                        let queued = [(
                            task.handler.clone(),
                            task.run_id.clone(),
                            task.step_id.clone(),
                            task.attempt,
                            limit,
                        )];
                        crate::operations::note_dispatched(self, &queued, now).await;
                        self.dispatcher.publish(&task).await
                    }
                    Launch::More(more) => {
                        self.launch(&def, run_id, more, now).await;
                        Ok(())
                    }
                    Launch::Child { def, run_id, payloads } => {
                        self.launch(&def, &run_id, payloads, now).await;
                        Ok(())
                    }
                }
            }
            None => self.store.release(true, claimed).await,
        }
    }

    /// The timer that ends a run at its workflow's `timeout`, if it has one (due from `now`).
    fn run_timeout_timer(&self, def: &WorkflowDefinition, run_id: &str, now: i64) -> Vec<(String, i64)> {
        def.timeout
            .map(|t| (timer_member(TimerKind::RunTimeout, run_id, "", 0), machine::due(now, t)))
            .into_iter()
            .collect()
    }

    /// Cancels a run, then tells the workers running its steps.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed id; `NotFound`; `FailedPrecondition` when it already finished.
    pub async fn cancel_run(&self, run_id: &str, reason: &str) -> Result<()> {
        check_run_id(run_id)?;
        let reason = texts::cancelled(reason);
        self.store
            .cancel_run(&RunCall { run_id, now: now_ms() }, &reason, EndStatus::Cancelled)
            .await?;
        if let Err(e) = self.dispatcher.publish_cancel(run_id).await {
            tracing::warn!(run = run_id, error = %e, "could not notify workers of a cancel; they learn it when they report");
        }
        Ok(())
    }

    /// Runs a finished run's failed and cancelled steps again (`from = None`), or everything from step
    /// `from` on, optionally with a new input. Returns the steps dispatched.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed id, an unknown `from` step or a bad input; `NotFound`;
    /// `FailedPrecondition` when the run has not finished (or, for a retry, nothing failed).
    pub async fn reset_run(&self, run_id: &str, from: Option<&str>, input_json: &str) -> Result<Vec<String>> {
        check_run_id(run_id)?;
        // An archived run comes back to Redis first (and leaves the archive).
        if self.archive.is_some() {
            crate::archiver::restore(self, run_id).await?;
        }
        let Some((workflow, version)) = self.store.run_workflow(run_id).await? else {
            return Err(CoordinatorError::NotFound(format!(
                "run_id: no run {run_id} ({})",
                crate::reset::lost_hint()
            )));
        };
        let def = self.registry.pinned(&workflow, version).await?;
        let steps = match from {
            None => None,
            Some(step) if def.step(step).is_some() => Some(machine::descendants(&def, step)),
            Some(step) => {
                return Err(CoordinatorError::InvalidArgument(format!(
                    "from_step: workflow {workflow:?} version {version} has no step {}",
                    echo(step)
                )));
            }
        };
        let input = if input_json.trim().is_empty() {
            None
        } else {
            let value: serde_json::Value = serde_json::from_str(input_json)
                .map_err(|e| CoordinatorError::InvalidArgument(format!("input_json: not valid JSON: {e}")))?;
            def.validate_input(&value)?;
            Some(value.to_string())
        };
        let now = now_ms();
        // The outbox entries come due a lease ahead, held by this coordinator while it launches them.
        let due = machine::due(now, self.config.timer_lease);
        let call = RunCall { run_id, now };
        let payloads = self
            .store
            .reset_steps(
                &call,
                &def,
                steps.as_deref(),
                input.as_deref(),
                due,
                &self.run_timeout_timer(&def, run_id, now),
            )
            .await?;
        let dispatched = payloads.iter().map(|p| p.step_id.clone()).collect();
        self.launch(&def, run_id, payloads, now).await;
        Ok(dispatched)
    }

    /// Records a custom event of a running attempt of a step that runs a handler, sent by `worker`,
    /// which must hold the attempt (`""`, from workers older than `EmitEventRequest.worker_id`:
    /// not checked). Anything else is answered `Stale` and records nothing.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed id, a payload that is not JSON or over the size limit.
    pub async fn emit_event(
        &self,
        run_id: &str,
        step_id: &str,
        attempt: u32,
        worker: &str,
        payload_json: &str,
    ) -> Result<Disposition> {
        check_run_id(run_id)?;
        let value = self.check_json("payload_json", payload_json, "")?;
        if self.handler_run(run_id, step_id).await?.is_none() {
            return Ok(Disposition::Stale);
        }
        self.store
            .emit_event(
                &RunCall { run_id, now: now_ms() },
                step_id,
                attempt,
                worker,
                &value.to_string(),
            )
            .await
    }

    /// Publishes an event: delivers it to every step waiting for (name, key), or buffers it for
    /// `event_ttl`. Returns the (run, step) pairs it was delivered to (empty: buffered).
    ///
    /// # Errors
    /// `InvalidArgument` for an empty name, or a payload that is not JSON or over the size limit.
    pub async fn publish_event(&self, name: &str, key: &str, payload_json: &str) -> Result<Vec<(String, String)>> {
        let name = name.trim();
        if name.is_empty() {
            return Err(CoordinatorError::InvalidArgument("name: required".into()));
        }
        let payload = self.check_json("payload_json", payload_json, "null")?.to_string();
        let delivered = self
            .store
            .publish_event(
                name,
                key,
                &payload,
                self.config.event_ttl,
                self.config.event_buffer_max,
                now_ms(),
            )
            .await?;
        tracing::info!(event = name, key, delivered = delivered.len(), "event published");
        Ok(delivered)
    }

    /// Starts a run of every workflow (latest version) whose definition says `on: {event: name}`
    /// and whose filter holds for the payload, with the payload as its input. A workflow whose
    /// filter cannot be evaluated over the payload, or whose input schema refuses it, is left out
    /// (logged, and returned as a [`TriggerError`]). Returns the runs started and the errors.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn start_triggered_runs(
        &self,
        name: &str,
        payload_json: &str,
    ) -> Result<(Vec<String>, Vec<TriggerError>)> {
        let payload = self.check_json("payload_json", payload_json, "null")?;
        let mut started = Vec::new();
        let mut errors = Vec::new();
        for workflow in self.registry.names().await? {
            let def = match self.registry.get(&workflow, 0).await {
                Ok(r) => r.definition,
                Err(CoordinatorError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            let Some(on) = def.on.as_ref().filter(|on| on.event == name) else {
                continue;
            };
            if let Some(filter) = &on.filter {
                let b = baton_shared::expr::Bindings {
                    input: payload.clone(),
                    ..Default::default()
                };
                match filter.eval_bool(&b) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(workflow = %def.name, event = name, error = %e, "trigger filter failed; no run");
                        errors.push(TriggerError {
                            workflow: def.name.clone(),
                            version: def.version,
                            error: format!("on.filter: {e}"),
                        });
                        continue;
                    }
                }
            }
            if let Err(e) = def.validate_input(&payload) {
                tracing::warn!(workflow = %def.name, event = name, error = %e, "event payload does not fit the input schema; no run");
                errors.push(TriggerError {
                    workflow: def.name.clone(),
                    version: def.version,
                    error: format!("input_schema: {e}"),
                });
                continue;
            }
            let (run_id, _) = self.create_run(&def, &ids::new_run_id(), &payload, "", None).await?;
            tracing::info!(workflow = %def.name, event = name, run = %run_id, "event started a run");
            started.push(run_id);
        }
        Ok((started, errors))
    }

    /// The buffered events, per (name, key), oldest pair first; only those of `name` unless it is
    /// empty. `limit` 0 means 100.
    ///
    /// # Errors
    /// `InvalidArgument` for a limit over 1000; `Redis`.
    pub async fn list_buffered_events(&self, name: &str, limit: u32) -> Result<Vec<BufferedEvents>> {
        let limit = match limit {
            0 => 100,
            n if n > 1000 => {
                return Err(CoordinatorError::InvalidArgument(format!(
                    "limit: {n} is over the maximum of 1000"
                )));
            }
            n => n as usize,
        };
        Ok(self
            .store
            .buffered_events(name, limit)
            .await?
            .into_iter()
            .map(|b| BufferedEvents {
                name: b.name,
                key: b.key,
                count: u32::try_from(b.count).unwrap_or(u32::MAX),
                oldest_payload_json: b.oldest,
                newest_payload_json: b.newest,
                last_buffered_at: baton_shared::time::timestamp(b.last_at),
            })
            .collect())
    }

    /// Drops the buffered events of `name` and `key` (of every key with `all_keys`). Returns how
    /// many events were dropped.
    ///
    /// # Errors
    /// `InvalidArgument` for an empty name; `Redis`.
    pub async fn purge_buffered_events(&self, name: &str, key: &str, all_keys: bool) -> Result<u64> {
        let name = name.trim();
        if name.is_empty() {
            return Err(CoordinatorError::InvalidArgument("name: required".into()));
        }
        let purged = self
            .store
            .purge_buffered_events(name, (!all_keys).then_some(key))
            .await?;
        tracing::info!(event = name, key, all_keys, purged, "buffered events purged");
        Ok(purged)
    }

    /// Reads JSON text a caller sent in `field`: at most `max_payload_bytes`, and `if_empty` when it
    /// is empty or blank (`""` to refuse an empty text).
    ///
    /// # Errors
    /// `InvalidArgument` naming the field: over the size limit, or not JSON.
    fn check_json(&self, field: &str, text: &str, if_empty: &str) -> Result<serde_json::Value> {
        if text.len() > self.config.max_payload_bytes {
            return Err(CoordinatorError::InvalidArgument(format!(
                "{field}: {} bytes is over the limit of {} bytes",
                text.len(),
                self.config.max_payload_bytes
            )));
        }
        let text = if text.trim().is_empty() { if_empty } else { text };
        serde_json::from_str(text)
            .map_err(|e| CoordinatorError::InvalidArgument(format!("{field}: not valid JSON: {e}")))
    }

    /// Human tasks, newest first, filtered (empty filters match all). `status` is `open`,
    /// `completed` or `cancelled`. Looks at the newest 10,000 tasks at most.
    ///
    /// # Errors
    /// `InvalidArgument` for an unknown status; `Redis`.
    pub async fn list_human_tasks(
        &self,
        assignee: &str,
        workflow: &str,
        status: &str,
        limit: u32,
    ) -> Result<Vec<HumanTask>> {
        if !matches!(status, "" | "open" | "completed" | "cancelled") {
            return Err(CoordinatorError::InvalidArgument(format!(
                "status: {} is not one of open, completed, cancelled",
                echo(status)
            )));
        }
        let limit = match limit {
            0 => 100,
            n => n.min(1000) as usize,
        };
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (run_id, step_id) in self.store.human_tasks(10_000).await? {
            let Some(task) = self.human_task(&run_id, &step_id).await? else {
                gone.push(format!("{run_id}|{step_id}"));
                continue;
            };
            if (!assignee.is_empty() && !task.assignees.iter().any(|a| a == assignee))
                || (!workflow.is_empty() && task.workflow != workflow)
                || (!status.is_empty() && task.status != status)
            {
                continue;
            }
            out.push(task);
            if out.len() == limit {
                break;
            }
        }
        self.store.drop_human_tasks(&gone).await?;
        Ok(out)
    }

    /// One human task as the API shows it; `None` when its run is gone.
    pub(crate) async fn human_task(&self, run_id: &str, step_id: &str) -> Result<Option<HumanTask>> {
        let run = self
            .store
            .run_fields(run_id, &["workflow", "version", "archived_at"])
            .await?;
        if run.get(2).cloned().flatten().is_some() {
            // Archived: Redis keeps only its tombstone; the task is as the archive keeps it.
            return Ok(crate::archiver::archived(self, run_id)
                .await?
                .and_then(|a| a.human_tasks.into_iter().find(|t| t.step_id == step_id)));
        }
        let (Some(workflow), Some(version)) = (run[0].clone(), run[1].as_deref().and_then(|v| v.parse().ok())) else {
            return Ok(None);
        };
        let def = self.registry.pinned(&workflow, version).await?;
        let Some(StepKind::Human(h)) = def.step(step_id).map(|s| &s.kind) else {
            return Ok(None);
        };
        let f = self
            .store
            .step_fields(
                run_id,
                step_id,
                &["status", "started_at", "completed_by", "completed_at", "output"],
            )
            .await?;
        let get = |i: usize| f[i].clone().unwrap_or_default();
        let completed_by = get(2);
        let status = match get(0).as_str() {
            "waiting" => "open",
            "succeeded" if !completed_by.is_empty() => "completed",
            _ => "cancelled",
        };
        Ok(Some(HumanTask {
            run_id: run_id.to_string(),
            step_id: step_id.to_string(),
            workflow,
            workflow_version: version,
            title: h.title.clone(),
            description: h.description.clone(),
            assignees: h.assignees.clone(),
            form_schema_json: h.form.to_string(),
            status: status.into(),
            created_at: baton_shared::time::timestamp(get(1).parse().unwrap_or(0)),
            completed_at: baton_shared::time::timestamp(get(3).parse().unwrap_or(0)),
            data_json: if status == "completed" { get(4) } else { String::new() },
            completed_by,
        }))
    }

    /// Completes an open human task: checks that `completer` may (with auth on: one of the task's
    /// assignees, or any caller when it has none, or an admin), checks `data_json` against the
    /// step's form, records who completed it and when, and makes the data the step's output.
    ///
    /// # Errors
    /// `InvalidArgument` for a missing user (auth off), data that is not JSON or fails the form
    /// (naming the JSON path, e.g. `data/approved`), or a step that is not a human step;
    /// `PermissionDenied` for an authenticated caller who is not an assignee, or whose request
    /// names another user; `NotFound` for no such run; `FailedPrecondition` when the task is not
    /// open.
    pub async fn complete_human_task(
        &self,
        run_id: &str,
        step_id: &str,
        completer: Completer<'_>,
        data_json: &str,
    ) -> Result<HumanTask> {
        check_run_id(run_id)?;
        let user = match completer {
            Completer::Claimed(user) => user.trim(),
            Completer::Authenticated(p) => p.identity(),
        };
        if user.is_empty() {
            return Err(CoordinatorError::InvalidArgument("user: required".into()));
        }
        let data = self.check_json("data_json", data_json, "null")?;
        let data_text = data.to_string();
        let Some((workflow, version)) = self.store.run_workflow(run_id).await? else {
            return Err(CoordinatorError::NotFound(format!(
                "run_id: no run {run_id} ({})",
                crate::reset::lost_hint()
            )));
        };
        let def = self.registry.pinned(&workflow, version).await?;
        let Some(StepKind::Human(h)) = def.step(step_id).map(|s| &s.kind) else {
            return Err(CoordinatorError::InvalidArgument(format!(
                "step_id: workflow {workflow:?} version {version} has no human step {}",
                echo(step_id)
            )));
        };
        if let Completer::Authenticated(p) = completer {
            may_complete(p, &h.assignees, step_id)?;
        }
        h.validate(&data)?;
        let f = self.store.step_fields(run_id, step_id, &["status", "attempt"]).await?;
        let status = f[0].clone().unwrap_or_default();
        if status != "waiting" {
            return Err(CoordinatorError::FailedPrecondition(format!(
                "step_id: the task of step {step_id} is not open (the step is {status})"
            )));
        }
        let attempt: u32 = f[1].as_deref().and_then(|a| a.parse().ok()).unwrap_or(0);
        let now = now_ms();
        match self
            .complete_here(
                &def,
                run_id,
                step_id,
                attempt,
                Reporter::Human(user),
                StepOutcome::Ok,
                &data_text,
                now,
            )
            .await?
        {
            Disposition::Proceed => {}
            _ => {
                return Err(CoordinatorError::FailedPrecondition(format!(
                    "step_id: the task of step {step_id} is no longer open"
                )));
            }
        }
        tracing::info!(run = run_id, step = step_id, user, "human task completed");
        self.human_task(run_id, step_id)
            .await?
            .ok_or_else(|| CoordinatorError::NotFound(format!("run_id: no run {run_id}")))
    }
}

/// Who completes a human task.
#[derive(Debug, Clone, Copy)]
pub enum Completer<'a> {
    /// Auth is off: the request's `user`, taken as given.
    Claimed(&'a str),
    /// Auth is on: the caller's authenticated identity (recorded as `completed_by`).
    Authenticated(&'a crate::auth::Principal),
}

/// `PermissionDenied` unless `p` may complete the task of `step_id` assigned to `assignees`: an
/// admin may complete any task; anyone else only a task with no assignees, or one whose assignees
/// name the token's user.
fn may_complete(p: &crate::auth::Principal, assignees: &[String], step_id: &str) -> Result<()> {
    if p.role == crate::auth::Role::Admin || assignees.is_empty() {
        return Ok(());
    }
    match &p.user {
        Some(u) if assignees.iter().any(|a| a == u) => Ok(()),
        Some(u) => Err(CoordinatorError::PermissionDenied(format!(
            "user {} is not an assignee of the task of step {} (assignees: {})",
            echo(u),
            echo(step_id),
            assignees.join(", ")
        ))),
        None => Err(CoordinatorError::PermissionDenied(format!(
            "token {} has no user, and only the assignees of the task of step {} may complete it ({})",
            echo(&p.name),
            echo(step_id),
            assignees.join(", ")
        ))),
    }
}
