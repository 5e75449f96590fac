//! What the archiver (`crate::archiver`) reads and writes in Redis: the archive outbox (finished
//! runs waiting to be archived, written by `finish_run` in common.lua), the archiver's lease, a
//! run's whole history, the tombstone a run shrinks to once it is archived, and a run brought back
//! from the archive (RetryRun, RerunRun).

use std::time::Duration;

use baton_shared::keys::run_index_member;
use redis::AsyncCommands;

use super::{
    Store,
    script::{Standalone, unknown_reply},
};
use crate::error::{CoordinatorError, Result};

static TOMBSTONE: std::sync::LazyLock<Standalone> =
    std::sync::LazyLock::new(|| Standalone::new("archive_tombstone", include_str!("../scripts/archive_tombstone.lua")));
static LEASE: std::sync::LazyLock<Standalone> =
    std::sync::LazyLock::new(|| Standalone::new("archiver_lease", include_str!("../scripts/archiver_lease.lua")));
static RESTORE: std::sync::LazyLock<Standalone> =
    std::sync::LazyLock::new(|| Standalone::new("restore_run", include_str!("../scripts/restore_run.lua")));

/// Events read per `XRANGE` when a run's whole history is read ([`Store::whole_history`]).
const HISTORY_PAGE: usize = 500;

/// `archive_tombstone.lua`'s argument.
#[derive(serde::Serialize)]
struct TombstoneArgs<'a> {
    run: &'a str,
    finished_at: i64,
    now: i64,
    grace_ms: u64,
    member: &'a str,
}

/// `archiver_lease.lua`'s argument.
#[derive(serde::Serialize)]
struct LeaseArgs<'a> {
    op: &'a str,
    token: &'a str,
    lease_ms: u64,
}

/// `restore_run.lua`'s argument.
#[derive(serde::Serialize)]
struct RestoreArgs<'a> {
    run: &'a [(String, String)],
    steps: &'a [(String, String)],
    events: &'a [(String, Vec<(String, String)>)],
    member: &'a str,
}

/// What [`Store::tombstone`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tombstoned {
    /// The run is its tombstone now, out of the outbox and the run indexes.
    Done,
    /// It was a tombstone already (an archiver died after shrinking it): its entry left the outbox.
    Already,
    /// No such run: its entry left the outbox.
    Missing,
    /// The run is no longer the end that was archived (a re-run started it again, or it ended
    /// again): the entry of that end left the outbox, the run was not touched. Its status.
    Moved(String),
}

/// The archive outbox at a glance ([`Store::archive_backlog`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveBacklog {
    /// Finished runs waiting to be archived.
    pub runs: u64,
    /// When the one waiting longest finished (Unix ms), if any.
    pub oldest_finished_at: Option<i64>,
}

/// Where one run's keys are, for [`Store::tombstone`]: its workflow, its creation (Unix ms, for its
/// run-index member) and the steps that emitted runs (their emit plans go with it).
#[derive(Debug, Clone, Default)]
pub struct TombstoneOf<'a> {
    /// The run's workflow (its runs index).
    pub workflow: &'a str,
    /// The run's creation, Unix ms.
    pub created_at: i64,
    /// Its emitting steps.
    pub emitting_steps: Vec<&'a str>,
}

impl Store {
    /// The archive outbox: how many runs wait and since when (one round trip).
    ///
    /// # Errors
    /// `Redis`.
    pub async fn archive_backlog(&self) -> Result<ArchiveBacklog> {
        let key = self.keys.archive_outbox();
        let mut conn = self.conn();
        let (runs, oldest): (u64, Vec<(String, f64)>) = redis::pipe()
            .zcard(&key)
            .zrange_withscores(&key, 0, 0)
            .query_async(&mut conn)
            .await?;
        Ok(ArchiveBacklog {
            runs,
            oldest_finished_at: oldest.first().map(|(_, s)| *s as i64),
        })
    }

