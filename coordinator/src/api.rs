//! The gRPC services: protobuf in, engine call, protobuf out. Errors become `tonic::Status` through
//! `From<CoordinatorError>` only.

use std::{pin::Pin, sync::Arc, time::Duration};

use baton_shared::proto::{
    self, AttemptDisposition, CancelRunRequest, EmitEventRequest, GetRunRequest, GetWorkflowRequest, HeartbeatRequest,
    HeartbeatResponse, ListRunsRequest, ListRunsResponse, ListWorkflowsRequest, ListWorkflowsResponse,
    RegisterWorkflowRequest, RegisterWorkflowResponse, ReportResultRequest, ReportResultResponse, RerunRunRequest,
    RetryRunRequest, Run, RunEvent, RunOperationResponse, RunStatus, StartStepRequest, StartStepResponse, StepStatus,
    SubmitRunRequest, SubmitRunResponse, WatchRunRequest, Workflow, report_result_request,
};
use baton_shared::proto::{
    CompleteHumanTaskRequest, CreateScheduleRequest, DeleteScheduleResponse, HumanTask, ListHumanTasksRequest,
    ListHumanTasksResponse, ListScheduleTicksRequest, ListScheduleTicksResponse, ListSchedulesRequest,
    ListSchedulesResponse, PublishEventRequest, PublishEventResponse, Schedule, ScheduleRef, ScheduleTick, StepRef,
};
use baton_shared::query::{Filter, RunFacts};
use baton_shared::{
    definition::DEFAULT_CATCHUP_WINDOW,
    limits::{MAX_CATCHUP_WINDOW, check_duration, echo},
    proto::StepFailure,
    schedule::OverlapPolicy,
};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use crate::{
    auth::Principal,
    engine::{AttemptRef, Completer, Engine, Outcome},
    error::CoordinatorError,
    schedules::ScheduleRecord,
    store::{Disposition, StreamEntry},
    view,
    watch_hub::{Notice, Subscription, WatchHub, WatchLimits, sequence},
};

/// Serves `WorkflowService`, `RunService`, `WorkerService`, `EventService`, `HumanTaskService`,
/// `ScheduleService` and `OperationsService` over one engine.
#[derive(Clone)]
pub struct Api {
    engine: Arc<Engine>,
    /// The archive of finished runs (`archive_url`), `None` without one.
    archive: Option<Arc<crate::archive::Archive>>,
    ops: Arc<crate::operations::Operations>,
    watch: WatchHub,
}

impl Api {
    /// An API over `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        let limits = WatchLimits {
            max_streams: engine.config.max_watch_streams,
            max_streams_per_identity: engine.config.max_watch_streams_per_identity,
        };
        Self {
            ops: Arc::new(crate::operations::Operations::new(engine.clone())),
            watch: WatchHub::new(engine.store.clone(), limits),
            engine,
            archive: None,
        }
    }

    /// This API reading finished runs from `archive` too (`None`: Redis only).
    pub fn with_archive(mut self, archive: Option<Arc<crate::archive::Archive>>) -> Self {
        self.archive = archive;
        self
    }

    /// The archive of finished runs, when one is configured.
    pub fn archive(&self) -> Option<&Arc<crate::archive::Archive>> {
        self.archive.as_ref()
    }
}

/// Runs a state change to its end on a task of its own and returns its answer.
///
/// A mutation commits in Redis and then launches what the commit made ready (publishes tasks,
/// starts child runs). Run inside the gRPC request's future, that second half would be dropped with
/// the request when the caller goes away after the commit (a worker killed right after reporting):
/// the successors, already committed as dispatched, would then wait for the outbox sweeper. On its
/// own task the change finishes whatever happens to the caller.
///
/// # Errors
/// The work's own `Status`; `INTERNAL` if its task panicked.
async fn detached<T, F>(work: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, CoordinatorError>> + Send + 'static,
{
    use tracing::Instrument;
    match tokio::spawn(work.in_current_span()).await {
        Ok(r) => r.map_err(Status::from),
        Err(e) => Err(Status::internal(format!("the request's task failed: {e}"))),
    }
}

fn disposition(d: Disposition) -> i32 {
    (match d {
        Disposition::Proceed => AttemptDisposition::Proceed,
        Disposition::Stale => AttemptDisposition::Stale,
        Disposition::Cancelled => AttemptDisposition::Cancelled,
        Disposition::Duplicate => AttemptDisposition::Duplicate,
    }) as i32
}

/// Longest step id, worker id, schedule id, event name, user, assignee or human-task status a
/// caller may send, in bytes: [`baton_shared::limits::MAX_ECHO_BYTES`], so that an id the engine
/// names in an error is never echoed longer (a fan-out element's step id, `<step>[<index>]`, fits
/// easily: step ids are at most 128 characters).
pub const MAX_ID_BYTES: usize = baton_shared::limits::MAX_ECHO_BYTES;

/// Longest cron expression of `CreateSchedule`, in bytes (its parse errors quote it whole).
pub const MAX_CRON_BYTES: usize = baton_shared::limits::MAX_ECHO_BYTES;

/// Longest time zone name of `CreateSchedule`, in bytes (IANA names are under 40).
pub const MAX_TIMEZONE_BYTES: usize = 64;

/// Longest overlap policy word of `CreateSchedule`, in bytes.
pub const MAX_OVERLAP_BYTES: usize = 32;

/// Longest idempotency key, event key or suspension key a caller may send, in bytes.
pub const MAX_KEY_BYTES: usize = 1_024;

/// Longest free text a caller may send where it is not a payload (a cancel reason), in bytes.
pub const MAX_TEXT_BYTES: usize = 4_096;

/// Longest failure message kept from a worker's report, in bytes; a longer one is cut (not
/// refused: refusing a report would leave the step hanging until its timeout).
pub const MAX_FAILURE_MESSAGE_BYTES: usize = 16 * 1_024;

/// Longest failure `error_type` kept from a worker's report, in bytes; a longer one is cut.
pub const MAX_ERROR_TYPE_BYTES: usize = 128;

/// `INVALID_ARGUMENT` naming `field` when `value` is longer than `max` bytes; the value is echoed
/// through [`baton_shared::limits::echo`] only.
fn check_len(field: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.len() > max {
        Err(Status::invalid_argument(format!(
            "{field}: must be at most {max} bytes (got {} bytes: {})",
            value.len(),
            echo(value)
        )))
    } else {
        Ok(())
    }
}

/// `INVALID_ARGUMENT` naming `field` unless `run_id` is a run id (a UUID).
fn check_run_id(field: &str, run_id: &str) -> Result<(), Status> {
    if baton_shared::ids::is_run_id(run_id) {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "{field}: {} is not a run id (a UUID)",
            echo(run_id)
        )))
    }
}

fn check_id(run_id: &str) -> Result<(), Status> {
    check_run_id("run_id", run_id)
}

/// `INVALID_ARGUMENT` naming `field` unless `name` could be a registered workflow's name (see
/// [`baton_shared::ids::check_workflow_name`]).
fn check_workflow(field: &str, name: &str) -> Result<(), Status> {
    baton_shared::ids::check_workflow_name(field, name).map_err(Status::invalid_argument)
}

/// `value` cut to at most `max` bytes at a character boundary.
fn cut(mut value: String, max: usize) -> String {
    if value.len() > max {
        let mut end = max;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
        value.push('…');
    }
    value
}

/// Most bytes of runs one ListRuns page holds (encoded): under gRPC's default 4 MiB answer limit
/// of every client, so a page of runs with large inputs ends early, with a `next_page_token`, instead
/// of failing in the client. A page always holds at least one run.
const LIST_PAGE_BYTES: usize = 3 * 1024 * 1024;

/// The creation time (Unix ms) of a run index member `<created_ms:013>:<run_id>`.
fn member_created_ms(member: &str) -> Option<i64> {
    member.split_once(':').and_then(|(ms, _)| ms.parse().ok())
}

/// Unix milliseconds of `t`, or `INVALID_ARGUMENT` naming `field` when it is before 1970 or past
/// year 9999 (a 13-digit index member cannot hold it).
fn timestamp_ms(field: &str, t: &prost_types::Timestamp) -> Result<i64, Status> {
    const MAX_MS: i64 = 253_402_300_799_999;
    let ms = t
        .seconds
        .checked_mul(1000)
        .and_then(|s| s.checked_add(i64::from(t.nanos) / 1_000_000));
    match ms {
        Some(ms) if (0..=MAX_MS).contains(&ms) && (0..1_000_000_000).contains(&t.nanos) => Ok(ms),
        _ => Err(Status::invalid_argument(format!(
            "{field}: must be between 1970-01-01 and 9999-12-31 (got {} s, {} ns)",
            t.seconds, t.nanos
        ))),
    }
}

