//! The fault scheduler: applies a scenario's expanded fault timeline
//! ([`gauntlet_scenario::faults::expand`]) while the load runs, and records
//! every fault window in `faults.json` as it goes.
//!
//! Service faults go through the stack's control surface
//! ([`gauntlet_control::Stack`], the same for processes and containers);
//! link faults through the link's [`gauntlet_proxy::Proxy`]; a partition
//! in process mode cuts every proxied link to the service (in container
//! mode the stack disconnects it from the run's network); `cpu` burns
//! cores in bounded threads and `disk_full` fills the service's data
//! directory (until ENOSPC or its `max`), then frees it.
//!
//! `reflow_actor_panic` goes to a Reflow node's (`POST /api/v1/test/fault`).
//! `actor_panic` and `actor_stall` go to the actor node's test-only fault
//! endpoint (`POST /api/v1/components/{name}/faults`, the node started
//! with `AIRSSYS_TEST_FAULTS=1`), straight to the service's endpoint; a
//! healed window clears the fault (`{"clear": true}`).
//!
//! A fault that cannot be applied or healed is an error
//! ([`FaultError`]); the run fails with exit code 3. Nothing is skipped
//! silently. [`FaultScheduler::heal_all`] heals whatever is still applied
//! (at the end of the load, before the read-back, or when a run is
//! interrupted).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use gauntlet_control::{ControlError, Stack};
use gauntlet_proxy::{Proxy, Stream, Toxic, ToxicKind};
use gauntlet_recorder::faults::{FAULTS_FILE, Fault};
use gauntlet_scenario::faults::{FaultAction, FaultWindow, LinkAction, LinkStream};
use tokio::time::Instant;

/// The file `disk_full` writes in the service's data directory.
pub const DISK_FILL_FILE: &str = "gauntlet-disk-full.fill";
/// How much `disk_full` writes at a time.
const FILL_BLOCK: usize = 1 << 20;
/// A CPU burner stops by itself this long after its planned end, even if
/// nobody heals it.
const BURN_GRACE: Duration = Duration::from_secs(5);

const NO_STACK: &str = "service faults need the stack's control surface, which this run does not have (only link faults and process-mode partitions are wired)";

/// A fault that could not be applied or healed.
#[derive(Debug, thiserror::Error)]
#[error("fault `{fault}` ({action} on `{target}`) could not be {stage}: {message}")]
pub struct FaultError {
    pub fault: String,
    pub target: String,
    pub action: &'static str,
    /// `applied` or `healed`.
    pub stage: &'static str,
    pub message: String,
}

/// What is holding a fault in place until it is healed.
enum Held {
    /// Healed by an action on the stack or a proxy, derived from the window.
    Nothing,
    /// CPU burner threads and their stop flag.
    Burn {
        stop: Arc<AtomicBool>,
        threads: Vec<JoinHandle<()>>,
    },
    /// The fill file to delete.
    Fill(PathBuf),
}

struct Applied {
    window: FaultWindow,
    /// Index of the window's record in `faults.json`.
    record: usize,
    held: Held,
}

struct State {
    records: Vec<Fault>,
    applied: Vec<Applied>,
}

/// Applies fault windows to a stack and its link proxies.
pub struct FaultScheduler {
    /// `None`: only link faults (and process-mode partitions, which go
    /// through the proxies) can be applied.
    stack: Option<Arc<dyn Stack>>,
    /// `process` or `containers`.
    runtime: String,
    /// Proxies by link name (`loadgen->fabric`).
    proxies: BTreeMap<String, Arc<Proxy>>,
    windows: Vec<FaultWindow>,
    /// Graceful-stop bound per service (`stop_timeout`), default 10 s.
    stop_timeouts: BTreeMap<String, Duration>,
    faults_path: PathBuf,
    run_start: Instant,
    state: Mutex<State>,
}

impl FaultScheduler {
    /// `windows` from [`gauntlet_scenario::faults::expand`]; `run_dir`
    /// receives `faults.json`; `run_start` is the clock's zero (the first
    /// phase's start).
    pub fn new(
        stack: Arc<dyn Stack>,
        proxies: BTreeMap<String, Arc<Proxy>>,
        windows: Vec<FaultWindow>,
        run_dir: &Path,
        run_start: Instant,
    ) -> Self {
        let runtime = stack.runtime().to_owned();
        Self::build(Some(stack), runtime, proxies, windows, run_dir, run_start)
    }

