//! The report's charts, drawn with plotters' SVG backend (no font files:
//! plotters' naive text layout, the browser draws the text) and inlined
//! into the page. Every time chart shares the same left and right margins so
//! charts and fault lanes stacked in a column line up on the time axis.

use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::human_us;
use crate::series::Points;

/// Width of every chart, in SVG units (scaled to the page by CSS).
pub const WIDTH: u32 = 960;
/// Room for the y axis labels: the same on every chart.
const LEFT: u32 = 78;
const RIGHT: u32 = 28;
const X_AXIS: u32 = 26;

pub const BLUE: RGBColor = RGBColor(37, 99, 235);
pub const ORANGE: RGBColor = RGBColor(234, 88, 12);
pub const SLATE: RGBColor = RGBColor(148, 163, 184);
pub const DARK_SLATE: RGBColor = RGBColor(71, 85, 105);
pub const TEAL: RGBColor = RGBColor(15, 118, 110);
pub const RED: RGBColor = RGBColor(220, 38, 38);
const GRID: RGBColor = RGBColor(232, 234, 238);
const AXIS: RGBColor = RGBColor(156, 163, 175);
const LABEL: RGBColor = RGBColor(75, 85, 99);
const PHASE: RGBColor = RGBColor(107, 114, 128);

/// Colours for lines that have no meaning of their own (error kinds, series).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(37, 99, 235),
    RGBColor(220, 38, 38),
    RGBColor(202, 138, 4),
    RGBColor(147, 51, 234),
    RGBColor(8, 145, 178),
    RGBColor(219, 39, 119),
    RGBColor(101, 163, 13),
    RGBColor(71, 85, 105),
];

/// `#rrggbb` of a colour, for HTML legends.
pub fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// How a y axis reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    Micros,
    PerSecond,
    Percent,
    MiB,
    Plain,
}

/// Drops a zero fraction: `50.0ms` → `50ms`, `2.00ms` → `2ms`.
fn trim_zero_fraction(s: String) -> String {
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    if let Some((int, frac)) = num.split_once('.')
        && frac.chars().all(|c| c == '0')
    {
        return format!("{int}{unit}");
    }
    s
}

impl Unit {
    /// An axis label.
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Micros => trim_zero_fraction(human_us(v.max(0.0).round() as u64)),
            Unit::PerSecond => {
                if v >= 10_000.0 {
                    trim_zero_fraction(format!("{:.1}k", v / 1000.0))
                } else if v >= 10.0 || v == 0.0 {
                    format!("{v:.0}")
                } else {
                    trim_zero_fraction(format!("{v:.1}"))
                }
            }
            Unit::Percent => format!("{v:.0}%"),
            Unit::MiB => {
                if v >= 100.0 {
                    format!("{v:.0} MiB")
                } else {
                    trim_zero_fraction(format!("{v:.1} MiB"))
                }
            }
            Unit::Plain => {
                if v.abs() >= 10_000.0 {
                    trim_zero_fraction(format!("{:.1}k", v / 1000.0))
                } else if v.fract() == 0.0 {
                    format!("{v:.0}")
                } else {
                    trim_zero_fraction(format!("{v:.1}"))
                }
            }
        }
    }
}

/// A time as the axis reads it: `45s` on short runs, `12:30` on long ones.
pub fn clock(t: f64, long: bool) -> String {
    let t = t.max(0.0).round() as u64;
    if long {
        format!("{}:{:02}", t / 60, t % 60)
    } else {
        format!("{t}s")
    }
}

#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub color: RGBColor,
    pub points: Points,
    pub dashed: bool,
    pub width: u32,
}

impl Line {
    pub fn new(name: impl Into<String>, color: RGBColor, points: Points) -> Self {
        Self {
            name: name.into(),
            color,
            points,
            dashed: false,
            width: 2,
        }
    }

    pub fn thin(mut self) -> Self {
        self.width = 1;
        self
    }

    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }
}

/// A labelled window on the time axis (a fault).
#[derive(Debug, Clone)]
pub struct Window {
    pub label: String,
    pub start: f64,
    pub end: f64,
}

