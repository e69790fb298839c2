//! One run, end to end, as named stages: [`plan_run`] (scenario → plan →
//! run directory), [`boot_stack`], [`connect`] (endpoints, fault proxies),
//! [`prepare_operations`] (drivers, set-up, history tap),
//! [`start_recording`], [`start_collectors`], [`start_faults`],
//! [`drive_load`], [`heal_faults`], [`check`] and [`finish`] (results,
//! SLOs, verdicts, report). Stages hand each other plain data ([`Plan`],
//! [`Sample`](gauntlet_recorder::Sample), [`RunResults`]) and the run
//! directory; nothing is shared but the engine's counters.
//!
//! Every resource a run acquires — the stack, the fault proxies, the fault
//! timeline, the collectors, the recorder task — is held by one guard,
//! [`Resources`], and released by [`Resources::release`] on every path:
//! success, an error of any stage, Ctrl-C (the stages see the cancelled
//! token and end early) and a panic in a stage (caught, released, reported
//! as a harness failure). If even that is skipped (the process is torn
//! down mid-run), `Drop` aborts the tasks and drops the stack, whose own
//! `Drop` kills its children or removes its containers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::FutureExt as _;
use gauntlet_control::{Endpoint, Stack, StopReport};
use gauntlet_drivers::history::{self, Tap};
use gauntlet_drivers::{Prepared, Shared, Target};
use gauntlet_engine::recording::{self, Recorded};
use gauntlet_engine::{EngineCounters, SampleSink, process_cpu};

use gauntlet_proxy::Proxy;
use gauntlet_recorder::faults::Fault;
use gauntlet_recorder::{Recorder, RunMeta, RunResults, hlog::HlogWriter};
use gauntlet_scenario::{Diagnostic, EngineKind, FaultWindow, Scenario};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::collect::{self, Collected};
use crate::plan::Plan;
use crate::progress;
use crate::report_cmd;
use crate::rundir;

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

/// Everything a run acquires that must be released, held in one place.
/// [`Resources::release`] releases what is still held, in order: the fault
/// timeline (every fault healed), the proxies, the collectors, the
/// recorder, the stack (gracefully: SIGTERM then SIGKILL, or containers
/// stopped and removed), then the proxies on links between services
/// (which the services use until they stop). Stages that end a resource early (the faults
/// healed before the checks) take it out of the guard themselves.
#[derive(Default)]
pub struct Resources {
    stack: Option<Arc<dyn Stack>>,
    /// Proxies started but not yet handed to the fault timeline.
    proxies: BTreeMap<String, Arc<Proxy>>,
    /// Proxies on links between services (which the services' own
    /// configuration names): released after the stack.
    service_proxies: BTreeMap<String, Arc<Proxy>>,
    chaos: Option<crate::chaos::Running>,
    collectors: Option<(CancellationToken, JoinHandle<Collected>)>,
    /// The scenario's `profile:` (`crate::profile`).
    profilers: Option<(CancellationToken, JoinHandle<crate::profile::Profiled>)>,
    recording: Option<(CancellationToken, JoinHandle<Recorded>)>,
}

/// What releasing the resources left to report.
#[derive(Default)]
pub struct Released {
    pub faults: Vec<Fault>,
    pub recorded: Option<Recorded>,
    pub collected: Option<Collected>,
    pub profiled: Option<crate::profile::Profiled>,
    pub stops: Vec<StopReport>,
    pub failures: Vec<String>,
}

impl Resources {
    fn stack(&self) -> Result<&Arc<dyn Stack>, RunError> {
        self.stack
            .as_ref()
            .ok_or_else(|| RunError::Harness("the stack is not running".to_owned()))
    }

    /// Heals every fault and stops the timeline (its records and failures).
    async fn heal_faults(&mut self, released: &mut Released) {
        if let Some(chaos) = self.chaos.take() {
            let (records, errors) = chaos.finish().await;
            released.faults = records;
            released.failures.extend(errors);
        }
        self.proxies.clear();
    }

    /// Stops the recorder (after the last sample) and takes its results.
    async fn stop_recording(&mut self, released: &mut Released) {
        if let Some((done, task)) = self.recording.take() {
            done.cancel();
            match task.await {
                Ok(recorded) => released.recorded = Some(recorded),
                Err(e) => released
                    .failures
                    .push(format!("the recorder task failed: {e}")),
            }
        }
    }

