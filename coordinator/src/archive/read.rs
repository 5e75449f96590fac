//! Reading one archived run back, and removing it.

use baton_shared::proto;
use chrono::{DateTime, Utc};
use prost::Message;

use super::{Archive, ArchiveError, ArchivedRun, Result};

/// Decodes a stored protobuf message.
fn decode<M: Message + Default>(what: &'static str, bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|e| ArchiveError::Decode {
        what,
        reason: e.to_string(),
    })
}

impl Archive {
    /// The archived run `run_id` of `namespace` as it was written: the whole run, its error
    /// types, its history and its human tasks; `None` when the archive does not have it. A run
    /// parked by the writer (see [`super::WriteReport`]) is answered too. When a run was archived
    /// more than once with different finish times (re-run after it was archived, and the first
    /// copy not deleted), the last finished is answered.
    ///
    /// # Errors
    /// [`ArchiveError::Db`] when the database fails; [`ArchiveError::Decode`] for a stored row
    /// that does not decode.
    ///
    /// Given up past `archive_read_timeout` with [`ArchiveError::Timeout`].
    pub async fn get_run(&self, namespace: &str, run_id: &str) -> Result<Option<ArchivedRun>> {
        self.within(self.get_run_unbounded(namespace, run_id)).await
    }

    /// [`Archive::get_run`] without its time limit.
    async fn get_run_unbounded(&self, namespace: &str, run_id: &str) -> Result<Option<ArchivedRun>> {
        let row: Option<(Vec<u8>, Vec<String>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT run, error_types, finished_at FROM runs WHERE namespace = $1 AND run_id = $2 \
             ORDER BY finished_at DESC LIMIT 1",
        )
        .bind(namespace)
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((run, error_types, finished_at)) = row else {
            return self.get_parked(namespace, run_id).await;
        };
        let run: proto::Run = decode("run", &run)?;
        let events: Vec<(Vec<u8>,)> = sqlx::query_as(
            "SELECT event FROM run_events WHERE namespace = $1 AND run_id = $2 AND run_finished_at = $3 \
             ORDER BY position",
        )
        .bind(namespace)
        .bind(run_id)
        .bind(finished_at)
        .fetch_all(&self.pool)
        .await?;
        let tasks: Vec<(Vec<u8>,)> = sqlx::query_as(
            "SELECT task FROM human_tasks WHERE namespace = $1 AND run_id = $2 AND run_finished_at = $3 \
             ORDER BY created_at, step_id",
        )
        .bind(namespace)
        .bind(run_id)
        .bind(finished_at)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(ArchivedRun {
            namespace: namespace.to_string(),
            run,
            error_types,
            history: events.iter().map(|(b,)| decode("event", b)).collect::<Result<_>>()?,
            human_tasks: tasks
                .iter()
                .map(|(b,)| decode("human task", b))
                .collect::<Result<_>>()?,
        }))
    }

    /// A parked run (kept whole by the writer), `None` when there is none.
    async fn get_parked(&self, namespace: &str, run_id: &str) -> Result<Option<ArchivedRun>> {
        type Row = (Vec<u8>, Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<String>);
        let row: Option<Row> = sqlx::query_as(
            "SELECT run, history, human_tasks, error_types FROM parked_runs WHERE namespace = $1 AND run_id = $2",
        )
        .bind(namespace)
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((run, history, tasks, error_types)) = row else {
            return Ok(None);
        };
        Ok(Some(ArchivedRun {
            namespace: namespace.to_string(),
            run: decode("run", &run)?,
            error_types,
            history: history.iter().map(|b| decode("event", b)).collect::<Result<_>>()?,
            human_tasks: tasks.iter().map(|b| decode("human task", b)).collect::<Result<_>>()?,
        }))
    }

    /// Which of `run_ids` the archive holds for `namespace` (at most 10,000 ids are asked at once;
    /// callers pass ListRuns' bounded scans).
    ///
    /// # Errors
    /// [`ArchiveError::Db`] when the database fails.
    ///
    /// Given up past `archive_read_timeout` with [`ArchiveError::Timeout`].
    pub async fn archived_ids(&self, namespace: &str, run_ids: &[String]) -> Result<std::collections::HashSet<String>> {
        self.within(self.archived_ids_unbounded(namespace, run_ids)).await
    }

    /// [`Archive::archived_ids`] without its time limit.
    async fn archived_ids_unbounded(
        &self,
        namespace: &str,
        run_ids: &[String],
    ) -> Result<std::collections::HashSet<String>> {
        let mut found = std::collections::HashSet::new();
        for chunk in run_ids.chunks(10_000) {
            let rows: Vec<(String,)> =
                sqlx::query_as("SELECT DISTINCT run_id::text FROM runs WHERE namespace = $1 AND run_id = ANY($2)")
                    .bind(namespace)
                    .bind(chunk)
                    .fetch_all(&self.pool)
                    .await?;
            found.extend(rows.into_iter().map(|(id,)| id));
        }
        Ok(found)
    }

    /// Up to `limit` human tasks of archived runs of `namespace`, newest first (by creation),
    /// each filter applied when not empty: `assignee` one of the task's assignees, `workflow`,
    /// `status` (`open`, `completed`, `cancelled`).
    ///
    /// # Errors
    /// [`ArchiveError::Db`] when the database fails; [`ArchiveError::Decode`] for a stored task
    /// that does not decode.
    ///
    /// Given up past `archive_read_timeout` with [`ArchiveError::Timeout`].
    pub async fn list_human_tasks(
        &self,
        namespace: &str,
        assignee: &str,
        workflow: &str,
        status: &str,
        limit: usize,
    ) -> Result<Vec<proto::HumanTask>> {
        self.within(self.list_human_tasks_unbounded(namespace, assignee, workflow, status, limit))
            .await
    }

    /// [`Archive::list_human_tasks`] without its time limit.
    async fn list_human_tasks_unbounded(
        &self,
        namespace: &str,
        assignee: &str,
        workflow: &str,
        status: &str,
        limit: usize,
    ) -> Result<Vec<proto::HumanTask>> {
        let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
            "SELECT task FROM human_tasks WHERE namespace = $1 \
               AND ($2 = '' OR assignees @> ARRAY[$2]) \
               AND ($3 = '' OR workflow = $3) \
               AND ($4 = '' OR status = $4) \
             ORDER BY created_at DESC NULLS LAST, run_id, step_id LIMIT $5",
        )
        .bind(namespace)
        .bind(assignee)
        .bind(workflow)
        .bind(status)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|(b,)| decode("human task", b)).collect()
    }

    /// Removes a run (when a rerun or retry brings it back to Redis), with its steps, attempts,
    /// history and human tasks, in one transaction; true when it was there (archived or parked).
    ///
    /// # Errors
    /// [`ArchiveError::Db`] when the database fails (nothing is removed then).
    pub async fn delete_run(&self, namespace: &str, run_id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let mut found = false;
        for table in ["runs", "parked_runs"] {
            let n = sqlx::query(&format!("DELETE FROM {table} WHERE namespace = $1 AND run_id = $2"))
                .bind(namespace)
                .bind(run_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            found |= n > 0;
        }
        for table in ["steps", "attempts", "run_events", "human_tasks"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE namespace = $1 AND run_id = $2"))
                .bind(namespace)
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(found)
    }
}
