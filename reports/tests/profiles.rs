//! Golden structure of the report's Profiles section, from a synthetic run
//! directory's `profiles/index.json` and folded stacks: a flamegraph per
//! window (inline SVG that parses, one rect per frame wider than the
//! threshold, no script), top-function tables whose figures equal the
//! folded stacks, the fault window beside its phase with the changes, and
//! a differential flamegraph in a comparison.

mod support;

use gauntlet_recorder::profiles::Folded;
use gauntlet_reports::{RenderOptions, RunData, render_comparison, render_run};
use support::synthetic::{self, PROFILES, Spec};

fn parse(html: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(html, options).expect("the report is well-formed")
}

fn text_of(n: roxmltree::Node<'_, '_>) -> String {
    n.descendants()
        .filter(|d| d.is_text())
        .filter_map(|d| d.text())
        .collect()
}

fn spec() -> Spec {
    Spec {
        seconds: 90,
        faults: 1,
        ..Spec::small()
    }
}

#[test]
fn the_profiles_section_draws_each_window_and_its_top_functions() {
    let dir = tempfile::tempdir().unwrap();
    synthetic::build(dir.path(), &spec());
    synthetic::profiles(dir.path());
    let run = RunData::load(dir.path()).unwrap();
    assert_eq!(run.profiles.len(), 2);
    let html = render_run(&run, None, &RenderOptions::default());
    assert!(!html.to_lowercase().contains("<script"));
    let doc = parse(&html);
    let section = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("profiles"))
        .expect("a Profiles section");
    assert!(
        html.contains("<a href=\"#profiles\">Profiles</a>"),
        "in the table of contents"
    );

    // The steady phase: one flamegraph, one rect per frame (all are wide
    // enough here), every frame's share in its title.
    let steady = Folded::parse(PROFILES[0].4).unwrap();
    let frames: std::collections::BTreeSet<Vec<String>> = steady
        .stacks
        .keys()
        .flat_map(|s| (1..=s.len()).map(move |d| s[..d].to_vec()))
        .collect();
    let flames: Vec<_> = section
        .descendants()
        .filter(|n| n.has_tag_name("figure") && n.attribute("class") == Some("flame"))
        .collect();
    assert_eq!(
        flames.len(),
        3,
        "steady, and the fault window beside steady"
    );
    let rects = flames[0]
        .descendants()
        .filter(|n| n.has_tag_name("rect"))
        .count();
    assert_eq!(rects, frames.len());
    assert!(text_of(flames[0]).contains("fabric::durable::fsync — 120 samples, 48.00 %"));

    // Top functions: self and total shares equal the folded stacks'.
    let top: Vec<_> = section
        .descendants()
        .filter(|n| n.has_tag_name("table") && n.attribute("class") == Some("top"))
        .collect();
    assert_eq!(top.len(), 2, "by self and by total time, for the phase");
    let total = steady.total() as f64;
    for (table, by_self) in [(top[0], true), (top[1], false)] {
        let expect = if by_self {
            steady.top_self(10)
        } else {
            steady.functions().into_iter().take(10).collect()
        };
        let rows: Vec<_> = table
            .descendants()
            .filter(|n| n.has_tag_name("tr"))
            .skip(1)
            .collect();
        assert_eq!(rows.len(), expect.len());
        for (row, f) in rows.iter().zip(&expect) {
            let cells: Vec<_> = row.children().filter(|c| c.has_tag_name("td")).collect();
            assert_eq!(cells[0].attribute("title"), Some(f.name.as_str()));
            let v = |i: usize| {
                cells[i]
                    .attribute("data-v")
                    .unwrap()
                    .parse::<f64>()
                    .unwrap()
            };
            assert!((v(1) - 100.0 * f.self_samples as f64 / total).abs() < 1e-3);
            assert!((v(2) - 100.0 * f.total_samples as f64 / total).abs() < 1e-3);
        }
    }

    // The fault window, beside steady, with what changed: writing answers
    // went from 12 % to 70 % of the samples.
    let fault = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("profile-fabric-slow-link"))
        .expect("the fault window's heading");
    assert!(text_of(fault).contains("fault window slow-link"));
    let changes = section
        .descendants()
        .find(|n| n.has_tag_name("table") && n.attribute("class") == Some("top changes"))
        .expect("a changes table");
    let first = changes
        .descendants()
        .filter(|n| n.has_tag_name("tr"))
        .nth(1)
        .unwrap();
    let cells: Vec<_> = first.children().filter(|c| c.has_tag_name("td")).collect();
    assert_eq!(cells[0].attribute("title"), Some("hyper::proto::h1::write"));
    assert_eq!(cells[3].attribute("data-v"), Some("58.0000"));
    assert_eq!(cells[3].attribute("class"), Some("worse"));
}

#[test]
fn a_comparison_draws_a_differential_flamegraph_per_shared_window() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    synthetic::build(a.path(), &spec());
    synthetic::build(b.path(), &spec());
    synthetic::profiles(a.path());
    synthetic::profiles(b.path());
    // B's steady phase: twice the encoding time.
    std::fs::write(
        b.path().join("profiles/fabric/steady.folded"),
        PROFILES[0]
            .4
            .replace("fabric::frame::encode 60", "fabric::frame::encode 310"),
    )
    .unwrap();
    let (ra, rb) = (
        RunData::load(a.path()).unwrap(),
        RunData::load(b.path()).unwrap(),
    );
    for html in [
        render_comparison(&ra, &rb, &RenderOptions::default()),
        render_run(&rb, Some(&ra), &RenderOptions::default()),
    ] {
        let doc = parse(&html);
        assert!(
            doc.descendants()
                .any(|n| n.attribute("id") == Some("profile-changes"))
        );
        // steady and slow-link are in both runs: two differential graphs.
        assert!(html.contains("fabric · steady: A → B"));
        assert!(html.contains("fabric · slow-link: A → B"));
        // encode: 60 of 250 (24 %) → 310 of 500 (62 %): the largest growth, full red.
        assert!(html.contains("fabric::frame::encode — 310 samples, 62.00 %, +38.00 pp"));
        assert!(html.contains("fill=\"rgb(255,55,55)\""));
        assert!(!html.to_lowercase().contains("<script"));
    }
}
