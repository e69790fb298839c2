//! Property test of the queue state machine against a simple reference
//! model: random enqueue / reserve / ack / nack / replay / clock-advance /
//! restart sequences, driven directly on [`QueueState`] with a fake clock.
//! A restart rebuilds the state from the records logged so far (what
//! recovery does); leases are lost, attempts fall back to their last
//! logged value. After every step the outcomes and the counters must agree,
//! and no job may ever be lost (at-least-once).

use std::collections::BTreeMap;

use fabric::queue::{BackoffStrategy, QueueState, Record, RetryPolicy};
use fabric::resource::StoreError;
use proptest::prelude::*;

const SEC: i64 = 1_000_000;

#[derive(Debug, Clone)]
enum Op {
    Enqueue { delay: i64 },
    Reserve { max: usize, vis: i64 },
    Ack { pick: usize },
    Nack { pick: usize, delay: Option<i64> },
    Replay { pick: usize },
    Advance { dt: i64 },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0i64..3).prop_map(|d| Op::Enqueue { delay: d * SEC }),
        3 => (1usize..4, 1i64..5).prop_map(|(max, v)| Op::Reserve { max, vis: v * SEC }),
        2 => any::<usize>().prop_map(|pick| Op::Ack { pick }),
        2 => (any::<usize>(), proptest::option::of(0i64..3))
            .prop_map(|(pick, d)| Op::Nack { pick, delay: d.map(|d| d * SEC) }),
        1 => any::<usize>().prop_map(|pick| Op::Replay { pick }),
        3 => (0i64..6).prop_map(|d| Op::Advance { dt: d * SEC / 2 }),
        1 => Just(Op::Restart),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum St {
    Pending,
    InFlight { until: i64 },
    Acked,
    Dead,
}

#[derive(Debug, Clone)]
struct MJob {
    visible: i64,
    attempts: u32,
    durable_attempts: u32,
    st: St,
}

/// The reference: a flat map, every operation a linear scan.
struct Model {
    policy: RetryPolicy,
    jobs: BTreeMap<u64, MJob>,
    completed: u64,
    failed: u64,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Ok,
    NotFound,
    LeaseExpired,
    Conflict,
}

fn outcome<T>(r: Result<T, StoreError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(StoreError::NotFound(_)) => Outcome::NotFound,
        Err(StoreError::LeaseExpired(_)) => Outcome::LeaseExpired,
        Err(StoreError::Conflict(_)) => Outcome::Conflict,
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

impl Model {
    fn backoff(&self, attempts: u32) -> i64 {
        fabric::queue::backoff_us(&self.policy, attempts)
    }

    fn fail(&mut self, seq: u64, at: i64, delay: Option<i64>) {
        let max = self.policy.max_attempts;
        let backoff = self.backoff(self.jobs[&seq].attempts);
        let j = self.jobs.get_mut(&seq).unwrap();
        j.durable_attempts = j.attempts;
        if j.attempts >= max {
            j.st = St::Dead;
            self.failed += 1;
        } else {
            j.st = St::Pending;
            j.visible = at + delay.unwrap_or(backoff);
        }
    }

    fn expire(&mut self, now: i64) {
        let mut due: Vec<(i64, u64)> = self
            .jobs
            .iter()
            .filter_map(|(&s, j)| match j.st {
                St::InFlight { until } if until <= now => Some((until, s)),
                _ => None,
            })
            .collect();
        due.sort_unstable();
        for (until, seq) in due {
            self.fail(seq, until, None);
        }
    }

    fn reserve(&mut self, now: i64, vis: i64, max: usize) -> Vec<(u64, u32)> {
        let mut ready: Vec<(i64, u64)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.st == St::Pending && j.visible <= now)
            .map(|(&s, j)| (j.visible, s))
            .collect();
        ready.sort_unstable();
        ready
            .into_iter()
            .take(max)
            .map(|(_, s)| {
                let j = self.jobs.get_mut(&s).unwrap();
                j.st = St::InFlight { until: now + vis };
                j.attempts += 1;
                (s, j.attempts)
            })
            .collect()
    }

    fn ack(&mut self, seq: u64, now: i64) -> Outcome {
        let Some(j) = self.jobs.get_mut(&seq) else {
            return Outcome::NotFound;
        };
        match j.st {
            St::Acked => Outcome::Ok,
            St::InFlight { until } if until > now => {
                j.st = St::Acked;
                self.completed += 1;
                Outcome::Ok
            }
            _ => Outcome::LeaseExpired,
        }
    }

    fn nack(&mut self, seq: u64, now: i64, delay: Option<i64>) -> Outcome {
        let Some(j) = self.jobs.get(&seq) else {
            return Outcome::NotFound;
        };
        match j.st {
            St::Acked => Outcome::Conflict,
            St::InFlight { until } if until > now => {
                self.fail(seq, now, delay);
                Outcome::Ok
            }
            _ => Outcome::LeaseExpired,
        }
    }

    fn replay(&mut self, seq: u64, now: i64) -> Outcome {
        let Some(j) = self.jobs.get_mut(&seq) else {
            return Outcome::NotFound;
        };
        if j.st != St::Dead {
            return Outcome::Conflict;
        }
        j.st = St::Pending;
        j.visible = now;
        j.attempts = 0;
        j.durable_attempts = 0;
        Outcome::Ok
    }

    fn restart(&mut self) {
        for j in self.jobs.values_mut() {
            if let St::InFlight { .. } = j.st {
                j.st = St::Pending;
            }
            j.attempts = j.durable_attempts;
        }
    }

    fn counts(&self) -> (u64, u64, u64, u64, u64) {
        let n = |f: fn(&St) -> bool| self.jobs.values().filter(|j| f(&j.st)).count() as u64;
        (
            n(|s| *s == St::Pending),
            n(|s| matches!(s, St::InFlight { .. })),
            self.completed,
            self.failed,
            n(|s| *s == St::Dead),
        )
    }
}

