//! The checkers: each reads the history, the read-back and the fault
//! windows, and gives a verdict that names its evidence.
//!
//! The model: an `ok` operation took effect; a `fail` did not; an `unknown`
//! may have taken effect at any moment after it was sent (even after later
//! operations — a request can sit in a server's queue). So a checker may
//! only demand what acknowledged operations imply.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use gauntlet_recorder::faults::Fault;
use serde::{Deserialize, Serialize};

use crate::history::{Digest, History, Invocation, Operation, Outcome, ReadBack};

/// Most evidence items a verdict lists (the counts cover the rest).
pub const MAX_EVIDENCE: usize = 10;

/// A check a scenario can ask for in `checks:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    /// Every acknowledged append is readable at its offset with its payload.
    NoAckedWriteLost,
    /// No offset is acknowledged to two operations (or read twice).
    OffsetsUnique,
    /// Acked enqueues minus acked (or maybe-acked) acks ⊆ delivered by the drain.
    QueueAtLeastOnce,
    /// Each key holds its last acknowledged value, or an unknown write's.
    KvReadYourWrites,
    /// Every acknowledged message is counted at its sink, per key.
    ActorsNoAckedMessageLost,
    /// Acknowledged messages flow again soon after each fault heals; no
    /// component sits on queued messages without handling them.
    ActorsNoSilentStall,
    /// No component restarted more than its budget.
    ActorsRestartsBounded,
    /// Every acknowledged event is in PostgreSQL, by id and digest.
    TracingNoAckedEventLost,
    /// Every event committed while a subscription was up reached it.
    TracingSubscribersSeeEvents,
    /// No success answered for a request wholly inside a window where
    /// PostgreSQL was down.
    TracingNoFalseAck,
    /// Every message a Reflow node accepted reached its sinks, or the
    /// stall is reported with the actor and the count stuck.
    ReflowAcceptedReachSink,
    /// For every message a Reflow node's actors processed, the tracing
    /// server stored the event the client was handed.
    ReflowTraceEventsComplete,
}

impl Check {
    pub const ALL: [Check; 12] = [
        Check::NoAckedWriteLost,
        Check::OffsetsUnique,
        Check::QueueAtLeastOnce,
        Check::KvReadYourWrites,
        Check::ActorsNoAckedMessageLost,
        Check::ActorsNoSilentStall,
        Check::ActorsRestartsBounded,
        Check::TracingNoAckedEventLost,
        Check::TracingSubscribersSeeEvents,
        Check::TracingNoFalseAck,
        Check::ReflowAcceptedReachSink,
        Check::ReflowTraceEventsComplete,
    ];

    /// The name in `checks:`, results and reports.
    pub fn name(self) -> &'static str {
        match self {
            Check::NoAckedWriteLost => "fabric.no_acked_write_lost",
            Check::OffsetsUnique => "fabric.offsets_unique",
            Check::QueueAtLeastOnce => "fabric.queue.at_least_once",
            Check::KvReadYourWrites => "fabric.kv.read_your_writes",
            Check::ActorsNoAckedMessageLost => "actors.no_acked_message_lost",
            Check::ActorsNoSilentStall => "actors.no_silent_stall",
            Check::ActorsRestartsBounded => "actors.restarts_bounded",
            Check::TracingNoAckedEventLost => "tracing.no_acked_event_lost",
            Check::TracingSubscribersSeeEvents => "tracing.subscribers_see_events",
            Check::TracingNoFalseAck => "tracing.no_false_ack",
            Check::ReflowAcceptedReachSink => "reflow.accepted_reach_sink",
            Check::ReflowTraceEventsComplete => "reflow.trace_events_complete",
        }
    }

    pub fn from_name(name: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.name() == name)
    }

    pub fn run(self, history: &History, readback: &ReadBack, faults: &[Fault]) -> CheckVerdict {
        match self {
            Check::NoAckedWriteLost => no_acked_write_lost(history, readback, faults),
            Check::OffsetsUnique => offsets_unique(history, readback, faults),
            Check::QueueAtLeastOnce => queue_at_least_once(history, readback, faults),
            Check::KvReadYourWrites => kv_read_your_writes(history, readback, faults),
            Check::ActorsNoAckedMessageLost => no_acked_message_lost(history, readback, faults),
            Check::ActorsNoSilentStall => no_silent_stall(history, readback, faults),
            Check::ActorsRestartsBounded => restarts_bounded(history, readback, faults),
            Check::TracingNoAckedEventLost => no_acked_event_lost(history, readback, faults),
            Check::TracingSubscribersSeeEvents => subscribers_see_events(history, readback, faults),
            Check::TracingNoFalseAck => no_false_ack(history, readback, faults),
            Check::ReflowAcceptedReachSink => {
                crate::reflow::accepted_reach_sink(history, readback, faults)
            }
            Check::ReflowTraceEventsComplete => {
                crate::reflow::trace_events_complete(history, readback, faults)
            }
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One piece of evidence: an operation and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceItem {
    /// What is wrong, e.g. `offset 41 of t/ns/s missing`.
    pub what: String,
    /// The operation's id in `history.jsonl`.
    pub operation: u64,
    pub invoked_s: f64,
    pub completed_s: Option<f64>,
    /// Where it falls relative to the faults, e.g. `0.4 s into kill-1`.
    pub relative_to_faults: String,
}

/// A check's verdict, in the shape `verdict.json`'s `checks` list holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckVerdict {
    pub name: String,
    pub passed: bool,
    /// `pass` or `fail`.
    pub outcome: String,
    /// One paragraph for people: what was checked, what was wrong.
    pub evidence: String,
    /// What was counted (`acknowledged_events`, `missing`, `duplicates`, …).
    pub counts: BTreeMap<String, u64>,
    /// The first violations, earliest first.
    pub violations: Vec<EvidenceItem>,
}

/// `t` relative to the fault windows: inside one, else after the last one
/// that ended, else before the first.
pub fn relative_to_faults(t: f64, faults: &[Fault]) -> String {
    if faults.is_empty() {
        return "no faults in the run".to_owned();
    }
    let open_end = f64::INFINITY;
    if let Some(f) = faults
        .iter()
        .filter(|f| f.start_s <= t && t <= f.end_s.unwrap_or(open_end))
        .max_by(|a, b| a.start_s.total_cmp(&b.start_s))
    {
        return format!("{:.2} s into fault `{}`", t - f.start_s, f.name);
    }
    if let Some(f) = faults
        .iter()
        .filter(|f| f.end_s.is_some_and(|e| e < t))
        .max_by(|a, b| a.end_or(0.0).total_cmp(&b.end_or(0.0)))
    {
        return format!("{:.2} s after fault `{}` ended", t - f.end_or(0.0), f.name);
    }
    let next = faults
        .iter()
        .min_by(|a, b| a.start_s.total_cmp(&b.start_s))
        .expect("faults is not empty");
    format!("{:.2} s before fault `{}`", next.start_s - t, next.name)
}

pub(crate) struct Builder<'a> {
    check: Check,
    faults: &'a [Fault],
    pub(crate) counts: BTreeMap<String, u64>,
    violations: Vec<EvidenceItem>,
    total_violations: u64,
}

