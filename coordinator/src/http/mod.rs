//! The HTTP JSON API (`docs/http-api.md`): the same operations as gRPC, served by axum on
//! `http_addr`, each route calling the gRPC service implementation ([`Api`]) in-process so that
//! checks, errors and auth are the gRPC ones. JSON <-> protobuf happens in [`model`] only, gRPC
//! `Status` -> HTTP in [`error`] only. The web console ([`crate::console`]) is the fallback.

pub mod error;
mod events;
mod extract;
pub mod guard;
pub mod model;
pub mod openapi;
mod operations;
mod runs;
mod schedules;
pub mod schema;
pub mod sse;
mod tasks;
mod workflows;

use std::{
    sync::{Arc, OnceLock},
    time::Instant,
};

use axum::{
    Json, Router,
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use baton_shared::telemetry;
use tokio::sync::watch;
use tracing::{Instrument as _, field::Empty};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    api::Api,
    auth::{Principal, Tokens},
    health::Health,
};
use error::ApiError;
use model::HealthBody;

/// What every handler shares. Cheap to share (`Arc`).
pub struct HttpState {
    /// The gRPC services; set once start-up is done (until then every API route answers 503).
    api: OnceLock<Api>,
    tokens: Arc<Tokens>,
    health: Arc<Health>,
    /// Largest request body, in bytes: the gRPC message limit.
    max_body_bytes: usize,
    /// The OpenAPI document, serialized once.
    openapi: OnceLock<String>,
    /// Turns true when the coordinator shuts down (event streams end then).
    down: watch::Receiver<bool>,
}

impl HttpState {
    /// A state whose API is not open yet.
    pub fn new(
        tokens: Arc<Tokens>,
        health: Arc<Health>,
        max_payload_bytes: usize,
        down: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(Self {
            api: OnceLock::new(),
            tokens,
            health,
            max_body_bytes: crate::edge::max_message_bytes(max_payload_bytes),
            openapi: OnceLock::new(),
            down,
        })
    }

    /// Start-up is done: serve `api` from now on. A second call changes nothing.
    pub fn open(&self, api: Api) {
        let _ = self.api.set(api);
    }

    /// The gRPC services, or UNAVAILABLE while the coordinator starts up or cannot reach Redis
    /// ([`Health::gate`]).
    fn api(&self) -> Result<&Api, ApiError> {
        let api = self.api.get().ok_or_else(|| {
            ApiError::from(tonic::Status::unavailable(
                "the coordinator is starting up (registering definitions, declaring queues); try again shortly",
            ))
        })?;
        self.health.gate().map_err(|e| ApiError::from(tonic::Status::from(e)))?;
        Ok(api)
    }

    /// The caller of the route that mirrors gRPC method `method` (a path of [`crate::auth::METHODS`]),
    /// checked as gRPC checks it. `Ok(None)` when auth is off.
    ///
    /// # Errors
    /// 401 `UNAUTHENTICATED`, 403 `PERMISSION_DENIED`.
    fn authorize(&self, method: &str, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
        if self.tokens.is_empty() {
            return Ok(None);
        }
        crate::auth::check(&self.tokens, method, headers).map_err(ApiError::from)
    }

    /// Checks the caller of `method` and calls the gRPC service with `msg`, the caller's
    /// [`Principal`] in the request's extensions as the auth layer puts it there.
    async fn call<T, R, F, Fut>(&self, method: &str, headers: &HeaderMap, msg: T, f: F) -> Result<R, ApiError>
    where
        F: FnOnce(Api, tonic::Request<T>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let principal = self.authorize(method, headers)?;
        let api = self.api()?.clone();
        let mut req = tonic::Request::new(msg);
        if let Some(p) = principal {
            req.extensions_mut().insert(p);
        }
        Ok(f(api, req).await?.into_inner())
    }
}

/// The gRPC method path of `Service/Method` in package `baton.v1`.
macro_rules! method {
    ($m:literal) => {
        concat!("/baton.v1.", $m)
    };
}
pub(crate) use method;

