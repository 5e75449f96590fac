//! The Redis key layout. Every key starts with a configurable prefix (so tests and tenants can share
//! a server); every key of one run shares the hash tag `{<run_id>}` so that a run's scripts touch a
//! single Redis Cluster slot. Global indexes (timers, outbox, effects, run lists, registry) are
//! single keys; a run script that writes one declares it in its KEYS, as it does every key it
//! touches (no script builds a key from the prefix).

/// Key builder for one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (e.g. `baton`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Hash: the run's own fields (status, input, output, times).
    pub fn run(&self, run_id: &str) -> String {
        format!("{}:{{{run_id}}}:run", self.prefix)
    }

    /// Hash: per-step fields, `<step>:<field>`.
    pub fn steps(&self, run_id: &str) -> String {
        format!("{}:{{{run_id}}}:steps", self.prefix)
    }

    /// Stream: the run's event history, read by `WatchRun`.
    pub fn events(&self, run_id: &str) -> String {
        format!("{}:{{{run_id}}}:events", self.prefix)
    }

    /// Stream: the run's log lines as handlers append them, for live watchers only (short, and
    /// expiring minutes after the last line; the lines themselves are kept in the steps hash).
    pub fn log_tail(&self, run_id: &str) -> String {
        format!("{}:{{{run_id}}}:log-tail", self.prefix)
    }

    /// List: an emitting step's plan, one `<child run id>\t<input JSON>` per child.
    pub fn emit_plan(&self, run_id: &str, step: &str) -> String {
        format!("{}:{{{run_id}}}:emit:{step}", self.prefix)
    }

    /// Set: the children of an emitting step counted as finished.
    pub fn emit_done(&self, run_id: &str, step: &str) -> String {
        format!("{}:{{{run_id}}}:emit-done:{step}", self.prefix)
    }

    /// Sorted set of durable timers (retries, timeouts, heartbeats), scored by due time in Unix ms.
    pub fn timers(&self) -> String {
        format!("{}:timers", self.prefix)
    }

    /// Sorted set of dispatches committed but not yet confirmed by RabbitMQ, scored by the time
    /// (Unix ms) after which the sweeper republishes them.
    pub fn outbox(&self) -> String {
        format!("{}:outbox", self.prefix)
    }

    /// Sorted set of cross-run effects a run script committed (a concurrency slot or run slot to
    /// give back, a slot lease to extend, an emitting parent to notify), member the effect as JSON
    /// (`coordinator::store::Effect`), scored by the time (Unix ms) after which the effects sweeper
    /// applies it; the committing coordinator applies and removes it at once. Per namespace today;
    /// a shard's own with shards.
    pub fn effects(&self) -> String {
        format!("{}:effects", self.prefix)
    }

    /// Sorted set of finished runs waiting to be archived (the archive outbox), member the run id,
    /// scored by the run's `finished_at` (Unix ms) as the script that finished it wrote it. Only
    /// written when the coordinator has an archive (`archive_url`); the archiver takes the oldest
    /// first and removes an entry only after the run is written to the archive and shrunk to its
    /// tombstone.
    pub fn archive_outbox(&self) -> String {
        format!("{}:archive-outbox", self.prefix)
    }

    /// String holding the token of the coordinator whose archiver works the namespace's archive
    /// outbox (one at a time, so two never write the same batch), with a lease as its expiry.
    pub fn archiver_lease(&self) -> String {
        format!("{}:archiver", self.prefix)
    }

    /// Sorted set (lexicographic, score 0) of all runs, member `<created_ms:013>:<run_id>`.
    pub fn runs_index(&self) -> String {
        format!("{}:runs", self.prefix)
    }

    /// Like [`Keys::runs_index`], for one workflow.
    pub fn workflow_runs_index(&self, workflow: &str) -> String {
        format!("{}:runs:wf:{workflow}", self.prefix)
    }

    /// Hash: version -> definition JSON, for one workflow.
    pub fn workflow(&self, name: &str) -> String {
        format!("{}:wf:{name}", self.prefix)
    }

    /// Hash: version -> registration time (Unix ms), for one workflow.
    pub fn workflow_registered(&self, name: &str) -> String {
        format!("{}:wf:{name}:registered", self.prefix)
    }

    /// Set of the steps waiting for an event (name, key), members `<run>|<step>|<attempt>`. The
    /// name and key are length-prefixed ([`event_identity`]), so no two (name, key) pairs share a key
    /// whatever characters they hold.
    pub fn event_waiters(&self, name: &str, key: &str) -> String {
        format!("{}:event:{}:waiting", self.prefix, event_identity(name, key))
    }

    /// List of events (name, key) published while no step waited, oldest first; expires. Named like
    /// [`Keys::event_waiters`].
    pub fn event_buffer(&self, name: &str, key: &str) -> String {
        format!("{}:event:{}:buffered", self.prefix, event_identity(name, key))
    }

    /// Sorted set of the (name, key) pairs that have had events buffered, member
    /// [`buffered_member`], scored by the last buffering (Unix ms). Entries whose buffer expired are
    /// dropped lazily by listings.
    pub fn event_buffers(&self) -> String {
        format!("{}:event-buffers", self.prefix)
    }

    /// Sorted set of the attempts holding slots of a concurrency pool, scored by lease end (Unix ms).
    pub fn slot_holders(&self, pool: &str) -> String {
        format!("{}:sem:{pool}:holders", self.prefix)
    }

    /// List of the attempts waiting for a slot of a concurrency pool, oldest first.
    pub fn slot_waiters(&self, pool: &str) -> String {
        format!("{}:sem:{pool}:queue", self.prefix)
    }

    /// Sorted set of the starts in a rate limit's window, scored by time (Unix ms).
    pub fn rate_window(&self, pool: &str) -> String {
        format!("{}:rate:{pool}", self.prefix)
    }

    /// Sorted set of human tasks, member `<run>|<step>`, scored by creation time (Unix ms).
    pub fn human_tasks(&self) -> String {
        format!("{}:human-tasks", self.prefix)
    }

    /// Set of registered workflow names.
    pub fn workflow_names(&self) -> String {
        format!("{}:wf-names", self.prefix)
    }

    /// Sorted set of the workers that registered (`RegisterWorker`), member the worker id, scored
    /// by when it was last seen (Unix ms). Members older than the worker retention are trimmed.
    pub fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }

    /// String: one worker's last registration, as JSON, expiring after the worker retention.
    pub fn worker(&self, worker_id: &str) -> String {
        format!("{}:worker:{worker_id}", self.prefix)
    }

    /// String: present while worker `worker_id` is alive, i.e. for
    /// `LOST_AFTER_INTERVALS` (3) of its heartbeat intervals after its last `RegisterWorker`;
    /// deleted when it stops. An attempt a live worker started is held by it: another copy of the
    /// task is answered `DUPLICATE` (see `start_step.lua`).
    pub fn worker_alive(&self, worker_id: &str) -> String {
        format!("{}:worker-alive:{worker_id}", self.prefix)
    }

    /// Sorted set of the attempts of `handler` dispatched and not yet started, member
    /// `<run>|<step>|<attempt>`, scored by dispatch time (Unix ms): what waits in the handler's
    /// queue by the coordinator's count ("N tasks ahead", the oldest waiting task).
    pub fn queued(&self, handler: &str) -> String {
        format!("{}:queued:{handler}", self.prefix)
    }
}

