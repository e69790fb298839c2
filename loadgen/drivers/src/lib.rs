//! Gauntlet's drivers: what an operation of a scenario *does* to a system,
//! one module per system, behind one interface.
//!
//! A driver prepares an operation once from its scenario action
//! ([`prepare`]: paths, generators and headers built before the run, so a
//! request costs a payload draw, a request and a response check), performs
//! one request on the engine's connections ([`Call::perform`]), and yields
//! the outcome, what the next chained step needs (in the [`Chain`]) and the
//! history events the checkers read ([`history::Tap`]). The engine sees a
//! prepared operation only as a [`gauntlet_engine::Operation`].
//!
//! Systems: [`fabric`] (the event fabric's HTTP API), [`actors`] (the actor
//! node's), [`reflow`] (a Reflow node's), [`tracing`] (the tracing server's WebSocket protocol),
//! [`postgres`] and [`redis`] (one statement or command) and [`http`] (any
//! HTTP service). Adding one is a module implementing [`Call`], a variant of
//! [`SystemCall`] and an arm in [`prepare_call`] and [`setup`] (see
//! ARCHITECTURE.md, "How to add a system to Gauntlet"). Also here: the data
//! generators ([`data`]), the control path's client ([`control`]) and the
//! history of checked operations ([`history`]).
//!
//! A driver never starts, stops or signals a service: it must not depend on
//! a stack. It reaches a service through a [`Target`], whose endpoint may
//! move during the run.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gauntlet_engine::{Connections, Operation, StepRecord, http as engine_http};
use gauntlet_recorder::Outcome;
use gauntlet_scenario::Action;
use tokio::time::Instant;

pub mod actors;
pub mod control;
pub mod data;
pub mod fabric;
pub mod history;
pub mod http;
pub mod pool;
pub mod postgres;
pub mod redis;
pub mod reflow;
pub mod request;
pub mod target;
pub mod tracing;

pub use target::Target;

/// A chained step with its resolved target.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    /// Recorded as `OPERATION.STEP`.
    pub name: String,
    pub action: Action,
    pub service: String,
    /// Index of the step's name among the recorded names.
    pub record_as: usize,
}

/// One operation of the mix with its resolved target.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedOperation {
    pub name: String,
    pub weight: u32,
    pub action: Action,
    /// The service (by scenario name) the operation is sent to.
    pub service: String,
    /// Steps run after the action succeeds.
    pub steps: Vec<PlannedStep>,
}

impl PlannedOperation {
    /// The action and each step's, with the service each goes to.
    pub fn actions(&self) -> impl Iterator<Item = (&Action, &str)> {
        std::iter::once((&self.action, self.service.as_str()))
            .chain(self.steps.iter().map(|s| (&s.action, s.service.as_str())))
    }
}

/// What one request hands to the next step of its chain, whatever the
/// system: the items it got (leased jobs with their lease), the key it used
/// (a KV key, a component, a trace), the position it reached (an offset).
#[derive(Debug, Default)]
pub struct Chain {
    /// The operation's request number (generators draw from it).
    pub seq: u64,
    /// Items to act on one by one, each with an optional token (a lease).
    pub items: VecDeque<(String, Option<String>)>,
    pub key: Option<String>,
    pub position: Option<u64>,
    /// The history, when the scenario has `checks:`.
    pub tap: Option<Arc<history::Tap>>,
    /// The span the operation's latency measures, when the driver derives
    /// it (`tracing.subscribe` with `from: commit`); see
    /// [`Operation::measured`].
    pub measured: Option<(Instant, Instant)>,
}

/// One prepared request of a system: the interface a driver implements.
pub trait Call: Send + Sync {
    /// Performs one request on the engine's connections; what it got goes
    /// into `chain`, its history events through `chain.tap`.
    fn perform<'a>(
        &'a self,
        conns: &'a Connections,
        chain: &'a mut Chain,
    ) -> impl Future<Output = Outcome> + Send + 'a;

    /// As a chained step: how many requests it makes with what `chain`
    /// holds (0 ends the chain here). One by default.
    fn step_requests(&self, _chain: &Chain) -> usize {
        1
    }
}

/// A prepared request of any system: one variant per system, so a request
/// is dispatched without a boxed future.
pub enum SystemCall {
    Fabric(fabric::FabricCall),
    Actors(actors::ActorsCall),
    Tracing(tracing::TracingCall),
    Reflow(reflow::ReflowCall),
    Postgres(postgres::PostgresCall),
    Redis(redis::RedisCall),
    Http(http::HttpCall),
}

