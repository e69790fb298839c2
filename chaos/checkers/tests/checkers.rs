//! The checkers against synthetic histories: a simulated store that is
//! correct (applies every acknowledged operation, some unknown ones, no
//! failed one) must pass every check; the same history with one
//! acknowledged effect lost must fail, and the evidence must name it.

use std::collections::BTreeMap;
use std::path::Path;

use gauntlet_checkers::history::{Event, Record};
use gauntlet_checkers::*;
use gauntlet_recorder::faults::Fault;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Out {
    Ok,
    Fail,
    /// Unknown to the client; `true` when the store applied it anyway.
    Unknown(bool),
}

fn out() -> impl Strategy<Value = Out> {
    prop_oneof![
        6 => Just(Out::Ok),
        1 => Just(Out::Fail),
        2 => any::<bool>().prop_map(Out::Unknown),
    ]
}

fn applied(o: Out) -> bool {
    matches!(o, Out::Ok | Out::Unknown(true))
}

fn fault() -> Vec<Fault> {
    vec![Fault {
        name: "kill-1".into(),
        kind: "process.kill".into(),
        target: "fabric".into(),
        start_s: 5.0,
        end_s: Some(7.0),
        params: BTreeMap::new(),
    }]
}

/// Builds the history a client would have recorded.
struct Sim {
    ops: Vec<Operation>,
    t: f64,
}

impl Sim {
    fn new() -> Self {
        Sim {
            ops: Vec::new(),
            t: 0.0,
        }
    }
    fn op(&mut self, invocation: Invocation, o: Out, ack: Acknowledged) {
        self.t += 0.1;
        let outcome = match o {
            Out::Ok => Outcome::Ok(ack),
            Out::Fail => Outcome::Fail("http_400".into()),
            Out::Unknown(_) => Outcome::Unknown("timeout".into()),
        };
        self.ops.push(Operation {
            id: self.ops.len() as u64 + 1,
            invoked_s: self.t,
            completed_s: Some(self.t + 0.05),
            invocation,
            outcome,
        });
    }
    fn history(self) -> History {
        History {
            operations: self.ops,
            torn_tail: false,
        }
    }
}

const STREAM: &str = "t/ns/events";
const QUEUE: &str = "t/ns/jobs";
const STORE: &str = "t/ns/kv";

fn payload(i: usize) -> Digest {
    Digest::of(format!("payload-{i}").as_bytes())
}

/// Appends with the given outcomes and batch sizes to a correct stream.
fn streams(outs: &[(Out, usize)]) -> (History, ReadBack) {
    let mut sim = Sim::new();
    let mut log: Vec<StreamMessage> = Vec::new();
    let mut n = 0;
    for (o, batch) in outs {
        let payloads: Vec<Digest> = (0..*batch).map(|k| payload(n + k)).collect();
        n += batch;
        let mut offsets = Vec::new();
        if applied(*o) {
            for p in &payloads {
                offsets.push(log.len() as u64);
                log.push(StreamMessage {
                    offset: log.len() as u64,
                    payload: p.clone(),
                });
            }
        }
        sim.op(
            Invocation::StreamAppend {
                stream: STREAM.into(),
                payloads,
            },
            *o,
            Acknowledged {
                offsets,
                ..Default::default()
            },
        );
    }
    let mut rb = ReadBack::default();
    rb.streams.insert(STREAM.into(), log);
    (sim.history(), rb)
}

fn run(check: Check, h: &History, rb: &ReadBack) -> CheckVerdict {
    check.run(h, rb, &fault())
}

