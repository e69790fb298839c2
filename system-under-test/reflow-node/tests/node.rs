//! End to end: the real `reflow-node` binary on loopback, over HTTP.
//! Behaviour only: every bound is a generous deadline for something that
//! must happen, never a timing assertion.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_reflow-node");

const LINE: &str = r#"
name = "line"
nodes = [
  { id = "src", actor = "source", config = { accepts = "object" } },
  { id = "inc", actor = "map", config = { op = "add", field = "offset", by = 1 } },
  { id = "out", actor = "sink" },
]
connections = [
  { from = "src.output", to = "inc.input" },
  { from = "inc.output", to = "out.input" },
]
"#;

const FAN: &str = r#"
{ "name": "fan",
  "nodes": [
    { "id": "src", "actor": "source" },
    { "id": "fan", "actor": "fanout" },
    { "id": "even", "actor": "filter", "config": { "field": "offset", "modulo": 2 } },
    { "id": "all", "actor": "sink" },
    { "id": "evens", "actor": "sink" }
  ],
  "connections": [
    { "from": "src.output", "to": "fan.input" },
    { "from": "fan.output", "to": "all.input" },
    { "from": "fan.output", "to": "even.input" },
    { "from": "even.output", "to": "evens.input" }
  ] }
"#;

fn command(dir: &Path, graph: (&str, &str), env: &[(&str, &str)]) -> Command {
    let g = dir.join(graph.0);
    std::fs::write(&g, graph.1).unwrap();
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("REFLOW_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", dir)
        .args(["--bind", "127.0.0.1:0", "--graph"])
        .arg(&g)
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

struct Node {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Node {
    fn start(dir: &Path, graph: (&str, &str), env: &[(&str, &str)]) -> Node {
        let mut child = command(dir, graph, env)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("node.log")).unwrap())
            .spawn()
            .expect("spawn reflow-node");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("reflow-node exited before listening")
                .unwrap();
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && let Some(a) = v["http_addr"].as_str()
            {
                break format!("http://{a}");
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Node {
            child,
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("a request never hangs");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    fn term(&mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) },
            0
        );
        for _ in 0..3000 {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("reflow-node did not exit after SIGTERM");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn batch(from: i64, n: i64) -> Value {
    let messages: Vec<Value> = (from..from + n)
        .map(|i| json!({"key": format!("k{}", i % 3), "offset": i}))
        .collect();
    json!({ "messages": messages })
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{line_start}` in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_the_sink_and_the_api_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), ("g.toml", LINE), &[]);
    let (s, v) = node
        .post("/api/v1/inports/src/input?wait=sink", batch(0, 300))
        .await;
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(300)), "{v}");
    let (s, v) = node.post("/api/v1/inports/src/input", batch(300, 30)).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node
        .post("/api/v1/inports/src/input?wait=sink", batch(330, 3))
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, sink) = node.get("/api/v1/sinks/out").await;
    assert_eq!(sink["count"], 333, "{sink}");
    // the map added 1 to every offset; the last offset per key is kept
    assert_eq!(sink["last"]["k2"], 333, "{sink}");
    assert_eq!(sink["last"]["k1"], 333 - 1 + 1 - 1, "{sink}");
    let (_, g) = node.get("/api/v1/graph").await;
    assert_eq!(g["nodes"].as_array().unwrap().len(), 3, "{g}");
    assert_eq!(g["in_flight"], 0, "{g}");
    let (s, h) = node.get("/health").await;
    assert_eq!((s, h["status"].as_str()), (200, Some("healthy")), "{h}");
    assert!(
        h["memory_usage"].as_u64().unwrap() > 0 && h["actors"] == 3,
        "{h}"
    );
    assert_eq!(node.get("/ready").await.0, 200);
    let m = node.metrics().await;
    assert_eq!(
        metric(
            &m,
            "reflow_messages_processed_total{node=\"out\",actor=\"sink\"}"
        ),
        333.0
    );
    assert_eq!(
        metric(&m, "reflow_messages_accepted_total{node=\"src\"}"),
        333.0
    );
    assert_eq!(metric(&m, "reflow_actor_failures_total{node=\"inc\"}"), 0.0);
    assert!(
        m.contains("reflow_message_processing_seconds_bucket{node=\"inc\""),
        "{m}"
    );
    assert!(
        m.contains("reflow_inport_blocked_seconds_total{node=\"src\"}"),
        "{m}"
    );
    // the runtime's event channel is drained (and counted)
    assert!(
        metric(
            &m,
            "reflow_network_events_total{event=\"message_received\"}"
        ) >= 333.0,
        "{m}"
    );
    assert!(node.term().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_copies_reach_every_sink_and_filters_drop() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), ("g.json", FAN), &[]);
    let (s, v) = node
        .post("/api/v1/inports/src/input?wait=sink", batch(0, 100))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(node.get("/api/v1/sinks/all").await.1["count"], 100);
    assert_eq!(node.get("/api/v1/sinks/evens").await.1["count"], 50);
    let m = node.metrics().await;
    assert_eq!(
        metric(&m, "reflow_messages_dropped_total{node=\"even\"}"),
        50.0
    );
    assert_eq!(metric(&m, "reflow_messages_in_flight"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_4xx_and_accept_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), ("g.toml", LINE), &[]);
    let (s, v) = node.post("/api/v1/inports/nope/input", batch(0, 1)).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("unknown_node")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("src"), "{v}");
    let (s, v) = node.post("/api/v1/inports/src/in", batch(0, 1)).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("unknown_port")), "{v}");
    let (s, v) = node.post("/api/v1/inports/inc/input", batch(0, 1)).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("not_an_inport")), "{v}");
    // the map reads an integer `offset`: a message without one does not fit
    let (s, v) = node
        .post(
            "/api/v1/inports/src/input",
            json!({"messages": [{"key": "a", "offset": 1}, {"key": "b"}]}),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (422, Some("message_does_not_fit")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("message 1"), "{v}");
    let (s, v) = node
        .post("/api/v1/inports/src/input", json!({"messages": [7]}))
        .await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = node
        .post("/api/v1/inports/src/input", json!({"msgs": []}))
        .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("bad_request")), "{v}");
    let (s, v) = node
        .post("/api/v1/inports/src/input?wait=forever", batch(0, 1))
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = node.get("/api/v1/sinks/inc").await;
    assert_eq!((s, v["code"].as_str()), (400, Some("not_a_sink")), "{v}");
    // nothing of a refused batch was accepted
    assert_eq!(node.get("/api/v1/sinks/out").await.1["count"], 0);
    let m = node.metrics().await;
    assert_eq!(
        metric(&m, "reflow_messages_accepted_total{node=\"src\"}"),
        0.0
    );
}

fn exit_2(dir: &Path, graph: (&str, &str), env: &[(&str, &str)], needle: &str) {
    let out = command(dir, graph, env).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(needle), "`{needle}` not in: {err}");
}

#[test]
fn bad_graphs_and_configuration_exit_2_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cycle = LINE.replace(
        "{ from = \"inc.output\", to = \"out.input\" },",
        "{ from = \"inc.output\", to = \"out.input\" },\n  { from = \"inc.output\", to = \"inc.input\" },",
    );
    exit_2(d, ("g.toml", &cycle), &[], "cycle inc -> inc");
    exit_2(
        d,
        ("g.toml", &LINE.replace("\"map\"", "\"mapper\"")),
        &[],
        "no actor `mapper`",
    );
    exit_2(
        d,
        (
            "g.toml",
            &LINE.replace("to = \"out.input\"", "to = \"gone.input\""),
        ),
        &[],
        "no node `gone`",
    );
    exit_2(d, ("g.yaml", LINE), &[], "unknown format");
    exit_2(
        d,
        ("g.toml", LINE),
        &[("REFLOW_RUNTIME__THREADS", "4")],
        "REFLOW_RUNTIME__THREADS",
    );
    exit_2(
        d,
        ("g.toml", LINE),
        &[("REFLOW_LOGGING__LEVEL", "loud")],
        "logging.level",
    );
    exit_2(
        d,
        ("g.toml", LINE),
        &[("REFLOW_TEST__PANIC_ACTOR", "ghost")],
        "ghost",
    );
    let cfg: PathBuf = d.join("c.toml");
    std::fs::write(&cfg, "[runtime]\nthread_pool_size = \"many\"\n").unwrap();
    exit_2(
        d,
        ("g.toml", LINE),
        &[("REFLOW_CONFIG", cfg.to_str().unwrap())],
        "thread_pool_size",
    );
    let ok = command(d, ("g.toml", LINE), &[])
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    exit_2(
        d,
        ("g.toml", LINE),
        &[("REFLOW_GRAPH__INLINE", "{\"nodes\": []}")],
        "graph.inline: no nodes",
    );
    // without --graph: a built-in graph by name
    let builtin = |name: &str| {
        Command::new(BIN)
            .env("HOME", d)
            .env("REFLOW_GRAPH__FILE", name)
            .arg("--check")
            .output()
            .unwrap()
    };
    assert!(builtin("builtin:fanout").status.success());
    let out = builtin("builtin:nope");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("builtin:pipeline"));
}

/// The upstream's defect: a panic kills the actor's task silently and
/// `send_to_actor` then blocks forever once its bounded(64) inport is full.
/// The node answers `unavailable` within its bound, names the actor, and
/// still shuts down on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_actor_is_named_and_no_request_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(
        dir.path(),
        ("g.toml", LINE),
        &[
            ("REFLOW_TEST__PANIC_ACTOR", "inc"),
            ("REFLOW_TEST__AFTER_MESSAGES", "20"),
            ("REFLOW_LIMITS__ACCEPT_TIMEOUT_MS", "1000"),
            ("REFLOW_LIMITS__SINK_TIMEOUT_MS", "1000"),
        ],
    );
    let (s, v) = node
        .post("/api/v1/inports/src/input?wait=sink", batch(0, 20))
        .await;
    assert_eq!(s, 200, "{v}");
    let mut refused = None;
    for round in 0..50 {
        let (s, v) = node
            .post("/api/v1/inports/src/input", batch(20 + round * 100, 100))
            .await;
        if s != 200 {
            refused = Some((s, v));
            break;
        }
    }
    let (s, v) = refused.expect("the stalled graph stops accepting");
    assert_eq!((s, v["code"].as_str()), (503, Some("unavailable")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("`inc`"), "{v}");
    let (s, h) = node.get("/health").await;
    assert_eq!((s, h["status"].as_str()), (503, Some("unhealthy")), "{h}");
    assert_eq!(h["stall"]["actor"], "inc", "{h}");
    assert!(h["stall"]["stuck"].as_u64().unwrap() > 0, "{h}");
    let m = node.metrics().await;
    assert_eq!(metric(&m, "reflow_actor_failures_total{node=\"inc\"}"), 1.0);
    assert!(metric(&m, "reflow_inport_timeouts_total{node=\"src\"}") >= 1.0);
    assert_eq!(metric(&m, "reflow_healthy"), 0.0);
    assert_eq!(node.get("/api/v1/sinks/out").await.1["count"], 20);
    let status = node.term();
    assert!(status.success(), "{status:?}");
}

/// The runtime's outports are unbounded: behind a slow actor a source
/// keeps accepting. The node bounds what is in flight and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_actor_bounds_what_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let slow = LINE.replace("by = 1 }", "by = 1, work_us = 200000 }");
    let node = Node::start(
        dir.path(),
        ("g.toml", &slow),
        &[
            ("REFLOW_LIMITS__MAX_IN_FLIGHT", "1000"),
            ("REFLOW_LIMITS__MAX_BATCH", "1000"),
            ("REFLOW_LIMITS__ACCEPT_TIMEOUT_MS", "300"),
        ],
    );
    let (s, v) = node.post("/api/v1/inports/src/input", batch(0, 1000)).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node
        .post("/api/v1/inports/src/input", batch(1000, 10))
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (503, Some("unavailable")),
        "{v} {}",
        node.get("/api/v1/graph").await.1
    );
    assert!(
        v["message"].as_str().unwrap().contains("max_in_flight"),
        "{v} {}",
        node.get("/api/v1/graph").await.1
    );
    let m = node.metrics().await;
    assert_eq!(
        metric(&m, "reflow_messages_accepted_total{node=\"src\"}"),
        1000.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_actor_is_found_by_the_fault_endpoint_and_wait_sink_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        dir.path(),
        ("g.toml", LINE),
        &[
            ("REFLOW_TEST__FAULT_ENDPOINT", "true"),
            ("REFLOW_LIMITS__SINK_TIMEOUT_MS", "500"),
        ],
    );
    let (s, v) = node
        .post(
            "/api/v1/test/fault",
            json!({"actor": "out", "mode": "stall", "after": 5}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node
        .post("/api/v1/inports/src/input?wait=sink", batch(0, 10))
        .await;
    assert_eq!((s, v["code"].as_str()), (503, Some("unavailable")), "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("of 10 accepted messages did not reach a sink") && msg.contains("`out`"),
        "{v}"
    );
    assert_eq!(node.get("/api/v1/sinks/out").await.1["count"], 5);
    let (s, v) = node
        .post("/api/v1/test/fault", json!({"actor": "x", "mode": "panic"}))
        .await;
    assert_eq!(s, 404, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_to_the_sinks_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), ("g.toml", LINE), &[]);
    let (s, _) = node.post("/api/v1/inports/src/input", batch(0, 2000)).await;
    assert_eq!(s, 200);
    let base = node.base.clone();
    let status = node.term();
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(dir.path().join("node.log")).unwrap();
    assert!(log.contains("shutdown: drained"), "{log}");
    assert!(reqwest::get(format!("{base}/ready")).await.is_err());
}
