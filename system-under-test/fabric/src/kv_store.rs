//! KV stores: each a map from key to value (with an optional expiry),
//! kept in memory and made durable by a log of puts and deletes in
//! `<data-dir>/kv/<tenant>/<namespace>/<name>/` (`kv.json`, `*.seg`,
//! `offsets.hwm.json` under `interval`), written by the store's task
//! ([`crate::actor`]) under the node's fsync policy with group commit.
//!
//! Reads (get, head, list) go straight to a published map that holds only
//! writes whose records are durable per the policy: a put or delete is
//! applied to it after its group commit succeeded, just before its 2xx.
//! Within a group the task keeps an overlay of the group's own writes, so
//! a delete sees a put queued just before it. At recovery the map is
//! rebuilt by replaying the log; entries already expired are dropped.
//!
//! Expired keys read as absent at once; the task also sweeps them out of
//! memory every [`SWEEP_EVERY`].
//!
//! # Keys
//!
//! A key is 1..=512 bytes of UTF-8 without control characters. Keys never
//! name files (they live inside the log), so they cannot traverse paths;
//! still, `/`-separated segments `.` and `..` and empty segments are
//! refused, because clients and proxies normalise such URLs into a
//! different key. A `/` inside a key must be sent percent-encoded (`%2F`).
//!
//! # No compaction
//!
//! The log is not compacted: it grows with every write and recovery
//! replays all of it. Deleted and overwritten values keep their disk space
//! until the store is dropped. (A compaction would write a snapshot of the
//! live map into a fresh segment and then delete the older ones.)

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::actor::{ActorHandle, Machine, Txn};
use crate::durable::{CheckpointFiles, DurableLog, StoreOptions};
use crate::frame::Entry;
use crate::meta;
use crate::metrics::Metrics;
use crate::resource::{self, ResourceKey, StoreError, now_us};
use crate::stream_store::replay;

const KV_META: &str = "kv.json";
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value, in bytes (decoded).
pub const MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;
/// How often expired keys are dropped from memory.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

const T_PUT: u8 = 1;
const T_DELETE: u8 = 2;

/// Checks a key. See the module documentation.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let bad = |why: &str| Err(StoreError::InvalidRequest(format!("invalid key: {why}")));
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return bad("a key has 1 to 512 bytes");
    }
    if key.chars().any(char::is_control) {
        return bad("control characters are not allowed");
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return bad("empty, `.` and `..` path segments are not allowed");
    }
    Ok(())
}

/// A stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub bytes: Arc<[u8]>,
    pub expires_us: Option<i64>,
}

impl Value {
    fn live(&self, now: i64) -> bool {
        self.expires_us.is_none_or(|e| e > now)
    }
}

type Map = BTreeMap<String, Value>;

/// A KV write.
pub enum KvOp {
    Put {
        key: String,
        value: Vec<u8>,
        expires_us: Option<i64>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Delete {
        key: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
}

fn put_record(key: &str, value: &[u8], expires_us: Option<i64>) -> Entry {
    let mut p = Vec::with_capacity(9 + value.len());
    p.push(T_PUT);
    p.extend_from_slice(&expires_us.unwrap_or(i64::MAX).to_le_bytes());
    p.extend_from_slice(value);
    let mut e = Entry::new(p);
    e.headers.insert("key".into(), key.to_owned());
    e
}

fn delete_record(key: &str) -> Entry {
    let mut e = Entry::new(vec![T_DELETE]);
    e.headers.insert("key".into(), key.to_owned());
    e
}

/// Applies a logged record to `map`.
fn apply(map: &mut Map, e: &Entry) -> Result<(), String> {
    let key = e.headers.get("key").ok_or("record without a key")?.clone();
    match e.payload.split_first() {
        Some((&T_PUT, rest)) if rest.len() >= 8 => {
            let exp = i64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
            map.insert(
                key,
                Value {
                    bytes: rest[8..].into(),
                    expires_us: (exp != i64::MAX).then_some(exp),
                },
            );
            Ok(())
        }
        Some((&T_DELETE, [])) => {
            map.remove(&key);
            Ok(())
        }
        _ => Err("unknown record".into()),
    }
}

struct KvMachine {
    published: Arc<RwLock<Map>>,
    /// This group's writes (`None`: deleted), not yet durable.
    overlay: HashMap<String, Option<Value>>,
    next_sweep: i64,
}

impl KvMachine {
    fn exists(&self, key: &str, now: i64) -> bool {
        match self.overlay.get(key) {
            Some(v) => v.as_ref().is_some_and(|v| v.live(now)),
            None => self
                .published
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(key)
                .is_some_and(|v| v.live(now)),
        }
    }
}

impl Machine for KvMachine {
    type Op = KvOp;

    fn handle(&mut self, op: KvOp, now: i64, txn: &mut Txn) {
        match op {
            KvOp::Put {
                key,
                value,
                expires_us,
                reply,
            } => {
                let entry = put_record(&key, &value, expires_us);
                txn.append(vec![entry.clone()]);
                let v = Value {
                    bytes: value.into(),
                    expires_us,
                };
                self.overlay.insert(key.clone(), Some(v.clone()));
                let published = Arc::clone(&self.published);
                txn.defer(move |r| {
                    if r.is_ok() {
                        published
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(key, v);
                    }
                    let _ = reply.send(r);
                });
            }
            KvOp::Delete { key, reply } => {
                if !self.exists(&key, now) {
                    txn.reply(reply, false);
                    return;
                }
                txn.append(vec![delete_record(&key)]);
                self.overlay.insert(key.clone(), None);
                let published = Arc::clone(&self.published);
                txn.defer(move |r| {
                    if r.is_ok() {
                        published
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&key);
                    }
                    let _ = reply.send(r.map(|()| true));
                });
            }
        }
    }

    fn reject(op: KvOp, err: StoreError) {
        match op {
            KvOp::Put { reply, .. } => drop(reply.send(Err(err))),
            KvOp::Delete { reply, .. } => drop(reply.send(Err(err))),
        }
    }

    fn tick(&mut self, now: i64, _txn: &mut Txn) -> Option<i64> {
        if now >= self.next_sweep {
            self.published
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, v| v.live(now));
            self.next_sweep = now + SWEEP_EVERY.as_micros() as i64;
        }
        Some(self.next_sweep)
    }

