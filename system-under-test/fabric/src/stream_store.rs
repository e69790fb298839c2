//! Streams: named, append-only sequences of events with dense offsets, each
//! backed by a [`DurableLog`] in `<data-dir>/streams/<tenant>/<namespace>/<name>/`,
//! plus the consumer-group offsets of every stream.
//!
//! # Files of a stream directory
//!
//! - `stream.json` — the stream's existence, written crash-safely before any
//!   segment (see [`crate::resource`]);
//! - `*.seg` — the segment log (see [`crate::segment_log`]);
//! - `offsets.hwm.json` — `interval` only: the offset high-water mark (see
//!   [`crate::durable`]).
//!
//! # Appends
//!
//! Every stream has one task ([`crate::actor`]) owning its log. An append
//! becomes one frame (all-or-nothing); appends queued together share one
//! fsync (group commit) under `batch`, each gets its own under `always`.
//! Readers go through the log's in-memory index ([`LogReader`]), which holds
//! only records the fsync policy allows to acknowledge.
//!
//! # Consumer groups
//!
//! Committed offsets of every (stream, group) live in one node-wide log,
//! `<data-dir>/consumer-groups/`, owned by its own task: one record
//! `{stream, group, offset}` per accepted commit, same fsync policy and
//! group commit as the streams, the map rebuilt from the log at recovery.
//! A committed offset is the offset of the last event the group processed
//! (`lag = latest_offset - committed_offset`, `-1` = nothing committed). It
//! never goes backwards: a commit lower than the current one is rejected
//! with 409 `conflict` (an equal one is accepted and changes nothing), and a
//! commit beyond the stream's latest offset is rejected with 400.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::oneshot;

use crate::actor::{ActorHandle, Machine, Txn};
pub use crate::durable::StoreOptions;
use crate::durable::{CheckpointFiles, DurableLog};
use crate::frame::Entry;
use crate::meta;
use crate::metrics::Metrics;
use crate::resource;
pub use crate::resource::{ResourceKey as StreamKey, StoreError, valid_name};
use crate::segment_log::{LogReader, RecoveryReport, StoredEntry};
use crate::test_knob::FakeAck;

const STREAM_META: &str = "stream.json";
const GROUPS_DIR: &str = "consumer-groups";

/// Summary of recovering the whole store.
#[derive(Debug, Clone, Default)]
pub struct StoreRecovery {
    pub streams: usize,
    pub records: usize,
    pub truncated_bytes: u64,
}

impl StoreRecovery {
    fn add(&mut self, r: &RecoveryReport) {
        self.records += r.records;
        self.truncated_bytes += r.truncated_bytes;
    }
}

/// An append: the stream's task answers with the batch's base offset.
pub struct AppendOp {
    entries: Vec<Entry>,
    reply: oneshot::Sender<Result<u64, StoreError>>,
}

struct StreamMachine;

impl Machine for StreamMachine {
    type Op = AppendOp;

    fn handle(&mut self, op: AppendOp, _now_us: i64, txn: &mut Txn) {
        let base = txn.append(op.entries);
        txn.reply(op.reply, base);
    }

    fn reject(op: AppendOp, err: StoreError) {
        let _ = op.reply.send(Err(err));
    }
}

struct StreamHandle {
    actor: ActorHandle<AppendOp>,
    reader: LogReader,
    dir: PathBuf,
}

/// A group-offset operation.
pub enum GroupOp {
    Commit {
        stream: String,
        group: String,
        offset: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Get {
        stream: String,
        group: String,
        reply: oneshot::Sender<Result<Option<u64>, StoreError>>,
    },
}

/// Committed offsets, keyed by (stream, group).
#[derive(Default)]
struct GroupMachine {
    offsets: HashMap<(String, String), u64>,
}

fn group_record(stream: &str, group: &str, offset: u64) -> Entry {
    let mut e = Entry::new(offset.to_le_bytes().to_vec());
    e.headers.insert("stream".into(), stream.to_owned());
    e.headers.insert("group".into(), group.to_owned());
    e
}

impl GroupMachine {
    fn apply(&mut self, e: &Entry) -> Option<()> {
        let stream = e.headers.get("stream")?;
        let group = e.headers.get("group")?;
        let offset = u64::from_le_bytes(e.payload.as_slice().try_into().ok()?);
        let slot = self
            .offsets
            .entry((stream.clone(), group.clone()))
            .or_insert(offset);
        *slot = (*slot).max(offset);
        Some(())
    }
}

impl Machine for GroupMachine {
    type Op = GroupOp;

