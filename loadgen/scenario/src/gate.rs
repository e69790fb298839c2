//! The scenario's release criteria: `slo:` (absolute limits per operation)
//! and `gate:` (relative tolerances against a baseline, per operation and
//! metric). The same two sections make up a gate profile file
//! (`ci/profiles/*.yaml`), so a profile can be applied to any run.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::units::{Duration, Rate, UnitError};

/// A percentage, parsed strictly from `10%`, `0.1%`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Percent(pub f64);

impl Percent {
    /// As a fraction: `10%` → 0.1.
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
    }
}

fn percent_error(text: &str) -> UnitError {
    UnitError {
        message: format!("`{text}` is not a percentage"),
        hint: "write a number followed by `%`, e.g. `10%` or `0.1%`".to_owned(),
    }
}

impl FromStr for Percent {
    type Err = UnitError;
    fn from_str(text: &str) -> Result<Self, UnitError> {
        let number = text.strip_suffix('%').ok_or_else(|| percent_error(text))?;
        let ok = !number.is_empty()
            && number.chars().all(|c| c.is_ascii_digit() || c == '.')
            && number.matches('.').count() <= 1
            && !number.starts_with('.')
            && !number.ends_with('.');
        if !ok {
            return Err(percent_error(text));
        }
        let value: f64 = number.parse().map_err(|_| percent_error(text))?;
        if value > 1000.0 {
            return Err(UnitError {
                message: format!("`{text}` is more than 1000%"),
                hint: "tolerances and rates are at most 1000%".to_owned(),
            });
        }
        Ok(Percent(value))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// How much a metric may get worse before the gate calls it a regression:
/// a percentage (`10%`), or `off` — the metric is not compared at all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    At(Percent),
    Off,
}

impl Tolerance {
    /// The allowed change, or `None` when the metric is switched off.
    pub fn percent(self) -> Option<Percent> {
        match self {
            Tolerance::At(p) => Some(p),
            Tolerance::Off => None,
        }
    }
}

impl From<Percent> for Tolerance {
    fn from(p: Percent) -> Self {
        Tolerance::At(p)
    }
}

impl FromStr for Tolerance {
    type Err = UnitError;
    fn from_str(text: &str) -> Result<Self, UnitError> {
        if text == "off" {
            return Ok(Tolerance::Off);
        }
        text.parse()
            .map(Tolerance::At)
            .map_err(|e: UnitError| UnitError {
                message: e.message,
                hint: format!("{}, or `off` to leave the metric out of the gate", e.hint),
            })
    }
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tolerance::At(p) => p.fmt(f),
            Tolerance::Off => f.write_str("off"),
        }
    }
}

/// A lower bound on throughput: `">= 4500/s"` or `4500/s`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MinRate(pub Rate);

impl FromStr for MinRate {
    type Err = UnitError;
    fn from_str(text: &str) -> Result<Self, UnitError> {
        let rest = text.strip_prefix(">=").unwrap_or(text).trim_start();
        rest.parse().map(MinRate).map_err(|e: UnitError| UnitError {
            message: e.message,
            hint: format!("{} (a throughput floor reads `>= 4500/s`)", e.hint),
        })
    }
}

impl fmt::Display for MinRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ">= {}", self.0)
    }
}

/// An upper bound on the error rate: `"< 0.1%"`, `"<= 0.1%"` or `0.1%`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MaxPercent(pub Percent);

impl FromStr for MaxPercent {
    type Err = UnitError;
    fn from_str(text: &str) -> Result<Self, UnitError> {
        let rest = text
            .strip_prefix("<=")
            .or_else(|| text.strip_prefix('<'))
            .unwrap_or(text)
            .trim_start();
        rest.parse().map(MaxPercent)
    }
}

impl fmt::Display for MaxPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "< {}", self.0)
    }
}

macro_rules! string_unit {
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
                        write!(f, "{} such as `{}`", $what, $example)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(|e: UnitError| {
                            E::custom(format!("{} (hint: {})", e.message, e.hint))
                        })
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$ty, E> {
                        Err(E::custom(format!(
                            "`{v}` has no unit (hint: write {} such as `{}`)",
                            $what, $example
                        )))
                    }
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<$ty, E> {
                        Err(E::custom(format!(
                            "`{v}` has no unit (hint: write {} such as `{}`)",
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
                    "description": concat!($what, ", e.g. `", $example, "`."),
                })
            }
        }
    };
}

