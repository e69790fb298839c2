//! Every fabric scenario of `scenarios/chaos/` runs here, shortened with
//! `--set`, against the real fabric through the real fault proxy, and passes; the
//! faults it names are in `faults.json`, their effect is visible in
//! `results.json`, and `recovery` states each fault's recovery.

mod common;

use std::path::{Path, PathBuf};

use common::{
    assert_disk_filled, assert_exit, chaos_scenario, check_verdicts, errors_between, fabric_node,
    mounts_on, run_scenario, text,
};
use gauntlet_recorder::RunResults;
use gauntlet_recorder::faults::parse;
use gauntlet_recorder::recovery::RecoveryTime;

/// How each scenario is shortened for the tests. Its SLOs are widened: a
/// test asserts behaviour, not this machine's speed (the p99 objectives
/// still drive the p99 recovery times).
fn shortened(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "fabric-link-latency-reset" => &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=14s",
            "faults.0.at=3s",
            "faults.0.for=2s",
            "faults.1.at=10s",
            "faults.1.for=1s",
            "slo.append.p99=30s",
            "slo.read.p99=30s",
        ],
        "fabric-partition" => &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=8s",
            "faults.0.at=4s",
            "faults.0.for=2s",
            "slo.append.p99=30s",
        ],
        "fabric-crash-restart-always"
        | "fabric-crash-restart-batch"
        | "fabric-crash-restart-interval" => &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=8s",
            "faults.0.at=5s",
        ],
        "fabric-pause" => &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=8s",
            "faults.0.at=4s",
            "faults.0.for=2s",
        ],
        "fabric-disk-full" => &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=8s",
            "faults.0.at=4s",
            "faults.0.for=2s",
            "faults.1.at=7s",
        ],
        _ => return None,
    })
}

/// The operations of each scenario (recovery is measured for each).
fn operations(name: &str) -> &'static [&'static str] {
    match name {
        "fabric-pause" => &["append", "produce", "work"],
        "fabric-disk-full" => &["append", "put"],
        n if n.starts_with("fabric-crash-restart-") => &["append", "produce", "work", "put"],
        _ => &["append", "read"],
    }
}

fn run_dir(root: &Path) -> PathBuf {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir() && !p.ends_with("latest"))
        .expect("a run directory")
}

