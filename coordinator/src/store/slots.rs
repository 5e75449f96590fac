//! Cross-run pools: concurrency slots (`acquire.lua`, `wake.lua`), run slots of a workflow with
//! `max_concurrent_runs` (`wake_runs.lua`) and rate windows (`rate.lua`). Every key a script
//! touches is in its KEYS: the runs a wake hands slots to are read from the head of the pool's
//! queue first and declared, and the script stops (arming a wake timer due now) where the queue no
//! longer starts with them.

use std::time::Duration;

use redis::AsyncCommands;
use serde::Serialize;

use super::{
    SlotOutcome, Store, WAKE_BATCH,
    script::{Standalone, number, unknown_reply},
};
use crate::error::Result;

static ACQUIRE: std::sync::LazyLock<Standalone> =
    std::sync::LazyLock::new(|| Standalone::new("acquire", include_str!("../scripts/acquire.lua")));
static WAKE: std::sync::LazyLock<Standalone> =
    std::sync::LazyLock::new(|| Standalone::new("wake", include_str!("../scripts/wake.lua")));
static WAKE_RUNS: std::sync::LazyLock<Standalone> =
    std::sync::LazyLock::new(|| Standalone::new("wake_runs", include_str!("../scripts/wake_runs.lua")));
static RATE: std::sync::LazyLock<Standalone> =
    std::sync::LazyLock::new(|| Standalone::new("rate", include_str!("../scripts/rate.lua")));

/// `acquire.lua`'s argument.
#[derive(Serialize)]
struct AcquireArgs<'a> {
    now: i64,
    limit: u32,
    run: &'a str,
    step: &'a str,
    attempt: String,
    lease_until: i64,
    pool: &'a str,
    detail: &'a str,
    max_events: u64,
}

/// `wake.lua`'s argument.
#[derive(Serialize)]
struct WakeArgs<'a> {
    now: i64,
    limit: u32,
    lease_until: i64,
    outbox_hold_ms: u64,
    max_events: u64,
    pool: &'a str,
    waiters: &'a [String],
}

/// `wake_runs.lua`'s argument.
#[derive(Serialize)]
struct WakeRunsArgs<'a> {
    now: i64,
    limit: u32,
    outbox_hold_ms: u64,
    max_events: u64,
    pool: &'a str,
    runs: &'a [String],
}

/// `rate.lua`'s argument.
#[derive(Serialize)]
struct RateArgs<'a> {
    now: i64,
    period_ms: u64,
    limit: u32,
    member: &'a str,
}

impl Store {
    fn outbox_hold_ms(&self) -> u64 {
        u64::try_from(self.outbox_hold.as_millis()).unwrap_or(u64::MAX)
    }

    /// The key that remembers the limit concurrency pool `pool` was last asked for with.
    fn slot_limit_key(&self, pool: &str) -> String {
        self.keys.slot_limit(pool)
    }

    /// Asks for a slot of concurrency pool `pool` (at most `limit` holders) for an attempt; see
    /// `acquire.lua`. `lease_until` (Unix ms) bounds the slot if the attempt never ends.
    ///
    /// # Errors
    /// [`crate::error::CoordinatorError::Redis`]; `Internal` for an answer the script does not
    /// give.
    #[allow(clippy::too_many_arguments)]
    pub async fn acquire(
        &self,
        pool: &str,
        limit: u32,
        run_id: &str,
        step: &str,
        attempt: u32,
        lease_until: i64,
        detail: &str,
        now: i64,
    ) -> Result<SlotOutcome> {
        let s = &*ACQUIRE;
        let keys = [
            self.keys.slot_holders(pool),
            self.keys.slot_waiters(pool),
            self.keys.outbox(),
            self.keys.timers(),
            self.slot_limit_key(pool),
            self.keys.steps(run_id),
            self.keys.events(run_id),
        ];
        let args = AcquireArgs {
            now,
            limit,
            run: run_id,
            step,
            attempt: attempt.to_string(),
            lease_until,
            pool,
            detail,
            max_events: self.events_max_len,
        };
        let reply = s.call(self, &keys, &args).await?;
        match reply.as_slice() {
            [tag] => match tag.as_str() {
                "acquired" | "held" => Ok(SlotOutcome::Held),
                "queued" => Ok(SlotOutcome::Queued),
                "stale" => Ok(SlotOutcome::Stale),
                _ => Err(unknown_reply(s.name(), &reply)),
            },
            _ => Err(unknown_reply(s.name(), &reply)),
        }
    }

    /// The first `WAKE_BATCH` entries of list `key` (a pool's waiters or queued runs).
    async fn queue_head(&self, key: &str) -> Result<Vec<String>> {
        let mut conn = self.conn();
        let last = isize::try_from(WAKE_BATCH).unwrap_or(isize::MAX) - 1;
        Ok(conn.lrange(key, 0, last).await?)
    }

