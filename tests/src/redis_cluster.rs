//! A Redis Cluster of one test's own (3 primaries, each with 1 or 2 replicas), started by
//! `deploy/local/cluster.sh` on free ports with its state under `target/<profile>/e2e-redis/`, so
//! a test may kill one of its nodes; stopped (`cluster.sh down`) when dropped.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

/// The cluster's node timeout (ms), as `cluster.sh` sets it (`--cluster-node-timeout`).
pub const NODE_TIMEOUT_MS: u64 = 2000;

/// A slot range of `CLUSTER SLOTS`: first slot, last slot, and the primary's (host, port).
type Range = (i64, i64, (String, i64));

/// A running 6-node Redis Cluster.
pub struct RedisCluster {
    /// The port of its first node; its nodes listen on `base..base + nodes`.
    pub base: u16,
    /// How many nodes it has (6 or 9).
    pub nodes: u16,
    /// Its `redis+cluster://` URL (`rediss+cluster://` over TLS), as `cluster.sh up` printed it.
    pub url: String,
    dir: PathBuf,
}

/// The repository's root (the tests crate's parent).
fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .expect("the repository root")
}

/// Whether `port` and its cluster bus port (`port + 10000`) are free on 127.0.0.1.
fn free(port: u16) -> bool {
    let Some(bus) = port.checked_add(10_000) else {
        return false;
    };
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok()
}

impl RedisCluster {
    /// Starts one of 3 primaries and 3 replicas; see [`RedisCluster::start_with`].
    pub async fn start() -> Self {
        Self::start_with(1).await
    }

    /// Starts one of 3 primaries and 3 replicas that speak only TLS (`CLUSTER_TLS=1`): to
    /// clients, on the cluster bus and for replication, with a CA and certificates of its own
    /// ([`RedisCluster::tls_file`]); its URL is `rediss+cluster://`.
    pub async fn start_tls() -> Self {
        Self::start_as(1, true).await
    }

    /// One of the TLS cluster's certificate files (`ca.crt`, `client.crt`, `client.key`).
    pub fn tls_file(&self, name: &str) -> String {
        self.dir.join("tls").join(name).to_string_lossy().into_owned()
    }

    /// Starts one of 3 primaries with `replicas` (1 or 2) replicas each on free ports (and their
    /// bus ports), waits until every node says `cluster_state:ok` and every replica is in sync
    /// (`cluster.sh up` does both).
    pub async fn start_with(replicas: u16) -> Self {
        Self::start_as(replicas, false).await
    }

    async fn start_as(replicas: u16, tls: bool) -> Self {
        let nodes = 3 * (1 + replicas);
        let exe = std::env::current_exe().expect("current exe");
        let root = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("the profile directory")
            .join("e2e-redis");
        for _ in 0..50 {
            // Bases from 20000 to 29994 (bus ports up to 39999), each of its six ports free.
            let base = 20_000 + (rand_u16() % 9_990);
            if !(0..nodes).all(|i| free(base + i)) {
                continue;
            }
            let dir = root.join(format!("cluster-{}", uuid::Uuid::new_v4().simple()));
            let out = tokio::task::spawn_blocking({
                let dir = dir.clone();
                move || {
                    Command::new("bash")
                        .arg(repo_root().join("deploy/local/cluster.sh"))
                        .args(["up", &base.to_string()])
                        .env("CLUSTER_DIR", &dir)
                        .env("CLUSTER_REPLICAS", replicas.to_string())
                        .env("CLUSTER_NODE_TIMEOUT", NODE_TIMEOUT_MS.to_string())
                        .env("CLUSTER_TLS", if tls { "1" } else { "0" })
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .output()
                }
            })
            .await
            .expect("cluster.sh")
            .expect("run deploy/local/cluster.sh");
            let started = Self {
                base,
                nodes,
                url: String::from_utf8_lossy(&out.stdout).trim().to_string(),
                dir,
            };
            let scheme = if tls { "rediss+cluster://" } else { "redis+cluster://" };
            if out.status.success() && started.url.starts_with(scheme) {
                return started;
            }
            // A port taken between the check and the start: try other ports (drop stops it).
            eprintln!("cluster.sh up {base} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        panic!("could not start a Redis Cluster on free ports");
    }

    /// The ports of its nodes.
    pub fn ports(&self) -> Vec<u16> {
        (0..self.nodes).map(|i| self.base + i).collect()
    }

    /// The port of the primary that owns `key`'s slot now (`CLUSTER SLOTS` of a live node).
    pub async fn owner_of(&self, key: &str) -> Option<u16> {
        for port in self.ports() {
            let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}")) else {
                continue;
            };
            let Ok(Ok(mut conn)) = tokio::time::timeout(
                std::time::Duration::from_secs(1),
                client.get_multiplexed_async_connection(),
            )
            .await
            else {
                continue;
            };
            let slot: Result<i64, _> = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query_async(&mut conn)
                .await;
            let Ok(slot) = slot else { continue };
            let slots: Result<Vec<Range>, _> = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<redis::Value>(&mut conn)
                .await
                .map(|v| ranges(&v));
            if let Ok(ranges) = slots
                && let Some((_, _, (_, p))) = ranges.into_iter().find(|(a, b, _)| (*a..=*b).contains(&slot))
            {
                return u16::try_from(p).ok();
            }
        }
        None
    }

