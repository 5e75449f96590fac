//! An in-memory store built on the run core: runs, their timers (a due-ordered set) and the
//! published tasks (a queue), with [`apply`] as the only way to change a run. It runs a whole
//! run, child runs included, to its end in microseconds, so engine-level behaviour is tested
//! without Redis; its clock is manual ([`MemoryStore::now`]).
//!
//! What it models of the cross-run pools: a step with a rate limit is parked once per attempt
//! (its window has room again a second later), and a step with a concurrency limit waits in its
//! pool's queue once per attempt (granted at the next [`MemoryStore::advance`]). What it does not
//! model: event buffering (an event is delivered to the steps waiting for it when published), and
//! an emitting step's child runs (its emission ends at once).

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::Arc,
};

use baton_shared::definition::WorkflowDefinition;

use super::{
    ChildResult, Effect, Event, GateAnswer, Outcome, Reject, RunState, TimerKey, apply,
    state::{Phase, Wait},
};

/// A task published to the workers.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// The run.
    pub run: String,
    /// The step (or element).
    pub step: String,
    /// The attempt.
    pub attempt: u32,
    /// Its input, JSON text.
    pub input: String,
}

/// One run and what it belongs to.
#[derive(Debug, Clone)]
struct Run {
    def: Arc<WorkflowDefinition>,
    state: RunState,
    /// The parent's (run, step, attempt), for a child run.
    parent: Option<(String, String, u32)>,
}

/// Runs in memory, changed only through [`apply`].
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// The clock (Unix ms): moved by [`MemoryStore::advance`] or by the caller.
    pub now: i64,
    defs: BTreeMap<String, Arc<WorkflowDefinition>>,
    runs: BTreeMap<String, Run>,
    timers: BTreeSet<(i64, String, TimerKey)>,
    /// Published tasks not yet taken by a worker.
    pub queue: VecDeque<Task>,
    /// Every effect carried out, with its run, in order.
    pub effects: Vec<(String, Effect)>,
    /// Every refused event, with its run.
    pub rejects: Vec<(String, Reject)>,
    /// The largest output a step may have (bytes).
    pub max_payload_bytes: usize,
    /// (run, step, attempt) already parked by their rate limit or queued for a slot.
    gated: BTreeSet<(String, String, u32, bool)>,
    /// Steps queued for a slot, granted at the next [`MemoryStore::advance`].
    grants: VecDeque<(String, String, u32)>,
}

impl MemoryStore {
    /// An empty store at time `now` (Unix ms).
    pub fn new(now: i64) -> MemoryStore {
        MemoryStore {
            now,
            max_payload_bytes: 1 << 20,
            ..MemoryStore::default()
        }
    }

    /// Registers a definition (child workflows are found by name).
    pub fn register(&mut self, def: WorkflowDefinition) -> Arc<WorkflowDefinition> {
        let def = Arc::new(def);
        self.defs.insert(def.name.clone(), def.clone());
        def
    }

    /// Creates run `run_id` of workflow `workflow` with `input` (JSON text) and submits it.
    ///
    /// # Errors
    /// The reject of its submit; `UnknownStep` naming the workflow when it is not registered.
    pub fn submit(&mut self, workflow: &str, run_id: &str, input: &str) -> Result<(), Reject> {
        self.create(workflow, run_id, input, None)
    }

    fn create(
        &mut self,
        workflow: &str,
        run_id: &str,
        input: &str,
        parent: Option<(String, String, u32)>,
    ) -> Result<(), Reject> {
        let def = self
            .defs
            .get(workflow)
            .cloned()
            .ok_or_else(|| Reject::UnknownStep(format!("workflow {workflow}")))?;
        let mut state = RunState::new(&def, input, self.max_payload_bytes);
        state.has_parent = parent.is_some();
        self.runs.insert(run_id.to_string(), Run { def, state, parent });
        self.send(run_id, Event::Submit)
    }

    /// The state of run `run_id`.
    pub fn run(&self, run_id: &str) -> Option<&RunState> {
        self.runs.get(run_id).map(|r| &r.state)
    }

    /// The ids of every run, child runs included.
    pub fn run_ids(&self) -> impl Iterator<Item = &String> {
        self.runs.keys()
    }

