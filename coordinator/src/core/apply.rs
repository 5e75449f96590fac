//! The run state machine: [`apply`] takes a run's state and an event and answers the transition
//! (what changes, and the effects to carry out) or a named [`Reject`]. No I/O, no clock (`now`
//! is an argument), no randomness (the jitter sample is part of the event).
//!
//! The transitions, by event (a step's kind decides the rest, in [`super::kinds`]):
//!
//! | event | from | to |
//! | --- | --- | --- |
//! | submit | run pending | roots dispatched |
//! | dispatch | dispatched | queued (task), fan-out, waiting, skipped, failed |
//! | start | queued / running by itself or by a dead worker | running (held) |
//! | report | running, by its holder | succeeded / retrying / failed / waiting (emit, suspend) |
//! | heartbeat | running, by its holder | running |
//! | timer | per timer kind | retry: dispatched; timeout: retrying or failed; ... |
//! | event delivered | waiting for an event | succeeded, or dispatched again (resume) |
//! | child done | waiting for a child / emitted runs | succeeded or failed |
//! | human completed | waiting for a person | succeeded |
//! | cancel | run not over | run cancelled, live steps cancelled |
//! | retry, rerun | run over | steps pending again, ready ones dispatched |

use std::collections::BTreeSet;

use baton_shared::{
    definition::{StepDefinition, WorkflowDefinition, split_item},
    proto::RunStatus,
};

use super::{
    classify::{self, AttemptTimer, Classified, Ending, Jitter, OutcomeWord},
    event::{ChildResult, Delta, Effect, Event, GateAnswer, Reject, TimerKey, TimerKind, Transition},
    kinds::{self, Dispatched, EventClass, Halt, Kind, StartPlan},
    plan::{due, span_ms},
    state::{FanOut, Phase, RunPhase, RunState, StepState, Wait},
    texts,
};

/// Fan-out elements dispatched at most when a fan-out starts (later ones as elements finish), as
/// the store does (`store::ITEM_BATCH`).
pub const ITEM_BATCH: u32 = 500;
/// Elements one element's completion dispatches at most.
const ITEMS_PER_COMPLETION: u32 = 2;

/// Applies `event` to run `state` of definition `def` at `now` (Unix ms).
///
/// # Errors
/// [`Reject`], named, when the event does not apply (fenced, for a finished run, of a kind or in
/// a state that does not take it); the state is then unchanged.
pub fn apply(def: &WorkflowDefinition, state: &RunState, event: &Event, now: i64) -> Result<Transition, Reject> {
    let mut tx = Tx {
        def,
        now,
        next: state.clone(),
        changed: BTreeSet::new(),
        removed: Vec::new(),
        effects: Vec::new(),
    };
    let finished = |s: &RunState| Reject::RunFinished(s.status().word());
    match event {
        Event::Retry | Event::Rerun { .. } => {}
        _ if state.is_finished() => return Err(finished(state)),
        _ => {}
    }
    match event {
        Event::Submit => tx.submit()?,
        Event::Dispatch { step, attempt, gate } => tx.dispatch_decided(step, *attempt, *gate)?,
        Event::Start {
            step,
            attempt,
            worker,
            holder_alive,
        } => tx.start(step, *attempt, worker, *holder_alive)?,
        Event::Report {
            step,
            attempt,
            worker,
            outcome,
            jitter,
        } => tx.report(step, *attempt, worker, outcome.clone(), *jitter)?,
        Event::Heartbeat { step, attempt, worker } => {
            tx.held(step, *attempt, worker, "heartbeat")?;
            if let Some(Phase::Running { heartbeat_at, .. }) = tx.phase_mut(step) {
                *heartbeat_at = now;
            }
        }
        Event::Timer { key, jitter } => tx.timer(key, *jitter)?,
        Event::EventDelivered { step, attempt, payload } => tx.delivered(step, *attempt, payload)?,
        Event::ChildDone { step, attempt, result } => tx.child_done(step, *attempt, result)?,
        Event::HumanCompleted {
            step,
            attempt,
            user,
            data,
        } => {
            tx.current(step, *attempt, EventClass::HumanCompleted, "human completed")?;
            tx.waiting(step, "human completed", |w| matches!(w, Wait::Human { .. }))?;
            tx.disarm(TimerKind::Timeout, step, *attempt);
            if let Some(s) = tx.step_mut(step) {
                s.completed_by = Some(user.clone());
            }
            tx.step_done(step, Phase::Succeeded { output: data.clone() }, String::new());
        }
        Event::Cancel { reason } => {
            tx.finish_run(RunStatus::Cancelled, String::new(), texts::cancelled(reason));
        }
        Event::Retry => tx.reset(None)?,
        Event::Rerun { from } => tx.reset(Some(from))?,
    }
    Ok(tx.into_transition())
}

