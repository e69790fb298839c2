//! Crash and backup tests of the real `fabric-node` binary under mixed
//! concurrent load (stream appends, queue enqueues and acks, KV puts):
//! SIGKILL and restart under each fsync policy, and an online backup taken
//! under load, restored and recovered. Every wait is a bounded poll;
//! nothing asserts on timings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fabric_wire::{
    AppendResponse, EnqueueResponse, JobsResponse, KvGetResponse, decode_payload, encode_payload,
};
use serde_json::json;

mod common;
use common::{BIN, Node, client, read_all, wait_ready};

const STREAM: &str = "acme/mixed/events";
const QUEUE: &str = "/api/v1/queues/acme/mixed/work";
const KV: &str = "/api/v1/kv/acme/mixed/state";
const KEYS: usize = 16;

/// What the clients saw acknowledged.
#[derive(Default)]
struct Acked {
    /// stream offset -> payload
    events: HashMap<u64, String>,
    /// job id -> (seq, payload)
    enqueued: HashMap<String, (u64, String)>,
    /// job ids whose ack answered 2xx
    acks: HashSet<String>,
    /// job ids an ack was sent for (answered or not: a lost answer leaves
    /// the ack's outcome unknown)
    ack_sent: HashSet<String>,
    /// job ids a consumer received
    delivered: HashSet<String>,
    /// kv key -> highest value acknowledged for it
    kv: HashMap<String, u64>,
}

/// Progress counters, to decide when to kill.
#[derive(Default)]
struct Progress {
    events: AtomicUsize,
    enqueued: AtomicUsize,
    acks: AtomicUsize,
    puts: AtomicUsize,
}

type Shared = (Arc<Mutex<Acked>>, Arc<Progress>, Arc<AtomicBool>);

