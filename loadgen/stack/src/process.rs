//! The process stack: every service of the scenario as a child process on a
//! free loopback port, with its own data directory and log file in the run
//! directory, ready when its readiness probe passes (`GET ready_path` answers
//! 200; Redis: `PING`; PostgreSQL: the startup exchange). It implements the [`Stack`] control surface: signals
//! go to the child's process group, pause is SIGSTOP, and a stopped service
//! starts again on the same port with the same data directory.
//!
//! Services start in boot order ([`gauntlet_scenario::wiring::boot_order`]:
//! each after the services it references) and stop in the reverse order.
//! A reference (`{addr:NAME}` in `env` or `command`, an nginx upstream)
//! becomes the address [`Routes`] gives (the harness puts a fault proxy
//! there when a link fault names the link), fixed for the service's
//! restarts; a kind's generated configuration (nginx's) is written into
//! its data directory before the first start.
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
//!
//! A kind may need more ([`kinds::ProcessSetup`]; PostgreSQL): a command
//! run once per data directory before the first start (`initdb`), a
//! graceful stop command instead of SIGTERM (`pg_ctl stop -m fast`), and a
//! user of its own. Run as root, such a kind's processes (the service, its
//! init and stop commands) switch to that unprivileged user before they
//! exec, keeping one capability, CAP_DAC_READ_SEARCH, as an ambient
//! capability: the run directory may sit under directories only root may
//! traverse (a test's `tempfile` directory is 0700), and this lets the
//! service reach its data directory (chowned to it) without the harness
//! changing the permissions of anything outside the run. Signals (kill
//! faults, pause, the last-resort SIGKILL) go to the service's whole
//! process tree: its process group and every descendant, since
//! PostgreSQL's backends each lead a session of their own.

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
    #[error(
        "service `{service}`: `{command}` failed ({status}) preparing its data directory; last lines of {log}:\n{tail}"
    )]
    Init {
        service: String,
        command: String,
        status: String,
        log: String,
        tail: String,
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
    /// Run once before the first start unless the data directory holds
    /// `init_done` (the kind's [`kinds::Init`]).
    init: Option<(PathBuf, Vec<String>)>,
    init_done: Option<PathBuf>,
    /// The graceful stop command, instead of SIGTERM.
    stop: Option<(PathBuf, Vec<String>)>,
    /// Directories made in the data directory before the first start.
    dirs: Vec<PathBuf>,
    /// The user every process of the service runs as, when not the harness's.
    run_as: Option<RunAs>,
    /// The kind's generated configuration: path in the data directory, text.
    config: Option<(PathBuf, String)>,
}

impl Launch {
    fn describe(program: &Path, args: &[String]) -> String {
        std::iter::once(program.display().to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// An unprivileged user to switch to before exec (the harness runs as root).
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: libc::uid_t,
    gid: libc::gid_t,
}

/// `CAP_DAC_READ_SEARCH` (linux/capability.h).
const CAP_DAC_READ_SEARCH: u32 = 2;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

impl RunAs {
    /// `user`'s ids when the harness runs as root (`None` otherwise).
    fn when_root(service: &str, user: &str) -> Result<Option<RunAs>, StackError> {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(None);
        }
        let name = CString::new(user).map_err(std::io::Error::other)?;
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: getpwnam_r writes into `pw` and `buf`, both alive here.
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc != 0 || found.is_null() {
            return Err(StackError::Unavailable {
                service: service.to_owned(),
                message: format!(
                    "it refuses to run as root and the user `{user}` it runs as instead does not exist (hint: the Debian package creates it — `apt-get install` it, as ci/setup.sh does — or run loadgen as a non-root user)"
                ),
            });
        }
        Ok(Some(RunAs {
            uid: pw.pw_uid,
            gid: pw.pw_gid,
        }))
    }

    /// Between fork and exec: become the user, keeping CAP_DAC_READ_SEARCH
    /// as an ambient capability (see the module documentation).
    ///
    /// # Safety
    /// Only async-signal-safe system calls; call in `pre_exec` only.
    unsafe fn become_user(self) -> std::io::Result<()> {
        let check = |rc: libc::c_long| {
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        unsafe {
            check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0).into())?;
            check(libc::setgroups(0, std::ptr::null()).into())?;
            check(libc::setgid(self.gid).into())?;
            check(libc::setuid(self.uid).into())?;
            let bit = 1u32 << CAP_DAC_READ_SEARCH;
            let header = CapHeader {
                version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
                pid: 0,
            };
            let data = [
                CapData {
                    effective: bit,
                    permitted: bit,
                    inheritable: bit,
                },
                CapData {
                    effective: 0,
                    permitted: 0,
                    inheritable: 0,
                },
            ];
            check(libc::syscall(
                libc::SYS_capset,
                &header as *const CapHeader,
                data.as_ptr(),
            ))?;
            check(
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    CAP_DAC_READ_SEARCH as libc::c_ulong,
                    0,
                    0,
                )
                .into(),
            )
        }
    }
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