/// A transition being built: the next state, what changed, the effects.
struct Tx<'a> {
    def: &'a WorkflowDefinition,
    now: i64,
    next: RunState,
    changed: BTreeSet<String>,
    removed: Vec<String>,
    effects: Vec<Effect>,
}

impl<'a> Tx<'a> {
    fn into_transition(self) -> Transition {
        let steps = self
            .changed
            .iter()
            .filter_map(|id| self.next.steps.get(id).map(|s| (id.clone(), s.clone())))
            .collect();
        Transition {
            delta: Delta {
                phase: Some(self.next.phase.clone()),
                steps,
                removed: self.removed,
            },
            next: self.next,
            effects: self.effects,
        }
    }

    fn step_mut(&mut self, id: &str) -> Option<&mut StepState> {
        self.changed.insert(id.to_string());
        self.next.steps.get_mut(id)
    }

    fn phase_mut(&mut self, id: &str) -> Option<&mut Phase> {
        self.step_mut(id).map(|s| &mut s.phase)
    }

    fn set_phase(&mut self, id: &str, phase: Phase) {
        if let Some(s) = self.step_mut(id) {
            s.phase = phase;
        }
    }

    fn phase(&self, id: &str) -> Option<&Phase> {
        self.next.steps.get(id).map(|s| &s.phase)
    }

    fn attempt(&self, id: &str) -> u32 {
        self.next.steps.get(id).map_or(0, |s| s.attempt)
    }

    fn history(&mut self, step: &str, status: &'static str, detail: String) {
        if split_item(step).1.is_none() {
            let attempt = self.attempt(step);
            self.effects.push(Effect::History {
                step: step.to_string(),
                attempt,
                status,
                detail,
            });
        }
    }

    fn arm(&mut self, kind: TimerKind, step: &str, attempt: u32, at: i64) {
        let key = TimerKey {
            kind,
            step: step.to_string(),
            attempt,
        };
        self.next.timers.insert(key.clone());
        self.effects.push(Effect::ArmTimer { key, due: at });
    }

    fn disarm(&mut self, kind: TimerKind, step: &str, attempt: u32) {
        let key = TimerKey {
            kind,
            step: step.to_string(),
            attempt,
        };
        if self.next.timers.remove(&key) {
            self.effects.push(Effect::DisarmTimer { key });
        }
    }

    fn clear_outbox(&mut self, step: &str) {
        if self.next.outbox.remove(step) {
            self.effects.push(Effect::ClearOutbox { step: step.to_string() });
        }
    }

    fn release_slot(&mut self, step: &str) {
        if self.next.slots.remove(step) {
            let attempt = self.attempt(step);
            self.effects.push(Effect::ReleaseSlot {
                step: step.to_string(),
                attempt,
            });
        }
    }

    fn run_started(&mut self) {
        if self.next.phase == RunPhase::Pending {
            self.next.phase = RunPhase::Running;
        }
    }

    /// The step's definition and kind, after checking that `attempt` is its current one and that
    /// its kind takes `class`.
    fn current(
        &self,
        id: &str,
        attempt: u32,
        class: EventClass,
        event: &'static str,
    ) -> Result<(&'a StepDefinition, Kind<'a>), Reject> {
        let step = self.def.step(id).ok_or_else(|| Reject::UnknownStep(id.to_string()))?;
        let state = self
            .next
            .steps
            .get(id)
            .ok_or_else(|| Reject::UnknownStep(id.to_string()))?;
        let kind = Kind::of(step, id);
        if !kind.accepts(class) {
            return Err(match class {
                EventClass::Worker => Reject::NotAHandlerStep {
                    step: id.to_string(),
                    kind: kind.word(),
                },
                _ => Reject::WrongKind {
                    step: id.to_string(),
                    kind: kind.word(),
                    event,
                },
            });
        }
        if state.attempt != attempt {
            return Err(Reject::StaleAttempt {
                step: id.to_string(),
                current: state.attempt,
                got: attempt,
            });
        }
        Ok((step, kind))
    }

    fn wrong_state(&self, id: &str, event: &'static str, wanted: &'static str) -> Reject {
        Reject::WrongState {
            step: id.to_string(),
            status: self.phase(id).map_or("unknown", Phase::word),
            event,
            wanted,
        }
    }

