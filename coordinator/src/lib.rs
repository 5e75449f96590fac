//! Baton's coordinator: the gRPC API, run state in Redis, dispatch to RabbitMQ and durable timers.
//!
//! [`serve`] wires it together; every piece is stateless, so any number of coordinators can serve the
//! same Redis and RabbitMQ.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod archive;
pub mod archiver;
pub mod auth;
pub mod config;
pub mod connections;
pub mod console;
pub mod core;
pub mod dispatch;
pub mod edge;
pub mod engine;
pub mod error;
pub mod health;
pub mod http;
pub mod machine;
pub mod metrics;
pub mod operations;
pub mod queues;
pub mod registry;
pub mod reset;
pub mod schedules;
pub mod step_data;
pub mod store;
pub mod supervise;
pub mod timers;
pub mod tls;
pub mod traces;
pub mod view;
pub mod watch_hub;

use std::{future::Future, sync::Arc, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use baton_shared::{keys::Keys, proto};
use tokio::sync::watch;
use tonic::service::Routes;

pub use config::CoordinatorConfig;

use crate::{
    api::Api, dispatch::Dispatcher, edge::Edge, engine::Engine, health::Health, registry::Registry, store::Store,
    supervise::Supervisor,
};

/// Test seams of [`serve_with`]; the default (all off) is production.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// An item of a background loop whose member contains this text panics before it is handled
    /// (the end-to-end tests prove with it that such an item is parked and the loop goes on).
    pub panic_marker: Option<String>,
    /// Every step-task publish waits this long before it is sent (the failover tests stall a
    /// coordinator between commit and publish with it, then kill it or let it finish).
    pub publish_delay: Option<Duration>,
}

/// [`serve_with`] without test seams.
///
/// # Errors
/// As [`serve_with`].
pub async fn serve(
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(config, shutdown, Hooks::default()).await
}

