//! Fuzz target: the bytes of a RabbitMQ delivery decoded as the `StepTask` a worker receives, the
//! way `handle_delivery` in `worker/src/runtime.rs` does it (that function is private and needs a
//! live delivery, so this repeats its decode path with prost): decode, the checks that send a
//! malformed task to the dead-letter queue, then the conversions it makes before starting the
//! handler (input, parent outputs and resume data as JSON, the timeouts as durations).
#![no_main]

use std::time::Duration;

use baton_shared::proto::StepTask;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let task = match StepTask::decode(data) {
        Ok(t) if !t.run_id.is_empty() && !t.step_id.is_empty() && t.attempt > 0 => t,
        Ok(_) | Err(_) => return, // dead-lettered
    };
    let _parent_outputs: Vec<(String, serde_json::Value)> = task
        .parent_outputs_json
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap_or(serde_json::Value::Null)))
        .collect();
    let _input: serde_json::Value = serde_json::from_str(&task.input_json).unwrap_or(serde_json::Value::Null);
    let _resume: Option<serde_json::Value> = (!task.resume_data_json.is_empty())
        .then(|| serde_json::from_str(&task.resume_data_json).unwrap_or(serde_json::Value::Null));
    let timeout = Duration::from_millis(task.timeout_ms.max(1));
    let _heartbeat = (task.heartbeat_timeout_ms > 0).then(|| Duration::from_millis(task.heartbeat_timeout_ms));
    // a deadline from a task's timeout must not overflow (tokio's sleep saturates the same way)
    let _deadline = std::time::Instant::now().checked_add(timeout);
    let _keys = (
        baton_shared::ids::step_idempotency_key(&task.run_id, &task.step_id),
        baton_shared::ids::attempt_idempotency_key(&task.run_id, &task.step_id, task.attempt),
    );
    // what the worker sends back re-encodes
    let _ = task.encode_to_vec();
});
