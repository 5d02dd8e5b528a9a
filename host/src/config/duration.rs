//! Human-friendly durations (`500ms`, `5s`, `10m`, `1h`) and byte sizes
//! (`16KiB`, `16MiB`, plain integers are bytes) as validating config values.
//!
//! Neighbours: the other value newtypes are in `config/values.rs`; the raw
//! structs that use them are in `config/raw.rs`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// A duration written as a number and a unit: `ms`, `s`, `m` or `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

/// A byte size: a plain integer, or a number with `B`, `KiB`, `MiB` or `GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// Units a duration may be written in, longest suffix first so `ms` is not
/// read as `m` + `s`.
const DURATION_UNITS: [(&str, u64); 4] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

/// Units a size may be written in, longest suffix first.
const SIZE_UNITS: [(&str, u64); 4] = [
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

// === impl ConfigDuration ===

impl ConfigDuration {
    /// Parses `500ms`, `5s`, `10m`, `1h`.
    pub fn parse(text: &str) -> Result<ConfigDuration, String> {
        let invalid = || format!("invalid duration {text:?} (expected e.g. 500ms, 5s, 10m, 1h)");
        let (number, millis_per_unit) = DURATION_UNITS
            .iter()
            .find_map(|(unit, ms)| text.strip_suffix(unit).map(|n| (n, *ms)))
            .ok_or_else(invalid)?;
        let value = parse_digits(number).ok_or_else(invalid)?;
        let millis = value.checked_mul(millis_per_unit).ok_or_else(invalid)?;
        Ok(ConfigDuration(Duration::from_millis(millis)))
    }
}

impl<'de> serde::Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 500ms, 5s, 10m or 1h")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                ConfigDuration::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "invalid duration {v} (a unit is required: ms, s, m or h)"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "invalid duration {v} (a unit is required: ms, s, m or h)"
                )))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

// === impl ByteSize ===

impl ByteSize {
    /// Parses `16KiB`, `16MiB`, `1GiB`, `512B` or a plain integer (bytes).
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let invalid = || format!("invalid size {text:?} (expected e.g. 16384, 16KiB, 16MiB)");
        let (number, unit) = SIZE_UNITS
            .iter()
            .find_map(|(suffix, bytes)| text.strip_suffix(suffix).map(|n| (n, *bytes)))
            .unwrap_or((text, 1));
        let value = parse_digits(number).ok_or_else(invalid)?;
        value.checked_mul(unit).map(ByteSize).ok_or_else(invalid)
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 16384, 16KiB or 16MiB")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {v} (must not be negative)")))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// ASCII digits only: no sign, no spaces, no fractions.
fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(
            ConfigDuration::parse("500ms").unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            ConfigDuration::parse("5s").unwrap().0,
            Duration::from_secs(5)
        );
        assert_eq!(
            ConfigDuration::parse("10m").unwrap().0,
            Duration::from_secs(600)
        );
        assert_eq!(
            ConfigDuration::parse("1h").unwrap().0,
            Duration::from_secs(3600)
        );
        assert_eq!(ConfigDuration::parse("0s").unwrap().0, Duration::ZERO);
    }

    #[test]
    fn durations_reject_sloppy_text() {
        for bad in [
            "5",
            "5 seconds",
            "s",
            "-5s",
            "1.5s",
            " 5s",
            "5S",
            "99999999999999999999h",
        ] {
            let err = ConfigDuration::parse(bad).unwrap_err();
            assert!(err.starts_with("invalid duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn sizes_in_every_unit() {
        assert_eq!(ByteSize::parse("16KiB").unwrap().0, 16 * 1024);
        assert_eq!(ByteSize::parse("16MiB").unwrap().0, 16 << 20);
        assert_eq!(ByteSize::parse("1GiB").unwrap().0, 1 << 30);
        assert_eq!(ByteSize::parse("512B").unwrap().0, 512);
        assert_eq!(ByteSize::parse("4096").unwrap().0, 4096);
    }

    #[test]
    fn sizes_reject_sloppy_text() {
        for bad in ["16kb", "16 KiB", "KiB", "-1", "1.5MiB", ""] {
            assert!(ByteSize::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn yaml_integers_are_bytes_but_not_durations() {
        let size: ByteSize = serde_yaml::from_str("16384").unwrap();
        assert_eq!(size.0, 16384);
        assert!(serde_yaml::from_str::<ConfigDuration>("5").is_err());
    }
}
