//! One WebSocket connection. A reader decodes frames continuously and
//! starts each request at once (a `RecordEvent` joins the batcher's queue
//! as soon as it is read); a writer sends the answers strictly in request
//! order (a `FuturesOrdered` of pending answers, at most `MAX_IN_FLIGHT`
//! per connection: beyond that the reader stops reading, which is
//! backpressure on the client), plus `EventNotification`s between them
//! once the connection subscribed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::stream::FuturesOrdered;
use futures::{FutureExt, SinkExt, StreamExt};
use reflow_tracing_protocol::{
    ErrorCode, TraceEvent, TraceEventType, TracingRequest, TracingResponse,
};
use tokio::sync::mpsc;

use crate::app::App;
use crate::config::MAX_FRAME_BYTES;
use crate::db::{DbError, Row};
use crate::hub::Notice;
use crate::ingest::Refusal;
use crate::metrics::type_index;
use crate::redis_link::Lookup;

/// Requests read and not yet answered, per connection.
pub const MAX_IN_FLIGHT: usize = 1024;
/// Notifications queued per subscriber before they are dropped (counted).
pub const NOTIFY_QUEUE: usize = 10_000;
/// Limits at which the largest QueryTraces page is clamped.
pub const MAX_QUERY_LIMIT: usize = 1000;
pub const DEFAULT_QUERY_LIMIT: usize = 100;

const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_TOO_BIG: u16 = 1009;

/// An answer ready to be written.
pub struct Answer {
    text: String,
    ok: bool,
}

type AnswerFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

struct Pending {
    kind: usize,
    started: Instant,
    binary: bool,
    /// Subscribe (notifications wait until its answer is written) or
    /// Unsubscribe (queued notifications are dropped after its answer).
    subscription: Option<bool>,
    answer: AnswerFuture,
}

fn encode(r: &TracingResponse) -> String {
    serde_json::to_string(r).expect("a TracingResponse serialises")
}

pub fn error(code: ErrorCode, message: impl Into<String>) -> Answer {
    Answer {
        text: encode(&TracingResponse::Error {
            message: message.into(),
            code,
        }),
        ok: false,
    }
}

fn ok(r: &TracingResponse) -> Answer {
    Answer {
        text: encode(r),
        ok: true,
    }
}

fn storage(e: DbError) -> Answer {
    match e {
        DbError::Unavailable(m) => error(ErrorCode::StorageError, format!("unavailable: {m}")),
        DbError::Rejected(m) | DbError::Duplicate(m) => error(ErrorCode::StorageError, m),
    }
}

fn ready(a: Answer) -> AnswerFuture {
    Box::pin(std::future::ready(a))
}

pub fn event_type_name(t: &TraceEventType) -> &'static str {
    match t {
        TraceEventType::ActorCreated => "ActorCreated",
        TraceEventType::ActorStarted => "ActorStarted",
        TraceEventType::ActorCompleted => "ActorCompleted",
        TraceEventType::ActorFailed => "ActorFailed",
        TraceEventType::MessageSent => "MessageSent",
        TraceEventType::MessageReceived => "MessageReceived",
        TraceEventType::StateChanged => "StateChanged",
        TraceEventType::PortConnected => "PortConnected",
        TraceEventType::PortDisconnected => "PortDisconnected",
        TraceEventType::DataFlow { .. } => "DataFlow",
        TraceEventType::NetworkEvent => "NetworkEvent",
    }
}

/// Whether serialised JSON holds a `\u0000` escape (PostgreSQL's text and
/// jsonb cannot store NUL).
pub fn has_nul_escape(json: &str) -> bool {
    let bytes = json.as_bytes();
    let mut from = 0;
    while let Some(i) = json[from..].find("\\u0000") {
        let at = from + i;
        let run = bytes[..=at]
            .iter()
            .rev()
            .take_while(|b| **b == b'\\')
            .count();
        if run % 2 == 1 {
            return true;
        }
        from = at + 1;
    }
    false
}

