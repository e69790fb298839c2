//! The report from the command line: a run ends in `report.html` and a
//! `metrics.jsonl` of the fabric's /metrics and process; `loadgen report`
//! renders a killed run's directory again; `loadgen compare` puts two runs
//! side by side; bad input exits 2 with a hint. Assertions are on files,
//! exit codes and structure, never on timings; every wait is bounded.

mod common;

use common::only_run_dir;

#[path = "../../../reports/tests/support/synthetic.rs"]
mod synthetic;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{bin_dir, fabric_node, loadgen, text};
use gauntlet_recorder::metrics::MetricsRecord;

fn metrics(run_dir: &Path) -> Vec<MetricsRecord> {
    gauntlet_recorder::metrics::parse(
        &std::fs::read_to_string(run_dir.join("metrics.jsonl")).expect("metrics.jsonl"),
    )
}

#[test]
fn a_run_ends_in_a_report_and_collects_the_fabrics_metrics_and_process() {
    fabric_node();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("short.yaml");
    std::fs::write(&scenario, common::SHORT).unwrap();
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
    let run_dir = only_run_dir(&dir.path().join("runs"));
    assert!(
        text(&out.stdout).contains(&format!(
            "report: {}",
            run_dir.join("report.html").display()
        )),
        "{}",
        text(&out.stdout)
    );

    // metrics.jsonl: about one line a second for the fabric, with its
    // process figures and its Prometheus samples as exposed.
    let records = metrics(&run_dir);
    assert!(records.len() >= 3, "{} lines", records.len());
    assert!(records.iter().all(|r| r.service == "fabric"));
    assert!(records.windows(2).all(|w| w[0].t_s <= w[1].t_s));
    let scraped: Vec<&MetricsRecord> = records
        .iter()
        .filter(|r| r.scrape_error.is_none())
        .collect();
    assert!(scraped.len() >= 3, "{records:?}");
    assert!(
        scraped.iter().all(|r| r.pid.is_some()
            && r.cpu_seconds.is_some()
            && r.rss_bytes.is_some_and(|b| b > 0))
    );
    let last = scraped.last().unwrap();
    let written = last
        .metrics
        .get("flowmesh_stream_events_written_total")
        .copied()
        .expect("the fabric's event counter was scraped");
    assert!(written > 0.0);
    assert!(
        !last.metrics.keys().any(|k| k.contains("_bucket")),
        "histogram buckets are left out"
    );
    assert_eq!(
        records[0]
            .types
            .get("flowmesh_stream_events_written_total")
            .map(String::as_str),
        Some("counter")
    );

    // report.html: self-contained, with the sections and the system charts.
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains("Content-Security-Policy"));
    assert!(!html.contains("http://") && !html.contains("https://"));
    for needle in [
        "id=\"summary\"",
        "id=\"op-append\"",
        "id=\"op-read\"",
        "id=\"system\"",
        "id=\"chaos\"",
        "No faults were injected in this run",
        "aria-label=\"fabric: CPU over time\"",
        "aria-label=\"fabric: RSS over time\"",
        "aria-label=\"fabric: Stream events over time\"",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    // Rendering it again from the files gives the same page.
    let again = loadgen(
        &["report", run_dir.to_str().unwrap(), "--out", "again.html"],
        dir.path(),
    );
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let again = std::fs::read_to_string(dir.path().join("again.html")).unwrap();
    let section = |page: &str, id: &str| -> String {
        let start = page.find(&format!("<section id=\"{id}\"")).expect(id);
        let end = page[start..].find("</section>").unwrap() + start;
        page[start..end].to_owned()
    };
    for id in ["summary", "op-append", "op-read", "system", "chaos"] {
        assert_eq!(
            section(&again, id),
            section(&html, id),
            "#{id} rendered again"
        );
    }
}

const LONG: &str = r#"
name: long
stack:
  services:
    fabric: { kind: fabric }
