//! A component: its mailbox, its state, and the task that runs its
//! behaviour under supervision.
//!
//! The task takes envelopes in order. For a batch it steps every message
//! through the behaviour inside `catch_unwind`; a panic fails *that*
//! message (answered `handler_failed` to whoever waits on it), counts a
//! restart and re-initialises the behaviour per the restart policy — the
//! mailbox, and the rest of the batch, survive. More restarts than
//! `max_restarts` within `within_seconds` (or any panic of a `temporary`)
//! end the component as `failed`: everything still queued is answered
//! failed, later sends are refused, and the node keeps running.
//!
//! Then the batch moves on: a `forward` hands the handled messages to the
//! next stage (waiting for room: backpressure), a `topic` to every
//! subscriber (one shared batch), and the ends of paths settle the
//! batch's completion. A `counter` settles only after its totals were
//! written to the data directory (group commit over the batches queued
//! together), so an acknowledged message is never lost to a kill -9.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::error::{ApiError, Code};
use crate::mailbox::{Envelope, Mailbox};
use crate::message::{Batch, Completion, Message};
use crate::node::Shared;
use crate::spec::{Behavior, Capability, ComponentSpec, Restart};
use crate::store::{CounterData, KeyTotals};

/// A component's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Running = 0,
    Restarting = 1,
    Stopping = 2,
    Stopped = 3,
    Failed = 4,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Restarting => "restarting",
            // Stopping is reported as `stopped`: it accepts nothing new.
            State::Stopping | State::Stopped => "stopped",
            State::Failed => "failed",
        }
    }
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Running,
            1 => State::Restarting,
            2 => State::Stopping,
            3 => State::Stopped,
            _ => State::Failed,
        }
    }
}

/// A test-only fault (`AIRSSYS_TEST_FAULTS=1`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fault {
    /// Panic on the message after this many more handled.
    pub panic_after: Option<u64>,
    /// Panic again every `panic_after + 1` messages.
    pub repeat: bool,
    /// Sleep this long before handling the next batch (a stall: no error).
    pub stall_ms: Option<u64>,
}

pub struct Component {
    pub name: Arc<str>,
    pub spec: Arc<ComponentSpec>,
    pub mailbox: Mailbox,
    state: AtomicU8,
    handled: AtomicU64,
    restarts: AtomicU64,
    failed: AtomicU64,
    /// A topic's subscribers, by name.
    pub subscribers: RwLock<Vec<Arc<str>>>,
    /// A counter's totals (shared with the status endpoint).
    pub counter: Option<Mutex<CounterData>>,
    fault: Mutex<Fault>,
    fault_set: AtomicBool,
    capabilities: Vec<Capability>,
}

/// A component's status as the API reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub name: String,
    pub behavior: &'static str,
    pub state: &'static str,
    pub mailbox_depth: usize,
    pub handled: u64,
    pub restarts: u64,
    pub failed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<std::collections::HashMap<String, KeyTotals>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribers: Option<Vec<String>>,
}

impl Component {
    /// Builds a component and the receiver its task will run on.
    pub fn new(name: &str, spec: ComponentSpec, counter: Option<CounterData>) -> Arc<Component> {
        let mailbox = Mailbox::new(spec.runtime.message_queue_size);
        let counter =
            matches!(spec.behavior, Behavior::Counter).then(|| counter.unwrap_or_default());
        let handled = counter.as_ref().map_or(0, |c| c.total);
        let capabilities = spec.capabilities().unwrap_or_default();
        Arc::new(Component {
            name: name.into(),
            spec: Arc::new(spec),
            mailbox,
            state: AtomicU8::new(State::Running as u8),
            handled: AtomicU64::new(handled),
            restarts: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            subscribers: RwLock::new(Vec::new()),
            counter: counter.map(Mutex::new),
            fault: Mutex::new(Fault::default()),
            fault_set: AtomicBool::new(false),
            capabilities,
        })
    }

    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// Whether the component takes new messages.
    pub fn accepts(&self) -> bool {
        matches!(self.state(), State::Running | State::Restarting)
    }

    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    pub fn set_fault(&self, fault: Fault) {
        *self.fault.lock() = fault;
        self.fault_set.store(true, Ordering::Release);
    }

