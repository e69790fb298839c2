//! `loadgen baseline`, `loadgen gate` and `loadgen ab`: the release gate's
//! commands. The statistics live in `gauntlet-gate`; this module reads the
//! arguments, runs what `ab` needs, writes the outputs and maps outcomes to
//! exit codes (0 pass, 1 regression or failed SLO, 2 bad input, 3 harness).

use std::path::{Path, PathBuf};
use std::process::Command;

use gauntlet_gate::{Baseline, GateError, Verdict, output};
use gauntlet_scenario::Profile;
use tokio_util::sync::CancellationToken;

use crate::exit;
use crate::run::{self, RunError, RunOptions, Source};

fn fail(e: &GateError) -> i32 {
    eprintln!("error: {e}");
    match e {
        GateError::Input(_) | GateError::Mismatch(_) => exit::USAGE,
        GateError::Io(_) => exit::HARNESS,
    }
}

fn load_profile(path: Option<&Path>) -> Result<Option<Profile>, i32> {
    let Some(path) = path else { return Ok(None) };
    gauntlet_scenario::load_profile_file(path)
        .map(Some)
        .map_err(|diags| {
            for d in &diags {
                eprint!("{d}");
            }
            exit::USAGE
        })
}

/// Prints the verdict and returns its exit code.
fn report(v: &Verdict, out: &Path) -> i32 {
    print!("{}", output::summary_markdown(v));
    println!(
        "\nverdict.json, junit.xml and summary.md written to {}",
        out.display()
    );
    if v.passed { exit::OK } else { exit::FAILED }
}

/// `loadgen baseline RUN_DIR... --out FILE [--phase NAME...]`
pub fn baseline(dirs: &[PathBuf], out: &Path, phases: &[String]) -> i32 {
    let phases = if phases.is_empty() {
        match dirs.first().map(|d| gauntlet_gate::run_scenario(d)) {
            Some(Ok(s)) => s.gate.map(|g| g.phases).unwrap_or_default(),
            Some(Err(e)) => return fail(&e),
            None => Vec::new(),
        }
    } else {
        phases.to_vec()
    };
    let samples = match gauntlet_gate::read_runs(dirs, &phases) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let baseline = Baseline::from_samples(&samples);
    if let Err(e) = baseline.write(out) {
        return fail(&e);
    }
    let intervals: usize = baseline.intervals.values().map(Vec::len).sum();
    println!(
        "baseline of `{}` written to {}: {} run(s), phases [{}], {intervals} per-second samples",
        baseline.scenario,
        out.display(),
        baseline.runs.len(),
        baseline.phases.join(", ")
    );
    exit::OK
}

/// `loadgen gate RUN_DIR... --baseline FILE [--profile FILE] [--out DIR]`
pub fn gate(dirs: &[PathBuf], baseline: &Path, profile: Option<&Path>, out: Option<&Path>) -> i32 {
    let profile = match load_profile(profile) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let baseline = match Baseline::read(baseline) {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    let verdict = match gauntlet_gate::gate(dirs, Some(&baseline), profile.as_ref()) {
        Ok(v) => v,
        Err(e) => return fail(&e),
    };
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dirs[0].clone());
    if let Err(e) = output::write_all(&verdict, &out) {
        return fail(&e);
    }
    report(&verdict, &out)
}

/// Builds the system under test at a git revision into its own target directory.
fn build_revision(rev: &str, work: &Path, label: &str) -> Result<PathBuf, String> {
    let tree = work.join(format!("tree-{label}"));
    let target = work.join(format!("target-{label}"));
    let status = Command::new("git")
        .args(["worktree", "add", "--detach", "--force"])
        .arg(&tree)
        .arg(rev)
        .status()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`git worktree add {} {rev}` failed",
            tree.display()
        ));
    }
    eprintln!("building fabric-node at {rev} ({label})…");
    let built = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(&tree)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "fabric",
            "--bin",
            "fabric-node",
            "--target-dir",
        ])
        .arg(&target)
        .status();
    let _ = Command::new("git")
        .args(["worktree", "remove", "--force"])
        .arg(&tree)
        .status();
    match built {
        Ok(s) if s.success() => Ok(target.join("release")),
        Ok(_) => Err(format!("building fabric-node at {rev} failed")),
        Err(e) => Err(format!("cannot run cargo: {e}")),
    }
}

