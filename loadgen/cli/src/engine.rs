//! The open-model engine: operations start at their intended times, whatever
//! the system under test does, so slow answers cannot slow the arrivals down
//! (no coordinated omission).
//!
//! One scheduler task walks every phase's arrival schedule. For each arrival
//! it picks an operation by weight (seeded, so the mix is the same every
//! run), takes a slot from the bounded in-flight pool and spawns the
//! operation. Latency is measured from the intended start; service time from
//! the actual send. A start later than `late_after` is counted late, and
//! classified: the engine fell behind while a slot was free (the load
//! generator was the bottleneck), or every slot was taken (the system could
//! not keep up).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gauntlet_recorder::{EngineStats, Outcome, Sample};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::driver::{Chain, HttpClient, Prepared};
use crate::plan::Plan;

/// Share of operations that may start late with a free slot before the run
/// is flagged as limited by the engine rather than the system.
pub const ENGINE_LATE_LIMIT: f64 = 0.01;

/// Live counters of the engine, read by the recorder for progress and partial results.
#[derive(Default)]
pub struct EngineCounters {
    pub scheduled: AtomicU64,
    pub started: AtomicU64,
    pub late: AtomicU64,
    pub late_engine: AtomicU64,
    pub late_in_flight_limit: AtomicU64,
    pub max_start_lag_us: AtomicU64,
    pub in_flight: AtomicU64,
    pub peak_in_flight: AtomicU64,
}

/// CPU time (user + system) this process has used so far.
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

impl EngineCounters {
    /// The counters as results data; `cpu` is the CPU the engine used so far.
    pub fn snapshot(&self, cpu: Duration) -> EngineStats {
        let started = self.started.load(Ordering::Relaxed);
        let late_engine = self.late_engine.load(Ordering::Relaxed);
        let cpu_ms = cpu.as_secs_f64() * 1_000.0;
        let share = if started > 0 {
            late_engine as f64 / started as f64
        } else {
            0.0
        };
        let bottleneck = (share > ENGINE_LATE_LIMIT && late_engine > 10).then(|| {
            format!(
                "{late_engine} operations ({:.1}%) started late while in-flight slots were free: the load generator, not the system, limited this run; lower the rate or give loadgen more CPU",
                share * 100.0
            )
        });
        EngineStats {
            scheduled: self.scheduled.load(Ordering::Relaxed),
            started,
            late: self.late.load(Ordering::Relaxed),
            late_engine,
            late_in_flight_limit: self.late_in_flight_limit.load(Ordering::Relaxed),
            max_start_lag_us: self.max_start_lag_us.load(Ordering::Relaxed),
            peak_in_flight: self.peak_in_flight.load(Ordering::Relaxed),
            cpu_ms,
            cpu_ms_per_1000_ops: if started > 0 {
                cpu_ms * 1_000.0 / started as f64
            } else {
                0.0
            },
            bottleneck,
        }
    }
}

/// Picks operations by weight (one weight table per phase), deterministically for a seed.
pub struct Mix {
    cumulative: Vec<Vec<u64>>,
    rng: ChaCha8Rng,
}

