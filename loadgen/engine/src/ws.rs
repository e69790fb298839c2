//! The engine's WebSocket client: persistent `ws://` connections pooled per
//! target, used in two modes, with failures reported as short error kinds.
//!
//! # Design
//!
//! Built on `tokio-tungstenite` (0.30, no TLS: the load generator speaks
//! `ws://` on loopback). Why it rather than `tungstenite` alone: the engine
//! runs on tokio, and tokio-tungstenite is exactly tungstenite driven by a
//! tokio socket, with cancel-safe reads (a partly read frame stays in
//! tungstenite's buffer when a read future is dropped) and the waker plumbing
//! done; writing that glue again would add code, not speed. The handshake
//! request is built here from the [`Target`] (`Host`, path, extra headers
//! such as `Authorization`) and the TCP connection is opened here, so a
//! target can name an address other than its `Host`.
//!
//! The client knows nothing of any system's protocol: frames go out and come
//! back as [`Frame`]s, and pipelined answers are matched to their requests by
//! a key that a caller-supplied function ([`Target::with_matcher`]) extracts
//! from each incoming frame.
//!
//! Like the HTTP client, a [`Client`] belongs to one (single-threaded) tokio
//! runtime: its connections, and the tasks that read them, live on the
//! runtime that opened them. Make one client per runtime.
//!
//! ## Mode 1: one request in flight per connection ([`Client::request`])
//!
//! A request takes an idle connection of its target's pool (LIFO) or opens
//! one, writes its frame, reads until the next data frame (that frame is the
//! answer), and puts the connection back. No task is involved: the request's
//! own future reads and writes the socket. Pings that arrive while it waits
//! are answered (tungstenite queues the pong and the next read writes it).
//! A data frame is taken as the answer whatever it holds, so this mode is
//! for protocols where the server speaks only when spoken to.
//!
//! An idle pooled connection is not read while it waits in the pool. When a
//! request takes it, everything that arrived meanwhile is processed without
//! blocking first: pings are answered then, data frames (nothing was asked,
//! so they are unsolicited) are dropped and counted in
//! [`Stats::unsolicited`], and a connection found closed or broken is
//! dropped and replaced (the request then runs on a new connection: nothing
//! of it had been sent). A close that arrives only after the request was
//! written fails that request with its kind: the request may have reached
//! the server, so it is not sent again. So without a keepalive, a server's
//! ping to an idle connection is answered when the connection is next used;
//! a server that needs its pong sooner closes the connection, and the next
//! request replaces it. With [`Config::keepalive`] set, one task per client
//! wakes every interval, processes what arrived on every idle connection
//! (so server pings wait at most one interval for their pong) and sends
//! each one a ping.
//!
//! ## Mode 2: pipelined with matching ([`Pipeline`], [`Client::call`])
//!
//! Many requests share one connection. The caller gives each request a key
//! ([`Client::next_key`] hands out unique ones) and puts it in the frame as
//! its protocol says; one reader task per connection reads every incoming
//! frame, extracts its key with the target's matcher, and hands the frame to
//! the request waiting for that key (no channel, no task per request: the
//! waiter is an entry in a map that the request's future polls). A frame
//! whose matcher gives no key is server-initiated (a subscription's
//! notification, say) and goes to the connection's bounded queue of pushed
//! frames, stamped with its arrival [`Instant`] ([`Pushed`]), which a
//! [`Subscription`] reads; when the queue is full the frame is dropped and
//! counted ([`Subscription::dropped`]). A frame with a key that no request
//! waits for (the answer to a request that timed out) is dropped and counted
//! in [`Stats::late_answers`]. The matcher must therefore give a key only to
//! answers.
//!
//! [`Client::pipeline`] gives the target's shared pipeline on this client
//! (one connection, created on first use); [`Client::dedicated`] gives a new
//! one with a connection of its own (for a subscriber that must own its
//! connection). A pipeline reconnects by itself on the next request after
//! its connection is lost; the queue of pushed frames belongs to the
//! connection, so a [`Subscription`] ends (its `recv` gives `None`, and
//! [`Subscription::ended`] says why) when its connection does: a driver
//! then subscribes again, on the new connection, as the server forgot the
//! subscription with the old one. Measuring "publish → notification"
//! latency: note the publish time, read the notification's [`Pushed::at`].
//!
//! The reader task answers pings at once (it is always reading) and, with a
//! keepalive set, sends a ping every interval when no request is being
//! written at that moment.
//!
//! # Cancellation
//!
//! The engine bounds every request with its own timeout by dropping the
//! request's future; that leaves nothing inconsistent:
//! - mode 1: the connection is in the dropped future, so it is closed and
//!   never reused with its answer still to come ([`Stats::discarded`]);
//! - mode 2: the request's waiter entry is removed when its future is
//!   dropped; its answer, if it comes, is a late answer. A frame being
//!   written when the future was dropped is entirely in tungstenite's buffer
//!   (frames are never half-queued) and goes out with the next write.
//!
//! # Error kinds ([`Failure::kind`])
//!
//! - `connect`: the TCP connection could not be opened (refused,
//!   unreachable, or not within [`Config::connect_timeout`]);
//! - `ws_handshake`: the TCP connection opened but the upgrade failed (not
//!   a `101` answer, an invalid one, the connection closed during it, or
//!   not done within the rest of the connect timeout);
//! - `ws_close_<code>` (`ws_close_1011`, …): the server sent a close frame
//!   with that code (`1005` when it carried none; tungstenite turns a code
//!   not allowed on the wire into `1002`): every request in flight on the
//!   connection fails with it;
//! - `ws_dropped`: the connection ended without a close frame (EOF, reset,
//!   broken pipe);
//! - `ws_oversize`: a message or frame over [`Config::max_message_size`]
//!   arrived (the connection is then dropped);
//! - `ws_protocol`: the server broke the WebSocket protocol (a masked frame,
//!   invalid UTF-8 in a text frame, a bad opcode, …);
//! - `ws_key_in_use`: mode 2, a request's key is already in flight on that
//!   connection (a driver bug);
//! - `ws_client_closed`: the request was in flight on a pipelined connection
//!   when the client closed it ([`Client::close_all`], or the client or the
//!   pipeline dropped).
//!
//! # Reconnects ([`Client::reconnects`])
//!
//! A connection is *lost* when it ends for any reason other than the client
//! closing it: a close frame from the server, a drop, a protocol error, an
//! oversize message — also while idle in the pool. The request in flight
//! when it is lost gets that error kind (never a retry, never a hang). A
//! reconnect is counted when a new connection is opened, successfully, in
//! place of a lost one: each lost connection of a target's mode-1 pool
//! makes the next connection opened for that pool (after the handshake)
//! count one (a pool does not know which new connection "replaces" which,
//! so it counts lost ones against the next ones opened), and a pipeline
//! counts one when it opens a connection after its previous one was lost.
//! Connections opened while no lost one awaits replacement (more
//! concurrency), failed attempts (reported as `connect`/`ws_handshake`), and connections the
//! client closed itself (a cancelled mode-1 request's, [`Client::close_all`],
//! the pool being full) are not reconnects. A lost connection that is never
//! replaced (no further request) is not counted.
//!
//! # Closing
//!
//! [`Client::close_all`] closes every pooled connection with a close frame
//! (code 1000) and waits (up to [`Config::close_timeout`]) for the server's
//! close reply; later requests open new connections. Dropping the client
//! closes its idle connections the same way without waiting (the close
//! frame is written if the socket takes it at once, which an idle socket
//! does), and asks every pipeline's reader task to close its connection
//! (close frame 1000, then the server's reply, within the close timeout);
//! a [`Pipeline`] handle that outlives its client then fails every request
//! with `ws_client_closed` and opens nothing.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::{Sink, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

