//! The worker runtime: one RabbitMQ consumer per handler (prefetch-bounded), each delivery run as
//! start → handler → report → ack, with the coordinator calls retried through its restarts.
//!
//! A worker takes tasks only while its coordinator answers: a probe of the coordinator's gRPC
//! health (`baton.v1.WorkerService`) gates every consumer, a task whose start cannot reach the
//! coordinator is handed back to the queue (nack with requeue) and pauses the consumers until the
//! probe answers again. On shutdown the worker stops consuming, hands back the tasks it has not
//! started, gives the running handlers [`WorkerConfig::shutdown_grace`] to finish and report, and
//! then closes its channels (which returns every unacknowledged task to the queue).

use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use baton_shared::credentials::{self, Bearer, ClientTls, Secret};
use baton_shared::{
    amqp::{QueueType, Topology},
    proto::{
        AttemptDisposition, ReportResultRequest, StartStepRequest, StartStepResponse, StepFailure, StepTask, Suspend,
        report_result_request::Outcome, worker_service_client::WorkerServiceClient,
    },
    telemetry,
};
use futures::StreamExt;
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
        BasicRejectOptions, QueueDeclareOptions,
    },
    types::FieldTable,
};
use prost::Message;
use serde::{Serialize, de::DeserializeOwned};
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use tracing::Instrument as _;

use crate::context::{StepContext, StepError};
use crate::failover::Coordinators;

/// The channel worker calls go through: the coordinators with failover, and the bearer token.
pub(crate) type WorkerChannel = tonic::service::interceptor::InterceptedService<Coordinators, Bearer>;

/// Where a worker connects and how much it takes on.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The coordinator's gRPC address (`http://host:port` or `https://host:port`), or several
    /// separated by commas (at most 16): calls go to one and fail over to the next when it
    /// cannot be reached, answers `UNAVAILABLE`, misses the call deadline
    /// ([`WorkerConfig::call_timeout`]) or its health (watched all the time) turns NOT_SERVING.
    pub coordinator: String,
    /// RabbitMQ URL.
    pub amqp_url: String,
    /// The namespace the coordinator uses (queue prefix).
    pub namespace: String,
    /// Steps run at once per handler (the RabbitMQ prefetch).
    pub concurrency: u16,
    /// Must match the coordinator's queue settings.
    pub queue_type: QueueType,
    /// Must match the coordinator's queue settings.
    pub delivery_limit: u32,
    /// This worker's id, shown in runs (default: `<host>-<pid>`).
    pub worker_id: String,
    /// How long coordinator calls are retried (through a coordinator restart) before the task is
    /// handed back to the queue.
    pub report_patience: Duration,
    /// Largest handler output reported, in bytes of JSON text (`BATON_MAX_PAYLOAD_BYTES`, default
    /// 4 MiB: set it to the coordinator's `max_payload_bytes`). A larger output fails the step as a
    /// non-retryable `OutputTooLarge` instead of being sent.
    pub max_output_bytes: usize,
    /// How long a shutdown waits for running handlers to finish and report (`BATON_SHUTDOWN_GRACE`,
    /// default 30 s); then they are aborted and their tasks go back to the queue.
    pub shutdown_grace: Duration,
    /// Address of the Prometheus `/metrics` endpoint (`BATON_METRICS_ADDR`, e.g. `0.0.0.0:9465`);
    /// `None` (the default) serves no metrics.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Deadline of one coordinator call (`BATON_CALL_TIMEOUT`, default 5 s, from 100 ms to 5
    /// minutes): a call that has no answer by then fails with `CANCELLED` and is tried again on the
    /// next coordinator. A result whose report timed out may have been recorded: reporting it again
    /// is safe (the attempt is fenced, a duplicate report changes nothing).
    pub call_timeout: Duration,
    /// How often the worker calls `RegisterWorker` (`BATON_HEARTBEAT_INTERVAL`, default 5 s, from
    /// 100 ms to 5 minutes): the coordinator lists it as lost after 3 intervals without a call.
    pub heartbeat_interval: Duration,
    /// Bearer token sent with every coordinator call (`BATON_TOKEN`; a `worker` role token when
    /// the coordinator has auth on).
    pub token: Option<Secret>,
    /// TLS files for an `https://` coordinator (`BATON_CA_FILE`, `BATON_CLIENT_CERT`,
    /// `BATON_CLIENT_KEY`).
    pub tls: ClientTls,
    /// Start the handler together with StartStep instead of after its answer (`BATON_EAGER_START`,
    /// `true`/`false`, default false). The result is still reported only after the start answered
    /// PROCEED, and the work is abandoned (handler cancelled, nothing reported) on any other
    /// answer; but a handler may then begin work for a copy the coordinator refuses (stale,
    /// cancelled, or a duplicate another live worker runs), so only handlers that tolerate that
    /// (idempotent by [`StepContext::attempt_key`]) should run eagerly. Saves the start's round
    /// trip from each step's latency. See docs/worker-protocol.md.
    pub eager_start: bool,
    /// With [`WorkerConfig::eager_start`]: how long the worker waits for the handler before it sends
    /// StartStep (`BATON_EAGER_REPORT_WINDOW`, a duration from 0 to 1 s, default 5 ms). A handler
    /// that finishes within it with an output or a failure, and wrote no log line, is started and
    /// reported in one call (ReportResult with `start`: one gRPC call and one Redis round trip
    /// instead of two each); a longer one sends StartStep at the window's end and goes on as
    /// above. `0` sends StartStep at once. See docs/worker-protocol.md, "Eager report".
    pub eager_report_window: Duration,
}

/// Default [`WorkerConfig::eager_report_window`]: 5 ms.
pub const DEFAULT_EAGER_REPORT_WINDOW: Duration = Duration::from_millis(5);

/// The largest [`WorkerConfig::eager_report_window`]: 1 s (a longer one would only delay the
/// start of slow handlers).
pub const MAX_EAGER_REPORT_WINDOW: Duration = Duration::from_secs(1);

/// Default [`WorkerConfig::max_output_bytes`]: 4 MiB, the coordinator's default `max_payload_bytes`.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

/// Default [`WorkerConfig::call_timeout`]: 5 s.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Default [`WorkerConfig::heartbeat_interval`]: 1 s. The worker holds the attempts it started for 3
/// intervals after its last heartbeat, so this also sets how soon a crashed worker's attempts are
/// taken over (about 3 s).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// Default [`WorkerConfig::shutdown_grace`]: 30 s.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Room for the fields of a `ReportResult` besides the output, in bytes (ids, worker id, a failure
/// message): the gRPC message limit is the output limit plus this.
const MESSAGE_OVERHEAD_BYTES: usize = 64 * 1024;

/// How long a step start is retried while the coordinator does not answer before the task is
/// handed back to the queue (rides out a coordinator restart without holding tasks for long).
const START_PATIENCE: Duration = Duration::from_secs(3);

/// How often an unreachable coordinator is probed.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How long one probe of the coordinator may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a task whose start the coordinator refused for the token (UNAUTHENTICATED,
/// PERMISSION_DENIED) is held before it goes back to the queue.
const AUTH_REFUSED_PAUSE: Duration = Duration::from_secs(5);

/// Longest failure message a worker sends, in bytes (a longer one is cut).
const MAX_FAILURE_MESSAGE_BYTES: usize = 16 * 1024;

