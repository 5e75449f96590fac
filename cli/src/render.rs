//! Pure rendering: turns protocol messages into the text tables and JSON documents the CLI prints.
//!
//! Nothing here does I/O or reads the clock; callers pass `now_ms` where an unfinished run or step
//! needs an elapsed time. Table output uses UTC RFC 3339 times and short human durations; JSON output
//! uses RFC 3339 times with milliseconds, parses the `*_json` fields into values and turns empty
//! optional strings into `null`.

use std::time::{Duration, UNIX_EPOCH};

use baton_shared::proto::{
    Attempt, BufferedEvents, EmitProgress, HumanTask, ItemProgress, LogLine, PublishEventResponse,
    RegisterWorkflowResponse, RetryPolicy, Run, RunEvent, RunStatus, Schedule, ScheduleTick, StepDefinition, StepRun,
    StepStatus, SubmitRunResponse, Workflow,
};
use baton_shared::time::millis;
use prost_types::Timestamp;
use serde::Serialize;
use serde_json::Value;

/// Compact JSON longer than this is pretty-printed on several lines in text output.
const INLINE_JSON_MAX: usize = 80;

// ---------------------------------------------------------------------------------------------
// Small formatting helpers
// ---------------------------------------------------------------------------------------------

/// The first millisecond of the year 10000, which RFC 3339 cannot write.
const YEAR_10000_MS: i64 = 253_402_300_800_000;

/// Unix milliseconds of a set timestamp; `None` when absent, at (or before) the epoch, or past the
/// year 9999 (nothing sensible to show).
pub fn ts_ms(ts: Option<&Timestamp>) -> Option<i64> {
    ts.filter(|t| (0..YEAR_10000_MS / 1000).contains(&t.seconds)) // keeps `millis` from overflowing
        .map(millis)
        .filter(|ms| (1..YEAR_10000_MS).contains(ms))
}

fn system_time(ms: i64) -> std::time::SystemTime {
    // Clamped: humantime refuses (with a panic in `to_string`) times outside years 1970 to 9999.
    let ms = ms.clamp(0, YEAR_10000_MS - 1);
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// An RFC 3339 UTC time with millisecond precision, e.g. `2025-03-01T12:00:05.250Z`.
pub fn rfc3339_millis(ms: i64) -> String {
    humantime::format_rfc3339_millis(system_time(ms)).to_string()
}

/// An RFC 3339 UTC time to the second, for tables, e.g. `2025-03-01T12:00:05Z`; `-` when unset.
pub fn table_time(ts: Option<&Timestamp>) -> String {
    ts_ms(ts).map_or_else(
        || "-".to_owned(),
        |ms| humantime::format_rfc3339_seconds(system_time(ms)).to_string(),
    )
}

/// The UTC time of day with milliseconds, e.g. `12:00:05.250Z`, for event lines; `-` when unset.
pub fn time_of_day(ts: Option<&Timestamp>) -> String {
    match ts_ms(ts) {
        // "YYYY-MM-DDTHH:MM:SS.mmmZ": the time of day starts after the `T`.
        Some(ms) => rfc3339_millis(ms)
            .split_once('T')
            .map_or_else(|| "-".to_owned(), |(_, t)| t.to_owned()),
        None => "-".to_owned(),
    }
}

/// A short human duration: `350ms`, `1.2s`, `45s`, `2m05s`, `1h03m`. Negative values count as zero.
pub fn human_duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        if ms % 1_000 == 0 {
            format!("{}s", ms / 1_000)
        } else {
            format!("{:.1}s", ms as f64 / 1_000.0)
        }
    } else if ms < 3_600_000 {
        let (m, s) = (ms / 60_000, (ms % 60_000) / 1_000);
        if s == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{s:02}s")
        }
    } else {
        let (h, m) = (ms / 3_600_000, (ms % 3_600_000) / 60_000);
        if m == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{m:02}m")
        }
    }
}

/// The time from `start` to `end`, or to `now_ms` with ` so far` when not finished; `-` before it
/// started.
fn span(start: Option<i64>, end: Option<i64>, now_ms: i64) -> String {
    match (start, end) {
        (Some(s), Some(e)) => human_duration(e - s),
        (Some(s), None) => format!("{} so far", human_duration(now_ms - s)),
        (None, _) => "-".to_owned(),
    }
}

/// How long a run took (or has been taking): from its start (its creation when it never started)
/// to its end.
pub fn run_duration(run: &Run, now_ms: i64) -> String {
    let start = ts_ms(run.started_at.as_ref()).or_else(|| ts_ms(run.created_at.as_ref()));
    span(start, ts_ms(run.finished_at.as_ref()), now_ms)
}

/// How long a step took (or has been taking): from its start (its dispatch when the worker has not
/// started it yet) to its end.
pub fn step_duration(step: &StepRun, now_ms: i64) -> String {
    let start = ts_ms(step.started_at.as_ref()).or_else(|| ts_ms(step.dispatched_at.as_ref()));
    span(start, ts_ms(step.finished_at.as_ref()), now_ms)
}

/// The word for a run status number; `unknown(N)` for a number this CLI does not know.
pub fn run_status_word(status: i32) -> String {
    RunStatus::try_from(status).map_or_else(|_| format!("unknown({status})"), |s| s.word().to_owned())
}

/// The word for a step status number; `unknown(N)` for a number this CLI does not know.
pub fn step_status_word(status: i32) -> String {
    StepStatus::try_from(status).map_or_else(|_| format!("unknown({status})"), |s| s.word().to_owned())
}

/// Every run status word accepted by `--status`, comma separated.
pub fn run_status_words() -> String {
    RunStatus::ALL.map(RunStatus::word).join(", ")
}