/// Checks a `ListRuns` page token: `<created_ms, 13 digits>:<run id>`, the shape of the
/// `next_page_token` the coordinator hands out. Anything else is refused rather than read as
/// "from the start", which would make a paging client loop for ever.
fn check_page_token(token: &str) -> Result<(), Status> {
    let ok = token.len() <= 64
        && token.split_once(':').is_some_and(|(ms, id)| {
            ms.len() == 13 && ms.bytes().all(|b| b.is_ascii_digit()) && baton_shared::ids::is_run_id(id)
        });
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "page_token: {} is not a page token from a previous ListRuns answer",
            echo(token)
        )))
    }
}

/// ListRuns' filters over the runs in Redis (see [`Api::redis_page`]).
struct RedisScan<'a> {
    workflow: Option<&'a str>,
    status: Option<&'static str>,
    parent: Option<&'a str>,
    top_level: bool,
    key: Option<&'a str>,
    /// Exclusive bounds on the creation time, Unix ms.
    after: Option<i64>,
    before: Option<i64>,
    filter: Option<&'a Filter>,
    now: chrono::DateTime<chrono::Utc>,
}

/// Parses ListRuns' `query`; `None` when it is empty.
///
/// # Errors
/// `INVALID_ARGUMENT` `query: column N: ...` (the parser's message, naming the column).
fn parse_query(query: &str) -> Result<Option<Filter>, Status> {
    if query.trim().is_empty() {
        return Ok(None);
    }
    Filter::parse(query)
        .map(Some)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// A protobuf timestamp as a UTC time (`None` when unset or out of range).
fn chrono_time(t: Option<&prost_types::Timestamp>) -> Option<chrono::DateTime<chrono::Utc>> {
    let t = t?;
    chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

/// Whether the run (a ListRuns view of a run in Redis) meets `filter`, with the meaning the
/// filter has over the archive. `error_types` are the distinct error types of its failed attempts
/// ([`view::run_error_types`]; read only when the filter has an `error_type` comparison).
fn view_matches(filter: &Filter, run: &Run, error_types: &[String], now: chrono::DateTime<chrono::Utc>) -> bool {
    let input: Option<serde_json::Value> = serde_json::from_str(&run.input_json).ok();
    let output: Option<serde_json::Value> = serde_json::from_str(&run.output_json).ok();
    let facts = RunFacts {
        id: &run.id,
        workflow: &run.workflow,
        version: run.version,
        status: RunStatus::try_from(run.status).unwrap_or(RunStatus::Unspecified).word(),
        created: chrono_time(run.created_at.as_ref()).unwrap_or_default(),
        finished: chrono_time(run.finished_at.as_ref()),
        parent: (!run.parent_run_id.is_empty()).then_some(run.parent_run_id.as_str()),
        idempotency_key: (!run.idempotency_key.is_empty()).then_some(run.idempotency_key.as_str()),
        error_types,
        input: input.as_ref(),
        output: output.as_ref(),
    };
    filter.matches(&facts, now)
}

/// ListRuns' own fields as the archive's conditions.
fn archive_conditions(scan: &RedisScan<'_>) -> crate::archive::search::RunConditions {
    let time = |ms: Option<i64>| ms.and_then(chrono::DateTime::from_timestamp_millis);
    crate::archive::search::RunConditions {
        workflow: scan.workflow.map(str::to_string),
        status: scan.status.map(str::to_string),
        parent_run_id: scan.parent.map(str::to_string),
        top_level: scan.top_level,
        idempotency_key: scan.key.map(str::to_string),
        created_after: time(scan.after),
        created_before: time(scan.before),
    }
}

/// Most bytes of the archive's error quoted in a partial ListRuns answer's `partial_reason`.
const PARTIAL_REASON_ERROR_BYTES: usize = 300;

/// `partial_reason` of a ListRuns answer given without the archive.
fn archive_unavailable(e: &crate::archive::ArchiveError) -> String {
    format!(
        "the archive is unavailable: {} (only the runs still in Redis are listed and counted)",
        cut(e.to_string(), PARTIAL_REASON_ERROR_BYTES)
    )
}

/// An archive failure as a status: `UNAVAILABLE` when trying again may help, else `INTERNAL`.
fn archive_status(e: crate::archive::ArchiveError) -> Status {
    if e.is_transient() {
        Status::unavailable(e.to_string())
    } else {
        Status::internal(e.to_string())
    }
}

/// One ListRuns page from the runs in Redis (`<created_ms:013>:<id>` index members with their
/// views, newest first, and where the Redis scan stopped) and the archived runs after the same
/// token: merged newest first, a run in both listed once (the archive's copy: Redis may hold only
/// its tombstone), at most `limit` runs and [`LIST_PAGE_BYTES`]. The next token is the last run's
/// key, or where the Redis scan stopped when that comes first (runs older than it may still be in
/// Redis).
fn merge_pages(
    redis: Vec<(String, Run)>,
    redis_next: Option<String>,
    archived: Vec<crate::archive::search::Listed>,
    limit: usize,
) -> (Vec<Run>, String) {
    let archived_ids: std::collections::HashSet<String> = archived.iter().map(|l| l.run.id.clone()).collect();
    let mut all: Vec<(String, Run)> = redis
        .into_iter()
        .filter(|(_, run)| !archived_ids.contains(&run.id))
        .chain(archived.into_iter().map(|l| (l.key.token(), l.run)))
        .collect();
    all.sort_by(|a, b| b.0.cmp(&a.0));
    let mut cut_by_redis = false;
    if let Some(stop) = &redis_next {
        let before = all.len();
        all.retain(|(k, _)| k >= stop);
        cut_by_redis = all.len() < before;
    }
    let more = all.len() > limit || cut_by_redis || redis_next.is_some();
    let mut runs = Vec::new();
    let mut bytes = 0usize;
    let mut last = String::new();
    let mut full = false;
    for (key, run) in all {
        let size = prost::Message::encoded_len(&run);
        if runs.len() == limit || (!runs.is_empty() && bytes.saturating_add(size) > LIST_PAGE_BYTES) {
            full = true;
            break;
        }
        bytes = bytes.saturating_add(size);
        last = key;
        runs.push(run);
    }
    let next = if full {
        last
    } else if more {
        redis_next.unwrap_or(last)
    } else {
        String::new()
    };
    (runs, next)
}

impl Api {
    /// Up to `limit` runs in Redis that meet `scan`, newest first from `page_token`, each with its
    /// index member, and the token to go on from (`None`: the index holds no more). The scan is
    /// bounded per call (`list_scan_entries` index entries, 10,000 by default) and the token says
    /// where to go on, so paging reaches every run however few of them match. A run Redis holds
    /// only as its tombstone is left out: the archive holds it (and lists it).
    ///
    /// # Errors
    /// `UNAVAILABLE` when Redis fails.
    async fn redis_page(
        &self,
        scan: &RedisScan<'_>,
        page_token: &str,
        limit: usize,
    ) -> Result<(Vec<(String, Run)>, Option<String>), Status> {
        // Index members are `<created_ms:013>:<run_id>` in lexicographic order, so `created_before`
        // is where the first page starts (members below `<before:013>`), and `created_after` where
        // the scan stops.
        let mut cursor = if !page_token.is_empty() {
            Some(page_token.to_string())
        } else {
            scan.before.map(|b| format!("{b:013}"))
        };
        let mut runs = Vec::new();
        let bound = self.engine.config.list_scan_entries;
        let mut scanned = 0usize;
        let mut bytes = 0usize;
        let mut full = false;
        let next = loop {
            let members = self
                .engine
                .store
                .run_index_page(
                    scan.workflow,
                    cursor.as_deref(),
                    limit.max(64).min(bound.saturating_sub(scanned)).max(1),
                )
                .await?;
            if members.is_empty() {
                break None;
            }
            let ids: Vec<String> = members
                .iter()
                .map(|m| m.split_once(':').map(|(_, id)| id.to_string()).unwrap_or_default())
                .collect();
            let summaries = self.engine.store.run_summaries(&ids).await?;
            let error_types = self.error_types(scan, &ids, &summaries).await?;
            let mut gone = Vec::new();
            let mut past_after = false;
            for ((member, summary), error_types) in members.iter().zip(summaries).zip(error_types) {
                if let Some(a) = scan.after
                    && member_created_ms(member).is_some_and(|ms| ms <= a)
                {
                    past_after = true;
                    break;
                }
                scanned += 1;
                let before = cursor.replace(member.clone());
                match summary {
                    None => gone.push(member.clone()),
                    Some(s) if s.contains_key("archived_at") => {}
                    Some(s)
                        if scan
                            .status
                            .is_none_or(|w| s.get("status").map(String::as_str) == Some(w))
                            && scan
                                .parent
                                .is_none_or(|p| s.get("parent_run").map(String::as_str) == Some(p))
                            && (!scan.top_level || s.get("parent_run").is_none_or(String::is_empty))
                            && scan
                                .key
                                .is_none_or(|k| s.get("idempotency_key").map(String::as_str) == Some(k)) =>
                    {
                        let run = view::run_view(None, &s, None);
                        if scan
                            .filter
                            .is_some_and(|f| !view_matches(f, &run, &error_types, scan.now))
                        {
                            continue;
                        }
                        let size = prost::Message::encoded_len(&run);
                        if !runs.is_empty() && bytes.saturating_add(size) > LIST_PAGE_BYTES {
                            // Full by size: this run opens the next page.
                            cursor = before;
                            full = true;
                            break;
                        }
                        bytes = bytes.saturating_add(size);
                        runs.push((member.clone(), run));
                        if runs.len() == limit {
                            break;
                        }
                    }
                    Some(_) => {}
                }
            }
            if !gone.is_empty() {
                let _ = self
                    .engine
                    .store
                    .drop_index_entries(scan.workflow.unwrap_or(""), &gone)
                    .await;
            }
            if past_after {
                break None;
            }
            if full || runs.len() == limit || scanned >= bound {
                break cursor.clone();
            }
        };
        Ok((runs, next))
    }

    /// The error types of the runs `ids` (with their `summaries`) for `scan`'s filter, in order:
    /// read from their steps' attempt histories when the filter has an `error_type` comparison,
    /// empty otherwise (no read).
    ///
    /// # Errors
    /// `UNAVAILABLE` when Redis fails.
    async fn error_types(
        &self,
        scan: &RedisScan<'_>,
        ids: &[String],
        summaries: &[Option<std::collections::HashMap<String, String>>],
    ) -> Result<Vec<Vec<String>>, Status> {
        if !scan.filter.is_some_and(Filter::uses_error_type) {
            return Ok(vec![Vec::new(); ids.len()]);
        }
        let runs: Vec<(&str, Vec<&str>)> = ids
            .iter()
            .zip(summaries)
            .map(|(id, summary)| {
                let steps = summary
                    .as_ref()
                    .filter(|s| !s.contains_key("archived_at"))
                    .and_then(|s| s.get("step_ids"))
                    .map(|ids| ids.split(',').filter(|s| !s.is_empty()).collect())
                    .unwrap_or_default();
                (id.as_str(), steps)
            })
            .collect();
        let histories = self.engine.store.step_histories(&runs).await?;
        Ok(histories.iter().map(|h| view::run_error_types(h)).collect())
    }

    /// ListRuns' `status_counts`: the matching archived runs counted by the archive (one `GROUP
    /// BY`), and the matching runs in Redis within the newest `list_scan_entries` of its index
    /// (beside an archive, a finished run the archive already holds is counted there, once). With
    /// `use_archive` false (the archive just failed), the runs in Redis alone. The second value is
    /// why the counts are partial, if they are: the archive failed, or runs in Redis are past the
    /// scan bound.
    ///
    /// # Errors
    /// `UNAVAILABLE` when Redis fails; `INTERNAL` when the archive fails for another reason than
    /// being unreachable.
    async fn count_runs(
        &self,
        scan: &RedisScan<'_>,
        use_archive: bool,
    ) -> Result<(std::collections::HashMap<String, u64>, Option<String>), Status> {
        let mut counts: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        let archive = self.archive.as_ref().filter(|_| use_archive);
        let bound = self.engine.config.list_scan_entries;
        // Finished runs in Redis, counted unless the archive holds them too.
        let mut finished_runs: Vec<(String, String)> = Vec::new();
        let mut cursor = scan.before.map(|b| format!("{b:013}"));
        let mut scanned = 0usize;
        let mut past_bound = false;
        'pages: loop {
            let members = self
                .engine
                .store
                .run_index_page(
                    scan.workflow,
                    cursor.as_deref(),
                    500.min(bound.saturating_sub(scanned)).max(1),
                )
                .await?;
            if members.is_empty() {
                break;
            }
            if scanned >= bound {
                // One entry past the bound: runs are left uncounted unless it is past `after`.
                past_bound = members
                    .first()
                    .and_then(|m| member_created_ms(m))
                    .is_none_or(|ms| scan.after.is_none_or(|a| ms > a));
                break;
            }
            let ids: Vec<String> = members
                .iter()
                .map(|m| m.split_once(':').map(|(_, id)| id.to_string()).unwrap_or_default())
                .collect();
            let summaries = self.engine.store.run_summaries(&ids).await?;
            let error_types = self.error_types(scan, &ids, &summaries).await?;
            for ((member, summary), error_types) in members.iter().zip(summaries).zip(error_types) {
                if scan
                    .after
                    .is_some_and(|a| member_created_ms(member).is_some_and(|ms| ms <= a))
                {
                    break 'pages;
                }
                scanned += 1;
                cursor = Some(member.clone());
                let Some(s) = summary else { continue };
                if s.contains_key("archived_at") {
                    // A tombstone: the archive holds the run (and counts it).
                    continue;
                }
                let word = s.get("status").map(String::as_str).unwrap_or_default();
                let finished = RunStatus::from_word(word).is_some_and(RunStatus::is_terminal);
                if scan.status.is_some_and(|w| w != word)
                    || scan
                        .parent
                        .is_some_and(|p| s.get("parent_run").map(String::as_str) != Some(p))
                    || (scan.top_level && s.get("parent_run").is_some_and(|p| !p.is_empty()))
                    || scan
                        .key
                        .is_some_and(|k| s.get("idempotency_key").map(String::as_str) != Some(k))
                {
                    continue;
                }
                if let Some(f) = scan.filter {
                    let run = view::run_view(None, &s, None);
                    if !view_matches(f, &run, &error_types, scan.now) {
                        continue;
                    }
                }
                if finished && archive.is_some() {
                    let id = member.split_once(':').map(|(_, id)| id).unwrap_or_default();
                    finished_runs.push((id.to_string(), word.to_string()));
                    continue;
                }
                let n = counts.entry(word.to_string()).or_default();
                *n = n.saturating_add(1);
            }
        }
        let mut partial = past_bound.then(|| {
            format!(
                "status_counts: the runs in Redis were counted within the newest {bound} entries of its \
                 index (list_scan_entries); older runs still in Redis are not counted"
            )
        });
        if let Some(archive) = archive {
            let namespace = &self.engine.config.namespace;
            let ids: Vec<String> = finished_runs.iter().map(|(id, _)| id.clone()).collect();
            let looked = match archive.archived_ids(namespace, &ids).await {
                Ok(archived) => archive
                    .count_by_status(namespace, &archive_conditions(scan), scan.filter, scan.now)
                    .await
                    .map(|counted| (archived, counted)),
                Err(e) => Err(e),
            };
            match looked {
                Ok((archived, counted)) => {
                    finished_runs.retain(|(id, _)| !archived.contains(id));
                    for (word, n) in counted {
                        let c = counts.entry(word).or_default();
                        *c = c.saturating_add(n);
                    }
                }
                Err(e) if e.is_transient() => partial = Some(archive_unavailable(&e)),
                Err(e) => return Err(archive_status(e)),
            }
            for (_, word) in finished_runs {
                let n = counts.entry(word).or_default();
                *n = n.saturating_add(1);
            }
        }
        Ok((counts, partial))
    }
}

#[tonic::async_trait]
impl proto::workflow_service_server::WorkflowService for Api {
    async fn register_workflow(
        &self,
        req: Request<RegisterWorkflowRequest>,
    ) -> Result<Response<RegisterWorkflowResponse>, Status> {
        let (def, created) = self.engine.register(&req.into_inner().definition).await?;
        let (reg, versions) = self.engine.registry.get_with_versions(&def.name, def.version).await?;
        if created {
            tracing::info!(workflow = %def.name, version = def.version, "registered workflow");
        }
        Ok(Response::new(RegisterWorkflowResponse {
            workflow: Some(view::workflow_view(&def, reg.registered_at, versions)),
            created,
        }))
    }

    async fn get_workflow(&self, req: Request<GetWorkflowRequest>) -> Result<Response<Workflow>, Status> {
        let req = req.into_inner();
        check_workflow("name", &req.name)?;
        let (reg, versions) = self.engine.registry.get_with_versions(&req.name, req.version).await?;
        Ok(Response::new(view::workflow_view(
            &reg.definition,
            reg.registered_at,
            versions,
        )))
    }

    async fn list_workflows(
        &self,
        req: Request<ListWorkflowsRequest>,
    ) -> Result<Response<ListWorkflowsResponse>, Status> {
        let r = req.into_inner();
        let limit = match r.limit {
            0 => DEFAULT_WORKFLOW_PAGE,
            n => (n as usize).min(MAX_WORKFLOW_PAGE),
        };
        // The token is the last name of the previous page (names are unique and sorted).
        let after = (!r.page_token.is_empty())
            .then(|| {
                baton_shared::ids::check_workflow_name("page_token", &r.page_token)
                    .map(|()| r.page_token.clone())
                    .map_err(|_| {
                        Status::invalid_argument(format!(
                            "page_token: {} is not a page token from a previous ListWorkflows answer",
                            echo(&r.page_token)
                        ))
                    })
            })
            .transpose()?;
        let mut names = self.engine.registry.names().await?;
        names.sort_unstable();
        names.dedup();
        let start = after.as_ref().map_or(0, |a| names.partition_point(|n| n <= a));
        let mut workflows = Vec::new();
        let mut bytes = 0usize;
        let mut next = None;
        for name in names.iter().skip(start) {
            if workflows.len() >= limit {
                next = workflows.last().map(|w: &proto::Workflow| w.name.clone());
                break;
            }
            // Only the latest version's definition is loaded (the others' numbers suffice), so a
            // page holds at most `limit` definitions in memory, whatever the versions kept.
            if let Some((latest, numbers)) = self.engine.registry.latest_with_versions(name).await? {
                let view = view::workflow_view(&latest.definition, latest.registered_at, numbers);
                let size = prost::Message::encoded_len(&view);
                if !workflows.is_empty() && bytes.saturating_add(size) > LIST_PAGE_BYTES {
                    next = workflows.last().map(|w: &proto::Workflow| w.name.clone());
                    break;
                }
                bytes = bytes.saturating_add(size);
                workflows.push(view);
            }
        }
        Ok(Response::new(ListWorkflowsResponse {
            workflows,
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn delete_workflow_version(
        &self,
        req: Request<proto::DeleteWorkflowVersionRequest>,
    ) -> Result<Response<proto::DeleteWorkflowVersionResponse>, Status> {
        let r = req.into_inner();
        check_workflow("name", &r.name)?;
        // A schedule that would start runs of the version (it names the version, or follows the
        // latest and this is the last one) keeps it: the schedule goes or changes first.
        let numbers = self.engine.registry.version_numbers(&r.name).await?;
        let exists = numbers.iter().any(|(v, _)| *v == r.version);
        let last = numbers.len() <= 1;
        let keeping: Vec<String> = self
            .engine
            .list_schedules(&r.name)
            .await?
            .into_iter()
            .filter(|s| s.version == r.version || (s.version == 0 && last))
            .map(|s| s.id)
            .take(10)
            .collect();
        if exists && !keeping.is_empty() {
            return Err(Status::failed_precondition(format!(
                "version: schedule{} {} start{} runs of workflow {} version {}; delete or edit {} first",
                if keeping.len() == 1 { "" } else { "s" },
                keeping.join(", "),
                if keeping.len() == 1 { "s" } else { "" },
                echo(&r.name),
                r.version,
                if keeping.len() == 1 { "it" } else { "them" },
            )));
        }
        let remaining_versions = self.engine.registry.delete_version(&r.name, r.version).await?;
        tracing::info!(workflow = %r.name, version = r.version, "deleted workflow version");
        Ok(Response::new(proto::DeleteWorkflowVersionResponse {
            remaining_versions,
        }))
    }
}

/// Workflows per `ListWorkflows` page when the caller sets no `limit`.
pub const DEFAULT_WORKFLOW_PAGE: usize = 100;

/// Most workflows per `ListWorkflows` page (a larger `limit` is lowered to it).
pub const MAX_WORKFLOW_PAGE: usize = 1_000;

type EventStream = Pin<Box<dyn Stream<Item = Result<RunEvent, Status>> + Send>>;

#[tonic::async_trait]
impl proto::run_service_server::RunService for Api {
    async fn submit_run(&self, req: Request<SubmitRunRequest>) -> Result<Response<SubmitRunResponse>, Status> {
        let r = req.into_inner();
        check_workflow("workflow", &r.workflow)?;
        check_len("idempotency_key", &r.idempotency_key, MAX_KEY_BYTES)?;
        let (run_id, created) = {
            let engine = self.engine.clone();
            let (workflow, input, key) = (r.workflow.clone(), r.input_json.clone(), r.idempotency_key.clone());
            let version = r.version;
            detached(async move { engine.submit_run(&workflow, version, &input, &key).await }).await?
        };
        crate::traces::record_run(&run_id, &r.workflow);
        // A reused idempotency key answers the run it made before; say whether this call's input
        // is not the one that run started with (the engine has checked that it parses).
        let input_differs = !created && {
            let sent: serde_json::Value = if r.input_json.trim().is_empty() {
                serde_json::json!({})
            } else {
                serde_json::from_str(&r.input_json).unwrap_or(serde_json::Value::Null)
            };
            let stored = self.engine.store.run_summaries(std::slice::from_ref(&run_id)).await?;
            let stored: Option<serde_json::Value> = stored
                .into_iter()
                .flatten()
                .next()
                .and_then(|m| m.get("input").and_then(|i| serde_json::from_str(i).ok()));
            stored.is_some_and(|stored| stored != sent)
        };
        Ok(Response::new(SubmitRunResponse {
            run_id,
            created,
            input_differs,
        }))
    }

    async fn get_run(&self, req: Request<GetRunRequest>) -> Result<Response<Run>, Status> {
        let GetRunRequest { run_id: id, step_id } = req.into_inner();
        check_id(&id)?;
        check_len("step_id", &step_id, MAX_ID_BYTES)?;
        run_answer(&self.engine, &self.ops, &id, &step_id)
            .await
            .map(Response::new)
    }

    async fn list_runs(&self, req: Request<ListRunsRequest>) -> Result<Response<ListRunsResponse>, Status> {
        let r = req.into_inner();
        let limit = match r.limit {
            0 => 50,
            n => n.min(1000) as usize,
        };
        let status = match RunStatus::try_from(r.status) {
            Ok(RunStatus::Unspecified) => None,
            Ok(s) => Some(s.word()),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "status: unknown run status {}",
                    r.status
                )));
            }
        };
        let workflow = (!r.workflow.is_empty()).then_some(r.workflow.as_str());
        if let Some(w) = workflow {
            check_workflow("workflow", w)?;
        }
        let parent = (!r.parent_run_id.is_empty()).then_some(r.parent_run_id.as_str());
        if let Some(p) = parent {
            check_run_id("parent_run_id", p)?;
        }
        if !r.page_token.is_empty() {
            check_page_token(&r.page_token)?;
        }
        check_len("idempotency_key", &r.idempotency_key, MAX_KEY_BYTES)?;
        let key = (!r.idempotency_key.is_empty()).then_some(r.idempotency_key.as_str());
        let after = r
            .created_after
            .as_ref()
            .map(|t| timestamp_ms("created_after", t))
            .transpose()?;
        let before = r
            .created_before
            .as_ref()
            .map(|t| timestamp_ms("created_before", t))
            .transpose()?;
        let filter = parse_query(&r.query)?;
        let now = chrono::Utc::now();
        let scan = RedisScan {
            workflow,
            status,
            parent,
            top_level: r.top_level,
            key,
            after,
            before,
            filter: filter.as_ref(),
            now,
        };
        let (redis_runs, redis_next) = self.redis_page(&scan, &r.page_token, limit).await?;
        let archived = match &self.archive {
            None => None,
            Some(archive) => {
                let conditions = archive_conditions(&scan);
                let from = crate::archive::search::PageKey::from_token(&r.page_token);
                let listed = archive
                    .list_runs(
                        &self.engine.config.namespace,
                        &conditions,
                        filter.as_ref(),
                        from.as_ref(),
                        // One more than the page: whether the archive has more.
                        limit.saturating_add(1),
                        now,
                    )
                    .await;
                match listed {
                    Ok(listed) => Some(Ok(listed)),
                    // The archive is down: the runs in Redis are still worth showing, said partial.
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %e, "ListRuns answers without the archive");
                        Some(Err(archive_unavailable(&e)))
                    }
                    Err(e) => return Err(archive_status(e)),
                }
            }
        };
        let mut partial_reason = None;
        let (runs, next) = match archived {
            Some(Ok(archived)) => merge_pages(redis_runs, redis_next, archived, limit),
            other => {
                partial_reason = other.and_then(Result::err);
                (
                    redis_runs.into_iter().map(|(_, run)| run).collect(),
                    redis_next.unwrap_or_default(),
                )
            }
        };
        let status_counts = if r.with_counts {
            let (counts, partial) = self.count_runs(&scan, partial_reason.is_none()).await?;
            partial_reason = partial_reason.or(partial);
            counts
        } else {
            Default::default()
        };
        Ok(Response::new(ListRunsResponse {
            runs,
            next_page_token: next,
            status_counts,
            partial: partial_reason.is_some(),
            partial_reason: partial_reason.unwrap_or_default(),
        }))
    }

    async fn cancel_run(&self, req: Request<CancelRunRequest>) -> Result<Response<RunOperationResponse>, Status> {
        let r = req.into_inner();
        check_id(&r.run_id)?;
        check_len("reason", &r.reason, MAX_TEXT_BYTES)?;
        {
            let (engine, run_id, reason) = (self.engine.clone(), r.run_id.clone(), r.reason.clone());
            detached(async move { engine.cancel_run(&run_id, &reason).await }).await?;
        }
        Ok(Response::new(RunOperationResponse {
            run_id: r.run_id,
            status: RunStatus::Cancelled as i32,
            dispatched_steps: vec![],
        }))
    }

    async fn retry_run(&self, req: Request<RetryRunRequest>) -> Result<Response<RunOperationResponse>, Status> {
        let r = req.into_inner();
        check_id(&r.run_id)?;
        let dispatched_steps = {
            let (engine, run_id) = (self.engine.clone(), r.run_id.clone());
            detached(async move { engine.reset_run(&run_id, None, "").await }).await?
        };
        Ok(Response::new(RunOperationResponse {
            run_id: r.run_id,
            status: RunStatus::Running as i32,
            dispatched_steps,
        }))
    }

    async fn rerun_run(&self, req: Request<RerunRunRequest>) -> Result<Response<RunOperationResponse>, Status> {
        let r = req.into_inner();
        check_id(&r.run_id)?;
        if r.from_step.is_empty() {
            return Err(Status::invalid_argument("from_step: required"));
        }
        check_len("from_step", &r.from_step, MAX_ID_BYTES)?;
        check_len("input_json", &r.input_json, self.engine.config.max_payload_bytes)?;
        let dispatched_steps = {
            let engine = self.engine.clone();
            let (run_id, from, input) = (r.run_id.clone(), r.from_step.clone(), r.input_json.clone());
            detached(async move { engine.reset_run(&run_id, Some(&from), &input).await }).await?
        };
        Ok(Response::new(RunOperationResponse {
            run_id: r.run_id,
            status: RunStatus::Running as i32,
            dispatched_steps,
        }))
    }

    async fn get_step_logs(
        &self,
        req: Request<proto::GetStepLogsRequest>,
    ) -> Result<Response<proto::GetStepLogsResponse>, Status> {
        let r = req.into_inner();
        check_id(&r.run_id)?;
        check_len("step_id", &r.step_id, MAX_ID_BYTES)?;
        let (lines, omitted) = crate::step_data::read(&self.engine, &r.run_id, &r.step_id, r.attempt, r.limit).await?;
        Ok(Response::new(proto::GetStepLogsResponse { lines, omitted }))
    }

    type WatchRunStream = EventStream;

    async fn watch_run(&self, req: Request<WatchRunRequest>) -> Result<Response<EventStream>, Status> {
        // The caller, for the per-caller cap: its token's identity, or with auth off its address.
        let identity = req
            .extensions()
            .get::<Principal>()
            .map(|p| p.identity().to_string())
            .or_else(|| req.remote_addr().map(|a| a.ip().to_string()));
        let WatchRunRequest {
            run_id,
            after_sequence,
            include_run,
        } = req.into_inner();
        check_id(&run_id)?;
        if !after_sequence.is_empty() && !is_sequence(&after_sequence) {
            return Err(Status::invalid_argument(format!(
                "after_sequence: {} is not an event sequence (`<ms>-<n>`, from a previous event)",
                echo(&after_sequence)
            )));
        }
        let permit = self.watch.admit(identity)?;
        // One round trip: where the run lives, where its live events start, and its history.
        let after = if after_sequence.is_empty() {
            "-"
        } else {
            after_sequence.as_str()
        };
        let open = self.engine.store.watch_open(&run_id, after, HISTORY_PAGE).await?;
        if open.state != Some(false) {
            // Only a tombstone, or nothing: an archived run's history comes from the archive, and
            // the stream ends after it (the run is over).
            let Some(archived) = crate::archiver::archived(&self.engine, &run_id).await? else {
                return Err(Status::not_found(format!(
                    "run_id: no run {run_id} ({})",
                    crate::reset::lost_hint()
                )));
            };
            let (tx, rx) = tokio::sync::mpsc::channel(256);
            let budget = view::get_run_budget();
            let last = include_run
                .then(|| view::archived_answer(archived.run, "", budget).ok())
                .flatten();
            tokio::spawn(async move {
                let after = (!after_sequence.is_empty()).then(|| sequence(&after_sequence));
                for ev in archived.history {
                    if after.is_some_and(|a| sequence(&ev.sequence) <= a) {
                        continue;
                    }
                    if tx.send(Ok(ev)).await.is_err() {
                        break;
                    }
                }
                if let Some(run) = last {
                    let _ = tx.send(Ok(final_event(run))).await;
                }
                drop(permit);
            });
            return Ok(Response::new(Box::pin(ReceiverStream::new(rx))));
        }
        // The subscription starts at the cursors read before the history, so no event falls
        // between the two.
        let sub = self.watch.subscribe_from(&run_id, open.last_event, open.last_log).await;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let engine = self.engine.clone();
        let ops = self.ops.clone();
        let first = open.history;
        tokio::spawn(async move {
            match stream_events(&engine, &run_id, &after_sequence, first, sub, &tx).await {
                Ok(End::Finished) if include_run => send_final(&engine, &ops, &run_id, &tx).await,
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                }
            }
            drop(permit);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// GetRun's answer for run `id` (checked) and `step_id` (`""`: the whole run): read from Redis,
/// or from the archive when Redis holds only its tombstone. Also the `run` of WatchRun's "final"
/// message.
///
/// # Errors
/// `NOT_FOUND` for an unknown run or step; what reading Redis or the archive fails with.
async fn run_answer(
    engine: &Engine,
    ops: &crate::operations::Operations,
    id: &str,
    step_id: &str,
) -> Result<Run, Status> {
    // Redis first; a run it holds only as a tombstone (or not at all) is read from the archive.
    let read = engine.store.read_run(id).await?;
    let (mut run, mut steps) = match read {
        Some(r) if !r.0.contains_key("archived_at") => r,
        _ => {
            let Some(archived) = crate::archiver::archived(engine, id).await? else {
                return Err(Status::not_found(format!(
                    "run_id: no run {id} ({})",
                    crate::reset::lost_hint()
                )));
            };
            let budget = view::get_run_budget();
            return view::archived_answer(archived.run, step_id, budget).map_err(Status::not_found);
        }
    };
    let wf = run.get("workflow").cloned().unwrap_or_default();
    let version = run.get("version").and_then(|v| v.parse().ok()).unwrap_or(0);
    let def = engine.registry.pinned(&wf, version).await.ok();
    if !step_id.is_empty() {
        // One step, with its whole output; the run's own input and output are left out so
        // that the answer is about the size of that output.
        let ids = run.get("step_ids").map(String::as_str).unwrap_or_default();
        if !ids.split(',').any(|s| s == step_id) {
            return Err(Status::not_found(format!(
                "step_id: run {id} has no step {}",
                baton_shared::limits::echo(step_id)
            )));
        }
        run.remove("input");
        run.remove("output");
        steps.extend(engine.store.read_step_outputs(id, &[step_id]).await?);
    }
    let mut view = view::run_view(def.as_deref(), &run, Some(&steps));
    if !step_id.is_empty() {
        view::keep_step(&mut view, step_id);
    }
    // Who holds the slots a waiting step waits for.
    let now = baton_shared::time::now_ms();
    for step in &mut view.steps {
        if step.status == StepStatus::Waiting as i32 && !step.slot.is_empty() {
            step.slot_holders = engine
                .store
                .slot_holders(&step.slot, now)
                .await?
                .into_iter()
                .map(|m| {
                    let mut p = m.splitn(3, '|');
                    match (p.next(), p.next(), p.next()) {
                        (Some(r), Some(s), Some(a)) => format!("{r}/{s}#{a}"),
                        _ => m.clone(),
                    }
                })
                .collect();
        }
    }
    // Why a dispatched step has not started (no consumer, or tasks ahead of it).
    ops.explain_waits(&mut view).await;
    if step_id.is_empty() {
        // The steps' outputs that fit the answer's budget, in step order; the others are
        // left out with their size (`output_omitted_bytes`).
        let budget = view::get_run_budget();
        view::trim_history(&mut view, budget);
        let fit = view::outputs_that_fit(&view, budget);
        let fit: Vec<&str> = fit.iter().map(String::as_str).collect();
        // Those outputs, then each attempt's log count and, while the budget lasts, the input
        // it ran with (the outputs and the counts in one round trip).
        crate::step_data::fill_outputs_and_attempts(engine, id, &mut view, &fit, budget).await?;
    } else {
        // Each attempt's log count and, while the budget lasts, the input it ran with.
        crate::step_data::fill_attempts(engine, id, &mut view).await?;
    }
    Ok(view)
}

/// Events of a run's history read from Redis at a time by `WatchRun`.
const HISTORY_PAGE: usize = 500;

/// Whether `s` is a Redis stream id (`<ms>-<n>`), the shape of a RunEvent's `sequence`.
fn is_sequence(s: &str) -> bool {
    s.len() <= 41
        && s.split_once('-').is_some_and(|(ms, n)| {
            !ms.is_empty()
                && !n.is_empty()
                && ms.bytes().all(|b| b.is_ascii_digit())
                && n.bytes().all(|b| b.is_ascii_digit())
                && ms.parse::<u64>().is_ok()
                && n.parse::<u64>().is_ok()
        })
}

/// Whether `ev` says the run reached a terminal status.
fn ends_run(ev: &RunEvent) -> bool {
    ev.kind == "run" && RunStatus::from_word(&ev.status).is_some_and(RunStatus::is_terminal)
}

/// Sends the run's history, then live events, until the run finishes or the client goes away.
///
/// A run's history can hold several ends: a retried or re-run run has a `failed` event followed
/// by `running` (`retried`/`rerun`) and the events of the new attempts. So the history is sent
/// whole, and the stream ends after it only when its *last* run event is terminal; otherwise it
/// follows the live events to the run's next end.
///
/// With `after` (a resumed stream), only the events after that sequence are sent; when none of
/// them is a run event, whether the run has ended is read from its current status.
///
/// Live events come from the coordinator's [`WatchHub`] (`sub`, taken before the history was
/// read): an event already sent is recognised by its sequence and skipped.
async fn stream_events(
    engine: &Engine,
    run_id: &str,
    after: &str,
    first: Vec<StreamEntry>,
    mut sub: Subscription,
    tx: &tokio::sync::mpsc::Sender<Result<RunEvent, Status>>,
) -> Result<End, CoordinatorError> {
    let mut last = if after.is_empty() {
        "-".to_string()
    } else {
        after.to_string()
    };
    let mut ended = false;
    let mut saw_run_event = false;
    let mut next = Some(first);
    loop {
        let batch = match next.take() {
            Some(b) => b,
            None => engine.store.events_after(run_id, &last, HISTORY_PAGE).await?,
        };
        let n = batch.len();
        for (id, f) in batch {
            last = id.clone();
            let ev = view::event_view(run_id, id, &f);
            if ev.kind == "run" {
                ended = ends_run(&ev);
                saw_run_event = true;
            }
            if tx.send(Ok(ev)).await.is_err() {
                return Ok(End::Left);
            }
        }
        if n < HISTORY_PAGE {
            break;
        }
    }
    // No history at all: the run was archived between WatchRun's look and this read (a run in
    // Redis always has its `pending` event). Its history comes from the archive; it is over.
    if last == "-"
        && let Some(archived) = crate::archiver::archived(engine, run_id).await?
    {
        for ev in archived.history {
            if tx.send(Ok(ev)).await.is_err() {
                return Ok(End::Left);
            }
        }
        return Ok(End::Finished);
    }
    if !after.is_empty() && !saw_run_event {
        let summary = engine.store.run_summaries(&[run_id.to_string()]).await?;
        ended = summary
            .first()
            .and_then(|s| s.as_ref())
            .and_then(|s| s.get("status"))
            .and_then(|w| RunStatus::from_word(w))
            .is_some_and(RunStatus::is_terminal);
    }
    if ended {
        return Ok(End::Finished);
    }
    loop {
        let notice = tokio::select! {
            n = sub.rx.recv() => n,
            () = tx.closed() => return Ok(End::Left),
        };
        match notice {
            Ok(Notice::Events(batch)) => {
                if let Some(end) = send_live(run_id, batch.to_vec(), &mut last, tx).await {
                    return Ok(end);
                }
            }
            Ok(Notice::Logs(batch)) => {
                for ev in batch.iter().filter_map(|e| crate::step_data::log_event(run_id, e)) {
                    if tx.send(Ok(ev)).await.is_err() {
                        return Ok(End::Left);
                    }
                }
            }
            Ok(Notice::Gone) => return Ok(End::Gone),
            Ok(Notice::Unavailable(why)) => return Err(CoordinatorError::Unavailable(why.to_string())),
            // Fell behind the run's channel: read what was missed from Redis; the channel's
            // later messages repeat some of it, which is skipped.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => loop {
                let batch = engine.store.events_after(run_id, &last, 500).await?;
                let n = batch.len();
                if let Some(end) = send_live(run_id, batch, &mut last, tx).await {
                    return Ok(end);
                }
                if n < 500 {
                    break;
                }
            },
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return Err(CoordinatorError::Internal("the run's watch subscription ended".into()));
            }
        }
    }
}

