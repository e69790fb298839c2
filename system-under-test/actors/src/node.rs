//! The node: the registry of components and the operations of the API
//! (spawn, stop, send, request, subscribe, lookup), usable in process
//! (benchmarks, tests) or behind `http`.
//!
//! The registry is a hash map behind a reader-writer lock: a lookup is one
//! uncontended read lock and one hash (O(1), independent of the number of
//! components). With a data directory every spawn, stop and subscription
//! is in the registry log (fsynced) before it is answered.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::RwLock;
use serde_json::json;

use crate::audit::Audit;
use crate::component::{Component, Fault, Runner, State, Status, closed_error};
use crate::error::{ApiError, Code};
use crate::mailbox::{Envelope, Refused};
use crate::message::{Batch, Completion, Message};
use crate::metrics::Metrics;
use crate::spec::{Behavior, ComponentSpec};
use crate::store::{CounterData, Record, Restored, Store};

type Registry = HashMap<Arc<str>, Arc<Component>, foldhash::fast::RandomState>;

/// Limits and parts of a node.
pub struct NodeOptions {
    pub node_name: String,
    pub max_components: usize,
    /// Spawning while the resident set is above this is refused (`capacity`).
    pub max_memory_bytes: Option<u64>,
    pub max_batch: usize,
    pub store: Option<Store>,
    pub audit: Option<Audit>,
    pub test_faults: bool,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            node_name: "node-1".into(),
            max_components: 1_000_000,
            max_memory_bytes: None,
            max_batch: 100_000,
            store: None,
            audit: None,
            test_faults: false,
        }
    }
}

/// What components and their tasks share.
pub struct Shared {
    pub node_name: String,
    registry: RwLock<Registry>,
    /// The topics among the components (so a stop scans topics, not everything).
    topics: RwLock<Vec<Arc<Component>>>,
    pub metrics: Metrics,
    pub store: Option<Store>,
    audit: Option<Audit>,
    /// Batches whose completion is still owed (for the shutdown drain).
    in_flight: AtomicU64,
    /// The cluster transport, when the node has peers (seed 004).
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl Shared {
    pub fn lookup(&self, name: &str) -> Option<Arc<Component>> {
        self.registry.read().get(name).cloned()
    }

    pub fn audit(&self, component: &str, event: &str, detail: serde_json::Value) {
        if let Some(a) = &self.audit {
            a.event(component, event, detail);
        }
    }

    /// `n` messages of a batch were handled at the end of their path.
    pub fn delivered(&self, done: Option<&Completion>, n: u64, enqueued: Instant) {
        self.metrics
            .messages_handled
            .fetch_add(n, Ordering::Relaxed);
        self.metrics
            .message_latency
            .observe_n(enqueued.elapsed(), n);
        if let Some(d) = done {
            d.delivered(n);
        }
    }
}

/// How long a send waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Until every message was handled at the end of its path.
    Handled,
    /// Until the batch is in the first mailbox.
    Queued,
}

/// What a successful send reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub messages: u64,
    /// Deliveries handled (messages × subscribers for a topic); 0 with `Wait::Queued`.
    pub deliveries: u64,
}

/// What a spawn reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spawned {
    pub micros: u64,
    /// The same spec was already running under the name.
    pub existing: bool,
}

#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
    max_components: usize,
    max_memory_bytes: Option<u64>,
    pub max_batch: usize,
    pub test_faults: bool,
    accepting: Arc<AtomicBool>,
    started: Instant,
}

impl Node {
    /// A node; call [`Node::restore`] with what the store held, if any.
    pub fn new(opts: NodeOptions) -> Node {
        Node {
            shared: Arc::new(Shared {
                node_name: opts.node_name,
                registry: RwLock::new(Registry::default()),
                topics: RwLock::new(Vec::new()),
                metrics: Metrics::default(),
                store: opts.store,
                audit: opts.audit,
                in_flight: AtomicU64::new(0),
                cluster: std::sync::OnceLock::new(),
            }),
            max_components: opts.max_components,
            max_memory_bytes: opts.max_memory_bytes,
            max_batch: opts.max_batch,
            test_faults: opts.test_faults,
            accepting: Arc::new(AtomicBool::new(true)),
            started: Instant::now(),
        }
    }

