//! `baton worker list`, `baton queue list`, and the warning `baton workflow apply` prints for a
//! handler no live worker serves: what `OperationsService` answers, as tables or JSON.

use std::collections::BTreeSet;

use baton_shared::proto::{ListQueuesRequest, ListWorkersRequest, QueueInfo, WorkerInfo, WorkerState, Workflow};
use prost_types::Timestamp;
use serde::Serialize;

use crate::{
    client::Coordinator,
    render::{human_duration, table, table_time},
};

/// Unix ms of a timestamp, `None` when unset.
fn ts_ms(ts: Option<&Timestamp>) -> Option<i64> {
    ts.map(baton_shared::time::millis)
}

/// `3s ago`, or `-` when unset.
fn ago(ts: Option<&Timestamp>, now_ms: i64) -> String {
    ts_ms(ts).map_or_else(|| "-".to_owned(), |ms| format!("{} ago", human_duration(now_ms - ms)))
}

/// A worker's state as a word: `running`, `draining`, `stopped`, or `lost` (no heartbeat for 3
/// of its intervals).
pub fn worker_state(w: &WorkerInfo) -> &'static str {
    if w.lost {
        return "lost";
    }
    match WorkerState::try_from(w.state) {
        Ok(WorkerState::Running) => "running",
        Ok(WorkerState::Draining) => "draining",
        Ok(WorkerState::Stopped) => "stopped",
        _ => "unknown",
    }
}

/// Whether a worker takes tasks now (running or draining, not lost).
pub fn is_live(w: &WorkerInfo) -> bool {
    !w.lost && matches!(worker_state(w), "running" | "draining")
}

/// `baton worker list` as a table: one row per worker, by id.
pub fn worker_list_text(workers: &[WorkerInfo], now_ms: i64) -> String {
    if workers.is_empty() {
        return "no workers registered\n".to_owned();
    }
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            vec![
                w.worker_id.clone(),
                worker_state(w).to_owned(),
                w.handlers.join(","),
                format!("{}/{}", w.in_flight, w.concurrency),
                if w.host.is_empty() {
                    "-".to_owned()
                } else {
                    w.host.clone()
                },
                w.pid.to_string(),
                if w.version.is_empty() {
                    "-".to_owned()
                } else {
                    w.version.clone()
                },
                table_time(w.started_at.as_ref()),
                ago(w.last_seen.as_ref(), now_ms),
            ]
        })
        .collect();
    table(
        &[
            "WORKER",
            "STATE",
            "HANDLERS",
            "IN FLIGHT",
            "HOST",
            "PID",
            "VERSION",
            "STARTED",
            "LAST SEEN",
        ],
        &rows,
    )
}

/// One worker in `baton worker list -o json`.
#[derive(Debug, Serialize)]
pub struct WorkerJson {
    /// The worker's id.
    pub id: String,
    /// `running`, `draining`, `stopped` or `lost`.
    pub state: &'static str,
    /// Handlers it serves.
    pub handlers: Vec<String>,
    /// Steps it runs at once per handler.
    pub concurrency: u32,
    /// Tasks it holds now, as of its last heartbeat.
    pub in_flight: u32,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Software version.
    pub version: String,
    /// Its namespace.
    pub namespace: String,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// RFC 3339.
    pub last_seen: Option<String>,
    /// How often it heartbeats, in ms.
    pub heartbeat_interval_ms: u64,
}

/// `baton worker list -o json`.
pub fn worker_json(w: &WorkerInfo) -> WorkerJson {
    WorkerJson {
        id: w.worker_id.clone(),
        state: worker_state(w),
        handlers: w.handlers.clone(),
        concurrency: w.concurrency,
        in_flight: w.in_flight,
        host: w.host.clone(),
        pid: w.pid,
        version: w.version.clone(),
        namespace: w.namespace.clone(),
        started_at: ts_ms(w.started_at.as_ref()).map(crate::render::rfc3339_millis),
        last_seen: ts_ms(w.last_seen.as_ref()).map(crate::render::rfc3339_millis),
        heartbeat_interval_ms: w.heartbeat_interval_ms,
    }
}

/// `baton queue list` as a table: one row per handler. READY and CONSUMERS are RabbitMQ's; UNACKED
/// (tasks live workers hold), WAITING (dispatched, not started) and OLDEST WAITING are the
/// coordinator's.
pub fn queue_list_text(queues: &[QueueInfo], now_ms: i64) -> String {
    if queues.is_empty() {
        return "no queues (no workflow registered and no live worker)\n".to_owned();
    }
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|q| {
            vec![
                q.handler.clone(),
                if q.exists {
                    q.queue.clone()
                } else {
                    format!("{} (missing)", q.queue)
                },
                q.ready.to_string(),
                q.unacknowledged.to_string(),
                q.consumers.to_string(),
                q.live_workers.to_string(),
                q.waiting.to_string(),
                ago(q.oldest_waiting_since.as_ref(), now_ms),
            ]
        })
        .collect();
    table(
        &[
            "HANDLER",
            "QUEUE",
            "READY",
            "UNACKED",
            "CONSUMERS",
            "WORKERS",
            "WAITING",
            "OLDEST WAITING",
        ],
        &rows,
    )
}