workload:
  phases:
    - { name: steady, duration: 120s, rate: 50/s }
  operations:
    - { name: append, fabric.stream.append: { stream: test/long/events } }
"#;

/// Starts the long scenario and waits (bounded) until a few seconds have
/// been recorded and collected.
fn start_long_run(dir: &Path) -> (std::process::Child, PathBuf) {
    fabric_node();
    let scenario = dir.join("long.yaml");
    std::fs::write(&scenario, LONG).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--out",
            "runs",
            "--quiet",
        ])
        .current_dir(dir)
        .env("GAUNTLET_BIN_DIR", bin_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ready = false;
    while Instant::now() < deadline && !ready {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            ready = line.contains("ready at");
        }
    }
    if !ready {
        let _ = child.kill();
        let _ = child.wait();
        panic!("loadgen never reported the stack ready");
    }
    let run_dir = only_run_dir(&dir.join("runs"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && (!run_dir.join("results.json").exists()
            || std::fs::read_to_string(run_dir.join("metrics.jsonl"))
                .map(|t| t.lines().count() < 3)
                .unwrap_or(true))
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    (child, run_dir)
}

#[test]
fn report_renders_a_killed_runs_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, run_dir) = start_long_run(dir.path());
    child.kill().unwrap(); // SIGKILL: nothing gets to finish
    let _ = child.wait();
    assert!(
        !run_dir.join("report.html").exists(),
        "a killed run wrote no report"
    );

    let out = loadgen(&["report", run_dir.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(
        html.contains(">INCOMPLETE<"),
        "the verdict says the run did not finish"
    );
    assert!(html.contains("id=\"op-append\""));
    assert!(html.contains("aria-label=\"fabric: CPU over time\""));
    assert!(html.contains("aria-label=\"append: latency by percentile\""));
}

#[test]
fn an_interrupted_run_still_ends_in_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let (child, run_dir) = start_long_run(dir.path());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "an interrupted run exits 3");
    let html = std::fs::read_to_string(run_dir.join("report.html")).expect("report.html");
    assert!(html.contains(">INCOMPLETE<"));
    assert!(html.contains("interrupted by a signal"));
}

#[test]
fn report_and_compare_exit_2_on_bad_input_and_3_when_they_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let out = loadgen(&["report", "no-such-run"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("no-such-run does not exist") && err.contains("hint:"),
        "{err}"
    );

    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let out = loadgen(&["report", "empty"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not a run directory"),
        "{}",
        text(&out.stderr)
    );

    std::fs::create_dir(dir.path().join("torn")).unwrap();
    std::fs::write(
        dir.path().join("torn/results.json"),
        "{\"format\": 1, \"scen",
    )
    .unwrap();
    let out = loadgen(&["report", "torn"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not a valid results.json"));

    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let small = synthetic::Spec {
        seconds: 20,
        faults: 1,
        ..synthetic::Spec::small()
    };
    synthetic::build(&a, &small);
    synthetic::build(
        &b,
        &synthetic::Spec {
            slowdown: 1.5,
            ..small.clone()
        },
    );
    let out = loadgen(&["compare", "a", "missing"], dir.path());
    assert_eq!(out.status.code(), Some(2));

    let out = loadgen(&["compare", "a", "b"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let html = std::fs::read_to_string(b.join("compare-a.html")).unwrap();
    assert!(html.contains("data-table=\"changes\"") && html.contains("class=\"worse\""));

    let out = loadgen(&["report", "b", "--baseline", "a"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let html = std::fs::read_to_string(b.join("report.html")).unwrap();
    assert!(html.contains("id=\"comparison\""));
    // A baseline given as a results.json file works too.
    let out = loadgen(
        &[
            "report",
            "b",
            "--baseline",
            "a/results.json",
            "--out",
            "with-file.html",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = loadgen(
        &["report", "a", "--out", "no-such-dir/report.html"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot write"));
}
