//! The node's own resource use, from `/proc/self` (Linux): resident memory
//! for `AIRSSYS_MAX_MEMORY_GB` and CPU for `AIRSSYS_MAX_CPU_PERCENT`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Resident set size in bytes.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(4096) as u64)
}

/// User + system CPU time of the process.
pub fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start past ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_millis((utime + stime) * 1000 / hz))
}

/// CPU use over the last sampling interval, in percent of one core
/// (×100 fixed point, so it fits an atomic).
#[derive(Default)]
pub struct CpuGauge {
    centi_percent: AtomicU64,
}

impl CpuGauge {
    pub fn percent(&self) -> f64 {
        self.centi_percent.load(Ordering::Relaxed) as f64 / 100.0
    }

    /// Samples every `every` until the task is dropped.
    pub async fn sample(&self, every: Duration) {
        let mut last = (Instant::now(), cpu_time().unwrap_or_default());
        loop {
            tokio::time::sleep(every).await;
            let now = (Instant::now(), cpu_time().unwrap_or_default());
            let wall = now.0.duration_since(last.0).as_secs_f64();
            if wall > 0.0 {
                let pct = now.1.saturating_sub(last.1).as_secs_f64() / wall * 100.0;
                self.centi_percent
                    .store((pct * 100.0) as u64, Ordering::Relaxed);
            }
            last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_its_own_usage() {
        assert!(super::rss_bytes().unwrap() > 0);
        assert!(super::cpu_time().is_some());
    }
}
