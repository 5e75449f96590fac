//! The workflow registry: validated definitions stored in Redis by name and version, cached in
//! memory (a version never changes once registered, so the cache needs no invalidation).

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, RwLock},
};

use baton_shared::{
    definition::{StepKind, WorkflowDefinition},
    ids::check_workflow_name,
    time::now_ms,
};

use crate::{
    error::{CoordinatorError, Result},
    store::Store,
};

/// Registered workflow definitions.
pub struct Registry {
    store: Store,
    cache: RwLock<HashMap<(String, u32), Arc<WorkflowDefinition>>>,
}

/// One registered version.
pub struct Registered {
    /// The definition.
    pub definition: Arc<WorkflowDefinition>,
    /// When it was registered, Unix ms.
    pub registered_at: i64,
}

impl Registry {
    /// An empty cache over `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Validates and stores a definition. Returns it and whether it was new.
    ///
    /// # Errors
    /// `InvalidArgument` naming the field; `AlreadyExists` when this name and version hold another
    /// definition; `Redis`.
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
        let created = match self.store.put_workflow(&def.name, def.version, &json, now_ms()).await? {
            None => true,
            Some(existing) => {
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
        };
        let def = Arc::new(def);
        self.cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((def.name.clone(), def.version), def.clone());
        Ok((def, created))
    }

    /// The definition a run is pinned to (from memory when it has been seen).
    ///
    /// # Errors
    /// `NotFound`; `Redis`.
    pub async fn pinned(&self, name: &str, version: u32) -> Result<Arc<WorkflowDefinition>> {
        if let Some(d) = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(name.to_string(), version))
        {
            return Ok(d.clone());
        }
        let versions = self.versions(name).await?;
        versions
            .into_iter()
            .find(|r| r.definition.version == version)
            .map(|r| r.definition)
            .ok_or_else(|| {
                CoordinatorError::NotFound(format!(
                    "workflow {} has no version {version}",
                    baton_shared::limits::echo(name)
                ))
            })
    }

    /// The given version, or the latest when `version` is 0.
    ///
    /// # Errors
    /// `NotFound` naming the workflow (or version); `Redis`.
    pub async fn get(&self, name: &str, version: u32) -> Result<Registered> {
        Ok(self.get_with_versions(name, version).await?.0)
    }

    /// As [`Registry::get`], with every registered version number of `name` (ascending), from one
    /// read of the registry.
    ///
    /// # Errors
    /// As [`Registry::get`].
    pub async fn get_with_versions(&self, name: &str, version: u32) -> Result<(Registered, Vec<u32>)> {
        let versions = self.versions(name).await?;
        let numbers = versions.iter().map(|r| r.definition.version).collect();
        let found = if version == 0 {
            versions.into_iter().last()
        } else {
            versions.into_iter().find(|r| r.definition.version == version)
        };
        found.map(|r| (r, numbers)).ok_or_else(|| {
            if version == 0 {
                CoordinatorError::NotFound(format!(
                    "workflow: no workflow named {} is registered{}",
                    baton_shared::limits::echo(name),
                    crate::reset::workflow_hint()
                ))
            } else {
                CoordinatorError::NotFound(format!(
                    "version: workflow {} has no version {version}",
                    baton_shared::limits::echo(name)
                ))
            }
        })
    }

    /// Every version of `name`, ascending (empty if unknown).
    ///
    /// # Errors
    /// `InvalidArgument` (`workflow: ... must be 1 to 128 characters ...`) for a name no definition
    /// can have, so no lookup can alias an internal key (`<name>:registered`); `Redis`; `Internal`
    /// if a stored definition no longer validates.
    pub async fn versions(&self, name: &str) -> Result<Vec<Registered>> {
        check_workflow_name("workflow", name).map_err(CoordinatorError::InvalidArgument)?;
        let mut out = Vec::new();
        for (version, json, registered_at) in self.store.workflow_versions(name).await? {
            let cached = self
                .cache
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&(name.to_string(), version))
                .cloned();
            let definition = match cached {
                Some(d) => d,
                None => {
                    let value: serde_json::Value = serde_json::from_str(&json)
                        .map_err(|e| CoordinatorError::Internal(format!("stored workflow {name}@{version}: {e}")))?;
                    let d =
                        Arc::new(WorkflowDefinition::from_value(value).map_err(|e| {
                            CoordinatorError::Internal(format!("stored workflow {name}@{version}: {e}"))
                        })?);
                    self.cache
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert((name.to_string(), version), d.clone());
                    d
                }
            };
            out.push(Registered {
                definition,
                registered_at,
            });
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
