//! Supervision of the background loops (timers, the dispatch sweeper, schedules, index trimming):
//! one bad item cannot stop a loop, and a loop that stops is restarted.
//!
//! **Items.** Each item a loop claims (a timer, an outbox entry, a due schedule) is handled inside
//! [`Supervisor::item`], which catches a panic (`catch_unwind`) and classifies an error:
//! - a transient error (Redis, RabbitMQ, an unconfirmed publish) is logged and the item comes due
//!   again after its lease, as before;
//! - a panic, or an error that trying again cannot mend (`Internal`, `InvalidArgument`,
//!   `NotFound`), **parks** the item: it is removed from its sorted set (so it cannot come due into
//!   the same panic again, also after a restart), recorded in the hash `{<ns>}:parked-items` (field
//!   `<loop>|<member>`, value JSON `{loop, member, run_id, reason, parked_at}`), and, when it belongs
//!   to a run, listed in the run's `parked_items` (GetRun) and appended to its history as a `parked`
//!   event;
//! - `FailedPrecondition` and `AlreadyExists` (a race with another change of the run) come due again.
//!
//! **Getting a parked item going again.** A parked item stays visible (GetRun, the run's history,
//! `{<ns>}:parked-items`) and never fires by itself; cancelling its run works as usual. An operator
//! who fixed the cause re-arms it by putting the member back in its set and removing the record:
//! `ZADD {<ns>}:<set> <unix-ms> <member>` (set `timers`, `outbox` or `schedule-due`) and
//! `HDEL {<ns>}:parked-items <loop>|<member>`.
//!
//! **Loops.** [`spawn`] runs a loop as a task of its own; when the task ends (a panic outside any
//! item, or an unexpected return) before shutdown, the supervisor logs it, reports the loop down to
//! [`Health`] (NOT_SERVING), and restarts it after a backoff (0.5 s doubling to 30 s, back to 0.5 s
//! after a minute of running).

use std::{any::Any, future::Future, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use baton_shared::time::{now_ms, rfc3339};
use futures::FutureExt;
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    engine::Engine,
    error::{CoordinatorError, Result},
    health::Health,
    store::{TimerKind, parse_outbox_member},
};

/// Most bytes of a reason kept with a parked item.
const MAX_REASON_BYTES: usize = 1_000;

/// The sorted sets whose items the loops handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemSet {
    /// `{<ns>}:timers`: retries, timeouts, sleeps, event timers, wakes, emitters.
    Timers,
    /// `{<ns>}:outbox`: dispatches committed but not confirmed (the re-send sweeper).
    Outbox,
    /// `{<ns>}:schedule-due`: schedules whose next tick is due.
    Schedules,
    /// `{<ns>}:effects`: cross-run effects committed but not applied (the effects sweeper).
    Effects,
    /// `{<ns>}:archive-outbox`: finished runs waiting to be archived (the archiver), member the run id.
    Archive,
}

impl ItemSet {
    /// The loop's name in logs, health reasons and parked records.
    pub fn word(self) -> &'static str {
        match self {
            ItemSet::Timers => "timers",
            ItemSet::Outbox => "outbox",
            ItemSet::Schedules => "schedules",
            ItemSet::Effects => "effects",
            ItemSet::Archive => "archive",
        }
    }

    /// The Redis key of the sorted set.
    fn key(self, engine: &Engine) -> String {
        let keys = engine.store.keys();
        match self {
            ItemSet::Timers => keys.timers(),
            ItemSet::Outbox => keys.outbox(),
            ItemSet::Schedules => engine.store.schedule_due_key(),
            ItemSet::Effects => keys.effects(),
            ItemSet::Archive => keys.archive_outbox(),
        }
    }

    /// The run, step and attempt an item belongs to, when it belongs to a run.
    fn owner(self, member: &str) -> Option<(&str, &str, u32)> {
        match self {
            ItemSet::Timers => TimerKind::parse(member).and_then(|(kind, run, step, attempt)| {
                // These name a pool, not a run.
                (!matches!(kind, TimerKind::SlotWake | TimerKind::RunWake)).then_some((run, step, attempt))
            }),
            ItemSet::Outbox => parse_outbox_member(member).map(|(run, step)| (run, step, 0)),
            ItemSet::Archive => Some((member, "", 0)),
            ItemSet::Schedules | ItemSet::Effects => None,
        }
    }
}

