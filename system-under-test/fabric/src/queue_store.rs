//! Queues: each a [`QueueState`] driven by its own task ([`crate::actor`])
//! over a [`DurableLog`] of its [`Record`]s in
//! `<data-dir>/queues/<tenant>/<namespace>/<name>/` (`queue.json`, `*.seg`,
//! `offsets.hwm.json` under `interval`).
//!
//! Enqueue, ack, nack, replay and policy changes append records under the
//! node's fsync policy with group commit, and are answered only once those
//! records are durable (per policy). Reserves write nothing but are answered
//! after the group they belong to is durable, so a job is never handed out
//! before its enqueue is. At recovery the state is rebuilt by applying every
//! record in order; leases are not logged, so every un-acked job is pending
//! again after a restart (at-least-once), and an acked job never comes back.
//!
//! The visibility scheduler is the task's timer: the task wakes at the
//! earliest lease expiry (and, while long polls wait, at the earliest
//! delayed job and long-poll deadline) even when no request arrives, ends
//! expired leases (logging a `Retry` or `Dead` record) and serves waiting
//! long polls in arrival order. At shutdown every long poll is answered
//! (with no job) at once.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use fabric_wire::Job as WireJob;
use tokio::sync::oneshot;

use crate::actor::{ActorHandle, Machine, Txn};
use crate::durable::{CheckpointFiles, DurableLog, StoreOptions};
use crate::meta;
use crate::metrics::{Metrics, QueueGauge};
use crate::queue::{Job, QueueState, Record, RetryPolicy, Stats, validate_policy};
use crate::resource::{self, ResourceKey, StoreError, rfc3339};
use crate::stream_store::replay;

const QUEUE_META: &str = "queue.json";
/// Longest long poll accepted, in seconds.
pub const MAX_LONG_POLL_SECONDS: f64 = 20.0;
/// Longest visibility timeout accepted, in seconds (12 hours).
pub const MAX_VISIBILITY_SECONDS: f64 = 43_200.0;
/// Visibility timeout when the request names none, in seconds.
pub const DEFAULT_VISIBILITY_SECONDS: f64 = 30.0;
/// Most jobs one receive returns.
pub const MAX_JOBS: u32 = 100;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A queue operation.
pub enum QueueOp {
    Enqueue {
        delay_us: i64,
        headers: BTreeMap<String, String>,
        payload: Vec<u8>,
        reply: Reply<(String, u64)>,
    },
    Reserve {
        max: usize,
        visibility_us: i64,
        wait_until_us: i64,
        reply: Reply<Vec<WireJob>>,
    },
    Ack {
        id: String,
        lease_id: Option<String>,
        reply: Reply<bool>,
    },
    Nack {
        id: String,
        lease_id: Option<String>,
        delay_us: Option<i64>,
        reply: Reply<bool>,
    },
    Replay {
        id: String,
        reply: Reply<()>,
    },
    GetPolicy {
        reply: Reply<RetryPolicy>,
    },
    SetPolicy {
        policy: RetryPolicy,
        reply: Reply<RetryPolicy>,
    },
    Dlq {
        after: Option<u64>,
        limit: usize,
        reply: Reply<Vec<WireJob>>,
    },
    Stats {
        reply: Reply<Stats>,
    },
}

struct Waiter {
    max: usize,
    visibility_us: i64,
    deadline_us: i64,
    reply: Reply<Vec<WireJob>>,
}

/// A queue's state plus its waiting long polls.
pub struct QueueMachine {
    state: QueueState,
    waiters: VecDeque<Waiter>,
    closing: bool,
    gauge: Arc<QueueGauge>,
    metrics: Arc<Metrics>,
}

fn wire_job(state: &QueueState, j: &Job) -> WireJob {
    WireJob {
        id: state.job_id(j.seq),
        seq: j.seq,
        payload: fabric_wire::encode_payload(&j.payload),
        headers: j.headers.clone(),
        created_at: rfc3339(j.created_us),
        visible_at: rfc3339(j.visible_us),
        reserve_until: j.lease.map(|l| rfc3339(l.until_us)),
        attempts: j.attempts,
        lease_id: j.lease.map(|l| format!("{:016x}", l.id)),
        failed_at: j.dead_us.map(rfc3339),
    }
}

