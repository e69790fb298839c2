//! Configuration of `fabric-node`: command-line flags, each backed by the
//! environment variable seed 002 names (flags override the environment,
//! which overrides the defaults). Invalid values are rejected by clap with a
//! message on stderr and exit status 2.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// When a write is fsynced relative to its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FsyncPolicy {
    /// Every append is fsynced (on its own) before its 2xx.
    Always,
    /// Group commit: appends queued while an fsync runs share the next one;
    /// a 2xx still means fsynced.
    Batch,
    /// A 2xx means written to the OS; fsync at least every `--fsync-interval`.
    Interval,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

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

/// `fabric-node` — the event fabric (FlowMesh-compatible HTTP API):
/// streams, queues and KV stores over a durable, checksummed segment log.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "fabric-node",
    version,
    about,
    after_help = "Without a subcommand the node serves HTTP until SIGTERM/SIGINT (graceful: \
stop accepting, finish in-flight requests, fsync, exit 0).\n\
Flags override environment variables, which override the defaults. Invalid values exit 2.\n\n\
Fsync policies: `always` fsyncs every write before its 2xx; `batch` (default) lets concurrent \
writes share one fsync, a 2xx still means fsynced; `interval` answers after write(2) and fsyncs \
at least every --fsync-interval (a machine crash may lose that window, kill -9 loses nothing).\n\n\
Backup and restore:\n  fabric-node backup --from-url http://127.0.0.1:8080 /abs/backup-dir   \
(online, consistent; the node writes the snapshot)\n  fabric-node backup --from-dir ./data backup-dir   \
(offline: the node must be stopped)\n  fabric-node restore backup-dir new-data-dir"
)]
pub struct Config {
    /// HTTP listen address (`host:port`, `:port` for all interfaces; port 0 = ephemeral).
    #[arg(long, env = "SERVER_HTTP_ADDR", default_value = "127.0.0.1:8080", value_parser = parse_addr)]
    pub http_addr: SocketAddr,

    /// Separate listen address for `/metrics` (default: served on the HTTP listener only).
    #[arg(long, env = "METRICS_ADDR", value_parser = parse_addr)]
    pub metrics_addr: Option<SocketAddr>,

    /// Data directory.
    #[arg(long, env = "STORAGE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Fsync policy.
    #[arg(
        long,
        env = "STORAGE_FSYNC_POLICY",
        value_enum,
        default_value = "batch",
        ignore_case = true
    )]
    pub fsync_policy: FsyncPolicy,

    /// Fsync period for the `interval` policy (e.g. `10ms`, `1s`).
    #[arg(long, env = "STORAGE_FSYNC_INTERVAL", default_value = "10ms", value_parser = parse_duration)]
    pub fsync_interval: Duration,

    /// Segment size at which the log rotates to a new file, in bytes.
    #[arg(long, env = "STORAGE_SEGMENT_BYTES", default_value = "67108864", value_parser = parse_size)]
    pub segment_bytes: u64,

    /// Log level.
    #[arg(
        long,
        env = "LOGGING_LEVEL",
        value_enum,
        default_value = "info",
        ignore_case = true
    )]
    pub log_level: LogLevel,

    /// Log format.
    #[arg(
        long,
        env = "LOGGING_FORMAT",
        value_enum,
        default_value = "json",
        ignore_case = true
    )]
    pub log_format: LogFormat,

    /// Create a stream, queue or KV store on its first write (`true`/`false`).
    #[arg(long, env = "FLOWMESH_AUTO_CREATE", default_value = "true", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub auto_create: bool,

    /// Bearer token required on /api/* and /admin/* (unset: no auth;
    /// /health, /ready and /metrics stay open).
    #[arg(long, global = true, env = "FLOWMESH_AUTH_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub auth_token: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands besides serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Back up a node's data into a new or empty directory: online through
    /// a running node (`--from-url`, consistent, written by the node on its
    /// machine) or offline from a stopped node's data directory (`--from-dir`).
    Backup {
        /// Base URL of a running node (`POST /admin/snapshot`; uses --auth-token).
        #[arg(
            long,
            value_name = "URL",
            required_unless_present = "from_dir",
            conflicts_with = "from_dir"
        )]
        from_url: Option<String>,
        /// Data directory of a stopped node.
        #[arg(long, value_name = "DATA_DIR")]
        from_dir: Option<PathBuf>,
        /// Directory to write the backup into (must not exist or be empty).
        dir: PathBuf,
    },
    /// Restore a backup into a new or empty data directory.
    Restore {
        /// A directory written by `backup` or `POST /admin/snapshot`.
        backup_dir: PathBuf,
        /// The data directory to create (must not exist or be empty).
        data_dir: PathBuf,
    },
}

