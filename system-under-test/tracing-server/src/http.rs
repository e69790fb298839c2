//! HTTP on the WebSocket's port: the upgrade at `/` (auth and
//! `max_connections` checked before it), `/health`, `/ready`, `/metrics`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::app::App;
use crate::config::MAX_FRAME_BYTES;
use crate::redis_link::RedisState;

pub fn router(app: Arc<App>) -> Router {
    let mut r = Router::new()
        .route("/", get(upgrade))
        .route("/health", get(health))
        .route("/ready", get(ready));
    if app.cfg.metrics_enabled {
        r = r.route("/metrics", get(metrics));
    }
    r.with_state(app)
}

/// The separate metrics listener (`TRACING_METRICS_ADDRESS`).
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(app)
}

/// Releases a connection slot when the connection ends.
struct Slot(Arc<App>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0
            .metrics
            .connections_active
            .fetch_sub(1, Ordering::AcqRel);
    }
}

fn refuse(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": message}).to_string(),
    )
        .into_response()
}

async fn upgrade(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    if app.shutting_down.load(Ordering::Acquire) {
        app.metrics
            .connections_refused_full
            .fetch_add(1, Ordering::Relaxed);
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down".into(),
        );
    }
    if app.cfg.require_auth {
        let secret = app.cfg.jwt_secret.as_deref().unwrap_or_default();
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let verdict = match crate::auth::token(authorization, query.as_deref()) {
            None => {
                Err("no token: send `Authorization: Bearer <JWT>` or `?token=<JWT>`".to_owned())
            }
            Some(t) => crate::auth::check(secret, app.cfg.jwt_leeway, &t),
        };
        if let Err(message) = verdict {
            app.metrics
                .connections_refused_auth
                .fetch_add(1, Ordering::Relaxed);
            return refuse(StatusCode::UNAUTHORIZED, message);
        }
    }
    let before = app
        .metrics
        .connections_active
        .fetch_add(1, Ordering::AcqRel);
    let slot = Slot(app.clone());
    if before >= app.cfg.max_connections as i64 {
        drop(slot);
        app.metrics
            .connections_refused_full
            .fetch_add(1, Ordering::Relaxed);
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many connections (max_connections = {})",
                app.cfg.max_connections
            ),
        );
    }
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            crate::ws::serve(socket, app).await;
            drop(slot);
        })
}

fn disk_ok() -> bool {
    let path = std::ffi::CString::new(".").expect("no NUL");
    // SAFETY: statvfs(3) into a zeroed struct with a NUL-terminated path.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut st) != 0 {
            return false;
        }
        let free = st.f_bavail as u128 * st.f_frsize as u128;
        let total = st.f_blocks as u128 * st.f_frsize as u128;
        free >= 1 << 30 || (total > 0 && free * 20 >= total)
    }
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let db = app.db_up.load(Ordering::Acquire);
    let redis = app.redis.state();
    let disk = disk_ok();
    let status = if !db {
        "unhealthy"
    } else if redis == RedisState::Down || !disk {
        "degraded"
    } else {
        "healthy"
    };
    let body = json!({
        "status": status,
        "timestamp": chrono::Utc::now(),
        "checks": {
            "database": if db { "ok" } else { "down" },
            "redis": match redis {
                RedisState::Ok => "ok",
                RedisState::Down => "degraded",
                RedisState::Disabled => "disabled",
            },
            "disk_space": if disk { "ok" } else { "low" },
        }
    });
    let code = if db {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    let reason = if app.shutting_down.load(Ordering::Acquire) {
        Some("shutting down")
    } else if !app.migrated.load(Ordering::Acquire) {
        Some("migrations have not run yet (is PostgreSQL reachable?)")
    } else if !app.db_up.load(Ordering::Acquire) {
        Some("database unavailable")
    } else {
        None
    };
    let (code, body) = match reason {
        None => (
            StatusCode::OK,
            json!({"status": "ready", "timestamp": chrono::Utc::now()}),
        ),
        Some(r) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "reason": r, "timestamp": chrono::Utc::now()}),
        ),
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}
