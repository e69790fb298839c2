//! Running the node: restore the data directory, bind the listeners, spawn
//! the boot components, serve until SIGTERM/SIGINT, then seed 001's
//! graceful shutdown:
//!
//! 1. stop accepting (503 `unavailable`, `/ready` 503);
//! 2. drain mailboxes and answer every batch in flight (≤ 10 s);
//! 3. stop components in reverse dependency order (≤ 5 s each: pre_stop,
//!    drain, post_stop with the `counter` checkpoint);
//! 4. flush logs and metrics (≤ 2 s), close the listeners, exit 0.
//!
//! 60 s at most in all (a watchdog exits 1 past it); a second signal exits
//! at once with status 1. The log states how many messages were still
//! queued.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::audit::Audit;
use crate::config::Config;
use crate::http::{AppState, metrics_router, router};
use crate::node::{Node, NodeOptions};
use crate::resource::CpuGauge;
use crate::spec::ComponentSpec;
use crate::store::Store;

/// The bound addresses are logged under this target whatever the level.
pub const ANNOUNCE: &str = "actor_node::announce";

pub fn init_logging(cfg: &Config) {
    let filter =
        tracing_subscriber::EnvFilter::new(format!("{},{ANNOUNCE}=info", cfg.log_level.as_str()));
    tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_env_filter(filter)
        .json()
        .flatten_event(true)
        .init();
    // A panicking handler is supervision's business: one log line, not a
    // backtrace on stderr per panic.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("panic");
        tracing::warn!(panic = what, at = at, "handler panicked");
    }));
}

async fn signals() -> anyhow::Result<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)> {
    Ok((
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
    ))
}

/// Spawns every `*.toml` of the components directory (name = file stem).
async fn boot_components(node: &Node, dir: &Path) -> anyhow::Result<usize> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    // Pipeline stages may name each other in any order: a forward only
    // resolves its target per batch, so file order does not matter.
    for path in &files {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("{}: the file name is not UTF-8", path.display()))?
            .to_string();
        let text =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let spec = ComponentSpec::parse(&text, true, &name)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))?;
        if let Some(running) = node.lookup(&name)
            && *running.spec != spec
        {
            // The data directory's spec (what clients last set) wins over
            // an edited file; say so rather than refuse to start.
            tracing::warn!(
                file = %path.display(),
                component = %name,
                "a boot component differs from the one restored from the data directory; keeping the restored one (DELETE it to take the file's)"
            );
            continue;
        }
        node.spawn(&name, spec)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))?;
    }
    Ok(files.len())
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({what}); is the port in use?"))
}

/// Runs the node until a signal; errors are fatal startup failures.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let (mut term, mut int) = signals().await?;
    let (store, restored) = Store::open(&cfg.data_dir)?;
    let audit = cfg.audit_path().map(|p| Audit::open(p)).transpose()?;
    if cfg.test_faults {
        tracing::warn!(
            "AIRSSYS_TEST_FAULTS is on: POST /api/v1/components/{{name}}/faults can make handlers panic or stall (tests only)"
        );
    }
    let max_memory_bytes = cfg.max_memory_gb.map(|g| (g * (1u64 << 30) as f64) as u64);
    let node = Node::new(NodeOptions {
        node_name: cfg.node_name.clone(),
        max_components: cfg.max_components as usize,
        max_memory_bytes,
        max_batch: cfg.max_batch as usize,
        store: Some(store),
        audit,
        test_faults: cfg.test_faults,
    });
    let restored_count = node
        .restore(restored)
        .map_err(|e| anyhow::anyhow!("cannot restore the registry: {}", e.message))?;
    let ready = Arc::new(AtomicBool::new(false));
    let cpu = Arc::new(CpuGauge::default());
    let state = AppState {
        node: node.clone(),
        ready: ready.clone(),
        cpu: cpu.clone(),
        max_cpu_percent: cfg.max_cpu_percent,
        max_memory_bytes,
    };
    let api = bind(SocketAddr::new(cfg.bind, cfg.http_port), "API").await?;
    let api_addr = api.local_addr()?;
    let separate_metrics = cfg.metrics_port != cfg.http_port && cfg.metrics_port != api_addr.port();
    let metrics_listener = if separate_metrics {
        Some(bind(SocketAddr::new(cfg.bind, cfg.metrics_port), "metrics").await?)
    } else {
        None
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => l.local_addr()?,
        None => api_addr,
    };
    tracing::info!(target: ANNOUNCE, http_addr = %api_addr, metrics_addr = %metrics_addr, node = %cfg.node_name, "listening");
    if let Some(opts) = cfg.cluster() {
        let peers = opts.peers.len();
        let tls = opts.tls.is_some();
        let nodelay = opts.nodelay;
        let cluster_addr = node.start_cluster(opts).await?;
        tracing::info!(target: ANNOUNCE, cluster_addr = %cluster_addr, peers, tls, nodelay, "cluster listening");
    }
    let sampler = {
        let cpu = cpu.clone();
        tokio::spawn(async move { cpu.sample(Duration::from_secs(1)).await })
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let serve = |listener: TcpListener, app: axum::Router| {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        })
    };
    let api_task = serve(
        api,
        router(state.clone()).merge(pprof_endpoint::router_from_env()),
    );
    let metrics_task = metrics_listener.map(|l| serve(l, metrics_router(state.clone())));

    let booted = match &cfg.components_dir {
        Some(dir) => boot_components(&node, dir).await?,
        None => 0,
    };
    ready.store(true, Ordering::Release);
    tracing::info!(restored = restored_count, boot_components = booted, "ready");

    let sig = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    let t0 = Instant::now();
    tracing::info!(
        signal = sig,
        "shutdown signal received: initiating graceful shutdown"
    );
    // A second signal exits at once; a watchdog bounds the whole sequence.
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: exiting at once");
        std::process::exit(1);
    });
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        tracing::error!("graceful shutdown exceeded 60 s: exiting");
        std::process::exit(1);
    });

    node.close();
    ready.store(false, Ordering::Release);
    tracing::info!(
        step = 1,
        queued = node.queued(),
        "draining message queues (timeout: 10s)"
    );
    let drained = node.drain(Duration::from_secs(10)).await;
    tracing::info!(
        step = 2,
        drained,
        queued = node.queued(),
        "stopping components in reverse dependency order"
    );
    let late = node.stop_all(Duration::from_secs(5)).await;
    tracing::info!(step = 3, "flushing logs, metrics and checkpoints");
    let _ = stop_tx.send(true);
    let flush = async {
        node.flush();
        let _ = api_task.await;
        if let Some(t) = metrics_task {
            let _ = t.await;
        }
    };
    let flushed = tokio::time::timeout(Duration::from_secs(2), flush)
        .await
        .is_ok();
    sampler.abort();
    let queued = node.queued();
    tracing::info!(
        step = 4,
        queued,
        late_components = late.len(),
        flushed,
        elapsed_ms = t0.elapsed().as_millis() as u64,
        "graceful shutdown complete"
    );
    Ok(())
}
