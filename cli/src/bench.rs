//! `baton bench`: measures a running coordinator and its workers the way Baton's peers were
//! measured, and prints medians. It starts nothing: it registers its own workflows (under a name
//! unique to the invocation) on the coordinator at `--addr`, and needs a worker that serves the
//! `echo` handler (`baton-worker`, the stock worker) in the coordinator's namespace.
//!
//! Measurements (each repeated `--repeat` times; the median is printed):
//! - **one-step runs**: N runs of a one-step workflow submitted with 64 in flight, each awaited
//!   (`--wait`: by following its `WatchRun` stream to the end and one `GetRun`, the default, or by
//!   polling `GetRun`). Two rates: what the client observed (runs / wall time from the first submit to
//!   the last run seen finished) and the engine's own (runs / time from the first run's `created_at`
//!   to the last run's `finished_at`, both from the runs' own timestamps); and the median time per
//!   run as each side sees it (submit to seen finished; `created_at` to `finished_at`).
//! - **chain**: one run of a 50-step chain; milliseconds per step from the run's own timestamps
//!   (`(finished_at - created_at) / 50`).
//! - **fan-out**: one run of a `for_each` step over 1,000 and over 10,000 elements (at most 100 at
//!   once), then a join step; seconds from `created_at` to `finished_at`, and elements per second.
//! - **GetRun latency**: p50 and p99 of sequential `GetRun` calls on random runs among 100,000 stored
//!   runs. The stored runs are runs of the one-step workflow (so every stored run has a step and an
//!   output, like a real run), submitted 64 at a time without polling, then awaited.
//! - **floor** (`--floor`): what one step costs without Baton's logic on the same servers (see
//!   [`floor`]), in ms per step; the chain's ms per step is then also printed as a ratio to it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use baton_shared::credentials::AuthChannel;
use baton_shared::proto::run_service_client::RunServiceClient;
use baton_shared::proto::{GetRunRequest, RegisterWorkflowRequest, Run, RunStatus, SubmitRunRequest, WatchRunRequest};
use baton_shared::time::millis;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::Output;
use crate::client::Coordinator;

mod floor;

/// Steps of the chain workflow.
const CHAIN_STEPS: usize = 50;
/// Longest wait for the probe run that checks a worker serves the handler.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most elements of one fan-out step handled at once (the engine's default and largest).
const FAN_OUT_PARALLEL: u32 = 100;

/// Arguments of `baton bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A small version: 200 one-step runs, fan-outs of 100 and 1,000 elements, 2,000 stored runs,
    /// 500 GetRun calls per latency sample.
    #[arg(long)]
    pub quick: bool,
    /// One-step runs per repetition (default 2,000; 200 with --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub runs: Option<u32>,
    /// Runs in flight at once (submitted and not yet seen finished).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub in_flight: u32,
    /// Repetitions of each measurement; the median is printed.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Runs stored before GetRun latency is measured (default 100,000; 2,000 with --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub stored_runs: Option<u32>,
    /// GetRun calls per latency sample (default 2,000; 500 with --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub samples: Option<u32>,
    /// How the bench waits for each run: `watch` follows its WatchRun stream to the end, then reads
    /// it once with GetRun (what the SDKs' `wait` does, and a blocking wait like the results
    /// backend the Dramatiq comparison uses); `poll` calls GetRun until it is over.
    #[arg(long, value_enum, value_name = "HOW", default_value = "watch")]
    pub wait: Wait,
    /// With `--wait poll`: longest gap between two polls of a run (polling starts at 1 ms and grows
    /// by half up to this).
    #[arg(long, value_name = "DURATION", default_value = "20ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Longest wait for any one run or batch of runs to finish before the bench gives up.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The handler the bench workflows run (it must return quickly; `echo` of `baton-worker`).
    #[arg(long, value_name = "HANDLER", default_value = "echo")]
    pub handler: String,
    /// Only these measurements (comma-separated; default: all but the floor).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PART")]
    pub only: Vec<Part>,
    /// Also measure the floor: one EVALSHA, one confirmed publish, one consume + ack and one gRPC
    /// call, one after the other, on the coordinator's Redis and RabbitMQ (`--redis-url`,
    /// `--amqp-url`); the chain is then also given as a ratio to it.
    #[arg(long)]
    pub floor: bool,
    /// Floor steps per repetition (default 1,000; 200 with --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub floor_steps: Option<u32>,
    /// The coordinator's Redis, for the floor.
    #[arg(
        long,
        value_name = "URL",
        env = "BATON_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// The coordinator's RabbitMQ, for the floor.
    #[arg(
        long,
        value_name = "URL",
        env = "BATON_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
}

