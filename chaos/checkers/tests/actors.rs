//! The actor node's checkers against synthetic histories and read-backs:
//! a node that counts every acknowledged message, resumes after its faults
//! and keeps within its restart budgets passes; one that lost a message
//! at a sink, stalled silently or restarted too often fails, and the
//! evidence names the counter, key, fault or component.

use std::collections::BTreeMap;

use gauntlet_checkers::checks::{no_acked_message_lost, no_silent_stall, restarts_bounded};
use gauntlet_checkers::*;
use gauntlet_recorder::faults::Fault;
use proptest::prelude::*;

fn send(id: u64, t: f64, keys: &[(&str, u64)], outcome: Outcome) -> Operation {
    Operation {
        id,
        invoked_s: t,
        completed_s: Some(t + 0.01),
        invocation: Invocation::ActorSend {
            component: "orders".into(),
            sinks: vec!["orders-3".into()],
            keys: keys.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect(),
        },
        outcome,
    }
}

fn ok() -> Outcome {
    Outcome::Ok(Acknowledged::default())
}

fn counted(keys: &[(&str, u64)]) -> ComponentStatus {
    ComponentStatus {
        state: "running".into(),
        handled: keys.iter().map(|(_, n)| n).sum(),
        keys: keys.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect(),
        ..ComponentStatus::default()
    }
}

fn readback(sink: ComponentStatus) -> ReadBack {
    ReadBack {
        components: BTreeMap::from([("orders-3".to_owned(), sink.clone())]),
        components_later: BTreeMap::from([("orders-3".to_owned(), sink)]),
        stall_within_s: 2.0,
        ..ReadBack::default()
    }
}

fn fault(name: &str, start: f64, end: f64) -> Fault {
    Fault {
        name: name.into(),
        kind: "actor.panic".into(),
        target: "actors".into(),
        start_s: start,
        end_s: Some(end),
        params: BTreeMap::new(),
    }
}

#[test]
fn every_acknowledged_message_counted_passes_and_a_lost_one_fails_naming_it() {
    let history = History {
        operations: vec![
            send(1, 1.0, &[("k-0", 100), ("k-1", 100)], ok()),
            send(2, 2.0, &[("k-0", 100)], ok()),
            // Unknown: may or may not be counted.
            send(3, 3.0, &[("k-1", 100)], Outcome::Unknown("http_500".into())),
            // Refused whole (429): never counted.
            send(4, 4.0, &[("k-1", 100)], Outcome::Fail("http_429".into())),
        ],
        torn_tail: false,
    };
    let faults = [fault("panic-1", 2.5, 3.5)];
    // Counted: all acknowledged, and the unknown send too.
    let good = readback(counted(&[("k-0", 200), ("k-1", 200)]));
    let v = no_acked_message_lost(&history, &good, &faults);
    assert!(v.passed, "{}", v.evidence);
    assert_eq!(v.counts["acknowledged_messages"], 300);
    assert_eq!(v.counts["over_counted"], 0);
    // The unknown send not counted: still fine.
    let without_unknown = readback(counted(&[("k-0", 200), ("k-1", 100)]));
    assert!(no_acked_message_lost(&history, &without_unknown, &faults).passed);
    // One acknowledged message of `k-0` lost at the sink.
    let lossy = readback(counted(&[("k-0", 199), ("k-1", 200)]));
    let v = no_acked_message_lost(&history, &lossy, &faults);
    assert!(!v.passed);
    assert_eq!(v.counts["lost"], 1);
    assert!(
        v.evidence.contains(
            "counter orders-3 counted 199 message(s) of key `k-0`, 200 were acknowledged (1 lost)"
        ),
        "{}",
        v.evidence
    );
    // The last acknowledged send of that key is the evidence's operation.
    assert_eq!(v.violations[0].operation, 2);
    // A sink never read back is a failure, not a pass.
    let v = no_acked_message_lost(&history, &ReadBack::default(), &faults);
    assert!(!v.passed);
    assert!(
        v.evidence.contains("orders-3 was not read back"),
        "{}",
        v.evidence
    );
}

