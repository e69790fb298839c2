//! The container stack: every service of the scenario in a container on a
//! private Docker network of its own run (reachable from the others by its
//! service name), its port mapped to a random loopback port for the
//! harness, its data directory a Docker volume of the run.
//!
//! Services are created and started in boot order (each after the services
//! it references); a reference (`{addr:NAME}`, an nginx upstream) is the
//! other container's name on the network and its container port
//! (`db:5432`). A kind's generated configuration (nginx's) goes to the
//! container in [`kinds::CONFIG_VAR`], which its start script writes out.
//! Links between two services cannot be proxied here (the harness's proxy
//! is not on the run's network): validation refuses them.
//!
//! Readiness is the same wait as the process stack's (`GET ready_path`
//! until 200 on the mapped port; Redis `PING`; PostgreSQL `pg_isready`
//! inside the container). The mapped port changes when a container starts
//! again; [`Stack::watch_endpoint`] publishes the new one.
//!
//! Everything is labelled with the run id and owner; [`Stack::shutdown`]
//! removes it all, and so does dropping the stack without a shutdown
//! (an error or a panic).
//!
//! A service with `disk:` gets a data volume of the local driver with tmpfs
//! options (`size=N`). Docker mounts such a volume while a container uses
//! it and unmounts it (losing its data) when none does, so a *data holder*
//! container (the base image, `sleep infinity`, no network, the run's
//! labels) keeps it mounted for the whole run: the service's restarts find
//! their data. The volume's mountpoint is then the tmpfs on this host too,
//! which is where a `disk_full` fault writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkConnectRequest, NetworkCreateRequest,
    NetworkDisconnectRequest, NetworkingConfig, PortBinding, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, KillContainerOptions, LogsOptions,
    StartContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;
use gauntlet_control::{
    BoxFuture, ControlError, Endpoint, ServiceState, Signal, Stack, StopReport,
};
use gauntlet_scenario::{Readiness, Scenario, Service, ServiceKind};

use crate::LABEL_SERVICE;
use crate::docker::{DockerError, is_not_found};
use crate::images::ImageSet;
use crate::reaper::{self, Owner};
use gauntlet_stack::kinds;
use gauntlet_stack::probe;
use gauntlet_stack::service::{HasHandle, ServiceHandle, Services};

const RUNTIME: &str = "containers";
/// Where every service's data volume is mounted.
pub const DATA_PATH: &str = "/data";
/// The uid of the `gauntlet` user the bundled service images run as.
const SERVICE_UID: u32 = 10001;
/// `statfs`'s `f_type` of a tmpfs.
const TMPFS_MAGIC: i64 = 0x0102_1994;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("service `{service}`: {message}")]
    Service { service: String, message: String },
    #[error(
        "service `{service}` was not ready within {timeout:?} ({probe}); last lines of its log:\n{tail}"
    )]
    NotReady {
        service: String,
        timeout: Duration,
        probe: String,
        tail: String,
    },
    #[error(
        "service `{service}` exited before it was ready ({status}); last lines of its log:\n{tail}"
    )]
    Exited {
        service: String,
        status: String,
        tail: String,
    },
}

struct Svc {
    /// Name, probe, timeouts, log, endpoint, state and pid.
    h: ServiceHandle,
    container: String,
    container_port: u16,
    data_dir: Option<PathBuf>,
    /// Serializes control actions on this service.
    busy: tokio::sync::Mutex<()>,
}

impl HasHandle for Svc {
    fn handle(&self) -> &ServiceHandle {
        &self.h
    }
}

pub struct ContainerStack {
    docker: Docker,
    run_id: String,
    network: String,
    services: Services<Arc<Svc>>,
    shut: AtomicBool,
}

