//! Golden-structure tests of the HTML report: the sections are there, every
//! number in a table equals `results.json`, every SVG parses, fault windows
//! are shaded and labelled, a killed run renders, a run without faults or
//! checks says so, comparisons colour their changes — and downsampling the
//! drawn lines never changes a printed statistic.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use gauntlet_recorder::{OperationResult, RunResults};
use gauntlet_reports::charts::{self, hex};
use gauntlet_reports::html::CSP;
use gauntlet_reports::{
    RenderOptions, RunData, human_rate, human_us, render_comparison, render_run,
};
use support::synthetic::{self, Spec};

/// Builds a synthetic run directory and renders it; returns results.json as
/// read back (what the report saw) and the page.
fn build(dir: &Path, spec: &Spec) -> (RunResults, String) {
    synthetic::build(dir, spec);
    let run = RunData::load(dir).expect("the run directory loads");
    (
        run.results.clone(),
        render_run(&run, None, &RenderOptions::default()),
    )
}

/// The whole page parses as XML (the report is written as polyglot markup).
fn parse(html: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(html, options).expect("the report is well-formed")
}

fn by_id<'a>(doc: &'a roxmltree::Document<'a>, id: &str) -> Option<roxmltree::Node<'a, 'a>> {
    doc.descendants().find(|n| n.attribute("id") == Some(id))
}

fn text_of(n: roxmltree::Node<'_, '_>) -> String {
    n.descendants()
        .filter(|d| d.is_text())
        .filter_map(|d| d.text())
        .collect::<String>()
}

/// Every `<svg>…</svg>` of the page parses on its own, and has a view box.
fn assert_svgs_parse(html: &str) -> usize {
    let mut n = 0;
    let mut rest = html;
    while let Some(start) = rest.find("<svg") {
        let end = rest[start..].find("</svg>").expect("every svg is closed") + start + 6;
        let svg = &rest[start..end];
        let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| {
            panic!(
                "svg #{n} does not parse: {e}\n{}",
                &svg[..svg.len().min(300)]
            )
        });
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert!(doc.root_element().attribute("viewBox").is_some());
        n += 1;
        rest = &rest[end..];
    }
    n
}

/// Cells with a `data-m` of a row, by metric.
fn cells<'a>(row: roxmltree::Node<'a, 'a>) -> BTreeMap<&'a str, roxmltree::Node<'a, 'a>> {
    row.children()
        .filter(|c| c.has_tag_name("td"))
        .filter_map(|c| Some((c.attribute("data-m")?, c)))
        .collect()
}

fn assert_row_equals(row: roxmltree::Node<'_, '_>, o: &OperationResult, what: &str) {
    let c = cells(row);
    let v = |m: &str| -> &str {
        c.get(m)
            .and_then(|n| n.attribute("data-v"))
            .unwrap_or_else(|| panic!("{what}: no {m} value"))
    };
    let t = |m: &str| text_of(c[m]);
    assert_eq!(v("count"), o.count.to_string(), "{what}: count");
    assert_eq!(v("errors"), o.errors.to_string(), "{what}: errors");
    assert_eq!(v("late"), o.late.to_string(), "{what}: late");
    assert_eq!(
        v("throughput").parse::<f64>().unwrap(),
        o.throughput_per_s,
        "{what}: throughput"
    );
    assert_eq!(t("throughput"), human_rate(o.throughput_per_s), "{what}");
    let l = &o.latency_us;
    for (m, want) in [
        ("p50", l.p50),
        ("p90", l.p90),
        ("p99", l.p99),
        ("p999", l.p999),
        ("max", l.max),
    ] {
        assert_eq!(v(m), want.to_string(), "{what}: {m}");
        assert_eq!(t(m), human_us(want), "{what}: {m} as printed");
    }
}

fn tables<'a>(doc: &'a roxmltree::Document<'a>, kind: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| n.has_tag_name("table") && n.attribute("data-table") == Some(kind))
        .collect()
}

fn rows<'a>(table: roxmltree::Node<'a, 'a>) -> Vec<roxmltree::Node<'a, 'a>> {
    table
        .descendants()
        .filter(|n| n.has_tag_name("tr") && n.parent().is_some_and(|p| p.has_tag_name("tbody")))
        .collect()
}