impl<'a> Builder<'a> {
    pub(crate) fn new(check: Check, faults: &'a [Fault]) -> Self {
        Builder {
            check,
            faults,
            counts: BTreeMap::new(),
            violations: Vec::new(),
            total_violations: 0,
        }
    }

    pub(crate) fn count(&mut self, what: &str, n: u64) {
        *self.counts.entry(what.to_owned()).or_default() += n;
    }

    pub(crate) fn violation(&mut self, op: Option<&Operation>, what: String) {
        self.total_violations += 1;
        // Keep the earliest ones.
        let at = op.map_or(f64::INFINITY, |o| o.completed_s.unwrap_or(o.invoked_s));
        self.violations.push(EvidenceItem {
            what,
            operation: op.map_or(0, |o| o.id),
            invoked_s: op.map_or(f64::NAN, |o| o.invoked_s),
            completed_s: op.and_then(|o| o.completed_s),
            relative_to_faults: if at.is_finite() {
                relative_to_faults(at, self.faults)
            } else {
                "not tied to an operation".to_owned()
            },
        });
        if self.violations.len() > 4 * MAX_EVIDENCE {
            self.trim();
        }
    }

    fn trim(&mut self) {
        self.violations.sort_by(|a, b| {
            let ka = a.completed_s.unwrap_or(a.invoked_s);
            let kb = b.completed_s.unwrap_or(b.invoked_s);
            ka.total_cmp(&kb).then(a.operation.cmp(&b.operation))
        });
        self.violations.truncate(MAX_EVIDENCE);
    }

    pub(crate) fn finish(mut self, checked: String) -> CheckVerdict {
        self.trim();
        self.count("violations", 0);
        let passed = self.total_violations == 0;
        let evidence = if passed {
            checked
        } else {
            let first: Vec<String> = self
                .violations
                .iter()
                .map(|v| {
                    let at = match v.completed_s {
                        Some(c) => format!("acknowledged at {c:.2} s"),
                        None if v.invoked_s.is_finite() => format!("sent at {:.2} s", v.invoked_s),
                        None => String::new(),
                    };
                    if at.is_empty() {
                        v.what.clone()
                    } else {
                        format!(
                            "{} (operation {}, {at}, {})",
                            v.what, v.operation, v.relative_to_faults
                        )
                    }
                })
                .collect();
            format!(
                "{} violation(s); {checked}. First: {}",
                self.total_violations,
                first.join("; ")
            )
        };
        *self.counts.get_mut("violations").expect("inserted above") = self.total_violations;
        CheckVerdict {
            name: self.check.name().to_owned(),
            passed,
            outcome: if passed { "pass" } else { "fail" }.to_owned(),
            evidence,
            counts: self.counts,
            violations: self.violations,
        }
    }
}

fn appends(history: &History) -> impl Iterator<Item = (&Operation, &str, &[Digest])> {
    history
        .operations
        .iter()
        .filter_map(|op| match &op.invocation {
            Invocation::StreamAppend { stream, payloads } => {
                Some((op, stream.as_str(), payloads.as_slice()))
            }
            _ => None,
        })
}

