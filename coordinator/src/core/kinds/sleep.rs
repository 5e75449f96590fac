//! The sleep kind: `sleep` (a fixed time from the dispatch) or `sleep_until` (a time a CEL
//! expression gives), on a durable timer, holding no worker. Its output is `{"slept_ms": N}` or
//! `{"woke_at_ms": N}`.

use baton_shared::{
    definition::StepDefinition,
    expr::{Bindings, Expr},
};

use super::{Dispatched, Halt, StartPlan, fail};
use crate::core::{plan::LATEST_DUE_MS, plan::due, texts};

/// When the step wakes: `sleep` after the dispatch was committed, or the `sleep_until` time
/// (never before `now`, never after [`LATEST_DUE_MS`]).
///
/// # Errors
/// `SleepUntilError: sleep_until: ...`.
pub fn plan(
    step: &StepDefinition,
    until: Option<&Expr>,
    d: &Dispatched<'_>,
    b: &Bindings,
    now: i64,
) -> Result<StartPlan, Halt> {
    let wake = match until {
        None => {
            let from = if d.dispatched_at > 0 { d.dispatched_at } else { now };
            due(from, step.sleep.unwrap_or_default())
        }
        Some(until) => until
            .eval_time_ms(b)
            .map_err(fail("SleepUntilError: sleep_until"))?
            .clamp(now, LATEST_DUE_MS),
    };
    Ok(StartPlan::Sleep { wake })
}

/// The output of a step that woke at `now` (Unix ms).
pub fn output(step: &StepDefinition, now: i64) -> String {
    texts::woke(step.sleep, now)
}
