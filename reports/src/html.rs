//! The HTML report: one self-contained file. Inline CSS, inline SVG charts,
//! no script, no font or image fetched from anywhere (a Content-Security-Policy
//! meta tag forbids it), readable offline and printable. The markup is also
//! well-formed XML, so tests can read it with an XML parser.
//!
//! Every number in a table is read from the full data (`results.json`,
//! merged histograms, full per-second intervals) and carries its raw value
//! in `data-v`; only the plotted lines are downsampled.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use gauntlet_recorder::OperationResult;

use crate::charts::{
    self, BLUE, DARK_SLATE, Line, ORANGE, PALETTE, SLATE, TEAL, TimeChart, Unit, Window,
};
use crate::data::{CheckResult, RunData};
use crate::recovery::{self, Recovered, Recovery};
use crate::series::{self, downsample};
use crate::{human_rate, human_us};

/// How a report is drawn.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Most points per plotted line (time series are downsampled to this for
    /// drawing; statistics never are).
    pub max_points: usize,
    /// Link the run directory's files by relative path (the report sits in it).
    pub link_files: bool,
    /// Who made the report, for the footer.
    pub generator: String,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            max_points: 600,
            link_files: true,
            generator: format!("gauntlet-reports {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// The Content-Security-Policy every report carries: nothing may be fetched.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// Escapes text for HTML (and XML) content and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An id fragment made of `[a-z0-9-]`.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-').to_owned();
    if out.is_empty() { "x".to_owned() } else { out }
}

/// `12,345`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn seconds(s: f64) -> String {
    if s >= 120.0 {
        let t = s.round() as u64;
        format!("{}m {:02}s", t / 60, t % 60)
    } else if s >= 10.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

