//! The human kind: a form a person completes (one of its assignees, recorded by authenticated
//! identity), at most its `timeout`; the data becomes the step's output.

use baton_shared::definition::HumanStep;

use super::StartPlan;
use crate::core::plan::due;

/// The task to open, and when it times out.
pub fn plan(h: &HumanStep, now: i64) -> StartPlan {
    StartPlan::Human {
        title: h.title.clone(),
        timeout_at: h.timeout.map(|t| due(now, t)).unwrap_or(0),
    }
}