/// The environment variables a coordinator address is read from, the first set one winning:
/// `BATON_ADDR` (as the CLI and the Python SDK) and its older alias `BATON_COORDINATOR`.
pub const ADDRESS_VARIABLES: [&str; 2] = ["BATON_ADDR", "BATON_COORDINATOR"];

/// A coordinator address as a URI, before any connection: `host:port` means `http://host:port`
/// (as for the CLI, the Python SDK and grpcio); `http://` and `https://` (TLS, see
/// [`WorkerConfig::tls`]) are kept; any other scheme, or no host, is refused.
///
/// # Errors
/// A message for the user that says what was wrong and what is accepted.
pub fn coordinator_uri(addr: &str) -> Result<String, String> {
    const FORMS: &str = "use host:port, http://host:port or https://host:port";
    let addr = addr.trim();
    let (scheme, rest) = addr.split_once("://").unwrap_or(("http", addr));
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err(format!(
            "unsupported scheme {} in {}: {FORMS}",
            baton_shared::limits::echo(scheme),
            baton_shared::limits::echo(addr)
        ));
    }
    if rest.is_empty() || rest.starts_with(':') || rest.starts_with('/') {
        return Err(format!("{} has no host: {FORMS}", baton_shared::limits::echo(addr)));
    }
    Ok(format!("{}://{rest}", scheme.to_ascii_lowercase()))
}

/// Checks a coordinator address before any connection (see [`coordinator_uri`]).
///
/// # Errors
/// A message for the user that says what was wrong and what is accepted.
pub fn check_coordinator_address(addr: &str) -> Result<(), String> {
    coordinator_uri(addr).map(drop)
}

impl Default for WorkerConfig {
    fn default() -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "worker".into());
        Self {
            coordinator: "http://127.0.0.1:7450".into(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            namespace: "baton".into(),
            concurrency: 16,
            queue_type: QueueType::Quorum,
            delivery_limit: 5,
            worker_id: format!("{host}-{}", std::process::id()),
            report_patience: Duration::from_secs(300),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            metrics_addr: None,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            token: None,
            tls: ClientTls::default(),
            eager_start: false,
            eager_report_window: DEFAULT_EAGER_REPORT_WINDOW,
        }
    }
}

impl WorkerConfig {
    /// Defaults overridden by `BATON_ADDR` (or its alias `BATON_COORDINATOR`), `BATON_AMQP_URL`, `BATON_NAMESPACE`,
    /// `BATON_CONCURRENCY`, `BATON_WORKER_ID`, `BATON_QUEUE_TYPE` (`quorum`/`classic`),
    /// `BATON_DELIVERY_LIMIT`, `BATON_MAX_PAYLOAD_BYTES` (bytes), `BATON_SHUTDOWN_GRACE` (a
    /// duration such as `30s`), `BATON_HEARTBEAT_INTERVAL` and `BATON_CALL_TIMEOUT` (durations
    /// from 100ms to 5m),
    /// `BATON_TOKEN`, `BATON_EAGER_START` (`true`/`false`), `BATON_EAGER_REPORT_WINDOW` (a duration
    /// from 0 to 1 s), and `BATON_CA_FILE`,
    /// `BATON_CLIENT_CERT`, `BATON_CLIENT_KEY` (PEM files).
    /// Unparsable values keep the default and are logged.
    pub fn from_env() -> Self {
        let mut c = Self::default();
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(v) = ADDRESS_VARIABLES.into_iter().find_map(var) {
            if let Some(alias) = var("BATON_COORDINATOR").filter(|alias| *alias != v) {
                tracing::warn!("BATON_ADDR={v:?} and BATON_COORDINATOR={alias:?} differ; using BATON_ADDR");
            }
            c.coordinator = v;
        }
        if let Some(v) = var("BATON_AMQP_URL") {
            c.amqp_url = v;
        }
        if let Some(v) = var("BATON_NAMESPACE") {
            c.namespace = v;
        }
        if let Some(v) = var("BATON_WORKER_ID") {
            c.worker_id = v;
        }
        if let Some(v) = var("BATON_CONCURRENCY") {
            match v.parse() {
                Ok(n) if n > 0 => c.concurrency = n,
                _ => tracing::warn!(
                    "BATON_CONCURRENCY={v:?} is not a number from 1 to 65535; using {}",
                    c.concurrency
                ),
            }
        }
        if let Some(v) = var("BATON_DELIVERY_LIMIT") {
            match v.parse() {
                Ok(n) => c.delivery_limit = n,
                _ => tracing::warn!("BATON_DELIVERY_LIMIT={v:?} is not a number; using {}", c.delivery_limit),
            }
        }
        if let Some(v) = var("BATON_MAX_PAYLOAD_BYTES") {
            match v.parse() {
                Ok(n) if n > 0 => c.max_output_bytes = n,
                _ => tracing::warn!(
                    "BATON_MAX_PAYLOAD_BYTES={v:?} is not a positive number of bytes; using {}",
                    c.max_output_bytes
                ),
            }
        }
        if let Some(v) = var("BATON_SHUTDOWN_GRACE") {
            match baton_shared::duration::parse(&v) {
                Ok(d) if d <= baton_shared::limits::MAX_TIMEOUT => c.shutdown_grace = d,
                Ok(_) => tracing::warn!(
                    "BATON_SHUTDOWN_GRACE={v:?} is over 10 years; using {:?}",
                    c.shutdown_grace
                ),
                Err(e) => tracing::warn!("BATON_SHUTDOWN_GRACE: {e}; using {:?}", c.shutdown_grace),
            }
        }
        if let Some(v) = var("BATON_EAGER_START") {
            match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => c.eager_start = true,
                "false" | "0" | "no" => c.eager_start = false,
                _ => tracing::warn!("BATON_EAGER_START={v:?} is not true or false; using {}", c.eager_start),
            }
        }
        if let Some(v) = var("BATON_EAGER_REPORT_WINDOW") {
            match baton_shared::duration::parse(&v) {
                Ok(d) if d <= MAX_EAGER_REPORT_WINDOW => c.eager_report_window = d,
                Ok(_) => tracing::warn!(
                    "BATON_EAGER_REPORT_WINDOW={v:?} is over {MAX_EAGER_REPORT_WINDOW:?}; using {:?}",
                    c.eager_report_window
                ),
                Err(e) => tracing::warn!("BATON_EAGER_REPORT_WINDOW: {e}; using {:?}", c.eager_report_window),
            }
        }
        if let Some(v) = var("BATON_METRICS_ADDR") {
            match v.parse() {
                Ok(a) => c.metrics_addr = Some(a),
                Err(e) => tracing::warn!(
                    "BATON_METRICS_ADDR={v:?} is not an address such as 0.0.0.0:9465 ({e}); serving no metrics"
                ),
            }
        }
        if let Some(v) = var("BATON_HEARTBEAT_INTERVAL") {
            let (min, max) = (
                baton_shared::limits::MIN_WORKER_HEARTBEAT_INTERVAL,
                baton_shared::limits::MAX_WORKER_HEARTBEAT_INTERVAL,
            );
            match baton_shared::duration::parse(&v) {
                Ok(d) if (min..=max).contains(&d) => c.heartbeat_interval = d,
                Ok(_) => tracing::warn!(
                    "BATON_HEARTBEAT_INTERVAL={v:?} is not from {min:?} to {max:?}; using {:?}",
                    c.heartbeat_interval
                ),
                Err(e) => tracing::warn!("BATON_HEARTBEAT_INTERVAL: {e}; using {:?}", c.heartbeat_interval),
            }
        }
        if let Some(v) = var("BATON_CALL_TIMEOUT") {
            let (min, max) = (
                baton_shared::limits::MIN_WORKER_CALL_TIMEOUT,
                baton_shared::limits::MAX_WORKER_CALL_TIMEOUT,
            );
            match baton_shared::duration::parse(&v) {
                Ok(d) if (min..=max).contains(&d) => c.call_timeout = d,
                Ok(_) => tracing::warn!(
                    "BATON_CALL_TIMEOUT={v:?} is not from {min:?} to {max:?}; using {:?}",
                    c.call_timeout
                ),
                Err(e) => tracing::warn!("BATON_CALL_TIMEOUT: {e}; using {:?}", c.call_timeout),
            }
        }
        c.token = var("BATON_TOKEN").map(Secret::new);
        c.tls = ClientTls::from_env();
        if let Some(v) = var("BATON_QUEUE_TYPE") {
            match v.as_str() {
                "quorum" => c.queue_type = QueueType::Quorum,
                "classic" => c.queue_type = QueueType::Classic,
                _ => tracing::warn!("BATON_QUEUE_TYPE={v:?} is not quorum or classic; using quorum"),
            }
        }
        c
    }
}

