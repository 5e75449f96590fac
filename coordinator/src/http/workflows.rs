//! `/v1/workflows`: register, list, get and delete workflow definitions (`WorkflowService`).

use std::sync::Arc;

use axum::{Json, extract::State, http::HeaderMap};
use baton_shared::proto::{self, workflow_service_server::WorkflowService as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{
    HttpState,
    error::ApiError,
    extract::{JsonBody, PathParams, Query},
    method,
    model::{ErrorBody, RegisterWorkflowAnswer, RegisterWorkflowBody, Workflow, WorkflowList},
    schema::WorkflowName,
};

/// Registers a workflow definition (YAML or JSON text, or a JSON object).
#[utoipa::path(post, operation_id = "RegisterWorkflow", path = "/v1/workflows", tag = "workflows", request_body = RegisterWorkflowBody,
    responses(
        (status = 200, description = "Registered (or already registered: `created` false)", body = RegisterWorkflowAnswer),
        (status = "default", description = "An error (400 names the definition path; 409 same name and version, other content)", body = ErrorBody),
    ))]
pub async fn register(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RegisterWorkflowBody>,
) -> Result<Json<RegisterWorkflowAnswer>, ApiError> {
    let definition = match body.definition {
        Value::String(text) => text,
        v @ Value::Object(_) => v.to_string(),
        _ => {
            return Err(ApiError::invalid(
                "definition: must be the definition's YAML or JSON text, or a JSON object",
            ));
        }
    };
    let r = s
        .call(
            method!("WorkflowService/RegisterWorkflow"),
            &headers,
            proto::RegisterWorkflowRequest { definition },
            |api, req| async move { api.register_workflow(req).await },
        )
        .await?;
    let workflow = r
        .workflow
        .ok_or_else(|| ApiError::from(tonic::Status::internal("RegisterWorkflow answered no workflow")))?;
    Ok(Json(RegisterWorkflowAnswer {
        workflow: workflow.into(),
        created: r.created,
    }))
}

/// Query of `GET /v1/workflows`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub struct ListWorkflowsQuery {
    /// At most this many (default 100, at most 1000); a page also ends before 3 MiB.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// From a previous answer's `next_page_token` (the last workflow name of the page before).
    #[param(value_type = Option<WorkflowName>)]
    page_token: String,
}

/// The latest version of every registered workflow, in name order, a page at a time.
#[utoipa::path(get, operation_id = "ListWorkflows", path = "/v1/workflows", tag = "workflows",
    params(ListWorkflowsQuery),
    responses(
        (status = 200, description = "A page of workflows", body = WorkflowList),
        (status = "default", description = "An error (400 names the parameter)", body = ErrorBody),
    ))]
pub async fn list(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(q): Query<ListWorkflowsQuery>,
) -> Result<Json<WorkflowList>, ApiError> {
    let msg = proto::ListWorkflowsRequest {
        limit: q.limit.unwrap_or(0),
        page_token: q.page_token,
    };
    let r = s
        .call(
            method!("WorkflowService/ListWorkflows"),
            &headers,
            msg,
            |api, req| async move { api.list_workflows(req).await },
        )
        .await?;
    Ok(Json(WorkflowList {
        workflows: r.workflows.into_iter().map(Workflow::from).collect(),
        next_page_token: r.next_page_token,
    }))
}

/// Query of `GET /v1/workflows/{name}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub struct GetWorkflowQuery {
    /// The version; 0 or absent: the latest.
    version: u32,
}

/// One workflow version, with its definition and graph.
#[utoipa::path(get, operation_id = "GetWorkflow", path = "/v1/workflows/{name}", tag = "workflows",
    params(("name" = WorkflowName, Path, description = "The workflow's name"), GetWorkflowQuery),
    responses(
        (status = 200, description = "The workflow", body = Workflow),
        (status = "default", description = "An error (404: no such workflow or version)", body = ErrorBody),
    ))]
pub async fn get(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    PathParams(name): PathParams<String>,
    Query(q): Query<GetWorkflowQuery>,
) -> Result<Json<Workflow>, ApiError> {
    let w = s
        .call(
            method!("WorkflowService/GetWorkflow"),
            &headers,
            proto::GetWorkflowRequest {
                name,
                version: q.version,
            },
            |api, req| async move { api.get_workflow(req).await },
        )
        .await?;
    Ok(Json(w.into()))
}

/// Query of `DELETE /v1/workflows/{name}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub struct DeleteWorkflowQuery {
    /// The version to delete (required, 1 or more).
    #[param(minimum = 1, required = true)]
    version: u32,
}

/// `DELETE /v1/workflows/{name}?version=N`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedWorkflowVersion {
    /// The versions the workflow keeps, ascending (empty: the name is gone).
    pub remaining_versions: Vec<u32>,
}

/// Deletes one workflow version that has no unfinished (pending or running) runs.
#[utoipa::path(delete, operation_id = "DeleteWorkflowVersion", path = "/v1/workflows/{name}", tag = "workflows",
    params(("name" = WorkflowName, Path, description = "The workflow's name"), DeleteWorkflowQuery),
    responses(
        (status = 200, description = "Deleted", body = DeletedWorkflowVersion),
        (status = "default", description = "An error (400 FAILED_PRECONDITION with the number of unfinished runs; 404 no such version)", body = ErrorBody),
    ))]
pub async fn delete(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    PathParams(name): PathParams<String>,
    Query(q): Query<DeleteWorkflowQuery>,
) -> Result<Json<DeletedWorkflowVersion>, ApiError> {
    let r = s
        .call(
            method!("WorkflowService/DeleteWorkflowVersion"),
            &headers,
            proto::DeleteWorkflowVersionRequest {
                name,
                version: q.version,
            },
            |api, req| async move { api.delete_workflow_version(req).await },
        )
        .await?;
    Ok(Json(DeletedWorkflowVersion {
        remaining_versions: r.remaining_versions,
    }))
}
