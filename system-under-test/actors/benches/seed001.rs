//! Seed 001's seven baseline rows, each measured as a user means it
//! (delivered *and* handled), on the `actors` node in process.
//!
//! | row | measured here |
//! |---|---|
//! | spawn | spawn a component + its first message handled |
//! | lifecycle | spawn, one message handled, graceful stop |
//! | routing | send by name to a live component, handled (one message; and a batch of 1,000 per message) |
//! | request_response | a reply received from an echo |
//! | fanout_100 | one message published to a topic, handled by all 100 subscribers |
//! | throughput | 100,000 messages through forward → forward → sink, handled at the sink |
//! | registry_lookup | a lookup by name among 1,000 live components |
//!
//! Every row runs on a tokio multi-thread runtime with 2 workers (this
//! machine's cores). The peers' rows (actix, ractor, kameo) live in
//! `benches/peers/` and run in the same criterion run.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::{Behavior, ComponentSpec, Message, Node, NodeOptions, Wait};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod peers;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `f` as a task of `rt` (on a worker, as a client actor would be),
/// not on the benchmark's own thread: a message then costs what it costs
/// inside the runtime, not a wake-up of a parked worker thread.
fn on<F>(rt: &tokio::runtime::Runtime, f: F) -> Duration
where
    F: std::future::Future<Output = Duration> + Send + 'static,
{
    rt.block_on(async { tokio::spawn(f).await.expect("bench task") })
}

fn one() -> Vec<Message> {
    vec![Message::new(Bytes::from_static(b"1"))]
}

/// The pipeline of row 6 and the size of its batches.
pub const PIPELINE_MESSAGES: u64 = 100_000;
const BATCH: usize = 1_000;

async fn pipeline(node: &Node) {
    node.spawn(
        "p1",
        ComponentSpec::new(Behavior::Forward { to: "p2".into() }).with_queue(64 * BATCH),
    )
    .await
    .unwrap();
    node.spawn(
        "p2",
        ComponentSpec::new(Behavior::Forward { to: "p3".into() }).with_queue(64 * BATCH),
    )
    .await
    .unwrap();
    node.spawn(
        "p3",
        ComponentSpec::new(Behavior::Sink).with_queue(64 * BATCH),
    )
    .await
    .unwrap();
}

/// Sends `PIPELINE_MESSAGES` in batches of `BATCH`, up to 32 batches in
/// flight, and returns when the sink handled every one.
async fn push_pipeline(node: &Node, head: &Arc<actors::component::Component>) {
    let batch: Arc<[Message]> = (0..BATCH)
        .map(|i| Message::new(Bytes::from(i.to_string())))
        .collect::<Vec<_>>()
        .into();
    let mut waiting = tokio::task::JoinSet::new();
    for _ in 0..PIPELINE_MESSAGES as usize / BATCH {
        if waiting.len() >= 32 {
            waiting.join_next().await.unwrap().unwrap();
        }
        let node = node.clone();
        let head = head.clone();
        let batch = batch.clone();
        waiting.spawn(async move {
            node.send_to(&head, batch, Wait::Handled).await.unwrap();
        });
    }
    while let Some(r) = waiting.join_next().await {
        r.unwrap();
    }
}

/// Spawns `iters` components, each until its first message was handled;
/// timed in chunks of 1,000 that are stopped (untimed) before the next, so
/// the figure is a spawn, not the cost of holding 100,000s of live actors.
async fn spawn_first(node: Node, iters: u64) -> Duration {
    let mut took = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let chunk = (iters - done).min(1000);
        let names: Vec<String> = (0..chunk).map(|i| format!("s-{i}")).collect();
        let t0 = Instant::now();
        for n in &names {
            node.spawn(n, ComponentSpec::new(Behavior::Sink))
                .await
                .unwrap();
            node.send(n, one(), Wait::Handled).await.unwrap();
        }
        took += t0.elapsed();
        for n in &names {
            node.stop(n).await.unwrap();
        }
        done += chunk;
    }
    took
}

