//! Tests of the run core without Redis: transitions applied one by one, whole runs through the
//! in-memory store, and property tests over random definitions and random event orders.

use std::collections::BTreeMap;

use baton_shared::{definition::WorkflowDefinition, proto::StepFailure};
use proptest::prelude::*;

use super::{
    ChildResult, Effect, Event, GateAnswer, Outcome, Phase, Reject, RunPhase, RunState, TimerKey, TimerKind, apply,
    memory::{MemoryStore, Task},
};

fn def(yaml: &str) -> WorkflowDefinition {
    WorkflowDefinition::parse(yaml).unwrap()
}

fn ok(output: &str) -> Outcome {
    Outcome::Output(output.into())
}

fn failure(message: &str) -> Outcome {
    Outcome::Failure(StepFailure {
        message: message.into(),
        error_type: "Boom".into(),
        retryable: true,
        details: String::new(),
    })
}

const CHAIN: &str = "name: chain\nversion: 1\nsteps:\n  - {id: a, handler: h}\n  - {id: b, handler: h, depends_on: [a], retry: {max_attempts: 2, initial_interval: 1s, jitter: 0}}\n  - {id: c, handler: h, depends_on: [b]}\n";

#[test]
fn a_chain_runs_to_its_end_in_memory_with_a_retry() {
    let mut store = MemoryStore::new(1_000);
    store.register(def(CHAIN));
    store.submit("chain", "r1", "{\"n\":1}").unwrap();
    let mut failed_once = false;
    store.run_to_end(
        "w1",
        |t: &Task| {
            if t.step == "b" && !failed_once {
                failed_once = true;
                return failure("flaky");
            }
            ok(&format!("\"{}\"", t.step))
        },
        1_000,
    );
    let run = store.run("r1").unwrap();
    assert_eq!(run.status().word(), "succeeded");
    assert_eq!(
        run.phase,
        RunPhase::Finished {
            status: baton_shared::proto::RunStatus::Succeeded,
            output: "{\"c\":\"c\"}".into(),
            error: String::new()
        }
    );
    assert_eq!(run.steps["b"].attempt, 2, "b was retried once");
    assert!(run.timers.is_empty() && run.slots.is_empty() && run.outbox.is_empty());
    assert!(store.timers().next().is_none(), "no timer left armed");
    // The retry waited its backoff (1 s) on the manual clock.
    assert!(store.now >= 2_000, "clock at {}", store.now);
}

#[test]
fn a_step_that_fails_for_good_fails_the_run_with_the_texts_users_read() {
    let mut store = MemoryStore::new(0);
    store.register(def(CHAIN));
    store.submit("chain", "r", "{}").unwrap();
    store.run_to_end("w", |_| failure("no disk"), 1_000);
    let run = store.run("r").unwrap();
    let RunPhase::Finished { status, error, .. } = &run.phase else {
        panic!("not finished")
    };
    assert_eq!(status.word(), "failed");
    assert_eq!(error, "step a failed after 3 attempt(s): Boom: no disk");
    assert_eq!(run.steps["b"].phase, Phase::Cancelled, "b never started, and will not");
}

#[test]
fn fan_out_gathers_outputs_in_element_order_and_skips_follow_conditions() {
    let yaml = "name: fan\nversion: 1\nsteps:\n  - {id: each, handler: sq, for_each: input.items, max_parallel: 2}\n  - {id: never, handler: h, depends_on: [each], when: 'size(steps.each.output) > 5'}\n  - {id: after, handler: h, depends_on: [never]}\n";
    let mut store = MemoryStore::new(0);
    store.register(def(yaml));
    store.submit("fan", "r", "{\"items\":[1,2,3]}").unwrap();
    store.run_to_end(
        "w",
        |t| {
            let n: i64 = t.input.parse().unwrap();
            ok(&(n * n).to_string())
        },
        1_000,
    );
    let run = store.run("r").unwrap();
    assert_eq!(run.status().word(), "succeeded");
    assert_eq!(
        run.steps["each"].phase,
        Phase::Succeeded {
            output: "[1,4,9]".into()
        }
    );
    assert_eq!(
        run.steps["never"].phase,
        Phase::Skipped {
            reason: "condition `size(steps.each.output) > 5` is false".into()
        }
    );
    assert_eq!(
        run.steps["after"].phase,
        Phase::Skipped {
            reason: "every step it depends on was skipped".into()
        }
    );
}