proptest! {
    #[test]
    fn a_correct_stream_passes(outs in proptest::collection::vec((out(), 1usize..4), 0..60)) {
        let (h, rb) = streams(&outs);
        for check in [Check::NoAckedWriteLost, Check::OffsetsUnique] {
            let v = run(check, &h, &rb);
            prop_assert!(v.passed, "{}: {}", v.name, v.evidence);
        }
    }

    #[test]
    fn one_lost_acknowledged_event_fails(
        outs in proptest::collection::vec((out(), 1usize..4), 1..60),
        pick in any::<proptest::sample::Index>(),
    ) {
        let (h, mut rb) = streams(&outs);
        // The acknowledged offsets, one of which the store loses.
        let acked: Vec<u64> = h.operations.iter().filter_map(|o| match &o.outcome {
            Outcome::Ok(a) => Some(a.offsets.clone()),
            _ => None,
        }).flatten().collect();
        prop_assume!(!acked.is_empty());
        let lost = acked[pick.index(acked.len())];
        rb.streams.get_mut(STREAM).unwrap().retain(|m| m.offset != lost);
        let v = run(Check::NoAckedWriteLost, &h, &rb);
        prop_assert!(!v.passed);
        prop_assert_eq!(v.counts["missing"], 1);
        let needle = format!("offset {lost} of {STREAM} missing");
        prop_assert!(v.evidence.contains(&needle), "{}", v.evidence);
        prop_assert!(v.violations[0].relative_to_faults.contains("kill-1"));
    }

    #[test]
    fn losing_only_unknown_appends_passes(outs in proptest::collection::vec((out(), 1usize..4), 0..60)) {
        let (h, mut rb) = streams(&outs);
        // Drop every event that came from an unknown append.
        let unknown: Vec<Digest> = h.operations.iter().filter(|o| o.outcome.is_unknown())
            .flat_map(|o| match &o.invocation {
                Invocation::StreamAppend { payloads, .. } => payloads.clone(),
                _ => vec![],
            }).collect();
        rb.streams.get_mut(STREAM).unwrap().retain(|m| !unknown.contains(&m.payload));
        let v = run(Check::NoAckedWriteLost, &h, &rb);
        prop_assert!(v.passed, "{}", v.evidence);
    }

    #[test]
    fn a_reused_offset_fails(outs in proptest::collection::vec((Just(Out::Ok), 1usize..3), 2..30)) {
        let (mut h, rb) = streams(&outs);
        // The last append is acknowledged with the first offset again.
        let last = h.operations.last_mut().unwrap();
        if let Outcome::Ok(a) = &mut last.outcome { a.offsets[0] = 0; }
        let v = run(Check::OffsetsUnique, &h, &rb);
        prop_assert!(!v.passed);
        prop_assert!(v.evidence.contains(&format!("offset 0 of {STREAM} acknowledged to operations 1 and")), "{}", v.evidence);
    }
}

/// Enqueues with outcomes; acks (with outcomes) of some acknowledged jobs;
/// a correct queue delivers every applied, not applied-acked job, and
/// `dups` of them twice.
fn queue(enq: &[Out], acks: &[(usize, Out)], dups: usize) -> (History, ReadBack) {
    let mut sim = Sim::new();
    let mut jobs: Vec<(String, Digest, bool)> = Vec::new();
    for (i, o) in enq.iter().enumerate() {
        let id = format!("{i:08x}");
        jobs.push((id.clone(), payload(i), applied(*o)));
        sim.op(
            Invocation::QueueEnqueue {
                queue: QUEUE.into(),
                payload: payload(i),
            },
            *o,
            Acknowledged {
                job_id: Some(id),
                ..Default::default()
            },
        );
    }
    let mut done = vec![false; jobs.len()];
    for (pick, o) in acks {
        if jobs.is_empty() {
            break;
        }
        let j = pick % jobs.len();
        if !jobs[j].2 {
            continue;
        }
        sim.op(
            Invocation::QueueAck {
                queue: QUEUE.into(),
                job_id: jobs[j].0.clone(),
            },
            *o,
            Acknowledged::default(),
        );
        if applied(*o) {
            done[j] = true;
        }
    }
    let mut drained: Vec<DeliveredJob> = jobs
        .iter()
        .zip(&done)
        .filter(|((_, _, ok), d)| *ok && !**d)
        .map(|((id, p, _), _)| DeliveredJob {
            job_id: id.clone(),
            payload: p.clone(),
        })
        .collect();
    let again: Vec<DeliveredJob> = drained.iter().take(dups).cloned().collect();
    drained.extend(again);
    let mut rb = ReadBack::default();
    rb.queues.insert(QUEUE.into(), drained);
    (sim.history(), rb)
}

