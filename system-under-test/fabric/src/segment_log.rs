//! A generic, durable, append-only segment log: the storage under streams
//! (and, later, queues and KV, which append their records as [`Entry`]s).
//!
//! # On disk
//!
//! A log is a directory of segment files named by the offset of their first
//! record, zero-padded to 20 digits (`00000000000000000000.seg`). A segment
//! is a sequence of [`frame`](crate::frame)s, one per appended batch, so a
//! batch is stored whole or, after recovery, not at all. A new segment is
//! started when the next frame would take the active one past
//! `segment_bytes` (a frame larger than that gets a segment of its own).
//!
//! # Writes and durability
//!
//! [`SegmentLog`] has one owner (the stream's writer task). [`SegmentLog::append`]
//! encodes frames and `pwrite`s them; [`SegmentLog::sync`] fdatasyncs every
//! segment written since the last sync and the directory when a segment was
//! created; [`SegmentLog::publish`] makes appended records visible to
//! readers. The owner decides the order (sync then publish for `always` /
//! `batch`, publish then a later sync for `interval`), which is how readers
//! only ever see records the fsync policy allows to acknowledge. Any write or
//! fsync error poisons the log: every later append fails with
//! [`LogError::Poisoned`], because after a failed fsync the kernel may have
//! dropped dirty pages and continuing would build on a state of unknown
//! content.
//!
//! # Reads
//!
//! Readers ([`LogReader`], cheap to clone, usable from any thread) go through
//! an in-memory index of published records — base offset, count, segment,
//! file position, frame length — binary-searched by offset, then `pread` the
//! frames and verify their checksum. The log is never scanned to serve a read.
//!
//! # Test-only write-behind
//!
//! With [`SegmentLog::hold_writes`] (only ever set by the test-only knob
//! `FABRIC_TEST_ACK_BEFORE_WRITE`, see [`crate::test_knob`]) appended
//! frames are not `pwrite`n but kept in a user-space buffer that readers
//! see, and written to the file only by the first append at least
//! [`HOLD_FOR`] after the oldest held frame (that append's own frames stay
//! held), before a rotation, and at a graceful shutdown or checkpoint. A
//! sync in between fsyncs nothing of them, so they are acknowledged and
//! readable while only in the process's memory: a SIGKILL loses them —
//! the durability bug the chaos checkers' negative tests must catch.
//!
//! # Recovery
//!
//! [`SegmentLog::open`] scans the segments in order and validates every frame
//! (magic, length bounds, CRC32C, exact body, offsets increasing and not
//! below the segment's base). At the first invalid byte it truncates that
//! segment there, removes any later segments (their records were written
//! after the invalid one, so none of them was acknowledged unless the
//! medium itself corrupted acknowledged data, which is logged loudly),
//! counts the removed bytes into `flowmesh_recovery_truncated_bytes_total`,
//! and rebuilds the index. The next offset is the end of the last valid
//! record (or the base of a trailing empty segment, or the caller's
//! `min_next_offset`, whichever is largest).
//!
//! Why reassigning the offsets of a truncated tail is safe: a torn or
//! corrupt tail record was never acknowledged and never readable. Under
//! `always` and `batch` a record is acknowledged and published only after the
//! fsync covering it succeeded, so everything acknowledged lies in the valid,
//! durable prefix; an invalid record after it was by construction neither
//! answered 2xx nor returned by a read, and giving its offsets to the next
//! append cannot be observed by any client. Under `interval` a record is
//! acknowledged after `write(2)`; a process crash keeps it (the page cache
//! survives) but a machine crash may lose the window since the last fsync,
//! and those offsets were observed. The stream store therefore persists an
//! offset high-water mark for `interval` streams and passes it here as
//! `min_next_offset` after a machine crash, leaving a gap instead of a reuse
//! (see `stream_store`).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use thiserror::Error;

use crate::frame::{self, Entry, FrameError};
use crate::meta;
use crate::metrics::Metrics;

/// File extension of segment files.
pub const SEGMENT_EXT: &str = "seg";