/// The last resort (a panic, an early return): the whole tree gets SIGKILL,
/// not only the child its handle kills.
impl Drop for ProcService {
    fn drop(&mut self) {
        let running = self
            .child
            .get_mut()
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if running && let Some(pid) = self.h.pid() {
            let _ = signal_tree(pid, libc::SIGKILL);
        }
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
    peers: &kinds::Peers,
) -> Result<Launch, StackError> {
    let dir = data_dir.display().to_string();
    let sub = |text: &str| kinds::substitute_with(text, "127.0.0.1", port, &dir, peers);
    let mut setup = kinds::ProcessSetup::PLAIN;
    let (program, args): (PathBuf, Vec<String>) = match (svc.kind, &svc.command) {
        (Some(kind), _) => {
            let spec = kinds::spec(kind);
            if let Some(why) = spec.process_unavailable {
                return Err(StackError::Unavailable {
                    service: name.to_owned(),
                    message: why.to_owned(),
                });
            }
            setup = spec.process;
            let program = match spec.program {
                kinds::Program::Bundled { .. } => {
                    bins::locate(kind, bins).map_err(|source| StackError::Binary {
                        service: name.to_owned(),
                        source,
                    })?
                }
                kinds::Program::Debian { package, binary } => {
                    debian_program(name, package, binary, setup.program_dirs)?
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
    let env = kinds::environment(svc, "127.0.0.1", port, &dir, peers);
    let config = kinds::config(svc, &format!("127.0.0.1:{port}"), peers)
        .map(|(path, text)| (PathBuf::from(path), text));
    let package = svc.kind.map_or("", |k| kinds::spec(k).program.package());
    let command = |parts: &[&str]| -> Result<(PathBuf, Vec<String>), StackError> {
        let program = debian_program(name, package, parts[0], setup.program_dirs)?;
        Ok((program, parts[1..].iter().map(|a| sub(a)).collect()))
    };
    let init = setup.init.map(|i| command(i.command)).transpose()?;
    let stop = setup.stop.map(command).transpose()?;
    let run_as = match setup.user_when_root {
        Some(user) => RunAs::when_root(name, user)?,
        None => None,
    };
    Ok(Launch {
        program,
        args,
        env,
        init,
        init_done: setup.init.map(|i| PathBuf::from(i.done_when)),
        stop,
        dirs: setup.dirs.iter().map(PathBuf::from).collect(),
        run_as,
        config,
    })
}

/// A Debian package's program: on `PATH`, or in one of `dirs`.
fn debian_program(
    service: &str,
    package: &str,
    binary: &str,
    dirs: &[&str],
) -> Result<PathBuf, StackError> {
    which(binary, dirs).ok_or_else(|| StackError::Unavailable {
        service: service.to_owned(),
        message: format!(
            "`{binary}` is not installed on this machine (looked in PATH{}) (hint: `apt-get install {package}` — ci/setup.sh does — or run with `--runtime containers`)",
            dirs.iter().map(|d| format!(" and {d}")).collect::<String>()
        ),
    })
}

fn which(program: &str, dirs: &[&str]) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(dirs.iter().map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Every descendant of `pid` (children, theirs, …), from `/proc`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
            let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((child, ppid));
            }
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, ppid) in &parent_of {
            if ppid == p && !found.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
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

/// How a service reaches a service it references (`{addr:NAME}`, an
/// nginx upstream): directly, or through something in between — the fault
/// proxy of a link fault `FROM->TO`, which the harness starts here, once
/// `TO` is ready and before `FROM` starts.
pub trait Routes: Send + Sync {
    /// The endpoint `from` is given for `to`, which is reached at `target`.
    fn route(&self, from: &str, to: &str, target: &Endpoint) -> Result<Endpoint, String>;
}

/// Every service reaches the others directly.
pub struct Direct;

impl Routes for Direct {
    fn route(&self, _: &str, _: &str, target: &Endpoint) -> Result<Endpoint, String> {
        Ok(target.clone())
    }
}

impl ProcessStack {
    /// Starts every service in boot order (each after the services it
    /// references) and waits until each is ready. When one fails, those
    /// already started are stopped gracefully before the error returns.
    pub async fn boot(
        scenario: &Scenario,
        run_dir: &Path,
        bins: &bins::Locator,
        quiet: bool,
    ) -> Result<Self, StackError> {
        Self::boot_with(scenario, run_dir, bins, quiet, &Direct).await
    }

    /// [`Self::boot`], each reference between services resolved through
    /// `routes`.
    pub async fn boot_with(
        scenario: &Scenario,
        run_dir: &Path,
        bins: &bins::Locator,
        quiet: bool,
        routes: &dyn Routes,
    ) -> Result<Self, StackError> {
        let mut stack = ProcessStack {
            services: Services::default(),
        };
        match stack
            .start_all(scenario, run_dir, bins, quiet, routes)
            .await
        {
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
        routes: &dyn Routes,
    ) -> Result<(), StackError> {
        for name in gauntlet_scenario::wiring::boot_order(&scenario.stack) {
            let name = name.as_str();
            let svc = &scenario.stack.services[name];
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
            let peers = self.peers(name, svc, routes)?;
            let launch = launch_for(name, svc, port, &data_dir, bins, &peers)?;
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
            service.prepare().await?;
            service.start().await?;
        }
        Ok(())
    }

    fn find(&self, service: &str) -> Result<&ProcService, ControlError> {
        self.services.find(service)
    }

    /// Where `name` reaches each service it references (all started
    /// before it), through `routes`.
    fn peers(
        &self,
        name: &str,
        svc: &Service,
        routes: &dyn Routes,
    ) -> Result<kinds::Peers, StackError> {
        let mut peers = kinds::Peers::new();
        for to in gauntlet_scenario::wiring::dependencies(svc) {
            let Ok(target) = self.find(&to) else {
                return Err(StackError::Unavailable {
                    service: name.to_owned(),
                    message: format!(
                        "it references `{to}`, which is not a service started before it"
                    ),
                });
            };
            let endpoint = routes
                .route(name, &to, &target.h.endpoint())
                .map_err(|message| StackError::Unavailable {
                    service: name.to_owned(),
                    message: format!("its link to `{to}`: {message}"),
                })?;
            peers.insert(to, (endpoint.host, endpoint.port));
        }
        Ok(peers)
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

/// `signal` to the process group `pid` leads and to every descendant of
/// `pid`: those found before (a killed parent's children are re-parented)
/// and after the group got it (a child forked in between; a stopped
/// parent forks no more).
fn signal_tree(pid: u32, signal: i32) -> Result<(), String> {
    let mut tree = descendants(pid);
    // SAFETY: kill(2) on the process group of our own child (its pid
    // is the group id: it was spawned with process_group(0)).
    let rc = unsafe { libc::kill(-(pid as libc::pid_t), signal) };
    let group = if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    };
    for late in descendants(pid) {
        if !tree.contains(&late) {
            tree.push(late);
        }
    }
    for child in tree {
        // SAFETY: kill(2) on a descendant of our own child.
        unsafe {
            libc::kill(child as libc::pid_t, signal);
        }
    }
    group
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
        let mut command = self.command(&self.launch.program, &self.launch.args)?;
        // Kept open until the spawn: the child joins it.
        let namespace = self.before_exec(&mut command)?;
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

    /// `program` with the service's environment, its output appended to
    /// the service's log, in a process group of its own, killed on drop.
    fn command(&self, program: &Path, args: &[String]) -> Result<Command, StackError> {
        let mut command = Command::new(program);
        command.args(args);
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
        Ok(command)
    }

    /// What every process of the service does before it execs: join the
    /// holder's mount namespace (with a `disk:`; and return to the working
    /// directory, which setns resets), become the service's user, and ask
    /// for SIGKILL when the harness dies (last: a change of user clears
    /// it). Returns the namespace, to keep open until the spawn.
    fn before_exec(&self, command: &mut Command) -> Result<Option<(File, CString)>, StackError> {
        let namespace = self.holder_namespace()?;
        let ns_fd = namespace.as_ref().map(|(f, _)| f.as_raw_fd());
        let cwd = namespace.as_ref().map(|(_, c)| c.clone());
        let run_as = self.launch.run_as;
        // SAFETY: setns, chdir, the calls of `become_user` and prctl are
        // async-signal-safe and use only what was prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                if let (Some(fd), Some(cwd)) = (ns_fd, &cwd) {
                    if libc::setns(fd, libc::CLONE_NEWNS) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::chdir(cwd.as_ptr()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(user) = run_as {
                    user.become_user()?;
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Ok(namespace)
    }

    /// The data directory as the harness reaches it (through the holder
    /// with a `disk:`).
    fn visible_data_dir(&self) -> PathBuf {
        let holder = self.holder.lock().unwrap_or_else(|p| p.into_inner());
        match holder.as_ref() {
            Some(holder) => holder.view(&self.data_dir),
            None => self.data_dir.clone(),
        }
    }

    /// Before the first start: the kind's directories, the data directory
    /// handed to the service's user, and its init command unless it ran.
    async fn prepare(&self) -> Result<(), StackError> {
        let dir = self.visible_data_dir();
        for sub in &self.launch.dirs {
            fs::create_dir_all(dir.join(sub))?;
        }
        if let Some((path, text)) = &self.launch.config {
            fs::write(dir.join(path), text)?;
        }
        if let Some(user) = self.launch.run_as {
            for path in
                std::iter::once(dir.clone()).chain(self.launch.dirs.iter().map(|d| dir.join(d)))
            {
                std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid))?;
            }
        }
        let Some((program, args)) = &self.launch.init else {
            return Ok(());
        };
        if self
            .launch
            .init_done
            .as_ref()
            .is_some_and(|done| dir.join(done).exists())
        {
            return Ok(());
        }
        let deadline = self.h.ready_timeout;
        self.run_helper(program, args, deadline)
            .await
            .map_err(|status| StackError::Init {
                service: self.h.name.clone(),
                command: Launch::describe(program, args),
                status,
                log: self.h.log.display().to_string(),
                tail: log_tail(&self.h.log, 20),
            })?;
        // The init wrote without syncing (`initdb --no-sync`, fast): one
        // syncfs makes it durable now, or the first crash recovery would
        // pay for it (PostgreSQL fsyncs its whole data directory then,
        // seconds on a busy disk).
        let dir_file = File::open(&dir)?;
        // SAFETY: syncfs(2) on a descriptor we own.
        if unsafe { libc::syncfs(dir_file.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }

    /// Runs one of the service's helper commands (init, stop) as the
    /// service would run, bounded by `timeout`; `Err` says how it ended.
    async fn run_helper(
        &self,
        program: &Path,
        args: &[String],
        timeout: Duration,
    ) -> Result<(), String> {
        let mut command = self.command(program, args).map_err(|e| e.to_string())?;
        let namespace = self.before_exec(&mut command).map_err(|e| e.to_string())?;
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start it: {e}"))?;
        drop(namespace);
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(status.to_string()),
            Ok(Err(e)) => Err(format!("wait failed: {e}")),
            Err(_) => {
                let _ = child.kill().await;
                Err(format!("still running after {timeout:?}; killed"))
            }
        }
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
            Readiness::Postgres => format!("PostgreSQL on {addr} never accepted connections"),
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
                Readiness::Postgres => {
                    probe::postgres_ready(&addr, kinds::POSTGRES_USER, kinds::POSTGRES_DATABASE)
                        .await
                }
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

    /// `signal` to the service's process group and every descendant (which
    /// may have left the group: PostgreSQL's backends each call setsid).
    fn signal_group(&self, signal: i32) -> Result<(), String> {
        let Some(pid) = self.h.pid() else {
            return Err("the service is not running".to_owned());
        };
        signal_tree(pid, signal)
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
        // The kind's stop command (pg_ctl), else (or when it fails) SIGTERM.
        let stopped_by_command = match &self.launch.stop {
            Some((program, args)) => self.run_helper(program, args, timeout).await.is_ok(),
            None => false,
        };
        if !stopped_by_command && let Some(pid) = child.id() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        let left = timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, child.wait()).await {
            Ok(Ok(status)) => done(status.success(), status.to_string()),
            Ok(Err(e)) => done(false, format!("wait failed: {e}")),
            Err(_) => {
                let _ = self.signal_group(libc::SIGKILL);
                let _ = child.kill().await;
                let how = match &self.launch.stop {
                    Some((program, args)) => format!("`{}`", Launch::describe(program, args)),
                    None => "SIGTERM".to_owned(),
                };
                done(
                    false,
                    format!("did not stop within {timeout:?} after {how}; killed"),
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
        Some(self.find(service).ok()?.visible_data_dir())
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
