//! What a handler sees of its step (the context) and how it fails (the error).

use std::{collections::HashMap, fmt, time::Duration};

use baton_shared::{
    ids,
    proto::{AttemptDisposition, EmitEventRequest, HeartbeatRequest, worker_service_client::WorkerServiceClient},
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Why a handler failed. A retryable error is tried again per the step's retry policy; a
/// non-retryable one (or one whose `error_type` the policy lists in `non_retryable_errors`) fails the
/// step at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// Human-readable message, shown in `baton run get`.
    pub message: String,
    /// Short classification (`NotFound`, `Timeout`...), matched against `non_retryable_errors`.
    pub error_type: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// More about the failure (a stack trace, the response that failed), shown with the attempt;
    /// the coordinator keeps at most 16 KiB. Empty for none.
    pub details: String,
    /// Set by [`StepError::suspend`]: not a failure, a request to wait for an event (boxed: it is
    /// rare, and keeps the error small in every `Result`).
    pub(crate) suspend: Option<Box<SuspendRequest>>,
}

/// What a suspended handler waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SuspendRequest {
    pub(crate) event: String,
    pub(crate) key: String,
    pub(crate) timeout: Option<Duration>,
}

impl StepError {
    /// An error that another attempt may not have.
    pub fn retryable(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            error_type: String::new(),
            retryable: true,
            details: String::new(),
            suspend: None,
        }
    }

    /// Not a failure: returned from a handler, it suspends the step until an event `event` with key
    /// `key` is published (`PublishEvent`, `baton event publish`), holding no worker meanwhile. The
    /// handler then runs again, as a new attempt that does not count against the retry policy, with
    /// [`StepContext::resume_data`] holding the event's payload. With a `timeout`, the step fails
    /// with a `Timeout` error when no event came in time. An event published before the handler
    /// suspended is buffered by the coordinator and resumes it at once.
    ///
    /// ```ignore
    /// if let Some(answer) = ctx.resume_data() {
    ///     return Ok(json!({"approved": answer["approved"]}));
    /// }
    /// let summary = compute_summary(&input).await?; // the work done before asking
    /// ctx.emit(json!({"summary": summary})).await?;
    /// Err(StepError::suspend("review", ctx.run_id(), None))
    /// ```
    pub fn suspend(event: impl Into<String>, key: impl Into<String>, timeout: Option<Duration>) -> Self {
        let (event, key) = (event.into(), key.into());
        Self {
            message: format!("suspended until event {event:?} with key {key:?}"),
            error_type: "Suspended".into(),
            retryable: false,
            details: String::new(),
            suspend: Some(Box::new(SuspendRequest { event, key, timeout })),
        }
    }

    /// Whether this is a suspension ([`StepError::suspend`]) rather than a failure.
    pub fn is_suspend(&self) -> bool {
        self.suspend.is_some()
    }

    /// An error that every attempt would have: the step fails at once.
    pub fn non_retryable(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            error_type: String::new(),
            retryable: false,
            details: String::new(),
            suspend: None,
        }
    }

    /// Sets the error type.
    #[must_use]
    pub fn with_type(mut self, error_type: impl Into<String>) -> Self {
        self.error_type = error_type.into();
        self
    }

    /// Sets the details shown with the failed attempt (a stack trace, a response body).
    #[must_use]
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.error_type.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.error_type, self.message)
        }
    }
}

impl std::error::Error for StepError {}

/// Everything a handler knows about the attempt it runs.
#[derive(Clone)]
pub struct StepContext {
    pub(crate) run_id: String,
    pub(crate) step_id: String,
    pub(crate) attempt: u32,
    pub(crate) workflow: String,
    pub(crate) workflow_version: u32,
    pub(crate) worker_id: String,
    pub(crate) input: Value,
    pub(crate) parent_outputs: HashMap<String, Value>,
    pub(crate) resume_data: Option<Value>,
    pub(crate) item_index: Option<u32>,
    pub(crate) timeout: Duration,
    pub(crate) heartbeat_timeout: Option<Duration>,
    pub(crate) client: WorkerServiceClient<crate::runtime::WorkerChannel>,
    pub(crate) cancel: CancellationToken,
    /// The coordinator's answer to StartStep, sent while the handler already runs: `None` while it
    /// is awaited, `Some(true)` for PROCEED, `Some(false)` for anything else (the work is abandoned).
    pub(crate) started: tokio::sync::watch::Receiver<Option<bool>>,
    /// The attempt's log buffer, sent by a background task ([`crate::logs`]).
    pub(crate) log: crate::logs::StepLog,
}

