//! Coordinated omission, demonstrated on the real fabric: a constant
//! 2,000 requests/s for 10 s, the fabric process frozen (SIGSTOP) for 1 s in
//! the middle. The open model keeps its schedule, so the 2,000 requests due
//! during the freeze are sent late — none is skipped — and their latency,
//! counted from their intended start, spreads evenly from 0 to 1 s: 10 % of
//! the run's requests, so p99 ≈ 900 ms and p99.9 ≈ 990 ms, whatever the
//! machine's speed (the figures come from the schedule). Service time, from
//! the actual send, stays small: at most `max_in_flight` requests were on
//! the wire during the freeze.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::bin_dir;
use gauntlet_recorder::RunResults;

const CO: &str = r#"
name: co-freeze
seed: 5
stack:
  services:
    fabric: { kind: fabric, env: { STORAGE_FSYNC_POLICY: interval, LOGGING_LEVEL: warn } }
workload:
  max_in_flight: 32
  timeout: 10s
  phases:
    - { name: steady, duration: 10s, rate: 2000/s }
  operations:
    - { name: append, fabric.stream.append: { stream: test/co/events, payload: 64B } }
"#;

/// The `fabric-node` process serving the run under `root` (its data
/// directory is in the run directory, so its command line names `root`).
fn fabric_pid(root: &Path) -> Option<i32> {
    let needle = root.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            comm.trim() == "fabric-node" && cmdline.contains(&needle)
        })
}

#[test]
fn a_frozen_fabric_shows_in_latency_and_the_backlog_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("co.yaml");
    std::fs::write(&scenario, CO).unwrap();
    let runs = dir.path().join("runs");
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", scenario.to_str().unwrap(), "--quiet", "--out"])
        .arg(&runs)
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
    while Instant::now() < deadline && !seen.iter().any(|l: &String| l.contains("ready at")) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    let pid = fabric_pid(&runs);
    let Some(pid) = pid.filter(|_| seen.iter().any(|l| l.contains("ready at"))) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the fabric never got ready: {seen:#?}");
    };
    // Mid-run: the run starts right after the stack is ready.
    std::thread::sleep(Duration::from_secs(4));
    // SAFETY: plain signals to a child process of ours (by pid).
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_secs(1));
    unsafe { libc::kill(pid, libc::SIGCONT) };

    let status = child.wait().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(status.success(), "{status}: {seen:#?} {rest:#?}");
    let results: RunResults =
        serde_json::from_slice(&std::fs::read(runs.join("latest/results.json")).unwrap()).unwrap();
    let e = &results.engine;
    let t = &results.totals[0];
    eprintln!(
        "CO: sent {} of {} scheduled, errors {}, latency p99 {} µs p99.9 {} µs, service p50 {} µs p99 {} µs",
        e.started,
        e.scheduled,
        t.errors,
        t.latency_us.p99,
        t.latency_us.p999,
        t.service_time_us.p50,
        t.service_time_us.p99
    );
    // The backlog is sent, not skipped.
    assert_eq!(e.scheduled, 20_000);
    assert_eq!(e.started, e.scheduled);
    let append = &results.totals[0];
    assert_eq!(append.count, 20_000, "{append:?}");
    assert_eq!(append.errors, 0, "{append:?}");
    // The requests due during the freeze waited for a free slot.
    assert!(e.late_in_flight_limit >= 1_500, "{e:?}");
    // Latency from the intended start: the analytic answer, generously bounded.
    let l = &append.latency_us;
    assert!((780_000..=1_050_000).contains(&l.p99), "p99 {} µs", l.p99);
    assert!(
        (900_000..=1_100_000).contains(&l.p999),
        "p99.9 {} µs",
        l.p999
    );
    // Service time from the actual send stays small.
    let s = &append.service_time_us;
    assert!(s.p99 < 250_000, "service p99 {} µs", s.p99);
    assert!(
        s.p99 * 3 < l.p99,
        "service p99 {} µs vs latency p99 {} µs",
        s.p99,
        l.p99
    );
}
