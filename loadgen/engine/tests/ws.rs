//! The WebSocket client against local servers (tokio-tungstenite's server
//! side on 127.0.0.1:0). Every test asserts behaviour; timeouts are only
//! guards against a hang.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gauntlet_engine::ws::{Bytes, Client, Config, Failure, Frame, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type ServerWs = WebSocketStream<TcpStream>;

/// Bound on anything a test waits for: only a guard against a hang.
const GUARD: Duration = Duration::from_secs(30);

async fn guard<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(GUARD, f).await.expect("hung")
}

/// A WebSocket server: each accepted connection (numbered from 0) is
/// upgraded and handed to `handler` in a task of its own. Returns the
/// address and the count of accepted connections.
async fn serve<F, Fut>(handler: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(usize, ServerWs) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counted = accepts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                continue;
            };
            tokio::spawn(handler(n, ws));
        }
    });
    (addr, accepts)
}

/// Echoes every data frame until the connection ends.
async fn echo(mut ws: ServerWs) {
    while let Some(Ok(m)) = ws.next().await {
        if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
            return;
        }
    }
}

/// The next data frame, skipping control frames.
async fn next_data(ws: &mut ServerWs) -> Option<Message> {
    loop {
        match ws.next().await? {
            Ok(m) if m.is_text() || m.is_binary() => return Some(m),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// The test protocol of pipelined requests: `<key>:<payload>`; a frame
/// without a key is a push.
fn key_of(frame: &Frame) -> Option<u64> {
    frame.as_text()?.split_once(':')?.0.parse().ok()
}

fn target(addr: SocketAddr) -> Target {
    Target::parse(&format!("ws://{addr}/ws")).unwrap()
}

fn pipelined(addr: SocketAddr) -> Target {
    target(addr).with_matcher(key_of)
}

/// Answers `<key>:<payload>` with `<key>:re-<payload>`.
async fn answer_keyed(mut ws: ServerWs) {
    while let Some(m) = next_data(&mut ws).await {
        let text = m.into_text().unwrap();
        let (key, payload) = text.split_once(':').unwrap();
        let answer = Message::text(format!("{key}:re-{payload}"));
        if ws.send(answer).await.is_err() {
            return;
        }
    }
}

fn close_with(code: CloseCode) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: "bye".into(),
    }))
}

#[tokio::test]
async fn requests_reuse_one_connection_for_text_and_binary() {
    let (addr, accepts) = serve(|_, ws| echo(ws)).await;
    let client = Client::default();
    let target = target(addr);
    for i in 0..50u32 {
        let text = format!("hello {i}");
        let answer = guard(client.request(&target, Frame::text(text.clone())))
            .await
            .unwrap();
        assert_eq!(answer, Frame::text(text));
        let bytes = Bytes::from(i.to_be_bytes().to_vec());
        let answer = guard(client.request(&target, Frame::Binary(bytes.clone())))
            .await
            .unwrap();
        assert_eq!(answer, Frame::Binary(bytes));
    }
    assert_eq!(accepts.load(Ordering::SeqCst), 1);
    let stats = client.stats();
    assert_eq!((stats.opened, stats.reconnects, stats.discarded), (1, 0, 0));
}

#[tokio::test]
async fn concurrent_requests_open_connections_and_pool_them() {
    let (addr, accepts) = serve(|_, ws| echo(ws)).await;
    let client = Client::default();
    let target = target(addr);
    for _ in 0..3 {
        let answers =
            guard(futures_util::future::join_all((0..4).map(|i| {
                client.request(&target, Frame::text(format!("{i}")))
            })))
            .await;
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.unwrap(), Frame::text(format!("{i}")));
        }
    }
    // Four in flight at once need four connections, reused afterwards.
    assert_eq!(accepts.load(Ordering::SeqCst), 4);
    assert_eq!(client.reconnects(), 0);
}

