//! The cluster transport (seed 004) over the published `network-protocol`
//! 1.3 crate: its `PacketCodec` frames every [`wire::Frame`], its
//! `transport::remote::connect` / `transport::tls::connect` dial peers and
//! its `TlsServerConfig` / `TlsClientConfig` load the per-run certificates
//! (mutual TLS: each node's certificate names the node, signed by the
//! run's CA).
//!
//! Each node dials each configured peer once (its *outbound link*) and
//! sends its requests there; the peer answers on the same connection.
//! So a node pair has two connections, one per direction, and a fault on
//! the link `a->b` touches only what `a` sends to `b`.
//!
//! Per peer: a bounded queue of outbound requests, a [`breaker::Breaker`],
//! heartbeats (a ping every `heartbeat`; nothing heard for
//! `heartbeat_timeout` ends the connection), reconnection with exponential
//! backoff, and the figures `/metrics` shows. A batch sent to a peer whose
//! breaker is open fails at once with `unavailable`; a batch in flight on
//! a connection that is lost fails with `unavailable` (it may or may not
//! have been handled there: only a `Settled` answer acknowledges it).
//!
//! Nagle: the crate never sets `TCP_NODELAY` (neither `remote::connect`
//! nor `tls::connect`), so a small request written while an earlier one is
//! unacknowledged waits for the peer's delayed ACK. The node sets
//! `TCP_NODELAY` on both ends of every connection itself, through the
//! crate's `Framed` (`get_ref()`); `--cluster-nodelay false` keeps the
//! crate's behaviour, to measure it.

pub mod breaker;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use network_protocol::config::PROTOCOL_VERSION;
use network_protocol::transport::tls::{TlsClientConfig, TlsServerConfig};
use network_protocol::{Packet, PacketCodec};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;

use crate::component::closed_error;
use crate::error::ApiError;
use crate::message::{Batch, Completion, Message};
use crate::node::Shared;
use breaker::{Breaker, Change, State};
use wire::Frame;

/// Files of the run's certificates (PEM): the CA that signs every node's
/// certificate, and this node's certificate (naming the node) and key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The transport's settings (`actor-node --help`, "Cluster").
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub listen: SocketAddr,
    pub peers: Vec<(String, String)>,
    pub tls: Option<TlsFiles>,
    pub nodelay: bool,
    pub heartbeat: Duration,
    pub heartbeat_timeout: Duration,
    pub request_timeout: Duration,
    pub breaker_failures: u32,
    pub breaker_open_for: Duration,
    /// Outbound requests (batches, lookups) queued per peer.
    pub queue: usize,
    pub backoff_max: Duration,
}

/// The first reconnection delay (doubling up to `backoff_max`).
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Requests awaiting their answer on one connection.
const MAX_IN_FLIGHT: usize = 4096;

/// Why a connection failed (`cluster_errors_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Connect,
    Probe,
    Heartbeat,
    Io,
    Malformed,
    RequestTimeout,
}

const FAILURES: [Failure; 6] = [
    Failure::Connect,
    Failure::Probe,
    Failure::Heartbeat,
    Failure::Io,
    Failure::Malformed,
    Failure::RequestTimeout,
];

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Probe => "probe",
            Failure::Heartbeat => "heartbeat",
            Failure::Io => "io",
            Failure::Malformed => "malformed",
            Failure::RequestTimeout => "request_timeout",
        }
    }
}

/// Who waits for the answer to an outbound request.
enum Waiter {
    /// A batch's deliveries (`n` owed to `done`, when anyone waits).
    Batch {
        done: Option<Arc<Completion>>,
        n: u64,
    },
    Lookup(oneshot::Sender<Option<String>>),
}

impl Waiter {
    fn fail(self, e: &ApiError) {
        match self {
            Waiter::Batch { done: Some(d), n } => d.failed(n, e),
            Waiter::Batch { done: None, .. } => {}
            Waiter::Lookup(tx) => {
                let _ = tx.send(None);
            }
        }
    }
}

