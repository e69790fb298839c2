//! Online backup (`POST /admin/snapshot`, `fabric-node backup`) and restore
//! (`fabric-node restore`).
//!
//! # Why the copy is consistent
//!
//! Every log is append-only and nothing rewrites a byte once written (no
//! compaction; recovery truncation only runs at startup). A snapshot asks
//! each resource's task for a *checkpoint*: the task, between two group
//! commits, fsyncs what it wrote (even under `interval`) and lists its
//! segment files with the length of their content at that instant. Every
//! write acknowledged before the snapshot request was committed by an
//! earlier group, so it lies inside those prefixes; copying each file's
//! prefix (while the task goes on appending after it) therefore yields a
//! log holding everything acknowledged before the snapshot — possibly
//! more, never less. Metadata files (`stream.json`, `queue.json`,
//! `kv.json`, `offsets.hwm.json`) are copied whole: they are replaced
//! atomically, so any version read is a complete one. Consumer-group
//! offsets are checkpointed before the streams, so a copied committed
//! offset never points past its copied stream. Resources are checkpointed
//! one after another, so the snapshot is not one instant across resources;
//! each resource is consistent on its own.
//!
//! The copy is written file by file, each fsynced with its directory, and
//! `BACKUP.json` (the manifest) is written last, crash-safely: a directory
//! without it is an incomplete backup, which `restore` refuses.
//!
//! Restore copies a backup into an empty (or new) data directory; the node
//! started on it recovers as after any restart.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::meta;
use crate::resource::StoreError;
use crate::stores::Stores;

/// Name of the manifest that marks a complete backup.
pub const MANIFEST: &str = "BACKUP.json";

/// What a snapshot copied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub created_at: String,
    pub files: u64,
    pub bytes: u64,
}

/// Copies the first `len` bytes of `src` (all of it for `None`) to `dst`,
/// fsynced. Returns the bytes copied.
fn copy_prefix(src: &Path, dst: &Path, len: Option<u64>) -> io::Result<u64> {
    let mut input = File::open(src)?;
    let mut out = OpenOptions::new().write(true).create_new(true).open(dst)?;
    let n = match len {
        Some(l) => io::copy(&mut (&mut input).take(l), &mut out)?,
        None => io::copy(&mut input, &mut out)?,
    };
    if let Some(l) = len
        && n != l
    {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{} is shorter than its checkpoint ({n} < {l})",
                src.display()
            ),
        ));
    }
    out.sync_all()?;
    Ok(n)
}