/// A chart of lines over the run's time.
pub struct TimeChart<'a> {
    pub height: u32,
    pub x_end: f64,
    pub unit: Unit,
    pub log: bool,
    pub lines: Vec<Line>,
    /// `(name, start_s, end_s)`: boundaries drawn and named.
    pub phases: &'a [(String, f64, f64)],
    /// Shaded and labelled.
    pub faults: &'a [Window],
    /// Start the y axis at zero (rates, counts) rather than near the data.
    pub from_zero: bool,
}

type Err = String;

fn err<E: std::fmt::Debug>(e: E) -> Err {
    format!("{e:?}")
}

/// Inline-ready SVG: plotters' root element without the namespace URL
/// (HTML puts inline `<svg>` in the SVG namespace by itself) and scalable.
fn finish(svg: String, label: &str) -> String {
    let Some(open_end) = svg.find('>') else {
        return svg;
    };
    let open = &svg[..open_end];
    let open = open.replace(" xmlns=\"http://www.w3.org/2000/svg\"", "");
    let label = crate::html::esc(label);
    format!(
        "{open} role=\"img\" aria-label=\"{label}\" preserveAspectRatio=\"xMinYMin meet\">{}",
        &svg[open_end + 1..]
    )
}

fn y_bounds(lines: &[Line], log: bool, from_zero: bool) -> (f64, f64) {
    let ys = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    if log {
        let pos: Vec<f64> = ys.filter(|y| *y > 0.0).collect();
        let lo = pos.iter().copied().fold(f64::MAX, f64::min);
        let hi = pos.iter().copied().fold(0.0, f64::max);
        if pos.is_empty() {
            return (1.0, 10.0);
        }
        let lo = (lo * 0.7).max(1.0);
        let hi = (hi * 1.6).max(lo * 10.0);
        (lo, hi)
    } else {
        let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
        if lo > hi {
            return (0.0, 1.0);
        }
        let lo = if from_zero || lo <= 0.0 {
            0.0
        } else {
            lo * 0.8
        };
        let hi = if hi <= lo {
            lo + 1.0
        } else {
            hi + (hi - lo) * 0.12
        };
        (lo, hi)
    }
}

fn label_style(size: u32, color: RGBColor) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&color)
}

/// Draws shading, phase boundaries, the mesh and the lines on a chart whose
/// y axis is `Y` (linear or logarithmic).
fn draw_time<Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    c: &TimeChart<'_>,
    (ylo, yhi): (f64, f64),
) -> Result<(), Err>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let long = c.x_end > 180.0;
    let x_fmt = |v: &f64| clock(*v, long);
    let unit = c.unit;
    let y_fmt = |v: &f64| unit.format(*v);
    // Fault windows under everything else.
    let min_w = c.x_end / f64::from(WIDTH) * 2.0;
    for f in c.faults {
        let end = f.end.max(f.start + min_w);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(f.start, ylo), (end, yhi)],
                RED.mix(0.09).filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(f.start, ylo), (end, yhi)],
                RED.mix(0.35).stroke_width(1),
            )))
            .map_err(err)?;
    }
    chart
        .configure_mesh()
        .disable_x_mesh()
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(AXIS)
        .label_style(label_style(13, LABEL))
        .x_labels(10)
        .y_labels(6)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .draw()
        .map_err(err)?;
    for (_, start, _) in c.phases.iter().skip(1) {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(*start, ylo), (*start, yhi)],
                4,
                4,
                PHASE.mix(0.8).stroke_width(1),
            ))
            .map_err(err)?;
    }
    for l in &c.lines {
        let pts: Vec<(f64, f64)> = l
            .points
            .iter()
            .copied()
            .filter(|p| !c.log || p.1 > 0.0)
            .map(|(x, y)| (x, y.clamp(ylo, yhi)))
            .collect();
        let style = l.color.stroke_width(l.width);
        if l.dashed {
            chart
                .draw_series(DashedLineSeries::new(pts, 6, 4, style))
                .map_err(err)?;
        } else if pts.len() == 1 {
            chart
                .draw_series(std::iter::once(Circle::new(pts[0], 2, l.color.filled())))
                .map_err(err)?;
        } else {
            chart
                .draw_series(LineSeries::new(pts, style))
                .map_err(err)?;
        }
    }
    // Fault labels last, on top of the lines, under the phase names.
    for f in c.faults {
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((f.start, yhi))
                    + Text::new(
                        f.label.clone(),
                        (4, 4),
                        label_style(12, RGBColor(153, 27, 27)),
                    ),
            ))
            .map_err(err)?;
    }
    Ok(())
}

