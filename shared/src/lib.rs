//! Baton's shared vocabulary: generated protocol code, workflow definitions and their validation,
//! retry policies, ids, statuses, the Redis key layout and the run filter language. No I/O, except the RabbitMQ topology
//! behind the `amqp` feature.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod credentials;
pub mod definition;
pub mod duration;
pub mod expr;
pub mod ids;
pub mod keys;
pub mod limits;
#[cfg(feature = "process")]
pub mod process;
pub mod query;
pub mod retry;
pub mod schedule;
pub mod status;
#[cfg(feature = "process")]
pub mod telemetry;
pub mod time;

/// Generated protocol code (`baton.v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("baton.v1");
    /// The encoded `FileDescriptorSet` of every Baton proto, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("baton_descriptor");
}