async fn lifecycle(node: Node, iters: u64) -> Duration {
    let t0 = Instant::now();
    for _ in 0..iters {
        node.spawn("life", ComponentSpec::new(Behavior::Sink))
            .await
            .unwrap();
        node.send("life", one(), Wait::Handled).await.unwrap();
        node.stop("life").await.unwrap();
    }
    t0.elapsed()
}

async fn route_one(node: Node, iters: u64) -> Duration {
    let t0 = Instant::now();
    for _ in 0..iters {
        node.send("sink", one(), Wait::Handled).await.unwrap();
    }
    t0.elapsed()
}

async fn request(node: Node, iters: u64) -> Duration {
    let t0 = Instant::now();
    for _ in 0..iters {
        black_box(
            node.request("echo", Bytes::from_static(b"1"))
                .await
                .unwrap(),
        );
    }
    t0.elapsed()
}

/// The node of the benchmarks: an echo, a sink, a topic with 100 sink
/// subscribers, 1,000 more components for lookups, and the pipeline.
async fn setup() -> Node {
    let node = Node::new(NodeOptions::default());
    node.spawn("echo", ComponentSpec::new(Behavior::Echo))
        .await
        .unwrap();
    node.spawn(
        "sink",
        ComponentSpec::new(Behavior::Sink).with_queue(1 << 20),
    )
    .await
    .unwrap();
    node.spawn("topic", ComponentSpec::new(Behavior::Topic))
        .await
        .unwrap();
    for i in 0..100 {
        let name = format!("sub-{i}");
        node.spawn(&name, ComponentSpec::new(Behavior::Sink))
            .await
            .unwrap();
        node.subscribe("topic", &name).await.unwrap();
    }
    for i in 0..1000 {
        node.spawn(&format!("r-{i}"), ComponentSpec::new(Behavior::Sink))
            .await
            .unwrap();
    }
    pipeline(&node).await;
    node
}

