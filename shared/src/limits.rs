//! The bounds on everything that enters Baton from outside (a caller, a definition, a queue), in one
//! place, so the code that checks them and docs/limits.md that documents them say the same numbers.
//!
//! Every value here is checked where it enters, with an `INVALID_ARGUMENT` error that names the field
//! (`steps[2].timeout: ...`) and echoes at most [`MAX_ECHO_BYTES`] of what the caller sent.

use std::time::Duration;

/// One day.
const DAY: Duration = Duration::from_secs(86_400);

/// Longest step timeout, schedule-to-start timeout, run timeout, heartbeat timeout, `sleep`, `wait_for_event` timeout, human
/// task timeout and suspension timeout: 10 years (3,650 days).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3_650 * 86_400);

/// Longest retry interval (`initial_interval`, `max_interval`): 1 day.
pub const MAX_RETRY_INTERVAL: Duration = DAY;

/// Largest retry `backoff_coefficient`.
pub const MAX_BACKOFF_COEFFICIENT: f64 = 100.0;

/// Longest schedule `catchup_window`: 30 days.
pub const MAX_CATCHUP_WINDOW: Duration = Duration::from_secs(30 * 86_400);

/// Longest rate-limit `period`: 1 day.
pub const MAX_RATE_PERIOD: Duration = DAY;

/// Most steps one workflow definition may have. A run's scripts touch every step (creating the
/// run, finishing it, RetryRun), so this keeps each of them short: measured on a loaded 2-core
/// machine (`tests/tests/run_bounds.rs`), the worst case, `create_run` of a run whose 1,000 steps
/// are all roots (1,000 dispatches in one call), took 15 ms of Redis time, and no call of a
/// 1,000-step chain (whose last `complete_step` finishes the run over every step) took over 10 ms.
/// A workflow that needs more fans out (`for_each`) or emits runs of a processor workflow.
pub const MAX_STEPS: usize = 1_000;

/// Most elements one fan-out (`for_each`) step may have: its step fails with `FanOutTooLarge`
/// past it. Its elements are stored and started a batch at a time, so the count bounds memory
/// and the time a fan-out takes, not any single Redis call; more belongs in an emitter workflow.
pub const MAX_FAN_OUT: usize = 10_000;

/// Most attempts a retry policy may give a step (`retry.max_attempts`).
pub const MAX_ATTEMPTS: u32 = 1_000;

/// Shortest retry interval (`retry.initial_interval`, `retry.max_interval`): 10 ms.
pub const MIN_RETRY_INTERVAL: Duration = Duration::from_millis(10);

/// Attempts of one step kept in full in its history (shown by `GetRun`): the last 20. Earlier
/// attempts are only counted (`StepRun.earlier_attempts`).
pub const KEPT_ATTEMPTS: usize = 20;

/// Largest `GetRun` answer without `step_id`, in bytes: 3 MiB, under gRPC's default 4 MiB answer
/// limit, so every client can read a run however large its steps' outputs (1,000 steps of up to
/// `max_payload_bytes` each). The run's own input and output count first, then each step's
/// output in step order is included when it fits what is left; one that does not is left out and
/// its size said (`StepRun.output_omitted_bytes`). `GetRun` with `step_id` answers one step with
/// its whole output, whatever its size.
pub const MAX_GET_RUN_BYTES: usize = 3 * 1024 * 1024;

/// Longest error message kept per attempt in a step's history, in bytes: longer messages are cut
/// at a character boundary and end with `… (cut)`. The step's own `error` (its last attempt's)
/// is kept whole.
pub const MAX_ATTEMPT_ERROR_BYTES: usize = 1_024;

/// Longest CEL expression source (`when`, `for_each`, templates, filters), in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 4_096;

/// Most nodes in one compiled CEL expression.
pub const MAX_EXPRESSION_NODES: usize = 1_000;

/// Deepest nesting of one CEL expression (operators, calls, parentheses, comprehensions).
pub const MAX_EXPRESSION_DEPTH: usize = 32;

