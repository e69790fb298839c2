//! The process stack: every service of the scenario as a child process on a
//! free loopback port, with its own data directory and log file in the run
//! directory, ready when its readiness probe passes (`GET ready_path` answers
//! 200; Redis: `PING`). It implements the [`Stack`] control surface: signals
//! go to the child's process group, pause is SIGSTOP, and a stopped service
//! starts again on the same port with the same data directory.
//!
//! Children never outlive the harness: each runs in its own process group
//! (so a terminal's Ctrl-C reaches only loadgen, which then stops them in
//! order), gets SIGKILL if loadgen dies (`PR_SET_PDEATHSIG`), and is killed
//! when its handle is dropped (a panic or an early return).
//!
//! A service with `disk:` gets a data directory of that size: a *data
//! holder* (a `sleep` child like the others) enters a private mount
//! namespace and mounts a tmpfs of that size on the data directory before
//! it execs; each start of the service joins that namespace (`setns`), so
//! restarts see the same data, and the harness reaches the tmpfs through
//! `/proc/<holder>/root/…` (what [`Stack::data_dir`] returns). The
//! namespace, and the tmpfs with it, dies with the holder and the service:
//! at shutdown, or by `PR_SET_PDEATHSIG` when loadgen is killed.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use gauntlet_control::StopReport;
use gauntlet_control::{BoxFuture, ControlError, Endpoint, ServiceState, Signal, Stack};
use gauntlet_scenario::{Readiness, Scenario, Service};
use tokio::process::{Child, Command};

use crate::service::{HasHandle, ServiceHandle, Services};
use crate::{bins, kinds, probe};

const RUNTIME: &str = "process";

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("service `{service}`: {source}")]
    Binary {
        service: String,
        #[source]
        source: bins::BinError,
    },
    #[error("service `{service}`: {message}")]
    Unavailable { service: String, message: String },
    #[error("service `{service}`: cannot start `{program}`: {error}")]
    Spawn {
        service: String,
        program: String,
        error: std::io::Error,
    },
    #[error(
        "service `{service}` exited before it was ready ({status}); last lines of {log}:\n{tail}"
    )]
    Exited {
        service: String,
        status: String,
        log: String,
        tail: String,
    },
    #[error(
        "service `{service}` was not ready within {timeout:?} ({probe}); last lines of {log}:\n{tail}"
    )]
    NotReady {
        service: String,
        timeout: Duration,
        probe: String,
        log: String,
        tail: String,
    },
    #[error(
        "service `{service}`: cannot give its data directory {dir} a filesystem of its own (`disk: {size}`): {error} (hint: `disk:` in process mode mounts a tmpfs in a private mount namespace, which needs CAP_SYS_ADMIN: run loadgen as root, or use `--runtime containers`, or remove `disk:`)"
    )]
    Disk {
        service: String,
        dir: String,
        size: gauntlet_scenario::Size,
        error: std::io::Error,
    },
    #[error("run directory: {0}")]
    Io(#[from] std::io::Error),
}