impl Call for SystemCall {
    async fn perform(&self, conns: &Connections, chain: &mut Chain) -> Outcome {
        match self {
            SystemCall::Fabric(c) => c.perform(conns, chain).await,
            SystemCall::Actors(c) => c.perform(conns, chain).await,
            SystemCall::Tracing(c) => c.perform(conns, chain).await,
            SystemCall::Reflow(c) => c.perform(conns, chain).await,
            SystemCall::Postgres(c) => c.perform(conns, chain).await,
            SystemCall::Redis(c) => c.perform(conns, chain).await,
            SystemCall::Http(c) => c.perform(conns, chain).await,
        }
    }

    fn step_requests(&self, chain: &Chain) -> usize {
        match self {
            SystemCall::Fabric(c) => c.step_requests(chain),
            SystemCall::Actors(c) => c.step_requests(chain),
            SystemCall::Tracing(c) => c.step_requests(chain),
            SystemCall::Reflow(c) => c.step_requests(chain),
            SystemCall::Postgres(c) => c.step_requests(chain),
            SystemCall::Redis(c) => c.step_requests(chain),
            SystemCall::Http(c) => c.step_requests(chain),
        }
    }
}

/// State shared by the operations of a run: the templates' named counters
/// and each system's own (the fabric's known offsets and group commits).
#[derive(Default)]
pub struct Shared {
    pub counters: data::Counters,
    pub fabric: fabric::FabricState,
    pub actors: actors::ActorsState,
    pub tracing: tracing::TracingState,
}

/// Where and how an action is prepared.
pub struct PrepareAt<'a> {
    /// The service, by scenario name.
    pub service: &'a str,
    pub target: Target,
    /// The resource the step before named (inherited by a step naming none).
    pub previous: Option<&'a str>,
    pub seed: u64,
    /// The generator stream of this action (operation and step).
    pub stream: u64,
    pub shared: &'a Shared,
    /// Every service's target by scenario name (an action that reaches a
    /// second service: `tracing.subscribe`'s `publish_via`).
    pub targets: &'a dyn Fn(&str) -> Target,
}

/// Prepares one action on its system's driver.
pub fn prepare_call(action: &Action, at: &PrepareAt) -> Result<SystemCall, String> {
    Ok(match action {
        Action::Fabric(a) => SystemCall::Fabric(fabric::prepare(a, at)?),
        Action::Actors(a) => SystemCall::Actors(actors::prepare(a, at)?),
        Action::Tracing(a) => SystemCall::Tracing(tracing::prepare(a, at)?),
        Action::Reflow(a) => SystemCall::Reflow(reflow::prepare(a, at)?),
        Action::Postgres(q) => SystemCall::Postgres(postgres::prepare(q, at)?),
        Action::Redis(c) => SystemCall::Redis(redis::prepare(c, at)?),
        Action::Http(h) => SystemCall::Http(http::prepare(h, at)?),
    })
}

/// Creates what an operation's actions need before the load starts (the
/// fabric's streams, queues and KV stores); `targets` gives each service's
/// [`Target`] by scenario name.
pub async fn setup(
    client: &engine_http::Client,
    op: &PlannedOperation,
    targets: &dyn Fn(&str) -> Target,
) -> Result<(), String> {
    let mut previous: Option<&str> = None;
    for (action, service) in op.actions() {
        let resource = resource_of(action, previous);
        match action {
            Action::Fabric(a) => {
                fabric::setup(client, a, resource, &targets(service), &op.name).await?;
            }
            // The actor node's topology is the scenario's `setup.actors`
            // (`actors::setup`); its operations create nothing beforehand.
            // The tracing server, PostgreSQL and Redis need nothing per
            // operation (`setup.postgres` is the scenario's).
            Action::Actors(_)
            | Action::Reflow(_)
            | Action::Tracing(_)
            | Action::Postgres(_)
            | Action::Redis(_)
            | Action::Http(_) => {}
        }
        previous = resource;
    }
    Ok(())
}

/// An operation ready to run: its action and its chained steps.
pub struct Prepared {
    head: SystemCall,
    /// Each step with the index it is recorded under.
    steps: Vec<(usize, SystemCall)>,
    seq: AtomicU64,
    /// Records checked operations in the history (`checks:` only).
    tap: Option<Arc<history::Tap>>,
}

