//! The proxy's toxics against real loopback servers. Assertions are about
//! behaviour: bytes, order, which side saw what, and lower bounds of delays
//! (a sleep never ends early) — never upper bounds on speed.

mod common;

use std::time::Duration;

use common::*;
use gauntlet_proxy::{Proxy, Stream, Toxic, ToxicKind};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn latency(ms: u64) -> ToxicKind {
    ToxicKind::Latency {
        latency: Duration::from_millis(ms),
        jitter: Duration::ZERO,
    }
}

async fn proxy_to_echo() -> Proxy {
    let echo = echo_server().await;
    Proxy::start("test", loopback(), echo, 7).unwrap()
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionAborted
    )
}

/// Writes `payload` in `chunks` while reading the echo back concurrently.
async fn roundtrip_chunked(
    addr: std::net::SocketAddr,
    payload: Vec<u8>,
    chunks: Vec<usize>,
) -> Vec<u8> {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let len = payload.len();
    let writer = tokio::spawn(async move {
        let mut at = 0;
        let mut i = 0;
        while at < payload.len() {
            let n = chunks[i % chunks.len()].min(payload.len() - at);
            w.write_all(&payload[at..at + n]).await.unwrap();
            at += n;
            i += 1;
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::with_capacity(len);
    tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut back))
        .await
        .expect("the echo came back within a minute")
        .unwrap();
    writer.await.unwrap();
    back
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any payload in any chunking comes back byte for byte, with no toxic
    /// and through a slicer (which re-chunks it again), and EOF is passed on.
    #[test]
    fn bytes_pass_intact(
        payload in proptest::collection::vec(any::<u8>(), 0..150_000),
        chunks in proptest::collection::vec(1usize..40_000, 1..8),
        slice in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let back = rt.block_on(async {
            let proxy = proxy_to_echo().await;
            if slice {
                proxy.add_toxic(Toxic::new("slicer", ToxicKind::Slicer {
                    average_size: 700, size_variation: 600, delay: Duration::ZERO,
                })).unwrap();
            }
            roundtrip_chunked(proxy.addr(), payload.clone(), chunks).await
        });
        prop_assert_eq!(back.len(), payload.len());
        prop_assert!(back == payload, "bytes changed on the way");
    }
}

#[tokio::test]
async fn latency_applies_to_its_direction_only() {
    const L: Duration = Duration::from_millis(1500);
    let (server, mut events) = sink_server().await;
    let proxy = Proxy::start("test", loopback(), server, 1).unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();

    // Upstream only: the request is late at the server, the answer is not.
    proxy
        .add_toxic(Toxic::new("up", latency(L.as_millis() as u64)).on(Stream::Upstream))
        .unwrap();
    let sent = Instant::now();
    client.write_all(b"ping").await.unwrap();
    let (writer, ev) = events.recv().await.unwrap();
    let arrived = sent.elapsed();
    assert!(
        matches!(ev, SinkEvent::Data(ref d) if d == b"ping"),
        "{ev:?}"
    );
    assert!(
        arrived >= L,
        "upstream latency applied: arrived after {arrived:?}"
    );
    let answered = Instant::now();
    writer.send(b"pong").await;
    let mut buf = [0u8; 4];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
    assert!(
        answered.elapsed() < L,
        "downstream not delayed: {:?}",
        answered.elapsed()
    );
    proxy.remove_toxic("up").unwrap();

    // Downstream only: the request is on time, the answer is late.
    proxy
        .add_toxic(Toxic::new("down", latency(L.as_millis() as u64)).on(Stream::Downstream))
        .unwrap();
    let sent = Instant::now();
    client.write_all(b"ping").await.unwrap();
    let (writer, ev) = events.recv().await.unwrap();
    assert!(
        matches!(ev, SinkEvent::Data(ref d) if d == b"ping"),
        "{ev:?}"
    );
    assert!(
        sent.elapsed() < L,
        "upstream not delayed: {:?}",
        sent.elapsed()
    );
    let answered = Instant::now();
    writer.send(b"pong").await;
    client.read_exact(&mut buf).await.unwrap();
    assert!(
        answered.elapsed() >= L,
        "downstream latency applied: {:?}",
        answered.elapsed()
    );
    assert_eq!(
        proxy.accepted_connections(),
        1,
        "the same connection all along"
    );
}

#[tokio::test]
async fn jitter_keeps_order_and_latency_adds_up() {
    let proxy = proxy_to_echo().await;
    proxy
        .add_toxic(Toxic::new(
            "jittery",
            ToxicKind::Latency {
                latency: Duration::from_millis(100),
                jitter: Duration::from_millis(90),
            },
        ))
        .unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    let start = Instant::now();
    let mut expected = Vec::new();
    for i in 0..50u8 {
        client.write_all(&[i; 100]).await.unwrap();
        expected.extend_from_slice(&[i; 100]);
    }
    let mut back = vec![0u8; expected.len()];
    client.read_exact(&mut back).await.unwrap();
    assert_eq!(back, expected, "jitter never reorders bytes");
    // Each direction adds at least 100 - 90 ms.
    assert!(start.elapsed() >= Duration::from_millis(20));
}

#[tokio::test]
async fn toxics_change_without_dropping_healthy_connections() {
    let proxy = proxy_to_echo().await;
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(exchange(&mut client, b"one").await.unwrap(), b"one");
    proxy.add_toxic(Toxic::new("slow", latency(200))).unwrap();
    proxy
        .add_toxic(Toxic::new(
            "narrow",
            ToxicKind::Bandwidth {
                bytes_per_s: 1_000_000,
            },
        ))
        .unwrap();
    let t = Instant::now();
    assert_eq!(exchange(&mut client, b"two").await.unwrap(), b"two");
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "both directions delayed"
    );
    assert_eq!(proxy.toxics().len(), 2);
    proxy.remove_toxic("slow").unwrap();
    proxy.remove_toxic("narrow").unwrap();
    assert!(
        proxy.remove_toxic("slow").is_err(),
        "removing twice is an error"
    );
    assert_eq!(exchange(&mut client, b"three").await.unwrap(), b"three");
    assert_eq!(proxy.accepted_connections(), 1);
    assert_eq!(proxy.live_connections(), 1);
}

