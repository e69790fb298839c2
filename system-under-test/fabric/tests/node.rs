//! End-to-end tests of the real `fabric-node` binary over loopback HTTP:
//! crash (SIGKILL) and restart under each fsync policy, graceful SIGTERM,
//! operational endpoints, JSON errors, configuration errors, rotation.
//! Every wait is a bounded poll; nothing asserts on timings.

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fabric_wire::{
    AppendResponse, LatestOffsetResponse, ReadResponse, decode_payload, encode_payload,
};
use serde_json::{Value, json};

mod common;
use common::{BIN, CONFIG_ENV, Node, client, expect_error, read_all, wait_ready};

/// A batch: (writer, sequence, event count); payload of event j is `w{writer}-s{seq}-e{j}`.
fn payload(w: usize, s: usize, j: usize) -> String {
    format!("w{w}-s{s}-e{j}")
}

fn parse_payload(p: &[u8]) -> (usize, usize, usize) {
    let s = std::str::from_utf8(p).unwrap();
    let parts: Vec<usize> = s.split('-').map(|x| x[1..].parse().unwrap()).collect();
    (parts[0], parts[1], parts[2])
}

async fn crash_and_recover(policy: &str) {
    let dir = tempfile::tempdir().unwrap();
    let stream = "acme/orders/events";
    let args = [
        "--fsync-policy",
        policy,
        "--fsync-interval",
        "5ms",
        "--log-level",
        "warn",
    ];
    let mut node = Node::start(dir.path(), &args);
    let c = client();
    wait_ready(&c, &node).await;

    let acked: Arc<Mutex<HashMap<u64, String>>> = Arc::new(Mutex::new(HashMap::new()));
    let acked_batches = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..6 {
        let (c, url, acked, n) = (
            c.clone(),
            node.url(&format!("/api/v1/streams/{stream}/events")),
            Arc::clone(&acked),
            Arc::clone(&acked_batches),
        );
        writers.push(tokio::spawn(async move {
            for s in 0..400 {
                let count = 1 + (w + s) % 4;
                let events: Vec<Value> = (0..count)
                    .map(|j| json!({"payload": encode_payload(payload(w, s, j).as_bytes()), "headers": {"w": w.to_string()}}))
                    .collect();
                let Ok(r) = c.post(&url).json(&json!({ "events": events })).send().await else { return };
                if r.status() != 200 {
                    return;
                }
                let Ok(resp) = r.json::<AppendResponse>().await else { return };
                assert_eq!(resp.offsets.len(), count);
                let mut a = acked.lock().unwrap();
                for (j, off) in resp.offsets.iter().enumerate() {
                    assert!(a.insert(*off, payload(w, s, j)).is_none(), "offset {off} acknowledged twice");
                }
                n.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Kill while appends are in flight, once enough were acknowledged.
    for _ in 0..2000 {
        if acked_batches.load(Ordering::Relaxed) >= 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(acked_batches.load(Ordering::Relaxed) > 0);
    node.kill9();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let node = Node::start(dir.path(), &args);
    wait_ready(&c, &node).await;
    let msgs = read_all(&c, &node, stream).await;
    eprintln!(
        "{policy}: {} offsets acknowledged, {} readable after restart",
        acked.len(),
        msgs.len()
    );
    let by_offset: BTreeMap<u64, &fabric_wire::Message> =
        msgs.iter().map(|m| (m.offset, m)).collect();
    assert_eq!(by_offset.len(), msgs.len(), "an offset was returned twice");
    assert!(
        msgs.windows(2).all(|w| w[0].offset < w[1].offset),
        "reads are in offset order"
    );
    for (off, p) in &acked {
        let m = by_offset
            .get(off)
            .unwrap_or_else(|| panic!("{policy}: acknowledged offset {off} lost"));
        assert_eq!(
            &decode_payload(&m.payload).unwrap(),
            p.as_bytes(),
            "{policy}: payload of {off}"
        );
        assert!(m.created_at.ends_with('Z') && m.created_at.parse::<jiff::Timestamp>().is_ok());
    }
    // Batches are all-or-nothing and contiguous, acknowledged or not.
    let mut batches: HashMap<(usize, usize), Vec<(usize, u64)>> = HashMap::new();
    for m in &msgs {
        let (w, s, j) = parse_payload(&decode_payload(&m.payload).unwrap());
        batches.entry((w, s)).or_default().push((j, m.offset));
    }
    for ((w, s), mut evs) in batches {
        evs.sort_unstable();
        let count = 1 + (w + s) % 4;
        assert_eq!(evs.len(), count, "{policy}: batch w{w}-s{s} is partial");
        assert!(
            evs.windows(2)
                .all(|p| p[1].1 == p[0].1 + 1 && p[1].0 == p[0].0 + 1)
        );
    }
    let latest: LatestOffsetResponse = c
        .get(node.url(&format!("/api/v1/streams/{stream}/offsets/latest")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(latest.offset, msgs.last().map_or(-1, |m| m.offset as i64));
    // A new append never reuses an offset.
    let r: AppendResponse = c
        .post(node.url(&format!("/api/v1/streams/{stream}/events")))
        .json(&json!({"events": [{"payload": encode_payload(b"after")}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r.offsets[0] as i64 > latest.offset);
    assert!(acked.keys().all(|&o| o < r.offsets[0]));
    let mut node = node;
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_and_restart_loses_nothing_acknowledged_always() {
    crash_and_recover("always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_and_restart_loses_nothing_acknowledged_batch() {
    crash_and_recover("batch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_and_restart_loses_nothing_acknowledged_interval() {
    crash_and_recover("interval").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_errors_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(
        dir.path(),
        &[
            "--auto-create",
            "false",
            "--metrics-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
    );
    let c = client();
    wait_ready(&c, &node).await;
    // The announcing line is JSON.
    let first: Value = serde_json::from_str(&node.log.lock().unwrap()[0]).unwrap();
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .starts_with("listening on 127.0.0.1:")
    );

    let r = c.get(node.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status": "healthy"})
    );
    let r = c.get(node.url("/ready")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ready"}));

    let s = "/api/v1/streams/t1/ns1/s1";
    let ev = |p: &str| json!({"events": [{"payload": p}]});
    expect_error(
        c.post(node.url(&format!("{s}/events")))
            .json(&ev("aGk="))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    expect_error(
        c.get(node.url(&format!("{s}/messages")))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    expect_error(
        c.get(node.url(&format!("{s}/offsets/latest")))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;

    let r = c.put(node.url(s)).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status":"success","created":true})
    );
    let r = c.put(node.url(s)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["created"], false);
    let latest: LatestOffsetResponse = c
        .get(node.url(&format!("{s}/offsets/latest")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(latest.offset, -1);

    let post = |body: Value| c.post(node.url(&format!("{s}/events"))).json(&body).send();
    expect_error(
        post(ev("not base64!")).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    expect_error(post(ev("")).await.unwrap(), 400, "invalid_request").await;
    expect_error(
        post(json!({"events": []})).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    expect_error(
        post(json!({"nope": 1})).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    let many: Vec<Value> = (0..1001).map(|_| json!({"payload": "aGk="})).collect();
    expect_error(
        post(json!({ "events": many })).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    let r = c
        .post(node.url(&format!("{s}/events")))
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_request").await;
    // A rejected batch wrote nothing.
    let latest: LatestOffsetResponse = c
        .get(node.url(&format!("{s}/offsets/latest")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(latest.offset, -1);

    let ok: AppendResponse =
        post(json!({"events": [{"payload": "aGk=", "headers": {"k": "v"}}, {"payload": "eW8="}]}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(ok.offsets, vec![0, 1]);
    let read: ReadResponse = c
        .get(node.url(&format!("{s}/messages?offset=0&max_messages=1")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read.messages.len(), 1);
    assert_eq!(read.messages[0].headers["k"], "v");
    assert_eq!(read.messages[0].payload, "aGk=");
    expect_error(
        c.get(node.url(&format!("{s}/messages?max_messages=0")))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    expect_error(
        c.get(node.url(&format!("{s}/messages?max_messages=1001")))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    expect_error(
        c.get(node.url(&format!("{s}/messages?offset=abc")))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    expect_error(
        c.put(node.url("/api/v1/streams/t1/ns%20x/s1"))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    expect_error(
        c.get(node.url("/no/such/route")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    expect_error(
        c.get(node.url("/api/v1/streams/a/b")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    let r = c.delete(node.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "error");

    for base in [node.base.clone(), node.metrics_base.clone().unwrap()] {
        let text = c
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for name in [
            "flowmesh_stream_events_written_total 2",
            "flowmesh_stream_events_read_total 1",
            "flowmesh_fsync_total",
            "flowmesh_fsync_duration_seconds_bucket",
            "flowmesh_recovery_truncated_bytes_total 0",
            "flowmesh_operation_duration_seconds_bucket{op=\"append\"",
            "flowmesh_operation_duration_seconds_count{op=\"read\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    // A second node on the same data directory refuses to start.
    let out = Command::new(BIN)
        .args(["--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));

    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit().code(), Some(0));
    let log = node.log.lock().unwrap().join("\n");
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_across_restart_and_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--segment-bytes", "200", "--fsync-policy", "always"];
    let stream = "t/n/rot";
    let c = client();
    let mut node = Node::start(dir.path(), &args);
    wait_ready(&c, &node).await;
    for i in 0..40 {
        let events: Vec<Value> = (0..1 + i % 3)
            .map(|j| json!({"payload": encode_payload(format!("{i}.{j}").as_bytes())}))
            .collect();
        let r = c
            .post(node.url(&format!("/api/v1/streams/{stream}/events")))
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    node.signal(libc::SIGINT);
    assert_eq!(node.wait_exit().code(), Some(0));
    let segs = std::fs::read_dir(dir.path().join("streams/t/n/rot"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert!(segs >= 5, "expected rotation, found {segs} segments");
    let node = Node::start(dir.path(), &args);
    wait_ready(&c, &node).await;
    let msgs = read_all(&c, &node, stream).await;
    let total: usize = (0..40).map(|i| 1 + i % 3).sum();
    assert_eq!(msgs.len(), total);
    assert!(msgs.iter().enumerate().all(|(i, m)| m.offset == i as u64));
    assert_eq!(decode_payload(&msgs[total - 1].payload).unwrap(), b"39.0");
}

#[test]
fn bad_configuration_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    type Case<'a> = (&'a [&'a str], Option<(&'a str, &'a str)>);
    let cases: [Case; 5] = [
        (&["--fsync-interval", "10"], None),
        (&["--fsync-policy", "sometimes"], None),
        (&["--http-addr", "not-an-address"], None),
        (&["--segment-bytes", "0"], None),
        (&[], Some(("STORAGE_FSYNC_POLICY", "bogus"))),
    ];
    for (args, env) in cases {
        let mut cmd = Command::new(BIN);
        for k in CONFIG_ENV {
            cmd.env_remove(k);
        }
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}");
        assert!(!out.stderr.is_empty());
    }
}
