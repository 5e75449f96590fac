//! Gates a dispatched step passes before it starts: its parents (all skipped: skipped too), its
//! `when:` condition, its rate limit and its concurrency limit. The pools themselves are shared
//! across runs and live in the store; this module names them and says what a step waiting on one
//! shows.

use std::time::Duration;

use baton_shared::{
    definition::{StepDefinition, WorkflowDefinition},
    expr::{Bindings, Expr},
};

use super::{
    kinds::{Halt, fail},
    texts,
};

/// Skips a step with parents that were all skipped.
///
/// # Errors
/// [`Halt::Skip`] with [`texts::ALL_PARENTS_SKIPPED`].
pub fn all_parents_skipped(step: &StepDefinition, status_of: &dyn Fn(&str) -> Option<String>) -> Result<(), Halt> {
    if !step.depends_on.is_empty()
        && step
            .depends_on
            .iter()
            .all(|d| status_of(d).as_deref() == Some("skipped"))
    {
        return Err(Halt::Skip(texts::ALL_PARENTS_SKIPPED.into()));
    }
    Ok(())
}

/// Skips a step whose `when:` condition is false.
///
/// # Errors
/// [`Halt::Skip`] with [`texts::condition_false`]; [`Halt::Fail`] `ConditionError: when: ...`.
pub fn when(step: &StepDefinition, b: &Bindings) -> Result<(), Halt> {
    if let Some(when) = &step.when
        && !when.eval_bool(b).map_err(fail("ConditionError: when"))?
    {
        return Err(Halt::Skip(texts::condition_false(when.source())));
    }
    Ok(())
}

/// A key value as a part of a pool name, escaped so that distinct keys stay distinct pools: `|`,
/// `{` and `}` (they delimit Redis members and hash tags) become `_p`, `_o` and `_c`, and `_`
/// becomes `__`.
pub fn pool_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        match c {
            '_' => out.push_str("__"),
            '|' => out.push_str("_p"),
            '{' => out.push_str("_o"),
            '}' => out.push_str("_c"),
            c => out.push(c),
        }
    }
    out
}

/// The name of a concurrency or rate-limit pool: `<workflow>/<step>` and, with a key, `/<key>`
/// (escaped by [`pool_key`]).
///
/// # Errors
/// The key's evaluation error.
pub fn pool_name(workflow: &str, step: &str, key: Option<&Expr>, b: &Bindings) -> Result<String, String> {
    let base = format!("{workflow}/{step}");
    match key {
        None => Ok(base),
        Some(k) => Ok(format!("{base}/{}", pool_key(&k.eval_key(b)?))),
    }
}

/// The run-slot pool of a run of `def` with this input, for a workflow with
/// `max_concurrent_runs`: `<workflow>/run`, or `<workflow>/run/<key>` with a `concurrency_key`.
/// `None` without a limit.
///
/// # Errors
/// `input: concurrency_key: ...` when the key cannot be evaluated over the input.
pub fn run_pool(def: &WorkflowDefinition, input: &serde_json::Value) -> Result<Option<(String, u32)>, String> {
    let Some(limit) = def.max_concurrent_runs else {
        return Ok(None);
    };
    let pool = match &def.concurrency_key {
        None => format!("{}/run", def.name),
        Some(k) => {
            let b = Bindings {
                input: input.clone(),
                ..Default::default()
            };
            let key = k.eval_key(&b).map_err(|e| format!("input: concurrency_key: {e}"))?;
            format!("{}/run/{}", def.name, pool_key(&key))
        }
    };
    Ok(Some((pool, limit)))
}

/// A rate limit a step takes a start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateGate {
    /// The pool.
    pub pool: String,
    /// Starts per period.
    pub limit: u32,
    /// The period.
    pub period: Duration,
    /// This attempt's member of the pool's window: `<run>|<step>|<attempt>`.
    pub member: String,
}

impl RateGate {
    /// What the step shows while parked until `at` (Unix ms).
    pub fn waiting_for(&self, at: i64) -> String {
        texts::rate_limited(&self.pool, self.limit, self.period, at)
    }
}

/// A concurrency pool a step holds a slot of while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotGate {
    /// The pool.
    pub pool: String,
    /// Holders at most.
    pub limit: u32,
}

impl SlotGate {
    /// What the step shows while it waits for a slot.
    pub fn waiting_for(&self) -> String {
        texts::slot_wait(&self.pool, self.limit)
    }
}

/// The pools a task step passes, in order: rate limit, then concurrency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gates {
    /// Its rate limit.
    pub rate: Option<RateGate>,
    /// Its concurrency limit.
    pub slot: Option<SlotGate>,
}

impl Gates {
    /// The pools of attempt `attempt` of `step` of run `run_id` (a run of `workflow`).
    ///
    /// # Errors
    /// `KeyError: rate_limit.key: ...`, `KeyError: concurrency.key: ...`.
    pub fn of(workflow: &str, step: &StepDefinition, run_id: &str, attempt: u32, b: &Bindings) -> Result<Gates, Halt> {
        let rate = match &step.rate_limit {
            None => None,
            Some(l) => Some(RateGate {
                pool: pool_name(workflow, &step.id, l.key.as_ref(), b).map_err(fail("KeyError: rate_limit.key"))?,
                limit: l.limit,
                period: l.period,
                member: format!("{run_id}|{}|{attempt}", step.id),
            }),
        };
        let slot = match &step.concurrency {
            None => None,
            Some(c) => Some(SlotGate {
                pool: pool_name(workflow, &step.id, c.key.as_ref(), b).map_err(fail("KeyError: concurrency.key"))?,
                limit: c.limit,
            }),
        };
        Ok(Gates { rate, slot })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_keys_make_distinct_pools() {
        assert_eq!(pool_key("tenant-a"), "tenant-a");
        assert_ne!(pool_key("a|b"), pool_key("a_b"));
        assert_ne!(pool_key("a{b}"), pool_key("a_ob_c"));
        assert!(!pool_key("x|{y}").contains(['|', '{', '}']));
    }
}