fn request_kind(r: &TracingRequest) -> &'static str {
    match r {
        TracingRequest::StartTrace { .. } => "start_trace",
        TracingRequest::RecordEvent { .. } => "record_event",
        TracingRequest::GetTrace { .. } => "get_trace",
        TracingRequest::QueryTraces { .. } => "query_traces",
        TracingRequest::GetFlowVersions { .. } => "get_flow_versions",
        TracingRequest::Ping => "ping",
        TracingRequest::Subscribe { .. } => "subscribe",
        TracingRequest::Unsubscribe => "unsubscribe",
    }
}

/// Decodes a frame's JSON into a request, or the error answer.
pub fn decode(text: &str) -> Result<TracingRequest, Answer> {
    serde_json::from_str::<TracingRequest>(text).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => error(
                ErrorCode::SerializationError,
                format!(
                    "malformed JSON: {e}; a request is a TracingRequest of reflow_tracing_protocol 0.2.1 as JSON, e.g. {{\"GetTrace\":{{\"trace_id\":\"<uuid>\"}}}} or \"Ping\""
                ),
            ),
            Category::Data => error(
                ErrorCode::InvalidRequest,
                format!(
                    "not a TracingRequest: {e}; variants: StartTrace, RecordEvent, GetTrace, QueryTraces, GetFlowVersions, Ping, Subscribe, Unsubscribe"
                ),
            ),
        }
    })
}

struct Conn {
    app: Arc<App>,
    id: u64,
    notify_tx: mpsc::Sender<Notice>,
}

impl Conn {
    /// Starts one request; the returned future yields its answer.
    async fn start(&self, req: TracingRequest) -> (AnswerFuture, Option<bool>) {
        let app = self.app.clone();
        match req {
            TracingRequest::Ping => (ready(ok(&TracingResponse::Pong)), None),
            TracingRequest::Subscribe { filters } => {
                app.hub.subscribe(self.id, filters, self.notify_tx.clone());
                (ready(ok(&TracingResponse::Pong)), Some(true))
            }
            TracingRequest::Unsubscribe => {
                app.hub.unsubscribe(self.id);
                (ready(ok(&TracingResponse::Pong)), Some(false))
            }
            TracingRequest::RecordEvent { trace_id, event } => {
                (self.record(trace_id.0, event).await, None)
            }
            TracingRequest::StartTrace { flow_id, version } => (
                Box::pin(async move {
                    match app.db.start_trace(&flow_id, &version).await {
                        Ok(id) => ok(&TracingResponse::TraceStarted {
                            trace_id: reflow_tracing_protocol::TraceId(id),
                        }),
                        Err(e) => storage(e),
                    }
                }),
                None,
            ),
            TracingRequest::GetTrace { trace_id } => (
                Box::pin(async move { get_trace(&app, trace_id.0).await }),
                None,
            ),
            TracingRequest::QueryTraces { query } => {
                if let Some((from, to)) = &query.time_range
                    && from > to
                {
                    return (
                        ready(error(
                            ErrorCode::InvalidRequest,
                            format!(
                                "inverted time range: from {from} is after to {to}; give (earliest, latest)"
                            ),
                        )),
                        None,
                    );
                }
                let limit = query
                    .limit
                    .unwrap_or(DEFAULT_QUERY_LIMIT)
                    .min(MAX_QUERY_LIMIT) as i64;
                let offset = query.offset.unwrap_or(0).min(i64::MAX as usize) as i64;
                (
                    Box::pin(async move {
                        match app.db.query_traces(&query, limit, offset).await {
                            Ok((traces, total_count)) => ok(&TracingResponse::QueryResults {
                                traces,
                                total_count,
                            }),
                            Err(e) => storage(e),
                        }
                    }),
                    None,
                )
            }
            TracingRequest::GetFlowVersions { flow_id } => (
                Box::pin(async move {
                    match app.db.flow_versions(&flow_id).await {
                        Ok(versions) => ok(&TracingResponse::FlowVersions { versions }),
                        Err(e) => storage(e),
                    }
                }),
                None,
            ),
        }
    }

