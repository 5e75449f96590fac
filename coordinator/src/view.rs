//! Turns stored run state (Redis hashes and stream entries) into the API's messages, in one place.

use std::collections::HashMap;

use baton_shared::{
    definition::WorkflowDefinition,
    proto::{Attempt, EmitProgress, ItemProgress, Run, RunEvent, RunStatus, StepRun, StepStatus},
    time::timestamp,
};
use serde::Deserialize;

fn field<'a>(m: &'a HashMap<String, String>, k: &str) -> &'a str {
    m.get(k).map(String::as_str).unwrap_or("")
}

fn ms(m: &HashMap<String, String>, k: &str) -> i64 {
    field(m, k).parse().unwrap_or(0)
}

#[derive(Deserialize)]
struct StoredAttempt {
    number: u32,
    outcome: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    worker: String,
    #[serde(default)]
    started_at: i64,
    #[serde(default)]
    finished_at: i64,
    #[serde(default)]
    error_type: String,
    #[serde(default)]
    error_details: String,
}

/// A run's `error_types`, from its attempts as (outcome, error type) pairs: the distinct types of
/// the failed ones, sorted, each NUL replaced by U+FFFD (PostgreSQL's `text` holds none). The
/// archiver stores this, and ListRuns' filter reads it for a run still in Redis
/// ([`run_error_types`]), so that `error_type` means the same wherever the run lives.
pub fn error_types<'a>(attempts: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let mut types: Vec<String> = attempts
        .into_iter()
        .filter(|(outcome, error_type)| *outcome == "failed" && !error_type.is_empty())
        .map(|(_, error_type)| error_type.replace('\0', "\u{FFFD}"))
        .collect();
    types.sort();
    types.dedup();
    types
}

/// [`error_types`] of a run from its steps' attempt histories (`<step>:history` JSON, as the
/// steps hash holds them); a history that does not parse adds nothing.
pub fn run_error_types(histories: &[String]) -> Vec<String> {
    let attempts: Vec<StoredAttempt> = histories
        .iter()
        .flat_map(|h| serde_json::from_str::<Vec<StoredAttempt>>(h).unwrap_or_default())
        .collect();
    error_types(attempts.iter().map(|a| (a.outcome.as_str(), a.error_type.as_str())))
}

