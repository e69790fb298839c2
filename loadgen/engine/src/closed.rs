//! The closed model, run by goose: a number of users per phase (ramped
//! linearly), each running one operation, waiting for its answer, thinking,
//! and starting again.
//!
//! Each operation of the scenario is a goose scenario of one transaction,
//! weighted as the operation; the transaction runs the same prepared
//! [`Operation`](crate::Operation) as the open model (the drivers' code) on the
//! engine's connections, and records its sample into the same recorder
//! (HdrHistograms in µs; goose's own metrics bucket milliseconds). Goose's
//! report is written to `goose-report.html` in the run directory.
//!
//! In a closed model a user sends nothing while it waits, so a stalled
//! system receives less load and the stall shows in a few slow samples
//! only (coordinated omission); latency is measured from the send, and
//! `scheduled` equals `started`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gauntlet_recorder::{Outcome, Sample};
use goose::config::GooseConfiguration;
use goose::prelude::*;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::recording::SampleSink;
use crate::{Connections, EngineCounters, Load, Operation};

/// Goose's report, in the run directory.
pub const GOOSE_REPORT: &str = "goose-report.html";

/// Goose's test plan for the phases: `users,seconds` steps; each step ramps
/// linearly from the previous step's users (0 at first) over its time.
pub fn test_plan(load: &Load) -> String {
    let mut steps = Vec::new();
    let mut users = 0;
    for phase in &load.phases {
        let (from, to) = phase.users.unwrap_or((0, 0));
        if from != users {
            steps.push(format!("{from},0s"));
        }
        steps.push(format!("{to},{}s", phase.duration.as_secs()));
        users = to;
    }
    steps.push("0,0s".to_owned());
    steps.join(";")
}

struct Shared<O> {
    operations: Arc<Vec<O>>,
    conns: Connections,
    sink: Arc<SampleSink>,
    counters: Arc<EngineCounters>,
    run_start: Instant,
    /// Phase ends, from the run's start.
    phase_ends: Vec<Duration>,
    timeout: Duration,
}

impl<O: Operation> Shared<O> {
    fn phase_at(&self, since_start: Duration) -> usize {
        self.phase_ends
            .partition_point(|end| *end <= since_start)
            .min(self.phase_ends.len().saturating_sub(1))
    }

    async fn run_once(&self, op: usize) {
        let c = &*self.counters;
        c.scheduled.fetch_add(1, Ordering::Relaxed);
        c.started.fetch_add(1, Ordering::Relaxed);
        let now_in_flight = c.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        c.peak_in_flight.fetch_max(now_in_flight, Ordering::Relaxed);
        let sent = Instant::now();
        let mut chain = O::Chain::default();
        let prepared = &self.operations[op];
        let outcome =
            match tokio::time::timeout(self.timeout, prepared.execute(&self.conns, &mut chain))
                .await
            {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Error("timeout".to_owned()),
            };
        let done = Instant::now();
        let took = match O::measured(&chain) {
            Some((from, to)) => to.saturating_duration_since(from),
            None => done.saturating_duration_since(sent),
        }
        .as_micros() as u64;
        let phase = self.phase_at(sent.saturating_duration_since(self.run_start));
        let chained = outcome == Outcome::Ok && prepared.has_steps();
        self.sink.push(
            op,
            Sample {
                operation: op,
                phase,
                latency_us: took,
                service_us: took,
                late: false,
                outcome,
                completed_at: done.saturating_duration_since(self.run_start),
            },
        );
        if chained {
            // The user runs the steps before it thinks; each is recorded
            // as its own operation, timed from its own start.
            let mut record = |operation, outcome, start: Instant, end: Instant| {
                let us = end.saturating_duration_since(start).as_micros() as u64;
                self.sink.push(
                    op,
                    Sample {
                        operation,
                        phase,
                        latency_us: us,
                        service_us: us,
                        late: false,
                        outcome,
                        completed_at: end.saturating_duration_since(self.run_start),
                    },
                );
            };
            prepared
                .run_steps(&self.conns, chain, self.timeout, &mut record)
                .await;
        }
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs the plan's phases as goose users from `run_start`; returns when
/// the last phase ended (users finish the operation they are in), or soon
/// after `cancel` fires. A Ctrl-C that goose catches cancels `interrupt`
/// (the run's own token, of which `cancel` is a child).
#[allow(clippy::too_many_arguments)]
pub async fn run<O: Operation>(
    plan: &Load,
    operations: Arc<Vec<O>>,
    sink: Arc<SampleSink>,
    counters: Arc<EngineCounters>,
    run_start: Instant,
    run_dir: &Path,
    host: &str,
    cancel: CancellationToken,
    interrupt: CancellationToken,
) -> Result<(), String> {
    let mut end = Duration::ZERO;
    let phase_ends = plan
        .phases
        .iter()
        .map(|p| {
            end += p.duration;
            end
        })
        .collect();
    let shared = Arc::new(Shared {
        operations,
        conns: Connections::default(),
        sink,
        counters,
        run_start,
        phase_ends,
        timeout: plan.timeout,
    });
    let report = run_dir.join(GOOSE_REPORT);
    let report = report.to_string_lossy();
    let test_plan = test_plan(plan);
    let args = [
        "--host",
        host,
        "--test-plan",
        &test_plan,
        "--quiet",
        "--no-print-metrics",
        "--no-telnet",
        "--no-websocket",
        "--report-file",
        &report,
    ];
    let config = GooseConfiguration::parse_args_default(&args)
        .map_err(|e| format!("configuring goose ({}): {e}", args.join(" ")))?;
    let mut attack =
        GooseAttack::initialize_with_config(config).map_err(|e| format!("starting goose: {e}"))?;
    let think = plan.think_time;
    for (index, (name, weight)) in plan.operations.iter().enumerate() {
        let shared = shared.clone();
        let transaction: TransactionFunction = Arc::new(move |_user: &mut GooseUser| {
            let shared = shared.clone();
            Box::pin(async move {
                shared.run_once(index).await;
                Ok(())
            })
        });
        let mut scenario = Scenario::new(name)
            .set_weight(*weight as usize)
            .map_err(|e| format!("operation `{name}`: {e}"))?
            .register_transaction(Transaction::new(transaction).set_name(name));
        if let Some(think) = think.filter(|t| !t.is_zero()) {
            scenario = scenario
                .set_wait_time(think, think)
                .map_err(|e| format!("think time: {e}"))?;
        }
        attack = attack.register_scenario(scenario);
    }
    // goose installs its own Ctrl-C handler while it runs: a Ctrl-C stops
    // goose (a second one exits at once, and the services die with us).
    // Either way the run is marked interrupted.
    goose::reset_killswitch();
    let stop = cancel.clone();
    let watcher = tokio::spawn(async move {
        stop.cancelled().await;
        goose::trigger_killswitch("loadgen was interrupted");
    });
    let result = attack.execute().await;
    watcher.abort();
    if goose::is_killswitch_triggered() && !cancel.is_cancelled() {
        interrupt.cancel();
    }
    result.map(|_| ()).map_err(|e| format!("goose failed: {e}"))
}
