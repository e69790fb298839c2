//! The operation catalog against the real fabric: every operation and
//! chain, generic HTTP, external targets, phase shapes and per-phase mixes,
//! `${ENV}` and `--set`. Assertions are on counts, errors and the fabric's
//! own state afterwards, never on timings. Everything is on loopback.

mod common;

use common::{only_run_dir, results};

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{fabric_node, loadgen, text};
use gauntlet_engine::Operation as _;

/// A fabric node started by the test (not by loadgen), killed on drop.
struct Node {
    child: Child,
    port: u16,
}

impl Node {
    fn start(data: &Path) -> Node {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(fabric_node())
            .args(["--http-addr", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let node = Node { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(node.request("GET", "/ready", ""), Some((200, _))) {
                return node;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("fabric-node on port {port} never became ready");
    }

    /// One request over a raw socket: (status, body).
    fn request(&self, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let status = buf.split(' ').nth(1)?.parse().ok()?;
        let body = buf.split("\r\n\r\n").nth(1)?.to_owned();
        Some((status, body))
    }

    fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.request("GET", path, "").expect("the node answers");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(body.trim()).unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `scenario` and returns the run directory; the run must pass.
fn run(dir: &Path, scenario: &str, extra: &[&str]) -> (PathBuf, String) {
    let path = dir.join("scenario.yaml");
    std::fs::write(&path, scenario).unwrap();
    let mut args = vec!["run", path.to_str().unwrap(), "--out", "runs", "--quiet"];
    args.extend_from_slice(extra);
    let out = loadgen(&args, dir);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{stderr}",
        text(&out.stdout)
    );
    (only_run_dir(&dir.join("runs")), stderr)
}

/// Every operation of the catalog and every chain, against a fabric the
/// test started itself and names as an external service (so loadgen boots
/// nothing), then the fabric's own state is checked against the counts.
#[test]
fn every_operation_runs_against_the_real_fabric() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("fabric-data"));
    let scenario = format!(
        r#"
name: catalog
seed: 11
stack:
  external:
    fabric: "http://127.0.0.1:{port}"
workload:
  max_in_flight: 32
  phases:
    - {{ name: fill, duration: 1s, rate: 150/s, mix: {{ append: 2, enqueue: 3, put-users: 1, put-order: 1, health: 1 }} }}
    - {{ name: mixed, duration: 2s, rate: 200/s }}
  operations:
    - name: append
      weight: 2
      fabric.stream.append: {{ stream: t/cat/events, batch: 5, payload: {{ json: {{ id: "{{{{seq}}}}", at: "{{{{timestamp}}}}", user: "u-{{{{random:int:1:9}}}}" }} }} }}
    - {{ name: read-start, fabric.stream.read: {{ stream: t/cat/events, from: 0, max: 10 }} }}
    - {{ name: read-latest, fabric.stream.read: {{ stream: t/cat/events, from: latest-20, max: 20 }} }}
    - name: tail
      fabric.stream.read: {{ stream: t/cat/events, from: follow, max: 50 }}
      then: [ {{ fabric.stream.commit: {{ group: tailers }} }} ]
    - {{ name: commit, fabric.stream.commit: {{ stream: t/cat/events, group: ops }} }}
    - name: enqueue
      weight: 3
      fabric.queue.enqueue: {{ queue: t/cat/jobs, payload: {{ size: {{ min: 16B, max: 1KiB }} }} }}
    - {{ name: delayed, fabric.queue.enqueue: {{ queue: t/cat/later, delay: 1h, payload: 32B }} }}
    - name: work
      fabric.queue.reserve: {{ queue: t/cat/jobs, visibility: 30s }}
      then: [ {{ fabric.queue.ack: {{}} }} ]
    - name: batch
      fabric.queue.receive: {{ queue: t/cat/jobs, max: 3, visibility: 30s }}
      then: [ {{ name: giveback, fabric.queue.nack: {{ delay: 10m }} }} ]
    - name: put-users
      fabric.kv.put:
        store: t/cat/kv
        key: {{ prefix: user-, count: 20, distribution: sequential }}
        value: {{ json: {{ key: "{{{{key}}}}", n: "{{{{seq}}}}" }} }}
    - name: put-order
      fabric.kv.put: {{ store: t/cat/kv, key: "order-{{{{seq}}}}", value: {{ size: {{ one_of: [8B, 64B], weights: [1, 3] }} }} }}
      then: [ {{ fabric.kv.get: {{}} }}, {{ fabric.kv.delete: {{}} }} ]
    - {{ name: get, fabric.kv.get: {{ store: t/cat/kv, key: {{ prefix: user-, count: 20, distribution: {{ zipf: 1.2 }} }}, missing: ok }} }}
    - {{ name: health, http: {{ service: fabric, url: /health, headers: {{ accept: application/json }}, expect: 200 }} }}
    - name: raw-append
      http:
        method: POST
        url: /api/v1/streams/t/cat/raw/events
        body: {{ json: {{ events: [ {{ payload: aGVsbG8= }} ] }} }}
        expect: [200, 201]
    - {{ name: missing, http: {{ url: "/api/v1/no-such-route/{{{{seq}}}}", expect: 404 }} }}
"#,
        port = node.port
    );
    let (run_dir, stderr) = run(dir.path(), &scenario, &[]);
    assert!(
        !stderr.contains("ready at"),
        "an external-only stack boots nothing: {stderr}"
    );
    assert!(!run_dir.join("data").exists(), "no service data directory");

    let r = results(&run_dir);
    assert!(r.complete);
    assert_eq!(r.engine.scheduled, 150 + 400);
    let names = [
        "append",
        "read-start",
        "read-latest",
        "tail",
        "commit",
        "enqueue",
        "delayed",
        "work",
        "batch",
        "put-users",
        "put-order",
        "get",
        "health",
        "raw-append",
        "missing",
        "tail.commit",
        "work.ack",
        "batch.giveback",
        "put-order.get",
        "put-order.delete",
    ];
    let total = |name: &str| r.total(name).unwrap_or_else(|| panic!("no `{name}`"));
    for name in names {
        let t = total(name);
        assert!(t.count > 0, "`{name}` never ran");
        assert_eq!(t.errors, 0, "`{name}`: {:?}", t.errors_by_kind);
    }
    // The fill phase's mix leaves the other operations out.
    let fill = r.phase("fill").unwrap();
    for op in &fill.operations {
        if ["read-start", "tail", "work", "get", "missing"].contains(&op.operation.as_str()) {
            assert_eq!(op.count, 0, "{} is not in the fill mix", op.operation);
        }
    }
    // Chains: every put-order was followed by its get and its delete.
    assert_eq!(total("put-order.get").count, total("put-order").count);
    assert_eq!(total("put-order.delete").count, total("put-order").count);

    // The fabric's state agrees with what was counted.
    let latest = node.json("/api/v1/streams/t/cat/events/offsets/latest");
    assert_eq!(
        latest["offset"].as_i64(),
        Some(total("append").count as i64 * 5 - 1),
        "batches of 5"
    );
    let first = node.json("/api/v1/streams/t/cat/events/messages?offset=0&max_messages=1");
    let payload = first["messages"][0]["payload"].as_str().unwrap();
    let event: serde_json::Value =
        serde_json::from_slice(&fabric_wire::decode_payload(payload).unwrap()).unwrap();
    assert!(event["id"].is_u64(), "{event}");
    assert!(event["user"].as_str().unwrap().starts_with("u-"), "{event}");
    for group in ["tailers", "ops"] {
        let g = node.json(&format!(
            "/api/v1/streams/t/cat/events/consumer-groups/{group}/offsets"
        ));
        let committed = g["offset"].as_i64().unwrap();
        assert!(
            (0..=latest["offset"].as_i64().unwrap()).contains(&committed),
            "{group}: {g}"
        );
    }
    let raw = node.json("/api/v1/streams/t/cat/raw/offsets/latest");
    assert_eq!(
        raw["offset"].as_i64(),
        Some(total("raw-append").count as i64 - 1)
    );

    let stats = node.json("/api/v1/queues/t/cat/jobs/stats");
    assert_eq!(
        stats["completed"].as_u64(),
        Some(total("work.ack").count),
        "every ack completed one job: {stats}"
    );
    let later = node.json("/api/v1/queues/t/cat/later/stats");
    assert_eq!(later["completed"].as_u64(), Some(0), "{later}");

    let keys = node.json("/api/v1/kv/t/cat/kv/keys?prefix=user-");
    let users = keys["keys"].as_array().unwrap().len() as u64;
    assert_eq!(users, total("put-users").count.min(20), "{keys}");
    let orders = node.json("/api/v1/kv/t/cat/kv/keys?prefix=order-");
    assert_eq!(
        orders["keys"].as_array().unwrap().len(),
        0,
        "every order key was deleted by its chain: {orders}"
    );
    let user = node.json("/api/v1/kv/t/cat/kv/keys/user-0");
    let value: serde_json::Value = serde_json::from_slice(
        &fabric_wire::decode_payload(user["value"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(value["key"], "user-0");
    assert!(value["n"].is_u64());
}

/// Steps, spikes and per-phase mixes on a booted fabric: each phase starts
/// exactly the operations its rate integral asks for, in its own mix.
#[test]
fn phase_shapes_and_mixes_drive_the_planned_counts() {
    fabric_node();
    let dir = tempfile::tempdir().unwrap();
    let scenario = r#"
name: shapes
seed: 4
stack:
  services:
    fabric: { kind: fabric }
workload:
  phases:
    - { name: stairs, duration: 2s, rate: { from: 50/s, to: 150/s, steps: 2 }, mix: { put: 1 } }
    - { name: spiky, duration: 2s, rate: { base: 20/s, burst: 200/s, every: 1s, for: 200ms }, mix: { get: 1, health: 1 } }
  operations:
    - { name: put, fabric.kv.put: { store: t/shape/kv, key: { prefix: k, count: 10, distribution: uniform } } }
    - { name: get, fabric.kv.get: { store: t/shape/kv, key: { prefix: k, count: 10, distribution: uniform } } }
    - { name: health, http: { url: /health } }
"#;
    let (run_dir, _) = run(dir.path(), scenario, &[]);
    let r = results(&run_dir);
    let count = |phase: &str, op: &str| {
        r.phase(phase)
            .unwrap()
            .operations
            .iter()
            .find(|o| o.operation == op)
            .map_or(0, |o| o.count)
    };
    // 1 s at 50/s then 1 s at 150/s.
    assert_eq!(count("stairs", "put"), 200);
    assert_eq!(count("stairs", "get") + count("stairs", "health"), 0);
    // Two periods of 0.8 s at 20/s and 0.2 s at 200/s.
    assert_eq!(
        count("spiky", "get") + count("spiky", "health"),
        2 * (16 + 40)
    );
    assert_eq!(count("spiky", "put"), 0);
    assert!(count("spiky", "get") > 0 && count("spiky", "health") > 0);
    // Every get found a key: the stairs wrote all 10 of them (200 uniform draws).
    let get = r.total("get").unwrap();
    assert_eq!(get.errors, 0, "{:?}", get.errors_by_kind);
}

/// `${ENV}` interpolation and `--set` of any value, through the CLI.
#[test]
fn env_and_set_reach_any_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env.yaml");
    std::fs::write(
        &path,
        "name: env\nstack:\n  external: { web: \"http://127.0.0.1:${WEB_PORT}\" }\nworkload:\n  phases:\n    - { name: a, duration: 1s, rate: ${RATE:-10/s} }\n  operations:\n    - { name: index, http: { url: /index.html } }\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["validate", file])
        .env_remove("WEB_PORT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{file}:3:38"))
            && err.contains("environment variable `WEB_PORT` is not set")
            && err.contains("${WEB_PORT:-value}"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "validate",
            file,
            "--set",
            "workload.phases.0.rate={ from: 1/s, to: 5/s }",
            "--set",
            "workload.phases.1={ name: b, duration: 2m, rate: { soak: 3/s } }",
            "--set",
            "workload.operations.index.http.expect=[200, 304]",
        ])
        .env("WEB_PORT", "8080")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A value of the wrong shape set from the command line is located there.
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "validate",
            file,
            "--set",
            "workload.phases.0.rate={ from: 1/s, steps: 3 }",
        ])
        .env("WEB_PORT", "8080")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("--set workload.phases.0.rate=") && err.contains("needs `to`"),
        "{err}"
    );
}