    /// Waits for the profilers' last segment (at most `grace`), then
    /// stops them; they write what they have.
    async fn stop_profiling(&mut self, released: &mut Released, grace: std::time::Duration) {
        if let Some((stop, mut task)) = self.profilers.take() {
            let done = match tokio::time::timeout(grace, &mut task).await {
                Ok(done) => done,
                Err(_) => {
                    stop.cancel();
                    task.await
                }
            };
            match done {
                Ok(profiled) => {
                    if let Some(e) = &profiled.write_error {
                        released.failures.push(format!("profiles: {e}"));
                    }
                    released.profiled = Some(profiled);
                }
                Err(e) => released
                    .failures
                    .push(format!("the profiler task failed: {e}")),
            }
        }
    }

    /// Releases everything still held, in order; safe to call again.
    pub async fn release(&mut self, released: &mut Released) {
        self.stop_profiling(released, std::time::Duration::ZERO)
            .await;
        self.heal_faults(released).await;
        if let Some((stop, task)) = self.collectors.take() {
            stop.cancel();
            released.collected = task.await.ok();
        }
        self.stop_recording(released).await;
        if let Some(stack) = self.stack.take() {
            released.stops = stack.shutdown().await;
        }
        self.service_proxies.clear();
    }
}

impl Drop for Resources {
    /// The last resort when [`Resources::release`] never ran (the runtime
    /// is torn down mid-run): tasks aborted, proxies dropped, and the stack
    /// dropped — the process stack's children are killed with their
    /// handles, the container stack removes its containers in its `Drop`.
    fn drop(&mut self) {
        if let Some((stop, task)) = self.collectors.take() {
            stop.cancel();
            task.abort();
        }
        if let Some((stop, task)) = self.profilers.take() {
            stop.cancel();
            task.abort();
        }
        if let Some((done, task)) = self.recording.take() {
            done.cancel();
            task.abort();
        }
        self.chaos.take();
        self.proxies.clear();
        self.stack.take();
        self.service_proxies.clear();
    }
}

/// Test-only: `GAUNTLET_TEST_PANIC=<stage>` panics at the start of that
/// stage (`drive_load`, `check`), so a test can prove the guard releases
/// everything after a panic. Never set outside tests.
fn test_panic(stage: &str) {
    if std::env::var("GAUNTLET_TEST_PANIC").is_ok_and(|s| s == stage) {
        panic!("GAUNTLET_TEST_PANIC={stage}");
    }
}

/// A panic's message, for the harness failure it becomes.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// One run end to end: the stages below, then every resource released
/// (whatever happened), then the results written.
pub async fn run(opts: RunOptions, cancel: CancellationToken) -> Result<RunOutcome, RunError> {
    let planned = plan_run(&opts)?;
    let mut resources = Resources::default();
    let outcome = std::panic::AssertUnwindSafe(drive(&planned, &opts, &cancel, &mut resources))
        .catch_unwind()
        .await;
    let mut released = Released::default();
    resources.release(&mut released).await;
    let driven = match outcome {
        Ok(result) => result?,
        Err(panic) => {
            return Err(RunError::Harness(format!(
                "the harness panicked ({}); the stack was stopped and every fault healed; run directory: {}",
                panic_message(&*panic),
                planned.run_dir.display()
            )));
        }
    };
    finish(&planned, driven, released, &cancel)
}

/// Stage 1: the scenario loaded and validated, its plan and fault windows,
/// the run directory with `scenario.yaml`. Nothing to release yet.
pub struct Planned {
    pub plan: Plan,
    pub windows: Vec<FaultWindow>,
    pub run_dir: PathBuf,
}

pub fn plan_run(opts: &RunOptions) -> Result<Planned, RunError> {
    let scenario = opts
        .source
        .load(&opts.overrides)
        .map_err(RunError::Invalid)?;
    let plan = Plan::new(scenario);
    let windows = crate::chaos::plan(&plan.scenario).map_err(RunError::Harness)?;
    let root = opts.out.clone().unwrap_or_else(rundir::default_root);
    let run_dir = rundir::create(&root, &plan.scenario.name)
        .map_err(harness("creating the run directory"))?;
    rundir::write_atomic(
        &run_dir.join("scenario.yaml"),
        gauntlet_scenario::to_yaml(&plan.scenario).as_bytes(),
    )
    .map_err(harness("writing scenario.yaml"))?;
    Ok(Planned {
        plan,
        windows,
        run_dir,
    })
}

