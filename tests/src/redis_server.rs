//! A Redis server of one test's own, which the test may kill (`kill -9`) and start again: the
//! machine's shared Redis keeps nothing on disk and serves every test at once, so it must not be
//! killed. This one writes every command to its append-only file before answering
//! (`--appendonly yes --appendfsync always`), as a Redis that must not lose a commit is run, so a
//! restart on the same directory finds everything it acknowledged.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A `redis-server` process on `127.0.0.1:<port>` with its data in a directory of its own under
/// `target/<profile>/e2e-redis/`; killed and its directory removed when dropped.
pub struct RedisServer {
    /// The port it listens on.
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers `PING`.
    pub async fn start() -> Self {
        let port = crate::free_port();
        let exe = std::env::current_exe().expect("current exe");
        let dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("the profile directory")
            .join("e2e-redis")
            .join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir_all(&dir).expect("the Redis directory");
        let mut server = Self { port, dir, child: None };
        server.spawn().await;
        server
    }

    /// Its URL (`redis://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it with SIGKILL (no shutdown, no last save) and waits until it is gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory (after [`RedisServer::kill9`]) and waits
    /// until it has loaded its append-only file and answers `PING`.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))
            .map_or_else(|_| Stdio::null(), Stdio::from);
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (is it installed?)");
        self.child = Some(child);
        let start = Instant::now();
        let within = Duration::from_secs(30);
        loop {
            // Redis answers LOADING (an error) until its append-only file is loaded.
            let pong: Result<String, String> = async {
                let client = redis::Client::open(self.url()).map_err(|e| e.to_string())?;
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| e.to_string())?;
                redis::cmd("PING")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            if pong.as_deref() == Ok("PONG") {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "redis-server on port {} exited with {status}; see {}",
                    self.port,
                    self.dir.join("redis.log").display()
                );
            }
            assert!(
                start.elapsed() < within,
                "redis-server on port {} did not answer PING within {within:?} (last: {pong:?})",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
