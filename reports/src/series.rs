//! Time series for drawing, taken from `results.json`'s per-second intervals
//! and `metrics.jsonl`, and their downsampling.
//!
//! Downsampling is for drawing only: a 30-minute run has 1,800 points per
//! line, more than a chart's pixels. Every statistic the report prints is
//! read from the full data (`results.json`'s merged histograms, the full
//! interval list); [`downsample`] feeds only the plotted lines.

use std::collections::BTreeMap;

use gauntlet_recorder::RunResults;
use gauntlet_recorder::metrics::{MetricsRecord, family};
use gauntlet_recorder::recovery::interval_len;
pub use gauntlet_recorder::recovery::throughput_by_interval;

/// A line: `(x, y)` points in x order.
pub type Points = Vec<(f64, f64)>;

/// Reduces `points` to at most `max_points` (≥ 4) for drawing, keeping the
/// shape: the x range is cut into buckets and each bucket keeps its lowest
/// and highest point, in x order — so a one-second spike or dip survives,
/// and the line's minimum, maximum, first and last points are always kept.
pub fn downsample(points: &[(f64, f64)], max_points: usize) -> Points {
    let max_points = max_points.max(4);
    let n = points.len();
    if n <= max_points {
        return points.to_vec();
    }
    let inner = &points[1..n - 1];
    let buckets = (max_points - 2) / 2;
    let mut out = Vec::with_capacity(max_points);
    out.push(points[0]);
    for b in 0..buckets {
        let lo = b * inner.len() / buckets;
        let hi = ((b + 1) * inner.len() / buckets).min(inner.len());
        if lo >= hi {
            continue;
        }
        let slice = &inner[lo..hi];
        let (mut imin, mut imax) = (0, 0);
        for (i, p) in slice.iter().enumerate() {
            if p.1 < slice[imin].1 {
                imin = i;
            }
            if p.1 > slice[imax].1 {
                imax = i;
            }
        }
        out.push(slice[imin.min(imax)]);
        if imin != imax {
            out.push(slice[imin.max(imax)]);
        }
    }
    out.push(points[n - 1]);
    out
}

/// Per-interval series of one operation.
#[derive(Debug, Default, Clone)]
pub struct OperationSeries {
    /// Latency percentiles (µs) of successful operations, at the interval's middle.
    pub p50: Points,
    pub p99: Points,
    pub max: Points,
    /// Successful operations per second.
    pub throughput: Points,
    /// Errors per second by kind.
    pub errors_by_kind: BTreeMap<String, Points>,
}

/// The per-interval series of `operation` from `results.json`'s intervals.
pub fn operation_series(results: &RunResults, operation: &str) -> OperationSeries {
    let mut s = OperationSeries::default();
    let kinds: Vec<String> = {
        let mut k: Vec<String> = results
            .intervals
            .iter()
            .flat_map(|i| i.operations.iter())
            .filter(|o| o.operation == operation)
            .flat_map(|o| o.errors_by_kind.keys().cloned())
            .collect();
        k.sort();
        k.dedup();
        k
    };
    let untyped_errors = results
        .intervals
        .iter()
        .flat_map(|i| i.operations.iter())
        .any(|o| o.operation == operation && o.errors > 0 && o.errors_by_kind.is_empty());
    for (i, interval) in results.intervals.iter().enumerate() {
        let Some(o) = interval
            .operations
            .iter()
            .find(|o| o.operation == operation)
        else {
            continue;
        };
        let len = interval_len(results, i);
        let mid = interval.t_s + len / 2.0;
        let ok = o.count.saturating_sub(o.errors);
        s.throughput.push((mid, ok as f64 / len));
        if ok > 0 {
            s.p50.push((mid, o.latency_us.p50 as f64));
            s.p99.push((mid, o.latency_us.p99 as f64));
            s.max.push((mid, o.latency_us.max as f64));
        }
        for k in &kinds {
            let n = o.errors_by_kind.get(k).copied().unwrap_or(0);
            s.errors_by_kind
                .entry(k.clone())
                .or_default()
                .push((mid, n as f64 / len));
        }
        if untyped_errors {
            let typed: u64 = o.errors_by_kind.values().sum();
            s.errors_by_kind
                .entry("error".to_owned())
                .or_default()
                .push((mid, o.errors.saturating_sub(typed) as f64 / len));
        }
    }
    s
}

/// A chart's worth of one service's metrics.
#[derive(Debug, Clone, Default)]
pub struct MetricGroup {
    pub title: String,
    pub unit: &'static str,
    pub lines: Vec<(String, Points)>,
}