/// What the stages between boot and release hand to [`finish`].
pub struct Driven {
    faults: Vec<Fault>,
    engine: Result<(), String>,
    load_stopped: bool,
    checks: Vec<gauntlet_checkers::CheckVerdict>,
    failures: Vec<String>,
    results_path: PathBuf,
}

/// Stages 2–10, each acquiring into `res` what [`Resources::release`] frees.
async fn drive(
    planned: &Planned,
    opts: &RunOptions,
    cancel: &CancellationToken,
    res: &mut Resources,
) -> Result<Driven, RunError> {
    let Planned {
        plan,
        windows,
        run_dir,
    } = planned;
    let routes = crate::chaos::ServiceRoutes::new(windows, &plan.scenario, plan.seed);
    let booted = boot_stack(plan, run_dir, opts, cancel, res, &routes).await;
    // Proxies between services live as long as the stack (even when the boot failed part-way).
    res.service_proxies = routes.proxies();
    booted?;
    let stack = res.stack()?.clone();
    let mut endpoints = connect(plan, &*stack)?;
    res.proxies = res.service_proxies.clone();
    res.proxies.extend(
        crate::chaos::start_proxies(windows, &plan.scenario, &mut endpoints.watch, plan.seed)
            .map_err(RunError::Harness)?,
    );
    let (prepared, tap) = prepare_operations(plan, &endpoints, run_dir).await?;
    if let Some(spec) = &plan.scenario.profile {
        crate::profile::wait_ready(spec, &*stack)
            .await
            .map_err(RunError::Harness)?;
    }
    let run = start_recording(plan, run_dir, opts, res)?;
    if let Some(tap) = &tap {
        tap.start(run.start);
    }
    start_collectors(plan, &stack, run_dir, run.start, res);
    start_profilers(plan, windows, &stack, run_dir, run.start, res);
    // Faults next to the load; one that cannot be applied stops the load.
    let load_cancel = cancel.child_token();
    let mut failures = Vec::new();
    if let Err(e) = start_faults(windows, &stack, run_dir, run.start, &load_cancel, res) {
        failures.push(e);
        load_cancel.cancel();
    }
    test_panic("drive_load");
    let engine = drive_load(
        plan,
        prepared,
        &run,
        &endpoints,
        run_dir,
        &load_cancel,
        cancel,
    )
    .await;
    run.samples_done.cancel();
    let mut released = Released::default();
    // The last segment's profile is being built: a few seconds at most.
    res.stop_profiling(&mut released, std::time::Duration::from_secs(30))
        .await;
    res.heal_faults(&mut released).await;
    failures.extend(released.failures);
    let checks = match &tap {
        Some(tap) if failures.is_empty() && !cancel.is_cancelled() => {
            tap.flush();
            test_panic("check");
            match check(
                plan,
                &*stack,
                &endpoints,
                &released.faults,
                run.start,
                run_dir,
            )
            .await
            {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("the read-back for the checks failed: {e}"));
                    Vec::new()
                }
            }
        }
        Some(tap) => {
            tap.flush();
            Vec::new()
        }
        None => Vec::new(),
    };
    Ok(Driven {
        faults: released.faults,
        engine,
        load_stopped: load_cancel.is_cancelled(),
        checks,
        failures,
        results_path: run.results_path,
    })
}

