//! Gauntlet's fault proxy: one TCP proxy per link (`loadgen->fabric`, …)
//! whose faults change while traffic flows.
//!
//! A [`Proxy`] listens on a loopback port and forwards every connection to
//! its upstream address, which can change at run time (a restarted container
//! maps a new host port). *Toxics* — the word Toxiproxy uses — degrade the
//! traffic: [`ToxicKind::Latency`] (± jitter), [`ToxicKind::Bandwidth`],
//! [`ToxicKind::Reset`] (an RST: `SO_LINGER` 0, then close),
//! [`ToxicKind::Blackhole`] (data is swallowed, nothing answers),
//! [`ToxicKind::Slicer`] and [`ToxicKind::Limit`] (close after N bytes).
//! Each toxic applies to one direction or both ([`Stream`]) and, like
//! Toxiproxy's `toxicity`, to each connection with a probability (rolled
//! once per connection and toxic from the proxy's seed). [`Proxy::set_down`]
//! is the link itself going away: new connections are refused (the
//! listener is closed) and existing ones are reset.
//!
//! Adding or removing a toxic never drops a connection: each chunk of data
//! is judged by the toxics in force when it was read. With no toxic a chunk
//! is written as soon as it is read (no added buffering beyond one read).
//!
//! The proxy never resolves names and never connects anywhere but its
//! upstream; the harness points it at loopback addresses only.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long the proxy waits for its upstream to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest chunk read at once.
const READ_BUF: usize = 64 * 1024;
/// Chunks read ahead of the writer per direction (bounds memory under latency).
const CHUNKS_AHEAD: usize = 256;

/// A direction of data through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client to the upstream (requests).
    Upstream,
    /// From the upstream back to the client (responses).
    Downstream,
}

/// Which directions a toxic applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Stream {
    Upstream,
    Downstream,
    #[default]
    Both,
}

impl Stream {
    pub fn covers(self, d: Direction) -> bool {
        matches!(
            (self, d),
            (Stream::Both, _)
                | (Stream::Upstream, Direction::Upstream)
                | (Stream::Downstream, Direction::Downstream)
        )
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
            Stream::Both => "both",
        })
    }
}

/// What a toxic does to the data it applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum ToxicKind {
    /// Delays every chunk by `latency` ± a uniform `jitter` (order is kept).
    Latency { latency: Duration, jitter: Duration },
    /// Paces the data to at most this many bytes per second.
    Bandwidth { bytes_per_s: u64 },
    /// Resets the connection (RST to both ends) `after` the toxic took hold
    /// of it (0: at once, also for every new connection).
    Reset { after: Duration },
    /// Swallows the data: accepted, never delivered, never answered.
    Blackhole,
    /// Cuts each chunk into slices of `average_size` ± `size_variation`
    /// bytes written `delay` apart.
    Slicer {
        average_size: usize,
        size_variation: usize,
        delay: Duration,
    },
    /// Lets `bytes` bytes through (counted from when the toxic took hold of
    /// the connection), then closes the connection.
    Limit { bytes: u64 },
}

impl ToxicKind {
    /// `latency`, `bandwidth`, … as in the scenario.
    pub fn name(&self) -> &'static str {
        match self {
            ToxicKind::Latency { .. } => "latency",
            ToxicKind::Bandwidth { .. } => "bandwidth",
            ToxicKind::Reset { .. } => "reset",
            ToxicKind::Blackhole => "blackhole",
            ToxicKind::Slicer { .. } => "slicer",
            ToxicKind::Limit { .. } => "limit",
        }
    }
}

/// A named toxic on a proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Toxic {
    /// Unique on its proxy; what [`Proxy::remove_toxic`] takes.
    pub name: String,
    pub kind: ToxicKind,
    pub stream: Stream,
    /// Probability, 0.0..=1.0, that a given connection is affected (1.0: all).
    pub toxicity: f64,
}

impl Toxic {
    /// A toxic on both directions of every connection.
    pub fn new(name: impl Into<String>, kind: ToxicKind) -> Self {
        Toxic {
            name: name.into(),
            kind,
            stream: Stream::Both,
            toxicity: 1.0,
        }
    }

    pub fn on(mut self, stream: Stream) -> Self {
        self.stream = stream;
        self
    }

    pub fn with_toxicity(mut self, toxicity: f64) -> Self {
        self.toxicity = toxicity;
        self
    }

    fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.toxicity) {
            return Err(format!("toxicity {} is outside 0.0..=1.0", self.toxicity));
        }
        match self.kind {
            ToxicKind::Bandwidth { bytes_per_s: 0 } => {
                Err("bandwidth 0 B/s is a blackhole (hint: use `blackhole`)".to_owned())
            }
            ToxicKind::Slicer {
                average_size,
                size_variation,
                ..
            } if average_size == 0 || size_variation >= average_size => Err(format!(
                "slicer average size {average_size} must be above 0 and above its variation {size_variation}"
            )),
            _ => Ok(()),
        }
    }
}

/// What a proxy control call could not do.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("proxy `{proxy}`: a toxic named `{name}` is already set")]
    DuplicateToxic { proxy: String, name: String },
    #[error("proxy `{proxy}`: no toxic named `{name}`")]
    NoSuchToxic { proxy: String, name: String },
    #[error("proxy `{proxy}`: toxic `{name}`: {why}")]
    InvalidToxic {
        proxy: String,
        name: String,
        why: String,
    },
    #[error("proxy `{proxy}`: cannot listen on {addr}: {error}")]
    Listen {
        proxy: String,
        addr: SocketAddr,
        error: io::Error,
    },
}

#[derive(Debug)]
struct Entry {
    /// Unique per addition, so a re-added toxic is rolled again.
    id: u64,
    toxic: Toxic,
}

#[derive(Debug, Clone)]
struct State {
    upstream: SocketAddr,
    toxics: Arc<Vec<Entry>>,
    /// Bumped to cut every existing connection (`down`).
    cut_epoch: u64,
    closed: bool,
}

struct Inner {
    name: String,
    listen: SocketAddr,
    seed: u64,
    state: watch::Sender<State>,
    next_id: AtomicU64,
    accepted: AtomicU64,
    live: AtomicUsize,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

/// One link's proxy. Dropping it closes the listener and resets every
/// connection through it.
pub struct Proxy {
    inner: Arc<Inner>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("name", &self.inner.name)
            .field("listen", &self.inner.listen)
            .field("upstream", &self.upstream())
            .finish()
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // Connections the proxy accepted leave TIME_WAIT entries on the listen
    // port; a listener re-opened after `down` must still bind.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

impl Proxy {
    /// Starts a proxy named `name` (the link, e.g. `loadgen->fabric`)
    /// listening on `listen` (port 0: any free port) and forwarding to
    /// `upstream`. `seed` drives toxicity rolls and jitter. Must be called
    /// inside a tokio runtime.
    pub fn start(
        name: impl Into<String>,
        listen: SocketAddr,
        upstream: SocketAddr,
        seed: u64,
    ) -> Result<Proxy, ProxyError> {
        let name = name.into();
        let listener = bind(listen).map_err(|error| ProxyError::Listen {
            proxy: name.clone(),
            addr: listen,
            error,
        })?;
        let listen = listener.local_addr().map_err(|error| ProxyError::Listen {
            proxy: name.clone(),
            addr: listen,
            error,
        })?;
        let (state, _) = watch::channel(State {
            upstream,
            toxics: Arc::new(Vec::new()),
            cut_epoch: 0,
            closed: false,
        });
        let inner = Arc::new(Inner {
            name,
            listen,
            seed,
            state,
            next_id: AtomicU64::new(1),
            accepted: AtomicU64::new(0),
            live: AtomicUsize::new(0),
            acceptor: Mutex::new(None),
        });
        let handle = tokio::spawn(accept_loop(listener, inner.clone()));
        *inner.acceptor.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok(Proxy { inner })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.inner.listen
    }

    pub fn upstream(&self) -> SocketAddr {
        self.inner.state.borrow().upstream
    }

    /// Points new connections at `upstream`; existing ones keep theirs.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        self.inner.state.send_modify(|s| s.upstream = upstream);
    }

    /// Adds a toxic; it applies to data read from now on, on connections
    /// old and new.
    pub fn add_toxic(&self, toxic: Toxic) -> Result<(), ProxyError> {
        toxic.validate().map_err(|why| ProxyError::InvalidToxic {
            proxy: self.inner.name.clone(),
            name: toxic.name.clone(),
            why,
        })?;
        let mut result = Ok(());
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner.state.send_if_modified(|s| {
            if s.toxics.iter().any(|e| e.toxic.name == toxic.name) {
                result = Err(ProxyError::DuplicateToxic {
                    proxy: self.inner.name.clone(),
                    name: toxic.name.clone(),
                });
                return false;
            }
            let mut toxics: Vec<Entry> = s
                .toxics
                .iter()
                .map(|e| Entry {
                    id: e.id,
                    toxic: e.toxic.clone(),
                })
                .collect();
            toxics.push(Entry {
                id,
                toxic: toxic.clone(),
            });
            s.toxics = Arc::new(toxics);
            true
        });
        result
    }

