//! The run's fault injection: proxies on the links the faults name, the
//! fault scheduler next to the engine, and recovery times at the end.
//!
//! This build wires link faults (`loadgen->SERVICE`) and process-mode
//! partitions, which go through the proxies. Service faults (kill, stop,
//! pause, restart, cpu, disk_full) need the stack's control surface
//! (`gauntlet_control::Stack`) and are refused before anything boots.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use gauntlet_faults::{FaultError, FaultScheduler};
use gauntlet_proxy::Proxy;
use gauntlet_recorder::RunResults;
use gauntlet_recorder::faults::Fault;
use gauntlet_recorder::recovery::{FaultRecovery, recoveries};
use gauntlet_scenario::faults::{FaultAction, FaultWindow, expand};
use gauntlet_scenario::{Runtime, Scenario};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The scenario's fault windows, or why this build cannot run them.
pub fn plan(scenario: &Scenario) -> Result<Vec<FaultWindow>, String> {
    if let Some(check) = scenario.checks.first() {
        return Err(format!(
            "check `{}` needs the operation history, which this build does not record yet; remove `checks:` to run the faults alone",
            check.name()
        ));
    }
    let windows = expand(&scenario.faults, scenario.seed);
    for w in &windows {
        let wired = w.action.is_link()
            || (matches!(w.action, FaultAction::Partition)
                && scenario.stack.runtime == Runtime::Process);
        if !wired {
            return Err(format!(
                "fault `{}` ({} on `{}`) needs the stack's control surface, which this build does not wire yet; only link faults and partitions run",
                w.name,
                w.action.key(),
                w.target
            ));
        }
    }
    Ok(windows)
}

/// The links the windows act on: link faults' targets, and every link to
/// a partitioned service.
fn links(windows: &[FaultWindow]) -> BTreeSet<String> {
    windows
        .iter()
        .map(|w| match w.action {
            FaultAction::Partition => format!("loadgen->{}", w.target),
            _ => w.target.clone(),
        })
        .collect()
}

/// Starts a proxy on each link the windows need and points the link's
/// endpoint (`endpoints`: base URLs by service) at it.
pub fn start_proxies(
    windows: &[FaultWindow],
    endpoints: &mut BTreeMap<String, String>,
    seed: u64,
) -> Result<BTreeMap<String, Arc<Proxy>>, String> {
    let mut proxies = BTreeMap::new();
    for link in links(windows) {
        let service = link
            .strip_prefix("loadgen->")
            .ok_or_else(|| format!("link `{link}` is not a loadgen link"))?;
        let base = endpoints
            .get(service)
            .ok_or_else(|| format!("link `{link}`: no service `{service}` is running"))?;
        let upstream: SocketAddr = base
            .strip_prefix("http://")
            .unwrap_or(base)
            .parse()
            .map_err(|e| format!("link `{link}`: service address `{base}`: {e}"))?;
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("a valid address");
        let proxy =
            Proxy::start(link.clone(), listen, upstream, seed).map_err(|e| e.to_string())?;
        eprintln!("fault proxy on {link}: {} -> {upstream}", proxy.addr());
        endpoints.insert(service.to_owned(), format!("http://{}", proxy.addr()));
        proxies.insert(link, Arc::new(proxy));
    }
    Ok(proxies)
}

/// The fault timeline running next to the load.
pub struct Running {
    scheduler: Arc<FaultScheduler>,
    task: JoinHandle<Result<(), FaultError>>,
    /// Keeps the proxies alive for the whole run.
    _proxies: BTreeMap<String, Arc<Proxy>>,
}

/// Starts the timeline on the run's clock. A fault that cannot be applied
/// stops the load (`stop_load`) and fails the run.
pub fn start(
    windows: Vec<FaultWindow>,
    proxies: BTreeMap<String, Arc<Proxy>>,
    runtime: Runtime,
    run_dir: &Path,
    run_start: Instant,
    stop_load: CancellationToken,
) -> Result<Running, String> {
    let scheduler = Arc::new(FaultScheduler::links_only(
        &runtime.to_string(),
        proxies.clone(),
        windows,
        run_dir,
        run_start,
    ));
    scheduler.preflight().map_err(|e| e.to_string())?;
    let s = scheduler.clone();
    let task = tokio::spawn(async move {
        let result = s.run().await;
        if result.is_err() {
            stop_load.cancel();
        }
        result
    });
    Ok(Running {
        scheduler,
        task,
        _proxies: proxies,
    })
}

impl Running {
    /// After the load: stops what is left of the timeline, heals every
    /// fault still applied, and returns the windows with the failures.
    pub async fn finish(self) -> (Vec<Fault>, Vec<String>) {
        let mut failures = Vec::new();
        if !self.task.is_finished() {
            self.task.abort();
        }
        match self.task.await {
            Ok(Err(e)) => failures.push(e.to_string()),
            Ok(Ok(())) => {}
            Err(e) if e.is_cancelled() => {}
            Err(e) => failures.push(format!("the fault scheduler failed: {e}")),
        }
        if let Err(e) = self.scheduler.heal_all().await {
            failures.push(e.to_string());
        }
        (self.scheduler.records(), failures)
    }
}

/// Time to recover per fault and operation, for `results.json`.
pub fn recovery(results: &RunResults, faults: &[Fault], scenario: &Scenario) -> Vec<FaultRecovery> {
    let operations: Vec<String> = scenario
        .workload
        .operations
        .iter()
        .map(|o| o.name.clone())
        .collect();
    let slo_p99_us: BTreeMap<String, u64> = scenario
        .slo
        .iter()
        .filter_map(|(op, slo)| Some((op.clone(), slo.p99?.0.as_micros() as u64)))
        .collect();
    recoveries(results, faults, &operations, &slo_p99_us, results.elapsed_s)
        .iter()
        .map(FaultRecovery::from)
        .collect()
}
