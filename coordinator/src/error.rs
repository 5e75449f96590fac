//! The coordinator's one error type, and its one conversion to `tonic::Status`.

use baton_shared::definition::InvalidDefinition;

/// Everything that can go wrong in the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// Bad input from a client: the message names the field (`INVALID_ARGUMENT`).
    #[error("{0}")]
    InvalidArgument(String),
    /// No such workflow, version or run (`NOT_FOUND`).
    #[error("{0}")]
    NotFound(String),
    /// A definition with the same name and version but other content exists (`ALREADY_EXISTS`).
    #[error("{0}")]
    AlreadyExists(String),
    /// The operation does not fit the run's state, e.g. cancelling a finished run (`FAILED_PRECONDITION`).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Redis failed or could not be reached (`UNAVAILABLE`: callers should retry).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// RabbitMQ failed or could not be reached (`UNAVAILABLE`).
    #[error("rabbitmq: {0}")]
    Amqp(#[from] lapin::Error),
    /// A publish was not confirmed, or timed out (`UNAVAILABLE`).
    #[error("publish failed: {0}")]
    Publish(String),
    /// A bug or corrupt state (`INTERNAL`).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result with [`CoordinatorError`].
pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;

impl CoordinatorError {
    /// Whether trying again later may succeed (infrastructure trouble, not bad input).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Redis(_) | Self::Amqp(_) | Self::Publish(_))
    }
}

impl From<InvalidDefinition> for CoordinatorError {
    fn from(e: InvalidDefinition) -> Self {
        Self::InvalidArgument(e.to_string())
    }
}

impl From<CoordinatorError> for tonic::Status {
    fn from(e: CoordinatorError) -> Self {
        let msg = e.to_string();
        match e {
            CoordinatorError::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            CoordinatorError::NotFound(_) => tonic::Status::not_found(msg),
            CoordinatorError::AlreadyExists(_) => tonic::Status::already_exists(msg),
            CoordinatorError::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            CoordinatorError::Redis(_) | CoordinatorError::Amqp(_) | CoordinatorError::Publish(_) => {
                tonic::Status::unavailable(msg)
            }
            CoordinatorError::Internal(_) => tonic::Status::internal(msg),
        }
    }
}