    pub fn status(&self) -> Status {
        Status {
            name: self.name.to_string(),
            behavior: self.spec.behavior.kind(),
            state: self.state().as_str(),
            mailbox_depth: self.mailbox.depth(),
            handled: self.handled(),
            restarts: self.restarts(),
            failed: self.failed.load(Ordering::Relaxed),
            keys: self.counter.as_ref().map(|c| c.lock().keys.clone()),
            subscribers: matches!(self.spec.behavior, Behavior::Topic).then(|| {
                self.subscribers
                    .read()
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            }),
        }
    }
}

/// The task of one component.
pub(crate) struct Runner {
    comp: Arc<Component>,
    shared: Arc<Shared>,
    /// Restart instants inside the intensity window.
    window: VecDeque<Instant>,
    /// The armed fault: messages left before a panic.
    panic_in: Option<u64>,
    fault: Fault,
    /// Batches a counter handled whose completions wait for its checkpoint.
    unsettled: Vec<(Arc<Completion>, u64, Instant)>,
    dirty: bool,
    effect: Option<Box<EffectSink>>,
}

enum EffectSink {
    File(tokio::fs::File),
    Tcp(tokio::net::TcpStream),
}

/// Per-message outcome of a step.
enum Step {
    Ok,
    Panicked,
}

/// The most batches a counter groups under one checkpoint.
const GROUP: usize = 256;

impl Runner {
    pub(crate) fn new(comp: Arc<Component>, shared: Arc<Shared>) -> Runner {
        Runner {
            comp,
            shared,
            window: VecDeque::new(),
            panic_in: None,
            fault: Fault::default(),
            unsettled: Vec::new(),
            dirty: false,
            effect: None,
        }
    }

    pub(crate) async fn run(mut self) {
        let is_counter = self.comp.counter.is_some();
        while let Some(env) = self.comp.mailbox.recv().await {
            let mut stop = self.handle(env).await;
            if is_counter {
                let mut n = 1;
                while stop.is_none() && n < GROUP {
                    match self.comp.mailbox.try_recv() {
                        Some(env) => stop = self.handle(env).await,
                        None => break,
                    }
                    n += 1;
                }
                Box::pin(self.checkpoint()).await;
            }
            if let Some(done) = stop {
                Box::pin(self.finish(State::Stopped)).await;
                let _ = done.send(());
                return;
            }
            if self.comp.state() == State::Failed {
                Box::pin(self.finish(State::Failed)).await;
                return;
            }
        }
        // Closed from outside.
        Box::pin(self.finish(State::Stopped)).await;
    }

    /// Handles one envelope; returns the stop reply if it was a stop.
    async fn handle(&mut self, env: Envelope) -> Option<tokio::sync::oneshot::Sender<()>> {
        match env {
            Envelope::Batch(batch) => {
                self.comp.mailbox.taken(batch.len());
                self.batch(batch).await;
                None
            }
            Envelope::Request(req) => {
                let crate::mailbox::Request { message, reply } = *req;
                let answer = Box::pin(self.request(message)).await;
                let _ = reply.send(answer);
                None
            }
            Envelope::Stop(done) => Some(done),
        }
    }

    fn arm_fault(&mut self) {
        if self.comp.fault_set.swap(false, Ordering::AcqRel) {
            self.fault = *self.comp.fault.lock();
            self.panic_in = self.fault.panic_after;
        }
    }