impl Mix {
    pub fn new(weights: &[Vec<u32>], seed: u64) -> Self {
        let cumulative = weights
            .iter()
            .map(|table| {
                let mut sum = 0u64;
                table
                    .iter()
                    .map(|w| {
                        sum += u64::from(*w);
                        sum
                    })
                    .collect()
            })
            .collect();
        Self {
            cumulative,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The index of the next operation in `phase`.
    pub fn pick(&mut self, phase: usize) -> usize {
        let cumulative = &self.cumulative[phase];
        let total = *cumulative.last().unwrap_or(&1);
        let x = self.rng.random_range(0..total.max(1));
        let op = cumulative.partition_point(|&c| c <= x);
        op.min(cumulative.len().saturating_sub(1))
    }
}

/// Runs every phase of the plan from `run_start`; returns when all started
/// operations have completed (or timed out), or soon after `cancel` fires.
pub async fn run(
    plan: &Plan,
    prepared: Arc<Vec<Prepared>>,
    client: HttpClient,
    samples: mpsc::UnboundedSender<Sample>,
    counters: Arc<EngineCounters>,
    run_start: Instant,
    cancel: CancellationToken,
) {
    let mut mix = Mix::new(&plan.phase_weights(), plan.seed);
    let pool = Arc::new(Semaphore::new(plan.max_in_flight));
    let late_after = plan.late_after;
    let timeout = plan.timeout;
    counters
        .scheduled
        .store(plan.total_arrivals(), Ordering::Relaxed);

    'phases: for (phase_index, phase) in plan.phases.iter().enumerate() {
        let phase_start = run_start + phase.start;
        for k in 0..phase.arrival_count() {
            let intended = phase_start + phase.arrival_offset(k);
            if intended > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(intended) => {}
                    _ = cancel.cancelled() => break 'phases,
                }
            } else if cancel.is_cancelled() {
                break 'phases;
            }
            let op = mix.pick(phase_index);
            let (permit, waited) = match pool.clone().try_acquire_owned() {
                Ok(permit) => (permit, false),
                Err(_) => {
                    let permit = tokio::select! {
                        p = pool.clone().acquire_owned() => p,
                        _ = cancel.cancelled() => break 'phases,
                    };
                    match permit {
                        Ok(p) => (p, true),
                        Err(_) => break 'phases,
                    }
                }
            };
            let sent_at = Instant::now();
            let lag = sent_at.saturating_duration_since(intended);
            let late = lag > late_after;
            counters.started.fetch_add(1, Ordering::Relaxed);
            counters
                .max_start_lag_us
                .fetch_max(lag.as_micros() as u64, Ordering::Relaxed);
            if late {
                counters.late.fetch_add(1, Ordering::Relaxed);
                if waited {
                    counters
                        .late_in_flight_limit
                        .fetch_add(1, Ordering::Relaxed);
                } else {
                    counters.late_engine.fetch_add(1, Ordering::Relaxed);
                }
            }
            let now_in_flight = counters.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            counters
                .peak_in_flight
                .fetch_max(now_in_flight, Ordering::Relaxed);

            let prepared = prepared.clone();
            let client = client.clone();
            let samples = samples.clone();
            let counters = counters.clone();
            tokio::spawn(async move {
                let sent = Instant::now();
                let mut chain = Chain::default();
                let outcome =
                    match tokio::time::timeout(timeout, prepared[op].execute(&client, &mut chain))
                        .await
                    {
                        Ok(outcome) => outcome,
                        Err(_) => Outcome::Error("timeout".to_owned()),
                    };
                let done = Instant::now();
                let chained = outcome == Outcome::Ok && prepared[op].has_steps();
                let _ = samples.send(Sample {
                    operation: op,
                    phase: phase_index,
                    latency_us: done.saturating_duration_since(intended).as_micros() as u64,
                    service_us: done.saturating_duration_since(sent).as_micros() as u64,
                    late,
                    outcome,
                    completed_at: done.saturating_duration_since(run_start),
                });
                if chained {
                    // Each step is timed from its own start.
                    prepared[op]
                        .run_steps(&client, chain, timeout, |operation, outcome, start, end| {
                            let us = end.saturating_duration_since(start).as_micros() as u64;
                            let _ = samples.send(Sample {
                                operation,
                                phase: phase_index,
                                latency_us: us,
                                service_us: us,
                                late: false,
                                outcome,
                                completed_at: end.saturating_duration_since(run_start),
                            });
                        })
                        .await;
                }
                counters.in_flight.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            });
        }
    }
    // Wait for every started operation: each ends by its own timeout.
    let all = u32::try_from(plan.max_in_flight).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(timeout + Duration::from_secs(1), pool.acquire_many(all)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_follows_weights_and_the_seed() {
        let mut a = Mix::new(&[vec![8, 2]], 42);
        let mut b = Mix::new(&[vec![8, 2]], 42);
        let picks: Vec<usize> = (0..10_000).map(|_| a.pick(0)).collect();
        let again: Vec<usize> = (0..10_000).map(|_| b.pick(0)).collect();
        assert_eq!(picks, again, "same seed, same mix");
        let first = picks.iter().filter(|&&p| p == 0).count();
        assert!((7_500..8_500).contains(&first), "{first}");
        let mut c = Mix::new(&[vec![8, 2]], 43);
        let other: Vec<usize> = (0..10_000).map(|_| c.pick(0)).collect();
        assert_ne!(picks, other);
    }

    #[test]
    fn a_single_operation_is_always_picked() {
        let mut m = Mix::new(&[vec![3]], 1);
        assert!((0..100).all(|_| m.pick(0) == 0));
    }

    #[test]
    fn each_phase_has_its_own_mix() {
        let mut m = Mix::new(&[vec![1, 0], vec![0, 1]], 1);
        assert!((0..100).all(|_| m.pick(0) == 0));
        assert!((0..100).all(|_| m.pick(1) == 1));
    }
}
