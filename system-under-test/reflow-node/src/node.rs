//! The graph on the published runtime: a `reflow_network::Network` built
//! from the checked graph, started, its event channel drained (the runtime
//! makes it unbounded: undrained, memory grows), and one feeder thread per
//! source that calls the runtime's blocking `send_to_actor` — off the async
//! workers, since it blocks forever once a stalled actor's bounded(64)
//! inport is full. HTTP requests hand batches to a feeder and wait for it
//! with a bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use reflow_network::connector::{ConnectionPoint, Connector};
use reflow_network::network::{Network, NetworkConfig, NetworkEvent};
use reflow_network::tracing::TracingConfig;
use serde_json::Value;

use crate::actors::{self, META_INDEX, META_INSTANCE};
use crate::config::Config;
use crate::graph::{ActorKind, Graph, INPORT, OUTPORT};
use crate::state::{GraphState, Waiter};

/// A batch for a feeder.
struct Job {
    messages: Vec<(u64, Value)>,
    waiter: Option<Arc<Waiter>>,
    cancelled: Arc<AtomicBool>,
    accepted: tokio::sync::oneshot::Sender<usize>,
}

pub struct Node {
    pub state: Arc<GraphState>,
    pub network: Arc<Network>,
    pub tracing_enabled: bool,
    feeders: Vec<Option<flume::Sender<Job>>>,
}

/// Why a batch was not (wholly) taken.
#[derive(Debug)]
pub enum SendError {
    /// The inport did not take the batch within the bound: the graph is stuck.
    Unavailable { accepted: usize, message: String },
    /// Accepted, but not every message reached a sink within the bound.
    NotDelivered { delivered: usize, message: String },
}

