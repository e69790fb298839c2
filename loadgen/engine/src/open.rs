//! The open-model engine: operations start at their intended times, whatever
//! the system under test does, so slow answers cannot slow the arrivals down
//! (no coordinated omission).
//!
//! The run's arrivals are numbered across phases; `max_in_flight` workers
//! take the next number from one shared counter, wait for its intended start
//! (unless it has passed), run the operation and record it. Only two idle
//! workers per thread (the leaders) hold an arrival and sleep on a timer; the
//! other idle workers queue for the lead, so idle workers cost nothing and a
//! low rate costs one timer wake-up per arrival; an arrival already due is
//! taken without the lead. A worker is an
//! in-flight slot: when all are busy, the next arrival waits and starts late,
//! and its latency still counts from its intended start, so the backlog of a
//! stalled system is sent, never skipped. The operation of an arrival is
//! picked by weight (the phase's mix) from a hash of the seed and the
//! arrival's number, so the mix is the same every run whichever worker
//! takes it. An operation with chained steps (`then:`) runs them on the
//! same worker after its action succeeds; each step is recorded as its own
//! operation, timed from its own start.
//!
//! Workers run on `GAUNTLET_ENGINE_THREADS` (default 1) single-threaded
//! runtimes of their own: no task is spawned per operation, no timer is
//! registered per operation (each worker keeps one, see `within`), no wake-up
//! crosses threads, samples go to a per-thread buffer the recorder drains
//! (see `recording`), and requests use the engine's own HTTP client
//! (`crate::http`, `crate::ws`). A start later than `late_after` is counted late, and
//! classified: the worker was idle (it waited for the lead or for the
//! arrival) and still started late (the load generator was the bottleneck),
//! or it took the overdue arrival straight after finishing an operation, so
//! every slot was busy (the system could not keep up).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gauntlet_recorder::{Outcome, Sample};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::recording::SampleSink;
use crate::schedule::Phase;
use crate::{Connections, EngineCounters, Load, Operation};

/// Picks operations by weight (one weight table per phase),
/// deterministically for a seed and an arrival.
pub struct Mix {
    cumulative: Vec<Vec<u64>>,
    seed: u64,
}

/// SplitMix64: a fast, well-mixed hash of one word.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
            seed: mix64(seed),
        }
    }

    /// The operation of arrival `n` in `phase`.
    pub fn pick(&self, phase: usize, n: u64) -> usize {
        let cumulative = &self.cumulative[phase];
        let total = cumulative.last().copied().unwrap_or(1).max(1);
        let op = cumulative.partition_point(|&c| c <= mix64(self.seed ^ n) % total);
        op.min(cumulative.len().saturating_sub(1))
    }
}

/// The run's arrivals numbered across phases.
struct Schedule {
    /// (arrivals before this phase, phase start instant) per phase.
    starts: Vec<(u64, Instant)>,
    phases: Vec<Phase>,
    total: u64,
}

impl Schedule {
    fn new(load: &Load, run_start: Instant) -> Self {
        let mut before = 0;
        let starts = load
            .phases
            .iter()
            .map(|p| {
                let at = (before, run_start + p.start);
                before += p.arrival_count();
                at
            })
            .collect();
        Self {
            starts,
            phases: load.phases.clone(),
            total: before,
        }
    }

    /// Phase index and intended start of arrival `n`.
    fn at(&self, n: u64) -> Option<(usize, Instant)> {
        if n >= self.total {
            return None;
        }
        let phase = self.starts.partition_point(|(before, _)| *before <= n) - 1;
        let (before, start) = self.starts[phase];
        Some((phase, start + self.phases[phase].arrival_offset(n - before)))
    }
}

/// Idle workers per thread that hold an arrival and sleep until it is due.
/// Two, not one: the second arrival's timer is registered while the first
/// is pending, so it is never the earliest timer, and tokio's timer does not
/// wake its own thread through the event fd to recompute its deadline (one
/// `write` and one `epoll_wait` saved per arrival at low rates).
const LEADERS: usize = 2;

/// Samples a busy worker collects before handing them to the recorder.
const BATCH: usize = 32;

/// Longest a waiting worker sleeps before looking at the stop flag again.
const CANCEL_CHECK: Duration = Duration::from_millis(50);

