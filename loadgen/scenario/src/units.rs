//! Strictly parsed units of the scenario format: durations (`500ms`, `5s`,
//! `2m`), rates (`500/s`, `30/m`) and sizes (`256B`, `4KiB`).
//!
//! Each is a single number followed by exactly one unit, with no spaces, no
//! sign and no defaulted unit: `5` is an error with a hint, never 5 seconds.
//! They serialise back to a canonical string so a resolved scenario reads
//! like the one the user wrote.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a unit string was rejected, with a hint for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UnitError {
    pub message: String,
    pub hint: String,
}

fn unit_error(message: String, hint: impl Into<String>) -> UnitError {
    UnitError {
        message,
        hint: hint.into(),
    }
}

/// Splits `"12.5ms"` into `(12.5, "ms")`, rejecting signs, spaces, exponents
/// and anything that is not plain decimal digits with at most one dot.
fn split_number(text: &str, what: &str, example: &str) -> Result<(f64, String), UnitError> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    let well_formed = !number.is_empty()
        && number.matches('.').count() <= 1
        && !number.starts_with('.')
        && !number.ends_with('.');
    if !well_formed {
        return Err(unit_error(
            format!("`{text}` is not a valid {what}"),
            format!("write a number followed by a unit, e.g. `{example}`"),
        ));
    }
    let value: f64 = number.parse().map_err(|_| {
        unit_error(
            format!("`{text}` is not a valid {what}"),
            format!("write a number followed by a unit, e.g. `{example}`"),
        )
    })?;
    Ok((value, unit.to_owned()))
}

