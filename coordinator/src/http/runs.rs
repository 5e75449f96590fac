//! `/v1/runs`: submit, list, get, cancel, retry and rerun runs (`RunService`; the event stream is
//! in [`super::sse`]).

use std::sync::Arc;

use axum::{Json, extract::State, http::HeaderMap};
use baton_shared::proto::{self, run_service_server::RunService as _};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{
    HttpState,
    error::ApiError,
    extract::{JsonBody, PathParams, Query},
    method,
    model::{
        CancelRunBody, Empty, ErrorBody, LogLine, RerunRunBody, Run, RunList, RunOperation, StepLogs, SubmitRunAnswer,
        SubmitRunBody, json_text, parse_time,
    },
    schema::{Key, Rfc3339, RunId, RunPageToken, RunStatusWord, ShortId, WorkflowName},
};

/// Starts a run. With an idempotency key, the same (workflow, key) answers the same run.
#[utoipa::path(post, operation_id = "SubmitRun", path = "/v1/runs", tag = "runs", request_body = SubmitRunBody,
    responses(
        (status = 200, description = "The run (`created` false when the idempotency key matched)", body = SubmitRunAnswer),
        (status = "default", description = "An error (400 names `input/...`; 404 unknown workflow)", body = ErrorBody),
    ))]
pub async fn submit(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    JsonBody(b): JsonBody<SubmitRunBody>,
) -> Result<Json<SubmitRunAnswer>, ApiError> {
    let msg = proto::SubmitRunRequest {
        workflow: b.workflow,
        version: b.version,
        input_json: json_text(b.input.as_ref()),
        idempotency_key: b.idempotency_key,
    };
    let r = s
        .call(method!("RunService/SubmitRun"), &headers, msg, |api, req| async move {
            api.submit_run(req).await
        })
        .await?;
    Ok(Json(SubmitRunAnswer {
        run_id: r.run_id,
        created: r.created,
        input_differs: r.input_differs,
    }))
}

/// Query of `GET /v1/runs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub struct ListRunsQuery {
    /// Only runs of this workflow.
    #[param(value_type = Option<WorkflowName>)]
    workflow: String,
    /// Only runs in this status.
    #[param(value_type = Option<RunStatusWord>)]
    status: String,
    /// Only the runs this run started.
    #[param(value_type = Option<RunId>)]
    parent_run_id: String,
    /// Only runs created after this RFC 3339 time (exclusive).
    #[param(value_type = Option<Rfc3339>)]
    created_after: String,
    /// Only runs created before this RFC 3339 time (exclusive).
    #[param(value_type = Option<Rfc3339>)]
    created_before: String,
    /// At most this many (default 50, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// From a previous answer's `next_page_token`.
    #[param(value_type = Option<RunPageToken>)]
    page_token: String,
    /// Only the runs no other run started (`true`); `false` or absent: every run.
    top_level: bool,
    /// Only the runs submitted with this idempotency key (at most 1024 bytes).
    #[param(value_type = Option<Key>)]
    idempotency_key: String,
    /// Only the runs this filter selects, e.g. `status = failed AND input.customer.id = "c-42"`
    /// (docs/search.md; at most 4096 bytes). A filter that does not parse is 400 naming `query`
    /// and the column.
    #[param(value_type = Option<String>, max_length = 4096)]
    query: String,
    /// Also count the matching runs by status (`status_counts`), over all of them.
    counts: bool,
}

fn time_param(field: &str, value: &str) -> Result<Option<prost_types::Timestamp>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    parse_time(value)
        .map(Some)
        .map_err(|e| ApiError::invalid(format!("{field}: {e}")))
}

/// Checks a `limit` query parameter: 1 to `max`.
pub(super) fn check_limit(limit: Option<u32>, max: u32) -> Result<u32, ApiError> {
    match limit {
        None => Ok(0),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::invalid(format!(
            "limit: must be between 1 and {max} (got {n})"
        ))),
    }
}

/// Runs, newest first, filtered and paged.
#[utoipa::path(get, operation_id = "ListRuns", path = "/v1/runs", tag = "runs", params(ListRunsQuery),
    responses(
        (status = 200, description = "A page of runs (`steps` empty)", body = RunList),
        (status = "default", description = "An error (400 names the parameter)", body = ErrorBody),
    ))]