#[test]
fn sends_resuming_after_each_fault_pass_and_a_silent_stall_fails_naming_it() {
    let faults = [fault("stall", 5.0, 6.0)];
    let resumed = History {
        operations: vec![
            send(1, 4.0, &[("k", 1)], ok()),
            send(2, 6.5, &[("k", 1)], ok()),
        ],
        torn_tail: false,
    };
    let rb = readback(counted(&[("k", 2)]));
    let v = no_silent_stall(&resumed, &rb, &faults);
    assert!(v.passed, "{}", v.evidence);
    assert_eq!(v.counts["faults_checked"], 1);
    // Sends after the fault, none acknowledged within 2 s of its end.
    let stuck = History {
        operations: vec![
            send(1, 4.0, &[("k", 1)], ok()),
            send(2, 6.5, &[("k", 1)], Outcome::Unknown("timeout".into())),
            send(3, 7.0, &[("k", 1)], Outcome::Unknown("timeout".into())),
        ],
        torn_tail: false,
    };
    let v = no_silent_stall(&stuck, &rb, &faults);
    assert!(!v.passed);
    assert!(
        v.evidence
            .contains("no send was acknowledged within 2.0 s after fault `stall` healed"),
        "{}",
        v.evidence
    );
    // A component sitting on queued messages, handling none, not failed.
    let mut stalled = readback(counted(&[("k", 2)]));
    let first = ComponentStatus {
        state: "running".into(),
        mailbox_depth: 300,
        handled: 1200,
        ..ComponentStatus::default()
    };
    stalled.components.insert("orders-2".into(), first.clone());
    stalled
        .components_later
        .insert("orders-2".into(), first.clone());
    let v = no_silent_stall(&resumed, &stalled, &faults);
    assert!(!v.passed);
    assert!(
        v.evidence
            .contains("component orders-2 holds 300 queued message(s) and handled none in 2.0 s"),
        "{}",
        v.evidence
    );
    // Handling them (slowly) is no stall; nor is a component given up (`failed`).
    let mut moving = stalled.clone();
    moving.components_later.get_mut("orders-2").unwrap().handled = 1201;
    assert!(no_silent_stall(&resumed, &moving, &faults).passed);
    let mut failed = stalled.clone();
    failed.components_later.get_mut("orders-2").unwrap().state = "failed".into();
    assert!(no_silent_stall(&resumed, &failed, &faults).passed);
}

#[test]
fn restarts_within_budget_pass_and_over_budget_or_failed_fail() {
    let history = History::default();
    let mut rb = readback(counted(&[]));
    rb.components.get_mut("orders-3").unwrap().restarts = 3;
    rb.restart_budgets.insert("orders-3".into(), 3);
    let v = restarts_bounded(&history, &rb, &[]);
    assert!(v.passed, "{}", v.evidence);
    assert_eq!(v.counts["restarts"], 3);
    rb.components.get_mut("orders-3").unwrap().restarts = 4;
    let v = restarts_bounded(&history, &rb, &[]);
    assert!(!v.passed);
    assert!(
        v.evidence
            .contains("component orders-3 restarted 4 time(s), over its budget of 3"),
        "{}",
        v.evidence
    );
    // Without a budget of its own, the node's default of 10.
    let mut rb = readback(counted(&[]));
    rb.components.get_mut("orders-3").unwrap().restarts = 10;
    assert!(restarts_bounded(&history, &rb, &[]).passed);
    rb.components.get_mut("orders-3").unwrap().state = "failed".into();
    let v = restarts_bounded(&history, &rb, &[]);
    assert!(!v.passed);
    assert!(
        v.evidence.contains("orders-3 is `failed`"),
        "{}",
        v.evidence
    );
    // Nothing read back: unverified, so failed.
    assert!(!restarts_bounded(&history, &ReadBack::default(), &[]).passed);
}

proptest! {
    /// A sink that counts every acknowledged message (and any subset of
    /// the unknown ones) passes; removing one acknowledged message of any
    /// key fails, naming that key.
    #[test]
    fn counting_sinks_pass_and_any_loss_fails(
        sends in proptest::collection::vec((0usize..4, 1u64..50, 0u8..3, any::<bool>()), 1..40),
        lose in any::<prop::sample::Index>(),
    ) {
        let mut ops = Vec::new();
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut acked_keys = Vec::new();
        for (i, (key, n, kind, applied)) in sends.iter().enumerate() {
            let key = format!("k-{key}");
            let outcome = match kind {
                0 | 1 => ok(),
                _ => Outcome::Unknown("timeout".into()),
            };
            if outcome.is_ok() || *applied {
                *counts.entry(key.clone()).or_default() += n;
            }
            if outcome.is_ok() {
                acked_keys.push(key.clone());
            }
            ops.push(send(i as u64 + 1, i as f64, &[(&key, *n)], outcome));
        }
        let history = History { operations: ops, torn_tail: false };
        let pairs: Vec<(&str, u64)> = counts.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        let v = no_acked_message_lost(&history, &readback(counted(&pairs)), &[]);
        prop_assert!(v.passed, "{}", v.evidence);
        if !acked_keys.is_empty() {
            // Lose one message of an acknowledged key beyond any unknown slack.
            let key = lose.get(&acked_keys).clone();
            let acked: u64 = history.operations.iter().filter(|o| o.outcome.is_ok()).filter_map(|o| match &o.invocation {
                Invocation::ActorSend { keys, .. } => keys.get(&key).copied(),
                _ => None,
            }).sum();
            let mut lossy = counts.clone();
            lossy.insert(key.clone(), acked - 1);
            let pairs: Vec<(&str, u64)> = lossy.iter().map(|(k, n)| (k.as_str(), *n)).collect();
            let v = no_acked_message_lost(&history, &readback(counted(&pairs)), &[]);
            prop_assert!(!v.passed);
            let needle = format!("key `{key}`");
            prop_assert!(v.evidence.contains(&needle), "{}", v.evidence);
        }
    }
}
