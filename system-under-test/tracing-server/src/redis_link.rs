//! Redis, never the only copy of anything: the read-through `GetTrace`
//! cache and the pub/sub fan-out of committed events across replicas.
//!
//! Cache keys are versioned so a cache entry can never be newer-looking
//! than the database: a trace's entry lives under
//! `tracing:trace:{id}:{epoch}:{gen}` where `gen` (`tracing:gen:{id}`) is
//! incremented after every commit that adds events to the trace, and
//! `epoch` (`tracing:cache:epoch`) is incremented by a replica that could
//! not invalidate (Redis was unreachable while it committed) before it
//! uses the cache again. A reader reads `epoch` and `gen` before reading
//! PostgreSQL, so whatever it stores is filed under a generation no newer
//! than what it read.
//!
//! While Redis fails, this replica marks it down after the first error and
//! stops sending it commands (no commit waits on a dead Redis); a monitor
//! pings it every second and brings it back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{RwLock, watch};
use uuid::Uuid;

use crate::metrics::Metrics;

pub const CHANNEL: &str = "tracing:events";
const EPOCH_KEY: &str = "tracing:cache:epoch";
const CACHE_TTL_SECS: u64 = 300;
const GEN_TTL_SECS: u64 = 86_400;

fn gen_key(trace: &Uuid) -> String {
    format!("tracing:gen:{trace}")
}

fn data_key(trace: &Uuid, epoch: i64, generation: i64) -> String {
    format!("tracing:trace:{trace}:{epoch}:{generation}")
}

/// The state `/health` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisState {
    Disabled,
    Ok,
    Down,
}

pub struct RedisLink {
    client: Option<redis::Client>,
    manager: RwLock<Option<ConnectionManager>>,
    up: AtomicBool,
    /// An invalidation was skipped: bump the epoch before using the cache.
    dirty: AtomicBool,
    timeout: Duration,
    metrics: Arc<Metrics>,
    /// This replica's id in published messages.
    pub origin: Uuid,
}

/// A cache look-up's outcome; `Miss` carries where to file the answer.
pub enum Lookup {
    Hit(String),
    Miss(Option<String>),
}

impl RedisLink {
    pub fn new(url: Option<&str>, timeout: Duration, metrics: Arc<Metrics>) -> RedisLink {
        RedisLink {
            client: url.map(|u| redis::Client::open(u).expect("checked by the configuration")),
            manager: RwLock::new(None),
            up: AtomicBool::new(false),
            dirty: AtomicBool::new(true),
            timeout,
            metrics,
            origin: Uuid::new_v4(),
        }
    }

    pub fn state(&self) -> RedisState {
        match (&self.client, self.up.load(Ordering::Acquire)) {
            (None, _) => RedisState::Disabled,
            (Some(_), true) => RedisState::Ok,
            (Some(_), false) => RedisState::Down,
        }
    }

