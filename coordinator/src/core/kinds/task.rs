//! The task kind: a handler run on a worker, once per attempt (and a fan-out element, which runs
//! its step's handler over its own input). Only these steps take a worker's start, heartbeat and
//! report; the attempt state enforces that one worker holds an attempt at a time.

use baton_shared::{definition::StepDefinition, expr::Bindings};

use super::{Dispatched, Halt, StartPlan, fail};
use crate::core::gates;

/// A task step's plan: its input (the `input:` template rendered, else the run input) and its
/// gates.
///
/// # Errors
/// `InputError: input: ...`, `KeyError: rate_limit.key: ...`, `KeyError: concurrency.key: ...`.
pub fn plan(step: &StepDefinition, d: &Dispatched<'_>, b: &Bindings) -> Result<StartPlan, Halt> {
    let input = match &step.input {
        None => d.input_json.to_string(),
        Some(t) => t.render(b).map_err(fail("InputError: input"))?.to_string(),
    };
    let gates = gates::Gates::of(d.workflow, step, d.run_id, d.attempt, b)?;
    Ok(StartPlan::Publish { input, gates })
}

/// A fan-out element's plan: publish it with the input rendered when its fan-out started.
pub fn element(d: &Dispatched<'_>) -> StartPlan {
    StartPlan::PublishElement {
        input: d.item_input.unwrap_or("null").to_string(),
    }
}
