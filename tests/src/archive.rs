//! What the archive's end-to-end tests (`tests/archive.rs`, `tests/archive_faults.rs`) share: a
//! coordinator's archive settings, the archiver lease a test holds to keep the archivers waiting,
//! and looks at the Redis state of a cluster's runs (the archive outbox, a run hash, its
//! tombstone) and at the coordinator's `/metrics`.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{Cluster, pg::Schema};

/// PostgreSQL as the tests use it (trust auth).
pub const PG_HOST: &str = "127.0.0.1";
/// The port of the machine's PostgreSQL (a test may put a [`crate::TcpProxy`] in front of it).
pub const PG_PORT: u16 = 5432;
/// The database the tests' schemas live in.
pub const PG_DB: &str = "test";

/// The coordinator settings of an archive at `port` (5432, or a proxy's) in `schema`, with a
/// tombstone grace of 2 s and batches of `batch` runs.
pub fn archive_env(schema: &Schema, port: u16, batch: &str) -> Vec<(String, String)> {
    vec![
        (
            "BATON_ARCHIVE_URL".into(),
            format!("postgres://postgres@{PG_HOST}:{port}/{PG_DB}"),
        ),
        ("BATON_ARCHIVE_SCHEMA".into(), schema.0.clone()),
        ("BATON_ARCHIVE_GRACE".into(), "2s".into()),
        ("BATON_ARCHIVE_BATCH".into(), batch.into()),
    ]
}

/// A connection to the Redis that holds `c`'s state ([`Cluster::redis_url`]).
pub async fn redis(c: &Cluster) -> redis::aio::MultiplexedConnection {
    redis::Client::open(c.redis_url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis at {}: {e}", c.redis_url()))
}

/// Holds the namespace's archiver lease for the test, so the coordinators' archivers wait.
pub async fn hold_archiver(c: &Cluster) {
    let _: () = redis::cmd("SET")
        .arg(baton_shared::keys::Keys::new(c.namespace.clone()).archiver_lease())
        .arg("held-by-the-test")
        .arg("PX")
        .arg(600_000)
        .query_async(&mut redis(c).await)
        .await
        .expect("SET");
}

/// Lets the archivers go on (also: drops a killed coordinator's lease rather than waiting 30 s
/// for it to lapse).
pub async fn release_archiver(c: &Cluster) {
    let _: () = redis::cmd("DEL")
        .arg(baton_shared::keys::Keys::new(c.namespace.clone()).archiver_lease())
        .query_async(&mut redis(c).await)
        .await
        .expect("DEL");
}

/// The run hash of `run_id` as Redis holds it.
pub async fn run_hash(c: &Cluster, run_id: &str) -> HashMap<String, String> {
    redis::AsyncCommands::hgetall(
        &mut redis(c).await,
        baton_shared::keys::Keys::new(c.namespace.clone()).run(run_id),
    )
    .await
    .expect("HGETALL")
}

/// How many runs wait in the archive outbox.
pub async fn outbox_len(c: &Cluster) -> u64 {
    redis::AsyncCommands::zcard(
        &mut redis(c).await,
        baton_shared::keys::Keys::new(c.namespace.clone()).archive_outbox(),
    )
    .await
    .expect("ZCARD")
}

/// The archive outbox in the order the archiver takes it: (run id, its end in Unix ms).
pub async fn outbox(c: &Cluster) -> Vec<(String, i64)> {
    let entries: Vec<(String, f64)> = redis::AsyncCommands::zrange_withscores(
        &mut redis(c).await,
        baton_shared::keys::Keys::new(c.namespace.clone()).archive_outbox(),
        0,
        -1,
    )
    .await
    .expect("ZRANGE");
    entries.into_iter().map(|(id, score)| (id, score as i64)).collect()
}

/// Waits until Redis holds run `run_id` only as its tombstone; panics after `within`.
pub async fn wait_tombstone(c: &Cluster, run_id: &str, within: Duration) -> HashMap<String, String> {
    let start = Instant::now();
    loop {
        let h = run_hash(c, run_id).await;
        if h.contains_key("archived_at") {
            return h;
        }
        assert!(
            start.elapsed() < within,
            "run {run_id} was not archived within {within:?}; Redis holds {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the archive outbox until `ok` holds for its length; answers it, panics after `within`.
pub async fn wait_outbox(c: &Cluster, within: Duration, ok: impl Fn(u64) -> bool) -> u64 {
    let start = Instant::now();
    loop {
        let n = outbox_len(c).await;
        if ok(n) {
            return n;
        }
        assert!(
            start.elapsed() < within,
            "the archive outbox holds {n} runs after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many of `run_ids` still have a run hash (whole or a tombstone) in Redis.
pub async fn runs_in_redis(c: &Cluster, run_ids: &[String]) -> usize {
    let mut conn = redis(c).await;
    let mut pipe = redis::pipe();
    for id in run_ids {
        pipe.exists(baton_shared::keys::Keys::new(c.namespace.clone()).run(id));
    }
    let there: Vec<bool> = pipe.query_async(&mut conn).await.expect("EXISTS");
    there.into_iter().filter(|t| *t).count()
}

/// The value of the unlabelled metric `name` on the coordinator's `/metrics` at `port` (`None`
/// when it is not there yet).
pub async fn metric(port: u16, name: &str) -> Option<f64> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out).to_string();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls metric `name` until `ok` holds for its value; answers it, panics after `within`.
pub async fn wait_metric(port: u16, name: &str, within: Duration, ok: impl Fn(f64) -> bool) -> f64 {
    let start = Instant::now();
    loop {
        let v = metric(port, name).await;
        if let Some(v) = v.filter(|v| ok(*v)) {
            return v;
        }
        assert!(start.elapsed() < within, "{name} is {v:?} after {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
