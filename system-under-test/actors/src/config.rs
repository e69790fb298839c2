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

    /// Cluster transport port (seed 004, `network-protocol` 1.3 frames), on
    /// the bind address (0 = any free port, logged as `cluster_addr`).
    #[arg(long = "cluster-port", env = "AIRSSYS_CLUSTER_PORT")]
    pub cluster_port: Option<u16>,

    /// A cluster peer, `NAME=HOST:PORT` (repeat; the environment takes a comma-separated list).
    /// NAME is the peer's --node-name (and, with TLS, the name its certificate holds).
    #[arg(long = "peer", env = "AIRSSYS_CLUSTER_PEERS", value_delimiter = ',', value_parser = parse_peer)]
    pub peers: Vec<(String, String)>,

    /// Cluster TLS (mutual): the CA certificate (PEM) that signs every node's certificate.
    #[arg(long = "cluster-tls-ca", env = "AIRSSYS_CLUSTER_TLS_CA")]
    pub cluster_tls_ca: Option<PathBuf>,

    /// Cluster TLS: this node's certificate (PEM; its DNS name is --node-name).
    #[arg(long = "cluster-tls-cert", env = "AIRSSYS_CLUSTER_TLS_CERT")]
    pub cluster_tls_cert: Option<PathBuf>,

    /// Cluster TLS: this node's private key (PEM, PKCS#8).
    #[arg(long = "cluster-tls-key", env = "AIRSSYS_CLUSTER_TLS_KEY")]
    pub cluster_tls_key: Option<PathBuf>,

    /// Set TCP_NODELAY on cluster connections (the `network-protocol` crate
    /// does not: small frames then wait for delayed ACKs). `false` keeps the
    /// crate's behaviour, to measure it.
    #[arg(long = "cluster-nodelay", env = "AIRSSYS_CLUSTER_NODELAY", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new(), default_value = "true")]
    pub cluster_nodelay: bool,

    /// Heartbeat interval on each cluster link (ms).
    #[arg(long = "cluster-heartbeat-ms", env = "AIRSSYS_CLUSTER_HEARTBEAT_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub cluster_heartbeat_ms: u64,

    /// A link that hears nothing for this long (ms) is dropped and counts as a
    /// breaker failure; also the connect and probe timeout.
    #[arg(long = "cluster-heartbeat-timeout-ms", env = "AIRSSYS_CLUSTER_HEARTBEAT_TIMEOUT_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub cluster_heartbeat_timeout_ms: u64,

    /// A batch sent to a peer and not answered within this (ms) fails `unavailable`.
    #[arg(long = "cluster-request-timeout-ms", env = "AIRSSYS_CLUSTER_REQUEST_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub cluster_request_timeout_ms: u64,

    /// Consecutive link failures that open a peer's circuit breaker.
    #[arg(long = "cluster-breaker-failures", env = "AIRSSYS_CLUSTER_BREAKER_FAILURES", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub cluster_breaker_failures: u64,

    /// How long an open breaker fails sends fast before a half-open probe (ms).
    #[arg(long = "cluster-breaker-open-ms", env = "AIRSSYS_CLUSTER_BREAKER_OPEN_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub cluster_breaker_open_ms: u64,

    /// Requests (batches, lookups) queued per peer; a full queue makes senders wait.
    #[arg(long = "cluster-queue", env = "AIRSSYS_CLUSTER_QUEUE", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub cluster_queue: u64,

    /// Longest delay between reconnection attempts (ms; the delay doubles from 50 ms).
    #[arg(long = "cluster-backoff-max-ms", env = "AIRSSYS_CLUSTER_BACKOFF_MAX_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(50..=600_000))]
    pub cluster_backoff_max_ms: u64,

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
        if self.cluster_port.is_none() && !self.peers.is_empty() {
            return Err(
                "--peer (AIRSSYS_CLUSTER_PEERS) needs --cluster-port (AIRSSYS_CLUSTER_PORT): \
peers dial this node there"
                    .into(),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (name, _) in &self.peers {
            if *name == self.node_name {
                return Err(format!(
                    "--peer {name}=…: `{name}` is this node's own name (--node-name); list the other nodes"
                ));
            }
            if !seen.insert(name) {
                return Err(format!(
                    "--peer {name}=…: the peer `{name}` is listed twice"
                ));
            }
        }
        let tls = [
            &self.cluster_tls_ca,
            &self.cluster_tls_cert,
            &self.cluster_tls_key,
        ];
        let given = tls.iter().filter(|t| t.is_some()).count();
        if given != 0 && given != 3 {
            return Err(
                "--cluster-tls-ca, --cluster-tls-cert and --cluster-tls-key go together: give all three or none"
                    .into(),
            );
        }
        if given == 3 && self.cluster_port.is_none() {
            return Err("--cluster-tls-* needs --cluster-port".into());
        }
        for path in tls.into_iter().flatten() {
            if !path.is_file() {
                return Err(format!(
                    "--cluster-tls-*: `{}` is not a file",
                    path.display()
                ));
            }
        }
        if self.cluster_heartbeat_timeout_ms <= self.cluster_heartbeat_ms {
            return Err(format!(
                "--cluster-heartbeat-timeout-ms ({}) must be longer than --cluster-heartbeat-ms ({})",
                self.cluster_heartbeat_timeout_ms, self.cluster_heartbeat_ms
            ));
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

    /// The cluster transport's settings, when `--cluster-port` is given.
    pub fn cluster(&self) -> Option<crate::cluster::ClusterOptions> {
        use std::time::Duration;
        let port = self.cluster_port?;
        let tls = match (
            &self.cluster_tls_ca,
            &self.cluster_tls_cert,
            &self.cluster_tls_key,
        ) {
            (Some(ca), Some(cert), Some(key)) => Some(crate::cluster::TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        Some(crate::cluster::ClusterOptions {
            listen: std::net::SocketAddr::new(self.bind, port),
            peers: self.peers.clone(),
            tls,
            nodelay: self.cluster_nodelay,
            heartbeat: Duration::from_millis(self.cluster_heartbeat_ms),
            heartbeat_timeout: Duration::from_millis(self.cluster_heartbeat_timeout_ms),
            request_timeout: Duration::from_millis(self.cluster_request_timeout_ms),
            breaker_failures: self.cluster_breaker_failures as u32,
            breaker_open_for: Duration::from_millis(self.cluster_breaker_open_ms),
            queue: self.cluster_queue as usize,
            backoff_max: Duration::from_millis(self.cluster_backoff_max_ms),
        })
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
        assert!(c.check().is_ok());
        assert_eq!(c.cluster().unwrap().listen.port(), 7000);
        assert!(c.cluster().unwrap().nodelay);
        let c = Config::try_parse_from([
            "actor-node",
            "--cluster-port",
            "7000",
            "--cluster-nodelay",
            "false",
        ])
        .unwrap();
        assert!(!c.cluster().unwrap().nodelay);
        for bad in [
            vec!["actor-node", "--peer", "b=127.0.0.1:7001"],
            vec![
                "actor-node",
                "--cluster-port",
                "7000",
                "--peer",
                "node-1=127.0.0.1:7001",
            ],
            vec![
                "actor-node",
                "--cluster-port",
                "7000",
                "--peer",
                "b=h:1",
                "--peer",
                "b=h:2",
            ],
            vec![
                "actor-node",
                "--cluster-port",
                "7000",
                "--cluster-tls-ca",
                "/nonexistent",
            ],
            vec![
                "actor-node",
                "--cluster-port",
                "7000",
                "--cluster-heartbeat-ms",
                "900",
                "--cluster-heartbeat-timeout-ms",
                "800",
            ],
        ] {
            let c = Config::try_parse_from(&bad).unwrap();
            assert!(c.check().is_err(), "{bad:?}");
        }
    }
}