/// What [`ContainerStack::boot`] needs.
pub struct BootSpec<'a> {
    pub scenario: &'a Scenario,
    /// Names the network, containers and volumes; labels them.
    pub run_id: &'a str,
    /// Service logs are copied to `<run_dir>/logs/<service>.log`.
    pub run_dir: &'a Path,
    pub images: &'a ImageSet,
    /// Print warnings (none in quiet mode).
    pub quiet: bool,
}

fn substitute(text: &str, port: u16, peers: &kinds::Peers) -> String {
    kinds::substitute_with(text, "0.0.0.0", port, DATA_PATH, peers)
}

/// Image, user and command of a service's container.
struct Launch {
    image: String,
    user: Option<String>,
    cmd: Option<Vec<String>>,
}

/// The container of `svc`: its kind's entry of the kind table (a bundled
/// image whose entrypoint is the program, or the base image running a
/// Debian program or the kind's start script), or its own `image`.
fn launch(
    name: &str,
    svc: &Service,
    images: &ImageSet,
    peers: &kinds::Peers,
) -> Result<Launch, ContainerError> {
    let port = kinds::container_port(svc);
    let command = svc.command.as_ref().map(|c| {
        c.iter()
            .map(|a| substitute(a, port, peers))
            .collect::<Vec<_>>()
    });
    match (svc.kind, &svc.image) {
        (Some(kind), _) => {
            let spec = kinds::spec(kind);
            let image = images.for_kind(kind).ok_or_else(|| ContainerError::Service {
                service: name.to_owned(),
                message: format!("no image was built for `{}`", kind.name()),
            })?;
            let args = spec.args.iter().map(|a| substitute(a, port, peers));
            let cmd: Vec<String> = match (spec.container_script, spec.program) {
                (Some(script), _) => vec!["bash".into(), "-c".into(), substitute(script, port, peers)],
                // The bundled image's entrypoint is the program.
                (None, kinds::Program::Bundled { .. }) => args.collect(),
                (None, kinds::Program::Debian { binary, .. }) => {
                    std::iter::once(binary.to_owned()).chain(args).collect()
                }
            };
            Ok(Launch {
                image: image.to_owned(),
                user: spec.container_user.map(str::to_owned),
                cmd: Some(cmd),
            })
        }
        (None, Some(image)) => Ok(Launch {
            image: image.clone(),
            user: None,
            cmd: command,
        }),
        (None, None) => Err(ContainerError::Service {
            service: name.to_owned(),
            message: "container mode needs `kind` or `image` (a `command` alone runs only as a local process)".to_owned(),
        }),
    }
}

/// The local volume driver's options for a tmpfs of `size` bytes, owned by
/// the user the bundled service images run as (other images: writable by
/// every user, sticky like `/tmp`).
fn tmpfs_options(size: u64, kind: Option<ServiceKind>) -> HashMap<String, String> {
    let bundled = kind.is_some_and(kinds::is_bundled);
    let owner = if bundled {
        format!("uid={SERVICE_UID},mode=0755")
    } else {
        "mode=1777".to_owned()
    };
    HashMap::from([
        ("type".to_owned(), "tmpfs".to_owned()),
        ("device".to_owned(), "tmpfs".to_owned()),
        ("o".to_owned(), format!("size={size},{owner}")),
    ])
}

/// Whether `path` is on a tmpfs, seen from this process.
fn is_tmpfs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs(2) fills the zeroed struct; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == TMPFS_MAGIC
    }
}

fn unsupported_err(service: &str, action: &'static str, message: String) -> ControlError {
    ControlError::Failed {
        service: service.to_owned(),
        action,
        message,
    }
}

