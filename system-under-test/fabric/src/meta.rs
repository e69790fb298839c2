//! Crash-safe metadata files: the small JSON documents (a stream's
//! existence, an offset high-water mark, and later queue/KV/consumer-group
//! state) that must be either the old or the new version after a crash,
//! never a mix.
//!
//! A write goes to `<name>.tmp`, is fsynced, renamed over `<name>`, and the
//! directory is fsynced so the rename itself is durable. A stray `*.tmp`
//! left by a crash is never read and is removed by [`remove_stray_temps`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Serialize, de::DeserializeOwned};
use thiserror::Error;

/// Suffix of in-progress metadata writes.
pub const TEMP_SUFFIX: &str = ".tmp";

#[derive(Debug, Error)]
pub enum MetaError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("metadata file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> MetaError + 'a {
    move |source| MetaError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// fsyncs a directory so entries created, renamed or removed in it are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing ancestors, fsyncing each parent whose
/// entries changed, so the new directory survives a machine crash.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
    {
        create_dir_durable(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
    {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Atomically and durably replaces `dir/name` with `bytes`.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), MetaError> {
    let tmp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let target = dir.join(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    f.write_all(bytes).map_err(io_err("write", &tmp))?;
    f.sync_all().map_err(io_err("fsync", &tmp))?;
    drop(f);
    fs::rename(&tmp, &target).map_err(io_err("rename", &target))?;
    fsync_dir(dir).map_err(io_err("fsync directory", dir))?;
    Ok(())
}

/// Serialises `value` as JSON and writes it with [`write_atomic`].
pub fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), MetaError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| MetaError::Parse {
        path: dir.join(name),
        source,
    })?;
    write_atomic(dir, name, &bytes)
}

/// Reads `dir/name` as JSON; `Ok(None)` when it does not exist.
pub fn read_json<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>, MetaError> {
    let path = dir.join(name);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| MetaError::Parse { path, source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", &path)(e)),
    }
}

/// Removes `*.tmp` files left in `dir` by an interrupted [`write_atomic`];
/// returns how many were removed.
pub fn remove_stray_temps(dir: &Path) -> Result<usize, MetaError> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(TEMP_SUFFIX) {
            let path = entry.path();
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            removed += 1;
        }
    }
    if removed > 0 {
        fsync_dir(dir).map_err(io_err("fsync directory", dir))?;
    }
    Ok(removed)
}

/// The boot id of the running kernel (Linux), used to tell a process crash
/// (page cache survived) from a machine crash (it did not).
pub fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_temps_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        write_json(dir.path(), "m.json", &serde_json::json!({"a":1})).unwrap();
        write_json(dir.path(), "m.json", &serde_json::json!({"a":2})).unwrap();
        let v: serde_json::Value = read_json(dir.path(), "m.json").unwrap().unwrap();
        assert_eq!(v["a"], 2);
        fs::write(dir.path().join("m.json.tmp"), b"{garbage").unwrap();
        assert_eq!(remove_stray_temps(dir.path()).unwrap(), 1);
        let v: serde_json::Value = read_json(dir.path(), "m.json").unwrap().unwrap();
        assert_eq!(v["a"], 2);
        assert!(
            read_json::<serde_json::Value>(dir.path(), "none.json")
                .unwrap()
                .is_none()
        );
    }
}