/// What the report shows of one service.
#[derive(Debug, Clone, Default)]
pub struct ServiceSeries {
    pub service: String,
    pub cpu_percent: Points,
    pub rss_mib: Points,
    pub groups: Vec<MetricGroup>,
    /// Groups the report looks for and did not find.
    pub missing: Vec<&'static str>,
    /// Groups found whose every value was zero (not charted).
    pub idle: Vec<&'static str>,
    pub scrapes: usize,
    pub scrape_errors: usize,
    pub last_scrape_error: Option<String>,
    pub pid: Option<u32>,
}

/// The groups the System section charts: `(title, unit)`; which series
/// belong to which is [`group_of`]'s rule.
const GROUPS: [(&str, &str); 7] = [
    ("Requests", "/s"),
    ("Stream events", "/s"),
    ("Queue jobs", "/s"),
    ("KV operations", "/s"),
    ("fsyncs", "/s"),
    ("Queue depth", ""),
    ("In flight", ""),
];

/// The chart a series belongs to, by its family's name and type: counters
/// of requests, events, queue jobs, KV operations and fsyncs (as rates);
/// gauges of queue depth and operations in flight.
fn group_of(series: &str, kind: Option<&str>) -> Option<usize> {
    let fam = family(series);
    if fam.ends_with("_bucket") || fam.ends_with("_sum") || fam.ends_with("_count") {
        return None;
    }
    let counter = kind == Some("counter") || (kind.is_none() && fam.ends_with("_total"));
    let gauge = kind == Some("gauge") || (kind.is_none() && !fam.ends_with("_total"));
    if counter {
        if fam.ends_with("requests_total") {
            Some(0)
        } else if fam.contains("events") {
            Some(1)
        } else if fam.contains("jobs") || fam.contains("queue") {
            Some(2)
        } else if fam.contains("kv") {
            Some(3)
        } else if fam.contains("fsync") {
            Some(4)
        } else {
            None
        }
    } else if gauge {
        if fam.contains("depth") {
            Some(5)
        } else if fam.contains("in_flight") || fam.contains("inflight") {
            Some(6)
        } else {
            None
        }
    } else {
        None
    }
}

/// Counter → rate, tolerating a reset (a restarted process starts from 0).
/// A rate over less than half a second (the collector's last sample, taken
/// when the load stops) is noise; it is not drawn.
fn rate(prev: (f64, f64), cur: (f64, f64)) -> Option<f64> {
    let dt = cur.0 - prev.0;
    if dt < 0.5 {
        return None;
    }
    let dv = if cur.1 >= prev.1 {
        cur.1 - prev.1
    } else {
        cur.1
    };
    Some(dv / dt)
}

fn short_label(series: &str) -> String {
    let fam = family(series);
    let labels = series.strip_prefix(fam).unwrap_or("");
    let name = fam
        .trim_end_matches("_total")
        .split('_')
        .skip(1)
        .collect::<Vec<_>>()
        .join("_");
    let name = if name.is_empty() {
        fam.to_owned()
    } else {
        name
    };
    format!("{name}{labels}")
}