fn answer<T: Send + 'static>(txn: &mut Txn, reply: Reply<T>, res: Result<T, StoreError>) {
    txn.defer(move |r| {
        let _ = reply.send(r.and(res));
    });
}

fn parse_lease(lease: Option<String>) -> Result<Option<u64>, StoreError> {
    lease
        .map(|l| {
            u64::from_str_radix(&l, 16)
                .map_err(|_| StoreError::InvalidRequest(format!("`{l}` is not a lease id")))
        })
        .transpose()
}

impl QueueMachine {
    fn seq_of(&self, id: &str) -> Result<u64, StoreError> {
        self.state
            .parse_job_id(id)
            .ok_or_else(|| StoreError::NotFound(format!("no job `{id}` in this queue")))
    }

    fn log(txn: &mut Txn, recs: &[Record]) {
        if !recs.is_empty() {
            txn.append(recs.iter().map(Record::encode).collect());
        }
    }

    fn serve_waiters(&mut self, now: i64, txn: &mut Txn) {
        let mut keep = VecDeque::new();
        while let Some(w) = self.waiters.pop_front() {
            if w.reply.is_closed() {
                continue; // the client went away: lease nothing to it
            }
            if self.state.has_visible(now) {
                let jobs = self.state.reserve(now, w.visibility_us, w.max);
                let out: Vec<WireJob> = jobs.iter().map(|j| wire_job(&self.state, j)).collect();
                txn.reply(w.reply, out);
            } else if w.deadline_us <= now || self.closing {
                txn.reply(w.reply, Vec::new());
            } else {
                keep.push_back(w);
            }
        }
        self.waiters = keep;
    }
}

impl Machine for QueueMachine {
    type Op = QueueOp;

    fn handle(&mut self, op: QueueOp, now: i64, txn: &mut Txn) {
        match op {
            QueueOp::Enqueue {
                delay_us,
                headers,
                payload,
                reply,
            } => {
                let seq = txn.next_offset();
                let rec = self.state.enqueue(seq, now, delay_us, headers, payload);
                let got = txn.append(vec![rec.encode()]);
                debug_assert_eq!(got, seq);
                txn.reply(reply, (self.state.job_id(seq), seq));
            }
            QueueOp::Reserve {
                max,
                visibility_us,
                wait_until_us,
                reply,
            } => {
                let jobs = self.state.reserve(now, visibility_us, max);
                if jobs.is_empty() && wait_until_us > now && !self.closing {
                    self.waiters.push_back(Waiter {
                        max,
                        visibility_us,
                        deadline_us: wait_until_us,
                        reply,
                    });
                } else {
                    let out = jobs.iter().map(|j| wire_job(&self.state, j)).collect();
                    txn.reply(reply, out);
                }
            }
            QueueOp::Ack {
                id,
                lease_id,
                reply,
            } => {
                let res = self.seq_of(&id).and_then(|seq| {
                    let lease = parse_lease(lease_id)?;
                    self.state.ack(seq, now, lease)
                });
                let res = res.map(|rec| match rec {
                    Some(rec) => {
                        Self::log(txn, &[rec]);
                        true
                    }
                    None => false,
                });
                answer(txn, reply, res);
            }
            QueueOp::Nack {
                id,
                lease_id,
                delay_us,
                reply,
            } => {
                let res = self.seq_of(&id).and_then(|seq| {
                    let lease = parse_lease(lease_id)?;
                    self.state.nack(seq, now, lease, delay_us)
                });
                let res = res.map(|rec| {
                    let dead = matches!(rec, Record::Dead { .. });
                    Self::log(txn, &[rec]);
                    dead
                });
                answer(txn, reply, res);
            }
            QueueOp::Replay { id, reply } => {
                let res = self
                    .seq_of(&id)
                    .and_then(|seq| self.state.replay(seq, now))
                    .map(|rec| Self::log(txn, &[rec]));
                answer(txn, reply, res);
            }
            QueueOp::GetPolicy { reply } => txn.reply(reply, self.state.policy()),
            QueueOp::SetPolicy { policy, reply } => {
                let rec = self.state.set_policy(policy);
                Self::log(txn, &[rec]);
                txn.reply(reply, policy);
            }
            QueueOp::Dlq {
                after,
                limit,
                reply,
            } => {
                let jobs = self
                    .state
                    .dlq(after, limit)
                    .iter()
                    .map(|j| wire_job(&self.state, j))
                    .collect();
                txn.reply(reply, jobs);
            }
            QueueOp::Stats { reply } => txn.reply(reply, self.state.stats(now)),
        }
    }

