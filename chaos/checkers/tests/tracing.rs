//! The tracing server's checkers against synthetic histories and
//! read-backs: a server that stores every acknowledged event, notifies
//! every subscriber and never acknowledges while PostgreSQL is down
//! passes; one that lost or changed an event, missed a notification, or
//! acknowledged an event during a PostgreSQL kill fails, and the evidence
//! names the event, the subscriber or the fault.

use std::collections::BTreeMap;

use gauntlet_checkers::checks::{
    no_acked_event_lost, no_false_ack, postgres_down, subscribers_see_events,
};
use gauntlet_checkers::*;
use gauntlet_recorder::faults::Fault;

fn ok() -> Outcome {
    Outcome::Ok(Acknowledged::default())
}

fn record(id: u64, t: f64, event: &str, digest: &str, outcome: Outcome) -> Operation {
    Operation {
        id,
        invoked_s: t,
        completed_s: Some(t + 0.01),
        invocation: Invocation::TracingRecord {
            event_id: event.into(),
            trace_id: "t-1".into(),
            digest: Digest(digest.into()),
            actor_id: "actor-1".into(),
            service: "ts1".into(),
        },
        outcome,
    }
}

fn op(id: u64, t: f64, invocation: Invocation) -> Operation {
    Operation {
        id,
        invoked_s: t,
        completed_s: Some(t),
        invocation,
        outcome: ok(),
    }
}

fn readback(events: &[(&str, &str)]) -> ReadBack {
    ReadBack {
        tracing: Some(TracingReadBack {
            events: events
                .iter()
                .map(|(e, d)| ((*e).to_owned(), Digest((*d).to_owned())))
                .collect(),
            looked_up: events.len() as u64,
            postgres_services: vec!["db".into()],
            notify_within_s: 1.0,
        }),
        ..ReadBack::default()
    }
}

fn history(operations: Vec<Operation>) -> History {
    History {
        operations,
        torn_tail: false,
    }
}

#[test]
fn every_acknowledged_event_stored_passes() {
    let h = history(vec![
        record(1, 1.0, "e1", "10:aa", ok()),
        record(
            2,
            1.1,
            "e2",
            "10:bb",
            Outcome::Unknown("tracing_storage_error".into()),
        ),
        record(
            3,
            1.2,
            "e3",
            "10:cc",
            Outcome::Fail("tracing_invalid_request".into()),
        ),
    ]);
    let v = no_acked_event_lost(&h, &readback(&[("e1", "10:aa")]), &[]);
    assert!(v.passed, "{}", v.evidence);
    assert_eq!(v.counts["acknowledged_events"], 1);
    assert_eq!(v.counts["unknown_events"], 1);
}

#[test]
fn a_lost_or_changed_event_fails_naming_it() {
    let h = history(vec![
        record(1, 1.0, "e1", "10:aa", ok()),
        record(2, 1.1, "e2", "10:bb", ok()),
    ]);
    let v = no_acked_event_lost(&h, &readback(&[("e2", "10:ff")]), &[]);
    assert!(!v.passed);
    assert_eq!(v.counts["missing"], 1);
    assert_eq!(v.counts["changed"], 1);
    assert!(v.evidence.contains("event e1 missing"), "{}", v.evidence);
    assert!(
        v.evidence.contains("e2 is stored as 10:ff"),
        "{}",
        v.evidence
    );
    // Nothing read back: unverified, so failed.
    let v = no_acked_event_lost(&h, &ReadBack::default(), &[]);
    assert!(!v.passed);
}

fn subscribed(id: u64, t: f64, who: &str) -> Operation {
    op(
        id,
        t,
        Invocation::TracingSubscribe {
            subscriber: who.into(),
            service: "ts1".into(),
        },
    )
}

fn notified(id: u64, t: f64, who: &str, events: &[&str]) -> Operation {
    op(
        id,
        t,
        Invocation::TracingNotified {
            subscriber: who.into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
        },
    )
}

fn ended(id: u64, t: f64, who: &str) -> Operation {
    op(
        id,
        t,
        Invocation::TracingSubscriptionEnded {
            subscriber: who.into(),
            reason: "ws_dropped".into(),
        },
    )
}