struct Outbound {
    request: Request,
    waiter: Waiter,
    queued: Instant,
}

enum Request {
    Deliver {
        target: String,
        hops: u8,
        messages: Arc<[Message]>,
    },
    Lookup {
        name: String,
    },
}

#[derive(Default)]
struct PeerStats {
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    outbound_connections: AtomicU64,
    inbound_connections: AtomicU64,
    connects: AtomicU64,
    errors: [AtomicU64; FAILURES.len()],
    messages_sent: AtomicU64,
    messages_refused: AtomicU64,
}

/// One configured peer.
pub struct Peer {
    pub name: String,
    addr: String,
    tx: mpsc::Sender<Outbound>,
    breaker: Mutex<Breaker>,
    stats: PeerStats,
}

impl Peer {
    fn record(&self, f: Failure) -> Change {
        self.stats.errors[f as usize].fetch_add(1, Ordering::Relaxed);
        let change = self.breaker.lock().failure(Instant::now());
        if change == Change::Opened {
            tracing::warn!(peer = %self.name, reason = f.as_str(), "circuit breaker opened");
        }
        change
    }

    fn success(&self) {
        if self.breaker.lock().success(Instant::now()) == Change::Closed {
            tracing::info!(peer = %self.name, "circuit breaker closed");
        }
    }

    fn state(&self) -> State {
        self.breaker.lock().state(Instant::now())
    }

    fn open_error(&self) -> ApiError {
        let (failures, wait) = {
            let b = self.breaker.lock();
            (b.consecutive_failures(), b.wait(Instant::now()))
        };
        ApiError::unavailable(format!(
            "peer `{}` is unreachable: its circuit breaker is open after {failures} consecutive failures (next probe in {} ms)",
            self.name,
            wait.as_millis()
        ))
    }
}

/// The transport of one node.
pub struct Cluster {
    node_name: String,
    opts: ClusterOptions,
    peers: BTreeMap<String, Arc<Peer>>,
    shared: Weak<Shared>,
    tls_server: Option<tokio_rustls::TlsAcceptor>,
}

/// A framed connection, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

fn packet(f: &Frame) -> Packet {
    Packet {
        version: PROTOCOL_VERSION,
        payload: f.encode(),
    }
}

/// Bytes on the wire of a frame (the codec's 9-byte header included).
fn wire_len(p: &Packet) -> u64 {
    (p.payload.len() + network_protocol::core::packet::HEADER_SIZE) as u64
}

