//! `/v1/events`: publish an event (`EventService`).

use std::sync::Arc;

use axum::{Json, extract::State, http::HeaderMap};
use baton_shared::proto::{self, event_service_server::EventService as _};

use super::{
    HttpState,
    error::ApiError,
    extract::JsonBody,
    method,
    model::{ErrorBody, PublishEventAnswer, PublishEventBody, json_text},
};

/// Delivers an event to the steps waiting for (name, key), buffers it when none waits, and starts
/// the runs of workflows triggered by it.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = PublishEventBody,
    responses(
        (status = 200, description = "Delivered, buffered, or runs started", body = PublishEventAnswer),
        (status = "default", description = "An error", body = ErrorBody),
    ))]
pub async fn publish(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    JsonBody(b): JsonBody<PublishEventBody>,
) -> Result<Json<PublishEventAnswer>, ApiError> {
    let msg = proto::PublishEventRequest {
        name: b.name,
        key: b.key,
        payload_json: json_text(b.payload.as_ref()),
    };
    let r = s
        .call(method!("EventService/PublishEvent"), &headers, msg, |api, req| async move {
            api.publish_event(req).await
        })
        .await?;
    Ok(Json(r.into()))
}