#[tokio::test]
async fn upgrade_headers_are_sent_and_make_their_own_pool() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let seen_tx = seen_tx.clone();
            // The error type is tungstenite's callback signature, not ours.
            #[allow(clippy::result_large_err)]
            let callback =
                move |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let host = req.headers()["host"].to_str().unwrap().to_owned();
                    seen_tx.send((req.uri().to_string(), host, auth)).unwrap();
                    Ok(resp)
                };
            let ws = tokio_tungstenite::accept_hdr_async(tcp, callback)
                .await
                .unwrap();
            tokio::spawn(echo(ws));
        }
    });
    let client = Client::default();
    let plain = Target::new(addr, "example.test", "/a?b=1").unwrap();
    let auth = plain
        .clone()
        .with_header("Authorization", "Bearer t")
        .unwrap();
    for t in [&plain, &auth, &plain, &auth] {
        guard(client.request(t, Frame::text("x"))).await.unwrap();
    }
    let first = guard(seen.recv()).await.unwrap();
    assert_eq!(first, ("/a?b=1".into(), "example.test".into(), None));
    let second = guard(seen.recv()).await.unwrap();
    assert_eq!(second.2.as_deref(), Some("Bearer t"));
    // Two pools, one connection each.
    assert_eq!(client.stats().opened, 2);
}

#[tokio::test]
async fn frames_pushed_to_an_idle_connection_are_not_taken_as_answers() {
    // The first answer and a push go out in one write, so both are in the
    // client's buffer when the first request returns.
    let (addr, _) = serve(|_, mut ws| async move {
        let first = next_data(&mut ws).await.unwrap();
        ws.feed(first).await.unwrap();
        ws.feed(Message::text("pushed")).await.unwrap();
        ws.flush().await.unwrap();
        echo(ws).await;
    })
    .await;
    let client = Client::default();
    let target = target(addr);
    let first = guard(client.request(&target, Frame::text("1"))).await;
    assert_eq!(first.unwrap(), Frame::text("1"));
    let second = guard(client.request(&target, Frame::text("2"))).await;
    assert_eq!(second.unwrap(), Frame::text("2"));
    let stats = client.stats();
    assert_eq!((stats.unsolicited, stats.opened), (1, 1));
}

#[tokio::test]
async fn pipelined_answers_out_of_order_reach_their_requests() {
    // Reads eight requests, then answers them last first.
    let (addr, accepts) = serve(|_, mut ws| async move {
        let mut asked = Vec::new();
        while asked.len() < 8 {
            asked.push(next_data(&mut ws).await.unwrap().into_text().unwrap());
        }
        for text in asked.iter().rev() {
            let (key, payload) = text.split_once(':').unwrap();
            ws.send(Message::text(format!("{key}:re-{payload}")))
                .await
                .unwrap();
        }
        answer_keyed(ws).await;
    })
    .await;
    let client = Client::default();
    let target = pipelined(addr);
    let keys: Vec<u64> = (0..8).map(|_| client.next_key()).collect();
    let answers =
        guard(futures_util::future::join_all(keys.iter().map(|&k| {
            client.call(&target, k, Frame::text(format!("{k}:p{k}")))
        })))
        .await;
    for (k, answer) in keys.iter().zip(answers) {
        assert_eq!(answer.unwrap(), Frame::text(format!("{k}:re-p{k}")));
    }
    // The same pipeline again, through a handle.
    let pipeline = client.pipeline(&target);
    let answer = guard(pipeline.call(99, Frame::text("99:again"))).await;
    assert_eq!(answer.unwrap(), Frame::text("99:re-again"));
    assert_eq!(accepts.load(Ordering::SeqCst), 1);
    assert_eq!(client.stats().late_answers, 0);
}

#[tokio::test]
async fn a_key_already_in_flight_is_refused() {
    let (addr, _) = serve(|_, ws| answer_keyed(ws)).await;
    let client = Client::default();
    let pipeline = client.pipeline(&pipelined(addr));
    // Polled in order: the first registers key 7, the second finds it taken.
    let (first, second) = guard(async {
        tokio::join!(
            pipeline.call(7, Frame::text("7:a")),
            pipeline.call(7, Frame::text("7:b")),
        )
    })
    .await;
    assert_eq!(first.unwrap(), Frame::text("7:re-a"));
    assert_eq!(second.unwrap_err().kind(), "ws_key_in_use");
    // The key is free again once answered.
    let again = guard(pipeline.call(7, Frame::text("7:c"))).await;
    assert_eq!(again.unwrap(), Frame::text("7:re-c"));
}

