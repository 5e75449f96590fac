//! A property test of the whole gRPC API against a real coordinator (a harness `Cluster` with one
//! test worker): random workflow definitions (valid and broken YAML/JSON, huge and odd durations,
//! names with `:`, `|` and unicode, deep or long CEL, self-referencing workflows, huge numbers) and
//! random calls of every RPC (runs, events, schedules, human tasks, the worker protocol with random
//! fences, and raw bytes that are not a valid protobuf message). After every call the answer must be
//! OK or a documented code (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION) whose
//! message names a field and is at most 1 KiB, within [`CALL_LIMIT`]; after every case the coordinator
//! process must be alive and gRPC health must answer SERVING.
//!
//! Size of a run: `BATON_FUZZ_CASES` cases (default 1000) within `BATON_FUZZ_SECONDS` seconds (default
//! 100; cases after that are skipped, so a loaded machine runs fewer, never longer). Failing inputs
//! are kept as seeds in `tests/tests/api_fuzz.proptest-regressions` and tried first on every run.
//! When a coordinator dies, the next case (and every shrinking step) gets a fresh cluster, so that
//! shrinking judges each input on a live coordinator. `BATON_FUZZ_KEEP_GOING=1` surveys instead:
//! every failing case is printed as it is (not shrunk) and the test fails at the end.

use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use baton_shared::proto::{
    self, CancelRunRequest, CompleteHumanTaskRequest, CreateScheduleRequest, EmitEventRequest, GetRunRequest,
    GetWorkflowRequest, HeartbeatRequest, ListRunsRequest, PublishEventRequest, RegisterWorkflowRequest,
    ReportResultRequest, RerunRunRequest, RetryRunRequest, StartStepRequest, StepFailure, SubmitRunRequest, Suspend,
    report_result_request,
};
use baton_tests::{Cluster, TEST_WORKER_HANDLERS};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use prost::bytes::{Buf as _, BufMut as _};
use serde_json::{Value, json};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// Longest answer time of one call: anything slower means a caller can slow the coordinator down.
const CALL_LIMIT: Duration = Duration::from_secs(15);
/// Longest error message, the documented bound (2 KiB): each echoed caller value is cut to a few
/// hundred bytes, and a definition's error lists its problems only up to this length.
const MAX_MESSAGE_BYTES: usize = baton_shared::limits::MAX_ERROR_MESSAGE_BYTES;
/// Where failing seeds are kept (tried first on every run).
const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api_fuzz.proptest-regressions");

/// The base workflow every cluster has: a long-running task step (a current attempt for the worker
/// protocol calls to aim at), an open human task and a step waiting for an event.
const BASE: &str = r#"
name: fz-base
version: 1
steps:
  - {id: work, handler: slow, timeout: 1h}
  - {id: approve, human: {title: Approve, assignees: [ann], form: {type: object}}}
  - {id: pay, wait_for_event: {event: paid, key: input.order}}
"#;

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// A string from the generators, shown cut to 120 characters (with its length) when a case is
/// printed, since some are a mebibyte long.
#[derive(Clone, PartialEq)]
struct Text(String);

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.chars().count() <= 120 {
            write!(f, "{:?}", self.0)
        } else {
            let head: String = self.0.chars().take(120).collect();
            write!(f, "{head:?}… ({} bytes)", self.0.len())
        }
    }
}

/// A value that is either literal or taken from what the cluster has (a registered workflow, a
/// run that exists), picked by index when the call is made.
#[derive(Clone, Debug)]
enum Pick {
    Lit(Text),
    Known(usize),
}

/// Odd strings: empty, plain, with `:` and `|`, unicode, control characters, internal-key look-alikes,
/// very long.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z][a-z0-9_-]{0,12}",
        2 => Just(String::new()),
        2 => "[a-z]{1,5}[:|][a-z:|{}]{0,8}",
        2 => "\\PC{1,16}",
        1 => "[\\x00-\\x1f]{1,4}",
        1 => prop::sample::select(vec![
            "x:registered", "registered", "versions", "*", "?", "..", "a b", "é", "日本語", "🦀",
            "\u{202e}abc", "a\u{200b}b", "%2f", "{tag}", "baton:{x}:y", "\\", "\"", "'", "a\nb",
        ])
        .prop_map(String::from),
        1 => (1usize..=1_100_000).prop_map(|n| "a".repeat(n)),
        1 => (1usize..=3_000).prop_map(|n| "é".repeat(n)),
    ]
}

fn text_t() -> impl Strategy<Value = Text> {
    text().prop_map(Text)
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![3 => any::<usize>().prop_map(Pick::Known), 1 => text_t().prop_map(Pick::Lit)]
}

/// Duration texts: ordinary, at and over every bound, overflowing `u64` seconds and `Duration`,
/// negative, fractional, unparsable.
fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[0-9]{1,3}(ms|s|m|h)",
        4 => prop::sample::select(vec![
            "18446744073709551615s", "18446744073709551615ms", "9223372036854775807ms",
            "9223372036854776s", "99999999999999999999999h", "3650days", "3651days", "1day",
            "25h", "31days", "0s", "0ms", "-1s", "1.5s", "1e400s", "1y", "1000y", "", "s", "1 s 2",
        ])
        .prop_map(String::from),
        1 => any::<u64>().prop_map(|n| format!("{n}s")),
        1 => any::<u64>().prop_map(|n| format!("{n}ms")),
        1 => text(),
    ]
}

/// Number tokens as written in a document (raw, so that JSON can carry what `serde_json` cannot).
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (0u32..10).prop_map(|n| n.to_string()),
        2 => prop::sample::select(vec![
            "0", "-1", "4294967295", "4294967296", "18446744073709551616", "1e30", "1.5", "1e400",
            "-1e400", "99999999999999999999999999999", "\"3\"", "null", "true",
        ])
        .prop_map(String::from),
        1 => any::<u32>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
    ]
}

