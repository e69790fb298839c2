//! The audit log (seed 001, "Audit Logging"): JSON lines of lifecycle
//! events and capability grants and denials, each flushed as it is written.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Value, json};

pub struct Audit {
    out: Mutex<BufWriter<File>>,
}

impl Audit {
    pub fn open(path: &Path) -> anyhow::Result<Audit> {
        use anyhow::Context;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("cannot open the audit log {}", path.display()))?;
        Ok(Audit {
            out: Mutex::new(BufWriter::new(file)),
        })
    }

    /// Writes one event: `{"ts_ms","component","event",…detail}`.
    pub fn event(&self, component: &str, event: &str, detail: Value) {
        let ts_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut line = json!({"ts_ms": ts_ms, "component": component, "event": event});
        if let (Value::Object(map), Value::Object(extra)) = (&mut line, detail) {
            map.extend(extra);
        }
        let mut out = self.out.lock();
        let written = serde_json::to_writer(&mut *out, &line)
            .map_err(std::io::Error::other)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }

    pub fn flush(&self) {
        let _ = self.out.lock().get_mut().sync_data();
    }
}