/// An event's identity, `<bytes of name>:<name>:<bytes of key>:<key>`: unambiguous whatever the name
/// and key hold (`:`, `|`, braces), so event `a` key `b:c` and event `a:b` key `c` never meet.
pub fn event_identity(name: &str, key: &str) -> String {
    format!("{}:{name}:{}:{key}", name.len(), key.len())
}

/// The member of [`Keys::event_buffers`] for (name, key): a JSON array `["name","key"]`.
pub fn buffered_member(name: &str, key: &str) -> String {
    serde_json::json!([name, key]).to_string()
}

/// Reads a [`buffered_member`] back into (name, key).
pub fn parse_buffered_member(member: &str) -> Option<(String, String)> {
    serde_json::from_str::<(String, String)>(member).ok()
}

/// The member of a run in the run indexes: sorts by creation time, then id.
pub fn run_index_member(created_ms: i64, run_id: &str) -> String {
    format!("{created_ms:013}:{run_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_keys_share_a_hash_tag() {
        let k = Keys::new("t1");
        for key in [k.run("r"), k.steps("r"), k.events("r")] {
            assert!(key.starts_with("t1:{r}:"), "{key}");
        }
    }

    #[test]
    fn event_names_and_keys_cannot_collide() {
        let k = Keys::new("t");
        assert_ne!(k.event_waiters("a", "b:c"), k.event_waiters("a:b", "c"));
        assert_ne!(k.event_buffer("a", "b:c"), k.event_buffer("a:b", "c"));
        assert_ne!(event_identity("a|b", "c"), event_identity("a", "b|c"));
        assert_ne!(k.event_waiters("a", "x"), k.event_buffer("a", "x"));
        let m = buffered_member("a|\"b", "k:{1}");
        assert_eq!(parse_buffered_member(&m), Some(("a|\"b".into(), "k:{1}".into())));
    }
}
