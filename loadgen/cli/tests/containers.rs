//! Container mode against the real Docker engine: images built here (and
//! cached), a scenario run with the fabric in a container, the control
//! surface (restart with a new host port while load keeps flowing, pause,
//! network disconnect), the PostgreSQL and Redis kinds, the reaper of runs
//! whose `loadgen` was SIGKILLed, and `loadgen clean`.
//!
//! Without a reachable Docker engine these tests FAIL and say so. They run
//! one at a time (they share the engine and `clean` removes everything).
//! The images are built from the release `fabric-node` and `actor-node`;
//! `ci/test.sh` builds them (`cargo build --release -p fabric --bin
//! fabric-node -p actors --bin actor-node`).

mod common;

use common::{assert_disk_filled, assert_exit, chaos_scenario, check_verdicts, results};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::text;
use gauntlet_containers::images::{self, BuildOptions};
use gauntlet_containers::stack::{BootSpec, ContainerStack};
use gauntlet_control::{ControlError, ServiceState, Stack};
use gauntlet_drivers as driver;
use gauntlet_engine::Operation as _;
use gauntlet_recorder::Outcome;
use gauntlet_scenario::ServiceKind;
use loadgen::plan::Plan;

static ENGINE: Mutex<()> = Mutex::new(());

/// Serializes the container tests and fails clearly without an engine.
fn engine() -> MutexGuard<'static, ()> {
    let guard = ENGINE.lock().unwrap_or_else(|p| p.into_inner());
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "no Docker engine is reachable: `docker version` says: {} — the container tests need a running Docker engine",
            text(&o.stderr).trim()
        ),
        Err(e) => panic!(
            "no Docker engine is reachable: cannot run `docker` ({e}) — the container tests need the docker command and a running engine"
        ),
    }
    guard
}

/// `target/release`, where the release fabric-node and actor-node the images ship are.
fn release_dir() -> PathBuf {
    let dir = common::bin_dir().join("../release");
    for binary in ["fabric-node", "actor-node"] {
        assert!(
            dir.join(binary).is_file(),
            "{}/{binary} is missing: build it with `cargo build --release -p fabric --bin fabric-node -p actors --bin actor-node` (ci/test.sh does)",
            dir.display()
        );
    }
    dir
}

fn loadgen(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .current_dir(cwd)
        .env("GAUNTLET_BIN_DIR", release_dir())
        .output()
        .expect("loadgen runs")
}

fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Names of the containers, networks and volumes labelled with `label`.
fn objects(label: &str) -> Vec<String> {
    let filter = format!("label={label}");
    let mut all = docker_lines(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]);
    all.extend(docker_lines(&[
        "network",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}}",
    ]));
    all.extend(docker_lines(&[
        "volume",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}}",
    ]));
    all
}

const SHORT: &str = r#"
name: short
seed: 3
stack:
  services:
    fabric: { kind: fabric, env: { STORAGE_FSYNC_POLICY: batch }, cpus: 1, memory: 256MiB }
workload:
  max_in_flight: 64
  phases:
    - { name: warmup, duration: 1s, rate: 100/s }
    - { name: steady, duration: 1s, rate: 200/s }
  operations:
    - { name: append, weight: 3, fabric.stream.append: { stream: test/short/events, payload: 64B, batch: 2 } }
    - { name: read, weight: 1, fabric.stream.read: { stream: test/short/events, from: latest-10, max: 10 } }
"#;

#[test]
fn images_build_once_and_the_second_build_is_a_no_op() {
    let _engine = engine();
    let dir = tempfile::tempdir().unwrap();
    let first = loadgen(&["images", "build"], dir.path());
    assert!(
        first.status.success(),
        "{}\n{}",
        text(&first.stdout),
        text(&first.stderr)
    );
    let second = loadgen(&["images", "build"], dir.path());
    assert!(second.status.success(), "{}", text(&second.stderr));
    let out = text(&second.stdout);
    assert!(out.contains("nothing to build"), "{out}");
    assert!(!out.contains("built "), "{out}");
    // The fabric image: non-root, a health check, labels, content-hash tag.
    let tag = out
        .lines()
        .find_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("gauntlet/fabric-node:"))
        })
        .expect("the fabric image is listed")
        .to_owned();
    let inspect = docker_lines(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}}@@{{json .Config.Healthcheck.Test}}@@{{index .Config.Labels \"org.gauntlet.kind\"}}@@{{index .Config.Labels \"org.gauntlet.content-hash\"}}",
        &tag,
    ]);
    let fields: Vec<&str> = inspect[0].split("@@").collect();
    assert_eq!(fields[0], "gauntlet");
    assert!(fields[1].contains("/ready"), "{}", fields[1]);
    assert_eq!(fields[2], "fabric");
    assert!(tag.ends_with(fields[3]), "{tag} vs {}", fields[3]);
}