#[derive(Debug, Error)]
pub enum LogError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the log refuses writes after an earlier write or fsync failure")]
    Poisoned,
    #[error("cannot encode batch: {0}")]
    Frame(#[from] FrameError),
    #[error("corrupt record in {path} at byte {pos}: {source}")]
    Corrupt {
        path: PathBuf,
        pos: u64,
        #[source]
        source: FrameError,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Tuning of a log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Rotation threshold of a segment, in bytes.
    pub segment_bytes: u64,
    /// Where fsyncs and recovery truncations are counted.
    pub metrics: Option<Arc<Metrics>>,
}

/// One entry as a read returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub offset: u64,
    pub timestamp_us: i64,
    pub entry: Entry,
}

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: usize,
    /// Bytes cut from the tail (truncation plus removed later segments).
    pub truncated_bytes: u64,
    pub removed_segments: usize,
    pub next_offset: u64,
}

#[derive(Debug, Clone, Copy)]
struct RecordLoc {
    base: u64,
    count: u32,
    seg: u32,
    pos: u64,
    len: u32,
}

impl RecordLoc {
    fn end(&self) -> u64 {
        self.base + u64::from(self.count)
    }
}

#[derive(Debug)]
struct SegmentRef {
    path: PathBuf,
    file: Arc<File>,
}

#[derive(Debug, Default)]
struct LogIndex {
    segments: Vec<SegmentRef>,
    records: Vec<RecordLoc>,
    /// Test-only write-behind: frames not yet written to their segment.
    held: Option<Held>,
}

/// How long the test-only write-behind keeps frames out of the file (see
/// the module documentation), and how many bytes it holds at most.
pub const HOLD_FOR: std::time::Duration = std::time::Duration::from_millis(200);
const HOLD_MAX_BYTES: usize = 8 << 20;

/// Frames of segment `seg` from byte `start` on, held in memory.
#[derive(Debug)]
struct Held {
    seg: u32,
    start: u64,
    bytes: Vec<u8>,
    since: Instant,
}

/// Read access to a log's published records.
#[derive(Debug, Clone)]
pub struct LogReader {
    index: Arc<RwLock<LogIndex>>,
}

impl LogReader {
    /// Up to `max` entries with offset >= `from`, in offset order.
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<StoredEntry>, LogError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        type Planned = (RecordLoc, Arc<File>, PathBuf, Option<Vec<u8>>);
        let mut plan: Vec<Planned> = Vec::new();
        {
            let idx = self.index.read().unwrap_or_else(|p| p.into_inner());
            let first = idx.records.partition_point(|r| r.end() <= from);
            let mut wanted = 0usize;
            for r in &idx.records[first..] {
                if wanted >= max {
                    break;
                }
                let seg = &idx.segments[r.seg as usize];
                let held = idx
                    .held
                    .as_ref()
                    .filter(|h| h.seg == r.seg && r.pos >= h.start)
                    .map(|h| {
                        let at = (r.pos - h.start) as usize;
                        h.bytes[at..at + r.len as usize].to_vec()
                    });
                plan.push((*r, Arc::clone(&seg.file), seg.path.clone(), held));
                wanted += (r.end() - r.base.max(from)) as usize;
            }
        }
        let mut out = Vec::with_capacity(max.min(1024));
        for (loc, file, path, held) in plan {
            let buf = match held {
                Some(bytes) => bytes,
                None => {
                    let mut buf = vec![0u8; loc.len as usize];
                    file.read_exact_at(&mut buf, loc.pos)
                        .map_err(io_err("read", &path))?;
                    buf
                }
            };
            let (frame, _) = frame::decode(&buf).map_err(|source| LogError::Corrupt {
                path: path.clone(),
                pos: loc.pos,
                source,
            })?;
            for (i, entry) in frame.entries.into_iter().enumerate() {
                let offset = frame.base_offset + i as u64;
                if offset < from {
                    continue;
                }
                if out.len() >= max {
                    break;
                }
                out.push(StoredEntry {
                    offset,
                    timestamp_us: frame.timestamp_us,
                    entry,
                });
            }
        }
        Ok(out)
    }

    /// Offset of the last published entry; `None` when there is none.
    pub fn latest(&self) -> Option<u64> {
        let idx = self.index.read().unwrap_or_else(|p| p.into_inner());
        idx.records.last().map(|r| r.end() - 1)
    }

    /// Number of published records (batches).
    pub fn record_count(&self) -> usize {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .records
            .len()
    }
}

struct Active {
    seg: u32,
    file: Arc<File>,
    path: PathBuf,
    len: u64,
}