/// Version numbers with runs of consecutive ones collapsed: `[1, 2, 3, 5]` gives `1-3, 5`.
pub fn version_ranges(versions: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < versions.len() {
        let start = versions[i];
        let mut end = start;
        while i + 1 < versions.len() && end.checked_add(1) == Some(versions[i + 1]) {
            i += 1;
            end = versions[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

/// A string in double quotes, escaped as in JSON: `"payment"`.
fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// Text on one line: line breaks become spaces, surrounding whitespace goes.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `-` for an empty string.
fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".to_owned() } else { s.to_owned() }
}

/// A `*_json` field for text output: compact when short, pretty-printed when long, as sent when it
/// does not parse, and `-` when empty.
fn json_text(text: &str) -> String {
    if text.trim().is_empty() {
        return "-".to_owned();
    }
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return text.to_owned();
    };
    let compact = value.to_string();
    if compact.chars().count() <= INLINE_JSON_MAX {
        compact
    } else {
        serde_json::to_string_pretty(&value).unwrap_or(compact)
    }
}

/// Left-aligned columns separated by two spaces, trailing spaces trimmed. Every row should have as
/// many cells as there are headers; an empty `headers` prints no header line.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len().max(rows.iter().map(Vec::len).max().unwrap_or(0));
    let mut widths = vec![0; columns];
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    let all = (!headers.is_empty()).then_some(&header_row).into_iter().chain(rows);
    for row in all.clone() {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in all {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths[i].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Labelled lines (`Label:  value`) with the values aligned; continuation lines of multi-line values
/// are indented to the value column.
fn fields(items: &[(&str, String)]) -> String {
    let width = items
        .iter()
        .map(|(label, _)| label.chars().count() + 1)
        .max()
        .unwrap_or(0)
        + 2;
    let mut out = String::new();
    for (label, value) in items {
        let mut lines = value.lines();
        let first = lines.next().unwrap_or("");
        out.push_str(format!("{:<width$}{first}", format!("{label}:")).trim_end());
        out.push('\n');
        for line in lines {
            out.push_str(format!("{:width$}{line}", "").trim_end());
            out.push('\n');
        }
    }
    out
}

/// Indents every non-empty line by `n` spaces.
fn indent(text: &str, n: usize) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_owned()
            } else {
                format!("{:n$}{l}\n", "")
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Text output
// ---------------------------------------------------------------------------------------------

/// What `baton workflow delete` prints: the version deleted and the versions left (or that the
/// name is gone with its last version).
pub fn workflow_deleted_text(name: &str, version: u32, left: &[u32]) -> String {
    if left.is_empty() {
        format!("deleted workflow {name} version {version}; it was the last version, the name is gone\n")
    } else {
        let left: Vec<String> = left.iter().map(|v| v.to_string()).collect();
        format!(
            "deleted workflow {name} version {version}; versions left: {}\n",
            left.join(", ")
        )
    }
}

/// The answer to `workflow apply`: the workflow's name and version, and whether it is new.
pub fn apply_text(resp: &RegisterWorkflowResponse) -> String {
    let (name, version) = resp
        .workflow
        .as_ref()
        .map_or(("?", 0), |w| (w.name.as_str(), w.version));
    let what = if resp.created {
        "created"
    } else {
        "unchanged (this definition was already registered)"
    };
    format!("workflow {name} version {version} {what}\n")
}

/// The `workflow list` table.
pub fn workflow_list_text(workflows: &[Workflow]) -> String {
    if workflows.is_empty() {
        return "no workflows registered\n".to_owned();
    }
    let rows: Vec<Vec<String>> = workflows
        .iter()
        .map(|w| {
            vec![
                w.name.clone(),
                w.version.to_string(),
                or_dash(&version_ranges(&w.versions)),
                w.steps.len().to_string(),
                one_line(&w.description),
            ]
        })
        .collect();
    table(&["NAME", "VERSION", "VERSIONS", "STEPS", "DESCRIPTION"], &rows)
}

/// A retry policy's backoff in a few words, e.g. `1s x2 (max 30s, jitter 10%)`.
fn backoff_text(retry: &RetryPolicy) -> String {
    let mut text = format!(
        "{} x{}",
        human_duration(to_i64(retry.initial_interval_ms)),
        retry.backoff_coefficient
    );
    let mut extra = Vec::new();
    if retry.max_interval_ms > 0 {
        extra.push(format!("max {}", human_duration(to_i64(retry.max_interval_ms))));
    }
    if retry.jitter > 0.0 {
        extra.push(format!("jitter {}%", (retry.jitter * 100.0).round()));
    }
    if !extra.is_empty() {
        text.push_str(&format!(" ({})", extra.join(", ")));
    }
    text
}

fn to_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// `-` for a zero duration, otherwise the human duration.
fn optional_duration(ms: u64) -> String {
    if ms == 0 {
        "-".to_owned()
    } else {
        human_duration(to_i64(ms))
    }
}

/// What a step definition does: its `kind`, or, from a coordinator that does not send one, `sleep`
/// for a durable sleep and `task` otherwise.
fn definition_kind(step: &StepDefinition) -> &str {
    if !step.kind.is_empty() {
        &step.kind
    } else if step.handler.is_empty() && step.sleep_ms > 0 {
        "sleep"
    } else {
        "task"
    }
}

/// The HANDLER cell of a step definition: the handler of a task; for the steps that have none, what
/// they do instead: `(sleep 5s)`, `(sleep until input.due)`, `(wait event "payment")`,
/// `(human: alice, bob)`, `(workflow refunds@2)`.
fn definition_action(step: &StepDefinition) -> String {
    match definition_kind(step) {
        "task" => step.handler.clone(),
        "sleep" => format!("(sleep {})", human_duration(to_i64(step.sleep_ms))),
        "sleep_until" => format!("(sleep until {})", one_line(&step.sleep_until)),
        "wait_for_event" => format!(
            "(wait event {})",
            quoted(step.wait_for_event.as_ref().map_or("", |w| w.event.as_str()))
        ),
        "human" => match step.human.as_ref().filter(|h| !h.assignees.is_empty()) {
            Some(human) => format!("(human: {})", human.assignees.join(", ")),
            None => "(human)".to_owned(),
        },
        "workflow" if step.workflow_version > 0 => format!("(workflow {}@{})", step.workflow, step.workflow_version),
        "workflow" => format!("(workflow {})", step.workflow),
        other if step.handler.is_empty() => format!("({other})"),
        other => format!("({other}) {}", step.handler),
    }
}

/// The FOR EACH cell of a step definition: its CEL list and how many elements run at once.
fn for_each_text(step: &StepDefinition) -> String {
    match (step.for_each.trim(), step.max_parallel) {
        ("", _) => "-".to_owned(),
        (list, 0) => one_line(list),
        (list, max) => format!("{} ({max} at once)", one_line(list)),
    }
}

/// The TIMEOUT cell of a step definition; for a step waiting for an event with a timeout, that
/// timeout and what it does, e.g. `1h then skip`.
fn timeout_text(step: &StepDefinition) -> String {
    match step.wait_for_event.as_ref().filter(|w| w.timeout_ms > 0) {
        Some(wait) if wait.on_timeout.is_empty() => human_duration(to_i64(wait.timeout_ms)),
        Some(wait) => format!("{} then {}", human_duration(to_i64(wait.timeout_ms)), wait.on_timeout),
        None => optional_duration(step.timeout_ms),
    }
}

/// The CONCURRENCY cell of a step definition: how many attempts hold a slot at once, and per what,
/// e.g. `3 per input.customer`; `-` when not limited.
fn concurrency_text(step: &StepDefinition) -> String {
    match step.concurrency.as_ref().filter(|c| c.limit > 0) {
        None => "-".to_owned(),
        Some(c) if c.key.trim().is_empty() => c.limit.to_string(),
        Some(c) => format!("{} per {}", c.limit, one_line(&c.key)),
    }
}

/// The RATE LIMIT cell of a step definition: starts per period, and per what, e.g.
/// `10/1m per input.tenant`; `-` when not limited.
fn rate_limit_text(step: &StepDefinition) -> String {
    match step.rate_limit.as_ref().filter(|r| r.limit > 0) {
        None => "-".to_owned(),
        Some(r) => {
            let text = format!("{}/{}", r.limit, human_duration(to_i64(r.period_ms)));
            if r.key.trim().is_empty() {
                text
            } else {
                format!("{text} per {}", one_line(&r.key))
            }
        }
    }
}

/// The EMIT cell of a step definition: the workflow it starts runs of and the CEL list it starts
/// them for, e.g. `emits notify per output.users (50 at once, waits)`; `-` when it emits nothing.
fn emit_text(step: &StepDefinition) -> String {
    let Some(emit) = step.emit.as_ref().filter(|e| !e.workflow.is_empty()) else {
        return "-".to_owned();
    };
    let mut text = format!("emits {} per {}", emit.workflow, one_line(&emit.items));
    let mut extra = Vec::new();
    if emit.max_in_flight > 0 {
        extra.push(format!("{} at once", emit.max_in_flight));
    }
    if emit.wait {
        extra.push("waits".to_owned());
    }
    if !extra.is_empty() {
        text.push_str(&format!(" ({})", extra.join(", ")));
    }
    text
}

/// Which optional columns the `workflow get` step table shows: those some step needs.
#[derive(Clone, Copy)]
struct DefinitionColumns {
    when: bool,
    for_each: bool,
    concurrency: bool,
    rate_limit: bool,
    emit: bool,
}

impl DefinitionColumns {
    fn of(steps: &[StepDefinition]) -> Self {
        Self {
            when: steps.iter().any(|s| !s.when.trim().is_empty()),
            for_each: steps.iter().any(|s| !s.for_each.trim().is_empty()),
            concurrency: steps
                .iter()
                .any(|s| s.concurrency.as_ref().is_some_and(|c| c.limit > 0)),
            rate_limit: steps.iter().any(|s| s.rate_limit.as_ref().is_some_and(|r| r.limit > 0)),
            emit: steps
                .iter()
                .any(|s| s.emit.as_ref().is_some_and(|e| !e.workflow.is_empty())),
        }
    }
}

fn step_definition_row(step: &StepDefinition, columns: DefinitionColumns) -> Vec<String> {
    let (attempts, backoff, non_retryable) = match &step.retry {
        Some(r) => (
            r.max_attempts.to_string(),
            backoff_text(r),
            or_dash(&r.non_retryable_errors.join(", ")),
        ),
        None => ("-".to_owned(), "-".to_owned(), "-".to_owned()),
    };
    let mut row = vec![
        step.id.clone(),
        definition_action(step),
        or_dash(&step.depends_on.join(", ")),
    ];
    if columns.when {
        row.push(or_dash(&one_line(&step.when)));
    }
    if columns.for_each {
        row.push(for_each_text(step));
    }
    if columns.concurrency {
        row.push(concurrency_text(step));
    }
    if columns.rate_limit {
        row.push(rate_limit_text(step));
    }
    if columns.emit {
        row.push(emit_text(step));
    }
    row.extend([
        timeout_text(step),
        optional_duration(step.heartbeat_timeout_ms),
        attempts,
        backoff,
        non_retryable,
    ]);
    row
}

/// The workflow's run limit, e.g. `3 runs at once per input.customer`; `None` when unlimited.
fn run_limit_text(w: &Workflow) -> Option<String> {
    if w.max_concurrent_runs == 0 {
        return None;
    }
    let text = format!("{} runs at once", w.max_concurrent_runs);
    Some(if w.concurrency_key.trim().is_empty() {
        text
    } else {
        format!("{text} per {}", one_line(&w.concurrency_key))
    })
}

/// The event that starts runs of the workflow and its filter, e.g.
/// `"order.created" if payload.total > 100`; `None` when no event starts it.
fn on_event_text(w: &Workflow) -> Option<String> {
    if w.on_event.is_empty() {
        return None;
    }
    Some(if w.on_event_filter.trim().is_empty() {
        quoted(&w.on_event)
    } else {
        format!("{} if {}", quoted(&w.on_event), one_line(&w.on_event_filter))
    })
}

/// The `workflow get` view: the workflow's details, then a table of its steps.
pub fn workflow_text(w: &Workflow) -> String {
    let mut items = vec![
        ("Workflow", w.name.clone()),
        ("Version", w.version.to_string()),
        ("Versions", or_dash(&version_ranges(&w.versions))),
        ("Registered", table_time(w.registered_at.as_ref())),
        ("Description", or_dash(w.description.trim())),
    ];
    // The run limit and the starting event only when set.
    if let Some(limit) = run_limit_text(w) {
        items.push(("Run limit", limit));
    }
    if let Some(event) = on_event_text(w) {
        items.push(("On event", event));
    }
    items.push(("Input schema", json_text(&w.input_schema_json)));
    let mut out = fields(&items);
    out.push('\n');
    // The CONDITION, FOR EACH, CONCURRENCY, RATE LIMIT and EMIT columns only when some step has one.
    let columns = DefinitionColumns::of(&w.steps);
    let rows: Vec<Vec<String>> = w.steps.iter().map(|s| step_definition_row(s, columns)).collect();
    let mut headers = vec!["STEP", "HANDLER", "DEPENDS ON"];
    if columns.when {
        headers.push("CONDITION");
    }
    if columns.for_each {
        headers.push("FOR EACH");
    }
    if columns.concurrency {
        headers.push("CONCURRENCY");
    }
    if columns.rate_limit {
        headers.push("RATE LIMIT");
    }
    if columns.emit {
        headers.push("EMIT");
    }
    headers.extend(["TIMEOUT", "HEARTBEAT", "ATTEMPTS", "BACKOFF", "NON-RETRYABLE"]);
    out.push_str(&table(&headers, &rows));
    out
}

/// The answer to `run submit`: the run id, and whether an existing run was returned instead.
pub fn submit_text(resp: &SubmitRunResponse) -> String {
    if resp.created {
        format!("run {} created\n", resp.run_id)
    } else if resp.input_differs {
        format!(
            "run {} already exists for this idempotency key, with a different input: it was not started again \
             and keeps its own input (use another idempotency key to run this input)\n",
            resp.run_id
        )
    } else {
        format!(
            "run {} already exists for this idempotency key (not started again)\n",
            resp.run_id
        )
    }
}

/// Whether a step's attempt history is worth showing: it was tried more than once.
fn was_retried(step: &StepRun) -> bool {
    step.attempt > 1 || step.attempts.len() > 1
}

/// Characters of an attempt's input shown in an attempts table (`run get RUN --step S --output
/// json` shows it whole).
const INPUT_SHOWN_CHARS: usize = 40;

/// An attempt's input for a table: its JSON on one line, cut to [`INPUT_SHOWN_CHARS`] (`…`), or
/// `omitted (SIZE)` when the answer left it out, `-` when none was recorded.
fn attempt_input(a: &Attempt) -> String {
    if a.input_omitted_bytes > 0 {
        return format!("omitted ({})", size_text(a.input_omitted_bytes));
    }
    if a.input_json.trim().is_empty() {
        return "-".to_owned();
    }
    let text = one_line(&json_text(&a.input_json));
    if text.chars().count() > INPUT_SHOWN_CHARS {
        let cut: String = text.chars().take(INPUT_SHOWN_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// An attempt's error, led by its type when the message does not already say it.
fn attempt_error(a: &Attempt) -> String {
    let error = one_line(&a.error);
    if a.error_type.is_empty() || error.starts_with(&a.error_type) {
        error
    } else {
        format!("{}: {error}", a.error_type)
    }
}

fn attempt_row(a: &Attempt) -> Vec<String> {
    vec![
        format!("#{}", a.number),
        or_dash(&a.outcome),
        match (ts_ms(a.started_at.as_ref()), ts_ms(a.finished_at.as_ref())) {
            (Some(start), Some(end)) => human_duration(end - start),
            _ => "-".to_owned(),
        },
        or_dash(&a.worker),
        attempt_error(a),
    ]
}

/// The attempt history of one step: its finished attempts, then the current one when it is still
/// in flight.
fn attempts_text(step: &StepRun, now_ms: i64) -> String {
    // The INPUT column only when some attempt recorded the input it ran with.
    let show_input = step
        .attempts
        .iter()
        .any(|a| !a.input_json.trim().is_empty() || a.input_omitted_bytes > 0);
    let mut rows: Vec<Vec<String>> = step
        .attempts
        .iter()
        .map(|a| {
            let mut row = attempt_row(a);
            if show_input {
                row.insert(4, attempt_input(a));
            }
            row
        })
        .collect();
    let in_flight = matches!(
        StepStatus::try_from(step.status),
        Ok(StepStatus::Dispatched | StepStatus::Running)
    );
    if in_flight && step.attempt > 0 && !step.attempts.iter().any(|a| a.number == step.attempt) {
        rows.push(vec![
            format!("#{}", step.attempt),
            step_status_word(step.status),
            step_duration(step, now_ms),
            or_dash(&step.worker),
            String::new(),
        ]);
        if show_input && let Some(row) = rows.last_mut() {
            row.insert(4, String::new());
        }
    }
    // Attempts count against the retry policy from the run's last retry or re-run on.
    let title = if step.attempt_base > 0 {
        format!(
            "Attempts of step {} ({} of at most {} since the run was retried; {} before):\n",
            step.id,
            step.attempt.saturating_sub(step.attempt_base),
            step.max_attempts,
            step.attempt_base
        )
    } else {
        format!(
            "Attempts of step {} ({} of at most {}):\n",
            step.id, step.attempt, step.max_attempts
        )
    };
    // Only the last attempts are kept in full; the coordinator counts the ones before them.
    let earlier = match step.earlier_attempts {
        0 => String::new(),
        1 => "  1 earlier attempt not shown\n".to_owned(),
        n => format!("  {n} earlier attempts not shown\n"),
    };
    let headers: &[&str] = if show_input {
        &["ATTEMPT", "OUTCOME", "DURATION", "WORKER", "INPUT", "ERROR"]
    } else {
        &["ATTEMPT", "OUTCOME", "DURATION", "WORKER", "ERROR"]
    };
    title + &earlier + &indent(&table(headers, &rows), 2)
}

/// The HANDLER cell of a step of a run: the handler of a task, the kind of the other steps, e.g.
/// `(wait event)` or `(human)` (a run's steps do not carry their definitions' details).
fn step_action(step: &StepRun) -> String {
    match step.kind.as_str() {
        "" | "task" => step.handler.clone(),
        "sleep" => "(sleep)".to_owned(),
        "sleep_until" => "(sleep until)".to_owned(),
        "wait_for_event" => "(wait event)".to_owned(),
        other if step.handler.is_empty() => format!("({other})"),
        other => format!("({other}) {}", step.handler),
    }
}

/// A fan-out step's progress, e.g. `12/40 ok, 1 failed, 3 in flight` (zero counts left out).
pub fn progress_text(items: &ItemProgress) -> String {
    let mut text = format!("{}/{} ok", items.succeeded, items.total);
    if items.failed > 0 {
        text.push_str(&format!(", {} failed", items.failed));
    }
    if items.in_flight > 0 {
        text.push_str(&format!(", {} in flight", items.in_flight));
    }
    text
}

/// An emitting step's child runs, e.g. `emitted 1000: 10 pending, 5 running, 980 ok, 5 failed`
/// (zero pending, running and failed counts left out).
pub fn emitted_text(emitted: &EmitProgress) -> String {
    let mut parts = Vec::new();
    if emitted.pending > 0 {
        parts.push(format!("{} pending", emitted.pending));
    }
    if emitted.running > 0 {
        parts.push(format!("{} running", emitted.running));
    }
    parts.push(format!("{} ok", emitted.succeeded));
    if emitted.failed > 0 {
        parts.push(format!("{} failed", emitted.failed));
    }
    format!("emitted {}: {}", emitted.total, parts.join(", "))
}

/// At most this many holders of a concurrency slot are named by `run get`; `--output json` lists
/// them all.
const SLOT_HOLDERS_SHOWN: usize = 3;

/// A step waiting for a concurrency slot: the slot's pool and who holds its slots, e.g.
/// `slot orders/charge/acme held by r-1/charge#1, r-2/charge#1, r-3/charge#2 +2 more`.
pub fn slot_text(slot: &str, holders: &[String]) -> String {
    let mut text = format!("slot {slot}");
    if !holders.is_empty() {
        let named: Vec<&str> = holders.iter().take(SLOT_HOLDERS_SHOWN).map(String::as_str).collect();
        text.push_str(&format!(" held by {}", named.join(", ")));
        if holders.len() > SLOT_HOLDERS_SHOWN {
            text.push_str(&format!(" +{} more", holders.len() - SLOT_HOLDERS_SHOWN));
        }
    }
    text
}

/// The DETAIL cell of a step of a run: fan-out progress, an emitting step's child runs, what a
/// waiting step waits for (an event, a concurrency slot), the child run of a workflow step and who
/// completed a human step; empty when there is nothing to say.
fn step_detail(step: &StepRun) -> String {
    let mut parts = Vec::new();
    if let Some(items) = &step.items {
        parts.push(progress_text(items));
    }
    if let Some(emitted) = &step.emitted {
        parts.push(emitted_text(emitted));
    }
    let waiting = StepStatus::try_from(step.status) == Ok(StepStatus::Waiting);
    if waiting && let Some(wake) = step.wake_at.as_ref() {
        // A sleeping step: when it wakes.
        parts.push(format!("until {}", table_time(Some(wake))));
    } else if waiting && !step.waiting_for.trim().is_empty() {
        parts.push(format!("waiting for {}", one_line(&step.waiting_for)));
    } else if StepStatus::try_from(step.status) == Ok(StepStatus::Dispatched) && !step.waiting_for.trim().is_empty() {
        // Why no worker started it yet (no consumer, or tasks ahead in its queue).
        parts.push(one_line(&step.waiting_for));
    }
    if waiting && !step.slot.is_empty() {
        parts.push(slot_text(&step.slot, &step.slot_holders));
    }
    if !step.child_run_id.is_empty() {
        parts.push(format!("child run {}", step.child_run_id));
    }
    if !step.completed_by.is_empty() {
        parts.push(format!("completed by {}", step.completed_by));
    }
    parts.join("; ")
}

/// At most this many child runs are listed by `run get`; `--output json` lists them all.
const CHILDREN_SHOWN: usize = 20;

/// A run's child runs: on one line when there are a few, one per line otherwise.
fn children_text(ids: &[String]) -> String {
    if ids.len() <= 5 {
        return ids.join(", ");
    }
    let mut text = ids.iter().take(CHILDREN_SHOWN).cloned().collect::<Vec<_>>().join("\n");
    if ids.len() > CHILDREN_SHOWN {
        text.push_str(&format!(
            "\n... and {} more (--output json lists them all)",
            ids.len() - CHILDREN_SHOWN
        ));
    }
    text
}

/// The `run get` view: the run's details, a table of its steps and the attempt history of every
/// step that was retried.
pub fn run_text(run: &Run, now_ms: i64) -> String {
    let mut items = vec![
        ("Run", run.id.clone()),
        ("Workflow", format!("{}@{}", run.workflow, run.version)),
    ];
    if !run.parent_run_id.is_empty() {
        items.push((
            "Parent",
            format!("{} (step {})", run.parent_run_id, or_dash(&run.parent_step_id)),
        ));
    }
    if !run.child_run_ids.is_empty() {
        items.push(("Children", children_text(&run.child_run_ids)));
    }
    items.push(("Status", run_status_word(run.status)));
    if !run.waiting_for.trim().is_empty() {
        items.push(("Waiting", one_line(&run.waiting_for)));
    }
    items.extend([
        ("Created", table_time(run.created_at.as_ref())),
        ("Started", table_time(run.started_at.as_ref())),
        ("Finished", table_time(run.finished_at.as_ref())),
        ("Duration", run_duration(run, now_ms)),
        ("Idempotency key", or_dash(&run.idempotency_key)),
        ("Input", json_text(&run.input_json)),
        ("Output", json_text(&run.output_json)),
        ("Error", or_dash(run.error.trim())),
    ]);
    let mut out = fields(&items);
    if run.steps.is_empty() {
        return out;
    }
    out.push('\n');
    // The DETAIL column only when some step has something to say in it.
    let details: Vec<String> = run.steps.iter().map(step_detail).collect();
    let show_detail = details.iter().any(|d| !d.is_empty());
    let rows: Vec<Vec<String>> = run
        .steps
        .iter()
        .zip(details)
        .map(|(s, detail)| {
            let mut row = vec![
                s.id.clone(),
                step_action(s),
                step_status_word(s.status),
                format!("{}/{}", s.attempt.saturating_sub(s.attempt_base), s.max_attempts),
                step_duration(s, now_ms),
            ];
            if show_detail {
                row.push(detail);
            }
            row.push(one_line(&s.error));
            row
        })
        .collect();
    let mut headers = vec!["STEP", "HANDLER", "STATUS", "ATTEMPT", "DURATION"];
    if show_detail {
        headers.push("DETAIL");
    }
    headers.push("LAST ERROR");
    out.push_str(&table(&headers, &rows));
    // Outputs the coordinator left out to keep the answer under its budget (3 MiB).
    let omitted: Vec<&StepRun> = run.steps.iter().filter(|s| s.output_omitted_bytes > 0).collect();
    if !omitted.is_empty() {
        out.push('\n');
        for s in omitted {
            out.push_str(&format!("{}\n", omitted_output_text(&run.id, s)));
        }
    }
    for step in run.steps.iter().filter(|s| was_retried(s)) {
        out.push('\n');
        out.push_str(&attempts_text(step, now_ms));
    }
    out
}

/// A size in bytes as people read it, in SI units: `950 bytes`, `12.3 kB`, `5.2 MB`, `1.1 GB`
/// (cut, not rounded, to one decimal).
pub fn size_text(bytes: u64) -> String {
    let (unit, scale) = match bytes {
        0..1_000 => return format!("{bytes} bytes"),
        1_000..1_000_000 => ("kB", 1_000),
        1_000_000..1_000_000_000 => ("MB", 1_000_000),
        _ => ("GB", 1_000_000_000),
    };
    format!("{}.{} {unit}", bytes / scale, bytes % scale / (scale / 10))
}

/// The line `run get` prints for a step whose output the answer left out, with the command that
/// shows it: `step big output: omitted (3.5 MB): baton run get RUN --step big`.
fn omitted_output_text(run_id: &str, step: &StepRun) -> String {
    format!(
        "step {} output: omitted ({}): baton run get {run_id} --step {}",
        step.id,
        size_text(step.output_omitted_bytes),
        step.id
    )
}

/// The `run get RUN --step S` view: one step of a run, with its whole output and its attempts.
pub fn step_text(run: &Run, now_ms: i64) -> String {
    let mut out = fields(&[
        ("Run", run.id.clone()),
        ("Workflow", format!("{}@{}", run.workflow, run.version)),
        ("Run status", run_status_word(run.status)),
    ]);
    for step in &run.steps {
        out.push('\n');
        let mut items = vec![
            ("Step", step.id.clone()),
            ("Handler", step_action(step)),
            ("Status", step_status_word(step.status)),
            (
                "Attempt",
                format!(
                    "{}/{}",
                    step.attempt.saturating_sub(step.attempt_base),
                    step.max_attempts
                ),
            ),
            ("Duration", step_duration(step, now_ms)),
            ("Worker", or_dash(&step.worker)),
        ];
        let detail = step_detail(step);
        if !detail.is_empty() {
            items.push(("Detail", detail));
        }
        // The input of the attempt in flight (finished attempts show theirs in the attempts table).
        if step.input_omitted_bytes > 0 {
            items.push(("Input", format!("omitted ({})", size_text(step.input_omitted_bytes))));
        } else if !step.input_json.trim().is_empty() {
            items.push(("Input", json_text(&step.input_json)));
        }
        items.push(("Error", or_dash(step.error.trim())));
        let output = if step.output_omitted_bytes > 0 {
            format!("omitted ({})", size_text(step.output_omitted_bytes))
        } else {
            json_text(&step.output_json)
        };
        items.push(("Output", output));
        out.push_str(&fields(&items));
        if !step.attempts.is_empty() || step.earlier_attempts > 0 {
            out.push('\n');
            out.push_str(&attempts_text(step, now_ms));
        }
        // A failed attempt's details (a traceback), and where its log lines are.
        for a in step.attempts.iter().filter(|a| !a.error_details.trim().is_empty()) {
            out.push_str(&format!("\nDetails of attempt #{}:\n", a.number));
            out.push_str(&indent(a.error_details.trim_end(), 2));
        }
        let lines: u64 = step.attempts.iter().map(|a| u64::from(a.log_lines)).sum();
        if lines > 0 {
            out.push_str(&format!(
                "\nLog lines: {lines} (baton run logs {} {})\n",
                run.id, step.id
            ));
        }
    }
    out
}

/// The `run list` table, followed by the next page token when there is one.
pub fn run_list_text(runs: &[Run], next_page_token: &str, now_ms: i64) -> String {
    let mut out = if runs.is_empty() {
        "no runs found\n".to_owned()
    } else {
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                vec![
                    r.id.clone(),
                    format!("{}@{}", r.workflow, r.version),
                    run_status_word(r.status),
                    table_time(r.created_at.as_ref()),
                    run_duration(r, now_ms),
                ]
            })
            .collect();
        table(&["ID", "WORKFLOW", "STATUS", "CREATED", "DURATION"], &rows)
    };
    if !next_page_token.is_empty() {
        out.push_str(&format!("\nmore runs: --page-token {next_page_token}\n"));
    }
    out
}

/// The answer to `event publish`: the steps the event was delivered to, or that it was buffered;
/// then the runs it started, if any.
pub fn publish_text(resp: &PublishEventResponse) -> String {
    let mut out = if !resp.delivered.is_empty() {
        let rows: Vec<Vec<String>> = resp
            .delivered
            .iter()
            .map(|s| vec![s.run_id.clone(), s.step_id.clone()])
            .collect();
        format!("delivered to {} step(s):\n", resp.delivered.len()) + &indent(&table(&[], &rows), 2)
    } else if resp.buffered {
        "no step was waiting; buffered for the coordinator's event TTL\n".to_owned()
    } else {
        "no step was waiting; the event was not kept\n".to_owned()
    };
    if !resp.started_run_ids.is_empty() {
        out.push_str(&format!(
            "started {} run(s): {}\n",
            resp.started_run_ids.len(),
            resp.started_run_ids.join(", ")
        ));
    }
    for e in &resp.trigger_errors {
        out.push_str(&format!(
            "no run of {}@{}: {}\n",
            e.workflow,
            e.version,
            one_line(&e.error)
        ));
    }
    out
}

/// The `event list` table: buffered events per name and key.
pub fn buffered_events_text(events: &[BufferedEvents]) -> String {
    if events.is_empty() {
        return "no buffered events\n".to_owned();
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                or_dash(&e.key),
                e.count.to_string(),
                table_time(e.last_buffered_at.as_ref()),
                one_line(&e.newest_payload_json),
            ]
        })
        .collect();
    table(&["NAME", "KEY", "COUNT", "LAST BUFFERED", "NEWEST PAYLOAD"], &rows)
}

/// How many (name, key) pairs `event purge` asks for when its key held nothing, to name the keys
/// that do hold events.
pub const PURGE_KEYS_LISTED: u32 = 100;

/// At most this many keys are named by `event purge` after purging nothing; `event list` lists them all.
const PURGE_KEYS_SHOWN: usize = 10;

/// What `event purge NAME [--key K | --all-keys]` prints: how many events it dropped and, when it
/// dropped none under one key, the keys of NAME that hold events (`others`, from
/// `ListBufferedEvents`) and how to purge them; or that no event of NAME is buffered at all.
pub fn purged_text(name: &str, key: &str, all_keys: bool, purged: u32, others: &[BufferedEvents]) -> String {
    let mut text = format!("purged {purged} buffered event(s)\n");
    if purged > 0 || all_keys {
        return text;
    }
    let which = if key.is_empty() {
        format!("no event of {name} without a key is buffered")
    } else {
        format!("no event of {name} with key {key:?} is buffered")
    };
    let held: Vec<&BufferedEvents> = others.iter().filter(|e| e.name == name && e.count > 0).collect();
    if held.is_empty() {
        text.push_str(&format!("{which}, nor under any other key (baton event list)\n"));
        return text;
    }
    let mut keys: Vec<String> = held
        .iter()
        .take(PURGE_KEYS_SHOWN)
        .map(|e| {
            let k = if e.key.is_empty() {
                "(no key)".to_owned()
            } else {
                format!("{:?}", e.key)
            };
            format!("{k} ({})", e.count)
        })
        .collect();
    if held.len() > PURGE_KEYS_SHOWN {
        keys.push(format!(
            "and {} more (baton event list --name {name})",
            held.len() - PURGE_KEYS_SHOWN
        ));
    }
    text.push_str(&format!(
        "{which}; events of {name} are buffered under key {}\n\
         purge one key with --key KEY, or every key of {name} with --all-keys\n",
        keys.join(", ")
    ));
    text
}

/// `event purge -o json`: `{"purged": n}`, with `"buffered_keys"` (the keys of the name that hold
/// events, with their counts) when none was purged under one key.
pub fn purged_json(purged: u32, others: &[BufferedEvents]) -> serde_json::Value {
    let mut doc = serde_json::json!({ "purged": purged });
    if !others.is_empty() {
        doc["buffered_keys"] = serde_json::Value::Array(
            others
                .iter()
                .map(|e| serde_json::json!({"key": e.key, "count": e.count}))
                .collect(),
        );
    }
    doc
}

/// Buffered events as JSON (`event list -o json`).
pub fn buffered_events_json(events: &[BufferedEvents]) -> serde_json::Value {
    serde_json::Value::Array(
        events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.name,
                    "key": e.key,
                    "count": e.count,
                    "oldest_payload_json": e.oldest_payload_json,
                    "newest_payload_json": e.newest_payload_json,
                    "last_buffered_at": e.last_buffered_at.as_ref().map(|t| rfc3339_millis(millis(t))),
                })
            })
            .collect(),
    )
}

