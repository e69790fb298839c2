//! The closed model end to end against the real fabric: goose runs the
//! users, the operations are Gauntlet's own, the samples land in Gauntlet's
//! recorder, and goose's report lands in the run directory.

mod common;

use std::path::Path;

use common::{loadgen, text};
use gauntlet_recorder::RunResults;

const CLOSED: &str = r#"
name: closed
seed: 11
stack:
  services:
    fabric: { kind: fabric, env: { STORAGE_FSYNC_POLICY: batch, LOGGING_LEVEL: warn } }
workload:
  engine: closed
  think_time: 5ms
  phases:
    - { name: rampup, duration: 2s, users: { from: 1, to: 4 } }
    - { name: steady, duration: 2s, users: 4 }
  operations:
    - { name: append, weight: 3, fabric.stream.append: { stream: test/closed/events, payload: 64B } }
    - { name: read, weight: 1, fabric.stream.read: { stream: test/closed/events, from: latest-10, max: 10 } }
    - name: session
      weight: 1
      fabric.kv.put: { store: test/closed/sessions, key: "s-{{seq}}" }
      then: [ { fabric.kv.get: {} } ]
"#;

fn results(run_dir: &Path) -> RunResults {
    serde_json::from_slice(&std::fs::read(run_dir.join("results.json")).unwrap()).unwrap()
}

#[test]
fn goose_users_drive_the_fabric_into_gauntlets_recorder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("closed.yaml"), CLOSED).unwrap();
    let out = loadgen(
        &["run", "closed.yaml", "--quiet", "--out", "runs"],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let run_dir = dir.path().join("runs/latest");
    let r = results(&run_dir);
    assert!(r.complete);
    // Every operation ran, without errors, in both phases.
    let total: u64 = r.totals.iter().map(|o| o.count).sum();
    for op in &r.totals {
        assert!(op.count > 0, "{op:?}");
        assert_eq!(op.errors, 0, "{op:?}");
        // Closed model: latency is the service time.
        assert_eq!(op.latency_us, op.service_time_us, "{op:?}");
    }
    let appends = r.totals.iter().find(|o| o.operation == "append").unwrap();
    let reads = r.totals.iter().find(|o| o.operation == "read").unwrap();
    assert!(
        appends.count > reads.count,
        "weights 3:1: {appends:?} {reads:?}"
    );
    for phase in &r.phases {
        let n: u64 = phase.operations.iter().map(|o| o.count).sum();
        assert!(n > 0, "phase {} recorded nothing", phase.name);
    }
    // A chained step runs after every successful put, recorded under its
    // own name.
    let puts = r.totals.iter().find(|o| o.operation == "session").unwrap();
    let gets = r
        .totals
        .iter()
        .find(|o| o.operation == "session.get")
        .unwrap();
    assert_eq!(gets.count, puts.count, "{puts:?} {gets:?}");
    // Nothing is scheduled ahead in a closed model: every start is counted
    // (steps are not arrivals of their own).
    assert_eq!(r.engine.started, total - gets.count);
    assert_eq!(r.engine.scheduled, r.engine.started);
    // Gauntlet's own interval log has the samples; goose wrote its report.
    let hlog = gauntlet_recorder::hlog::read(&std::fs::read(run_dir.join("latency.hlog")).unwrap());
    let logged: u64 = hlog.iter().map(|h| h.histogram.len()).sum();
    assert_eq!(logged, total);
    let report = std::fs::read_to_string(run_dir.join("goose-report.html")).unwrap();
    assert!(
        report.contains("append"),
        "goose's report names the transactions"
    );
    assert!(run_dir.join("report.html").is_file());
}

#[test]
fn a_closed_phase_with_a_rate_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let bad = CLOSED.replace("users: 4 }", "rate: 100/s }");
    std::fs::write(dir.path().join("closed.yaml"), bad).unwrap();
    let out = loadgen(
        &["run", "closed.yaml", "--quiet", "--out", "runs"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("closed.yaml:"), "{err}");
    assert!(err.contains("closed model runs users"), "{err}");
    assert!(err.contains("users: 50"), "{err}");
}
