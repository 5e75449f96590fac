//! The archive's day partitions: every table is partitioned by RANGE on its run's finish time, one
//! partition per UTC day, `<table>_pYYYYMMDD`. The coordinator creates the partitions of the next
//! [`DAYS_AHEAD`] days, and drops the days wholly past `archive_retention` (all five tables'
//! partitions of that day; rows that landed in a DEFAULT partition are deleted by time instead).
//! [`run`] does both every [`MAINTENANCE_INTERVAL`], under a PostgreSQL advisory lock so that
//! coordinators do not race, and survives errors (logged, counted, tried again next time).

use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use sqlx::{Acquire, Executor};
use tokio::sync::watch;

use super::{Archive, Result};

/// The partitioned tables, with the column they are partitioned on.
pub const TABLES: [(&str, &str); 5] = [
    ("runs", "finished_at"),
    ("steps", "run_finished_at"),
    ("attempts", "run_finished_at"),
    ("run_events", "run_finished_at"),
    ("human_tasks", "run_finished_at"),
];

/// Days of partitions created ahead of today (and yesterday's, for a run whose clock lags).
pub const DAYS_AHEAD: u64 = 3;

/// How often [`run`] maintains the partitions.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(3600);

/// The key of the advisory lock maintenance holds (any constant; "baton-archive" in ASCII).
const LOCK_KEY: i64 = 0x6261_746f_6e61_7263;

/// Takes the maintenance lock for the rest of the transaction `tx` (released at its end, even
/// when the task is dropped), and bounds how long its DDL waits for other sessions' locks.
async fn lock(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut **tx)
        .await?;
    sqlx::query("SET LOCAL lock_timeout = '10s'").execute(&mut **tx).await?;
    Ok(())
}

/// The partition of `table` for `day`.
pub fn partition_name(table: &str, day: NaiveDate) -> String {
    format!("{table}_p{}", day.format("%Y%m%d"))
}

/// The day of a partition name made by [`partition_name`], `None` for any other name.
pub fn partition_day(table: &str, name: &str) -> Option<NaiveDate> {
    let digits = name.strip_prefix(table)?.strip_prefix("_p")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Partitions created.
    pub created: Vec<String>,
    /// Partitions dropped (past retention).
    pub dropped: Vec<String>,
    /// Rows deleted from the DEFAULT partitions (past retention).
    pub deleted_default_rows: u64,
    /// Partitions that could not be created, with the reason (e.g. the DEFAULT partition already
    /// holds rows of that day: they stay there and are deleted by time).
    pub failed: Vec<(String, String)>,
}