/// `-` for no assignees, otherwise the assignees comma separated.
fn assignees_text(assignees: &[String]) -> String {
    or_dash(&assignees.join(", "))
}

/// The `task list` table; the COMPLETED BY column only when some task was completed.
pub fn task_list_text(tasks: &[HumanTask]) -> String {
    if tasks.is_empty() {
        return "no human tasks found\n".to_owned();
    }
    let show_completed_by = tasks.iter().any(|t| !t.completed_by.is_empty());
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let mut row = vec![
                t.run_id.clone(),
                t.step_id.clone(),
                or_dash(&one_line(&t.title)),
                assignees_text(&t.assignees),
                or_dash(&t.status),
                table_time(t.created_at.as_ref()),
            ];
            if show_completed_by {
                row.push(or_dash(&t.completed_by));
            }
            row
        })
        .collect();
    let mut headers = vec!["RUN", "STEP", "TITLE", "ASSIGNEES", "STATUS", "CREATED"];
    if show_completed_by {
        headers.push("COMPLETED BY");
    }
    table(&headers, &rows)
}

/// One human task, as `task complete` prints it: what it was, who completed it, when, with what.
pub fn task_text(t: &HumanTask) -> String {
    fields(&[
        ("Run", t.run_id.clone()),
        ("Step", t.step_id.clone()),
        ("Workflow", format!("{}@{}", t.workflow, t.workflow_version)),
        ("Title", or_dash(&one_line(&t.title))),
        ("Assignees", assignees_text(&t.assignees)),
        ("Status", or_dash(&t.status)),
        ("Created", table_time(t.created_at.as_ref())),
        ("Completed by", or_dash(&t.completed_by)),
        ("Completed at", table_time(t.completed_at.as_ref())),
        ("Data", json_text(&t.data_json)),
    ])
}

