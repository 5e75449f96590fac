//! What the coordinator's operational modules read and write in Redis: the health probe, the
//! data-loss marker, the figures `/metrics` samples, worker registrations, the queued-attempt
//! indexes, and parked items. Each is a typed [`Store`] method, so that no module outside the store
//! names `redis`.

use std::{collections::HashMap, time::Duration};

use redis::AsyncCommands;

use super::{
    Store, TimerKind,
    script::{Standalone, unknown_reply},
    timer_member,
};
use crate::error::Result;

/// Keys a `SCAN`, and members a `ZSCAN`, of [`Store::resend_queued`] asks for at a time.
pub const RESEND_PAGE: usize = 1000;

static PARK_ITEM: std::sync::LazyLock<Standalone> =
    std::sync::LazyLock::new(|| Standalone::new("park_item", include_str!("../scripts/park_item.lua")));

/// `park_item.lua`'s argument.
#[derive(serde::Serialize)]
struct ParkOnRunArgs<'a> {
    entry: &'a str,
    now: i64,
    max_events: u64,
    step: &'a str,
    attempt: String,
}

/// The durable-time figures `/metrics` shows ([`Store::timer_figures`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerFigures {
    /// Timers due at `now` or before.
    pub due: u64,
    /// Timers due at `overdue_before` or before.
    pub overdue: u64,
    /// Entries in the dispatch outbox.
    pub outbox: u64,
    /// The due time (Unix ms) of the outbox entry due first, if any.
    pub oldest_outbox_due: Option<i64>,
}

/// A handler's queued-attempt index ([`Store::queue_figures`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueFigures {
    /// Attempts dispatched to the handler and not started.
    pub waiting: u64,
    /// When the one dispatched first was dispatched (Unix ms), if any.
    pub oldest_since: Option<i64>,
}

/// A parked item to record ([`Store::park_item`]).
#[derive(Debug, Clone, Copy)]
pub struct ParkedRecord<'a> {
    /// The sorted set the item leaves (`{<ns>}:timers`, `{<ns>}:outbox` or `{<ns>}:schedule-due`).
    pub set: &'a str,
    /// Its member there.
    pub member: &'a str,
    /// Its field in `{<ns>}:parked-items`: `<loop>|<member>`.
    pub field: &'a str,
    /// The JSON record kept in that field.
    pub record: &'a str,
}

/// One attempt just dispatched, for [`Store::index_queued`]: its handler, run, step, attempt and
/// schedule-to-start timeout (`None`: none).
pub type QueuedAttempt = (String, String, String, u32, Option<Duration>);

