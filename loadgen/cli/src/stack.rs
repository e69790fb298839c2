//! The process stack: every service of the scenario as a child process on a
//! free loopback port, with its own data directory and log file in the run
//! directory, ready when its readiness path answers 200.
//!
//! Children never outlive the harness: each runs in its own process group
//! (so a terminal's Ctrl-C reaches only loadgen, which then stops them in
//! order), gets SIGKILL if loadgen dies (`PR_SET_PDEATHSIG`), and is killed
//! when its handle is dropped (a panic or an early return).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gauntlet_scenario::{Scenario, Service};
use http_body_util::Full;
use hyper::Request;
use tokio::process::{Child, Command};

use crate::bins;
use crate::driver::HttpClient;

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("service `{service}`: {source}")]
    Binary {
        service: String,
        #[source]
        source: bins::BinError,
    },
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
        "service `{service}` was not ready within {timeout:?} (GET {url} never answered 200); last lines of {log}:\n{tail}"
    )]
    NotReady {
        service: String,
        timeout: Duration,
        url: String,
        log: String,
        tail: String,
    },
    #[error("run directory: {0}")]
    Io(#[from] std::io::Error),
}

/// One started service.
pub struct RunningService {
    pub name: String,
    pub base_url: String,
    pub port: u16,
    pub log: PathBuf,
    child: Child,
    stop_timeout: Duration,
}

impl RunningService {
    /// The service's process id while it runs (for the CPU and RSS collector).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// How a service ended when the stack stopped.
#[derive(Debug, Clone)]
pub struct StopReport {
    pub service: String,
    /// Exited by itself after SIGTERM within its stop timeout.
    pub graceful: bool,
    pub status: String,
    pub took: Duration,
}

pub struct ProcessStack {
    services: Vec<RunningService>,
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

fn substitute(text: &str, port: u16, data_dir: &Path) -> String {
    text.replace("{port}", &port.to_string())
        .replace("{addr}", &format!("127.0.0.1:{port}"))
        .replace("{data_dir}", &data_dir.display().to_string())
}

fn command_for(
    name: &str,
    svc: &Service,
    port: u16,
    data_dir: &Path,
    bins: &bins::Locator,
) -> Result<Command, StackError> {
    let (program, args): (PathBuf, Vec<String>) = match (&svc.kind, &svc.command) {
        (Some(kind), _) => {
            let program = bins::locate(*kind, bins).map_err(|source| StackError::Binary {
                service: name.to_owned(),
                source,
            })?;
            let args = vec![
                "--http-addr".to_owned(),
                format!("127.0.0.1:{port}"),
                "--data-dir".to_owned(),
                data_dir.display().to_string(),
            ];
            (program, args)
        }
        (None, Some(cmd)) => {
            let mut parts = cmd.iter().map(|c| substitute(c, port, data_dir));
            let program = PathBuf::from(parts.next().unwrap_or_default());
            (program, parts.collect())
        }
        (None, None) => unreachable!("validation requires `kind` or `command`"),
    };
    let mut command = Command::new(&program);
    command.args(&args);
    for (k, v) in &svc.env {
        command.env(k, substitute(v, port, data_dir));
    }
    Ok(command)
}

impl ProcessStack {
    /// Starts every service and waits until each is ready. When one fails,
    /// those already started are stopped gracefully before the error returns.
    pub async fn boot(
        scenario: &Scenario,
        run_dir: &Path,
        client: &HttpClient,
        bins: &bins::Locator,
    ) -> Result<Self, StackError> {
        let mut stack = ProcessStack {
            services: Vec::new(),
        };
        match stack.start_all(scenario, run_dir, client, bins).await {
            Ok(()) => Ok(stack),
            Err(e) => {
                stack.stop().await;
                Err(e)
            }
        }
    }