#[test]
fn a_scenario_runs_with_the_fabric_in_a_container_and_leaves_nothing_behind() {
    let _engine = engine();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short.yaml"), SHORT).unwrap();
    let out = loadgen(
        &[
            "run",
            "short.yaml",
            "--runtime",
            "containers",
            "--quiet",
            "--out",
            "runs",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let run_dir = std::fs::canonicalize(dir.path().join("runs/latest")).unwrap();
    let results = results(&run_dir);
    assert_eq!(results.runtime, "containers");
    assert!(results.complete);
    let total: u64 = results.totals.iter().map(|o| o.count).sum();
    let errors: u64 = results.totals.iter().map(|o| o.errors).sum();
    assert!(total > 0);
    assert_eq!(errors, 0, "{}", text(&out.stdout));
    // The container's log was kept; the container, network and volume are gone.
    let log = std::fs::read_to_string(run_dir.join("logs/fabric.log")).unwrap();
    assert!(log.contains("listening on 0.0.0.0:8080"), "{log}");
    let run_id = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        objects(&format!("org.gauntlet.run={run_id}")),
        Vec::<String>::new()
    );
    // The scenario said nothing about containers: the resolved copy records the override.
    let resolved = std::fs::read_to_string(run_dir.join("scenario.yaml")).unwrap();
    assert!(resolved.contains("runtime: containers"), "{resolved}");
}

const STACK: &str = r#"
name: trio
stack:
  runtime: containers
  services:
    fabric: { kind: fabric, env: { STORAGE_FSYNC_POLICY: batch } }
    db: { kind: postgres }
    cache: { kind: redis, memory: 128MiB, cpus: 0.5 }
workload:
  phases:
    - { name: steady, duration: 1s, rate: 10/s }
  operations:
    - { name: append, fabric.stream.append: { stream: test/trio/events, payload: 64B } }
"#;

fn exec(container: &str, script: &str) -> Output {
    Command::new("docker")
        .args(["exec", container, "bash", "-c", script])
        .output()
        .expect("docker exec runs")
}

/// Keeps appending through the prepared operation until `stop`; counts
/// successes and failures.
fn drive(
    prepared: Arc<driver::Prepared>,
    client: Arc<gauntlet_engine::Connections>,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let outcome = tokio::time::timeout(
                Duration::from_secs(5),
                prepared.execute(&client, &mut driver::Chain::default()),
            )
            .await;
            match outcome {
                Ok(Outcome::Ok) => ok.fetch_add(1, Ordering::Relaxed),
                _ => failed.fetch_add(1, Ordering::Relaxed),
            };
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

#[test]
fn restart_maps_a_new_port_and_load_keeps_flowing_with_postgres_and_redis_beside() {
    let _engine = engine();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(restart_under_load());
}

async fn restart_under_load() {
    let scenario = gauntlet_scenario::load("trio.yaml", STACK, &[]).expect("scenario loads");
    let opts = BuildOptions {
        cache_dir: loadgen::bins::image_cache_dir(),
        binaries: vec![(ServiceKind::Fabric, release_dir().join("fabric-node"))],
        progress: false,
    };
    let images = tokio::task::spawn_blocking(move || images::build(&opts))
        .await
        .unwrap()
        .expect("images build")
        .images;
    let run_dir = tempfile::tempdir().unwrap();
    let run_id = format!("test-restart-{}", std::process::id());
    let stack = ContainerStack::boot(BootSpec {
        scenario: &scenario,
        run_id: &run_id,
        run_dir: run_dir.path(),
        images: &images,
        quiet: true,
    })
    .await
    .expect("the stack boots");
    let stack: Arc<dyn Stack> = Arc::new(stack);
    assert_eq!(stack.services(), ["cache", "db", "fabric"]);
    for service in ["cache", "db", "fabric"] {
        assert_eq!(stack.state(service).unwrap(), ServiceState::Running);
        assert!(stack.pid(service).is_some());
    }
    assert!(gauntlet_stack::probe::redis_pong(&stack.endpoint("cache").unwrap().addr()).await);
    let fabric = format!("gauntlet-{run_id}-fabric");
    // The scenario's resource limits are the container's.
    let limits = docker_lines(&[
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
        &format!("gauntlet-{run_id}-cache"),
    ]);
    assert_eq!(limits, [format!("{} 500000000", 128u64 * 1024 * 1024)]);
    // Services reach each other by name on the run's network.
    let pong = exec(
        &fabric,
        "exec 3<>/dev/tcp/cache/6379; printf 'PING\\r\\n' >&3; head -c 5 <&3",
    );
    assert_eq!(text(&pong.stdout), "+PONG", "{}", text(&pong.stderr));
    let pg = exec(&fabric, "exec 3<>/dev/tcp/db/5432 && echo open");
    assert_eq!(text(&pg.stdout).trim(), "open", "{}", text(&pg.stderr));

    // Load through the driver, whose base URL follows the endpoint.
    let plan = Plan::new(scenario.clone());
    let op = &plan.operations[0];
    let client = Arc::new(gauntlet_engine::Connections::default());
    let endpoint = stack.watch_endpoint("fabric").unwrap();
    let before = endpoint.borrow().clone();
    let target = driver::Target::new(endpoint.clone(), "");
    let targets = |_: &str| target.clone();
    driver::setup(&client.http, op, &targets).await.unwrap();
    let prepared = Arc::new(
        driver::prepare(op, &targets, 1, 0, &driver::Shared::default()).expect("prepared"),
    );
    let (stop, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let load = drive(
        prepared.clone(),
        client.clone(),
        stop.clone(),
        ok.clone(),
        failed.clone(),
    );
    let wait_for_ok = |n: u64| {
        let ok = ok.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while ok.load(Ordering::Relaxed) < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            ok.load(Ordering::Relaxed)
        }
    };
    assert!(wait_for_ok(20).await >= 20);

    stack.restart("fabric").await.expect("restart");
    let after = stack.endpoint("fabric").unwrap();
    assert_ne!(
        after.port, before.port,
        "a restarted container maps a new host port"
    );
    assert_eq!(
        *endpoint.borrow(),
        after,
        "the watch publishes the new endpoint"
    );
    let ok_at_restart = ok.load(Ordering::Relaxed);
    assert!(
        wait_for_ok(ok_at_restart + 20).await >= ok_at_restart + 20,
        "load keeps flowing on the new port"
    );

    // Pause: requests stall; unpause: they flow again.
    stack.pause("fabric").await.unwrap();
    assert_eq!(stack.state("fabric").unwrap(), ServiceState::Paused);
    let stalled = tokio::time::timeout(
        Duration::from_millis(500),
        prepared.execute(&client, &mut driver::Chain::default()),
    )
    .await;
    assert!(stalled.is_err(), "a paused fabric does not answer");
    stack.unpause("fabric").await.unwrap();
    assert!(matches!(
        prepared
            .execute(&client, &mut driver::Chain::default())
            .await,
        Outcome::Ok
    ));

    // Disconnect: the fabric cannot reach redis by name; reconnect: it can.
    stack.disconnect("fabric").await.unwrap();
    let cut = exec(
        &fabric,
        "timeout 2 bash -c 'exec 3<>/dev/tcp/cache/6379' && echo open",
    );
    assert_ne!(text(&cut.stdout).trim(), "open");
    stack.reconnect("fabric").await.unwrap();
    let back = exec(&fabric, "exec 3<>/dev/tcp/cache/6379 && echo open");
    assert_eq!(text(&back.stdout).trim(), "open", "{}", text(&back.stderr));

    // SIGKILL leaves it stopped until start.
    stack.kill("fabric", "KILL".parse().unwrap()).await.unwrap();
    assert_eq!(stack.state("fabric").unwrap(), ServiceState::Stopped);
    stack.start("fabric").await.unwrap();
    assert!(matches!(
        prepared
            .execute(&client, &mut driver::Chain::default())
            .await,
        Outcome::Ok
    ));
    assert!(matches!(
        stack.stop("nope", Duration::from_secs(1)).await,
        Err(ControlError::UnknownService(_))
    ));

    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let reports = stack.shutdown().await;
    assert_eq!(reports.len(), 3, "{reports:?}");
    assert!(reports.iter().all(|r| r.graceful), "{reports:?}");
    assert!(
        stack.shutdown().await.is_empty(),
        "a second shutdown finds nothing"
    );
    assert_eq!(
        objects(&format!("org.gauntlet.run={run_id}")),
        Vec::<String>::new()
    );
    let log = std::fs::read_to_string(run_dir.path().join("logs/db.log")).unwrap();
    assert!(log.contains("database system is ready"), "{log}");
}

const LONG: &str = r#"
name: long
stack:
  services:
    fabric: { kind: fabric }
workload:
  phases:
    - { name: steady, duration: 10m, rate: 20/s }
  operations:
    - { name: append, fabric.stream.append: { stream: test/long/events, payload: 64B } }
"#;

/// Starts a long container run, waits until its stack is ready, sends
/// `loadgen` the signal, waits for it to exit, and returns the run id and
/// the exit status.
fn signalled_run(dir: &Path, signal: i32) -> (String, std::process::ExitStatus) {
    std::fs::write(dir.join("long.yaml"), LONG).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "run",
            "long.yaml",
            "--runtime",
            "containers",
            "--quiet",
            "--out",
            "runs",
        ])
        .current_dir(dir)
        .env("GAUNTLET_BIN_DIR", release_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("ready at") => break,
            Ok(line) => seen.push(line),
            Err(_) if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("the run never got ready: {seen:?}");
            }
            Err(_) => {}
        }
    }
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
    let status = child.wait().unwrap();
    let run_dir = std::fs::canonicalize(dir.join("runs/latest")).unwrap();
    let run_id = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    (run_id, status)
}