impl StepContext {
    /// The run.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The step (for an element of a fan-out step, the fan-out step's id; see
    /// [`StepContext::item_index`]).
    pub fn step_id(&self) -> &str {
        self.step_id.split_once('#').map_or(self.step_id.as_str(), |(id, _)| id)
    }

    /// For an element of a fan-out (`for_each`) step: its 0-based index in the list. The handler's
    /// input is then the element (or the step's `input:` template rendered for it).
    pub fn item_index(&self) -> Option<u32> {
        self.item_index
    }

    /// For a handler that suspended itself ([`StepError::suspend`]) and was resumed: the payload of
    /// the event that resumed it. `None` on the first run.
    pub fn resume_data(&self) -> Option<&Value> {
        self.resume_data.as_ref()
    }

    /// This attempt, 1-based.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The workflow and its version.
    pub fn workflow(&self) -> (&str, u32) {
        (&self.workflow, self.workflow_version)
    }

    /// This worker's id.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// A key stable across the attempts of this step (`<run>/<step>`, `<run>/<step>#<index>` for a
    /// fan-out element): key external writes with it so that a retried or redelivered step writes once.
    pub fn idempotency_key(&self) -> String {
        ids::step_idempotency_key(&self.run_id, &self.step_id)
    }

    /// A key unique to this attempt (`<run>/<step>/<attempt>`).
    pub fn attempt_key(&self) -> String {
        ids::attempt_idempotency_key(&self.run_id, &self.step_id, self.attempt)
    }

    /// The step's input as JSON: the run input, or the step's `input:` template rendered, or a
    /// fan-out element (the handler's typed input is read from it too).
    pub fn input(&self) -> &Value {
        &self.input
    }

    /// Outputs of the steps this step depends on, by step id.
    pub fn parent_outputs(&self) -> &HashMap<String, Value> {
        &self.parent_outputs
    }

    /// The output of step `step_id` (a step this one depends on), as `T`.
    ///
    /// # Errors
    /// A non-retryable [`StepError`] (`InvalidInput`) if there is no such parent or its output does
    /// not deserialize as `T`.
    pub fn output_of<T: DeserializeOwned>(&self, step_id: &str) -> Result<T, StepError> {
        let v = self.parent_outputs.get(step_id).ok_or_else(|| {
            StepError::non_retryable(format!("step {:?} has no parent {step_id:?}", self.step_id))
                .with_type("InvalidInput")
        })?;
        T::deserialize(v)
            .map_err(|e| StepError::non_retryable(format!("output of {step_id:?}: {e}")).with_type("InvalidInput"))
    }

    /// The start-to-close timeout of this attempt.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The step's heartbeat timeout, if it has one: call [`StepContext::heartbeat`] more often than that.
    pub fn heartbeat_timeout(&self) -> Option<Duration> {
        self.heartbeat_timeout
    }

    /// Whether the run was cancelled (or this attempt superseded): the handler should stop soon.
    /// The worker gives a cancelled handler a grace period, then abandons it.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the run is cancelled or this attempt is superseded; use it in a `select!`
    /// around long work.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// Logs a line at `level`: kept with this attempt by the coordinator (GetStepLogs, `baton run
    /// logs`, the console's step panel) and streamed live to watchers. Lines are buffered and sent
    /// every second or 100 lines, and before the result is reported; never blocks. A message over
    /// 4 KiB is cut (ending `… (cut)`); an attempt keeps at most 1,000 lines and 256 KiB, its oldest
    /// dropped first; a worker that cannot send holds at most 10,000 lines, dropping the oldest.
    ///
    /// ```ignore
    /// ctx.log(LogLevel::Info, format!("charging {} cents", input.amount));
    /// ctx.warn("the card's issuer is slow");
    /// ```
    pub fn log(&self, level: crate::LogLevel, message: impl AsRef<str>) {
        self.log.push(level, message.as_ref());
    }

