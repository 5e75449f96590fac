//! Step data: the log lines handlers write (`AppendLogs`, `GetStepLogs`, live on `WatchRun`) and
//! what GetRun shows of each attempt beside its history (the input it ran with, its log count).
//! The bounds are `baton_shared::limits::MAX_LOG_*`; storage is `store/logs.rs`.

use baton_shared::{
    limits::{MAX_LOG_LINES_PER_CALL, MAX_LOG_LINES_PER_READ, MAX_LOG_MESSAGE_BYTES, echo},
    proto::{LogLine, Run, RunEvent},
    time::timestamp,
};

use crate::{
    engine::Engine,
    error::{CoordinatorError, Result},
    store::{Appended, StoredLine, StreamEntry},
};

/// The levels a log line may have.
pub const LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];

/// Most bytes of log lines one `GetStepLogs` answer holds (under gRPC's default 4 MiB message
/// limit of every client): older lines past it are left out and counted in `omitted`.
pub const MAX_LOG_READ_BYTES: usize = 3 * 1024 * 1024;

/// Latest time a line may carry (9999-12-31T23:59:59.999Z, Unix ms).
const LATEST_MS: i64 = 253_402_300_799_999;

/// `message` cut to at most [`MAX_LOG_MESSAGE_BYTES`] (its end mark included) at a character
/// boundary, ending `… (cut)` when cut.
pub fn cut_message(message: &str) -> String {
    const MARK: &str = "… (cut)";
    if message.len() <= MAX_LOG_MESSAGE_BYTES {
        return message.to_string();
    }
    let mut end = MAX_LOG_MESSAGE_BYTES - MARK.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &message[..end])
}

/// Checks the lines of an `AppendLogs` call and turns them into stored lines (JSON texts of
/// [`StoredLine`]): at most [`MAX_LOG_LINES_PER_CALL`]; each level one of [`LEVELS`]; a time
/// between 1970 and 9999 (none: `now`); each message cut to [`MAX_LOG_MESSAGE_BYTES`].
///
/// # Errors
/// `InvalidArgument` naming `lines` (too many) or `lines[i].level` / `lines[i].time`.
pub fn check_lines(lines: Vec<LogLine>, now: i64) -> Result<Vec<String>> {
    if lines.len() > MAX_LOG_LINES_PER_CALL {
        return Err(CoordinatorError::InvalidArgument(format!(
            "lines: at most {MAX_LOG_LINES_PER_CALL} lines per call (got {}); send the rest in another call",
            lines.len()
        )));
    }
    lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            if !LEVELS.contains(&line.level.as_str()) {
                return Err(CoordinatorError::InvalidArgument(format!(
                    "lines[{i}].level: must be one of {} (got {:?})",
                    LEVELS.join(", "),
                    echo(&line.level)
                )));
            }
            let t = match line.time {
                None => now,
                Some(t) => {
                    let ms = t
                        .seconds
                        .checked_mul(1000)
                        .and_then(|s| s.checked_add(i64::from(t.nanos) / 1_000_000))
                        .filter(|ms| (0..=LATEST_MS).contains(ms) && (0..1_000_000_000).contains(&t.nanos));
                    ms.ok_or_else(|| {
                        CoordinatorError::InvalidArgument(format!(
                            "lines[{i}].time: must be between 1970-01-01 and 9999-12-31 (got {} s, {} ns)",
                            t.seconds, t.nanos
                        ))
                    })?
                }
            };
            let stored = StoredLine {
                t,
                l: line.level,
                m: cut_message(&line.message),
            };
            serde_json::to_string(&stored)
                .map_err(|e| CoordinatorError::Internal(format!("a log line could not be written: {e}")))
        })
        .collect()
}