/// Most cost units one evaluation of a CEL expression may spend. A unit is one comprehension
/// step (an iteration of `map`, `filter`, `all`, `exists`, `exists_one`), or one list element, map
/// entry or 64 bytes of text in a value a comprehension step, a `+` or a `matches()` produces or reads.
/// An evaluation over budget stops at once and fails with
/// `<source>: evaluation exceeded its cost budget of 1000000 units ...`.
pub const MAX_EXPRESSION_COST: u64 = 1_000_000;

/// Longest regular expression `matches()` compiles, in bytes.
pub const MAX_REGEX_BYTES: usize = 1_024;

/// Largest compiled form of one regular expression (the `regex` crate's `size_limit`), in bytes.
pub const MAX_REGEX_PROGRAM_BYTES: usize = 256 * 1024;

/// Most sub-workflow levels below a root run: a run at this depth may not start a child.
pub const MAX_WORKFLOW_DEPTH: u32 = 16;

/// Most handlers one worker may register with `RegisterWorker`.
pub const MAX_WORKER_HANDLERS: usize = 256;

/// Longest worker id, host, version, namespace or handler name in a `RegisterWorker` call, in bytes.
pub const MAX_WORKER_FIELD_BYTES: usize = 200;

/// Shortest and longest heartbeat interval a worker may announce (`heartbeat_interval_ms`):
/// 100 ms and 5 minutes.
pub const MIN_WORKER_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

/// See [`MIN_WORKER_HEARTBEAT_INTERVAL`].
pub const MAX_WORKER_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(300);

/// Shortest and longest deadline a worker puts on one coordinator call (`BATON_CALL_TIMEOUT`):
/// 100 ms and 5 minutes.
pub const MIN_WORKER_CALL_TIMEOUT: Duration = Duration::from_millis(100);

/// See [`MIN_WORKER_CALL_TIMEOUT`].
pub const MAX_WORKER_CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Most running steps one worker may report per handler (`in_flight`): more than any prefetch.
pub const MAX_WORKER_IN_FLIGHT: u32 = 65_535;

/// Most log lines one `AppendLogs` call carries; more is `INVALID_ARGUMENT` naming `lines`.
pub const MAX_LOG_LINES_PER_CALL: usize = 500;

/// Longest log message kept, in bytes; a longer one is cut, ending `… (cut)`.
pub const MAX_LOG_MESSAGE_BYTES: usize = 4 * 1024;

/// Most log lines an attempt keeps; past it the oldest are dropped (and counted).
pub const MAX_LOG_LINES_PER_ATTEMPT: usize = 1_000;

/// Most bytes of log messages an attempt keeps; past it the oldest lines are dropped.
pub const MAX_LOG_BYTES_PER_ATTEMPT: usize = 256 * 1024;

/// Most bytes of log lines a whole run keeps (all its attempts, fan-out elements included); a line
/// past it is not kept, and counted as dropped.
pub const MAX_LOG_BYTES_PER_RUN: usize = 64 * 1024 * 1024;

/// Most log lines one `GetStepLogs` answer holds (its `limit` when 0 or larger).
pub const MAX_LOG_LINES_PER_READ: usize = 10_000;

/// Longest `StepFailure.details` (a traceback) kept with an attempt, in bytes; longer is cut.
pub const MAX_ERROR_DETAILS_BYTES: usize = 16 * 1024;

/// Most bytes of a caller's value echoed back in an error message.
pub const MAX_ECHO_BYTES: usize = 200;

/// Longest error message a caller gets back, in bytes: a definition's problems are listed until
/// the next would pass it (then `; and N more`), and the coordinator cuts any status message there.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 2_048;

/// Most problems one error lists (a definition's, an expression's); the others are only counted.
pub const MAX_REPORTED_PROBLEMS: usize = 20;

/// Longest text of one problem in an error (its path, its message), in bytes; longer is cut.
pub const MAX_PROBLEM_BYTES: usize = 1_024;