    /// The part of handling a message that user code would run: where a
    /// handler panics.
    fn step(&mut self, m: &Message) {
        if let Some(left) = self.panic_in {
            if left == 0 {
                self.panic_in = if self.fault.repeat {
                    self.fault.panic_after
                } else {
                    None
                };
                panic!(
                    "test fault: component `{}` panics after {} messages",
                    self.comp.name,
                    self.fault.panic_after.unwrap_or(0)
                );
            }
            self.panic_in = Some(left - 1);
        }
        if let Some(counter) = &self.comp.counter {
            let mut c = counter.lock();
            c.total += 1;
            let key: std::borrow::Cow<'_, str> = match &m.key {
                Some(k) => String::from_utf8_lossy(k),
                None => std::borrow::Cow::Borrowed(""),
            };
            // Look up before inserting: no allocation for a key already counted.
            let t = match c.keys.get_mut(&*key) {
                Some(t) => t,
                None => c.keys.entry(key.into_owned()).or_default(),
            };
            t.count += 1;
            let numeric = m
                .payload
                .first()
                .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'-' | b' '));
            if let Some(v) = numeric
                .then(|| std::str::from_utf8(&m.payload).ok())
                .flatten()
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite())
            {
                // A sum that would overflow stays where it was: totals are
                // always finite (JSON, and so the counter's log, has no inf).
                let sum = t.sum + v;
                if sum.is_finite() {
                    t.sum = sum;
                }
            }
            self.dirty = true;
        }
    }

    fn guarded_step(&mut self, m: &Message) -> Step {
        match catch_unwind(AssertUnwindSafe(|| self.step(m))) {
            Ok(()) => Step::Ok,
            Err(_) => Step::Panicked,
        }
    }

    async fn stall(&mut self) {
        if let Some(ms) = self.fault.stall_ms.take() {
            tracing::warn!(component = %self.comp.name, stall_ms = ms, "test fault: stalling");
            Box::pin(tokio::time::sleep(Duration::from_millis(ms))).await;
        }
    }

    async fn batch(&mut self, batch: Batch) {
        self.arm_fault();
        self.stall().await;
        let n = batch.len();
        let mut failed: Vec<usize> = Vec::new();
        // One unwind guard per run of messages, not per message: the loop
        // stays tight, and after a panic it resumes past the message that
        // panicked (which is failed) with the restarted behaviour.
        let mut next = 0;
        while next < n {
            if self.comp.state() == State::Failed {
                failed.extend(next..n);
                break;
            }
            let mut at = next;
            // Without an armed fault or per-message state (a counter's
            // keys), handling a message is counting it: no per-message call.
            if self.panic_in.is_none() && self.comp.counter.is_none() {
                break;
            }
            let run = catch_unwind(AssertUnwindSafe(|| {
                while at < n {
                    self.step(&batch.messages[at]);
                    at += 1;
                }
            }));
            match run {
                Ok(()) => next = n,
                Err(_) => {
                    failed.push(at);
                    self.on_panic();
                    next = at + 1;
                }
            }
        }
        let ok = (n - failed.len()) as u64;
        self.comp.handled.fetch_add(ok, Ordering::Relaxed);
        if !failed.is_empty() {
            self.fail(&batch, failed.len() as u64, &self.panic_error());
        }
        if ok == 0 {
            return;
        }
        let messages: Arc<[Message]> = if failed.is_empty() {
            batch.messages.clone()
        } else {
            batch
                .messages
                .iter()
                .enumerate()
                .filter(|(i, _)| failed.binary_search(i).is_err())
                .map(|(_, m)| m.clone())
                .collect()
        };
        let out = Batch {
            messages,
            done: batch.done,
            enqueued: batch.enqueued,
            hops: batch.hops.saturating_add(1),
        };
        match &self.comp.spec.behavior {
            Behavior::Forward { to } => {
                let to = to.clone();
                Box::pin(self.forward(out, &to)).await;
            }
            Behavior::Topic => Box::pin(self.publish(out)).await,
            Behavior::FileWriter { path } => {
                let path = path.clone();
                Box::pin(self.effect_file(out, &path)).await;
            }
            Behavior::Caller { address } => {
                let address = address.clone();
                Box::pin(self.effect_call(out, &address)).await;
            }
            Behavior::Counter => {
                if let Some(done) = out.done {
                    self.unsettled.push((done, ok, out.enqueued));
                } else {
                    self.shared.delivered(None, ok, out.enqueued);
                }
            }
            Behavior::Echo | Behavior::Sink => {
                self.shared.delivered(out.done.as_deref(), ok, out.enqueued);
            }
        }
    }

    fn panic_error(&self) -> ApiError {
        ApiError::new(
            Code::HandlerFailed,
            format!(
                "the handler of `{}` panicked on the message",
                self.comp.name
            ),
        )
    }

    fn fail(&self, batch: &Batch, n: u64, error: &ApiError) {
        self.comp.failed.fetch_add(n, Ordering::Relaxed);
        self.shared
            .metrics
            .messages_failed
            .fetch_add(n, Ordering::Relaxed);
        if let Some(done) = &batch.done {
            done.failed(n, error);
        }
    }

    /// Supervision after a panic: restart within the intensity, or fail.
    fn on_panic(&mut self) {
        let sup = &self.comp.spec.supervision;
        let now = Instant::now();
        let window = Duration::from_secs(sup.within_seconds);
        while self
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.window.pop_front();
        }
        let give_up =
            sup.restart == Restart::Temporary || self.window.len() >= sup.max_restarts as usize;
        if give_up {
            self.comp.set_state(State::Failed);
            self.shared.metrics.event("failed");
            tracing::error!(
                component = %self.comp.name,
                restarts = self.comp.restarts(),
                policy = ?sup.restart,
                "component failed: restart budget spent"
            );
            self.shared.audit(
                &self.comp.name,
                "failed",
                json!({"restarts": self.comp.restarts()}),
            );
            return;
        }
        self.window.push_back(now);
        let _ = self.comp.state.compare_exchange(
            State::Running as u8,
            State::Restarting as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.comp.restarts.fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.restarts.fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.event("restarted");
        // The behaviour's state is re-initialised from what it keeps
        // (a counter's totals); the mailbox is untouched.
        self.effect = None;
        // A stop that arrived meanwhile wins.
        let _ = self.comp.state.compare_exchange(
            State::Restarting as u8,
            State::Running as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        tracing::warn!(component = %self.comp.name, restarts = self.comp.restarts(), "component restarted");
        self.shared.audit(
            &self.comp.name,
            "restarted",
            json!({"restarts": self.comp.restarts()}),
        );
    }

    async fn forward(&mut self, out: Batch, to: &str) {
        let (node, name) = crate::spec::split_target(to);
        if let Some(peer) = node.filter(|n| *n != self.shared.node_name) {
            return self.remote(out, peer, name).await;
        }
        let Some(next) = self.shared.lookup(name) else {
            let n = out.len() as u64;
            self.fail(&out, n, &ApiError::unknown(name));
            return;
        };
        self.hand_on(&next, out).await;
    }

    /// Hands a batch to `name` on the node `peer` (the cluster transport).
    async fn remote(&self, out: Batch, peer: &str, name: &str) {
        let n = out.len() as u64;
        let Some(cluster) = self.shared.cluster.get() else {
            let e = ApiError::unavailable(format!(
                "`{}` sends to `{peer}/{name}`, but this node has no cluster peers (--peer)",
                self.comp.name
            ));
            self.fail(&out, n, &e);
            return;
        };
        let done = out.done.clone();
        if let Err(e) = cluster.forward(peer, name, out).await {
            self.comp.failed.fetch_add(n, Ordering::Relaxed);
            self.shared
                .metrics
                .messages_failed
                .fetch_add(n, Ordering::Relaxed);
            if let Some(d) = done {
                d.failed(n, &e);
            }
        }
    }

    /// Admits a batch into the next component, waiting for room.
    async fn hand_on(&self, next: &Component, out: Batch) {
        if out.hops >= crate::message::MAX_HOPS {
            let n = out.len() as u64;
            let e = ApiError::invalid(format!(
                "the batch passed through {} components at `{}`: a forwarding loop",
                out.hops, self.comp.name
            ));
            self.fail(&out, n, &e);
            return;
        }
        if !next.accepts() {
            let n = out.len() as u64;
            self.fail(&out, n, &closed_error(next));
            return;
        }
        if let Err((_, out)) = next.mailbox.admit(out).await {
            let n = out.len() as u64;
            self.fail(&out, n, &closed_error(next));
        }
    }

    async fn publish(&mut self, out: Batch) {
        let subscribers: Vec<Arc<str>> = self.comp.subscribers.read().clone();
        let n = out.len() as u64;
        let k = subscribers.len() as u64;
        if k == 0 {
            // Published to nobody: handled by the topic, delivered nowhere.
            if let Some(done) = &out.done {
                done.absorbed(n);
            }
            return;
        }
        if let Some(done) = &out.done {
            done.owe(n * (k - 1));
        }
        for s in &subscribers {
            let copy = Batch {
                messages: out.messages.clone(),
                done: out.done.clone(),
                enqueued: out.enqueued,
                hops: out.hops,
            };
            if let (Some(peer), name) = crate::spec::split_target(s)
                && peer != self.shared.node_name
            {
                Box::pin(self.remote(copy, peer, name)).await;
                continue;
            }
            match self.shared.lookup(crate::spec::split_target(s).1) {
                Some(c) => self.hand_on(&c, copy).await,
                None => self.fail(&copy, n, &ApiError::unknown(s)),
            }
        }
    }

    fn denied(&self, out: &Batch, effect: &str, target: &str) {
        let n = out.len() as u64;
        self.shared
            .metrics
            .capability_denials
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(component = %self.comp.name, operation = effect, requested = target, "capability violation detected");
        self.shared.audit(
            &self.comp.name,
            "capability_denied",
            json!({"operation": effect, "requested": target, "messages": n}),
        );
        self.fail(
            out,
            n,
            &ApiError::new(
                Code::CapabilityDenied,
                format!(
                    "`{}` has no capability for {effect} `{target}`",
                    self.comp.name
                ),
            ),
        );
    }

    async fn effect_file(&mut self, out: Batch, path: &str) {
        if !self.comp.capabilities.iter().any(|c| c.allows_write(path)) {
            return self.denied(&out, "file_write", path);
        }
        let result = bounded(async {
            if self.effect.is_none() {
                let f = tokio::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)
                    .await?;
                self.effect = Some(Box::new(EffectSink::File(f)));
            }
            let Some(EffectSink::File(f)) = self.effect.as_deref_mut() else {
                unreachable!()
            };
            let mut buf = Vec::new();
            for m in out.messages.iter() {
                buf.extend_from_slice(&m.payload);
                buf.push(b'\n');
            }
            f.write_all(&buf).await?;
            f.flush().await
        })
        .await;
        self.settle_effect(out, result, "file_write", path);
    }

    async fn effect_call(&mut self, out: Batch, address: &str) {
        if !self
            .comp
            .capabilities
            .iter()
            .any(|c| c.allows_connect(address))
        {
            return self.denied(&out, "network_outbound", address);
        }
        let result = bounded(async {
            if self.effect.is_none() {
                let s = tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::net::TcpStream::connect(address),
                )
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
                s.set_nodelay(true)?;
                self.effect = Some(Box::new(EffectSink::Tcp(s)));
            }
            let Some(EffectSink::Tcp(s)) = self.effect.as_deref_mut() else {
                unreachable!()
            };
            let mut buf = Vec::new();
            for m in out.messages.iter() {
                buf.extend_from_slice(&m.payload);
                buf.push(b'\n');
            }
            s.write_all(&buf).await
        })
        .await;
        self.settle_effect(out, result, "network_outbound", address);
    }

    fn settle_effect(
        &mut self,
        out: Batch,
        result: std::io::Result<()>,
        effect: &str,
        target: &str,
    ) {
        match result {
            Ok(()) => self
                .shared
                .delivered(out.done.as_deref(), out.len() as u64, out.enqueued),
            Err(e) => {
                self.effect = None;
                let n = out.len() as u64;
                self.fail(
                    &out,
                    n,
                    &ApiError::unavailable(format!("{effect} `{target}` failed: {e}")),
                );
            }
        }
    }

    async fn request(&mut self, message: Message) -> Result<Bytes, ApiError> {
        if !self.comp.accepts() {
            return Err(closed_error(&self.comp));
        }
        self.arm_fault();
        self.stall().await;
        if let Step::Panicked = self.guarded_step(&message) {
            self.comp.failed.fetch_add(1, Ordering::Relaxed);
            self.on_panic();
            return Err(self.panic_error());
        }
        self.comp.handled.fetch_add(1, Ordering::Relaxed);
        Ok(match &self.comp.spec.behavior {
            Behavior::Echo => message.payload,
            Behavior::Counter => {
                self.checkpoint().await;
                let c = self.comp.counter.as_ref().expect("a counter has totals");
                let total = c.lock().total;
                Bytes::from(json!({"total": total}).to_string())
            }
            _ => Bytes::from(json!({"handled": self.comp.handled()}).to_string()),
        })
    }

    /// Writes a counter's totals, then settles the batches that waited on it.
    async fn checkpoint(&mut self) {
        if !self.dirty {
            self.settle_unsettled(None);
            return;
        }
        self.dirty = false;
        let result = match (&self.shared.store, &self.comp.counter) {
            (Some(store), Some(c)) => {
                let bytes = serde_json::to_vec(&*c.lock()).expect("totals serialise");
                Box::pin(store.save_counter(&self.comp.name, bytes)).await
            }
            _ => Ok(()),
        };
        match result {
            Ok(()) => self.settle_unsettled(None),
            Err(e) => {
                // Its totals now hold messages answered as failed: it stops
                // taking messages (a restart of the node brings back the
                // last durable totals) rather than count a retry twice.
                tracing::error!(component = %self.comp.name, error = %e, "cannot checkpoint the counter: it takes no more messages");
                self.comp.set_state(State::Failed);
                self.settle_unsettled(Some(ApiError::unavailable(format!(
                    "the counter's checkpoint failed: {e}"
                ))));
            }
        }
    }

    fn settle_unsettled(&mut self, error: Option<ApiError>) {
        for (done, n, enqueued) in self.unsettled.drain(..) {
            match &error {
                None => self.shared.delivered(Some(&done), n, enqueued),
                Some(e) => {
                    self.shared
                        .metrics
                        .messages_failed
                        .fetch_add(n, Ordering::Relaxed);
                    done.failed(n, e);
                }
            }
        }
    }

    /// Ends the task: checkpoint (post_stop), then everything still queued
    /// is answered failed.
    async fn finish(&mut self, state: State) {
        self.checkpoint().await;
        self.comp.set_state(state);
        self.comp.mailbox.close();
        let error = closed_error(&self.comp);
        while let Some(env) = self.comp.mailbox.try_recv() {
            match env {
                Envelope::Batch(b) => {
                    self.comp.mailbox.taken(b.len());
                    let n = b.len() as u64;
                    self.shared
                        .metrics
                        .dropped_unavailable
                        .fetch_add(n, Ordering::Relaxed);
                    self.fail(&b, n, &error);
                }
                Envelope::Request(req) => {
                    let _ = req.reply.send(Err(error.clone()));
                }
                Envelope::Stop(done) => {
                    let _ = done.send(());
                }
            }
        }
        self.comp.mailbox.wake_all();
    }
}

