//! The end-to-end harness: makes sure Redis and RabbitMQ run (starting them if they do not), then
//! starts a coordinator and workers as real processes under a namespace of their own (unique Redis
//! key prefix and queue names), so tests run in parallel against the same servers without seeing
//! each other. Clients are real tonic clients.
#![forbid(unsafe_code)]

pub mod archive;
pub mod pg;
pub mod prom;
pub mod redis_cluster;
pub mod redis_server;
pub use pg::{POSTGRES_URL, ensure_postgres};
pub use redis_cluster::RedisCluster;
pub use redis_server::RedisServer;

use std::{
    net::TcpStream,
    process::{Child, Command, Stdio},
    sync::Once,
    time::{Duration, Instant},
};

use baton_shared::amqp::QueueType;
use baton_shared::proto::{
    RegisterWorkflowRequest, Run, RunStatus, SubmitRunRequest, run_service_client::RunServiceClient,
    worker_service_client::WorkerServiceClient, workflow_service_client::WorkflowServiceClient,
};
use tonic::transport::Channel;

/// Redis as the tests use it.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The handlers the test worker (`src/bin/test_worker.rs`) consumes: their queues are a cluster's.
pub const TEST_WORKER_HANDLERS: &[&str] = &[
    "echo", "trace", "fail", "slow", "patient", "square", "screen", "guarded", "chatty",
];

/// The largest answer the harness's clients accept (tonic's default is 4 MiB; tests raise
/// `max_payload_bytes` above it).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// RabbitMQ as the tests use it.
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

static SERVICES: Once = Once::new();

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().expect("address"),
        Duration::from_millis(300),
    )
    .is_ok()
}

fn wait_port(port: u16, what: &str, within: Duration) {
    let start = Instant::now();
    while !port_open(port) {
        assert!(
            start.elapsed() < within,
            "{what} did not come up on 127.0.0.1:{port} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Makes sure Redis (6379) and RabbitMQ (5672) accept connections, starting the installed servers
/// with this machine's commands when they do not. Panics (never skips) when they cannot be had.
pub fn ensure_services() {
    SERVICES.call_once(|| {
        if !port_open(6379) {
            eprintln!("Redis is down; starting it");
            let _ = std::fs::create_dir_all("/var/lib/redis");
            let _ = std::fs::create_dir_all("/var/log/redis");
            let status = Command::new("redis-server")
                .args([
                    "--daemonize",
                    "yes",
                    "--bind",
                    "127.0.0.1",
                    "-::1",
                    "--port",
                    "6379",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    "/var/lib/redis",
                    "--logfile",
                    "/var/log/redis/ci.log",
                ])
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "could not start redis-server (is it installed?)"
            );
            wait_port(6379, "Redis", Duration::from_secs(30));
        }
        if !port_open(5672) {
            eprintln!("RabbitMQ is down; starting it");
            let status = Command::new("rabbitmq-server").arg("-detached").status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "could not start rabbitmq-server (is it installed?)"
            );
            wait_port(5672, "RabbitMQ", Duration::from_secs(120));
            std::thread::sleep(Duration::from_secs(2));
        }
    });
}

/// A TCP port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The target directory the running test binary lives in (`target/<profile>`), where cargo put this
/// crate's binaries (`test-coordinator`, `test-worker`) before running its integration tests.
fn target_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// The path of a binary of this crate (`test-coordinator`, `test-worker`), built by cargo before
/// the integration tests run; panics when it is missing.
pub fn bin(name: &str) -> std::path::PathBuf {
    let p = target_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run the tests with `cargo test -p baton-tests`, which builds it",
        p.display()
    );
    p
}

/// A coordinator and its workers under one namespace.
pub struct Cluster {
    /// Prefix of every key, exchange and queue of this cluster.
    pub namespace: String,
    /// The coordinator's gRPC address (`http://127.0.0.1:PORT`).
    pub addr: String,
    port: u16,
    coordinator: Option<Child>,
    more_coordinators: Vec<Child>,
    workers: Vec<Option<Child>>,
    extra_env: Vec<(String, String)>,
    redis_url: String,
    handlers: std::sync::Mutex<std::collections::BTreeSet<String>>,
    worker_env: Vec<(String, String)>,
    security: ClusterOptions,
}

