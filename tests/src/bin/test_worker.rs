//! The worker the end-to-end tests run, built with the SDK. Every handler first counts its execution
//! in Redis (`{<namespace>}:test:exec:<run>:<step>`), so tests can assert how many times a handler
//! really ran.
//!
//! Handlers: `echo` (returns its input), `trace` (returns its step id, the outputs it received and
//! the attempt), `fail` (`{"succeed_on_attempt": N}` / `{"fatal": true}` / `{"error_type": T}`),
//! `slow` (`{"ms": N, "only_attempt": A}`: sleeps N ms, on attempt A only when given),
//! `patient` (`{"ticks": N, "ms": M}`: emits `{"tick": i}` N times, M ms apart, and stops early when
//! the run is cancelled, counting that in `{<namespace>}:test:saw-cancel:<run>:<step>`),
//! `square` (a fan-out element `{"n": N, "ms": M, "fail_once": bool}` or a bare number: returns
//! N*N after M ms; counts each element's executions in the hash `{<namespace>}:test:items:<run>:<step>`),
//! `screen` (computes first, then suspends until event `review` with key `input.key`; resumed, it
//! returns what it computed and the event's payload; counts `exec` and `resumed`),
//! `guarded` (`{"pool": P, "ms": M}`: counts how many run at once per pool in
//! `{<namespace>}:test:inside:<P>`, keeps the most ever seen in `{<namespace>}:test:max-inside:<P>`,
//! appends its start time (Unix ms) to the list `{<namespace>}:test:starts:<P>`, sleeps M ms),
//! `chatty` (`{"lines": N, "ms": M, "succeed_on_attempt": A}`: logs N lines `line i of attempt a`
//! with `ctx.log`, levels debug, info, warn, error in turn, M ms apart; before attempt A it fails
//! with type `Flaky` and details `Traceback: attempt a`).

use std::time::Duration;

use baton_worker::{LogLevel, StepContext, StepError, Worker, WorkerConfig};
use redis::AsyncCommands;
use serde_json::{Value, json};

#[derive(Clone)]
struct Counter {
    conn: redis::aio::MultiplexedConnection,
    keys: baton_shared::keys::Keys,
}

impl Counter {
    async fn count(&self, ctx: &StepContext) {
        self.count_as("exec", ctx).await;
    }

