//! `baton`: the command line for Baton. Parses arguments (clap), calls the coordinator over gRPC and
//! prints the answers as tables or JSON.
//!
//! Exit status: 0 on success; 1 when a run that was waited for or watched ended in `failed`,
//! `cancelled` or `timed_out`; 2 for any error (bad arguments or input, gRPC errors, no connection).
//! Errors go to stderr: `error: <CODE>: <message>`, or under `-o json` one JSON document
//! `{"error": {"code": "NOT_FOUND", "message": "..."}}` (same exit status).

mod bench;
mod client;
mod ops;
mod render;

use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use baton_shared::proto::{
    CancelRunRequest, CompleteHumanTaskRequest, CreateScheduleRequest, GetWorkflowRequest, ListHumanTasksRequest,
    ListRunsRequest, ListScheduleTicksRequest, ListSchedulesRequest, ListWorkflowsRequest, PublishEventRequest,
    RegisterWorkflowRequest, RerunRunRequest, RetryRunRequest, Run, RunOperationResponse, RunStatus, Schedule,
    ScheduleRef, SubmitRunRequest,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::client::{Coordinator, Target};

/// Register workflows, start and follow runs, schedule them, publish events and complete human tasks
/// on a Baton coordinator.
#[derive(Debug, Parser)]
#[command(name = "baton", version)]
pub struct Cli {
    /// The coordinator's gRPC address (`host:port` means `http://host:port`; `https://host:port`
    /// speaks TLS, checking the coordinator's certificate against `--ca-file` or the system's CAs).
    #[arg(long, global = true, env = "BATON_ADDR", default_value = client::DEFAULT_ADDR, value_name = "URL")]
    pub addr: String,

    /// Bearer token sent with every call, when the coordinator has auth on. Prefer the
    /// environment variable: a flag shows in the process list.
    #[arg(
        long,
        global = true,
        env = "BATON_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// PEM file of the CA that signed the coordinator's certificate (for `https://` addresses;
    /// default: the system's CA certificates).
    #[arg(long, global = true, env = "BATON_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// PEM file of this client's certificate, for a coordinator that asks for one (mutual TLS).
    #[arg(
        long,
        global = true,
        env = "BATON_CLIENT_CERT",
        value_name = "FILE",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,

    /// PEM file of the private key of `--client-cert`.
    #[arg(
        long,
        global = true,
        env = "BATON_CLIENT_KEY",
        value_name = "FILE",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,

    /// How to print answers.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,

    /// How long `--wait`, `--watch` and `run watch` keep trying when the coordinator cannot be
    /// reached or cannot serve (a restart, a Redis or network fault), retrying with backoff; they
    /// exit 2 only once an outage lasts this long. At most 24h; 0 gives up at the first error.
    #[arg(
        long,
        global = true,
        env = "BATON_RECONNECT_FOR",
        default_value = "5m",
        value_name = "DURATION",
        value_parser = parse_reconnect_for
    )]
    pub reconnect_for: std::time::Duration,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Where and how to connect, from the global flags.
    pub fn target(&self) -> Target {
        Target {
            addr: self.addr.clone(),
            token: self.token.clone().map(baton_shared::credentials::Secret::new),
            tls: baton_shared::credentials::ClientTls {
                ca_file: self.ca_file.clone(),
                cert_file: self.client_cert.clone(),
                key_file: self.client_key.clone(),
            },
        }
    }
}

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned text for people.
    Table,
    /// JSON for programs (one object per line when following a run).
    Json,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register and inspect workflow definitions.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Start, inspect and follow runs.
    #[command(subcommand)]
    Run(RunCommand),
    /// Publish events to the steps waiting for them and the workflows they start.
    #[command(subcommand)]
    Event(EventCommand),
    /// List and complete the tasks of human steps.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Start runs on a cron schedule.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// The workers that registered with the coordinator: live, lost and stopped.
    #[command(subcommand)]
    Worker(WorkerCommand),
    /// The handler queues: ready tasks, tasks held by workers, consumers, the oldest waiting task.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Measure a running coordinator and its workers, and print medians.
    ///
    /// Starts nothing: registers its own workflows (`bench-<id>-...`) and needs a `baton-worker`
    /// serving `echo` in the coordinator's namespace. Measures one-step runs/s as a polling client
    /// sees them and as the engine's own timestamps say, ms per step of a 50-step chain, 1,000- and
    /// 10,000-element fan-outs with a join, and GetRun p50/p99 with 100,000 stored runs; each
    /// `--repeat` times. `--floor` also measures what one step costs without Baton's logic (one
    /// EVALSHA, one confirmed publish, one consume + ack, one gRPC call) and gives the chain as a
    /// ratio to it. `--quick` for a small version. Results on standard output, progress on
    /// standard error.
    Bench(bench::BenchArgs),
    /// Make bearer tokens for a coordinator with auth on (its `auth_tokens_file` holds their hashes).
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `baton token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new random token and the tokens-file entry (TOML) that holds its SHA-256.
    ///
    /// The token itself is stored nowhere: hand it to the client (`BATON_TOKEN`) and put the entry
    /// in the coordinator's `auth_tokens_file`.
    New {
        /// The entry's name (shown in logs and `completed_by` when it has no user).
        #[arg(long)]
        name: String,
        /// What the token may do.
        #[arg(long, value_enum)]
        role: TokenRole,
        /// The person the token stands for (human tasks are completed by their assignees).
        #[arg(long)]
        user: Option<String>,
    },
    /// Print the SHA-256 (hex) of a token read from standard input, for a tokens file.
    Hash,
}

/// The roles of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    /// Everything.
    Admin,
    /// Runs, workflows, events, schedules and human tasks.
    Operator,
    /// The worker protocol only.
    Worker,
    /// Read only.
    Viewer,
}

impl TokenRole {
    fn word(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::Operator => "operator",
            TokenRole::Worker => "worker",
            TokenRole::Viewer => "viewer",
        }
    }
}

/// The hex SHA-256 of `token`, as a coordinator's tokens file holds it.
fn token_hash(token: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// `baton token new` and `baton token hash`; they need no coordinator.
fn token(output: Output, command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::New { name, role, user } => {
            if name.trim().is_empty() || name.chars().any(char::is_control) {
                bail!("--name: must not be empty or hold control characters");
            }
            let token = format!("baton_{}", hex::encode(rand::random::<[u8; 32]>()));
            let sha256 = token_hash(&token);
            match output {
                Output::Json => print_json(
                    &serde_json::json!({"token": token, "name": name, "role": role.word(), "user": user, "sha256": sha256}),
                    true,
                ),
                Output::Table => {
                    let quote = |s: &str| serde_json::Value::from(s).to_string();
                    let mut text = format!(
                        "# The token (give it to the client as BATON_TOKEN; it is not stored anywhere):\n{token}\n\n\
                         # The entry for the coordinator's auth_tokens_file:\n[[tokens]]\nname = {}\nrole = \"{}\"\n",
                        quote(&name),
                        role.word()
                    );
                    if let Some(u) = &user {
                        text.push_str(&format!("user = {}\n", quote(u)));
                    }
                    text.push_str(&format!("sha256 = \"{sha256}\"\n"));
                    print_text(&text)
                }
            }
        }
        TokenCommand::Hash => {
            let mut input = String::new();
            io::stdin()
                .read_to_string(&mut input)
                .context("cannot read the token from standard input")?;
            let token = input.trim();
            if token.is_empty() {
                bail!("no token on standard input (try: printf %s \"$TOKEN\" | baton token hash)");
            }
            let sha256 = token_hash(token);
            match output {
                Output::Json => print_json(&serde_json::json!({"sha256": sha256}), true),
                Output::Table => print_text(&format!("{sha256}\n")),
            }
        }
    }
}

/// `baton workflow ...`
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Register a workflow definition (YAML or JSON); registering the same document again is a no-op.
    Apply {
        /// The definition file (`-` reads standard input).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
    /// List every workflow with its latest version.
    List,
    /// Show a workflow and its steps.
    Get {
        /// The workflow's name.
        name: String,
        /// A specific version (default: the latest).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        version: Option<u32>,
    },
    /// Delete one version of a workflow that has no unfinished runs (finished runs keep their
    /// history); the name goes away with its last version.
    Delete {
        /// The workflow's name.
        name: String,
        /// The version to delete.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        version: u32,
    },
}

/// `baton worker ...`
#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// List the workers that registered recently: running, draining, stopped, or lost (no
    /// heartbeat for 3 of their intervals), with their handlers and tasks in flight.
    List,
}

/// `baton queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List the queue of every handler a registered workflow or a live worker names.
    List,
}

