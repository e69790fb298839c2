//! `tracing-server`: serves (default), or `backup` / `restore` the
//! database. A bad configuration exits 2, a fatal error 1, a graceful
//! shutdown 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_server::config::Config;

/// mimalloc: the ingest path allocates per event (decode, payload, answer);
/// glibc's malloc and free were a fifth of the server's CPU in the profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Seed 003's tracing server: reflow_tracing_protocol 0.2.1 over WebSocket
/// (`ws://HOST:PORT/`), events committed to PostgreSQL before they are
/// acknowledged, Redis for the GetTrace cache and cross-replica
/// subscriptions; `/health`, `/ready`, `/metrics` on the same port.
#[derive(Debug, Parser)]
#[command(
    name = "tracing-server",
    version,
    about,
    after_help = "Environment (overrides the file): TRACING_BIND_ADDRESS (127.0.0.1:8080), TRACING_DATABASE_URL \
(postgresql://user@host:port/db, required), TRACING_REDIS_URL (redis://host:port; unset: no cache, local \
subscriptions only), TRACING_MAX_CONNECTIONS (1000), TRACING_METRICS_ADDRESS (default: the main port), \
TRACING_BATCH_SIZE (100), TRACING_BATCH_TIMEOUT_MS (2000, a cap: a batch never waits when nothing more is \
queued), TRACING_MAX_EVENT_SIZE (1048576), TRACING_MAX_PENDING_EVENTS (100000), JWT_SECRET, \
TRACING_REQUIRE_AUTH (false), RUST_LOG, TRACING_PG_BIN_DIR (pg_dump/pg_restore).\n\n\
SIGTERM: refuse new connections, commit and answer every event read, close sockets with 1001, exit 0.\n\
Invalid configuration exits 2. See system-under-test/tracing-server/README.md."
)]
struct Cli {
    /// TOML configuration in seed 003's shape ([server] [database] [redis] [tracing] [logging] [metrics] [auth]).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve (the default).
    Serve,
    /// Dump the `tracing` schema with `pg_dump -Fc` into FILE.
    Backup {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Restore a dump made by `backup` with `pg_restore --clean` (replaces the `tracing` schema).
    Restore {
        #[arg(long = "from", value_name = "FILE")]
        from: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tracing-server: invalid configuration: {e}\n(see tracing-server --help)");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Cmd::Serve) {
        Cmd::Serve => {
            pprof_endpoint::check_env_or_exit("tracing-server");
            serve(cfg)
        }
        Cmd::Backup { out } => match tracing_server::backup::backup(&cfg, &out) {
            Ok(()) => {
                eprintln!("tracing-server: backup written to {}", out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tracing-server: backup: {e}");
                ExitCode::from(1)
            }
        },
        Cmd::Restore { from } => match tracing_server::backup::restore(&cfg, &from) {
            Ok(()) => {
                // Cached traces predate the restore: a new cache epoch.
                let bumped = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
                    .and_then(|rt| {
                        rt.block_on(
                            tracing_server::redis_link::RedisLink::new(
                                cfg.redis_url.as_deref(),
                                cfg.redis_connection_timeout,
                                Default::default(),
                            )
                            .bump_epoch(),
                        )
                    });
                if let Err(e) = bumped {
                    eprintln!(
                        "tracing-server: warning: the GetTrace cache was not reset ({e}); cached traces may predate the restore for up to 5 minutes"
                    );
                }
                eprintln!("tracing-server: restored from {}", from.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tracing-server: restore: {e}");
                ExitCode::from(1)
            }
        },
    }
}

fn serve(cfg: Config) -> ExitCode {
    tracing_server::server::init_logging(&cfg);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name("tracing-worker");
    if let Some(n) = cfg.worker_threads {
        builder.worker_threads(n);
    }
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tracing-server: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(tracing_server::server::run(cfg));
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            eprintln!("tracing-server: {e:#}");
            ExitCode::from(1)
        }
    }
}
