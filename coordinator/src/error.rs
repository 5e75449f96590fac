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
    /// The authenticated caller may not do this, e.g. complete a task assigned to someone else
    /// (`PERMISSION_DENIED`).
    #[error("{0}")]
    PermissionDenied(String),
    /// The operation does not fit the run's state, e.g. cancelling a finished run (`FAILED_PRECONDITION`).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A bound on what this coordinator serves at once is reached, e.g. open watch streams
    /// (`RESOURCE_EXHAUSTED`; the message names the setting).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The store failed: Redis failed or could not be reached (`UNAVAILABLE`: callers should
    /// retry).
    #[error("redis: {0}")]
    Redis(#[from] crate::store::StoreError),
    /// RabbitMQ failed or could not be reached (`UNAVAILABLE`).
    #[error("rabbitmq: {0}")]
    Amqp(#[from] lapin::Error),
    /// A publish was not confirmed, or timed out (`UNAVAILABLE`).
    #[error("publish failed: {0}")]
    Publish(String),
    /// A bug or corrupt state (`INTERNAL`).
    #[error("internal error: {0}")]
    Internal(String),
    /// The coordinator cannot serve any call now (its Redis is unreachable): answered at once with
    /// `UNAVAILABLE`, so that the caller tries another coordinator instead of waiting.
    #[error("{0}")]
    Unavailable(String),
}

/// Result with [`CoordinatorError`].
pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;

impl CoordinatorError {
    /// Whether trying again later may succeed (infrastructure trouble, not bad input).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Redis(_) | Self::Amqp(_) | Self::Publish(_) | Self::Unavailable(_)
        )
    }
}

impl From<InvalidDefinition> for CoordinatorError {
    fn from(e: InvalidDefinition) -> Self {
        Self::InvalidArgument(e.to_string())
    }
}

/// Longest message a `tonic::Status` from the coordinator carries, in bytes: a safety net under the
/// per-value [`baton_shared::limits::echo`], so that no answer's `grpc-message` header can outgrow
/// what a client accepts (a 1 MiB value echoed whole came back as `RESOURCE_EXHAUSTED`).
pub const MAX_STATUS_MESSAGE_BYTES: usize = baton_shared::limits::MAX_ERROR_MESSAGE_BYTES;

/// The metadata key every error answered by the coordinator itself carries (value
/// `coordinator`), so that a client can tell "the coordinator answered UNAVAILABLE because Redis is
/// down" from "no coordinator could be reached".
pub const SOURCE_METADATA_KEY: &str = "baton-source";

/// `msg` cut at a character boundary to at most [`MAX_STATUS_MESSAGE_BYTES`], ` (cut)` included.
fn bounded(mut msg: String) -> String {
    const TAIL: &str = "… (cut)";
    if msg.len() > MAX_STATUS_MESSAGE_BYTES {
        let mut end = MAX_STATUS_MESSAGE_BYTES - TAIL.len();
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        msg.truncate(end);
        msg.push_str(TAIL);
    }
    msg
}

impl From<CoordinatorError> for tonic::Status {
    fn from(e: CoordinatorError) -> Self {
        let msg = bounded(e.to_string());
        let mut status = match e {
            CoordinatorError::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            CoordinatorError::NotFound(_) => tonic::Status::not_found(msg),
            CoordinatorError::AlreadyExists(_) => tonic::Status::already_exists(msg),
            CoordinatorError::PermissionDenied(_) => tonic::Status::permission_denied(msg),
            CoordinatorError::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            CoordinatorError::ResourceExhausted(_) => tonic::Status::resource_exhausted(msg),
            CoordinatorError::Redis(_)
            | CoordinatorError::Amqp(_)
            | CoordinatorError::Publish(_)
            | CoordinatorError::Unavailable(_) => tonic::Status::unavailable(msg),
            CoordinatorError::Internal(_) => tonic::Status::internal(msg),
        };
        status.metadata_mut().insert(
            SOURCE_METADATA_KEY,
            tonic::metadata::MetadataValue::from_static("coordinator"),
        );
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_and_marked_as_the_coordinators() {
        let status = tonic::Status::from(CoordinatorError::InvalidArgument("é".repeat(10_000)));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().len() <= MAX_STATUS_MESSAGE_BYTES + 16,
            "{}",
            status.message().len()
        );
        assert!(status.message().ends_with("(cut)"));
        let status = tonic::Status::from(CoordinatorError::Publish("timed out".into()));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            status.metadata().get(SOURCE_METADATA_KEY).and_then(|v| v.to_str().ok()),
            Some("coordinator")
        );
    }
}
