//! The archiver: moves finished runs from Redis to the archive (PostgreSQL, `crate::archive`).
//!
//! A run that finishes is queued in the archive outbox (`{<ns>}:archive-outbox`, scored by its end)
//! by the very script that finishes it (`finish_run` in common.lua), so no finished run is ever
//! missed. One coordinator at a time (the holder of the lease `{<ns>}:archiver`, [`LEASE`]) takes
//! the [`crate::archive::ArchiveConfig::batch`] runs that finished first, builds each whole from
//! Redis (`build`: the run as GetRun shows it but without an answer budget, its history, its
//! human tasks), writes the batch with one `Archive::write`, and only then shrinks each run to a
//! tombstone ([`Store::tombstone`](crate::store::Store::tombstone)) that expires after
//! `archive_grace`.
//!
//! **Faults.** PostgreSQL down: the write fails, nothing in Redis changes, the runs wait in the
//! outbox (the backlog metrics grow, health turns NOT_SERVING past `archive_max_backlog_age`, [`DEFAULT_MAX_BACKLOG_AGE`]) and the
//! archiver tries again after a backoff. A coordinator killed between the write and the
//! tombstones: the runs are still queued; the next holder of the lease writes them again, which
//! the archive ignores (its write is idempotent on namespace, run id and end), and shrinks them.
//! PostgreSQL gone without a word (its host died): the write is given up after
//! `archive_write_timeout`, its connection closed, and the round fails as above.
//! Redis down: nothing is read or changed until it is back. A run that cannot be built (a panic, a
//! stored value that does not read) is **parked** (`supervise::park`, loop `archive`): it leaves
//! the outbox, is listed in `{<ns>}:parked-items` and on the run (GetRun `parked_items`), stays
//! whole in Redis until the retention, and the loop goes on. Re-arm it with
//! `ZADD {<ns>}:archive-outbox <finished_at ms> <run id>` and `HDEL {<ns>}:parked-items archive|<run id>`.
//!
//! **Reads.** GetRun, WatchRun, the human task list and RetryRun/RerunRun look in Redis first and
//! in the archive when Redis has only the run's tombstone or nothing ([`archived`], [`restore`]).
//! Log lines are not archived: GetStepLogs of an archived run answers no lines, and counts them in
//! `omitted` (docs/operations.md).

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use baton_shared::{
    definition::StepKind,
    proto::{Run, RunEvent, RunStatus, StepStatus},
    time::{millis, now_ms},
};
use futures::FutureExt;
use tokio::sync::watch;

use crate::{
    archive::{Archive, ArchivedRun},
    engine::Engine,
    error::{CoordinatorError, Result},
    store::{TombstoneOf, Tombstoned},
    supervise::{self, ItemSet},
    view,
};

/// How long the archiver lease lasts; renewed every round, so a dead holder's runs wait at most
/// this long for another coordinator.
pub const LEASE: Duration = Duration::from_secs(30);
/// How long the archiver waits between rounds when the outbox had less than a batch (or another
/// coordinator holds the lease).
pub const IDLE: Duration = Duration::from_secs(1);
/// The longest wait after a failed round (PostgreSQL or Redis down); the first is [`IDLE`],
/// doubling.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The default of `archive_max_backlog_age`: health is NOT_SERVING while the run that waits
/// longest in the archive outbox finished more than this long ago (the archive is down or cannot
/// keep up): 10 minutes.
pub const DEFAULT_MAX_BACKLOG_AGE: Duration = Duration::from_secs(600);
/// The bounds of `archive_max_backlog_age` (inclusive): 1 s to 7 days.
pub const MAX_BACKLOG_AGE_BOUNDS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(7 * 86_400));

