//! The scenario format v1 as serde types: what a user writes in YAML.
//!
//! Every struct refuses unknown keys. Defaults live here, in one place, as
//! `serde(default)` functions, so the resolved copy of a scenario in a run
//! directory states every value the run used.

use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::catalog::Operation;
use crate::gate::{GateSpec, Slo};
use crate::units::{Duration, Rate, Size};

/// A whole scenario: what to boot, what load to drive, in which phases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Gauntlet scenario (format v1)")]
pub struct Scenario {
    /// Short name, used in the run directory's name: letters, digits, `-`, `_`.
    pub name: String,
    /// What the scenario is for, shown in the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Seed of every random choice (operation mix, payload bytes); same seed, same run.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The system under test.
    pub stack: Stack,
    /// The load: phases and operations.
    pub workload: Workload,
    /// Absolute limits per operation, checked at the end of every run
    /// (`loadgen run` exits 1 when one fails).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slo: BTreeMap<String, Slo>,
    /// Relative tolerances against a baseline, for `loadgen gate` and `loadgen ab`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateSpec>,
    /// Faults injected while the load runs (see `faults.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<crate::faults::FaultSpec>,
    /// Checks run on the operation history once the faults have healed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::faults::CheckName>,
    /// How the read-back after the load runs (only with `checks:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readback: Option<crate::faults::ReadBackSpec>,
    /// What is created before the load starts, per system (`actors:`
    /// components, pipelines and topics).
    #[serde(default, skip_serializing_if = "crate::setup::Setup::is_empty")]
    pub setup: crate::setup::Setup,
    /// CPU profiles taken while the load runs: services (and `loadgen`),
    /// phases, fault windows, frequency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::profiling::ProfileSpec>,
}

fn default_seed() -> u64 {
    1
}

/// What to boot and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    /// `process` (default: local processes on loopback) or `containers`.
    #[serde(default)]
    pub runtime: Runtime,
    /// Services by name; operations refer to them by this name.
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    /// Services that are not booted, by name: a base URL each
    /// (`http://127.0.0.1:8080`, optionally with a path prefix). Operations
    /// name them in `service:` like booted ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Each service is a child process on a free loopback port.
    #[default]
    Process,
    /// Each service is a container built locally.
    Containers,
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Runtime::Process => "process",
            Runtime::Containers => "containers",
        })
    }
}

/// One service of the stack: a bundled kind, any command that serves HTTP,
/// or (container mode) any local image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// A service Gauntlet ships: `fabric`, `actors` (the actor node),
    /// `tracing` (the tracing server), `reflow` (a Reflow node on the
    /// published runtime), `postgres` (PostgreSQL 15), `redis`
    /// (Redis 7) or `nginx` (in front of `upstreams`); the last three come
    /// from Debian (this machine's packages in process mode, the base image
    /// in containers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ServiceKind>,
    /// Instead of `kind`: the program and its arguments. `{port}`, `{addr}` and
    /// `{data_dir}` are replaced by the port, `127.0.0.1:port` and the data directory
    /// (in container mode: the container port, `0.0.0.0:port` and `/data`).
    /// `{addr:NAME}`, `{host:NAME}` and `{port:NAME}` are another service's
    /// address as this one reaches it (`127.0.0.1:port`, or a fault proxy's
    /// when a link fault names `THIS->NAME`; in container mode `NAME:port`
    /// on the run's network); the service boots after `NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// `kind: nginx` or `kind: haproxy` only: the HTTP services it balances
    /// over (round robin; nginx passes WebSocket upgrades through), by name;
    /// it boots after them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<String>,
    /// Container mode: a local image (built here, nothing is pulled) for a
    /// service Gauntlet does not ship; `command`, when given, replaces its
    /// command. Process mode runs `command` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Container mode: the port the service listens on inside its container
    /// (default: 8080; `postgres` 5432, `redis` 6379).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Environment of the service (same placeholders as `command`, references
    /// to other services included, e.g. `redis://{addr:cache}`); numbers and
    /// booleans are written as their text.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "env_map"
    )]
    #[schemars(with = "BTreeMap<String, EnvValue>")]
    pub env: BTreeMap<String, String>,
    /// Path polled until it answers 200 (HTTP services; default `/ready`).
    /// `postgres` and `redis` are probed with their own protocol instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_path: Option<String>,
    /// How long to wait for readiness (default `30s`).
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout: Duration,
    /// How long a graceful stop (SIGTERM) may take before SIGKILL (default `10s`).
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: Duration,
    /// Container mode: CPU limit in cores, e.g. `1.5` (process mode warns and ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Container mode: memory limit, e.g. `512MiB` (process mode warns and ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// Container mode: extra data volumes, name → path inside the container
    /// (each a Docker volume of this run, removed with it). The service's
    /// data directory is always a volume of its own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, String>,
    /// The service's data directory as a filesystem of its own of this size
    /// (a tmpfs, at least `8MiB`), so a `disk_full` fault reaches ENOSPC and
    /// the service sees a full disk. The data survives restarts of the
    /// service but not the run. Process mode needs CAP_SYS_ADMIN (root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Size>,
}

