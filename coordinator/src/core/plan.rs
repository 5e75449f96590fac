//! Plans of the graph, as the store's scripts take them today (the run core's former `machine.rs`):
//! the children and reads of a step, leaves, descendants, deadlines and retry times. Pure: every
//! function computes from the definition and its arguments alone.

use std::time::Duration;

use baton_shared::{
    definition::{StepDefinition, WorkflowDefinition, split_item},
    expr::Bindings,
    retry::RetryDecision,
    time::{deadline_ms, duration_ms},
};

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
    while let Some(id) = found.get(i).cloned() {
        for c in def.children(&id) {
            if !found.contains(&c.id) {
                found.push(c.id.clone());
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
    u64::try_from(duration_ms(d).clamp(0, LATEST_DUE_MS)).unwrap_or(0)
}

/// When attempt `attempt + 1` should be dispatched after attempt `attempt` (counted from the
/// run's last retry or re-run) failed at `now` (Unix ms), or 0 if the step has failed for good.
/// The jitter comes from the policy's own random sample; [`retry_at_with`] takes it as an argument.
pub fn retry_at(step: &StepDefinition, attempt: u32, error_type: &str, retryable: bool, now: i64) -> i64 {
    match step.retry.decide(attempt, error_type, retryable) {
        RetryDecision::RetryAfter(d) => due(now, d.max(Duration::from_millis(1))),
        RetryDecision::GiveUp => 0,
    }
}

/// As [`retry_at`], with the jitter's random sample (`[0, 1)`) given: deterministic, for the state
/// machine and its tests. The same rules as [`baton_shared::retry::RetryPolicy::decide`]: a
/// non-retryable failure, an error type listed in `non_retryable_errors` or the last attempt gives
/// up (0).
pub fn retry_at_with(
    step: &StepDefinition,
    attempt: u32,
    error_type: &str,
    retryable: bool,
    now: i64,
    sample: f64,
) -> i64 {
    let policy = &step.retry;
    let listed = !error_type.is_empty() && policy.non_retryable_errors.iter().any(|e| e == error_type);
    if !retryable || listed || attempt >= policy.max_attempts {
        return 0;
    }
    due(now, policy.delay_with(attempt, sample).max(Duration::from_millis(1)))
}

/// What a dispatched step's expressions see: the run input (JSON text, empty for `null`) and the
/// steps it reads (`outputs` and `statuses` by step id).
///
/// # Errors
/// A stored value that is not JSON (which would be a bug), named.
pub fn bindings<'a>(
    input_json: &str,
    outputs: impl IntoIterator<Item = (&'a String, &'a String)>,
    status_of: impl Fn(&str) -> String,
) -> Result<Bindings, String> {
    let parse = |what: &str, text: &str| {
        serde_json::from_str::<serde_json::Value>(if text.is_empty() { "null" } else { text })
            .map_err(|e| format!("{what} is not JSON: {e}"))
    };
    let mut b = Bindings {
        input: parse("the run input", input_json)?,
        ..Bindings::default()
    };
    for (id, output) in outputs {
        b.steps.insert(
            id.clone(),
            (status_of(id), parse(&format!("the output of {id}"), output)?),
        );
    }
    Ok(b)
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
        assert_eq!(retry_at_with(step, 1, "", true, 1_000, 0.5), 2_000);
        assert_eq!(retry_at_with(step, 2, "", true, 1_000, 0.5), 0);
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
