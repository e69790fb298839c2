//! Prometheus metrics with the spec's names, on atomics.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Seconds: 50 µs … 30 s.
const SECONDS: &[f64] = &[
    5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];
/// Events per batch.
const COUNTS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in millionths of the unit.
    sum_micro: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micro: AtomicU64::new(0),
        }
    }

    pub fn observe_value(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micro
            .fetch_add((v * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn observe(&self, d: Duration) {
        self.observe_value(d.as_secs_f64());
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, bound) in self.buckets.iter().zip(self.bounds) {
            cumulative += b.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {sum}\n{name}_count{braces} {count}"
        );
    }
}

/// Request types, the `type` label of `tracing_requests_total`.
pub const TYPES: [&str; 9] = [
    "start_trace",
    "record_event",
    "get_trace",
    "query_traces",
    "get_flow_versions",
    "ping",
    "subscribe",
    "unsubscribe",
    "invalid",
];

pub fn type_index(name: &str) -> usize {
    TYPES
        .iter()
        .position(|t| *t == name)
        .unwrap_or(TYPES.len() - 1)
}

/// Why events were refused (`tracing_events_refused_total{reason}`).
pub const REFUSALS: [&str; 4] = ["unavailable", "buffer_full", "too_large", "invalid"];

pub struct Metrics {
    requests_ok: [AtomicU64; TYPES.len()],
    requests_error: [AtomicU64; TYPES.len()],
    durations: Vec<Histogram>,
    pub connections_active: AtomicI64,
    pub connections_refused_full: AtomicU64,
    pub connections_refused_auth: AtomicU64,
    pub events_stored: AtomicU64,
    pub orphan_events: AtomicU64,
    pub refused: [AtomicU64; REFUSALS.len()],
    pub batch_events: Histogram,
    pub commit: Histogram,
    pub commit_failures: AtomicU64,
    pub pending_events: AtomicI64,
    pub redis_errors: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub subscribers_active: AtomicI64,
    pub notifications_sent: AtomicU64,
    pub notifications_dropped: AtomicU64,
    pub pubsub_reconnects: AtomicU64,
    pub frames_too_large: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests_ok: Default::default(),
            requests_error: Default::default(),
            durations: TYPES.iter().map(|_| Histogram::new(SECONDS)).collect(),
            connections_active: AtomicI64::new(0),
            connections_refused_full: AtomicU64::new(0),
            connections_refused_auth: AtomicU64::new(0),
            events_stored: AtomicU64::new(0),
            orphan_events: AtomicU64::new(0),
            refused: Default::default(),
            batch_events: Histogram::new(COUNTS),
            commit: Histogram::new(SECONDS),
            commit_failures: AtomicU64::new(0),
            pending_events: AtomicI64::new(0),
            redis_errors: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            subscribers_active: AtomicI64::new(0),
            notifications_sent: AtomicU64::new(0),
            notifications_dropped: AtomicU64::new(0),
            pubsub_reconnects: AtomicU64::new(0),
            frames_too_large: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn request(&self, kind: usize, ok: bool, took: Duration) {
        let counters = if ok {
            &self.requests_ok
        } else {
            &self.requests_error
        };
        counters[kind].fetch_add(1, Ordering::Relaxed);
        self.durations[kind].observe(took);
    }

    pub fn refuse(&self, reason: &str) {
        if let Some(i) = REFUSALS.iter().position(|r| *r == reason) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 << 10);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP tracing_requests_total WebSocket requests answered, by request type and outcome.\n# TYPE tracing_requests_total counter"
        );
        for (i, t) in TYPES.iter().enumerate() {
            let _ = writeln!(
                out,
                "tracing_requests_total{{type=\"{t}\",status=\"ok\"}} {}\ntracing_requests_total{{type=\"{t}\",status=\"error\"}} {}",
                get(&self.requests_ok[i]),
                get(&self.requests_error[i])
            );
        }
        let _ = writeln!(
            out,
            "# HELP tracing_request_duration_seconds From a request frame read to its answer queued for the socket.\n# TYPE tracing_request_duration_seconds histogram"
        );
        for (i, t) in TYPES.iter().enumerate() {
            self.durations[i].render(
                &mut out,
                "tracing_request_duration_seconds",
                &format!("type=\"{t}\""),
            );
        }
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "tracing_connections_active",
            "Open WebSocket connections.",
            self.connections_active.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP tracing_connections_refused_total Upgrades refused (503 over max_connections or shutting down, 401 bad token).\n# TYPE tracing_connections_refused_total counter\ntracing_connections_refused_total{{reason=\"full\"}} {}\ntracing_connections_refused_total{{reason=\"unauthorized\"}} {}",
            get(&self.connections_refused_full),
            get(&self.connections_refused_auth)
        );
        counter(
            &mut out,
            "tracing_events_stored_total",
            "Events committed to PostgreSQL (new rows; a re-sent event_id is not counted twice).",
            get(&self.events_stored),
        );
        counter(
            &mut out,
            "tracing_orphan_events_total",
            "Events that arrived for a trace the server did not know (each created its trace).",
            get(&self.orphan_events),
        );
        let _ = writeln!(
            out,
            "# HELP tracing_events_refused_total RecordEvent answered with an error, by reason.\n# TYPE tracing_events_refused_total counter"
        );
        for (i, r) in REFUSALS.iter().enumerate() {
            let _ = writeln!(
                out,
                "tracing_events_refused_total{{reason=\"{r}\"}} {}",
                get(&self.refused[i])
            );
        }
        let _ = writeln!(
            out,
            "# HELP tracing_batch_events Events per committed batch.\n# TYPE tracing_batch_events histogram"
        );
        self.batch_events
            .render(&mut out, "tracing_batch_events", "");
        let _ = writeln!(
            out,
            "# HELP tracing_db_commit_duration_seconds One batch's write and commit in PostgreSQL.\n# TYPE tracing_db_commit_duration_seconds histogram"
        );
        self.commit
            .render(&mut out, "tracing_db_commit_duration_seconds", "");
        counter(
            &mut out,
            "tracing_db_commit_failures_total",
            "Batch write attempts that failed or timed out (retried until the events' deadline).",
            get(&self.commit_failures),
        );
        gauge(
            &mut out,
            "tracing_pending_events",
            "Events read and not yet answered by the batcher (bounded by max_pending_events).",
            self.pending_events.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tracing_redis_errors_total",
            "Redis commands that failed or timed out.",
            get(&self.redis_errors),
        );
        let _ = writeln!(
            out,
            "# HELP tracing_cache_requests_total GetTrace cache look-ups.\n# TYPE tracing_cache_requests_total counter\ntracing_cache_requests_total{{result=\"hit\"}} {}\ntracing_cache_requests_total{{result=\"miss\"}} {}",
            get(&self.cache_hits),
            get(&self.cache_misses)
        );
        gauge(
            &mut out,
            "tracing_subscribers_active",
            "Connections with a live subscription on this replica.",
            self.subscribers_active.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tracing_notifications_sent_total",
            "EventNotification frames queued to subscribers.",
            get(&self.notifications_sent),
        );
        counter(
            &mut out,
            "tracing_notifications_dropped_total",
            "EventNotification frames dropped because a subscriber's queue was full.",
            get(&self.notifications_dropped),
        );
        counter(
            &mut out,
            "tracing_pubsub_reconnects_total",
            "Times the Redis subscription was re-established (events of other replicas published meanwhile were missed).",
            get(&self.pubsub_reconnects),
        );
        counter(
            &mut out,
            "tracing_frames_too_large_total",
            "Connections closed with 1009 (a frame over 16 MiB).",
            get(&self.frames_too_large),
        );
        out
    }
}
