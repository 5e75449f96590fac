//! The Redis key layout. Every key starts with the hash tag of what it belongs to, which
//! [`Keys::tag`] alone decides: today every key of a namespace carries the namespace's tag
//! `{<prefix>}` (so tests and tenants can share a server, and every script of a namespace touches
//! one Redis Cluster slot), e.g. `{baton}:timers` and `{baton}:{<run_id>}:run` (the run id's
//! braces are kept from the earlier layout; only the first braces decide the slot). With shards, a
//! run's keys and its shard's indexes take the shard's tag instead: only [`Keys::tag`] changes.
//! Global indexes (timers, outbox, effects, run lists, registry) are single keys; a run script that
//! writes one declares it in its KEYS, as it does every key it touches (no script builds a key
//! from the prefix).

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

    /// The hash tag, braces included, of the keys of `scope`: the one place that decides which
    /// Redis Cluster slot a key lives in. Today every scope of a namespace gets the namespace's tag
    /// `{<prefix>}`, so each script touches one slot; with shards a run's keys and its shard's
    /// indexes get the shard's.
    pub fn tag(&self, scope: Scope<'_>) -> String {
        match scope {
            Scope::Namespace | Scope::Run(_) => format!("{{{}}}", self.prefix),
        }
    }

    /// The key `<tag>:<name>` of a namespace-wide `name` (e.g. `timers`): for keys of the
    /// namespace that are not the engine's own (a test's counters) and for the store's modules.
    pub fn namespaced(&self, name: &str) -> String {
        format!("{}:{name}", self.tag(Scope::Namespace))
    }

    /// The key `<tag>:<name>` of one of the run's keys.
    fn run_key(&self, run_id: &str, name: &str) -> String {
        format!("{}:{name}", self.tag(Scope::Run(run_id)))
    }

    /// The `SCAN MATCH` pattern of every key of the namespace (glob characters of the prefix
    /// escaped).
    pub fn scan_pattern(&self) -> String {
        format!("{}:*", glob_escape(&self.tag(Scope::Namespace)))
    }

    /// The `SCAN MATCH` pattern of every key of the namespace as layout 3 and earlier named them,
    /// `<prefix>:*` (no hash tag): what the migration to layout 4 renames.
    pub fn untagged_scan_pattern(&self) -> String {
        format!("{}:*", glob_escape(&self.prefix))
    }

    /// The name in this layout of `old`, a key of layout 3 or earlier (`<prefix>:<rest>`), or
    /// `None` when `old` is not one of this namespace's.
    pub fn from_untagged(&self, old: &str) -> Option<String> {
        let rest = old.strip_prefix(self.prefix.as_str())?.strip_prefix(':')?;
        Some(self.namespaced(rest))
    }

    /// String: the namespace's layout version (`coordinator::store::LAYOUT_VERSION`).
    pub fn layout(&self) -> String {
        self.namespaced("layout")
    }

    /// The name layout 3 and earlier gave the namespace-wide key `name`: `<prefix>:<name>`, no
    /// hash tag (read by the migration to layout 4 only).
    pub fn untagged(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// Hash: the run's own fields (status, input, output, times).
    pub fn run(&self, run_id: &str) -> String {
        self.run_key(run_id, &format!("{{{run_id}}}:run"))
    }

    /// Hash: per-step fields, `<step>:<field>`.
    pub fn steps(&self, run_id: &str) -> String {
        self.run_key(run_id, &format!("{{{run_id}}}:steps"))
    }

    /// Stream: the run's event history, read by `WatchRun`.
    pub fn events(&self, run_id: &str) -> String {
        self.run_key(run_id, &format!("{{{run_id}}}:events"))
    }

    /// Stream: the run's log lines as handlers append them, for live watchers only (short, and
    /// expiring minutes after the last line; the lines themselves are kept in the steps hash).
    pub fn log_tail(&self, run_id: &str) -> String {
        self.run_key(run_id, &format!("{{{run_id}}}:log-tail"))
    }

    /// List: an emitting step's plan, one `<child run id>\t<input JSON>` per child.
    pub fn emit_plan(&self, run_id: &str, step: &str) -> String {
        self.run_key(run_id, &format!("{{{run_id}}}:emit:{step}"))
    }

    /// Set: the children of an emitting step counted as finished.
    pub fn emit_done(&self, run_id: &str, step: &str) -> String {
        self.run_key(run_id, &format!("{{{run_id}}}:emit-done:{step}"))
    }

    /// Sorted set of durable timers (retries, timeouts, heartbeats), scored by due time in Unix ms.
    pub fn timers(&self) -> String {
        self.namespaced("timers")
    }

    /// Sorted set of dispatches committed but not yet confirmed by RabbitMQ, scored by the time
    /// (Unix ms) after which the sweeper republishes them.
    pub fn outbox(&self) -> String {
        self.namespaced("outbox")
    }

    /// Sorted set of cross-run effects a run script committed (a concurrency slot or run slot to
    /// give back, a slot lease to extend, an emitting parent to notify), member the effect as JSON
    /// (`coordinator::store::Effect`), scored by the time (Unix ms) after which the effects sweeper
    /// applies it; the committing coordinator applies and removes it at once. Per namespace today;
    /// a shard's own with shards.
    pub fn effects(&self) -> String {
        self.namespaced("effects")
    }

    /// Sorted set of finished runs waiting to be archived (the archive outbox), member the run id,
    /// scored by the run's `finished_at` (Unix ms) as the script that finished it wrote it. Only
    /// written when the coordinator has an archive (`archive_url`); the archiver takes the oldest
    /// first and removes an entry only after the run is written to the archive and shrunk to its
    /// tombstone.
    pub fn archive_outbox(&self) -> String {
        self.namespaced("archive-outbox")
    }

    /// String holding the token of the coordinator whose archiver works the namespace's archive
    /// outbox (one at a time, so two never write the same batch), with a lease as its expiry.
    pub fn archiver_lease(&self) -> String {
        self.namespaced("archiver")
    }

    /// Sorted set (lexicographic, score 0) of all runs, member `<created_ms:013>:<run_id>`.
    pub fn runs_index(&self) -> String {
        self.namespaced("runs")
    }

    /// Like [`Keys::runs_index`], for one workflow.
    pub fn workflow_runs_index(&self, workflow: &str) -> String {
        self.namespaced(&format!("runs:wf:{workflow}"))
    }

    /// Hash: version -> definition JSON, for one workflow.
    pub fn workflow(&self, name: &str) -> String {
        self.namespaced(&format!("wf:{name}"))
    }

    /// Hash: version -> registration time (Unix ms), for one workflow.
    pub fn workflow_registered(&self, name: &str) -> String {
        self.namespaced(&format!("wf:{name}:registered"))
    }

    /// Set of the steps waiting for an event (name, key), members `<run>|<step>|<attempt>`. The
    /// name and key are length-prefixed ([`event_identity`]), so no two (name, key) pairs share a key
    /// whatever characters they hold.
    pub fn event_waiters(&self, name: &str, key: &str) -> String {
        self.namespaced(&format!("event:{}:waiting", event_identity(name, key)))
    }

    /// List of events (name, key) published while no step waited, oldest first; expires. Named like
    /// [`Keys::event_waiters`].
    pub fn event_buffer(&self, name: &str, key: &str) -> String {
        self.namespaced(&format!("event:{}:buffered", event_identity(name, key)))
    }

    /// Sorted set of the (name, key) pairs that have had events buffered, member
    /// [`buffered_member`], scored by the last buffering (Unix ms). Entries whose buffer expired are
    /// dropped lazily by listings.
    pub fn event_buffers(&self) -> String {
        self.namespaced("event-buffers")
    }

    /// Sorted set of the attempts holding slots of a concurrency pool, scored by lease end (Unix ms).
    pub fn slot_holders(&self, pool: &str) -> String {
        self.namespaced(&format!("sem:{pool}:holders"))
    }

    /// List of the attempts waiting for a slot of a concurrency pool, oldest first.
    pub fn slot_waiters(&self, pool: &str) -> String {
        self.namespaced(&format!("sem:{pool}:queue"))
    }

    /// Sorted set of the starts in a rate limit's window, scored by time (Unix ms).
    pub fn rate_window(&self, pool: &str) -> String {
        self.namespaced(&format!("rate:{pool}"))
    }

    /// String: the limit concurrency pool `pool` was last asked for with.
    pub fn slot_limit(&self, pool: &str) -> String {
        self.namespaced(&format!("sem:{pool}:limit"))
    }

    /// Hash of the schedules' records, id -> JSON.
    pub fn schedules(&self) -> String {
        self.namespaced("schedules")
    }

    /// Sorted set of the active schedules, scored by their next due time (Unix ms).
    pub fn schedule_due(&self) -> String {
        self.namespaced("schedule-due")
    }

    /// Hash: schedule `id`'s state (`last_tick`, `last_run`, `buffered`).
    pub fn schedule_state(&self, id: &str) -> String {
        self.namespaced(&format!("schedule:{id}:state"))
    }

    /// Hash: schedule `id`'s ledger, tick (Unix ms) -> entry JSON.
    pub fn schedule_ticks(&self, id: &str) -> String {
        self.namespaced(&format!("schedule:{id}:ticks"))
    }

    /// String: the namespace's data marker (`coordinator::reset`).
    pub fn marker(&self) -> String {
        self.namespaced("marker")
    }

    /// String: the `run_id` (`INFO server`) of the Redis server whose queued attempts were last
    /// checked (`coordinator::reset`): another one means a failover or a restart, which may have
    /// lost the writes of its last moments.
    pub fn redis_server(&self) -> String {
        self.namespaced("redis-server")
    }

    /// The `SCAN MATCH` pattern of every handler's queued index ([`Keys::queued`]).
    pub fn queued_scan_pattern(&self) -> String {
        format!("{}*", glob_escape(&self.namespaced("queued:")))
    }

    /// Hash of the items a loop parked, field `<loop>|<member>`.
    pub fn parked_items(&self) -> String {
        self.namespaced("parked-items")
    }

    /// Sorted set of human tasks, member `<run>|<step>`, scored by creation time (Unix ms).
    pub fn human_tasks(&self) -> String {
        self.namespaced("human-tasks")
    }

    /// Set of registered workflow names.
    pub fn workflow_names(&self) -> String {
        self.namespaced("wf-names")
    }

    /// Sorted set of the workers that registered (`RegisterWorker`), member the worker id, scored
    /// by when it was last seen (Unix ms). Members older than the worker retention are trimmed.
    pub fn workers(&self) -> String {
        self.namespaced("workers")
    }

    /// String: one worker's last registration, as JSON, expiring after the worker retention.
    pub fn worker(&self, worker_id: &str) -> String {
        self.namespaced(&format!("worker:{worker_id}"))
    }

    /// String: present while worker `worker_id` is alive, i.e. for
    /// `LOST_AFTER_INTERVALS` (3) of its heartbeat intervals after its last `RegisterWorker`;
    /// deleted when it stops. An attempt a live worker started is held by it: another copy of the
    /// task is answered `DUPLICATE` (see `start_step.lua`).
    pub fn worker_alive(&self, worker_id: &str) -> String {
        self.namespaced(&format!("worker-alive:{worker_id}"))
    }

    /// Sorted set of the attempts of `handler` dispatched and not yet started, member
    /// `<run>|<step>|<attempt>`, scored by dispatch time (Unix ms): what waits in the handler's
    /// queue by the coordinator's count ("N tasks ahead", the oldest waiting task).
    pub fn queued(&self, handler: &str) -> String {
        self.namespaced(&format!("queued:{handler}"))
    }
}