/// Sends the events of `batch` after `last` (moving it on); how the stream ends when it is over
/// (the run ended, or the client went away), `None` while it goes on.
async fn send_live(
    run_id: &str,
    batch: Vec<StreamEntry>,
    last: &mut String,
    tx: &tokio::sync::mpsc::Sender<Result<RunEvent, Status>>,
) -> Option<End> {
    for (id, f) in batch {
        if last != "-" && sequence(&id) <= sequence(last) {
            continue;
        }
        last.clone_from(&id);
        let ev = view::event_view(run_id, id, &f);
        let done = ends_run(&ev);
        if tx.send(Ok(ev)).await.is_err() {
            return Some(End::Left);
        }
        if done {
            return Some(End::Finished);
        }
    }
    None
}

/// How a WatchRun stream ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The run finished (its last run event is terminal), or was found over.
    Finished,
    /// The client went away.
    Left,
    /// The run's events are gone (it expired).
    Gone,
}

/// The "final" message of a stream opened with `include_run`: `run` as GetRun answers it.
fn final_event(run: Run) -> RunEvent {
    RunEvent {
        run_id: run.id.clone(),
        kind: "final".into(),
        status: RunStatus::try_from(run.status)
            .map(|s| s.word().to_string())
            .unwrap_or_default(),
        run: Some(run),
        ..Default::default()
    }
}