impl Cluster {
    /// Binds the cluster listener and starts the links to every peer.
    pub async fn start(
        node_name: &str,
        opts: ClusterOptions,
        shared: Weak<Shared>,
    ) -> anyhow::Result<(Arc<Cluster>, SocketAddr)> {
        use anyhow::Context;
        let tls_server = match &opts.tls {
            Some(t) => {
                let cfg = TlsServerConfig::new(&t.cert, &t.key)
                    .with_client_auth(t.ca.to_string_lossy())
                    .load_server_config()
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "cluster TLS: cannot load {} / {} / {}: {e}",
                            t.cert.display(),
                            t.key.display(),
                            t.ca.display()
                        )
                    })?;
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
            }
            None => None,
        };
        if let Some(t) = &opts.tls {
            // Fail at boot, not at the first dial.
            client_tls(t, "probe").load_client_config().map_err(|e| {
                anyhow::anyhow!(
                    "cluster TLS: cannot load the client side ({} / {}): {e}",
                    t.cert.display(),
                    t.key.display()
                )
            })?;
        }
        let listener = TcpListener::bind(opts.listen).await.with_context(|| {
            format!(
                "cannot listen on {} (cluster); is the port in use?",
                opts.listen
            )
        })?;
        let addr = listener.local_addr()?;
        let mut peers = BTreeMap::new();
        let mut receivers = Vec::new();
        for (name, peer_addr) in &opts.peers {
            let (tx, rx) = mpsc::channel(opts.queue.max(1));
            let peer = Arc::new(Peer {
                name: name.clone(),
                addr: peer_addr.clone(),
                tx,
                breaker: Mutex::new(Breaker::new(opts.breaker_failures, opts.breaker_open_for)),
                stats: PeerStats::default(),
            });
            receivers.push((peer.clone(), rx));
            peers.insert(name.clone(), peer);
        }
        let cluster = Arc::new(Cluster {
            node_name: node_name.to_string(),
            opts,
            peers,
            shared,
            tls_server,
        });
        tokio::spawn(cluster.clone().accept(listener));
        for (peer, rx) in receivers {
            tokio::spawn(cluster.clone().link(peer, rx));
        }
        Ok((cluster, addr))
    }

    pub fn peer(&self, name: &str) -> Option<&Arc<Peer>> {
        self.peers.get(name)
    }

    pub fn peer_names(&self) -> impl Iterator<Item = &str> {
        self.peers.keys().map(String::as_str)
    }

    /// Hands a batch to the component `target` on `peer`; its completion
    /// settles when the peer answers. Fails at once when the breaker is
    /// open; waits for room in the peer's queue (backpressure) at most the
    /// request timeout.
    pub async fn forward(&self, peer: &str, target: &str, batch: Batch) -> Result<(), ApiError> {
        let Some(p) = self.peers.get(peer) else {
            return Err(ApiError::unavailable(format!(
                "no cluster peer named `{peer}` (peers: {})",
                self.peers.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        };
        let n = batch.len() as u64;
        if p.state() != State::Closed {
            p.stats.messages_refused.fetch_add(n, Ordering::Relaxed);
            return Err(p.open_error());
        }
        let out = Outbound {
            request: Request::Deliver {
                target: target.to_string(),
                hops: batch.hops,
                messages: batch.messages,
            },
            waiter: Waiter::Batch {
                done: batch.done,
                n,
            },
            queued: Instant::now(),
        };
        match p.tx.send_timeout(out, self.opts.request_timeout).await {
            Ok(()) => Ok(()),
            Err(_) => {
                p.stats.messages_refused.fetch_add(n, Ordering::Relaxed);
                Err(ApiError::unavailable(format!(
                    "the queue to peer `{peer}` stayed full ({} requests) for {} ms",
                    self.opts.queue,
                    self.opts.request_timeout.as_millis()
                )))
            }
        }
    }

    /// Asks `peer` whether it has a component `name` (its state if so).
    pub async fn lookup_on(&self, peer: &str, name: &str) -> Result<Option<String>, ApiError> {
        let Some(p) = self.peers.get(peer) else {
            return Err(ApiError::invalid(format!(
                "no cluster peer named `{peer}` (peers: {})",
                self.peers.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        };
        if p.state() != State::Closed {
            return Err(p.open_error());
        }
        let (tx, rx) = oneshot::channel();
        let out = Outbound {
            request: Request::Lookup {
                name: name.to_string(),
            },
            waiter: Waiter::Lookup(tx),
            queued: Instant::now(),
        };
        let unanswered = || {
            ApiError::unavailable(format!(
                "peer `{peer}` did not answer a registry lookup within {} ms",
                self.opts.request_timeout.as_millis()
            ))
        };
        p.tx.send_timeout(out, self.opts.request_timeout)
            .await
            .map_err(|_| unanswered())?;
        match tokio::time::timeout(self.opts.request_timeout, rx).await {
            Ok(Ok(state)) => Ok(state),
            _ => Err(unanswered()),
        }
    }

    /// The registry's answer for a name not on this node: the first peer
    /// (by name) that has it. Peers that cannot answer are skipped.
    pub async fn lookup(&self, name: &str) -> Option<(String, String)> {
        let asks = self.peers.keys().map(|p| async move {
            self.lookup_on(p, name)
                .await
                .ok()
                .flatten()
                .map(|s| (p.clone(), s))
        });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .next()
    }

    /// Every breaker is closed and every outbound link is up.
    pub fn all_connected(&self) -> bool {
        self.peers.values().all(|p| {
            p.state() == State::Closed && p.stats.outbound_connections.load(Ordering::Relaxed) > 0
        })
    }

    // ---- outbound ------------------------------------------------------

    /// The outbound link to one peer, for the node's lifetime.
    async fn link(self: Arc<Cluster>, peer: Arc<Peer>, mut rx: mpsc::Receiver<Outbound>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            // Open: fail what is queued until a probe may go.
            loop {
                let wait = {
                    let mut b = peer.breaker.lock();
                    b.state(Instant::now());
                    b.wait(Instant::now())
                };
                if wait.is_zero() {
                    break;
                }
                self.drain_while(&peer, &mut rx, wait).await;
            }
            match self.dial(&peer).await {
                Ok(session) => {
                    peer.success();
                    backoff = BACKOFF_MIN;
                    peer.stats.connects.fetch_add(1, Ordering::Relaxed);
                    peer.stats
                        .outbound_connections
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(peer = %peer.name, addr = %peer.addr, "cluster link up");
                    let why = match session {
                        Session::Plain(f) => self.session(&peer, f, &mut rx).await,
                        Session::Tls(f) => self.session(&peer, *f, &mut rx).await,
                    };
                    peer.stats
                        .outbound_connections
                        .fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(peer = %peer.name, reason = why.as_str(), "cluster link down");
                    peer.record(why);
                }
                Err(why) => {
                    tracing::debug!(peer = %peer.name, reason = why.as_str(), "cannot reach peer");
                    peer.record(why);
                }
            }
            if peer.state() == State::Closed {
                // Still closed: retry after the backoff (requests wait in
                // the queue meanwhile, bounded).
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.opts.backoff_max);
            }
        }
    }

    /// Fails every request taken from the queue for `wait` (breaker open).
    async fn drain_while(&self, peer: &Peer, rx: &mut mpsc::Receiver<Outbound>, wait: Duration) {
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return,
                o = rx.recv() => match o {
                    Some(o) => self.refuse(peer, o, &peer.open_error()),
                    None => return,
                },
            }
        }
    }

    fn refuse(&self, peer: &Peer, o: Outbound, e: &ApiError) {
        if let Request::Deliver { messages, .. } = &o.request {
            peer.stats
                .messages_refused
                .fetch_add(messages.len() as u64, Ordering::Relaxed);
        }
        o.waiter.fail(e);
    }

    /// Connects (plain or TLS through the crate), then probes: a hello and
    /// a ping that must be answered within the heartbeat timeout.
    async fn dial(&self, peer: &Peer) -> Result<Session, Failure> {
        let limit = self.opts.heartbeat_timeout;
        let session = match &self.opts.tls {
            None => {
                let f = tokio::time::timeout(
                    limit,
                    network_protocol::transport::remote::connect(&peer.addr),
                )
                .await
                .map_err(|_| Failure::Connect)?
                .map_err(|_| Failure::Connect)?;
                let _ = f.get_ref().set_nodelay(self.opts.nodelay);
                Session::Plain(f)
            }
            Some(t) => {
                let f = tokio::time::timeout(
                    limit,
                    network_protocol::transport::tls::connect(
                        &peer.addr,
                        client_tls(t, &peer.name),
                    ),
                )
                .await
                .map_err(|_| Failure::Connect)?
                .map_err(|e| {
                    tracing::warn!(peer = %peer.name, error = %e, "cluster TLS connection failed");
                    Failure::Connect
                })?;
                let _ = f.get_ref().get_ref().0.set_nodelay(self.opts.nodelay);
                Session::Tls(Box::new(f))
            }
        };
        match session {
            Session::Plain(mut f) => {
                self.probe(peer, &mut f).await?;
                Ok(Session::Plain(f))
            }
            Session::Tls(mut f) => {
                self.probe(peer, &mut *f).await?;
                Ok(Session::Tls(f))
            }
        }
    }

    async fn probe<S: Io>(
        &self,
        peer: &Peer,
        f: &mut Framed<S, PacketCodec>,
    ) -> Result<(), Failure> {
        let limit = self.opts.heartbeat_timeout;
        let hello = packet(&Frame::Hello {
            node: self.node_name.clone(),
        });
        let ping = packet(&Frame::Ping { id: 0 });
        let sent = wire_len(&hello) + wire_len(&ping);
        let exchange = async {
            f.feed(hello).await.map_err(|_| Failure::Probe)?;
            f.send(ping).await.map_err(|_| Failure::Probe)?;
            loop {
                match f.next().await {
                    Some(Ok(p)) => {
                        peer.stats
                            .bytes_received
                            .fetch_add(wire_len(&p), Ordering::Relaxed);
                        if let Ok(Frame::Pong { id: 0 }) = Frame::decode(p.payload) {
                            return Ok(());
                        }
                    }
                    _ => return Err(Failure::Probe),
                }
            }
        };
        let r = tokio::time::timeout(limit, exchange)
            .await
            .unwrap_or(Err(Failure::Probe));
        peer.stats.bytes_sent.fetch_add(sent, Ordering::Relaxed);
        r
    }

    /// Runs one connection until it fails; fails what is in flight on it.
    async fn session<S: Io>(
        &self,
        peer: &Peer,
        framed: Framed<S, PacketCodec>,
        rx: &mut mpsc::Receiver<Outbound>,
    ) -> Failure {
        let (mut sink, mut stream) = framed.split();
        let mut pending: HashMap<u64, (Waiter, Instant)> = HashMap::new();
        let mut next_id: u64 = 1;
        let mut heartbeat = tokio::time::interval(self.opts.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard = Instant::now();
        let limit = self.opts.heartbeat_timeout;
        let why = loop {
            tokio::select! {
                o = rx.recv(), if pending.len() < MAX_IN_FLIGHT => {
                    let Some(o) = o else { break Failure::Io };
                    if o.queued.elapsed() > self.opts.request_timeout {
                        peer.stats.errors[Failure::RequestTimeout as usize].fetch_add(1, Ordering::Relaxed);
                        self.refuse(peer, o, &ApiError::unavailable(format!(
                            "waited more than {} ms in the queue to peer `{}`",
                            self.opts.request_timeout.as_millis(), peer.name)));
                        continue;
                    }
                    let id = next_id;
                    next_id += 1;
                    let frame = match o.request {
                        Request::Deliver { target, hops, messages } => {
                            peer.stats.messages_sent.fetch_add(messages.len() as u64, Ordering::Relaxed);
                            Frame::Deliver { id, target, hops, messages: messages.to_vec() }
                        }
                        Request::Lookup { name } => Frame::Lookup { id, name },
                    };
                    let p = packet(&frame);
                    let len = wire_len(&p);
                    pending.insert(id, (o.waiter, Instant::now()));
                    match tokio::time::timeout(limit, sink.send(p)).await {
                        Ok(Ok(())) => { peer.stats.bytes_sent.fetch_add(len, Ordering::Relaxed); }
                        Ok(Err(_)) => break Failure::Io,
                        // The peer stopped reading.
                        Err(_) => break Failure::Heartbeat,
                    }
                }
                p = stream.next() => {
                    let p = match p {
                        Some(Ok(p)) => p,
                        _ => break Failure::Io,
                    };
                    heard = Instant::now();
                    peer.stats.bytes_received.fetch_add(wire_len(&p), Ordering::Relaxed);
                    match Frame::decode(p.payload) {
                        Ok(Frame::Settled { id, delivered, failed, error }) => {
                            if let Some((Waiter::Batch { done: Some(d), n }, _)) = pending.remove(&id) {
                                settle(&d, n, delivered, failed, error, &peer.name);
                            }
                        }
                        Ok(Frame::Found { id, state }) => {
                            if let Some((Waiter::Lookup(tx), _)) = pending.remove(&id) {
                                let _ = tx.send(state);
                            }
                        }
                        Ok(Frame::Pong { .. }) => {}
                        Ok(_) => break Failure::Malformed,
                        Err(e) => {
                            tracing::warn!(peer = %peer.name, error = %e, "dropping the connection");
                            break Failure::Malformed;
                        }
                    }
                }
                _ = heartbeat.tick() => {
                    if heard.elapsed() > limit {
                        break Failure::Heartbeat;
                    }
                    let ping = packet(&Frame::Ping { id: next_id });
                    next_id += 1;
                    let len = wire_len(&ping);
                    match tokio::time::timeout(limit, sink.send(ping)).await {
                        Ok(Ok(())) => { peer.stats.bytes_sent.fetch_add(len, Ordering::Relaxed); }
                        Ok(Err(_)) => break Failure::Io,
                        Err(_) => break Failure::Heartbeat,
                    }
                    // Requests unanswered for the request timeout fail
                    // (the connection stays: heartbeats say the peer lives).
                    let late: Vec<u64> = pending
                        .iter()
                        .filter(|(_, (_, t))| t.elapsed() > self.opts.request_timeout)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in late {
                        if let Some((w, _)) = pending.remove(&id) {
                            peer.stats.errors[Failure::RequestTimeout as usize].fetch_add(1, Ordering::Relaxed);
                            w.fail(&ApiError::unavailable(format!(
                                "peer `{}` did not answer within {} ms", peer.name,
                                self.opts.request_timeout.as_millis())));
                        }
                    }
                }
            }
        };
        let e = ApiError::unavailable(format!(
            "the connection to peer `{}` was lost ({}) before it answered",
            peer.name,
            why.as_str()
        ));
        for (_, (w, _)) in pending.drain() {
            w.fail(&e);
        }
        why
    }

    // ---- inbound -------------------------------------------------------

    async fn accept(self: Arc<Cluster>, listener: TcpListener) {
        loop {
            let (stream, from) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(self.opts.nodelay);
            let me = self.clone();
            tokio::spawn(async move {
                match &me.tls_server {
                    None => me.serve(Framed::new(stream, PacketCodec)).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(
                            me.opts.heartbeat_timeout.max(Duration::from_secs(5)),
                            acceptor.accept(stream),
                        )
                        .await
                        {
                            Ok(Ok(s)) => me.serve(Framed::new(s, PacketCodec)).await,
                            Ok(Err(e)) => {
                                tracing::warn!(%from, error = %e, "cluster TLS handshake refused")
                            }
                            Err(_) => tracing::warn!(%from, "cluster TLS handshake timed out"),
                        }
                    }
                }
            });
        }
    }

    /// Serves one inbound connection: answers pings and lookups at once,
    /// deliveries when their deliveries settled.
    async fn serve<S: Io>(self: Arc<Cluster>, framed: Framed<S, PacketCodec>) {
        let (mut sink, mut stream) = framed.split();
        let Some(Ok(first)) = stream.next().await else {
            return;
        };
        let first_len = wire_len(&first);
        let from = match Frame::decode(first.payload) {
            Ok(Frame::Hello { node }) => node,
            _ => {
                tracing::warn!("cluster connection without a hello: dropped");
                return;
            }
        };
        let peer = self.peers.get(&from).cloned();
        if let Some(p) = &peer {
            p.stats.inbound_connections.fetch_add(1, Ordering::Relaxed);
            p.stats
                .bytes_received
                .fetch_add(first_len, Ordering::Relaxed);
        }
        let (tx, mut rx) = mpsc::channel::<Frame>(1024);
        let writer_peer = peer.clone();
        let writer = tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                let p = packet(&f);
                let len = wire_len(&p);
                if sink.send(p).await.is_err() {
                    break;
                }
                if let Some(peer) = &writer_peer {
                    peer.stats.bytes_sent.fetch_add(len, Ordering::Relaxed);
                }
            }
        });
        while let Some(Ok(p)) = stream.next().await {
            if let Some(peer) = &peer {
                peer.stats
                    .bytes_received
                    .fetch_add(wire_len(&p), Ordering::Relaxed);
            }
            let frame = match Frame::decode(p.payload) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(peer = %from, error = %e, "dropping the connection");
                    break;
                }
            };
            match frame {
                Frame::Ping { id } => {
                    if tx.send(Frame::Pong { id }).await.is_err() {
                        break;
                    }
                }
                Frame::Lookup { id, name } => {
                    let state = self
                        .shared
                        .upgrade()
                        .and_then(|s| s.lookup(&name))
                        .map(|c| c.state().as_str().to_string());
                    if tx.send(Frame::Found { id, state }).await.is_err() {
                        break;
                    }
                }
                Frame::Deliver {
                    id,
                    target,
                    hops,
                    messages,
                } => {
                    let tx = tx.clone();
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        let settled = deliver_here(shared, id, &target, hops, messages).await;
                        let _ = tx.send(settled).await;
                    });
                }
                _ => break,
            }
        }
        if let Some(p) = &peer {
            p.stats.inbound_connections.fetch_sub(1, Ordering::Relaxed);
        }
        drop(tx);
        let _ = writer.await;
    }

    // ---- metrics -------------------------------------------------------

    /// Seed 004's figures per peer, in Prometheus text.
    pub fn render(&self, out: &mut String) {
        let peers = &self.peers;
        let family = |out: &mut String,
                      name: &str,
                      kind: &str,
                      help: &str,
                      f: &dyn Fn(&Peer, &mut String)| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for p in peers.values() {
                f(p, out);
            }
        };
        // A family of one value per peer.
        let single =
            |out: &mut String, name: &str, kind: &str, help: &str, v: &dyn Fn(&Peer) -> u64| {
                family(out, name, kind, help, &|p, o| {
                    let _ = writeln!(o, "{name}{{peer=\"{}\"}} {}", p.name, v(p));
                });
            };
        family(
            out,
            "cluster_connections_active",
            "gauge",
            "Connections with a peer (outbound: this node dialled it).",
            &|p, o| {
                for (dir, v) in [
                    ("outbound", &p.stats.outbound_connections),
                    ("inbound", &p.stats.inbound_connections),
                ] {
                    let _ = writeln!(
                        o,
                        "cluster_connections_active{{peer=\"{}\",direction=\"{dir}\"}} {}",
                        p.name,
                        v.load(Ordering::Relaxed)
                    );
                }
            },
        );
        single(
            out,
            "cluster_connects_total",
            "counter",
            "Outbound connections established (probe answered).",
            &|p| p.stats.connects.load(Ordering::Relaxed),
        );
        single(
            out,
            "cluster_bytes_sent_total",
            "counter",
            "Frame bytes written to a peer (codec header included, TLS records not).",
            &|p| p.stats.bytes_sent.load(Ordering::Relaxed),
        );
        single(
            out,
            "cluster_bytes_received_total",
            "counter",
            "Frame bytes read from a peer.",
            &|p| p.stats.bytes_received.load(Ordering::Relaxed),
        );
        family(
            out,
            "cluster_errors_total",
            "counter",
            "Link failures by kind (connect, probe, heartbeat, io, malformed, request_timeout).",
            &|p, o| {
                for f in FAILURES {
                    let _ = writeln!(
                        o,
                        "cluster_errors_total{{peer=\"{}\",kind=\"{}\"}} {}",
                        p.name,
                        f.as_str(),
                        p.stats.errors[f as usize].load(Ordering::Relaxed)
                    );
                }
            },
        );
        single(
            out,
            "cluster_breaker_state",
            "gauge",
            "The peer's circuit breaker: 0 closed, 1 half-open, 2 open.",
            &|p| p.state() as u64,
        );
        family(
            out,
            "cluster_breaker_transitions_total",
            "counter",
            "Times the peer's breaker opened and closed.",
            &|p, o| {
                let (opened, closed) = {
                    let b = p.breaker.lock();
                    (b.opened, b.closed)
                };
                let _ = writeln!(
                    o,
                    "cluster_breaker_transitions_total{{peer=\"{}\",to=\"open\"}} {opened}\ncluster_breaker_transitions_total{{peer=\"{}\",to=\"closed\"}} {closed}",
                    p.name, p.name
                );
            },
        );
        single(
            out,
            "cluster_queue_depth",
            "gauge",
            "Requests queued for a peer (bounded by --cluster-queue).",
            &|p| (p.tx.max_capacity() - p.tx.capacity()) as u64,
        );
        single(
            out,
            "cluster_messages_sent_total",
            "counter",
            "Messages sent to a peer in batches.",
            &|p| p.stats.messages_sent.load(Ordering::Relaxed),
        );
        single(
            out,
            "cluster_messages_refused_total",
            "counter",
            "Messages for a peer failed before sending (breaker open, queue full or stale).",
            &|p| p.stats.messages_refused.load(Ordering::Relaxed),
        );
    }
}