    fn after_group(&mut self) {
        self.overlay.clear();
    }
}

struct KvHandle {
    actor: ActorHandle<KvOp>,
    map: Arc<RwLock<Map>>,
    dir: PathBuf,
}

/// Summary of recovering every KV store.
#[derive(Debug, Clone, Default)]
pub struct KvRecovery {
    pub stores: usize,
    pub keys: usize,
    pub truncated_bytes: u64,
}

/// All KV stores of a node.
pub struct KvStore {
    root: PathBuf,
    opts: StoreOptions,
    metrics: Arc<Metrics>,
    stores: RwLock<HashMap<ResourceKey, Arc<KvHandle>>>,
    create_lock: tokio::sync::Mutex<()>,
    closing: AtomicBool,
    boot_id: Option<String>,
}

fn open_kv(
    key: &ResourceKey,
    dir: &Path,
    opts: &StoreOptions,
    metrics: &Arc<Metrics>,
    boot_id: Option<&str>,
) -> Result<(DurableLog, Map, u64), StoreError> {
    let (mut log, report) = DurableLog::open(dir, format!("kv {key}"), opts, metrics, boot_id)?;
    log.hold_writes_if(crate::test_knob::FakeAck::KvPut);
    let mut map = Map::new();
    if let Some(r) = log.reader() {
        replay(&r, |e| {
            apply(&mut map, &e.entry).map_err(|why| {
                StoreError::Internal(format!("kv {key}: record {}: {why}", e.offset))
            })
        })?;
    }
    let now = now_us();
    map.retain(|_, v| v.live(now));
    Ok((log, map, report.truncated_bytes))
}

impl KvStore {
    /// Recovers every KV store under `<data_dir>/kv` and starts its task.
    pub async fn open(
        data_dir: &Path,
        opts: StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Self>, KvRecovery), StoreError> {
        let root = data_dir.join("kv");
        let boot_id = meta::boot_id();
        let opened = {
            let (root, opts, metrics, boot_id) = (
                root.clone(),
                opts.clone(),
                Arc::clone(&metrics),
                boot_id.clone(),
            );
            tokio::task::spawn_blocking(move || -> Result<Vec<_>, StoreError> {
                let mut out = Vec::new();
                for (key, dir, _) in resource::scan(&root, KV_META)? {
                    let (log, map, truncated) =
                        open_kv(&key, &dir, &opts, &metrics, boot_id.as_deref())?;
                    tracing::info!(kv = %key, keys = map.len(), truncated_bytes = truncated, "kv store recovered");
                    out.push((key, dir, log, map, truncated));
                }
                Ok(out)
            })
            .await
            .map_err(|e| StoreError::Internal(format!("recovery task failed: {e}")))??
        };
        let store = Arc::new(KvStore {
            root,
            opts,
            metrics,
            stores: RwLock::new(HashMap::new()),
            create_lock: tokio::sync::Mutex::new(()),
            closing: AtomicBool::new(false),
            boot_id,
        });
        let mut summary = KvRecovery::default();
        for (key, dir, log, map, truncated) in opened {
            summary.stores += 1;
            summary.keys += map.len();
            summary.truncated_bytes += truncated;
            store.start(key, dir, log, map);
        }
        Ok((store, summary))
    }