/// Command-line flags (each with its environment variable) for a worker binary; flatten them into
/// your own parser with `#[command(flatten)]`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Coordinator gRPC address (`host:port`, `http://host:port` or `https://host:port`), or several
    /// separated by commas (`http://a:7450,http://b:7450`): calls go to one and fail over to the
    /// next when it cannot be reached. A load balancer's address, or a DNS name with several
    /// addresses, works as one. Default: `BATON_ADDR`, else its alias `BATON_COORDINATOR`, else
    /// `http://127.0.0.1:7450`.
    #[arg(long, env = "BATON_ADDR")]
    pub coordinator: Option<String>,
    /// RabbitMQ URL.
    #[arg(
        long,
        env = "BATON_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// Namespace (queue prefix), as configured on the coordinator.
    #[arg(long, env = "BATON_NAMESPACE", default_value = "baton")]
    pub namespace: String,
    /// Steps run at once per handler (the RabbitMQ prefetch).
    #[arg(long, env = "BATON_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// This worker's id, shown in runs (default: `<host>-<pid>`).
    #[arg(long, env = "BATON_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Address of the Prometheus `/metrics` endpoint, e.g. `0.0.0.0:9465` (default: none).
    #[arg(long, env = "BATON_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Bearer token for the coordinator (a `worker` role token when it has auth on).
    #[arg(long, env = "BATON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of the CA that signed an `https://` coordinator's certificate (default: the
    /// system's CAs).
    #[arg(long, env = "BATON_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

impl WorkerArgs {
    /// The configuration these flags describe (queue settings from the environment, see
    /// [`WorkerConfig::from_env`]).
    pub fn config(&self) -> WorkerConfig {
        let base = WorkerConfig::from_env();
        WorkerConfig {
            coordinator: self.coordinator.clone().unwrap_or(base.coordinator.clone()),
            amqp_url: self.amqp_url.clone(),
            namespace: self.namespace.clone(),
            concurrency: self.concurrency,
            worker_id: self.worker_id.clone().unwrap_or(base.worker_id.clone()),
            metrics_addr: self.metrics_addr,
            token: self.token.clone().map(Secret::new).or(base.token.clone()),
            tls: ClientTls {
                ca_file: self.ca_file.clone().or(base.tls.ca_file.clone()),
                ..base.tls.clone()
            },
            ..base
        }
    }
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The coordinator address is not a valid URI, or not an `http://` or `https://` one.
    #[error("coordinator: invalid address {0:?}: {1}")]
    Address(String, String),
    /// The token or the TLS files cannot be used.
    #[error("coordinator: {0}")]
    Credentials(#[from] baton_shared::credentials::CredentialsError),
    /// No handler was registered.
    #[error("no handlers registered")]
    NoHandlers,
    /// The metrics endpoint could not be served (the message names `metrics_addr`).
    #[error("{0}")]
    Metrics(String),
    /// The worker's namespace, queue type or delivery limit is not the coordinator's (from its
    /// `RegisterWorker` answer, or RabbitMQ refusing the queue declare with PRECONDITION_FAILED):
    /// one line saying what differs, both values, and the setting to change.
    #[error("{0}")]
    Mismatch(String),
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<serde_json::Value, StepError>> + Send>>;
type ErasedHandler = Arc<dyn Fn(StepContext, serde_json::Value) -> BoxFuture + Send + Sync>;

/// A worker: handlers by name, and the loop that runs them.
pub struct Worker {
    config: WorkerConfig,
    handlers: HashMap<String, ErasedHandler>,
}

impl Worker {
    /// A worker with no handlers yet.
    pub fn new(config: WorkerConfig) -> Self {
        Self {
            config,
            handlers: HashMap::new(),
        }
    }

    /// Registers `f` as the handler named `name`. Its input `I` is deserialized from the run input (a
    /// mismatch fails the step without retry, as type `InvalidInput`); its output `O` becomes the
    /// step's output.
    #[must_use]
    pub fn handler<I, O, F, Fut>(mut self, name: &str, f: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(StepContext, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, StepError>> + Send + 'static,
    {
        let f = Arc::new(f);
        let erased: ErasedHandler = Arc::new(move |ctx: StepContext, input: serde_json::Value| {
            let f = f.clone();
            Box::pin(async move {
                let input: I = serde_json::from_value(input)
                    .map_err(|e| StepError::non_retryable(format!("run input: {e}")).with_type("InvalidInput"))?;
                let out = f(ctx, input).await?;
                serde_json::to_value(out)
                    .map_err(|e| StepError::non_retryable(format!("output: {e}")).with_type("InvalidOutput"))
            }) as BoxFuture
        });
        self.handlers.insert(name.to_string(), erased);
        self
    }

    /// Names of the registered handlers.
    pub fn handler_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        v.sort();
        v
    }

    /// Consumes until `shutdown` completes; then stops consuming, lets the steps in flight finish and
    /// report, and returns. Reconnects to RabbitMQ when the connection drops.
    ///
    /// # Errors
    /// [`WorkerError`] for a bad coordinator address or no handlers.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), WorkerError> {
        if self.handlers.is_empty() {
            return Err(WorkerError::NoHandlers);
        }
        let addresses = crate::failover::split_addresses(&self.config.coordinator)
            .map_err(|e| WorkerError::Address(self.config.coordinator.clone(), e))?;
        let addresses = addresses
            .into_iter()
            .map(|addr| coordinator_uri(&addr).map_err(|e| WorkerError::Address(addr, e)))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(addr) = self.config.metrics_addr {
            crate::metrics::install(addr).map_err(WorkerError::Metrics)?;
        }
        baton_shared::credentials::install_crypto_provider();
        let bearer = Bearer::new(self.config.token.as_ref().map(Secret::expose))?;
        let mut channels = Vec::with_capacity(addresses.len());
        let mut watches = Vec::with_capacity(addresses.len());
        for addr in addresses {
            let endpoint = credentials::endpoint(&addr, &self.config.tls)?
                .connect_timeout(Duration::from_secs(5))
                // Small request/answer pairs: do not wait for delayed ACKs (Nagle).
                .tcp_nodelay(true);
            // The health watch is a stream that lasts: no call deadline on its own connection.
            watches.push(endpoint.clone().connect_lazy());
            channels.push((addr, endpoint.timeout(self.config.call_timeout).connect_lazy()));
        }
        let channel = Coordinators::new(channels)
            .ok_or_else(|| WorkerError::Address(self.config.coordinator.clone(), "no address".into()))?;
        let max_message = self.config.max_output_bytes.saturating_add(MESSAGE_OVERHEAD_BYTES);
        let client = WorkerServiceClient::with_interceptor(channel.clone(), bearer)
            .max_encoding_message_size(max_message)
            .max_decoding_message_size(max_message);
        let health = HealthClient::new(channel.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        let (fatal, mut fatal_rx) = watch::channel(None::<String>);
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown => {}
                _ = fatal_rx.wait_for(Option::is_some) => {}
            }
            let _ = stop_tx.send(true);
        });
        let mut handler_names: Vec<String> = self.handlers.keys().cloned().collect();
        handler_names.sort();
        let shared = Arc::new(Shared {
            config: self.config,
            client,
            health,
            coordinators: channel,
            cancellations: Cancellations::default(),
            coordinator_up: watch::channel(false).0,
            fatal,
            checked: watch::channel(false).0,
            in_flight: std::sync::Mutex::new(handler_names.iter().map(|h| (h.clone(), 0)).collect()),
            attempts: std::sync::Mutex::default(),
            handler_names,
            started_at_ms: baton_shared::time::now_ms(),
        });
        let registration = tokio::spawn(crate::registration::heartbeat(shared.clone(), stop_rx.clone()));
        let control = tokio::spawn(watch_cancellations(shared.clone(), stop_rx.clone()));
        let probe = tokio::spawn(watch_coordinator(shared.clone(), stop_rx.clone()));
        let watching = shared.coordinators.watch_health(watches);
        tracing::info!(worker = %shared.config.worker_id, handlers = ?self.handlers.keys().collect::<Vec<_>>(), "worker starting");
        let mut consumers = JoinSet::new();
        for (name, handler) in self.handlers {
            consumers.spawn(consume_forever(shared.clone(), name, handler, stop_rx.clone()));
        }
        while consumers.join_next().await.is_some() {}
        control.abort();
        probe.abort();
        for w in watching {
            w.abort();
        }
        registration.abort();
        if let Some(line) = shared.fatal.borrow().clone() {
            return Err(WorkerError::Mismatch(line));
        }
        crate::registration::stopped(&shared).await;
        telemetry::flush(Duration::from_secs(3)).await;
        tracing::info!(worker = %shared.config.worker_id, "worker stopped");
        Ok(())
    }
}

