//! The generic `http` operation against an external service: a fabric-node
//! this test starts itself (not booted by loadgen), named under
//! `stack.external`. An answer counts as a success only with the expected
//! status; any other status is an error of kind `http_<status>`.

mod common;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fabric_node, loadgen, text};
use gauntlet_recorder::RunResults;

struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn http_operations_reach_an_external_service_and_check_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _node = Node(
        Command::new(fabric_node())
            .args(["--http-addr", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path().join("fabric"))
            .env("LOGGING_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "fabric-node never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let scenario = format!(
        r#"
name: external-http
stack: {{ external: {{ outside: "http://127.0.0.1:{port}" }} }}
workload:
  max_in_flight: 8
  phases:
    - {{ name: steady, duration: 1s, rate: 200/s }}
  operations:
    - {{ name: ready, http: {{ service: outside, url: /ready, headers: {{ X-Bench: "1" }} }} }}
    - {{ name: wrong, http: {{ service: outside, method: GET, url: /ready, expect: 204 }} }}
"#
    );
    std::fs::write(dir.path().join("s.yaml"), scenario).unwrap();
    let out = loadgen(&["run", "s.yaml", "--quiet", "--out", "runs"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    check(&dir.path().join("runs/latest/results.json"));
    // The same on two engine threads sharing the schedule.
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "s.yaml", "--quiet", "--out", "runs2"])
        .current_dir(dir.path())
        .env("GAUNTLET_ENGINE_THREADS", "2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    check(&dir.path().join("runs2/latest/results.json"));
}

fn check(results: &std::path::Path) {
    let r: RunResults = serde_json::from_slice(&std::fs::read(results).unwrap()).unwrap();
    assert_eq!(r.engine.started, 200);
    let ready = r.totals.iter().find(|o| o.operation == "ready").unwrap();
    let wrong = r.totals.iter().find(|o| o.operation == "wrong").unwrap();
    assert_eq!(ready.count + wrong.count, 200);
    assert!(ready.count > 0 && wrong.count > 0);
    assert_eq!(ready.errors, 0, "{ready:?}");
    assert_eq!(wrong.errors, wrong.count, "{wrong:?}");
    assert_eq!(
        wrong.errors_by_kind.get("http_200"),
        Some(&wrong.count),
        "{wrong:?}"
    );
}