    fn start(&self, key: ResourceKey, dir: PathBuf, log: DurableLog, map: Map) {
        let map = Arc::new(RwLock::new(map));
        let machine = KvMachine {
            published: Arc::clone(&map),
            overlay: HashMap::new(),
            next_sweep: now_us() + SWEEP_EVERY.as_micros() as i64,
        };
        let actor = ActorHandle::spawn(machine, log, self.opts.fsync_interval, format!("kv {key}"));
        self.stores
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Arc::new(KvHandle { actor, map, dir }));
    }

    fn get_store(&self, key: &ResourceKey) -> Result<Arc<KvHandle>, StoreError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("the node is shutting down".into()));
        }
        self.stores
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("kv store {key} does not exist")))
    }

    /// Creates a KV store; `Ok(false)` if it already existed.
    pub async fn create(&self, key: &ResourceKey) -> Result<bool, StoreError> {
        match self.get_store(key) {
            Ok(_) => return Ok(false),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let _guard = self.create_lock.lock().await;
        if self.get_store(key).is_ok() {
            return Ok(false);
        }
        let dir = key.dir(&self.root);
        let (opts, metrics, boot, k, d) = (
            self.opts.clone(),
            Arc::clone(&self.metrics),
            self.boot_id.clone(),
            key.clone(),
            dir.clone(),
        );
        let (log, map, _) = tokio::task::spawn_blocking(move || {
            resource::create_resource_dir(&d, KV_META)?;
            open_kv(&k, &d, &opts, &metrics, boot.as_deref())
        })
        .await
        .map_err(|e| StoreError::Internal(format!("create task failed: {e}")))??;
        tracing::info!(kv = %key, "kv store created");
        self.start(key.clone(), dir, log, map);
        Ok(true)
    }

    /// Stores `value` under `key` (durable before `Ok`), expiring after `ttl`.
    pub async fn put(
        &self,
        store: &ResourceKey,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        validate_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(StoreError::InvalidRequest(format!(
                "a value has at most {MAX_VALUE_BYTES} bytes"
            )));
        }
        let h = match self.get_store(store) {
            Err(StoreError::NotFound(_)) if self.opts.auto_create => {
                self.create(store).await?;
                self.get_store(store)?
            }
            r => r?,
        };
        let expires_us = ttl.map(|t| now_us().saturating_add(t.as_micros() as i64));
        let key = key.to_owned();
        h.actor
            .call(|reply| KvOp::Put {
                key,
                value,
                expires_us,
                reply,
            })
            .await
    }

    /// The value of `key`, if present and not expired.
    pub fn get(&self, store: &ResourceKey, key: &str) -> Result<Option<Value>, StoreError> {
        validate_key(key)?;
        let h = self.get_store(store)?;
        let now = now_us();
        let map = h.map.read().unwrap_or_else(|p| p.into_inner());
        Ok(map.get(key).filter(|v| v.live(now)).cloned())
    }

    /// Deletes `key`; `Ok(false)` if it was absent.
    pub async fn delete(&self, store: &ResourceKey, key: &str) -> Result<bool, StoreError> {
        validate_key(key)?;
        let h = self.get_store(store)?;
        let key = key.to_owned();
        h.actor.call(|reply| KvOp::Delete { key, reply }).await
    }

    /// Up to `limit` live keys starting with `prefix`, in byte order.
    pub fn list(
        &self,
        store: &ResourceKey,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let h = self.get_store(store)?;
        let now = now_us();
        let map = h.map.read().unwrap_or_else(|p| p.into_inner());
        Ok(map
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, v)| v.live(now))
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn handles(&self) -> Vec<Arc<KvHandle>> {
        self.stores
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Files a consistent copy of every KV store needs.
    pub async fn checkpoint(&self) -> Result<CheckpointFiles, StoreError> {
        let mut files = Vec::new();
        for h in self.handles() {
            files.push((h.dir.join(KV_META), None));
            files.extend(h.actor.checkpoint().await?);
        }
        Ok(files)
    }

    /// Finishes queued writes, fsyncs every store and stops.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        for good in ["a", "user/1", "x.y", "ключ", &"k".repeat(512)] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "..",
            ".",
            "a/../b",
            "a//b",
            "/a",
            "a/",
            "a\nb",
            &"k".repeat(513),
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn records_round_trip() {
        let mut m = Map::new();
        apply(&mut m, &put_record("a", b"1", None)).unwrap();
        apply(&mut m, &put_record("b", b"2", Some(5))).unwrap();
        apply(&mut m, &delete_record("a")).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(&*m["b"].bytes, b"2");
        assert_eq!(m["b"].expires_us, Some(5));
        assert!(apply(&mut m, &Entry::new(vec![9])).is_err());
    }
}