/// Engine threads (`GAUNTLET_ENGINE_THREADS`, default 1).
pub fn engine_threads() -> usize {
    std::env::var("GAUNTLET_ENGINE_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

/// What every worker shares.
struct Shared<O> {
    schedule: Schedule,
    next: AtomicU64,
    mix: Mix,
    operations: Arc<Vec<O>>,
    sink: Arc<SampleSink>,
    counters: Arc<EngineCounters>,
    run_start: Instant,
    late_after: Duration,
    timeout: Duration,
    /// Set when the run's cancel token fires (cheaper to read per operation).
    stop: std::sync::atomic::AtomicBool,
}

async fn worker<O: Operation>(
    shared: Arc<Shared<O>>,
    conns: Arc<Connections>,
    leader: Arc<tokio::sync::Semaphore>,
    shard: usize,
) {
    let s = &*shared;
    let counters = &*s.counters;
    // Samples of this worker not yet handed to the recorder: handed over
    // every `BATCH` samples and whenever the worker is about to wait.
    let mut batch = Vec::with_capacity(BATCH);
    // This worker's operation timeout, one timer for all its operations
    // (see `within`).
    let deadline = tokio::time::sleep_until(Instant::now() + s.timeout);
    tokio::pin!(deadline);
    loop {
        // A few idle workers per thread (the leaders) take the next arrivals
        // and wait for them; the others wait for the lead without a timer, so
        // an arrival costs one timer wake-up however many workers are idle.
        // An arrival already due needs no lead: it is taken at once.
        // Idle: this worker waited for the lead or for the arrival, so a
        // slot was free. A late start then is the engine's fault; a late
        // start taken straight after an operation means every slot was busy.
        let mut waited = false;
        let peeked = s.next.load(Ordering::Relaxed);
        let peek = s.schedule.at(peeked);
        let due = peek.is_some_and(|(_, at)| at <= Instant::now());
        let lead = if due {
            None
        } else {
            match leader.try_acquire() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    waited = true;
                    // About to wait: hand the samples over first.
                    s.sink.push_all(shard, &mut batch);
                    match leader.acquire().await {
                        Ok(permit) => Some(permit),
                        Err(_) => break,
                    }
                }
            }
        };
        let n = s.next.fetch_add(1, Ordering::Relaxed);
        let at = if n == peeked { peek } else { s.schedule.at(n) };
        let Some((phase, intended)) = at else {
            // Past the last arrival: every worker of this thread is done.
            leader.close();
            break;
        };
        // Wait for the intended start, looking at the stop flag now and then.
        let sent = loop {
            if s.stop.load(Ordering::Relaxed) {
                leader.close();
                s.sink.push_all(shard, &mut batch);
                return;
            }
            let now = Instant::now();
            if intended <= now {
                break now;
            }
            s.sink.push_all(shard, &mut batch);
            waited = true;
            tokio::time::sleep_until(intended.min(now + CANCEL_CHECK)).await;
        };
        drop(lead);
        let op = s.mix.pick(phase, n);
        let lag = sent.saturating_duration_since(intended);
        let late = lag > s.late_after;
        counters.started.fetch_add(1, Ordering::Relaxed);
        let lag_us = lag.as_micros() as u64;
        // Read first: the maximum rarely moves, and a read is cheaper than a write.
        if lag_us > counters.max_start_lag_us.load(Ordering::Relaxed) {
            counters
                .max_start_lag_us
                .fetch_max(lag_us, Ordering::Relaxed);
        }
        if late {
            counters.late.fetch_add(1, Ordering::Relaxed);
            if waited {
                // A slot was free (this worker was idle), yet it started late.
                counters.late_engine.fetch_add(1, Ordering::Relaxed);
            } else {
                // Every worker was busy when the arrival was due.
                counters
                    .late_in_flight_limit
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        let now_in_flight = counters.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        if now_in_flight > counters.peak_in_flight.load(Ordering::Relaxed) {
            counters
                .peak_in_flight
                .fetch_max(now_in_flight, Ordering::Relaxed);
        }
        let mut chain = O::Chain::default();
        let outcome = within(
            deadline.as_mut(),
            sent + s.timeout,
            s.operations[op].execute(&conns, &mut chain),
        )
        .await
        .unwrap_or_else(|| Outcome::Error("timeout".to_owned()));
        let done = Instant::now();
        let chained = outcome == Outcome::Ok && s.operations[op].has_steps();
        let (latency_us, service_us) = match O::measured(&chain) {
            Some((from, to)) => {
                let us = to.saturating_duration_since(from).as_micros() as u64;
                (us, us)
            }
            None => (
                done.saturating_duration_since(intended).as_micros() as u64,
                done.saturating_duration_since(sent).as_micros() as u64,
            ),
        };
        batch.push(Sample {
            operation: op,
            phase,
            latency_us,
            service_us,
            late,
            outcome,
            completed_at: done.saturating_duration_since(s.run_start),
        });
        if chained {
            // Each step is timed from its own start.
            let run_start = s.run_start;
            let mut record = |operation, outcome, start: Instant, end: Instant| {
                let us = end.saturating_duration_since(start).as_micros() as u64;
                batch.push(Sample {
                    operation,
                    phase,
                    latency_us: us,
                    service_us: us,
                    late: false,
                    outcome,
                    completed_at: end.saturating_duration_since(run_start),
                });
            };
            s.operations[op]
                .run_steps(&conns, chain, s.timeout, &mut record)
                .await;
        }
        if batch.len() >= BATCH {
            s.sink.push_all(shard, &mut batch);
        }
        counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
    s.sink.push_all(shard, &mut batch);
}

/// Runs `operation` until `deadline` (`None` once it passed) on a timer the
/// worker keeps for all its operations.
///
/// Why not `tokio::time::timeout`: it registers a timer in the runtime's
/// wheel for every operation and removes it again (a lock, an insert and a
/// removal per request, about 1 % of the engine's CPU at full speed, seen
/// with `perf`). Deadlines only grow (a fixed timeout after each start), so
/// the kept timer is left where it is: when it fires for an earlier
/// operation's deadline while this one is still running, it is moved to
/// this deadline — about once per timeout period per worker.
async fn within<F: std::future::Future>(
    mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
    deadline: Instant,
    operation: F,
) -> Option<F::Output> {
    if timer.deadline() > deadline {
        timer.as_mut().reset(deadline);
    }
    let mut operation = std::pin::pin!(operation);
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(out) = operation.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(out));
        }
        while timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= deadline {
                return std::task::Poll::Ready(None);
            }
            timer.as_mut().reset(deadline);
        }
        std::task::Poll::Pending
    })
    .await
}