#[tokio::test]
async fn reset_sends_rst_to_existing_and_new_connections() {
    let proxy = proxy_to_echo().await;
    let mut old = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(exchange(&mut old, b"hi").await.unwrap(), b"hi");
    proxy
        .add_toxic(Toxic::new(
            "rst",
            ToxicKind::Reset {
                after: Duration::ZERO,
            },
        ))
        .unwrap();
    let mut buf = [0u8; 1];
    let err = old
        .read(&mut buf)
        .await
        .expect_err("an RST, not a clean close");
    assert!(is_reset(&err), "{err:?}");

    let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
    let err = exchange(&mut new, b"hi").await.expect_err("reset at once");
    assert!(is_reset(&err), "{err:?}");

    proxy.remove_toxic("rst").unwrap();
    let mut healed = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(exchange(&mut healed, b"ok").await.unwrap(), b"ok");
}

#[tokio::test]
async fn reset_after_a_delay_lets_data_through_first() {
    let proxy = proxy_to_echo().await;
    proxy
        .add_toxic(Toxic::new(
            "rst",
            ToxicKind::Reset {
                after: Duration::from_millis(800),
            },
        ))
        .unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    let t = Instant::now();
    assert_eq!(exchange(&mut c, b"before").await.unwrap(), b"before");
    let mut buf = [0u8; 1];
    let err = c.read(&mut buf).await.expect_err("reset later");
    assert!(is_reset(&err), "{err:?}");
    assert!(t.elapsed() >= Duration::from_millis(700));
}

#[tokio::test]
async fn limit_closes_after_exactly_n_bytes() {
    let (server, mut events) = sink_server().await;
    let proxy = Proxy::start("test", loopback(), server, 1).unwrap();
    proxy
        .add_toxic(Toxic::new("cap", ToxicKind::Limit { bytes: 100 }).on(Stream::Upstream))
        .unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    // Written in pieces, so the limit falls inside a chunk.
    for _ in 0..10 {
        if c.write_all(&[7u8; 37]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut got = Vec::new();
    while let SinkEvent::Data(d) = events.recv().await.unwrap().1 {
        got.extend(d);
    }
    assert_eq!(
        got,
        vec![7u8; 100],
        "exactly the first 100 bytes, then closed"
    );
    let mut buf = [0u8; 16];
    // The client sees the connection closed (EOF or reset, never data).
    match c.read(&mut buf).await {
        Ok(0) => {}
        Ok(n) => panic!("{n} bytes after the limit"),
        Err(e) => assert!(is_reset(&e), "{e:?}"),
    }
}

#[tokio::test]
async fn down_refuses_new_connections_and_drops_existing_ones() {
    let proxy = proxy_to_echo().await;
    let mut old = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(exchange(&mut old, b"a").await.unwrap(), b"a");
    proxy.set_down(true).await.unwrap();
    assert!(proxy.is_down());
    let err = TcpStream::connect(proxy.addr()).await.expect_err("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let mut buf = [0u8; 1];
    match old.read(&mut buf).await {
        Ok(0) => {}
        Ok(n) => panic!("{n} bytes on a downed link"),
        Err(e) => assert!(is_reset(&e), "{e:?}"),
    }
    proxy.set_down(false).await.unwrap();
    let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(exchange(&mut new, b"b").await.unwrap(), b"b");
}

#[tokio::test]
async fn blackhole_swallows_until_removed() {
    let (server, mut events) = sink_server().await;
    let proxy = Proxy::start("test", loopback(), server, 1).unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    proxy
        .add_toxic(Toxic::new("hole", ToxicKind::Blackhole).on(Stream::Upstream))
        .unwrap();
    c.write_all(b"lost").await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), events.recv())
            .await
            .is_err(),
        "nothing reaches the server through a blackhole"
    );
    proxy.remove_toxic("hole").unwrap();
    c.write_all(b"found").await.unwrap();
    let (_, ev) = events.recv().await.unwrap();
    assert!(
        matches!(ev, SinkEvent::Data(ref d) if d == b"found"),
        "{ev:?}"
    );
}

