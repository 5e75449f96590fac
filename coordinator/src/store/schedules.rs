//! Cron schedules in Redis: the records (hash `{<ns>}:schedules`, id -> JSON), each schedule's
//! state (`{<ns>}:schedule:<id>:state`: `last_tick`, `last_run`, `buffered`), its ledger
//! (`{<ns>}:schedule:<id>:ticks`: tick, Unix ms -> entry JSON) and the due set
//! (`{<ns>}:schedule-due`: id -> next due time, Unix ms). [`crate::schedules`] owns what they mean;
//! these methods only read and write them.

use std::collections::HashMap;

use redis::AsyncCommands;

use super::Store;
use crate::error::Result;

/// A schedule's state ([`Store::schedule_state`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleState {
    /// The last tick handled (Unix ms), if any.
    pub last_tick: Option<i64>,
    /// The run the schedule started last, if any.
    pub last_run: Option<String>,
    /// A tick buffered until the previous run ends (Unix ms), if any.
    pub buffered: Option<i64>,
}

impl Store {
    fn schedule_records_key(&self) -> String {
        self.keys.schedules()
    }

    /// The sorted set of due schedules (`{<ns>}:schedule-due`), which the schedule loop claims from.
    pub fn schedule_due_key(&self) -> String {
        self.keys.schedule_due()
    }

    fn schedule_state_key(&self, id: &str) -> String {
        self.keys.schedule_state(id)
    }

    fn schedule_ledger_key(&self, id: &str) -> String {
        self.keys.schedule_ticks(id)
    }

