//! Per-step retry policy: how many attempts a step gets and how long to wait between them.
//!
//! The shape follows Temporal's activity retry policy (the one users of this field know) rather than
//! restate's tagged enum, because the workflow-definition format names these fields directly:
//! a fixed delay is `backoff_coefficient: 1.0`, no retry is `max_attempts: 1`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When and whether a failed attempt is tried again.
///
/// The delay before attempt `n + 1` (after attempt `n` failed) is
/// `base(n) = min(initial_interval * backoff_coefficient^(n-1), max_interval)`, reduced by up to
/// `jitter * base(n)` at random, so it always lies in `[base(n) * (1 - jitter), base(n)]`.
///
/// ```
/// use std::time::Duration;
/// use baton_shared::retry::RetryPolicy;
///
/// let policy = RetryPolicy {
///     max_attempts: 4,
///     initial_interval: Duration::from_secs(1),
///     backoff_coefficient: 2.0,
///     max_interval: Duration::from_secs(3),
///     jitter: 0.0,
///     non_retryable_errors: vec![],
/// };
/// let delays: Vec<_> = policy.delays().collect();
/// assert_eq!(delays, [Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(3)]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts including the first; `1` means never retry. At least 1.
    pub max_attempts: u32,
    /// Delay before the first retry.
    #[serde(with = "crate::duration::serde_millis")]
    pub initial_interval: Duration,
    /// Factor by which the delay grows with each retry; at least 1.0.
    pub backoff_coefficient: f64,
    /// Upper bound of any delay.
    #[serde(with = "crate::duration::serde_millis")]
    pub max_interval: Duration,
    /// Fraction in `[0, 1]` of each delay that is taken off at random, to spread retries apart.
    pub jitter: f64,
    /// Error types (as reported by the handler) that fail the step at once.
    pub non_retryable_errors: Vec<String>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_interval: Duration::from_secs(1),
            backoff_coefficient: 2.0,
            max_interval: Duration::from_secs(60),
            jitter: 0.2,
            non_retryable_errors: Vec::new(),
        }
    }
}

/// What happens after an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryDecision {
    /// Try again after this delay.
    RetryAfter(Duration),
    /// The step has failed for good.
    GiveUp,
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` without jitter (`attempt` is 1-based).
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(1_000) as i32;
        let secs = self.initial_interval.as_secs_f64() * self.backoff_coefficient.powi(exp);
        let max = self.max_interval.as_secs_f64();
        Duration::from_secs_f64(if secs.is_finite() { secs.min(max) } else { max })
    }

    /// The jittered delay before attempt `attempt + 1`, given a random sample in `[0, 1)`.
    pub fn delay_with(&self, attempt: u32, sample: f64) -> Duration {
        let base = self.base_delay(attempt);
        let cut = self.jitter.clamp(0.0, 1.0) * sample.clamp(0.0, 1.0);
        base.mul_f64(1.0 - cut)
    }

    /// Delays between successive attempts without jitter: `max_attempts - 1` of them.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + '_ {
        (1..self.max_attempts).map(|n| self.base_delay(n))
    }

    /// Decides what follows the failure of attempt `attempt` (1-based) with `error_type`.
    /// `retryable = false` (the handler said so) or an error type listed in `non_retryable_errors`
    /// gives up at once, as does the last attempt.
    pub fn decide(&self, attempt: u32, error_type: &str, retryable: bool) -> RetryDecision {
        let listed = !error_type.is_empty() && self.non_retryable_errors.iter().any(|e| e == error_type);
        if !retryable || listed || attempt >= self.max_attempts {
            return RetryDecision::GiveUp;
        }
        RetryDecision::RetryAfter(self.delay_with(attempt, rand::random::<f64>()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delay_stays_within_bounds(
            attempt in 1u32..50,
            initial_ms in 1u64..10_000,
            coefficient in 1.0f64..5.0,
            max_ms in 1u64..600_000,
            jitter in 0.0f64..1.0,
            sample in 0.0f64..1.0,
        ) {
            let policy = RetryPolicy {
                max_attempts: 100,
                initial_interval: Duration::from_millis(initial_ms),
                backoff_coefficient: coefficient,
                max_interval: Duration::from_millis(max_ms),
                jitter,
                non_retryable_errors: vec![],
            };
            let base = policy.base_delay(attempt);
            let delay = policy.delay_with(attempt, sample);
            prop_assert!(base <= Duration::from_millis(max_ms));
            prop_assert!(delay <= base);
            prop_assert!(delay.as_secs_f64() >= base.as_secs_f64() * (1.0 - jitter) - 1e-9);
        }
    }

    #[test]
    fn gives_up_on_last_attempt_and_listed_errors() {
        let policy = RetryPolicy {
            non_retryable_errors: vec!["NotFound".into()],
            ..Default::default()
        };
        assert!(matches!(policy.decide(1, "", true), RetryDecision::RetryAfter(_)));
        assert_eq!(policy.decide(3, "", true), RetryDecision::GiveUp);
        assert_eq!(policy.decide(1, "NotFound", true), RetryDecision::GiveUp);
        assert_eq!(policy.decide(1, "", false), RetryDecision::GiveUp);
    }
}