    async fn record(&self, trace_id: uuid::Uuid, event: TraceEvent) -> AnswerFuture {
        let app = &self.app;
        let payload = serde_json::to_string(&event).expect("a TraceEvent serialises");
        if payload.len() > app.cfg.max_event_size {
            app.metrics.refuse("too_large");
            return ready(error(
                ErrorCode::InvalidRequest,
                format!(
                    "event too large: {} bytes of JSON, max_event_size is {} (TRACING_MAX_EVENT_SIZE)",
                    payload.len(),
                    app.cfg.max_event_size
                ),
            ));
        }
        if has_nul_escape(&payload) {
            app.metrics.refuse("invalid");
            return ready(error(
                ErrorCode::InvalidRequest,
                "the event holds a NUL character (\\u0000) in a string, which PostgreSQL cannot store; remove it",
            ));
        }
        let payload: Arc<str> = Arc::from(payload);
        let row = Row {
            event_id: event.event_id.0,
            trace_id,
            ts: event.timestamp,
            event_type: event_type_name(&event.event_type),
            actor_id: event.actor_id.clone(),
            payload: payload.clone(),
        };
        let notice = Notice {
            trace_id,
            event: Arc::new(event),
            json: payload,
        };
        match app.ingest.submit(row, notice).await {
            Err(r) => ready(refusal(r)),
            Ok(rx) => Box::pin(async move {
                match rx.await {
                    Ok(Ok(())) => ok(&TracingResponse::EventRecorded {
                        success: true,
                        error: None,
                    }),
                    Ok(Err(r)) => refusal(r),
                    Err(_) => error(
                        ErrorCode::StorageError,
                        "unavailable: the batcher stopped before the event was committed",
                    ),
                }
            }),
        }
    }
}

fn refusal(r: Refusal) -> Answer {
    match r {
        Refusal::Unavailable(m) => error(ErrorCode::StorageError, format!("unavailable: {m}")),
        Refusal::Rejected(m) => error(ErrorCode::InvalidRequest, m),
    }
}

async fn get_trace(app: &App, id: uuid::Uuid) -> Answer {
    let mut file_under = None;
    if app.redis.cache_usable() {
        match app.redis.lookup(&id).await {
            Lookup::Hit(text) => return Answer { text, ok: true },
            Lookup::Miss(key) => file_under = key,
        }
    }
    match app.db.get_trace(id).await {
        Ok(Some(trace)) => {
            let answer = ok(&TracingResponse::TraceData { trace: Some(trace) });
            if let Some(key) = file_under {
                app.redis.store(key, &answer.text).await;
            }
            answer
        }
        Ok(None) => error(
            ErrorCode::NotFound,
            format!("trace {id} not found (no StartTrace or RecordEvent named it)"),
        ),
        Err(e) => storage(e),
    }
}

/// Why the writer ends the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ending {
    /// The client closed (or the socket failed): nothing more to send.
    Peer,
    GoingAway,
    TooBig,
}

fn is_capacity(e: &axum::Error) -> bool {
    let text = e.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(t) = s.downcast_ref::<tungstenite::Error>() {
            return matches!(t, tungstenite::Error::Capacity(_));
        }
        source = s.source();
    }
    text.contains("Space limit exceeded") || text.contains("too long")
}

