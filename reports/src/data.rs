//! A run directory read back for reporting: `results.json` (required),
//! `latency.hlog` merged per operation, `faults.json`, `metrics.jsonl`,
//! `verdict.json` — each optional, each read tolerantly, because a report
//! must render for a run that was killed halfway.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use gauntlet_recorder::faults::{self, FAULTS_FILE, Fault};
use gauntlet_recorder::metrics::{self, METRICS_FILE, MetricsRecord};
use gauntlet_recorder::{RunResults, hlog, new_histogram};
use hdrhistogram::Histogram;

/// Why a run directory cannot be reported on. Every variant is bad input
/// (exit code 2 at the edge): the directory, not the harness, is at fault.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("{} is not a run directory (no results.json in it)", .0.display())]
    NoResults(PathBuf),
    #[error("cannot read {}: {error}", .path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{} is not a valid results.json: {error}", .path.display())]
    BadResults {
        path: PathBuf,
        error: serde_json::Error,
    },
}

/// One check's, SLO's or gate metric's verdict, as `verdict.json` states it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    /// The verdict in the checker's word: `pass`, `fail`, `regression`,
    /// `improvement`, `inconclusive`.
    pub outcome: String,
    /// What the checker saw, in its own words (counts, offsets, the first mismatch).
    pub evidence: String,
}

/// `verdict.json`, read tolerantly: the checkers and the gate own its
/// shape (`gauntlet-gate` writes `passed`, `slo: [{operation, metric, limit,
/// actual, passed}]` and `comparisons: [{operation, metric, outcome, …}]`;
/// checkers add `checks: [{name, passed, evidence}]`). The report needs the
/// overall verdict and each line with its evidence; unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    pub passed: Option<bool>,
    pub checks: Vec<CheckResult>,
    pub slo: Vec<CheckResult>,
    pub gates: Vec<CheckResult>,
}

fn str_of<'a>(v: &'a serde_json::Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| v.get(*k).and_then(|s| s.as_str()))
}

fn passed_of(v: &serde_json::Value) -> Option<bool> {
    for key in ["passed", "ok", "pass", "success"] {
        if let Some(b) = v.get(key).and_then(|b| b.as_bool()) {
            return Some(b);
        }
    }
    let s = str_of(v, &["verdict", "status", "result", "outcome"])?.to_ascii_lowercase();
    match s.as_str() {
        "pass" | "passed" | "ok" | "success" | "improvement" | "inconclusive" => Some(true),
        "fail" | "failed" | "failure" | "regression" | "error" => Some(false),
        _ => None,
    }
}

fn text_of(v: &serde_json::Value) -> String {
    for key in [
        "evidence", "message", "detail", "details", "reason", "summary", "note",
    ] {
        match v.get(key) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => return s.clone(),
            Some(serde_json::Value::String(_) | serde_json::Value::Null) | None => {}
            Some(other) => return other.to_string(),
        }
    }
    String::new()
}

fn fmt_value(v: Option<f64>, metric: &str) -> String {
    match v {
        None => "–".to_owned(),
        Some(v) if metric.starts_with('p') || metric == "max" => crate::human_us(v.round() as u64),
        Some(v) if metric == "throughput" => crate::human_rate(v),
        Some(v) if metric == "errors" => format!("{:.3} %", v * 100.0),
        Some(v) => format!("{v}"),
    }
}

