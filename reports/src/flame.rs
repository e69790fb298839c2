//! Flamegraphs as inline SVG, from folded stacks: readable with no script
//! (each frame's full name and share in a `<title>`, which the browser
//! shows on hover), well-formed XML, no external reference.
//!
//! Root at the top (an icicle, as pprof's web view draws it); children
//! in name order; a frame narrower than [`MIN_WIDTH`] of the whole is
//! left out (its time stays in its parent's width). The differential
//! graph is drawn from the *after* profile and coloured by how each
//! frame's share of all samples (total time) changed: red grew, blue
//! shrank, white unchanged.

use std::collections::BTreeMap;
use std::fmt::Write;

use gauntlet_recorder::profiles::Folded;

use crate::html::esc;

/// Drawing width in SVG units (the SVG scales to its container).
const WIDTH: f64 = 1000.0;
const ROW: f64 = 16.0;
/// Narrowest frame drawn, as a share of the whole.
pub const MIN_WIDTH: f64 = 0.002;
/// Deepest row drawn.
const MAX_DEPTH: usize = 80;
/// Approximate width of one label character at 11 px.
const CHAR_W: f64 = 6.2;

#[derive(Default)]
struct Node {
    total: u64,
    children: BTreeMap<String, Node>,
}

fn tree(f: &Folded) -> Node {
    let mut root = Node::default();
    for (stack, &count) in &f.stacks {
        root.total += count;
        let mut node = &mut root;
        for frame in stack {
            node = node.children.entry(frame.clone()).or_default();
            node.total += count;
        }
    }
    root
}

/// The share of all samples each stack prefix takes (path → share).
fn shares(f: &Folded) -> BTreeMap<Vec<String>, f64> {
    let total = f.total().max(1) as f64;
    let mut out: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    for (stack, &count) in &f.stacks {
        for depth in 1..=stack.len() {
            *out.entry(stack[..depth].to_vec()).or_default() += count as f64 / total;
        }
    }
    out
}

/// A frame's colour: warm hues picked by a hash of the name, so a
/// function has the same colour in every graph.
fn warm(name: &str) -> String {
    let h = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    let r = 205 + (h % 50) as u32;
    let g = 80 + ((h >> 8) % 130) as u32;
    let b = 40 + ((h >> 16) % 40) as u32;
    format!("rgb({r},{g},{b})")
}

/// Red for growth, blue for shrinking, scaled by `delta / max`.
fn diverging(delta: f64, max: f64) -> String {
    let t = if max > 0.0 {
        (delta / max).clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let fade = |x: f64| (255.0 - x * 200.0).round() as u32;
    if t >= 0.0 {
        format!("rgb(255,{},{})", fade(t), fade(t))
    } else {
        format!("rgb({},{},255)", fade(-t), fade(-t))
    }
}

struct Draw<'a> {
    out: String,
    total: f64,
    rows: usize,
    /// For a differential graph: the before profile's shares and the largest change.
    diff: Option<(&'a BTreeMap<Vec<String>, f64>, f64)>,
}

impl Draw<'_> {
    fn frame(&mut self, path: &mut Vec<String>, node: &Node, x: f64, depth: usize) {
        let mut cx = x;
        for (name, child) in &node.children {
            let share = child.total as f64 / self.total;
            let w = share * WIDTH;
            if share < MIN_WIDTH || depth >= MAX_DEPTH {
                cx += w;
                continue;
            }
            path.push(name.clone());
            self.rows = self.rows.max(depth + 1);
            let y = depth as f64 * ROW;
            let (fill, change) = match self.diff {
                Some((before, max)) => {
                    let was = before.get(path.as_slice()).copied().unwrap_or(0.0);
                    let delta = share - was;
                    (
                        diverging(delta, max),
                        format!(
                            ", {:+.2} pp vs before ({:.2} %)",
                            delta * 100.0,
                            was * 100.0
                        ),
                    )
                }
                None => (warm(name), String::new()),
            };
            let _ = write!(
                self.out,
                "<g><title>{} — {} samples, {:.2} %{}</title><rect x=\"{x:.2}\" y=\"{y:.1}\" width=\"{w:.2}\" height=\"{h:.1}\" fill=\"{fill}\" stroke=\"#fff\" stroke-width=\"0.5\"/>",
                esc(name),
                child.total,
                share * 100.0,
                esc(&change),
                x = cx,
                h = ROW - 1.0,
            );
            let fits = ((w - 6.0) / CHAR_W).floor() as usize;
            if fits >= 3 {
                let label: String = if name.chars().count() <= fits {
                    name.clone()
                } else {
                    let mut s: String = name.chars().take(fits.saturating_sub(1)).collect();
                    s.push('…');
                    s
                };
                let _ = write!(
                    self.out,
                    "<text x=\"{:.2}\" y=\"{:.1}\">{}</text>",
                    cx + 3.0,
                    y + ROW - 4.5,
                    esc(&label)
                );
            }
            self.out.push_str("</g>");
            self.frame(path, child, cx, depth + 1);
            path.pop();
            cx += w;
        }
    }
}