    /// Removes a toxic by name; data read from now on is no longer affected.
    pub fn remove_toxic(&self, name: &str) -> Result<Toxic, ProxyError> {
        let mut removed = None;
        self.inner.state.send_if_modified(|s| {
            let Some(pos) = s.toxics.iter().position(|e| e.toxic.name == name) else {
                return false;
            };
            let mut toxics: Vec<Entry> = s
                .toxics
                .iter()
                .map(|e| Entry {
                    id: e.id,
                    toxic: e.toxic.clone(),
                })
                .collect();
            removed = Some(toxics.remove(pos).toxic);
            s.toxics = Arc::new(toxics);
            true
        });
        removed.ok_or_else(|| ProxyError::NoSuchToxic {
            proxy: self.inner.name.clone(),
            name: name.to_owned(),
        })
    }

    pub fn toxics(&self) -> Vec<Toxic> {
        self.inner
            .state
            .borrow()
            .toxics
            .iter()
            .map(|e| e.toxic.clone())
            .collect()
    }

    /// `true`: the link goes away — the listener is closed (new connections
    /// are refused) before this returns, and every existing connection is
    /// reset. `false`: the listener opens again on the same address.
    pub async fn set_down(&self, down: bool) -> Result<(), ProxyError> {
        if down {
            let handle = self
                .inner
                .acceptor
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            self.inner.state.send_modify(|s| s.cut_epoch += 1);
            if let Some(handle) = handle {
                handle.abort();
                // Resolves once the task (and the listener it owns) is dropped.
                let _ = handle.await;
            }
            return Ok(());
        }
        let mut acceptor = self
            .inner
            .acceptor
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if acceptor.is_none() {
            let listener = bind(self.inner.listen).map_err(|error| ProxyError::Listen {
                proxy: self.inner.name.clone(),
                addr: self.inner.listen,
                error,
            })?;
            *acceptor = Some(tokio::spawn(accept_loop(listener, self.inner.clone())));
        }
        Ok(())
    }

    pub fn is_down(&self) -> bool {
        self.inner
            .acceptor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// Connections open through the proxy now.
    pub fn live_connections(&self) -> usize {
        self.inner.live.load(Ordering::Relaxed)
    }

    /// Connections accepted since the proxy started.
    pub fn accepted_connections(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(handle) = self
            .inner
            .acceptor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            handle.abort();
        }
        self.inner.state.send_modify(|s| s.closed = true);
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                let id = inner.accepted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(connection(client, inner.clone(), id));
            }
            // Out of descriptors and the like: back off briefly, keep serving.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Per-connection randomness: toxicity rolls (once per toxic) and jitter.
struct Roller {
    rng: u64,
    decided: HashMap<u64, bool>,
}

impl Roller {
    fn new(seed: u64) -> Self {
        Roller {
            rng: seed,
            decided: HashMap::new(),
        }
    }

