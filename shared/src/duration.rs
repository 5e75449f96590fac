//! Human-readable durations ("30s", "5m", "1h 30m", "250ms") as used in definitions and config files.

use std::time::Duration;

/// Parses a human duration with [`humantime`]. The error says what was wrong, without the field name
/// (the caller adds the path).
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration {text:?}: {e} (use e.g. \"30s\", \"5m\", \"250ms\")"))
}

/// Formats a duration the way [`parse`] reads it.
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Serde support: a [`Duration`] as whole milliseconds.
pub mod serde_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the duration as milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
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