/// A schedule's workflow: `name@N` when pinned to a version, the name alone for the latest.
fn schedule_workflow(s: &Schedule) -> String {
    if s.workflow_version > 0 {
        format!("{}@{}", s.workflow, s.workflow_version)
    } else {
        s.workflow.clone()
    }
}

/// A schedule's time zone: `UTC` when the coordinator sent none.
fn schedule_timezone(s: &Schedule) -> &str {
    if s.timezone.is_empty() { "UTC" } else { &s.timezone }
}

/// A schedule's overlap policy: `skip` when the coordinator sent none.
fn schedule_overlap(s: &Schedule) -> &str {
    if s.overlap.is_empty() { "skip" } else { &s.overlap }
}

/// A schedule's input: `{}` when the coordinator sent none.
fn schedule_input(s: &Schedule) -> &str {
    if s.input_json.trim().is_empty() {
        "{}"
    } else {
        &s.input_json
    }
}

/// `paused` or `active`.
fn schedule_state(s: &Schedule) -> &'static str {
    if s.paused { "paused" } else { "active" }
}

/// The `schedule list` table.
pub fn schedule_list_text(schedules: &[Schedule]) -> String {
    if schedules.is_empty() {
        return "no schedules found\n".to_owned();
    }
    let rows: Vec<Vec<String>> = schedules
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                schedule_workflow(s),
                one_line(&s.cron),
                schedule_timezone(s).to_owned(),
                schedule_overlap(s).to_owned(),
                table_time(s.next_tick_at.as_ref()),
                schedule_state(s).to_owned(),
                or_dash(&s.last_run_id),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "WORKFLOW",
            "CRON",
            "TIMEZONE",
            "OVERLAP",
            "NEXT TICK",
            "STATE",
            "LAST RUN",
        ],
        &rows,
    )
}

