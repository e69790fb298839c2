//! One run, end to end: scenario → plan → run directory → stack → engine and
//! recorder → stack stopped → results. Stages hand each other plain data
//! ([`Plan`], [`Sample`](gauntlet_recorder::Sample), [`RunResults`]) and the
//! run directory; nothing is shared but the engine's counters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use gauntlet_control::Endpoint;
use gauntlet_recorder::{Recorder, RunMeta, RunResults, hlog::HlogWriter};
use gauntlet_scenario::{Diagnostic, EngineKind, Scenario, ServiceKind};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::collect;
use crate::driver::{self, Shared, Target};
use crate::engine::{self, EngineCounters, process_cpu};
use crate::plan::Plan;
use crate::recording::{self, Progress};
use crate::report_cmd;
use crate::rundir;
use crate::stack::StopReport;

/// The smoke scenario, embedded for runs outside the repository.
pub const SMOKE: &str = include_str!("../../../scenarios/smoke.yaml");

/// Where a scenario comes from.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    /// The embedded smoke scenario.
    Embedded,
}

impl Source {
    /// `scenarios/smoke.yaml` from the working directory or the workspace, else the embedded copy.
    pub fn default_smoke() -> Self {
        let local = PathBuf::from("scenarios/smoke.yaml");
        if local.is_file() {
            return Source::File(local);
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/smoke.yaml");
        if workspace.is_file() {
            return Source::File(workspace);
        }
        Source::Embedded
    }

    pub fn load(&self, overrides: &[String]) -> Result<Scenario, Vec<Diagnostic>> {
        match self {
            Source::File(path) => gauntlet_scenario::load_file(path, overrides),
            Source::Embedded => gauntlet_scenario::load("<embedded smoke.yaml>", SMOKE, overrides),
        }
    }
}

pub struct RunOptions {
    pub source: Source,
    pub overrides: Vec<String>,
    /// Root of run directories (default `target/gauntlet/runs`).
    pub out: Option<PathBuf>,
    /// No progress and no build chatter (tests).
    pub quiet: bool,
    /// Take the bundled binaries from this directory (`loadgen ab`).
    pub bin_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid scenario")]
    Invalid(Vec<Diagnostic>),
    #[error("{0}")]
    Harness(String),
}

/// What a finished (or interrupted) run produced.
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub results: RunResults,
    pub stops: Vec<StopReport>,
    /// Problems of the stack or harness noticed during the run (exit code 3).
    pub failures: Vec<String>,
    /// The scenario's SLOs checked against this run (`None` without `slo:`).
    pub verdict: Option<gauntlet_gate::Verdict>,
    /// The scenario's `checks:`, run on the history after the faults healed.
    pub checks: Vec<gauntlet_checkers::CheckVerdict>,
    /// `report.html` in the run directory, when it could be rendered.
    pub report: Option<PathBuf>,
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn harness<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> RunError + '_ {
    move |e| RunError::Harness(format!("{what}: {e}"))
}