/// Sends the "final" message of a stream opened with `include_run`, once the run has finished:
/// the run as GetRun answers it. When it cannot be read (Redis away, the run expired meanwhile),
/// the stream ends without it, and the client reads the run with GetRun, which reports why.
async fn send_final(
    engine: &Engine,
    ops: &crate::operations::Operations,
    run_id: &str,
    tx: &tokio::sync::mpsc::Sender<Result<RunEvent, Status>>,
) {
    match run_answer(engine, ops, run_id, "").await {
        Ok(run) => {
            let _ = tx.send(Ok(final_event(run))).await;
        }
        Err(e) => tracing::debug!(run_id, error = %e.message(), "WatchRun: no final message"),
    }
}

#[tonic::async_trait]
impl proto::operations_service_server::OperationsService for Api {
    async fn list_workers(
        &self,
        _req: Request<proto::ListWorkersRequest>,
    ) -> Result<Response<proto::ListWorkersResponse>, Status> {
        Ok(Response::new(proto::ListWorkersResponse {
            workers: self.ops.list_workers().await?,
        }))
    }

    async fn list_queues(
        &self,
        _req: Request<proto::ListQueuesRequest>,
    ) -> Result<Response<proto::ListQueuesResponse>, Status> {
        Ok(Response::new(proto::ListQueuesResponse {
            queues: self.ops.list_queues().await?,
        }))
    }
}

