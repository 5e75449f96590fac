//! Every text a user reads about a step's fate (skip reasons, failure messages, what a waiting step
//! waits for), in one place. The end-to-end tests assert these texts: change them here only on
//! purpose. Failure messages start with an error type (`FanOutTooLarge: ...`), the word users and
//! retry policies (`non_retryable_errors`) match on.

use std::time::Duration;

use baton_shared::{
    definition::MAX_FAN_OUT,
    duration::format as format_duration,
    limits::{MAX_WORKFLOW_DEPTH, echo},
    time::rfc3339,
};

/// Skip reason of a step all of whose parents were skipped.
pub const ALL_PARENTS_SKIPPED: &str = "every step it depends on was skipped";

/// Skip reason of a step whose `when:` condition (its CEL source) is false.
pub fn condition_false(source: &str) -> String {
    format!("condition `{source}` is false")
}

/// A failure while evaluating `what` (e.g. `ConditionError: when`): `"<what>: <error>"`.
pub fn evaluation_failed(what: &str, error: &str) -> String {
    format!("{what}: {error}")
}

/// A fan-out over more than [`MAX_FAN_OUT`] elements.
pub fn fan_out_too_large(count: usize) -> String {
    format!("FanOutTooLarge: for_each: {count} elements is over the limit of {MAX_FAN_OUT}")
}

/// A handler's output over the payload limit (bytes).
pub fn output_too_large(bytes: usize, limit: usize) -> String {
    format!("output of {bytes} bytes is over the limit of {limit} bytes")
}

/// A fan-out's gathered element outputs over the payload limit (bytes).
pub fn items_too_large(total: usize, limit: usize) -> String {
    format!(
        "OutputTooLarge: the results of the {total} elements are over the limit of {limit} bytes (max_payload_bytes)"
    )
}

/// A handler's failure as the step's error: `"<error_type>: <message>"`, or the message alone.
pub fn handler_error(error_type: &str, message: &str) -> String {
    if error_type.is_empty() {
        message.to_string()
    } else {
        format!("{error_type}: {message}")
    }
}

/// What a waiting step shows while a rate limit holds it back (`period` as a duration, `at` Unix ms).
pub fn rate_limited(pool: &str, limit: u32, period: Duration, at: i64) -> String {
    format!(
        "rate limit {pool} ({limit} per {}): next start at {}",
        format_duration(period),
        rfc3339(at)
    )
}

/// What a step waiting for a concurrency slot shows.
pub fn slot_wait(pool: &str, limit: u32) -> String {
    format!("a slot of {pool} (limit {limit})")
}

/// What a sleeping step waits for (`wake` Unix ms).
pub fn sleeping_until(wake: i64) -> String {
    format!("until {}", rfc3339(wake))
}

/// What a `wait_for_event` step waits for.
pub fn waiting_for_event(event: &str, key: &str) -> String {
    format!("event {} key {}", echo(event), echo(key))
}

/// What a suspended handler waits for.
pub fn suspended_for_event(event: &str, key: &str) -> String {
    format!("event {} key {} (suspended handler)", echo(event), echo(key))
}

/// What a human step waits for.
pub fn human_task(title: &str) -> String {
    format!("human task {title:?}")
}

/// What a workflow step waits for.
pub fn child_run(child: &str, workflow: &str, version: u32) -> String {
    format!("child run {child} ({workflow} v{version})")
}

/// The output of a sleep step that woke (`sleep` given) or of a `sleep_until` step (woke at `now`).
pub fn woke(sleep: Option<Duration>, now: i64) -> String {
    match sleep {
        Some(d) => format!("{{\"slept_ms\":{}}}", d.as_millis()),
        None => format!("{{\"woke_at_ms\":{now}}}"),
    }
}

/// An attempt no worker started within its schedule-to-start timeout.
pub fn schedule_to_start_timeout(attempt: u32, limit: Duration) -> String {
    format!(
        "ScheduleToStartTimeout: no worker started attempt {attempt} within its schedule-to-start timeout of {}",
        format_duration(limit)
    )
}

/// An attempt that outlived its start-to-close timeout.
pub fn start_to_close_timeout(attempt: u32, limit: Duration) -> String {
    format!(
        "Timeout: attempt {attempt} did not finish within its start-to-close timeout of {}",
        format_duration(limit)
    )
}

/// An attempt that sent no heartbeat for its heartbeat timeout.
pub fn heartbeat_timeout(attempt: u32, limit: Duration) -> String {
    format!(
        "HeartbeatTimeout: attempt {attempt} sent no heartbeat for {}",
        format_duration(limit)
    )
}

/// A `wait_for_event` step whose event did not come within `limit`.
pub fn event_wait_timed_out(waiting_for: &str, limit: Option<Duration>) -> String {
    format!(
        "Timeout: no {waiting_for} arrived within {}",
        limit.map(format_duration).unwrap_or_default()
    )
}

/// A human task not completed within `limit`.
pub fn human_timed_out(waiting_for: &str, limit: Option<Duration>) -> String {
    format!(
        "Timeout: the {waiting_for} was not completed within {}",
        limit.map(format_duration).unwrap_or_default()
    )
}

/// Any other wait (a suspended handler) that timed out.
pub fn wait_timed_out(waiting_for: &str) -> String {
    format!("Timeout: no {waiting_for} arrived in time")
}

/// A child run that ended without success.
pub fn child_failed(child: &str, status: &str, error: &str) -> String {
    format!("ChildRunFailed: child run {child} {status}: {error}")
}

/// A workflow step whose child workflow is unknown (the registry's message).
pub fn child_unknown(message: &str) -> String {
    format!("ChildWorkflowError: {message}")
}

/// A workflow step whose input the child workflow's schema refuses.
pub fn child_input_refused(workflow: &str, error: &str) -> String {
    format!("ChildWorkflowError: input of {workflow}: {error}")
}

/// A run `depth` sub-workflow levels deep that may not start a run of `child`.
pub fn too_deep(run_id: &str, depth: u32, child: &str) -> String {
    format!(
        "WorkflowDepthExceeded: run {run_id} is {depth} sub-workflow levels below its root run, the most \
         allowed ({MAX_WORKFLOW_DEPTH}); it may not start a run of {} (does a workflow start itself?)",
        echo(child)
    )
}

/// An emitting step that could not go on.
pub fn emit_failed(error: &str) -> String {
    format!("EmitError: {error}")
}

/// The run timed out.
pub fn run_timed_out(limit: Option<Duration>) -> String {
    format!(
        "Timeout: the run did not finish within its timeout of {}",
        limit.map(format_duration).unwrap_or_default()
    )
}

/// A fan-out step whose element `index` failed for good after `attempt` attempts.
pub fn element_failed(index: &str, attempt: u32, message: &str) -> String {
    format!("element {index} failed after {attempt} attempt(s): {message}")
}

/// The run's error when `step` failed for good after `attempt` attempts.
pub fn run_failed(step: &str, attempt: u32, message: &str) -> String {
    format!("step {step} failed after {attempt} attempt(s): {message}")
}

/// A cancel's reason as the run shows it.
pub fn cancelled(reason: &str) -> String {
    if reason.is_empty() {
        "cancelled".to_string()
    } else {
        format!("cancelled: {reason}")
    }
}

/// The detail of a fan-out step that started.
pub fn fan_out_started(total: usize, parallel: u32) -> String {
    format!("{total} elements, {parallel} at a time")
}

/// What a fan-out step shows while its elements' outputs are gathered.
pub const GATHERING: &str = "gathering the outputs of its elements";

/// What an emitting step shows while it starts its runs.
pub const EMITTING: &str = "starting the runs it emits";