/// Per service: CPU, RSS and the chosen metric groups over time.
pub fn service_series(records: &[MetricsRecord]) -> Vec<ServiceSeries> {
    let mut by_service: BTreeMap<&str, Vec<&MetricsRecord>> = BTreeMap::new();
    for r in records {
        by_service.entry(r.service.as_str()).or_default().push(r);
    }
    let mut out = Vec::new();
    for (service, mut recs) in by_service {
        recs.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        let mut s = ServiceSeries {
            service: service.to_owned(),
            scrapes: recs.len(),
            ..Default::default()
        };
        let mut types: BTreeMap<&str, &str> = BTreeMap::new();
        for r in &recs {
            for (k, v) in &r.types {
                types.insert(k, v);
            }
            if let Some(e) = &r.scrape_error {
                s.scrape_errors += 1;
                s.last_scrape_error = Some(e.clone());
            }
            s.pid = s.pid.or(r.pid);
        }
        // CPU and RSS.
        let mut prev_cpu: Option<(f64, f64)> = None;
        for r in &recs {
            if let Some(cpu) = r.cpu_seconds {
                if let Some(p) = prev_cpu
                    && let Some(rate) = rate(p, (r.t_s, cpu))
                {
                    s.cpu_percent.push((r.t_s, rate * 100.0));
                }
                prev_cpu = Some((r.t_s, cpu));
            } else {
                prev_cpu = None;
            }
            if let Some(rss) = r.rss_bytes {
                s.rss_mib.push((r.t_s, rss as f64 / (1024.0 * 1024.0)));
            }
        }
        // Metric groups: counters become rates; request counters are also summed.
        let mut groups: Vec<BTreeMap<String, Points>> = vec![BTreeMap::new(); GROUPS.len()];
        let mut prev: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        let mut request_totals: BTreeMap<u64, (f64, f64, f64)> = BTreeMap::new();
        for r in &recs {
            for (series, v) in &r.metrics {
                let kind = types.get(family(series)).copied();
                let Some(g) = group_of(series, kind) else {
                    continue;
                };
                let counter = kind == Some("counter") || family(series).ends_with("_total");
                if counter {
                    if let Some(p) = prev.insert(series, (r.t_s, *v))
                        && let Some(rate) = rate(p, (r.t_s, *v))
                    {
                        if g == 0 {
                            let e = request_totals
                                .entry(r.t_s.to_bits())
                                .or_insert((r.t_s, 0.0, 0.0));
                            e.1 += rate;
                            if series.contains("status=\"5") {
                                e.2 += rate;
                            }
                        } else {
                            groups[g]
                                .entry(short_label(series))
                                .or_default()
                                .push((r.t_s, rate));
                        }
                    }
                } else {
                    groups[g]
                        .entry(short_label(series))
                        .or_default()
                        .push((r.t_s, *v));
                }
            }
        }
        if !request_totals.is_empty() {
            let mut all: Points = request_totals.values().map(|(t, v, _)| (*t, *v)).collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0));
            groups[0].insert("all".to_owned(), all);
            if request_totals.values().any(|(_, _, e)| *e > 0.0) {
                let mut errs: Points = request_totals.values().map(|(t, _, e)| (*t, *e)).collect();
                errs.sort_by(|a, b| a.0.total_cmp(&b.0));
                groups[0].insert("5xx".to_owned(), errs);
            }
        }
        for (g, lines) in groups.into_iter().enumerate() {
            let (title, unit) = GROUPS[g];
            if lines.is_empty() {
                s.missing.push(title);
                continue;
            }
            if lines.values().all(|pts| pts.iter().all(|p| p.1 == 0.0)) {
                s.idle.push(title);
                continue;
            }
            // At most eight lines per chart: the busiest ones.
            let mut lines: Vec<(String, Points)> = lines.into_iter().collect();
            lines.sort_by(|a, b| {
                let sa: f64 = a.1.iter().map(|p| p.1).sum();
                let sb: f64 = b.1.iter().map(|p| p.1).sum();
                sb.total_cmp(&sa)
            });
            lines.truncate(8);
            s.groups.push(MetricGroup {
                title: title.to_owned(),
                unit,
                lines,
            });
        }
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn downsampling_keeps_extremes_ends_and_bounds(
            ys in proptest::collection::vec(0.0f64..1e6, 0..3000),
            max_points in 4usize..700,
        ) {
            let points: Points = ys.iter().enumerate().map(|(i, y)| (i as f64, *y)).collect();
            let d = downsample(&points, max_points);
            prop_assert!(d.len() <= max_points.max(4));
            if points.is_empty() {
                prop_assert!(d.is_empty());
                return Ok(());
            }
            prop_assert_eq!(d.first(), points.first());
            prop_assert_eq!(d.last(), points.last());
            let max = |p: &Points| p.iter().map(|p| p.1).fold(f64::MIN, f64::max);
            let min = |p: &Points| p.iter().map(|p| p.1).fold(f64::MAX, f64::min);
            prop_assert_eq!(max(&d), max(&points));
            prop_assert_eq!(min(&d), min(&points));
            // Points are a subsequence of the original, in x order.
            prop_assert!(d.windows(2).all(|w| w[0].0 < w[1].0));
            prop_assert!(d.iter().all(|p| points.contains(p)));
        }
    }

    #[test]
    fn counters_become_rates_and_survive_a_restart() {
        let rec = |t: f64, v: f64| MetricsRecord {
            t_s: t,
            service: "fabric".into(),
            metrics: [("flowmesh_fsync_total".to_owned(), v)].into(),
            types: [("flowmesh_fsync_total".to_owned(), "counter".to_owned())].into(),
            cpu_seconds: Some(t / 2.0),
            rss_bytes: Some(1 << 20),
            ..Default::default()
        };
        let s = service_series(&[
            rec(0.0, 0.0),
            rec(1.0, 100.0),
            rec(2.0, 300.0),
            rec(3.0, 50.0),
        ]);
        assert_eq!(s.len(), 1);
        let fsync = s[0].groups.iter().find(|g| g.title == "fsyncs").unwrap();
        assert_eq!(
            fsync.lines[0].1,
            vec![(1.0, 100.0), (2.0, 200.0), (3.0, 50.0)]
        );
        assert_eq!(
            s[0].cpu_percent,
            vec![(1.0, 50.0), (2.0, 50.0), (3.0, 50.0)]
        );
        assert_eq!(s[0].rss_mib[0], (0.0, 1.0));
        assert!(s[0].missing.contains(&"In flight"));
    }
}
