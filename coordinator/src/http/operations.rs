//! `/v1/workers` and `/v1/queues` (`OperationsService`).

use std::sync::Arc;

use axum::{Json, extract::State, http::HeaderMap};
use baton_shared::proto::{self, operations_service_server::OperationsService as _};

use super::{
    HttpState,
    error::ApiError,
    method,
    model::{ErrorBody, Queue, QueueList, Worker, WorkerList},
};

/// The workers that registered recently (live, lost and stopped), by worker id.
#[utoipa::path(get, path = "/v1/workers", tag = "operations",
    responses(
        (status = 200, description = "Workers", body = WorkerList),
        (status = "default", description = "An error", body = ErrorBody),
    ))]
pub async fn workers(State(s): State<Arc<HttpState>>, headers: HeaderMap) -> Result<Json<WorkerList>, ApiError> {
    let r = s
        .call(
            method!("OperationsService/ListWorkers"),
            &headers,
            proto::ListWorkersRequest {},
            |api, req| async move { api.list_workers(req).await },
        )
        .await?;
    Ok(Json(WorkerList {
        workers: r.workers.into_iter().map(Worker::from).collect(),
    }))
}

/// One entry per handler of a registered workflow or a live worker, by handler.
#[utoipa::path(get, path = "/v1/queues", tag = "operations",
    responses(
        (status = 200, description = "Queues", body = QueueList),
        (status = "default", description = "An error", body = ErrorBody),
    ))]
pub async fn queues(State(s): State<Arc<HttpState>>, headers: HeaderMap) -> Result<Json<QueueList>, ApiError> {
    let r = s
        .call(
            method!("OperationsService/ListQueues"),
            &headers,
            proto::ListQueuesRequest {},
            |api, req| async move { api.list_queues(req).await },
        )
        .await?;
    Ok(Json(QueueList {
        queues: r.queues.into_iter().map(Queue::from).collect(),
    }))
}
