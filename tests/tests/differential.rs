//! The run core against the Lua scripts: the same random event sequences (starts, reports that
//! succeed or fail, stale and duplicate reports, reports from a worker that does not hold the
//! attempt, retries coming due, start-to-close timeouts, a cancel) go through the in-memory store built on `baton_coordinator::core`
//! and through `Store`'s public methods on a real Redis; after every event both must agree on
//! whether it was taken, on every step's status and attempt, and on the run's status and error.

use std::time::Duration;

use baton_coordinator::{
    core::{
        Event, Outcome, Phase, RunPhase, TimerKey, TimerKind, Wait,
        classify::{AttemptTimer, attempt_timer},
        memory::MemoryStore,
        plan::{pinned, retry_at_with},
    },
    store::{
        Batch, CompleteArgs, Completion, DispatchMode, Disposition, EndStatus, QueuedPlan, Reporter, RunCall,
        StartArgs, Started, StepOutcome, Store, TimerKind as StoreTimer, timer_member,
    },
};
use baton_shared::{definition::WorkflowDefinition, keys::Keys, proto::StepFailure};
use proptest::prelude::*;

const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A random DAG of task steps: `deps[i]` is a bit mask of step i's parents among earlier steps,
/// `tries[i]` its `max_attempts` (1 to 3, no jitter) and, when it is 200 or more, makes it fan
/// out over the run input's three items, two at a time; from 100, gives it a rate limit (the
/// in-memory store parks each attempt once).
fn definition(deps: &[u8], tries: &[u8]) -> String {
    let mut yaml = String::from("name: diff\nversion: 1\nsteps:\n");
    for (i, m) in deps.iter().enumerate() {
        let parents: Vec<String> = (0..i).filter(|j| m & (1 << j) != 0).map(|j| format!("s{j}")).collect();
        let t = tries.get(i).copied().unwrap_or(0);
        let fan = match t {
            200.. => ", for_each: input.items, max_parallel: 2",
            100.. => ", rate_limit: {limit: 1, period: 1s}",
            _ => "",
        };
        yaml.push_str(&format!(
            "  - {{id: s{i}, handler: h{fan}, depends_on: [{}], retry: {{max_attempts: {}, initial_interval: 1s, jitter: 0}}}}\n",
            parents.join(", "),
            1 + t % 3
        ));
    }
    yaml
}

/// One action, naming a step by its index among the definition's steps.
#[derive(Debug, Clone)]
enum Action {
    /// Worker w1 starts the step's current attempt.
    Start(usize),
    /// `worker` reports the step's current attempt (ok or a retryable failure).
    Report(usize, bool, &'static str),
    /// w1 starts and reports the step's current attempt in one eager report (ok or a retryable
    /// failure): the core applies the start and then, if it was taken, the report; the store
    /// pipelines both scripts ([`Store::start_and_complete`]).
    Eager(usize, bool),
    /// w1 reports the attempt before the current one.
    Stale(usize),
    /// The step's retry comes due.
    Retry(usize),
    /// The step's start-to-close timeout fires.
    Timeout(usize),
    /// The run is cancelled.
    Cancel,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0usize..5).prop_map(Action::Start),
        4 => (0usize..5, any::<bool>()).prop_map(|(i, ok)| Action::Report(i, ok, "w1")),
        2 => (0usize..5, any::<bool>()).prop_map(|(i, ok)| Action::Eager(i, ok)),
        1 => (0usize..5).prop_map(|i| Action::Report(i, true, "w2")),
        1 => (0usize..5).prop_map(Action::Stale),
        2 => (0usize..5).prop_map(Action::Retry),
        1 => (0usize..5).prop_map(Action::Timeout),
        1 => Just(Action::Cancel),
    ]
}

/// The handler of `step` (a fan-out element's is its step's); `""` for a step that runs none.
fn handler_of(def: &WorkflowDefinition, step: &str) -> String {
    def.handler_step(step).map(|s| s.handler.clone()).unwrap_or_default()
}

