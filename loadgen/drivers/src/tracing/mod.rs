//! The tracing server's driver: start traces, record generated events,
//! read traces back, query, and measure publish → notification latency
//! across replicas — over `tracing-server`'s WebSocket protocol (the
//! published `reflow_tracing_protocol` 0.2.1's types are the wire; text
//! frames of JSON, or the same JSON compressed with zstd in binary
//! frames) on the engine's WebSocket client; its history taps
//! ([`taps`]), its subscribers ([`subscribe`]), its event generator
//! ([`events`]) and its read-back from PostgreSQL ([`readback`]).
//!
//! Requests use the client's mode 1 (one request in flight per
//! connection, many connections): the server answers in order, without
//! request ids, and pushes nothing on a connection that did not subscribe.
//! A subscriber has a connection of its own (mode 2, its matcher telling
//! the answer to `Subscribe` from the notifications).
//!
//! What a step hands the next: `tracing.start_trace` its trace id
//! ([`Chain::key`](crate::Chain)); each acknowledged event of a
//! `tracing.record_event` step counts in [`Chain::position`](crate::Chain),
//! which `tracing.get_trace` compares with the events the trace holds.
//!
//! Outcomes: `tracing_<code>` for the protocol's `Error { code }`
//! (`tracing_storage_error`, `tracing_not_found`, `tracing_invalid_request`,
//! …), `not_recorded` for `EventRecorded { success: false }`,
//! `missing_events` for a trace read back with fewer events than its
//! chain acknowledged, `missed_notification` for a subscriber that did not
//! see its event in time, `bad_response` for an answer of another kind, and
//! the WebSocket client's kinds (`connect`, `ws_handshake`, `ws_close_1011`,
//! …).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use gauntlet_engine::ws::{self, Frame};
use gauntlet_engine::{Connections, http};
use gauntlet_recorder::Outcome;
use gauntlet_scenario::{FrameEncoding, TraceStatus, TracingAction, TracingConnection};
use reflow_tracing_protocol::{
    ErrorCode, ExecutionStatus, FlowId, FlowVersion, TraceId, TraceQuery, TracingRequest,
    TracingResponse,
};

use crate::data::{Ctx, Rng, Template};
use crate::request::bad_response;
use crate::{Call, Chain, Target};

pub mod events;
pub mod readback;
pub mod subscribe;
pub mod taps;

/// The tracing driver's state shared by the operations of a run.
pub struct TracingState {
    /// Mixed into every id the run generates (see [`events`]).
    pub nonce: u64,
}

impl Default for TracingState {
    fn default() -> Self {
        TracingState {
            nonce: events::run_nonce(),
        }
    }
}

/// How requests reach a tracing server: its target, the upgrade's
/// `Authorization` header, the frames' encoding.
pub struct Wire {
    target: Target,
    token: Option<String>,
    zstd: bool,
    /// The WebSocket target for the last endpoint seen.
    cached: Mutex<Option<(Arc<http::Endpoint>, ws::Target)>>,
}

impl Wire {
    pub fn new(target: Target, connection: &TracingConnection) -> Self {
        Wire {
            target,
            token: connection.token.clone(),
            zstd: connection.frames == FrameEncoding::Zstd,
            cached: Mutex::new(None),
        }
    }

    /// The WebSocket target at the service's current endpoint.
    pub fn ws_target(&self) -> Result<ws::Target, String> {
        let endpoint = self.target.endpoint()?;
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, t)) = &*cached
            && Arc::ptr_eq(seen, &endpoint)
        {
            return Ok(t.clone());
        }
        let path = self.target.path("/").into_owned();
        let mut t = ws::Target::new(endpoint.addr, endpoint.host.clone(), path)?;
        if let Some(token) = &self.token {
            t = t.with_header("Authorization", &format!("Bearer {token}"))?;
        }
        *cached = Some((endpoint, t.clone()));
        Ok(t)
    }

    /// The request as a frame: JSON text, or JSON compressed with zstd.
    pub fn encode(&self, request: &TracingRequest) -> Frame {
        self.frame(serde_json::to_vec(request).unwrap_or_default())
    }

    /// A request's JSON as a frame.
    fn frame(&self, json: Vec<u8>) -> Frame {
        if self.zstd {
            Frame::binary(zstd::bulk::compress(&json, 3).unwrap_or_default())
        } else {
            Frame::text(String::from_utf8(json).unwrap_or_default())
        }
    }

    /// One request, one answer (mode 1): the answer, or an error kind.
    pub async fn request(
        &self,
        conns: &Connections,
        request: &TracingRequest,
    ) -> Result<TracingResponse, String> {
        self.send(conns, self.encode(request)).await
    }

    /// One frame, one answer (mode 1).
    async fn send(&self, conns: &Connections, frame: Frame) -> Result<TracingResponse, String> {
        let target = self.ws_target()?;
        let answer = conns
            .ws
            .request(&target, frame)
            .await
            .map_err(|f| f.kind().to_owned())?;
        decode(&answer).ok_or_else(|| "bad_response".to_owned())
    }
}