    fn reject(op: QueueOp, err: StoreError) {
        match op {
            QueueOp::Enqueue { reply, .. } => drop(reply.send(Err(err))),
            QueueOp::Reserve { reply, .. } | QueueOp::Dlq { reply, .. } => {
                drop(reply.send(Err(err)))
            }
            QueueOp::Ack { reply, .. } | QueueOp::Nack { reply, .. } => drop(reply.send(Err(err))),
            QueueOp::Replay { reply, .. } => drop(reply.send(Err(err))),
            QueueOp::GetPolicy { reply } | QueueOp::SetPolicy { reply, .. } => {
                drop(reply.send(Err(err)))
            }
            QueueOp::Stats { reply } => drop(reply.send(Err(err))),
        }
    }

    fn tick(&mut self, now: i64, txn: &mut Txn) -> Option<i64> {
        let recs = self.state.expire(now);
        let dead = recs
            .iter()
            .filter(|r| matches!(r, Record::Dead { .. }))
            .count() as u64;
        if dead > 0 {
            let m = Arc::clone(&self.metrics);
            txn.defer(move |r| {
                if r.is_ok() {
                    m.jobs_dead_lettered.fetch_add(dead, Ordering::Relaxed);
                }
            });
        }
        Self::log(txn, &recs);
        self.serve_waiters(now, txn);
        let mut next = self.state.next_expiry();
        if !self.waiters.is_empty() {
            let w = self.waiters.iter().map(|w| w.deadline_us).min();
            let v = self.state.next_visible();
            for d in [w, v].into_iter().flatten() {
                next = Some(next.map_or(d, |n: i64| n.min(d)));
            }
        }
        next
    }

    fn closing(&mut self, txn: &mut Txn) {
        self.closing = true;
        for w in self.waiters.drain(..) {
            txn.reply(w.reply, Vec::new());
        }
    }

    fn after_group(&mut self) {
        self.gauge
            .depth
            .store(self.state.pending(), Ordering::Relaxed);
        self.gauge
            .in_flight
            .store(self.state.in_flight(), Ordering::Relaxed);
        self.gauge
            .long_polls
            .store(self.waiters.len() as u64, Ordering::Relaxed);
    }
}

struct QueueHandle {
    actor: ActorHandle<QueueOp>,
    dir: PathBuf,
}

/// Summary of recovering every queue.
#[derive(Debug, Clone, Default)]
pub struct QueueRecovery {
    pub queues: usize,
    pub records: usize,
    pub truncated_bytes: u64,
}

/// All queues of a node.
pub struct QueueStore {
    root: PathBuf,
    opts: StoreOptions,
    metrics: Arc<Metrics>,
    queues: RwLock<HashMap<ResourceKey, Arc<QueueHandle>>>,
    create_lock: tokio::sync::Mutex<()>,
    closing: AtomicBool,
    boot_id: Option<String>,
    lease_nonce: u32,
}

fn open_queue(
    key: &ResourceKey,
    dir: &Path,
    m: &resource::ResourceMeta,
    opts: &StoreOptions,
    metrics: &Arc<Metrics>,
    boot_id: Option<&str>,
    lease_nonce: u32,
) -> Result<(DurableLog, QueueState, crate::segment_log::RecoveryReport), StoreError> {
    let (mut log, report) = DurableLog::open(dir, format!("queue {key}"), opts, metrics, boot_id)?;
    log.hold_writes_if(crate::test_knob::FakeAck::Enqueue);
    let mut state = QueueState::new(m.incarnation, lease_nonce);
    if let Some(r) = log.reader() {
        replay(&r, |e| {
            let rec = Record::decode(&e.entry).map_err(|why| {
                StoreError::Internal(format!(
                    "queue {key}: record {} is malformed: {why}",
                    e.offset
                ))
            })?;
            state.apply(e.offset, &rec);
            Ok(())
        })?;
    }
    Ok((log, state, report))
}

