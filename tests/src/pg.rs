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
