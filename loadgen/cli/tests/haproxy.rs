//! `kind: haproxy` in process mode (Debian's `haproxy`, seed 004's
//! load-balancer configuration generated per run) in front of two actor
//! nodes: round robin over both, and after one node is killed the health
//! checks take it out and every request goes to the other. Behaviour
//! only; the failover time is printed, never asserted.

mod common;

use std::time::{Duration, Instant};

use common::http;
use gauntlet_control::{Signal, Stack};
use gauntlet_scenario::Scenario;
use loadgen::bins::Locator;
use loadgen::stack::ProcessStack;

fn scenario() -> Scenario {
    let text = "name: haproxy\nstack:\n  services:\n    lb: { kind: haproxy, upstreams: [n1, n2] }\n    n1: { kind: actors, env: { AIRSSYS_NODE_NAME: n1 } }\n    n2: { kind: actors, env: { AIRSSYS_NODE_NAME: n2 } }\nworkload:\n  phases:\n    - { name: steady, duration: 1s, rate: 10/s }\n  operations:\n    - { name: ready, http: { url: /ready, service: lb } }\n";
    common::scenario_from("haproxy.yaml", text)
}

async fn handled(addr: &str) -> u64 {
    let (status, body) = http(addr, "GET", "/api/v1/components/s", "")
        .await
        .expect("the node answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["handled"]
        .as_u64()
        .unwrap()
}

const SEND: &str = "/api/v1/components/s/messages";
const BATCH: &str = r#"{"messages":[{"key":"k","payload":1}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_balances_over_actor_nodes_and_fails_over_when_one_dies() {
    common::actor_node();
    let locator = Locator {
        dir: Some(common::bin_dir()),
        quiet: true,
    };
    let run_dir = tempfile::tempdir().unwrap();
    let stack = ProcessStack::boot(&scenario(), run_dir.path(), &locator, true)
        .await
        .expect("boots");
    assert_eq!(stack.services(), ["n1", "n2", "lb"]);
    let addr = |s: &str| stack.endpoint(s).unwrap().addr();
    let (n1, n2, lb) = (addr("n1"), addr("n2"), addr("lb"));
    let conf = std::fs::read_to_string(run_dir.path().join("data/lb/haproxy.cfg")).unwrap();
    for line in [
        format!("bind {lb}"),
        format!("server node1 {n1} check inter 2s rise 2 fall 3"),
        format!("server node2 {n2} check inter 2s rise 2 fall 3"),
        "balance roundrobin".to_owned(),
        "option httpchk GET /ready".to_owned(),
    ] {
        assert!(conf.contains(&line), "`{line}` missing from:\n{conf}");
    }
    for node in [&n1, &n2] {
        let (status, body) = http(
            node,
            "PUT",
            "/api/v1/components/s",
            r#"{"behavior":{"kind":"sink"}}"#,
        )
        .await
        .expect("spawned");
        assert_eq!(status, 201, "{body}");
    }
    let sends = 20;
    for _ in 0..sends {
        let (status, body) = http(&lb, "POST", SEND, BATCH)
            .await
            .expect("haproxy answers");
        assert_eq!(status, 200, "{body}");
    }
    let (on1, on2) = (handled(&n1).await, handled(&n2).await);
    assert_eq!(on1 + on2, sends, "every message reached one node");
    assert!(on1 > 0 && on2 > 0, "balanced over both: {on1} + {on2}");

    // n2 dies: the health checks (fall 3 × inter 2s) take it out; from then
    // on every request is answered by n1.
    stack.kill("n2", Signal::Kill).await.expect("killed");
    let killed = Instant::now();
    let mut streak = 0;
    let mut failed = 0;
    let deadline = killed + Duration::from_secs(60);
    while streak < 20 {
        assert!(
            Instant::now() < deadline,
            "haproxy kept sending to the dead node"
        );
        match http(&lb, "POST", SEND, BATCH).await {
            Some((200, _)) => streak += 1,
            _ => {
                streak = 0;
                failed += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    eprintln!(
        "haproxy failover: 20 answers in a row {:.1} s after the kill ({failed} requests failed meanwhile)",
        killed.elapsed().as_secs_f64()
    );
    let reports = stack.shutdown().await;
    assert!(
        reports
            .iter()
            .filter(|r| r.service != "n2")
            .all(|r| r.graceful),
        "{reports:?}"
    );
}
