//! Streams: named, append-only sequences of events with dense offsets, each
//! backed by a [`SegmentLog`] in `<data-dir>/streams/<tenant>/<namespace>/<name>/`.
//!
//! # Files of a stream directory
//!
//! - `stream.json` — the stream's existence (`{"version":1,"created_at":…}`),
//!   written crash-safely ([`meta::write_atomic`]) before any segment, so a
//!   directory without it holds no acknowledged data.
//! - `*.seg` — the segment log (see [`crate::segment_log`]).
//! - `offsets.hwm.json` — `interval` streams only: the offset high-water mark.
//!
//! # One writer per stream, group commit
//!
//! Every stream has one writer task that owns its [`SegmentLog`]; appends
//! reach it through a bounded channel and wait on a oneshot reply. Under
//! `batch` the writer takes the first queued append, then drains everything
//! else already queued (up to [`MAX_GROUP`] appends / [`MAX_GROUP_BYTES`]),
//! writes one frame per append with one `pwrite` per segment touched, does
//! one fsync, publishes the records to readers and answers all of them.
//! Appends arriving while that fsync runs queue in the channel and form the
//! next group, so under concurrency N appends cost about one fsync, and a
//! 2xx still means fsynced. Under `always` a group is a single append. Under
//! `interval` the writer publishes and answers after `pwrite`, and a
//! background fsync (of the files written so far, running concurrently with
//! further writes) is started at least every `--fsync-interval`.
//!
//! Any failed write or fsync is answered 500 to the appends it covered and
//! poisons the stream: later appends get 503 `unavailable` until restart,
//! when recovery re-validates the log.
//!
//! # Never reusing an offset under `interval`
//!
//! A machine crash can drop `interval` writes that were acknowledged (and
//! read) but not yet fsynced; recovery would then hand their offsets out
//! again. To prevent that, the writer keeps a durable high-water mark
//! `reserved` ≥ every offset it has assigned: before assigning past it, it
//! crash-safely writes `reserved = next + needed + RESERVE_BLOCK` together
//! with the kernel's boot id. At recovery, if the recorded boot id differs
//! from the current one (the machine restarted, so unsynced page-cache data
//! may be lost), the stream continues at `reserved`, leaving a gap rather
//! than a reuse. If the boot id is the same, only the process died, the page
//! cache kept every acknowledged write, and offsets continue densely from
//! the end of the log. A graceful shutdown fsyncs and records
//! `reserved = next offset`, so even a later reboot leaves no gap. After a
//! failed fsync the mark is rewritten without a boot id (best effort), which
//! forces the jump at the next start. Under `always`/`batch` no mark is
//! needed: see the recovery notes in [`crate::segment_log`].

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::config::FsyncPolicy;
use crate::frame::Entry;
use crate::meta;
use crate::metrics::Metrics;
use crate::segment_log::{
    LogError, LogOptions, LogReader, RecoveryReport, SegmentLog, StoredEntry,
};

/// Most appends one group commit takes.
pub const MAX_GROUP: usize = 4096;
/// Most payload bytes one group commit takes (it may exceed this by one append).
pub const MAX_GROUP_BYTES: usize = 32 * 1024 * 1024;
/// Offsets reserved ahead by one high-water-mark write (`interval`).
pub const RESERVE_BLOCK: u64 = 1 << 16;
/// Capacity of a stream's append queue (backpressure beyond it).
pub const QUEUE_CAPACITY: usize = 8192;

const STREAM_META: &str = "stream.json";
const HWM_META: &str = "offsets.hwm.json";

#[derive(Debug, Clone, Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<LogError> for StoreError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Poisoned => StoreError::Unavailable(e.to_string()),
            LogError::Frame(f) => StoreError::InvalidRequest(f.to_string()),
            other => StoreError::Internal(other.to_string()),
        }
    }
}

impl From<meta::MetaError> for StoreError {
    fn from(e: meta::MetaError) -> Self {
        StoreError::Internal(e.to_string())
    }
}

