//! The HTTP API (spec/reflow-node.md): inports, sinks, the graph, health,
//! readiness, metrics, and — only with `[test] fault_endpoint = true` —
//! `POST /api/v1/test/fault`, the harness's way to make an actor panic or
//! stall. Errors are `{"status":"error","code","message"}`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Config;
use crate::graph::{self, ActorKind, INPORT, OUTPORT};
use crate::node::{Node, SendError};
use crate::state::{BUCKETS, Fault, FaultMode};

pub struct App {
    pub node: Node,
    pub cfg: Config,
}

pub fn router(app: Arc<App>) -> Router {
    let mut r = Router::new()
        .route("/api/v1/inports/{node}/{port}", post(inport))
        .route("/api/v1/sinks/{node}", get(sink))
        .route("/api/v1/graph", get(graph_view))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics));
    if app.cfg.test.fault_endpoint {
        r = r.route("/api/v1/test/fault", post(fault));
    }
    r.fallback(|| async {
        error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint; see /api/v1/inports/{node}/{port}, /api/v1/sinks/{node}, /api/v1/graph, /health, /ready, /metrics",
        )
    })
    .with_state(app)
    .merge(pprof_endpoint::router_from_env())
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"status": "error", "code": code, "message": message.into()})),
    )
        .into_response()
}

/// 404 for a node the graph does not have, listing those of `kind`.
fn unknown_node(
    st: &crate::state::GraphState,
    node: &str,
    kind: ActorKind,
    label: &str,
) -> Response {
    let ids: Vec<&str> = st
        .graph
        .nodes
        .iter()
        .filter(|n| n.kind == kind)
        .map(|n| n.id.as_str())
        .collect();
    error(
        StatusCode::NOT_FOUND,
        "unknown_node",
        format!("no node `{node}`; {label}: {}", ids.join(", ")),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    messages: Vec<Value>,
}

#[derive(Deserialize)]
struct SendQuery {
    wait: Option<String>,
}

async fn inport(
    State(app): State<Arc<App>>,
    Path((node, port)): Path<(String, String)>,
    Query(q): Query<SendQuery>,
    body: axum::body::Bytes,
) -> Response {
    let st = &app.node.state;
    let Some(i) = st.index(&node) else {
        return unknown_node(st, &node, ActorKind::Source, "inports");
    };
    let n = &st.graph.nodes[i];
    if n.kind != ActorKind::Source {
        return error(
            StatusCode::BAD_REQUEST,
            "not_an_inport",
            format!(
                "`{node}` is a {}; only sources take messages over HTTP",
                n.kind.name()
            ),
        );
    }
    if port != INPORT {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_port",
            format!(
                "source `{node}` has one inport, `{INPORT}` (POST /api/v1/inports/{node}/{INPORT})"
            ),
        );
    }
    let to_sink = match q.wait.as_deref() {
        None | Some("accepted") => false,
        Some("sink") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("wait={other}: expected `accepted` (default) or `sink`"),
            );
        }
    };
    let batch: Batch = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("body: {e} (expected {{\"messages\": [ … ]}})"),
            );
        }
    };
    if batch.messages.is_empty() || batch.messages.len() > app.cfg.limits.max_batch {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "a batch of {} messages: give 1 to {} (limits.max_batch)",
                batch.messages.len(),
                app.cfg.limits.max_batch
            ),
        );
    }
    for (k, m) in batch.messages.iter().enumerate() {
        if let Err(e) = graph::fits(n, m) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "message_does_not_fit",
                format!(
                    "message {k} does not fit `{node}.{INPORT}`: {e}; nothing of the batch was accepted"
                ),
            );
        }
    }
    if st.draining.load(Relaxed) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the node is draining for shutdown",
        );
    }
    if app.cfg.runtime.max_memory_mb > 0 && rss_bytes() > app.cfg.runtime.max_memory_mb << 20 {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "resident memory is above runtime.max_memory_mb ({} MiB)",
                app.cfg.runtime.max_memory_mb
            ),
        );
    }
    let count = batch.messages.len();
    match app
        .node
        .send(
            i,
            batch.messages,
            to_sink,
            app.cfg.accept_timeout(),
            app.cfg.sink_timeout(),
            app.cfg.limits.max_in_flight,
        )
        .await
    {
        Ok(_) => axum::Json(json!({
            "status": "ok",
            "accepted": count,
            "delivered": if to_sink { Some(count) } else { None },
        }))
        .into_response(),
        Err(SendError::Unavailable { accepted, message }) => {
            tracing::warn!(node, accepted, "{message}");
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
            r.headers_mut()
                .insert("x-reflow-accepted", accepted.to_string().parse().unwrap());
            r
        }
        Err(SendError::NotDelivered { delivered, message }) => {
            tracing::warn!(node, delivered, "{message}");
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
            r.headers_mut()
                .insert("x-reflow-accepted", count.to_string().parse().unwrap());
            r
        }
    }
}