    /// [`StepContext::log`] at level `debug`.
    pub fn debug(&self, message: impl AsRef<str>) {
        self.log(crate::LogLevel::Debug, message);
    }

    /// [`StepContext::log`] at level `info`.
    pub fn info(&self, message: impl AsRef<str>) {
        self.log(crate::LogLevel::Info, message);
    }

    /// [`StepContext::log`] at level `warn`.
    pub fn warn(&self, message: impl AsRef<str>) {
        self.log(crate::LogLevel::Warn, message);
    }

    /// [`StepContext::log`] at level `error`.
    pub fn error(&self, message: impl AsRef<str>) {
        self.log(crate::LogLevel::Error, message);
    }

    /// Tells the coordinator this attempt is alive.
    ///
    /// # Errors
    /// A non-retryable [`StepError`] of type `Cancelled` when the attempt is no longer current or the
    /// run is over (stop working); a retryable one when the coordinator cannot be reached.
    pub async fn heartbeat(&self) -> Result<(), StepError> {
        self.await_start().await?;
        let req = HeartbeatRequest {
            run_id: self.run_id.clone(),
            step_id: self.step_id.clone(),
            attempt: self.attempt,
            worker_id: self.worker_id.clone(),
        };
        let d = self.client.clone().heartbeat(req).await;
        let d = d.map_err(|s| StepError::retryable(format!("heartbeat: {}", s.message())))?;
        self.proceed_or_cancel(d.into_inner().disposition)
    }

    /// Emits a custom progress event (any JSON), streamed by `WatchRun` and `baton run watch` with
    /// the step events.
    ///
    /// # Errors
    /// Non-retryable: `InvalidEvent` when the event does not serialize, or the coordinator refuses it
    /// (over its size limit); `Cancelled` when the attempt is no longer current. Retryable when the
    /// coordinator cannot be reached.
    pub async fn emit(&self, event: impl Serialize) -> Result<(), StepError> {
        let payload_json = serde_json::to_string(&event)
            .map_err(|e| StepError::non_retryable(format!("event: {e}")).with_type("InvalidEvent"))?;
        self.await_start().await?;
        let req = EmitEventRequest {
            run_id: self.run_id.clone(),
            step_id: self.step_id.clone(),
            attempt: self.attempt,
            payload_json,
            worker_id: self.worker_id.clone(),
        };
        match self.client.clone().emit_event(req).await {
            Ok(r) => self.proceed_or_cancel(r.into_inner().disposition),
            Err(s) if s.code() == tonic::Code::InvalidArgument => {
                Err(StepError::non_retryable(s.message()).with_type("InvalidEvent"))
            }
            Err(s) => Err(StepError::retryable(format!("emit: {}", s.message()))),
        }
    }

    /// Waits for the coordinator's answer to StartStep (the handler starts before it comes): a
    /// heartbeat or an event of an attempt the coordinator has not marked started would be
    /// answered stale.
    ///
    /// # Errors
    /// `Cancelled` (non-retryable) when the start was refused (stale, cancelled, duplicate) or
    /// never answered.
    async fn await_start(&self) -> Result<(), StepError> {
        let mut started = self.started.clone();
        let proceed = matches!(started.wait_for(Option::is_some).await.as_deref(), Ok(Some(true)));
        if proceed {
            return Ok(());
        }
        self.cancel.cancel();
        Err(StepError::non_retryable(
            "the attempt is not to run (its start was refused: stale, cancelled or a duplicate)",
        )
        .with_type("Cancelled"))
    }

    fn proceed_or_cancel(&self, disposition: i32) -> Result<(), StepError> {
        match AttemptDisposition::try_from(disposition) {
            Ok(AttemptDisposition::Proceed) => Ok(()),
            _ => {
                self.cancel.cancel();
                Err(
                    StepError::non_retryable("the attempt is no longer current (run finished, cancelled or retried)")
                        .with_type("Cancelled"),
                )
            }
        }
    }
}
