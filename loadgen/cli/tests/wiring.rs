//! Services that name each other, in process mode: references
//! (`{addr:NAME}`, `{host:NAME}`, `{port:NAME}`) resolved to the other
//! service's address and the boot order they imply; nginx in front of two
//! fabric nodes, balancing over both; a link fault between two services
//! (`lb->f1`) that delays and cuts that link only.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http;
use gauntlet_control::Stack;
use gauntlet_faults::FaultScheduler;
use gauntlet_scenario::Scenario;
use loadgen::bins::Locator;
use loadgen::stack::ProcessStack;

fn locator() -> Locator {
    common::fabric_node();
    Locator {
        dir: Some(common::bin_dir()),
        quiet: true,
    }
}

fn scenario(services: &str, faults: &str) -> Scenario {
    let text = format!(
        "name: wiring\nstack:\n  services:\n{services}workload:\n  phases:\n    - {{ name: steady, duration: 1s, rate: 10/s }}\n  operations:\n    - {{ name: ready, http: {{ url: /ready, service: f1 }} }}\n{faults}"
    );
    common::scenario_from("wiring.yaml", &text)
}

fn addr(stack: &dyn Stack, service: &str) -> String {
    stack.endpoint(service).unwrap().addr()
}

/// NUL-separated `/proc/<pid>/<file>` as text with spaces.
fn proc_text(pid: u32, file: &str) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default())
        .replace('\0', " ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_resolve_to_the_other_service_and_order_the_boot() {
    let fabric = common::fabric_node();
    let s = scenario(
        &format!(
            "    a:\n      command: [\"{}\", --http-addr, \"{{addr}}\", --data-dir, \"{{data_dir}}/peer-{{port:f1}}\"]\n      env: {{ PEER_URL: \"http://{{addr:f1}}/ready\", PEER_HOST: \"{{host:f1}}\" }}\n    f1: {{ kind: fabric }}\n",
            fabric.display()
        ),
        "",
    );
    let run_dir = tempfile::tempdir().unwrap();
    let stack = ProcessStack::boot(&s, run_dir.path(), &locator(), true)
        .await
        .expect("boots");
    // `a` sorts first by name but references `f1`: f1 boots first.
    assert_eq!(stack.services(), ["f1", "a"]);
    let port = stack.endpoint("f1").unwrap().port;
    let pid = stack.pid("a").unwrap();
    let environ = proc_text(pid, "environ");
    assert!(
        environ.contains(&format!("PEER_URL=http://127.0.0.1:{port}/ready ")),
        "{environ}"
    );
    assert!(environ.contains("PEER_HOST=127.0.0.1 "), "{environ}");
    let cmdline = proc_text(pid, "cmdline");
    assert!(cmdline.contains(&format!("/peer-{port}")), "{cmdline}");
    // The address it was given is f1's: f1 answers there.
    let (status, _) = http(&format!("127.0.0.1:{port}"), "GET", "/ready", "")
        .await
        .expect("f1 answers");
    assert_eq!(status, 200);
    let reports = stack.shutdown().await;
    // Stopped in reverse boot order: `a` before the service it references.
    let order: Vec<&str> = reports.iter().map(|r| r.service.as_str()).collect();
    assert_eq!(order, ["a", "f1"]);
}

const STREAM: &str = "/api/v1/streams/t/n/s";