/// `baton run ...`
#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Start a run of a workflow.
    Submit(SubmitArgs),
    /// Show a run, its steps and their attempts.
    Get {
        /// The run id.
        id: String,
        /// Show only this step, with its whole output (a run's answer leaves out the outputs
        /// that do not fit its 3 MiB budget and names them).
        #[arg(long, value_name = "STEP")]
        step: Option<String>,
    },
    /// List runs, newest first.
    List(ListArgs),
    /// Print a run's events as they happen, then the finished run.
    Watch {
        /// The run id.
        id: String,
    },
    /// Print the lines handlers logged (`ctx.log`), oldest first:
    /// `2026-12-06T07:01:02.123Z INFO  step#attempt  message`.
    ///
    /// Each attempt keeps at most 1,000 lines and 256 KiB (its oldest dropped first). With
    /// `--follow`, lines are printed as they are logged until the run finishes.
    Logs {
        /// The run id.
        id: String,
        /// Only this step's lines (a fan-out step's include its elements', `STEP#INDEX`).
        step: Option<String>,
        /// Only this attempt of STEP.
        #[arg(long, value_name = "N", requires = "step", value_parser = clap::value_parser!(u32).range(1..))]
        attempt: Option<u32>,
        /// At most this many lines, the newest (1 to 10000; default 10000).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: Option<u32>,
        /// Keep printing lines as handlers log them, until the run finishes (exit code as `run
        /// watch`).
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Cancel a run: unfinished steps are cancelled, running handlers are told to stop.
    Cancel {
        /// The run id.
        id: String,
        /// Why; shown as the run's error.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Run a finished run's failed and cancelled steps again, keeping what succeeded.
    Retry {
        /// The run id.
        id: String,
    },
    /// Run a finished run again from a step (and everything after it), optionally with a new input.
    Rerun {
        /// The run id.
        id: String,
        /// The step to start again from.
        #[arg(long = "from", value_name = "STEP")]
        from_step: String,
        /// A new run input: JSON text, or `@FILE` (default: keep the old one).
        #[arg(long, short = 'i', value_name = "JSON|@FILE")]
        input: Option<String>,
    },
}

/// `baton event ...`
#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Publish an event to the steps waiting for it; prints them and the runs it started.
    ///
    /// Every step waiting for (NAME, KEY) gets it; when none waits, the coordinator keeps it for its
    /// event TTL and hands it to the first step that starts waiting for it. Every workflow started
    /// by the event (`on: {event: NAME}`) whose filter matches the payload gets a new run.
    Publish {
        /// The event's name.
        name: String,
        /// The correlation key that waiting steps match on (empty for events without a key).
        #[arg(long, value_name = "KEY", default_value = "")]
        key: String,
        /// The payload: JSON text, `@FILE` to read it from a file, or `-` to read standard input.
        #[arg(long, short = 'p', value_name = "JSON|@FILE|-", default_value = "null")]
        payload: String,
    },
    /// List the buffered events (published while no step waited), per name and key.
    List {
        /// Only events of this name.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Most (name, key) pairs to list (1 to 1000; default 100).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
    },
    /// Drop the buffered events of a name and key (or of every key of the name with `--all-keys`).
    Purge {
        /// The event's name.
        name: String,
        /// The key (empty for events without a key).
        #[arg(long, value_name = "KEY", default_value = "", conflicts_with = "all_keys")]
        key: String,
        /// Drop the events of every key of NAME.
        #[arg(long)]
        all_keys: bool,
    },
}

/// `baton task ...`
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// List human tasks, newest first.
    List(TaskListArgs),
    /// Complete an open human task; its data becomes the step's output.
    ///
    /// The data must satisfy the task's form schema; the coordinator's error names the JSON path
    /// that does not.
    Complete {
        /// The run id.
        run: String,
        /// The human step's id.
        step: String,
        /// The form data: JSON text, `@FILE` to read it from a file, or `-` to read standard input.
        #[arg(long, short = 'd', value_name = "JSON|@FILE|-")]
        data: String,
        /// Who completes it (default: $USER). With a token, the coordinator records the token's
        /// user instead, and refuses a different `--user`.
        #[arg(long, short = 'u', value_name = "USER")]
        user: Option<String>,
    },
}

/// `baton schedule ...`
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule that starts a run of a workflow at every tick of a cron expression.
    ///
    /// With the id of an existing schedule created this way, replaces it.
    Create(ScheduleCreateArgs),
    /// Show a schedule: its workflow, cron expression, policies and next tick.
    Get {
        /// The schedule id.
        id: String,
    },
    /// List schedules, by id.
    List {
        /// Only schedules of this workflow.
        #[arg(long, value_name = "NAME")]
        workflow: Option<String>,
    },
    /// Pause a schedule: it records nothing and starts nothing until resumed (missed ticks are not
    /// caught up).
    Pause {
        /// The schedule id.
        id: String,
    },
    /// Resume a paused schedule from its next tick.
    Resume {
        /// The schedule id.
        id: String,
    },
    /// Delete a schedule created with `schedule create` (a definition's schedules go away with a
    /// new version without them).
    Delete {
        /// The schedule id.
        id: String,
    },
    /// Fire a schedule now, whatever its overlap policy, and print the tick.
    Trigger {
        /// The schedule id.
        id: String,
    },
    /// Print a schedule's ticks, newest first: when, what happened, the run each started.
    History {
        /// The schedule id.
        id: String,
        /// At most this many ticks (the coordinator's default is 50).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
    },
}

/// Arguments of `baton schedule create`.
#[derive(Debug, Args)]
pub struct ScheduleCreateArgs {
    /// The workflow to start.
    #[arg(long, value_name = "NAME")]
    pub workflow: String,
    /// A specific workflow version (default: the latest when each run starts).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub version: Option<u32>,
    /// When: 5 cron fields (`min hour day month weekday`), or 6 with seconds first.
    #[arg(long, value_name = "EXPR")]
    pub cron: String,
    /// The IANA time zone the expression is read in, e.g. `Europe/Paris` (default: UTC).
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,
    /// The input of every run: JSON text, or `@FILE` (`-` reads standard input); default `{}`.
    #[arg(long, short = 'i', value_name = "JSON|@FILE")]
    pub input: Option<String>,
    /// What a tick does while the previous run has not finished (default: skip).
    #[arg(long, value_enum, value_name = "POLICY")]
    pub overlap: Option<Overlap>,
    /// How late a tick missed while no coordinator ran may still fire, e.g. `1h`, `30s` (default:
    /// the coordinator's, 1h).
    #[arg(long, value_name = "DURATION", value_parser = parse_window_ms)]
    pub catchup_window: Option<u64>,
    /// The schedule's id, `[A-Za-z0-9_.:/-]` (default: generated).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
}