/// Whether `s` is a valid tenant, namespace or resource name:
/// 1..=128 of `[A-Za-z0-9._-]`, and not `.` or `..`.
pub fn valid_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && s != "."
        && s != ".."
}

/// `{tenant}/{namespace}/{name}` of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub tenant: String,
    pub namespace: String,
    pub name: String,
}

impl StreamKey {
    pub fn new(tenant: &str, namespace: &str, name: &str) -> Result<Self, StoreError> {
        for (what, v) in [("tenant", tenant), ("namespace", namespace), ("name", name)] {
            if !valid_name(v) {
                return Err(StoreError::InvalidRequest(format!(
                    "invalid {what} `{v}`: use 1 to 128 characters of A-Z a-z 0-9 . _ -"
                )));
            }
        }
        Ok(Self {
            tenant: tenant.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    fn dir(&self, root: &Path) -> PathBuf {
        root.join(&self.tenant)
            .join(&self.namespace)
            .join(&self.name)
    }
}

impl std::fmt::Display for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.namespace, self.name)
    }
}

/// Storage settings of the stream store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub fsync_policy: FsyncPolicy,
    pub fsync_interval: Duration,
    pub segment_bytes: u64,
    pub auto_create: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct StreamMeta {
    version: u32,
    created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HighWaterMark {
    reserved: u64,
    boot_id: Option<String>,
}

/// Summary of recovering the whole store.
#[derive(Debug, Clone, Default)]
pub struct StoreRecovery {
    pub streams: usize,
    pub records: usize,
    pub truncated_bytes: u64,
}

enum WriterMsg {
    Append {
        entries: Vec<Entry>,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Shutdown(oneshot::Sender<()>),
}

struct StreamHandle {
    tx: mpsc::Sender<WriterMsg>,
    reader: LogReader,
    failed: Arc<AtomicBool>,
}

/// All streams of a node.
pub struct StreamStore {
    root: PathBuf,
    opts: StoreOptions,
    metrics: Arc<Metrics>,
    streams: RwLock<HashMap<StreamKey, Arc<StreamHandle>>>,
    create_lock: tokio::sync::Mutex<()>,
    closing: AtomicBool,
    boot_id: Option<String>,
}

struct Opened {
    key: StreamKey,
    dir: PathBuf,
    log: SegmentLog,
    report: RecoveryReport,
    reserved: u64,
}

impl StreamStore {
    /// Recovers every stream under `<data_dir>/streams` and starts their
    /// writers. Must be called inside a Tokio runtime.
    pub async fn open(
        data_dir: &Path,
        opts: StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Self>, StoreRecovery), StoreError> {
        let root = data_dir.join("streams");
        let boot_id = meta::boot_id();
        let store = Arc::new(StreamStore {
            root: root.clone(),
            opts: opts.clone(),
            metrics: Arc::clone(&metrics),
            streams: RwLock::new(HashMap::new()),
            create_lock: tokio::sync::Mutex::new(()),
            closing: AtomicBool::new(false),
            boot_id: boot_id.clone(),
        });
        let opened = {
            let root = root.clone();
            let opts = opts.clone();
            let metrics = Arc::clone(&metrics);
            tokio::task::spawn_blocking(move || {
                recover_all(&root, &opts, &metrics, boot_id.as_deref())
            })
            .await
            .map_err(|e| StoreError::Internal(format!("recovery task failed: {e}")))??
        };
        let mut summary = StoreRecovery::default();
        for o in opened {
            summary.streams += 1;
            summary.records += o.report.records;
            summary.truncated_bytes += o.report.truncated_bytes;
            store.start_writer(o);
        }
        Ok((store, summary))
    }

    fn start_writer(&self, o: Opened) -> Arc<StreamHandle> {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let failed = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(StreamHandle {
            tx,
            reader: o.log.reader(),
            failed: Arc::clone(&failed),
        });
        let writer = Writer {
            log: Some(o.log),
            dir: o.dir,
            policy: self.opts.fsync_policy,
            interval: self.opts.fsync_interval,
            failed,
            reserved: o.reserved,
            boot_id: self.boot_id.clone(),
            key: o.key.clone(),
        };
        tokio::spawn(writer.run(rx));
        self.streams
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(o.key, Arc::clone(&handle));
        handle
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

    /// Creates a stream; `Ok(true)` if it was created, `Ok(false)` if it existed.
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
        let opened = tokio::task::spawn_blocking(move || -> Result<Opened, StoreError> {
            meta::create_dir_durable(&dir)
                .map_err(|e| StoreError::Internal(format!("create {}: {e}", dir.display())))?;
            meta::write_json(
                &dir,
                STREAM_META,
                &StreamMeta {
                    version: 1,
                    created_at: jiff::Timestamp::now().to_string(),
                },
            )?;
            open_stream(k, dir, &opts, &metrics, boot.as_deref())
        })
        .await
        .map_err(|e| StoreError::Internal(format!("create task failed: {e}")))??;
        tracing::info!(stream = %key, "stream created");
        self.start_writer(opened);
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
        if h.failed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(format!(
                "stream {key} refuses writes after a storage failure"
            )));
        }
        let count = entries.len() as u64;
        let (reply, rx) = oneshot::channel();
        h.tx.send(WriterMsg::Append { entries, reply })
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!("stream {key} is not accepting writes"))
            })?;
        let base = rx.await.map_err(|_| {
            StoreError::Internal("the stream writer stopped before answering".into())
        })??;
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

    /// Stops accepting appends, lets every writer finish what is queued,
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
        let mut waits = Vec::new();
        for h in handles {
            let (tx, rx) = oneshot::channel();
            if h.tx.send(WriterMsg::Shutdown(tx)).await.is_ok() {
                waits.push(rx);
            }
        }
        for w in waits {
            let _ = w.await;
        }
    }
}

