//! The open-model engine driving operations over the WebSocket client
//! against a slow local server: latency is still counted from each
//! operation's intended start (the backlog is sent, never skipped, and its
//! waiting counts), and a connection the server drops mid-request is an
//! error of its kind, never a hang. Assertions are lower bounds that a busy
//! machine only makes truer, never timings.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gauntlet_engine::ws::{Frame, Target};
use gauntlet_engine::{
    Connections, EngineCounters, Load, Operation, Phase, SampleSink, Segment, StepRecord,
};
use gauntlet_recorder::{Outcome, Sample};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Sends one text frame and waits for the answer (mode 1).
struct Echo {
    target: Target,
}

impl Operation for Echo {
    type Chain = ();

    async fn execute(&self, conns: &Connections, _chain: &mut ()) -> Outcome {
        match conns.ws.request(&self.target, Frame::text("ping")).await {
            Ok(_) => Outcome::Ok,
            Err(f) => Outcome::Error(f.kind().to_owned()),
        }
    }

    fn has_steps(&self) -> bool {
        false
    }

    async fn run_steps(
        &self,
        _conns: &Connections,
        _chain: (),
        _timeout: Duration,
        _record: &mut StepRecord<'_>,
    ) {
    }
}

/// A server that answers each frame after `delay`; with `drop_at`, the
/// connection that receives that request (counted over the server) is cut
/// without a close frame instead of answering.
async fn slow_server(delay: Duration, drop_at: Option<usize>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let requests = requests.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if !(m.is_text() || m.is_binary()) {
                        continue;
                    }
                    let n = requests.fetch_add(1, Ordering::SeqCst);
                    if Some(n) == drop_at {
                        return; // dropped: no close frame
                    }
                    tokio::time::sleep(delay).await;
                    if ws.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// `n` arrivals at `rate` per second in one phase, one in-flight slot.
fn load(n: u64, rate: f64) -> Load {
    let secs = n as f64 / rate;
    let mut phase = Phase::new(
        "steady".into(),
        Duration::ZERO,
        Duration::from_secs_f64(secs),
        vec![Segment {
            start: 0.0,
            duration: secs,
            from: rate,
            to: rate,
        }],
    );
    phase.weights = vec![1];
    Load {
        phases: vec![phase],
        operations: vec![("echo".into(), 1)],
        max_in_flight: 1,
        timeout: Duration::from_secs(20),
        late_after: Duration::from_millis(5),
        think_time: None,
        seed: 7,
    }
}

async fn run(load: &Load, op: Echo) -> (Vec<Sample>, Arc<EngineCounters>) {
    let sink = Arc::new(SampleSink::new(1));
    let counters = Arc::new(EngineCounters::default());
    tokio::time::timeout(
        Duration::from_secs(120),
        gauntlet_engine::open::run(
            load,
            Arc::new(vec![op]),
            sink.clone(),
            1,
            counters.clone(),
            Instant::now(),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the engine hung")
    .expect("the engine failed");
    let mut samples = Vec::new();
    sink.drain(|s| samples.push(s));
    (samples, counters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_websocket_server_delays_arrivals_and_latency_counts_from_the_intended_start() {
    // 20 arrivals 10 ms apart, each answered 50 ms after it arrives, one
    // slot: arrival k cannot start before k × 50 ms, though intended at
    // k × 10 ms, so its latency is at least k × 40 ms plus its answer.
    let delay = Duration::from_millis(50);
    let addr = slow_server(delay, None).await;
    let target = Target::parse(&format!("ws://{addr}/")).unwrap();
    let n = 20;
    let (samples, counters) = run(&load(n, 100.0), Echo { target }).await;
    assert_eq!(samples.len() as u64, n, "every arrival was sent");
    assert_eq!(counters.started.load(Ordering::Relaxed), n);
    assert!(
        samples.iter().all(|s| s.outcome == Outcome::Ok),
        "{samples:?}"
    );
    // Service time is the server's delay at least; latency adds the wait.
    assert!(
        samples
            .iter()
            .all(|s| s.service_us >= delay.as_micros() as u64)
    );
    assert!(samples.iter().all(|s| s.latency_us >= s.service_us));
    let worst = samples.iter().map(|s| s.latency_us).max().unwrap();
    let floor = (n - 1) * 40_000;
    assert!(
        worst >= floor,
        "the last arrival's wait was not counted: {worst} µs < {floor} µs"
    );
    // Late because the only slot was busy: the system's fault, not the engine's.
    assert!(counters.late_in_flight_limit.load(Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_request_is_an_error_and_the_next_reconnects() {
    let addr = slow_server(Duration::ZERO, Some(3)).await;
    let target = Target::parse(&format!("ws://{addr}/")).unwrap();
    let n = 10;
    let (samples, _) = run(&load(n, 200.0), Echo { target }).await;
    assert_eq!(samples.len() as u64, n);
    let errors: Vec<&Outcome> = samples
        .iter()
        .map(|s| &s.outcome)
        .filter(|o| **o != Outcome::Ok)
        .collect();
    assert_eq!(
        errors,
        [&Outcome::Error("ws_dropped".to_owned())],
        "one request lost with its connection, the rest on a new one"
    );
}
