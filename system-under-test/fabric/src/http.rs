//! The HTTP API (axum 0.8): FlowMesh's stream, queue and KV endpoints,
//! `/admin/snapshot`, plus `/health`, `/ready` and `/metrics`.
//!
//! Routing is by exact path segments; `{tenant}/{namespace}/{name}` (and
//! consumer-group names) are each one segment of `[A-Za-z0-9._-]{1,128}`
//! (not `.` or `..`), so no name can climb out of its directory. Every
//! non-2xx answer, including unknown routes (404), wrong methods (405),
//! rejected bodies, paths or queries (400) and missing credentials (401),
//! is the spec's JSON error body; a 4xx means nothing was applied. Until
//! recovery finishes, `/ready` and every `/api/*` route answer 503
//! `unavailable`; `/health` answers 200 as long as the process serves.
//!
//! When an auth token is configured, `/api/*` and `/admin/*` require
//! `Authorization: Bearer <token>` (compared in constant time) and answer
//! 401 `unauthorized` otherwise; `/health`, `/ready` and `/metrics` stay
//! open. Metrics count only successful operations.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use fabric_wire::{
    AckRequest, AppendRequest, AppendResponse, CommitOffsetRequest, CreatedResponse,
    EnqueueRequest, EnqueueResponse, ErrorBody, ErrorCode, GroupStateResponse, JobsResponse,
    KvGetResponse, KvListResponse, KvPutRequest, LatestOffsetResponse, Message, QueueStatsResponse,
    ReadResponse, ReserveRequest, ReserveResponse, RetryPolicy, RetryPolicyResponse,
    SnapshotRequest, SnapshotResponse, StatusResponse,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::frame::Entry;
use crate::metrics::Metrics;
use crate::queue::MAX_DELAY_SECONDS;
use crate::queue_store::{
    DEFAULT_VISIBILITY_SECONDS, MAX_JOBS, MAX_LONG_POLL_SECONDS, MAX_VISIBILITY_SECONDS,
};
use crate::resource::{ResourceKey, StoreError, rfc3339};
use crate::stores::Stores;

/// Largest request body accepted (16 MiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Most events in one append.
pub const MAX_EVENTS: usize = 1000;
/// Most messages one read returns, and the default.
pub const MAX_MESSAGES: u64 = 1000;
pub const DEFAULT_MESSAGES: u64 = 100;
/// Largest job payload, in bytes (decoded).
pub const MAX_JOB_BYTES: usize = 4 * 1024 * 1024;
/// Most keys one list returns, and the default.
pub const MAX_LIST: usize = 10_000;
pub const DEFAULT_LIST: usize = 1000;
/// Most DLQ jobs one listing returns, and the default.
pub const MAX_DLQ_LIST: usize = 1000;
pub const DEFAULT_DLQ_LIST: usize = 100;

/// Shared state of the handlers. The stores are set once recovery finished.
#[derive(Clone)]
pub struct AppState {
    stores: Arc<OnceLock<Arc<Stores>>>,
    metrics: Arc<Metrics>,
    auth_token: Option<Arc<str>>,
}

