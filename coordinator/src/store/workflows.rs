//! The workflow registry in Redis: registering a version (`put_workflow.lua`) and deleting one
//! under a fence (`fence_workflow_version.lua`, then `delete_workflow_version.lua`).
//!
//! **Deleting a version is fenced.** A delete must not leave a run without its definition, and
//! counting a version's unfinished runs takes many commands (its runs are read from the workflow's
//! run index a page at a time), so no one script can both count and delete. Instead:
//! 1. the delete takes the version's fence, a key holding a random token with a lease;
//! 2. `create_run.lua` refuses to create a run of a version that is fenced or gone, in the same
//!    script that creates the run and writes its run-index entries: every run created before the
//!    fence is in the index, and none is created after it;
//! 3. the delete counts the unfinished runs of the version in the index (renewing the fence's lease
//!    after each page), and then either drops the fence (some are unfinished) or deletes the version
//!    and the fence in one script, which refuses when the fence is no longer its own (its lease
//!    lapsed: a run may have started since).
//!
//! While the fence stands (the time of the count), submits of that version are refused `NOT_FOUND`
//! as if it were gone, even when the delete then finds unfinished runs and gives up.

use serde::Serialize;

use super::{
    Store,
    script::{Standalone, number, unknown_reply},
};
use crate::error::{CoordinatorError, Result};

/// Runs read per page when counting a version's unfinished runs: 1,000 (one `ZRANGE` and one
/// pipelined `HMGET` per run of the page).
pub const DELETE_SCAN_PAGE: usize = 1_000;

/// How long a delete's fence stands unless renewed: 30 s. It is renewed after every page of the
/// count, so only a page that takes longer (or a coordinator that died) lets it lapse.
pub const DELETE_FENCE_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

static PUT_WORKFLOW: std::sync::LazyLock<Standalone> =
    std::sync::LazyLock::new(|| Standalone::new("put_workflow", include_str!("../scripts/put_workflow.lua")));
static FENCE_WORKFLOW_VERSION: std::sync::LazyLock<Standalone> = std::sync::LazyLock::new(|| {
    Standalone::new(
        "fence_workflow_version",
        include_str!("../scripts/fence_workflow_version.lua"),
    )
});
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

/// `fence_workflow_version.lua`'s operations.
#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
enum FenceOp {
    Take,
    Renew,
    Drop,
}

/// `fence_workflow_version.lua`'s argument.
#[derive(Serialize)]
struct FenceArgs<'a> {
    op: FenceOp,
    version: String,
    token: &'a str,
    lease_ms: u64,
}

/// `fence_workflow_version.lua`'s reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fence {
    Fenced,
    Missing,
    Busy,
    Renewed,
    Lost,
    Dropped,
}

/// `delete_workflow_version.lua`'s argument.
#[derive(Serialize)]
struct DeleteWorkflowArgs<'a> {
    name: &'a str,
    version: String,
    token: &'a str,
}

/// Outcome of [`Store::delete_workflow_version`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteVersion {
    /// Deleted; the versions the workflow keeps, ascending (empty: the name is gone).
    Deleted(Vec<u32>),
    /// There is no such version.
    Missing,
    /// Not deleted: this many of its runs are unfinished (pending or running).
    Unfinished(u64),
    /// Not deleted: another delete of the version is under way.
    Busy,
}

impl Store {
    /// The key of the delete fence of `name` version `version` (`{<ns>}:wf:<name>:deleting:<version>`;
    /// a workflow name has no `:`, so it aliases no other key).
    pub(super) fn workflow_fence_key(&self, name: &str, version: u32) -> String {
        format!("{}:deleting:{version}", self.keys.workflow(name))
    }

    /// Stores a definition if this version is new and the workflow keeps fewer than
    /// `max_versions` versions (`put_workflow.lua`, one atomic step). `now` is Unix ms.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Internal` for an answer the script does not give.
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

    async fn fence(&self, name: &str, version: u32, op: FenceOp, token: &str) -> Result<Fence> {
        let s = &*FENCE_WORKFLOW_VERSION;
        let keys = [self.keys.workflow(name), self.workflow_fence_key(name, version)];
        let args = FenceArgs {
            op,
            version: version.to_string(),
            token,
            lease_ms: u64::try_from(DELETE_FENCE_LEASE.as_millis()).unwrap_or(u64::MAX),
        };
        let reply = s.call(self, &keys, &args).await?;
        let fence = match reply.as_slice() {
            [tag] => match tag.as_str() {
                "fenced" => Fence::Fenced,
                "missing" => Fence::Missing,
                "busy" => Fence::Busy,
                "renewed" => Fence::Renewed,
                "lost" => Fence::Lost,
                "dropped" => Fence::Dropped,
                _ => return Err(unknown_reply(s.name(), &reply)),
            },
            _ => return Err(unknown_reply(s.name(), &reply)),
        };
        let expected: &[Fence] = match op {
            FenceOp::Take => &[Fence::Fenced, Fence::Missing, Fence::Busy],
            FenceOp::Renew => &[Fence::Renewed, Fence::Lost],
            FenceOp::Drop => &[Fence::Dropped],
        };
        if expected.contains(&fence) {
            Ok(fence)
        } else {
            Err(unknown_reply(s.name(), &reply))
        }
    }

