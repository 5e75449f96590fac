//! The batch writer: a batch of finished runs in one transaction, each table with one multi-row
//! `INSERT ... SELECT FROM UNNEST(<one array per column>)` (one round trip per table whatever the
//! batch's size, no parameter-count limit), `ON CONFLICT DO NOTHING` so that writing a run again
//! changes nothing.
//!
//! # A run PostgreSQL would refuse
//! PostgreSQL refuses a NUL character in `text` and `\u0000` in `jsonb`, both valid in a run's
//! strings. The searchable columns get such a character replaced by U+FFFD; the encoded run, in a
//! `bytea`, keeps it, so GetRun still answers exactly what Redis answered. A run that cannot be
//! stored as rows at all (no finish time, a time out of PostgreSQL's range, or a refusal by the
//! server that the clean-up did not foresee) is parked: kept whole in `parked_runs` with the
//! reason, counted in `baton_archive_runs_parked_total` and logged, and the rest of the batch is
//! written. When the batch's insert fails on data, the writer tries each run alone (a savepoint
//! each) to find the one to park.

use std::collections::HashSet;

use baton_shared::proto::{self, RunStatus, StepStatus};
use chrono::{DateTime, Datelike, Utc};
use prost::Message;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use super::{Archive, ArchivedRun, Result};

/// What [`Archive::write`] did with a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Runs written now.
    pub written: usize,
    /// Runs that were already archived (same namespace, id and finish time), left as they are.
    pub already_archived: usize,
    /// Runs kept whole in `parked_runs` instead, with the reason: they are not lost (GetRun
    /// answers them) but searching does not find them.
    pub parked: Vec<Parked>,
}

/// A run of a batch the archive could not store as rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// Its namespace.
    pub namespace: String,
    /// Its id.
    pub run_id: String,
    /// Why, e.g. `finished_at: not set` or the server's refusal.
    pub reason: String,
}

/// A run turned into rows.
struct Prepared<'a> {
    source: &'a ArchivedRun,
    namespace: String,
    run_id: String,
    finished_at: DateTime<Utc>,
    run: RunRow,
    steps: Vec<StepRow>,
    attempts: Vec<AttemptRow>,
    events: Vec<EventRow>,
    tasks: Vec<TaskRow>,
}

struct RunRow {
    workflow: String,
    version: i32,
    status: String,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    parent_run_id: Option<String>,
    parent_step_id: Option<String>,
    idempotency_key: Option<String>,
    error: Option<String>,
    error_types: Value,
    input: Option<Value>,
    output: Option<Value>,
    encoded: Vec<u8>,
    summary: Vec<u8>,
}

struct StepRow {
    step_id: String,
    position: i32,
    handler: String,
    kind: String,
    status: String,
    attempt: i32,
    output: Option<Value>,
    error: Option<String>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

struct AttemptRow {
    step_id: String,
    number: i32,
    outcome: String,
    worker: Option<String>,
    input: Option<Value>,
    error: Option<String>,
    error_type: Option<String>,
    error_details: Option<String>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

struct EventRow {
    position: i32,
    sequence: String,
    time: Option<DateTime<Utc>>,
    kind: String,
    step_id: Option<String>,
    status: Option<String>,
    detail: Option<String>,
    payload: Option<Value>,
    encoded: Vec<u8>,
}

struct TaskRow {
    step_id: String,
    workflow: String,
    status: String,
    assignees: Value,
    created_at: Option<DateTime<Utc>>,
    completed_by: Option<String>,
    completed_at: Option<DateTime<Utc>>,
    data: Option<Value>,
    encoded: Vec<u8>,
}

/// `s` with every NUL replaced by U+FFFD (PostgreSQL's `text` cannot hold NUL).
fn clean(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_string()
    }
}

/// [`clean`], `None` for an empty text (a proto3 string that is not set).
fn clean_opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| clean(s))
}

/// JSON text as a `jsonb` value with NULs in its strings and keys replaced (PostgreSQL's `jsonb`
/// refuses `\u0000`); `None` for empty or invalid JSON (the encoded run keeps the text).
fn json(text: &str) -> Option<Value> {
    if text.trim().is_empty() {
        return None;
    }
    let mut v: Value = serde_json::from_str(text).ok()?;
    if text.contains("\\u0000") {
        clean_json(&mut v);
    }
    Some(v)
}