/// How to (re)start one service: fixed at boot, so a restart uses the same
/// port, data directory, log and environment.
struct Launch {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// One service of the stack.
struct ProcService {
    /// Name, probe, timeouts, log, endpoint, state and pid.
    h: ServiceHandle,
    port: u16,
    data_dir: PathBuf,
    launch: Launch,
    child: tokio::sync::Mutex<Option<Child>>,
    /// The data holder when the service has a `disk:` of its own.
    holder: Mutex<Option<Holder>>,
}

/// The process that holds a service's size-limited data directory: a
/// `sleep` in a private mount namespace with a tmpfs on the data directory.
struct Holder {
    child: Child,
    pid: u32,
}

impl Holder {
    /// Spawns the holder; the spawn fails (with the mount's errno) when the
    /// namespace or the tmpfs cannot be set up.
    fn spawn(
        service: &str,
        dir: &Path,
        size: gauntlet_scenario::Size,
    ) -> Result<Holder, StackError> {
        let disk_err = |error: std::io::Error| StackError::Disk {
            service: service.to_owned(),
            dir: dir.display().to_string(),
            size,
            error,
        };
        let target = CString::new(dir.as_os_str().as_bytes())
            .map_err(|e| disk_err(std::io::Error::other(e)))?;
        let options = CString::new(format!("size={},mode=0700", size.bytes())).expect("no NUL");
        let mut command = Command::new("sleep");
        command
            .arg("infinity")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: only async-signal-safe system calls on buffers prepared
        // before the fork: prctl, unshare, mount.
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Nothing mounted here propagates back to the host.
                let root = c"/";
                if libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                let tmpfs = c"tmpfs";
                if libc::mount(
                    tmpfs.as_ptr(),
                    target.as_ptr(),
                    tmpfs.as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    options.as_ptr().cast(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(disk_err)?;
        let pid = child.id().unwrap_or(0);
        Ok(Holder { child, pid })
    }

    /// `dir` as the holder's mount namespace sees it, from the host.
    fn view(&self, dir: &Path) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.pid)).join(dir.strip_prefix("/").unwrap_or(dir))
    }

