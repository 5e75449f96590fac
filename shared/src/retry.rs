//! Per-step retry policy: how many attempts a step gets and how long to wait between them.
//!
//! The shape follows Temporal's activity retry policy (the one users of this field know) rather than
//! restate's tagged enum, because the workflow-definition format names these fields directly:
//! a fixed delay is `backoff_coefficient: 1.0`, no retry is `max_attempts: 1`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::limits::MAX_RETRY_INTERVAL;

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
    /// The longest delay this policy can give: `max_interval`, and never more than
    /// [`MAX_RETRY_INTERVAL`] (a policy from before that bound, or built in code, may hold more).
    pub fn delay_cap(&self) -> Duration {
        self.max_interval.min(MAX_RETRY_INTERVAL)
    }

    /// The delay before attempt `attempt + 1` without jitter (`attempt` is 1-based): never more
    /// than [`delay_cap`](Self::delay_cap), and never a panic, whatever the policy holds (a NaN or
    /// negative coefficient, huge intervals: anything not a finite delay below the cap is the cap).
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let cap = self.delay_cap();
        let exp = i32::try_from(attempt.saturating_sub(1).min(1_000)).unwrap_or(1_000);
        let secs = self.initial_interval.as_secs_f64() * self.backoff_coefficient.powi(exp);
        if secs.is_nan() || secs < 0.0 {
            return cap; // NaN or negative
        }
        Duration::try_from_secs_f64(secs).map_or(cap, |d| d.min(cap))
    }

    /// The jittered delay before attempt `attempt + 1`, given a random sample in `[0, 1)`: in
    /// `[base * (1 - jitter), base]`; a jitter or sample that is not a number counts as 0.
    pub fn delay_with(&self, attempt: u32, sample: f64) -> Duration {
        let base = self.base_delay(attempt);
        let unit = |x: f64| if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) };
        let cut = unit(self.jitter) * unit(sample);
        Duration::try_from_secs_f64(base.as_secs_f64() * (1.0 - cut)).map_or(base, |d| d.min(base))
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

    fn any_duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            (0u64..100_000).prop_map(Duration::from_millis),
            any::<u64>().prop_map(Duration::from_secs),
            Just(Duration::MAX),
            Just(Duration::ZERO),
        ]
    }

    proptest! {
        /// Whatever a policy holds (huge or zero intervals, NaN, infinite or negative numbers), a
        /// delay is computed without a panic and never exceeds `max_interval` or the bound.
        #[test]
        fn no_policy_panics_or_exceeds_its_caps(
            attempt in any::<u32>(),
            initial in any_duration(),
            max in any_duration(),
            coefficient in prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(-2.0), Just(1e300)],
            jitter in prop_oneof![any::<f64>(), Just(f64::NAN), 0.0f64..1.0],
            sample in prop_oneof![any::<f64>(), Just(f64::NAN), 0.0f64..1.0],
        ) {
            let policy = RetryPolicy {
                max_attempts: u32::MAX,
                initial_interval: initial,
                backoff_coefficient: coefficient,
                max_interval: max,
                jitter,
                non_retryable_errors: vec![],
            };
            let base = policy.base_delay(attempt);
            let delay = policy.delay_with(attempt, sample);
            prop_assert!(base <= max && base <= MAX_RETRY_INTERVAL);
            prop_assert!(delay <= base);
            if let RetryDecision::RetryAfter(d) = policy.decide(attempt.min(u32::MAX - 1), "", true) {
                prop_assert!(d <= base.max(policy.delay_cap()));
            }
        }
    }

    #[test]
    fn the_huge_interval_of_defect_3_is_capped() {
        let policy = RetryPolicy {
            initial_interval: Duration::from_secs(u64::MAX),
            max_interval: Duration::from_secs(u64::MAX),
            ..Default::default()
        };
        assert_eq!(policy.base_delay(1), MAX_RETRY_INTERVAL);
        assert!(policy.delay_with(7, 0.5) <= MAX_RETRY_INTERVAL);
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
