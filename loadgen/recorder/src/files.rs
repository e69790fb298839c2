//! Atomic writes of the run directory's files: a reader (a report of a run
//! still going, a killed run) sees the old or the new content, never half.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

/// Writes a file atomically: a temporary file, synced, renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
    }
    fs::rename(&tmp, path)
}

/// `value` as pretty JSON with a final newline, written atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}