fn ours(c: &mut Criterion) {
    let rt = runtime();
    let node = rt.block_on(setup());
    // The latency rows again on one thread (no hand-off between workers).
    let rt1 = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let node1 = rt1.block_on(setup());

    let mut g = c.benchmark_group("spawn");
    g.bench_function("actors", |b| {
        b.iter_custom(|i| on(&rt, spawn_first(node.clone(), i)))
    });
    g.bench_function("actors/current_thread", |b| {
        b.iter_custom(|i| rt1.block_on(spawn_first(node1.clone(), i)))
    });
    peers::spawn(&mut g);
    g.finish();

    let mut g = c.benchmark_group("lifecycle");
    g.bench_function("actors", |b| {
        b.iter_custom(|i| on(&rt, lifecycle(node.clone(), i)))
    });
    g.bench_function("actors/current_thread", |b| {
        b.iter_custom(|i| rt1.block_on(lifecycle(node1.clone(), i)))
    });
    peers::lifecycle(&mut g);
    g.finish();

    let mut g = c.benchmark_group("routing");
    g.bench_function("actors/one", |b| {
        b.iter_custom(|i| on(&rt, route_one(node.clone(), i)))
    });
    g.bench_function("actors/one/current_thread", |b| {
        b.iter_custom(|i| rt1.block_on(route_one(node1.clone(), i)))
    });
    g.throughput(Throughput::Elements(BATCH as u64));
    let batch: Vec<Message> = (0..BATCH)
        .map(|_| Message::new(Bytes::from_static(b"1")))
        .collect();
    g.bench_function("actors/batch_1000", |b| {
        b.iter_custom(|iters| {
            let node = node.clone();
            let batch = batch.clone();
            on(&rt, async move {
                let t0 = Instant::now();
                for _ in 0..iters {
                    node.send("sink", batch.clone(), Wait::Handled)
                        .await
                        .unwrap();
                }
                t0.elapsed()
            })
        })
    });
    g.throughput(Throughput::Elements(1));
    peers::routing(&mut g);
    g.finish();

    let mut g = c.benchmark_group("request_response");
    g.bench_function("actors", |b| {
        b.iter_custom(|i| on(&rt, request(node.clone(), i)))
    });
    g.bench_function("actors/current_thread", |b| {
        b.iter_custom(|i| rt1.block_on(request(node1.clone(), i)))
    });
    peers::request_response(&mut g);
    g.finish();

    let mut g = c.benchmark_group("fanout_100");
    g.bench_function("actors", |b| {
        b.iter_custom(|iters| {
            let node = node.clone();
            on(&rt, async move {
                let t0 = Instant::now();
                for _ in 0..iters {
                    let sent = node.send("topic", one(), Wait::Handled).await.unwrap();
                    assert_eq!(sent.deliveries, 100);
                }
                t0.elapsed()
            })
        })
    });
    peers::fanout_100(&mut g);
    g.finish();

    let mut g = c.benchmark_group("throughput");
    g.throughput(Throughput::Elements(PIPELINE_MESSAGES));
    g.sample_size(20);
    let head = node.lookup("p1").unwrap();
    g.bench_function("actors", |b| {
        b.iter_custom(|iters| {
            let node = node.clone();
            let head = head.clone();
            on(&rt, async move {
                let t0 = Instant::now();
                for _ in 0..iters {
                    push_pipeline(&node, &head).await;
                }
                t0.elapsed()
            })
        })
    });
    peers::throughput(&mut g);
    g.finish();

    let mut g = c.benchmark_group("registry_lookup");
    let names: Vec<String> = (0..1000).map(|i| format!("r-{i}")).collect();
    g.bench_function("actors", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % names.len();
            black_box(node.lookup(&names[i]))
        })
    });
    peers::registry_lookup(&mut g);
    g.finish();
}

/// One timed operation of the percentile rows.
type Op = fn(Node) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Seed 001 states p99 thresholds: criterion reports means, so the
/// latency rows are also timed one by one (100,000 each, in the runtime)
/// and their percentiles printed.
fn percentiles(_c: &mut Criterion) {
    let rt = runtime();
    let node = rt.block_on(setup());
    let rows: [(&str, Op); 3] = [
        ("request_response", |n| {
            Box::pin(async move {
                black_box(n.request("echo", Bytes::from_static(b"1")).await.unwrap());
            })
        }),
        ("routing/one", |n| {
            Box::pin(async move {
                n.send("sink", one(), Wait::Handled).await.unwrap();
            })
        }),
        ("fanout_100", |n| {
            Box::pin(async move {
                n.send("topic", one(), Wait::Handled).await.unwrap();
            })
        }),
    ];
    for (name, op) in rows {
        let node = node.clone();
        let mut lat: Vec<u64> = rt.block_on(async move {
            tokio::spawn(async move {
                // `cargo test --all-targets` runs benches once, unoptimised: a smoke run.
                let full = std::env::args().any(|a| a == "--bench");
                let count = match (full, name == "fanout_100") {
                    (false, _) => 200,
                    (true, true) => 10_000,
                    (true, false) => 100_000,
                };
                let mut lat = Vec::with_capacity(count);
                for _ in 0..count {
                    let t0 = Instant::now();
                    op(node.clone()).await;
                    lat.push(t0.elapsed().as_nanos() as u64);
                }
                lat
            })
            .await
            .unwrap()
        });
        lat.sort_unstable();
        let q = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
        println!(
            "percentiles {name}/actors: p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs, max {:.2} µs ({} samples)",
            q(0.5),
            q(0.99),
            q(0.999),
            q(1.0),
            lat.len()
        );
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = seed001;
    config = config();
    targets = ours, percentiles
}
criterion_main!(seed001);
