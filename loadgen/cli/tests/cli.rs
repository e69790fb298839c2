//! The command line's contract: validation errors as file:line:col with exit
//! code 2, the schema in sync, usage errors as exit code 2.

mod common;

use common::{loadgen, text};

#[test]
fn validate_accepts_the_bundled_scenarios() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = loadgen(&["validate", "scenarios/smoke.yaml"], &root);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("scenarios/smoke.yaml: ok"));
}

#[test]
fn validate_reports_every_mistake_with_its_position_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        common::SHORT
            .replace("duration: 1s, rate: 100/s", "durtion: 1s, rate: 100/s")
            .replace("payload: 64B", "payload: 64")
            .replace("seed: 3", "seed: 3\nworkers: 4"),
    )
    .unwrap();
    let out = loadgen(&["validate", bad.to_str().unwrap()], dir.path());
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let file = bad.display().to_string();
    assert!(
        err.contains(&format!("{file}:4:1: error: unknown key `workers`")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:11:23: error: unknown key `durtion`")),
        "{err}"
    );
    assert!(err.contains("did you mean `duration`?"), "{err}");
    assert!(err.contains("size `64` has no unit"), "{err}");
    assert!(err.contains("3 errors"), "{err}");
}

#[test]
fn run_refuses_an_invalid_scenario_with_exit_2_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, common::SHORT.replace("rate: 300/s", "rate: fast")).unwrap();
    let out = loadgen(&["run", bad.to_str().unwrap(), "--out", "runs"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("bad.yaml:12:43:"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !dir.path().join("runs").exists(),
        "nothing may run for an invalid scenario"
    );

    let out = loadgen(
        &[
            "run",
            bad.to_str().unwrap(),
            "--set",
            "workload.phases.steady.rate=300/s",
            "--out",
            "runs",
            "--set",
            "seed=x",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--set seed=x"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_missing_file_and_bad_usage_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = loadgen(&["validate", "nope.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read the scenario"));
    let out = loadgen(&["frobnicate"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let out = loadgen(&["validate"], dir.path());
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn schema_prints_the_committed_schema() {
    let dir = tempfile::tempdir().unwrap();
    let out = loadgen(&["schema"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/schema.json"),
    )
    .unwrap();
    assert_eq!(text(&out.stdout), committed);
}
