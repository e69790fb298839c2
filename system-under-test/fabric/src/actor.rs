//! One task per resource owning its [`DurableLog`] and its in-memory state
//! (a [`Machine`]): the group-commit loop shared by streams, queues, KV
//! stores and consumer-group offsets.
//!
//! Operations reach the task through a bounded channel. The task takes the
//! first queued operation and, except under `always`, everything else
//! already queued (up to [`MAX_GROUP`] operations), and hands each to the
//! machine in order. The machine validates it against its state, applies
//! it, appends the records that make it durable to the group's [`Txn`], and
//! *defers* its reply. The task then commits the group's records (one
//! `pwrite` and, per policy, one fsync for the whole group) and only then
//! runs the deferred replies, with the commit's outcome. So under `always`
//! and `batch` nothing a client can observe — an acknowledgement, a job
//! handed out by a reserve, a value — precedes the fsync of the records it
//! depends on, and the next group starts from a durable state. Under
//! `interval` the commit returns after `pwrite` and a background fsync runs
//! at least every `--fsync-interval`.
//!
//! If a commit fails, the machine's memory may hold changes that are not
//! durable: the log is poisoned, the deferred replies get the error, and
//! every later operation is rejected with 503 `unavailable` until a restart
//! rebuilds the state from the files.
//!
//! Machines with timers (queue visibility timeouts, delayed jobs, long
//! polls, KV expiry) return their next deadline from [`Machine::tick`]; the
//! task wakes up then even when no operation arrives, which is what makes
//! the queue's visibility scheduler always run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::config::FsyncPolicy;
use crate::durable::{CheckpointFiles, DurableLog};
use crate::frame::Entry;
use crate::resource::{StoreError, now_us};

/// Most operations one group commit takes.
pub const MAX_GROUP: usize = 4096;
/// Most payload bytes one group takes (it may exceed this by one operation).
pub const MAX_GROUP_BYTES: usize = 32 * 1024 * 1024;
/// Capacity of a resource's operation queue (backpressure beyond it).
pub const QUEUE_CAPACITY: usize = 8192;

type Deferred = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// The records and deferred replies of one group commit.
pub struct Txn {
    next_offset: u64,
    batches: Vec<Vec<Entry>>,
    deferred: Vec<Deferred>,
    bytes: usize,
}

impl Txn {
    fn new(next_offset: u64) -> Self {
        Self {
            next_offset,
            batches: Vec::new(),
            deferred: Vec::new(),
            bytes: 0,
        }
    }

    /// The offset the next appended entry will get.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Appends `entries` as one frame (all-or-nothing); returns the offset
    /// of its first entry.
    pub fn append(&mut self, entries: Vec<Entry>) -> u64 {
        let base = self.next_offset;
        self.next_offset += entries.len() as u64;
        self.bytes += entries.iter().map(|e| e.payload.len()).sum::<usize>();
        self.batches.push(entries);
        base
    }

    /// Runs `f` with the outcome of this group's commit (immediately `Ok`
    /// after the group if it wrote nothing).
    pub fn defer(&mut self, f: impl FnOnce(Result<(), StoreError>) + Send + 'static) {
        self.deferred.push(Box::new(f));
    }

    /// Answers `reply` with `value` once the group is durable.
    pub fn reply<T: Send + 'static>(
        &mut self,
        reply: oneshot::Sender<Result<T, StoreError>>,
        value: T,
    ) {
        self.defer(move |r| {
            let _ = reply.send(r.map(|()| value));
        });
    }
}

/// The state of one resource, driven by its task.
pub trait Machine: Send + 'static {
    type Op: Send + 'static;

    /// Validates and applies `op` at wall-clock time `now_us`, appending its
    /// records to `txn` and deferring its reply.
    fn handle(&mut self, op: Self::Op, now_us: i64, txn: &mut Txn);

    /// Answers `op` with `err` without applying it.
    fn reject(op: Self::Op, err: StoreError);

    /// Runs what is due at `now_us` (timers); returns the next deadline.
    fn tick(&mut self, _now_us: i64, _txn: &mut Txn) -> Option<i64> {
        None
    }

    /// Shutdown begins: end long polls, take no new ones.
    fn closing(&mut self, _txn: &mut Txn) {}

    /// After each group (e.g. to update gauges).
    fn after_group(&mut self) {}
}

enum Msg<O> {
    Op(O),
    Checkpoint(oneshot::Sender<Result<CheckpointFiles, StoreError>>),
    Closing,
    Shutdown(oneshot::Sender<()>),
}

/// The sending side of a resource task.
pub struct ActorHandle<O> {
    tx: mpsc::Sender<Msg<O>>,
    failed: Arc<AtomicBool>,
    name: String,
}

impl<O> Clone for ActorHandle<O> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            failed: Arc::clone(&self.failed),
            name: self.name.clone(),
        }
    }
}