/// The archiver's loop, until `stop` turns true: rounds of [`round`], a backoff after a failure.
/// Drops its lease when it stops, so another coordinator takes over at once.
pub async fn run(engine: Arc<Engine>, archive: Arc<Archive>, mut stop: watch::Receiver<bool>) {
    let token = uuid::Uuid::new_v4().to_string();
    let mut backoff = IDLE;
    loop {
        if *stop.borrow() {
            break;
        }
        let wait = match round(&engine, &archive, &token).await {
            Ok(Round::Full) => {
                backoff = IDLE;
                Duration::ZERO
            }
            Ok(Round::Idle) => {
                backoff = IDLE;
                IDLE
            }
            Err(e) => {
                crate::metrics::archive_error();
                tracing::warn!(error = %e, "archiving failed; the runs stay queued and are tried again in {backoff:?}");
                let wait = backoff;
                backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
                wait
            }
        };
        if wait > Duration::ZERO {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }
    if let Err(e) = engine.store.drop_archiver_lease(&token).await {
        tracing::warn!(error = %e, "could not drop the archiver lease; it lapses by itself");
    }
}

/// What a round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// It archived a whole batch: more may wait, go on at once.
    Full,
    /// Less than a batch waited, or another coordinator holds the lease.
    Idle,
}

/// One run of a batch, built and waiting for the write.
struct Built {
    run_id: String,
    finished_at: i64,
    workflow: String,
    created_at: i64,
    emitting: Vec<String>,
    archived: ArchivedRun,
}

/// One round: takes the lease, builds up to a batch of the runs that finished first, writes them
/// to the archive, then shrinks each to its tombstone. Runs that are no longer the end that was
/// queued (re-run since) or gone leave the outbox; runs that cannot be built are parked.
///
/// # Errors
/// `Redis` or `Unavailable` (the archive's write failed): nothing archived is lost, the runs stay
/// queued.
pub async fn round(engine: &Engine, archive: &Archive, token: &str) -> Result<Round> {
    if !engine.store.take_archiver_lease(token, LEASE).await? {
        return Ok(Round::Idle);
    }
    let batch = archive.config().batch.max(1);
    let due = engine.store.archive_due(batch).await?;
    let full = due.len() >= batch;
    let grace = archive.config().grace;
    let mut built = Vec::with_capacity(due.len());
    for (run_id, finished_at) in due {
        let work = AssertUnwindSafe(build(engine, &run_id, finished_at))
            .catch_unwind()
            .await;
        let reason = match work {
            Ok(Ok(Some(b))) => {
                built.push(b);
                continue;
            }
            Ok(Ok(None)) => {
                // Not the end that was queued any more, or gone: its entry leaves the outbox.
                let of = TombstoneOf::default();
                let outcome = engine
                    .store
                    .tombstone(&run_id, finished_at, &of, grace, now_ms())
                    .await?;
                tracing::debug!(run = %run_id, ?outcome, "an archive outbox entry named no finished run to archive");
                continue;
            }
            Ok(Err(e)) if transient(&e) => return Err(e),
            Ok(Err(e)) => format!("error: {e}"),
            Err(panic) => format!("panicked: {}", crate::supervise::panic_message(panic.as_ref())),
        };
        crate::metrics::archive_error();
        let reason = format!("could not build the run for the archive: {reason}");
        supervise::park(engine, ItemSet::Archive, &run_id, &reason).await?;
        engine.store.expire_run(&run_id).await?;
    }
    if built.is_empty() {
        return Ok(if full { Round::Full } else { Round::Idle });
    }
    let runs: Vec<ArchivedRun> = built.iter().map(|b| b.archived.clone()).collect();
    let report = archive
        .write_within(&runs, engine.config.archive_write_timeout)
        .await
        .map_err(|e| CoordinatorError::Unavailable(format!("archive: writing {} runs: {e}", runs.len())))?;
    drop(runs);
    for p in &report.parked {
        // Kept whole in the archive's `parked_runs` (GetRun answers it; search does not find it).
        tracing::warn!(run = %p.run_id, reason = %p.reason, "the archive kept a run aside as parked");
    }
    let now = now_ms();
    let mut shrunk = 0u64;
    for b in &built {
        let of = TombstoneOf {
            workflow: &b.workflow,
            created_at: b.created_at,
            emitting_steps: b.emitting.iter().map(String::as_str).collect(),
        };
        match engine
            .store
            .tombstone(&b.run_id, b.finished_at, &of, grace, now)
            .await?
        {
            Tombstoned::Done | Tombstoned::Already => shrunk = shrunk.saturating_add(1),
            Tombstoned::Missing => {}
            Tombstoned::Moved(status) => tracing::info!(
                run = %b.run_id,
                status,
                "a run started again while it was archived; it stays in Redis and is archived again when it ends"
            ),
        }
    }
    crate::metrics::archive_written(shrunk);
    Ok(if full { Round::Full } else { Round::Idle })
}

