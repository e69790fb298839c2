//! Verdicts: the statistical rule per operation and metric, and the SLO checks.
//!
//! The rule. For each operation and metric, take the per-second samples of
//! the gated phases on both sides and bootstrap a confidence interval (95 %
//! by default) of the change of a statistic (median of per-second p50, p99
//! and p99.9; mean per-second throughput; pooled error rate). With tolerance
//! `t` (for latency and throughput a relative change, compared on the log
//! scale `ln(1+t)` so that the rule is symmetric; for errors a difference in
//! percentage points), oriented so that positive means worse:
//! - *regression*: the whole interval lies beyond `+t`;
//! - *improvement*: the whole interval lies beyond `−t`;
//! - *inconclusive*: the estimate is beyond `+t` but the interval reaches
//!   back within it (a likely regression, not proven), or too few samples;
//! - *pass*: otherwise — the estimate is within tolerance.
//!
//! Only a regression fails the gate: noise widens the interval and yields
//! *inconclusive*, never a false regression, unless the noise itself shifts
//! the whole interval.

use std::collections::BTreeMap;

use gauntlet_scenario::{GateSpec, Percent, Slo};
use serde::{Deserialize, Serialize};

use crate::samples::{IntervalSample, Samples};
use crate::stats::{self, Scale, Statistic};

/// Fewest per-second samples on each side for a verdict other than inconclusive.
pub const MIN_SAMPLES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    P50,
    P99,
    P999,
    Throughput,
    Errors,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::P50,
        Metric::P99,
        Metric::P999,
        Metric::Throughput,
        Metric::Errors,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P99 => "p99",
            Metric::P999 => "p99.9",
            Metric::Throughput => "throughput",
            Metric::Errors => "errors",
        }
    }

    fn sample(self, s: &IntervalSample) -> Option<f64> {
        match self {
            Metric::P50 => s.quantile(0.50),
            Metric::P99 => s.quantile(0.99),
            Metric::P999 => s.quantile(0.999),
            Metric::Throughput => Some(s.throughput()),
            Metric::Errors => s.error_rate(),
        }
    }

    fn rule(self) -> (Statistic, Scale, bool) {
        // (statistic, scale, higher is worse)
        match self {
            Metric::P50 | Metric::P99 | Metric::P999 => (Statistic::Median, Scale::LogRatio, true),
            Metric::Throughput => (Statistic::Mean, Scale::LogRatio, false),
            Metric::Errors => (Statistic::Mean, Scale::Difference, true),
        }
    }

    fn tolerance(self, spec: &GateSpec, operation: &str) -> Option<Percent> {
        let t = spec.tolerances(operation);
        match self {
            Metric::P50 => t.p50,
            Metric::P99 => t.p99,
            Metric::P999 => t.p999,
            Metric::Throughput => t.throughput,
            Metric::Errors => t.errors,
        }
        .and_then(|t| t.percent())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Regression,
    Improvement,
    Inconclusive,
}

/// The verdict of one operation × metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub operation: String,
    pub metric: Metric,
    pub outcome: Outcome,
    /// Statistic of the baseline and the candidate (µs, ops/s or a fraction).
    pub baseline: Option<f64>,
    pub candidate: Option<f64>,
    /// Estimated change, oriented as measured: relative (`0.12` = +12 %) for
    /// latency and throughput, percentage points for errors.
    pub change: Option<f64>,
    pub change_low: Option<f64>,
    pub change_high: Option<f64>,
    /// Allowed change in the worse direction (relative, or points for errors).
    pub tolerance: f64,
    pub samples_baseline: usize,
    pub samples_candidate: usize,
    pub note: String,
}

/// One SLO limit checked against the candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloCheck {
    pub operation: String,
    pub metric: String,
    /// The limit as written, e.g. `<= 5ms`.
    pub limit: String,
    pub actual: String,
    pub passed: bool,
}

