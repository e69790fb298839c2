//! Helpers shared by loadgen's integration tests: the built binaries and
//! short scenarios. Everything targets loopback; every wait is bounded.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `target/<profile>`, where cargo put loadgen and the workspace's other binaries.
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_loadgen"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn fabric_node() -> PathBuf {
    let path = bin_dir().join("fabric-node");
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` so the fabric is built",
        path.display()
    );
    path
}

pub fn actor_node() -> PathBuf {
    let path = bin_dir().join("actor-node");
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` so the actor node is built",
        path.display()
    );
    path
}

pub fn tracing_server() -> PathBuf {
    let path = bin_dir().join("tracing-server");
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` so the tracing server is built",
        path.display()
    );
    path
}

pub fn reflow_node() -> PathBuf {
    let path = bin_dir().join("reflow-node");
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` so the Reflow node is built",
        path.display()
    );
    path
}

/// A bundled scenario of `scenarios/perf/`, by file name.
pub fn perf_scenario(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios/perf")
        .join(file)
}

/// `loadgen ARGS` with the bundled binaries taken from the build directory.
pub fn loadgen(args: &[&str], cwd: &Path) -> Output {
    loadgen_with_env(args, cwd, &[])
}

/// [`loadgen`] with extra environment variables.
pub fn loadgen_with_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .current_dir(cwd)
        .env("GAUNTLET_BIN_DIR", bin_dir())
        .envs(env.iter().copied())
        .output()
        .expect("loadgen runs")
}

/// `loadgen run SCENARIO --quiet --out OUT` in the background (output
/// discarded), for the tests that signal or kill it mid-run.
pub fn spawn_run(scenario: &Path, out: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", scenario.to_str().unwrap(), "--quiet", "--out"])
        .arg(out)
        .current_dir(out)
        .env("GAUNTLET_BIN_DIR", bin_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("loadgen starts")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A short three-phase scenario: 1 s at 100/s, 1 s ramp 100→300/s, 1 s at 300/s.
pub const SHORT: &str = r#"
name: short
seed: 3
stack:
  services:
    fabric: { kind: fabric, env: { STORAGE_FSYNC_POLICY: batch } }
workload:
  max_in_flight: 64
  phases:
    - { name: warmup, duration: 1s, rate: 100/s }
    - { name: ramp, duration: 1s, rate: { from: 100/s, to: 300/s } }
    - { name: steady, duration: 1s, rate: 300/s }
  operations:
    - { name: append, weight: 3, fabric.stream.append: { stream: test/short/events, payload: 64B, batch: 2 } }
    - { name: read, weight: 1, fabric.stream.read: { stream: test/short/events, from: latest-10, max: 10 } }
"#;

/// The `results.json` of a run directory.
pub fn results(run_dir: &Path) -> gauntlet_recorder::RunResults {
    let bytes = std::fs::read(run_dir.join("results.json")).expect("results.json");
    serde_json::from_slice(&bytes).expect("results.json parses")
}

/// The one run directory under `root` (the `latest` link aside).
pub fn only_run_dir(root: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.is_symlink())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

/// A bundled scenario of `scenarios/chaos/`, by file name.
pub fn chaos_scenario(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios/chaos")
        .join(file)
}

/// `loadgen run` of `scenario` with `--set`s into a fresh directory: the
/// output and the run directory's parent (kept alive by the returned temp dir).
pub fn run_scenario(scenario: &Path, sets: &[&str]) -> (Output, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let mut args = vec![
        "run",
        scenario.to_str().unwrap(),
        "--quiet",
        "--out",
        out.path().to_str().unwrap(),
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    let o = loadgen(&args, out.path());
    (o, out)
}

/// Asserts that `loadgen` exited with `code`, showing its output after
/// `context` when it did not.
pub fn assert_exit(o: &Output, code: i32, context: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "{context}{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

/// `verdict.json`'s check verdicts of a run: (name, passed, evidence).
pub fn check_verdicts(run: &Path) -> Vec<(String, bool, String)> {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("verdict.json")).unwrap()).unwrap();
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["passed"].as_bool().unwrap(),
                c["evidence"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Processes whose mount namespace has a mount on `dir` (the `disk:`
/// tmpfs exists only in its holder's namespace, so /proc/self/mounts
/// would never show it).
pub fn mounts_on(dir: &Path) -> Vec<String> {
    let needle = format!(" {} ", dir.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            std::fs::read_to_string(e.path().join("mountinfo"))
                .is_ok_and(|m| m.lines().any(|l| l.contains(&needle)))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Errors of `operation` in the intervals overlapping `[from, to)`.
pub fn errors_between(
    r: &gauntlet_recorder::RunResults,
    operation: &str,
    from: f64,
    to: f64,
) -> u64 {
    r.intervals
        .iter()
        .filter(|i| i.t_s + 1.0 > from && i.t_s < to)
        .flat_map(|i| i.operations.iter().filter(|o| o.operation == operation))
        .map(|o| o.errors)
        .sum()
}

/// The fill fault of a 64 MiB `disk:` really filled it: the fill stopped
/// at ENOSPC within the disk's size, and appends failed while it was full.
pub fn assert_disk_filled(
    fill: &gauntlet_recorder::faults::Fault,
    r: &gauntlet_recorder::RunResults,
) {
    assert_eq!(fill.kind, "resource.disk_full");
    assert_eq!(
        fill.params["disk_full_reached"],
        serde_json::Value::Bool(true),
        "{fill:?}"
    );
    let written = fill.params["written_bytes"].as_u64().unwrap();
    assert!(
        written > 0 && written <= 64 << 20,
        "{written} bytes written on a 64 MiB disk"
    );
    let during = errors_between(r, "append", fill.start_s, fill.end_s.unwrap());
    assert!(during > 0, "appends fail while the disk is full: {fill:?}");
}

/// A scenario from its text; every problem in the panic message.
pub fn scenario_from(file: &str, text: &str) -> gauntlet_scenario::Scenario {
    gauntlet_scenario::load(file, text, &[]).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// One HTTP/1.1 request on a connection of its own (closed after it):
/// the status and the body, or `None` when no answer came in 10 s.
pub async fn http(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((status, body))
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
}
