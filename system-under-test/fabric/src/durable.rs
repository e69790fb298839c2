//! A [`SegmentLog`] under an fsync policy: the one place where the
//! durability contract is kept, for streams, queues, KV stores and
//! consumer-group offsets alike.
//!
//! [`DurableLog::commit`] writes batches and, under `always` and `batch`,
//! fdatasyncs them (and the directory, for a new segment) before it returns
//! and before the records become visible to readers; under `interval` it
//! returns after `pwrite` and the owner starts a background fsync at least
//! every `--fsync-interval` ([`DurableLog::start_background_sync`]). Any
//! failed write or fsync poisons the log and raises the shared `failed`
//! flag: the owner refuses every later write (503 `unavailable`) until a
//! restart re-validates the files. A failed fsync is never acknowledged.
//!
//! # Never reusing an offset under `interval`
//!
//! A machine crash can drop `interval` writes that were acknowledged (and
//! observed) but not yet fsynced; recovery would then hand their offsets
//! out again. To prevent that, the log keeps a durable high-water mark
//! `reserved` ≥ every offset it has assigned: before assigning past it, it
//! crash-safely writes `reserved = next + needed + RESERVE_BLOCK` together
//! with the kernel's boot id. At recovery, if the recorded boot id differs
//! from the current one (the machine restarted, so unsynced page-cache data
//! may be lost), the log continues at `reserved`, leaving a gap rather than
//! a reuse. If the boot id is the same, only the process died, the page
//! cache kept every acknowledged write, and offsets continue densely from
//! the end of the log. A graceful shutdown fsyncs and records
//! `reserved = next offset`, so even a later reboot leaves no gap. After a
//! failed fsync the mark is rewritten without a boot id (best effort), which
//! forces the jump at the next start. Under `always`/`batch` no mark is
//! needed: nothing is acknowledged or visible before its fsync (see
//! [`crate::segment_log`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::FsyncPolicy;
use crate::frame::Entry;
use crate::meta;
use crate::metrics::Metrics;
use crate::resource::{StoreError, now_us};
use crate::segment_log::{LogError, LogOptions, LogReader, RecoveryReport, SegmentLog};

/// Offsets reserved ahead by one high-water-mark write (`interval`).
pub const RESERVE_BLOCK: u64 = 1 << 16;
/// File name of the high-water mark in a log directory.
pub const HWM_META: &str = "offsets.hwm.json";

/// Storage settings shared by every kind of resource.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub fsync_policy: FsyncPolicy,
    pub fsync_interval: Duration,
    pub segment_bytes: u64,
    pub auto_create: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HighWaterMark {
    reserved: u64,
    boot_id: Option<String>,
}

/// Files a consistent copy needs, each with the length of its durable
/// content (`None`: the whole file, for atomically replaced metadata).
pub type CheckpointFiles = Vec<(PathBuf, Option<u64>)>;

type SyncTask = tokio::task::JoinHandle<Result<(), LogError>>;

/// A log plus its fsync policy. See the module documentation.
pub struct DurableLog {
    log: Option<SegmentLog>,
    dir: PathBuf,
    name: String,
    policy: FsyncPolicy,
    failed: Arc<AtomicBool>,
    reserved: u64,
    boot_id: Option<String>,
    sync_task: Option<SyncTask>,
}

