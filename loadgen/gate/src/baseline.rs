//! The baseline file (`ci/baselines/<scenario>.json`): the per-second
//! histograms and counts of one or more reference runs, with the revision and
//! machine they came from — enough to compare whole distributions later, not
//! just a few numbers.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::GateError;
use crate::samples::{IntervalSample, RunInfo, Samples, decode_histogram, encode_histogram};

pub const BASELINE_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub format: u32,
    pub scenario: String,
    pub operations: Vec<String>,
    /// The phases whose intervals are kept.
    pub phases: Vec<String>,
    pub created_at: String,
    pub runs: Vec<RunInfo>,
    /// Per operation, every kept interval.
    pub intervals: BTreeMap<String, Vec<StoredInterval>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredInterval {
    pub run: usize,
    pub t_s: f64,
    pub length_s: f64,
    pub count: u64,
    pub errors: u64,
    /// Messages of the successful operations (operations carrying batches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<u64>,
    /// Latency histogram of the successful operations (µs), base64 of HdrHistogram V2-deflate.
    pub histogram: String,
}

impl Baseline {
    pub fn from_samples(samples: &Samples) -> Self {
        Self {
            format: BASELINE_FORMAT,
            scenario: samples.scenario.clone(),
            operations: samples.operations.clone(),
            phases: samples.phases.clone(),
            created_at: jiff::Timestamp::now().to_string(),
            runs: samples.runs.clone(),
            intervals: samples
                .intervals
                .iter()
                .map(|(op, list)| {
                    let stored = list
                        .iter()
                        .map(|s| StoredInterval {
                            run: s.run,
                            t_s: s.t_s,
                            length_s: s.length_s,
                            count: s.count,
                            errors: s.errors,
                            messages: s.messages,
                            histogram: encode_histogram(&s.histogram),
                        })
                        .collect();
                    (op.clone(), stored)
                })
                .collect(),
        }
    }

    pub fn to_samples(&self) -> Result<Samples, GateError> {
        let mut intervals = BTreeMap::new();
        for (op, list) in &self.intervals {
            let mut out = Vec::with_capacity(list.len());
            for s in list {
                let histogram = decode_histogram(&s.histogram).map_err(|e| {
                    GateError::Input(format!("baseline interval of `{op}` at {}s: {e}", s.t_s))
                })?;
                out.push(IntervalSample {
                    run: s.run,
                    t_s: s.t_s,
                    length_s: s.length_s,
                    count: s.count,
                    errors: s.errors,
                    messages: s.messages,
                    histogram,
                });
            }
            intervals.insert(op.clone(), out);
        }
        Ok(Samples {
            scenario: self.scenario.clone(),
            operations: self.operations.clone(),
            phases: self.phases.clone(),
            runs: self.runs.clone(),
            intervals,
        })
    }

    pub fn read(path: &Path) -> Result<Self, GateError> {
        let bytes = std::fs::read(path).map_err(|e| {
            GateError::Input(format!(
                "baseline {}: {e} (hint: create one with `loadgen baseline RUN_DIR... --out {}`)",
                path.display(),
                path.display()
            ))
        })?;
        let baseline: Baseline = serde_json::from_slice(&bytes).map_err(|e| {
            GateError::Input(format!(
                "baseline {}: not a baseline file: {e}",
                path.display()
            ))
        })?;
        if baseline.format != BASELINE_FORMAT {
            return Err(GateError::Input(format!(
                "baseline {} has format {}, this loadgen reads format {BASELINE_FORMAT} (hint: refresh it with `loadgen baseline`)",
                path.display(),
                baseline.format
            )));
        }
        Ok(baseline)
    }

    pub fn write(&self, path: &Path) -> Result<(), GateError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| GateError::Io(format!("{}: {e}", parent.display())))?;
        }
        let mut text =
            serde_json::to_string_pretty(self).map_err(|e| GateError::Io(e.to_string()))?;
        text.push('\n');
        std::fs::write(path, text).map_err(|e| GateError::Io(format!("{}: {e}", path.display())))
    }
}
