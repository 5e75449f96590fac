//! Health that tells the truth: `grpc.health.v1` answers SERVING (for the server, `""`, and for
//! every Baton service) only while start-up is done, every supervised loop runs, and the last probe
//! reached Redis and RabbitMQ; otherwise NOT_SERVING. Each change is logged with its reason.
//!
//! The probe ([`probe_loop`]) runs every `health_probe_interval`: a Redis `PING` and the
//! dispatcher's RabbitMQ connection (reconnecting it when it broke), each bounded by a timeout.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use baton_shared::proto;
use tokio::sync::watch;
use tonic::server::NamedService;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{api::Api, engine::Engine, error::CoordinatorError};

/// The services whose health follows the coordinator's: `""` (the whole server) and each Baton
/// service.
pub const SERVICES: &[&str] = &[
    "",
    <proto::workflow_service_server::WorkflowServiceServer<Api> as NamedService>::NAME,
    <proto::run_service_server::RunServiceServer<Api> as NamedService>::NAME,
    <proto::worker_service_server::WorkerServiceServer<Api> as NamedService>::NAME,
    <proto::event_service_server::EventServiceServer<Api> as NamedService>::NAME,
    <proto::human_task_service_server::HumanTaskServiceServer<Api> as NamedService>::NAME,
    <proto::schedule_service_server::ScheduleServiceServer<Api> as NamedService>::NAME,
];

/// What keeps the coordinator from serving, part by part.
#[derive(Debug, Default)]
struct State {
    /// Start-up (definitions, queue declarations) is done.
    ready: bool,
    /// Loops that are down, with why.
    loops_down: BTreeMap<&'static str, String>,
    /// Why the last Redis probe failed.
    redis: Option<String>,
    /// Why the last RabbitMQ probe failed.
    amqp: Option<String>,
    /// Redis lost its data and the coordinator has not finished restoring what it can.
    redis_lost: Option<String>,
    /// The archive outbox's oldest run has waited too long (`archive_max_backlog_age`).
    archive: Option<String>,
    /// What the reporter was last told (`None` before the first report).
    serving: Option<bool>,
}

impl State {
    /// Why the coordinator cannot serve, or `None` when it can.
    fn why_not(&self) -> Option<String> {
        let mut why = Vec::new();
        if !self.ready {
            why.push("starting up".to_string());
        }
        for (name, reason) in &self.loops_down {
            why.push(format!("loop {name} is down ({reason})"));
        }
        if let Some(e) = &self.redis {
            why.push(format!("Redis unreachable ({e})"));
        }
        if let Some(e) = &self.amqp {
            why.push(format!("RabbitMQ unreachable ({e})"));
        }
        if let Some(e) = &self.redis_lost {
            why.push(e.clone());
        }
        if let Some(e) = &self.archive {
            why.push(e.clone());
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

/// The coordinator's health, shared by the supervisors, the probe and start-up.
pub struct Health {
    reporter: HealthReporter,
    state: std::sync::Mutex<State>,
}

impl Health {
    /// Wraps the reporter of the health service; reports NOT_SERVING ("starting up") at once.
    pub async fn new(reporter: HealthReporter) -> Arc<Self> {
        let h = Arc::new(Self {
            reporter,
            state: std::sync::Mutex::new(State::default()),
        });
        h.report().await;
        h
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        // A poisoned lock only means a panic elsewhere while updating plain fields: go on with them.
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
    }

    /// Whether start-up is done (the API answers calls).
    pub fn is_ready(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).ready
    }

    /// Why the coordinator does not serve now, or `None` when it serves.
    pub fn why_not(&self) -> Option<String> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).why_not()
    }

    /// The gate in front of the API (gRPC through [`crate::edge::Edge`], and the HTTP API): while
    /// the last probe could not reach Redis, every call is refused at once instead of waiting for
    /// Redis to answer (up to its 10 s response timeout), so workers and clients move on to
    /// another coordinator. It opens again with the first probe that reaches Redis (within one
    /// `health_probe_interval`).
    ///
    /// # Errors
    /// [`CoordinatorError::Unavailable`] naming the reason (`UNAVAILABLE`, HTTP 503).
    pub fn gate(&self) -> Result<(), CoordinatorError> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &s.redis {
            None => Ok(()),
            Some(why) => Err(CoordinatorError::Unavailable(format!(
                "the coordinator cannot reach Redis ({}); it answers no call until it can: try another coordinator",
                baton_shared::limits::echo(why)
            ))),
        }
    }

    /// Start-up is done.
    pub async fn set_ready(&self) {
        self.update(|s| s.ready = true);
        self.report().await;
    }

    /// Loop `name` stopped (`why`: a panic message or "ended"); its supervisor restarts it.
    pub async fn loop_down(&self, name: &'static str, why: String) {
        self.update(|s| {
            s.loops_down.insert(name, why);
        });
        self.report().await;
    }

    /// Loop `name` runs.
    pub async fn loop_up(&self, name: &'static str) {
        self.update(|s| {
            s.loops_down.remove(name);
        });
        self.report().await;
    }

    /// Records one probe's findings (`None`: reachable; `Some(why)`: not).
    pub async fn probed(&self, redis: Option<String>, amqp: Option<String>) {
        self.update(|s| {
            s.redis = redis;
            s.amqp = amqp;
        });
        self.report().await;
    }

    /// Redis lost its data (`Some(why)`) and what can be restored is not yet; `None` once it is.
    pub async fn set_redis_lost(&self, why: Option<String>) {
        self.update(|s| s.redis_lost = why);
        self.report().await;
    }

    /// The archive's backlog is too old (`Some(why)`, from `archiver::backlog_verdict`) or fine
    /// (`None`).
    pub async fn set_archive_backlog(&self, why: Option<String>) {
        self.update(|s| s.archive = why);
        self.report().await;
    }

    /// Tells the health service the current status if it changed, and logs why.
    async fn report(&self) {
        let change = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let why = s.why_not();
            let serving = why.is_none();
            if s.serving == Some(serving) {
                None
            } else {
                s.serving = Some(serving);
                Some(why)
            }
        };
        let Some(why) = change else { return };
        let status = match &why {
            None => {
                tracing::info!("health: SERVING");
                ServingStatus::Serving
            }
            Some(why) => {
                tracing::warn!(reason = %why, "health: NOT_SERVING");
                ServingStatus::NotServing
            }
        };
        for service in SERVICES {
            self.reporter.set_service_status(*service, status).await;
        }
    }
}