/// Checks that `dir` does not exist or is an empty directory, then creates it.
fn prepare_empty_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!("{} exists and is not a directory", dir.display());
        }
        if fs::read_dir(dir)?.next().is_some() {
            bail!(
                "{} is not empty: choose a new or empty directory",
                dir.display()
            );
        }
    }
    meta::create_dir_durable(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Copies `files` (absolute paths under `root`, with lengths) into `dest`
/// and writes the manifest last.
fn write_backup(
    root: &Path,
    files: &[(PathBuf, Option<u64>)],
    dest: &Path,
) -> anyhow::Result<Manifest> {
    let mut manifest = Manifest {
        version: 1,
        created_at: jiff::Timestamp::now().to_string(),
        ..Manifest::default()
    };
    let mut dirs = std::collections::BTreeSet::new();
    for (path, len) in files {
        let rel = path
            .strip_prefix(root)
            .with_context(|| format!("{} is outside the data directory", path.display()))?;
        let target = dest.join(rel);
        if let Some(parent) = target.parent() {
            meta::create_dir_durable(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
            dirs.insert(parent.to_path_buf());
        }
        manifest.bytes += copy_prefix(path, &target, *len)
            .with_context(|| format!("cannot copy {}", path.display()))?;
        manifest.files += 1;
    }
    for d in dirs {
        meta::fsync_dir(&d).with_context(|| format!("cannot fsync {}", d.display()))?;
    }
    meta::write_json(dest, MANIFEST, &manifest).context("cannot write the manifest")?;
    Ok(manifest)
}

/// A consistent online snapshot of a running node into `dest` (a new or
/// empty directory outside the data directory).
pub async fn snapshot(stores: &Stores, dest: &Path) -> Result<Manifest, StoreError> {
    if !dest.is_absolute() {
        return Err(StoreError::InvalidRequest(
            "`dir` must be an absolute path".into(),
        ));
    }
    let data = fs::canonicalize(&stores.data_dir)
        .map_err(|e| StoreError::Internal(format!("data directory: {e}")))?;
    if dest.starts_with(&stores.data_dir) || dest.starts_with(&data) {
        return Err(StoreError::InvalidRequest(
            "`dir` must be outside the data directory".into(),
        ));
    }
    let _one_at_a_time = stores.snapshot_lock.lock().await;
    let d = dest.to_path_buf();
    tokio::task::spawn_blocking(move || prepare_empty_dir(&d))
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
        .map_err(|e| StoreError::InvalidRequest(format!("{e:#}")))?;
    let mut files = stores.streams.checkpoint().await?;
    files.extend(stores.queues.checkpoint().await?);
    files.extend(stores.kv.checkpoint().await?);
    let root = stores.data_dir.clone();
    let d = dest.to_path_buf();
    tokio::task::spawn_blocking(move || write_backup(&root, &files, &d))
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
        .map_err(|e| StoreError::Internal(format!("{e:#}")))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let t = entry.file_type()?;
        if t.is_dir() {
            walk(&entry.path(), out)?;
        } else if t.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// Holds `<data-dir>/LOCK` exclusively (the running node holds it too).
pub fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    meta::create_dir_durable(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let path = dir.join("LOCK");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a valid, owned file descriptor.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        bail!(
            "data directory {} is in use by another process ({})",
            dir.display(),
            io::Error::last_os_error()
        );
    }
    Ok(f)
}

/// Offline backup of a stopped node's data directory (refused while a
/// node runs on it: use `--from-url` then).
pub fn backup_data_dir(data: &Path, dest: &Path) -> anyhow::Result<Manifest> {
    if !data.is_dir() {
        bail!("{} is not a data directory", data.display());
    }
    let _lock = lock_data_dir(data).context("a node runs on it: back it up with --from-url")?;
    prepare_empty_dir(dest)?;
    let mut files = Vec::new();
    walk(data, &mut files)?;
    files.retain(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name != "LOCK" && !name.ends_with(meta::TEMP_SUFFIX)
    });
    let files: Vec<_> = files.into_iter().map(|p| (p, None)).collect();
    write_backup(data, &files, dest)
}

/// Online backup through a running node's `POST /admin/snapshot`. The node
/// writes the snapshot into `dest` on its own file system.
pub async fn backup_from_url(
    url: &str,
    dest: &Path,
    token: Option<&str>,
) -> anyhow::Result<Manifest> {
    let dest = if dest.is_absolute() {
        dest.to_path_buf()
    } else {
        std::env::current_dir()?.join(dest)
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3600))
        .build()?;
    let mut req = client
        .post(format!("{}/admin/snapshot", url.trim_end_matches('/')))
        .json(&fabric_wire::SnapshotRequest {
            dir: dest.to_string_lossy().into_owned(),
        });
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("snapshot failed: {status}: {text}");
    }
    let r: fabric_wire::SnapshotResponse =
        serde_json::from_str(&text).context("unexpected snapshot answer")?;
    Ok(Manifest {
        version: 1,
        created_at: String::new(),
        files: r.files,
        bytes: r.bytes,
    })
}

/// Copies a complete backup into a new or empty data directory.
pub fn restore(backup: &Path, data: &Path) -> anyhow::Result<Manifest> {
    let manifest: Manifest = meta::read_json(backup, MANIFEST)
        .with_context(|| format!("cannot read {}", backup.join(MANIFEST).display()))?
        .with_context(|| {
            format!(
                "{} has no {MANIFEST}: not a backup, or an incomplete one",
                backup.display()
            )
        })?;
    prepare_empty_dir(data)?;
    let _lock = lock_data_dir(data)?;
    let mut files = Vec::new();
    walk(backup, &mut files)?;
    files.retain(|p| p != &backup.join(MANIFEST));
    let mut dirs = std::collections::BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(backup)?;
        let target = data.join(rel);
        if let Some(parent) = target.parent() {
            meta::create_dir_durable(parent)?;
            dirs.insert(parent.to_path_buf());
        }
        copy_prefix(f, &target, None).with_context(|| format!("cannot copy {}", f.display()))?;
    }
    for d in dirs {
        meta::fsync_dir(&d)?;
    }
    Ok(manifest)
}