/// Rows for phase names above a chart: a name moves down a row when it
/// would overlap the previous one. Returns the row of each phase and the rows used.
fn phase_label_rows(phases: &[(String, f64, f64)], x_end: f64) -> (Vec<usize>, usize) {
    let plot = f64::from(WIDTH - LEFT - RIGHT);
    let mut row_end: Vec<f64> = Vec::new();
    let mut rows = Vec::new();
    for (name, start, _) in phases {
        let x = f64::from(LEFT) + start / x_end.max(1.0) * plot;
        let width = name.chars().count() as f64 * 6.6 + 10.0;
        let row = match row_end.iter().position(|end| *end <= x) {
            Some(r) => r,
            None => {
                row_end.push(0.0);
                row_end.len() - 1
            }
        };
        row_end[row] = x + width;
        rows.push(row);
    }
    let used = row_end.len();
    (rows, used)
}

const PHASE_ROW: u32 = 15;

/// Phase names above the plot, at their boundaries.
fn draw_phase_labels<Y>(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    chart: &ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    phases: &[(String, f64, f64)],
    rows: &[usize],
) -> Result<(), Err>
where
    Y: Ranged<ValueType = f64>,
{
    let y_top = chart.y_range().end;
    for ((name, start, _), row) in phases.iter().zip(rows) {
        let (px, py) = chart.backend_coord(&(*start, y_top));
        let y = py - 4 - (*row as i32) * PHASE_ROW as i32;
        root.draw(&Text::new(
            name.clone(),
            (px + 3, y),
            label_style(12, PHASE).pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Left,
                plotters::style::text_anchor::VPos::Bottom,
            )),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// A time chart as inline SVG.
pub fn time_chart(c: &TimeChart<'_>, aria: &str) -> Result<String, Err> {
    let (rows, used) = phase_label_rows(c.phases, c.x_end);
    let top = 8 + used as u32 * PHASE_ROW;
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (WIDTH, c.height + top - 8)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .margin_top(top)
            .margin_right(RIGHT)
            .x_label_area_size(X_AXIS)
            .y_label_area_size(LEFT);
        let (ylo, yhi) = y_bounds(&c.lines, c.log, c.from_zero);
        let x = 0f64..c.x_end.max(1.0);
        if c.log {
            let mut chart = builder
                .build_cartesian_2d(x, (ylo..yhi).log_scale())
                .map_err(err)?;
            draw_time(&mut chart, c, (ylo, yhi))?;
            draw_phase_labels(&root, &chart, c.phases, &rows)?;
        } else {
            let mut chart = builder.build_cartesian_2d(x, ylo..yhi).map_err(err)?;
            draw_time(&mut chart, c, (ylo, yhi))?;
            draw_phase_labels(&root, &chart, c.phases, &rows)?;
        }
        root.present().map_err(err)?;
    }
    Ok(finish(svg, aria))
}

/// The fault timeline: one bar per fault on the run's time axis, in as few
/// rows as the windows allow, aligned with the time charts above it.
pub fn fault_lane(faults: &[Window], x_end: f64, aria: &str) -> Result<String, Err> {
    // Greedy rows: a fault goes to the first row whose last bar (with its label) ended.
    let px_per_s = f64::from(WIDTH - LEFT - RIGHT) / x_end.max(1.0);
    let mut rows: Vec<f64> = Vec::new();
    let mut placed = Vec::new();
    for f in faults {
        let label_end = f.start + (f.label.chars().count() as f64 * 7.0 + 12.0) / px_per_s;
        let reach = f.end.max(label_end);
        let row = match rows.iter().position(|end| *end <= f.start) {
            Some(r) => {
                rows[r] = reach;
                r
            }
            None => {
                rows.push(reach);
                rows.len() - 1
            }
        };
        placed.push((f, row));
    }
    let n = rows.len().max(1) as u32;
    let height = 10 + n * 22 + X_AXIS;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin_top(6)
            .margin_right(RIGHT)
            .x_label_area_size(X_AXIS)
            .y_label_area_size(LEFT)
            .build_cartesian_2d(0f64..x_end.max(1.0), 0f64..f64::from(n))
            .map_err(err)?;
        let long = x_end > 180.0;
        let x_fmt = |v: &f64| clock(*v, long);
        let y_fmt = |_: &f64| String::new();
        chart
            .configure_mesh()
            .disable_mesh()
            .axis_style(AXIS)
            .label_style(label_style(13, LABEL))
            .x_labels(10)
            .y_labels(0)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .draw()
            .map_err(err)?;
        let min_w = x_end / f64::from(WIDTH) * 3.0;
        for (f, row) in &placed {
            let top = f64::from(n) - *row as f64 - 0.15;
            let bottom = top - 0.7;
            let end = f.end.max(f.start + min_w);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(f.start, bottom), (end, top)],
                    RED.mix(0.75).filled(),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((end, (top + bottom) / 2.0))
                        + Text::new(
                            f.label.clone(),
                            (5, -7),
                            label_style(12, RGBColor(127, 29, 29)),
                        ),
                ))
                .map_err(err)?;
        }
        root.draw(&Text::new(
            "faults",
            (10, 10 + (n as i32 * 22) / 2 - 7),
            label_style(13, LABEL),
        ))
        .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(finish(svg, aria))
}