proptest! {
    #[test]
    fn a_correct_queue_passes_and_counts_duplicates(
        enq in proptest::collection::vec(out(), 0..50),
        acks in proptest::collection::vec((any::<usize>(), out()), 0..30),
        dups in 0usize..4,
    ) {
        let (h, rb) = queue(&enq, &acks, dups);
        let v = run(Check::QueueAtLeastOnce, &h, &rb);
        prop_assert!(v.passed, "{}", v.evidence);
        let delivered = rb.queues[QUEUE].len() as u64;
        let unique = rb.queues[QUEUE].iter().map(|j| &j.job_id).collect::<std::collections::BTreeSet<_>>().len() as u64;
        prop_assert_eq!(v.counts["duplicate_deliveries"], delivered - unique);
    }

    #[test]
    fn one_lost_job_fails_naming_it(
        enq in proptest::collection::vec(out(), 1..50),
        acks in proptest::collection::vec((any::<usize>(), out()), 0..30),
        pick in any::<proptest::sample::Index>(),
    ) {
        let (h, mut rb) = queue(&enq, &acks, 0);
        let required = required_jobs(&h);
        prop_assume!(!required.is_empty());
        let lost = required[pick.index(required.len())].clone();
        rb.queues.get_mut(QUEUE).unwrap().retain(|j| j.job_id != lost);
        let v = run(Check::QueueAtLeastOnce, &h, &rb);
        prop_assert!(!v.passed);
        prop_assert_eq!(v.counts["missing"], 1);
        let needle = format!("job {lost} of {QUEUE} never delivered");
        prop_assert!(v.evidence.contains(&needle), "{}", v.evidence);
    }
}

/// The jobs `fabric.queue.at_least_once` requires: acknowledged as
/// enqueued and never (maybe) acked.
fn required_jobs(h: &History) -> Vec<String> {
    let maybe_acked: Vec<String> = h
        .operations
        .iter()
        .filter_map(|o| match (&o.invocation, &o.outcome) {
            (Invocation::QueueAck { job_id, .. }, Outcome::Ok(_) | Outcome::Unknown(_)) => {
                Some(job_id.clone())
            }
            _ => None,
        })
        .collect();
    h.operations
        .iter()
        .filter_map(|o| match (&o.invocation, &o.outcome) {
            (Invocation::QueueEnqueue { .. }, Outcome::Ok(a)) => a.job_id.clone(),
            _ => None,
        })
        .filter(|j| !maybe_acked.contains(j))
        .collect()
}

proptest! {
    /// Jobs that exhausted their attempts sit in the DLQ, not in the drain:
    /// each counts as delivered (to the DLQ), the verdict says how many,
    /// and losing one from the DLQ is still caught.
    #[test]
    fn jobs_in_the_dlq_are_delivered_not_lost(
        enq in proptest::collection::vec(out(), 1..50),
        acks in proptest::collection::vec((any::<usize>(), out()), 0..30),
        dead in proptest::collection::vec(any::<bool>(), 50),
        lose in any::<proptest::sample::Index>(),
    ) {
        let (h, mut rb) = queue(&enq, &acks, 0);
        let drained = rb.queues.get_mut(QUEUE).unwrap();
        let mut dlq = Vec::new();
        let mut i = 0;
        drained.retain(|j| {
            i += 1;
            if dead[i - 1] {
                dlq.push(j.clone());
                false
            } else {
                true
            }
        });
        // Only the required jobs are counted; the others may be in the
        // DLQ too.
        let required = required_jobs(&h);
        let in_dlq = dlq.iter().filter(|j| required.contains(&j.job_id)).count() as u64;
        rb.dlq.insert(QUEUE.into(), dlq.clone());
        let v = run(Check::QueueAtLeastOnce, &h, &rb);
        prop_assert!(v.passed, "{}", v.evidence);
        prop_assert_eq!(v.counts.get("in_dlq").copied().unwrap_or(0), in_dlq);
        let needle = format!(": {in_dlq} found in a DLQ (attempts exhausted");
        prop_assert!(v.evidence.contains(&needle), "{}", v.evidence);
        // Without the DLQ in the read-back those jobs would be lost.
        let mut without = rb.clone();
        without.dlq.clear();
        let v = run(Check::QueueAtLeastOnce, &h, &without);
        prop_assert_eq!(v.passed, in_dlq == 0, "{}", v.evidence);
        // A required job lost from the DLQ itself is caught, by id.
        let dlq: Vec<&DeliveredJob> = dlq.iter().filter(|j| required.contains(&j.job_id)).collect();
        if !dlq.is_empty() {
            let lost = dlq[lose.index(dlq.len())].job_id.clone();
            rb.dlq.get_mut(QUEUE).unwrap().retain(|j| j.job_id != lost);
            let v = run(Check::QueueAtLeastOnce, &h, &rb);
            prop_assert!(!v.passed);
            let needle = format!("job {lost} of {QUEUE} never delivered");
            prop_assert!(v.evidence.contains(&needle), "{}", v.evidence);
        }
    }
}

