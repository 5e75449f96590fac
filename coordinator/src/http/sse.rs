//! `GET /v1/runs/{run_id}/events`: a run's events as Server-Sent Events (`RunService/WatchRun`):
//! history, then live events, each with `id:` its `sequence` and `event:` its kind; resumable with
//! `Last-Event-ID` (or `?after_sequence=`); a `: keep-alive` comment every 15 s; `event: end` with
//! the run's status after its terminal event. See `docs/http-api.md`.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use baton_shared::proto::{self, run_service_server::RunService as _};
use futures::StreamExt as _;
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::IntoParams;

use super::{
    HttpState,
    error::ApiError,
    extract::{PathParams, Query},
    method,
    model::{ErrorBody, RunEvent},
    schema::{EventSequence, RunId},
};

/// How often a quiet stream sends a `: keep-alive` comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Query of the events route.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, default)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Resume after this event `sequence` (the `Last-Event-ID` header wins when both are given).
    #[param(value_type = Option<EventSequence>)]
    after_sequence: String,
    /// The bearer token, for clients that cannot set headers (a browser's EventSource); this
    /// route only. The `Authorization` header wins when both are given.
    access_token: Option<String>,
}

/// The run's events as Server-Sent Events: history, then live, until the run's terminal event.
#[utoipa::path(get, operation_id = "WatchRun", path = "/v1/runs/{run_id}/events", tag = "runs",
    params(
        ("run_id" = RunId, Path, description = "The run's id (a UUID)"),
        ("Last-Event-ID" = Option<EventSequence>, Header, description = "Resume: only events after this sequence"),
        EventsQuery,
    ),
    responses(
        (status = 200, description = "`text/event-stream`: `id:` the sequence, `event:` `run`, `step`, `custom`, `log` (live only, without `id:`) (`data:` a RunEvent) or `end` (`data: {\"status\": ...}`) ", content_type = "text/event-stream", body = RunEvent),
        (status = "default", description = "An error before the stream starts (400 bad id or sequence, 404 no such run)", body = ErrorBody),
    ))]
pub async fn events(
    State(s): State<Arc<HttpState>>,
    mut headers: HeaderMap,
    PathParams(run_id): PathParams<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    if !headers.contains_key(header::AUTHORIZATION)
        && let Some(token) = q.access_token.as_deref()
    {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ApiError::from(tonic::Status::unauthenticated("access_token: not a valid token")))?;
        headers.insert(header::AUTHORIZATION, value);
    }
    let after_sequence = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .map_err(|_| ApiError::invalid("after_sequence: the Last-Event-ID header is not text"))?
            .trim()
            .to_string(),
        None => q.after_sequence,
    };
    let msg = proto::WatchRunRequest {
        run_id: run_id.clone(),
        after_sequence,
        include_run: false,
    };
    let mut stream = s
        .call(method!("RunService/WatchRun"), &headers, msg, |api, req| async move {
            api.watch_run(req).await
        })
        .await?;
    let api = s.api()?.clone();
    let mut down = s.down.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                _ = down.wait_for(|d| *d) => return,
                () = tx.closed() => return,
            };
            let event = match next {
                Some(Ok(ev)) => {
                    let (id, kind) = (ev.sequence.clone(), ev.kind.clone());
                    // A log line has no sequence (live only): it leaves the Last-Event-ID as it was.
                    let event = Event::default().event(kind);
                    let event = if id.is_empty() { event } else { event.id(id) };
                    event.json_data(RunEvent::from(ev))
                }
                Some(Err(status)) => {
                    let body = ApiError::from(status).body();
                    let _ = tx.send(Ok(error_event(&body))).await;
                    return;
                }
                None => break,
            };
            let Ok(event) = event else { return };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        // The history ended with the run's terminal event (or the run expired): say how it ended.
        let status = api
            .get_run(tonic::Request::new(proto::GetRunRequest {
                run_id,
                ..Default::default()
            }))
            .await
            .map(|r| super::model::Run::from(r.into_inner()).status)
            .unwrap_or_default();
        let end = Event::default()
            .event("end")
            .json_data(serde_json::json!({ "status": status }));
        if let Ok(end) = end {
            let _ = tx.send(Ok(end)).await;
        }
    });
    let sse = Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"));
    // Proxies (nginx) must not buffer the stream.
    Ok(([("x-accel-buffering", "no")], sse).into_response())
}

fn error_event(body: &ErrorBody) -> Event {
    Event::default()
        .event("error")
        .json_data(body)
        .unwrap_or_else(|_| Event::default().event("error"))
}
