//! Per-second samples of a run: for each operation and each full interval of
//! the gated phases, the interval's latency histogram (from `latency.hlog`)
//! and its counts (from `results.json`). These are what baselines keep and
//! what the statistical rule compares.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use gauntlet_recorder::RunResults;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::GateError;

/// An interval must cover at least this share of a second to be a sample
/// (the last, partial interval of a run is left out).
const MIN_INTERVAL_S: f64 = 0.9;

/// One second of one operation.
#[derive(Debug, Clone)]
pub struct IntervalSample {
    /// Which run (index into [`Samples::runs`]).
    pub run: usize,
    pub t_s: f64,
    pub length_s: f64,
    /// Completed operations (ok + errors).
    pub count: u64,
    pub errors: u64,
    /// Messages of the successful operations, for operations that carry
    /// several each (an actor send of a batch): their throughput is
    /// gated in messages per second.
    pub messages: Option<u64>,
    /// Latency of the successful operations, µs.
    pub histogram: Histogram<u64>,
}

impl IntervalSample {
    /// Successful operations per second, or messages per second for an
    /// operation that carries several.
    pub fn throughput(&self) -> f64 {
        let done = self.messages.unwrap_or(self.count - self.errors);
        done as f64 / self.length_s
    }

    pub fn error_rate(&self) -> Option<f64> {
        (self.count > 0).then(|| self.errors as f64 / self.count as f64)
    }

    pub fn quantile(&self, q: f64) -> Option<f64> {
        (!self.histogram.is_empty()).then(|| self.histogram.value_at_quantile(q) as f64)
    }
}

/// Where a run came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub dir: String,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub host: String,
    /// Set when the run's load generator was the bottleneck: its latencies
    /// then measure loadgen, not the system, and verdicts on it are suspect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_a_measurement: Option<String>,
}

/// Samples of one or more runs of the same scenario.
#[derive(Debug, Clone)]
pub struct Samples {
    pub scenario: String,
    pub operations: Vec<String>,
    pub phases: Vec<String>,
    pub runs: Vec<RunInfo>,
    pub intervals: BTreeMap<String, Vec<IntervalSample>>,
}

impl Samples {
    pub fn of(&self, operation: &str) -> &[IntervalSample] {
        self.intervals.get(operation).map_or(&[], Vec::as_slice)
    }

    /// Every interval of `operation` merged into one histogram.
    pub fn merged(&self, operation: &str) -> Histogram<u64> {
        let mut h = gauntlet_recorder::new_histogram();
        for s in self.of(operation) {
            let _ = h.add(&s.histogram);
        }
        h
    }

    /// Appends another run's samples; the scenario must be the same.
    pub fn extend(&mut self, other: Samples) -> Result<(), GateError> {
        if other.scenario != self.scenario || other.operations != self.operations {
            return Err(GateError::Mismatch(format!(
                "run {} is scenario `{}` with operations [{}], but the others are `{}` with [{}]",
                other.runs.first().map_or("?", |r| r.dir.as_str()),
                other.scenario,
                other.operations.join(", "),
                self.scenario,
                self.operations.join(", ")
            )));
        }
        let offset = self.runs.len();
        self.runs.extend(other.runs);
        for (op, list) in other.intervals {
            self.intervals
                .entry(op)
                .or_default()
                .extend(list.into_iter().map(|mut s| {
                    s.run += offset;
                    s
                }));
        }
        Ok(())
    }
}