/// The writable log. See the module documentation.
pub struct SegmentLog {
    dir: PathBuf,
    opts: LogOptions,
    index: Arc<RwLock<LogIndex>>,
    active: Option<Active>,
    next_offset: u64,
    pending: Vec<RecordLoc>,
    unsynced: Vec<(Arc<File>, PathBuf)>,
    dir_dirty: bool,
    poisoned: bool,
    /// Test-only write-behind (see the module documentation).
    hold: bool,
}

/// `00000000000000000042.seg` for base offset 42.
pub fn segment_name(base: u64) -> String {
    format!("{base:020}.{SEGMENT_EXT}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(&format!(".{SEGMENT_EXT}"))?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

fn open_rw(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err("open", path))
}

impl SegmentLog {
    /// Opens (creating if needed) the log in `dir` and recovers it; the next
    /// append gets at least `min_next_offset`.
    pub fn open(
        dir: &Path,
        opts: LogOptions,
        min_next_offset: u64,
    ) -> Result<(Self, RecoveryReport), LogError> {
        meta::create_dir_durable(dir).map_err(io_err("create directory", dir))?;
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
            let entry = entry.map_err(io_err("list", dir))?;
            if let Some(base) = entry.file_name().to_str().and_then(parse_segment_name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();

        let mut report = RecoveryReport::default();
        let mut index = LogIndex::default();
        let mut prev_end: u64 = 0;
        let mut last_base: Option<u64> = None;
        let mut cut = false;
        let mut dir_changed = false;
        for base in bases {
            let path = dir.join(segment_name(base));
            if cut {
                let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                tracing::warn!(path = %path.display(), bytes = len, "removed segment after a corrupt record");
                report.truncated_bytes += len;
                report.removed_segments += 1;
                dir_changed = true;
                continue;
            }
            let data = fs::read(&path).map_err(io_err("read", &path))?;
            let seg = index.segments.len() as u32;
            let mut pos = 0usize;
            let mut bad: Option<String> = None;
            if base < prev_end {
                bad = Some(format!("segment base {base} below previous end {prev_end}"));
            }
            while bad.is_none() && pos < data.len() {
                match frame::decode(&data[pos..]) {
                    Ok((f, n)) => {
                        let floor = if pos == 0 { base } else { prev_end };
                        if f.base_offset < floor.max(prev_end) {
                            bad = Some(format!(
                                "record offset {} below expected {}",
                                f.base_offset,
                                floor.max(prev_end)
                            ));
                            break;
                        }
                        let loc = RecordLoc {
                            base: f.base_offset,
                            count: f.entries.len() as u32,
                            seg,
                            pos: pos as u64,
                            len: n as u32,
                        };
                        prev_end = loc.end();
                        index.records.push(loc);
                        report.records += 1;
                        pos += n;
                    }
                    Err(e) => bad = Some(e.to_string()),
                }
            }
            if let Some(reason) = bad {
                let lost = (data.len() - pos) as u64;
                report.truncated_bytes += lost;
                cut = true;
                if pos == 0 {
                    // Nothing valid in it: remove it, so a segment's name
                    // always equals (or precedes) its first record's offset.
                    fs::remove_file(&path).map_err(io_err("remove", &path))?;
                    tracing::warn!(path = %path.display(), bytes = lost, %reason,
                        "recovery removed a segment without a valid record");
                    report.removed_segments += 1;
                    dir_changed = true;
                    continue;
                }
                let f = open_rw(&path)?;
                f.set_len(pos as u64).map_err(io_err("truncate", &path))?;
                f.sync_all().map_err(io_err("fsync", &path))?;
                tracing::warn!(
                    path = %path.display(), at = pos, bytes = lost, %reason,
                    "recovery truncated the log at the end of the last valid record"
                );
            }
            let file = open_rw(&path)?;
            index.segments.push(SegmentRef {
                path: path.clone(),
                file: Arc::new(file),
            });
            last_base = Some(base);
        }
        if dir_changed {
            meta::fsync_dir(dir).map_err(io_err("fsync directory", dir))?;
        }
        if let Some(m) = &opts.metrics {
            m.recovery_truncated_bytes
                .fetch_add(report.truncated_bytes, std::sync::atomic::Ordering::Relaxed);
        }
        report.segments = index.segments.len();
        let next_offset = prev_end.max(last_base.unwrap_or(0)).max(min_next_offset);
        report.next_offset = next_offset;
        let active = index.segments.last().map(|s| {
            let len = index
                .records
                .last()
                .filter(|r| r.seg as usize == index.segments.len() - 1)
                .map(|r| r.pos + u64::from(r.len))
                .unwrap_or(0);
            Active {
                seg: (index.segments.len() - 1) as u32,
                file: Arc::clone(&s.file),
                path: s.path.clone(),
                len,
            }
        });
        let log = SegmentLog {
            dir: dir.to_path_buf(),
            opts,
            index: Arc::new(RwLock::new(index)),
            active,
            next_offset,
            pending: Vec::new(),
            unsynced: Vec::new(),
            dir_dirty: false,
            poisoned: false,
            hold: false,
        };
        Ok((log, report))
    }

    /// A reader over the published records.
    pub fn reader(&self) -> LogReader {
        LogReader {
            index: Arc::clone(&self.index),
        }
    }

    /// The offset the next appended entry gets.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Skips offsets up to `offset` (no-op if already past it).
    pub fn advance_to(&mut self, offset: u64) {
        self.next_offset = self.next_offset.max(offset);
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Marks the log as refusing further writes.
    pub fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Test-only: from now on, keeps appended frames in memory instead of
    /// writing them (see the module documentation). Never call it outside
    /// the test-only knob.
    pub fn hold_writes(&mut self) {
        self.hold = true;
    }

    /// Writes the frames the test-only write-behind holds (if any) to
    /// their segment; a sync after this makes them durable.
    pub fn write_held(&mut self) -> Result<(), LogError> {
        let (file, path, start, bytes) = {
            let idx = self.index.read().unwrap_or_else(|p| p.into_inner());
            let Some(h) = &idx.held else {
                return Ok(());
            };
            let seg = &idx.segments[h.seg as usize];
            (
                Arc::clone(&seg.file),
                seg.path.clone(),
                h.start,
                h.bytes.clone(),
            )
        };
        if let Err(e) = file.write_all_at(&bytes, start) {
            self.poisoned = true;
            return Err(io_err("write", &path)(e));
        }
        if !self.unsynced.iter().any(|(f, _)| Arc::ptr_eq(f, &file)) {
            self.unsynced.push((file, path));
        }
        // Readers switch to the file only now that it holds the bytes.
        self.index.write().unwrap_or_else(|p| p.into_inner()).held = None;
        Ok(())
    }

    /// Test-only write-behind: takes `buf` into the held frames instead of
    /// writing it, after writing the held frames that are due.
    fn hold_frames(
        &mut self,
        buf: &mut Vec<u8>,
        recs: &mut Vec<(u64, u32, usize, u32)>,
    ) -> Result<(), LogError> {
        let due = {
            let idx = self.index.read().unwrap_or_else(|p| p.into_inner());
            idx.held
                .as_ref()
                .is_some_and(|h| h.since.elapsed() >= HOLD_FOR || h.bytes.len() >= HOLD_MAX_BYTES)
        };
        if due {
            self.write_held()?;
        }
        let Some(active) = self.active.as_mut() else {
            return Err(LogError::Poisoned);
        };
        {
            let mut idx = self.index.write().unwrap_or_else(|p| p.into_inner());
            let held = idx.held.get_or_insert_with(|| Held {
                seg: active.seg,
                start: active.len,
                bytes: Vec::new(),
                since: Instant::now(),
            });
            held.bytes.extend_from_slice(buf);
        }
        for &(base, count, at, len) in recs.iter() {
            self.pending.push(RecordLoc {
                base,
                count,
                seg: active.seg,
                pos: active.len + at as u64,
                len,
            });
        }
        active.len += buf.len() as u64;
        buf.clear();
        recs.clear();
        Ok(())
    }

    /// Whether bytes were written (or a segment created) since the last sync.
    pub fn is_dirty(&self) -> bool {
        !self.unsynced.is_empty() || self.dir_dirty
    }

    /// Writes each batch as one frame (not yet synced, not yet visible);
    /// returns each batch's base offset. Any error poisons the log.
    pub fn append(
        &mut self,
        batches: &[Vec<Entry>],
        timestamp_us: i64,
    ) -> Result<Vec<u64>, LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        // Validate every batch before touching the disk.
        for b in batches {
            if b.is_empty() {
                return Err(LogError::Frame(FrameError::Malformed("empty batch")));
            }
        }
        let result = self.append_inner(batches, timestamp_us);
        if let Err(e) = &result
            && !matches!(e, LogError::Frame(_))
        {
            self.poisoned = true;
        }
        result
    }

    fn append_inner(&mut self, batches: &[Vec<Entry>], ts: i64) -> Result<Vec<u64>, LogError> {
        let mut bases = Vec::with_capacity(batches.len());
        let mut buf: Vec<u8> = Vec::new();
        let mut buf_records: Vec<(u64, u32, usize, u32)> = Vec::new(); // base, count, offset in buf, len
        let mut next = self.next_offset;
        // Encode up front so an oversized batch fails before anything is written.
        let mut frames = Vec::with_capacity(batches.len());
        for b in batches {
            let mut f = Vec::new();
            frame::encode_into(&mut f, next, ts, b)?;
            frames.push((next, b.len() as u32, f));
            next += b.len() as u64;
        }
        for (base, count, f) in frames {
            let active_len = self.active.as_ref().map(|a| a.len);
            let needs_new = match active_len {
                None => true,
                Some(len) => {
                    let used = len + buf.len() as u64;
                    used > 0 && used + f.len() as u64 > self.opts.segment_bytes
                }
            };
            if needs_new {
                self.flush(&mut buf, &mut buf_records)?;
                self.rotate(base)?;
            }
            buf_records.push((base, count, buf.len(), f.len() as u32));
            buf.extend_from_slice(&f);
            bases.push(base);
        }
        self.flush(&mut buf, &mut buf_records)?;
        self.next_offset = next;
        Ok(bases)
    }

    fn flush(
        &mut self,
        buf: &mut Vec<u8>,
        recs: &mut Vec<(u64, u32, usize, u32)>,
    ) -> Result<(), LogError> {
        if buf.is_empty() {
            return Ok(());
        }
        if self.hold {
            return self.hold_frames(buf, recs);
        }
        let Some(active) = self.active.as_mut() else {
            return Err(LogError::Poisoned);
        };
        active
            .file
            .write_all_at(buf, active.len)
            .map_err(io_err("write", &active.path))?;
        for &(base, count, at, len) in recs.iter() {
            self.pending.push(RecordLoc {
                base,
                count,
                seg: active.seg,
                pos: active.len + at as u64,
                len,
            });
        }
        active.len += buf.len() as u64;
        if !self
            .unsynced
            .iter()
            .any(|(f, _)| Arc::ptr_eq(f, &active.file))
        {
            self.unsynced
                .push((Arc::clone(&active.file), active.path.clone()));
        }
        buf.clear();
        recs.clear();
        Ok(())
    }

    fn rotate(&mut self, base: u64) -> Result<(), LogError> {
        self.write_held()?;
        let path = self.dir.join(segment_name(base));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("create", &path))?;
        let file = Arc::new(file);
        let seg = {
            let mut idx = self.index.write().unwrap_or_else(|p| p.into_inner());
            idx.segments.push(SegmentRef {
                path: path.clone(),
                file: Arc::clone(&file),
            });
            (idx.segments.len() - 1) as u32
        };
        self.dir_dirty = true;
        self.active = Some(Active {
            seg,
            file,
            path,
            len: 0,
        });
        Ok(())
    }

    /// fdatasyncs every segment written since the last sync, then the
    /// directory if a segment was created. Any error poisons the log.
    pub fn sync(&mut self) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        let result = self.sync_inner();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn sync_inner(&mut self) -> Result<(), LogError> {
        while let Some((file, path)) = self.unsynced.first().cloned() {
            let t = Instant::now();
            file.sync_data().map_err(io_err("fsync", &path))?;
            self.observe_fsync(t);
            self.unsynced.remove(0);
        }
        if self.dir_dirty {
            let t = Instant::now();
            meta::fsync_dir(&self.dir).map_err(io_err("fsync directory", &self.dir))?;
            self.observe_fsync(t);
            self.dir_dirty = false;
        }
        Ok(())
    }

    fn observe_fsync(&self, t: Instant) {
        if let Some(m) = &self.opts.metrics {
            m.record_fsync(t.elapsed());
        }
    }

    /// Detaches the pending fsync work so it can run while further appends
    /// are written (`interval`). The caller must [`poison`](Self::poison)
    /// the log if the job fails.
    pub fn take_sync_job(&mut self) -> SyncJob {
        SyncJob {
            files: std::mem::take(&mut self.unsynced),
            dir: std::mem::take(&mut self.dir_dirty).then(|| self.dir.clone()),
            metrics: self.opts.metrics.clone(),
        }
    }

    /// Every segment file with the length of its valid, appended content
    /// (records published or pending). After [`sync`](Self::sync) these
    /// bytes are durable and, the log being append-only, never change: a
    /// consistent copy of the log is each file's prefix of that length.
    pub fn files(&self) -> Vec<(PathBuf, u64)> {
        let idx = self.index.read().unwrap_or_else(|p| p.into_inner());
        let mut lens = vec![0u64; idx.segments.len()];
        for r in idx.records.iter().chain(self.pending.iter()) {
            let end = r.pos + u64::from(r.len);
            let l = &mut lens[r.seg as usize];
            *l = (*l).max(end);
        }
        idx.segments
            .iter()
            .zip(lens)
            .map(|(s, l)| (s.path.clone(), l))
            .collect()
    }

    /// Makes every appended record visible to readers.
    pub fn publish(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut idx = self.index.write().unwrap_or_else(|p| p.into_inner());
        idx.records.append(&mut self.pending);
    }
}

/// fsync work detached from a log by [`SegmentLog::take_sync_job`].
pub struct SyncJob {
    files: Vec<(Arc<File>, PathBuf)>,
    dir: Option<PathBuf>,
    metrics: Option<Arc<Metrics>>,
}

impl SyncJob {
    /// fdatasyncs the files, then fsyncs the directory if needed.
    pub fn run(self) -> Result<(), LogError> {
        for (file, path) in &self.files {
            let t = Instant::now();
            file.sync_data().map_err(io_err("fsync", path))?;
            if let Some(m) = &self.metrics {
                m.record_fsync(t.elapsed());
            }
        }
        if let Some(dir) = &self.dir {
            let t = Instant::now();
            meta::fsync_dir(dir).map_err(io_err("fsync directory", dir))?;
            if let Some(m) = &self.metrics {
                m.record_fsync(t.elapsed());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(segment_bytes: u64) -> LogOptions {
        LogOptions {
            segment_bytes,
            metrics: None,
        }
    }

    fn batch(tag: u8, n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry::new(vec![tag, i as u8, 0xAB]))
            .collect()
    }

    #[test]
    fn append_sync_publish_read() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, rep) = SegmentLog::open(dir.path(), opts(1 << 20), 0).unwrap();
        assert_eq!(rep.next_offset, 0);
        let r = log.reader();
        assert_eq!(
            log.append(&[batch(1, 3), batch(2, 2)], 5).unwrap(),
            vec![0, 3]
        );
        assert!(
            r.read(0, 10).unwrap().is_empty(),
            "unpublished records are invisible"
        );
        log.sync().unwrap();
        log.publish();
        let got = r.read(1, 10).unwrap();
        assert_eq!(
            got.iter().map(|e| e.offset).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(got[2].entry.payload, vec![2, 0, 0xAB]);
        assert_eq!(r.read(0, 2).unwrap().len(), 2);
        assert_eq!(r.latest(), Some(4));
        assert!(r.read(5, 10).unwrap().is_empty());
    }

    #[test]
    fn rotation_and_reads_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = SegmentLog::open(dir.path(), opts(100), 0).unwrap();
        for i in 0..20u8 {
            log.append(&[batch(i, 2)], 0).unwrap();
            log.sync().unwrap();
            log.publish();
        }
        let segs = fs::read_dir(dir.path()).unwrap().count();
        assert!(segs > 3, "expected rotation, got {segs} segments");
        let all = log.reader().read(0, 1000).unwrap();
        assert_eq!(all.len(), 40);
        assert!(all.iter().enumerate().all(|(i, e)| e.offset == i as u64));
        drop(log);
        let (log, rep) = SegmentLog::open(dir.path(), opts(100), 0).unwrap();
        assert_eq!(rep.next_offset, 40);
        assert_eq!(rep.truncated_bytes, 0);
        assert_eq!(
            log.reader().read(17, 5).unwrap()[0].entry.payload,
            vec![8, 1, 0xAB]
        );
    }

    fn offsets(r: &LogReader) -> Vec<u64> {
        r.read(0, 1000).unwrap().iter().map(|e| e.offset).collect()
    }

    /// The test-only write-behind: held records are acknowledged (synced)
    /// and readable with dense offsets, yet not in the file, so dropping
    /// the log without writing them (a kill) loses them; writing them
    /// makes them durable.
    #[test]
    fn held_writes_are_readable_and_lost_by_a_kill() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = SegmentLog::open(dir.path(), opts(1 << 20), 0).unwrap();
        log.hold_writes();
        let r = log.reader();
        assert_eq!(log.append(&[batch(1, 2)], 0).unwrap(), vec![0]);
        log.sync().unwrap();
        log.publish();
        assert_eq!(log.append(&[batch(2, 1)], 0).unwrap(), vec![2]);
        log.sync().unwrap();
        log.publish();
        assert_eq!(offsets(&r), vec![0, 1, 2]);
        assert_eq!(r.read(2, 1).unwrap()[0].entry.payload, vec![2, 0, 0xAB]);
        drop(log);
        let (log, rep) = SegmentLog::open(dir.path(), opts(1 << 20), 0).unwrap();
        assert_eq!(rep.next_offset, 0, "held records never reached the file");
        assert!(offsets(&log.reader()).is_empty());

        // Written (shutdown), they are there after a reopen.
        let (mut log, _) = SegmentLog::open(dir.path(), opts(1 << 20), 0).unwrap();
        log.hold_writes();
        log.append(&[batch(3, 3)], 0).unwrap();
        log.publish();
        log.write_held().unwrap();
        log.sync().unwrap();
        assert_eq!(offsets(&log.reader()), vec![0, 1, 2]);
        drop(log);
        let (log, rep) = SegmentLog::open(dir.path(), opts(1 << 20), 0).unwrap();
        assert_eq!(rep.next_offset, 3);
        assert_eq!(
            log.reader().read(1, 1).unwrap()[0].entry.payload,
            vec![3, 1, 0xAB]
        );
    }

    /// An append at least `HOLD_FOR` after the oldest held record writes
    /// the held records; its own stay held (so a kill always loses some).
    #[test]
    fn held_writes_reach_the_file_by_a_later_append() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = SegmentLog::open(dir.path(), opts(1 << 20), 0).unwrap();
        log.hold_writes();
        log.append(&[batch(1, 2)], 0).unwrap();
        log.publish();
        std::thread::sleep(HOLD_FOR);
        log.append(&[batch(2, 1)], 0).unwrap();
        log.sync().unwrap();
        log.publish();
        assert_eq!(offsets(&log.reader()), vec![0, 1, 2]);
        drop(log);
        let (log, rep) = SegmentLog::open(dir.path(), opts(1 << 20), 0).unwrap();
        assert_eq!(
            rep.next_offset, 2,
            "the first batch was written, the last held"
        );
        assert_eq!(offsets(&log.reader()), vec![0, 1]);
    }

    /// Held records are written before a rotation, so every segment's
    /// records reach its own file.
    #[test]
    fn held_writes_survive_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = SegmentLog::open(dir.path(), opts(100), 0).unwrap();
        log.hold_writes();
        for i in 0..20u8 {
            log.append(&[batch(i, 2)], 0).unwrap();
            log.publish();
        }
        assert_eq!(offsets(&log.reader()).len(), 40);
        log.write_held().unwrap();
        log.sync().unwrap();
        drop(log);
        let (log, rep) = SegmentLog::open(dir.path(), opts(100), 0).unwrap();
        assert_eq!((rep.next_offset, rep.truncated_bytes), (40, 0));
        assert_eq!(
            log.reader().read(17, 1).unwrap()[0].entry.payload,
            vec![8, 1, 0xAB]
        );
    }

    #[test]
    fn poisoned_log_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = SegmentLog::open(dir.path(), opts(1 << 20), 0).unwrap();
        log.poison();
        assert!(matches!(
            log.append(&[batch(1, 1)], 0),
            Err(LogError::Poisoned)
        ));
        assert!(matches!(log.sync(), Err(LogError::Poisoned)));
    }
}