fn killed_run(dir: &Path) -> String {
    signalled_run(dir, libc::SIGKILL).0
}

#[test]
fn sigterm_and_ctrl_c_stop_the_run_and_remove_its_containers() {
    let _engine = engine();
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let dir = tempfile::tempdir().unwrap();
        let (run_id, status) = signalled_run(dir.path(), signal);
        assert_eq!(status.code(), Some(3), "an interrupted run exits 3");
        assert_eq!(
            objects(&format!("org.gauntlet.run={run_id}")),
            Vec::<String>::new(),
            "signal {signal}"
        );
        let results = results(&dir.path().join("runs").join(&run_id));
        assert!(!results.complete);
    }
}

#[test]
fn a_service_that_fails_to_start_says_why_and_leaves_nothing_behind() {
    let _engine = engine();
    let base = docker_lines(&[
        "image",
        "ls",
        "gauntlet/base",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    assert!(
        !base.is_empty(),
        "the base image is built (the images test or ci/test.sh)"
    );
    let dir = tempfile::tempdir().unwrap();
    let scenario = SHORT.replace(
        "  services:\n",
        &format!(
            "  services:\n    broken: {{ image: \"{}\", command: [bash, -c, 'echo no such config >&2; exit 4'] }}\n",
            base[0]
        ),
    )
    .replace("{ stream: test/short", "{ service: fabric, stream: test/short");
    std::fs::write(dir.path().join("broken.yaml"), scenario).unwrap();
    let out = loadgen(
        &[
            "run",
            "broken.yaml",
            "--runtime",
            "containers",
            "--quiet",
            "--out",
            "runs",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("service `broken` exited before it was ready"),
        "{err}"
    );
    assert!(err.contains("no such config"), "{err}");
    let run_dir = std::fs::canonicalize(dir.path().join("runs/latest")).unwrap();
    let run_id = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        objects(&format!("org.gauntlet.run={run_id}")),
        Vec::<String>::new()
    );
}

#[test]
fn leftovers_of_a_sigkilled_run_are_reaped_by_the_next_run() {
    let _engine = engine();
    let dir = tempfile::tempdir().unwrap();
    let run_id = killed_run(dir.path());
    let label = format!("org.gauntlet.run={run_id}");
    let left = objects(&label);
    assert_eq!(
        left.len(),
        3,
        "container, network and volume are left: {left:?}"
    );

    std::fs::write(dir.path().join("short.yaml"), SHORT).unwrap();
    let out = loadgen(
        &[
            "run",
            "short.yaml",
            "--runtime",
            "containers",
            "--out",
            "runs",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("reaped leftovers of dead runs"), "{err}");
    assert!(err.contains(&run_id), "{err}");
    assert_eq!(objects(&label), Vec::<String>::new());
}

#[test]
fn clean_removes_every_gauntlet_object_and_says_what() {
    let _engine = engine();
    let dir = tempfile::tempdir().unwrap();
    let run_id = killed_run(dir.path());
    let out = loadgen(&["clean"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!("removed container gauntlet-{run_id}-fabric")),
        "{said}"
    );
    assert!(
        said.contains(&format!("removed network gauntlet-{run_id}")),
        "{said}"
    );
    assert!(
        said.contains(&format!("removed volume gauntlet-{run_id}-fabric-data")),
        "{said}"
    );
    assert_eq!(objects("org.gauntlet.managed"), Vec::<String>::new());
    let again = loadgen(&["clean"], dir.path());
    assert!(
        text(&again.stdout).contains("nothing to clean"),
        "{}",
        text(&again.stdout)
    );
}

#[test]
fn a_stack_dropped_without_shutdown_removes_everything() {
    // What an error return or a panic does: the stack goes out of scope.
    let _engine = engine();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run_id = format!("test-drop-{}", std::process::id());
    runtime.block_on(async {
        let scenario = gauntlet_scenario::load("short.yaml", SHORT, &[]).unwrap();
        let opts = BuildOptions {
            cache_dir: loadgen::bins::image_cache_dir(),
            binaries: vec![(ServiceKind::Fabric, release_dir().join("fabric-node"))],
            progress: false,
        };
        let images = tokio::task::spawn_blocking(move || images::build(&opts))
            .await
            .unwrap()
            .expect("images build")
            .images;
        let run_dir = tempfile::tempdir().unwrap();
        let stack = ContainerStack::boot(BootSpec {
            scenario: &scenario,
            run_id: &run_id,
            run_dir: run_dir.path(),
            images: &images,
            quiet: true,
        })
        .await
        .expect("the stack boots");
        assert_eq!(objects(&format!("org.gauntlet.run={run_id}")).len(), 3);
        drop(stack);
    });
    assert_eq!(
        objects(&format!("org.gauntlet.run={run_id}")),
        Vec::<String>::new()
    );
}

/// Runs a bundled chaos scenario shortened with `sets` in container mode;
/// asserts exit 0, that every check ran and passed, and that nothing of the
/// run is left in the engine. Returns the run directory (kept in `dir`).
fn chaos_run_in_containers(dir: &Path, scenario: &str, sets: &[&str]) -> PathBuf {
    run_in_containers(dir, &chaos_scenario(scenario), sets)
}

/// [`chaos_run_in_containers`] of any scenario file.
fn run_in_containers(dir: &Path, scenario: &Path, sets: &[&str]) -> PathBuf {
    let mut args = vec![
        "run",
        scenario.to_str().unwrap(),
        "--runtime",
        "containers",
        "--quiet",
        "--out",
        "runs",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = loadgen(&args, dir);
    assert_exit(&out, 0, "");
    let run_dir = std::fs::canonicalize(dir.join("runs/latest")).unwrap();
    assert_eq!(results(&run_dir).runtime, "containers");
    let checks = check_verdicts(&run_dir);
    assert!(!checks.is_empty());
    for (check, passed, evidence) in &checks {
        assert!(passed, "{check}: {evidence}");
    }
    let run_id = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        objects(&format!("org.gauntlet.run={run_id}")),
        Vec::<String>::new(),
        "the service, its `disk:` holder, the network and the volumes are gone"
    );
    run_dir
}

/// Issue 6: a chaos scenario with its checks, in containers — a SIGKILL of
/// the fabric's container, a restart on a new host port, and nothing
/// acknowledged lost.
#[test]
fn a_chaos_scenario_with_checks_passes_in_containers() {
    let _engine = engine();
    let dir = tempfile::tempdir().unwrap();
    let run = chaos_run_in_containers(
        dir.path(),
        "fabric-crash-restart-always.yaml",
        &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=8s",
            "faults.0.at=4s",
        ],
    );
    let checks = check_verdicts(&run);
    assert_eq!(checks.len(), 4, "{checks:?}");
    let faults =
        gauntlet_recorder::faults::parse(&std::fs::read(run.join("faults.json")).unwrap()).unwrap();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0].kind, "container.kill");
    assert!(faults[0].end_s.is_some(), "{faults:?}");
}