const CSS: &str = r#"
:root{--fg:#111827;--muted:#6b7280;--faint:#9ca3af;--line:#e5e7eb;--panel:#f8fafc;--ok:#15803d;--okbg:#f0fdf4;--okline:#bbf7d0;--bad:#b91c1c;--badbg:#fef2f2;--badline:#fecaca;--warn:#b45309;--warnbg:#fffbeb;--warnline:#fde68a;--accent:#2563eb}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;color:var(--fg);background:#fff;font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans","Liberation Sans",sans-serif}
main{max-width:1080px;margin:0 auto;padding:28px 36px 72px}
a{color:var(--accent);text-decoration:none} a:hover{text-decoration:underline}
h1{font-size:30px;line-height:1.2;margin:2px 0 14px;letter-spacing:-.01em}
h2{font-size:21px;margin:48px 0 14px;padding-bottom:8px;border-bottom:1px solid var(--line);letter-spacing:-.005em}
h3{font-size:15px;margin:26px 0 6px;color:#374151}
p{margin:6px 0}
code,.mono{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,"Liberation Mono",monospace;font-size:.92em}
.eyebrow{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.08em;font-weight:600}
.muted{color:var(--muted)} .small{font-size:13px}
.verdict{display:flex;align-items:center;gap:16px;padding:14px 18px;border-radius:10px;border:1px solid;margin:8px 0 18px}
.verdict .badge{font-weight:700;font-size:15px;letter-spacing:.08em;padding:5px 12px;border-radius:6px;color:#fff;white-space:nowrap}
.verdict .why{font-size:15px}
.v-pass{background:var(--okbg);border-color:var(--okline)} .v-pass .badge{background:var(--ok)}
.v-fail{background:var(--badbg);border-color:var(--badline)} .v-fail .badge{background:var(--bad)}
.v-warn{background:var(--warnbg);border-color:var(--warnline)} .v-warn .badge{background:var(--warn)}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:10px 28px;margin:0 0 8px}
.facts div{min-width:0}
.facts dt{color:var(--muted);font-size:11.5px;text-transform:uppercase;letter-spacing:.06em;font-weight:600}
.facts dd{margin:0;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
.findings{margin:14px 0 0;padding:0;list-style:none}
.findings li{padding:7px 12px 7px 14px;border-left:3px solid;margin:6px 0;border-radius:0 6px 6px 0}
.findings li.fail{border-color:var(--bad);background:var(--badbg)}
.findings li.warn{border-color:#f59e0b;background:var(--warnbg)}
.findings li a{margin-left:8px;font-size:13px;white-space:nowrap}
nav.toc{position:sticky;top:0;z-index:2;background:rgba(255,255,255,.96);border-bottom:1px solid var(--line);margin:26px -36px 0;padding:9px 36px;font-size:14px}
nav.toc a{margin-right:18px;color:#374151} nav.toc a:hover{color:var(--accent)}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;font-size:13.5px;margin:6px 0 4px}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th{color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.04em;border-bottom:1.5px solid #d1d5db}
td.l,th.l{text-align:left}
td.wrap{white-space:normal;text-align:left}
tr.group td{border-top:1.5px solid #d1d5db}
tr.total td{font-weight:650;border-top:1.5px solid #d1d5db;background:var(--panel)}
td.zero{color:var(--faint)}
td.hot{color:var(--bad);font-weight:600}
.better{color:var(--ok);font-weight:600} .worse{color:var(--bad);font-weight:600} .same{color:var(--muted)}
.pill{display:inline-block;font-size:12px;font-weight:700;letter-spacing:.05em;padding:1px 8px;border-radius:10px;color:#fff}
.pill.pass{background:var(--ok)} .pill.fail{background:var(--bad)} .pill.unsure{background:var(--warn)}
figure.chart{margin:4px 0 2px}
figure.chart svg{display:block;width:100%;height:auto}
figure.chart text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Liberation Sans",sans-serif}
.legend{font-size:13px;color:#374151;margin:2px 0 0}
.legend span{margin-right:16px;white-space:nowrap}
.legend i{display:inline-block;width:16px;height:3px;border-radius:2px;margin-right:6px;vertical-align:middle}
.legend i.dash{background-image:linear-gradient(90deg,#fff 0 0);height:0;border-top:3px dashed}
.legend i.win{height:10px;background:rgba(220,38,38,.14);border:1px solid rgba(220,38,38,.5)}
.headline{display:flex;align-items:baseline;justify-content:space-between;gap:12px}
.note{color:var(--muted);font-size:13.5px;background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:10px 14px;margin:8px 0}
.lat{position:relative}
.lat .log{display:none}
.logt{position:absolute;opacity:0;width:1px;height:1px}
label.toggle{position:absolute;right:0;top:-30px;font-size:12.5px;color:#374151;border:1px solid #d1d5db;border-radius:14px;padding:2px 10px;cursor:pointer;user-select:none;background:#fff}
.logt:checked ~ label.toggle{background:#eff6ff;border-color:#93c5fd;color:#1d4ed8}
.logt:checked ~ .lin{display:none}
.logt:checked ~ .log{display:block}
.logt:focus-visible ~ label.toggle{outline:2px solid #93c5fd}
table.compact{width:auto;min-width:420px}
.legend.titled{margin-top:18px}
.legend.titled strong{color:var(--fg);margin-right:6px}
.legend.titled .muted{margin-right:16px}
figure.flame{margin:6px 0;border:1px solid var(--line);border-radius:6px;overflow:hidden}
figure.flame svg{display:block;width:100%;height:auto}
figure.flame text{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,"Liberation Mono",monospace;fill:#111827;pointer-events:none}
figure.flame rect:hover{stroke:#111827;stroke-width:1}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:14px;align-items:start}
.pair>*{min-width:0}
table.top{width:100%}
table.top caption{text-align:left;font-size:12.5px;color:var(--muted);font-weight:600;padding:4px 0}
td.fn{max-width:0;overflow:hidden;text-overflow:ellipsis;font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,"Liberation Mono",monospace;font-size:12px}
table.changes td.fn{max-width:none;white-space:normal;overflow-wrap:anywhere}
footer{margin-top:56px;color:var(--faint);font-size:12.5px;border-top:1px solid var(--line);padding-top:12px}
@media (max-width:760px){main{padding:18px}nav.toc{margin:18px -18px 0;padding:8px 18px}}
@media print{
 body{font-size:12px}
 main{max-width:none;padding:0}
 nav.toc,label.toggle{display:none}
 h2{break-after:avoid;margin-top:28px}
 h3{break-after:avoid}
 figure.chart,table,.verdict,.findings li{break-inside:avoid}
 section{break-before:auto}
 a{color:inherit}
}
"#;

/// A failure or something worth a look, linking to its evidence.
struct Finding {
    fail: bool,
    text: String,
    href: String,
}

struct Status {
    class: &'static str,
    word: &'static str,
    why: String,
}

/// Anchors of the page, made unique.
struct Ids {
    ops: BTreeMap<String, String>,
}

impl Ids {
    fn new(ops: &[String]) -> Self {
        let mut used = std::collections::BTreeSet::new();
        let mut map = BTreeMap::new();
        for op in ops {
            let base = format!("op-{}", slug(op));
            let mut id = base.clone();
            let mut n = 1;
            while !used.insert(id.clone()) {
                n += 1;
                id = format!("{base}-{n}");
            }
            map.insert(op.clone(), id);
        }
        Self { ops: map }
    }

    fn op(&self, op: &str) -> String {
        self.ops
            .get(op)
            .cloned()
            .unwrap_or_else(|| format!("op-{}", slug(op)))
    }
}

fn fault_windows(run: &RunData) -> Vec<Window> {
    let end = run.end_s();
    run.faults
        .iter()
        .map(|f| Window {
            label: f.name.clone(),
            start: f.start_s,
            end: f.end_or(end),
        })
        .collect()
}

fn recoveries(run: &RunData) -> Vec<Recovery> {
    recovery::recoveries(
        &run.results,
        &run.faults,
        &run.operations(),
        &run.slo_p99_us,
        run.end_s(),
    )
}

fn assess(run: &RunData, ids: &Ids, recs: &[Recovery]) -> (Status, Vec<Finding>) {
    let r = &run.results;
    let mut findings = Vec::new();
    let mut has_checks = false;
    if let Some(v) = &run.verdict {
        has_checks = !v.is_empty();
        for (kind, items) in [("check", &v.checks), ("slo", &v.slo), ("gate", &v.gates)] {
            for c in items.iter().filter(|c| !c.passed) {
                let what = match kind {
                    "check" => format!("check {} failed", c.name),
                    "slo" => format!("SLO {} not met", c.name),
                    _ => format!("gate: {} regressed", c.name),
                };
                findings.push(Finding {
                    fail: true,
                    text: format!("{what}{}", colon(&c.evidence)),
                    href: format!("#{kind}-{}", slug(&c.name)),
                });
            }
        }
        if v.passed == Some(false) && findings.is_empty() {
            findings.push(Finding {
                fail: true,
                text: "verdict.json says the run failed".to_owned(),
                href: "#checks".to_owned(),
            });
        }
    }
    if !r.complete {
        findings.push(Finding {
            fail: false,
            text: match &r.interrupted {
                Some(why) => format!("The run did not complete: {why}."),
                None => "The run did not complete: results.json says complete: false (the run was killed, or is still going). Figures cover what was recorded.".to_owned(),
            },
            href: "#summary".to_owned(),
        });
    }
    if let Some(b) = &r.engine.bottleneck {
        findings.push(Finding {
            fail: false,
            text: format!("Not a measurement of the system: {b}"),
            href: "#engine".to_owned(),
        });
    }
    for op in &r.totals {
        if op.errors > 0 {
            let kinds: Vec<String> = op
                .errors_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {}", thousands(*n)))
                .collect();
            findings.push(Finding {
                fail: false,
                text: format!(
                    "{}: {} errors of {} ({:.2} %){}",
                    op.operation,
                    thousands(op.errors),
                    thousands(op.count),
                    op.errors as f64 * 100.0 / op.count.max(1) as f64,
                    if kinds.is_empty() {
                        String::new()
                    } else {
                        format!(" — {}", kinds.join(", "))
                    }
                ),
                href: format!("#{}-errors", ids.op(&op.operation)),
            });
        }
    }
    for rec in recs {
        if let Recovered::NotWithin(s) = rec.throughput {
            findings.push(Finding {
                fail: false,
                text: format!(
                    "{}: throughput did not recover from {} within the run ({} observed after it)",
                    rec.operation,
                    rec.fault,
                    seconds(s)
                ),
                href: format!("#recovery-{}", slug(&rec.fault)),
            });
        }
    }
    for s in series::service_series(&run.metrics) {
        if s.scrape_errors > 0 {
            findings.push(Finding {
                fail: false,
                text: format!(
                    "{}: {} of {} metrics scrapes failed{}",
                    s.service,
                    s.scrape_errors,
                    s.scrapes,
                    colon(s.last_scrape_error.as_deref().unwrap_or(""))
                ),
                href: format!("#svc-{}", slug(&s.service)),
            });
        }
    }
    for note in [&run.faults_note, &run.verdict_note].into_iter().flatten() {
        findings.push(Finding {
            fail: false,
            text: note.clone(),
            href: "#chaos".to_owned(),
        });
    }
    if run.latency.is_empty()
        && let Some(note) = &run.hlog_note
    {
        findings.push(Finding {
            fail: false,
            text: format!("No latency distributions: {note}."),
            href: "#files".to_owned(),
        });
    }

    let fails = findings.iter().filter(|f| f.fail).count();
    let status = if fails > 0 {
        Status {
            class: "v-fail",
            word: "FAILED",
            why: format!(
                "{fails} {} — see below",
                if fails == 1 {
                    "check, SLO or gate metric failed"
                } else {
                    "checks, SLOs or gate metrics failed"
                }
            ),
        }
    } else if !r.complete {
        Status {
            class: "v-warn",
            word: "INCOMPLETE",
            why: "The run did not finish; every figure covers what was recorded before it stopped."
                .to_owned(),
        }
    } else if r.engine.bottleneck.is_some() {
        Status {
            class: "v-warn",
            word: "NOT A MEASUREMENT",
            why: "The load generator fell behind its schedule; the figures describe the harness, not the system.".to_owned(),
        }
    } else if has_checks {
        let v = run.verdict.as_ref();
        let count =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut parts = Vec::new();
        if let Some(v) = v {
            if !v.checks.is_empty() {
                parts.push(count(v.checks.len(), "check", "checks"));
            }
            if !v.slo.is_empty() {
                parts.push(count(v.slo.len(), "SLO", "SLOs"));
            }
            if !v.gates.is_empty() {
                parts.push(count(v.gates.len(), "gate metric", "gate metrics"));
            }
        }
        Status {
            class: "v-pass",
            word: "PASSED",
            why: if parts.is_empty() {
                "verdict.json says the run passed".to_owned()
            } else {
                format!("{} passed", parts.join(", "))
            },
        }
    } else {
        let errors: u64 = r.totals.iter().map(|o| o.errors).sum();
        let count: u64 = r.totals.iter().map(|o| o.count).sum();
        Status {
            class: "v-pass",
            word: "COMPLETED",
            why: format!(
                "Every phase ran: {} operations, {} errors. No checks or gates were defined for this run.",
                thousands(count),
                thousands(errors)
            ),
        }
    };
    (status, findings)
}

fn colon(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

/// The page being written.
struct Page {
    out: String,
    opts: RenderOptions,
}

impl Page {
    fn new(title: &str, opts: &RenderOptions) -> Self {
        let mut out = String::with_capacity(256 * 1024);
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\"/>\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
             <meta name=\"generator\" content=\"{}\"/>\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
            esc(&opts.generator),
            esc(title)
        );
        Self {
            out,
            opts: opts.clone(),
        }
    }

    fn push(&mut self, s: &str) {
        self.out.push_str(s);
    }

    fn note(&mut self, text: &str) {
        let _ = writeln!(self.out, "<p class=\"note\">{}</p>", esc(text));
    }

    fn chart(&mut self, svg: Result<String, String>, class: &str) {
        match svg {
            Ok(svg) => {
                let _ = writeln!(self.out, "<figure class=\"chart {class}\">{svg}</figure>");
            }
            Err(e) => self.note(&format!("This chart could not be drawn: {e}")),
        }
    }

    fn legend(&mut self, items: &[(&str, String, bool)]) {
        self.push("<div class=\"legend\">");
        for (name, color, dashed) in items {
            let _ = write!(
                self.out,
                "<span><i class=\"{}\" style=\"{}:{color}\"></i>{}</span>",
                if *dashed { "dash" } else { "" },
                if *dashed {
                    "border-color"
                } else {
                    "background"
                },
                esc(name)
            );
        }
        self.push("</div>\n");
    }

    fn finish(mut self) -> String {
        let _ = write!(
            self.out,
            "<footer>Generated by {}. One self-contained file: no script, nothing fetched. The data behind every figure is in the run directory's results.json, latency.hlog, metrics.jsonl and faults.json.</footer>\n</main>\n</body>\n</html>\n",
            esc(&self.opts.generator)
        );
        self.out
    }
}

/// `2026-11-23T08:30:37.81Z` → `2026-11-23 08:30:37 UTC`.
fn when(rfc3339: &str) -> String {
    let Some((date, time)) = rfc3339.split_once('T') else {
        return rfc3339.to_owned();
    };
    let time = time.trim_end_matches('Z');
    let time = time.split('.').next().unwrap_or(time);
    format!("{date} {time} UTC")
}

fn fact(out: &mut String, name: &str, value: &str) {
    let _ = write!(out, "<div><dt>{}</dt><dd>{}</dd></div>", esc(name), value);
}

fn facts(run: &RunData) -> String {
    let r = &run.results;
    let mut out = String::from("<dl class=\"facts\">");
    fact(&mut out, "Started", &esc(&when(&r.started_at)));
    fact(
        &mut out,
        "Duration",
        &format!(
            "{}{}",
            esc(&seconds(r.elapsed_s)),
            if r.complete { "" } else { " (incomplete)" }
        ),
    );
    fact(
        &mut out,
        "Git revision",
        &format!(
            "<span class=\"mono\">{}</span>",
            esc(r.git_revision.as_deref().unwrap_or("unknown"))
        ),
    );
    fact(&mut out, "Machine", &esc(&r.host));
    fact(&mut out, "Runtime", &esc(&r.runtime));
    fact(&mut out, "Seed", &r.seed.to_string());
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|p| format!("{} {}", p.name, seconds(p.duration_s)))
        .collect();
    fact(&mut out, "Phases", &esc(&phases.join(" · ")));
    fact(
        &mut out,
        "Run directory",
        &format!("<span class=\"mono\">{}</span>", esc(&run.label)),
    );
    out.push_str("</dl>\n");
    out
}

/// A table cell holding a number: the text people read, the raw value in `data-v`.
fn num(metric: &str, raw: impl std::fmt::Display, text: &str, class: &str) -> String {
    format!(
        "<td data-m=\"{metric}\" data-v=\"{raw}\"{}>{}</td>",
        if class.is_empty() {
            String::new()
        } else {
            format!(" class=\"{class}\"")
        },
        esc(text)
    )
}

const OP_COLUMNS: [&str; 9] = [
    "count",
    "errors",
    "late",
    "throughput",
    "p50",
    "p90",
    "p99",
    "p99.9",
    "max",
];

fn op_cells(o: &OperationResult) -> String {
    let l = &o.latency_us;
    let none = o.count == o.errors;
    let lat = |m: &str, v: u64| {
        if none {
            format!("<td data-m=\"{m}\" class=\"zero\">–</td>")
        } else {
            num(m, v, &human_us(v), "")
        }
    };
    let zero = |v: u64| if v == 0 { "zero" } else { "" };
    let mut s = String::new();
    s.push_str(&num("count", o.count, &thousands(o.count), zero(o.count)));
    s.push_str(&num(
        "errors",
        o.errors,
        &thousands(o.errors),
        if o.errors > 0 { "hot" } else { "zero" },
    ));
    s.push_str(&num("late", o.late, &thousands(o.late), zero(o.late)));
    // An operation carrying batches of messages shows messages/s too.
    let shown = match o.messages_per_s {
        Some(m) => format!("{} ({} msg)", human_rate(o.throughput_per_s), human_rate(m)),
        None => human_rate(o.throughput_per_s),
    };
    s.push_str(&num("throughput", o.throughput_per_s, &shown, ""));
    s.push_str(&lat("p50", l.p50));
    s.push_str(&lat("p90", l.p90));
    s.push_str(&lat("p99", l.p99));
    s.push_str(&lat("p999", l.p999));
    s.push_str(&lat("max", l.max));
    s
}

fn op_header(first: &str) -> String {
    let mut s = format!("<thead><tr><th class=\"l\">{first}</th>");
    for c in OP_COLUMNS {
        let _ = write!(s, "<th>{c}</th>");
    }
    s.push_str("</tr></thead>");
    s
}

fn totals_table(run: &RunData, ids: &Ids) -> String {
    let mut s = String::from("<table class=\"totals\" data-table=\"totals\">");
    s.push_str(&op_header("operation"));
    s.push_str("<tbody>");
    for o in &run.results.totals {
        let _ = write!(
            s,
            "<tr data-op=\"{}\"><td class=\"l\"><a href=\"#{}\">{}</a></td>{}</tr>",
            esc(&o.operation),
            ids.op(&o.operation),
            esc(&o.operation),
            op_cells(o)
        );
    }
    s.push_str("</tbody></table>\n");
    s
}

fn phase_table(run: &RunData, op: &str) -> String {
    let mut s = format!(
        "<table class=\"phases\" data-table=\"phases\" data-op=\"{}\">",
        esc(op)
    );
    s.push_str(&op_header("phase"));
    s.push_str("<tbody>");
    for p in &run.results.phases {
        if let Some(o) = p.operations.iter().find(|o| o.operation == op) {
            let _ = write!(
                s,
                "<tr data-phase=\"{}\"><td class=\"l\">{} <span class=\"muted small\">{} · {}</span></td>{}</tr>",
                esc(&p.name),
                esc(&p.name),
                esc(&seconds(p.duration_s)),
                esc(&human_rate(p.target_rate_per_s)),
                op_cells(o)
            );
        }
    }
    if let Some(o) = run.results.total(op) {
        let _ = write!(
            s,
            "<tr class=\"total\" data-phase=\"(all)\"><td class=\"l\">all phases</td>{}</tr>",
            op_cells(o)
        );
    }
    s.push_str("</tbody></table>\n");
    s
}

fn engine_line(run: &RunData) -> String {
    let e = &run.results.engine;
    format!(
        "<p class=\"small muted\" id=\"engine\">Load generator: {} scheduled, {} started, {} late ({} because the engine fell behind, {} because <code>max_in_flight</code> was reached), largest start lag {}, at most {} in flight, {:.1} ms CPU per 1,000 operations.{}</p>\n",
        thousands(e.scheduled),
        thousands(e.started),
        thousands(e.late),
        thousands(e.late_engine),
        thousands(e.late_in_flight_limit),
        human_us(e.max_start_lag_us),
        thousands(e.peak_in_flight),
        e.cpu_ms_per_1000_ops,
        e.bottleneck
            .as_ref()
            .map(|b| format!(" <strong class=\"worse\">{}</strong>", esc(b)))
            .unwrap_or_default()
    )
}

fn ds(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    downsample(points, max)
}

fn operation_section(page: &mut Page, run: &RunData, op: &str, ids: &Ids) {
    let id = ids.op(op);
    let max = page.opts.max_points;
    let phases = run.phase_spans();
    let faults = fault_windows(run);
    let x_end = run.end_s();
    let s = series::operation_series(&run.results, op);
    let _ = write!(
        page.out,
        "<section id=\"{id}\" class=\"operation\" data-op=\"{}\">\n<h2>Operation: {}</h2>\n",
        esc(op),
        esc(op)
    );
    page.push(&phase_table(run, op));
    page.push("<p class=\"small muted\">Latency is measured from each operation's intended start (no coordinated omission), for successful operations; throughput counts successful operations per second.</p>\n");

    // Latency over time, linear and log.
    let _ = writeln!(page.out, "<h3 id=\"{id}-latency\">Latency over time</h3>");
    let lines = vec![
        Line::new("max", SLATE, ds(&s.max, max)).thin(),
        Line::new("p99", ORANGE, ds(&s.p99, max)),
        Line::new("p50", BLUE, ds(&s.p50, max)),
    ];
    let mut legend = vec![
        ("p50", charts::hex(BLUE), false),
        ("p99", charts::hex(ORANGE), false),
        ("max", charts::hex(SLATE), false),
    ];
    let fault_legend = !faults.is_empty();
    page.legend(&legend);
    if s.p50.is_empty() {
        page.note("No successful operation: no latency to plot.");
    } else {
        let _ = writeln!(
            page.out,
            "<div class=\"lat\"><input type=\"checkbox\" class=\"logt\" id=\"{id}-log\"/><label class=\"toggle\" for=\"{id}-log\">log scale</label>"
        );
        for log in [false, true] {
            let chart = TimeChart {
                height: 280,
                x_end,
                unit: Unit::Micros,
                log,
                lines: lines.clone(),
                phases: &phases,
                faults: &faults,
                from_zero: true,
            };
            let aria = format!(
                "{op}: latency over time, p50, p99 and max per second{}",
                if log { ", log scale" } else { "" }
            );
            page.chart(
                charts::time_chart(&chart, &aria),
                if log { "log" } else { "lin" },
            );
        }
        page.push("</div>\n");
    }

    // Throughput over time.
    let _ = writeln!(
        page.out,
        "<h3 id=\"{id}-throughput\">Throughput over time</h3>"
    );
    legend.clear();
    legend.push(("successful operations per second", charts::hex(TEAL), false));
    if fault_legend {
        legend.push(("fault window", String::new(), false));
    }
    page.legend_with_window(&legend);
    let chart = TimeChart {
        height: 220,
        x_end,
        unit: Unit::PerSecond,
        log: false,
        lines: vec![Line::new("throughput", TEAL, ds(&s.throughput, max))],
        phases: &phases,
        faults: &faults,
        from_zero: true,
    };
    page.chart(
        charts::time_chart(
            &chart,
            &format!("{op}: successful operations per second over time"),
        ),
        "",
    );
    if !faults.is_empty() {
        page.chart(
            charts::fault_lane(&faults, x_end, &format!("{op}: fault timeline")),
            "lane",
        );
    }

    // Distribution from latency.hlog.
    let _ = writeln!(
        page.out,
        "<h3 id=\"{id}-distribution\">Latency distribution</h3>"
    );
    match run.latency.get(op) {
        Some(h) if !h.is_empty() => {
            let nines = charts::nines_for(h.len());
            let pts = charts::distribution_points(h, nines);
            page.chart(
                charts::percentile_chart(
                    &[Line::new(op, BLUE, pts)],
                    nines,
                    &format!("{op}: latency by percentile"),
                ),
                "",
            );
            let _ = writeln!(
                page.out,
                "<p class=\"small muted\">Every interval of <code>latency.hlog</code> for <code>{}</code> merged ({} values); x axis in nines: each step to the right is ten times rarer.{}</p>",
                esc(op),
                thousands(h.len()),
                run.hlog_note
                    .as_ref()
                    .map(|n| format!(" Note: {}.", esc(n)))
                    .unwrap_or_default()
            );
        }
        _ => page.note(&format!(
            "No latency distribution for {op}: {}.",
            run.hlog_note
                .as_deref()
                .unwrap_or("latency.hlog has no successful operation of it")
        )),
    }

    // Errors over time by kind.
    let _ = writeln!(page.out, "<h3 id=\"{id}-errors\">Errors over time</h3>");
    let total = run.results.total(op);
    let errors = total.map_or(0, |t| t.errors);
    if errors == 0 {
        page.note("No errors.");
    } else {
        let lines: Vec<Line> = s
            .errors_by_kind
            .iter()
            .enumerate()
            .map(|(i, (k, pts))| {
                Line::new(k.clone(), PALETTE[(i + 1) % PALETTE.len()], ds(pts, max))
            })
            .collect();
        let legend: Vec<(&str, String, bool)> = lines
            .iter()
            .map(|l| (l.name.as_str(), charts::hex(l.color), false))
            .collect();
        page.legend(&legend);
        let chart = TimeChart {
            height: 200,
            x_end,
            unit: Unit::PerSecond,
            log: false,
            lines,
            phases: &phases,
            faults: &faults,
            from_zero: true,
        };
        page.chart(
            charts::time_chart(&chart, &format!("{op}: errors per second by kind")),
            "",
        );
        if let Some(t) = total {
            let mut tbl = String::from(
                "<table class=\"errors compact\" data-table=\"errors\"><thead><tr><th class=\"l\">kind</th><th>errors</th><th>share</th></tr></thead><tbody>",
            );
            for (k, n) in &t.errors_by_kind {
                let _ = write!(
                    tbl,
                    "<tr data-kind=\"{}\"><td class=\"l\"><code>{}</code></td>{}<td>{:.1} %</td></tr>",
                    esc(k),
                    esc(k),
                    num("errors", n, &thousands(*n), ""),
                    *n as f64 * 100.0 / t.errors.max(1) as f64
                );
            }
            tbl.push_str("</tbody></table>\n");
            page.push(&tbl);
        }
    }
    page.push("</section>\n");
}

impl Page {
    /// A chart's title, what its unit is, then its legend, on one line.
    fn titled_legend(&mut self, title: &str, what: &str, items: &[(&str, String, bool)]) {
        let _ = write!(
            self.out,
            "<div class=\"legend titled\"><strong>{}</strong>{}",
            esc(title),
            if what.is_empty() {
                String::new()
            } else {
                format!(" <span class=\"muted\">{}</span>", esc(what))
            }
        );
        for (name, color, _) in items {
            let _ = write!(
                self.out,
                "<span><i style=\"background:{color}\"></i>{}</span>",
                esc(name)
            );
        }
        self.push("</div>\n");
    }

    fn legend_with_window(&mut self, items: &[(&str, String, bool)]) {
        self.push("<div class=\"legend\">");
        for (name, color, _) in items {
            if color.is_empty() {
                let _ = write!(self.out, "<span><i class=\"win\"></i>{}</span>", esc(name));
            } else {
                let _ = write!(
                    self.out,
                    "<span><i style=\"background:{color}\"></i>{}</span>",
                    esc(name)
                );
            }
        }
        self.push("</div>\n");
    }
}

fn system_section(page: &mut Page, run: &RunData) {
    let max = page.opts.max_points;
    let phases = run.phase_spans();
    let faults = fault_windows(run);
    let x_end = run.end_s();
    page.push("<section id=\"system\">\n<h2>System</h2>\n");
    if run.metrics.is_empty() {
        page.note("No metrics.jsonl in this run directory: no service metrics or process samples were collected.");
        page.push("</section>\n");
        return;
    }
    page.push("<p class=\"small muted\">Scraped from each service's <code>/metrics</code> and sampled from <code>/proc</code> every second (<code>metrics.jsonl</code>). Counters are shown as rates.</p>\n");
    for s in series::service_series(&run.metrics) {
        let _ = writeln!(
            page.out,
            "<h3 id=\"svc-{}\">{}{}</h3>",
            slug(&s.service),
            esc(&s.service),
            s.pid
                .map(|p| format!(" <span class=\"muted small\">pid {p}</span>"))
                .unwrap_or_default()
        );
        if s.scrape_errors > 0 {
            page.note(&format!(
                "{} of {} scrapes of /metrics failed{}.",
                s.scrape_errors,
                s.scrapes,
                colon(s.last_scrape_error.as_deref().unwrap_or(""))
            ));
        }
        for (title, unit, what, pts, color) in [
            ("CPU", Unit::Percent, "% of one core", &s.cpu_percent, BLUE),
            ("RSS", Unit::MiB, "resident memory", &s.rss_mib, DARK_SLATE),
        ] {
            page.titled_legend(title, what, &[]);
            if pts.is_empty() {
                page.note(&format!(
                    "No {title} samples: the process could not be read."
                ));
                continue;
            }
            let chart = TimeChart {
                height: 170,
                x_end,
                unit,
                log: false,
                lines: vec![Line::new(title, color, ds(pts, max))],
                phases: &phases,
                faults: &faults,
                from_zero: true,
            };
            page.chart(
                charts::time_chart(&chart, &format!("{}: {title} over time", s.service)),
                "",
            );
        }
        for g in &s.groups {
            let lines: Vec<Line> = g
                .lines
                .iter()
                .enumerate()
                .map(|(i, (name, pts))| {
                    Line::new(name.clone(), PALETTE[i % PALETTE.len()], ds(pts, max))
                })
                .collect();
            let legend: Vec<(&str, String, bool)> = lines
                .iter()
                .map(|l| (l.name.as_str(), charts::hex(l.color), false))
                .collect();
            let what = if g.unit == "/s" { "per second" } else { "" };
            page.titled_legend(&g.title, what, &legend);
            let chart = TimeChart {
                height: 190,
                x_end,
                unit: if g.unit == "/s" {
                    Unit::PerSecond
                } else {
                    Unit::Plain
                },
                log: false,
                lines,
                phases: &phases,
                faults: &faults,
                from_zero: true,
            };
            page.chart(
                charts::time_chart(&chart, &format!("{}: {} over time", s.service, g.title)),
                "",
            );
        }
        let mut quiet = Vec::new();
        if !s.idle.is_empty() {
            quiet.push(format!(
                "zero throughout: {}",
                s.idle.join(", ").to_lowercase()
            ));
        }
        if !s.missing.is_empty() {
            quiet.push(format!(
                "not exported: {}",
                s.missing.join(", ").to_lowercase()
            ));
        }
        if !quiet.is_empty() {
            let _ = writeln!(
                page.out,
                "<p class=\"small muted\">Not charted for {}: {}.</p>",
                esc(&s.service),
                esc(&quiet.join("; "))
            );
        }
    }
    page.push("</section>\n");
}

fn recovered_text(r: Recovered) -> (String, String) {
    match r {
        Recovered::After(s) => (format!("{s}"), format!("after {}", seconds(s))),
        Recovered::NotWithin(s) => (
            "none".to_owned(),
            format!("not within the run ({} observed)", seconds(s)),
        ),
        Recovered::Unknown(why) => ("".to_owned(), why.to_owned()),
    }
}

fn checks_table(kind: &str, title: &str, items: &[CheckResult]) -> String {
    let mut s = format!(
        "<table class=\"checks\" data-table=\"{kind}\"><thead><tr><th class=\"l\">{title}</th><th class=\"l\">verdict</th><th class=\"l\">evidence</th></tr></thead><tbody>"
    );
    for c in items {
        let class = match (c.passed, c.outcome.as_str()) {
            (false, _) => "fail",
            (true, "inconclusive") => "unsure",
            _ => "pass",
        };
        let _ = write!(
            s,
            "<tr id=\"{kind}-{}\" data-passed=\"{}\"><td class=\"l\"><code>{}</code></td><td class=\"l\"><span class=\"pill {class}\">{}</span></td><td class=\"wrap\">{}</td></tr>",
            slug(&c.name),
            c.passed,
            esc(&c.name),
            esc(&c.outcome.to_uppercase()),
            esc(&c.evidence)
        );
    }
    s.push_str("</tbody></table>\n");
    s
}

fn chaos_section(page: &mut Page, run: &RunData, recs: &[Recovery]) {
    let x_end = run.end_s();
    page.push("<section id=\"chaos\">\n<h2>Chaos</h2>\n<h3>Faults</h3>\n");
    if run.faults.is_empty() {
        page.note(match &run.faults_note {
            Some(_) => "faults.json could not be read; no fault windows are shown.",
            None => "No faults were injected in this run (there is no faults.json).",
        });
    } else {
        let faults = fault_windows(run);
        page.chart(charts::fault_lane(&faults, x_end, "fault timeline"), "lane");
        let mut t = String::from(
            "<table class=\"faults\" data-table=\"faults\"><thead><tr><th class=\"l\">fault</th><th class=\"l\">kind</th><th class=\"l\">target</th><th>start</th><th>end</th><th>duration</th><th class=\"l\">parameters</th></tr></thead><tbody>",
        );
        for f in &run.faults {
            let end = f.end_or(x_end);
            let params: Vec<String> = f
                .params
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}: {s}"),
                    v => format!("{k}: {v}"),
                })
                .collect();
            let _ = write!(
                t,
                "<tr id=\"fault-{}\"><td class=\"l\"><strong>{}</strong></td><td class=\"l\"><code>{}</code></td><td class=\"l\">{}</td>{}{}{}<td class=\"wrap\">{}</td></tr>",
                slug(&f.name),
                esc(&f.name),
                esc(&f.kind),
                esc(&f.target),
                num("start_s", f.start_s, &charts::clock(f.start_s, true), ""),
                match f.end_s {
                    Some(e) => num("end_s", e, &charts::clock(e, true), ""),
                    None => "<td data-m=\"end_s\">still applied</td>".to_owned(),
                },
                num("duration_s", end - f.start_s, &seconds(end - f.start_s), ""),
                esc(&params.join(", "))
            );
        }
        t.push_str("</tbody></table>\n");
        page.push(&t);

        page.push("<h3 id=\"recovery\">Recovery</h3>\n");
        let mut t = String::from(
            "<table class=\"recovery\" data-table=\"recovery\"><thead><tr><th class=\"l\">fault</th><th class=\"l\">operation</th><th>before</th><th>lowest</th><th class=\"l\">throughput ≥ 90 % of before</th><th class=\"l\">p99 under its SLO</th></tr></thead><tbody>",
        );
        let mut last_fault = String::new();
        for r in recs {
            let (tv, tt) = recovered_text(r.throughput);
            let (pv, pt) = recovered_text(r.p99);
            let first = r.fault != last_fault;
            let anchor = if first {
                last_fault = r.fault.clone();
                format!(" id=\"recovery-{}\" class=\"group\"", slug(&r.fault))
            } else {
                String::new()
            };
            let rate = |v: Option<f64>, m: &str| match v {
                Some(v) => num(m, v, &human_rate(v), ""),
                None => format!("<td data-m=\"{m}\" class=\"zero\">–</td>"),
            };
            let _ = write!(
                t,
                "<tr{anchor} data-fault=\"{}\" data-op=\"{}\"><td class=\"l\">{}</td><td class=\"l\">{}</td>{}{}<td class=\"l{}\" data-m=\"throughput_recovered_s\" data-v=\"{tv}\">{}</td><td class=\"l\" data-m=\"p99_recovered_s\" data-v=\"{pv}\">{}</td></tr>",
                esc(&r.fault),
                esc(&r.operation),
                if first {
                    format!("<strong>{}</strong>", esc(&r.fault))
                } else {
                    String::new()
                },
                esc(&r.operation),
                rate(r.before_per_s, "before_per_s"),
                rate(r.lowest_per_s, "lowest_per_s"),
                if matches!(r.throughput, Recovered::NotWithin(_)) {
                    " worse"
                } else {
                    ""
                },
                esc(&tt),
                esc(&pt)
            );
        }
        t.push_str("</tbody></table>\n");
        page.push(&t);
        let _ = writeln!(
            page.out,
            "<p class=\"small muted\">Recovery is counted from the moment a fault was lifted, at one-second resolution, from the full per-second data: throughput is recovered when it stays at or above {:.0} % of its mean over the {:.0} s before the fault for {} seconds in a row; p99 when it stays under the operation's p99 objective as long.{}</p>",
            recovery::RECOVERED_FRACTION * 100.0,
            recovery::BEFORE_WINDOW_S,
            recovery::HOLD,
            if run.slo_p99_us.is_empty() {
                " This scenario states no p99 objective."
            } else {
                ""
            }
        );
    }
    page.push("<h3 id=\"checks\">Checks</h3>\n");
    let v = run.verdict.clone().unwrap_or_default();
    if v.checks.is_empty() {
        page.note(match &run.verdict_note {
            Some(_) => "verdict.json could not be read; no check verdicts are shown.",
            None => "No checks were defined for this run.",
        });
    } else {
        page.push(&checks_table("check", "check", &v.checks));
    }
    if !v.slo.is_empty() {
        page.push("<h3 id=\"slo\">SLOs</h3>\n");
        page.push(&checks_table("slo", "objective", &v.slo));
    }
    if !v.gates.is_empty() {
        page.push("<h3 id=\"gate\">Gate</h3>\n");
        page.push(&checks_table("gate", "operation and metric", &v.gates));
    }
    page.push("</section>\n");
}

/// Direction of a metric: is a higher value better, worse, or neither?
#[derive(Clone, Copy, PartialEq)]
enum Better {
    Higher,
    Lower,
    Neither,
}

/// Changes smaller than this (relative) are drawn as unchanged.
const NOISE: f64 = 0.05;

fn change_cell(a: f64, b: f64, better: Better) -> String {
    let (text, class, raw) = if a == b {
        ("=".to_owned(), "same", "0".to_owned())
    } else if a == 0.0 {
        (
            "new".to_owned(),
            if better == Better::Lower {
                "worse"
            } else if better == Better::Higher {
                "better"
            } else {
                "same"
            },
            "inf".to_owned(),
        )
    } else {
        let rel = (b - a) / a;
        let class = if rel.abs() < NOISE || better == Better::Neither {
            "same"
        } else if (rel > 0.0) == (better == Better::Higher) {
            "better"
        } else {
            "worse"
        };
        let arrow = if rel > 0.0 {
            "▲"
        } else if rel < 0.0 {
            "▼"
        } else {
            ""
        };
        (
            format!("{arrow} {:+.1} %", rel * 100.0),
            class,
            format!("{rel}"),
        )
    };
    format!(
        "<td data-m=\"change\" data-v=\"{raw}\" class=\"{class}\">{}</td>",
        esc(&text)
    )
}

fn changes_table(a: &RunData, b: &RunData) -> String {
    let mut ops = a.operations();
    for o in b.operations() {
        if !ops.contains(&o) {
            ops.push(o);
        }
    }
    let mut s = format!(
        "<table class=\"changes\" data-table=\"changes\"><thead><tr><th class=\"l\">operation</th><th class=\"l\">metric</th><th>A: {}</th><th>B: {}</th><th>change</th></tr></thead><tbody>",
        esc(&short(&a.label)),
        esc(&short(&b.label))
    );
    for op in &ops {
        let (ta, tb) = (a.results.total(op), b.results.total(op));
        let (Some(ta), Some(tb)) = (ta, tb) else {
            let _ = write!(
                s,
                "<tr data-op=\"{}\"><td class=\"l\">{}</td><td class=\"l\" colspan=\"4\">only in run {}</td></tr>",
                esc(op),
                esc(op),
                if ta.is_some() { "A" } else { "B" }
            );
            continue;
        };
        let err_rate = |t: &OperationResult| t.errors as f64 * 100.0 / t.count.max(1) as f64;
        let rows: [(&str, f64, f64, String, String, Better); 9] = [
            (
                "count",
                ta.count as f64,
                tb.count as f64,
                thousands(ta.count),
                thousands(tb.count),
                Better::Neither,
            ),
            (
                "error rate",
                err_rate(ta),
                err_rate(tb),
                format!("{:.2} %", err_rate(ta)),
                format!("{:.2} %", err_rate(tb)),
                Better::Lower,
            ),
            (
                "throughput",
                ta.throughput_per_s,
                tb.throughput_per_s,
                human_rate(ta.throughput_per_s),
                human_rate(tb.throughput_per_s),
                Better::Higher,
            ),
            (
                "late",
                ta.late as f64,
                tb.late as f64,
                thousands(ta.late),
                thousands(tb.late),
                Better::Lower,
            ),
            (
                "p50",
                ta.latency_us.p50 as f64,
                tb.latency_us.p50 as f64,
                human_us(ta.latency_us.p50),
                human_us(tb.latency_us.p50),
                Better::Lower,
            ),
            (
                "p90",
                ta.latency_us.p90 as f64,
                tb.latency_us.p90 as f64,
                human_us(ta.latency_us.p90),
                human_us(tb.latency_us.p90),
                Better::Lower,
            ),
            (
                "p99",
                ta.latency_us.p99 as f64,
                tb.latency_us.p99 as f64,
                human_us(ta.latency_us.p99),
                human_us(tb.latency_us.p99),
                Better::Lower,
            ),
            (
                "p99.9",
                ta.latency_us.p999 as f64,
                tb.latency_us.p999 as f64,
                human_us(ta.latency_us.p999),
                human_us(tb.latency_us.p999),
                Better::Lower,
            ),
            (
                "max",
                ta.latency_us.max as f64,
                tb.latency_us.max as f64,
                human_us(ta.latency_us.max),
                human_us(tb.latency_us.max),
                Better::Lower,
            ),
        ];
        for (i, (metric, va, vb, xa, xb, better)) in rows.into_iter().enumerate() {
            let _ = write!(
                s,
                "<tr data-op=\"{}\" data-metric=\"{metric}\"{}><td class=\"l\">{}</td><td class=\"l\">{metric}</td><td data-v=\"{va}\">{}</td><td data-v=\"{vb}\">{}</td>{}</tr>",
                esc(op),
                if i == 0 { " class=\"first\"" } else { "" },
                if i == 0 {
                    format!("<strong>{}</strong>", esc(op))
                } else {
                    String::new()
                },
                esc(&xa),
                esc(&xb),
                change_cell(va, vb, better)
            );
        }
    }
    s.push_str("</tbody></table>\n");
    s
}

fn short(label: &str) -> String {
    if label.chars().count() > 34 {
        let tail: String = label
            .chars()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    } else {
        label.to_owned()
    }
}

fn comparison_body(page: &mut Page, a: &RunData, b: &RunData) {
    let max = page.opts.max_points;
    let _ = writeln!(
        page.out,
        "<p>Run <strong>A</strong> <span class=\"mono\">{}</span> ({}, revision <span class=\"mono\">{}</span>) against run <strong>B</strong> <span class=\"mono\">{}</span> ({}, revision <span class=\"mono\">{}</span>). Changes are B relative to A; <span class=\"better\">green</span> is better, <span class=\"worse\">red</span> is worse, changes under {:.0} % are grey.</p>",
        esc(&a.label),
        esc(&when(&a.results.started_at)),
        esc(a.results.git_revision.as_deref().unwrap_or("unknown")),
        esc(&b.label),
        esc(&when(&b.results.started_at)),
        esc(b.results.git_revision.as_deref().unwrap_or("unknown")),
        NOISE * 100.0
    );
    page.push(&changes_table(a, b));
    let a_color = SLATE;
    let b_color = BLUE;
    for op in b.operations() {
        if a.results.total(&op).is_none() {
            continue;
        }
        let _ = writeln!(
            page.out,
            "<h3 id=\"cmp-{}\">{}: latency distribution, A and B</h3>",
            slug(&op),
            esc(&op)
        );
        let la = a.latency.get(&op).filter(|h| !h.is_empty());
        let lb = b.latency.get(&op).filter(|h| !h.is_empty());
        if la.is_none() && lb.is_none() {
            page.note("Neither run has a latency.hlog for this operation.");
        } else {
            let nines = la
                .iter()
                .chain(lb.iter())
                .map(|h| charts::nines_for(h.len()))
                .fold(1.0, f64::max);
            let mut lines = Vec::new();
            if let Some(h) = la {
                lines.push(Line::new(
                    "A",
                    a_color,
                    charts::distribution_points(h, nines),
                ));
            }
            if let Some(h) = lb {
                lines.push(Line::new(
                    "B",
                    b_color,
                    charts::distribution_points(h, nines),
                ));
            }
            page.legend(&[
                (
                    &format!("A: {}", short(&a.label)),
                    charts::hex(a_color),
                    false,
                ),
                (
                    &format!("B: {}", short(&b.label)),
                    charts::hex(b_color),
                    false,
                ),
            ]);
            page.chart(
                charts::percentile_chart(
                    &lines,
                    nines,
                    &format!("{op}: latency by percentile, A and B"),
                ),
                "",
            );
        }
        let _ = writeln!(
            page.out,
            "<h3>{}: latency over time, A and B</h3>",
            esc(&op)
        );
        let sa = series::operation_series(&a.results, &op);
        let sb = series::operation_series(&b.results, &op);
        page.legend(&[
            ("A p99", charts::hex(a_color), false),
            ("A p50", charts::hex(a_color), true),
            ("B p99", charts::hex(b_color), false),
            ("B p50", charts::hex(b_color), true),
        ]);
        let x_end = a.end_s().max(b.end_s());
        let chart = TimeChart {
            height: 260,
            x_end,
            unit: Unit::Micros,
            log: true,
            lines: vec![
                Line::new("A p50", a_color, ds(&sa.p50, max)).dashed(),
                Line::new("A p99", a_color, ds(&sa.p99, max)),
                Line::new("B p50", b_color, ds(&sb.p50, max)).dashed(),
                Line::new("B p99", b_color, ds(&sb.p99, max)),
            ],
            phases: &b.phase_spans(),
            faults: &[],
            from_zero: false,
        };
        page.chart(
            charts::time_chart(
                &chart,
                &format!("{op}: p50 and p99 over time, A and B, log scale"),
            ),
            "",
        );
    }
    page.push(&crate::profiles_html::comparison(a, b));
}

fn files_section(page: &mut Page, run: &RunData) {
    const WHAT: [(&str, &str); 10] = [
        (
            "results.json",
            "every table: per phase and operation, totals, per-second intervals, the engine's figures",
        ),
        (
            "latency.hlog",
            "HdrHistogram interval log, one tag per operation: the distribution plots",
        ),
        (
            "metrics.jsonl",
            "each service's /metrics and process CPU/RSS, every second: the System section",
        ),
        (
            "faults.json",
            "fault windows: the shading, the lanes and the Chaos section",
        ),
        ("verdict.json", "check and gate verdicts"),
        (
            "scenario.yaml",
            "the scenario as run, every default written out",
        ),
        ("summary.txt", "the summary table as printed"),
        ("report.html", "this report"),
        ("junit.xml", "the gate's verdict for CI"),
        ("summary.md", "the gate's verdict in Markdown"),
    ];
    page.push("<section id=\"files\">\n<h2>Files</h2>\n<p class=\"small muted\">Everything this report shows is in these files, for other tools to use.</p>\n");
    if run.files.is_empty() {
        page.note("No run directory files were listed.");
    } else {
        let mut t = String::from(
            "<table class=\"files\"><thead><tr><th class=\"l\">file</th><th>size</th><th class=\"l\">what</th></tr></thead><tbody>",
        );
        for (name, size) in &run.files {
            if name.ends_with(".tmp") {
                continue;
            }
            let what = WHAT
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, w)| *w)
                .unwrap_or(if name.starts_with("logs/") {
                    "the service's output"
                } else if name.ends_with(".pb.gz") {
                    "a CPU profile (gzipped profile.proto): the Profiles section"
                } else if name.ends_with(".folded") {
                    "the same profile as folded stacks"
                } else {
                    ""
                });
            let name_html = if page.opts.link_files {
                format!("<a href=\"{}\"><code>{}</code></a>", esc(name), esc(name))
            } else {
                format!("<code>{}</code>", esc(name))
            };
            let size_text = if *size >= 1 << 20 {
                format!("{:.1} MiB", *size as f64 / (1u64 << 20) as f64)
            } else if *size >= 1 << 10 {
                format!("{:.1} KiB", *size as f64 / 1024.0)
            } else {
                format!("{size} B")
            };
            let _ = write!(
                t,
                "<tr><td class=\"l\">{name_html}</td><td>{}</td><td class=\"wrap\">{}</td></tr>",
                esc(&size_text),
                esc(what)
            );
        }
        t.push_str("</tbody></table>\n");
        page.push(&t);
    }
    page.push("</section>\n");
}

fn header(page: &mut Page, run: &RunData, kind: &str, status: &Status, findings: &[Finding]) {
    let _ = write!(
        page.out,
        "<header id=\"top\">\n<div class=\"eyebrow\">Gauntlet · {}</div>\n<h1>{}</h1>\n<div class=\"verdict {}\" id=\"verdict\"><span class=\"badge\">{}</span><span class=\"why\">{}</span></div>\n",
        esc(kind),
        esc(&run.results.scenario),
        status.class,
        status.word,
        esc(&status.why)
    );
    page.push(&facts(run));
    if !findings.is_empty() {
        page.push("<ul class=\"findings\" id=\"findings\">");
        for f in findings {
            let _ = write!(
                page.out,
                "<li class=\"{}\">{}<a href=\"{}\">evidence →</a></li>",
                if f.fail { "fail" } else { "warn" },
                esc(&f.text),
                esc(&f.href)
            );
        }
        page.push("</ul>\n");
    }
    page.push("</header>\n");
}

fn toc(page: &mut Page, run: &RunData, ids: &Ids, comparison: bool) {
    page.push("<nav class=\"toc\"><a href=\"#top\">Top</a><a href=\"#summary\">Summary</a>");
    for op in run.operations() {
        let _ = write!(page.out, "<a href=\"#{}\">{}</a>", ids.op(&op), esc(&op));
    }
    page.push("<a href=\"#system\">System</a><a href=\"#chaos\">Chaos</a>");
    if !run.profiles.is_empty() || run.profiles_note.is_some() {
        page.push("<a href=\"#profiles\">Profiles</a>");
    }
    if comparison {
        page.push("<a href=\"#comparison\">Comparison</a>");
    }
    page.push("<a href=\"#files\">Files</a></nav>\n");
}

/// The report of one run; with a baseline, a Comparison section too.
pub fn render_run(run: &RunData, baseline: Option<&RunData>, opts: &RenderOptions) -> String {
    let ops = run.operations();
    let ids = Ids::new(&ops);
    let recs = recoveries(run);
    let (status, findings) = assess(run, &ids, &recs);
    let mut page = Page::new(
        &format!(
            "{} — Gauntlet report ({})",
            run.results.scenario,
            status.word.to_lowercase()
        ),
        opts,
    );
    header(&mut page, run, "run report", &status, &findings);
    toc(&mut page, run, &ids, baseline.is_some());
    page.push("<section id=\"summary\">\n<h2>Summary</h2>\n");
    page.push(&totals_table(run, &ids));
    page.push(&engine_line(run));
    page.push("</section>\n");
    for op in &ops {
        operation_section(&mut page, run, op, &ids);
    }
    system_section(&mut page, run);
    chaos_section(&mut page, run, &recs);
    page.push(&crate::profiles_html::section(run));
    if let Some(base) = baseline {
        page.push("<section id=\"comparison\">\n<h2>Comparison with the baseline</h2>\n");
        comparison_body(&mut page, base, run);
        page.push("</section>\n");
    }
    files_section(&mut page, run);
    page.finish()
}

/// One report putting two runs side by side: A (before) and B (after).
pub fn render_comparison(a: &RunData, b: &RunData, opts: &RenderOptions) -> String {
    let mut page = Page::new(
        &format!(
            "{} vs {} — Gauntlet comparison",
            a.results.scenario, b.results.scenario
        ),
        opts,
    );
    let (ids_a, ids_b) = (Ids::new(&a.operations()), Ids::new(&b.operations()));
    let (sa, fa) = assess(a, &ids_a, &recoveries(a));
    let (sb, fb) = assess(b, &ids_b, &recoveries(b));
    let title = if a.results.scenario == b.results.scenario {
        a.results.scenario.clone()
    } else {
        format!("{} vs {}", a.results.scenario, b.results.scenario)
    };
    let _ = write!(
        page.out,
        "<header id=\"top\">\n<div class=\"eyebrow\">Gauntlet · comparison</div>\n<h1>{}</h1>\n",
        esc(&title)
    );
    for (name, run, status, findings) in [("A", a, &sa, &fa), ("B", b, &sb, &fb)] {
        let _ = write!(
            page.out,
            "<h3 id=\"run-{}\">Run {name}: <span class=\"mono\">{}</span></h3>\n<div class=\"verdict {}\"><span class=\"badge\">{}</span><span class=\"why\">{}</span></div>\n",
            name.to_lowercase(),
            esc(&run.label),
            status.class,
            status.word,
            esc(&status.why)
        );
        page.push(&facts(run));
        let fails: Vec<&Finding> = findings.iter().filter(|f| f.fail).collect();
        if !fails.is_empty() {
            page.push("<ul class=\"findings\">");
            for f in fails {
                let _ = write!(page.out, "<li class=\"fail\">{}</li>", esc(&f.text));
            }
            page.push("</ul>\n");
        }
    }
    page.push("</header>\n<nav class=\"toc\"><a href=\"#top\">Top</a><a href=\"#comparison\">Changes</a><a href=\"#totals\">Totals</a></nav>\n");
    page.push("<section id=\"comparison\">\n<h2>Changes</h2>\n");
    comparison_body(&mut page, a, b);
    page.push("</section>\n<section id=\"totals\">\n<h2>Totals</h2>\n");
    for (name, run, ids) in [("A", a, &ids_a), ("B", b, &ids_b)] {
        let _ = writeln!(page.out, "<h3>Run {name}</h3>");
        // Links inside a comparison point nowhere: strip them.
        let table = totals_table(run, ids);
        page.push(&strip_links(&table));
        page.push(&engine_line(run).replace(" id=\"engine\"", ""));
    }
    page.push("</section>\n");
    page.finish()
}

fn strip_links(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("<a href=\"") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(close) = after.find('>') else { break };
        rest = &after[close + 1..];
        if let Some(end) = rest.find("</a>") {
            out.push_str(&rest[..end]);
            rest = &rest[end + 4..];
        }
    }
    out.push_str(rest);
    out
}