/// A schedule's overlap policy, for `baton schedule create --overlap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Overlap {
    /// Start nothing; record the tick as skipped.
    Skip,
    /// Keep one tick, to fire when the previous run ends.
    #[value(name = "buffer_one", alias = "buffer-one")]
    BufferOne,
    /// Start a run anyway.
    #[value(name = "allow_all", alias = "allow-all")]
    AllowAll,
    /// Cancel the previous run, then start a new one.
    #[value(name = "cancel_other", alias = "cancel-other")]
    CancelOther,
}

impl Overlap {
    /// The word the coordinator uses.
    pub fn word(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::BufferOne => "buffer_one",
            Overlap::AllowAll => "allow_all",
            Overlap::CancelOther => "cancel_other",
        }
    }
}

/// The longest `--reconnect-for`: 24 hours.
const MAX_RECONNECT_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Parses `--reconnect-for` (`30s`, `5m`, `0s`): zero gives up at the first error (it is not a
/// definition's duration, where zero is refused), at most [`MAX_RECONNECT_FOR`].
///
/// # Errors
/// An unreadable duration, or `must be at most 1day (got "2days")`.
fn parse_reconnect_for(s: &str) -> Result<std::time::Duration, String> {
    let duration = baton_shared::duration::parse(s)?;
    baton_shared::limits::check_duration(duration, MAX_RECONNECT_FOR)
}

/// Parses a `--catchup-window` duration (`1h`, `30s`, `1h 30m`) into whole milliseconds; zero is
/// refused (leave the flag out for the coordinator's default).
fn parse_window_ms(s: &str) -> Result<u64, String> {
    let duration = baton_shared::duration::parse(s)?;
    match u64::try_from(duration.as_millis()) {
        Ok(0) => Err(format!(
            "{s:?} is too short: must be at least 1ms (leave --catchup-window out for the default)"
        )),
        Ok(ms) => Ok(ms),
        Err(_) => Err(format!("{s:?} is too long")),
    }
}

/// Arguments of `baton task list`.
#[derive(Debug, Args)]
pub struct TaskListArgs {
    /// Only tasks assigned to this user or group.
    #[arg(long, value_name = "WHO")]
    pub assignee: Option<String>,
    /// Only tasks of runs of this workflow.
    #[arg(long, value_name = "NAME")]
    pub workflow: Option<String>,
    /// Only tasks with this status.
    #[arg(long, value_enum, value_name = "STATUS")]
    pub status: Option<TaskStatus>,
    /// At most this many tasks (the coordinator's default is 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
}

/// The status of a human task, for `baton task list --status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TaskStatus {
    /// Waiting for someone to complete it.
    Open,
    /// Completed.
    Completed,
    /// Cancelled before anyone completed it (for example, with its run).
    Cancelled,
}

impl TaskStatus {
    /// The word the coordinator uses.
    pub fn word(self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::Completed => "completed",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

/// Arguments of `baton run submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The workflow's name.
    pub workflow: String,
    /// The run input: JSON text, or `@FILE` to read it from a file (`-` or `@-` reads standard input).
    #[arg(long, short = 'i', value_name = "JSON|@FILE", default_value = "{}")]
    pub input: String,
    /// A specific workflow version (default: the latest).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub version: Option<u32>,
    /// Submitting again with the same key answers the same run instead of starting a new one.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Wait until the run ends and print it; exit 1 unless it succeeded.
    #[arg(long, conflicts_with = "watch")]
    pub wait: bool,
    /// Print the run's events as they happen, then the finished run; exit 1 unless it succeeded.
    #[arg(long)]
    pub watch: bool,
}

/// Arguments of `baton run list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only runs of this workflow.
    #[arg(long, value_name = "NAME")]
    pub workflow: Option<String>,
    /// Only runs with this status: pending, running, succeeded, failed, cancelled or timed_out.
    #[arg(long, value_name = "STATUS", value_parser = parse_run_status)]
    pub status: Option<RunStatus>,
    /// At most this many runs (the coordinator's default is 50).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Continue from the token printed by a previous page.
    #[arg(long, value_name = "TOKEN")]
    pub page_token: Option<String>,
    /// Only the runs this run started (its sub-workflows' runs and the runs it emitted).
    #[arg(long, value_name = "RUN")]
    pub parent: Option<String>,
    /// Only the runs this filter selects, e.g. `status = failed AND input.customer.id = "c-42"`
    /// (the filter language of docs/search.md); with an archive, over every run ever archived.
    #[arg(long, value_name = "FILTER")]
    pub query: Option<String>,
    /// Also print how many runs match, by status, over all of them (not only this page).
    #[arg(long)]
    pub counts: bool,
}

/// Parses a `--status` word (case-insensitive, `-` accepted for `_`).
fn parse_run_status(s: &str) -> Result<RunStatus, String> {
    let word = s.trim().to_ascii_lowercase().replace('-', "_");
    RunStatus::from_word(&word).ok_or_else(|| {
        format!(
            "unknown run status `{s}`; valid statuses are {}",
            render::run_status_words()
        )
    })
}

/// Reads a file argument's text; `-` reads standard input.
fn read_source(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// The `--input` argument as JSON text (see [`read_json_arg`]).
pub fn read_input(arg: &str) -> Result<String> {
    read_json_arg("--input", arg)
}

/// A JSON argument (`--input`, `--payload`, `--data`) as JSON text: literal JSON, `@FILE` read from
/// a file, or `-` (also `@-`) read from standard input. Checks that it parses, so that mistakes are
/// reported before anything is sent; errors name `flag`.
pub fn read_json_arg(flag: &str, arg: &str) -> Result<String> {
    let what = flag.trim_start_matches('-');
    let (text, origin) = if arg == "-" || arg == "@-" {
        (read_source(Path::new("-"))?, format!("{flag} (standard input)"))
    } else if let Some(path) = arg.strip_prefix('@') {
        if path.is_empty() {
            bail!("{flag} @ needs a file name, for example {flag} @{what}.json");
        }
        (read_source(Path::new(path))?, format!("the {what} file {path}"))
    } else {
        (arg.to_owned(), flag.to_owned())
    };
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text) {
        bail!("{origin} is not valid JSON: {e}");
    }
    Ok(text)
}

/// Who completes a human task: `--user`, else the `USER` environment variable (`env_user`).
fn task_user(flag: Option<String>, env_user: Option<String>) -> Result<String> {
    flag.or(env_user)
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .context("--user: required (or set $USER)")
}