impl QueueStore {
    /// Recovers every queue under `<data_dir>/queues` and starts its task.
    pub async fn open(
        data_dir: &Path,
        opts: StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Self>, QueueRecovery), StoreError> {
        let root = data_dir.join("queues");
        let boot_id = meta::boot_id();
        let lease_nonce = resource::random_u64() as u32;
        let opened = {
            let (root, opts, metrics, boot_id) = (
                root.clone(),
                opts.clone(),
                Arc::clone(&metrics),
                boot_id.clone(),
            );
            tokio::task::spawn_blocking(move || -> Result<Vec<_>, StoreError> {
                let mut out = Vec::new();
                for (key, dir, m) in resource::scan(&root, QUEUE_META)? {
                    let (log, state, report) = open_queue(
                        &key,
                        &dir,
                        &m,
                        &opts,
                        &metrics,
                        boot_id.as_deref(),
                        lease_nonce,
                    )?;
                    let s = state.stats(resource::now_us());
                    tracing::info!(queue = %key, records = report.records,
                        truncated_bytes = report.truncated_bytes, pending = s.pending,
                        dlq = s.dlq, completed = s.completed, "queue recovered");
                    out.push((key, dir, log, state, report));
                }
                Ok(out)
            })
            .await
            .map_err(|e| StoreError::Internal(format!("recovery task failed: {e}")))??
        };
        let store = Arc::new(QueueStore {
            root,
            opts,
            metrics,
            queues: RwLock::new(HashMap::new()),
            create_lock: tokio::sync::Mutex::new(()),
            closing: AtomicBool::new(false),
            boot_id,
            lease_nonce,
        });
        let mut summary = QueueRecovery::default();
        for (key, dir, log, state, report) in opened {
            summary.queues += 1;
            summary.records += report.records;
            summary.truncated_bytes += report.truncated_bytes;
            store.start(key, dir, log, state);
        }
        Ok((store, summary))
    }