/// One schedule, as `schedule get`, `create`, `pause` and `resume` print it.
pub fn schedule_text(s: &Schedule) -> String {
    let catchup = if s.catchup_window_ms == 0 {
        "the coordinator's default".to_owned()
    } else {
        human_duration(to_i64(s.catchup_window_ms))
    };
    fields(&[
        ("Schedule", s.id.clone()),
        (
            "Workflow",
            if s.workflow_version > 0 {
                schedule_workflow(s)
            } else {
                format!("{} (latest version)", s.workflow)
            },
        ),
        ("Cron", one_line(&s.cron)),
        ("Timezone", schedule_timezone(s).to_owned()),
        ("Overlap", schedule_overlap(s).to_owned()),
        ("Catch-up window", catchup),
        ("State", schedule_state(s).to_owned()),
        ("Next tick", table_time(s.next_tick_at.as_ref())),
        ("Last run", or_dash(&s.last_run_id)),
        ("Source", or_dash(&s.source)),
        ("Created", table_time(s.created_at.as_ref())),
        ("Input", json_text(schedule_input(s))),
    ])
}

/// One tick, as `schedule trigger` prints it.
pub fn tick_text(t: &ScheduleTick) -> String {
    fields(&[
        ("Schedule", t.schedule_id.clone()),
        ("Tick", table_time(t.tick_at.as_ref())),
        ("Outcome", or_dash(&t.outcome)),
        ("Run", or_dash(&t.run_id)),
        ("Reason", or_dash(&one_line(&t.reason))),
        ("Recorded", table_time(t.recorded_at.as_ref())),
    ])
}

/// The `schedule history` table: the ledger, newest first.
pub fn tick_list_text(ticks: &[ScheduleTick]) -> String {
    if ticks.is_empty() {
        return "no ticks recorded\n".to_owned();
    }
    let rows: Vec<Vec<String>> = ticks
        .iter()
        .map(|t| {
            vec![
                table_time(t.tick_at.as_ref()),
                or_dash(&t.outcome),
                or_dash(&t.run_id),
                one_line(&t.reason),
            ]
        })
        .collect();
    table(&["TICK", "OUTCOME", "RUN", "REASON"], &rows)
}

/// The widest subject (`run` or a step id) among a run's steps, to line up event lines.
pub fn event_subject_width(run: &Run) -> usize {
    run.steps
        .iter()
        .map(|s| s.id.chars().count())
        .chain([3])
        .max()
        .unwrap_or(3)
}

/// One line of `run watch`: time, subject (`run` or the step id), status, attempt and detail.
pub fn event_line(event: &RunEvent, subject_width: usize) -> String {
    let subject = if event.kind == "run" || event.step_id.is_empty() {
        "run"
    } else {
        event.step_id.as_str()
    };
    let attempt = if event.attempt > 0 {
        format!("attempt {}", event.attempt)
    } else {
        String::new()
    };
    // A handler's own progress event shows its JSON where a status change shows its detail, and
    // a line it logged its level and message.
    let (status, detail) = if event.kind == "custom" {
        ("progress", one_line(&event.payload_json))
    } else if let (Some(log), "log") = (event.log.as_ref(), event.kind.as_str()) {
        (log.level.as_str(), one_line(&log.message))
    } else {
        (event.status.as_str(), one_line(&event.detail))
    };
    let line = format!(
        "{}  {subject:<subject_width$}  {status:<10}  {attempt:<10}  {detail}",
        time_of_day(event.time.as_ref()),
    );
    line.trim_end().to_owned()
}

// ---------------------------------------------------------------------------------------------
// JSON output
// ---------------------------------------------------------------------------------------------

/// A `*_json` field as a JSON value: `null` when empty, the text as a string when it does not parse.
fn json_value(text: &str) -> Value {
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
    }
}

/// `None` (JSON `null`) for an empty string.
fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// A timestamp as an RFC 3339 string with milliseconds, `None` (JSON `null`) when unset.
fn json_time(ts: Option<&Timestamp>) -> Option<String> {
    ts_ms(ts).map(rfc3339_millis)
}

