//! The adapter between the run core ([`crate::core`]) and the store's dispatch payloads: builds a
//! worker's task and a dispatch's bindings from a [`DispatchPayload`]. The plans and deadlines
//! themselves live in [`crate::core::plan`] (re-exported here for the store and the engine).

use baton_shared::{
    definition::{StepDefinition, WorkflowDefinition, split_item},
    expr::Bindings,
    proto::StepTask,
};

pub use crate::core::plan::{
    LATEST_DUE_MS, all_steps_spec, children_spec, descendants, due, leaves_csv, pinned, reads_csv, retry_at, span_ms,
    step_ids_csv,
};
use crate::store::DispatchPayload;

/// The payloads of a new run's root steps (attempt 1, dispatched at `now`), as `create_run.lua`
/// committed them: what to launch once the run exists.
pub fn root_payloads(def: &WorkflowDefinition, input_json: &str, now: i64) -> Vec<DispatchPayload> {
    def.roots()
        .map(|s| DispatchPayload {
            dispatched_at: now,
            attempt_base: 0,
            step_id: s.id.clone(),
            attempt: 1,
            input_json: input_json.to_string(),
            item_input: None,
            resume_data: String::new(),
            parent_outputs: Default::default(),
            parent_statuses: Default::default(),
            queued: false,
        })
        .collect()
}

/// What a dispatched step's expressions see: the run input and the steps it reads.
///
/// # Errors
/// A stored value that is not JSON (which would be a bug), named.
pub fn bindings(p: &DispatchPayload) -> Result<Bindings, String> {
    crate::core::plan::bindings(&p.input_json, &p.parent_outputs, |id| {
        p.parent_statuses.get(id).cloned().unwrap_or_default()
    })
}

/// The message to publish for a dispatched attempt, with the step's input (JSON text).
pub fn task(
    def: &WorkflowDefinition,
    step: &StepDefinition,
    run_id: &str,
    payload: DispatchPayload,
    input_json: String,
    now: i64,
) -> StepTask {
    let item_index = split_item(&payload.step_id).1;
    StepTask {
        run_id: run_id.to_string(),
        step_id: payload.step_id,
        attempt: payload.attempt,
        handler: step.handler.clone(),
        workflow: def.name.clone(),
        workflow_version: def.version,
        input_json,
        item_index,
        resume_data_json: payload.resume_data,
        parent_outputs_json: payload
            .parent_outputs
            .into_iter()
            .filter(|(id, _)| step.depends_on.contains(id))
            .collect(),
        timeout_ms: span_ms(step.timeout),
        heartbeat_timeout_ms: step.heartbeat_timeout.map(span_ms).unwrap_or(0),
        dispatched_at_ms: now,
        attempt_base: payload.attempt_base,
    }
}