impl Verdict {
    pub fn from_json(v: &serde_json::Value) -> Self {
        let items = |key: &str| -> Vec<&serde_json::Value> {
            v.get(key)
                .and_then(|a| a.as_array())
                .map(|a| a.iter().collect())
                .unwrap_or_default()
        };
        let checks = items("checks")
            .into_iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let passed = passed_of(c)?;
                Some(CheckResult {
                    name: str_of(c, &["name", "check", "id"])
                        .map_or_else(|| format!("#{}", i + 1), str::to_owned),
                    passed,
                    outcome: str_of(c, &["outcome", "verdict"])
                        .map_or(if passed { "pass" } else { "fail" }, |s| s)
                        .to_owned(),
                    evidence: text_of(c),
                })
            })
            .collect();
        let slo = items("slo")
            .into_iter()
            .filter_map(|c| {
                let passed = passed_of(c)?;
                let op = str_of(c, &["operation"]).unwrap_or("");
                let metric = str_of(c, &["metric"]).unwrap_or("");
                let limit = str_of(c, &["limit"]).unwrap_or("");
                let actual = str_of(c, &["actual"]).unwrap_or("");
                Some(CheckResult {
                    name: format!("{op} {metric} {limit}").trim().to_owned(),
                    passed,
                    outcome: if passed { "pass" } else { "fail" }.to_owned(),
                    evidence: if actual.is_empty() {
                        text_of(c)
                    } else {
                        format!("measured {actual}, objective {limit}")
                    },
                })
            })
            .collect();
        let gates = items("comparisons")
            .into_iter()
            .filter_map(|c| {
                let outcome = str_of(c, &["outcome"])?.to_owned();
                let op = str_of(c, &["operation"]).unwrap_or("");
                let metric = str_of(c, &["metric"]).unwrap_or("");
                let num = |k: &str| c.get(k).and_then(|x| x.as_f64());
                let mut evidence = format!(
                    "baseline {}, this run {}",
                    fmt_value(num("baseline"), metric),
                    fmt_value(num("candidate"), metric)
                );
                if let (Some(ch), Some(lo), Some(hi)) =
                    (num("change"), num("change_low"), num("change_high"))
                {
                    let (unit, k) = if metric == "errors" {
                        (" pt", 100.0)
                    } else {
                        (" %", 100.0)
                    };
                    let _ = std::fmt::Write::write_fmt(
                        &mut evidence,
                        format_args!(
                            "; change {:+.1}{unit} (interval {:+.1} to {:+.1}{unit})",
                            ch * k,
                            lo * k,
                            hi * k
                        ),
                    );
                }
                let note = text_of(c);
                if !note.is_empty() {
                    evidence.push_str(&format!("; {note}"));
                }
                Some(CheckResult {
                    name: format!("{op} {metric}").trim().to_owned(),
                    passed: outcome != "regression",
                    outcome,
                    evidence,
                })
            })
            .collect();
        Self {
            passed: v.get("passed").and_then(|b| b.as_bool()),
            checks,
            slo,
            gates,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.passed.is_none()
            && self.checks.is_empty()
            && self.slo.is_empty()
            && self.gates.is_empty()
    }
}

/// A run directory's files, read.
pub struct RunData {
    /// The run directory (or the results file of a baseline).
    pub dir: PathBuf,
    /// A short name for the run: the directory's name.
    pub label: String,
    pub results: RunResults,
    /// Latency histograms per operation, every interval of `latency.hlog` merged.
    pub latency: BTreeMap<String, Histogram<u64>>,
    /// Intervals read from `latency.hlog`.
    pub hlog_intervals: usize,
    /// Why the distribution plots may be missing or partial.
    pub hlog_note: Option<String>,
    pub faults: Vec<Fault>,
    pub faults_note: Option<String>,
    pub metrics: Vec<MetricsRecord>,
    pub verdict: Option<Verdict>,
    pub verdict_note: Option<String>,
    /// P99 objectives per operation, in µs (when the scenario states any).
    pub slo_p99_us: BTreeMap<String, u64>,
    /// Files present in the run directory, relative, with sizes (for the "files" list).
    pub files: Vec<(String, u64)>,
    /// CPU profiles (`profiles/index.json` and each window's folded stacks).
    pub profiles: Vec<ProfileData>,
    /// Why profiles listed in the index could not be read.
    pub profiles_note: Option<String>,
}

/// One service's profile over one window.
#[derive(Debug, Clone)]
pub struct ProfileData {
    pub entry: gauntlet_recorder::profiles::Entry,
    pub folded: gauntlet_recorder::profiles::Folded,
}

