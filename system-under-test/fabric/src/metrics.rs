//! Prometheus metrics with seed 002's names, kept in atomics and rendered as
//! the text exposition format by hand (no registry dependency).
//!
//! Event counters count only successful operations: written events after
//! their append was acknowledged, read events after a read answered 2xx.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets.
pub const BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// A fixed-bucket histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Relaxed) as f64 / 1e9;
        if labels.is_empty() {
            let _ = writeln!(out, "{name}_sum {sum}");
            let _ = writeln!(out, "{name}_count {count}");
        } else {
            let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
        }
    }
}

/// Operations timed by `flowmesh_operation_duration_seconds{op=…}`.
pub const OPS: [&str; 15] = [
    "append",
    "read",
    "commit_offset",
    "enqueue",
    "reserve",
    "receive",
    "ack",
    "nack",
    "replay",
    "kv_put",
    "kv_get",
    "kv_delete",
    "kv_list",
    "create",
    "snapshot",
];

/// Depth and in-flight count of one queue.
#[derive(Debug, Default)]
pub struct QueueGauge {
    pub depth: AtomicU64,
    pub in_flight: AtomicU64,
    pub long_polls: AtomicU64,
}

/// All metrics of a node.
#[derive(Debug, Default)]
pub struct Metrics {
    pub events_written: AtomicU64,
    pub events_read: AtomicU64,
    pub jobs_enqueued: AtomicU64,
    pub jobs_dequeued: AtomicU64,
    pub jobs_acked: AtomicU64,
    pub jobs_nacked: AtomicU64,
    pub jobs_dead_lettered: AtomicU64,
    pub kv_writes: AtomicU64,
    pub kv_reads: AtomicU64,
    op_durations: [Histogram; OPS.len()],
    queues: Mutex<BTreeMap<String, std::sync::Arc<QueueGauge>>>,
    pub fsync_total: AtomicU64,
    pub fsync_duration: Histogram,
    pub recovery_truncated_bytes: AtomicU64,
    http: Mutex<BTreeMap<(String, u16), u64>>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one HTTP request by route template and status.
    pub fn http_request(&self, route: &str, status: u16) {
        if let Ok(mut m) = self.http.lock() {
            *m.entry((route.to_owned(), status)).or_insert(0) += 1;
        }
    }

    /// Records the duration of a successful operation `op` (one of [`OPS`]).
    pub fn observe_op(&self, op: &str, d: Duration) {
        if let Some(i) = OPS.iter().position(|&o| o == op) {
            self.op_durations[i].observe(d);
        }
    }

    /// The histogram of operation `op`.
    pub fn op(&self, op: &str) -> Option<&Histogram> {
        OPS.iter()
            .position(|&o| o == op)
            .map(|i| &self.op_durations[i])
    }

    /// The gauges of queue `name` (created on first use).
    pub fn queue_gauge(&self, name: &str) -> std::sync::Arc<QueueGauge> {
        let mut m = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        std::sync::Arc::clone(m.entry(name.to_owned()).or_default())
    }

