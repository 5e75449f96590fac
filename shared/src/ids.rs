//! Run ids and idempotency keys.

use uuid::Uuid;

/// Namespace for run ids derived from an idempotency key (UUID v5).
const RUN_NAMESPACE: Uuid = Uuid::from_u128(0x6ba7_b811_9dad_11d1_80b4_00c0_4fd4_30c8);

/// A fresh run id: UUID v7, so ids sort by creation time.
pub fn new_run_id() -> String {
    Uuid::now_v7().to_string()
}

/// The run id for `(workflow, idempotency_key)`: the same pair always gives the same id, so a
/// resubmission finds the run it made before without any global lookup table.
pub fn run_id_for_key(workflow: &str, idempotency_key: &str) -> String {
    let name = format!("{workflow}\u{0}{idempotency_key}");
    Uuid::new_v5(&RUN_NAMESPACE, name.as_bytes()).to_string()
}

/// The run id of the child run that attempt `attempt` of workflow step `step` of `parent` starts:
/// derived, so a step started twice (a coordinator crash, a redelivery) finds the child it made.
pub fn child_run_id(parent: &str, step: &str, attempt: u32) -> String {
    let name = format!("child\u{0}{parent}\u{0}{step}\u{0}{attempt}");
    Uuid::new_v5(&RUN_NAMESPACE, name.as_bytes()).to_string()
}

/// The run id of the child run that step `step` of `run` emits for key `key`: derived, so emitting
/// again (a retried or re-run emitter) finds the runs made before instead of making duplicates.
pub fn emitted_run_id(run: &str, step: &str, key: &str) -> String {
    let name = format!("emit\u{0}{run}\u{0}{step}\u{0}{key}");
    Uuid::new_v5(&RUN_NAMESPACE, name.as_bytes()).to_string()
}

/// Whether `s` has the shape of a run id (a UUID), so it can be used in a Redis key.
pub fn is_run_id(s: &str) -> bool {
    Uuid::parse_str(s).is_ok()
}

/// Longest workflow name, in bytes.
pub const MAX_WORKFLOW_NAME_BYTES: usize = 128;

/// The rule of a workflow name, as errors say it (after the echoed name).
pub const WORKFLOW_NAME_RULE: &str = "must be 1 to 128 characters of letters, digits, '_', '-', '.'";

/// Whether `name` is a valid workflow name: 1 to [`MAX_WORKFLOW_NAME_BYTES`] of ASCII letters,
/// digits, `_`, `-`, `.`. No `:`, `{`, `}` or space, so that no name can alias an internal Redis key
/// such as `<prefix>:wf:<name>:registered`. The one rule for a definition's `name`, its
/// sub-workflow references (`workflow: {name}`) and emitter targets (`emit.workflow`), and every
/// name a caller sends to look a workflow up.
pub fn is_workflow_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_WORKFLOW_NAME_BYTES
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Checks a workflow name that a caller sends to look a workflow up (GetWorkflow, SubmitRun,
/// CreateSchedule, a sub-workflow reference) with [`is_workflow_name`].
///
/// # Errors
/// `"<field>: <echoed value> must be 1 to 128 characters of letters, digits, '_', '-', '.'"`.
pub fn check_workflow_name(field: &str, name: &str) -> Result<(), String> {
    if is_workflow_name(name) {
        Ok(())
    } else {
        Err(format!("{field}: {} {WORKFLOW_NAME_RULE}", crate::limits::echo(name)))
    }
}

/// The idempotency key of a step, stable across its attempts: `<run_id>/<step_id>`.
/// A handler that writes to an external system should key its writes with it.
pub fn step_idempotency_key(run_id: &str, step_id: &str) -> String {
    format!("{run_id}/{step_id}")
}

/// The idempotency key of one attempt: `<run_id>/<step_id>/<attempt>`.
pub fn attempt_idempotency_key(run_id: &str, step_id: &str, attempt: u32) -> String {
    format!("{run_id}/{step_id}/{attempt}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_ids_are_stable_and_distinct() {
        assert_eq!(run_id_for_key("w", "k"), run_id_for_key("w", "k"));
        assert_ne!(run_id_for_key("w", "k"), run_id_for_key("w2", "k"));
        assert_ne!(run_id_for_key("w", "k1"), run_id_for_key("w", "k"));
        assert!(is_run_id(&new_run_id()));
        assert!(!is_run_id("x}:y"));
    }

    #[test]
    fn workflow_names_cannot_alias_internal_keys() {
        assert!(check_workflow_name("workflow", "docs.v2-x_y").is_ok());
        let e = check_workflow_name("workflow", "x:registered").unwrap_err();
        assert!(e.starts_with("workflow: \"x:registered\" must be"), "{e}");
        assert!(check_workflow_name("workflow", "").is_err());
        assert!(check_workflow_name("workflow", &"a".repeat(129)).is_err());
    }
}
