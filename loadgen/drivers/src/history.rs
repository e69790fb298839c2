//! The run's operation history, for the scenario's `checks:`.
//!
//! With `checks:` each prepared operation is handed a [`Tap`]: each checked
//! request is recorded in `history.jsonl` (`invoke`, then `ok` with the
//! answer's identifiers, `fail` for a 4xx, `unknown` for a 5xx, a transport
//! error or an unreadable answer; a request the engine's timeout cancels has
//! no completion, which the reader takes as `unknown`). Without `checks:`
//! there is no tap and a driver does nothing more than its request. What a
//! system records is in its module (`fabric::taps`).
//!
//! After the load and after every fault healed, [`run_checks`] reads the
//! history, has each system read back what it wrote (`fabric::readback`,
//! `actors::readback`, `tracing::readback`) into `readback.json`, and runs the checkers; [`write_verdict`] adds their
//! verdicts to `verdict.json`.

use std::path::Path;
use std::sync::Arc;

use gauntlet_checkers::history::HistoryWriter;
use gauntlet_checkers::{Acknowledged, Check, CheckVerdict, History, Invocation, Outcome};
use gauntlet_recorder::faults::Fault;
use tokio::time::Instant;

use crate::{PlannedOperation, Target};

/// The history recorder the driver's operations write through.
pub struct Tap {
    writer: HistoryWriter,
    run_start: std::sync::OnceLock<Instant>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("path", &self.writer.path())
            .finish()
    }
}

/// What a request's answer was, as the driver saw it: the status and the
/// body, or the error kind (`connect`, `io`, …).
pub type Answer<'a> = Result<(u16, &'a [u8]), &'a str>;

impl Tap {
    pub fn create(run_dir: &Path) -> std::io::Result<Arc<Tap>> {
        Ok(Arc::new(Tap {
            writer: HistoryWriter::create(&run_dir.join(gauntlet_checkers::history::HISTORY_FILE))?,
            run_start: std::sync::OnceLock::new(),
        }))
    }

    /// Sets the clock `t_s` counts from (the run's start).
    pub fn start(&self, run_start: Instant) {
        let _ = self.run_start.set(run_start);
    }

    fn now(&self) -> f64 {
        self.run_start
            .get()
            .map_or(0.0, |s| s.elapsed().as_secs_f64())
    }

    pub fn flush(&self) {
        let _ = self.writer.flush();
    }

    pub fn invoke(&self, invocation: Invocation) -> Option<u64> {
        self.writer.invoke(self.now(), invocation).ok()
    }

    /// Records how operation `id` ended: `ack` reads the identifiers from
    /// a 2xx body (`None`: unreadable, so unknown).
    pub fn complete(
        &self,
        id: Option<u64>,
        answer: Answer,
        ack: impl FnOnce(&[u8]) -> Option<Acknowledged>,
    ) {
        let Some(id) = id else { return };
        let outcome = match answer {
            Ok((status, body)) if (200..300).contains(&status) => match ack(body) {
                Some(a) => Outcome::Ok(a),
                None => Outcome::Unknown("unreadable answer".to_owned()),
            },
            Ok((status, _)) if (400..500).contains(&status) => {
                Outcome::Fail(format!("http_{status}"))
            }
            Ok((status, _)) => Outcome::Unknown(format!("http_{status}")),
            Err(kind) => Outcome::Unknown(kind.to_owned()),
        };
        let _ = self.writer.complete(id, self.now(), outcome);
    }

    /// Records how operation `id` ended, as the driver judged it.
    pub fn complete_with(&self, id: Option<u64>, outcome: Outcome) {
        if let Some(id) = id {
            let _ = self.writer.complete(id, self.now(), outcome);
        }
    }

    /// Records a completion whose answer carries no identifiers.
    pub fn complete_plain(&self, id: Option<u64>, answer: Answer) {
        self.complete(id, answer, |_| Some(Acknowledged::default()));
    }
}

/// Runs each check named in the scenario.
pub fn check(
    names: &[String],
    history: &History,
    readback: &gauntlet_checkers::ReadBack,
    faults: &[Fault],
) -> Vec<CheckVerdict> {
    names
        .iter()
        .filter_map(|n| Check::from_name(n))
        .map(|c| c.run(history, readback, faults))
        .collect()
}