pub(crate) struct Shared {
    pub(crate) config: WorkerConfig,
    pub(crate) client: WorkerServiceClient<WorkerChannel>,
    health: HealthClient<Coordinators>,
    /// The coordinators the calls go to, and which one is in use.
    coordinators: Coordinators,
    cancellations: Cancellations,
    /// Whether the coordinator answers; consumers take tasks only while it is `true`. Set `false`
    /// when a call cannot reach it, `true` by [`watch_coordinator`]'s probe.
    coordinator_up: watch::Sender<bool>,
    /// Set (once) to the line that says why this worker cannot serve: the worker stops and
    /// [`Worker::run`] returns it as [`WorkerError::Mismatch`].
    pub(crate) fatal: watch::Sender<Option<String>>,
    /// Whether the coordinator's answer to `RegisterWorker` showed matching queue settings (or
    /// the coordinator does not know the call): until then no queue is declared, so a worker
    /// with other settings cannot create queues the coordinator's would not match.
    pub(crate) checked: watch::Sender<bool>,
    /// Tasks delivered and not yet acknowledged, per handler.
    pub(crate) in_flight: std::sync::Mutex<std::collections::BTreeMap<String, u32>>,
    /// The attempts this process is handling (`<run>|<step>|<attempt>`), from delivery to ack:
    /// see [`AttemptHandled`].
    attempts: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The handlers served, sorted.
    pub(crate) handler_names: Vec<String>,
    /// When the worker started (Unix ms).
    pub(crate) started_at_ms: i64,
}

impl Shared {
    /// Stops the worker with `line` (the first reason wins).
    pub(crate) fn fail(&self, line: String) {
        self.fatal.send_if_modified(|f| {
            if f.is_none() {
                *f = Some(line);
                true
            } else {
                false
            }
        });
    }

    fn count_in_flight(&self, handler: &str, up: bool) {
        let mut m = self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(handler) {
            *n = if up { n.saturating_add(1) } else { n.saturating_sub(1) };
        }
    }

    /// Marks the coordinator unreachable (the consumers pause until the probe answers).
    fn coordinator_lost(&self, why: &str) {
        if self.coordinator_up.send_replace(false) {
            tracing::warn!(
                error = why,
                "coordinator unreachable; pausing the consumers until it answers"
            );
        }
    }
}

/// Whether the coordinator answers and is ready for workers: its gRPC health for
/// `baton.v1.WorkerService` is `SERVING` (a coordinator without that health entry or service
/// counts as answering).
async fn coordinator_answers(health: &HealthClient<Coordinators>) -> bool {
    let req = HealthCheckRequest {
        service: "baton.v1.WorkerService".into(),
    };
    match tokio::time::timeout(PROBE_TIMEOUT, health.clone().check(req)).await {
        Ok(Ok(r)) => r.into_inner().status == ServingStatus::Serving as i32,
        Ok(Err(s)) => matches!(s.code(), tonic::Code::NotFound | tonic::Code::Unimplemented),
        Err(_) => false,
    }
}

