//! `/v1/tasks`: list and complete human tasks (`HumanTaskService`).

use std::sync::Arc;

use axum::{Json, extract::State, http::HeaderMap};
use baton_shared::proto::{self, human_task_service_server::HumanTaskService as _};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{
    HttpState,
    error::ApiError,
    extract::{JsonBody, PathParams, Query},
    method,
    model::{CompleteTaskBody, ErrorBody, HumanTask, TaskList, json_text},
    runs::check_limit,
    schema::{RunId, ShortId, TaskStatusWord, WorkflowName},
};

/// Query of `GET /v1/tasks`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub struct ListTasksQuery {
    /// Only tasks this user may complete.
    #[param(value_type = Option<ShortId>)]
    assignee: String,
    /// Only tasks of this workflow.
    #[param(value_type = Option<WorkflowName>)]
    workflow: String,
    /// `open`, `completed` or `cancelled`; absent: all.
    #[param(value_type = Option<TaskStatusWord>)]
    status: String,
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// Human tasks, newest first.
#[utoipa::path(get, operation_id = "ListHumanTasks", path = "/v1/tasks", tag = "tasks", params(ListTasksQuery),
    responses(
        (status = 200, description = "Tasks", body = TaskList),
        (status = "default", description = "An error", body = ErrorBody),
    ))]
pub async fn list(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(q): Query<ListTasksQuery>,
) -> Result<Json<TaskList>, ApiError> {
    let msg = proto::ListHumanTasksRequest {
        assignee: q.assignee,
        workflow: q.workflow,
        status: q.status,
        limit: check_limit(q.limit, 1000)?,
    };
    let r = s
        .call(
            method!("HumanTaskService/ListHumanTasks"),
            &headers,
            msg,
            |api, req| async move { api.list_human_tasks(req).await },
        )
        .await?;
    Ok(Json(TaskList {
        tasks: r.tasks.into_iter().map(HumanTask::from).collect(),
    }))
}

/// Completes an open human task with form data, which must satisfy the step's form schema.
#[utoipa::path(post, operation_id = "CompleteHumanTask", path = "/v1/tasks/{run_id}/{step_id}/complete", tag = "tasks", request_body = CompleteTaskBody,
    params(
        ("run_id" = RunId, Path, description = "The run (a UUID)"),
        ("step_id" = ShortId, Path, description = "The human step"),
    ),
    responses(
        (status = 200, description = "The completed task", body = HumanTask),
        (status = "default", description = "An error (400 with `field` `data/<property>` when the form schema refuses the data; 404; 400 FAILED_PRECONDITION when not open)", body = ErrorBody),
    ))]
pub async fn complete(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    PathParams((run_id, step_id)): PathParams<(String, String)>,
    JsonBody(b): JsonBody<CompleteTaskBody>,
) -> Result<Json<HumanTask>, ApiError> {
    let msg = proto::CompleteHumanTaskRequest {
        run_id,
        step_id,
        user: b.user,
        data_json: json_text(b.data.as_ref()),
    };
    let t = s
        .call(
            method!("HumanTaskService/CompleteHumanTask"),
            &headers,
            msg,
            |api, req| async move { api.complete_human_task(req).await },
        )
        .await?;
    Ok(Json(t.into()))
}