pub async fn list(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(q): Query<ListRunsQuery>,
) -> Result<Json<RunList>, ApiError> {
    let status = if q.status.is_empty() {
        proto::RunStatus::Unspecified
    } else {
        proto::RunStatus::from_word(&q.status).ok_or_else(|| {
            ApiError::invalid(format!(
                "status: {} is not a run status (pending, running, succeeded, failed, cancelled, timed_out)",
                baton_shared::limits::echo(&q.status)
            ))
        })?
    };
    let msg = proto::ListRunsRequest {
        workflow: q.workflow,
        status: status as i32,
        limit: check_limit(q.limit, 1000)?,
        page_token: q.page_token,
        parent_run_id: q.parent_run_id,
        created_after: time_param("created_after", &q.created_after)?,
        created_before: time_param("created_before", &q.created_before)?,
        top_level: q.top_level,
        idempotency_key: q.idempotency_key,
        query: q.query,
        with_counts: q.counts,
    };
    let r = s
        .call(method!("RunService/ListRuns"), &headers, msg, |api, req| async move {
            api.list_runs(req).await
        })
        .await?;
    Ok(Json(RunList {
        runs: r.runs.into_iter().map(Run::from).collect(),
        next_page_token: r.next_page_token,
        status_counts: q.counts.then(|| r.status_counts.into_iter().collect()),
        partial: r.partial,
        partial_reason: r.partial.then_some(r.partial_reason),
    }))
}

/// Query of `GET /v1/runs/{run_id}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub struct GetRunQuery {
    /// Only this step, with its whole output (the run's own `input` and `output` left out). Without
    /// it, the answer stays under 3 MiB: a step output that does not fit is left out and its size
    /// said in `output_omitted_bytes`.
    #[param(value_type = Option<ShortId>)]
    step_id: String,
}

/// One run with its steps, or one of its steps (`step_id`).
#[utoipa::path(get, operation_id = "GetRun", path = "/v1/runs/{run_id}", tag = "runs",
    params(("run_id" = RunId, Path, description = "The run's id (a UUID)"), GetRunQuery),
    responses(
        (status = 200, description = "The run (at most 3 MiB without `step_id`)", body = Run),
        (status = "default", description = "An error (404: no such run, or it expired, or no such step)", body = ErrorBody),
    ))]
pub async fn get(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    PathParams(run_id): PathParams<String>,
    Query(q): Query<GetRunQuery>,
) -> Result<Json<Run>, ApiError> {
    let r = s
        .call(
            method!("RunService/GetRun"),
            &headers,
            proto::GetRunRequest {
                run_id,
                step_id: q.step_id,
            },
            |api, req| async move { api.get_run(req).await },
        )
        .await?;
    Ok(Json(r.into()))
}

/// Query of `GET /v1/runs/{run_id}/logs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub struct StepLogsQuery {
    /// Only this step's lines (a fan-out step's include its elements', `<step>#<index>`).
    #[param(value_type = Option<ShortId>)]
    step: String,
    /// Only this attempt of `step` (which is then required).
    #[param(minimum = 1)]
    attempt: Option<u32>,
    /// At most this many lines, the newest (default and most 10,000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

/// The log lines handlers wrote for a run's attempts (`ctx.log`), oldest first. Each attempt keeps
/// at most 1,000 lines and 256 KiB (its oldest dropped first); live lines also arrive on the
/// events stream (`event: log`).
#[utoipa::path(get, operation_id = "GetStepLogs", path = "/v1/runs/{run_id}/logs", tag = "runs",
    params(("run_id" = RunId, Path, description = "The run's id (a UUID)"), StepLogsQuery),
    responses(
        (status = 200, description = "The lines (at most 10,000 and 3 MiB; `omitted` counts the older ones left out)", body = StepLogs),
        (status = "default", description = "An error (400 names the parameter; 404: no such run, or it expired, or no such step)", body = ErrorBody),
    ))]