/// Stage 2: the stack booted in its runtime (`stack.runtime`); interrupted
/// by Ctrl-C, the partly booted stack is dropped (children killed,
/// containers removed).
async fn boot_stack(
    plan: &Plan,
    run_dir: &Path,
    opts: &RunOptions,
    cancel: &CancellationToken,
    res: &mut Resources,
    routes: &crate::chaos::ServiceRoutes,
) -> Result<(), RunError> {
    let bins = crate::bins::Locator {
        dir: opts.bin_dir.clone(),
        quiet: opts.quiet,
    };
    let stack = tokio::select! {
        stack = crate::boot::boot(&plan.scenario, run_dir, &bins, opts.quiet, routes) => stack.map_err(RunError::Harness)?,
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
    res.stack = Some(stack);
    Ok(())
}

/// Where the harness reaches each service: a watch channel of its endpoint
/// per service (the stack's, which moves when a container restarts on a new
/// port; an external service's fixed base URL; or the fault proxy on the
/// link when a fault names that link), and external services' path prefixes.
pub struct Endpoints {
    pub watch: BTreeMap<String, watch::Receiver<Endpoint>>,
    pub prefixes: BTreeMap<String, String>,
}

impl Endpoints {
    /// The driver's target for `service` (unknown: port 0, which refuses).
    pub fn target(&self, service: &str) -> Target {
        let endpoint = self.watch.get(service).cloned().unwrap_or_else(|| {
            watch::channel(Endpoint {
                host: "127.0.0.1".to_owned(),
                port: 0,
            })
            .1
        });
        Target::new(
            endpoint,
            self.prefixes.get(service).map_or("", String::as_str),
        )
    }
}

/// Stage 3: the endpoints of the stack's services and the external ones.
fn connect(plan: &Plan, stack: &dyn Stack) -> Result<Endpoints, RunError> {
    let mut endpoints = Endpoints {
        watch: BTreeMap::new(),
        prefixes: BTreeMap::new(),
    };
    for name in stack.services() {
        let rx = stack
            .watch_endpoint(&name)
            .map_err(|e| RunError::Harness(e.to_string()))?;
        endpoints.watch.insert(name, rx);
    }
    for (name, url) in &plan.scenario.stack.external {
        let base = gauntlet_scenario::parse_base_url(url)
            .map_err(|(message, _)| RunError::Harness(format!("service `{name}`: {message}")))?;
        let endpoint = Endpoint {
            host: base.host,
            port: base.port,
        };
        endpoints
            .watch
            .insert(name.clone(), watch::channel(endpoint).1);
        endpoints.prefixes.insert(name.clone(), base.prefix);
    }
    Ok(endpoints)
}

/// Stage 4: the scenario's `setup:` (the actor node's topology), each
/// operation's set-up on its system (resources created) and its driver
/// prepared; with `checks:`, the history tap handed to each.
async fn prepare_operations(
    plan: &Plan,
    endpoints: &Endpoints,
    run_dir: &Path,
) -> Result<(Vec<Prepared>, Option<Arc<Tap>>), RunError> {
    let targets = |service: &str| endpoints.target(service);
    let mut shared = Shared::default();
    // The set-up's client (the engine threads have their own).
    let client = gauntlet_engine::http::Client::new();
    // The scenario's `setup:` first: the topology the operations use.
    if let Some(setup) = &plan.scenario.setup.actors {
        let service = setup.service_in(&plan.scenario).ok_or_else(|| {
            RunError::Harness("set-up: the scenario has no actors service".to_owned())
        })?;
        gauntlet_drivers::actors::setup(&client, setup, &targets(&service))
            .await
            .map_err(RunError::Harness)?;
        shared.actors.topology = Some(setup.topology());
    }
    if let Some(setup) = &plan.scenario.setup.postgres {
        let service = setup.service_in(&plan.scenario).ok_or_else(|| {
            RunError::Harness("set-up: the scenario has no postgres service".to_owned())
        })?;
        gauntlet_drivers::postgres::setup(setup, &targets(&service))
            .await
            .map_err(RunError::Harness)?;
    }
    let mut prepared = Vec::new();
    for (i, op) in plan.operations.iter().enumerate() {
        gauntlet_drivers::setup(&client, op, &targets)
            .await
            .map_err(RunError::Harness)?;
        let p = gauntlet_drivers::prepare(op, &targets, plan.seed, i, &shared)
            .map_err(|e| RunError::Harness(e.to_string()))?;
        prepared.push(p);
    }
    if plan.scenario.checks.is_empty() {
        return Ok((prepared, None));
    }
    let tap = Tap::create(run_dir).map_err(harness("creating history.jsonl"))?;
    for p in &mut prepared {
        p.record_history(tap.clone());
    }
    Ok((prepared, Some(tap)))
}

/// The run's clock and the engine's side of the recorder.
pub struct Clock {
    pub start: Instant,
    pub sink: Arc<SampleSink>,
    pub counters: Arc<EngineCounters>,
    pub threads: usize,
    /// Fired after the last sample was pushed.
    pub samples_done: CancellationToken,
    pub results_path: PathBuf,
}

/// Stage 5: the recorder task (intervals, `latency.hlog`, partial
/// `results.json`, progress) and the run's clock.
fn start_recording(
    plan: &Plan,
    run_dir: &Path,
    opts: &RunOptions,
    res: &mut Resources,
) -> Result<Clock, RunError> {
    let meta = RunMeta {
        scenario: plan.scenario.name.clone(),
        seed: plan.seed,
        started_at: jiff::Timestamp::now().to_string(),
        runtime: plan.scenario.stack.runtime.to_string(),
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
    )
    .count_messages(plan.messages_per_operation());
    let counters = Arc::new(EngineCounters::default());
    let threads = gauntlet_engine::open::engine_threads();
    let sink = Arc::new(SampleSink::new(threads));
    let samples_done = CancellationToken::new();
    let cpu_start = process_cpu();
    let start = Instant::now();
    let results_path = run_dir.join("results.json");
    let task = tokio::spawn(recording::record(
        recorder,
        sink.clone(),
        samples_done.clone(),
        counters.clone(),
        meta,
        start,
        cpu_start,
        results_path.clone(),
        progress::Bar::new(plan, opts.quiet),
    ));
    res.recording = Some((samples_done.clone(), task));
    Ok(Clock {
        start,
        sink,
        counters,
        threads,
        samples_done,
        results_path,
    })
}

/// Stage 6: the collectors — each service's `/metrics` (for kinds that
/// serve it) and process CPU/RSS, every second, into `metrics.jsonl`.
fn start_collectors(
    plan: &Plan,
    stack: &Arc<dyn Stack>,
    run_dir: &Path,
    start: Instant,
    res: &mut Resources,
) {
    let targets = stack
        .services()
        .into_iter()
        .map(|name| collect::Target {
            scrape: plan
                .scenario
                .stack
                .services
                .get(&name)
                .and_then(|s| s.kind)
                .is_none_or(|k| gauntlet_stack::kinds::spec(k).metrics),
            service: name,
        })
        .collect();
    let stop = CancellationToken::new();
    let task = tokio::spawn(collect::collect(
        stack.clone(),
        targets,
        run_dir.join(gauntlet_recorder::metrics::METRICS_FILE),
        start,
        stop.clone(),
        plan.total_duration() + std::time::Duration::from_secs(120),
    ));
    res.collectors = Some((stop, task));
}

/// Stage 6b: the profilers of the scenario's `profile:` (`crate::profile`).
fn start_profilers(
    plan: &Plan,
    windows: &[FaultWindow],
    stack: &Arc<dyn Stack>,
    run_dir: &Path,
    start: Instant,
    res: &mut Resources,
) {
    let Some(spec) = plan.scenario.profile.clone() else {
        return;
    };
    let stop = CancellationToken::new();
    let timeline = crate::profile::timeline(plan, windows, &spec);
    let task = tokio::spawn(crate::profile::collect(
        timeline,
        spec,
        stack.clone(),
        run_dir.to_owned(),
        start,
        stop.clone(),
    ));
    res.profilers = Some((stop, task));
}

/// Stage 7: the fault timeline on the run's clock, with the proxies.
fn start_faults(
    windows: &[FaultWindow],
    stack: &Arc<dyn Stack>,
    run_dir: &Path,
    start: Instant,
    load_cancel: &CancellationToken,
    res: &mut Resources,
) -> Result<(), String> {
    if windows.is_empty() {
        return Ok(());
    }
    let proxies = std::mem::take(&mut res.proxies);
    res.chaos = Some(crate::chaos::start(
        windows.to_vec(),
        proxies,
        stack.clone(),
        run_dir,
        start,
        load_cancel.clone(),
    )?);
    Ok(())
}

/// Stage 8: the load, open or closed model, until the last phase ends or
/// `load_cancel` fires.
async fn drive_load(
    plan: &Plan,
    prepared: Vec<Prepared>,
    clock: &Clock,
    endpoints: &Endpoints,
    run_dir: &Path,
    load_cancel: &CancellationToken,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let load = plan.load();
    let prepared = Arc::new(prepared);
    match plan.scenario.workload.engine {
        EngineKind::Open => {
            gauntlet_engine::open::run(
                &load,
                prepared,
                clock.sink.clone(),
                clock.threads,
                clock.counters.clone(),
                clock.start,
                load_cancel.clone(),
            )
            .await
        }
        EngineKind::Closed => {
            // Goose wants a host; the operations go to their own targets.
            let host = endpoints
                .watch
                .values()
                .next()
                .map(|rx| rx.borrow().base_url())
                .unwrap_or_default();
            gauntlet_engine::closed::run(
                &load,
                prepared,
                clock.sink.clone(),
                clock.counters.clone(),
                clock.start,
                run_dir,
                &host,
                load_cancel.clone(),
                cancel.clone(),
            )
            .await
        }
    }
}

/// Stage 10: the read-back and the checks, once every fault has healed.
/// The read-back goes to each service directly, not through the fault
/// proxies (gone with the timeline).
async fn check(
    plan: &Plan,
    stack: &dyn Stack,
    endpoints: &Endpoints,
    faults: &[Fault],
    start: Instant,
    run_dir: &Path,
) -> Result<Vec<gauntlet_checkers::CheckVerdict>, String> {
    let mut direct = Endpoints {
        watch: endpoints.watch.clone(),
        prefixes: endpoints.prefixes.clone(),
    };
    for name in stack.services() {
        if let Ok(rx) = stack.watch_endpoint(&name) {
            direct.watch.insert(name, rx);
        }
    }
    history::run_checks(
        &plan.operations,
        &plan.scenario,
        &|service: &str| direct.target(service),
        faults,
        start,
        run_dir,
    )
    .await
}

/// Stage 11, after every resource was released: `results.json` (with
/// recovery times), `summary.txt`, the SLO verdict, the checks' verdicts
/// and `report.html`.
fn finish(
    planned: &Planned,
    driven: Driven,
    released: Released,
    cancel: &CancellationToken,
) -> Result<RunOutcome, RunError> {
    let Planned { plan, run_dir, .. } = planned;
    let mut failures = Vec::new();
    if let Err(e) = &driven.engine {
        failures.push(format!("the engine failed: {e}"));
    }
    if let Some(e) = released
        .collected
        .as_ref()
        .and_then(|c| c.write_error.clone())
    {
        failures.push(format!("writing metrics.jsonl failed: {e}"));
    }
    for stop in &released.stops {
        if !stop.graceful {
            failures.push(format!(
                "service `{}` did not stop gracefully: {}",
                stop.service, stop.status
            ));
        }
    }
    failures.extend(released.failures);
    let recorded = released
        .recorded
        .ok_or_else(|| RunError::Harness("the recorder task failed".to_owned()))?;
    let mut results = recorded.results;
    if cancel.is_cancelled() {
        results.complete = false;
        results.interrupted =
            Some("interrupted by a signal before the last phase ended".to_owned());
    } else if driven.load_stopped {
        results.complete = false;
        results.interrupted = Some("the load was stopped: a fault could not be applied".to_owned());
    }
    failures.extend(driven.failures);
    results.recovery = crate::chaos::recovery(&results, &driven.faults, &plan.scenario);
    if let Some(e) = recorded.write_error {
        failures.push(format!("writing the run directory failed: {e}"));
    }
    rundir::write_json(&driven.results_path, &results).map_err(harness("writing results.json"))?;
    let summary = gauntlet_reports::summary_table(&results);
    let _ = rundir::write_atomic(&run_dir.join("summary.txt"), summary.as_bytes());
    // The scenario's SLOs, checked on the gated phases of this run.
    let verdict = if plan.scenario.slo.is_empty() || results.interrupted.is_some() {
        None
    } else {
        match gauntlet_gate::gate(std::slice::from_ref(run_dir), None, None)
            .and_then(|v| gauntlet_gate::output::write_all(&v, run_dir).map(|()| v))
        {
            Ok(v) => Some(v),
            Err(e) => {
                failures.push(format!("checking the SLOs failed: {e}"));
                None
            }
        }
    };
    if !driven.checks.is_empty()
        && let Err(e) = history::write_verdict(run_dir, &plan.scenario.name, &driven.checks)
    {
        failures.push(format!("writing the check verdicts failed: {e}"));
    }
    // The report, from the files just written (as `loadgen report` renders
    // it); results.json is already safe on disk whatever happens here.
    let report = match report_cmd::write_run_report(run_dir) {
        Ok(path) => Some(path),
        Err(e) => {
            failures.push(format!("rendering report.html failed: {e}"));
            None
        }
    };
    Ok(RunOutcome {
        run_dir: run_dir.clone(),
        results,
        stops: released.stops,
        failures,
        verdict,
        checks: driven.checks,
        report,
    })
}
