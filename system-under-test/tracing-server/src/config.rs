//! Configuration: seed 003's TOML shape (`[server]`, `[database]`,
//! `[redis]`, `[tracing]`, `[logging]`, `[metrics]`, plus `[auth]`), then
//! the environment over it (seed 003's names), then checks. Every invalid
//! value is a clear error naming the key (and the variable) that holds it;
//! `main` prints it and exits 2.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The largest WebSocket frame (and decompressed binary frame) accepted;
/// larger closes the connection with 1009.
pub const MAX_FRAME_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind_address: SocketAddr,
    pub max_connections: usize,
    pub worker_threads: Option<usize>,
    /// The server pings an idle WebSocket this often.
    pub keep_alive: Duration,
    pub database_url: String,
    pub db_max_connections: usize,
    pub db_min_connections: usize,
    /// Connecting, waiting for a pooled connection, one commit attempt; also
    /// how long an event may wait for the database before it is refused.
    pub db_connection_timeout: Duration,
    pub statement_timeout: Duration,
    /// `None`: no Redis (cache off, subscriptions local to this replica).
    pub redis_url: Option<String>,
    pub redis_pool_size: usize,
    pub redis_connection_timeout: Duration,
    pub batch_size: usize,
    pub batch_timeout: Duration,
    pub max_event_size: usize,
    /// Binary frames are zstd-compressed JSON (`true`) or plain JSON.
    pub compression: bool,
    pub max_pending_events: usize,
    /// Batches being committed at once (each on its own connection).
    pub commit_parallelism: usize,
    pub log_level: String,
    pub log_format: LogFormat,
    pub metrics_enabled: bool,
    /// `None`: `/metrics` on the main listener only.
    pub metrics_address: Option<SocketAddr>,
    pub require_auth: bool,
    pub jwt_secret: Option<String>,
    /// Seconds of clock skew tolerated on `exp`/`nbf`.
    pub jwt_leeway: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    database: DatabaseSection,
    #[serde(default)]
    redis: RedisSection,
    #[serde(default)]
    tracing: TracingSection,
    #[serde(default)]
    logging: LoggingSection,
    #[serde(default)]
    metrics: MetricsSection,
    #[serde(default)]
    auth: AuthSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    bind_address: Option<String>,
    max_connections: Option<i64>,
    worker_threads: Option<i64>,
    /// Seconds.
    keep_alive_timeout: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseSection {
    url: Option<String>,
    max_connections: Option<i64>,
    min_connections: Option<i64>,
    /// Milliseconds.
    connection_timeout: Option<i64>,
    /// Milliseconds.
    statement_timeout: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisSection {
    url: Option<String>,
    pool_size: Option<i64>,
    /// Milliseconds.
    connection_timeout: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TracingSection {
    batch_size: Option<i64>,
    batch_timeout_ms: Option<i64>,
    max_event_size: Option<i64>,
    compression: Option<Compression>,
    max_pending_events: Option<i64>,
    commit_parallelism: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Compression {
    Flag(bool),
    Name(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoggingSection {
    level: Option<String>,
    format: Option<String>,
    target: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsSection {
    enabled: Option<bool>,
    bind_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    require_auth: Option<bool>,
    jwt_secret: Option<String>,
    leeway_seconds: Option<i64>,
}

/// Where a value came from, for messages: the TOML key and the variable.
fn both(key: &str, var: Option<&str>) -> String {
    match var {
        Some(v) => format!("`{key}` (or {v})"),
        None => format!("`{key}`"),
    }
}

fn int(
    key: &str,
    var: Option<&str>,
    file: Option<i64>,
    env: &dyn Fn(&str) -> Option<String>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, String> {
    let value = match var.and_then(env) {
        Some(text) => text
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("{}: `{text}` is not a whole number", var.unwrap_or(key)))?,
        None => file.unwrap_or(default),
    };
    if value < min || value > max {
        return Err(format!(
            "{}: {value} is out of range ({min}..={max})",
            both(key, var)
        ));
    }
    Ok(value)
}

fn addr(key: &str, var: Option<&str>, text: &str) -> Result<SocketAddr, String> {
    text.trim().parse::<SocketAddr>().map_err(|_| {
        format!(
            "{}: `{text}` is not an address; expected IP:PORT such as 127.0.0.1:8080",
            both(key, var)
        )
    })
}

fn boolean(var: &str, text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{var}: `{text}` is not true or false")),
    }
}

fn check_database_url(url: &str) -> Result<(), String> {
    let scheme_ok = url.starts_with("postgresql://") || url.starts_with("postgres://");
    if !scheme_ok {
        return Err(format!(
            "`database.url` (or TRACING_DATABASE_URL): `{url}` is not a PostgreSQL URL; expected postgresql://user@host:port/db"
        ));
    }
    url.parse::<tokio_postgres::Config>()
        .map_err(|e| format!("`database.url` (or TRACING_DATABASE_URL): `{url}`: {e}"))?;
    Ok(())
}

fn check_redis_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://"))
    {
        return Err(format!(
            "`redis.url` (or TRACING_REDIS_URL): `{url}` is not a Redis URL; expected redis://host:port"
        ));
    }
    redis::Client::open(url)
        .map_err(|e| format!("`redis.url` (or TRACING_REDIS_URL): `{url}`: {e}"))?;
    Ok(())
}

impl Config {
    /// Reads the optional file, then the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, String> {
        let text = match path {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| format!("--config {}: cannot read it: {e}", p.display()))?,
            ),
            None => None,
        };
        let env = |name: &str| std::env::var(name).ok();
        Config::from_parts(text.as_deref(), path, &env)
    }

    /// The configuration from a TOML text (if any) and an environment.
    pub fn from_parts(
        text: Option<&str>,
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        let file: File = match text {
            Some(t) => toml::from_str(t).map_err(|e| {
                let at = path.map(|p| p.display().to_string()).unwrap_or_default();
                format!("{at}: {e}(seed 003's sections: [server] [database] [redis] [tracing] [logging] [metrics] [auth])")
            })?,
            None => File::default(),
        };
        let bind_text = env("TRACING_BIND_ADDRESS")
            .or(file.server.bind_address.clone())
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let bind_address = addr(
            "server.bind_address",
            Some("TRACING_BIND_ADDRESS"),
            &bind_text,
        )?;
        let max_connections = int(
            "server.max_connections",
            Some("TRACING_MAX_CONNECTIONS"),
            file.server.max_connections,
            env,
            1000,
            1,
            1_000_000,
        )? as usize;
        let worker_threads = match file.server.worker_threads {
            Some(_) => Some(int(
                "server.worker_threads",
                None,
                file.server.worker_threads,
                env,
                1,
                1,
                1024,
            )? as usize),
            None => None,
        };
        let keep_alive = int(
            "server.keep_alive_timeout",
            None,
            file.server.keep_alive_timeout,
            env,
            30,
            1,
            86_400,
        )? as u64;

        let database_url = env("TRACING_DATABASE_URL")
            .or(file.database.url.clone())
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| {
                "no database: set `database.url` in the configuration file or TRACING_DATABASE_URL (postgresql://user@host:port/db)".to_owned()
            })?;
        check_database_url(&database_url)?;
        let db_max_connections = int(
            "database.max_connections",
            None,
            file.database.max_connections,
            env,
            20,
            2,
            10_000,
        )? as usize;
        let db_min_connections = int(
            "database.min_connections",
            None,
            file.database.min_connections,
            env,
            2,
            0,
            10_000,
        )? as usize;
        if db_min_connections > db_max_connections {
            return Err(format!(
                "`database.min_connections` ({db_min_connections}) is above `database.max_connections` ({db_max_connections})"
            ));
        }
        let db_connection_timeout = Duration::from_millis(int(
            "database.connection_timeout",
            None,
            file.database.connection_timeout,
            env,
            5000,
            100,
            600_000,
        )? as u64);
        let statement_timeout = Duration::from_millis(int(
            "database.statement_timeout",
            None,
            file.database.statement_timeout,
            env,
            30_000,
            100,
            3_600_000,
        )? as u64);

        let redis_url = env("TRACING_REDIS_URL")
            .or(file.redis.url.clone())
            .filter(|u| !u.trim().is_empty());
        if let Some(url) = &redis_url {
            check_redis_url(url)?;
        }
        let redis_pool_size = int(
            "redis.pool_size",
            None,
            file.redis.pool_size,
            env,
            10,
            1,
            1000,
        )? as usize;
        let redis_connection_timeout = Duration::from_millis(int(
            "redis.connection_timeout",
            None,
            file.redis.connection_timeout,
            env,
            3000,
            10,
            600_000,
        )? as u64);

        let batch_size = int(
            "tracing.batch_size",
            Some("TRACING_BATCH_SIZE"),
            file.tracing.batch_size,
            env,
            100,
            1,
            100_000,
        )? as usize;
        let batch_timeout = Duration::from_millis(int(
            "tracing.batch_timeout_ms",
            Some("TRACING_BATCH_TIMEOUT_MS"),
            file.tracing.batch_timeout_ms,
            env,
            2000,
            0,
            600_000,
        )? as u64);
        let max_event_size = int(
            "tracing.max_event_size",
            Some("TRACING_MAX_EVENT_SIZE"),
            file.tracing.max_event_size,
            env,
            1 << 20,
            64,
            MAX_FRAME_BYTES as i64,
        )? as usize;
        let compression = match &file.tracing.compression {
            None | Some(Compression::Flag(true)) => true,
            Some(Compression::Flag(false)) => false,
            Some(Compression::Name(n)) => match n.to_ascii_lowercase().as_str() {
                "zstd" => true,
                "none" => false,
                other => {
                    return Err(format!(
                        "`tracing.compression`: `{other}` is not supported; use true, false, \"zstd\" or \"none\""
                    ));
                }
            },
        };
        let max_pending_events = int(
            "tracing.max_pending_events",
            Some("TRACING_MAX_PENDING_EVENTS"),
            file.tracing.max_pending_events,
            env,
            100_000,
            1,
            100_000_000,
        )? as usize;
        let commit_parallelism = int(
            "tracing.commit_parallelism",
            Some("TRACING_COMMIT_PARALLELISM"),
            file.tracing.commit_parallelism,
            env,
            2,
            1,
            64,
        )? as usize;
        if commit_parallelism >= db_max_connections {
            return Err(format!(
                "`tracing.commit_parallelism` ({commit_parallelism}) must be below `database.max_connections` ({db_max_connections}): queries need connections too"
            ));
        }

        let log_level = env("RUST_LOG")
            .or(file.logging.level.clone())
            .unwrap_or_else(|| "info".to_owned());
        tracing_subscriber::EnvFilter::try_new(&log_level)
            .map_err(|e| format!("`logging.level` (or RUST_LOG): `{log_level}`: {e}"))?;
        let log_format = match file.logging.format.as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") | Some("pretty") => LogFormat::Text,
            Some(other) => {
                return Err(format!(
                    "`logging.format`: `{other}` is not supported; use \"json\" or \"text\""
                ));
            }
        };
        match file.logging.target.as_deref() {
            None | Some("stdout") => {}
            Some(other) => {
                return Err(format!(
                    "`logging.target`: `{other}` is not supported; logs go to \"stdout\""
                ));
            }
        }

        let metrics_enabled = file.metrics.enabled.unwrap_or(true);
        let metrics_text = env("TRACING_METRICS_ADDRESS").or(file.metrics.bind_address.clone());
        let metrics_address = match metrics_text.filter(|t| !t.trim().is_empty()) {
            Some(t) => Some(addr(
                "metrics.bind_address",
                Some("TRACING_METRICS_ADDRESS"),
                &t,
            )?),
            None => None,
        }
        .filter(|a| *a != bind_address);

        let require_auth = match env("TRACING_REQUIRE_AUTH") {
            Some(t) => boolean("TRACING_REQUIRE_AUTH", &t)?,
            None => file.auth.require_auth.unwrap_or(false),
        };
        let jwt_secret = env("JWT_SECRET")
            .or(file.auth.jwt_secret.clone())
            .filter(|s| !s.is_empty());
        if require_auth && jwt_secret.is_none() {
            return Err(
                "authentication is required (TRACING_REQUIRE_AUTH / `auth.require_auth`) but no JWT_SECRET is set"
                    .to_owned(),
            );
        }
        let jwt_leeway = int(
            "auth.leeway_seconds",
            None,
            file.auth.leeway_seconds,
            env,
            5,
            0,
            3600,
        )? as u64;

        Ok(Config {
            bind_address,
            max_connections,
            worker_threads,
            keep_alive: Duration::from_secs(keep_alive),
            database_url,
            db_max_connections,
            db_min_connections,
            db_connection_timeout,
            statement_timeout,
            redis_url,
            redis_pool_size,
            redis_connection_timeout,
            batch_size,
            batch_timeout,
            max_event_size,
            compression,
            max_pending_events,
            commit_parallelism,
            log_level,
            log_format,
            metrics_enabled,
            metrics_address,
            require_auth,
            jwt_secret,
            jwt_leeway,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)], text: Option<&str>) -> Result<Config, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_parts(text, None, &move |k: &str| map.get(k).cloned())
    }

    const SEED: &str = r#"
