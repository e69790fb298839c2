//! Fabric benchmarks (criterion 0.8), side by side in one run:
//!
//! - `raw_fsync` — `pwrite` 256 B + `fdatasync` on this disk: the physical
//!   reference every durable append pays for (under `always`) or shares
//!   (under `batch`);
//! - `store_append/{policy}/{writers}w/{size}` — appends through the storage
//!   layer (the stream store: a resource task, group commit, the durable
//!   log), 1 or 32 concurrent writers, 256 B or 4 KiB payloads;
//! - `http_append/…` — the same through the HTTP API on loopback (client
//!   and server share this machine's cores);
//! - `queue_roundtrip/batch/{workers}w` — enqueue → reserve → ack over HTTP;
//! - `redis_xadd/{always|everysec}/{writers}w/256B` — Redis Streams XADD
//!   with `appendonly yes`, the peer a user would pick, started privately
//!   on loopback by `benches/redis-peer.sh` (skipped with a note when
//!   `redis-server` is not installed).
//!
//! Criterion reports time per operation (= 1 / throughput for the
//! concurrent benches, which use `iter_custom`). At the end a table is
//! printed with, per configuration, operations/s, p50/p99 latency of
//! single operations, and fsyncs and appends per fsync (from the node's
//! own `flowmesh_fsync_total`). Run: `cargo bench -p fabric --bench fabric`
//! (or `benches/redis-peer.sh bench` to install Redis first).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use fabric::config::FsyncPolicy;
use fabric::durable::StoreOptions;
use fabric::frame::Entry;
use fabric::http::{AppState, router};
use fabric::metrics::Metrics;
use fabric::stores::Stores;
use fabric::stream_store::StreamKey;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Per-configuration figures gathered across criterion's samples.
#[derive(Default)]
struct Figures {
    ops: u64,
    elapsed: Duration,
    /// Latency of single operations, in microseconds.
    lat_us: Vec<u32>,
    fsyncs: u64,
}

static FIGURES: Mutex<BTreeMap<String, Figures>> = Mutex::new(BTreeMap::new());

fn record(name: &str, ops: u64, elapsed: Duration, lat: Vec<u32>, fsyncs: u64) {
    let mut f = FIGURES.lock().unwrap();
    let e = f.entry(name.to_owned()).or_default();
    e.ops += ops;
    e.elapsed += elapsed;
    e.fsyncs += fsyncs;
    // Bound memory: keep at most 2M samples per configuration.
    if e.lat_us.len() < 2_000_000 {
        e.lat_us.extend(lat);
    }
}

fn print_summary() {
    let f = FIGURES.lock().unwrap();
    if f.is_empty() {
        return;
    }
    println!();
    println!("| configuration | ops/s | p50 µs | p99 µs | fsyncs | ops per fsync |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, fig) in f.iter() {
        let mut l = fig.lat_us.clone();
        l.sort_unstable();
        let pct = |p: f64| {
            if l.is_empty() {
                0
            } else {
                l[((l.len() as f64 * p) as usize).min(l.len() - 1)]
            }
        };
        let rate = fig.ops as f64 / fig.elapsed.as_secs_f64().max(1e-9);
        let per_fsync = if fig.fsyncs > 0 {
            format!("{:.1}", fig.ops as f64 / fig.fsyncs as f64)
        } else {
            "–".into()
        };
        println!(
            "| {name} | {rate:.0} | {} | {} | {} | {per_fsync} |",
            pct(0.50),
            pct(0.99),
            fig.fsyncs
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `iters` operations split over `writers` concurrent tasks; returns
/// the wall time and every operation's latency (µs).
async fn concurrent<F, Fut>(writers: usize, iters: u64, op: F) -> (Duration, Vec<u32>)
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let n = iters / writers as u64 + u64::from((w as u64) < iters % writers as u64);
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n as usize);
            for i in 0..n {
                let t = Instant::now();
                op(w, i).await;
                lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(iters as usize);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (start.elapsed(), all)
}

fn policy_name(p: FsyncPolicy) -> &'static str {
    match p {
        FsyncPolicy::Always => "always",
        FsyncPolicy::Batch => "batch",
        FsyncPolicy::Interval => "interval",
    }
}

const POLICIES: [FsyncPolicy; 3] = [
    FsyncPolicy::Always,
    FsyncPolicy::Batch,
    FsyncPolicy::Interval,
];
const WRITERS: [usize; 2] = [1, 32];
const SIZES: [(usize, &str); 2] = [(256, "256B"), (4096, "4KiB")];

struct Node {
    stores: Arc<Stores>,
    metrics: Arc<Metrics>,
    base: String,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start_node(policy: FsyncPolicy) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let opts = StoreOptions {
        fsync_policy: policy,
        fsync_interval: Duration::from_millis(10),
        segment_bytes: 64 << 20,
        auto_create: true,
    };
    let (stores, _) = Stores::open(dir.path(), opts, Arc::clone(&metrics))
        .await
        .unwrap();
    let state = AppState::new(Arc::clone(&metrics));
    state.set_ready(Arc::clone(&stores));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router(state)).await;
    });
    Node {
        stores,
        metrics,
        base,
        server,
        _dir: dir,
    }
}

