//! Coordinator configuration: defaults, overridden by a TOML file, overridden by environment
//! variables `BATON_<FIELD>` (e.g. `BATON_REDIS_URL`, `BATON_LISTEN`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use baton_shared::{
    amqp::{QueueType, Topology},
    credentials::Secret,
    duration::serde_human,
};
use serde::{Deserialize, Serialize};

/// Every setting of the coordinator. Durations are human strings in files and variables ("30s").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CoordinatorConfig {
    /// Address the gRPC server listens on.
    pub listen: SocketAddr,
    /// Redis URL: `redis://host:port/db` (`rediss://` over TLS), or a Redis Cluster's
    /// `redis+cluster://host:port[,host:port...]` (`rediss+cluster://` over TLS).
    pub redis_url: String,
    /// PEM CA certificate(s) that Redis's certificate must chain to, instead of the system's. Only
    /// with a TLS `redis_url`.
    pub redis_tls_ca: Option<PathBuf>,
    /// PEM client certificate (chain) presented to Redis (which asks for one by default,
    /// `tls-auth-clients yes`). Needs `redis_tls_key` and a TLS `redis_url`.
    pub redis_tls_cert: Option<PathBuf>,
    /// PEM private key of `redis_tls_cert`.
    pub redis_tls_key: Option<PathBuf>,
    /// RabbitMQ URL (`amqp://user:pass@host:port/vhost`).
    pub amqp_url: String,
    /// Prefix of every Redis key, exchange and queue: several Baton installations (or tests) can
    /// share one Redis and one RabbitMQ.
    pub namespace: String,
    /// Directory whose `*.yaml`, `*.yml` and `*.json` workflow definitions are registered at start-up.
    pub definitions_dir: Option<PathBuf>,
    /// Most bytes of parsed workflow definitions kept in memory (an estimate: 32 bytes per byte of
    /// a definition's JSON); the least recently used are evicted and read from Redis again when
    /// needed. Default 64 MiB.
    pub definition_cache_bytes: u64,
    /// How long a finished run is kept.
    #[serde(with = "serde_human")]
    pub retention: Duration,
    /// How long a run stays listed in `ListRuns` indexes (runs expire on their own by `retention`).
    #[serde(with = "serde_human")]
    pub index_retention: Duration,
    /// Kind of the per-handler queues.
    pub queue_type: QueueType,
    /// Deliveries of one step task before it goes to the dead-letter queue (quorum queues).
    pub delivery_limit: u32,
    /// How often the timer and outbox loops look for due entries.
    #[serde(with = "serde_human")]
    pub timer_poll_interval: Duration,
    /// How long a claim on due timers, unconfirmed dispatches or due schedules lasts without being
    /// renewed (1 s to 10 min). The claiming coordinator renews it every quarter of this while it
    /// works, so this is how long a dead coordinator's claimed work waits before another takes it
    /// over; shorter means faster failover but more renewals, and a coordinator stalled longer than
    /// this (a long GC-free pause, a Redis stall) may see its work handled a second time, which the
    /// attempt fencing and tick run ids make harmless.
    #[serde(with = "serde_human")]
    pub timer_lease: Duration,
    /// How long after a dispatch commit an unconfirmed publish is re-sent by the sweeper.
    #[serde(with = "serde_human")]
    pub dispatch_grace: Duration,
    /// How long one publish (and its confirm) may take before it counts as failed.
    #[serde(with = "serde_human")]
    pub publish_timeout: Duration,
    /// Approximate number of events kept per run for `WatchRun`.
    pub events_max_len: u64,
    /// Most `WatchRun` streams (gRPC and the HTTP API's event streams) open at once on this
    /// coordinator; past it a new one is refused with `RESOURCE_EXHAUSTED` (HTTP 429).
    pub max_watch_streams: usize,
    /// Most watch streams one caller may hold open at once on this coordinator: per token
    /// identity (its user, else its name), or with auth off per client IP address over gRPC.
    pub max_watch_streams_per_identity: usize,
    /// Largest step output, run input or event payload accepted, in bytes.
    pub max_payload_bytes: usize,
    /// How long an event that no step waited for is kept for the first step that waits for it.
    #[serde(with = "serde_human")]
    pub event_ttl: Duration,
    /// The most events kept per event name and key while no step waits (the oldest are dropped).
    pub event_buffer_max: usize,
    /// How often the health probe pings Redis and checks the RabbitMQ connection; health answers
    /// NOT_SERVING from the first failed probe until one succeeds again.
    #[serde(with = "serde_human")]
    pub health_probe_interval: Duration,
    /// Address (`host:port`) of the Prometheus `/metrics` endpoint, e.g. `0.0.0.0:9464`; empty
    /// (the default) serves no metrics. See docs/operations.md, "Metrics".
    pub metrics_addr: String,
    /// Address (`host:port`) of the HTTP JSON API and the web console, e.g. `127.0.0.1:8080`;
    /// empty (the default) serves no HTTP: a coordinator opens no port it was not asked to, as
    /// with `metrics_addr`. The same tokens and roles as gRPC apply. Plain HTTP (no TLS even when
    /// `tls_cert` is set): terminate TLS in a proxy in front of it. See `docs/http-api.md`.
    pub http_addr: String,
    /// Schedule-to-start timeout of the steps whose definition sets none: how long a dispatched
    /// attempt may wait in its queue for a worker to start it before it fails with
    /// `ScheduleToStartTimeout` (and is retried per its policy). `0s` (the default): no limit.
    /// At most 3650 days.
    #[serde(with = "serde_human")]
    pub default_schedule_to_start: Duration,
    /// How long a worker that stopped calling `RegisterWorker` (lost or stopped) stays listed by
    /// `ListWorkers`. A live worker is one seen within 3 of its heartbeat intervals.
    #[serde(with = "serde_human")]
    pub worker_retention: Duration,
    /// File of hashed bearer tokens with their roles (TOML `[[tokens]]`, or YAML/JSON
    /// `{tokens: [...]}`; entries `name`, `role`, `sha256`, optional `user`); see
    /// [`crate::auth`]. Auth is on when this or `auth_tokens` holds any token.
    pub auth_tokens_file: Option<PathBuf>,
    /// Bearer tokens in plaintext, for development and tests (`BATON_AUTH_TOKENS`):
    /// comma-separated `role:user:token` (`user` may be empty). Prefer `auth_tokens_file`.
    pub auth_tokens: Secret,
    /// PEM certificate (chain) of the gRPC server; with `tls_key`, the server speaks TLS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) that client certificates must chain to: set, every client must
    /// present a certificate (mutual TLS). Needs `tls_cert`.
    pub tls_client_ca: Option<PathBuf>,
    /// How long an HTTP client has to send a complete request head (request line and headers),
    /// counted from the connection's start or the end of the previous answer; so it is also how
    /// long an idle keep-alive connection stays open. Past it the connection is closed. 1 s to 10 min.
    #[serde(with = "serde_human")]
    pub http_header_read_timeout: Duration,
    /// An HTTP connection on which no byte was read or written for this long is closed (a client
    /// that stopped reading an answer, a stalled request body). Keep it above the event stream's
    /// 15 s keep-alive. 1 s to 1 day.
    #[serde(with = "serde_human")]
    pub http_idle_timeout: Duration,
    /// Most HTTP connections open at once; a connection over it is closed at once (counted in
    /// `baton_connections_refused_total{listener="http"}`). Lowered at start so that both caps fit
    /// the open-file limit (docs/limits.md).
    pub http_max_connections: usize,
    /// Origins (`scheme://host:port`) whose pages may call the HTTP API, besides the console's own
    /// (`http://<http_addr>` and its loopback equivalents `localhost`, `127.0.0.1`, `[::1]` on the
    /// same port). A request whose `Origin` header is another is refused with 403. A list in the
    /// file, comma-separated in `BATON_HTTP_ALLOWED_ORIGINS`.
    #[serde(deserialize_with = "list_or_text")]
    pub http_allowed_origins: Vec<String>,
    /// How often the gRPC server pings each connection (HTTP/2 PING); a peer that does not answer
    /// within this or 20 s, whichever is shorter, is disconnected. 1 s to 1 hour.
    #[serde(with = "serde_human")]
    pub grpc_keepalive_interval: Duration,
    /// A gRPC connection on which nothing was read or written for this long is closed (a client
    /// that connected and went silent; live clients answer the keep-alive pings). Longer than
    /// `grpc_keepalive_interval` plus its ping timeout (see there); at most 1 day.
    #[serde(with = "serde_human")]
    pub grpc_idle_timeout: Duration,
    /// Most gRPC connections open at once; a connection over it is closed at once (counted in
    /// `baton_connections_refused_total{listener="grpc"}`). Lowered at start so that both caps fit
    /// the open-file limit (docs/limits.md).
    pub grpc_max_connections: usize,
    /// Bearer token that `/metrics` requires (`Authorization: Bearer <token>`); empty (the
    /// default): no token, keep `metrics_addr` on a private address then (docs/security.md).
    pub metrics_token: Secret,
    /// PostgreSQL URL of the archive of finished runs (`postgres://user:password@host:5432/db`;
    /// `?sslmode=require` for TLS). Empty (the default): no archive, finished runs stay in Redis
    /// for `retention` as without it. See docs/search.md.
    pub archive_url: Secret,
    /// The PostgreSQL schema of the archive's tables: 1 to 63 of `a-z 0-9 _`, not starting with a
    /// digit or `pg_`; created when missing.
    pub archive_schema: String,
    /// How long the archive keeps a run after it finished; whole UTC days are dropped, so a run
    /// stays between this and a day more. 1 day to 3650 days.
    #[serde(with = "serde_human")]
    pub archive_retention: Duration,
    /// How long Redis keeps a run's tombstone after the run is archived. At most 7 days.
    #[serde(with = "serde_human")]
    pub archive_grace: Duration,
    /// Most runs written to the archive in one transaction. 1 to 10,000.
    pub archive_batch: usize,
    /// Most entries of Redis's run index one ListRuns call reads (runs, their summaries): a page
    /// that reaches it ends early with a `next_page_token` that goes on from there, and its
    /// `status_counts` cover only these entries (the answer is then `partial`). 10 to 1,000,000.
    pub list_scan_entries: usize,
    /// Health answers NOT_SERVING while the run waiting longest in the archive outbox finished
    /// more than this long ago (the archive is down or cannot keep up, and Redis grows with
    /// finished runs). 1 s to 7 days; default 10 minutes.
    #[serde(with = "serde_human")]
    pub archive_max_backlog_age: Duration,
    /// How long one batch write to the archive may wait for PostgreSQL before it is given up (its
    /// connection closed, the runs left queued and tried again): a PostgreSQL whose host died
    /// answers nothing, and without this the archiver would wait for ever. 1 s to 1 hour; default
    /// 2 minutes.
    #[serde(with = "serde_human")]
    pub archive_write_timeout: Duration,
    /// How long one read of the archive (GetRun of an archived run, a ListRuns page or its
    /// counts, the human task list) may wait for PostgreSQL before it is given up: ListRuns then
    /// answers the runs in Redis, said `partial`; the others answer UNAVAILABLE. 100 ms to
    /// 5 minutes; default 2 s.
    #[serde(with = "serde_human")]
    pub archive_read_timeout: Duration,
    /// What a run transition's commit waits for before it counts: `primary` (the default: the
    /// Redis primary has it; a failover can lose the last ones) or `replicated` (also
    /// `durability_replicas` replicas, by `WAIT` in the commit's round trip). See
    /// docs/guarantees.md.
    pub durability: Durability,
    /// With `durability = "replicated"`: the replicas a commit waits for. 1 to 16.
    pub durability_replicas: u32,
    /// With `durability = "replicated"`: the longest wait for them; a commit they do not all
    /// have by then answers UNAVAILABLE (it stands on the primary; the caller tries again).
    /// 10ms to 60s.
    #[serde(with = "serde_human")]
    pub durability_timeout: Duration,
}

