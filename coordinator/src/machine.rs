//! The pure core of the run state machine: what a transition needs to know, computed from the
//! definition and the event alone, with no I/O. The Redis scripts apply it atomically and fenced by
//! attempt; this module decides *what* to ask for (which children to consider, when to retry).

use std::time::Duration;

use baton_shared::{
    definition::{StepDefinition, WorkflowDefinition, split_item},
    expr::Bindings,
    proto::StepTask,
    retry::RetryDecision,
    time::{deadline_ms, duration_ms},
};

use crate::store::DispatchPayload;

/// One step's entry in a spec: `step=parents` or, when its expressions read more steps than its
/// parents, `step=parents=reads`.
fn spec_entry(s: &StepDefinition) -> String {
    if s.reads == s.depends_on {
        format!("{}={}", s.id, s.depends_on.join(","))
    } else {
        format!("{}={}={}", s.id, s.depends_on.join(","), s.reads.join(","))
    }
}

/// `child=parent,parent;child=parent`: the children of `step` with all their parents (and reads), so
/// the script can tell which children became ready and hand over what they need. For a fan-out
/// element, the children of its step.
pub fn children_spec(def: &WorkflowDefinition, step: &str) -> String {
    def.children(split_item(step).0)
        .map(spec_entry)
        .collect::<Vec<_>>()
        .join(";")
}

/// Every step with its parents (and reads): `a=;b=a;c=a,b`.
pub fn all_steps_spec(def: &WorkflowDefinition) -> String {
    def.steps.iter().map(spec_entry).collect::<Vec<_>>().join(";")
}

/// What a dispatch of `step` hands over: the statuses and outputs of these steps (none for a fan-out
/// element: its input is its own).
pub fn reads_csv(def: &WorkflowDefinition, step: &str) -> String {
    match (def.step(step), split_item(step).1) {
        (Some(s), None) => s.reads.join(","),
        _ => String::new(),
    }
}

/// `step` and every step that depends on it, directly or not, in definition order.
pub fn descendants(def: &WorkflowDefinition, step: &str) -> Vec<String> {
    let mut found = vec![step.to_string()];
    let mut i = 0;
    while i < found.len() {
        let children: Vec<String> = def.children(&found[i]).map(|c| c.id.clone()).collect();
        for c in children {
            if !found.contains(&c) {
                found.push(c);
            }
        }
        i += 1;
    }
    def.steps
        .iter()
        .filter(|s| found.contains(&s.id))
        .map(|s| s.id.clone())
        .collect()
}

/// The leaf steps, comma-separated.
pub fn leaves_csv(def: &WorkflowDefinition) -> String {
    def.leaves().map(|s| s.id.as_str()).collect::<Vec<_>>().join(",")
}

/// Every step id in definition order, comma-separated.
pub fn step_ids_csv(def: &WorkflowDefinition) -> String {
    def.steps.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(",")
}

/// `workflow@version`, as the scripts check it.
pub fn pinned(def: &WorkflowDefinition) -> String {
    format!("{}@{}", def.name, def.version)
}

/// The latest due time (Unix ms) the engine stores in Redis: 9999-12-31T23:59:59.999Z, the last
/// instant RFC 3339 text can show. It is below 2^53, so Redis scores and Lua numbers (doubles) hold
/// it exactly; every deadline is clamped to it, so a huge duration from outside means "never"
/// rather than a value that rounds, wraps into the past or cannot be printed.
pub const LATEST_DUE_MS: i64 = 253_402_300_799_999;

/// `now + d` in Unix ms (`now` in Unix ms), saturating and clamped to [`LATEST_DUE_MS`]: a deadline
/// never wraps into the past and never leaves the range Redis and Lua hold exactly.
pub fn due(now: i64, d: Duration) -> i64 {
    deadline_ms(now, d).min(LATEST_DUE_MS)
}

/// A duration in whole milliseconds as the scripts take it (`0..=LATEST_DUE_MS`), saturating.
pub fn span_ms(d: Duration) -> u64 {
    duration_ms(d).clamp(0, LATEST_DUE_MS) as u64
}

/// When attempt `attempt + 1` should be dispatched after attempt `attempt` failed at `now` (Unix ms),
/// or 0 if the step has failed for good.
pub fn retry_at(step: &StepDefinition, attempt: u32, error_type: &str, retryable: bool, now: i64) -> i64 {
    match step.retry.decide(attempt, error_type, retryable) {
        RetryDecision::RetryAfter(d) => due(now, d.max(Duration::from_millis(1))),
        RetryDecision::GiveUp => 0,
    }
}

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
    let parse = |what: &str, text: &str| {
        serde_json::from_str::<serde_json::Value>(if text.is_empty() { "null" } else { text })
            .map_err(|e| format!("{what} is not JSON: {e}"))
    };
    let mut b = Bindings {
        input: parse("the run input", &p.input_json)?,
        ..Bindings::default()
    };
    for (id, output) in &p.parent_outputs {
        let status = p.parent_statuses.get(id).cloned().unwrap_or_default();
        b.steps
            .insert(id.clone(), (status, parse(&format!("the output of {id}"), output)?));
    }
    Ok(b)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> WorkflowDefinition {
        WorkflowDefinition::parse(
            "name: w\nversion: 2\nsteps:\n  - {id: a, handler: h}\n  - {id: b, handler: h, depends_on: [a]}\n  - {id: c, handler: h, depends_on: [a]}\n  - {id: d, handler: h2, depends_on: [b, c], retry: {max_attempts: 2, initial_interval: 1s, jitter: 0}}\n",
        )
        .unwrap()
    }

    #[test]
    fn plans_fan_out_and_fan_in() {
        let d = def();
        assert_eq!(children_spec(&d, "a"), "b=a;c=a");
        assert_eq!(children_spec(&d, "b"), "d=b,c");
        assert_eq!(children_spec(&d, "d"), "");
        assert_eq!(leaves_csv(&d), "d");
        assert_eq!(step_ids_csv(&d), "a,b,c,d");
        assert_eq!(pinned(&d), "w@2");
        assert_eq!(all_steps_spec(&d), "a=;b=a;c=a;d=b,c");
        assert_eq!(descendants(&d, "b"), ["b", "d"]);
        assert_eq!(descendants(&d, "a"), ["a", "b", "c", "d"]);
    }

    #[test]
    fn retries_per_policy() {
        let d = def();
        let step = d.step("d").unwrap();
        assert_eq!(retry_at(step, 1, "", true, 1_000), 2_000);
        assert_eq!(retry_at(step, 2, "", true, 1_000), 0, "max_attempts reached");
        assert_eq!(retry_at(step, 1, "", false, 1_000), 0, "non-retryable");
    }

    #[test]
    fn deadlines_saturate_and_stay_exact_in_redis() {
        assert_eq!(due(1_000, Duration::from_millis(5)), 1_005);
        assert_eq!(due(1_000, Duration::from_secs(u64::MAX)), LATEST_DUE_MS);
        assert_eq!(due(i64::MAX, Duration::from_secs(1)), LATEST_DUE_MS);
        assert_eq!(span_ms(Duration::MAX), LATEST_DUE_MS as u64);
        // Exact as a double (a Redis score, a Lua number).
        assert_eq!(LATEST_DUE_MS as f64 as i64, LATEST_DUE_MS);
        assert_eq!(baton_shared::time::rfc3339(LATEST_DUE_MS), "9999-12-31T23:59:59.999Z");
    }
}