/// Operations resolve their service's address per request from a watch
/// channel: when the endpoint changes mid-run (a container restarted on a
/// new port), the next requests go to the new address.
#[test]
fn operations_follow_a_moving_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start(&dir.path().join("a"));
    let b = Node::start(&dir.path().join("b"));
    let text = format!(
        "name: moving\nstack: {{ external: {{ fabric: \"http://127.0.0.1:{}\" }} }}\nworkload:\n  phases: [ {{ name: p, duration: 1s, rate: 1/s }} ]\n  operations:\n    - {{ name: append, fabric.stream.append: {{ stream: t/m/s, payload: 8B }} }}\n",
        a.port
    );
    let plan = loadgen::plan::Plan::new(gauntlet_scenario::load("m.yaml", &text, &[]).unwrap());
    let endpoint = |port| gauntlet_control::Endpoint {
        host: "127.0.0.1".into(),
        port,
    };
    let (tx, rx) = tokio::sync::watch::channel(endpoint(a.port));
    let target = gauntlet_drivers::Target::new(rx, "");
    let targets = |_: &str| target.clone();
    let shared = gauntlet_drivers::Shared::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = gauntlet_engine::Connections::default();
        let op = &plan.operations[0];
        let prepared = gauntlet_drivers::prepare(op, &targets, 1, 0, &shared).unwrap();
        let append = || async {
            let mut chain = gauntlet_drivers::Chain::default();
            prepared.execute(&client, &mut chain).await
        };
        gauntlet_drivers::setup(&client.http, op, &targets)
            .await
            .unwrap();
        for _ in 0..3 {
            assert_eq!(append().await, gauntlet_recorder::Outcome::Ok);
        }
        tx.send(endpoint(b.port)).unwrap();
        gauntlet_drivers::setup(&client.http, op, &targets)
            .await
            .unwrap();
        for _ in 0..2 {
            assert_eq!(append().await, gauntlet_recorder::Outcome::Ok);
        }
    });
    let latest = |n: &Node| n.json("/api/v1/streams/t/m/s/offsets/latest")["offset"].as_i64();
    assert_eq!(latest(&a), Some(2), "three appends before the move");
    assert_eq!(latest(&b), Some(1), "two appends after it");
}
