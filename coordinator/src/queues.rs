//! Reading a handler queue's depth from RabbitMQ: a passive `queue.declare`, which answers the
//! messages *ready* for delivery and the number of consumers without changing the queue.
//!
//! AMQP does not report *unacknowledged* messages (delivered to a worker, not yet acked); only the
//! management HTTP API does. Baton does not depend on the management plugin, so those are not
//! sampled (see docs/operations.md, "Metrics").

use lapin::{Channel, options::QueueDeclareOptions, types::FieldTable};

/// What RabbitMQ said about one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSample {
    /// Messages ready for delivery (not counting those delivered and not yet acknowledged).
    pub ready: u32,
    /// Consumers attached (one per worker channel that consumes the queue).
    pub consumers: u32,
}

/// Samples queue `queue_name` (the full name, `<namespace>.step.<handler>`; see
/// `baton_shared::amqp::Topology::queue`).
///
/// A passive declare of a queue that does not exist closes the channel (404 NOT_FOUND): give
/// this function a channel of its own, not one that publishes.
///
/// # Errors
/// The lapin error: the queue does not exist (the channel is then closed), or the connection broke.
pub async fn sample_queue(channel: &Channel, queue_name: &str) -> lapin::Result<QueueSample> {
    let q = channel
        .queue_declare(
            queue_name.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(QueueSample {
        ready: q.message_count(),
        consumers: q.consumer_count(),
    })
}