impl AppState {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            stores: Arc::new(OnceLock::new()),
            metrics,
            auth_token: None,
        }
    }

    /// Requires `Authorization: Bearer <token>` on `/api/*` and `/admin/*`.
    pub fn with_auth_token(mut self, token: Option<String>) -> Self {
        self.auth_token = token.map(Arc::from);
        self
    }

    /// Marks the node ready, serving `stores`.
    pub fn set_ready(&self, stores: Arc<Stores>) {
        let _ = self.stores.set(stores);
    }

    pub fn is_ready(&self) -> bool {
        self.stores.get().is_some()
    }

    fn stores(&self) -> Result<&Arc<Stores>, ApiError> {
        self.stores
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
        let mut r = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => Self::new(ErrorCode::NotFound, m),
            StoreError::InvalidRequest(m) => Self::new(ErrorCode::InvalidRequest, m),
            StoreError::Conflict(m) => Self::new(ErrorCode::Conflict, m),
            StoreError::LeaseExpired(m) => Self::new(ErrorCode::LeaseExpired, m),
            StoreError::Unavailable(m) => Self::new(ErrorCode::Unavailable, m),
            StoreError::Internal(m) => Self::new(ErrorCode::Internal, m),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

const STREAM: &str = "/api/v1/streams/{tenant}/{namespace}/{name}";
const QUEUE: &str = "/api/v1/queues/{tenant}/{namespace}/{name}";
const KV: &str = "/api/v1/kv/{tenant}/{namespace}/{name}";

/// The full router: API, admin, health, readiness and metrics.
pub fn router(state: AppState) -> Router {
    let r = |tail: &str, base: &str| format!("{base}{tail}");
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/admin/snapshot", post(snapshot))
        .route(STREAM, put(create_stream))
        .route(&r("/events", STREAM), post(append))
        .route(&r("/messages", STREAM), get(read))
        .route(&r("/offsets/latest", STREAM), get(latest))
        .route(
            &r("/consumer-groups/{group}/offsets", STREAM),
            post(commit_offset).get(group_offset),
        )
        .route(
            &r("/consumer-groups/{group}/state", STREAM),
            get(group_state),
        )
        .route(QUEUE, put(create_queue))
        .route(&r("/jobs", QUEUE), post(enqueue))
        .route(&r("/reserve", QUEUE), post(reserve))
        .route(&r("/receive", QUEUE), post(receive))
        .route(&r("/jobs/{id}/ack", QUEUE), post(ack))
        .route(&r("/jobs/{id}/nack", QUEUE), post(nack))
        .route(&r("/retry-policy", QUEUE), get(get_policy).put(put_policy))
        .route(&r("/dlq/jobs", QUEUE), get(dlq))
        .route(&r("/dlq/jobs/{id}/replay", QUEUE), post(replay))
        .route(&r("/stats", QUEUE), get(stats))
        .route(KV, put(create_kv))
        .route(&r("/keys", KV), get(kv_list))
        .route(
            &r("/keys/{key}", KV),
            get(kv_get).head(kv_head).put(kv_put).delete(kv_delete),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(refuse_oversized))
        .layer(middleware::from_fn(crate::test_knob::apply))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
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

/// Whether `header` carries the bearer `token` (constant-time comparison).
pub fn bearer_matches(header: Option<&HeaderValue>, token: &str) -> bool {
    let Some(given) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return false;
    };
    bool::from(given.trim().as_bytes().ct_eq(token.as_bytes()))
}

async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.auth_token {
        let path = req.uri().path();
        let protected = path.starts_with("/api/") || path.starts_with("/admin/");
        if protected && !bearer_matches(req.headers().get(header::AUTHORIZATION), token) {
            return ApiError::new(
                ErrorCode::Unauthorized,
                "missing or wrong bearer token (Authorization: Bearer <token>)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Bodies a refused request may declare that are still read (and dropped)
/// before the answer; a larger one is answered at once.
const DRAIN_AT_MOST: u64 = 64 * 1024 * 1024;

/// Refuses a request whose declared body is over [`MAX_BODY_BYTES`] from
/// its `Content-Length`, without buffering it. The body is read and
/// dropped first (up to [`DRAIN_AT_MOST`]): a server that answers and
/// closes while the client is still sending resets the connection, and
/// most clients (hyper, reqwest) then report a broken pipe instead of the
/// answer. A body without a declared length is cut off at the limit as it
/// is read.
async fn refuse_oversized(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(len) = declared.filter(|&len| len > MAX_BODY_BYTES as u64) else {
        return next.run(req).await;
    };
    if len <= DRAIN_AT_MOST {
        use axum::body::HttpBody as _;
        let mut body = req.into_body();
        while let Some(Ok(_)) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
        {}
    }
    ApiError::invalid(format!(
        "request body of {len} bytes is over the limit of {MAX_BODY_BYTES} bytes"
    ))
    .into_response()
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
    state.stores()?;
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

fn success() -> Json<StatusResponse> {
    Json(StatusResponse {
        status: "success".into(),
    })
}

type ResPath = Result<Path<(String, String, String)>, PathRejection>;
type ResPath4 = Result<Path<(String, String, String, String)>, PathRejection>;
type Body = Result<Bytes, BytesRejection>;

fn key_of(path: ResPath) -> ApiResult<ResourceKey> {
    let Path((t, ns, s)) = path.map_err(|e| ApiError::invalid(format!("invalid path: {e}")))?;
    Ok(ResourceKey::new(&t, &ns, &s)?)
}

fn key_and(path: ResPath4) -> ApiResult<(ResourceKey, String)> {
    let Path((t, ns, s, x)) = path.map_err(|e| ApiError::invalid(format!("invalid path: {e}")))?;
    Ok((ResourceKey::new(&t, &ns, &s)?, x))
}

/// Parses a JSON body; an empty body reads as `{}` when `empty_ok`.
fn json_body<T: DeserializeOwned>(body: Body, empty_ok: bool) -> ApiResult<T> {
    let body = body.map_err(|e| ApiError::invalid(format!("cannot read body: {e}")))?;
    let bytes: &[u8] = if empty_ok && body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &body
    };
    serde_json::from_slice(bytes).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

/// A number of seconds in `min..=max` as a duration.
fn seconds(v: f64, name: &str, min: f64, max: f64) -> ApiResult<Duration> {
    if !v.is_finite() || v < min || v > max {
        return Err(ApiError::invalid(format!(
            "{name} must be between {min} and {max}"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

fn created(created: bool) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(CreatedResponse {
            status: "success".into(),
            created,
        }),
    )
        .into_response()
}

// ---------------------------------------------------------------- streams

async fn create_stream(State(state): State<AppState>, path: ResPath) -> ApiResult<Response> {
    let stores = state.stores()?;
    let key = key_of(path)?;
    Ok(created(stores.streams.create(&key).await?))
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
    path: ResPath,
    body: Body,
) -> ApiResult<Json<AppendResponse>> {
    let started = Instant::now();
    let stores = state.stores()?;
    let key = key_of(path)?;
    let body = body.map_err(|e| ApiError::invalid(format!("cannot read body: {e}")))?;
    let entries = parse_append(&body)?;
    let n = entries.len() as u64;
    if crate::test_knob::fake_ack(crate::test_knob::FakeAck::Append) {
        // Test-only broken durability: acknowledged, never written.
        let next = stores.streams.latest(&key)?.map_or(0, |o| o + 1);
        return Ok(Json(AppendResponse {
            status: "success".into(),
            offsets: (next..next + n).collect(),
        }));
    }
    let offsets = stores.streams.append(&key, entries).await?;
    state.metrics.events_written.fetch_add(n, Relaxed);
    state.metrics.observe_op("append", started.elapsed());
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
    path: ResPath,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> ApiResult<Json<ReadResponse>> {
    let started = Instant::now();
    let stores = state.stores()?;
    let key = key_of(path)?;
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("invalid query: {e}")))?;
    let max = q.max_messages.unwrap_or(DEFAULT_MESSAGES);
    if !(1..=MAX_MESSAGES).contains(&max) {
        return Err(ApiError::invalid(format!(
            "max_messages must be between 1 and {MAX_MESSAGES}"
        )));
    }
    let entries = stores
        .streams
        .read(&key, q.offset.unwrap_or(0), max as usize)
        .await?;
    let messages: Vec<Message> = entries
        .into_iter()
        .map(|e| Message {
            id: format!("{key}:{}", e.offset),
            offset: e.offset,
            payload: fabric_wire::encode_payload(&e.entry.payload),
            headers: e.entry.headers,
            created_at: rfc3339(e.timestamp_us),
        })
        .collect();
    state
        .metrics
        .events_read
        .fetch_add(messages.len() as u64, Relaxed);
    state.metrics.observe_op("read", started.elapsed());
    Ok(Json(ReadResponse {
        status: "success".into(),
        messages,
    }))
}

async fn latest(
    State(state): State<AppState>,
    path: ResPath,
) -> ApiResult<Json<LatestOffsetResponse>> {
    let stores = state.stores()?;
    let key = key_of(path)?;
    let offset = stores.streams.latest(&key)?.map_or(-1, |o| o as i64);
    Ok(Json(LatestOffsetResponse {
        status: "success".into(),
        offset,
    }))
}

async fn commit_offset(
    State(state): State<AppState>,
    path: ResPath4,
    body: Body,
) -> ApiResult<Json<StatusResponse>> {
    let started = Instant::now();
    let stores = state.stores()?;
    let (key, group) = key_and(path)?;
    let req: CommitOffsetRequest = json_body(body, false)?;
    stores
        .streams
        .commit_group(&key, &group, req.offset)
        .await?;
    state.metrics.observe_op("commit_offset", started.elapsed());
    Ok(success())
}

async fn group_offset(
    State(state): State<AppState>,
    path: ResPath4,
) -> ApiResult<Json<LatestOffsetResponse>> {
    let stores = state.stores()?;
    let (key, group) = key_and(path)?;
    let offset = stores.streams.group_offset(&key, &group).await?;
    Ok(Json(LatestOffsetResponse {
        status: "success".into(),
        offset: offset.map_or(-1, |o| o as i64),
    }))
}

async fn group_state(
    State(state): State<AppState>,
    path: ResPath4,
) -> ApiResult<Json<GroupStateResponse>> {
    let stores = state.stores()?;
    let (key, group) = key_and(path)?;
    let s = stores.streams.group_state(&key, &group).await?;
    Ok(Json(GroupStateResponse {
        status: "success".into(),
        group,
        committed_offset: s.committed_offset,
        latest_offset: s.latest_offset,
        lag: s.lag,
    }))
}

// ----------------------------------------------------------------- queues

async fn create_queue(State(state): State<AppState>, path: ResPath) -> ApiResult<Response> {
    let stores = state.stores()?;
    let key = key_of(path)?;
    Ok(created(stores.queues.create(&key).await?))
}

async fn enqueue(
    State(state): State<AppState>,
    path: ResPath,
    body: Body,
) -> ApiResult<Json<EnqueueResponse>> {
    let started = Instant::now();
    let stores = state.stores()?;
    let key = key_of(path)?;
    let req: EnqueueRequest = json_body(body, false)?;
    let payload = fabric_wire::decode_payload(&req.payload)
        .ok_or_else(|| ApiError::invalid("payload is not valid base64"))?;
    if payload.len() > MAX_JOB_BYTES {
        return Err(ApiError::invalid(format!(
            "a job payload has at most {MAX_JOB_BYTES} bytes"
        )));
    }
    let delay = seconds(req.delay_seconds, "delay_seconds", 0.0, MAX_DELAY_SECONDS)?;
    if crate::test_knob::fake_ack(crate::test_knob::FakeAck::Enqueue) {
        // Test-only broken durability: acknowledged, never enqueued.
        return Ok(Json(EnqueueResponse {
            status: "success".into(),
            job_id: crate::test_knob::fake_job_id(),
            seq: 0,
        }));
    }
    let (job_id, seq) = stores
        .queues
        .enqueue(&key, payload, req.headers, delay)
        .await?;
    state.metrics.jobs_enqueued.fetch_add(1, Relaxed);
    state.metrics.observe_op("enqueue", started.elapsed());
    Ok(Json(EnqueueResponse {
        status: "success".into(),
        job_id,
        seq,
    }))
}

async fn reserve_jobs(
    state: &AppState,
    path: ResPath,
    body: Body,
    many: bool,
) -> ApiResult<Vec<fabric_wire::Job>> {
    let stores = state.stores()?;
    let key = key_of(path)?;
    let req: ReserveRequest = json_body(body, true)?;
    let max = if many {
        let m = req.max_jobs.unwrap_or(1);
        if !(1..=MAX_JOBS).contains(&m) {
            return Err(ApiError::invalid(format!(
                "max_jobs must be between 1 and {MAX_JOBS}"
            )));
        }
        m as usize
    } else {
        1
    };
    let visibility = seconds(
        req.visibility_timeout_seconds
            .unwrap_or(DEFAULT_VISIBILITY_SECONDS),
        "visibility_timeout_seconds",
        0.001,
        MAX_VISIBILITY_SECONDS,
    )?;
    let wait = seconds(
        req.long_poll_timeout_seconds.unwrap_or(0.0),
        "long_poll_timeout_seconds",
        0.0,
        MAX_LONG_POLL_SECONDS,
    )?;
    let jobs = stores.queues.reserve(&key, max, visibility, wait).await?;
    state
        .metrics
        .jobs_dequeued
        .fetch_add(jobs.len() as u64, Relaxed);
    Ok(jobs)
}

async fn reserve(
    State(state): State<AppState>,
    path: ResPath,
    body: Body,
) -> ApiResult<Json<ReserveResponse>> {
    let started = Instant::now();
    let job = reserve_jobs(&state, path, body, false)
        .await?
        .into_iter()
        .next();
    state.metrics.observe_op("reserve", started.elapsed());
    Ok(Json(ReserveResponse {
        status: "success".into(),
        job,
    }))
}

async fn receive(
    State(state): State<AppState>,
    path: ResPath,
    body: Body,
) -> ApiResult<Json<JobsResponse>> {
    let started = Instant::now();
    let jobs = reserve_jobs(&state, path, body, true).await?;
    state.metrics.observe_op("receive", started.elapsed());
    Ok(Json(JobsResponse {
        status: "success".into(),
        jobs,
    }))
}

async fn ack(
    State(state): State<AppState>,
    path: ResPath4,
    body: Body,
) -> ApiResult<Json<StatusResponse>> {
    let started = Instant::now();
    let stores = state.stores()?;
    let (key, id) = key_and(path)?;
    let req: AckRequest = json_body(body, true)?;
    if req.delay_seconds.is_some() {
        return Err(ApiError::invalid("an ack takes no delay_seconds"));
    }
    if stores.queues.ack(&key, &id, req.lease_id).await? {
        state.metrics.jobs_acked.fetch_add(1, Relaxed);
    }
    state.metrics.observe_op("ack", started.elapsed());
    Ok(success())
}

async fn nack(
    State(state): State<AppState>,
    path: ResPath4,
    body: Body,
) -> ApiResult<Json<StatusResponse>> {
    let started = Instant::now();
    let stores = state.stores()?;
    let (key, id) = key_and(path)?;
    let req: AckRequest = json_body(body, true)?;
    let delay = req
        .delay_seconds
        .map(|d| seconds(d, "delay_seconds", 0.0, MAX_DELAY_SECONDS))
        .transpose()?;
    let dead = stores.queues.nack(&key, &id, req.lease_id, delay).await?;
    state.metrics.jobs_nacked.fetch_add(1, Relaxed);
    if dead {
        state.metrics.jobs_dead_lettered.fetch_add(1, Relaxed);
    }
    state.metrics.observe_op("nack", started.elapsed());
    Ok(success())
}

fn policy_response(policy: RetryPolicy) -> Json<RetryPolicyResponse> {
    Json(RetryPolicyResponse {
        status: "success".into(),
        policy,
    })
}

async fn get_policy(
    State(state): State<AppState>,
    path: ResPath,
) -> ApiResult<Json<RetryPolicyResponse>> {
    let stores = state.stores()?;
    let key = key_of(path)?;
    Ok(policy_response(stores.queues.policy(&key).await?))
}

async fn put_policy(
    State(state): State<AppState>,
    path: ResPath,
    body: Body,
) -> ApiResult<Json<RetryPolicyResponse>> {
    let stores = state.stores()?;
    let key = key_of(path)?;
    let policy: RetryPolicy = json_body(body, false)?;
    Ok(policy_response(
        stores.queues.set_policy(&key, policy).await?,
    ))
}

#[derive(Debug, Deserialize)]
struct LimitParams {
    limit: Option<usize>,
    #[serde(default)]
    prefix: String,
    /// DLQ listing: only jobs with a `seq` above this one (paging).
    after: Option<u64>,
}

async fn dlq(
    State(state): State<AppState>,
    path: ResPath,
    query: Result<Query<LimitParams>, QueryRejection>,
) -> ApiResult<Json<JobsResponse>> {
    let stores = state.stores()?;
    let key = key_of(path)?;
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("invalid query: {e}")))?;
    let limit = q.limit.unwrap_or(DEFAULT_DLQ_LIST);
    if !(1..=MAX_DLQ_LIST).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_DLQ_LIST}"
        )));
    }
    Ok(Json(JobsResponse {
        status: "success".into(),
        jobs: stores.queues.dlq(&key, q.after, limit).await?,
    }))
}