fn svg(f: &Folded, title: &str, diff: Option<(&BTreeMap<Vec<String>, f64>, f64)>) -> String {
    let root = tree(f);
    if root.total == 0 {
        return String::new();
    }
    let mut d = Draw {
        out: String::new(),
        total: root.total as f64,
        rows: 0,
        diff,
    };
    d.frame(&mut Vec::new(), &root, 0.0, 0);
    let height = (d.rows.max(1) as f64) * ROW;
    format!(
        "<svg class=\"flame\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"{}\" font-size=\"11\"><title>{}</title>{}</svg>",
        esc(title),
        esc(title),
        d.out
    )
}

/// A flamegraph of `f` (empty string for an empty profile).
pub fn flamegraph(f: &Folded, title: &str) -> String {
    svg(f, title, None)
}

/// `after` drawn, coloured by the change of each frame's share from `before`.
pub fn differential(before: &Folded, after: &Folded, title: &str) -> String {
    let was = shares(before);
    let now = shares(after);
    let max = now
        .iter()
        .map(|(p, s)| (s - was.get(p).copied().unwrap_or(0.0)).abs())
        .fold(0.0, f64::max);
    svg(after, title, Some((&was, max)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_rects_with_titles_and_xml() {
        let f = Folded::parse("main;serve;parse 30\nmain;serve;write 70\nmain;tiny 0\n").unwrap();
        let svg = flamegraph(&f, "fabric: steady");
        let doc = roxmltree::Document::parse(&svg).expect("well-formed");
        let rects = doc.descendants().filter(|n| n.has_tag_name("rect")).count();
        assert_eq!(rects, 4, "main, serve, parse, write");
        assert!(svg.contains("write — 70 samples, 70.00 %"));
        assert!(!svg.contains("<script"));
        assert_eq!(flamegraph(&Folded::default(), "x"), "");
    }

    #[test]
    fn differential_colours_growth_red_and_shrinking_blue() {
        let before = Folded::parse("main;a 50\nmain;b 50\n").unwrap();
        let after = Folded::parse("main;a 90\nmain;b 10\n").unwrap();
        let svg = differential(&before, &after, "d");
        roxmltree::Document::parse(&svg).expect("well-formed");
        // a grew by 40 pp (the largest change: full red), b shrank by 40.
        assert!(svg.contains("a — 90 samples, 90.00 %, +40.00 pp"));
        assert!(svg.contains("fill=\"rgb(255,55,55)\""));
        assert!(svg.contains("fill=\"rgb(55,55,255)\""));
        // main is 100 % in both: white.
        assert!(svg.contains("fill=\"rgb(255,255,255)\""));
    }
}