#[tokio::test]
async fn bandwidth_paces_the_data() {
    let proxy = proxy_to_echo().await;
    proxy
        .add_toxic(
            Toxic::new(
                "narrow",
                ToxicKind::Bandwidth {
                    bytes_per_s: 200_000,
                },
            )
            .on(Stream::Downstream),
        )
        .unwrap();
    let t = Instant::now();
    let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let back = roundtrip_chunked(proxy.addr(), payload.clone(), vec![8192]).await;
    assert_eq!(back, payload);
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "100 kB at 200 kB/s: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn toxicity_picks_some_connections_not_all() {
    let proxy = proxy_to_echo().await;
    proxy
        .add_toxic(
            Toxic::new(
                "rst",
                ToxicKind::Reset {
                    after: Duration::ZERO,
                },
            )
            .with_toxicity(0.5),
        )
        .unwrap();
    let mut reset = 0;
    for _ in 0..40 {
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        match exchange(&mut c, b"x").await {
            Ok(b) => assert_eq!(b, b"x"),
            Err(e) => {
                assert!(is_reset(&e), "{e:?}");
                reset += 1;
            }
        }
    }
    assert!(reset > 0 && reset < 40, "{reset} of 40 connections reset");
    proxy.remove_toxic("rst").unwrap();
    proxy
        .add_toxic(Toxic::new("never", latency(60_000)).with_toxicity(0.0))
        .unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    let back = tokio::time::timeout(Duration::from_secs(30), exchange(&mut c, b"y")).await;
    assert_eq!(back.unwrap().unwrap(), b"y", "toxicity 0 affects nothing");
}

#[tokio::test]
async fn upstream_changes_apply_to_new_connections() {
    let first = echo_server().await;
    let (second, mut events) = sink_server().await;
    let proxy = Proxy::start("test", loopback(), first, 1).unwrap();
    let mut old = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(exchange(&mut old, b"1").await.unwrap(), b"1");
    proxy.set_upstream(second);
    assert_eq!(proxy.upstream(), second);
    let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
    new.write_all(b"2").await.unwrap();
    let (_, ev) = events.recv().await.unwrap();
    assert!(matches!(ev, SinkEvent::Data(ref d) if d == b"2"), "{ev:?}");
    assert_eq!(
        exchange(&mut old, b"3").await.unwrap(),
        b"3",
        "the old connection keeps its upstream"
    );
}

#[tokio::test]
async fn a_dead_upstream_resets_the_client_and_bad_toxics_are_refused() {
    // A port nothing listens on: bind, read the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = Proxy::start("test", loopback(), dead, 1).unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut buf = [0u8; 1];
    match c.read(&mut buf).await {
        Ok(0) => {}
        Ok(n) => panic!("{n} bytes from nowhere"),
        Err(e) => assert!(is_reset(&e), "{e:?}"),
    }
    let err = proxy
        .add_toxic(Toxic::new("x", ToxicKind::Bandwidth { bytes_per_s: 0 }))
        .unwrap_err();
    assert!(err.to_string().contains("blackhole"), "{err}");
    assert!(
        proxy
            .add_toxic(Toxic::new("x", latency(1)).with_toxicity(1.5))
            .is_err()
    );
    proxy.add_toxic(Toxic::new("x", latency(1))).unwrap();
    assert!(
        proxy.add_toxic(Toxic::new("x", latency(1))).is_err(),
        "names are unique"
    );
}