/// Keeps [`Shared::coordinator_up`] true while the coordinator answers: whenever it is false
/// (at start, or after a call failed to reach the coordinator), probes every [`PROBE_INTERVAL`]
/// until the coordinator answers. Runs until shutdown.
async fn watch_coordinator(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut up = shared.coordinator_up.subscribe();
    let mut logged = false;
    loop {
        if *stop.borrow() {
            return;
        }
        if *up.borrow_and_update() {
            tokio::select! {
                r = up.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
            }
            // Lost: give it a moment before the first probe, so that a coordinator restarting
            // does not flip the consumers on and off.
            tokio::select! {
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        if coordinator_answers(&shared.health).await {
            tracing::info!(coordinator = %shared.coordinators.current_addr(), "coordinator answers; taking tasks");
            logged = false;
            shared.coordinator_up.send_replace(true);
            continue;
        }
        if !logged {
            tracing::warn!(coordinator = %shared.coordinators.current_addr(), "coordinator does not answer (or is not ready); not taking tasks, probing every {PROBE_INTERVAL:?}");
            logged = true;
        }
        // With several coordinators, probe the next one: one that answers but cannot serve (its
        // Redis is down, it is starting) is passed over as well as one that does not answer.
        if shared.coordinators.len() > 1 {
            shared.coordinators.fail_over_current();
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            _ = stop.changed() => return,
        }
    }
}

/// How long a cancelled handler may go on before it is abandoned.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// The cancellation tokens of the steps running here, by run.
#[derive(Default)]
struct Cancellations {
    next: std::sync::atomic::AtomicU64,
    by_run: std::sync::Mutex<HashMap<String, Vec<(u64, CancellationToken)>>>,
}

impl Cancellations {
    fn register(&self, run_id: &str) -> (u64, CancellationToken) {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = CancellationToken::new();
        self.by_run
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(run_id.to_string())
            .or_default()
            .push((id, token.clone()));
        (id, token)
    }

    fn forget(&self, run_id: &str, id: u64) {
        let mut map = self.by_run.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(list) = map.get_mut(run_id) {
            list.retain(|(i, _)| *i != id);
            if list.is_empty() {
                map.remove(run_id);
            }
        }
    }

    fn cancel_run(&self, run_id: &str) -> usize {
        let map = self.by_run.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = map.get(run_id).map(Vec::as_slice).unwrap_or(&[]);
        for (_, token) in list {
            token.cancel();
        }
        list.len()
    }
}

/// Waits for a handler: its outcome; a `Timeout` failure when it outlives `timeout` (it is aborted);
/// and when the run is cancelled, its outcome if it stops within [`CANCEL_GRACE`], else a `Cancelled`
/// failure (it is aborted). Results of a cancelled run are answered stale by the coordinator anyway.
async fn supervise(
    mut run: tokio::task::JoinHandle<Result<serde_json::Value, StepError>>,
    timeout: Duration,
    cancel: &CancellationToken,
    max_output_bytes: usize,
) -> Outcome {
    let outcome = |r: Result<Result<serde_json::Value, StepError>, tokio::task::JoinError>| match r {
        Ok(Ok(value)) => {
            let json = value.to_string();
            if json.len() > max_output_bytes {
                Outcome::Failure(output_too_large(json.len(), max_output_bytes))
            } else {
                Outcome::OutputJson(json)
            }
        }
        Ok(Err(e)) => match e.suspend {
            Some(s) => Outcome::Suspend(Suspend {
                event: s.event,
                key: s.key,
                timeout_ms: s.timeout.map(|t| t.as_millis() as u64).unwrap_or(0),
            }),
            None => Outcome::Failure(StepFailure {
                message: cut(e.message, MAX_FAILURE_MESSAGE_BYTES),
                error_type: e.error_type,
                retryable: e.retryable,
                details: cut(e.details, baton_shared::limits::MAX_ERROR_DETAILS_BYTES),
            }),
        },
        Err(join) => Outcome::Failure(StepFailure {
            message: format!("handler panicked: {join}"),
            error_type: "Panic".into(),
            retryable: true,
            details: String::new(),
        }),
    };
    let failure = |message: String, error_type: &str, retryable: bool| {
        Outcome::Failure(StepFailure {
            message,
            error_type: error_type.into(),
            retryable,
            details: String::new(),
        })
    };
    tokio::select! {
        r = &mut run => outcome(r),
        _ = tokio::time::sleep(timeout) => {
            run.abort();
            failure(format!("handler did not finish within {timeout:?}"), "Timeout", true)
        }
        _ = cancel.cancelled() => match tokio::time::timeout(CANCEL_GRACE, &mut run).await {
            Ok(r) => outcome(r),
            Err(_) => {
                run.abort();
                failure(format!("handler did not stop within {CANCEL_GRACE:?} of the cancel"), "Cancelled", false)
            }
        },
    }
}

/// The failure of a step whose output of `len` bytes is over `max`: not retryable (the handler would
/// give the same output again), type `OutputTooLarge`.
fn output_too_large(len: usize, max: usize) -> StepFailure {
    StepFailure {
        message: format!(
            "the handler's output of {len} bytes is over the limit of {max} bytes (the worker's BATON_MAX_PAYLOAD_BYTES)"
        ),
        error_type: "OutputTooLarge".into(),
        retryable: false,
        details: String::new(),
    }
}

/// The failure to report instead of an outcome the coordinator refused with `e` (a non-retriable
/// error): `OutputTooLarge` for an output over a message limit (`OUT_OF_RANGE`,
/// `RESOURCE_EXHAUSTED`), `InvalidOutput` for another refused output, `InvalidSuspend` for a
/// refused suspension; none for a refused failure (nothing better to say).
fn refused_outcome(outcome: Option<&Outcome>, e: &tonic::Status) -> Option<StepFailure> {
    let (error_type, what) = match outcome? {
        Outcome::OutputJson(json) if matches!(e.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted) => (
            "OutputTooLarge",
            format!("the handler's output of {} bytes", json.len()),
        ),
        Outcome::OutputJson(json) => ("InvalidOutput", format!("the handler's output of {} bytes", json.len())),
        Outcome::Suspend(s) => (
            "InvalidSuspend",
            format!("the handler's suspension until event {:?}", cut(s.event.clone(), 200)),
        ),
        Outcome::Failure(_) => return None,
    };
    Some(StepFailure {
        message: cut(
            format!("the coordinator refused {what}: {}: {}", e.code(), e.message()),
            MAX_FAILURE_MESSAGE_BYTES,
        ),
        error_type: error_type.into(),
        retryable: false,
        details: String::new(),
    })
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Listens for cancel notices on the control exchange (through a queue of this worker's own) and
/// trips the tokens of the run's steps running here, until shutdown; reconnects on failure.
async fn watch_cancellations(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let cfg = &shared.config;
    let topology = Topology {
        namespace: cfg.namespace.clone(),
        queue_type: cfg.queue_type,
        delivery_limit: cfg.delivery_limit,
    };
    loop {
        let session = async {
            let conn =
                baton_shared::amqp::connect(&cfg.amqp_url, &format!("baton-worker {} control", cfg.worker_id)).await?;
            let ch = conn.create_channel().await?;
            topology.declare_base(&ch).await?;
            let opts = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            };
            let queue = ch.queue_declare("".into(), opts, FieldTable::default()).await?;
            ch.queue_bind(
                queue.name().clone(),
                topology.control_exchange().as_str().into(),
                "".into(),
                Default::default(),
                FieldTable::default(),
            )
            .await?;
            let consume = BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            };
            let mut consumer = ch
                .basic_consume(queue.name().clone(), "".into(), consume, FieldTable::default())
                .await?;
            while let Some(delivery) = consumer.next().await {
                let delivery = delivery?;
                let run_id = String::from_utf8_lossy(&delivery.data);
                let n = shared.cancellations.cancel_run(&run_id);
                if n > 0 {
                    tracing::info!(run = %run_id, steps = n, "run cancelled; told its handlers");
                }
            }
            Ok::<(), lapin::Error>(())
        };
        tokio::select! {
            r = session => if let Err(e) = r {
                tracing::warn!(error = %e, "cancel listener failed; reconnecting");
            },
            _ = stop.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Keeps a consumer of `handler`'s queue running until shutdown, reconnecting with backoff.
async fn consume_forever(
    shared: Arc<Shared>,
    handler_name: String,
    handler: ErasedHandler,
    mut stop: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(200);
    loop {
        match consume(&shared, &handler_name, &handler, &mut stop).await {
            Ok(()) => return,
            Err(e) => {
                crate::metrics::reconnect(&handler_name);
                if let Some(line) = crate::registration::queue_mismatch(&shared.config, &handler_name, &*e) {
                    shared.fail(line);
                    return;
                }
                tracing::warn!(handler = %handler_name, error = %e, "RabbitMQ consumer failed; reconnecting in {delay:?}")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// One consumer session. Returns `Ok` after a clean shutdown, `Err` when the connection failed.
///
/// Consumes only while the coordinator answers ([`Shared::coordinator_up`]): when it stops
/// answering, cancels the consumer and hands back the tasks delivered but not started; resumes
/// when it answers again. On shutdown, stops consuming, hands back what was not started, waits up
/// to [`WorkerConfig::shutdown_grace`] for the running steps, then aborts the rest and closes the
/// channel, which returns their tasks to the queue.
async fn consume(
    shared: &Arc<Shared>,
    handler_name: &str,
    handler: &ErasedHandler,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let cfg = &shared.config;
    let topology = Topology {
        namespace: cfg.namespace.clone(),
        queue_type: cfg.queue_type,
        delivery_limit: cfg.delivery_limit,
    };
    // Declare nothing before the coordinator confirmed the queue settings.
    let mut checked = shared.checked.subscribe();
    tokio::select! {
        r = checked.wait_for(|c| *c) => if r.is_err() { return Ok(()) },
        _ = stop.wait_for(|s| *s) => return Ok(()),
    }
    let conn = baton_shared::amqp::connect(&cfg.amqp_url, &format!("baton-worker {}", cfg.worker_id)).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(cfg.concurrency, BasicQosOptions::default()).await?;
    topology.declare_base(&ch).await?;
    topology.declare_handler_queue(&ch, handler_name).await?;
    let tag = format!("{}:{handler_name}", cfg.worker_id);
    let mut up = shared.coordinator_up.subscribe();
    let mut in_flight = JoinSet::new();
    let result: Result<(), Box<dyn std::error::Error + Send + Sync>> = 'session: loop {
        // Take nothing while the coordinator does not answer.
        if !*up.borrow_and_update() {
            loop {
                tokio::select! {
                    _ = stop.changed() => break 'session Ok(()),
                    r = up.changed() => {
                        if r.is_err() {
                            break 'session Ok(());
                        }
                        if *up.borrow_and_update() {
                            break;
                        }
                    }
                    Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                }
            }
        }
        let mut consumer = match ch
            .basic_consume(
                topology.queue(handler_name).as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        {
            Ok(c) => c,
            Err(e) => break 'session Err(e.into()),
        };
        tracing::info!(handler = handler_name, queue = %topology.queue(handler_name), prefetch = cfg.concurrency, "consuming");
        let paused = loop {
            tokio::select! {
                _ = stop.changed() => break false,
                r = up.changed() => {
                    if r.is_err() {
                        break false;
                    }
                    if !*up.borrow_and_update() {
                        break true;
                    }
                }
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        let shared = shared.clone();
                        let handler = handler.clone();
                        let stop = stop.clone();
                        let name = handler_name.to_string();
                        let trace = crate::traces::Trace::of(handler_name, &delivery);
                        shared.count_in_flight(&name, true);
                        in_flight.spawn(trace.wrap(async move {
                            handle_delivery(&shared, &name, &handler, delivery, stop).await;
                            shared.count_in_flight(&name, false);
                        }));
                    }
                    Some(Err(e)) => break 'session Err(e.into()),
                    None => break 'session Err("the consumer was closed by the broker".into()),
                },
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
        };
        // Stop taking tasks; the ones delivered before the cancel took effect go back unstarted.
        let _ = ch
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
        let handed_back = hand_back_buffered(&mut consumer).await;
        if paused {
            tracing::warn!(
                handler = handler_name,
                handed_back,
                in_flight = in_flight.len(),
                "coordinator unreachable: stopped consuming until it answers"
            );
        } else {
            tracing::info!(
                handler = handler_name,
                handed_back,
                in_flight = in_flight.len(),
                "stopped consuming; finishing steps in flight"
            );
            break 'session Ok(());
        }
    };
    if result.is_ok() {
        // Shutdown: the steps in flight get the grace to finish and report; tasks not started were
        // handed back by their own tasks as the stop arrived.
        let grace = cfg.shutdown_grace;
        let drained = tokio::time::timeout(grace, async { while in_flight.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                handler = handler_name,
                left = in_flight.len(),
                "steps still running after the shutdown grace of {grace:?}; abandoning them (their tasks go back to the queue)"
            );
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
        }
        // Closing the channel returns every unacknowledged task to the queue.
        let _ = ch.close(200, "shutdown".into()).await;
        let _ = conn.close(200, "shutdown".into()).await;
    } else {
        while in_flight.join_next().await.is_some() {}
    }
    result
}

/// After a `basic.cancel`: hands back (nack with requeue) the deliveries that arrived before the
/// cancel took effect, until the consumer ends (at most 2 s). Returns how many.
async fn hand_back_buffered(consumer: &mut lapin::Consumer) -> usize {
    let mut n = 0;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(delivery)) = consumer.next().await {
            n += 1;
            let _ = delivery.nack(requeue()).await;
        }
    })
    .await;
    n
}

/// Starts an attempt at the coordinator, retrying what may pass: a coordinator that cannot be
/// reached for [`START_PATIENCE`] gives up (and pauses the consumers: the task goes back to the
/// queue rather than being held); a coordinator that answers `UNAVAILABLE` itself (its Redis or
/// RabbitMQ is away) is retried for [`WorkerConfig::report_patience`].
async fn start_step(
    shared: &Shared,
    req: &StartStepRequest,
) -> Result<tonic::Response<StartStepResponse>, tonic::Status> {
    let began = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        let e = match shared.client.clone().start_step(telemetry::request(req.clone())).await {
            Ok(r) => return Ok(r),
            Err(e) if !retriable(&e) => return Err(e),
            Err(e) => e,
        };
        let answered = e.metadata().get("baton-source").is_some();
        if !answered && unreachable(&e) {
            shared.coordinator_lost(e.message());
        }
        let patience = if answered {
            shared.config.report_patience
        } else {
            START_PATIENCE
        };
        if began.elapsed() >= patience {
            return Err(e);
        }
        tracing::warn!(run = %req.run_id, step = %req.step_id, error = %e.message(), "coordinator unreachable at start; retrying in {delay:?}");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Nack options that return the task to its queue.
fn requeue() -> BasicNackOptions {
    BasicNackOptions {
        requeue: true,
        ..Default::default()
    }
}

/// Whether an error of a coordinator call says the coordinator cannot serve workers now (not
/// reached, or reached but without Redis or RabbitMQ): the consumers pause until its health probe
/// answers `SERVING` again.
fn unreachable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
    )
}

fn retriable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::ResourceExhausted
            | tonic::Code::Aborted
    )
}

/// An attempt this process is handling, from its delivery until [`handle_delivery`] returns
/// (acked, handed back or dropped): the key leaves [`Shared::attempts`] when it drops.
struct AttemptHandled<'a> {
    shared: &'a Shared,
    key: String,
}

impl<'a> AttemptHandled<'a> {
    /// Claims `task`'s attempt for this process; `None` when it is being handled already.
    fn claim(shared: &'a Shared, task: &StepTask) -> Option<Self> {
        let key = format!("{}|{}|{}", task.run_id, task.step_id, task.attempt);
        let claimed = shared
            .attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.clone());
        // Built only after the lock is released, and only when claimed: dropping one takes the
        // lock (and gives the attempt up).
        claimed.then(|| Self { shared, key })
    }
}