async fn sink(State(app): State<Arc<App>>, Path(node): Path<String>) -> Response {
    let st = &app.node.state;
    let Some(i) = st.index(&node) else {
        return unknown_node(st, &node, ActorKind::Sink, "sinks");
    };
    let n = &st.nodes[i];
    if n.node.kind != ActorKind::Sink {
        return error(
            StatusCode::BAD_REQUEST,
            "not_a_sink",
            format!("`{node}` is a {}, not a sink", n.node.kind.name()),
        );
    }
    let s = n.sink.lock().unwrap();
    axum::Json(json!({
        "node": node,
        "count": s.count,
        "last": s.last,
        "last_message": s.last_message,
    }))
    .into_response()
}

async fn graph_view(State(app): State<Arc<App>>) -> Response {
    let st = &app.node.state;
    let nodes: Vec<Value> = st
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({
                "id": n.node.id,
                "actor": n.node.kind.name(),
                "received": n.received.load(Relaxed),
                "processed": n.processed.load(Relaxed),
                "emitted": n.emitted.load(Relaxed),
                "dropped": n.dropped.load(Relaxed),
                "failed": n.failed.load(Relaxed),
                "accepted": n.accepted.load(Relaxed),
                "backlog": st.backlog(i),
                "dead": n.dead.lock().unwrap().clone(),
                "processed_per_s": if st.tracing {
                    Some(n.per_second.lock().unwrap().clone())
                } else {
                    None
                },
            })
        })
        .collect();
    let connections: Vec<Value> = st
        .graph
        .nodes
        .iter()
        .flat_map(|n| {
            n.downstream
                .iter()
                .map(move |d| json!({"from": format!("{}.{OUTPORT}", n.id), "to": format!("{d}.{INPORT}")}))
        })
        .collect();
    axum::Json(json!({
        "name": st.graph.name,
        "nodes": nodes,
        "connections": connections,
        "in_flight": st.in_flight(),
        "completed": st.completed.load(Relaxed),
        "accepted": st.nodes.iter().map(|n| n.accepted.load(Relaxed)).sum::<u64>(),
        "tracing": st.tracing,
        "problem": st.problem(app.cfg.stall_after()),
    }))
    .into_response()
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let st = &app.node.state;
    let problem = st.problem(app.cfg.stall_after());
    let body = json!({
        "status": if problem.is_some() { "unhealthy" } else { "healthy" },
        "actors": st.nodes.len(),
        "uptime": st.started.elapsed().as_secs(),
        "memory_usage": rss_bytes(),
        "problem": problem.as_ref().map(|p| p.describe()),
        "stall": problem,
    });
    let code = if problem.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, axum::Json(body)).into_response()
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    if app.node.state.draining.load(Relaxed) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "draining");
    }
    axum::Json(json!({"status": "ready"})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    actor: String,
    mode: String,
    #[serde(default)]
    after: u64,
}

async fn fault(State(app): State<Arc<App>>, axum::Json(f): axum::Json<FaultRequest>) -> Response {
    let st = &app.node.state;
    let Some(i) = st.index(&f.actor) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_node",
            format!("no node `{}`", f.actor),
        );
    };
    let mode = match f.mode.as_str() {
        "panic" => FaultMode::Panic,
        "stall" => FaultMode::Stall,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("mode `{other}`: expected panic or stall"),
            );
        }
    };
    let n = &st.nodes[i];
    let at_received = n.received.load(Relaxed) + f.after;
    *n.fault.lock().unwrap() = Some(Fault { mode, at_received });
    tracing::warn!(
        actor = f.actor,
        mode = f.mode,
        at_received,
        "test fault armed"
    );
    axum::Json(
        json!({"status": "ok", "actor": f.actor, "mode": f.mode, "at_message": at_received + 1}),
    )
    .into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let text = render_metrics(&app);
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