#[test]
fn a_run_report_has_every_section_and_its_tables_equal_results_json() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        verdict: true,
        ..Spec::small()
    };
    let (built, html) = build(dir.path(), &spec);
    // The report's numbers are compared with results.json as written.
    let results: RunResults =
        serde_json::from_slice(&std::fs::read(dir.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(results.totals.len(), built.totals.len());
    let doc = parse(&html);

    // Self-contained: the policy forbids fetching, and nothing points out.
    let csp = doc
        .descendants()
        .find(|n| n.attribute("http-equiv") == Some("Content-Security-Policy"))
        .expect("a CSP meta tag");
    assert_eq!(csp.attribute("content"), Some(CSP));
    assert!(!html.contains("http://") && !html.contains("https://"));
    for tag in ["script", "link", "img", "iframe", "object", "embed"] {
        assert!(
            !doc.descendants().any(|n| n.has_tag_name(tag)),
            "no <{tag}> in the report"
        );
    }
    assert!(!doc.descendants().any(|n| n.attribute("src").is_some()));

    // Sections.
    for id in [
        "top", "verdict", "summary", "engine", "system", "chaos", "checks", "slo", "gate", "files",
    ] {
        assert!(by_id(&doc, id).is_some(), "section #{id}");
    }
    for op in &spec.operations {
        let id = format!("op-{}", op.replace('_', "-"));
        for suffix in [
            "",
            "-latency",
            "-throughput",
            "-distribution",
            "-errors",
            "-log",
        ] {
            assert!(
                by_id(&doc, &format!("{id}{suffix}")).is_some(),
                "#{id}{suffix}"
            );
        }
    }
    assert_eq!(
        text_of(doc.descendants().find(|n| n.has_tag_name("h1")).unwrap()),
        "synthetic"
    );
    // The verdict at a glance, and what failed, linked to its evidence.
    let verdict = by_id(&doc, "verdict").unwrap();
    assert!(
        text_of(verdict).starts_with("FAILED"),
        "{}",
        text_of(verdict)
    );
    let findings = by_id(&doc, "findings").expect("a list of findings");
    let links: Vec<&str> = findings
        .descendants()
        .filter_map(|n| n.attribute("href"))
        .collect();
    assert!(
        links.contains(&"#check-fabric-no-offset-reused"),
        "{links:?}"
    );
    assert!(links.contains(&"#slo-read-errors-0-1"), "{links:?}");
    for link in &links {
        let target = link.trim_start_matches('#');
        assert!(
            by_id(&doc, target).is_some(),
            "link {link} points at nothing"
        );
    }
    let failed_check = by_id(&doc, "check-fabric-no-offset-reused").unwrap();
    assert!(text_of(failed_check).contains("offset 1041 acknowledged twice"));
    assert_eq!(failed_check.attribute("data-passed"), Some("false"));
    // Facts: when and where.
    let top = text_of(by_id(&doc, "top").unwrap());
    for fact in [
        "0123456789ab",
        "synthetic-host",
        "process",
        "2026-11-23 05:00:00 UTC",
    ] {
        assert!(top.contains(fact), "{fact} in {top}");
    }

    // Numbers in tables equal results.json.
    let totals = &tables(&doc, "totals")[0];
    let total_rows = rows(*totals);
    assert_eq!(total_rows.len(), results.totals.len());
    for (row, o) in total_rows.iter().zip(&results.totals) {
        assert_eq!(row.attribute("data-op"), Some(o.operation.as_str()));
        assert_row_equals(*row, o, &format!("totals/{}", o.operation));
    }
    let phase_tables = tables(&doc, "phases");
    assert_eq!(phase_tables.len(), spec.operations.len());
    for t in phase_tables {
        let op = t.attribute("data-op").unwrap();
        let rs = rows(t);
        assert_eq!(
            rs.len(),
            results.phases.len() + 1,
            "a row per phase and the total"
        );
        for row in rs {
            let phase = row.attribute("data-phase").unwrap();
            let o = if phase == "(all)" {
                results.total(op).unwrap()
            } else {
                results
                    .phase(phase)
                    .unwrap()
                    .operations
                    .iter()
                    .find(|o| o.operation == op)
                    .unwrap()
            };
            assert_row_equals(row, o, &format!("{phase}/{op}"));
        }
    }
    for t in tables(&doc, "errors") {
        let op = t.ancestors().find_map(|a| a.attribute("data-op")).unwrap();
        let want = &results.total(op).unwrap().errors_by_kind;
        let got: BTreeMap<String, u64> = rows(t)
            .into_iter()
            .map(|r| {
                (
                    r.attribute("data-kind").unwrap().to_owned(),
                    cells(r)["errors"]
                        .attribute("data-v")
                        .unwrap()
                        .parse()
                        .unwrap(),
                )
            })
            .collect();
        assert_eq!(&got, want, "{op}: errors by kind");
    }

    // Faults: in a table, shaded and labelled on every time chart, in lanes.
    let faults = synthetic::faults(&spec);
    let fault_rows = rows(tables(&doc, "faults")[0]);
    assert_eq!(fault_rows.len(), faults.len());
    for (row, f) in fault_rows.iter().zip(&faults) {
        assert!(text_of(*row).contains(&f.name));
        assert_eq!(
            cells(*row)["start_s"].attribute("data-v").unwrap(),
            f.start_s.to_string()
        );
    }
    let section = by_id(&doc, "op-append").unwrap();
    let svg_texts: Vec<String> = section
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(text_of)
        .collect();
    for f in &faults {
        let labels = svg_texts.iter().filter(|t| t.trim() == f.name).count();
        // latency (linear, log), throughput, errors, and the lane.
        assert!(labels >= 5, "{} labelled {labels} times", f.name);
    }
    assert_eq!(
        rows(tables(&doc, "recovery")[0]).len(),
        faults.len() * spec.operations.len()
    );
    // Phases are marked on the charts.
    for p in &results.phases {
        assert!(
            svg_texts.iter().any(|t| t.trim() == p.name),
            "phase {}",
            p.name
        );
    }
    // The distribution's x axis reads in nines.
    assert!(svg_texts.iter().any(|t| t.trim() == "99.9%"));
    // The system section charts the chosen series.
    let system = text_of(by_id(&doc, "system").unwrap());
    for series in [
        "CPU",
        "RSS",
        "Requests",
        "fsyncs",
        "Queue depth",
        "In flight",
    ] {
        assert!(system.contains(series), "{series} in the system section");
    }

    let svgs = assert_svgs_parse(&html);
    assert!(svgs >= spec.operations.len() * 5 + 6, "{svgs} charts");
}

#[test]
fn a_run_killed_halfway_renders_from_what_it_left() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        killed_at: Some(50),
        ..Spec::small()
    };
    let (results, html) = build(dir.path(), &spec);
    assert!(!results.complete);
    let run = RunData::load(dir.path()).unwrap();
    assert!(
        run.hlog_intervals > 0,
        "the hlog is read up to its torn line"
    );
    assert_eq!(run.metrics.len(), 50, "the torn metrics line is skipped");
    let open_faults = run.faults.iter().filter(|f| f.end_s.is_none()).count();
    assert_eq!(open_faults, 1, "{:?}", run.faults);

    let doc = parse(&html);
    let verdict = text_of(by_id(&doc, "verdict").unwrap());
    assert!(verdict.starts_with("INCOMPLETE"), "{verdict}");
    assert!(text_of(by_id(&doc, "findings").unwrap()).contains("did not complete"));
    assert!(text_of(by_id(&doc, "chaos").unwrap()).contains("still applied"));
    for (row, o) in rows(tables(&doc, "totals")[0]).iter().zip(&results.totals) {
        assert_row_equals(*row, o, &o.operation);
    }
    assert!(assert_svgs_parse(&html) > 10);

    // Only results.json survived: still a report, saying what is missing.
    for f in ["latency.hlog", "metrics.jsonl", "faults.json"] {
        std::fs::remove_file(dir.path().join(f)).unwrap();
    }
    let run = RunData::load(dir.path()).unwrap();
    let html = render_run(&run, None, &RenderOptions::default());
    assert!(html.contains("latency.hlog is missing"));
    assert!(html.contains("No metrics.jsonl"));
    assert_svgs_parse(&html);
    parse(&html);
}