    /// Kills the node on `port` with SIGKILL (no shutdown), by its pid file.
    pub fn kill9(&self, port: u16) {
        self.signal(port, "-KILL");
    }

    /// Sends `signal` (`-KILL`, `-STOP`, `-CONT`) to the node on `port`, by its pid file.
    fn signal(&self, port: u16, signal: &str) {
        let pid =
            std::fs::read_to_string(self.dir.join(port.to_string()).join("redis.pid")).expect("the node's pid file");
        let ok = Command::new("kill")
            .args([signal, pid.trim()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {signal} {pid}");
    }

    /// Makes the replicas of the primary on `port` fall behind, as a network partition between
    /// them would: stops them (SIGSTOP) and closes their replication links on the primary
    /// (`CLIENT KILL TYPE replica`), so the writes the primary takes from now on reach no replica.
    /// Answers the replicas' ports, for [`RedisCluster::resume`] (which lets them run again; they
    /// then have only what they had before the cut).
    pub async fn cut_replication(&self, port: u16) -> Vec<u16> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("node url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("the primary answers");
        let role: redis::Value = redis::cmd("ROLE").query_async(&mut conn).await.expect("ROLE");
        // ["master", offset, [[host, port, offset], ...]]
        let mut replicas = Vec::new();
        if let redis::Value::Array(parts) = role
            && let Some(redis::Value::Array(list)) = parts.get(2)
        {
            for r in list {
                if let redis::Value::Array(fields) = r
                    && let Some(redis::Value::BulkString(p)) = fields.get(1)
                    && let Ok(p) = String::from_utf8_lossy(p).parse::<u16>()
                {
                    replicas.push(p);
                }
            }
        }
        assert!(!replicas.is_empty(), "the primary on {port} has no replica");
        for r in &replicas {
            self.signal(*r, "-STOP");
        }
        let _: redis::Value = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("replica")
            .query_async(&mut conn)
            .await
            .expect("CLIENT KILL TYPE replica");
        replicas
    }

    /// Lets nodes stopped by [`RedisCluster::cut_replication`] run again (SIGCONT).
    pub fn resume(&self, ports: &[u16]) {
        for p in ports {
            self.signal(*p, "-CONT");
        }
    }
}

/// The `(first slot, last slot, (host, port) of the primary)` of a `CLUSTER SLOTS` answer.
fn ranges(v: &redis::Value) -> Vec<Range> {
    let redis::Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let redis::Value::Array(parts) = item else { return None };
            let (Some(redis::Value::Int(a)), Some(redis::Value::Int(b)), Some(redis::Value::Array(node))) =
                (parts.first(), parts.get(1), parts.get(2))
            else {
                return None;
            };
            let host = match node.first()? {
                redis::Value::BulkString(h) => String::from_utf8_lossy(h).to_string(),
                _ => String::new(),
            };
            let redis::Value::Int(port) = node.get(1)? else {
                return None;
            };
            Some((*a, *b, (host, *port)))
        })
        .collect()
}

/// A random number (the clock's nanoseconds and the process id: enough to spread tests' ports).
fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mixed = nanos ^ std::process::id().rotate_left(16) ^ uuid::Uuid::new_v4().as_u128() as u32;
    (mixed % 65_521) as u16
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("deploy/local/cluster.sh"))
            .args(["down", &self.base.to_string()])
            .env("CLUSTER_DIR", &self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