/// Whether trying again can mend `e` (the run stays queued) rather than park it.
fn transient(e: &CoordinatorError) -> bool {
    matches!(
        e,
        CoordinatorError::Redis(_) | CoordinatorError::Unavailable(_) | CoordinatorError::Amqp(_)
    )
}

/// Run `run_id` as it goes to the archive, read from Redis: `None` when Redis does not hold it
/// whole and finished with the end `finished_at` (Unix ms) that queued it (a tombstone, gone, or
/// re-run since).
///
/// # Errors
/// `Redis`; `Internal` for stored state that does not read.
async fn build(engine: &Engine, run_id: &str, finished_at: i64) -> Result<Option<Built>> {
    let Some(run) = whole_run(engine, run_id).await? else {
        return Ok(None);
    };
    let ended = RunStatus::try_from(run.status).is_ok_and(RunStatus::is_terminal);
    if !ended || run.finished_at.as_ref().map(millis) != Some(finished_at) {
        return Ok(None);
    }
    let error_types = view::error_types(
        run.steps
            .iter()
            .flat_map(|s| s.attempts.iter())
            .map(|a| (a.outcome.as_str(), a.error_type.as_str())),
    );
    let history: Vec<RunEvent> = engine
        .store
        .whole_history(run_id)
        .await?
        .into_iter()
        .map(|(id, f)| view::event_view(run_id, id, &f))
        .collect();
    let def = engine.registry.pinned(&run.workflow, run.version).await.ok();
    let mut human_tasks = Vec::new();
    if let Some(def) = &def {
        for step in def.steps.iter().filter(|s| matches!(s.kind, StepKind::Human(_))) {
            if let Some(task) = engine.human_task(run_id, &step.id).await? {
                human_tasks.push(task);
            }
        }
    }
    let emitting = run
        .steps
        .iter()
        .filter(|s| s.emitted.is_some())
        .map(|s| s.id.clone())
        .collect();
    Ok(Some(Built {
        run_id: run_id.to_string(),
        finished_at,
        workflow: run.workflow.clone(),
        created_at: run.created_at.as_ref().map(millis).unwrap_or(0),
        emitting,
        archived: ArchivedRun {
            namespace: engine.config.namespace.clone(),
            error_types,
            history,
            human_tasks,
            run,
        },
    }))
}

/// Run `run_id` as GetRun shows it, but whole: every step's output and every kept attempt's input,
/// whatever their size. `None` when Redis does not hold it (or holds only its tombstone).
///
/// # Errors
/// `Redis`.
pub async fn whole_run(engine: &Engine, run_id: &str) -> Result<Option<Run>> {
    let Some((run, steps)) = engine.store.read_run(run_id).await? else {
        return Ok(None);
    };
    if run.contains_key("archived_at") {
        return Ok(None);
    }
    let wf = run.get("workflow").cloned().unwrap_or_default();
    let version = run.get("version").and_then(|v| v.parse().ok()).unwrap_or(0);
    let def = engine.registry.pinned(&wf, version).await.ok();
    let mut view = view::run_view(def.as_deref(), &run, Some(&steps));
    let ids: Vec<String> = view
        .steps
        .iter()
        .filter(|s| s.output_omitted_bytes > 0)
        .map(|s| s.id.clone())
        .collect();
    if !ids.is_empty() {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let outputs = engine.store.read_step_outputs(run_id, &ids).await?;
        view::fill_outputs(&mut view, outputs);
    }
    crate::step_data::fill_attempts_within(engine, run_id, &mut view, u64::MAX).await?;
    Ok(Some(view))
}