/// The implementation plus its durable log.
struct Sut {
    q: QueueState,
    log: Vec<(u64, Record)>,
    next_offset: u64,
    restarts: u32,
}

impl Sut {
    fn log(&mut self, recs: Vec<Record>) {
        for r in recs {
            // Every record goes through the codec, as it would on disk.
            let r = Record::decode(&r.encode()).unwrap();
            self.log.push((self.next_offset, r));
            self.next_offset += 1;
        }
    }

    fn restart(&mut self) {
        self.restarts += 1;
        let mut q = QueueState::new(7, self.restarts);
        for (off, r) in &self.log {
            q.apply(*off, r);
        }
        self.q = q;
    }
}

fn run(policy: RetryPolicy, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut now: i64 = 1_700_000_000 * SEC;
    let mut model = Model {
        policy,
        jobs: BTreeMap::new(),
        completed: 0,
        failed: 0,
    };
    let mut sut = Sut {
        q: QueueState::new(7, 0),
        log: Vec::new(),
        next_offset: 0,
        restarts: 0,
    };
    let rec = sut.q.set_policy(policy);
    sut.log(vec![rec]);
    let mut seqs: Vec<u64> = Vec::new();
    let pick = |seqs: &[u64], p: usize| -> u64 {
        // One choice past the end names a job that never existed.
        if p % (seqs.len() + 1) == seqs.len() {
            1 << 40
        } else {
            seqs[p % (seqs.len() + 1)]
        }
    };
    for op in ops {
        // The queue's task ends expired leases before each group.
        model.expire(now);
        let recs = sut.q.expire(now);
        sut.log(recs);
        match op {
            Op::Enqueue { delay } => {
                let seq = sut.next_offset;
                let r = sut
                    .q
                    .enqueue(seq, now, delay, BTreeMap::new(), seq.to_le_bytes().to_vec());
                sut.log(vec![r]);
                model.jobs.insert(
                    seq,
                    MJob {
                        visible: now + delay,
                        attempts: 0,
                        durable_attempts: 0,
                        st: St::Pending,
                    },
                );
                seqs.push(seq);
            }
            Op::Reserve { max, vis } => {
                let got: Vec<(u64, u32)> = sut
                    .q
                    .reserve(now, vis, max)
                    .iter()
                    .map(|j| {
                        assert_eq!(j.payload, j.seq.to_le_bytes());
                        (j.seq, j.attempts)
                    })
                    .collect();
                prop_assert_eq!(got, model.reserve(now, vis, max));
            }
            Op::Ack { pick: p } => {
                let seq = pick(&seqs, p);
                let r = sut.q.ack(seq, now, None);
                let o = outcome(r.clone());
                if let Ok(Some(rec)) = r {
                    sut.log(vec![rec]);
                }
                prop_assert_eq!(o, model.ack(seq, now));
            }
            Op::Nack { pick: p, delay } => {
                let seq = pick(&seqs, p);
                let r = sut.q.nack(seq, now, None, delay);
                let o = outcome(r.clone());
                if let Ok(rec) = r {
                    sut.log(vec![rec]);
                }
                prop_assert_eq!(o, model.nack(seq, now, delay));
            }
            Op::Replay { pick: p } => {
                let seq = pick(&seqs, p);
                let r = sut.q.replay(seq, now);
                let o = outcome(r.clone());
                if let Ok(rec) = r {
                    sut.log(vec![rec]);
                }
                prop_assert_eq!(o, model.replay(seq, now));
            }
            Op::Advance { dt } => now += dt,
            Op::Restart => {
                sut.restart();
                model.restart();
                prop_assert_eq!(sut.q.in_flight(), 0, "no lease survives a restart");
            }
        }
        let s = sut.q.stats(now);
        prop_assert_eq!(
            (s.pending, s.in_flight, s.completed, s.failed, s.dlq),
            model.counts()
        );
        // At-least-once: every enqueued job is acked, dead or still live.
        prop_assert_eq!(
            s.pending + s.in_flight + s.completed + s.dlq,
            seqs.len() as u64
        );
    }
    // Finally: after a restart, every un-acked live job is delivered again.
    sut.restart();
    model.restart();
    let far = now + 100 * 86400 * SEC;
    let mut again: Vec<u64> = sut
        .q
        .reserve(far, SEC, usize::MAX)
        .iter()
        .map(|j| j.seq)
        .collect();
    again.sort_unstable();
    let expected: Vec<u64> = model
        .jobs
        .iter()
        .filter(|(_, j)| j.st == St::Pending)
        .map(|(&s, _)| s)
        .collect();
    prop_assert_eq!(again, expected);
    Ok(())
}

