//! The tracing tier end to end, against the real `tracing-server` on this
//! machine's PostgreSQL and Redis (process mode, no Docker): every tracing
//! chaos scenario of `scenarios/chaos/` runs shortened (`--set`) with its
//! checks passing and its faults in `faults.json`; every scenario of
//! `scenarios/tracing/` and the tracing perf scenario run shortened, their
//! operations counted without errors; and the checkers fail when they
//! should — events deleted from PostgreSQL behind the server's back
//! (`tracing.no_acked_event_lost`), and Redis killed under two replicas,
//! which cuts the cross-replica notifications
//! (`tracing.subscribers_see_events`) — naming the events and the
//! subscriber. (`tracing.no_false_ack` fails on constructed histories in
//! `chaos/checkers/tests/tracing.rs`: the real server never acknowledges
//! while PostgreSQL is down.) Behaviour only, never timings.

mod common;

use std::path::{Path, PathBuf};

use common::{
    assert_exit, chaos_scenario, check_verdicts, only_run_dir, perf_scenario, results,
    run_scenario, tracing_server,
};
use gauntlet_recorder::faults::parse;

/// How each chaos scenario is shortened for the tests (debug builds on a
/// shared machine: low rates).
fn shortened(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "tracing-postgres-kill" | "tracing-redis-down" | "tracing-replica-kill" => &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.warmup.rate=20/s",
            "workload.phases.steady.duration=9s",
            "workload.phases.steady.rate=50/s",
            "faults.0.at=4s",
        ],
        "tracing-postgres-slow-link" => &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.warmup.rate=20/s",
            "workload.phases.steady.duration=8s",
            "workload.phases.steady.rate=50/s",
            "faults.0.at=3s",
            "faults.0.for=4s",
        ],
        _ => return None,
    })
}

fn tracing_scenarios(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && p.file_stem().unwrap().to_str().unwrap().starts_with(prefix)
        })
        .collect();
    out.sort();
    out
}

fn history(run: &Path) -> gauntlet_checkers::History {
    gauntlet_checkers::History::read(&run.join("history.jsonl")).unwrap()
}

fn acknowledged_events(h: &gauntlet_checkers::History) -> usize {
    h.operations
        .iter()
        .filter(|o| {
            o.outcome.is_ok()
                && matches!(
                    o.invocation,
                    gauntlet_checkers::Invocation::TracingRecord { .. }
                )
        })
        .count()
}

#[test]
fn every_tracing_chaos_scenario_passes_against_the_server() {
    tracing_server();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/chaos");
    let all = tracing_scenarios(&dir, "tracing-");
    assert_eq!(all.len(), 4, "{all:?}");
    for scenario in all {
        let name = scenario.file_stem().unwrap().to_str().unwrap().to_owned();
        let sets = shortened(&name)
            .unwrap_or_else(|| panic!("{name}: add how to shorten it to tests/tracing.rs"));
        let (o, out) = run_scenario(&scenario, sets);
        assert_exit(&o, 0, &format!("{name}: "));
        let run = only_run_dir(out.path());
        let faults = parse(&std::fs::read(run.join("faults.json")).unwrap()).unwrap();
        assert_eq!(faults.len(), 1, "{name}");
        assert!(faults[0].end_s.is_some(), "{name}: healed");
        let (kind, target) = (faults[0].kind.as_str(), faults[0].target.as_str());
        match name.as_str() {
            "tracing-postgres-kill" => assert_eq!((kind, target), ("process.kill", "db")),
            "tracing-redis-down" => assert_eq!((kind, target), ("process.kill", "cache")),
            "tracing-replica-kill" => assert_eq!((kind, target), ("process.kill", "ts2")),
            "tracing-postgres-slow-link" => {
                assert_eq!((kind, target), ("link.latency", "ts->db"));
            }
            _ => unreachable!("listed in shortened()"),
        }
        let checks = check_verdicts(&run);
        let mut names: Vec<&str> = checks.iter().map(|c| c.0.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "tracing.no_acked_event_lost",
                "tracing.no_false_ack",
                "tracing.subscribers_see_events"
            ],
            "{name}"
        );
        for (check, passed, evidence) in &checks {
            assert!(passed, "{name}: {check}: {evidence}");
        }
        // Events were acknowledged and read back, notifications seen.
        let h = history(&run);
        assert!(acknowledged_events(&h) > 100, "{name}");
        let readback: gauntlet_checkers::ReadBack =
            serde_json::from_slice(&std::fs::read(run.join("readback.json")).unwrap()).unwrap();
        let tracing = readback.tracing.expect("the tracing read-back");
        assert!(tracing.events.len() >= acknowledged_events(&h), "{name}");
        assert_eq!(tracing.postgres_services, ["db"], "{name}");
        assert!(
            h.operations.iter().any(|o| matches!(
                &o.invocation,
                gauntlet_checkers::Invocation::TracingNotified { .. }
            )),
            "{name}: notifications recorded"
        );
        if name == "tracing-postgres-kill" {
            // Requests were sent while PostgreSQL was down, and judged.
            let v = check_verdicts(&run);
            let false_ack = v.iter().find(|c| c.0 == "tracing.no_false_ack").unwrap();
            assert!(false_ack.2.contains("1 window(s)"), "{}", false_ack.2);
        }
    }
}

