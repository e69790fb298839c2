//! `loadgen images build`, `loadgen clean`, and the images a container run
//! needs (built on demand when missing or stale).

use std::path::PathBuf;

use gauntlet_containers::images::{self, BuildOptions, ImageSet};
use gauntlet_containers::{docker, reaper};
use gauntlet_scenario::{Scenario, ServiceKind};

use crate::{bins, exit};

/// The release binary of every bundled kind.
fn binaries(quiet: bool) -> Result<Vec<(ServiceKind, PathBuf)>, String> {
    ServiceKind::ALL
        .into_iter()
        .filter(|k| gauntlet_stack::kinds::is_bundled(*k))
        .map(|k| {
            bins::locate_release(k, quiet).map(|p| (k, p)).map_err(|e| {
                format!(
                    "image build step `locate the {} binary` failed: {e}",
                    gauntlet_stack::kinds::binary(k)
                )
            })
        })
        .collect()
}

fn options(quiet: bool) -> Result<BuildOptions, String> {
    Ok(BuildOptions {
        cache_dir: bins::image_cache_dir(),
        binaries: binaries(quiet)?,
        progress: !quiet,
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `loadgen images build`.
pub fn build_command(quiet: bool) -> i32 {
    let opts = match options(quiet) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::HARNESS;
        }
    };
    match images::build(&opts) {
        Ok(report) => {
            for step in &report.steps {
                println!(
                    "{} {} ({}, {:.1}s)",
                    if step.built {
                        "built     "
                    } else {
                        "up to date"
                    },
                    step.tag,
                    mib(step.size_bytes),
                    step.took.as_secs_f64()
                );
            }
            if !report.anything_built() {
                println!("nothing to build: every image is up to date");
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::HARNESS
        }
    }
}

/// The images of a container run, built first when missing or stale.
pub async fn ensure_images(_scenario: &Scenario, quiet: bool) -> Result<ImageSet, String> {
    tokio::task::spawn_blocking(move || {
        let opts = options(quiet)?;
        let planned = images::planned(&opts).map_err(|e| e.to_string())?;
        if images::all_present(&planned) {
            return Ok(planned);
        }
        if !quiet {
            eprintln!("images missing or stale: building them (`loadgen images build`)");
        }
        images::build(&opts)
            .map(|r| r.images)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("the image build task failed: {e}"))?
}

/// `loadgen clean`: removes every Gauntlet container, network and volume.
pub fn clean_command() -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::HARNESS;
        }
    };
    runtime.block_on(async {
        let docker = match docker::connect().await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::HARNESS;
            }
        };
        match reaper::clean(&docker).await {
            Ok(removed) => {
                for c in &removed.containers {
                    println!("removed container {c}");
                }
                for v in &removed.volumes {
                    println!("removed volume {v}");
                }
                for n in &removed.networks {
                    println!("removed network {n}");
                }
                if removed.is_empty() {
                    println!("nothing to clean: no Gauntlet containers, networks or volumes");
                } else {
                    println!("removed {}", removed.summary());
                }
                for e in &removed.errors {
                    eprintln!("error: could not remove {e}");
                }
                if removed.errors.is_empty() {
                    exit::OK
                } else {
                    exit::HARNESS
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::HARNESS
            }
        }
    })
}