impl Node {
    /// Builds and starts the network; must run inside the tokio runtime.
    pub fn start(cfg: &Config, graph: Graph) -> anyhow::Result<Node> {
        let tracing = TracingConfig {
            server_url: cfg.tracing.server_url.clone(),
            batch_size: cfg.tracing.batch_size,
            batch_timeout: Duration::from_millis(cfg.tracing.batch_timeout_ms),
            enabled: cfg.tracing.enabled,
            ..TracingConfig::default()
        };
        let net_cfg = NetworkConfig {
            tracing,
            ..NetworkConfig::default()
        };
        let state = Arc::new(GraphState::new(graph, cfg.tracing.enabled));
        let instance = crate::state::register(state.clone());
        let mut net = Network::new(net_cfg);
        actors::register_all(&mut net)?;
        for (i, n) in state.graph.nodes.iter().enumerate() {
            let meta = std::collections::HashMap::from([
                (META_INSTANCE.to_owned(), Value::from(instance as u64)),
                (META_INDEX.to_owned(), Value::from(i as u64)),
            ]);
            net.add_node(&n.id, n.kind.name(), Some(meta))?;
        }
        for n in &state.graph.nodes {
            for d in &n.downstream {
                net.add_connection(Connector::new(
                    ConnectionPoint::new(&n.id, OUTPORT, None),
                    ConnectionPoint::new(d, INPORT, None),
                ));
            }
        }
        net.start()?;
        let network = Arc::new(net);
        // Drain the runtime's unbounded event channel, counting by kind.
        let events = network.get_event_receiver();
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok(ev) = events.recv_async().await {
                let kind = match ev {
                    NetworkEvent::ActorEmit { .. } => "actor_emit",
                    NetworkEvent::ActorStarted { .. } => "actor_started",
                    NetworkEvent::ActorCompleted { .. } => "actor_completed",
                    NetworkEvent::ActorFailed { .. } => "actor_failed",
                    NetworkEvent::MessageSent { .. } => "message_sent",
                    NetworkEvent::MessageReceived { .. } => "message_received",
                    NetworkEvent::NetworkStarted { .. } => "network_started",
                    NetworkEvent::NetworkIdle { .. } => "network_idle",
                    NetworkEvent::NetworkShutdown { .. } => "network_shutdown",
                };
                *st.network_events.lock().unwrap().entry(kind).or_insert(0) += 1;
            }
        });
        let handle = tokio::runtime::Handle::current();
        let mut feeders = Vec::new();
        for (i, n) in state.graph.nodes.iter().enumerate() {
            if n.kind != ActorKind::Source {
                feeders.push(None);
                continue;
            }
            let (tx, rx) = flume::bounded::<Job>(16);
            let (st, net, h, id) = (state.clone(), network.clone(), handle.clone(), n.id.clone());
            std::thread::Builder::new()
                .name(format!("inport-{id}"))
                .spawn(move || feed(rx, st, net, h, i, id))?;
            feeders.push(Some(tx));
        }
        let node = Node {
            state,
            network,
            tracing_enabled: cfg.tracing.enabled,
            feeders,
        };
        Ok(node)
    }

    /// Sends the graph's initial packets (as a batch each, waiting for acceptance).
    pub async fn send_initials(&self, bound: Duration) -> Result<(), String> {
        for (to, v) in self.state.graph.initials.clone() {
            let i = self.state.index(&to).unwrap();
            self.send(i, vec![v], false, bound, bound, usize::MAX)
                .await
                .map_err(|e| format!("initial packet to {to}: {e:?}"))?;
        }
        Ok(())
    }

    /// Hands a batch to source `i`'s feeder; returns once every message is
    /// accepted (or, with `to_sink`, reached its sinks), within the bounds.
    pub async fn send(
        &self,
        i: usize,
        bodies: Vec<Value>,
        to_sink: bool,
        accept_bound: Duration,
        sink_bound: Duration,
        max_in_flight: usize,
    ) -> Result<usize, SendError> {
        let st = &self.state;
        let n = bodies.len();
        let started = Instant::now();
        // An actor on this source's paths died: nothing sent now could be
        // processed, so nothing is accepted.
        if let Some(p) = st.problem_downstream(i) {
            st.nodes[i].timeouts.fetch_add(1, Relaxed);
            return Err(SendError::Unavailable {
                accepted: 0,
                message: format!(
                    "inport `{}.{INPORT}` refused {n} messages: {}",
                    st.nodes[i].node.id,
                    p.describe()
                ),
            });
        }
        // Bounded admission: the runtime buffers without bound behind a
        // slow actor; the node does not.
        while st.in_flight() + n > max_in_flight.max(n) {
            if started.elapsed() >= accept_bound {
                st.nodes[i].timeouts.fetch_add(1, Relaxed);
                let detail = st
                    .problem(Duration::ZERO)
                    .map(|p| p.describe())
                    .unwrap_or_default();
                return Err(SendError::Unavailable {
                    accepted: 0,
                    message: format!(
                        "inport `{}.{INPORT}`: {} messages in flight (limits.max_in_flight {max_in_flight}) for {:.1}s; {detail}",
                        st.nodes[i].node.id,
                        st.in_flight(),
                        accept_bound.as_secs_f64()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let first = st.next_id.fetch_add(n as u64, Relaxed);
        let messages: Vec<(u64, Value)> = (first..).zip(bodies).collect();
        let waiter = to_sink.then(|| {
            Arc::new(Waiter {
                remaining: AtomicI64::new(n as i64),
                done: tokio::sync::Notify::new(),
            })
        });
        let cancelled = Arc::new(AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let feeder = self.feeders[i].as_ref().expect("a source has a feeder");
        let job = Job {
            messages,
            waiter: waiter.clone(),
            cancelled: cancelled.clone(),
            accepted: tx,
        };
        let id = &st.nodes[i].node.id;
        let stuck = |accepted: usize| {
            cancelled.store(true, Relaxed);
            st.nodes[i].timeouts.fetch_add(1, Relaxed);
            let detail = st
                .problem(Duration::ZERO)
                .map(|p| p.describe())
                .unwrap_or_else(|| "the graph is not taking messages".into());
            SendError::Unavailable {
                accepted,
                message: format!(
                    "inport `{id}.{INPORT}` took {accepted} of {n} messages in {:.1}s; {detail}",
                    accept_bound.as_secs_f64()
                ),
            }
        };
        match tokio::time::timeout(accept_bound, feeder.send_async(job)).await {
            Ok(Ok(())) => {}
            _ => return Err(stuck(0)),
        }
        let left = accept_bound.saturating_sub(started.elapsed());
        let accepted = match tokio::time::timeout(left, rx).await {
            Ok(Ok(a)) => a,
            _ => return Err(stuck(0)),
        };
        if accepted < n {
            return Err(stuck(accepted));
        }
        if let Some(w) = waiter {
            let wait = w.done.notified();
            if w.remaining.load(Relaxed) > 0
                && tokio::time::timeout(sink_bound, wait).await.is_err()
                && w.remaining.load(Relaxed) > 0
            {
                let left = w.remaining.load(Relaxed).max(0) as usize;
                let detail = st
                    .problem(Duration::ZERO)
                    .map(|p| p.describe())
                    .unwrap_or_default();
                return Err(SendError::NotDelivered {
                    delivered: n - left,
                    message: format!(
                        "{left} of {n} accepted messages did not reach a sink in {:.1}s; {detail}",
                        sink_bound.as_secs_f64()
                    ),
                });
            }
        }
        Ok(n)
    }

    /// SIGTERM: no new messages; wait (bounded) until every message in
    /// flight reached its sinks; then stop the network (the tracing client
    /// flushes its buffer). Returns the messages still in flight.
    pub async fn drain(&self, bound: Duration) -> usize {
        self.state.draining.store(true, Relaxed);
        let until = Instant::now() + bound;
        // A dead actor never drains: do not wait for it.
        let dead = || {
            self.state
                .nodes
                .iter()
                .any(|n| n.dead.lock().unwrap().is_some())
        };
        while self.state.in_flight() > 0 && !dead() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.state.in_flight();
        self.network.shutdown();
        if self.tracing_enabled {
            // The flush runs on a task the runtime spawned; give it a moment.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        left
    }
}

fn feed(
    rx: flume::Receiver<Job>,
    st: Arc<GraphState>,
    net: Arc<Network>,
    handle: tokio::runtime::Handle,
    i: usize,
    id: String,
) {
    // `send_to_actor` spawns its tracing on the current runtime.
    let _enter = handle.enter();
    let n = &st.nodes[i];
    while let Ok(job) = rx.recv() {
        let mut taken = 0;
        for (mid, body) in job.messages {
            if job.cancelled.load(Relaxed) {
                break;
            }
            st.track(mid, job.waiter.clone());
            let t0 = st.now_ns().max(1);
            n.blocked_since_ns.store(t0, Relaxed);
            let r = net.send_to_actor(&id, INPORT, actors::envelope(mid, body));
            n.blocked_since_ns.store(0, Relaxed);
            n.blocked_ns
                .fetch_add(st.now_ns().saturating_sub(t0), Relaxed);
            match r {
                Ok(()) => {
                    n.accepted.fetch_add(1, Relaxed);
                    taken += 1;
                }
                Err(_) => {
                    st.untrack(mid);
                    break;
                }
            }
        }
        let _ = job.accepted.send(taken);
    }
}
