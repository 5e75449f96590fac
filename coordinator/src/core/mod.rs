//! The run core: one pure state machine for a run of a workflow. No tokio, no redis, no clock
//! (`now` is an argument) and no randomness (a retry's jitter sample comes with its event).
//!
//! - [`apply`] takes a definition, a run's [`RunState`] and an [`Event`] and answers a
//!   [`Transition`] (the [`Delta`] and the [`Effect`]s to carry out) or a named [`Reject`].
//! - [`kinds`] holds one module per step kind and decides what a dispatched step does;
//!   [`gates`] the parents, `when`, rate-limit and concurrency gates beside them.
//! - [`classify`] says what a report or an attempt's timer means; [`texts`] holds every text users
//!   read; [`plan`] the graph plans and deadlines the store's scripts take.
//! - [`memory`] is an in-memory store built on [`apply`]: a whole run to its end in microseconds,
//!   for tests without Redis.
//!
//! The engine asks [`kinds::plan`], [`classify`] and [`texts`] for every decision and executes
//! the answer through the Redis store; the store's Lua scripts keep what must be atomic across
//! coordinators (the fence with the write, fan-in, outbox and timers in the same commit).

mod apply;
pub mod classify;
mod event;
pub mod gates;
pub mod kinds;
pub mod memory;
pub mod plan;
mod state;
pub mod texts;

#[cfg(test)]
mod tests;

pub use apply::{ITEM_BATCH, apply};
pub use classify::Outcome;
pub use event::{ChildResult, Delta, Effect, Event, GateAnswer, Reject, TimerKey, TimerKind, Transition};
pub use state::{FanOut, Phase, RunPhase, RunState, StepState, Wait};
