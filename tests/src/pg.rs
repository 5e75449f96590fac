//! PostgreSQL for the archive's tests: PostgreSQL made sure of (started when it is down, never
//! skipped), and a schema of each test's own, dropped when the test ends.

use std::{
    net::TcpStream,
    process::Command,
    sync::Once,
    time::{Duration, Instant},
};

use baton_coordinator::archive::ArchiveConfig;
use sqlx::{Connection, PgConnection};

/// PostgreSQL as the tests use it (trust auth for `postgres`).
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

static POSTGRES: Once = Once::new();

fn port_open() -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], 5432).into(), Duration::from_millis(300)).is_ok()
}

/// Makes sure PostgreSQL (127.0.0.1:5432) accepts connections, starting the installed server
/// (Debian's cluster 15/main, else the `postgresql` service) when it does not. Panics (never
/// skips) when it cannot be had.
pub fn ensure_postgres() {
    POSTGRES.call_once(|| {
        if port_open() {
            return;
        }
        eprintln!("PostgreSQL is down; starting it");
        let started = Command::new("pg_ctlcluster")
            .args(["15", "main", "start"])
            .status()
            .is_ok_and(|s| s.success())
            || Command::new("service")
                .args(["postgresql", "start"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            started,
            "could not start PostgreSQL (pg_ctlcluster 15 main start, service postgresql start)"
        );
        let start = Instant::now();
        while !port_open() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "PostgreSQL did not come up on 127.0.0.1:5432 within 60 s"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    });
}

/// A schema of one test's own; dropped when the test ends (also when it fails).
pub struct Schema(pub String);

impl Schema {
    /// A new schema name (`t_<uuid>`), PostgreSQL made sure of.
    pub fn new() -> Self {
        ensure_postgres();
        Schema(format!("t_{}", uuid::Uuid::new_v4().simple()))
    }

    /// The archive's settings in this schema (30 days' retention, batches of 500).
    pub fn config(&self) -> ArchiveConfig {
        ArchiveConfig {
            url: POSTGRES_URL.into(),
            schema: self.0.clone(),
            retention: Duration::from_secs(30 * 86_400),
            grace: Duration::from_secs(300),
            batch: 500,
            read_timeout: Duration::from_secs(10),
        }
    }

    /// One `bigint` a query in this schema answers.
    pub async fn count(&self, sql: &str) -> i64 {
        let mut c = PgConnection::connect(POSTGRES_URL).await.expect("connect");
        sqlx::query(&format!("SET search_path TO {}", self.0))
            .execute(&mut c)
            .await
            .expect("search_path");
        let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&mut c).await.expect(sql);
        n
    }
}

impl Schema {
    /// Rows of this schema's `runs` table for run `run_id`.
    pub async fn archived_rows(&self, run_id: &str) -> i64 {
        let mut c = PgConnection::connect(POSTGRES_URL).await.expect("connect");
        let sql = format!("SELECT count(*) FROM {}.runs WHERE run_id = $1", self.0);
        let (n,): (i64,) = sqlx::query_as(&sql)
            .bind(run_id)
            .fetch_one(&mut c)
            .await
            .expect("count");
        n
    }

    /// Runs a statement in this schema (DDL a test breaks or mends the archive with).
    pub async fn execute(&self, sql: &str) {
        let mut c = PgConnection::connect(POSTGRES_URL).await.expect("connect");
        sqlx::Executor::execute(&mut c, format!("SET search_path TO {}; {sql}", self.0).as_str())
            .await
            .expect(sql);
    }
}

impl Schema {
    /// Rows of this schema's `runs` table, committed (all namespaces).
    pub async fn archived_total(&self) -> i64 {
        self.count("SELECT count(*) FROM runs").await
    }

