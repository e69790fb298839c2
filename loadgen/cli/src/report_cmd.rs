//! `loadgen report RUN_DIR` and `loadgen compare RUN_A RUN_B`: the HTML
//! report of a run directory, rendered from its files alone (so it works for
//! a run that was killed), and one report putting two runs side by side.
//! The run itself writes its report through [`write_run_report`].

use std::path::{Path, PathBuf};

use gauntlet_reports::{LoadError, RenderOptions, RunData};

use crate::{exit, rundir};

/// The report's file name inside a run directory.
pub const REPORT_FILE: &str = "report.html";

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The run directory is missing or unreadable: bad input (exit 2).
    #[error("{error}\n  hint: {hint}")]
    Input { error: LoadError, hint: String },
    /// Writing the report failed (exit 3).
    #[error("cannot write {}: {error}", .path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl ReportError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ReportError::Input { .. } => exit::USAGE,
            ReportError::Write { .. } => exit::HARNESS,
        }
    }
}

fn hint_for(e: &LoadError) -> String {
    match e {
        LoadError::Missing(_) => {
            "pass a run directory written by `loadgen run`, e.g. target/gauntlet/runs/latest"
                .to_owned()
        }
        LoadError::NoResults(_) => "a run directory holds results.json from its first second on; a run stopped before that has nothing to report".to_owned(),
        LoadError::Io { .. } => "check the directory's permissions".to_owned(),
        LoadError::BadResults { .. } => {
            "results.json is written by `loadgen run`; it may have been edited or truncated"
                .to_owned()
        }
    }
}

/// Reads a run directory (or a `results.json`-shaped file) and the p99
/// objectives of its resolved scenario, when it states any.
pub fn load(dir: &Path) -> Result<RunData, ReportError> {
    let mut run = RunData::load(dir).map_err(|error| ReportError::Input {
        hint: hint_for(&error),
        error,
    })?;
    if dir.is_dir()
        && let Ok(scenario) = gauntlet_scenario::load_file(&dir.join("scenario.yaml"), &[])
    {
        for (op, slo) in &scenario.slo {
            if let Some(p99) = slo.p99 {
                run.slo_p99_us.insert(
                    op.clone(),
                    u64::try_from(p99.0.as_micros()).unwrap_or(u64::MAX),
                );
            }
        }
    }
    Ok(run)
}

fn write(path: &Path, html: &str) -> Result<(), ReportError> {
    rundir::write_atomic(path, html.as_bytes()).map_err(|error| ReportError::Write {
        path: path.to_owned(),
        error,
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Renders `run_dir`'s report (with a comparison when `baseline` is given)
/// to `out` (default `RUN_DIR/report.html`); returns where it went.
pub fn render_report(
    run_dir: &Path,
    baseline: Option<&Path>,
    out: Option<&Path>,
) -> Result<PathBuf, ReportError> {
    let run = load(run_dir)?;
    let base = baseline.map(load).transpose()?;
    let path = out.map_or_else(|| run_dir.join(REPORT_FILE), Path::to_owned);
    let opts = RenderOptions {
        link_files: path.parent().is_some_and(|p| {
            same_dir(
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                },
                run_dir,
            )
        }),
        generator: format!("loadgen {}", env!("CARGO_PKG_VERSION")),
        ..RenderOptions::default()
    };
    let html = gauntlet_reports::render_run(&run, base.as_ref(), &opts);
    write(&path, &html)?;
    Ok(path)
}

/// The report a run writes at its end.
pub fn write_run_report(run_dir: &Path) -> Result<PathBuf, ReportError> {
    render_report(run_dir, None, None)
}

/// Renders the comparison of `a` (before) and `b` (after) to `out`
/// (default `B/compare-<A>.html`); returns where it went.
pub fn render_compare(a: &Path, b: &Path, out: Option<&Path>) -> Result<PathBuf, ReportError> {
    let run_a = load(a)?;
    let run_b = load(b)?;
    let path = match out {
        Some(p) => p.to_owned(),
        None if b.is_dir() => b.join(format!("compare-{}.html", run_a.label)),
        None => PathBuf::from(format!("compare-{}-{}.html", run_a.label, run_b.label)),
    };
    let opts = RenderOptions {
        link_files: false,
        generator: format!("loadgen {}", env!("CARGO_PKG_VERSION")),
        ..RenderOptions::default()
    };
    let html = gauntlet_reports::render_comparison(&run_a, &run_b, &opts);
    write(&path, &html)?;
    Ok(path)
}

fn finish(result: Result<PathBuf, ReportError>) -> i32 {
    match result {
        Ok(path) => {
            println!("report: {}", path.display());
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// `loadgen report RUN_DIR [--baseline DIR] [--out FILE]`.
pub fn report(run_dir: &Path, baseline: Option<&Path>, out: Option<&Path>) -> i32 {
    finish(render_report(run_dir, baseline, out))
}

/// `loadgen compare RUN_A RUN_B [--out FILE]`.
pub fn compare(a: &Path, b: &Path, out: Option<&Path>) -> i32 {
    finish(render_compare(a, b, out))
}
