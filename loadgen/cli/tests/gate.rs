//! The release gate end to end: baselines and verdicts on run directories
//! recorded with the real fabric and checked in (`loadgen/gate/tests/fixtures`:
//! `base-*` and `same-1` with `interval` fsync, `slow-1` with `always`),
//! JUnit validated against its schema, exit codes; `run` failing an SLO; `ab`.

mod common;

use std::path::{Path, PathBuf};

use common::{loadgen, text};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gate/tests/fixtures")
}

fn fixture(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

fn baseline(dir: &Path) -> String {
    let file = dir.join("baseline.json");
    let out = loadgen(
        &[
            "baseline",
            &fixture("base-1"),
            &fixture("base-2"),
            "--out",
            file.to_str().unwrap(),
        ],
        dir,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("2 run(s), phases [steady]"),
        "{}",
        text(&out.stdout)
    );
    file.display().to_string()
}

fn verdict(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("verdict.json")).unwrap()).unwrap()
}

fn junit_is_valid(dir: &Path) {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ci/schemas/junit.xsd");
    let out = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .arg(dir.join("junit.xml"))
        .output()
        .expect("xmllint is installed by ci/setup.sh (Debian package libxml2-utils)");
    assert!(
        out.status.success(),
        "junit.xml does not validate: {}",
        text(&out.stderr)
    );
}