fn read_results(dir: &Path) -> Result<RunResults, GateError> {
    let path = dir.join("results.json");
    let bytes = std::fs::read(&path).map_err(|e| {
        GateError::Input(format!(
            "{}: {e} (hint: pass a run directory written by `loadgen run`)",
            path.display()
        ))
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| GateError::Input(format!("{}: not a results file: {e}", path.display())))
}

/// Names of the gated phases and their windows `[start, end)` in seconds.
type PhaseWindows = (Vec<String>, Vec<(f64, f64)>);

/// The phase windows `[start, end)` in seconds for `phases` (default: the last phase).
fn windows(results: &RunResults, phases: &[String], dir: &Path) -> Result<PhaseWindows, GateError> {
    let mut start = 0.0;
    let mut all = Vec::new();
    for p in &results.phases {
        all.push((p.name.clone(), start, start + p.duration_s));
        start += p.duration_s;
    }
    let chosen: Vec<String> = if phases.is_empty() {
        all.last()
            .map(|(n, ..)| vec![n.clone()])
            .unwrap_or_default()
    } else {
        phases.to_vec()
    };
    let mut out = Vec::new();
    for name in &chosen {
        let (_, s, e) = all.iter().find(|(n, ..)| n == name).ok_or_else(|| {
            GateError::Mismatch(format!(
                "{} has no phase `{name}` (phases: {})",
                dir.display(),
                all.iter()
                    .map(|(n, ..)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        out.push((*s, *e));
    }
    Ok((chosen, out))
}

/// Reads the samples of one run directory for the given phases.
pub fn read_run(dir: &Path, phases: &[String]) -> Result<Samples, GateError> {
    let results = read_results(dir)?;
    let (phase_names, windows) = windows(&results, phases, dir)?;
    let hlog_path = dir.join("latency.hlog");
    let hlog = std::fs::read(&hlog_path)
        .map_err(|e| GateError::Input(format!("{}: {e}", hlog_path.display())))?;
    let logged = gauntlet_recorder::hlog::read(&hlog);
    let operations: Vec<String> = results.totals.iter().map(|t| t.operation.clone()).collect();
    let inside = |t: f64, len: f64| {
        windows
            .iter()
            .any(|(s, e)| t >= s - 1e-6 && t + len <= e + 1e-6)
    };

    let mut intervals: BTreeMap<String, Vec<IntervalSample>> = BTreeMap::new();
    for interval in &logged {
        let Some(tag) = &interval.tag else { continue };
        let t = interval.start.as_secs_f64();
        let len = interval.length.as_secs_f64();
        if len < MIN_INTERVAL_S || !inside(t, len) {
            continue;
        }
        let counts = results
            .intervals
            .iter()
            .find(|i| (i.t_s - t).abs() < 1e-3)
            .and_then(|i| i.operations.iter().find(|o| &o.operation == tag));
        let (count, errors) = counts.map_or((interval.histogram.len(), 0), |c| (c.count, c.errors));
        let messages = counts.and_then(|c| c.messages);
        intervals
            .entry(tag.clone())
            .or_default()
            .push(IntervalSample {
                run: 0,
                t_s: t,
                length_s: len,
                count,
                errors,
                messages,
                histogram: interval.histogram.clone(),
            });
    }
    Ok(Samples {
        scenario: results.scenario.clone(),
        operations,
        phases: phase_names,
        runs: vec![RunInfo {
            dir: dir.display().to_string(),
            started_at: results.started_at.clone(),
            revision: results.git_revision.clone(),
            host: results.host.clone(),
            not_a_measurement: results.engine.bottleneck.clone(),
        }],
        intervals,
    })
}

/// Reads and joins several runs of one scenario.
pub fn read_runs(dirs: &[PathBuf], phases: &[String]) -> Result<Samples, GateError> {
    let mut iter = dirs.iter();
    let first = iter
        .next()
        .ok_or_else(|| GateError::Input("no run directory given".to_owned()))?;
    let mut all = read_run(first, phases)?;
    for dir in iter {
        all.extend(read_run(dir, phases)?)?;
    }
    Ok(all)
}

/// A histogram as base64 of its V2-deflate encoding (as in `latency.hlog`).
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Serialising into a Vec cannot fail for a valid histogram.
    let _ = V2DeflateSerializer::new().serialize(h, &mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("bad base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("bad histogram: {e:?}"))
}
