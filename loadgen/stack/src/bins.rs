//! Finding the bundled services' binaries (`fabric-node`, …).
//!
//! In order: `GAUNTLET_BIN_DIR`; inside this workspace, `cargo build` of the
//! binary with loadgen's own profile (cargo decides whether it is stale);
//! next to the `loadgen` executable; then `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

use gauntlet_scenario::ServiceKind;

#[derive(Debug, thiserror::Error)]
pub enum BinError {
    #[error("`{binary}` is not in the binaries directory {dir} (GAUNTLET_BIN_DIR or --*-bin)")]
    NotInBinDir { binary: String, dir: String },
    #[error("building `{binary}` failed:\n{output}")]
    BuildFailed { binary: String, output: String },
    #[error("cannot find `{binary}` next to loadgen or on PATH")]
    NotFound { binary: String },
}

/// The cargo package that ships a kind (see [`crate::kinds`]).
fn package(kind: ServiceKind) -> &'static str {
    crate::kinds::spec(kind).program.package()
}

/// The workspace this loadgen was built from, when it is still on disk.
fn workspace_root() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.parent()?;
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).ok()?;
    manifest.contains("[workspace]").then(|| root.to_path_buf())
}

/// How to find bundled binaries for one run.
#[derive(Debug, Clone, Default)]
pub struct Locator {
    /// Take every bundled binary from this directory (`loadgen ab`'s builds);
    /// otherwise `GAUNTLET_BIN_DIR`, then the search described above.
    pub dir: Option<PathBuf>,
    /// No build chatter.
    pub quiet: bool,
}

/// The release binary of a bundled kind, for its image: from
/// `GAUNTLET_BIN_DIR` when set; inside this workspace `cargo build
/// --release` (cargo decides whether it is stale); else as [`locate`].
pub fn locate_release(kind: ServiceKind, quiet: bool) -> Result<PathBuf, BinError> {
    if std::env::var_os("GAUNTLET_BIN_DIR").is_none()
        && let Some(root) = workspace_root()
    {
        let binary = crate::kinds::spec(kind).program.binary();
        if !quiet {
            eprintln!("building {binary} (release) for its image…");
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(&root)
            .args([
                "build",
                "--quiet",
                "--release",
                "-p",
                package(kind),
                "--bin",
                binary,
            ])
            .arg("--target-dir")
            .arg(&target)
            .output()
            .map_err(|e| BinError::BuildFailed {
                binary: binary.to_owned(),
                output: format!("cannot run cargo: {e}"),
            })?;
        if !output.status.success() {
            return Err(BinError::BuildFailed {
                binary: binary.to_owned(),
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let built = target.join("release").join(binary);
        if built.is_file() {
            return Ok(built);
        }
    }
    locate(kind, &Locator::default())
}

/// `target/gauntlet/images` of this workspace (where the base root
/// filesystem tarball is cached), else of the working directory;
/// `GAUNTLET_IMAGE_CACHE` overrides both.
pub fn image_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GAUNTLET_IMAGE_CACHE") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| workspace_root().map(|r| r.join("target")))
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("gauntlet").join("images")
}

/// Locates (building when needed) the binary of a bundled service kind.
pub fn locate(kind: ServiceKind, how: &Locator) -> Result<PathBuf, BinError> {
    let binary = crate::kinds::spec(kind).program.binary();
    let quiet = how.quiet;
    if let Some(dir) = how
        .dir
        .clone()
        .map(std::ffi::OsString::from)
        .or_else(|| std::env::var_os("GAUNTLET_BIN_DIR"))
    {
        let path = Path::new(&dir).join(binary);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(BinError::NotInBinDir {
                binary: binary.to_owned(),
                dir: Path::new(&dir).display().to_string(),
            })
        };
    }
    let exe = std::env::current_exe().ok();
    let exe_dir = exe.as_deref().and_then(Path::parent);
    // target/<profile>/loadgen: build the service into the same directory.
    if let (Some(root), Some(dir)) = (workspace_root(), exe_dir)
        && let (Some(profile), Some(target)) = (dir.file_name(), dir.parent())
        && profile != "deps"
    {
        if !quiet {
            eprintln!("building {binary} ({})…", profile.to_string_lossy());
        }
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.current_dir(&root)
            .args([
                "build",
                "--quiet",
                "-p",
                package(kind),
                "--bin",
                binary,
                "--target-dir",
            ])
            .arg(target);
        if profile == "release" {
            cmd.arg("--release");
        } else if profile != "debug" {
            cmd.arg("--profile").arg(profile);
        }
        let output = cmd.output().map_err(|e| BinError::BuildFailed {
            binary: binary.to_owned(),
            output: format!("cannot run cargo: {e}"),
        })?;
        if !output.status.success() {
            return Err(BinError::BuildFailed {
                binary: binary.to_owned(),
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let built = dir.join(binary);
        if built.is_file() {
            return Ok(built);
        }
    }
    if let Some(dir) = exe_dir {
        for candidate in [dir.join(binary), dir.join("..").join(binary)] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
        .ok_or_else(|| BinError::NotFound {
            binary: binary.to_owned(),
        })
}
