//! `faults.json`: the fault windows of a run, for reports, gates and other tools.
//!
//! A JSON array, one object per fault in the order they were applied:
//!
//! ```json
//! [
//!   { "name": "kill-fabric", "kind": "process.kill", "target": "fabric",
//!     "start_s": 25.0, "end_s": 27.1, "params": { "signal": "KILL", "restart_after": "2s" } }
//! ]
//! ```
//!
//! `start_s` and `end_s` are seconds from the run's start (the same clock as
//! `results.json`'s intervals and `metrics.jsonl`). `end_s` is `null` while a
//! fault is still applied — a run killed during a fault leaves it open.
//! The file is absent when the scenario injects no faults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The file's name in a run directory.
pub const FAULTS_FILE: &str = "faults.json";

/// One fault's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Unique within the run; what the report labels the window with.
    pub name: String,
    /// What was done, e.g. `process.kill`, `process.pause`, `link.latency`, `link.down`.
    pub kind: String,
    /// What it was done to: a service (`fabric`) or a link (`loadgen->fabric`).
    pub target: String,
    /// Seconds from the run's start to the moment the fault was applied.
    pub start_s: f64,
    /// Seconds from the run's start to the moment it was lifted; `None` while applied.
    pub end_s: Option<f64>,
    /// The fault's parameters as written in the scenario (`signal`, `latency`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
}

impl Fault {
    /// The window's end, or `run_end_s` when the fault was never lifted.
    pub fn end_or(&self, run_end_s: f64) -> f64 {
        self.end_s.unwrap_or(run_end_s).max(self.start_s)
    }
}

/// Parses the content of a `faults.json`.
pub fn parse(bytes: &[u8]) -> Result<Vec<Fault>, serde_json::Error> {
    serde_json::from_slice(bytes)
}