#[test]
fn without_faults_checks_or_metrics_the_report_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        faults: 0,
        seconds: 30,
        ..Spec::small()
    };
    let (_, _) = build(dir.path(), &spec);
    std::fs::remove_file(dir.path().join("metrics.jsonl")).unwrap();
    let run = RunData::load(dir.path()).unwrap();
    let html = render_run(&run, None, &RenderOptions::default());
    let doc = parse(&html);
    let chaos = text_of(by_id(&doc, "chaos").unwrap());
    assert!(
        chaos.contains("No faults were injected in this run"),
        "{chaos}"
    );
    assert!(
        chaos.contains("No checks were defined for this run"),
        "{chaos}"
    );
    assert!(text_of(by_id(&doc, "system").unwrap()).contains("No metrics.jsonl"));
    assert!(tables(&doc, "faults").is_empty() && tables(&doc, "recovery").is_empty());
    let verdict = text_of(by_id(&doc, "verdict").unwrap());
    assert!(verdict.starts_with("COMPLETED"), "{verdict}");
    assert!(verdict.contains("No checks or gates were defined"));
}

#[test]
fn a_comparison_overlays_both_runs_and_colours_each_change() {
    let base = tempfile::tempdir().unwrap();
    let slow = tempfile::tempdir().unwrap();
    let small = Spec {
        seconds: 40,
        faults: 1,
        ..Spec::small()
    };
    synthetic::build(base.path(), &small);
    synthetic::build(
        slow.path(),
        &Spec {
            slowdown: 2.0,
            ..small.clone()
        },
    );
    let a = RunData::load(base.path()).unwrap();
    let b = RunData::load(slow.path()).unwrap();
    let html = render_comparison(&a, &b, &RenderOptions::default());
    let doc = parse(&html);
    assert!(
        by_id(&doc, "comparison").is_some()
            && by_id(&doc, "run-a").is_some()
            && by_id(&doc, "run-b").is_some()
    );
    let changes = tables(&doc, "changes");
    assert_eq!(changes.len(), 1);
    let rs = rows(changes[0]);
    assert_eq!(rs.len(), small.operations.len() * 9);
    for r in &rs {
        let op = r.attribute("data-op").unwrap();
        let metric = r.attribute("data-metric").unwrap();
        let change = r
            .children()
            .find(|c| c.attribute("data-m") == Some("change"))
            .unwrap();
        let class = change.attribute("class").unwrap();
        match metric {
            // Twice the latency: red, pointing up.
            "p50" | "p90" | "p99" => {
                assert_eq!(class, "worse", "{op} {metric}");
                assert!(text_of(change).starts_with('▲'));
            }
            // Same schedule, same seed: the count does not move.
            "count" => assert_eq!(class, "same", "{op} {metric}"),
            _ => {}
        }
    }
    for op in &small.operations {
        let h = by_id(&doc, &format!("cmp-{}", op.replace('_', "-"))).unwrap();
        // The figure after the heading overlays two distributions.
        let fig = h
            .next_siblings()
            .find(|n| n.has_tag_name("figure"))
            .unwrap();
        let stroke = |c: &str| {
            fig.descendants()
                .filter(|n| n.has_tag_name("polyline"))
                .filter(|n| {
                    n.attribute("stroke")
                        .is_some_and(|s| s.eq_ignore_ascii_case(c))
                })
                .count()
        };
        assert_eq!(stroke(&hex(charts::SLATE)), 1, "{op}: A");
        assert_eq!(stroke(&hex(charts::BLUE)), 1, "{op}: B");
    }
    assert_svgs_parse(&html);

    // The same comparison inside a run report, when a baseline is given.
    let html = render_run(&b, Some(&a), &RenderOptions::default());
    let doc = parse(&html);
    assert!(by_id(&doc, "comparison").is_some());
    assert_eq!(
        rows(tables(&doc, "changes")[0]).len(),
        small.operations.len() * 9
    );
}

