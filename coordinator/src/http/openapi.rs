//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! annotations and the [`super::model`] types; served at `GET /v1/openapi.json`.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
};

use super::model::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Baton HTTP API",
        description = "The coordinator's HTTP JSON API: the operations of the gRPC API (baton.v1) with the \
                       same errors. Payloads are JSON values; times RFC 3339; durations milliseconds (`*_ms`). \
                       Errors are `{code, message, field}` with the HTTP status from the gRPC code. See \
                       docs/http-api.md.",
        license(name = "Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    modifiers(&Bearer),
    tags(
        (name = "workflows", description = "Workflow definitions"),
        (name = "runs", description = "Runs and their event stream"),
        (name = "tasks", description = "Human tasks"),
        (name = "events", description = "Events"),
        (name = "schedules", description = "Schedules and their ticks"),
        (name = "operations", description = "Workers and queues"),
        (name = "health", description = "Health and this document"),
    )
)]
struct ApiDoc;

/// Adds the bearer token scheme: required when the coordinator has tokens, so each operation
/// accepts it or none.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token of the coordinator's auth_tokens; roles as for gRPC"))
                    .build(),
            ),
        );
        openapi.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::default(),
        ]);
    }
}

/// The document before the routes are added (info, tags, security, the error schema).
pub fn base() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}