/// How `baton bench` waits for a run to finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Wait {
    /// Follow the run's WatchRun stream to its end, then one GetRun.
    Watch,
    /// Poll GetRun.
    Poll,
}

/// One measurement of `baton bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Part {
    /// The floor: one step's operations without Baton's logic (measured first, so that the chain
    /// can be given as a ratio to it).
    Floor,
    /// One-step runs with N in flight: client-observed and engine runs/s.
    Runs,
    /// A 50-step chain: ms per step.
    Chain,
    /// 1,000- and 10,000-element fan-outs with a join.
    Fanout,
    /// GetRun latency p50/p99 with many stored runs.
    Getrun,
}

/// A `--poll-interval` or `--timeout` duration (`20ms`, `10m`), at least 1 ms.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = baton_shared::duration::parse(s)?;
    if d < Duration::from_millis(1) {
        return Err(format!("{s:?} is too short: must be at least 1ms"));
    }
    Ok(d)
}

/// The sizes the bench uses, after `--quick` and the flags.
struct Plan {
    runs: u32,
    fan_outs: [u32; 2],
    stored_runs: u32,
    samples: u32,
    floor_steps: u32,
}

impl Plan {
    fn new(args: &BenchArgs) -> Self {
        let (runs, fan_outs, stored_runs, samples, floor_steps) = if args.quick {
            (200, [100, 1_000], 2_000, 500, 200)
        } else {
            (2_000, [1_000, 10_000], 100_000, 2_000, 1_000)
        };
        Self {
            runs: args.runs.unwrap_or(runs),
            fan_outs,
            stored_runs: args.stored_runs.unwrap_or(stored_runs),
            samples: args.samples.unwrap_or(samples),
            floor_steps: args.floor_steps.unwrap_or(floor_steps),
        }
    }
}

/// The workflows one invocation registers: `<prefix>-one`, `<prefix>-chain`, `<prefix>-fanout`.
struct Workflows {
    one: String,
    chain: String,
    fanout: String,
}