/// How readiness is probed: HTTP services answer 200 on a path; PostgreSQL
/// and Redis are asked with their own protocol (`pg_isready`, `PING`), so a
/// `ready_path` is never sent to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Http(String),
    Postgres,
    Redis,
}

pub const DEFAULT_READY_PATH: &str = "/ready";

/// An environment value as YAML may write it: a string, a number or a boolean.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum EnvValue {
    Text(String),
    Number(f64),
    Flag(bool),
}

fn env_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct Text(String);
    impl<'de> Deserialize<'de> for Text {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Text;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string, number or boolean")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                    Ok(Text(v.to_owned()))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
                fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
            }
            d.deserialize_any(V)
        }
    }
    let map = BTreeMap::<String, Text>::deserialize(d)?;
    Ok(map.into_iter().map(|(k, v)| (k, v.0)).collect())
}

fn default_ready_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_stop_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// The event fabric (`fabric-node`).
    Fabric,
    /// The actor node (`actor-node`): components, pipelines, topics.
    Actors,
    /// PostgreSQL 15, from the base image (container mode), or this
    /// machine's `postgresql-15` (process mode).
    Postgres,
    /// Redis 7, from the base image (container mode), or `redis-server`
    /// on this machine (process mode).
    Redis,
    /// The tracing server (`tracing-server`, seed 003) on PostgreSQL and Redis.
    Tracing,
    /// nginx (Debian's `nginx-light`) in front of HTTP services (`upstreams`),
    /// its configuration generated per run.
    Nginx,
    /// A Reflow node (`reflow-node`, seed 000): a graph on the published
    /// `reflow_network` 0.2.1 runtime, optionally traced to a `tracing` service.
    Reflow,
    /// HAProxy (Debian's `haproxy`) in front of HTTP services
    /// (`upstreams`): seed 004's load-balancer configuration (TCP, round
    /// robin, health checks every 2 s), generated per run.
    Haproxy,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 8] = [
        ServiceKind::Fabric,
        ServiceKind::Actors,
        ServiceKind::Postgres,
        ServiceKind::Redis,
        ServiceKind::Tracing,
        ServiceKind::Nginx,
        ServiceKind::Reflow,
        ServiceKind::Haproxy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Fabric => "fabric",
            ServiceKind::Actors => "actors",
            ServiceKind::Postgres => "postgres",
            ServiceKind::Redis => "redis",
            ServiceKind::Tracing => "tracing",
            ServiceKind::Nginx => "nginx",
            ServiceKind::Reflow => "reflow",
            ServiceKind::Haproxy => "haproxy",
        }
    }
}

/// The load to drive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// `open` (arrival rate; default) or `closed` (users that wait for each
    /// answer, run by goose; phases then give `users:` instead of `rate:`).
    #[serde(default)]
    pub engine: EngineKind,
    /// Closed model only: how long a user waits after each operation
    /// before the next (default `0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think_time: Option<Duration>,
    /// Most operations in flight at once (default 1024). When full, new
    /// operations wait and start late; their latency still counts from
    /// their intended start.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// An operation not answered within this time is an error (default `10s`).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// An operation that starts later than this after its intended start is
    /// counted as late (default `5ms`).
    #[serde(default = "default_late_after")]
    pub late_after: Duration,
    /// The phases, run one after the other.
    pub phases: Vec<Phase>,
    /// The operation mix, chosen by weight for every arrival (a phase's
    /// `mix` replaces the weights in that phase).
    pub operations: Vec<Operation>,
}

fn default_max_in_flight() -> u32 {
    1024
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_late_after() -> Duration {
    Duration::from_millis(5)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Operations arrive on a schedule, whatever the system's latency.
    #[default]
    Open,
    /// A fixed number of users, each waiting for its previous operation.
    Closed,
}

/// A stretch of the run with its own arrival rate and, optionally, its own
/// operation mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub name: String,
    pub duration: Duration,
    /// Open model: constant (`500/s`), ramp (`{ from, to }`), steps
    /// (`{ from, to, steps | every }`), spike (`{ base, burst, every, for }`)
    /// or soak (`{ soak: 500/s }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateSpec>,
    /// Closed model: a number of users (`50`) or a linear ramp (`{ from: 0, to: 50 }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<UsersSpec>,
    /// This phase's operation weights by operation name, replacing the
    /// operations' own `weight`s; operations not listed are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<BTreeMap<String, u32>>,
}

/// A closed-model phase's users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsersSpec {
    Constant(u32),
    Ramp { from: u32, to: u32 },
}