/// Why preparing an operation failed (a header the HTTP stack refuses).
#[derive(Debug, thiserror::Error)]
#[error("operation `{operation}`: {message}")]
pub struct PrepareError {
    pub operation: String,
    pub message: String,
}

/// The resource an action touches, inherited along a chain.
fn resource_of<'a>(action: &'a Action, previous: Option<&'a str>) -> Option<&'a str> {
    action.resource().map(|(_, name)| name).or(previous)
}

/// Prepares an operation. `targets` gives each service's [`Target`] by
/// scenario name; `index` numbers the operation so its generators draw
/// their own bytes.
pub fn prepare(
    op: &PlannedOperation,
    targets: &dyn Fn(&str) -> Target,
    seed: u64,
    index: usize,
    shared: &Shared,
) -> Result<Prepared, PrepareError> {
    let error = |message: String| PrepareError {
        operation: op.name.clone(),
        message,
    };
    let stream_id = |step: usize| ((index as u64) << 8) | step as u64;
    let head = prepare_call(
        &op.action,
        &PrepareAt {
            service: &op.service,
            target: targets(&op.service),
            previous: None,
            seed,
            stream: stream_id(0),
            shared,
            targets,
        },
    )
    .map_err(error)?;
    let mut previous = resource_of(&op.action, None);
    let mut steps = Vec::new();
    for (i, step) in op.steps.iter().enumerate() {
        let call = prepare_call(
            &step.action,
            &PrepareAt {
                service: &step.service,
                target: targets(&step.service),
                previous,
                seed,
                stream: stream_id(i + 1),
                shared,
                targets,
            },
        )
        .map_err(error)?;
        previous = resource_of(&step.action, previous);
        steps.push((step.record_as, call));
    }
    Ok(Prepared {
        head,
        steps,
        seq: AtomicU64::new(0),
        tap: None,
    })
}

impl Prepared {
    /// Records this operation's checked requests in the history.
    pub fn record_history(&mut self, tap: Arc<history::Tap>) {
        self.tap = Some(tap);
    }
}

impl Operation for Prepared {
    type Chain = Chain;

    /// Dispatches on the system here rather than through
    /// [`SystemCall::perform`]: one future level less per operation, which
    /// callgrind counts as ~250 instructions (two copies of the future)
    /// per request saved.
    async fn execute(&self, conns: &Connections, chain: &mut Chain) -> Outcome {
        chain.seq = self.seq.fetch_add(1, Ordering::Relaxed);
        chain.tap.clone_from(&self.tap);
        match &self.head {
            SystemCall::Fabric(c) => c.perform(conns, chain).await,
            SystemCall::Actors(c) => c.perform(conns, chain).await,
            SystemCall::Tracing(c) => c.perform(conns, chain).await,
            SystemCall::Reflow(c) => c.perform(conns, chain).await,
            SystemCall::Postgres(c) => c.perform(conns, chain).await,
            SystemCall::Redis(c) => c.perform(conns, chain).await,
            SystemCall::Http(c) => c.perform(conns, chain).await,
        }
    }

    fn has_steps(&self) -> bool {
        !self.steps.is_empty()
    }

    fn measured(chain: &Chain) -> Option<(Instant, Instant)> {
        chain.measured
    }

    /// Runs the chained steps after a successful action, one request at a
    /// time (an ack per job leased), each bounded by `timeout`. The chain
    /// stops after a step with a failed request, or at a step with nothing
    /// to act on (a reserve that found the queue empty).
    async fn run_steps(
        &self,
        conns: &Connections,
        mut chain: Chain,
        timeout: Duration,
        record: &mut StepRecord<'_>,
    ) {
        for (record_as, call) in &self.steps {
            let requests = call.step_requests(&chain);
            if requests == 0 {
                return;
            }
            let mut failed = false;
            for _ in 0..requests {
                let start = Instant::now();
                let outcome = tokio::time::timeout(timeout, call.perform(conns, &mut chain))
                    .await
                    .unwrap_or_else(|_| Outcome::Error("timeout".to_owned()));
                failed |= outcome != Outcome::Ok;
                record(*record_as, outcome, start, Instant::now());
            }
            if failed {
                return;
            }
        }
    }
}