/// Runs `baton bench` against the coordinator at `addr` and prints the results.
///
/// # Errors
/// No connection, a refused registration or submit, a run that does not succeed, no worker serving
/// the handler (the probe run does not finish within a minute), or a wait over `--timeout`.
pub async fn run(target: &crate::client::Target, output: Output, args: BenchArgs) -> Result<()> {
    let plan = Plan::new(&args);
    let parts = parts(&args);
    let coordinator = Coordinator::connect(target).await?;
    let workflows = register(&coordinator, &args.handler).await?;
    let client = coordinator.runs();
    let bench = Bench {
        client,
        wait: args.wait,
        poll_cap: args.poll_interval,
        timeout: args.timeout,
    };
    note(
        output,
        &format!(
            "baton bench: coordinator {}, workflows {}/-chain/-fanout, handler {:?}, {} repetitions (medians)",
            crate::client::normalize_addr(&target.addr),
            workflows.one,
            args.handler,
            args.repeat
        ),
    );
    bench.probe(&workflows.one, &args.handler).await?;

    let mut report = serde_json::Map::new();
    report.insert("workflow_prefix".into(), json!(workflows.one.trim_end_matches("-one")));
    report.insert("repetitions".into(), json!(args.repeat));
    // The floor's median ms per step, once measured.
    let mut floor_ms: Option<f64> = None;
    for part in parts {
        match part {
            Part::Floor => {
                let id = workflows.one.trim_start_matches("bench-").trim_end_matches("-one");
                let mut floor =
                    floor::Floor::connect(&args.redis_url, &args.amqp_url, coordinator.health(), id).await?;
                let mut samples = Vec::new();
                let mut failed = None;
                for rep in 1..=args.repeat {
                    match floor.measure(plan.floor_steps).await {
                        Ok(f) => {
                            note(
                                output,
                                &format!(
                                    "  floor #{rep}: {:.3} ms per step (EVALSHA {:.3}, publish to consumed + acked {:.3}, to confirmed {:.3}, gRPC {:.3})",
                                    f.step_ms, f.evalsha_ms, f.consume_ack_ms, f.publish_ms, f.grpc_ms
                                ),
                            );
                            samples.push(f);
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                floor.close().await;
                if let Some(e) = failed {
                    return Err(e);
                }
                let pick = |f: fn(&floor::FloorSample) -> f64| median(&mut samples.iter().map(f).collect::<Vec<_>>());
                let (step, evalsha, publish, consume, grpc) = (
                    pick(|f| f.step_ms),
                    pick(|f| f.evalsha_ms),
                    pick(|f| f.publish_ms),
                    pick(|f| f.consume_ack_ms),
                    pick(|f| f.grpc_ms),
                );
                line(
                    output,
                    &format!(
                        "floor ({} steps: one EVALSHA, one confirmed publish and its consume + ack, one gRPC call): {step:.3} ms per step (EVALSHA {evalsha:.3}, publish to consumed + acked {consume:.3}, to confirmed {publish:.3}, gRPC {grpc:.3})",
                        plan.floor_steps
                    ),
                );
                report.insert(
                    "floor".into(),
                    json!({"steps": plan.floor_steps, "ms_per_step": step, "evalsha_ms": evalsha,
                           "publish_ms": publish, "consume_ack_ms": consume, "grpc_ms": grpc,
                           "ms_per_step_each": samples.iter().map(|f| f.step_ms).collect::<Vec<_>>()}),
                );
                floor_ms = Some(step);
            }
            Part::Runs => {
                let mut client_rates = Vec::new();
                let mut engine_rates = Vec::new();
                let mut client_ms = Vec::new();
                let mut engine_ms = Vec::new();
                for rep in 1..=args.repeat {
                    let r = bench.one_step_runs(&workflows.one, plan.runs, args.in_flight).await?;
                    note(
                        output,
                        &format!(
                            "  one-step runs #{rep}: client {:.0} runs/s, engine {:.0} runs/s; per run: client {:.1} ms, engine {:.1} ms",
                            r.client_rate, r.engine_rate, r.client_ms, r.engine_ms
                        ),
                    );
                    client_rates.push(r.client_rate);
                    engine_rates.push(r.engine_rate);
                    client_ms.push(r.client_ms);
                    engine_ms.push(r.engine_ms);
                }
                let (c, e) = (median(&mut client_rates), median(&mut engine_rates));
                let (cm, em) = (median(&mut client_ms), median(&mut engine_ms));
                line(
                    output,
                    &format!(
                        "one-step runs ({} runs, {} in flight, awaited by {}): client-observed {c:.0} runs/s, engine {e:.0} runs/s (client/engine {:.2}); median per run: client {cm:.1} ms from submit to seen finished, engine {em:.1} ms from created_at to finished_at",
                        plan.runs,
                        args.in_flight,
                        match args.wait {
                            Wait::Watch => "WatchRun",
                            Wait::Poll => "polling GetRun",
                        },
                        ratio(c, e)
                    ),
                );
                report.insert(
                    "one_step_runs".into(),
                    json!({"runs": plan.runs, "in_flight": args.in_flight, "wait": format!("{:?}", args.wait).to_lowercase(), "client_runs_per_s": c,
                           "engine_runs_per_s": e, "client_run_ms": cm, "engine_run_ms": em,
                           "client_runs_per_s_each": client_rates, "engine_runs_per_s_each": engine_rates}),
                );
            }
            Part::Chain => {
                let mut per_step = Vec::new();
                for rep in 1..=args.repeat {
                    let run = bench.one_run(&workflows.chain, json!({"rep": rep})).await?;
                    let ms = run_ms(&run) / CHAIN_STEPS as f64;
                    note(output, &format!("  chain #{rep}: {ms:.2} ms per step"));
                    per_step.push(ms);
                }
                let m = median(&mut per_step);
                let to_floor = floor_ms.map(|f| ratio(m, f));
                let versus = to_floor.map_or_else(String::new, |r| format!(", {r:.2}x the floor"));
                line(
                    output,
                    &format!(
                        "{CHAIN_STEPS}-step chain: {m:.2} ms per step (from the run's created_at to finished_at){versus}"
                    ),
                );
                report.insert(
                    "chain".into(),
                    json!({"steps": CHAIN_STEPS, "ms_per_step": m, "ms_per_step_each": per_step,
                           "ratio_to_floor": to_floor}),
                );
            }
            Part::Fanout => {
                let mut fan = Vec::new();
                for size in plan.fan_outs {
                    let items: Vec<u32> = (0..size).collect();
                    let mut secs = Vec::new();
                    for rep in 1..=args.repeat {
                        let run = bench
                            .one_run(&workflows.fanout, json!({"items": items, "rep": rep}))
                            .await?;
                        let s = run_ms(&run) / 1_000.0;
                        note(output, &format!("  fan-out {size} #{rep}: {s:.2} s"));
                        secs.push(s);
                    }
                    let m = median(&mut secs);
                    line(
                        output,
                        &format!(
                            "fan-out of {size} elements (at most {FAN_OUT_PARALLEL} at once) + join: {m:.2} s ({:.0} elements/s)",
                            f64::from(size) / m.max(1e-9)
                        ),
                    );
                    fan.push(
                        json!({"elements": size, "seconds": m, "elements_per_s": f64::from(size) / m.max(1e-9),
                                    "seconds_each": secs}),
                    );
                }
                report.insert("fan_out".into(), json!(fan));
            }
            Part::Getrun => {
                let ids = bench
                    .store_runs(&workflows.one, plan.stored_runs, args.in_flight, output)
                    .await?;
                let mut p50s = Vec::new();
                let mut p99s = Vec::new();
                for rep in 1..=args.repeat {
                    let (p50, p99) = bench.get_run_latency(&ids, plan.samples, u64::from(rep)).await?;
                    note(output, &format!("  GetRun #{rep}: p50 {p50:.3} ms, p99 {p99:.3} ms"));
                    p50s.push(p50);
                    p99s.push(p99);
                }
                let (p50, p99) = (median(&mut p50s), median(&mut p99s));
                line(
                    output,
                    &format!(
                        "GetRun with {} stored runs ({} calls on random runs, one at a time): p50 {p50:.3} ms, p99 {p99:.3} ms",
                        plan.stored_runs, plan.samples
                    ),
                );
                report.insert(
                    "get_run".into(),
                    json!({"stored_runs": plan.stored_runs, "calls": plan.samples, "p50_ms": p50, "p99_ms": p99,
                           "p50_ms_each": p50s, "p99_ms_each": p99s}),
                );
            }
        }
    }
    if output == Output::Json {
        crate::print_json(&Value::Object(report), true)?;
    }
    Ok(())
}

/// The measurements asked for, in the order they run: `--only`'s (default: all but the floor),
/// with the floor first when `--floor` is given.
fn parts(args: &BenchArgs) -> Vec<Part> {
    let mut p = if args.only.is_empty() {
        vec![Part::Runs, Part::Chain, Part::Fanout, Part::Getrun]
    } else {
        args.only.clone()
    };
    if args.floor {
        p.push(Part::Floor);
    }
    p.sort();
    p.dedup();
    p
}

/// Registers the bench workflows under a prefix unique to this invocation
/// (`bench-<unix ms in hex>-<pid>`).
async fn register(coordinator: &Coordinator, handler: &str) -> Result<Workflows> {
    let prefix = format!("bench-{:x}-{}", baton_shared::time::now_ms().max(0), std::process::id());
    let handler_json = json!(handler);
    let one = json!({
        "name": format!("{prefix}-one"), "version": 1,
        "description": "baton bench: one step",
        "steps": [{"id": "only", "handler": handler_json}],
    });
    let chain_steps: Vec<Value> = (1..=CHAIN_STEPS)
        .map(|i| {
            let mut s = json!({"id": format!("s{i:02}"), "handler": handler_json});
            if i > 1 {
                s["depends_on"] = json!([format!("s{:02}", i - 1)]);
            }
            s
        })
        .collect();
    let chain = json!({
        "name": format!("{prefix}-chain"), "version": 1,
        "description": format!("baton bench: a chain of {CHAIN_STEPS} steps"),
        "steps": chain_steps,
    });
    let fanout = json!({
        "name": format!("{prefix}-fanout"), "version": 1,
        "description": "baton bench: a fan-out over input.items, then a join",
        "steps": [
            {"id": "fan", "handler": handler_json, "for_each": "input.items", "max_parallel": FAN_OUT_PARALLEL},
            {"id": "join", "handler": handler_json, "depends_on": ["fan"]},
        ],
    });
    let mut workflows = coordinator.workflows();
    for def in [&one, &chain, &fanout] {
        workflows
            .register_workflow(RegisterWorkflowRequest {
                definition: def.to_string(),
            })
            .await
            .with_context(|| format!("registering the bench workflow {}", def["name"]))?;
    }
    Ok(Workflows {
        one: format!("{prefix}-one"),
        chain: format!("{prefix}-chain"),
        fanout: format!("{prefix}-fanout"),
    })
}

/// The run client and the polling settings.
struct Bench {
    client: RunServiceClient<AuthChannel>,
    wait: Wait,
    poll_cap: Duration,
    timeout: Duration,
}

impl Bench {
    /// Submits one run and answers its id.
    async fn submit(&self, workflow: &str, input: &Value) -> Result<String> {
        let request = SubmitRunRequest {
            workflow: workflow.to_owned(),
            input_json: input.to_string(),
            ..Default::default()
        };
        Ok(self.client.clone().submit_run(request).await?.into_inner().run_id)
    }

    /// Waits for the run to be over (`--wait`); the run must have succeeded.
    async fn await_run(&self, run_id: &str) -> Result<Run> {
        match self.wait {
            Wait::Poll => self.poll_run(run_id).await,
            Wait::Watch => self.watch_run(run_id).await,
        }
    }

    /// Follows the run's WatchRun stream to its end (the stream ends after the run finishes,
    /// with the run as its last message: `include_run`), as the SDKs' `wait` does; the run must
    /// have succeeded. A coordinator that sends no final run (one before `include_run`) is asked
    /// with one GetRun.
    async fn watch_run(&self, run_id: &str) -> Result<Run> {
        let mut client = self.client.clone();
        let follow = async {
            let mut events = client
                .watch_run(WatchRunRequest {
                    run_id: run_id.to_owned(),
                    include_run: true,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let mut last = None;
            while let Some(event) = events.message().await? {
                if event.kind == "final" {
                    last = event.run;
                }
            }
            anyhow::Ok(last)
        };
        let last = tokio::time::timeout(self.timeout, follow).await.map_err(|_| {
            anyhow::anyhow!(
                "bench run {run_id} did not finish within {} (--timeout)",
                humantime::format_duration(self.timeout)
            )
        })??;
        let run = match last {
            Some(run) => run,
            None => self.get_run(run_id).await?,
        };
        if !crate::client::is_terminal(run.status) {
            bail!(
                "bench run {run_id} of {}: its WatchRun stream ended before the run; {}",
                run.workflow,
                waiting_detail(&run)
            );
        }
        succeeded(run)
    }

    /// Polls `GetRun` until the run is over (1 ms, then half as long again each time, up to
    /// `poll_cap`); the run must have succeeded.
    async fn poll_run(&self, run_id: &str) -> Result<Run> {
        let start = Instant::now();
        let mut gap = Duration::from_millis(1);
        loop {
            let run = self.get_run(run_id).await?;
            if crate::client::is_terminal(run.status) {
                return succeeded(run);
            }
            if start.elapsed() > self.timeout {
                bail!(
                    "bench run {run_id} of {} did not finish within {} (--timeout); {}",
                    run.workflow,
                    humantime::format_duration(self.timeout),
                    waiting_detail(&run)
                );
            }
            tokio::time::sleep(gap).await;
            gap = (gap + gap / 2).min(self.poll_cap);
        }
    }

    /// The run as GetRun answers it.
    async fn get_run(&self, run_id: &str) -> Result<Run> {
        let request = GetRunRequest {
            run_id: run_id.to_owned(),
            ..Default::default()
        };
        Ok(self.client.clone().get_run(request).await?.into_inner())
    }

    /// Submits one run and waits for it.
    async fn one_run(&self, workflow: &str, input: Value) -> Result<Run> {
        let id = self.submit(workflow, &input).await?;
        self.await_run(&id).await
    }

    /// Checks that a worker serves the handler: one run of the one-step workflow must finish within
    /// [`PROBE_TIMEOUT`].
    async fn probe(&self, workflow: &str, handler: &str) -> Result<()> {
        let id = self.submit(workflow, &json!({"probe": true})).await?;
        let probe = Bench {
            client: self.client.clone(),
            wait: Wait::Poll,
            poll_cap: Duration::from_millis(100),
            timeout: PROBE_TIMEOUT,
        };
        probe.await_run(&id).await.with_context(|| {
            format!(
                "no worker seems to serve handler {handler:?} for this coordinator: start one (`baton-worker`, \
                 with the coordinator's BATON_NAMESPACE and --coordinator/BATON_COORDINATOR pointing at it)"
            )
        })?;
        Ok(())
    }

    /// N one-step runs, `in_flight` at a time, each awaited (`--wait`).
    async fn one_step_runs(&self, workflow: &str, n: u32, in_flight: u32) -> Result<OneStep> {
        let start = Instant::now();
        let mut set: JoinSet<Result<(Run, f64)>> = JoinSet::new();
        let mut runs = Vec::with_capacity(n as usize);
        for i in 0..n {
            while set.len() >= in_flight as usize {
                runs.push(joined(set.join_next().await)?);
            }
            let bench = self.clone_handle();
            let wf = workflow.to_owned();
            set.spawn(async move {
                let submitted = Instant::now();
                let run = bench.one_run(&wf, json!({"i": i})).await?;
                Ok((run, submitted.elapsed().as_secs_f64() * 1_000.0))
            });
        }
        while let Some(r) = set.join_next().await {
            runs.push(joined(Some(r))?);
        }
        let wall = start.elapsed().as_secs_f64();
        let first_created = runs.iter().map(|(r, _)| ms(&r.created_at)).min().unwrap_or(0);
        let last_finished = runs.iter().map(|(r, _)| ms(&r.finished_at)).max().unwrap_or(0);
        let engine_secs = (last_finished.saturating_sub(first_created)).max(1) as f64 / 1_000.0;
        let mut client_ms: Vec<f64> = runs.iter().map(|(_, c)| *c).collect();
        let mut engine_ms: Vec<f64> = runs.iter().map(|(r, _)| run_ms(r)).collect();
        Ok(OneStep {
            client_rate: f64::from(n) / wall.max(1e-9),
            engine_rate: f64::from(n) / engine_secs,
            client_ms: median(&mut client_ms),
            engine_ms: median(&mut engine_ms),
        })
    }

    /// A handle for a spawned task (the client is a cheap clone of one channel).
    fn clone_handle(&self) -> Bench {
        Bench {
            client: self.client.clone(),
            wait: self.wait,
            poll_cap: self.poll_cap,
            timeout: self.timeout,
        }
    }

    /// Stores `n` runs of the one-step workflow: submitted `in_flight` at a time without polling,
    /// then awaited (every run is checked finished before latency is measured). Answers their ids.
    async fn store_runs(&self, workflow: &str, n: u32, in_flight: u32, output: Output) -> Result<Vec<String>> {
        let start = Instant::now();
        let mut set: JoinSet<Result<String>> = JoinSet::new();
        let mut ids = Vec::with_capacity(n as usize);
        for i in 0..n {
            while set.len() >= in_flight as usize {
                ids.push(joined(set.join_next().await)?);
            }
            let bench = self.clone_handle();
            let wf = workflow.to_owned();
            set.spawn(async move { bench.submit(&wf, &json!({"stored": i})).await });
            if i > 0 && i % 10_000 == 0 {
                note(
                    output,
                    &format!("  stored {i} runs ({:.0} s)", start.elapsed().as_secs_f64()),
                );
            }
        }
        while let Some(r) = set.join_next().await {
            ids.push(joined(Some(r))?);
        }
        let submitted = start.elapsed().as_secs_f64();
        // Wait for all of them, oldest first, `in_flight` at a time (a finished run is one GetRun).
        let mut waits: JoinSet<Result<Run>> = JoinSet::new();
        for id in &ids {
            while waits.len() >= in_flight as usize {
                joined(waits.join_next().await)?;
            }
            let bench = self.clone_handle();
            let id = id.clone();
            waits.spawn(async move { bench.await_run(&id).await });
        }
        while let Some(r) = waits.join_next().await {
            joined(Some(r))?;
        }
        note(
            output,
            &format!(
                "  stored {n} runs: submitted in {submitted:.0} s, all finished after {:.0} s",
                start.elapsed().as_secs_f64()
            ),
        );
        Ok(ids)
    }

    /// `samples` sequential `GetRun` calls on random runs of `ids`: answers (p50, p99) in ms.
    async fn get_run_latency(&self, ids: &[String], samples: u32, seed: u64) -> Result<(f64, f64)> {
        if ids.is_empty() {
            bail!("no stored runs to read");
        }
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let mut client = self.client.clone();
        let mut latencies = Vec::with_capacity(samples as usize);
        for _ in 0..samples {
            let i = usize::try_from(rng.next() % ids.len() as u64).unwrap_or(0);
            let start = Instant::now();
            client
                .get_run(GetRunRequest {
                    run_id: ids[i].clone(),
                    ..Default::default()
                })
                .await?;
            latencies.push(start.elapsed().as_secs_f64() * 1_000.0);
        }
        latencies.sort_by(f64::total_cmp);
        Ok((percentile(&latencies, 50.0), percentile(&latencies, 99.0)))
    }
}

/// One repetition of the one-step runs.
struct OneStep {
    /// Runs per second from the first submit to the last run seen finished.
    client_rate: f64,
    /// Runs per second from the first run's `created_at` to the last run's `finished_at`.
    engine_rate: f64,
    /// Median ms from a submit to the poll that saw its run finished.
    client_ms: f64,
    /// Median ms from a run's `created_at` to its `finished_at`.
    engine_ms: f64,
}

/// A tiny xorshift64 generator: enough to pick runs at random without another dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0.max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// The result of a joined task, its panic or cancellation as an error.
fn joined<T>(r: Option<Result<Result<T>, tokio::task::JoinError>>) -> Result<T> {
    match r {
        Some(Ok(r)) => r,
        Some(Err(e)) => bail!("a bench task failed: {e}"),
        None => bail!("no bench task left to join"),
    }
}

/// Unix ms of an optional timestamp (0 when unset).
fn ms(ts: &Option<prost_types::Timestamp>) -> i64 {
    ts.as_ref().map(millis).unwrap_or(0)
}

/// A finished run's duration in ms, from its own `created_at` to `finished_at`.
fn run_ms(run: &Run) -> f64 {
    ms(&run.finished_at).saturating_sub(ms(&run.created_at)).max(0) as f64
}

/// `run`, a finished bench run, when it succeeded; an error naming how it ended otherwise.
fn succeeded(run: Run) -> Result<Run> {
    if run.status != RunStatus::Succeeded as i32 {
        bail!(
            "bench run {} of {} ended {}: {}",
            run.id,
            run.workflow,
            crate::render::run_status_word(run.status),
            run.error
        );
    }
    Ok(run)
}

/// What an unfinished run waits for, from `GetRun` (`run waits for ...; step s: ...`).
fn waiting_detail(run: &Run) -> String {
    let mut parts = Vec::new();
    if !run.waiting_for.is_empty() {
        parts.push(format!("the run waits for {}", run.waiting_for));
    }
    let mut steps: BTreeMap<String, usize> = BTreeMap::new();
    for s in &run.steps {
        *steps.entry(crate::render::step_status_word(s.status)).or_default() += 1;
        if !s.waiting_for.is_empty() && parts.len() < 3 {
            parts.push(format!("step {} waits for {}", s.id, s.waiting_for));
        }
    }
    let counts: Vec<String> = steps.iter().map(|(w, n)| format!("{n} {w}")).collect();
    parts.push(format!("steps: {}", counts.join(", ")));
    parts.join("; ")
}

/// The median of `values` (sorts them); 0 for none.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The `p`th percentile of sorted `values` (nearest rank); 0 for none.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `a / b`, 0 when `b` is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// A result line: standard output in table mode (JSON mode prints one document at the end).
fn line(output: Output, text: &str) {
    if output == Output::Table {
        println!("{text}");
    }
}

/// Progress: standard error, so that standard output holds only results.
fn note(_output: Output, text: &str) {
    eprintln!("{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn quick_is_small_and_flags_override_it() {
        let args = |quick, runs| BenchArgs {
            quick,
            runs,
            in_flight: 64,
            repeat: 3,
            stored_runs: None,
            samples: None,
            wait: Wait::Watch,
            poll_interval: Duration::from_millis(20),
            timeout: Duration::from_secs(600),
            handler: "echo".into(),
            only: Vec::new(),
            floor: false,
            floor_steps: None,
            redis_url: String::new(),
            amqp_url: String::new(),
        };
        let full = Plan::new(&args(false, None));
        assert_eq!(
            (full.runs, full.fan_outs, full.stored_runs),
            (2_000, [1_000, 10_000], 100_000)
        );
        let quick = Plan::new(&args(true, Some(50)));
        assert_eq!(
            (quick.runs, quick.fan_outs, quick.stored_runs),
            (50, [100, 1_000], 2_000)
        );
    }

    #[test]
    fn the_floor_runs_first_and_only_when_asked() {
        let args = |only: Vec<Part>, floor| BenchArgs {
            quick: false,
            runs: None,
            in_flight: 64,
            repeat: 3,
            stored_runs: None,
            samples: None,
            wait: Wait::Watch,
            poll_interval: Duration::from_millis(20),
            timeout: Duration::from_secs(600),
            handler: "echo".into(),
            only,
            floor,
            floor_steps: None,
            redis_url: String::new(),
            amqp_url: String::new(),
        };
        assert_eq!(
            parts(&args(vec![], false)),
            [Part::Runs, Part::Chain, Part::Fanout, Part::Getrun]
        );
        assert_eq!(
            parts(&args(vec![], true)),
            [Part::Floor, Part::Runs, Part::Chain, Part::Fanout, Part::Getrun]
        );
        assert_eq!(
            parts(&args(vec![Part::Chain, Part::Floor], false)),
            [Part::Floor, Part::Chain]
        );
        assert_eq!(parts(&args(vec![Part::Chain], true)), [Part::Floor, Part::Chain]);
    }

    #[test]
    fn poll_durations_must_be_positive() {
        assert_eq!(parse_duration("20ms"), Ok(Duration::from_millis(20)));
        assert!(parse_duration("0s").is_err());
    }
}
