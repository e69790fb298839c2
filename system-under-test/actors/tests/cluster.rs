//! End to end: real `actor-node` processes clustered over the
//! `network-protocol` transport on loopback — remote forwards, topics with
//! remote subscribers, registry answers for remote names, mutual TLS, and
//! the circuit breaker through a peer's death and return. Behaviour only:
//! every bound is a generous deadline for something that must happen.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use support::*;

/// A free loopback port (the peers must know it before the node starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Member {
    name: &'static str,
    port: u16,
}

/// Members named `names`, each on a free port.
fn members(names: &[&'static str]) -> Vec<Member> {
    names
        .iter()
        .map(|name| Member {
            name,
            port: free_port(),
        })
        .collect()
}

/// Starts `name` with every other member as a peer.
fn start(dir: &Path, me: &Member, all: &[Member], extra: &[&str], env: &[(&str, &str)]) -> Node {
    let mut args: Vec<String> = vec![
        "--node-name".into(),
        me.name.into(),
        "--cluster-port".into(),
        me.port.to_string(),
    ];
    for m in all.iter().filter(|m| m.name != me.name) {
        args.push("--peer".into());
        args.push(format!("{}=127.0.0.1:{}", m.name, m.port));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Node::start(&dir.join(me.name), &args, env)
}

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics(n: &Node) -> String {
    n.http
        .get(n.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until every outbound link of `n` is up (the probe answered).
async fn linked(n: &Node, peers: &[&str]) {
    for _ in 0..800 {
        let m = metrics(n).await;
        if peers.iter().all(|p| {
            metric(
                &m,
                &format!("cluster_connections_active{{peer=\"{p}\",direction=\"outbound\"}}"),
            ) == Some(1.0)
        }) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "links to {peers:?} never came up; metrics:\n{}\nlog: {:?}",
        metrics(n).await,
        n.log.lock().unwrap()
    );
}

#[tokio::test]
async fn three_nodes_route_forwards_topics_and_lookups_across_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let all = members(&["a", "b", "c"]);
    let nodes: Vec<Node> = all
        .iter()
        .map(|m| start(dir.path(), m, &all, &[], &[]))
        .collect();
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    for n in &nodes {
        n.ready().await;
    }
    linked(a, &["b", "c"]).await;
    linked(b, &["a", "c"]).await;

    // a → b: a remote forward into a counter.
    assert_eq!(b.put("count", &spec("counter", "")).await.0, 201);
    assert_eq!(
        a.put("head", &spec("forward", "to = \"b/count\"")).await.0,
        201
    );
    let (status, body) = a.send("head", &["k1", "k2", "k1"]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["handled"], 3);
    let (_, st) = b.get("/api/v1/components/count").await;
    assert_eq!(st["handled"], 3, "{st}");

    // a → b → c: a pipeline across three nodes answers when c's sink handled it.
    assert_eq!(c.put("end", &spec("sink", "")).await.0, 201);
    assert_eq!(
        b.put("mid", &spec("forward", "to = \"c/end\"")).await.0,
        201
    );
    assert_eq!(
        a.put("head2", &spec("forward", "to = \"b/mid\"")).await.0,
        201
    );
    let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (status, body) = a.send("head2", &keys).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["handled"], 50);
    assert_eq!(c.get("/api/v1/components/end").await.1["handled"], 50);

    // A topic on a with a local and two remote subscribers: every one handles.
    assert_eq!(a.put("t", &spec("topic", "")).await.0, 201);
    assert_eq!(a.put("here", &spec("sink", "")).await.0, 201);
    for sub in ["here", "b/count", "c/end"] {
        let (s, v) = a
            .post("/api/v1/topics/t/subscribers", json!({"component": sub}))
            .await;
        assert_eq!(s, 201, "{sub}: {v}");
    }
    let (s, v) = a
        .post(
            "/api/v1/topics/t/subscribers",
            json!({"component": "c/nobody"}),
        )
        .await;
    assert_eq!((s, err_code(&v)), (404, "unknown_component"), "{v}");
    let (status, body) = a.send("t", &["x", "y"]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deliveries"], 6, "2 messages × 3 subscribers: {body}");
    assert_eq!(b.get("/api/v1/components/count").await.1["handled"], 5);
    assert_eq!(c.get("/api/v1/components/end").await.1["handled"], 52);

    // The registry answers for remote names; unknown ones stay 404.
    let (s, v) = a.get("/api/v1/registry/end").await;
    assert_eq!((s, v["node"].as_str()), (200, Some("c")), "{v}");
    assert_eq!(v["state"], "running");
    let (s, v) = c.get("/api/v1/registry/head").await;
    assert_eq!((s, v["node"].as_str()), (200, Some("a")), "{v}");
    assert_eq!(a.get("/api/v1/registry/nowhere").await.0, 404);

    // A forward to a name the peer does not have fails, named.
    assert_eq!(
        a.put("lost", &spec("forward", "to = \"b/nowhere\""))
            .await
            .0,
        201
    );
    let (s, v) = a.send("lost", &["k"]).await;
    assert_eq!((s, err_code(&v)), (404, "unknown_component"), "{v}");
    // To a node that is not a peer: unavailable, naming the peers.
    assert_eq!(
        a.put("astray", &spec("forward", "to = \"z/x\"")).await.0,
        201
    );
    let (s, v) = a.send("astray", &["k"]).await;
    assert_eq!((s, err_code(&v)), (503, "unavailable"), "{v}");

    // Seed 004's metrics.
    let m = metrics(a).await;
    for line in [
        "cluster_breaker_state{peer=\"b\"} 0",
        "cluster_breaker_state{peer=\"c\"} 0",
        "cluster_connections_active{peer=\"b\",direction=\"inbound\"} 1",
    ] {
        assert!(m.contains(line), "{line} missing:\n{m}");
    }
    assert!(metric(&m, "cluster_bytes_sent_total{peer=\"b\"}").unwrap() > 0.0);
    assert!(metric(&m, "cluster_bytes_received_total{peer=\"c\"}").unwrap() > 0.0);
    assert_eq!(
        metric(&m, "cluster_messages_sent_total{peer=\"b\"}"),
        Some(56.0),
        "3 + 50 + 2 + 1 messages to b:\n{m}"
    );
}

/// A CA, and per name a certificate (DNS name = the node's name) and key.
fn certs(dir: &Path, names: &[&str]) -> PathBuf {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    for name in names {
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
    dir.to_path_buf()
}

fn tls_args(dir: &Path, name: &str) -> Vec<String> {
    vec![
        "--cluster-tls-ca".into(),
        dir.join("ca.pem").display().to_string(),
        "--cluster-tls-cert".into(),
        dir.join(format!("{name}.pem")).display().to_string(),
        "--cluster-tls-key".into(),
        dir.join(format!("{name}.key")).display().to_string(),
    ]
}

#[tokio::test]
async fn mutual_tls_carries_traffic_and_refuses_a_stranger() {
    let dir = tempfile::tempdir().unwrap();
    let run = certs(&dir.path().join("run"), &["a", "b"]);
    // `c` holds a certificate for its name, signed by another CA.
    let other = certs(&dir.path().join("other"), &["c"]);
    let all = members(&["a", "b", "c"]);
    let fast = [
        "--cluster-heartbeat-ms",
        "50",
        "--cluster-heartbeat-timeout-ms",
        "1000",
        "--cluster-breaker-failures",
        "2",
    ];
    let args = |d: &Path, name: &str| -> Vec<String> {
        let mut v = tls_args(d, name);
        v.extend(fast.iter().map(|s| s.to_string()));
        v
    };
    // c trusts its own CA and holds a certificate a and b do not trust.
    let (aa, ba, ca) = (args(&run, "a"), args(&run, "b"), args(&other, "c"));
    let a = start(dir.path(), &all[0], &all, &refs(&aa), &[]);
    let b = start(dir.path(), &all[1], &all, &refs(&ba), &[]);
    let c = start(dir.path(), &all[2], &all, &refs(&ca), &[]);
    for n in [&a, &b, &c] {
        n.ready().await;
    }
    linked(&a, &["b"]).await;
    assert_eq!(b.put("sink", &spec("sink", "")).await.0, 201);
    assert_eq!(
        a.put("head", &spec("forward", "to = \"b/sink\"")).await.0,
        201
    );
    let (s, v) = a.send("head", &["k1", "k2"]).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(b.get("/api/v1/components/sink").await.1["handled"], 2);

    // a never completes a handshake with c (and c none with a): its
    // breaker opens and sends fail fast with `unavailable`.
    assert_eq!(c.put("sink", &spec("sink", "")).await.0, 201);
    assert_eq!(
        a.put("toc", &spec("forward", "to = \"c/sink\"")).await.0,
        201
    );
    let mut opened = false;
    for _ in 0..400 {
        if metric(&metrics(&a).await, "cluster_breaker_state{peer=\"c\"}") == Some(2.0) {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        opened,
        "a's breaker for c never opened:\n{}",
        metrics(&a).await
    );
    let (s, v) = a.send("toc", &["k"]).await;
    assert_eq!((s, err_code(&v)), (503, "unavailable"), "{v}");
    assert_eq!(c.get("/api/v1/components/sink").await.1["handled"], 0);
    let m = metrics(&a).await;
    assert_eq!(
        metric(
            &m,
            "cluster_connections_active{peer=\"c\",direction=\"outbound\"}"
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn the_breaker_opens_when_a_peer_dies_fails_fast_and_closes_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let all = members(&["a", "b"]);
    let knobs = [
        "--cluster-heartbeat-ms",
        "50",
        "--cluster-heartbeat-timeout-ms",
        "500",
        "--cluster-breaker-failures",
        "3",
        "--cluster-breaker-open-ms",
        "300",
        "--cluster-backoff-max-ms",
        "100",
    ];
    let a = start(dir.path(), &all[0], &all, &knobs, &[]);
    let mut b = start(dir.path(), &all[1], &all, &knobs, &[]);
    a.ready().await;
    b.ready().await;
    linked(&a, &["b"]).await;
    assert_eq!(b.put("count", &spec("counter", "")).await.0, 201);
    assert_eq!(
        a.put("head", &spec("forward", "to = \"b/count\"")).await.0,
        201
    );
    let (s, v) = a.send("head", &["k"]).await;
    assert_eq!(s, 200, "{v}");

    b.kill9();
    // Every send is answered (never hung): first failures while the link
    // notices, then fast `unavailable` from the open breaker.
    let mut opened = false;
    for _ in 0..400 {
        let (s, v) = a.send("head", &["k"]).await;
        assert_eq!((s, err_code(&v)), (503, "unavailable"), "{v}");
        if metric(&metrics(&a).await, "cluster_breaker_state{peer=\"b\"}") == Some(2.0) {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(opened, "the breaker never opened:\n{}", metrics(&a).await);
    let (s, v) = a.send("head", &["k"]).await;
    assert_eq!((s, err_code(&v)), (503, "unavailable"), "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("circuit breaker is open"),
        "{v}"
    );
    let m = metrics(&a).await;
    assert!(metric(&m, "cluster_messages_refused_total{peer=\"b\"}").unwrap() >= 1.0);
    assert!(metric(&m, "cluster_errors_total{peer=\"b\",kind=\"connect\"}").unwrap() >= 1.0);

    // b returns (same port, same data: the counter and its count survive):
    // a half-open probe closes the breaker and sends go through again.
    b = start(dir.path(), &all[1], &all, &knobs, &[]);
    b.ready().await;
    let mut delivered = false;
    for _ in 0..400 {
        let (s, _) = a.send("head", &["k"]).await;
        if s == 200 {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        delivered,
        "never delivered after b returned:\n{}",
        metrics(&a).await
    );
    let m = metrics(&a).await;
    assert_eq!(
        metric(&m, "cluster_breaker_state{peer=\"b\"}"),
        Some(0.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "cluster_breaker_transitions_total{peer=\"b\",to=\"closed\"}"
        )
        .unwrap()
            >= 1.0
    );
    // Acknowledged messages were all counted by b: the one before the
    // death and the one after its return (the failed ones were refused).
    assert_eq!(b.get("/api/v1/components/count").await.1["handled"], 2);
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A TCP proxy for one link that can be partitioned: while partitioned it
/// accepts connections and reads bytes but forwards none (a silent
/// network, not a refused one); healing drops every connection made
/// before, so the link starts clean.
struct LinkProxy {
    port: u16,
    partitioned: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl LinkProxy {
    async fn start(to: u16) -> LinkProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let partitioned = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(0));
        let (p, g) = (partitioned.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                    continue;
                };
                let born = g.load(Ordering::SeqCst);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                for (mut r, mut w) in [
                    (
                        Box::new(cr) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                        Box::new(sw) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                    ),
                    (Box::new(sr), Box::new(cw)),
                ] {
                    let (p, g) = (p.clone(), g.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 << 10];
                        loop {
                            let n = tokio::select! {
                                n = r.read(&mut buf) => match n { Ok(0) | Err(_) => return, Ok(n) => n },
                                _ = tokio::time::sleep(Duration::from_millis(20)) => 0,
                            };
                            if g.load(Ordering::SeqCst) != born {
                                return; // healed: connections from before are cut
                            }
                            if n > 0
                                && !p.load(Ordering::SeqCst)
                                && w.write_all(&buf[..n]).await.is_err()
                            {
                                return;
                            }
                        }
                    });
                }
            }
        });
        LinkProxy {
            port,
            partitioned,
            generation,
        }
    }

    fn partition(&self) {
        self.partitioned
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn heal(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.partitioned
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_silent_partition_opens_the_breaker_bounds_the_queue_and_heals() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let proxy = LinkProxy::start(pb).await;
    let knobs = [
        "--cluster-heartbeat-ms",
        "50",
        "--cluster-heartbeat-timeout-ms",
        "400",
        "--cluster-breaker-failures",
        "2",
        "--cluster-breaker-open-ms",
        "300",
        "--cluster-backoff-max-ms",
        "100",
        "--cluster-queue",
        "8",
    ];
    // a reaches b through the proxy (the link a->b); b reaches a directly.
    let mut a_args: Vec<String> = vec![
        "--node-name".into(),
        "a".into(),
        "--cluster-port".into(),
        pa.to_string(),
        "--peer".into(),
        format!("b=127.0.0.1:{}", proxy.port),
    ];
    a_args.extend(knobs.iter().map(|s| s.to_string()));
    let a = Node::start(&dir.path().join("a"), &refs(&a_args), &[]);
    let all = [
        Member {
            name: "a",
            port: pa,
        },
        Member {
            name: "b",
            port: pb,
        },
    ];
    let b = start(dir.path(), &all[1], &all, &knobs, &[]);
    a.ready().await;
    b.ready().await;
    linked(&a, &["b"]).await;
    assert_eq!(b.put("count", &spec("counter", "")).await.0, 201);
    assert_eq!(
        a.put("head", &spec("forward", "to = \"b/count\"")).await.0,
        201
    );
    let mut acked = 0u64;
    for _ in 0..5 {
        let (s, v) = a.send("head", &["k"]).await;
        assert_eq!(s, 200, "{v}");
        acked += 1;
    }

    proxy.partition();
    // Concurrent senders during the partition: every one is answered
    // (200 before the partition bit, 503 after), never hung; the queue
    // to b never holds more than --cluster-queue.
    let mut opened = false;
    let mut max_depth = 0.0f64;
    for _ in 0..200 {
        let sends: Vec<_> = (0..16).map(|_| a.send("head", &["k"])).collect();
        for (s, v) in futures::future::join_all(sends).await {
            match s {
                200 => acked += 1,
                503 => assert_eq!(err_code(&v), "unavailable", "{v}"),
                _ => panic!("unexpected answer {s}: {v}"),
            }
        }
        let m = metrics(&a).await;
        max_depth = max_depth.max(metric(&m, "cluster_queue_depth{peer=\"b\"}").unwrap());
        if metric(&m, "cluster_breaker_state{peer=\"b\"}") == Some(2.0) {
            opened = true;
            break;
        }
    }
    assert!(opened, "the breaker never opened:\n{}", metrics(&a).await);
    assert!(
        max_depth <= 8.0,
        "queue depth {max_depth} above --cluster-queue 8"
    );
    let m = metrics(&a).await;
    assert!(
        metric(&m, "cluster_errors_total{peer=\"b\",kind=\"heartbeat\"}").unwrap() >= 1.0
            || metric(&m, "cluster_errors_total{peer=\"b\",kind=\"probe\"}").unwrap() >= 1.0,
        "{m}"
    );

    proxy.heal();
    let mut delivered = false;
    for _ in 0..400 {
        let (s, _) = a.send("head", &["k"]).await;
        if s == 200 {
            acked += 1;
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        delivered,
        "never delivered after the heal:\n{}",
        metrics(&a).await
    );
    assert_eq!(
        metric(&metrics(&a).await, "cluster_breaker_state{peer=\"b\"}"),
        Some(0.0)
    );
    // No acknowledged message lost: b counted at least every one a
    // answered 200 for (a failed one may still have arrived).
    let handled = b.get("/api/v1/components/count").await.1["handled"]
        .as_u64()
        .unwrap();
    assert!(
        handled >= acked,
        "b handled {handled} < {acked} acknowledged"
    );
}
