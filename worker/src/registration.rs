//! The worker's registration with its coordinator: `RegisterWorker` at start and every
//! [`WorkerConfig::heartbeat_interval`] (so `baton worker list` shows it, and shows it lost when
//! it dies), a last call with state STOPPED on a graceful shutdown; and the check that the
//! worker's queue settings are the coordinator's, from that answer or from RabbitMQ refusing a
//! queue declare. A mismatch stops the worker with one line that says what differs, both values
//! and the setting to change (before, a worker with another delivery limit retried its declare
//! for ever on `PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit'`).

use std::{sync::Arc, time::Duration};

use baton_shared::{
    amqp::QueueType,
    proto::{RegisterWorkerRequest, RegisterWorkerResponse, WorkerState},
};
use tokio::sync::watch;

use crate::runtime::{Shared, WorkerConfig};

/// How often registration is retried before the coordinator first answered.
const UNCHECKED_RETRY: Duration = Duration::from_millis(500);

/// How long the last (STOPPED) registration may take on shutdown.
const STOPPED_PATIENCE: Duration = Duration::from_secs(2);

fn word(q: QueueType) -> &'static str {
    match q {
        QueueType::Quorum => "quorum",
        QueueType::Classic => "classic",
    }
}

/// This machine's host name (`HOSTNAME`, else `/etc/hostname`), empty when neither is known.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default()
}

fn request(shared: &Shared, state: WorkerState) -> RegisterWorkerRequest {
    let cfg = &shared.config;
    let in_flight = shared
        .in_flight
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(h, n)| (h.clone(), *n))
        .collect();
    RegisterWorkerRequest {
        worker_id: cfg.worker_id.clone(),
        host: host_name(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        namespace: cfg.namespace.clone(),
        handlers: shared.handler_names.clone(),
        concurrency: u32::from(cfg.concurrency),
        in_flight,
        started_at: baton_shared::time::timestamp(shared.started_at_ms),
        state: state as i32,
        heartbeat_interval_ms: u64::try_from(cfg.heartbeat_interval.as_millis()).unwrap_or(u64::MAX),
    }
}

/// What differs between this worker's settings and the coordinator's answer, as one line; `None`
/// when they match. The delivery limit counts only for quorum queues (classic ones have none).
pub(crate) fn settings_mismatch(cfg: &WorkerConfig, answer: &RegisterWorkerResponse) -> Option<String> {
    let mut diffs = Vec::new();
    if !answer.namespace.is_empty() && answer.namespace != cfg.namespace {
        diffs.push(format!(
            "namespace is {:?} at the coordinator but {:?} here (set BATON_NAMESPACE / --namespace to {:?})",
            answer.namespace, cfg.namespace, answer.namespace
        ));
    }
    let queue_type = word(cfg.queue_type);
    if !answer.queue_type.is_empty() && answer.queue_type != queue_type {
        diffs.push(format!(
            "queue_type is {} at the coordinator but {queue_type} here (set BATON_QUEUE_TYPE={})",
            answer.queue_type, answer.queue_type
        ));
    } else if answer.queue_type == "quorum"
        && cfg.queue_type == QueueType::Quorum
        && answer.delivery_limit != cfg.delivery_limit
    {
        diffs.push(format!(
            "delivery_limit is {} at the coordinator but {} here (set BATON_DELIVERY_LIMIT={})",
            answer.delivery_limit, cfg.delivery_limit, answer.delivery_limit
        ));
    }
    (!diffs.is_empty()).then(|| {
        format!(
            "worker settings do not match the coordinator's at {}: {}; exiting",
            cfg.coordinator,
            diffs.join("; ")
        )
    })
}

