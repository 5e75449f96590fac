//! Step data kept with a run's attempts: the log lines handlers write (`AppendLogs`, one script,
//! `append_logs.lua`) and the input each attempt ran with (written by `start_step.lua`). Both live
//! in the run's steps hash, so they expire, persist (RetryRun, RerunRun) and go with the run as its
//! steps do; see `append_logs.lua` for the fields.

use std::{collections::HashMap, time::Duration};

use redis::AsyncCommands as _;

use super::{Disposition, Store};
use crate::error::{CoordinatorError, Result};

/// Approximate length of a run's live log tail (its stream of lines for watchers).
pub const LOG_TAIL_MAX: u64 = 1_000;

/// How long a run's live log tail lives after its last line: watchers that fall further behind
/// read the kept lines with GetStepLogs.
pub const LOG_TAIL_TTL: Duration = Duration::from_secs(600);

/// Lines read per `HMGET` of a log read.
const READ_BATCH: usize = 1_000;

/// What `append_logs.lua` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// `Proceed` when kept; `Stale` or `Cancelled` when nothing was kept.
    pub disposition: Disposition,
    /// Lines of the attempt dropped so far to stay within its bound (its oldest), and refused at
    /// the run's bound.
    pub dropped: u64,
    /// Lines the attempt keeps.
    pub kept: u64,
}

/// `append_logs.lua`'s JSON argument (ARGV[1]), by name.
#[derive(serde::Serialize)]
struct AppendLogsJson<'a> {
    step: &'a str,
    attempt: u32,
    worker: &'a str,
    max_lines: usize,
    max_bytes: usize,
    max_run_bytes: usize,
    tail_max: u64,
    tail_ttl_s: u64,
}

/// One stored line, as `append_logs.lua` keeps it (`{"t": ms, "l": level, "m": message}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredLine {
    /// When the handler wrote it, Unix ms (the worker's clock).
    pub t: i64,
    /// `debug`, `info`, `warn` or `error`.
    pub l: String,
    /// The message, at most [`baton_shared::limits::MAX_LOG_MESSAGE_BYTES`] and its cut mark.
    pub m: String,
}

/// An attempt's kept lines: sequence numbers `first..next`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogRange {
    /// The first kept line's sequence number (the count of dropped lines).
    pub first: u64,
    /// One past the last line's.
    pub next: u64,
}

impl LogRange {
    /// Lines kept.
    pub fn kept(&self) -> u64 {
        self.next.saturating_sub(self.first)
    }
}

impl Store {
    /// Keeps `lines` (JSON texts of [`StoredLine`], already checked and cut) for attempt `attempt`
    /// of `step`, which `worker` must hold running, and adds them to the run's live tail; one
    /// round trip. The attempt keeps at most `MAX_LOG_LINES_PER_ATTEMPT` lines and
    /// `MAX_LOG_BYTES_PER_ATTEMPT` bytes, its oldest dropped first.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Internal` for a reply the script does not give.
    pub async fn append_logs(
        &self,
        run_id: &str,
        step: &str,
        attempt: u32,
        worker: &str,
        lines: &[String],
    ) -> Result<Appended> {
        use baton_shared::limits::{MAX_LOG_BYTES_PER_ATTEMPT, MAX_LOG_BYTES_PER_RUN, MAX_LOG_LINES_PER_ATTEMPT};
        let json = serde_json::to_string(&AppendLogsJson {
            step,
            attempt,
            worker,
            max_lines: MAX_LOG_LINES_PER_ATTEMPT,
            max_bytes: MAX_LOG_BYTES_PER_ATTEMPT,
            max_run_bytes: MAX_LOG_BYTES_PER_RUN,
            tail_max: LOG_TAIL_MAX,
            tail_ttl_s: LOG_TAIL_TTL.as_secs(),
        })
        .map_err(|e| CoordinatorError::Internal(format!("append_logs.lua: arguments: {e}")))?;
        let mut invocation = self.scripts.append_logs.key(self.keys.run(run_id));
        invocation
            .key(self.keys.steps(run_id))
            .key(self.keys.log_tail(run_id))
            .arg(json)
            .arg(lines);
        let mut conn = self.conn.clone();
        let out: Vec<String> = crate::metrics::script("append_logs", invocation.invoke_async(&mut conn)).await?;
        let mut it = out.into_iter();
        let tag = it.next();
        let disposition = match tag.as_deref() {
            Some("proceed") => Disposition::Proceed,
            Some("stale") => Disposition::Stale,
            Some("cancelled") => Disposition::Cancelled,
            other => {
                return Err(CoordinatorError::Internal(format!(
                    "append_logs.lua answered {other:?}"
                )));
            }
        };
        let mut number = || it.next().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        Ok(Appended {
            disposition,
            dropped: number(),
            kept: number(),
        })
    }