async fn replay(State(state): State<AppState>, path: ResPath4) -> ApiResult<Json<StatusResponse>> {
    let started = Instant::now();
    let stores = state.stores()?;
    let (key, id) = key_and(path)?;
    stores.queues.replay(&key, &id).await?;
    state.metrics.observe_op("replay", started.elapsed());
    Ok(success())
}

async fn stats(
    State(state): State<AppState>,
    path: ResPath,
) -> ApiResult<Json<QueueStatsResponse>> {
    let stores = state.stores()?;
    let key = key_of(path)?;
    let s = stores.queues.stats(&key).await?;
    Ok(Json(QueueStatsResponse {
        status: "success".into(),
        pending: s.pending,
        in_flight: s.in_flight,
        completed: s.completed,
        failed: s.failed,
        dlq: s.dlq,
        oldest_job_age_seconds: s.oldest_job_age_seconds,
    }))
}

// --------------------------------------------------------------------- kv

async fn create_kv(State(state): State<AppState>, path: ResPath) -> ApiResult<Response> {
    let stores = state.stores()?;
    let key = key_of(path)?;
    Ok(created(stores.kv.create(&key).await?))
}

async fn kv_put(
    State(state): State<AppState>,
    path: ResPath4,
    body: Body,
) -> ApiResult<Json<StatusResponse>> {
    let started = Instant::now();
    let stores = state.stores()?;
    let (store, key) = key_and(path)?;
    crate::kv_store::validate_key(&key)?;
    let req: KvPutRequest = json_body(body, false)?;
    let value = fabric_wire::decode_payload(&req.value)
        .ok_or_else(|| ApiError::invalid("value is not valid base64"))?;
    let ttl = req
        .ttl_seconds
        .map(|t| seconds(t, "ttl_seconds", 0.001, 10.0 * 365.0 * 86400.0))
        .transpose()?;
    if crate::test_knob::fake_ack(crate::test_knob::FakeAck::KvPut) {
        // Test-only broken durability: acknowledged, never stored.
        return Ok(success());
    }
    stores.kv.put(&store, &key, value, ttl).await?;
    state.metrics.kv_writes.fetch_add(1, Relaxed);
    state.metrics.observe_op("kv_put", started.elapsed());
    Ok(success())
}