impl DurableLog {
    /// Opens and recovers the log in `dir` (blocking; call from a blocking
    /// task). `name` is used in log lines.
    pub fn open(
        dir: &Path,
        name: String,
        opts: &StoreOptions,
        metrics: &Arc<Metrics>,
        boot_id: Option<&str>,
    ) -> Result<(Self, RecoveryReport), StoreError> {
        meta::create_dir_durable(dir)
            .map_err(|e| StoreError::Internal(format!("create {}: {e}", dir.display())))?;
        meta::remove_stray_temps(dir)?;
        let hwm: Option<HighWaterMark> = meta::read_json(dir, HWM_META)?;
        let (min_next, reserved) = match &hwm {
            // Same boot: the page cache survived, the log holds every acknowledged write.
            Some(h) if h.boot_id.is_some() && h.boot_id.as_deref() == boot_id => (0, h.reserved),
            Some(h) => (h.reserved, h.reserved),
            None => (0, 0),
        };
        let (log, report) = SegmentLog::open(
            dir,
            LogOptions {
                segment_bytes: opts.segment_bytes,
                metrics: Some(Arc::clone(metrics)),
            },
            min_next,
        )?;
        if min_next > 0 && report.next_offset == min_next {
            tracing::warn!(log = %name, next_offset = min_next,
                "machine restart detected: continuing at the offset high-water mark (a gap, never a reuse)");
        }
        Ok((
            DurableLog {
                log: Some(log),
                dir: dir.to_path_buf(),
                name,
                policy: opts.fsync_policy,
                failed: Arc::new(AtomicBool::new(false)),
                reserved,
                boot_id: boot_id.map(str::to_owned),
                sync_task: None,
            },
            report,
        ))
    }

    /// The test-only knob `FABRIC_TEST_ACK_BEFORE_WRITE`: when it names
    /// `kind`, this log keeps appended records in memory and writes them
    /// late (see [`crate::segment_log`]'s write-behind). A no-op otherwise.
    pub fn hold_writes_if(&mut self, kind: crate::test_knob::FakeAck) {
        if crate::test_knob::ack_before_write(kind)
            && let Some(log) = self.log.as_mut()
        {
            tracing::warn!(log = %self.name, "acknowledging writes before they are written (test-only knob)");
            log.hold_writes();
        }
    }

    pub fn policy(&self) -> FsyncPolicy {
        self.policy
    }

    /// A reader over the records this log has made visible.
    pub fn reader(&self) -> Option<LogReader> {
        self.log.as_ref().map(SegmentLog::reader)
    }

