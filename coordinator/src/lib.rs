//! Baton's coordinator: the gRPC API, run state in Redis, dispatch to RabbitMQ and durable timers.
//!
//! [`serve`] wires it together; every piece is stateless, so any number of coordinators can serve the
//! same Redis and RabbitMQ.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod config;
pub mod dispatch;
pub mod engine;
pub mod error;
pub mod machine;
pub mod registry;
pub mod schedules;
pub mod store;
pub mod timers;
pub mod view;

use std::{future::Future, sync::Arc, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use baton_shared::{keys::Keys, proto};
use tokio::sync::watch;

pub use config::CoordinatorConfig;

use crate::{api::Api, dispatch::Dispatcher, engine::Engine, registry::Registry, store::Store};

/// Connects to Redis and RabbitMQ (retrying for up to a minute while they start), registers the
/// definitions of `definitions_dir`, starts the timer, sweeper and index loops, and serves gRPC until
/// `shutdown` completes; then stops taking calls, lets in-flight ones finish, and closes.
///
/// # Errors
/// A definition file that does not validate; Redis or RabbitMQ unreachable for a minute; the listen
/// address taken.
pub async fn serve(
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_total_delay(Some(Duration::from_secs(60)));
    let keys = Keys::new(config.namespace.clone());
    let store = (|| {
        Store::connect(
            &config.redis_url,
            keys.clone(),
            config.events_max_len,
            config.retention,
            config.dispatch_grace,
        )
    })
    .retry(backoff)
    .notify(|e, d| tracing::warn!(error = %e, "Redis not reachable at {}; retrying in {d:?}", config.redis_url))
    .await?
    .with_max_payload_bytes(config.max_payload_bytes);
    let dispatcher = (|| {
        Dispatcher::connect(
            &config.amqp_url,
            config.topology(),
            config.publish_timeout,
            store.clone(),
        )
    })
    .retry(backoff)
    .notify(|e, d| tracing::warn!(error = %e, "RabbitMQ not reachable; retrying in {d:?}"))
    .await?;
    let engine = Arc::new(Engine {
        registry: Registry::new(store.clone()),
        store,
        dispatcher: dispatcher.clone(),
        config: config.clone(),
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
        for reg in engine.registry.versions(&name).await? {
            engine.dispatcher.ensure_queues(&reg.definition.handlers()).await?;
        }
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let loops = vec![
        tokio::spawn(timers::run(engine.clone(), timers::Loop::Timers, stop_rx.clone())),
        tokio::spawn(timers::run(engine.clone(), timers::Loop::Outbox, stop_rx.clone())),
        tokio::spawn(timers::trim_indexes(engine.clone(), stop_rx.clone())),
        tokio::spawn(schedules::run(engine.clone(), stop_rx.clone())),
    ];

    let api = Api::new(engine.clone());
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<proto::run_service_server::RunServiceServer<Api>>()
        .await;
    health
        .set_serving::<proto::worker_service_server::WorkerServiceServer<Api>>()
        .await;
    health
        .set_serving::<proto::event_service_server::EventServiceServer<Api>>()
        .await;
    health
        .set_serving::<proto::schedule_service_server::ScheduleServiceServer<Api>>()
        .await;
    health
        .set_serving::<proto::human_task_service_server::HumanTaskServiceServer<Api>>()
        .await;
    health
        .set_serving::<proto::workflow_service_server::WorkflowServiceServer<Api>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("listen: cannot bind {}: {e}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, namespace = %config.namespace, "coordinator listening");
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(proto::workflow_service_server::WorkflowServiceServer::new(api.clone()))
        .add_service(proto::run_service_server::RunServiceServer::new(api.clone()))
        .add_service(proto::worker_service_server::WorkerServiceServer::new(api.clone()))
        .add_service(proto::event_service_server::EventServiceServer::new(api.clone()))
        .add_service(proto::human_task_service_server::HumanTaskServiceServer::new(
            api.clone(),
        ))
        .add_service(proto::schedule_service_server::ScheduleServiceServer::new(api))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;

    tracing::info!("shutting down: stopping timers and flushing publishes");
    let _ = stop_tx.send(true);
    for l in loops {
        let _ = l.await;
    }
    dispatcher.close().await;
    tracing::info!("coordinator stopped");
    Ok(())
}

pub use baton_shared::process::shutdown_signal;