/// Every event of every acknowledged append is in the read-back at its
/// offset with the same payload. Unknown appends may or may not be there.
pub fn no_acked_write_lost(
    history: &History,
    readback: &ReadBack,
    faults: &[Fault],
) -> CheckVerdict {
    let mut b = Builder::new(Check::NoAckedWriteLost, faults);
    let read: HashMap<&str, HashMap<u64, &Digest>> = readback
        .streams
        .iter()
        .map(|(s, msgs)| {
            (
                s.as_str(),
                msgs.iter().map(|m| (m.offset, &m.payload)).collect(),
            )
        })
        .collect();
    let present: HashMap<&str, BTreeSet<&Digest>> = readback
        .streams
        .iter()
        .map(|(s, msgs)| (s.as_str(), msgs.iter().map(|m| &m.payload).collect()))
        .collect();
    let mut unread_streams = BTreeSet::new();
    for (op, stream, payloads) in appends(history) {
        match &op.outcome {
            Outcome::Ok(ack) => {
                b.count("acknowledged_appends", 1);
                b.count("acknowledged_events", payloads.len() as u64);
                if ack.offsets.len() != payloads.len() {
                    b.violation(
                        Some(op),
                        format!(
                            "append to {stream} acknowledged {} offset(s) for {} event(s)",
                            ack.offsets.len(),
                            payloads.len()
                        ),
                    );
                }
                let Some(messages) = read.get(stream) else {
                    unread_streams.insert(stream.to_owned());
                    continue;
                };
                for (offset, payload) in ack.offsets.iter().zip(payloads) {
                    match messages.get(offset) {
                        None => {
                            b.count("missing", 1);
                            b.violation(Some(op), format!("offset {offset} of {stream} missing"));
                        }
                        Some(found) if *found != payload => {
                            b.count("changed", 1);
                            b.violation(
                                Some(op),
                                format!(
                                    "offset {offset} of {stream} holds payload {} instead of {}",
                                    found.0, payload.0
                                ),
                            );
                        }
                        Some(_) => {}
                    }
                }
            }
            Outcome::Unknown(_) => {
                b.count("unknown_appends", 1);
                if let Some(p) = present.get(stream)
                    && payloads.iter().all(|d| p.contains(d))
                {
                    b.count("unknown_appends_present", 1);
                }
            }
            Outcome::Fail(_) => b.count("failed_appends", 1),
        }
    }
    for stream in &unread_streams {
        b.violation(
            None,
            format!(
                "stream {stream} was not read back, so its acknowledged appends are unverified"
            ),
        );
    }
    let checked = format!(
        "{} acknowledged event(s) in {} append(s) looked up in {} stream(s) read back; {} unknown append(s) may or may not be present",
        b.counts.get("acknowledged_events").copied().unwrap_or(0),
        b.counts.get("acknowledged_appends").copied().unwrap_or(0),
        readback.streams.len(),
        b.counts.get("unknown_appends").copied().unwrap_or(0),
    );
    b.finish(checked)
}

/// No offset is acknowledged to two operations or twice in one, and no
/// offset appears twice in a stream's read-back.
pub fn offsets_unique(history: &History, readback: &ReadBack, faults: &[Fault]) -> CheckVerdict {
    let mut b = Builder::new(Check::OffsetsUnique, faults);
    let mut owner: HashMap<(&str, u64), (&Operation, &Digest)> = HashMap::new();
    for (op, stream, payloads) in appends(history) {
        let Outcome::Ok(ack) = &op.outcome else {
            continue;
        };
        for (offset, payload) in ack.offsets.iter().zip(payloads) {
            b.count("acknowledged_offsets", 1);
            match owner.get(&(stream, *offset)) {
                Some((first, first_payload)) => {
                    let how = if *first_payload == payload {
                        "the same payload".to_owned()
                    } else {
                        format!("payloads {} and {}", first_payload.0, payload.0)
                    };
                    b.count("reused", 1);
                    b.violation(
                        Some(op),
                        format!(
                            "offset {offset} of {stream} acknowledged to operations {} and {} ({how})",
                            first.id, op.id
                        ),
                    );
                }
                None => {
                    owner.insert((stream, *offset), (op, payload));
                }
            }
        }
    }
    for (stream, msgs) in &readback.streams {
        let mut seen = BTreeSet::new();
        for m in msgs {
            b.count("read_offsets", 1);
            if !seen.insert(m.offset) {
                b.count("read_twice", 1);
                b.violation(
                    None,
                    format!("offset {} of {stream} read back twice", m.offset),
                );
            }
        }
    }
    let checked = format!(
        "{} acknowledged offset(s) and {} read-back offset(s) checked for reuse",
        b.counts.get("acknowledged_offsets").copied().unwrap_or(0),
        b.counts.get("read_offsets").copied().unwrap_or(0),
    );
    b.finish(checked)
}