/// How [`Cluster::start_with`] starts a cluster with auth or TLS on.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Coordinator settings (`BATON_AUTH_TOKENS`, `BATON_TLS_CERT`, ...), as `Cluster::start`'s `env`.
    pub env: Vec<(String, String)>,
    /// Environment of every worker the cluster spawns (`BATON_TOKEN`, ...).
    pub worker_env: Vec<(String, String)>,
    /// TLS as the cluster's clients, health checks and workers use it: with `ca_file` set the
    /// coordinator's address is `https://127.0.0.1:PORT` (the coordinator needs `BATON_TLS_CERT`
    /// and `BATON_TLS_KEY` in `env`, for a certificate valid for 127.0.0.1).
    pub tls: baton_shared::credentials::ClientTls,
    /// The Redis the cluster's coordinators keep their state in (`None`: the shared
    /// [`REDIS_URL`]), e.g. a [`RedisServer`] of the test's own that it can kill. A
    /// `BATON_REDIS_URL` in `env` still wins for the coordinators (a proxy in front of this Redis),
    /// while [`Cluster::redis_url`] stays this one. Workers, and the test worker's counters, stay on
    /// the shared Redis.
    pub redis_url: Option<String>,
}

impl Cluster {
    /// Starts a coordinator under a fresh namespace named after `test`. `env` adds coordinator
    /// settings (`BATON_DISPATCH_GRACE`, ...).
    pub async fn start(test: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(
            test,
            ClusterOptions {
                env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ..Default::default()
            },
        )
        .await
    }