pub fn render_metrics(app: &App) -> String {
    let st = &app.node.state;
    let mut o = String::new();
    let counter = |o: &mut String, name: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
    };
    counter(
        &mut o,
        "reflow_messages_processed_total",
        "Messages an actor processed.",
    );
    for n in &st.nodes {
        let _ = writeln!(
            o,
            "reflow_messages_processed_total{{node=\"{}\",actor=\"{}\"}} {}",
            n.node.id,
            n.node.kind.name(),
            n.processed.load(Relaxed)
        );
    }
    let _ = writeln!(
        o,
        "# HELP reflow_message_processing_seconds Time an actor spent on a message.\n# TYPE reflow_message_processing_seconds histogram"
    );
    for n in &st.nodes {
        let mut cum = 0;
        for (k, le) in BUCKETS.iter().enumerate() {
            cum += n.buckets[k].load(Relaxed);
            let _ = writeln!(
                o,
                "reflow_message_processing_seconds_bucket{{node=\"{}\",le=\"{le}\"}} {cum}",
                n.node.id
            );
        }
        cum += n.buckets[BUCKETS.len()].load(Relaxed);
        let _ = writeln!(
            o,
            "reflow_message_processing_seconds_bucket{{node=\"{}\",le=\"+Inf\"}} {cum}\nreflow_message_processing_seconds_sum{{node=\"{}\"}} {}\nreflow_message_processing_seconds_count{{node=\"{}\"}} {cum}",
            n.node.id,
            n.node.id,
            n.processing_ns.load(Relaxed) as f64 / 1e9,
            n.node.id
        );
    }
    counter(
        &mut o,
        "reflow_actor_failures_total",
        "Actor failures: a panic or stall that stopped its task, or an error.",
    );
    for n in &st.nodes {
        let _ = writeln!(
            o,
            "reflow_actor_failures_total{{node=\"{}\"}} {}",
            n.node.id,
            n.failed.load(Relaxed)
        );
    }
    counter(
        &mut o,
        "reflow_inport_blocked_seconds_total",
        "Time send_to_actor spent blocked on a source's inport.",
    );
    counter(
        &mut o,
        "reflow_messages_accepted_total",
        "Messages a source's inport took.",
    );
    counter(
        &mut o,
        "reflow_inport_timeouts_total",
        "Batches refused as unavailable after the bounded wait.",
    );
    for n in st.nodes.iter().filter(|n| n.node.kind == ActorKind::Source) {
        let id = &n.node.id;
        let _ = writeln!(
            o,
            "reflow_inport_blocked_seconds_total{{node=\"{id}\"}} {}\nreflow_messages_accepted_total{{node=\"{id}\"}} {}\nreflow_inport_timeouts_total{{node=\"{id}\"}} {}",
            st.blocked_seconds(n),
            n.accepted.load(Relaxed),
            n.timeouts.load(Relaxed)
        );
    }
    counter(
        &mut o,
        "reflow_sink_messages_total",
        "Messages that reached a sink.",
    );
    counter(
        &mut o,
        "reflow_messages_dropped_total",
        "Messages a filter dropped.",
    );
    for n in &st.nodes {
        let id = &n.node.id;
        match n.node.kind {
            ActorKind::Sink => {
                let _ = writeln!(
                    o,
                    "reflow_sink_messages_total{{node=\"{id}\"}} {}",
                    n.sink.lock().unwrap().count
                );
            }
            ActorKind::Filter => {
                let _ = writeln!(
                    o,
                    "reflow_messages_dropped_total{{node=\"{id}\"}} {}",
                    n.dropped.load(Relaxed)
                );
            }
            _ => {}
        }
    }
    let _ = writeln!(
        o,
        "# HELP reflow_trace_events_handed_total Events the node's actors handed the tracing client (one actor_completed per message processed).\n# TYPE reflow_trace_events_handed_total counter"
    );
    if app.node.tracing_enabled {
        for n in &st.nodes {
            let _ = writeln!(
                o,
                "reflow_trace_events_handed_total{{node=\"{}\",event=\"actor_completed\"}} {}",
                n.node.id,
                n.processed.load(Relaxed)
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP reflow_network_events_total Runtime events drained from the network's channel.\n# TYPE reflow_network_events_total counter"
    );
    for (k, v) in st.network_events.lock().unwrap().iter() {
        let _ = writeln!(o, "reflow_network_events_total{{event=\"{k}\"}} {v}");
    }
    let problem = st.problem(app.cfg.stall_after());
    let _ = writeln!(
        o,
        "# HELP reflow_messages_in_flight Accepted messages not yet at every sink.\n# TYPE reflow_messages_in_flight gauge\nreflow_messages_in_flight {}\n# HELP reflow_messages_completed_total Accepted messages whose every copy reached a sink or was filtered out.\n# TYPE reflow_messages_completed_total counter\nreflow_messages_completed_total {}\n# HELP reflow_healthy 1 healthy, 0 an actor died or the graph stalled.\n# TYPE reflow_healthy gauge\nreflow_healthy {}\n# HELP reflow_tracing_enabled 1 when the tracing client is on.\n# TYPE reflow_tracing_enabled gauge\nreflow_tracing_enabled {}",
        st.in_flight(),
        st.completed.load(Relaxed),
        u8::from(problem.is_none()),
        u8::from(app.node.tracing_enabled),
    );
    if let Some(p) = problem {
        let _ = writeln!(
            o,
            "# HELP reflow_stalled_messages Messages stuck before the actor named as stalled.\n# TYPE reflow_stalled_messages gauge\nreflow_stalled_messages{{node=\"{}\"}} {}",
            p.actor, p.stuck
        );
    }
    o
}

/// Resident set size of this process, bytes.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// For the drain on shutdown: how long a request may still take.
pub fn request_bound(cfg: &Config) -> Duration {
    cfg.accept_timeout() + cfg.sink_timeout()
}
