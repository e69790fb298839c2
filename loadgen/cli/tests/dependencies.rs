//! The dependency rules of ARCHITECTURE.md, checked on the workspace's
//! manifests (`cargo metadata`): dependencies point one way, so the engine
//! stays system-agnostic, the drivers never boot anything, and nothing
//! builds on the command line.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Each workspace crate and the workspace crates it depends on (normal,
/// dev and build dependencies), directly.
fn workspace_graph() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = doc["packages"].as_array().unwrap();
    let members: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .filter(|d| members.contains(d))
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

/// Everything `krate` reaches through the workspace graph.
fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, krate: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![krate.to_owned()];
    while let Some(k) = todo.pop() {
        for d in graph.get(&k).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

fn assert_never(graph: &BTreeMap<String, BTreeSet<String>>, krate: &str, forbidden: &[&str]) {
    let reached = reaches(graph, krate);
    let bad: Vec<&&str> = forbidden.iter().filter(|f| reached.contains(**f)).collect();
    assert!(
        bad.is_empty(),
        "`{krate}` depends (directly or through the workspace) on {bad:?}; see ARCHITECTURE.md, \"Invariants\""
    );
}

#[test]
fn dependencies_point_one_way() {
    let graph = workspace_graph();
    for krate in [
        "gauntlet-engine",
        "gauntlet-drivers",
        "gauntlet-stack",
        "gauntlet-containers",
        "gauntlet-scenario",
    ] {
        assert!(
            graph.contains_key(krate),
            "no crate `{krate}` in the workspace"
        );
    }
    // Nothing depends on the command line.
    for krate in graph.keys().filter(|k| *k != "loadgen") {
        assert_never(&graph, krate, &["loadgen"]);
    }
    // The engine knows no system: no driver, no stack, no catalog, no wire types.
    assert_never(
        &graph,
        "gauntlet-engine",
        &[
            "gauntlet-drivers",
            "gauntlet-stack",
            "gauntlet-containers",
            "gauntlet-scenario",
            "fabric-wire",
        ],
    );
    // Drivers never boot, stop or signal a service.
    assert_never(
        &graph,
        "gauntlet-drivers",
        &["gauntlet-stack", "gauntlet-containers", "gauntlet-faults"],
    );
    // Stacks generate no load and judge nothing.
    for stack in ["gauntlet-stack", "gauntlet-containers"] {
        assert_never(
            &graph,
            stack,
            &["gauntlet-engine", "gauntlet-drivers", "gauntlet-checkers"],
        );
    }
    // Reports render files: never the harness or the gate.
    assert_never(&graph, "gauntlet-reports", &["gauntlet-gate"]);
    // The harness never links the system under test, only its wire types.
    for krate in graph.keys().filter(|k| *k != "fabric") {
        assert_never(&graph, krate, &["fabric"]);
    }
}

#[test]
fn a_forbidden_dependency_through_another_crate_is_caught() {
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
    ]);
    assert_eq!(
        reaches(&graph, "a"),
        BTreeSet::from(["b".to_owned(), "c".to_owned()])
    );
    assert!(std::panic::catch_unwind(|| assert_never(&graph, "a", &["c"])).is_err());
    assert_never(&graph, "b", &["a"]);
}