    /// Gives the free run slots of `pool` to the queued runs (see `wake_runs.lua`). Returns the runs
    /// whose roots were dispatched, to publish. Two round trips: the head of the queue is read
    /// first, so that the script declares the keys of the runs it starts.
    ///
    /// # Errors
    /// `Redis`; `Internal` for an answer the script does not give.
    pub async fn wake_runs(&self, pool: &str, limit: u32, now: i64) -> Result<Vec<String>> {
        let s = &*WAKE_RUNS;
        let runs = self.queue_head(&self.keys.slot_waiters(pool)).await?;
        let mut keys = vec![
            self.keys.slot_holders(pool),
            self.keys.slot_waiters(pool),
            self.keys.outbox(),
            self.keys.timers(),
        ];
        for run in &runs {
            keys.extend([self.keys.run(run), self.keys.steps(run), self.keys.events(run)]);
        }
        let args = WakeRunsArgs {
            now,
            limit,
            outbox_hold_ms: self.outbox_hold_ms(),
            max_events: self.events_max_len,
            pool,
            runs: &runs,
        };
        let reply = s.call(self, &keys, &args).await?;
        match reply.split_first() {
            Some((tag, woken)) if tag == "woken" => Ok(woken.to_vec()),
            _ => Err(unknown_reply(s.name(), &reply)),
        }
    }

    /// Hands the free slots of `pool` to its waiters (see `wake.lua`). Returns the (run, step,
    /// attempt) now holding a slot and dispatched again, to publish. Two round trips, as
    /// [`Store::wake_runs`].
    ///
    /// # Errors
    /// `Redis`; `Internal` for an answer the script does not give.
    pub async fn wake(&self, pool: &str, limit: u32, lease_until: i64, now: i64) -> Result<Vec<(String, String, u32)>> {
        let s = &*WAKE;
        let waiters = self.queue_head(&self.keys.slot_waiters(pool)).await?;
        let mut keys = vec![
            self.keys.slot_holders(pool),
            self.keys.slot_waiters(pool),
            self.keys.outbox(),
            self.keys.timers(),
        ];
        for m in &waiters {
            // A member that does not parse is dropped by the script without touching these.
            let run = m.split('|').next().unwrap_or_default();
            keys.extend([self.keys.run(run), self.keys.steps(run), self.keys.events(run)]);
        }
        let args = WakeArgs {
            now,
            limit,
            lease_until,
            outbox_hold_ms: self.outbox_hold_ms(),
            max_events: self.events_max_len,
            pool,
            waiters: &waiters,
        };
        let reply = s.call(self, &keys, &args).await?;
        match reply.split_first() {
            Some((tag, woken)) if tag == "woken" && woken.len() % 3 == 0 => woken
                .chunks(3)
                .map(|c| Ok((c[0].clone(), c[1].clone(), number(s.name(), &c[2])?)))
                .collect(),
            _ => Err(unknown_reply(s.name(), &reply)),
        }
    }

    /// The limit a concurrency pool was last asked for with (see `acquire.lua`), if any.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn slot_limit(&self, pool: &str) -> Result<Option<u32>> {
        let mut conn = self.conn();
        Ok(conn.get(self.slot_limit_key(pool)).await?)
    }

    /// Takes one start from rate limit `pool` (`limit` per `period`) for `member`
    /// (`run|step|attempt`); `Ok(None)` when taken, `Ok(Some(t))` when the next start frees up at
    /// `t` (Unix ms, at least `now + 1`).
    ///
    /// # Errors
    /// `Redis`; `Internal` for an answer the script does not give.
    pub async fn rate_take(
        &self,
        pool: &str,
        limit: u32,
        period: Duration,
        member: &str,
        now: i64,
    ) -> Result<Option<i64>> {
        let s = &*RATE;
        let args = RateArgs {
            now,
            period_ms: crate::machine::span_ms(period),
            limit,
            member,
        };
        let reply = s.call(self, &[self.keys.rate_window(pool)], &args).await?;
        match reply.as_slice() {
            [tag] if tag == "ok" => Ok(None),
            // Never before now + 1 ms, so a window that cannot be read back does not turn into a busy
            // poll.
            [tag, at] if tag == "wait" => Ok(Some(
                number::<i64>(s.name(), at)?.clamp(now.saturating_add(1), crate::machine::LATEST_DUE_MS),
            )),
            _ => Err(unknown_reply(s.name(), &reply)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::script::assert_header_matches;

    #[test]
    fn the_pool_scripts_headers_name_their_arguments_and_build_no_key() {
        let list = vec!["r|s|1".to_string()];
        assert_header_matches(
            include_str!("../scripts/acquire.lua"),
            "store::slots::AcquireArgs",
            &AcquireArgs {
                now: 1,
                limit: 2,
                run: "r",
                step: "s",
                attempt: "1".into(),
                lease_until: 3,
                pool: "p",
                detail: "d",
                max_events: 4,
            },
        );
        assert_header_matches(
            include_str!("../scripts/wake.lua"),
            "store::slots::WakeArgs",
            &WakeArgs {
                now: 1,
                limit: 2,
                lease_until: 3,
                outbox_hold_ms: 4,
                max_events: 5,
                pool: "p",
                waiters: &list,
            },
        );
        assert_header_matches(
            include_str!("../scripts/wake_runs.lua"),
            "store::slots::WakeRunsArgs",
            &WakeRunsArgs {
                now: 1,
                limit: 2,
                outbox_hold_ms: 3,
                max_events: 4,
                pool: "p",
                runs: &list,
            },
        );
        assert_header_matches(
            include_str!("../scripts/rate.lua"),
            "store::slots::RateArgs",
            &RateArgs {
                now: 1,
                period_ms: 2,
                limit: 3,
                member: "r|s|1",
            },
        );
    }
}