impl UsersSpec {
    /// Users at the phase's start and end.
    pub fn bounds(self) -> (u32, u32) {
        match self {
            UsersSpec::Constant(n) => (n, n),
            UsersSpec::Ramp { from, to } => (from, to),
        }
    }
}

impl Serialize for UsersSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            UsersSpec::Constant(n) => s.serialize_u32(*n),
            UsersSpec::Ramp { from, to } => {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("from", from)?;
                map.serialize_entry("to", to)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for UsersSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Ramp {
            from: u32,
            to: u32,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UsersSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of users such as `50` or a ramp `{ from: 0, to: 50 }`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<UsersSpec, E> {
                u32::try_from(v)
                    .map(UsersSpec::Constant)
                    .map_err(|_| E::custom(format!("{v} users is more than Gauntlet can run")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<UsersSpec, E> {
                Err(E::custom(format!(
                    "`{v}` is not a number of users (hint: write e.g. `50`)"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<UsersSpec, E> {
                Err(E::custom(format!(
                    "`{v}` is not a whole number of users (hint: write e.g. `50`)"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<UsersSpec, E> {
                Err(E::custom(format!(
                    "`{v}` is not a number of users (hint: write a plain number such as `50`; rates like `500/s` belong in `rate:`)"
                )))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<UsersSpec, A::Error> {
                let ramp = Ramp::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(UsersSpec::Ramp {
                    from: ramp.from,
                    to: ramp.to,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for UsersSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "UsersSpec".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A number of users or a linear ramp between two numbers of users.",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                {
                    "type": "object",
                    "properties": {
                        "from": { "type": "integer", "minimum": 0 },
                        "to": { "type": "integer", "minimum": 0 }
                    },
                    "required": ["from", "to"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

/// A phase's arrival rate over time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateSpec {
    /// The same rate throughout.
    Constant(Rate),
    /// From one rate to another, linearly.
    Ramp { from: Rate, to: Rate },
    /// Constant levels from `from` to `to`, evenly spaced: `steps` of them
    /// over the phase, or one every `every` (the last may be shorter).
    Steps {
        from: Rate,
        to: Rate,
        steps: Option<u32>,
        every: Option<Duration>,
    },
    /// `base` with bursts at `burst`: every `every`, the last `for` of the
    /// period runs at `burst`.
    Spike {
        base: Rate,
        burst: Rate,
        every: Duration,
        burst_for: Duration,
    },
    /// A long constant rate (at least one minute), to find what only time reveals.
    Soak(Rate),
}

/// Keys of a rate mapping, by shape.
const RATE_KEYS: [&str; 8] = [
    "from", "to", "steps", "every", "base", "burst", "for", "soak",
];

impl Serialize for RateSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RateSpec::Constant(rate) => rate.serialize(s),
            RateSpec::Ramp { from, to } => {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("from", from)?;
                map.serialize_entry("to", to)?;
                map.end()
            }
            RateSpec::Steps {
                from,
                to,
                steps,
                every,
            } => {
                let mut map = s.serialize_map(None)?;
                map.serialize_entry("from", from)?;
                map.serialize_entry("to", to)?;
                if let Some(n) = steps {
                    map.serialize_entry("steps", n)?;
                }
                if let Some(e) = every {
                    map.serialize_entry("every", e)?;
                }
                map.end()
            }
            RateSpec::Spike {
                base,
                burst,
                every,
                burst_for,
            } => {
                let mut map = s.serialize_map(Some(4))?;
                map.serialize_entry("base", base)?;
                map.serialize_entry("burst", burst)?;
                map.serialize_entry("every", every)?;
                map.serialize_entry("for", burst_for)?;
                map.end()
            }
            RateSpec::Soak(rate) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("soak", rate)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for RateSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct Shape {
            from: Option<Rate>,
            to: Option<Rate>,
            steps: Option<u32>,
            every: Option<Duration>,
            base: Option<Rate>,
            burst: Option<Rate>,
            #[serde(rename = "for")]
            burst_for: Option<Duration>,
            soak: Option<Rate>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RateSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate such as `500/s` or a ramp `{ from: 500/s, to: 5000/s }`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RateSpec, E> {
                Rate::deserialize(de::value::StrDeserializer::<E>::new(v)).map(RateSpec::Constant)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RateSpec, E> {
                Err(E::custom(format!(
                    "rate `{v}` has no unit (hint: write `{v}/s`)"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RateSpec, E> {
                Err(E::custom(format!(
                    "rate `{v}` is not a rate (hint: write e.g. `500/s`)"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RateSpec, E> {
                Err(E::custom(format!(
                    "rate `{v}` has no unit (hint: write `{v}/s`)"
                )))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RateSpec, A::Error> {
                let s = Shape::deserialize(de::value::MapAccessDeserializer::new(map))?;
                shape(s)
            }
        }
        fn given(s: &Shape) -> Vec<&'static str> {
            let present = [
                s.from.is_some(),
                s.to.is_some(),
                s.steps.is_some(),
                s.every.is_some(),
                s.base.is_some(),
                s.burst.is_some(),
                s.burst_for.is_some(),
                s.soak.is_some(),
            ];
            RATE_KEYS
                .iter()
                .zip(present)
                .filter(|(_, p)| *p)
                .map(|(k, _)| *k)
                .collect()
        }
        fn shape<E: de::Error>(s: Shape) -> Result<RateSpec, E> {
            let keys = given(&s);
            let only = |allowed: &[&str], shape: &str, example: &str| -> Result<(), E> {
                match keys.iter().find(|k| !allowed.contains(k)) {
                    Some(k) => Err(E::custom(format!(
                        "`{k}` does not belong to a {shape} rate (hint: a {shape} is `{example}`)"
                    ))),
                    None => Ok(()),
                }
            };
            let need = |v: bool, key: &str, shape: &str, example: &str| -> Result<(), E> {
                if v {
                    Ok(())
                } else {
                    Err(E::custom(format!(
                        "a {shape} rate needs `{key}` (hint: a {shape} is `{example}`)"
                    )))
                }
            };
            const SOAK: &str = "{ soak: 500/s }";
            const SPIKE: &str = "{ base: 100/s, burst: 2000/s, every: 30s, for: 2s }";
            const STEPS: &str =
                "{ from: 100/s, to: 1000/s, steps: 4 } or { from: 100/s, to: 1000/s, every: 30s }";
            const RAMP: &str = "{ from: 100/s, to: 1000/s }";
            if let Some(rate) = s.soak {
                only(&["soak"], "soak", SOAK)?;
                return Ok(RateSpec::Soak(rate));
            }
            if s.base.is_some() || s.burst.is_some() || s.burst_for.is_some() {
                only(&["base", "burst", "every", "for"], "spike", SPIKE)?;
                need(s.base.is_some(), "base", "spike", SPIKE)?;
                need(s.burst.is_some(), "burst", "spike", SPIKE)?;
                need(s.every.is_some(), "every", "spike", SPIKE)?;
                need(s.burst_for.is_some(), "for", "spike", SPIKE)?;
                return Ok(RateSpec::Spike {
                    base: s.base.unwrap_or_default(),
                    burst: s.burst.unwrap_or_default(),
                    every: s.every.unwrap_or_default(),
                    burst_for: s.burst_for.unwrap_or_default(),
                });
            }
            if s.steps.is_some() || s.every.is_some() {
                need(s.from.is_some(), "from", "steps", STEPS)?;
                need(s.to.is_some(), "to", "steps", STEPS)?;
                if s.steps.is_some() && s.every.is_some() {
                    return Err(E::custom(
                        "give `steps` or `every`, not both (hint: `steps: 4` splits the phase into 4 levels; `every: 30s` changes level every 30s)",
                    ));
                }
                return Ok(RateSpec::Steps {
                    from: s.from.unwrap_or_default(),
                    to: s.to.unwrap_or_default(),
                    steps: s.steps,
                    every: s.every,
                });
            }
            need(s.from.is_some(), "from", "ramp", RAMP)?;
            need(s.to.is_some(), "to", "ramp", RAMP)?;
            Ok(RateSpec::Ramp {
                from: s.from.unwrap_or_default(),
                to: s.to.unwrap_or_default(),
            })
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for RateSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RateSpec".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let rate = generator.subschema_for::<Rate>();
        let duration = generator.subschema_for::<Duration>();
        json_schema!({
            "description": "A constant rate, a ramp, steps, a spike or a soak.",
            "oneOf": [
                rate,
                {
                    "description": "A linear ramp.",
                    "type": "object",
                    "properties": { "from": rate, "to": rate },
                    "required": ["from", "to"],
                    "additionalProperties": false
                },
                {
                    "description": "Constant levels from `from` to `to`: `steps` of them, or one every `every`.",
                    "type": "object",
                    "properties": { "from": rate, "to": rate, "steps": { "type": "integer", "minimum": 2 }, "every": duration },
                    "required": ["from", "to"],
                    "oneOf": [ { "required": ["steps"] }, { "required": ["every"] } ],
                    "additionalProperties": false
                },
                {
                    "description": "`base` rate with bursts at `burst` for `for` at the end of every `every`.",
                    "type": "object",
                    "properties": { "base": rate, "burst": rate, "every": duration, "for": duration },
                    "required": ["base", "burst", "every", "for"],
                    "additionalProperties": false
                },
                {
                    "description": "A long constant rate (at least 1m).",
                    "type": "object",
                    "properties": { "soak": rate },
                    "required": ["soak"],
                    "additionalProperties": false
                }
            ]
        })
    }
}