/// CEL sources: plain, long (`1+1+...`, `false || ...`), deeply nested, quadratic comprehensions,
/// and garbage.
fn cel() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "true", "false", "input.x > 1", "has(input.a)", "input.order", "size(input) > 0",
            "[1, 2, 3]", "input.l", "input.items", "string(input.x)", "1 / 0 == 1", "input.missing.deeper",
            "size(input.l.map(x, input.l.map(y, x))) > 0", "timestamp('2020-01-01T00:00:00Z')",
            "'9999-12-31T23:59:59Z'", "duration('87600000h') > duration('1s')",
        ])
        .prop_map(String::from),
        2 => (1usize..8_000).prop_map(|n| format!("{} > 0", vec!["1"; n].join("+"))),
        1 => (1usize..20_000).prop_map(|n| vec!["false"; n].join(" || ")),
        1 => (1usize..400).prop_map(|d| format!("{}1{} > 0", "(".repeat(d), ")".repeat(d))),
        1 => (1usize..400).prop_map(|d| format!("{}true", "!".repeat(d))),
        1 => "[a-z.()+*&|!<>= 0-9\"'\\[\\]]{0,40}",
        1 => text(),
    ]
}

/// Run inputs, payloads and form data as JSON text: small objects, long lists (for quadratic CEL),
/// huge numbers, deep nesting, broken JSON.
fn json_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "{}", "{\"x\": 2}", "{\"a\": 1, \"order\": \"o-1\"}", "{\"succeed_on_attempt\": 3}",
            "{\"fatal\": true}", "{\"ms\": 1}", "null", "[]", "\"s\"", "{\"x\": 1e400}",
            "{\"x\": 123456789012345678901234567890}", "{\"x\": -0}", "{\"items\": [1, 2, 3]}", "",
            "{", "{\"a\":}", "{\"a\": 1, \"a\": 2}", "\u{feff}{}", "{\"é🦀\": \"\\u0000\"}",
        ])
        .prop_map(String::from),
        1 => (0usize..2_000).prop_map(|n| json!({"l": (0..n).collect::<Vec<_>>(), "x": 3}).to_string()),
        1 => (0usize..5_000).prop_map(|n| json!({"items": (0..n).collect::<Vec<_>>()}).to_string()),
        1 => (1usize..3_000).prop_map(|d| format!("{}1{}", "[".repeat(d), "]".repeat(d))),
        1 => (1usize..300_000).prop_map(|n| json!({"big": "x".repeat(n)}).to_string()),
        1 => text(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

/// What a generated step does.
#[derive(Clone, Debug)]
enum Kind {
    Task(Text),
    FanOut(String),
    Sleep(String),
    SleepUntil(String),
    Wait {
        event: Text,
        key: String,
        timeout: Option<String>,
        on_timeout: Text,
    },
    Human {
        title: Text,
        assignees: Vec<Text>,
    },
    /// A child run: of the workflow itself (`None`), or of a name.
    Child(Option<Pick>),
    Emit {
        workflow: Option<Pick>,
        items: String,
    },
}

#[derive(Clone, Debug)]
struct StepGen {
    id: Option<Text>,
    kind: Kind,
    timeout: Option<String>,
    heartbeat: Option<String>,
    retry: Option<(String, String, String, String)>,
    when: Option<String>,
    deps: Vec<usize>,
    concurrency: Option<(String, String)>,
    rate_limit: Option<(String, String)>,
}

#[derive(Clone, Debug)]
struct DefGen {
    name: Option<Text>,
    version: String,
    steps: Vec<StepGen>,
    timeout: Option<String>,
    schedule: Option<(Text, Option<String>, Text)>,
    on_event: Option<(Text, String)>,
    max_concurrent_runs: Option<(String, String)>,
    pretty: bool,
}

/// A definition document, and (for a structured one) its name, so that later calls can use it.
#[derive(Clone, Debug)]
enum Definition {
    Structured(Box<DefGen>),
    Raw(Text),
}

fn handler() -> impl Strategy<Value = Text> {
    prop_oneof![
        6 => prop::sample::select(vec!["echo", "fail", "slow"]).prop_map(|h| Text(h.into())),
        1 => text_t(),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        6 => handler().prop_map(Kind::Task),
        1 => cel().prop_map(Kind::FanOut),
        2 => duration().prop_map(Kind::Sleep),
        1 => cel().prop_map(Kind::SleepUntil),
        2 => (text_t(), cel(), prop::option::of(duration()), prop_oneof![
                3 => Just(Text("fail".into())), 3 => Just(Text("skip".into())), 1 => text_t()])
            .prop_map(|(event, key, timeout, on_timeout)| Kind::Wait { event, key, timeout, on_timeout }),
        1 => (text_t(), prop::collection::vec(text_t(), 0..3))
            .prop_map(|(title, assignees)| Kind::Human { title, assignees }),
        2 => prop::option::of(pick()).prop_map(Kind::Child),
        1 => (prop::option::of(pick()), cel()).prop_map(|(workflow, items)| Kind::Emit { workflow, items }),
    ]
}

fn step() -> impl Strategy<Value = StepGen> {
    (
        prop::option::weighted(0.15, text_t()),
        kind(),
        prop::option::weighted(0.4, duration()),
        prop::option::weighted(0.1, duration()),
        prop::option::weighted(0.3, (number(), duration(), number(), duration())),
        prop::option::weighted(0.3, cel()),
        prop::collection::vec(0usize..6, 0..3),
        prop::option::weighted(0.1, (number(), cel())),
        prop::option::weighted(0.1, (number(), duration())),
    )
        .prop_map(
            |(id, kind, timeout, heartbeat, retry, when, deps, concurrency, rate_limit)| StepGen {
                id,
                kind,
                timeout,
                heartbeat,
                retry,
                when,
                deps,
                concurrency,
                rate_limit,
            },
        )
}

fn definition() -> impl Strategy<Value = Definition> {
    let structured = (
        prop::option::weighted(0.3, text_t()),
        prop_oneof![4 => Just("1".to_string()), 1 => number()],
        prop::collection::vec(step(), 1..6),
        prop::option::weighted(0.2, duration()),
        prop::option::weighted(
            0.1,
            (
                prop_oneof![
                    Just(Text("* * * * * *".into())),
                    Just(Text("0 0 31 2 *".into())),
                    Just(Text("61 * * * *".into())),
                    Just(Text("@yearly".into())),
                    text_t()
                ],
                prop::option::of(duration()),
                prop_oneof![Just(Text("skip".into())), Just(Text("allow_all".into())), text_t()],
            ),
        ),
        prop::option::weighted(0.1, (text_t(), cel())),
        prop::option::weighted(0.1, (number(), cel())),
        any::<bool>(),
    )
        .prop_map(
            |(name, version, steps, timeout, schedule, on_event, max_concurrent_runs, pretty)| {
                Definition::Structured(Box::new(DefGen {
                    name,
                    version,
                    steps,
                    timeout,
                    schedule,
                    on_event,
                    max_concurrent_runs,
                    pretty,
                }))
            },
        );
    let raw = prop_oneof![
        prop::sample::select(vec![
            "", "name: [unclosed", "\t- a", "{", "[]", "null", "name: a\nversion: 1\nsteps: []\n",
            "name: a\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n---\nname: b\n",
            "name: !!binary aGVsbG8=\nversion: 1\nsteps: []\n",
            "name: &n a\nversion: 1\nsteps:\n  - {id: *n, handler: *n}\n",
            "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n",
            "name: a\nversion: 99999999999999999999999\nsteps:\n  - {id: a, handler: echo}\n",
            "{\"name\": \"a\", \"version\": 1e400, \"steps\": [{\"id\": \"a\", \"handler\": \"echo\"}]}",
        ])
        .prop_map(|s| Text(s.into())),
        (1usize..5_000).prop_map(|d| Text(format!("{}1{}", "[".repeat(d), "]".repeat(d)))),
        (1usize..5_000).prop_map(|d| Text(format!("a:{}", " {b:".repeat(d)))),
        (1usize..2_000).prop_map(|n| Text(format!(
            "name: many\nversion: 1\nsteps:\n{}",
            (0..n).map(|i| format!("  - {{id: s{i}, handler: echo}}\n")).collect::<String>()
        ))),
        text_t(),
    ];
    prop_oneof![8 => structured, 1 => raw.prop_map(Definition::Raw)]
}

/// A placeholder for a raw token in a JSON document, replaced after serialization.
struct Raw(Vec<String>);

impl Raw {
    fn put(&mut self, token: &str) -> Value {
        self.0.push(token.to_owned());
        Value::String(format!("@@RAW{}@@", self.0.len() - 1))
    }
    fn fill(&self, mut doc: String) -> String {
        for (i, token) in self.0.iter().enumerate().rev() {
            doc = doc.replace(&format!("\"@@RAW{i}@@\""), token);
        }
        doc
    }
}

impl DefGen {
    /// The handler names the document uses.
    fn handlers(&self) -> Vec<String> {
        let mut h = vec!["echo".to_string()];
        for s in &self.steps {
            if let Kind::Task(t) = &s.kind {
                h.push(t.0.clone());
            }
        }
        h
    }

    /// The document (JSON, which is YAML) and the workflow's name.
    fn render(&self, serial: u64, known: &dyn Fn(&Pick) -> String) -> (String, String) {
        let name = self
            .name
            .as_ref()
            .map(|t| t.0.clone())
            .unwrap_or_else(|| format!("fz-{serial}"));
        let mut raw = Raw(Vec::new());
        let ids: Vec<String> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| s.id.as_ref().map(|t| t.0.clone()).unwrap_or_else(|| format!("s{i}")))
            .collect();
        let mut steps = Vec::new();
        for (i, s) in self.steps.iter().enumerate() {
            let mut o = serde_json::Map::new();
            o.insert("id".into(), json!(ids[i]));
            match &s.kind {
                Kind::Task(h) => {
                    o.insert("handler".into(), json!(h.0));
                }
                Kind::FanOut(items) => {
                    o.insert("handler".into(), json!("echo"));
                    o.insert("for_each".into(), json!(items));
                }
                Kind::Sleep(d) => {
                    o.insert("sleep".into(), json!(d));
                }
                Kind::SleepUntil(at) => {
                    o.insert("sleep_until".into(), json!(at));
                }
                Kind::Wait {
                    event,
                    key,
                    timeout,
                    on_timeout,
                } => {
                    let mut w = json!({"event": event.0, "key": key, "on_timeout": on_timeout.0});
                    if let Some(t) = timeout {
                        w["timeout"] = json!(t);
                    }
                    o.insert("wait_for_event".into(), w);
                }
                Kind::Human { title, assignees } => {
                    let a: Vec<&str> = assignees.iter().map(|t| t.0.as_str()).collect();
                    o.insert("human".into(), json!({"title": title.0, "assignees": a}));
                }
                Kind::Child(target) => {
                    let child = target.as_ref().map(known).unwrap_or_else(|| name.clone());
                    o.insert("workflow".into(), json!({"name": child}));
                }
                Kind::Emit { workflow, items } => {
                    let child = workflow.as_ref().map(known).unwrap_or_else(|| name.clone());
                    o.insert("handler".into(), json!("echo"));
                    o.insert(
                        "emit".into(),
                        json!({"workflow": child, "items": items, "key": "string(index)"}),
                    );
                }
            }
            if let Some(t) = &s.timeout {
                o.insert("timeout".into(), json!(t));
            }
            if let Some(t) = &s.heartbeat {
                o.insert("heartbeat_timeout".into(), json!(t));
            }
            if let Some((attempts, initial, coefficient, max)) = &s.retry {
                o.insert(
                    "retry".into(),
                    json!({"max_attempts": raw.put(attempts), "initial_interval": initial,
                           "backoff_coefficient": raw.put(coefficient), "max_interval": max}),
                );
            }
            if let Some(w) = &s.when {
                o.insert("when".into(), json!(w));
            }
            let deps: Vec<&str> = s.deps.iter().filter_map(|d| ids.get(*d).map(String::as_str)).collect();
            if !deps.is_empty() {
                o.insert("depends_on".into(), json!(deps));
            }
            if let Some((limit, key)) = &s.concurrency {
                o.insert("concurrency".into(), json!({"limit": raw.put(limit), "key": key}));
            }
            if let Some((limit, period)) = &s.rate_limit {
                o.insert("rate_limit".into(), json!({"limit": raw.put(limit), "period": period}));
            }
            steps.push(Value::Object(o));
        }
        let mut doc = json!({"name": name, "version": raw.put(&self.version), "steps": steps});
        if let Some(t) = &self.timeout {
            doc["timeout"] = json!(t);
        }
        if let Some((cron, window, overlap)) = &self.schedule {
            let mut s = json!({"cron": cron.0, "overlap": overlap.0});
            if let Some(w) = window {
                s["catchup_window"] = json!(w);
            }
            doc["schedules"] = json!([s]);
        }
        if let Some((event, filter)) = &self.on_event {
            doc["on"] = json!({"event": event.0, "filter": filter});
        }
        if let Some((limit, key)) = &self.max_concurrent_runs {
            doc["max_concurrent_runs"] = raw.put(limit);
            doc["concurrency_key"] = json!(key);
        }
        let text = if self.pretty {
            serde_json::to_string_pretty(&doc)
        } else {
            serde_json::to_string(&doc)
        }
        .unwrap_or_default();
        (raw.fill(text), name)
    }
}