    async fn count_as(&self, what: &str, ctx: &StepContext) {
        let mut c = self.conn.clone();
        let key = self
            .keys
            .namespaced(&format!("test:{what}:{}:{}", ctx.run_id(), ctx.step_id()));
        let _: Result<i64, _> = c.incr(&key, 1).await;
        let _: Result<bool, _> = c.expire(&key, 3600).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    baton_worker::init_tracing();
    let config = WorkerConfig::from_env();
    let redis_url = std::env::var("BATON_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let counter = Counter {
        conn: redis::Client::open(redis_url)?
            .get_multiplexed_async_connection()
            .await?,
        keys: baton_shared::keys::Keys::new(config.namespace.clone()),
    };

    let c8 = counter.clone();
    let c9 = counter.clone();
    let (c1, c2, c3, c4, c5, c6, c7) = (
        counter.clone(),
        counter.clone(),
        counter.clone(),
        counter.clone(),
        counter.clone(),
        counter.clone(),
        counter,
    );
    Worker::new(config)
        .handler("echo", move |ctx: StepContext, input: Value| {
            let c = c1.clone();
            async move {
                c.count(&ctx).await;
                // `output_bytes`: answer `{"pad": "xx…"}` with that many `x` instead (a large
                // output made by the worker, not carried in the task).
                if let Some(n) = input["output_bytes"].as_u64() {
                    return Ok::<_, StepError>(json!({"pad": "x".repeat(n as usize)}));
                }
                Ok::<_, StepError>(input)
            }
        })
        .handler("trace", move |ctx: StepContext, _input: Value| {
            let c = c2.clone();
            async move {
                c.count(&ctx).await;
                Ok::<_, StepError>(
                    json!({"step": ctx.step_id(), "received": ctx.parent_outputs(), "attempt": ctx.attempt()}),
                )
            }
        })
        .handler("fail", move |ctx: StepContext, input: Value| {
            let c = c3.clone();
            async move {
                c.count(&ctx).await;
                if input["fatal"].as_bool() == Some(true) {
                    return Err(StepError::non_retryable("fatal failure requested").with_type("Fatal"));
                }
                if let Some(t) = input["error_type"].as_str() {
                    return Err(StepError::retryable("typed failure requested").with_type(t));
                }
                let n = input["succeed_on_attempt"].as_u64().unwrap_or(1) as u32;
                if ctx.attempt() < n {
                    // `message_bytes`: the message padded with 'é' to about that many bytes (a
                    // long error, cut by the coordinator in the step's history).
                    let pad = input["message_bytes"].as_u64().unwrap_or(0) as usize / 2;
                    return Err(StepError::retryable(format!(
                        "attempt {} fails on purpose{}",
                        ctx.attempt(),
                        "é".repeat(pad)
                    )));
                }
                Ok(json!({"attempt": ctx.attempt()}))
            }
        })
        .handler("slow", move |ctx: StepContext, input: Value| {
            let c = c4.clone();
            async move {
                c.count(&ctx).await;
                let only = input["only_attempt"].as_u64().map(|a| a as u32);
                if only.is_none_or(|a| a == ctx.attempt()) {
                    tokio::time::sleep(Duration::from_millis(input["ms"].as_u64().unwrap_or(1000))).await;
                }
                Ok::<_, StepError>(json!({"attempt": ctx.attempt(), "worker": ctx.worker_id()}))
            }
        })
        .handler("patient", move |ctx: StepContext, input: Value| {
            let c = c5.clone();
            async move {
                c.count(&ctx).await;
                let ms = input["ms"].as_u64().unwrap_or(100);
                for tick in 0..input["ticks"].as_u64().unwrap_or(3) {
                    if let Err(e) = ctx.emit(json!({"tick": tick})).await {
                        // A cancel can reach the handler through the answer to an emit, too.
                        if e.error_type == "Cancelled" {
                            c.count_as("saw-cancel", &ctx).await;
                        }
                        return Err(e);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                        _ = ctx.cancelled() => {
                            c.count_as("saw-cancel", &ctx).await;
                            return Err(StepError::non_retryable("stopped: the run was cancelled").with_type("Cancelled"));
                        }
                    }
                }
                Ok::<_, StepError>(json!({"ticks": input["ticks"]}))
            }
        })
        .handler("square", move |ctx: StepContext, input: Value| {
            let c = c6.clone();
            async move {
                let index = ctx.item_index().unwrap_or(u32::MAX);
                let mut conn = c.conn.clone();
                let key = c.keys.namespaced(&format!("test:items:{}:{}", ctx.run_id(), ctx.step_id()));
                let _: Result<i64, _> = conn.hincr(&key, index, 1).await;
                let _: Result<bool, _> = conn.expire(&key, 3600).await;
                // An execution of an element the coordinator already recorded as succeeded would break
                // the at-most-once-after-completion promise: count those separately.
                let steps = c.keys.steps(ctx.run_id());
                let done: Option<String> = conn
                    .hget(&steps, format!("{}#{index}:status", ctx.step_id()))
                    .await
                    .unwrap_or(None);
                if done.as_deref() == Some("succeeded") {
                    let late = c.keys.namespaced(&format!("test:late:{}:{}", ctx.run_id(), ctx.step_id()));
                    let _: Result<i64, _> = conn.incr(&late, 1).await;
                }
                let n = input.get("n").unwrap_or(&input).as_i64().unwrap_or(0);
                if let Some(ms) = input["ms"].as_u64() {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                if input["fail_once"].as_bool() == Some(true) && ctx.attempt() == 1 {
                    return Err(StepError::retryable(format!("element {index} fails its first attempt")));
                }
                Ok::<_, StepError>(json!(n * n))
            }
        })
        .handler("screen", move |ctx: StepContext, input: Value| {
            let c = c7.clone();
            async move {
                let computed = json!({"double": input["x"].as_i64().unwrap_or(0) * 2});
                if let Some(answer) = ctx.resume_data() {
                    c.count_as("resumed", &ctx).await;
                    return Ok(json!({"computed": computed, "answer": answer, "attempt": ctx.attempt()}));
                }
                c.count(&ctx).await;
                ctx.emit(json!({"computed": computed})).await?;
                let key = input["key"].as_str().unwrap_or_default().to_string();
                let timeout = input["timeout_ms"].as_u64().map(Duration::from_millis);
                Err(StepError::suspend("review", key, timeout))
            }
        })
        .handler("guarded", move |ctx: StepContext, input: Value| {
            let c = c8.clone();
            async move {
                c.count(&ctx).await;
                let pool = input["pool"].as_str().unwrap_or("p").to_string();
                let inside = c.keys.namespaced(&format!("test:inside:{pool}"));
                let most = c.keys.namespaced(&format!("test:max-inside:{pool}"));
                let starts = c.keys.namespaced(&format!("test:starts:{pool}"));
                let mut conn = c.conn.clone();
                let enter = redis::Script::new(
                    "local v = redis.call('INCR', KEYS[1]) \
                     if v > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], v) end \
                     redis.call('RPUSH', KEYS[3], ARGV[1]) \
                     for _, k in ipairs(KEYS) do redis.call('EXPIRE', k, 3600) end \
                     return v",
                );
                let _: Result<i64, _> = enter
                    .key(&inside)
                    .key(&most)
                    .key(&starts)
                    .arg(baton_shared::time::now_ms())
                    .invoke_async(&mut conn)
                    .await;
                tokio::time::sleep(Duration::from_millis(input["ms"].as_u64().unwrap_or(50))).await;
                let _: Result<i64, _> = conn.decr(&inside, 1).await;
                Ok::<_, StepError>(json!({"pool": pool}))
            }
        })
        .handler("chatty", move |ctx: StepContext, input: Value| {
            let c = c9.clone();
            async move {
                c.count(&ctx).await;
                let levels = [LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error];
                let ms = input["ms"].as_u64().unwrap_or(0);
                for i in 0..input["lines"].as_u64().unwrap_or(3) {
                    ctx.log(levels[(i % 4) as usize], format!("line {i} of attempt {}", ctx.attempt()));
                    if ms > 0 {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                }
                if u64::from(ctx.attempt()) < input["succeed_on_attempt"].as_u64().unwrap_or(1) {
                    return Err(StepError::retryable(format!("attempt {} is flaky", ctx.attempt()))
                        .with_type("Flaky")
                        .with_details(format!("Traceback: attempt {}\n  at chatty", ctx.attempt())));
                }
                Ok::<_, StepError>(json!({"attempt": ctx.attempt()}))
            }
        })
        .run(baton_worker::shutdown_signal())
        .await?;
    Ok(())
}