/// Runs every phase of the load from `run_start` on `threads` engine
/// threads (their samples go to shards `0..threads` of `sink`); returns when
/// all started operations have completed (or timed out), or soon after
/// `cancel` fires. `operations[i]` is operation `i` of the load's mix.
pub async fn run<O: Operation>(
    plan: &Load,
    operations: Arc<Vec<O>>,
    sink: Arc<SampleSink>,
    threads: usize,
    counters: Arc<EngineCounters>,
    run_start: Instant,
    cancel: CancellationToken,
) -> Result<(), String> {
    let schedule = Schedule::new(plan, run_start);
    counters.scheduled.store(schedule.total, Ordering::Relaxed);
    let shared = Arc::new(Shared {
        schedule,
        next: AtomicU64::new(0),
        mix: Mix::new(&plan.phase_weights(), plan.seed),
        operations,
        sink,
        counters,
        run_start,
        late_after: plan.late_after,
        timeout: plan.timeout,
        stop: std::sync::atomic::AtomicBool::new(false),
    });
    let stopper = {
        let shared = shared.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            shared.stop.store(true, Ordering::Relaxed);
        })
    };
    let threads = threads.clamp(1, plan.max_in_flight.max(1));
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        // Workers split as evenly as possible over the threads.
        let workers = plan.max_in_flight / threads + usize::from(t < plan.max_in_flight % threads);
        let shared = shared.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting an engine thread: {e}"))?;
        let handle = std::thread::Builder::new()
            .name(format!("engine-{t}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let conns = Arc::new(Connections::default());
                    let leader = Arc::new(tokio::sync::Semaphore::new(LEADERS));
                    let mut set = tokio::task::JoinSet::new();
                    for _ in 0..workers.max(1) {
                        set.spawn(worker(shared.clone(), conns.clone(), leader.clone(), t));
                    }
                    while set.join_next().await.is_some() {}
                });
            })
            .map_err(|e| format!("starting an engine thread: {e}"))?;
        handles.push(handle);
    }
    let joined = tokio::task::spawn_blocking(move || {
        for h in handles {
            if h.join().is_err() {
                return Err("an engine thread panicked".to_owned());
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| format!("waiting for the engine threads: {e}"));
    stopper.abort();
    joined?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_follows_weights_and_the_seed() {
        let a = Mix::new(&[vec![8, 2]], 42);
        let b = Mix::new(&[vec![8, 2]], 42);
        let picks: Vec<usize> = (0..10_000).map(|n| a.pick(0, n)).collect();
        let again: Vec<usize> = (0..10_000).map(|n| b.pick(0, n)).collect();
        assert_eq!(picks, again, "same seed, same mix");
        let first = picks.iter().filter(|&&p| p == 0).count();
        assert!((7_500..8_500).contains(&first), "{first}");
        let c = Mix::new(&[vec![8, 2]], 43);
        let other: Vec<usize> = (0..10_000).map(|n| c.pick(0, n)).collect();
        assert_ne!(picks, other);
    }

    #[test]
    fn arrivals_are_numbered_across_phases() {
        // Phases `a` (1 s at 10/s) and `b` (500 ms at 4/s).
        let flat = |rate: f64, secs: f64| crate::Segment {
            start: 0.0,
            duration: secs,
            from: rate,
            to: rate,
        };
        let ms = Duration::from_millis;
        let mut a = Phase::new("a".into(), ms(0), ms(1_000), vec![flat(10.0, 1.0)]);
        let mut b = Phase::new("b".into(), ms(1_000), ms(500), vec![flat(4.0, 0.5)]);
        a.weights = vec![1];
        b.weights = vec![1];
        let plan = Load {
            phases: vec![a, b],
            operations: vec![("get".into(), 1)],
            max_in_flight: 1,
            timeout: Duration::from_secs(1),
            late_after: ms(10),
            think_time: None,
            seed: 1,
        };
        let start = Instant::now();
        let schedule = Schedule::new(&plan, start);
        assert_eq!(schedule.total, 12);
        assert_eq!(schedule.at(0), Some((0, start)));
        assert_eq!(
            schedule.at(9),
            Some((0, start + Duration::from_millis(900)))
        );
        assert_eq!(schedule.at(10), Some((1, start + Duration::from_secs(1))));
        assert_eq!(
            schedule.at(11),
            Some((1, start + Duration::from_millis(1_250)))
        );
        assert_eq!(schedule.at(12), None);
    }

    /// The kept timer cuts an operation off at its own deadline, never at an
    /// earlier operation's, and lets quick operations through. (Real time:
    /// an operation that is ready is taken before the timer is looked at,
    /// so a slow machine cannot turn an answer into a timeout here.)
    #[tokio::test]
    async fn operations_end_at_their_own_deadline() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let timer = tokio::time::sleep_until(t0 + ms(50));
        tokio::pin!(timer);
        let quick = within(timer.as_mut(), t0 + ms(50), async { 7 }).await;
        assert_eq!(quick, Some(7));
        // The timer is left at 50 ms; this operation's deadline is 400 ms
        // and it answers at 150 ms.
        let slow = within(
            timer.as_mut(),
            t0 + ms(400),
            tokio::time::sleep_until(t0 + ms(150)),
        )
        .await;
        assert_eq!(slow, Some(()), "ended by an earlier operation's deadline");
        let stuck = within(timer.as_mut(), t0 + ms(500), std::future::pending::<()>()).await;
        assert_eq!(stuck, None);
        assert!(Instant::now() >= t0 + ms(500), "ended before its deadline");
        // A deadline before the timer's moves the timer back.
        timer.as_mut().reset(t0 + Duration::from_secs(3_600));
        let stuck = within(timer.as_mut(), t0 + ms(600), std::future::pending::<()>()).await;
        assert_eq!(stuck, None);
        assert!(Instant::now() >= t0 + ms(600));
    }

    #[test]
    fn a_single_operation_is_always_picked() {
        let m = Mix::new(&[vec![3]], 1);
        assert!((0..100).all(|n| m.pick(0, n) == 0));
    }

    #[test]
    fn each_phase_has_its_own_mix() {
        let m = Mix::new(&[vec![1, 0], vec![0, 1], vec![1, 1]], 1);
        assert!((0..100).all(|n| m.pick(0, n) == 0));
        assert!((0..100).all(|n| m.pick(1, n) == 1));
        // The same arrival numbers pick both operations in an even mix.
        let second = (0..1_000).filter(|&n| m.pick(2, n) == 1).count();
        assert!((400..600).contains(&second), "{second}");
    }
}