    /// Checks that `worker` holds running attempt `attempt` of handler step `id`.
    fn held(&self, id: &str, attempt: u32, worker: &str, event: &'static str) -> Result<&'a StepDefinition, Reject> {
        let (step, _) = self.current(id, attempt, EventClass::Worker, event)?;
        match self.phase(id) {
            Some(Phase::Running { worker: holder, .. }) if holder == worker && !worker.is_empty() => Ok(step),
            Some(Phase::Running { worker: holder, .. }) => Err(Reject::NotHolder {
                step: id.to_string(),
                holder: holder.clone(),
                worker: worker.to_string(),
            }),
            _ => Err(self.wrong_state(id, event, "running")),
        }
    }

    fn waiting(&self, id: &str, event: &'static str, what: impl Fn(&Wait) -> bool) -> Result<Wait, Reject> {
        match self.phase(id) {
            Some(Phase::Waiting(w)) if what(w) => Ok(w.clone()),
            _ => Err(self.wrong_state(id, event, "waiting")),
        }
    }

    // ----- submit and dispatch -----

    fn submit(&mut self) -> Result<(), Reject> {
        if self.next.phase != RunPhase::Pending || self.next.steps.values().any(|s| s.attempt > 0) {
            return Err(Reject::AlreadySubmitted);
        }
        if let Some(t) = self.def.timeout {
            let at = due(self.now, t);
            self.arm(TimerKind::RunTimeout, "", 0, at);
        }
        let roots: Vec<String> = self.def.roots().map(|s| s.id.clone()).collect();
        for r in roots {
            self.dispatch(&r, None);
        }
        Ok(())
    }

    /// Commits a dispatch of `id` as its next attempt (or as `attempt`), with its outbox entry.
    fn dispatch(&mut self, id: &str, attempt: Option<u32>) {
        let now = self.now;
        let Some(s) = self.step_mut(id) else { return };
        s.attempt = attempt.unwrap_or_else(|| s.attempt.saturating_add(1));
        s.phase = Phase::Dispatched { at: now };
        let attempt = s.attempt;
        self.next.outbox.insert(id.to_string());
        self.history(id, "dispatched", String::new());
        self.effects.push(Effect::Dispatch {
            step: id.to_string(),
            attempt,
        });
    }

    /// The coordinator decides what dispatched step `id` does ([`kinds::plan`]) and does it.
    fn dispatch_decided(&mut self, id: &str, attempt: u32, gate: GateAnswer) -> Result<(), Reject> {
        let step = self.def.step(id).ok_or_else(|| Reject::UnknownStep(id.to_string()))?;
        let state = self
            .next
            .steps
            .get(id)
            .ok_or_else(|| Reject::UnknownStep(id.to_string()))?
            .clone();
        if state.attempt != attempt {
            return Err(Reject::StaleAttempt {
                step: id.to_string(),
                current: state.attempt,
                got: attempt,
            });
        }
        let granted_slot = matches!(state.phase, Phase::Waiting(Wait::Slot));
        if !matches!(state.phase, Phase::Dispatched { .. }) && !granted_slot {
            return Err(self.wrong_state(id, "dispatch", "dispatched"));
        }
        let dispatched_at = match state.phase {
            Phase::Dispatched { at } => at,
            _ => 0,
        };
        let statuses = |s: &str| self.next.steps.get(s).map(|st| st.phase.word().to_string());
        let input = &self.next.input;
        let steps = &self.next.steps;
        let bindings = || {
            let outputs: Vec<(String, String)> = step
                .reads
                .iter()
                .map(|r| {
                    let out = match steps.get(r).map(|s| &s.phase) {
                        Some(Phase::Succeeded { output }) => output.clone(),
                        _ => "null".into(),
                    };
                    (r.clone(), out)
                })
                .collect();
            super::plan::bindings(input, outputs.iter().map(|(a, b)| (a, b)), |s| {
                statuses(s).unwrap_or_default()
            })
        };
        let planned = kinds::plan(
            step,
            Dispatched {
                workflow: &self.def.name,
                run_id: "",
                step_id: id,
                attempt,
                dispatched_at,
                input_json: &self.next.input,
                item_input: state.item_input.as_deref(),
                parent_statuses: &statuses,
                bindings: &bindings,
            },
            self.now,
        );
        let now = self.now;
        match planned {
            Err(Halt::Skip(reason)) => {
                self.clear_outbox(id);
                self.step_done(id, Phase::Skipped { reason: reason.clone() }, reason);
            }
            Err(Halt::Fail(message)) => {
                self.clear_outbox(id);
                self.step_failed(id, &message);
            }
            Ok(StartPlan::Publish { input, gates }) => {
                match gate {
                    GateAnswer::Open => {
                        if gates.slot.is_some() {
                            self.next.slots.insert(id.to_string());
                        }
                    }
                    GateAnswer::RateLimited(until) => {
                        let Some(rate) = &gates.rate else {
                            return Err(Reject::NoSuchGate(id.to_string()));
                        };
                        let detail = rate.waiting_for(until);
                        self.clear_outbox(id);
                        self.set_phase(id, Phase::Waiting(Wait::RateLimited { until }));
                        self.history(id, "waiting", detail);
                        self.arm(TimerKind::RateWake, id, attempt, until);
                        return Ok(());
                    }
                    GateAnswer::SlotQueued => {
                        let Some(slot) = &gates.slot else {
                            return Err(Reject::NoSuchGate(id.to_string()));
                        };
                        let detail = slot.waiting_for();
                        self.clear_outbox(id);
                        self.set_phase(id, Phase::Waiting(Wait::Slot));
                        self.history(id, "waiting", detail);
                        return Ok(());
                    }
                }
                self.publish(step, id, attempt, input);
            }
            Ok(StartPlan::PublishElement { input }) => self.publish(step, id, attempt, input),
            Ok(StartPlan::FanOut { inputs, max_parallel }) => {
                self.clear_outbox(id);
                self.run_started();
                let total = u32::try_from(inputs.len()).unwrap_or(u32::MAX);
                if total == 0 {
                    self.step_done(id, Phase::Succeeded { output: "[]".into() }, "0 elements".into());
                    return Ok(());
                }
                for (i, input) in inputs.into_iter().enumerate() {
                    let element = format!("{id}#{i}");
                    let mut s = StepState::pending();
                    s.item_input = Some(input);
                    self.changed.insert(element.clone());
                    self.next.steps.insert(element, s);
                }
                self.set_phase(
                    id,
                    Phase::FanOut(FanOut {
                        total,
                        ok: 0,
                        failed: 0,
                        next: 0,
                        parallel: max_parallel.max(1),
                        gathering: false,
                    }),
                );
                self.history(id, "running", texts::fan_out_started(inputs_len(total), max_parallel));
                self.dispatch_items(id, ITEM_BATCH);
            }
            Ok(plan @ (StartPlan::Sleep { .. } | StartPlan::WaitEvent { .. } | StartPlan::Human { .. })) => {
                let detail = plan.waiting_for().unwrap_or_default();
                self.clear_outbox(id);
                self.run_started();
                let (wait, timer) = match plan {
                    StartPlan::Sleep { wake } => (Wait::Sleep { wake }, Some((TimerKind::Wake, wake))),
                    StartPlan::WaitEvent {
                        event, key, timeout_at, ..
                    } => (
                        Wait::Event { event, key },
                        (timeout_at > 0).then_some((TimerKind::Timeout, timeout_at)),
                    ),
                    StartPlan::Human { title, timeout_at } => (
                        Wait::Human { title },
                        (timeout_at > 0).then_some((TimerKind::Timeout, timeout_at)),
                    ),
                    _ => (Wait::Child, None),
                };
                self.set_phase(id, Phase::Waiting(wait));
                self.history(id, "waiting", detail);
                if let Some((kind, at)) = timer {
                    self.arm(kind, id, attempt, at);
                }
            }
            Ok(StartPlan::Child {
                workflow,
                version,
                input,
            }) => {
                self.clear_outbox(id);
                self.run_started();
                self.set_phase(id, Phase::Waiting(Wait::Child));
                self.history(id, "waiting", format!("child run of {workflow}"));
                self.effects.push(Effect::StartChild {
                    step: id.to_string(),
                    attempt,
                    workflow,
                    version,
                    input,
                });
            }
        }
        let _ = now;
        Ok(())
    }

    fn publish(&mut self, step: &StepDefinition, id: &str, attempt: u32, input: String) {
        let now = self.now;
        self.set_phase(id, Phase::Queued { at: now });
        if let Some(limit) = step.schedule_to_start {
            self.arm(TimerKind::ScheduleToStart, id, attempt, due(now, limit));
        }
        self.effects.push(Effect::Publish {
            step: id.to_string(),
            attempt,
            input,
        });
    }

    /// Dispatches at most `most` more elements of fan-out `id` while fewer than its `max_parallel`
    /// are in flight.
    fn dispatch_items(&mut self, id: &str, most: u32) {
        let Some(Phase::FanOut(f)) = self.phase(id).cloned() else {
            return;
        };
        let mut f = f;
        let mut in_flight = f.next.saturating_sub(f.ok).saturating_sub(f.failed);
        let mut n = 0;
        while f.next < f.total && in_flight < f.parallel && n < most {
            self.dispatch(&format!("{id}#{}", f.next), None);
            f.next = f.next.saturating_add(1);
            in_flight = in_flight.saturating_add(1);
            n += 1;
        }
        self.set_phase(id, Phase::FanOut(f));
    }

    // ----- workers -----

    fn start(&mut self, id: &str, attempt: u32, worker: &str, holder_alive: bool) -> Result<(), Reject> {
        let (step, _) = self.current(id, attempt, EventClass::Worker, "start")?;
        if worker.is_empty() {
            return Err(self.wrong_state(id, "start", "a worker"));
        }
        match self.phase(id).cloned() {
            Some(Phase::Queued { .. }) => {}
            Some(Phase::Running { worker: holder, .. }) if holder == worker => {}
            Some(Phase::Running { worker: holder, .. }) if holder_alive => {
                return Err(Reject::HeldByLiveWorker {
                    step: id.to_string(),
                    holder,
                });
            }
            Some(Phase::Running { .. }) => {}
            _ => return Err(self.wrong_state(id, "start", "published")),
        }
        let now = self.now;
        self.clear_outbox(id);
        self.disarm(TimerKind::ScheduleToStart, id, attempt);
        self.run_started();
        self.set_phase(
            id,
            Phase::Running {
                worker: worker.to_string(),
                heartbeat_at: now,
            },
        );
        self.history(id, "running", worker.to_string());
        self.arm(TimerKind::Timeout, id, attempt, due(now, step.timeout));
        if let Some(hb) = step.heartbeat_timeout {
            self.arm(TimerKind::Heartbeat, id, attempt, due(now, hb));
        }
        Ok(())
    }

    fn report(
        &mut self,
        id: &str,
        attempt: u32,
        worker: &str,
        outcome: classify::Outcome,
        jitter: f64,
    ) -> Result<(), Reject> {
        let step = self.held(id, attempt, worker, "report")?;
        let base = self.next.steps.get(id).map_or(0, |s| s.base);
        let classified = classify::report(
            step,
            id,
            outcome,
            attempt.saturating_sub(base),
            self.next.max_payload_bytes,
            self.now,
            Jitter::Sample(jitter),
        )
        .map_err(Reject::InvalidReport)?;
        self.attempt_over(id, attempt);
        match classified {
            Classified::Suspend {
                event,
                key,
                waiting_for,
                timeout_at,
            } => {
                self.set_phase(id, Phase::Waiting(Wait::Suspended { event, key }));
                self.history(id, "waiting", waiting_for);
                if timeout_at > 0 {
                    self.arm(TimerKind::Timeout, id, attempt, timeout_at);
                }
            }
            Classified::Complete { word, body, retry_at } => match word {
                OutcomeWord::Emit => {
                    let now = self.now;
                    self.set_phase(
                        id,
                        Phase::Waiting(Wait::Emit {
                            output: body,
                            worker: worker.to_string(),
                        }),
                    );
                    self.history(id, "waiting", kinds::emit::waiting_for().to_string());
                    self.arm(TimerKind::Emit, id, attempt, now);
                }
                OutcomeWord::Ok => self.succeeded(id, body),
                _ => self.attempt_failed(id, attempt, body, retry_at),
            },
        }
        Ok(())
    }

    /// The attempt of `id` is over: its attempt timers are disarmed and its slot given back.
    fn attempt_over(&mut self, id: &str, attempt: u32) {
        self.disarm(TimerKind::Timeout, id, attempt);
        self.disarm(TimerKind::Heartbeat, id, attempt);
        self.disarm(TimerKind::ScheduleToStart, id, attempt);
        self.release_slot(id);
    }

    /// Step (or element) `id` succeeded with `output`.
    fn succeeded(&mut self, id: &str, output: String) {
        match split_item(id) {
            (parent, Some(_)) => {
                let parent = parent.to_string();
                self.set_phase(id, Phase::Succeeded { output });
                let Some(Phase::FanOut(mut f)) = self.phase(&parent).cloned() else {
                    return;
                };
                f.ok = f.ok.saturating_add(1);
                let all = f.ok >= f.total;
                f.gathering = all;
                self.set_phase(&parent, Phase::FanOut(f));
                self.dispatch_items(&parent, ITEMS_PER_COMPLETION);
                if all {
                    let now = self.now;
                    let attempt = self.attempt(&parent);
                    self.arm(TimerKind::Items, &parent, attempt, now);
                }
            }
            _ => self.step_done(id, Phase::Succeeded { output }, String::new()),
        }
    }

    /// Attempt `attempt` of `id` failed with `message`: retried at `retry_at`, or failed for good
    /// (0), and with an element, its fan-out step.
    fn attempt_failed(&mut self, id: &str, attempt: u32, message: String, retry_at: i64) {
        if retry_at > 0 {
            let next = attempt.saturating_add(1);
            if let Some(s) = self.step_mut(id) {
                s.attempt = next;
                s.phase = Phase::Retrying {
                    at: retry_at,
                    error: message.clone(),
                };
            }
            self.history(id, "retrying", message);
            self.arm(TimerKind::Retry, id, next, retry_at);
            return;
        }
        match split_item(id) {
            (parent, Some(index)) => {
                let parent = parent.to_string();
                self.set_phase(id, Phase::Failed { error: message.clone() });
                if let Some(Phase::FanOut(f)) = self.phase_mut(&parent) {
                    f.failed = f.failed.saturating_add(1);
                }
                let text = texts::element_failed(&index.to_string(), attempt, &message);
                self.step_failed(&parent, &text);
            }
            _ => self.step_failed(id, &message),
        }
    }

    // ----- the coordinator's own completions -----

    fn complete(&mut self, id: &str, ending: Ending) {
        match ending {
            Ending::Succeed(output) => self.step_done(id, Phase::Succeeded { output }, String::new()),
            Ending::Skip(reason) => self.step_done(id, Phase::Skipped { reason: reason.clone() }, reason),
            Ending::Fail(message) | Ending::TimedOut(message) => self.step_failed(id, &message),
        }
    }

    fn timer(&mut self, key: &TimerKey, jitter: f64) -> Result<(), Reject> {
        if !self.next.timers.remove(key) {
            return Err(Reject::TimerNotArmed(key.clone()));
        }
        let id = key.step.as_str();
        let attempt = key.attempt;
        if key.kind == TimerKind::RunTimeout {
            let error = texts::run_timed_out(self.def.timeout);
            self.finish_run(RunStatus::TimedOut, String::new(), error);
            return Ok(());
        }
        let Some(step) = self.def.step(id) else {
            return Err(Reject::UnknownStep(id.to_string()));
        };
        let kind = Kind::of(step, id);
        // A timer of an earlier attempt fires as a no-op: the core disarms them, so this is rare.
        if self.attempt(id) != attempt {
            return Ok(());
        }
        let phase = self.phase(id).cloned().unwrap_or(Phase::Pending);
        match (key.kind, phase) {
            (TimerKind::Retry, Phase::Retrying { .. })
            | (TimerKind::RateWake, Phase::Waiting(Wait::RateLimited { .. })) => {
                self.dispatch(id, Some(attempt));
            }
            (TimerKind::Wake, Phase::Waiting(Wait::Sleep { .. })) => {
                let output = kinds::sleep::output(step, self.now);
                self.complete(id, Ending::Succeed(output));
            }
            (TimerKind::Timeout, Phase::Waiting(w)) => {
                let waiting_for = match &w {
                    Wait::Event { event, key } => texts::waiting_for_event(event, key),
                    Wait::Suspended { event, key } => texts::suspended_for_event(event, key),
                    Wait::Human { title } => texts::human_task(title),
                    _ => String::new(),
                };
                let ending = kinds::wait::timed_out(kind, &waiting_for);
                self.complete(id, ending);
            }
            (TimerKind::Timeout, Phase::Running { .. }) => {
                self.attempt_timed_out(step, id, attempt, AttemptTimer::Timeout, jitter);
            }
            (TimerKind::Heartbeat, Phase::Running { heartbeat_at, .. }) => {
                let hb_ms = i64::try_from(span_ms(step.heartbeat_timeout.unwrap_or_default())).unwrap_or(i64::MAX);
                if self.now.saturating_sub(heartbeat_at) < hb_ms {
                    let again = heartbeat_at.saturating_add(hb_ms).max(self.now.saturating_add(1));
                    self.arm(TimerKind::Heartbeat, id, attempt, again);
                } else {
                    self.attempt_timed_out(step, id, attempt, AttemptTimer::Heartbeat, jitter);
                }
            }
            (TimerKind::ScheduleToStart, Phase::Queued { .. }) => {
                self.attempt_timed_out(step, id, attempt, AttemptTimer::ScheduleToStart, jitter);
            }
            (TimerKind::Items, Phase::FanOut(f)) if f.gathering => {
                let outputs: Vec<String> = (0..f.total)
                    .map(|i| match self.phase(&format!("{id}#{i}")) {
                        Some(Phase::Succeeded { output }) => output.clone(),
                        _ => "null".into(),
                    })
                    .collect();
                let total = inputs_len(f.total);
                match kinds::fan_out::gather(outputs.iter().map(String::as_str), total, self.next.max_payload_bytes) {
                    Ok(output) => self.step_done(id, Phase::Succeeded { output }, format!("{total} elements")),
                    Err(message) => self.step_failed(id, &message),
                }
            }
            (TimerKind::Emit, Phase::Waiting(Wait::Emit { .. })) => {
                self.effects.push(Effect::EmitRuns {
                    step: id.to_string(),
                    attempt,
                });
            }
            // The attempt moved on: the timer fires as a no-op.
            _ => {}
        }
        Ok(())
    }

    fn attempt_timed_out(&mut self, step: &StepDefinition, id: &str, attempt: u32, t: AttemptTimer, jitter: f64) {
        let limit = step.schedule_to_start.unwrap_or_default();
        let timed = classify::attempt_timer(t, step, attempt, limit);
        let base = self.next.steps.get(id).map_or(0, |s| s.base);
        let retry_at = classify::retry_time(
            step,
            attempt.saturating_sub(base),
            timed.error_type,
            true,
            self.now,
            Jitter::Sample(jitter),
        );
        self.attempt_over(id, attempt);
        self.attempt_failed(id, attempt, timed.message, retry_at);
    }

    fn delivered(&mut self, id: &str, attempt: u32, payload: &str) -> Result<(), Reject> {
        let (_, kind) = self.current(id, attempt, EventClass::EventDelivered, "event delivered")?;
        let wait = self.waiting(id, "event delivered", |w| {
            matches!(w, Wait::Event { .. } | Wait::Suspended { .. })
        })?;
        self.disarm(TimerKind::Timeout, id, attempt);
        match (kinds::wait::delivery(kind), wait) {
            (kinds::wait::Delivery::Resume, Wait::Suspended { .. }) => {
                if let Some(s) = self.step_mut(id) {
                    s.resume = Some(payload.to_string());
                    s.base = attempt;
                }
                self.dispatch(id, None);
            }
            _ => self.complete(id, Ending::Succeed(payload.to_string())),
        }
        Ok(())
    }

    fn child_done(&mut self, id: &str, attempt: u32, result: &ChildResult) -> Result<(), Reject> {
        let (_, kind) = self.current(id, attempt, EventClass::ChildDone, "child done")?;
        let wait = self.waiting(id, "child done", |w| matches!(w, Wait::Child | Wait::Emit { .. }))?;
        let ending = match (kind, wait, result) {
            (_, _, ChildResult::Refused(message)) => Ending::Fail(message.clone()),
            (
                Kind::Child(_),
                Wait::Child,
                ChildResult::Ended {
                    child,
                    status,
                    output,
                    error,
                },
            ) => kinds::child::ended(child, status, output.as_deref(), error)
                .ok_or_else(|| Reject::ChildNotFinished(child.clone()))?,
            (Kind::Emit(_), Wait::Emit { output, .. }, ChildResult::Emitted) => Ending::Succeed(output),
            _ => return Err(self.wrong_state(id, "child done", "waiting for it")),
        };
        self.complete(id, ending);
        Ok(())
    }

    // ----- steps and the run ending -----

    /// Ends step `id` as succeeded or skipped, dispatches the children that became ready, and
    /// finishes the run after its last step.
    fn step_done(&mut self, id: &str, phase: Phase, detail: String) {
        let word = phase.word();
        self.attempt_over(id, self.attempt(id));
        self.set_phase(id, phase);
        self.history(id, word, detail);
        self.next.steps_left = self.next.steps_left.saturating_sub(1);
        let children: Vec<String> = self.def.children(id).map(|c| c.id.clone()).collect();
        for c in children {
            self.dispatch_if_ready(&c);
        }
        if self.next.steps_left == 0 {
            let output = self.leaves_output();
            self.finish_run(RunStatus::Succeeded, output, String::new());
        }
    }

    fn dispatch_if_ready(&mut self, id: &str) {
        let Some(step) = self.def.step(id) else { return };
        let ready = matches!(self.phase(id), Some(Phase::Pending))
            && step
                .depends_on
                .iter()
                .all(|p| self.phase(p).is_some_and(Phase::is_done));
        if ready {
            self.dispatch(id, None);
        }
    }

    /// Fails step `id` for good, and with it the run.
    fn step_failed(&mut self, id: &str, message: &str) {
        let attempt = self.attempt(id);
        self.attempt_over(id, attempt);
        self.set_phase(
            id,
            Phase::Failed {
                error: message.to_string(),
            },
        );
        self.history(id, "failed", message.to_string());
        let error = texts::run_failed(id, attempt, message);
        self.finish_run(RunStatus::Failed, String::new(), error);
    }

    fn leaves_output(&self) -> String {
        let parts: Vec<String> = self
            .def
            .leaves()
            .map(|l| {
                let out = match self.phase(&l.id) {
                    Some(Phase::Succeeded { output }) => output.as_str(),
                    _ => "null",
                };
                format!("{}:{out}", serde_json::Value::String(l.id.clone()))
            })
            .collect();
        format!("{{{}}}", parts.join(","))
    }

    /// Finishes the run: cancels its live steps (and their child runs; fan-out elements keep their
    /// state), gives back every slot, disarms every timer, drops its outbox entries and tells its
    /// parent.
    fn finish_run(&mut self, status: RunStatus, output: String, error: String) {
        // The definition's steps, not fan-out elements: ending a run does no work in proportion to
        // its element count (an element of a finished run is fenced by the run's status).
        let live: Vec<String> = self
            .next
            .steps
            .iter()
            .filter(|(id, s)| !s.phase.is_settled() && split_item(id).1.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in live {
            self.release_slot(&id);
            self.clear_outbox(&id);
            let attempt = self.attempt(&id);
            if matches!(self.phase(&id), Some(Phase::Waiting(Wait::Child))) {
                self.effects.push(Effect::CancelChild {
                    step: id.clone(),
                    attempt,
                });
            }
            // Pending steps too: they will not run (the store cancels every live step).
            self.set_phase(&id, Phase::Cancelled);
            self.history(&id, "cancelled", format!("run {}", status.word()));
        }
        for key in std::mem::take(&mut self.next.timers) {
            self.effects.push(Effect::DisarmTimer { key });
        }
        for id in std::mem::take(&mut self.next.outbox) {
            self.effects.push(Effect::ClearOutbox { step: id });
        }
        self.next.phase = RunPhase::Finished {
            status,
            output: output.clone(),
            error: error.clone(),
        };
        if self.next.has_parent {
            self.effects.push(Effect::NotifyParent { status: status.word() });
        }
        self.effects.push(Effect::FinishRun {
            status: status.word(),
            output,
            error,
        });
    }

    /// Runs a finished run again: its failed and cancelled steps (`from = None`), or `from` and
    /// every step after it. Their attempts go on counting; the retry policy counts from here.
    fn reset(&mut self, from: Option<&str>) -> Result<(), Reject> {
        if !self.next.is_finished() {
            return Err(Reject::RunNotFinished(self.next.status().word()));
        }
        let steps: Vec<String> = match from {
            Some(f) if self.def.step(f).is_some() && !f.contains('#') => super::plan::descendants(self.def, f),
            Some(f) => return Err(Reject::UnknownStep(f.to_string())),
            None => self
                .def
                .steps
                .iter()
                .filter(|s| {
                    matches!(
                        self.phase(&s.id),
                        Some(Phase::Failed { .. } | Phase::Cancelled | Phase::Pending)
                    )
                })
                .map(|s| s.id.clone())
                .collect(),
        };
        if from.is_none()
            && !steps
                .iter()
                .any(|s| matches!(self.phase(s), Some(Phase::Failed { .. } | Phase::Cancelled)))
        {
            return Err(Reject::NothingToRetry);
        }
        for id in &steps {
            let prefix = format!("{id}#");
            let elements: Vec<String> = self
                .next
                .steps
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            for e in elements {
                self.next.steps.remove(&e);
                self.changed.remove(&e);
                self.removed.push(e);
            }
            if let Some(s) = self.step_mut(id) {
                s.base = s.attempt;
                s.phase = Phase::Pending;
                s.resume = None;
                s.completed_by = None;
            }
        }
        self.next.steps_left = self
            .def
            .steps
            .iter()
            .filter(|s| !self.phase(&s.id).is_some_and(Phase::is_done))
            .count();
        self.next.phase = RunPhase::Running;
        if let Some(t) = self.def.timeout {
            let at = due(self.now, t);
            self.arm(TimerKind::RunTimeout, "", 0, at);
        }
        for id in steps {
            self.dispatch_if_ready(&id);
        }
        Ok(())
    }
}

/// An element count as a `usize`.
fn inputs_len(total: u32) -> usize {
    usize::try_from(total).unwrap_or(usize::MAX)
}
