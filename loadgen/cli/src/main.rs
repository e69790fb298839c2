//! `loadgen`: Gauntlet's command line. Parses arguments, renders errors once,
//! maps outcomes to exit codes (0 passed, 1 failed check, 2 bad input, 3 harness).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use loadgen::exit;
use loadgen::run::{self, RunError, RunOptions, Source};
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
    },
    /// Check scenario files; print every mistake found as file:line:col.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the JSON Schema of the scenario format.
    Schema,
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
            set,
            quiet,
        }) => {
            let source = scenario.map_or_else(Source::default_smoke, Source::File);
            run_command(source, out, set, quiet)
        }
        Some(Command::Validate { files }) => validate(&files),
        Some(Command::Schema) => {
            print!("{}", gauntlet_scenario::json_schema());
            exit::OK
        }
    };
    ExitCode::from(code as u8)
}

fn validate(files: &[PathBuf]) -> i32 {
    let mut bad = 0;
    for file in files {
        match gauntlet_scenario::load_file(file, &[]) {
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
                println!("run directory: {}", outcome.run_dir.display());
                let mut code = exit::OK;
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