/// Probes Redis and RabbitMQ every `interval` until `shutdown` turns true, and reports what it
/// finds. Each probe is bounded by `interval` (at least 1 s), so an unanswered probe counts as a
/// failure instead of stalling the loop.
pub async fn probe_loop(engine: Arc<Engine>, health: Arc<Health>, mut shutdown: watch::Receiver<bool>) {
    let interval = engine.config.health_probe_interval.max(Duration::from_millis(100));
    let bound = interval.max(Duration::from_secs(1));
    let mut redis_down = false;
    let mut marker = crate::reset::Marker::default();
    // Checked on a task of its own: after a failover its re-send of the queued attempts may take
    // a while (a page per round trip), and the probes go on meanwhile; a round that finds the
    // previous check still running skips it.
    let server = Arc::new(tokio::sync::Mutex::new(crate::reset::Server::default()));
    let mut restoring = false;
    loop {
        let redis = async {
            // With durability replicated, a primary without the replicas commits wait for cannot
            // commit anything: as good as unreachable.
            let ping = async {
                engine.store.ping().await?;
                match engine.store.replicas_missing().await? {
                    Some(why) => Err(crate::error::CoordinatorError::Unavailable(why)),
                    None => Ok(()),
                }
            };
            match tokio::time::timeout(bound, ping).await {
                Ok(Ok(())) => None,
                // What Redis's client said, without the error's "redis: " prefix.
                Ok(Err(crate::error::CoordinatorError::Redis(e))) => Some(e.to_string()),
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer to PING within {bound:?}")),
            }
        };
        let amqp = async {
            match tokio::time::timeout(bound, engine.dispatcher.probe()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no connection within {bound:?}")),
            }
        };
        let (redis, amqp) = tokio::join!(redis, amqp);
        // A Redis that answers again may have committed dispatches whose answers timed out: their
        // publishes never went out, so re-send the outbox's backlog now.
        if redis_down && redis.is_none() {
            engine.dispatcher.expedite("Redis answers again");
        }
        redis_down = redis.is_some();
        health.probed(redis, amqp).await;
        if engine.archive.is_some() && !redis_down {
            match crate::archiver::backlog(&engine, baton_shared::time::now_ms()).await {
                Ok((runs, age)) => {
                    crate::metrics::archive_backlog(runs, age);
                    health
                        .set_archive_backlog(crate::archiver::backlog_verdict(
                            age,
                            engine.config.archive_max_backlog_age,
                        ))
                        .await;
                }
                Err(e) => tracing::warn!(error = %e, "could not read the archive backlog"),
            }
        }
        if !redis_down {
            match marker.check(&engine).await {
                Ok(crate::reset::Check::Lost) => restoring = true,
                Ok(crate::reset::Check::Same) => {}
                Err(e) => tracing::warn!(error = %e, "could not read the Redis marker"),
            }
            if let Ok(mut server) = Arc::clone(&server).try_lock_owned() {
                let engine = Arc::clone(&engine);
                tokio::spawn(async move {
                    if let Err(e) = server.check(&engine).await {
                        tracing::warn!(error = %e, "could not check which Redis server answers");
                    }
                });
            }
            if restoring {
                match crate::reset::recover(&engine, &health).await {
                    Ok(()) => restoring = false,
                    Err(e) => {
                        tracing::error!(error = %e, "Redis lost its data and the definitions could not be registered again; trying again")
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_only_when_ready_with_every_loop_and_both_servers() {
        let mut s = State::default();
        assert_eq!(s.why_not().as_deref(), Some("starting up"));
        s.ready = true;
        assert_eq!(s.why_not(), None);
        s.loops_down.insert("timers", "panicked: boom".into());
        s.redis = Some("connection refused".into());
        let why = s.why_not().unwrap_or_default();
        assert!(why.contains("loop timers is down (panicked: boom)"), "{why}");
        assert!(why.contains("Redis unreachable (connection refused)"), "{why}");
        s.loops_down.clear();
        s.redis = None;
        s.amqp = Some("refused".into());
        assert!(s.why_not().unwrap_or_default().contains("RabbitMQ"));
    }
}