/// What the loops share: the health to report to, and (tests only) a fault to inject.
pub struct Supervisor {
    /// The coordinator's health.
    pub health: Arc<Health>,
    /// Test seam: an item whose member contains this text panics before it is handled, so the
    /// end-to-end tests can prove that a panicking item is parked. `None` in production.
    panic_marker: Option<String>,
}

impl Supervisor {
    /// A supervisor reporting to `health`; `panic_marker` as in [`crate::Hooks`].
    pub fn new(health: Arc<Health>, panic_marker: Option<String>) -> Arc<Self> {
        Arc::new(Self { health, panic_marker })
    }

    /// Handles one claimed item: runs `work`, catching a panic; parks the item on a panic or a
    /// non-transient error (see the module doc). Never panics, never fails.
    pub async fn item(&self, engine: &Engine, set: ItemSet, member: &str, work: impl Future<Output = Result<()>>) {
        let marker = self.panic_marker.as_deref().filter(|m| !m.is_empty());
        let guarded = async {
            if let Some(m) = marker
                && member.contains(m)
            {
                panic!("injected fault: item {member} contains the test panic marker");
            }
            work.await
        };
        let reason = match AssertUnwindSafe(guarded).catch_unwind().await {
            Ok(Ok(())) => return,
            Ok(Err(e)) if parks(&e) => format!("error: {e}"),
            Ok(Err(e)) => {
                tracing::warn!(r#loop = set.word(), member, error = %e, "item failed; it comes due again after its lease");
                return;
            }
            Err(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
        };
        if let Err(e) = park(engine, set, member, &reason).await {
            tracing::error!(r#loop = set.word(), member, %reason, error = %e, "could not park an item; it comes due again after its lease");
        }
    }
}

/// Whether an item that failed with `e` is parked (trying again cannot mend it).
fn parks(e: &CoordinatorError) -> bool {
    matches!(
        e,
        CoordinatorError::Internal(_) | CoordinatorError::InvalidArgument(_) | CoordinatorError::NotFound(_)
    )
}

/// The text of a panic's payload (`&str` or `String`; anything else is named as such).
pub(crate) fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    &s[..end]
}

/// Parks `member` of `set` with `reason` (see the module doc).
///
/// # Errors
/// `Redis`: the item stays claimed and comes due again after its lease.
pub async fn park(engine: &Engine, set: ItemSet, member: &str, reason: &str) -> Result<()> {
    let now = now_ms();
    let reason = cut(reason, MAX_REASON_BYTES);
    let owner = set.owner(member);
    tracing::error!(
        r#loop = set.word(),
        member,
        reason,
        "parked an item that cannot be processed; it stays visible and does not fire again"
    );
    let record = serde_json::json!({
        "loop": set.word(),
        "member": member,
        "run_id": owner.map(|(run, _, _)| run).unwrap_or_default(),
        "reason": reason,
        "parked_at": now,
    });
    let field = format!("{}|{member}", set.word());
    let record = record.to_string();
    let key = set.key(engine);
    engine
        .store
        .park_item(&crate::store::ParkedRecord {
            set: &key,
            member,
            field: &field,
            record: &record,
        })
        .await?;
    if let Some((run, step, attempt)) = owner {
        let entry = format!("{} {member}: {reason} (at {})", set.word(), rfc3339(now));
        engine.store.note_parked_on_run(run, step, attempt, &entry, now).await?;
    }
    Ok(())
}

/// The parked items of a namespace: `<loop>|<member>` -> the JSON record.
///
/// # Errors
/// `Redis`.
pub async fn parked_items(engine: &Engine) -> Result<std::collections::HashMap<String, String>> {
    engine.store.parked_items().await
}

/// Completes once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// First delay before a stopped loop is restarted.
const RESTART_MIN: Duration = Duration::from_millis(500);
/// Longest delay before a stopped loop is restarted.
const RESTART_MAX: Duration = Duration::from_secs(30);
/// A loop that ran this long before it stopped is restarted after [`RESTART_MIN`] again.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Runs the loop `make()` builds under a supervisor until `shutdown` turns true: when the loop's
/// task ends early (a panic, or a return before shutdown), it is logged, reported down to
/// `health`, and restarted after a backoff.
pub fn spawn<F, Fut>(
    name: &'static str,
    health: Arc<Health>,
    shutdown: watch::Receiver<bool>,
    make: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut delay = RESTART_MIN;
        loop {
            let started = tokio::time::Instant::now();
            let mut task = tokio::spawn(make());
            let mut stop = shutdown.clone();
            let ended = tokio::select! {
                r = &mut task => r,
                _ = stopped(&mut stop) => {
                    // The loop sees the same signal; let it finish its round.
                    let _ = task.await;
                    return;
                }
            };
            if *shutdown.borrow() {
                return;
            }
            let why = match ended {
                Ok(()) => "ended before shutdown".to_string(),
                Err(e) if e.is_panic() => format!("panicked: {}", panic_message(e.into_panic().as_ref())),
                Err(e) => format!("stopped: {e}"),
            };
            if started.elapsed() >= STABLE_AFTER {
                delay = RESTART_MIN;
            }
            tracing::error!(r#loop = name, reason = %why, "background loop stopped; restarting it in {delay:?}");
            health.loop_down(name, why).await;
            let mut stop = shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(&mut stop) => return,
            }
            delay = delay.saturating_mul(2).min(RESTART_MAX);
            tracing::info!(r#loop = name, "restarting background loop");
            health.loop_up(name).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_name_their_run_except_pools() {
        assert_eq!(ItemSet::Timers.owner("wake|r1|nap|1"), Some(("r1", "nap", 1)));
        assert_eq!(ItemSet::Timers.owner("sem-wake|pool/a|x|0"), None);
        assert_eq!(ItemSet::Outbox.owner("r1|s"), Some(("r1", "s", 0)));
        assert_eq!(ItemSet::Schedules.owner("wf/nightly"), None);
        assert_eq!(ItemSet::Archive.owner("r1"), Some(("r1", "", 0)));
        assert_eq!(ItemSet::Timers.owner("garbage"), None);
    }

    #[test]
    fn only_errors_that_cannot_mend_park() {
        assert!(parks(&CoordinatorError::Internal("x".into())));
        assert!(!parks(&CoordinatorError::Publish("x".into())));
        assert!(!parks(&CoordinatorError::FailedPrecondition("x".into())));
    }

    #[test]
    fn reasons_are_cut_at_a_char_boundary() {
        let s = "é".repeat(600);
        assert!(cut(&s, MAX_REASON_BYTES).len() <= MAX_REASON_BYTES);
        assert_eq!(cut("abc", 10), "abc");
    }

    #[tokio::test]
    async fn a_loop_that_panics_is_restarted_and_serves_again() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let (reporter, _service) = tonic_health::server::health_reporter();
        let health = Health::new(reporter).await;
        health.set_ready().await;
        let (stop_tx, stop_rx) = watch::channel(false);
        let rounds = Arc::new(AtomicU32::new(0));
        let (r, rx) = (rounds.clone(), stop_rx.clone());
        let handle = spawn("test-loop", health.clone(), stop_rx, move || {
            let (r, mut rx) = (r.clone(), rx.clone());
            async move {
                if r.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("boom outside any item");
                }
                let _ = rx.wait_for(|s| *s).await;
            }
        });
        let start = std::time::Instant::now();
        while rounds.load(Ordering::SeqCst) < 2 {
            assert!(start.elapsed() < Duration::from_secs(20), "the loop was not restarted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(health.why_not(), None);
        let _ = stop_tx.send(true);
        assert!(tokio::time::timeout(Duration::from_secs(10), handle).await.is_ok());
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn panic_messages_are_read_from_str_and_string() {
        let p = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "boom 1");
    }
}
