//! The scenario's `profile:` section: which services are CPU-profiled
//! (each bundled service serves `GET /debug/pprof/profile`; `loadgen` is
//! the harness itself), in which phases and fault windows, at what
//! sampling frequency — and its rules.
//!
//! ```yaml
//! profile:
//!   services: [fabric, loadgen]
//!   frequency: 99          # Hz, 1–1000
//!   phases: [steady]       # default: every phase
//!   faults: [crash]        # default: every fault window; [] for none
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{Scenario, ServiceKind};
use crate::tree::Seg;
use crate::validate::Problem;

/// The name that profiles the harness itself.
pub const LOADGEN: &str = "loadgen";
/// The default sampling frequency, Hz (off the beat of 100 Hz timers).
pub const DEFAULT_FREQUENCY: u32 = 99;
/// The highest sampling frequency a service accepts.
pub const MAX_FREQUENCY: u32 = 1000;

/// What to profile while the load runs (`profiles/<service>/<window>.pb.gz`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// Services to profile, by name (bundled kinds: `fabric`, `actors`,
    /// `tracing`), and `loadgen` for the harness itself.
    pub services: Vec<String>,
    /// Sampling frequency in Hz, 1–1000 (default 99).
    #[serde(default = "default_frequency")]
    pub frequency: u32,
    /// Phases to profile, by name (default: every phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<Vec<String>>,
    /// Faults whose windows are profiled, by the fault's name (every
    /// repeat) or a window's (`crash#2`); default: every fault window;
    /// `[]` for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<Vec<String>>,
}

fn default_frequency() -> u32 {
    DEFAULT_FREQUENCY
}

/// Kinds whose binary serves `/debug/pprof/profile` (the bundled ones;
/// `gauntlet-stack` checks the two lists agree).
pub fn serves_pprof(kind: ServiceKind) -> bool {
    matches!(
        kind,
        ServiceKind::Fabric | ServiceKind::Actors | ServiceKind::Tracing | ServiceKind::Reflow
    )
}

impl ProfileSpec {
    /// Whether phase `name` is profiled.
    pub fn wants_phase(&self, name: &str) -> bool {
        self.phases
            .as_ref()
            .is_none_or(|p| p.iter().any(|n| n == name))
    }

    /// Whether the fault window `window` (of the fault named `fault`) is profiled.
    pub fn wants_fault(&self, fault: &str, window: &str) -> bool {
        self.faults
            .as_ref()
            .is_none_or(|f| f.iter().any(|n| n == fault || n == window))
    }
}

fn k(s: &str) -> Seg {
    Seg::Key(s.to_owned())
}

/// The rules of `profile:`.
pub fn check(s: &Scenario, out: &mut Vec<Problem>) {
    let Some(p) = &s.profile else { return };
    let mut problem = |path: Vec<Seg>, message: String, hint: String| {
        out.push(Problem {
            path,
            key: None,
            message,
            hint: Some(hint),
        })
    };
    let here = || vec![k("profile")];
    if p.services.is_empty() {
        problem(
            [here(), vec![k("services")]].concat(),
            "`profile.services` is empty".to_owned(),
            "name the services to profile, e.g. `[fabric]`, and `loadgen` for the harness"
                .to_owned(),
        );
    }
    let profiled: Vec<&str> = s
        .stack
        .services
        .iter()
        .filter(|(_, svc)| svc.kind.is_some_and(serves_pprof))
        .map(|(n, _)| n.as_str())
        .chain([LOADGEN])
        .collect();
    for (i, name) in p.services.iter().enumerate() {
        let path = [here(), vec![k("services"), Seg::Index(i)]].concat();
        if p.services[..i].contains(name) {
            problem(
                path,
                format!("`{name}` is listed twice"),
                "list each service once".to_owned(),
            );
        } else if let Some(svc) = s.stack.services.get(name) {
            if !svc.kind.is_some_and(serves_pprof) {
                problem(
                    path,
                    format!("service `{name}` does not serve /debug/pprof/profile"),
                    "only bundled services (kind fabric, actors, tracing) and `loadgen` can be profiled"
                        .to_owned(),
                );
            }
        } else if name != LOADGEN {
            let hint = crate::diag::did_you_mean(name, profiled.iter().copied())
                .map(|m| format!("did you mean `{m}`?"))
                .unwrap_or_else(|| format!("profilable: {}", profiled.join(", ")));
            problem(path, format!("no service `{name}` in the stack"), hint);
        }
    }
    if !(1..=MAX_FREQUENCY).contains(&p.frequency) {
        problem(
            [here(), vec![k("frequency")]].concat(),
            format!("frequency {} Hz is out of range", p.frequency),
            format!("use 1 to {MAX_FREQUENCY} Hz; 99 costs little, 999 shows more"),
        );
    }
    let phases: Vec<&str> = s.workload.phases.iter().map(|p| p.name.as_str()).collect();
    for (i, name) in p.phases.iter().flatten().enumerate() {
        if !phases.contains(&name.as_str()) {
            let hint = crate::diag::did_you_mean(name, phases.iter().copied())
                .map(|m| format!("did you mean `{m}`?"))
                .unwrap_or_else(|| format!("phases: {}", phases.join(", ")));
            problem(
                [here(), vec![k("phases"), Seg::Index(i)]].concat(),
                format!("no phase `{name}` in the workload"),
                hint,
            );
        }
    }
    let windows = crate::faults::expand(&s.faults, s.seed);
    let mut faults: Vec<&str> = Vec::new();
    for w in &windows {
        faults.push(&w.name);
        if let Some(base) = w.name.split_once('#').map(|(b, _)| b) {
            faults.push(base);
        }
    }
    faults.sort();
    faults.dedup();
    for (i, name) in p.faults.iter().flatten().enumerate() {
        if !faults.contains(&name.as_str()) {
            let hint = if faults.is_empty() {
                "the scenario has no `faults:`".to_owned()
            } else {
                crate::diag::did_you_mean(name, faults.iter().copied())
                    .map(|m| format!("did you mean `{m}`?"))
                    .unwrap_or_else(|| format!("faults: {}", faults.join(", ")))
            };
            problem(
                [here(), vec![k("faults"), Seg::Index(i)]].concat(),
                format!("no fault `{name}` in `faults:`"),
                hint,
            );
        }
    }
}
