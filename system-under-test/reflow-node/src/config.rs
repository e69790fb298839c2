//! Configuration, seed 000's way: hierarchical TOML (`/etc/reflow/config.toml`,
//! then `~/.config/reflow/config.toml`, then `--config FILE` or
//! `REFLOW_CONFIG`), each file over the one before, then the environment
//! (`REFLOW_SECTION__KEY`, the seed's double underscore), then flags.
//! Unknown sections or keys, and invalid values, are errors naming the key
//! and where it came from; `main` prints them and exits 2.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub runtime: Runtime,
    pub logging: Logging,
    pub network: Network,
    pub graph: Graph,
    pub tracing: Tracing,
    pub limits: Limits,
    pub test: Test,
    /// Seed 000's user file carries `[development]`; accepted, unused.
    pub development: Option<toml::Table>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    /// Tokio worker threads (0: one per core).
    pub thread_pool_size: usize,
    /// Refuse new messages (503) while the resident set is above this (0: no limit).
    pub max_memory_mb: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logging {
    pub level: String,
    /// `stderr`, `stdout` or a file path.
    pub output: String,
    /// `text` or `json`.
    pub format: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    pub bind_address: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Graph {
    /// The graph file (JSON or TOML, by extension), or `builtin:NAME`.
    pub file: String,
    /// The graph itself, as JSON text (wins over `file`).
    pub inline: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tracing {
    pub enabled: bool,
    pub server_url: String,
    pub batch_size: usize,
    pub batch_timeout_ms: u64,
}

/// How long the node waits before it calls the graph stuck.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest wait for a batch to be accepted into an inport.
    pub accept_timeout_ms: u64,
    /// Longest wait of `?wait=sink` for the batch to reach its sinks.
    pub sink_timeout_ms: u64,
    /// Messages in flight and no actor ran for this long: the graph stalled.
    pub stall_after_ms: u64,
    /// On SIGTERM, longest wait for the graph to drain to its sinks.
    pub drain_timeout_ms: u64,
    /// Largest batch in one request.
    pub max_batch: usize,
    /// Most accepted messages not yet at their sinks: the runtime's outports
    /// are unbounded, so without this a slow or dead actor downstream lets
    /// a source accept (and buffer) without end.
    pub max_in_flight: usize,
}

/// Test-only knobs: a named actor panics (or stalls) after N messages.
/// `fault_endpoint` enables `POST /api/v1/test/fault` for the harness.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Test {
    pub panic_actor: Option<String>,
    pub stall_actor: Option<String>,
    pub after_messages: u64,
    pub fault_endpoint: bool,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            level: "info".into(),
            output: "stderr".into(),
            format: "text".into(),
        }
    }
}

impl Default for Network {
    fn default() -> Self {
        Network {
            bind_address: "127.0.0.1:8080".into(),
        }
    }
}

impl Default for Tracing {
    fn default() -> Self {
        Tracing {
            enabled: false,
            server_url: "ws://127.0.0.1:8081/".into(),
            batch_size: 1,
            batch_timeout_ms: 100,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            accept_timeout_ms: 5000,
            sink_timeout_ms: 10_000,
            stall_after_ms: 5000,
            drain_timeout_ms: 5000,
            max_batch: 100_000,
            max_in_flight: 20_000,
        }
    }
}

/// Flags given on the command line (highest precedence).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub graph: Option<PathBuf>,
    pub bind: Option<String>,
}

/// Sections and their keys, for the environment's names and for hints.
const KEYS: &[(&str, &[&str])] = &[
    ("runtime", &["thread_pool_size", "max_memory_mb"]),
    ("logging", &["level", "output", "format"]),
    ("network", &["bind_address"]),
    ("graph", &["file", "inline"]),
    (
        "tracing",
        &["enabled", "server_url", "batch_size", "batch_timeout_ms"],
    ),
    (
        "limits",
        &[
            "accept_timeout_ms",
            "sink_timeout_ms",
            "stall_after_ms",
            "drain_timeout_ms",
            "max_batch",
            "max_in_flight",
        ],
    ),
    (
        "test",
        &[
            "panic_actor",
            "stall_actor",
            "after_messages",
            "fault_endpoint",
        ],
    ),
];

