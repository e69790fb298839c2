//! A closed-loop HTTP load for `actor-node`'s batch endpoint, to find the
//! node's ceiling apart from Gauntlet (Gauntlet's own runs are the
//! reference; this tells how much of a figure is the node):
//!
//! ```sh
//! cargo run --release -p actors --example http_load -- http://127.0.0.1:8080 head 1000 8 10 [json|octets]
//! ```
//! posts batches of 1000 messages to `head` from 8 connections for 10 s
//! and prints messages handled per second (every batch answered 200 =
//! every message handled at the end of its path).

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: http_load BASE COMPONENT BATCH CONNECTIONS SECONDS [json|octets]");
        std::process::exit(2);
    }
    let base = args[1].clone();
    let component = args[2].clone();
    let batch: usize = args[3].parse().expect("BATCH");
    let conns: usize = args[4].parse().expect("CONNECTIONS");
    let secs: u64 = args[5].parse().expect("SECONDS");
    let octets = args.get(6).is_some_and(|a| a == "octets");
    let (body, content_type) = if octets {
        let mut b = Vec::new();
        for i in 0..batch {
            let p = format!("{i}");
            b.extend_from_slice(&(p.len() as u32).to_be_bytes());
            b.extend_from_slice(p.as_bytes());
        }
        (b, "application/octet-stream")
    } else {
        let msgs: Vec<String> = (0..batch)
            .map(|i| format!("{{\"key\":\"k{}\",\"payload\":{i}}}", i % 10))
            .collect();
        (
            format!("{{\"messages\":[{}]}}", msgs.join(",")).into_bytes(),
            "application/json",
        )
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = format!("{base}/api/v1/components/{component}/messages");
    let (ok, errors, took) = rt.block_on(async move {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(secs);
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let client = client.clone();
            let url = url.clone();
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut err) = (0u64, 0u64);
                while Instant::now() < deadline {
                    match client
                        .post(&url)
                        .header("content-type", content_type)
                        .body(body.clone())
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => ok += 1,
                        _ => err += 1,
                    }
                }
                (ok, err)
            }));
        }
        let (mut ok, mut err) = (0, 0);
        for t in tasks {
            let (o, e) = t.await.unwrap();
            ok += o;
            err += e;
        }
        (ok, err, t0.elapsed())
    });
    let msgs = ok * batch as u64;
    println!(
        "{} batches of {batch} ({} messages) in {:.1} s: {:.0} messages/s, {:.0} batches/s, {errors} errors",
        ok,
        msgs,
        took.as_secs_f64(),
        msgs as f64 / took.as_secs_f64(),
        ok as f64 / took.as_secs_f64()
    );
}
