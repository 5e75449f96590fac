//! `baton bench --floor`: what one step costs without Baton's logic, on the same servers. One step
//! of Baton needs at least a Redis script (the commit), a confirmed publish (the dispatch), a
//! consume and an ack (the worker's delivery) and a gRPC call (the worker's report); the floor
//! does exactly these, one after the other, with nothing in between:
//!
//! 1. one `EVALSHA` of a four-line script that writes one field of one hash;
//! 2. one persistent, mandatory publish of a 200-byte message to a durable quorum queue (Baton's
//!    default queue type), and its publisher confirm;
//! 3. the consume of that message on another connection (as a worker's) and its ack, while the
//!    confirm is awaited (the broker delivers before the fsync the confirm waits for; a step's
//!    worker does not wait for the coordinator's confirm either); the step goes on when both are in;
//! 4. one unary gRPC call to the coordinator (the health check, which does no work).
//!
//! The floor's Redis hash and queue are its own (`baton-bench-floor-<id>`), removed at the end; if
//! the bench dies first, the queue expires after 10 minutes unused and the hash after 10 minutes.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use baton_shared::credentials::AuthChannel;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, Consumer,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
        QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, LongString},
};
use tokio_stream::StreamExt as _;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// The floor's commit: one field written, one number answered (no logic).
const SCRIPT: &str = r"-- KEYS[1]: the floor's hash. ARGV[1]: the step number.
-- Returns: how many steps were written. Invariant: none; it only costs what one EVALSHA costs.
redis.call('HSET', KEYS[1], 'step', ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'steps', 1)";

/// Bytes of the message published per step (a small `StepTask` is about this size).
const MESSAGE_BYTES: usize = 200;

/// Longest wait for any one operation of the floor before the bench gives up (a publish can hang
/// while a broker shuts down).
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the floor's queue and hash outlive a bench that died before removing them.
const LEFTOVER_TTL: Duration = Duration::from_secs(600);

/// One repetition of the floor: milliseconds per step, in all and per operation (means over the
/// repetition's steps).
#[derive(Debug, Clone, Copy, Default)]
pub struct FloorSample {
    /// The four operations of one step, one after the other.
    pub step_ms: f64,
    /// The `EVALSHA`.
    pub evalsha_ms: f64,
    /// From the publish until its confirm.
    pub publish_ms: f64,
    /// From the publish until the message is consumed and acked (alongside the confirm).
    pub consume_ack_ms: f64,
    /// The unary gRPC call.
    pub grpc_ms: f64,
}

/// The floor's connections: Redis, a publishing and a consuming RabbitMQ connection, the
/// coordinator's gRPC channel.
pub struct Floor {
    redis: redis::aio::MultiplexedConnection,
    script: redis::Script,
    key: String,
    queue: String,
    publisher: Connection,
    publish: Channel,
    worker: Connection,
    // Kept open for the consumer's sake.
    _consume: Channel,
    consumer: Consumer,
    health: HealthClient<AuthChannel>,
}

