//! Gauntlet's recorder: turns completed operations into statistics.
//!
//! It owns the HdrHistograms (µs, 3 significant digits): per phase and
//! operation for the tables, per 1 s interval and operation for time series
//! and `latency.hlog`. Phase histograms are merged into run totals; no
//! percentile is ever averaged. The recorder is plain data fed one
//! [`Sample`] at a time — it never reads a clock, spawns a task or talks to
//! the system under test, so the same code serves live runs and tests.

pub mod faults;
pub mod files;
pub mod hlog;
pub mod metrics;
pub mod profiles;
pub mod recovery;
pub mod results;

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

pub use results::*;

/// Highest latency a histogram tracks: one hour in µs (larger values saturate).
pub const MAX_TRACKABLE_US: u64 = 3_600_000_000;

/// A fresh histogram with Gauntlet's settings.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts; this cannot fail.
    Histogram::new_with_bounds(1, MAX_TRACKABLE_US, 3).expect("valid histogram bounds")
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Failed; the kind names why (`http_503`, `timeout`, `connect`, …).
    Error(String),
}

/// One completed operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Index into the scenario's operations.
    pub operation: usize,
    /// Index of the phase whose schedule gave the intended start.
    pub phase: usize,
    /// Completion − intended start, µs.
    pub latency_us: u64,
    /// Completion − actual send, µs.
    pub service_us: u64,
    /// Started later than `late_after` after its intended start.
    pub late: bool,
    pub outcome: Outcome,
    /// Completion time since the run's start.
    pub completed_at: Duration,
}

/// What the recorder knows of a phase before it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseInfo {
    pub name: String,
    /// Offset of the phase's start from the run's start, in seconds.
    pub start_s: f64,
    pub duration_s: f64,
    pub target_rate_per_s: f64,
}

/// Counters and histograms of one operation over some span.
#[derive(Debug, Clone)]
pub struct OperationStats {
    pub latency: Histogram<u64>,
    pub service: Histogram<u64>,
    pub count: u64,
    pub errors: u64,
    pub late: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Latest completion recorded, since the run's start.
    pub last_completion: Duration,
}

impl Default for OperationStats {
    fn default() -> Self {
        Self {
            latency: new_histogram(),
            service: new_histogram(),
            count: 0,
            errors: 0,
            late: 0,
            errors_by_kind: BTreeMap::new(),
            last_completion: Duration::ZERO,
        }
    }
}

impl OperationStats {
    pub fn record(&mut self, s: &Sample) {
        self.count += 1;
        self.last_completion = self.last_completion.max(s.completed_at);
        self.late += u64::from(s.late);
        match &s.outcome {
            Outcome::Ok => {
                self.latency.saturating_record(s.latency_us.max(1));
                self.service.saturating_record(s.service_us.max(1));
            }
            Outcome::Error(kind) => {
                self.errors += 1;
                *self.errors_by_kind.entry(kind.clone()).or_default() += 1;
            }
        }
    }

    /// Adds another span's statistics (histograms merged, counters summed).
    pub fn merge(&mut self, other: &OperationStats) {
        // Same bounds on both sides: `add` cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
        self.count += other.count;
        self.errors += other.errors;
        self.late += other.late;
        self.last_completion = self.last_completion.max(other.last_completion);
        for (k, v) in &other.errors_by_kind {
            *self.errors_by_kind.entry(k.clone()).or_default() += v;
        }
    }

    /// The span's result. Throughput is successful operations per second of
    /// the span `[start_s, start_s + duration_s)`, stretched to the last
    /// completion when operations finished after the span ended — so a system
    /// that falls behind shows a lower throughput, not the arrival rate.
    pub fn result(&self, operation: &str, start_s: f64, duration_s: f64) -> OperationResult {
        let ok = self.count - self.errors;
        let duration_s = duration_s.max(self.last_completion.as_secs_f64() - start_s);
        OperationResult {
            operation: operation.to_owned(),
            count: self.count,
            errors: self.errors,
            late: self.late,
            throughput_per_s: if duration_s > 0.0 {
                ok as f64 / duration_s
            } else {
                0.0
            },
            latency_us: Percentiles::of(&self.latency),
            service_time_us: Percentiles::of(&self.service),
            errors_by_kind: self.errors_by_kind.clone(),
            messages: None,
            messages_per_s: None,
        }
    }
}

/// `result`'s messages for an operation carrying `per_op` messages each
/// (0: not counted in messages).
fn with_messages(mut r: OperationResult, per_op: u64) -> OperationResult {
    if per_op > 0 {
        r.messages = Some((r.count - r.errors) * per_op);
        r.messages_per_s = Some(r.throughput_per_s * per_op as f64);
    }
    r
}

/// Facts about the run that are not measurements.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunMeta {
    pub scenario: String,
    pub seed: u64,
    pub started_at: String,
    pub runtime: String,
    pub host: String,
    pub git_revision: Option<String>,
}

/// Accumulates samples into phase, run and interval statistics.
pub struct Recorder {
    operations: Vec<String>,
    phases: Vec<PhaseInfo>,
    /// `[phase][operation]`
    by_phase: Vec<Vec<OperationStats>>,
    /// The open interval, per operation.
    interval: Vec<OperationStats>,
    interval_start: Duration,
    intervals: Vec<IntervalResult>,
    last_completion: Duration,
    hlog: Option<hlog::HlogWriter>,
    /// Messages each successful operation carries (0: not counted).
    messages_per_op: Vec<u64>,
}

