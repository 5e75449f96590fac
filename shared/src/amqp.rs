//! The RabbitMQ topology both the coordinator and the workers declare, so either may start first:
//! one durable direct exchange for step tasks, one queue per handler bound by the handler's name,
//! and a dead-letter exchange and queue that take rejected messages and those over the delivery limit.

use lapin::{
    Channel, Connection, ConnectionProperties,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString},
};
use serde::{Deserialize, Serialize};

/// Kind of the per-handler queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// Replicated, with a delivery limit (RabbitMQ's recommendation for durable work).
    #[default]
    Quorum,
    /// Classic mirrored-less queues: no delivery limit, so a poison message is bounded only by the
    /// worker rejecting what it cannot decode.
    Classic,
}

/// Names and arguments of Baton's exchanges and queues under one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// Prefix of every exchange and queue name (e.g. `baton`).
    pub namespace: String,
    /// Kind of the per-handler queues.
    pub queue_type: QueueType,
    /// Deliveries of one message before it goes to the dead-letter queue (quorum queues only).
    pub delivery_limit: u32,
}

impl Topology {
    /// The exchange step tasks are published to, routed by handler name.
    pub fn exchange(&self) -> String {
        format!("{}.steps", self.namespace)
    }

    /// The queue of one handler.
    pub fn queue(&self, handler: &str) -> String {
        format!("{}.step.{handler}", self.namespace)
    }

    /// The dead-letter exchange (fanout).
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.namespace)
    }

    /// The dead-letter queue: malformed messages and those past the delivery limit.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead-letter", self.namespace)
    }

    /// The fanout exchange of control notices to workers (the body is a run id whose running steps
    /// should see cancellation). Each worker binds a queue of its own.
    pub fn control_exchange(&self) -> String {
        format!("{}.control", self.namespace)
    }

    /// Declares the exchanges and the dead-letter queue. Idempotent.
    ///
    /// # Errors
    /// The broker's error, e.g. a `PRECONDITION_FAILED` when a queue exists with other arguments.
    pub async fn declare_base(&self, ch: &Channel) -> lapin::Result<()> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for (name, kind) in [
            (self.exchange(), lapin::ExchangeKind::Direct),
            (self.dead_letter_exchange(), lapin::ExchangeKind::Fanout),
            (self.control_exchange(), lapin::ExchangeKind::Fanout),
        ] {
            ch.exchange_declare(name.as_str().into(), kind, durable, FieldTable::default())
                .await?;
        }
        let mut args = FieldTable::default();
        if self.queue_type == QueueType::Quorum {
            args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
        }
        ch.queue_declare(
            self.dead_letter_queue().as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;
        ch.queue_bind(
            self.dead_letter_queue().as_str().into(),
            self.dead_letter_exchange().as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        Ok(())
    }

    /// Declares the queue of `handler` and binds it. Idempotent.
    ///
    /// # Errors
    /// The broker's error.
    pub async fn declare_handler_queue(&self, ch: &Channel, handler: &str) -> lapin::Result<()> {
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(LongString::from(self.dead_letter_exchange().as_str())),
        );
        if self.queue_type == QueueType::Quorum {
            args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongInt(self.delivery_limit.min(i32::MAX as u32) as i32),
            );
        }
        let queue = self.queue(handler);
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;
        ch.queue_bind(
            queue.as_str().into(),
            self.exchange().as_str().into(),
            handler.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        Ok(())
    }
}

/// Opens a connection to `url` (`amqp://user:pass@host:port/vhost`), named `name` in the management UI.
///
/// # Errors
/// The connection error.
pub async fn connect(url: &str, name: &str) -> lapin::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url, props).await
}