/// The `durability` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// A commit counts once the Redis primary has it.
    Primary,
    /// A commit counts once `durability_replicas` replicas have it too.
    Replicated,
}

/// The range of `list_scan_entries`.
pub const LIST_SCAN_ENTRIES: std::ops::RangeInclusive<usize> = 10..=1_000_000;

/// Longest wait of the gRPC server for the answer to its keep-alive ping before it disconnects
/// (shorter when `grpc_keepalive_interval` is: see [`CoordinatorConfig::grpc_keepalive_timeout`]).
pub const GRPC_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A list from a file (`["a", "b"]`) or from a variable (`"a, b"`).
fn list_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<String>),
        Text(String),
    }
    Ok(match ListOrText::deserialize(d)? {
        ListOrText::List(l) => l,
        ListOrText::Text(t) => t
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 7450)),
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_tls_ca: None,
            redis_tls_cert: None,
            redis_tls_key: None,
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            namespace: "baton".into(),
            definitions_dir: None,
            definition_cache_bytes: 64 * 1024 * 1024,
            retention: Duration::from_secs(7 * 24 * 3600),
            index_retention: Duration::from_secs(30 * 24 * 3600),
            queue_type: QueueType::Quorum,
            delivery_limit: 5,
            timer_poll_interval: Duration::from_millis(100),
            timer_lease: Duration::from_secs(3),
            dispatch_grace: Duration::from_secs(15),
            publish_timeout: Duration::from_secs(10),
            events_max_len: 10_000,
            max_watch_streams: 10_000,
            max_watch_streams_per_identity: 1_000,
            max_payload_bytes: 4 * 1024 * 1024,
            event_ttl: Duration::from_secs(24 * 3600),
            event_buffer_max: 100,
            health_probe_interval: Duration::from_secs(1),
            metrics_addr: String::new(),
            http_addr: String::new(),
            default_schedule_to_start: Duration::ZERO,
            worker_retention: Duration::from_secs(3600),
            auth_tokens_file: None,
            auth_tokens: Secret::default(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            http_header_read_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(60),
            http_max_connections: 1_024,
            http_allowed_origins: Vec::new(),
            grpc_keepalive_interval: Duration::from_secs(30),
            grpc_idle_timeout: Duration::from_secs(120),
            grpc_max_connections: 4_096,
            metrics_token: Secret::default(),
            archive_url: Secret::default(),
            archive_schema: "baton".into(),
            archive_retention: Duration::from_secs(30 * 86_400),
            archive_grace: Duration::from_secs(300),
            archive_batch: 500,
            list_scan_entries: 10_000,
            archive_max_backlog_age: crate::archiver::DEFAULT_MAX_BACKLOG_AGE,
            archive_write_timeout: Duration::from_secs(120),
            archive_read_timeout: Duration::from_secs(2),
            durability: Durability::Primary,
            durability_replicas: 1,
            durability_timeout: Duration::from_secs(2),
        }
    }
}

