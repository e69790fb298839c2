//! Seed 003's production shape in process mode: PostgreSQL, Redis, two
//! tracing servers and nginx in front of them. It boots in dependency
//! order to ready, WebSocket frames go through nginx to a replica, kill /
//! pause / restart of PostgreSQL, Redis and one replica work (a restarted
//! PostgreSQL keeps its port and data, and the servers reconnect), and
//! neither Ctrl-C nor a killed loadgen leaves a process behind.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gauntlet_control::{ServiceState, Signal, Stack};
use gauntlet_engine::ws;
use loadgen::bins::Locator;
use loadgen::stack::ProcessStack;

/// The shape; every service carries its data directory in its environment
/// (`RUN_DATA`), so the test finds each process of a run.
const SHAPE: &str = r#"
    db: { kind: postgres, env: { RUN_DATA: "{data_dir}" } }
    cache: { kind: redis, env: { RUN_DATA: "{data_dir}" } }
    ts1:
      kind: tracing
      stop_timeout: 30s
      env:
        TRACING_DATABASE_URL: "postgresql://postgres@{addr:db}/postgres"
        TRACING_REDIS_URL: "redis://{addr:cache}"
        RUN_DATA: "{data_dir}"
    ts2:
      kind: tracing
      stop_timeout: 30s
      env:
        TRACING_DATABASE_URL: "postgresql://postgres@{addr:db}/postgres"
        TRACING_REDIS_URL: "redis://{addr:cache}"
        RUN_DATA: "{data_dir}"
    lb: { kind: nginx, upstreams: [ts1, ts2], env: { RUN_DATA: "{data_dir}" } }
"#;

fn scenario_text(duration: &str) -> String {
    format!(
        "name: shape\nstack:\n  services:\n{SHAPE}workload:\n  phases:\n    - {{ name: steady, duration: {duration}, rate: 20/s }}\n  operations:\n    - {{ name: health, http: {{ url: /health, service: lb }} }}\n"
    )
}

fn locator() -> Locator {
    common::tracing_server();
    Locator {
        dir: Some(common::bin_dir()),
        quiet: true,
    }
}

