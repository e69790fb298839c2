//! `actor-node`: parses the configuration (exit 2 on a bad one), installs
//! logging and runs the node (exit 1 on a fatal startup error, 0 after a
//! graceful shutdown).

use std::process::ExitCode;
use std::time::Duration;

use actors::config::Config;
use clap::Parser;

fn main() -> ExitCode {
    let cfg = match Config::try_parse() {
        Ok(c) => c,
        // Help and version exit 0; every configuration error exits 2.
        Err(e) => e.exit(),
    };
    if let Err(e) = cfg.check() {
        eprintln!("actor-node: invalid configuration: {e}\n(see actor-node --help)");
        return ExitCode::from(2);
    }
    pprof_endpoint::check_env_or_exit("actor-node");
    actors::server::init_logging(&cfg);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name("airssys-worker");
    if let Some(n) = cfg.worker_threads {
        builder.worker_threads(n as usize);
    }
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("actor-node: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(actors::server::run(cfg));
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            eprintln!("actor-node: {e:#}");
            ExitCode::from(1)
        }
    }
}