#[test]
fn every_tracing_scenario_runs_and_counts_its_operations() {
    tracing_server();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/tracing");
    let mut all = tracing_scenarios(&dir, "");
    all.push(perf_scenario("tracing-vs-insert.yaml"));
    assert_eq!(all.len(), 4, "{all:?}");
    for scenario in all {
        let name = scenario.file_stem().unwrap().to_str().unwrap().to_owned();
        let sets: &[&str] = match name.as_str() {
            // Behaviour, not timings: the scenarios' latency SLOs are left
            // out (`slo={}`); errors are asserted below.
            "ingest" | "subscriptions" => &[
                "workload.phases.warmup.duration=1s",
                "workload.phases.warmup.rate=20/s",
                "workload.phases.steady.duration=3s",
                "workload.phases.steady.rate=50/s",
                "slo={}",
            ],
            "query-mix" => &[
                "workload.phases.fill.duration=1s",
                "workload.phases.steady.duration=3s",
                "workload.phases.steady.rate=50/s",
                "slo={}",
            ],
            "tracing-vs-insert" => &[
                "workload.phases.insert.duration=2s",
                "workload.phases.insert.rate=50/s",
                "workload.phases.gap.duration=1s",
                "workload.phases.record.duration=2s",
                "workload.phases.record.rate=50/s",
                "slo={}",
            ],
            other => panic!("{other}: add how to shorten it to tests/tracing.rs"),
        };
        let (o, out) = run_scenario(&scenario, sets);
        assert_exit(&o, 0, &format!("{name}: "));
        let run = only_run_dir(out.path());
        let r = results(&run);
        assert!(r.complete, "{name}");
        for op in &r.totals {
            assert!(op.count > 0, "{name}: {}", op.operation);
            assert_eq!(op.errors, 0, "{name}: {op:?}");
        }
        match name.as_str() {
            "ingest" => {
                // Every chain recorded its 10 events and read its trace back.
                let traces = r.total("trace").unwrap().count;
                assert_eq!(r.total("trace.record").unwrap().count, traces * 10);
                assert_eq!(r.total("trace.get").unwrap().count, traces);
            }
            "query-mix" => {
                assert!(r.total("sql_count").unwrap().count > 0);
                assert!(r.total("redis_set").unwrap().count > 0);
            }
            "subscriptions" => {
                // Across replicas both ways, and through nginx.
                for op in ["fanout_1to2", "fanout_2to1", "fanout_lb"] {
                    assert!(r.total(op).unwrap().count > 0, "{op}");
                }
                let checks = check_verdicts(&run);
                assert!(checks.iter().all(|c| c.1), "{checks:?}");
            }
            "tracing-vs-insert" => {
                // The same rows both ways, in their own phases.
                let insert = r.total("insert").unwrap().count;
                let record = r.total("record").unwrap().count;
                assert_eq!(insert, 100);
                assert_eq!(record, 100);
            }
            _ => unreachable!(),
        }
    }
}

/// Events deleted from `tracing.events` behind the server's back (a
/// `postgres.query` of the scenario) are acknowledged events PostgreSQL no
/// longer holds: `tracing.no_acked_event_lost` fails, naming them.
#[test]
fn events_deleted_behind_the_server_fail_the_lost_event_check() {
    tracing_server();
    let (o, out) = run_scenario(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/tracing/ingest.yaml"),
        &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=2s",
            "workload.phases.steady.rate=50/s",
            "workload.phases.warmup.rate=50/s",
            "workload.phases.steady.mix={ vandal: 1 }",
            "workload.operations.3={ name: vandal, weight: 0, postgres.query: { service: db, sql: \"DELETE FROM tracing.events WHERE event_id IN (SELECT event_id FROM tracing.events ORDER BY seq LIMIT 3)\" } }",
            "slo={}",
        ],
    );
    assert_exit(&o, 1, "");
    let run = only_run_dir(out.path());
    let (_, passed, evidence) = check_verdicts(&run)
        .into_iter()
        .find(|c| c.0 == "tracing.no_acked_event_lost")
        .unwrap();
    assert!(!passed, "{evidence}");
    assert!(
        evidence.contains("missing from tracing.events"),
        "{evidence}"
    );
}

