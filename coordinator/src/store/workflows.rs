//! The workflow registry in Redis: registering a version (`put_workflow.lua`) and deleting one
//! (`delete_workflow_version.lua`), and counting a version's unfinished runs.

use serde::Serialize;

use super::{
    Store,
    script::{Standalone, number, unknown_reply},
};
use crate::error::Result;

/// Runs read per page when counting a version's unfinished runs: 1,000 (one `ZRANGE` and one
/// pipelined `HMGET` per run of the page).
pub const DELETE_SCAN_PAGE: usize = 1_000;

static PUT_WORKFLOW: std::sync::LazyLock<Standalone> =
    std::sync::LazyLock::new(|| Standalone::new("put_workflow", include_str!("../scripts/put_workflow.lua")));
static DELETE_WORKFLOW_VERSION: std::sync::LazyLock<Standalone> = std::sync::LazyLock::new(|| {
    Standalone::new(
        "delete_workflow_version",
        include_str!("../scripts/delete_workflow_version.lua"),
    )
});

/// Outcome of [`Store::put_workflow`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutWorkflow {
    /// The version was stored.
    Created,
    /// The version exists already, with this JSON (nothing changed).
    Exists(String),
    /// The workflow keeps this many versions already, its most (nothing changed).
    Full(u32),
}

/// `put_workflow.lua`'s argument.
#[derive(Serialize)]
struct PutWorkflowArgs<'a> {
    name: &'a str,
    version: String,
    definition: &'a str,
    now: i64,
    max_versions: u32,
}

/// `delete_workflow_version.lua`'s argument.
#[derive(Serialize)]
struct DeleteWorkflowArgs<'a> {
    name: &'a str,
    version: String,
}

impl Store {
    /// Stores a definition if this version is new and the workflow keeps fewer than
    /// `max_versions` versions (`put_workflow.lua`, one atomic step). `now` is Unix ms.
    ///
    /// # Errors
    /// `Redis`; `Internal` for an answer the script does not give.
    pub async fn put_workflow(
        &self,
        name: &str,
        version: u32,
        json: &str,
        now: i64,
        max_versions: u32,
    ) -> Result<PutWorkflow> {
        let s = &*PUT_WORKFLOW;
        let keys = [
            self.keys.workflow(name),
            self.keys.workflow_registered(name),
            self.keys.workflow_names(),
        ];
        let args = PutWorkflowArgs {
            name,
            version: version.to_string(),
            definition: json,
            now,
            max_versions,
        };
        let reply = s.call(self, &keys, &args).await?;
        match reply.as_slice() {
            [tag] if tag == "created" => Ok(PutWorkflow::Created),
            [tag, stored] if tag == "exists" => Ok(PutWorkflow::Exists(stored.clone())),
            [tag, count] if tag == "full" => Ok(PutWorkflow::Full(number(s.name(), count)?)),
            _ => Err(unknown_reply(s.name(), &reply)),
        }
    }

    /// Deletes one version of a workflow (`delete_workflow_version.lua`, one atomic step): its
    /// definition and registration time; the name leaves the set of names with its last version.
    /// Returns the versions left, ascending, or `None` when there was no such version.
    ///
    /// # Errors
    /// `Redis`; `Internal` for an answer the script does not give.
    pub async fn delete_workflow_version(&self, name: &str, version: u32) -> Result<Option<Vec<u32>>> {
        let s = &*DELETE_WORKFLOW_VERSION;
        let keys = [
            self.keys.workflow(name),
            self.keys.workflow_registered(name),
            self.keys.workflow_names(),
        ];
        let args = DeleteWorkflowArgs {
            name,
            version: version.to_string(),
        };
        let reply = s.call(self, &keys, &args).await?;
        match reply.split_first() {
            Some((tag, [])) if tag == "missing" => Ok(None),
            Some((tag, left)) if tag == "deleted" => {
                let mut versions = left
                    .iter()
                    .map(|v| number::<u32>(s.name(), v))
                    .collect::<Result<Vec<u32>>>()?;
                versions.sort_unstable();
                Ok(Some(versions))
            }
            _ => Err(unknown_reply(s.name(), &reply)),
        }
    }

    /// How many runs of `name` version `version` are unfinished (pending or running), read from
    /// the workflow's run index a page of [`DELETE_SCAN_PAGE`] runs at a time (one pipelined
    /// `HMGET` per page). Runs that expired are not counted.
    ///
    /// # Errors
    /// `Redis`.
    pub async fn unfinished_runs_of_version(&self, name: &str, version: u32) -> Result<u64> {
        let mut count = 0u64;
        let mut start = 0usize;
        loop {
            let (page, more) = self.unfinished_in_page(name, version, start).await?;
            count = count.saturating_add(page);
            if !more {
                return Ok(count);
            }
            start = start.saturating_add(DELETE_SCAN_PAGE);
        }
    }

    /// The unfinished runs of version `version` among the page of the workflow's run index that
    /// starts at `start`, and whether the index holds more after it.
    async fn unfinished_in_page(&self, name: &str, version: u32, start: usize) -> Result<(u64, bool)> {
        use redis::AsyncCommands;
        let index = self.keys.workflow_runs_index(name);
        let wanted = version.to_string();
        let mut conn = self.conn();
        let first = isize::try_from(start).unwrap_or(isize::MAX);
        let last = first.saturating_add(isize::try_from(DELETE_SCAN_PAGE).unwrap_or(isize::MAX) - 1);
        let members: Vec<String> = conn.zrange(&index, first, last).await?;
        if members.is_empty() {
            return Ok((0, false));
        }
        let mut pipe = redis::pipe();
        for m in &members {
            let id = m.split_once(':').map(|(_, id)| id).unwrap_or_default();
            pipe.cmd("HMGET").arg(self.keys.run(id)).arg("version").arg("status");
        }
        let rows: Vec<(Option<String>, Option<String>)> = pipe.query_async(&mut conn).await?;
        let unfinished = rows
            .iter()
            .filter(|(v, st)| {
                v.as_deref() == Some(wanted.as_str())
                    && st
                        .as_deref()
                        .is_some_and(|w| baton_shared::proto::RunStatus::from_word(w).is_none_or(|s| !s.is_terminal()))
            })
            .count();
        Ok((unfinished as u64, members.len() >= DELETE_SCAN_PAGE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::script::assert_header_matches;

    #[test]
    fn the_registry_scripts_headers_name_their_arguments_and_build_no_key() {
        assert_header_matches(
            include_str!("../scripts/put_workflow.lua"),
            "store::workflows::PutWorkflowArgs",
            &PutWorkflowArgs {
                name: "w",
                version: "1".into(),
                definition: "{}",
                now: 1,
                max_versions: 2,
            },
        );
        assert_header_matches(
            include_str!("../scripts/delete_workflow_version.lua"),
            "store::workflows::DeleteWorkflowArgs",
            &DeleteWorkflowArgs {
                name: "w",
                version: "1".into(),
            },
        );
    }
}