#[test]
fn every_chaos_scenario_passes_against_the_fabric() {
    fabric_node();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/chaos");
    let mut scenarios: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    scenarios.sort();
    // Each system's chaos scenarios run in its own test (the actor node's
    // in tests/actors.rs, the tracing server's in tests/tracing.rs, the
    // Reflow node's in tests/reflow.rs); a
    // scenario of no known system fails here.
    for s in &scenarios {
        let name = s.file_stem().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("fabric-")
                || name.starts_with("actors-")
                || name.starts_with("tracing-")
                || name.starts_with("reflow-"),
            "{name}: add a test that runs it shortened (tests/chaos.rs, tests/actors.rs, tests/tracing.rs, tests/reflow.rs)"
        );
    }
    scenarios.retain(|s| {
        s.file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("fabric-")
    });
    assert!(!scenarios.is_empty());
    for scenario in scenarios {
        let name = scenario.file_stem().unwrap().to_str().unwrap().to_owned();
        let sets = shortened(&name)
            .unwrap_or_else(|| panic!("{name}: add how to shorten it to tests/chaos.rs"));
        let (o, out) = run_scenario(&scenario, sets);
        assert_exit(&o, 0, &format!("{name}: "));

        let run = run_dir(out.path());
        let faults_json = std::fs::read(run.join("faults.json"))
            .unwrap_or_else(|e| panic!("{name}: {} faults.json: {e}", run.display()));
        let faults = parse(&faults_json).unwrap();
        let r: RunResults =
            serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
        assert!(r.complete, "{name}");
        for f in &faults {
            assert!(f.end_s.is_some(), "{name}: {} healed", f.name);
        }
        let ops = operations(&name);
        assert_eq!(
            r.recovery.len(),
            faults.len() * ops.len(),
            "{name}: {:?}",
            r.recovery
        );
        // Recovery is measured for every fault (whether it comes within the
        // run depends on this machine's speed; the figures are for the
        // report), and appends succeed again once each fault is lifted.
        for rec in &r.recovery {
            assert!(rec.before_per_s.is_some_and(|b| b > 0.0), "{name}: {rec:?}");
            assert!(
                !matches!(rec.throughput, RecoveryTime::Unknown(_)),
                "{name}: {rec:?}"
            );
        }
        for f in &faults {
            let healed = f.end_s.unwrap();
            let ok_after: u64 = r
                .intervals
                .iter()
                .filter(|i| i.t_s >= healed)
                .flat_map(|i| i.operations.iter().filter(|o| o.operation == "append"))
                .map(|o| o.count - o.errors)
                .sum();
            assert!(
                ok_after > 0,
                "{name}: appends succeed after `{}` is lifted",
                f.name
            );
        }
        // The checks the scenario names all ran on a history and a
        // read-back, and passed.
        let scenario_text = std::fs::read_to_string(&scenario).unwrap();
        if scenario_text.contains("\nchecks:") {
            assert!(run.join("history.jsonl").is_file(), "{name}");
            assert!(run.join("readback.json").is_file(), "{name}");
            let checks = check_verdicts(&run);
            assert!(!checks.is_empty(), "{name}");
            for (check, passed, evidence) in &checks {
                assert!(passed, "{name}: {check}: {evidence}");
                assert!(scenario_text.contains(check.as_str()), "{name}: {check}");
            }
            let history = gauntlet_checkers::History::read(&run.join("history.jsonl")).unwrap();
            assert!(
                history
                    .operations
                    .iter()
                    .filter(|o| o.outcome.is_ok())
                    .count()
                    > 100,
                "{name}: the history records the acknowledged operations"
            );
        } else {
            assert!(
                !run.join("history.jsonl").exists(),
                "{name}: no checks, no history"
            );
        }
        match name.as_str() {
            "fabric-crash-restart-always"
            | "fabric-crash-restart-batch"
            | "fabric-crash-restart-interval" => {
                assert_eq!(faults.len(), 1);
                assert_eq!(faults[0].kind, "process.kill");
            }
            "fabric-pause" => {
                assert_eq!(faults[0].target, "fabric");
            }
            "fabric-disk-full" => {
                let kinds: Vec<&str> = faults.iter().map(|f| f.kind.as_str()).collect();
                assert_eq!(kinds, ["resource.disk_full", "process.restart"]);
                assert_disk_was_full(&faults[0], &r);
            }
            "fabric-link-latency-reset" => {
                let kinds: Vec<&str> = faults.iter().map(|f| f.kind.as_str()).collect();
                assert_eq!(kinds, ["link.latency", "link.reset"]);
                // 50 ms ± 10 ms on every response: no append in the window is faster than 40 ms.
                let slow = &faults[0];
                let p50s: Vec<u64> = r
                    .intervals
                    .iter()
                    .filter(|i| i.t_s >= slow.start_s + 0.2 && i.t_s + 1.0 <= slow.end_s.unwrap())
                    .flat_map(|i| i.operations.iter().filter(|o| o.operation == "append"))
                    .map(|o| o.latency_us.p50)
                    .collect();
                assert!(
                    !p50s.is_empty() && p50s.iter().all(|p| *p >= 40_000),
                    "{p50s:?}"
                );
                let reset = &faults[1];
                let errors = errors_between(&r, "append", reset.start_s, reset.end_s.unwrap());
                assert!(errors > 0, "resets fail operations");
                assert_eq!(errors_between(&r, "append", 0.0, slow.start_s - 1.0), 0);
            }
            "fabric-partition" => {
                let f = &faults[0];
                assert_eq!(
                    (f.kind.as_str(), f.target.as_str()),
                    ("network.partition", "fabric")
                );
                assert!(errors_between(&r, "append", f.start_s, f.end_s.unwrap()) > 0);
                assert_eq!(errors_between(&r, "append", 0.0, f.start_s - 1.0), 0);
            }
            _ => unreachable!("listed in shortened()"),
        }
    }
}