/// Everything the gate decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub scenario: String,
    pub phases: Vec<String>,
    pub rule: String,
    pub baseline_runs: Vec<String>,
    pub candidate_runs: Vec<String>,
    pub comparisons: Vec<Comparison>,
    pub slo: Vec<SloCheck>,
    pub regressions: usize,
    pub improvements: usize,
    pub inconclusive: usize,
    pub slo_failures: usize,
    pub passed: bool,
    /// Runs whose load generator was the bottleneck (their numbers measure loadgen).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

pub const RULE: &str = "circular block bootstrap (2000 resamples, blocks of ceil(n^(1/3)) seconds) of the change of the median per-second p50/p99/p99.9, the mean per-second throughput and the pooled error rate over the gated phases; regression when the whole confidence interval lies beyond the tolerance in the worse direction, improvement when it lies beyond it in the better direction, pass when its worse end is within tolerance, inconclusive otherwise";

fn seed_for(operation: &str, metric: Metric) -> u64 {
    // FNV-1a: a stable seed per operation × metric.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in operation.bytes().chain(metric.name().bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn values(samples: &[IntervalSample], metric: Metric) -> Vec<f64> {
    samples.iter().filter_map(|s| metric.sample(s)).collect()
}

/// Compares one metric of one operation.
pub fn compare_metric(
    operation: &str,
    metric: Metric,
    base: &[IntervalSample],
    cand: &[IntervalSample],
    tolerance: Percent,
    confidence: f64,
) -> Comparison {
    let (statistic, scale, higher_is_worse) = metric.rule();
    let (bv, cv) = (values(base, metric), values(cand, metric));
    let tol = tolerance.fraction();
    let mut c = Comparison {
        operation: operation.to_owned(),
        metric,
        outcome: Outcome::Inconclusive,
        baseline: None,
        candidate: None,
        change: None,
        change_low: None,
        change_high: None,
        tolerance: tol,
        samples_baseline: bv.len(),
        samples_candidate: cv.len(),
        note: String::new(),
    };
    let Some(est) = stats::bootstrap(
        &bv,
        &cv,
        statistic,
        scale,
        confidence,
        seed_for(operation, metric),
        MIN_SAMPLES,
    ) else {
        c.note = if bv.len() < MIN_SAMPLES || cv.len() < MIN_SAMPLES {
            format!(
                "too few per-second samples ({} baseline, {} candidate; at least {MIN_SAMPLES} each)",
                bv.len(),
                cv.len()
            )
        } else {
            "the baseline is zero; a relative change is undefined".to_owned()
        };
        return c;
    };
    // Oriented so that positive is worse, in the rule's scale.
    let (worse_low, worse_high) = if higher_is_worse {
        (est.low, est.high)
    } else {
        (-est.high, -est.low)
    };
    let bound = match scale {
        Scale::LogRatio => (1.0 + tol).ln(),
        Scale::Difference => tol,
    };
    let worse_point = if higher_is_worse {
        est.point
    } else {
        -est.point
    };
    c.outcome = if worse_low > bound {
        Outcome::Regression
    } else if worse_high < -bound {
        Outcome::Improvement
    } else if worse_point > bound {
        Outcome::Inconclusive
    } else {
        Outcome::Pass
    };
    let shown = |x: f64| match scale {
        Scale::LogRatio => x.exp() - 1.0,
        Scale::Difference => x,
    };
    c.baseline = Some(est.base);
    c.candidate = Some(est.cand);
    c.change = Some(shown(est.point));
    c.change_low = Some(shown(est.low));
    c.change_high = Some(shown(est.high));
    c.note = match c.outcome {
        Outcome::Inconclusive => "the estimate is beyond the tolerance but its confidence interval is not: run more or longer to decide".to_owned(),
        _ => String::new(),
    };
    c
}