/// `90%`, `99%`, `99.9%` … for a whole number of nines.
pub fn nines_label(nines: f64) -> String {
    let n = nines.round();
    if (nines - n).abs() > 1e-6 || n < 0.0 {
        return String::new();
    }
    match n as u32 {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        2 => "99%".to_owned(),
        k => format!("99.{}%", "9".repeat(k as usize - 2)),
    }
}

/// The HdrHistogram percentile distribution: latency (log scale) against
/// percentile, the x axis in "nines" (0 → 0 %, 1 → 90 %, 2 → 99 %, …).
pub fn percentile_chart(lines: &[Line], max_nines: f64, aria: &str) -> Result<String, Err> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (ylo, yhi) = y_bounds(lines, true, false);
        let x_end = max_nines.max(1.0);
        let mut chart = ChartBuilder::on(&root)
            .margin_top(8)
            .margin_right(RIGHT)
            .x_label_area_size(X_AXIS + 4)
            .y_label_area_size(LEFT)
            .build_cartesian_2d(0f64..x_end, (ylo..yhi).log_scale())
            .map_err(err)?;
        let x_fmt = |v: &f64| nines_label(*v);
        let y_fmt = |v: &f64| Unit::Micros.format(*v);
        chart
            .configure_mesh()
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .axis_style(AXIS)
            .label_style(label_style(13, LABEL))
            .x_labels(x_end as usize + 1)
            .y_labels(6)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .draw()
            .map_err(err)?;
        for l in lines {
            let pts: Vec<(f64, f64)> = l
                .points
                .iter()
                .copied()
                .filter(|p| p.1 > 0.0 && p.0 <= x_end)
                .collect();
            let style = l.color.stroke_width(l.width);
            if l.dashed {
                chart
                    .draw_series(DashedLineSeries::new(pts, 6, 4, style))
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(LineSeries::new(pts, style))
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(finish(svg, aria))
}

/// Points of a histogram's percentile distribution: `(nines, value µs)`,
/// evenly spaced in nines up to `max_nines`, then the maximum.
pub fn distribution_points(h: &hdrhistogram::Histogram<u64>, max_nines: f64) -> Points {
    if h.is_empty() {
        return Vec::new();
    }
    let steps = (max_nines * 60.0).ceil() as usize;
    let mut out: Points = (0..=steps)
        .map(|i| {
            let x = max_nines * i as f64 / steps as f64;
            let q = 1.0 - 10f64.powf(-x);
            (x, h.value_at_quantile(q) as f64)
        })
        .collect();
    out.push((max_nines, h.max() as f64));
    out
}

/// How many nines a distribution of `count` values can show (1 to 6).
pub fn nines_for(count: u64) -> f64 {
    if count < 10 {
        1.0
    } else {
        (count as f64).log10().floor().clamp(1.0, 6.0)
    }
}