impl ContainerStack {
    /// Reaps leftovers of dead runs, creates the run's network, then each
    /// service in order, waiting until it is ready. On failure everything
    /// created so far is removed before the error returns.
    pub async fn boot(spec: BootSpec<'_>) -> Result<ContainerStack, ContainerError> {
        let docker = crate::docker::connect().await?;
        let reaped = reaper::reap_dead_runs(&docker).await?;
        if !reaped.is_empty() && !spec.quiet {
            eprintln!("reaped leftovers of dead runs: {}", reaped.summary());
        }
        let network = format!("gauntlet-{}", spec.run_id);
        let mut stack = ContainerStack {
            docker,
            run_id: spec.run_id.to_owned(),
            network,
            services: Services::default(),
            shut: AtomicBool::new(false),
        };
        match stack.start_all(&spec).await {
            Ok(()) => Ok(stack),
            Err(e) => {
                stack.shutdown().await;
                Err(e)
            }
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn network(&self) -> &str {
        &self.network
    }

    async fn start_all(&mut self, spec: &BootSpec<'_>) -> Result<(), ContainerError> {
        let owner = Owner::current();
        let labels = owner.labels(&self.run_id);
        self.docker
            .create_network(NetworkCreateRequest {
                name: self.network.clone(),
                driver: Some("bridge".to_owned()),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .map_err(DockerError::api(format!(
                "creating network {}",
                self.network
            )))?;
        let logs = spec.run_dir.join("logs");
        let _ = std::fs::create_dir_all(&logs);
        let services = &spec.scenario.stack.services;
        for name in gauntlet_scenario::wiring::boot_order(&spec.scenario.stack) {
            let (name, svc) = (&name, &services[&name]);
            // The services it references, by their name on the run's
            // network and their container port.
            let peers: kinds::Peers = gauntlet_scenario::wiring::dependencies(svc)
                .into_iter()
                .filter_map(|to| {
                    let port = kinds::container_port(services.get(&to)?);
                    Some((to.clone(), (to, port)))
                })
                .collect();
            let container = format!("gauntlet-{}-{name}", self.run_id);
            let mut svc_labels = labels.clone();
            svc_labels.insert(LABEL_SERVICE.to_owned(), name.clone());
            // The data volume, then the scenario's extra volumes.
            let mut binds = Vec::new();
            let mut data_dir = None;
            let volumes = std::iter::once(("data".to_owned(), DATA_PATH.to_owned()))
                .chain(svc.volumes.iter().map(|(k, v)| (k.clone(), v.clone())));
            for (volume, path) in volumes {
                let volume_name = format!("{container}-{volume}");
                let disk = svc.disk.filter(|_| path == DATA_PATH);
                let created = self
                    .docker
                    .create_volume(VolumeCreateRequest {
                        name: Some(volume_name.clone()),
                        labels: Some(svc_labels.clone()),
                        driver: disk.map(|_| "local".to_owned()),
                        driver_opts: disk.map(|size| tmpfs_options(size.bytes(), svc.kind)),
                        ..Default::default()
                    })
                    .await
                    .map_err(DockerError::api(format!("creating volume {volume_name}")))?;
                if path == DATA_PATH {
                    data_dir = Some(PathBuf::from(created.mountpoint));
                }
                if disk.is_some() {
                    let mountpoint = data_dir.clone().unwrap_or_default();
                    self.hold_volume(name, &container, &volume_name, &svc_labels, spec)
                        .await?;
                    if !is_tmpfs(&mountpoint) {
                        // The engine mounts it where this process cannot
                        // see it (another mount namespace, a remote engine):
                        // the service has its disk, a `disk_full` fault
                        // could not reach it.
                        if !spec.quiet {
                            eprintln!(
                                "warning: service `{name}`: its `disk:` volume is not a tmpfs at {} from here; `disk_full` faults cannot reach it",
                                mountpoint.display()
                            );
                        }
                        data_dir = None;
                    }
                }
                binds.push(format!("{volume_name}:{path}"));
            }
            let Launch { image, user, cmd } = launch(name, svc, spec.images, &peers)?;
            let port = kinds::container_port(svc);
            let port_key = format!("{port}/tcp");
            let mut env = kinds::environment(svc, "0.0.0.0", port, DATA_PATH, &peers);
            if let Some((_, text)) = kinds::config(svc, &format!("0.0.0.0:{port}"), &peers) {
                env.push((kinds::CONFIG_VAR.to_owned(), text));
            }
            let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            let body = ContainerCreateBody {
                image: Some(image.clone()),
                user,
                cmd,
                env: Some(env),
                labels: Some(svc_labels.clone()),
                exposed_ports: Some(vec![port_key.clone()]),
                stop_timeout: Some(svc.stop_timeout.0.as_secs().max(1) as i64),
                host_config: Some(HostConfig {
                    binds: Some(binds),
                    network_mode: Some(self.network.clone()),
                    port_bindings: Some(HashMap::from([(
                        port_key,
                        Some(vec![PortBinding {
                            host_ip: Some("127.0.0.1".to_owned()),
                            host_port: Some(String::new()),
                        }]),
                    )])),
                    nano_cpus: svc.cpus.map(|c| (c * 1e9) as i64),
                    memory: svc.memory.map(|m| m.bytes() as i64),
                    ..Default::default()
                }),
                networking_config: Some(NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(
                        self.network.clone(),
                        EndpointSettings {
                            aliases: Some(vec![name.clone()]),
                            ..Default::default()
                        },
                    )])),
                }),
                ..Default::default()
            };
            self.docker
                .create_container(
                    Some(CreateContainerOptions {
                        name: Some(container.clone()),
                        ..Default::default()
                    }),
                    body,
                )
                .await
                .map_err(|e| ContainerError::Service {
                    service: name.clone(),
                    message: if is_not_found(&e) {
                        format!("image `{image}` is not in the Docker engine (hint: `loadgen images build`; nothing is pulled)")
                    } else {
                        format!("creating container {container}: {e}")
                    },
                })?;
            let endpoint = Endpoint {
                host: "127.0.0.1".to_owned(),
                port: 0,
            };
            let log = logs.join(format!("{name}.log"));
            let service = Arc::new(Svc {
                h: ServiceHandle::new(name, svc, log, endpoint),
                container,
                container_port: port,
                data_dir,
                busy: tokio::sync::Mutex::new(()),
            });
            self.services.push(service.clone());
            self.start_service(&service).await?;
        }
        Ok(())
    }

