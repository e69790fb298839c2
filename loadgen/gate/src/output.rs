//! The gate's outputs: `verdict.json` (the [`Verdict`] as is), `junit.xml`
//! (one test case per operation × metric and per SLO limit) and `summary.md`
//! (for a CI job summary).

use std::fmt::Write as _;
use std::path::Path;

use crate::GateError;
use crate::verdict::{Comparison, Metric, Outcome, Verdict};

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn pct(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

/// A change as people read it: `+12.3% [+8.1%, +16.0%]` (points for errors).
pub fn describe_change(c: &Comparison) -> String {
    let fmt = |x: f64| match c.metric {
        Metric::Errors => format!("{:+.3} pts", x * 100.0),
        _ => pct(x),
    };
    match (c.change, c.change_low, c.change_high) {
        (Some(p), Some(l), Some(h)) => format!("{} [{}, {}]", fmt(p), fmt(l), fmt(h)),
        _ => "n/a".to_owned(),
    }
}

fn describe_tolerance(c: &Comparison) -> String {
    match c.metric {
        Metric::Errors => format!("{:.3} pts", c.tolerance * 100.0),
        _ => format!("{:.1}%", c.tolerance * 100.0),
    }
}

fn describe_value(metric: Metric, v: Option<f64>) -> String {
    match (metric, v) {
        (_, None) => "-".to_owned(),
        (Metric::Throughput, Some(v)) => format!("{v:.1}/s"),
        (Metric::Errors, Some(v)) => format!("{:.3}%", v * 100.0),
        (_, Some(v)) if v >= 1_000.0 => format!("{:.2}ms", v / 1_000.0),
        (_, Some(v)) => format!("{v:.0}us"),
    }
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::Regression => "REGRESSION",
        Outcome::Improvement => "improvement",
        Outcome::Inconclusive => "inconclusive",
    }
}

/// JUnit XML: a suite of comparisons and a suite of SLO limits.
pub fn junit(v: &Verdict) -> String {
    let mut x = String::new();
    let tests = v.comparisons.len() + v.slo.len();
    let failures = v.regressions + v.slo_failures;
    let _ = writeln!(x, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        x,
        r#"<testsuites name="gauntlet gate: {}" tests="{tests}" failures="{failures}" errors="0">"#,
        xml_escape(&v.scenario)
    );
    let _ = writeln!(
        x,
        r#"  <testsuite name="{}.gate" tests="{}" failures="{}" errors="0" skipped="0">"#,
        xml_escape(&v.scenario),
        v.comparisons.len(),
        v.regressions
    );
    for c in &v.comparisons {
        let _ = write!(
            x,
            r#"    <testcase classname="{}.gate.{}" name="{}""#,
            xml_escape(&v.scenario),
            xml_escape(&c.operation),
            c.metric.name()
        );
        let detail = format!(
            "{}: {} → {}, change {} (tolerance {}); {}",
            outcome_word(c.outcome),
            describe_value(c.metric, c.baseline),
            describe_value(c.metric, c.candidate),
            describe_change(c),
            describe_tolerance(c),
            if c.note.is_empty() { "ok" } else { &c.note }
        );
        if c.outcome == Outcome::Regression {
            let _ = writeln!(x, ">");
            let _ = writeln!(
                x,
                r#"      <failure type="regression" message="{}">{}</failure>"#,
                xml_escape(&detail),
                xml_escape(&detail)
            );
            let _ = writeln!(x, "    </testcase>");
        } else {
            let _ = writeln!(x, ">");
            let _ = writeln!(x, "      <system-out>{}</system-out>", xml_escape(&detail));
            let _ = writeln!(x, "    </testcase>");
        }
    }
    let _ = writeln!(x, "  </testsuite>");
    let _ = writeln!(
        x,
        r#"  <testsuite name="{}.slo" tests="{}" failures="{}" errors="0" skipped="0">"#,
        xml_escape(&v.scenario),
        v.slo.len(),
        v.slo_failures
    );
    for s in &v.slo {
        let name = format!("{} {}", s.metric, s.limit);
        let _ = writeln!(
            x,
            r#"    <testcase classname="{}.slo.{}" name="{}">"#,
            xml_escape(&v.scenario),
            xml_escape(&s.operation),
            xml_escape(&name)
        );
        let detail = format!("{} {} (actual {})", s.metric, s.limit, s.actual);
        if s.passed {
            let _ = writeln!(x, "      <system-out>{}</system-out>", xml_escape(&detail));
        } else {
            let _ = writeln!(
                x,
                r#"      <failure type="slo" message="{}">{}</failure>"#,
                xml_escape(&detail),
                xml_escape(&detail)
            );
        }
        let _ = writeln!(x, "    </testcase>");
    }
    let _ = writeln!(x, "  </testsuite>");
    let _ = writeln!(x, "</testsuites>");
    x
}