/// Replaces NULs in every string and key of `v`, with an explicit stack (no recursion).
fn clean_json(v: &mut Value) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => {
                if s.contains('\0') {
                    *s = clean(s);
                }
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    let old = std::mem::take(map);
                    *map = old.into_iter().map(|(k, v)| (clean(&k), v)).collect();
                }
                stack.extend(map.values_mut());
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

/// A protobuf timestamp as a PostgreSQL `timestamptz` (years 1 to 9999).
///
/// # Errors
/// The field named, when out of range.
fn time(field: &str, ts: Option<&prost_types::Timestamp>) -> Result<Option<DateTime<Utc>>, String> {
    let Some(ts) = ts else { return Ok(None) };
    let t = u32::try_from(ts.nanos)
        .ok()
        .and_then(|n| DateTime::<Utc>::from_timestamp(ts.seconds, n))
        .filter(|t| (1..=9999).contains(&t.year()));
    match t {
        Some(t) => Ok(Some(t)),
        None => Err(format!(
            "{field}: {} s {} ns is not a time between years 1 and 9999",
            ts.seconds, ts.nanos
        )),
    }
}

/// A required time.
fn required_time(field: &str, ts: Option<&prost_types::Timestamp>) -> Result<DateTime<Utc>, String> {
    time(field, ts)?.ok_or_else(|| format!("{field}: not set"))
}

/// A count or number as an `integer` column (saturating; they are bounded far below).
fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The rows of one run, or why it cannot have any.
fn prepare(a: &ArchivedRun) -> Result<Prepared<'_>, String> {
    let r = &a.run;
    if a.namespace.is_empty() {
        return Err("namespace: empty".into());
    }
    if r.id.is_empty() {
        return Err("run.id: empty".into());
    }
    let status = RunStatus::try_from(r.status)
        .ok()
        .filter(|s| s.is_terminal())
        .ok_or_else(|| format!("run.status: {} is not a finished status", r.status))?;
    // Whole milliseconds, as Redis keeps it: ListRuns' page tokens and its Redis index order
    // runs by the millisecond.
    let created_at = required_time("run.created_at", r.created_at.as_ref())?;
    let created_at = DateTime::from_timestamp_millis(created_at.timestamp_millis()).unwrap_or(created_at);
    let finished_at = required_time("run.finished_at", r.finished_at.as_ref())?;
    let started_at = time("run.started_at", r.started_at.as_ref())?;
    let mut error_types: Vec<String> = a.error_types.iter().map(|t| clean(t)).collect();
    error_types.sort();
    error_types.dedup();
    let run = RunRow {
        workflow: clean(&r.workflow),
        version: int(r.version),
        status: status.word().to_string(),
        created_at,
        started_at,
        parent_run_id: clean_opt(&r.parent_run_id),
        parent_step_id: clean_opt(&r.parent_step_id),
        idempotency_key: clean_opt(&r.idempotency_key),
        error: clean_opt(&r.error),
        error_types: Value::from(error_types),
        input: json(&r.input_json),
        output: json(&r.output_json),
        encoded: r.encode_to_vec(),
        summary: proto::Run {
            steps: Vec::new(),
            ..r.clone()
        }
        .encode_to_vec(),
    };
    let mut steps = Vec::with_capacity(r.steps.len());
    let mut attempts = Vec::new();
    for (i, s) in r.steps.iter().enumerate() {
        steps.push(StepRow {
            step_id: clean(&s.id),
            position: i32::try_from(i).unwrap_or(i32::MAX),
            handler: clean(&s.handler),
            kind: clean(&s.kind),
            status: StepStatus::try_from(s.status)
                .map(|s| s.word())
                .unwrap_or("unspecified")
                .to_string(),
            attempt: int(s.attempt),
            output: json(&s.output_json),
            error: clean_opt(&s.error),
            started_at: time("steps[].started_at", s.started_at.as_ref())?,
            finished_at: time("steps[].finished_at", s.finished_at.as_ref())?,
        });
        for at in &s.attempts {
            attempts.push(AttemptRow {
                step_id: clean(&s.id),
                number: int(at.number),
                outcome: clean(&at.outcome),
                worker: clean_opt(&at.worker),
                input: json(&at.input_json),
                error: clean_opt(&at.error),
                error_type: clean_opt(&at.error_type),
                error_details: clean_opt(&at.error_details),
                started_at: time("steps[].attempts[].started_at", at.started_at.as_ref())?,
                finished_at: time("steps[].attempts[].finished_at", at.finished_at.as_ref())?,
            });
        }
    }
    let mut events = Vec::with_capacity(a.history.len());
    for (i, e) in a.history.iter().enumerate() {
        events.push(EventRow {
            position: i32::try_from(i).unwrap_or(i32::MAX),
            sequence: clean(&e.sequence),
            time: time("history[].time", e.time.as_ref())?,
            kind: clean(&e.kind),
            step_id: clean_opt(&e.step_id),
            status: clean_opt(&e.status),
            detail: clean_opt(&e.detail),
            payload: json(&e.payload_json),
            encoded: e.encode_to_vec(),
        });
    }
    let mut tasks = Vec::with_capacity(a.human_tasks.len());
    for t in &a.human_tasks {
        tasks.push(TaskRow {
            step_id: clean(&t.step_id),
            workflow: clean(&t.workflow),
            status: clean(&t.status),
            assignees: Value::from(t.assignees.iter().map(|x| clean(x)).collect::<Vec<_>>()),
            created_at: time("human_tasks[].created_at", t.created_at.as_ref())?,
            completed_by: clean_opt(&t.completed_by),
            completed_at: time("human_tasks[].completed_at", t.completed_at.as_ref())?,
            data: json(&t.data_json),
            encoded: t.encode_to_vec(),
        });
    }
    Ok(Prepared {
        source: a,
        namespace: clean(&a.namespace),
        run_id: clean(&r.id),
        finished_at,
        run,
        steps,
        attempts,
        events,
        tasks,
    })
}