impl Floor {
    /// Connects to Redis at `redis_url` and RabbitMQ at `amqp_url` (the coordinator's servers) and
    /// declares the floor's queue `baton-bench-floor-<id>`; `health` reaches the coordinator.
    ///
    /// # Errors
    /// A server that cannot be reached (the error names `--redis-url` or `--amqp-url`), or a
    /// refused declaration.
    pub async fn connect(redis_url: &str, amqp_url: &str, health: HealthClient<AuthChannel>, id: &str) -> Result<Self> {
        let name = format!("baton-bench-floor-{id}");
        let shown = baton_shared::credentials::without_password(redis_url);
        let client = redis::Client::open(redis_url).with_context(|| format!("--redis-url {shown:?}"))?;
        let mut redis = within("connecting to Redis", client.get_multiplexed_async_connection())
            .await?
            .with_context(|| format!("cannot connect to Redis at {shown} (--redis-url, BATON_REDIS_URL)"))?;
        let script = redis::Script::new(SCRIPT);
        let ttl = i64::try_from(LEFTOVER_TTL.as_secs()).unwrap_or(i64::MAX);
        let _: () = redis::pipe()
            .hset(&name, "step", 0)
            .ignore()
            .expire(&name, ttl)
            .ignore()
            .query_async(&mut redis)
            .await
            .context("preparing the floor's Redis hash")?;
        let amqp = |what: &'static str| {
            let url = amqp_url.to_owned();
            async move {
                within(what, baton_shared::amqp::connect(&url, "baton bench --floor"))
                    .await?
                    .with_context(|| {
                        format!(
                            "cannot connect to RabbitMQ at {} (--amqp-url, BATON_AMQP_URL)",
                            baton_shared::credentials::without_password(&url)
                        )
                    })
            }
        };
        let publisher = amqp("connecting to RabbitMQ").await?;
        let worker = amqp("connecting to RabbitMQ").await?;
        let publish = publisher.create_channel().await?;
        publish.confirm_select(ConfirmSelectOptions::default()).await?;
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
        args.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(i64::try_from(LEFTOVER_TTL.as_millis()).unwrap_or(i64::MAX)),
        );
        publish
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await
            .with_context(|| format!("declaring the floor's queue {name}"))?;
        let consume = worker.create_channel().await?;
        consume.basic_qos(1, BasicQosOptions::default()).await?;
        let consumer = consume
            .basic_consume(
                name.as_str().into(),
                "baton-bench-floor".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Self {
            redis,
            script,
            key: name.clone(),
            queue: name,
            publisher,
            publish,
            worker,
            _consume: consume,
            consumer,
            health,
        })
    }

    /// `steps` floor steps, one after the other; answers the means per step.
    ///
    /// # Errors
    /// A failed or timed-out operation (named), a publish that is not acknowledged or comes back
    /// unroutable, or a consumer that closes.
    pub async fn measure(&mut self, steps: u32) -> Result<FloorSample> {
        let body = vec![b'x'; MESSAGE_BYTES];
        let mut total = FloorSample::default();
        let started = Instant::now();
        for step in 0..steps {
            let t0 = Instant::now();
            let _: i64 = within(
                "the EVALSHA",
                self.script.key(&self.key).arg(step).invoke_async(&mut self.redis),
            )
            .await?
            .context("the floor's EVALSHA")?;
            let t1 = Instant::now();
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/x-protobuf".into());
            let confirm = within(
                "the publish",
                self.publish.basic_publish(
                    "".into(),
                    self.queue.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &body,
                    props,
                ),
            )
            .await?
            .context("the floor's publish")?;
            // The confirm and the consume + ack, side by side: the broker hands the message to its
            // consumer without waiting for the fsync that the confirm waits for, as in a step.
            let confirmed = async {
                let c = within("the publisher confirm", confirm)
                    .await?
                    .context("the floor's confirm")?;
                Ok::<_, anyhow::Error>((c, Instant::now()))
            };
            let consumer = &mut self.consumer;
            let consumed = async move {
                let delivery = match within("the consume", consumer.next()).await? {
                    Some(d) => d.context("the floor's consume")?,
                    None => bail!("the floor's consumer was closed by the broker"),
                };
                within("the ack", delivery.ack(BasicAckOptions::default()))
                    .await?
                    .context("the floor's ack")?;
                Ok(Instant::now())
            };
            let (confirmed, consumed) = tokio::join!(confirmed, consumed);
            let (confirm, t_confirm) = confirmed?;
            let t_consumed = consumed?;
            match confirm {
                Confirmation::Ack(None) => {}
                Confirmation::Ack(Some(returned)) => bail!("the floor's message came back: {}", returned.reply_text),
                other => bail!("the floor's publish was not confirmed: {other:?}"),
            }
            let t3 = Instant::now();
            within(
                "the gRPC call",
                self.health.check(HealthCheckRequest { service: String::new() }),
            )
            .await?
            .context("the floor's gRPC call (the coordinator's health check)")?;
            let t4 = Instant::now();
            total.evalsha_ms += ms(t1 - t0);
            total.publish_ms += ms(t_confirm - t1);
            total.consume_ack_ms += ms(t_consumed - t1);
            total.grpc_ms += ms(t4 - t3);
        }
        let n = f64::from(steps.max(1));
        Ok(FloorSample {
            step_ms: ms(started.elapsed()) / n,
            evalsha_ms: total.evalsha_ms / n,
            publish_ms: total.publish_ms / n,
            consume_ack_ms: total.consume_ack_ms / n,
            grpc_ms: total.grpc_ms / n,
        })
    }

    /// Removes the floor's queue and hash and closes the connections (best effort: what is left
    /// expires after 10 minutes).
    pub async fn close(mut self) {
        let _ = within(
            "removing the floor's queue",
            self.publish
                .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default()),
        )
        .await;
        let _: Result<Result<(), redis::RedisError>> = within(
            "removing the floor's hash",
            redis::cmd("DEL").arg(&self.key).query_async(&mut self.redis),
        )
        .await;
        let _ = within("closing", self.publisher.close(200, "bench done".into())).await;
        let _ = within("closing", self.worker.close(200, "bench done".into())).await;
    }
}

/// `fut` within [`OP_TIMEOUT`], else an error naming `what`.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(OP_TIMEOUT, fut)
        .await
        .with_context(|| format!("{what} took longer than {} s", OP_TIMEOUT.as_secs()))
}

/// A duration in milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}
