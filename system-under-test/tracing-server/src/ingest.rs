//! The batcher: one queue for every connection's `RecordEvent`s, written in
//! batches of at most `batch_size`, one transaction each, by up to
//! `commit_parallelism` committers at once. Group commit: a free committer
//! takes what is queued at once (it never waits for a batch to fill when
//! nothing more is queued; `batch_timeout_ms` only caps how long it keeps
//! collecting while events stream in), and events arriving while batches
//! commit form the next batch. Each event is answered only once its batch
//! committed; when PostgreSQL fails the batch is retried (writes are
//! idempotent: `ON CONFLICT (event_id) DO NOTHING`) until the event's
//! deadline (`database.connection_timeout` after it was read), then
//! refused with `unavailable`. The queue is bounded (`max_pending_events`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use uuid::Uuid;

use crate::db::{Db, DbError, Row};
use crate::hub::{Notice, envelope};
use crate::metrics::Metrics;
use crate::redis_link::RedisLink;

/// Why an event was not stored.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// The database is unreachable, failed, or the buffer is full.
    Unavailable(String),
    /// PostgreSQL refused this event's data.
    Rejected(String),
}

pub type Reply = oneshot::Receiver<Result<(), Refusal>>;

pub struct Item {
    pub row: Row,
    pub notice: Notice,
    deadline: Instant,
    reply: oneshot::Sender<Result<(), Refusal>>,
}

pub struct Ingest {
    tx: mpsc::Sender<Item>,
    db_up: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    timeout: Duration,
    capacity: usize,
}

impl Ingest {
    /// Queues an event; the receiver yields its answer after the commit.
    pub async fn submit(&self, row: Row, notice: Notice) -> Result<Reply, Refusal> {
        let (reply, rx) = oneshot::channel();
        let item = Item {
            row,
            notice,
            deadline: Instant::now() + self.timeout,
            reply,
        };
        let full = || {
            Refusal::Unavailable(format!(
                "the server's pending buffer is full ({} events waiting for PostgreSQL); retry later",
                self.capacity
            ))
        };
        // While the database is down, a full buffer refuses at once;
        // otherwise a full buffer is backpressure, bounded by the deadline.
        let sent = if self.db_up.load(Ordering::Acquire) {
            match self.tx.send_timeout(item, self.timeout).await {
                Ok(()) => Ok(()),
                Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(full()),
                Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(closed()),
            }
        } else {
            match self.tx.try_send(item) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => Err(full()),
                Err(TrySendError::Closed(_)) => Err(closed()),
            }
        };
        match sent {
            Ok(()) => {
                self.metrics.pending_events.fetch_add(1, Ordering::Relaxed);
                Ok(rx)
            }
            Err(e) => {
                self.metrics.refuse("buffer_full");
                Err(e)
            }
        }
    }
}

fn closed() -> Refusal {
    Refusal::Unavailable("the server is shutting down".to_owned())
}

pub struct Batcher {
    pub db: Db,
    pub redis: Arc<RedisLink>,
    pub hub: mpsc::Sender<Vec<Notice>>,
    pub metrics: Arc<Metrics>,
    pub db_up: Arc<AtomicBool>,
    pub batch_size: usize,
    pub batch_timeout: Duration,
    pub parallelism: usize,
}

/// The queue and its batcher (run [`Batcher::run`] with the receiver).
pub fn channel(
    capacity: usize,
    timeout: Duration,
    db_up: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) -> (Ingest, mpsc::Receiver<Item>) {
    let (tx, rx) = mpsc::channel(capacity);
    (
        Ingest {
            tx,
            db_up,
            metrics,
            timeout,
            capacity,
        },
        rx,
    )
}

impl Batcher {
    /// Runs until `stop`, then commits and answers what is queued and returns
    /// once every committer is done.
    pub async fn run(self, mut rx: mpsc::Receiver<Item>, mut stop: watch::Receiver<bool>) {
        let me = Arc::new(self);
        let permits = Arc::new(Semaphore::new(me.parallelism));
        let mut closed = false;
        // The committers, each until its batch is answered and fanned out.
        let mut committers = tokio::task::JoinSet::new();
        loop {
            while committers.try_join_next().is_some() {}
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let first = tokio::select! {
                biased;
                item = rx.recv() => match item {
                    Some(i) => i,
                    None => break,
                },
                _ = stop.wait_for(|s| *s), if !closed => {
                    rx.close();
                    closed = true;
                    continue;
                }
            };
            let mut batch = Vec::with_capacity(me.batch_size.min(4096));
            batch.push(first);
            let started = Instant::now();
            let mut yielded = false;
            while batch.len() < me.batch_size {
                match rx.try_recv() {
                    Ok(i) => batch.push(i),
                    Err(TryRecvError::Empty) => {
                        if yielded || started.elapsed() >= me.batch_timeout {
                            break;
                        }
                        // Let events being decoded on other threads join.
                        yielded = true;
                        tokio::task::yield_now().await;
                    }
                    Err(TryRecvError::Disconnected) => break,
                }
            }
            let me = me.clone();
            committers.spawn(async move { me.commit(batch, permit).await });
        }
        while committers.join_next().await.is_some() {}
    }