#[test]
fn waits_sleeps_humans_and_children_end_by_the_coordinators_hand() {
    let kid = "name: kid\nversion: 1\nsteps:\n  - {id: k, handler: h}\n";
    let yaml = "name: parent\nversion: 1\nsteps:\n  - {id: nap, sleep: 5s}\n  - {id: pay, depends_on: [nap], wait_for_event: {event: payment, key: input.order}}\n  - {id: ok, depends_on: [pay], human: {title: Approve}}\n  - {id: sub, depends_on: [ok], workflow: {name: kid}}\n";
    let mut store = MemoryStore::new(0);
    store.register(def(kid));
    store.register(def(yaml));
    store.submit("parent", "p", "{\"order\":\"o-1\"}").unwrap();
    store.run_to_end("w", |_| ok("1"), 100);
    assert_eq!(
        store.run("p").unwrap().steps["nap"].phase,
        Phase::Succeeded {
            output: "{\"slept_ms\":5000}".into()
        }
    );
    assert_eq!(store.publish_event("payment", "o-1", "{\"paid\":true}"), 1);
    let attempt = store.run("p").unwrap().steps["ok"].attempt;
    // A worker's report for a human step is refused by name.
    let e = store
        .send(
            "p",
            Event::Report {
                step: "ok".into(),
                attempt,
                worker: "w".into(),
                outcome: ok("1"),
                jitter: 0.0,
            },
        )
        .unwrap_err();
    assert_eq!(e.name(), "NotAHandlerStep");
    store
        .send(
            "p",
            Event::HumanCompleted {
                step: "ok".into(),
                attempt,
                user: "ann".into(),
                data: "{\"yes\":1}".into(),
            },
        )
        .unwrap();
    store.run_to_end("w", |_| ok("42"), 100);
    let run = store.run("p").unwrap();
    assert_eq!(run.status().word(), "succeeded", "{run:#?}");
    assert_eq!(run.steps["ok"].completed_by.as_deref(), Some("ann"));
    assert_eq!(
        run.steps["sub"].phase,
        Phase::Succeeded {
            output: "{\"k\":42}".into()
        }
    );
}

#[test]
fn a_wait_that_times_out_is_skipped_or_failed_as_its_definition_says() {
    let yaml = "name: lenient\nversion: 1\nsteps:\n  - {id: skip, wait_for_event: {event: never, timeout: 300ms, on_timeout: skip}}\n  - {id: fail, wait_for_event: {event: never, timeout: 1s}}\n  - {id: then, handler: h, depends_on: [skip]}\n";
    let mut store = MemoryStore::new(0);
    store.register(def(yaml));
    store.submit("lenient", "r", "{}").unwrap();
    store.run_to_end("w", |_| ok("1"), 100);
    let run = store.run("r").unwrap();
    assert_eq!(
        run.steps["skip"].phase,
        Phase::Skipped {
            reason: "Timeout: no event \"never\" key \"\" arrived within 300ms".into()
        }
    );
    let RunPhase::Finished { error, .. } = &run.phase else {
        panic!()
    };
    assert_eq!(
        error,
        "step fail failed after 1 attempt(s): Timeout: no event \"never\" key \"\" arrived within 1s"
    );
}