#[test]
fn subscribers_that_saw_every_event_pass() {
    let h = history(vec![
        record(1, 0.5, "e0", "1:0", ok()), // before the subscription: not required
        subscribed(2, 1.0, "s1"),
        record(3, 2.0, "e1", "1:1", ok()),
        notified(4, 2.02, "s1", &["e1"]),
        record(5, 9.5, "e2", "1:2", ok()), // within notify_within of the end
        ended(6, 10.0, "s1"),
    ]);
    let v = subscribers_see_events(&h, &readback(&[]), &[]);
    assert!(v.passed, "{}", v.evidence);
    assert_eq!(v.counts["expected_notifications"], 1);
    assert_eq!(v.counts["delivered"], 1);
}

#[test]
fn a_missed_notification_fails_naming_event_and_subscriber() {
    let h = history(vec![
        subscribed(1, 1.0, "fanout@ts1#1"),
        subscribed(2, 1.0, "fanout@ts2#1"),
        record(3, 2.0, "e1", "1:1", ok()),
        record(4, 3.0, "e2", "1:2", ok()),
        notified(5, 2.02, "fanout@ts1#1", &["e1", "e2"]),
        notified(6, 2.02, "fanout@ts2#1", &["e1"]),
        ended(7, 10.0, "fanout@ts1#1"),
        ended(8, 10.0, "fanout@ts2#1"),
    ]);
    let v = subscribers_see_events(&h, &readback(&[]), &[]);
    assert!(!v.passed);
    assert_eq!(v.counts["missed"], 1);
    assert!(
        v.evidence
            .contains("event e2 never reached subscriber fanout@ts2#1"),
        "{}",
        v.evidence
    );
    assert!(
        v.evidence.contains("fanout@ts2#1: 1 missed"),
        "{}",
        v.evidence
    );
}

fn kill(name: &str, target: &str, start: f64, end: f64) -> Fault {
    Fault {
        name: name.into(),
        kind: "process.kill".into(),
        target: target.into(),
        start_s: start,
        end_s: Some(end),
        params: BTreeMap::from([
            ("signal".to_owned(), "KILL".into()),
            ("restart_after".to_owned(), "2s".into()),
        ]),
    }
}

#[test]
fn no_ack_while_postgres_was_down_passes() {
    // Errors while down, an ack of a request sent before the kill, and
    // acks after the restart.
    let h = history(vec![
        record(1, 4.99, "e1", "1:1", ok()),
        record(
            2,
            5.5,
            "e2",
            "1:2",
            Outcome::Unknown("tracing_storage_error".into()),
        ),
        record(3, 7.5, "e3", "1:3", ok()),
    ]);
    let faults = [kill("crash", "db", 5.0, 7.6)];
    let v = no_false_ack(&h, &readback(&[]), &faults);
    assert!(v.passed, "{}", v.evidence);
    assert_eq!(v.counts["down_windows"], 1);
    assert_eq!(v.counts["sent_while_down"], 1);
}

#[test]
fn an_ack_while_postgres_was_down_fails_naming_the_fault() {
    let h = history(vec![
        record(1, 5.5, "e1", "1:1", ok()),
        op(
            2,
            6.0,
            Invocation::TracingStart {
                flow: "orders".into(),
            },
        ),
    ]);
    let faults = [kill("crash", "db", 5.0, 7.6)];
    let v = no_false_ack(&h, &readback(&[]), &faults);
    assert!(!v.passed);
    assert_eq!(v.counts["false_acks"], 2);
    assert!(
        v.evidence
            .contains("event e1 acknowledged while PostgreSQL `db` was down (fault `crash`"),
        "{}",
        v.evidence
    );
    // A kill of another service is not a PostgreSQL outage.
    let v = no_false_ack(&h, &readback(&[]), &[kill("crash", "ts1", 5.0, 7.6)]);
    assert!(v.passed, "{}", v.evidence);
}

#[test]
fn the_down_window_ends_at_the_scheduled_restart() {
    let f = kill("crash", "db", 5.0, 7.6);
    assert_eq!(postgres_down(&f), Some((5.1, 7.0)));
    let mut term = f.clone();
    term.params.insert("signal".into(), "TERM".into());
    assert_eq!(postgres_down(&term), None);
    let pause = Fault {
        kind: "process.pause".into(),
        params: BTreeMap::from([("for".to_owned(), "3s".into())]),
        ..f.clone()
    };
    assert_eq!(postgres_down(&pause), Some((5.1, 7.6)));
    let restart = Fault {
        kind: "process.restart".into(),
        ..f
    };
    assert_eq!(postgres_down(&restart), None);
}