    fn answer(&self, item: Item, result: Result<(), Refusal>) {
        self.metrics.pending_events.fetch_sub(1, Ordering::Relaxed);
        match &result {
            Ok(()) => {}
            Err(Refusal::Unavailable(_)) => self.metrics.refuse("unavailable"),
            Err(Refusal::Rejected(_)) => self.metrics.refuse("invalid"),
        }
        let _ = item.reply.send(result);
    }

    /// Writes `batch` in one transaction; `permit` is the committer's slot,
    /// given back as soon as the database is done with the batch — the
    /// cache invalidation, the answers and the fan-out that follow need no
    /// database connection, so the next batch commits meanwhile.
    async fn commit(&self, mut batch: Vec<Item>, permit: OwnedSemaphorePermit) {
        let mut attempt: u32 = 0;
        let mut last_error = String::from("the database did not answer");
        loop {
            let now = Instant::now();
            let (expired, live): (Vec<Item>, Vec<Item>) =
                batch.into_iter().partition(|i| i.deadline <= now);
            batch = live;
            for item in expired {
                let msg = format!(
                    "not committed within {} ms: {last_error}",
                    self.db.timeout().as_millis()
                );
                self.answer(item, Err(Refusal::Unavailable(msg)));
            }
            if batch.is_empty() {
                return;
            }
            let rows: Vec<&Row> = batch.iter().map(|i| &i.row).collect();
            let t0 = Instant::now();
            match self.db.write_batch(&rows).await {
                Ok(w) => {
                    self.metrics.commit.observe(t0.elapsed());
                    self.metrics.batch_events.observe_value(batch.len() as f64);
                    self.metrics
                        .events_stored
                        .fetch_add(w.stored, Ordering::Relaxed);
                    self.metrics
                        .orphan_events
                        .fetch_add(w.new_traces.len() as u64, Ordering::Relaxed);
                    if !self.db_up.swap(true, Ordering::AcqRel) {
                        tracing::info!("database available: events are committed again");
                    }
                    drop(permit);
                    self.committed(batch, &w.new_traces).await;
                    return;
                }
                Err(DbError::Rejected(msg) | DbError::Duplicate(msg)) => {
                    self.one_by_one(batch, msg, permit).await;
                    return;
                }
                Err(DbError::Unavailable(msg)) => {
                    self.metrics.commit_failures.fetch_add(1, Ordering::Relaxed);
                    if self.db_up.swap(false, Ordering::AcqRel) {
                        tracing::warn!(error = %msg, "database unavailable: events wait for it until their deadline, then are refused");
                    }
                    last_error = msg;
                    let backoff =
                        Duration::from_millis(50u64 << attempt.min(5)).min(Duration::from_secs(1));
                    let earliest = batch.iter().map(|i| i.deadline).min().expect("not empty");
                    let wake = (Instant::now() + backoff).min(earliest);
                    tokio::time::sleep_until(wake.into()).await;
                    attempt += 1;
                }
            }
        }
    }

    /// After a commit: invalidate the cache (before answering, so a client
    /// reads its own writes), answer, fan out.
    /// A trace this batch created had no cache entry (only found traces
    /// are cached): only the others are invalidated.
    async fn committed(&self, batch: Vec<Item>, created: &[Uuid]) {
        let mut traces: Vec<Uuid> = batch.iter().map(|i| i.row.trace_id).collect();
        traces.sort_unstable();
        traces.dedup();
        let mut created = created.to_vec();
        created.sort_unstable();
        traces.retain(|t| created.binary_search(t).is_err());
        self.redis.invalidate(&traces).await;
        let notices: Vec<Notice> = batch.iter().map(|i| i.notice.clone()).collect();
        for item in batch {
            self.answer(item, Ok(()));
        }
        self.fan_out(notices).await;
    }

    async fn fan_out(&self, notices: Vec<Notice>) {
        if notices.is_empty() {
            return;
        }
        if self.redis.state() == crate::redis_link::RedisState::Ok {
            self.redis
                .publish(envelope(&self.redis.origin, &notices))
                .await;
        }
        let n = notices.len() as u64;
        if self.hub.try_send(notices).is_err() {
            self.metrics
                .notifications_dropped
                .fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A batch PostgreSQL refused for its data: each event alone, so only
    /// the offending ones are refused.
    async fn one_by_one(
        &self,
        batch: Vec<Item>,
        first_error: String,
        permit: OwnedSemaphorePermit,
    ) {
        tracing::warn!(error = %first_error, events = batch.len(), "a batch was refused for its data; writing its events one by one");
        let mut ok = Vec::new();
        let mut created = Vec::new();
        for item in batch {
            match self.db.write_batch(&[&item.row]).await {
                Ok(w) => {
                    self.metrics
                        .events_stored
                        .fetch_add(w.stored, Ordering::Relaxed);
                    self.metrics
                        .orphan_events
                        .fetch_add(w.new_traces.len() as u64, Ordering::Relaxed);
                    created.extend(w.new_traces);
                    ok.push(item);
                }
                Err(DbError::Rejected(msg) | DbError::Duplicate(msg)) => {
                    self.answer(
                        item,
                        Err(Refusal::Rejected(format!(
                            "PostgreSQL refused the event: {msg}"
                        ))),
                    );
                }
                Err(DbError::Unavailable(msg)) => {
                    self.answer(item, Err(Refusal::Unavailable(msg)));
                }
            }
        }
        drop(permit);
        if !ok.is_empty() {
            self.committed(ok, &created).await;
        }
    }
}
