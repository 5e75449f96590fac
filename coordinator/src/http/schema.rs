//! Schema-only types of the OpenAPI document: each states, from the same constants the server
//! checks with, the rule a field must follow (a run id's UUID shape, a workflow or event name's
//! characters and length, an id's or key's byte bound, the words of a status or policy), so that
//! a request the document allows is one the server takes. Fields keep their Rust type (`String`,
//! `u64`) and point here with `#[schema(value_type = ...)]` / `#[param(value_type = ...)]`.
//!
//! Lengths: JSON Schema's `maxLength` counts characters, the server counts UTF-8 bytes; the two
//! agree on ASCII, and each description says "bytes".

use std::borrow::Cow;

use baton_shared::{
    limits::MAX_CATCHUP_WINDOW,
    proto::{RunStatus, StepStatus},
    schedule::OverlapPolicy,
};
use serde_json::Value;
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{KnownFormat, ObjectBuilder, RefOr, Schema, SchemaFormat, Type, schema::SchemaType},
};

use crate::api::{MAX_CRON_BYTES, MAX_ID_BYTES, MAX_KEY_BYTES, MAX_TEXT_BYTES, MAX_TIMEZONE_BYTES};

/// A run id's pattern (a UUID in its hyphenated form, either case), as [`baton_shared::ids::is_run_id`]
/// takes it.
pub const RUN_ID_PATTERN: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// Longest event name, in characters: the bound of [`baton_shared::definition::check_event_name`]
/// (a unit test holds the two together).
pub const MAX_EVENT_NAME_CHARS: usize = 128;

/// Longest schedule id, in characters: the bound of `CreateSchedule`'s id rule (a unit test holds
/// it to [`MAX_ID_BYTES`], the bound every schedule route checks).
pub const MAX_SCHEDULE_ID_CHARS: usize = 200;

/// Human task status words, as `ListHumanTasks` filters by them.
pub const TASK_STATUSES: [&str; 3] = ["open", "completed", "cancelled"];

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .description(Some(description))
}

fn words(description: &str, words: impl IntoIterator<Item = &'static str>) -> RefOr<Schema> {
    string(description).enum_values(Some(words)).into()
}