[server]
bind_address = "0.0.0.0:8080"
max_connections = 1000
worker_threads = 8
keep_alive_timeout = 30

[database]
url = "postgresql://user:pass@postgres-cluster:5432/tracing"
max_connections = 20
min_connections = 5
connection_timeout = 5000
statement_timeout = 30000

[redis]
url = "redis://redis-cluster:6379"
pool_size = 10
connection_timeout = 3000

[tracing]
batch_size = 100
batch_timeout_ms = 2000
max_event_size = 1048576  # 1MB
compression = true

[logging]
level = "info"
format = "json"
target = "stdout"

[metrics]
enabled = true
bind_address = "0.0.0.0:9090"
"#;

    #[test]
    fn seed_003_production_toml_loads_and_the_environment_overrides_it() {
        let c = with(&[], Some(SEED)).unwrap();
        assert_eq!(c.bind_address, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.batch_size, 100);
        assert_eq!(c.max_event_size, 1 << 20);
        assert_eq!(c.metrics_address, Some("0.0.0.0:9090".parse().unwrap()));
        assert_eq!(c.worker_threads, Some(8));
        let c = with(
            &[
                ("TRACING_BIND_ADDRESS", "127.0.0.1:9999"),
                (
                    "TRACING_DATABASE_URL",
                    "postgresql://postgres@127.0.0.1:5/db",
                ),
                ("TRACING_REDIS_URL", ""),
                ("TRACING_MAX_CONNECTIONS", "7"),
                ("TRACING_BATCH_SIZE", "500"),
                ("TRACING_BATCH_TIMEOUT_MS", "0"),
                ("TRACING_MAX_EVENT_SIZE", "4096"),
                ("TRACING_MAX_PENDING_EVENTS", "50"),
                ("TRACING_METRICS_ADDRESS", "127.0.0.1:9999"),
                ("TRACING_REQUIRE_AUTH", "true"),
                ("JWT_SECRET", "s3cret"),
            ],
            Some(SEED),
        )
        .unwrap();
        assert_eq!(c.bind_address.port(), 9999);
        assert_eq!(c.database_url, "postgresql://postgres@127.0.0.1:5/db");
        assert_eq!(c.redis_url, None);
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.batch_size, 500);
        assert_eq!(c.batch_timeout, Duration::ZERO);
        assert_eq!(c.max_event_size, 4096);
        assert_eq!(c.max_pending_events, 50);
        assert_eq!(c.metrics_address, None, "same as the main listener");
        assert!(c.require_auth);
    }

    #[test]
    fn invalid_values_name_their_key() {
        let db = (
            "TRACING_DATABASE_URL",
            "postgresql://postgres@127.0.0.1:5/db",
        );
        type Case<'a> = (Vec<(&'a str, &'a str)>, Option<&'a str>, &'a str);
        let cases: Vec<Case> = vec![
            (vec![], None, "no database"),
            (
                vec![("TRACING_DATABASE_URL", "mysql://x")],
                None,
                "TRACING_DATABASE_URL",
            ),
            (
                vec![db, ("TRACING_BIND_ADDRESS", "nowhere")],
                None,
                "TRACING_BIND_ADDRESS",
            ),
            (
                vec![db, ("TRACING_MAX_CONNECTIONS", "0")],
                None,
                "out of range",
            ),
            (
                vec![db, ("TRACING_BATCH_SIZE", "ten")],
                None,
                "TRACING_BATCH_SIZE",
            ),
            (
                vec![db, ("TRACING_REDIS_URL", "http://x")],
                None,
                "TRACING_REDIS_URL",
            ),
            (
                vec![db, ("TRACING_REQUIRE_AUTH", "true")],
                None,
                "JWT_SECRET",
            ),
            (
                vec![db, ("TRACING_REQUIRE_AUTH", "maybe")],
                None,
                "TRACING_REQUIRE_AUTH",
            ),
            (vec![db], Some("[server]\nport = 1\n"), "unknown field"),
            (
                vec![db],
                Some("[tracing]\ncompression = \"lz4\"\n"),
                "compression",
            ),
            (
                vec![db],
                Some("[logging]\nformat = \"xml\"\n"),
                "logging.format",
            ),
        ];
        for (vars, text, want) in cases {
            let err = with(&vars, text).unwrap_err();
            assert!(err.contains(want), "{vars:?} {text:?}: {err}");
        }
    }
}
