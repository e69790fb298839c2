//! End to end against the real fabric process: a short open-model run, its
//! run directory, durability of what it appended, and hygiene when the run
//! is interrupted, killed, or the service cannot start. Assertions are on
//! counts and files, never on timings.

mod common;

use common::{only_run_dir, results};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{bin_dir, fabric_node, loadgen, text};

/// Processes whose command line mentions `needle` (our run directory).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

fn wait_until_gone(needle: &str) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts loadgen in the background and waits (bounded) until it reports the stack ready.
fn start_until_ready(scenario: &Path, cwd: &Path) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--out",
            "runs",
            "--quiet",
        ])
        .current_dir(cwd)
        .env("GAUNTLET_BIN_DIR", bin_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("ready at") => return child,
            Ok(line) => seen.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("loadgen never reported the stack ready: {seen:#?}");
}

#[test]
fn a_short_run_drives_every_phase_and_writes_the_run_directory() {
    fabric_node();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("short.yaml");
    std::fs::write(&scenario, common::SHORT).unwrap();
    let out = loadgen(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--out",
            "runs",
            "--quiet",
        ],
        dir.path(),
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );

    let root = dir.path().join("runs");
    let run_dir = only_run_dir(&root);
    assert_eq!(
        std::fs::read_link(root.join("latest")).unwrap(),
        run_dir.file_name().unwrap()
    );
    let r = results(&run_dir);
    assert!(r.complete);
    assert_eq!(r.scenario, "short");

    // The schedule: 1 s × 100/s, a 1 s ramp 100→300/s (200), 1 s × 300/s.
    let expected = [("warmup", 100u64), ("ramp", 200), ("steady", 300)];
    for (phase, arrivals) in expected {
        let p = r.phase(phase).unwrap();
        let count: u64 = p.operations.iter().map(|o| o.count).sum();
        assert_eq!(count, arrivals, "phase {phase}");
        for op in &p.operations {
            assert_eq!(
                op.errors, 0,
                "{phase}/{}: {:?}",
                op.operation, op.errors_by_kind
            );
            if op.count > 0 {
                assert!(op.latency_us.p50 > 0 && op.latency_us.p50 <= op.latency_us.p99);
                assert!(op.latency_us.p99 <= op.latency_us.max);
            }
        }
    }
    assert_eq!(r.engine.scheduled, 600);
    assert_eq!(r.engine.started, 600);
    let appends = r.total("append").unwrap();
    let reads = r.total("read").unwrap();
    assert_eq!(appends.count + reads.count, 600);
    assert!(appends.count > reads.count, "weights 3:1");

    // latency.hlog: one tag per operation, every successful operation in it.
    let hlog = std::fs::read(run_dir.join("latency.hlog")).unwrap();
    let intervals = gauntlet_recorder::hlog::read(&hlog);
    let logged = |tag: &str| -> u64 {
        intervals
            .iter()
            .filter(|i| i.tag.as_deref() == Some(tag))
            .map(|i| i.histogram.len())
            .sum()
    };
    assert_eq!(logged("append"), appends.count);
    assert_eq!(logged("read"), reads.count);

    // The resolved scenario loads again to the same scenario.
    let resolved = gauntlet_scenario::load_file(&run_dir.join("scenario.yaml"), &[]).unwrap();
    assert_eq!(
        resolved,
        gauntlet_scenario::load("short.yaml", common::SHORT, &[]).unwrap()
    );
    assert!(
        std::fs::metadata(run_dir.join("logs/fabric.log"))
            .unwrap()
            .len()
            > 0
    );
    let summary = std::fs::read_to_string(run_dir.join("summary.txt")).unwrap();
    assert!(
        summary
            .lines()
            .any(|l| l.starts_with("steady") && l.contains("append"))
    );
    assert!(stdout.contains("p99.9"));
    assert!(
        processes_mentioning(&run_dir.display().to_string()).is_empty(),
        "the fabric was stopped"
    );

    // Nothing acknowledged was lost: a fabric restarted on the run's data
    // directory holds every appended event (batches of 2).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut node = Command::new(fabric_node())
        .args(["--http-addr", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(run_dir.join("data/fabric"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let latest = fetch_latest(port, "test/short/events");
    let _ = node.kill();
    let _ = node.wait();
    assert_eq!(latest, Some(appends.count as i64 * 2 - 1));
}

/// `GET …/offsets/latest` once the node is ready (bounded wait), over a raw socket.
fn fetch_latest(port: u16, stream: &str) -> Option<i64> {
    use std::io::{Read, Write};
    let get = |path: &str| -> Option<(u16, String)> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let status = buf.split(' ').nth(1)?.parse().ok()?;
        let body = buf.split("\r\n\r\n").nth(1)?.to_owned();
        Some((status, body))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some((200, _)) = get("/ready") {
            let (status, body) = get(&format!("/api/v1/streams/{stream}/offsets/latest"))?;
            assert_eq!(status, 200, "{body}");
            let json: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
            return json["offset"].as_i64();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

const LONG: &str = r#"
name: long
stack:
  services:
    fabric: { kind: fabric }
workload:
  phases:
    - { name: steady, duration: 120s, rate: 50/s }
  operations:
    - { name: append, fabric.stream.append: { stream: test/long/events } }
"#;

/// Starts the long scenario and lets at least one interval close.
fn start_long_run() -> (tempfile::TempDir, std::process::Child, PathBuf) {
    fabric_node();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("long.yaml");
    std::fs::write(&scenario, LONG).unwrap();
    let child = start_until_ready(&scenario, dir.path());
    let run_dir = only_run_dir(&dir.path().join("runs"));
    std::thread::sleep(Duration::from_millis(1500));
    (dir, child, run_dir)
}

#[test]
fn ctrl_c_stops_the_stack_and_leaves_a_readable_run_directory() {
    let (_dir, child, run_dir) = start_long_run();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "an interrupted run exits 3");
    let r = results(&run_dir);
    assert!(!r.complete);
    assert!(r.interrupted.is_some());
    assert!(r.engine.started > 0 && r.engine.started < r.engine.scheduled);
    assert!(
        !gauntlet_recorder::hlog::read(&std::fs::read(run_dir.join("latency.hlog")).unwrap())
            .is_empty()
    );
    assert!(
        wait_until_gone(&run_dir.display().to_string()).is_empty(),
        "no service outlives the run"
    );
}

#[test]
fn a_killed_loadgen_takes_its_services_with_it() {
    let (_dir, mut child, run_dir) = start_long_run();
    let needle = run_dir.display().to_string();
    assert!(!processes_mentioning(&needle).is_empty(), "the fabric runs");
    child.kill().unwrap(); // SIGKILL: no handler runs
    let _ = child.wait();
    assert!(
        wait_until_gone(&needle).is_empty(),
        "the fabric died with loadgen"
    );
    // What was written before the kill is still readable.
    assert!(run_dir.join("scenario.yaml").is_file());
    assert!(
        !gauntlet_recorder::hlog::read(&std::fs::read(run_dir.join("latency.hlog")).unwrap())
            .is_empty()
    );
}

/// A panic in a stage, with the stack, the recorder and the collectors
/// running: the guard still stops the stack gracefully (the fabric logs its
/// drain and stop, which a SIGKILL from a dying loadgen would not let it
/// do), and the run ends with exit 3 and a readable run directory.
#[test]
fn a_panic_in_a_stage_releases_the_stack_gracefully() {
    fabric_node();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("short.yaml");
    std::fs::write(&scenario, common::SHORT).unwrap();
    let out = common::loadgen_with_env(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--out",
            "runs",
            "--quiet",
        ],
        dir.path(),
        &[("GAUNTLET_TEST_PANIC", "drive_load")],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("panicked"), "{stderr}");
    let run_dir = only_run_dir(&dir.path().join("runs"));
    assert!(run_dir.join("scenario.yaml").is_file());
    let log = std::fs::read_to_string(run_dir.join("logs/fabric.log")).unwrap();
    assert!(
        log.contains("draining requests") && log.contains("stopped"),
        "the fabric was not stopped gracefully:\n{log}"
    );
    assert!(processes_mentioning(&run_dir.display().to_string()).is_empty());
}

/// Runs a scenario whose only service is `thing`, given as a YAML flow mapping.
fn run_with_service(thing: &str) -> (tempfile::TempDir, String, Option<i32>) {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("thing.yaml");
    let yaml = format!(
        "name: thing\nstack:\n  services:\n    thing: {thing}\nworkload:\n  phases: [ {{ name: steady, duration: 1s, rate: 10/s }} ]\n  operations: [ {{ name: append, fabric.stream.append: {{ stream: a/b/c }} }} ]\n"
    );
    std::fs::write(&scenario, yaml).unwrap();
    let out = loadgen(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--out",
            "runs",
            "--quiet",
        ],
        dir.path(),
    );
    (dir, text(&out.stderr), out.status.code())
}

#[test]
fn a_service_that_cannot_start_fails_with_its_log_tail_and_exit_3() {
    let (_dir, err, code) = run_with_service(
        r#"{ command: [sh, -c, "echo 'cannot open the data directory' >&2; exit 3"], ready_timeout: 10s }"#,
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("service `thing` exited before it was ready"),
        "{err}"
    );
    assert!(err.contains("cannot open the data directory"), "{err}");
}

#[test]
fn a_service_that_never_gets_ready_times_out_with_a_clear_error() {
    let (dir, err, code) = run_with_service(
        r#"{ command: [bash, -c, "echo still starting; exec -a gauntlet-test-{data_dir} sleep 60"], ready_timeout: 1s, stop_timeout: 2s }"#,
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("was not ready within 1s"), "{err}");
    assert!(err.contains("still starting"), "{err}");
    let run_dir = only_run_dir(&dir.path().join("runs"));
    assert!(wait_until_gone(&run_dir.display().to_string()).is_empty());
}