    /// A scheduler without the stack's control surface: link faults and,
    /// in process mode, partitions (through the proxies) only; any other
    /// window fails [`Self::preflight`].
    pub fn links_only(
        runtime: &str,
        proxies: BTreeMap<String, Arc<Proxy>>,
        windows: Vec<FaultWindow>,
        run_dir: &Path,
        run_start: Instant,
    ) -> Self {
        Self::build(
            None,
            runtime.to_owned(),
            proxies,
            windows,
            run_dir,
            run_start,
        )
    }

    fn build(
        stack: Option<Arc<dyn Stack>>,
        runtime: String,
        proxies: BTreeMap<String, Arc<Proxy>>,
        windows: Vec<FaultWindow>,
        run_dir: &Path,
        run_start: Instant,
    ) -> Self {
        FaultScheduler {
            stack,
            runtime,
            proxies,
            windows,
            stop_timeouts: BTreeMap::new(),
            faults_path: run_dir.join(FAULTS_FILE),
            run_start,
            state: Mutex::new(State {
                records: Vec::new(),
                applied: Vec::new(),
            }),
        }
    }

    /// Sets the graceful-stop bound of services (from the scenario).
    pub fn with_stop_timeouts(mut self, timeouts: BTreeMap<String, Duration>) -> Self {
        self.stop_timeouts = timeouts;
        self
    }

