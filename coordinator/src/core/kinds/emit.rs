//! The emit kind: a task step whose handler's output is fanned out as runs of another workflow
//! (an emitter workflow). After the handler succeeds the step waits while the coordinator starts
//! the runs (and, with `wait: true`, until they finish); then it succeeds with the handler's output.

use baton_shared::{definition::Emit, expr::Bindings, ids};

use crate::core::texts;

/// The child runs an emitting step starts: (child run id, input JSON) per element, in element
/// order, without repeated keys (the first element with a key wins). Child ids derive from (run,
/// step, key), so emitting again finds the runs made before.
///
/// # Errors
/// The evaluation error, naming the field (`emit.items: ...`, `emit.key of element 3: ...`); the
/// step fails with [`texts::emit_failed`] of it.
pub fn plan(emit: &Emit, run_id: &str, step_id: &str, b: &mut Bindings) -> Result<Vec<(String, String)>, String> {
    let items = emit.items.eval_list(b).map_err(|e| format!("emit.items: {e}"))?;
    let mut seen = std::collections::HashSet::new();
    let mut plan = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        b.item = Some((i as u64, item.clone()));
        let key = emit
            .key
            .eval_key(b)
            .map_err(|e| format!("emit.key of element {i}: {e}"))?;
        let input = match &emit.input {
            None => item,
            Some(t) => t.render(b).map_err(|e| format!("emit.input of element {i}: {e}"))?,
        };
        let child = ids::emitted_run_id(run_id, step_id, &key);
        if seen.insert(child.clone()) {
            plan.push((child, input.to_string()));
        }
    }
    b.item = None;
    Ok(plan)
}

/// Whether an emitting step is done: every planned run started (`next >= total`) and, with
/// `wait: true`, every one finished.
pub fn done(emit: &Emit, total: u64, next: u64, finished: u64) -> bool {
    next >= total && (!emit.wait || finished >= total)
}

/// How many more runs may start now: room under `max_in_flight`, at most `batch`.
pub fn room(emit: &Emit, next: u64, finished: u64, batch: u64) -> u64 {
    let in_flight = next.saturating_sub(finished);
    u64::from(emit.max_in_flight).saturating_sub(in_flight).min(batch)
}

/// What the step shows while it emits.
pub fn waiting_for() -> &'static str {
    texts::EMITTING
}