impl<O: Send + 'static> ActorHandle<O> {
    /// Starts the task for `machine` over `log`.
    pub fn spawn<M: Machine<Op = O>>(
        machine: M,
        log: DurableLog,
        interval: Duration,
        name: String,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let failed = log.failed_flag();
        tokio::spawn(run(machine, log, rx, interval));
        Self { tx, failed, name }
    }

    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Sends an operation built around a reply channel and awaits the answer.
    pub async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> O,
    ) -> Result<T, StoreError> {
        if self.is_failed() {
            return Err(StoreError::Unavailable(format!(
                "{} refuses writes after a storage failure",
                self.name
            )));
        }
        let (reply, rx) = oneshot::channel();
        self.tx.send(Msg::Op(make(reply))).await.map_err(|_| {
            StoreError::Unavailable(format!("{} is not accepting operations", self.name))
        })?;
        rx.await.map_err(|_| {
            StoreError::Unavailable(format!("{} stopped before answering", self.name))
        })?
    }

    /// Syncs the log and lists the files (with durable lengths) a
    /// consistent copy needs; every operation answered before this call is
    /// covered.
    pub async fn checkpoint(&self) -> Result<CheckpointFiles, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Checkpoint(reply))
            .await
            .map_err(|_| StoreError::Unavailable(format!("{} is closed", self.name)))?;
        rx.await
            .map_err(|_| StoreError::Unavailable(format!("{} is closed", self.name)))?
    }

    /// Tells the machine that shutdown begins (long polls end now).
    pub async fn closing(&self) {
        let _ = self.tx.send(Msg::Closing).await;
    }

    /// Finishes queued operations, fsyncs and stops the task.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(reply)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn sleep_until_us(deadline: Option<i64>) {
    match deadline {
        None => std::future::pending().await,
        Some(d) => {
            let wait = d.saturating_sub(now_us()).max(0) as u64;
            // Wake at most 1 ms late; never busy-loop on a past deadline.
            tokio::time::sleep(Duration::from_micros(wait.max(200))).await;
        }
    }
}

async fn run<M: Machine>(
    mut machine: M,
    mut log: DurableLog,
    mut rx: mpsc::Receiver<Msg<M::Op>>,
    interval: Duration,
) {
    let policy = log.policy();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let interval_policy = policy == FsyncPolicy::Interval;
    let mut deadline = {
        let mut txn = Txn::new(log.next_offset());
        let d = machine.tick(now_us(), &mut txn);
        commit(&mut log, txn).await;
        d
    };
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    loop {
        let first = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => Some(m),
                None => break,
            },
            () = log.background_sync_done(), if log.syncing() => continue,
            _ = ticker.tick(), if interval_policy => {
                log.start_background_sync();
                continue;
            }
            () = sleep_until_us(deadline) => None,
        };
        let now = now_us();
        let mut txn = Txn::new(log.next_offset());
        // Timers first, so an operation sees expired leases as expired.
        machine.tick(now, &mut txn);
        let mut checkpoints = Vec::new();
        let mut next = first;
        let mut ops = 0usize;
        while let Some(msg) = next.take() {
            match msg {
                Msg::Op(op) => {
                    ops += 1;
                    if log.is_failed() {
                        M::reject(
                            op,
                            StoreError::Unavailable(
                                "refusing operations after a storage failure".into(),
                            ),
                        );
                    } else {
                        machine.handle(op, now, &mut txn);
                    }
                }
                Msg::Checkpoint(r) => {
                    checkpoints.push(r);
                    break;
                }
                Msg::Closing => machine.closing(&mut txn),
                Msg::Shutdown(r) => {
                    shutdown = Some(r);
                    break;
                }
            }
            if policy == FsyncPolicy::Always && ops > 0 {
                break;
            }
            if ops >= MAX_GROUP || txn.bytes >= MAX_GROUP_BYTES {
                break;
            }
            next = rx.try_recv().ok();
        }
        if shutdown.is_some() {
            machine.closing(&mut txn);
        }
        deadline = machine.tick(now, &mut txn);
        commit(&mut log, txn).await;
        machine.after_group();
        for r in checkpoints {
            let _ = r.send(log.checkpoint().await);
        }
        if shutdown.is_some() {
            break;
        }
    }
    // Refuse what is still queued, then flush.
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        match msg {
            Msg::Op(op) => M::reject(op, StoreError::Unavailable("shutting down".into())),
            Msg::Checkpoint(r) => {
                let _ = r.send(Err(StoreError::Unavailable("shutting down".into())));
            }
            Msg::Closing => {}
            Msg::Shutdown(r) => {
                let _ = r.send(());
            }
        }
    }
    log.finish().await;
    if let Some(r) = shutdown {
        let _ = r.send(());
    }
}

/// Commits a group's records (if any) and runs its deferred replies.
async fn commit(log: &mut DurableLog, txn: Txn) {
    let result = if txn.batches.is_empty() {
        Ok(())
    } else {
        let expected = txn.next_offset;
        let n: u64 = txn.batches.iter().map(|b| b.len() as u64).sum();
        let start = log.next_offset();
        debug_assert_eq!(start + n, expected);
        log.commit(txn.batches).await.map(|_| ())
    };
    for d in txn.deferred {
        d(result.clone());
    }
}
