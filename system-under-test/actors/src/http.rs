//! The HTTP API (axum): routes, body parsing and the one error format.
//!
//! Batches are parsed without copying payloads: every message's payload
//! (and key) is a slice of the request body.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::component::Fault;
use crate::error::{ApiError, Code};
use crate::message::Message;
use crate::node::{Node, Wait};
use crate::resource::CpuGauge;
use crate::spec::ComponentSpec;

/// The largest request body.
pub const MAX_BODY: usize = 64 << 20;

#[derive(Clone)]
pub struct AppState {
    pub node: Node,
    pub ready: Arc<AtomicBool>,
    pub cpu: Arc<CpuGauge>,
    pub max_cpu_percent: Option<f64>,
    pub max_memory_bytes: Option<u64>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body =
            json!({"status": "error", "code": self.code.as_str(), "message": self.message});
        if let Some((handled, failed)) = self.counts {
            body["handled"] = json!(handled);
            body["failed"] = json!(failed);
        }
        (status, axum::Json(body)).into_response()
    }
}

type Answer = Result<Response, ApiError>;

fn ok(status: StatusCode, body: Value) -> Answer {
    Ok((status, axum::Json(body)).into_response())
}

fn name_of(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(n)| n)
        .map_err(|e| ApiError::invalid(format!("bad path: {e}")))
}

fn body_of(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        ApiError::invalid(format!(
            "cannot read the body ({e}); the limit is {MAX_BODY} bytes"
        ))
    })
}

/// The API router (also serves `/metrics`).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/components", get(list))
        .route("/api/v1/components:spawn", post(spawn_many))
        .route(
            "/api/v1/components/{name}",
            put(spawn).get(status).delete(stop),
        )
        .route(
            "/api/v1/components/{name}/messages",
            post(messages::<false>),
        )
        .route("/api/v1/components/{name}/request", post(request))
        .route("/api/v1/components/{name}/faults", post(faults))
        .route("/api/v1/topics/{name}/messages", post(messages::<true>))
        .route("/api/v1/topics/{name}/subscribers", post(subscribe))
        .route("/api/v1/registry/{name}", get(lookup))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The metrics-only router (a separate `--metrics-port`).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        Code::NotFound,
        "no such endpoint (see GET /health, /api/v1/components)",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::invalid("method not allowed on this path").with_status(405)
}

fn is_toml(headers: &HeaderMap, body: &[u8]) -> bool {
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        Some(ct) if ct.contains("toml") => true,
        Some(ct) if ct.contains("json") => false,
        _ => body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_none_or(|b| *b != b'{'),
    }
}

async fn spawn(
    State(s): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let name = name_of(name)?;
    let body = body_of(body)?;
    crate::spec::check_name(&name)?;
    let spec = ComponentSpec::parse(&body, is_toml(&headers, &body), &name)?;
    let r = s.node.spawn(&name, spec).await?;
    let status = if r.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut out = json!({"status": "success", "name": name, "spawn_us": r.micros});
    if r.existing {
        out["existing"] = json!(true);
    }
    ok(status, out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpawnMany {
    template: Value,
    count: usize,
    #[serde(default)]
    prefix: String,
}

async fn spawn_many(State(s): State<AppState>, body: Result<Bytes, BytesRejection>) -> Answer {
    let body = body_of(body)?;
    let req: SpawnMany = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "spawn request: {e} (expected {{\"template\":{{…}},\"count\":n,\"prefix\":\"p-\"}})"
        ))
    })?;
    if req.count > 100_000 {
        return Err(ApiError::invalid("count is limited to 100000 per request"));
    }
    let template: ComponentSpec = serde_json::from_value(req.template)
        .map_err(|e| ApiError::invalid(format!("template: {e}")))?;
    let mut micros = s.node.spawn_many(&template, req.count, &req.prefix).await?;
    micros.sort_unstable();
    let pick = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize];
    ok(
        StatusCode::CREATED,
        json!({
            "status": "success",
            "spawned": micros.len(),
            "names": [format!("{}0", req.prefix), format!("{}{}", req.prefix, micros.len() - 1)],
            "spawn_us": {"p50": pick(0.5), "p99": pick(0.99), "max": micros[micros.len() - 1]},
        }),
    )
}

