//! Time to recover from a fault, per operation, from the full per-second
//! intervals (never from downsampled lines). One computation for both
//! users: the run writes it into `results.json` (`recovery`), the report
//! shows it.
//!
//! - *Before*: the mean throughput of successful operations over the ten
//!   seconds before the fault started (fewer when the run is younger).
//! - *Throughput recovered*: the first second, at or after the fault was
//!   lifted, from which throughput stays at or above 90 % of *before* for
//!   three consecutive seconds (or until the run ends). Reported as seconds
//!   after the fault was lifted; 1 s resolution.
//! - *P99 recovered*: the same, with the interval's p99 back under the
//!   operation's SLO — only when the scenario states one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::RunResults;
use crate::faults::Fault;

/// Length of interval `i` in seconds (the last one may be short).
pub fn interval_len(results: &RunResults, i: usize) -> f64 {
    match results.intervals.get(i + 1) {
        Some(next) => (next.t_s - results.intervals[i].t_s).max(1e-3),
        None => 1.0,
    }
}

/// `(start, length, successful operations per second)` of every interval
/// in which `operation` completed something.
pub fn throughput_by_interval(results: &RunResults, operation: &str) -> Vec<(f64, f64, f64)> {
    results
        .intervals
        .iter()
        .enumerate()
        .filter_map(|(i, interval)| {
            let o = interval
                .operations
                .iter()
                .find(|o| o.operation == operation)?;
            let len = interval_len(results, i);
            Some((
                interval.t_s,
                len,
                o.count.saturating_sub(o.errors) as f64 / len,
            ))
        })
        .collect()
}

/// The fraction of the pre-fault throughput that counts as recovered.
pub const RECOVERED_FRACTION: f64 = 0.9;
/// Seconds before the fault that define "before".
pub const BEFORE_WINDOW_S: f64 = 10.0;
/// Consecutive seconds a recovery must hold.
pub const HOLD: usize = 3;

/// When something came back, relative to the fault being lifted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Recovered {
    /// Seconds after the fault's end (0 when it never dropped below the bar).
    After(f64),
    /// Not within the run; the run was observed this many seconds after the fault's end.
    NotWithin(f64),
    /// Cannot be told (no throughput before the fault, no SLO, …).
    Unknown(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    pub fault: String,
    pub operation: String,
    /// Mean successful operations per second before the fault.
    pub before_per_s: Option<f64>,
    /// Lowest one-second throughput from the fault's start to its recovery (or the run's end).
    pub lowest_per_s: Option<f64>,
    pub throughput: Recovered,
    pub p99: Recovered,
}

/// Recovery of every operation from every fault, faults in order;
/// `slo_p99_us` holds the operations' p99 objectives.
pub fn recoveries(
    results: &RunResults,
    faults: &[Fault],
    operations: &[String],
    slo_p99_us: &BTreeMap<String, u64>,
    run_end_s: f64,
) -> Vec<Recovery> {
    let mut out = Vec::new();
    for f in faults {
        for op in operations {
            let slo = slo_p99_us.get(op).copied();
            out.push(recovery(results, f, op, slo, run_end_s));
        }
    }
    out
}

/// A recovery time as `results.json` states it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryTime {
    /// Seconds after the fault was lifted (0: it never dropped below the bar).
    RecoveredAfterS(f64),
    /// Not within the run, which was observed this long after the fault's end.
    DidNotRecover { observed_s: f64 },
    /// Cannot be told, and why.
    Unknown(String),
}

impl From<Recovered> for RecoveryTime {
    fn from(r: Recovered) -> Self {
        match r {
            Recovered::After(s) => RecoveryTime::RecoveredAfterS(s),
            Recovered::NotWithin(s) => RecoveryTime::DidNotRecover { observed_s: s },
            Recovered::Unknown(why) => RecoveryTime::Unknown(why.to_owned()),
        }
    }
}