#[test]
fn fencing_stale_attempts_and_other_workers_change_nothing() {
    let d = def(CHAIN);
    let mut s = RunState::new(&d, "{}", 1 << 20);
    let step = |t: super::Transition, s: &mut RunState| *s = t.next;
    step(apply(&d, &s, &Event::Submit, 0).unwrap(), &mut s);
    let dispatch = Event::Dispatch {
        step: "a".into(),
        attempt: 1,
        gate: GateAnswer::Open,
    };
    step(apply(&d, &s, &dispatch, 0).unwrap(), &mut s);
    let start = |w: &str, alive: bool| Event::Start {
        step: "a".into(),
        attempt: 1,
        worker: w.into(),
        holder_alive: alive,
    };
    step(apply(&d, &s, &start("w1", true), 1).unwrap(), &mut s);
    // One worker holds the attempt at a time.
    assert_eq!(
        apply(&d, &s, &start("w2", true), 2).unwrap_err().name(),
        "HeldByLiveWorker"
    );
    let report = |w: &str, attempt: u32| Event::Report {
        step: "a".into(),
        attempt,
        worker: w.into(),
        outcome: ok("1"),
        jitter: 0.0,
    };
    assert_eq!(apply(&d, &s, &report("w2", 1), 2).unwrap_err().name(), "NotHolder");
    assert_eq!(apply(&d, &s, &report("w1", 7), 2).unwrap_err().name(), "StaleAttempt");
    // The same worker starting it again (a redelivery) proceeds; a dead holder is taken over.
    apply(&d, &s, &start("w1", true), 2).unwrap();
    step(apply(&d, &s, &start("w2", false), 2).unwrap(), &mut s);
    step(apply(&d, &s, &report("w2", 1), 3).unwrap(), &mut s);
    // A duplicate report is refused and changes nothing.
    assert_eq!(apply(&d, &s, &report("w2", 1), 4).unwrap_err().name(), "WrongState");
    step(
        apply(
            &d,
            &s,
            &Event::Cancel {
                reason: "enough".into(),
            },
            5,
        )
        .unwrap(),
        &mut s,
    );
    assert_eq!(
        apply(&d, &s, &report("w2", 1), 6).unwrap_err(),
        Reject::RunFinished("cancelled")
    );
    let RunPhase::Finished { error, .. } = &s.phase else {
        panic!()
    };
    assert_eq!(error, "cancelled: enough");
}

#[test]
fn timeouts_heartbeats_and_schedule_to_start_fail_attempts_with_their_texts() {
    let yaml = "name: t\nversion: 1\nsteps:\n  - {id: a, handler: h, timeout: 2s, heartbeat_timeout: 1s, schedule_to_start: 3s, retry: {max_attempts: 3, initial_interval: 1s, jitter: 0}}\n";
    let d = def(yaml);
    let mut s = RunState::new(&d, "{}", 1 << 20);
    let go = |s: &mut RunState, e: Event, now: i64| {
        let t = apply(&d, s, &e, now).unwrap();
        *s = t.next;
        t.effects
    };
    go(&mut s, Event::Submit, 0);
    go(
        &mut s,
        Event::Dispatch {
            step: "a".into(),
            attempt: 1,
            gate: GateAnswer::Open,
        },
        0,
    );
    let key = |kind, attempt| TimerKey {
        kind,
        step: "a".into(),
        attempt,
    };
    assert!(s.timers.contains(&key(TimerKind::ScheduleToStart, 1)));
    go(
        &mut s,
        Event::Timer {
            key: key(TimerKind::ScheduleToStart, 1),
            jitter: 0.0,
        },
        3_000,
    );
    assert_eq!(
        s.steps["a"].phase,
        Phase::Retrying {
            at: 4_000,
            error: "ScheduleToStartTimeout: no worker started attempt 1 within its schedule-to-start timeout of 3s"
                .into()
        }
    );
    go(
        &mut s,
        Event::Timer {
            key: key(TimerKind::Retry, 2),
            jitter: 0.0,
        },
        4_000,
    );
    go(
        &mut s,
        Event::Dispatch {
            step: "a".into(),
            attempt: 2,
            gate: GateAnswer::Open,
        },
        4_000,
    );
    go(
        &mut s,
        Event::Start {
            step: "a".into(),
            attempt: 2,
            worker: "w".into(),
            holder_alive: true,
        },
        4_000,
    );
    go(
        &mut s,
        Event::Heartbeat {
            step: "a".into(),
            attempt: 2,
            worker: "w".into(),
        },
        4_800,
    );
    // A beat 200 ms ago: the heartbeat timer looks again later.
    go(
        &mut s,
        Event::Timer {
            key: key(TimerKind::Heartbeat, 2),
            jitter: 0.0,
        },
        5_000,
    );
    assert!(matches!(s.steps["a"].phase, Phase::Running { .. }));
    go(
        &mut s,
        Event::Timer {
            key: key(TimerKind::Heartbeat, 2),
            jitter: 0.0,
        },
        5_800,
    );
    let Phase::Retrying { error, .. } = &s.steps["a"].phase else {
        panic!("{:?}", s.steps["a"])
    };
    assert_eq!(error, "HeartbeatTimeout: attempt 2 sent no heartbeat for 1s");
    assert!(
        !s.timers.contains(&key(TimerKind::Timeout, 2)),
        "the attempt's timeout was disarmed"
    );
}