/// The API routes with their OpenAPI operations, before state and layers.
fn api_routes() -> OpenApiRouter<Arc<HttpState>> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health))
        .routes(routes!(openapi_json))
        .routes(routes!(workflows::register, workflows::list))
        .routes(routes!(workflows::get, workflows::delete))
        .routes(routes!(runs::submit, runs::list))
        .routes(routes!(runs::get))
        .routes(routes!(runs::logs))
        .routes(routes!(sse::events))
        .routes(routes!(runs::cancel))
        .routes(routes!(runs::retry))
        .routes(routes!(runs::rerun))
        .routes(routes!(tasks::list))
        .routes(routes!(tasks::complete))
        .routes(routes!(events::publish))
        .routes(routes!(schedules::create, schedules::list))
        .routes(routes!(schedules::get, schedules::delete))
        .routes(routes!(schedules::pause))
        .routes(routes!(schedules::resume))
        .routes(routes!(schedules::trigger))
        .routes(routes!(schedules::ticks))
        .routes(routes!(operations::workers))
        .routes(routes!(operations::queues))
}

/// The OpenAPI document of the API routes, as `/v1/openapi.json` serves it.
pub fn document() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The router of every HTTP route, the console as its fallback, and the OpenAPI document of the
/// API routes (also served at `/v1/openapi.json`). Every request passes `guard` first
/// ([`guard`]); an unknown `/v1` path is 404 and a known path with another method 405, both with
/// the JSON error body.
pub fn router(state: Arc<HttpState>, guard: Arc<guard::Guard>) -> (Router, utoipa::openapi::OpenApi) {
    let (api, doc) = api_routes().split_for_parts();
    let text = serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into());
    let _ = state.openapi.set(text);
    let router = api
        .route("/v1/{*rest}", axum::routing::any(no_route))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .fallback_service(crate::console::router())
        .layer(axum::middleware::from_fn_with_state(guard, guard::check))
        .layer(axum::middleware::from_fn(observe));
    (router, doc)
}

/// The response header that names the coordinator's gRPC port on every answer of the HTTP port, so
/// that a gRPC client pointed here by mistake can say where to go (the CLI does).
pub const GRPC_PORT_HEADER: &str = "baton-grpc-port";

/// `router` with [`GRPC_PORT_HEADER`]: `port` (the gRPC listener's) on every answer.
pub fn advertise_grpc_port(router: Router, port: u16) -> Router {
    let value = axum::http::HeaderValue::from(port);
    router.layer(axum::middleware::map_response(move |mut res: Response| {
        let value = value.clone();
        async move {
            res.headers_mut().insert(GRPC_PORT_HEADER, value);
            res
        }
    }))
}

/// The bounds on the HTTP server's connections (settings `http_*`).
#[derive(Debug, Clone)]
pub struct ConnectionBounds {
    /// Time to send a complete request head, from connecting or the previous answer's end.
    pub header_read_timeout: std::time::Duration,
    /// A connection with no byte read or written for this long is closed.
    pub idle_timeout: std::time::Duration,
    /// The cap on open connections.
    pub admission: Arc<crate::connections::Admission>,
}

/// Serves `router` on `listener` until `shutdown` turns true; in-flight requests finish (event
/// streams end at shutdown). HTTP/1.1 with TCP_NODELAY; a client that does not send a complete
/// request head within `bounds.header_read_timeout`, or leaves the connection idle for
/// `bounds.idle_timeout`, is disconnected, and connections over the cap are closed at once.
///
/// # Errors
/// None today (a failed `accept` is logged and retried); the `Result` keeps the signature of a server.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
    bounds: ConnectionBounds,
) -> std::io::Result<()> {
    use futures::StreamExt as _;
    use hyper_util::{
        rt::{TokioIo, TokioTimer},
        server::graceful::GracefulShutdown,
        service::TowerToHyperService,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_read_timeout)
        .max_buf_size(HYPER_MAX_HEAD_BYTES)
        .max_headers(HYPER_MAX_HEADERS);
    let graceful = GracefulShutdown::new();
    let incoming = crate::connections::accept(listener, bounds.admission, bounds.idle_timeout);
    let mut incoming = std::pin::pin!(incoming);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|d| *d) => break,
            next = incoming.next() => {
                let Some(Ok(io)) = next else { continue };
                let service = TowerToHyperService::new(router.clone());
                let conn = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        }
    }
    graceful.shutdown().await;
    Ok(())
}