async fn kv_get(State(state): State<AppState>, path: ResPath4) -> ApiResult<Json<KvGetResponse>> {
    let started = Instant::now();
    let stores = state.stores()?;
    let (store, key) = key_and(path)?;
    let v = stores
        .kv
        .get(&store, &key)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no key `{key}`")))?;
    state.metrics.kv_reads.fetch_add(1, Relaxed);
    state.metrics.observe_op("kv_get", started.elapsed());
    Ok(Json(KvGetResponse {
        status: "success".into(),
        value: fabric_wire::encode_payload(&v.bytes),
        expires_at: v.expires_us.map(rfc3339),
    }))
}

async fn kv_head(State(state): State<AppState>, path: ResPath4) -> ApiResult<Response> {
    let stores = state.stores()?;
    let (store, key) = key_and(path)?;
    match stores.kv.get(&store, &key)? {
        Some(v) => Ok((
            StatusCode::OK,
            [(header::CONTENT_LENGTH, v.bytes.len().to_string())],
        )
            .into_response()),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no key `{key}`"),
        )),
    }
}

async fn kv_delete(
    State(state): State<AppState>,
    path: ResPath4,
) -> ApiResult<Json<StatusResponse>> {
    let started = Instant::now();
    let stores = state.stores()?;
    let (store, key) = key_and(path)?;
    if !stores.kv.delete(&store, &key).await? {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no key `{key}`"),
        ));
    }
    state.metrics.kv_writes.fetch_add(1, Relaxed);
    state.metrics.observe_op("kv_delete", started.elapsed());
    Ok(success())
}

async fn kv_list(
    State(state): State<AppState>,
    path: ResPath,
    query: Result<Query<LimitParams>, QueryRejection>,
) -> ApiResult<Json<KvListResponse>> {
    let stores = state.stores()?;
    let key = key_of(path)?;
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("invalid query: {e}")))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIST);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_LIST}"
        )));
    }
    Ok(Json(KvListResponse {
        status: "success".into(),
        keys: stores.kv.list(&key, &q.prefix, limit)?,
    }))
}

// ------------------------------------------------------------------ admin

async fn snapshot(State(state): State<AppState>, body: Body) -> ApiResult<Json<SnapshotResponse>> {
    let started = Instant::now();
    let stores = state.stores()?;
    let req: SnapshotRequest = json_body(body, false)?;
    let m = crate::backup::snapshot(stores, std::path::Path::new(&req.dir)).await?;
    tracing::info!(dir = %req.dir, files = m.files, bytes = m.bytes, "snapshot written");
    state.metrics.observe_op("snapshot", started.elapsed());
    Ok(Json(SnapshotResponse {
        status: "success".into(),
        dir: req.dir,
        files: m.files,
        bytes: m.bytes,
    }))
}