    fn failed(&self, what: &str, e: &dyn std::fmt::Display) {
        self.metrics.redis_errors.fetch_add(1, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Release);
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(error = %e, operation = what, "redis unavailable: cache off, subscriptions local to this replica until it returns");
        }
    }

    async fn conn(&self) -> Option<ConnectionManager> {
        if !self.up.load(Ordering::Acquire) {
            return None;
        }
        self.manager.read().await.clone()
    }

    /// Runs one Redis operation bounded by the timeout; failures mark Redis down.
    async fn run<T, F>(&self, what: &str, f: F) -> Option<T>
    where
        F: AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    {
        let mut conn = self.conn().await?;
        match tokio::time::timeout(self.timeout, f(&mut conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.failed(what, &e);
                None
            }
            Err(_) => {
                self.failed(what, &"timed out");
                None
            }
        }
    }

    /// Pings every second: connects, bumps the epoch when invalidations
    /// were missed, marks Redis up or down.
    pub async fn monitor(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let existing = self.manager.read().await.clone();
            let mut conn = match existing {
                Some(c) => c,
                None => {
                    let cfg = ConnectionManagerConfig::new()
                        .set_connection_timeout(self.timeout)
                        .set_response_timeout(self.timeout)
                        .set_number_of_retries(1)
                        .set_max_delay(1000);
                    match tokio::time::timeout(
                        self.timeout * 2,
                        ConnectionManager::new_with_config(client.clone(), cfg),
                    )
                    .await
                    {
                        Ok(Ok(c)) => {
                            *self.manager.write().await = Some(c.clone());
                            c
                        }
                        Ok(Err(e)) => {
                            self.failed("connect", &e);
                            continue;
                        }
                        Err(_) => {
                            self.failed("connect", &"timed out");
                            continue;
                        }
                    }
                }
            };
            let ping = tokio::time::timeout(self.timeout, async {
                let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
                if self.dirty.load(Ordering::Acquire) {
                    let _: i64 = conn.incr(EPOCH_KEY, 1).await?;
                }
                Ok::<_, redis::RedisError>(pong)
            })
            .await;
            match ping {
                Ok(Ok(_)) => {
                    self.dirty.store(false, Ordering::Release);
                    if !self.up.swap(true, Ordering::AcqRel) {
                        tracing::info!("redis available: cache and cross-replica subscriptions on");
                    }
                }
                Ok(Err(e)) => self.failed("ping", &e),
                Err(_) => self.failed("ping", &"timed out"),
            }
        }
    }

    /// Looks a trace up in the cache.
    pub async fn lookup(&self, trace: &Uuid) -> Lookup {
        let gen_k = gen_key(trace);
        let r = self
            .run("cache read", async |c| {
                let (epoch, generation): (Option<i64>, Option<i64>) = redis::cmd("MGET")
                    .arg(EPOCH_KEY)
                    .arg(&gen_k)
                    .query_async(c)
                    .await?;
                let key = data_key(trace, epoch.unwrap_or(0), generation.unwrap_or(0));
                let value: Option<String> = c.get(&key).await?;
                Ok((key, value))
            })
            .await;
        match r {
            Some((_, Some(v))) => {
                self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
                Lookup::Hit(v)
            }
            Some((key, None)) => {
                self.metrics.cache_misses.fetch_add(1, Ordering::Relaxed);
                Lookup::Miss(Some(key))
            }
            None => Lookup::Miss(None),
        }
    }

    pub async fn store(&self, key: String, value: &str) {
        self.run("cache write", async |c| {
            c.set_ex::<_, _, ()>(key, value, CACHE_TTL_SECS).await
        })
        .await;
    }

    /// After a commit: new generations for the traces that got events.
    /// Returns false when Redis was not told (the cache is then bypassed
    /// until the epoch is bumped).
    pub async fn invalidate(&self, traces: &[Uuid]) -> bool {
        if self.client.is_none() {
            return true;
        }
        if traces.is_empty() {
            return true;
        }
        if !self.up.load(Ordering::Acquire) {
            self.dirty.store(true, Ordering::Release);
            return false;
        }
        self.run("cache invalidation", async |c| {
            let mut p = redis::pipe();
            for t in traces {
                let k = gen_key(t);
                p.incr(&k, 1)
                    .ignore()
                    .expire(&k, GEN_TTL_SECS as i64)
                    .ignore();
            }
            p.query_async::<()>(c).await
        })
        .await
        .is_some()
    }

    /// Whether `GetTrace` may use the cache now.
    pub fn cache_usable(&self) -> bool {
        self.up.load(Ordering::Acquire) && !self.dirty.load(Ordering::Acquire)
    }

    /// Publishes a committed batch to the other replicas.
    pub async fn publish(&self, message: String) {
        self.run("publish", async |c| {
            c.publish::<_, _, ()>(CHANNEL, message).await
        })
        .await;
    }

    /// Bumps the epoch once (after a restore): every cached trace is stale.
    pub async fn bump_epoch(&self) -> Result<(), String> {
        let Some(client) = &self.client else {
            return Ok(());
        };
        let mut c = tokio::time::timeout(self.timeout, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| "redis: connect timed out".to_owned())?
            .map_err(|e| format!("redis: {e}"))?;
        let _: i64 = c
            .incr(EPOCH_KEY, 1)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        Ok(())
    }

    /// Receives other replicas' batches and hands their payloads to `deliver`
    /// until `stop`; reconnects (bounded backoff) whenever the link drops.
    pub async fn subscribe_loop(
        self: Arc<Self>,
        deliver: tokio::sync::mpsc::Sender<Arc<[u8]>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let mut backoff = Duration::from_millis(100);
        let mut first = true;
        loop {
            if *stop.borrow() {
                return;
            }
            let connected = tokio::time::timeout(self.timeout, async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(CHANNEL).await?;
                Ok::<_, redis::RedisError>(ps)
            })
            .await;
            let ps = match connected {
                Ok(Ok(ps)) => ps,
                _ => {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            if !first {
                self.metrics
                    .pubsub_reconnects
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!("redis subscription re-established");
            }
            first = false;
            backoff = Duration::from_millis(100);
            let (mut sink, mut stream) = ps.split();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            enum Step {
                Message(Arc<[u8]>),
                Lost,
                Ping,
                Stop,
            }
            loop {
                let step = tokio::select! {
                    msg = stream.next() => match msg {
                        Some(m) => Step::Message(Arc::from(m.get_payload_bytes())),
                        None => Step::Lost,
                    },
                    _ = tick.tick() => Step::Ping,
                    _ = stop.wait_for(|s| *s) => Step::Stop,
                };
                match step {
                    Step::Message(bytes) => {
                        if deliver.send(bytes).await.is_err() {
                            return;
                        }
                    }
                    Step::Lost => break,
                    Step::Stop => return,
                    Step::Ping => {
                        // A paused Redis never closes the socket: ping it.
                        let pong =
                            tokio::time::timeout(self.timeout, sink.ping::<redis::Value>()).await;
                        if !matches!(pong, Ok(Ok(_))) {
                            break;
                        }
                    }
                }
            }
            tracing::warn!(
                "redis subscription lost: events of other replicas are missed until it is back"
            );
        }
    }
}