#[tonic::async_trait]
impl proto::worker_service_server::WorkerService for Api {
    async fn register_worker(
        &self,
        req: Request<proto::RegisterWorkerRequest>,
    ) -> Result<Response<proto::RegisterWorkerResponse>, Status> {
        Ok(Response::new(self.ops.register_worker(req.into_inner()).await?))
    }

    async fn start_step(&self, req: Request<StartStepRequest>) -> Result<Response<StartStepResponse>, Status> {
        let r = req.into_inner();
        check_attempt_ref(&r.run_id, &r.step_id, &r.worker_id, &r.workflow)?;
        crate::traces::record_attempt(&r.run_id, &r.step_id, r.attempt, &r.workflow, &r.worker_id);
        let d = self
            .engine
            .start_step(
                &AttemptRef {
                    run_id: &r.run_id,
                    step_id: &r.step_id,
                    attempt: r.attempt,
                    workflow: &r.workflow,
                    version: r.workflow_version,
                    worker: &r.worker_id,
                    attempt_base: 0,
                },
                &r.input_json,
            )
            .await?;
        Ok(Response::new(StartStepResponse {
            disposition: disposition(d),
        }))
    }

    async fn report_result(&self, req: Request<ReportResultRequest>) -> Result<Response<ReportResultResponse>, Status> {
        let mut r = req.into_inner();
        check_attempt_ref(&r.run_id, &r.step_id, &r.worker_id, &r.workflow)?;
        crate::traces::record_attempt(&r.run_id, &r.step_id, r.attempt, &r.workflow, &r.worker_id);
        let max_output = self.engine.config.max_payload_bytes;
        let outcome = match r.outcome.take() {
            // An output over the limit fails the step for good (the handler would give the same
            // output again): answering an error instead would leave the step to its timeout.
            Some(report_result_request::Outcome::OutputJson(o)) if o.len() > max_output => {
                Outcome::Failure(output_too_large(o.len(), max_output))
            }
            Some(report_result_request::Outcome::OutputJson(o)) => Outcome::Output(o),
            Some(report_result_request::Outcome::Failure(f)) => Outcome::Failure(StepFailure {
                message: cut(f.message, MAX_FAILURE_MESSAGE_BYTES),
                error_type: cut(f.error_type, MAX_ERROR_TYPE_BYTES),
                retryable: f.retryable,
                details: cut(f.details, baton_shared::limits::MAX_ERROR_DETAILS_BYTES),
            }),
            Some(report_result_request::Outcome::Suspend(s)) => {
                check_len("suspend.event", &s.event, MAX_ID_BYTES)?;
                check_len("suspend.key", &s.key, MAX_KEY_BYTES)?;
                let timeout = Duration::from_millis(s.timeout_ms);
                check_duration(timeout, baton_shared::limits::MAX_TIMEOUT)
                    .map_err(|e| Status::invalid_argument(format!("suspend.timeout_ms: {e}")))?;
                Outcome::Suspend {
                    event: s.event,
                    key: s.key,
                    timeout: (s.timeout_ms > 0).then_some(timeout),
                }
            }
            None => {
                return Err(Status::invalid_argument(
                    "outcome: one of output_json, failure or suspend is required",
                ));
            }
        };
        crate::traces::record_outcome(&outcome);
        let engine = self.engine.clone();
        let d = detached(async move {
            let a = AttemptRef {
                run_id: &r.run_id,
                step_id: &r.step_id,
                attempt: r.attempt,
                workflow: &r.workflow,
                version: r.workflow_version,
                worker: &r.worker_id,
                attempt_base: r.attempt_base,
            };
            if r.start {
                engine.start_and_report(&a, &r.input_json, outcome).await
            } else {
                engine.report_result(&a, outcome).await
            }
        })
        .await?;
        Ok(Response::new(ReportResultResponse {
            disposition: disposition(d),
        }))
    }