impl Node {
    async fn stop(self) {
        self.stores.shutdown().await;
        self.server.abort();
    }

    fn fsyncs(&self) -> u64 {
        self.metrics.fsync_total.load(Ordering::Relaxed)
    }
}

fn raw_fsync(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("fsync.probe");
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let buf = vec![0xA5u8; 256];
    let mut g = c.benchmark_group("raw_fsync");
    g.throughput(Throughput::Elements(1));
    let pos = AtomicU64::new(0);
    g.bench_function("pwrite_256B_fdatasync", |b| {
        b.iter_custom(|iters| {
            let mut lat = Vec::with_capacity(iters as usize);
            let start = Instant::now();
            for _ in 0..iters {
                let t = Instant::now();
                let p = pos.fetch_add(256, Ordering::Relaxed);
                f.write_all_at(&buf, p).unwrap();
                f.sync_data().unwrap();
                lat.push(t.elapsed().as_micros() as u32);
            }
            let el = start.elapsed();
            record("raw fsync (pwrite 256B + fdatasync)", iters, el, lat, iters);
            el
        })
    });
    g.finish();
}

fn store_append(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let mut g = c.benchmark_group("store_append");
    g.throughput(Throughput::Elements(1));
    for policy in POLICIES {
        for writers in WRITERS {
            for (size, size_name) in SIZES {
                let node = rt.block_on(start_node(policy));
                let name = format!("store {} {writers}w {size_name}", policy_name(policy));
                let id = BenchmarkId::new(policy_name(policy), format!("{writers}w/{size_name}"));
                let streams = Arc::clone(&node.stores.streams);
                g.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        let streams = Arc::clone(&streams);
                        let before = node.fsyncs();
                        // Every writer appends to the same stream (one log):
                        // what group commit is for.
                        let (el, lat) = rt.block_on(concurrent(writers, iters, move |_, _| {
                            let streams = Arc::clone(&streams);
                            async move {
                                let key = StreamKey::new("bench", "store", "s").unwrap();
                                streams
                                    .append(&key, vec![Entry::new(vec![7u8; size])])
                                    .await
                                    .unwrap();
                            }
                        }));
                        record(&name, iters, el, lat, node.fsyncs() - before);
                        el
                    })
                });
                rt.block_on(node.stop());
            }
        }
    }
    g.finish();
}

fn http_append(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let mut g = c.benchmark_group("http_append");
    g.throughput(Throughput::Elements(1));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    for policy in POLICIES {
        for writers in WRITERS {
            for (size, size_name) in SIZES {
                let node = rt.block_on(start_node(policy));
                let name = format!("http {} {writers}w {size_name}", policy_name(policy));
                let id = BenchmarkId::new(policy_name(policy), format!("{writers}w/{size_name}"));
                let body = Arc::new(
                    serde_json::to_vec(&json!({"events": [{
                        "payload": fabric_wire::encode_payload(&vec![7u8; size])
                    }]}))
                    .unwrap(),
                );
                let url = Arc::new(format!("{}/api/v1/streams/bench/http/s/events", node.base));
                g.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        let (client, body, url) =
                            (client.clone(), Arc::clone(&body), Arc::clone(&url));
                        let before = node.fsyncs();
                        let (el, lat) = rt.block_on(concurrent(writers, iters, move |_, _| {
                            let (client, body, url) =
                                (client.clone(), Arc::clone(&body), Arc::clone(&url));
                            async move {
                                let r = client
                                    .post(url.as_str())
                                    .header("content-type", "application/json")
                                    .body(body.as_ref().clone())
                                    .send()
                                    .await
                                    .unwrap();
                                assert_eq!(r.status(), 200);
                                let _ = r.bytes().await.unwrap();
                            }
                        }));
                        record(&name, iters, el, lat, node.fsyncs() - before);
                        el
                    })
                });
                rt.block_on(node.stop());
            }
        }
    }
    g.finish();
}

