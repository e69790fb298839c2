//! `results.json`: the run's statistics as plain data, for reports, gates and other tools.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Version of the `results.json` layout.
pub const RESULTS_FORMAT: u32 = 1;

/// Everything a run measured. Written as the run goes (`complete: false`)
/// and once more at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    pub format: u32,
    pub scenario: String,
    pub seed: u64,
    /// RFC 3339 UTC time the first phase started.
    pub started_at: String,
    /// Seconds from the first phase's start to the last completion recorded.
    pub elapsed_s: f64,
    /// `process` or `containers`.
    pub runtime: String,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_revision: Option<String>,
    /// False while the run is going, or when it was interrupted.
    pub complete: bool,
    /// Why the run ended early, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
    /// How the load generator itself fared.
    pub engine: EngineStats,
    pub phases: Vec<PhaseResult>,
    /// Per operation over the whole run (all phases merged).
    pub totals: Vec<OperationResult>,
    /// Per 1 s interval (by completion time), per operation.
    pub intervals: Vec<IntervalResult>,
    /// Per fault window and operation: time to recover (see [`crate::recovery`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovery: Vec<crate::recovery::FaultRecovery>,
}

/// The load generator's own health: whether it, not the system, was the bottleneck.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Operations the arrival schedule called for.
    pub scheduled: u64,
    /// Operations started (less than scheduled only when the run was interrupted).
    pub started: u64,
    /// Started later than `late_after` after their intended start, for any reason.
    pub late: u64,
    /// Late because the engine itself fell behind (a free slot was available).
    pub late_engine: u64,
    /// Late because `max_in_flight` operations were already outstanding.
    pub late_in_flight_limit: u64,
    /// Largest start lag seen (actual start − intended start), in µs.
    pub max_start_lag_us: u64,
    /// Most operations outstanding at once.
    pub peak_in_flight: u64,
    /// CPU time the loadgen process used during the phases, in ms.
    pub cpu_ms: f64,
    /// `cpu_ms` per 1,000 operations started.
    pub cpu_ms_per_1000_ops: f64,
    /// Set when the run is not a measurement of the system: the engine fell behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bottleneck: Option<String>,
}

/// One phase: its schedule and what each operation did in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseResult {
    pub name: String,
    pub duration_s: f64,
    /// Operations per second the schedule asked for, on average over the phase.
    pub target_rate_per_s: f64,
    pub operations: Vec<OperationResult>,
}

/// Latency percentiles in microseconds, read from an HdrHistogram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// One operation's statistics over a phase or the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationResult {
    pub operation: String,
    /// Operations completed (ok + errors).
    pub count: u64,
    pub errors: u64,
    /// Operations that started late (see [`EngineStats`]).
    pub late: u64,
    /// Successful operations per second of the phase (or run).
    pub throughput_per_s: f64,
    /// Latency of successful operations from their intended start (includes any wait to start).
    pub latency_us: Percentiles,
    /// Latency of successful operations from the moment they were sent.
    pub service_time_us: Percentiles,
    /// Errors by kind (`http_503`, `timeout`, `connect`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Operations that carry several messages each (an actor send of a
    /// batch): the messages of the successful ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<u64>,
    /// `messages` per second, over the same span as `throughput_per_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_per_s: Option<f64>,
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalResult {
    /// Seconds from the run's start to the interval's start.
    pub t_s: f64,
    pub operations: Vec<IntervalOperation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalOperation {
    pub operation: String,
    pub count: u64,
    pub errors: u64,
    pub latency_us: Percentiles,
    /// Errors in this interval by kind (`http_503`, `timeout`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Messages of the successful operations, for operations that carry
    /// several each (see [`OperationResult::messages`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<u64>,
}

impl RunResults {
    /// The whole-run result of one operation.
    pub fn total(&self, operation: &str) -> Option<&OperationResult> {
        self.totals.iter().find(|o| o.operation == operation)
    }

    pub fn phase(&self, name: &str) -> Option<&PhaseResult> {
        self.phases.iter().find(|p| p.name == name)
    }
}
