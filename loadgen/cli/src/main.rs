//! `loadgen`: Gauntlet's command line. Parses arguments, renders errors once,
//! maps outcomes to exit codes (0 passed, 1 failed check, 2 bad input, 3 harness).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use loadgen::run::{self, RunError, RunOptions, Source};
use loadgen::{exit, gate_cmd};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Gauntlet: load and chaos scenarios against the runtime, measured honestly"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario (default: scenarios/smoke.yaml) and write a run directory.
    Run {
        /// The scenario file.
        scenario: Option<PathBuf>,
        /// Root of run directories (default: target/gauntlet/runs).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Override a scenario value, e.g. `--set workload.phases.steady.rate=800/s`.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
        /// No live progress (the summary is still printed).
        #[arg(long, short)]
        quiet: bool,
        /// Where the stack runs, overriding the scenario's `stack.runtime`.
        #[arg(long, value_name = "RUNTIME", value_parser = ["process", "containers"])]
        runtime: Option<String>,
    },
    /// Container images: `loadgen images build` builds what is missing or stale.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// Remove every Gauntlet container, network and volume (of any run) and say what was removed.
    Clean,
    /// Check scenario files; print every mistake found as file:line:col.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Override a scenario value before validating, as `run` does (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
    },
    /// Print the JSON Schema of the scenario format.
    Schema,
    /// Render a run directory's HTML report again, from its files (also for a killed run).
    Report {
        /// The run directory, e.g. target/gauntlet/runs/latest.
        run_dir: PathBuf,
        /// Add a comparison with this run directory (or results.json).
        #[arg(long, value_name = "RUN_DIR")]
        baseline: Option<PathBuf>,
        /// Where to write the report (default: RUN_DIR/report.html).
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Render one HTML report putting two runs side by side: A (before) and B (after).
    Compare {
        run_a: PathBuf,
        run_b: PathBuf,
        /// Where to write the report (default: RUN_B/compare-<RUN_A>.html).
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Write (or replace) a baseline file from one or more run directories.
    Baseline {
        #[arg(required = true, value_name = "RUN_DIR")]
        runs: Vec<PathBuf>,
        /// The baseline file, e.g. ci/baselines/<scenario>.json.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Phases to keep (default: the scenario's `gate.phases`, else its last phase).
        #[arg(long = "phase", value_name = "NAME")]
        phases: Vec<String>,
    },
    /// Compare candidate runs with a baseline: verdict.json, junit.xml, summary.md; exit 1 on regression.
    Gate {
        #[arg(required = true, value_name = "RUN_DIR")]
        runs: Vec<PathBuf>,
        #[arg(long, value_name = "FILE")]
        baseline: PathBuf,
        /// A gate profile (ci/profiles/*.yaml) replacing the scenario's `slo:`/`gate:`.
        #[arg(long, value_name = "FILE")]
        profile: Option<PathBuf>,
        /// Where to write the outputs (default: the first run directory).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// List a run's CPU profiles (the scenario's `profile:`), print their top functions, export them.
    Profile {
        /// The run directory, e.g. target/gauntlet/runs/latest.
        run_dir: PathBuf,
        /// Copy every profile to DIR as `<service>-<window>.pb.gz` and `.folded`.
        #[arg(long, value_name = "DIR")]
        export: Option<PathBuf>,
        /// Print each profile's N functions with the most self time.
        #[arg(long, value_name = "N", default_value_t = 0)]
        top: usize,
    },
    /// Run two builds of the system under test alternately (A B A B …) and gate B against A.
    Ab {
        scenario: PathBuf,
        /// Directory holding the baseline build's binaries (e.g. a target/release).
        #[arg(long, value_name = "DIR", requires = "candidate_bin", conflicts_with_all = ["baseline_rev", "candidate_rev"])]
        baseline_bin: Option<PathBuf>,
        #[arg(long, value_name = "DIR", requires = "baseline_bin")]
        candidate_bin: Option<PathBuf>,
        /// Instead of directories: git revisions, each built into its own target directory.
        #[arg(long, value_name = "REV", requires = "candidate_rev")]
        baseline_rev: Option<String>,
        #[arg(long, value_name = "REV", requires = "baseline_rev")]
        candidate_rev: Option<String>,
        /// Runs of each build.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=50))]
        rounds: u16,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
        /// An override for build B's runs only (e.g. `--candidate-set 'profile={services: [fabric]}'`
        /// to measure what profiling costs with the same binaries on both sides).
        #[arg(long = "candidate-set", value_name = "PATH=VALUE")]
        candidate_set: Vec<String>,
        #[arg(long, value_name = "FILE")]
        profile: Option<PathBuf>,
        /// Directory for the runs and the verdict (default: target/gauntlet/runs/ab-<scenario>-<time>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Build the base image and one image per bundled service (a no-op when up to date).
    Build {
        /// No progress (the result lines are still printed).
        #[arg(long, short)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE as u8
            } else {
                exit::OK as u8
            });
        }
    };
    let code = match cli.command {
        None => run_command(Source::default_smoke(), None, Vec::new(), false),
        Some(Command::Run {
            scenario,
            out,
            mut set,
            quiet,
            runtime,
        }) => {
            let source = scenario.map_or_else(Source::default_smoke, Source::File);
            if let Some(runtime) = runtime {
                set.push(format!("stack.runtime={runtime}"));
            }
            run_command(source, out, set, quiet)
        }
        Some(Command::Images {
            command: ImagesCommand::Build { quiet },
        }) => loadgen::containers_cmd::build_command(quiet),
        Some(Command::Clean) => loadgen::containers_cmd::clean_command(),
        Some(Command::Validate { files, set }) => validate(&files, &set),
        Some(Command::Schema) => {
            print!("{}", gauntlet_scenario::json_schema());
            exit::OK
        }
        Some(Command::Report {
            run_dir,
            baseline,
            out,
        }) => loadgen::report_cmd::report(&run_dir, baseline.as_deref(), out.as_deref()),
        Some(Command::Compare { run_a, run_b, out }) => {
            loadgen::report_cmd::compare(&run_a, &run_b, out.as_deref())
        }
        Some(Command::Profile {
            run_dir,
            export,
            top,
        }) => match loadgen::profile::command(&run_dir, export.as_deref(), top) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("loadgen profile: {e}");
                exit::USAGE
            }
        },
        Some(Command::Baseline { runs, out, phases }) => gate_cmd::baseline(&runs, &out, &phases),
        Some(Command::Gate {
            runs,
            baseline,
            profile,
            out,
        }) => gate_cmd::gate(&runs, &baseline, profile.as_deref(), out.as_deref()),
        Some(Command::Ab {
            scenario,
            baseline_bin,
            candidate_bin,
            baseline_rev,
            candidate_rev,
            rounds,
            set,
            candidate_set,
            profile,
            out,
        }) => {
            let builds = match (baseline_bin, candidate_bin, baseline_rev, candidate_rev) {
                (Some(baseline), Some(candidate), _, _) => gate_cmd::Builds::Dirs {
                    baseline,
                    candidate,
                },
                (_, _, Some(baseline), Some(candidate)) => gate_cmd::Builds::Revisions {
                    baseline,
                    candidate,
                },
                _ => {
                    eprintln!(
                        "error: `ab` needs --baseline-bin and --candidate-bin, or --baseline-rev and --candidate-rev"
                    );
                    return ExitCode::from(exit::USAGE as u8);
                }
            };
            gate_cmd::ab(
                &scenario,
                builds,
                rounds as usize,
                &set,
                &candidate_set,
                out.as_deref(),
                profile.as_deref(),
            )
        }
    };
    ExitCode::from(code as u8)
}