// ---------------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------------

/// What a worker reports.
#[derive(Clone, Debug)]
enum Outcome {
    Output(Text),
    Failure {
        message: Text,
        error_type: Text,
        retryable: bool,
    },
    Suspend {
        event: Text,
        key: Text,
        timeout_ms: u64,
    },
    Nothing,
}

/// The worker-protocol fields of a call (fences and identity).
#[derive(Clone, Debug)]
struct Fence {
    run: Pick,
    step: Text,
    attempt: u32,
    worker: Text,
    workflow: Pick,
    version: u32,
}

/// One API call.
#[derive(Clone, Debug)]
enum Call {
    Register(Definition),
    GetWorkflow {
        name: Pick,
        version: u32,
    },
    Submit {
        workflow: Pick,
        version: u32,
        input: Text,
        key: Text,
    },
    GetRun {
        run: Pick,
    },
    ListRuns {
        workflow: Text,
        status: i32,
        limit: u32,
        page_token: Text,
        parent: Text,
    },
    Cancel {
        run: Pick,
        reason: Text,
    },
    Retry {
        run: Pick,
    },
    Rerun {
        run: Pick,
        from_step: Text,
        input: Text,
    },
    Publish {
        name: Text,
        key: Text,
        payload: Text,
    },
    CreateSchedule {
        id: Text,
        workflow: Pick,
        version: u32,
        cron: Text,
        timezone: Text,
        input: Text,
        overlap: Text,
        window_ms: u64,
    },
    Complete {
        run: Pick,
        step: Text,
        user: Text,
        data: Text,
    },
    StartStep(Fence),
    Report {
        fence: Fence,
        outcome: Outcome,
        attempt_base: u32,
        /// An eager report (`start`), with the input echoed.
        start: Option<Text>,
    },
    Heartbeat(Fence),
    Emit {
        fence: Fence,
        payload: Text,
    },
    /// Bytes that are (mostly) not a valid protobuf message, sent to a real method.
    RawBytes {
        method: &'static str,
        bytes: Vec<u8>,
    },
}

