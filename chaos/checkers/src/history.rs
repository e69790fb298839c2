//! `history.jsonl`: every operation a check needs, as it happened.
//!
//! One JSON object per line. An operation is an `invoke` record, then one
//! completion with the same `id`:
//!
//! ```json
//! {"id":7,"t_s":12.5,"type":"invoke","op":"stream.append","stream":"t/ns/s","payloads":["256:9f0c…"]}
//! {"id":7,"t_s":12.51,"type":"ok","offsets":[41]}
//! {"id":8,"t_s":12.6,"type":"invoke","op":"queue.enqueue","queue":"t/ns/q","payload":"64:…"}
//! {"id":8,"t_s":12.7,"type":"unknown","error":"timeout"}
//! ```
//!
//! - `ok`: the operation was acknowledged; it carries the response's
//!   identifiers (`offsets`, `job_id`, delivered `jobs`).
//! - `fail`: definitely not applied (the fabric answered 4xx).
//! - `unknown`: may or may not have been applied (timeout, 5xx, connection lost).
//!
//! Payloads are recorded as [`Digest`]s (length and FNV-1a 64), never as
//! bytes, so the history stays small. `t_s` is seconds from the run's
//! start, the clock of `results.json` and `faults.json`.
//!
//! The writer appends and flushes as the run goes; the reader tolerates a
//! torn last line (a killed run) and treats an invoke without a completion
//! as `unknown`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The history's file name in a run directory.
pub const HISTORY_FILE: &str = "history.jsonl";

/// A payload's fingerprint: `"<length>:<FNV-1a 64 in hex>"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Digest(pub String);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Digest(format!("{}:{h:016x}", bytes.len()))
    }
}

/// What an operation asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum Invocation {
    /// Append events (all-or-nothing) to a stream.
    #[serde(rename = "stream.append")]
    StreamAppend {
        stream: String,
        payloads: Vec<Digest>,
    },
    #[serde(rename = "queue.enqueue")]
    QueueEnqueue { queue: String, payload: Digest },
    /// Reserve or receive jobs; the `ok` lists what was delivered.
    #[serde(rename = "queue.receive")]
    QueueReceive { queue: String },
    #[serde(rename = "queue.ack")]
    QueueAck { queue: String, job_id: String },
    #[serde(rename = "kv.put")]
    KvPut {
        store: String,
        key: String,
        value: Digest,
    },
    #[serde(rename = "kv.delete")]
    KvDelete { store: String, key: String },
    /// A batch of messages to an actor node's component, pipeline or
    /// topic; `sinks` are the counters each message is counted at,
    /// `keys` the messages per key.
    #[serde(rename = "actors.send")]
    ActorSend {
        component: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sinks: Vec<String>,
        keys: BTreeMap<String, u64>,
    },
    /// A batch of messages into a Reflow node's source (`reflow.send`);
    /// the `ok` carries the messages accepted in `handled`.
    #[serde(rename = "reflow.send")]
    ReflowSend {
        service: String,
        node: String,
        messages: u64,
    },
    /// A trace started on a tracing server (`StartTrace`); the `ok`
    /// carries its id in `job_id`.
    #[serde(rename = "tracing.start")]
    TracingStart { flow: String },
    /// One event recorded on a tracing server: its id, its trace, the
    /// digest of the typed event (see `gauntlet_drivers::tracing`), and the
    /// service it went through.
    #[serde(rename = "tracing.record")]
    TracingRecord {
        event_id: String,
        trace_id: String,
        digest: Digest,
        actor_id: String,
        service: String,
    },
    /// A subscriber subscribed on `service` (`ok`: the subscription is up).
    #[serde(rename = "tracing.subscribe")]
    TracingSubscribe { subscriber: String, service: String },
    /// A subscriber's subscription ended (its connection was lost, or the
    /// run's load ended), for the reason given.
    #[serde(rename = "tracing.subscription_ended")]
    TracingSubscriptionEnded { subscriber: String, reason: String },
    /// Notifications a subscriber received: the events' ids.
    #[serde(rename = "tracing.notified")]
    TracingNotified {
        subscriber: String,
        events: Vec<String>,
    },
}

/// A job as delivered by a receive or by the drain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredJob {
    pub job_id: String,
    pub payload: Digest,
}

