//! Quantities written with a unit in workload files: durations (`30s`,
//! `500ms`, `2m`) and bandwidths (`100kB/s`, `64KiB/s`).
//!
//! Both are "a number, then a unit from a table"; [`parse_scaled`] reads that
//! shape once, and [`Quantity`] gives both types one serde visitor that also
//! takes a bare YAML number (seconds, or bytes per second).

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Units of one quantity: the names each unit may be written as, and its
/// scale to the base unit.
type UnitTable = &'static [(&'static [&'static str], f64)];

const DURATION_UNITS: UnitTable = &[
    (&["", "s", "sec", "secs"], 1.0),
    (&["ms"], 1e-3),
    (&["us"], 1e-6),
    (&["m", "min"], 60.0),
    (&["h"], 3600.0),
];

const BANDWIDTH_UNITS: UnitTable = &[
    (&["", "B"], 1.0),
    (&["kB", "KB"], 1e3),
    (&["MB"], 1e6),
    (&["GB"], 1e9),
    (&["KiB"], 1024.0),
    (&["MiB"], 1024.0 * 1024.0),
];

/// Reads `<number><unit>` (spaces allowed between) into base units.
/// `what` names the quantity and `hint` the accepted units, for errors.
fn parse_scaled(text: &str, units: UnitTable, what: &str, hint: &str) -> Result<f64, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid {what} {text:?} (expected e.g. {hint})"))?;
    let unit = unit.trim();
    let scale = units
        .iter()
        .find(|(names, _)| names.contains(&unit))
        .map(|&(_, scale)| scale)
        .ok_or_else(|| {
            format!("invalid {what} unit {unit:?} in {text:?} (expected e.g. {hint})")
        })?;
    let scaled = value * scale;
    if !scaled.is_finite() || scaled < 0.0 {
        return Err(format!("invalid {what} {text:?}"));
    }
    Ok(scaled)
}

/// Parses `30s`, `500ms`, `2m`, `1h`, `250us`, `1.5s` or `10` (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_scaled(
        text.trim(),
        DURATION_UNITS,
        "duration",
        "30s, 500ms, 2m or 1h",
    )
    .map(Duration::from_secs_f64)
}

/// Formats a duration the way the workload files write them.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Parses `100kB/s`, `1.5MB/s`, `64KiB/s`, `500B/s`, `2000` (bytes/s).
pub fn parse_bandwidth(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t).trim();
    let bytes = parse_scaled(
        t,
        BANDWIDTH_UNITS,
        "bandwidth",
        "100kB/s, 1MB/s or 64KiB/s (B, kB, MB, GB, KiB, MiB per second)",
    )?;
    if bytes < 1.0 {
        return Err(format!(
            "invalid bandwidth {text:?}: must be at least 1 B/s"
        ));
    }
    Ok(bytes as u64)
}

/// A duration written as `30s`, `500ms`, `2m`, `1.5s` or a bare number of
/// seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }
    pub fn millis(ms: u64) -> Dur {
        Dur(Duration::from_millis(ms))
    }
}

/// A bandwidth in bytes per second, written `100kB/s`, `1MB/s`, `64KiB/s`,
/// `500B/s` or a bare number of bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bandwidth(pub u64);

/// A quantity read from text with a unit, or from a bare number in the base
/// unit.
trait Quantity: Sized {
    /// What the visitor expects, for serde's error messages.
    const EXPECTING: &'static str;
    fn parse(text: &str) -> Result<Self, String>;
    /// A bare number, in the base unit (seconds, bytes per second).
    fn from_number(value: f64) -> Result<Self, String>;
}

impl Quantity for Dur {
    const EXPECTING: &'static str = "a duration such as 30s, 500ms, 2m or a number of seconds";
    fn parse(text: &str) -> Result<Dur, String> {
        parse_duration(text).map(Dur)
    }
    fn from_number(value: f64) -> Result<Dur, String> {
        if value.is_finite() && value >= 0.0 {
            Ok(Dur(Duration::from_secs_f64(value)))
        } else {
            Err(format!("invalid duration {value}"))
        }
    }
}

impl Quantity for Bandwidth {
    const EXPECTING: &'static str =
        "a bandwidth such as 100kB/s, 1MB/s or a number of bytes per second";
    fn parse(text: &str) -> Result<Bandwidth, String> {
        parse_bandwidth(text).map(Bandwidth)
    }
    fn from_number(value: f64) -> Result<Bandwidth, String> {
        if value.is_finite() && value >= 1.0 {
            Ok(Bandwidth(value as u64))
        } else {
            Err(format!("invalid bandwidth {value}: must be at least 1 B/s"))
        }
    }
}

/// The one visitor of every [`Quantity`]: a string with a unit, or a number.
struct QuantityVisitor<Q>(PhantomData<Q>);

impl<Q: Quantity> Visitor<'_> for QuantityVisitor<Q> {
    type Value = Q;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(Q::EXPECTING)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Q, E> {
        Q::from_number(v as f64).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Q, E> {
        Q::from_number(v as f64).map_err(E::custom)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Q, E> {
        Q::from_number(v).map_err(E::custom)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Q, E> {
        Q::parse(v).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QuantityVisitor(PhantomData))
    }
}

impl<'de> Deserialize<'de> for Bandwidth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QuantityVisitor(PhantomData))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl Serialize for Bandwidth {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}B/s", self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_every_unit_and_bare_seconds() {
        let ok = [
            ("30s", 30_000),
            ("500ms", 500),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("1.5s", 1500),
            ("10", 10_000),
            (" 3 s ", 3000),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in ["", "s", "3 parsecs", "-1s", "1e999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bandwidths_parse_with_every_unit_and_refuse_zero() {
        assert_eq!(parse_bandwidth("100kB/s"), Ok(100_000));
        assert_eq!(parse_bandwidth("64KiB/s"), Ok(65_536));
        assert_eq!(parse_bandwidth("1.5MB/s"), Ok(1_500_000));
        assert_eq!(parse_bandwidth("2000"), Ok(2000));
        for bad in ["0B/s", "0.5B/s", "fast", "10 furlongs/s"] {
            assert!(parse_bandwidth(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn yaml_numbers_and_strings_both_deserialize() {
        let d: Dur = serde_yaml::from_str("2.5").unwrap();
        assert_eq!(d, Dur::millis(2500));
        let d: Dur = serde_yaml::from_str("\"250ms\"").unwrap();
        assert_eq!(d, Dur::millis(250));
        let b: Bandwidth = serde_yaml::from_str("4096").unwrap();
        assert_eq!(b, Bandwidth(4096));
        assert!(serde_yaml::from_str::<Bandwidth>("0").is_err());
        assert!(serde_yaml::from_str::<Dur>("-3").is_err());
    }
}