pub use bytes::Bytes;
pub use tokio_tungstenite::tungstenite::Utf8Bytes;

type Ws = WebSocketStream<TcpStream>;

/// A data frame, either way. Text is kept as [`Utf8Bytes`] (a checked
/// [`Bytes`]): received frames are handed over without a copy, and a
/// `String` or `&'static str` becomes one without a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(Utf8Bytes),
    Binary(Bytes),
}

impl Frame {
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Frame::Text(text.into())
    }

    pub fn binary(bytes: impl Into<Bytes>) -> Self {
        Frame::Binary(bytes.into())
    }

    /// The text of a text frame.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Frame::Text(t) => Some(t.as_str()),
            Frame::Binary(_) => None,
        }
    }

    /// The payload, text or binary.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Frame::Text(t) => t.as_bytes(),
            Frame::Binary(b) => b,
        }
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn into_message(self) -> Message {
        match self {
            Frame::Text(t) => Message::Text(t),
            Frame::Binary(b) => Message::Binary(b),
        }
    }
}

/// A frame the server sent on its own (no request waited for it), with the
/// moment the reader task took it off the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub frame: Frame,
    pub at: Instant,
}

/// How a request failed, as an error kind for the recorder (see the module
/// doc for each kind's meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// `connect`
    Connect,
    /// `ws_handshake`
    Handshake,
    /// `ws_close_<code>`
    Closed(u16),
    /// `ws_dropped`
    Dropped,
    /// `ws_oversize`
    Oversize,
    /// `ws_protocol`
    Protocol,
    /// `ws_key_in_use`
    KeyInUse,
    /// `ws_client_closed`
    ClientClosed,
}

/// Kinds of the standard close codes, 1000 to 1015.
const STANDARD_CLOSE_KINDS: [&str; 16] = [
    "ws_close_1000",
    "ws_close_1001",
    "ws_close_1002",
    "ws_close_1003",
    "ws_close_1004",
    "ws_close_1005",
    "ws_close_1006",
    "ws_close_1007",
    "ws_close_1008",
    "ws_close_1009",
    "ws_close_1010",
    "ws_close_1011",
    "ws_close_1012",
    "ws_close_1013",
    "ws_close_1014",
    "ws_close_1015",
];

/// `ws_close_<code>` as a static string: the standard codes from a table,
/// any other code made once and kept (at most one small string per distinct
/// code ever seen; servers use a handful).
fn close_kind(code: u16) -> &'static str {
    if let Some(kind) = code
        .checked_sub(1000)
        .and_then(|i| STANDARD_CLOSE_KINDS.get(usize::from(i)))
    {
        return kind;
    }
    static OTHERS: Mutex<Vec<(u16, &'static str)>> = Mutex::new(Vec::new());
    let mut others = lock(&OTHERS);
    if let Some((_, kind)) = others.iter().find(|(c, _)| *c == code) {
        return kind;
    }
    let kind: &'static str = format!("ws_close_{code}").leak();
    others.push((code, kind));
    kind
}

impl Failure {
    pub fn kind(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Handshake => "ws_handshake",
            Failure::Closed(code) => close_kind(code),
            Failure::Dropped => "ws_dropped",
            Failure::Oversize => "ws_oversize",
            Failure::Protocol => "ws_protocol",
            Failure::KeyInUse => "ws_key_in_use",
            Failure::ClientClosed => "ws_client_closed",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl std::error::Error for Failure {}

/// What an error of an open connection means (handshake errors are all
/// [`Failure::Handshake`], whatever they are).
fn failure_of(e: &WsError) -> Failure {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_) => Failure::Dropped,
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Failure::Dropped,
        WsError::Capacity(_) | WsError::WriteBufferFull(_) => Failure::Oversize,
        WsError::Http(_) | WsError::HttpFormat(_) | WsError::Url(_) => Failure::Handshake,
        _ => Failure::Protocol,
    }
}

/// The code of a received close frame; 1005 ("no status") when it had none.
fn close_code(frame: Option<&CloseFrame>) -> u16 {
    frame.map_or(1005, |f| u16::from(f.code))
}

fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: Utf8Bytes::from_static(""),
    }))
}

/// Extracts the correlation key of an incoming frame: `Some` for an answer
/// (the key its request was sent with), `None` for a frame the server sent
/// on its own.
pub type Matcher = Arc<dyn Fn(&Frame) -> Option<u64> + Send + Sync>;

/// Where connections go: an address, the upgrade request's `Host`, path and
/// extra headers (a pool per distinct combination), and for pipelining the
/// matcher of answers.
#[derive(Clone)]
pub struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
    headers: Vec<(String, String)>,
    matcher: Option<Matcher>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("host", &self.host)
            .field("path", &self.path)
            .field("headers", &self.headers)
            .field("matcher", &self.matcher.is_some())
            .finish()
    }
}

