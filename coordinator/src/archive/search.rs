//! Searching the archive: ListRuns' pages (keyset, newest first) and counts by status, for a
//! filter of the query language (`baton_shared::query`) and ListRuns' own fields. Every value is
//! a parameter: the SQL text is this module's and the filter's placeholders.

use std::collections::BTreeMap;

use baton_shared::{
    proto,
    query::{Filter, SqlValue},
};
use chrono::{DateTime, Utc};
use sqlx::{Postgres, postgres::PgArguments, query::QueryAs};

use super::{Archive, ArchiveError, Result};

/// ListRuns' own conditions, besides its `query` (all optional; each narrows the answer).
#[derive(Debug, Clone, Default)]
pub struct RunConditions {
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs with this status word (`succeeded`, ...).
    pub status: Option<String>,
    /// Only the runs this run started.
    pub parent_run_id: Option<String>,
    /// Only runs no other run started.
    pub top_level: bool,
    /// Only runs submitted with this idempotency key.
    pub idempotency_key: Option<String>,
    /// Only runs created strictly after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only runs created strictly before this time.
    pub created_before: Option<DateTime<Utc>>,
}

/// Where a page of runs starts: after the run with this creation time and id, in the order
/// newest first (`created_at DESC, run_id DESC`), the order of ListRuns' Redis index too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PageKey {
    /// The run's creation time (whole milliseconds, as Redis keeps it).
    pub created: DateTime<Utc>,
    /// The run id.
    pub run_id: String,
}

impl PageKey {
    /// Reads a ListRuns page token, `<creation in Unix ms, 13 digits>:<run id>`; `None` for any
    /// other text.
    pub fn from_token(token: &str) -> Option<PageKey> {
        let (ms, id) = token.split_once(':')?;
        if ms.len() != 13 || !ms.bytes().all(|b| b.is_ascii_digit()) || id.is_empty() {
            return None;
        }
        Some(PageKey {
            created: DateTime::from_timestamp_millis(ms.parse().ok()?)?,
            run_id: id.to_string(),
        })
    }

    /// The page token for this key (see [`PageKey::from_token`]).
    pub fn token(&self) -> String {
        format!("{:013}:{}", self.created.timestamp_millis().max(0), self.run_id)
    }
}

/// One run of a page: its key and its summary (the run as ListRuns answers it, without steps).
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// Its place in the order.
    pub key: PageKey,
    /// The run without its steps.
    pub run: proto::Run,
}

/// The `WHERE` clause over `runs r` and its parameters.
struct Where {
    sql: String,
    params: Vec<SqlValue>,
}

impl Where {
    fn new(namespace: &str) -> Self {
        Where {
            sql: "r.namespace = $1::text".into(),
            params: vec![SqlValue::Text(namespace.to_string())],
        }
    }

    /// Adds `AND <column> <op> $n::<cast>`.
    fn and(&mut self, column: &str, op: &str, value: SqlValue) {
        let cast = cast(&value);
        self.params.push(value);
        self.sql
            .push_str(&format!(" AND {column} {op} ${}::{cast}", self.params.len()));
    }

    fn conditions(&mut self, c: &RunConditions) {
        if let Some(w) = &c.workflow {
            self.and("r.workflow", "=", SqlValue::Text(w.clone()));
        }
        if let Some(s) = &c.status {
            self.and("r.status", "=", SqlValue::Text(s.clone()));
        }
        if let Some(p) = &c.parent_run_id {
            self.and("r.parent_run_id", "=", SqlValue::Text(p.clone()));
        }
        if c.top_level {
            self.sql.push_str(" AND r.parent_run_id IS NULL");
        }
        if let Some(k) = &c.idempotency_key {
            self.and("r.idempotency_key", "=", SqlValue::Text(k.clone()));
        }
        if let Some(t) = c.created_after {
            self.and("r.created_at", ">", SqlValue::Time(t));
        }
        if let Some(t) = c.created_before {
            self.and("r.created_at", "<", SqlValue::Time(t));
        }
    }

    fn filter(&mut self, filter: Option<&Filter>, now: DateTime<Utc>) {
        if let Some(f) = filter {
            let w = f.to_sql(self.params.len().saturating_add(1), now);
            self.sql.push_str(" AND (");
            self.sql.push_str(&w.sql);
            self.sql.push(')');
            self.params.extend(w.params);
        }
    }
}

/// The cast of a parameter's placeholder.
fn cast(v: &SqlValue) -> &'static str {
    match v {
        SqlValue::Text(_) => "text",
        SqlValue::Int(_) => "bigint",
        SqlValue::Time(_) => "timestamptz",
        SqlValue::Json(_) => "jsonb",
        SqlValue::TextArray(_) => "text[]",
    }
}

