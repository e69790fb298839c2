//! The node's lifecycle: logging, data-directory lock, listeners, recovery,
//! readiness and graceful shutdown.
//!
//! Startup order: the HTTP listener (and the metrics listener, when set) is
//! bound and served first, logging `listening on <addr>` with the real
//! address (so port 0 works), while `/ready` and `/api/*` answer 503; then
//! the stores recover; then the node turns ready. On SIGTERM or SIGINT
//! waiting long polls are answered at once, the listeners stop accepting,
//! in-flight requests finish (bounded), every resource task drains its
//! queue and fsyncs, and `run` returns, so the process exits 0 well within
//! 10 s.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::config::{Config, LogFormat};
use crate::durable::StoreOptions;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::stores::Stores;

/// Bound on waiting for in-flight requests at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(4);
/// Bound on the final flush of every stream at shutdown.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// Target of the log lines announcing bound addresses (always logged).
pub const ANNOUNCE: &str = "fabric::announce";

/// Installs the tracing subscriber (stderr, JSON or text).
pub fn init_logging(cfg: &Config) {
    // The address announcement is logged whatever the level, so a
    // supervisor can always learn the bound port.
    let filter =
        tracing_subscriber::EnvFilter::new(format!("{},{ANNOUNCE}=info", cfg.log_level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(true);
    match cfg.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}

async fn shutdown_signal() -> anyhow::Result<&'static str> {
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Runs the node until SIGTERM/SIGINT. Errors are fatal startup failures.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let _lock = crate::backup::lock_data_dir(&cfg.data_dir)?;
    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(Arc::clone(&metrics)).with_auth_token(cfg.auth_token.clone());
    let (stop_tx, stop_rx) = watch::channel(false);

    // The signal handlers must exist before we announce the address.
    let signal = tokio::spawn(shutdown_signal());

    let listener = TcpListener::bind(cfg.http_addr)
        .await
        .with_context(|| format!("cannot bind HTTP address {}", cfg.http_addr))?;
    let addr = listener.local_addr().context("no local address")?;
    let mut servers = Vec::new();
    let metrics_listener = match cfg.metrics_addr {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot bind metrics address {a}"))?,
        ),
        None => None,
    };
    servers.push(tokio::spawn(serve(
        listener,
        http::router(state.clone()).merge(pprof_endpoint::router_from_env()),
        stop_rx.clone(),
    )));
    tracing::info!(target: ANNOUNCE, addr = %addr, "listening on {addr}");
    if let Some(l) = metrics_listener {
        let maddr = l.local_addr().context("no local address")?;
        servers.push(tokio::spawn(serve(
            l,
            http::metrics_router(state.clone()),
            stop_rx.clone(),
        )));
        tracing::info!(target: ANNOUNCE, addr = %maddr, "serving metrics on {maddr}");
    }

    let opts = StoreOptions {
        fsync_policy: cfg.fsync_policy,
        fsync_interval: cfg.fsync_interval,
        segment_bytes: cfg.segment_bytes,
        auto_create: cfg.auto_create,
    };
    tracing::info!(
        data_dir = %cfg.data_dir.display(), fsync_policy = ?cfg.fsync_policy,
        fsync_interval_ms = cfg.fsync_interval.as_millis() as u64,
        segment_bytes = cfg.segment_bytes, auto_create = cfg.auto_create,
        "recovering"
    );
    let mut signal = signal;
    let store = tokio::select! {
        r = Stores::open(&cfg.data_dir, opts, Arc::clone(&metrics)) => {
            let (store, rec) = r.context("recovery failed")?;
            tracing::info!(streams = rec.streams, queues = rec.queues, kv_stores = rec.kv_stores,
                records = rec.records, truncated_bytes = rec.truncated_bytes,
                "recovery finished; ready");
            state.set_ready(Arc::clone(&store));
            Some(store)
        }
        s = &mut signal => {
            let s = s.context("signal task failed")??;
            tracing::info!(signal = s, "shutting down during recovery");
            None
        }
    };
    if let Some(store) = store {
        let s = signal.await.context("signal task failed")??;
        tracing::info!(signal = s, "shutting down: draining requests");
        // End long polls first, so draining does not wait for them.
        store.closing().await;
        let _ = stop_tx.send(true);
        drain(servers).await;
        if tokio::time::timeout(FLUSH_TIMEOUT, store.shutdown())
            .await
            .is_err()
        {
            tracing::error!("stores did not finish flushing in time");
        }
    } else {
        let _ = stop_tx.send(true);
        drain(servers).await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn drain(servers: Vec<tokio::task::JoinHandle<()>>) {
    let all = async {
        for s in servers {
            let _ = s.await;
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, all).await.is_err() {
        tracing::warn!("in-flight requests did not finish in time");
    }
}

async fn serve(listener: TcpListener, router: axum::Router, mut stop: watch::Receiver<bool>) {
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|v| *v).await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP server failed");
    }
}
