//! What happens to a run ([`Event`]), what the state machine answers ([`Transition`]: the new
//! state of what changed and the [`Effect`]s to carry out) and the named reasons it refuses an
//! event ([`Reject`]).

use std::collections::BTreeMap;

use super::{
    classify::Outcome,
    state::{RunPhase, StepState},
};

/// A timer of a run: what it does, for which step and attempt. Run-wide timers have step `""`
/// and attempt 0.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerKey {
    /// What it does when it fires.
    pub kind: TimerKind,
    /// The step (or element), `""` for the run.
    pub step: String,
    /// The attempt it belongs to.
    pub attempt: u32,
}

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKind {
    /// Dispatch a retrying step's next attempt.
    Retry,
    /// A running attempt's start-to-close timeout, or a wait's timeout.
    Timeout,
    /// A running attempt's heartbeat timeout.
    Heartbeat,
    /// A dispatched attempt's schedule-to-start timeout.
    ScheduleToStart,
    /// A sleep step wakes.
    Wake,
    /// A rate-limited step is dispatched again.
    RateWake,
    /// A fan-out step's elements all succeeded: gather their outputs.
    Items,
    /// An emitting step goes on starting its runs.
    Emit,
    /// The run's own timeout.
    RunTimeout,
}

/// What the cross-run pools answered for a dispatched task step's gates (the pools live in the
/// store, shared by runs; the state machine is told their answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateAnswer {
    /// Every gate let it through (it holds its concurrency slot, if it has a limit).
    Open,
    /// Its rate limit has room again at this time (Unix ms).
    RateLimited(i64),
    /// It waits in its concurrency pool's queue.
    SlotQueued,
}

/// How a child run (or an emitting step's runs) ended, as the parent learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildResult {
    /// Child run `child` is `status` (a run status word) with this output and error.
    Ended {
        /// The child run id.
        child: String,
        /// Its status word.
        status: String,
        /// Its output (JSON text), if it has one.
        output: Option<String>,
        /// Its error.
        error: String,
    },
    /// Every run an emitting step emits was started (and, with `wait: true`, finished).
    Emitted,
    /// The child could not be started, or the emission could not go on: the step fails with
    /// this message (`ChildWorkflowError: ...`, `EmitError: ...`).
    Refused(String),
}

/// Something that happens to a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The run was created: dispatch its root steps (and arm its timeout).
    Submit,
    /// The coordinator launches a committed dispatch of `step` (a step, or an element): decide what
    /// it does. A task step's gates answered `gate`.
    Dispatch {
        /// The step.
        step: String,
        /// The attempt dispatched.
        attempt: u32,
        /// What its pools said.
        gate: GateAnswer,
    },
    /// A worker took the attempt off its queue (StartStep). `holder_alive`: whether the worker
    /// now holding the attempt, if another, is still alive.
    Start {
        /// The step.
        step: String,
        /// The attempt.
        attempt: u32,
        /// The worker.
        worker: String,
        /// Whether the current holder (another worker) is alive.
        holder_alive: bool,
    },
    /// A worker reported the attempt's outcome (ReportResult).
    Report {
        /// The step.
        step: String,
        /// The attempt.
        attempt: u32,
        /// The worker.
        worker: String,
        /// What it reported.
        outcome: Outcome,
        /// The retry jitter's random sample, in `[0, 1)`.
        jitter: f64,
    },
    /// A worker's heartbeat for the attempt it runs.
    Heartbeat {
        /// The step.
        step: String,
        /// The attempt.
        attempt: u32,
        /// The worker.
        worker: String,
    },
    /// An armed timer came due.
    Timer {
        /// The timer.
        key: TimerKey,
        /// The retry jitter's random sample, in `[0, 1)` (an attempt timer may retry).
        jitter: f64,
    },
    /// An event was delivered to a waiting step (or a suspended handler).
    EventDelivered {
        /// The step.
        step: String,
        /// The attempt waiting.
        attempt: u32,
        /// The event's payload, JSON text.
        payload: String,
    },
    /// The step's child run (or its emitted runs) ended.
    ChildDone {
        /// The step.
        step: String,
        /// The attempt.
        attempt: u32,
        /// How.
        result: ChildResult,
    },
    /// A person completed a human step's form.
    HumanCompleted {
        /// The step.
        step: String,
        /// The attempt.
        attempt: u32,
        /// Who (the authenticated identity).
        user: String,
        /// The form data, JSON text.
        data: String,
    },
    /// The run is cancelled.
    Cancel {
        /// Why (may be empty).
        reason: String,
    },
    /// A finished run's failed and cancelled steps run again (RetryRun).
    Retry,
    /// A finished run runs again from `from` on (everything after it too).
    Rerun {
        /// The first step to run again.
        from: String,
    },
}

