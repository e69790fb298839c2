//! Messages per second end to end through the published runtime's 3-stage
//! pipeline (source → map → sink, `builtin:pipeline`), batches of 1000,
//! each done when every message reached the sink — side by side in one
//! criterion run:
//!
//! - `in_process/tracing_off`: `Node::send` (the feeder thread's
//!   `send_to_actor`, the runtime, the sink) without HTTP;
//! - `in_process/tracing_on_no_server`: the same with the published
//!   tracing client on and no server to reach (its cost alone);
//! - `http/tracing_off`: the same batch through the node's HTTP API on
//!   loopback (`POST /api/v1/inports/src/input?wait=sink`): the node's HTTP
//!   overhead over the in-process figure.
//!
//! `cargo bench -p reflow-node --bench pipeline`; under `cargo test` each
//! runs once (criterion's test mode). With our tracing server, the cost is
//! measured by `scenarios/chaos/reflow-tracing-cost.yaml`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reflow_node::config::Config;
use reflow_node::graph::Graph;
use reflow_node::http::{App, router};
use reflow_node::node::Node;
use serde_json::{Value, json};

const BATCH: u64 = 1000;
const BOUND: Duration = Duration::from_secs(60);

fn config(tracing: bool) -> Config {
    let mut cfg = Config::default();
    cfg.graph.file = "builtin:pipeline".into();
    cfg.tracing.enabled = tracing;
    // Nothing listens here: the client's cost without a server.
    cfg.tracing.server_url = "ws://127.0.0.1:9/".into();
    cfg.tracing.batch_size = 1;
    cfg.tracing.batch_timeout_ms = 100;
    cfg
}

fn bodies() -> Vec<Value> {
    (0..BATCH)
        .map(|i| json!({"key": format!("k{}", i % 8), "offset": i}))
        .collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let graph = || Graph::from_config("builtin:pipeline", None).unwrap();
    let mut g = c.benchmark_group("pipeline_3_stages");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20);
    for (name, tracing) in [
        ("in_process/tracing_off", false),
        ("in_process/tracing_on_no_server", true),
    ] {
        let node = rt.block_on(async { Node::start(&config(tracing), graph()).unwrap() });
        let src = node.state.index("src").unwrap();
        let b = bodies();
        g.bench_function(name, |bench| {
            bench.iter(|| {
                rt.block_on(node.send(src, b.clone(), true, BOUND, BOUND, usize::MAX))
                    .expect("the batch reaches the sink")
            })
        });
    }
    let cfg = config(false);
    let node = rt.block_on(async { Node::start(&cfg, graph()).unwrap() });
    let app = Arc::new(App { node, cfg });
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, router(app)).await });
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/api/v1/inports/src/input?wait=sink");
    let body = serde_json::to_vec(&json!({ "messages": bodies() })).unwrap();
    g.bench_function("http/tracing_off", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
