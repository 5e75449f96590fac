//! Outcome classification: what a worker's report, an attempt's timer or the coordinator's own
//! finding means for the attempt (succeeded, failed and retried at a time, failed for good,
//! suspended, timed out), with the text users read. The store records the result; it does not
//! decide it.

use std::time::Duration;

use baton_shared::{
    definition::{StepDefinition, split_item},
    proto::StepFailure,
};

use super::{
    plan::{due, retry_at, retry_at_with, span_ms},
    texts,
};

/// The outcome a worker reports for one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The handler's output, JSON text.
    Output(String),
    /// The handler's error.
    Failure(StepFailure),
    /// The handler suspended itself until an event (name, key) arrives, for at most `timeout`.
    Suspend {
        /// The event name.
        event: String,
        /// The correlation key.
        key: String,
        /// How long to wait; `None` for ever.
        timeout: Option<Duration>,
    },
}

/// How an attempt's outcome is recorded: the typed form of the store's outcome words (serialized
/// as [`OutcomeWord::word`] gives them, for `complete_step.lua`'s `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeWord {
    /// Succeeded with an output.
    Ok,
    /// Skipped, with a reason.
    Skip,
    /// Failed (retried when a retry time is given).
    Error,
    /// Timed out (start-to-close, or a wait's timeout).
    Timeout,
    /// A fan-out step whose elements all succeeded, with their outputs gathered.
    Items,
    /// Sent no heartbeat in time (the store checks the last beat first).
    Heartbeat,
    /// An emitting step's handler succeeded: the step goes on starting runs.
    Emit,
    /// No worker started the attempt in time (counts only while still dispatched).
    Schedule,
}

impl OutcomeWord {
    /// The word the store's scripts take.
    pub fn word(self) -> &'static str {
        match self {
            OutcomeWord::Ok => "ok",
            OutcomeWord::Skip => "skip",
            OutcomeWord::Error => "error",
            OutcomeWord::Timeout => "timeout",
            OutcomeWord::Items => "items",
            OutcomeWord::Heartbeat => "heartbeat",
            OutcomeWord::Emit => "emit",
            OutcomeWord::Schedule => "schedule",
        }
    }
}

/// How the coordinator ends a step it completes itself (never retried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Succeeded with this output (JSON text).
    Succeed(String),
    /// Skipped for this reason.
    Skip(String),
    /// Failed for good with this message.
    Fail(String),
    /// Timed out (failed for good) with this message.
    TimedOut(String),
}

impl Ending {
    /// The outcome word and body the store records.
    pub fn parts(&self) -> (OutcomeWord, &str) {
        match self {
            Ending::Succeed(o) => (OutcomeWord::Ok, o),
            Ending::Skip(r) => (OutcomeWord::Skip, r),
            Ending::Fail(m) => (OutcomeWord::Error, m),
            Ending::TimedOut(m) => (OutcomeWord::Timeout, m),
        }
    }
}

/// Where the jitter of a retry delay comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// The retry policy's own random sample (production).
    Random,
    /// This sample in `[0, 1)` (the state machine and its tests: deterministic).
    Sample(f64),
}

/// The retry time of attempt `attempt` (counted in the policy from its base) that failed at `now`
/// with `error_type`: Unix ms, or 0 to fail for good.
pub fn retry_time(step: &StepDefinition, attempt: u32, error_type: &str, retryable: bool, now: i64, j: Jitter) -> i64 {
    match j {
        Jitter::Random => retry_at(step, attempt, error_type, retryable, now),
        Jitter::Sample(s) => retry_at_with(step, attempt, error_type, retryable, now, s),
    }
}

/// What a worker's report means.
#[derive(Debug, Clone, PartialEq)]
pub enum Classified {
    /// Record this outcome; a failure is retried at `retry_at` (Unix ms; 0: failed for good).
    Complete {
        /// How it is recorded.
        word: OutcomeWord,
        /// The output, or the error message.
        body: String,
        /// When the next attempt is dispatched, or 0.
        retry_at: i64,
    },
    /// The handler suspended itself: the step waits for the event (with the text users read).
    Suspend {
        /// The event name.
        event: String,
        /// Its correlation key.
        key: String,
        /// What the step shows it waits for.
        waiting_for: String,
        /// When the wait times out (Unix ms), or 0.
        timeout_at: i64,
    },
}