    /// Starts the data holder of a `disk:` volume: a container of the base
    /// image that only sleeps with the volume mounted, so Docker keeps the
    /// tmpfs (and the data) while the service stops and starts. Removed
    /// with the run like every other container of it.
    async fn hold_volume(
        &self,
        service: &str,
        container: &str,
        volume: &str,
        labels: &HashMap<String, String>,
        spec: &BootSpec<'_>,
    ) -> Result<(), ContainerError> {
        let holder = format!("{container}-disk");
        let err = |message: String| ContainerError::Service {
            service: service.to_owned(),
            message,
        };
        let body = ContainerCreateBody {
            image: Some(spec.images.base.clone()),
            cmd: Some(vec!["sleep".to_owned(), "infinity".to_owned()]),
            labels: Some(labels.clone()),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{volume}:{DATA_PATH}")]),
                network_mode: Some("none".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(holder.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| {
                err(if is_not_found(&e) {
                    format!(
                        "image `{}` (the `disk:` holder's) is not in the Docker engine (hint: `loadgen images build`)",
                        spec.images.base
                    )
                } else {
                    format!("creating the `disk:` holder {holder}: {e}")
                })
            })?;
        self.docker
            .start_container(&holder, None::<StartContainerOptions>)
            .await
            .map_err(|e| {
                err(format!(
                    "mounting its `disk:` (a tmpfs volume) in {holder} failed: {e} (hint: the engine's local volume driver must be able to mount a tmpfs)"
                ))
            })?;
        Ok(())
    }

    fn find(&self, service: &str) -> Result<&Arc<Svc>, ControlError> {
        self.services.find(service)
    }

    /// Starts the container, looks up its host port and pid, publishes the
    /// endpoint and waits until the service is ready.
    async fn start_service(&self, svc: &Svc) -> Result<(), ContainerError> {
        let err = |message: String| ContainerError::Service {
            service: svc.h.name.clone(),
            message,
        };
        self.docker
            .start_container(&svc.container, None::<StartContainerOptions>)
            .await
            .map_err(|e| err(format!("starting container {}: {e}", svc.container)))?;
        let inspect = self
            .docker
            .inspect_container(&svc.container, None::<InspectContainerOptions>)
            .await
            .map_err(|e| err(format!("inspecting container {}: {e}", svc.container)))?;
        let key = format!("{}/tcp", svc.container_port);
        let host_port = inspect
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.as_ref())
            .and_then(|p| p.get(&key).cloned().flatten())
            .and_then(|b| b.into_iter().find_map(|b| b.host_port))
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| {
                err(format!(
                    "container {} has no host port for {key}",
                    svc.container
                ))
            })?;
        let pid = inspect
            .state
            .as_ref()
            .and_then(|s| s.pid)
            .unwrap_or(0)
            .max(0) as u32;
        svc.h.publish(Endpoint {
            host: "127.0.0.1".to_owned(),
            port: host_port,
        });
        svc.h.started(pid);
        self.wait_ready(svc).await
    }

