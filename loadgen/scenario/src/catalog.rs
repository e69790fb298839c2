//! The operation catalog: what an operation does, in the user's words.
//!
//! An operation is a `name`, a `weight` and exactly one action key
//! (`fabric.stream.append`, `fabric.queue.reserve`, `http`, …), optionally
//! followed by `then:` steps that act on what the action got (the job a
//! reserve got, the key a put wrote, the offset a read reached).

use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::data::{Body, KeySpec, Payload};
use crate::model::ServiceKind;
use crate::units::Duration;

/// One kind of operation in the mix, with its name and weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Name in results, reports and gates (unique in the scenario).
    pub name: String,
    /// Relative share of arrivals (default 1).
    pub weight: u32,
    /// What the operation does.
    pub action: Action,
    /// Steps run one after the other when the action succeeds, each acting
    /// on what the previous one got; recorded as `OPERATION.STEP`.
    pub then: Vec<Step>,
}

impl Operation {
    /// The name a step is recorded under.
    pub fn step_name(&self, step: &Step) -> String {
        format!("{}.{}", self.name, step.name)
    }
}

/// One step of a chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Name of the step (default: the last word of its action key, e.g. `ack`).
    pub name: String,
    pub action: Action,
}

/// What an operation does: exactly one of the catalog's keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    StreamAppend(StreamAppend),
    StreamRead(StreamRead),
    StreamCommit(StreamCommit),
    QueueEnqueue(QueueEnqueue),
    QueueReserve(QueueReserve),
    QueueReceive(QueueReceive),
    QueueAck(QueueAck),
    QueueNack(QueueNack),
    KvPut(KvPut),
    KvGet(KvGet),
    KvDelete(KvDelete),
    Http(HttpRequest),
}

/// Visits every action type with its key: `$m!(Variant, Type, "key")`.
macro_rules! for_each_action {
    ($m:ident) => {
        $m! {
            StreamAppend, StreamAppend, "fabric.stream.append";
            StreamRead, StreamRead, "fabric.stream.read";
            StreamCommit, StreamCommit, "fabric.stream.commit";
            QueueEnqueue, QueueEnqueue, "fabric.queue.enqueue";
            QueueReserve, QueueReserve, "fabric.queue.reserve";
            QueueReceive, QueueReceive, "fabric.queue.receive";
            QueueAck, QueueAck, "fabric.queue.ack";
            QueueNack, QueueNack, "fabric.queue.nack";
            KvPut, KvPut, "fabric.kv.put";
            KvGet, KvGet, "fabric.kv.get";
            KvDelete, KvDelete, "fabric.kv.delete";
            Http, HttpRequest, "http"
        }
    };
}

macro_rules! action_impls {
    ($($variant:ident, $ty:ident, $key:literal);*) => {
        impl Action {
            /// The YAML keys of the catalog, in the order the schema lists them.
            pub const KEYS: &'static [&'static str] = &[$($key),*];

            pub fn key(&self) -> &'static str {
                match self {
                    $(Action::$variant(_) => $key,)*
                }
            }

            /// Reads the action under `key`; `None` when `key` is not an action.
            fn read<'de, A: MapAccess<'de>>(key: &str, map: &mut A) -> Result<Option<Action>, A::Error> {
                Ok(match key {
                    $($key => Some(Action::$variant(map.next_value::<$ty>()?)),)*
                    _ => None,
                })
            }

            fn write<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
                match self {
                    $(Action::$variant(a) => map.serialize_entry($key, a),)*
                }
            }

            fn schemas(generator: &mut SchemaGenerator) -> serde_json::Map<String, serde_json::Value> {
                let mut out = serde_json::Map::new();
                $(out.insert($key.to_owned(), generator.subschema_for::<$ty>().to_value());)*
                out
            }
        }
    };
}
for_each_action!(action_impls);

impl Action {
    /// The service the action targets, when the scenario names one.
    pub fn service(&self) -> Option<&str> {
        match self {
            Action::StreamAppend(a) => a.service.as_deref(),
            Action::StreamRead(a) => a.service.as_deref(),
            Action::StreamCommit(a) => a.service.as_deref(),
            Action::QueueEnqueue(a) => a.service.as_deref(),
            Action::QueueReserve(a) => a.service.as_deref(),
            Action::QueueReceive(a) => a.service.as_deref(),
            Action::QueueAck(a) => a.service.as_deref(),
            Action::QueueNack(a) => a.service.as_deref(),
            Action::KvPut(a) => a.service.as_deref(),
            Action::KvGet(a) => a.service.as_deref(),
            Action::KvDelete(a) => a.service.as_deref(),
            Action::Http(a) => a.service.as_deref(),
        }
    }

