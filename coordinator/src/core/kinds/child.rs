//! The child-workflow kind: a step that starts a run of another workflow (its id derived from
//! the parent's run, step and attempt, so starting it twice finds the same run) and ends as the
//! child run ends.

use baton_shared::{
    definition::{ChildWorkflow, StepDefinition},
    expr::Bindings,
};

use super::{Halt, StartPlan, fail};
use crate::core::{classify::Ending, texts};

/// The child run to start: the workflow and the input (the `input:` template, else `{}`).
///
/// # Errors
/// `InputError: input: ...`.
pub fn plan(step: &StepDefinition, c: &ChildWorkflow, b: &Bindings) -> Result<StartPlan, Halt> {
    let input = match &step.input {
        None => serde_json::json!({}),
        Some(t) => t.render(b).map_err(fail("InputError: input"))?,
    };
    Ok(StartPlan::Child {
        workflow: c.name.clone(),
        version: c.version,
        input,
    })
}

/// How the step ends when child run `child` is `status` (a run status word) with `output` and
/// `error`: succeeded with its output, failed with `ChildRunFailed: ...`, or `None` while it has
/// not finished (a stale notice) or is gone.
pub fn ended(child: &str, status: &str, output: Option<&str>, error: &str) -> Option<Ending> {
    match status {
        "succeeded" => Some(Ending::Succeed(
            output.filter(|o| !o.is_empty()).unwrap_or("null").to_string(),
        )),
        "failed" | "cancelled" | "timed_out" => Some(Ending::Fail(texts::child_failed(child, status, error))),
        _ => None,
    }
}