/// One fault's recovery for one operation, in `results.json`'s `recovery` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecovery {
    pub fault: String,
    pub operation: String,
    /// Mean successful operations per second over the 10 s before the fault.
    pub before_per_s: Option<f64>,
    /// Lowest one-second throughput from the fault's start to its recovery.
    pub lowest_per_s: Option<f64>,
    /// Throughput back to 90 % of `before_per_s` (held for 3 s).
    pub throughput: RecoveryTime,
    /// p99 back under the operation's SLO (held for 3 s).
    pub p99: RecoveryTime,
}

impl From<&Recovery> for FaultRecovery {
    fn from(r: &Recovery) -> Self {
        FaultRecovery {
            fault: r.fault.clone(),
            operation: r.operation.clone(),
            before_per_s: r.before_per_s,
            lowest_per_s: r.lowest_per_s,
            throughput: r.throughput.into(),
            p99: r.p99.into(),
        }
    }
}

/// Recovery of `operation` from `fault`; `run_end_s` closes an open fault.
pub fn recovery(
    results: &RunResults,
    fault: &Fault,
    operation: &str,
    slo_p99_us: Option<u64>,
    run_end_s: f64,
) -> Recovery {
    let tp = throughput_by_interval(results, operation);
    let start = fault.start_s;
    let end = fault.end_or(run_end_s);
    // Intervals wholly inside the window before the fault.
    let before: Vec<f64> = tp
        .iter()
        .filter(|(t, len, _)| *t >= start - BEFORE_WINDOW_S && t + len <= start + 1e-9)
        .map(|(_, _, r)| *r)
        .collect();
    let before_per_s =
        (!before.is_empty()).then(|| before.iter().sum::<f64>() / before.len() as f64);

    let after: Vec<(f64, f64, f64)> = tp
        .iter()
        .copied()
        .filter(|(t, ..)| *t >= end - 1e-9)
        .collect();
    let observed = after.last().map_or(0.0, |(t, len, _)| t + len - end);

    let first_holding = |ok: &dyn Fn(usize) -> bool| -> Option<f64> {
        (0..after.len())
            .find(|&i| (i..(i + HOLD).min(after.len())).all(ok))
            .map(|i| (after[i].0 - end).max(0.0))
    };

    let throughput = match before_per_s {
        None => Recovered::Unknown("no throughput before the fault"),
        Some(b) if b <= 0.0 => Recovered::Unknown("no throughput before the fault"),
        Some(b) => match first_holding(&|i| after[i].2 >= RECOVERED_FRACTION * b) {
            Some(s) => Recovered::After(s),
            None => Recovered::NotWithin(observed),
        },
    };
    let recovered_at = match throughput {
        Recovered::After(s) => end + s + 1.0,
        _ => f64::INFINITY,
    };
    let lowest_per_s = tp
        .iter()
        .filter(|(t, len, _)| t + len > start && *t < recovered_at.max(end))
        .map(|(_, _, r)| *r)
        .reduce(f64::min);

    let p99 = match slo_p99_us {
        None => Recovered::Unknown("no p99 objective"),
        Some(slo) => {
            let p99s: Vec<Option<u64>> = results
                .intervals
                .iter()
                .filter(|i| i.t_s >= end - 1e-9)
                .map(|i| {
                    i.operations
                        .iter()
                        .find(|o| o.operation == operation && o.count > o.errors)
                        .map(|o| o.latency_us.p99)
                })
                .collect();
            let found = (0..p99s.len()).find(|&i| {
                (i..(i + HOLD).min(p99s.len())).all(|j| p99s[j].is_some_and(|p| p <= slo))
            });
            match found {
                Some(i) => Recovered::After((after.get(i).map_or(end, |a| a.0) - end).max(0.0)),
                None => Recovered::NotWithin(observed),
            }
        }
    };
    Recovery {
        fault: fault.name.clone(),
        operation: operation.to_owned(),
        before_per_s,
        lowest_per_s,
        throughput,
        p99,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IntervalOperation, IntervalResult, Percentiles};

    fn results(rates: &[u64], p99: &[u64]) -> RunResults {
        let mut r: RunResults = serde_json::from_value(serde_json::json!({
            "format": 1, "scenario": "s", "seed": 1, "started_at": "", "elapsed_s": rates.len() as f64,
            "runtime": "process", "host": "h", "complete": true, "engine": {
                "scheduled": 0, "started": 0, "late": 0, "late_engine": 0, "late_in_flight_limit": 0,
                "max_start_lag_us": 0, "peak_in_flight": 0, "cpu_ms": 0.0, "cpu_ms_per_1000_ops": 0.0 },
            "phases": [], "totals": [], "intervals": []
        }))
        .unwrap();
        r.intervals = rates
            .iter()
            .zip(p99)
            .enumerate()
            .map(|(i, (n, p))| IntervalResult {
                t_s: i as f64,
                operations: vec![IntervalOperation {
                    operation: "append".into(),
                    count: *n,
                    errors: 0,
                    latency_us: Percentiles {
                        p99: *p,
                        ..Default::default()
                    },
                    errors_by_kind: Default::default(),
                    messages: None,
                }],
            })
            .collect();
        r
    }

    fn fault(start: f64, end: Option<f64>) -> Fault {
        Fault {
            name: "kill".into(),
            kind: "process.kill".into(),
            target: "fabric".into(),
            start_s: start,
            end_s: end,
            params: Default::default(),
        }
    }

    #[test]
    fn recovery_counts_from_the_fault_end_and_must_hold() {
        // 100/s for 10 s, 0 during the fault (10..12), a blip back, a dip, then steady.
        let mut rates = vec![100; 10];
        rates.extend([0, 0, 95, 40, 100, 100, 100, 100]);
        let p99 = vec![1_000; rates.len()];
        let r = recovery(
            &results(&rates, &p99),
            &fault(10.0, Some(12.0)),
            "append",
            Some(2_000),
            18.0,
        );
        assert_eq!(r.before_per_s, Some(100.0));
        assert_eq!(
            r.throughput,
            Recovered::After(2.0),
            "95 at 12 s does not hold past the dip"
        );
        assert_eq!(r.lowest_per_s, Some(0.0));
        assert_eq!(r.p99, Recovered::After(0.0));
    }

    #[test]
    fn never_recovering_and_no_slo_say_so() {
        let mut rates = vec![100; 10];
        rates.extend([0, 0, 10, 10]);
        let p99 = vec![1_000; rates.len()];
        let r = recovery(
            &results(&rates, &p99),
            &fault(10.0, None),
            "append",
            None,
            12.0,
        );
        assert!(matches!(r.throughput, Recovered::NotWithin(_)), "{r:?}");
        assert_eq!(r.p99, Recovered::Unknown("no p99 objective"));
        let r = recovery(
            &results(&rates, &p99),
            &fault(0.0, Some(1.0)),
            "append",
            None,
            14.0,
        );
        assert!(matches!(r.throughput, Recovered::Unknown(_)));
    }

    #[test]
    fn every_fault_and_operation_is_covered_and_results_json_states_it() {
        let mut rates = vec![100; 10];
        rates.extend([0, 0, 100, 100, 100, 100]);
        let p99 = vec![1_000; rates.len()];
        let mut r = results(&rates, &p99);
        let faults = [
            fault(10.0, Some(12.0)),
            Fault {
                name: "late".into(),
                ..fault(14.0, None)
            },
        ];
        let slo = BTreeMap::from([("append".to_owned(), 2_000)]);
        let recs = recoveries(&r, &faults, &["append".to_owned()], &slo, 16.0);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].throughput, Recovered::After(0.0));
        r.recovery = recs.iter().map(FaultRecovery::from).collect();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["recovery"][0]["fault"], "kill");
        assert_eq!(json["recovery"][0]["throughput"]["recovered_after_s"], 0.0);
        assert_eq!(json["recovery"][0]["p99"]["recovered_after_s"], 0.0);
        assert!(
            json["recovery"][1]["throughput"]["did_not_recover"]["observed_s"].is_number(),
            "{json}"
        );
        let back: RunResults = serde_json::from_value(json).unwrap();
        assert_eq!(back.recovery, r.recovery);
        // A results.json without faults has no `recovery` key at all.
        r.recovery.clear();
        assert!(serde_json::to_value(&r).unwrap().get("recovery").is_none());
    }
}