impl Archive {
    /// Creates the day partitions from the day before `now` to [`DAYS_AHEAD`] days after it, for
    /// every table; returns the names created. A partition that cannot be created is logged and
    /// skipped (its rows go to the DEFAULT partition).
    ///
    /// # Errors
    /// [`super::ArchiveError::Db`] when the database fails.
    pub async fn ensure_partitions(&self, now: DateTime<Utc>) -> Result<Maintenance> {
        let mut done = Maintenance::default();
        let today = now.date_naive();
        let first = today.checked_sub_days(Days::new(1)).unwrap_or(today);
        let mut tx = self.pool.begin().await?;
        lock(&mut tx).await?;
        {
            for offset in 0..=DAYS_AHEAD.saturating_add(1) {
                let Some(day) = first.checked_add_days(Days::new(offset)) else {
                    break;
                };
                let Some(next) = day.checked_add_days(Days::new(1)) else {
                    break;
                };
                for (table, _) in TABLES {
                    let name = partition_name(table, day);
                    let exists: Option<(i32,)> = sqlx::query_as(
                        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE n.nspname = current_schema() AND c.relname = $1",
                    )
                    .bind(&name)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if exists.is_some() {
                        continue;
                    }
                    // Names and bounds come from this module's table names and dates, never
                    // from outside.
                    let ddl = format!(
                        "CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ('{day}T00:00:00Z') TO ('{next}T00:00:00Z')"
                    );
                    let mut one = tx.begin().await?;
                    match (&mut *one).execute(ddl.as_str()).await {
                        Ok(_) => {
                            one.commit().await?;
                            done.created.push(name);
                        }
                        Err(e) => {
                            one.rollback().await?;
                            tracing::warn!(partition = %name, error = %e, "archive: could not create a day partition; its rows go to the default partition");
                            done.failed.push((name, e.to_string()));
                        }
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Drops every day partition whose whole day is older than `now - retention` (the
    /// partitions of all five tables for that day), and deletes the DEFAULT partitions' rows
    /// finished before that time.
    ///
    /// # Errors
    /// [`super::ArchiveError::Db`] when the database fails (what was dropped before stays
    /// dropped; the next pass goes on).
    pub async fn drop_expired_partitions(&self, now: DateTime<Utc>, retention: Duration) -> Result<Maintenance> {
        let mut done = Maintenance::default();
        let cutoff = chrono::Duration::from_std(retention)
            .ok()
            .and_then(|r| now.checked_sub_signed(r))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut tx = self.pool.begin().await?;
        lock(&mut tx).await?;
        {
            for (table, column) in TABLES {
                let children: Vec<(String,)> = sqlx::query_as(
                    "SELECT c.relname::text FROM pg_inherits i \
                     JOIN pg_class c ON c.oid = i.inhrelid \
                     JOIN pg_class p ON p.oid = i.inhparent \
                     JOIN pg_namespace n ON n.oid = p.relnamespace \
                     WHERE n.nspname = current_schema() AND p.relname = $1",
                )
                .bind(table)
                .fetch_all(&mut *tx)
                .await?;
                for (name,) in children {
                    let Some(day) = partition_day(table, &name) else {
                        continue;
                    };
                    let end = day
                        .checked_add_days(Days::new(1))
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                        .map(|d| d.and_utc());
                    if end.is_some_and(|end| end <= cutoff) {
                        (&mut *tx).execute(format!("DROP TABLE {name}").as_str()).await?;
                        metrics::counter!("baton_archive_partitions_dropped_total").increment(1);
                        tracing::info!(partition = %name, "archive: dropped a day partition past archive_retention");
                        done.dropped.push(name);
                    }
                }
                let deleted = sqlx::query(&format!("DELETE FROM {table}_default WHERE {column} < $1"))
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                done.deleted_default_rows = done.deleted_default_rows.saturating_add(deleted);
            }
            sqlx::query("DELETE FROM parked_runs WHERE parked_at < $1")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// One maintenance pass at `now`: drops the days past the configured retention, then
    /// creates the days ahead.
    ///
    /// # Errors
    /// As [`Archive::drop_expired_partitions`] and [`Archive::ensure_partitions`].
    pub async fn maintain(&self, now: DateTime<Utc>) -> Result<Maintenance> {
        let dropped = self.drop_expired_partitions(now, self.config.retention).await?;
        let mut created = self.ensure_partitions(now).await?;
        created.dropped = dropped.dropped;
        created.deleted_default_rows = dropped.deleted_default_rows;
        Ok(created)
    }
}

/// Maintains the partitions every [`MAINTENANCE_INTERVAL`] until `stop` turns true. A failed pass
/// is logged and counted in `baton_archive_maintenance_failures_total`, and the loop goes on.
pub async fn run(archive: std::sync::Arc<Archive>, mut stop: watch::Receiver<bool>) {
    loop {
        match archive.maintain(Utc::now()).await {
            Ok(m) => {
                if !m.created.is_empty() || !m.dropped.is_empty() || m.deleted_default_rows > 0 {
                    tracing::info!(
                        created = m.created.len(),
                        dropped = m.dropped.len(),
                        deleted_default_rows = m.deleted_default_rows,
                        "archive: partitions maintained"
                    );
                }
            }
            Err(e) => {
                metrics::counter!("baton_archive_maintenance_failures_total").increment(1);
                tracing::warn!(error = %e, "archive: partition maintenance failed; trying again in {MAINTENANCE_INTERVAL:?}");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(MAINTENANCE_INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip_to_their_day() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap_or_default();
        assert_eq!(partition_name("runs", day), "runs_p20261206");
        assert_eq!(partition_day("runs", "runs_p20261206"), Some(day));
        assert_eq!(partition_day("runs", "runs_default"), None);
        assert_eq!(partition_day("runs", "run_events_p20261206"), None);
        assert_eq!(partition_day("runs", "runs_p2026120"), None);
    }
}
