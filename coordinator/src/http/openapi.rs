//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! annotations and the [`super::model`] types; served at `GET /v1/openapi.json`.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
};

use super::{
    model::ErrorBody,
    schema::{
        CatchupWindowMs, Cron, EventName, EventSequence, Key, OverlapWord, Rfc3339, RunId, RunPageToken, RunStatusWord,
        ScheduleId, ShortId, StepStatusWord, TaskStatusWord, Text, TimeZone, WorkflowName,
    },
};

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
    // The rule types too: parameters name them by `$ref` but utoipa collects only bodies' schemas.
    components(schemas(
        ErrorBody, CatchupWindowMs, Cron, EventName, EventSequence, Key, OverlapWord, Rfc3339, RunId, RunPageToken,
        RunStatusWord, ScheduleId, ShortId, StepStatusWord, TaskStatusWord, Text, TimeZone, WorkflowName
    )),
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::{
        api::{MAX_ID_BYTES, MAX_KEY_BYTES, MAX_WORKFLOW_PAGE},
        http::schema::{TASK_STATUSES, enum_words, run_status_words},
    };

    fn document() -> Value {
        serde_json::to_value(crate::http::document()).unwrap_or_default()
    }

    /// The schema a `$ref` names, or the schema itself.
    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        match schema["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
        {
            Some(name) => &doc["components"]["schemas"][name],
            None => schema,
        }
    }

    fn param<'a>(doc: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
        let params = doc["paths"][path][method]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let i = params.iter().position(|p| p["name"] == name).unwrap_or(usize::MAX);
        resolve(doc, &doc["paths"][path][method]["parameters"][i]["schema"])
    }

    fn prop<'a>(doc: &'a Value, schema: &str, name: &str) -> &'a Value {
        resolve(doc, &doc["components"]["schemas"][schema]["properties"][name])
    }

    /// Every number the document states is the constant the server checks with.
    #[test]
    fn the_documents_bounds_are_the_servers_constants() {
        let doc = document();
        let run_id = param(&doc, "/v1/runs/{run_id}", "get", "run_id");
        assert_eq!(run_id["format"], "uuid", "{run_id}");
        assert!(
            run_id["pattern"].as_str().is_some_and(|p| p.contains("{12}")),
            "{run_id}"
        );
        for (path, method) in [
            ("/v1/runs/{run_id}/cancel", "post"),
            ("/v1/runs/{run_id}/retry", "post"),
            ("/v1/runs/{run_id}/rerun", "post"),
            ("/v1/runs/{run_id}/events", "get"),
            ("/v1/tasks/{run_id}/{step_id}/complete", "post"),
        ] {
            assert_eq!(param(&doc, path, method, "run_id"), run_id, "{path}");
        }
        assert_eq!(param(&doc, "/v1/runs", "get", "parent_run_id"), run_id);
        let max_name = baton_shared::ids::MAX_WORKFLOW_NAME_BYTES;
        let name = param(&doc, "/v1/workflows/{name}", "get", "name");
        assert_eq!(name["maxLength"], max_name);
        assert_eq!(name["pattern"], format!("^[A-Za-z0-9_.-]{{1,{max_name}}}$"));
        assert_eq!(prop(&doc, "SubmitRunBody", "workflow"), name);
        assert_eq!(
            prop(&doc, "SubmitRunBody", "idempotency_key")["maxLength"],
            MAX_KEY_BYTES
        );
        assert_eq!(prop(&doc, "PublishEventBody", "key")["maxLength"], MAX_KEY_BYTES);
        assert_eq!(prop(&doc, "CompleteTaskBody", "user")["maxLength"], MAX_ID_BYTES);
        assert_eq!(
            param(&doc, "/v1/tasks/{run_id}/{step_id}/complete", "post", "step_id")["maxLength"],
            MAX_ID_BYTES
        );
        assert_eq!(prop(&doc, "CreateScheduleBody", "id")["maxLength"], MAX_ID_BYTES);
        assert_eq!(
            prop(&doc, "CreateScheduleBody", "catchup_window_ms")["maximum"],
            baton_shared::limits::MAX_CATCHUP_WINDOW.as_millis() as u64
        );
        assert_eq!(
            enum_words(param(&doc, "/v1/runs", "get", "status")),
            run_status_words().collect::<Vec<_>>()
        );
        assert_eq!(enum_words(param(&doc, "/v1/tasks", "get", "status")), TASK_STATUSES);
        let overlap: Vec<_> = baton_shared::schedule::OverlapPolicy::ALL
            .iter()
            .map(|p| p.word())
            .collect();
        assert_eq!(enum_words(prop(&doc, "CreateScheduleBody", "overlap")), overlap);
        for (path, max) in [
            ("/v1/runs", 1000),
            ("/v1/tasks", 1000),
            ("/v1/schedules/{id}/ticks", 1000),
            ("/v1/workflows", MAX_WORKFLOW_PAGE),
        ] {
            let limit = param(&doc, path, "get", "limit");
            assert_eq!(
                (limit["minimum"].as_u64(), limit["maximum"].as_u64()),
                (Some(1), Some(max as u64)),
                "{path}"
            );
        }
    }
}