/// Markdown for a CI job summary.
pub fn summary_markdown(v: &Verdict) -> String {
    let mut m = String::new();
    let headline = if v.passed { "✅ passed" } else { "❌ failed" };
    let _ = writeln!(m, "## Gauntlet gate — `{}`: {headline}\n", v.scenario);
    let _ = writeln!(
        m,
        "{} regression(s), {} SLO failure(s), {} improvement(s), {} inconclusive. Phases compared: {}. Baseline: {} run(s); candidate: {} run(s).\n",
        v.regressions,
        v.slo_failures,
        v.improvements,
        v.inconclusive,
        v.phases.join(", "),
        v.baseline_runs.len(),
        v.candidate_runs.len()
    );
    for w in &v.warnings {
        let _ = writeln!(m, "> ⚠️ {w}\n");
    }
    if !v.comparisons.is_empty() {
        let _ = writeln!(
            m,
            "| operation | metric | verdict | baseline | candidate | change [interval] | tolerance |"
        );
        let _ = writeln!(m, "|---|---|---|---|---|---|---|");
        for c in &v.comparisons {
            let mark = match c.outcome {
                Outcome::Pass => "✅ pass",
                Outcome::Regression => "❌ regression",
                Outcome::Improvement => "🟢 improvement",
                Outcome::Inconclusive => "❔ inconclusive",
            };
            let _ = writeln!(
                m,
                "| {} | {} | {mark} | {} | {} | {} | {} |",
                c.operation,
                c.metric.name(),
                describe_value(c.metric, c.baseline),
                describe_value(c.metric, c.candidate),
                describe_change(c),
                describe_tolerance(c)
            );
        }
        m.push('\n');
    }
    if !v.slo.is_empty() {
        let _ = writeln!(m, "| operation | SLO | actual | result |");
        let _ = writeln!(m, "|---|---|---|---|");
        for s in &v.slo {
            let _ = writeln!(
                m,
                "| {} | {} {} | {} | {} |",
                s.operation,
                s.metric,
                s.limit,
                s.actual,
                if s.passed { "✅" } else { "❌" }
            );
        }
        m.push('\n');
    }
    let _ = writeln!(
        m,
        "<details><summary>Rule</summary>\n\n{}\n</details>",
        v.rule
    );
    m
}

/// Writes `verdict.json`, `junit.xml` and `summary.md` into `dir`.
pub fn write_all(v: &Verdict, dir: &Path) -> Result<(), GateError> {
    std::fs::create_dir_all(dir).map_err(|e| GateError::Io(format!("{}: {e}", dir.display())))?;
    let mut json = serde_json::to_string_pretty(v).map_err(|e| GateError::Io(e.to_string()))?;
    json.push('\n');
    for (name, text) in [
        ("verdict.json", json),
        ("junit.xml", junit(v)),
        ("summary.md", summary_markdown(v)),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| GateError::Io(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}