fn recover_all(
    root: &Path,
    opts: &StoreOptions,
    metrics: &Arc<Metrics>,
    boot_id: Option<&str>,
) -> Result<Vec<Opened>, StoreError> {
    meta::create_dir_durable(root)
        .map_err(|e| StoreError::Internal(format!("create {}: {e}", root.display())))?;
    let mut out = Vec::new();
    for t in subdirs(root)? {
        for ns in subdirs(&root.join(&t))? {
            for s in subdirs(&root.join(&t).join(&ns))? {
                let Ok(key) = StreamKey::new(&t, &ns, &s) else {
                    tracing::warn!(tenant = %t, namespace = %ns, name = %s, "ignoring a directory with an invalid stream name");
                    continue;
                };
                let dir = key.dir(root);
                meta::remove_stray_temps(&dir)?;
                if meta::read_json::<StreamMeta>(&dir, STREAM_META)?.is_none() {
                    tracing::warn!(stream = %key, "ignoring a stream directory without stream.json (creation did not finish)");
                    continue;
                }
                let o = open_stream(key, dir, opts, metrics, boot_id)?;
                tracing::info!(
                    stream = %o.key, records = o.report.records, segments = o.report.segments,
                    truncated_bytes = o.report.truncated_bytes, next_offset = o.report.next_offset,
                    "stream recovered"
                );
                out.push(o);
            }
        }
    }
    Ok(out)
}