    async fn emit_event(&self, req: Request<EmitEventRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        let r = req.into_inner();
        check_id(&r.run_id)?;
        check_len("step_id", &r.step_id, MAX_ID_BYTES)?;
        // Optional here (workers older than the field send none): checked against the holder when given.
        check_len("worker_id", &r.worker_id, MAX_ID_BYTES)?;
        let d = self
            .engine
            .emit_event(&r.run_id, &r.step_id, r.attempt, &r.worker_id, &r.payload_json)
            .await?;
        Ok(Response::new(HeartbeatResponse {
            disposition: disposition(d),
        }))
    }

    async fn append_logs(
        &self,
        req: Request<proto::AppendLogsRequest>,
    ) -> Result<Response<proto::AppendLogsResponse>, Status> {
        let r = req.into_inner();
        check_id(&r.run_id)?;
        check_len("step_id", &r.step_id, MAX_ID_BYTES)?;
        check_worker_id(&r.worker_id)?;
        let appended =
            crate::step_data::append(&self.engine, &r.run_id, &r.step_id, r.attempt, &r.worker_id, r.lines).await?;
        Ok(Response::new(proto::AppendLogsResponse {
            disposition: disposition(appended.disposition),
            dropped: u32::try_from(appended.dropped).unwrap_or(u32::MAX),
        }))
    }

