//! The Reflow checks on constructed read-backs: each passes on a clean
//! one and fails, naming its evidence, on a broken one.

use std::collections::BTreeMap;

use gauntlet_checkers::reflow::{
    ReflowNodeState, ReflowReadBack, ReflowStall, accepted_reach_sink, trace_events_complete,
};
use gauntlet_checkers::{History, ReadBack};
use gauntlet_recorder::faults::Fault;

fn readback(node: ReflowNodeState) -> ReadBack {
    ReadBack {
        reflow: Some(ReflowReadBack {
            nodes: BTreeMap::from([("reflow".to_owned(), node)]),
            run_start_unix_s: 1000.0,
            drain_within_s: 3.0,
        }),
        ..ReadBack::default()
    }
}

fn restart() -> Vec<Fault> {
    vec![Fault {
        name: "restart-ts".into(),
        kind: "process.restart".into(),
        target: "ts".into(),
        start_s: 5.0,
        end_s: Some(6.0),
        params: BTreeMap::new(),
    }]
}

#[test]
fn a_drained_graph_passes_and_a_stall_fails_naming_the_actor() {
    let h = History::default();
    let clean = readback(ReflowNodeState {
        accepted: 100,
        completed: 100,
        ..Default::default()
    });
    assert!(accepted_reach_sink(&h, &clean, &[]).passed);
    let stalled = readback(ReflowNodeState {
        accepted: 100,
        completed: 60,
        in_flight: 40,
        stall: Some(ReflowStall {
            actor: "map".into(),
            kind: "map".into(),
            why: "its task panicked".into(),
            stuck: 38,
            in_flight: 40,
        }),
        ..Default::default()
    });
    let v = accepted_reach_sink(&h, &stalled, &[]);
    assert!(!v.passed);
    assert!(
        v.evidence.contains("map `map`") && v.evidence.contains("38 message(s) stuck"),
        "{}",
        v.evidence
    );
    let silent = readback(ReflowNodeState {
        accepted: 100,
        completed: 90,
        in_flight: 10,
        ..Default::default()
    });
    let v = accepted_reach_sink(&h, &silent, &[]);
    assert!(
        !v.passed && v.evidence.contains("did not reach a sink"),
        "{}",
        v.evidence
    );
    assert!(!accepted_reach_sink(&h, &ReadBack::default(), &[]).passed);
}

#[test]
fn lost_trace_events_are_counted_and_placed_in_the_fault_windows() {
    let h = History::default();
    let handed = BTreeMap::from([(1004, 10), (1005, 10), (1007, 10)]);
    let all = ReflowNodeState {
        tracing: true,
        processed_per_s: BTreeMap::from([("map".to_owned(), handed.clone())]),
        stored_per_s: BTreeMap::from([("map".to_owned(), handed.clone())]),
        ..Default::default()
    };
    assert!(trace_events_complete(&h, &readback(all), &restart()).passed);
    let lossy = ReflowNodeState {
        tracing: true,
        processed_per_s: BTreeMap::from([("map".to_owned(), handed)]),
        stored_per_s: BTreeMap::from([("map".to_owned(), BTreeMap::from([(1004, 10), (1005, 4)]))]),
        ..Default::default()
    };
    let v = trace_events_complete(&h, &readback(lossy), &restart());
    assert!(!v.passed);
    assert_eq!(v.counts["lost"], 16);
    assert!(
        v.evidence.contains("6 during `restart-ts`"),
        "{}",
        v.evidence
    );
    assert!(
        v.evidence.contains("10 after `restart-ts`"),
        "{}",
        v.evidence
    );
    let off = readback(ReflowNodeState::default());
    assert!(!trace_events_complete(&h, &off, &[]).passed);
}
