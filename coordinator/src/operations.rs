//! Workers and queues as an operator sees them: the worker registry (`RegisterWorker` heartbeats
//! kept in Redis with a TTL), per-handler queue figures (`ListQueues`), the index of attempts that
//! wait in a queue for a worker, and the `waiting_for` text GetRun shows on a dispatched step.
//!
//! Sources of each figure: RabbitMQ answers a passive `queue.declare` with a queue's ready
//! messages and consumers, and nothing else (AMQP has no unacknowledged count and no message
//! ages); the unacknowledged count is the sum of the live workers' in-flight counts from their
//! heartbeats, and the oldest waiting task comes from the coordinator's own index of dispatched,
//! not yet started attempts ([`Keys::queued`](baton_shared::keys::Keys::queued)).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use baton_shared::{
    amqp::QueueType,
    limits::{
        MAX_WORKER_FIELD_BYTES, MAX_WORKER_HANDLERS, MAX_WORKER_HEARTBEAT_INTERVAL, MAX_WORKER_IN_FLIGHT,
        MIN_WORKER_HEARTBEAT_INTERVAL, echo,
    },
    proto::{QueueInfo, RegisterWorkerRequest, RegisterWorkerResponse, Run, StepStatus, WorkerInfo, WorkerState},
    time::{duration_ms, now_ms, timestamp},
};
use lapin::{Channel, Connection};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::{
    engine::Engine,
    error::{CoordinatorError, Result},
};

/// The heartbeat interval of a worker that announces none (`heartbeat_interval_ms = 0`): 5 s.
pub const DEFAULT_WORKER_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// A worker counts as lost after this many of its heartbeat intervals without a call.
pub const LOST_AFTER_INTERVALS: u32 = 3;

/// How long a queue's figures from RabbitMQ are reused (GetRun asks once per distinct handler
/// at most this often, whatever the number of callers).
const SAMPLE_TTL: Duration = Duration::from_secs(1);

/// How long one passive declare may take.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(3);

/// Most workers `ListWorkers` reads (the newest by last heartbeat).
const MAX_LISTED_WORKERS: usize = 10_000;

/// Most distinct handlers a GetRun explains (one passive declare each, cached).
const MAX_EXPLAINED_HANDLERS: usize = 32;

/// One worker's registration as stored in Redis (JSON). Times in Unix ms.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WorkerRecord {
    worker_id: String,
    host: String,
    pid: u32,
    version: String,
    namespace: String,
    handlers: Vec<String>,
    concurrency: u32,
    in_flight: BTreeMap<String, u32>,
    started_at_ms: i64,
    last_seen_ms: i64,
    state: i32,
    heartbeat_interval_ms: u64,
}

impl WorkerRecord {
    /// Whether it missed [`LOST_AFTER_INTERVALS`] heartbeats (a stopped worker is not lost).
    fn lost(&self, now: i64) -> bool {
        let interval = i64::try_from(self.heartbeat_interval_ms).unwrap_or(i64::MAX);
        self.state != WorkerState::Stopped as i32
            && now.saturating_sub(self.last_seen_ms) > interval.saturating_mul(i64::from(LOST_AFTER_INTERVALS))
    }

    /// Live: heartbeating and not stopped.
    fn live(&self, now: i64) -> bool {
        self.state != WorkerState::Stopped as i32 && !self.lost(now)
    }
}

/// A handler queue's figures as RabbitMQ answers a passive declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSample {
    /// Messages ready for delivery.
    pub ready: u64,
    /// Consumers of the queue.
    pub consumers: u32,
}

/// The worker registry and queue inspection, over an engine; one per coordinator. Holds its own
/// AMQP connection for passive declares (a declare of a missing queue closes its channel, which
/// must not be the publishing one).
pub struct Operations {
    engine: Arc<Engine>,
    link: Mutex<Option<(Connection, Channel)>>,
    samples: std::sync::Mutex<HashMap<String, (Instant, Option<QueueSample>)>>,
}

fn invalid(field: &str, why: String) -> CoordinatorError {
    CoordinatorError::InvalidArgument(format!("{field}: {why}"))
}