    async fn heartbeat(&self, req: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        let r = req.into_inner();
        check_id(&r.run_id)?;
        check_len("step_id", &r.step_id, MAX_ID_BYTES)?;
        check_worker_id(&r.worker_id)?;
        let d = self
            .engine
            .heartbeat(&r.run_id, &r.step_id, r.attempt, &r.worker_id)
            .await?;
        Ok(Response::new(HeartbeatResponse {
            disposition: disposition(d),
        }))
    }
}

#[tonic::async_trait]
impl proto::event_service_server::EventService for Api {
    async fn publish_event(&self, req: Request<PublishEventRequest>) -> Result<Response<PublishEventResponse>, Status> {
        let r = req.into_inner();
        baton_shared::definition::check_event_name(&r.name)
            .map_err(|why| Status::invalid_argument(format!("name: {why}")))?;
        check_len("key", &r.key, MAX_KEY_BYTES)?;
        let engine = self.engine.clone();
        let (delivered, (started, trigger_errors)) = detached(async move {
            let delivered = engine.publish_event(&r.name, &r.key, &r.payload_json).await?;
            let triggered = engine.start_triggered_runs(r.name.trim(), &r.payload_json).await?;
            Ok((delivered, triggered))
        })
        .await?;
        Ok(Response::new(PublishEventResponse {
            trigger_errors,
            started_run_ids: started,
            buffered: delivered.is_empty(),
            delivered: delivered
                .into_iter()
                .map(|(run_id, step_id)| StepRef { run_id, step_id })
                .collect(),
        }))
    }

    async fn list_buffered_events(
        &self,
        req: Request<proto::ListBufferedEventsRequest>,
    ) -> Result<Response<proto::ListBufferedEventsResponse>, Status> {
        let r = req.into_inner();
        let events = self.engine.list_buffered_events(r.name.trim(), r.limit).await?;
        Ok(Response::new(proto::ListBufferedEventsResponse { events }))
    }

    async fn purge_buffered_events(
        &self,
        req: Request<proto::PurgeBufferedEventsRequest>,
    ) -> Result<Response<proto::PurgeBufferedEventsResponse>, Status> {
        let r = req.into_inner();
        let purged = self.engine.purge_buffered_events(&r.name, &r.key, r.all_keys).await?;
        Ok(Response::new(proto::PurgeBufferedEventsResponse {
            purged: u32::try_from(purged).unwrap_or(u32::MAX),
        }))
    }
}

#[tonic::async_trait]
impl proto::human_task_service_server::HumanTaskService for Api {
    async fn list_human_tasks(
        &self,
        req: Request<ListHumanTasksRequest>,
    ) -> Result<Response<ListHumanTasksResponse>, Status> {
        let r = req.into_inner();
        check_len("assignee", &r.assignee, MAX_ID_BYTES)?;
        if !r.workflow.is_empty() {
            check_workflow("workflow", &r.workflow)?;
        }
        check_len("status", &r.status, MAX_ID_BYTES)?;
        let mut tasks = self
            .engine
            .list_human_tasks(&r.assignee, &r.workflow, &r.status, r.limit)
            .await?;
        // With an archive, the tasks of archived runs follow those of the runs in Redis (a task
        // in both is listed once, as Redis has it), up to the limit.
        let limit = match r.limit {
            0 => 100,
            n => n.min(1000) as usize,
        };
        if let Some(archive) = &self.archive
            && tasks.len() < limit
        {
            let seen: std::collections::HashSet<(String, String)> =
                tasks.iter().map(|t| (t.run_id.clone(), t.step_id.clone())).collect();
            let archived = archive
                .list_human_tasks(
                    &self.engine.config.namespace,
                    &r.assignee,
                    &r.workflow,
                    &r.status,
                    limit,
                )
                .await
                .map_err(archive_status)?;
            let room = limit.saturating_sub(tasks.len());
            tasks.extend(
                archived
                    .into_iter()
                    .filter(|t| !seen.contains(&(t.run_id.clone(), t.step_id.clone())))
                    .take(room),
            );
        }
        Ok(Response::new(ListHumanTasksResponse { tasks }))
    }