/// Something the caller carries out after committing a transition.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// `step` is committed as dispatched as `attempt`, with an outbox entry: launch it (send
    /// [`Event::Dispatch`]).
    Dispatch {
        /// The step.
        step: String,
        /// The attempt.
        attempt: u32,
    },
    /// Publish the task of `step` to the workers with this input (JSON text).
    Publish {
        /// The step.
        step: String,
        /// The attempt.
        attempt: u32,
        /// The input.
        input: String,
    },
    /// Arm a timer, due at `due` (Unix ms); an armed timer of the same key moves.
    ArmTimer {
        /// The timer.
        key: TimerKey,
        /// When (Unix ms).
        due: i64,
    },
    /// Disarm a timer.
    DisarmTimer {
        /// The timer.
        key: TimerKey,
    },
    /// Drop the outbox entry of `step` (it was published, or handled here).
    ClearOutbox {
        /// The step.
        step: String,
    },
    /// Append to the run's history: `step` attempt `attempt` is now `status` (a step status word).
    History {
        /// The step.
        step: String,
        /// The attempt.
        attempt: u32,
        /// The status word.
        status: &'static str,
        /// The detail users read.
        detail: String,
    },
    /// Start the child run of a workflow step.
    StartChild {
        /// The step.
        step: String,
        /// The attempt (the child id derives from it).
        attempt: u32,
        /// The workflow.
        workflow: String,
        /// Its version (0: latest).
        version: u32,
        /// The child's input.
        input: serde_json::Value,
    },
    /// Cancel the child run of a workflow step (its parent ended).
    CancelChild {
        /// The step.
        step: String,
        /// The attempt.
        attempt: u32,
    },
    /// Go on starting an emitting step's runs (cross-run work; it ends with
    /// [`Event::ChildDone`]).
    EmitRuns {
        /// The step.
        step: String,
        /// The attempt.
        attempt: u32,
    },
    /// Give back the concurrency slot the step's attempt held.
    ReleaseSlot {
        /// The step.
        step: String,
        /// The attempt.
        attempt: u32,
    },
    /// Tell the parent run this run ended.
    NotifyParent {
        /// How it ended.
        status: &'static str,
    },
    /// The run is over.
    FinishRun {
        /// Its status word.
        status: &'static str,
        /// Its output (JSON text) when it succeeded.
        output: String,
        /// Its error otherwise.
        error: String,
    },
}

/// What changed in the run's and its steps' states (what a store writes); the timers, slots and
/// outbox entries change through the [`Effect`]s, and [`Transition::next`] is the whole new state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Delta {
    /// The run's new phase, if it changed.
    pub phase: Option<RunPhase>,
    /// The new state of the steps that changed.
    pub steps: BTreeMap<String, StepState>,
    /// Steps removed (the elements of a fan-out that runs again).
    pub removed: Vec<String>,
}

/// The answer to an accepted event.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// What changed.
    pub delta: Delta,
    /// The run's state after it.
    pub next: super::state::RunState,
    /// What to carry out, in order, after committing.
    pub effects: Vec<Effect>,
}