/// A run as the API shows it. `steps` (the steps hash) adds per-step detail; `def` gives step order,
/// handlers and retry limits (runs whose definition is unknown show steps in stored order).
pub fn run_view(
    def: Option<&WorkflowDefinition>,
    run: &HashMap<String, String>,
    steps: Option<&HashMap<String, String>>,
) -> Run {
    let status = RunStatus::from_word(field(run, "status")).unwrap_or(RunStatus::Unspecified);
    let mut out = Run {
        id: field(run, "id").into(),
        workflow: field(run, "workflow").into(),
        version: field(run, "version").parse().unwrap_or(0),
        status: status as i32,
        input_json: field(run, "input").into(),
        output_json: field(run, "output").into(),
        error: field(run, "error").into(),
        idempotency_key: field(run, "idempotency_key").into(),
        created_at: timestamp(ms(run, "created_at")),
        started_at: timestamp(ms(run, "started_at")),
        finished_at: timestamp(ms(run, "finished_at")),
        steps: Vec::new(),
        parent_run_id: field(run, "parent_run").into(),
        parent_step_id: field(run, "parent_step").into(),
        child_run_ids: Vec::new(),
        waiting_for: field(run, "waiting_for").into(),
        parked_items: serde_json::from_str(field(run, "parked_items")).unwrap_or_default(),
    };
    let Some(steps) = steps else { return out };
    let ids: Vec<String> = match def {
        Some(d) => d.steps.iter().map(|s| s.id.clone()).collect(),
        None => field(run, "step_ids")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    };
    for id in ids {
        let f = |name: &str| steps.get(&format!("{id}:{name}")).cloned().unwrap_or_default();
        let t = |name: &str| timestamp(f(name).parse().unwrap_or(0));
        let sdef = def.and_then(|d| d.step(&id));
        let history: Vec<StoredAttempt> = serde_json::from_str(&f("history")).unwrap_or_default();
        let status = StepStatus::from_word(&f("status")).unwrap_or(StepStatus::Unspecified);
        let child_run_id = f("child_run");
        if !child_run_id.is_empty() {
            out.child_run_ids.push(child_run_id.clone());
        }
        let items = (!f("items_total").is_empty()).then(|| {
            let n = |k: &str| f(k).parse::<u32>().unwrap_or(0);
            let (succeeded, failed) = (n("items_ok"), n("items_failed"));
            // items_next counts the elements dispatched so far, which leaves out those kept from
            // before a RetryRun (counted in items_ok and items_kept).
            let in_flight = if status == StepStatus::Running {
                n("items_next").saturating_sub(succeeded.saturating_sub(n("items_kept")).saturating_add(failed))
            } else {
                0
            };
            ItemProgress {
                total: n("items_total"),
                succeeded,
                failed,
                in_flight,
            }
        });
        let emitted = (!f("emit_total").is_empty()).then(|| {
            let n = |k: &str| f(k).parse::<u32>().unwrap_or(0);
            let (total, started) = (n("emit_total"), n("emit_next"));
            let (succeeded, failed) = (n("emit_succeeded"), n("emit_failed"));
            EmitProgress {
                total,
                pending: total.saturating_sub(started),
                running: started.saturating_sub(succeeded + failed),
                succeeded,
                failed,
            }
        });
        out.steps.push(StepRun {
            emitted,
            slot: f("slot"),
            slot_holders: Vec::new(),
            kind: sdef.map(|s| s.kind.word().to_string()).unwrap_or_default(),
            child_run_id,
            items,
            waiting_for: if status == StepStatus::Waiting {
                f("waiting_for")
            } else {
                String::new()
            },
            completed_by: f("completed_by"),
            handler: sdef.map(|s| s.handler.clone()).unwrap_or_default(),
            status: status as i32,
            attempt: f("attempt").parse().unwrap_or(0),
            max_attempts: sdef.map(|s| s.retry.max_attempts).unwrap_or(0),
            output_omitted_bytes: if steps.contains_key(&format!("{id}:output")) {
                0
            } else {
                f("output_bytes").parse().unwrap_or(0)
            },
            output_json: f("output"),
            // Filled by GetRun for an attempt in flight, within its answer's budget.
            input_json: String::new(),
            input_omitted_bytes: 0,
            error: f("error"),
            dispatched_at: t("dispatched_at"),
            started_at: t("started_at"),
            finished_at: t("finished_at"),
            depends_on: sdef.map(|s| s.depends_on.clone()).unwrap_or_default(),
            attempts: history
                .into_iter()
                .map(|a| Attempt {
                    number: a.number,
                    outcome: a.outcome,
                    error: a.error,
                    worker: a.worker,
                    started_at: timestamp(a.started_at),
                    finished_at: timestamp(a.finished_at),
                    // Filled by GetRun from `<step>:input@<n>` and the log counters, within its
                    // answer's budget.
                    input_json: String::new(),
                    input_omitted_bytes: 0,
                    error_type: a.error_type,
                    error_details: a.error_details,
                    log_lines: 0,
                })
                .collect(),
            worker: f("worker"),
            attempt_base: f("base").parse().unwrap_or(0),
            earlier_attempts: f("history_dropped").parse().unwrap_or(0),
            wake_at: if status == StepStatus::Waiting {
                t("wake_at")
            } else {
                None
            },
            id,
        });
    }
    out
}

/// Bytes one included output may add to an answer beyond its text: its field's tag and length
/// prefix (at most 1 + 10) and the growth of its step's own length prefix (at most 5), less the
/// `output_omitted_bytes` field it replaces.
const OUTPUT_FIELD_BYTES: u64 = 16;

/// Which step outputs a `GetRun` answer includes, for outputs of `sizes` bytes in step order, when
/// the answer without them takes `base` bytes and may take at most `budget`: each output in turn
/// if it fits what is left (a smaller one after a left-out one may still fit). Pure, and the
/// included ones never take the answer past `budget`.
pub fn fit_outputs(budget: u64, base: u64, sizes: &[u64]) -> Vec<bool> {
    let mut left = budget.saturating_sub(base);
    sizes
        .iter()
        .map(|&size| {
            let cost = size.saturating_add(OUTPUT_FIELD_BYTES);
            if size > 0 && cost <= left {
                left -= cost;
                true
            } else {
                false
            }
        })
        .collect()
}