/// The largest request head hyper reads before it answers 431 by itself (with no body); below it,
/// [`limits::MAX_HTTP_HEADER_BYTES`](baton_shared::limits::MAX_HTTP_HEADER_BYTES) is checked by the
/// router, which answers 431 with the JSON error body.
pub const HYPER_MAX_HEAD_BYTES: usize = 1024 * 1024;

/// The most headers hyper parses before it answers 431 by itself; below it,
/// [`limits::MAX_HTTP_HEADERS`](baton_shared::limits::MAX_HTTP_HEADERS) is checked by the router.
pub const HYPER_MAX_HEADERS: usize = 1_000;

/// Any `/v1/...` path that is no route: 404 with the JSON error body.
async fn no_route(req: Request) -> ApiError {
    ApiError::edge(
        StatusCode::NOT_FOUND,
        tonic::Code::NotFound,
        "path",
        &format!(
            "no route {} {} (see /v1/openapi.json)",
            baton_shared::limits::echo(req.method().as_str()),
            baton_shared::limits::echo(req.uri().path())
        ),
    )
}

/// A route that exists, called with a method it does not take: 405 with the JSON error body.
async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::edge(
        StatusCode::METHOD_NOT_ALLOWED,
        tonic::Code::Unimplemented,
        "method",
        &format!(
            "{} is not a method of {} (see /v1/openapi.json)",
            baton_shared::limits::echo(req.method().as_str()),
            baton_shared::limits::echo(req.uri().path())
        ),
    )
}

/// Health, as gRPC health answers it: SERVING when start-up is done, Redis and RabbitMQ answer
/// and every background loop runs.
#[utoipa::path(get, operation_id = "Health", path = "/healthz", tag = "health",
    responses(
        (status = 200, description = "SERVING", body = HealthBody),
        (status = 503, description = "NOT_SERVING (starting up, Redis or RabbitMQ unreachable, a loop down)", body = HealthBody),
    ))]
async fn health(State(state): State<Arc<HttpState>>) -> Response {
    if state.health.is_ready() && state.health.why_not().is_none() {
        (
            StatusCode::OK,
            Json(HealthBody {
                status: "SERVING".into(),
            }),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HealthBody {
                status: "NOT_SERVING".into(),
            }),
        )
            .into_response()
    }
}

/// This API's OpenAPI 3.1 document (no token needed).
#[utoipa::path(get, operation_id = "OpenApiDocument", path = "/v1/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
async fn openapi_json(State(state): State<Arc<HttpState>>) -> Response {
    let text = state.openapi.get().cloned().unwrap_or_else(|| "{}".into());
    ([(axum::http::header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// Counts every request in `baton_http_requests_total{route, status}` and runs it in a span
/// (`http`, with the route) when traces are exported.
async fn observe(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |m| m.as_str().to_string());
    let span = if telemetry::enabled() {
        let parent = telemetry::extract_headers(req.headers());
        let span = tracing::info_span!(
            target: telemetry::TARGET,
            "http",
            otel.name = %format!("{} {route}", req.method()),
            otel.kind = "server",
            http.request.method = %req.method(),
            http.route = %route,
            http.response.status_code = Empty,
            baton.run_id = Empty,
            baton.step_id = Empty,
            baton.attempt = Empty,
            baton.workflow = Empty,
            baton.worker_id = Empty,
            baton.outcome = Empty,
        );
        telemetry::adopt(&span, parent);
        span
    } else {
        tracing::Span::none()
    };
    let started = Instant::now();
    let resp = next.run(req).instrument(span.clone()).await;
    span.record("http.response.status_code", resp.status().as_u16());
    metrics::counter!(
        "baton_http_requests_total",
        "route" => route.clone(),
        "status" => resp.status().as_u16().to_string()
    )
    .increment(1);
    metrics::histogram!("baton_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}
