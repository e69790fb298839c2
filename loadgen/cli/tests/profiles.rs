//! The scenario's `profile:` end to end: a short fabric run with a link
//! fault profiles the fabric and loadgen per phase and per fault window;
//! each `.pb.gz` parses as profile.proto with samples in the service's own
//! functions; `loadgen profile` lists and exports them; the report has a
//! Profiles section with inline flamegraphs (no script); a bad `profile:`
//! is refused at file:line:col. Assertions on files and structure only.

mod common;

use common::{fabric_node, loadgen, only_run_dir, text};
use gauntlet_recorder::profiles::{self, WindowKind};

const SCENARIO: &str = r#"
name: profiled
seed: 5
stack:
  services:
    fabric: { kind: fabric, env: { STORAGE_FSYNC_POLICY: batch } }
workload:
  max_in_flight: 64
  phases:
    - { name: warmup, duration: 2s, rate: 300/s }
    - { name: steady, duration: 5s, rate: 600/s }
  operations:
    - { name: append, weight: 3, fabric.stream.append: { stream: test/prof/events, payload: 256B, batch: 4 } }
    - { name: read, weight: 1, fabric.stream.read: { stream: test/prof/events, from: latest-10, max: 10 } }
faults:
  - { name: slow, at: 4s, for: 2s, link: loadgen->fabric, latency: 5ms }
profile:
  services: [fabric, loadgen]
  frequency: 199
"#;

#[test]
fn a_run_profiles_its_phases_and_fault_windows() {
    fabric_node();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("profiled.yaml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let out = loadgen(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--out",
            "runs",
            "--quiet",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let run = only_run_dir(&dir.path().join("runs"));

    let index = profiles::read_index(&run)
        .unwrap()
        .expect("profiles/index.json");
    let names: Vec<(String, String, WindowKind)> = index
        .profiles
        .iter()
        .map(|e| (e.service.clone(), e.window.clone(), e.kind))
        .collect();
    for service in ["fabric", "loadgen"] {
        for (window, kind) in [
            ("warmup", WindowKind::Phase),
            ("steady", WindowKind::Phase),
            ("slow", WindowKind::Fault),
        ] {
            assert!(
                names.contains(&(service.to_owned(), window.to_owned(), kind)),
                "{service}/{window} missing: {names:?}"
            );
        }
    }
    // The steady phase spans 2–7 s (its profile leaves out the fault window).
    let steady = index
        .profiles
        .iter()
        .find(|e| e.service == "fabric" && e.window == "steady")
        .unwrap();
    assert_eq!((steady.start_s, steady.end_s), (2.0, 7.0));
    let slow = index
        .profiles
        .iter()
        .find(|e| e.service == "fabric" && e.window == "slow")
        .unwrap();
    assert_eq!((slow.start_s, slow.end_s), (4.0, 6.0));

    // Every window's files parse, whatever was collected; a window without
    // samples says why (a segment skipped on a busy machine is an error of
    // its windows, never a silent gap).
    for e in &index.profiles {
        let gz = std::fs::read(run.join(e.proto_path())).expect("pb.gz");
        let p = loadgen::profile::decode_gz(&gz).expect("profile.proto");
        let folded = std::fs::read_to_string(run.join(e.folded_path())).expect("folded");
        let folded = profiles::Folded::parse(&folded).unwrap();
        assert_eq!(folded.total(), e.samples);
        assert_eq!(loadgen::profile::fold(&p).total(), folded.total());
        if e.samples == 0 {
            assert!(
                !e.errors.is_empty(),
                "{}/{}: empty and no reason",
                e.service,
                e.window
            );
        } else {
            assert_eq!(p.period, 1_000_000_000 / 199);
        }
    }
    // The first window starts with every profiler set up and free: the
    // fabric's warm-up profile has samples in the fabric's own functions,
    // and loadgen's in the harness's.
    for (service, own) in [("fabric", "fabric::"), ("loadgen", "gauntlet_engine::")] {
        let e = index
            .profiles
            .iter()
            .find(|e| e.service == service && e.window == "warmup")
            .unwrap();
        assert!(e.errors.is_empty(), "{service}/warmup: {:?}", e.errors);
        let p =
            loadgen::profile::decode_gz(&std::fs::read(run.join(e.proto_path())).unwrap()).unwrap();
        assert!(!p.sample.is_empty(), "{service}/warmup: no samples");
        let functions = loadgen::profile::fold(&p).functions();
        assert!(
            functions.iter().any(|f| f.name.contains(own)),
            "{service}/warmup: no `{own}` function in {:?}",
            functions
                .iter()
                .take(30)
                .map(|f| &f.name)
                .collect::<Vec<_>>()
        );
    }

    // loadgen profile: the list, the top functions, the export.
    let export = dir.path().join("exported");
    let out = loadgen(
        &[
            "profile",
            run.to_str().unwrap(),
            "--top",
            "3",
            "--export",
            export.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert!(listing.contains("fabric") && listing.contains("slow") && listing.contains("% self"));
    assert!(export.join("fabric-steady.pb.gz").is_file());
    assert!(export.join("loadgen-slow.folded").is_file());

    // The report: a Profiles section, flamegraphs as inline SVG, no script.
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("<section id=\"profiles\">"));
    assert!(html.contains("id=\"profile-fabric-steady\""));
    assert!(html.contains("<figure class=\"flame\"><svg"));
    // The fault window beside the phase it fell in.
    let slow = html
        .split("id=\"profile-fabric-slow\"")
        .nth(1)
        .expect("the fault window's heading");
    assert!(
        slow.contains("phase <strong>steady</strong>"),
        "beside steady"
    );
    assert!(!html.to_lowercase().contains("<script"));
}

#[test]
fn a_bad_profile_section_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("bad.yaml");
    let bad = SCENARIO
        .replace("services: [fabric, loadgen]", "services: [fabrik, loadgen]")
        .replace("frequency: 199", "frequency: 5000");
    std::fs::write(&scenario, bad).unwrap();
    let out = loadgen(&["validate", scenario.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr) + &text(&out.stdout);
    assert!(
        err.contains("bad.yaml:18:") && err.contains("no service `fabrik`"),
        "{err}"
    );
    assert!(err.contains("did you mean `fabric`?"), "{err}");
    assert!(err.contains("frequency 5000 Hz is out of range"), "{err}");

    // loadgen profile on a run without profiles says why.
    let out = loadgen(&["profile", dir.path().to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no profiles/index.json"));
}
