//! `/v1/schedules`: create, list, get, pause, resume, delete and trigger schedules, and their tick
//! ledger (`ScheduleService`).

use std::sync::Arc;

use axum::{Json, extract::State, http::HeaderMap};
use baton_shared::proto::{self, schedule_service_server::ScheduleService as _};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{
    HttpState,
    error::ApiError,
    extract::{JsonBody, PathParams, Query},
    method,
    model::{
        CreateScheduleBody, Empty, EmptyAnswer, ErrorBody, Schedule, ScheduleList, ScheduleTick, TickList, json_text,
    },
    runs::check_limit,
    schema::{ScheduleId, WorkflowName},
};

/// Creates a schedule, or replaces the API schedule with the same id.
#[utoipa::path(post, operation_id = "CreateSchedule", path = "/v1/schedules", tag = "schedules", request_body = CreateScheduleBody,
    responses(
        (status = 200, description = "The schedule", body = Schedule),
        (status = "default", description = "An error (400 names `cron`, `timezone`, `overlap`, `input`; 404 unknown workflow)", body = ErrorBody),
    ))]
pub async fn create(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    JsonBody(b): JsonBody<CreateScheduleBody>,
) -> Result<Json<Schedule>, ApiError> {
    let msg = proto::CreateScheduleRequest {
        id: b.id,
        workflow: b.workflow,
        workflow_version: b.workflow_version,
        cron: b.cron,
        timezone: b.timezone,
        input_json: json_text(b.input.as_ref()),
        overlap: b.overlap,
        catchup_window_ms: b.catchup_window_ms,
    };
    let r = s
        .call(
            method!("ScheduleService/CreateSchedule"),
            &headers,
            msg,
            |api, req| async move { api.create_schedule(req).await },
        )
        .await?;
    Ok(Json(r.into()))
}

/// Query of `GET /v1/schedules`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub struct ListSchedulesQuery {
    /// Only schedules of this workflow.
    #[param(value_type = Option<WorkflowName>)]
    workflow: String,
}

/// Every schedule, by id.
#[utoipa::path(get, operation_id = "ListSchedules", path = "/v1/schedules", tag = "schedules", params(ListSchedulesQuery),
    responses(
        (status = 200, description = "Schedules", body = ScheduleList),
        (status = "default", description = "An error", body = ErrorBody),
    ))]
pub async fn list(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(q): Query<ListSchedulesQuery>,
) -> Result<Json<ScheduleList>, ApiError> {
    let r = s
        .call(
            method!("ScheduleService/ListSchedules"),
            &headers,
            proto::ListSchedulesRequest { workflow: q.workflow },
            |api, req| async move { api.list_schedules(req).await },
        )
        .await?;
    Ok(Json(ScheduleList {
        schedules: r.schedules.into_iter().map(Schedule::from).collect(),
    }))
}

/// One schedule.
#[utoipa::path(get, operation_id = "GetSchedule", path = "/v1/schedules/{id}", tag = "schedules",
    params(("id" = ScheduleId, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The schedule", body = Schedule),
        (status = "default", description = "An error (404)", body = ErrorBody),
    ))]
pub async fn get(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
) -> Result<Json<Schedule>, ApiError> {
    let r = s
        .call(
            method!("ScheduleService/GetSchedule"),
            &headers,
            proto::ScheduleRef { id },
            |api, req| async move { api.get_schedule(req).await },
        )
        .await?;
    Ok(Json(r.into()))
}

/// Deletes an API schedule.
#[utoipa::path(delete, operation_id = "DeleteSchedule", path = "/v1/schedules/{id}", tag = "schedules",
    params(("id" = ScheduleId, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "Deleted", body = EmptyAnswer),
        (status = "default", description = "An error (404)", body = ErrorBody),
    ))]
pub async fn delete(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
) -> Result<Json<EmptyAnswer>, ApiError> {
    s.call(
        method!("ScheduleService/DeleteSchedule"),
        &headers,
        proto::ScheduleRef { id },
        |api, req| async move { api.delete_schedule(req).await },
    )
    .await?;
    Ok(Json(EmptyAnswer {}))
}

/// Pauses a schedule: it records and starts nothing until resumed.
#[utoipa::path(post, operation_id = "PauseSchedule", path = "/v1/schedules/{id}/pause", tag = "schedules", request_body = Empty,
    params(("id" = ScheduleId, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The schedule", body = Schedule),
        (status = "default", description = "An error (404)", body = ErrorBody),
    ))]
pub async fn pause(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
    JsonBody(Empty {}): JsonBody<Empty>,
) -> Result<Json<Schedule>, ApiError> {
    let r = s
        .call(
            method!("ScheduleService/PauseSchedule"),
            &headers,
            proto::ScheduleRef { id },
            |api, req| async move { api.pause_schedule(req).await },
        )
        .await?;
    Ok(Json(r.into()))
}

/// Resumes a paused schedule.
#[utoipa::path(post, operation_id = "ResumeSchedule", path = "/v1/schedules/{id}/resume", tag = "schedules", request_body = Empty,
    params(("id" = ScheduleId, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The schedule", body = Schedule),
        (status = "default", description = "An error (404)", body = ErrorBody),
    ))]
pub async fn resume(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
    JsonBody(Empty {}): JsonBody<Empty>,
) -> Result<Json<Schedule>, ApiError> {
    let r = s
        .call(
            method!("ScheduleService/ResumeSchedule"),
            &headers,
            proto::ScheduleRef { id },
            |api, req| async move { api.resume_schedule(req).await },
        )
        .await?;
    Ok(Json(r.into()))
}

/// Fires the schedule now, whatever its overlap policy.
#[utoipa::path(post, operation_id = "TriggerSchedule", path = "/v1/schedules/{id}/trigger", tag = "schedules", request_body = Empty,
    params(("id" = ScheduleId, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The tick", body = ScheduleTick),
        (status = "default", description = "An error (404)", body = ErrorBody),
    ))]
pub async fn trigger(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
    JsonBody(Empty {}): JsonBody<Empty>,
) -> Result<Json<ScheduleTick>, ApiError> {
    let r = s
        .call(
            method!("ScheduleService/TriggerSchedule"),
            &headers,
            proto::ScheduleRef { id },
            |api, req| async move { api.trigger_schedule(req).await },
        )
        .await?;
    Ok(Json(r.into()))
}

/// Query of `GET /v1/schedules/{id}/ticks`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub struct TicksQuery {
    /// At most this many (default 50, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// The schedule's ledger: every tick, newest first.
#[utoipa::path(get, operation_id = "ListScheduleTicks", path = "/v1/schedules/{id}/ticks", tag = "schedules",
    params(("id" = ScheduleId, Path, description = "The schedule's id"), TicksQuery),
    responses(
        (status = 200, description = "Ticks", body = TickList),
        (status = "default", description = "An error (404)", body = ErrorBody),
    ))]
pub async fn ticks(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
    Query(q): Query<TicksQuery>,
) -> Result<Json<TickList>, ApiError> {
    let msg = proto::ListScheduleTicksRequest {
        id,
        limit: check_limit(q.limit, 1000)?,
    };
    let r = s
        .call(
            method!("ScheduleService/ListScheduleTicks"),
            &headers,
            msg,
            |api, req| async move { api.list_schedule_ticks(req).await },
        )
        .await?;
    Ok(Json(TickList {
        ticks: r.ticks.into_iter().map(ScheduleTick::from).collect(),
    }))
}
