//! Baton's worker SDK: register async handlers by name, then run them on the step tasks the
//! coordinator publishes to RabbitMQ.
//!
//! ```no_run
//! use baton_worker::{StepContext, StepError, Worker, WorkerConfig};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Input { name: String }
//! #[derive(Serialize)]
//! struct Greeting { text: String }
//!
//! # async fn run() -> Result<(), baton_worker::WorkerError> {
//! Worker::new(WorkerConfig::from_env())
//!     .handler("greet", |ctx: StepContext, input: Input| async move {
//!         if ctx.attempt() < 2 {
//!             return Err(StepError::retryable("first attempts fail"));
//!         }
//!         Ok(Greeting { text: format!("hello {}", input.name) })
//!     })
//!     .run(baton_worker::shutdown_signal())
//!     .await
//! # }
//! ```
//!
//! # Guarantees
//! A step runs at least once: the task is acknowledged to RabbitMQ only after the coordinator has
//! recorded the result, so a worker that dies mid-step has its task delivered again. Handlers with
//! external effects should key them with [`StepContext::idempotency_key`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod context;
mod failover;
mod logs;
mod metrics;
mod registration;
mod runtime;
mod traces;

pub use baton_shared::process::shutdown_signal;

/// Logs to stderr (see [`baton_shared::process::init_tracing`]) and, when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, exports OpenTelemetry traces as service `baton-worker`
/// (or `OTEL_SERVICE_NAME`). Call it once, inside the Tokio runtime.
pub fn init_tracing() {
    baton_shared::process::init_tracing_as("baton-worker");
}
pub use context::{StepContext, StepError};
pub use logs::LogLevel;
pub use runtime::{
    ADDRESS_VARIABLES, DEFAULT_CALL_TIMEOUT, DEFAULT_EAGER_REPORT_WINDOW, DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_SHUTDOWN_GRACE, MAX_EAGER_REPORT_WINDOW, Worker, WorkerArgs, WorkerConfig,
    WorkerError, check_coordinator_address, coordinator_uri,
};