async fn stop(State(s): State<AppState>, name: Result<Path<String>, PathRejection>) -> Answer {
    let name = name_of(name)?;
    let handled = s.node.stop(&name).await?;
    ok(
        StatusCode::OK,
        json!({"status": "success", "name": name, "handled": handled}),
    )
}

#[derive(Deserialize)]
struct Prefix {
    #[serde(default)]
    prefix: String,
}

async fn list(
    State(s): State<AppState>,
    q: Result<Query<Prefix>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let Query(q) = q.map_err(|e| ApiError::invalid(format!("bad query: {e}")))?;
    ok(
        StatusCode::OK,
        json!({"components": s.node.list(&q.prefix)}),
    )
}

async fn status(State(s): State<AppState>, name: Result<Path<String>, PathRejection>) -> Answer {
    let name = name_of(name)?;
    let st = s
        .node
        .status(&name)
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("no component named `{name}`")))?;
    ok(
        StatusCode::OK,
        serde_json::to_value(st).expect("status serialises"),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InBatch<'a> {
    #[serde(borrow)]
    messages: Vec<InMessage<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InMessage<'a> {
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    payload: Option<&'a RawValue>,
}

/// Parses a batch: JSON `{"messages":[…]}` or octet-stream (big-endian u32
/// length before each payload). Payloads and keys are slices of `body`.
pub fn parse_batch(
    headers: &HeaderMap,
    body: &Bytes,
    max: usize,
) -> Result<Vec<Message>, ApiError> {
    let octets = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/octet-stream"));
    let too_many = |n: usize| {
        ApiError::invalid(format!(
            "the batch holds more than {max} messages (AIRSSYS_MAX_BATCH); split it (got at least {n})"
        ))
    };
    if octets {
        let mut out = Vec::new();
        let mut at = 0usize;
        while at < body.len() {
            if body.len() - at < 4 {
                return Err(ApiError::invalid(format!(
                    "octet-stream batch: {} stray bytes at offset {at} (each payload needs a 4-byte big-endian length)",
                    body.len() - at
                )));
            }
            let len = u32::from_be_bytes(body[at..at + 4].try_into().expect("4 bytes")) as usize;
            at += 4;
            if body.len() - at < len {
                return Err(ApiError::invalid(format!(
                    "octet-stream batch: message {} claims {len} bytes at offset {at} but {} remain",
                    out.len(),
                    body.len() - at
                )));
            }
            out.push(Message::new(body.slice(at..at + len)));
            at += len;
            if out.len() > max {
                return Err(too_many(out.len()));
            }
        }
        return Ok(out);
    }
    let parsed: InBatch<'_> = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(format!(
            "batch JSON: {e} (expected {{\"messages\":[{{\"key\":\"k\",\"payload\":…}}]}})"
        ))
    })?;
    if parsed.messages.len() > max {
        return Err(too_many(parsed.messages.len()));
    }
    let base = body.as_ptr() as usize;
    let slice = |s: &str| -> Bytes {
        let off = s.as_ptr() as usize - base;
        body.slice(off..off + s.len())
    };
    Ok(parsed
        .messages
        .into_iter()
        .map(|m| Message {
            key: m.key.map(|k| match k {
                Cow::Borrowed(s) => slice(s),
                Cow::Owned(s) => Bytes::from(s),
            }),
            payload: m
                .payload
                .map_or(Bytes::from_static(b"null"), |p| slice(p.get())),
        })
        .collect())
}

#[derive(Deserialize)]
struct WaitQuery {
    #[serde(default)]
    wait: Option<String>,
}