pub async fn run(opts: RunOptions, cancel: CancellationToken) -> Result<RunOutcome, RunError> {
    let scenario = opts
        .source
        .load(&opts.overrides)
        .map_err(RunError::Invalid)?;
    let plan = Plan::new(scenario);
    let fault_windows = crate::chaos::plan(&plan.scenario).map_err(RunError::Harness)?;
    let root = opts.out.clone().unwrap_or_else(rundir::default_root);
    let run_dir = rundir::create(&root, &plan.scenario.name)
        .map_err(harness("creating the run directory"))?;
    rundir::write_atomic(
        &run_dir.join("scenario.yaml"),
        gauntlet_scenario::to_yaml(&plan.scenario).as_bytes(),
    )
    .map_err(harness("writing scenario.yaml"))?;

    let bins = crate::bins::Locator {
        dir: opts.bin_dir.clone(),
        quiet: opts.quiet,
    };
    // The stack, whatever its runtime (`stack.runtime`): the rest of the
    // run only uses the `Stack` control surface.
    let stack = tokio::select! {
        stack = crate::stack::boot(&plan.scenario, &run_dir, &bins, opts.quiet) => stack.map_err(RunError::Harness)?,
        _ = cancel.cancelled() => return Err(RunError::Harness("interrupted while the stack was starting".to_owned())),
    };
    for name in stack.services() {
        let base = stack
            .endpoint(&name)
            .map(|e| e.base_url())
            .unwrap_or_default();
        let log = stack.log_path(&name).unwrap_or_default();
        eprintln!("{name} ready at {base} (log: {})", log.display());
    }

    // Where the harness reaches each service, as a watch channel that
    // operations read per request: the stack's endpoint (it moves when a
    // container restarts on a new port), an external service's fixed base
    // URL, or the fault proxy on the link when a fault names that link.
    let mut endpoints = BTreeMap::new();
    let mut prefixes: BTreeMap<String, String> = BTreeMap::new();
    for name in stack.services() {
        match stack.watch_endpoint(&name) {
            Ok(rx) => {
                endpoints.insert(name, rx);
            }
            Err(e) => {
                stack.shutdown().await;
                return Err(RunError::Harness(e.to_string()));
            }
        }
    }
    for (name, url) in &plan.scenario.stack.external {
        match gauntlet_scenario::parse_base_url(url) {
            Ok(base) => {
                let endpoint = Endpoint {
                    host: base.host,
                    port: base.port,
                };
                endpoints.insert(name.clone(), tokio::sync::watch::channel(endpoint).1);
                prefixes.insert(name.clone(), base.prefix);
            }
            Err((message, _)) => {
                stack.shutdown().await;
                return Err(RunError::Harness(format!("service `{name}`: {message}")));
            }
        }
    }
    let proxies = match crate::chaos::start_proxies(&fault_windows, &mut endpoints, plan.seed) {
        Ok(p) => p,
        Err(e) => {
            stack.shutdown().await;
            return Err(RunError::Harness(e));
        }
    };
    let targets = |service: &str| {
        Target::new(
            endpoints[service].clone(),
            prefixes.get(service).map_or("", String::as_str),
        )
    };
    let shared = Shared::default();
    // The control-path client for set-up (the engine threads have their own).
    let client = crate::http::Client::new();
    let mut prepared = Vec::new();
    for (i, op) in plan.operations.iter().enumerate() {
        let ready = match driver::setup(&client, op, &targets).await {
            Ok(()) => {
                driver::prepare(op, &targets, plan.seed, i, &shared).map_err(|e| e.to_string())
            }
            Err(e) => Err(e),
        };
        match ready {
            Ok(p) => prepared.push(p),
            Err(e) => {
                stack.shutdown().await;
                return Err(RunError::Harness(e));
            }
        }
    }

    // `checks:`: every checked operation goes into history.jsonl.
    let tap = if plan.scenario.checks.is_empty() {
        None
    } else {
        match crate::history::Tap::create(&run_dir) {
            Ok(tap) => {
                for p in &mut prepared {
                    p.record_history(tap.clone());
                }
                Some(tap)
            }
            Err(e) => {
                stack.shutdown().await;
                return Err(RunError::Harness(format!("creating history.jsonl: {e}")));
            }
        }
    };
    let runtime = plan.scenario.stack.runtime.to_string();
    let meta = RunMeta {
        scenario: plan.scenario.name.clone(),
        seed: plan.seed,
        started_at: jiff::Timestamp::now().to_string(),
        runtime,
        host: host(),
        git_revision: git_revision(),
    };
    let hlog = HlogWriter::create(&run_dir.join("latency.hlog"), SystemTime::now())
        .map_err(harness("creating latency.hlog"))?;
    let recorder = Recorder::new(
        plan.recorded_names(),
        plan.phases
            .iter()
            .map(|p| gauntlet_recorder::PhaseInfo {
                name: p.name.clone(),
                start_s: p.start.as_secs_f64(),
                duration_s: p.duration.as_secs_f64(),
                target_rate_per_s: p.mean_rate(),
            })
            .collect(),
        Some(hlog),
    );

    let counters = Arc::new(EngineCounters::default());
    let threads = engine::engine_threads();
    let sink = Arc::new(recording::SampleSink::new(threads));
    let samples_done = CancellationToken::new();
    let cpu_start = process_cpu();
    let run_start = Instant::now();
    if let Some(tap) = &tap {
        tap.start(run_start);
    }
    let results_path = run_dir.join("results.json");
    let recording = tokio::spawn(recording::record(
        recorder,
        sink.clone(),
        samples_done.clone(),
        counters.clone(),
        meta,
        run_start,
        cpu_start,
        results_path.clone(),
        Progress::new(&plan, opts.quiet),
    ));
    // Collectors: each service's /metrics and process CPU/RSS, every second.
    let collector_stop = CancellationToken::new();
    let targets = stack
        .services()
        .into_iter()
        .map(|name| collect::Target {
            scrape: !matches!(
                plan.scenario.stack.services.get(&name).and_then(|s| s.kind),
                Some(ServiceKind::Postgres | ServiceKind::Redis)
            ),
            service: name,
        })
        .collect();
    let collecting = tokio::spawn(collect::collect(
        stack.clone(),
        targets,
        run_dir.join(gauntlet_recorder::metrics::METRICS_FILE),
        run_start,
        collector_stop.clone(),
        plan.total_duration() + std::time::Duration::from_secs(120),
    ));
    // Faults next to the load; one that cannot be applied stops the load.
    let load_cancel = cancel.child_token();
    let mut fault_failures = Vec::new();
    let chaos = if fault_windows.is_empty() {
        None
    } else {
        let stop = load_cancel.clone();
        crate::chaos::start(
            fault_windows,
            proxies,
            stack.clone(),
            &run_dir,
            run_start,
            stop,
        )
        .map_err(|e| {
            fault_failures.push(e);
            load_cancel.cancel();
        })
        .ok()
    };
    let prepared = Arc::new(prepared);
    let engine_result = match plan.scenario.workload.engine {
        EngineKind::Open => {
            engine::run(
                &plan,
                prepared,
                sink,
                threads,
                counters,
                run_start,
                load_cancel.clone(),
            )
            .await
        }
        EngineKind::Closed => {
            // Goose wants a host; the operations go to their own targets.
            let host = endpoints
                .values()
                .next()
                .map(|rx| rx.borrow().base_url())
                .unwrap_or_default();
            crate::closed::run(
                &plan,
                prepared,
                sink,
                counters,
                run_start,
                &run_dir,
                &host,
                load_cancel.clone(),
                cancel.clone(),
            )
            .await
        }
    };
    samples_done.cancel();
    let fault_records = match chaos {
        Some(chaos) => {
            let (records, errors) = chaos.finish().await;
            fault_failures.extend(errors);
            records
        }
        None => Vec::new(),
    };
    // The read-back and the checks, once every fault has healed.
    let mut check_verdicts = Vec::new();
    let mut check_failures = Vec::new();
    if let Some(tap) = &tap {
        tap.flush();
        if fault_failures.is_empty() && !cancel.is_cancelled() {
            // The read-back goes to each service directly, not through the
            // fault proxies (gone with the timeline).
            let mut direct = endpoints.clone();
            for name in stack.services() {
                if let Ok(rx) = stack.watch_endpoint(&name) {
                    direct.insert(name, rx);
                }
            }
            match crate::history::run_checks(
                &plan,
                &direct,
                &prefixes,
                &fault_records,
                run_start,
                &run_dir,
            )
            .await
            {
                Ok(v) => check_verdicts = v,
                Err(e) => check_failures.push(format!("the read-back for the checks failed: {e}")),
            }
        }
    }
    let recorded = recording.await.map_err(harness("the recorder task"))?;
    collector_stop.cancel();
    let collected = collecting.await.unwrap_or_default();

    let mut failures = Vec::new();
    if let Err(e) = engine_result {
        failures.push(format!("the engine failed: {e}"));
    }
    if let Some(e) = collected.write_error {
        failures.push(format!("writing metrics.jsonl failed: {e}"));
    }
    let stops = stack.shutdown().await;
    for stop in &stops {
        if !stop.graceful {
            failures.push(format!(
                "service `{}` did not stop gracefully: {}",
                stop.service, stop.status
            ));
        }
    }
    let mut results = recorded.results;
    if cancel.is_cancelled() {
        results.complete = false;
        results.interrupted =
            Some("interrupted by a signal before the last phase ended".to_owned());
    }
    if load_cancel.is_cancelled() && !cancel.is_cancelled() {
        results.complete = false;
        results.interrupted = Some("the load was stopped: a fault could not be applied".to_owned());
    }
    failures.extend(fault_failures);
    failures.extend(check_failures);
    results.recovery = crate::chaos::recovery(&results, &fault_records, &plan.scenario);
    if let Some(e) = recorded.write_error {
        failures.push(format!("writing the run directory failed: {e}"));
    }
    rundir::write_json(&results_path, &results).map_err(harness("writing results.json"))?;
    let summary = gauntlet_reports::summary_table(&results);
    let _ = rundir::write_atomic(&run_dir.join("summary.txt"), summary.as_bytes());
    // The scenario's SLOs, checked on the gated phases of this run.
    let verdict = if plan.scenario.slo.is_empty() || results.interrupted.is_some() {
        None
    } else {
        match gauntlet_gate::gate(std::slice::from_ref(&run_dir), None, None)
            .and_then(|v| gauntlet_gate::output::write_all(&v, &run_dir).map(|()| v))
        {
            Ok(v) => Some(v),
            Err(e) => {
                failures.push(format!("checking the SLOs failed: {e}"));
                None
            }
        }
    };
    if !check_verdicts.is_empty()
        && let Err(e) =
            crate::history::write_verdict(&run_dir, &plan.scenario.name, &check_verdicts)
    {
        failures.push(format!("writing the check verdicts failed: {e}"));
    }
    // The report, from the files just written (as `loadgen report` renders
    // it); results.json is already safe on disk whatever happens here.
    let report = match report_cmd::write_run_report(&run_dir) {
        Ok(path) => Some(path),
        Err(e) => {
            failures.push(format!("rendering report.html failed: {e}"));
            None
        }
    };
    Ok(RunOutcome {
        run_dir,
        results,
        stops,
        failures,
        verdict,
        checks: check_verdicts,
        report,
    })
}