/// Why an event was refused. A refused event changes nothing; the names are stable (like
/// temporal's nondeterminism errors: an unexpected event is named, never ignored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// The run is over (a worker is told "cancelled").
    #[error("RunFinished: the run is {0}")]
    RunFinished(&'static str),
    /// The run is not over (RetryRun and re-runs need a finished run).
    #[error("RunNotFinished: the run is {0}")]
    RunNotFinished(&'static str),
    /// The run was submitted already.
    #[error("AlreadySubmitted: the run has started")]
    AlreadySubmitted,
    /// No such step in the definition (or no such element).
    #[error("UnknownStep: no step {0}")]
    UnknownStep(String),
    /// Not the step's current attempt (fencing).
    #[error("StaleAttempt: step {step} is at attempt {current}, not {got}")]
    StaleAttempt {
        /// The step.
        step: String,
        /// Its current attempt.
        current: u32,
        /// The attempt the event named.
        got: u32,
    },
    /// A worker's event for a step that runs no handler.
    #[error("NotAHandlerStep: step {step} is a {kind} step; no worker runs it")]
    NotAHandlerStep {
        /// The step.
        step: String,
        /// Its kind.
        kind: &'static str,
    },
    /// The step's kind does not take this event.
    #[error("WrongKind: step {step} is a {kind} step and takes no {event}")]
    WrongKind {
        /// The step.
        step: String,
        /// Its kind.
        kind: &'static str,
        /// The event.
        event: &'static str,
    },
    /// The attempt is not in a state that takes this event.
    #[error("WrongState: step {step} is {status}; {event} needs it {wanted}")]
    WrongState {
        /// The step.
        step: String,
        /// Its status word.
        status: &'static str,
        /// The event.
        event: &'static str,
        /// The state it needs.
        wanted: &'static str,
    },
    /// Another live worker holds the attempt (a duplicate copy: drop it).
    #[error("HeldByLiveWorker: worker {holder} holds step {step}")]
    HeldByLiveWorker {
        /// The step.
        step: String,
        /// The holder.
        holder: String,
    },
    /// The attempt is held by another worker than the one that sent the event.
    #[error("NotHolder: worker {holder} holds step {step}, not {worker}")]
    NotHolder {
        /// The step.
        step: String,
        /// The holder.
        holder: String,
        /// The sender.
        worker: String,
    },
    /// A worker's report that is not one (`output_json: not valid JSON`, ...): `INVALID_ARGUMENT`.
    #[error("InvalidReport: {0}")]
    InvalidReport(String),
    /// The timer is not armed (it fired already, or was disarmed).
    #[error("TimerNotArmed: {0:?}")]
    TimerNotArmed(TimerKey),
    /// A child-done notice for a child run that has not finished.
    #[error("ChildNotFinished: child run {0} has not finished")]
    ChildNotFinished(String),
    /// RetryRun with nothing failed or cancelled.
    #[error("NothingToRetry: no step failed or was cancelled")]
    NothingToRetry,
    /// The gate answer names a gate the step does not have.
    #[error("NoSuchGate: step {0} has no such limit")]
    NoSuchGate(String),
}

impl Reject {
    /// The stable name of the reject (its first word).
    pub fn name(&self) -> &'static str {
        match self {
            Reject::RunFinished(_) => "RunFinished",
            Reject::RunNotFinished(_) => "RunNotFinished",
            Reject::AlreadySubmitted => "AlreadySubmitted",
            Reject::UnknownStep(_) => "UnknownStep",
            Reject::StaleAttempt { .. } => "StaleAttempt",
            Reject::NotAHandlerStep { .. } => "NotAHandlerStep",
            Reject::WrongKind { .. } => "WrongKind",
            Reject::WrongState { .. } => "WrongState",
            Reject::HeldByLiveWorker { .. } => "HeldByLiveWorker",
            Reject::NotHolder { .. } => "NotHolder",
            Reject::InvalidReport(_) => "InvalidReport",
            Reject::TimerNotArmed(_) => "TimerNotArmed",
            Reject::ChildNotFinished(_) => "ChildNotFinished",
            Reject::NothingToRetry => "NothingToRetry",
            Reject::NoSuchGate(_) => "NoSuchGate",
        }
    }
}