/// The actor node in containers: a handler panic through the node's fault
/// endpoint (reached on the container's mapped port), then a SIGKILL of
/// its container and a start on a new host port; the node's counters are
/// crash-safe on its volume, so the three actor checks pass.
#[test]
fn the_actor_chaos_scenarios_pass_in_containers() {
    let _engine = engine();
    let dir = tempfile::tempdir().unwrap();
    let panic = chaos_run_in_containers(
        dir.path(),
        "actors-panic.yaml",
        &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=8s",
            "faults.0.at=3s",
            "faults.0.count=2",
            "faults.1.at=5s",
        ],
    );
    let kill = chaos_run_in_containers(
        dir.path(),
        "actors-kill.yaml",
        &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=8s",
            "faults.0.at=4s",
        ],
    );
    let kinds = |run: &Path| -> Vec<String> {
        gauntlet_recorder::faults::parse(&std::fs::read(run.join("faults.json")).unwrap())
            .unwrap()
            .into_iter()
            .map(|f| f.kind)
            .collect()
    };
    assert_eq!(kinds(&panic), ["actor.panic", "actor.panic", "actor.panic"]);
    assert_eq!(kinds(&kill), ["container.kill"]);
    for run in [&panic, &kill] {
        let names: Vec<String> = check_verdicts(run).into_iter().map(|c| c.0).collect();
        assert_eq!(
            names,
            [
                "actors.no_acked_message_lost",
                "actors.no_silent_stall",
                "actors.restarts_bounded"
            ]
        );
    }
}