/// Messages of the test stream on one fabric node.
async fn messages(addr: &str) -> usize {
    let (status, body) = http(
        addr,
        "GET",
        &format!("{STREAM}/messages?offset=0&max_messages=1000"),
        "",
    )
    .await
    .expect("the fabric answers");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["messages"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_balances_over_both_upstreams() {
    let s = scenario(
        "    lb: { kind: nginx, upstreams: [f1, f2] }\n    f1: { kind: fabric }\n    f2: { kind: fabric }\n",
        "",
    );
    let run_dir = tempfile::tempdir().unwrap();
    let stack = ProcessStack::boot(&s, run_dir.path(), &locator(), true)
        .await
        .expect("boots");
    assert_eq!(stack.services(), ["f1", "f2", "lb"]);
    let (f1, f2, lb) = (addr(&stack, "f1"), addr(&stack, "f2"), addr(&stack, "lb"));
    // The generated configuration names both upstreams.
    let conf = std::fs::read_to_string(run_dir.path().join("data/lb/nginx.conf")).unwrap();
    assert!(
        conf.contains(&format!("server {f1};")) && conf.contains(&format!("server {f2};")),
        "{conf}"
    );
    assert!(conf.contains(&format!("listen {lb};")), "{conf}");
    // Run as root, nginx is not root (its workers must reach the data directory).
    let pid = stack.pid("lb").unwrap();
    let status = proc_text(pid, "status");
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        assert_ne!(uid, "0", "nginx runs as www-data under a root harness");
    }
    for node in [&f1, &f2] {
        let (status, body) = http(node, "PUT", STREAM, "{}").await.expect("created");
        assert!(status == 200 || status == 201, "{status} {body}");
    }
    let appends = 20;
    for _ in 0..appends {
        let (status, body) = http(
            &lb,
            "POST",
            &format!("{STREAM}/events"),
            r#"{"events":[{"payload":"aGk="}]}"#,
        )
        .await
        .expect("nginx answers");
        assert_eq!(status, 200, "{body}");
    }
    let (on_f1, on_f2) = (messages(&f1).await, messages(&f2).await);
    assert_eq!(on_f1 + on_f2, appends, "every append reached one node");
    assert!(
        on_f1 > 0 && on_f2 > 0,
        "balanced over both: {on_f1} + {on_f2}"
    );
    // nginx's own status page.
    let (status, body) = http(&lb, "GET", "/nginx_status", "").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("Active connections"), "{body}");
    let reports = stack.shutdown().await;
    assert!(reports.iter().all(|r| r.graceful), "{reports:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_fault_between_two_services_delays_and_cuts_that_link_only() {
    let s = scenario(
        "    lb: { kind: nginx, upstreams: [f1] }\n    f1: { kind: fabric }\n",
        "faults:\n  - { name: slow, at: 0s, for: 1h, link: lb->f1, latency: 400ms }\n",
    );
    let windows = loadgen::chaos::plan(&s).unwrap();
    let routes = loadgen::chaos::ServiceRoutes::new(&windows, &s, 1);
    let run_dir = tempfile::tempdir().unwrap();
    let stack: Arc<dyn Stack> = Arc::new(
        ProcessStack::boot_with(&s, run_dir.path(), &locator(), true, &routes)
            .await
            .expect("boots"),
    );
    let proxies = routes.proxies();
    assert_eq!(proxies.keys().collect::<Vec<_>>(), ["lb->f1"]);
    let proxy = proxies["lb->f1"].clone();
    let (f1, lb) = (addr(&*stack, "f1"), addr(&*stack, "lb"));
    assert_eq!(proxy.upstream().to_string(), f1);
    // nginx was given the proxy, not f1.
    let conf = std::fs::read_to_string(run_dir.path().join("data/lb/nginx.conf")).unwrap();
    assert!(
        conf.contains(&format!("server {};", proxy.addr())) && !conf.contains(&f1),
        "{conf}"
    );
    // Healthy: through nginx and the proxy.
    assert_eq!(http(&lb, "GET", "/ready", "").await.unwrap().0, 200);
    assert!(proxy.accepted_connections() > 0);

    // The latency fault, applied by the fault scheduler as in a run.
    let scheduler = Arc::new(FaultScheduler::new(
        stack.clone(),
        proxies.clone(),
        windows,
        run_dir.path(),
        tokio::time::Instant::now(),
    ));
    scheduler.preflight().unwrap();
    let timeline = tokio::spawn({
        let s = scheduler.clone();
        async move { s.run().await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while scheduler.records().is_empty() {
        assert!(Instant::now() < deadline, "the fault was never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(scheduler.records()[0].kind, "link.latency");
    let started = Instant::now();
    let (status, _) = http(&lb, "GET", "/ready", "").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "the answer crossed the slowed link: {:?}",
        started.elapsed()
    );
    // nginx's own page does not cross the link.
    assert_eq!(http(&lb, "GET", "/nginx_status", "").await.unwrap().0, 200);
    timeline.abort();
    scheduler.heal_all().await.unwrap();

    // Down: nginx cannot reach f1 (502), f1 itself still answers.
    proxy.set_down(true).await.unwrap();
    assert_eq!(http(&lb, "GET", "/ready", "").await.unwrap().0, 502);
    assert_eq!(http(&f1, "GET", "/ready", "").await.unwrap().0, 200);
    proxy.set_down(false).await.unwrap();
    assert_eq!(http(&lb, "GET", "/ready", "").await.unwrap().0, 200);
    stack.shutdown().await;
}

/// A whole `loadgen run` with `fault`: the load through nginx fails while
/// it is applied (nginx cannot reach f1: 502), succeeds before and after;
/// `faults.json` records it as `(kind, target)`.
fn run_with_fault(fault: &str, kind: &str, target: &str) {
    common::fabric_node();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("link.yaml");
    std::fs::write(
        &path,
        format!("name: link\nstack:\n  services:\n    lb: {{ kind: nginx, upstreams: [f1] }}\n    f1: {{ kind: fabric }}\nworkload:\n  phases:\n    - {{ name: steady, duration: 5s, rate: 20/s }}\n  operations:\n    - {{ name: ready, http: {{ url: /ready, service: lb }} }}\nfaults:\n  - {fault}\n"),
    )
    .unwrap();
    let o = common::loadgen(
        &[
            "run",
            path.to_str().unwrap(),
            "--quiet",
            "--out",
            out.path().to_str().unwrap(),
        ],
        out.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o.stderr));
    let run = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir() && !p.ends_with("latest"))
        .unwrap();
    let faults =
        gauntlet_recorder::faults::parse(&std::fs::read(run.join("faults.json")).unwrap()).unwrap();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(
        (faults[0].kind.as_str(), faults[0].target.as_str()),
        (kind, target)
    );
    let (start, end) = (faults[0].start_s, faults[0].end_s.unwrap());
    let r: gauntlet_recorder::RunResults =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    let sum = |keep: &dyn Fn(f64) -> bool| -> (u64, u64) {
        r.intervals
            .iter()
            .filter(|i| keep(i.t_s))
            .flat_map(|i| i.operations.iter())
            .fold((0, 0), |(ok, err), o| {
                (ok + o.count - o.errors, err + o.errors)
            })
    };
    let (ok_before, _) = sum(&|t| t + 1.0 <= start);
    let (_, err_during) = sum(&|t| t > start + 0.5 && t + 0.5 < end);
    let (ok_after, _) = sum(&|t| t >= end + 0.5);
    assert!(ok_before > 0, "the load went through before the fault");
    assert!(err_during > 0, "the fault cut nginx off f1");
    assert!(ok_after > 0, "healed, the link carries the load again");
}

#[test]
fn a_run_cuts_a_link_between_two_services_and_heals_it() {
    run_with_fault(
        "{ name: cut, at: 1s, for: 2s, link: lb->f1, down: true }",
        "link.down",
        "lb->f1",
    );
}

/// A process-mode partition of f1 also cuts the link from nginx to it.
#[test]
fn a_partition_cuts_the_links_between_services_too() {
    run_with_fault(
        "{ name: cut, at: 1s, for: 2s, partition: f1 }",
        "network.partition",
        "f1",
    );
}