fn small_u32() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0u32..4, 1 => Just(u32::MAX), 1 => any::<u32>()]
}

fn step_name() -> impl Strategy<Value = Text> {
    prop_oneof![
        3 => prop::sample::select(vec!["work", "approve", "pay", "s0", "s1"]).prop_map(|s| Text(s.into())),
        1 => text_t(),
    ]
}

fn fence() -> impl Strategy<Value = Fence> {
    (pick(), step_name(), small_u32(), text_t(), pick(), small_u32()).prop_map(
        |(run, step, attempt, worker, workflow, version)| Fence {
            run,
            step,
            attempt,
            worker,
            workflow,
            version,
        },
    )
}

const METHODS: &[&str] = &[
    "/baton.v1.WorkflowService/RegisterWorkflow",
    "/baton.v1.WorkflowService/GetWorkflow",
    "/baton.v1.RunService/SubmitRun",
    "/baton.v1.RunService/GetRun",
    "/baton.v1.RunService/ListRuns",
    "/baton.v1.RunService/CancelRun",
    "/baton.v1.EventService/PublishEvent",
    "/baton.v1.ScheduleService/CreateSchedule",
    "/baton.v1.HumanTaskService/CompleteHumanTask",
    "/baton.v1.WorkerService/StartStep",
    "/baton.v1.WorkerService/ReportResult",
];

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        6 => definition().prop_map(Call::Register),
        1 => (pick(), small_u32()).prop_map(|(name, version)| Call::GetWorkflow { name, version }),
        6 => (pick(), prop_oneof![4 => Just(0u32), 1 => small_u32()], json_text(), prop_oneof![3 => Just(String::new()), 1 => text()])
            .prop_map(|(workflow, version, input, key)| Call::Submit { workflow, version, input: Text(input), key: Text(key) }),
        2 => pick().prop_map(|run| Call::GetRun { run }),
        2 => (prop_oneof![2 => Just(String::new()), 1 => text()], prop_oneof![3 => 0i32..7, 1 => any::<i32>()], small_u32(),
              prop_oneof![2 => Just(String::new()), 2 => text()], prop_oneof![3 => Just(String::new()), 1 => text()])
            .prop_map(|(workflow, status, limit, page_token, parent)| Call::ListRuns {
                workflow: Text(workflow), status, limit, page_token: Text(page_token), parent: Text(parent) }),
        1 => (pick(), text_t()).prop_map(|(run, reason)| Call::Cancel { run, reason }),
        1 => pick().prop_map(|run| Call::Retry { run }),
        1 => (pick(), step_name(), json_text()).prop_map(|(run, from_step, input)| Call::Rerun { run, from_step, input: Text(input) }),
        3 => (text_t(), text_t(), json_text()).prop_map(|(name, key, payload)| Call::Publish { name, key, payload: Text(payload) }),
        2 => (text_t(), pick(), small_u32(),
              prop_oneof![
                  3 => prop::sample::select(vec!["* * * * *", "*/5 * * * * *", "0 0 31 2 *", "61 * * * *", "",
                      "@yearly", "* * * * * * *", "0 0 29 2 *", "L * * * *"]).prop_map(String::from),
                  1 => text()],
              prop_oneof![3 => prop::sample::select(vec!["", "UTC", "Europe/Paris", "Mars/Olympus"]).prop_map(String::from), 1 => text()],
              json_text(),
              prop_oneof![3 => prop::sample::select(vec!["", "skip", "buffer_one", "allow_all", "cancel_other"]).prop_map(String::from), 1 => text()],
              prop_oneof![2 => Just(0u64), 1 => Just(1u64 << 63), 1 => Just(u64::MAX), 1 => Just(30 * 86_400_000u64 + 1), 2 => any::<u64>()])
            .prop_map(|(id, workflow, version, cron, timezone, input, overlap, window_ms)| Call::CreateSchedule {
                id, workflow, version, cron: Text(cron), timezone: Text(timezone), input: Text(input), overlap: Text(overlap), window_ms }),
        2 => (pick(), step_name(), text_t(), json_text())
            .prop_map(|(run, step, user, data)| Call::Complete { run, step, user, data: Text(data) }),
        2 => fence().prop_map(Call::StartStep),
        3 => (fence(), prop_oneof![
                  2 => json_text().prop_map(|o| Outcome::Output(Text(o))),
                  2 => (text_t(), text_t(), any::<bool>()).prop_map(|(message, error_type, retryable)| Outcome::Failure { message, error_type, retryable }),
                  1 => (text_t(), text_t(), prop_oneof![Just(0u64), Just(u64::MAX), Just(1u64 << 63), any::<u64>()])
                      .prop_map(|(event, key, timeout_ms)| Outcome::Suspend { event, key, timeout_ms }),
                  1 => Just(Outcome::Nothing)],
              small_u32(),
              prop_oneof![3 => Just(None), 1 => json_text().prop_map(|t| Some(Text(t)))])
            .prop_map(|(fence, outcome, attempt_base, start)| Call::Report { fence, outcome, attempt_base, start }),
        1 => fence().prop_map(Call::Heartbeat),
        1 => (fence(), json_text()).prop_map(|(fence, payload)| Call::Emit { fence, payload: Text(payload) }),
        2 => (prop::sample::select(METHODS), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(method, bytes)| Call::RawBytes { method, bytes }),
    ]
}