/// The JSON answer to `workflow apply`.
#[derive(Debug, Serialize)]
pub struct ApplyJson {
    /// The workflow's name.
    pub name: String,
    /// The version the definition was stored as.
    pub version: u32,
    /// False when this exact definition was already registered.
    pub created: bool,
}

/// The JSON answer to `workflow apply`.
pub fn apply_json(resp: &RegisterWorkflowResponse) -> ApplyJson {
    let (name, version) = resp
        .workflow
        .as_ref()
        .map_or((String::new(), 0), |w| (w.name.clone(), w.version));
    ApplyJson {
        name,
        version,
        created: resp.created,
    }
}

/// A workflow as JSON.
#[derive(Debug, Serialize)]
pub struct WorkflowJson {
    /// The workflow's name.
    pub name: String,
    /// This version.
    pub version: u32,
    /// Every registered version, ascending.
    pub versions: Vec<u32>,
    /// The description, `null` when none.
    pub description: Option<String>,
    /// When this version was registered.
    pub registered_at: Option<String>,
    /// The JSON Schema for run inputs, `null` when none.
    pub input_schema: Value,
    /// At most this many runs at once, `null` when not limited.
    pub max_concurrent_runs: Option<u32>,
    /// The CEL key the run limit applies per, `null` for one limit over all runs.
    pub concurrency_key: Option<String>,
    /// The event that starts runs of this workflow, `null` when none.
    pub on_event: Option<String>,
    /// The CEL filter over the event's `payload`, `null` when every such event starts a run.
    pub on_event_filter: Option<String>,
    /// The steps, in definition order.
    pub steps: Vec<StepDefinitionJson>,
    /// The normalised definition the coordinator stored.
    pub definition: Value,
}

/// A step definition as JSON.
#[derive(Debug, Serialize)]
pub struct StepDefinitionJson {
    /// The step id.
    pub id: String,
    /// What it does: `task`, `sleep`, `sleep_until`, `wait_for_event`, `human` or `workflow`.
    pub kind: String,
    /// The handler that runs it (empty for the kinds that have none).
    pub handler: String,
    /// The steps it waits for.
    pub depends_on: Vec<String>,
    /// The CEL condition that decides whether it runs, `null` when it always runs.
    pub when: Option<String>,
    /// Its input template, `null` when it gets the run input.
    pub input_template: Value,
    /// For a fan-out step: the CEL list it runs over; `null` otherwise.
    pub for_each: Option<String>,
    /// For a fan-out step: how many elements run at once, `null` when not limited.
    pub max_parallel: Option<u32>,
    /// Its timeout per attempt, in milliseconds.
    pub timeout_ms: u64,
    /// Its heartbeat timeout in milliseconds, `null` when none.
    pub heartbeat_timeout_ms: Option<u64>,
    /// For a durable sleep step: how long it waits, in milliseconds; `null` otherwise.
    pub sleep_ms: Option<u64>,
    /// For a `sleep_until` step: the CEL timestamp it waits for; `null` otherwise.
    pub sleep_until: Option<String>,
    /// For a `wait_for_event` step: the event it waits for; `null` otherwise.
    pub wait_for_event: Option<WaitForEventJson>,
    /// For a `human` step: its task; `null` otherwise.
    pub human: Option<HumanStepJson>,
    /// For a `workflow` step: the child workflow; `null` otherwise.
    pub workflow: Option<String>,
    /// For a `workflow` step: the child workflow's version, `null` for the latest when the step starts.
    pub workflow_version: Option<u32>,
    /// Its retry policy, `null` when the server sent none.
    pub retry: Option<RetryJson>,
    /// Its concurrency limit, `null` when not limited.
    pub concurrency: Option<ConcurrencyJson>,
    /// Its rate limit, `null` when not limited.
    pub rate_limit: Option<RateLimitJson>,
    /// The runs of another workflow it starts from its output, `null` when none.
    pub emit: Option<EmitJson>,
}

/// A step's concurrency limit, as JSON.
#[derive(Debug, Serialize)]
pub struct ConcurrencyJson {
    /// Attempts holding a slot at once, at most.
    pub limit: u32,
    /// The CEL key the limit applies per, `null` for one pool.
    pub key: Option<String>,
}

/// A step's rate limit, as JSON.
#[derive(Debug, Serialize)]
pub struct RateLimitJson {
    /// Starts per period, at most.
    pub limit: u32,
    /// The period, in milliseconds.
    pub period_ms: u64,
    /// The CEL key the limit applies per, `null` for one limit.
    pub key: Option<String>,
}

/// The runs a step emits, as JSON.
#[derive(Debug, Serialize)]
pub struct EmitJson {
    /// The workflow it starts runs of.
    pub workflow: String,
    /// The CEL list it starts one run per element of.
    pub items: String,
    /// The CEL key per element a child run's id is derived from, `null` when none.
    pub key: Option<String>,
    /// Whether the step waits for every child run to finish.
    pub wait: bool,
    /// Child runs unfinished at once, at most; `null` when not limited.
    pub max_in_flight: Option<u32>,
}

/// What a `wait_for_event` step waits for, as JSON.
#[derive(Debug, Serialize)]
pub struct WaitForEventJson {
    /// The event name.
    pub event: String,
    /// The CEL expression of the correlation key, `null` when none.
    pub key: Option<String>,
    /// How long it waits, in milliseconds; `null` when for ever.
    pub timeout_ms: Option<u64>,
    /// What a timeout does (`fail` or `skip`), `null` when unset.
    pub on_timeout: Option<String>,
}

/// The task of a `human` step definition, as JSON.
#[derive(Debug, Serialize)]
pub struct HumanStepJson {
    /// The task's title.
    pub title: String,
    /// Its description, `null` when none.
    pub description: Option<String>,
    /// Who may complete it.
    pub assignees: Vec<String>,
    /// The JSON Schema the submitted data must satisfy, `null` when none.
    pub form_schema: Value,
}

/// A retry policy as JSON.
#[derive(Debug, Serialize)]
pub struct RetryJson {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The wait before the first retry, in milliseconds.
    pub initial_interval_ms: u64,
    /// The factor each wait grows by.
    pub backoff_coefficient: f64,
    /// The longest wait, in milliseconds.
    pub max_interval_ms: u64,
    /// The random spread of each wait, as a fraction.
    pub jitter: f64,
    /// Error types that are never retried.
    pub non_retryable_errors: Vec<String>,
}

/// A workflow as JSON.
pub fn workflow_json(w: &Workflow) -> WorkflowJson {
    WorkflowJson {
        name: w.name.clone(),
        version: w.version,
        versions: w.versions.clone(),
        description: non_empty(&w.description),
        registered_at: json_time(w.registered_at.as_ref()),
        input_schema: json_value(&w.input_schema_json),
        max_concurrent_runs: (w.max_concurrent_runs > 0).then_some(w.max_concurrent_runs),
        concurrency_key: non_empty(w.concurrency_key.trim()),
        on_event: non_empty(&w.on_event),
        on_event_filter: non_empty(w.on_event_filter.trim()),
        steps: w.steps.iter().map(step_definition_json).collect(),
        definition: json_value(&w.definition_json),
    }
}

fn step_definition_json(s: &StepDefinition) -> StepDefinitionJson {
    StepDefinitionJson {
        id: s.id.clone(),
        kind: definition_kind(s).to_owned(),
        handler: s.handler.clone(),
        depends_on: s.depends_on.clone(),
        when: non_empty(s.when.trim()),
        input_template: json_value(&s.input_template_json),
        for_each: non_empty(s.for_each.trim()),
        max_parallel: (s.max_parallel > 0).then_some(s.max_parallel),
        timeout_ms: s.timeout_ms,
        heartbeat_timeout_ms: (s.heartbeat_timeout_ms > 0).then_some(s.heartbeat_timeout_ms),
        sleep_ms: (s.sleep_ms > 0).then_some(s.sleep_ms),
        sleep_until: non_empty(s.sleep_until.trim()),
        wait_for_event: s.wait_for_event.as_ref().map(|w| WaitForEventJson {
            event: w.event.clone(),
            key: non_empty(&w.key),
            timeout_ms: (w.timeout_ms > 0).then_some(w.timeout_ms),
            on_timeout: non_empty(&w.on_timeout),
        }),
        human: s.human.as_ref().map(|h| HumanStepJson {
            title: h.title.clone(),
            description: non_empty(&h.description),
            assignees: h.assignees.clone(),
            form_schema: json_value(&h.form_schema_json),
        }),
        workflow: non_empty(&s.workflow),
        workflow_version: (!s.workflow.is_empty() && s.workflow_version > 0).then_some(s.workflow_version),
        retry: s.retry.as_ref().map(|r| RetryJson {
            max_attempts: r.max_attempts,
            initial_interval_ms: r.initial_interval_ms,
            backoff_coefficient: r.backoff_coefficient,
            max_interval_ms: r.max_interval_ms,
            jitter: r.jitter,
            non_retryable_errors: r.non_retryable_errors.clone(),
        }),
        concurrency: s.concurrency.as_ref().filter(|c| c.limit > 0).map(|c| ConcurrencyJson {
            limit: c.limit,
            key: non_empty(c.key.trim()),
        }),
        rate_limit: s.rate_limit.as_ref().filter(|r| r.limit > 0).map(|r| RateLimitJson {
            limit: r.limit,
            period_ms: r.period_ms,
            key: non_empty(r.key.trim()),
        }),
        emit: s.emit.as_ref().filter(|e| !e.workflow.is_empty()).map(|e| EmitJson {
            workflow: e.workflow.clone(),
            items: e.items.clone(),
            key: non_empty(e.key.trim()),
            wait: e.wait,
            max_in_flight: (e.max_in_flight > 0).then_some(e.max_in_flight),
        }),
    }
}