/// Adds the check verdicts to `verdict.json` (written by the SLO gate, or
/// new): `checks` lists them and `passed` is false when one failed.
pub fn write_verdict(
    run_dir: &Path,
    scenario: &str,
    checks: &[CheckVerdict],
) -> Result<(), String> {
    let path = run_dir.join("verdict.json");
    let mut doc: serde_json::Value = match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?
        }
        Err(_) => serde_json::json!({ "scenario": scenario, "passed": true }),
    };
    let all = checks.iter().all(|c| c.passed);
    let passed = doc.get("passed").and_then(|p| p.as_bool()).unwrap_or(true) && all;
    doc["checks"] = serde_json::to_value(checks).map_err(|e| e.to_string())?;
    doc["passed"] = serde_json::Value::Bool(passed);
    gauntlet_recorder::files::write_json(&path, &doc)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The read-back and the checks after the load and the faults: reads the
/// history, has each system read back what it wrote (services reached
/// through `target`, directly, not through fault proxies), runs each check.
pub async fn run_checks(
    operations: &[PlannedOperation],
    scenario: &gauntlet_scenario::Scenario,
    target: &dyn Fn(&str) -> Target,
    faults: &[Fault],
    run_start: Instant,
    run_dir: &Path,
) -> Result<Vec<CheckVerdict>, String> {
    let checks = &scenario.checks;
    let path = run_dir.join(gauntlet_checkers::history::HISTORY_FILE);
    let history = History::read(&path).map_err(|e| e.to_string())?;
    let client = crate::control::http_client(4);
    // The fabric's read-back (streams, queues, KV stores of its checks).
    let checked = crate::fabric::readback::checked(operations, checks);
    let mut readback = crate::fabric::readback::read_back(
        &client,
        &checked,
        &history,
        target,
        scenario.drain_within(),
        run_start,
    )
    .await?;
    // The actor nodes' read-back (components, counters) for theirs.
    if checks.iter().any(|c| c.is_actors()) {
        let wanted = crate::actors::readback::Wanted {
            services: scenario
                .stack
                .services
                .iter()
                .filter(|(_, s)| s.kind == Some(gauntlet_scenario::ServiceKind::Actors))
                .map(|(n, _)| n)
                .collect(),
            budgets: scenario
                .setup
                .actors
                .as_ref()
                .map(|a| a.restart_budgets().into_iter().collect())
                .unwrap_or_default(),
            stall_within: scenario.stall_within(),
        };
        crate::actors::readback::read_back(&client, &wanted, &history, target, &mut readback)
            .await?;
    }
    // The Reflow nodes (and the tracing store of their events) for theirs.
    if checks.iter().any(|c| c.is_reflow()) {
        crate::reflow::readback::read_back(
            &client,
            scenario,
            checks.contains(&gauntlet_scenario::CheckName::ReflowTraceEventsComplete),
            scenario.drain_within(),
            run_start,
            target,
            &mut readback,
        )
        .await?;
    }
    // The tracing servers' PostgreSQL for theirs.
    if checks.iter().any(|c| c.is_tracing()) {
        crate::tracing::readback::read_back(
            &crate::tracing::readback::stores(scenario),
            crate::tracing::readback::notify_within(operations),
            &history,
            target,
            &mut readback,
        )
        .await?;
    }
    gauntlet_recorder::files::write_json(
        &run_dir.join(gauntlet_checkers::history::READBACK_FILE),
        &readback,
    )
    .map_err(|e| format!("writing {}: {e}", gauntlet_checkers::history::READBACK_FILE))?;
    let names: Vec<String> = checks.iter().map(|c| c.name().to_owned()).collect();
    Ok(check(&names, &history, &readback, faults))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_verdicts_merge_into_the_gate_verdict() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("verdict.json"),
            r#"{"scenario":"s","passed":true,"slo":[]}"#,
        )
        .unwrap();
        let v = gauntlet_checkers::checks::offsets_unique(
            &History::default(),
            &gauntlet_checkers::ReadBack::default(),
            &[],
        );
        let mut failed = v.clone();
        failed.passed = false;
        write_verdict(dir.path(), "s", &[v, failed]).unwrap();
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("verdict.json")).unwrap())
                .unwrap();
        assert_eq!(doc["passed"], false);
        assert_eq!(doc["checks"].as_array().unwrap().len(), 2);
        assert!(doc["slo"].is_array());
    }
}