/// The `disk:` of the fabric (64 MiB in the scenario) really filled up:
/// the fill stopped at ENOSPC, well before its 256 MiB `max`, and the
/// fabric answered errors to appends while it was full, and not before.
fn assert_disk_was_full(fill: &gauntlet_recorder::faults::Fault, r: &RunResults) {
    assert_disk_filled(fill, r);
    assert_eq!(
        errors_between(r, "append", 0.0, fill.start_s - 1.0),
        0,
        "no append fails before the disk is full"
    );
}

/// A crash and restart of a fabric on a `disk:` of its own: the restarted
/// process joins the holder's namespace and finds every acknowledged write
/// (the checks pass); afterwards no holder and no mount remain.
#[test]
fn a_disk_of_its_own_keeps_the_data_across_a_crash_and_leaves_nothing_behind() {
    fabric_node();
    let (o, out) = run_scenario(
        &chaos_scenario("fabric-crash-restart-always.yaml"),
        &[
            "workload.phases.warmup.duration=1s",
            "workload.phases.steady.duration=5s",
            "faults.0.at=3s",
            "stack.services.fabric.disk=32MiB",
        ],
    );
    assert_exit(&o, 0, "");
    let run = run_dir(out.path());
    let checks = check_verdicts(&run);
    assert_eq!(checks.len(), 4, "{checks:?}");
    for (check, passed, evidence) in &checks {
        assert!(passed, "{check}: {evidence}");
    }
    let faults = parse(&std::fs::read(run.join("faults.json")).unwrap()).unwrap();
    assert_eq!(faults[0].kind, "process.kill");
    let data = std::path::absolute(run.join("data/fabric")).unwrap();
    assert_eq!(mounts_on(&data), Vec::<String>::new());
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        0,
        "the host's directory was never written: the data lived in the tmpfs"
    );
}

/// loadgen SIGKILLed while a `disk:` is mounted: the holder and the
/// service die with it (PR_SET_PDEATHSIG), and the tmpfs with their
/// mount namespace.
#[test]
fn a_killed_loadgen_leaves_no_disk_holder_and_no_mount() {
    fabric_node();
    let out = tempfile::tempdir().unwrap();
    let scenario = out.path().join("s.yaml");
    std::fs::write(
        &scenario,
        common::SHORT
            .replace(
                "fabric: { kind: fabric, env",
                "fabric: { kind: fabric, disk: 16MiB, env",
            )
            .replace("duration: 1s, rate: 300/s", "duration: 60s, rate: 300/s"),
    )
    .unwrap();
    let mut child = common::spawn_run(&scenario, out.path());
    // Wait (bounded) until the run has started its load: the disk is mounted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let data = loop {
        let found = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_dir() && !p.ends_with("latest"))
            .map(|run| std::path::absolute(run.join("data/fabric")).unwrap());
        if let Some(data) = found.filter(|d| !mounts_on(d).is_empty())
            && found_results(out.path())
        {
            break data;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never mounted its disk"
        );
        assert!(child.try_wait().unwrap().is_none(), "loadgen exited early");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let holders = mounts_on(&data);
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !mounts_on(&data).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "still mounted in {:?} (were {holders:?})",
            mounts_on(&data)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for pid in holders {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "process {pid} outlived loadgen"
        );
    }
}

/// A run directory under `root` has its first `results.json` (the load runs).
fn found_results(root: &Path) -> bool {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .any(|p| p.is_dir() && !p.ends_with("latest") && p.join("results.json").is_file())
}