    /// [`Cluster::start`] with auth or TLS settings (see [`ClusterOptions`]).
    pub async fn start_with(test: &str, options: ClusterOptions) -> Self {
        ensure_services();
        let namespace = format!("t-{test}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let port = free_port();
        let scheme = if options.tls.ca_file.is_some() { "https" } else { "http" };
        let mut c = Self {
            addr: format!("{scheme}://127.0.0.1:{port}"),
            namespace,
            port,
            coordinator: None,
            more_coordinators: Vec::new(),
            workers: Vec::new(),
            handlers: Default::default(),
            extra_env: options.env.clone(),
            redis_url: options.redis_url.clone().unwrap_or_else(|| REDIS_URL.to_string()),
            worker_env: Vec::new(),
            security: options,
        };
        c.start_coordinator().await;
        c
    }

    /// The log file of process `name` of this cluster (`coordinator`, or a worker's name), under
    /// `target/<profile>/e2e-logs/`: stdout and stderr together.
    pub fn log_path(&self, name: &str) -> std::path::PathBuf {
        target_dir()
            .join("e2e-logs")
            .join(format!("{}-{name}.log", self.namespace))
    }

    fn log(&self, name: &str) -> Stdio {
        let dir = target_dir().join("e2e-logs");
        let _ = std::fs::create_dir_all(&dir);
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))
        {
            Ok(f) => Stdio::from(f),
            Err(_) => Stdio::null(),
        }
    }

    /// The queue type of this cluster: `classic` unless the test asked for `BATON_QUEUE_TYPE=quorum`.
    /// Most tests use classic queues, which cost the broker far less to create and delete than
    /// quorum queues (each a Raft group); the tests about dead-lettering, redelivery and restarts
    /// use the default, quorum.
    fn queue_type(&self) -> String {
        self.extra_env
            .iter()
            .find(|(k, _)| k == "BATON_QUEUE_TYPE")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "classic".into())
    }

    /// Starts (or restarts) the coordinator and waits until it answers.
    pub async fn start_coordinator(&mut self) {
        let child = self.coordinator_on(self.port).await;
        self.coordinator = Some(child);
    }

    /// Starts another coordinator of the same namespace on a port of its own (it shares Redis and
    /// RabbitMQ with the first; the clients keep talking to the first). Stopped with the cluster.
    ///
    /// Returns its address (`http://127.0.0.1:PORT`) and its index for
    /// [`Cluster::another_coordinator_pid`].
    pub async fn start_another_coordinator(&mut self) -> (String, usize) {
        let port = free_port();
        let child = self.coordinator_on(port).await;
        self.more_coordinators.push(child);
        (format!("http://127.0.0.1:{port}"), self.more_coordinators.len() - 1)
    }

    /// The Redis that holds the cluster's state ([`ClusterOptions::redis_url`], else [`REDIS_URL`]),
    /// for a test that reads the state directly.
    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }

    /// The process id of the first coordinator, while it runs.
    pub fn coordinator_pid(&self) -> Option<u32> {
        self.coordinator.as_ref().map(Child::id)
    }

    /// The process id of another coordinator ([`Cluster::start_another_coordinator`]'s index).
    pub fn another_coordinator_pid(&self, i: usize) -> Option<u32> {
        self.more_coordinators.get(i).map(Child::id)
    }

    /// The command that starts a coordinator of this cluster on `port`, with the cluster's settings.
    fn coordinator_command(&self, port: u16) -> Command {
        let mut cmd = Command::new(bin("test-coordinator"));
        cmd.env("BATON_LISTEN", format!("127.0.0.1:{port}"))
            .env("BATON_NAMESPACE", &self.namespace)
            .env("BATON_REDIS_URL", &self.redis_url)
            .env("BATON_AMQP_URL", AMQP_URL)
            .env("BATON_TIMER_POLL_INTERVAL", "50ms")
            .env("BATON_RETENTION", "1h")
            .env("BATON_QUEUE_TYPE", self.queue_type())
            .env("RUST_LOG", "info,lapin=warn")
            .stdout(self.log("coordinator"))
            .stderr(self.log("coordinator"));
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts another coordinator of this namespace with `env` over the cluster's settings, on a
    /// port of its own, *without* waiting for it to be ready; returns its address
    /// (`http://127.0.0.1:PORT`). Stopped with the cluster. For tests of start-up itself.
    pub fn spawn_coordinator_unwaited(&mut self, env: &[(&str, &str)]) -> String {
        let port = free_port();
        let mut cmd = self.coordinator_command(port);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.more_coordinators
            .push(cmd.spawn().expect("spawn test-coordinator"));
        format!("http://127.0.0.1:{port}")
    }

    async fn coordinator_on(&self, port: u16) -> Child {
        let mut cmd = self.coordinator_command(port);
        let mut child = cmd.spawn().expect("spawn test-coordinator");
        // Ready means answering gRPC health SERVING (it listens before its start-up work is done,
        // answering NOT_SERVING until then), not only accepting connections.
        let scheme = if self.security.tls.ca_file.is_some() {
            "https"
        } else {
            "http"
        };
        let addr = format!("{scheme}://127.0.0.1:{port}");
        let start = Instant::now();
        let within = Duration::from_secs(90);
        let mut last = String::from("no answer yet");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "coordinator exited at start-up with {status} (last health answer: {last}); see its log under \
                     target/<profile>/e2e-logs"
                );
            }
            match health_status_tls(&addr, "", &self.security.tls).await {
                Ok(ServingStatus::Serving) => return child,
                Ok(s) => last = format!("{s:?}"),
                Err(e) => last = e,
            }
            if start.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                panic!("coordinator on port {port} did not answer health SERVING within {within:?} (last: {last})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the coordinator: SIGTERM (graceful) or SIGKILL.
    pub fn stop_coordinator(&mut self, kill: bool) {
        if let Some(mut c) = self.coordinator.take() {
            signal(&mut c, kill);
        }
    }

    /// Starts a worker with id `<name>` and waits until it consumes every test handler's queue (its
    /// log says `consuming` for each), checking that the process stays alive meanwhile; returns its
    /// index. The worker reaches the coordinator lazily and retries while it is unreachable or
    /// starting up, so a task it takes before then is not lost.
    pub fn spawn_worker(&mut self, name: &str, concurrency: u16) -> usize {
        self.spawn_worker_with(name, concurrency, &[])
    }

    /// As [`Cluster::spawn_worker`], with `env` over the worker's settings (another name of
    /// [`Cluster::spawn_worker_with`]).
    pub fn spawn_worker_with_env(&mut self, name: &str, concurrency: u16, env: &[(&str, &str)]) -> usize {
        self.spawn_worker_with(name, concurrency, env)
    }

    /// [`Cluster::spawn_worker`] with `env` over the worker's settings (`BATON_HEARTBEAT_INTERVAL`, ...).
    pub fn spawn_worker_with(&mut self, name: &str, concurrency: u16, env: &[(&str, &str)]) -> usize {
        let log = self.log_path(name);
        let offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut child = self
            .worker_command(name, concurrency)
            .envs(env.iter().copied())
            .spawn()
            .expect("spawn test-worker");
        let start = Instant::now();
        let within = Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("worker {name} exited at start-up with {status}; see {}", log.display());
            }
            let consuming = std::fs::read(&log)
                .ok()
                .and_then(|b| b.get(usize::try_from(offset).unwrap_or(0)..).map(<[u8]>::to_vec))
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .lines()
                        .filter(|l| l.contains("consuming") && !l.contains("stopped consuming"))
                        .count()
                });
            match consuming {
                Some(n) if n >= TEST_WORKER_HANDLERS.len() => break,
                // No log to read (it could not be opened): nothing to wait on.
                None if !log.exists() => break,
                _ => {}
            }
            if start.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "worker {name} did not consume its queues within {within:?}; see {}",
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.workers.push(Some(child));
        self.workers.len() - 1
    }

    /// Sets environment variables for the workers spawned from now on (over the cluster's settings).
    pub fn set_worker_env(&mut self, env: &[(&str, &str)]) {
        self.worker_env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }

    /// The command that starts a test worker `name` of this cluster, its output appended to its log
    /// (not started, not waited for: for tests of a worker's start-up itself).
    pub fn worker_command(&self, name: &str, concurrency: u16) -> Command {
        let mut cmd = Command::new(bin("test-worker"));
        let tls = &self.security.tls;
        for (k, v) in [
            ("BATON_CA_FILE", &tls.ca_file),
            ("BATON_CLIENT_CERT", &tls.cert_file),
            ("BATON_CLIENT_KEY", &tls.key_file),
        ] {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        cmd.envs(self.security.worker_env.iter().map(|(k, v)| (k, v)));
        // BATON_ADDR wins over BATON_COORDINATOR: one exported in the tester's shell must not
        // point the test's workers elsewhere.
        cmd.env_remove("BATON_ADDR")
            .env("BATON_COORDINATOR", &self.addr)
            .env("BATON_AMQP_URL", AMQP_URL)
            .env("BATON_REDIS_URL", REDIS_URL)
            .env("BATON_NAMESPACE", &self.namespace)
            .env("BATON_WORKER_ID", name)
            .env("BATON_QUEUE_TYPE", self.queue_type())
            .env("BATON_CONCURRENCY", concurrency.to_string())
            .env("RUST_LOG", "info,lapin=warn")
            .envs(self.worker_env.iter().map(|(k, v)| (k, v)))
            .stdout(self.log(name))
            .stderr(self.log(name));
        cmd
    }

    /// A client of workers and queues.
    pub async fn operations(&self) -> baton_shared::proto::operations_service_client::OperationsServiceClient<Channel> {
        baton_shared::proto::operations_service_client::OperationsServiceClient::new(self.channel().await)
            .max_decoding_message_size(MAX_ANSWER_BYTES)
    }

    /// Stops worker `i`: SIGTERM (graceful) or SIGKILL (`kill -9`).
    pub fn stop_worker(&mut self, i: usize, kill: bool) {
        if let Some(mut c) = self.workers[i].take() {
            signal(&mut c, kill);
        }
    }

    /// A workflow client.
    pub async fn workflows(&self) -> WorkflowServiceClient<Channel> {
        WorkflowServiceClient::new(self.channel().await).max_decoding_message_size(MAX_ANSWER_BYTES)
    }

    /// A run client.
    pub async fn runs(&self) -> RunServiceClient<Channel> {
        RunServiceClient::new(self.channel().await).max_decoding_message_size(MAX_ANSWER_BYTES)
    }

    /// An event client.
    pub async fn events(&self) -> baton_shared::proto::event_service_client::EventServiceClient<Channel> {
        baton_shared::proto::event_service_client::EventServiceClient::new(self.channel().await)
            .max_decoding_message_size(MAX_ANSWER_BYTES)
    }

    /// A schedule client.
    pub async fn schedules(&self) -> baton_shared::proto::schedule_service_client::ScheduleServiceClient<Channel> {
        baton_shared::proto::schedule_service_client::ScheduleServiceClient::new(self.channel().await)
            .max_decoding_message_size(MAX_ANSWER_BYTES)
    }

    /// A human-task client.
    pub async fn human_tasks(&self) -> baton_shared::proto::human_task_service_client::HumanTaskServiceClient<Channel> {
        baton_shared::proto::human_task_service_client::HumanTaskServiceClient::new(self.channel().await)
            .max_decoding_message_size(MAX_ANSWER_BYTES)
    }

    /// How many times the `square` handler ran each element of fan-out step `step`: index -> count.
    pub async fn item_executions(&self, run_id: &str, step: &str) -> std::collections::HashMap<u32, i64> {
        let client = redis::Client::open(REDIS_URL).expect("redis url");
        let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
        let key =
            baton_shared::keys::Keys::new(self.namespace.clone()).namespaced(&format!("test:items:{run_id}:{step}"));
        redis::AsyncCommands::hgetall(&mut conn, key).await.expect("HGETALL")
    }

    /// A worker-protocol client (for fencing tests).
    pub async fn worker_api(&self) -> WorkerServiceClient<Channel> {
        WorkerServiceClient::new(self.channel().await).max_decoding_message_size(MAX_ANSWER_BYTES)
    }

    async fn channel(&self) -> Channel {
        baton_shared::credentials::endpoint(&self.addr, &self.security.tls)
            .expect("address")
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .connect_lazy()
    }

    /// A channel to the coordinator (over TLS when the cluster has it) whose calls carry `token`
    /// (`None`: no `authorization` metadata). Build any client on it: `RunServiceClient::new(ch)`.
    pub async fn channel_with_token(&self, token: Option<&str>) -> baton_shared::credentials::AuthChannel {
        let bearer = baton_shared::credentials::Bearer::new(token).expect("a token that fits a header");
        tonic::service::interceptor::InterceptedService::new(self.channel().await, bearer)
    }

    /// The coordinator's gRPC health for `service` (`""`: the whole server).
    ///
    /// # Errors
    /// The call's failure, as text.
    pub async fn health(&self, service: &str) -> Result<ServingStatus, String> {
        health_status_tls(&self.addr, service, &self.security.tls).await
    }

    /// Polls the coordinator's health (`""`) until it answers `want`; panics after `within`.
    pub async fn wait_health(&self, want: ServingStatus, within: Duration) {
        let start = Instant::now();
        loop {
            let got = self.health("").await;
            if got == Ok(want) {
                return;
            }
            assert!(
                start.elapsed() < within,
                "health did not turn {want:?} within {within:?} (last: {got:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Registers a definition; panics on refusal.
    pub async fn register(&self, yaml: &str) {
        if let Ok(def) = baton_shared::definition::WorkflowDefinition::parse(yaml) {
            self.handlers.lock().expect("handlers").extend(def.handlers());
        }
        self.workflows()
            .await
            .register_workflow(RegisterWorkflowRequest {
                definition: yaml.into(),
            })
            .await
            .expect("register workflow");
    }

    /// Submits a run; returns its id.
    pub async fn submit(&self, workflow: &str, input: serde_json::Value) -> String {
        let req = SubmitRunRequest {
            workflow: workflow.into(),
            input_json: input.to_string(),
            ..Default::default()
        };
        self.runs()
            .await
            .submit_run(req)
            .await
            .expect("submit run")
            .into_inner()
            .run_id
    }

    /// The run as `GetRun` answers it; panics when the call fails.
    pub async fn get_run(&self, run_id: &str) -> Run {
        self.runs()
            .await
            .get_run(baton_shared::proto::GetRunRequest {
                run_id: run_id.into(),
                ..Default::default()
            })
            .await
            .expect("get run")
            .into_inner()
    }

    /// Polls `GetRun` until step `step` of the run has status `word` (`waiting`, `running`, ...);
    /// answers the run then, and panics after `within`.
    pub async fn wait_step(&self, run_id: &str, step: &str, word: &str, within: Duration) -> Run {
        let start = Instant::now();
        loop {
            let run = self.get_run(run_id).await;
            if step_status(&run, step) == word {
                return run;
            }
            assert!(
                start.elapsed() < within,
                "step {step} never became {word} within {within:?}: {run:#?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Publishes event (`name`, `key`) with `payload`; panics when the call fails.
    pub async fn publish(
        &self,
        name: &str,
        key: &str,
        payload: serde_json::Value,
    ) -> baton_shared::proto::PublishEventResponse {
        self.events()
            .await
            .publish_event(baton_shared::proto::PublishEventRequest {
                name: name.into(),
                key: key.into(),
                payload_json: payload.to_string(),
            })
            .await
            .expect("publish event")
            .into_inner()
    }

    /// The open human tasks of every workflow; panics when the call fails.
    pub async fn open_human_tasks(&self) -> Vec<baton_shared::proto::HumanTask> {
        self.human_tasks()
            .await
            .list_human_tasks(baton_shared::proto::ListHumanTasksRequest {
                status: "open".into(),
                ..Default::default()
            })
            .await
            .expect("list human tasks")
            .into_inner()
            .tasks
    }

    /// Panics unless the coordinator answers a plain call (`ListWorkflows`): what a test asserts
    /// after sending something that must not crash or wedge it.
    pub async fn assert_answers(&self) {
        self.workflows()
            .await
            .list_workflows(baton_shared::proto::ListWorkflowsRequest::default())
            .await
            .expect("the coordinator still answers");
    }

    /// Polls `GetRun` until the run is over; panics after `within`.
    pub async fn wait_run(&self, run_id: &str, within: Duration) -> Run {
        let mut client = self.runs().await;
        let start = Instant::now();
        loop {
            if let Ok(r) = client
                .get_run(baton_shared::proto::GetRunRequest {
                    run_id: run_id.into(),
                    ..Default::default()
                })
                .await
            {
                let run = r.into_inner();
                if RunStatus::try_from(run.status).is_ok_and(RunStatus::is_terminal) {
                    return run;
                }
                assert!(
                    start.elapsed() < within,
                    "run {run_id} not finished within {within:?}: {run:#?}"
                );
            } else {
                assert!(start.elapsed() < within, "run {run_id} not readable within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many times the test worker ran `step` of `run` (counted by the handler itself).
    pub async fn executions(&self, run_id: &str, step: &str) -> i64 {
        self.count("exec", run_id, step).await
    }

    /// A count the test worker's handlers keep (`exec`, `saw-cancel`).
    pub async fn count(&self, what: &str, run_id: &str, step: &str) -> i64 {
        self.count_key(&format!("test:{what}:{run_id}:{step}")).await
    }

    /// A number the test worker keeps in the shared Redis under the namespace's key `name`
    /// (`test:max-inside:<pool>`, ...); 0 when there is none.
    pub async fn count_key(&self, name: &str) -> i64 {
        let client = redis::Client::open(REDIS_URL).expect("redis url");
        let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
        let key = baton_shared::keys::Keys::new(self.namespace.clone()).namespaced(name);
        let n: Option<i64> = redis::AsyncCommands::get(&mut conn, key).await.expect("GET");
        n.unwrap_or(0)
    }

    /// The numbers of [`Cluster::count`] for many `(what, run_id, step)` at once, in their order:
    /// one connection and one `MGET` per 1,000 (for tests that check thousands of steps).
    pub async fn counts(&self, of: &[(&str, &str, &str)]) -> Vec<i64> {
        let client = redis::Client::open(REDIS_URL).expect("redis url");
        let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
        let keys = baton_shared::keys::Keys::new(self.namespace.clone());
        let mut out = Vec::with_capacity(of.len());
        for chunk in of.chunks(1_000) {
            let mut mget = redis::cmd("MGET");
            for (what, run_id, step) in chunk {
                mget.arg(keys.namespaced(&format!("test:{what}:{run_id}:{step}")));
            }
            let got: Vec<Option<i64>> = mget.query_async(&mut conn).await.expect("MGET");
            out.extend(got.into_iter().map(|n| n.unwrap_or(0)));
        }
        out
    }

    /// The cluster's RabbitMQ topology.
    pub fn topology(&self) -> baton_shared::amqp::Topology {
        baton_shared::amqp::Topology {
            namespace: self.namespace.clone(),
            queue_type: if self.queue_type() == "quorum" {
                QueueType::Quorum
            } else {
                QueueType::Classic
            },
            delivery_limit: 5,
        }
    }
}

fn signal(child: &mut Child, kill: bool) {
    if kill {
        let _ = child.kill();
    } else {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Cluster {
    /// Stops the processes, then removes the namespace's queues, exchanges and Redis keys, so the
    /// shared servers do not fill up with test leftovers (also when a test failed).
    fn drop(&mut self) {
        for w in self.workers.iter_mut().flatten() {
            let _ = w.kill();
            let _ = w.wait();
        }
        for c in self.coordinator.iter_mut().chain(self.more_coordinators.iter_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let namespace = self.namespace.clone();
        let mut handlers: Vec<String> = self
            .handlers
            .lock()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default();
        handlers.extend(TEST_WORKER_HANDLERS.iter().map(|h| h.to_string()));
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            // Bounded: a broker in trouble must not hang the test run.
            let _ = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(30), cleanup_namespace(&namespace, &handlers)).await
            });
        })
        .join();
    }
}

/// Deletes everything a namespace made: its handler queues, dead-letter queue, exchanges, and Redis
/// keys (best effort).
pub async fn cleanup_namespace(namespace: &str, handlers: &[String]) {
    if let Err(e) = cleanup_broker(namespace, handlers).await {
        eprintln!("cleanup of {namespace} in RabbitMQ failed: {e}");
    }
    if let Ok(mut conn) = redis::Client::open(REDIS_URL).and_then(|c| c.get_connection()) {
        let keys = scan_keys_blocking(
            &mut conn,
            &baton_shared::keys::Keys::new(namespace.to_string()).scan_pattern(),
        );
        for chunk in keys.chunks(500) {
            let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
        }
    }
}

/// The keys matching `pattern`, found with SCAN (not KEYS, which blocks the shared Redis for as long
/// as it holds keys of every test and benchmark: seconds when it is full). Stops at the first error.
pub fn scan_keys_blocking(conn: &mut redis::Connection, pattern: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let page: redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(conn);
        let Ok((next, found)) = page else { return keys };
        keys.extend(found);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// As `scan_keys_blocking`, on an async connection; panics on a Redis error (for tests' assertions).
pub async fn scan_keys<C: redis::aio::ConnectionLike + Send>(conn: &mut C, pattern: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .expect("SCAN");
        keys.extend(found);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

async fn cleanup_broker(namespace: &str, handlers: &[String]) -> lapin::Result<()> {
    let t = baton_shared::amqp::Topology {
        namespace: namespace.into(),
        queue_type: Default::default(),
        delivery_limit: 5,
    };
    let conn = baton_shared::amqp::connect(AMQP_URL, "baton-tests-cleanup").await?;
    let ch = conn.create_channel().await?;
    let mut queues: Vec<String> = handlers.iter().map(|h| t.queue(h)).collect();
    queues.push(t.dead_letter_queue());
    for q in queues {
        ch.queue_delete(q.as_str().into(), Default::default()).await?;
    }
    for x in [t.exchange(), t.dead_letter_exchange(), t.control_exchange()] {
        ch.exchange_delete(x.as_str().into(), Default::default()).await?;
    }
    conn.close(200, "done".into()).await
}

pub use tonic_health::ServingStatus;

/// The gRPC health of `service` (`""`: the whole server) at `addr` (`http://host:port`), asked on a
/// fresh connection with short timeouts.
///
/// # Errors
/// The connection's or the call's failure, as text.
pub async fn health_status(addr: &str, service: &str) -> Result<ServingStatus, String> {
    health_status_tls(addr, service, &Default::default()).await
}

/// [`health_status`] over TLS for an `https://` address, trusting `tls.ca_file` (and presenting
/// `tls`'s client certificate, if any).
///
/// # Errors
/// The connection's or the call's failure, as text.
pub async fn health_status_tls(
    addr: &str,
    service: &str,
    tls: &baton_shared::credentials::ClientTls,
) -> Result<ServingStatus, String> {
    baton_shared::credentials::install_crypto_provider();
    let channel = baton_shared::credentials::endpoint(addr, tls)
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let answer = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .map_err(|e| format!("{}: {}", e.code(), e.message()))?
        .into_inner();
    match tonic_health::pb::health_check_response::ServingStatus::try_from(answer.status) {
        Ok(tonic_health::pb::health_check_response::ServingStatus::Serving) => Ok(ServingStatus::Serving),
        Ok(tonic_health::pb::health_check_response::ServingStatus::NotServing) => Ok(ServingStatus::NotServing),
        _ => Ok(ServingStatus::Unknown),
    }
}

/// The status of a run as a word.
pub fn status(run: &Run) -> &'static str {
    RunStatus::try_from(run.status).map(RunStatus::word).unwrap_or("?")
}

/// The status of a step of a run as a word.
pub fn step_status(run: &Run, step: &str) -> &'static str {
    let s = run
        .steps
        .iter()
        .find(|s| s.id == step)
        .unwrap_or_else(|| panic!("no step {step} in {run:#?}"));
    baton_shared::proto::StepStatus::try_from(s.status)
        .map(baton_shared::proto::StepStatus::word)
        .unwrap_or("?")
}

/// Unix ms of a protobuf timestamp (0 when unset).
pub fn ms(ts: &Option<prost_types::Timestamp>) -> i64 {
    ts.as_ref().map(baton_shared::time::millis).unwrap_or(0)
}

/// A TCP proxy that a test can cut: it forwards connections from `127.0.0.1:<port>` to `target`
/// while up; [`TcpProxy::cut`] closes every connection through it and refuses new ones until
/// [`TcpProxy::restore`]; [`TcpProxy::reset`] closes every connection through it at once but
/// takes new ones (a server that crashed mid-conversation and came back); [`TcpProxy::stall`]
/// closes the server's side of every connection but leaves the client's open and silent (a
/// server host that died without a word: its client waits for an answer), taking new ones;
/// [`TcpProxy::pause`] holds every byte in both directions (a server that stopped answering)
/// until `restore`, or `cut`, which drops what it held. Put it between one process and RabbitMQ,
/// Redis or PostgreSQL to take that server away from that process only (the servers are shared by
/// tests running in parallel).
pub struct TcpProxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    state: tokio::sync::watch::Sender<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

/// What a [`TcpProxy`] does with its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyMode {
    /// Forwards.
    Up,
    /// Holds what it reads (neither forwarded nor dropped yet).
    Paused,
    /// Refuses new connections; open ones were closed.
    Cut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProxyState {
    mode: ProxyMode,
    /// The epoch of connections opened now; each connection keeps the one it was opened in.
    epoch: u64,
    /// Connections of an epoch below this are closed ([`TcpProxy::reset`], [`TcpProxy::cut`]).
    closed_below: u64,
    /// Connections of an epoch below this have lost their server's side ([`TcpProxy::stall`]).
    stalled_below: u64,
}

impl ProxyState {
    fn closed(&self, epoch: u64) -> bool {
        epoch < self.closed_below
    }

    fn stalled(&self, epoch: u64) -> bool {
        epoch < self.stalled_below
    }

    /// Starts a new epoch; connections of the old ones are then closed or stalled as the caller
    /// says.
    fn next_epoch(&mut self) -> u64 {
        self.epoch = self.epoch.wrapping_add(1);
        self.epoch
    }
}

/// Forwards `from` to `to`, a read at a time, holding each read while the proxy is paused; returns
/// at the end of `from`, an error, or when the connection (of `epoch`) is closed or stalled (what
/// it held is dropped).
async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    mut state: tokio::sync::watch::Receiver<ProxyState>,
    epoch: u64,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let go = state
            .wait_for(|s| s.mode != ProxyMode::Paused || s.closed(epoch) || s.stalled(epoch))
            .await
            .is_ok_and(|s| s.mode == ProxyMode::Up && !s.closed(epoch) && !s.stalled(epoch));
        if !go || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl TcpProxy {
    /// Starts a proxy to `target` (`host:port`), up.
    pub async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a proxy port");
        let port = listener.local_addr().expect("proxy address").port();
        let (state, _) = tokio::sync::watch::channel(ProxyState {
            mode: ProxyMode::Up,
            epoch: 0,
            closed_below: 0,
            stalled_below: 0,
        });
        let target = target.to_string();
        let watch = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let mut state = watch.subscribe();
                let at = *state.borrow_and_update();
                if at.mode == ProxyMode::Cut {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let epoch = at.epoch;
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (mut in_read, mut in_write) = inbound.into_split();
                    let (mut out_read, mut out_write) = outbound.into_split();
                    tokio::select! {
                        () = pump(&mut in_read, &mut out_write, state.clone(), epoch) => {}
                        () = pump(&mut out_read, &mut in_write, state.clone(), epoch) => {}
                        _ = state.wait_for(|s| s.closed(epoch) || s.stalled(epoch)) => {}
                    }
                    // Stalled: the server's side goes, the client's stays open and silent until
                    // the proxy closes it (or is dropped).
                    drop((out_read, out_write));
                    let now = *state.borrow();
                    if now.stalled(epoch) && !now.closed(epoch) {
                        let _ = state.wait_for(|s| s.closed(epoch)).await;
                    }
                    drop((in_read, in_write));
                });
            }
        });
        Self { port, state, task }
    }

    /// Closes every connection through the proxy (dropping what a pause held) and refuses new
    /// ones.
    pub fn cut(&self) {
        // Closed by epoch too: a connection that wakes up only after a quick `restore` must still
        // see that it was cut.
        self.state.send_modify(|s| {
            s.mode = ProxyMode::Cut;
            s.closed_below = s.next_epoch();
        });
    }

    /// Closes every connection through the proxy at once, whatever it was doing (a query or a
    /// transaction half done), dropping what a pause held; new connections are taken as before.
    pub fn reset(&self) {
        self.state.send_modify(|s| s.closed_below = s.next_epoch());
    }

    /// Closes the server's side of every connection through the proxy, leaving the client's side
    /// open with nothing more coming (no answer, no end: a server host that died, seen from its
    /// client), until [`TcpProxy::cut`] or [`TcpProxy::reset`]; new connections are taken as
    /// before (the server is back).
    pub fn stall(&self) {
        self.state.send_modify(|s| s.stalled_below = s.next_epoch());
    }

    /// Holds every byte read from now on, both ways, until [`TcpProxy::restore`] (which forwards
    /// them) or [`TcpProxy::cut`] / [`TcpProxy::reset`] (which drop them); connections stay open
    /// and new ones are taken (and held likewise).
    pub fn pause(&self) {
        self.state.send_modify(|s| s.mode = ProxyMode::Paused);
    }

    /// Forwards again (new connections, and what a pause held).
    pub fn restore(&self) {
        self.state.send_modify(|s| s.mode = ProxyMode::Up);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