/// Writes text to standard output.
fn print_text(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Writes a JSON document to standard output: pretty, or compact on one line.
fn print_json<T: Serialize>(value: &T, pretty: bool) -> Result<()> {
    let text = if pretty {
        serde_json::to_string_pretty(value)?
    } else {
        serde_json::to_string(value)?
    };
    print_text(&(text + "\n"))
}

/// Prints the answer of cancel, retry or rerun.
fn print_operation(output: Output, verb: &str, resp: &RunOperationResponse) -> Result<()> {
    match output {
        Output::Table => {
            let mut text = format!("run {} {verb}", resp.run_id);
            if !resp.dispatched_steps.is_empty() {
                text.push_str(&format!("; dispatched: {}", resp.dispatched_steps.join(", ")));
            }
            print_text(&(text + "\n"))
        }
        Output::Json => print_json(
            &serde_json::json!({
                "run_id": resp.run_id,
                "status": render::run_status_word(resp.status),
                "dispatched_steps": resp.dispatched_steps,
            }),
            true,
        ),
    }
}

/// The exit status for a finished run: success only when it succeeded.
fn run_exit_code(run: &Run) -> ExitCode {
    if RunStatus::try_from(run.status) == Ok(RunStatus::Succeeded) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    baton_shared::credentials::install_crypto_provider();
    let cli = Cli::parse();
    let addr = cli.addr.clone();
    let output = cli.output;
    match dispatch(cli).await {
        Ok(code) => code,
        // The reader went away (`baton run list | head`): nothing more to say.
        Err(err)
            if err
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        // Errors go to stderr in both formats, so stdout only ever holds answers.
        Err(err) if output == Output::Json => {
            eprintln!("{}", client::error_json(&err, &addr));
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("error: {}", client::describe_error(&err, &addr));
            ExitCode::from(2)
        }
    }
}

/// Runs one command. Local input is read and checked before connecting.
async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let output = cli.output;
    let reconnect_for = cli.reconnect_for;
    let target = cli.target();
    match cli.command {
        Command::Token(command) => token(output, command)?,
        Command::Workflow(WorkflowCommand::Apply { file }) => {
            let definition = read_source(&file)?;
            if definition.trim().is_empty() {
                bail!("{} is empty", file.display());
            }
            let coordinator = Coordinator::connect(&target).await?;
            let resp = coordinator
                .workflows()
                .register_workflow(RegisterWorkflowRequest { definition })
                .await?
                .into_inner();
            match output {
                Output::Table => print_text(&render::apply_text(&resp))?,
                Output::Json => print_json(&render::apply_json(&resp), true)?,
            }
            // A handler no live worker serves: its steps would sit dispatched. A coordinator
            // that cannot list workers (older, or no permission) gets no warning.
            if let (Some(workflow), Ok(workers)) = (resp.workflow.as_ref(), ops::list_workers(&coordinator).await) {
                for line in ops::unserved_handler_warnings(workflow, &workers) {
                    eprintln!("{line}");
                }
            }
        }
        Command::Worker(WorkerCommand::List) => {
            let coordinator = Coordinator::connect(&target).await?;
            let workers = ops::list_workers(&coordinator).await?;
            match output {
                Output::Table => print_text(&ops::worker_list_text(&workers, baton_shared::time::now_ms()))?,
                Output::Json => print_json(&workers.iter().map(ops::worker_json).collect::<Vec<_>>(), true)?,
            }
        }
        Command::Queue(QueueCommand::List) => {
            let coordinator = Coordinator::connect(&target).await?;
            let queues = ops::list_queues(&coordinator).await?;
            match output {
                Output::Table => print_text(&ops::queue_list_text(&queues, baton_shared::time::now_ms()))?,
                Output::Json => print_json(&queues.iter().map(ops::queue_json).collect::<Vec<_>>(), true)?,
            }
        }
        Command::Workflow(WorkflowCommand::List) => {
            let coordinator = Coordinator::connect(&target).await?;
            // Every page, in name order; a token the coordinator repeats ends the listing (it
            // would loop for ever otherwise).
            let mut workflows = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = coordinator
                    .workflows()
                    .list_workflows(ListWorkflowsRequest {
                        limit: 0,
                        page_token: page_token.clone(),
                    })
                    .await?
                    .into_inner();
                workflows.extend(page.workflows);
                if page.next_page_token.is_empty() || page.next_page_token == page_token {
                    break;
                }
                page_token = page.next_page_token;
            }
            match output {
                Output::Table => print_text(&render::workflow_list_text(&workflows))?,
                Output::Json => print_json(&workflows.iter().map(render::workflow_json).collect::<Vec<_>>(), true)?,
            }
        }
        Command::Workflow(WorkflowCommand::Get { name, version }) => {
            let coordinator = Coordinator::connect(&target).await?;
            let request = GetWorkflowRequest {
                name,
                version: version.unwrap_or(0),
            };
            let workflow = coordinator.workflows().get_workflow(request).await?.into_inner();
            match output {
                Output::Table => print_text(&render::workflow_text(&workflow))?,
                Output::Json => print_json(&render::workflow_json(&workflow), true)?,
            }
        }
        Command::Workflow(WorkflowCommand::Delete { name, version }) => {
            let coordinator = Coordinator::connect(&target).await?;
            let left = coordinator
                .workflows()
                .delete_workflow_version(baton_shared::proto::DeleteWorkflowVersionRequest {
                    name: name.clone(),
                    version,
                })
                .await?
                .into_inner()
                .remaining_versions;
            match output {
                Output::Table => print_text(&render::workflow_deleted_text(&name, version, &left))?,
                Output::Json => print_json(
                    &serde_json::json!({ "workflow": name, "deleted_version": version, "remaining_versions": left }),
                    true,
                )?,
            }
        }
        Command::Run(RunCommand::Submit(args)) => return submit(&target, output, args, reconnect_for).await,
        Command::Run(RunCommand::Get { id, step: None }) => {
            let coordinator = Coordinator::connect(&target).await?;
            let run = coordinator.get_run(&id).await?;
            match output {
                Output::Table => print_text(&render::run_text(&run, baton_shared::time::now_ms()))?,
                Output::Json => print_json(&render::run_json(&run), true)?,
            }
        }
        Command::Run(RunCommand::Get { id, step: Some(step) }) => {
            let coordinator = Coordinator::connect(&target).await?;
            let run = coordinator.get_step(&id, &step).await?;
            match output {
                Output::Table => print_text(&render::step_text(&run, baton_shared::time::now_ms()))?,
                Output::Json => print_json(&render::run_json(&run), true)?,
            }
        }
        Command::Run(RunCommand::List(args)) => {
            let coordinator = Coordinator::connect(&target).await?;
            let request = ListRunsRequest {
                workflow: args.workflow.unwrap_or_default(),
                status: args.status.map_or(0, |s| s as i32),
                limit: args.limit.unwrap_or(0),
                page_token: args.page_token.unwrap_or_default(),
                parent_run_id: args.parent.unwrap_or_default(),
                query: args.query.unwrap_or_default(),
                with_counts: args.counts,
                ..Default::default()
            };
            let resp = coordinator.runs().list_runs(request).await?.into_inner();
            if resp.partial {
                // On stderr, so that `-o json` stays one document; the runs printed are right.
                eprintln!("warning: partial answer: {}", resp.partial_reason);
            }
            let counts = args.counts.then(|| resp.status_counts.into_iter().collect());
            match output {
                Output::Table => {
                    let mut text =
                        render::run_list_text(&resp.runs, &resp.next_page_token, baton_shared::time::now_ms());
                    if let Some(counts) = &counts {
                        text.push_str(&render::status_counts_text(counts));
                    }
                    print_text(&text)?
                }
                Output::Json => {
                    let mut json = render::run_list_json(&resp.runs, &resp.next_page_token);
                    json.status_counts = counts;
                    print_json(&json, true)?
                }
            }
        }
        Command::Run(RunCommand::Watch { id }) => {
            let coordinator = Coordinator::connect(&target).await?;
            return follow(&coordinator, &id, output, true, reconnect_for).await;
        }
        Command::Run(RunCommand::Logs {
            id,
            step,
            attempt,
            limit,
            follow,
        }) => {
            let coordinator = Coordinator::connect(&target).await?;
            let filter = LogFilter {
                run_id: id,
                step: step.unwrap_or_default(),
                attempt: attempt.unwrap_or(0),
                limit: limit.unwrap_or(0),
            };
            return logs(&coordinator, &filter, output, follow, reconnect_for).await;
        }
        Command::Run(RunCommand::Cancel { id, reason }) => {
            let coordinator = Coordinator::connect(&target).await?;
            let request = CancelRunRequest { run_id: id, reason };
            let resp = coordinator.runs().cancel_run(request).await?.into_inner();
            print_operation(output, "cancelled", &resp)?;
        }
        Command::Run(RunCommand::Retry { id }) => {
            let coordinator = Coordinator::connect(&target).await?;
            let resp = coordinator
                .runs()
                .retry_run(RetryRunRequest { run_id: id })
                .await?
                .into_inner();
            print_operation(output, "retried", &resp)?;
        }
        Command::Run(RunCommand::Rerun { id, from_step, input }) => {
            let input_json = input.as_deref().map(read_input).transpose()?.unwrap_or_default();
            let coordinator = Coordinator::connect(&target).await?;
            let request = RerunRunRequest {
                run_id: id,
                from_step,
                input_json,
            };
            let resp = coordinator.runs().rerun_run(request).await?.into_inner();
            print_operation(output, "rerun", &resp)?;
        }
        Command::Event(EventCommand::Publish { name, key, payload }) => {
            let payload_json = read_json_arg("--payload", &payload)?;
            let coordinator = Coordinator::connect(&target).await?;
            let request = PublishEventRequest {
                name,
                key,
                payload_json,
            };
            let resp = coordinator.events().publish_event(request).await?.into_inner();
            match output {
                Output::Table => print_text(&render::publish_text(&resp))?,
                Output::Json => print_json(&render::publish_json(&resp), true)?,
            }
        }
        Command::Event(EventCommand::List { name, limit }) => {
            let coordinator = Coordinator::connect(&target).await?;
            let request = baton_shared::proto::ListBufferedEventsRequest {
                name: name.unwrap_or_default(),
                limit: limit.unwrap_or(0),
            };
            let events = coordinator
                .events()
                .list_buffered_events(request)
                .await?
                .into_inner()
                .events;
            match output {
                Output::Table => print_text(&render::buffered_events_text(&events))?,
                Output::Json => print_json(&render::buffered_events_json(&events), true)?,
            }
        }
        Command::Event(EventCommand::Purge { name, key, all_keys }) => {
            let coordinator = Coordinator::connect(&target).await?;
            let request = baton_shared::proto::PurgeBufferedEventsRequest {
                name: name.clone(),
                key: key.clone(),
                all_keys,
            };
            let purged = coordinator
                .events()
                .purge_buffered_events(request)
                .await?
                .into_inner()
                .purged;
            // Nothing under that one key: say which keys of the name hold events, so that a purge
            // without --key (the empty key) does not look like "there was nothing to purge".
            let others = if purged == 0 && !all_keys {
                coordinator
                    .events()
                    .list_buffered_events(baton_shared::proto::ListBufferedEventsRequest {
                        name: name.clone(),
                        limit: render::PURGE_KEYS_LISTED,
                    })
                    .await?
                    .into_inner()
                    .events
            } else {
                Vec::new()
            };
            match output {
                Output::Table => print_text(&render::purged_text(&name, &key, all_keys, purged, &others))?,
                Output::Json => print_json(&render::purged_json(purged, &others), true)?,
            }
        }
        Command::Task(TaskCommand::List(args)) => {
            let coordinator = Coordinator::connect(&target).await?;
            let request = ListHumanTasksRequest {
                assignee: args.assignee.unwrap_or_default(),
                workflow: args.workflow.unwrap_or_default(),
                status: args.status.map(TaskStatus::word).unwrap_or_default().to_owned(),
                limit: args.limit.unwrap_or(0),
            };
            let tasks = coordinator
                .human_tasks()
                .list_human_tasks(request)
                .await?
                .into_inner()
                .tasks;
            match output {
                Output::Table => print_text(&render::task_list_text(&tasks))?,
                Output::Json => print_json(&tasks.iter().map(render::task_json).collect::<Vec<_>>(), true)?,
            }
        }
        Command::Task(TaskCommand::Complete { run, step, data, user }) => {
            let data_json = read_json_arg("--data", &data)?;
            // With a token the coordinator records the token's user; `--user` is then only checked
            // against it, and $USER (a login name) is not sent.
            let user = if target.token.is_some() {
                user.map(|u| u.trim().to_owned()).unwrap_or_default()
            } else {
                task_user(user, std::env::var("USER").ok())?
            };
            let coordinator = Coordinator::connect(&target).await?;
            let request = CompleteHumanTaskRequest {
                run_id: run,
                step_id: step,
                user,
                data_json,
            };
            let task = coordinator
                .human_tasks()
                .complete_human_task(request)
                .await?
                .into_inner();
            match output {
                Output::Table => print_text(&render::task_text(&task))?,
                Output::Json => print_json(&render::task_json(&task), true)?,
            }
        }
        Command::Schedule(command) => schedule(&target, output, command).await?,
        Command::Bench(args) => bench::run(&target, output, args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints one schedule (the answer of `schedule get`, `create`, `pause` and `resume`).
fn print_schedule(output: Output, schedule: &Schedule) -> Result<()> {
    match output {
        Output::Table => print_text(&render::schedule_text(schedule)),
        Output::Json => print_json(&render::schedule_json(schedule), true),
    }
}

/// Runs a `baton schedule` command.
async fn schedule(target: &Target, output: Output, command: ScheduleCommand) -> Result<()> {
    let by_id = |id: String| ScheduleRef { id };
    match command {
        ScheduleCommand::Create(args) => {
            let input_json = args.input.as_deref().map(read_input).transpose()?.unwrap_or_default();
            let coordinator = Coordinator::connect(target).await?;
            let request = CreateScheduleRequest {
                id: args.id.unwrap_or_default(),
                workflow: args.workflow,
                workflow_version: args.version.unwrap_or(0),
                cron: args.cron,
                timezone: args.timezone.unwrap_or_default(),
                input_json,
                overlap: args.overlap.map(Overlap::word).unwrap_or_default().to_owned(),
                catchup_window_ms: args.catchup_window.unwrap_or(0),
            };
            let schedule = coordinator.schedules().create_schedule(request).await?.into_inner();
            print_schedule(output, &schedule)?;
        }
        ScheduleCommand::Get { id } => {
            let coordinator = Coordinator::connect(target).await?;
            let schedule = coordinator.schedules().get_schedule(by_id(id)).await?.into_inner();
            print_schedule(output, &schedule)?;
        }
        ScheduleCommand::List { workflow } => {
            let coordinator = Coordinator::connect(target).await?;
            let request = ListSchedulesRequest {
                workflow: workflow.unwrap_or_default(),
            };
            let schedules = coordinator
                .schedules()
                .list_schedules(request)
                .await?
                .into_inner()
                .schedules;
            match output {
                Output::Table => print_text(&render::schedule_list_text(&schedules))?,
                Output::Json => print_json(&schedules.iter().map(render::schedule_json).collect::<Vec<_>>(), true)?,
            }
        }
        ScheduleCommand::Pause { id } => {
            let coordinator = Coordinator::connect(target).await?;
            let schedule = coordinator.schedules().pause_schedule(by_id(id)).await?.into_inner();
            print_schedule(output, &schedule)?;
        }
        ScheduleCommand::Resume { id } => {
            let coordinator = Coordinator::connect(target).await?;
            let schedule = coordinator.schedules().resume_schedule(by_id(id)).await?.into_inner();
            print_schedule(output, &schedule)?;
        }
        ScheduleCommand::Delete { id } => {
            let coordinator = Coordinator::connect(target).await?;
            coordinator.schedules().delete_schedule(by_id(id.clone())).await?;
            match output {
                Output::Table => print_text(&format!("schedule {id} deleted\n"))?,
                Output::Json => print_json(&render::schedule_deleted_json(&id), true)?,
            }
        }
        ScheduleCommand::Trigger { id } => {
            let coordinator = Coordinator::connect(target).await?;
            let tick = coordinator.schedules().trigger_schedule(by_id(id)).await?.into_inner();
            match output {
                Output::Table => print_text(&render::tick_text(&tick))?,
                Output::Json => print_json(&render::tick_json(&tick), true)?,
            }
        }
        ScheduleCommand::History { id, limit } => {
            let coordinator = Coordinator::connect(target).await?;
            let request = ListScheduleTicksRequest {
                id,
                limit: limit.unwrap_or(0),
            };
            let ticks = coordinator
                .schedules()
                .list_schedule_ticks(request)
                .await?
                .into_inner()
                .ticks;
            match output {
                Output::Table => print_text(&render::tick_list_text(&ticks))?,
                Output::Json => print_json(&ticks.iter().map(render::tick_json).collect::<Vec<_>>(), true)?,
            }
        }
    }
    Ok(())
}

/// `baton run submit`: starts the run, then optionally waits for it or watches it.
async fn submit(
    target: &Target,
    output: Output,
    args: SubmitArgs,
    reconnect_for: std::time::Duration,
) -> Result<ExitCode> {
    let input_json = read_input(&args.input)?;
    let coordinator = Coordinator::connect(target).await?;
    let request = SubmitRunRequest {
        workflow: args.workflow,
        version: args.version.unwrap_or(0),
        input_json,
        idempotency_key: args.idempotency_key.unwrap_or_default(),
    };
    let resp = coordinator.runs().submit_run(request).await?.into_inner();
    let following = args.wait || args.watch;
    match output {
        Output::Table => print_text(&render::submit_text(&resp))?,
        // Followed runs print several objects, one per line; a bare submit prints one document.
        Output::Json => print_json(&render::submit_json(&resp), !following)?,
    }
    if !following {
        return Ok(ExitCode::SUCCESS);
    }
    follow(&coordinator, &resp.run_id, output, args.watch, reconnect_for).await
}

/// Follows a run until it ends, printing its events when `show_events`, then prints the finished
/// run and answers the exit status it deserves.
///
/// An outage (the coordinator restarting, its Redis down, a broken stream) is ridden out for
/// `reconnect_for`, with one line on stderr when it starts and one when it ends.
async fn follow(
    coordinator: &Coordinator,
    run_id: &str,
    output: Output,
    show_events: bool,
    reconnect_for: std::time::Duration,
) -> Result<ExitCode> {
    let width = if show_events && output == Output::Table {
        match coordinator.get_run(run_id).await {
            Ok(run) => render::event_subject_width(&run),
            // The width only aligns columns: an outage now is ridden out by follow_run.
            Err(status) if client::is_transient(&status) => 3,
            Err(status) => return Err(status.into()),
        }
    } else {
        0
    };
    let run = coordinator
        .follow_run(run_id, reconnect_for, |event| match (show_events, output) {
            (false, _) => Ok(()),
            (true, Output::Table) => print_text(&(render::event_line(event, width) + "\n")),
            (true, Output::Json) => print_json(&render::event_json(event), false),
        })
        .await?;
    match output {
        Output::Table => print_text(&format!("\n{}", render::run_text(&run, baton_shared::time::now_ms())))?,
        Output::Json => print_json(&render::run_json(&run), false)?,
    }
    Ok(run_exit_code(&run))
}

/// What `baton run logs` prints.
struct LogFilter {
    run_id: String,
    /// Empty: every step.
    step: String,
    /// 0: every attempt.
    attempt: u32,
    /// 0: the coordinator's bound.
    limit: u32,
}

impl LogFilter {
    /// Whether a live line is one this filter prints (as GetStepLogs chooses them).
    fn wants(&self, line: &baton_shared::proto::LogLine) -> bool {
        let step = self.step.is_empty()
            || line.step_id == self.step
            || (!self.step.contains('#')
                && line
                    .step_id
                    .strip_prefix(self.step.as_str())
                    .is_some_and(|rest| rest.starts_with('#')));
        step && (self.attempt == 0 || line.attempt == self.attempt)
    }
}

/// A line's identity, to print it once when it comes both live and in a read.
fn line_key(line: &baton_shared::proto::LogLine) -> (String, u32, Option<(i64, i32)>, String) {
    (
        line.step_id.clone(),
        line.attempt,
        line.time.as_ref().map(|t| (t.seconds, t.nanos)),
        line.message.clone(),
    )
}

/// `baton run logs`: the kept lines; with `follow`, then the live ones until the run finishes
/// (and, at its end, any kept line the stream did not bring, e.g. logged while it reconnected).
async fn logs(
    coordinator: &Coordinator,
    filter: &LogFilter,
    output: Output,
    follow: bool,
    reconnect_for: std::time::Duration,
) -> Result<ExitCode> {
    let print = |line: &baton_shared::proto::LogLine| match output {
        Output::Table => print_text(&(render::log_line(line) + "\n")),
        Output::Json => print_json(&render::log_line_json(line), false),
    };
    let read = || async {
        coordinator
            .runs()
            .get_step_logs(baton_shared::proto::GetStepLogsRequest {
                run_id: filter.run_id.clone(),
                step_id: filter.step.clone(),
                attempt: filter.attempt,
                limit: filter.limit,
            })
            .await
            .map(tonic::Response::into_inner)
    };
    let first = read().await?;
    if first.omitted > 0 {
        eprintln!(
            "note: {} older lines left out (at most {} are printed; --limit)",
            first.omitted,
            if filter.limit == 0 { 10_000 } else { filter.limit }
        );
    }
    let mut seen = std::collections::HashSet::new();
    for line in &first.lines {
        print(line)?;
        if follow {
            seen.insert(line_key(line));
        }
    }
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let run = coordinator
        .follow_run(&filter.run_id, reconnect_for, |event| match event.log.as_ref() {
            Some(line) if event.kind == "log" && filter.wants(line) && seen.insert(line_key(line)) => print(line),
            _ => Ok(()),
        })
        .await?;
    for line in read().await?.lines {
        if seen.insert(line_key(&line)) {
            print(&line)?;
        }
    }
    Ok(run_exit_code(&run))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("baton").chain(args.iter().copied()))
    }

    #[test]
    fn reconnect_for_takes_zero_and_at_most_a_day() {
        let cli = parse(&["--reconnect-for", "0s", "run", "list"]).unwrap();
        assert_eq!(
            cli.reconnect_for,
            std::time::Duration::ZERO,
            "0 gives up at the first error"
        );
        let cli = parse(&["run", "list", "--reconnect-for", "24h"]).unwrap();
        assert_eq!(cli.reconnect_for, std::time::Duration::from_secs(24 * 3600));
        let err = parse(&["--reconnect-for", "25h", "run", "list"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be at most 1day"), "{err}");
        let err = parse(&["--reconnect-for", "soon", "run", "list"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid duration"), "{err}");
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_before_and_after_the_command() {
        let cli = parse(&["--addr", "h:1", "workflow", "list", "--output", "json"]).unwrap();
        assert_eq!(cli.addr, "h:1");
        assert_eq!(cli.output, Output::Json);
        let cli = parse(&["run", "get", "r-1", "--addr", "http://h:2", "-o", "table"]).unwrap();
        assert_eq!(cli.addr, "http://h:2");
        assert_eq!(cli.output, Output::Table);
        assert!(matches!(cli.command, Command::Run(RunCommand::Get { id, step: None }) if id == "r-1"));
        assert!(parse(&["workflow", "list", "--output", "yaml"]).is_err());
    }

    #[test]
    fn address_defaults_to_localhost_without_baton_addr() {
        let cli = parse(&["workflow", "list"]).unwrap();
        match std::env::var("BATON_ADDR") {
            Ok(addr) => assert_eq!(cli.addr, addr),
            Err(_) => assert_eq!(cli.addr, "http://127.0.0.1:7450"),
        }
        assert_eq!(cli.output, Output::Table);
    }

    #[test]
    fn workflow_commands() {
        let cli = parse(&["workflow", "apply", "-f", "wf.yaml"]).unwrap();
        assert!(
            matches!(cli.command, Command::Workflow(WorkflowCommand::Apply { file }) if file.as_os_str() == "wf.yaml")
        );
        assert!(parse(&["workflow", "apply"]).is_err(), "-f is required");
        let cli = parse(&["workflow", "get", "orders", "--version", "3"]).unwrap();
        assert!(
            matches!(cli.command, Command::Workflow(WorkflowCommand::Get { name, version: Some(3) }) if name == "orders")
        );
        let cli = parse(&["workflow", "get", "orders"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Workflow(WorkflowCommand::Get { version: None, .. })
        ));
        assert!(parse(&["workflow", "get", "orders", "--version", "0"]).is_err());
        assert!(parse(&["workflow", "get", "orders", "--version", "x"]).is_err());
    }

    #[test]
    fn submit_arguments() {
        let cli = parse(&["run", "submit", "orders"]).unwrap();
        let Command::Run(RunCommand::Submit(args)) = cli.command else {
            panic!("not submit")
        };
        assert_eq!(args.workflow, "orders");
        assert_eq!(args.input, "{}");
        assert_eq!(
            (args.version, args.idempotency_key, args.wait, args.watch),
            (None, None, false, false)
        );

        let cli = parse(&[
            "run",
            "submit",
            "orders",
            "--input",
            r#"{"a":1}"#,
            "--version",
            "2",
            "--idempotency-key",
            "k1",
            "--wait",
        ])
        .unwrap();
        let Command::Run(RunCommand::Submit(args)) = cli.command else {
            panic!("not submit")
        };
        assert_eq!(args.input, r#"{"a":1}"#);
        assert_eq!(args.version, Some(2));
        assert_eq!(args.idempotency_key.as_deref(), Some("k1"));
        assert!(args.wait && !args.watch);

        assert!(parse(&["run", "submit", "orders", "--wait", "--watch"]).is_err());
        assert!(parse(&["run", "submit"]).is_err(), "the workflow is required");
    }

    #[test]
    fn list_arguments() {
        let cli = parse(&[
            "run",
            "list",
            "--workflow",
            "w",
            "--status",
            "timed_out",
            "--limit",
            "10",
            "--page-token",
            "t",
            "--parent",
            "p-1",
        ])
        .unwrap();
        let Command::Run(RunCommand::List(args)) = cli.command else {
            panic!("not list")
        };
        assert_eq!(args.workflow.as_deref(), Some("w"));
        assert_eq!(args.status, Some(RunStatus::TimedOut));
        assert_eq!(args.limit, Some(10));
        assert_eq!(args.page_token.as_deref(), Some("t"));
        assert_eq!(args.parent.as_deref(), Some("p-1"));
        assert!(parse(&["run", "list", "--limit", "0"]).is_err());
        assert!(parse(&["run", "list", "--limit", "1001"]).is_err());
    }

    #[test]
    fn event_publish_arguments() {
        let cli = parse(&["event", "publish", "payment", "--key", "order-42"]).unwrap();
        let Command::Event(EventCommand::Publish { name, key, payload }) = cli.command else {
            panic!("not event publish")
        };
        assert_eq!(
            (name.as_str(), key.as_str(), payload.as_str()),
            ("payment", "order-42", "null")
        );

        let cli = parse(&[
            "event",
            "publish",
            "payment",
            "--key",
            "",
            "-p",
            "@body.json",
            "-o",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.output, Output::Json);
        let Command::Event(EventCommand::Publish { key, payload, .. }) = cli.command else {
            panic!("not event publish")
        };
        assert_eq!((key.as_str(), payload.as_str()), ("", "@body.json"));
        let cli = parse(&["event", "publish", "payment", "--key", "k", "--payload", "-"]).unwrap();
        assert!(matches!(cli.command, Command::Event(EventCommand::Publish { payload, .. }) if payload == "-"));

        let cli = parse(&["event", "publish", "payment"]).unwrap();
        assert!(
            matches!(cli.command, Command::Event(EventCommand::Publish { key, .. }) if key.is_empty()),
            "--key is optional: an event without a key"
        );
        let cli = parse(&["event", "purge", "payment", "--all-keys"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Event(EventCommand::Purge { all_keys: true, .. })
        ));
        assert!(parse(&["event", "purge", "payment", "--key", "k", "--all-keys"]).is_err());
        assert!(parse(&["event", "list", "--limit", "0"]).is_err());
        assert!(
            parse(&["event", "publish", "--key", "k"]).is_err(),
            "the name is required"
        );
    }

    #[test]
    fn task_list_arguments() {
        let cli = parse(&["task", "list"]).unwrap();
        let Command::Task(TaskCommand::List(args)) = cli.command else {
            panic!("not task list")
        };
        assert_eq!(
            (args.assignee, args.workflow, args.status, args.limit),
            (None, None, None, None)
        );

        let cli = parse(&[
            "task",
            "list",
            "--assignee",
            "alice",
            "--workflow",
            "refunds",
            "--status",
            "completed",
            "--limit",
            "20",
        ])
        .unwrap();
        let Command::Task(TaskCommand::List(args)) = cli.command else {
            panic!("not task list")
        };
        assert_eq!(args.assignee.as_deref(), Some("alice"));
        assert_eq!(args.workflow.as_deref(), Some("refunds"));
        assert_eq!(args.status, Some(TaskStatus::Completed));
        assert_eq!(args.limit, Some(20));
        assert_eq!(
            [TaskStatus::Open, TaskStatus::Completed, TaskStatus::Cancelled].map(TaskStatus::word),
            ["open", "completed", "cancelled"]
        );

        let err = parse(&["task", "list", "--status", "done"]).unwrap_err().to_string();
        assert!(err.contains("open, completed, cancelled"), "{err}");
        assert!(parse(&["task", "list", "--limit", "0"]).is_err());
        assert!(parse(&["task", "list", "--limit", "1001"]).is_err());
    }

    #[test]
    fn task_complete_arguments() {
        let cli = parse(&["task", "complete", "r-1", "approve", "--data", r#"{"ok":true}"#]).unwrap();
        let Command::Task(TaskCommand::Complete { run, step, data, user }) = cli.command else {
            panic!("not task complete")
        };
        assert_eq!(
            (run.as_str(), step.as_str(), data.as_str()),
            ("r-1", "approve", r#"{"ok":true}"#)
        );
        assert_eq!(user, None);

        let cli = parse(&[
            "task",
            "complete",
            "r-1",
            "approve",
            "-d",
            "@form.json",
            "--user",
            "bob",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Task(TaskCommand::Complete { data, user: Some(user), .. }) if data == "@form.json" && user == "bob"
        ));

        assert!(
            parse(&["task", "complete", "r-1", "approve"]).is_err(),
            "--data is required"
        );
        assert!(
            parse(&["task", "complete", "r-1", "--data", "{}"]).is_err(),
            "the step is required"
        );
        assert!(
            parse(&["task", "get", "r-1", "approve"]).is_err(),
            "there is no task get"
        );
    }

    #[test]
    fn schedule_create_arguments() {
        let cli = parse(&["schedule", "create", "--workflow", "reports", "--cron", "0 9 * * 1-5"]).unwrap();
        let Command::Schedule(ScheduleCommand::Create(args)) = cli.command else {
            panic!("not schedule create")
        };
        assert_eq!((args.workflow.as_str(), args.cron.as_str()), ("reports", "0 9 * * 1-5"));
        assert_eq!(
            (
                args.version,
                args.timezone,
                args.input,
                args.overlap,
                args.catchup_window,
                args.id
            ),
            (None, None, None, None, None, None)
        );

        let cli = parse(&[
            "schedule",
            "create",
            "--workflow",
            "reports",
            "--version",
            "2",
            "--cron",
            "*/30 * * * * *",
            "--timezone",
            "Europe/Paris",
            "--input",
            "@input.json",
            "--overlap",
            "buffer_one",
            "--catchup-window",
            "1h 30m",
            "--id",
            "reports-daily",
        ])
        .unwrap();
        let Command::Schedule(ScheduleCommand::Create(args)) = cli.command else {
            panic!("not schedule create")
        };
        assert_eq!(args.version, Some(2));
        assert_eq!(args.timezone.as_deref(), Some("Europe/Paris"));
        assert_eq!(args.input.as_deref(), Some("@input.json"));
        assert_eq!(args.overlap, Some(Overlap::BufferOne));
        assert_eq!(args.catchup_window, Some(5_400_000));
        assert_eq!(args.id.as_deref(), Some("reports-daily"));

        let required = ["schedule", "create", "--workflow", "w", "--cron", "* * * * *"];
        assert!(parse(&required[..4]).is_err(), "--cron is required");
        assert!(
            parse(&["schedule", "create", "--cron", "* * * * *"]).is_err(),
            "--workflow is required"
        );
        assert!(parse(&[&required[..], &["--version", "0"]].concat()).is_err());
        assert!(parse(&[&required[..], &["--catchup-window", "soon"]].concat()).is_err());
    }

    #[test]
    fn overlap_policies_use_the_coordinator_words() {
        for (arg, policy) in [
            ("skip", Overlap::Skip),
            ("buffer_one", Overlap::BufferOne),
            ("allow_all", Overlap::AllowAll),
            ("cancel_other", Overlap::CancelOther),
            ("cancel-other", Overlap::CancelOther),
        ] {
            let cli = parse(&[
                "schedule",
                "create",
                "--workflow",
                "w",
                "--cron",
                "@daily",
                "--overlap",
                arg,
            ])
            .unwrap();
            let Command::Schedule(ScheduleCommand::Create(args)) = cli.command else {
                panic!("not schedule create")
            };
            assert_eq!(args.overlap, Some(policy), "{arg}");
            assert_eq!(policy.word(), arg.replace('-', "_"));
        }
        let err = parse(&[
            "schedule",
            "create",
            "--workflow",
            "w",
            "--cron",
            "@daily",
            "--overlap",
            "queue",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("skip, buffer_one, allow_all, cancel_other"), "{err}");
    }

    #[test]
    fn catchup_windows_are_durations_in_milliseconds() {
        assert_eq!(parse_window_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_window_ms("30s"), Ok(30_000));
        assert_eq!(parse_window_ms(" 250ms "), Ok(250));
        let err = parse_window_ms("0s").unwrap_err();
        assert!(err.contains("must be at least 1ms"), "{err}");
        let err = parse_window_ms("an hour").unwrap_err();
        assert!(err.starts_with("invalid duration \"an hour\""), "{err}");
        let err = parse(&[
            "schedule",
            "create",
            "--workflow",
            "w",
            "--cron",
            "@daily",
            "--catchup-window",
            "1x",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--catchup-window") && err.contains("invalid duration"),
            "{err}"
        );
    }

    #[test]
    fn schedule_commands_take_an_id() {
        let id_of = |args: &[&str]| match parse(args).unwrap().command {
            Command::Schedule(
                ScheduleCommand::Get { id }
                | ScheduleCommand::Pause { id }
                | ScheduleCommand::Resume { id }
                | ScheduleCommand::Delete { id }
                | ScheduleCommand::Trigger { id }
                | ScheduleCommand::History { id, .. },
            ) => id,
            other => panic!("unexpected {other:?}"),
        };
        for verb in ["get", "pause", "resume", "delete", "trigger", "history"] {
            assert_eq!(id_of(&["schedule", verb, "nightly"]), "nightly", "{verb}");
            assert!(parse(&["schedule", verb]).is_err(), "{verb} needs an id");
        }
        let cli = parse(&["schedule", "pause", "nightly", "-o", "json"]).unwrap();
        assert!(matches!(cli.command, Command::Schedule(ScheduleCommand::Pause { .. })));
        assert_eq!(cli.output, Output::Json);
    }

    #[test]
    fn schedule_list_and_history_arguments() {
        let cli = parse(&["schedule", "list"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Schedule(ScheduleCommand::List { workflow: None })
        ));
        let cli = parse(&["schedule", "list", "--workflow", "reports"]).unwrap();
        assert!(
            matches!(cli.command, Command::Schedule(ScheduleCommand::List { workflow: Some(w) }) if w == "reports")
        );

        let cli = parse(&["schedule", "history", "nightly"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Schedule(ScheduleCommand::History { limit: None, .. })
        ));
        let cli = parse(&["schedule", "history", "nightly", "--limit", "20"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Schedule(ScheduleCommand::History { limit: Some(20), .. })
        ));
        assert!(parse(&["schedule", "history", "nightly", "--limit", "0"]).is_err());
        assert!(parse(&["schedule", "history", "nightly", "--limit", "1001"]).is_err());
        assert!(parse(&["schedule", "get"]).is_err());
    }

    #[test]
    fn task_user_comes_from_the_flag_then_user() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(task_user(some("bob"), some("alice")).unwrap(), "bob");
        assert_eq!(task_user(None, some("alice")).unwrap(), "alice");
        for (flag, env) in [(None, None), (None, some("")), (some(" "), None)] {
            let err = task_user(flag, env).unwrap_err().to_string();
            assert_eq!(err, "--user: required (or set $USER)");
        }
    }

    #[test]
    fn json_arguments_name_their_flag() {
        assert_eq!(read_json_arg("--payload", "null").unwrap(), "null");
        let err = read_json_arg("--payload", "{").unwrap_err().to_string();
        assert!(err.starts_with("--payload is not valid JSON: "), "{err}");
        let err = read_json_arg("--data", "@").unwrap_err().to_string();
        assert_eq!(err, "--data @ needs a file name, for example --data @data.json");
        let err = format!("{:#}", read_json_arg("--data", "@/nonexistent/form.json").unwrap_err());
        assert!(err.starts_with("cannot read /nonexistent/form.json"), "{err}");
    }

    #[test]
    fn status_words_are_forgiving_about_case_and_dashes() {
        assert_eq!(parse_run_status("FAILED"), Ok(RunStatus::Failed));
        assert_eq!(parse_run_status("timed-out"), Ok(RunStatus::TimedOut));
    }

    #[test]
    fn unknown_status_lists_the_valid_words() {
        let err = parse(&["run", "list", "--status", "done"]).unwrap_err().to_string();
        assert!(err.contains("unknown run status `done`"), "{err}");
        assert!(
            err.contains("pending, running, succeeded, failed, cancelled, timed_out"),
            "{err}"
        );
    }

    #[test]
    fn literal_input_must_be_json() {
        assert_eq!(read_input(r#"{"a": [1, 2]}"#).unwrap(), r#"{"a": [1, 2]}"#);
        let err = read_input("{a:1}").unwrap_err().to_string();
        assert!(err.starts_with("--input is not valid JSON: "), "{err}");
        assert!(read_input("").is_err());
        assert!(read_input("@").unwrap_err().to_string().contains("needs a file name"));
    }

    #[test]
    fn input_files_are_read_and_checked() {
        let dir = std::env::temp_dir().join(format!("baton-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        let bad = dir.join("bad.json");
        std::fs::write(&good, "{\"order\": 42}\n").unwrap();
        std::fs::write(&bad, "{\"order\": }").unwrap();

        assert_eq!(
            read_input(&format!("@{}", good.display())).unwrap(),
            "{\"order\": 42}\n"
        );
        let err = read_input(&format!("@{}", bad.display())).unwrap_err().to_string();
        assert!(err.contains("bad.json is not valid JSON"), "{err}");
        let missing = dir.join("missing.json");
        let err = format!("{:#}", read_input(&format!("@{}", missing.display())).unwrap_err());
        assert!(err.starts_with(&format!("cannot read {}", missing.display())), "{err}");

        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exit_code_follows_the_run_status() {
        let run = |status: RunStatus| Run {
            status: status as i32,
            ..Run::default()
        };
        assert_eq!(run_exit_code(&run(RunStatus::Succeeded)), ExitCode::SUCCESS);
        for status in [RunStatus::Failed, RunStatus::Cancelled, RunStatus::TimedOut] {
            assert_eq!(run_exit_code(&run(status)), ExitCode::from(1));
        }
    }
}
