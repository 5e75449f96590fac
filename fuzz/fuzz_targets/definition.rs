//! Fuzz target: a workflow definition as RegisterWorkflow receives it (YAML or JSON text), parsed and
//! validated. Any input must give a definition or an `InvalidDefinition`, never a panic, a stack
//! overflow or a long stall; and its error message (what a caller reads) must stay small.
#![no_main]

use baton_shared::definition::WorkflowDefinition;
use baton_shared::limits::{MAX_PROBLEM_BYTES, MAX_REPORTED_PROBLEMS, cut};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match WorkflowDefinition::parse(text) {
        Ok(def) => {
            // what the coordinator reads of a definition it accepted
            let _ = def.handlers();
            let _ = def.roots().count();
            let _ = def.leaves().count();
            let _ = def.validate_input(&serde_json::json!({}));
        }
        Err(e) => {
            // what a caller reads: at most 20 problems, each path and message cut to 1 KiB
            let text = e.to_string();
            let most = MAX_REPORTED_PROBLEMS * (2 * MAX_PROBLEM_BYTES + 16) + 64;
            assert!(
                text.len() <= most,
                "an error of {} bytes: {}",
                text.len(),
                cut(&text, 2_000)
            );
            assert!(!e.0.is_empty());
        }
    }
});
