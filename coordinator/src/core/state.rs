//! The typed state of one run: its phase, and per step (and fan-out element) the current attempt
//! and the state that attempt is in, each state carrying its data. Also what the run holds
//! outside itself: armed timers, concurrency slots and outbox entries, so that the state machine
//! can prove it gives them all back.

use std::collections::{BTreeMap, BTreeSet};

use baton_shared::{definition::WorkflowDefinition, proto::RunStatus};

use super::event::TimerKey;

/// A run's state.
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    /// Where the run is in its life.
    pub phase: RunPhase,
    /// The run input, JSON text.
    pub input: String,
    /// Per step id (and fan-out element `<step>#<index>`), its state. Every step of the
    /// definition has an entry from the start; elements are added when their fan-out starts.
    pub steps: BTreeMap<String, StepState>,
    /// Steps (not elements) not yet succeeded or skipped; the run succeeds when it reaches 0.
    pub steps_left: usize,
    /// Timers armed for this run (each fires once, or is disarmed).
    pub timers: BTreeSet<TimerKey>,
    /// Steps whose current attempt holds a concurrency slot.
    pub slots: BTreeSet<String>,
    /// Steps with a dispatch not yet confirmed published (the sweeper re-sends them).
    pub outbox: BTreeSet<String>,
    /// Whether a parent run waits for this one (a child or emitted run).
    pub has_parent: bool,
    /// The largest output a step may have (bytes).
    pub max_payload_bytes: usize,
}

/// Where a run is in its life.
#[derive(Debug, Clone, PartialEq)]
pub enum RunPhase {
    /// Created; no step has started yet.
    Pending,
    /// A step has started.
    Running,
    /// Over: `status` is terminal.
    Finished {
        /// How it ended.
        status: RunStatus,
        /// Its output (the leaves' outputs by step id, JSON text), when it succeeded.
        output: String,
        /// Why it did not succeed.
        error: String,
    },
}

/// One step's (or element's) state: its current attempt and what that attempt is doing.
#[derive(Debug, Clone, PartialEq)]
pub struct StepState {
    /// The current attempt, 1-based; 0 before the first dispatch. Numbering goes on across retries
    /// and re-runs, so a late report of an earlier attempt never passes for a new one.
    pub attempt: u32,
    /// Attempts before the run's last retry, re-run or resume (the retry policy counts from here).
    pub base: u32,
    /// The attempt's state.
    pub phase: Phase,
    /// For a fan-out element: its own input (JSON text).
    pub item_input: Option<String>,
    /// For a resumed handler: the event that resumed it (JSON text).
    pub resume: Option<String>,
    /// For a human step: who completed it.
    pub completed_by: Option<String>,
}

/// The state of a step's current attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Its parents have not all finished.
    Pending,
    /// Committed as dispatched at `at` (Unix ms); the coordinator decides what it does.
    Dispatched {
        /// When (Unix ms).
        at: i64,
    },
    /// A task published to the workers, waiting for one to start it.
    Queued {
        /// When it was published (Unix ms).
        at: i64,
    },
    /// Held by one worker, running its handler.
    Running {
        /// The worker holding the attempt.
        worker: String,
        /// Its last sign of life (Unix ms).
        heartbeat_at: i64,
    },
    /// A fan-out step whose elements run.
    FanOut(FanOut),
    /// Waiting, holding no worker.
    Waiting(Wait),
    /// Failed; the next attempt (the step's `attempt`) is dispatched at `at`.
    Retrying {
        /// When (Unix ms).
        at: i64,
        /// The failed attempt's error.
        error: String,
    },
    /// Succeeded with this output (JSON text).
    Succeeded {
        /// The output.
        output: String,
    },
    /// Skipped, for this reason.
    Skipped {
        /// The reason users read.
        reason: String,
    },
    /// Failed for good with this error.
    Failed {
        /// The error users read.
        error: String,
    },
    /// Ended with its run.
    Cancelled,
}

