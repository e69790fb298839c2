//! The run's fault injection: proxies on the links the faults name, the
//! fault scheduler next to the engine, and recovery times at the end.
//!
//! Link faults (`loadgen->SERVICE`, and `FROM->TO` between two services in
//! process mode) and process-mode partitions go through the proxies;
//! service faults (kill, stop, pause, restart, cpu, disk_full) through the
//! stack's control surface (`gauntlet_control::Stack`), the same code for
//! processes and containers. A proxy follows its service's endpoint when a
//! container restart maps a new port.
//!
//! A link between two services is proxied from the boot on: the process
//! stack asks [`ServiceRoutes`] where `FROM` reaches `TO` before it starts
//! `FROM`, and gets the proxy's address, which `{addr:TO}` in `FROM`'s
//! environment then names. Those proxies live as long as the stack (a
//! healed link is a transparent proxy), not only as long as the faults.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use gauntlet_control::{Endpoint, Stack};
use gauntlet_faults::{FaultError, FaultScheduler};
use gauntlet_proxy::Proxy;
use gauntlet_recorder::RunResults;
use gauntlet_recorder::faults::Fault;
use gauntlet_recorder::recovery::{FaultRecovery, recoveries};
use gauntlet_scenario::faults::{FaultAction, FaultWindow, expand};
use gauntlet_scenario::{Runtime, Scenario};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The scenario's fault windows (`checks:` are run by [`crate::history`]).
pub fn plan(scenario: &Scenario) -> Result<Vec<FaultWindow>, String> {
    Ok(expand(&scenario.faults, scenario.seed))
}

/// The links the windows act on: link faults' targets, and every link to
/// a partitioned service (in process mode also every link between it and
/// the services it references or that reference it).
fn links(windows: &[FaultWindow], scenario: &Scenario) -> BTreeSet<String> {
    let process = scenario.stack.runtime == Runtime::Process;
    let service_links = if process {
        gauntlet_scenario::wiring::service_links(&scenario.stack)
    } else {
        Vec::new()
    };
    let mut out = BTreeSet::new();
    for w in windows {
        match w.action {
            FaultAction::Partition => {
                out.insert(format!("loadgen->{}", w.target));
                for link in &service_links {
                    if link.split_once("->").is_some_and(|(from, to)| {
                        from == w.target.as_str() || to == w.target.as_str()
                    }) {
                        out.insert(link.clone());
                    }
                }
            }
            _ if w.action.is_link() => {
                out.insert(w.target.clone());
            }
            _ => {}
        }
    }
    out
}

/// The links between two services that the windows need proxied: started
/// while the stack boots (see the module documentation).
pub struct ServiceRoutes {
    wanted: BTreeSet<String>,
    seed: u64,
    started: std::sync::Mutex<BTreeMap<String, Arc<Proxy>>>,
}

