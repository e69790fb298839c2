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
    /// Named services that are not booted: name → base URL
    /// (`http://host:port`). Operations refer to them like services.
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

/// One service of the stack: a bundled kind, or any command that serves HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// A service Gauntlet ships: `fabric`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ServiceKind>,
    /// Instead of `kind`: the program and its arguments. `{port}`, `{addr}` and
    /// `{data_dir}` are replaced by the port, `127.0.0.1:port` and the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Environment of the service (same placeholders as `command`); numbers
    /// and booleans are written as their text.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "env_map"
    )]
    #[schemars(with = "BTreeMap<String, EnvValue>")]
    pub env: BTreeMap<String, String>,
    /// Path polled until it answers 200 (default `/ready`).
    #[serde(default = "default_ready_path")]
    pub ready_path: String,
    /// How long to wait for readiness (default `30s`).
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout: Duration,
    /// How long a graceful stop (SIGTERM) may take before SIGKILL (default `10s`).
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: Duration,
}

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

fn default_ready_path() -> String {
    "/ready".to_owned()
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
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 1] = [ServiceKind::Fabric];

    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Fabric => "fabric",
        }
    }

    /// The bundled binary that runs this kind.
    pub fn binary(self) -> &'static str {
        match self {
            ServiceKind::Fabric => "fabric-node",
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
    /// The operation mix, chosen by weight for every arrival.
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

/// A stretch of the run with its own arrival rate (open model) or number
/// of users (closed model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub name: String,
    pub duration: Duration,
    /// Open model: a constant rate (`500/s`) or a linear ramp (`{ from: 500/s, to: 5000/s }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateSpec>,
    /// Closed model: a number of users (`50`) or a linear ramp (`{ from: 0, to: 50 }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<UsersSpec>,
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

/// A phase's arrival rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateSpec {
    Constant(Rate),
    Ramp { from: Rate, to: Rate },
}

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
        }
    }
}

impl<'de> Deserialize<'de> for RateSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Ramp {
            from: Rate,
            to: Rate,
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
                let ramp = Ramp::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RateSpec::Ramp {
                    from: ramp.from,
                    to: ramp.to,
                })
            }
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
        json_schema!({
            "description": "A constant rate or a linear ramp between two rates.",
            "oneOf": [
                rate,
                {
                    "type": "object",
                    "properties": { "from": rate, "to": rate },
                    "required": ["from", "to"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

/// One kind of operation in the mix, with its name and weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Name in results, reports and gates (unique in the scenario).
    pub name: String,
    /// Relative share of arrivals (default 1).
    pub weight: u32,
    /// What the operation does.
    pub action: Action,
}

/// What an operation does: exactly one of the catalog's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Append a batch of events to a fabric stream.
    #[serde(rename = "fabric.stream.append")]
    StreamAppend(StreamAppend),
    /// Read messages from a fabric stream.
    #[serde(rename = "fabric.stream.read")]
    StreamRead(StreamRead),
    /// Any HTTP request to a service or an external base URL.
    #[serde(rename = "http")]
    Http(HttpRequest),
}

impl Action {
    /// The YAML keys of the catalog, in the order the schema lists them.
    pub const KEYS: [&'static str; 3] = ["fabric.stream.append", "fabric.stream.read", "http"];

    pub fn key(&self) -> &'static str {
        match self {
            Action::StreamAppend(_) => Self::KEYS[0],
            Action::StreamRead(_) => Self::KEYS[1],
            Action::Http(_) => Self::KEYS[2],
        }
    }

    /// The service the action targets, when the scenario names one.
    pub fn service(&self) -> Option<&str> {
        match self {
            Action::StreamAppend(a) => a.service.as_deref(),
            Action::StreamRead(r) => r.service.as_deref(),
            Action::Http(h) => Some(&h.service),
        }
    }

    /// The service kind the action needs (`None`: any HTTP service).
    pub fn needs(&self) -> Option<ServiceKind> {
        match self {
            Action::StreamAppend(_) | Action::StreamRead(_) => Some(ServiceKind::Fabric),
            Action::Http(_) => None,
        }
    }
}

/// `http`: one request, its answer checked against the expected status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    /// The service (booted or external) the request goes to.
    pub service: String,
    /// `GET` (default), `POST`, `PUT`, `DELETE`, `HEAD`, `PATCH` or `OPTIONS`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Path and query, relative to the service's base URL (starts with `/`).
    pub url: String,
    /// Request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body, sent as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The status an answer must have to count as a success (default 200).
    #[serde(default = "default_expect")]
    pub expect: u16,
}

fn default_method() -> String {
    "GET".to_owned()
}
fn default_expect() -> u16 {
    200
}

/// `fabric.stream.append`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamAppend {
    /// The fabric service (default: the scenario's only fabric service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `tenant/namespace/name`.
    pub stream: String,
    /// Size of each event's payload (default `256B`).
    #[serde(default = "default_payload")]
    pub payload: Size,
    /// Events per append request, all-or-nothing (default 1).
    #[serde(default = "default_batch")]
    pub batch: u32,
}

fn default_payload() -> Size {
    Size(256)
}
fn default_batch() -> u32 {
    1
}

/// `fabric.stream.read`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamRead {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `tenant/namespace/name`.
    pub stream: String,
    /// Where to read from: `start`, `latest-N` (the last N messages) or an offset.
    #[serde(default)]
    pub from: ReadFrom,
    /// Most messages per read, 1..=1000 (default 100).
    #[serde(default = "default_max_messages")]
    pub max: u32,
}