#[test]
fn fan_out_too_large_and_bad_expressions_fail_at_dispatch() {
    let yaml = "name: big\nversion: 1\nsteps:\n  - {id: each, handler: sq, for_each: input.items}\n";
    let mut store = MemoryStore::new(0);
    store.register(def(yaml));
    let items: Vec<String> = (0..=baton_shared::definition::MAX_FAN_OUT)
        .map(|i| i.to_string())
        .collect();
    store
        .submit("big", "r", &format!("{{\"items\":[{}]}}", items.join(",")))
        .unwrap();
    let run = store.run("r").unwrap();
    let RunPhase::Finished { error, .. } = &run.phase else {
        panic!()
    };
    assert_eq!(
        error,
        &format!(
            "step each failed after 1 attempt(s): FanOutTooLarge: for_each: {} elements is over the limit of {}",
            items.len(),
            baton_shared::definition::MAX_FAN_OUT
        )
    );
}

// ----- property tests -----

/// A random definition: `kinds[i]` picks step i's kind, `deps[i]` its parents among earlier steps
/// (a bit mask), `flags[i]` its condition and retries.
fn random_def(kinds: &[u8], deps: &[u8], flags: &[u8]) -> String {
    let mut yaml = String::from("name: p\nversion: 1\nsteps:\n");
    for (i, k) in kinds.iter().enumerate() {
        let parents: Vec<String> = (0..i)
            .filter(|j| deps.get(i).is_some_and(|m| m & (1 << (j % 8)) != 0))
            .map(|j| format!("s{j}"))
            .collect();
        let f = flags.get(i).copied().unwrap_or(0);
        let mut line = format!("  - {{id: s{i}");
        line.push_str(match k % 7 {
            0 | 1 => ", handler: h",
            2 => ", handler: h, for_each: input.items, max_parallel: 2",
            3 => ", sleep: 1s",
            4 => ", wait_for_event: {event: e, key: input.k, timeout: 5s}",
            5 => ", human: {title: T, timeout: 9s, on_timeout: skip}",
            _ => ", workflow: {name: kid}",
        });
        if !parents.is_empty() {
            line.push_str(&format!(", depends_on: [{}]", parents.join(", ")));
        }
        if f % 5 == 0 {
            line.push_str(", when: 'input.k == \"nope\"'");
        }
        if k % 7 <= 1 && f % 7 == 1 {
            line.push_str(", concurrency: {limit: 2}");
        }
        if k % 7 <= 1 && f % 3 == 2 {
            line.push_str(", rate_limit: {limit: 1, period: 1s}");
        }
        if k % 7 <= 2 {
            line.push_str(&format!(
                ", timeout: 4s, retry: {{max_attempts: {}, initial_interval: 1s, jitter: 0}}",
                1 + f % 3
            ));
        }
        line.push_str("}\n");
        yaml.push_str(&line);
    }
    yaml
}

/// One random action of the property test's driver.
#[derive(Debug, Clone)]
enum Action {
    /// A worker takes the n-th queued task, starts it and reports (ok, failure or duplicate).
    Work(usize, u8),
    /// A stale report (an attempt before the current one) for the n-th step.
    Stale(usize),
    /// A second worker starts the n-th queued task while the first lives.
    Steal(usize),
    /// The earliest timer fires.
    Tick,
    /// An event is published for the waiting steps.
    Publish,
    /// Every open human task is completed.
    Human,
    /// The run is cancelled.
    Cancel,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (0usize..4, any::<u8>()).prop_map(|(n, o)| Action::Work(n, o)),
        1 => (0usize..8).prop_map(Action::Stale),
        1 => (0usize..4).prop_map(Action::Steal),
        3 => Just(Action::Tick),
        1 => Just(Action::Publish),
        1 => Just(Action::Human),
        1 => prop_oneof![19 => Just(Action::Tick), 1 => Just(Action::Cancel)],
    ]
}