    fn handle(&mut self, op: GroupOp, _now_us: i64, txn: &mut Txn) {
        match op {
            GroupOp::Commit {
                stream,
                group,
                offset,
                reply,
            } => {
                let key = (stream, group);
                match self.offsets.get(&key) {
                    Some(&cur) if offset < cur => {
                        let _ = reply.send(Err(StoreError::Conflict(format!(
                            "committed offsets never go backwards: group `{}` is at {cur}, got {offset}",
                            key.1
                        ))));
                    }
                    Some(&cur) if offset == cur => txn.reply(reply, ()),
                    _ => {
                        txn.append(vec![group_record(&key.0, &key.1, offset)]);
                        self.offsets.insert(key, offset);
                        txn.reply(reply, ());
                    }
                }
            }
            GroupOp::Get {
                stream,
                group,
                reply,
            } => {
                let v = self.offsets.get(&(stream, group)).copied();
                txn.reply(reply, v);
            }
        }
    }

    fn reject(op: GroupOp, err: StoreError) {
        match op {
            GroupOp::Commit { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            GroupOp::Get { reply, .. } => {
                let _ = reply.send(Err(err));
            }
        }
    }
}

/// State of a consumer group as `GET …/consumer-groups/{g}/state` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupState {
    pub committed_offset: i64,
    pub latest_offset: i64,
    pub lag: i64,
}

/// All streams of a node.
pub struct StreamStore {
    root: PathBuf,
    opts: StoreOptions,
    metrics: Arc<Metrics>,
    streams: RwLock<HashMap<StreamKey, Arc<StreamHandle>>>,
    groups: ActorHandle<GroupOp>,
    create_lock: tokio::sync::Mutex<()>,
    closing: AtomicBool,
    boot_id: Option<String>,
}

/// Reads every entry of a freshly opened log (recovery of a state machine).
pub fn replay(
    reader: &LogReader,
    mut f: impl FnMut(&StoredEntry) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut from = 0;
    loop {
        let chunk = reader.read(from, 4096)?;
        let Some(last) = chunk.last() else {
            return Ok(());
        };
        from = last.offset + 1;
        for e in &chunk {
            f(e)?;
        }
    }
}

impl StreamStore {
    /// Recovers every stream under `<data_dir>/streams` and the consumer
    /// groups, and starts their tasks. Must be called inside a Tokio runtime.
    pub async fn open(
        data_dir: &Path,
        opts: StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Self>, StoreRecovery), StoreError> {
        let root = data_dir.join("streams");
        let groups_dir = data_dir.join(GROUPS_DIR);
        let boot_id = meta::boot_id();
        let (opened, groups) = {
            let root = root.clone();
            let groups_dir = groups_dir.clone();
            let opts = opts.clone();
            let metrics = Arc::clone(&metrics);
            let boot_id = boot_id.clone();
            tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
                let mut opened = Vec::new();
                for (key, dir, _) in resource::scan(&root, STREAM_META)? {
                    let (mut log, report) = DurableLog::open(
                        &dir,
                        format!("stream {key}"),
                        &opts,
                        &metrics,
                        boot_id.as_deref(),
                    )?;
                    log.hold_writes_if(FakeAck::Append);
                    tracing::info!(
                        stream = %key, records = report.records, segments = report.segments,
                        truncated_bytes = report.truncated_bytes, next_offset = report.next_offset,
                        "stream recovered"
                    );
                    opened.push((key, dir, log, report));
                }
                let (glog, greport) = DurableLog::open(
                    &groups_dir,
                    "consumer groups".into(),
                    &opts,
                    &metrics,
                    boot_id.as_deref(),
                )?;
                let mut gm = GroupMachine::default();
                if let Some(r) = glog.reader() {
                    replay(&r, |e| {
                        gm.apply(&e.entry).ok_or_else(|| {
                            StoreError::Internal(format!(
                                "consumer-group record {} is malformed",
                                e.offset
                            ))
                        })
                    })?;
                }
                Ok((opened, (glog, greport, gm)))
            })
            .await
            .map_err(|e| StoreError::Internal(format!("recovery task failed: {e}")))??
        };
        let (glog, greport, gm) = groups;
        let mut summary = StoreRecovery::default();
        summary.add(&greport);
        let groups = ActorHandle::spawn(gm, glog, opts.fsync_interval, "consumer groups".into());
        let store = Arc::new(StreamStore {
            root,
            opts,
            metrics,
            streams: RwLock::new(HashMap::new()),
            groups,
            create_lock: tokio::sync::Mutex::new(()),
            closing: AtomicBool::new(false),
            boot_id,
        });
        for (key, dir, log, report) in opened {
            summary.streams += 1;
            summary.add(&report);
            store.start(key, dir, log);
        }
        Ok((store, summary))
    }

    fn start(&self, key: StreamKey, dir: PathBuf, log: DurableLog) -> Arc<StreamHandle> {
        let reader = log.reader().expect("an open log has a reader");
        let actor = ActorHandle::spawn(
            StreamMachine,
            log,
            self.opts.fsync_interval,
            format!("stream {key}"),
        );
        let h = Arc::new(StreamHandle { actor, reader, dir });
        self.streams
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Arc::clone(&h));
        h
    }

    fn get(&self, key: &StreamKey) -> Option<Arc<StreamHandle>> {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("the node is shutting down".into()));
        }
        Ok(())
    }

    /// Creates a stream; `Ok(false)` if it already existed.
    pub async fn create(&self, key: &StreamKey) -> Result<bool, StoreError> {
        self.check_open()?;
        if self.get(key).is_some() {
            return Ok(false);
        }
        let _guard = self.create_lock.lock().await;
        if self.get(key).is_some() {
            return Ok(false);
        }
        let dir = key.dir(&self.root);
        let opts = self.opts.clone();
        let metrics = Arc::clone(&self.metrics);
        let k = key.clone();
        let boot = self.boot_id.clone();
        let d = dir.clone();
        let log = tokio::task::spawn_blocking(move || -> Result<DurableLog, StoreError> {
            resource::create_resource_dir(&d, STREAM_META)?;
            let mut log =
                DurableLog::open(&d, format!("stream {k}"), &opts, &metrics, boot.as_deref())?.0;
            log.hold_writes_if(FakeAck::Append);
            Ok(log)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("create task failed: {e}")))??;
        tracing::info!(stream = %key, "stream created");
        self.start(key.clone(), dir, log);
        Ok(true)
    }

    async fn handle_for_write(&self, key: &StreamKey) -> Result<Arc<StreamHandle>, StoreError> {
        if let Some(h) = self.get(key) {
            return Ok(h);
        }
        if !self.opts.auto_create {
            return Err(StoreError::NotFound(format!("stream {key} does not exist")));
        }
        self.create(key).await?;
        self.get(key)
            .ok_or_else(|| StoreError::Internal(format!("stream {key} vanished after creation")))
    }

    fn handle_for_read(&self, key: &StreamKey) -> Result<Arc<StreamHandle>, StoreError> {
        self.get(key)
            .ok_or_else(|| StoreError::NotFound(format!("stream {key} does not exist")))
    }

    /// Appends a batch all-or-nothing; returns its offsets once the batch is
    /// durable per the fsync policy.
    pub async fn append(
        &self,
        key: &StreamKey,
        entries: Vec<Entry>,
    ) -> Result<Vec<u64>, StoreError> {
        self.check_open()?;
        if entries.is_empty() || entries.iter().any(|e| e.payload.is_empty()) {
            return Err(StoreError::InvalidRequest(
                "a batch needs at least one event with a non-empty payload".into(),
            ));
        }
        if crate::frame::body_len(&entries) > crate::frame::MAX_BODY {
            return Err(StoreError::InvalidRequest("batch too large".into()));
        }
        let h = self.handle_for_write(key).await?;
        let count = entries.len() as u64;
        let base = h.actor.call(|reply| AppendOp { entries, reply }).await?;
        Ok((base..base + count).collect())
    }

    /// Up to `max` entries with offset >= `from`.
    pub async fn read(
        &self,
        key: &StreamKey,
        from: u64,
        max: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        self.check_open()?;
        let h = self.handle_for_read(key)?;
        let reader = h.reader.clone();
        tokio::task::spawn_blocking(move || reader.read(from, max))
            .await
            .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
            .map_err(StoreError::from)
    }

    /// Offset of the last readable entry; `None` when the stream is empty.
    pub fn latest(&self, key: &StreamKey) -> Result<Option<u64>, StoreError> {
        self.check_open()?;
        Ok(self.handle_for_read(key)?.reader.latest())
    }

    /// Commits `offset` for `group` on stream `key` (durable before `Ok`).
    pub async fn commit_group(
        &self,
        key: &StreamKey,
        group: &str,
        offset: u64,
    ) -> Result<(), StoreError> {
        check_group(group)?;
        let latest = self.latest(key)?;
        if latest.is_none_or(|l| offset > l) {
            return Err(StoreError::InvalidRequest(format!(
                "offset {offset} is beyond the stream's latest offset ({})",
                latest.map_or(-1, |l| l as i64)
            )));
        }
        let (stream, group) = (key.to_string(), group.to_owned());
        self.groups
            .call(|reply| GroupOp::Commit {
                stream,
                group,
                offset,
                reply,
            })
            .await
    }

    /// The offset `group` committed on `key`; `None` if none.
    pub async fn group_offset(
        &self,
        key: &StreamKey,
        group: &str,
    ) -> Result<Option<u64>, StoreError> {
        check_group(group)?;
        self.check_open()?;
        self.handle_for_read(key)?;
        let (stream, group) = (key.to_string(), group.to_owned());
        self.groups
            .call(|reply| GroupOp::Get {
                stream,
                group,
                reply,
            })
            .await
    }

    /// Committed offset, latest offset and lag of `group` on `key`.
    pub async fn group_state(
        &self,
        key: &StreamKey,
        group: &str,
    ) -> Result<GroupState, StoreError> {
        let committed = self
            .group_offset(key, group)
            .await?
            .map_or(-1, |o| o as i64);
        let latest = self.latest(key)?.map_or(-1, |o| o as i64);
        Ok(GroupState {
            committed_offset: committed,
            latest_offset: latest,
            lag: (latest - committed).max(0),
        })
    }

    /// Files a consistent copy of every stream and the consumer groups
    /// needs, with their durable lengths (`None`: the whole file). The
    /// groups come first, so a copied committed offset never points past
    /// the copied stream.
    pub async fn checkpoint(&self) -> Result<CheckpointFiles, StoreError> {
        let mut files = self.groups.checkpoint().await?;
        let handles: Vec<_> = self
            .streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for h in handles {
            files.push((h.dir.join(STREAM_META), None));
            files.extend(h.actor.checkpoint().await?);
        }
        Ok(files)
    }

    /// Stops accepting appends, lets every task finish what is queued,
    /// fsync, and record its high-water mark; returns when all are done.
    pub async fn shutdown(&self) {
        self.closing.store(true, Ordering::Release);
        let handles: Vec<_> = self
            .streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut set = tokio::task::JoinSet::new();
        for h in handles {
            let a = h.actor.clone();
            set.spawn(async move { a.shutdown().await });
        }
        while set.join_next().await.is_some() {}
        self.groups.shutdown().await;
    }
}

fn check_group(group: &str) -> Result<(), StoreError> {
    if resource::valid_name(group) {
        Ok(())
    } else {
        Err(StoreError::InvalidRequest(format!(
            "invalid consumer group `{group}`: use 1 to 128 characters of A-Z a-z 0-9 . _ -"
        )))
    }
}