// ---------------------------------------------------------------------------------------------
// The cluster under test
// ---------------------------------------------------------------------------------------------

/// A live cluster, what it holds, and what the test registered in it.
struct Target {
    cluster: Cluster,
    /// A connection of this case's own (a fresh one per case: an answer that breaks the HTTP/2
    /// connection must not fail the next case's calls).
    channel: Channel,
    coordinator_pid: u32,
    workflows: Vec<String>,
    runs: Vec<String>,
    handlers: Vec<String>,
    serial: u64,
}

impl Target {
    /// Starts a cluster with one test worker, waits for health SERVING, registers the base
    /// workflow and starts one run of it (its `work` step runs for ten minutes).
    async fn start() -> Result<Self, String> {
        let mut cluster = Cluster::start("api-fuzz", &[]).await;
        cluster.spawn_worker("w1", 8);
        let channel = connect(&cluster.addr)?;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if serving(&channel).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err("the coordinator did not answer health SERVING within 90 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let coordinator_pid = find_coordinator(&cluster.namespace)
            .ok_or_else(|| format!("no coordinator process of namespace {}", cluster.namespace))?;
        cluster.register(BASE).await;
        let run = cluster.submit("fz-base", json!({"ms": 600_000, "order": "o-1"})).await;
        Ok(Self {
            cluster,
            channel,
            coordinator_pid,
            workflows: vec!["fz-base".into()],
            runs: vec![run],
            handlers: Vec::new(),
            serial: 0,
        })
    }

    fn known_workflow(&self, p: &Pick) -> String {
        match p {
            Pick::Lit(t) => t.0.clone(),
            Pick::Known(i) => self.workflows[i % self.workflows.len()].clone(),
        }
    }

    fn known_run(&self, p: &Pick) -> String {
        match p {
            Pick::Lit(t) => t.0.clone(),
            Pick::Known(i) => self.runs[i % self.runs.len()].clone(),
        }
    }

    /// Stops the processes, removes the queues of the handlers the test's definitions declared,
    /// then drops the cluster (which removes the rest).
    fn finish(mut self) {
        self.cluster.stop_worker(0, true);
        self.cluster.stop_coordinator(true);
        let namespace = self.cluster.namespace.clone();
        let handlers: Vec<String> = self
            .handlers
            .iter()
            .filter(|h| !TEST_WORKER_HANDLERS.contains(&h.as_str()))
            .cloned()
            .collect();
        if !handlers.is_empty() {
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    rt.block_on(async {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(30),
                            baton_tests::cleanup_namespace(&namespace, &handlers),
                        )
                        .await;
                    });
                }
            })
            .join();
        }
        drop(self.cluster);
    }
}

/// A new (lazily connecting) channel to `addr`.
fn connect(addr: &str) -> Result<Channel, String> {
    Ok(Channel::from_shared(addr.to_owned())
        .map_err(|e| format!("address {addr}: {e}"))?
        .connect_lazy())
}

/// The pid of the coordinator process of `namespace` (a `test-coordinator` whose environment has
/// `BATON_NAMESPACE=<namespace>`).
fn find_coordinator(namespace: &str) -> Option<u32> {
    let wanted = format!("BATON_NAMESPACE={namespace}");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains("test-coordinator") {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if environ.split(|b| *b == 0).any(|kv| kv == wanted.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// Whether process `pid` is alive (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: `pid (comm) S ...`.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// gRPC health of the whole server (service `""`): Ok when SERVING.
async fn serving(channel: &Channel) -> Result<(), String> {
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        HealthClient::new(channel.clone()).check(HealthCheckRequest { service: String::new() }),
    )
    .await
    .map_err(|_| "health check did not answer within 10 s".to_string())?
    .map_err(|s| format!("health check failed: {:?}: {}", s.code(), cut(s.message())))?;
    let status = answer.into_inner().status;
    if status == ServingStatus::Serving as i32 {
        Ok(())
    } else {
        Err(format!(
            "health answers {:?}, not SERVING",
            ServingStatus::try_from(status)
        ))
    }
}

/// Text cut to 300 bytes for a failure message.
fn cut(s: &str) -> String {
    baton_shared::limits::echo(s)
}

// ---------------------------------------------------------------------------------------------
// Checking answers
// ---------------------------------------------------------------------------------------------

/// The fields a message may name, per RPC (the request's fields and the names the API documents
/// for them). `None`: any field path of a workflow definition (`steps[1].timeout`).
type Fields = Option<&'static [&'static str]>;

const RUN_FIELDS: &[&str] = &[
    "run_id",
    "reason",
    "from_step",
    "input_json",
    "input",
    "steps",
    "concurrency_key",
    "timeout",
];
const WORKER_FIELDS: &[&str] = &[
    "run_id",
    "step_id",
    "attempt",
    "worker_id",
    "workflow",
    "workflow_version",
    "output_json",
    "output",
    "outcome",
    "failure",
    "suspend",
    "attempt_base",
    "start",
    "input_json",
    "payload_json",
    "payload",
];

/// Whether `message` names a field: it starts with a field path (`name: ...`,
/// `steps[1].retry.initial_interval: ...`) or several (`name, key: ...`), the first part of each
/// one of `fields` when given.
fn names_a_field(message: &str, fields: Fields) -> bool {
    let Some((head, _)) = message.split_once(':') else {
        return false;
    };
    head.split(", ").all(|path| {
        let path_like = !path.is_empty()
            && path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']' | '-'));
        path_like && fields.is_none_or(|fields| fields.contains(&path.split(['.', '[']).next().unwrap_or("")))
    })
}