/// Without CAP_SYS_ADMIN a `disk:` cannot be mounted in process mode: the
/// run stops before any load with the reason and the hint, exit 3.
#[test]
fn a_disk_without_cap_sys_admin_is_a_clear_error_before_the_load() {
    fabric_node();
    let out = tempfile::tempdir().unwrap();
    let scenario = out.path().join("s.yaml");
    std::fs::write(
        &scenario,
        common::SHORT.replace(
            "fabric: { kind: fabric, env",
            "fabric: { kind: fabric, disk: 16MiB, env",
        ),
    )
    .unwrap();
    let o = std::process::Command::new("setpriv")
        .args(["--bounding-set", "-sys_admin", "--"])
        .arg(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", scenario.to_str().unwrap(), "--quiet", "--out"])
        .arg(out.path())
        .current_dir(out.path())
        .env("GAUNTLET_BIN_DIR", common::bin_dir())
        .output()
        .expect("setpriv (util-linux) runs");
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("service `fabric`"), "{stderr}");
    assert!(stderr.contains("`disk:`"), "{stderr}");
    assert!(stderr.contains("CAP_SYS_ADMIN"), "{stderr}");
    assert!(stderr.contains("--runtime containers"), "{stderr}");
    let run = run_dir(out.path());
    assert!(
        !run.join("results.json").exists(),
        "no load ran: {}",
        run.display()
    );
}

/// Successful operations of `operation` in the intervals starting at or after `from`.
fn ok_from(r: &RunResults, operation: &str, from: f64) -> u64 {
    r.intervals
        .iter()
        .filter(|i| i.t_s >= from)
        .flat_map(|i| i.operations.iter().filter(|o| o.operation == operation))
        .map(|o| o.count - o.errors)
        .sum()
}

#[test]
fn a_kill_goes_through_the_stack() {
    fabric_node();
    let out = tempfile::tempdir().unwrap();
    let scenario = out.path().join("s.yaml");
    let text_of = format!(
        "{}faults:\n  - {{ at: 1s, kill: fabric, restart_after: 1s }}\n",
        common::SHORT.replace("duration: 1s, rate: 300/s", "duration: 3s, rate: 300/s")
    );
    std::fs::write(&scenario, text_of).unwrap();
    let (o, runs) = run_scenario(&scenario, &[]);
    assert_exit(&o, 0, "");
    let run = run_dir(runs.path());
    let faults = parse(&std::fs::read(run.join("faults.json")).unwrap()).unwrap();
    assert_eq!(faults.len(), 1, "{faults:?}");
    let kill = &faults[0];
    assert_eq!(kill.target, "fabric");
    let end = kill
        .end_s
        .expect("the kill's window ends when the fabric is back");
    assert!(end > kill.start_s, "{kill:?}");
    let r: RunResults =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    assert!(r.complete);
    assert!(
        ok_from(&r, "append", end.ceil()) > 0,
        "appends succeed again after the restart: {:?}",
        r.intervals
    );
    // The collectors follow the restarted service: a new pid, scrapes
    // that succeed again.
    let metrics = gauntlet_recorder::metrics::parse(
        &std::fs::read_to_string(run.join("metrics.jsonl")).unwrap(),
    );
    let first_pid = metrics.first().and_then(|m| m.pid).expect("a pid");
    let after: Vec<_> = metrics.iter().filter(|m| m.t_s > end + 0.5).collect();
    assert!(!after.is_empty(), "{metrics:?}");
    assert!(
        after
            .iter()
            .all(|m| m.pid.is_some_and(|p| p != first_pid) && m.scrape_error.is_none()),
        "{after:?}"
    );
}