/// Where the two builds of `ab` come from.
pub enum Builds {
    Dirs {
        baseline: PathBuf,
        candidate: PathBuf,
    },
    Revisions {
        baseline: String,
        candidate: String,
    },
}

/// `loadgen ab SCENARIO (--baseline-bin DIR --candidate-bin DIR | --baseline-rev REV --candidate-rev REV) [--rounds N]`
///
/// Runs the two builds alternately, A B A B …, so that drift of the machine
/// affects both, then gates the B runs against the A runs.
pub fn ab(
    scenario: &Path,
    builds: Builds,
    rounds: usize,
    overrides: &[String],
    candidate_overrides: &[String],
    out: Option<&Path>,
    profile: Option<&Path>,
) -> i32 {
    let profile = match load_profile(profile) {
        Ok(p) => p,
        Err(code) => return code,
    };
    // Validate before building or running anything.
    let candidate: Vec<String> = overrides
        .iter()
        .chain(candidate_overrides)
        .cloned()
        .collect();
    let parsed = match gauntlet_scenario::load_file(scenario, overrides)
        .and_then(|s| gauntlet_scenario::load_file(scenario, &candidate).map(|_| s))
    {
        Ok(s) => s,
        Err(diags) => {
            for d in &diags {
                eprint!("{d}");
            }
            return exit::USAGE;
        }
    };
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let root = out.map(Path::to_path_buf).unwrap_or_else(|| {
        crate::rundir::default_root().join(format!("ab-{}-{stamp}", parsed.name))
    });
    if let Err(e) = std::fs::create_dir_all(&root) {
        eprintln!("error: {}: {e}", root.display());
        return exit::HARNESS;
    }
    let root = std::path::absolute(&root).unwrap_or(root);
    let (bin_a, bin_b) = match builds {
        Builds::Dirs {
            baseline,
            candidate,
        } => (baseline, candidate),
        Builds::Revisions {
            baseline,
            candidate,
        } => {
            let built = build_revision(&baseline, &root, "a")
                .and_then(|a| Ok((a, build_revision(&candidate, &root, "b")?)));
            match built {
                Ok(pair) => pair,
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::HARNESS;
                }
            }
        }
    };
    for (label, dir) in [("baseline", &bin_a), ("candidate", &bin_b)] {
        if !dir.join("fabric-node").is_file() {
            eprintln!(
                "error: the {label} build directory {} has no fabric-node (hint: pass the directory holding the binaries, e.g. target/release)",
                dir.display()
            );
            return exit::USAGE;
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::HARNESS;
        }
    };
    let cancel = CancellationToken::new();
    let mut a_runs = Vec::new();
    let mut b_runs = Vec::new();
    for round in 1..=rounds {
        for (label, bin, runs, sets) in [
            ("A", &bin_a, &mut a_runs, overrides),
            ("B", &bin_b, &mut b_runs, &candidate[..]),
        ] {
            eprintln!("ab: round {round}/{rounds}, build {label}");
            let options = RunOptions {
                source: Source::File(scenario.to_path_buf()),
                overrides: sets.to_vec(),
                out: Some(root.join(format!("{label}{round}"))),
                quiet: true,
                bin_dir: Some(bin.clone()),
            };
            match runtime.block_on(run::run(options, cancel.clone())) {
                Ok(outcome) => {
                    if let Some(f) = outcome.failures.first() {
                        eprintln!("error: run {label}{round}: {f}");
                        return exit::HARNESS;
                    }
                    runs.push(outcome.run_dir);
                }
                Err(RunError::Invalid(_)) => return exit::USAGE,
                Err(RunError::Harness(e)) => {
                    eprintln!("error: run {label}{round}: {e}");
                    return exit::HARNESS;
                }
            }
        }
    }
    let verdict = (|| {
        let base_scenario = gauntlet_gate::run_scenario(&a_runs[0])?;
        let (_, spec) = gauntlet_gate::criteria(&base_scenario, profile.as_ref());
        let baseline = Baseline::from_samples(&gauntlet_gate::read_runs(&a_runs, &spec.phases)?);
        baseline.write(&root.join("baseline.json"))?;
        gauntlet_gate::gate(&b_runs, Some(&baseline), profile.as_ref())
    })();
    match verdict {
        Ok(v) => match output::write_all(&v, &root) {
            Ok(()) => report(&v, &root),
            Err(e) => fail(&e),
        },
        Err(e) => fail(&e),
    }
}
