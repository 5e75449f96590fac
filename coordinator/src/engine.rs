//! The engine: the coordinator's use cases (submit, start, report, heartbeat, timers, sweeper), each
//! a thin sequence of "plan with the pure core, apply with one script, publish what became ready".

use std::{sync::Arc, time::Duration};

use baton_shared::{
    definition::WorkflowDefinition,
    ids,
    proto::{StepFailure, StepTask},
    time::now_ms,
};

use crate::{
    config::CoordinatorConfig,
    dispatch::Dispatcher,
    error::{CoordinatorError, Result},
    machine,
    registry::Registry,
    store::{
        Claimed, CompleteArgs, Completion, DispatchPayload, Disposition, RunCall, Store, TimerKind,
        parse_outbox_member, timer_member,
    },
};

/// The outcome a worker reports for one attempt.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The handler's output, JSON text.
    Output(String),
    /// The handler's error.
    Failure(StepFailure),
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
}

fn check_run_id(run_id: &str) -> Result<()> {
    if ids::is_run_id(run_id) {
        Ok(())
    } else {
        Err(CoordinatorError::InvalidArgument(format!(
            "run_id: {run_id:?} is not a run id (a UUID)"
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
        let (def, created) = self.registry.register_definition(def).await?;
        self.dispatcher.ensure_queues(&def.handlers()).await?;
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
        let input_json = if input_json.trim().is_empty() { "{}" } else { input_json };
        if input_json.len() > self.config.max_payload_bytes {
            return Err(CoordinatorError::InvalidArgument(format!(
                "input_json: {} bytes is over the limit of {} bytes",
                input_json.len(),
                self.config.max_payload_bytes
            )));
        }
        let input: serde_json::Value = serde_json::from_str(input_json)
            .map_err(|e| CoordinatorError::InvalidArgument(format!("input_json: not valid JSON: {e}")))?;
        let def = self.registry.get(workflow, version).await?.definition;
        def.validate_input(&input)?;
        let input_json = serde_json::to_string(&input).map_err(|e| CoordinatorError::Internal(e.to_string()))?;
        let run_id = if idempotency_key.is_empty() {
            ids::new_run_id()
        } else {
            ids::run_id_for_key(workflow, idempotency_key)
        };
        let now = now_ms();
        let roots: Vec<&str> = def.roots().map(|s| s.id.as_str()).collect();
        let call = RunCall { run_id: &run_id, now };
        let outbox_due = now + self.config.dispatch_grace.as_millis() as i64;
        let existed = self
            .store
            .create_run(
                &call,
                &def.name,
                def.version,
                &input_json,
                idempotency_key,
                &machine::step_ids_csv(&def),
                &roots,
                outbox_due,
                &self.run_timeout_timer(&def, &run_id, now),
            )
            .await?;
        if existed.is_some() {
            return Ok((run_id, false));
        }
        let payloads = def
            .roots()
            .map(|s| crate::store::DispatchPayload {
                dispatched_at: now,
                attempt_base: 0,
                step_id: s.id.clone(),
                attempt: 1,
                input_json: input_json.clone(),
                parent_outputs: Default::default(),
            })
            .collect();
        self.launch(&def, &run_id, payloads, now).await;
        Ok((run_id, true))
    }

    /// A worker starts an attempt: marks it running and arms its timeout (and heartbeat) timers.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed run id; `Redis`.
    pub async fn start_step(&self, a: &AttemptRef<'_>) -> Result<Disposition> {
        check_run_id(a.run_id)?;
        let def = match self.registry.pinned(a.workflow, a.version).await {
            Ok(d) => d,
            Err(CoordinatorError::NotFound(_)) => return Ok(Disposition::Stale),
            Err(e) => return Err(e),
        };
        let Some(step) = def.step(a.step_id) else {
            return Ok(Disposition::Stale);
        };
        let now = now_ms();
        let mut timers = vec![(
            timer_member(TimerKind::Timeout, a.run_id, a.step_id, a.attempt),
            now + step.timeout.as_millis() as i64,
        )];
        if let Some(hb) = step.heartbeat_timeout {
            timers.push((
                timer_member(TimerKind::Heartbeat, a.run_id, a.step_id, a.attempt),
                now + hb.as_millis() as i64,
            ));
        }
        self.store
            .start_step(
                &RunCall { run_id: a.run_id, now },
                a.step_id,
                a.attempt,
                a.worker,
                &machine::pinned(&def),
                &timers,
            )
            .await
    }

    /// Records a heartbeat.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed run id; `Redis`.
    pub async fn heartbeat(&self, run_id: &str, step_id: &str, attempt: u32) -> Result<Disposition> {
        check_run_id(run_id)?;
        self.store
            .heartbeat(&RunCall { run_id, now: now_ms() }, step_id, attempt)
            .await
    }

    /// Applies a worker's result: one pipelined round trip to Redis, then the publishes of the steps
    /// that became ready (in the background: the outbox makes them durable). Returns `Proceed` when
    /// recorded, `Stale` when the attempt was not current.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed run id or an output that is not JSON or too large; `Redis`.
    pub async fn report_result(&self, a: &AttemptRef<'_>, outcome: Outcome) -> Result<Disposition> {
        check_run_id(a.run_id)?;
        let def = match self.registry.pinned(a.workflow, a.version).await {
            Ok(d) => d,
            Err(CoordinatorError::NotFound(_)) => return Ok(Disposition::Stale),
            Err(e) => return Err(e),
        };
        let Some(step) = def.step(a.step_id) else {
            return Ok(Disposition::Stale);
        };
        let now = now_ms();
        let mut pre = redis::pipe();
        // The attempt is over either way: its timers would only fire as no-ops.
        pre.zrem(
            self.store.keys().timers(),
            timer_member(TimerKind::Timeout, a.run_id, a.step_id, a.attempt),
        )
        .ignore();
        if step.heartbeat_timeout.is_some() {
            pre.zrem(
                self.store.keys().timers(),
                timer_member(TimerKind::Heartbeat, a.run_id, a.step_id, a.attempt),
            )
            .ignore();
        }
        let (outcome_word, body, retry_at, output) = match outcome {
            Outcome::Output(json) => {
                if json.len() > self.config.max_payload_bytes {
                    // A handler whose output is too large fails for good: retrying gives the same output.
                    let f = StepFailure {
                        message: format!(
                            "output of {} bytes is over the limit of {} bytes",
                            json.len(),
                            self.config.max_payload_bytes
                        ),
                        error_type: "OutputTooLarge".into(),
                        retryable: false,
                    };
                    ("error", f.message, 0, false)
                } else if serde_json::from_str::<serde::de::IgnoredAny>(&json).is_err() {
                    return Err(CoordinatorError::InvalidArgument("output_json: not valid JSON".into()));
                } else {
                    ("ok", json, 0, true)
                }
            }
            Outcome::Failure(f) => {
                let at = machine::retry_at(
                    step,
                    a.attempt.saturating_sub(a.attempt_base),
                    &f.error_type,
                    f.retryable,
                    now,
                );
                let message = if f.error_type.is_empty() {
                    f.message
                } else {
                    format!("{}: {}", f.error_type, f.message)
                };
                ("error", message, at, false)
            }
        };
        let children = if output {
            let spec = machine::children_spec(&def, a.step_id);
            let due = now + self.config.dispatch_grace.as_millis() as i64;
            for c in def.children(a.step_id) {
                pre.zadd(
                    self.store.keys().outbox(),
                    crate::store::outbox_member(a.run_id, &c.id),
                    due,
                )
                .ignore();
            }
            spec
        } else {
            if retry_at > 0 {
                pre.zadd(
                    self.store.keys().timers(),
                    timer_member(TimerKind::Retry, a.run_id, a.step_id, a.attempt + 1),
                    retry_at,
                )
                .ignore();
            }
            String::new()
        };
        let args = CompleteArgs {
            step: a.step_id,
            attempt: a.attempt,
            worker: a.worker,
            outcome: outcome_word,
            body: &body,
            retry_at,
            heartbeat_timeout_ms: 0,
            children: &children,
            leaves: &machine::leaves_csv(&def),
            pinned: &machine::pinned(&def),
        };
        let completion = self
            .store
            .complete_step(pre, &RunCall { run_id: a.run_id, now }, &args)
            .await?;
        Ok(self.after_completion(&def, a.run_id, completion, now).await)
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
            Completion::Retry(_) | Completion::Failed => Disposition::Proceed,
            Completion::Succeeded { dispatched, .. } => {
                self.launch(def, run_id, dispatched, now).await;
                Disposition::Proceed
            }
        }
    }

    /// Carries out dispatches a script committed: task steps are published to RabbitMQ (in the
    /// background, many in flight), sleep steps get their wake-up timer. Each is already in the
    /// outbox, so whatever fails here is done again by the sweeper.
    async fn launch(&self, def: &WorkflowDefinition, run_id: &str, payloads: Vec<DispatchPayload>, now: i64) {
        let mut tasks: Vec<StepTask> = Vec::with_capacity(payloads.len());
        for p in payloads {
            let Some(step) = def.step(&p.step_id) else { continue };
            match step.sleep {
                Some(sleep) => {
                    if let Err(e) = self.start_sleep(def, step.id.as_str(), sleep, run_id, &p, now).await {
                        tracing::warn!(run = run_id, step = %step.id, error = %e, "could not start a sleep; the sweeper will");
                    }
                }
                None => tasks.push(machine::task(def, step, run_id, p, now)),
            }
        }
        self.dispatcher.publish_detached(tasks);
    }

    /// Starts a sleep step: marks it running and arms its wake-up timer, due `sleep` after the
    /// dispatch was committed (so a sweeper that starts it late still wakes it on time).
    async fn start_sleep(
        &self,
        def: &WorkflowDefinition,
        step: &str,
        sleep: Duration,
        run_id: &str,
        p: &DispatchPayload,
        now: i64,
    ) -> Result<()> {
        let from = if p.dispatched_at > 0 { p.dispatched_at } else { now };
        let wake = (
            timer_member(TimerKind::Wake, run_id, step, p.attempt),
            from + sleep.as_millis() as i64,
        );
        let call = RunCall { run_id, now };
        self.store
            .start_step(&call, step, p.attempt, "timer", &machine::pinned(def), &[wake])
            .await?;
        self.store
            .outbox_done(&[crate::store::outbox_member(run_id, step)])
            .await
    }

    /// Handles one due timer (retry, timeout, heartbeat). Idempotent: a timer of an attempt that is no
    /// longer current changes nothing.
    ///
    /// # Errors
    /// `Redis`, `Amqp`, `Publish`: the timer stays claimed and fires again after its lease.
    pub async fn fire_timer(&self, claimed: &Claimed) -> Result<()> {
        let Some((kind, run_id, step_id, attempt)) = TimerKind::parse(&claimed.member) else {
            tracing::warn!(member = %claimed.member, "dropping malformed timer");
            return self.store.release(false, claimed).await;
        };
        let Some((workflow, version)) = self.store.run_workflow(run_id).await? else {
            return self.store.release(false, claimed).await;
        };
        let def = self.registry.pinned(&workflow, version).await?;
        let now = now_ms();
        let call = RunCall { run_id, now };
        if kind == TimerKind::RunTimeout {
            let limit = def.timeout.map(baton_shared::duration::format).unwrap_or_default();
            let reason = format!("Timeout: the run did not finish within its timeout of {limit}");
            match self.store.cancel_run(&call, &reason, "timed_out").await {
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
            TimerKind::Retry => {
                let outbox_due = now + self.config.dispatch_grace.as_millis() as i64;
                if let Some(payload) = self
                    .store
                    .dispatch_attempt(&call, step_id, attempt, true, &step.depends_on.join(","), outbox_due)
                    .await?
                {
                    // Committed as dispatched, with its outbox entry: if this publish fails, the sweeper re-sends it.
                    self.launch(&def, run_id, vec![payload], now).await;
                }
            }
            // Handled above: a run timeout names no step.
            TimerKind::RunTimeout => {}
            TimerKind::Wake => {
                let slept = step.sleep.map(|d| d.as_millis()).unwrap_or(0);
                let body = format!("{{\"slept_ms\":{slept}}}");
                let args = CompleteArgs {
                    step: step_id,
                    attempt,
                    worker: "timer",
                    outcome: "ok",
                    body: &body,
                    retry_at: 0,
                    heartbeat_timeout_ms: 0,
                    children: &machine::children_spec(&def, step_id),
                    leaves: &machine::leaves_csv(&def),
                    pinned: &machine::pinned(&def),
                };
                let mut pre = redis::pipe();
                let due = now + self.config.dispatch_grace.as_millis() as i64;
                for c in def.children(step_id) {
                    pre.zadd(
                        self.store.keys().outbox(),
                        crate::store::outbox_member(run_id, &c.id),
                        due,
                    )
                    .ignore();
                }
                let completion = self.store.complete_step(pre, &call, &args).await?;
                self.after_completion(&def, run_id, completion, now).await;
            }
            TimerKind::Timeout | TimerKind::Heartbeat => {
                let (outcome, message, hb_ms) = if kind == TimerKind::Timeout {
                    (
                        "timeout",
                        format!(
                            "Timeout: attempt {attempt} did not finish within its start-to-close timeout of {}",
                            baton_shared::duration::format(step.timeout)
                        ),
                        0,
                    )
                } else {
                    let hb = step.heartbeat_timeout.unwrap_or(Duration::from_secs(1));
                    (
                        "heartbeat",
                        format!(
                            "HeartbeatTimeout: attempt {attempt} sent no heartbeat for {}",
                            baton_shared::duration::format(hb)
                        ),
                        hb.as_millis() as u64,
                    )
                };
                let base = self.store.attempt_base(run_id, step_id).await?;
                let retry_at = machine::retry_at(
                    step,
                    attempt.saturating_sub(base),
                    if kind == TimerKind::Timeout {
                        "Timeout"
                    } else {
                        "HeartbeatTimeout"
                    },
                    true,
                    now,
                );
                let mut pre = redis::pipe();
                if retry_at > 0 {
                    pre.zadd(
                        self.store.keys().timers(),
                        timer_member(TimerKind::Retry, run_id, step_id, attempt + 1),
                        retry_at,
                    )
                    .ignore();
                }
                let args = CompleteArgs {
                    step: step_id,
                    attempt,
                    worker: "",
                    outcome,
                    body: &message,
                    retry_at,
                    heartbeat_timeout_ms: hb_ms,
                    children: "",
                    leaves: &machine::leaves_csv(&def),
                    pinned: &machine::pinned(&def),
                };
                match self.store.complete_step(pre, &call, &args).await? {
                    Completion::Alive(last) => {
                        let due = last + hb_ms as i64;
                        self.store.schedule_timer(&claimed.member, due.max(now + 1)).await?;
                        return Ok(());
                    }
                    other => {
                        if other != Completion::Stale {
                            tracing::info!(run = run_id, step = step_id, attempt, outcome, "attempt timed out");
                        }
                    }
                }
            }
        }
        self.store.release(false, claimed).await
    }

    /// Re-sends a dispatch whose publish was never confirmed (the coordinator died between commit and
    /// publish, or RabbitMQ was down). Only a step still `dispatched` at that attempt is re-sent.
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
        let Some(step) = def.step(step_id) else {
            return self.store.release(true, claimed).await;
        };
        let now = now_ms();
        match self
            .store
            .dispatch_attempt(
                &RunCall { run_id, now },
                step_id,
                0,
                false,
                &step.depends_on.join(","),
                0,
            )
            .await?
        {
            Some(payload) => {
                tracing::info!(
                    run = run_id,
                    step = step_id,
                    attempt = payload.attempt,
                    "re-sending an unconfirmed dispatch"
                );
                match step.sleep {
                    Some(sleep) => self.start_sleep(&def, step_id, sleep, run_id, &payload, now).await,
                    // A confirmed publish removes the entry.
                    None => {
                        self.dispatcher
                            .publish(&machine::task(&def, step, run_id, payload, now))
                            .await
                    }
                }
            }
            None => self.store.release(true, claimed).await,
        }
    }

    /// The timer that ends a run at its workflow's `timeout`, if it has one (due from `now`).
    fn run_timeout_timer(&self, def: &WorkflowDefinition, run_id: &str, now: i64) -> Vec<(String, i64)> {
        def.timeout
            .map(|t| {
                (
                    timer_member(TimerKind::RunTimeout, run_id, "", 0),
                    now + t.as_millis() as i64,
                )
            })
            .into_iter()
            .collect()
    }

    /// Cancels a run, then tells the workers running its steps.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed id; `NotFound`; `FailedPrecondition` when it already finished.
    pub async fn cancel_run(&self, run_id: &str, reason: &str) -> Result<()> {
        check_run_id(run_id)?;
        let reason = if reason.is_empty() {
            "cancelled".to_string()
        } else {
            format!("cancelled: {reason}")
        };
        self.store
            .cancel_run(&RunCall { run_id, now: now_ms() }, &reason, "cancelled")
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
        let Some((workflow, version)) = self.store.run_workflow(run_id).await? else {
            return Err(CoordinatorError::NotFound(format!(
                "run_id: no run {run_id} (it may have expired)"
            )));
        };
        let def = self.registry.pinned(&workflow, version).await?;
        let steps = match from {
            None => None,
            Some(step) if def.step(step).is_some() => Some(machine::descendants(&def, step)),
            Some(step) => {
                return Err(CoordinatorError::InvalidArgument(format!(
                    "from_step: workflow {workflow:?} version {version} has no step {step:?}"
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
        let due = now + self.config.dispatch_grace.as_millis() as i64;
        let call = RunCall { run_id, now };
        let payloads = self
            .store
            .reset_steps(
                &call,
                steps.as_deref(),
                input.as_deref(),
                &machine::all_steps_spec(&def),
                due,
                &self.run_timeout_timer(&def, run_id, now),
            )
            .await?;
        let dispatched = payloads.iter().map(|p| p.step_id.clone()).collect();
        self.launch(&def, run_id, payloads, now).await;
        Ok(dispatched)
    }

    /// Records a custom event of a running attempt.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed id, a payload that is not JSON or over the size limit.
    pub async fn emit_event(
        &self,
        run_id: &str,
        step_id: &str,
        attempt: u32,
        payload_json: &str,
    ) -> Result<Disposition> {
        check_run_id(run_id)?;
        if payload_json.len() > self.config.max_payload_bytes {
            return Err(CoordinatorError::InvalidArgument(format!(
                "payload_json: {} bytes is over the limit of {} bytes",
                payload_json.len(),
                self.config.max_payload_bytes
            )));
        }
        let value: serde_json::Value = serde_json::from_str(payload_json)
            .map_err(|e| CoordinatorError::InvalidArgument(format!("payload_json: not valid JSON: {e}")))?;
        self.store
            .emit_event(&RunCall { run_id, now: now_ms() }, step_id, attempt, &value.to_string())
            .await
    }
}