mod downsampling {
    use super::*;
    use gauntlet_recorder::faults::Fault;
    use gauntlet_recorder::{IntervalOperation, IntervalResult, Percentiles, PhaseResult};
    use proptest::prelude::*;

    /// What a reader takes away as numbers: the header, every table, every note.
    fn printed(html: &str) -> Vec<String> {
        let doc = parse(html);
        doc.descendants()
            .filter(|n| {
                n.has_tag_name("table")
                    || n.has_tag_name("header")
                    || n.attribute("class")
                        .is_some_and(|c| c.contains("note") || c.contains("small"))
            })
            .map(|n| html[n.range()].to_owned())
            .collect()
    }

    fn results(intervals: Vec<Vec<(u64, u64, u64)>>, ops: usize) -> RunResults {
        let names: Vec<String> = (0..ops).map(|i| format!("op{i}")).collect();
        let n = intervals.len() as f64;
        let op = |name: &str, count: u64, p: u64| OperationResult {
            operation: name.to_owned(),
            count,
            errors: count / 10,
            late: 0,
            throughput_per_s: count as f64 / n.max(1.0),
            latency_us: Percentiles {
                p50: p,
                p90: p * 2,
                p99: p * 3,
                p999: p * 4,
                max: p * 5,
            },
            service_time_us: Percentiles::default(),
            errors_by_kind: BTreeMap::new(),
            messages: None,
            messages_per_s: None,
        };
        let totals: Vec<OperationResult> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                op(
                    name,
                    intervals.iter().map(|iv| iv[i % iv.len()].0).sum(),
                    100 + i as u64,
                )
            })
            .collect();
        RunResults {
            format: 1,
            scenario: "prop".into(),
            seed: 1,
            started_at: "2026-01-01T00:00:00Z".into(),
            elapsed_s: n,
            runtime: "process".into(),
            host: "h".into(),
            git_revision: None,
            complete: true,
            interrupted: None,
            recovery: Vec::new(),
            engine: Default::default(),
            phases: vec![PhaseResult {
                name: "steady".into(),
                duration_s: n,
                target_rate_per_s: 10.0,
                operations: totals.clone(),
            }],
            totals,
            intervals: intervals
                .iter()
                .enumerate()
                .map(|(t, iv)| IntervalResult {
                    t_s: t as f64,
                    operations: names
                        .iter()
                        .enumerate()
                        .map(|(i, name)| {
                            let (count, errors, p) = iv[i % iv.len()];
                            IntervalOperation {
                                operation: name.clone(),
                                count,
                                errors: errors.min(count),
                                latency_us: Percentiles {
                                    p50: p,
                                    p90: p,
                                    p99: p * 2,
                                    p999: p * 3,
                                    max: p * 4,
                                },
                                errors_by_kind: if errors.min(count) > 0 {
                                    [("timeout".to_owned(), errors.min(count))].into()
                                } else {
                                    BTreeMap::new()
                                },
                                messages: None,
                            }
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn downsampling_never_changes_the_printed_statistics(
            intervals in proptest::collection::vec(
                proptest::collection::vec((0u64..500, 0u64..20, 1u64..100_000), 1..4),
                2..400,
            ),
            ops in 1usize..4,
            fault_at in 0.0f64..1.0,
            fault_len in 0.0f64..30.0,
            max_points in 4usize..64,
        ) {
            let r = results(intervals, ops);
            let mut run = RunData::bare("prop".into(), "prop".into(), r);
            let start = (fault_at * run.results.elapsed_s).floor();
            run.faults = vec![Fault {
                name: "f".into(),
                kind: "process.kill".into(),
                target: "x".into(),
                start_s: start,
                end_s: Some(start + fault_len.floor()),
                params: BTreeMap::new(),
            }];
            run.slo_p99_us.insert("op0".into(), 50_000);
            let full = render_run(&run, None, &RenderOptions { max_points: usize::MAX, ..RenderOptions::default() });
            let drawn = render_run(&run, None, &RenderOptions { max_points, ..RenderOptions::default() });
            prop_assert_eq!(printed(&full), printed(&drawn));
            // The drawn lines did get smaller when there was something to cut.
            if run.results.intervals.len() > max_points {
                prop_assert!(drawn.len() < full.len());
            }
        }
    }
}
