//! `fabric-node`: parses the configuration (exit 2 on a bad one), installs
//! logging and runs the node (exit 1 on a fatal startup error, 0 after a
//! graceful shutdown).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fabric::config::{Command, Config};

fn main() -> ExitCode {
    let cfg = match Config::try_parse() {
        Ok(c) => c,
        // Help and version exit 0; every configuration error exits 2.
        Err(e) => e.exit(),
    };
    pprof_endpoint::check_env_or_exit("fabric-node");
    fabric::server::init_logging(&cfg);
    if let Some(cmd) = cfg.command.clone() {
        return run_command(cmd, cfg.auth_token.as_deref());
    }
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

/// `backup` and `restore`: exit 0 on success, 1 on failure.
fn run_command(cmd: Command, token: Option<&str>) -> ExitCode {
    let result = match cmd {
        Command::Backup {
            from_url: Some(url),
            dir,
            ..
        } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(fabric::backup::backup_from_url(&url, &dir, token))),
        Command::Backup {
            from_dir: Some(data),
            dir,
            ..
        } => fabric::backup::backup_data_dir(&data, &dir),
        Command::Backup { .. } => Err(anyhow::anyhow!("give --from-url or --from-dir")),
        Command::Restore {
            backup_dir,
            data_dir,
        } => fabric::backup::restore(&backup_dir, &data_dir),
    };
    match result {
        Ok(m) => {
            println!("{} files, {} bytes", m.files, m.bytes);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fabric-node: {e:#}");
            ExitCode::from(1)
        }
    }
}
