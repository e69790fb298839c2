//! Reflow nodes end to end: the real `reflow-node` on the published
//! `reflow_network` 0.2.1 runtime, with the real `tracing-server`,
//! PostgreSQL and Redis (process mode). Each `scenarios/chaos/reflow-*`
//! scenario runs shortened and shows what its README section says: the
//! panic stall detected and named (`reflow.accepted_reach_sink` fails,
//! naming `map`), the tracing client's lost events counted per fault window
//! (`reflow.trace_events_complete` fails) — and both checks pass where
//! nothing is wrong, so neither fails regardless. Behaviour only.

mod common;

use std::path::Path;

use common::{
    assert_exit, chaos_scenario, check_verdicts, only_run_dir, perf_scenario, reflow_node, results,
    run_scenario, tracing_server,
};

fn verdict<'a>(checks: &'a [(String, bool, String)], name: &str) -> &'a (String, bool, String) {
    checks
        .iter()
        .find(|c| c.0 == name)
        .unwrap_or_else(|| panic!("no verdict for {name}: {checks:?}"))
}

fn readback(run: &Path) -> gauntlet_checkers::reflow::ReflowReadBack {
    let rb: gauntlet_checkers::ReadBack =
        serde_json::from_slice(&std::fs::read(run.join("readback.json")).unwrap()).unwrap();
    rb.reflow.expect("the reflow read-back")
}

#[test]
fn every_reflow_chaos_scenario_is_tested_here() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/chaos");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .filter(|n| n.starts_with("reflow-"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "reflow-actor-panic",
            "reflow-tracing-cost",
            "reflow-tracing-restart"
        ]
    );
    assert!(perf_scenario("reflow-pipeline.yaml").is_file());
}

/// Upstream bug 1: a panicking actor stalls the pipeline silently. The run
/// does not hang; the check fails naming the actor and the count stuck.
#[test]
fn an_actor_panic_under_load_is_detected_and_named() {
    reflow_node();
    let (o, out) = run_scenario(
        &chaos_scenario("reflow-actor-panic.yaml"),
        &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=5s",
            "faults.0.at=3s",
        ],
    );
    assert_exit(&o, 1, "the check fails by design: ");
    let run = only_run_dir(out.path());
    let checks = check_verdicts(&run);
    let (_, passed, evidence) = verdict(&checks, "reflow.accepted_reach_sink");
    assert!(!passed);
    assert!(evidence.contains("stalled at map `map`"), "{evidence}");
    assert!(evidence.contains("panicked"), "{evidence}");
    let rb = readback(&run);
    let node = &rb.nodes["reflow"];
    let stall = node.stall.as_ref().expect("a stall");
    assert_eq!(stall.actor, "map");
    assert!(node.accepted > node.completed, "{node:?}");
    let faults =
        gauntlet_recorder::faults::parse(&std::fs::read(run.join("faults.json")).unwrap()).unwrap();
    assert_eq!(faults[0].kind, "reflow.actor_panic");
    // After the panic the node refused sends as unavailable (bounded), never hung.
    let r = results(&run);
    let send = r
        .phases
        .iter()
        .flat_map(|p| p.operations.iter())
        .find(|o| o.operation == "send" && o.errors > 0)
        .expect("refused sends");
    assert!(
        send.errors_by_kind.contains_key("http_503"),
        "{:?}",
        send.errors_by_kind
    );
}

/// Upstream bug 2: the tracing client loses events while the server
/// restarts and never reconnects; the check counts them per fault window.
#[test]
fn a_tracing_server_restart_loses_events_and_they_are_counted() {
    reflow_node();
    tracing_server();
    let (o, out) = run_scenario(
        &chaos_scenario("reflow-tracing-restart.yaml"),
        &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=6s",
            "faults.0.at=3s",
        ],
    );
    assert_exit(&o, 1, "the trace check fails by design: ");
    let run = only_run_dir(out.path());
    let checks = check_verdicts(&run);
    let (_, reached, e) = verdict(&checks, "reflow.accepted_reach_sink");
    assert!(reached, "{e}");
    let (_, passed, evidence) = verdict(&checks, "reflow.trace_events_complete");
    assert!(!passed);
    assert!(evidence.contains("lost"), "{evidence}");
    assert!(evidence.contains("`restart-ts`"), "{evidence}");
    let rb = readback(&run);
    let node = &rb.nodes["reflow"];
    let handed: u64 = node.processed_per_s.values().flat_map(|m| m.values()).sum();
    let stored: u64 = node.stored_per_s.values().flat_map(|m| m.values()).sum();
    assert!(
        stored > 0 && stored < handed,
        "handed {handed}, stored {stored}"
    );
}

/// Upstream bug 3: tracing's cost, side by side in one run; and with
/// tracing on and no fault, every event is stored (the check passes).
#[test]
fn tracing_on_and_off_run_side_by_side() {
    reflow_node();
    tracing_server();
    let (o, out) = run_scenario(
        &chaos_scenario("reflow-tracing-cost.yaml"),
        &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=4s",
            "workload.phases.steady.rate=20/s",
            "workload.operations.0.reflow.send.batch=50",
            "workload.operations.1.reflow.send.batch=50",
            "checks=[reflow.accepted_reach_sink, reflow.trace_events_complete]",
        ],
    );
    assert_exit(&o, 0, "");
    let run = only_run_dir(out.path());
    for (name, passed, evidence) in check_verdicts(&run) {
        assert!(passed, "{name}: {evidence}");
    }
    let r = results(&run);
    let steady = r.phases.iter().find(|p| p.name == "steady").unwrap();
    for op in ["plain", "traced"] {
        let o = steady
            .operations
            .iter()
            .find(|o| o.operation == op)
            .unwrap();
        assert!(o.count > 0 && o.errors == 0, "{op}: {o:?}");
        assert!(o.messages_per_s.unwrap_or(0.0) > 0.0, "{op}");
    }
}
