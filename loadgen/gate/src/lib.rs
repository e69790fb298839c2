//! Gauntlet's release gate: decides whether a candidate is slower than a
//! baseline, on noisy machines, without crying wolf.
//!
//! Data flow: run directories → [`samples`] (per-second histograms and
//! counts of the gated phases) → [`baseline`] files that keep them → the
//! statistical rule of [`verdict`] (bootstrap intervals from [`stats`]) and
//! the scenario's SLO limits → a [`Verdict`] → [`output`] (`verdict.json`,
//! `junit.xml`, `summary.md`).
//!
//! The crate reads run directories and baseline files only; it never runs
//! anything and never talks to the system under test.

pub mod baseline;
pub mod output;
pub mod samples;
pub mod stats;
pub mod verdict;

use std::path::PathBuf;

pub use baseline::Baseline;
pub use samples::{Samples, read_run, read_runs};
pub use verdict::{Comparison, Metric, Outcome, SloCheck, Verdict};

use gauntlet_scenario::{GateSpec, Profile, Scenario};

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// Missing or unreadable input (exit code 2).
    #[error("{0}")]
    Input(String),
    /// Runs and baseline are not of the same scenario (exit code 2).
    #[error("{0}")]
    Mismatch(String),
    /// Writing outputs failed (exit code 3).
    #[error("{0}")]
    Io(String),
}

/// The criteria a gate applies: the scenario's `slo:`/`gate:`, replaced
/// section by section by a profile's when one is given.
pub fn criteria(
    scenario: &Scenario,
    profile: Option<&Profile>,
) -> (
    std::collections::BTreeMap<String, gauntlet_scenario::Slo>,
    GateSpec,
) {
    let mut slo = scenario.slo.clone();
    let mut gate = scenario.gate.clone().unwrap_or_default();
    if let Some(p) = profile {
        if !p.slo.is_empty() {
            slo = p.slo.clone();
        }
        if let Some(g) = &p.gate {
            gate = g.clone();
        }
    }
    (slo, gate)
}

/// Reads the resolved scenario of a run directory.
pub fn run_scenario(dir: &std::path::Path) -> Result<Scenario, GateError> {
    let path = dir.join("scenario.yaml");
    if !path.is_file() {
        return Err(GateError::Input(format!(
            "{} is not a run directory written by `loadgen run` (no scenario.yaml)",
            dir.display()
        )));
    }
    gauntlet_scenario::load_file(&path, &[]).map_err(|d| {
        GateError::Input(format!(
            "{}: {}",
            path.display(),
            d.first().map_or_else(String::new, |d| d.message.clone())
        ))
    })
}

/// Checks that every operation named by the criteria exists in the runs.
pub fn check_names(
    slo: &std::collections::BTreeMap<String, gauntlet_scenario::Slo>,
    gate: &GateSpec,
    samples: &Samples,
) -> Result<(), GateError> {
    for op in slo.keys().chain(gate.operations.keys()) {
        if !samples.operations.contains(op) {
            return Err(GateError::Mismatch(format!(
                "the criteria name operation `{op}`, which scenario `{}` does not have (operations: {})",
                samples.scenario,
                samples.operations.join(", ")
            )));
        }
    }
    Ok(())
}

/// A profile serves several scenarios (`actors-seed001.yaml` names the
/// operations of every actor scenario): the criteria of operations a run
/// does not have are left out, each with a warning. Fails only when none
/// of the profile's operations is in the run (the wrong profile).
fn apply_to(
    slo: &mut std::collections::BTreeMap<String, gauntlet_scenario::Slo>,
    gate: &mut GateSpec,
    samples: &Samples,
) -> Vec<String> {
    let named: std::collections::BTreeSet<String> =
        slo.keys().chain(gate.operations.keys()).cloned().collect();
    let missing: std::collections::BTreeSet<String> = named
        .iter()
        .filter(|op| !samples.operations.contains(op))
        .cloned()
        .collect();
    if missing.len() == named.len() {
        // None applies: `check_names` reports the mismatch.
        return Vec::new();
    }
    slo.retain(|op, _| !missing.contains(op));
    gate.operations.retain(|op, _| !missing.contains(op));
    missing
        .iter()
        .map(|op| {
            format!(
                "the profile's criteria for operation `{op}` were not applied: scenario `{}` has no such operation",
                samples.scenario
            )
        })
        .collect()
}

/// The whole gate: candidate runs against a baseline (or SLOs only without one).
pub fn gate(
    candidates: &[PathBuf],
    baseline: Option<&Baseline>,
    profile: Option<&Profile>,
) -> Result<Verdict, GateError> {
    let first = candidates
        .first()
        .ok_or_else(|| GateError::Input("no candidate run directory given".to_owned()))?;
    let scenario = run_scenario(first)?;
    let (mut slo, mut spec) = criteria(&scenario, profile);
    let phases = match baseline {
        Some(b) => b.phases.clone(),
        None => spec.phases.clone(),
    };
    let cand = read_runs(candidates, &phases)?;
    let mut warnings: Vec<String> = Vec::new();
    if profile.is_some() {
        warnings.extend(apply_to(&mut slo, &mut spec, &cand));
    }
    check_names(&slo, &spec, &cand)?;
    let (comparisons, baseline_runs) = match baseline {
        Some(b) => {
            if b.scenario != cand.scenario || b.operations != cand.operations {
                return Err(GateError::Mismatch(format!(
                    "the baseline is scenario `{}` with operations [{}]; the candidate is `{}` with [{}] (hint: gate against the baseline of the same scenario, or refresh it)",
                    b.scenario,
                    b.operations.join(", "),
                    cand.scenario,
                    cand.operations.join(", ")
                )));
            }
            let base = b.to_samples()?;
            (
                verdict::compare(&base, &cand, &spec),
                b.runs.iter().map(|r| r.dir.clone()).collect(),
            )
        }
        None => (Vec::new(), Vec::new()),
    };
    let slo_checks = verdict::check_slo(&cand, &slo);
    let base_runs = baseline.map(|b| b.runs.as_slice()).unwrap_or_default();
    for run in cand.runs.iter().chain(base_runs) {
        if let Some(why) = &run.not_a_measurement {
            warnings.push(format!(
                "{} is not a measurement of the system: {why}",
                run.dir
            ));
        }
    }
    let mut v = Verdict::new(
        &cand.scenario,
        &cand.phases,
        baseline_runs,
        cand.runs.iter().map(|r| r.dir.clone()).collect(),
        comparisons,
        slo_checks,
    );
    v.warnings = warnings;
    Ok(v)
}

#[cfg(test)]
mod tests;