    /// The timers armed, by due time.
    pub fn timers(&self) -> impl Iterator<Item = &(i64, String, TimerKey)> {
        self.timers.iter()
    }

    /// Applies `event` to run `run_id` and carries out the effects (and the events they cause,
    /// in order: a dispatch is launched, a child run started, a parent told). Rejects of the
    /// events effects cause are kept in [`MemoryStore::rejects`].
    ///
    /// # Errors
    /// The reject of `event` itself; nothing changed then.
    pub fn send(&mut self, run_id: &str, event: Event) -> Result<(), Reject> {
        let mut pending: VecDeque<(String, Event)> = VecDeque::new();
        self.apply_one(run_id, &event, &mut pending)?;
        while let Some((run, e)) = pending.pop_front() {
            if let Err(r) = self.apply_one(&run, &e, &mut pending) {
                self.rejects.push((run, r));
            }
        }
        Ok(())
    }

    fn apply_one(
        &mut self,
        run_id: &str,
        event: &Event,
        pending: &mut VecDeque<(String, Event)>,
    ) -> Result<(), Reject> {
        let run = self
            .runs
            .get_mut(run_id)
            .ok_or_else(|| Reject::UnknownStep(format!("run {run_id}")))?;
        let t = apply(&run.def, &run.state, event, self.now)?;
        if let Event::Timer { key, .. } = event {
            // It fired.
            self.timers.retain(|(_, r, k)| !(r == run_id && k == key));
        }
        run.state = t.next;
        let parent = run.parent.clone();
        for effect in t.effects {
            match &effect {
                Effect::Dispatch { step, attempt } => {
                    let gate = self.gate(run_id, step, *attempt);
                    if gate == GateAnswer::SlotQueued {
                        self.grants.push_back((run_id.to_string(), step.clone(), *attempt));
                    }
                    pending.push_back((
                        run_id.to_string(),
                        Event::Dispatch {
                            step: step.clone(),
                            attempt: *attempt,
                            gate,
                        },
                    ))
                }
                Effect::Publish { step, attempt, input } => self.queue.push_back(Task {
                    run: run_id.to_string(),
                    step: step.clone(),
                    attempt: *attempt,
                    input: input.clone(),
                }),
                Effect::ArmTimer { key, due } => {
                    self.timers.retain(|(_, r, k)| !(r == run_id && k == key));
                    self.timers.insert((*due, run_id.to_string(), key.clone()));
                }
                Effect::DisarmTimer { key } => self.timers.retain(|(_, r, k)| !(r == run_id && k == key)),
                Effect::StartChild {
                    step,
                    attempt,
                    workflow,
                    input,
                    ..
                } => {
                    let child = format!("{run_id}/{step}/{attempt}");
                    let parent = Some((run_id.to_string(), step.clone(), *attempt));
                    if let Err(e) = self.create(workflow, &child, &input.to_string(), parent) {
                        pending.push_back((
                            run_id.to_string(),
                            Event::ChildDone {
                                step: step.clone(),
                                attempt: *attempt,
                                result: ChildResult::Refused(super::texts::child_unknown(&e.to_string())),
                            },
                        ));
                    }
                }
                Effect::CancelChild { step, attempt } => pending.push_back((
                    format!("{run_id}/{step}/{attempt}"),
                    Event::Cancel {
                        reason: "its parent run ended".into(),
                    },
                )),
                Effect::EmitRuns { step, attempt } => pending.push_back((
                    run_id.to_string(),
                    Event::ChildDone {
                        step: step.clone(),
                        attempt: *attempt,
                        result: ChildResult::Emitted,
                    },
                )),
                Effect::NotifyParent { status } => {
                    if let Some((prun, pstep, pattempt)) = &parent {
                        let (output, error) = match self.runs.get(run_id).map(|r| &r.state.phase) {
                            Some(super::RunPhase::Finished { output, error, .. }) => (output.clone(), error.clone()),
                            _ => (String::new(), String::new()),
                        };
                        pending.push_back((
                            prun.clone(),
                            Event::ChildDone {
                                step: pstep.clone(),
                                attempt: *pattempt,
                                result: ChildResult::Ended {
                                    child: run_id.to_string(),
                                    status: (*status).to_string(),
                                    output: Some(output),
                                    error,
                                },
                            },
                        ));
                    }
                }
                Effect::ClearOutbox { .. }
                | Effect::History { .. }
                | Effect::ReleaseSlot { .. }
                | Effect::FinishRun { .. } => {}
            }
            self.effects.push((run_id.to_string(), effect));
        }
        Ok(())
    }

