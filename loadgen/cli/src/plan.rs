//! Scenario → Plan: the phase schedule with absolute offsets, the operation
//! table with resolved targets, and the arrival schedule of each phase.
//!
//! The arrival schedule is the heart of the open model: arrival `k` of a
//! phase happens when the integral of its rate reaches `k`, so the count of
//! intended starts in a phase equals the integral of its rate (rounded up),
//! whatever the system under test does.

use std::time::Duration;

use gauntlet_engine::schedule::{Phase, Segment};
use gauntlet_scenario::{RateSpec, Scenario};

/// A phase placed on the run's timeline (the engine's schedule).
pub type PlannedPhase = Phase;

/// The segments of a rate shape over a phase of `d` seconds.
pub fn segments(rate: &RateSpec, d: f64) -> Vec<Segment> {
    let flat = |start: f64, duration: f64, r: f64| Segment {
        start,
        duration,
        from: r,
        to: r,
    };
    match *rate {
        RateSpec::Constant(r) | RateSpec::Soak(r) => vec![flat(0.0, d, r.0)],
        RateSpec::Ramp { from, to } => vec![Segment {
            start: 0.0,
            duration: d,
            from: from.0,
            to: to.0,
        }],
        RateSpec::Steps {
            from,
            to,
            steps,
            every,
        } => {
            let (n, width) = match (steps, every) {
                (Some(n), _) => (n.max(1) as usize, d / f64::from(n.max(1))),
                (None, Some(e)) => {
                    let e = e.as_secs_f64().max(1e-6);
                    (((d / e) - 1e-9).ceil().max(1.0) as usize, e)
                }
                (None, None) => (1, d),
            };
            (0..n)
                .map(|i| {
                    let level = if n == 1 {
                        from.0
                    } else {
                        from.0 + (to.0 - from.0) * i as f64 / (n - 1) as f64
                    };
                    let start = i as f64 * width;
                    flat(start, (d - start).min(width), level)
                })
                .filter(|s| s.duration > 0.0)
                .collect()
        }
        RateSpec::Spike {
            base,
            burst,
            every,
            burst_for,
        } => {
            let e = every.as_secs_f64().max(1e-6);
            let f = burst_for.as_secs_f64().clamp(0.0, e);
            let mut out = Vec::new();
            let mut start = 0.0;
            while start < d && out.len() < 1_000_000 {
                let base_len = (e - f).min(d - start);
                if base_len > 0.0 {
                    out.push(flat(start, base_len, base.0));
                }
                let burst_start = start + (e - f);
                let burst_len = f.min(d - burst_start);
                if burst_len > 0.0 {
                    out.push(flat(burst_start, burst_len, burst.0));
                }
                start += e;
            }
            out
        }
    }
}