impl Config {
    /// The process's configuration: the files, `REFLOW_*`, the flags.
    pub fn load(flags: &Overrides) -> Result<Config, String> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let mut files: Vec<(PathBuf, bool)> =
            vec![(PathBuf::from("/etc/reflow/config.toml"), false)];
        if let Some(h) = home {
            files.push((h.join(".config/reflow/config.toml"), false));
        }
        if let Some(c) = &flags.config {
            files.push((c.clone(), true));
        } else if let Some(c) = std::env::var_os("REFLOW_CONFIG") {
            files.push((PathBuf::from(c), true));
        }
        let mut texts = Vec::new();
        for (path, required) in files {
            match std::fs::read_to_string(&path) {
                Ok(t) => texts.push((path, t)),
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: cannot read it: {e}", path.display())),
            }
        }
        let env: Vec<(String, String)> = std::env::vars().collect();
        Config::from_parts(&texts, &env, flags)
    }

    /// The configuration from files (lowest first), an environment and flags.
    pub fn from_parts(
        files: &[(PathBuf, String)],
        env: &[(String, String)],
        flags: &Overrides,
    ) -> Result<Config, String> {
        let mut merged = toml::Table::new();
        for (path, text) in files {
            let table: toml::Table = text
                .parse()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            check_keys(&table, &path.display().to_string())?;
            merge(&mut merged, table);
        }
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("REFLOW_") else {
                continue;
            };
            if name == "REFLOW_CONFIG" {
                continue;
            }
            let Some((section, key)) = rest.split_once("__") else {
                return Err(format!(
                    "environment {name}: not a configuration name (use REFLOW_SECTION__KEY, e.g. REFLOW_RUNTIME__THREAD_POOL_SIZE)"
                ));
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let known = KEYS
                .iter()
                .find(|(s, _)| *s == section)
                .is_some_and(|(_, ks)| ks.contains(&key.as_str()));
            if !known {
                return Err(format!(
                    "environment {name}: no key `{section}.{key}`; known: {}",
                    known_names()
                ));
            }
            let entry = merged
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                t.insert(key, env_value(value));
            }
        }
        let mut cfg: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| format!("configuration: {e}"))?;
        if let Some(g) = &flags.graph {
            cfg.graph.file = g.display().to_string();
        }
        if let Some(b) = &flags.bind {
            cfg.network.bind_address = b.clone();
        }
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), String> {
        self.bind_address()?;
        if self.graph.file.is_empty() && self.graph.inline.is_none() {
            return Err(
                "graph.file is not set: give --graph FILE, REFLOW_GRAPH__FILE or [graph] file"
                    .into(),
            );
        }
        if !["trace", "debug", "info", "warn", "error"].contains(&self.logging.level.as_str()) {
            return Err(format!(
                "logging.level `{}`: expected one of trace, debug, info, warn, error",
                self.logging.level
            ));
        }
        if !["text", "json"].contains(&self.logging.format.as_str()) {
            return Err(format!(
                "logging.format `{}`: expected text or json",
                self.logging.format
            ));
        }
        if self.runtime.thread_pool_size > 1024 {
            return Err(format!(
                "runtime.thread_pool_size {}: at most 1024 (0: one per core)",
                self.runtime.thread_pool_size
            ));
        }
        if self.tracing.enabled {
            let u = &self.tracing.server_url;
            if !(u.starts_with("ws://") || u.starts_with("wss://")) {
                return Err(format!(
                    "tracing.server_url `{u}`: expected ws://HOST:PORT/ (the tracing server's WebSocket)"
                ));
            }
            if self.tracing.batch_size == 0 {
                return Err("tracing.batch_size 0: at least 1".into());
            }
            if self.tracing.batch_timeout_ms == 0 {
                return Err("tracing.batch_timeout_ms 0: at least 1".into());
            }
        }
        let l = &self.limits;
        for (name, v) in [
            ("limits.accept_timeout_ms", l.accept_timeout_ms),
            ("limits.sink_timeout_ms", l.sink_timeout_ms),
            ("limits.stall_after_ms", l.stall_after_ms),
            ("limits.drain_timeout_ms", l.drain_timeout_ms),
        ] {
            if v == 0 {
                return Err(format!("{name} 0: at least 1 (a wait must be bounded)"));
            }
        }
        if l.max_batch == 0 {
            return Err("limits.max_batch 0: at least 1".into());
        }
        if l.max_in_flight < l.max_batch.min(1000) {
            return Err(format!(
                "limits.max_in_flight {}: at least {} (limits.max_batch, or 1000)",
                l.max_in_flight,
                l.max_batch.min(1000)
            ));
        }
        if self.test.panic_actor.is_some() && self.test.stall_actor.is_some() {
            return Err("test.panic_actor and test.stall_actor: give one of them".into());
        }
        Ok(())
    }

    pub fn bind_address(&self) -> Result<SocketAddr, String> {
        self.network.bind_address.parse().map_err(|e| {
            format!(
                "network.bind_address `{}`: {e} (expected HOST:PORT, e.g. 127.0.0.1:8080)",
                self.network.bind_address
            )
        })
    }

    pub fn accept_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.accept_timeout_ms)
    }
    pub fn sink_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.sink_timeout_ms)
    }
    pub fn stall_after(&self) -> Duration {
        Duration::from_millis(self.limits.stall_after_ms)
    }
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.drain_timeout_ms)
    }
}