/// Binds the parameters in order.
fn bind<'q, O>(
    mut q: QueryAs<'q, Postgres, O, PgArguments>,
    params: Vec<SqlValue>,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    for p in params {
        q = match p {
            SqlValue::Text(s) => q.bind(s),
            SqlValue::Int(i) => q.bind(i),
            SqlValue::Time(t) => q.bind(t),
            SqlValue::Json(j) => q.bind(j),
            SqlValue::TextArray(a) => q.bind(a),
        };
    }
    q
}

impl Archive {
    /// Up to `limit` archived runs of `namespace` that meet `conditions` and `filter`, newest
    /// first (`created_at DESC, run_id DESC`), starting after `after` (keyset pagination: a page
    /// costs the same wherever it is). Relative times of the filter are read against `now`.
    ///
    /// # Errors
    /// [`ArchiveError::Db`] when the database fails; [`ArchiveError::Decode`] for a stored
    /// summary that does not decode.
    ///
    /// Given up past `archive_read_timeout` with [`ArchiveError::Timeout`].
    pub async fn list_runs(
        &self,
        namespace: &str,
        conditions: &RunConditions,
        filter: Option<&Filter>,
        after: Option<&PageKey>,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<Listed>> {
        self.within(self.list_runs_unbounded(namespace, conditions, filter, after, limit, now))
            .await
    }

    /// [`Archive::list_runs`] without its time limit.
    async fn list_runs_unbounded(
        &self,
        namespace: &str,
        conditions: &RunConditions,
        filter: Option<&Filter>,
        after: Option<&PageKey>,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<Listed>> {
        let mut w = Where::new(namespace);
        w.conditions(conditions);
        if let Some(k) = after {
            w.params.push(SqlValue::Time(k.created));
            w.params.push(SqlValue::Text(k.run_id.clone()));
            let n = w.params.len();
            w.sql.push_str(&format!(
                " AND (r.created_at, r.run_id) < (${}::timestamptz, ${n}::text)",
                n.saturating_sub(1)
            ));
        }
        w.filter(filter, now);
        w.params.push(SqlValue::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
        let sql = format!(
            "SELECT r.summary, r.created_at, r.run_id FROM runs r WHERE {} \
             ORDER BY r.created_at DESC, r.run_id DESC LIMIT ${}::bigint",
            w.sql,
            w.params.len()
        );
        let rows: Vec<(Vec<u8>, DateTime<Utc>, String)> =
            bind(sqlx::query_as(&sql), w.params).fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|(summary, created, run_id)| {
                let run =
                    <proto::Run as prost::Message>::decode(summary.as_slice()).map_err(|e| ArchiveError::Decode {
                        what: "run summary",
                        reason: e.to_string(),
                    })?;
                Ok(Listed {
                    key: PageKey { created, run_id },
                    run,
                })
            })
            .collect()
    }

    /// How many archived runs of `namespace` meet `conditions` and `filter`, by status word
    /// (one `GROUP BY`; a status no run has is absent).
    ///
    /// # Errors
    /// [`ArchiveError::Db`] when the database fails.
    ///
    /// Given up past `archive_read_timeout` with [`ArchiveError::Timeout`].
    pub async fn count_by_status(
        &self,
        namespace: &str,
        conditions: &RunConditions,
        filter: Option<&Filter>,
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, u64>> {
        self.within(self.count_by_status_unbounded(namespace, conditions, filter, now))
            .await
    }

    /// [`Archive::count_by_status`] without its time limit.
    async fn count_by_status_unbounded(
        &self,
        namespace: &str,
        conditions: &RunConditions,
        filter: Option<&Filter>,
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, u64>> {
        let mut w = Where::new(namespace);
        w.conditions(conditions);
        w.filter(filter, now);
        let sql = format!(
            "SELECT r.status, count(*) FROM runs r WHERE {} GROUP BY r.status",
            w.sql
        );
        let rows: Vec<(String, i64)> = bind(sqlx::query_as(&sql), w.params).fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|(s, n)| (s, u64::try_from(n).unwrap_or(0)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_key_round_trips_through_its_token() {
        let k = PageKey {
            created: DateTime::from_timestamp_millis(1_765_000_000_123).unwrap_or_default(),
            run_id: "0190c3e4-0000-7000-8000-000000000000".into(),
        };
        assert_eq!(PageKey::from_token(&k.token()), Some(k));
        assert_eq!(PageKey::from_token("12:x"), None);
        assert_eq!(PageKey::from_token("nonsense"), None);
    }
}
