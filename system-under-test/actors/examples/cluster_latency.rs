//! Cross-node figures of the cluster transport, side by side with the same
//! work inside one node: two real `actor-node` processes on loopback, a
//! `forward` on node `a` to a `sink` on node `b`, driven over HTTP by
//! closed-loop clients. Each shape runs in turn:
//!
//! - `in-node`: `a`'s forward to a sink on `a` itself;
//! - `plain`: to `b` over plain TCP with TCP_NODELAY (the node's default);
//! - `plain, crate Nagle`: the same with `--cluster-nodelay false` (what
//!   `network-protocol` does by itself);
//! - `tls`: mutual TLS (per-run certificates), TCP_NODELAY.
//!
//! For each: small request-response (batches of one message, `CLIENTS`
//! clients) p50/p99/p99.9 and answers per second; a small burst (one
//! client, one message to a topic on `a` whose 4 subscribers are on `b`:
//! four small frames back to back, where Nagle holds the later ones for
//! the first's acknowledgement) p50/p99/p99.9; then throughput (batches of
//! 100 messages) in messages handled per second.
//!
//! ```sh
//! cargo build --release -p actors --bin actor-node
//! cargo run --release -p actors --example cluster_latency -- target/release/actor-node 8 5
//! ```

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn certs(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    for name in ["a", "b"] {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// Starts `a` and `b` peered; returns them and `a`'s API base URL.
fn start(bin: &str, dir: &Path, nodelay: bool, tls: bool) -> (Proc, Proc, String) {
    let (ca, cb) = (free_port(), free_port());
    let (ha, hb) = (free_port(), free_port());
    let node = |name: &str, http: u16, me: u16, peer: &str, other: u16| {
        let mut cmd = Command::new(bin);
        cmd.args(["--node-name", name, "--http-port"])
            .arg(http.to_string())
            .arg("--metrics-port")
            .arg(http.to_string())
            .arg("--cluster-port")
            .arg(me.to_string())
            .arg("--peer")
            .arg(format!("{peer}=127.0.0.1:{other}"))
            .arg("--cluster-nodelay")
            .arg(nodelay.to_string())
            .arg("--log-level")
            .arg("warn")
            .arg("--data-dir")
            .arg(dir.join(format!("data-{name}-{me}")));
        if tls {
            cmd.arg("--cluster-tls-ca")
                .arg(dir.join("ca.pem"))
                .arg("--cluster-tls-cert")
                .arg(dir.join(format!("{name}.pem")))
                .arg("--cluster-tls-key")
                .arg(dir.join(format!("{name}.key")));
        }
        Proc(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start actor-node"),
        )
    };
    let a = node("a", ha, ca, "b", cb);
    let b = node("b", hb, cb, "a", ca);
    (a, b, format!("http://127.0.0.1:{ha}|http://127.0.0.1:{hb}"))
}

async fn put(http: &reqwest::Client, base: &str, name: &str, toml: &str) {
    let r = http
        .put(format!("{base}/api/v1/components/{name}"))
        .header("content-type", "text/toml")
        .body(toml.to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "PUT {name}: {}", r.status());
}

async fn wait_linked(http: &reqwest::Client, base: &str) {
    for _ in 0..400 {
        if let Ok(r) = http.get(format!("{base}/metrics")).send().await
            && r.text().await.is_ok_and(|t| {
                t.contains("cluster_connections_active{peer=\"b\",direction=\"outbound\"} 1")
            })
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("a never linked to b");
}

fn body(n: usize) -> String {
    let msgs: Vec<String> = (0..n)
        .map(|i| format!("{{\"key\":\"k{}\",\"payload\":{i}}}", i % 10))
        .collect();
    format!("{{\"messages\":[{}]}}", msgs.join(","))
}

/// `clients` closed-loop clients posting batches of `batch` for `secs`:
/// latencies of answered batches and the count.
async fn drive(url: &str, batch: usize, clients: usize, secs: u64) -> (Vec<Duration>, usize) {
    let body = body(batch);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, body) = (url.to_string(), body.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut lat = Vec::new();
            while Instant::now() < end {
                let t0 = Instant::now();
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                lat.push(t0.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let n = all.len();
    (all, n)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: cluster_latency ACTOR_NODE_BIN CLIENTS SECONDS");
        std::process::exit(2);
    }
    let (bin, clients, secs) = (
        args[1].as_str(),
        args[2].parse::<usize>().expect("CLIENTS"),
        args[3].parse::<u64>().expect("SECONDS"),
    );
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path());
    let http = reqwest::Client::new();
    println!(
        "| shape | rr p50 ms | rr p99 ms | rr p99.9 ms | rr answers/s | burst p50 ms | burst p99 ms | burst p99.9 ms | msgs/s (batches of 100) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (label, nodelay, tls, target) in [
        ("in-node", true, false, "sink"),
        ("cross-node plain", true, false, "b/sink"),
        ("cross-node plain, crate Nagle", false, false, "b/sink"),
        ("cross-node TLS", true, true, "b/sink"),
    ] {
        let (_a, _b, bases) = start(bin, dir.path(), nodelay, tls);
        let (ba, bb) = bases.split_once('|').unwrap();
        for base in [ba, bb] {
            for _ in 0..400 {
                if http
                    .get(format!("{base}/ready"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        wait_linked(&http, ba).await;
        let sink = "[behavior]\nkind = \"sink\"\n";
        put(&http, ba, "sink", sink).await;
        put(&http, bb, "sink", sink).await;
        put(
            &http,
            ba,
            "head",
            &format!("[behavior]\nkind = \"forward\"\nto = \"{target}\"\n"),
        )
        .await;
        put(&http, ba, "t", "[behavior]\nkind = \"topic\"\n").await;
        let subs_on = if target == "sink" { ba } else { bb };
        for i in 1..=4 {
            put(&http, subs_on, &format!("s{i}"), sink).await;
            let name = if target == "sink" {
                format!("s{i}")
            } else {
                format!("b/s{i}")
            };
            let r = http
                .post(format!("{ba}/api/v1/topics/t/subscribers"))
                .json(&serde_json::json!({ "component": name }))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "subscribe {name}: {}", r.status());
        }
        let url = format!("{ba}/api/v1/components/head/messages");
        drive(&url, 1, clients, 1).await; // warm-up
        let (mut lat, n) = drive(&url, 1, clients, secs).await;
        lat.sort();
        let burst_url = format!("{ba}/api/v1/components/t/messages");
        let (mut burst, _) = drive(&burst_url, 1, 1, secs).await;
        burst.sort();
        let (_, batches) = drive(&url, 100, clients, secs).await;
        println!(
            "| {label} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} |",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            pct(&lat, 0.999),
            n as f64 / secs as f64,
            pct(&burst, 0.5),
            pct(&burst, 0.99),
            pct(&burst, 0.999),
            (batches * 100) as f64 / secs as f64
        );
    }
}
