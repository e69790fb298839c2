//! A synthetic run directory, built without a system under test: the
//! recorder fed with generated samples (so `results.json` and `latency.hlog`
//! are exactly what a run writes), plus `faults.json`, `metrics.jsonl` and,
//! optionally, a `verdict.json`. Deterministic: a fixed xorshift, no clock.
//!
//! Used by the report tests and by `examples/synthetic_report.rs`, which
//! measures report size and render time for a 30-minute run.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use gauntlet_recorder::faults::Fault;
use gauntlet_recorder::hlog::HlogWriter;
use gauntlet_recorder::metrics::MetricsRecord;
use gauntlet_recorder::{EngineStats, Outcome, PhaseInfo, Recorder, RunMeta, RunResults, Sample};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    pub seconds: u32,
    pub operations: Vec<&'static str>,
    /// Arrivals per second per operation in the steady phase.
    pub rate_per_op: u32,
    /// Number of faults (spread evenly over the run, up to 5 kinds).
    pub faults: usize,
    /// Stop recording here, as a SIGKILLed run would: results.json says
    /// `complete: false`, latency.hlog and metrics.jsonl end in a torn line,
    /// the fault being applied has no end.
    pub killed_at: Option<u32>,
    /// Write a verdict.json (the gate's shape plus checkers' `checks`):
    /// one passing and one failing check, two SLOs, two gate metrics.
    pub verdict: bool,
    /// Latency multiplier (a slower build, for comparisons).
    pub slowdown: f64,
}

impl Spec {
    /// The measured case: 30 minutes, 4 operations, 5 faults.
    pub fn thirty_minutes() -> Self {
        Self {
            seconds: 1800,
            operations: vec!["append", "read", "enqueue", "kv_get"],
            rate_per_op: 250,
            faults: 5,
            killed_at: None,
            verdict: false,
            slowdown: 1.0,
        }
    }