/// Most bytes of a `namespace`.
pub const MAX_NAMESPACE_BYTES: usize = 100;

/// Checks `namespace`: 1 to [`MAX_NAMESPACE_BYTES`] bytes of ASCII letters, digits, `.`, `_` and
/// `-`. It is the hash tag of every Redis key (`{<namespace>}:...`, so no braces) and the prefix
/// of the layout-3 keys the migration finds with `SCAN MATCH <namespace>:*` (so no `:`, which
/// would let one namespace's pattern take another's keys).
///
/// # Errors
/// [`ConfigError::Invalid`] naming `namespace`.
pub fn check_namespace(namespace: &str) -> Result<(), ConfigError> {
    let bad = |reason: String| ConfigError::Invalid {
        key: "namespace".into(),
        reason,
    };
    if namespace.is_empty() || namespace.len() > MAX_NAMESPACE_BYTES {
        return Err(bad(format!("must be 1 to {MAX_NAMESPACE_BYTES} bytes")));
    }
    if let Some(c) = namespace
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(bad(format!(
            "{} holds {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed",
            baton_shared::limits::echo(namespace)
        )));
    }
    Ok(())
}

/// The keys a config file or `BATON_*` variable may set.
const KNOWN_KEYS: &[&str] = &[
    "listen",
    "redis_url",
    "redis_tls_ca",
    "redis_tls_cert",
    "redis_tls_key",
    "amqp_url",
    "namespace",
    "definitions_dir",
    "definition_cache_bytes",
    "retention",
    "index_retention",
    "queue_type",
    "delivery_limit",
    "timer_poll_interval",
    "timer_lease",
    "dispatch_grace",
    "publish_timeout",
    "events_max_len",
    "max_watch_streams",
    "max_watch_streams_per_identity",
    "max_payload_bytes",
    "event_ttl",
    "event_buffer_max",
    "health_probe_interval",
    "metrics_addr",
    "http_addr",
    "default_schedule_to_start",
    "worker_retention",
    "auth_tokens_file",
    "auth_tokens",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "http_header_read_timeout",
    "http_idle_timeout",
    "http_max_connections",
    "http_allowed_origins",
    "grpc_keepalive_interval",
    "grpc_idle_timeout",
    "grpc_max_connections",
    "metrics_token",
    "archive_url",
    "archive_schema",
    "archive_retention",
    "archive_grace",
    "archive_batch",
    "list_scan_entries",
    "archive_max_backlog_age",
    "archive_write_timeout",
    "archive_read_timeout",
    "durability",
    "durability_replicas",
    "durability_timeout",
];

