//! The run's live progress on the command line: an indicatif bar on a
//! terminal, a plain line every 5 s otherwise, nothing with `--quiet`.

use std::io::IsTerminal;
use std::time::Duration;

use gauntlet_engine::Progress;
use gauntlet_recorder::IntervalResult;
use gauntlet_reports::{human_rate, human_us};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::plan::Plan;

/// Live progress: an indicatif bar on a terminal, a plain line every 5 s otherwise.
pub struct Bar {
    bar: Option<ProgressBar>,
    phases: Vec<(String, Duration, Duration)>,
    last_plain: Option<std::time::Instant>,
    quiet: bool,
}

impl Bar {
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
}

impl Progress for Bar {
    /// Shows the interval just closed.
    fn update(
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

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