    /// A small run for tests.
    pub fn small() -> Self {
        Self {
            seconds: 90,
            operations: vec!["append", "read", "enqueue", "kv_get"],
            rate_per_op: 40,
            faults: 5,
            killed_at: None,
            verdict: false,
            slowdown: 1.0,
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const FAULT_KINDS: [(&str, &str, &str); 5] = [
    ("kill-fabric", "process.kill", "fabric"),
    ("pause-fabric", "process.pause", "fabric"),
    ("slow-link", "link.latency", "loadgen->fabric"),
    ("partition", "link.down", "loadgen->fabric"),
    ("disk-full", "resource.disk_full", "fabric"),
];

/// The faults of a spec: evenly spaced, 5 to 40 s long.
pub fn faults(spec: &Spec) -> Vec<Fault> {
    let n = spec.faults;
    (0..n)
        .map(|i| {
            let (name, kind, target) = FAULT_KINDS[i % FAULT_KINDS.len()];
            let start = f64::from(spec.seconds) * (i as f64 + 1.0) / (n as f64 + 1.0);
            let len =
                [4.0, 8.0, 30.0, 12.0, 20.0][i % 5] * (f64::from(spec.seconds) / 1800.0).max(0.25);
            let mut params = BTreeMap::new();
            match kind {
                "process.kill" => {
                    params.insert("signal".to_owned(), serde_json::json!("KILL"));
                    params.insert("restart_after".to_owned(), serde_json::json!("2s"));
                }
                "link.latency" => {
                    params.insert("latency".to_owned(), serde_json::json!("50ms"));
                    params.insert("jitter".to_owned(), serde_json::json!("10ms"));
                }
                _ => {}
            }
            Fault {
                name: if i < FAULT_KINDS.len() {
                    name.to_owned()
                } else {
                    format!("{name}-{}", i / FAULT_KINDS.len() + 1)
                },
                kind: kind.to_owned(),
                target: target.to_owned(),
                start_s: start.round(),
                end_s: Some((start + len).round()),
                params,
            }
        })
        .collect()
}

fn phases(seconds: u32) -> Vec<PhaseInfo> {
    let s = f64::from(seconds);
    let warm = (s * 0.05).round().max(1.0);
    let ramp = (s * 0.15).round().max(1.0);
    vec![
        PhaseInfo {
            name: "warmup".into(),
            start_s: 0.0,
            duration_s: warm,
            target_rate_per_s: 0.0,
        },
        PhaseInfo {
            name: "ramp".into(),
            start_s: warm,
            duration_s: ramp,
            target_rate_per_s: 0.0,
        },
        PhaseInfo {
            name: "steady".into(),
            start_s: warm + ramp,
            duration_s: s - warm - ramp,
            target_rate_per_s: 0.0,
        },
    ]
}

/// Builds the run directory; returns the results as written.
pub fn build(dir: &Path, spec: &Spec) -> RunResults {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let faults = faults(spec);
    let mut phase_info = phases(spec.seconds);
    let n_ops = spec.operations.len() as f64;
    let rate = f64::from(spec.rate_per_op);
    for p in &mut phase_info {
        p.target_rate_per_s = match p.name.as_str() {
            "warmup" => rate * 0.2 * n_ops,
            "ramp" => rate * 0.6 * n_ops,
            _ => rate * n_ops,
        };
    }
    let hlog = HlogWriter::create(&dir.join("latency.hlog"), SystemTime::UNIX_EPOCH).unwrap();
    let mut rec = Recorder::new(
        spec.operations.iter().map(|s| s.to_string()).collect(),
        phase_info.clone(),
        Some(hlog),
    );
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let end = spec.killed_at.unwrap_or(spec.seconds);
    let mut started = 0u64;
    let mut late = 0u64;
    let mut metrics_lines = String::new();
    let mut requests = 0f64;
    let mut fsyncs = 0f64;
    let mut cpu = 0f64;
    for s in 0..end {
        let t = f64::from(s);
        let phase = phase_info.iter().rposition(|p| t >= p.start_s).unwrap_or(0);
        let p = &phase_info[phase];
        let level = match p.name.as_str() {
            "warmup" => 0.2,
            "ramp" => 0.2 + 0.8 * (t - p.start_s) / p.duration_s,
            _ => 1.0,
        };
        let fault = faults
            .iter()
            .find(|f| t >= f.start_s && t < f.end_s.unwrap_or(f64::MAX));
        // Recovery tail: a few seconds of reduced throughput after a fault.
        let after = faults
            .iter()
            .any(|f| f.end_s.is_some_and(|e| t >= e && t < e + 3.0));
        let mut second_requests = 0.0;
        for (op, _) in spec.operations.iter().enumerate() {
            let base_us = 400.0 * (op as f64 + 1.0) * spec.slowdown;
            let mut n = (rate * level).round() as u64;
            if fault.is_some() {
                n /= 3;
            } else if after {
                n = n * 2 / 3;
            }
            for k in 0..n {
                let u = rng.unit();
                // A long-tailed latency: mostly near base, rarely 10–100×.
                let mut lat = base_us * (1.0 + 0.5 * rng.unit()) / (1.0 - u * 0.999).sqrt();
                let mut outcome = Outcome::Ok;
                if let Some(f) = fault {
                    lat *= 8.0;
                    if rng.unit() < 0.3 {
                        outcome = Outcome::Error(
                            match f.kind.as_str() {
                                "process.kill" | "link.down" => "connect",
                                "process.pause" | "link.latency" => "timeout",
                                _ => "http_503",
                            }
                            .to_owned(),
                        );
                    }
                }
                let is_late = rng.unit() < 0.001;
                late += u64::from(is_late);
                started += 1;
                rec.record(&Sample {
                    operation: op,
                    phase,
                    latency_us: lat as u64,
                    service_us: (lat * 0.8) as u64,
                    late: is_late,
                    outcome,
                    completed_at: Duration::from_secs_f64(t + (k as f64 + 0.5) / n as f64),
                });
                second_requests += 1.0;
            }
        }
        rec.close_interval(Duration::from_secs(u64::from(s) + 1))
            .unwrap();
        requests += second_requests;
        fsyncs += second_requests / 8.0;
        cpu += 0.05 + second_requests / 20_000.0;
        let alive = fault.is_none_or(|f| f.kind != "process.kill");
        let record = MetricsRecord {
            t_s: t + 1.0,
            service: "fabric".into(),
            pid: Some(4242),
            cpu_seconds: alive.then_some(cpu),
            rss_bytes: alive.then_some(((40.0 + t / 60.0) * 1048576.0) as u64),
            metrics: if alive {
                [
                    (
                        "flowmesh_http_requests_total{route=\"/api/v1/streams/{t}/{ns}/{s}/events\",status=\"200\"}".to_owned(),
                        requests,
                    ),
                    ("flowmesh_fsync_total".to_owned(), fsyncs),
                    ("flowmesh_queue_depth{queue=\"jobs\"}".to_owned(), (second_requests / 50.0).round()),
                    ("flowmesh_in_flight_requests".to_owned(), (second_requests / 100.0).round()),
                    ("flowmesh_fsync_duration_seconds_count".to_owned(), fsyncs),
                ]
                .into()
            } else {
                BTreeMap::new()
            },
            types: if alive {
                [
                    (
                        "flowmesh_http_requests_total".to_owned(),
                        "counter".to_owned(),
                    ),
                    ("flowmesh_fsync_total".to_owned(), "counter".to_owned()),
                    ("flowmesh_queue_depth".to_owned(), "gauge".to_owned()),
                    ("flowmesh_in_flight_requests".to_owned(), "gauge".to_owned()),
                    (
                        "flowmesh_fsync_duration_seconds".to_owned(),
                        "histogram".to_owned(),
                    ),
                ]
                .into()
            } else {
                BTreeMap::new()
            },
            scrape_error: (!alive).then(|| "connect: connection refused".to_owned()),
        };
        metrics_lines.push_str(&serde_json::to_string(&record).unwrap());
        metrics_lines.push('\n');
    }
    rec.flush().unwrap();
    let complete = spec.killed_at.is_none();
    let engine = EngineStats {
        scheduled: if complete { started } else { started * 2 },
        started,
        late,
        late_engine: late / 2,
        late_in_flight_limit: late - late / 2,
        max_start_lag_us: 7_300,
        peak_in_flight: 37,
        cpu_ms: started as f64 * 0.03,
        cpu_ms_per_1000_ops: 30.0,
        bottleneck: None,
    };
    let meta = RunMeta {
        scenario: "synthetic".into(),
        seed: 7,
        started_at: "2026-11-23T05:00:00Z".into(),
        runtime: "process".into(),
        host: "synthetic-host".into(),
        git_revision: Some("0123456789ab".into()),
    };
    let results = rec.results(&meta, engine, complete);
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(&results).unwrap(),
    )
    .unwrap();
    let mut written_faults: Vec<Fault> = faults
        .into_iter()
        .filter(|f| f.start_s < f64::from(end))
        .collect();
    if let Some(k) = spec.killed_at {
        for f in &mut written_faults {
            if f.end_s.is_some_and(|e| e > f64::from(k)) {
                f.end_s = None;
            }
        }
    }
    if spec.faults > 0 {
        std::fs::write(
            dir.join("faults.json"),
            serde_json::to_vec_pretty(&written_faults).unwrap(),
        )
        .unwrap();
    }
    let mut m = std::fs::File::create(dir.join("metrics.jsonl")).unwrap();
    m.write_all(metrics_lines.as_bytes()).unwrap();
    if spec.killed_at.is_some() {
        // Torn last lines, as a SIGKILL mid-write leaves them.
        m.write_all(b"{\"t_s\":99999,\"service\":\"fab").unwrap();
        let mut h = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("latency.hlog"))
            .unwrap();
        h.write_all(b"Tag=append,1234.000,1.000,0.812,HISTFAAAAB3ic")
            .unwrap();
    }
    std::fs::write(
        dir.join("scenario.yaml"),
        "name: synthetic\n# generated for report tests\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("logs/fabric.log"),
        "{\"level\":\"info\",\"msg\":\"ready\"}\n",
    )
    .unwrap();
    if spec.verdict {
        std::fs::write(
            dir.join("verdict.json"),
            serde_json::to_vec_pretty(&serde_json::json!({
                "scenario": "synthetic",
                "passed": false,
                "checks": [
                    { "name": "fabric.no_acked_write_lost", "passed": true, "evidence": "12,345 acknowledged appends, all read back" },
                    { "name": "fabric.no_offset_reused", "passed": false, "evidence": "offset 1041 acknowledged twice (appends #1041 and #1187)" }
                ],
                "slo": [
                    { "operation": "append", "metric": "p99", "limit": "<= 50ms", "actual": "6.2ms", "passed": true },
                    { "operation": "read", "metric": "errors", "limit": "< 0.1%", "actual": "0.46%", "passed": false }
                ],
                "comparisons": [
                    { "operation": "append", "metric": "p99", "outcome": "pass", "baseline": 6100.0, "candidate": 6230.0,
                      "change": 0.021, "change_low": -0.01, "change_high": 0.05, "tolerance": 0.1,
                      "samples_baseline": 60, "samples_candidate": 60, "note": "" },
                    { "operation": "read", "metric": "throughput", "outcome": "inconclusive", "baseline": 250.0, "candidate": 240.0,
                      "change": -0.04, "change_low": -0.12, "change_high": 0.02, "tolerance": 0.1,
                      "samples_baseline": 60, "samples_candidate": 60, "note": "" }
                ],
                "regressions": 0, "improvements": 0, "inconclusive": 1, "slo_failures": 1
            }))
            .unwrap(),
        )
        .unwrap();
    }
    results
}

/// Folded stacks of the synthetic fabric: `(window, kind, start_s, end_s, folded)`.
/// The fault window spends more in writing answers and less in commits.
pub const PROFILES: [(&str, &str, f64, f64, &str); 2] = [
    (
        "steady",
        "phase",
        18.0,
        90.0,
        "fabric-node;tokio::runtime::worker::run;fabric::http::append;fabric::actor::commit;fabric::durable::fsync 120\n\
         fabric-node;tokio::runtime::worker::run;fabric::http::append;fabric::frame::encode 60\n\
         fabric-node;tokio::runtime::worker::run;fabric::http::append;serde_json::de::from_slice 40\n\
         fabric-node;tokio::runtime::worker::run;hyper::proto::h1::write 30\n",
    ),
    (
        "slow-link",
        "fault",
        40.0,
        50.0,
        "fabric-node;tokio::runtime::worker::run;fabric::http::append;fabric::actor::commit;fabric::durable::fsync 20\n\
         fabric-node;tokio::runtime::worker::run;fabric::http::append;fabric::frame::encode 10\n\
         fabric-node;tokio::runtime::worker::run;hyper::proto::h1::write 70\n",
    ),
];

/// Writes `profiles/index.json` and the fabric's folded stacks of
/// [`PROFILES`] (the `.pb.gz` files are the harness's; the report reads
/// the folded stacks).
pub fn profiles(dir: &Path) {
    let pdir = dir.join("profiles/fabric");
    std::fs::create_dir_all(&pdir).unwrap();
    let mut entries = Vec::new();
    for (window, kind, start, end, folded) in PROFILES {
        std::fs::write(pdir.join(format!("{window}.folded")), folded).unwrap();
        let samples: u64 = folded
            .lines()
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
            .sum();
        entries.push(serde_json::json!({
            "service": "fabric", "window": window, "kind": kind,
            "start_s": start, "end_s": end, "frequency": 99, "samples": samples,
        }));
    }
    std::fs::write(
        dir.join("profiles/index.json"),
        serde_json::to_vec(&serde_json::json!({ "profiles": entries })).unwrap(),
    )
    .unwrap();
}