/// A span of time, parsed from `250us`, `500ms`, `5s`, `1.5m` or `2h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }
    pub fn as_std(self) -> std::time::Duration {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl FromStr for Duration {
    type Err = UnitError;
    fn from_str(text: &str) -> Result<Self, UnitError> {
        let (value, unit) = split_number(text, "duration", "5s")?;
        let nanos_per = match unit.as_str() {
            "us" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => {
                return Err(unit_error(
                    format!("duration `{text}` has no unit"),
                    format!("add a unit: `{text}s`, `{text}ms` (units: us, ms, s, m, h)"),
                ));
            }
            other => {
                return Err(unit_error(
                    format!("`{other}` is not a duration unit (in `{text}`)"),
                    "units are us, ms, s, m and h, e.g. `500ms` or `2m`",
                ));
            }
        };
        let nanos = value * nanos_per;
        if !(nanos.is_finite() && nanos < 1e9 * 86_400.0 * 365.0) {
            return Err(unit_error(
                format!("duration `{text}` is too long"),
                "durations are limited to a year",
            ));
        }
        if nanos.fract() != 0.0 {
            return Err(unit_error(
                format!("duration `{text}` is finer than a nanosecond"),
                "use fewer decimals or a smaller unit",
            ));
        }
        Ok(Self(std::time::Duration::from_nanos(nanos as u64)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        let units: [(u128, &str); 5] = [
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
        ];
        for (per, unit) in units {
            if nanos >= per && nanos.is_multiple_of(per) {
                return write!(f, "{}{unit}", nanos / per);
            }
        }
        if nanos == 0 {
            return write!(f, "0s");
        }
        // Sub-microsecond remainders cannot be written back exactly in the
        // format's units; print microseconds with decimals.
        write!(f, "{}us", nanos as f64 / 1_000.0)
    }
}

/// An arrival rate in operations per second, parsed from `500/s`, `30/m`, `0.5/s`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Rate(pub f64);

impl Rate {
    pub fn per_second(self) -> f64 {
        self.0
    }
}

impl FromStr for Rate {
    type Err = UnitError;
    fn from_str(text: &str) -> Result<Self, UnitError> {
        let Some((number, unit)) = text.split_once('/') else {
            let example = if split_number(text, "rate", "500/s").is_ok_and(|(_, u)| u.is_empty()) {
                format!("{text}/s")
            } else {
                "500/s".to_owned()
            };
            return Err(unit_error(
                format!("`{text}` is not a rate"),
                format!("write operations per unit of time, e.g. `{example}`"),
            ));
        };
        let (value, rest) = split_number(number, "rate", "500/s")?;
        if !rest.is_empty() {
            return Err(unit_error(
                format!("`{text}` is not a valid rate"),
                "write a plain number of operations, e.g. `500/s`",
            ));
        }
        let per_second = match unit {
            "s" => value,
            "m" => value / 60.0,
            "h" => value / 3600.0,
            other => {
                return Err(unit_error(
                    format!("`/{other}` is not a rate unit (in `{text}`)"),
                    "rates are per `s`, `m` or `h`, e.g. `500/s`",
                ));
            }
        };
        if !per_second.is_finite() || per_second > 10_000_000.0 {
            return Err(unit_error(
                format!("rate `{text}` is too high"),
                "rates are limited to 10000000/s",
            ));
        }
        Ok(Self(per_second))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.0)
    }
}

/// A size in bytes, parsed from `256B`, `4KiB`, `1MiB`, `2KB` (decimal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Size(pub u64);

impl Size {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = UnitError;
    fn from_str(text: &str) -> Result<Self, UnitError> {
        let (value, unit) = split_number(text, "size", "256B")?;
        let per: f64 = match unit.as_str() {
            "B" => 1.0,
            "KB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            "KiB" => 1024.0,
            "MiB" => 1024.0 * 1024.0,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            "" => {
                return Err(unit_error(
                    format!("size `{text}` has no unit"),
                    format!(
                        "add a unit: `{text}B` or `{text}KiB` (units: B, KB, MB, GB, KiB, MiB, GiB)"
                    ),
                ));
            }
            other => {
                let hint = match other.to_ascii_lowercase().as_str() {
                    "b" => "bytes are `B`".to_owned(),
                    "kb" | "k" | "kib" => "write `KiB` (1024) or `KB` (1000)".to_owned(),
                    "mb" | "m" | "mib" => "write `MiB` or `MB`".to_owned(),
                    "gb" | "g" | "gib" => "write `GiB` or `GB`".to_owned(),
                    _ => "units are B, KB, MB, GB, KiB, MiB and GiB".to_owned(),
                };
                return Err(unit_error(
                    format!("`{other}` is not a size unit (in `{text}`)"),
                    hint,
                ));
            }
        };
        let bytes = value * per;
        if bytes.fract() != 0.0 {
            return Err(unit_error(
                format!("size `{text}` is not a whole number of bytes"),
                "use a smaller unit",
            ));
        }
        if bytes > 1e12 {
            return Err(unit_error(
                format!("size `{text}` is too large"),
                "sizes are limited to 1TB",
            ));
        }
        Ok(Self(bytes as u64))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (per, unit) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
            if b >= per && b.is_multiple_of(per) {
                return write!(f, "{}{unit}", b / per);
            }
        }
        write!(f, "{b}B")
    }
}

/// Serde and schema glue shared by the three unit types: each is a string in
/// YAML; a bare number is refused with a hint naming the unit to add.
macro_rules! unit_serde {
    ($ty:ident, $what:literal, $example:literal, $pattern:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a {} such as `{}`", $what, $example)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(|e: UnitError| {
                            E::custom(format!("{} (hint: {})", e.message, e.hint))
                        })
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$ty, E> {
                        Err(E::custom(format!(
                            "{} `{v}` has no unit (hint: write it with a unit, e.g. `{}`)",
                            $what, $example
                        )))
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$ty, E> {
                        Err(E::custom(format!(
                            "{} `{v}` has no unit (hint: write it with a unit, e.g. `{}`)",
                            $what, $example
                        )))
                    }
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<$ty, E> {
                        Err(E::custom(format!(
                            "{} `{v}` has no unit (hint: write it with a unit, e.g. `{}`)",
                            $what, $example
                        )))
                    }
                }
                d.deserialize_any(V)
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($ty))
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "description": concat!("A ", $what, ", e.g. `", $example, "`."),
                })
            }
        }
    };
}

