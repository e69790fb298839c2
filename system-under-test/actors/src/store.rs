//! The data directory: the registry (component specs and topic
//! subscriptions) and the state of every `counter`, crash-safe.
//!
//! - `registry.log`: JSON lines (`put`, `delete`, `subscribe`,
//!   `unsubscribe`). One writer thread appends what is queued together and
//!   fsyncs once (group commit) before any of those requests is answered,
//!   so a 201 means the component comes back after kill -9. Replay stops
//!   at a torn last line (it was never acknowledged); a bad line anywhere
//!   else is corruption and refuses to start. At open the log is compacted
//!   (temp → fsync → rename → fsync dir).
//! - `state/<name>.log`: a counter's totals, one JSON line per group of
//!   batches, appended and fdatasynced (one sync) before any of them is
//!   acknowledged; the last whole line is the state (a torn tail was never
//!   acknowledged). Past 1 MiB the file is rewritten with its last line
//!   (temp → fsync → rename → fsync dir).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::spec::ComponentSpec;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Record {
    Put { name: String, spec: ComponentSpec },
    Delete { name: String },
    Subscribe { topic: String, component: String },
    Unsubscribe { topic: String, component: String },
}

/// A counter's durable totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterData {
    pub total: u64,
    pub keys: HashMap<String, KeyTotals>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyTotals {
    pub count: u64,
    pub sum: f64,
}

/// What the data directory held at open.
#[derive(Debug, Default)]
pub struct Restored {
    /// Specs in the order they were first spawned.
    pub components: Vec<(String, ComponentSpec)>,
    pub subscriptions: Vec<(String, String)>,
    pub counters: HashMap<String, CounterData>,
}

type Job = (Vec<Record>, oneshot::Sender<io::Result<()>>);

pub struct Store {
    dir: PathBuf,
    jobs: std_mpsc::Sender<Job>,
    counters: parking_lot::Mutex<HashMap<String, Arc<parking_lot::Mutex<CounterFile>>>>,
}

/// An open counter log.
struct CounterFile {
    file: Option<File>,
    bytes: u64,
}

/// A counter log is compacted past this size.
const COUNTER_LOG_MAX: u64 = 1 << 20;

impl Store {
    /// Opens (creating) the data directory, replays and compacts the registry.
    pub fn open(dir: &Path) -> anyhow::Result<(Store, Restored)> {
        use anyhow::Context;
        fs::create_dir_all(dir.join("state"))
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        let log_path = dir.join("registry.log");
        let restored = replay(&log_path, &dir.join("state"))
            .with_context(|| format!("cannot restore the registry from {}", log_path.display()))?;
        compact(dir, &restored).context("cannot compact the registry log")?;
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let (tx, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("registry-log".into())
            .spawn(move || writer(file, rx))
            .context("cannot start the registry writer")?;
        Ok((
            Store {
                dir: dir.to_path_buf(),
                jobs: tx,
                counters: parking_lot::Mutex::new(HashMap::new()),
            },
            restored,
        ))
    }

    /// Appends records durably (fsynced) before returning.
    pub async fn append(&self, records: Vec<Record>) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send((records, tx))
            .map_err(|_| io::Error::other("the registry writer stopped"))?;
        rx.await
            .map_err(|_| io::Error::other("the registry writer stopped"))?
    }

    /// Appends a counter's totals (one JSON line) durably.
    pub async fn save_counter(&self, name: &str, data: Vec<u8>) -> io::Result<()> {
        let slot = self
            .counters
            .lock()
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(parking_lot::Mutex::new(CounterFile {
                    file: None,
                    bytes: 0,
                }))
            })
            .clone();
        let dir = self.dir.join("state");
        let file_name = format!("{name}.log");
        tokio::task::spawn_blocking(move || append_counter(&dir, &file_name, &slot, &data))
            .await
            .map_err(io::Error::other)?
    }

    /// Removes a stopped counter's state.
    pub fn remove_counter(&self, name: &str) {
        self.counters.lock().remove(name);
        let _ = fs::remove_file(self.dir.join("state").join(format!("{name}.log")));
    }
}

