//! The Reflow nodes' checks and what their read-back holds.
//!
//! - `reflow.accepted_reach_sink`: every message a node accepted reached
//!   its sinks (or a filter dropped it) once the graph had time to drain;
//!   else the stall is reported with the actor the node names and the
//!   count stuck before it. Acknowledged sends are never more than the node
//!   accepted.
//! - `reflow.trace_events_complete`: for every message a node's actors
//!   processed, the published tracing client was handed one
//!   `ActorCompleted` event; the tracing servers' PostgreSQL must hold each.
//!   Losses are counted per second of the events' timestamps and placed in
//!   the fault windows (during one, after one, or with none).

use std::collections::BTreeMap;

use gauntlet_recorder::faults::Fault;
use serde::{Deserialize, Serialize};

use crate::checks::{Builder, Check, CheckVerdict};
use crate::history::{History, Invocation, ReadBack};

/// What the Reflow read-back found, per `reflow` service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReflowReadBack {
    pub nodes: BTreeMap<String, ReflowNodeState>,
    /// The run's start as a Unix time (seconds), to place event timestamps.
    pub run_start_unix_s: f64,
    /// How long the read-back waited for each graph to drain, seconds.
    pub drain_within_s: f64,
}

/// One Reflow node after the load, as `GET /api/v1/graph` reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReflowNodeState {
    /// Messages its sources took.
    pub accepted: u64,
    /// Accepted messages whose every copy reached a sink or was filtered out.
    pub completed: u64,
    /// Accepted, not yet at every sink, when the read-back gave up waiting.
    pub in_flight: u64,
    /// The stall the node reports (an actor died or no progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<ReflowStall>,
    /// Its tracing client is on.
    pub tracing: bool,
    /// Per graph node: messages processed per Unix second (tracing on).
    #[serde(default)]
    pub processed_per_s: BTreeMap<String, BTreeMap<u64, u64>>,
    /// Per graph node: `ActorCompleted` events stored per Unix second of
    /// their timestamp, in the tracing servers' PostgreSQL.
    #[serde(default)]
    pub stored_per_s: BTreeMap<String, BTreeMap<u64, u64>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReflowStall {
    pub actor: String,
    pub kind: String,
    pub why: String,
    pub stuck: u64,
    pub in_flight: u64,
}

/// Messages acknowledged by `reflow.send`s to `service` (the `ok`s' count).
fn acknowledged(history: &History, service: &str) -> (u64, u64) {
    let mut ok = 0;
    let mut refused = 0;
    for op in &history.operations {
        if let Invocation::ReflowSend {
            service: s,
            messages,
            ..
        } = &op.invocation
            && s == service
        {
            match &op.outcome {
                crate::history::Outcome::Ok(a) => ok += a.handled.unwrap_or(*messages),
                _ => refused += 1,
            }
        }
    }
    (ok, refused)
}

pub fn accepted_reach_sink(
    history: &History,
    readback: &ReadBack,
    faults: &[Fault],
) -> CheckVerdict {
    let mut b = Builder::new(Check::ReflowAcceptedReachSink, faults);
    let Some(rb) = &readback.reflow else {
        b.violation(None, "no Reflow node was read back".to_owned());
        return b.finish("nothing checked".to_owned());
    };
    for (service, n) in &rb.nodes {
        b.count("services", 1);
        b.count("accepted", n.accepted);
        b.count("completed", n.completed);
        let (acked, refused) = acknowledged(history, service);
        b.count("acknowledged", acked);
        b.count("sends_refused", refused);
        if acked > n.accepted {
            b.violation(
                None,
                format!(
                    "`{service}` acknowledged {acked} message(s) but reports {} accepted",
                    n.accepted
                ),
            );
        }
        match &n.stall {
            Some(s) => {
                b.count("stuck", s.stuck);
                b.count("in_flight", n.in_flight);
                b.violation(
                    None,
                    format!(
                        "`{service}`: the graph stalled at {} `{}` ({}): {} message(s) stuck before it; {} accepted, {} reached their sinks, {} in flight",
                        s.kind, s.actor, s.why, s.stuck, n.accepted, n.completed, n.in_flight
                    ),
                );
            }
            None if n.in_flight > 0 => {
                b.count("in_flight", n.in_flight);
                b.violation(
                    None,
                    format!(
                        "`{service}`: {} accepted message(s) did not reach a sink within {:.1} s (the node names no stalled actor)",
                        n.in_flight, rb.drain_within_s
                    ),
                );
            }
            None => {}
        }
    }
    let checked = format!(
        "{} Reflow node(s): {} message(s) accepted, {} reached their sinks (waited up to {:.1} s for each graph to drain)",
        rb.nodes.len(),
        b.counts.get("accepted").copied().unwrap_or(0),
        b.counts.get("completed").copied().unwrap_or(0),
        rb.drain_within_s
    );
    b.finish(checked)
}

