//! The worker runtime: one RabbitMQ consumer per handler (prefetch-bounded), each delivery run as
//! start → handler → report → ack, with the coordinator calls retried through its restarts.

use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use baton_shared::{
    amqp::{QueueType, Topology},
    proto::{
        AttemptDisposition, ReportResultRequest, StartStepRequest, StepFailure, StepTask, Suspend,
        report_result_request::Outcome, worker_service_client::WorkerServiceClient,
    },
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
use tonic::transport::{Channel, Endpoint};

use crate::context::{StepContext, StepError};

/// Where a worker connects and how much it takes on.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The coordinator's gRPC address (`http://host:port`).
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
        }
    }
}

impl WorkerConfig {
    /// Defaults overridden by `BATON_COORDINATOR`, `BATON_AMQP_URL`, `BATON_NAMESPACE`,
    /// `BATON_CONCURRENCY`, `BATON_WORKER_ID`, `BATON_QUEUE_TYPE` (`quorum`/`classic`) and
    /// `BATON_DELIVERY_LIMIT`. Unparsable numbers keep the default and are logged.
    pub fn from_env() -> Self {
        let mut c = Self::default();
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(v) = var("BATON_COORDINATOR") {
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
    /// Coordinator gRPC address.
    #[arg(long, env = "BATON_COORDINATOR", default_value = "http://127.0.0.1:7450")]
    pub coordinator: String,
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
}

impl WorkerArgs {
    /// The configuration these flags describe (queue settings from the environment, see
    /// [`WorkerConfig::from_env`]).
    pub fn config(&self) -> WorkerConfig {
        let base = WorkerConfig::from_env();
        WorkerConfig {
            coordinator: self.coordinator.clone(),
            amqp_url: self.amqp_url.clone(),
            namespace: self.namespace.clone(),
            concurrency: self.concurrency,
            worker_id: self.worker_id.clone().unwrap_or(base.worker_id.clone()),
            ..base
        }
    }
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The coordinator address is not a valid URI.
    #[error("coordinator: invalid address {0:?}: {1}")]
    Address(String, String),
    /// No handler was registered.
    #[error("no handlers registered")]
    NoHandlers,
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
        let endpoint = Endpoint::from_shared(self.config.coordinator.clone())
            .map_err(|e| WorkerError::Address(self.config.coordinator.clone(), e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        let client = WorkerServiceClient::new(endpoint.connect_lazy());
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let shared = Arc::new(Shared {
            config: self.config,
            client,
            cancellations: Cancellations::default(),
        });
        let control = tokio::spawn(watch_cancellations(shared.clone(), stop_rx.clone()));
        tracing::info!(worker = %shared.config.worker_id, handlers = ?self.handlers.keys().collect::<Vec<_>>(), "worker starting");
        let mut consumers = JoinSet::new();
        for (name, handler) in self.handlers {
            consumers.spawn(consume_forever(shared.clone(), name, handler, stop_rx.clone()));
        }
        while consumers.join_next().await.is_some() {}
        control.abort();
        tracing::info!(worker = %shared.config.worker_id, "worker stopped");
        Ok(())
    }
}

struct Shared {
    config: WorkerConfig,
    client: WorkerServiceClient<Channel>,
    cancellations: Cancellations,
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
            .expect("cancellations poisoned")
            .entry(run_id.to_string())
            .or_default()
            .push((id, token.clone()));
        (id, token)
    }

    fn forget(&self, run_id: &str, id: u64) {
        let mut map = self.by_run.lock().expect("cancellations poisoned");
        if let Some(list) = map.get_mut(run_id) {
            list.retain(|(i, _)| *i != id);
            if list.is_empty() {
                map.remove(run_id);
            }
        }
    }

    fn cancel_run(&self, run_id: &str) -> usize {
        let map = self.by_run.lock().expect("cancellations poisoned");
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
) -> Outcome {
    let outcome = |r: Result<Result<serde_json::Value, StepError>, tokio::task::JoinError>| match r {
        Ok(Ok(value)) => Outcome::OutputJson(value.to_string()),
        Ok(Err(e)) => match e.suspend {
            Some(s) => Outcome::Suspend(Suspend {
                event: s.event,
                key: s.key,
                timeout_ms: s.timeout.map(|t| t.as_millis() as u64).unwrap_or(0),
            }),
            None => Outcome::Failure(StepFailure {
                message: e.message,
                error_type: e.error_type,
                retryable: e.retryable,
            }),
        },
        Err(join) => Outcome::Failure(StepFailure {
            message: format!("handler panicked: {join}"),
            error_type: "Panic".into(),
            retryable: true,
        }),
    };
    let failure = |message: String, error_type: &str, retryable: bool| {
        Outcome::Failure(StepFailure {
            message,
            error_type: error_type.into(),
            retryable,
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
    let conn = baton_shared::amqp::connect(&cfg.amqp_url, &format!("baton-worker {}", cfg.worker_id)).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(cfg.concurrency, BasicQosOptions::default()).await?;
    topology.declare_base(&ch).await?;
    topology.declare_handler_queue(&ch, handler_name).await?;
    let tag = format!("{}:{handler_name}", cfg.worker_id);
    let mut consumer = ch
        .basic_consume(
            topology.queue(handler_name).as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(handler = handler_name, queue = %topology.queue(handler_name), prefetch = cfg.concurrency, "consuming");
    let mut in_flight = JoinSet::new();
    let result = loop {
        tokio::select! {
            _ = stop.changed() => break Ok(()),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let shared = shared.clone();
                    let handler = handler.clone();
                    in_flight.spawn(async move { handle_delivery(&shared, &handler, delivery).await });
                }
                Some(Err(e)) => break Err(e.into()),
                None => break Err("the consumer was closed by the broker".into()),
            },
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    };
    if result.is_ok() {
        // Stop taking new tasks, then let the ones in flight finish and report before closing.
        let _ = ch
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
        tracing::info!(
            handler = handler_name,
            in_flight = in_flight.len(),
            "stopped consuming; finishing steps in flight"
        );
    }
    while in_flight.join_next().await.is_some() {}
    if result.is_ok() {
        let _ = ch.close(200, "shutdown".into()).await;
        let _ = conn.close(200, "shutdown".into()).await;
    }
    result
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

/// Runs one delivery: decode, start, run the handler, report, ack.
async fn handle_delivery(shared: &Shared, handler: &ErasedHandler, delivery: Delivery) {
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
    };
    let started = (|| {
        let mut c = shared.client.clone();
        let req = start.clone();
        async move { c.start_step(req).await }
    })
    .retry(backoff)
    .when(retriable)
    .notify(|e, d| tracing::warn!(run = %task.run_id, step = %task.step_id, error = %e.message(), "coordinator unreachable at start; retrying in {d:?}"))
    .await;
    let disposition = match started {
        Ok(r) => AttemptDisposition::try_from(r.into_inner().disposition).unwrap_or(AttemptDisposition::Stale),
        Err(e) => {
            tracing::error!(run = %task.run_id, step = %task.step_id, error = %e, "could not start the step; handing the task back");
            let _ = delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await;
            return;
        }
    };
    if disposition != AttemptDisposition::Proceed {
        tracing::info!(run = %task.run_id, step = %task.step_id, attempt = task.attempt, ?disposition, "dropping a task that is no longer current");
        let _ = delivery.ack(BasicAckOptions::default()).await;
        return;
    }

    let parent_outputs = task
        .parent_outputs_json
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap_or(serde_json::Value::Null)))
        .collect();
    let input: serde_json::Value = serde_json::from_str(&task.input_json).unwrap_or(serde_json::Value::Null);
    let timeout = Duration::from_millis(task.timeout_ms.max(1));
    let (registration, cancel) = shared.cancellations.register(&task.run_id);
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
    };
    // The handler runs in its own task so that a panic fails the attempt instead of the worker.
    let run = tokio::spawn((handler)(ctx, input));
    let outcome = supervise(run, timeout, &cancel).await;
    shared.cancellations.forget(&task.run_id, registration);

    let report = ReportResultRequest {
        run_id: task.run_id.clone(),
        step_id: task.step_id.clone(),
        attempt: task.attempt,
        worker_id: cfg.worker_id.clone(),
        outcome: Some(outcome),
        workflow: task.workflow.clone(),
        workflow_version: task.workflow_version,
        attempt_base: task.attempt_base,
    };
    let reported = (|| {
        let mut c = shared.client.clone();
        let req = report.clone();
        async move { c.report_result(req).await }
    })
    .retry(backoff)
    .when(retriable)
    .notify(|e, d| tracing::warn!(run = %task.run_id, step = %task.step_id, error = %e.message(), "coordinator unreachable at report; retrying in {d:?}"))
    .await;
    match reported {
        Ok(r) => {
            if AttemptDisposition::try_from(r.into_inner().disposition) == Ok(AttemptDisposition::Stale) {
                tracing::info!(run = %task.run_id, step = %task.step_id, attempt = task.attempt, "result was stale (attempt no longer current)");
            }
            let _ = delivery.ack(BasicAckOptions::default()).await;
        }
        Err(e) if !retriable(&e) => {
            tracing::error!(run = %task.run_id, step = %task.step_id, error = %e, "coordinator refused the result; dropping the task");
            let _ = delivery.ack(BasicAckOptions::default()).await;
        }
        Err(e) => {
            tracing::error!(run = %task.run_id, step = %task.step_id, error = %e, "could not report the result; handing the task back");
            let _ = delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await;
        }
    }
}
