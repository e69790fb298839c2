//! The statistics of the gate: a circular block bootstrap of the change in a
//! statistic of per-second samples between a baseline and a candidate.
//!
//! Per-second samples of a run are autocorrelated (a slow second tends to
//! follow a slow second), so resampling single seconds would understate the
//! noise; resampling blocks of ⌈n^⅓⌉ consecutive seconds (wrapping around)
//! keeps that structure. The bootstrap is seeded, so the same inputs always
//! give the same interval.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Resamples drawn for each interval estimate.
pub const RESAMPLES: usize = 2000;

/// The statistic summarising one side's per-second samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    /// Robust to a few odd seconds: used for latency percentiles.
    Median,
    /// Additive quantities: throughput, error rate.
    Mean,
}

impl Statistic {
    pub fn of(self, values: &mut [f64]) -> f64 {
        match self {
            Statistic::Mean => values.iter().sum::<f64>() / values.len() as f64,
            Statistic::Median => {
                values.sort_by(f64::total_cmp);
                let n = values.len();
                if n % 2 == 1 {
                    values[n / 2]
                } else {
                    (values[n / 2 - 1] + values[n / 2]) / 2.0
                }
            }
        }
    }
}

/// How the change between the two sides is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// `ln(candidate / baseline)`: symmetric, so a swap of the sides negates it.
    LogRatio,
    /// `candidate − baseline`: for quantities near zero (error rates).
    Difference,
}

impl Scale {
    fn change(self, base: f64, cand: f64) -> Option<f64> {
        match self {
            Scale::LogRatio if base > 0.0 && cand > 0.0 => Some((cand / base).ln()),
            Scale::LogRatio => None,
            Scale::Difference => Some(cand - base),
        }
    }
}

/// A point estimate of the change with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub base: f64,
    pub cand: f64,
    pub point: f64,
    pub low: f64,
    pub high: f64,
}

/// One circular block-bootstrap resample of `values`, into `out`.
fn resample(values: &[f64], block: usize, rng: &mut ChaCha8Rng, out: &mut Vec<f64>) {
    out.clear();
    let n = values.len();
    while out.len() < n {
        let start = rng.random_range(0..n);
        for i in 0..block.min(n - out.len()) {
            out.push(values[(start + i) % n]);
        }
    }
}

fn block_length(n: usize) -> usize {
    ((n as f64).cbrt().ceil() as usize).max(1)
}

/// The change of `statistic` from `base` to `cand` with a `confidence`
/// (e.g. 0.95) percentile interval; `None` when a side has fewer than
/// `min_samples` values or the change is undefined (a zero baseline on a
/// log scale).
pub fn bootstrap(
    base: &[f64],
    cand: &[f64],
    statistic: Statistic,
    scale: Scale,
    confidence: f64,
    seed: u64,
    min_samples: usize,
) -> Option<Change> {
    if base.len() < min_samples || cand.len() < min_samples {
        return None;
    }
    let base_stat = statistic.of(&mut base.to_vec());
    let cand_stat = statistic.of(&mut cand.to_vec());
    let point = scale.change(base_stat, cand_stat)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (bb, cb) = (block_length(base.len()), block_length(cand.len()));
    let mut changes = Vec::with_capacity(RESAMPLES);
    let (mut rb, mut rc) = (Vec::new(), Vec::new());
    for _ in 0..RESAMPLES {
        resample(base, bb, &mut rng, &mut rb);
        resample(cand, cb, &mut rng, &mut rc);
        if let Some(c) = scale.change(statistic.of(&mut rb), statistic.of(&mut rc)) {
            changes.push(c);
        }
    }
    if changes.len() < RESAMPLES / 2 {
        return None;
    }
    changes.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| {
        changes[((q * (changes.len() - 1) as f64).round() as usize).min(changes.len() - 1)]
    };
    Some(Change {
        base: base_stat,
        cand: cand_stat,
        point,
        low: at(tail),
        high: at(1.0 - tail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mean() {
        assert_eq!(Statistic::Median.of(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(Statistic::Median.of(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(Statistic::Mean.of(&mut [1.0, 2.0, 3.0]), 2.0);
    }

    #[test]
    fn the_interval_contains_the_point_and_is_deterministic() {
        let base: Vec<f64> = (0..30).map(|i| 100.0 + (i % 7) as f64).collect();
        let cand: Vec<f64> = (0..30).map(|i| 120.0 + (i % 5) as f64).collect();
        let a = bootstrap(&base, &cand, Statistic::Median, Scale::LogRatio, 0.95, 1, 5).unwrap();
        let b = bootstrap(&base, &cand, Statistic::Median, Scale::LogRatio, 0.95, 1, 5).unwrap();
        assert_eq!(a, b);
        assert!(a.low <= a.point && a.point <= a.high);
        assert!(a.low > 0.0, "a 20% shift is clearly positive: {a:?}");
    }

    #[test]
    fn too_few_samples_give_no_estimate() {
        assert!(
            bootstrap(
                &[1.0, 2.0],
                &[1.0, 2.0, 3.0],
                Statistic::Mean,
                Scale::Difference,
                0.95,
                1,
                3
            )
            .is_none()
        );
        assert!(
            bootstrap(
                &[0.0; 10],
                &[1.0; 10],
                Statistic::Mean,
                Scale::LogRatio,
                0.95,
                1,
                3
            )
            .is_none()
        );
    }
}