/// Most bytes a compressed answer may inflate to (the server's frame limit).
const MAX_DECOMPRESSED: usize = 16 << 20;

/// A frame as the protocol's response: JSON text, or zstd-compressed JSON.
pub fn decode(frame: &Frame) -> Option<TracingResponse> {
    match frame {
        Frame::Text(t) => serde_json::from_str(t).ok(),
        Frame::Binary(b) => {
            let json = zstd::bulk::decompress(b, MAX_DECOMPRESSED).ok()?;
            serde_json::from_slice(&json).ok()
        }
    }
}

/// The outcome kind of the protocol's error code: `tracing_storage_error`, ….
pub fn error_kind(code: &ErrorCode) -> String {
    let name = match code {
        ErrorCode::NotFound => "not_found",
        ErrorCode::InvalidRequest => "invalid_request",
        ErrorCode::StorageError => "storage_error",
        ErrorCode::SerializationError => "serialization_error",
        ErrorCode::Unauthorized => "unauthorized",
        ErrorCode::InternalError => "internal_error",
    };
    format!("tracing_{name}")
}

/// What an answer that is not the expected one means.
fn unexpected(answer: Result<TracingResponse, String>) -> Outcome {
    match answer {
        Ok(TracingResponse::Error { code, .. }) => Outcome::Error(error_kind(&code)),
        Ok(_) => bad_response(),
        Err(kind) => Outcome::Error(kind),
    }
}

/// A text template rendered per request.
struct Text {
    template: Template,
    seed: u64,
    stream: u64,
}

impl Text {
    fn new(text: &str, at: &crate::PrepareAt, salt: u64) -> Self {
        Text {
            template: Template::text(text, &at.shared.counters),
            seed: at.seed,
            stream: at.stream ^ (salt << 40),
        }
    }

    fn render(&self, seq: u64) -> String {
        let mut rng = Rng::for_request(self.seed, self.stream, seq);
        self.template.render(&Ctx { seq, key: None }, &mut rng)
    }
}

/// One prepared request to a tracing server.
pub struct TracingCall(Req);

enum Req {
    Start {
        wire: Wire,
        flow: Text,
    },
    Record {
        wire: Wire,
        service: String,
        /// Events per step (1 for an operation).
        events: u32,
        generator: events::EventGen,
        /// The number of the next event (a step makes several per chain).
        next: AtomicU64,
        ids: (u64, u64),
    },
    Get {
        wire: Wire,
        trace: Option<Text>,
        must_exist: bool,
    },
    Query {
        wire: Wire,
        flow: Option<Text>,
        actor: Option<Text>,
        since: Option<std::time::Duration>,
        status: Option<ExecutionStatus>,
        limit: usize,
    },
    Subscribe(Box<subscribe::SubscribeCall>),
}

fn status(s: TraceStatus) -> ExecutionStatus {
    match s {
        TraceStatus::Pending => ExecutionStatus::Pending,
        TraceStatus::Running => ExecutionStatus::Running,
        TraceStatus::Completed => ExecutionStatus::Completed,
        TraceStatus::Failed => ExecutionStatus::Failed {
            error: String::new(),
        },
        TraceStatus::Cancelled => ExecutionStatus::Cancelled,
    }
}