/// Whether a failed insert failed on the data (so another batch without the bad run would pass),
/// not on the connection: SQLSTATE classes 22 (data exception), 23 (integrity constraint), 54
/// (program limit, e.g. an index row too large), or a value the driver could not encode.
fn is_data_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Encode(_) => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c.starts_with("54")),
        _ => false,
    }
}

/// Inserts the rows of `runs`; returns the (namespace, run id) of the runs written now (those
/// already archived are left, with their rows).
async fn insert(conn: &mut PgConnection, runs: &[&Prepared<'_>]) -> Result<HashSet<(String, String)>, sqlx::Error> {
    if runs.is_empty() {
        return Ok(HashSet::new());
    }
    let written: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO runs (namespace, run_id, workflow, version, status, created_at, started_at, finished_at, \
             parent_run_id, parent_step_id, idempotency_key, error, error_types, input, output, run, summary) \
         SELECT u.ns, u.id, u.wf, u.ver, u.st, u.ca, u.sa, u.fa, u.pr, u.ps, u.ik, u.er, \
             ARRAY(SELECT jsonb_array_elements_text(u.et)), u.inp, u.outp, u.run, u.summary \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::timestamptz[], \
             $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], $11::text[], $12::text[], \
             $13::jsonb[], $14::jsonb[], $15::jsonb[], $16::bytea[], $17::bytea[]) \
             AS u(ns, id, wf, ver, st, ca, sa, fa, pr, ps, ik, er, et, inp, outp, run, summary) \
         ON CONFLICT DO NOTHING \
         RETURNING namespace, run_id",
    )
    .bind(runs.iter().map(|p| p.namespace.clone()).collect::<Vec<_>>())
    .bind(runs.iter().map(|p| p.run_id.clone()).collect::<Vec<_>>())
    .bind(runs.iter().map(|p| p.run.workflow.clone()).collect::<Vec<_>>())
    .bind(runs.iter().map(|p| p.run.version).collect::<Vec<_>>())
    .bind(runs.iter().map(|p| p.run.status.clone()).collect::<Vec<_>>())
    .bind(runs.iter().map(|p| p.run.created_at).collect::<Vec<_>>())
    .bind(runs.iter().map(|p| p.run.started_at).collect::<Vec<_>>())
    .bind(runs.iter().map(|p| p.finished_at).collect::<Vec<_>>())
    .bind(runs.iter().map(|p| p.run.parent_run_id.clone()).collect::<Vec<_>>())
    .bind(runs.iter().map(|p| p.run.parent_step_id.clone()).collect::<Vec<_>>())
    .bind(runs.iter().map(|p| p.run.idempotency_key.clone()).collect::<Vec<_>>())
    .bind(runs.iter().map(|p| p.run.error.clone()).collect::<Vec<_>>())
    .bind(runs.iter().map(|p| p.run.error_types.clone()).collect::<Vec<_>>())
    .bind(runs.iter().map(|p| p.run.input.clone()).collect::<Vec<_>>())
    .bind(runs.iter().map(|p| p.run.output.clone()).collect::<Vec<_>>())
    .bind(runs.iter().map(|p| p.run.encoded.clone()).collect::<Vec<_>>())
    .bind(runs.iter().map(|p| p.run.summary.clone()).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    let written: HashSet<(String, String)> = written.into_iter().collect();
    let fresh: Vec<&Prepared<'_>> = runs
        .iter()
        .copied()
        .filter(|p| written.contains(&(p.namespace.clone(), p.run_id.clone())))
        .collect();
    if fresh.is_empty() {
        return Ok(written);
    }

    // Steps.
    let (mut ns, mut id, mut fa) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sid, mut pos, mut handler, mut kind, mut status, mut attempt) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut output, mut error, mut started, mut finished) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in &fresh {
        for s in &p.steps {
            ns.push(p.namespace.clone());
            id.push(p.run_id.clone());
            fa.push(p.finished_at);
            sid.push(s.step_id.clone());
            pos.push(s.position);
            handler.push(s.handler.clone());
            kind.push(s.kind.clone());
            status.push(s.status.clone());
            attempt.push(s.attempt);
            output.push(s.output.clone());
            error.push(s.error.clone());
            started.push(s.started_at);
            finished.push(s.finished_at);
        }
    }
    if !ns.is_empty() {
        sqlx::query(
            "INSERT INTO steps (namespace, run_id, run_finished_at, step_id, position, handler, kind, status, \
                 attempt, output, error, started_at, finished_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::int4[], $6::text[], \
                 $7::text[], $8::text[], $9::int4[], $10::jsonb[], $11::text[], $12::timestamptz[], $13::timestamptz[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(ns)
        .bind(id)
        .bind(fa)
        .bind(sid)
        .bind(pos)
        .bind(handler)
        .bind(kind)
        .bind(status)
        .bind(attempt)
        .bind(output)
        .bind(error)
        .bind(started)
        .bind(finished)
        .execute(&mut *conn)
        .await?;
    }

    // Attempts.
    let (mut ns, mut id, mut fa, mut sid, mut number, mut outcome, mut worker) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut input, mut error, mut error_type, mut details, mut started, mut finished) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in &fresh {
        for a in &p.attempts {
            ns.push(p.namespace.clone());
            id.push(p.run_id.clone());
            fa.push(p.finished_at);
            sid.push(a.step_id.clone());
            number.push(a.number);
            outcome.push(a.outcome.clone());
            worker.push(a.worker.clone());
            input.push(a.input.clone());
            error.push(a.error.clone());
            error_type.push(a.error_type.clone());
            details.push(a.error_details.clone());
            started.push(a.started_at);
            finished.push(a.finished_at);
        }
    }
    if !ns.is_empty() {
        sqlx::query(
            "INSERT INTO attempts (namespace, run_id, run_finished_at, step_id, number, outcome, worker, input, \
                 error, error_type, error_details, started_at, finished_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::int4[], $6::text[], \
                 $7::text[], $8::jsonb[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::timestamptz[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(ns)
        .bind(id)
        .bind(fa)
        .bind(sid)
        .bind(number)
        .bind(outcome)
        .bind(worker)
        .bind(input)
        .bind(error)
        .bind(error_type)
        .bind(details)
        .bind(started)
        .bind(finished)
        .execute(&mut *conn)
        .await?;
    }

    // History.
    let (mut ns, mut id, mut fa, mut pos, mut seq, mut at, mut kind) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut sid, mut status, mut detail, mut payload, mut encoded) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in &fresh {
        for e in &p.events {
            ns.push(p.namespace.clone());
            id.push(p.run_id.clone());
            fa.push(p.finished_at);
            pos.push(e.position);
            seq.push(e.sequence.clone());
            at.push(e.time);
            kind.push(e.kind.clone());
            sid.push(e.step_id.clone());
            status.push(e.status.clone());
            detail.push(e.detail.clone());
            payload.push(e.payload.clone());
            encoded.push(e.encoded.clone());
        }
    }
    if !ns.is_empty() {
        sqlx::query(
            "INSERT INTO run_events (namespace, run_id, run_finished_at, position, sequence, time, kind, step_id, \
                 status, detail, payload, event) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::int4[], $5::text[], \
                 $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[], $11::jsonb[], $12::bytea[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(ns)
        .bind(id)
        .bind(fa)
        .bind(pos)
        .bind(seq)
        .bind(at)
        .bind(kind)
        .bind(sid)
        .bind(status)
        .bind(detail)
        .bind(payload)
        .bind(encoded)
        .execute(&mut *conn)
        .await?;
    }

    // Human tasks.
    let (mut ns, mut id, mut fa, mut sid, mut wf, mut status, mut assignees) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut created, mut by, mut completed, mut data, mut encoded) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in &fresh {
        for t in &p.tasks {
            ns.push(p.namespace.clone());
            id.push(p.run_id.clone());
            fa.push(p.finished_at);
            sid.push(t.step_id.clone());
            wf.push(t.workflow.clone());
            status.push(t.status.clone());
            assignees.push(t.assignees.clone());
            created.push(t.created_at);
            by.push(t.completed_by.clone());
            completed.push(t.completed_at);
            data.push(t.data.clone());
            encoded.push(t.encoded.clone());
        }
    }
    if !ns.is_empty() {
        sqlx::query(
            "INSERT INTO human_tasks (namespace, run_id, run_finished_at, step_id, workflow, status, assignees, \
                 created_at, completed_by, completed_at, data, task) \
             SELECT u.ns, u.id, u.fa, u.sid, u.wf, u.st, ARRAY(SELECT jsonb_array_elements_text(u.asg)), \
                 u.ca, u.cb, u.co, u.data, u.task \
             FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], \
                 $7::jsonb[], $8::timestamptz[], $9::text[], $10::timestamptz[], $11::jsonb[], $12::bytea[]) \
                 AS u(ns, id, fa, sid, wf, st, asg, ca, cb, co, data, task) \
             ON CONFLICT DO NOTHING",
        )
        .bind(ns)
        .bind(id)
        .bind(fa)
        .bind(sid)
        .bind(wf)
        .bind(status)
        .bind(assignees)
        .bind(created)
        .bind(by)
        .bind(completed)
        .bind(data)
        .bind(encoded)
        .execute(&mut *conn)
        .await?;
    }
    Ok(written)
}