/// Checks the invariants of a run's state: a finished run holds no timer, slot or outbox entry;
/// a succeeded run has every step settled well; a run whose steps are all done has finished.
fn check_state(def: &WorkflowDefinition, s: &RunState) -> Result<(), TestCaseError> {
    if s.is_finished() {
        prop_assert!(s.timers.is_empty(), "armed timers after the run ended: {:?}", s.timers);
        prop_assert!(s.slots.is_empty(), "slots held after the run ended");
        prop_assert!(s.outbox.is_empty(), "outbox entries after the run ended");
        prop_assert!(
            def.steps.iter().all(|st| s.steps[&st.id].phase.is_settled()),
            "a live step in a finished run: {s:?}"
        );
    }
    let all_done = def.steps.iter().all(|st| s.steps[&st.id].phase.is_done());
    let succeeded = s.status() == baton_shared::proto::RunStatus::Succeeded;
    prop_assert_eq!(all_done, succeeded, "run {:?} with steps {:?}", s.phase, s.steps);
    if s.status() == baton_shared::proto::RunStatus::Failed {
        prop_assert!(
            s.steps.values().any(|st| matches!(st.phase, Phase::Failed { .. })),
            "a failed run with no failed step"
        );
    }
    let left = def.steps.iter().filter(|st| !s.steps[&st.id].phase.is_done()).count();
    prop_assert_eq!(s.steps_left, left);
    Ok(())
}