/// Writes to a few keys in sequence (each acknowledged before the next is
/// sent); a correct store keeps the last applied write.
fn kv(writes: &[(usize, Option<u8>, Out)]) -> (History, ReadBack) {
    let mut sim = Sim::new();
    let mut state: BTreeMap<String, Option<Digest>> = BTreeMap::new();
    for (i, (k, v, o)) in writes.iter().enumerate() {
        let key = format!("k{}", k % 4);
        let value = v.map(|b| Digest::of(&[b, i as u8]));
        let inv = match &value {
            Some(d) => Invocation::KvPut {
                store: STORE.into(),
                key: key.clone(),
                value: d.clone(),
            },
            None => Invocation::KvDelete {
                store: STORE.into(),
                key: key.clone(),
            },
        };
        sim.op(inv, *o, Acknowledged::default());
        state.entry(key.clone()).or_insert(None);
        if applied(*o) {
            state.insert(key, value);
        }
    }
    let mut rb = ReadBack::default();
    rb.kv.insert(STORE.into(), state);
    (sim.history(), rb)
}

fn kv_writes() -> impl Strategy<Value = Vec<(usize, Option<u8>, Out)>> {
    proptest::collection::vec(
        (
            0usize..4,
            proptest::option::weighted(0.85, any::<u8>()),
            out(),
        ),
        0..40,
    )
}

proptest! {
    #[test]
    fn a_correct_kv_store_passes(writes in kv_writes()) {
        let (h, rb) = kv(&writes);
        let v = run(Check::KvReadYourWrites, &h, &rb);
        prop_assert!(v.passed, "{}", v.evidence);
    }

    #[test]
    fn a_lost_last_acknowledged_write_fails(writes in kv_writes(), extra in any::<u8>()) {
        // An unknown write may take effect at any time, so it could excuse
        // the loss; this property is about keys without one.
        prop_assume!(!writes.iter().any(|(k, _, o)| k % 4 == 0 && matches!(o, Out::Unknown(_))));
        let (mut h, mut rb) = kv(&writes);
        // One more acknowledged put whose effect the store loses.
        let t = h.operations.last().map_or(0.0, |o| o.completed_s.unwrap()) + 1.0;
        let value = Digest::of(&[extra, 255, 255]);
        h.operations.push(Operation {
            id: 10_000, invoked_s: t, completed_s: Some(t + 0.01),
            invocation: Invocation::KvPut { store: STORE.into(), key: "k0".into(), value },
            outcome: Outcome::Ok(Acknowledged::default()),
        });
        rb.kv.entry(STORE.into()).or_default().entry("k0".into()).or_insert(None);
        let v = run(Check::KvReadYourWrites, &h, &rb);
        prop_assert!(!v.passed, "{}", v.evidence);
        prop_assert!(v.evidence.contains("key k0 of t/ns/kv holds"), "{}", v.evidence);
    }
}

#[test]
fn an_unread_stream_or_queue_fails_rather_than_passing_unverified() {
    let (h, _) = streams(&[(Out::Ok, 1)]);
    let v = run(Check::NoAckedWriteLost, &h, &ReadBack::default());
    assert!(!v.passed);
    assert!(v.evidence.contains("was not read back"), "{}", v.evidence);
    let (h, _) = queue(&[Out::Ok], &[], 0);
    let v = run(Check::QueueAtLeastOnce, &h, &ReadBack::default());
    assert!(!v.passed);
    assert!(v.evidence.contains("was not drained"), "{}", v.evidence);
}

#[test]
fn concurrent_kv_writes_allow_either_order() {
    // Two puts overlap in time; both acknowledged: either value may win.
    let put = |id, t0: f64, t1: f64, b: u8| Operation {
        id,
        invoked_s: t0,
        completed_s: Some(t1),
        invocation: Invocation::KvPut {
            store: STORE.into(),
            key: "k".into(),
            value: Digest::of(&[b]),
        },
        outcome: Outcome::Ok(Acknowledged::default()),
    };
    let h = History {
        operations: vec![put(1, 1.0, 3.0, 1), put(2, 2.0, 2.5, 2)],
        torn_tail: false,
    };
    for b in [1u8, 2] {
        let mut rb = ReadBack::default();
        rb.kv
            .entry(STORE.into())
            .or_default()
            .insert("k".into(), Some(Digest::of(&[b])));
        assert!(run(Check::KvReadYourWrites, &h, &rb).passed);
    }
    let mut rb = ReadBack::default();
    rb.kv
        .entry(STORE.into())
        .or_default()
        .insert("k".into(), None);
    let v = run(Check::KvReadYourWrites, &h, &rb);
    assert!(!v.passed && v.evidence.contains("absent"), "{}", v.evidence);
}