/// Prepares a tracing action (`at.targets` gives `tracing.subscribe`'s
/// `publish_via`).
pub fn prepare(action: &TracingAction, at: &crate::PrepareAt) -> Result<TracingCall, String> {
    let targets = at.targets;
    let wire = Wire::new(at.target.clone(), action.connection());
    Ok(TracingCall(match action {
        TracingAction::StartTrace(s) => Req::Start {
            wire,
            flow: Text::new(s.flow.as_deref().unwrap_or("gauntlet-flow"), at, 1),
        },
        TracingAction::RecordEvent(r) => Req::Record {
            wire,
            service: at.service.to_owned(),
            events: r.events.unwrap_or(1),
            generator: events::EventGen::new(
                &r.event,
                at.seed,
                at.stream,
                at.shared.tracing.nonce,
                &at.shared.counters,
            ),
            next: AtomicU64::new(0),
            ids: (at.seed ^ at.shared.tracing.nonce, at.stream ^ (3 << 40)),
        },
        TracingAction::GetTrace(g) => Req::Get {
            wire,
            trace: g.trace.as_deref().map(|t| Text::new(t, at, 2)),
            must_exist: g.must_exist,
        },
        TracingAction::Query(q) => Req::Query {
            wire,
            flow: q.flow.as_deref().map(|t| Text::new(t, at, 4)),
            actor: q.actor.as_deref().map(|t| Text::new(t, at, 5)),
            since: q.since.map(|d| d.as_std()),
            status: q.status.map(status),
            limit: q.limit as usize,
        },
        TracingAction::Subscribe(s) => {
            let via = s.publish_via.as_deref().unwrap_or(at.service);
            Req::Subscribe(Box::new(subscribe::SubscribeCall::new(
                s,
                at,
                Wire::new(targets(via), &s.connection),
                via,
            )))
        }
    }))
}

impl Call for TracingCall {
    fn perform<'a>(
        &'a self,
        conns: &'a Connections,
        chain: &'a mut Chain,
    ) -> impl std::future::Future<Output = Outcome> + Send + 'a {
        self.0.run(conns, chain)
    }

    /// A record step makes `events` requests into the trace started; a
    /// step with no trace to act on ends the chain.
    fn step_requests(&self, chain: &Chain) -> usize {
        match &self.0 {
            Req::Record { events, .. } if chain.key.is_some() => *events as usize,
            Req::Record { .. } | Req::Get { trace: None, .. } if chain.key.is_none() => 0,
            _ => 1,
        }
    }
}

impl Req {
    async fn run(&self, conns: &Connections, chain: &mut Chain) -> Outcome {
        let seq = chain.seq;
        match self {
            Req::Start { wire, flow } => {
                let flow = flow.render(seq);
                let tap = chain.tap.clone();
                let id = tap.as_ref().and_then(|t| t.invoke_start(&flow));
                let request = TracingRequest::StartTrace {
                    flow_id: FlowId(flow),
                    version: FlowVersion {
                        major: 1,
                        minor: 0,
                        patch: 0,
                        git_hash: None,
                        timestamp: Utc::now(),
                    },
                };
                let answer = wire.request(conns, &request).await;
                if let Some(t) = &tap {
                    t.complete_start(id, &answer);
                }
                match answer {
                    Ok(TracingResponse::TraceStarted { trace_id }) => {
                        chain.key = Some(trace_id.0.to_string());
                        chain.position = Some(0);
                        Outcome::Ok
                    }
                    other => unexpected(other),
                }
            }
            Req::Record {
                wire,
                service,
                generator,
                next,
                ids,
                ..
            } => {
                let n = next.fetch_add(1, Ordering::Relaxed);
                // Into the trace a step before started; as an operation,
                // a new random trace per event, as the published client does.
                let trace_id = match &chain.key {
                    Some(k) => match k.parse() {
                        Ok(u) => u,
                        Err(_) => return bad_response(),
                    },
                    None => events::uuid_from(&mut Rng::for_request(ids.0, ids.1, n)),
                };
                let g = generator.generate(n);
                let outcome =
                    record(wire, conns, chain.tap.as_deref(), service, trace_id, &g).await;
                if outcome == Outcome::Ok
                    && let Some(p) = &mut chain.position
                {
                    *p += 1;
                }
                outcome
            }
            Req::Get {
                wire,
                trace,
                must_exist,
            } => {
                let id = match trace {
                    Some(t) => t.render(seq),
                    None => match &chain.key {
                        Some(k) => k.clone(),
                        None => return bad_response(),
                    },
                };
                let Ok(uuid) = id.parse() else {
                    return Outcome::Error("bad_trace_id".to_owned());
                };
                let request = TracingRequest::GetTrace {
                    trace_id: TraceId(uuid),
                };
                match wire.request(conns, &request).await {
                    Ok(TracingResponse::TraceData { trace: Some(t) }) => {
                        let expected = if trace.is_none() {
                            chain.position.unwrap_or(0)
                        } else {
                            0
                        };
                        if (t.events.len() as u64) < expected {
                            Outcome::Error("missing_events".to_owned())
                        } else {
                            Outcome::Ok
                        }
                    }
                    Ok(TracingResponse::TraceData { trace: None })
                    | Ok(TracingResponse::Error {
                        code: ErrorCode::NotFound,
                        ..
                    }) if !must_exist => Outcome::Ok,
                    Ok(TracingResponse::TraceData { trace: None }) => {
                        Outcome::Error(error_kind(&ErrorCode::NotFound))
                    }
                    other => unexpected(other),
                }
            }
            Req::Query {
                wire,
                flow,
                actor,
                since,
                status,
                limit,
            } => {
                let now = Utc::now();
                let time_range = since.map(|d| {
                    let back = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
                    (now - back, now)
                });
                let request = TracingRequest::QueryTraces {
                    query: TraceQuery {
                        flow_id: flow.as_ref().map(|f| FlowId(f.render(seq))),
                        execution_id: None,
                        time_range,
                        status: status.clone(),
                        actor_filter: actor.as_ref().map(|a| a.render(seq)),
                        limit: Some(*limit),
                        offset: None,
                    },
                };
                match wire.request(conns, &request).await {
                    Ok(TracingResponse::QueryResults { traces, .. }) if traces.len() <= *limit => {
                        Outcome::Ok
                    }
                    other => unexpected(other),
                }
            }
            Req::Subscribe(s) => s.run(conns, chain).await,
        }
    }
}