/// One queue in `baton queue list -o json`.
#[derive(Debug, Serialize)]
pub struct QueueJson {
    /// The handler.
    pub handler: String,
    /// The RabbitMQ queue.
    pub queue: String,
    /// Whether the queue exists.
    pub exists: bool,
    /// Messages ready (RabbitMQ).
    pub ready: u64,
    /// Tasks live workers hold (their heartbeats).
    pub unacknowledged: u64,
    /// Consumers (RabbitMQ).
    pub consumers: u32,
    /// Live workers registered for the handler.
    pub live_workers: u32,
    /// Attempts dispatched and not started (the coordinator's count).
    pub waiting: u64,
    /// RFC 3339: when the oldest of them was dispatched.
    pub oldest_waiting_since: Option<String>,
}

/// `baton queue list -o json`.
pub fn queue_json(q: &QueueInfo) -> QueueJson {
    QueueJson {
        handler: q.handler.clone(),
        queue: q.queue.clone(),
        exists: q.exists,
        ready: q.ready,
        unacknowledged: q.unacknowledged,
        consumers: q.consumers,
        live_workers: q.live_workers,
        waiting: q.waiting,
        oldest_waiting_since: ts_ms(q.oldest_waiting_since.as_ref()).map(crate::render::rfc3339_millis),
    }
}

/// The registered workers.
///
/// # Errors
/// The gRPC error.
pub async fn list_workers(coordinator: &Coordinator) -> anyhow::Result<Vec<WorkerInfo>> {
    Ok(coordinator
        .operations()
        .list_workers(ListWorkersRequest {})
        .await?
        .into_inner()
        .workers)
}

/// The handler queues.
///
/// # Errors
/// The gRPC error.
pub async fn list_queues(coordinator: &Coordinator) -> anyhow::Result<Vec<QueueInfo>> {
    Ok(coordinator
        .operations()
        .list_queues(ListQueuesRequest {})
        .await?
        .into_inner()
        .queues)
}

/// One warning line per handler of `workflow` that no live worker serves, naming its steps:
/// ``warning: no live worker serves handler `x` (step a, b): its steps will wait``.
pub fn unserved_handler_warnings(workflow: &Workflow, workers: &[WorkerInfo]) -> Vec<String> {
    let served: BTreeSet<&str> = workers
        .iter()
        .filter(|w| is_live(w))
        .flat_map(|w| w.handlers.iter().map(String::as_str))
        .collect();
    let mut handlers: Vec<(&str, Vec<&str>)> = Vec::new();
    for s in &workflow.steps {
        if s.handler.is_empty() || served.contains(s.handler.as_str()) {
            continue;
        }
        match handlers.iter_mut().find(|(h, _)| *h == s.handler) {
            Some((_, steps)) => steps.push(&s.id),
            None => handlers.push((&s.handler, vec![&s.id])),
        }
    }
    handlers
        .into_iter()
        .map(|(h, steps)| {
            format!(
                "warning: no live worker serves handler `{h}` (step {}): its tasks will wait in the queue until one starts",
                steps.join(", ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_shared::proto::StepDefinition;

    fn worker(id: &str, handlers: &[&str], lost: bool) -> WorkerInfo {
        WorkerInfo {
            worker_id: id.into(),
            handlers: handlers.iter().map(|h| (*h).to_owned()).collect(),
            state: WorkerState::Running as i32,
            lost,
            concurrency: 4,
            in_flight: 1,
            pid: 42,
            host: "box".into(),
            version: "0.1.0".into(),
            started_at: baton_shared::time::timestamp(1_000),
            last_seen: baton_shared::time::timestamp(9_000),
            ..Default::default()
        }
    }

    #[test]
    fn the_worker_table_says_lost_and_how_long_ago_it_was_seen() {
        let text = worker_list_text(&[worker("w1", &["echo"], false), worker("w2", &["slow"], true)], 12_000);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("WORKER  STATE"), "{text}");
        assert!(
            lines[1].starts_with("w1      running  echo") && lines[1].ends_with("3s ago"),
            "{text}"
        );
        assert!(lines[2].starts_with("w2      lost     slow"), "{text}");
        assert_eq!(worker_list_text(&[], 0), "no workers registered\n");
    }

    #[test]
    fn apply_warns_once_per_handler_no_live_worker_serves() {
        let step = |id: &str, handler: &str| StepDefinition {
            id: id.into(),
            handler: handler.into(),
            ..Default::default()
        };
        let wf = Workflow {
            steps: vec![
                step("a", "echo"),
                step("b", "nobody"),
                step("c", "nobody"),
                step("d", ""),
            ],
            ..Default::default()
        };
        let warnings =
            unserved_handler_warnings(&wf, &[worker("w1", &["echo"], false), worker("w2", &["nobody"], true)]);
        assert_eq!(
            warnings,
            vec![
                "warning: no live worker serves handler `nobody` (step b, c): its tasks will wait in the queue until one starts"
            ]
        );
    }
}