    /// The `limit` runs of the archive outbox that finished first: (run id, its end as scored,
    /// Unix ms).
    ///
    /// # Errors
    /// `Redis`.
    pub async fn archive_due(&self, limit: usize) -> Result<Vec<(String, i64)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let last = isize::try_from(limit).unwrap_or(isize::MAX).saturating_sub(1);
        let due: Vec<(String, f64)> = conn.zrange_withscores(self.keys.archive_outbox(), 0, last).await?;
        Ok(due.into_iter().map(|(m, s)| (m, s as i64)).collect())
    }

    /// Takes (or renews, when it is ours) the namespace's archiver lease for `lease`, as `token`;
    /// `true` when this coordinator holds it now.
    ///
    /// # Errors
    /// `Redis`; `Internal` for a reply the script does not give.
    pub async fn take_archiver_lease(&self, token: &str, lease: Duration) -> Result<bool> {
        let args = LeaseArgs {
            op: "take",
            token,
            lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1),
        };
        let out = LEASE.call(self, &[self.keys.archiver_lease()], &args).await?;
        match out.first().map(String::as_str) {
            Some("held") => Ok(true),
            Some("busy") => Ok(false),
            _ => Err(unknown_reply(LEASE.name(), &out)),
        }
    }

    /// Drops the archiver lease if `token` holds it (at shutdown, so another coordinator takes over
    /// at once).
    ///
    /// # Errors
    /// `Redis`.
    pub async fn drop_archiver_lease(&self, token: &str) -> Result<()> {
        let args = LeaseArgs {
            op: "drop",
            token,
            lease_ms: 1,
        };
        LEASE.call(self, &[self.keys.archiver_lease()], &args).await?;
        Ok(())
    }

    /// A run's whole history (its events stream), oldest first, read a page at a time.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn whole_history(&self, run_id: &str) -> Result<Vec<super::StreamEntry>> {
        let mut out = Vec::new();
        let mut last = "-".to_string();
        loop {
            let page = self.events_after(run_id, &last, HISTORY_PAGE).await?;
            let n = page.len();
            if let Some((id, _)) = page.last() {
                last.clone_from(id);
            }
            out.extend(page);
            if n < HISTORY_PAGE {
                return Ok(out);
            }
        }
    }

    /// Shrinks run `run_id`, whose end `finished_at` (Unix ms, as the archive outbox scored it) was
    /// just written to the archive, to its tombstone (expiring after `grace`), and takes it out of
    /// the archive outbox and the run indexes: one script (`archive_tombstone.lua`).
    ///
    /// # Errors
    /// `Redis`; `Internal` for a reply the script does not give.
    pub async fn tombstone(
        &self,
        run_id: &str,
        finished_at: i64,
        of: &TombstoneOf<'_>,
        grace: Duration,
        now: i64,
    ) -> Result<Tombstoned> {
        let k = &self.keys;
        let member = run_index_member(of.created_at, run_id);
        let mut keys = vec![
            k.run(run_id),
            k.steps(run_id),
            k.events(run_id),
            k.log_tail(run_id),
            k.archive_outbox(),
            k.runs_index(),
            k.workflow_runs_index(of.workflow),
        ];
        for step in &of.emitting_steps {
            keys.push(k.emit_plan(run_id, step));
            keys.push(k.emit_done(run_id, step));
        }
        let args = TombstoneArgs {
            run: run_id,
            finished_at,
            now,
            grace_ms: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX).max(1),
            member: &member,
        };
        let out = TOMBSTONE.call(self, &keys, &args).await?;
        self.step_ids.invalidate(run_id);
        match (out.first().map(String::as_str), out.get(1)) {
            (Some("tombstoned"), _) => Ok(Tombstoned::Done),
            (Some("already"), _) => Ok(Tombstoned::Already),
            (Some("missing"), _) => Ok(Tombstoned::Missing),
            (Some("moved"), Some(status)) => Ok(Tombstoned::Moved(status.clone())),
            _ => Err(unknown_reply(TOMBSTONE.name(), &out)),
        }
    }

    /// Whether run `run_id` is an archived run's tombstone (`Some(true)`), a run Redis holds whole
    /// (`Some(false)`), or unknown to Redis (`None`).
    ///
    /// # Errors
    /// `Redis`.
    pub async fn run_archived(&self, run_id: &str) -> Result<Option<bool>> {
        let mut conn = self.conn();
        let (exists, archived): (bool, bool) = redis::pipe()
            .exists(self.keys.run(run_id))
            .hexists(self.keys.run(run_id), "archived_at")
            .query_async(&mut conn)
            .await?;
        Ok(exists.then_some(archived))
    }

    /// Lets a run that stays out of the archive (its archiving was parked) expire after the
    /// retention, as a run does without an archive.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn expire_run(&self, run_id: &str) -> Result<()> {
        let secs = i64::try_from(self.retention.as_secs().max(1)).unwrap_or(i64::MAX);
        let mut conn = self.conn();
        let _: () = redis::pipe()
            .expire(self.keys.run(run_id), secs)
            .ignore()
            .expire(self.keys.steps(run_id), secs)
            .ignore()
            .expire(self.keys.events(run_id), secs)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Brings an archived run back into Redis (RetryRun, RerunRun of a run only the archive holds
    /// whole): its run hash `run` and steps hash `steps` (field, value pairs, as the scripts write
    /// them), its history `events` (stream id, fields; oldest first) and its entries in the run
    /// indexes (`workflow`, `created_at` Unix ms), replacing its tombstone if any: one script
    /// (`restore_run.lua`). The run comes back finished, without expiry; the caller then resets it.
    ///
    /// # Errors
    /// `FailedPrecondition` when Redis holds the run whole already (not a tombstone); `Redis`;
    /// `Internal` for a reply the script does not give.
    pub async fn restore_run(
        &self,
        run_id: &str,
        workflow: &str,
        created_at: i64,
        run: &[(String, String)],
        steps: &[(String, String)],
        events: &[(String, Vec<(String, String)>)],
    ) -> Result<()> {
        let k = &self.keys;
        let member = run_index_member(created_at, run_id);
        let keys = [
            k.run(run_id),
            k.steps(run_id),
            k.events(run_id),
            k.runs_index(),
            k.workflow_runs_index(workflow),
        ];
        let args = RestoreArgs {
            run,
            steps,
            events,
            member: &member,
        };
        let out = RESTORE.call(self, &keys, &args).await?;
        self.step_ids.invalidate(run_id);
        match out.first().map(String::as_str) {
            Some("restored") => Ok(()),
            Some("live") => Err(CoordinatorError::FailedPrecondition(format!(
                "run_id: run {run_id} is in Redis already; it was not restored from the archive"
            ))),
            _ => Err(unknown_reply(RESTORE.name(), &out)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::script::assert_header_matches;

    #[test]
    fn the_headers_name_every_argument() {
        assert_header_matches(
            include_str!("../scripts/archive_tombstone.lua"),
            "store::archived::TombstoneArgs",
            &TombstoneArgs {
                run: "r",
                finished_at: 1,
                now: 2,
                grace_ms: 3,
                member: "m",
            },
        );
        assert_header_matches(
            include_str!("../scripts/archiver_lease.lua"),
            "store::archived::LeaseArgs",
            &LeaseArgs {
                op: "take",
                token: "t",
                lease_ms: 1,
            },
        );
        assert_header_matches(
            include_str!("../scripts/restore_run.lua"),
            "store::archived::RestoreArgs",
            &RestoreArgs {
                run: &[],
                steps: &[],
                events: &[],
                member: "m",
            },
        );
    }
}