/// StartStep's arguments for w1 starting `attempt` of `step` at `now`.
fn start_args<'a>(step: &'a str, handler: &'a str, attempt: u32, pinned: &'a str, now: i64) -> StartArgs<'a> {
    StartArgs {
        step,
        handler,
        attempt,
        worker: "w1",
        pinned,
        timeout_due: now + 3_600_000,
        heartbeat_due: None,
        slot_lease_ms: 0,
        holder: None,
        recheck_margin: Duration::from_millis(250),
        input: "",
    }
}

/// The core's event for `worker`'s report of `attempt` of `step`: output `1`, or a retryable
/// failure of type `Boom`.
fn report_event(step: &str, attempt: u32, worker: &str, ok: bool) -> Event {
    let outcome = if ok {
        Outcome::Output("1".into())
    } else {
        Outcome::Failure(StepFailure {
            message: "flaky".into(),
            error_type: "Boom".into(),
            retryable: true,
            details: String::new(),
        })
    };
    Event::Report {
        step: step.into(),
        attempt,
        worker: worker.into(),
        outcome,
        jitter: 0.0,
    }
}

/// `complete_step.lua`'s arguments for the same report ([`report_event`]), with the retry the
/// step's policy gives a failure (`base`: the attempts before the run's last retry).
fn complete_args<'a>(
    def: &'a WorkflowDefinition,
    step: &'a str,
    attempt: u32,
    base: u32,
    worker: &'a str,
    ok: bool,
    now: i64,
) -> CompleteArgs<'a> {
    let retry_at = match def.step(step) {
        Some(sd) if !ok => retry_at_with(sd, attempt.saturating_sub(base), "Boom", true, now, 0.0),
        _ => 0,
    };
    CompleteArgs {
        def,
        step,
        attempt,
        by: Reporter::Worker(worker),
        outcome: if ok { StepOutcome::Ok } else { StepOutcome::Error },
        body: if ok { "1" } else { "Boom: flaky" },
        retry_at,
        heartbeat_timeout_ms: 0,
        error_type: "",
        error_details: "",
    }
}

/// Both sides' view: per step (status word, attempt), then the run's status.
async fn states(
    def: &WorkflowDefinition,
    memory: &MemoryStore,
    store: &Store,
    run: &str,
) -> (Vec<(String, u32)>, String, Vec<(String, u32)>, String) {
    let m = memory.run(run).unwrap();
    let _ = def;
    let mine = m
        .steps
        .values()
        .map(|s| (s.phase.word().to_string(), s.attempt))
        .collect();
    let mut theirs = Vec::new();
    for id in m.steps.keys() {
        let f = store.step_fields(run, id, &["status", "attempt"]).await.unwrap();
        theirs.push((
            f[0].clone().unwrap_or_else(|| "pending".into()),
            f[1].as_deref().and_then(|a| a.parse().ok()).unwrap_or(0),
        ));
    }
    let status = store.run_fields(run, &["status"]).await.unwrap()[0]
        .clone()
        .unwrap_or_default();
    (mine, m.status().word().to_string(), theirs, status)
}