    fn start(&self, key: ResourceKey, dir: PathBuf, log: DurableLog, state: QueueState) {
        let gauge = self.metrics.queue_gauge(&key.to_string());
        let mut machine = QueueMachine {
            state,
            waiters: VecDeque::new(),
            closing: false,
            gauge,
            metrics: Arc::clone(&self.metrics),
        };
        machine.after_group();
        let actor = ActorHandle::spawn(
            machine,
            log,
            self.opts.fsync_interval,
            format!("queue {key}"),
        );
        self.queues
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Arc::new(QueueHandle { actor, dir }));
    }

    fn get(&self, key: &ResourceKey) -> Result<Arc<QueueHandle>, StoreError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("the node is shutting down".into()));
        }
        self.queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("queue {key} does not exist")))
    }

    /// Creates a queue; `Ok(false)` if it already existed.
    pub async fn create(&self, key: &ResourceKey) -> Result<bool, StoreError> {
        match self.get(key) {
            Ok(_) => return Ok(false),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let _guard = self.create_lock.lock().await;
        if self.get(key).is_ok() {
            return Ok(false);
        }
        let dir = key.dir(&self.root);
        let (opts, metrics, boot, k, d, nonce) = (
            self.opts.clone(),
            Arc::clone(&self.metrics),
            self.boot_id.clone(),
            key.clone(),
            dir.clone(),
            self.lease_nonce,
        );
        let (log, state, _) = tokio::task::spawn_blocking(move || {
            let m = resource::create_resource_dir(&d, QUEUE_META)?;
            open_queue(&k, &d, &m, &opts, &metrics, boot.as_deref(), nonce)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("create task failed: {e}")))??;
        tracing::info!(queue = %key, "queue created");
        self.start(key.clone(), dir, log, state);
        Ok(true)
    }

    async fn for_write(&self, key: &ResourceKey) -> Result<Arc<QueueHandle>, StoreError> {
        match self.get(key) {
            Err(StoreError::NotFound(_)) if self.opts.auto_create => {
                self.create(key).await?;
                self.get(key)
            }
            r => r,
        }
    }

    /// Enqueues a job; returns its id and seq once its record is durable.
    pub async fn enqueue(
        &self,
        key: &ResourceKey,
        payload: Vec<u8>,
        headers: BTreeMap<String, String>,
        delay: Duration,
    ) -> Result<(String, u64), StoreError> {
        let h = self.for_write(key).await?;
        let delay_us = delay.as_micros().min(i64::MAX as u128) as i64;
        h.actor
            .call(|reply| QueueOp::Enqueue {
                delay_us,
                headers,
                payload,
                reply,
            })
            .await
    }

    /// Reserves up to `max` jobs for `visibility`, waiting up to `wait`
    /// for one to become available.
    pub async fn reserve(
        &self,
        key: &ResourceKey,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<WireJob>, StoreError> {
        let h = self.get(key)?;
        let now = resource::now_us();
        let visibility_us = visibility.as_micros().max(1) as i64;
        let wait_until_us = if wait.is_zero() {
            0
        } else {
            now + wait.as_micros() as i64
        };
        h.actor
            .call(|reply| QueueOp::Reserve {
                max,
                visibility_us,
                wait_until_us,
                reply,
            })
            .await
    }

    /// Acks a job: `Ok(true)` if this ack completed it, `Ok(false)` if it
    /// was already acked.
    pub async fn ack(
        &self,
        key: &ResourceKey,
        id: &str,
        lease_id: Option<String>,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.get(key)?
            .actor
            .call(|reply| QueueOp::Ack {
                id,
                lease_id,
                reply,
            })
            .await
    }

    /// Nacks a job; `Ok(true)` if it moved to the DLQ.
    pub async fn nack(
        &self,
        key: &ResourceKey,
        id: &str,
        lease_id: Option<String>,
        delay: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let delay_us = delay.map(|d| d.as_micros().min(i64::MAX as u128) as i64);
        self.get(key)?
            .actor
            .call(|reply| QueueOp::Nack {
                id,
                lease_id,
                delay_us,
                reply,
            })
            .await
    }

    pub async fn replay(&self, key: &ResourceKey, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.get(key)?
            .actor
            .call(|reply| QueueOp::Replay { id, reply })
            .await
    }

    pub async fn policy(&self, key: &ResourceKey) -> Result<RetryPolicy, StoreError> {
        self.get(key)?
            .actor
            .call(|reply| QueueOp::GetPolicy { reply })
            .await
    }

    pub async fn set_policy(
        &self,
        key: &ResourceKey,
        policy: RetryPolicy,
    ) -> Result<RetryPolicy, StoreError> {
        validate_policy(&policy).map_err(StoreError::InvalidRequest)?;
        self.for_write(key)
            .await?
            .actor
            .call(|reply| QueueOp::SetPolicy { policy, reply })
            .await
    }

    /// Up to `limit` DLQ jobs with a `seq` above `after` (all: `None`), oldest first.
    pub async fn dlq(
        &self,
        key: &ResourceKey,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<WireJob>, StoreError> {
        self.get(key)?
            .actor
            .call(|reply| QueueOp::Dlq {
                after,
                limit,
                reply,
            })
            .await
    }

    pub async fn stats(&self, key: &ResourceKey) -> Result<Stats, StoreError> {
        self.get(key)?
            .actor
            .call(|reply| QueueOp::Stats { reply })
            .await
    }

    fn handles(&self) -> Vec<Arc<QueueHandle>> {
        self.queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Files a consistent copy of every queue needs (see [`crate::backup`]).
    pub async fn checkpoint(&self) -> Result<CheckpointFiles, StoreError> {
        let mut files = Vec::new();
        for h in self.handles() {
            files.push((h.dir.join(QUEUE_META), None));
            files.extend(h.actor.checkpoint().await?);
        }
        Ok(files)
    }

    /// Shutdown begins: every long poll is answered now, new ones do not wait.
    pub async fn closing(&self) {
        for h in self.handles() {
            h.actor.closing().await;
        }
    }

    /// Finishes queued operations, fsyncs every queue and stops.
    pub async fn shutdown(&self) {
        self.closing.store(true, Ordering::Release);
        let mut set = tokio::task::JoinSet::new();
        for h in self.handles() {
            let a = h.actor.clone();
            set.spawn(async move { a.shutdown().await });
        }
        while set.join_next().await.is_some() {}
    }
}
