//! Step kinds as modules: what each kind does when its step is dispatched ([`plan`]) and which
//! events it accepts ([`Kind::accepts`]). A kind is matched here, once; the engine and the state
//! machine ask this module and execute the plan it gives.
//!
//! Adding a kind: one module here, one [`Kind`] variant (with its line in [`Kind::of`],
//! [`Kind::accepts`] and [`plan`]), and its parsing in `baton_shared::definition`.

pub mod child;
pub mod emit;
pub mod fan_out;
pub mod human;
pub mod sleep;
pub mod task;
pub mod wait;

use baton_shared::{
    definition::{ChildWorkflow, Emit, ForEach, HumanStep, StepDefinition, StepKind, WaitForEvent, split_item},
    expr::{Bindings, Expr},
};

use super::{gates, texts};

/// A step's kind, with the part of its definition the kind reads.
#[derive(Debug, Clone, Copy)]
pub enum Kind<'a> {
    /// Runs its handler on a worker once per attempt.
    Task,
    /// Runs its handler, then starts runs of another workflow from the output.
    Emit(&'a Emit),
    /// Runs its handler once per element of a list (the elements are `<step>#<index>`).
    FanOut(&'a ForEach),
    /// A fan-out element: runs the handler of its step over its own input.
    Element,
    /// Waits a fixed time (`sleep`) or until a time (`sleep_until`), holding no worker.
    Sleep(Option<&'a Expr>),
    /// Waits for an event published with `PublishEvent`.
    Wait(&'a WaitForEvent),
    /// Waits for a person to complete a form.
    Human(&'a HumanStep),
    /// Starts a child run and waits for it.
    Child(&'a ChildWorkflow),
}

/// The kinds of event a step can be sent; [`Kind::accepts`] says which a kind takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClass {
    /// A worker's StartStep, ReportResult, Heartbeat or EmitEvent.
    Worker,
    /// An event delivered to a waiting step.
    EventDelivered,
    /// A child run (or every emitted run) finished.
    ChildDone,
    /// A person completed the step's form.
    HumanCompleted,
    /// A sleep's wake-up.
    Wake,
}

impl<'a> Kind<'a> {
    /// The kind of `step_id` (a step, or a fan-out element `<step>#<index>`) of `step`.
    pub fn of(step: &'a StepDefinition, step_id: &str) -> Kind<'a> {
        match &step.kind {
            StepKind::Task if split_item(step_id).1.is_some() => Kind::Element,
            StepKind::Task => match (&step.for_each, &step.emit) {
                (Some(f), _) => Kind::FanOut(f),
                (None, Some(e)) => Kind::Emit(e),
                (None, None) => Kind::Task,
            },
            StepKind::Sleep => Kind::Sleep(None),
            StepKind::SleepUntil(e) => Kind::Sleep(Some(e)),
            StepKind::WaitForEvent(w) => Kind::Wait(w),
            StepKind::Human(h) => Kind::Human(h),
            StepKind::Workflow(c) => Kind::Child(c),
        }
    }

    /// Whether a worker runs a handler for it (the only steps a worker may start, heartbeat, emit
    /// from or report; one worker holds an attempt at a time).
    pub fn runs_handler(self) -> bool {
        matches!(self, Kind::Task | Kind::Emit(_) | Kind::Element)
    }

    /// Whether a step of this kind takes events of `class` (anything else is rejected by name).
    /// A suspended handler (a task) takes a delivered event too.
    pub fn accepts(self, class: EventClass) -> bool {
        match class {
            EventClass::Worker => self.runs_handler(),
            EventClass::EventDelivered => matches!(self, Kind::Wait(_) | Kind::Task | Kind::Emit(_)),
            EventClass::ChildDone => matches!(self, Kind::Child(_) | Kind::Emit(_)),
            EventClass::HumanCompleted => matches!(self, Kind::Human(_)),
            EventClass::Wake => matches!(self, Kind::Sleep(_)),
        }
    }

    /// The kind's name, as errors and rejects say it.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Task => "task",
            Kind::Emit(_) => "emit",
            Kind::FanOut(_) => "fan-out",
            Kind::Element => "fan-out element",
            Kind::Sleep(None) => "sleep",
            Kind::Sleep(Some(_)) => "sleep_until",
            Kind::Wait(_) => "wait_for_event",
            Kind::Human(_) => "human",
            Kind::Child(_) => "workflow",
        }
    }
}

/// Why a dispatched step does not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    /// End the step as skipped, for this reason.
    Skip(String),
    /// Fail the step for good, with this message (retrying would give the same answer).
    Fail(String),
}

/// What a dispatched step does, decided from its definition and what it reads. The engine (or
/// the in-memory store) executes it.
#[derive(Debug, Clone, PartialEq)]
pub enum StartPlan {
    /// Publish the task to the workers with this input (JSON text), once its gates let it.
    Publish {
        /// The step's input.
        input: String,
        /// Its rate limit and concurrency pools.
        gates: gates::Gates,
    },
    /// Publish a fan-out element with its own input (JSON text).
    PublishElement {
        /// The element's input.
        input: String,
    },
    /// Fan out over these element inputs (JSON texts), at most `max_parallel` at a time.
    FanOut {
        /// One input per element, in element order.
        inputs: Vec<String>,
        /// Elements in flight at most.
        max_parallel: u32,
    },
    /// Sleep until `wake` (Unix ms).
    Sleep {
        /// When the step wakes.
        wake: i64,
    },
    /// Wait for an event.
    WaitEvent {
        /// The event name.
        event: String,
        /// Its correlation key.
        key: String,
        /// When the wait times out (Unix ms), or 0 for never.
        timeout_at: i64,
    },
    /// Open a human task.
    Human {
        /// The task's title.
        title: String,
        /// When the task times out (Unix ms), or 0 for never.
        timeout_at: i64,
    },
    /// Start a run of this workflow with this input.
    Child {
        /// The child workflow.
        workflow: String,
        /// Its version (0: the latest).
        version: u32,
        /// The child's input.
        input: serde_json::Value,
    },
}

impl StartPlan {
    /// What the step shows it waits for once the plan is carried out, if it waits.
    pub fn waiting_for(&self) -> Option<String> {
        match self {
            StartPlan::Sleep { wake } => Some(texts::sleeping_until(*wake)),
            StartPlan::WaitEvent { event, key, .. } => Some(texts::waiting_for_event(event, key)),
            StartPlan::Human { title, .. } => Some(texts::human_task(title)),
            _ => None,
        }
    }
}

/// What a plan reads about the dispatch: the run, the attempt, when it was committed, and the
/// bindings of the run input and the steps the step reads.
pub struct Dispatched<'a> {
    /// The run's workflow (pools are named after it).
    pub workflow: &'a str,
    /// The run.
    pub run_id: &'a str,
    /// The step, or a fan-out element `<step>#<index>`.
    pub step_id: &'a str,
    /// The attempt, 1-based.
    pub attempt: u32,
    /// When the dispatch was committed (Unix ms; 0 when unknown: `now` counts).
    pub dispatched_at: i64,
    /// The run input (JSON text): what a task step without an `input:` template gets.
    pub input_json: &'a str,
    /// For a fan-out element: its own input (JSON text).
    pub item_input: Option<&'a str>,
    /// The statuses of the steps the step reads, by id (`succeeded` or `skipped`).
    pub parent_statuses: &'a dyn Fn(&str) -> Option<String>,
    /// The bindings its expressions see (built only for a step that evaluates expressions, not
    /// for a fan-out element); `Err` when a stored value is not JSON.
    pub bindings: &'a dyn Fn() -> Result<Bindings, String>,
}

/// Decides what dispatched step `d.step_id` of `step` does at `now` (Unix ms): skipped when all
/// its parents were skipped or its condition is false; failed when an expression cannot be
/// evaluated; otherwise the plan of its kind.
///
/// # Errors
/// [`Halt`] with the reason or message users read ([`texts`]).
pub fn plan(step: &StepDefinition, d: Dispatched<'_>, now: i64) -> Result<StartPlan, Halt> {
    let kind = Kind::of(step, d.step_id);
    if let Kind::Element = kind {
        return Ok(task::element(&d));
    }
    gates::all_parents_skipped(step, d.parent_statuses)?;
    let mut bindings = (d.bindings)().map_err(fail("InputError"))?;
    gates::when(step, &bindings)?;
    match kind {
        Kind::Task | Kind::Emit(_) => task::plan(step, &d, &bindings),
        Kind::FanOut(f) => fan_out::plan(step, f, &mut bindings),
        Kind::Element => Ok(task::element(&d)),
        Kind::Sleep(until) => sleep::plan(step, until, &d, &bindings, now),
        Kind::Wait(w) => wait::plan(w, &bindings, now),
        Kind::Human(h) => Ok(human::plan(h, now)),
        Kind::Child(c) => child::plan(step, c, &bindings),
    }
}

/// Turns an evaluation error into a step failure, `"<what>: <error>"`.
pub(crate) fn fail(what: &str) -> impl FnOnce(String) -> Halt + '_ {
    move |e| Halt::Fail(texts::evaluation_failed(what, &e))
}