fn policy() -> impl Strategy<Value = RetryPolicy> {
    (1u32..4, 0u32..3, prop::bool::ANY).prop_map(|(max, init, exp)| RetryPolicy {
        max_attempts: max,
        initial_backoff_seconds: f64::from(init),
        max_backoff_seconds: 4.0,
        backoff_multiplier: 2.0,
        backoff_strategy: if exp {
            BackoffStrategy::Exponential
        } else {
            BackoffStrategy::Fixed
        },
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn queue_matches_the_reference_model(p in policy(),
                                         ops in proptest::collection::vec(op(), 1..80)) {
        run(p, ops)?;
    }
}

#[test]
fn lease_ids_guard_against_stale_acks() {
    let mut q = QueueState::new(1, 1);
    let now = 1_000 * SEC;
    q.enqueue(0, now, 0, BTreeMap::new(), b"x".to_vec());
    let first = q.reserve(now, SEC, 1)[0].lease.unwrap();
    // The lease expires, the job is delivered again under a new lease.
    let recs = q.expire(now + 2 * SEC);
    assert!(matches!(recs[..], [Record::Retry { attempts: 1, .. }]));
    let second = q.reserve(now + 10 * SEC, SEC, 1)[0].lease.unwrap();
    assert_ne!(first.id, second.id);
    // The first consumer's late ack is refused; the second one's succeeds.
    assert!(matches!(
        q.ack(0, now + 10 * SEC, Some(first.id)),
        Err(StoreError::LeaseExpired(_))
    ));
    assert!(q.ack(0, now + 10 * SEC, Some(second.id)).unwrap().is_some());
    // Idempotent.
    assert!(q.ack(0, now + 10 * SEC, Some(second.id)).unwrap().is_none());
}