string_unit!(Percent, "a percentage", "10%", "^[0-9]+(\\.[0-9]+)?%$");
string_unit!(
    Tolerance,
    "a tolerance",
    "10%` or `off",
    "^([0-9]+(\\.[0-9]+)?%|off)$"
);
string_unit!(
    MinRate,
    "a throughput floor",
    ">= 4500/s",
    "^(>= ?)?[0-9]+(\\.[0-9]+)?/(s|m|h)$"
);
string_unit!(
    MaxPercent,
    "an error-rate ceiling",
    "< 0.1%",
    "^(<=? ?)?[0-9]+(\\.[0-9]+)?%$"
);

/// Absolute limits for one operation; every limit is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p999: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Duration>,
    /// Lowest acceptable throughput of successful operations, e.g. `>= 4500/s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<MinRate>,
    /// Highest acceptable error rate, e.g. `< 0.1%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<MaxPercent>,
}

/// How much a metric may change against the baseline before the gate calls
/// it a regression. Latency and throughput tolerances are relative (`10%`);
/// the error tolerance is in percentage points of error rate (`0.1%`);
/// `off` leaves a metric out of the gate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tolerances {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<Tolerance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<Tolerance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p999: Option<Tolerance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<Tolerance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Tolerance>,
}

impl Tolerances {
    /// Gauntlet's defaults, used for any metric a scenario leaves unset.
    pub fn defaults() -> Self {
        Self {
            p50: Some(Percent(10.0).into()),
            p99: Some(Percent(10.0).into()),
            p999: Some(Percent(25.0).into()),
            throughput: Some(Percent(5.0).into()),
            errors: Some(Percent(0.1).into()),
        }
    }

    /// `self`, with unset metrics taken from `fallback`.
    pub fn or(&self, fallback: &Tolerances) -> Tolerances {
        Tolerances {
            p50: self.p50.or(fallback.p50),
            p99: self.p99.or(fallback.p99),
            p999: self.p999.or(fallback.p999),
            throughput: self.throughput.or(fallback.throughput),
            errors: self.errors.or(fallback.errors),
        }
    }
}

/// Relative comparison against a baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// Phases whose per-second samples are compared (default: the last phase).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<String>,
    /// Confidence of the interval the rule uses (default `95%`).
    #[serde(default = "default_confidence")]
    pub confidence: Percent,
    /// Tolerances for every operation (default p50 10%, p99 10%, p99.9 25%,
    /// throughput 5%, errors 0.1 points; `off` leaves a metric out).
    #[serde(default = "Tolerances::defaults")]
    pub default: Tolerances,
    /// Per-operation tolerances, overriding `default` metric by metric.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operations: BTreeMap<String, Tolerances>,
}

fn default_confidence() -> Percent {
    Percent(95.0)
}

impl Default for GateSpec {
    fn default() -> Self {
        Self {
            phases: Vec::new(),
            confidence: default_confidence(),
            default: Tolerances::defaults(),
            operations: BTreeMap::new(),
        }
    }
}

impl GateSpec {
    /// The tolerances that apply to `operation`.
    pub fn tolerances(&self, operation: &str) -> Tolerances {
        let base = self.default.or(&Tolerances::defaults());
        match self.operations.get(operation) {
            Some(t) => t.or(&base),
            None => base,
        }
    }
}

/// A gate profile file: `slo:` and `gate:` sections applied to runs from outside the scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// What the profile is for and where its numbers come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slo: BTreeMap<String, Slo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateSpec>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_and_bounds_parse_strictly() {
        assert_eq!("10%".parse::<Percent>().unwrap().fraction(), 0.1);
        assert_eq!("0.1%".parse::<Percent>().unwrap().0, 0.1);
        for bad in ["10", "%", "-1%", "1 %", "ten%", "1.%"] {
            assert!(bad.parse::<Percent>().is_err(), "{bad}");
        }
        assert_eq!(">= 4500/s".parse::<MinRate>().unwrap().0.0, 4500.0);
        assert_eq!("4500/s".parse::<MinRate>().unwrap().0.0, 4500.0);
        assert_eq!("< 0.1%".parse::<MaxPercent>().unwrap().0.0, 0.1);
        assert_eq!("<=1%".parse::<MaxPercent>().unwrap().0.0, 1.0);
        assert!("> 1%".parse::<MaxPercent>().is_err());
    }

    #[test]
    fn per_operation_tolerances_override_the_default_metric_by_metric() {
        let mut spec = GateSpec::default();
        spec.default.p99 = Some(Percent(20.0).into());
        spec.operations.insert(
            "append".into(),
            Tolerances {
                p50: Some(Percent(3.0).into()),
                ..Default::default()
            },
        );
        let t = spec.tolerances("append");
        assert_eq!(t.p50, Some(Percent(3.0).into()));
        assert_eq!(t.p99, Some(Percent(20.0).into()));
        assert_eq!(t.throughput, Some(Percent(5.0).into()));
        assert_eq!(spec.tolerances("read").p50, Some(Percent(10.0).into()));
    }
}
