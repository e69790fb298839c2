//! Gauntlet's report rendering: turns a run directory into what people read.
//!
//! - [`summary_table`]: the terminal summary (a table per phase and
//!   operation, the engine's own health).
//! - [`html::render_run`] and [`html::render_comparison`]: the self-contained
//!   HTML report of a run ([`data::RunData`], read back from its run
//!   directory) and of two runs side by side.
//!
//! This crate only reads: `results.json`, `latency.hlog`, `metrics.jsonl`,
//! `faults.json`, `verdict.json`. It never runs anything and never measures
//! anything, and it depends on nothing of the harness but the recorder's
//! data types.

pub mod charts;
pub mod data;
pub mod flame;
pub mod html;
pub mod profiles_html;
pub mod recovery;
pub mod series;

use std::fmt::Write as _;

pub use data::{LoadError, RunData};
pub use html::{RenderOptions, render_comparison, render_run};

use gauntlet_recorder::{OperationResult, RunResults};

/// A latency in µs as people read it: `850µs`, `12.3ms`, `1.24s`.
pub fn human_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        let ms = us as f64 / 1_000.0;
        if ms < 10.0 {
            format!("{ms:.2}ms")
        } else if ms < 100.0 {
            format!("{ms:.1}ms")
        } else {
            format!("{ms:.0}ms")
        }
    } else {
        format!("{:.2}s", us as f64 / 1_000_000.0)
    }
}

/// A rate as people read it: `950/s`, `12.4k/s`.
pub fn human_rate(per_s: f64) -> String {
    if per_s >= 10_000.0 {
        format!("{:.1}k/s", per_s / 1_000.0)
    } else if per_s >= 100.0 {
        format!("{per_s:.0}/s")
    } else {
        format!("{per_s:.1}/s")
    }
}

const HEADERS: [&str; 11] = [
    "phase",
    "operation",
    "count",
    "errors",
    "late",
    "throughput",
    "p50",
    "p90",
    "p99",
    "p99.9",
    "max",
];

fn row(phase: &str, op: &OperationResult) -> [String; 11] {
    let l = &op.latency_us;
    let none = op.count == op.errors;
    let lat = |v: u64| if none { "-".to_owned() } else { human_us(v) };
    [
        phase.to_owned(),
        op.operation.clone(),
        op.count.to_string(),
        op.errors.to_string(),
        op.late.to_string(),
        match op.messages_per_s {
            // An operation carrying batches of messages: both rates.
            Some(m) => format!(
                "{} ({} msg)",
                human_rate(op.throughput_per_s),
                human_rate(m)
            ),
            None => human_rate(op.throughput_per_s),
        },
        lat(l.p50),
        lat(l.p90),
        lat(l.p99),
        lat(l.p999),
        lat(l.max),
    ]
}

/// The summary table: one row per phase and operation, then the run totals,
/// then the engine's own figures and any warning that the run is not a
/// measurement of the system.
pub fn summary_table(results: &RunResults) -> String {
    let mut rows: Vec<[String; 11]> = Vec::new();
    for phase in &results.phases {
        for op in &phase.operations {
            rows.push(row(&phase.name, op));
        }
    }
    for op in &results.totals {
        rows.push(row("(all)", op));
    }
    let mut widths = HEADERS.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            if i < 2 {
                let _ = write!(out, "{cell}{}", " ".repeat(pad));
            } else {
                let _ = write!(out, "{}{cell}", " ".repeat(pad));
            }
            out.push_str(if i + 1 < cells.len() { "  " } else { "\n" });
        }
    };
    line(&mut out, &HEADERS.map(str::to_owned));
    let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
    line(&mut out, &rule);
    let phase_rows = rows.len() - results.totals.len();
    for (i, r) in rows.iter().enumerate() {
        if i == phase_rows {
            line(&mut out, &rule);
        }
        line(&mut out, r);
    }
    out.push('\n');
    let e = &results.engine;
    let _ = writeln!(
        out,
        "engine: {} scheduled, {} started, {} late ({} engine, {} in-flight limit), max start lag {}, peak in flight {}, {:.1} ms CPU per 1,000 operations",
        e.scheduled,
        e.started,
        e.late,
        e.late_engine,
        e.late_in_flight_limit,
        human_us(e.max_start_lag_us),
        e.peak_in_flight,
        e.cpu_ms_per_1000_ops,
    );
    if let Some(b) = &e.bottleneck {
        let _ = writeln!(out, "WARNING: {b}");
    }
    if let Some(why) = &results.interrupted {
        let _ = writeln!(out, "INTERRUPTED: {why}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_recorder::{EngineStats, Percentiles, PhaseResult};

    fn op(name: &str, count: u64, errors: u64) -> OperationResult {
        OperationResult {
            operation: name.into(),
            count,
            errors,
            late: 0,
            throughput_per_s: 123.0,
            latency_us: Percentiles {
                p50: 800,
                p90: 1_500,
                p99: 12_345,
                p999: 40_000,
                max: 1_250_000,
            },
            service_time_us: Percentiles::default(),
            errors_by_kind: Default::default(),
            messages: None,
            messages_per_s: None,
        }
    }

    #[test]
    fn humanises_units() {
        assert_eq!(human_us(850), "850µs");
        assert_eq!(human_us(1_500), "1.50ms");
        assert_eq!(human_us(12_345), "12.3ms");
        assert_eq!(human_us(1_250_000), "1.25s");
        assert_eq!(human_rate(12_400.0), "12.4k/s");
        assert_eq!(human_rate(950.0), "950/s");
    }

    #[test]
    fn table_has_a_row_per_phase_and_operation_and_totals() {
        let results = RunResults {
            format: 1,
            scenario: "s".into(),
            seed: 1,
            started_at: String::new(),
            elapsed_s: 1.0,
            runtime: "process".into(),
            host: "h".into(),
            git_revision: None,
            complete: true,
            interrupted: None,
            recovery: Vec::new(),
            engine: EngineStats {
                bottleneck: Some("engine fell behind".into()),
                ..Default::default()
            },
            phases: vec![PhaseResult {
                name: "steady".into(),
                duration_s: 1.0,
                target_rate_per_s: 10.0,
                operations: vec![op("append", 10, 0), op("read", 5, 5)],
            }],
            totals: vec![op("append", 10, 0), op("read", 5, 5)],
            intervals: vec![],
        };
        let table = summary_table(&results);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("phase") && lines[0].contains("p99.9"));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("steady") && l.contains("append") && l.contains("12.3ms"))
        );
        assert!(
            lines.iter().any(|l| l.starts_with("(all)")
                && l.contains("read")
                && l.trim_end().ends_with('-'))
        );
        assert!(table.contains("WARNING: engine fell behind"));
    }
}