fn subdirs(dir: &Path) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StoreError::Internal(format!("list {}: {e}", dir.display()))),
    };
    for entry in rd {
        let entry =
            entry.map_err(|e| StoreError::Internal(format!("list {}: {e}", dir.display())))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
            out.push(name.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

fn open_stream(
    key: StreamKey,
    dir: PathBuf,
    opts: &StoreOptions,
    metrics: &Arc<Metrics>,
    boot_id: Option<&str>,
) -> Result<Opened, StoreError> {
    meta::remove_stray_temps(&dir)?;
    let hwm: Option<HighWaterMark> = meta::read_json(&dir, HWM_META)?;
    let (min_next, reserved) = match &hwm {
        // Same boot: the page cache survived, the log holds every acknowledged write.
        Some(h) if h.boot_id.is_some() && h.boot_id.as_deref() == boot_id => (0, h.reserved),
        Some(h) => (h.reserved, h.reserved),
        None => (0, 0),
    };
    let (log, report) = SegmentLog::open(
        &dir,
        LogOptions {
            segment_bytes: opts.segment_bytes,
            metrics: Some(Arc::clone(metrics)),
        },
        min_next,
    )?;
    if min_next > 0 && report.next_offset == min_next {
        tracing::warn!(stream = %key, next_offset = min_next,
            "machine restart detected: continuing at the offset high-water mark (a gap, never a reuse)");
    }
    Ok(Opened {
        key,
        dir,
        log,
        report,
        reserved,
    })
}

/// A detached fsync of the files written so far (`interval`).
type SyncTask = tokio::task::JoinHandle<Result<(), LogError>>;

struct Writer {
    log: Option<SegmentLog>,
    dir: PathBuf,
    policy: FsyncPolicy,
    interval: Duration,
    failed: Arc<AtomicBool>,
    reserved: u64,
    boot_id: Option<String>,
    key: StreamKey,
}

struct Job {
    entries: Vec<Entry>,
    reply: oneshot::Sender<Result<u64, StoreError>>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<WriterMsg>) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let interval_policy = self.policy == FsyncPolicy::Interval;
        let mut sync_task: Option<SyncTask> = None;
        let mut shutdown: Option<oneshot::Sender<()>> = None;
        loop {
            let msg = tokio::select! {
                m = rx.recv() => m,
                r = async { sync_task.as_mut().expect("guarded").await }, if sync_task.is_some() => {
                    sync_task = None;
                    self.sync_finished(r);
                    continue;
                }
                _ = ticker.tick(), if interval_policy && sync_task.is_none() => {
                    sync_task = self.start_background_sync();
                    continue;
                }
            };
            let Some(msg) = msg else { break };
            let mut jobs = Vec::new();
            let mut bytes = 0usize;
            match msg {
                WriterMsg::Append { entries, reply } => {
                    bytes += entries.iter().map(|e| e.payload.len()).sum::<usize>();
                    jobs.push(Job { entries, reply });
                }
                WriterMsg::Shutdown(r) => {
                    shutdown = Some(r);
                    break;
                }
            }
            if self.policy != FsyncPolicy::Always {
                while jobs.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
                    match rx.try_recv() {
                        Ok(WriterMsg::Append { entries, reply }) => {
                            bytes += entries.iter().map(|e| e.payload.len()).sum::<usize>();
                            jobs.push(Job { entries, reply });
                        }
                        Ok(WriterMsg::Shutdown(r)) => {
                            shutdown = Some(r);
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            self.commit(jobs).await;
            if shutdown.is_some() || self.log.is_none() {
                break;
            }
        }
        if let Some(t) = sync_task.take() {
            let r = t.await;
            self.sync_finished(r);
        }
        self.finish().await;
        if let Some(r) = shutdown {
            let _ = r.send(());
        }
        // Anything still queued is refused: dropping `rx` fails the senders.
    }

    fn fail(&self, what: &str, err: &dyn std::fmt::Display) {
        self.failed.store(true, Ordering::Release);
        tracing::error!(stream = %self.key, error = %err, "{what} failed; the stream refuses writes until restart");
        if self.policy == FsyncPolicy::Interval {
            // Best effort: without a boot id the next start skips past the mark.
            let hwm = HighWaterMark {
                reserved: self.reserved,
                boot_id: None,
            };
            if let Err(e) = meta::write_json(&self.dir, HWM_META, &hwm) {
                tracing::error!(stream = %self.key, error = %e, "could not record the high-water mark");
            }
        }
    }

    fn start_background_sync(&mut self) -> Option<SyncTask> {
        let log = self.log.as_mut()?;
        if !log.is_dirty() || log.is_poisoned() {
            return None;
        }
        let job = log.take_sync_job();
        Some(tokio::task::spawn_blocking(move || job.run()))
    }

    fn sync_finished(&mut self, r: Result<Result<(), LogError>, tokio::task::JoinError>) {
        let err = match r {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        if let Some(log) = self.log.as_mut() {
            log.poison();
        }
        self.fail("background fsync", &err);
    }

    async fn commit(&mut self, jobs: Vec<Job>) {
        let Some(mut log) = self.log.take() else {
            for j in jobs {
                let _ = j
                    .reply
                    .send(Err(StoreError::Unavailable("stream writer is gone".into())));
            }
            return;
        };
        let (batches, replies): (Vec<Vec<Entry>>, Vec<_>) =
            jobs.into_iter().map(|j| (j.entries, j.reply)).unzip();
        let policy = self.policy;
        let total: u64 = batches.iter().map(|b| b.len() as u64).sum();
        let need_reserve =
            policy == FsyncPolicy::Interval && log.next_offset() + total > self.reserved;
        let new_reserved = log.next_offset() + total + RESERVE_BLOCK;
        let dir = self.dir.clone();
        let boot_id = self.boot_id.clone();
        let ts = jiff::Timestamp::now().as_microsecond();
        let joined = tokio::task::spawn_blocking(move || {
            let mut reserved_written = false;
            let r = (|| -> Result<Vec<u64>, StoreError> {
                if log.is_poisoned() {
                    return Err(StoreError::Unavailable(
                        "stream refuses writes after a storage failure".into(),
                    ));
                }
                if need_reserve {
                    let hwm = HighWaterMark {
                        reserved: new_reserved,
                        boot_id,
                    };
                    if let Err(e) = meta::write_json(&dir, HWM_META, &hwm) {
                        log.poison();
                        return Err(e.into());
                    }
                    reserved_written = true;
                }
                let bases = log.append(&batches, ts)?;
                if policy != FsyncPolicy::Interval {
                    log.sync()?;
                }
                log.publish();
                Ok(bases)
            })();
            (log, r, reserved_written)
        })
        .await;
        let (log, result, reserved_written) = match joined {
            Ok(v) => v,
            Err(e) => {
                self.fail("append task", &e);
                for r in replies {
                    let _ = r.send(Err(StoreError::Internal(format!(
                        "append task failed: {e}"
                    ))));
                }
                return;
            }
        };
        if reserved_written {
            self.reserved = new_reserved;
        }
        let poisoned = log.is_poisoned();
        self.log = Some(log);
        if poisoned && !self.failed.load(Ordering::Acquire) {
            let what = result
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default();
            self.fail("append", &what);
        }
        match result {
            Ok(bases) => {
                for (r, base) in replies.into_iter().zip(bases) {
                    let _ = r.send(Ok(base));
                }
            }
            Err(e) => {
                for r in replies {
                    let _ = r.send(Err(e.clone()));
                }
            }
        }
    }

    /// Final fsync (and, for `interval`, a high-water mark equal to the next
    /// offset, so a later reboot leaves no gap).
    async fn finish(&mut self) {
        let Some(mut log) = self.log.take() else {
            return;
        };
        if log.is_poisoned() {
            return;
        }
        let dir = self.dir.clone();
        let boot_id = self.boot_id.clone();
        let interval = self.policy == FsyncPolicy::Interval;
        let started = Instant::now();
        let r = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            log.sync()?;
            if interval {
                let hwm = HighWaterMark {
                    reserved: log.next_offset(),
                    boot_id,
                };
                meta::write_json(&dir, HWM_META, &hwm)?;
            }
            Ok(())
        })
        .await;
        match r {
            Ok(Ok(())) => {
                tracing::debug!(stream = %self.key, elapsed_ms = started.elapsed().as_millis() as u64, "stream flushed")
            }
            Ok(Err(e)) => self.fail("final fsync", &e),
            Err(e) => self.fail("final fsync task", &e),
        }
    }
}