pub async fn logs(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    PathParams(run_id): PathParams<String>,
    Query(q): Query<StepLogsQuery>,
) -> Result<Json<StepLogs>, ApiError> {
    let limit = check_limit(q.limit, baton_shared::limits::MAX_LOG_LINES_PER_READ as u32)?;
    if q.step.len() > crate::api::MAX_ID_BYTES {
        return Err(ApiError::invalid(format!(
            "step: must be at most {} bytes (got {} bytes: {})",
            crate::api::MAX_ID_BYTES,
            q.step.len(),
            baton_shared::limits::echo(&q.step)
        )));
    }
    let attempt = match q.attempt {
        Some(0) => return Err(ApiError::invalid("attempt: must be at least 1 (got 0)")),
        Some(n) => n,
        None => 0,
    };
    let r = s
        .call(
            method!("RunService/GetStepLogs"),
            &headers,
            proto::GetStepLogsRequest {
                run_id,
                step_id: q.step,
                attempt,
                limit,
            },
            |api, req| async move { api.get_step_logs(req).await },
        )
        .await?;
    Ok(Json(StepLogs {
        lines: r.lines.into_iter().map(LogLine::from).collect(),
        omitted: r.omitted,
    }))
}

/// Cancels a run: unfinished steps become cancelled.
#[utoipa::path(post, operation_id = "CancelRun", path = "/v1/runs/{run_id}/cancel", tag = "runs", request_body = CancelRunBody,
    params(("run_id" = RunId, Path, description = "The run's id (a UUID)")),
    responses(
        (status = 200, description = "Cancelled", body = RunOperation),
        (status = "default", description = "An error (400 FAILED_PRECONDITION: already finished)", body = ErrorBody),
    ))]
pub async fn cancel(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    PathParams(run_id): PathParams<String>,
    JsonBody(b): JsonBody<CancelRunBody>,
) -> Result<Json<RunOperation>, ApiError> {
    let r = s
        .call(
            method!("RunService/CancelRun"),
            &headers,
            proto::CancelRunRequest {
                run_id,
                reason: b.reason,
            },
            |api, req| async move { api.cancel_run(req).await },
        )
        .await?;
    Ok(Json(r.into()))
}

/// Runs a finished run's failed and cancelled steps again.
#[utoipa::path(post, operation_id = "RetryRun", path = "/v1/runs/{run_id}/retry", tag = "runs", request_body = Empty,
    params(("run_id" = RunId, Path, description = "The run's id (a UUID)")),
    responses(
        (status = 200, description = "Retried", body = RunOperation),
        (status = "default", description = "An error (400 FAILED_PRECONDITION unless failed, cancelled or timed out)", body = ErrorBody),
    ))]
pub async fn retry(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    PathParams(run_id): PathParams<String>,
    JsonBody(Empty {}): JsonBody<Empty>,
) -> Result<Json<RunOperation>, ApiError> {
    let r = s
        .call(
            method!("RunService/RetryRun"),
            &headers,
            proto::RetryRunRequest { run_id },
            |api, req| async move { api.retry_run(req).await },
        )
        .await?;
    Ok(Json(r.into()))
}

/// Runs a finished run again from a step, optionally with a new input.
#[utoipa::path(post, operation_id = "RerunRun", path = "/v1/runs/{run_id}/rerun", tag = "runs", request_body = RerunRunBody,
    params(("run_id" = RunId, Path, description = "The run's id (a UUID)")),
    responses(
        (status = 200, description = "Re-run", body = RunOperation),
        (status = "default", description = "An error (400 names `from_step`; FAILED_PRECONDITION while it runs)", body = ErrorBody),
    ))]
pub async fn rerun(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    PathParams(run_id): PathParams<String>,
    JsonBody(b): JsonBody<RerunRunBody>,
) -> Result<Json<RunOperation>, ApiError> {
    let msg = proto::RerunRunRequest {
        run_id,
        from_step: b.from_step,
        input_json: json_text(b.input.as_ref()),
    };
    let r = s
        .call(method!("RunService/RerunRun"), &headers, msg, |api, req| async move {
            api.rerun_run(req).await
        })
        .await?;
    Ok(Json(r.into()))
}
