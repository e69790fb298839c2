//! Configuration of `actor-node`: flags, each backed by seed 001's
//! `AIRSSYS_*` environment variable (flags override the environment, which
//! overrides the defaults). Invalid values are a clear error and exit 2.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// `actor-node` — seed 001's ComponentActor runtime over HTTP: components
/// from Component.toml with bounded mailboxes, supervision, a registry,
/// request-response, topics and capabilities with an audit log.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "actor-node",
    version,
    about,
    after_help = "Flags override environment variables, which override the defaults. Invalid values exit 2.\n\n\
Graceful shutdown (SIGTERM or SIGINT): stop accepting (503), drain mailboxes (<= 10 s), stop \
components in reverse dependency order (<= 5 s each), flush logs, metrics and counter \
checkpoints (<= 2 s), exit 0; 60 s at most in all. A second signal exits at once (status 1).\n\n\
API: see system-under-test/actors/README.md (PUT/DELETE/GET /api/v1/components/{name}, \
POST /api/v1/components:spawn, POST /api/v1/components/{name}/messages, …/request, \
POST /api/v1/topics/{name}/subscribers, GET /api/v1/registry/{name}, /health, /ready, /metrics)."
)]
pub struct Config {
    /// Address of both listeners (API and metrics).
    #[arg(long, env = "AIRSSYS_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,

    /// Port of the API, `/health` and `/ready` (0 = any free port, logged).
    #[arg(
        long = "http-port",
        env = "AIRSSYS_HEALTH_PORT",
        default_value_t = 8080
    )]
    pub http_port: u16,

    /// Port of Prometheus `/metrics`; the API port serves it too. Equal to
    /// the API port: one listener.
    #[arg(
        long = "metrics-port",
        env = "AIRSSYS_METRICS_PORT",
        default_value_t = 9090
    )]
    pub metrics_port: u16,

    /// Log level (JSON lines on stdout).
    #[arg(
        long = "log-level",
        env = "AIRSSYS_LOG_LEVEL",
        value_enum,
        default_value = "info",
        ignore_case = true
    )]
    pub log_level: LogLevel,

    /// Spawning beyond this many components answers 429 `capacity`.
    #[arg(long = "max-components", env = "AIRSSYS_MAX_COMPONENTS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_components: u64,

    /// Spawning while the resident memory is above this (GiB) answers 429 `capacity`.
    #[arg(long = "max-memory-gb", env = "AIRSSYS_MAX_MEMORY_GB", value_parser = positive_f64)]
    pub max_memory_gb: Option<f64>,

    /// `/health` reports `degraded` while the node's CPU use is above this (percent of one core).
    #[arg(long = "max-cpu-percent", env = "AIRSSYS_MAX_CPU_PERCENT", value_parser = positive_f64)]
    pub max_cpu_percent: Option<f64>,

    /// Enables the audit log (seed 001: `AIRSSYS_ENABLE_AUDIT_LOG=true`
    /// with `AIRSSYS_AUDIT_LOG_PATH`).
    #[arg(long = "enable-audit-log", env = "AIRSSYS_ENABLE_AUDIT_LOG", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", hide = true)]
    pub enable_audit_log: bool,

    /// Audit log path (JSON lines: lifecycle events, capability grants and
    /// denials). Giving it enables the audit log.
    #[arg(long = "audit-log", env = "AIRSSYS_AUDIT_LOG_PATH")]
    pub audit_log: Option<PathBuf>,

    /// Directory of `*.toml` component files spawned at boot (name = file stem).
    #[arg(long = "components-dir", env = "AIRSSYS_COMPONENTS_DIR")]
    pub components_dir: Option<PathBuf>,

    /// Data directory: the registry and `counter` state, crash-safe.
    #[arg(long = "data-dir", env = "AIRSSYS_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Runtime worker threads (default: the number of cores).
    #[arg(long = "worker-threads", env = "AIRSSYS_WORKER_THREADS",
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub worker_threads: Option<u64>,

    /// This node's name (the `node` of registry answers, and of `node/name` targets).
    #[arg(
        long = "node-name",
        env = "AIRSSYS_NODE_NAME",
        default_value = "node-1"
    )]
    pub node_name: String,

    /// The most messages one batch may hold (larger: 400 `invalid_request`).
    #[arg(long = "max-batch", env = "AIRSSYS_MAX_BATCH", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_batch: u64,

    /// Cluster transport port (seed 004). Not in this build: the node refuses
    /// to start with it rather than run unclustered.
    #[arg(long = "cluster-port", env = "AIRSSYS_CLUSTER_PORT")]
    pub cluster_port: Option<u16>,

    /// A cluster peer, `NAME=HOST:PORT` (repeat; the environment takes a comma-separated list).
    #[arg(long = "peer", env = "AIRSSYS_CLUSTER_PEERS", value_delimiter = ',', value_parser = parse_peer)]
    pub peers: Vec<(String, String)>,

    /// Enables the test-only fault endpoint `POST /api/v1/components/{name}/faults` (logged as a warning).
    #[arg(long = "test-faults", env = "AIRSSYS_TEST_FAULTS", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub test_faults: bool,
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}

fn parse_peer(s: &str) -> Result<(String, String), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected NAME=HOST:PORT"))?;
    crate::spec::check_name(name).map_err(|e| format!("`{s}`: peer name: {}", e.message))?;
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok {
        return Err(format!("`{s}`: expected NAME=HOST:PORT"));
    }
    Ok((name.to_string(), addr.to_string()))
}

impl Config {
    /// Checks what clap cannot; the message is printed before exit 2.
    pub fn check(&self) -> Result<(), String> {
        crate::spec::check_name(&self.node_name)
            .map_err(|e| format!("--node-name / AIRSSYS_NODE_NAME: {}", e.message))?;
        if self.enable_audit_log && self.audit_log.is_none() {
            return Err(
                "AIRSSYS_ENABLE_AUDIT_LOG is true but AIRSSYS_AUDIT_LOG_PATH (--audit-log) is not set"
                    .into(),
            );
        }
        if self.cluster_port.is_some() || !self.peers.is_empty() {
            return Err(
                "--cluster-port / --peer (AIRSSYS_CLUSTER_PORT / AIRSSYS_CLUSTER_PEERS): \
this build of actor-node has no cluster transport yet; run it without them"
                    .into(),
            );
        }
        if let Some(dir) = &self.components_dir
            && !dir.is_dir()
        {
            return Err(format!(
                "--components-dir / AIRSSYS_COMPONENTS_DIR: `{}` is not a directory",
                dir.display()
            ));
        }
        Ok(())
    }

    pub fn audit_path(&self) -> Option<&PathBuf> {
        self.audit_log.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_bad_values_are_errors() {
        let c = Config::try_parse_from(["actor-node", "--http-port", "0", "--metrics-port", "0"])
            .unwrap();
        assert_eq!(c.http_port, 0);
        assert!(c.check().is_ok());
        for bad in [
            vec!["actor-node", "--http-port", "70000"],
            vec!["actor-node", "--max-components", "0"],
            vec!["actor-node", "--max-memory-gb", "-1"],
            vec!["actor-node", "--log-level", "loud"],
            vec!["actor-node", "--peer", "b"],
        ] {
            assert!(Config::try_parse_from(&bad).is_err(), "{bad:?}");
        }
        let c = Config::try_parse_from(["actor-node", "--node-name", "../x"]).unwrap();
        assert!(c.check().is_err());
        let c = Config::try_parse_from(["actor-node", "--cluster-port", "7000"]).unwrap();
        assert!(c.check().is_err());
    }
}
