//! The proxy's cost, side by side with a direct connection, in one run:
//! added round-trip latency (p50/p99 of 64-byte ping-pongs against a
//! loopback echo server) and throughput ceiling (bulk one-way transfer to a
//! loopback sink). Direct and proxied rounds alternate so machine noise
//! hits both alike.
//!
//! `cargo run --release -p gauntlet-proxy --example proxy_bench [ROUNDS]`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gauntlet_proxy::Proxy;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PINGS_PER_ROUND: usize = 5_000;
const BULK_BYTES: u64 = 256 << 20;

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Counts bytes until EOF, then answers one byte.
async fn sink_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                let _ = s.write_all(b"k").await;
            });
        }
    });
    addr
}

async fn pings(addr: SocketAddr, hist: &mut Histogram<u64>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let msg = [42u8; 64];
    let mut back = [0u8; 64];
    for _ in 0..PINGS_PER_ROUND {
        let t = Instant::now();
        s.write_all(&msg).await.unwrap();
        s.read_exact(&mut back).await.unwrap();
        hist.record(t.elapsed().as_nanos() as u64).unwrap();
    }
}

async fn bulk(addr: SocketAddr) -> f64 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let block = vec![7u8; 256 * 1024];
    let t = Instant::now();
    let mut sent = 0;
    while sent < BULK_BYTES {
        s.write_all(&block).await.unwrap();
        sent += block.len() as u64;
    }
    s.shutdown().await.unwrap();
    let mut k = [0u8; 1];
    s.read_exact(&mut k).await.unwrap();
    sent as f64 / t.elapsed().as_secs_f64() / (1 << 20) as f64
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(6);
    let echo = echo_server().await;
    let sink = sink_server().await;
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let echo_proxy = Proxy::start("bench-echo", any, echo, 1).unwrap();
    let sink_proxy = Proxy::start("bench-sink", any, sink, 1).unwrap();

    let mut direct = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
    let mut proxied = direct.clone();
    let (mut direct_tp, mut proxied_tp) = (Vec::new(), Vec::new());
    // Warm-up.
    pings(echo, &mut direct.clone()).await;
    pings(echo_proxy.addr(), &mut proxied.clone()).await;
    for _ in 0..rounds {
        pings(echo, &mut direct).await;
        pings(echo_proxy.addr(), &mut proxied).await;
        direct_tp.push(bulk(sink).await);
        proxied_tp.push(bulk(sink_proxy.addr()).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (dt, pt) = (median(&mut direct_tp), median(&mut proxied_tp));
    println!(
        "{} rounds of {PINGS_PER_ROUND} 64 B ping-pongs and a {} MiB bulk transfer each",
        rounds,
        BULK_BYTES >> 20
    );
    println!("| path | RTT p50 | RTT p99 | throughput (median) |");
    println!("|---|---|---|---|");
    println!(
        "| direct | {:.1} µs | {:.1} µs | {:.0} MiB/s |",
        us(&direct, 0.5),
        us(&direct, 0.99),
        dt
    );
    println!(
        "| proxied | {:.1} µs | {:.1} µs | {:.0} MiB/s |",
        us(&proxied, 0.5),
        us(&proxied, 0.99),
        pt
    );
    println!(
        "added: p50 +{:.1} µs ({:.2}×), p99 +{:.1} µs ({:.2}×); throughput {:.2}× of direct",
        us(&proxied, 0.5) - us(&direct, 0.5),
        us(&proxied, 0.5) / us(&direct, 0.5),
        us(&proxied, 0.99) - us(&direct, 0.99),
        us(&proxied, 0.99) / us(&direct, 0.99),
        pt / dt
    );
}
