//! `durability = "replicated"` end to end: a real coordinator and worker on a Redis primary of the
//! test's own with one replica. Each commit waits for the replica (so what a caller was told of is
//! on it); a replica that stops acknowledging makes a commit answer UNAVAILABLE naming
//! `durability` (the commit stands on the primary, and the caller's retry with its idempotency key
//! gets the same run); a primary without its replica online is NOT_SERVING until it is back.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use baton_shared::{keys::Keys, proto::SubmitRunRequest};
use baton_tests::{Cluster, ClusterOptions, RedisServer, ServingStatus, free_port, status};
use serde_json::json;

const DAG: &str = r#"
name: durable
version: 1
steps:
  - id: a
    handler: echo
    input: {n: "${{ input.n }}"}
  - id: b
    handler: echo
    depends_on: [a]
  - id: c
    handler: echo
    depends_on: [a]
"#;

const MINUTE: Duration = Duration::from_secs(60);

/// A `redis-server` replicating the primary at `primary_port`, on a port and directory of its
/// own; killed (and its directory removed) when dropped.
struct Replica {
    port: u16,
    primary_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Replica {
    fn start(primary_port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("baton-replica-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("replica dir");
        let mut r = Self {
            port: free_port(),
            primary_port,
            dir,
            child: None,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args([
                "--appendonly",
                "no",
                "--replicaof",
                "127.0.0.1",
                &self.primary_port.to_string(),
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("replica running").id().to_string();
        let ok = Command::new("kill").args([sig, &pid]).status().expect("kill").success();
        assert!(ok, "kill {sig} {pid}");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("the replica answers")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A stopped process ignores SIGKILL's wait until continued on some systems: continue it.
            let _ = Command::new("kill").args(["-CONT", &c.id().to_string()]).status();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until the primary at `url` lists `n` replicas online.
async fn wait_replicas_online(url: &str, n: usize, within: Duration) {
    let mut conn = redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("the primary answers");
    let start = Instant::now();
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await
            .expect("INFO");
        let online = info
            .lines()
            .filter(|l| l.starts_with("slave") && l.contains("state=online"))
            .count();
        if online == n {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{online} replicas online, not {n}, after {within:?}:\n{info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn keyed(key: &str, n: u32) -> SubmitRunRequest {
    SubmitRunRequest {
        workflow: "durable".into(),
        input_json: json!({"n": n}).to_string(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replicated_commits_wait_for_the_replica_and_say_unavailable_without_it() {
    let primary = RedisServer::start().await;
    let mut replica = Replica::start(primary.port);
    wait_replicas_online(&primary.url(), 1, MINUTE).await;
    let env = vec![
        ("BATON_DURABILITY".to_string(), "replicated".to_string()),
        ("BATON_DURABILITY_TIMEOUT".to_string(), "300ms".to_string()),
        ("BATON_HEALTH_PROBE_INTERVAL".to_string(), "200ms".to_string()),
    ];
    let mut c = Cluster::start_with(
        "durability",
        ClusterOptions {
            env,
            redis_url: Some(primary.url()),
            ..Default::default()
        },
    )
    .await;
    c.register(DAG).await;
    c.spawn_worker("w1", 4);

    // Every transition waited for the replica: the finished run is on it as the client saw it.
    let id = c.submit("durable", json!({"n": 1})).await;
    let run = c.wait_run(&id, MINUTE).await;
    assert_eq!(status(&run), "succeeded");
    let on_replica: Option<String> = redis::cmd("HGET")
        .arg(Keys::new(c.namespace.clone()).run(&id))
        .arg("status")
        .query_async(&mut replica.conn().await)
        .await
        .expect("HGET on the replica");
    assert_eq!(
        on_replica.as_deref(),
        Some("succeeded"),
        "the replica has the run's last commit"
    );

    // A replica that stops acknowledging (still connected, so the primary lists it online): the
    // submit's commit stands on the primary, but the caller is told it is not durable yet.
    replica.signal("-STOP");
    let refused = c
        .runs()
        .await
        .submit_run(keyed("order-7", 7))
        .await
        .expect_err("a commit the replica did not acknowledge is not answered OK");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("durability") && refused.message().contains("0 of the 1"),
        "{}",
        refused.message()
    );
    // The caller tries again with the same idempotency key once the replica is back: the same run
    // (made by the first commit), which runs to its end once.
    replica.signal("-CONT");
    let again = {
        let start = Instant::now();
        loop {
            match c.runs().await.submit_run(keyed("order-7", 7)).await {
                Ok(r) => break r.into_inner(),
                Err(e) if e.code() == tonic::Code::Unavailable && start.elapsed() < MINUTE => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the retried submit failed: {e:?}"),
            }
        }
    };
    assert!(
        !again.created,
        "the first, refused submit's commit stood: the retry answers its run"
    );
    assert_eq!(status(&c.wait_run(&again.run_id, MINUTE).await), "succeeded");

    // No replica at all: health says NOT_SERVING, and calls are refused at once naming durability,
    // until the replica is back.
    replica.kill();
    c.wait_health(ServingStatus::NotServing, MINUTE).await;
    let refused = c
        .runs()
        .await
        .submit_run(keyed("order-8", 8))
        .await
        .expect_err("no replica online");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("durability"), "{}", refused.message());
    replica.spawn();
    wait_replicas_online(&primary.url(), 1, MINUTE).await;
    c.wait_health(ServingStatus::Serving, MINUTE).await;
    let id = c.submit("durable", json!({"n": 9})).await;
    assert_eq!(status(&c.wait_run(&id, MINUTE).await), "succeeded");
}
