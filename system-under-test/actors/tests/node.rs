//! End to end: the real `actor-node` binary on loopback, driven over HTTP.
//! Behaviour only (no timing assertions): every bound is a generous
//! deadline for something that must happen.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn a_pipeline_answers_after_the_sink_handled_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &[], &[]);
    n.ready().await;
    assert_eq!(n.put("head", &spec("forward", "to = \"mid\"")).await.0, 201);
    assert_eq!(n.put("mid", &spec("forward", "to = \"end\"")).await.0, 201);
    assert_eq!(n.put("end", &spec("counter", "")).await.0, 201);
    // Identical spec again: 200; a different one: 409.
    assert_eq!(n.put("end", &spec("counter", "")).await.0, 200);
    let (s, v) = n.put("end", &spec("sink", "")).await;
    assert_eq!((s, err_code(&v)), (409, "invalid_request"));
    let keys: Vec<&str> = (0..500)
        .map(|i| if i % 2 == 0 { "a" } else { "b" })
        .collect();
    let (s, v) = n.send("head", &keys).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["handled"], 500);
    let (_, st) = n.get("/api/v1/components/end").await;
    assert_eq!(st["handled"], 500);
    assert_eq!(st["keys"]["a"]["count"], 250);
    assert_eq!(st["keys"]["b"]["sum"], 250.0);
    let (_, st) = n.get("/api/v1/components/mid").await;
    assert_eq!(
        (st["state"].as_str(), st["handled"].as_u64()),
        (Some("running"), Some(500))
    );
    // Octet-stream batches.
    let mut body = Vec::new();
    for p in [&b"1"[..], b"2", b"3"] {
        body.extend_from_slice(&(p.len() as u32).to_be_bytes());
        body.extend_from_slice(p);
    }
    let r = n
        .http
        .post(n.url("/api/v1/components/head/messages"))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, st) = n.get("/api/v1/components/end").await;
    assert_eq!(st["handled"], 503);
    assert_eq!(st["keys"][""]["sum"], 6.0);
    // Registry lookup, request-response, list.
    let (s, v) = n.get("/api/v1/registry/mid").await;
    assert_eq!(
        (s, v["node"].as_str(), v["state"].as_str()),
        (200, Some("node-1"), Some("running"))
    );
    assert_eq!(n.get("/api/v1/registry/nope").await.0, 404);
    assert_eq!(n.put("echo", &spec("echo", "")).await.0, 201);
    let (s, v) = n
        .post(
            "/api/v1/components/echo/request",
            json!({"payload": {"x": [1, 2]}}),
        )
        .await;
    assert_eq!((s, &v["reply"]), (200, &json!({"x": [1, 2]})));
    let (_, v) = n.get("/api/v1/components?prefix=e").await;
    let names: Vec<&str> = v["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "end"]);
    // A stage whose target does not exist fails the messages, never drops them.
    assert_eq!(
        n.put("lost", &spec("forward", "to = \"ghost\"")).await.0,
        201
    );
    let (s, v) = n.send("lost", &["k"]).await;
    assert_eq!((s, err_code(&v)), (404, "unknown_component"), "{v}");
    assert_eq!(v["failed"], 1);
    let (s, v) = n.send("ghost", &["k"]).await;
    assert_eq!((s, err_code(&v)), (404, "unknown_component"));
    // Stop: gone from the registry.
    let r = n
        .http
        .delete(n.url("/api/v1/components/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(n.get("/api/v1/components/echo").await.0, 404);
    let r = n
        .http
        .delete(n.url("/api/v1/components/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn topics_fan_out_to_every_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &[], &[]);
    n.ready().await;
    assert_eq!(n.put("news", &spec("topic", "")).await.0, 201);
    let (s, v) = n
        .post(
            "/api/v1/components:spawn",
            json!({"template": {"behavior": {"kind": "counter"}}, "count": 20, "prefix": "sub-"}),
        )
        .await;
    assert_eq!((s, v["spawned"].as_u64()), (201, Some(20)), "{v}");
    for i in 0..20 {
        let (s, _) = n
            .post(
                "/api/v1/topics/news/subscribers",
                json!({"component": format!("sub-{i}")}),
            )
            .await;
        assert_eq!(s, 201);
    }
    assert_eq!(
        n.post(
            "/api/v1/topics/news/subscribers",
            json!({"component": "sub-0"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        n.post(
            "/api/v1/topics/news/subscribers",
            json!({"component": "ghost"})
        )
        .await
        .0,
        404
    );
    let (s, v) = n
        .post(
            "/api/v1/topics/news/messages",
            json!({"messages": [{"key": "k", "payload": 2}, {"key": "k", "payload": 3}]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["handled"].as_u64(), v["deliveries"].as_u64()),
        (Some(2), Some(40))
    );
    for i in 0..20 {
        let (_, st) = n.get(&format!("/api/v1/components/sub-{i}")).await;
        assert_eq!(st["keys"]["k"]["sum"], 5.0);
    }
    // Publishing to something that is not a topic is refused.
    assert_eq!(
        n.post("/api/v1/topics/sub-1/messages", json!({"messages": []}))
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn bad_input_is_a_4xx_json_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(
        dir.path(),
        &["--max-batch", "10", "--max-components", "3"],
        &[],
    );
    n.ready().await;
    let cases: Vec<(String, String, &str)> = vec![
        ("a".into(), "[behavior\nkind=".into(), "invalid_request"),
        ("a".into(), spec("wasm", ""), "invalid_request"),
        ("x".repeat(256), spec("echo", ""), "invalid_request"),
        (".hidden".into(), spec("echo", ""), "invalid_request"),
        (
            "a".into(),
            format!(
                "[security]\ncapabilities = [\"file:read:/\"]\n{}",
                spec("echo", "")
            ),
            "invalid_request",
        ),
        (
            "a".into(),
            format!("[runtime]\nmessage_queue_size = 0\n{}", spec("echo", "")),
            "invalid_request",
        ),
    ];
    for (name, body, code) in cases {
        let (s, v) = n.put(&name, &body).await;
        assert!((400..500).contains(&s), "{name}: {s} {v}");
        assert_eq!(err_code(&v), code, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Path traversal through an encoded slash never reaches the data dir.
    let r = n
        .http
        .put(n.url("/api/v1/components/..%2Fetc"))
        .header("content-type", "text/toml")
        .body(spec("echo", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (s, v) = n.get("/api/v1/components").await;
    assert_eq!(
        (s, v["components"].as_array().unwrap().len()),
        (200, 0),
        "nothing was created"
    );
    // Malformed JSON batch, batch over the limit, unknown component.
    assert_eq!(n.put("c", &spec("counter", "")).await.0, 201);
    let r = n
        .http
        .post(n.url("/api/v1/components/c/messages"))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (s, v) = n.send("c", &["k"; 11]).await;
    assert_eq!((s, err_code(&v)), (400, "invalid_request"));
    let (_, st) = n.get("/api/v1/components/c").await;
    assert_eq!(st["handled"], 0, "refused batches changed nothing");
    // Capacity.
    assert_eq!(n.put("d", &spec("sink", "")).await.0, 201);
    assert_eq!(n.put("e", &spec("sink", "")).await.0, 201);
    let (s, v) = n.put("f", &spec("sink", "")).await;
    assert_eq!((s, err_code(&v)), (429, "capacity"));
    // Unknown endpoint and the fault endpoint's validation.
    let (s, v) = n.get("/api/v1/nope").await;
    assert_eq!((s, err_code(&v)), (404, "not_found"));
    assert_eq!(
        n.post("/api/v1/components/c/faults", json!({})).await.0,
        400
    );
}

#[tokio::test]
async fn a_full_mailbox_refuses_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &[], &[]);
    n.ready().await;
    assert_eq!(
        n.put(
            "slow",
            &format!("[runtime]\nmessage_queue_size = 10\n{}", spec("sink", ""))
        )
        .await
        .0,
        201
    );
    // Stall the sink, then fill its mailbox with a batch that waits.
    assert_eq!(
        n.post("/api/v1/components/slow/faults", json!({"stall_ms": 3000}))
            .await
            .0,
        200
    );
    let first = n
        .post(
            "/api/v1/components/slow/messages?wait=queued",
            json!({"messages": [{"payload": 1}]}),
        )
        .await;
    assert_eq!(first.0, 200, "the first batch starts the stall");
    let r = n
        .post(
            "/api/v1/components/slow/messages?wait=queued",
            json!({"messages": (0..8).map(|_| json!({"payload": 1})).collect::<Vec<_>>()}),
        )
        .await;
    assert_eq!(r.0, 200);
    let (s, v) = n.send("slow", &["a", "b", "c"]).await;
    assert_eq!((s, err_code(&v)), (429, "mailbox_full"), "{v}");
    let (_, st) = n.get("/api/v1/components/slow").await;
    assert!(st["mailbox_depth"].as_u64().unwrap() <= 10);
    // After the stall everything queued is handled; the refused batch never was.
    for _ in 0..400 {
        let (_, st) = n.get("/api/v1/components/slow").await;
        if st["handled"] == 9 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (_, st) = n.get("/api/v1/components/slow").await;
    assert_eq!(st["handled"], 9);
    let metrics = n
        .http
        .get(n.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("messages_dropped_total{reason=\"mailbox_full\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_panicking_handler_is_restarted_and_its_message_answered_failed() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let n = Node::start(
        dir.path().join("data").as_path(),
        &["--audit-log", audit.to_str().unwrap()],
        &[],
    );
    n.ready().await;
    let sup = "[supervision]\nrestart = \"permanent\"\nmax_restarts = 3\nwithin_seconds = 60\n";
    assert_eq!(
        n.put("c", &format!("{sup}{}", spec("counter", ""))).await.0,
        201
    );
    assert_eq!(
        n.post("/api/v1/components/c/faults", json!({"panic_after": 5}))
            .await
            .0,
        200
    );
    let (s, v) = n.send("c", &["k"; 10]).await;
    assert_eq!((s, err_code(&v)), (500, "handler_failed"), "{v}");
    assert_eq!(
        (v["handled"].as_u64(), v["failed"].as_u64()),
        (Some(9), Some(1))
    );
    let (_, st) = n.get("/api/v1/components/c").await;
    assert_eq!(
        (
            st["state"].as_str(),
            st["restarts"].as_u64(),
            st["handled"].as_u64()
        ),
        (Some("running"), Some(1), Some(9))
    );
    assert_eq!(
        n.send("c", &["k"; 4]).await.0,
        200,
        "restarted: it handles again"
    );
    // A handler that panics on every message ends `failed` after its budget,
    // answering each message; the node keeps serving.
    assert_eq!(
        n.post(
            "/api/v1/components/c/faults",
            json!({"panic_after": 0, "repeat": true})
        )
        .await
        .0,
        200
    );
    let (s, v) = n.send("c", &["k"; 10]).await;
    assert_eq!((s, err_code(&v)), (500, "handler_failed"), "{v}");
    assert_eq!(v["failed"], 10);
    let (_, st) = n.get("/api/v1/components/c").await;
    assert_eq!(
        (st["state"].as_str(), st["restarts"].as_u64()),
        (Some("failed"), Some(3))
    );
    let (s, v) = n.send("c", &["k"]).await;
    assert_eq!((s, err_code(&v)), (503, "unavailable"));
    let (_, h) = n.get("/health").await;
    assert_eq!(h["status"], "degraded");
    assert_eq!(n.put("other", &spec("echo", "")).await.0, 201);
    // Request-response to a panicking echo: answered failed, never hung.
    assert_eq!(
        n.post("/api/v1/components/other/faults", json!({"panic_after": 0}))
            .await
            .0,
        200
    );
    let (s, v) = n
        .post("/api/v1/components/other/request", json!({"payload": 1}))
        .await;
    assert_eq!((s, err_code(&v)), (500, "handler_failed"));
    let (s, _) = n
        .post("/api/v1/components/other/request", json!({"payload": 1}))
        .await;
    assert_eq!(s, 200);
    let lines = std::fs::read_to_string(&audit).unwrap();
    assert!(lines.contains("\"event\":\"restarted\""), "{lines}");
    assert!(lines.contains("\"event\":\"failed\""), "{lines}");
}

#[tokio::test]
async fn capabilities_guard_effects() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let audit = dir.path().join("audit.log");
    let n = Node::start(
        dir.path().join("data").as_path(),
        &[],
        &[
            ("AIRSSYS_ENABLE_AUDIT_LOG", "true"),
            ("AIRSSYS_AUDIT_LOG_PATH", audit.to_str().unwrap()),
        ],
    );
    n.ready().await;
    let target = out.join("w.log");
    let allowed = format!(
        "[security]\ncapabilities = [\"file:write:{}\"]\n{}",
        out.display(),
        spec("file_writer", &format!("path = \"{}\"", target.display()))
    );
    assert_eq!(n.put("w", &allowed).await.0, 201);
    assert_eq!(n.send("w", &["a", "b"]).await.0, 200);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "1\n1\n");
    let elsewhere = dir.path().join("elsewhere.log");
    let denied = format!(
        "[security]\ncapabilities = [\"file:write:{}\"]\n{}",
        out.display(),
        spec(
            "file_writer",
            &format!("path = \"{}\"", elsewhere.display())
        )
    );
    assert_eq!(n.put("sneaky", &denied).await.0, 201);
    let (s, v) = n.send("sneaky", &["a"]).await;
    assert_eq!((s, err_code(&v)), (403, "capability_denied"), "{v}");
    assert!(!elsewhere.exists(), "a denied effect is never performed");
    let caller = spec("caller", "address = \"127.0.0.1:9\"");
    assert_eq!(n.put("call", &caller).await.0, 201);
    assert_eq!(
        err_code(&n.send("call", &["a"]).await.1),
        "capability_denied"
    );
    let lines = std::fs::read_to_string(&audit).unwrap();
    assert!(lines.contains("capability_granted"), "{lines}");
    assert_eq!(lines.matches("capability_denied").count(), 2, "{lines}");
}

#[tokio::test]
async fn kill_9_loses_no_component_and_no_acknowledged_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = Node::start(dir.path(), &[], &[]);
    n.ready().await;
    head_to_counter(&n).await;
    assert_eq!(n.put("t", &spec("topic", "")).await.0, 201);
    assert_eq!(
        n.post(
            "/api/v1/topics/t/subscribers",
            json!({"component": "count"})
        )
        .await
        .0,
        201
    );
    let mut acked = 0;
    for _ in 0..20 {
        let (s, v) = n.send("head", &["x"; 50]).await;
        assert_eq!(s, 200, "{v}");
        acked += 50;
    }
    // Batches in flight while the node dies may or may not count; the
    // acknowledged ones must.
    let base = n.base.clone();
    let flood = tokio::spawn(async move {
        let c = reqwest::Client::new();
        let body = json!({"messages": (0..50).map(|_| json!({"key": "x", "payload": 1})).collect::<Vec<_>>()});
        let mut ok = 0;
        for _ in 0..200 {
            match c
                .post(format!("{base}/api/v1/components/head/messages"))
                .json(&body)
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => ok += 50,
                _ => break,
            }
        }
        ok
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    n.kill9();
    acked += flood.await.unwrap();
    let n = Node::start(dir.path(), &[], &[]);
    n.ready().await;
    let (_, st) = n.get("/api/v1/components/count").await;
    let counted = st["handled"].as_u64().unwrap();
    assert!(counted >= acked, "counted {counted} < acknowledged {acked}");
    assert_eq!(st["keys"]["x"]["count"].as_u64().unwrap(), counted);
    let (_, v) = n.get("/api/v1/components").await;
    assert_eq!(v["components"].as_array().unwrap().len(), 3);
    let (_, st) = n.get("/api/v1/components/t").await;
    assert_eq!(st["subscribers"], json!(["count"]));
    assert_eq!(n.send("head", &["x"]).await.0, 200);
}

#[tokio::test]
async fn sigterm_drains_stops_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = Node::start(dir.path(), &[], &[]);
    n.ready().await;
    head_to_counter(&n).await;
    assert_eq!(
        n.post("/api/v1/components/count/faults", json!({"stall_ms": 500}))
            .await
            .0,
        200
    );
    let (s, _) = n
        .post(
            "/api/v1/components/head/messages?wait=queued",
            json!({"messages": [{"key": "k", "payload": 1}, {"key": "k", "payload": 1}]}),
        )
        .await;
    assert_eq!(s, 200);
    n.signal(libc::SIGTERM);
    let status = n.wait_exit();
    assert_eq!(status.code(), Some(0), "log: {:?}", n.log.lock().unwrap());
    let log = n.log.lock().unwrap().join("\n");
    assert!(log.contains("graceful shutdown complete"), "{log}");
    let last = log
        .lines()
        .rev()
        .find(|l| l.contains("graceful shutdown complete"))
        .unwrap();
    let v: Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["queued"], 0, "everything queued was drained: {last}");
    drop(n);
    let n = Node::start(dir.path(), &[], &[]);
    n.ready().await;
    let (_, st) = n.get("/api/v1/components/count").await;
    assert_eq!(
        st["handled"], 2,
        "queued messages were handled and checkpointed before exit"
    );
}

#[test]
fn invalid_configuration_exits_2_and_help_names_everything() {
    for (args, env) in [
        (vec!["--http-port", "99999"], vec![]),
        (vec!["--max-components", "0"], vec![]),
        (vec![], vec![("AIRSSYS_MAX_MEMORY_GB", "lots")]),
        (vec!["--node-name", "a/b"], vec![]),
        (vec![], vec![("AIRSSYS_ENABLE_AUDIT_LOG", "true")]),
    ] {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("AIRSSYS_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd.args(&args).envs(env.clone()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}");
        assert!(!out.stderr.is_empty());
    }
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for name in [
        "AIRSSYS_BIND",
        "AIRSSYS_HEALTH_PORT",
        "AIRSSYS_METRICS_PORT",
        "AIRSSYS_LOG_LEVEL",
        "AIRSSYS_MAX_COMPONENTS",
        "AIRSSYS_MAX_MEMORY_GB",
        "AIRSSYS_MAX_CPU_PERCENT",
        "AIRSSYS_AUDIT_LOG_PATH",
        "AIRSSYS_COMPONENTS_DIR",
        "AIRSSYS_DATA_DIR",
        "AIRSSYS_WORKER_THREADS",
        "AIRSSYS_CLUSTER_PORT",
        "AIRSSYS_CLUSTER_PEERS",
    ] {
        assert!(text.contains(name), "--help lacks {name}");
    }
}

#[tokio::test]
async fn boot_components_metrics_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let comps = dir.path().join("components");
    std::fs::create_dir_all(&comps).unwrap();
    std::fs::write(comps.join("ingest.toml"), spec("forward", "to = \"store\"")).unwrap();
    std::fs::write(comps.join("store.toml"), spec("counter", "")).unwrap();
    let n = Node::start(
        dir.path().join("data").as_path(),
        &["--components-dir", comps.to_str().unwrap()],
        &[],
    );
    n.ready().await;
    assert_eq!(n.send("ingest", &["k"; 7]).await.0, 200);
    let (_, h) = n.get("/health").await;
    assert_eq!(
        (h["status"].as_str(), h["components_active"].as_u64()),
        (Some("healthy"), Some(2))
    );
    assert!(h["uptime_seconds"].is_u64());
    let m = n
        .http
        .get(n.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "component_spawn_duration_seconds_count 2",
        "components_active_total 2",
        "component_lifecycle_events_total{event=\"spawned\"} 2",
        "messages_sent_total 7",
        "message_latency_seconds_count 7",
        "registry_lookup_duration_seconds",
        "component_restarts_total 0",
        "mailbox_depth{component=",
        "messages_dropped_total{reason=\"mailbox_full\"} 0",
    ] {
        assert!(m.contains(name), "metrics lack {name}:\n{m}");
    }
}

#[tokio::test]
async fn forwarding_loops_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &[], &[]);
    n.ready().await;
    // Itself, named through this node.
    let (s, v) = n.put("a", &spec("forward", "to = \"node-1/a\"")).await;
    assert_eq!((s, err_code(&v)), (400, "invalid_request"), "{v}");
    // A → B → A.
    assert_eq!(n.put("a", &spec("forward", "to = \"b\"")).await.0, 201);
    let (s, v) = n.put("b", &spec("forward", "to = \"a\"")).await;
    assert_eq!((s, err_code(&v)), (400, "invalid_request"), "{v}");
    // A topic subscribed to itself, or to a forward leading back to it.
    assert_eq!(n.put("t", &spec("topic", "")).await.0, 201);
    assert_eq!(
        n.post("/api/v1/topics/t/subscribers", json!({"component": "t"}))
            .await
            .0,
        400
    );
    assert_eq!(n.put("back", &spec("forward", "to = \"t\"")).await.0, 201);
    let (s, v) = n
        .post("/api/v1/topics/t/subscribers", json!({"component": "back"}))
        .await;
    assert_eq!((s, err_code(&v)), (400, "invalid_request"), "{v}");
    assert_eq!(
        n.get("/api/v1/components/b").await.0,
        404,
        "nothing was created"
    );
}

#[tokio::test]
async fn counter_sums_stay_finite_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = Node::start(dir.path(), &[], &[]);
    n.ready().await;
    assert_eq!(n.put("c", &spec("counter", "")).await.0, 201);
    let (s, v) = n
        .post(
            "/api/v1/components/c/messages",
            json!({"messages": [{"key": "k", "payload": 2}]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let r = n
        .http
        .post(n.url("/api/v1/components/c/messages"))
        .header("content-type", "application/json")
        .body(r#"{"messages":[{"key":"k","payload":1e400},{"key":"k","payload":1e308},{"key":"k","payload":1e308}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    n.kill9();
    let n = Node::start(dir.path(), &[], &[]);
    n.ready().await;
    let (_, st) = n.get("/api/v1/components/c").await;
    assert_eq!(st["keys"]["k"]["count"], 4, "{st}");
    assert!(
        st["keys"]["k"]["sum"].as_f64().is_some_and(f64::is_finite),
        "{st}"
    );
}

#[tokio::test]
async fn a_caller_whose_peer_stops_reading_fails_its_messages_and_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    // A peer that accepts and never reads.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _held = std::thread::spawn(move || {
        let conns: Vec<_> = listener.incoming().take(4).collect();
        std::thread::sleep(Duration::from_secs(60));
        drop(conns);
    });
    let n = Node::start(dir.path(), &[], &[]);
    n.ready().await;
    let caller = format!(
        "[security]\ncapabilities = [\"network:outbound:{addr}\"]\n{}",
        spec("caller", &format!("address = \"{addr}\""))
    );
    assert_eq!(n.put("call", &caller).await.0, 201);
    let big = "x".repeat(60_000);
    let messages: Vec<Value> = (0..200).map(|_| json!({"payload": big})).collect();
    let (s, v) = n
        .post(
            "/api/v1/components/call/messages",
            json!({"messages": messages}),
        )
        .await;
    assert_eq!(
        (s, err_code(&v)),
        (503, "unavailable"),
        "a stuck peer fails the batch: {v}"
    );
    // The component is not stuck: it answers the next batch (failed or not).
    let (s, _) = n.send("call", &["k"]).await;
    assert!(s == 200 || s == 503, "{s}");
}