pub use gauntlet_drivers::{PlannedOperation, PlannedStep};

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
        let weights: Vec<u32> = scenario
            .workload
            .operations
            .iter()
            .map(|o| o.weight)
            .collect();
        let phases = scenario
            .workload
            .phases
            .iter()
            .map(|p| {
                let mut planned = PlannedPhase::new(
                    p.name.clone(),
                    start,
                    p.duration.0,
                    // A closed-model phase has users, not a rate: no arrivals.
                    p.rate
                        .as_ref()
                        .map_or_else(Vec::new, |r| segments(r, p.duration.as_secs_f64())),
                );
                planned.users = p.users.map(|u| u.bounds());
                planned.weights = match &p.mix {
                    Some(mix) => scenario
                        .workload
                        .operations
                        .iter()
                        .map(|o| mix.get(&o.name).copied().unwrap_or(0))
                        .collect(),
                    None => weights.clone(),
                };
                start += p.duration.0;
                planned
            })
            .collect();
        let ops = &scenario.workload.operations;
        let mut next_record = ops.len();
        let operations = ops
            .iter()
            .map(|op| {
                let service = gauntlet_scenario::target_service(&scenario, &op.action)
                    .unwrap_or_default()
                    .to_owned();
                let steps = op
                    .then
                    .iter()
                    .map(|step| {
                        next_record += 1;
                        PlannedStep {
                            name: op.step_name(step),
                            action: step.action.clone(),
                            service: step
                                .action
                                .service()
                                .map_or_else(|| service.clone(), str::to_owned),
                            record_as: next_record - 1,
                        }
                    })
                    .collect();
                PlannedOperation {
                    name: op.name.clone(),
                    weight: op.weight,
                    action: op.action.clone(),
                    service,
                    steps,
                }
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

    /// Names the recorder reports: every operation, then every chained step.
    pub fn recorded_names(&self) -> Vec<String> {
        self.operations
            .iter()
            .map(|o| o.name.clone())
            .chain(
                self.operations
                    .iter()
                    .flat_map(|o| o.steps.iter().map(|s| s.name.clone())),
            )
            .collect()
    }

    /// Messages each recorded operation carries when it succeeds, in the
    /// order of [`Self::recorded_names`]: an actor send's or publish's
    /// batch; 0 for operations not counted in messages.
    pub fn messages_per_operation(&self) -> Vec<u64> {
        let batch = |a: &gauntlet_scenario::Action| match (a.actors(), a.reflow()) {
            (Some(gauntlet_scenario::ActorsAction::Send(s)), _) => u64::from(s.batch),
            (Some(gauntlet_scenario::ActorsAction::Publish(p)), _) => u64::from(p.batch),
            (_, Some(gauntlet_scenario::ReflowAction::Send(s))) => u64::from(s.batch),
            _ => 0,
        };
        self.operations
            .iter()
            .map(|o| batch(&o.action))
            .chain(
                self.operations
                    .iter()
                    .flat_map(|o| o.steps.iter().map(|s| batch(&s.action))),
            )
            .collect()
    }

    /// What the engine needs of the plan: the schedule, the mix and the limits.
    pub fn load(&self) -> gauntlet_engine::Load {
        gauntlet_engine::Load {
            phases: self.phases.clone(),
            operations: self
                .operations
                .iter()
                .map(|o| (o.name.clone(), o.weight))
                .collect(),
            max_in_flight: self.max_in_flight,
            timeout: self.timeout,
            late_after: self.late_after,
            think_time: self.scenario.workload.think_time.map(|d| d.0),
            seed: self.seed,
        }
    }

    /// Each phase's operation weights, in phase order.
    pub fn phase_weights(&self) -> Vec<Vec<u32>> {
        self.phases.iter().map(|p| p.weights.clone()).collect()
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
    use gauntlet_scenario::{Duration as D, Rate};
    use proptest::prelude::*;

    fn phase(from: f64, to: f64, ms: u64) -> PlannedPhase {
        let d = ms as f64 / 1_000.0;
        let rate = RateSpec::Ramp {
            from: Rate(from),
            to: Rate(to),
        };
        shaped(&rate, ms, d)
    }

    fn shaped(rate: &RateSpec, ms: u64, d: f64) -> PlannedPhase {
        PlannedPhase::new(
            "p".into(),
            Duration::ZERO,
            Duration::from_millis(ms),
            segments(rate, d),
        )
    }

    /// Arrivals the schedule yields inside the phase, counted one by one.
    fn walk(p: &PlannedPhase) -> u64 {
        (0..p.arrival_count() + 3)
            .filter(|&k| p.arrival_offset(k) < p.duration)
            .count() as u64
    }

    /// Arrivals with an offset in `[a, b)` seconds.
    fn arrivals_between(p: &PlannedPhase, a: f64, b: f64) -> u64 {
        (0..p.arrival_count())
            .map(|k| p.arrival_offset(k).as_secs_f64())
            .filter(|t| *t >= a - 1e-9 && *t < b - 1e-9)
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

    #[test]
    fn steps_hold_each_level_for_their_share() {
        let rate = RateSpec::Steps {
            from: Rate(100.0),
            to: Rate(400.0),
            steps: Some(4),
            every: None,
        };
        let p = shaped(&rate, 4_000, 4.0);
        assert_eq!(p.arrival_count(), 100 + 200 + 300 + 400);
        for (i, want) in [100, 200, 300, 400].into_iter().enumerate() {
            assert_eq!(
                arrivals_between(&p, i as f64, i as f64 + 1.0),
                want,
                "step {i}"
            );
        }
        // `every` with a shorter last step: levels 0s,3s,6s,9s of 10s.
        let rate = RateSpec::Steps {
            from: Rate(10.0),
            to: Rate(40.0),
            steps: None,
            every: Some(D::from_secs(3)),
        };
        let p = shaped(&rate, 10_000, 10.0);
        assert_eq!(p.segments.len(), 4);
        assert_eq!(p.arrival_count(), 30 + 60 + 90 + 40);
        assert_eq!(arrivals_between(&p, 9.0, 10.0), 40);
    }

    #[test]
    fn spikes_burst_at_the_end_of_every_period() {
        let rate = RateSpec::Spike {
            base: Rate(10.0),
            burst: Rate(1_000.0),
            every: D::from_secs(5),
            burst_for: D::from_secs(1),
        };
        let p = shaped(&rate, 10_000, 10.0);
        assert_eq!(p.arrival_count(), 2 * (40 + 1_000));
        assert_eq!(arrivals_between(&p, 4.0, 5.0), 1_000);
        assert_eq!(arrivals_between(&p, 5.0, 9.0), 40);
        assert_eq!(arrivals_between(&p, 9.0, 10.0), 1_000);
    }

    #[test]
    fn a_phase_mix_replaces_the_weights() {
        let text = r#"
name: mix
stack: { services: { fabric: { kind: fabric } } }
workload:
  phases:
    - { name: a, duration: 1s, rate: 10/s }
    - { name: b, duration: 1s, rate: 10/s, mix: { read: 3 } }
  operations:
    - { name: append, weight: 2, fabric.stream.append: { stream: t/n/s } }
    - { name: read, fabric.stream.read: { stream: t/n/s }, then: [ { fabric.stream.commit: { group: g } } ] }
"#;
        let plan = Plan::new(gauntlet_scenario::load("m.yaml", text, &[]).unwrap());
        assert_eq!(plan.phase_weights(), vec![vec![2, 1], vec![0, 3]]);
        assert_eq!(plan.recorded_names(), vec!["append", "read", "read.commit"]);
        assert_eq!(plan.operations[1].steps[0].record_as, 2);
        assert_eq!(plan.operations[1].steps[0].service, "fabric");
    }

    /// Every phase shape, with arbitrary parameters.
    fn any_shape() -> impl Strategy<Value = (RateSpec, u64)> {
        let rate = || (0.0f64..3_000.0).prop_map(Rate);
        prop_oneof![
            (rate(), 1u64..4_000).prop_map(|(r, ms)| (RateSpec::Constant(r), ms)),
            (rate(), 1u64..4_000).prop_map(|(r, ms)| (RateSpec::Soak(r), ms)),
            (rate(), rate(), 1u64..4_000)
                .prop_map(|(from, to, ms)| (RateSpec::Ramp { from, to }, ms)),
            (rate(), rate(), 2u32..12, 1u64..4_000).prop_map(|(from, to, n, ms)| (
                RateSpec::Steps {
                    from,
                    to,
                    steps: Some(n),
                    every: None
                },
                ms
            )),
            (rate(), rate(), 1u64..2_000, 2u64..4_000).prop_map(|(from, to, every, ms)| (
                RateSpec::Steps {
                    from,
                    to,
                    steps: None,
                    every: Some(D(Duration::from_millis(every.min(ms - 1).max(1))))
                },
                ms
            )),
            (rate(), rate(), 2u64..2_000, 1u64..100, 2u64..4_000).prop_map(
                |(base, burst, every, f, ms)| {
                    let every = every.min(ms);
                    (
                        RateSpec::Spike {
                            base,
                            burst,
                            every: D(Duration::from_millis(every)),
                            burst_for: D(Duration::from_millis(f.min(every - 1).max(1))),
                        },
                        ms,
                    )
                }
            ),
        ]
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

        /// For every shape (constant, ramp, steps, spike, soak): the intended
        /// starts of the phase number the integral of its rate, and each
        /// segment (step, burst) gets the integral of its own rate.
        #[test]
        fn every_shape_schedules_the_integral_of_its_rate((rate, ms) in any_shape()) {
            let d = ms as f64 / 1_000.0;
            let p = shaped(&rate, ms, d);
            let integral: f64 = p.segments.iter().map(|s| (s.from + s.to) / 2.0 * s.duration).sum();
            let n = p.arrival_count();
            prop_assert!((n as f64 - integral).abs() <= 1.0, "n={n} integral={integral}");
            if integral > 0.0 {
                prop_assert_eq!(walk(&p), n);
            }
            // Per segment, within one arrival at each edge.
            for s in &p.segments {
                let got = arrivals_between(&p, s.start, s.start + s.duration) as f64;
                let want = (s.from + s.to) / 2.0 * s.duration;
                prop_assert!((got - want).abs() <= 2.0, "segment {s:?}: {got} vs {want}");
            }
            // Segments tile the phase.
            let covered: f64 = p.segments.iter().map(|s| s.duration).sum();
            prop_assert!((covered - d).abs() < 1e-6, "{covered} vs {d}");
        }

        /// Arrivals are in order and inside the phase.
        #[test]
        fn arrivals_are_monotonic((rate, ms) in any_shape()) {
            let p = shaped(&rate, ms, ms as f64 / 1_000.0);
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
