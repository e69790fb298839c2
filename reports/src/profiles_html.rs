//! The report's Profiles section: per service and window a flamegraph
//! (inline SVG, `flame`) and the top functions by self and total time; a
//! fault window beside the phase it fell in, with what changed; and, in
//! a comparison, a differential flamegraph and the top changes per
//! service and window both runs profiled.

use std::fmt::Write;

use gauntlet_recorder::profiles::{Folded, WindowKind};

use crate::data::{ProfileData, RunData};
use crate::flame;
use crate::html::{esc, slug};

/// Rows in each top-functions table.
pub const TOP: usize = 10;

fn pct(n: u64, total: u64) -> f64 {
    100.0 * n as f64 / total.max(1) as f64
}

fn figure(svg: &str) -> String {
    if svg.is_empty() {
        "<p class=\"note\">No samples in this window.</p>\n".to_owned()
    } else {
        format!("<figure class=\"flame\">{svg}</figure>\n")
    }
}

/// The top functions by self time and by total time, two tables.
pub fn top_tables(f: &Folded) -> String {
    let total = f.total();
    let mut out = String::from("<div class=\"pair\">");
    let all = f.functions();
    let by_self = f.top_self(TOP);
    let by_total: Vec<_> = all.iter().take(TOP).cloned().collect();
    for (title, rows) in [("by self time", &by_self), ("by total time", &by_total)] {
        let _ = write!(
            out,
            "<table class=\"top\"><caption>Top functions {title}</caption><thead><tr><th class=\"l\">function</th><th>self</th><th>total</th></tr></thead><tbody>"
        );
        for t in rows.iter() {
            let (s, tt) = (pct(t.self_samples, total), pct(t.total_samples, total));
            let _ = write!(
                out,
                "<tr><td class=\"l fn\" title=\"{}\">{}</td><td data-v=\"{s:.4}\">{s:.1} %</td><td data-v=\"{tt:.4}\">{tt:.1} %</td></tr>",
                esc(&t.name),
                esc(&short_fn(&t.name)),
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</div>\n");
    out
}

/// The top changes of self time, `before` → `after`, in percentage points.
pub fn changes_table(before: &Folded, after: &Folded, a: &str, b: &str) -> String {
    let ch = before.top_changes(after, TOP);
    if ch.is_empty() {
        return "<p class=\"note\">No function's share of the samples changed.</p>\n".to_owned();
    }
    let mut out = format!(
        "<table class=\"top changes\"><caption>Top changes of self time, {} → {}</caption><thead><tr><th class=\"l\">function</th><th>self {}</th><th>self {}</th><th>change</th><th>total {}</th><th>total {}</th></tr></thead><tbody>",
        esc(a),
        esc(b),
        esc(a),
        esc(b),
        esc(a),
        esc(b)
    );
    for c in ch {
        let d = c.self_delta_pp();
        let class = if d > 0.0 { "worse" } else { "better" };
        let _ = write!(
            out,
            "<tr><td class=\"l fn\" title=\"{}\">{}</td><td data-v=\"{:.4}\">{:.1} %</td><td data-v=\"{:.4}\">{:.1} %</td><td class=\"{class}\" data-v=\"{d:.4}\">{d:+.1} pp</td><td data-v=\"{:.4}\">{:.1} %</td><td data-v=\"{:.4}\">{:.1} %</td></tr>",
            esc(&c.name),
            esc(&short_fn(&c.name)),
            c.self_before * 100.0,
            c.self_before * 100.0,
            c.self_after * 100.0,
            c.self_after * 100.0,
            c.total_before * 100.0,
            c.total_before * 100.0,
            c.total_after * 100.0,
            c.total_after * 100.0,
        );
    }
    out.push_str("</tbody></table>\n");
    out
}

/// A function's name without its generic arguments' paths, for tables
/// (the full name is in the cell's title).
fn short_fn(name: &str) -> String {
    const MAX: usize = 90;
    if name.chars().count() <= MAX {
        name.to_owned()
    } else {
        let mut s: String = name.chars().take(MAX - 1).collect();
        s.push('…');
        s
    }
}

fn heading(p: &ProfileData) -> String {
    let e = &p.entry;
    format!(
        "{} · {} {} ({:.0}–{:.0} s, {} samples at {} Hz)",
        e.service,
        match e.kind {
            WindowKind::Phase => "phase",
            WindowKind::Fault => "fault window",
        },
        e.window,
        e.start_s,
        e.end_s,
        e.samples,
        e.frequency
    )
}

/// The phase profile of `service` that the window `p` fell in.
fn phase_of<'a>(run: &'a RunData, p: &ProfileData) -> Option<&'a ProfileData> {
    run.profiles.iter().find(|q| {
        q.entry.service == p.entry.service
            && q.entry.kind == WindowKind::Phase
            && q.entry.start_s <= p.entry.start_s
            && p.entry.start_s < q.entry.end_s
    })
}

/// The Profiles section of a run's report (nothing without profiles).
pub fn section(run: &RunData) -> String {
    if run.profiles.is_empty() && run.profiles_note.is_none() {
        return String::new();
    }
    let mut out = String::from(
        "<section id=\"profiles\">\n<h2>Profiles</h2>\n<p class=\"small muted\">CPU profiles taken while the load ran (the scenario's <code>profile:</code>). Root at the top, width is CPU time; hover a frame for its full name and share. A phase's profile leaves out the fault windows profiled inside it. Files: <code>profiles/&lt;service&gt;/&lt;window&gt;.pb.gz</code> (profile.proto, for <code>go tool pprof</code>) and <code>.folded</code>.</p>\n",
    );
    if let Some(note) = &run.profiles_note {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(note));
    }
    for p in &run.profiles {
        let id = format!(
            "profile-{}-{}",
            slug(&p.entry.service),
            slug(&p.entry.window)
        );
        let _ = writeln!(out, "<h3 id=\"{id}\">{}</h3>", esc(&heading(p)));
        for e in &p.entry.errors {
            let _ = writeln!(out, "<p class=\"note\">Not collected: {}</p>", esc(e));
        }
        let title = format!("{}: {}", p.entry.service, p.entry.window);
        match (p.entry.kind, phase_of(run, p)) {
            (WindowKind::Fault, Some(phase)) => {
                let _ = writeln!(
                    out,
                    "<div class=\"pair\"><div><p class=\"small\">phase <strong>{}</strong> (steady)</p>{}</div><div><p class=\"small\">fault window <strong>{}</strong></p>{}</div></div>",
                    esc(&phase.entry.window),
                    figure(&flame::flamegraph(
                        &phase.folded,
                        &format!("{}: {}", phase.entry.service, phase.entry.window)
                    )),
                    esc(&p.entry.window),
                    figure(&flame::flamegraph(&p.folded, &title)),
                );
                out.push_str(&changes_table(
                    &phase.folded,
                    &p.folded,
                    &phase.entry.window,
                    &p.entry.window,
                ));
            }
            _ => {
                out.push_str(&figure(&flame::flamegraph(&p.folded, &title)));
                out.push_str(&top_tables(&p.folded));
            }
        }
    }
    out.push_str("</section>\n");
    out
}

/// The profiles both runs have, A → B: a differential flamegraph and the
/// top changes each (nothing when they share none).
pub fn comparison(a: &RunData, b: &RunData) -> String {
    let pairs: Vec<(&ProfileData, &ProfileData)> = b
        .profiles
        .iter()
        .filter_map(|pb| {
            a.profile(&pb.entry.service, &pb.entry.window)
                .map(|pa| (pa, pb))
        })
        .collect();
    if pairs.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h3 id=\"profile-changes\">Profiles: A → B</h3>\n<p class=\"small muted\">Each graph is B's profile, coloured by how each frame's share of the CPU samples changed from A: <span class=\"worse\">red grew</span>, <span class=\"better\">blue shrank</span>, white unchanged.</p>\n",
    );
    for (pa, pb) in pairs {
        let title = format!("{} · {}: A → B", pb.entry.service, pb.entry.window);
        let _ = writeln!(out, "<h3>{}</h3>", esc(&title));
        out.push_str(&figure(&flame::differential(
            &pa.folded, &pb.folded, &title,
        )));
        out.push_str(&changes_table(&pa.folded, &pb.folded, "A", "B"));
    }
    out
}
