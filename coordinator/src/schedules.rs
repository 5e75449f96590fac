//! Cron schedules: records in Redis, the tick loop, the ledger, and the schedule use cases.
//!
//! A schedule is a record in the hash `{<ns>}:schedules` plus its state (`last_tick`, `last_run`,
//! `buffered`) in `{<ns>}:schedule:<id>:state` and its ledger (tick -> entry) in
//! `{<ns>}:schedule:<id>:ticks`. The sorted set `{<ns>}:schedule-due` holds each active schedule's next
//! due time; coordinators claim due schedules with a lease (the timers' claim script), so one
//! coordinator at a time works on a schedule. On top of that, every tick's run id is derived from
//! (schedule, tick) and its ledger entry is written with HSETNX, so a tick starts one run at most and
//! is recorded once, even if two coordinators handled it.

use std::{sync::Arc, time::Duration};

use baton_shared::{
    definition::{DEFAULT_CATCHUP_WINDOW, WorkflowDefinition},
    proto::{RunStatus, Schedule, ScheduleTick},
    schedule::{CronSchedule, OverlapPolicy, TickAction, decide, run_id_for_tick},
    time::{duration_ms, now_ms, timestamp},
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{
    engine::Engine,
    error::{CoordinatorError, Result},
    supervise::{ItemSet, Supervisor},
};

/// Most ticks handled for one schedule in one round (a long outage of a per-second schedule).
const MAX_TICKS_PER_ROUND: usize = 1000;
/// A tick handled this late (ms) or later was caught up after a stall: its ledger entry says so.
const LATE_MS: i64 = 1_000;
/// Ledger entries kept per schedule (the oldest are dropped beyond twice this).
const LEDGER_KEEP: usize = 1000;

/// A schedule as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScheduleRecord {
    /// `[A-Za-z0-9_.:/-]`, at most 200 characters; `<workflow>/<name>` for a definition's.
    pub id: String,
    /// The workflow it starts.
    pub workflow: String,
    /// Its version; 0 for the latest when each run starts.
    pub version: u32,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone.
    pub timezone: String,
    /// The input of every run.
    pub input: serde_json::Value,
    /// What a tick does while the previous run still goes.
    pub overlap: OverlapPolicy,
    /// How late a missed tick may still fire, ms.
    pub catchup_window_ms: u64,
    /// Paused: records nothing, starts nothing.
    pub paused: bool,
    /// `definition` or `api`.
    pub source: String,
    /// Unix ms.
    pub created_at: i64,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
}

impl ScheduleRecord {
    fn parsed(&self) -> Result<CronSchedule> {
        CronSchedule::parse(&self.cron, &self.timezone)
            .map_err(|e| CoordinatorError::InvalidArgument(format!("{}: {}", e.field, e.message)))
    }
}

/// One ledger entry as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LedgerEntry {
    outcome: String,
    #[serde(default)]
    run_id: String,
    #[serde(default)]
    reason: String,
    recorded_at: i64,
}

impl Engine {
    /// Creates or replaces a schedule and arms its next tick.
    ///
    /// # Errors
    /// `InvalidArgument` naming the field (`id`, `cron`, `timezone`, `overlap`, `input_json`);
    /// `NotFound` for an unknown workflow; `AlreadyExists` when the id belongs to a definition's
    /// schedule.
    pub async fn put_schedule(&self, mut record: ScheduleRecord, replace_definition: bool) -> Result<ScheduleRecord> {
        if !valid_id(&record.id) {
            return Err(CoordinatorError::InvalidArgument(format!(
                "id: {:?} must be 1 to 200 characters of letters, digits, '_', '-', '.', ':', '/'",
                record.id
            )));
        }
        let cron = record.parsed()?;
        let def = self.registry.get(&record.workflow, record.version).await?.definition;
        def.validate_input(&record.input)?;
        let existing = self.store.schedule_record(&record.id).await?;
        if let Some(old) = existing
            .as_deref()
            .and_then(|t| serde_json::from_str::<ScheduleRecord>(t).ok())
        {
            if old.source == "definition" && !replace_definition {
                return Err(CoordinatorError::AlreadyExists(format!(
                    "id: schedule {} is declared in workflow {}; change it there",
                    record.id, old.workflow
                )));
            }
            record.created_at = old.created_at;
            record.paused = old.paused && record.source == old.source;
            if old == record {
                return Ok(record);
            }
        }
        let json = serde_json::to_string(&record).map_err(|e| CoordinatorError::Internal(e.to_string()))?;
        let now = now_ms();
        // Ticks before the schedule existed (or before it changed) are not owed.
        let next = cron.next_after(now).filter(|_| !record.paused);
        self.store
            .put_schedule_record(&record.id, &json, now, next, false)
            .await?;
        tracing::info!(schedule = %record.id, cron = %record.cron, timezone = %record.timezone, "schedule saved");
        Ok(record)
    }