/// The gate: every operation × metric with a tolerance, baseline vs candidate.
pub fn compare(baseline: &Samples, candidate: &Samples, spec: &GateSpec) -> Vec<Comparison> {
    let confidence = spec.confidence.fraction();
    let mut out = Vec::new();
    for op in &candidate.operations {
        for metric in Metric::ALL {
            let Some(tolerance) = metric.tolerance(spec, op) else {
                continue;
            };
            out.push(compare_metric(
                op,
                metric,
                baseline.of(op),
                candidate.of(op),
                tolerance,
                confidence,
            ));
        }
    }
    out
}

fn format_us(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2}s", us / 1e6)
    } else if us >= 1_000.0 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{us:.0}us")
    }
}

/// Checks absolute limits against the candidate's gated intervals, all runs merged.
pub fn check_slo(candidate: &Samples, slo: &BTreeMap<String, Slo>) -> Vec<SloCheck> {
    let mut out = Vec::new();
    for (op, limits) in slo {
        let merged = candidate.merged(op);
        let samples = candidate.of(op);
        let mut latency =
            |metric: &str, q: Option<f64>, limit: Option<gauntlet_scenario::Duration>| {
                if let Some(limit) = limit {
                    let limit_us = limit.0.as_micros() as f64;
                    let actual = if merged.is_empty() {
                        None
                    } else {
                        Some(match q {
                            Some(q) => merged.value_at_quantile(q) as f64,
                            None => merged.max() as f64,
                        })
                    };
                    out.push(SloCheck {
                        operation: op.clone(),
                        metric: metric.to_owned(),
                        limit: format!("<= {limit}"),
                        actual: actual.map_or("no successful operations".to_owned(), format_us),
                        passed: actual.is_some_and(|a| a <= limit_us),
                    });
                }
            };
        latency("p50", Some(0.50), limits.p50);
        latency("p90", Some(0.90), limits.p90);
        latency("p99", Some(0.99), limits.p99);
        latency("p99.9", Some(0.999), limits.p999);
        latency("max", None, limits.max);
        let seconds: f64 = samples.iter().map(|s| s.length_s).sum();
        let count: u64 = samples.iter().map(|s| s.count).sum();
        let errors: u64 = samples.iter().map(|s| s.errors).sum();
        // Messages for operations carrying batches of them (an actor send).
        let done: u64 = samples
            .iter()
            .map(|s| s.messages.unwrap_or(s.count - s.errors))
            .sum();
        if let Some(min) = limits.throughput {
            let actual = if seconds > 0.0 {
                done as f64 / seconds
            } else {
                0.0
            };
            out.push(SloCheck {
                operation: op.clone(),
                metric: "throughput".to_owned(),
                limit: min.to_string(),
                actual: format!("{actual:.1}/s"),
                passed: actual >= min.0.0,
            });
        }
        if let Some(max) = limits.errors {
            let rate = if count > 0 {
                errors as f64 / count as f64
            } else {
                0.0
            };
            out.push(SloCheck {
                operation: op.clone(),
                metric: "errors".to_owned(),
                limit: max.to_string(),
                actual: format!("{:.3}%", rate * 100.0),
                passed: count > 0 && rate < max.0.fraction(),
            });
        }
    }
    out
}

impl Verdict {
    pub fn new(
        scenario: &str,
        phases: &[String],
        baseline_runs: Vec<String>,
        candidate_runs: Vec<String>,
        comparisons: Vec<Comparison>,
        slo: Vec<SloCheck>,
    ) -> Self {
        let count = |o: Outcome| comparisons.iter().filter(|c| c.outcome == o).count();
        let regressions = count(Outcome::Regression);
        let slo_failures = slo.iter().filter(|s| !s.passed).count();
        Self {
            scenario: scenario.to_owned(),
            phases: phases.to_vec(),
            rule: RULE.to_owned(),
            baseline_runs,
            candidate_runs,
            improvements: count(Outcome::Improvement),
            inconclusive: count(Outcome::Inconclusive),
            regressions,
            slo_failures,
            passed: regressions == 0 && slo_failures == 0,
            warnings: Vec::new(),
            comparisons,
            slo,
        }
    }
}