/// Makes `run` fit `budget` bytes when its steps' failure texts alone are over it (a thousand
/// steps, each with 20 kept attempts and a 16 KiB error): from the last step back, a step's kept
/// attempts are only counted (`earlier_attempts`) and its error is cut to
/// [`MAX_ATTEMPT_ERROR_BYTES`](baton_shared::limits::MAX_ATTEMPT_ERROR_BYTES), until the answer
/// fits. A run that fits is unchanged; `GetRunRequest.step_id` still reads one step whole.
pub fn trim_history(run: &mut Run, budget: u64) {
    let len = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let mut size = len(prost::Message::encoded_len(run));
    for step in run.steps.iter_mut().rev() {
        if size <= budget {
            return;
        }
        let before = len(prost::Message::encoded_len(step));
        let dropped = u32::try_from(step.attempts.len()).unwrap_or(u32::MAX);
        step.attempts.clear();
        step.earlier_attempts = step.earlier_attempts.saturating_add(dropped);
        let cut = baton_shared::limits::cut(&step.error, baton_shared::limits::MAX_ATTEMPT_ERROR_BYTES);
        if let std::borrow::Cow::Owned(cut) = cut {
            step.error = cut;
        }
        let after = len(prost::Message::encoded_len(step));
        size = size.saturating_sub(before.saturating_sub(after));
    }
}

/// The steps of `run` (a [`run_view`] read without outputs, each output's size in
/// `output_omitted_bytes`) whose outputs fit an answer of at most `budget` bytes
/// ([`fit_outputs`]): the run's own input and output and every other field count first.
pub fn outputs_that_fit(run: &Run, budget: u64) -> Vec<String> {
    let base = u64::try_from(prost::Message::encoded_len(run)).unwrap_or(u64::MAX);
    let sizes: Vec<u64> = run.steps.iter().map(|s| s.output_omitted_bytes).collect();
    run.steps
        .iter()
        .zip(fit_outputs(budget, base, &sizes))
        .filter(|(_, fits)| *fits)
        .map(|(s, _)| s.id.clone())
        .collect()
}

/// Puts the outputs read for [`outputs_that_fit`] (`<step>:output`) into `run`'s steps. An output
/// larger than the size it was chosen for (rewritten in between by a re-run) stays left out, with
/// its new size, so the answer stays within its budget.
pub fn fill_outputs(run: &mut Run, mut outputs: HashMap<String, String>) {
    for step in &mut run.steps {
        let Some(output) = outputs.remove(&format!("{}:output", step.id)) else {
            continue;
        };
        let size = u64::try_from(output.len()).unwrap_or(u64::MAX);
        if size <= step.output_omitted_bytes {
            step.output_json = output;
            step.output_omitted_bytes = 0;
        } else {
            step.output_omitted_bytes = size;
        }
    }
}

/// One stored event as the API shows it.
pub fn event_view(run_id: &str, id: String, f: &HashMap<String, String>) -> RunEvent {
    RunEvent {
        run_id: run_id.to_string(),
        sequence: id,
        time: timestamp(ms(f, "at")),
        kind: field(f, "kind").into(),
        step_id: field(f, "step").into(),
        attempt: field(f, "attempt").parse().unwrap_or(0),
        status: field(f, "status").into(),
        detail: field(f, "detail").into(),
        payload_json: field(f, "payload").into(),
        log: None,
        run: None,
    }
}

