//! The HTTP API (axum 0.8): FlowMesh's stream endpoints plus `/health`,
//! `/ready` and `/metrics`.
//!
//! Routing is by exact path segments; `{tenant}/{namespace}/{name}` are each
//! one segment of `[A-Za-z0-9._-]{1,128}` (not `.` or `..`). Every non-2xx
//! answer, including unknown routes (404), wrong methods (405) and rejected
//! bodies, paths or queries (400), is the spec's JSON error body. Until
//! recovery finishes, `/ready` and every `/api/*` route answer 503
//! `unavailable`; `/health` answers 200 as long as the process serves.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use fabric_wire::{
    AppendRequest, AppendResponse, CreatedResponse, ErrorBody, ErrorCode, LatestOffsetResponse,
    Message, ReadResponse,
};
use serde::Deserialize;

use crate::frame::Entry;
use crate::metrics::Metrics;
use crate::stream_store::{StoreError, StreamKey, StreamStore};

/// Largest request body accepted (16 MiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Most events in one append.
pub const MAX_EVENTS: usize = 1000;
/// Most messages one read returns, and the default.
pub const MAX_MESSAGES: u64 = 1000;
pub const DEFAULT_MESSAGES: u64 = 100;

/// Shared state of the handlers. The store is set once recovery finished.
#[derive(Clone)]
pub struct AppState {
    store: Arc<OnceLock<Arc<StreamStore>>>,
    metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            store: Arc::new(OnceLock::new()),
            metrics,
        }
    }

    /// Marks the node ready, serving `store`.
    pub fn set_ready(&self, store: Arc<StreamStore>) {
        let _ = self.store.set(store);
    }

    pub fn is_ready(&self) -> bool {
        self.store.get().is_some()
    }

    fn store(&self) -> Result<&Arc<StreamStore>, ApiError> {
        self.store
            .get()
            .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "recovery has not finished"))
    }
}

/// A JSON error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let status = match code {
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Conflict | ErrorCode::LeaseExpired => StatusCode::CONFLICT,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self {
            status,
            body: ErrorBody::new(code, message),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => Self::new(ErrorCode::NotFound, m),
            StoreError::InvalidRequest(m) => Self::new(ErrorCode::InvalidRequest, m),
            StoreError::Unavailable(m) => Self::new(ErrorCode::Unavailable, m),
            StoreError::Internal(m) => Self::new(ErrorCode::Internal, m),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The full router: API, health, readiness and metrics.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/streams/{tenant}/{namespace}/{name}",
            put(create_stream),
        )
        .route(
            "/api/v1/streams/{tenant}/{namespace}/{name}/events",
            post(append),
        )
        .route(
            "/api/v1/streams/{tenant}/{namespace}/{name}/messages",
            get(read),
        )
        .route(
            "/api/v1/streams/{tenant}/{namespace}/{name}/offsets/latest",
            get(latest),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// A router serving only `/metrics` (for `--metrics-addr`).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let resp = next.run(req).await;
    state.metrics.http_request(&route, resp.status().as_u16());
    resp
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        body: ErrorBody::new(
            ErrorCode::InvalidRequest,
            "method not allowed for this route",
        ),
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "healthy"}))
}

async fn ready(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    state.store()?;
    Ok(Json(serde_json::json!({"status": "ready"})))
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

type StreamPath = Result<Path<(String, String, String)>, PathRejection>;

fn key_of(path: StreamPath) -> ApiResult<StreamKey> {
    let Path((t, ns, s)) = path.map_err(|e| ApiError::invalid(format!("invalid path: {e}")))?;
    Ok(StreamKey::new(&t, &ns, &s)?)
}

async fn create_stream(State(state): State<AppState>, path: StreamPath) -> ApiResult<Response> {
    let store = state.store()?;
    let key = key_of(path)?;
    let created = store.create(&key).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(CreatedResponse {
            status: "success".into(),
            created,
        }),
    )
        .into_response())
}

/// Validates an append body and turns it into log entries.
pub fn parse_append(body: &[u8]) -> ApiResult<Vec<Entry>> {
    let req: AppendRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
    if req.events.is_empty() {
        return Err(ApiError::invalid("`events` must hold at least one event"));
    }
    if req.events.len() > MAX_EVENTS {
        return Err(ApiError::invalid(format!(
            "at most {MAX_EVENTS} events per append, got {}",
            req.events.len()
        )));
    }
    req.events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let payload = fabric_wire::decode_payload(&e.payload).ok_or_else(|| {
                ApiError::invalid(format!("events[{i}].payload is not valid base64"))
            })?;
            if payload.is_empty() {
                return Err(ApiError::invalid(format!("events[{i}].payload is empty")));
            }
            Ok(Entry {
                headers: e.headers,
                payload,
            })
        })
        .collect()
}

async fn append(
    State(state): State<AppState>,
    path: StreamPath,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<AppendResponse>> {
    let started = Instant::now();
    let store = state.store()?;
    let key = key_of(path)?;
    let body = body.map_err(|e| ApiError::invalid(format!("cannot read body: {e}")))?;
    let entries = parse_append(&body)?;
    let n = entries.len() as u64;
    let offsets = store.append(&key, entries).await?;
    state
        .metrics
        .events_written
        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    state.metrics.append_duration.observe(started.elapsed());
    Ok(Json(AppendResponse {
        status: "success".into(),
        offsets,
    }))
}

#[derive(Debug, Deserialize)]
struct ReadParams {
    offset: Option<u64>,
    max_messages: Option<u64>,
}

async fn read(
    State(state): State<AppState>,
    path: StreamPath,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> ApiResult<Json<ReadResponse>> {
    let started = Instant::now();
    let store = state.store()?;
    let key = key_of(path)?;
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("invalid query: {e}")))?;
    let max = q.max_messages.unwrap_or(DEFAULT_MESSAGES);
    if !(1..=MAX_MESSAGES).contains(&max) {
        return Err(ApiError::invalid(format!(
            "max_messages must be between 1 and {MAX_MESSAGES}"
        )));
    }
    let entries = store
        .read(&key, q.offset.unwrap_or(0), max as usize)
        .await?;
    let messages: Vec<Message> = entries
        .into_iter()
        .map(|e| Message {
            id: format!("{key}:{}", e.offset),
            offset: e.offset,
            payload: fabric_wire::encode_payload(&e.entry.payload),
            headers: e.entry.headers,
            created_at: jiff::Timestamp::from_microsecond(e.timestamp_us)
                .map(|t| t.to_string())
                .unwrap_or_default(),
        })
        .collect();
    state
        .metrics
        .events_read
        .fetch_add(messages.len() as u64, std::sync::atomic::Ordering::Relaxed);
    state.metrics.read_duration.observe(started.elapsed());
    Ok(Json(ReadResponse {
        status: "success".into(),
        messages,
    }))
}

async fn latest(
    State(state): State<AppState>,
    path: StreamPath,
) -> ApiResult<Json<LatestOffsetResponse>> {
    let store = state.store()?;
    let key = key_of(path)?;
    let offset = store.latest(&key)?.map_or(-1, |o| o as i64);
    Ok(Json(LatestOffsetResponse {
        status: "success".into(),
        offset,
    }))
}