/// A bearer token: non-empty printable ASCII without spaces.
pub fn parse_token(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the auth token must not be empty (unset it to disable auth)".into());
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the auth token must be printable ASCII without spaces".into());
    }
    Ok(s.to_owned())
}

/// Parses `host:port`; `:port` means all interfaces (seed 002 style).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_owned()
    };
    if let Ok(a) = full.parse::<SocketAddr>() {
        return Ok(a);
    }
    full.to_socket_addrs()
        .map_err(|e| format!("`{s}` is not a host:port address: {e}"))?
        .next()
        .ok_or_else(|| format!("`{s}` resolves to no address"))
}

/// Parses a strictly formatted positive duration: an integer followed by
/// `ns`, `us`, `ms`, `s` or `m` (e.g. `10ms`, `1s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = s.split_at(digits);
    if num.is_empty() {
        return Err(format!(
            "`{s}` is not a duration; expected e.g. `10ms` or `1s`"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}`: number out of range"))?;
    let d = match unit {
        "ns" => Duration::from_nanos(n),
        "us" | "µs" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or("duration out of range")?),
        _ => {
            return Err(format!(
                "`{s}` has no valid unit; expected one of ns, us, ms, s, m (e.g. `10ms`)"
            ));
        }
    };
    if d.is_zero() {
        return Err(format!("`{s}`: duration must be positive"));
    }
    Ok(d)
}

/// Parses a positive byte size: an integer with an optional `KiB`, `MiB`
/// or `GiB` suffix.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = s.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size; expected bytes, e.g. `67108864` or `64MiB`"))?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(format!("`{s}`: unknown unit; use B, KiB, MiB or GiB")),
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("`{s}`: out of range"))?;
    if v == 0 {
        return Err(format!("`{s}`: must be positive"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_strict() {
        assert_eq!(parse_duration("10ms").unwrap(), Duration::from_millis(10));
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        for bad in ["", "10", "ms", "1.5s", "10 ms", "-1s", "0ms", "10msx"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn flags_override_defaults_and_bad_values_fail() {
        let c = Config::try_parse_from([
            "fabric-node",
            "--http-addr",
            ":0",
            "--fsync-policy",
            "always",
            "--auto-create",
            "false",
            "--segment-bytes",
            "1KiB",
        ])
        .unwrap();
        assert_eq!(c.http_addr.port(), 0);
        assert_eq!(c.fsync_policy, FsyncPolicy::Always);
        assert!(!c.auto_create);
        assert_eq!(c.segment_bytes, 1024);
        assert!(Config::try_parse_from(["fabric-node", "--fsync-policy", "sometimes"]).is_err());
        assert!(Config::try_parse_from(["fabric-node", "--fsync-interval", "10"]).is_err());
        assert!(Config::try_parse_from(["fabric-node", "--http-addr", "nope"]).is_err());
    }

    #[test]
    fn subcommands_and_auth_token() {
        let c = Config::try_parse_from([
            "fabric-node",
            "backup",
            "--from-url",
            "http://127.0.0.1:1",
            "/tmp/b",
            "--auth-token",
            "t0k",
        ])
        .unwrap();
        assert_eq!(c.auth_token.as_deref(), Some("t0k"));
        assert!(matches!(
            c.command,
            Some(Command::Backup {
                from_url: Some(_),
                from_dir: None,
                ..
            })
        ));
        let c = Config::try_parse_from(["fabric-node", "restore", "a", "b"]).unwrap();
        assert!(matches!(c.command, Some(Command::Restore { .. })));
        for bad in [
            &["fabric-node", "backup", "/tmp/b"][..],
            &[
                "fabric-node",
                "backup",
                "--from-url",
                "u",
                "--from-dir",
                "d",
                "/tmp/b",
            ],
            &["fabric-node", "restore", "a"],
            &["fabric-node", "--auth-token", ""],
        ] {
            assert!(Config::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
