//! The fan-out kind: a task step with `for_each` runs its handler once per element
//! (`<step>#<index>`), at most `max_parallel` at a time; it succeeds after its last element did,
//! with their outputs in element order, and fails when an element fails for good.

use baton_shared::{
    definition::{ForEach, MAX_FAN_OUT, StepDefinition},
    expr::Bindings,
};

use super::{Halt, StartPlan, fail};
use crate::core::texts;

/// Evaluates `for_each.items` and renders each element's input.
///
/// # Errors
/// `ForEachError: for_each: ...`, `FanOutTooLarge: ...` (over [`MAX_FAN_OUT`] elements),
/// `InputError: input of element <i>: ...`.
pub fn plan(step: &StepDefinition, f: &ForEach, b: &mut Bindings) -> Result<StartPlan, Halt> {
    let items = f.items.eval_list(b).map_err(fail("ForEachError: for_each"))?;
    if items.len() > MAX_FAN_OUT {
        return Err(Halt::Fail(texts::fan_out_too_large(items.len())));
    }
    let mut inputs = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match &step.input {
            None => inputs.push(item.to_string()),
            Some(t) => {
                b.item = Some((i as u64, item));
                let v = t
                    .render(b)
                    .map_err(fail(&format!("InputError: input of element {i}")))?;
                inputs.push(v.to_string());
            }
        }
    }
    b.item = None;
    Ok(StartPlan::FanOut {
        inputs,
        max_parallel: f.max_parallel,
    })
}

/// The output of a fan-out step whose elements all succeeded: their outputs (JSON texts, in
/// element order) as one JSON array, or the failure when together they pass `limit` bytes.
///
/// # Errors
/// `OutputTooLarge: ...` (the message users read).
pub fn gather<'a>(outputs: impl IntoIterator<Item = &'a str>, total: usize, limit: usize) -> Result<String, String> {
    let mut output = String::from("[");
    for (i, out) in outputs.into_iter().enumerate() {
        if i > 0 {
            output.push(',');
        }
        output.push_str(out);
        if output.len() > limit {
            break;
        }
    }
    output.push(']');
    if output.len() > limit {
        Err(texts::items_too_large(total, limit))
    } else {
        Ok(output)
    }
}