    /// The service kind the action needs; `None`: any HTTP service.
    pub fn needs(&self) -> Option<ServiceKind> {
        match self {
            Action::Http(_) => None,
            _ => Some(ServiceKind::Fabric),
        }
    }

    /// The default step name: the last word of the key (`ack`, `get`, `http`).
    pub fn short_name(&self) -> &'static str {
        self.key().rsplit('.').next().unwrap_or("step")
    }

    /// The fabric resource the action names (`tenant/ns/name`), if any, and
    /// its kind (`streams`, `queues`, `kv`).
    pub fn resource(&self) -> Option<(&'static str, &str)> {
        match self {
            Action::StreamAppend(a) => Some(("streams", &a.stream)),
            Action::StreamRead(a) => Some(("streams", &a.stream)),
            Action::StreamCommit(a) => a.stream.as_deref().map(|s| ("streams", s)),
            Action::QueueEnqueue(a) => Some(("queues", &a.queue)),
            Action::QueueReserve(a) => Some(("queues", &a.queue)),
            Action::QueueReceive(a) => Some(("queues", &a.queue)),
            Action::QueueAck(a) => a.queue.as_deref().map(|s| ("queues", s)),
            Action::QueueNack(a) => a.queue.as_deref().map(|s| ("queues", s)),
            Action::KvPut(a) => a.store.as_deref().map(|s| ("kv", s)),
            Action::KvGet(a) => a.store.as_deref().map(|s| ("kv", s)),
            Action::KvDelete(a) => a.store.as_deref().map(|s| ("kv", s)),
            Action::Http(_) => None,
        }
    }
}

/// `fabric.stream.append`: one request appending `batch` events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamAppend {
    /// The fabric service (default: the scenario's only fabric service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `tenant/namespace/name`.
    pub stream: String,
    /// Each event's payload: a size (`256B`, random bytes from the seed), a
    /// size distribution, or a template (default `256B`).
    #[serde(default = "default_payload")]
    pub payload: Payload,
    /// Events per append request, all-or-nothing (default 1).
    #[serde(default = "default_batch")]
    pub batch: u32,
}

pub(crate) fn default_payload() -> Payload {
    Payload::default()
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
    /// Where to read from: `start`, `latest-N` (the last N messages),
    /// `follow` (where this operation's previous read ended) or an offset.
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
    /// Just after the last message this operation read (a tailing consumer).
    Follow,
    Offset(u64),
}

impl Serialize for ReadFrom {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ReadFrom::Start => s.serialize_str("start"),
            ReadFrom::Follow => s.serialize_str("follow"),
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
                f.write_str("`start`, `latest-N`, `follow` or an offset")
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
                match v {
                    "start" => return Ok(ReadFrom::Start),
                    "follow" => return Ok(ReadFrom::Follow),
                    "latest" => return Ok(ReadFrom::Latest(1)),
                    _ => {}
                }
                if let Some(n) = v.strip_prefix("latest-")
                    && let Ok(n) = n.parse::<u64>()
                    && n > 0
                {
                    return Ok(ReadFrom::Latest(n));
                }
                Err(E::custom(format!(
                    "`{v}` is not a read position (hint: write `start`, `latest-100`, `follow` or an offset such as `0`)"
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
            "description": "`start`, `latest-N` (the last N messages), `follow` (where the previous read ended) or an offset.",
            "oneOf": [
                { "type": "string", "pattern": "^(start|follow|latest|latest-[1-9][0-9]*)$" },
                { "type": "integer", "minimum": 0 }
            ]
        })
    }
}

/// `fabric.stream.commit`: commits a consumer group's offset — in a chain,
/// the last offset the previous step appended or read; alone, the highest
/// offset acknowledged on the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamCommit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `tenant/namespace/name` (in a chain: default the previous step's stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// The consumer group.
    pub group: String,
}

/// `fabric.queue.enqueue`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueEnqueue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `tenant/namespace/name`.
    pub queue: String,
    /// The job's payload (default `256B` of random bytes).
    #[serde(default = "default_payload")]
    pub payload: Payload,
    /// Time before the job becomes visible (default `0s`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay: Duration,
}

fn is_zero(d: &Duration) -> bool {
    d.0.is_zero()
}

/// `fabric.queue.reserve`: leases at most one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueReserve {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `tenant/namespace/name`.
    pub queue: String,
    /// How long the job stays invisible to others (default `30s`).
    #[serde(default = "default_visibility")]
    pub visibility: Duration,
    /// Long poll: how long to wait for a job when the queue is empty (default `0s`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wait: Duration,
}

fn default_visibility() -> Duration {
    Duration::from_secs(30)
}

/// `fabric.queue.receive`: leases up to `max` jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueReceive {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `tenant/namespace/name`.
    pub queue: String,
    /// Most jobs per request, 1..=100 (default 10).
    #[serde(default = "default_max_jobs")]
    pub max: u32,
    #[serde(default = "default_visibility")]
    pub visibility: Duration,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wait: Duration,
}