/// The JSON answer to `run submit`.
#[derive(Debug, Serialize)]
pub struct SubmitJson {
    /// The run's id.
    pub run_id: String,
    /// False when the idempotency key matched an existing run.
    pub created: bool,
    /// With `created: false`, true when the input sent differs from the existing run's input.
    pub input_differs: bool,
}

/// The JSON answer to `run submit`.
pub fn submit_json(resp: &SubmitRunResponse) -> SubmitJson {
    SubmitJson {
        run_id: resp.run_id.clone(),
        created: resp.created,
        input_differs: resp.input_differs,
    }
}

/// A run as JSON.
#[derive(Debug, Serialize)]
pub struct RunJson {
    /// The run id.
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The workflow version the run is pinned to.
    pub version: u32,
    /// The status word (`running`, `timed_out`, ...).
    pub status: String,
    /// For a pending run waiting for a run slot: what it waits for; `null` otherwise.
    pub waiting_for: Option<String>,
    /// The run input.
    pub input: Value,
    /// The run output, `null` until it succeeds.
    pub output: Value,
    /// Why the run failed, `null` when it did not.
    pub error: Option<String>,
    /// The idempotency key it was submitted with, `null` when none.
    pub idempotency_key: Option<String>,
    /// When it was submitted.
    pub created_at: Option<String>,
    /// When its first step was dispatched.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// For a child run (started by a `workflow` step): its parent run, `null` otherwise.
    pub parent_run_id: Option<String>,
    /// For a child run: the parent's step that started it, `null` otherwise.
    pub parent_step_id: Option<String>,
    /// The child runs it started, in step order.
    pub child_run_ids: Vec<String>,
    /// Its steps in definition order (empty in `run list`).
    pub steps: Vec<StepJson>,
}

/// A step of a run as JSON.
#[derive(Debug, Serialize)]
pub struct StepJson {
    /// The step id.
    pub id: String,
    /// What it does: `task`, `sleep`, `sleep_until`, `wait_for_event`, `human` or `workflow`.
    pub kind: String,
    /// The handler that runs it (empty for the kinds that have none).
    pub handler: String,
    /// The status word.
    pub status: String,
    /// The current attempt, 1-based; 0 before the first dispatch.
    pub attempt: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// The step output, `null` until it succeeds or when the answer left it out.
    pub output: Value,
    /// The size in bytes of an output the answer left out (over its 3 MiB budget), 0 when
    /// `output` is whole: `baton run get RUN --step STEP` shows it.
    pub output_omitted_bytes: u64,
    /// The last error, `null` when none.
    pub error: Option<String>,
    /// The steps it waits for.
    pub depends_on: Vec<String>,
    /// The worker that runs (or last ran) it.
    pub worker: Option<String>,
    /// When the current attempt was queued.
    pub dispatched_at: Option<String>,
    /// When a worker started the current attempt.
    pub started_at: Option<String>,
    /// When the step ended.
    pub finished_at: Option<String>,
    /// For a fan-out step: the progress of its elements; `null` otherwise.
    pub items: Option<ItemProgressJson>,
    /// For an emitting step: its child runs, rolled up; `null` otherwise.
    pub emitted: Option<EmitProgressJson>,
    /// For a waiting step: what it waits for, e.g. `event "payment" key "42"`; `null` otherwise.
    pub waiting_for: Option<String>,
    /// For a step limited by a concurrency slot: the slot's pool (`<workflow>/<step>/<key>`);
    /// `null` otherwise.
    pub slot: Option<String>,
    /// The attempts holding the pool's slots now (`<run>/<step>#<attempt>`).
    pub slot_holders: Vec<String>,
    /// For a `workflow` step: the child run, `null` before it starts.
    pub child_run_id: Option<String>,
    /// For a completed `human` step: who completed it; `null` otherwise.
    pub completed_by: Option<String>,
    /// Its last finished attempts (at most 20), oldest first.
    pub attempts: Vec<AttemptJson>,
    /// Finished attempts before those in `attempts`, only counted.
    pub earlier_attempts: u32,
}

/// The progress of a fan-out step's elements, as JSON.
#[derive(Debug, Serialize)]
pub struct ItemProgressJson {
    /// Elements in all.
    pub total: u32,
    /// Elements that succeeded.
    pub succeeded: u32,
    /// Elements that failed.
    pub failed: u32,
    /// Elements dispatched, running or retrying.
    pub in_flight: u32,
}

/// An emitting step's child runs, rolled up, as JSON.
#[derive(Debug, Serialize)]
pub struct EmitProgressJson {
    /// Child runs in all.
    pub total: u32,
    /// Not started yet (not created, or waiting for a run slot).
    pub pending: u32,
    /// Running.
    pub running: u32,
    /// Succeeded.
    pub succeeded: u32,
    /// Failed, cancelled or timed out.
    pub failed: u32,
}

/// A finished attempt as JSON.
#[derive(Debug, Serialize)]
pub struct AttemptJson {
    /// The attempt number, 1-based.
    pub number: u32,
    /// `succeeded`, `failed` or `timed_out`.
    pub outcome: String,
    /// Its error, `null` when none.
    pub error: Option<String>,
    /// The worker that ran it.
    pub worker: Option<String>,
    /// When it started.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// The input it ran with, `null` when none was recorded or the answer left it out.
    pub input: Value,
    /// The size of an input the answer left out (bytes), absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_omitted_bytes: Option<u64>,
    /// Its error's type, `null` when none.
    pub error_type: Option<String>,
    /// Its error's details (a traceback), `null` when none.
    pub error_details: Option<String>,
    /// The log lines it keeps (`baton run logs`).
    pub log_lines: u32,
}

/// A run as JSON.
pub fn run_json(run: &Run) -> RunJson {
    RunJson {
        id: run.id.clone(),
        workflow: run.workflow.clone(),
        version: run.version,
        status: run_status_word(run.status),
        waiting_for: non_empty(run.waiting_for.trim()),
        input: json_value(&run.input_json),
        output: json_value(&run.output_json),
        error: non_empty(&run.error),
        idempotency_key: non_empty(&run.idempotency_key),
        created_at: json_time(run.created_at.as_ref()),
        started_at: json_time(run.started_at.as_ref()),
        finished_at: json_time(run.finished_at.as_ref()),
        parent_run_id: non_empty(&run.parent_run_id),
        parent_step_id: non_empty(&run.parent_step_id),
        child_run_ids: run.child_run_ids.clone(),
        steps: run.steps.iter().map(step_json).collect(),
    }
}

fn step_json(s: &StepRun) -> StepJson {
    StepJson {
        id: s.id.clone(),
        kind: if s.kind.is_empty() { "task" } else { &s.kind }.to_owned(),
        handler: s.handler.clone(),
        status: step_status_word(s.status),
        attempt: s.attempt,
        max_attempts: s.max_attempts,
        output: json_value(&s.output_json),
        output_omitted_bytes: s.output_omitted_bytes,
        error: non_empty(&s.error),
        depends_on: s.depends_on.clone(),
        worker: non_empty(&s.worker),
        dispatched_at: json_time(s.dispatched_at.as_ref()),
        started_at: json_time(s.started_at.as_ref()),
        finished_at: json_time(s.finished_at.as_ref()),
        items: s.items.as_ref().map(|i| ItemProgressJson {
            total: i.total,
            succeeded: i.succeeded,
            failed: i.failed,
            in_flight: i.in_flight,
        }),
        emitted: s.emitted.as_ref().map(|e| EmitProgressJson {
            total: e.total,
            pending: e.pending,
            running: e.running,
            succeeded: e.succeeded,
            failed: e.failed,
        }),
        waiting_for: non_empty(&s.waiting_for),
        slot: non_empty(&s.slot),
        slot_holders: s.slot_holders.clone(),
        child_run_id: non_empty(&s.child_run_id),
        completed_by: non_empty(&s.completed_by),
        attempts: s
            .attempts
            .iter()
            .map(|a| AttemptJson {
                number: a.number,
                outcome: a.outcome.clone(),
                error: non_empty(&a.error),
                worker: non_empty(&a.worker),
                started_at: json_time(a.started_at.as_ref()),
                finished_at: json_time(a.finished_at.as_ref()),
                input: json_value(&a.input_json),
                input_omitted_bytes: (a.input_omitted_bytes > 0).then_some(a.input_omitted_bytes),
                error_type: non_empty(&a.error_type),
                error_details: non_empty(&a.error_details),
                log_lines: a.log_lines,
            })
            .collect(),
        earlier_attempts: s.earlier_attempts,
    }
}

/// The JSON answer to `run list`.
#[derive(Debug, Serialize)]
pub struct RunListJson {
    /// The runs, newest first, without their steps.
    pub runs: Vec<RunJson>,
    /// The token for the next page, `null` on the last one.
    pub next_page_token: Option<String>,
    /// With `--counts`: the matching runs by status word, over all of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_counts: Option<std::collections::BTreeMap<String, u64>>,
}

/// The JSON answer to `run list`.
pub fn run_list_json(runs: &[Run], next_page_token: &str) -> RunListJson {
    RunListJson {
        runs: runs.iter().map(run_json).collect(),
        next_page_token: non_empty(next_page_token),
        status_counts: None,
    }
}

