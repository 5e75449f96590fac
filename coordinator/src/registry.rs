//! The workflow registry: validated definitions stored in Redis by name and version, cached in
//! memory. A version never changes once registered, so the cache needs no invalidation; it is
//! bounded by an estimate of its entries' bytes (`definition_cache_bytes`) and evicts the least
//! recently used, which a later read loads from Redis again.

use std::{collections::BTreeSet, path::Path, sync::Arc};

use baton_shared::{
    definition::{StepKind, WorkflowDefinition},
    ids::check_workflow_name,
    limits::{MAX_WORKFLOW_VERSIONS, echo},
    time::now_ms,
};

use crate::{
    error::{CoordinatorError, Result},
    store::{DeleteVersion, PutWorkflow, Store},
};

/// Estimated bytes a parsed definition holds in memory per byte of its stored JSON (its document
/// as a `serde_json::Value`, its steps, graph and compiled expressions). Measured as resident
/// memory at 22 to 26 for definitions of 1,000 steps and 29 for 20,000 steps; rounded up so the
/// budget bounds what the cache really holds.
pub const WEIGHT_PER_SOURCE_BYTE: u64 = 32;

/// Fixed bytes counted per cache entry besides its source (key, bookkeeping).
const ENTRY_OVERHEAD_BYTES: u64 = 512;

/// Share of `definition_cache_bytes` given to the handler lists of every version (see
/// [`Registry::handlers`]): one part in this many.
const HANDLER_CACHE_SHARE: u64 = 16;

/// A cache key: workflow name and version.
type Key = (String, u32);

/// Registered workflow definitions.
pub struct Registry {
    store: Store,
    /// Parsed definitions, weighed by [`weight`].
    cache: moka::sync::Cache<Key, Cached>,
    /// Each version's handlers, so that listing every handler does not parse every version.
    handlers: moka::sync::Cache<Key, Arc<[String]>>,
}

/// A cached definition with its estimated weight.
#[derive(Clone)]
struct Cached {
    definition: Arc<WorkflowDefinition>,
    weight: u32,
}

/// One registered version.
pub struct Registered {
    /// The definition.
    pub definition: Arc<WorkflowDefinition>,
    /// When it was registered, Unix ms.
    pub registered_at: i64,
}