/// The line for a queue declare that RabbitMQ refused because the queue exists with other
/// arguments (`PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'q' ...:
/// received ... but current is ...`), naming the setting to change; `None` for any other error.
pub(crate) fn queue_mismatch(
    cfg: &WorkerConfig,
    handler: &str,
    e: &(dyn std::error::Error + Send + Sync + 'static),
) -> Option<String> {
    let lapin::ErrorKind::ProtocolError(p) = e.downcast_ref::<lapin::Error>()?.kind() else {
        return None;
    };
    let text = p.get_message().as_str();
    if p.get_id() != 406 || !text.contains("inequivalent arg") {
        return None;
    }
    let between = |from: &str, to: &str| -> Option<String> {
        let start = text.find(from)? + from.len();
        let rest = &text[start..];
        Some(rest[..rest.find(to).unwrap_or(rest.len())].to_string())
    };
    let arg = between("inequivalent arg '", "'").unwrap_or_default();
    let queue = between("for queue '", "'").unwrap_or_else(|| format!("of handler {handler}"));
    let received = between("received ", " but current is").unwrap_or_else(|| "?".into());
    let current = between("but current is ", "\u{0}").unwrap_or_else(|| "?".into());
    let setting = match arg.as_str() {
        "x-delivery-limit" => format!(
            "delivery_limit (this worker: {}; set BATON_DELIVERY_LIMIT to the coordinator's delivery_limit)",
            cfg.delivery_limit
        ),
        "x-queue-type" => format!(
            "queue_type (this worker: {}; set BATON_QUEUE_TYPE to the coordinator's queue_type)",
            word(cfg.queue_type)
        ),
        _ => "queue settings (set BATON_QUEUE_TYPE and BATON_DELIVERY_LIMIT to the coordinator's queue_type and delivery_limit)"
            .to_string(),
    };
    Some(format!(
        "worker settings do not match the coordinator's queues: RabbitMQ refused queue '{queue}' because its argument '{arg}' is {current} (the coordinator's) but this worker asked for {received}: {setting}; exiting"
    ))
}

/// Registers now and then every heartbeat interval until `stop`; while stopping, as DRAINING. An
/// answer whose settings match lets the consumers declare their queues (`Shared::checked`); one
/// whose settings differ, or a refused token (PERMISSION_DENIED, UNAUTHENTICATED), stops the
/// worker ([`Shared::fail`]); a coordinator without the call
/// (UNIMPLEMENTED) lets the consumers go and ends the loop; other errors are logged once and
/// retried.
pub(crate) async fn heartbeat(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut warned = false;
    loop {
        let stopping = *stop.borrow();
        let state = if stopping {
            WorkerState::Draining
        } else {
            WorkerState::Running
        };
        match shared.client.clone().register_worker(request(&shared, state)).await {
            Ok(r) => {
                warned = false;
                if let Some(line) = settings_mismatch(&shared.config, &r.into_inner()) {
                    shared.fail(line);
                    return;
                }
                shared.checked.send_replace(true);
            }
            Err(e) if e.code() == tonic::Code::Unimplemented => {
                tracing::info!("the coordinator does not know RegisterWorker (an older version); not registering");
                shared.checked.send_replace(true);
                return;
            }
            Err(e) if matches!(e.code(), tonic::Code::PermissionDenied | tonic::Code::Unauthenticated) => {
                // A token the coordinator refuses will not work on the next try either: say so
                // and stop, instead of holding tasks it can never start.
                shared.fail(format!(
                    "the coordinator refused this worker's token ({:?}: {}): give the worker a token with the `worker` role in BATON_TOKEN; exiting",
                    e.code(),
                    e.message()
                ));
                return;
            }
            Err(e) if e.code() == tonic::Code::InvalidArgument => {
                shared.fail(format!(
                    "the coordinator refused this worker's registration: {}",
                    e.message()
                ));
                return;
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e.message(), "could not register with the coordinator; retrying every heartbeat");
                    warned = true;
                }
            }
        }
        // Until the first answer, try again soon: the consumers wait for it.
        let pause = if *shared.checked.borrow() {
            shared.config.heartbeat_interval
        } else {
            shared.config.heartbeat_interval.min(UNCHECKED_RETRY)
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            r = stop.changed(), if !stopping => {
                if r.is_err() {
                    tokio::time::sleep(shared.config.heartbeat_interval).await;
                }
            }
        }
    }
}

/// The last registration after a graceful shutdown (state STOPPED), best effort and brief.
pub(crate) async fn stopped(shared: &Shared) {
    let mut client = shared.client.clone();
    let call = client.register_worker(request(shared, WorkerState::Stopped));
    let _ = tokio::time::timeout(STOPPED_PATIENCE, call).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_queue_declare_names_the_argument_both_values_and_the_variable() {
        let cfg = WorkerConfig {
            delivery_limit: 7,
            ..Default::default()
        };
        let refused = lapin::Error::from(lapin::ErrorKind::ProtocolError(
            lapin::protocol::AMQPError::from_id(
                406,
                "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'ns.step.echo' in vhost '/': \
                 received the value '7' of type 'signedint' but current is the value '5' of type 'signedint'"
                    .into(),
            )
            .unwrap(),
        ));
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(refused);
        let line = queue_mismatch(&cfg, "echo", &*boxed).unwrap();
        assert_eq!(
            line,
            "worker settings do not match the coordinator's queues: RabbitMQ refused queue 'ns.step.echo' because \
             its argument 'x-delivery-limit' is the value '5' of type 'signedint' (the coordinator's) but this \
             worker asked for the value '7' of type 'signedint': delivery_limit (this worker: 7; set \
             BATON_DELIVERY_LIMIT to the coordinator's delivery_limit); exiting"
        );
        let other = lapin::Error::from(lapin::ErrorKind::ProtocolError(
            lapin::protocol::AMQPError::from_id(404, "NOT_FOUND - no queue".into()).unwrap(),
        ));
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(other);
        assert_eq!(queue_mismatch(&cfg, "echo", &*boxed), None);
    }

    #[test]
    fn a_different_delivery_limit_or_queue_type_is_one_line_naming_the_variable() {
        let cfg = WorkerConfig {
            delivery_limit: 7,
            namespace: "ns".into(),
            ..Default::default()
        };
        let answer = RegisterWorkerResponse {
            namespace: "ns".into(),
            queue_type: "quorum".into(),
            delivery_limit: 5,
        };
        let line = settings_mismatch(&cfg, &answer).unwrap();
        assert!(
            line.contains("delivery_limit is 5 at the coordinator but 7 here (set BATON_DELIVERY_LIMIT=5)"),
            "{line}"
        );
        assert!(!line.contains('\n'));
        let classic = RegisterWorkerResponse {
            queue_type: "classic".into(),
            ..answer.clone()
        };
        let line = settings_mismatch(&cfg, &classic).unwrap();
        assert!(
            line.contains("queue_type is classic at the coordinator but quorum here (set BATON_QUEUE_TYPE=classic)"),
            "{line}"
        );
        let same = RegisterWorkerResponse {
            delivery_limit: 7,
            ..answer
        };
        assert_eq!(settings_mismatch(&cfg, &same), None);
    }
}
