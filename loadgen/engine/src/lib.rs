//! Gauntlet's load engine: it starts operations at their intended times and
//! records how long each took, and knows nothing about any system.
//!
//! - [`open`] — the open model (arrival rate): every operation has an
//!   intended start from its phase's schedule ([`schedule`]) and its latency
//!   counts from it, so a stalled system cannot slow the arrivals down.
//! - [`closed`] — the closed model: goose users that wait for each answer.
//! - [`recording`] — the [`SampleSink`](recording::SampleSink) the engines
//!   write completed operations to and the recorder task that turns them
//!   into intervals, `latency.hlog` and partial `results.json`.
//! - The connection kinds an operation runs on, one set per engine thread
//!   ([`Connections`]): [`http`] (keep-alive HTTP/1.1) and [`ws`]
//!   (WebSocket).
//!
//! What an operation *does* is the drivers' business (crate
//! `gauntlet-drivers`): the engine sees it only through [`Operation`]. It
//! must never depend on a driver, a stack or a scenario's catalog.

use std::future::Future;
use std::time::Duration;

use gauntlet_recorder::Outcome;
use tokio::time::Instant;

pub mod closed;
pub mod counters;
pub mod http;
pub mod open;
pub mod recording;
pub mod schedule;
pub mod ws;

pub use counters::{ENGINE_LATE_LIMIT, EngineCounters, process_cpu};
pub use recording::{Progress, SampleSink};
pub use schedule::{Phase, Segment};

/// The connections an operation may use, one set per engine thread (each
/// kind pools its connections per endpoint; connections belong to the
/// runtime that opened them).
#[derive(Default)]
pub struct Connections {
    pub http: http::Client,
    pub ws: ws::Client,
}

/// What a step of a chain reports: the index it is recorded under, its
/// outcome, when it started and when it ended.
pub type StepRecord<'a> = dyn FnMut(usize, Outcome, Instant, Instant) + Send + 'a;

/// An operation the engine runs, prepared once before the run by a driver.
/// The engine times it and bounds it with the scenario's timeout; what it
/// sends, and what counts as success, is the driver's.
pub trait Operation: Send + Sync + 'static {
    /// What a successful action hands to its chained steps.
    type Chain: Default + Send;

    /// Runs the operation's action once; what it got is left in `chain`.
    fn execute<'a>(
        &'a self,
        conns: &'a Connections,
        chain: &'a mut Self::Chain,
    ) -> impl Future<Output = Outcome> + Send + 'a;

    /// Whether the operation has chained steps (`then:`).
    fn has_steps(&self) -> bool;

    /// The span the action's latency measures, when the action itself
    /// says (a derived measurement, e.g. a notification's fan-out after
    /// the commit that triggered it); `None` (the default): from the
    /// intended start (and, for service time, the actual send) to the end.
    fn measured(_chain: &Self::Chain) -> Option<(Instant, Instant)> {
        None
    }

    /// Runs the chained steps after a successful action, each bounded by
    /// `timeout`; `record` is called once per request a step makes.
    fn run_steps<'a>(
        &'a self,
        conns: &'a Connections,
        chain: Self::Chain,
        timeout: Duration,
        record: &'a mut StepRecord<'_>,
    ) -> impl Future<Output = ()> + Send + 'a;
}

/// What the engine needs of a plan: the phases' schedules and mixes, each
/// operation's name and weight, and the run's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub phases: Vec<Phase>,
    /// Name and weight of each operation, in the order of the operations
    /// handed to the engine.
    pub operations: Vec<(String, u32)>,
    /// In-flight slots of the open model.
    pub max_in_flight: usize,
    /// Longest an operation may take before it counts as a `timeout`.
    pub timeout: Duration,
    /// A start later than this after its intended start is late.
    pub late_after: Duration,
    /// Closed model: a user's wait after each operation.
    pub think_time: Option<Duration>,
    pub seed: u64,
}

impl Load {
    /// Each phase's operation weights, in phase order.
    pub fn phase_weights(&self) -> Vec<Vec<u32>> {
        self.phases.iter().map(|p| p.weights.clone()).collect()
    }

    pub fn total_duration(&self) -> Duration {
        self.phases.iter().map(|p| p.duration).sum()
    }
}