async fn drive(yaml: String, actions: Vec<Action>) -> Result<(), TestCaseError> {
    let def = WorkflowDefinition::parse(&yaml).unwrap();
    let namespace = format!("diff-{}", uuid::Uuid::new_v4().simple());
    let keys = Keys::new(namespace);
    let store = Store::connect(
        REDIS_URL,
        keys.clone(),
        1000,
        Duration::from_secs(600),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let run = baton_shared::ids::new_run_id();
    let mut now = 1_000_000;
    let mut memory = MemoryStore::new(now);
    memory.register(def.clone());
    let input = r#"{"items":[1,2,3]}"#;
    memory.submit("diff", &run, input).unwrap();
    // create_run.lua takes a run only of a registered version (the delete fence); nothing here
    // reads the definition from Redis after that, so its keys go again at once.
    store.put_workflow("diff", 1, &yaml, now, 10).await.unwrap();
    store
        .create_run(
            &RunCall { run_id: &run, now },
            &def,
            input,
            "",
            None,
            &[],
            None,
            &baton_coordinator::store::QueuedPlan::default(),
        )
        .await
        .unwrap();
    {
        let client = redis::Client::open(REDIS_URL).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::AsyncCommands::del(
            &mut conn,
            &[
                keys.workflow("diff"),
                keys.workflow_registered("diff"),
                keys.workflow_names(),
            ],
        )
        .await
        .unwrap();
    }
    let pinned = pinned(&def);
    let mut started = std::collections::HashSet::new();
    fan_out(&def, &memory, &store, &run, now, &mut started).await?;
    park(&def, &memory, &store, &run, now).await?;
    for a in actions {
        now += 10;
        memory.now = now;
        let call = RunCall { run_id: &run, now };
        let ids: Vec<String> = memory.run(&run).unwrap().steps.keys().cloned().collect();
        let id = |i: usize| ids[i % ids.len()].clone();
        let report = match &a {
            Action::Report(i, ok, w) => Some((*i, *ok, *w, false)),
            Action::Stale(i) => Some((*i, true, "w1", true)),
            _ => None,
        };
        let (taken_here, taken_there) = match (&a, report) {
            (Action::Start(i), _) => {
                let step = id(*i);
                let attempt = memory.run(&run).unwrap().steps[&step].attempt;
                let here = memory
                    .send(
                        &run,
                        Event::Start {
                            step: step.clone(),
                            attempt,
                            worker: "w1".into(),
                            holder_alive: true,
                        },
                    )
                    .is_ok();
                let handler = handler_of(&def, &step);
                let args = start_args(&step, &handler, attempt, &pinned, now);
                let there = store.start_step(&call, &args).await.unwrap() == Started::Answer(Disposition::Proceed);
                (here, there)
            }
            (Action::Eager(i, ok), _) => {
                let step = id(*i);
                let s = &memory.run(&run).unwrap().steps[&step];
                let (attempt, base) = (s.attempt, s.base);
                let start = Event::Start {
                    step: step.clone(),
                    attempt,
                    worker: "w1".into(),
                    holder_alive: true,
                };
                let here = memory.send(&run, start).is_ok()
                    && memory.send(&run, report_event(&step, attempt, "w1", *ok)).is_ok();
                let handler = handler_of(&def, &step);
                let start_args = start_args(&step, &handler, attempt, &pinned, now);
                let args = complete_args(&def, &step, attempt, base, "w1", *ok, now);
                let (started, completed) = store
                    .start_and_complete(&call, &start_args, &args, &QueuedPlan::default())
                    .await
                    .unwrap();
                let there = started == Started::Answer(Disposition::Proceed)
                    && !matches!(completed, None | Some((Completion::Stale | Completion::Alive(_), _)));
                (here, there)
            }
            (_, Some((i, ok, worker, stale))) => {
                let step = id(i);
                let s = &memory.run(&run).unwrap().steps[&step];
                let attempt = if stale { s.attempt.saturating_sub(1) } else { s.attempt };
                let base = s.base;
                let here = memory.send(&run, report_event(&step, attempt, worker, ok)).is_ok();
                let args = complete_args(&def, &step, attempt, base, worker, ok, now);
                let there = !matches!(
                    store.complete_step(Batch::new(), &call, &args).await.unwrap(),
                    Completion::Stale | Completion::Alive(_)
                );
                (here, there)
            }
            (Action::Cancel, _) => {
                let here = memory.send(&run, Event::Cancel { reason: "test".into() }).is_ok();
                let there = store
                    .cancel_run(&call, "cancelled: test", EndStatus::Cancelled)
                    .await
                    .is_ok();
                (here, there)
            }
            (Action::Timeout(i), _) => {
                let step = id(*i);
                let s = &memory.run(&run).unwrap().steps[&step];
                let (attempt, base) = (s.attempt, s.base);
                let key = TimerKey {
                    kind: TimerKind::Timeout,
                    step: step.clone(),
                    attempt,
                };
                // Only an armed timer fires (the engine arms it when the attempt starts, and
                // never for a fan-out step itself, whose elements run).
                if !memory.run(&run).unwrap().timers.contains(&key) {
                    continue;
                }
                let here = memory.send(&run, Event::Timer { key, jitter: 0.0 }).is_ok();
                let sd = def.step(&step).unwrap();
                let timed = attempt_timer(AttemptTimer::Timeout, sd, attempt, Duration::ZERO);
                let retry_at = retry_at_with(sd, attempt.saturating_sub(base), timed.error_type, true, now, 0.0);
                let args = CompleteArgs {
                    def: &def,
                    step: &step,
                    attempt,
                    by: Reporter::Coordinator(""),
                    outcome: timed.word,
                    body: &timed.message,
                    retry_at,
                    heartbeat_timeout_ms: 0,
                    error_type: "",
                    error_details: "",
                };
                let there = !matches!(
                    store.complete_step(Batch::new(), &call, &args).await.unwrap(),
                    Completion::Stale | Completion::Alive(_)
                );
                (here, there)
            }
            (Action::Retry(i) | Action::Report(i, ..) | Action::Stale(i), None) => {
                let step = id(*i);
                let s = &memory.run(&run).unwrap().steps[&step];
                let attempt = s.attempt;
                let (kind, mode) = match s.phase {
                    Phase::Retrying { .. } => (TimerKind::Retry, DispatchMode::Retry),
                    Phase::Waiting(Wait::RateLimited { .. }) => (TimerKind::RateWake, DispatchMode::Unpark),
                    _ => continue,
                };
                let key = TimerKey {
                    kind,
                    step: step.clone(),
                    attempt,
                };
                let here = memory.send(&run, Event::Timer { key, jitter: 0.0 }).is_ok();
                let there = store
                    .dispatch_attempt(&call, &def, &step, attempt, mode)
                    .await
                    .unwrap()
                    .is_some();
                (here, there)
            }
        };
        prop_assert_eq!(
            taken_here,
            taken_there,
            "{:?} taken by the core: {}, by the scripts: {}",
            a,
            taken_here,
            taken_there
        );
        fan_out(&def, &memory, &store, &run, now, &mut started).await?;
        park(&def, &memory, &store, &run, now).await?;
        gather(&def, &mut memory, &store, &run, now).await?;
        let (mine, my_status, theirs, their_status) = states(&def, &memory, &store, &run).await;
        prop_assert_eq!(&mine, &theirs, "after {:?}", a);
        prop_assert_eq!(&my_status, &their_status, "after {:?}", a);
        // The texts users read agree too: the run's error.
        if let RunPhase::Finished { error, .. } = &memory.run(&run).unwrap().phase {
            let theirs = store.run_fields(&run, &["error"]).await.unwrap()[0]
                .clone()
                .unwrap_or_default();
            prop_assert_eq!(error, &theirs, "after {:?}", a);
        }
        if std::env::var_os("DIFF_DEBUG").is_some() {
            eprintln!("{a:?} taken {taken_here} -> {my_status} {mine:?}");
        }
    }
    Ok(())
}

/// Starts on Redis the fan-outs the core started (the engine stages the inputs, then starts the
/// elements): every fan-out step the scripts show dispatched at an attempt not yet started.
async fn fan_out(
    def: &WorkflowDefinition,
    memory: &MemoryStore,
    store: &Store,
    run: &str,
    now: i64,
    started: &mut std::collections::HashSet<(String, u32)>,
) -> Result<(), TestCaseError> {
    let call = RunCall { run_id: run, now };
    for s in def.steps.iter().filter(|s| s.for_each.is_some()) {
        let f = store.step_fields(run, &s.id, &["status", "attempt"]).await.unwrap();
        let attempt: u32 = f[1].as_deref().and_then(|a| a.parse().ok()).unwrap_or(0);
        if f[0].as_deref() != Some("dispatched") || !started.insert((s.id.clone(), attempt)) {
            continue;
        }
        prop_assert!(matches!(memory.run(run).unwrap().steps[&s.id].phase, Phase::FanOut(_)));
        let inputs: Vec<String> = ["1", "2", "3"].map(String::from).to_vec();
        let kept = store
            .stage_items(&call, &s.id, attempt, 0, &inputs)
            .await
            .unwrap()
            .unwrap_or_default();
        store
            .start_items(&call, def, &s.id, attempt, 2, 3, &kept)
            .await
            .unwrap();
    }
    Ok(())
}

/// Parks on Redis the steps the core parked for their rate limit (the engine does when its
/// rate-limit pool answers a later start), with the detail users read.
async fn park(
    def: &WorkflowDefinition,
    memory: &MemoryStore,
    store: &Store,
    run: &str,
    now: i64,
) -> Result<(), TestCaseError> {
    let call = RunCall { run_id: run, now };
    for s in def.steps.iter().filter(|s| s.rate_limit.is_some()) {
        let st = &memory.run(run).unwrap().steps[&s.id];
        let Phase::Waiting(Wait::RateLimited { until }) = st.phase else {
            continue;
        };
        let f = store.step_fields(run, &s.id, &["status"]).await.unwrap();
        if f[0].as_deref() != Some("dispatched") {
            continue;
        }
        let detail =
            baton_coordinator::core::texts::rate_limited(&format!("diff/{}", s.id), 1, Duration::from_secs(1), until);
        let timer = timer_member(StoreTimer::RateWake, run, &s.id, st.attempt);
        prop_assert!(
            store
                .park(&call, &s.id, st.attempt, &detail, &timer, until)
                .await
                .unwrap()
        );
    }
    Ok(())
}

/// Completes fan-outs whose elements all succeeded, on both sides (the `items` timer).
async fn gather(
    def: &WorkflowDefinition,
    memory: &mut MemoryStore,
    store: &Store,
    run: &str,
    now: i64,
) -> Result<(), TestCaseError> {
    let gathering: Vec<(String, u32)> = memory
        .run(run)
        .unwrap()
        .steps
        .iter()
        .filter(|(_, s)| matches!(&s.phase, Phase::FanOut(f) if f.gathering))
        .map(|(id, s)| (id.clone(), s.attempt))
        .collect();
    for (step, attempt) in gathering {
        let key = TimerKey {
            kind: TimerKind::Items,
            step: step.clone(),
            attempt,
        };
        let here = memory.send(run, Event::Timer { key, jitter: 0.0 }).is_ok();
        let args = CompleteArgs {
            def,
            step: &step,
            attempt,
            by: Reporter::Coordinator("coordinator"),
            outcome: StepOutcome::Items,
            body: "[1,1,1]",
            retry_at: 0,
            heartbeat_timeout_ms: 0,
            error_type: "",
            error_details: "",
        };
        let there = !matches!(
            store
                .complete_step(Batch::new(), &RunCall { run_id: run, now }, &args)
                .await
                .unwrap(),
            Completion::Stale | Completion::Alive(_)
        );
        prop_assert_eq!(here, there, "gathering {}", step);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn the_core_and_the_scripts_agree_on_random_event_sequences(
        deps in prop::collection::vec(any::<u8>(), 1..5),
        tries in prop::collection::vec(any::<u8>(), 5),
        actions in prop::collection::vec(action(), 1..40),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(drive(definition(&deps, &tries), actions))?;
    }
}