/// The negative test of every checker: the real fabric with the test-only
/// `FABRIC_TEST_FAKE_ACKS` knob acknowledges one append, enqueue and KV put
/// in five without applying it. Each checker must catch it, name its
/// evidence in `verdict.json`, and the run must exit 1.
#[test]
fn every_checker_catches_a_fabric_that_acknowledges_what_it_did_not_write() {
    fabric_node();
    let (o, out) = run_scenario(
        &chaos_scenario("fabric-crash-restart-batch.yaml"),
        &[
            "workload.phases.warmup.duration=1s",
            "workload.phases.steady.duration=5s",
            "faults.0.at=3s",
            "stack.services.fabric.env.FABRIC_TEST_FAKE_ACKS=append,enqueue,kv_put",
        ],
    );
    assert_exit(&o, 1, "");
    let run = run_dir(out.path());
    let checks = check_verdicts(&run);
    assert_eq!(checks.len(), 4, "{checks:?}");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("verdict.json")).unwrap()).unwrap();
    assert_eq!(doc["passed"], false);
    for (check, passed, evidence) in &checks {
        assert!(
            !passed,
            "{check} must catch the fake acknowledgements: {evidence}"
        );
        let expected = match check.as_str() {
            "fabric.no_acked_write_lost" => "of gauntlet/crash/events holds payload",
            "fabric.offsets_unique" => "acknowledged to operations",
            "fabric.queue.at_least_once" => "never delivered by the drain",
            "fabric.kv.read_your_writes" => "instead of its last acknowledged value",
            other => panic!("unexpected check {other}"),
        };
        assert!(evidence.contains(expected), "{check}: {evidence}");
        assert!(evidence.contains("fault `crash`"), "{check}: {evidence}");
        assert!(text(&o.stdout).contains(&format!("check FAIL {check}")));
    }
    // The report shows each failed check.
    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    for (check, _, _) in &checks {
        let row = format!(
            "<tr id=\"check-{}\" data-passed=\"false\"",
            check.replace(['.', '_'], "-")
        );
        assert!(report.contains(&row), "{row}");
    }
    // The evidence names the faked job ids (the knob's `fake-N`).
    let queue = &checks
        .iter()
        .find(|c| c.0 == "fabric.queue.at_least_once")
        .unwrap()
        .2;
    assert!(queue.contains("job fake-"), "{queue}");
}

/// Each fake-ack kind alone fails exactly the checkers that watch it: the
/// checkers are not merely failing together.
#[test]
fn each_checker_fails_only_on_its_own_fault() {
    fabric_node();
    let scenario = chaos_scenario("fabric-crash-restart-always.yaml");
    let cases: [(&str, &[&str]); 3] = [
        (
            "append",
            &["fabric.no_acked_write_lost", "fabric.offsets_unique"],
        ),
        ("enqueue", &["fabric.queue.at_least_once"]),
        ("kv_put", &["fabric.kv.read_your_writes"]),
    ];
    for (kind, failing) in cases {
        let knob = format!("stack.services.fabric.env.FABRIC_TEST_FAKE_ACKS={kind}");
        let (o, out) = run_scenario(
            &scenario,
            &[
                "workload.phases.warmup.duration=1s",
                "workload.phases.steady.duration=4s",
                "faults.0.at=2s",
                &knob,
            ],
        );
        assert_exit(&o, 1, &format!("{kind}: "));
        let checks = check_verdicts(&run_dir(out.path()));
        assert_eq!(checks.len(), 4, "{kind}: {checks:?}");
        for (check, passed, evidence) in &checks {
            assert_eq!(
                !passed,
                failing.contains(&check.as_str()),
                "{kind}: {check}: {evidence}"
            );
        }
    }
}