    /// Makes the schedules of workflow `def` (the latest version) those its definition declares.
    ///
    /// # Errors
    /// `Redis`; what [`Engine::put_schedule`] refuses.
    pub async fn sync_declared_schedules(&self, def: &WorkflowDefinition) -> Result<()> {
        let mut keep = Vec::new();
        for s in &def.schedules {
            let record = ScheduleRecord {
                id: format!("{}/{}", def.name, s.name),
                workflow: def.name.clone(),
                version: 0,
                cron: s.cron.expr().to_string(),
                timezone: s.cron.timezone().to_string(),
                input: s.input.clone(),
                overlap: s.overlap,
                catchup_window_ms: u64::try_from(s.catchup_window.as_millis()).unwrap_or(u64::MAX),
                paused: false,
                source: "definition".into(),
                created_at: now_ms(),
            };
            keep.push(record.id.clone());
            self.put_schedule(record, true).await?;
        }
        for old in self.list_schedules(&def.name).await? {
            if old.source == "definition" && !keep.contains(&old.id) {
                self.remove_schedule(&old.id).await?;
            }
        }
        Ok(())
    }

    /// Every schedule (of `workflow`, when not empty), by id.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn list_schedules(&self, workflow: &str) -> Result<Vec<ScheduleRecord>> {
        let all = self.store.schedule_records().await?;
        let mut out: Vec<ScheduleRecord> = all
            .values()
            .filter_map(|t| serde_json::from_str::<ScheduleRecord>(t).ok())
            .filter(|r| workflow.is_empty() || r.workflow == workflow)
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// One schedule.
    ///
    /// # Errors
    /// `NotFound`; `Redis`.
    pub async fn get_schedule(&self, id: &str) -> Result<ScheduleRecord> {
        let text = self.store.schedule_record(id).await?;
        text.and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| CoordinatorError::NotFound(format!("id: no schedule {id:?}")))
    }

    /// Pauses or resumes a schedule. A resumed schedule starts from now: ticks missed while paused
    /// are not caught up.
    ///
    /// # Errors
    /// `NotFound`; `Redis`.
    pub async fn set_schedule_paused(&self, id: &str, paused: bool) -> Result<ScheduleRecord> {
        let mut record = self.get_schedule(id).await?;
        record.paused = paused;
        let json = serde_json::to_string(&record).map_err(|e| CoordinatorError::Internal(e.to_string()))?;
        let now = now_ms();
        if paused {
            self.store.pause_schedule_record(id, &json).await?;
        } else {
            let next = record.parsed()?.next_after(now);
            self.store.put_schedule_record(id, &json, now, next, true).await?;
        }
        tracing::info!(schedule = id, paused, "schedule paused or resumed");
        Ok(record)
    }

    /// Deletes an API schedule.
    ///
    /// # Errors
    /// `NotFound`; `FailedPrecondition` for a schedule declared in a definition; `Redis`.
    pub async fn delete_schedule(&self, id: &str) -> Result<()> {
        let record = self.get_schedule(id).await?;
        if record.source == "definition" {
            return Err(CoordinatorError::FailedPrecondition(format!(
                "id: schedule {id} is declared in workflow {}; register a version without it",
                record.workflow
            )));
        }
        self.remove_schedule(id).await
    }

    async fn remove_schedule(&self, id: &str) -> Result<()> {
        self.store.delete_schedule_record(id).await?;
        tracing::info!(schedule = id, "schedule deleted");
        Ok(())
    }

    /// Fires a schedule now, whatever its overlap policy: a tick at the current time.
    ///
    /// # Errors
    /// `NotFound`; what starting the run refuses; `Redis`.
    pub async fn trigger_schedule(&self, id: &str) -> Result<ScheduleTick> {
        let record = self.get_schedule(id).await?;
        let now = now_ms();
        let run_id = self.fire_tick(&record, now).await?;
        self.record_tick(id, now, "triggered", &run_id, "triggered by hand")
            .await?;
        Ok(tick_view(
            id,
            now,
            &LedgerEntry {
                outcome: "triggered".into(),
                run_id,
                reason: "triggered by hand".into(),
                recorded_at: now,
            },
        ))
    }

    /// The ledger, newest first.
    ///
    /// # Errors
    /// `NotFound`; `Redis`.
    pub async fn schedule_ticks(&self, id: &str, limit: u32) -> Result<Vec<ScheduleTick>> {
        self.get_schedule(id).await?;
        let limit = match limit {
            0 => 50,
            n => n.min(1000) as usize,
        };
        let all = self.store.schedule_ledger(id).await?;
        let mut ticks: Vec<(i64, LedgerEntry)> = all
            .into_iter()
            .filter_map(|(t, e)| serde_json::from_str(&e).ok().map(|e| (t, e)))
            .collect();
        ticks.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
        Ok(ticks.iter().take(limit).map(|(t, e)| tick_view(id, *t, e)).collect())
    }

    /// The schedule as the API shows it.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn schedule_view(&self, r: &ScheduleRecord) -> Result<Schedule> {
        let (due, last_run) = self.store.schedule_due_and_last_run(&r.id).await?;
        // The due set may hold a claim's lease instead of the tick: show the tick itself.
        let next_tick = if r.paused {
            None
        } else {
            due.then(|| r.parsed().ok()?.next_after(now_ms())).flatten()
        };
        Ok(Schedule {
            id: r.id.clone(),
            workflow: r.workflow.clone(),
            workflow_version: r.version,
            cron: r.cron.clone(),
            timezone: r.timezone.clone(),
            input_json: r.input.to_string(),
            overlap: r.overlap.word().into(),
            catchup_window_ms: r.catchup_window_ms,
            paused: r.paused,
            source: r.source.clone(),
            created_at: timestamp(r.created_at),
            next_tick_at: next_tick.and_then(timestamp),
            last_run_id: last_run.unwrap_or_default(),
        })
    }

    /// Starts the run of one tick (its id derived from the schedule and the tick). Returns the id.
    async fn fire_tick(&self, r: &ScheduleRecord, tick: i64) -> Result<String> {
        let run_id = run_id_for_tick(&r.id, tick);
        let def = self.registry.get(&r.workflow, r.version).await?.definition;
        def.validate_input(&r.input)?;
        self.create_scheduled_run(&def, &run_id, &r.input).await?;
        self.store.set_schedule_last_run(&r.id, &run_id).await?;
        Ok(run_id)
    }

    /// Fires a tick and records it. The run comes first (its id is derived from the tick, so doing
    /// it twice is harmless), then the entry: a crash in between fires the tick again, finding its
    /// run. A run that cannot start (the workflow is gone, the input no longer fits its schema) is
    /// recorded as skipped with the reason. Returns the run id when it fired.
    async fn fire_and_record(&self, record: &ScheduleRecord, tick: i64, reason: &str) -> Result<Option<String>> {
        match self.fire_tick(record, tick).await {
            Ok(run_id) => {
                self.record_tick(&record.id, tick, "fired", &run_id, reason).await?;
                Ok(Some(run_id))
            }
            Err(e @ (CoordinatorError::NotFound(_) | CoordinatorError::InvalidArgument(_))) => {
                let reason = format!("could not start a run: {e}");
                tracing::warn!(schedule = %record.id, tick, %reason, "schedule tick skipped");
                self.record_tick(&record.id, tick, "skipped", "", &reason).await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes a tick's ledger entry unless it has one (so a tick is recorded once).
    async fn record_tick(&self, id: &str, tick: i64, outcome: &str, run_id: &str, reason: &str) -> Result<bool> {
        let json = ledger_json(outcome, run_id, reason)?;
        let added = self.store.record_schedule_tick(id, tick, &json, LEDGER_KEEP).await?;
        if added {
            crate::metrics::schedule_tick(outcome);
            crate::metrics::schedule_tick_lateness(outcome, tick, now_ms());
        }
        Ok(added)
    }

    /// Overwrites a tick's ledger entry (a buffered tick that fired or was replaced).
    async fn update_tick(&self, id: &str, tick: i64, outcome: &str, run_id: &str, reason: &str) -> Result<()> {
        let json = ledger_json(outcome, run_id, reason)?;
        self.store.update_schedule_tick(id, tick, &json).await?;
        crate::metrics::schedule_tick(outcome);
        Ok(())
    }

    /// The run a schedule started last, if it was going at `as_of` (Unix ms): created by then and
    /// not finished by then. A tick is judged as of its own time, so a tick caught up after a stall
    /// does not count against it the run that the tick before it started a moment ago, while a run
    /// that was going when the tick was due does count, even if it has ended since.
    async fn running_previous(&self, last_run: Option<&str>, as_of: i64) -> Result<Option<String>> {
        let Some(run) = last_run.filter(|r| !r.is_empty()) else {
            return Ok(None);
        };
        let mut fields = self
            .store
            .run_fields(run, &["status", "created_at", "finished_at"])
            .await?
            .into_iter();
        let (status, created, finished) = (
            fields.next().flatten(),
            fields.next().flatten().and_then(|t| t.parse::<i64>().ok()),
            fields.next().flatten().and_then(|t| t.parse::<i64>().ok()),
        );
        let Some(status) = status.as_deref().and_then(RunStatus::from_word) else {
            return Ok(None);
        };
        let started_by_then = created.is_none_or(|c| c <= as_of);
        let going_then = !status.is_terminal() || finished.is_some_and(|f| f > as_of);
        Ok((started_by_then && going_then).then(|| run.to_string()))
    }

    /// Handles a due schedule: decides and records every tick since the last one handled (firing,
    /// skipping or buffering each per the overlap policy and the catch-up window), fires a buffered
    /// tick whose previous run ended, and arms the next due time.
    ///
    /// # Errors
    /// `Redis` and what starting a run refuses: the schedule comes due again after its lease.
    pub async fn run_schedule(&self, id: &str) -> Result<()> {
        let text = self.store.schedule_record(id).await?;
        let Some(record) = text.and_then(|t| serde_json::from_str::<ScheduleRecord>(&t).ok()) else {
            return self.store.set_schedule_due(id, None).await;
        };
        if record.paused {
            return self.store.set_schedule_due(id, None).await;
        }
        let cron = record.parsed()?;
        let now = now_ms();
        let state = self.store.schedule_state(id).await?;
        let mut last_tick: i64 = state.last_tick.unwrap_or(record.created_at);
        let mut last_run = state.last_run;
        let mut buffered: Option<i64> = state.buffered;
        let window = if record.catchup_window_ms == 0 {
            duration_ms(DEFAULT_CATCHUP_WINDOW)
        } else {
            // Saturating: a window of 2^63 ms or more must not wrap into "skip every tick".
            i64::try_from(record.catchup_window_ms).unwrap_or(i64::MAX)
        };

        // A buffered tick fires once the run before it has ended.
        if let Some(tick) = buffered
            && self.running_previous(last_run.as_deref(), now).await?.is_none()
        {
            let run_id = self.fire_tick(&record, tick).await?;
            self.update_tick(id, tick, "fired", &run_id, "buffered until the previous run ended")
                .await?;
            last_run = Some(run_id);
            buffered = None;
            self.store.set_schedule_buffered(id, None).await?;
        }

        for tick in cron.ticks(last_tick, now, MAX_TICKS_PER_ROUND) {
            let previous = self.running_previous(last_run.as_deref(), tick).await?;
            let late = now.saturating_sub(tick);
            let catch_up = if late >= LATE_MS {
                format!("caught up {} after it was due", baton_shared::schedule::human(late))
            } else {
                String::new()
            };
            match decide(tick, now, window, previous.as_deref(), record.overlap) {
                TickAction::Fire => {
                    if let Some(run_id) = self.fire_and_record(&record, tick, &catch_up).await? {
                        last_run = Some(run_id);
                    }
                }
                TickAction::CancelPreviousThenFire => {
                    if let Some(prev) = &previous {
                        match self
                            .cancel_run(prev, &format!("schedule {id}: a newer tick replaces it"))
                            .await
                        {
                            Ok(()) | Err(CoordinatorError::FailedPrecondition(_) | CoordinatorError::NotFound(_)) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    let reason = format!("cancelled the previous run {}", previous.unwrap_or_default());
                    let reason = if catch_up.is_empty() {
                        reason
                    } else {
                        format!("{reason}; {catch_up}")
                    };
                    if let Some(run_id) = self.fire_and_record(&record, tick, &reason).await? {
                        last_run = Some(run_id);
                    }
                }
                TickAction::Buffer => {
                    if let Some(older) = buffered {
                        self.update_tick(id, older, "skipped", "", "replaced by a later buffered tick")
                            .await?;
                    }
                    let reason = format!(
                        "buffered: the previous run {} is still running",
                        previous.unwrap_or_default()
                    );
                    tracing::info!(schedule = id, tick, %reason, "schedule tick buffered");
                    self.record_tick(id, tick, "buffered", "", &reason).await?;
                    buffered = Some(tick);
                    self.store.set_schedule_buffered(id, Some(tick)).await?;
                }
                TickAction::Skip(reason) => {
                    let reason = if catch_up.is_empty() || reason.starts_with("missed") {
                        reason
                    } else {
                        format!("{reason} when the tick was due; {catch_up}")
                    };
                    tracing::info!(schedule = id, tick, %reason, "schedule tick skipped");
                    self.record_tick(id, tick, "skipped", "", &reason).await?;
                }
            }
            last_tick = tick;
            self.store.set_schedule_last_tick(id, last_tick).await?;
        }

        // The next tick; sooner while a buffered tick waits for its previous run to end.
        let mut due = cron.next_after(now);
        if buffered.is_some() {
            let soon = now.saturating_add(1000);
            due = Some(due.map_or(soon, |d| d.min(soon)));
        }
        self.store.set_schedule_due(id, due).await?;
        Ok(())
    }
}

/// A ledger entry recorded now, as stored.
fn ledger_json(outcome: &str, run_id: &str, reason: &str) -> Result<String> {
    let entry = LedgerEntry {
        outcome: outcome.into(),
        run_id: run_id.into(),
        reason: reason.into(),
        recorded_at: now_ms(),
    };
    serde_json::to_string(&entry).map_err(|e| CoordinatorError::Internal(e.to_string()))
}

fn tick_view(id: &str, tick: i64, e: &LedgerEntry) -> ScheduleTick {
    ScheduleTick {
        schedule_id: id.to_string(),
        tick_at: timestamp(tick),
        outcome: e.outcome.clone(),
        run_id: e.run_id.clone(),
        reason: e.reason.clone(),
        recorded_at: timestamp(e.recorded_at),
    }
}

/// Runs the schedule loop until `shutdown` turns true: claims due schedules (with a lease, so two
/// coordinators never work on one schedule at once) and handles them.
pub async fn run(engine: Arc<Engine>, supervisor: Arc<Supervisor>, mut shutdown: watch::Receiver<bool>) {
    let poll = engine.config.timer_poll_interval.max(Duration::from_millis(100));
    let (lease, key) = (engine.config.timer_lease, engine.store.schedule_due_key());
    loop {
        if *shutdown.borrow() {
            return;
        }
        let claimed = match engine.store.claim_key(&key, now_ms(), lease, 64).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim due schedules");
                Vec::new()
            }
        };
        let keeper = crate::timers::Keeper::start(&engine.store, key.clone(), lease, &claimed);
        for c in claimed {
            if *shutdown.borrow() {
                // Shutting down: what has not started goes back for another coordinator.
                if let Err(e) = engine.store.give_back(&key, &c, now_ms()).await {
                    tracing::warn!(error = %e, schedule = %c.member, "could not give back a claimed schedule; it comes due when its lease lapses");
                }
                continue;
            }
            supervisor
                .item(&engine, ItemSet::Schedules, &c.member, engine.run_schedule(&c.member))
                .await;
        }
        drop(keeper);
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => {}
        }
    }
}
