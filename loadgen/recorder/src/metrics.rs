//! `metrics.jsonl`: what the system under test said about itself during the
//! run, one JSON object per line, one line per service per second.
//!
//! ```json
//! {"t_s":3.0,"service":"fabric","pid":4242,"cpu_seconds":0.61,"rss_bytes":24350720,
//!  "metrics":{"flowmesh_fsync_total":1520,"flowmesh_http_requests_total{route=\"…\",status=\"200\"}":3001},
//!  "types":{"flowmesh_fsync_total":"counter"}}
//! ```
//!
//! - `t_s`: seconds from the run's start (the clock of `results.json`).
//! - `pid`, `cpu_seconds` (user + system, cumulative) and `rss_bytes`: the
//!   service's process from `/proc`, absent when it could not be read (the
//!   process is gone, or it runs in a container).
//! - `metrics`: every sample of the service's Prometheus `/metrics` as
//!   scraped, keyed by the series as written (`name{labels}`), except
//!   histogram buckets (`*_bucket`; their `_sum` and `_count` are kept).
//!   Absent when the scrape failed, and `scrape_error` says why.
//! - `types`: the `# TYPE` of each metric family, on a service's first line
//!   and whenever it changes (a reader keeps the last one seen).
//!
//! Lines are appended and flushed every second, so a killed run leaves every
//! complete line readable; a torn last line is skipped by [`parse`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The file's name in a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// One service at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MetricsRecord {
    pub t_s: f64,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub types: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_error: Option<String>,
}

/// Parses a `metrics.jsonl`: every well-formed line; a torn or foreign line is skipped.
pub fn parse(text: &str) -> Vec<MetricsRecord> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The metric family of a series key: `name{labels}` → `name`.
pub fn family(series: &str) -> &str {
    series.split('{').next().unwrap_or(series)
}
