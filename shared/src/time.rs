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

/// The last instant RFC 3339 can write (9999-12-31T23:59:59.999Z), in Unix milliseconds.
pub const LATEST_RFC3339_MS: i64 = 253_402_300_799_999;

/// Unix milliseconds as RFC 3339 UTC text with milliseconds (`2026-11-21T08:30:00.000Z`); times
/// before 1970 read as the epoch and times after [`LATEST_RFC3339_MS`] as that instant (the format has
/// four-digit years), so any stored value can be shown.
pub fn rfc3339(ms: i64) -> String {
    let ms = ms.clamp(0, LATEST_RFC3339_MS);
    let t = UNIX_EPOCH + std::time::Duration::from_millis(ms.unsigned_abs());
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

    #[test]
    fn any_stored_time_can_be_written() {
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000Z");
    }
}