/// How long one effect (open and write a file, connect and write to a
/// peer) may take before its messages fail: a peer that stops reading must
/// not stall the component and everything upstream of it.
const EFFECT_TIMEOUT: Duration = Duration::from_secs(5);

async fn bounded(f: impl std::future::Future<Output = std::io::Result<()>>) -> std::io::Result<()> {
    tokio::time::timeout(EFFECT_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no progress within {} s", EFFECT_TIMEOUT.as_secs()),
            ))
        })
}

/// The error for a component that no longer takes messages.
pub fn closed_error(c: &Component) -> ApiError {
    match c.state() {
        State::Failed => ApiError::new(
            Code::HandlerFailed,
            format!(
                "component `{}` failed after {} restarts and takes no messages",
                c.name,
                c.restarts()
            ),
        ),
        _ => ApiError::unavailable(format!("component `{}` is stopped", c.name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in [
            State::Running,
            State::Restarting,
            State::Stopping,
            State::Stopped,
            State::Failed,
        ] {
            assert_eq!(State::from_u8(s as u8), s);
        }
    }
}

#[cfg(test)]
mod size_probe {
    #[tokio::test]
    async fn the_task_of_a_component_stays_small() {
        let node = crate::node::Node::new(crate::node::NodeOptions::default());
        let c = super::Component::new(
            "x",
            crate::spec::ComponentSpec::new(crate::spec::Behavior::Sink),
            None,
        );
        let r = super::Runner::new(c, node.shared_for_tests());
        let fut = r.run();
        // A spawn allocates the task: keep it within malloc's per-thread
        // cache (1 KiB), or spawning gets slower.
        let size = std::mem::size_of_val(&fut);
        assert!(
            size <= 1024,
            "the component task grew to {size} bytes: box the new rare path"
        );
    }
}