/// Estimated in-memory bytes of a definition whose stored JSON is `source_bytes` long (at most
/// `u32::MAX`, the most one cache entry can weigh).
fn weight(source_bytes: usize) -> u32 {
    let bytes = u64::try_from(source_bytes)
        .unwrap_or(u64::MAX)
        .saturating_mul(WEIGHT_PER_SOURCE_BYTE)
        .saturating_add(ENTRY_OVERHEAD_BYTES);
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// A cache of definitions holding at most `bytes` of [`weight`], least recently used out first.
fn definition_cache(bytes: u64) -> moka::sync::Cache<Key, Cached> {
    moka::sync::Cache::builder()
        .max_capacity(bytes)
        .eviction_policy(moka::policy::EvictionPolicy::lru())
        .weigher(|_: &Key, v: &Cached| v.weight)
        .build()
}

impl Registry {
    /// An empty registry over `store` whose cache holds about `cache_bytes` of definitions (an
    /// estimate: [`WEIGHT_PER_SOURCE_BYTE`] per byte of stored JSON). A definition heavier than
    /// the whole budget is not kept: each read loads it again.
    pub fn new(store: Store, cache_bytes: u64) -> Self {
        let handler_bytes = (cache_bytes / HANDLER_CACHE_SHARE).max(1);
        Self {
            store,
            cache: definition_cache(cache_bytes),
            handlers: moka::sync::Cache::builder()
                .max_capacity(handler_bytes)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .weigher(|k: &Key, v: &Arc<[String]>| {
                    let bytes = v.iter().fold(k.0.len().saturating_add(64), |n, h| {
                        n.saturating_add(h.len()).saturating_add(24)
                    });
                    u32::try_from(bytes).unwrap_or(u32::MAX)
                })
                .build(),
        }
    }

    /// Estimated bytes the cached definitions hold now (after pending evictions).
    pub fn cached_bytes(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    /// Validates and stores a definition. Returns it and whether it was new.
    ///
    /// # Errors
    /// `InvalidArgument` naming the field (`version` when the workflow already keeps
    /// [`MAX_WORKFLOW_VERSIONS`] versions); `AlreadyExists` when this name and version hold
    /// another definition; `Redis`.
    pub async fn register(&self, text: &str) -> Result<(Arc<WorkflowDefinition>, bool)> {
        let def = WorkflowDefinition::parse(text)?;
        self.register_definition(def).await
    }

    /// Stores an already validated definition (see [`Registry::register`]).
    ///
    /// # Errors
    /// As [`Registry::register`].
    pub async fn register_definition(&self, def: WorkflowDefinition) -> Result<(Arc<WorkflowDefinition>, bool)> {
        let json = serde_json::to_string(&def.document).map_err(|e| CoordinatorError::Internal(e.to_string()))?;
        let created = match self
            .store
            .put_workflow(&def.name, def.version, &json, now_ms(), MAX_WORKFLOW_VERSIONS)
            .await?
        {
            PutWorkflow::Created => true,
            PutWorkflow::Exists(existing) => {
                let existing: serde_json::Value =
                    serde_json::from_str(&existing).map_err(|e| CoordinatorError::Internal(e.to_string()))?;
                if existing != def.document {
                    return Err(CoordinatorError::AlreadyExists(format!(
                        "version: workflow {:?} version {} is already registered with a different definition; register it under a new version",
                        def.name, def.version
                    )));
                }
                false
            }
            PutWorkflow::Full(count) => {
                return Err(CoordinatorError::InvalidArgument(format!(
                    "version: workflow {} already keeps {count} versions, the most one workflow may keep \
                     ({MAX_WORKFLOW_VERSIONS}); version {} is not registered (register it under a new workflow name)",
                    echo(&def.name),
                    def.version
                )));
            }
        };
        let def = Arc::new(def);
        self.keep(&def, json.len());
        Ok((def, created))
    }

    /// Caches `def`, whose stored JSON is `source_bytes` long.
    fn keep(&self, def: &Arc<WorkflowDefinition>, source_bytes: usize) {
        let key = (def.name.clone(), def.version);
        self.handlers.insert(key.clone(), def.handlers().into());
        self.cache.insert(
            key,
            Cached {
                definition: def.clone(),
                weight: weight(source_bytes),
            },
        );
    }

    /// One version from the cache, else from Redis (then cached); `None` when there is no such
    /// version.
    async fn load(&self, name: &str, version: u32) -> Result<Option<Arc<WorkflowDefinition>>> {
        let key = (name.to_string(), version);
        if let Some(c) = self.cache.get(&key) {
            return Ok(Some(c.definition));
        }
        check_workflow_name("workflow", name).map_err(CoordinatorError::InvalidArgument)?;
        let Some(json) = self.store.workflow_version(name, version).await? else {
            return Ok(None);
        };
        let value: serde_json::Value = serde_json::from_str(&json)
            .map_err(|e| CoordinatorError::Internal(format!("stored workflow {name}@{version}: {e}")))?;
        let def = Arc::new(
            WorkflowDefinition::from_stored(value)
                .map_err(|e| CoordinatorError::Internal(format!("stored workflow {name}@{version}: {e}")))?,
        );
        self.keep(&def, json.len());
        Ok(Some(def))
    }

    /// The definition a run is pinned to (from memory when it is cached).
    ///
    /// # Errors
    /// `NotFound`; `Redis`.
    pub async fn pinned(&self, name: &str, version: u32) -> Result<Arc<WorkflowDefinition>> {
        self.load(name, version)
            .await?
            .ok_or_else(|| CoordinatorError::NotFound(format!("workflow {} has no version {version}", echo(name))))
    }

    /// The given version, or the latest when `version` is 0.
    ///
    /// # Errors
    /// `NotFound` naming the workflow (or version); `Redis`.
    pub async fn get(&self, name: &str, version: u32) -> Result<Registered> {
        Ok(self.get_with_versions(name, version).await?.0)
    }

    /// As [`Registry::get`], with every registered version number of `name` (ascending). Loads
    /// only the version asked for.
    ///
    /// # Errors
    /// As [`Registry::get`].
    pub async fn get_with_versions(&self, name: &str, version: u32) -> Result<(Registered, Vec<u32>)> {
        let numbers = self.version_numbers(name).await?;
        let found = if version == 0 {
            numbers.last().copied()
        } else {
            numbers.iter().find(|(v, _)| *v == version).copied()
        };
        let found = match found {
            Some((v, registered_at)) => self.load(name, v).await?.map(|definition| Registered {
                definition,
                registered_at,
            }),
            None => None,
        };
        found
            .map(|r| (r, numbers.iter().map(|(v, _)| *v).collect()))
            .ok_or_else(|| {
                if version == 0 {
                    CoordinatorError::NotFound(format!(
                        "workflow: no workflow named {} is registered{}",
                        echo(name),
                        crate::reset::workflow_hint()
                    ))
                } else {
                    CoordinatorError::NotFound(format!("version: workflow {} has no version {version}", echo(name)))
                }
            })
    }

    /// Every version number of `name`, ascending, with its registration time (Unix ms); empty if
    /// unknown.
    ///
    /// # Errors
    /// `InvalidArgument` (`workflow: ... must be 1 to 128 characters ...`) for a name no definition
    /// can have, so no lookup can alias an internal key (`<name>:registered`); `Redis`.
    pub async fn version_numbers(&self, name: &str) -> Result<Vec<(u32, i64)>> {
        check_workflow_name("workflow", name).map_err(CoordinatorError::InvalidArgument)?;
        self.store.workflow_version_numbers(name).await
    }

    /// The latest version of workflow `name` with the numbers of every version it keeps, or `None`
    /// when no version is registered (a listing skips the name). Loads one definition only.
    ///
    /// # Errors
    /// `Redis` when the registry cannot be read.
    pub async fn latest_with_versions(&self, name: &str) -> Result<Option<(Registered, Vec<u32>)>> {
        match self.get_with_versions(name, 0).await {
            Ok(found) => Ok(Some(found)),
            Err(CoordinatorError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every version of `name`, ascending (empty if unknown). This holds every version's
    /// definition at once: prefer [`Registry::get_with_versions`] or [`Registry::handlers`].
    ///
    /// # Errors
    /// As [`Registry::version_numbers`]; `Internal` if a stored definition no longer validates.
    pub async fn versions(&self, name: &str) -> Result<Vec<Registered>> {
        let mut out = Vec::new();
        for (version, registered_at) in self.version_numbers(name).await? {
            if let Some(definition) = self.load(name, version).await? {
                out.push(Registered {
                    definition,
                    registered_at,
                });
            }
        }
        Ok(out)
    }

    /// The handlers of every version of `name`, loading (and dropping) one definition at a time
    /// for the versions whose handler list is not cached.
    ///
    /// # Errors
    /// As [`Registry::versions`].
    pub async fn handlers(&self, name: &str) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        for (version, _) in self.version_numbers(name).await? {
            let key = (name.to_string(), version);
            let list = match self.handlers.get(&key) {
                Some(list) => list,
                None => match self.load(name, version).await? {
                    Some(def) => def.handlers().into(),
                    None => continue,
                },
            };
            out.extend(list.iter().cloned());
        }
        Ok(out)
    }

    /// Refuses a definition that would start itself: a `workflow:` or `emit:` step whose workflow
    /// starts `def`'s workflow again, directly or through the workflows it starts (each followed
    /// at the version its step names, or the latest registered one). Workflows not registered yet
    /// are not followed (registering them later is checked then); at run time a chain is also cut
    /// at `MAX_WORKFLOW_DEPTH`.
    ///
    /// # Errors
    /// `InvalidArgument` naming the first step of the cycle and the cycle:
    /// `steps[0].workflow: starts workflow "a" again (a -> b -> a); ...`; `Redis`.
    pub async fn check_no_self_start(&self, def: &WorkflowDefinition) -> Result<()> {
        /// Most workflow versions followed from one definition (the search is bounded whatever the
        /// registry holds).
        const MAX_VISITED: usize = 10_000;
        for (i, step) in def.steps.iter().enumerate() {
            let Some((field, name, version)) = starts(step) else {
                continue;
            };
            // Breadth-first over (workflow, version), each with the path of names that led there.
            let mut queue = std::collections::VecDeque::from([(name.to_string(), version, vec![def.name.clone()])]);
            let mut seen = std::collections::HashSet::new();
            while let Some((name, version, mut path)) = queue.pop_front() {
                path.push(name.clone());
                if name == def.name {
                    return Err(CoordinatorError::InvalidArgument(format!(
                        "steps[{i}].{field}: starts workflow {} again ({}); a workflow may not start itself, \
                         directly or through the workflows it starts",
                        baton_shared::limits::echo(&def.name),
                        path.join(" -> ")
                    )));
                }
                if seen.len() >= MAX_VISITED || !seen.insert((name.clone(), version)) {
                    continue;
                }
                let child = match self.get(&name, version).await {
                    Ok(r) => r.definition,
                    Err(CoordinatorError::NotFound(_) | CoordinatorError::InvalidArgument(_)) => continue,
                    Err(e) => return Err(e),
                };
                for s in &child.steps {
                    if let Some((_, n, v)) = starts(s) {
                        queue.push_back((n.to_string(), v, path.clone()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Deletes version `version` of workflow `name` when none of its runs is unfinished (pending
    /// or running), and drops it from this coordinator's cache. Returns the versions left,
    /// ascending (empty: the name is gone). Finished runs of the version keep their history.
    /// The count and the deletion are fenced ([`Store::delete_workflow_version`]): while the delete
    /// counts, a submit of the version is refused `NOT_FOUND`, so no run is left without its
    /// definition; other coordinators' caches may still hold the definition, but Redis refuses
    /// their new runs of it.
    ///
    /// # Errors
    /// `InvalidArgument` naming `name` or `version` (0); `NotFound` naming `version` when there is
    /// no such version; `FailedPrecondition` with the number of unfinished runs, or when another
    /// delete of the version is under way; `Redis`; `Unavailable` when the delete took longer than
    /// its fence (nothing was deleted).
    pub async fn delete_version(&self, name: &str, version: u32) -> Result<Vec<u32>> {
        check_workflow_name("name", name).map_err(CoordinatorError::InvalidArgument)?;
        if version == 0 {
            return Err(CoordinatorError::InvalidArgument(
                "version: name the version to delete (1 or more)".into(),
            ));
        }
        let left = match self.store.delete_workflow_version(name, version).await? {
            DeleteVersion::Deleted(left) => left,
            DeleteVersion::Missing => {
                return Err(CoordinatorError::NotFound(format!(
                    "version: workflow {} has no version {version}",
                    echo(name)
                )));
            }
            DeleteVersion::Busy => {
                return Err(CoordinatorError::FailedPrecondition(format!(
                    "version: workflow {} version {version} is being deleted by another call",
                    echo(name)
                )));
            }
            DeleteVersion::Unfinished(unfinished) => {
                return Err(CoordinatorError::FailedPrecondition(format!(
                    "version: workflow {} version {version} has {unfinished} unfinished run{} (pending or running); \
                     cancel {} or let {} finish, then delete the version",
                    echo(name),
                    if unfinished == 1 { "" } else { "s" },
                    if unfinished == 1 { "it" } else { "them" },
                    if unfinished == 1 { "it" } else { "them" },
                )));
            }
        };
        let key = (name.to_string(), version);
        self.cache.invalidate(&key);
        self.handlers.invalidate(&key);
        Ok(left)
    }

    /// Names of every registered workflow.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn names(&self) -> Result<Vec<String>> {
        self.store.workflow_names().await
    }

    /// Reads every `*.yaml`, `*.yml` and `*.json` file of `dir` as a definition. Files are validated
    /// all before any is registered, so one bad file stops start-up with its name and the field.
    ///
    /// # Errors
    /// `InvalidArgument` naming the file and field; `Internal` when the directory cannot be read.
    pub fn read_dir(dir: &Path) -> Result<Vec<WorkflowDefinition>> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| CoordinatorError::Internal(format!("definitions_dir {}: {e}", dir.display())))?;
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")))
            .collect();
        files.sort();
        let mut defs = Vec::new();
        for f in files {
            let text =
                std::fs::read_to_string(&f).map_err(|e| CoordinatorError::Internal(format!("{}: {e}", f.display())))?;
            defs.push(
                WorkflowDefinition::parse(&text)
                    .map_err(|e| CoordinatorError::InvalidArgument(format!("{}: {e}", f.display())))?,
            );
        }
        Ok(defs)
    }
}

/// The workflow a step starts runs of, if any: (field, name, version; 0 for the latest).
fn starts(step: &baton_shared::definition::StepDefinition) -> Option<(&'static str, &str, u32)> {
    match (&step.kind, &step.emit) {
        (StepKind::Workflow(c), _) => Some(("workflow", c.name.as_str(), c.version)),
        (_, Some(e)) => Some(("emit.workflow", e.workflow.as_str(), e.version)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_evicts_the_least_recently_used_definitions_past_its_byte_budget() {
        let text = |v: u32| format!("name: big\nversion: {v}\nsteps:\n  - {{id: s, handler: h}}\n");
        let entry = |v: u32| {
            let def = WorkflowDefinition::parse(&text(v)).unwrap();
            let json = serde_json::to_string(&def.document).unwrap();
            Cached {
                weight: weight(json.len()),
                definition: Arc::new(def),
            }
        };
        let one = u64::from(entry(1).weight);
        let budget = one * 10;
        let cache = definition_cache(budget);
        for v in 1..=40 {
            cache.insert(("big".to_string(), v), entry(v));
            // Version 1 is read all along: it stays, being recently used.
            assert!(cache.get(&("big".to_string(), 1)).is_some(), "version 1 evicted at {v}");
            cache.run_pending_tasks();
            assert!(cache.weighted_size() <= budget, "{} > {budget}", cache.weighted_size());
        }
        assert!(cache.entry_count() <= 10, "{}", cache.entry_count());
        assert!(cache.get(&("big".to_string(), 40)).is_some(), "the newest is kept");
        assert!(
            cache.get(&("big".to_string(), 2)).is_none(),
            "the least recently used is evicted"
        );

        // An entry heavier than the whole budget is not kept at all.
        let small = definition_cache(one / 2);
        small.insert(("big".to_string(), 1), entry(1));
        small.run_pending_tasks();
        assert_eq!(small.entry_count(), 0);
    }

    #[test]
    fn weights_are_the_source_times_the_measured_factor_and_saturate() {
        assert_eq!(
            u64::from(weight(1_000)),
            1_000 * WEIGHT_PER_SOURCE_BYTE + ENTRY_OVERHEAD_BYTES
        );
        assert_eq!(weight(usize::MAX), u32::MAX);
    }

    #[test]
    fn reads_every_definition_of_a_directory_and_names_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "name: a\nversion: 1\nsteps:\n  - {id: s, handler: h}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.json"),
            r#"{"name": "b", "version": 2, "steps": [{"id": "s", "handler": "h"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a definition").unwrap();
        let defs = Registry::read_dir(dir.path()).unwrap();
        assert_eq!(
            defs.iter().map(|d| (d.name.as_str(), d.version)).collect::<Vec<_>>(),
            [("a", 1), ("b", 2)]
        );

        std::fs::write(dir.path().join("c.yml"), "name: c\nversion: 1\nsteps:\n  - {id: s}\n").unwrap();
        let e = Registry::read_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("c.yml") && e.contains("steps[0].handler"), "{e}");
    }
}