/// Checks one answer: in time, and OK or a documented code with a short message naming a field.
/// Answers the response when OK.
async fn checked<T>(
    what: &str,
    fields: Fields,
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<Option<T>, String> {
    let started = Instant::now();
    let answer = tokio::time::timeout(CALL_LIMIT, call)
        .await
        .map_err(|_| format!("{what}: no answer within {CALL_LIMIT:?} (the coordinator is wedged or slowed down)"))?;
    let status = match answer {
        Ok(r) => return Ok(Some(r.into_inner())),
        Err(status) => status,
    };
    let code = status.code();
    let message = status.message();
    let documented = matches!(
        code,
        Code::InvalidArgument | Code::NotFound | Code::AlreadyExists | Code::FailedPrecondition
    );
    if !documented {
        return Err(format!(
            "{what}: undocumented code {code:?} after {:?}: {}",
            started.elapsed(),
            cut(message)
        ));
    }
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "{what}: {code:?} message of {} bytes (at most {MAX_MESSAGE_BYTES}): {}",
            message.len(),
            cut(message)
        ));
    }
    if !names_a_field(message, fields) {
        return Err(format!("{what}: {code:?} message names no field: {}", cut(message)));
    }
    Ok(None)
}

/// Whether a page token is garbage in any token format (characters no token uses, or very long):
/// it must be refused, not read as "from the start" (defect 12).
fn bogus_page_token(token: &str) -> bool {
    token.len() > 512
        || token
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | ':' | '.' | '+' | '/' | '~')))
}

/// Sends raw bytes as the request message of `method`.
#[derive(Clone, Copy)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

// ---------------------------------------------------------------------------------------------
// Making calls
// ---------------------------------------------------------------------------------------------

fn fence_parts(t: &Target, f: &Fence) -> (String, String, u32, String, String, u32) {
    (
        t.known_run(&f.run),
        f.step.0.clone(),
        f.attempt,
        f.worker.0.clone(),
        t.known_workflow(&f.workflow),
        f.version,
    )
}