/// The settings whose value is one of a fixed set of words, with those words: a wrong value is
/// refused with the list (`queue_type: unknown value "quorom", expected one of: quorum, classic`).
const ENUM_SETTINGS: &[(&str, &[&str])] = &[
    ("queue_type", &["quorum", "classic"]),
    ("durability", &["primary", "replicated"]),
];

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, or a value has the wrong type.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// An enum setting has a value outside its set of words.
    #[error("configuration: {key}: unknown value {value}, expected one of: {expected}")]
    UnknownValue {
        /// The setting.
        key: String,
        /// The value given, quoted and cut to a few hundred bytes.
        value: String,
        /// The words it may take, comma-separated.
        expected: String,
    },
    /// A setting's value does not parse.
    #[error("configuration: {key}: {reason}")]
    Invalid {
        /// The setting.
        key: String,
        /// What is wrong, with the value quoted.
        reason: String,
    },
    /// The file names a setting that does not exist (most likely a typo).
    #[error("configuration file {file}: unknown setting `{key}` (known: {known})")]
    UnknownKey {
        /// The file.
        file: String,
        /// The unknown key.
        key: String,
        /// The known keys.
        known: String,
    },
}

impl CoordinatorConfig {
    /// Loads defaults, then `file` (TOML) if given, then `BATON_*` environment variables.
    /// Variables that are not settings (the CLI's `BATON_ADDR`, say) are left alone; unknown keys in
    /// the file are an error.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and key.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(f) = file {
            let only_file = config::Config::builder()
                .add_source(config::File::from(f).format(config::FileFormat::Toml))
                .build()?;
            let map: std::collections::HashMap<String, config::Value> = only_file.try_deserialize()?;
            if let Some(key) = map.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
                return Err(ConfigError::UnknownKey {
                    file: f.display().to_string(),
                    key: key.clone(),
                    known: KNOWN_KEYS.join(", "),
                });
            }
            builder = builder.add_source(config::File::from(f).format(config::FileFormat::Toml));
        }
        let env: std::collections::HashMap<String, String> = std::env::vars()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix("BATON_")?.to_ascii_lowercase();
                KNOWN_KEYS.contains(&key.as_str()).then_some((key, v))
            })
            .collect();
        for (k, v) in env {
            builder = builder.set_override(k, v)?;
        }
        let built = builder.build()?;
        for (key, words) in ENUM_SETTINGS {
            if let Ok(value) = built.get_string(key)
                && !words.contains(&value.as_str())
            {
                return Err(ConfigError::UnknownValue {
                    key: (*key).to_string(),
                    value: baton_shared::limits::echo(&value),
                    expected: words.join(", "),
                });
            }
        }
        let config: Self = built.try_deserialize()?;
        config.metrics_socket()?;
        config.http_socket()?;
        if config.timer_lease < Duration::from_secs(1) || config.timer_lease > Duration::from_secs(600) {
            return Err(ConfigError::Invalid {
                key: "timer_lease".into(),
                reason: format!(
                    "{} is outside 1s to 10m",
                    baton_shared::duration::format(config.timer_lease)
                ),
            });
        }
        config.check_connection_bounds()?;
        if !LIST_SCAN_ENTRIES.contains(&config.list_scan_entries) {
            return Err(ConfigError::Invalid {
                key: "list_scan_entries".into(),
                reason: format!("{} is outside 10 to 1000000", config.list_scan_entries),
            });
        }
        for (key, value, (min, max)) in [
            (
                "archive_max_backlog_age",
                config.archive_max_backlog_age,
                crate::archiver::MAX_BACKLOG_AGE_BOUNDS,
            ),
            (
                "archive_write_timeout",
                config.archive_write_timeout,
                (Duration::from_secs(1), Duration::from_secs(3_600)),
            ),
            (
                "archive_read_timeout",
                config.archive_read_timeout,
                (Duration::from_millis(100), Duration::from_secs(300)),
            ),
        ] {
            if value < min || value > max {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    reason: format!(
                        "{} is outside {} to {}",
                        baton_shared::duration::format(value),
                        baton_shared::duration::format(min),
                        baton_shared::duration::format(max)
                    ),
                });
            }
        }
        config.check_durability()?;
        check_namespace(&config.namespace)?;
        config.check_redis_tls()?;
        if config.redis_url.starts_with("redis+cluster://") || config.redis_url.starts_with("rediss+cluster://") {
            crate::store::cluster::ClusterUrl::parse(&config.redis_url).map_err(|e| ConfigError::Invalid {
                key: "redis_url".into(),
                reason: e.to_string(),
            })?;
        }
        config.archive_settings().check().map_err(|e| match e {
            crate::archive::ArchiveError::Config { key, reason } => ConfigError::Invalid {
                key: key.into(),
                reason,
            },
            other => ConfigError::Invalid {
                key: "archive_url".into(),
                reason: other.to_string(),
            },
        })?;
        Ok(config)
    }

    /// How long the gRPC server waits for the answer to a keep-alive ping:
    /// `grpc_keepalive_interval`, at most [`GRPC_KEEPALIVE_TIMEOUT`].
    pub fn grpc_keepalive_timeout(&self) -> Duration {
        self.grpc_keepalive_interval.min(GRPC_KEEPALIVE_TIMEOUT)
    }

    /// Checks `durability_replicas` and `durability_timeout`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the setting.
    fn check_durability(&self) -> Result<(), ConfigError> {
        if !(1..=16).contains(&self.durability_replicas) {
            return Err(ConfigError::Invalid {
                key: "durability_replicas".into(),
                reason: format!("{} is outside 1 to 16", self.durability_replicas),
            });
        }
        let (min, max) = (Duration::from_millis(10), Duration::from_secs(60));
        if self.durability_timeout < min || self.durability_timeout > max {
            return Err(ConfigError::Invalid {
                key: "durability_timeout".into(),
                reason: format!(
                    "{} is outside 10ms to 60s",
                    baton_shared::duration::format(self.durability_timeout)
                ),
            });
        }
        Ok(())
    }

    /// Checks that the Redis TLS settings go with a TLS `redis_url` and that their files are
    /// readable PEM ([`crate::store::tls::RedisTls::load`]).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the setting.
    fn check_redis_tls(&self) -> Result<(), ConfigError> {
        let set = [
            ("redis_tls_ca", &self.redis_tls_ca),
            ("redis_tls_cert", &self.redis_tls_cert),
            ("redis_tls_key", &self.redis_tls_key),
        ];
        let tls_url = self.redis_url.starts_with("rediss://") || self.redis_url.starts_with("rediss+cluster://");
        if let Some((key, _)) = set.iter().find(|(_, v)| v.is_some())
            && !tls_url
        {
            return Err(ConfigError::Invalid {
                key: (*key).into(),
                reason: "set, but redis_url does not use TLS (rediss:// or rediss+cluster://)".into(),
            });
        }
        crate::store::tls::RedisTls::load(
            self.redis_tls_ca.as_deref(),
            self.redis_tls_cert.as_deref(),
            self.redis_tls_key.as_deref(),
        )
        .map_err(|e| ConfigError::Invalid {
            key: e.setting.into(),
            reason: e.reason,
        })?;
        Ok(())
    }

    /// What commits wait for ([`crate::store::Store::with_durability`]): `None` with
    /// `durability = "primary"`.
    pub fn replicated(&self) -> Option<crate::store::Replicated> {
        (self.durability == Durability::Replicated).then_some(crate::store::Replicated {
            replicas: self.durability_replicas,
            timeout: self.durability_timeout,
        })
    }

    /// Checks the connection timeouts, caps and allowed origins.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the setting.
    fn check_connection_bounds(&self) -> Result<(), ConfigError> {
        let second = Duration::from_secs(1);
        let day = Duration::from_secs(86_400);
        let within = |key: &str, d: Duration, min: Duration, max: Duration| {
            if d < min || d > max {
                Err(ConfigError::Invalid {
                    key: key.into(),
                    reason: format!(
                        "{} is outside {} to {}",
                        baton_shared::duration::format(d),
                        baton_shared::duration::format(min),
                        baton_shared::duration::format(max)
                    ),
                })
            } else {
                Ok(())
            }
        };
        within(
            "http_header_read_timeout",
            self.http_header_read_timeout,
            second,
            Duration::from_secs(600),
        )?;
        within("http_idle_timeout", self.http_idle_timeout, second, day)?;
        within(
            "grpc_keepalive_interval",
            self.grpc_keepalive_interval,
            second,
            Duration::from_secs(3_600),
        )?;
        within(
            "grpc_idle_timeout",
            self.grpc_idle_timeout,
            self.grpc_keepalive_interval
                .saturating_add(self.grpc_keepalive_timeout()),
            day,
        )?;
        for (key, n) in [
            ("http_max_connections", self.http_max_connections),
            ("grpc_max_connections", self.grpc_max_connections),
        ] {
            if n == 0 {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    reason: "must be at least 1".into(),
                });
            }
        }
        for origin in &self.http_allowed_origins {
            let ok = origin.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains(['/', '?', '#', ' '])
            });
            if !ok {
                return Err(ConfigError::Invalid {
                    key: "http_allowed_origins".into(),
                    reason: format!(
                        "{} is not an origin such as https://console.example:8443 (scheme, host and optional port; no path)",
                        baton_shared::limits::echo(origin)
                    ),
                });
            }
        }
        Ok(())
    }

    /// The address of the HTTP API, `None` when `http_addr` is empty (HTTP off).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `http_addr` when it is not a `host:port` socket address.
    pub fn http_socket(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let text = self.http_addr.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|e| ConfigError::Invalid {
            key: "http_addr".into(),
            reason: format!(
                "{} is not an IP address and port such as 127.0.0.1:8080 ({e}); leave it empty to serve no HTTP API",
                baton_shared::limits::echo(text)
            ),
        })
    }

    /// The address of the `/metrics` endpoint, `None` when `metrics_addr` is empty (metrics off).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `metrics_addr` when it is not a `host:port` socket address.
    pub fn metrics_socket(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let text = self.metrics_addr.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|e| ConfigError::Invalid {
            key: "metrics_addr".into(),
            reason: format!(
                "{} is not an IP address and port such as 0.0.0.0:9464 ({e}); leave it empty to serve no metrics",
                baton_shared::limits::echo(text)
            ),
        })
    }

    /// The archive's settings, `None` when `archive_url` is empty (no archive).
    pub fn archive(&self) -> Option<crate::archive::ArchiveConfig> {
        (!self.archive_url.is_empty()).then(|| self.archive_settings())
    }

    /// The archive's settings whether or not `archive_url` is set (for checking them at load).
    fn archive_settings(&self) -> crate::archive::ArchiveConfig {
        crate::archive::ArchiveConfig {
            url: if self.archive_url.is_empty() {
                "unset".into()
            } else {
                self.archive_url.expose().trim().to_string()
            },
            schema: self.archive_schema.clone(),
            retention: self.archive_retention,
            grace: self.archive_grace,
            batch: self.archive_batch,
            read_timeout: self.archive_read_timeout,
        }
    }

    /// The RabbitMQ topology these settings describe.
    pub fn topology(&self) -> Topology {
        Topology {
            namespace: self.namespace.clone(),
            queue_type: self.queue_type,
            delivery_limit: self.delivery_limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn reads_a_file_over_the_defaults() {
        let f = file("namespace = \"prod\"\nretention = \"2d\"\ndelivery_limit = 9\nqueue_type = \"classic\"\n");
        let c = CoordinatorConfig::load(Some(f.path())).unwrap();
        assert_eq!(c.namespace, "prod");
        assert_eq!(c.retention, Duration::from_secs(2 * 24 * 3600));
        assert_eq!(c.delivery_limit, 9);
        assert_eq!(c.queue_type, QueueType::Classic);
        assert_eq!(c.redis_url, CoordinatorConfig::default().redis_url);
    }

    #[test]
    fn redis_tls_settings_need_a_tls_url_and_readable_pem_files() {
        let f = file("redis_tls_ca = \"/nonexistent/ca.pem\"\n");
        let e = CoordinatorConfig::load(Some(f.path())).unwrap_err().to_string();
        assert!(e.contains("redis_tls_ca: set, but redis_url does not use TLS"), "{e}");
        let f = file("redis_url = \"rediss+cluster://a:1\"\nredis_tls_ca = \"/nonexistent/ca.pem\"\n");
        let e = CoordinatorConfig::load(Some(f.path())).unwrap_err().to_string();
        assert!(
            e.contains("configuration: redis_tls_ca: cannot read /nonexistent/ca.pem"),
            "{e}"
        );
        let f = file("redis_url = \"rediss://a:1\"\nredis_tls_key = \"/nonexistent/k.pem\"\n");
        let e = CoordinatorConfig::load(Some(f.path())).unwrap_err().to_string();
        assert!(e.contains("redis_tls_key: set, but redis_tls_cert is not"), "{e}");
        let f = file("redis_url = \"rediss+cluster://a:1,b:2\"\n");
        assert!(CoordinatorConfig::load(Some(f.path())).is_ok());
    }

    #[test]
    fn a_namespace_that_cannot_be_a_hash_tag_and_a_bad_cluster_url_are_refused_naming_the_setting() {
        for bad in [
            "",
            "a{b",
            "a}b",
            "a:b",
            "a*b",
            "a b",
            &"n".repeat(MAX_NAMESPACE_BYTES + 1),
        ] {
            let f = file(&format!("namespace = {bad:?}\n"));
            let e = CoordinatorConfig::load(Some(f.path())).unwrap_err().to_string();
            assert!(e.contains("namespace"), "{bad:?}: {e}");
        }
        for good in ["baton", "t-cluster-core-1a2b3c4d", "prod.eu_1"] {
            let f = file(&format!("namespace = {good:?}\n"));
            assert!(CoordinatorConfig::load(Some(f.path())).is_ok(), "{good}");
        }
        for bad in ["redis+cluster://", "redis+cluster://a:0", "rediss+cluster://a"] {
            let f = file(&format!("redis_url = {bad:?}\n"));
            let e = CoordinatorConfig::load(Some(f.path())).unwrap_err().to_string();
            assert!(e.contains("redis_url"), "{bad:?}: {e}");
        }
        let f = file("redis_url = \"redis+cluster://10.0.0.1:7000,10.0.0.2:7000\"\n");
        assert!(CoordinatorConfig::load(Some(f.path())).is_ok());
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error_naming_it() {
        let f = file("retension = \"2d\"\n");
        let e = CoordinatorConfig::load(Some(f.path())).unwrap_err().to_string();
        assert!(e.contains("retension") && e.contains("unknown setting"), "{e}");
    }

    #[test]
    fn an_unknown_enum_value_lists_the_valid_ones() {
        let f = file("queue_type = \"quorom\"\n");
        let e = CoordinatorConfig::load(Some(f.path())).unwrap_err().to_string();
        assert!(
            e.contains("queue_type: unknown value \"quorom\", expected one of: quorum, classic"),
            "{e}"
        );
    }

    #[test]
    fn every_enum_setting_lists_words_that_parse() {
        for (key, words) in ENUM_SETTINGS {
            for w in *words {
                let f = file(&format!("{key} = \"{w}\"\n"));
                assert!(CoordinatorConfig::load(Some(f.path())).is_ok(), "{key} = {w}");
            }
        }
    }

    #[test]
    fn the_shipped_file_lists_every_setting_with_its_default() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/coordinator.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        for key in KNOWN_KEYS {
            assert!(text.contains(&format!("{key} =")), "{key} is not in {}", path.display());
        }
        let c = CoordinatorConfig::load(Some(&path)).unwrap();
        let d = CoordinatorConfig::default();
        assert_eq!(c.health_probe_interval, d.health_probe_interval);
        assert_eq!(c.max_payload_bytes, d.max_payload_bytes);
    }

    #[test]
    fn an_invalid_metrics_addr_is_an_error_naming_the_field() {
        let f = file("metrics_addr = \"localhost\"\n");
        let e = CoordinatorConfig::load(Some(f.path())).unwrap_err().to_string();
        assert!(e.contains("metrics_addr") && e.contains("\"localhost\""), "{e}");
        let off = file("metrics_addr = \"\"\n");
        assert_eq!(
            CoordinatorConfig::load(Some(off.path()))
                .unwrap()
                .metrics_socket()
                .unwrap(),
            None
        );
        let on = file("metrics_addr = \"127.0.0.1:9464\"\n");
        let c = CoordinatorConfig::load(Some(on.path())).unwrap();
        assert_eq!(
            c.metrics_socket().unwrap(),
            Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
    }

    #[test]
    fn durability_is_primary_by_default_and_its_bounds_name_the_key() {
        let d = CoordinatorConfig::default();
        assert_eq!(d.durability, Durability::Primary);
        assert_eq!(d.replicated(), None);
        let on = file("durability = \"replicated\"\ndurability_replicas = 2\ndurability_timeout = \"250ms\"\n");
        let c = CoordinatorConfig::load(Some(on.path())).unwrap();
        assert_eq!(
            c.replicated(),
            Some(crate::store::Replicated {
                replicas: 2,
                timeout: Duration::from_millis(250)
            })
        );
        for (text, key) in [
            ("durability_replicas = 0\n", "durability_replicas"),
            ("durability_replicas = 17\n", "durability_replicas"),
            ("durability_timeout = \"5ms\"\n", "durability_timeout"),
            ("durability_timeout = \"2m\"\n", "durability_timeout"),
            ("durability = \"sync\"\n", "durability"),
        ] {
            let e = CoordinatorConfig::load(Some(file(text).path()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn the_archive_is_off_by_default_and_its_bounds_name_the_key() {
        let c = CoordinatorConfig::load(Some(file("").path())).unwrap();
        assert!(c.archive().is_none());
        let on = file("archive_url = \"postgres://postgres@127.0.0.1/test\"\narchive_schema = \"hist\"\n");
        let a = CoordinatorConfig::load(Some(on.path())).unwrap().archive().unwrap();
        assert_eq!((a.schema.as_str(), a.batch), ("hist", 500));
        assert_eq!(a.retention, Duration::from_secs(30 * 86_400));
        for (text, key) in [
            ("archive_schema = \"Bad-Name\"\n", "archive_schema"),
            ("archive_batch = 0\n", "archive_batch"),
            ("list_scan_entries = 9\n", "list_scan_entries"),
            ("list_scan_entries = 1000001\n", "list_scan_entries"),
            ("archive_retention = \"1h\"\n", "archive_retention"),
            ("archive_grace = \"30days\"\n", "archive_grace"),
            ("archive_max_backlog_age = \"0s\"\n", "archive_max_backlog_age"),
            ("archive_max_backlog_age = \"8days\"\n", "archive_max_backlog_age"),
            ("archive_write_timeout = \"500ms\"\n", "archive_write_timeout"),
            ("archive_write_timeout = \"2h\"\n", "archive_write_timeout"),
            ("archive_read_timeout = \"50ms\"\n", "archive_read_timeout"),
            ("archive_read_timeout = \"6m\"\n", "archive_read_timeout"),
        ] {
            let e = CoordinatorConfig::load(Some(file(text).path()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn a_bad_duration_names_the_problem() {
        let f = file("retention = \"a while\"\n");
        let e = CoordinatorConfig::load(Some(f.path())).unwrap_err().to_string();
        assert!(e.contains("a while"), "{e}");
    }
}