fn append_counter(
    dir: &Path,
    name: &str,
    slot: &parking_lot::Mutex<CounterFile>,
    data: &[u8],
) -> io::Result<()> {
    let mut cf = slot.lock();
    let mut line = Vec::with_capacity(data.len() + 1);
    line.extend_from_slice(data);
    line.push(b'\n');
    if cf.file.is_none() || cf.bytes + line.len() as u64 > COUNTER_LOG_MAX {
        // A new or compacted log: the line alone, published atomically.
        cf.file = None;
        write_atomic(dir, name, &line)?;
        let file = OpenOptions::new().append(true).open(dir.join(name))?;
        cf.bytes = line.len() as u64;
        cf.file = Some(file);
        return Ok(());
    }
    let file = cf.file.as_mut().expect("opened above");
    let written = file.write_all(&line).and_then(|()| file.sync_data());
    if let Err(e) = written {
        // Unknown state on disk: the next save rewrites the log whole.
        cf.file = None;
        return Err(e);
    }
    cf.bytes += line.len() as u64;
    Ok(())
}

/// The last whole line of a counter log.
fn last_counter_state(path: &Path) -> anyhow::Result<Option<CounterData>> {
    let text = fs::read(path)?;
    let mut last = None;
    for line in text.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        if let Ok(d) = serde_json::from_slice::<CounterData>(line) {
            last = Some(d);
        }
    }
    Ok(last)
}