/// Serves one upgraded connection until it closes.
pub async fn serve(socket: WebSocket, app: Arc<App>) {
    let (sink, mut stream) = socket.split();
    let (pending_tx, pending_rx) = mpsc::channel::<Pending>(32);
    let (notify_tx, notify_rx) = mpsc::channel::<Notice>(NOTIFY_QUEUE);
    let (end_tx, end_rx) = tokio::sync::oneshot::channel::<Ending>();
    let conn = Conn {
        id: app.hub.id(),
        app: app.clone(),
        notify_tx,
    };
    let writer = tokio::spawn(write_loop(sink, pending_rx, notify_rx, end_rx, app.clone()));
    let mut stop = app.stop_connections.clone();
    let ending = loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = stop.wait_for(|s| *s) => break Ending::GoingAway,
        };
        let started = Instant::now();
        let (text, binary) = match msg {
            None => break Ending::Peer,
            Some(Err(e)) => {
                if is_capacity(&e) {
                    app.metrics.frames_too_large.fetch_add(1, Ordering::Relaxed);
                    break Ending::TooBig;
                }
                break Ending::Peer;
            }
            Some(Ok(Message::Close(_))) => break Ending::Peer,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Text(t))) => (Ok(Frame::Text(t)), false),
            Some(Ok(Message::Binary(b))) => (decode_binary(&app, &b).map(Frame::Owned), true),
        };
        let text = match text {
            Ok(t) => t,
            Err(Some(answer)) => {
                let p = Pending {
                    kind: type_index("invalid"),
                    started,
                    binary,
                    subscription: None,
                    answer: ready(answer),
                };
                if pending_tx.send(p).await.is_err() {
                    break Ending::Peer;
                }
                continue;
            }
            Err(None) => {
                app.metrics.frames_too_large.fetch_add(1, Ordering::Relaxed);
                break Ending::TooBig;
            }
        };
        let (kind, answer, subscription) = match decode(text.as_str()) {
            Ok(req) => {
                let kind = type_index(request_kind(&req));
                let (answer, subscription) = conn.start(req).await;
                (kind, answer, subscription)
            }
            Err(a) => (type_index("invalid"), ready(a), None),
        };
        let p = Pending {
            kind,
            started,
            binary,
            subscription,
            answer,
        };
        if pending_tx.send(p).await.is_err() {
            break Ending::Peer;
        }
    };
    drop(pending_tx);
    let _ = end_tx.send(ending);
    let _ = writer.await;
    app.hub.unsubscribe(conn.id);
}

/// A frame's JSON text: a text frame's own bytes, or a decoded binary frame.
enum Frame {
    Text(axum::extract::ws::Utf8Bytes),
    Owned(String),
}

impl Frame {
    fn as_str(&self) -> &str {
        match self {
            Frame::Text(t) => t.as_str(),
            Frame::Owned(s) => s,
        }
    }
}

/// A binary frame's JSON: zstd-decompressed (bounded to 16 MiB) when
/// compression is on. `Err(None)`: over the limit once decompressed.
fn decode_binary(app: &App, bytes: &[u8]) -> Result<String, Option<Answer>> {
    let raw = if app.cfg.compression {
        let mut out = Vec::new();
        let mut decoder = match zstd::stream::read::Decoder::new(bytes) {
            Ok(d) => d,
            Err(e) => {
                return Err(Some(error(
                    ErrorCode::SerializationError,
                    format!(
                        "binary frame is not zstd: {e}; binary frames carry zstd-compressed JSON"
                    ),
                )));
            }
        };
        use std::io::Read;
        let mut limited = (&mut decoder).take(MAX_FRAME_BYTES as u64 + 1);
        if let Err(e) = limited.read_to_end(&mut out) {
            return Err(Some(error(
                ErrorCode::SerializationError,
                format!(
                    "binary frame is not valid zstd: {e}; binary frames carry zstd-compressed JSON"
                ),
            )));
        }
        if out.len() > MAX_FRAME_BYTES {
            return Err(None);
        }
        out
    } else {
        bytes.to_vec()
    };
    String::from_utf8(raw).map_err(|e| {
        Some(error(
            ErrorCode::SerializationError,
            format!("binary frame's JSON is not UTF-8: {e}"),
        ))
    })
}

fn frame(text: String, binary: bool) -> Message {
    if binary {
        let packed = zstd::bulk::compress(text.as_bytes(), 3).expect("zstd compresses");
        Message::Binary(packed.into())
    } else {
        Message::Text(text.into())
    }
}