/// Keeps the lines of an `AppendLogs` call for the attempt `worker` holds (one round trip); a
/// stale or cancelled attempt keeps nothing.
///
/// # Errors
/// `InvalidArgument` for a malformed run id or lines ([`check_lines`]); `Redis`.
pub async fn append(
    engine: &Engine,
    run_id: &str,
    step: &str,
    attempt: u32,
    worker: &str,
    lines: Vec<LogLine>,
) -> Result<Appended> {
    if !baton_shared::ids::is_run_id(run_id) {
        return Err(CoordinatorError::InvalidArgument(format!(
            "run_id: {} is not a run id (a UUID)",
            echo(run_id)
        )));
    }
    let lines = check_lines(lines, baton_shared::time::now_ms())?;
    engine.store.append_logs(run_id, step, attempt, worker, &lines).await
}

/// GetStepLogs of an archived run: log lines are not archived (they are dropped when the run
/// shrinks to its tombstone), so no lines, and the lines the run had (as its attempts counted them)
/// in `omitted`.
///
/// # Errors
/// `NotFound` naming `step_id` for a step the run does not have.
fn archived_logs(run: &Run, step: &str, attempt: u32) -> Result<(Vec<LogLine>, u32)> {
    let parent = step.split_once('#').map_or(step, |(p, _)| p);
    if !step.is_empty() && !run.steps.iter().any(|s| s.id == parent) {
        return Err(CoordinatorError::NotFound(format!(
            "step_id: run {} has no step {}",
            run.id,
            echo(step)
        )));
    }
    let omitted = run
        .steps
        .iter()
        .filter(|s| step.is_empty() || s.id == step)
        .flat_map(|s| s.attempts.iter())
        .filter(|a| attempt == 0 || a.number == attempt)
        .fold(0u32, |n, a| n.saturating_add(a.log_lines));
    Ok((Vec::new(), omitted))
}

/// A stored line as the API shows it.
fn line_view(step: &str, attempt: u32, line: StoredLine) -> LogLine {
    LogLine {
        time: timestamp(line.t),
        level: line.l,
        message: line.m,
        step_id: step.to_string(),
        attempt,
    }
}

/// The log lines of run `run_id`, oldest first: every step (`step` empty), one step (and, for a
/// fan-out step, its elements `<step>#<i>`), or one attempt of it (`attempt` > 0). At most `limit`
/// lines (0, or more than [`MAX_LOG_LINES_PER_READ`]: that bound) and [`MAX_LOG_READ_BYTES`], the
/// newest kept; the count of those left out comes second.
///
/// # Errors
/// `InvalidArgument` for an attempt without a step; `NotFound` for a run that does not exist (or
/// expired), or naming `step_id` for a step the run does not have; `Redis`.
pub async fn read(engine: &Engine, run_id: &str, step: &str, attempt: u32, limit: u32) -> Result<(Vec<LogLine>, u32)> {
    if attempt > 0 && step.is_empty() {
        return Err(CoordinatorError::InvalidArgument(
            "attempt: needs step_id (the attempt of which step)".into(),
        ));
    }
    if engine.archive.is_some()
        && engine.store.run_archived(run_id).await? != Some(false)
        && let Some(archived) = crate::archiver::archived(engine, run_id).await?
    {
        return archived_logs(&archived.run, step, attempt);
    }
    let run = engine.store.run_fields(run_id, &["status", "step_ids"]).await?;
    let (Some(Some(_)), step_ids) = (run.first(), run.get(1).cloned().flatten()) else {
        return Err(CoordinatorError::NotFound(format!(
            "run_id: no run {run_id} ({})",
            crate::reset::lost_hint()
        )));
    };
    let parent = step.split_once('#').map_or(step, |(p, _)| p);
    if !step.is_empty() && !step_ids.unwrap_or_default().split(',').any(|s| s == parent) {
        return Err(CoordinatorError::NotFound(format!(
            "step_id: run {run_id} has no step {}",
            echo(step)
        )));
    }
    let limit = match limit as usize {
        0 => MAX_LOG_LINES_PER_READ,
        n => n.min(MAX_LOG_LINES_PER_READ),
    };
    let chosen: Vec<(String, u32)> = engine
        .store
        .log_index(run_id)
        .await?
        .into_iter()
        .filter(|(s, a)| {
            let step_matches = step.is_empty()
                || s == step
                || s.strip_prefix(step)
                    .is_some_and(|rest| rest.starts_with('#') && !step.contains('#'));
            step_matches && (attempt == 0 || *a == attempt)
        })
        .collect();
    let refs: Vec<(&str, u32)> = chosen.iter().map(|(s, a)| (s.as_str(), *a)).collect();
    let facts = engine.store.attempt_facts(run_id, &refs).await?;
    let total: u64 = facts.iter().map(|(r, _)| r.kept()).sum();
    // The newest `limit` lines: attempts are in the order they first logged, so take from the
    // last attempt back.
    let mut left = limit as u64;
    let mut lines = Vec::new();
    for ((s, a), (range, _)) in refs.iter().zip(&facts).rev() {
        if left == 0 {
            break;
        }
        let take = range.kept().min(left);
        left -= take;
        let from = range.next.saturating_sub(take);
        let read = engine.store.log_lines(run_id, s, *a, from, range.next).await?;
        lines.extend(read.into_iter().map(|l| line_view(s, *a, l)));
    }
    // Oldest first by time (the workers' clocks), each attempt's own order kept.
    lines.sort_by_key(|l| l.time.as_ref().map(|t| (t.seconds, t.nanos)).unwrap_or_default());
    // Within the answer's bytes, newest kept.
    let mut bytes = 0usize;
    let mut keep_from = lines.len();
    while keep_from > 0 {
        let size = prost::Message::encoded_len(&lines[keep_from - 1]).saturating_add(4);
        if bytes.saturating_add(size) > MAX_LOG_READ_BYTES {
            break;
        }
        bytes = bytes.saturating_add(size);
        keep_from -= 1;
    }
    let lines = lines.split_off(keep_from);
    let omitted = total.saturating_sub(lines.len() as u64);
    Ok((lines, u32::try_from(omitted).unwrap_or(u32::MAX)))
}

