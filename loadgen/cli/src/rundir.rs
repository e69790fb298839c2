//! The run directory: created at the start, written as the run goes, so a
//! killed run still leaves `scenario.yaml`, `latency.hlog`, a partial
//! `results.json` and the services' logs behind.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// `target/gauntlet/runs`, relative to the working directory.
pub fn default_root() -> PathBuf {
    PathBuf::from("target").join("gauntlet").join("runs")
}

/// Creates `<root>/<scenario>-<UTC timestamp>/` (suffixed when it exists) and
/// points `<root>/latest` at it.
pub fn create(root: &Path, scenario: &str) -> io::Result<PathBuf> {
    fs::create_dir_all(root)?;
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let mut dir = root.join(format!("{scenario}-{stamp}"));
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = root.join(format!("{scenario}-{stamp}-{n}"));
    }
    fs::create_dir_all(dir.join("logs"))?;
    // Absolute, so services started in other directories find their paths.
    let dir = std::path::absolute(&dir)?;
    let latest = root.join("latest");
    let _ = fs::remove_file(&latest);
    if let Some(name) = dir.file_name() {
        // Relative, so the runs folder can be moved or archived whole.
        let _ = std::os::unix::fs::symlink(name, &latest);
    }
    Ok(dir)
}

pub use gauntlet_recorder::files::{write_atomic, write_json};