    /// Checks before the run that every window can be applied: its service
    /// exists, its link has a proxy, a partition has a way to cut.
    pub fn preflight(&self) -> Result<(), FaultError> {
        let services = self.stack.as_ref().map(|s| s.services());
        for w in &self.windows {
            let err = |message: String| FaultError {
                fault: w.name.clone(),
                target: w.target.clone(),
                action: w.action.key(),
                stage: "applied",
                message,
            };
            if w.action.is_link() {
                if !self.proxies.contains_key(&w.target) {
                    return Err(err(format!(
                        "no fault proxy on link `{}` (proxied links: {})",
                        w.target,
                        self.proxies.keys().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
                continue;
            }
            let process_partition =
                matches!(w.action, FaultAction::Partition) && self.runtime == "process";
            match &services {
                Some(services) if !services.contains(&w.target) => {
                    return Err(err(format!("no service `{}` in the stack", w.target)));
                }
                None if !process_partition => {
                    return Err(err(NO_STACK.to_owned()));
                }
                _ => {}
            }
            if process_partition && self.links_to(&w.target).is_empty() {
                return Err(err(format!(
                    "a partition in process mode cuts the service's proxied links, and there is no proxied link to `{}`",
                    w.target
                )));
            }
            if matches!(w.action, FaultAction::DiskFull { .. })
                && self
                    .stack
                    .as_ref()
                    .is_some_and(|s| s.data_dir(&w.target).is_none())
            {
                return Err(err("the stack has no data directory for it".to_owned()));
            }
        }
        Ok(())
    }

    /// Keeps each proxy's upstream on its service's current endpoint (a
    /// restarted container maps a new host port): one task per proxied
    /// link, ending when the stack drops the endpoint's sender. No-op
    /// without a stack.
    pub fn follow_endpoints(&self) -> Result<Vec<tokio::task::JoinHandle<()>>, FaultError> {
        let Some(stack) = &self.stack else {
            return Ok(Vec::new());
        };
        let mut tasks = Vec::new();
        for (link, proxy) in &self.proxies {
            let Some((_, service)) = link.split_once("->") else {
                continue;
            };
            let mut rx = stack.watch_endpoint(service).map_err(|e| FaultError {
                fault: link.clone(),
                target: service.to_owned(),
                action: "follow",
                stage: "applied",
                message: e.to_string(),
            })?;
            let proxy = proxy.clone();
            tasks.push(tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let addr = rx.borrow_and_update().addr();
                    if let Ok(addr) = addr.parse() {
                        proxy.set_upstream(addr);
                    }
                }
            }));
        }
        Ok(tasks)
    }

    fn now_s(&self) -> f64 {
        self.run_start.elapsed().as_secs_f64()
    }

    /// The proxied links to `service` and, between services, from it.
    fn links_to(&self, service: &str) -> Vec<&Arc<Proxy>> {
        self.proxies
            .iter()
            .filter(|(link, _)| {
                link.split_once("->")
                    .is_some_and(|(from, to)| to == service || from == service)
            })
            .map(|(_, p)| p)
            .collect()
    }

    fn kind(&self, action: &FaultAction) -> String {
        let runtime = match self.runtime.as_str() {
            "containers" => "container",
            other => other,
        };
        match action {
            FaultAction::Link { .. } => format!("link.{}", action.key()),
            FaultAction::Partition => "network.partition".to_owned(),
            FaultAction::Cpu { .. } | FaultAction::DiskFull { .. } => {
                format!("resource.{}", action.key())
            }
            FaultAction::ActorPanic { .. } => "actor.panic".to_owned(),
            FaultAction::ActorStall { .. } => "actor.stall".to_owned(),
            FaultAction::ReflowActorPanic { .. } => "reflow.actor_panic".to_owned(),
            _ => format!("{runtime}.{}", action.key()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rewrites `faults.json` atomically (a reader sees the old or the new file).
    fn write(&self, records: &[Fault]) -> io::Result<()> {
        let tmp = self.faults_path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(records).map_err(io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.faults_path)
    }

    /// The windows recorded so far.
    pub fn records(&self) -> Vec<Fault> {
        self.lock().records.clone()
    }

    /// Applies every window at its time and heals it at its end; returns
    /// when the last event is done. The first failure stops the timeline
    /// and is returned (what was applied stays recorded; call
    /// [`Self::heal_all`]).
    pub async fn run(&self) -> Result<(), FaultError> {
        #[derive(Clone, Copy)]
        enum Ev {
            Apply(usize),
            Heal(usize),
        }
        let mut events: Vec<(Duration, u8, usize, Ev)> = Vec::new();
        for (i, w) in self.windows.iter().enumerate() {
            events.push((w.start, 1, i, Ev::Apply(i)));
            if let Some(end) = w.end {
                // Heals before applies at the same instant.
                events.push((end, 0, i, Ev::Heal(i)));
            }
        }
        events.sort_by_key(|(t, order, i, _)| (*t, *order, *i));
        for (t, _, _, ev) in events {
            tokio::time::sleep_until(self.run_start + t).await;
            match ev {
                Ev::Apply(i) => self.apply(&self.windows[i]).await?,
                Ev::Heal(i) => {
                    let name = &self.windows[i].name;
                    self.heal(name).await?;
                }
            }
        }
        Ok(())
    }

    /// Heals every fault still applied, latest first.
    pub async fn heal_all(&self) -> Result<(), FaultError> {
        let names: Vec<String> = self
            .lock()
            .applied
            .iter()
            .rev()
            .map(|a| a.window.name.clone())
            .collect();
        let mut first_err = None;
        for name in names {
            if let Err(e) = self.heal(&name).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn apply(&self, w: &FaultWindow) -> Result<(), FaultError> {
        let err = |message: String| FaultError {
            fault: w.name.clone(),
            target: w.target.clone(),
            action: w.action.key(),
            stage: "applied",
            message,
        };
        let control = |e: ControlError| err(e.to_string());
        let start_s = self.now_s();
        let stack = || self.stack.as_ref().ok_or_else(|| err(NO_STACK.to_owned()));
        let mut end_now = false;
        let held = match &w.action {
            FaultAction::Kill { signal, .. } => {
                stack()?.kill(&w.target, *signal).await.map_err(control)?;
                Held::Nothing
            }
            FaultAction::Stop => {
                let timeout = self
                    .stop_timeouts
                    .get(&w.target)
                    .copied()
                    .unwrap_or(Duration::from_secs(10));
                stack()?.stop(&w.target, timeout).await.map_err(control)?;
                Held::Nothing
            }
            FaultAction::Pause => {
                stack()?.pause(&w.target).await.map_err(control)?;
                Held::Nothing
            }
            FaultAction::Resume => {
                stack()?.unpause(&w.target).await.map_err(control)?;
                end_now = true;
                // The resume heals the open pauses of its target.
                let now = self.now_s();
                let mut st = self.lock();
                let State { records, applied } = &mut *st;
                applied.retain(|a| {
                    let healed = a.window.target == w.target
                        && matches!(a.window.action, FaultAction::Pause);
                    if healed {
                        records[a.record].end_s = Some(now);
                    }
                    !healed
                });
                Held::Nothing
            }
            FaultAction::Restart => {
                stack()?.restart(&w.target).await.map_err(control)?;
                end_now = true;
                Held::Nothing
            }
            FaultAction::Partition => {
                if self.runtime == "process" {
                    let links = self.links_to(&w.target);
                    if links.is_empty() {
                        return Err(err("the service has no proxied link to cut".to_owned()));
                    }
                    for p in links {
                        p.set_down(true).await.map_err(|e| err(e.to_string()))?;
                    }
                } else {
                    stack()?.disconnect(&w.target).await.map_err(control)?;
                }
                Held::Nothing
            }
            FaultAction::Cpu { cores } => {
                let limit = w.end.map_or(Duration::from_secs(3600), |e| {
                    e.saturating_sub(w.start) + BURN_GRACE
                });
                burn(*cores, limit)
                    .map_err(|e| err(format!("cannot start a burner thread: {e}")))?
            }
            FaultAction::DiskFull { max_bytes } => {
                let dir = stack()?
                    .data_dir(&w.target)
                    .ok_or_else(|| err("the stack has no data directory for it".to_owned()))?;
                let path = dir.join(DISK_FILL_FILE);
                let max = *max_bytes;
                let fill_path = path.clone();
                let filled = tokio::task::spawn_blocking(move || fill(&fill_path, max))
                    .await
                    .map_err(|e| err(format!("the fill task failed: {e}")))?
                    .map_err(|e| err(format!("cannot fill {}: {e}", path.display())))?;
                let mut st = self.lock();
                let idx = st.records.len();
                let mut params = w.params.clone();
                params.insert("written_bytes".into(), filled.written.into());
                params.insert("disk_full_reached".into(), filled.enospc.into());
                return self.record(&mut st, w, start_s, params, Held::Fill(path), idx, false);
            }
            FaultAction::ActorPanic {
                component,
                panic_after,
                repeat,
            } => {
                let body = serde_json::json!({ "panic_after": panic_after, "repeat": repeat });
                actor_fault(stack()?.as_ref(), &w.target, component, &body)
                    .await
                    .map_err(err)?;
                end_now = w.end.is_none();
                Held::Nothing
            }
            FaultAction::ReflowActorPanic { actor, panic_after } => {
                let body =
                    serde_json::json!({ "actor": actor, "mode": "panic", "after": panic_after });
                node_fault(stack()?.as_ref(), &w.target, "/api/v1/test/fault", &body)
                    .await
                    .map_err(err)?;
                end_now = true;
                Held::Nothing
            }
            FaultAction::ActorStall { component, stall } => {
                let body = serde_json::json!({ "stall_ms": stall.as_millis() as u64 });
                actor_fault(stack()?.as_ref(), &w.target, component, &body)
                    .await
                    .map_err(err)?;
                end_now = w.end.is_none();
                Held::Nothing
            }
            FaultAction::Link {
                action,
                stream,
                toxicity,
            } => {
                let proxy = self
                    .proxies
                    .get(&w.target)
                    .ok_or_else(|| err(format!("no fault proxy on link `{}`", w.target)))?;
                match toxic_kind(action) {
                    None => proxy.set_down(true).await.map_err(|e| err(e.to_string()))?,
                    Some(kind) => proxy
                        .add_toxic(Toxic {
                            name: w.name.clone(),
                            kind,
                            stream: match stream {
                                LinkStream::Upstream => Stream::Upstream,
                                LinkStream::Downstream => Stream::Downstream,
                                LinkStream::Both => Stream::Both,
                            },
                            toxicity: *toxicity,
                        })
                        .map_err(|e| err(e.to_string()))?,
                }
                Held::Nothing
            }
        };
        let mut st = self.lock();
        let idx = st.records.len();
        self.record(&mut st, w, start_s, w.params.clone(), held, idx, end_now)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        st: &mut State,
        w: &FaultWindow,
        start_s: f64,
        params: BTreeMap<String, serde_json::Value>,
        held: Held,
        idx: usize,
        end_now: bool,
    ) -> Result<(), FaultError> {
        st.records.push(Fault {
            name: w.name.clone(),
            kind: self.kind(&w.action),
            target: w.target.clone(),
            start_s,
            end_s: end_now.then(|| self.now_s()),
            params,
        });
        if !end_now {
            st.applied.push(Applied {
                window: w.clone(),
                record: idx,
                held,
            });
        }
        self.write(&st.records).map_err(|e| FaultError {
            fault: w.name.clone(),
            target: w.target.clone(),
            action: w.action.key(),
            stage: "applied",
            message: format!("cannot write {}: {e}", self.faults_path.display()),
        })
    }

    /// Heals the applied fault named `name` and closes its window.
    async fn heal(&self, name: &str) -> Result<(), FaultError> {
        let applied = {
            let mut st = self.lock();
            let Some(pos) = st.applied.iter().position(|a| a.window.name == name) else {
                // Already healed (heal_all after an interrupted timeline).
                return Ok(());
            };
            st.applied.remove(pos)
        };
        let w = &applied.window;
        let err = |message: String| FaultError {
            fault: w.name.clone(),
            target: w.target.clone(),
            action: w.action.key(),
            stage: "healed",
            message,
        };
        let control = |e: ControlError| err(e.to_string());
        let stack = || self.stack.as_ref().ok_or_else(|| err(NO_STACK.to_owned()));
        match (&w.action, applied.held) {
            (FaultAction::Kill { .. } | FaultAction::Stop, _) => {
                stack()?.start(&w.target).await.map_err(control)?;
            }
            (FaultAction::Pause, _) => stack()?.unpause(&w.target).await.map_err(control)?,
            (
                FaultAction::Resume | FaultAction::Restart | FaultAction::ReflowActorPanic { .. },
                _,
            ) => {}
            (
                FaultAction::ActorPanic { component, .. }
                | FaultAction::ActorStall { component, .. },
                _,
            ) => {
                let clear = serde_json::json!({ "clear": true });
                actor_fault(stack()?.as_ref(), &w.target, component, &clear)
                    .await
                    .map_err(err)?;
            }
            (FaultAction::Partition, _) => {
                if self.runtime == "process" {
                    for p in self.links_to(&w.target) {
                        p.set_down(false).await.map_err(|e| err(e.to_string()))?;
                    }
                } else {
                    stack()?.reconnect(&w.target).await.map_err(control)?;
                }
            }
            (FaultAction::Cpu { .. }, Held::Burn { stop, threads }) => {
                stop.store(true, Ordering::Relaxed);
                tokio::task::spawn_blocking(move || {
                    for t in threads {
                        let _ = t.join();
                    }
                })
                .await
                .map_err(|e| err(format!("a burner thread failed: {e}")))?;
            }
            (FaultAction::DiskFull { .. }, Held::Fill(path)) => {
                tokio::fs::remove_file(&path)
                    .await
                    .map_err(|e| err(format!("cannot delete {}: {e}", path.display())))?;
            }
            (FaultAction::Link { action, .. }, _) => {
                let proxy = self
                    .proxies
                    .get(&w.target)
                    .ok_or_else(|| err(format!("no fault proxy on link `{}`", w.target)))?;
                match toxic_kind(action) {
                    None => proxy
                        .set_down(false)
                        .await
                        .map_err(|e| err(e.to_string()))?,
                    Some(_) => {
                        proxy
                            .remove_toxic(&w.name)
                            .map_err(|e| err(e.to_string()))?;
                    }
                }
            }
            (FaultAction::Cpu { .. } | FaultAction::DiskFull { .. }, _) => {
                return Err(err("its resource handle was lost".to_owned()));
            }
        }
        let mut st = self.lock();
        let end = self.now_s();
        st.records[applied.record].end_s = Some(end);
        self.write(&st.records)
            .map_err(|e| err(format!("cannot write {}: {e}", self.faults_path.display())))
    }
}

/// How long an actor fault request may take.
const ACTOR_FAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `POST /api/v1/components/{component}/faults` with `body` to the actor
/// node `service` (its current endpoint), over one HTTP/1.1 connection;
/// anything but a 2xx is an error naming the answer.
async fn actor_fault(
    stack: &dyn Stack,
    service: &str,
    component: &str,
    body: &serde_json::Value,
) -> Result<(), String> {
    let path = format!("/api/v1/components/{component}/faults");
    node_fault(stack, service, &path, body).await
}

/// One `POST path` of a JSON body to a node's test-only fault endpoint.
async fn node_fault(
    stack: &dyn Stack,
    service: &str,
    path: &str,
    body: &serde_json::Value,
) -> Result<(), String> {
    let endpoint = stack.endpoint(service).map_err(|e| e.to_string())?;
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        endpoint.addr(),
        body.len()
    );
    let exchange = async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(endpoint.addr()).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, io::Error>(answer)
    };
    let answer = tokio::time::timeout(ACTOR_FAULT_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("the node did not answer within {ACTOR_FAULT_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot reach the node at {}: {e}", endpoint.addr()))?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    if (200..300).contains(&status) {
        return Ok(());
    }
    let detail = text.split("\r\n\r\n").nth(1).unwrap_or("").trim();
    Err(format!(
        "the node answered {status} to POST {path}: {detail} (hint: the fault endpoint needs AIRSSYS_TEST_FAULTS=1 on an actor node, REFLOW_TEST__FAULT_ENDPOINT=true on a Reflow node — each kind's default; the component or graph node must exist)"
    ))
}

/// The proxy toxic for a link action; `None` for `down` (the proxy's own state).
fn toxic_kind(action: &LinkAction) -> Option<ToxicKind> {
    Some(match *action {
        LinkAction::Latency { latency, jitter } => ToxicKind::Latency { latency, jitter },
        LinkAction::Bandwidth { bytes_per_s } => ToxicKind::Bandwidth { bytes_per_s },
        LinkAction::Reset { after } => ToxicKind::Reset { after },
        LinkAction::Blackhole => ToxicKind::Blackhole,
        LinkAction::Slicer {
            average_size,
            size_variation,
            delay,
        } => ToxicKind::Slicer {
            average_size: average_size as usize,
            size_variation: size_variation as usize,
            delay,
        },
        LinkAction::Limit { bytes } => ToxicKind::Limit { bytes },
        LinkAction::Down => return None,
    })
}

/// Starts `cores` threads that spin until told to stop or `limit` passed.
fn burn(cores: u32, limit: Duration) -> io::Result<Held> {
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = std::time::Instant::now() + limit;
    let mut threads = Vec::new();
    for i in 0..cores {
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("gauntlet-cpu-burn-{i}"))
            .spawn(move || {
                let mut x: u64 = 1;
                while !flag.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                    for _ in 0..10_000 {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                }
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
    }
    Ok(Held::Burn { stop, threads })
}

/// What a fill wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filled {
    pub written: u64,
    /// The file system ran out of space (else `max` was reached).
    pub enospc: bool,
}

/// Writes `path` until the file system is full or `max` bytes are written,
/// and syncs it so the space is really taken.
pub fn fill(path: &Path, max: u64) -> io::Result<Filled> {
    let mut f = std::fs::File::create(path)?;
    let block = vec![0xA5u8; FILL_BLOCK];
    let mut written = 0u64;
    while written < max {
        let n = ((max - written) as usize).min(FILL_BLOCK);
        match f.write(&block[..n]) {
            Ok(0) => {
                return Ok(Filled {
                    written,
                    enospc: true,
                });
            }
            Ok(k) => written += k as u64,
            Err(e) if e.kind() == io::ErrorKind::StorageFull => {
                return Ok(Filled {
                    written,
                    enospc: true,
                });
            }
            Err(e) => {
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
        }
    }
    match f.sync_all() {
        Ok(()) => Ok(Filled {
            written,
            enospc: false,
        }),
        Err(e) if e.kind() == io::ErrorKind::StorageFull => Ok(Filled {
            written,
            enospc: true,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
}