/// `text` cut to at most `max` bytes at a character boundary, with `…` when cut.
pub fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &text[..end]))
}

/// The first `max` of `problems` joined with `; `, and how many more there are
/// (`a; b; and 7 more`).
pub fn join_problems(problems: &[String], max: usize) -> String {
    let mut out = problems
        .iter()
        .take(max)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > max {
        out.push_str(&format!("; and {} more", problems.len() - max));
    }
    out
}

/// `value` as it may be echoed in an error: quoted (Debug form), and cut to at most
/// [`MAX_ECHO_BYTES`] bytes of the original at a character boundary, with the original length
/// said when cut (`"aaaa…" (1048576 bytes)`).
pub fn echo(value: &str) -> String {
    if value.len() <= MAX_ECHO_BYTES {
        return format!("{value:?}");
    }
    let mut end = MAX_ECHO_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &value[..end], value.len())
}

/// Checks a duration from outside against its maximum; the error names neither the field nor the
/// value (the caller prefixes the field path): `must be at most 3650days (got 584942417355years ...)`.
///
/// # Errors
/// A message when `d > max`.
pub fn check_duration(d: Duration, max: Duration) -> Result<Duration, String> {
    if d > max {
        Err(format!(
            "must be at most {} (got {})",
            format_bound(max),
            echo(&crate::duration::format(d))
        ))
    } else {
        Ok(d)
    }
}

/// A bound as people read it: whole days as `3650days` / `1day` (humantime would say
/// `9years 11months 27days 21h 50m 24s`), anything else as [`crate::duration::format`] does.
pub fn format_bound(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() == 0 && secs > 0 && secs.is_multiple_of(DAY.as_secs()) {
        let days = secs / DAY.as_secs();
        return if days == 1 {
            "1day".to_owned()
        } else {
            format!("{days}days")
        };
    }
    crate::duration::format(d)
}

/// Largest request head (request line and headers) the HTTP API takes, in bytes; a larger one is
/// answered 431 with the JSON error body naming `headers`.
pub const MAX_HTTP_HEADER_BYTES: usize = 64 * 1024;

/// Most headers in one HTTP request; more is answered 431 naming `headers`.
pub const MAX_HTTP_HEADERS: usize = 100;

/// Most versions one workflow may keep registered. A run pins the version it started with and a
/// version is never deleted, so this bounds what the registry holds per workflow; past it,
/// `RegisterWorkflow` answers `INVALID_ARGUMENT` naming `version` (register under a new name).
pub const MAX_WORKFLOW_VERSIONS: u32 = 1_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_echoed_whole() {
        assert_eq!(echo("abc"), "\"abc\"");
    }

    #[test]
    fn long_values_are_cut_at_a_char_boundary() {
        let long = "é".repeat(1_000);
        let e = echo(&long);
        assert!(e.len() < MAX_ECHO_BYTES + 40, "{e}");
        assert!(e.ends_with("(2000 bytes)"), "{e}");
    }

    #[test]
    fn problems_are_cut_and_counted() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("aéb", 2), "a…");
        let many: Vec<String> = (0..8).map(|i| i.to_string()).collect();
        assert_eq!(join_problems(&many, 3), "0; 1; 2; and 5 more");
        assert_eq!(join_problems(&many[..2], 3), "0; 1");
    }

    #[test]
    fn durations_over_their_maximum_are_refused() {
        assert!(check_duration(DAY, MAX_RETRY_INTERVAL).is_ok());
        let e = check_duration(Duration::from_secs(u64::MAX), MAX_RETRY_INTERVAL).unwrap_err();
        assert!(e.starts_with("must be at most 1day (got \"584542046090years"), "{e}");
        let e = check_duration(MAX_TIMEOUT + DAY, MAX_TIMEOUT).unwrap_err();
        assert!(e.starts_with("must be at most 3650days (got "), "{e}");
        assert_eq!(format_bound(Duration::from_secs(90)), "1m 30s");
    }
}