fn default_max_jobs() -> u32 {
    10
}

/// `fabric.queue.ack`: acknowledges every job the previous step reserved
/// or received (only in `then:`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueAck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Default: the queue the jobs came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

/// `fabric.queue.nack`: gives back every job the previous step reserved or
/// received (only in `then:`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueNack {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// When the job is visible again (default: the queue's retry policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
}

/// What a KV get or delete of a missing key counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    /// An error of kind `not_found` (default).
    #[default]
    Error,
    /// A success (a cache miss is an answer too).
    Ok,
}

impl Missing {
    fn is_default(&self) -> bool {
        *self == Missing::Error
    }
}

/// `fabric.kv.put`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvPut {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `tenant/namespace/name` (in a chain: default the previous step's store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Which key (in a chain: default the previous step's key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeySpec>,
    /// The value (default `256B` of random bytes).
    #[serde(default = "default_payload")]
    pub value: Payload,
    /// Expiry of the key (default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
}

/// `fabric.kv.get`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvGet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeySpec>,
    /// A missing key is an `error` (default) or `ok`.
    #[serde(default, skip_serializing_if = "Missing::is_default")]
    pub missing: Missing,
}

/// `fabric.kv.delete`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvDelete {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeySpec>,
    #[serde(default, skip_serializing_if = "Missing::is_default")]
    pub missing: Missing,
}

/// `http`: any HTTP request to a booted service or an external base URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    /// A service of the stack or a name of `stack.external` (default: the only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `GET` (default), `POST`, `PUT`, `DELETE`, `HEAD`, `PATCH` or `OPTIONS`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Path (and query) relative to the service's base URL; may hold
    /// placeholders such as `{{seq}}`.
    pub url: String,
    /// Request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The body: a text template, `{ json: … }`, or random bytes `{ size: … }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
    /// Expected status: a code or a list of codes (default: any 2xx).
    #[serde(default, skip_serializing_if = "Expect::is_any_2xx")]
    pub expect: Expect,
}

fn default_method() -> String {
    "GET".to_owned()
}

/// Status codes an HTTP operation counts as success.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Expect {
    #[default]
    Any2xx,
    Codes(Vec<u16>),
}

impl Expect {
    fn is_any_2xx(&self) -> bool {
        *self == Expect::Any2xx
    }

    pub fn accepts(&self, status: u16) -> bool {
        match self {
            Expect::Any2xx => (200..300).contains(&status),
            Expect::Codes(codes) => codes.contains(&status),
        }
    }
}

