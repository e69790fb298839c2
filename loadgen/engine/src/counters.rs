//! The engine's live counters (atomics), read by the recorder for progress
//! and partial results, and the CPU time the process used.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gauntlet_recorder::EngineStats;

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