impl Target {
    /// Parses `ws://host[:port][/path[?query]]` (port 80 and path `/` by
    /// default) and resolves the host once.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("ws://").ok_or_else(|| {
            format!("`{url}` is not a ws:// URL (hint: write e.g. `ws://127.0.0.1:8080/ws`)")
        })?;
        let (host, path) = match rest.find(['/', '?']) {
            Some(at) if rest[at..].starts_with('/') => (&rest[..at], &rest[at..]),
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if host.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        let addr = crate::http::resolve(host)?;
        Self::new(addr, host, path)
    }

    /// A target at `addr` whose upgrade request says `Host: host` and asks
    /// for `path` (with its query, starting with `/`).
    pub fn new(
        addr: SocketAddr,
        host: impl Into<String>,
        path: impl Into<String>,
    ) -> Result<Self, String> {
        let target = Self {
            addr,
            host: host.into(),
            path: path.into(),
            headers: Vec::new(),
            matcher: None,
        };
        if !target.path.starts_with('/') {
            return Err(format!("the path `{}` must start with `/`", target.path));
        }
        target.uri()?;
        Ok(target)
    }

    /// Adds a header to the upgrade request (e.g. `Authorization`).
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self, String> {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a valid header name"))?;
        HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header `{name}` is not valid"))?;
        self.headers.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// Sets the matcher of answers for pipelined requests. The shared
    /// pipeline of a target on a client is found by the target's endpoint
    /// and this matcher's identity (the `Arc`): clone a target rather than
    /// build it twice, or the two get a pipeline each.
    pub fn with_matcher(
        mut self,
        matcher: impl Fn(&Frame) -> Option<u64> + Send + Sync + 'static,
    ) -> Self {
        self.matcher = Some(Arc::new(matcher));
        self
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    fn uri(&self) -> Result<Uri, String> {
        format!("ws://{}{}", self.host, self.path)
            .parse::<Uri>()
            .map_err(|e| format!("`{}` and `{}` make no valid URI: {e}", self.host, self.path))
    }

    /// Whether both go to the same pool of connections.
    fn same_endpoint(&self, other: &Target) -> bool {
        self.addr == other.addr
            && self.host == other.host
            && self.path == other.path
            && self.headers == other.headers
    }

    fn same_matcher(&self, other: &Target) -> bool {
        match (&self.matcher, &other.matcher) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// The endpoint alone (pools keep no matcher).
    fn endpoint(&self) -> Target {
        Target {
            matcher: None,
            ..self.clone()
        }
    }
}

/// The client's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bound on opening a connection: TCP connect and upgrade together.
    pub connect_timeout: Duration,
    /// Largest message (and frame) accepted from the server; a bigger one
    /// fails the connection with `ws_oversize`. Frames sent are not limited.
    pub max_message_size: usize,
    /// Client pings: every interval, each idle pooled connection, and each
    /// pipelined connection not being written to at that moment, gets a
    /// ping. `None`: no client pings.
    pub keepalive: Option<Duration>,
    /// Idle connections kept per target (mode 1); beyond, a returned
    /// connection is closed.
    pub max_idle: usize,
    /// Pushed frames queued per pipelined connection before new ones are
    /// dropped (and counted).
    pub pushed_capacity: usize,
    /// How long a graceful close waits for the server's close reply.
    pub close_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            max_message_size: 16 << 20,
            keepalive: None,
            max_idle: 4096,
            pushed_capacity: 1024,
            close_timeout: Duration::from_secs(2),
        }
    }
}

/// Counters of a client since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections opened (upgrade done).
    pub opened: u64,
    /// Connections opened in place of lost ones (see the module doc).
    pub reconnects: u64,
    /// Mode-1 connections closed because their request's future was
    /// dropped (a timeout) before its answer.
    pub discarded: u64,
    /// Pipelined answers whose request no longer waited (it timed out).
    pub late_answers: u64,
    /// Data frames that arrived on an idle mode-1 connection (dropped).
    pub unsolicited: u64,
}

#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    reconnects: AtomicU64,
    discarded: AtomicU64,
    late_answers: AtomicU64,
    unsolicited: AtomicU64,
}

/// What every part of a client shares: settings and counters.
struct Shared {
    config: Config,
    counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Opens a connection: TCP connect, then the upgrade, both within the
/// connect timeout.
async fn open(shared: &Shared, target: &Target) -> Result<Ws, Failure> {
    let config = &shared.config;
    let deadline = Instant::now() + config.connect_timeout;
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(target.addr)).await {
        Ok(Ok(tcp)) => tcp,
        _ => return Err(Failure::Connect),
    };
    let _ = tcp.set_nodelay(true);
    let mut request = target
        .uri()
        .map_err(|_| Failure::Handshake)?
        .into_client_request()
        .map_err(|_| Failure::Handshake)?;
    for (name, value) in &target.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| Failure::Handshake)?;
        let value = HeaderValue::from_str(value).map_err(|_| Failure::Handshake)?;
        request.headers_mut().append(name, value);
    }
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size));
    match tokio::time::timeout_at(
        deadline,
        tokio_tungstenite::client_async_with_config(request, tcp, Some(ws_config)),
    )
    .await
    {
        Ok(Ok((ws, _))) => {
            shared.counters.opened.fetch_add(1, Ordering::Relaxed);
            Ok(ws)
        }
        _ => Err(Failure::Handshake),
    }
}

/// Processes, without waiting, whatever has arrived on a connection nobody
/// is reading: pings are answered (by the next read, which this loop makes),
/// data frames dropped and counted; `Err` if the connection has ended.
fn drain_now(ws: &mut Ws, counters: &Counters) -> Result<(), Failure> {
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match ws.poll_next_unpin(&mut cx) {
            Poll::Pending => return Ok(()),
            Poll::Ready(Some(Ok(Message::Text(_) | Message::Binary(_)))) => {
                counters.unsolicited.fetch_add(1, Ordering::Relaxed);
            }
            Poll::Ready(Some(Ok(Message::Close(frame)))) => {
                // One more read writes tungstenite's close reply.
                let _ = ws.poll_next_unpin(&mut cx);
                return Err(Failure::Closed(close_code(frame.as_ref())));
            }
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(e))) => return Err(failure_of(&e)),
            Poll::Ready(None) => return Err(Failure::Dropped),
        }
    }
}