unit_serde!(
    Duration,
    "duration",
    "5s",
    "^[0-9]+(\\.[0-9]+)?(us|ms|s|m|h)$"
);
unit_serde!(Rate, "rate", "500/s", "^[0-9]+(\\.[0-9]+)?/(s|m|h)$");
unit_serde!(
    Size,
    "size",
    "256B",
    "^[0-9]+(\\.[0-9]+)?(B|KB|MB|GB|KiB|MiB|GiB)$"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_parse_strictly() {
        assert_eq!(
            "500ms".parse::<Duration>().unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!("5s".parse::<Duration>().unwrap(), Duration::from_secs(5));
        assert_eq!("2m".parse::<Duration>().unwrap(), Duration::from_secs(120));
        assert_eq!(
            "1.5s".parse::<Duration>().unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            "250us".parse::<Duration>().unwrap().0,
            std::time::Duration::from_micros(250)
        );
        for bad in [
            "5", "", "s", "-5s", "5 s", "5sec", "1e3ms", ".5s", "5.s", "5s5", "1..2s",
        ] {
            let err = bad.parse::<Duration>().unwrap_err();
            assert!(!err.hint.is_empty(), "{bad}: {err:?}");
        }
        assert!("5".parse::<Duration>().unwrap_err().hint.contains("5s"));
    }

    #[test]
    fn rates_parse_strictly() {
        assert_eq!("500/s".parse::<Rate>().unwrap().0, 500.0);
        assert_eq!("60/m".parse::<Rate>().unwrap().0, 1.0);
        assert_eq!("0.5/s".parse::<Rate>().unwrap().0, 0.5);
        for bad in [
            "500", "500/", "/s", "500/sec", "-1/s", "5 /s", "1e3/s", "abc/s",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_parse_strictly() {
        assert_eq!("256B".parse::<Size>().unwrap().0, 256);
        assert_eq!("4KiB".parse::<Size>().unwrap().0, 4096);
        assert_eq!("2KB".parse::<Size>().unwrap().0, 2000);
        assert_eq!("1MiB".parse::<Size>().unwrap().0, 1 << 20);
        assert!("4kb".parse::<Size>().unwrap_err().hint.contains("KiB"));
        for bad in ["256", "0.5B", "4 KiB", "KiB", "-1B", "1TiB"] {
            assert!(bad.parse::<Size>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn durations_round_trip(nanos in 0u64..86_400_000_000_000) {
            let d = Duration(std::time::Duration::from_nanos(nanos));
            let text = d.to_string();
            if nanos % 1_000 == 0 {
                prop_assert_eq!(text.parse::<Duration>().unwrap(), d);
            }
        }

        #[test]
        fn whole_durations_in_any_unit_parse(n in 0u64..8_000, unit in prop::sample::select(vec!["us", "ms", "s", "m", "h"])) {
            let d: Duration = format!("{n}{unit}").parse().unwrap();
            let per = match unit { "us" => 1_000u64, "ms" => 1_000_000, "s" => 1_000_000_000, "m" => 60_000_000_000, _ => 3_600_000_000_000 };
            prop_assert_eq!(d.0.as_nanos(), (n as u128) * (per as u128));
        }

        #[test]
        fn sizes_round_trip(bytes in 0u64..1_000_000_000_000) {
            let s = Size(bytes);
            prop_assert_eq!(s.to_string().parse::<Size>().unwrap(), s);
        }

        #[test]
        fn rates_round_trip(per_s in 0u32..10_000_000) {
            let r = Rate(per_s as f64);
            prop_assert_eq!(r.to_string().parse::<Rate>().unwrap(), r);
        }

        #[test]
        fn garbage_never_panics(text in ".{0,12}") {
            let _ = text.parse::<Duration>();
            let _ = text.parse::<Rate>();
            let _ = text.parse::<Size>();
        }
    }
}