/// What a key belongs to: decides its hash tag ([`Keys::tag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The namespace as a whole: its indexes, registry, pools and events.
    Namespace,
    /// One run (its id).
    Run(&'a str),
}

/// `text` with the glob characters of Redis's `MATCH` (`*`, `?`, `[`, `]`, `\`) escaped.
pub fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
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
    fn every_key_of_a_namespace_carries_the_namespace_tag_first() {
        let k = Keys::new("t1");
        for key in [k.run("r"), k.steps("r"), k.events("r"), k.emit_plan("r", "s")] {
            assert!(key.starts_with("{t1}:{r}:"), "{key}");
        }
        for key in [
            k.timers(),
            k.outbox(),
            k.effects(),
            k.runs_index(),
            k.workflow("w"),
            k.event_waiters("e", "k"),
            k.slot_holders("p"),
            k.queued("h"),
            k.layout(),
            k.redis_server(),
        ] {
            assert!(key.starts_with("{t1}:"), "{key}");
        }
        assert_eq!(k.timers(), "{t1}:timers");
        assert_eq!(k.run("r"), "{t1}:{r}:run");
    }

    #[test]
    fn an_untagged_key_maps_to_its_tagged_name() {
        let k = Keys::new("a*b");
        assert_eq!(k.from_untagged("a*b:{r}:run").as_deref(), Some("{a*b}:{r}:run"));
        assert_eq!(k.from_untagged("a*b:timers").as_deref(), Some("{a*b}:timers"));
        assert_eq!(k.from_untagged("a*bc:timers"), None);
        assert_eq!(k.from_untagged("{a*b}:timers"), None);
        assert_eq!(k.untagged_scan_pattern(), "a\\*b:*");
        assert_eq!(k.scan_pattern(), "{a\\*b}:*");
        assert_eq!(k.queued_scan_pattern(), "{a\\*b}:queued:*");
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