    /// How many of `run_ids` the `runs` table holds (`.0`), and the most rows any one of them has
    /// (`.1`): (ids.len(), 1) when each is archived exactly once.
    pub async fn archived_once(&self, run_ids: &[String]) -> (i64, i64) {
        let mut c = PgConnection::connect(POSTGRES_URL).await.expect("connect");
        let sql = format!(
            "SELECT count(*), coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM {}.runs \
             WHERE run_id = ANY($1) GROUP BY run_id) per_run",
            self.0
        );
        sqlx::query_as(&sql)
            .bind(run_ids)
            .fetch_one(&mut c)
            .await
            .expect("count per run")
    }

    /// Holds, in an open transaction of the test, a row of the `runs` table with the key of run
    /// `run_id` of `namespace` finished at `finished_at_ms` (Unix ms): the archiver's write of a
    /// batch holding that run then waits for this transaction (the key is unique), in the middle
    /// of its own. [`RowLock::release`] rolls it back, so the archiver's own row goes in.
    pub async fn hold_run_row(&self, namespace: &str, run_id: &str, finished_at_ms: i64) -> RowLock {
        let mut conn = PgConnection::connect(POSTGRES_URL).await.expect("connect");
        let (pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .expect("pg_backend_pid");
        sqlx::Executor::execute(&mut conn, "BEGIN").await.expect("BEGIN");
        let sql = format!(
            "INSERT INTO {}.runs (namespace, run_id, workflow, version, status, created_at, finished_at, run, summary) \
             VALUES ($1, $2, 'held-by-the-test', 1, 'succeeded', \
                 timestamptz 'epoch' + $3 * interval '1 millisecond', \
                 timestamptz 'epoch' + $3 * interval '1 millisecond', '', '')",
            self.0
        );
        sqlx::query(&sql)
            .bind(namespace)
            .bind(run_id)
            .bind(finished_at_ms)
            .execute(&mut conn)
            .await
            .expect("hold a run's row");
        RowLock {
            conn,
            pid,
            seen: Default::default(),
        }
    }
}

/// A row of the archive's `runs` table that a test holds in an open transaction
/// ([`Schema::hold_run_row`]).
pub struct RowLock {
    conn: PgConnection,
    pid: i32,
    seen: std::collections::HashSet<i32>,
}

impl RowLock {
    /// The server processes that wait for this transaction now, directly or through another
    /// waiting one: the archiver's writes of a batch with the held run, including those of
    /// connections cut since (PostgreSQL ends such a process only once it can go on and finds its
    /// client gone; a later write of the same batch waits for the rows it inserted before it
    /// stopped).
    pub async fn waiting(&self) -> Vec<i32> {
        let mut c = PgConnection::connect(POSTGRES_URL).await.expect("connect");
        let pids: Vec<(i32,)> = sqlx::query_as(
            "WITH RECURSIVE w(pid) AS ( \
                 SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) \
                 UNION \
                 SELECT a.pid FROM pg_stat_activity a JOIN w ON w.pid = ANY(pg_blocking_pids(a.pid)) \
             ) SELECT pid FROM w",
        )
        .bind(self.pid)
        .fetch_all(&mut c)
        .await
        .expect("pg_blocking_pids");
        pids.into_iter().map(|(p,)| p).collect()
    }

    /// Waits until a server process this lock has not seen before waits for it (a write that
    /// began since the last call); answers its pid, panics after `within`.
    pub async fn wait_for_new_writer(&mut self, within: Duration) -> i32 {
        let start = Instant::now();
        loop {
            let now = self.waiting().await;
            if let Some(pid) = now.iter().copied().find(|p| !self.seen.contains(p)) {
                self.seen.insert(pid);
                return pid;
            }
            assert!(
                start.elapsed() < within,
                "no new writer waits for the held row after {within:?} (waiting: {now:?}, seen: {:?})",
                self.seen
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Rolls the held row back: the writers that waited for it go on.
    pub async fn release(mut self) {
        sqlx::Executor::execute(&mut self.conn, "ROLLBACK")
            .await
            .expect("ROLLBACK");
    }
}

impl Default for Schema {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(POSTGRES_URL).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .execute(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}
