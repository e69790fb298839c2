//! What streams, queues and KV stores have in common: the
//! `{tenant}/{namespace}/{name}` key, name validation, the store error type,
//! the crash-safe "this resource exists" metadata file, and the scan of a
//! kind's directory at recovery.
//!
//! A resource lives in `<data-dir>/<kind>/<tenant>/<namespace>/<name>/`. Its
//! metadata file (`stream.json`, `queue.json`, `kv.json`) is written
//! crash-safely ([`meta::write_json`]) before anything else, so a directory
//! without it holds no acknowledged data and is ignored at recovery.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::meta;
use crate::segment_log::LogError;

/// Why a store operation failed; maps one to one onto the spec's error codes.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    LeaseExpired(String),
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

/// Whether `s` is a valid tenant, namespace, resource or consumer-group
/// name: 1..=128 of `[A-Za-z0-9._-]`, and not `.` or `..` (so a name can
/// never climb out of its directory).
pub fn valid_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && s != "."
        && s != ".."
}

/// `{tenant}/{namespace}/{name}` of a stream, queue or KV store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub tenant: String,
    pub namespace: String,
    pub name: String,
}

impl ResourceKey {
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

    /// The resource's directory under its kind's root.
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(&self.tenant)
            .join(&self.namespace)
            .join(&self.name)
    }
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.namespace, self.name)
    }
}

/// Contents of a resource's metadata file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceMeta {
    pub version: u32,
    pub created_at: String,
    /// Random per-resource number (queues use it in job ids).
    #[serde(default)]
    pub incarnation: u32,
}

impl ResourceMeta {
    pub fn fresh() -> Self {
        Self {
            version: 1,
            created_at: jiff::Timestamp::now().to_string(),
            incarnation: random_u64() as u32,
        }
    }
}

/// A random number from the standard library's per-process hash keys
/// (no cryptographic claim; used for ids and lease nonces).
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Creates a resource directory durably and writes its metadata file.
pub fn create_resource_dir(dir: &Path, meta_name: &str) -> Result<ResourceMeta, StoreError> {
    meta::create_dir_durable(dir)
        .map_err(|e| StoreError::Internal(format!("create {}: {e}", dir.display())))?;
    let m = ResourceMeta::fresh();
    meta::write_json(dir, meta_name, &m)?;
    Ok(m)
}

/// Every resource under `root` whose metadata file `meta_name` exists,
/// with its metadata; removes stray temp files on the way.
pub fn scan(
    root: &Path,
    meta_name: &str,
) -> Result<Vec<(ResourceKey, PathBuf, ResourceMeta)>, StoreError> {
    meta::create_dir_durable(root)
        .map_err(|e| StoreError::Internal(format!("create {}: {e}", root.display())))?;
    let mut out = Vec::new();
    for t in subdirs(root)? {
        for ns in subdirs(&root.join(&t))? {
            for s in subdirs(&root.join(&t).join(&ns))? {
                let Ok(key) = ResourceKey::new(&t, &ns, &s) else {
                    tracing::warn!(tenant = %t, namespace = %ns, name = %s, "ignoring a directory with an invalid resource name");
                    continue;
                };
                let dir = key.dir(root);
                meta::remove_stray_temps(&dir)?;
                let Some(m) = meta::read_json::<ResourceMeta>(&dir, meta_name)? else {
                    tracing::warn!(resource = %key, "ignoring a directory without {meta_name} (creation did not finish)");
                    continue;
                };
                out.push((key, dir, m));
            }
        }
    }
    Ok(out)
}

/// Names of the sub-directories of `dir`, sorted (none if it does not exist).
pub fn subdirs(dir: &Path) -> Result<Vec<String>, StoreError> {
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

/// Wall-clock time in microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

/// RFC 3339 UTC text of a microsecond timestamp.
pub fn rfc3339(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