/// A `WatchRun` event for an entry of a run's live log tail (`step`, `attempt`, `line`); `None`
/// for an entry that does not read as one. It has no `sequence`: log lines are live only, and a
/// resumed stream goes on from the last *history* event.
pub fn log_event(run_id: &str, entry: &StreamEntry) -> Option<RunEvent> {
    let f = &entry.1;
    let step = f.get("step")?;
    let attempt: u32 = f.get("attempt")?.parse().ok()?;
    let line: StoredLine = serde_json::from_str(f.get("line")?).ok()?;
    let time = timestamp(line.t);
    Some(RunEvent {
        run_id: run_id.to_string(),
        sequence: String::new(),
        time,
        kind: "log".into(),
        step_id: step.clone(),
        attempt,
        status: String::new(),
        detail: String::new(),
        payload_json: String::new(),
        log: Some(line_view(step, attempt, line)),
        run: None,
    })
}

/// Bytes one included input may add to a GetRun answer beyond its text (its field's tag and length
/// prefix, and the growth of its attempt's and step's length prefixes), less the
/// `input_omitted_bytes` it replaces.
const INPUT_FIELD_BYTES: u64 = 24;

/// The attempt of `step` in flight that its `attempts` do not list yet (running or waiting), if
/// any.
fn in_flight(step: &baton_shared::proto::StepRun) -> Option<u32> {
    use baton_shared::proto::StepStatus;
    let live = matches!(
        StepStatus::try_from(step.status),
        Ok(StepStatus::Running | StepStatus::Waiting)
    );
    (live && step.attempt > 0 && !step.attempts.iter().any(|a| a.number == step.attempt)).then_some(step.attempt)
}

/// Fills each shown attempt of `run` (a GetRun answer, its outputs already in) with its log count
/// and, while they fit the answer's budget ([`crate::view::get_run_budget`]) after everything
/// else, the input it ran with, in step and attempt order; an input that does not fit is left out
/// with its size (`input_omitted_bytes`). A step's attempt in flight (`in_flight`) gets its input
/// on the step itself (`StepRun.input_json`), after the finished attempts of its step.
///
/// # Errors
/// `Redis`.
pub async fn fill_attempts(engine: &Engine, run_id: &str, run: &mut Run) -> Result<()> {
    fill_attempts_within(engine, run_id, run, crate::view::get_run_budget()).await
}