fn queue_roundtrip(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let mut g = c.benchmark_group("queue_roundtrip");
    g.throughput(Throughput::Elements(1));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    for workers in WRITERS {
        let node = rt.block_on(start_node(FsyncPolicy::Batch));
        let name = format!("queue enqueue→reserve→ack batch {workers}w 256B");
        let q = Arc::new(format!("{}/api/v1/queues/bench/q/work", node.base));
        let payload = fabric_wire::encode_payload(&[7u8; 256]);
        g.bench_function(BenchmarkId::new("batch", format!("{workers}w")), |b| {
            b.iter_custom(|iters| {
                let (client, q, payload) = (client.clone(), Arc::clone(&q), payload.clone());
                let before = node.fsyncs();
                let (el, lat) = rt.block_on(concurrent(workers, iters, move |_, _| {
                    let (client, q, payload) = (client.clone(), Arc::clone(&q), payload.clone());
                    async move {
                        let r = client
                            .post(format!("{q}/jobs"))
                            .json(&json!({ "payload": payload }))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200);
                        let _ = r.bytes().await;
                        // Reserve one job (any: workers share the queue) and ack it.
                        let r: serde_json::Value = client
                            .post(format!("{q}/reserve"))
                            .json(&json!({"visibility_timeout_seconds": 60,
                                          "long_poll_timeout_seconds": 5}))
                            .send()
                            .await
                            .unwrap()
                            .json()
                            .await
                            .unwrap();
                        let id = r["job"]["id"].as_str().expect("a job").to_owned();
                        let r = client
                            .post(format!("{q}/jobs/{id}/ack"))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200);
                    }
                }));
                record(&name, iters, el, lat, node.fsyncs() - before);
                el
            })
        });
        rt.block_on(node.stop());
    }
    g.finish();
}

/// A minimal RESP client (just enough for XADD); a dependency for one
/// benchmark command would cost more than these lines.
struct Resp {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Resp {
    async fn connect(port: u16) -> Resp {
        let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.set_nodelay(true).unwrap();
        let (r, w) = s.into_split();
        Resp {
            r: BufReader::new(r),
            w,
        }
    }

    async fn command(&mut self, args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.w.write_all(&out).await.unwrap();
        let mut line = Vec::new();
        self.r.read_until(b'\n', &mut line).await.unwrap();
        match line.first() {
            Some(b'$') => {
                let n: usize = std::str::from_utf8(&line[1..line.len() - 2])
                    .unwrap()
                    .parse()
                    .unwrap();
                let mut v = vec![0; n + 2];
                self.r.read_exact(&mut v).await.unwrap();
                v.truncate(n);
                v
            }
            Some(b'+') | Some(b':') => line,
            _ => panic!("redis error: {}", String::from_utf8_lossy(&line)),
        }
    }
}

fn redis_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/redis-peer.sh")
}

fn redis_xadd(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let found = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!(
            "note: redis-server is not installed: skipping the Redis Streams comparison \
             (install it with system-under-test/fabric/benches/redis-peer.sh install)"
        );
        return;
    }
    let mut g = c.benchmark_group("redis_xadd");
    g.throughput(Throughput::Elements(1));
    for fsync in ["always", "everysec"] {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let status = std::process::Command::new(redis_script())
            .args(["start", &port.to_string(), fsync])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "redis-peer.sh start failed");
        for writers in WRITERS {
            let name = format!("redis XADD appendfsync={fsync} {writers}w 256B");
            let conns: Vec<Arc<tokio::sync::Mutex<Resp>>> = rt.block_on(async {
                let mut v = Vec::new();
                for _ in 0..writers {
                    v.push(Arc::new(tokio::sync::Mutex::new(Resp::connect(port).await)));
                }
                v
            });
            let conns = Arc::new(conns);
            g.bench_function(BenchmarkId::new(fsync, format!("{writers}w/256B")), |b| {
                b.iter_custom(|iters| {
                    let conns = Arc::clone(&conns);
                    let (el, lat) = rt.block_on(concurrent(writers, iters, move |w, _| {
                        let conns = Arc::clone(&conns);
                        async move {
                            let mut cn = conns[w].lock().await;
                            let id = cn
                                .command(&[b"XADD", b"bench", b"*", b"payload", &[7u8; 256]])
                                .await;
                            assert!(!id.is_empty());
                        }
                    }));
                    record(&name, iters, el, lat, 0);
                    el
                })
            });
        }
        let _ = std::process::Command::new(redis_script())
            .arg("stop")
            .arg(dir.path())
            .status();
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .configure_from_args();
    let rt = runtime();
    raw_fsync(&mut c);
    store_append(&mut c, &rt);
    http_append(&mut c, &rt);
    queue_roundtrip(&mut c, &rt);
    redis_xadd(&mut c, &rt);
    c.final_summary();
    // The table means something only when criterion measured (`--bench`),
    // not in `cargo test`'s one-iteration test mode.
    if std::env::args().any(|a| a == "--bench") {
        print_summary();
    }
}