    /// The attempts of a run that have logged, `(step, attempt)`, in the order they first logged.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn log_index(&self, run_id: &str) -> Result<Vec<(String, u32)>> {
        let mut conn = self.conn.clone();
        let index: Option<String> = conn.hget(self.keys.steps(run_id), ":log_index").await?;
        Ok(index
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (step, attempt) = l.rsplit_once('|')?;
                Some((step.to_string(), attempt.parse().ok()?))
            })
            .collect())
    }

    /// For each `(step, attempt)`: its kept log lines ([`LogRange`]) and the size of the input it
    /// ran with (bytes, 0 when none was recorded); one round trip.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn attempt_facts(&self, run_id: &str, attempts: &[(&str, u32)]) -> Result<Vec<(LogRange, u64)>> {
        Ok(self.attempt_facts_and_outputs(run_id, attempts, &[]).await?.0)
    }

    /// [`Store::attempt_facts`] and the outputs of steps `outputs` (as [`Store::read_step_outputs`]
    /// answers them: `<step>:output` -> output, steps without one left out), in one round trip:
    /// GetRun reads both once it has read the run.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn attempt_facts_and_outputs(
        &self,
        run_id: &str,
        attempts: &[(&str, u32)],
        outputs: &[&str],
    ) -> Result<(Vec<(LogRange, u64)>, HashMap<String, String>)> {
        if attempts.is_empty() && outputs.is_empty() {
            return Ok((Vec::new(), HashMap::new()));
        }
        let key = self.keys.steps(run_id);
        let mut pipe = redis::pipe();
        let names: Vec<String> = outputs.iter().map(|id| format!("{id}:output")).collect();
        if !names.is_empty() {
            pipe.cmd("HMGET").arg(&key).arg(&names);
        }
        for (step, attempt) in attempts {
            pipe.cmd("HMGET")
                .arg(&key)
                .arg(format!("{step}:log_first@{attempt}"))
                .arg(format!("{step}:log_n@{attempt}"));
            pipe.cmd("HSTRLEN").arg(&key).arg(format!("{step}:input@{attempt}"));
        }
        let mut conn = self.conn.clone();
        let values: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
        let unexpected =
            |e: redis::ParsingError| CoordinatorError::Internal(format!("unexpected answer from Redis: {e}"));
        let mut it = values.into_iter();
        let mut read = HashMap::new();
        if !names.is_empty() {
            let values: Vec<Option<String>> = match it.next() {
                Some(v) => redis::from_redis_value(v).map_err(unexpected)?,
                None => return Err(CoordinatorError::Internal("empty answer from Redis".into())),
            };
            for (name, value) in names.into_iter().zip(values) {
                if let Some(v) = value {
                    read.insert(name, v);
                }
            }
        }
        let mut out = Vec::with_capacity(attempts.len());
        while let (Some(range), Some(size)) = (it.next(), it.next()) {
            let (first, next): (Option<u64>, Option<u64>) = redis::from_redis_value(range).map_err(unexpected)?;
            let size: u64 = redis::from_redis_value(size).map_err(unexpected)?;
            out.push((
                LogRange {
                    first: first.unwrap_or(0),
                    next: next.unwrap_or(0),
                },
                size,
            ));
        }
        Ok((out, read))
    }

    /// The inputs `(step, attempt)` ran with (`None`: not recorded).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn attempt_inputs(&self, run_id: &str, attempts: &[(&str, u32)]) -> Result<Vec<Option<String>>> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = attempts.iter().map(|(s, a)| format!("{s}:input@{a}")).collect();
        let mut conn = self.conn.clone();
        Ok(redis::cmd("HMGET")
            .arg(self.keys.steps(run_id))
            .arg(&names)
            .query_async(&mut conn)
            .await?)
    }

    /// Lines `from..to` of attempt `attempt` of `step`, oldest first (a line dropped meanwhile,
    /// or not readable, is left out).
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`].
    pub async fn log_lines(
        &self,
        run_id: &str,
        step: &str,
        attempt: u32,
        from: u64,
        to: u64,
    ) -> Result<Vec<StoredLine>> {
        let key = self.keys.steps(run_id);
        let mut out = Vec::new();
        let mut start = from;
        while start < to {
            let end = to.min(start.saturating_add(READ_BATCH as u64));
            let names: Vec<String> = (start..end).map(|seq| format!("{step}:log@{attempt}#{seq}")).collect();
            let mut conn = self.conn.clone();
            let values: Vec<Option<String>> = redis::cmd("HMGET").arg(&key).arg(&names).query_async(&mut conn).await?;
            out.extend(
                values
                    .into_iter()
                    .flatten()
                    .filter_map(|v| serde_json::from_str(&v).ok()),
            );
            start = end;
        }
        Ok(out)
    }
}