impl Drop for AttemptHandled<'_> {
    fn drop(&mut self) {
        let mut attempts = self
            .shared
            .attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        attempts.remove(&self.key);
    }
}

/// Runs one delivery: decode, start, run the handler, report, ack. A start that cannot reach the
/// coordinator within [`START_PATIENCE`], or that a shutdown interrupts, hands the task back.
async fn handle_delivery(
    shared: &Shared,
    handler_name: &str,
    handler: &ErasedHandler,
    delivery: Delivery,
    mut stop: watch::Receiver<bool>,
) {
    let task = match StepTask::decode(delivery.data.as_slice()) {
        Ok(t) if !t.run_id.is_empty() && !t.step_id.is_empty() && t.attempt > 0 => t,
        Ok(_) | Err(_) => {
            tracing::error!(
                delivery_tag = delivery.delivery_tag,
                bytes = delivery.data.len(),
                "malformed step task; sending it to the dead-letter queue"
            );
            let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
            return;
        }
    };
    crate::traces::record_task(&task, &shared.config.worker_id);
    if *stop.borrow() {
        let _ = delivery.nack(requeue()).await;
        return;
    }
    // A second copy of an attempt this process is handling (a dispatch the coordinator sent again
    // because RabbitMQ's confirm of the first was lost, as in a Redis failover): the coordinator
    // would let it start, since the same worker starting an attempt again is how a restarted
    // worker takes its attempts back, and the handler would run twice. The copy in hand reports;
    // if it cannot, the attempt's timeout sends the attempt again. So this one is dropped.
    let Some(_handled) = AttemptHandled::claim(shared, &task) else {
        tracing::info!(run = %task.run_id, step = %task.step_id, attempt = task.attempt, "dropping a duplicate copy of a task: this worker is handling this attempt");
        let _ = delivery.ack(BasicAckOptions::default()).await;
        return;
    };
    let cfg = &shared.config;
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_total_delay(Some(cfg.report_patience))
        .without_max_times();
    let start = StartStepRequest {
        run_id: task.run_id.clone(),
        step_id: task.step_id.clone(),
        attempt: task.attempt,
        worker_id: cfg.worker_id.clone(),
        workflow: task.workflow.clone(),
        workflow_version: task.workflow_version,
        input_json: task.input_json.clone(),
    };

    // With `eager_start`, StartStep and the handler start together (the start costs no wait
    // before the work); otherwise the handler starts once the start answered PROCEED. Either way
    // the result is reported only after PROCEED, and any other answer abandons the work (the
    // handler is cancelled and its outcome dropped). See docs/worker-protocol.md.
    let parent_outputs = task
        .parent_outputs_json
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap_or(serde_json::Value::Null)))
        .collect();
    let input: serde_json::Value = serde_json::from_str(&task.input_json).unwrap_or(serde_json::Value::Null);
    let timeout = Duration::from_millis(task.timeout_ms.max(1));
    let (registration, cancel) = shared.cancellations.register(&task.run_id);
    let (started_tx, started_rx) = watch::channel(None);
    let ctx = StepContext {
        run_id: task.run_id.clone(),
        step_id: task.step_id.clone(),
        attempt: task.attempt,
        workflow: task.workflow.clone(),
        workflow_version: task.workflow_version,
        worker_id: cfg.worker_id.clone(),
        input: input.clone(),
        parent_outputs,
        resume_data: (!task.resume_data_json.is_empty())
            .then(|| serde_json::from_str(&task.resume_data_json).unwrap_or(serde_json::Value::Null)),
        item_index: task.item_index,
        timeout,
        heartbeat_timeout: (task.heartbeat_timeout_ms > 0).then(|| Duration::from_millis(task.heartbeat_timeout_ms)),
        client: shared.client.clone(),
        cancel: cancel.clone(),
        started: started_rx.clone(),
        log: crate::logs::StepLog::default(),
    };
    let log_sender = crate::logs::Sender::spawn(
        ctx.log.clone(),
        shared.client.clone(),
        crate::logs::AttemptIds {
            run_id: task.run_id.clone(),
            step_id: task.step_id.clone(),
            attempt: task.attempt,
            worker_id: cfg.worker_id.clone(),
        },
        started_rx,
    );
    let in_flight = crate::metrics::InFlight::start(handler_name);
    let mut ran = tokio::time::Instant::now();
    // The handler runs in its own task so that a panic fails the attempt instead of the worker;
    // the supervisor applies its timeout and output limit.
    let launch = |ctx: StepContext, input: serde_json::Value| {
        let run = tokio::spawn((handler)(ctx, input).in_current_span());
        let abort = run.abort_handle();
        let supervised: Pin<Box<dyn Future<Output = Outcome> + Send + '_>> =
            Box::pin(supervise(run, timeout, &cancel, cfg.max_output_bytes));
        (abort, supervised)
    };
    let log = ctx.log.clone();
    let mut pending = Some((ctx, input));
    let mut running = None;
    if cfg.eager_start
        && let Some((ctx, input)) = pending.take()
    {
        running = Some(launch(ctx, input));
    }
    // An eager handler may finish first: its outcome waits for the start's answer.
    let mut finished = None;
    // An eager report: a handler that finishes within the window with an output or a failure, and
    // wrote no log line (lines are kept only for a started attempt), is started and reported in
    // one call instead of StartStep and ReportResult.
    if let Some((_, supervised)) = running.as_mut()
        && !cfg.eager_report_window.is_zero()
    {
        let mut stop_waiting = stop.clone();
        tokio::select! {
            o = supervised.as_mut() => finished = Some(o),
            () = tokio::time::sleep(cfg.eager_report_window) => {}
            _ = stop_waiting.wait_for(|s| *s) => {}
        }
    }
    let eager_report = matches!(finished, Some(Outcome::OutputJson(_) | Outcome::Failure(_))) && log.is_empty();
    let mut stop_starting = stop.clone();
    let starting = async {
        tokio::select! {
            r = start_step(shared, &start) => Some(r),
            _ = stop_starting.wait_for(|s| *s) => None,
        }
    };
    tokio::pin!(starting);
    let started = if eager_report {
        // No StartStep: the report starts the attempt; its answer says the start's fate.
        None
    } else {
        loop {
            match running.as_mut() {
                Some((_, supervised)) if finished.is_none() => tokio::select! {
                    r = &mut starting => break Some(r),
                    o = supervised.as_mut() => finished = Some(o),
                },
                _ => break Some((&mut starting).await),
            }
        }
    };
    let abort = running.as_ref().map(|(a, _)| a.clone());
    let abandon = |why: &str| {
        if let Some(abort) = &abort {
            tracing::debug!(run = %task.run_id, step = %task.step_id, attempt = task.attempt, why, "abandoning the handler's work");
            abort.abort();
        }
        let _ = started_tx.send(Some(false));
        cancel.cancel();
        shared.cancellations.forget(&task.run_id, registration);
    };
    let disposition = match started {
        None => AttemptDisposition::Proceed,
        Some(Some(Ok(r))) => {
            AttemptDisposition::try_from(r.into_inner().disposition).unwrap_or(AttemptDisposition::Stale)
        }
        Some(Some(Err(e))) if matches!(e.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) => {
            abandon("token refused");
            // A wrong or missing token: every task would meet the same answer. Hand the task back
            // after a pause (holding its prefetch slot), so a misconfigured worker does not spin.
            tracing::error!(run = %task.run_id, step = %task.step_id, code = ?e.code(), error = %e.message(),
                "the coordinator refused this worker's token (set BATON_TOKEN to a token of role worker); handing the task back");
            let _ = tokio::time::timeout(AUTH_REFUSED_PAUSE, stop.wait_for(|s| *s)).await;
            let _ = delivery.nack(requeue()).await;
            return;
        }
        Some(Some(Err(e))) => {
            abandon("start failed");
            tracing::error!(run = %task.run_id, step = %task.step_id, error = %e, "could not start the step; handing the task back");
            let _ = delivery.nack(requeue()).await;
            return;
        }
        Some(None) => {
            abandon("shutting down");
            tracing::info!(run = %task.run_id, step = %task.step_id, "shutting down before the step started; handing the task back");
            let _ = delivery.nack(requeue()).await;
            return;
        }
    };
    // Anything but PROCEED (an answer this worker does not know reads as STALE) abandons the work:
    // the handler is cancelled and nothing is reported.
    if disposition == AttemptDisposition::Duplicate {
        abandon("duplicate");
        tracing::info!(run = %task.run_id, step = %task.step_id, attempt = task.attempt, "dropping a duplicate copy of a task: another live worker runs this attempt");
        let _ = delivery.ack(BasicAckOptions::default()).await;
        return;
    }
    if disposition != AttemptDisposition::Proceed {
        abandon("not current");
        tracing::info!(run = %task.run_id, step = %task.step_id, attempt = task.attempt, ?disposition, "dropping a task that is no longer current");
        let _ = delivery.ack(BasicAckOptions::default()).await;
        return;
    }
    let _ = started_tx.send(Some(true));
    let outcome = match (finished, running, pending) {
        (Some(o), _, _) => o,
        (None, Some((_, supervised)), _) => supervised.await,
        (None, None, Some((ctx, input))) => {
            ran = tokio::time::Instant::now();
            launch(ctx, input).1.await
        }
        (None, None, None) => return,
    };
    let word = match &outcome {
        Outcome::OutputJson(_) => "succeeded",
        Outcome::Failure(_) => "failed",
        Outcome::Suspend(_) => "suspended",
    };
    crate::metrics::handler_ran(handler_name, word, ran.elapsed());
    crate::traces::record_outcome(&outcome);
    shared.cancellations.forget(&task.run_id, registration);
    // The handler's last log lines go before its result (a result ends the attempt, after which
    // the coordinator keeps no more lines of it).
    log_sender.finish().await;

    let report = ReportResultRequest {
        run_id: task.run_id.clone(),
        step_id: task.step_id.clone(),
        attempt: task.attempt,
        worker_id: cfg.worker_id.clone(),
        outcome: Some(outcome),
        workflow: task.workflow.clone(),
        workflow_version: task.workflow_version,
        attempt_base: task.attempt_base,
        start: eager_report,
        input_json: if eager_report {
            task.input_json.clone()
        } else {
            String::new()
        },
    };
    let send = |report: ReportResultRequest| {
        (move || {
            let mut c = shared.client.clone();
            let req = report.clone();
            async move { c.report_result(telemetry::request(req)).await }
        })
        .retry(backoff)
        .when(retriable)
        .notify(|e, d| tracing::warn!(run = %task.run_id, step = %task.step_id, error = %e.message(), "coordinator unreachable at report; retrying in {d:?}"))
    };
    let mut reported = send(report.clone()).await;
    // An output or a suspension the coordinator refuses (too large for its message limit, not
    // JSON, a suspension it cannot accept) fails the step for good, reported as such, instead of
    // leaving the step to its timeout.
    if let Err(e) = &reported
        && !retriable(e)
        && let Some(failure) = refused_outcome(report.outcome.as_ref(), e)
    {
        tracing::warn!(run = %task.run_id, step = %task.step_id, error = %e, "coordinator refused the result; failing the step as {}", failure.error_type);
        reported = send(ReportResultRequest {
            outcome: Some(Outcome::Failure(failure)),
            ..report
        })
        .await;
    }
    match reported {
        Ok(r) => {
            match AttemptDisposition::try_from(r.into_inner().disposition) {
                Ok(AttemptDisposition::Proceed) => {}
                // Only an eager report (the start's answer): another live worker holds the attempt.
                Ok(AttemptDisposition::Duplicate) => {
                    crate::metrics::result_refused(handler_name, "duplicate");
                    tracing::info!(run = %task.run_id, step = %task.step_id, attempt = task.attempt, "dropping a duplicate copy of a task: another live worker runs this attempt");
                }
                Ok(AttemptDisposition::Cancelled) => {
                    tracing::info!(run = %task.run_id, step = %task.step_id, attempt = task.attempt, "result dropped: the run is over");
                }
                _ => {
                    crate::metrics::result_refused(handler_name, "stale");
                    tracing::info!(run = %task.run_id, step = %task.step_id, attempt = task.attempt, "result was stale (attempt no longer current)");
                }
            }
            let _ = delivery.ack(BasicAckOptions::default()).await;
        }
        Err(e) if !retriable(&e) => {
            crate::metrics::result_refused(handler_name, "refused");
            tracing::error!(run = %task.run_id, step = %task.step_id, error = %e, "coordinator refused the result; dropping the task");
            let _ = delivery.ack(BasicAckOptions::default()).await;
        }
        Err(e) => {
            tracing::error!(run = %task.run_id, step = %task.step_id, error = %e, "could not report the result; handing the task back");
            let _ = delivery.nack(requeue()).await;
        }
    }
    drop(in_flight);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_addresses_take_the_cli_forms_and_refuse_other_schemes() {
        assert_eq!(coordinator_uri("http://h:1").as_deref(), Ok("http://h:1"));
        assert_eq!(coordinator_uri("HTTPS://h:1").as_deref(), Ok("https://h:1"));
        assert_eq!(coordinator_uri(" h:1 ").as_deref(), Ok("http://h:1"));
        assert_eq!(coordinator_uri("[::1]:7450").as_deref(), Ok("http://[::1]:7450"));
        let e = coordinator_uri("ftp://h:1").unwrap_err();
        assert!(e.starts_with("unsupported scheme") && e.contains("host:port"), "{e}");
        assert!(coordinator_uri("http://").unwrap_err().contains("no host"));
        assert!(coordinator_uri(":7450").unwrap_err().contains("no host"));
        assert!(check_coordinator_address("h:1").is_ok());
    }

    #[tokio::test]
    async fn an_output_over_the_limit_becomes_a_non_retryable_output_too_large() {
        let run = tokio::spawn(async { Ok(serde_json::json!({"text": "x".repeat(100)})) });
        let outcome = supervise(run, Duration::from_secs(5), &CancellationToken::new(), 50).await;
        let Outcome::Failure(f) = outcome else {
            panic!("not a failure: {outcome:?}")
        };
        assert_eq!(f.error_type, "OutputTooLarge");
        assert!(!f.retryable);
        assert!(f.message.contains("over the limit of 50 bytes"), "{}", f.message);

        let run = tokio::spawn(async { Ok(serde_json::json!({"a": 1})) });
        let outcome = supervise(run, Duration::from_secs(5), &CancellationToken::new(), 50).await;
        assert!(
            matches!(outcome, Outcome::OutputJson(ref j) if j == r#"{"a":1}"#),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_refused_output_is_reported_as_a_failure_not_dropped() {
        let too_big = tonic::Status::out_of_range("decoded message length too large");
        let f = refused_outcome(Some(&Outcome::OutputJson("{}".into())), &too_big).expect("a failure");
        assert_eq!(f.error_type, "OutputTooLarge");
        assert!(!f.retryable);
        let bad = tonic::Status::invalid_argument("output_json: not valid JSON");
        let f = refused_outcome(Some(&Outcome::OutputJson("{".into())), &bad).expect("a failure");
        assert_eq!(f.error_type, "InvalidOutput");
        let failure = Outcome::Failure(StepFailure::default());
        assert!(refused_outcome(Some(&failure), &bad).is_none());
    }
}
