//! Human-readable durations ("30s", "5m", "1h 30m", "250ms") as used in definitions and config files.

use std::time::Duration;

/// Parses a human duration with [`humantime`]. The error says what was wrong, without the field name
/// (the caller adds the path), echoing at most [`crate::limits::MAX_ECHO_BYTES`] of the text.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!(
            "invalid duration {}: {e} (use e.g. \"30s\", \"5m\", \"250ms\")",
            crate::limits::echo(text)
        )
    })
}

/// Parses a duration field of a definition: more than zero and at most `max` (one of the bounds
/// of [`crate::limits`]).
///
/// # Errors
/// As [`parse`], `must be greater than zero`, or `must be at most 1day (got "2days")`.
pub fn parse_bounded(text: &str, max: Duration) -> Result<Duration, String> {
    let d = parse(text)?;
    if d.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    crate::limits::check_duration(d, max)
}

/// Formats a duration the way [`parse`] reads it.
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Serde support: a [`Duration`] as whole milliseconds.
pub mod serde_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the duration as milliseconds (saturating at `u64::MAX`).
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Reads milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Serde support: a [`Duration`] as a human string ("30s"), for config files.
pub mod serde_human {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes the duration as a human string.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*d))
    }

    /// Reads a human string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::parse(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_durations_name_the_bound() {
        let day = Duration::from_secs(86_400);
        assert_eq!(parse_bounded("2h", day), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_bounded("0s", day).unwrap_err(), "must be greater than zero");
        let e = parse_bounded("18446744073709551615s", day).unwrap_err();
        assert!(e.starts_with("must be at most 1day (got "), "{e}");
        let e = parse("x".repeat(10_000).as_str()).unwrap_err();
        assert!(e.len() < 400, "{e}");
    }

    #[test]
    fn huge_durations_serialize_saturating() {
        #[derive(serde::Serialize)]
        struct D(#[serde(with = "serde_millis")] Duration);
        assert_eq!(serde_json::to_string(&D(Duration::MAX)).unwrap(), u64::MAX.to_string());
    }
}