/// The line `run list --counts` adds: `matching runs: 12 (succeeded 9, failed 3)`, statuses in
/// word order.
pub fn status_counts_text(counts: &std::collections::BTreeMap<String, u64>) -> String {
    let total = counts.values().fold(0u64, |a, n| a.saturating_add(*n));
    let parts: Vec<String> = counts.iter().map(|(w, n)| format!("{w} {n}")).collect();
    if parts.is_empty() {
        format!("\nmatching runs: {total}\n")
    } else {
        format!("\nmatching runs: {total} ({})\n", parts.join(", "))
    }
}

/// The JSON answer to `event publish`.
#[derive(Debug, Serialize)]
pub struct PublishJson {
    /// The steps the event was delivered to.
    pub delivered: Vec<StepRefJson>,
    /// True when no step waited and the event was buffered.
    pub buffered: bool,
    /// The runs the event started (workflows started by it whose filter matched).
    pub started_run_ids: Vec<String>,
    /// Workflows whose trigger filter failed over the payload, `<workflow>@<version>: <error>`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trigger_errors: Vec<String>,
}

/// A step of a run, as JSON.
#[derive(Debug, Serialize)]
pub struct StepRefJson {
    /// The run.
    pub run_id: String,
    /// The step.
    pub step_id: String,
}

/// The JSON answer to `event publish`.
pub fn publish_json(resp: &PublishEventResponse) -> PublishJson {
    PublishJson {
        delivered: resp
            .delivered
            .iter()
            .map(|s| StepRefJson {
                run_id: s.run_id.clone(),
                step_id: s.step_id.clone(),
            })
            .collect(),
        buffered: resp.buffered,
        started_run_ids: resp.started_run_ids.clone(),
        trigger_errors: resp
            .trigger_errors
            .iter()
            .map(|e| format!("{}@{}: {}", e.workflow, e.version, e.error))
            .collect(),
    }
}

/// A human task as JSON.
#[derive(Debug, Serialize)]
pub struct HumanTaskJson {
    /// The run it belongs to.
    pub run_id: String,
    /// Its human step.
    pub step_id: String,
    /// The run's workflow.
    pub workflow: String,
    /// The workflow version the run is pinned to.
    pub workflow_version: u32,
    /// The task's title.
    pub title: String,
    /// Its description, `null` when none.
    pub description: Option<String>,
    /// Who may complete it.
    pub assignees: Vec<String>,
    /// The JSON Schema the submitted data must satisfy, `null` when none.
    pub form_schema: Value,
    /// `open`, `completed` or `cancelled`.
    pub status: String,
    /// When the step started waiting for it.
    pub created_at: Option<String>,
    /// Who completed it, `null` while open.
    pub completed_by: Option<String>,
    /// When it was completed, `null` while open.
    pub completed_at: Option<String>,
    /// The submitted data (the step's output), `null` while open.
    pub data: Value,
}

/// A human task as JSON.
pub fn task_json(t: &HumanTask) -> HumanTaskJson {
    HumanTaskJson {
        run_id: t.run_id.clone(),
        step_id: t.step_id.clone(),
        workflow: t.workflow.clone(),
        workflow_version: t.workflow_version,
        title: t.title.clone(),
        description: non_empty(&t.description),
        assignees: t.assignees.clone(),
        form_schema: json_value(&t.form_schema_json),
        status: t.status.clone(),
        created_at: json_time(t.created_at.as_ref()),
        completed_by: non_empty(&t.completed_by),
        completed_at: json_time(t.completed_at.as_ref()),
        data: json_value(&t.data_json),
    }
}

/// A schedule as JSON.
#[derive(Debug, Serialize)]
pub struct ScheduleJson {
    /// The schedule id.
    pub id: String,
    /// The workflow it starts runs of.
    pub workflow: String,
    /// The workflow version, `null` for the latest when each run starts.
    pub workflow_version: Option<u32>,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone the expression is read in.
    pub timezone: String,
    /// The input of every run.
    pub input: Value,
    /// `skip`, `buffer_one`, `allow_all` or `cancel_other`.
    pub overlap: String,
    /// How late a missed tick may still fire, in milliseconds; `null` for the coordinator's default.
    pub catchup_window_ms: Option<u64>,
    /// True while paused.
    pub paused: bool,
    /// `definition` (declared in a workflow definition) or `api`; `null` when not sent.
    pub source: Option<String>,
    /// When it was created.
    pub created_at: Option<String>,
    /// Its next tick, `null` when paused or when the expression has none.
    pub next_tick_at: Option<String>,
    /// The run of its last fire, `null` when none.
    pub last_run_id: Option<String>,
}

/// A schedule as JSON.
pub fn schedule_json(s: &Schedule) -> ScheduleJson {
    ScheduleJson {
        id: s.id.clone(),
        workflow: s.workflow.clone(),
        workflow_version: (s.workflow_version > 0).then_some(s.workflow_version),
        cron: s.cron.clone(),
        timezone: schedule_timezone(s).to_owned(),
        input: json_value(schedule_input(s)),
        overlap: schedule_overlap(s).to_owned(),
        catchup_window_ms: (s.catchup_window_ms > 0).then_some(s.catchup_window_ms),
        paused: s.paused,
        source: non_empty(&s.source),
        created_at: json_time(s.created_at.as_ref()),
        next_tick_at: json_time(s.next_tick_at.as_ref()),
        last_run_id: non_empty(&s.last_run_id),
    }
}

/// The JSON answer to `schedule delete`.
#[derive(Debug, Serialize)]
pub struct ScheduleDeletedJson {
    /// The schedule id.
    pub id: String,
    /// Always true (a failure is an error, not an answer).
    pub deleted: bool,
}

/// The JSON answer to `schedule delete`.
pub fn schedule_deleted_json(id: &str) -> ScheduleDeletedJson {
    ScheduleDeletedJson {
        id: id.to_owned(),
        deleted: true,
    }
}

/// A schedule tick as JSON.
#[derive(Debug, Serialize)]
pub struct ScheduleTickJson {
    /// The schedule.
    pub schedule_id: String,
    /// The tick's time (for a trigger, when it was triggered).
    pub tick_at: Option<String>,
    /// `fired`, `skipped`, `buffered` or `triggered`.
    pub outcome: String,
    /// The run it started, `null` when none.
    pub run_id: Option<String>,
    /// Why (for example, why it was skipped), `null` when nothing to say.
    pub reason: Option<String>,
    /// When it was recorded.
    pub recorded_at: Option<String>,
}

/// A schedule tick as JSON.
pub fn tick_json(t: &ScheduleTick) -> ScheduleTickJson {
    ScheduleTickJson {
        schedule_id: t.schedule_id.clone(),
        tick_at: json_time(t.tick_at.as_ref()),
        outcome: t.outcome.clone(),
        run_id: non_empty(&t.run_id),
        reason: non_empty(&t.reason),
        recorded_at: json_time(t.recorded_at.as_ref()),
    }
}

/// A run event as JSON.
#[derive(Debug, Serialize)]
pub struct EventJson {
    /// The run it belongs to.
    pub run_id: String,
    /// Its position in the run's history.
    pub sequence: String,
    /// When it happened.
    pub time: Option<String>,
    /// `run`, `step` or `custom` (a handler's progress event).
    pub kind: String,
    /// The step, `null` for run events.
    pub step_id: Option<String>,
    /// The step attempt, 0 for run events.
    pub attempt: u32,
    /// The new status word.
    pub status: String,
    /// An error message or other detail, `null` when none.
    pub detail: Option<String>,
    /// For `custom` events: the JSON the handler emitted (absent on other events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// For `log` events: the line a handler logged (absent on other events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogLineJson>,
}

/// One log line as `baton run logs` prints it: `2026-12-06T07:01:02.123Z INFO  charge#2  message`
/// (the time in UTC with milliseconds, the level upper case in 5 columns and a space, `step#attempt`, then the
/// message; a message of several lines keeps them, each after the first indented to the message).
pub fn log_line(line: &LogLine) -> String {
    let time = ts_ms(line.time.as_ref()).map_or_else(|| "-".to_owned(), rfc3339_millis);
    let head = format!(
        "{time} {:<5} {}#{}  ",
        line.level.to_uppercase(),
        line.step_id,
        line.attempt
    );
    let pad = " ".repeat(head.chars().count());
    let message = line.message.trim_end_matches(['\n', '\r']);
    let mut out = head;
    for (i, part) in message.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(&pad);
        }
        out.push_str(part.trim_end_matches('\r'));
    }
    out.trim_end().to_owned()
}

/// A log line as JSON (`baton run logs --output json`, one object per line).
#[derive(Debug, Serialize)]
pub struct LogLineJson {
    /// When the handler wrote it (the worker's clock).
    pub time: Option<String>,
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The step (`<step>#<index>` for a fan-out element).
    pub step_id: String,
    /// The attempt.
    pub attempt: u32,
    /// The message.
    pub message: String,
}

/// A log line as JSON.
pub fn log_line_json(line: &LogLine) -> LogLineJson {
    LogLineJson {
        time: json_time(line.time.as_ref()),
        level: line.level.clone(),
        step_id: line.step_id.clone(),
        attempt: line.attempt,
        message: line.message.clone(),
    }
}

/// A run event as JSON.
pub fn event_json(e: &RunEvent) -> EventJson {
    EventJson {
        run_id: e.run_id.clone(),
        sequence: e.sequence.clone(),
        time: json_time(e.time.as_ref()),
        kind: e.kind.clone(),
        step_id: non_empty(&e.step_id),
        attempt: e.attempt,
        status: e.status.clone(),
        detail: non_empty(&e.detail),
        payload: (!e.payload_json.is_empty()).then(|| json_value(&e.payload_json)),
        log: e.log.as_ref().map(log_line_json),
    }
}

#[cfg(test)]
mod tests;