/// The crash-durability negative test: with the test-only
/// `FABRIC_TEST_ACK_BEFORE_WRITE` knob the fabric acknowledges appends (or
/// KV puts) while they sit in a user-space buffer written to its log only
/// every 200 ms, so each SIGKILL loses the acknowledged tail. The fabric is
/// killed twice under load (the buffer always holds the latest writes), and
/// KV keys are drawn from a space too large for a later put to hide a lost
/// one: the checker watching the kind fails with named evidence, the
/// others pass, and the run exits 1.
#[test]
fn a_kill_exposes_writes_acknowledged_before_they_were_written() {
    fabric_node();
    let scenario = chaos_scenario("fabric-crash-restart-always.yaml");
    let cases: [(&str, &[&str], &str); 2] = [
        (
            "append",
            &["fabric.no_acked_write_lost", "fabric.offsets_unique"],
            "of gauntlet/crash/events",
        ),
        (
            "kv_put",
            &["fabric.kv.read_your_writes"],
            "instead of its last acknowledged value",
        ),
    ];
    for (kind, failing, evidence_names) in cases {
        let knob = format!("stack.services.fabric.env.FABRIC_TEST_ACK_BEFORE_WRITE={kind}");
        let (o, out) = run_scenario(
            &scenario,
            &[
                "workload.phases.warmup.duration=1s",
                "workload.phases.steady.duration=7s",
                "faults.0={ name: crash, at: 2s, every: 3s, count: 2, kill: fabric, signal: KILL, restart_after: 1s }",
                "workload.operations.put.fabric.kv.put.key.count=1000000",
                &knob,
            ],
        );
        assert_exit(&o, 1, &format!("{kind}: "));
        let run = run_dir(out.path());
        let faults = parse(&std::fs::read(run.join("faults.json")).unwrap()).unwrap();
        assert_eq!(faults.len(), 2, "{kind}: {faults:?}");
        assert!(faults.iter().all(|f| f.kind == "process.kill"));
        let checks = check_verdicts(&run);
        assert_eq!(checks.len(), 4, "{kind}: {checks:?}");
        for (check, passed, evidence) in &checks {
            let fails = failing.contains(&check.as_str());
            assert_eq!(!passed, fails, "{kind}: {check}: {evidence}");
            if fails {
                assert!(
                    evidence.contains(evidence_names),
                    "{kind}: {check}: {evidence}"
                );
                // Named: the lost writes, when they were acknowledged, and
                // which kill they preceded.
                assert!(
                    evidence.contains("(operation "),
                    "{kind}: {check}: {evidence}"
                );
                assert!(
                    evidence.contains("fault `crash"),
                    "{kind}: {check}: {evidence}"
                );
                assert!(text(&o.stdout).contains(&format!("check FAIL {check}")));
            }
        }
        // The lost appends are named by offset.
        if kind == "append" {
            let lost = &checks
                .iter()
                .find(|c| c.0 == "fabric.no_acked_write_lost")
                .unwrap()
                .2;
            assert!(lost.contains("offset "), "{lost}");
        }
        // The node warned that the knob was set.
        let log = std::fs::read_to_string(run.join("logs/fabric.log")).unwrap();
        assert!(log.contains("FABRIC_TEST_ACK_BEFORE_WRITE"), "{log}");
    }
}

/// Jobs whose every attempt is nacked end in the queue's dead-letter
/// queue; the read-back lists it, and `fabric.queue.at_least_once` counts
/// them as delivered there (not lost) and says how many.
#[test]
fn jobs_that_exhausted_their_retries_are_found_in_the_dlq() {
    fabric_node();
    let out = tempfile::tempdir().unwrap();
    let scenario = out.path().join("dlq.yaml");
    std::fs::write(
        &scenario,
        r#"
name: dlq
seed: 5
stack:
  services:
    fabric: { kind: fabric, env: { STORAGE_FSYNC_POLICY: batch } }
workload:
  max_in_flight: 64
  phases:
    - { name: fill, duration: 1s, rate: 40/s, mix: { produce: 1 } }
    - { name: fail, duration: 3s, rate: 100/s, mix: { work: 1 } }
  operations:
    - { name: produce, weight: 0, fabric.queue.enqueue: { queue: test/dlq/jobs, payload: { json: { job: "{{seq}}" } } } }
    - name: work
      weight: 0
      fabric.queue.reserve: { queue: test/dlq/jobs, visibility: 30s }
      then: [ { fabric.queue.nack: { delay: 0s } } ]
checks: [fabric.queue.at_least_once]
"#,
    )
    .unwrap();
    let (o, runs) = run_scenario(&scenario, &[]);
    assert_exit(&o, 0, "");
    let run = run_dir(runs.path());
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("verdict.json")).unwrap()).unwrap();
    let check = &doc["checks"][0];
    assert_eq!(check["name"], "fabric.queue.at_least_once");
    assert_eq!(check["passed"], true, "{check}");
    let count = |k: &str| check["counts"][k].as_u64().unwrap_or(0);
    // 40 jobs, each reserved and nacked up to its 3 attempts by 300 reserves.
    assert!(count("acknowledged_enqueues") > 0, "{check}");
    assert!(count("in_dlq") > 0, "{check}");
    assert_eq!(
        count("in_dlq") + count("delivered_by_drain"),
        count("expected_after_drain"),
        "{check}"
    );
    let evidence = check["evidence"].as_str().unwrap();
    assert!(
        evidence.contains(&format!(": {} found in a DLQ", count("in_dlq"))),
        "{evidence}"
    );
    let rb: gauntlet_checkers::ReadBack =
        serde_json::from_slice(&std::fs::read(run.join("readback.json")).unwrap()).unwrap();
    assert_eq!(rb.dlq["test/dlq/jobs"].len() as u64, count("in_dlq"));
}