/// Starts the mixed load; tasks stop at the first failed request, when
/// `stop` is set, or after a bounded number of operations.
fn start_load(
    c: &reqwest::Client,
    base: &str,
    shared: &Shared,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (acked, progress, stop) = shared;
    let mut tasks = Vec::new();
    // Stream appender.
    {
        let (c, url, acked, progress, stop) = (
            c.clone(),
            format!("{base}/api/v1/streams/{STREAM}/events"),
            Arc::clone(acked),
            Arc::clone(progress),
            Arc::clone(stop),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..3000 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let p = format!("ev-{i}");
                let body = json!({"events": [{"payload": encode_payload(p.as_bytes())}]});
                let Ok(r) = c.post(&url).json(&body).send().await else {
                    return;
                };
                if r.status() != 200 {
                    return;
                }
                let Ok(r) = r.json::<AppendResponse>().await else {
                    return;
                };
                let mut a = acked.lock().unwrap();
                assert!(
                    a.events.insert(r.offsets[0], p).is_none(),
                    "offset acknowledged twice"
                );
                progress.events.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Producers.
    for w in 0..2 {
        let (c, url, acked, progress, stop) = (
            c.clone(),
            format!("{base}{QUEUE}/jobs"),
            Arc::clone(acked),
            Arc::clone(progress),
            Arc::clone(stop),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..3000 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let p = format!("job-{w}-{i}");
                let body = json!({"payload": encode_payload(p.as_bytes())});
                let Ok(r) = c.post(&url).json(&body).send().await else {
                    return;
                };
                if r.status() != 200 {
                    return;
                }
                let Ok(r) = r.json::<EnqueueResponse>().await else {
                    return;
                };
                let mut a = acked.lock().unwrap();
                assert!(
                    a.enqueued.insert(r.job_id, (r.seq, p)).is_none(),
                    "job id reused"
                );
                progress.enqueued.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Consumers: receive, then ack every other job (the rest stay in flight).
    for _ in 0..2 {
        let (c, base, acked, progress, stop) = (
            c.clone(),
            base.to_owned(),
            Arc::clone(acked),
            Arc::clone(progress),
            Arc::clone(stop),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..3000 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let body = json!({"max_jobs": 8, "visibility_timeout_seconds": 600,
                                  "long_poll_timeout_seconds": 0.2});
                let Ok(r) = c
                    .post(format!("{base}{QUEUE}/receive"))
                    .json(&body)
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() != 200 {
                    if r.status() == 404 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue; // not created yet
                    }
                    return;
                }
                let Ok(r) = r.json::<JobsResponse>().await else {
                    return;
                };
                for (k, job) in r.jobs.into_iter().enumerate() {
                    acked.lock().unwrap().delivered.insert(job.id.clone());
                    if k % 2 == 1 {
                        continue;
                    }
                    acked.lock().unwrap().ack_sent.insert(job.id.clone());
                    let url = format!("{base}{QUEUE}/jobs/{}/ack", job.id);
                    let Ok(a) = c.post(url).send().await else {
                        return;
                    };
                    if a.status() != 200 {
                        return;
                    }
                    acked.lock().unwrap().acks.insert(job.id);
                    progress.acks.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // KV writers: each overwrites its own keys with increasing values.
    for w in 0..2 {
        let (c, base, acked, progress, stop) = (
            c.clone(),
            base.to_owned(),
            Arc::clone(acked),
            Arc::clone(progress),
            Arc::clone(stop),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..3000u64 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let key = format!("w{w}-k{}", i as usize % KEYS);
                let body = json!({"value": encode_payload(i.to_string().as_bytes())});
                let Ok(r) = c
                    .put(format!("{base}{KV}/keys/{key}"))
                    .json(&body)
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() != 200 {
                    return;
                }
                acked.lock().unwrap().kv.insert(key, i);
                progress.puts.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tasks
}

async fn wait_progress(p: &Progress, n: usize) {
    // Bounded (60 s), generous for a slow disk under `always`.
    for _ in 0..12_000 {
        if p.events.load(Ordering::Relaxed) >= n
            && p.enqueued.load(Ordering::Relaxed) >= n
            && p.acks.load(Ordering::Relaxed) >= n / 4
            && p.puts.load(Ordering::Relaxed) >= n
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the load made no progress");
}

/// Receives every job the queue hands out (bounded), with long leases.
async fn drain(c: &reqwest::Client, node: &Node) -> Vec<fabric_wire::Job> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let r: JobsResponse = c
            .post(node.url(&format!("{QUEUE}/receive")))
            .json(&json!({"max_jobs": 100, "visibility_timeout_seconds": 3600}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if r.jobs.is_empty() {
            return out;
        }
        out.extend(r.jobs);
    }
    panic!("drain did not terminate");
}

/// Checks that everything in `acked` survived on `node`; `acks_hold`:
/// whether acked jobs must not come back (true after a crash of the same
/// node; a backup may predate some acks). A job whose ack was sent (in
/// `maybe_acked`) may be gone; every other acknowledged job must come back.
async fn verify(
    c: &reqwest::Client,
    node: &Node,
    acked: &Acked,
    maybe_acked: &HashSet<String>,
    acks_hold: bool,
    what: &str,
) {
    // Streams: every acknowledged offset readable with its payload, dense.
    let msgs = read_all(c, node, STREAM).await;
    let by_offset: BTreeMap<u64, &fabric_wire::Message> =
        msgs.iter().map(|m| (m.offset, m)).collect();
    assert!(
        msgs.iter().enumerate().all(|(i, m)| m.offset == i as u64),
        "{what}: offsets are dense"
    );
    for (off, p) in &acked.events {
        let m = by_offset
            .get(off)
            .unwrap_or_else(|| panic!("{what}: acknowledged offset {off} lost"));
        assert_eq!(decode_payload(&m.payload).unwrap(), p.as_bytes());
    }
    // Queue: every acknowledged, un-acked job is delivered again; an acked
    // job never is; nothing is delivered twice in one drain.
    let again = drain(c, node).await;
    let mut seen = HashSet::new();
    for j in &again {
        assert!(
            seen.insert(j.id.clone()),
            "{what}: {} delivered twice",
            j.id
        );
        if let Some((seq, p)) = acked.enqueued.get(&j.id) {
            assert_eq!(j.seq, *seq);
            assert_eq!(decode_payload(&j.payload).unwrap(), p.as_bytes());
        }
        if acks_hold {
            assert!(
                !acked.acks.contains(&j.id),
                "{what}: acked job {} delivered again",
                j.id
            );
        }
    }
    let mut missing = 0;
    for id in acked.enqueued.keys() {
        if !maybe_acked.contains(id) && !seen.contains(id) {
            missing += 1;
            eprintln!("{what}: enqueued, un-acked job {id} not delivered again");
        }
    }
    assert_eq!(missing, 0, "{what}: jobs lost");
    // KV: every key holds its last acknowledged value or a later one.
    for (key, &v) in &acked.kv {
        let r = c
            .get(node.url(&format!("{KV}/keys/{key}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{what}: key {key} lost");
        let g: KvGetResponse = r.json().await.unwrap();
        let got: u64 = String::from_utf8(decode_payload(&g.value).unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert!(got >= v, "{what}: {key} went back from {v} to {got}");
        assert_eq!(got as usize % KEYS, v as usize % KEYS);
    }
    // New writes never reuse a seq or an offset.
    let e: EnqueueResponse = c
        .post(node.url(&format!("{QUEUE}/jobs")))
        .json(&json!({"payload": encode_payload(b"after")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(acked.enqueued.values().all(|(s, _)| *s < e.seq));
    assert!(again.iter().all(|j| j.seq < e.seq));
    let a: AppendResponse = c
        .post(node.url(&format!("/api/v1/streams/{STREAM}/events")))
        .json(&json!({"events": [{"payload": encode_payload(b"after")}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a.offsets[0], msgs.len() as u64);
}

async fn crash_mixed(policy: &str) {
    let dir = tempfile::tempdir().unwrap();
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
    let shared: Shared = Default::default();
    let tasks = start_load(&c, &node.base, &shared);
    wait_progress(&shared.1, 200).await;
    node.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = std::mem::take(&mut *shared.0.lock().unwrap());
    eprintln!(
        "{policy}: acknowledged {} events, {} enqueues, {} acks, {} kv keys",
        acked.events.len(),
        acked.enqueued.len(),
        acked.acks.len(),
        acked.kv.len()
    );
    let mut node = Node::start(dir.path(), &args);
    wait_ready(&c, &node).await;
    verify(&c, &node, &acked, &acked.ack_sent, true, policy).await;
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mixed_load_always() {
    crash_mixed("always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mixed_load_batch() {
    crash_mixed("batch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mixed_load_interval() {
    crash_mixed("interval").await;
}

fn cli(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(BIN)
        .env_remove("FLOWMESH_AUTH_TOKEN")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_backup_under_load_restores_everything_acknowledged_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let backup = tmp.path().join("backup");
    let restored = tmp.path().join("restored");
    let args = ["--log-level", "warn", "--auth-token", "tok"];
    let mut node = Node::start(&data, &args);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                reqwest::header::HeaderValue::from_static("Bearer tok"),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    wait_ready(&c, &node).await;
    let shared: Shared = Default::default();
    let tasks = start_load(&c, &node.base, &shared);
    wait_progress(&shared.1, 100).await;
    // Everything acknowledged so far must be in the backup.
    let before = {
        let a = shared.0.lock().unwrap();
        Acked {
            events: a.events.clone(),
            enqueued: a.enqueued.clone(),
            acks: a.acks.clone(),
            ack_sent: a.ack_sent.clone(),
            delivered: a.delivered.clone(),
            kv: a.kv.clone(),
        }
    };
    // An offline backup of a running node is refused.
    let out = cli(&[
        "backup".as_ref(),
        "--from-dir".as_ref(),
        data.as_os_str(),
        tmp.path().join("nope").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from-url"));
    // Without the token the snapshot is refused; with it, it succeeds.
    let url = node.base.clone();
    let b = backup.clone();
    let out = tokio::task::spawn_blocking(move || {
        let refused = cli(&[
            "backup".as_ref(),
            "--from-url".as_ref(),
            url.as_ref(),
            b.as_os_str(),
        ]);
        let ok = Command::new(BIN)
            .env("FLOWMESH_AUTH_TOKEN", "tok")
            .args([
                "backup".as_ref(),
                "--from-url".as_ref(),
                url.as_ref() as &std::ffi::OsStr,
                b.as_os_str(),
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (refused, ok)
    })
    .await
    .unwrap();
    assert_eq!(out.0.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.0.stderr).contains("unauthorized"));
    assert_eq!(
        out.1.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.1.stderr)
    );
    // Stop the load and the node.
    shared.2.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit().code(), Some(0));
    let all = std::mem::take(&mut *shared.0.lock().unwrap());

    // Restore refuses a non-empty target and a non-backup.
    let out = cli(&["restore".as_ref(), backup.as_os_str(), data.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let out = cli(&["restore".as_ref(), data.as_os_str(), restored.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!restored.exists() || std::fs::read_dir(&restored).unwrap().next().is_none());
    let out = cli(&["restore".as_ref(), backup.as_os_str(), restored.as_os_str()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The restored node has everything acknowledged before the snapshot.
    let mut node = Node::start(&restored, &args);
    wait_ready(&c, &node).await;
    // Acks sent after `before` was taken may predate the snapshot.
    verify(&c, &node, &before, &all.ack_sent, false, "restored").await;
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit().code(), Some(0));

    // Offline backup of the stopped original: everything acknowledged at all.
    let offline = tmp.path().join("offline");
    let again = tmp.path().join("again");
    let out = cli(&[
        "backup".as_ref(),
        "--from-dir".as_ref(),
        data.as_os_str(),
        offline.as_os_str(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["restore".as_ref(), offline.as_os_str(), again.as_os_str()]);
    assert_eq!(out.status.code(), Some(0));
    let node = Node::start(&again, &args);
    wait_ready(&c, &node).await;
    verify(&c, &node, &all, &all.ack_sent, true, "offline").await;
}