fn validate(files: &[PathBuf], overrides: &[String]) -> i32 {
    let mut bad = 0;
    for file in files {
        match gauntlet_scenario::load_file(file, overrides) {
            Ok(s) => println!(
                "{}: ok (scenario `{}`, {} phases, {} operations)",
                file.display(),
                s.name,
                s.workload.phases.len(),
                s.workload.operations.len()
            ),
            Err(diags) => {
                bad += 1;
                for d in &diags {
                    eprint!("{d}");
                }
                eprintln!(
                    "{}: {} error{}",
                    file.display(),
                    diags.len(),
                    if diags.len() == 1 { "" } else { "s" }
                );
            }
        }
    }
    if bad > 0 { exit::USAGE } else { exit::OK }
}

fn run_command(source: Source, out: Option<PathBuf>, overrides: Vec<String>, quiet: bool) -> i32 {
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
    runtime.block_on(async move {
        let cancel = CancellationToken::new();
        tokio::spawn(watch_signals(cancel.clone()));
        let options = RunOptions {
            bin_dir: None,
            source,
            overrides,
            out,
            quiet,
        };
        match run::run(options, cancel).await {
            Err(RunError::Invalid(diags)) => {
                for d in &diags {
                    eprint!("{d}");
                }
                eprintln!(
                    "error: the scenario has {} error{}; nothing was run",
                    diags.len(),
                    if diags.len() == 1 { "" } else { "s" }
                );
                exit::USAGE
            }
            Err(RunError::Harness(msg)) => {
                eprintln!("error: {msg}");
                exit::HARNESS
            }
            Ok(outcome) => {
                println!("{}", gauntlet_reports::summary_table(&outcome.results));
                for stop in &outcome.stops {
                    eprintln!(
                        "{} stopped: {} in {:.2}s",
                        stop.service,
                        stop.status,
                        stop.took.as_secs_f64()
                    );
                }
                let mut code = exit::OK;
                if let Some(v) = &outcome.verdict {
                    for check in &v.slo {
                        let mark = if check.passed { "ok  " } else { "FAIL" };
                        println!(
                            "slo {mark} {} {} {} (actual {})",
                            check.operation, check.metric, check.limit, check.actual
                        );
                    }
                    if !v.passed {
                        code = exit::FAILED;
                    }
                }
                for check in &outcome.checks {
                    let mark = if check.passed { "ok  " } else { "FAIL" };
                    println!("check {mark} {}: {}", check.name, check.evidence);
                    if !check.passed {
                        code = exit::FAILED;
                    }
                }
                println!("run directory: {}", outcome.run_dir.display());
                if let Some(report) = &outcome.report {
                    println!("report: {}", report.display());
                }
                for f in &outcome.failures {
                    eprintln!("error: {f}");
                    code = exit::HARNESS;
                }
                if let Some(why) = &outcome.results.interrupted {
                    eprintln!("error: {why}; the run directory holds what was recorded");
                    code = exit::HARNESS;
                }
                code
            }
        }
    })
}

/// First SIGINT/SIGTERM: stop the run cleanly. Second: leave at once (children
/// die with us through PR_SET_PDEATHSIG).
async fn watch_signals(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    eprintln!(
        "\ninterrupted: stopping the load and the stack (press Ctrl-C again to quit at once)"
    );
    cancel.cancel();
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    std::process::exit(exit::HARNESS);
}