/// A fault whose time came but which is still being applied when the load
/// ends (here a restart whose service never becomes ready again) fails the
/// run with exit 3 and a message naming the fault; the service is stopped.
#[test]
fn a_fault_that_outran_the_load_fails_the_run() {
    let fabric = fabric_node();
    let out = tempfile::tempdir().unwrap();
    let scenario = out.path().join("outran.yaml");
    std::fs::write(
        &scenario,
        format!(
            r#"
name: outran
stack:
  services:
    web:
      # Ready the first time; after the restart it never is again.
      command: [bash, -c, 'mkdir -p {{data_dir}}; if [ -e {{data_dir}}/started ]; then exec -a gauntlet-outran-{{data_dir}} sleep 120; fi; touch {{data_dir}}/started; exec "{}" --http-addr {{addr}} --data-dir {{data_dir}}/fabric']
      ready_timeout: 60s
      stop_timeout: 5s
workload:
  phases: [ {{ name: p, duration: 3s, rate: 20/s }} ]
  operations: [ {{ name: health, weight: 1, http: {{ service: web, url: /health }} }} ]
faults:
  - {{ name: slow-restart, at: 1s, restart: web }}
"#,
            fabric.display()
        ),
    )
    .unwrap();
    let (o, runs) = run_scenario(&scenario, &[]);
    let all = format!("{}\n{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(3), "{all}");
    assert!(
        all.contains("fault `slow-restart` was still being applied when the load ended"),
        "{all}"
    );
    let run = run_dir(runs.path());
    let faults =
        parse(&std::fs::read(run.join("faults.json")).unwrap_or_else(|_| b"[]".to_vec())).unwrap();
    assert!(
        faults.iter().all(|f| f.name != "slow-restart"),
        "{faults:?}"
    );
    // The restarted service (never ready) was stopped with the run.
    let log = std::fs::read_to_string(run.join("logs/web.log")).unwrap_or_default();
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    let leaked: Vec<&str> = std::str::from_utf8(&ps.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("gauntlet-outran-") && l.contains(runs.path().to_str().unwrap()))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}\n{log}");
}

/// The read-back's drain waits at most `readback.drain_within` for jobs
/// leased during the run: jobs reserved with a visibility timeout far
/// longer and never acked make it fail clearly (exit 3, naming the queue,
/// what is still leased and the bound) instead of waiting for them.
#[test]
fn a_drain_that_cannot_finish_fails_at_its_bound() {
    fabric_node();
    let out = tempfile::tempdir().unwrap();
    let scenario = out.path().join("stuck.yaml");
    std::fs::write(
        &scenario,
        r#"
name: stuck
stack:
  services:
    fabric: { kind: fabric, env: { STORAGE_FSYNC_POLICY: batch } }
workload:
  phases:
    - { name: fill, duration: 1s, rate: 20/s, mix: { produce: 1 } }
    - { name: lease, duration: 1s, rate: 60/s, mix: { take: 1 } }
  operations:
    - { name: produce, weight: 0, fabric.queue.enqueue: { queue: test/stuck/jobs, payload: 64B } }
    - { name: take, weight: 0, fabric.queue.reserve: { queue: test/stuck/jobs, visibility: 10m } }
checks: [fabric.queue.at_least_once]
readback: { drain_within: 2s }
"#,
    )
    .unwrap();
    let (o, runs) = run_scenario(&scenario, &[]);
    let all = format!("{}\n{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(3), "{all}");
    assert!(all.contains("draining queue test/stuck/jobs"), "{all}");
    assert!(all.contains("still leased"), "{all}");
    assert!(all.contains("after 2s"), "{all}");
    assert!(all.contains("drain_within"), "{all}");
    // No verdict is claimed for a queue that could not be drained.
    let run = run_dir(runs.path());
    let verdict = std::fs::read_to_string(run.join("verdict.json")).unwrap_or_default();
    assert!(!verdict.contains("\"passed\": true"), "{verdict}");
}