/// The identifiers an acknowledgement carried.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Acknowledged {
    /// `stream.append`: one offset per event, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offsets: Vec<u64>,
    /// `queue.enqueue`: the new job's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// `queue.receive`: the jobs delivered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<DeliveredJob>,
    /// `actors.send`: messages handled at the end of their path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled: Option<u64>,
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The operation, shared by its invoke and its completion.
    pub id: u64,
    /// Seconds from the run's start.
    pub t_s: f64,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    Invoke(Invocation),
    Ok(Acknowledged),
    Fail { error: String },
    Unknown { error: String },
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok(Acknowledged),
    /// Definitely not applied.
    Fail(String),
    /// May or may not have been applied.
    Unknown(String),
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok(_))
    }
    pub fn is_unknown(&self) -> bool {
        matches!(self, Outcome::Unknown(_))
    }
}

/// One operation, invoke and completion paired.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub id: u64,
    pub invoked_s: f64,
    /// `None` when the history ends before the operation completed.
    pub completed_s: Option<f64>,
    pub invocation: Invocation,
    pub outcome: Outcome,
}

/// A history read back: operations in invoke order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub operations: Vec<Operation>,
    /// A torn last line was ignored (the run was killed mid-write).
    pub torn_tail: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read {}: {error}", .path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{}:{line}: not a history record: {error} (hint: only a torn last line is tolerated)", .path.display())]
    BadLine {
        path: PathBuf,
        line: usize,
        error: serde_json::Error,
    },
    #[error("{}:{line}: {message}", .path.display())]
    Inconsistent {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

impl History {
    /// Pairs records into operations. Completions without an invoke, and a
    /// second completion or invoke of one id, are errors.
    pub fn from_records(
        records: impl IntoIterator<Item = (usize, Record)>,
        path: &Path,
    ) -> Result<History, HistoryError> {
        let mut ops: Vec<Operation> = Vec::new();
        let mut index: BTreeMap<u64, (usize, bool)> = BTreeMap::new();
        let bad = |line: usize, message: String| HistoryError::Inconsistent {
            path: path.to_owned(),
            line,
            message,
        };
        for (line, r) in records {
            match r.event {
                Event::Invoke(invocation) => {
                    if index.contains_key(&r.id) {
                        return Err(bad(line, format!("operation {} invoked twice", r.id)));
                    }
                    index.insert(r.id, (ops.len(), false));
                    ops.push(Operation {
                        id: r.id,
                        invoked_s: r.t_s,
                        completed_s: None,
                        invocation,
                        outcome: Outcome::Unknown("no completion recorded".to_owned()),
                    });
                }
                done => {
                    let Some((i, completed)) = index.get_mut(&r.id) else {
                        return Err(bad(
                            line,
                            format!("operation {} completes but was never invoked", r.id),
                        ));
                    };
                    if *completed {
                        return Err(bad(line, format!("operation {} completes twice", r.id)));
                    }
                    *completed = true;
                    let op = &mut ops[*i];
                    op.completed_s = Some(r.t_s);
                    op.outcome = match done {
                        Event::Ok(ack) => Outcome::Ok(ack),
                        Event::Fail { error } => Outcome::Fail(error),
                        Event::Unknown { error } => Outcome::Unknown(error),
                        Event::Invoke(_) => unreachable!("matched above"),
                    };
                }
            }
        }
        Ok(History {
            operations: ops,
            torn_tail: false,
        })
    }

    /// Reads `history.jsonl`, tolerating a torn last line.
    pub fn read(path: &Path) -> Result<History, HistoryError> {
        let io_err = |error| HistoryError::Io {
            path: path.to_owned(),
            error,
        };
        let file = File::open(path).map_err(io_err)?;
        let mut lines: Vec<(usize, String, bool)> = Vec::new();
        let mut reader = BufReader::new(file);
        let mut n = 0;
        loop {
            let mut line = String::new();
            let read = reader.read_line(&mut line).map_err(io_err)?;
            if read == 0 {
                break;
            }
            n += 1;
            let complete = line.ends_with('\n');
            lines.push((n, line, complete));
        }
        let mut records = Vec::with_capacity(lines.len());
        let mut torn_tail = false;
        let last = lines.len();
        for (i, (n, line, complete)) in lines.into_iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(&line) {
                Ok(r) => records.push((n, r)),
                Err(_) if i + 1 == last && !complete => torn_tail = true,
                Err(error) => {
                    return Err(HistoryError::BadLine {
                        path: path.to_owned(),
                        line: n,
                        error,
                    });
                }
            }
        }
        let mut h = History::from_records(records, path)?;
        h.torn_tail = torn_tail;
        Ok(h)
    }
}

/// How long written records may sit in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

struct Sink {
    out: BufWriter<File>,
    last_flush: Instant,
}

/// Appends records to `history.jsonl` as the run goes. Shared by every
/// task that issues checked operations (`&self` methods); ids are unique.
pub struct HistoryWriter {
    path: PathBuf,
    next_id: AtomicU64,
    sink: Mutex<Sink>,
}

