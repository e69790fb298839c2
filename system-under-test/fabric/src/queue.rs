//! The queue state machine, pure: no I/O, no clock (every operation takes
//! `now` in microseconds), so it can be driven directly by tests with a fake
//! clock. [`crate::queue_store`] runs it inside a queue's task and logs its
//! [`Record`]s.
//!
//! # Model
//!
//! A job is *pending* (waiting until `visible_us`, then reservable),
//! *in flight* (leased by a reserve until `reserve_until`), *completed*
//! (acked) or *dead* (in the dead-letter queue, DLQ). A job's `seq` is the
//! log offset of its enqueue record, so it is unique and never reused (the
//! log never reuses an offset, see [`crate::durable`]); its id is the
//! queue's incarnation and the seq in hex.
//!
//! # Event sourcing
//!
//! Every durable change is a [`Record`] appended to the queue's log:
//! `Enqueue`, `Ack`, `Retry` (a failed attempt: nack or lease expiry, with
//! the attempt count and the next visibility time), `Dead` (moved to the
//! DLQ), `Replay` (back from the DLQ) and `Policy` (retry policy). State
//! changes go through [`QueueState::apply`], the same function recovery
//! uses, so the state after a restart is exactly the state the records
//! describe. Leases are not logged: after a restart every un-acked job that
//! was in flight is pending again (at-least-once), with the attempt count of
//! its last logged failure.
//!
//! Moving a job to the DLQ is one record, so it is atomic: after a crash the
//! job is either still live or in the DLQ — never lost, never both.
//!
//! # Retries
//!
//! A reserve increments the job's `attempts`. When an attempt fails (nack,
//! or the lease expires) and `attempts >= max_attempts`, the job moves to
//! the DLQ; otherwise it becomes visible again after the nack's
//! `delay_seconds` if given, else after the policy's backoff:
//! `fixed` → `initial_backoff`, `exponential` →
//! `min(max_backoff, initial_backoff * multiplier^(attempts-1))`.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use crate::frame::Entry;
use crate::resource::StoreError;

pub use fabric_wire::{BackoffStrategy, RetryPolicy};

/// The policy of a new queue: 3 attempts, exponential backoff from 1 s
/// doubling up to 60 s.
pub fn default_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff_seconds: 1.0,
        max_backoff_seconds: 60.0,
        backoff_multiplier: 2.0,
        backoff_strategy: BackoffStrategy::Exponential,
    }
}

/// Longest backoff or delay accepted (7 days), in seconds.
pub const MAX_DELAY_SECONDS: f64 = 7.0 * 86400.0;

/// Checks a policy's ranges: 1..=1000 attempts, backoffs 0..=7 days with
/// initial <= max, multiplier 1..=100.
pub fn validate_policy(p: &RetryPolicy) -> Result<(), String> {
    {
        let this = p;
        if !(1..=1000).contains(&this.max_attempts) {
            return Err("max_attempts must be between 1 and 1000".into());
        }
        for (n, v) in [
            ("initial_backoff_seconds", this.initial_backoff_seconds),
            ("max_backoff_seconds", this.max_backoff_seconds),
        ] {
            if !v.is_finite() || !(0.0..=MAX_DELAY_SECONDS).contains(&v) {
                return Err(format!("{n} must be between 0 and {MAX_DELAY_SECONDS}"));
            }
        }
        if this.initial_backoff_seconds > this.max_backoff_seconds {
            return Err("initial_backoff_seconds must not exceed max_backoff_seconds".into());
        }
        if !this.backoff_multiplier.is_finite() || !(1.0..=100.0).contains(&this.backoff_multiplier)
        {
            return Err("backoff_multiplier must be between 1 and 100".into());
        }
        Ok(())
    }
}

/// Backoff after the `attempts`-th failed attempt, in microseconds.
pub fn backoff_us(p: &RetryPolicy, attempts: u32) -> i64 {
    let secs = match p.backoff_strategy {
        BackoffStrategy::Fixed => p.initial_backoff_seconds,
        BackoffStrategy::Exponential => {
            let exp = attempts.saturating_sub(1).min(1000) as i32;
            (p.initial_backoff_seconds * p.backoff_multiplier.powi(exp)).min(p.max_backoff_seconds)
        }
    };
    (secs.clamp(0.0, MAX_DELAY_SECONDS) * 1e6) as i64
}