impl Phase {
    /// The status word users see (`dispatched`, `running`, ...).
    pub fn word(&self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Dispatched { .. } | Phase::Queued { .. } => "dispatched",
            Phase::Running { .. } | Phase::FanOut(_) => "running",
            Phase::Waiting(_) => "waiting",
            Phase::Retrying { .. } => "retrying",
            Phase::Succeeded { .. } => "succeeded",
            Phase::Skipped { .. } => "skipped",
            Phase::Failed { .. } => "failed",
            Phase::Cancelled => "cancelled",
        }
    }

    /// Whether the steps after it may go on (succeeded or skipped).
    pub fn is_done(&self) -> bool {
        matches!(self, Phase::Succeeded { .. } | Phase::Skipped { .. })
    }

    /// Whether it is over (done, failed or cancelled).
    pub fn is_settled(&self) -> bool {
        matches!(
            self,
            Phase::Succeeded { .. } | Phase::Skipped { .. } | Phase::Failed { .. } | Phase::Cancelled
        )
    }
}

/// A fan-out step's progress over its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOut {
    /// Elements in all.
    pub total: u32,
    /// Elements that succeeded.
    pub ok: u32,
    /// Elements that failed for good.
    pub failed: u32,
    /// Elements dispatched so far (the next element's index).
    pub next: u32,
    /// Elements in flight at most.
    pub parallel: u32,
    /// Every element succeeded: their outputs are being gathered.
    pub gathering: bool,
}

/// What a waiting step waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// Its wake-up at `wake` (Unix ms).
    Sleep {
        /// When.
        wake: i64,
    },
    /// An event (name, key), for a `wait_for_event` step.
    Event {
        /// The event name.
        event: String,
        /// Its correlation key.
        key: String,
    },
    /// An event (name, key), for a handler that suspended itself.
    Suspended {
        /// The event name.
        event: String,
        /// Its correlation key.
        key: String,
    },
    /// A person to complete its form.
    Human {
        /// The task's title.
        title: String,
    },
    /// Its child run.
    Child,
    /// The runs it emits (its handler succeeded with `output`, on `worker`).
    Emit {
        /// The handler's output.
        output: String,
        /// The worker that ran it.
        worker: String,
    },
    /// Room in its rate limit, at `until` (Unix ms).
    RateLimited {
        /// When it is dispatched again.
        until: i64,
    },
    /// A slot of its concurrency pool.
    Slot,
}

impl StepState {
    /// A step that has not been dispatched.
    pub fn pending() -> StepState {
        StepState {
            attempt: 0,
            base: 0,
            phase: Phase::Pending,
            item_input: None,
            resume: None,
            completed_by: None,
        }
    }
}

impl RunState {
    /// A new run of `def` with `input` (JSON text): every step pending. Outputs over
    /// `max_payload_bytes` fail their step.
    pub fn new(def: &WorkflowDefinition, input: &str, max_payload_bytes: usize) -> RunState {
        RunState {
            phase: RunPhase::Pending,
            input: input.to_string(),
            steps: def.steps.iter().map(|s| (s.id.clone(), StepState::pending())).collect(),
            steps_left: def.steps.len(),
            timers: BTreeSet::new(),
            slots: BTreeSet::new(),
            outbox: BTreeSet::new(),
            has_parent: false,
            max_payload_bytes,
        }
    }

    /// Whether the run is over.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, RunPhase::Finished { .. })
    }

    /// The run's status.
    pub fn status(&self) -> RunStatus {
        match &self.phase {
            RunPhase::Pending => RunStatus::Pending,
            RunPhase::Running => RunStatus::Running,
            RunPhase::Finished { status, .. } => *status,
        }
    }

    /// The status word of step (or element) `id`, if it exists.
    pub fn step_status(&self, id: &str) -> Option<&'static str> {
        self.steps.get(id).map(|s| s.phase.word())
    }
}