/// `INVALID_ARGUMENT` naming `field` unless `value` is at most [`MAX_WORKER_FIELD_BYTES`] bytes
/// without control characters (and not empty when `required`).
fn check_text(field: &str, value: &str, required: bool) -> Result<()> {
    if required && value.trim().is_empty() {
        return Err(invalid(field, "must not be empty".into()));
    }
    if value.len() > MAX_WORKER_FIELD_BYTES {
        return Err(invalid(
            field,
            format!(
                "must be at most {MAX_WORKER_FIELD_BYTES} bytes (got {} bytes: {})",
                value.len(),
                echo(value)
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, format!("{} has control characters", echo(value))));
    }
    Ok(())
}

/// Checks a `RegisterWorker` call against its bounds.
///
/// # Errors
/// `InvalidArgument` naming the first field out of bounds: `worker_id` (1 to 200 bytes),
/// `host`, `version`, `namespace` (at most 200 bytes), `handlers` (at most 256, each a handler
/// name: `[A-Za-z0-9_.-]`, 1 to 200 bytes), `in_flight` (handlers of this worker only, at most
/// 65,535 each), `heartbeat_interval_ms` (0, or 100 ms to 5 minutes), `state`.
pub fn check_registration(r: &RegisterWorkerRequest) -> Result<()> {
    check_text("worker_id", &r.worker_id, true)?;
    check_text("host", &r.host, false)?;
    check_text("version", &r.version, false)?;
    check_text("namespace", &r.namespace, false)?;
    if r.handlers.len() > MAX_WORKER_HANDLERS {
        return Err(invalid(
            "handlers",
            format!("at most {MAX_WORKER_HANDLERS} handlers (got {})", r.handlers.len()),
        ));
    }
    for (i, h) in r.handlers.iter().enumerate() {
        let field = format!("handlers[{i}]");
        check_text(&field, h, true)?;
        if !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(invalid(
                &field,
                format!("{} is not a handler name ([A-Za-z0-9_.-])", echo(h)),
            ));
        }
    }
    if r.in_flight.len() > r.handlers.len() {
        return Err(invalid("in_flight", "names more handlers than `handlers` lists".into()));
    }
    for (h, n) in &r.in_flight {
        if !r.handlers.contains(h) {
            return Err(invalid(
                &format!("in_flight[{}]", echo(h)),
                "not one of `handlers`".into(),
            ));
        }
        if *n > MAX_WORKER_IN_FLIGHT {
            return Err(invalid(
                &format!("in_flight[{h}]"),
                format!("must be at most {MAX_WORKER_IN_FLIGHT} (got {n})"),
            ));
        }
    }
    if r.heartbeat_interval_ms != 0 {
        let d = Duration::from_millis(r.heartbeat_interval_ms);
        if !(MIN_WORKER_HEARTBEAT_INTERVAL..=MAX_WORKER_HEARTBEAT_INTERVAL).contains(&d) {
            return Err(invalid(
                "heartbeat_interval_ms",
                format!(
                    "must be 0 (the default) or from {} to {} ms (got {})",
                    MIN_WORKER_HEARTBEAT_INTERVAL.as_millis(),
                    MAX_WORKER_HEARTBEAT_INTERVAL.as_millis(),
                    r.heartbeat_interval_ms
                ),
            ));
        }
    }
    if WorkerState::try_from(r.state).is_err() {
        return Err(invalid("state", format!("{} is not a WorkerState", r.state)));
    }
    Ok(())
}

/// Records attempts just dispatched (before their publish) whose commit did not index them itself:
/// each joins its handler's queued index, and one with a schedule-to-start timeout gets its timer.
/// An ordinary step's dispatch is indexed by the script that commits it (`complete_step.lua`,
/// `create_run.lua`, see `store::QueuedPlan`), so this is for the others (fan-out elements,
/// retries, re-sent and unparked dispatches). Entries are
/// `(handler, run, step, attempt, schedule_to_start)`. Both adds are `NX`: a re-sent dispatch keeps
/// its first time and deadline. Best effort: a failure is logged (the step still runs; only the
/// figures and the timeout are missed).
pub async fn note_dispatched(engine: &Engine, queued: &[(String, String, String, u32, Option<Duration>)], now: i64) {
    if queued.is_empty() {
        return;
    }
    // Entries whose task left the queue unseen (dead-lettered, purged) go after the retention.
    let cutoff = now.saturating_sub(duration_ms(engine.config.retention));
    if let Err(e) = engine.store.index_queued(queued, now, cutoff).await {
        tracing::warn!(error = %e, "could not index dispatched attempts");
    }
}

