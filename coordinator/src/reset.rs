//! Noticing a Redis that lost its data (restarted without persistence, flushed, failed over to an
//! empty replica). The first coordinator to start on a namespace writes a marker key
//! (`{<ns>}:marker`, the Unix ms it was written); every coordinator remembers the marker it saw and
//! the health probe checks it each round. A marker that is gone or changed means Redis lost
//! everything it held, runs and definitions alike: the coordinator logs it as an error, reports
//! NOT_SERVING while it registers the definitions of `definitions_dir` again, writes a new marker,
//! and from then on says in `NOT_FOUND` answers that runs may have been lost with the data.
//!
//! A Redis may also lose only its last writes: a failover to a replica that had not received them,
//! or a restart from an older AOF or snapshot. The marker is still there then, but the server is
//! another: [`Server`] compares the `run_id` of `INFO server` with the one recorded in the
//! namespace (`{<ns>}:redis-server`, swapped with `SET ... GET` so one coordinator acts on a
//! change). On a change, every attempt of the handlers' queued indexes gets an outbox entry, so
//! the dispatch sweeper sends it again if it is still `dispatched`: an attempt whose start and
//! result were lost, and whose task a worker had already acknowledged, would otherwise wait
//! forever. A copy whose original is still queued is refused at its start. The health probe runs
//! the check on a task of its own (docs/operations.md, "A Redis that lost its last writes").

use std::sync::atomic::{AtomicI64, Ordering};

use baton_shared::time::now_ms;

use crate::{engine::Engine, error::Result, health::Health, registry::Registry};

/// When this process last saw Redis lose its data (Unix ms; 0: never).
static RESET_AT: AtomicI64 = AtomicI64::new(0);

/// The marker this coordinator holds to be Redis's (its value), and what a check found.
#[derive(Debug, Default)]
pub struct Marker {
    seen: Option<String>,
}

/// What a marker check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// The marker is the one seen before (or was written now, at the first check).
    Same,
    /// The marker is gone or another: Redis lost its data.
    Lost,
}

impl Marker {
    /// Reads the marker, writing one if there is none (`SET NX`, so concurrent coordinators agree
    /// on one), and compares it with the one seen before.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn check(&mut self, engine: &Engine) -> Result<Check> {
        // SET NX then GET in one round trip: the marker that holds after this call.
        let now = engine.store.data_marker(now_ms()).await?;
        let found = match (&self.seen, &now) {
            (Some(seen), Some(now)) if seen == now => Check::Same,
            (None, _) => Check::Same,
            _ => Check::Lost,
        };
        self.seen = now;
        Ok(found)
    }
}

/// The Redis server ([`crate::store::Store::server_run_id`]) this coordinator last saw.
#[derive(Debug, Default)]
pub struct Server {
    seen: Option<String>,
}

impl Server {
    /// Reads the Redis server's `run_id`; when it is not the one seen before (or at the first
    /// check), swaps it into the namespace's record, and when that record held another server,
    /// has the queued attempts sent again (see the module's doc). Answers how many attempts it
    /// queued for re-sending (0 when nothing changed).
    ///
    /// # Errors
    /// `Redis`: nothing is remembered, and a re-send that failed puts the previous server back in
    /// the record, so the next round (of any coordinator) checks and sends again.
    pub async fn check(&mut self, engine: &Engine) -> Result<u64> {
        let now = engine.store.server_run_id().await?;
        if self.seen.as_deref() == Some(now.as_str()) {
            return Ok(0);
        }
        let before = engine.store.swap_redis_server(&now).await?;
        let resent = match before {
            // Another coordinator saw this server first and did the work; or this namespace
            // never recorded one (a new namespace, or one of an earlier version: its queued
            // attempts are not sent again on upgrade).
            Some(b) if b == now => 0,
            None => 0,
            Some(b) => {
                let sent = match engine.store.resend_queued(now_ms()).await {
                    Ok(sent) => sent,
                    Err(e) => {
                        // The record already names the new server: put the old one back, so that
                        // the next round (of this or another coordinator) sends them again.
                        if let Err(put) = engine.store.swap_redis_server(&b).await {
                            tracing::error!(error = %put, "could not put the previous Redis server back in the record: queued attempts lost with the last writes may wait until their runs are cancelled");
                        }
                        return Err(e);
                    }
                };
                tracing::warn!(
                    before = %b,
                    now = %now,
                    attempts = sent,
                    "the Redis server changed (a failover or a restart), so writes acknowledged just before may be lost: \
                     queued attempts are sent again where still dispatched"
                );
                engine.dispatcher.expedite("the Redis server changed");
                sent
            }
        };
        self.seen = Some(now);
        Ok(resent)
    }
}

/// Handles a Redis that lost its data: logs it, reports NOT_SERVING while the definitions of
/// `definitions_dir` are registered again (and their queues declared), and remembers the time for
/// [`lost_hint`].
///
/// # Errors
/// What registering a definition refuses, or `Redis`: health then stays NOT_SERVING, and the
/// caller tries again at its next round.
pub async fn recover(engine: &Engine, health: &Health) -> Result<()> {
    RESET_AT.store(now_ms(), Ordering::SeqCst);
    health
        .set_redis_lost(Some(
            "Redis lost its data (restarted without persistence?): registering the definitions again".into(),
        ))
        .await;
    let mut restored = 0usize;
    if let Some(dir) = &engine.config.definitions_dir {
        for def in Registry::read_dir(dir)? {
            engine.register_definition(def).await?;
            restored = restored.saturating_add(1);
        }
    }
    match &engine.config.definitions_dir {
        Some(dir) => tracing::error!(
            definitions = restored,
            "Redis lost its data: every run, schedule and workflow it held is gone; registered the {restored} definitions of {} again",
            dir.display()
        ),
        None => tracing::error!(
            "Redis lost its data: every run, schedule and workflow it held is gone, and there is no definitions_dir to register workflows from: register them again"
        ),
    }
    crate::metrics::redis_reset();
    health.set_redis_lost(None).await;
    Ok(())
}

/// When this process last saw Redis lose its data (Unix ms), if it did.
pub fn lost_at() -> Option<i64> {
    Some(RESET_AT.load(Ordering::SeqCst)).filter(|at| *at > 0)
}

/// What a `NOT_FOUND` answer for a run adds in parentheses: that it may have expired and, once
/// Redis has been seen to lose its data, that it may have been lost then.
pub fn lost_hint() -> String {
    match RESET_AT.load(Ordering::SeqCst) {
        0 => "it may have expired".to_string(),
        at => format!(
            "it may have expired, or been lost when Redis lost its data at {}",
            format_ms(at)
        ),
    }
}

/// What a `NOT_FOUND` answer for a workflow adds, once Redis has been seen to lose its data.
pub fn workflow_hint() -> String {
    match RESET_AT.load(Ordering::SeqCst) {
        0 => String::new(),
        at => format!(" (Redis lost its data at {}: register it again)", format_ms(at)),
    }
}

fn format_ms(ms: i64) -> String {
    baton_shared::time::rfc3339(ms)
}
