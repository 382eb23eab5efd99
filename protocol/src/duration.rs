//! Durations as people write them in policies: `80d`, `12h`, `10m`, `30s`.
//!
//! Production policies speak in days; demos and tests use minutes so that a
//! whole rotation timeline fits in a short run. A policy field that may be
//! switched off (such as `max_key_age`) uses [`Limit`], which also accepts
//! `never`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A non-negative span of time with one-second resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    secs: u64,
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration (expected a number and a unit, e.g. `80d`)")]
    Empty,
    #[error("duration `{0}` has no unit (use d, h, m or s, e.g. `80d`)")]
    MissingUnit(String),
    #[error("duration `{0}` has an unknown unit (use d, h, m or s)")]
    UnknownUnit(String),
    #[error("duration `{0}` does not start with a whole number")]
    BadNumber(String),
    #[error("duration `{0}` is too large")]
    Overflow(String),
}

impl Duration {
    pub const ZERO: Duration = Duration { secs: 0 };

    pub const fn from_secs(secs: u64) -> Self {
        Duration { secs }
    }
    pub const fn from_minutes(m: u64) -> Self {
        Duration { secs: m * 60 }
    }
    pub const fn from_hours(h: u64) -> Self {
        Duration { secs: h * 3600 }
    }
    pub const fn from_days(d: u64) -> Self {
        Duration { secs: d * 86_400 }
    }
    pub const fn as_secs(self) -> u64 {
        self.secs
    }
    /// As a `time::Duration`, for date arithmetic.
    pub fn to_time(self) -> time::Duration {
        time::Duration::seconds(self.secs.min(i64::MAX as u64) as i64)
    }
    /// Saturating difference, used for notice periods.
    pub fn saturating_sub(self, other: Duration) -> Duration {
        Duration {
            secs: self.secs.saturating_sub(other.secs),
        }
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.is_empty() {
            return Err(DurationError::Empty);
        }
        let split = t
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| DurationError::MissingUnit(t.to_string()))?;
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(DurationError::BadNumber(t.to_string()));
        }
        let n: u64 = num
            .parse()
            .map_err(|_| DurationError::Overflow(t.to_string()))?;
        let mult = match unit {
            "d" => 86_400,
            "h" => 3_600,
            "m" => 60,
            "s" => 1,
            _ => return Err(DurationError::UnknownUnit(t.to_string())),
        };
        n.checked_mul(mult)
            .map(Duration::from_secs)
            .ok_or_else(|| DurationError::Overflow(t.to_string()))
    }
}

impl fmt::Display for Duration {
    /// The largest unit that divides the value exactly, so `80d` round-trips.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.secs;
        if s != 0 && s.is_multiple_of(86_400) {
            write!(f, "{}d", s / 86_400)
        } else if s != 0 && s.is_multiple_of(3_600) {
            write!(f, "{}h", s / 3_600)
        } else if s != 0 && s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A duration limit that can be switched off with `never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    Never,
    After(Duration),
}

impl Limit {
    /// True when `age` has reached the limit.
    pub fn reached(self, age: Duration) -> bool {
        match self {
            Limit::Never => false,
            Limit::After(d) => age >= d,
        }
    }
}

impl FromStr for Limit {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("never") {
            Ok(Limit::Never)
        } else {
            s.parse().map(Limit::After)
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Never => f.write_str("never"),
            Limit::After(d) => d.fmt(f),
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_units() {
        assert_eq!("80d".parse::<Duration>().unwrap(), Duration::from_days(80));
        assert_eq!("12h".parse::<Duration>().unwrap(), Duration::from_hours(12));
        assert_eq!(
            "10m".parse::<Duration>().unwrap(),
            Duration::from_minutes(10)
        );
        assert_eq!("30s".parse::<Duration>().unwrap(), Duration::from_secs(30));
        assert_eq!("never".parse::<Limit>().unwrap(), Limit::Never);
    }

    #[test]
    fn rejects_bad_input_with_named_reason() {
        assert_eq!("".parse::<Duration>(), Err(DurationError::Empty));
        assert_eq!(
            "80".parse::<Duration>(),
            Err(DurationError::MissingUnit("80".into()))
        );
        assert_eq!(
            "80w".parse::<Duration>(),
            Err(DurationError::UnknownUnit("80w".into()))
        );
        assert_eq!(
            "d".parse::<Duration>(),
            Err(DurationError::BadNumber("d".into()))
        );
        assert_eq!(
            "-5d".parse::<Duration>(),
            Err(DurationError::BadNumber("-5d".into()))
        );
        assert!(matches!(
            "99999999999999999999d".parse::<Duration>(),
            Err(DurationError::Overflow(_))
        ));
    }

    proptest! {
        #[test]
        fn display_round_trips(secs in 0u64..10_000_000_000) {
            let d = Duration::from_secs(secs);
            prop_assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,12}") {
            let _ = s.parse::<Duration>();
            let _ = s.parse::<Limit>();
        }
    }
}
