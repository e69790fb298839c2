//! Every scenario of `scenarios/chaos/` runs here, shortened with `--set`,
//! against the real fabric through the real fault proxy, and passes; the
//! faults it names are in `faults.json`, their effect is visible in
//! `results.json`, and `recovery` states each fault's recovery.

mod common;

use std::path::{Path, PathBuf};

use common::{fabric_node, loadgen, text};
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
        _ => return None,
    })
}

fn run_dir(root: &Path) -> PathBuf {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir() && !p.ends_with("latest"))
        .expect("a run directory")
}

/// Errors of `operation` in the intervals overlapping `[from, to)`.
fn errors_between(r: &RunResults, operation: &str, from: f64, to: f64) -> u64 {
    r.intervals
        .iter()
        .filter(|i| i.t_s + 1.0 > from && i.t_s < to)
        .flat_map(|i| i.operations.iter().filter(|o| o.operation == operation))
        .map(|o| o.errors)
        .sum()
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
    assert!(!scenarios.is_empty());
    for scenario in scenarios {
        let name = scenario.file_stem().unwrap().to_str().unwrap().to_owned();
        let sets = shortened(&name)
            .unwrap_or_else(|| panic!("{name}: add how to shorten it to tests/chaos.rs"));
        let out = tempfile::tempdir().unwrap();
        let mut args = vec!["run", scenario.to_str().unwrap(), "--quiet", "--out"];
        args.push(out.path().to_str().unwrap());
        for s in sets {
            args.extend(["--set", s]);
        }
        let o = loadgen(&args, out.path());
        assert_eq!(
            o.status.code(),
            Some(0),
            "{name}: {}\n{}",
            text(&o.stdout),
            text(&o.stderr)
        );

        let run = run_dir(out.path());
        let faults = parse(&std::fs::read(run.join("faults.json")).unwrap()).unwrap();
        let r: RunResults =
            serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
        assert!(r.complete, "{name}");
        for f in &faults {
            assert!(f.end_s.is_some(), "{name}: {} healed", f.name);
        }
        let ops = ["append", "read"];
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
        match name.as_str() {
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
fn a_kill_goes_through_the_stack_and_checks_are_refused_until_wired() {
    fabric_node();
    let out = tempfile::tempdir().unwrap();
    let scenario = out.path().join("s.yaml");
    let text_of = format!(
        "{}faults:\n  - {{ at: 1s, kill: fabric, restart_after: 1s }}\n",
        common::SHORT.replace("duration: 1s, rate: 300/s", "duration: 3s, rate: 300/s")
    );
    std::fs::write(&scenario, text_of).unwrap();
    let o = loadgen(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--quiet",
            "--out",
            out.path().to_str().unwrap(),
        ],
        out.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let run = run_dir(out.path());
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

    let out = tempfile::tempdir().unwrap();
    let scenario = out.path().join("s.yaml");
    std::fs::write(
        &scenario,
        format!("{}checks: [fabric.no_acked_write_lost]\n", common::SHORT),
    )
    .unwrap();
    let o = loadgen(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--quiet",
            "--out",
            out.path().to_str().unwrap(),
        ],
        out.path(),
    );
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o.stderr).contains("needs the operation history"),
        "{}",
        text(&o.stderr)
    );
}