/// `GET path` on `addr`: the status, or `None` without an answer in 5 s.
async fn status(addr: &str, path: &str) -> Option<u16> {
    let exchange = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        String::from_utf8_lossy(&out)
            .split(' ')
            .nth(1)?
            .parse()
            .ok()
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// Polls (bounded: 30 s) until `GET path` on `addr` answers `want`.
async fn until_status(addr: &str, path: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = status(addr, path).await;
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "GET http://{addr}{path} never answered {want} (last: {got:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `Ping` on a new WebSocket connection to `addr`: the answer's text.
async fn ping(addr: &str) -> String {
    let client = ws::Client::new(ws::Config {
        max_idle: 0,
        ..ws::Config::default()
    });
    let target = ws::Target::new(addr.parse().unwrap(), addr, "/").unwrap();
    let answer = client
        .request(&target, ws::Frame::text(r#""Ping""#))
        .await
        .unwrap_or_else(|e| panic!("a Ping through {addr}: {e:?}"));
    answer.as_text().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_shape_boots_serves_websockets_through_nginx_and_survives_faults() {
    let text = scenario_text("1s");
    let scenario = gauntlet_scenario::load("shape.yaml", &text, &[]).unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    let stack = ProcessStack::boot(&scenario, run_dir.path(), &locator(), true)
        .await
        .expect("the production shape boots");
    assert_eq!(stack.services(), ["cache", "db", "ts1", "ts2", "lb"]);
    let addr = |s: &str| stack.endpoint(s).unwrap().addr();
    let lb = addr("lb");

    // WebSocket through nginx (the upgrade passed through), to either replica.
    for _ in 0..4 {
        assert_eq!(ping(&lb).await, r#""Pong""#);
    }
    assert_eq!(status(&lb, "/health").await, Some(200));

    // One replica killed: nginx serves from the other; started again, ready.
    stack.kill("ts1", Signal::Kill).await.unwrap();
    assert_eq!(stack.state("ts1").unwrap(), ServiceState::Stopped);
    for _ in 0..4 {
        assert_eq!(status(&lb, "/ready").await, Some(200));
        assert_eq!(ping(&lb).await, r#""Pong""#);
    }
    stack.start("ts1").await.unwrap();
    assert_eq!(status(&addr("ts1"), "/ready").await, Some(200));
    // Paused and resumed; restarted.
    stack.pause("ts2").await.unwrap();
    assert_eq!(stack.state("ts2").unwrap(), ServiceState::Paused);
    stack.unpause("ts2").await.unwrap();
    stack.restart("ts2").await.unwrap();
    assert_eq!(status(&addr("ts2"), "/ready").await, Some(200));

    // PostgreSQL killed: the servers are not ready; started again on the
    // same port and data, they reconnect and are ready again.
    let db_port = stack.endpoint("db").unwrap().port;
    stack.kill("db", Signal::Kill).await.unwrap();
    until_status(&addr("ts1"), "/ready", 503).await;
    stack.start("db").await.unwrap();
    assert_eq!(stack.endpoint("db").unwrap().port, db_port);
    until_status(&addr("ts1"), "/ready", 200).await;
    until_status(&addr("ts2"), "/ready", 200).await;
    // Paused PostgreSQL, then resumed; restarted (pg_ctl, then a start).
    stack.pause("db").await.unwrap();
    stack.unpause("db").await.unwrap();
    stack.restart("db").await.unwrap();
    until_status(&addr("ts1"), "/ready", 200).await;

    // Redis killed and started, paused and resumed, restarted: the servers
    // stay ready (Redis is their cache and fan-out, not their store).
    stack.kill("cache", Signal::Kill).await.unwrap();
    assert_eq!(status(&addr("ts1"), "/ready").await, Some(200));
    stack.start("cache").await.unwrap();
    stack.pause("cache").await.unwrap();
    stack.unpause("cache").await.unwrap();
    stack.restart("cache").await.unwrap();
    until_status(&addr("ts2"), "/ready", 200).await;
    assert_eq!(ping(&lb).await, r#""Pong""#);

    let reports = stack.shutdown().await;
    let order: Vec<&str> = reports.iter().map(|r| r.service.as_str()).collect();
    assert_eq!(order, ["lb", "ts2", "ts1", "db", "cache"]);
    assert!(reports.iter().all(|r| r.graceful), "{reports:#?}");
    none_left(run_dir.path());
}

/// Processes whose command line, working directory or environment names
/// `dir` (each service of the shape has `RUN_DATA` in its environment).
fn processes_under(dir: &Path) -> Vec<u32> {
    let dir = std::fs::canonicalize(dir).unwrap();
    let needle = dir.to_str().unwrap().to_owned();
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            let names = |file: &str| {
                String::from_utf8_lossy(
                    &std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default(),
                )
                .contains(&needle)
            };
            cwd.starts_with(&dir) || names("cmdline") || names("environ")
        })
        .collect()
}

/// Polls (bounded) until no process of the run is left.
fn none_left(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = processes_under(dir);
        if left.is_empty() {
            return;
        }
        let names: Vec<String> = left
            .iter()
            .map(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
            .collect();
        assert!(
            Instant::now() < deadline,
            "processes of the run remain: {left:?} {names:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `loadgen run` of the shape for 60 s, once every service is up and the
/// load runs: the output directory, loadgen, and the run's directory.
fn start_run() -> (tempfile::TempDir, std::process::Child, PathBuf) {
    common::tracing_server();
    let out = tempfile::tempdir().unwrap();
    let scenario = out.path().join("s.yaml");
    std::fs::write(&scenario, scenario_text("60s")).unwrap();
    let mut child = common::spawn_run(&scenario, out.path());
    let deadline = Instant::now() + Duration::from_secs(90);
    let run = loop {
        let run = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_dir() && !p.ends_with("latest"));
        // The load runs: the stack is booted.
        if let Some(run) = run
            && run.join("results.json").is_file()
        {
            break run;
        }
        assert!(Instant::now() < deadline, "the shape never booted");
        assert!(child.try_wait().unwrap().is_none(), "loadgen exited early");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Every service of the shape is running (postgres, redis, 2 servers, nginx).
    assert!(
        processes_under(&run).len() >= 5,
        "{:?}",
        processes_under(&run)
    );
    (out, child, run)
}

#[test]
fn ctrl_c_stops_the_whole_shape_and_leaves_no_process() {
    let (_out, child, run) = start_run();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "an interrupted run exits 3");
    none_left(&run);
}

#[test]
fn a_killed_loadgen_leaves_no_process_of_the_shape() {
    let (_out, mut child, run) = start_run();
    child.kill().unwrap();
    child.wait().unwrap();
    none_left(&run);
}