#[test]
fn evidence_is_placed_relative_to_the_faults() {
    let f = fault();
    assert_eq!(relative_to_faults(5.5, &f), "0.50 s into fault `kill-1`");
    assert_eq!(
        relative_to_faults(9.0, &f),
        "2.00 s after fault `kill-1` ended"
    );
    assert_eq!(relative_to_faults(1.0, &f), "4.00 s before fault `kill-1`");
    assert_eq!(relative_to_faults(1.0, &[]), "no faults in the run");
}

#[test]
fn the_writer_and_reader_round_trip_and_tolerate_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let w = HistoryWriter::create(&path).unwrap();
    let a = w
        .invoke(
            1.0,
            Invocation::StreamAppend {
                stream: STREAM.into(),
                payloads: vec![payload(0)],
            },
        )
        .unwrap();
    let b = w
        .invoke(
            1.1,
            Invocation::QueueEnqueue {
                queue: QUEUE.into(),
                payload: payload(1),
            },
        )
        .unwrap();
    let c = w
        .invoke(
            1.2,
            Invocation::KvDelete {
                store: STORE.into(),
                key: "k".into(),
            },
        )
        .unwrap();
    w.complete(
        a,
        1.5,
        Outcome::Ok(Acknowledged {
            offsets: vec![0],
            ..Default::default()
        }),
    )
    .unwrap();
    w.complete(b, 1.6, Outcome::Unknown("timeout".into()))
        .unwrap();
    w.flush().unwrap();
    drop(w);
    // A run killed mid-write: half a record at the end.
    std::fs::write(
        &path,
        [
            std::fs::read(&path).unwrap(),
            br#"{"id":3,"t_s":2.0,"ty"#.to_vec(),
        ]
        .concat(),
    )
    .unwrap();
    let h = History::read(&path).unwrap();
    assert!(h.torn_tail);
    assert_eq!(h.operations.len(), 3);
    assert_eq!(
        h.operations[0].outcome,
        Outcome::Ok(Acknowledged {
            offsets: vec![0],
            ..Default::default()
        })
    );
    assert_eq!(h.operations[1].outcome, Outcome::Unknown("timeout".into()));
    assert_eq!(h.operations[2].id, c);
    assert!(
        h.operations[2].outcome.is_unknown(),
        "no completion: unknown"
    );
    assert_eq!(h.operations[2].completed_s, None);
}

#[test]
fn a_bad_line_in_the_middle_or_an_orphan_completion_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    std::fs::write(&path, "{\"id\":1,\"t_s\":0.0,\"type\":\"invoke\",\"op\":\"kv.delete\",\"store\":\"s\",\"key\":\"k\"}\nnot json\n{}\n").unwrap();
    let err = History::read(&path).unwrap_err().to_string();
    assert!(err.contains("history.jsonl:2"), "{err}");
    let orphan = Record {
        id: 9,
        t_s: 0.0,
        event: Event::Ok(Acknowledged::default()),
    };
    std::fs::write(
        &path,
        format!("{}\n", serde_json::to_string(&orphan).unwrap()),
    )
    .unwrap();
    let err = History::read(&path).unwrap_err().to_string();
    assert!(err.contains("never invoked"), "{err}");
    assert!(History::read(Path::new("/nonexistent/history.jsonl")).is_err());
}

#[test]
fn check_names_round_trip() {
    for c in Check::ALL {
        assert_eq!(Check::from_name(c.name()), Some(c));
    }
    assert_eq!(Check::from_name("fabric.nope"), None);
}

#[test]
fn the_writer_flushes_as_the_run_goes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let w = HistoryWriter::create(&path).unwrap();
    let a = w
        .invoke(
            0.0,
            Invocation::KvDelete {
                store: STORE.into(),
                key: "k".into(),
            },
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(250));
    // The next record finds the buffer older than the flush period.
    w.complete(a, 0.3, Outcome::Fail("http_404".into()))
        .unwrap();
    let on_disk = History::read(&path).unwrap();
    assert_eq!(
        on_disk.operations.len(),
        1,
        "readable while the writer is open"
    );
    assert_eq!(
        on_disk.operations[0].outcome,
        Outcome::Fail("http_404".into())
    );
    drop(w);
}