    async fn wait_ready(&self, svc: &Svc) -> Result<(), ContainerError> {
        let addr = svc.h.endpoint().addr();
        let started = Instant::now();
        let probe = match &svc.h.readiness {
            Readiness::Http(path) => format!("GET http://{addr}{path} never answered 200"),
            Readiness::Redis => format!("PING to {addr} never answered +PONG"),
            Readiness::Postgres => "pg_isready never succeeded".to_owned(),
        };
        loop {
            let ready = match &svc.h.readiness {
                Readiness::Http(path) => probe::http_ok(&addr, path).await,
                Readiness::Redis => probe::redis_pong(&addr).await,
                Readiness::Postgres => {
                    self.exec_ok(
                        &svc.container,
                        vec![
                            "pg_isready".into(),
                            "-q".into(),
                            "-h".into(),
                            "127.0.0.1".into(),
                            "-p".into(),
                            svc.container_port.to_string(),
                        ],
                    )
                    .await
                }
            };
            if ready {
                return Ok(());
            }
            if let Some(status) = self.exited(&svc.container).await {
                return Err(ContainerError::Exited {
                    service: svc.h.name.clone(),
                    status,
                    tail: self.log_tail(&svc.container, 20).await,
                });
            }
            if started.elapsed() >= svc.h.ready_timeout {
                return Err(ContainerError::NotReady {
                    service: svc.h.name.clone(),
                    timeout: svc.h.ready_timeout,
                    probe,
                    tail: self.log_tail(&svc.container, 20).await,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `Some(status)` when the container is not running any more.
    async fn exited(&self, container: &str) -> Option<String> {
        let inspect = self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .ok()?;
        let state = inspect.state?;
        (!state.running.unwrap_or(false))
            .then(|| format!("exit code {}", state.exit_code.unwrap_or(-1)))
    }

    /// Runs a command in the container; true when it exits 0.
    async fn exec_ok(&self, container: &str, cmd: Vec<String>) -> bool {
        let Ok(exec) = self
            .docker
            .create_exec(
                container,
                CreateExecOptions {
                    cmd: Some(cmd),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
        else {
            return false;
        };
        if let Ok(StartExecResults::Attached { mut output, .. }) =
            self.docker.start_exec(&exec.id, None).await
        {
            let drain = async { while output.next().await.is_some() {} };
            let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        }
        matches!(
            self.docker.inspect_exec(&exec.id).await,
            Ok(i) if i.exit_code == Some(0)
        )
    }

    async fn logs(&self, container: &str, tail: Option<usize>) -> String {
        let mut stream = self.docker.logs(
            container,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                tail: tail.map_or_else(|| "all".to_owned(), |n| n.to_string()),
                ..Default::default()
            }),
        );
        let mut text = String::new();
        let collect = async {
            while let Some(Ok(chunk)) = stream.next().await {
                text.push_str(&chunk.to_string());
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), collect).await;
        text
    }

    async fn log_tail(&self, container: &str, n: usize) -> String {
        let text = self.logs(container, Some(n)).await;
        if text.trim().is_empty() {
            "    (the log is empty)".to_owned()
        } else {
            text.lines()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
    }

    async fn stop_container(&self, svc: &Svc, timeout: Duration) -> Result<StopReport, String> {
        let started = Instant::now();
        let was_running = self.exited(&svc.container).await.is_none();
        if svc.h.state() == ServiceState::Paused {
            let _ = self.docker.unpause_container(&svc.container).await;
        }
        self.docker
            .stop_container(
                &svc.container,
                Some(StopContainerOptions {
                    t: Some(timeout.as_secs().max(1) as i32),
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| e.to_string())?;
        svc.h.stopped();
        let code = self
            .docker
            .inspect_container(&svc.container, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|i| i.state)
            .and_then(|s| s.exit_code);
        let took = started.elapsed();
        Ok(if !was_running {
            StopReport {
                service: svc.h.name.clone(),
                graceful: false,
                status: format!("had already exited (exit code {})", code.unwrap_or(-1)),
                took: Duration::ZERO,
            }
        } else {
            StopReport {
                service: svc.h.name.clone(),
                graceful: code == Some(0),
                status: match code {
                    Some(137) => format!("did not stop within {timeout:?} after SIGTERM; killed"),
                    Some(c) => format!("exit status: {c}"),
                    None => "unknown exit status".to_owned(),
                },
                took,
            }
        })
    }

    async fn do_stop(&self, service: &str, timeout: Duration) -> Result<(), ControlError> {
        let svc = self.find(service)?;
        let _busy = svc.busy.lock().await;
        self.stop_container(svc, timeout)
            .await
            .map(|_| ())
            .map_err(|m| unsupported_err(service, "stop", m))
    }

    async fn do_start(&self, service: &str) -> Result<(), ControlError> {
        let svc = self.find(service)?;
        let _busy = svc.busy.lock().await;
        self.start_service(svc)
            .await
            .map_err(|e| unsupported_err(service, "start", e.to_string()))
    }

    async fn do_kill(&self, service: &str, signal: Signal) -> Result<(), ControlError> {
        match signal {
            Signal::Stop => return self.do_pause(service, true).await,
            Signal::Cont => return self.do_pause(service, false).await,
            _ => {}
        }
        let svc = self.find(service)?;
        let _busy = svc.busy.lock().await;
        self.docker
            .kill_container(
                &svc.container,
                Some(KillContainerOptions {
                    signal: signal.name().to_owned(),
                }),
            )
            .await
            .map_err(|e| unsupported_err(service, "kill", e.to_string()))?;
        if matches!(signal, Signal::Kill | Signal::Term) {
            let deadline = Instant::now() + svc.h.stop_timeout.max(Duration::from_secs(1));
            while self.exited(&svc.container).await.is_none() {
                if Instant::now() >= deadline {
                    return Err(unsupported_err(
                        service,
                        "kill",
                        format!("still running {:?} after {signal}", svc.h.stop_timeout),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            svc.h.stopped();
        }
        Ok(())
    }

    async fn do_pause(&self, service: &str, pause: bool) -> Result<(), ControlError> {
        let svc = self.find(service)?;
        let _busy = svc.busy.lock().await;
        let (action, result) = if pause {
            ("pause", self.docker.pause_container(&svc.container).await)
        } else {
            (
                "unpause",
                self.docker.unpause_container(&svc.container).await,
            )
        };
        result.map_err(|e| unsupported_err(service, action, e.to_string()))?;
        svc.h.set_state(if pause {
            ServiceState::Paused
        } else {
            ServiceState::Running
        });
        Ok(())
    }

    async fn do_network(&self, service: &str, connect: bool) -> Result<(), ControlError> {
        let svc = self.find(service)?;
        let _busy = svc.busy.lock().await;
        let result = if connect {
            self.docker
                .connect_network(
                    &self.network,
                    NetworkConnectRequest {
                        container: svc.container.clone(),
                        endpoint_config: Some(EndpointSettings {
                            aliases: Some(vec![svc.h.name.clone()]),
                            ..Default::default()
                        }),
                    },
                )
                .await
        } else {
            self.docker
                .disconnect_network(
                    &self.network,
                    NetworkDisconnectRequest {
                        container: svc.container.clone(),
                        force: Some(true),
                    },
                )
                .await
        };
        result.map_err(|e| {
            unsupported_err(
                service,
                if connect { "reconnect" } else { "disconnect" },
                e.to_string(),
            )
        })
    }

    async fn do_shutdown(&self) -> Vec<StopReport> {
        if self.shut.swap(true, Ordering::SeqCst) {
            return Vec::new();
        }
        let mut reports = Vec::new();
        for svc in self.services.iter().rev() {
            let _busy = svc.busy.lock().await;
            match self.stop_container(svc, svc.h.stop_timeout).await {
                Ok(r) => reports.push(r),
                Err(e) => reports.push(StopReport {
                    service: svc.h.name.clone(),
                    graceful: false,
                    status: format!("docker stop failed: {e}"),
                    took: Duration::ZERO,
                }),
            }
            let log = self.logs(&svc.container, None).await;
            let _ = std::fs::write(&svc.h.log, log);
        }
        if let Err(e) = reaper::remove_run(&self.docker, &self.run_id).await {
            reports.push(StopReport {
                service: "(stack)".to_owned(),
                graceful: false,
                status: format!("removing the run's containers, network and volumes failed: {e}"),
                took: Duration::ZERO,
            });
        }
        reports
    }
}

impl Drop for ContainerStack {
    /// Without a shutdown (an error path or a panic): remove everything of
    /// the run now, from a thread of its own (no async runtime is needed).
    fn drop(&mut self) {
        if self.shut.load(Ordering::SeqCst) {
            return;
        }
        let docker = self.docker.clone();
        let run_id = self.run_id.clone();
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                let _ = rt.block_on(async {
                    tokio::time::timeout(
                        Duration::from_secs(60),
                        reaper::remove_run(&docker, &run_id),
                    )
                    .await
                });
            }
        });
        let _ = cleanup.join();
    }
}

impl Stack for ContainerStack {
    fn runtime(&self) -> &'static str {
        RUNTIME
    }

    gauntlet_stack::stack_accessors!(services);

    fn data_dir(&self, service: &str) -> Option<PathBuf> {
        self.find(service).ok()?.data_dir.clone()
    }

    fn stop<'a>(
        &'a self,
        service: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.do_stop(service, timeout))
    }

    fn kill<'a>(
        &'a self,
        service: &'a str,
        signal: Signal,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.do_kill(service, signal))
    }

    fn pause<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.do_pause(service, true))
    }

    fn unpause<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.do_pause(service, false))
    }

    fn start<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.do_start(service))
    }

    fn restart<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            let timeout = self.find(service)?.h.stop_timeout;
            self.do_stop(service, timeout).await?;
            self.do_start(service).await
        })
    }

    fn disconnect<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.do_network(service, false))
    }

    fn reconnect<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.do_network(service, true))
    }

    fn shutdown(&self) -> BoxFuture<'_, Vec<StopReport>> {
        Box::pin(self.do_shutdown())
    }
}