    /// Schedule `id`'s record JSON, if any.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn schedule_record(&self, id: &str) -> Result<Option<String>> {
        let mut conn = self.conn();
        Ok(conn.hget(self.schedule_records_key(), id).await?)
    }

    /// Every schedule record: id -> JSON.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn schedule_records(&self) -> Result<HashMap<String, String>> {
        let mut conn = self.conn();
        Ok(conn.hgetall(self.schedule_records_key()).await?)
    }

    /// Writes schedule `id`'s record `json` and its due time (`next`, Unix ms; `None` takes it out
    /// of the due set), in one round trip. `last_tick` becomes `now` when `reset_last_tick`, else
    /// only when the schedule has none (ticks before a schedule existed are not owed).
    ///
    /// # Errors
    /// `Redis`.
    pub async fn put_schedule_record(
        &self,
        id: &str,
        json: &str,
        now: i64,
        next: Option<i64>,
        reset_last_tick: bool,
    ) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.hset(self.schedule_records_key(), id, json).ignore();
        if reset_last_tick {
            pipe.hset(self.schedule_state_key(id), "last_tick", now).ignore();
        } else {
            pipe.hset_nx(self.schedule_state_key(id), "last_tick", now).ignore();
        }
        match next {
            Some(next) => pipe.zadd(self.schedule_due_key(), id, next).ignore(),
            None => pipe.zrem(self.schedule_due_key(), id).ignore(),
        };
        let mut conn = self.conn();
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// Writes a paused schedule's record `json` and takes it out of the due set (its state stays).
    ///
    /// # Errors
    /// `Redis`.
    pub async fn pause_schedule_record(&self, id: &str, json: &str) -> Result<()> {
        let mut conn = self.conn();
        let _: () = redis::pipe()
            .hset(self.schedule_records_key(), id, json)
            .ignore()
            .zrem(self.schedule_due_key(), id)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Deletes schedule `id`: its record, due entry, state and ledger.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn delete_schedule_record(&self, id: &str) -> Result<()> {
        let mut conn = self.conn();
        let _: () = redis::pipe()
            .hdel(self.schedule_records_key(), id)
            .ignore()
            .zrem(self.schedule_due_key(), id)
            .ignore()
            .del(self.schedule_state_key(id))
            .ignore()
            .del(self.schedule_ledger_key(id))
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Schedule `id`'s ledger: tick (Unix ms) -> entry JSON.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn schedule_ledger(&self, id: &str) -> Result<HashMap<i64, String>> {
        let mut conn = self.conn();
        Ok(conn.hgetall(self.schedule_ledger_key(id)).await?)
    }

    /// Whether schedule `id` is in the due set, and the run it started last, in one round trip.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn schedule_due_and_last_run(&self, id: &str) -> Result<(bool, Option<String>)> {
        let mut conn = self.conn();
        let (next, last_run): (Option<f64>, Option<String>) = redis::pipe()
            .zscore(self.schedule_due_key(), id)
            .hget(self.schedule_state_key(id), "last_run")
            .query_async(&mut conn)
            .await?;
        Ok((next.is_some(), last_run))
    }

    /// Schedule `id`'s state; fields that do not parse read as absent.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn schedule_state(&self, id: &str) -> Result<ScheduleState> {
        let mut conn = self.conn();
        let state: HashMap<String, String> = conn.hgetall(self.schedule_state_key(id)).await?;
        Ok(ScheduleState {
            last_tick: state.get("last_tick").and_then(|t| t.parse().ok()),
            last_run: state.get("last_run").cloned(),
            buffered: state.get("buffered").and_then(|t| t.parse().ok()),
        })
    }

    /// Records the run schedule `id` started last.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn set_schedule_last_run(&self, id: &str, run_id: &str) -> Result<()> {
        let mut conn = self.conn();
        let _: () = conn.hset(self.schedule_state_key(id), "last_run", run_id).await?;
        Ok(())
    }

    /// Records the last tick schedule `id` handled (Unix ms).
    ///
    /// # Errors
    /// `Redis`.
    pub async fn set_schedule_last_tick(&self, id: &str, tick: i64) -> Result<()> {
        let mut conn = self.conn();
        let _: () = conn.hset(self.schedule_state_key(id), "last_tick", tick).await?;
        Ok(())
    }

    /// Sets (`Some`, Unix ms) or clears schedule `id`'s buffered tick.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn set_schedule_buffered(&self, id: &str, tick: Option<i64>) -> Result<()> {
        let mut conn = self.conn();
        match tick {
            Some(t) => {
                let _: () = conn.hset(self.schedule_state_key(id), "buffered", t).await?;
            }
            None => {
                let _: i64 = conn.hdel(self.schedule_state_key(id), "buffered").await?;
            }
        }
        Ok(())
    }

    /// Sets schedule `id`'s next due time (Unix ms), or takes it out of the due set (`None`).
    ///
    /// # Errors
    /// `Redis`.
    pub async fn set_schedule_due(&self, id: &str, due: Option<i64>) -> Result<()> {
        let mut conn = self.conn();
        match due {
            Some(d) => {
                let _: i64 = conn.zadd(self.schedule_due_key(), id, d).await?;
            }
            None => {
                let _: i64 = conn.zrem(self.schedule_due_key(), id).await?;
            }
        }
        Ok(())
    }

    /// Writes a tick's ledger entry `json` unless the tick has one (`HSETNX`: a tick is recorded
    /// once), then keeps the ledger to its newest `keep` entries once it holds more than twice
    /// that. Returns whether the entry was written.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn record_schedule_tick(&self, id: &str, tick: i64, json: &str, keep: usize) -> Result<bool> {
        let key = self.schedule_ledger_key(id);
        let mut conn = self.conn();
        let (added, len): (bool, usize) = redis::pipe()
            .hset_nx(&key, tick, json)
            .hlen(&key)
            .query_async(&mut conn)
            .await?;
        if len > keep.saturating_mul(2) {
            let mut all: Vec<i64> = conn.hkeys(&key).await?;
            all.sort_unstable();
            // Another coordinator may have trimmed since HLEN: never underflow.
            let drop: Vec<i64> = all[..all.len().saturating_sub(keep)].to_vec();
            if !drop.is_empty() {
                let _: i64 = conn.hdel(&key, drop).await?;
            }
        }
        Ok(added)
    }

    /// Overwrites a tick's ledger entry with `json`.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn update_schedule_tick(&self, id: &str, tick: i64, json: &str) -> Result<()> {
        let mut conn = self.conn();
        let _: () = conn.hset(self.schedule_ledger_key(id), tick, json).await?;
        Ok(())
    }
}