/// Listens first (health NOT_SERVING, every API call UNAVAILABLE "starting up"), then connects to
/// Redis and RabbitMQ (retrying for up to a minute while they start), registers the definitions of
/// `definitions_dir`, declares the handler queues, starts the supervised background loops and the
/// health probe, and opens the API (health SERVING). Serves until `shutdown` completes; then stops
/// taking calls, lets in-flight ones finish, stops the loops, and closes.
///
/// The server decodes requests of up to [`edge::max_message_bytes`]`(max_payload_bytes)` and sets
/// TCP_NODELAY on every accepted connection.
///
/// # Errors
/// The listen address taken; a definition file that does not validate; Redis or RabbitMQ
/// unreachable for a minute at start-up.
pub async fn serve_with(
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    hooks: Hooks,
) -> anyhow::Result<()> {
    if let Some(addr) = config.metrics_socket()? {
        metrics::install(addr, &config.metrics_token)?;
    }
    baton_shared::credentials::install_crypto_provider();
    let tokens = Arc::new(auth::Tokens::load(
        config.auth_tokens_file.as_deref(),
        &config.auth_tokens,
    )?);
    let tls = tls::server_config(&config)?;
    let open_files = connections::raise_open_file_limit();
    let (grpc_cap, http_cap) =
        connections::fit_caps(config.grpc_max_connections, config.http_max_connections, open_files);
    if (grpc_cap, http_cap) != (config.grpc_max_connections, config.http_max_connections) {
        tracing::warn!(
            open_files = ?open_files,
            grpc_max_connections = grpc_cap,
            http_max_connections = http_cap,
            "the connection caps did not fit the open-file limit (with {} descriptors to spare) and were lowered",
            connections::RESERVED_FDS
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("listen: cannot bind {}: {e}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, namespace = %config.namespace, tls = tls.is_some(), "coordinator listening (starting up)");
    // Named on every answer of the HTTP port (`http::advertise_grpc_port`).
    let grpc_port = listener.local_addr()?.port();
    if tokens.is_empty() {
        if !config.listen.ip().is_loopback() {
            tracing::warn!(
                listen = %config.listen,
                "auth is off (no auth_tokens_file or BATON_AUTH_TOKENS) and the coordinator listens on a non-loopback \
                 address: anyone who reaches it can submit, cancel and report; configure tokens (docs/security.md)"
            );
        }
    } else {
        tracing::info!("auth on: {}", auth::describe(config.auth_tokens_file.as_ref(), &tokens));
    }
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health = Health::new(reporter).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let edge = Edge::new(
        Routes::new(health_service).add_service(reflection),
        config.max_payload_bytes,
    )
    .gated_by(health.clone());
    // TCP_NODELAY on every connection (without it, a two-write answer waits for the client's
    // delayed ACK, about 40 ms), the connection cap and the idle timeout.
    let incoming = connections::accept(
        listener,
        connections::Admission::new("grpc", grpc_cap),
        config.grpc_idle_timeout,
    );
    let (down_tx, down_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = down_tx.send(true);
    });
    let http = match config.http_socket()? {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("http_addr: cannot bind {addr}: {e}"))?;
            tracing::info!(addr = %listener.local_addr()?, "HTTP API and web console listening (starting up)");
            if tokens.is_empty() && !addr.ip().is_loopback() {
                tracing::warn!(
                    http_addr = %addr,
                    "auth is off and the HTTP API listens on a non-loopback address: anyone who reaches it can submit, \
                     cancel and complete tasks; configure tokens (docs/security.md)"
                );
            }
            let state = http::HttpState::new(
                tokens.clone(),
                health.clone(),
                config.max_payload_bytes,
                down_rx.clone(),
            );
            let guard = http::guard::Guard::new(listener.local_addr()?, &config.http_allowed_origins);
            let (router, _) = http::router(state.clone(), guard);
            let router = http::advertise_grpc_port(router, grpc_port);
            let bounds = http::ConnectionBounds {
                header_read_timeout: config.http_header_read_timeout,
                idle_timeout: config.http_idle_timeout,
                admission: connections::Admission::new("http", http_cap),
            };
            let server = tokio::spawn(http::serve(listener, router, down_rx.clone(), bounds));
            Some((state, server))
        }
        None => None,
    };
    let mut server = {
        let mut down = down_rx.clone();
        let mut builder = tonic::transport::Server::builder()
            .trace_fn(traces::grpc_span)
            .http2_keepalive_interval(Some(config.grpc_keepalive_interval))
            .http2_keepalive_timeout(Some(config.grpc_keepalive_timeout()));
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        tokio::spawn(builder.serve_with_incoming_shutdown(
            metrics::GrpcMetrics::new(auth::Authorize::new(edge.clone(), tokens.clone())),
            incoming,
            async move {
                let _ = down.wait_for(|d| *d).await;
            },
        ))
    };

    let mut down = down_rx.clone();
    let started = tokio::select! {
        r = start_up(&config) => r,
        _ = async { let _ = down.wait_for(|d| *d).await; } => {
            tracing::info!("shut down during start-up");
            let _ = server.await;
            return Ok(());
        }
        r = &mut server => {
            return match r {
                Ok(r) => r.map_err(anyhow::Error::from),
                Err(e) => Err(anyhow::anyhow!("gRPC server task: {e}")),
            };
        }
    };
    let (engine, archive) = match started {
        Ok(e) => e,
        Err(e) => {
            server.abort();
            if let Some((_, h)) = &http {
                h.abort();
            }
            return Err(e);
        }
    };

    if let Some(delay) = hooks.publish_delay {
        engine.dispatcher.delay_publishes(delay);
    }
    let supervisor = Supervisor::new(health.clone(), hooks.panic_marker);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut loops = vec![
        supervised_timers(&engine, &supervisor, timers::Loop::Timers, &stop_rx),
        supervised_timers(&engine, &supervisor, timers::Loop::Outbox, &stop_rx),
        supervised_timers(&engine, &supervisor, timers::Loop::Effects, &stop_rx),
        {
            let (e, r) = (engine.clone(), stop_rx.clone());
            supervise::spawn("index-trim", health.clone(), stop_rx.clone(), move || {
                timers::trim_indexes(e.clone(), r.clone())
            })
        },
        {
            let (e, s, r) = (engine.clone(), supervisor.clone(), stop_rx.clone());
            supervise::spawn("schedules", health.clone(), stop_rx.clone(), move || {
                schedules::run(e.clone(), s.clone(), r.clone())
            })
        },
        {
            let (e, h, r) = (engine.clone(), health.clone(), stop_rx.clone());
            supervise::spawn("health-probe", health.clone(), stop_rx.clone(), move || {
                health::probe_loop(e.clone(), h.clone(), r.clone())
            })
        },
    ];
    if let Some(archive) = &archive {
        let (a, r) = (archive.clone(), stop_rx.clone());
        loops.push(supervise::spawn(
            "archive-partitions",
            health.clone(),
            stop_rx.clone(),
            move || archive::partitions::run(a.clone(), r.clone()),
        ));
    }
    if let Some(archive) = engine.archive.clone() {
        let (e, r) = (engine.clone(), stop_rx.clone());
        loops.push(supervise::spawn(
            "archiver",
            health.clone(),
            stop_rx.clone(),
            move || archiver::run(e.clone(), archive.clone(), r.clone()),
        ));
    }
    if config.metrics_socket()?.is_some() {
        let (e, r) = (engine.clone(), stop_rx.clone());
        loops.push(supervise::spawn(
            "metrics-sampler",
            health.clone(),
            stop_rx.clone(),
            move || metrics::sample_loop(e.clone(), r.clone()),
        ));
    }

    let api = Api::new(engine.clone()).with_archive(archive.clone());
    let limit = edge::max_message_bytes(config.max_payload_bytes);
    // Answers are not limited beyond tonic's default (none): a run's view holds several payloads
    // (input, outputs), and refusing to show it would make the run unreadable.
    edge.open(
        Routes::new(
            proto::workflow_service_server::WorkflowServiceServer::new(api.clone()).max_decoding_message_size(limit),
        )
        .add_service(proto::run_service_server::RunServiceServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(
            proto::worker_service_server::WorkerServiceServer::new(api.clone()).max_decoding_message_size(limit),
        )
        .add_service(proto::event_service_server::EventServiceServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(
            proto::human_task_service_server::HumanTaskServiceServer::new(api.clone()).max_decoding_message_size(limit),
        )
        .add_service(
            proto::schedule_service_server::ScheduleServiceServer::new(api.clone()).max_decoding_message_size(limit),
        )
        .add_service(
            proto::operations_service_server::OperationsServiceServer::new(api.clone())
                .max_decoding_message_size(limit),
        ),
    );
    if let Some((state, _)) = &http {
        state.open(api);
    }
    health.set_ready().await;
    tracing::info!("coordinator ready");

    let served = server.await;
    if let Some((_, http)) = http {
        match http.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "HTTP server task"),
            Ok(Ok(())) => {}
        }
    }
    tracing::info!("shutting down: stopping timers and flushing publishes");
    let _ = stop_tx.send(true);
    for l in loops {
        let _ = l.await;
    }
    engine.dispatcher.close().await;
    if let Some(archive) = &archive {
        archive.close().await;
    }
    baton_shared::telemetry::flush(Duration::from_secs(3)).await;
    tracing::info!("coordinator stopped");
    match served {
        Ok(r) => r.map_err(anyhow::Error::from),
        Err(e) => Err(anyhow::anyhow!("gRPC server task: {e}")),
    }
}

