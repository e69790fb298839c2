//! The actor node end to end, against the real `actor-node`: every actors
//! scenario of `scenarios/chaos/` runs shortened (`--set`) with its checks
//! passing and its faults in `faults.json`; every actors scenario of
//! `scenarios/perf/` runs shortened, its set-up created and its messages
//! counted; and the checkers fail when they should — a component stalled
//! past the scenario's bound (`actors.no_silent_stall`) and a component
//! given up by its supervisor (`actors.restarts_bounded`) fail the run
//! (exit 1), naming the component. Behaviour only, never timings.

mod common;

use std::path::{Path, PathBuf};

use common::{
    actor_node, assert_exit, chaos_scenario, check_verdicts, only_run_dir, perf_scenario, results,
    run_scenario,
};
use gauntlet_recorder::faults::parse;

/// How each chaos scenario is shortened for the tests.
fn shortened(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "actors-panic" => &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=12s",
            "faults.0.at=4s",
            "faults.1.at=6s",
        ],
        "actors-kill" => &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=10s",
            "faults.0.at=5s",
        ],
        "actors-pause" => &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=8s",
            "faults.0.at=4s",
            "faults.0.for=2s",
        ],
        _ => return None,
    })
}

fn scenarios(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && p.file_stem()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("actors-")
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_actors_chaos_scenario_passes_against_the_node() {
    actor_node();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/chaos");
    let all = scenarios(&dir);
    assert_eq!(all.len(), 3, "{all:?}");
    for scenario in all {
        let name = scenario.file_stem().unwrap().to_str().unwrap().to_owned();
        let sets = shortened(&name)
            .unwrap_or_else(|| panic!("{name}: add how to shorten it to tests/actors.rs"));
        let (o, out) = run_scenario(&scenario, sets);
        assert_exit(&o, 0, &format!("{name}: "));
        let run = only_run_dir(out.path());
        let faults = parse(&std::fs::read(run.join("faults.json")).unwrap()).unwrap();
        assert!(!faults.is_empty(), "{name}");
        for f in &faults {
            assert!(f.end_s.is_some(), "{name}: {} healed", f.name);
        }
        let kinds: Vec<&str> = faults.iter().map(|f| f.kind.as_str()).collect();
        match name.as_str() {
            "actors-panic" => {
                assert_eq!(
                    kinds,
                    ["actor.panic", "actor.panic", "actor.panic", "actor.panic"],
                    "{name}"
                );
                assert_eq!(faults[0].params["component"], "orders-2");
            }
            "actors-kill" => assert_eq!(kinds, ["process.kill"], "{name}"),
            "actors-pause" => assert_eq!(kinds, ["process.pause"], "{name}"),
            _ => unreachable!("listed in shortened()"),
        }
        let checks = check_verdicts(&run);
        let names: Vec<&str> = checks.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "actors.no_acked_message_lost",
                "actors.no_silent_stall",
                "actors.restarts_bounded"
            ],
            "{name}"
        );
        for (check, passed, evidence) in &checks {
            assert!(passed, "{name}: {check}: {evidence}");
        }
        // The history holds the acknowledged sends; the read-back the sink.
        let history = gauntlet_checkers::History::read(&run.join("history.jsonl")).unwrap();
        assert!(
            history
                .operations
                .iter()
                .filter(|o| o.outcome.is_ok())
                .count()
                > 50,
            "{name}"
        );
        let readback: gauntlet_checkers::ReadBack =
            serde_json::from_slice(&std::fs::read(run.join("readback.json")).unwrap()).unwrap();
        let sink = &readback.components["orders-3"];
        assert!(
            sink.handled > 0 && !sink.keys.is_empty(),
            "{name}: {sink:?}"
        );
        if name == "actors-panic" {
            // Supervision restarted the panicking stage and the counter.
            assert!(
                readback.components["orders-2"].restarts >= 1,
                "{readback:?}"
            );
            assert!(
                readback.components["orders-3"].restarts >= 1,
                "{readback:?}"
            );
        }
    }
}