/// Every acknowledged enqueue whose job was not (maybe) acknowledged as
/// done is delivered by the drain, with its payload. Duplicate deliveries
/// are counted, not failed (at-least-once allows them).
pub fn queue_at_least_once(
    history: &History,
    readback: &ReadBack,
    faults: &[Fault],
) -> CheckVerdict {
    let mut b = Builder::new(Check::QueueAtLeastOnce, faults);
    let mut enqueued: BTreeMap<(&str, &str), (&Operation, &Digest)> = BTreeMap::new();
    let mut acked: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut deliveries: HashMap<(&str, &str), u64> = HashMap::new();
    for op in &history.operations {
        match (&op.invocation, &op.outcome) {
            (Invocation::QueueEnqueue { queue, payload }, Outcome::Ok(ack)) => {
                b.count("acknowledged_enqueues", 1);
                match &ack.job_id {
                    Some(id) => {
                        enqueued.insert((queue, id), (op, payload));
                    }
                    None => b.violation(
                        Some(op),
                        format!("enqueue to {queue} acknowledged without a job id"),
                    ),
                }
            }
            (Invocation::QueueEnqueue { .. }, Outcome::Unknown(_)) => {
                b.count("unknown_enqueues", 1)
            }
            (Invocation::QueueAck { queue, job_id }, outcome) => match outcome {
                Outcome::Ok(_) => {
                    b.count("acknowledged_acks", 1);
                    acked.insert((queue, job_id));
                }
                Outcome::Unknown(_) => {
                    b.count("unknown_acks", 1);
                    acked.insert((queue, job_id));
                }
                Outcome::Fail(_) => b.count("failed_acks", 1),
            },
            (Invocation::QueueReceive { queue }, Outcome::Ok(ack)) => {
                for job in &ack.jobs {
                    b.count("delivered_during_run", 1);
                    *deliveries.entry((queue, &job.job_id)).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    let mut drained: HashMap<(&str, &str), &Digest> = HashMap::new();
    for (queue, jobs) in &readback.queues {
        for job in jobs {
            b.count("delivered_by_drain", 1);
            *deliveries.entry((queue, &job.job_id)).or_default() += 1;
            drained.insert((queue, &job.job_id), &job.payload);
        }
    }
    let mut dead: HashMap<(&str, &str), &Digest> = HashMap::new();
    for (queue, jobs) in &readback.dlq {
        for job in jobs {
            dead.insert((queue, &job.job_id), &job.payload);
        }
    }
    let duplicates: u64 = deliveries.values().map(|n| n.saturating_sub(1)).sum();
    b.count("duplicate_deliveries", duplicates);
    let mut undrained = BTreeSet::new();
    for ((queue, job_id), (op, payload)) in &enqueued {
        if acked.contains(&(*queue, *job_id)) {
            continue;
        }
        b.count("expected_after_drain", 1);
        if !readback.queues.contains_key(*queue) {
            undrained.insert(queue.to_string());
            continue;
        }
        let found = match drained.get(&(*queue, *job_id)) {
            Some(found) => Some(found),
            None => {
                let in_dlq = dead.get(&(*queue, *job_id));
                if in_dlq.is_some() {
                    b.count("in_dlq", 1);
                }
                in_dlq
            }
        };
        match found {
            None => {
                b.count("missing", 1);
                b.violation(
                    Some(op),
                    format!(
                        "job {job_id} of {queue} never delivered by the drain, nor in its dead-letter queue"
                    ),
                );
            }
            Some(found) if *found != *payload => {
                b.count("changed", 1);
                b.violation(
                    Some(op),
                    format!(
                        "job {job_id} of {queue} delivered with payload {} instead of {}",
                        found.0, payload.0
                    ),
                );
            }
            Some(_) => {}
        }
    }
    for queue in &undrained {
        b.violation(
            None,
            format!("queue {queue} was not drained, so its acknowledged jobs are unverified"),
        );
    }
    let checked = format!(
        "{} job(s) acknowledged as enqueued and not acked looked up among {} delivered by the drain and {} in the dead-letter queues: {} found in a DLQ (attempts exhausted: delivered there, not lost); {} duplicate deliveries",
        b.counts.get("expected_after_drain").copied().unwrap_or(0),
        b.counts.get("delivered_by_drain").copied().unwrap_or(0),
        dead.len(),
        b.counts.get("in_dlq").copied().unwrap_or(0),
        duplicates
    );
    b.finish(checked)
}

/// After the faults, each key written holds the value of an acknowledged
/// write no later acknowledged write superseded (invoked after it was
/// acknowledged), or the value of an unknown write; a key with no
/// acknowledged write may also be absent.
pub fn kv_read_your_writes(
    history: &History,
    readback: &ReadBack,
    faults: &[Fault],
) -> CheckVerdict {
    let mut b = Builder::new(Check::KvReadYourWrites, faults);
    type Key<'a> = (&'a str, &'a str);
    let mut writes: BTreeMap<Key, Vec<(&Operation, Option<&Digest>)>> = BTreeMap::new();
    for op in &history.operations {
        let (store, key, value) = match &op.invocation {
            Invocation::KvPut { store, key, value } => (store, key, Some(value)),
            Invocation::KvDelete { store, key } => (store, key, None),
            _ => continue,
        };
        writes.entry((store, key)).or_default().push((op, value));
    }
    let show = |v: Option<&Digest>| v.map_or("absent".to_owned(), |d| d.0.clone());
    for ((store, key), ops) in &writes {
        b.count("keys", 1);
        let ok: Vec<&(&Operation, Option<&Digest>)> =
            ops.iter().filter(|(o, _)| o.outcome.is_ok()).collect();
        b.count("acknowledged_writes", ok.len() as u64);
        let mut allowed: Vec<Option<&Digest>> = ok
            .iter()
            .filter(|(w, _)| {
                let done = w.completed_s.unwrap_or(f64::INFINITY);
                !ok.iter().any(|(v, _)| v.invoked_s > done)
            })
            .map(|(_, v)| *v)
            .collect();
        allowed.extend(
            ops.iter()
                .filter(|(o, _)| o.outcome.is_unknown())
                .map(|(_, v)| *v),
        );
        if ok.is_empty() {
            allowed.push(None);
        }
        let Some(found) = readback.kv.get(*store).and_then(|s| s.get(*key)) else {
            b.violation(
                ok.last().map(|(o, _)| *o),
                format!("key {key} of {store} was not read back"),
            );
            continue;
        };
        if !allowed.contains(&found.as_ref()) {
            let last = ok.iter().max_by(|a, b| {
                a.0.completed_s
                    .unwrap_or(0.0)
                    .total_cmp(&b.0.completed_s.unwrap_or(0.0))
            });
            b.count("stale", 1);
            match last {
                Some((op, value)) => b.violation(
                    Some(op),
                    format!(
                        "key {key} of {store} holds {} instead of its last acknowledged value {}",
                        show(found.as_ref()),
                        show(*value)
                    ),
                ),
                None => b.violation(
                    ops.first().map(|(o, _)| *o),
                    format!(
                        "key {key} of {store} holds {}, a value no write could have left",
                        show(found.as_ref())
                    ),
                ),
            }
        }
    }
    let checked = format!(
        "{} key(s) with {} acknowledged write(s) read back",
        b.counts.get("keys").copied().unwrap_or(0),
        b.counts.get("acknowledged_writes").copied().unwrap_or(0)
    );
    b.finish(checked)
}

/// The actor node's sends: (operation, component, sinks, messages per key).
fn sends(
    history: &History,
) -> impl Iterator<Item = (&Operation, &str, &[String], &BTreeMap<String, u64>)> {
    history
        .operations
        .iter()
        .filter_map(|op| match &op.invocation {
            Invocation::ActorSend {
                component,
                sinks,
                keys,
            } => Some((op, component.as_str(), sinks.as_slice(), keys)),
            _ => None,
        })
}

/// Every message of every acknowledged send is counted at each of its
/// sinks (the `counter`s at the end of its path: a pipeline's last stage,
/// every subscriber of a topic), per key: acknowledged ≤ counted. Unknown
/// sends may or may not have been counted; more than acknowledged plus
/// unknown is counted as `over_counted` (duplicates), not failed. Counter
/// state is crash-safe, so this holds across kill -9 restarts of the node.
pub fn no_acked_message_lost(
    history: &History,
    readback: &ReadBack,
    faults: &[Fault],
) -> CheckVerdict {
    let mut b = Builder::new(Check::ActorsNoAckedMessageLost, faults);
    type SinkKey<'a> = (&'a str, &'a str);
    let mut acked: BTreeMap<SinkKey, u64> = BTreeMap::new();
    let mut maybe: BTreeMap<SinkKey, u64> = BTreeMap::new();
    // The last acknowledged send per sink and key: the evidence of a loss.
    let mut last: BTreeMap<SinkKey, &Operation> = BTreeMap::new();
    for (op, _, sinks, keys) in sends(history) {
        let n: u64 = keys.values().sum();
        match &op.outcome {
            Outcome::Ok(_) => {
                b.count("acknowledged_sends", 1);
                b.count("acknowledged_messages", n);
            }
            Outcome::Unknown(_) => b.count("unknown_sends", 1),
            Outcome::Fail(_) => {
                b.count("failed_sends", 1);
                continue;
            }
        }
        if sinks.is_empty() {
            b.count("sends_without_counter", 1);
        }
        for sink in sinks {
            for (key, count) in keys {
                let at = (sink.as_str(), key.as_str());
                if op.outcome.is_ok() {
                    *acked.entry(at).or_default() += count;
                    last.insert(at, op);
                } else {
                    *maybe.entry(at).or_default() += count;
                }
            }
        }
    }
    let mut unread = BTreeSet::new();
    for ((sink, key), expected) in &acked {
        b.count("checked_counts", 1);
        let Some(status) = readback.components.get(*sink) else {
            unread.insert(sink.to_string());
            continue;
        };
        let counted = status.keys.get(*key).copied().unwrap_or(0);
        if counted < *expected {
            b.count("lost", expected - counted);
            b.violation(
                last.get(&(*sink, *key)).copied(),
                format!(
                    "counter {sink} counted {counted} message(s) of key `{key}`, {expected} were acknowledged ({} lost)",
                    expected - counted
                ),
            );
        } else {
            let bound = expected + maybe.get(&(*sink, *key)).copied().unwrap_or(0);
            b.count("over_counted", counted.saturating_sub(bound));
        }
    }
    for sink in &unread {
        b.violation(
            None,
            format!(
                "counter {sink} was not read back, so its acknowledged messages are unverified"
            ),
        );
    }
    let checked = format!(
        "{} acknowledged message(s) in {} send(s) looked up at {} counter key(s); {} unknown send(s) may or may not be counted",
        b.counts.get("acknowledged_messages").copied().unwrap_or(0),
        b.counts.get("acknowledged_sends").copied().unwrap_or(0),
        b.counts.get("checked_counts").copied().unwrap_or(0),
        b.counts.get("unknown_sends").copied().unwrap_or(0),
    );
    b.finish(checked)
}

/// After each fault heals, acknowledged sends resume within
/// `readback.stall_within` (when sends were made in that span); and no
/// component, read twice `stall_within` apart after the faults, holds
/// queued messages without handling any while not `failed` (a silent
/// stall: the supervisor neither recovered nor gave it up).
pub fn no_silent_stall(history: &History, readback: &ReadBack, faults: &[Fault]) -> CheckVerdict {
    let mut b = Builder::new(Check::ActorsNoSilentStall, faults);
    let bound = readback.stall_within_s;
    let ops: Vec<&Operation> = sends(history).map(|(op, ..)| op).collect();
    for f in faults {
        let Some(end) = f.end_s else { continue };
        let window = |o: &&Operation| o.invoked_s >= end && o.invoked_s <= end + bound;
        if !ops.iter().any(window) {
            continue;
        }
        b.count("faults_checked", 1);
        let resumed = ops.iter().any(|o| {
            o.outcome.is_ok()
                && o.invoked_s >= end
                && o.completed_s.is_some_and(|c| c <= end + bound)
        });
        if !resumed {
            b.count("not_resumed", 1);
            let first = ops.iter().find(|o| window(o)).copied();
            b.violation(
                first,
                format!(
                    "no send was acknowledged within {bound:.1} s after fault `{}` healed at {end:.2} s",
                    f.name
                ),
            );
        }
    }
    for (name, first) in &readback.components {
        b.count("components_checked", 1);
        let Some(later) = readback.components_later.get(name) else {
            continue;
        };
        if first.mailbox_depth > 0
            && later.mailbox_depth > 0
            && later.handled == first.handled
            && later.state != "failed"
            && first.state != "stopped"
        {
            b.count("stalled", 1);
            b.violation(
                None,
                format!(
                    "component {name} holds {} queued message(s) and handled none in {bound:.1} s (state `{}`, handled {})",
                    later.mailbox_depth, later.state, later.handled
                ),
            );
        }
    }
    let checked = format!(
        "resumption checked after {} fault(s) (within {bound:.1} s); {} component(s) read twice {bound:.1} s apart for queued messages left unhandled",
        b.counts.get("faults_checked").copied().unwrap_or(0),
        b.counts.get("components_checked").copied().unwrap_or(0),
    );
    b.finish(checked)
}

/// No component restarted more than its budget (`max_restarts`, the
/// node's default 10 when the scenario gives none), and none was given up
/// (`failed`: its restart intensity was exceeded).
pub fn restarts_bounded(_history: &History, readback: &ReadBack, faults: &[Fault]) -> CheckVerdict {
    let mut b = Builder::new(Check::ActorsRestartsBounded, faults);
    for (name, status) in &readback.components {
        b.count("components", 1);
        b.count("restarts", status.restarts);
        let budget = u64::from(readback.restart_budgets.get(name).copied().unwrap_or(10));
        if status.restarts > budget {
            b.violation(
                None,
                format!(
                    "component {name} restarted {} time(s), over its budget of {budget}",
                    status.restarts
                ),
            );
        } else if status.state == "failed" {
            b.violation(
                None,
                format!(
                    "component {name} is `failed` (stopped for good after {} restart(s))",
                    status.restarts
                ),
            );
        }
    }
    if readback.components.is_empty() {
        b.violation(
            None,
            "no component was read back, so restarts are unverified".to_owned(),
        );
    }
    let checked = format!(
        "{} component(s) with {} restart(s) in all checked against their budgets",
        b.counts.get("components").copied().unwrap_or(0),
        b.counts.get("restarts").copied().unwrap_or(0),
    );
    b.finish(checked)
}

/// The tracing server's recorded events: (operation, event id, digest, service).
fn recorded_events(history: &History) -> impl Iterator<Item = (&Operation, &str, &Digest)> {
    history
        .operations
        .iter()
        .filter_map(|op| match &op.invocation {
            Invocation::TracingRecord {
                event_id, digest, ..
            } => Some((op, event_id.as_str(), digest)),
            _ => None,
        })
}

/// Every event acknowledged (`EventRecorded { success: true }`) is in
/// `tracing.events` after the faults healed, found by its event id, with
/// the digest of the event sent (both sides parsed as the protocol's
/// `TraceEvent`). An event answered with an error may or may not be there
/// (`StorageError` covers "commit outcome unknown").
pub fn no_acked_event_lost(
    history: &History,
    readback: &ReadBack,
    faults: &[Fault],
) -> CheckVerdict {
    let mut b = Builder::new(Check::TracingNoAckedEventLost, faults);
    let Some(rb) = &readback.tracing else {
        b.violation(
            None,
            "tracing.events was not read back, so the acknowledged events are unverified"
                .to_owned(),
        );
        return b.finish("nothing read back".to_owned());
    };
    for (op, event_id, digest) in recorded_events(history) {
        match &op.outcome {
            Outcome::Ok(_) => {
                b.count("acknowledged_events", 1);
                match rb.events.get(event_id) {
                    None => {
                        b.count("missing", 1);
                        b.violation(
                            Some(op),
                            format!("event {event_id} missing from tracing.events"),
                        );
                    }
                    Some(found) if found != digest => {
                        b.count("changed", 1);
                        b.violation(
                            Some(op),
                            format!(
                                "event {event_id} is stored as {} instead of {}",
                                found.0, digest.0
                            ),
                        );
                    }
                    Some(_) => {}
                }
            }
            Outcome::Unknown(_) => {
                b.count("unknown_events", 1);
                if rb.events.contains_key(event_id) {
                    b.count("unknown_events_present", 1);
                }
            }
            Outcome::Fail(_) => {
                b.count("refused_events", 1);
                if rb.events.contains_key(event_id) {
                    b.count("refused_events_present", 1);
                }
            }
        }
    }
    let checked = format!(
        "{} acknowledged event(s) looked up by id and digest among {} found in tracing.events; {} unknown event(s) may or may not be there ({} are)",
        b.counts.get("acknowledged_events").copied().unwrap_or(0),
        rb.events.len(),
        b.counts.get("unknown_events").copied().unwrap_or(0),
        b.counts.get("unknown_events_present").copied().unwrap_or(0),
    );
    b.finish(checked)
}

/// Every acknowledged event committed while a subscription was up reached
/// that subscriber: sent after the subscription was acknowledged, and
/// acknowledged at least `notify_within` before the subscription ended
/// (its connection lost, or the load's end). A miss is counted and named
/// (event and subscriber). Subscriptions take every event (no filter).
pub fn subscribers_see_events(
    history: &History,
    readback: &ReadBack,
    faults: &[Fault],
) -> CheckVerdict {
    let mut b = Builder::new(Check::TracingSubscribersSeeEvents, faults);
    let grace = readback
        .tracing
        .as_ref()
        .map_or(2.0, |t| t.notify_within_s.max(0.0));
    let last_s = history
        .operations
        .iter()
        .map(|o| o.completed_s.unwrap_or(o.invoked_s))
        .fold(0.0, f64::max);
    // Each subscription: (subscriber, up since, ended at).
    let mut subscriptions: Vec<(&str, f64, f64)> = Vec::new();
    let mut ended: HashMap<&str, f64> = HashMap::new();
    let mut notified: HashMap<&str, HashMap<&str, u64>> = HashMap::new();
    for op in &history.operations {
        match &op.invocation {
            Invocation::TracingSubscribe { subscriber, .. } => {
                if let (Outcome::Ok(_), Some(up)) = (&op.outcome, op.completed_s) {
                    subscriptions.push((subscriber, up, f64::INFINITY));
                }
            }
            Invocation::TracingSubscriptionEnded { subscriber, .. } => {
                ended.insert(subscriber, op.invoked_s);
            }
            Invocation::TracingNotified { subscriber, events } => {
                let seen = notified.entry(subscriber).or_default();
                for e in events {
                    *seen.entry(e).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    for s in &mut subscriptions {
        s.2 = ended.get(s.0).copied().unwrap_or(last_s);
    }
    b.count("subscriptions", subscriptions.len() as u64);
    let duplicates: u64 = notified
        .values()
        .flat_map(|m| m.values())
        .map(|n| n.saturating_sub(1))
        .sum();
    b.count("duplicate_notifications", duplicates);
    let mut missed_per_subscriber: BTreeMap<&str, u64> = BTreeMap::new();
    for (op, event_id, _) in recorded_events(history) {
        let (Outcome::Ok(_), Some(acked)) = (&op.outcome, op.completed_s) else {
            continue;
        };
        for (subscriber, up, end) in &subscriptions {
            if op.invoked_s < *up || acked + grace > *end {
                continue;
            }
            b.count("expected_notifications", 1);
            let got = notified
                .get(subscriber)
                .is_some_and(|m| m.contains_key(event_id));
            if got {
                b.count("delivered", 1);
            } else {
                b.count("missed", 1);
                *missed_per_subscriber.entry(subscriber).or_default() += 1;
                b.violation(
                    Some(op),
                    format!(
                        "event {event_id} never reached subscriber {subscriber} (subscribed at {up:.2} s, until {end:.2} s)"
                    ),
                );
            }
        }
    }
    let per: Vec<String> = missed_per_subscriber
        .iter()
        .map(|(s, n)| format!("{s}: {n} missed"))
        .collect();
    let checked = format!(
        "{} acknowledged event(s) expected at {} subscription(s) (sent after it was up, acknowledged {grace:.1} s before it ended): {} delivered, {} missed{}; {} duplicate notification(s)",
        b.counts.get("expected_notifications").copied().unwrap_or(0),
        subscriptions.len(),
        b.counts.get("delivered").copied().unwrap_or(0),
        b.counts.get("missed").copied().unwrap_or(0),
        if per.is_empty() {
            String::new()
        } else {
            format!(" ({})", per.join(", "))
        },
        duplicates,
    );
    b.finish(checked)
}

/// A fault's `start_s` is taken before its signals go out to every process
/// of the service's tree (PostgreSQL's postmaster and each backend), so a
/// commit may still complete just after it: requests sent within this long
/// of a kill or a pause are not judged.
pub const FAULT_TAKES_HOLD_S: f64 = 0.1;

/// A graceful stop lets PostgreSQL finish the commits in flight (`pg_ctl
/// stop -m fast` is not instantaneous): requests sent within this long of
/// a stop are not judged.
pub const GRACEFUL_STOP_GRACE_S: f64 = 0.5;

/// When PostgreSQL was surely down during `f`, if `f` took it down: from
/// a `KILL` (or a pause), once it took hold ([`FAULT_TAKES_HOLD_S`]), to
/// the scheduled restart (`restart_after` or `for`, else the fault's end);
/// from half a second into a stop.
/// Restarts, other signals and link faults are not judged (the database
/// may be up for part of them, or for one replica).
pub fn postgres_down(f: &Fault) -> Option<(f64, f64)> {
    let action = f.kind.rsplit('.').next().unwrap_or_default();
    let scheduled = ["restart_after", "for"]
        .iter()
        .find_map(|k| f.params.get(*k).and_then(|v| v.as_str()).and_then(seconds));
    let end = match (f.end_s, scheduled) {
        (Some(e), Some(s)) => e.min(f.start_s + s),
        (Some(e), None) => e,
        (None, Some(s)) => f.start_s + s,
        (None, None) => f64::INFINITY,
    };
    let start = match action {
        "kill" => {
            let signal = f.params.get("signal").and_then(|v| v.as_str());
            if !matches!(signal, None | Some("KILL") | Some("SIGKILL") | Some("9")) {
                return None;
            }
            f.start_s + FAULT_TAKES_HOLD_S
        }
        "pause" => f.start_s + FAULT_TAKES_HOLD_S,
        "stop" => f.start_s + GRACEFUL_STOP_GRACE_S,
        _ => return None,
    };
    (end > start).then_some((start, end))
}

/// `2s`, `500ms`, `1.5s`, `1m` as seconds.
fn seconds(text: &str) -> Option<f64> {
    let (number, unit) = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|i| text.split_at(i))?;
    let n: f64 = number.parse().ok()?;
    Some(match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "us" | "µs" => n / 1e6,
        _ => return None,
    })
}

/// No success was answered for a request (a recorded event, a started
/// trace) sent after PostgreSQL went down and answered before it came
/// back, per the fault timeline: such an answer cannot follow a commit.
pub fn no_false_ack(history: &History, readback: &ReadBack, faults: &[Fault]) -> CheckVerdict {
    let mut b = Builder::new(Check::TracingNoFalseAck, faults);
    let services: BTreeSet<&str> = readback
        .tracing
        .iter()
        .flat_map(|t| t.postgres_services.iter().map(String::as_str))
        .collect();
    let down: Vec<(&Fault, f64, f64)> = faults
        .iter()
        .filter(|f| services.contains(f.target.as_str()))
        .filter_map(|f| postgres_down(f).map(|(s, e)| (f, s, e)))
        .collect();
    b.count("down_windows", down.len() as u64);
    for op in &history.operations {
        let what = match &op.invocation {
            Invocation::TracingRecord { event_id, .. } => format!("event {event_id}"),
            Invocation::TracingStart { flow } => format!("a trace of flow {flow}"),
            _ => continue,
        };
        let (Outcome::Ok(_), Some(done)) = (&op.outcome, op.completed_s) else {
            continue;
        };
        for (f, start, end) in &down {
            if op.invoked_s >= *start && done <= *end {
                b.count("false_acks", 1);
                b.violation(
                    Some(op),
                    format!(
                        "{what} acknowledged while PostgreSQL `{}` was down (fault `{}`, {start:.2}–{end:.2} s)",
                        f.target, f.name
                    ),
                );
            }
        }
        b.count("acknowledged", 1);
    }
    let sent_inside = history
        .operations
        .iter()
        .filter(|o| {
            matches!(
                o.invocation,
                Invocation::TracingRecord { .. } | Invocation::TracingStart { .. }
            )
        })
        .filter(|o| {
            down.iter()
                .any(|(_, s, e)| o.invoked_s >= *s && o.invoked_s <= *e)
        })
        .count() as u64;
    b.count("sent_while_down", sent_inside);
    if services.is_empty() {
        b.violation(
            None,
            "no PostgreSQL service of a tracing server is known, so no answer could be judged"
                .to_owned(),
        );
    }
    let checked = {
        format!(
            "{} acknowledged request(s) checked against {} window(s) where PostgreSQL ({}) was down; {} request(s) were sent inside one",
            b.counts.get("acknowledged").copied().unwrap_or(0),
            down.len(),
            services.iter().copied().collect::<Vec<_>>().join(", "),
            sent_inside,
        )
    };
    b.finish(checked)
}