/// `TracingRequest::RecordEvent` as serde writes it, without a copy of the event.
fn record_json(
    trace_id: uuid::Uuid,
    event: &reflow_tracing_protocol::TraceEvent,
) -> Option<Vec<u8>> {
    let mut json = Vec::with_capacity(1200);
    json.extend_from_slice(b"{\"RecordEvent\":{\"trace_id\":\"");
    json.extend_from_slice(trace_id.hyphenated().to_string().as_bytes());
    json.extend_from_slice(b"\",\"event\":");
    serde_json::to_writer(&mut json, event).ok()?;
    json.extend_from_slice(b"}}");
    Some(json)
}

/// Records one generated event: the history's invoke, the request, its
/// completion; `Ok` only for `EventRecorded { success: true }`.
pub async fn record(
    wire: &Wire,
    conns: &Connections,
    tap: Option<&crate::history::Tap>,
    service: &str,
    trace_id: uuid::Uuid,
    g: &events::Generated,
) -> Outcome {
    let id = tap.and_then(|t| t.invoke_record(service, &trace_id.to_string(), g));
    let Some(json) = record_json(trace_id, &g.event) else {
        return bad_response();
    };
    let answer = wire.send(conns, wire.frame(json)).await;
    if let Some(t) = tap {
        t.complete_record(id, &answer);
    }
    match answer {
        Ok(TracingResponse::EventRecorded { success: true, .. }) => Outcome::Ok,
        Ok(TracingResponse::EventRecorded { success: false, .. }) => {
            Outcome::Error("not_recorded".to_owned())
        }
        other => unexpected(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_request_is_the_protocols_json() {
        let g = events::EventGen::new(
            &Default::default(),
            1,
            1,
            1,
            &crate::data::Counters::default(),
        )
        .generate(0);
        let trace = uuid::Uuid::from_u128(7);
        let json = record_json(trace, &g.event).unwrap();
        let parsed: TracingRequest = serde_json::from_slice(&json).unwrap();
        let TracingRequest::RecordEvent { trace_id, event } = parsed else {
            panic!("a RecordEvent");
        };
        assert_eq!(trace_id.0, trace);
        assert_eq!(events::digest(&event), events::digest(&g.event));
    }

    #[test]
    fn frames_decode_as_text_or_zstd() {
        let pong = r#""Pong""#;
        assert!(matches!(
            decode(&Frame::text(pong)),
            Some(TracingResponse::Pong)
        ));
        let packed = zstd::bulk::compress(pong.as_bytes(), 3).unwrap();
        assert!(matches!(
            decode(&Frame::binary(packed)),
            Some(TracingResponse::Pong)
        ));
        assert!(decode(&Frame::text("{nope")).is_none());
        let err = r#"{"Error":{"message":"unavailable: db","code":"StorageError"}}"#;
        let Some(TracingResponse::Error { code, .. }) = decode(&Frame::text(err)) else {
            panic!("an error answer");
        };
        assert_eq!(error_kind(&code), "tracing_storage_error");
    }
}
