//! The recorder task: drains completed operations into the [`Recorder`],
//! closes an interval every second (appending `latency.hlog`, rewriting a
//! partial `results.json`) and drives the live progress line.
//!
//! Completed operations reach it through a [`SampleSink`]: one buffer per
//! engine thread, which the recorder swaps out every [`DRAIN_EVERY`]. The
//! engine's workers hand samples over in batches (and before they wait), so
//! a sample costs a push onto a local vector — no channel message, no lock
//! and no wake-up of the recorder per operation.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gauntlet_recorder::{IntervalResult, Recorder, RunMeta, RunResults, Sample};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{EngineCounters, process_cpu};

/// Where the recorder shows the run's progress (the command line's bar or
/// lines; nothing in tests).
pub trait Progress: Send {
    /// Shows the interval that just closed, `elapsed` after the run's start.
    fn update(
        &mut self,
        elapsed: Duration,
        interval: &IntervalResult,
        errors_total: u64,
        in_flight: u64,
    );
    /// The run is over.
    fn finish(&self);
}

/// No progress shown.
pub struct Silent;

impl Progress for Silent {
    fn update(&mut self, _: Duration, _: &IntervalResult, _: u64, _: u64) {}
    fn finish(&self) {}
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
    mut progress: impl Progress,
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
                if let Err(e) = gauntlet_recorder::files::write_json(&results_path, &partial) {
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
