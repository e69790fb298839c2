//! Scenario → Plan: the phase schedule with absolute offsets, the operation
//! table with resolved targets, and the arrival schedule of each phase.
//!
//! The arrival schedule is the heart of the open model: arrival `k` of a
//! phase happens when the integral of its rate reaches `k`, so the count of
//! intended starts in a phase equals the integral of its rate (rounded up),
//! whatever the system under test does.

use std::time::Duration;

use gauntlet_scenario::{Action, RateSpec, Scenario};

/// A phase placed on the run's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedPhase {
    pub name: String,
    /// Offset of the phase's start from the run's start.
    pub start: Duration,
    pub duration: Duration,
    /// Rate at the phase's start and end (equal for a constant rate), per second.
    pub from_per_s: f64,
    pub to_per_s: f64,
}

impl PlannedPhase {
    /// Integral of the rate over the whole phase: the operations it asks for.
    pub fn expected_arrivals(&self) -> f64 {
        (self.from_per_s + self.to_per_s) / 2.0 * self.duration.as_secs_f64()
    }

    /// Number of arrivals the schedule produces: those with an offset inside
    /// the phase, which is ⌈integral⌉ up to floating-point rounding (arrival 0
    /// is at t = 0).
    pub fn arrival_count(&self) -> u64 {
        let expected = self.expected_arrivals();
        if expected <= 0.0 {
            return 0;
        }
        let mut n = expected.ceil() as u64;
        while n > 0 && self.arrival_offset(n - 1) >= self.duration {
            n -= 1;
        }
        while self.arrival_offset(n) < self.duration {
            n += 1;
        }
        n
    }

    /// Offset, from the phase's start, of arrival `k`: the time at which the
    /// rate's integral `r0·t + (r1−r0)·t²/(2d)` equals `k`.
    pub fn arrival_offset(&self, k: u64) -> Duration {
        if k == 0 {
            return Duration::ZERO;
        }
        let d = self.duration.as_secs_f64();
        let b = self.from_per_s;
        let a = (self.to_per_s - self.from_per_s) / (2.0 * d);
        let k = k as f64;
        // t = 2k / (b + sqrt(b² + 4ak)): the stable root, valid for a ≥ 0 and a < 0.
        let disc = (b * b + 4.0 * a * k).max(0.0);
        let denom = b + disc.sqrt();
        let t = if denom > 0.0 { 2.0 * k / denom } else { d };
        Duration::from_secs_f64(t.min(d))
    }

    pub fn mean_rate(&self) -> f64 {
        (self.from_per_s + self.to_per_s) / 2.0
    }
}

/// One operation of the mix with its resolved target.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedOperation {
    pub name: String,
    pub weight: u32,
    pub action: Action,
    /// The service (by scenario name) the operation is sent to.
    pub service: String,
}

/// Everything the engine needs, derived once from a validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub scenario: Scenario,
    pub phases: Vec<PlannedPhase>,
    pub operations: Vec<PlannedOperation>,
    pub max_in_flight: usize,
    pub timeout: Duration,
    pub late_after: Duration,
    pub seed: u64,
}

impl Plan {
    /// Builds the plan. The scenario must have passed validation, which
    /// guarantees every operation's target resolves.
    pub fn new(scenario: Scenario) -> Self {
        let mut start = Duration::ZERO;
        let phases = scenario
            .workload
            .phases
            .iter()
            .map(|p| {
                // A closed-model phase has users, not a rate: no arrivals.
                let (from, to) = match p.rate {
                    Some(RateSpec::Constant(r)) => (r.0, r.0),
                    Some(RateSpec::Ramp { from, to }) => (from.0, to.0),
                    None => (0.0, 0.0),
                };
                let planned = PlannedPhase {
                    name: p.name.clone(),
                    start,
                    duration: p.duration.0,
                    from_per_s: from,
                    to_per_s: to,
                };
                start += p.duration.0;
                planned
            })
            .collect();
        let operations = scenario
            .workload
            .operations
            .iter()
            .map(|op| PlannedOperation {
                name: op.name.clone(),
                weight: op.weight,
                action: op.action.clone(),
                service: gauntlet_scenario::target_service(&scenario, &op.action)
                    .unwrap_or_default()
                    .to_owned(),
            })
            .collect();
        Self {
            max_in_flight: scenario.workload.max_in_flight as usize,
            timeout: scenario.workload.timeout.0,
            late_after: scenario.workload.late_after.0,
            seed: scenario.seed,
            phases,
            operations,
            scenario,
        }
    }

    pub fn total_duration(&self) -> Duration {
        self.phases.iter().map(|p| p.duration).sum()
    }

    pub fn total_arrivals(&self) -> u64 {
        self.phases.iter().map(PlannedPhase::arrival_count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn phase(from: f64, to: f64, ms: u64) -> PlannedPhase {
        PlannedPhase {
            name: "p".into(),
            start: Duration::ZERO,
            duration: Duration::from_millis(ms),
            from_per_s: from,
            to_per_s: to,
        }
    }

    /// Arrivals the schedule yields inside the phase, counted one by one.
    fn walk(p: &PlannedPhase) -> u64 {
        (0..p.arrival_count() + 3)
            .filter(|&k| p.arrival_offset(k) < p.duration)
            .count() as u64
    }

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let p = phase(100.0, 100.0, 1_000);
        assert_eq!(p.arrival_count(), 100);
        assert_eq!(p.arrival_offset(1), Duration::from_millis(10));
        assert_eq!(p.arrival_offset(50), Duration::from_millis(500));
    }

    #[test]
    fn a_ramp_from_zero_starts_slowly() {
        let p = phase(0.0, 200.0, 1_000);
        assert_eq!(p.arrival_count(), 100);
        // Half the arrivals come in the last ~29% of the phase.
        let mid = p.arrival_offset(50).as_secs_f64();
        assert!(
            (mid - std::f64::consts::FRAC_1_SQRT_2).abs() < 0.001,
            "{mid}"
        );
    }

    proptest! {
        /// The count of intended starts in a phase matches its rate integral.
        #[test]
        fn arrival_count_matches_the_rate_integral(from in 0.0f64..5_000.0, to in 0.0f64..5_000.0, ms in 1u64..4_000) {
            let p = phase(from, to, ms);
            let integral = (from + to) / 2.0 * ms as f64 / 1_000.0;
            let n = p.arrival_count();
            prop_assert!((n as f64 - integral).abs() <= 1.0, "n={n} integral={integral}");
            if integral > 0.0 {
                prop_assert_eq!(walk(&p), n);
            }
        }

        /// Arrivals are in order and inside the phase.
        #[test]
        fn arrivals_are_monotonic(from in 0.0f64..2_000.0, to in 0.0f64..2_000.0, ms in 1u64..2_000) {
            let p = phase(from, to, ms);
            let mut last = Duration::ZERO;
            for k in 0..p.arrival_count() {
                let t = p.arrival_offset(k);
                prop_assert!(t >= last);
                prop_assert!(t <= p.duration);
                last = t;
            }
        }
    }
}
