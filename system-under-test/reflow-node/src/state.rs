//! What the node knows about its graph while it runs: per node counters
//! (received, emitted, dropped, failed, accepted, time blocked), the sinks'
//! counts, the messages in flight (each accepted message is tracked until
//! every copy of it reached a sink or was filtered out), actors that died,
//! and the last time any actor made progress. The actors write it; the HTTP
//! API, `/health` and `/metrics` read it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::graph::{ActorKind, Graph, Node};

/// A test-only fault armed on an actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    Panic,
    Stall,
}

#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub mode: FaultMode,
    /// The fault strikes on the message after this many more.
    pub at_received: u64,
}

/// Seconds buckets of `reflow_message_processing_seconds`.
pub const BUCKETS: [f64; 12] = [
    1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 1.0,
];

#[derive(Default)]
pub struct SinkState {
    pub count: u64,
    /// The last offset per key (messages without the key field count only).
    pub last: BTreeMap<String, Value>,
    pub last_message: Option<Value>,
}

pub struct NodeState {
    pub node: Node,
    /// Indices of the nodes its outport feeds.
    pub downstream: Vec<usize>,
    pub received: AtomicU64,
    pub processed: AtomicU64,
    pub emitted: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
    /// Source: messages `send_to_actor` took.
    pub accepted: AtomicU64,
    pub blocked_ns: AtomicU64,
    /// Source: when the send in progress began (ns since start; 0: none).
    pub blocked_since_ns: AtomicU64,
    pub timeouts: AtomicU64,
    pub processing_ns: AtomicU64,
    pub buckets: [AtomicU64; BUCKETS.len() + 1],
    pub sink: Mutex<SinkState>,
    pub fault: Mutex<Option<Fault>>,
    /// Why it died (a panic or a stall fault), if it did.
    pub dead: Mutex<Option<String>>,
    /// With tracing on: messages processed per wall-clock second (unix
    /// seconds) — each handed the tracing client one `ActorCompleted`
    /// event stamped in that second.
    pub per_second: Mutex<BTreeMap<u64, u64>>,
}

/// A batch waiting for its messages to reach sinks.
pub struct Waiter {
    pub remaining: AtomicI64,
    pub done: tokio::sync::Notify,
}

struct Entry {
    pending: i64,
    waiter: Option<Arc<Waiter>>,
}

pub struct GraphState {
    pub graph: Graph,
    pub nodes: Vec<NodeState>,
    pub started: Instant,
    in_flight: Mutex<HashMap<u64, Entry>>,
    pub next_id: AtomicU64,
    pub completed: AtomicU64,
    pub last_progress_ns: AtomicU64,
    pub network_events: Mutex<BTreeMap<&'static str, u64>>,
    pub draining: AtomicBool,
    /// The tracing client is on (per-second counts are kept).
    pub tracing: bool,
}

/// Graph states by instance, so actors (built by the runtime from their
/// type alone) find theirs from the node's metadata.
static REGISTRY: LazyLock<RwLock<Vec<Arc<GraphState>>>> = LazyLock::new(Default::default);

pub fn register(state: Arc<GraphState>) -> usize {
    let mut r = REGISTRY.write().unwrap();
    r.push(state);
    r.len() - 1
}

pub fn lookup(instance: usize) -> Option<Arc<GraphState>> {
    REGISTRY.read().unwrap().get(instance).cloned()
}

impl GraphState {
    pub fn new(graph: Graph, tracing: bool) -> GraphState {
        let nodes = graph
            .nodes
            .iter()
            .map(|n| NodeState {
                downstream: n
                    .downstream
                    .iter()
                    .map(|d| graph.nodes.iter().position(|m| &m.id == d).unwrap())
                    .collect(),
                node: n.clone(),
                received: AtomicU64::new(0),
                processed: AtomicU64::new(0),
                emitted: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                accepted: AtomicU64::new(0),
                blocked_ns: AtomicU64::new(0),
                blocked_since_ns: AtomicU64::new(0),
                timeouts: AtomicU64::new(0),
                processing_ns: AtomicU64::new(0),
                buckets: Default::default(),
                sink: Mutex::new(SinkState::default()),
                fault: Mutex::new(None),
                dead: Mutex::new(None),
                per_second: Mutex::new(BTreeMap::new()),
            })
            .collect();
        GraphState {
            graph,
            nodes,
            started: Instant::now(),
            in_flight: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            completed: AtomicU64::new(0),
            last_progress_ns: AtomicU64::new(0),
            network_events: Mutex::new(BTreeMap::new()),
            draining: AtomicBool::new(false),
            tracing,
        }
    }