    async fn complete_human_task(&self, req: Request<CompleteHumanTaskRequest>) -> Result<Response<HumanTask>, Status> {
        // Put there by the auth layer when auth is on: then the caller's identity completes the task.
        let principal = req.extensions().get::<Principal>().cloned();
        let r = req.into_inner();
        check_id(&r.run_id)?;
        check_len("step_id", &r.step_id, MAX_ID_BYTES)?;
        check_len("user", &r.user, MAX_ID_BYTES)?;
        if let Some(p) = &principal {
            // The record says who authenticated; a request naming someone else is refused rather
            // than silently recorded under another name.
            let claimed = r.user.trim();
            if !claimed.is_empty() && claimed != p.identity() {
                return Err(Status::permission_denied(format!(
                    "user: {} is not the authenticated user {} (leave user empty with a token)",
                    echo(claimed),
                    echo(p.identity())
                )));
            }
        }
        let engine = self.engine.clone();
        let task = detached(async move {
            let completer = match &principal {
                Some(p) => Completer::Authenticated(p),
                None => Completer::Claimed(&r.user),
            };
            engine
                .complete_human_task(&r.run_id, &r.step_id, completer, &r.data_json)
                .await
        })
        .await?;
        Ok(Response::new(task))
    }
}

#[tonic::async_trait]
impl proto::schedule_service_server::ScheduleService for Api {
    async fn create_schedule(&self, req: Request<CreateScheduleRequest>) -> Result<Response<Schedule>, Status> {
        let r = req.into_inner();
        if r.workflow.trim().is_empty() {
            return Err(Status::invalid_argument("workflow: required"));
        }
        check_workflow("workflow", r.workflow.trim())?;
        check_len("id", &r.id, MAX_ID_BYTES)?;
        check_len("cron", &r.cron, MAX_CRON_BYTES)?;
        check_len("timezone", &r.timezone, MAX_TIMEZONE_BYTES)?;
        check_len("overlap", &r.overlap, MAX_OVERLAP_BYTES)?;
        check_len("input_json", &r.input_json, self.engine.config.max_payload_bytes)?;
        check_duration(Duration::from_millis(r.catchup_window_ms), MAX_CATCHUP_WINDOW)
            .map_err(|e| Status::invalid_argument(format!("catchup_window_ms: {e}")))?;
        let id = if r.id.trim().is_empty() {
            format!("{}/{}", r.workflow.trim(), baton_shared::ids::new_run_id())
        } else {
            r.id.trim().to_string()
        };
        let input: serde_json::Value = if r.input_json.trim().is_empty() {
            serde_json::json!({})
        } else {
            serde_json::from_str(&r.input_json)
                .map_err(|e| Status::invalid_argument(format!("input_json: not valid JSON: {e}")))?
        };
        let overlap = if r.overlap.is_empty() {
            OverlapPolicy::default()
        } else {
            OverlapPolicy::parse(&r.overlap).map_err(|e| Status::invalid_argument(e.to_string()))?
        };
        let record = ScheduleRecord {
            id,
            workflow: r.workflow.trim().to_string(),
            version: r.workflow_version,
            cron: r.cron,
            timezone: if r.timezone.trim().is_empty() {
                "UTC".into()
            } else {
                r.timezone.trim().to_string()
            },
            input,
            overlap,
            catchup_window_ms: if r.catchup_window_ms == 0 {
                DEFAULT_CATCHUP_WINDOW.as_millis() as u64
            } else {
                r.catchup_window_ms
            },
            paused: false,
            source: "api".into(),
            created_at: baton_shared::time::now_ms(),
        };
        let record = self.engine.put_schedule(record, false).await?;
        Ok(Response::new(self.engine.schedule_view(&record).await?))
    }

    async fn get_schedule(&self, req: Request<ScheduleRef>) -> Result<Response<Schedule>, Status> {
        let id = schedule_id(req)?;
        let record = self.engine.get_schedule(&id).await?;
        Ok(Response::new(self.engine.schedule_view(&record).await?))
    }

    async fn list_schedules(
        &self,
        req: Request<ListSchedulesRequest>,
    ) -> Result<Response<ListSchedulesResponse>, Status> {
        let workflow = req.into_inner().workflow;
        if !workflow.is_empty() {
            check_workflow("workflow", &workflow)?;
        }
        let mut schedules = Vec::new();
        for r in self.engine.list_schedules(&workflow).await? {
            schedules.push(self.engine.schedule_view(&r).await?);
        }
        Ok(Response::new(ListSchedulesResponse { schedules }))
    }

    async fn pause_schedule(&self, req: Request<ScheduleRef>) -> Result<Response<Schedule>, Status> {
        let id = schedule_id(req)?;
        let record = self.engine.set_schedule_paused(&id, true).await?;
        Ok(Response::new(self.engine.schedule_view(&record).await?))
    }

    async fn resume_schedule(&self, req: Request<ScheduleRef>) -> Result<Response<Schedule>, Status> {
        let id = schedule_id(req)?;
        let record = self.engine.set_schedule_paused(&id, false).await?;
        Ok(Response::new(self.engine.schedule_view(&record).await?))
    }

    async fn delete_schedule(&self, req: Request<ScheduleRef>) -> Result<Response<DeleteScheduleResponse>, Status> {
        let id = schedule_id(req)?;
        self.engine.delete_schedule(&id).await?;
        Ok(Response::new(DeleteScheduleResponse {}))
    }

    async fn trigger_schedule(&self, req: Request<ScheduleRef>) -> Result<Response<ScheduleTick>, Status> {
        let id = schedule_id(req)?;
        let engine = self.engine.clone();
        Ok(Response::new(
            detached(async move { engine.trigger_schedule(&id).await }).await?,
        ))
    }

    async fn list_schedule_ticks(
        &self,
        req: Request<ListScheduleTicksRequest>,
    ) -> Result<Response<ListScheduleTicksResponse>, Status> {
        let r = req.into_inner();
        check_len("id", &r.id, MAX_ID_BYTES)?;
        let ticks = self.engine.schedule_ticks(&r.id, r.limit).await?;
        Ok(Response::new(ListScheduleTicksResponse { ticks }))
    }
}

/// The id of a `ScheduleRef`, at most [`MAX_ID_BYTES`].
fn schedule_id(req: Request<ScheduleRef>) -> Result<String, Status> {
    let id = req.into_inner().id;
    check_len("id", &id, MAX_ID_BYTES)?;
    Ok(id)
}

/// Checks the ids of a worker's call about one attempt (StartStep, ReportResult).
/// `INVALID_ARGUMENT` unless `worker_id` is given and at most [`MAX_ID_BYTES`]: the worker that
/// starts an attempt holds it, and only it may heartbeat and report it.
fn check_worker_id(worker_id: &str) -> Result<(), Status> {
    if worker_id.is_empty() {
        return Err(Status::invalid_argument(
            "worker_id: required (the worker's id, as it registers with RegisterWorker)",
        ));
    }
    check_len("worker_id", worker_id, MAX_ID_BYTES)
}

fn check_attempt_ref(run_id: &str, step_id: &str, worker_id: &str, workflow: &str) -> Result<(), Status> {
    check_id(run_id)?;
    check_len("step_id", step_id, MAX_ID_BYTES)?;
    check_worker_id(worker_id)?;
    if workflow.is_empty() {
        // An old task without a workflow: the engine answers it stale.
        return Ok(());
    }
    check_workflow("workflow", workflow)
}

/// The failure a step gets for an output of `len` bytes over the limit of `max`: not retryable,
/// type `OutputTooLarge`.
fn output_too_large(len: usize, max: usize) -> StepFailure {
    StepFailure {
        message: format!(
            "the handler's output of {len} bytes is over the limit of {max} bytes (the coordinator's max_payload_bytes)"
        ),
        error_type: "OutputTooLarge".into(),
        retryable: false,
        details: String::new(),
    }
}

/// How long the server waits for in-flight calls at shutdown.
pub const DRAIN: Duration = Duration::from_secs(10);