    /// What the pools answer for a dispatch of `step` (see the module's doc).
    fn gate(&mut self, run_id: &str, step: &str, attempt: u32) -> GateAnswer {
        let Some(def) = self.runs.get(run_id).map(|r| r.def.clone()) else {
            return GateAnswer::Open;
        };
        let Some(s) = def.step(step).filter(|_| !step.contains('#')) else {
            return GateAnswer::Open;
        };
        let mut once = |slot: bool| self.gated.insert((run_id.to_string(), step.to_string(), attempt, slot));
        if s.rate_limit.is_some() && once(false) {
            return GateAnswer::RateLimited(self.now.saturating_add(1_000));
        }
        if s.concurrency.is_some() && once(true) {
            return GateAnswer::SlotQueued;
        }
        GateAnswer::Open
    }

    /// Grants a queued slot, or fires the earliest armed timer, moving the clock to its due time
    /// if it is later. Returns false when nothing was left to do.
    pub fn advance(&mut self) -> bool {
        if let Some((run, step, attempt)) = self.grants.pop_front() {
            let event = Event::Dispatch {
                step,
                attempt,
                gate: GateAnswer::Open,
            };
            if let Err(r) = self.send(&run, event) {
                self.rejects.push((run, r));
            }
            return true;
        }
        let Some(first) = self.timers.iter().next().cloned() else {
            return false;
        };
        self.timers.remove(&first);
        let (due, run, key) = first;
        self.now = self.now.max(due);
        if let Err(r) = self.send(&run, Event::Timer { key, jitter: 0.0 }) {
            self.rejects.push((run, r));
        }
        true
    }

    /// Delivers event (`name`, `key`) with `payload` (JSON text) to every step waiting for it.
    /// Returns how many took it.
    pub fn publish_event(&mut self, name: &str, key: &str, payload: &str) -> usize {
        let waiting: Vec<(String, String, u32)> = self
            .runs
            .iter()
            .flat_map(|(run_id, r)| {
                r.state.steps.iter().filter_map(move |(id, s)| match &s.phase {
                    Phase::Waiting(Wait::Event { event, key: k } | Wait::Suspended { event, key: k })
                        if event == name && k == key =>
                    {
                        Some((run_id.clone(), id.clone(), s.attempt))
                    }
                    _ => None,
                })
            })
            .collect();
        let n = waiting.len();
        for (run, step, attempt) in waiting {
            let event = Event::EventDelivered {
                step,
                attempt,
                payload: payload.to_string(),
            };
            if let Err(r) = self.send(&run, event) {
                self.rejects.push((run, r));
            }
        }
        n
    }

    /// Runs every published task with `handler` (given the task, it answers the outcome) on
    /// worker `worker`, and fires timers, until nothing is left to do or `max_steps` actions were
    /// taken. Returns the actions taken.
    pub fn run_to_end(&mut self, worker: &str, mut handler: impl FnMut(&Task) -> Outcome, max_steps: usize) -> usize {
        let mut n = 0;
        while n < max_steps {
            n += 1;
            if let Some(task) = self.queue.pop_front() {
                let start = Event::Start {
                    step: task.step.clone(),
                    attempt: task.attempt,
                    worker: worker.to_string(),
                    holder_alive: true,
                };
                if let Err(r) = self.send(&task.run, start) {
                    self.rejects.push((task.run.clone(), r));
                    continue;
                }
                let report = Event::Report {
                    step: task.step.clone(),
                    attempt: task.attempt,
                    worker: worker.to_string(),
                    outcome: handler(&task),
                    jitter: 0.0,
                };
                if let Err(r) = self.send(&task.run, report) {
                    self.rejects.push((task.run.clone(), r));
                }
            } else if !self.advance() {
                break;
            }
        }
        n
    }
}