/// The timer or outbox loop under its supervisor.
fn supervised_timers(
    engine: &Arc<Engine>,
    supervisor: &Arc<Supervisor>,
    which: timers::Loop,
    stop: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let name = match which {
        timers::Loop::Timers => "timers",
        timers::Loop::Outbox => "outbox",
        timers::Loop::Effects => "effects",
    };
    let (e, s, r) = (engine.clone(), supervisor.clone(), stop.clone());
    supervise::spawn(name, supervisor.health.clone(), stop.clone(), move || {
        timers::run(e.clone(), s.clone(), which, r.clone())
    })
}

/// Connects to Redis and RabbitMQ (retrying for up to a minute), registers the definitions of
/// `definitions_dir` and declares every known handler's queue; with `archive_url` set, connects to
/// the archive and migrates it (retrying as well while PostgreSQL is unreachable).
async fn start_up(config: &CoordinatorConfig) -> anyhow::Result<(Arc<Engine>, Option<Arc<archive::Archive>>)> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_total_delay(Some(Duration::from_secs(60)));
    let keys = Keys::new(config.namespace.clone());
    // The archive first: with one, every run that finishes from the first commit on is queued
    // for it (`Store::with_archive`), and the engine reads archived runs from it.
    let archive = match config.archive() {
        Some(cfg) => {
            let archive = (|| archive::Archive::connect(&cfg))
                .retry(backoff)
                .when(archive::ArchiveError::is_transient)
                .notify(
                    |e, d| tracing::warn!(error = %e, "the archive (PostgreSQL) is not reachable; retrying in {d:?}"),
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            tracing::info!(schema = %cfg.schema, "archive connected and migrated");
            Some(Arc::new(archive))
        }
        None => None,
    };
    let redis_tls = store::tls::RedisTls::load(
        config.redis_tls_ca.as_deref(),
        config.redis_tls_cert.as_deref(),
        config.redis_tls_key.as_deref(),
    )?;
    let store = (|| {
        Store::connect_with_tls(
            &config.redis_url,
            &redis_tls,
            keys.clone(),
            config.events_max_len,
            config.retention,
            config.dispatch_grace,
        )
    })
    .retry(backoff)
    // Settings rustls refuses do not pass with time.
    .when(|e| !matches!(e, error::CoordinatorError::InvalidArgument(_)))
    .notify(|e, d| {
        tracing::warn!(error = %e, "Redis not reachable at {}; retrying in {d:?}",
            baton_shared::credentials::without_password(&config.redis_url))
    })
    .await?
    .with_max_payload_bytes(config.max_payload_bytes)
    .with_outbox_hold(config.timer_lease)
    .with_archive(archive.is_some())
    .with_durability(config.replicated())
    .await?;
    if let Some(r) = store.durability() {
        tracing::info!(
            replicas = r.replicas,
            timeout = %baton_shared::duration::format(r.timeout),
            "durability replicated: each commit waits for Redis replicas"
        );
    }
    // A namespace of a layout this version cannot read is refused before anything is written.
    match store.check_layout().await.map_err(|e| anyhow::anyhow!("{e}"))? {
        crate::store::LayoutCheck::Migrated(from) => tracing::info!(
            namespace = %config.namespace,
            from,
            to = crate::store::LAYOUT_VERSION,
            "migrated the namespace's layout; its runs in flight go on"
        ),
        crate::store::LayoutCheck::New | crate::store::LayoutCheck::Current => {}
    }
    let dispatcher = (|| {
        Dispatcher::connect(
            &config.amqp_url,
            config.topology(),
            config.publish_timeout,
            (config.timer_lease, config.dispatch_grace),
            store.clone(),
        )
    })
    .retry(backoff)
    .notify(|e, d| tracing::warn!(error = %e, "RabbitMQ not reachable; retrying in {d:?}"))
    .await?;
    let engine = Arc::new(Engine {
        registry: Registry::new(store.clone(), config.definition_cache_bytes),
        store,
        dispatcher,
        config: config.clone(),
        archive: archive.clone(),
    });

    if let Some(dir) = &config.definitions_dir {
        for def in Registry::read_dir(dir)? {
            let (def, created) = engine
                .register_definition(def)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            tracing::info!(workflow = %def.name, version = def.version, created, "loaded definition from {}", dir.display());
        }
    }
    // Declare every known handler's queue, so tasks published before any worker starts are kept.
    for name in engine.registry.names().await? {
        let handlers: Vec<String> = engine.registry.handlers(&name).await?.into_iter().collect();
        engine.dispatcher.ensure_queues(&handlers).await?;
    }
    Ok((engine, archive))
}

pub use baton_shared::process::shutdown_signal;