    /// splitmix64.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn applies(&mut self, e: &Entry) -> bool {
        if e.toxic.toxicity >= 1.0 {
            return true;
        }
        if e.toxic.toxicity <= 0.0 {
            return false;
        }
        if let Some(&d) = self.decided.get(&e.id) {
            return d;
        }
        let d = self.unit() < e.toxic.toxicity;
        self.decided.insert(e.id, d);
        d
    }
}

struct LiveGuard(Arc<Inner>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection ended.
enum End {
    /// Both directions closed normally, or a limit or an error closed it.
    Close,
    /// Reset toxic, `down`, or the proxy dropped: RST both ends.
    Reset,
}

/// RST instead of FIN when the socket is closed.
fn arm_reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

async fn connection(client: TcpStream, inner: Arc<Inner>, id: u64) {
    inner.live.fetch_add(1, Ordering::Relaxed);
    let _live = LiveGuard(inner.clone());
    let mut rx = inner.state.subscribe();
    let (upstream, epoch) = {
        let s = rx.borrow_and_update();
        if s.closed {
            return;
        }
        (s.upstream, s.cut_epoch)
    };
    let roller = Arc::new(Mutex::new(Roller::new(
        inner.seed ^ id.wrapping_mul(0xA076_1D64_78BD_642F),
    )));
    // A reset due at once: the connection never carries a byte.
    if reset_now(&rx.borrow(), &roller) {
        arm_reset(&client);
        return;
    }
    let server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(s)) => s,
        // The upstream is gone: the client sees what it would see talking
        // to a dead server directly.
        _ => {
            arm_reset(&client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);

    let supervisor = supervise(rx.clone(), epoch, roller.clone());
    let up = pump(
        &client,
        &server,
        Direction::Upstream,
        rx.clone(),
        roller.clone(),
    );
    let down = pump(&server, &client, Direction::Downstream, rx, roller);
    tokio::pin!(supervisor, up, down);
    let (mut up_done, mut down_done) = (false, false);
    let end = loop {
        tokio::select! {
            biased;
            e = &mut supervisor => break e,
            r = &mut up, if !up_done => match r {
                PumpEnd::Eof => up_done = true,
                PumpEnd::Closed => break End::Close,
            },
            r = &mut down, if !down_done => match r {
                PumpEnd::Eof => down_done = true,
                PumpEnd::Closed => break End::Close,
            },
        }
        if up_done && down_done {
            break End::Close;
        }
    };
    if let End::Reset = end {
        arm_reset(&client);
        arm_reset(&server);
    }
}

fn reset_now(state: &State, roller: &Mutex<Roller>) -> bool {
    let mut roller = roller.lock().unwrap_or_else(|e| e.into_inner());
    state.toxics.iter().any(|e| {
        matches!(e.toxic.kind, ToxicKind::Reset { after } if after.is_zero()) && roller.applies(e)
    })
}

/// Ends the connection on `down`, on the proxy's drop, or when a reset
/// toxic's time has come.
async fn supervise(mut rx: watch::Receiver<State>, epoch: u64, roller: Arc<Mutex<Roller>>) -> End {
    let mut reset_at: Option<Instant> = None;
    loop {
        {
            let s = rx.borrow_and_update();
            if s.closed || s.cut_epoch != epoch {
                return End::Reset;
            }
            let mut roller = roller.lock().unwrap_or_else(|e| e.into_inner());
            let after = s
                .toxics
                .iter()
                .filter_map(|e| match e.toxic.kind {
                    ToxicKind::Reset { after } if roller.applies(e) => Some(after),
                    _ => None,
                })
                .min();
            reset_at = after.map(|after| reset_at.unwrap_or_else(|| Instant::now() + after));
        }
        if reset_at.is_some_and(|at| at <= Instant::now()) {
            return End::Reset;
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return End::Reset },
            () = sleep_until_opt(reset_at) => return End::Reset,
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

enum PumpEnd {
    /// The source closed its side; the close was passed on.
    Eof,
    /// A limit was reached or an I/O error happened: close the connection.
    Closed,
}

enum Chunk {
    Data {
        bytes: Vec<u8>,
        release: Instant,
        slices: Option<(Vec<usize>, Duration)>,
        bytes_per_s: Option<u64>,
    },
    Eof,
    /// A limit was reached after the data before this.
    Close,
}

async fn read_some(src: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        src.readable().await?;
        match src.try_read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        dst.writable().await?;
        match dst.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `data` no faster than `bytes_per_s`.
async fn write_paced(dst: &TcpStream, data: &[u8], bytes_per_s: Option<u64>) -> io::Result<()> {
    let Some(rate) = bytes_per_s else {
        return write_all(dst, data).await;
    };
    // Pieces of about 10 ms worth of bytes.
    let piece = ((rate / 100) as usize).max(1);
    for part in data.chunks(piece) {
        write_all(dst, part).await?;
        tokio::time::sleep(Duration::from_secs_f64(part.len() as f64 / rate as f64)).await;
    }
    Ok(())
}

/// Moves data from `src` to `dst` through the toxics of direction `dir`.
/// A reader judges each chunk by the toxics in force when it was read; a
/// writer releases it at its time, so latency does not cap throughput.
async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    dir: Direction,
    rx: watch::Receiver<State>,
    roller: Arc<Mutex<Roller>>,
) -> PumpEnd {
    let (tx, mut chunks) = mpsc::channel::<Chunk>(CHUNKS_AHEAD);
    let reader = async move {
        let mut buf = vec![0u8; READ_BUF];
        let mut last_release = Instant::now();
        // Bytes passed per limit toxic (by id) on this direction.
        let mut passed: HashMap<u64, u64> = HashMap::new();
        loop {
            let n = match read_some(src, &mut buf).await {
                Ok(0) => {
                    let _ = tx.send(Chunk::Eof).await;
                    break;
                }
                Ok(n) => n,
                Err(_) => break,
            };
            let toxics = rx.borrow().toxics.clone();
            let mut data = &buf[..n];
            let mut close = false;
            let mut delay = Duration::ZERO;
            let mut slices = None;
            let mut bytes_per_s: Option<u64> = None;
            let mut blackhole = false;
            {
                let mut roller = roller.lock().unwrap_or_else(|e| e.into_inner());
                for e in toxics.iter() {
                    if !e.toxic.stream.covers(dir) || !roller.applies(e) {
                        continue;
                    }
                    match e.toxic.kind {
                        ToxicKind::Blackhole => blackhole = true,
                        ToxicKind::Latency { latency, jitter } => {
                            let j = jitter.as_secs_f64() * (2.0 * roller.unit() - 1.0);
                            delay += Duration::from_secs_f64((latency.as_secs_f64() + j).max(0.0));
                        }
                        ToxicKind::Bandwidth { bytes_per_s: r } => {
                            bytes_per_s = Some(bytes_per_s.map_or(r, |b| b.min(r)));
                        }
                        ToxicKind::Slicer {
                            average_size,
                            size_variation,
                            delay: d,
                        } if slices.is_none() => {
                            let mut sizes = Vec::new();
                            let mut left = data.len();
                            while left > 0 {
                                let v = size_variation as f64 * (2.0 * roller.unit() - 1.0);
                                let size =
                                    ((average_size as f64 + v).round() as usize).clamp(1, left);
                                sizes.push(size);
                                left -= size;
                            }
                            slices = Some((sizes, d));
                        }
                        ToxicKind::Limit { bytes } => {
                            let p = passed.entry(e.id).or_insert(0);
                            let room = bytes.saturating_sub(*p);
                            if data.len() as u64 >= room {
                                data = &data[..room as usize];
                                close = true;
                            }
                            *p += data.len() as u64;
                        }
                        ToxicKind::Slicer { .. } | ToxicKind::Reset { .. } => {}
                    }
                }
            }
            if blackhole {
                continue;
            }
            if let Some((sizes, _)) = &mut slices {
                // A limit may have shortened the chunk after slicing.
                let mut left = data.len();
                sizes.retain_mut(|s| {
                    *s = (*s).min(left);
                    left -= *s;
                    *s > 0
                });
            }
            let release = last_release.max(Instant::now() + delay);
            last_release = release;
            if !data.is_empty()
                && tx
                    .send(Chunk::Data {
                        bytes: data.to_vec(),
                        release,
                        slices,
                        bytes_per_s,
                    })
                    .await
                    .is_err()
            {
                break;
            }
            if close {
                let _ = tx.send(Chunk::Close).await;
                break;
            }
        }
        std::future::pending::<PumpEnd>().await
    };
    let writer = async {
        while let Some(chunk) = chunks.recv().await {
            match chunk {
                Chunk::Data {
                    bytes,
                    release,
                    slices,
                    bytes_per_s,
                } => {
                    // A sleep rounds up to the timer's next millisecond
                    // tick even when due, so only sleep when early.
                    if release > Instant::now() {
                        tokio::time::sleep_until(release).await;
                    }
                    let written = match slices {
                        None => write_paced(dst, &bytes, bytes_per_s).await,
                        Some((sizes, delay)) => {
                            let mut at = 0;
                            let mut result = Ok(());
                            for (i, size) in sizes.iter().enumerate() {
                                if i > 0 {
                                    tokio::time::sleep(delay).await;
                                }
                                result = write_paced(dst, &bytes[at..at + size], bytes_per_s).await;
                                if result.is_err() {
                                    break;
                                }
                                at += size;
                            }
                            result
                        }
                    };
                    if written.is_err() {
                        return PumpEnd::Closed;
                    }
                }
                Chunk::Eof => {
                    let _ = socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write);
                    return PumpEnd::Eof;
                }
                Chunk::Close => return PumpEnd::Closed,
            }
        }
        // The reader stopped on a read error.
        PumpEnd::Closed
    };
    tokio::select! {
        end = writer => end,
        end = reader => end,
    }
}
