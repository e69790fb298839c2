//! Collectors: while the load runs, every second, each service's Prometheus
//! `/metrics` (scraped over HTTP, as any stranger's service offers it) and
//! its process's CPU time and resident memory (from `/proc/<pid>`), appended
//! to `metrics.jsonl` (format: `gauntlet_recorder::metrics`). Each line is
//! flushed as it is written, so a killed run leaves every second it saw.
//!
//! The Prometheus text format is read by a small line parser of our own:
//! the report needs the samples exactly as exposed (`name{labels}` → value)
//! and each family's `# TYPE`, which is all of the format that matters here;
//! the parser crates regroup histograms and drop the raw series names.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gauntlet_recorder::metrics::MetricsRecord;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use gauntlet_control::Stack;

use gauntlet_drivers::control::{self as driver, HttpClient};

/// One service to watch. Its address and process are looked up in the
/// stack at every sample, so a service restarted (a new pid) or a container
/// restarted on a new host port is followed.
#[derive(Debug, Clone)]
pub struct Target {
    pub service: String,
    /// Whether it serves Prometheus text at `/metrics` (PostgreSQL and
    /// Redis do not: only their process is sampled).
    pub scrape: bool,
}

/// Where a target is right now.
struct Resolved {
    metrics_url: Option<String>,
    pid: Option<u32>,
}

/// What the collectors did.
#[derive(Debug, Default)]
pub struct Collected {
    pub records: usize,
    pub scrape_errors: usize,
    /// Writing `metrics.jsonl` failed (collection stopped there).
    pub write_error: Option<String>,
}

/// Longest a scrape may take: less than the one-second period.
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(800);
/// Largest `/metrics` body read (a bound against a runaway exporter).
const MAX_BODY: usize = 4 << 20;

/// The Prometheus text format: every sample as `series → value` (series as
/// written, `name{labels}`, whitespace inside the braces outside quotes
/// removed) and each family's type. Histogram buckets (`*_bucket`: most of a
/// scrape, and Gauntlet measures latency itself) are left out, their `_sum`
/// and `_count` kept. Comments other than `# TYPE`, samples whose value is
/// not a finite number, and malformed lines are skipped.
pub fn parse_prometheus(text: &str) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut words = rest.split_whitespace();
            if words.next() == Some("TYPE")
                && let (Some(name), Some(kind)) = (words.next(), words.next())
            {
                types.insert(name.to_owned(), kind.to_owned());
            }
            continue;
        }
        let Some((series, rest)) = split_series(line) else {
            continue;
        };
        let Some(value) = rest.split_whitespace().next() else {
            continue;
        };
        if let Ok(v) = value.parse::<f64>()
            && v.is_finite()
            && !gauntlet_recorder::metrics::family(&series).ends_with("_bucket")
        {
            samples.insert(series, v);
        }
    }
    (samples, types)
}

/// Splits `name{a="x",b="y"} 12 1700000000` into the series and the rest,
/// honouring quotes and escapes inside label values.
fn split_series(line: &str) -> Option<(String, &str)> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let rest = &line[name_end..];
    if !rest.starts_with('{') {
        return Some((name.to_owned(), rest));
    }
    let mut series = String::from(name);
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        if in_quotes {
            series.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_quotes = true;
                series.push(c);
            }
            '}' => {
                series.push(c);
                return Some((series, &rest[i + 1..]));
            }
            c if c.is_whitespace() => {}
            c => series.push(c),
        }
    }
    None
}

/// Clock ticks per second and page size, for `/proc` arithmetic.
fn sysconf() -> (f64, u64) {
    // SAFETY: sysconf only reads system configuration.
    let (tck, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (
        if tck > 0 { tck as f64 } else { 100.0 },
        if page > 0 { page as u64 } else { 4096 },
    )
}

/// CPU seconds (user + system) and resident bytes of a process, from `/proc`.
pub fn process_sample(pid: u32) -> Option<(f64, u64)> {
    let (tck, page) = sysconf();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces and parentheses).
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(((utime + stime) as f64 / tck, resident * page))
}