fn known_names() -> String {
    KEYS.iter()
        .flat_map(|(s, ks)| ks.iter().map(move |k| format!("{s}.{k}")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_keys(table: &toml::Table, at: &str) -> Result<(), String> {
    for (section, v) in table {
        if section == "development" {
            continue;
        }
        let Some((_, keys)) = KEYS.iter().find(|(s, _)| s == section) else {
            return Err(format!(
                "{at}: unknown section [{section}]; sections: [runtime] [logging] [network] [graph] [tracing] [limits] [test]"
            ));
        };
        let toml::Value::Table(t) = v else {
            return Err(format!("{at}: `{section}` must be a section ([{section}])"));
        };
        for k in t.keys() {
            if !keys.contains(&k.as_str()) {
                return Err(format!(
                    "{at}: unknown key `{section}.{k}`; [{section}] has {}",
                    keys.join(", ")
                ));
            }
        }
    }
    Ok(())
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// An environment value as TOML: integers and booleans as such, else text.
fn env_value(v: &str) -> toml::Value {
    if let Ok(i) = v.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match v {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(v.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(files: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let files: Vec<(PathBuf, String)> = files
            .iter()
            .enumerate()
            .map(|(i, t)| (PathBuf::from(format!("f{i}.toml")), t.to_string()))
            .collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Config::from_parts(&files, &env, &Overrides::default())
    }

    #[test]
    fn files_merge_then_environment_overrides() {
        let c = parts(
            &[
                "[runtime]\nthread_pool_size = 8\nmax_memory_mb = 1024\n[graph]\nfile = \"g.toml\"\n",
                "[runtime]\nthread_pool_size = 4\n[development]\nhot_reload = true\n",
            ],
            &[
                ("REFLOW_NETWORK__BIND_ADDRESS", "127.0.0.1:9090"),
                ("REFLOW_LOGGING__LEVEL", "debug"),
                ("REFLOW_TRACING__BATCH_SIZE", "10"),
            ],
        )
        .unwrap();
        assert_eq!(c.runtime.thread_pool_size, 4);
        assert_eq!(c.runtime.max_memory_mb, 1024);
        assert_eq!(c.network.bind_address, "127.0.0.1:9090");
        assert_eq!(c.logging.level, "debug");
        assert_eq!(c.tracing.batch_size, 10);
    }

    #[test]
    fn mistakes_name_the_key() {
        let e = parts(&["[runtime]\nthreads = 4\n"], &[]).unwrap_err();
        assert!(
            e.contains("runtime.threads") && e.contains("thread_pool_size"),
            "{e}"
        );
        let e = parts(
            &["[graph]\nfile=\"g\"\n"],
            &[("REFLOW_RUNTIME__THREADS", "3")],
        )
        .unwrap_err();
        assert!(e.contains("REFLOW_RUNTIME__THREADS"), "{e}");
        let e = parts(
            &["[graph]\nfile=\"g\"\n"],
            &[("REFLOW_NETWORK__BIND_ADDRESS", "nope")],
        )
        .unwrap_err();
        assert!(e.contains("network.bind_address"), "{e}");
        let e = parts(&[], &[]).unwrap_err();
        assert!(e.contains("graph.file"), "{e}");
        let e = parts(
            &["[graph]\nfile=\"g\"\n[tracing]\nenabled=true\nserver_url=\"http://x\"\n"],
            &[],
        )
        .unwrap_err();
        assert!(e.contains("tracing.server_url"), "{e}");
        let e = parts(
            &["[graph]\nfile=\"g\"\n[limits]\nsink_timeout_ms=\"x\"\n"],
            &[],
        )
        .unwrap_err();
        assert!(e.contains("sink_timeout_ms"), "{e}");
    }
}