impl RunData {
    /// The profile of `service` over `window`, if any.
    pub fn profile(&self, service: &str, window: &str) -> Option<&ProfileData> {
        self.profiles
            .iter()
            .find(|p| p.entry.service == service && p.entry.window == window)
    }
}

/// Reads `profiles/`: the index, then each window's folded stacks; a
/// missing or bad file is a note, never an error (the report still renders).
fn read_profiles(dir: &Path) -> (Vec<ProfileData>, Option<String>) {
    let index = match gauntlet_recorder::profiles::read_index(dir) {
        Ok(Some(i)) => i,
        Ok(None) => return (Vec::new(), None),
        Err(e) => return (Vec::new(), Some(format!("profiles/index.json: {e}"))),
    };
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for entry in index.profiles {
        let path = dir.join(entry.folded_path());
        let folded = match fs::read_to_string(&path) {
            Ok(text) => match gauntlet_recorder::profiles::Folded::parse(&text) {
                Ok(f) => f,
                Err(e) => {
                    problems.push(format!("{}: {e}", entry.folded_path().display()));
                    continue;
                }
            },
            Err(e) => {
                problems.push(format!("{}: {e}", entry.folded_path().display()));
                continue;
            }
        };
        out.push(ProfileData { entry, folded });
    }
    (out, (!problems.is_empty()).then(|| problems.join("; ")))
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, LoadError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(LoadError::Io {
            path: path.to_owned(),
            error,
        }),
    }
}