async fn write_loop(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut pending_rx: mpsc::Receiver<Pending>,
    mut notify_rx: mpsc::Receiver<Notice>,
    end_rx: tokio::sync::oneshot::Receiver<Ending>,
    app: Arc<App>,
) {
    struct Meta {
        kind: usize,
        started: Instant,
        binary: bool,
        subscription: Option<bool>,
    }
    type Answering = Pin<Box<dyn Future<Output = (Meta, Answer)> + Send>>;
    let mut ordered: FuturesOrdered<Answering> = FuturesOrdered::new();
    let mut open = true;
    let mut subscribes_ahead = 0usize;
    let mut notify_binary = false;
    let mut broken = false;
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + app.cfg.keep_alive,
        app.cfg.keep_alive,
    );
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while open || !ordered.is_empty() {
        tokio::select! {
            biased;
            Some(first) = ordered.next(), if !ordered.is_empty() => {
                // Write every answer that is ready, then flush once: an
                // answer never waits in the buffer for a later one.
                let mut next = Some(first);
                while let Some((meta, answer)) = next.take() {
                    let ok = answer.ok;
                    if !broken && sink.feed(frame(answer.text, meta.binary)).await.is_err() {
                        broken = true;
                    }
                    app.metrics.request(meta.kind, ok, meta.started.elapsed());
                    match meta.subscription {
                        Some(true) => {
                            subscribes_ahead -= 1;
                            notify_binary = meta.binary;
                        }
                        Some(false) => while notify_rx.try_recv().is_ok() {},
                        None => {}
                    }
                    if !ordered.is_empty() {
                        next = ordered.next().now_or_never().flatten();
                    }
                }
                if !broken && sink.flush().await.is_err() {
                    broken = true;
                }
            }
            p = pending_rx.recv(), if open && ordered.len() < MAX_IN_FLIGHT => match p {
                Some(p) => {
                    if p.subscription == Some(true) {
                        subscribes_ahead += 1;
                    }
                    let meta = Meta { kind: p.kind, started: p.started, binary: p.binary, subscription: p.subscription };
                    let answer = p.answer;
                    ordered.push_back(Box::pin(async move { (meta, answer.await) }));
                }
                None => open = false,
            },
            Some(n) = notify_rx.recv(), if subscribes_ahead == 0 => {
                if !broken && sink.send(frame(n.frame(), notify_binary)).await.is_err() {
                    broken = true;
                }
            }
            _ = ping.tick() => {
                if !broken && sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    broken = true;
                }
            }
        }
    }
    let ending = end_rx.await.unwrap_or(Ending::Peer);
    if broken {
        return;
    }
    let _ = sink.flush().await;
    let close = match ending {
        Ending::Peer => None,
        Ending::GoingAway => Some(CloseFrame {
            code: CLOSE_GOING_AWAY,
            reason: "server shutting down".into(),
        }),
        Ending::TooBig => Some(CloseFrame {
            code: CLOSE_TOO_BIG,
            reason: "frame over 16 MiB".into(),
        }),
    };
    if let Some(c) = close {
        let _ =
            tokio::time::timeout(Duration::from_secs(2), sink.send(Message::Close(Some(c)))).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes_are_found_and_escaped_backslashes_are_not() {
        assert!(has_nul_escape(r#"{"a":"x\u0000y"}"#));
        assert!(!has_nul_escape(r#"{"a":"x\\u0000y"}"#));
        assert!(has_nul_escape(r#"{"a":"x\\\u0000y"}"#));
        assert!(!has_nul_escape(r#"{"a":"plain"}"#));
        let e = TraceEvent::actor_created("a\0b".into());
        assert!(has_nul_escape(&serde_json::to_string(&e).unwrap()));
    }

    #[test]
    fn decode_errors_say_what_and_how() {
        let Err(a) = decode("{not json") else {
            panic!()
        };
        assert!(a.text.contains("SerializationError"), "{}", a.text);
        let Err(a) = decode(r#"{"Explode":{}}"#) else {
            panic!()
        };
        assert!(
            a.text.contains("InvalidRequest") && a.text.contains("unknown variant"),
            "{}",
            a.text
        );
        assert!(matches!(decode("\"Ping\""), Ok(TracingRequest::Ping)));
    }
}