/// Drives a run of `yaml` through `actions`, then to its end, checking the invariants after
/// every event.
fn drive(yaml: &str, actions: &[Action]) -> Result<(), TestCaseError> {
    let mut store = MemoryStore::new(0);
    store.register(def("name: kid\nversion: 1\nsteps:\n  - {id: k, handler: h}\n"));
    let d = store.register(def(yaml));
    store.submit("p", "r", "{\"k\":\"a\",\"items\":[1,2,3]}").unwrap();
    let mut held: BTreeMap<(String, String, u32), String> = BTreeMap::new();
    for a in actions
        .iter()
        .cloned()
        .chain(std::iter::repeat_n(Action::Work(0, 0), 200))
    {
        let before = store.run("r").unwrap().clone();
        match a {
            Action::Work(n, o) => {
                let Some(task) = store.queue.get(n % store.queue.len().max(1)).cloned() else {
                    if !store.advance() {
                        store.publish_event("e", "a", "{}");
                        complete_humans(&mut store);
                    }
                    continue;
                };
                store.queue.retain(|t| t != &task);
                let start = Event::Start {
                    step: task.step.clone(),
                    attempt: task.attempt,
                    worker: "w1".into(),
                    holder_alive: true,
                };
                if store.send(&task.run, start).is_ok() {
                    held.insert((task.run.clone(), task.step.clone(), task.attempt), "w1".into());
                }
                let outcome = if o % 4 == 0 { failure("flaky") } else { ok("1") };
                let report = Event::Report {
                    step: task.step.clone(),
                    attempt: task.attempt,
                    worker: "w1".into(),
                    outcome: outcome.clone(),
                    jitter: 0.5,
                };
                let first = store.send(&task.run, report.clone());
                if o % 3 == 0 {
                    // A duplicate report is refused and changes nothing.
                    let snapshot = store.run(&task.run).unwrap().clone();
                    if first.is_ok() {
                        prop_assert!(
                            store.send(&task.run, report).is_err(),
                            "a duplicate report was accepted"
                        );
                    }
                    prop_assert_eq!(store.run(&task.run).unwrap(), &snapshot);
                }
            }
            Action::Stale(n) => {
                let s = store.run("r").unwrap().clone();
                if let Some((id, st)) = s.steps.iter().nth(n % s.steps.len().max(1))
                    && st.attempt > 1
                {
                    let e = Event::Report {
                        step: id.clone(),
                        attempt: st.attempt - 1,
                        worker: "w1".into(),
                        outcome: ok("1"),
                        jitter: 0.0,
                    };
                    prop_assert!(store.send("r", e).is_err(), "a stale report was accepted");
                    prop_assert_eq!(store.run("r").unwrap(), &s);
                }
            }
            Action::Steal(n) => {
                if let Some(task) = store.queue.get(n % store.queue.len().max(1)).cloned() {
                    let s = store.run(&task.run).unwrap().clone();
                    if let Some(Phase::Running { worker, .. }) = s.steps.get(&task.step).map(|st| &st.phase) {
                        let e = Event::Start {
                            step: task.step.clone(),
                            attempt: task.attempt,
                            worker: format!("{worker}-other"),
                            holder_alive: true,
                        };
                        let r = store.send(&task.run, e);
                        prop_assert!(matches!(r, Err(Reject::HeldByLiveWorker { .. })), "{r:?}");
                    }
                }
            }
            Action::Tick => {
                store.advance();
            }
            Action::Publish => {
                store.publish_event("e", "a", "{\"x\":1}");
            }
            Action::Human => complete_humans(&mut store),
            Action::Cancel => {
                let _ = store.send("r", Event::Cancel { reason: "test".into() });
            }
        }
        let after = store.run("r").unwrap();
        check_state(&d, after)?;
        // A finished run stays finished, as it was.
        if before.is_finished() {
            prop_assert_eq!(&before.phase, &after.phase);
        }
        if after.is_finished() && store.queue.iter().all(|t| t.run != "r") {
            break;
        }
    }
    let s = store.run("r").unwrap();
    prop_assert!(s.is_finished(), "the run did not finish: {s:#?}");
    if std::env::var_os("CORE_PROP_DEBUG").is_some() {
        eprintln!(
            "{} {:?}",
            s.status().word(),
            s.steps.values().map(|st| st.phase.word()).collect::<Vec<_>>()
        );
    }
    // Every step completes once: one settled history entry per step at most.
    let mut settled: BTreeMap<String, usize> = BTreeMap::new();
    for (run, e) in &store.effects {
        if let Effect::History { step, status, .. } = e
            && run == "r"
            && matches!(*status, "succeeded" | "skipped" | "failed" | "cancelled")
        {
            *settled.entry(step.clone()).or_default() += 1;
        }
    }
    prop_assert!(settled.values().all(|&n| n == 1), "a step completed twice: {settled:?}");
    // Every timer armed was disarmed or fired; every slot given back.
    prop_assert!(store.timers().all(|(_, run, _)| run != "r"), "timers left armed");
    Ok(())
}