/// The archived run `run_id` when Redis no longer holds it whole (only its tombstone, or nothing)
/// and the coordinator has an archive; `None` otherwise (no archive, Redis holds it, or the
/// archive does not have it either).
///
/// # Errors
/// `Redis`; `Unavailable` when the archive cannot be read.
pub async fn archived(engine: &Engine, run_id: &str) -> Result<Option<ArchivedRun>> {
    let Some(archive) = &engine.archive else {
        return Ok(None);
    };
    if engine.store.run_archived(run_id).await? == Some(false) {
        return Ok(None);
    }
    archive
        .get_run(&engine.config.namespace, run_id)
        .await
        .map_err(|e| CoordinatorError::Unavailable(format!("archive: reading run {run_id}: {e}")))
}

/// Brings archived run `run_id` back into Redis (RetryRun and RerunRun of a run only the archive
/// holds whole) and removes it from the archive once it is live again; `false` when there is
/// nothing to bring back (no archive, Redis holds the run whole, or the archive does not have it).
///
/// # Errors
/// `Redis`; `Unavailable` when the archive cannot be read; `Internal` for an archived run that
/// does not convert back.
pub async fn restore(engine: &Engine, run_id: &str) -> Result<bool> {
    let Some(archived) = archived(engine, run_id).await? else {
        return Ok(false);
    };
    // What only the tombstone kept (the parent's kind and attempt, the depth), while it is there.
    let kept = engine
        .store
        .run_fields(run_id, &["parent_attempt", "parent_kind", "depth"])
        .await?;
    let (run_fields, step_fields) = redis_fields(&archived.run, &kept);
    let events = history_fields(&archived.history);
    let run = &archived.run;
    engine
        .store
        .restore_run(
            run_id,
            &run.workflow,
            run.created_at.as_ref().map(millis).unwrap_or(0),
            &run_fields,
            &step_fields,
            &events,
        )
        .await?;
    if let Some(archive) = &engine.archive
        && let Err(e) = archive.delete_run(&engine.config.namespace, run_id).await
    {
        // The run is live again in Redis, which reads come to first; when it ends, its new end is
        // archived over this one.
        tracing::warn!(run = run_id, error = %e, "a run brought back from the archive could not be removed from it");
    }
    Ok(true)
}

/// Hash fields as (field, value) pairs, in the order they are written.
pub type Fields = Vec<(String, String)>;

/// A stored time (Unix ms as text), '' for none.
fn ms_text(t: Option<&prost_types::Timestamp>) -> String {
    t.map(|t| millis(t).to_string()).unwrap_or_default()
}