fn default_max_messages() -> u32 {
    100
}

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadFrom {
    #[default]
    Start,
    /// The last N messages before the latest offset at the time of the read.
    Latest(u64),
    Offset(u64),
}

impl Serialize for ReadFrom {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ReadFrom::Start => s.serialize_str("start"),
            ReadFrom::Latest(n) => s.collect_str(&format_args!("latest-{n}")),
            ReadFrom::Offset(o) => s.serialize_u64(*o),
        }
    }
}

impl<'de> Deserialize<'de> for ReadFrom {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ReadFrom;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`start`, `latest-N` or an offset")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ReadFrom, E> {
                Ok(ReadFrom::Offset(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ReadFrom, E> {
                u64::try_from(v).map(ReadFrom::Offset).map_err(|_| {
                    E::custom(format!(
                        "offset {v} is negative (hint: use `latest-{}` to read the last messages)",
                        v.unsigned_abs()
                    ))
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ReadFrom, E> {
                if v == "start" {
                    return Ok(ReadFrom::Start);
                }
                if v == "latest" {
                    return Ok(ReadFrom::Latest(1));
                }
                if let Some(n) = v.strip_prefix("latest-")
                    && let Ok(n) = n.parse::<u64>()
                    && n > 0
                {
                    return Ok(ReadFrom::Latest(n));
                }
                Err(E::custom(format!(
                    "`{v}` is not a read position (hint: write `start`, `latest-100` or an offset such as `0`)"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ReadFrom {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ReadFrom".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`start`, `latest-N` (the last N messages) or an offset.",
            "oneOf": [
                { "type": "string", "pattern": "^(start|latest|latest-[1-9][0-9]*)$" },
                { "type": "integer", "minimum": 0 }
            ]
        })
    }
}

impl Serialize for Operation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("weight", &self.weight)?;
        match &self.action {
            Action::StreamAppend(a) => map.serialize_entry(self.action.key(), a)?,
            Action::StreamRead(r) => map.serialize_entry(self.action.key(), r)?,
            Action::Http(h) => map.serialize_entry(self.action.key(), h)?,
        }
        map.end()
    }
}

/// Field names an operation accepts, for "did you mean" and the schema.
pub const OPERATION_FIELDS: [&str; 5] = [
    "name",
    "weight",
    Action::KEYS[0],
    Action::KEYS[1],
    Action::KEYS[2],
];

impl<'de> Deserialize<'de> for Operation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Operation;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an operation: `name`, `weight` and one action such as `fabric.stream.append`",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Operation, A::Error> {
                let mut name = None;
                let mut weight = None;
                let mut action: Option<Action> = None;
                while let Some(key) = map.next_key::<String>()? {
                    let set_action = |action: &mut Option<Action>, new: Action| {
                        if let Some(old) = action {
                            return Err(de::Error::custom(format!(
                                "an operation has one action, found `{}` and `{}` (hint: split them into two operations)",
                                old.key(),
                                new.key()
                            )));
                        }
                        *action = Some(new);
                        Ok(())
                    };
                    match key.as_str() {
                        "name" => name = Some(map.next_value::<String>()?),
                        "weight" => weight = Some(map.next_value::<u32>()?),
                        k if k == Action::KEYS[0] => {
                            let a = Action::StreamAppend(map.next_value()?);
                            set_action(&mut action, a)?;
                        }
                        k if k == Action::KEYS[1] => {
                            let a = Action::StreamRead(map.next_value()?);
                            set_action(&mut action, a)?;
                        }
                        k if k == Action::KEYS[2] => {
                            let a = Action::Http(map.next_value()?);
                            set_action(&mut action, a)?;
                        }
                        other => return Err(de::Error::unknown_field(other, &OPERATION_FIELDS)),
                    }
                }
                let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
                let action = action.ok_or_else(|| {
                    de::Error::custom(format!(
                        "operation `{name}` has no action (hint: add one of {})",
                        Action::KEYS.map(|k| format!("`{k}`")).join(", ")
                    ))
                })?;
                Ok(Operation {
                    name,
                    weight: weight.unwrap_or(1),
                    action,
                })
            }
        }
        d.deserialize_map(V)
    }
}

impl JsonSchema for Operation {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Operation".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let append = generator.subschema_for::<StreamAppend>();
        let read = generator.subschema_for::<StreamRead>();
        let http = generator.subschema_for::<HttpRequest>();
        json_schema!({
            "description": "One kind of operation in the mix: a name, a weight and exactly one action.",
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "Name in results, reports and gates." },
                "weight": { "type": "integer", "minimum": 1, "default": 1 },
                "fabric.stream.append": append,
                "fabric.stream.read": read,
                "http": http
            },
            "required": ["name"],
            "additionalProperties": false,
            "oneOf": [
                { "required": ["fabric.stream.append"] },
                { "required": ["fabric.stream.read"] },
                { "required": ["http"] }
            ]
        })
    }
}