impl Store {
    /// `PING`: whether Redis answers.
    ///
    /// # Errors
    /// [`crate::error::CoordinatorError::Redis`] with what the client saw.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// The namespace's data marker (`{<ns>}:marker`), written as `candidate` first if there is none
    /// (`SET NX` then `GET`, one round trip, so concurrent coordinators agree on one). A marker that
    /// changes between two reads means Redis lost its data.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn data_marker(&self, candidate: i64) -> Result<Option<String>> {
        let key = self.keys.marker();
        let mut conn = self.conn();
        let (_, now): (Option<String>, Option<String>) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(candidate)
            .arg("NX")
            .get(&key)
            .query_async(&mut conn)
            .await?;
        Ok(now)
    }

    /// The `run_id` of the Redis server answering (`INFO server`): a new one after every restart
    /// and on the replica a failover promoted.
    ///
    /// # Errors
    /// `Redis`; `Internal` when `INFO server` has no `run_id`.
    pub async fn server_run_id(&self) -> Result<String> {
        let mut conn = self.conn();
        let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await?;
        info.lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| crate::error::CoordinatorError::Internal("INFO server has no run_id".into()))
    }

    /// Records `run_id` as the Redis server the queued attempts were last checked against
    /// ([`Keys::redis_server`](baton_shared::keys::Keys::redis_server)) and answers the one
    /// recorded before (`None`: none was). `SET ... GET`, so of concurrent coordinators that saw
    /// the same change only one gets the old value.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn swap_redis_server(&self, run_id: &str) -> Result<Option<String>> {
        let mut conn = self.conn();
        Ok(redis::cmd("SET")
            .arg(self.keys.redis_server())
            .arg(run_id)
            .arg("GET")
            .query_async(&mut conn)
            .await?)
    }

    /// Gives every attempt in the handlers' queued indexes (dispatched, not yet started, as far
    /// as this Redis knows) an outbox entry due at `now`, so that the dispatch sweeper sends it
    /// again if it is still dispatched (`NX`: an entry already there keeps its time). After lost
    /// writes this is how an attempt whose start (and result) the old primary took, and which
    /// the worker then acknowledged, runs again instead of waiting forever. Reads the indexes in
    /// pages of `RESEND_PAGE` (1,000 entries; `SCAN`, `ZSCAN`), one pipeline per page; answers how many
    /// entries it wrote (an attempt seen twice by a scan counts twice).
    ///
    /// # Errors
    /// `Redis`: the caller tries again at its next round.
    pub async fn resend_queued(&self, now: i64) -> Result<u64> {
        // Cursor loops rather than the crate's `scan_match`/`zscan` iterators: those ask with
        // `COUNT` 10, a hundred times the round trips over an index of a million attempts.
        let mut conn = self.conn();
        let outbox = self.keys.outbox();
        let mut sent = 0u64;
        let mut cursor = 0u64;
        loop {
            let (next, indexes): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(self.keys.queued_scan_pattern())
                .arg("COUNT")
                .arg(RESEND_PAGE)
                .query_async(&mut conn)
                .await?;
            for index in indexes {
                let mut zcursor = 0u64;
                loop {
                    let (znext, page): (u64, Vec<(String, f64)>) = redis::cmd("ZSCAN")
                        .arg(&index)
                        .arg(zcursor)
                        .arg("COUNT")
                        .arg(RESEND_PAGE)
                        .query_async(&mut conn)
                        .await?;
                    let mut pipe = redis::pipe();
                    for (member, _) in &page {
                        // `<run>|<step>|<attempt>`: the outbox names the run and the step.
                        if let Some((run_step, _attempt)) = member.rsplit_once('|') {
                            pipe.cmd("ZADD").arg(&outbox).arg("NX").arg(now).arg(run_step).ignore();
                            sent = sent.saturating_add(1);
                        }
                    }
                    pipe.query_async::<()>(&mut conn).await?;
                    zcursor = znext;
                    if zcursor == 0 {
                        break;
                    }
                }
            }
            cursor = next;
            if cursor == 0 {
                return Ok(sent);
            }
        }
    }

    /// Timers due by `now` and by `overdue_before` (Unix ms), outbox entries, and the outbox's
    /// first due time, in one round trip.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn timer_figures(&self, now: i64, overdue_before: i64) -> Result<TimerFigures> {
        let mut conn = self.conn();
        let (due, overdue, outbox, oldest): (u64, u64, u64, Vec<(String, f64)>) = redis::pipe()
            .zcount(self.keys.timers(), "-inf", now)
            .zcount(self.keys.timers(), "-inf", overdue_before)
            .zcard(self.keys.outbox())
            .zrange_withscores(self.keys.outbox(), 0, 0)
            .query_async(&mut conn)
            .await?;
        Ok(TimerFigures {
            due,
            overdue,
            outbox,
            oldest_outbox_due: oldest.first().map(|(_, due)| *due as i64),
        })
    }

    /// The keyed pools of concurrency pool `base` (`base/<key>`) that have holders, at most `max`
    /// (a `SCAN`, so a namespace with many keys is read in pages).
    ///
    /// # Errors
    /// `Redis`.
    pub async fn keyed_pools(&self, base: &str, max: usize) -> Result<Vec<String>> {
        let prefix = self.keys.namespaced("sem:");
        let pattern = format!(
            "{}{}/*:holders",
            baton_shared::keys::glob_escape(&prefix),
            baton_shared::keys::glob_escape(base)
        );
        let mut conn = self.conn();
        let mut found = Vec::new();
        let mut iter: redis::AsyncIter<String> = conn.scan_match(&pattern).await?;
        while let Some(k) = futures::StreamExt::next(&mut iter).await {
            if let Ok(k) = k
                && let Some(pool) = k.strip_prefix(&prefix).and_then(|p| p.strip_suffix(":holders"))
            {
                found.push(pool.to_string());
            }
            if found.len() >= max {
                break;
            }
        }
        Ok(found)
    }

    /// Slots of pool `pool` held at `now` (leases not expired) and attempts waiting for one.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn pool_figures(&self, pool: &str, now: i64) -> Result<(u64, u64)> {
        let mut conn = self.conn();
        Ok(redis::pipe()
            .zcount(self.keys.slot_holders(pool), now, "+inf")
            .llen(self.keys.slot_waiters(pool))
            .query_async(&mut conn)
            .await?)
    }

    /// Adds attempts just dispatched to their handlers' queued indexes (`NX`: a re-sent dispatch
    /// keeps its first time) with their schedule-to-start timers (`NX`), and drops index entries
    /// older than `cutoff` (Unix ms) of those handlers. One round trip. Entries with no handler are
    /// skipped.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn index_queued(&self, queued: &[QueuedAttempt], now: i64, cutoff: i64) -> Result<()> {
        let keys = &self.keys;
        let mut pipe = redis::pipe();
        let mut handlers = std::collections::BTreeSet::new();
        for (handler, run, step, attempt, limit) in queued {
            if handler.is_empty() {
                continue;
            }
            handlers.insert(handler.as_str());
            pipe.cmd("ZADD")
                .arg(keys.queued(handler))
                .arg("NX")
                .arg(now)
                .arg(format!("{run}|{step}|{attempt}"))
                .ignore();
            if let Some(limit) = limit {
                pipe.cmd("ZADD")
                    .arg(keys.timers())
                    .arg("NX")
                    .arg(crate::machine::due(now, *limit))
                    .arg(timer_member(TimerKind::ScheduleToStart, run, step, *attempt))
                    .ignore();
            }
        }
        for h in handlers {
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(keys.queued(h))
                .arg("-inf")
                .arg(format!("({cutoff}"))
                .ignore();
        }
        let mut conn = self.conn();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Takes attempt `attempt` of `run`/`step` out of `handler`'s queued index ('' for none) with
    /// its schedule-to-start timer.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn unindex_queued(&self, handler: &str, run: &str, step: &str, attempt: u32) -> Result<()> {
        let mut pipe = redis::pipe();
        if !handler.is_empty() {
            pipe.zrem(self.keys.queued(handler), format!("{run}|{step}|{attempt}"))
                .ignore();
        }
        pipe.zrem(
            self.keys.timers(),
            timer_member(TimerKind::ScheduleToStart, run, step, attempt),
        )
        .ignore();
        let mut conn = self.conn();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Upserts worker `worker_id`'s registration `json`, kept `retention_ms` (≥ 1) and indexed by
    /// last sight `now` (Unix ms; index entries older than the retention go); its liveness key
    /// lasts `alive_for` (`None`: the worker stopped, the key goes at once). One round trip.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn put_worker(
        &self,
        worker_id: &str,
        json: &str,
        alive_for: Option<Duration>,
        retention_ms: i64,
        now: i64,
    ) -> Result<()> {
        let keys = &self.keys;
        let mut pipe = redis::pipe();
        let alive = keys.worker_alive(worker_id);
        match alive_for {
            None => {
                pipe.del(&alive).ignore();
            }
            Some(d) => {
                pipe.cmd("SET")
                    .arg(&alive)
                    .arg(now)
                    .arg("PX")
                    .arg(baton_shared::time::duration_ms(d).max(1))
                    .ignore();
            }
        }
        pipe.cmd("SET")
            .arg(keys.worker(worker_id))
            .arg(json)
            .arg("PX")
            .arg(retention_ms.max(1))
            .ignore()
            .zadd(keys.workers(), worker_id, now)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(keys.workers())
            .arg("-inf")
            .arg(format!("({}", now.saturating_sub(retention_ms)))
            .ignore();
        let mut conn = self.conn();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// The kept worker registrations, most recently seen first, at most `max`: `(worker id,
    /// record JSON)`; a registration that expired since it was indexed is left out. Read 500 at a
    /// time.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn worker_records(&self, max: usize) -> Result<Vec<(String, String)>> {
        let keys = &self.keys;
        let mut conn = self.conn();
        let stop = isize::try_from(max).unwrap_or(isize::MAX).saturating_sub(1);
        if max == 0 {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = conn.zrevrange(keys.workers(), 0, stop).await?;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let names: Vec<String> = chunk.iter().map(|id| keys.worker(id)).collect();
            let values: Vec<Option<String>> = redis::cmd("MGET").arg(&names).query_async(&mut conn).await?;
            out.extend(chunk.iter().zip(values).filter_map(|(id, v)| Some((id.clone(), v?))));
        }
        Ok(out)
    }

    /// `handler`'s queued-attempt index: how many wait and since when the first.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn queue_figures(&self, handler: &str) -> Result<QueueFigures> {
        let mut conn = self.conn();
        let (waiting, oldest): (u64, Vec<(String, i64)>) = redis::pipe()
            .zcard(self.keys.queued(handler))
            .zrange_withscores(self.keys.queued(handler), 0, 0)
            .query_async(&mut conn)
            .await?;
        Ok(QueueFigures {
            waiting,
            oldest_since: oldest.first().map(|(_, ms)| *ms),
        })
    }

    /// How many attempts of `handler` were dispatched before attempt `attempt` of `run`/`step` and
    /// have not started (its rank in the queued index); `None` when it is not indexed.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn queued_rank(&self, handler: &str, run: &str, step: &str, attempt: u32) -> Result<Option<u64>> {
        let mut conn = self.conn();
        Ok(conn
            .zrank(self.keys.queued(handler), format!("{run}|{step}|{attempt}"))
            .await?)
    }

    /// The hash of parked items, `{<ns>}:parked-items`.
    pub fn parked_items_key(&self) -> String {
        self.keys.parked_items()
    }

    /// Parks an item: removes it from its sorted set and records it in `{<ns>}:parked-items`, in one
    /// round trip. Recording it on its run is [`Store::note_parked_on_run`].
    ///
    /// # Errors
    /// `Redis`.
    pub async fn park_item(&self, p: &ParkedRecord<'_>) -> Result<()> {
        let mut conn = self.conn();
        let _: () = redis::pipe()
            .zrem(p.set, p.member)
            .ignore()
            .hset(self.parked_items_key(), p.field, p.record)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The parked items: `<loop>|<member>` -> the JSON record.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn parked_items(&self) -> Result<HashMap<String, String>> {
        let mut conn = self.conn();
        Ok(conn.hgetall(self.parked_items_key()).await?)
    }

    /// Records on run `run` that one of its items was parked (`park_item.lua`): `entry` joins the
    /// run's `parked_items` (GetRun) and a `parked` event its history, for `step` ('' for the run)
    /// and `attempt` (0: none) at `now` (Unix ms). Returns `false` when the run does not exist
    /// (expired): nothing is created then.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn note_parked_on_run(&self, run: &str, step: &str, attempt: u32, entry: &str, now: i64) -> Result<bool> {
        let s = &*PARK_ITEM;
        let args = ParkOnRunArgs {
            entry,
            now,
            max_events: self.events_max_len,
            step,
            attempt: attempt.to_string(),
        };
        let reply = s
            .call(self, &[self.keys.run(run), self.keys.events(run)], &args)
            .await?;
        match reply.as_slice() {
            [tag] if tag == "recorded" => Ok(true),
            [tag] if tag == "no_run" => Ok(false),
            _ => Err(unknown_reply(s.name(), &reply)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::script::assert_header_matches;

    #[test]
    fn the_park_scripts_header_names_its_arguments_and_it_builds_no_key() {
        assert_header_matches(
            include_str!("../scripts/park_item.lua"),
            "store::admin::ParkOnRunArgs",
            &ParkOnRunArgs {
                entry: "e",
                now: 1,
                max_events: 2,
                step: "s",
                attempt: "0".into(),
            },
        );
    }
}
