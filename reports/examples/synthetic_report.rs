//! Measures the HTML report on a synthetic 30-minute run with 4 operations
//! and 5 faults: builds the run directory, then loads and renders it a few
//! times and prints the report's size and the render time.
//!
//! ```sh
//! cargo run --release -p gauntlet-reports --example synthetic_report -- [DIR]
//! ```
//!
//! DIR defaults to `target/gauntlet/synthetic-30m`; `report.html` is left in it.

#[path = "../tests/support/synthetic.rs"]
mod synthetic;

use std::path::PathBuf;
use std::time::Instant;

use gauntlet_reports::{RenderOptions, RunData, render_run};

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/gauntlet/synthetic-30m"));
    let _ = std::fs::remove_dir_all(&dir);
    let spec = synthetic::Spec::thirty_minutes();
    let t = Instant::now();
    let results = synthetic::build(&dir, &spec);
    let samples: u64 = results.totals.iter().map(|o| o.count).sum();
    println!(
        "built {} ({} s, {} operations, {} faults, {} samples) in {:.2} s",
        dir.display(),
        spec.seconds,
        spec.operations.len(),
        spec.faults,
        samples,
        t.elapsed().as_secs_f64()
    );
    for f in [
        "results.json",
        "latency.hlog",
        "metrics.jsonl",
        "faults.json",
    ] {
        let len = std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0);
        println!("  {f}: {:.1} KiB", len as f64 / 1024.0);
    }
    let opts = RenderOptions::default();
    let mut load_ms = Vec::new();
    let mut render_ms = Vec::new();
    let mut html = String::new();
    for _ in 0..5 {
        let t = Instant::now();
        let run = RunData::load(&dir).expect("the synthetic run loads");
        load_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        html = render_run(&run, None, &opts);
        render_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    std::fs::write(dir.join("report.html"), &html).unwrap();
    let svgs = html.matches("<svg").count();
    println!(
        "report.html: {:.1} KiB, {} charts; read run directory {:.0} ms, render {:.0} ms (median of 5)",
        html.len() as f64 / 1024.0,
        svgs,
        median(&mut load_ms),
        median(&mut render_ms)
    );
    let mut undownsampled = opts.clone();
    undownsampled.max_points = usize::MAX;
    let run = RunData::load(&dir).unwrap();
    let t = Instant::now();
    let full = render_run(&run, None, &undownsampled);
    println!(
        "without downsampling: {:.1} KiB, render {:.0} ms",
        full.len() as f64 / 1024.0,
        t.elapsed().as_secs_f64() * 1000.0
    );
}