    /// Its mount namespace, for a service to join.
    fn namespace(&self) -> std::io::Result<File> {
        File::open(format!("/proc/{}/ns/mnt", self.pid))
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

impl HasHandle for ProcService {
    fn handle(&self) -> &ServiceHandle {
        &self.h
    }
}

pub struct ProcessStack {
    services: Services<ProcService>,
}

/// A free port on loopback (the OS picks it; the listener is closed before use).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The last `n` lines of a log file, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let tail = lines[start..].join("\n");
    if tail.is_empty() {
        "    (the log is empty)".to_owned()
    } else {
        tail.lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// How to run `svc` as a local process: its kind's entry of the kind
/// table (a bundled binary located by `bins`, or a Debian program on
/// `PATH`), or its `command`.
fn launch_for(
    name: &str,
    svc: &Service,
    port: u16,
    data_dir: &Path,
    bins: &bins::Locator,
) -> Result<Launch, StackError> {
    let dir = data_dir.display().to_string();
    let sub = |text: &str| kinds::substitute(text, "127.0.0.1", port, &dir);
    let (program, args): (PathBuf, Vec<String>) = match (svc.kind, &svc.command) {
        (Some(kind), _) => {
            let spec = kinds::spec(kind);
            if let Some(why) = spec.process_unavailable {
                return Err(StackError::Unavailable {
                    service: name.to_owned(),
                    message: why.to_owned(),
                });
            }
            let program = match spec.program {
                kinds::Program::Bundled { .. } => {
                    bins::locate(kind, bins).map_err(|source| StackError::Binary {
                        service: name.to_owned(),
                        source,
                    })?
                }
                kinds::Program::Debian { package, binary } => {
                    which(binary).ok_or_else(|| StackError::Unavailable {
                        service: name.to_owned(),
                        message: format!(
                            "`{binary}` is not installed on this machine (hint: `apt-get install {package}` — ci/setup.sh does — or run with `--runtime containers`)"
                        ),
                    })?
                }
            };
            (program, spec.args.iter().map(|a| sub(a)).collect())
        }
        (None, Some(cmd)) => {
            let mut parts = cmd.iter().map(|c| sub(c));
            let program = PathBuf::from(parts.next().unwrap_or_default());
            (program, parts.collect())
        }
        (None, None) => {
            return Err(StackError::Unavailable {
                service: name.to_owned(),
                message: "an `image` alone runs only in container mode (hint: add a `command` for process mode, or run with `--runtime containers`)".to_owned(),
            });
        }
    };
    let env = kinds::environment(svc, "127.0.0.1", port, &dir);
    Ok(Launch { program, args, env })
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Settings only the container runtime applies, named for the warning.
fn container_only(svc: &Service) -> Vec<&'static str> {
    let mut out = Vec::new();
    if svc.cpus.is_some() {
        out.push("cpus");
    }
    if svc.memory.is_some() {
        out.push("memory");
    }
    if !svc.volumes.is_empty() {
        out.push("volumes");
    }
    if svc.port.is_some() {
        out.push("port");
    }
    out
}

impl ProcessStack {
    /// Starts every service and waits until each is ready. When one fails,
    /// those already started are stopped gracefully before the error returns.
    pub async fn boot(
        scenario: &Scenario,
        run_dir: &Path,
        bins: &bins::Locator,
        quiet: bool,
    ) -> Result<Self, StackError> {
        let mut stack = ProcessStack {
            services: Services::default(),
        };
        match stack.start_all(scenario, run_dir, bins, quiet).await {
            Ok(()) => Ok(stack),
            Err(e) => {
                stack.do_shutdown().await;
                Err(e)
            }
        }
    }

    async fn start_all(
        &mut self,
        scenario: &Scenario,
        run_dir: &Path,
        bins: &bins::Locator,
        quiet: bool,
    ) -> Result<(), StackError> {
        for (name, svc) in &scenario.stack.services {
            let ignored = container_only(svc);
            if !ignored.is_empty() && !quiet {
                eprintln!(
                    "warning: service `{name}`: {} appl{} in container mode only; ignored by the process stack",
                    ignored.join(", "),
                    if ignored.len() == 1 { "ies" } else { "y" }
                );
            }
            let mut data_dir = run_dir.join("data").join(name);
            fs::create_dir_all(&data_dir)?;
            let holder = match svc.disk {
                Some(size) => {
                    // Absolute: the service and the harness reach it from
                    // the holder's namespace.
                    data_dir = std::path::absolute(&data_dir)?;
                    Some(Holder::spawn(name, &data_dir, size)?)
                }
                None => None,
            };
            fs::create_dir_all(run_dir.join("logs"))?;
            let log = run_dir.join("logs").join(format!("{name}.log"));
            File::create(&log)?;
            let port = free_port()?;
            let launch = launch_for(name, svc, port, &data_dir, bins)?;
            let endpoint = Endpoint {
                host: "127.0.0.1".to_owned(),
                port,
            };
            let service = self.services.push(ProcService {
                h: ServiceHandle::new(name, svc, log, endpoint),
                port,
                data_dir,
                launch,
                child: tokio::sync::Mutex::new(None),
                holder: Mutex::new(holder),
            });
            service.start().await?;
        }
        Ok(())
    }

    fn find(&self, service: &str) -> Result<&ProcService, ControlError> {
        self.services.find(service)
    }

    /// Stops every service, last started first: SIGTERM, then SIGKILL after its stop timeout.
    async fn do_shutdown(&self) -> Vec<StopReport> {
        let mut reports = Vec::new();
        for svc in self.services.iter().rev() {
            let mut child = svc.child.lock().await;
            if let Some(mut running) = child.take() {
                reports.push(svc.stop_child(&mut running, svc.h.stop_timeout).await);
            }
            drop(child);
            let holder = svc.holder.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(holder) = holder {
                holder.stop().await;
            }
        }
        reports
    }
}

fn failed(service: &str, action: &'static str, message: impl Into<String>) -> ControlError {
    ControlError::Failed {
        service: service.to_owned(),
        action,
        message: message.into(),
    }
}

impl ProcService {
    /// Spawns the process (appending to its log) and waits until it is ready.
    async fn start(&self) -> Result<(), StackError> {
        let mut slot = self.child.lock().await;
        if let Some(child) = slot.as_mut()
            && matches!(child.try_wait(), Ok(None))
        {
            return Ok(());
        }
        let mut command = Command::new(&self.launch.program);
        command.args(&self.launch.args);
        for (k, v) in &self.launch.env {
            command.env(k, v);
        }
        let out = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.h.log)?;
        let err = out.try_clone()?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        // With a `disk:`, the service joins its holder's mount namespace
        // (and returns to the working directory, which setns resets).
        let namespace = self.holder_namespace()?;
        let ns_fd = namespace.as_ref().map(|(f, _)| f.as_raw_fd());
        let cwd = namespace.as_ref().map(|(_, c)| c.clone());
        // SAFETY: prctl, setns and chdir are async-signal-safe and use only
        // what was prepared before the fork; prctl asks the kernel to
        // SIGKILL this child when the harness dies.
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if let (Some(fd), Some(cwd)) = (ns_fd, &cwd) {
                    if libc::setns(fd, libc::CLONE_NEWNS) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::chdir(cwd.as_ptr()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|error| StackError::Spawn {
            service: self.h.name.clone(),
            program: self.launch.program.display().to_string(),
            error,
        })?;
        drop(namespace);
        self.h.started(child.id().unwrap_or(0));
        let child = slot.insert(child);
        self.wait_ready(child).await
    }

    /// The holder's mount namespace and the current directory, when the
    /// service has a `disk:`.
    fn holder_namespace(&self) -> Result<Option<(File, CString)>, StackError> {
        let holder = self.holder.lock().unwrap_or_else(|p| p.into_inner());
        let Some(holder) = holder.as_ref() else {
            return Ok(None);
        };
        let gone = |e: std::io::Error| StackError::Unavailable {
            service: self.h.name.clone(),
            message: format!(
                "the process holding its `disk:` (pid {}) is gone: {e}",
                holder.pid
            ),
        };
        let ns = holder.namespace().map_err(gone)?;
        let cwd = std::env::current_dir()?;
        let cwd = CString::new(cwd.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        Ok(Some((ns, cwd)))
    }

    async fn wait_ready(&self, child: &mut Child) -> Result<(), StackError> {
        let addr = format!("127.0.0.1:{}", self.port);
        let probe_text = match &self.h.readiness {
            Readiness::Http(path) => format!("GET http://{addr}{path} never answered 200"),
            Readiness::Redis => format!("PING to {addr} never answered +PONG"),
            Readiness::Postgres => "PostgreSQL never accepted connections".to_owned(),
        };
        let deadline = Instant::now() + self.h.ready_timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.h.stopped();
                return Err(StackError::Exited {
                    service: self.h.name.clone(),
                    status: status.to_string(),
                    log: self.h.log.display().to_string(),
                    tail: log_tail(&self.h.log, 20),
                });
            }
            let ready = match &self.h.readiness {
                Readiness::Http(path) => probe::http_ok(&addr, path).await,
                Readiness::Redis => probe::redis_pong(&addr).await,
                Readiness::Postgres => false,
            };
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StackError::NotReady {
                    service: self.h.name.clone(),
                    timeout: self.h.ready_timeout,
                    probe: probe_text,
                    log: self.h.log.display().to_string(),
                    tail: log_tail(&self.h.log, 20),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal_group(&self, signal: i32) -> Result<(), String> {
        let Some(pid) = self.h.pid() else {
            return Err("the service is not running".to_owned());
        };
        // SAFETY: kill(2) on the process group of our own child (its pid
        // is the group id: it was spawned with process_group(0)).
        let rc = unsafe { libc::kill(-(pid as libc::pid_t), signal) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().to_string())
        }
    }

    /// SIGTERM, then SIGKILL after `timeout`.
    async fn stop_child(&self, child: &mut Child, timeout: Duration) -> StopReport {
        let started = Instant::now();
        let done = |graceful, status: String| {
            self.h.stopped();
            StopReport {
                service: self.h.name.clone(),
                graceful,
                status,
                took: started.elapsed(),
            }
        };
        if let Ok(Some(status)) = child.try_wait() {
            let mut report = done(false, format!("had already exited ({status})"));
            report.took = Duration::ZERO;
            return report;
        }
        // A paused process cannot handle SIGTERM: continue it first.
        let _ = self.signal_group(libc::SIGCONT);
        if let Some(pid) = child.id() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => done(status.success(), status.to_string()),
            Ok(Err(e)) => done(false, format!("wait failed: {e}")),
            Err(_) => {
                let _ = self.signal_group(libc::SIGKILL);
                let _ = child.kill().await;
                done(
                    false,
                    format!("did not stop within {timeout:?} after SIGTERM; killed"),
                )
            }
        }
    }

    async fn control_stop(&self, timeout: Duration) -> Result<(), ControlError> {
        let mut slot = self.child.lock().await;
        if let Some(mut child) = slot.take() {
            self.stop_child(&mut child, timeout).await;
        }
        Ok(())
    }

    async fn control_kill(&self, signal: Signal) -> Result<(), ControlError> {
        let mut slot = self.child.lock().await;
        self.signal_group(signal.number())
            .map_err(|m| failed(&self.h.name, "kill", m))?;
        match signal {
            Signal::Stop => self.h.set_state(ServiceState::Paused),
            Signal::Cont => self.h.set_state(ServiceState::Running),
            Signal::Kill | Signal::Term => {
                if let Some(mut child) = slot.take() {
                    let waited = tokio::time::timeout(
                        self.h.stop_timeout.max(Duration::from_secs(1)),
                        child.wait(),
                    )
                    .await;
                    if waited.is_err() {
                        *slot = Some(child);
                        return Err(failed(
                            &self.h.name,
                            "kill",
                            format!("still running {:?} after {signal}", self.h.stop_timeout),
                        ));
                    }
                }
                self.h.stopped();
            }
            _ => {}
        }
        Ok(())
    }
}

impl Stack for ProcessStack {
    fn runtime(&self) -> &'static str {
        RUNTIME
    }

    crate::stack_accessors!(services);

    fn data_dir(&self, service: &str) -> Option<PathBuf> {
        let svc = self.find(service).ok()?;
        let holder = svc.holder.lock().unwrap_or_else(|p| p.into_inner());
        Some(match holder.as_ref() {
            Some(holder) => holder.view(&svc.data_dir),
            None => svc.data_dir.clone(),
        })
    }

    fn stop<'a>(
        &'a self,
        service: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move { self.find(service)?.control_stop(timeout).await })
    }