fn writer(mut file: File, rx: std_mpsc::Receiver<Job>) {
    let mut broken = false;
    while let Ok(first) = rx.recv() {
        if broken {
            let _ = first.1.send(Err(io::Error::other(
                "the registry log is damaged; restart the node",
            )));
            continue;
        }
        let mut jobs = vec![first];
        while let Ok(more) = rx.try_recv() {
            jobs.push(more);
        }
        let mut buf = Vec::new();
        for (records, _) in &jobs {
            for r in records {
                serde_json::to_writer(&mut buf, r).expect("records serialise");
                buf.push(b'\n');
            }
        }
        let before = file.metadata().map(|m| m.len());
        let mut result = file.write_all(&buf).and_then(|()| file.sync_data());
        if result.is_err() {
            // Never leave a partial record in the middle of the log: cut
            // back to where this group began (nothing of it was answered).
            let cut = before.and_then(|len| file.set_len(len).and_then(|()| file.sync_data()));
            if let Err(e) = cut {
                tracing::error!(error = %e, "cannot cut a failed registry write back; later appends are refused");
                result = Err(io::Error::other(
                    "the registry log is damaged; restart the node",
                ));
                broken = true;
            }
        }
        for (_, reply) in jobs {
            let _ = reply.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
}

fn replay(log: &Path, state_dir: &Path) -> anyhow::Result<Restored> {
    let mut order: Vec<String> = Vec::new();
    let mut specs: HashMap<String, ComponentSpec> = HashMap::new();
    let mut subs: Vec<(String, String)> = Vec::new();
    if log.exists() {
        // Bytes, not lines of text: a torn tail may end inside a character.
        let bytes = fs::read(log)?;
        let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        let last = lines.len();
        for (i, line) in lines.iter().enumerate() {
            if line.is_empty() {
                continue;
            }
            let record: Record = match serde_json::from_slice(line) {
                Ok(r) => r,
                // A torn tail: written but never fsynced, so never acknowledged.
                Err(_) if i + 1 == last => break,
                Err(e) => anyhow::bail!("line {} of the registry log is corrupt: {e}", i + 1),
            };
            match record {
                Record::Put { name, spec } => {
                    if !specs.contains_key(&name) {
                        order.push(name.clone());
                    }
                    specs.insert(name, spec);
                }
                Record::Delete { name } => {
                    specs.remove(&name);
                    order.retain(|n| n != &name);
                    subs.retain(|(t, c)| t != &name && c != &name);
                }
                Record::Subscribe { topic, component } => {
                    if !subs.iter().any(|(t, c)| t == &topic && c == &component) {
                        subs.push((topic, component));
                    }
                }
                Record::Unsubscribe { topic, component } => {
                    subs.retain(|(t, c)| !(t == &topic && c == &component));
                }
            }
        }
    }
    let mut counters = HashMap::new();
    for entry in fs::read_dir(state_dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            // A temp file of an interrupted write.
            let _ = fs::remove_file(entry.path());
            continue;
        };
        if !specs.contains_key(name) {
            let _ = fs::remove_file(entry.path());
            continue;
        }
        match last_counter_state(&entry.path())? {
            Some(data) => {
                counters.insert(name.to_string(), data);
            }
            None => anyhow::bail!(
                "counter state {} holds no whole record",
                entry.path().display()
            ),
        }
    }
    Ok(Restored {
        components: order
            .into_iter()
            .map(|n| {
                let spec = specs.remove(&n).expect("ordered names have specs");
                (n, spec)
            })
            .collect(),
        subscriptions: subs,
        counters,
    })
}

fn compact(dir: &Path, restored: &Restored) -> io::Result<()> {
    let mut buf = Vec::new();
    let records = restored
        .components
        .iter()
        .map(|(name, spec)| Record::Put {
            name: name.clone(),
            spec: spec.clone(),
        })
        .chain(
            restored
                .subscriptions
                .iter()
                .map(|(t, c)| Record::Subscribe {
                    topic: t.clone(),
                    component: c.clone(),
                }),
        );
    for r in records {
        serde_json::to_writer(&mut buf, &r).map_err(io::Error::other)?;
        buf.push(b'\n');
    }
    write_atomic(dir, "registry.log", &buf)
}

/// temp → fsync → rename → fsync of the directory.
pub fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Behavior;

    #[tokio::test]
    async fn registry_survives_reopen_and_ignores_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, restored) = Store::open(dir.path()).unwrap();
            assert!(restored.components.is_empty());
            store
                .append(vec![
                    Record::Put {
                        name: "t".into(),
                        spec: ComponentSpec::new(Behavior::Topic),
                    },
                    Record::Put {
                        name: "c".into(),
                        spec: ComponentSpec::new(Behavior::Counter),
                    },
                    Record::Put {
                        name: "gone".into(),
                        spec: ComponentSpec::new(Behavior::Sink),
                    },
                    Record::Subscribe {
                        topic: "t".into(),
                        component: "c".into(),
                    },
                    Record::Delete {
                        name: "gone".into(),
                    },
                ])
                .await
                .unwrap();
            store
                .save_counter(
                    "c",
                    br#"{"total":3,"keys":{"k":{"count":3,"sum":6.0}}}"#.to_vec(),
                )
                .await
                .unwrap();
            store
                .save_counter(
                    "c",
                    br#"{"total":5,"keys":{"k":{"count":5,"sum":9.0}}}"#.to_vec(),
                )
                .await
                .unwrap();
        }
        // Torn tails: the counter's last whole line and the registry's whole lines count.
        let mut c = OpenOptions::new()
            .append(true)
            .open(dir.path().join("state/c.log"))
            .unwrap();
        c.write_all(b"{\"total\":7,\"ke").unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("registry.log"))
            .unwrap();
        f.write_all(b"{\"op\":\"put\",\"na").unwrap();
        let (_store, restored) = Store::open(dir.path()).unwrap();
        let names: Vec<_> = restored
            .components
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["t", "c"]);
        assert_eq!(restored.subscriptions, [("t".to_string(), "c".to_string())]);
        assert_eq!(restored.counters["c"].total, 5);
    }

    #[test]
    fn a_corrupt_middle_line_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("registry.log"),
            "garbage\n{\"op\":\"delete\",\"name\":\"x\"}\n",
        )
        .unwrap();
        assert!(Store::open(dir.path()).is_err());
    }
}