#[test]
fn the_same_system_passes_and_writes_all_three_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let base = baseline(dir.path());
    let out_dir = dir.path().join("out");
    let out = loadgen(
        &[
            "gate",
            &fixture("same-1"),
            "--baseline",
            &base,
            "--out",
            out_dir.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let v = verdict(&out_dir);
    assert_eq!(v["passed"], true);
    assert_eq!(v["regressions"], 0);
    // 2 operations × 5 metrics, and the scenario's three SLO limits.
    assert_eq!(v["comparisons"].as_array().unwrap().len(), 10);
    assert_eq!(v["slo"].as_array().unwrap().len(), 3);
    junit_is_valid(&out_dir);
    let md = std::fs::read_to_string(out_dir.join("summary.md")).unwrap();
    assert!(
        md.contains("✅ passed") && md.contains("| append | p99 |"),
        "{md}"
    );
}

#[test]
fn a_slower_build_is_a_regression_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let base = baseline(dir.path());
    let out_dir = dir.path().join("out");
    let out = loadgen(
        &[
            "gate",
            &fixture("slow-1"),
            "--baseline",
            &base,
            "--out",
            out_dir.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let v = verdict(&out_dir);
    let p50 = v["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["operation"] == "append" && c["metric"] == "p50")
        .unwrap();
    assert_eq!(p50["outcome"], "regression");
    assert!(p50["change_low"].as_f64().unwrap() > 0.10, "{p50}");
    junit_is_valid(&out_dir);
    let junit = std::fs::read_to_string(out_dir.join("junit.xml")).unwrap();
    assert!(junit.contains(r#"<failure type="regression""#));
    assert!(
        std::fs::read_to_string(out_dir.join("summary.md"))
            .unwrap()
            .contains("❌ regression")
    );
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    // A missing baseline.
    let out = loadgen(
        &["gate", &fixture("same-1"), "--baseline", "nope.json"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("loadgen baseline RUN_DIR"),
        "{}",
        text(&out.stderr)
    );
    // A baseline of another scenario.
    let base = baseline(dir.path());
    let mut other: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&base).unwrap()).unwrap();
    other["scenario"] = "other".into();
    let other_path = dir.path().join("other.json");
    std::fs::write(&other_path, other.to_string()).unwrap();
    let out = loadgen(
        &[
            "gate",
            &fixture("same-1"),
            "--baseline",
            other_path.to_str().unwrap(),
            "--out",
            "o",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("the baseline is scenario `other`"),
        "{}",
        text(&out.stderr)
    );
    // Not a run directory.
    let out = loadgen(
        &["gate", dir.path().to_str().unwrap(), "--baseline", &base],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is not a run directory"),
        "{}",
        text(&out.stderr)
    );
    // A profile naming operations the runs do not have.
    let profile =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ci/profiles/actors-seed001.yaml");
    let out = loadgen(
        &[
            "gate",
            &fixture("same-1"),
            "--baseline",
            &base,
            "--profile",
            profile.to_str().unwrap(),
            "--out",
            "o",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("does not have"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_profile_replaces_the_scenarios_criteria() {
    let dir = tempfile::tempdir().unwrap();
    let base = baseline(dir.path());
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ci/profiles/fabric.yaml");
    let out = loadgen(
        &[
            "gate",
            &fixture("same-1"),
            "--baseline",
            &base,
            "--profile",
            profile.to_str().unwrap(),
            "--out",
            "o",
        ],
        dir.path(),
    );
    let v = verdict(&dir.path().join("o"));
    // fabric.yaml limits append and read: p99 and errors each.
    assert_eq!(
        v["slo"].as_array().unwrap().len(),
        4,
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_run_that_misses_its_slo_exits_1_and_says_why() {
    common::fabric_node();
    let dir = tempfile::tempdir().unwrap();
    let scenario = fixtures().join("scenario.yaml");
    let out = loadgen(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--quiet",
            "--out",
            "runs",
            "--set",
            "workload.phases.warmup.duration=1s",
            "--set",
            "workload.phases.steady.duration=2s",
            "--set",
            "slo.append.p99=1us",
        ],
        dir.path(),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("slo FAIL append p99 <= 1us"), "{stdout}");
    let run = std::fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !p.is_symlink())
        .unwrap();
    assert_eq!(verdict(&run)["slo_failures"], 1);
}

#[test]
fn ab_alternates_the_two_builds_and_gates_b_against_a() {
    common::fabric_node();
    let dir = tempfile::tempdir().unwrap();
    let bins = common::bin_dir();
    let bins = bins.to_str().unwrap();
    let scenario = fixtures().join("scenario.yaml");
    let out = loadgen(
        &[
            "ab",
            scenario.to_str().unwrap(),
            "--baseline-bin",
            bins,
            "--candidate-bin",
            bins,
            "--rounds",
            "2",
            "--out",
            "ab",
            "--set",
            "workload.phases.warmup.duration=1s",
            "--set",
            "workload.phases.steady.duration=6s",
        ],
        dir.path(),
    );
    let err = text(&out.stderr);
    // The verdict on two identical builds depends on this machine's noise;
    // the mechanics do not: four runs, in order, and a verdict of B against A.
    assert!(matches!(out.status.code(), Some(0 | 1)), "{err}");
    let order: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("ab: round "))
        .collect();
    assert_eq!(
        order,
        [
            "1/2, build A",
            "1/2, build B",
            "2/2, build A",
            "2/2, build B"
        ],
        "{err}"
    );
    let ab = dir.path().join("ab");
    let v = verdict(&ab);
    let runs = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        runs("baseline_runs").iter().all(|r| r.contains("/ab/A")),
        "{v}"
    );
    assert!(
        runs("candidate_runs").iter().all(|r| r.contains("/ab/B")),
        "{v}"
    );
    assert_eq!(runs("candidate_runs").len(), 2);
    assert!(ab.join("baseline.json").is_file() && ab.join("junit.xml").is_file());

    let out = loadgen(
        &[
            "ab",
            scenario.to_str().unwrap(),
            "--baseline-bin",
            "/nonexistent",
            "--candidate-bin",
            bins,
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("has no fabric-node"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_run_limited_by_the_load_generator_is_flagged_in_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let base = baseline(dir.path());
    let run = dir.path().join("flagged");
    std::fs::create_dir_all(&run).unwrap();
    for f in ["results.json", "latency.hlog", "scenario.yaml"] {
        std::fs::copy(fixtures().join("same-1").join(f), run.join(f)).unwrap();
    }
    let mut results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    results["engine"]["bottleneck"] = "the engine fell behind".into();
    std::fs::write(run.join("results.json"), results.to_string()).unwrap();
    let out = loadgen(
        &["gate", run.to_str().unwrap(), "--baseline", &base],
        dir.path(),
    );
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        text(&out.stderr)
    );
    let v = verdict(&run);
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("not a measurement"),
        "{v}"
    );
    let md = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(
        md.contains("⚠️") && md.contains("the engine fell behind"),
        "{md}"
    );
}