impl Serialize for Expect {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Expect::Any2xx => s.serialize_str("2xx"),
            Expect::Codes(c) if c.len() == 1 => s.serialize_u16(c[0]),
            Expect::Codes(c) => c.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        fn code<E: de::Error>(v: u64) -> Result<u16, E> {
            if (100..=599).contains(&v) {
                Ok(v as u16)
            } else {
                Err(E::custom(format!(
                    "`{v}` is not an HTTP status (hint: use 100 to 599, e.g. `200`)"
                )))
            }
        }
        impl<'de> Visitor<'de> for V {
            type Value = Expect;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status code such as `200`, a list of codes, or `2xx`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Expect, E> {
                Ok(Expect::Codes(vec![code(v)?]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Expect, E> {
                Ok(Expect::Codes(vec![code(v.max(0) as u64)?]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Expect, E> {
                if v == "2xx" {
                    return Ok(Expect::Any2xx);
                }
                Err(E::custom(format!(
                    "`{v}` is not an expected status (hint: write a code such as `200`, a list `[200, 404]`, or `2xx`)"
                )))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Expect, A::Error> {
                let mut codes = Vec::new();
                while let Some(v) = seq.next_element::<u64>()? {
                    codes.push(code(v)?);
                }
                if codes.is_empty() {
                    return Err(de::Error::custom(
                        "an empty list accepts no status (hint: list at least one code, or leave `expect` out for any 2xx)",
                    ));
                }
                Ok(Expect::Codes(codes))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Expect {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Expect".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Expected status: a code, a list of codes, or `2xx` (the default).",
            "oneOf": [
                { "type": "integer", "minimum": 100, "maximum": 599 },
                { "type": "array", "items": { "type": "integer", "minimum": 100, "maximum": 599 }, "minItems": 1 },
                { "const": "2xx" }
            ]
        })
    }
}

// ------------------------------------------------------------ operations

/// Field names an operation accepts besides the action keys.
pub const OPERATION_FIELDS: [&str; 3] = ["name", "weight", "then"];

fn operation_fields() -> Vec<&'static str> {
    OPERATION_FIELDS
        .iter()
        .copied()
        .chain(Action::KEYS.iter().copied())
        .collect()
}

fn set_action<E: de::Error>(action: &mut Option<Action>, new: Action) -> Result<(), E> {
    if let Some(old) = action {
        return Err(E::custom(format!(
            "an operation has one action, found `{}` and `{}` (hint: split them into two operations, or chain the second with `then:`)",
            old.key(),
            new.key()
        )));
    }
    *action = Some(new);
    Ok(())
}

fn no_action<E: de::Error>(what: &str) -> E {
    E::custom(format!(
        "{what} has no action (hint: add one of {})",
        Action::KEYS
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

impl Serialize for Operation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("weight", &self.weight)?;
        self.action.write(&mut map)?;
        if !self.then.is_empty() {
            map.serialize_entry("then", &self.then)?;
        }
        map.end()
    }
}

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
                let mut then = Vec::new();
                let mut action: Option<Action> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "name" => name = Some(map.next_value::<String>()?),
                        "weight" => weight = Some(map.next_value::<u32>()?),
                        "then" => then = map.next_value::<Vec<Step>>()?,
                        other => match Action::read(other, &mut map)? {
                            Some(a) => set_action(&mut action, a)?,
                            None => {
                                return Err(de::Error::unknown_field(other, op_fields()));
                            }
                        },
                    }
                }
                let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
                let action =
                    action.ok_or_else(|| no_action::<A::Error>(&format!("operation `{name}`")))?;
                Ok(Operation {
                    name,
                    weight: weight.unwrap_or(1),
                    action,
                    then,
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// serde's `unknown_field` wants `&'static [&'static str]`; the catalog is
/// fixed, so each list is built once.
fn op_fields() -> &'static [&'static str] {
    static FIELDS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    FIELDS.get_or_init(operation_fields)
}

fn step_fields_static() -> &'static [&'static str] {
    static FIELDS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    FIELDS.get_or_init(step_fields)
}

fn step_fields() -> Vec<&'static str> {
    std::iter::once("name")
        .chain(Action::KEYS.iter().copied())
        .collect()
}

impl Serialize for Step {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("name", &self.name)?;
        self.action.write(&mut map)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Step;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a step: one action such as `fabric.queue.ack: {}`, and an optional `name`",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Step, A::Error> {
                let mut name = None;
                let mut action: Option<Action> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "name" => name = Some(map.next_value::<String>()?),
                        "weight" | "then" => {
                            return Err(de::Error::custom(format!(
                                "a step has no `{key}` (hint: steps run in order after the operation's action; only operations have weights and chains)"
                            )));
                        }
                        other => match Action::read(other, &mut map)? {
                            Some(a) => set_action(&mut action, a)?,
                            None => {
                                return Err(de::Error::unknown_field(other, step_fields_static()));
                            }
                        },
                    }
                }
                let action = action.ok_or_else(|| no_action::<A::Error>("a step"))?;
                Ok(Step {
                    name: name.unwrap_or_else(|| action.short_name().to_owned()),
                    action,
                })
            }
        }
        d.deserialize_map(V)
    }
}

fn action_properties(
    generator: &mut SchemaGenerator,
) -> serde_json::Map<String, serde_json::Value> {
    Action::schemas(generator)
}

fn one_action() -> serde_json::Value {
    serde_json::Value::Array(
        Action::KEYS
            .iter()
            .map(|k| serde_json::json!({ "required": [k] }))
            .collect(),
    )
}

impl JsonSchema for Step {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Step".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut props = action_properties(generator);
        props.insert(
            "name".into(),
            serde_json::json!({ "type": "string", "description": "Recorded as `OPERATION.NAME` (default: the action's last word)." }),
        );
        json_schema!({
            "description": "A chained step: acts on what the previous step got.",
            "type": "object",
            "properties": props,
            "additionalProperties": false,
            "oneOf": one_action()
        })
    }
}

impl JsonSchema for Operation {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Operation".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut props = action_properties(generator);
        let step = generator.subschema_for::<Step>().to_value();
        props.insert(
            "name".into(),
            serde_json::json!({ "type": "string", "description": "Name in results, reports and gates." }),
        );
        props.insert(
            "weight".into(),
            serde_json::json!({ "type": "integer", "minimum": 0, "default": 1, "description": "Relative share of arrivals; 0 only runs it in phases whose `mix` names it." }),
        );
        props.insert(
            "then".into(),
            serde_json::json!({ "type": "array", "items": step, "description": "Steps run after the action succeeds, each on what the previous one got." }),
        );
        json_schema!({
            "description": "One kind of operation in the mix: a name, a weight and exactly one action.",
            "type": "object",
            "properties": props,
            "required": ["name"],
            "additionalProperties": false,
            "oneOf": one_action()
        })
    }
}