    fn kill<'a>(
        &'a self,
        service: &'a str,
        signal: Signal,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move { self.find(service)?.control_kill(signal).await })
    }

    fn pause<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move { self.find(service)?.control_kill(Signal::Stop).await })
    }

    fn unpause<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move { self.find(service)?.control_kill(Signal::Cont).await })
    }

    fn start<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            let svc = self.find(service)?;
            svc.start()
                .await
                .map_err(|e| failed(service, "start", e.to_string()))
        })
    }

    fn restart<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            let svc = self.find(service)?;
            svc.control_stop(svc.h.stop_timeout).await?;
            svc.start()
                .await
                .map_err(|e| failed(service, "restart", e.to_string()))
        })
    }

    fn disconnect<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move { Err(no_network(self, service, "disconnect")) })
    }

    fn reconnect<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move { Err(no_network(self, service, "reconnect")) })
    }

    fn shutdown(&self) -> BoxFuture<'_, Vec<StopReport>> {
        Box::pin(self.do_shutdown())
    }
}

fn no_network(stack: &ProcessStack, service: &str, action: &'static str) -> ControlError {
    match stack.find(service) {
        Err(e) => e,
        Ok(_) => ControlError::Unsupported {
            service: service.to_owned(),
            action,
            runtime: RUNTIME,
            why: "processes share the host's loopback; partitions go through the fault proxy"
                .to_owned(),
        },
    }
}
