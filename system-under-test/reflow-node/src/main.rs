//! `reflow-node`: loads the configuration and the graph (either invalid:
//! exit 2), runs the graph on the published runtime behind the HTTP API,
//! and on SIGTERM or Ctrl-C stops accepting, drains to the sinks (bounded)
//! and exits 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use reflow_node::config::{Config, Overrides};
use reflow_node::graph::Graph;
use reflow_node::http::{self, App};
use reflow_node::node::Node;
use reflow_node::state::{Fault, FaultMode};

#[derive(Debug, Parser)]
#[command(
    name = "reflow-node",
    version,
    about = "Runs a Reflow graph (source, map, filter, fanout, sink) on reflow_network 0.2.1 behind an HTTP API.",
    after_help = "Configuration (each over the one before): /etc/reflow/config.toml, ~/.config/reflow/config.toml, \
--config FILE (or REFLOW_CONFIG), REFLOW_SECTION__KEY variables (REFLOW_RUNTIME__THREAD_POOL_SIZE, \
REFLOW_LOGGING__LEVEL, REFLOW_NETWORK__BIND_ADDRESS, REFLOW_GRAPH__FILE (a path or builtin:pipeline, builtin:fanout), REFLOW_GRAPH__INLINE (JSON), REFLOW_TRACING__ENABLED, \
REFLOW_TRACING__SERVER_URL, REFLOW_TRACING__BATCH_SIZE, REFLOW_TRACING__BATCH_TIMEOUT_MS, REFLOW_LIMITS__…), then flags.\n\
Invalid configuration or graph: exit 2. SIGTERM: stop accepting, drain to the sinks (limits.drain_timeout_ms), exit 0.\n\
See system-under-test/reflow-node/README.md."
)]
struct Cli {
    /// A TOML configuration file (seed 000's sections).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The graph file (.json or .toml); overrides [graph] file.
    #[arg(long, value_name = "FILE")]
    graph: Option<PathBuf>,
    /// HOST:PORT to listen on; overrides [network] bind_address.
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// Check the configuration and the graph, then exit (0 valid, 2 not).
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    pprof_endpoint::check_env_or_exit("reflow-node");
    let flags = Overrides {
        config: cli.config,
        graph: cli.graph,
        bind: cli.bind,
    };
    let cfg = match Config::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("reflow-node: invalid configuration: {e}\n(see reflow-node --help)");
            return ExitCode::from(2);
        }
    };
    let graph = match Graph::from_config(&cfg.graph.file, cfg.graph.inline.as_deref()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("reflow-node: invalid {e}");
            return ExitCode::from(2);
        }
    };
    for name in [&cfg.test.panic_actor, &cfg.test.stall_actor]
        .into_iter()
        .flatten()
    {
        if graph.node(name).is_none() {
            eprintln!(
                "reflow-node: invalid configuration: test fault on `{name}`: the graph has no such node"
            );
            return ExitCode::from(2);
        }
    }
    if cli.check {
        println!(
            "reflow-node: configuration and graph `{}` are valid",
            graph.name
        );
        return ExitCode::SUCCESS;
    }
    if let Err(e) = init_logging(&cfg) {
        eprintln!("reflow-node: invalid configuration: logging.output: {e}");
        return ExitCode::from(2);
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if cfg.runtime.thread_pool_size > 0 {
        rt.worker_threads(cfg.runtime.thread_pool_size);
    }
    let rt = match rt.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("reflow-node: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = rt.block_on(serve(cfg, graph));
    // Feeder threads may be blocked inside the runtime for good (a stalled
    // graph): do not wait for them.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

async fn serve(cfg: Config, graph: Graph) -> ExitCode {
    let addr = cfg.bind_address().expect("checked");
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("reflow-node: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    // The harness (and tests, with port 0) read the address from this line.
    println!(
        "{}",
        serde_json::json!({"event": "listening", "http_addr": bound})
    );
    let node = match Node::start(&cfg, graph) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("reflow-node: cannot start the graph: {e:#}");
            return ExitCode::from(1);
        }
    };
    let armed = [
        (&cfg.test.panic_actor, FaultMode::Panic),
        (&cfg.test.stall_actor, FaultMode::Stall),
    ];
    for (name, mode) in armed {
        if let Some(name) = name {
            let i = node.state.index(name).expect("checked");
            *node.state.nodes[i].fault.lock().unwrap() = Some(Fault {
                mode,
                at_received: cfg.test.after_messages,
            });
        }
    }
    if let Err(e) = node.send_initials(cfg.accept_timeout()).await {
        eprintln!("reflow-node: {e}");
        return ExitCode::from(1);
    }
    let app = Arc::new(App { node, cfg });
    let router = http::router(app.clone());
    tracing::info!(%addr, graph = app.node.state.graph.name, tracing = app.cfg.tracing.enabled, "reflow-node listening");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    shutdown_signal().await;
    tracing::info!("shutdown: refusing new messages, draining to the sinks");
    let left = app.node.drain(app.cfg.drain_timeout()).await;
    let _ = stop_tx.send(());
    // In-flight requests end within their own bounds; do not wait longer.
    let _ = tokio::time::timeout(http::request_bound(&app.cfg), server).await;
    if left > 0 {
        tracing::warn!(
            left,
            "shutdown: messages still in flight after the drain bound"
        );
    } else {
        tracing::info!("shutdown: drained");
    }
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn init_logging(cfg: &Config) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{},reflow_tracing_protocol=warn",
            cfg.logging.level
        ))
    });
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal());
    let json = cfg.logging.format == "json";
    match cfg.logging.output.as_str() {
        "stderr" => {
            if json {
                builder.json().with_writer(std::io::stderr).init()
            } else {
                builder.with_writer(std::io::stderr).init()
            }
        }
        "stdout" => {
            if json {
                builder.json().with_writer(std::io::stdout).init()
            } else {
                builder.with_writer(std::io::stdout).init()
            }
        }
        path => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("{path}: {e}"))?;
            let f = std::sync::Mutex::new(f);
            if json {
                builder.json().with_ansi(false).with_writer(f).init()
            } else {
                builder.with_ansi(false).with_writer(f).init()
            }
        }
    }
    Ok(())
}