    pub fn index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.node.id == id)
    }

    pub fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    pub fn progress(&self) {
        self.last_progress_ns.store(self.now_ns(), Relaxed);
    }

    /// A message enters the graph (before it is sent).
    pub fn track(&self, id: u64, waiter: Option<Arc<Waiter>>) {
        self.in_flight
            .lock()
            .unwrap()
            .insert(id, Entry { pending: 1, waiter });
    }

    /// A message the runtime did not take (the send failed): forget it.
    pub fn untrack(&self, id: u64) {
        self.in_flight.lock().unwrap().remove(&id);
    }

    /// A node emits a message to `copies` downstream nodes.
    pub fn fan(&self, id: u64, copies: usize) {
        if copies == 1 {
            return;
        }
        if let Some(e) = self.in_flight.lock().unwrap().get_mut(&id) {
            e.pending += copies as i64 - 1;
        }
    }

    /// One copy of a message ended (at a sink, filtered out, or failed).
    pub fn finish(&self, id: u64) {
        let waiter = {
            let mut m = self.in_flight.lock().unwrap();
            let Some(e) = m.get_mut(&id) else { return };
            e.pending -= 1;
            if e.pending > 0 {
                return;
            }
            m.remove(&id).and_then(|e| e.waiter)
        };
        self.completed.fetch_add(1, Relaxed);
        if let Some(w) = waiter
            && w.remaining.fetch_sub(1, Relaxed) == 1
        {
            w.done.notify_one();
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().unwrap().len()
    }

    /// Messages that entered node `i`'s inport side (sent to it) but it
    /// has not received: what is stuck in front of it.
    pub fn backlog(&self, i: usize) -> u64 {
        let n = &self.nodes[i];
        let input: u64 = if n.node.kind == ActorKind::Source {
            n.accepted.load(Relaxed)
        } else {
            self.nodes
                .iter()
                .filter(|u| u.downstream.contains(&i))
                .map(|u| u.emitted.load(Relaxed))
                .sum()
        };
        input.saturating_sub(n.received.load(Relaxed))
    }

    /// Why the node is unhealthy, if it is: an actor died, or messages are
    /// in flight and no actor ran for `stall_after`, or an inport has been
    /// blocked that long. Names the actor and the count stuck before it.
    pub fn problem(&self, stall_after: Duration) -> Option<Stall> {
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(why) = n.dead.lock().unwrap().clone() {
                return Some(Stall {
                    actor: n.node.id.clone(),
                    kind: n.node.kind.name(),
                    why,
                    stuck: self.backlog(i),
                    in_flight: self.in_flight() as u64,
                });
            }
        }
        let now = self.now_ns();
        let limit = stall_after.as_nanos() as u64;
        let idle = now.saturating_sub(self.last_progress_ns.load(Relaxed));
        let blocked = self.nodes.iter().any(|n| {
            let s = n.blocked_since_ns.load(Relaxed);
            s != 0 && now.saturating_sub(s) > limit
        });
        let in_flight = self.in_flight() as u64;
        if (in_flight > 0 && idle > limit) || blocked {
            let (i, stuck) = (0..self.nodes.len())
                .map(|i| (i, self.backlog(i)))
                .max_by_key(|(_, b)| *b)
                .unwrap_or((0, 0));
            let n = &self.nodes[i];
            return Some(Stall {
                actor: n.node.id.clone(),
                kind: n.node.kind.name(),
                why: format!(
                    "no progress for {:.1}s with {in_flight} messages in flight",
                    idle as f64 / 1e9
                ),
                stuck,
                in_flight,
            });
        }
        None
    }

    /// A dead actor among the nodes source `i` feeds (directly or not).
    pub fn problem_downstream(&self, i: usize) -> Option<Stall> {
        let mut seen = vec![false; self.nodes.len()];
        let mut todo = vec![i];
        while let Some(j) = todo.pop() {
            if std::mem::replace(&mut seen[j], true) {
                continue;
            }
            let n = &self.nodes[j];
            if let Some(why) = n.dead.lock().unwrap().clone() {
                return Some(Stall {
                    actor: n.node.id.clone(),
                    kind: n.node.kind.name(),
                    why,
                    stuck: self.backlog(j),
                    in_flight: self.in_flight() as u64,
                });
            }
            todo.extend(n.downstream.iter().copied());
        }
        None
    }

    pub fn blocked_seconds(&self, n: &NodeState) -> f64 {
        let since = n.blocked_since_ns.load(Relaxed);
        let live = if since == 0 {
            0
        } else {
            self.now_ns().saturating_sub(since)
        };
        (n.blocked_ns.load(Relaxed) + live) as f64 / 1e9
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Stall {
    pub actor: String,
    pub kind: &'static str,
    pub why: String,
    /// Messages sent towards the actor that it never received.
    pub stuck: u64,
    pub in_flight: u64,
}

impl Stall {
    pub fn describe(&self) -> String {
        format!(
            "graph stalled at {} `{}` ({}): {} messages stuck before it, {} in flight",
            self.kind, self.actor, self.why, self.stuck, self.in_flight
        )
    }
}