/// Makes one call and checks its answer; records what it created for later calls.
async fn make(t: &mut Target, call: &Call) -> Result<(), String> {
    let ch = t.channel.clone();
    let mut workflows = proto::workflow_service_client::WorkflowServiceClient::new(ch.clone());
    let mut runs = proto::run_service_client::RunServiceClient::new(ch.clone());
    let mut worker = proto::worker_service_client::WorkerServiceClient::new(ch.clone());
    match call {
        Call::Register(def) => {
            let (doc, name) = match def {
                Definition::Structured(d) => {
                    t.serial += 1;
                    let (doc, name) = d.render(t.serial, &|p| t.known_workflow(p));
                    (doc, Some(name))
                }
                Definition::Raw(text) => (text.0.clone(), None),
            };
            let answer = checked(
                "RegisterWorkflow",
                None,
                workflows.register_workflow(RegisterWorkflowRequest {
                    definition: doc.clone(),
                }),
            )
            .await?;
            if answer.is_some() {
                // The handlers whose queues the coordinator declared, for the clean-up (read from
                // the generator, not by parsing the document again in this process).
                match def {
                    Definition::Structured(d) => t.handlers.extend(d.handlers()),
                    // A raw document that registered is small and shallow (the fuzz thread has a
                    // large stack anyway).
                    Definition::Raw(_) => {
                        if let Ok(parsed) = baton_shared::definition::WorkflowDefinition::parse(&doc) {
                            t.handlers.extend(parsed.handlers());
                        }
                    }
                }
                if let Some(name) = name {
                    t.workflows.push(name);
                }
            }
        }
        Call::GetWorkflow { name, version } => {
            let request = GetWorkflowRequest {
                name: t.known_workflow(name),
                version: *version,
            };
            checked(
                "GetWorkflow",
                Some(&["name", "version", "workflow"]),
                workflows.get_workflow(request),
            )
            .await?;
        }
        Call::Submit {
            workflow,
            version,
            input,
            key,
        } => {
            let request = SubmitRunRequest {
                workflow: t.known_workflow(workflow),
                version: *version,
                input_json: input.0.clone(),
                idempotency_key: key.0.clone(),
            };
            // A definition path (`steps[0].when: ...`) names a field too: what the submit evaluated.
            let fields: &[&str] = &[
                "workflow",
                "version",
                "input_json",
                "input",
                "idempotency_key",
                "steps",
                "concurrency_key",
                "max_concurrent_runs",
                "timeout",
            ];
            if let Some(r) = checked("SubmitRun", Some(fields), runs.submit_run(request)).await? {
                t.runs.push(r.run_id);
            }
        }
        Call::GetRun { run } => {
            let request = GetRunRequest {
                run_id: t.known_run(run),
                ..Default::default()
            };
            checked("GetRun", Some(&["run_id"]), runs.get_run(request)).await?;
        }
        Call::ListRuns {
            workflow,
            status,
            limit,
            page_token,
            parent,
        } => {
            let request = ListRunsRequest {
                workflow: workflow.0.clone(),
                status: *status,
                limit: *limit,
                page_token: page_token.0.clone(),
                parent_run_id: parent.0.clone(),
                ..Default::default()
            };
            let fields: &[&str] = &["workflow", "status", "limit", "page_token", "parent_run_id"];
            let answer = checked("ListRuns", Some(fields), runs.list_runs(request)).await?;
            if answer.is_some() && bogus_page_token(&page_token.0) {
                return Err(format!(
                    "ListRuns: page_token {} was accepted (must be INVALID_ARGUMENT naming page_token)",
                    cut(&page_token.0)
                ));
            }
        }
        Call::Cancel { run, reason } => {
            let request = CancelRunRequest {
                run_id: t.known_run(run),
                reason: reason.0.clone(),
            };
            checked("CancelRun", Some(RUN_FIELDS), runs.cancel_run(request)).await?;
        }
        Call::Retry { run } => {
            let request = RetryRunRequest {
                run_id: t.known_run(run),
            };
            checked("RetryRun", Some(RUN_FIELDS), runs.retry_run(request)).await?;
        }
        Call::Rerun { run, from_step, input } => {
            let request = RerunRunRequest {
                run_id: t.known_run(run),
                from_step: from_step.0.clone(),
                input_json: input.0.clone(),
            };
            checked("RerunRun", Some(RUN_FIELDS), runs.rerun_run(request)).await?;
        }
        Call::Publish { name, key, payload } => {
            let request = PublishEventRequest {
                name: name.0.clone(),
                key: key.0.clone(),
                payload_json: payload.0.clone(),
            };
            let mut events = proto::event_service_client::EventServiceClient::new(ch);
            let fields: &[&str] = &["name", "key", "payload_json", "payload", "on", "workflow"];
            checked("PublishEvent", Some(fields), events.publish_event(request)).await?;
        }
        Call::CreateSchedule {
            id,
            workflow,
            version,
            cron,
            timezone,
            input,
            overlap,
            window_ms,
        } => {
            let request = CreateScheduleRequest {
                id: id.0.clone(),
                workflow: t.known_workflow(workflow),
                workflow_version: *version,
                cron: cron.0.clone(),
                timezone: timezone.0.clone(),
                input_json: input.0.clone(),
                overlap: overlap.0.clone(),
                catchup_window_ms: *window_ms,
            };
            let mut schedules = proto::schedule_service_client::ScheduleServiceClient::new(ch);
            let fields: &[&str] = &[
                "id",
                "workflow",
                "workflow_version",
                "version",
                "cron",
                "timezone",
                "input_json",
                "input",
                "overlap",
                "catchup_window_ms",
                "steps",
                "concurrency_key",
                "max_concurrent_runs",
                "catchup_window",
            ];
            checked("CreateSchedule", Some(fields), schedules.create_schedule(request)).await?;
        }
        Call::Complete { run, step, user, data } => {
            let request = CompleteHumanTaskRequest {
                run_id: t.known_run(run),
                step_id: step.0.clone(),
                user: user.0.clone(),
                data_json: data.0.clone(),
            };
            let mut tasks = proto::human_task_service_client::HumanTaskServiceClient::new(ch);
            let fields: &[&str] = &["run_id", "step_id", "user", "data_json", "data"];
            checked("CompleteHumanTask", Some(fields), tasks.complete_human_task(request)).await?;
        }
        Call::StartStep(f) => {
            let (run_id, step_id, attempt, worker_id, workflow, workflow_version) = fence_parts(t, f);
            let request = StartStepRequest {
                run_id,
                step_id,
                attempt,
                worker_id,
                workflow,
                workflow_version,
                input_json: String::new(),
            };
            checked("StartStep", Some(WORKER_FIELDS), worker.start_step(request)).await?;
        }
        Call::Report {
            fence,
            outcome,
            attempt_base,
            start,
        } => {
            let (run_id, step_id, attempt, worker_id, workflow, workflow_version) = fence_parts(t, fence);
            let outcome = match outcome {
                Outcome::Output(o) => Some(report_result_request::Outcome::OutputJson(o.0.clone())),
                Outcome::Failure {
                    message,
                    error_type,
                    retryable,
                } => Some(report_result_request::Outcome::Failure(StepFailure {
                    message: message.0.clone(),
                    error_type: error_type.0.clone(),
                    retryable: *retryable,
                    details: String::new(),
                })),
                Outcome::Suspend { event, key, timeout_ms } => Some(report_result_request::Outcome::Suspend(Suspend {
                    event: event.0.clone(),
                    key: key.0.clone(),
                    timeout_ms: *timeout_ms,
                })),
                Outcome::Nothing => None,
            };
            let request = ReportResultRequest {
                run_id,
                step_id,
                attempt,
                worker_id,
                outcome,
                workflow,
                workflow_version,
                attempt_base: *attempt_base,
                start: start.is_some(),
                input_json: start.as_ref().map(|t| t.0.clone()).unwrap_or_default(),
            };
            checked("ReportResult", Some(WORKER_FIELDS), worker.report_result(request)).await?;
        }
        Call::Heartbeat(f) => {
            let (run_id, step_id, attempt, worker_id, _, _) = fence_parts(t, f);
            let request = HeartbeatRequest {
                run_id,
                step_id,
                attempt,
                worker_id,
            };
            checked("Heartbeat", Some(WORKER_FIELDS), worker.heartbeat(request)).await?;
        }
        Call::Emit { fence, payload } => {
            let (run_id, step_id, attempt, worker_id, _, _) = fence_parts(t, fence);
            let request = EmitEventRequest {
                run_id,
                step_id,
                attempt,
                payload_json: payload.0.clone(),
                worker_id,
            };
            checked("EmitEvent", Some(WORKER_FIELDS), worker.emit_event(request)).await?;
        }
        Call::RawBytes { method, bytes } => {
            let mut grpc = tonic::client::Grpc::new(ch);
            tokio::time::timeout(CALL_LIMIT, grpc.ready())
                .await
                .map_err(|_| format!("{method}: the channel was not ready within {CALL_LIMIT:?}"))?
                .map_err(|e| format!("{method}: the channel failed: {e}"))?;
            let call = grpc.unary(
                tonic::Request::new(bytes.clone()),
                PathAndQuery::from_static(method),
                RawCodec,
            );
            // Malformed bytes are the caller's fault: INVALID_ARGUMENT (or, when they happen to be a
            // valid message, whatever that message gets). The message need not name a field.
            match tokio::time::timeout(CALL_LIMIT, call).await {
                Err(_) => return Err(format!("{method}: no answer within {CALL_LIMIT:?}")),
                Ok(Ok(_)) => {}
                Ok(Err(s))
                    if matches!(
                        s.code(),
                        Code::InvalidArgument | Code::NotFound | Code::AlreadyExists | Code::FailedPrecondition
                    ) && s.message().len() <= MAX_MESSAGE_BYTES => {}
                Ok(Err(s)) => {
                    return Err(format!(
                        "{method} with raw bytes {bytes:?}: {:?} ({} bytes): {}",
                        s.code(),
                        s.message().len(),
                        cut(s.message())
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Why a case did not pass.
enum Failed {
    /// The input broke the property.
    Input(String),
    /// No cluster could be started (Redis or RabbitMQ down, a build problem): not the input's
    /// fault, so the run stops instead of shrinking it.
    Harness(String),
}

impl From<String> for Failed {
    fn from(e: String) -> Self {
        Failed::Input(e)
    }
}

/// A fresh target; a failure (also a panic of the harness) is a [`Failed::Harness`].
async fn fresh_target() -> Result<Target, Failed> {
    use futures::FutureExt as _;
    match std::panic::AssertUnwindSafe(Target::start()).catch_unwind().await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(Failed::Harness(e)),
        Err(panic) => Err(Failed::Harness(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the harness panicked".into()),
        )),
    }
}

/// Runs one case on the live target (starting a fresh one when there is none): every call, then
/// the process and health checks.
async fn case(slot: &Mutex<Option<Target>>, calls: &[Call]) -> Result<(), Failed> {
    let taken = slot.lock().map_err(|_| Failed::Harness("poisoned".into()))?.take();
    let mut t = match taken {
        Some(t) => t,
        None => fresh_target().await?,
    };
    t.channel = connect(&t.cluster.addr)?;
    let mut result = Ok(());
    for (i, c) in calls.iter().enumerate() {
        if let Err(e) = make(&mut t, c).await {
            result = Err(format!("call {i} of the case: {e}"));
            break;
        }
    }
    let died = |t: &Target| {
        format!(
            "the coordinator process (pid {}) died; see target/<profile>/e2e-logs/{}-coordinator.log",
            t.coordinator_pid, t.cluster.namespace
        )
    };
    let healthy = if !alive(t.coordinator_pid) {
        Err(died(&t))
    } else {
        // On a connection of its own, so that a connection a call broke does not count.
        match serving(&connect(&t.cluster.addr)?).await {
            Ok(()) => Ok(()),
            // A process that is aborting still shows in /proc for a moment: say so when it was that.
            Err(e) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Err(if alive(t.coordinator_pid) { e } else { died(&t) })
            }
        }
    };
    if let Err(e) = &healthy {
        result = match result {
            Ok(()) => Err(e.clone()),
            Err(first) => Err(format!("{first}; then {e}")),
        };
    }
    if healthy.is_ok() {
        *slot.lock().map_err(|_| Failed::Harness("poisoned".into()))? = Some(t);
    } else {
        // A dead or unhealthy coordinator: the next case starts on a fresh cluster.
        t.finish();
    }
    result.map_err(Failed::Input)
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn every_random_call_gets_a_documented_answer_and_the_coordinator_stays_serving() {
    // Generating, printing and shrinking deeply nested inputs needs more stack than a test
    // thread's default 2 MiB in a debug build.
    let body = std::thread::Builder::new()
        .name("api-fuzz".into())
        .stack_size(256 * 1024 * 1024)
        .spawn(fuzz)
        .expect("spawn the fuzz thread");
    if let Err(panic) = body.join() {
        std::panic::resume_unwind(panic);
    }
}

fn fuzz() {
    let cases = env_number("BATON_FUZZ_CASES", 1000) as u32;
    let budget = Duration::from_secs(env_number("BATON_FUZZ_SECONDS", 100));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let slot: Mutex<Option<Target>> = Mutex::new(None);
    // The first cluster starts before the clock does.
    match rt.block_on(fresh_target()) {
        Ok(first) => *slot.lock().expect("slot") = Some(first),
        Err(Failed::Harness(e) | Failed::Input(e)) => panic!("could not start the cluster: {e}"),
    }
    let harness_error: Mutex<Option<String>> = Mutex::new(None);

    let config = Config {
        cases,
        max_shrink_iters: 64,
        max_shrink_time: 60_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(SEEDS))),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let started = Instant::now();
    let ran = std::sync::atomic::AtomicU32::new(0);
    let failed = std::sync::atomic::AtomicU32::new(0);
    let keep_going = std::env::var_os("BATON_FUZZ_KEEP_GOING").is_some();
    let outcome = runner.run(&prop::collection::vec(call(), 1..5), |calls| {
        // Past the time budget, the remaining cases pass without running (a loaded machine runs
        // fewer cases, never longer).
        if started.elapsed() > budget || harness_error.lock().map(|h| h.is_some()).unwrap_or(true) {
            return Ok(());
        }
        ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = match rt.block_on(case(&slot, &calls)) {
            Ok(()) => Ok(()),
            Err(Failed::Input(e)) => Err(e),
            Err(Failed::Harness(e)) => {
                // Stop here, without blaming (or shrinking) the input.
                if let Ok(mut h) = harness_error.lock() {
                    *h = Some(e);
                }
                return Ok(());
            }
        };
        if keep_going {
            // Survey mode: print every failing case (unshrunk) and fail at the end.
            if let Err(e) = &result {
                failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                eprintln!("api_fuzz FAILED: {e}\n    input: {calls:?}");
            }
            return Ok(());
        }
        result.map_err(TestCaseError::fail)
    });
    eprintln!(
        "api_fuzz: {} cases run in {:.0} s",
        ran.load(std::sync::atomic::Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    if let Some(t) = slot.lock().expect("slot").take() {
        t.finish();
    }
    drop(rt);
    if let Some(e) = harness_error.lock().expect("harness error").take() {
        panic!("the harness could not start a cluster (not a finding about an input): {e}");
    }
    if let Err(e) = outcome {
        panic!("{e}");
    }
    let failed = failed.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(failed, 0, "{failed} cases failed (printed above)");
}

#[test]
fn the_field_check_reads_field_paths() {
    assert!(names_a_field("run_id: \"x\" is not a run id", Some(&["run_id"])));
    assert!(names_a_field(
        "steps[1].retry.initial_interval: must be at most 1day",
        None
    ));
    assert!(names_a_field("input_json: /a: not valid", Some(&["input_json"])));
    assert!(!names_a_field("internal error: boom", Some(&["run_id"])));
    assert!(!names_a_field("decoded message length too large", None));
    assert!(!names_a_field("workflow \"a\" has no version 3", Some(&["workflow"])));
    assert!(names_a_field("name, key: must not contain '|'", Some(&["name", "key"])));
    assert!(!names_a_field("name, other: x", Some(&["name"])));
    assert!(bogus_page_token("é") && bogus_page_token(&"a".repeat(600)));
    assert!(!bogus_page_token("1700000000000:0195c1c4-7d2a-7c3e-9e4f-0a1b2c3d4e5f"));
}