impl HistoryWriter {
    pub fn create(path: &Path) -> io::Result<HistoryWriter> {
        let file = File::create(path)?;
        Ok(HistoryWriter {
            path: path.to_owned(),
            next_id: AtomicU64::new(1),
            sink: Mutex::new(Sink {
                out: BufWriter::new(file),
                last_flush: Instant::now(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, record: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        sink.out.write_all(&line)?;
        if sink.last_flush.elapsed() >= FLUSH_EVERY {
            sink.out.flush()?;
            sink.last_flush = Instant::now();
        }
        Ok(())
    }

    /// Records that an operation is being sent; returns its id.
    pub fn invoke(&self, t_s: f64, invocation: Invocation) -> io::Result<u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.write(&Record {
            id,
            t_s,
            event: Event::Invoke(invocation),
        })?;
        Ok(id)
    }

    /// Records how operation `id` ended.
    pub fn complete(&self, id: u64, t_s: f64, outcome: Outcome) -> io::Result<()> {
        let event = match outcome {
            Outcome::Ok(ack) => Event::Ok(ack),
            Outcome::Fail(error) => Event::Fail { error },
            Outcome::Unknown(error) => Event::Unknown { error },
        };
        self.write(&Record { id, t_s, event })
    }

    /// Writes everything buffered to the file (call once a second and at the end).
    pub fn flush(&self) -> io::Result<()> {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        sink.last_flush = Instant::now();
        sink.out.flush()
    }
}

impl Drop for HistoryWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// `readback.json`: what the final read-back phase found, after the faults
/// healed. Every stream, queue and KV store a check needs must be present:
/// a missing one fails the check (it was not verified).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadBack {
    /// Seconds from the run's start when the read-back began.
    pub t_s: f64,
    /// Each stream read whole from offset 0, in the order read.
    #[serde(default)]
    pub streams: BTreeMap<String, Vec<StreamMessage>>,
    /// Each queue drained, in delivery order.
    #[serde(default)]
    pub queues: BTreeMap<String, Vec<DeliveredJob>>,
    /// Each drained queue's dead-letter queue, listed whole (jobs that
    /// exhausted their attempts), oldest first.
    #[serde(default)]
    pub dlq: BTreeMap<String, Vec<DeliveredJob>>,
    /// Each KV store: every key the history wrote, read back (`null`: absent).
    #[serde(default)]
    pub kv: BTreeMap<String, BTreeMap<String, Option<Digest>>>,
    /// Tracing servers: what PostgreSQL holds of the events the history
    /// recorded, and what the tracing checks need to judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingReadBack>,
    /// Reflow nodes: what each reported after its graph drained (or
    /// stalled), and what the tracing servers stored of their events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflow: Option<crate::reflow::ReflowReadBack>,
    /// Actor nodes: each component's status when the read-back began
    /// (with per-key counts for the counters messages were sent to).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, ComponentStatus>,
    /// The same, `stall_within_s` later (`actors.no_silent_stall`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components_later: BTreeMap<String, ComponentStatus>,
    /// `readback.stall_within`, in seconds.
    #[serde(default)]
    pub stall_within_s: f64,
    /// Each component's restart budget (its `max_restarts`); components
    /// not listed have the node's default, 10.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub restart_budgets: BTreeMap<String, u32>,
}

/// What the tracing read-back found after the faults healed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TracingReadBack {
    /// Each event of the history found in `tracing.events`, by event id:
    /// the digest of its stored payload parsed as the protocol's
    /// `TraceEvent` (the same digest the driver recorded when sending it).
    #[serde(default)]
    pub events: BTreeMap<String, Digest>,
    /// Event ids looked up (acknowledged and unknown ones).
    pub looked_up: u64,
    /// The PostgreSQL services the tracing servers store into (the targets
    /// of the faults `tracing.no_false_ack` judges).
    #[serde(default)]
    pub postgres_services: Vec<String>,
    /// How long a notification may take after its event's acknowledgement
    /// (the largest `notify_within` of the scenario), in seconds.
    pub notify_within_s: f64,
}

/// An actor node's component as `GET /api/v1/components/{name}` reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentStatus {
    /// `running`, `restarting`, `stopped` or `failed`.
    pub state: String,
    #[serde(default)]
    pub mailbox_depth: u64,
    #[serde(default)]
    pub handled: u64,
    #[serde(default)]
    pub restarts: u64,
    /// A counter's messages per key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, u64>,
}

/// The read-back's file name in a run directory.
pub const READBACK_FILE: &str = "readback.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMessage {
    pub offset: u64,
    pub payload: Digest,
}