/// A registered workflow as the API shows it.
pub fn workflow_view(
    def: &WorkflowDefinition,
    registered_at: i64,
    versions: Vec<u32>,
) -> baton_shared::proto::Workflow {
    use baton_shared::{
        definition::StepKind,
        proto::{
            ConcurrencyDefinition, EmitDefinition, HumanStepDefinition, RateLimitDefinition, RetryPolicy,
            StepDefinition, WaitForEventDefinition, Workflow,
        },
    };
    Workflow {
        name: def.name.clone(),
        version: def.version,
        description: def.description.clone(),
        steps: def
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| StepDefinition {
                id: s.id.clone(),
                handler: s.handler.clone(),
                depends_on: s.depends_on.clone(),
                retry: Some(RetryPolicy {
                    max_attempts: s.retry.max_attempts,
                    initial_interval_ms: s.retry.initial_interval.as_millis() as u64,
                    backoff_coefficient: s.retry.backoff_coefficient,
                    max_interval_ms: s.retry.max_interval.as_millis() as u64,
                    jitter: s.retry.jitter,
                    non_retryable_errors: s.retry.non_retryable_errors.clone(),
                }),
                timeout_ms: s.timeout.as_millis() as u64,
                heartbeat_timeout_ms: s.heartbeat_timeout.map(|d| d.as_millis() as u64).unwrap_or(0),
                schedule_to_start_ms: s.schedule_to_start.map(|d| d.as_millis() as u64).unwrap_or(0),
                sleep_ms: s.sleep.map(|d| d.as_millis() as u64).unwrap_or(0),
                kind: s.kind.word().into(),
                concurrency: s.concurrency.as_ref().map(|c| ConcurrencyDefinition {
                    limit: c.limit,
                    key: c.key.as_ref().map(|e| e.source().to_string()).unwrap_or_default(),
                }),
                rate_limit: s.rate_limit.as_ref().map(|r| RateLimitDefinition {
                    limit: r.limit,
                    period_ms: r.period.as_millis() as u64,
                    key: r.key.as_ref().map(|e| e.source().to_string()).unwrap_or_default(),
                }),
                emit: s.emit.as_ref().map(|e| EmitDefinition {
                    workflow: e.workflow.clone(),
                    items: e.items.source().to_string(),
                    key: e.key.source().to_string(),
                    wait: e.wait,
                    max_in_flight: e.max_in_flight,
                }),
                when: s.when.as_ref().map(|e| e.source().to_string()).unwrap_or_default(),
                input_template_json: def.document["steps"][i]
                    .get("input")
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                for_each: s
                    .for_each
                    .as_ref()
                    .map(|f| f.items.source().to_string())
                    .unwrap_or_default(),
                max_parallel: s.for_each.as_ref().map(|f| f.max_parallel).unwrap_or(0),
                sleep_until: match &s.kind {
                    StepKind::SleepUntil(e) => e.source().to_string(),
                    _ => String::new(),
                },
                wait_for_event: match &s.kind {
                    StepKind::WaitForEvent(w) => Some(WaitForEventDefinition {
                        event: w.event.clone(),
                        key: w.key.as_ref().map(|e| e.source().to_string()).unwrap_or_default(),
                        timeout_ms: w.timeout.map(|d| d.as_millis() as u64).unwrap_or(0),
                        on_timeout: match w.on_timeout {
                            baton_shared::definition::OnTimeout::Fail => "fail".into(),
                            baton_shared::definition::OnTimeout::Skip => "skip".into(),
                        },
                    }),
                    _ => None,
                },
                human: match &s.kind {
                    StepKind::Human(h) => Some(HumanStepDefinition {
                        title: h.title.clone(),
                        description: h.description.clone(),
                        assignees: h.assignees.clone(),
                        form_schema_json: h.form.to_string(),
                    }),
                    _ => None,
                },
                workflow: match &s.kind {
                    StepKind::Workflow(c) => c.name.clone(),
                    _ => String::new(),
                },
                workflow_version: match &s.kind {
                    StepKind::Workflow(c) => c.version,
                    _ => 0,
                },
            })
            .collect(),
        max_concurrent_runs: def.max_concurrent_runs.unwrap_or(0),
        concurrency_key: def
            .concurrency_key
            .as_ref()
            .map(|e| e.source().to_string())
            .unwrap_or_default(),
        on_event: def.on.as_ref().map(|t| t.event.clone()).unwrap_or_default(),
        on_event_filter: def
            .on
            .as_ref()
            .and_then(|t| t.filter.as_ref())
            .map(|e| e.source().to_string())
            .unwrap_or_default(),
        input_schema_json: def.input_schema.as_ref().map(|s| s.to_string()).unwrap_or_default(),
        definition_json: def.document.to_string(),
        registered_at: timestamp(registered_at),
        versions,
    }
}