impl ServiceRoutes {
    pub fn new(windows: &[FaultWindow], scenario: &Scenario, seed: u64) -> Self {
        ServiceRoutes {
            wanted: links(windows, scenario)
                .into_iter()
                .filter(|l| gauntlet_scenario::faults::is_service_link(l))
                .collect(),
            seed,
            started: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// The proxies started so far, by link.
    pub fn proxies(&self) -> BTreeMap<String, Arc<Proxy>> {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl gauntlet_stack::Routes for ServiceRoutes {
    fn route(&self, from: &str, to: &str, target: &Endpoint) -> Result<Endpoint, String> {
        let link = format!("{from}->{to}");
        if !self.wanted.contains(&link) {
            return Ok(target.clone());
        }
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        let proxy = match started.get(&link) {
            Some(p) => p.clone(),
            None => {
                let upstream: SocketAddr = target
                    .addr()
                    .parse()
                    .map_err(|e| format!("address `{}`: {e}", target.addr()))?;
                let listen: SocketAddr = "127.0.0.1:0".parse().expect("a valid address");
                let proxy = Proxy::start(link.clone(), listen, upstream, self.seed)
                    .map_err(|e| e.to_string())?;
                eprintln!("fault proxy on {link}: {} -> {upstream}", proxy.addr());
                let proxy = Arc::new(proxy);
                started.insert(link, proxy.clone());
                proxy
            }
        };
        Ok(Endpoint {
            host: proxy.addr().ip().to_string(),
            port: proxy.addr().port(),
        })
    }
}

/// Starts a proxy on each link the windows need and points the link's
/// endpoint (`endpoints`: base URLs by service) at it.
/// The links between two services are left to [`ServiceRoutes`].
pub fn start_proxies(
    windows: &[FaultWindow],
    scenario: &Scenario,
    endpoints: &mut BTreeMap<String, watch::Receiver<Endpoint>>,
    seed: u64,
) -> Result<BTreeMap<String, Arc<Proxy>>, String> {
    let mut proxies = BTreeMap::new();
    for link in links(windows, scenario) {
        if gauntlet_scenario::faults::is_service_link(&link) {
            continue;
        }
        let service = link
            .strip_prefix("loadgen->")
            .ok_or_else(|| format!("link `{link}` is not a loadgen link"))?;
        let base = endpoints
            .get(service)
            .ok_or_else(|| format!("link `{link}`: no service `{service}` is running"))?
            .borrow()
            .addr();
        let upstream: SocketAddr = base
            .parse()
            .map_err(|e| format!("link `{link}`: service address `{base}`: {e}"))?;
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("a valid address");
        let proxy =
            Proxy::start(link.clone(), listen, upstream, seed).map_err(|e| e.to_string())?;
        eprintln!("fault proxy on {link}: {} -> {upstream}", proxy.addr());
        let proxied = Endpoint {
            host: proxy.addr().ip().to_string(),
            port: proxy.addr().port(),
        };
        endpoints.insert(service.to_owned(), watch::channel(proxied).1);
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
    /// Tasks that repoint the proxies when an endpoint changes.
    followers: Vec<JoinHandle<()>>,
    /// Each window's name and start, to tell a fault the load outran.
    planned: Vec<(String, std::time::Duration)>,
    run_start: Instant,
}

/// Starts the timeline on the run's clock. A fault that cannot be applied
/// stops the load (`stop_load`) and fails the run.
pub fn start(
    windows: Vec<FaultWindow>,
    proxies: BTreeMap<String, Arc<Proxy>>,
    stack: Arc<dyn Stack>,
    run_dir: &Path,
    run_start: Instant,
    stop_load: CancellationToken,
) -> Result<Running, String> {
    let planned = windows.iter().map(|w| (w.name.clone(), w.start)).collect();
    let scheduler = Arc::new(FaultScheduler::new(
        stack,
        proxies.clone(),
        windows,
        run_dir,
        run_start,
    ));
    scheduler.preflight().map_err(|e| e.to_string())?;
    let followers = scheduler.follow_endpoints().map_err(|e| e.to_string())?;
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
        followers,
        planned,
        run_start,
    })
}

impl Running {
    /// After the load: stops what is left of the timeline, heals every
    /// fault still applied, and returns the windows with the failures.
    pub async fn finish(self) -> (Vec<Fault>, Vec<String>) {
        let mut failures = Vec::new();
        let elapsed = self.run_start.elapsed();
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
        for follower in &self.followers {
            follower.abort();
        }
        let records = self.scheduler.records();
        // A fault whose time came but which is not recorded was still being
        // applied (a long disk fill) when the load ended: never silent.
        for (name, start) in &self.planned {
            if *start <= elapsed && !records.iter().any(|r| &r.name == name) {
                failures.push(format!(
                    "fault `{name}` was still being applied when the load ended, so it is not in faults.json (hint: start it earlier or lengthen the load; a `restart` waits until the service is ready again, a `disk_full` until the disk is full or `max` is written)"
                ));
            }
        }
        (records, failures)
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