/// Merges an interval log's histograms per tag.
pub fn merge_hlog(bytes: &[u8]) -> (BTreeMap<String, Histogram<u64>>, usize) {
    let mut merged: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let n = hlog::visit(bytes, |i| {
        let tag = i.tag.unwrap_or_else(|| "(untagged)".to_owned());
        let h = merged.entry(tag).or_insert_with(new_histogram);
        // Same bounds (or narrower) on both sides; a histogram from a
        // foreign tool with a wider range saturates instead of failing.
        if h.add(&i.histogram).is_err() {
            for v in i.histogram.iter_recorded() {
                h.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    });
    (merged, n)
}

impl RunData {
    /// Reads a run directory. Only `results.json` is required.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        if !dir.exists() {
            return Err(LoadError::Missing(dir.to_owned()));
        }
        if dir.is_file() {
            return Self::load_results_file(dir);
        }
        let results_path = dir.join("results.json");
        let Some(bytes) = read_optional(&results_path)? else {
            return Err(LoadError::NoResults(dir.to_owned()));
        };
        let results: RunResults =
            serde_json::from_slice(&bytes).map_err(|error| LoadError::BadResults {
                path: results_path.clone(),
                error,
            })?;
        let label = fs::canonicalize(dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        let mut run = Self::bare(dir.to_owned(), label, results);

        match read_optional(&dir.join("latency.hlog"))? {
            Some(bytes) => {
                let (latency, n) = merge_hlog(&bytes);
                run.latency = latency;
                run.hlog_intervals = n;
                if n == 0 {
                    run.hlog_note = Some("latency.hlog holds no complete interval".to_owned());
                } else if !run.results.complete {
                    run.hlog_note = Some(format!(
                        "the run did not complete: {n} intervals of latency.hlog were readable"
                    ));
                }
            }
            None => run.hlog_note = Some("latency.hlog is missing".to_owned()),
        }
        if let Some(bytes) = read_optional(&dir.join(FAULTS_FILE))? {
            match faults::parse(&bytes) {
                Ok(f) => run.faults = f,
                Err(e) => run.faults_note = Some(format!("faults.json is not valid: {e}")),
            }
        }
        if let Some(bytes) = read_optional(&dir.join(METRICS_FILE))? {
            run.metrics = metrics::parse(&String::from_utf8_lossy(&bytes));
        }
        if let Some(bytes) = read_optional(&dir.join("verdict.json"))? {
            match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(v) => run.verdict = Some(Verdict::from_json(&v)),
                Err(e) => run.verdict_note = Some(format!("verdict.json is not valid: {e}")),
            }
        }
        (run.profiles, run.profiles_note) = read_profiles(dir);
        run.files = list_files(dir);
        Ok(run)
    }

    /// A baseline given as a `results.json`-shaped file rather than a run directory.
    pub fn load_results_file(path: &Path) -> Result<Self, LoadError> {
        let bytes = fs::read(path).map_err(|error| LoadError::Io {
            path: path.to_owned(),
            error,
        })?;
        let results: RunResults =
            serde_json::from_slice(&bytes).map_err(|error| LoadError::BadResults {
                path: path.to_owned(),
                error,
            })?;
        let label = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut run = Self::bare(path.to_owned(), label, results);
        run.hlog_note = Some("a results file has no latency.hlog".to_owned());
        Ok(run)
    }

    /// Results alone (tests, baselines).
    pub fn bare(dir: PathBuf, label: String, results: RunResults) -> Self {
        Self {
            dir,
            label,
            results,
            latency: BTreeMap::new(),
            hlog_intervals: 0,
            hlog_note: None,
            faults: Vec::new(),
            faults_note: None,
            metrics: Vec::new(),
            verdict: None,
            verdict_note: None,
            slo_p99_us: BTreeMap::new(),
            files: Vec::new(),
            profiles: Vec::new(),
            profiles_note: None,
        }
    }

    /// Phases on the run's timeline: `(name, start_s, end_s)`, back to back.
    pub fn phase_spans(&self) -> Vec<(String, f64, f64)> {
        let mut t = 0.0;
        self.results
            .phases
            .iter()
            .map(|p| {
                let span = (p.name.clone(), t, t + p.duration_s);
                t += p.duration_s;
                span
            })
            .collect()
    }

    /// The end of the run's timeline: the planned phases, or later completions.
    pub fn end_s(&self) -> f64 {
        let planned: f64 = self.results.phases.iter().map(|p| p.duration_s).sum();
        let last_interval = self.results.intervals.last().map_or(0.0, |i| i.t_s + 1.0);
        let observed = if self.results.complete {
            self.results.elapsed_s.max(planned)
        } else {
            self.results.elapsed_s.max(last_interval)
        };
        let faults = self
            .faults
            .iter()
            .map(|f| f.end_s.unwrap_or(f.start_s))
            .fold(0.0, f64::max);
        observed.max(faults).max(1.0)
    }

    /// Operation names in the results' order.
    pub fn operations(&self) -> Vec<String> {
        let mut ops: Vec<String> = self
            .results
            .totals
            .iter()
            .map(|o| o.operation.clone())
            .collect();
        for p in &self.results.phases {
            for o in &p.operations {
                if !ops.contains(&o.operation) {
                    ops.push(o.operation.clone());
                }
            }
        }
        ops
    }
}

fn list_files(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_file() {
            out.push((name, meta.len()));
        } else if meta.is_dir()
            && name == "logs"
            && let Ok(logs) = fs::read_dir(e.path())
        {
            for l in logs.flatten() {
                if let Ok(m) = l.metadata()
                    && m.is_file()
                {
                    out.push((format!("logs/{}", l.file_name().to_string_lossy()), m.len()));
                }
            }
        } else if meta.is_dir() && name == gauntlet_recorder::profiles::DIR {
            // profiles/index.json and profiles/<service>/<window>.{pb.gz,folded}
            let mut stack = vec![(e.path(), name.clone())];
            while let Some((path, rel)) = stack.pop() {
                for l in fs::read_dir(&path).into_iter().flatten().flatten() {
                    let child = format!("{rel}/{}", l.file_name().to_string_lossy());
                    match l.metadata() {
                        Ok(m) if m.is_file() => out.push((child, m.len())),
                        Ok(m) if m.is_dir() => stack.push((l.path(), child)),
                        _ => {}
                    }
                }
            }
        }
    }
    out.sort();
    out
}