/// Redis killed under two replicas: a replica's events no longer reach the
/// other's subscribers (the server falls back to its own events), so
/// `tracing.subscribers_see_events` fails, counting and naming the events
/// missed and the subscriber.
#[test]
fn redis_down_across_replicas_fails_the_subscriber_check_naming_the_loss() {
    tracing_server();
    let (o, out) = run_scenario(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/tracing/subscriptions.yaml"),
        &[
            "workload.phases.warmup.duration=2s",
            "workload.phases.steady.duration=8s",
            "workload.phases.steady.rate=40/s",
            "faults=[{ name: redis-down, at: 3s, kill: cache, signal: KILL, restart_after: 4s }]",
            "slo={}",
        ],
    );
    assert_exit(&o, 1, "");
    let run = only_run_dir(out.path());
    let (_, passed, evidence) = check_verdicts(&run)
        .into_iter()
        .find(|c| c.0 == "tracing.subscribers_see_events")
        .unwrap();
    assert!(!passed, "{evidence}");
    assert!(evidence.contains("never reached subscriber"), "{evidence}");
    assert!(evidence.contains("missed"), "{evidence}");
    // Nothing acknowledged was lost meanwhile.
    let (_, passed, evidence) = check_verdicts(&run)
        .into_iter()
        .find(|c| c.0 == "tracing.no_acked_event_lost")
        .unwrap();
    assert!(passed, "{evidence}");
}

#[test]
fn the_tracing_scenarios_are_bundled() {
    assert!(perf_scenario("tracing-vs-insert.yaml").is_file());
    for f in [
        "tracing-postgres-kill.yaml",
        "tracing-redis-down.yaml",
        "tracing-replica-kill.yaml",
        "tracing-postgres-slow-link.yaml",
    ] {
        assert!(chaos_scenario(f).is_file(), "{f}");
    }
}

/// A server that requires a JWT: operations with the scenario's `token`
/// (HS256 with the server's secret, seed 003's issuer and audience) are
/// served, operations without one are refused at the upgrade and counted
/// as `ws_handshake` errors, never as successes.
#[test]
fn a_token_opens_a_server_that_requires_auth() {
    tracing_server();
    #[derive(serde::Serialize)]
    struct Claims {
        sub: String,
        iss: String,
        aud: String,
        exp: u64,
    }
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &Claims {
            sub: "gauntlet".into(),
            iss: "reflow-tracing".into(),
            aud: "reflow-clients".into(),
            exp,
        },
        &jsonwebtoken::EncodingKey::from_secret(b"gauntlet-secret"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("auth.yaml");
    std::fs::write(
        &scenario,
        r#"name: auth
stack:
  services:
    db: { kind: postgres }
    ts:
      kind: tracing
      env:
        TRACING_DATABASE_URL: "postgresql://postgres@{addr:db}/postgres"
        TRACING_REQUIRE_AUTH: true
        JWT_SECRET: gauntlet-secret
workload:
  timeout: 5s
  phases:
    - { name: steady, duration: 2s, rate: 20/s }
  operations:
    - { name: with_token, tracing.record_event: { service: ts, token: "${TRACING_TOKEN}" } }
    - { name: without, tracing.record_event: { service: ts } }
"#,
    )
    .unwrap();
    let out = dir.path().join("runs");
    let o = common::loadgen_with_env(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ],
        dir.path(),
        &[("TRACING_TOKEN", &token)],
    );
    assert_exit(&o, 0, "");
    let r = results(&only_run_dir(&out));
    let ok = r.total("with_token").unwrap();
    assert!(ok.count > 0 && ok.errors == 0, "{ok:?}");
    let refused = r.total("without").unwrap();
    assert!(refused.count > 0, "{refused:?}");
    assert_eq!(refused.errors, refused.count, "{refused:?}");
    assert_eq!(
        refused.errors_by_kind.get("ws_handshake"),
        Some(&refused.count),
        "{refused:?}"
    );
}
