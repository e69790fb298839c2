//! The recorder task: drains completed operations into the [`Recorder`],
//! closes an interval every second (appending `latency.hlog`, rewriting a
//! partial `results.json`) and drives the live progress line.
//!
//! Completed operations reach it through a [`SampleSink`]: one buffer per
//! engine thread, which the recorder swaps out every [`DRAIN_EVERY`]. The
//! engine's workers hand samples over in batches (and before they wait), so
//! a sample costs a push onto a local vector — no channel message, no lock
//! and no wake-up of the recorder per operation.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gauntlet_recorder::{IntervalResult, Recorder, RunMeta, RunResults, Sample};
use gauntlet_reports::{human_rate, human_us};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::engine::{EngineCounters, process_cpu};
use crate::plan::Plan;
use crate::rundir;

/// Live progress: an indicatif bar on a terminal, a plain line every 5 s otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    phases: Vec<(String, Duration, Duration)>,
    last_plain: Option<std::time::Instant>,
    quiet: bool,
}

impl Progress {
    pub fn new(plan: &Plan, quiet: bool) -> Self {
        let total = plan.total_duration();
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(total.as_millis() as u64),
                ProgressDrawTarget::stderr(),
            );
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
            {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            phases: plan
                .phases
                .iter()
                .map(|p| (p.name.clone(), p.start, p.start + p.duration))
                .collect(),
            last_plain: None,
            quiet,
        }
    }

    fn phase_at(&self, elapsed: Duration) -> &str {
        self.phases
            .iter()
            .find(|(_, start, end)| elapsed >= *start && elapsed < *end)
            .map(|(name, ..)| name.as_str())
            .unwrap_or("draining")
    }

    /// Shows the interval just closed.
    pub fn update(
        &mut self,
        elapsed: Duration,
        interval: &IntervalResult,
        errors_total: u64,
        in_flight: u64,
    ) {
        let count: u64 = interval.operations.iter().map(|o| o.count).sum();
        let p99 = interval
            .operations
            .iter()
            .map(|o| o.latency_us.p99)
            .max()
            .unwrap_or(0);
        let line = format!(
            "phase {:<10} {:>6.1}s  rate {:>9}  p99 {:>8}  errors {}  in flight {}",
            self.phase_at(elapsed),
            elapsed.as_secs_f64(),
            human_rate(count as f64),
            human_us(p99),
            errors_total,
            in_flight,
        );
        if let Some(bar) = &self.bar {
            bar.set_position(elapsed.as_millis() as u64);
            bar.set_message(line);
        } else if !self.quiet
            && self
                .last_plain
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
        {
            eprintln!("{line}");
            self.last_plain = Some(std::time::Instant::now());
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// How often the recorder takes the samples buffered by the engine (so a
/// sample lands in the interval it completed in, give or take this much).
pub const DRAIN_EVERY: Duration = Duration::from_millis(10);

/// Completed operations on their way to the recorder: one buffer per
/// producer thread (`shard`); any shard index is valid (it wraps).
pub struct SampleSink {
    shards: Vec<Mutex<Vec<Sample>>>,
}

impl SampleSink {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Vec::with_capacity(4096)))
                .collect(),
        }
    }

    pub fn push(&self, shard: usize, sample: Sample) {
        let mut buf = self.shards[shard % self.shards.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        buf.push(sample);
    }

    /// Moves a batch of samples in, leaving `batch` empty.
    pub fn push_all(&self, shard: usize, batch: &mut Vec<Sample>) {
        if batch.is_empty() {
            return;
        }
        let mut buf = self.shards[shard % self.shards.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        buf.append(batch);
    }

    /// Takes every buffered sample, shard by shard.
    pub fn drain(&self, mut f: impl FnMut(Sample)) {
        for shard in &self.shards {
            let taken = {
                let mut buf = shard.lock().unwrap_or_else(|p| p.into_inner());
                if buf.is_empty() {
                    continue;
                }
                let capacity = buf.capacity();
                std::mem::replace(&mut *buf, Vec::with_capacity(capacity))
            };
            taken.into_iter().for_each(&mut f);
        }
    }
}

/// What the recorder task hands back when the samples stop.
pub struct Recorded {
    pub results: RunResults,
    pub write_error: Option<String>,
}

/// Runs until `done` fires (after the last sample was pushed); returns the
/// final results.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    mut recorder: Recorder,
    samples: Arc<SampleSink>,
    done: CancellationToken,
    counters: Arc<EngineCounters>,
    meta: RunMeta,
    run_start: Instant,
    cpu_start: Duration,
    results_path: PathBuf,
    mut progress: Progress,
) -> Recorded {
    let mut tick =
        tokio::time::interval_at(run_start + Duration::from_secs(1), Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_close = Duration::from_secs(1);
    let mut errors_total = 0u64;
    let mut write_error = None;
    let mut drain = tokio::time::interval(DRAIN_EVERY);
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let take = |recorder: &mut Recorder, errors_total: &mut u64| {
        samples.drain(|s| {
            if !matches!(s.outcome, gauntlet_recorder::Outcome::Ok) {
                *errors_total += 1;
            }
            recorder.record(&s);
        })
    };
    loop {
        tokio::select! {
            biased;
            _ = done.cancelled() => break,
            _ = drain.tick() => take(&mut recorder, &mut errors_total),
            _ = tick.tick() => {
                take(&mut recorder, &mut errors_total);
                let end = next_close;
                next_close += Duration::from_secs(1);
                match recorder.close_interval(end) {
                    Ok(interval) => progress.update(end, &interval, errors_total, counters.in_flight.load(Ordering::Relaxed)),
                    Err(e) => write_error = Some(format!("latency.hlog: {e}")),
                }
                let engine = counters.snapshot(process_cpu().saturating_sub(cpu_start));
                let partial = recorder.results(&meta, engine, false);
                if let Err(e) = rundir::write_json(&results_path, &partial) {
                    write_error = Some(format!("results.json: {e}"));
                }
            }
        }
    }
    take(&mut recorder, &mut errors_total);
    let end = run_start.elapsed();
    if let Err(e) = recorder.close_interval(end).and_then(|_| recorder.flush()) {
        write_error = Some(format!("latency.hlog: {e}"));
    }
    progress.finish();
    let engine = counters.snapshot(process_cpu().saturating_sub(cpu_start));
    Recorded {
        results: recorder.results(&meta, engine, true),
        write_error,
    }
}
