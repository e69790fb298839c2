//! `fabric-node`: parses the configuration (exit 2 on a bad one), installs
//! logging and runs the node (exit 1 on a fatal startup error, 0 after a
//! graceful shutdown).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fabric::config::Config;

fn main() -> ExitCode {
    let cfg = match Config::try_parse() {
        Ok(c) => c,
        // Help and version exit 0; every configuration error exits 2.
        Err(e) => e.exit(),
    };
    fabric::server::init_logging(&cfg);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fabric-node: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(fabric::server::run(cfg));
    // Do not wait for a recovery interrupted by a signal.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            eprintln!("fabric-node: {e:#}");
            ExitCode::from(1)
        }
    }
}
