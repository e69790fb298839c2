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

/// `loadgen ARGS` with the bundled binaries taken from the build directory.
pub fn loadgen(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .current_dir(cwd)
        .env("GAUNTLET_BIN_DIR", bin_dir())
        .output()
        .expect("loadgen runs")
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