async fn send(
    s: &AppState,
    name: &str,
    topic: bool,
    q: WaitQuery,
    headers: &HeaderMap,
    body: &Bytes,
) -> Answer {
    let wait = match q.wait.as_deref() {
        None | Some("handled") => Wait::Handled,
        Some("queued") => Wait::Queued,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "wait=`{other}`: use `handled` (default) or `queued`"
            )));
        }
    };
    s.node
        .is_accepting()
        .then_some(())
        .ok_or_else(|| ApiError::unavailable("the node is shutting down"))?;
    let comp = s.node.lookup(name).ok_or_else(|| ApiError::unknown(name))?;
    if topic && !matches!(comp.spec.behavior, crate::spec::Behavior::Topic) {
        return Err(ApiError::invalid(format!(
            "`{name}` is a `{}`, not a topic",
            comp.spec.behavior.kind()
        )));
    }
    let messages = parse_batch(headers, body, s.node.max_batch)?;
    let sent = s.node.send_to(&comp, messages.into(), wait).await?;
    let mut out = json!({"status": "success"});
    match wait {
        Wait::Queued => out["queued"] = json!(sent.messages),
        Wait::Handled => {
            out["handled"] = json!(sent.messages);
            if topic || matches!(comp.spec.behavior, crate::spec::Behavior::Topic) {
                out["deliveries"] = json!(sent.deliveries);
            }
        }
    }
    ok(StatusCode::OK, out)
}

/// `POST …/components/{name}/messages` (`TOPIC = false`) and
/// `POST …/topics/{name}/messages` (`TOPIC = true`, the name must be a topic).
async fn messages<const TOPIC: bool>(
    State(s): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    q: Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let name = name_of(name)?;
    let Query(q) = q.map_err(|e| ApiError::invalid(format!("bad query: {e}")))?;
    send(&s, &name, TOPIC, q, &headers, &body_of(body)?).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody<'a> {
    #[serde(borrow)]
    payload: &'a RawValue,
}

async fn request(
    State(s): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let name = name_of(name)?;
    let body = body_of(body)?;
    let req: RequestBody<'_> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!("request JSON: {e} (expected {{\"payload\":…}})"))
    })?;
    let base = body.as_ptr() as usize;
    let off = req.payload.get().as_ptr() as usize - base;
    let payload = body.slice(off..off + req.payload.get().len());
    let reply = s.node.request(&name, payload).await?;
    let reply: &RawValue = serde_json::from_slice(&reply)
        .map_err(|_| ApiError::new(Code::HandlerFailed, "the reply is not JSON"))?;
    let text = format!("{{\"status\":\"success\",\"reply\":{}}}", reply.get());
    Ok(([(header::CONTENT_TYPE, "application/json")], text).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeBody {
    component: String,
}

async fn subscribe(
    State(s): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let topic = name_of(name)?;
    let body = body_of(body)?;
    let req: SubscribeBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "subscriber JSON: {e} (expected {{\"component\":\"name\"}})"
        ))
    })?;
    let new = s.node.subscribe(&topic, &req.component).await?;
    ok(
        if new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        json!({"status": "success", "topic": topic, "component": req.component}),
    )
}

async fn lookup(State(s): State<AppState>, name: Result<Path<String>, PathRejection>) -> Answer {
    let name = name_of(name)?;
    let t0 = Instant::now();
    let found = s.node.lookup(&name);
    s.node.metrics().registry_lookup.observe(t0.elapsed());
    if let Some(c) = found {
        return ok(
            StatusCode::OK,
            json!({"node": s.node.name(), "name": name, "state": c.state().as_str()}),
        );
    }
    // Not here: the first peer (by name) that has it answers.
    if let Some(cluster) = s.node.cluster()
        && let Some((node, state)) = cluster.lookup(&name).await
    {
        return ok(
            StatusCode::OK,
            json!({"node": node, "name": name, "state": state}),
        );
    }
    Err(ApiError::new(
        Code::NotFound,
        format!("no component named `{name}` on this node or its peers"),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultBody {
    #[serde(default)]
    panic_after: Option<u64>,
    #[serde(default)]
    repeat: bool,
    #[serde(default)]
    stall_ms: Option<u64>,
    #[serde(default)]
    clear: bool,
}

async fn faults(
    State(s): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    if !s.node.test_faults {
        return Err(ApiError::new(
            Code::NotFound,
            "the fault endpoint is off (start the node with AIRSSYS_TEST_FAULTS=1)",
        ));
    }
    let name = name_of(name)?;
    let body = body_of(body)?;
    let f: FaultBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "fault JSON: {e} (expected {{\"panic_after\":n,\"repeat\":false}}, {{\"stall_ms\":n}} or {{\"clear\":true}})"
        ))
    })?;
    if !f.clear && f.panic_after.is_none() && f.stall_ms.is_none() {
        return Err(ApiError::invalid("give panic_after, stall_ms or clear"));
    }
    if f.stall_ms.is_some_and(|ms| ms > 600_000) {
        return Err(ApiError::invalid("stall_ms is limited to 600000"));
    }
    let fault = if f.clear {
        Fault::default()
    } else {
        Fault {
            panic_after: f.panic_after,
            repeat: f.repeat,
            stall_ms: f.stall_ms,
        }
    };
    s.node.set_fault(&name, fault)?;
    ok(
        StatusCode::OK,
        json!({"status": "success", "component": name}),
    )
}