/// A durable change of a queue. See the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Enqueue {
        created_us: i64,
        visible_us: i64,
        headers: BTreeMap<String, String>,
        payload: Vec<u8>,
    },
    Ack {
        seq: u64,
    },
    Retry {
        seq: u64,
        attempts: u32,
        visible_us: i64,
    },
    Dead {
        seq: u64,
        attempts: u32,
        at_us: i64,
    },
    Replay {
        seq: u64,
        visible_us: i64,
    },
    Policy(RetryPolicy),
}

const T_ENQUEUE: u8 = 1;
const T_ACK: u8 = 2;
const T_RETRY: u8 = 3;
const T_DEAD: u8 = 4;
const T_REPLAY: u8 = 5;
const T_POLICY: u8 = 6;

struct Rd<'a>(&'a [u8]);

impl Rd<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        if self.0.len() < N {
            return Err("record too short".into());
        }
        let (a, b) = self.0.split_at(N);
        self.0 = b;
        Ok(a.try_into().expect("length checked"))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn end(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err("trailing bytes in record".into())
        }
    }
}

impl Record {
    /// The log entry of this record: a tag byte and little-endian fields in
    /// the payload (then the job's payload for `Enqueue`, the JSON policy
    /// for `Policy`); the job's headers as the entry's headers.
    pub fn encode(&self) -> Entry {
        let mut p = Vec::new();
        let mut headers = BTreeMap::new();
        match self {
            Record::Enqueue {
                created_us,
                visible_us,
                headers: h,
                payload,
            } => {
                p.push(T_ENQUEUE);
                p.extend_from_slice(&created_us.to_le_bytes());
                p.extend_from_slice(&visible_us.to_le_bytes());
                p.extend_from_slice(payload);
                headers = h.clone();
            }
            Record::Ack { seq } => {
                p.push(T_ACK);
                p.extend_from_slice(&seq.to_le_bytes());
            }
            Record::Retry {
                seq,
                attempts,
                visible_us,
            } => {
                p.push(T_RETRY);
                p.extend_from_slice(&seq.to_le_bytes());
                p.extend_from_slice(&attempts.to_le_bytes());
                p.extend_from_slice(&visible_us.to_le_bytes());
            }
            Record::Dead {
                seq,
                attempts,
                at_us,
            } => {
                p.push(T_DEAD);
                p.extend_from_slice(&seq.to_le_bytes());
                p.extend_from_slice(&attempts.to_le_bytes());
                p.extend_from_slice(&at_us.to_le_bytes());
            }
            Record::Replay { seq, visible_us } => {
                p.push(T_REPLAY);
                p.extend_from_slice(&seq.to_le_bytes());
                p.extend_from_slice(&visible_us.to_le_bytes());
            }
            Record::Policy(policy) => {
                p.push(T_POLICY);
                p.extend(serde_json::to_vec(policy).expect("a policy serialises"));
            }
        }
        Entry {
            headers,
            payload: p,
        }
    }

    /// Inverse of [`encode`](Self::encode).
    pub fn decode(e: &Entry) -> Result<Record, String> {
        let (&tag, rest) = e.payload.split_first().ok_or("empty record")?;
        let mut r = Rd(rest);
        let rec = match tag {
            T_ENQUEUE => {
                let created_us = r.i64()?;
                let visible_us = r.i64()?;
                return Ok(Record::Enqueue {
                    created_us,
                    visible_us,
                    headers: e.headers.clone(),
                    payload: r.0.to_vec(),
                });
            }
            T_ACK => Record::Ack { seq: r.u64()? },
            T_RETRY => Record::Retry {
                seq: r.u64()?,
                attempts: r.u32()?,
                visible_us: r.i64()?,
            },
            T_DEAD => Record::Dead {
                seq: r.u64()?,
                attempts: r.u32()?,
                at_us: r.i64()?,
            },
            T_REPLAY => Record::Replay {
                seq: r.u64()?,
                visible_us: r.i64()?,
            },
            T_POLICY => {
                let p: RetryPolicy =
                    serde_json::from_slice(r.0).map_err(|e| format!("bad policy: {e}"))?;
                return Ok(Record::Policy(p));
            }
            t => return Err(format!("unknown record tag {t}")),
        };
        r.end()?;
        Ok(rec)
    }
}

/// A lease on an in-flight job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub until_us: i64,
    pub id: u64,
}

/// A job as the state keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub seq: u64,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    pub created_us: i64,
    pub visible_us: i64,
    pub attempts: u32,
    pub lease: Option<Lease>,
    /// When it moved to the DLQ.
    pub dead_us: Option<i64>,
}