/// Queues `message` and writes what the socket takes now, without waiting.
fn write_now(ws: &mut Ws, message: Message) -> Result<(), WsError> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut ws = Pin::new(ws);
    if let Poll::Ready(Err(e)) = ws.as_mut().poll_ready(&mut cx) {
        return Err(e);
    }
    ws.as_mut().start_send(message)?;
    match ws.poll_flush(&mut cx) {
        Poll::Ready(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Closes a connection with code 1000 and waits for the server's reply.
async fn close_gracefully(mut ws: Ws, within: Duration) {
    let _ = tokio::time::timeout(within, async {
        if ws.send(normal_close()).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

/// Mode 1: sends `message`, reads until a data frame.
async fn exchange(ws: &mut Ws, message: Message, counters: &Counters) -> Result<Frame, Failure> {
    if let Err(e) = ws.send(message).await {
        // The server may have closed with a code before the write failed.
        return Err(match drain_now(ws, counters) {
            Err(closed @ Failure::Closed(_)) => closed,
            _ => failure_of(&e),
        });
    }
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(Frame::Text(t)),
            Some(Ok(Message::Binary(b))) => return Ok(Frame::Binary(b)),
            Some(Ok(Message::Close(frame))) => {
                // One more read writes tungstenite's close reply.
                let mut cx = Context::from_waker(Waker::noop());
                let _ = ws.poll_next_unpin(&mut cx);
                return Err(Failure::Closed(close_code(frame.as_ref())));
            }
            // Pings: tungstenite queued the pong, the next read writes it.
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(failure_of(&e)),
            None => return Err(Failure::Dropped),
        }
    }
}

/// A target's mode-1 connections and shared pipelines on one client.
struct Pool {
    target: Target,
    idle: Vec<Ws>,
    /// Connections lost and not yet replaced (see the module doc).
    lost: u64,
    /// Shared pipelines, one per matcher.
    pipes: Vec<Arc<Pipe>>,
}

struct Inner {
    shared: Arc<Shared>,
    /// Pools never go away, so an index into this stays valid.
    pools: Mutex<Vec<Pool>>,
    dedicated: Mutex<Vec<Weak<Pipe>>>,
    next_key: AtomicU64,
    housekeeping: AtomicBool,
}

impl Inner {
    fn index_in(pools: &mut Vec<Pool>, target: &Target) -> usize {
        if let Some(i) = pools.iter().position(|p| p.target.same_endpoint(target)) {
            return i;
        }
        pools.push(Pool {
            target: target.endpoint(),
            idle: Vec::new(),
            lost: 0,
            pipes: Vec::new(),
        });
        pools.len() - 1
    }

    /// The target's pool, and a live idle connection of it if there is one
    /// (dead ones found on the way are dropped and counted lost).
    fn take_idle(&self, target: &Target) -> (usize, Option<Ws>) {
        let mut pools = lock(&self.pools);
        let i = Self::index_in(&mut pools, target);
        loop {
            let Some(mut ws) = pools[i].idle.pop() else {
                return (i, None);
            };
            // Without waiting: fine under the lock.
            match drain_now(&mut ws, &self.shared.counters) {
                Ok(()) => return (i, Some(ws)),
                Err(_) => pools[i].lost += 1,
            }
        }
    }

    fn put_idle(&self, i: usize, ws: Ws) {
        let mut pools = lock(&self.pools);
        let pool = &mut pools[i];
        if pool.idle.len() < self.shared.config.max_idle {
            pool.idle.push(ws);
        } else {
            drop(pools);
            let mut ws = ws;
            let _ = write_now(&mut ws, normal_close());
        }
    }

    async fn open_for(self: &Arc<Self>, i: usize, target: &Target) -> Result<Ws, Failure> {
        self.start_housekeeping();
        let ws = open(&self.shared, target).await?;
        let mut pools = lock(&self.pools);
        if pools[i].lost > 0 {
            pools[i].lost -= 1;
            self.shared
                .counters
                .reconnects
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(ws)
    }

    /// With a keepalive, starts the task that keeps idle connections alive.
    fn start_housekeeping(self: &Arc<Self>) {
        let Some(every) = self.shared.config.keepalive else {
            return;
        };
        if self.housekeeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let inner = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                inner.keep_idle_alive();
            }
        });
    }

    /// Processes what arrived on each idle connection (answering pings,
    /// dropping dead connections) and pings it.
    fn keep_idle_alive(&self) {
        let counters = &self.shared.counters;
        let mut pools = lock(&self.pools);
        for pool in pools.iter_mut() {
            let before = pool.idle.len();
            pool.idle.retain_mut(|ws| {
                drain_now(ws, counters).is_ok()
                    && write_now(ws, Message::Ping(Bytes::new())).is_ok()
            });
            pool.lost += (before - pool.idle.len()) as u64;
        }
    }

    fn pipes(&self) -> Vec<Arc<Pipe>> {
        let mut pipes: Vec<Arc<Pipe>> = lock(&self.pools)
            .iter()
            .flat_map(|p| p.pipes.iter().cloned())
            .collect();
        pipes.extend(lock(&self.dedicated).iter().filter_map(Weak::upgrade));
        pipes
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let pools = std::mem::take(&mut *lock(&self.pools));
        for pool in pools {
            for mut ws in pool.idle {
                let _ = write_now(&mut ws, normal_close());
            }
            for pipe in pool.pipes {
                pipe.shutdown();
            }
        }
        for pipe in lock(&self.dedicated).drain(..) {
            if let Some(pipe) = pipe.upgrade() {
                pipe.shutdown();
            }
        }
    }
}

/// WebSocket connections to any number of targets, for one runtime.
pub struct Client {
    inner: Arc<Inner>,
}

impl Default for Client {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl Client {
    pub fn new(config: Config) -> Self {
        Self {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    config,
                    counters: Counters::default(),
                }),
                pools: Mutex::new(Vec::new()),
                dedicated: Mutex::new(Vec::new()),
                next_key: AtomicU64::new(1),
                housekeeping: AtomicBool::new(false),
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.shared.config
    }

    /// Mode 1: sends `frame` on an idle connection of the target's pool (or
    /// a new one) and returns the next data frame that arrives on it.
    pub async fn request(&self, target: &Target, frame: Frame) -> Result<Frame, Failure> {
        let inner = &self.inner;
        let (i, idle) = inner.take_idle(target);
        let ws = match idle {
            Some(ws) => ws,
            None => inner.open_for(i, target).await?,
        };
        // Dropped with the connection still in it: the request's future was
        // dropped mid-flight, and so is the connection.
        struct Lease<'a> {
            counters: &'a Counters,
            ws: Option<Ws>,
        }
        impl Drop for Lease<'_> {
            fn drop(&mut self) {
                if self.ws.is_some() {
                    self.counters.discarded.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let counters = &inner.shared.counters;
        let mut lease = Lease {
            counters,
            ws: Some(ws),
        };
        let Some(ws) = lease.ws.as_mut() else {
            return Err(Failure::Dropped);
        };
        let answer = exchange(ws, frame.into_message(), counters).await;
        let ws = lease.ws.take();
        match (answer, ws) {
            (Ok(answer), Some(ws)) => {
                inner.put_idle(i, ws);
                Ok(answer)
            }
            (answer, _) => {
                lock(&inner.pools)[i].lost += 1;
                answer
            }
        }
    }

    /// Mode 2: sends `frame`, which carries `key` as the target's protocol
    /// says, on the target's shared pipeline, and returns the answer whose
    /// matcher key is `key`.
    ///
    /// # Panics
    /// If the target has no matcher ([`Target::with_matcher`]).
    pub async fn call(&self, target: &Target, key: u64, frame: Frame) -> Result<Frame, Failure> {
        self.shared_pipe(target).call(key, frame).await
    }

    /// The target's shared pipeline on this client (the same one each time
    /// for the same target; its connection is opened on first use).
    ///
    /// # Panics
    /// If the target has no matcher ([`Target::with_matcher`]).
    pub fn pipeline(&self, target: &Target) -> Pipeline {
        Pipeline {
            pipe: self.shared_pipe(target),
        }
    }

    /// A new pipeline with a connection of its own (opened on first use),
    /// closed when its last handle is dropped, by [`Client::close_all`], or
    /// with the client.
    ///
    /// # Panics
    /// If the target has no matcher ([`Target::with_matcher`]).
    pub fn dedicated(&self, target: &Target) -> Pipeline {
        let pipe = Pipe::new(target, self.inner.shared.clone());
        let mut dedicated = lock(&self.inner.dedicated);
        dedicated.retain(|p| p.strong_count() > 0);
        dedicated.push(Arc::downgrade(&pipe));
        Pipeline { pipe }
    }

    fn shared_pipe(&self, target: &Target) -> Arc<Pipe> {
        let mut pools = lock(&self.inner.pools);
        let i = Inner::index_in(&mut pools, target);
        let pool = &mut pools[i];
        if let Some(pipe) = pool.pipes.iter().find(|p| p.target.same_matcher(target)) {
            return pipe.clone();
        }
        let pipe = Pipe::new(target, self.inner.shared.clone());
        pool.pipes.push(pipe.clone());
        pipe
    }

    /// A key no other request of this client uses (1, 2, 3, …).
    pub fn next_key(&self) -> u64 {
        self.inner.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Connections opened in place of lost ones (see the module doc).
    pub fn reconnects(&self) -> u64 {
        self.inner
            .shared
            .counters
            .reconnects
            .load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> Stats {
        let c = &self.inner.shared.counters;
        Stats {
            opened: c.opened.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            discarded: c.discarded.load(Ordering::Relaxed),
            late_answers: c.late_answers.load(Ordering::Relaxed),
            unsolicited: c.unsolicited.load(Ordering::Relaxed),
        }
    }

    /// Closes every idle pooled connection and every pipeline's connection
    /// with a close frame (1000), waiting for the server's replies (up to
    /// the close timeout); pipelined requests in flight fail with
    /// `ws_client_closed`. The client stays usable: later requests open new
    /// connections (not counted as reconnects). Mode-1 requests in flight
    /// keep their connections, which go back to the pool.
    pub async fn close_all(&self) {
        let idle: Vec<Ws> = lock(&self.inner.pools)
            .iter_mut()
            .flat_map(|p| std::mem::take(&mut p.idle))
            .collect();
        let within = self.inner.shared.config.close_timeout;
        let pipes = self.inner.pipes();
        futures_util::future::join(
            futures_util::future::join_all(idle.into_iter().map(|ws| close_gracefully(ws, within))),
            futures_util::future::join_all(pipes.iter().map(|p| p.close_current())),
        )
        .await;
    }
}

/// A handle on a pipelined connection slot: requests in flight together,
/// answers matched by key, server-pushed frames queued. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    pipe: Arc<Pipe>,
}

impl Pipeline {
    /// Sends `frame`, which carries `key` as the protocol says, and returns
    /// the answer whose matcher key is `key`. Opens (or reopens, after a
    /// loss) the connection if needed.
    pub async fn call(&self, key: u64, frame: Frame) -> Result<Frame, Failure> {
        self.pipe.call(key, frame).await
    }

    /// Sends `frame` expecting no answer.
    pub async fn send(&self, frame: Frame) -> Result<(), Failure> {
        let conn = self.pipe.conn().await?;
        match conn.write(frame.into_message()).await {
            Ok(()) => Ok(()),
            Err(e) => Err(conn.end(failure_of(&e))),
        }
    }

    /// The frames the server pushes on the current connection (opened if
    /// needed). The subscription ends with the connection.
    pub async fn subscribe(&self) -> Result<Subscription, Failure> {
        let conn = self.pipe.conn().await?;
        Ok(Subscription {
            inbox: conn.inbox.clone(),
        })
    }

    pub fn target(&self) -> &Target {
        &self.pipe.target
    }
}

/// Reads the frames a server pushed on one connection. Clones read the same
/// queue (each frame goes to one reader).
#[derive(Clone)]
pub struct Subscription {
    inbox: Arc<Inbox>,
}

impl Subscription {
    /// The next pushed frame; `None` once the connection has ended and every
    /// frame queued before has been read.
    pub async fn recv(&self) -> Option<Pushed> {
        loop {
            let notified = self.inbox.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = lock(&self.inbox.state);
                if let Some(pushed) = state.queue.pop_front() {
                    return Some(pushed);
                }
                if state.ended.is_some() {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// The next pushed frame if one is queued.
    pub fn try_recv(&self) -> Option<Pushed> {
        lock(&self.inbox.state).queue.pop_front()
    }

    /// Moves every queued frame to `out`; returns how many.
    pub fn drain(&self, out: &mut Vec<Pushed>) -> usize {
        let mut state = lock(&self.inbox.state);
        let n = state.queue.len();
        out.extend(state.queue.drain(..));
        n
    }

    /// Frames dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        lock(&self.inbox.state).dropped
    }

    /// Why the connection ended (`None` while it is open).
    pub fn ended(&self) -> Option<Failure> {
        lock(&self.inbox.state).ended
    }
}

/// The bounded queue of a connection's pushed frames.
struct Inbox {
    state: Mutex<InboxState>,
    notify: Notify,
    capacity: usize,
}

struct InboxState {
    queue: VecDeque<Pushed>,
    dropped: u64,
    ended: Option<Failure>,
}

impl Inbox {
    fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(InboxState {
                queue: VecDeque::new(),
                dropped: 0,
                ended: None,
            }),
            notify: Notify::new(),
            capacity,
        }
    }

    fn push(&self, pushed: Pushed) {
        let mut state = lock(&self.state);
        if state.ended.is_some() {
            return;
        }
        if state.queue.len() >= self.capacity {
            state.dropped += 1;
            return;
        }
        state.queue.push_back(pushed);
        drop(state);
        self.notify.notify_one();
    }

    fn end(&self, why: Failure) {
        let mut state = lock(&self.state);
        if state.ended.is_none() {
            state.ended = Some(why);
        }
        drop(state);
        self.notify.notify_waiters();
    }
}

/// Hashes request keys: one multiplication (keys are mostly sequential
/// numbers; the multiply spreads them over high and low bits).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

enum Slot {
    Waiting(Option<Waker>),
    Done(Result<Frame, Failure>),
}

struct Waiters {
    slots: KeyMap<Slot>,
    /// Why the connection ended; no request is registered after that.
    ended: Option<Failure>,
}

/// What became of an answer the reader took off the connection.
enum Delivery {
    Delivered,
    NoWaiter,
    Ended,
}

/// One pipelined connection: the socket, shared by the requests (which
/// write) and the reader task (which reads).
struct PipeConn {
    /// Locked only within a poll, never across an await.
    ws: Mutex<Ws>,
    /// Held by the one request writing (its flush waits for the socket;
    /// tungstenite keeps one write waker, so writers take turns).
    write_turn: tokio::sync::Mutex<()>,
    waiters: Mutex<Waiters>,
    inbox: Arc<Inbox>,
    /// Asks the reader task to close the connection.
    close: Notify,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl PipeConn {
    /// Writes a message, waiting for the socket; one writer at a time.
    async fn write(&self, message: Message) -> Result<(), WsError> {
        let _turn = self.write_turn.lock().await;
        self.write_in_turn(message).await
    }

    /// Writes a message; the caller holds the write turn.
    async fn write_in_turn(&self, message: Message) -> Result<(), WsError> {
        let mut message = Some(message);
        std::future::poll_fn(|cx| {
            let mut ws = lock(&self.ws);
            let mut ws = Pin::new(&mut *ws);
            if let Some(m) = message.take() {
                match ws.as_mut().poll_ready(cx) {
                    Poll::Pending => {
                        message = Some(m);
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
                if let Err(e) = ws.as_mut().start_send(m) {
                    return Poll::Ready(Err(e));
                }
            }
            ws.poll_flush(cx)
        })
        .await
    }

    fn register(&self, key: u64) -> Result<(), Failure> {
        let mut w = lock(&self.waiters);
        if let Some(why) = w.ended {
            return Err(why);
        }
        match w.slots.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => Err(Failure::KeyInUse),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Slot::Waiting(None));
                Ok(())
            }
        }
    }

    fn poll_answer(&self, key: u64, cx: &mut Context<'_>) -> Poll<Result<Frame, Failure>> {
        let mut w = lock(&self.waiters);
        match w.slots.get_mut(&key) {
            Some(Slot::Waiting(waker)) => {
                match waker {
                    Some(old) if old.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Some(Slot::Done(_)) => match w.slots.remove(&key) {
                Some(Slot::Done(answer)) => Poll::Ready(answer),
                _ => Poll::Ready(Err(Failure::Dropped)),
            },
            None => Poll::Ready(Err(w.ended.unwrap_or(Failure::Dropped))),
        }
    }

    fn deliver(&self, key: u64, frame: Frame) -> Delivery {
        let mut w = lock(&self.waiters);
        if w.ended.is_some() {
            return Delivery::Ended;
        }
        let Some(slot) = w.slots.get_mut(&key) else {
            return Delivery::NoWaiter;
        };
        let Slot::Waiting(waker) = slot else {
            // A second answer with the same key: the first one stands.
            return Delivery::NoWaiter;
        };
        let waker = waker.take();
        *slot = Slot::Done(Ok(frame));
        drop(w);
        if let Some(waker) = waker {
            waker.wake();
        }
        Delivery::Delivered
    }

    /// Ends the connection for its requests: every waiting request fails
    /// with `why`, and so does every later one, and the reader task closes
    /// it (if it has not ended already). Returns the reason it ended (an
    /// earlier reason stands).
    fn end(&self, why: Failure) -> Failure {
        let mut w = lock(&self.waiters);
        if let Some(earlier) = w.ended {
            return earlier;
        }
        w.ended = Some(why);
        let mut wakers = Vec::new();
        for slot in w.slots.values_mut() {
            if let Slot::Waiting(waker) = slot {
                wakers.extend(waker.take());
                *slot = Slot::Done(Err(why));
            }
        }
        drop(w);
        self.inbox.end(why);
        for waker in wakers {
            waker.wake();
        }
        // A reader that ended it is not waiting for this (or has finished).
        self.close.notify_one();
        why
    }

    fn ended(&self) -> Option<Failure> {
        lock(&self.waiters).ended
    }

    /// Fails its requests with `ws_client_closed` and has the reader task
    /// close the connection.
    fn request_close(&self) {
        self.end(Failure::ClientClosed);
    }
}

/// The reader task of a pipelined connection: routes answers, queues pushed
/// frames, answers pings (by reading), sends keepalive pings, and closes the
/// connection when asked.
async fn read_loop(conn: Arc<PipeConn>, matcher: Matcher, shared: Arc<Shared>) {
    let config = &shared.config;
    let mut ping = config.keepalive.map(|every| {
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        (tick, every)
    });
    // Set once the connection is closing: the reader gives up then.
    let mut deadline: Option<Instant> = None;
    loop {
        let next = std::future::poll_fn(|cx| lock(&conn.ws).poll_next_unpin(cx));
        let tick = async {
            match ping.as_mut() {
                Some((tick, _)) => {
                    tick.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        let give_up = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = conn.close.notified(), if deadline.is_none() => {
                let at = Instant::now() + config.close_timeout;
                deadline = Some(at);
                conn.end(Failure::ClientClosed);
                let _ = tokio::time::timeout_at(at, conn.write(normal_close())).await;
            }
            () = give_up => break,
            () = tick, if deadline.is_none() => {
                // Skipped when a request is being written: that is traffic.
                if let (Ok(_turn), Some((_, every))) = (conn.write_turn.try_lock(), ping.as_ref()) {
                    let write = conn.write_in_turn(Message::Ping(Bytes::new()));
                    let _ = tokio::time::timeout(*every, write).await;
                }
            }
            message = next => match message {
                Some(Ok(Message::Text(t))) => route(&conn, &matcher, &shared, Frame::Text(t)),
                Some(Ok(Message::Binary(b))) => route(&conn, &matcher, &shared, Frame::Binary(b)),
                Some(Ok(Message::Close(frame))) => {
                    conn.end(Failure::Closed(close_code(frame.as_ref())));
                    // Keep reading: that writes tungstenite's close reply,
                    // then the server ends the connection.
                    deadline.get_or_insert(Instant::now() + config.close_timeout);
                }
                // Pings: tungstenite queued the pong; the next read writes it.
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    conn.end(failure_of(&e));
                    break;
                }
                None => {
                    conn.end(Failure::Dropped);
                    break;
                }
            },
        }
    }
    conn.end(Failure::Dropped);
}

fn route(conn: &PipeConn, matcher: &Matcher, shared: &Shared, frame: Frame) {
    match matcher(&frame) {
        Some(key) => {
            if let Delivery::NoWaiter = conn.deliver(key, frame) {
                shared.counters.late_answers.fetch_add(1, Ordering::Relaxed);
            }
        }
        None => conn.inbox.push(Pushed {
            frame,
            at: Instant::now(),
        }),
    }
}

/// A pipelined connection slot: the current connection, replaced when lost.
struct Pipe {
    target: Target,
    matcher: Matcher,
    shared: Arc<Shared>,
    state: Mutex<PipeState>,
    /// Held by the one request opening a connection.
    connecting: tokio::sync::Mutex<()>,
}

struct PipeState {
    conn: Option<Arc<PipeConn>>,
    /// Set when the client is gone: no more connections.
    closed: bool,
    /// Connection attempts finished, and how the last one failed: requests
    /// that waited for an attempt take its failure rather than try again.
    attempts: u64,
    last_failure: Option<Failure>,
}

impl Pipe {
    fn new(target: &Target, shared: Arc<Shared>) -> Arc<Self> {
        let Some(matcher) = target.matcher.clone() else {
            panic!(
                "pipelined requests to {:?} need a matcher (Target::with_matcher)",
                target
            );
        };
        Arc::new(Self {
            target: target.clone(),
            matcher,
            shared,
            state: Mutex::new(PipeState {
                conn: None,
                closed: false,
                attempts: 0,
                last_failure: None,
            }),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    /// The current connection if it is open.
    fn current(&self) -> Result<Option<Arc<PipeConn>>, Failure> {
        let state = lock(&self.state);
        if state.closed {
            return Err(Failure::ClientClosed);
        }
        Ok(state.conn.as_ref().filter(|c| c.ended().is_none()).cloned())
    }

    /// The open connection, opening one if there is none.
    async fn conn(&self) -> Result<Arc<PipeConn>, Failure> {
        if let Some(conn) = self.current()? {
            return Ok(conn);
        }
        let attempts = lock(&self.state).attempts;
        let _connecting = self.connecting.lock().await;
        if let Some(conn) = self.current()? {
            return Ok(conn);
        }
        {
            let state = lock(&self.state);
            if state.attempts != attempts
                && let Some(failure) = state.last_failure
            {
                return Err(failure);
            }
        }
        let opened = open(&self.shared, &self.target).await;
        let mut state = lock(&self.state);
        state.attempts += 1;
        let ws = match opened {
            Ok(ws) => ws,
            Err(failure) => {
                state.last_failure = Some(failure);
                return Err(failure);
            }
        };
        state.last_failure = None;
        let conn = Arc::new(PipeConn {
            ws: Mutex::new(ws),
            write_turn: tokio::sync::Mutex::new(()),
            waiters: Mutex::new(Waiters {
                slots: KeyMap::default(),
                ended: None,
            }),
            inbox: Arc::new(Inbox::new(self.shared.config.pushed_capacity)),
            close: Notify::new(),
            reader: Mutex::new(None),
        });
        let reader = tokio::spawn(read_loop(
            conn.clone(),
            self.matcher.clone(),
            self.shared.clone(),
        ));
        *lock(&conn.reader) = Some(reader);
        if state.closed {
            conn.request_close();
            return Err(Failure::ClientClosed);
        }
        let replaced = state.conn.replace(conn.clone());
        if replaced.is_some_and(|old| old.ended() != Some(Failure::ClientClosed)) {
            self.shared
                .counters
                .reconnects
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(conn)
    }

    async fn call(&self, key: u64, frame: Frame) -> Result<Frame, Failure> {
        let mut conn = self.conn().await?;
        if let Err(why) = conn.register(key) {
            if why == Failure::KeyInUse {
                return Err(why);
            }
            // The connection ended before anything was sent: once more, on
            // a new one.
            conn = self.conn().await?;
            conn.register(key)?;
        }
        // Removes the request's entry if its future is dropped.
        struct Registered<'a> {
            conn: &'a PipeConn,
            key: u64,
            armed: bool,
        }
        impl Drop for Registered<'_> {
            fn drop(&mut self) {
                if self.armed {
                    lock(&self.conn.waiters).slots.remove(&self.key);
                }
            }
        }
        let mut registered = Registered {
            conn: &conn,
            key,
            armed: true,
        };
        if let Err(e) = conn.write(frame.into_message()).await {
            // Fails every request on it, this one included (unless the
            // reader already ended it for a more precise reason).
            conn.end(failure_of(&e));
        }
        let answer = std::future::poll_fn(|cx| conn.poll_answer(key, cx)).await;
        registered.armed = false;
        answer
    }

    /// Closes the current connection gracefully and waits for its reader.
    async fn close_current(&self) {
        let Some(conn) = lock(&self.state).conn.take() else {
            return;
        };
        conn.request_close();
        let reader = lock(&conn.reader).take();
        if let Some(reader) = reader {
            let _ = reader.await;
        }
    }

    /// The client is gone: close the connection, open no other.
    fn shutdown(&self) {
        let conn = {
            let mut state = lock(&self.state);
            state.closed = true;
            state.conn.take()
        };
        if let Some(conn) = conn {
            conn.request_close();
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        if let Some(conn) = lock(&self.state).conn.take() {
            conn.request_close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::error::CapacityError;

    #[test]
    fn targets_parse_ws_urls() {
        let t = Target::parse("ws://127.0.0.1:8080/ws?x=1").unwrap();
        assert_eq!(t.addr(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.host(), "127.0.0.1:8080");
        assert_eq!(t.path(), "/ws?x=1");
        let t = Target::parse("ws://127.0.0.1:9").unwrap();
        assert_eq!(t.path(), "/");
        let t = Target::parse("ws://127.0.0.1:9?q").unwrap();
        assert_eq!(t.path(), "/?q");
        let t = Target::parse("ws://127.0.0.1/").unwrap();
        assert_eq!(t.addr().port(), 80);
        assert!(Target::parse("http://127.0.0.1:1").is_err());
        assert!(Target::parse("wss://127.0.0.1:1").is_err());
        assert!(Target::parse("ws:///x").is_err());
        assert!(Target::new("127.0.0.1:1".parse().unwrap(), "h", "x").is_err());
    }

    #[test]
    fn pools_are_per_address_host_path_and_headers() {
        let a = Target::parse("ws://127.0.0.1:1/a").unwrap();
        let auth = a.clone().with_header("Authorization", "Bearer x").unwrap();
        assert!(a.same_endpoint(&a.clone()));
        assert!(!a.same_endpoint(&auth));
        assert!(!a.same_endpoint(&Target::parse("ws://127.0.0.1:1/b").unwrap()));
        assert!(!a.same_endpoint(&Target::parse("ws://127.0.0.1:2/a").unwrap()));
        let other_host = Target::new(a.addr(), "example.test", "/a").unwrap();
        assert!(!a.same_endpoint(&other_host));
        assert!(a.clone().with_header("Bad Name", "x").is_err());
        assert!(a.clone().with_header("X", "a\nb").is_err());
        // Matchers are told apart by identity: a clone shares its matcher.
        let m = a.clone().with_matcher(|_| None);
        assert!(m.same_matcher(&m.clone()));
        assert!(!m.same_matcher(&a.clone().with_matcher(|_| None)));
        assert!(m.same_endpoint(&a));
        assert!(m.endpoint().matcher.is_none());
    }

    #[test]
    fn failures_have_short_kinds() {
        assert_eq!(Failure::Connect.kind(), "connect");
        assert_eq!(Failure::Handshake.kind(), "ws_handshake");
        assert_eq!(Failure::Dropped.kind(), "ws_dropped");
        assert_eq!(Failure::Oversize.kind(), "ws_oversize");
        assert_eq!(Failure::Protocol.kind(), "ws_protocol");
        assert_eq!(Failure::KeyInUse.kind(), "ws_key_in_use");
        assert_eq!(Failure::ClientClosed.kind(), "ws_client_closed");
        for code in 1000..=1015 {
            assert_eq!(Failure::Closed(code).kind(), format!("ws_close_{code}"));
        }
        assert_eq!(Failure::Closed(4001).kind(), "ws_close_4001");
        // Made once per code.
        assert!(std::ptr::eq(
            Failure::Closed(4001).kind(),
            Failure::Closed(4001).kind()
        ));
        assert_eq!(Failure::Closed(999).kind(), "ws_close_999");
        assert_eq!(Failure::Closed(1011).to_string(), "ws_close_1011");
    }

    #[test]
    fn errors_of_open_connections_map_to_kinds() {
        let io = |k| WsError::Io(std::io::Error::from(k));
        assert_eq!(
            failure_of(&io(std::io::ErrorKind::ConnectionReset)),
            Failure::Dropped
        );
        assert_eq!(
            failure_of(&io(std::io::ErrorKind::BrokenPipe)),
            Failure::Dropped
        );
        assert_eq!(
            failure_of(&WsError::Protocol(
                ProtocolError::ResetWithoutClosingHandshake
            )),
            Failure::Dropped
        );
        assert_eq!(failure_of(&WsError::ConnectionClosed), Failure::Dropped);
        assert_eq!(
            failure_of(&WsError::Capacity(CapacityError::MessageTooLong {
                size: 2,
                max_size: 1
            })),
            Failure::Oversize
        );
        assert_eq!(
            failure_of(&WsError::Protocol(ProtocolError::MaskedFrameFromServer)),
            Failure::Protocol
        );
        assert_eq!(failure_of(&WsError::AttackAttempt), Failure::Protocol);
        assert_eq!(close_code(None), 1005);
        let frame = CloseFrame {
            code: CloseCode::Error,
            reason: Utf8Bytes::from_static("boom"),
        };
        assert_eq!(close_code(Some(&frame)), 1011);
    }

    #[test]
    fn frames_convert_both_ways() {
        let t = Frame::text("hé");
        assert_eq!(t.as_text(), Some("hé"));
        assert_eq!(t.as_bytes(), "hé".as_bytes());
        assert_eq!(t.len(), 3);
        assert_eq!(t.clone().into_message(), Message::Text("hé".into()));
        let b = Frame::binary(vec![1u8, 2]);
        assert_eq!(b.as_text(), None);
        assert_eq!(b.as_bytes(), &[1, 2]);
        assert!(!b.is_empty());
        assert_eq!(
            b.into_message(),
            Message::Binary(Bytes::from_static(&[1, 2]))
        );
        assert!(Frame::text(String::new()).is_empty());
    }

    #[test]
    fn sequential_keys_spread_over_buckets() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<KeyHasher>::default();
        let low: std::collections::HashSet<u64> =
            (0..1024u64).map(|k| build.hash_one(k) & 1023).collect();
        // Far from all in a few buckets (a multiply is a bijection on the
        // low bits; the final fold mixes high bits in).
        assert!(low.len() > 512, "{}", low.len());
        let mut map = KeyMap::default();
        for k in 0..10_000u64 {
            map.insert(k, k * 2);
        }
        assert!((0..10_000u64).all(|k| map[&k] == k * 2));
    }

    #[tokio::test]
    async fn the_inbox_is_bounded_and_ends() {
        let inbox = Arc::new(Inbox::new(2));
        let sub = Subscription {
            inbox: inbox.clone(),
        };
        let at = Instant::now();
        for i in 0..5u8 {
            inbox.push(Pushed {
                frame: Frame::binary(vec![i]),
                at,
            });
        }
        assert_eq!(sub.dropped(), 3);
        assert_eq!(sub.try_recv().unwrap().frame, Frame::binary(vec![0]));
        let mut out = Vec::new();
        assert_eq!(sub.drain(&mut out), 1);
        assert_eq!(out[0].frame, Frame::binary(vec![1]));
        assert!(sub.try_recv().is_none());
        // A waiting reader is woken by a push, then by the end.
        let reader = {
            let sub = sub.clone();
            tokio::spawn(async move { (sub.recv().await, sub.recv().await) })
        };
        tokio::task::yield_now().await;
        inbox.push(Pushed {
            frame: Frame::text("n"),
            at,
        });
        tokio::task::yield_now().await;
        inbox.end(Failure::Closed(1001));
        let (first, second) = reader.await.unwrap();
        assert_eq!(first.unwrap().frame, Frame::text("n"));
        assert!(second.is_none());
        assert_eq!(sub.ended(), Some(Failure::Closed(1001)));
        // Nothing is queued after the end.
        inbox.push(Pushed {
            frame: Frame::text("late"),
            at,
        });
        assert!(sub.try_recv().is_none());
    }
}