    async fn start_all(
        &mut self,
        scenario: &Scenario,
        run_dir: &Path,
        client: &HttpClient,
        bins: &bins::Locator,
    ) -> Result<(), StackError> {
        let stack = self;
        for (name, svc) in &scenario.stack.services {
            let data_dir = run_dir.join("data").join(name);
            fs::create_dir_all(&data_dir)?;
            fs::create_dir_all(run_dir.join("logs"))?;
            let log = run_dir.join("logs").join(format!("{name}.log"));
            let port = free_port()?;
            let mut command = command_for(name, svc, port, &data_dir, bins)?;
            let out = File::create(&log)?;
            let err = out.try_clone()?;
            command
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .process_group(0)
                .kill_on_drop(true);
            // SAFETY: prctl is async-signal-safe; it only asks the kernel to
            // SIGKILL this child when the harness dies.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let program = format!("{:?}", command.as_std().get_program());
            let child = command.spawn().map_err(|error| StackError::Spawn {
                service: name.clone(),
                program,
                error,
            })?;
            let service = RunningService {
                name: name.clone(),
                base_url: format!("http://127.0.0.1:{port}"),
                port,
                log,
                child,
                stop_timeout: svc.stop_timeout.0,
            };
            stack.services.push(service);
            let service = stack.services.last_mut().expect("just pushed");
            wait_ready(service, &svc.ready_path, svc.ready_timeout.0, client).await?;
        }
        Ok(())
    }

    /// Base URLs by service name.
    pub fn endpoints(&self) -> BTreeMap<String, String> {
        self.services
            .iter()
            .map(|s| (s.name.clone(), s.base_url.clone()))
            .collect()
    }

    pub fn services(&self) -> &[RunningService] {
        &self.services
    }

    /// Stops every service, last started first: SIGTERM, then SIGKILL after its stop timeout.
    pub async fn stop(mut self) -> Vec<StopReport> {
        let mut reports = Vec::new();
        while let Some(mut svc) = self.services.pop() {
            reports.push(stop_service(&mut svc).await);
        }
        reports
    }
}

async fn stop_service(svc: &mut RunningService) -> StopReport {
    let started = Instant::now();
    if let Ok(Some(status)) = svc.child.try_wait() {
        return StopReport {
            service: svc.name.clone(),
            graceful: false,
            status: format!("had already exited ({status})"),
            took: Duration::ZERO,
        };
    }
    if let Some(pid) = svc.child.id() {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    match tokio::time::timeout(svc.stop_timeout, svc.child.wait()).await {
        Ok(Ok(status)) => StopReport {
            service: svc.name.clone(),
            graceful: status.success(),
            status: status.to_string(),
            took: started.elapsed(),
        },
        Ok(Err(e)) => StopReport {
            service: svc.name.clone(),
            graceful: false,
            status: format!("wait failed: {e}"),
            took: started.elapsed(),
        },
        Err(_) => {
            let _ = svc.child.kill().await;
            StopReport {
                service: svc.name.clone(),
                graceful: false,
                status: format!(
                    "did not stop within {:?} after SIGTERM; killed",
                    svc.stop_timeout
                ),
                took: started.elapsed(),
            }
        }
    }
}

async fn wait_ready(
    svc: &mut RunningService,
    path: &str,
    timeout: Duration,
    client: &HttpClient,
) -> Result<(), StackError> {
    let url = format!("{}{path}", svc.base_url);
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = svc.child.try_wait() {
            return Err(StackError::Exited {
                service: svc.name.clone(),
                status: status.to_string(),
                log: svc.log.display().to_string(),
                tail: log_tail(&svc.log, 20),
            });
        }
        let request = Request::get(&url).body(Full::new(Bytes::new()));
        if let Ok(request) = request
            && let Ok(Ok(response)) =
                tokio::time::timeout(Duration::from_secs(1), client.request(request)).await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StackError::NotReady {
                service: svc.name.clone(),
                timeout,
                url,
                log: svc.log.display().to_string(),
                tail: log_tail(&svc.log, 20),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