/// Classifies a report of attempt `attempt` (counted in the retry policy from its base: the
/// attempt number minus the attempts before the run's last retry or re-run) of `step_id` of
/// `step`, received at `now` (Unix ms). An output over `max_payload_bytes` fails for good
/// (`OutputTooLarge`: retrying gives the same output); a failure is retried per the policy.
///
/// # Errors
/// The `InvalidArgument` text for a report that is not one: `output_json: not valid JSON`,
/// `suspend.event: required`.
pub fn report(
    step: &StepDefinition,
    step_id: &str,
    outcome: Outcome,
    attempt: u32,
    max_payload_bytes: usize,
    now: i64,
    jitter: Jitter,
) -> Result<Classified, String> {
    Ok(match outcome {
        Outcome::Output(json) => {
            if json.len() > max_payload_bytes {
                Classified::Complete {
                    word: OutcomeWord::Error,
                    body: texts::output_too_large(json.len(), max_payload_bytes),
                    retry_at: 0,
                }
            } else if serde_json::from_str::<serde::de::IgnoredAny>(&json).is_err() {
                return Err("output_json: not valid JSON".into());
            } else if step.emit.is_some() && split_item(step_id).1.is_none() {
                Classified::Complete {
                    word: OutcomeWord::Emit,
                    body: json,
                    retry_at: 0,
                }
            } else {
                Classified::Complete {
                    word: OutcomeWord::Ok,
                    body: json,
                    retry_at: 0,
                }
            }
        }
        Outcome::Suspend { event, key, timeout } => {
            if event.trim().is_empty() {
                return Err("suspend.event: required".into());
            }
            Classified::Suspend {
                waiting_for: texts::suspended_for_event(&event, &key),
                timeout_at: timeout.map(|t| due(now, t)).unwrap_or(0),
                event,
                key,
            }
        }
        Outcome::Failure(f) => Classified::Complete {
            word: OutcomeWord::Error,
            retry_at: retry_time(step, attempt, &f.error_type, f.retryable, now, jitter),
            body: texts::handler_error(&f.error_type, &f.message),
        },
    })
}

/// A timer of a running or dispatched attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptTimer {
    /// No worker started it within its schedule-to-start timeout.
    ScheduleToStart,
    /// It outlived its start-to-close timeout.
    Timeout,
    /// It stopped beating.
    Heartbeat,
}

/// What an attempt timer that fired means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOut {
    /// How it is recorded.
    pub word: OutcomeWord,
    /// The message users read.
    pub message: String,
    /// The error type the retry policy matches.
    pub error_type: &'static str,
    /// For a heartbeat timer: the heartbeat timeout (ms), within which a beat keeps it alive.
    pub heartbeat_ms: u64,
}

/// Classifies timer `t` of attempt `attempt` of `step`; `schedule_to_start` is the limit in force
/// (the step's own or the coordinator's default).
pub fn attempt_timer(t: AttemptTimer, step: &StepDefinition, attempt: u32, schedule_to_start: Duration) -> TimedOut {
    match t {
        AttemptTimer::ScheduleToStart => TimedOut {
            word: OutcomeWord::Schedule,
            message: texts::schedule_to_start_timeout(attempt, schedule_to_start),
            error_type: "ScheduleToStartTimeout",
            heartbeat_ms: 0,
        },
        AttemptTimer::Timeout => TimedOut {
            word: OutcomeWord::Timeout,
            message: texts::start_to_close_timeout(attempt, step.timeout),
            error_type: "Timeout",
            heartbeat_ms: 0,
        },
        AttemptTimer::Heartbeat => {
            let hb = step.heartbeat_timeout.unwrap_or(Duration::from_secs(1));
            TimedOut {
                word: OutcomeWord::Heartbeat,
                message: texts::heartbeat_timeout(attempt, hb),
                error_type: "HeartbeatTimeout",
                heartbeat_ms: span_ms(hb),
            }
        }
    }
}