#[tokio::test]
async fn server_pushed_frames_reach_the_subscriber() {
    // `1:sub` → answer, then five pushes; `2:sync` → answer; `3:later` →
    // answer, then a push; `4:bye` → close 1000.
    let (addr, _) = serve(|_, mut ws| async move {
        while let Some(m) = next_data(&mut ws).await {
            let text = m.into_text().unwrap();
            let Some((key, payload)) = text.split_once(':') else {
                // Sent without a key: acknowledged by a push.
                ws.send(Message::text(format!("ack-{text}"))).await.unwrap();
                continue;
            };
            if payload == "bye" {
                ws.send(close_with(CloseCode::Normal)).await.unwrap();
                while ws.next().await.is_some() {}
                return;
            }
            ws.send(Message::text(format!("{key}:ok"))).await.unwrap();
            match payload {
                "sub" => {
                    for i in 0..5 {
                        ws.send(Message::text(format!("note-{i}"))).await.unwrap();
                    }
                }
                "later" => ws.send(Message::binary(vec![7u8])).await.unwrap(),
                _ => {}
            }
        }
    })
    .await;
    let client = Client::new(Config {
        pushed_capacity: 3,
        ..Config::default()
    });
    let pipeline = client.dedicated(&pipelined(addr));
    let sub = guard(pipeline.subscribe()).await.unwrap();
    let before = tokio::time::Instant::now();
    assert_eq!(
        guard(pipeline.call(1, Frame::text("1:sub"))).await.unwrap(),
        Frame::text("1:ok")
    );
    // Frames arrive in order: once `2:ok` is in, the pushes before it are.
    guard(pipeline.call(2, Frame::text("2:sync")))
        .await
        .unwrap();
    let mut pushed = Vec::new();
    assert_eq!(sub.drain(&mut pushed), 3);
    let texts: Vec<_> = pushed.iter().map(|p| p.frame.as_text().unwrap()).collect();
    assert_eq!(texts, ["note-0", "note-1", "note-2"]);
    assert!(pushed.iter().all(|p| p.at >= before));
    assert!(pushed.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(sub.dropped(), 2);
    // A subscriber already waiting is woken by a push.
    let (notified, answer) =
        guard(async { tokio::join!(sub.recv(), pipeline.call(3, Frame::text("3:later"))) }).await;
    assert_eq!(answer.unwrap(), Frame::text("3:ok"));
    assert_eq!(notified.unwrap().frame, Frame::binary(vec![7u8]));
    // A frame sent without expecting an answer.
    guard(pipeline.send(Frame::text("hello"))).await.unwrap();
    assert_eq!(
        guard(sub.recv()).await.unwrap().frame,
        Frame::text("ack-hello")
    );
    // The subscription ends with its connection, saying why.
    let bye = guard(pipeline.call(4, Frame::text("4:bye"))).await;
    assert_eq!(bye.unwrap_err(), Failure::Closed(1000));
    assert!(guard(sub.recv()).await.is_none());
    assert_eq!(sub.ended(), Some(Failure::Closed(1000)));
}

#[tokio::test]
async fn a_server_close_1011_fails_the_request_in_flight() {
    let (addr, accepts) = serve(|n, mut ws| async move {
        if n == 0 {
            next_data(&mut ws).await.unwrap();
            ws.send(close_with(CloseCode::Error)).await.unwrap();
            while ws.next().await.is_some() {}
        } else {
            echo(ws).await;
        }
    })
    .await;
    let client = Client::default();
    let target = target(addr);
    let failed = guard(client.request(&target, Frame::text("x"))).await;
    assert_eq!(failed.unwrap_err().kind(), "ws_close_1011");
    let answer = guard(client.request(&target, Frame::text("y"))).await;
    assert_eq!(answer.unwrap(), Frame::text("y"));
    assert_eq!(accepts.load(Ordering::SeqCst), 2);
    assert_eq!(client.reconnects(), 1);
}

#[tokio::test]
async fn a_server_close_fails_every_pipelined_request_in_flight() {
    let (addr, _) = serve(|n, mut ws| async move {
        if n == 0 {
            for _ in 0..3 {
                next_data(&mut ws).await.unwrap();
            }
            ws.send(close_with(CloseCode::Error)).await.unwrap();
            while ws.next().await.is_some() {}
        } else {
            answer_keyed(ws).await;
        }
    })
    .await;
    let client = Client::default();
    let target = pipelined(addr);
    let failed =
        guard(futures_util::future::join_all((1..=3u64).map(|k| {
            client.call(&target, k, Frame::text(format!("{k}:x")))
        })))
        .await;
    for f in failed {
        assert_eq!(f.unwrap_err().kind(), "ws_close_1011");
    }
    let answer = guard(client.call(&target, 4, Frame::text("4:y"))).await;
    assert_eq!(answer.unwrap(), Frame::text("4:re-y"));
    assert_eq!(client.reconnects(), 1);
}

#[tokio::test]
async fn a_dropped_connection_is_ws_dropped_and_the_next_request_reconnects() {
    // First connection: one answer, then the TCP connection is dropped
    // (no close frame) on the second request.
    let (addr, accepts) = serve(|n, mut ws| async move {
        if n == 0 {
            let m = next_data(&mut ws).await.unwrap();
            ws.send(m).await.unwrap();
            next_data(&mut ws).await.unwrap();
            drop(ws);
        } else {
            echo(ws).await;
        }
    })
    .await;
    let client = Client::default();
    let target = target(addr);
    let first = guard(client.request(&target, Frame::text("1"))).await;
    assert_eq!(first.unwrap(), Frame::text("1"));
    let lost = guard(client.request(&target, Frame::text("2"))).await;
    assert_eq!(lost.unwrap_err().kind(), "ws_dropped");
    let next = guard(client.request(&target, Frame::text("3"))).await;
    assert_eq!(next.unwrap(), Frame::text("3"));
    assert_eq!(client.reconnects(), 1);
    assert_eq!(accepts.load(Ordering::SeqCst), 2);
    // Further requests reuse the new connection: no more reconnects.
    let again = guard(client.request(&target, Frame::text("4"))).await;
    assert_eq!(again.unwrap(), Frame::text("4"));
    assert_eq!(client.reconnects(), 1);
    assert_eq!(accepts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_dropped_pipeline_fails_its_requests_and_reconnects() {
    let (addr, accepts) = serve(|n, mut ws| async move {
        if n == 0 {
            next_data(&mut ws).await.unwrap();
            next_data(&mut ws).await.unwrap();
            drop(ws);
        } else {
            answer_keyed(ws).await;
        }
    })
    .await;
    let client = Client::default();
    let pipeline = client.pipeline(&pipelined(addr));
    let sub = guard(pipeline.subscribe()).await.unwrap();
    let (a, b) = guard(async {
        tokio::join!(
            pipeline.call(1, Frame::text("1:a")),
            pipeline.call(2, Frame::text("2:b"))
        )
    })
    .await;
    assert_eq!(a.unwrap_err(), Failure::Dropped);
    assert_eq!(b.unwrap_err(), Failure::Dropped);
    assert_eq!(sub.ended(), Some(Failure::Dropped));
    let c = guard(pipeline.call(3, Frame::text("3:c"))).await;
    assert_eq!(c.unwrap(), Frame::text("3:re-c"));
    assert_eq!(client.reconnects(), 1);
    assert_eq!(accepts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn server_pings_are_answered_with_pongs() {
    // Pipelined connection, idle (nothing asked): the server pings, waits
    // for the pong, then pushes a frame saying so.
    // Mode 1: the server pings while the request waits for its answer and
    // answers only once the pong came.
    let (addr, _) = serve(|n, mut ws| async move {
        let ping = Bytes::from(format!("ping-{n}"));
        if n == 0 {
            ws.send(Message::Ping(ping.clone())).await.unwrap();
            loop {
                match ws.next().await.unwrap().unwrap() {
                    Message::Pong(p) if p == ping => break,
                    _ => {}
                }
            }
            ws.send(Message::text("pong seen")).await.unwrap();
            answer_keyed(ws).await;
        } else {
            let request = next_data(&mut ws).await.unwrap();
            ws.send(Message::Ping(ping.clone())).await.unwrap();
            loop {
                match ws.next().await.unwrap().unwrap() {
                    Message::Pong(p) if p == ping => break,
                    _ => {}
                }
            }
            ws.send(request).await.unwrap();
            echo(ws).await;
        }
    })
    .await;
    let client = Client::default();
    let pipeline = client.dedicated(&pipelined(addr));
    let sub = guard(pipeline.subscribe()).await.unwrap();
    let pushed = guard(sub.recv()).await.unwrap();
    assert_eq!(pushed.frame, Frame::text("pong seen"));
    let answer = guard(client.request(&target(addr), Frame::text("after ping"))).await;
    assert_eq!(answer.unwrap(), Frame::text("after ping"));
}

#[tokio::test]
async fn keepalive_pings_idle_connections_and_answers_their_pings() {
    // After one request the connection idles in the pool: the server pings
    // it and waits for the pong, then waits for a client ping.
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let (addr, _) = serve(move |n, mut ws| {
        let done_tx = done_tx.clone();
        async move {
            let request = next_data(&mut ws).await.unwrap();
            ws.send(request).await.unwrap();
            // Connection 0 is a mode-1 one, idle in the pool; connection 1
            // a pipelined one, read by its reader task.
            ws.send(Message::Ping(Bytes::from_static(b"idle")))
                .await
                .unwrap();
            let mut pong = false;
            let mut client_ping = false;
            while !(pong && client_ping) {
                match ws.next().await {
                    Some(Ok(Message::Pong(p))) if p == "idle".as_bytes() => pong = true,
                    Some(Ok(Message::Ping(_))) => client_ping = true,
                    Some(Ok(_)) => {}
                    _ => return,
                }
            }
            done_tx.send(n).unwrap();
            echo(ws).await;
        }
    })
    .await;
    let client = Client::new(Config {
        keepalive: Some(Duration::from_millis(20)),
        ..Config::default()
    });
    let answer = guard(client.request(&target(addr), Frame::text("1"))).await;
    assert_eq!(answer.unwrap(), Frame::text("1"));
    assert_eq!(guard(done.recv()).await, Some(0));
    let answer = guard(client.call(&pipelined(addr), 5, Frame::text("5:x"))).await;
    assert_eq!(answer.unwrap(), Frame::text("5:x"));
    assert_eq!(guard(done.recv()).await, Some(1));
    // Still the same connections, still usable.
    let answer = guard(client.request(&target(addr), Frame::text("2"))).await;
    assert_eq!(answer.unwrap(), Frame::text("2"));
    assert_eq!(client.stats().opened, 2);
}

#[tokio::test]
async fn a_refused_connection_is_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::default();
    let failed = guard(client.request(&target(addr), Frame::text("x"))).await;
    assert_eq!(failed.unwrap_err().kind(), "connect");
    let failed = guard(client.call(&pipelined(addr), 1, Frame::text("1:x"))).await;
    assert_eq!(failed.unwrap_err().kind(), "connect");
    assert_eq!(client.stats().opened, 0);
}

#[tokio::test]
async fn an_invalid_upgrade_is_ws_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = tcp.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let _ = tcp
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let client = Client::default();
    let failed = guard(client.request(&target(addr), Frame::text("x"))).await;
    assert_eq!(failed.unwrap_err().kind(), "ws_handshake");
    let failed = guard(client.call(&pipelined(addr), 1, Frame::text("1:x"))).await;
    assert_eq!(failed.unwrap_err().kind(), "ws_handshake");
}

#[tokio::test]
async fn an_oversize_answer_is_ws_oversize() {
    let (addr, _) = serve(|_, mut ws| async move {
        while let Some(m) = next_data(&mut ws).await {
            let size: usize = m.into_text().unwrap().parse().unwrap();
            ws.send(Message::binary(vec![0u8; size])).await.unwrap();
        }
    })
    .await;
    let client = Client::new(Config {
        max_message_size: 1024,
        ..Config::default()
    });
    let target = target(addr);
    let fits = guard(client.request(&target, Frame::text("1024"))).await;
    assert_eq!(fits.unwrap().len(), 1024);
    let failed = guard(client.request(&target, Frame::text("4096"))).await;
    assert_eq!(failed.unwrap_err().kind(), "ws_oversize");
    let fits = guard(client.request(&target, Frame::text("10"))).await;
    assert_eq!(fits.unwrap().len(), 10);
    assert_eq!(client.reconnects(), 1);
}

#[tokio::test]
async fn a_request_dropped_by_a_timeout_does_not_poison_the_next() {
    // First connection: answers `warm`, holds back the answer to `slow`
    // until told, then sends it (to a client that should have given up on
    // the connection).
    let (release_tx, release) = mpsc::unbounded_channel::<()>();
    let release = Arc::new(tokio::sync::Mutex::new(release));
    let (addr, accepts) = serve(move |n, mut ws| {
        let release = release.clone();
        async move {
            if n == 0 {
                let warm = next_data(&mut ws).await.unwrap();
                ws.send(warm).await.unwrap();
                next_data(&mut ws).await.unwrap();
                release.lock().await.recv().await;
                let _ = ws.send(Message::text("stale")).await;
                while next_data(&mut ws).await.is_some() {}
            } else {
                echo(ws).await;
            }
        }
    })
    .await;
    let client = Client::default();
    let target = target(addr);
    let warm = guard(client.request(&target, Frame::text("warm"))).await;
    assert_eq!(warm.unwrap(), Frame::text("warm"));
    // The pooled connection is taken at the first poll, so the timeout
    // drops a request that holds it, however slow the machine.
    let slow = tokio::time::timeout(
        Duration::from_millis(50),
        client.request(&target, Frame::text("slow")),
    )
    .await;
    assert!(slow.is_err(), "the server holds back the answer to `slow`");
    release_tx.send(()).unwrap();
    for i in 0..3 {
        let fresh = guard(client.request(&target, Frame::text(format!("fresh {i}")))).await;
        assert_eq!(fresh.unwrap(), Frame::text(format!("fresh {i}")));
    }
    let stats = client.stats();
    assert_eq!((stats.discarded, stats.reconnects), (1, 0));
    assert_eq!(accepts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_pipelined_request_dropped_by_a_timeout_does_not_poison_the_next() {
    // `1:slow` is answered only when the next request arrives, just before
    // that one's answer.
    let (addr, accepts) = serve(|_, mut ws| async move {
        let mut held = None;
        while let Some(m) = next_data(&mut ws).await {
            let text = m.into_text().unwrap();
            if text.as_str() == "1:slow" {
                held = Some(text);
                continue;
            }
            if held.take().is_some() {
                ws.send(Message::text("1:stale")).await.unwrap();
            }
            ws.send(Message::text(text)).await.unwrap();
        }
    })
    .await;
    let client = Client::default();
    let target = pipelined(addr);
    // Connected first, so the timeout below drops a request in flight.
    let warm = guard(client.call(&target, 10, Frame::text("10:warm"))).await;
    assert_eq!(warm.unwrap(), Frame::text("10:warm"));
    let slow = tokio::time::timeout(
        Duration::from_millis(50),
        client.call(&target, 1, Frame::text("1:slow")),
    )
    .await;
    assert!(
        slow.is_err(),
        "the server holds back the answer to `1:slow`"
    );
    let fast = guard(client.call(&target, 2, Frame::text("2:fast"))).await;
    assert_eq!(fast.unwrap(), Frame::text("2:fast"));
    // The stale answer came first and found no waiter.
    assert_eq!(client.stats().late_answers, 1);
    // Key 1 is free again.
    let again = guard(client.call(&target, 1, Frame::text("1:again"))).await;
    assert_eq!(again.unwrap(), Frame::text("1:again"));
    assert_eq!(accepts.load(Ordering::SeqCst), 1);
}

/// Serves echo (keyed answers for `k:…`) and reports the close code each
/// connection received.
async fn serve_reporting_closes() -> (SocketAddr, mpsc::UnboundedReceiver<Option<u16>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (addr, _) = serve(move |_, mut ws| {
        let tx = tx.clone();
        async move {
            while let Some(m) = ws.next().await {
                match m {
                    Ok(Message::Close(frame)) => {
                        tx.send(frame.map(|f| u16::from(f.code))).unwrap();
                        // The close reply goes out with the next read.
                        while ws.next().await.is_some() {}
                        return;
                    }
                    Ok(m) if m.is_text() || m.is_binary() => {
                        if ws.send(m).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }
    })
    .await;
    (addr, rx)
}

#[tokio::test]
async fn close_all_closes_pooled_connections_with_1000() {
    let (addr, mut closes) = serve_reporting_closes().await;
    let client = Client::default();
    let shared = pipelined(addr);
    guard(client.request(&target(addr), Frame::text("a")))
        .await
        .unwrap();
    guard(client.call(&shared, 1, Frame::text("1:b")))
        .await
        .unwrap();
    let subscriber = client.dedicated(&shared);
    let sub = guard(subscriber.subscribe()).await.unwrap();
    guard(client.close_all()).await;
    for _ in 0..3 {
        assert_eq!(guard(closes.recv()).await.unwrap(), Some(1000));
    }
    assert_eq!(sub.ended(), Some(Failure::ClientClosed));
    // Usable afterwards, on new connections, which are not reconnects.
    guard(client.request(&target(addr), Frame::text("c")))
        .await
        .unwrap();
    guard(client.call(&shared, 2, Frame::text("2:d")))
        .await
        .unwrap();
    assert_eq!(client.reconnects(), 0);
    assert_eq!(client.stats().opened, 5);
}

#[tokio::test]
async fn dropping_the_client_closes_its_connections_with_1000() {
    let (addr, mut closes) = serve_reporting_closes().await;
    let client = Client::default();
    guard(client.request(&target(addr), Frame::text("a")))
        .await
        .unwrap();
    let pipeline = client.pipeline(&pipelined(addr));
    guard(pipeline.call(1, Frame::text("1:b"))).await.unwrap();
    // A dedicated pipeline closes when its last handle goes.
    let dedicated = client.dedicated(&pipelined(addr));
    let sub = guard(dedicated.subscribe()).await.unwrap();
    drop(dedicated);
    assert_eq!(guard(closes.recv()).await.unwrap(), Some(1000));
    assert_eq!(sub.ended(), Some(Failure::ClientClosed));
    drop(client);
    for _ in 0..2 {
        assert_eq!(guard(closes.recv()).await.unwrap(), Some(1000));
    }
    // A handle that outlived its client opens nothing.
    let after = guard(pipeline.call(2, Frame::text("2:c"))).await;
    assert_eq!(after.unwrap_err().kind(), "ws_client_closed");
}

#[test]
fn request_futures_can_be_spawned() {
    fn is_send<T: Send>(_: &T) {}
    let client = Client::default();
    let target = target("127.0.0.1:1".parse().unwrap());
    let pipelined = target.clone().with_matcher(key_of);
    let pipeline = client.pipeline(&pipelined);
    is_send(&client.request(&target, Frame::text("x")));
    is_send(&client.call(&pipelined, 1, Frame::text("x")));
    is_send(&pipeline.call(1, Frame::text("x")));
    is_send(&pipeline.send(Frame::text("x")));
    is_send(&pipeline.subscribe());
    is_send(&client.close_all());
    fn is_sync<T: Sync + Send>(_: &T) {}
    is_sync(&client);
    is_sync(&pipeline);
}