async fn health(State(s): State<AppState>) -> Response {
    let failed = s.node.failed_components();
    let cpu = s.cpu.percent();
    let rss = crate::resource::rss_bytes();
    let mut reasons = Vec::new();
    if failed > 0 {
        reasons.push(format!("{failed} components failed"));
    }
    if s.node.at_capacity() {
        reasons.push("at AIRSSYS_MAX_COMPONENTS".to_string());
    }
    if let Some(max) = s.max_cpu_percent
        && cpu > max
    {
        reasons.push(format!("CPU {cpu:.0}% above AIRSSYS_MAX_CPU_PERCENT {max}"));
    }
    if let (Some(max), Some(rss)) = (s.max_memory_bytes, rss)
        && rss > max
    {
        reasons.push("memory above AIRSSYS_MAX_MEMORY_GB".to_string());
    }
    let status = if reasons.is_empty() {
        "healthy"
    } else {
        "degraded"
    };
    axum::Json(json!({
        "status": status,
        "components_active": s.node.active(),
        "uptime_seconds": s.node.uptime().as_secs(),
        "components_failed": failed,
        "reasons": reasons,
        "cpu_percent": cpu,
        "rss_bytes": rss,
        "accepting": s.node.is_accepting(),
    }))
    .into_response()
}

async fn ready(State(s): State<AppState>) -> Response {
    if s.ready.load(Ordering::Acquire) && s.node.is_accepting() {
        (StatusCode::OK, axum::Json(json!({"status": "ready"}))).into_response()
    } else {
        ApiError::unavailable(
            "not ready: restoring the registry, spawning boot components, or shutting down",
        )
        .into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut text = s
        .node
        .metrics()
        .render(s.node.active(), &s.node.deepest(20));
    if let Some(c) = s.node.cluster() {
        c.render(&mut text);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_batches_slice_the_body() {
        let body = Bytes::from_static(
            br#"{"messages":[{"key":"a","payload":{"n":1}},{"payload":7},{"key":"\u0041"}]}"#,
        );
        let m = parse_batch(&HeaderMap::new(), &body, 10).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(&m[0].payload[..], br#"{"n":1}"#);
        assert_eq!(m[0].key.as_deref(), Some(&b"a"[..]));
        assert_eq!(&m[1].payload[..], b"7");
        assert_eq!(m[2].key.as_deref(), Some(&b"A"[..]));
        assert_eq!(&m[2].payload[..], b"null");
        assert!(parse_batch(&HeaderMap::new(), &body, 2).is_err());
        assert!(
            parse_batch(
                &HeaderMap::new(),
                &Bytes::from_static(b"{\"messages\":[{\"x\":1}]}"),
                9
            )
            .is_err()
        );
    }

    #[test]
    fn octet_batches_are_length_prefixed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/octet-stream".parse().unwrap(),
        );
        let mut body = Vec::new();
        for p in [&b"ab"[..], b"", b"xyz"] {
            body.extend_from_slice(&(p.len() as u32).to_be_bytes());
            body.extend_from_slice(p);
        }
        let m = parse_batch(&h, &Bytes::from(body.clone()), 10).unwrap();
        assert_eq!(
            m.iter().map(|m| m.payload.len()).collect::<Vec<_>>(),
            [2, 0, 3]
        );
        body.truncate(body.len() - 1);
        assert!(parse_batch(&h, &Bytes::from(body), 10).is_err());
    }
}
