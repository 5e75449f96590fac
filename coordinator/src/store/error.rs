//! The store's error type: what went wrong talking to Redis, with the `redis` crate's error kept
//! inside the store. [`crate::error::CoordinatorError::Redis`] wraps it (`UNAVAILABLE`).

/// Redis failed, could not be reached, or answered something the client could not read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(#[from] redis::RedisError);

impl From<redis::RedisError> for crate::error::CoordinatorError {
    fn from(e: redis::RedisError) -> Self {
        Self::Redis(StoreError(e))
    }
}