/// Counters of `GET …/stats` (ages in seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub pending: u64,
    pub in_flight: u64,
    pub completed: u64,
    pub failed: u64,
    pub dlq: u64,
    pub oldest_job_age_seconds: f64,
}

/// The state of one queue. See the module documentation.
#[derive(Debug, Clone)]
pub struct QueueState {
    incarnation: u32,
    policy: RetryPolicy,
    live: BTreeMap<u64, Job>,
    ready: BTreeSet<(i64, u64)>,
    leases: BTreeSet<(i64, u64)>,
    dlq: BTreeMap<u64, Job>,
    acked: HashSet<u64>,
    completed: u64,
    failed: u64,
    next_lease: u64,
}

impl QueueState {
    /// An empty queue; `incarnation` goes into job ids and `lease_nonce`
    /// into lease ids (distinct per process start).
    pub fn new(incarnation: u32, lease_nonce: u32) -> Self {
        Self {
            incarnation,
            policy: default_policy(),
            live: BTreeMap::new(),
            ready: BTreeSet::new(),
            leases: BTreeSet::new(),
            dlq: BTreeMap::new(),
            acked: HashSet::new(),
            completed: 0,
            failed: 0,
            next_lease: u64::from(lease_nonce) << 32,
        }
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// The public id of job `seq`.
    pub fn job_id(&self, seq: u64) -> String {
        format!("{:08x}{seq:016x}", self.incarnation)
    }

    /// The seq of a job id of this queue; `None` if it is not one.
    pub fn parse_job_id(&self, id: &str) -> Option<u64> {
        if id.len() != 24 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let inc = u32::from_str_radix(&id[..8], 16).ok()?;
        (inc == self.incarnation)
            .then(|| u64::from_str_radix(&id[8..], 16).ok())
            .flatten()
    }

    fn take_live(&mut self, seq: u64) -> Option<Job> {
        let job = self.live.remove(&seq)?;
        self.ready.remove(&(job.visible_us, seq));
        if let Some(l) = job.lease {
            self.leases.remove(&(l.until_us, seq));
        }
        Some(job)
    }

    fn put_ready(&mut self, mut job: Job) {
        job.lease = None;
        self.ready.insert((job.visible_us, job.seq));
        self.live.insert(job.seq, job);
    }

    /// Applies a durable record (`seq` is its log offset). Records that do
    /// not fit the state (a job no longer there) change nothing.
    pub fn apply(&mut self, seq: u64, rec: &Record) {
        match rec {
            Record::Enqueue {
                created_us,
                visible_us,
                headers,
                payload,
            } => self.put_ready(Job {
                seq,
                payload: payload.clone(),
                headers: headers.clone(),
                created_us: *created_us,
                visible_us: *visible_us,
                attempts: 0,
                lease: None,
                dead_us: None,
            }),
            Record::Ack { seq } => {
                if self.take_live(*seq).is_some() {
                    self.acked.insert(*seq);
                    self.completed += 1;
                }
            }
            Record::Retry {
                seq,
                attempts,
                visible_us,
            } => {
                if let Some(mut job) = self.take_live(*seq) {
                    job.attempts = *attempts;
                    job.visible_us = *visible_us;
                    self.put_ready(job);
                }
            }
            Record::Dead {
                seq,
                attempts,
                at_us,
            } => {
                if let Some(mut job) = self.take_live(*seq) {
                    job.attempts = *attempts;
                    job.lease = None;
                    job.dead_us = Some(*at_us);
                    self.dlq.insert(*seq, job);
                    self.failed += 1;
                }
            }
            Record::Replay { seq, visible_us } => {
                if let Some(mut job) = self.dlq.remove(seq) {
                    job.attempts = 0;
                    job.dead_us = None;
                    job.visible_us = *visible_us;
                    self.put_ready(job);
                }
            }
            Record::Policy(p) => self.policy = *p,
        }
    }

    /// Enqueues a job whose record will get log offset `seq`.
    pub fn enqueue(
        &mut self,
        seq: u64,
        now_us: i64,
        delay_us: i64,
        headers: BTreeMap<String, String>,
        payload: Vec<u8>,
    ) -> Record {
        let rec = Record::Enqueue {
            created_us: now_us,
            visible_us: now_us + delay_us.max(0),
            headers,
            payload,
        };
        self.apply(seq, &rec);
        rec
    }

    /// Leases up to `max` visible jobs (oldest visibility first, then seq)
    /// for `visibility_us`. Not logged.
    pub fn reserve(&mut self, now_us: i64, visibility_us: i64, max: usize) -> Vec<Job> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(&(vis, seq)) = self.ready.first() else {
                break;
            };
            if vis > now_us {
                break;
            }
            self.ready.remove(&(vis, seq));
            let job = self.live.get_mut(&seq).expect("ready jobs are live");
            self.next_lease += 1;
            let lease = Lease {
                until_us: now_us + visibility_us.max(1),
                id: self.next_lease,
            };
            job.lease = Some(lease);
            job.attempts += 1;
            self.leases.insert((lease.until_us, seq));
            out.push(job.clone());
        }
        out
    }

    /// Whether a reserve at `now_us` would find a job.
    pub fn has_visible(&self, now_us: i64) -> bool {
        self.ready.first().is_some_and(|&(v, _)| v <= now_us)
    }

    /// The failure record for live job `seq` failing at `at_us`.
    fn failure(&self, seq: u64, at_us: i64, delay_us: Option<i64>) -> Record {
        let job = &self.live[&seq];
        if job.attempts >= self.policy.max_attempts {
            Record::Dead {
                seq,
                attempts: job.attempts,
                at_us,
            }
        } else {
            let delay = delay_us.unwrap_or_else(|| backoff_us(&self.policy, job.attempts));
            Record::Retry {
                seq,
                attempts: job.attempts,
                visible_us: at_us + delay.max(0),
            }
        }
    }

    /// Ends every lease that expired at or before `now_us`; returns the
    /// records (already applied) to log.
    pub fn expire(&mut self, now_us: i64) -> Vec<Record> {
        let mut out = Vec::new();
        while let Some(&(until, seq)) = self.leases.first() {
            if until > now_us {
                break;
            }
            let rec = self.failure(seq, until, None);
            self.apply(seq, &rec);
            out.push(rec);
        }
        out
    }

    /// The earliest lease expiry.
    pub fn next_expiry(&self) -> Option<i64> {
        self.leases.first().map(|&(u, _)| u)
    }

    /// The earliest visibility time of a pending job.
    pub fn next_visible(&self) -> Option<i64> {
        self.ready.first().map(|&(v, _)| v)
    }

    fn leased(&self, seq: u64, now_us: i64, lease_id: Option<u64>) -> Result<(), StoreError> {
        match self.live.get(&seq).and_then(|j| j.lease) {
            Some(l) if l.until_us > now_us && lease_id.is_none_or(|id| id == l.id) => Ok(()),
            _ => Err(StoreError::LeaseExpired(
                "the job is not reserved by this lease (it expired, or the job was nacked or re-delivered)"
                    .into(),
            )),
        }
    }

    /// Acks job `seq`: `Ok(Some(record))` to log, `Ok(None)` if it was
    /// already acked (idempotent), 409 `lease_expired` if it is not in
    /// flight under a live lease (or under `lease_id`, if given), 404 if
    /// unknown.
    pub fn ack(
        &mut self,
        seq: u64,
        now_us: i64,
        lease_id: Option<u64>,
    ) -> Result<Option<Record>, StoreError> {
        if self.acked.contains(&seq) {
            return Ok(None);
        }
        if self.dlq.contains_key(&seq) {
            return Err(StoreError::LeaseExpired(
                "the job's lease ended and it moved to the dead-letter queue".into(),
            ));
        }
        if !self.live.contains_key(&seq) {
            return Err(StoreError::NotFound("no such job".into()));
        }
        self.leased(seq, now_us, lease_id)?;
        let rec = Record::Ack { seq };
        self.apply(seq, &rec);
        Ok(Some(rec))
    }

    /// Nacks job `seq`: visible again after `delay_us` (or the policy's
    /// backoff), or to the DLQ after its last attempt.
    pub fn nack(
        &mut self,
        seq: u64,
        now_us: i64,
        lease_id: Option<u64>,
        delay_us: Option<i64>,
    ) -> Result<Record, StoreError> {
        if self.acked.contains(&seq) {
            return Err(StoreError::Conflict(
                "the job was already acknowledged".into(),
            ));
        }
        if self.dlq.contains_key(&seq) {
            return Err(StoreError::LeaseExpired(
                "the job's lease ended and it moved to the dead-letter queue".into(),
            ));
        }
        if !self.live.contains_key(&seq) {
            return Err(StoreError::NotFound("no such job".into()));
        }
        self.leased(seq, now_us, lease_id)?;
        let rec = self.failure(seq, now_us, delay_us);
        self.apply(seq, &rec);
        Ok(rec)
    }

    /// Moves DLQ job `seq` back to pending (attempts reset, visible now).
    pub fn replay(&mut self, seq: u64, now_us: i64) -> Result<Record, StoreError> {
        if !self.dlq.contains_key(&seq) {
            if self.live.contains_key(&seq) || self.acked.contains(&seq) {
                return Err(StoreError::Conflict(
                    "the job is not in the dead-letter queue".into(),
                ));
            }
            return Err(StoreError::NotFound("no such job".into()));
        }
        let rec = Record::Replay {
            seq,
            visible_us: now_us,
        };
        self.apply(seq, &rec);
        Ok(rec)
    }

    /// Replaces the retry policy (validated by the caller).
    pub fn set_policy(&mut self, p: RetryPolicy) -> Record {
        let rec = Record::Policy(p);
        self.apply(0, &rec);
        rec
    }

    /// Up to `limit` DLQ jobs from seq `after` on (exclusive), oldest first.
    pub fn dlq(&self, after: Option<u64>, limit: usize) -> Vec<Job> {
        let from = after.map_or(0, |a| a.saturating_add(1));
        self.dlq
            .range(from..)
            .take(limit)
            .map(|(_, j)| j.clone())
            .collect()
    }

    pub fn pending(&self) -> u64 {
        self.ready.len() as u64
    }

    pub fn in_flight(&self) -> u64 {
        self.leases.len() as u64
    }

    pub fn stats(&self, now_us: i64) -> Stats {
        let oldest = self
            .live
            .values()
            .next()
            .map_or(0.0, |j| (now_us - j.created_us).max(0) as f64 / 1e6);
        Stats {
            pending: self.pending(),
            in_flight: self.in_flight(),
            completed: self.completed,
            failed: self.failed,
            dlq: self.dlq.len() as u64,
            oldest_job_age_seconds: oldest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record() -> impl Strategy<Value = Record> {
        prop_oneof![
            (
                any::<i64>(),
                any::<i64>(),
                proptest::collection::btree_map("[a-z]{1,4}", "[ -~]{0,6}", 0..3),
                proptest::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(|(c, v, h, p)| Record::Enqueue {
                    created_us: c,
                    visible_us: v,
                    headers: h,
                    payload: p
                }),
            any::<u64>().prop_map(|seq| Record::Ack { seq }),
            (any::<u64>(), any::<u32>(), any::<i64>()).prop_map(|(seq, attempts, visible_us)| {
                Record::Retry {
                    seq,
                    attempts,
                    visible_us,
                }
            }),
            (any::<u64>(), any::<u32>(), any::<i64>()).prop_map(|(seq, attempts, at_us)| {
                Record::Dead {
                    seq,
                    attempts,
                    at_us,
                }
            }),
            (any::<u64>(), any::<i64>())
                .prop_map(|(seq, visible_us)| Record::Replay { seq, visible_us }),
            (1u32..1000, 0u32..100, 1u32..50).prop_map(|(m, i, mul)| {
                Record::Policy(RetryPolicy {
                    max_attempts: m,
                    initial_backoff_seconds: f64::from(i),
                    max_backoff_seconds: 1000.0,
                    backoff_multiplier: f64::from(mul),
                    backoff_strategy: BackoffStrategy::Fixed,
                })
            }),
        ]
    }

    proptest! {
        #[test]
        fn record_codec_round_trips(r in record()) {
            prop_assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        }

        #[test]
        fn garbage_never_panics(p in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Record::decode(&Entry::new(p));
        }
    }

    #[test]
    fn backoff_is_capped_and_fixed_is_flat() {
        let mut p = default_policy();
        assert_eq!(backoff_us(&p, 1), 1_000_000);
        assert_eq!(backoff_us(&p, 3), 4_000_000);
        assert_eq!(backoff_us(&p, 50), 60_000_000);
        p.backoff_strategy = BackoffStrategy::Fixed;
        assert_eq!(backoff_us(&p, 7), 1_000_000);
        assert!(validate_policy(&p).is_ok());
        p.max_attempts = 0;
        assert!(validate_policy(&p).is_err());
    }

    #[test]
    fn job_ids_round_trip_and_belong_to_their_queue() {
        let q = QueueState::new(0xdead_beef, 1);
        let id = q.job_id(42);
        assert_eq!(id.len(), 24);
        assert_eq!(q.parse_job_id(&id), Some(42));
        assert_eq!(QueueState::new(1, 1).parse_job_id(&id), None);
        assert_eq!(q.parse_job_id("xyz"), None);
    }
}