#[test]
fn every_actors_perf_scenario_runs_its_setup_and_counts_messages() {
    actor_node();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/perf");
    let all = scenarios(&dir);
    assert_eq!(all.len(), 4, "{all:?}");
    for scenario in all {
        let name = scenario.file_stem().unwrap().to_str().unwrap().to_owned();
        let (o, out) = run_scenario(
            &scenario,
            &[
                "workload.phases.warmup.duration=1s",
                "workload.phases.steady.duration=2s",
            ],
        );
        assert_exit(&o, 0, &format!("{name}: "));
        let r = results(&only_run_dir(out.path()));
        assert!(r.complete, "{name}");
        for op in &r.totals {
            assert!(op.count > 0, "{name}: {}", op.operation);
            assert_eq!(op.errors, 0, "{name}: {op:?}");
        }
        match name.as_str() {
            "actors-pipeline" => {
                let m = r.total("message").unwrap();
                assert_eq!(m.messages, Some(m.count * 1000), "batches of 1000");
            }
            "actors-fanout" => {
                let m = r.total("fanout_100").unwrap();
                assert_eq!(m.messages, Some(m.count));
            }
            "actors-request" => {
                assert_eq!(r.total("request_response").unwrap().messages, None);
            }
            "actors-spawn-storm" => {
                // Every component spawned was stopped by its chain.
                let spawned = r.total("spawn").unwrap().count;
                assert_eq!(r.total("spawn.stop").unwrap().count, spawned);
                let batches = r.total("spawn_batch").unwrap().count;
                assert_eq!(r.total("spawn_batch.stop").unwrap().count, batches * 100);
                assert_eq!(
                    r.total("lifecycle.send").unwrap().count,
                    r.total("lifecycle").unwrap().count
                );
            }
            other => panic!("{other}: add what to assert of it to tests/actors.rs"),
        }
    }
}

/// Runs `actors-panic` with `sets`, expects exit 1 with `check` failed,
/// and returns its evidence and the run directory (kept alive by the temp dir).
fn failing_check(sets: &[&str], check: &str) -> (String, PathBuf, tempfile::TempDir) {
    actor_node();
    let (o, out) = run_scenario(&chaos_scenario("actors-panic.yaml"), sets);
    assert_exit(&o, 1, "");
    let run = only_run_dir(out.path());
    let (_, passed, evidence) = check_verdicts(&run)
        .into_iter()
        .find(|c| c.0 == check)
        .unwrap_or_else(|| panic!("{check} ran"));
    assert!(!passed, "{check}: {evidence}");
    (evidence, run, out)
}

/// A pipeline stage stalled for 12 s, well past the scenario's 2 s bound:
/// no send is acknowledged within the bound after the fault window, so
/// `actors.no_silent_stall` fails naming the fault; the run exits 1 (the
/// node still stops gracefully: its drain waits the stall out). (The
/// in-flight sends hold every slot until the stall ends, so the read-back
/// comes after it; a component seen stalled at the read-back is named by
/// the checker's unit tests.)
#[test]
fn a_silent_stall_fails_the_stall_check_naming_the_fault() {
    let (evidence, run, _out) = failing_check(
        &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=6s",
            "workload.timeout=2s",
            "faults=[{ name: stall, at: 3s, for: 1s, actor_stall: actors, component: orders-2, stall: 12s }]",
            "readback.stall_within=2s",
            "stack.services.actors.stop_timeout=30s",
        ],
        "actors.no_silent_stall",
    );
    assert!(evidence.contains("fault `stall`"), "{evidence}");
    let faults = parse(&std::fs::read(run.join("faults.json")).unwrap()).unwrap();
    assert_eq!(faults[0].kind, "actor.stall");
}

/// A stage whose restart intensity (1 restart) is exceeded by repeated
/// panics is given up (`failed`): `actors.restarts_bounded` fails naming it.
#[test]
fn a_component_given_up_fails_the_restart_check() {
    let (evidence, _, _out) = failing_check(
        &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=6s",
            "setup.actors.pipelines.0.stages.1.max_restarts=1",
            "faults=[{ name: panics, at: 3s, for: 2s, actor_panic: actors, component: orders-2, panic_after: 10, repeat: true }]",
        ],
        "actors.restarts_bounded",
    );
    assert!(evidence.contains("orders-2"), "{evidence}");
}

#[test]
fn the_perf_scenarios_are_bundled() {
    for f in [
        "actors-pipeline.yaml",
        "actors-request.yaml",
        "actors-fanout.yaml",
        "actors-spawn-storm.yaml",
    ] {
        assert!(perf_scenario(f).is_file(), "{f}");
    }
}