/// Declares a schema-only type: `name`, its doc, and the body that builds its schema.
macro_rules! schema_type {
    ($(#[$doc:meta])* $name:ident => $build:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $build
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

schema_type!(
    /// A run id: a UUID.
    RunId => string("A run id: a UUID")
        .format(Some(SchemaFormat::Custom("uuid".into())))
        .pattern(Some(RUN_ID_PATTERN))
        .min_length(Some(36))
        .max_length(Some(36))
        .into()
);

schema_type!(
    /// A workflow name ([`baton_shared::ids::is_workflow_name`]).
    WorkflowName => string("A workflow name: 1 to 128 of letters, digits, `_`, `-`, `.`")
        .pattern(Some(format!("^[A-Za-z0-9_.-]{{1,{}}}$", baton_shared::ids::MAX_WORKFLOW_NAME_BYTES)))
        .min_length(Some(1))
        .max_length(Some(baton_shared::ids::MAX_WORKFLOW_NAME_BYTES))
        .into()
);

schema_type!(
    /// An event name ([`baton_shared::definition::check_event_name`]).
    EventName => string("An event name: 1 to 128 of letters, digits, `_`, `-`, `.`, `:`, `/`")
        .pattern(Some(format!("^[A-Za-z0-9_.:/-]{{1,{MAX_EVENT_NAME_CHARS}}}$")))
        .min_length(Some(1))
        .max_length(Some(MAX_EVENT_NAME_CHARS))
        .into()
);

schema_type!(
    /// A schedule id (`CreateSchedule`'s rule; every other route checks its length only).
    ScheduleId => string("A schedule id: 1 to 200 of letters, digits, `_`, `-`, `.`, `:`, `/`")
        .pattern(Some(format!("^[A-Za-z0-9_.:/-]{{1,{MAX_SCHEDULE_ID_CHARS}}}$")))
        .min_length(Some(1))
        .max_length(Some(MAX_SCHEDULE_ID_CHARS))
        .into()
);

schema_type!(
    /// A step id, worker id, user or assignee a caller sends: at most [`MAX_ID_BYTES`].
    ShortId => string("At most 200 bytes").max_length(Some(MAX_ID_BYTES)).into()
);

schema_type!(
    /// An idempotency key or event correlation key: at most [`MAX_KEY_BYTES`].
    Key => string("At most 1024 bytes").max_length(Some(MAX_KEY_BYTES)).into()
);

schema_type!(
    /// Free text a caller sends (a cancel reason): at most [`MAX_TEXT_BYTES`].
    Text => string("At most 4096 bytes").max_length(Some(MAX_TEXT_BYTES)).into()
);

schema_type!(
    /// A cron expression: at most [`MAX_CRON_BYTES`].
    Cron => string("5 or 6 cron fields; at most 200 bytes").max_length(Some(MAX_CRON_BYTES)).into()
);

schema_type!(
    /// An IANA time zone name: at most [`MAX_TIMEZONE_BYTES`].
    TimeZone => string("An IANA time zone; empty: UTC; at most 64 bytes").max_length(Some(MAX_TIMEZONE_BYTES)).into()
);

schema_type!(
    /// A schedule's catch-up window in milliseconds: at most [`MAX_CATCHUP_WINDOW`].
    CatchupWindowMs => ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Integer))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .description(Some("How late a missed tick may still fire, ms; 0: 1 h; at most 30 days"))
        .minimum(Some(0))
        .maximum(Some(u64::try_from(MAX_CATCHUP_WINDOW.as_millis()).unwrap_or(u64::MAX)))
        .into()
);

schema_type!(
    /// A run status word ([`RunStatus::from_word`]).
    RunStatusWord => words("A run status", run_status_words())
);

schema_type!(
    /// A step status word.
    StepStatusWord => words("A step status", step_status_words())
);

schema_type!(
    /// A schedule's overlap policy word ([`OverlapPolicy::parse`]).
    OverlapWord => words(
        "What a tick does while the previous run goes on; absent: `skip`",
        OverlapPolicy::ALL.iter().map(|p| p.word()),
    )
);

schema_type!(
    /// A human task status word.
    TaskStatusWord => words("A human task status", TASK_STATUSES)
);

schema_type!(
    /// A run event's `sequence` (`<ms>-<n>`, each a `u64`: 19 digits always fit).
    EventSequence => string("An event `sequence` from a previous event: `<ms>-<n>`")
        .pattern(Some("^[0-9]{1,19}-[0-9]{1,19}$"))
        .into()
);

schema_type!(
    /// A `ListRuns` page token: `<13-digit ms>:<run id>`.
    RunPageToken => string("A `next_page_token` of a previous ListRuns answer")
        .pattern(Some(format!("^[0-9]{{13}}:{}", &RUN_ID_PATTERN[1..])))
        .into()
);

schema_type!(
    /// An RFC 3339 time.
    Rfc3339 => string("An RFC 3339 time")
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .into()
);

/// Every run status word `ListRuns` takes (all but `unspecified`).
pub fn run_status_words() -> impl Iterator<Item = &'static str> {
    (1..).map_while(|v| RunStatus::try_from(v).ok()).map(RunStatus::word)
}

/// Every step status word a run shows (all but `unspecified`).
pub fn step_status_words() -> impl Iterator<Item = &'static str> {
    (1..).map_while(|v| StepStatus::try_from(v).ok()).map(StepStatus::word)
}

/// The words of an `enum` schema, for tests.
pub fn enum_words(schema: &Value) -> Vec<String> {
    schema["enum"]
        .as_array()
        .map(|a| a.iter().filter_map(|w| w.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document's bounds are the rules' bounds: a value at the limit passes the server's own
    /// check, one past it does not.
    #[test]
    fn the_schema_bounds_are_the_server_checks_bounds() {
        let event = "e".repeat(MAX_EVENT_NAME_CHARS);
        assert!(baton_shared::definition::check_event_name(&event).is_ok());
        assert!(baton_shared::definition::check_event_name(&format!("{event}e")).is_err());
        assert!(baton_shared::definition::check_event_name("a\nb").is_err());
        assert_eq!(MAX_SCHEDULE_ID_CHARS, MAX_ID_BYTES);
        let name = "w".repeat(baton_shared::ids::MAX_WORKFLOW_NAME_BYTES);
        assert!(baton_shared::ids::is_workflow_name(&name));
        assert!(!baton_shared::ids::is_workflow_name(&format!("{name}w")));
        assert!(baton_shared::ids::is_run_id(&baton_shared::ids::new_run_id()));
        let words: Vec<_> = run_status_words().collect();
        assert_eq!(
            words,
            ["pending", "running", "succeeded", "failed", "cancelled", "timed_out"]
        );
        assert!(words.iter().all(|w| RunStatus::from_word(w).is_some()));
        assert!(step_status_words().all(|w| StepStatus::from_word(w).is_some()));
        assert_eq!(step_status_words().count(), 9);
    }
}