enum Session {
    Plain(Framed<TcpStream, PacketCodec>),
    Tls(Box<Framed<tokio_rustls::client::TlsStream<TcpStream>, PacketCodec>>),
}

fn client_tls(t: &TlsFiles, server_name: &str) -> TlsClientConfig {
    TlsClientConfig::new(server_name)
        .with_root_ca(t.ca.to_string_lossy())
        .with_client_certificate(
            t.cert.to_string_lossy().into_owned(),
            t.key.to_string_lossy().into_owned(),
        )
}

/// Settles `n` deliveries owed to `done` by a peer's answer: a remote topic
/// may have delivered more (`owe` first), one without subscribers fewer.
fn settle(
    done: &Completion,
    n: u64,
    delivered: u64,
    failed: u64,
    error: Option<ApiError>,
    peer: &str,
) {
    let total = delivered + failed;
    if total > n {
        done.owe(total - n);
    }
    if failed > 0 {
        let e = error.unwrap_or_else(|| {
            ApiError::unavailable(format!("deliveries failed on peer `{peer}`"))
        });
        done.failed(failed, &e);
    }
    done.delivered(delivered);
    if total < n {
        done.absorbed(n - total);
    }
}

/// Admits a batch that came from a peer into the local component
/// `target` and answers once every delivery settled.
async fn deliver_here(
    shared: Weak<Shared>,
    id: u64,
    target: &str,
    hops: u8,
    messages: Vec<Message>,
) -> Frame {
    let n = messages.len() as u64;
    let fail = |e: ApiError| Frame::Settled {
        id,
        delivered: 0,
        failed: n,
        error: Some(e),
    };
    let Some(shared) = shared.upgrade() else {
        return fail(ApiError::unavailable("the node is shutting down"));
    };
    let Some(comp) = shared.lookup(target) else {
        return fail(ApiError::unknown(target));
    };
    if !comp.accepts() {
        return fail(closed_error(&comp));
    }
    if hops >= crate::message::MAX_HOPS {
        return fail(ApiError::invalid(format!(
            "the batch passed through {hops} components before `{target}`: a forwarding loop"
        )));
    }
    let done = Completion::new(n);
    let batch = Batch {
        messages: messages.into(),
        done: Some(done.clone()),
        enqueued: Instant::now(),
        hops,
    };
    shared.metrics.messages_sent.fetch_add(n, Ordering::Relaxed);
    if comp.mailbox.admit(batch).await.is_err() {
        return fail(closed_error(&comp));
    }
    done.wait().await;
    let o = done.outcome();
    Frame::Settled {
        id,
        delivered: o.delivered,
        failed: o.failed,
        error: o.error,
    }
}
