//! The fabric's actions (`fabric.stream.*`, `fabric.queue.*`, `fabric.kv.*`):
//! the event fabric's HTTP API (`spec/fabric.md`) in the user's words.

use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Catalog;
use crate::data::{KeySpec, Payload};
use crate::model::ServiceKind;
use crate::units::Duration;

/// One of the fabric's actions.
#[derive(Debug, Clone, PartialEq)]
pub enum FabricAction {
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
}

/// Every fabric action with its key and the fields common to all:
/// `$m!(Variant, Type, "key")`.
macro_rules! fabric_actions {
    ($($variant:ident, $ty:ident, $key:literal);*) => {
        impl Catalog for FabricAction {
            const KEYS: &'static [&'static str] = &[$($key),*];
            const NEEDS: Option<ServiceKind> = Some(ServiceKind::Fabric);

            fn key(&self) -> &'static str {
                match self {
                    $(FabricAction::$variant(_) => $key,)*
                }
            }

            fn read<'de, A: MapAccess<'de>>(key: &str, map: &mut A) -> Result<Option<Self>, A::Error> {
                Ok(match key {
                    $($key => Some(FabricAction::$variant(map.next_value::<$ty>()?)),)*
                    _ => None,
                })
            }

            fn write<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
                match self {
                    $(FabricAction::$variant(a) => map.serialize_entry($key, a),)*
                }
            }

            fn schemas(generator: &mut SchemaGenerator, out: &mut serde_json::Map<String, serde_json::Value>) {
                $(out.insert($key.to_owned(), generator.subschema_for::<$ty>().to_value());)*
            }

            fn service(&self) -> Option<&str> {
                match self {
                    $(FabricAction::$variant(a) => a.service.as_deref(),)*
                }
            }

            fn resource(&self) -> Option<(&'static str, &str)> {
                FabricAction::resource(self)
            }
        }
    };
}
fabric_actions! {
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
    KvDelete, KvDelete, "fabric.kv.delete"
}

impl FabricAction {
    /// The fabric resource the action names (`tenant/ns/name`), if any, and
    /// its kind (`streams`, `queues`, `kv`).
    pub fn resource(&self) -> Option<(&'static str, &str)> {
        match self {
            FabricAction::StreamAppend(a) => Some(("streams", &a.stream)),
            FabricAction::StreamRead(a) => Some(("streams", &a.stream)),
            FabricAction::StreamCommit(a) => a.stream.as_deref().map(|s| ("streams", s)),
            FabricAction::QueueEnqueue(a) => Some(("queues", &a.queue)),
            FabricAction::QueueReserve(a) => Some(("queues", &a.queue)),
            FabricAction::QueueReceive(a) => Some(("queues", &a.queue)),
            FabricAction::QueueAck(a) => a.queue.as_deref().map(|s| ("queues", s)),
            FabricAction::QueueNack(a) => a.queue.as_deref().map(|s| ("queues", s)),
            FabricAction::KvPut(a) => a.store.as_deref().map(|s| ("kv", s)),
            FabricAction::KvGet(a) => a.store.as_deref().map(|s| ("kv", s)),
            FabricAction::KvDelete(a) => a.store.as_deref().map(|s| ("kv", s)),
        }
    }

    /// The kind of resource the action works on, named or inherited.
    pub fn resource_kind(&self) -> &'static str {
        match self {
            FabricAction::StreamAppend(_)
            | FabricAction::StreamRead(_)
            | FabricAction::StreamCommit(_) => "streams",
            FabricAction::QueueEnqueue(_)
            | FabricAction::QueueReserve(_)
            | FabricAction::QueueReceive(_)
            | FabricAction::QueueAck(_)
            | FabricAction::QueueNack(_) => "queues",
            FabricAction::KvPut(_) | FabricAction::KvGet(_) | FabricAction::KvDelete(_) => "kv",
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
