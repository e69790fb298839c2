use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::samples::IntervalSample;
use super::verdict::{Metric, Outcome, compare_metric};
use gauntlet_scenario::Percent;

/// `n` seconds of `per_s` operations whose latency is `scale` × a noisy base.
fn seconds(n: usize, per_s: u64, scale: f64, seed: u64) -> Vec<IntervalSample> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut h = gauntlet_recorder::new_histogram();
            for _ in 0..per_s {
                // A body and an exponential tail, like a real service's latency.
                let u: f64 = rng.random_range(1e-9..1.0);
                let base: f64 = 800.0 + rng.random_range(0.0..400.0) - u.ln() * 200.0;
                h.saturating_record((base * scale) as u64);
            }
            IntervalSample {
                run: 0,
                t_s: i as f64,
                length_s: 1.0,
                count: (per_s as f64 / scale.max(1.0)) as u64,
                errors: 0,
                messages: None,
                histogram: h,
            }
        })
        .collect()
}

fn outcome(metric: Metric, base: &[IntervalSample], cand: &[IntervalSample], tol: f64) -> Outcome {
    compare_metric("op", metric, base, cand, Percent(tol), 0.95).outcome
}

#[test]
fn too_few_samples_are_inconclusive() {
    let base = seconds(3, 200, 1.0, 1);
    let c = compare_metric("op", Metric::P99, &base, &base, Percent(10.0), 0.95);
    assert_eq!(c.outcome, Outcome::Inconclusive);
    assert!(c.note.contains("too few"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// The same samples on both sides always pass.
    #[test]
    fn identical_samples_pass(n in 5usize..40, seed in 0u64..1000, tol in 1.0f64..50.0) {
        let s = seconds(n, 200, 1.0, seed);
        for metric in Metric::ALL {
            prop_assert_eq!(outcome(metric, &s, &s, tol), Outcome::Pass, "{:?}", metric);
        }
    }

    /// Independent samples of the same system are never called a regression
    /// at a 10 % tolerance.
    #[test]
    fn same_system_is_not_a_regression(seed in 0u64..1000) {
        let a = seconds(20, 300, 1.0, seed);
        let b = seconds(20, 300, 1.0, seed + 10_000);
        for metric in [Metric::P50, Metric::P99, Metric::Throughput] {
            prop_assert_ne!(outcome(metric, &a, &b, 10.0), Outcome::Regression);
        }
    }

    /// A latency shift well beyond the tolerance is a regression, and the
    /// verdict is symmetric: swapping the sides makes it an improvement.
    #[test]
    fn a_shift_beyond_tolerance_is_a_regression_and_symmetric(seed in 0u64..1000, factor in 1.35f64..3.0) {
        let base = seconds(20, 300, 1.0, seed);
        let slow = seconds(20, 300, factor, seed + 1);
        for metric in [Metric::P50, Metric::P99] {
            prop_assert_eq!(outcome(metric, &base, &slow, 10.0), Outcome::Regression, "{:?}", metric);
            prop_assert_eq!(outcome(metric, &slow, &base, 10.0), Outcome::Improvement, "{:?}", metric);
        }
        // Throughput falls by the factor: lower is worse.
        prop_assert_eq!(outcome(Metric::Throughput, &base, &slow, 5.0), Outcome::Regression);
        prop_assert_eq!(outcome(Metric::Throughput, &slow, &base, 5.0), Outcome::Improvement);
    }
}

#[test]
fn error_rates_compare_in_points() {
    let base = seconds(10, 100, 1.0, 5);
    let mut bad = base.clone();
    for s in &mut bad {
        s.errors = s.count / 10; // 10 % errors
    }
    assert_eq!(
        outcome(Metric::Errors, &base, &bad, 1.0),
        Outcome::Regression
    );
    assert_eq!(outcome(Metric::Errors, &base, &base, 1.0), Outcome::Pass);
}

#[test]
fn the_bundled_profiles_load_and_carry_seed_001s_thresholds() {
    use gauntlet_scenario::Duration as D;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ci/profiles");
    let fabric = gauntlet_scenario::load_profile_file(&dir.join("fabric.yaml")).unwrap();
    assert!(fabric.slo.contains_key("append") && fabric.gate.is_some());
    let actors = gauntlet_scenario::load_profile_file(&dir.join("actors-seed001.yaml")).unwrap();
    // Seed 001's throughput alert (< 100k msg/s), in messages at the sink;
    // its in-process p99 thresholds are gated relative to the baselines.
    assert_eq!(actors.slo["message"].throughput.unwrap().0.0, 100_000.0);
    for op in [
        "spawn",
        "lifecycle",
        "routing",
        "request_response",
        "fanout_100",
        "message",
        "registry_lookup",
    ] {
        assert!(actors.slo[op].errors.is_some(), "{op}");
        assert_eq!(actors.slo[op].p99, None::<D>, "{op}");
    }
    assert_eq!(actors.gate.unwrap().phases, ["steady"]);
    // The tracing tier: fan-out across replicas p99 <= 10 ms (the issue's
    // target), every operation without errors.
    let tracing = gauntlet_scenario::load_profile_file(&dir.join("tracing.yaml")).unwrap();
    for op in ["fanout_1to2", "fanout_2to1"] {
        assert_eq!(tracing.slo[op].p99, Some(D::from_millis(10)), "{op}");
    }
    for op in ["record", "trace.get", "insert", "fanout_lb"] {
        assert!(tracing.slo[op].errors.is_some(), "{op}");
    }
    assert!(tracing.gate.is_some());
}

/// A profile serving several scenarios applies the criteria of the
/// operations a run has and says which it left out; a profile naming none
/// of them is still a mismatch.
#[test]
fn a_profile_applies_to_the_operations_a_run_has() {
    let profile: gauntlet_scenario::Profile = serde_json::from_value(serde_json::json!({
        "slo": { "message": { "errors": "< 1%" }, "spawn": { "errors": "< 1%" } },
        "gate": { "operations": { "spawn": { "p99": "20%" } } }
    }))
    .unwrap();
    let samples = super::samples::Samples {
        scenario: "actors-pipeline".into(),
        operations: vec!["message".into(), "routing".into()],
        phases: vec!["steady".into()],
        runs: Vec::new(),
        intervals: Default::default(),
    };
    let mut slo = profile.slo.clone();
    let mut gate = profile.gate.clone().unwrap();
    let warnings = super::apply_to(&mut slo, &mut gate, &samples);
    assert_eq!(slo.keys().collect::<Vec<_>>(), ["message"]);
    assert!(gate.operations.is_empty());
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("`spawn`"), "{warnings:?}");
    assert!(super::check_names(&slo, &gate, &samples).is_ok());
    // Nothing of the profile in the run: left for `check_names` to refuse.
    let other = super::samples::Samples {
        operations: vec!["append".into()],
        ..samples
    };
    let mut slo = profile.slo.clone();
    let mut gate = profile.gate.clone().unwrap();
    assert!(super::apply_to(&mut slo, &mut gate, &other).is_empty());
    assert!(super::check_names(&slo, &gate, &other).is_err());
}

/// `off` leaves a metric out of the gate: a candidate 3× slower is no
/// p99 regression when p99 is off, while throughput is still compared.
#[test]
fn a_metric_switched_off_is_not_compared() {
    let spec: gauntlet_scenario::GateSpec = serde_json::from_str(
        r#"{"default": {"p50": "off", "p99": "off", "p999": "off"}, "operations": {"op": {"errors": "off"}}}"#,
    )
    .unwrap();
    let samples = |scale: f64| super::samples::Samples {
        scenario: "s".into(),
        operations: vec!["op".into()],
        phases: vec!["steady".into()],
        runs: Vec::new(),
        intervals: [("op".to_owned(), seconds(30, 200, scale, 7))].into(),
    };
    let comparisons = super::verdict::compare(&samples(1.0), &samples(3.0), &spec);
    let metrics: Vec<Metric> = comparisons.iter().map(|c| c.metric).collect();
    assert_eq!(metrics, vec![Metric::Throughput], "{comparisons:#?}");
    // With p99 on, the same candidate is a regression.
    let spec: gauntlet_scenario::GateSpec =
        serde_json::from_str(r#"{"default": {"p99": "10%"}}"#).unwrap();
    let comparisons = super::verdict::compare(&samples(1.0), &samples(3.0), &spec);
    let p99 = comparisons
        .iter()
        .find(|c| c.metric == Metric::P99)
        .unwrap();
    assert_eq!(p99.outcome, Outcome::Regression);
}