/// Takes an attempt that its commit indexed as queued out of the index again, with its
/// schedule-to-start timer: it did not go to a worker after all (skipped or failed when launched).
/// A started attempt leaves the index in `start_step.lua`. Best effort, as [`note_dispatched`].
pub async fn unindex_queued(engine: &Engine, handler: &str, run: &str, step: &str, attempt: u32) {
    if let Err(e) = engine.store.unindex_queued(handler, run, step, attempt).await {
        tracing::warn!(error = %e, "could not unindex an attempt that did not go to a worker");
    }
}

impl Operations {
    /// Operations over `engine` (connects to RabbitMQ on first use).
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            link: Mutex::new(None),
            samples: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Upserts a worker's registration (it expires after the coordinator's `worker_retention`)
    /// and answers the coordinator's queue settings.
    ///
    /// # Errors
    /// `InvalidArgument` as [`check_registration`]; `Redis`.
    pub async fn register_worker(&self, r: RegisterWorkerRequest) -> Result<RegisterWorkerResponse> {
        check_registration(&r)?;
        let config = &self.engine.config;
        let now = now_ms();
        let interval = if r.heartbeat_interval_ms == 0 {
            DEFAULT_WORKER_HEARTBEAT_INTERVAL
        } else {
            Duration::from_millis(r.heartbeat_interval_ms)
        };
        let started_at_ms = r
            .started_at
            .map(|t| {
                t.seconds
                    .saturating_mul(1000)
                    .saturating_add(i64::from(t.nanos / 1_000_000))
            })
            .unwrap_or(now);
        let record = WorkerRecord {
            worker_id: r.worker_id.clone(),
            host: r.host,
            pid: r.pid,
            version: r.version,
            namespace: r.namespace,
            handlers: r.handlers,
            concurrency: r.concurrency,
            in_flight: r.in_flight.into_iter().collect(),
            started_at_ms,
            last_seen_ms: now,
            state: r.state,
            heartbeat_interval_ms: duration_ms(interval).max(0) as u64,
        };
        let json = serde_json::to_string(&record).map_err(|e| CoordinatorError::Internal(e.to_string()))?;
        let retention = config
            .worker_retention
            .max(interval.saturating_mul(LOST_AFTER_INTERVALS + 1));
        let retention_ms = duration_ms(retention).max(1);
        // Its liveness, which holds the attempts it started (StartStep answers another worker's
        // copy DUPLICATE): as long as ListWorkers shows it live; gone at once when it stopped.
        let alive_for =
            (record.state != WorkerState::Stopped as i32).then(|| interval.saturating_mul(LOST_AFTER_INTERVALS));
        self.engine
            .store
            .put_worker(&record.worker_id, &json, alive_for, retention_ms, now)
            .await?;
        Ok(RegisterWorkerResponse {
            namespace: config.namespace.clone(),
            queue_type: match config.queue_type {
                QueueType::Quorum => "quorum".into(),
                QueueType::Classic => "classic".into(),
            },
            delivery_limit: config.delivery_limit,
        })
    }

    /// The registrations kept (live, lost and stopped workers), by worker id. A record that does
    /// not parse is skipped and logged.
    async fn records(&self) -> Result<Vec<WorkerRecord>> {
        let found = self.engine.store.worker_records(MAX_LISTED_WORKERS).await?;
        let mut out = Vec::with_capacity(found.len());
        for (id, v) in found {
            match serde_json::from_str::<WorkerRecord>(&v) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(worker = %echo(&id), error = %e, "skipping an unreadable worker record"),
            }
        }
        out.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        Ok(out)
    }

    /// `ListWorkers`: every kept registration, by worker id.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn list_workers(&self) -> Result<Vec<WorkerInfo>> {
        let now = now_ms();
        Ok(self
            .records()
            .await?
            .into_iter()
            .map(|r| WorkerInfo {
                lost: r.lost(now),
                in_flight: r.in_flight.values().fold(0u32, |a, n| a.saturating_add(*n)),
                worker_id: r.worker_id,
                host: r.host,
                pid: r.pid,
                version: r.version,
                namespace: r.namespace,
                handlers: r.handlers,
                concurrency: r.concurrency,
                started_at: timestamp(r.started_at_ms),
                last_seen: timestamp(r.last_seen_ms),
                state: r.state,
                heartbeat_interval_ms: r.heartbeat_interval_ms,
            })
            .collect())
    }

    /// `ListQueues`: one entry per handler of a registered workflow (any version) or of a live
    /// worker, by handler.
    ///
    /// # Errors
    /// `Redis`; `Amqp` when RabbitMQ cannot be reached.
    pub async fn list_queues(&self) -> Result<Vec<QueueInfo>> {
        let now = now_ms();
        let records = self.records().await?;
        let mut handlers: BTreeSet<String> = BTreeSet::new();
        for name in self.engine.registry.names().await? {
            handlers.extend(self.engine.registry.handlers(&name).await?);
        }
        let live: Vec<&WorkerRecord> = records.iter().filter(|r| r.live(now)).collect();
        for r in &live {
            handlers.extend(r.handlers.iter().cloned());
        }
        let topology = self.engine.config.topology();
        let mut out = Vec::with_capacity(handlers.len());
        for h in handlers {
            let sample = self.sample(&h, false).await?;
            let figures = self.engine.store.queue_figures(&h).await?;
            out.push(QueueInfo {
                queue: topology.queue(&h),
                ready: sample.map(|s| s.ready).unwrap_or(0),
                consumers: sample.map(|s| s.consumers).unwrap_or(0),
                exists: sample.is_some(),
                unacknowledged: live
                    .iter()
                    .map(|r| u64::from(r.in_flight.get(&h).copied().unwrap_or(0)))
                    .sum(),
                oldest_waiting_since: figures.oldest_since.and_then(timestamp),
                waiting: figures.waiting,
                live_workers: live
                    .iter()
                    .filter(|r| r.handlers.contains(&h))
                    .count()
                    .try_into()
                    .unwrap_or(u32::MAX),
                handler: h,
            });
        }
        Ok(out)
    }

    /// Fills `waiting_for` on the dispatched steps of `run`: "no worker serves handler `x`
    /// (0 consumers)" when the handler's queue has no consumer, else "N tasks ahead in queue
    /// `q`" (attempts of the handler dispatched before this one and not yet started, by the
    /// coordinator's index; RabbitMQ's ready count when the attempt is not indexed). One passive
    /// declare per distinct handler at most, reused for a second (`SAMPLE_TTL`); at most
    /// `MAX_EXPLAINED_HANDLERS` (32) handlers. Failures leave the field empty (GetRun still answers).
    pub async fn explain_waits(&self, run: &mut Run) {
        let mut explained: HashMap<String, Option<QueueSample>> = HashMap::new();
        let topology = self.engine.config.topology();
        for step in &mut run.steps {
            if step.status != StepStatus::Dispatched as i32 || step.handler.is_empty() || step.attempt == 0 {
                continue;
            }
            if !explained.contains_key(&step.handler) {
                if explained.len() >= MAX_EXPLAINED_HANDLERS {
                    continue;
                }
                let s = match self.sample(&step.handler, true).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(handler = %step.handler, error = %e, "could not sample a queue");
                        continue;
                    }
                };
                explained.insert(step.handler.clone(), s);
            }
            let sample = explained.get(&step.handler).copied().flatten();
            let queue = topology.queue(&step.handler);
            let consumers = sample.map(|s| s.consumers).unwrap_or(0);
            if consumers == 0 {
                step.waiting_for = format!("no worker serves handler `{}` (0 consumers)", step.handler);
                continue;
            }
            let rank = self
                .engine
                .store
                .queued_rank(&step.handler, &run.id, &step.id, step.attempt)
                .await
                .unwrap_or(None);
            let ahead = match rank {
                Some(n) => n,
                None => sample.map(|s| s.ready).unwrap_or(0),
            };
            let noun = if ahead == 1 { "task" } else { "tasks" };
            step.waiting_for = format!("{ahead} {noun} ahead in queue `{queue}` ({consumers} consumers)");
        }
    }

    /// A handler queue's figures: `None` when the queue does not exist. With `cached`, figures
    /// younger than `SAMPLE_TTL` (1 s) are reused.
    ///
    /// # Errors
    /// `Amqp` when RabbitMQ cannot be reached or the declare times out.
    pub async fn sample(&self, handler: &str, cached: bool) -> Result<Option<QueueSample>> {
        if cached
            && let Some((at, s)) = self
                .samples
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(handler)
            && at.elapsed() < SAMPLE_TTL
        {
            return Ok(*s);
        }
        let queue = self.engine.config.topology().queue(handler);
        let s = match tokio::time::timeout(SAMPLE_TIMEOUT, self.declare_passive(&queue)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(CoordinatorError::Publish(format!(
                    "RabbitMQ did not answer a passive declare of {queue} within {SAMPLE_TIMEOUT:?}"
                )));
            }
        };
        let mut samples = self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if samples.len() > 10_000 {
            samples.clear();
        }
        samples.insert(handler.to_string(), (Instant::now(), s));
        Ok(s)
    }

    async fn declare_passive(&self, queue: &str) -> Result<Option<QueueSample>> {
        let ch = self.channel().await?;
        match crate::queues::sample_queue(&ch, queue).await {
            Ok(q) => Ok(Some(QueueSample {
                ready: u64::from(q.ready),
                consumers: q.consumers,
            })),
            Err(e) if matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if p.get_id() == 404) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A channel for passive declares: the connection is made again when it broke, the channel
    /// when the broker closed it (a declare of a missing queue does).
    async fn channel(&self) -> Result<Channel> {
        let mut link = self.link.lock().await;
        if let Some((conn, ch)) = link.as_mut()
            && conn.status().connected()
        {
            if !ch.status().connected() {
                *ch = conn.create_channel().await?;
            }
            return Ok(ch.clone());
        }
        if let Some((conn, _)) = link.take() {
            let _ = conn.close(0, "reconnecting".into()).await;
        }
        let conn = baton_shared::amqp::connect(&self.engine.config.amqp_url, "baton-coordinator operations").await?;
        let ch = conn.create_channel().await?;
        *link = Some((conn, ch.clone()));
        Ok(ch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RegisterWorkerRequest {
        RegisterWorkerRequest {
            worker_id: "w1".into(),
            handlers: vec!["echo".into()],
            state: WorkerState::Running as i32,
            ..Default::default()
        }
    }

    #[test]
    fn a_registration_out_of_bounds_names_its_field() {
        let cases: Vec<(RegisterWorkerRequest, &str)> = vec![
            (
                RegisterWorkerRequest {
                    worker_id: String::new(),
                    ..request()
                },
                "worker_id: must not be empty",
            ),
            (
                RegisterWorkerRequest {
                    host: "h".repeat(201),
                    ..request()
                },
                "host: must be at most 200 bytes",
            ),
            (
                RegisterWorkerRequest {
                    handlers: vec!["x".into(); 257],
                    ..request()
                },
                "handlers: at most 256 handlers",
            ),
            (
                RegisterWorkerRequest {
                    handlers: vec!["a b".into()],
                    ..request()
                },
                "handlers[0]: \"a b\" is not a handler name",
            ),
            (
                RegisterWorkerRequest {
                    in_flight: [("other".to_string(), 1)].into_iter().collect(),
                    ..request()
                },
                "in_flight[\"other\"]: not one of `handlers`",
            ),
            (
                RegisterWorkerRequest {
                    heartbeat_interval_ms: 10,
                    ..request()
                },
                "heartbeat_interval_ms: must be 0 (the default) or from 100 to 300000 ms",
            ),
            (
                RegisterWorkerRequest { state: 42, ..request() },
                "state: 42 is not a WorkerState",
            ),
            (
                RegisterWorkerRequest {
                    version: "1\n2".into(),
                    ..request()
                },
                "version: \"1\\n2\" has control characters",
            ),
        ];
        for (req, want) in cases {
            let got = check_registration(&req).unwrap_err().to_string();
            assert!(got.starts_with(want), "{got:?} does not start with {want:?}");
        }
        check_registration(&request()).unwrap();
    }

    #[test]
    fn a_worker_is_lost_after_three_missed_heartbeats_unless_it_stopped() {
        let mut r = WorkerRecord {
            worker_id: "w".into(),
            host: String::new(),
            pid: 1,
            version: String::new(),
            namespace: String::new(),
            handlers: Vec::new(),
            concurrency: 1,
            in_flight: BTreeMap::new(),
            started_at_ms: 0,
            last_seen_ms: 10_000,
            state: WorkerState::Running as i32,
            heartbeat_interval_ms: 1_000,
        };
        assert!(r.live(13_000) && !r.lost(13_000));
        assert!(r.lost(13_001) && !r.live(13_001));
        r.state = WorkerState::Stopped as i32;
        assert!(!r.lost(i64::MAX) && !r.live(0));
        r.state = WorkerState::Running as i32;
        r.heartbeat_interval_ms = u64::MAX;
        assert!(!r.lost(i64::MAX));
    }
}