    #[cfg(test)]
    pub(crate) fn shared_for_tests(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    pub fn name(&self) -> &str {
        &self.shared.node_name
    }

    /// Starts the cluster transport (once): binds its listener, dials the
    /// peers. Returns the bound address.
    pub async fn start_cluster(
        &self,
        opts: crate::cluster::ClusterOptions,
    ) -> anyhow::Result<std::net::SocketAddr> {
        let (cluster, addr) = crate::cluster::Cluster::start(
            &self.shared.node_name,
            opts,
            Arc::downgrade(&self.shared),
        )
        .await?;
        if self.shared.cluster.set(cluster).is_err() {
            anyhow::bail!("the cluster transport was already started");
        }
        Ok(addr)
    }

    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.shared.cluster.get()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Brings back the components, subscriptions and counter totals of the
    /// data directory (not logged again).
    pub fn restore(&self, restored: Restored) -> Result<usize, ApiError> {
        let Restored {
            components,
            subscriptions,
            mut counters,
        } = restored;
        let n = components.len();
        for (name, spec) in components {
            let counter = counters.remove(&name);
            self.start(&name, spec, counter)?;
            self.shared.metrics.event("restored");
        }
        for (topic, component) in subscriptions {
            if let Some(t) = self.shared.lookup(&topic) {
                t.subscribers.write().push(component.into());
            }
        }
        Ok(n)
    }

    /// Creates, registers and starts a component (no logging, no limits).
    fn start(
        &self,
        name: &str,
        spec: ComponentSpec,
        counter: Option<CounterData>,
    ) -> Result<Arc<Component>, ApiError> {
        let comp = Component::new(name, spec, counter);
        {
            let mut reg = self.shared.registry.write();
            if let Some(existing) = reg.get(name) {
                return Err(if existing.spec == comp.spec {
                    ApiError::new(Code::InvalidRequest, "exists")
                } else {
                    ApiError::invalid(format!(
                        "a different component named `{name}` runs; stop it first"
                    ))
                    .with_status(409)
                });
            }
            reg.insert(comp.name.clone(), comp.clone());
        }
        if matches!(comp.spec.behavior, Behavior::Topic) {
            self.shared.topics.write().push(comp.clone());
        }
        tokio::spawn(Runner::new(comp.clone(), self.shared.clone()).run());
        Ok(comp)
    }

    fn admission(&self) -> Result<(), ApiError> {
        if !self.accepting.load(Ordering::Acquire) {
            return Err(ApiError::unavailable("the node is shutting down"));
        }
        Ok(())
    }

    fn check_capacity(&self, more: usize) -> Result<(), ApiError> {
        let active = self.shared.registry.read().len();
        if active + more > self.max_components {
            return Err(ApiError::new(
                Code::Capacity,
                format!(
                    "{active} components run and the limit is {} (AIRSSYS_MAX_COMPONENTS)",
                    self.max_components
                ),
            ));
        }
        if let Some(limit) = self.max_memory_bytes
            && let Some(rss) = crate::resource::rss_bytes()
            && rss > limit
        {
            return Err(ApiError::new(
                Code::Capacity,
                format!(
                    "the node's resident memory ({rss} B) is above AIRSSYS_MAX_MEMORY_GB ({limit} B)"
                ),
            ));
        }
        Ok(())
    }

    /// Spawns one component.
    pub async fn spawn(&self, name: &str, spec: ComponentSpec) -> Result<Spawned, ApiError> {
        let t0 = Instant::now();
        self.admission()?;
        spec.validate(name)?;
        if let Some(existing) = self.shared.lookup(name) {
            if matches!(existing.state(), State::Stopping | State::Stopped) {
                return Err(ApiError::invalid(format!(
                    "`{name}` is being stopped; spawn it again once DELETE answered"
                ))
                .with_status(409));
            }
            if *existing.spec == spec {
                return Ok(Spawned {
                    micros: 0,
                    existing: true,
                });
            }
            return Err(ApiError::invalid(format!(
                "a different component named `{name}` runs; stop it first"
            ))
            .with_status(409));
        }
        self.check_loop(name, &spec)?;
        self.check_capacity(1)?;
        let record = self.shared.store.as_ref().map(|_| Record::Put {
            name: name.to_string(),
            spec: spec.clone(),
        });
        let comp = match self.start(name, spec, None) {
            Ok(c) => c,
            // Raced with an identical spawn.
            Err(e) if e.message == "exists" => {
                return Ok(Spawned {
                    micros: 0,
                    existing: true,
                });
            }
            Err(e) => return Err(e),
        };
        if let (Some(store), Some(record)) = (&self.shared.store, record)
            && let Err(e) = store.append(vec![record]).await
        {
            self.discard(&comp).await;
            return Err(ApiError::unavailable(format!(
                "cannot write the registry log: {e}"
            )));
        }
        self.spawned(&comp, t0);
        Ok(Spawned {
            micros: t0.elapsed().as_micros() as u64,
            existing: false,
        })
    }

    fn spawned(&self, comp: &Component, t0: Instant) {
        let m = &self.shared.metrics;
        m.spawn.observe(t0.elapsed());
        m.event("spawned");
        if self.shared.audit.is_some() {
            self.shared.audit(
                &comp.name,
                "spawned",
                json!({"behavior": comp.spec.behavior.kind()}),
            );
            for cap in &comp.spec.security.capabilities {
                self.shared
                    .audit(&comp.name, "capability_granted", json!({"capability": cap}));
            }
        }
    }

    /// Spawns `count` components from one template, named `prefix0…`; one
    /// registry-log write for all. Returns each spawn's duration (µs).
    pub async fn spawn_many(
        &self,
        template: &ComponentSpec,
        count: usize,
        prefix: &str,
    ) -> Result<Vec<u64>, ApiError> {
        self.admission()?;
        if count == 0 {
            return Err(ApiError::invalid("count must be at least 1"));
        }
        let names: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
        for n in &names {
            template.validate(n)?;
            self.check_loop(n, template)?;
            if self.shared.lookup(n).is_some() {
                return Err(ApiError::invalid(format!(
                    "a component named `{n}` already runs; choose another prefix"
                ))
                .with_status(409));
            }
        }
        self.check_capacity(count)?;
        let mut started = Vec::with_capacity(count);
        let mut micros = Vec::with_capacity(count);
        for n in &names {
            let t0 = Instant::now();
            match self.start(n, template.clone(), None) {
                Ok(c) => {
                    micros.push(t0.elapsed().as_micros() as u64);
                    started.push((c, t0));
                }
                Err(e) => {
                    for (c, _) in &started {
                        self.discard(c).await;
                    }
                    return Err(e);
                }
            }
        }
        if let Some(store) = &self.shared.store {
            let records = names
                .iter()
                .map(|n| Record::Put {
                    name: n.clone(),
                    spec: template.clone(),
                })
                .collect();
            if let Err(e) = store.append(records).await {
                for (c, _) in &started {
                    self.discard(c).await;
                }
                return Err(ApiError::unavailable(format!(
                    "cannot write the registry log: {e}"
                )));
            }
        }
        for (c, t0) in &started {
            self.spawned(c, *t0);
        }
        Ok(micros)
    }

    /// Removes a component that never became visible (a failed spawn).
    async fn discard(&self, comp: &Arc<Component>) {
        comp.set_state(State::Stopping);
        self.forget(&comp.name);
        let (tx, rx) = tokio::sync::oneshot::channel();
        if comp.mailbox.send_control(Envelope::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Sends a batch to a component (or a topic) by name.
    pub async fn send(
        &self,
        name: &str,
        messages: Vec<Message>,
        wait: Wait,
    ) -> Result<Sent, ApiError> {
        self.admission()?;
        if messages.len() > self.max_batch {
            return Err(ApiError::invalid(format!(
                "the batch holds {} messages; the limit is {} (AIRSSYS_MAX_BATCH)",
                messages.len(),
                self.max_batch
            )));
        }
        let comp = self
            .shared
            .lookup(name)
            .ok_or_else(|| ApiError::unknown(name))?;
        self.send_to(&comp, messages.into(), wait).await
    }

    /// Sends a batch to a component already looked up.
    pub async fn send_to(
        &self,
        comp: &Component,
        messages: Arc<[Message]>,
        wait: Wait,
    ) -> Result<Sent, ApiError> {
        if !comp.accepts() {
            return Err(refusal(comp));
        }
        let n = messages.len() as u64;
        if n == 0 {
            return Ok(Sent {
                messages: 0,
                deliveries: 0,
            });
        }
        let done = match wait {
            Wait::Handled => Some(Completion::new(n)),
            Wait::Queued => None,
        };
        let batch = Batch {
            messages,
            done: done.clone(),
            enqueued: Instant::now(),
            hops: 0,
        };
        let m = &self.shared.metrics;
        if let Err((why, _)) = comp.mailbox.try_admit(batch) {
            return Err(match why {
                Refused::Full => {
                    m.dropped_mailbox_full.fetch_add(n, Ordering::Relaxed);
                    ApiError::new(
                        Code::MailboxFull,
                        format!(
                            "the batch of {n} does not fit the mailbox of `{}` ({} of {} queued); nothing was queued",
                            comp.name,
                            comp.mailbox.depth(),
                            comp.mailbox.capacity()
                        ),
                    )
                }
                Refused::Closed => {
                    m.dropped_unavailable.fetch_add(n, Ordering::Relaxed);
                    refusal(comp)
                }
            });
        }
        m.messages_sent.fetch_add(n, Ordering::Relaxed);
        let Some(done) = done else {
            return Ok(Sent {
                messages: n,
                deliveries: 0,
            });
        };
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let _guard = InFlight(&self.shared.in_flight);
        done.wait().await;
        let outcome = done.outcome();
        if outcome.failed > 0 {
            let mut e = outcome
                .error
                .unwrap_or_else(|| ApiError::new(Code::HandlerFailed, "some messages failed"));
            e.message = format!(
                "{} of the batch's deliveries failed ({} handled): {}",
                outcome.failed, outcome.delivered, e.message
            );
            e.counts = Some((outcome.delivered, outcome.failed));
            return Err(e);
        }
        Ok(Sent {
            messages: n,
            deliveries: outcome.delivered,
        })
    }

    /// Request-response: one message, answered by the component.
    pub async fn request(&self, name: &str, payload: Bytes) -> Result<Bytes, ApiError> {
        self.admission()?;
        let comp = self
            .shared
            .lookup(name)
            .ok_or_else(|| ApiError::unknown(name))?;
        if !comp.accepts() {
            return Err(closed_error(&comp));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        comp.mailbox
            .send_control(Envelope::Request(Box::new(crate::mailbox::Request {
                message: Message::new(payload),
                reply: tx,
            })))
            .map_err(|_| closed_error(&comp))?;
        rx.await.map_err(|_| closed_error(&comp))?
    }

    /// Subscribes a component to a topic.
    pub async fn subscribe(&self, topic: &str, component: &str) -> Result<bool, ApiError> {
        self.admission()?;
        // `node/name`: a subscriber on this node, or on a peer (remote).
        let component = match crate::spec::split_target(component) {
            (Some(n), name) if n == self.shared.node_name => name,
            (Some(peer), name) => return self.subscribe_remote(topic, peer, name).await,
            (None, name) => name,
        };
        crate::spec::check_name(component)?;
        let t = self.topic(topic)?;
        if self.shared.lookup(component).is_none() {
            return Err(ApiError::unknown(component));
        }
        if component == topic || self.reaches(component, topic) {
            return Err(ApiError::invalid(format!(
                "subscribing `{component}` to `{topic}` would close a loop (messages would go round forever)"
            )));
        }
        if t.subscribers.read().iter().any(|s| &**s == component) {
            return Ok(false);
        }
        self.log_subscribe(topic, component).await?;
        let mut subs = t.subscribers.write();
        if subs.iter().any(|s| &**s == component) {
            return Ok(false);
        }
        // Stopped while the record was written: do not leave a dead subscriber.
        if !self.shared.lookup(component).is_some_and(|c| c.accepts()) {
            return Err(ApiError::unknown(component));
        }
        subs.push(component.into());
        Ok(true)
    }

    /// The topic named `topic` (404 when absent, 400 when not a topic).
    fn topic(&self, topic: &str) -> Result<Arc<Component>, ApiError> {
        let t = self
            .shared
            .lookup(topic)
            .ok_or_else(|| ApiError::unknown(topic))?;
        if !matches!(t.spec.behavior, Behavior::Topic) {
            return Err(ApiError::invalid(format!(
                "`{topic}` is a `{}`, not a topic",
                t.spec.behavior.kind()
            )));
        }
        Ok(t)
    }

    /// Writes a subscription to the registry log (before it is answered).
    async fn log_subscribe(&self, topic: &str, component: &str) -> Result<(), ApiError> {
        if let Some(store) = &self.shared.store {
            store
                .append(vec![Record::Subscribe {
                    topic: topic.to_string(),
                    component: component.to_string(),
                }])
                .await
                .map_err(|e| {
                    ApiError::unavailable(format!("cannot write the registry log: {e}"))
                })?;
        }
        Ok(())
    }

    /// Subscribes `peer/name` (a component on a peer, which must have it).
    async fn subscribe_remote(
        &self,
        topic: &str,
        peer: &str,
        name: &str,
    ) -> Result<bool, ApiError> {
        crate::spec::check_name(peer)?;
        crate::spec::check_name(name)?;
        let t = self.topic(topic)?;
        let cluster = self.shared.cluster.get().ok_or_else(|| {
            ApiError::invalid(format!(
                "`{peer}/{name}` names a component on node `{peer}`, but this node has no cluster peers (--peer)"
            ))
        })?;
        if cluster.lookup_on(peer, name).await?.is_none() {
            return Err(ApiError::new(
                Code::UnknownComponent,
                format!("no component named `{name}` on node `{peer}`"),
            ));
        }
        let full = format!("{peer}/{name}");
        if t.subscribers.read().iter().any(|s| **s == *full) {
            return Ok(false);
        }
        self.log_subscribe(topic, &full).await?;
        let mut subs = t.subscribers.write();
        if subs.iter().any(|s| **s == *full) {
            return Ok(false);
        }
        subs.push(full.into());
        Ok(true)
    }

    /// Looks a component up by name (the registry's O(1) read).
    pub fn lookup(&self, name: &str) -> Option<Arc<Component>> {
        self.shared.lookup(name)
    }

    pub fn status(&self, name: &str) -> Option<Status> {
        self.shared.lookup(name).map(|c| c.status())
    }

    /// Every component whose name starts with `prefix`, sorted by name.
    pub fn list(&self, prefix: &str) -> Vec<Status> {
        let comps: Vec<Arc<Component>> = self
            .shared
            .registry
            .read()
            .values()
            .filter(|c| c.name.starts_with(prefix))
            .cloned()
            .collect();
        let mut out: Vec<Status> = comps.iter().map(|c| c.status()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn components(&self) -> Vec<Arc<Component>> {
        self.shared.registry.read().values().cloned().collect()
    }

    pub fn active(&self) -> usize {
        self.shared.registry.read().len()
    }

    pub fn failed_components(&self) -> usize {
        self.shared
            .registry
            .read()
            .values()
            .filter(|c| c.state() == State::Failed)
            .count()
    }

    pub fn at_capacity(&self) -> bool {
        self.active() >= self.max_components
    }

    /// Arms a test-only fault.
    pub fn set_fault(&self, name: &str, fault: Fault) -> Result<(), ApiError> {
        let c = self
            .shared
            .lookup(name)
            .ok_or_else(|| ApiError::unknown(name))?;
        tracing::warn!(component = name, ?fault, "test fault armed");
        c.set_fault(fault);
        Ok(())
    }

    /// Gracefully stops a component (DELETE): it handles what is queued,
    /// checkpoints, leaves the registry and every topic, and is forgotten by
    /// the data directory.
    pub async fn stop(&self, name: &str) -> Result<u64, ApiError> {
        self.admission()?;
        let comp = self
            .shared
            .lookup(name)
            .ok_or_else(|| ApiError::new(Code::NotFound, format!("no component named `{name}`")))?;
        if !self.stop_component(&comp, Duration::from_secs(5)).await {
            // Still handling (a stall, a slow effect): it stays registered
            // and stops when done; a later DELETE finishes the job.
            return Err(ApiError::unavailable(format!(
                "`{name}` did not finish its queued messages within 5 s; it is stopping — DELETE again later"
            )));
        }
        let topics = self.shared.topics.read().clone();
        let mut records = vec![Record::Delete {
            name: name.to_string(),
        }];
        for t in &topics {
            if t.subscribers.read().iter().any(|s| &**s == name) {
                records.push(Record::Unsubscribe {
                    topic: t.name.to_string(),
                    component: name.to_string(),
                });
            }
        }
        // Durable before the name is free: a spawn of the same name can
        // only follow the Delete in the log.
        if let Some(store) = &self.shared.store {
            store.append(records).await.map_err(|e| {
                ApiError::unavailable(format!("cannot write the registry log: {e}"))
            })?;
            store.remove_counter(name);
        }
        for t in &topics {
            t.subscribers.write().retain(|s| &**s != name);
        }
        self.forget(name);
        self.shared.metrics.event("stopped");
        self.shared
            .audit(name, "stopped", json!({"handled": comp.handled()}));
        Ok(comp.handled())
    }

    /// The local component a forward spec sends to (`node/name` on this node included).
    fn local_target<'a>(&self, spec: &'a ComponentSpec) -> Option<&'a str> {
        match &spec.behavior {
            Behavior::Forward { to } => match crate::spec::split_target(to) {
                (Some(node), _) if node != self.shared.node_name => None,
                (_, name) => Some(name),
            },
            _ => None,
        }
    }

    /// Whether following forwards and topic subscriptions from `from`
    /// reaches `target` (a new edge `target → from` would close a loop).
    fn reaches(&self, from: &str, target: &str) -> bool {
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(n) = stack.pop() {
            if n == target {
                return true;
            }
            if !seen.insert(n.clone()) || seen.len() > 100_000 {
                continue;
            }
            if let Some(c) = self.shared.lookup(&n) {
                if let Some(to) = self.local_target(&c.spec) {
                    stack.push(to.to_string());
                }
                stack.extend(c.subscribers.read().iter().map(|s| s.to_string()));
            }
        }
        false
    }

    /// Refuses a forward that would send a batch round in a loop.
    fn check_loop(&self, name: &str, spec: &ComponentSpec) -> Result<(), ApiError> {
        if let Some(to) = self.local_target(spec)
            && (to == name || self.reaches(to, name))
        {
            return Err(ApiError::invalid(format!(
                "`{name}` forwarding to `{to}` would close a loop (batches would go round forever)"
            )));
        }
        Ok(())
    }

    /// Removes a name from the registry (and the topic list).
    fn forget(&self, name: &str) {
        if let Some(c) = self.shared.registry.write().remove(name)
            && matches!(c.spec.behavior, Behavior::Topic)
        {
            self.shared.topics.write().retain(|t| t.name != c.name);
        }
    }

    /// pre_stop (refuse new messages), drain, post_stop (checkpoint), within `limit`.
    async fn stop_component(&self, comp: &Component, limit: Duration) -> bool {
        if matches!(comp.state(), State::Running | State::Restarting) {
            comp.set_state(State::Stopping);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if comp.mailbox.send_control(Envelope::Stop(tx)).is_err() {
            return true;
        }
        tokio::time::timeout(limit, rx).await.is_ok()
    }

    /// Stops taking requests (503 `unavailable`).
    pub fn close(&self) {
        self.accepting.store(false, Ordering::Release);
    }

    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// Messages queued in every mailbox.
    pub fn queued(&self) -> usize {
        self.components().iter().map(|c| c.mailbox.depth()).sum()
    }

    /// Waits until no batch is owed and no mailbox holds a message, or `limit`.
    pub async fn drain(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.shared.in_flight.load(Ordering::Acquire) == 0 && self.queued() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops every component, dependents before what they depend on
    /// (a pipeline head before its stages; a topic before its subscribers),
    /// each within `per_component`. Returns the names that did not stop in time.
    pub async fn stop_all(&self, per_component: Duration) -> Vec<String> {
        let mut late = Vec::new();
        for c in stop_order(&self.components()) {
            if !self.stop_component(&c, per_component).await {
                tracing::warn!(component = %c.name, "did not stop in time");
                late.push(c.name.to_string());
            }
        }
        late
    }

    /// Flushes the audit log.
    pub fn flush(&self) {
        if let Some(a) = &self.shared.audit {
            a.flush();
        }
    }

    /// The `top` deepest mailboxes.
    pub fn deepest(&self, top: usize) -> Vec<(String, usize)> {
        let mut d: Vec<(String, usize)> = self
            .components()
            .iter()
            .map(|c| (c.name.to_string(), c.mailbox.depth()))
            .collect();
        d.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        d.truncate(top);
        d
    }
}

/// Why a component takes no new message: 503 `unavailable` whether it
/// failed or was stopped (what was queued when it failed is answered
/// `handler_failed` by the component itself).
fn refusal(comp: &Component) -> ApiError {
    match comp.state() {
        State::Failed => ApiError::unavailable(format!(
            "component `{}` failed after {} restarts and takes no messages",
            comp.name,
            comp.restarts()
        )),
        _ => ApiError::unavailable(format!("component `{}` is stopped", comp.name)),
    }
}

struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reverse dependency order: a component is stopped before every component
/// it sends to (Kahn's algorithm over forward and topic edges; components
/// on a cycle follow in name order).
fn stop_order(comps: &[Arc<Component>]) -> Vec<Arc<Component>> {
    let index: HashMap<&str, usize> = comps
        .iter()
        .enumerate()
        .map(|(i, c)| (&*c.name, i))
        .collect();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); comps.len()];
    let mut incoming = vec![0usize; comps.len()];
    for (i, c) in comps.iter().enumerate() {
        let mut targets: Vec<String> = c.subscribers.read().iter().map(|s| s.to_string()).collect();
        if let Some(to) = c.spec.forwards_to() {
            targets.push(to.to_string());
        }
        for t in targets {
            if let Some(&j) = index.get(t.as_str()) {
                edges[i].push(j);
                incoming[j] += 1;
            }
        }
    }
    let mut ready: Vec<usize> = (0..comps.len()).filter(|&i| incoming[i] == 0).collect();
    ready.sort_by(|a, b| comps[*b].name.cmp(&comps[*a].name));
    let mut order = Vec::with_capacity(comps.len());
    let mut seen = vec![false; comps.len()];
    while let Some(i) = ready.pop() {
        seen[i] = true;
        order.push(comps[i].clone());
        for &j in &edges[i] {
            incoming[j] -= 1;
            if incoming[j] == 0 {
                ready.push(j);
            }
        }
    }
    let mut rest: Vec<usize> = (0..comps.len()).filter(|&i| !seen[i]).collect();
    rest.sort_by(|a, b| comps[*a].name.cmp(&comps[*b].name));
    order.extend(rest.into_iter().map(|i| comps[i].clone()));
    order
}