/// Bytes one included attempt input may add to an answer beyond its text (as
/// `step_data::fill_attempts` counts it).
const INPUT_FIELD_BYTES: u64 = 24;

/// GetRun's answer budget in bytes ([`baton_shared::limits::MAX_GET_RUN_BYTES`]), as the
/// budgets of this module take it.
pub fn get_run_budget() -> u64 {
    u64::try_from(baton_shared::limits::MAX_GET_RUN_BYTES).unwrap_or(u64::MAX)
}

/// Keeps only step `step_id` of `run` (GetRun with `step_id`), and the child runs of that step.
pub fn keep_step(run: &mut Run, step_id: &str) {
    run.steps.retain(|s| s.id == step_id);
    run.child_run_ids = run
        .steps
        .iter()
        .filter(|s| !s.child_run_id.is_empty())
        .map(|s| s.child_run_id.clone())
        .collect();
}

/// GetRun's answer for an archived run (`run` is whole, as the archiver wrote it), shaped as the
/// answer for the same run in Redis: with `step_id`, that one step whole and the run's own input
/// and output left out; without, the answer fits `budget` bytes the same way
/// ([`trim_history`], then the outputs that fit in step order, then the attempts' inputs in step
/// and attempt order), what is left out counted in `output_omitted_bytes` / `input_omitted_bytes`.
///
/// # Errors
/// The `NOT_FOUND` text naming `step_id` when the run has no such step.
pub fn archived_answer(mut run: Run, step_id: &str, budget: u64) -> Result<Run, String> {
    if !step_id.is_empty() {
        if !run.steps.iter().any(|s| s.id == step_id) {
            return Err(format!(
                "step_id: run {} has no step {}",
                run.id,
                baton_shared::limits::echo(step_id)
            ));
        }
        run.input_json.clear();
        run.output_json.clear();
        keep_step(&mut run, step_id);
    }
    let len = |s: &str| u64::try_from(s.len()).unwrap_or(u64::MAX);
    let mut outputs = HashMap::new();
    let mut inputs = HashMap::new();
    for step in &mut run.steps {
        for a in &mut step.attempts {
            if !a.input_json.is_empty() {
                a.input_omitted_bytes = len(&a.input_json);
                inputs.insert((step.id.clone(), a.number), std::mem::take(&mut a.input_json));
            }
        }
        if step_id.is_empty() && !step.output_json.is_empty() {
            step.output_omitted_bytes = len(&step.output_json);
            outputs.insert(format!("{}:output", step.id), std::mem::take(&mut step.output_json));
        }
    }
    if step_id.is_empty() {
        // The Redis path chooses outputs before it knows the attempts' log counts and input
        // sizes: so do the same here, then put them back.
        let mut facts: HashMap<(String, u32), (u32, u64)> = HashMap::new();
        for step in &mut run.steps {
            for a in &mut step.attempts {
                facts.insert(
                    (step.id.clone(), a.number),
                    (
                        std::mem::take(&mut a.log_lines),
                        std::mem::take(&mut a.input_omitted_bytes),
                    ),
                );
            }
        }
        trim_history(&mut run, budget);
        let fit = outputs_that_fit(&run, budget);
        let chosen: HashMap<String, String> = fit
            .iter()
            .filter_map(|id| {
                let k = format!("{id}:output");
                outputs.remove(&k).map(|v| (k, v))
            })
            .collect();
        fill_outputs(&mut run, chosen);
        for step in &mut run.steps {
            for a in &mut step.attempts {
                if let Some((lines, omitted)) = facts.remove(&(step.id.clone(), a.number)) {
                    a.log_lines = lines;
                    a.input_omitted_bytes = omitted;
                }
            }
        }
    }
    let mut left = budget.saturating_sub(u64::try_from(prost::Message::encoded_len(&run)).unwrap_or(u64::MAX));
    for step in &mut run.steps {
        for a in &mut step.attempts {
            let size = a.input_omitted_bytes;
            let cost = size.saturating_add(INPUT_FIELD_BYTES);
            if size > 0
                && cost <= left
                && let Some(input) = inputs.remove(&(step.id.clone(), a.number))
            {
                left -= cost;
                a.input_json = input;
                a.input_omitted_bytes = 0;
            }
        }
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_whose_failure_texts_are_over_the_budget_keeps_its_first_steps_history_and_counts_the_rest() {
        let attempt = |n: u32| baton_shared::proto::Attempt {
            number: n,
            error: "e".repeat(1_024),
            ..Default::default()
        };
        let mut run = Run {
            steps: (0..1_000)
                .map(|i| baton_shared::proto::StepRun {
                    id: format!("s{i}"),
                    error: "x".repeat(16 * 1024),
                    attempts: (1..=20).map(attempt).collect(),
                    earlier_attempts: 3,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let budget = 3 * 1024 * 1024;
        assert!(prost::Message::encoded_len(&run) > 30 * 1024 * 1024);
        trim_history(&mut run, budget);
        assert!(prost::Message::encoded_len(&run) as u64 <= budget);
        // The first steps are whole; the trimmed ones count what they no longer list.
        assert_eq!(run.steps[0].attempts.len(), 20);
        assert_eq!(run.steps[0].error.len(), 16 * 1024);
        let last = &run.steps[999];
        assert!(last.attempts.is_empty());
        assert_eq!(last.earlier_attempts, 23);
        assert!(last.error.len() <= 1_024 + '…'.len_utf8());

        // A run within the budget is left as it is.
        let mut small = Run {
            steps: vec![baton_shared::proto::StepRun {
                id: "a".into(),
                attempts: vec![attempt(1)],
                ..Default::default()
            }],
            ..Default::default()
        };
        let before = small.clone();
        trim_history(&mut small, budget);
        assert_eq!(small, before);
    }

    #[test]
    fn outputs_are_included_in_step_order_while_they_fit_the_budget() {
        // 110 bytes of budget, 10 taken by the rest of the answer: 100 left, and each output
        // costs its size plus 16.
        assert_eq!(fit_outputs(110, 10, &[20, 40, 20]), [true, true, false]);
        // An output that does not fit is left out; a smaller one after it still fits.
        assert_eq!(fit_outputs(110, 10, &[30, 500, 30]), [true, false, true]);
        // A step without an output has nothing to include.
        assert_eq!(fit_outputs(110, 10, &[0, 84]), [false, true]);
    }

    #[test]
    fn nothing_is_included_when_the_rest_of_the_answer_takes_the_budget() {
        assert_eq!(fit_outputs(100, 100, &[1, 1]), [false, false]);
        assert_eq!(fit_outputs(100, 5_000, &[1]), [false]);
        assert_eq!(fit_outputs(1_000, 0, &[u64::MAX, 1]), [false, true]);
    }

    #[test]
    fn the_included_outputs_never_take_the_answer_past_its_budget() {
        let sizes: Vec<u64> = (0..1_000u64).map(|i| (i * 7_919) % 9_000).collect();
        for (budget, base) in [(3 << 20, 1_000), (100_000, 99_000), (50_000, 0)] {
            let fits = fit_outputs(budget, base, &sizes);
            let used: u64 = sizes
                .iter()
                .zip(&fits)
                .filter(|(_, f)| **f)
                .map(|(s, _)| s + OUTPUT_FIELD_BYTES)
                .sum();
            assert!(base + used <= budget, "{base} + {used} > {budget}");
        }
    }

    #[test]
    fn an_output_that_grew_since_it_was_chosen_stays_left_out() {
        let mut run = Run {
            steps: vec![
                StepRun {
                    id: "a".into(),
                    output_omitted_bytes: 2,
                    ..Default::default()
                },
                StepRun {
                    id: "b".into(),
                    output_omitted_bytes: 2,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let outputs = HashMap::from([("a:output".into(), "{}".into()), ("b:output".into(), "[1,2]".into())]);
        fill_outputs(&mut run, outputs);
        assert_eq!(
            (run.steps[0].output_json.as_str(), run.steps[0].output_omitted_bytes),
            ("{}", 0)
        );
        assert_eq!(
            (run.steps[1].output_json.as_str(), run.steps[1].output_omitted_bytes),
            ("", 5)
        );
    }
}