    /// Raised when the log refuses writes after a storage failure.
    pub fn failed_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.failed)
    }

    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// The offset the next appended entry gets.
    pub fn next_offset(&self) -> u64 {
        self.log.as_ref().map_or(0, SegmentLog::next_offset)
    }

    fn fail(&mut self, what: &str, err: &dyn std::fmt::Display) {
        self.failed.store(true, Ordering::Release);
        if let Some(log) = self.log.as_mut() {
            log.poison();
        }
        tracing::error!(log = %self.name, error = %err, "{what} failed; refusing writes until restart");
        if self.policy == FsyncPolicy::Interval {
            // Best effort: without a boot id the next start skips past the mark.
            let hwm = HighWaterMark {
                reserved: self.reserved,
                boot_id: None,
            };
            if let Err(e) = meta::write_json(&self.dir, HWM_META, &hwm) {
                tracing::error!(log = %self.name, error = %e, "could not record the high-water mark");
            }
        }
    }

    /// Writes `batches` (one frame each) and makes them durable per the
    /// policy, then visible to readers; returns each batch's base offset.
    pub async fn commit(&mut self, batches: Vec<Vec<Entry>>) -> Result<Vec<u64>, StoreError> {
        let Some(mut log) = self.log.take() else {
            return Err(StoreError::Unavailable("the log is closed".into()));
        };
        let policy = self.policy;
        let total: u64 = batches.iter().map(|b| b.len() as u64).sum();
        let need_reserve =
            policy == FsyncPolicy::Interval && log.next_offset() + total > self.reserved;
        let new_reserved = log.next_offset() + total + RESERVE_BLOCK;
        let dir = self.dir.clone();
        let boot_id = self.boot_id.clone();
        let ts = now_us();
        let joined = tokio::task::spawn_blocking(move || {
            let mut reserved_written = false;
            let r = (|| -> Result<Vec<u64>, StoreError> {
                if log.is_poisoned() {
                    return Err(StoreError::Unavailable(
                        "the log refuses writes after a storage failure".into(),
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
                // The log went with the task: refuse everything from now on.
                self.failed.store(true, Ordering::Release);
                tracing::error!(log = %self.name, error = %e, "append task failed");
                return Err(StoreError::Internal(format!("append task failed: {e}")));
            }
        };
        if reserved_written {
            self.reserved = new_reserved;
        }
        let poisoned = log.is_poisoned();
        self.log = Some(log);
        if poisoned && !self.is_failed() {
            let what = result
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default();
            self.fail("append", &what);
        }
        result
    }

    /// Whether a background fsync is running.
    pub fn syncing(&self) -> bool {
        self.sync_task.is_some()
    }

    /// Starts a background fsync of everything written so far (`interval`),
    /// unless one runs or nothing is dirty.
    pub fn start_background_sync(&mut self) {
        if self.sync_task.is_some() {
            return;
        }
        let Some(log) = self.log.as_mut() else { return };
        if !log.is_dirty() || log.is_poisoned() {
            return;
        }
        let job = log.take_sync_job();
        self.sync_task = Some(tokio::task::spawn_blocking(move || job.run()));
    }

    /// Waits for the running background fsync and records its outcome.
    /// Pending forever when none runs (use with [`syncing`](Self::syncing)).
    pub async fn background_sync_done(&mut self) {
        let Some(task) = self.sync_task.as_mut() else {
            return std::future::pending().await;
        };
        let r = task.await;
        self.sync_task = None;
        let err = match r {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        self.fail("background fsync", &err);
    }

    /// Makes everything written so far durable (waiting for a running
    /// background fsync first).
    pub async fn sync_all(&mut self) -> Result<(), StoreError> {
        if self.syncing() {
            self.background_sync_done().await;
        }
        if self.is_failed() {
            return Err(StoreError::Unavailable(
                "the log refuses writes after a storage failure".into(),
            ));
        }
        let Some(mut log) = self.log.take() else {
            return Err(StoreError::Unavailable("the log is closed".into()));
        };
        let joined = tokio::task::spawn_blocking(move || {
            let r = log.write_held().and_then(|()| log.sync());
            (log, r)
        })
        .await;
        match joined {
            Ok((log, r)) => {
                self.log = Some(log);
                if let Err(e) = r {
                    self.fail("fsync", &e);
                    return Err(e.into());
                }
                Ok(())
            }
            Err(e) => {
                self.failed.store(true, Ordering::Release);
                Err(StoreError::Internal(format!("fsync task failed: {e}")))
            }
        }
    }

    /// Syncs, then lists the log's files with the length of their durable
    /// content, plus the high-water mark if any: what a consistent copy of
    /// this log must contain (see [`crate::backup`]).
    pub async fn checkpoint(&mut self) -> Result<CheckpointFiles, StoreError> {
        self.sync_all().await?;
        let log = self.log.as_ref().expect("present after sync_all");
        let mut files: CheckpointFiles =
            log.files().into_iter().map(|(p, l)| (p, Some(l))).collect();
        let hwm = self.dir.join(HWM_META);
        if hwm.exists() {
            files.push((hwm, None));
        }
        Ok(files)
    }

    /// Final fsync (and, for `interval`, a high-water mark equal to the next
    /// offset, so a later reboot leaves no gap). The log is closed after.
    pub async fn finish(&mut self) {
        if self.syncing() {
            self.background_sync_done().await;
        }
        if self.is_failed() {
            return;
        }
        let Some(mut log) = self.log.take() else {
            return;
        };
        let dir = self.dir.clone();
        let boot_id = self.boot_id.clone();
        let interval = self.policy == FsyncPolicy::Interval;
        let r = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            log.write_held()?;
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
            Ok(Ok(())) => tracing::debug!(log = %self.name, "log flushed"),
            Ok(Err(e)) => self.fail("final fsync", &e),
            Err(e) => self.fail("final fsync task", &e),
        }
    }
}
