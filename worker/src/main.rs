//! `baton-worker`: the stock worker with generic handlers that read their parameters from the run
//! input:
//! - `echo` returns its input;
//! - `sleep` sleeps `{"ms": N}` milliseconds (heartbeating if the step has a heartbeat timeout);
//! - `fail` fails with a retryable error before attempt `{"succeed_on_attempt": N}`, or with a
//!   non-retryable one when `{"fatal": true}`; otherwise returns `{"attempt": n}`.

use std::time::Duration;

use baton_worker::{StepContext, StepError, Worker, WorkerArgs};
use clap::Parser;
use serde::Deserialize;
use serde_json::{Value, json};

/// jemalloc rather than glibc's malloc: over `baton bench`'s full sequence the stock worker spent 7%
/// less CPU on it (docs/benchmark.md, "Allocator: jemalloc"). A worker binary of your own picks its
/// own allocator.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Baton's stock worker (handlers: echo, sleep, fail).
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    worker: WorkerArgs,
}

#[derive(Deserialize)]
struct SleepInput {
    ms: u64,
}

#[derive(Deserialize, Default)]
struct FailInput {
    #[serde(default)]
    succeed_on_attempt: Option<u32>,
    #[serde(default)]
    fatal: bool,
}

async fn sleep(ctx: StepContext, input: SleepInput) -> Result<Value, StepError> {
    let total = Duration::from_millis(input.ms);
    let beat = ctx
        .heartbeat_timeout()
        .map(|hb| hb / 3)
        .unwrap_or(total)
        .max(Duration::from_millis(10));
    let start = tokio::time::Instant::now();
    while start.elapsed() < total {
        tokio::time::sleep(beat.min(total - start.elapsed())).await;
        if ctx.heartbeat_timeout().is_some() && start.elapsed() < total {
            ctx.heartbeat().await?;
        }
    }
    Ok(json!({"slept_ms": input.ms}))
}

async fn fail(ctx: StepContext, input: FailInput) -> Result<Value, StepError> {
    if input.fatal {
        return Err(StepError::non_retryable("asked to fail fatally").with_type("Fatal"));
    }
    if let Some(n) = input.succeed_on_attempt
        && ctx.attempt() < n
    {
        return Err(StepError::retryable(format!(
            "attempt {} fails; succeeding on attempt {n}",
            ctx.attempt()
        )));
    }
    Ok(json!({"attempt": ctx.attempt()}))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    baton_worker::init_tracing();
    let args = Args::parse();
    let worker = Worker::new(args.worker.config())
        .handler("echo", |_ctx: StepContext, input: Value| async move {
            Ok::<_, StepError>(input)
        })
        .handler("sleep", sleep)
        .handler("fail", fail);
    match worker.run(baton_worker::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
