//! Running the server: listeners first (so `/health` answers while the
//! database is still coming), migrations and the database probe in the
//! background, the batcher, Redis, then SIGTERM's graceful shutdown:
//!
//! 1. refuse new connections (503 at the upgrade) and turn `/ready` to 503;
//! 2. every connection stops reading, its requests already read are
//!    answered (each `RecordEvent` after its commit) and it closes with 1001;
//! 3. the batcher commits and answers what is queued, then stops;
//! 4. close the listeners, exit 0. A watchdog exits 1 past 29 s; a second signal exits 1 at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use crate::app::App;
use crate::config::{Config, LogFormat};
use crate::db::Db;
use crate::hub::{Hub, parse_envelope};
use crate::ingest::{self, Batcher};
use crate::metrics::Metrics;
use crate::redis_link::RedisLink;

/// The bound addresses are logged under this target whatever the level.
pub const ANNOUNCE: &str = "tracing_server::announce";

pub fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(format!("{},{ANNOUNCE}=info", cfg.log_level));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_env_filter(filter);
    match cfg.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({what}); is the port in use?"))
}

/// Migrates (retrying), then probes the database every second.
async fn database_monitor(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    let mut said = false;
    loop {
        if !app.migrated.load(Ordering::Acquire) {
            match app.db.migrate().await {
                Ok(applied) => {
                    app.migrated.store(true, Ordering::Release);
                    app.db_up.store(true, Ordering::Release);
                    tracing::info!(applied = ?applied, "database migrated");
                    app.db.warm(app.cfg.db_min_connections).await;
                    continue;
                }
                Err(e) => {
                    if !said {
                        tracing::warn!(error = %e, "cannot migrate the database yet; retrying");
                        said = true;
                    }
                    app.db_up.store(false, Ordering::Release);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match app.db.ping().await {
            Ok(()) => {
                if !app.db_up.swap(true, Ordering::AcqRel) {
                    tracing::info!("database available");
                }
            }
            Err(e) => {
                if app.db_up.swap(false, Ordering::AcqRel) {
                    tracing::warn!(error = %e, "database unavailable");
                }
            }
        }
    }
}

/// Runs the server until SIGTERM/SIGINT; errors are fatal startup failures.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let metrics = Arc::new(Metrics::default());
    let db = Db::new(&cfg).map_err(|e| anyhow::anyhow!(e))?;
    let db_up = Arc::new(AtomicBool::new(false));
    let redis = Arc::new(RedisLink::new(
        cfg.redis_url.as_deref(),
        cfg.redis_connection_timeout,
        metrics.clone(),
    ));
    let hub = Arc::new(Hub::new(metrics.clone()));
    let (hub_tx, hub_rx) = mpsc::channel(4096);
    let (ingest, ingest_rx) = ingest::channel(
        cfg.max_pending_events,
        cfg.db_connection_timeout,
        db_up.clone(),
        metrics.clone(),
    );
    let (stop_conns_tx, stop_conns_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let app = Arc::new(App {
        cfg: cfg.clone(),
        db: db.clone(),
        redis: redis.clone(),
        hub: hub.clone(),
        ingest,
        metrics: metrics.clone(),
        db_up: db_up.clone(),
        migrated: AtomicBool::new(false),
        shutting_down: AtomicBool::new(false),
        stop_connections: stop_conns_rx.clone(),
    });

    let main_listener = bind(cfg.bind_address, "WebSocket and HTTP").await?;
    let main_addr = main_listener.local_addr()?;
    let metrics_listener = match cfg.metrics_address {
        Some(a) if cfg.metrics_enabled => Some(bind(a, "metrics").await?),
        _ => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => l.local_addr()?,
        None => main_addr,
    };
    tracing::info!(target: ANNOUNCE, addr = %main_addr, metrics_addr = %metrics_addr, replica = %redis.origin, "listening");

    tokio::spawn(hub.clone().run(db.clone(), hub_rx));
    tokio::spawn(database_monitor(app.clone(), stop_rx.clone()));
    tokio::spawn(redis.clone().monitor(stop_rx.clone()));
    {
        let (remote_tx, mut remote_rx) = mpsc::channel::<Arc<[u8]>>(4096);
        tokio::spawn(redis.clone().subscribe_loop(remote_tx, stop_rx.clone()));
        let hub_tx = hub_tx.clone();
        let me = redis.origin;
        tokio::spawn(async move {
            while let Some(bytes) = remote_rx.recv().await {
                if let Some(notices) = parse_envelope(&me, &bytes)
                    && hub_tx.send(notices).await.is_err()
                {
                    return;
                }
            }
        });
    }
    let batcher = tokio::spawn(
        Batcher {
            db: db.clone(),
            redis: redis.clone(),
            hub: hub_tx,
            metrics: metrics.clone(),
            db_up: db_up.clone(),
            batch_size: cfg.batch_size,
            batch_timeout: cfg.batch_timeout,
            parallelism: cfg.commit_parallelism,
        }
        .run(ingest_rx, stop_rx.clone()),
    );

    // The listeners stay open while connections drain: `/ready` answers
    // 503 and upgrades are refused with 503; they close at the end.
    let serve = |listener: TcpListener, router: axum::Router| {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            // Nagle off: a notification or an answer is one small write that
            // must not wait for the peer's delayed ACK of the previous one
            // (~40 ms on Linux), which a receive-only subscriber never hurries.
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
                }
            });
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        })
    };
    let main_task = serve(
        main_listener,
        crate::http::router(app.clone()).merge(pprof_endpoint::router_from_env()),
    );
    let metrics_task = metrics_listener.map(|l| serve(l, crate::http::metrics_router(app.clone())));

    let sig = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    let t0 = Instant::now();
    tracing::info!(
        signal = sig,
        connections = metrics.connections_active.load(Ordering::Relaxed),
        pending_events = metrics.pending_events.load(Ordering::Relaxed),
        "shutdown: refusing new connections, answering what was read"
    );
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: exiting at once");
        std::process::exit(1);
    });
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_secs(29)).await;
        tracing::error!("graceful shutdown exceeded 29 s: exiting");
        std::process::exit(1);
    });
    app.shutting_down.store(true, Ordering::Release);
    let _ = stop_conns_tx.send(true);
    // Connections answer what they read (each RecordEvent after its
    // commit, bounded by the commit deadline), then close with 1001.
    let limit = Instant::now() + cfg.db_connection_timeout + Duration::from_secs(5);
    while metrics.connections_active.load(Ordering::Acquire) > 0 && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    let _ = main_task.await;
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    let _ = tokio::time::timeout(cfg.db_connection_timeout + Duration::from_secs(2), batcher).await;
    tracing::info!(
        connections = metrics.connections_active.load(Ordering::Relaxed),
        pending_events = metrics.pending_events.load(Ordering::Relaxed),
        events_stored = metrics.events_stored.load(Ordering::Relaxed),
        elapsed_ms = t0.elapsed().as_millis() as u64,
        "graceful shutdown complete"
    );
    Ok(())
}