impl Recorder {
    pub fn new(
        operations: Vec<String>,
        phases: Vec<PhaseInfo>,
        hlog: Option<hlog::HlogWriter>,
    ) -> Self {
        let by_phase = phases
            .iter()
            .map(|_| {
                operations
                    .iter()
                    .map(|_| OperationStats::default())
                    .collect()
            })
            .collect();
        let interval = operations
            .iter()
            .map(|_| OperationStats::default())
            .collect();
        Self {
            operations,
            phases,
            by_phase,
            interval,
            interval_start: Duration::ZERO,
            intervals: Vec::new(),
            last_completion: Duration::ZERO,
            hlog,
            messages_per_op: Vec::new(),
        }
    }

    /// Counts messages as well as operations: operation `i` carries
    /// `per_operation[i]` messages when it succeeds (0: not counted), so
    /// results show `messages` and `messages_per_s` next to throughput.
    pub fn count_messages(mut self, per_operation: Vec<u64>) -> Self {
        self.messages_per_op = per_operation;
        self
    }

    fn per_op(&self, operation: usize) -> u64 {
        self.messages_per_op.get(operation).copied().unwrap_or(0)
    }

    pub fn operations(&self) -> &[String] {
        &self.operations
    }

    pub fn record(&mut self, s: &Sample) {
        if let Some(row) = self.by_phase.get_mut(s.phase)
            && let Some(stats) = row.get_mut(s.operation)
        {
            stats.record(s);
        }
        if let Some(stats) = self.interval.get_mut(s.operation) {
            stats.record(s);
        }
        self.last_completion = self.last_completion.max(s.completed_at);
    }

    /// Closes the open interval at `end`: writes it to `latency.hlog` (one
    /// histogram per operation, tagged with its name) and returns its summary.
    pub fn close_interval(&mut self, end: Duration) -> std::io::Result<IntervalResult> {
        let start = self.interval_start;
        let length = end.saturating_sub(start);
        let fresh = self
            .operations
            .iter()
            .map(|_| OperationStats::default())
            .collect();
        let closed: Vec<OperationStats> = std::mem::replace(&mut self.interval, fresh);
        self.interval_start = end;
        if let Some(log) = &mut self.hlog {
            let tagged: Vec<(&str, &Histogram<u64>)> = self
                .operations
                .iter()
                .zip(&closed)
                .map(|(name, stats)| (name.as_str(), &stats.latency))
                .collect();
            log.write_interval(start, length, &tagged)?;
        }
        let summary = IntervalResult {
            t_s: start.as_secs_f64(),
            operations: self
                .operations
                .iter()
                .zip(&closed)
                .enumerate()
                .map(|(i, (name, stats))| IntervalOperation {
                    operation: name.clone(),
                    count: stats.count,
                    errors: stats.errors,
                    latency_us: Percentiles::of(&stats.latency),
                    errors_by_kind: stats.errors_by_kind.clone(),
                    messages: (self.per_op(i) > 0)
                        .then(|| (stats.count - stats.errors) * self.per_op(i)),
                })
                .collect(),
        };
        self.intervals.push(summary.clone());
        Ok(summary)
    }

    /// Phase statistics of one operation.
    pub fn phase_stats(&self, phase: usize, operation: usize) -> Option<&OperationStats> {
        self.by_phase.get(phase)?.get(operation)
    }

    /// Run totals per operation: every phase's histograms merged.
    pub fn totals(&self) -> Vec<OperationStats> {
        let mut totals: Vec<OperationStats> = self
            .operations
            .iter()
            .map(|_| OperationStats::default())
            .collect();
        for row in &self.by_phase {
            for (total, stats) in totals.iter_mut().zip(row) {
                total.merge(stats);
            }
        }
        totals
    }

    /// The statistics so far as `results.json` data.
    pub fn results(&self, meta: &RunMeta, engine: EngineStats, complete: bool) -> RunResults {
        let phases = self
            .phases
            .iter()
            .zip(&self.by_phase)
            .map(|(info, row)| PhaseResult {
                name: info.name.clone(),
                duration_s: info.duration_s,
                target_rate_per_s: info.target_rate_per_s,
                operations: self
                    .operations
                    .iter()
                    .zip(row)
                    .enumerate()
                    .map(|(i, (name, stats))| {
                        with_messages(
                            stats.result(name, info.start_s, info.duration_s),
                            self.per_op(i),
                        )
                    })
                    .collect(),
            })
            .collect();
        let run_s: f64 = self.phases.iter().map(|p| p.duration_s).sum();
        let totals = self
            .operations
            .iter()
            .zip(self.totals())
            .enumerate()
            .map(|(i, (name, stats))| with_messages(stats.result(name, 0.0, run_s), self.per_op(i)))
            .collect();
        RunResults {
            format: RESULTS_FORMAT,
            scenario: meta.scenario.clone(),
            seed: meta.seed,
            started_at: meta.started_at.clone(),
            elapsed_s: self.last_completion.as_secs_f64(),
            runtime: meta.runtime.clone(),
            host: meta.host.clone(),
            git_revision: meta.git_revision.clone(),
            complete,
            interrupted: None,
            recovery: Vec::new(),
            engine,
            phases,
            totals,
            intervals: self.intervals.clone(),
        }
    }

    /// Flushes the interval log to disk.
    pub fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.hlog {
            Some(log) => log.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