/// The disk-full scenario in containers: the fabric's 64 MiB tmpfs volume
/// fills until ENOSPC, appends fail meanwhile, the restarted fabric finds
/// its data (kept mounted by the holder container) and the checks pass.
#[test]
fn the_disk_full_scenario_reaches_enospc_in_containers() {
    let _engine = engine();
    let dir = tempfile::tempdir().unwrap();
    let run = chaos_run_in_containers(
        dir.path(),
        "fabric-disk-full.yaml",
        &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=8s",
            "faults.0.at=4s",
            "faults.0.for=2s",
            "faults.1.at=7s",
        ],
    );
    let faults =
        gauntlet_recorder::faults::parse(&std::fs::read(run.join("faults.json")).unwrap()).unwrap();
    assert_disk_filled(&faults[0], &results(&run));
}

/// Seed 003's production shape in containers (issue 15): PostgreSQL, Redis,
/// two `tracing-server` images and nginx from the base image on one
/// network; the load goes through nginx and across the replicas (Redis
/// pub/sub), every subscriber sees every committed event, nothing
/// acknowledged is lost, and nothing of the run is left behind.
#[test]
fn the_tracing_production_shape_runs_in_containers() {
    let _engine = engine();
    let dir = tempfile::tempdir().unwrap();
    let scenario =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/tracing/subscriptions.yaml");
    let run = run_in_containers(
        dir.path(),
        &scenario,
        &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.warmup.rate=20/s",
            "workload.phases.steady.duration=5s",
            "workload.phases.steady.rate=50/s",
        ],
    );
    let names: Vec<String> = check_verdicts(&run).into_iter().map(|c| c.0).collect();
    assert_eq!(
        names,
        [
            "tracing.subscribers_see_events",
            "tracing.no_acked_event_lost"
        ]
    );
    let r = results(&run);
    for op in ["record", "fanout_1to2", "fanout_2to1", "fanout_lb"] {
        let count = r
            .totals
            .iter()
            .find(|o| o.operation == op)
            .map_or(0, |o| o.count - o.errors);
        assert!(count > 0, "{op} succeeded at least once in containers");
    }
}