    pub fn record_fsync(&self, d: Duration) {
        self.fsync_total.fetch_add(1, Relaxed);
        self.fsync_duration.observe(d);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            &mut out,
            "flowmesh_stream_events_written_total",
            "Events appended and acknowledged.",
            self.events_written.load(Relaxed),
        );
        counter(
            &mut out,
            "flowmesh_stream_events_read_total",
            "Events returned by successful reads.",
            self.events_read.load(Relaxed),
        );
        counter(
            &mut out,
            "flowmesh_queue_jobs_enqueued_total",
            "Jobs enqueued and acknowledged.",
            self.jobs_enqueued.load(Relaxed),
        );
        counter(
            &mut out,
            "flowmesh_queue_jobs_dequeued_total",
            "Jobs handed out by successful reserve/receive calls.",
            self.jobs_dequeued.load(Relaxed),
        );
        counter(
            &mut out,
            "flowmesh_queue_jobs_acked_total",
            "Jobs acknowledged (first successful ack of each).",
            self.jobs_acked.load(Relaxed),
        );
        counter(
            &mut out,
            "flowmesh_queue_jobs_nacked_total",
            "Successful nacks.",
            self.jobs_nacked.load(Relaxed),
        );
        counter(
            &mut out,
            "flowmesh_queue_jobs_dead_lettered_total",
            "Jobs moved to a dead-letter queue (nack or lease expiry after the last attempt).",
            self.jobs_dead_lettered.load(Relaxed),
        );
        counter(
            &mut out,
            "flowmesh_kv_writes_total",
            "Successful KV puts and deletes.",
            self.kv_writes.load(Relaxed),
        );
        counter(
            &mut out,
            "flowmesh_kv_reads_total",
            "Successful KV gets.",
            self.kv_reads.load(Relaxed),
        );
        let queues: Vec<(String, u64, u64, u64)> = self
            .queues
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(k, g)| {
                        (
                            k.clone(),
                            g.depth.load(Relaxed),
                            g.in_flight.load(Relaxed),
                            g.long_polls.load(Relaxed),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "# HELP flowmesh_queue_depth Jobs pending (visible or delayed) per queue.\n# TYPE flowmesh_queue_depth gauge"
        );
        for (q, d, _, _) in &queues {
            let _ = writeln!(out, "flowmesh_queue_depth{{queue=\"{q}\"}} {d}");
        }
        let _ = writeln!(
            out,
            "# HELP flowmesh_queue_in_flight Jobs reserved and not yet acked per queue.\n# TYPE flowmesh_queue_in_flight gauge"
        );
        for (q, _, f, _) in &queues {
            let _ = writeln!(out, "flowmesh_queue_in_flight{{queue=\"{q}\"}} {f}");
        }
        let _ = writeln!(
            out,
            "# HELP flowmesh_queue_long_polls_waiting Reserve/receive calls waiting for a job per queue.\n# TYPE flowmesh_queue_long_polls_waiting gauge"
        );
        for (q, _, _, w) in &queues {
            let _ = writeln!(
                out,
                "flowmesh_queue_long_polls_waiting{{queue=\"{q}\"}} {w}"
            );
        }
        counter(
            &mut out,
            "flowmesh_fsync_total",
            "fsync calls on segment files and directories that succeeded.",
            self.fsync_total.load(Relaxed),
        );
        counter(
            &mut out,
            "flowmesh_recovery_truncated_bytes_total",
            "Bytes of torn or corrupt log tail truncated by recovery.",
            self.recovery_truncated_bytes.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP flowmesh_operation_duration_seconds Duration of successful operations.\n# TYPE flowmesh_operation_duration_seconds histogram"
        );
        for (name, h) in OPS.iter().zip(&self.op_durations) {
            h.render(
                &mut out,
                "flowmesh_operation_duration_seconds",
                &format!("op=\"{name}\""),
            );
        }
        let _ = writeln!(
            out,
            "# HELP flowmesh_fsync_duration_seconds Duration of successful fsync calls.\n# TYPE flowmesh_fsync_duration_seconds histogram"
        );
        self.fsync_duration
            .render(&mut out, "flowmesh_fsync_duration_seconds", "");
        let _ = writeln!(
            out,
            "# HELP flowmesh_http_requests_total HTTP requests by route and status.\n# TYPE flowmesh_http_requests_total counter"
        );
        if let Ok(m) = self.http.lock() {
            for ((route, status), n) in m.iter() {
                let route = route.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = writeln!(
                    out,
                    "flowmesh_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_histogram_cumulatively() {
        let m = Metrics::new();
        m.observe_op("append", Duration::from_micros(30));
        m.observe_op("append", Duration::from_secs(10));
        m.events_written.fetch_add(3, Relaxed);
        let text = m.render();
        assert!(text.contains("flowmesh_stream_events_written_total 3"));
        assert!(text.contains(
            "flowmesh_operation_duration_seconds_bucket{op=\"append\",le=\"0.00005\"} 1"
        ));
        assert!(
            text.contains(
                "flowmesh_operation_duration_seconds_bucket{op=\"append\",le=\"+Inf\"} 2"
            )
        );
        assert!(text.contains("flowmesh_operation_duration_seconds_count{op=\"append\"} 2"));
    }
}