async fn scrape(client: &HttpClient, url: &str) -> Result<String, String> {
    let request = Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(SCRAPE_TIMEOUT, client.request(request))
        .await
        .map_err(|_| format!("no answer within {SCRAPE_TIMEOUT:?}"))?
        .map_err(|e| {
            let text = e.to_string();
            if e.is_connect() {
                format!("connect: {text}")
            } else {
                text
            }
        })?;
    let status = response.status();
    let body = tokio::time::timeout(
        SCRAPE_TIMEOUT,
        http_body_util::Limited::new(response.into_body(), MAX_BODY).collect(),
    )
    .await
    .map_err(|_| "the body did not arrive in time".to_owned())?
    .map_err(|e| format!("reading the body: {e}"))?
    .to_bytes();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// One line per target.
async fn sample_all(
    client: &HttpClient,
    stack: &dyn Stack,
    targets: &[Target],
    t_s: f64,
) -> Vec<MetricsRecord> {
    let resolved: Vec<Resolved> = targets
        .iter()
        .map(|t| Resolved {
            metrics_url: t
                .scrape
                .then(|| stack.endpoint(&t.service).ok())
                .flatten()
                .map(|e| format!("{}/metrics", e.base_url())),
            pid: stack.pid(&t.service),
        })
        .collect();
    let scrapes: Vec<_> = resolved
        .iter()
        .map(|r| {
            let client = client.clone();
            let url = r.metrics_url.clone();
            tokio::spawn(async move {
                match url {
                    Some(url) => Some(scrape(&client, &url).await),
                    None => None,
                }
            })
        })
        .collect();
    let mut out = Vec::with_capacity(targets.len());
    for ((t, r), handle) in targets.iter().zip(&resolved).zip(scrapes) {
        let mut record = MetricsRecord {
            t_s,
            service: t.service.clone(),
            pid: r.pid,
            ..Default::default()
        };
        if let Some((cpu, rss)) = r.pid.and_then(process_sample) {
            record.cpu_seconds = Some(cpu);
            record.rss_bytes = Some(rss);
        }
        match handle.await {
            Ok(None) => {}
            Ok(Some(Ok(text))) => {
                let (metrics, types) = parse_prometheus(&text);
                record.metrics = metrics;
                record.types = types;
            }
            Ok(Some(Err(e))) => record.scrape_error = Some(e),
            Err(e) => record.scrape_error = Some(format!("the scrape task failed: {e}")),
        }
        out.push(record);
    }
    out
}

/// Samples every target each second from `run_start` until `stop` (then
/// once more) or `limit` after the start, whichever comes first.
pub async fn collect(
    stack: Arc<dyn Stack>,
    targets: Vec<Target>,
    path: PathBuf,
    run_start: Instant,
    stop: CancellationToken,
    limit: Duration,
) -> Collected {
    let mut collected = Collected::default();
    let file = match std::fs::File::create(&path) {
        Ok(f) => f,
        Err(e) => {
            collected.write_error = Some(format!("{}: {e}", path.display()));
            return collected;
        }
    };
    let mut out = std::io::BufWriter::new(file);
    let client = driver::http_client(targets.len().max(1));
    let mut tick = tokio::time::interval_at(run_start, Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let deadline = run_start + limit;
    // `types` goes on a service's first line and whenever it changes.
    let mut last_types: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut last = false;
    while !last {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => last = true,
        }
        if Instant::now() >= deadline {
            last = true;
        }
        let t_s = run_start.elapsed().as_secs_f64();
        let mut lines = String::new();
        for mut record in sample_all(&client, stack.as_ref(), &targets, t_s).await {
            collected.records += 1;
            if !record.types.is_empty() {
                if last_types.get(&record.service) == Some(&record.types) {
                    record.types.clear();
                } else {
                    last_types.insert(record.service.clone(), record.types.clone());
                }
            }
            collected.scrape_errors += usize::from(record.scrape_error.is_some());
            if let Ok(line) = serde_json::to_string(&record) {
                lines.push_str(&line);
                lines.push('\n');
            }
        }
        if let Err(e) = out.write_all(lines.as_bytes()).and_then(|()| out.flush()) {
            collected.write_error = Some(format!("{}: {e}", path.display()));
            break;
        }
    }
    collected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_format_as_exposed() {
        let text = "# HELP flowmesh_fsync_total fsyncs.\n# TYPE flowmesh_fsync_total counter\nflowmesh_fsync_total 12\n\
            # TYPE h histogram\nh_bucket{le=\"0.5\"} 3\nh_bucket{le=\"+Inf\"} 4\nh_sum 1.5e0\n\
            req_total{route=\"/a/{b}\", status=\"200\"} 7 1700000000000\n\
            weird{l=\"x\\\"}y\"} 1\nnan_metric NaN\ninf_metric +Inf\nbroken{a=\"1\" 2\n";
        let (m, t) = parse_prometheus(text);
        assert_eq!(m["flowmesh_fsync_total"], 12.0);
        assert!(
            !m.keys().any(|k| k.starts_with("h_bucket")),
            "buckets are left out"
        );
        assert_eq!(m["h_sum"], 1.5);
        assert_eq!(m["req_total{route=\"/a/{b}\",status=\"200\"}"], 7.0);
        assert_eq!(m["weird{l=\"x\\\"}y\"}"], 1.0);
        assert!(!m.contains_key("nan_metric") && !m.contains_key("inf_metric"));
        assert_eq!(m.len(), 4, "{m:?}");
        assert_eq!(t["flowmesh_fsync_total"], "counter");
        assert_eq!(t["h"], "histogram");
    }

    #[test]
    fn reads_its_own_process() {
        let (cpu, rss) = process_sample(std::process::id()).expect("/proc is readable");
        assert!(cpu >= 0.0);
        assert!(rss > 0);
        assert!(process_sample(u32::MAX).is_none());
    }
}
