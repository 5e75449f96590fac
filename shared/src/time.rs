//! Wall-clock time as Unix milliseconds (what Redis stores), and protobuf timestamps.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A duration in whole milliseconds, saturating at `i64::MAX` (a duration from outside can be
/// larger than any `i64` of milliseconds).
pub fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `now_ms + d` in Unix milliseconds, saturating: a deadline never wraps into the past.
pub fn deadline_ms(now_ms: i64, d: std::time::Duration) -> i64 {
    now_ms.saturating_add(duration_ms(d))
}

/// A protobuf timestamp from Unix milliseconds; `None` for 0 (not set).
pub fn timestamp(ms: i64) -> Option<prost_types::Timestamp> {
    (ms > 0).then(|| prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

/// Unix milliseconds from a protobuf timestamp.
pub fn millis(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

/// Unix milliseconds as RFC 3339 UTC text with milliseconds (`2026-11-21T08:30:00.000Z`).
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn deadlines_saturate_instead_of_wrapping() {
        assert_eq!(deadline_ms(1_000, Duration::from_millis(5)), 1_005);
        assert_eq!(deadline_ms(1_000, Duration::from_secs(u64::MAX)), i64::MAX);
        assert_eq!(duration_ms(Duration::MAX), i64::MAX);
    }
}
