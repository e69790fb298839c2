//! Prometheus metrics with seed 001's names, on atomics (no lock on the
//! message path). Histograms take `observe_n` so a batch of n messages that
//! completed together costs one observation, not n.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket upper bounds in seconds: 1 µs … 10 s.
const BOUNDS: [f64; 22] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
    5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe_n(&self, d: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let s = d.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(n, Ordering::Relaxed);
        }
        self.count.fetch_add(n, Ordering::Relaxed);
        self.sum_ns
            .fetch_add((d.as_nanos() as u64).saturating_mul(n), Ordering::Relaxed);
    }

    pub fn observe(&self, d: Duration) {
        self.observe_n(d, 1);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, bound) in self.buckets.iter().zip(BOUNDS) {
            cumulative += b.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Lifecycle events counted by `component_lifecycle_events_total{event}`.
pub const EVENTS: [&str; 5] = ["spawned", "stopped", "restarted", "failed", "restored"];

#[derive(Default)]
pub struct Metrics {
    pub spawn: Histogram,
    pub message_latency: Histogram,
    pub registry_lookup: Histogram,
    pub lifecycle: [AtomicU64; EVENTS.len()],
    pub messages_sent: AtomicU64,
    pub messages_handled: AtomicU64,
    pub messages_failed: AtomicU64,
    pub restarts: AtomicU64,
    pub dropped_mailbox_full: AtomicU64,
    pub dropped_unavailable: AtomicU64,
    pub capability_denials: AtomicU64,
}

impl Metrics {
    pub fn event(&self, event: &str) {
        if let Some(i) = EVENTS.iter().position(|e| *e == event) {
            self.lifecycle[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The exposition text; `active` and the per-component mailbox depths
    /// (the deepest 20) come from the registry.
    pub fn render(&self, active: usize, depths: &[(String, usize)]) -> String {
        let mut out = String::with_capacity(8192);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.spawn.render(
            &mut out,
            "component_spawn_duration_seconds",
            "Time from a spawn request to the component running and registered.",
        );
        let _ = writeln!(
            out,
            "# HELP components_active_total Components running (a gauge, named as seed 001 has it).\n# TYPE components_active_total gauge\ncomponents_active_total {active}"
        );
        let _ = writeln!(
            out,
            "# HELP component_lifecycle_events_total Component lifecycle events by type.\n# TYPE component_lifecycle_events_total counter"
        );
        for (e, c) in EVENTS.iter().zip(&self.lifecycle) {
            let _ = writeln!(
                out,
                "component_lifecycle_events_total{{event=\"{e}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP messages_sent_total Messages accepted into a first mailbox.\n# TYPE messages_sent_total counter\nmessages_sent_total {}",
            get(&self.messages_sent)
        );
        let _ = writeln!(
            out,
            "# HELP messages_handled_total Deliveries handled at the end of their path.\n# TYPE messages_handled_total counter\nmessages_handled_total {}",
            get(&self.messages_handled)
        );
        let _ = writeln!(
            out,
            "# HELP messages_failed_total Deliveries answered as failed (panic, refused effect, unknown stage).\n# TYPE messages_failed_total counter\nmessages_failed_total {}",
            get(&self.messages_failed)
        );
        self.message_latency.render(
            &mut out,
            "message_latency_seconds",
            "From a batch entering the first mailbox to a message handled at the end of its path.",
        );
        self.registry_lookup.render(
            &mut out,
            "registry_lookup_duration_seconds",
            "Registry lookups by name (API lookups).",
        );
        let _ = writeln!(
            out,
            "# HELP component_restarts_total Restarts by supervision.\n# TYPE component_restarts_total counter\ncomponent_restarts_total {}",
            get(&self.restarts)
        );
        let _ = writeln!(
            out,
            "# HELP capability_denials_total Effects refused for lack of a capability.\n# TYPE capability_denials_total counter\ncapability_denials_total {}",
            get(&self.capability_denials)
        );
        let _ = writeln!(
            out,
            "# HELP messages_dropped_total Messages not accepted (only refused batches: nothing accepted is dropped).\n# TYPE messages_dropped_total counter\nmessages_dropped_total{{reason=\"mailbox_full\"}} {}\nmessages_dropped_total{{reason=\"unavailable\"}} {}",
            get(&self.dropped_mailbox_full),
            get(&self.dropped_unavailable)
        );
        let _ = writeln!(
            out,
            "# HELP mailbox_depth Messages queued per component (the 20 deepest).\n# TYPE mailbox_depth gauge"
        );
        for (name, depth) in depths {
            let _ = writeln!(out, "mailbox_depth{{component=\"{name}\"}} {depth}");
        }
        out
    }
}