/// As [`fill_attempts`], within an answer of at most `budget` bytes (`u64::MAX`: every kept input,
/// as the archiver keeps a run whole).
///
/// # Errors
/// `Redis`.
pub async fn fill_attempts_within(engine: &Engine, run_id: &str, run: &mut Run, budget: u64) -> Result<()> {
    fill_outputs_and_attempts(engine, run_id, run, &[], budget).await
}

/// Fills the outputs of steps `outputs` into `run` ([`crate::view::fill_outputs`]), then does what
/// [`fill_attempts_within`] does. The outputs and the attempts' log counts and input sizes are read
/// in one round trip (GetRun: two after the run itself, the inputs that fit being the second).
///
/// # Errors
/// `Redis`.
pub async fn fill_outputs_and_attempts(
    engine: &Engine,
    run_id: &str,
    run: &mut Run,
    outputs: &[&str],
    budget: u64,
) -> Result<()> {
    let refs: Vec<(String, u32)> = run
        .steps
        .iter()
        .flat_map(|s| {
            s.attempts
                .iter()
                .map(|a| (s.id.clone(), a.number))
                .chain(in_flight(s).map(|n| (s.id.clone(), n)))
        })
        .collect();
    let borrowed: Vec<(&str, u32)> = refs.iter().map(|(s, a)| (s.as_str(), *a)).collect();
    let (facts, read) = engine
        .store
        .attempt_facts_and_outputs(run_id, &borrowed, outputs)
        .await?;
    if !outputs.is_empty() {
        crate::view::fill_outputs(run, read);
    }
    if refs.is_empty() {
        return Ok(());
    }
    let mut it = facts.iter();
    for step in &mut run.steps {
        for a in &mut step.attempts {
            if let Some((range, size)) = it.next() {
                a.log_lines = u32::try_from(range.kept()).unwrap_or(u32::MAX);
                a.input_omitted_bytes = *size;
            }
        }
        if in_flight(step).is_some()
            && let Some((_, size)) = it.next()
        {
            step.input_omitted_bytes = *size;
        }
    }
    let mut left = budget.saturating_sub(u64::try_from(prost::Message::encoded_len(run)).unwrap_or(u64::MAX));
    let mut wanted: Vec<(String, u32)> = Vec::new();
    let mut fits = |size: u64| {
        let cost = size.saturating_add(INPUT_FIELD_BYTES);
        if size > 0 && cost <= left {
            left -= cost;
            true
        } else {
            false
        }
    };
    for step in &run.steps {
        for a in &step.attempts {
            if fits(a.input_omitted_bytes) {
                wanted.push((step.id.clone(), a.number));
            }
        }
        if let Some(n) = in_flight(step)
            && fits(step.input_omitted_bytes)
        {
            wanted.push((step.id.clone(), n));
        }
    }
    let borrowed: Vec<(&str, u32)> = wanted.iter().map(|(s, a)| (s.as_str(), *a)).collect();
    let inputs = engine.store.attempt_inputs(run_id, &borrowed).await?;
    let mut read: std::collections::HashMap<(String, u32), String> = wanted
        .into_iter()
        .zip(inputs)
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    // An input rewritten since its size was read (a redelivery) is left out if it grew.
    let place = |input: String, text: &mut String, omitted: &mut u64| {
        let size = u64::try_from(input.len()).unwrap_or(u64::MAX);
        if size <= *omitted {
            *text = input;
            *omitted = 0;
        } else {
            *omitted = size;
        }
    };
    for step in &mut run.steps {
        for a in &mut step.attempts {
            if let Some(input) = read.remove(&(step.id.clone(), a.number)) {
                place(input, &mut a.input_json, &mut a.input_omitted_bytes);
            }
        }
        if let Some(n) = in_flight(step)
            && let Some(input) = read.remove(&(step.id.clone(), n))
        {
            place(input, &mut step.input_json, &mut step.input_omitted_bytes);
        }
    }
    Ok(())
}