    /// Deletes version `version` of workflow `name` unless some of its runs are unfinished
    /// (pending or running), fenced against runs that start meanwhile (see the module's doc):
    /// no run of the version is created between the count and the delete, and none is left
    /// without its definition. Runs that expired are not counted; finished runs keep their
    /// history.
    ///
    /// # Errors
    /// [`CoordinatorError::Redis`]; `Unavailable` when the fence lapsed before the delete (a page
    /// of the count took longer than [`DELETE_FENCE_LEASE`]): nothing was deleted, try again;
    /// `Internal` for an answer a script does not give.
    pub async fn delete_workflow_version(&self, name: &str, version: u32) -> Result<DeleteVersion> {
        let token = uuid::Uuid::new_v4().to_string();
        match self.fence(name, version, FenceOp::Take, &token).await? {
            Fence::Fenced => {}
            Fence::Missing => return Ok(DeleteVersion::Missing),
            _ => return Ok(DeleteVersion::Busy),
        }
        let counted = self.count_unfinished_fenced(name, version, &token).await;
        let unfinished = match counted {
            Ok(n) => n,
            Err(e) => {
                if let Err(drop) = self.fence(name, version, FenceOp::Drop, &token).await {
                    tracing::warn!(error = %drop, "could not drop a delete fence; it lapses by itself");
                }
                return Err(e);
            }
        };
        if unfinished > 0 {
            self.fence(name, version, FenceOp::Drop, &token).await?;
            return Ok(DeleteVersion::Unfinished(unfinished));
        }
        let s = &*DELETE_WORKFLOW_VERSION;
        let keys = [
            self.keys.workflow(name),
            self.keys.workflow_registered(name),
            self.keys.workflow_names(),
            self.workflow_fence_key(name, version),
        ];
        let args = DeleteWorkflowArgs {
            name,
            version: version.to_string(),
            token: &token,
        };
        let reply = s.call(self, &keys, &args).await?;
        match reply.split_first() {
            Some((tag, [])) if tag == "missing" => Ok(DeleteVersion::Missing),
            Some((tag, [])) if tag == "lost" => Err(lapsed(name, version)),
            Some((tag, left)) if tag == "deleted" => {
                let mut versions = left
                    .iter()
                    .map(|v| number::<u32>(s.name(), v))
                    .collect::<Result<Vec<u32>>>()?;
                versions.sort_unstable();
                Ok(DeleteVersion::Deleted(versions))
            }
            _ => Err(unknown_reply(s.name(), &reply)),
        }
    }

    /// How many runs of `name` version `version` are unfinished, read from the workflow's run
    /// index a page of [`DELETE_SCAN_PAGE`] runs at a time, renewing the fence held by `token`
    /// after each page.
    async fn count_unfinished_fenced(&self, name: &str, version: u32, token: &str) -> Result<u64> {
        let mut count = 0u64;
        let mut start = 0usize;
        loop {
            let (page, more) = self.unfinished_in_page(name, version, start).await?;
            count = count.saturating_add(page);
            if !more {
                return Ok(count);
            }
            if self.fence(name, version, FenceOp::Renew, token).await? == Fence::Lost {
                return Err(lapsed(name, version));
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

fn lapsed(name: &str, version: u32) -> CoordinatorError {
    CoordinatorError::Unavailable(format!(
        "version: deleting workflow {} version {version} took longer than its {}s fence; nothing was deleted, try again",
        baton_shared::limits::echo(name),
        DELETE_FENCE_LEASE.as_secs()
    ))
}

/// `create_run.lua`'s definition fence and run-index argument (its ARGV[21]): KEYS indexes
/// (1-based) of the workflow's definitions, the version's delete fence and the two run indexes,
/// and the run's member in the indexes.
#[derive(Serialize)]
pub(super) struct CreateFence<'a> {
    defs: usize,
    fence: usize,
    index: [usize; 2],
    member: &'a str,
}

impl Store {
    /// The keys and the argument that make `create_run.lua` refuse a run of `workflow` version
    /// `version` that is deleted or being deleted, and index a created run as `member`
    /// ([`baton_shared::keys::run_index_member`]); `first_key` is the KEYS index (1-based) the four
    /// keys start at.
    pub(super) fn create_fence<'a>(
        &self,
        workflow: &str,
        version: u32,
        member: &'a str,
        first_key: usize,
    ) -> ([String; 4], CreateFence<'a>) {
        let keys = [
            self.keys.workflow(workflow),
            self.workflow_fence_key(workflow, version),
            self.keys.runs_index(),
            self.keys.workflow_runs_index(workflow),
        ];
        let arg = CreateFence {
            defs: first_key,
            fence: first_key.saturating_add(1),
            index: [first_key.saturating_add(2), first_key.saturating_add(3)],
            member,
        };
        (keys, arg)
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
            include_str!("../scripts/fence_workflow_version.lua"),
            "store::workflows::FenceArgs",
            &FenceArgs {
                op: FenceOp::Take,
                version: "1".into(),
                token: "t",
                lease_ms: 1,
            },
        );
        assert_header_matches(
            include_str!("../scripts/delete_workflow_version.lua"),
            "store::workflows::DeleteWorkflowArgs",
            &DeleteWorkflowArgs {
                name: "w",
                version: "1".into(),
                token: "t",
            },
        );
    }

    #[test]
    fn the_create_fence_points_at_the_keys_it_declares() {
        let json = serde_json::to_value(CreateFence {
            defs: 7,
            fence: 8,
            index: [9, 10],
            member: "0000000000001:r",
        })
        .expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"defs": 7, "fence": 8, "index": [9, 10], "member": "0000000000001:r"})
        );
        let lua = include_str!("../scripts/create_run.lua");
        for field in [
            "\"defs\"",
            "\"fence\"",
            "\"index\"",
            "\"member\"",
            "store::workflows::CreateFence",
        ] {
            assert!(lua.contains(field), "create_run.lua's header does not name {field}");
        }
    }
}