/// The run hash and steps hash fields (as the scripts write them) of an archived run, so that
/// `reset_steps.lua` can run it again: its graph is stored again by the first script that needs
/// it (`no_graph`). `kept`: the tombstone's `parent_attempt`, `parent_kind`, `depth`.
pub fn redis_fields(run: &Run, kept: &[Option<String>]) -> (Fields, Fields) {
    let status = RunStatus::try_from(run.status).unwrap_or(RunStatus::Unspecified);
    let step_ids: Vec<&str> = run.steps.iter().map(|s| s.id.as_str()).collect();
    let kept = |i: usize| kept.get(i).cloned().flatten().unwrap_or_default();
    let mut r: Fields = [
        ("id", run.id.clone()),
        ("workflow", run.workflow.clone()),
        ("version", run.version.to_string()),
        ("status", status.word().to_string()),
        ("input", run.input_json.clone()),
        ("output", run.output_json.clone()),
        ("error", run.error.clone()),
        ("idempotency_key", run.idempotency_key.clone()),
        ("created_at", ms_text(run.created_at.as_ref())),
        ("started_at", ms_text(run.started_at.as_ref())),
        ("finished_at", ms_text(run.finished_at.as_ref())),
        ("step_ids", step_ids.join(",")),
        ("steps_left", "0".to_string()),
        ("parent_run", run.parent_run_id.clone()),
        ("parent_step", run.parent_step_id.clone()),
        ("parent_attempt", kept(0)),
        ("parent_kind", kept(1)),
        ("depth", if kept(2).is_empty() { "0".into() } else { kept(2) }),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if !run.parked_items.is_empty() {
        r.push((
            "parked_items".into(),
            serde_json::to_string(&run.parked_items).unwrap_or_default(),
        ));
    }
    let mut s = Vec::new();
    for step in &run.steps {
        let status = StepStatus::try_from(step.status).unwrap_or(StepStatus::Unspecified);
        let history: Vec<serde_json::Value> = step
            .attempts
            .iter()
            .map(|a| {
                let mut e = serde_json::json!({
                    "number": a.number,
                    "outcome": a.outcome,
                    "error": a.error,
                    "worker": a.worker,
                    "started_at": a.started_at.as_ref().map(millis).unwrap_or(0),
                    "finished_at": a.finished_at.as_ref().map(millis).unwrap_or(0),
                });
                if !a.error_type.is_empty() {
                    e["error_type"] = a.error_type.clone().into();
                }
                if !a.error_details.is_empty() {
                    e["error_details"] = a.error_details.clone().into();
                }
                e
            })
            .collect();
        let mut put = |field: &str, value: String| {
            if !value.is_empty() {
                s.push((format!("{}:{field}", step.id), value));
            }
        };
        put("status", status.word().to_string());
        put("attempt", step.attempt.to_string());
        put("base", step.attempt_base.to_string());
        put("output", step.output_json.clone());
        put("error", step.error.clone());
        put("dispatched_at", ms_text(step.dispatched_at.as_ref()));
        put("started_at", ms_text(step.started_at.as_ref()));
        put("finished_at", ms_text(step.finished_at.as_ref()));
        put("history", serde_json::Value::from(history).to_string());
        if step.earlier_attempts > 0 {
            put("history_dropped", step.earlier_attempts.to_string());
        }
        put("worker", step.worker.clone());
        put("child_run", step.child_run_id.clone());
        put("completed_by", step.completed_by.clone());
        put("slot", step.slot.clone());
        if let Some(items) = &step.items {
            put("items_total", items.total.to_string());
            put("items_ok", items.succeeded.to_string());
            put("items_failed", items.failed.to_string());
        }
        for a in &step.attempts {
            if !a.input_json.is_empty() {
                s.push((format!("{}:input@{}", step.id, a.number), a.input_json.clone()));
            }
        }
    }
    (r, s)
}

/// An archived history as stream entries (id, fields) that [`view::event_view`] reads back the
/// same; log events (not kept in the stream) are left out.
pub fn history_fields(history: &[RunEvent]) -> Vec<(String, Vec<(String, String)>)> {
    history
        .iter()
        .filter(|e| e.log.is_none() && e.kind != "log")
        .map(|e| {
            let mut f: Vec<(String, String)> = [
                ("kind", e.kind.clone()),
                ("step", e.step_id.clone()),
                ("attempt", e.attempt.to_string()),
                ("status", e.status.clone()),
                ("detail", e.detail.clone()),
                ("at", ms_text(e.time.as_ref())),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            if !e.payload_json.is_empty() {
                f.push(("payload".into(), e.payload_json.clone()));
            }
            (e.sequence.clone(), f)
        })
        .collect()
}

/// The figures of the archive outbox for `/metrics` and health: (runs waiting, seconds since the
/// one waiting longest finished; 0 when none).
///
/// # Errors
/// `Redis`.
pub async fn backlog(engine: &Engine, now: i64) -> Result<(u64, f64)> {
    let b = engine.store.archive_backlog().await?;
    let age_ms = b.oldest_finished_at.map_or(0, |t| now.saturating_sub(t).max(0));
    #[allow(clippy::cast_precision_loss)]
    Ok((b.runs, age_ms as f64 / 1000.0))
}

/// Whether a backlog of this age (seconds) makes the coordinator NOT_SERVING, past `max`
/// (`archive_max_backlog_age`), and why.
pub fn backlog_verdict(age_seconds: f64, max: Duration) -> Option<String> {
    (age_seconds > max.as_secs_f64()).then(|| {
        format!(
            "archive: the oldest finished run has waited {age_seconds:.0} s to be archived (more than {} s, \
             archive_max_backlog_age): is PostgreSQL reachable?",
            max.as_secs_f64()
        )
    })
}

/// Stored fields by name, for tests of [`redis_fields`].
#[cfg(test)]
fn by_name(fields: &[(String, String)]) -> std::collections::HashMap<String, String> {
    fields.iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use baton_shared::{
        proto::{Attempt, StepRun},
        time::timestamp,
    };

    use super::*;

    #[test]
    fn an_archived_run_converts_back_to_what_the_view_reads() {
        let run = Run {
            id: "r".into(),
            workflow: "wf".into(),
            version: 3,
            status: RunStatus::Failed as i32,
            input_json: r#"{"a":1}"#.into(),
            error: "step b failed".into(),
            created_at: timestamp(1_000),
            finished_at: timestamp(5_000),
            steps: vec![StepRun {
                id: "b".into(),
                status: StepStatus::Failed as i32,
                attempt: 2,
                error: "boom".into(),
                finished_at: timestamp(4_000),
                attempts: vec![Attempt {
                    number: 2,
                    outcome: "failed".into(),
                    error: "boom".into(),
                    error_type: "Oops".into(),
                    started_at: timestamp(3_000),
                    finished_at: timestamp(4_000),
                    input_json: r#"{"x":2}"#.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let (r, s) = redis_fields(&run, &[Some("1".into()), Some("workflow".into()), None]);
        let (r, s) = (by_name(&r), by_name(&s));
        let back = view::run_view(None, &r, Some(&s));
        assert_eq!(back.id, "r");
        assert_eq!(back.status, RunStatus::Failed as i32);
        assert_eq!(back.finished_at, timestamp(5_000));
        assert_eq!(back.steps.len(), 1);
        assert_eq!(back.steps[0].attempts[0].error_type, "Oops");
        assert_eq!(back.steps[0].attempts[0].finished_at, timestamp(4_000));
        assert_eq!(r["parent_kind"], "workflow");
        assert_eq!(r["depth"], "0");
        assert_eq!(s["b:input@2"], r#"{"x":2}"#);
    }

    #[test]
    fn history_round_trips_through_stream_fields() {
        let ev = RunEvent {
            run_id: "r".into(),
            sequence: "5-0".into(),
            time: timestamp(5),
            kind: "step".into(),
            step_id: "a".into(),
            attempt: 1,
            status: "succeeded".into(),
            detail: "d".into(),
            payload_json: String::new(),
            log: None,
            run: None,
        };
        let fields = history_fields(std::slice::from_ref(&ev));
        let (id, f) = fields[0].clone();
        let back = view::event_view("r", id, &by_name(&f));
        assert_eq!(back, ev);
    }

    #[test]
    fn a_backlog_older_than_its_bound_is_not_serving() {
        assert_eq!(backlog_verdict(599.0, DEFAULT_MAX_BACKLOG_AGE), None);
        assert!(backlog_verdict(601.0, DEFAULT_MAX_BACKLOG_AGE).is_some_and(|w| w.contains("archive")));
        assert_eq!(backlog_verdict(2.0, Duration::from_secs(3)), None);
        assert!(backlog_verdict(3.5, Duration::from_secs(3)).is_some_and(|w| w.contains("archive_max_backlog_age")));
    }
}
