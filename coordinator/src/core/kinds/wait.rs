//! The wait kind: a `wait_for_event` step waits, holding no worker, for an event published with
//! `PublishEvent` (name and correlation key), at most its `timeout`; then it fails or is skipped
//! as `on_timeout` says. A handler that suspended itself waits the same way and is dispatched
//! again with the event as its resume data.

use baton_shared::{
    definition::{OnTimeout, WaitForEvent},
    expr::Bindings,
};

use super::{Halt, Kind, StartPlan, fail};
use crate::core::{classify::Ending, plan::due, texts};

/// The event and key the step waits for, and when the wait times out.
///
/// # Errors
/// `KeyError: wait_for_event.key: ...`.
pub fn plan(w: &WaitForEvent, b: &Bindings, now: i64) -> Result<StartPlan, Halt> {
    let key = match &w.key {
        None => String::new(),
        Some(k) => k.eval_key(b).map_err(fail("KeyError: wait_for_event.key"))?,
    };
    Ok(StartPlan::WaitEvent {
        event: w.event.clone(),
        key,
        timeout_at: w.timeout.map(|t| due(now, t)).unwrap_or(0),
    })
}

/// How a step of `kind` that waits for `waiting_for` ends when its wait times out: per
/// `on_timeout` for a `wait_for_event` or human step, failed for anything else (a suspended
/// handler).
pub fn timed_out(kind: Kind<'_>, waiting_for: &str) -> Ending {
    let (on_timeout, message) = match kind {
        Kind::Wait(w) => (w.on_timeout, texts::event_wait_timed_out(waiting_for, w.timeout)),
        Kind::Human(h) => (h.on_timeout, texts::human_timed_out(waiting_for, h.timeout)),
        _ => (OnTimeout::Fail, texts::wait_timed_out(waiting_for)),
    };
    match on_timeout {
        OnTimeout::Fail => Ending::TimedOut(message),
        OnTimeout::Skip => Ending::Skip(message),
    }
}

/// What a delivered event does to a waiting step of `kind`: a suspended handler is dispatched
/// again with the event as its resume data; a `wait_for_event` step succeeds with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Dispatch the next attempt with the event as resume data.
    Resume,
    /// Succeed with the event's payload as output.
    Complete,
}

/// See [`Delivery`].
pub fn delivery(kind: Kind<'_>) -> Delivery {
    if kind.runs_handler() {
        Delivery::Resume
    } else {
        Delivery::Complete
    }
}