/// Keeps `run` whole in `parked_runs` with `reason` (a run parked again replaces its row).
async fn park(conn: &mut PgConnection, run: &ArchivedRun, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO parked_runs (namespace, run_id, reason, run, history, human_tasks, error_types) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (namespace, run_id) DO UPDATE SET reason = EXCLUDED.reason, run = EXCLUDED.run, \
             history = EXCLUDED.history, human_tasks = EXCLUDED.human_tasks, \
             error_types = EXCLUDED.error_types, parked_at = now()",
    )
    .bind(clean(&run.namespace))
    .bind(clean(&run.run.id))
    .bind(clean(&baton_shared::limits::cut(
        reason,
        baton_shared::limits::MAX_ERROR_MESSAGE_BYTES,
    )))
    .bind(run.run.encode_to_vec())
    .bind(run.history.iter().map(Message::encode_to_vec).collect::<Vec<_>>())
    .bind(run.human_tasks.iter().map(Message::encode_to_vec).collect::<Vec<_>>())
    .bind(run.error_types.iter().map(|t| clean(t)).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Archive {
    /// Writes a batch in one transaction; idempotent: a run already archived (same namespace, id
    /// and finished_at) is left as it is, never written twice. A run that cannot be stored as
    /// rows is parked (see the module's doc) and the others are written: the report says which.
    ///
    /// # Errors
    /// [`super::ArchiveError::Db`] when the database fails (unreachable, a timeout): nothing of
    /// the batch is written then, and writing it again later is safe.
    pub async fn write(&self, runs: &[ArchivedRun]) -> Result<WriteReport> {
        let mut conn = self.pool.acquire().await?;
        self.write_on(&mut conn, runs).await
    }

    /// [`Archive::write`], given up when it has no answer within `limit` (`archive_write_timeout`):
    /// a PostgreSQL whose host died says nothing, and its connection would wait for ever. The
    /// connection is then closed (not pinged back into the pool, which could wait for ever too);
    /// the server rolls back what it had, and writing the batch again is safe.
    ///
    /// # Errors
    /// As [`Archive::write`]; [`super::ArchiveError::Timeout`] past `limit`.
    pub async fn write_within(&self, runs: &[ArchivedRun], limit: std::time::Duration) -> Result<WriteReport> {
        let mut conn = self.pool.acquire().await?;
        match tokio::time::timeout(limit, self.write_on(&mut conn, runs)).await {
            Ok(report) => report,
            Err(_) => {
                conn.close_on_drop();
                Err(super::ArchiveError::Timeout(limit))
            }
        }
    }

    /// [`Archive::write`] on `conn`.
    async fn write_on(&self, conn: &mut PgConnection, runs: &[ArchivedRun]) -> Result<WriteReport> {
        let mut report = WriteReport::default();
        let mut ready = Vec::with_capacity(runs.len());
        let mut parked: Vec<(&ArchivedRun, String)> = Vec::new();
        let mut seen = HashSet::new();
        for a in runs {
            match prepare(a) {
                Ok(p) => {
                    // The same run twice in one batch is written once.
                    if seen.insert((p.namespace.clone(), p.run_id.clone(), p.finished_at)) {
                        ready.push(p);
                    } else {
                        report.already_archived = report.already_archived.saturating_add(1);
                    }
                }
                Err(reason) => parked.push((a, reason)),
            }
        }
        let all: Vec<&Prepared<'_>> = ready.iter().collect();
        let mut tx = conn.begin().await?;
        let (written, refused) = match insert(&mut tx, &all).await {
            Ok(w) => (w.len(), 0usize),
            Err(e) if is_data_error(&e) => {
                tracing::warn!(error = %e, runs = all.len(), "archive: a run of the batch was refused; writing them one by one");
                tx.rollback().await?;
                tx = conn.begin().await?;
                let (mut n, mut refused) = (0usize, 0usize);
                for p in &all {
                    let mut one = tx.begin().await?;
                    match insert(&mut one, &[*p]).await {
                        Ok(w) => {
                            one.commit().await?;
                            n = n.saturating_add(w.len());
                        }
                        Err(e) if is_data_error(&e) => {
                            one.rollback().await?;
                            refused = refused.saturating_add(1);
                            parked.push((p.source, format!("refused by PostgreSQL: {e}")));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                (n, refused)
            }
            Err(e) => return Err(e.into()),
        };
        for (run, reason) in &parked {
            park(&mut tx, run, reason).await?;
        }
        tx.commit().await?;
        report.written = written;
        report.already_archived = report
            .already_archived
            .saturating_add(all.len().saturating_sub(written).saturating_sub(refused));
        metrics::counter!("baton_archive_runs_written_total").increment(written as u64);
        if !parked.is_empty() {
            metrics::counter!("baton_archive_runs_parked_total").increment(parked.len() as u64);
        }
        for (run, reason) in parked {
            tracing::warn!(namespace = %run.namespace, run_id = %run.run.id, reason = %reason, "archive: run parked (kept whole in parked_runs, not searchable)");
            report.parked.push(Parked {
                namespace: run.namespace.clone(),
                run_id: run.run.id.clone(),
                reason,
            });
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_replaced_in_texts_and_json() {
        assert_eq!(clean("a\0b"), "a\u{FFFD}b");
        let v = json(r#"{"k\u0000":["x\u0000",{"y":"\u0000"}]}"#).unwrap_or_default();
        assert_eq!(v, serde_json::json!({"k\u{FFFD}": ["x\u{FFFD}", {"y": "\u{FFFD}"}]}));
        assert_eq!(json("not json"), None);
        assert_eq!(json(""), None);
    }

    #[test]
    fn a_run_without_a_finish_time_is_refused_with_the_field() {
        let run = ArchivedRun {
            namespace: "ns".into(),
            run: proto::Run {
                id: "r".into(),
                status: RunStatus::Succeeded as i32,
                created_at: Some(prost_types::Timestamp { seconds: 1, nanos: 0 }),
                ..Default::default()
            },
            error_types: vec![],
            history: vec![],
            human_tasks: vec![],
        };
        assert_eq!(prepare(&run).err().as_deref(), Some("run.finished_at: not set"));
    }
}