fn complete_humans(store: &mut MemoryStore) {
    let open: Vec<(String, String, u32)> = store
        .run_ids()
        .cloned()
        .collect::<Vec<_>>()
        .into_iter()
        .flat_map(|r| {
            let s = store.run(&r).cloned();
            s.into_iter().flat_map(move |s| {
                let r = r.clone();
                s.steps
                    .into_iter()
                    .filter(|(_, st)| matches!(st.phase, Phase::Waiting(super::Wait::Human { .. })))
                    .map(move |(id, st)| (r.clone(), id, st.attempt))
            })
        })
        .collect();
    for (run, step, attempt) in open {
        let _ = store.send(
            &run,
            Event::HumanCompleted {
                step,
                attempt,
                user: "u".into(),
                data: "{}".into(),
            },
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_runs_keep_the_invariants(
        kinds in prop::collection::vec(any::<u8>(), 1..7),
        deps in prop::collection::vec(any::<u8>(), 7),
        flags in prop::collection::vec(any::<u8>(), 7),
        actions in prop::collection::vec(action(), 0..60),
    ) {
        let yaml = random_def(&kinds, &deps, &flags);
        drive(&yaml, &actions)?;
    }

    #[test]
    fn events_for_a_finished_run_are_refused_and_change_nothing(
        kinds in prop::collection::vec(any::<u8>(), 1..5),
        deps in prop::collection::vec(any::<u8>(), 5),
        step in 0usize..5,
        attempt in 0u32..4,
    ) {
        let yaml = random_def(&kinds, &deps, &[1, 1, 1, 1, 1]);
        let d = def(&yaml);
        let s = RunState::new(&d, "{}", 1024);
        let s = apply(&d, &s, &Event::Submit, 0).unwrap().next;
        let s = apply(&d, &s, &Event::Cancel { reason: String::new() }, 1).unwrap().next;
        let id = format!("s{}", step % kinds.len());
        for e in [
            Event::Report { step: id.clone(), attempt, worker: "w".into(), outcome: ok("1"), jitter: 0.0 },
            Event::Start { step: id.clone(), attempt, worker: "w".into(), holder_alive: false },
            Event::Heartbeat { step: id.clone(), attempt, worker: "w".into() },
            Event::EventDelivered { step: id.clone(), attempt, payload: "1".into() },
            Event::ChildDone { step: id.clone(), attempt, result: ChildResult::Emitted },
            Event::Dispatch { step: id.clone(), attempt, gate: GateAnswer::Open },
            Event::Cancel { reason: String::new() },
        ] {
            prop_assert_eq!(apply(&d, &s, &e, 2), Err(Reject::RunFinished("cancelled")));
        }
    }

    #[test]
    fn worker_events_are_only_for_steps_that_run_a_handler(kind in 3u8..7, attempt in 0u32..3) {
        let yaml = random_def(&[kind], &[0], &[1]);
        let d = def(&yaml);
        let s = RunState::new(&d, "{\"k\":\"a\"}", 1024);
        let s = apply(&d, &s, &Event::Submit, 0).unwrap().next;
        for e in [
            Event::Report { step: "s0".into(), attempt, worker: "w".into(), outcome: ok("1"), jitter: 0.0 },
            Event::Start { step: "s0".into(), attempt, worker: "w".into(), holder_alive: false },
            Event::Heartbeat { step: "s0".into(), attempt, worker: "w".into() },
        ] {
            let r = apply(&d, &s, &e, 1);
            prop_assert!(matches!(r, Err(Reject::NotAHandlerStep { .. })), "{:?}", r);
        }
    }
}

#[test]
fn a_whole_run_in_memory_takes_microseconds() {
    let mut store = MemoryStore::new(0);
    store.register(def(CHAIN));
    let started = std::time::Instant::now();
    for i in 0..100 {
        store.submit("chain", &format!("r{i}"), "{}").unwrap();
    }
    store.run_to_end("w", |_| ok("1"), 10_000);
    let took = started.elapsed();
    if std::env::var_os("CORE_PROP_DEBUG").is_some() {
        eprintln!("100 runs of 3 steps in memory: {took:?}");
    }
    assert!(
        store
            .run_ids()
            .all(|r| store.run(r).unwrap().status().word() == "succeeded")
    );
    // 100 runs of 3 steps: well under a second even in a debug build.
    assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
}

#[test]
fn gated_steps_wait_for_their_rate_limit_and_slot_then_run() {
    let yaml = "name: gated\nversion: 1\nsteps:\n  - {id: a, handler: h, rate_limit: {limit: 1, period: 1s}, concurrency: {limit: 1}}\n";
    let mut store = MemoryStore::new(0);
    store.register(def(yaml));
    store.submit("gated", "r", "{}").unwrap();
    store.run_to_end("w", |_| ok("1"), 100);
    let run = store.run("r").unwrap();
    assert_eq!(run.status().word(), "succeeded");
    assert!(run.slots.is_empty(), "the slot was given back");
    let waits: Vec<&str> = store
        .effects
        .iter()
        .filter_map(|(_, e)| match e {
            Effect::History {
                status: "waiting",
                detail,
                ..
            } => Some(detail.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        waits,
        [
            "rate limit gated/a (1 per 1s): next start at 1970-01-01T00:00:01.000Z",
            "a slot of gated/a (limit 1)"
        ]
    );
    assert!(
        store
            .effects
            .iter()
            .any(|(_, e)| matches!(e, Effect::ReleaseSlot { .. }))
    );
}