/// Where a second of the run falls: in a fault window, after one, or none.
fn place(t: f64, faults: &[Fault]) -> String {
    if let Some(f) = faults
        .iter()
        .filter(|f| f.start_s <= t + 1.0 && t <= f.end_s.unwrap_or(f64::INFINITY))
        .max_by(|a, b| a.start_s.total_cmp(&b.start_s))
    {
        return format!("during `{}`", f.name);
    }
    if let Some(f) = faults
        .iter()
        .filter(|f| f.end_s.is_some_and(|e| e < t))
        .max_by(|a, b| a.end_or(0.0).total_cmp(&b.end_or(0.0)))
    {
        return format!("after `{}`", f.name);
    }
    "with no fault".to_owned()
}

pub fn trace_events_complete(
    _history: &History,
    readback: &ReadBack,
    faults: &[Fault],
) -> CheckVerdict {
    let mut b = Builder::new(Check::ReflowTraceEventsComplete, faults);
    let Some(rb) = &readback.reflow else {
        b.violation(None, "no Reflow node was read back".to_owned());
        return b.finish("nothing checked".to_owned());
    };
    for (service, n) in &rb.nodes {
        if !n.tracing {
            b.count("untraced_services", 1);
            continue;
        }
        b.count("traced_services", 1);
        let mut handed_total = 0;
        let mut stored_total = 0;
        let mut lost_by_place: BTreeMap<String, (u64, f64, f64)> = BTreeMap::new();
        for (actor, handed) in &n.processed_per_s {
            let empty = BTreeMap::new();
            let stored = n.stored_per_s.get(actor).unwrap_or(&empty);
            let h: u64 = handed.values().sum();
            let s: u64 = stored.values().sum();
            handed_total += h;
            stored_total += s;
            for (sec, count) in handed {
                let got = stored.get(sec).copied().unwrap_or(0);
                if *count > got {
                    let t = *sec as f64 - rb.run_start_unix_s;
                    let e = lost_by_place.entry(place(t, faults)).or_insert((
                        0,
                        f64::INFINITY,
                        f64::NEG_INFINITY,
                    ));
                    e.0 += count - got;
                    e.1 = e.1.min(t);
                    e.2 = e.2.max(t + 1.0);
                }
            }
        }
        b.count("handed", handed_total);
        b.count("stored", stored_total);
        let lost = handed_total.saturating_sub(stored_total);
        b.count("lost", lost);
        if lost > 0 {
            let places: Vec<String> = lost_by_place
                .iter()
                .map(|(p, (c, from, to))| {
                    format!("{c} {p} ({:.0}–{:.0} s)", from.max(0.0), to.max(0.0))
                })
                .collect();
            b.violation(
                None,
                format!(
                    "`{service}`'s tracing client was handed {handed_total} ActorCompleted event(s), the tracing server stored {stored_total}: {lost} lost ({:.1} %); by the second of their timestamps: {}",
                    100.0 * lost as f64 / handed_total.max(1) as f64,
                    places.join(", ")
                ),
            );
        }
    }
    if b.counts.get("traced_services").copied().unwrap_or(0) == 0 {
        b.violation(
            None,
            "no Reflow node runs with tracing on (set REFLOW_TRACING__ENABLED=true and REFLOW_TRACING__SERVER_URL)".to_owned(),
        );
    }
    let checked = format!(
        "{} ActorCompleted event(s) handed to the tracing client(s), {} stored",
        b.counts.get("handed").copied().unwrap_or(0),
        b.counts.get("stored").copied().unwrap_or(0)
    );
    b.finish(checked)
}
